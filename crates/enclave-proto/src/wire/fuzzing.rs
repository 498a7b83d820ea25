//! Bodies of the fuzz targets (`fuzz/fuzz_targets/wire_*.rs`), kept here as plain functions so
//! that unit tests run them over seeds on every `cargo test` and they cannot rot.
//!
//! Each must return normally for any input: a panic or a hang is the bug being looked for.

use std::io::Cursor;

use super::auth::{AuthorizedKeys, SigningKey};
use bytes::Bytes;

use super::codec::{decode, decode_bytes, encode};
use super::frame::{read_frame, FrameDecoder, FrameError};
use super::message::{Capability, ClientMessage, EnclaveInfo, ServerMessage};
use super::secure::ServerCheck;
use super::session::{
    ClientConfig, ClientSession, RemoteTrust, Security, ServerConfig, ServerSession, Trust, Verdict,
};
use super::MAX_FRAME_LEN;

/// Feeds `data` to a [`FrameDecoder`] in pieces whose sizes come from the data itself, and to
/// [`read_frame`]; both must agree on the frames.
pub fn frame_decoder(data: &[u8]) {
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut decoder = FrameDecoder::new();
    let mut incremental = Vec::new();
    let mut failed = false;
    for piece in data.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.payload().len() <= MAX_FRAME_LEN as usize);
                    incremental.push(frame);
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            break;
        }
    }
    // The blocking reader over the same bytes must see the same frames and the same ending.
    let mut reader = Cursor::new(data);
    let mut blocking = Vec::new();
    loop {
        match read_frame(&mut reader) {
            Ok(Some(frame)) => blocking.push(frame),
            Ok(None) => {
                assert!(!failed && decoder.finish().is_ok());
                break;
            }
            Err(FrameError::Truncated { .. }) => {
                assert!(!failed && decoder.finish().is_err());
                break;
            }
            Err(_) => {
                assert!(failed);
                break;
            }
        }
    }
    assert_eq!(incremental, blocking);
}

fn server_config(remote: bool) -> ServerConfig {
    let enclave = EnclaveInfo {
        server: "fuzz".into(),
        name: None,
        uptime_ms: 0,
    };
    if !remote {
        return ServerConfig::local(enclave);
    }
    // A key the fuzzer cannot sign for: this exercises the refusal paths.
    let mut keys = AuthorizedKeys::default();
    keys.push(SigningKey::from_bytes(&[1; 32]).verifying_key());
    ServerConfig {
        capabilities: vec![Capability::Exec, Capability::Cp],
        trust: Trust::Remote(RemoteTrust {
            identity: super::secure::fuzzing::identity(),
            keys,
        }),
        enclave,
    }
}

/// Splits `data` into frames, decodes each as a client message for a [`ServerSession`] and as
/// a server message for a [`ClientSession`], and checks that what decodes re-encodes to the
/// same message, and that the zero-copy `Data` decoder agrees with the generic one. The first
/// byte picks the server's trust (bit 0: host-facing, with the Noise
/// handshake) and the client's (bit 1: host-facing).
pub fn message_session(data: &[u8]) {
    let mode = data.first().copied().unwrap_or(0);
    let mut server = ServerSession::new(server_config(mode & 1 == 1));
    let security = if mode & 2 == 2 {
        Security::Remote(ServerCheck::AnyEnclave)
    } else {
        Security::Local
    };
    let mut client = ClientSession::new(ClientConfig {
        capabilities: vec![Capability::Exec, Capability::Cp],
        client: "fuzz".into(),
        key: Some(SigningKey::from_bytes(&[2; 32])),
        security,
    });
    let mut client_alive = client.hello().is_ok();
    let mut server_alive = true;
    let mut decoder = FrameDecoder::new();
    decoder.push(data.get(1..).unwrap_or_default());
    while let Ok(Some(frame)) = decoder.next_frame() {
        same_both_ways::<ClientMessage>(frame.payload());
        same_both_ways::<ServerMessage>(frame.payload());
        if let Ok(msg) = decode::<ClientMessage>(frame.payload()) {
            roundtrip(&msg);
        }
        if server_alive {
            match server.on_recv_frame(frame.payload()) {
                Ok((_, Verdict::Respond(reply))) => roundtrip(&reply),
                Ok(_) => {}
                Err(e) => {
                    roundtrip(&e.to_message());
                    server_alive = !e.is_fatal();
                }
            }
            let _ = server.take_transport();
        }
        if let Ok(msg) = decode::<ServerMessage>(frame.payload()) {
            roundtrip(&msg);
            // Whatever the application tries to send must be judged, never panic.
            let _ = server.check_send(&msg);
        }
        if client_alive {
            client_alive = client.on_recv_frame(frame.payload()).is_ok();
            if client.take_transport().is_some() {
                client_alive = client.auth().is_ok();
            }
        }
    }
}

/// The zero-copy decoder of `Data` ([`decode_bytes`]) and the generic one agree on every
/// payload: the same message, or both refuse it.
fn same_both_ways<M: super::codec::WireMessage + PartialEq + std::fmt::Debug>(payload: &[u8]) {
    let fast = decode_bytes::<M>(&Bytes::copy_from_slice(payload));
    match (fast, decode::<M>(payload)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("decoders disagree on {payload:02x?}: {a:?} / {b:?}"),
    }
}

fn roundtrip<M: super::codec::WireMessage + PartialEq + std::fmt::Debug>(msg: &M) {
    // Anything that decoded or that the session produced must encode and decode to itself.
    // (Encoding may refuse a message larger than a frame; that is not a bug.)
    if let Ok(bytes) = encode(msg) {
        match decode::<M>(&bytes) {
            Ok(back) => assert_eq!(&back, msg),
            Err(e) => panic!("{msg:?} does not decode after encoding: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ops::Request;
    use crate::wire::{encode, ClientHello, Frame};

    fn framed(msgs: &[ClientMessage]) -> Vec<u8> {
        let mut out = vec![0u8];
        for m in msgs {
            let payload = encode(m).unwrap();
            out.extend(Frame::new(payload).unwrap().to_bytes());
        }
        out
    }

    #[test]
    fn seeds_do_not_panic() {
        let hello = ClientMessage::Hello(ClientHello {
            version: 2,
            capabilities: vec![Capability::Exec],
            client: "seed".into(),
        });
        let ping = ClientMessage::Request {
            id: 1,
            request: Request::Ping { payload: 9 },
        };
        let seeds: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0, 0, 0],
            vec![1, 0xff, 0xff, 0xff, 0xff, 1, 2],
            vec![3, 0, 0, 0, 2, 0xa1, 0x00, 0, 0],
            framed(&[hello.clone(), ping.clone()]),
            framed(&[ping, hello]),
            (0..=255u8).collect(),
        ];
        for seed in &seeds {
            for mode in 0..4u8 {
                let mut seed = seed.clone();
                if let Some(first) = seed.first_mut() {
                    *first = mode;
                }
                frame_decoder(&seed);
                message_session(&seed);
                for cut in 0..seed.len() {
                    frame_decoder(&seed[..cut]);
                    message_session(&seed[..cut]);
                }
            }
        }
    }

    /// A few thousand cheap mutations of valid exchanges (bit flips, cuts, duplicated frames),
    /// so that `cargo test` explores a little beyond the fixed seeds.
    #[test]
    fn mutated_seeds_do_not_panic() {
        let hello = ClientMessage::Hello(ClientHello {
            version: 2,
            capabilities: vec![Capability::Exec, Capability::Cp],
            client: "seed".into(),
        });
        let cp = ClientMessage::Request {
            id: 1,
            request: Request::CpTo { dest: "/d".into() },
        };
        let base = framed(&[hello, cp, ClientMessage::Cancel { id: 1 }]);
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut input = base.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % input.len();
                match next() % 3 {
                    0 => input[at] ^= 1 << (next() % 8),
                    1 => input.truncate(at.max(1)),
                    _ => {
                        let copy = input[at..].to_vec();
                        input.extend(copy);
                    }
                }
            }
            frame_decoder(&input);
            message_session(&input);
        }
    }
}
