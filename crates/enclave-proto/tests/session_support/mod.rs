//! Session fixtures shared by the session tests: a server with given capabilities and keys, a
//! client hello, a ready server, and common requests and messages.
#![allow(dead_code)] // each test binary uses a different subset

use enclave_proto::wire::auth::{AuthorizedKeys, SigningKey};
use enclave_proto::wire::{
    Capability, Channel, ClientHello, ClientMessage, EnclaveInfo, ExecRequest, Request,
    ServerConfig, ServerMessage, ServerSession, Verdict,
};

/// A deterministic Ed25519 key.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub const NONCE: [u8; 32] = [0x42; 32];

pub fn server(caps: &[Capability], keys: &[SigningKey]) -> ServerSession {
    let config = ServerConfig {
        capabilities: caps.to_vec(),
        authorized_keys: AuthorizedKeys::new(keys.iter().map(|k| k.verifying_key()).collect()),
        enclave: EnclaveInfo {
            server: "test".into(),
            name: None,
            uptime_ms: 0,
        },
    };
    ServerSession::with_nonce(config, NONCE)
}

pub fn hello(caps: &[Capability]) -> ClientMessage {
    ClientMessage::Hello(ClientHello {
        version: 1,
        capabilities: caps.to_vec(),
        client: "t".into(),
    })
}

pub fn ready_server(caps: &[Capability]) -> ServerSession {
    let mut s = server(caps, &[]);
    assert!(matches!(
        s.on_recv(&hello(caps)),
        Ok(Verdict::Respond(ServerMessage::Hello(_)))
    ));
    assert!(s.is_ready());
    s
}

pub fn exec(stdin: bool) -> Request {
    Request::Exec(ExecRequest {
        argv: vec!["cat".into()],
        env: vec![],
        cwd: None,
        tty: None,
        stdin,
        detach: false,
    })
}

pub fn data(id: u32, channel: Channel, len: usize) -> ClientMessage {
    ClientMessage::Data {
        id,
        channel,
        data: vec![b'x'; len],
    }
}
