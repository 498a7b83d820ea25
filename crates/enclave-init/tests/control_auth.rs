//! The control server's gates in a real PID 1: capabilities the spec does not grant,
//! Ed25519 authentication, and malformed, oversize, truncated and out-of-order frames, after
//! each of which the server still serves the next connection.

#[allow(dead_code)]
mod support;

use std::io::Write;
use std::net::Shutdown;
use std::path::Path;

use base64::Engine as _;
use enclave_proto::client::{Client, ClientError};
use enclave_proto::wire::auth::SigningKey;
use enclave_proto::wire::{
    Capability, ClientMessage, ErrorCode, Request, ServerMessage, SessionError,
};
use support::control::{boot, exec, frame, hello_frame, opts, raw, read_all, read_one, req};

#[test]
fn capabilities_not_in_the_spec_are_refused() {
    let Some(b) = boot(&serde_json::json!({})) else {
        return;
    };
    let mut c = Client::connect(&b.addr, &opts(&[Capability::Exec, Capability::Cp], None)).unwrap();
    assert!(c.server_hello().capabilities.is_empty());
    // The client library does not even send what was not granted.
    let e = exec(&mut c, req(&["true"]), None).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Session(SessionError::PermissionDenied { .. })
        ),
        "{e}"
    );
    // A raw client that asks anyway gets permission_denied, and the connection stays usable.
    let mut s = raw(&b.addr);
    s.write_all(&hello_frame(&[Capability::Exec, Capability::Cp]))
        .unwrap();
    assert!(matches!(read_one(&mut s), ServerMessage::Hello(h) if h.capabilities.is_empty()));
    let exec_req = Request::Exec(req(&["true"]));
    s.write_all(&frame(&ClientMessage::Request {
        id: 1,
        request: exec_req,
    }))
    .unwrap();
    let cp_req = Request::CpFrom {
        src: "/etc/passwd".into(),
    };
    s.write_all(&frame(&ClientMessage::Request {
        id: 2,
        request: cp_req,
    }))
    .unwrap();
    s.write_all(&frame(&ClientMessage::Request {
        id: 3,
        request: Request::Ping { payload: 9 },
    }))
    .unwrap();
    for id in [1, 2] {
        match read_one(&mut s) {
            ServerMessage::Error { id: rid, code, .. } => {
                assert_eq!((rid, code), (id, ErrorCode::PermissionDenied))
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        read_one(&mut s),
        ServerMessage::Reply { id: 3, .. }
    ));
    let e = c
        .cp_from("/etc/passwd", Path::new("/tmp"), |_| {})
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Session(SessionError::PermissionDenied { .. })
        ),
        "{e}"
    );
    // Without capabilities the rest still works.
    assert_eq!(c.ping(5).unwrap(), 5);
}

#[test]
fn authentication_is_required_when_keys_are_listed() {
    let right = SigningKey::from_bytes(&[7; 32]);
    let wrong = SigningKey::from_bytes(&[8; 32]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(right.verifying_key().to_bytes());
    let spec = serde_json::json!({"debug": {"exec": true, "authorized_keys": [b64]}});
    let Some(b) = boot(&spec) else { return };

    // The right key: in, and exec works.
    let mut c = Client::connect(&b.addr, &opts(&[Capability::Exec], Some(right))).unwrap();
    let o = exec(&mut c, req(&["echo", "in"]), None).unwrap();
    assert_eq!(o.stdout, b"in\n");
    // A wrong key: auth_failed, connection closed.
    match Client::connect(&b.addr, &opts(&[Capability::Exec], Some(wrong))) {
        Err(ClientError::Session(SessionError::Remote { code, .. })) => {
            assert_eq!(code, ErrorCode::AuthFailed)
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a wrong key was accepted"),
    }
    // No key: the client cannot answer the challenge.
    match Client::connect(&b.addr, &opts(&[], None)) {
        Err(ClientError::Session(SessionError::KeyRequired)) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("no key was accepted"),
    }
    // A raw client skipping auth: auth_required, then the server closes.
    let mut s = raw(&b.addr);
    s.write_all(&hello_frame(&[])).unwrap();
    assert!(matches!(read_one(&mut s), ServerMessage::Hello(h) if h.challenge.is_some()));
    s.write_all(&frame(&ClientMessage::Request {
        id: 1,
        request: Request::Ping { payload: 1 },
    }))
    .unwrap();
    let msgs = read_all(&mut s);
    assert!(
        matches!(
            msgs.as_slice(),
            [ServerMessage::Error {
                id: 0,
                code: ErrorCode::AuthRequired,
                ..
            }]
        ),
        "{msgs:?}"
    );
}

#[test]
fn bad_frames_get_an_error_or_a_close_and_the_server_goes_on() {
    let Some(b) = boot(&serde_json::json!({"debug": {"exec": true}})) else {
        return;
    };
    let ping = |addr| {
        Client::connect(addr, &opts(&[], None))
            .unwrap()
            .ping(3)
            .unwrap()
    };
    let mut hello = hello_frame(&[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("oversize length", vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]),
        (
            "just over the limit",
            ((1u32 << 20) + 1).to_be_bytes().to_vec(),
        ),
        ("empty frame", vec![0, 0, 0, 0]),
        ("garbage CBOR", vec![0, 0, 0, 3, 0xff, 0x00, 0x13]),
        ("unknown message", {
            let p = b"\xa1\x64evil\x00";
            let mut f = (p.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(p);
            f
        }),
        ("truncated header", vec![0, 0]),
        ("truncated payload", vec![0, 0, 0, 100, 1, 2, 3]),
        (
            "request before hello",
            frame(&ClientMessage::Request {
                id: 1,
                request: Request::Info,
            }),
        ),
        ("data for an unknown request", {
            hello.extend(frame(&ClientMessage::Cancel { id: 5 }));
            hello.clone()
        }),
        ("decreasing ids", {
            let mut f = hello_frame(&[]);
            f.extend(frame(&ClientMessage::Request {
                id: 5,
                request: Request::Info,
            }));
            f.extend(frame(&ClientMessage::Request {
                id: 4,
                request: Request::Info,
            }));
            f
        }),
        ("second hello", {
            let mut f = hello_frame(&[]);
            f.extend(hello_frame(&[]));
            f
        }),
    ];
    for (what, bytes) in cases {
        let mut s = raw(&b.addr);
        s.write_all(&bytes).unwrap();
        // The peer may close its write side (truncation) or keep it open: the server must
        // answer or close either way, never wait.
        let _ = s.shutdown(Shutdown::Write);
        let msgs = read_all(&mut s);
        let last = msgs.last();
        assert!(
            last.is_none()
                || matches!(
                    last,
                    Some(ServerMessage::Error {
                        id: 0,
                        code: ErrorCode::Protocol,
                        ..
                    })
                ),
            "{what}: {msgs:?}"
        );
        assert_eq!(ping(&b.addr), 3, "{what}: the server stopped serving");
    }
    // Without closing our side: an oversize frame is answered and the connection closed.
    let mut s = raw(&b.addr);
    s.write_all(&[0x7f, 0xff, 0xff, 0xff]).unwrap();
    let msgs = read_all(&mut s);
    assert!(
        matches!(
            msgs.as_slice(),
            [ServerMessage::Error {
                id: 0,
                code: ErrorCode::Protocol,
                ..
            }]
        ),
        "{msgs:?}"
    );
    // Many broken connections in parallel leave it serving too.
    let threads: Vec<_> = (0..50)
        .map(|i| {
            let addr = b.addr.clone();
            std::thread::spawn(move || {
                let mut s = raw(&addr);
                let _ = s.write_all(&[0, 0, 0, (i % 7) as u8 + 1, 0xff]);
                let _ = s.shutdown(Shutdown::Write);
                read_all(&mut s)
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(ping(&b.addr), 3);
}
