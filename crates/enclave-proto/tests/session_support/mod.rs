//! Session fixtures shared by the session tests: the enclave's identity, servers and clients of
//! both kinds, the set-up run between them in memory (every message encoded and decoded as on
//! the wire), ready sessions, and common requests and messages.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, OnceLock};

use enclave_proto::wire::auth::{AuthorizedKeys, SigningKey};
use enclave_proto::wire::secure::{ControlIdentity, ServerCheck};
use enclave_proto::wire::{
    encode, Capability, Channel, ClientConfig, ClientHello, ClientMessage, ClientSession,
    EnclaveInfo, ExecRequest, RemoteTrust, Request, Security, ServerConfig, ServerMessage,
    ServerSession, SessionError, Trust, Verdict, PROTOCOL_VERSION,
};

/// A deterministic Ed25519 key.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The enclave's control identity, made once per test binary.
pub fn identity() -> Arc<ControlIdentity> {
    static ID: OnceLock<Arc<ControlIdentity>> = OnceLock::new();
    ID.get_or_init(|| {
        let id = ControlIdentity::generate().unwrap();
        Arc::new(id.with_document(b"identity document".to_vec()))
    })
    .clone()
}

pub fn info() -> EnclaveInfo {
    EnclaveInfo {
        server: "test".into(),
        name: None,
        uptime_ms: 0,
    }
}

/// A host-facing server granting `caps` to the holders of `keys`.
pub fn server(caps: &[Capability], keys: &[SigningKey]) -> ServerSession {
    server_with(caps, keys, identity())
}

pub fn server_with(
    caps: &[Capability],
    keys: &[SigningKey],
    identity: Arc<ControlIdentity>,
) -> ServerSession {
    ServerSession::new(ServerConfig {
        capabilities: caps.to_vec(),
        trust: Trust::Remote(RemoteTrust {
            identity,
            keys: AuthorizedKeys::new(keys.iter().map(|k| k.verifying_key()).collect()),
        }),
        enclave: info(),
    })
}

/// The in-enclave socket's server.
pub fn local_server() -> ServerSession {
    ServerSession::new(ServerConfig::local(info()))
}

/// A host-side client expecting the test identity (pinned), proving `key`.
pub fn client(caps: &[Capability], key: Option<SigningKey>) -> ClientSession {
    client_checking(caps, key, ServerCheck::Pinned(identity().public_key()))
}

pub fn client_checking(
    caps: &[Capability],
    key: Option<SigningKey>,
    check: ServerCheck,
) -> ClientSession {
    ClientSession::new(ClientConfig {
        capabilities: caps.to_vec(),
        client: "t".into(),
        key,
        security: Security::Remote(check),
    })
}

pub fn hello(caps: &[Capability]) -> ClientMessage {
    ClientMessage::Hello(ClientHello {
        version: PROTOCOL_VERSION,
        capabilities: caps.to_vec(),
        client: "t".into(),
    })
}

/// Runs the whole set-up between `c` and `s` in memory: hellos, handshake, and the client's
/// auth when it has a key. The first error of either side is returned.
pub fn connect(s: &mut ServerSession, c: &mut ClientSession) -> Result<(), SessionError> {
    let mut to_server = vec![encode(&c.hello()?).unwrap()];
    while let Some(frame) = to_server.pop() {
        let (_, verdict) = s.on_recv_frame(&frame)?;
        let _ = s.take_transport();
        let Verdict::Respond(answer) = verdict else {
            continue;
        };
        let (_, verdict) = c.on_recv_frame(&encode(&answer).unwrap())?;
        if let Verdict::Respond(next) = verdict {
            to_server.push(encode(&next).unwrap());
        }
        if c.take_transport().is_some() {
            if let Some(auth) = c.auth()? {
                to_server.push(encode(&auth).unwrap());
            }
        }
    }
    Ok(())
}

/// A server and a client with the set-up done, the client authenticated with key(1).
pub fn ready_pair(caps: &[Capability]) -> (ServerSession, ClientSession) {
    let mut s = server(caps, &[key(1)]);
    let mut c = client(caps, Some(key(1)));
    connect(&mut s, &mut c).unwrap();
    assert!(s.is_ready() && c.is_ready());
    (s, c)
}

/// A ready server granting `caps`.
pub fn ready_server(caps: &[Capability]) -> ServerSession {
    ready_pair(caps).0
}

/// A ready server granting `caps` that received `request` as request 1.
pub fn requested(caps: &[Capability], request: Request) -> ServerSession {
    let mut s = ready_server(caps);
    s.on_recv(&ClientMessage::Request { id: 1, request })
        .unwrap();
    s
}

/// [`requested`], and request 1 started.
pub fn started(caps: &[Capability], request: Request) -> ServerSession {
    let mut s = requested(caps, request);
    s.check_send(&ServerMessage::Started { id: 1, pid: None })
        .unwrap();
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
        user: None,
    })
}

pub fn data(id: u32, channel: Channel, len: usize) -> ClientMessage {
    ClientMessage::Data {
        id,
        channel,
        data: vec![b'x'; len].into(),
    }
}
