//! The control server's gates in a real PID 1: who may do what (nobody without a key, the
//! supervisor's key and the spec's authorized keys with the spec's capabilities), idle floods
//! that must not lock the operator out, and malformed, oversize, truncated and out-of-order
//! frames, in clear and inside the encrypted stream, after each of which the server still
//! serves the next connection.

#[allow(dead_code)]
mod support;

use std::io::Write;
use std::net::Shutdown;
use std::path::Path;

use base64::Engine as _;
use enclave_proto::client::{Client, ClientError};
use enclave_proto::wire::auth::SigningKey;
use enclave_proto::wire::secure::ServerCheck;
use enclave_proto::wire::{
    AttestRequest, Capability, ClientMessage, CpEntry, CpKind, ErrorCode, Request, ServerMessage,
    ServiceRequest, SessionError,
};
use support::control::{
    boot, enclave_send_buffer, exec, frame, hello_frame, opts, opts_with, raw, read_all, req,
    Access, RawSession,
};

fn ping(b: &Access) -> u64 {
    Client::connect(&b.addr, &opts(b, &[]))
        .unwrap()
        .ping(3)
        .unwrap()
}

#[test]
fn capabilities_not_in_the_spec_are_refused() {
    let Some(b) = boot(&serde_json::json!({})) else {
        return;
    };
    let mut c = Client::connect(&b.addr, &opts(&b, &[Capability::Exec, Capability::Cp])).unwrap();
    assert!(c.is_authenticated() && c.granted().is_empty());
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
    let key = Some(b.supervisor_key.clone());
    let mut s = RawSession::open(&b, &[Capability::Exec, Capability::Cp], key);
    let requests = [
        Request::Exec(req(&["true"])),
        Request::CpFrom {
            src: "/etc/passwd".into(),
        },
        Request::Attest(AttestRequest {
            public_key: Some(vec![1; 97]),
            ..Default::default()
        }),
        Request::Ping { payload: 9 },
    ];
    for (request, id) in requests.into_iter().zip(1..) {
        s.send(&ClientMessage::Request { id, request });
    }
    for id in [1, 2, 3] {
        match s.read_one() {
            ServerMessage::Error { id: rid, code, .. } => {
                assert_eq!((rid, code), (id, ErrorCode::PermissionDenied))
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(s.read_one(), ServerMessage::Reply { id: 4, .. }));
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
fn nobody_without_a_key_gets_more_than_ping_and_info() {
    let right = SigningKey::from_bytes(&[7; 32]);
    let wrong = SigningKey::from_bytes(&[8; 32]);
    let b64 = base64::engine::general_purpose::STANDARD.encode(right.verifying_key().to_bytes());
    let spec = serde_json::json!({
        "debug": {"exec": true, "cp": true, "authorized_keys": [b64]}
    });
    let Some(b) = boot(&spec) else { return };

    // The operator (the supervisor's key) and a listed key: in, and exec works.
    for key in [b.supervisor_key.clone(), right] {
        let mut c =
            Client::connect(&b.addr, &opts_with(&b, &[Capability::Exec], Some(key))).unwrap();
        let o = exec(&mut c, req(&["echo", "in"]), None).unwrap();
        assert_eq!(o.stdout, b"in\n");
    }
    // A wrong key: auth_failed, connection closed.
    match Client::connect(&b.addr, &opts_with(&b, &[Capability::Exec], Some(wrong))) {
        Err(ClientError::Session(SessionError::Remote { code, .. })) => {
            assert_eq!(code, ErrorCode::AuthFailed)
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a wrong key was accepted"),
    }
    // No key: connected, ping and info answered, nothing else sent by the library.
    let mut c = Client::connect(&b.addr, &opts_with(&b, &[], None)).unwrap();
    assert!(!c.is_authenticated());
    assert_eq!(c.ping(1).unwrap(), 1);
    c.info().unwrap();
    let e = c.service(ServiceRequest::List).unwrap_err();
    assert!(
        matches!(e, ClientError::Session(SessionError::KeyRequired)),
        "{e}"
    );

    // A raw client without a key asking anyway: auth_required, then the server closes, for
    // each of logs, services, shutdown, exec, cp and attest.
    let refused = [
        Request::Services(ServiceRequest::Logs {
            name: "main".into(),
            follow: false,
            tail: None,
            since: None,
        }),
        Request::Services(ServiceRequest::List),
        Request::Services(ServiceRequest::Stop {
            name: "main".into(),
        }),
        Request::Shutdown,
        Request::Exec(req(&["touch", "/tmp/pwned"])),
        Request::CpTo {
            dest: "/tmp".into(),
        },
        Request::CpFrom {
            src: "/etc/shadow".into(),
        },
        Request::Attest(AttestRequest {
            nonce: Some(vec![1; 32]),
            ..Default::default()
        }),
    ];
    for request in refused {
        let mut s = RawSession::open(&b, &[Capability::Exec, Capability::Cp], None);
        s.send(&ClientMessage::Request {
            id: 1,
            request: request.clone(),
        });
        if let Request::CpTo { .. } = request {
            s.send(&ClientMessage::CpEntry {
                id: 1,
                entry: CpEntry {
                    path: "pwned".into(),
                    mode: 0o644,
                    kind: CpKind::File { size: 0 },
                },
            });
        }
        let msgs = s.read_all();
        assert!(
            matches!(
                msgs.as_slice(),
                [ServerMessage::Error {
                    id: 0,
                    code: ErrorCode::AuthRequired,
                    ..
                }]
            ),
            "{request:?}: {msgs:?}"
        );
    }
    // Nothing of the above happened: main still runs, no file appeared.
    let mut c = Client::connect(&b.addr, &opts(&b, &[Capability::Exec])).unwrap();
    let o = exec(
        &mut c,
        req(&["sh", "-c", "ls /tmp; pidof sleep >/dev/null && echo up"]),
        None,
    )
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "up\n");
}

/// A session that proved a key gets the larger send buffer `cp` needs; one that did not keeps
/// the kernel's default (docs/security.md: an unauthenticated peer cannot make the enclave
/// hold a megabyte per connection).
#[test]
fn only_a_session_with_a_proven_key_gets_the_larger_send_buffer() {
    let Some(b) = boot(&serde_json::json!({})) else {
        return;
    };
    let pinged = |s: &mut RawSession| {
        // Answered after the frame before it was handled (and the buffer raised, if due).
        s.send(&ClientMessage::Request {
            id: 1,
            request: Request::Ping { payload: 5 },
        });
        let pong = s.read_one();
        assert!(
            matches!(pong, ServerMessage::Reply { id: 1, .. }),
            "{pong:?}"
        );
    };
    let mut anonymous = RawSession::open(&b, &[], None);
    pinged(&mut anonymous);
    let mut operator = RawSession::open(&b, &[], Some(b.supervisor_key.clone()));
    pinged(&mut operator);
    let bulk = 2 * enclave_proto::transport::BULK_SEND_BUFFER as u64;
    let anonymous_buffer = enclave_send_buffer(anonymous.inode());
    assert!(anonymous_buffer < bulk, "{anonymous_buffer}");
    // The kernel doubles what is asked for its bookkeeping.
    assert_eq!(enclave_send_buffer(operator.inode()), bulk);
}

#[test]
fn a_client_refuses_an_enclave_other_than_the_pinned_one() {
    let Some(b) = boot(&serde_json::json!({})) else {
        return;
    };
    let mut wrong = opts(&b, &[]);
    wrong.security = enclave_proto::wire::Security::Remote(ServerCheck::Pinned([9; 32]));
    match Client::connect(&b.addr, &wrong) {
        Err(ClientError::Session(SessionError::Handshake(m))) => {
            assert!(m.contains("not the one its supervisor pinned"), "{m}")
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("an unexpected identity was accepted"),
    }
    assert_eq!(ping(&b), 3);
}

#[test]
fn idle_connections_cannot_lock_the_operator_out() {
    let Some(b) = boot(&serde_json::json!({})) else {
        return;
    };
    // 300 connections that say nothing, then 50 that stay unauthenticated after the
    // handshake: more than every limit.
    let idle: Vec<_> = (0..300).map(|_| raw(&b.addr)).collect();
    let unauthenticated: Vec<_> = (0..50)
        .map(|_| Client::connect(&b.addr, &opts_with(&b, &[], None)))
        .collect();
    // Once they are older than the grace period an honest client needs to prove its key, the
    // operator gets in, and so does the next one.
    std::thread::sleep(support::control::GRACE + std::time::Duration::from_millis(500));
    for _ in 0..2 {
        let mut c = Client::connect(&b.addr, &opts(&b, &[])).unwrap();
        assert!(matches!(
            c.service(ServiceRequest::List).unwrap(),
            enclave_proto::wire::Reply::Services { .. }
        ));
    }
    drop((idle, unauthenticated));
}

#[test]
fn bad_frames_get_an_error_or_a_close_and_the_server_goes_on() {
    let Some(b) = boot(&serde_json::json!({"debug": {"exec": true}})) else {
        return;
    };
    // In clear, before the handshake.
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
        ("request instead of the handshake", {
            hello.extend(frame(&ClientMessage::Request {
                id: 1,
                request: Request::Info,
            }));
            hello.clone()
        }),
        ("a handshake that is not Noise", {
            let mut f = hello_frame(&[]);
            f.extend(frame(&ClientMessage::Handshake { noise: vec![7; 10] }));
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
        assert_eq!(ping(&b), 3, "{what}: the server stopped serving");
    }
    // Inside the encrypted stream, authenticated.
    let inside: Vec<(&str, Vec<u8>)> = vec![
        ("oversize length", vec![0x7f, 0xff, 0xff, 0xff]),
        ("garbage CBOR", vec![0, 0, 0, 3, 0xff, 0x00, 0x13]),
        (
            "data for an unknown request",
            frame(&ClientMessage::Cancel { id: 5 }),
        ),
        ("decreasing ids", {
            let mut f = frame(&ClientMessage::Request {
                id: 5,
                request: Request::Info,
            });
            f.extend(frame(&ClientMessage::Request {
                id: 4,
                request: Request::Info,
            }));
            f
        }),
        ("second hello", hello_frame(&[])),
    ];
    for (what, bytes) in inside {
        let mut s = RawSession::open(&b, &[], Some(b.supervisor_key.clone()));
        s.send_bytes(&bytes);
        let msgs = s.read_all();
        assert!(
            matches!(
                msgs.last(),
                Some(ServerMessage::Error {
                    id: 0,
                    code: ErrorCode::Protocol,
                    ..
                })
            ),
            "{what}: {msgs:?}"
        );
        assert_eq!(ping(&b), 3, "{what}: the server stopped serving");
    }
    // A peer without a key gets small frames only (it cannot make the enclave allocate much),
    // an authenticated one the whole frame size: here an exec whose arguments are 200 KB.
    let mut s = RawSession::open(&b, &[], None);
    s.send_bytes(&100_000u32.to_be_bytes());
    let msgs = s.read_all();
    assert!(
        matches!(
            msgs.last(),
            Some(ServerMessage::Error { id: 0, code: ErrorCode::Protocol, message })
                if message.contains("100000")
        ),
        "{msgs:?}"
    );
    let mut c = Client::connect(&b.addr, &opts(&b, &[Capability::Exec])).unwrap();
    let part = "x".repeat(50_000);
    let script = "echo $(( ${#1} + ${#2} + ${#3} + ${#4} ))";
    let argv = ["sh", "-c", script, "sh", &part, &part, &part, &part];
    let o = exec(&mut c, req(&argv), None).unwrap();
    assert_eq!(o.stdout, b"200000\n");
    // Bytes that are not records of the session after the handshake: the server closes
    // without a word (it cannot tell garbage from an attack, and answers neither).
    let mut s = RawSession::open(&b, &[], None);
    s.send_unsealed(&[
        0, 40, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    ]);
    s.send_unsealed(&[7; 30]);
    s.shutdown_write();
    assert!(s.read_all().is_empty());
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
    assert_eq!(ping(&b), 3);
}
