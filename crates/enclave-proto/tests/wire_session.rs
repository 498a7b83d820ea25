//! The session state machines: set-up order, the handshake, authentication, what an
//! unauthenticated peer gets, request ids, stream rules.

use enclave_proto::wire::secure::ServerCheck;
use enclave_proto::wire::{
    encode, AttestRequest, Auth, Capability, Channel, ClientHello, ClientMessage, ClientSession,
    ErrorCode, Request, ServerMessage, ServiceRequest, SessionError, Verdict,
};

mod session_support;
use session_support::*;

#[test]
fn request_before_hello_is_refused() {
    let mut s = server(&[], &[]);
    let ping = ClientMessage::Request {
        id: 1,
        request: Request::Ping { payload: 1 },
    };
    let err = s.on_recv(&ping).unwrap_err();
    assert_eq!(err, SessionError::HelloFirst);
    assert!(err.is_fatal());
    assert!(matches!(
        err.to_message(),
        ServerMessage::Error {
            id: 0,
            code: ErrorCode::Protocol,
            ..
        }
    ));
    // The session is dead afterwards, even for a hello.
    assert!(s.on_recv(&hello(&[])).is_err());
}

#[test]
fn version_one_is_refused_and_newer_negotiated_down() {
    for old in [0, 1] {
        let mut s = server(&[], &[]);
        let hello = ClientMessage::Hello(ClientHello {
            version: old,
            capabilities: vec![],
            client: String::new(),
        });
        assert_eq!(
            s.on_recv(&hello).unwrap_err().code(),
            ErrorCode::UnsupportedVersion,
            "version {old} had no encrypted session and must not be spoken"
        );
    }
    let mut s = server(&[], &[]);
    let newer = ClientMessage::Hello(ClientHello {
        version: 9,
        capabilities: vec![],
        client: String::new(),
    });
    let Ok(Verdict::Respond(ServerMessage::Hello(h))) = s.on_recv(&newer) else {
        panic!()
    };
    assert_eq!(h.version, enclave_proto::wire::PROTOCOL_VERSION);
    assert_eq!(
        h.handshake.as_deref(),
        Some(enclave_proto::wire::secure::NOISE_PARAMS)
    );
    // A version-2 client (before `info` carried the control counts) is still spoken to.
    let mut s = server(&[], &[]);
    let two = ClientMessage::Hello(ClientHello {
        version: 2,
        capabilities: vec![],
        client: String::new(),
    });
    let Ok(Verdict::Respond(ServerMessage::Hello(h))) = s.on_recv(&two) else {
        panic!()
    };
    assert_eq!(h.version, 2);
}

#[test]
fn the_host_facing_server_wants_the_handshake_before_anything() {
    let mut s = server(&[], &[key(1)]);
    s.on_recv(&hello(&[])).unwrap();
    let ping = ClientMessage::Request {
        id: 1,
        request: Request::Ping { payload: 1 },
    };
    let err = s.on_recv(&ping).unwrap_err();
    assert_eq!(err, SessionError::HandshakeRequired);
    assert!(err.is_fatal());
}

#[test]
fn capabilities_granted_are_wanted_and_allowed() {
    let mut s = server(&[Capability::Exec], &[key(1)]);
    let wanted = [Capability::Exec, Capability::Cp, Capability::Unknown];
    let mut c = client(&wanted, Some(key(1)));
    connect(&mut s, &mut c).unwrap();
    assert_eq!(c.granted(), &[Capability::Exec]);
    assert_eq!(s.granted(), &[Capability::Exec]);
    // cp was wanted but not allowed: permission denied, the connection lives on.
    let err = s
        .on_recv(&ClientMessage::Request {
            id: 1,
            request: Request::CpTo { dest: "/d".into() },
        })
        .unwrap_err();
    assert_eq!(
        err,
        SessionError::PermissionDenied {
            id: 1,
            capability: Capability::Cp
        }
    );
    assert!(!err.is_fatal());
    s.check_send(&err.to_message()).unwrap();
    // Data the client sent for it anyway is dropped, not an error.
    assert_eq!(s.on_recv(&data(1, Channel::File, 3)), Ok(Verdict::Discard));
    let ping = ClientMessage::Request {
        id: 2,
        request: Request::Ping { payload: 1 },
    };
    assert_eq!(s.on_recv(&ping), Ok(Verdict::Deliver));
}

#[test]
fn default_off_debug_capabilities() {
    let mut s = ready_server(&[]);
    let err = s
        .on_recv(&ClientMessage::Request {
            id: 1,
            request: exec(false),
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
}

#[test]
fn an_unauthenticated_peer_gets_ping_and_info_only() {
    let refused = [
        Request::Services(ServiceRequest::List),
        Request::Services(ServiceRequest::Logs {
            name: "main".into(),
            follow: false,
            tail: None,
            since: None,
        }),
        Request::Services(ServiceRequest::Stop {
            name: "main".into(),
        }),
        Request::Shutdown,
        exec(false),
        Request::CpTo { dest: "/".into() },
        Request::CpFrom { src: "/etc".into() },
        Request::Attest(AttestRequest {
            nonce: Some(vec![1; 32]),
            ..Default::default()
        }),
    ];
    for request in refused {
        // Even with every capability in the spec: no key, no service.
        let mut s = server(&[Capability::Exec, Capability::Cp], &[key(1)]);
        let mut c = client(&[], None);
        connect(&mut s, &mut c).unwrap();
        assert!(s.is_open() && !s.is_ready());
        for (id, ok) in [(1, Request::Ping { payload: 7 }), (2, Request::Info)] {
            let msg = ClientMessage::Request { id, request: ok };
            assert_eq!(s.on_recv(&msg), Ok(Verdict::Deliver));
        }
        let msg = ClientMessage::Request {
            id: 3,
            request: request.clone(),
        };
        let err = s.on_recv(&msg).unwrap_err();
        assert_eq!(err, SessionError::AuthRequired, "{request:?}");
        assert!(err.is_fatal());
        // The client library refuses before sending.
        assert_eq!(c.request(request).unwrap_err(), SessionError::KeyRequired);
    }
}

#[test]
fn auth_accepted_with_the_right_key() {
    let mut s = server(&[], &[key(1), key(2)]);
    let mut c = client(&[], Some(key(2)));
    connect(&mut s, &mut c).unwrap();
    assert!(s.is_ready() && c.is_ready() && c.is_authenticated());
    assert_eq!(s.authenticated_key(), Some(&key(2).verifying_key()));
}

#[test]
fn auth_refused_with_a_wrong_key_or_another_sessions_signature() {
    // An unlisted key.
    let mut s = server(&[], &[key(1)]);
    let mut c = client(&[], Some(key(3)));
    let err = connect(&mut s, &mut c).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailed);
    assert!(err.is_fatal());

    // The listed key's id with someone else's signature.
    let mut s = server(&[], &[key(1)]);
    let mut c = client(&[], None);
    connect(&mut s, &mut c).unwrap();
    let mut forged = Auth::sign(&key(3), &[0; 32]);
    forged.public_key = key(1).verifying_key().to_bytes();
    assert_eq!(
        s.on_recv(&ClientMessage::Auth(forged)).unwrap_err().code(),
        ErrorCode::AuthFailed
    );

    // A valid signature of the listed key, made for another session (a replay, or a relay's
    // attempt to reuse the client's proof in its own session with the enclave).
    let mut s = server(&[], &[key(1)]);
    let mut c = client(&[], None);
    connect(&mut s, &mut c).unwrap();
    let mut stolen = client(&[], Some(key(1)));
    let mut sink = server(&[], &[key(1)]);
    // `stolen` signs over the hash of its own session with `sink`.
    let auth = {
        let mut to_server = vec![encode(&stolen.hello().unwrap()).unwrap()];
        let mut auth = None;
        while let Some(frame) = to_server.pop() {
            let (_, v) = sink.on_recv_frame(&frame).unwrap();
            let _ = sink.take_transport();
            if let Verdict::Respond(answer) = v {
                let (_, v) = stolen.on_recv_frame(&encode(&answer).unwrap()).unwrap();
                if let Verdict::Respond(next) = v {
                    to_server.push(encode(&next).unwrap());
                }
                if stolen.take_transport().is_some() {
                    auth = stolen.auth().unwrap();
                }
            }
        }
        auth.unwrap()
    };
    assert_eq!(
        s.on_recv(&auth).unwrap_err().code(),
        ErrorCode::AuthFailed,
        "a proof made for one session is worthless in another"
    );
}

#[test]
fn a_server_with_no_keys_serves_ping_and_info_to_anyone_and_nothing_else() {
    let mut s = server(&[Capability::Exec], &[]);
    let mut c = client(&[], Some(key(1)));
    let err = connect(&mut s, &mut c).unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailed);
    let mut s = server(&[Capability::Exec], &[]);
    let mut c = client(&[], None);
    connect(&mut s, &mut c).unwrap();
    let info = ClientMessage::Request {
        id: 1,
        request: Request::Info,
    };
    assert_eq!(s.on_recv(&info), Ok(Verdict::Deliver));
}

#[test]
fn the_client_refuses_an_enclave_that_is_not_the_pinned_one() {
    let impostor = {
        let id = enclave_proto::wire::secure::ControlIdentity::generate().unwrap();
        std::sync::Arc::new(id)
    };
    let mut s = server_with(&[], &[key(1)], impostor);
    let mut c = client(&[], Some(key(1)));
    let err = connect(&mut s, &mut c).unwrap_err();
    assert!(
        matches!(&err, SessionError::Handshake(m) if m.contains("not the one its supervisor pinned")),
        "{err}"
    );
    // With the document check, the verifier sees the key and the document.
    struct Refuse;
    impl enclave_proto::wire::secure::IdentityVerifier for Refuse {
        fn verify(&self, key: &[u8; 32], document: Option<&[u8]>) -> Result<(), String> {
            assert_eq!(*key, identity().public_key());
            assert_eq!(document, Some(&b"identity document"[..]));
            Err("PCR0 differs".into())
        }
    }
    let mut s = server(&[], &[key(1)]);
    let mut c = client_checking(
        &[],
        Some(key(1)),
        ServerCheck::Verify(std::sync::Arc::new(Refuse)),
    );
    let err = connect(&mut s, &mut c).unwrap_err();
    assert!(
        matches!(&err, SessionError::Handshake(m) if m.contains("PCR0 differs")),
        "{err}"
    );
}

#[test]
fn a_changed_hello_breaks_the_handshake() {
    // A relay lowers the client's wanted capabilities (or anything else) on the way: the
    // prologue differs and the server's handshake answer does not decrypt for the client.
    let mut s = server(&[Capability::Exec], &[key(1)]);
    let mut c = client(&[Capability::Exec], Some(key(1)));
    let sent = c.hello().unwrap();
    let ClientMessage::Hello(mut changed) = sent else {
        panic!()
    };
    changed.client = "relay".into();
    let (_, v) = s
        .on_recv_frame(&encode(&ClientMessage::Hello(changed)).unwrap())
        .unwrap();
    let Verdict::Respond(sh) = v else { panic!() };
    let (_, v) = c.on_recv_frame(&encode(&sh).unwrap()).unwrap();
    let Verdict::Respond(msg1) = v else { panic!() };
    let (_, v) = s.on_recv_frame(&encode(&msg1).unwrap()).unwrap();
    let Verdict::Respond(msg2) = v else { panic!() };
    let err = c.on_recv_frame(&encode(&msg2).unwrap()).unwrap_err();
    assert!(matches!(err, SessionError::Handshake(_)), "{err}");
}

#[test]
fn local_sessions_need_no_handshake_and_get_no_debug_capability() {
    let mut s = local_server();
    let mut c = ClientSession::new(Default::default());
    connect(&mut s, &mut c).unwrap();
    assert!(s.is_ready() && c.is_ready());
    // Inside the enclave a caller may bind its own key into a document...
    let attest = Request::Attest(AttestRequest {
        public_key: Some(vec![1; 97]),
        user_data: Some(b"enclave-engine anything".to_vec()),
        nonce: None,
    });
    let (id, msg) = c.request(attest).unwrap();
    assert_eq!(s.on_recv(&msg), Ok(Verdict::Deliver));
    s.check_send(&ServerMessage::Error {
        id,
        code: ErrorCode::NotFound,
        message: String::new(),
    })
    .unwrap();
    // ...but never exec.
    let err = s
        .on_recv(&ClientMessage::Request {
            id: id + 1,
            request: exec(false),
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    // A local client never accepts a server that offers a handshake, nor the other way round.
    let mut remote_client = client(&[], None);
    let mut s = local_server();
    let err = connect(&mut s, &mut remote_client).unwrap_err();
    assert!(matches!(err, SessionError::Downgrade { .. }), "{err}");
    let mut s = server(&[], &[]);
    let mut c = ClientSession::new(Default::default());
    let err = connect(&mut s, &mut c).unwrap_err();
    assert!(matches!(err, SessionError::Downgrade { .. }), "{err}");
}

#[test]
fn the_host_needs_debug_attest_to_bind_its_own_key() {
    let keyed = Request::Attest(AttestRequest {
        nonce: Some(vec![1; 32]),
        public_key: Some(vec![2; 97]),
        user_data: None,
    });
    let data = Request::Attest(AttestRequest {
        nonce: None,
        public_key: None,
        user_data: Some(b"mine".to_vec()),
    });
    let nonce_only = Request::Attest(AttestRequest {
        nonce: Some(vec![1; 32]),
        ..Default::default()
    });
    let (mut s, _) = ready_pair(&[Capability::Exec, Capability::Cp]);
    for (id, r) in [(1, keyed.clone()), (2, data.clone())] {
        let err = s
            .on_recv(&ClientMessage::Request { id, request: r })
            .unwrap_err();
        assert_eq!(
            err,
            SessionError::PermissionDenied {
                id,
                capability: Capability::Attest
            }
        );
    }
    let msg = ClientMessage::Request {
        id: 3,
        request: nonce_only,
    };
    assert_eq!(s.on_recv(&msg), Ok(Verdict::Deliver));
    // With debug.attest granted: allowed, except user_data the enclave reserves for itself.
    let (mut s, _) = ready_pair(&[Capability::Attest]);
    let msg = ClientMessage::Request {
        id: 1,
        request: keyed,
    };
    assert_eq!(s.on_recv(&msg), Ok(Verdict::Deliver));
    let reserved = Request::Attest(AttestRequest {
        user_data: Some(enclave_proto::wire::secure::IDENTITY_USER_DATA.to_vec()),
        ..Default::default()
    });
    let err = s
        .on_recv(&ClientMessage::Request {
            id: 2,
            request: reserved,
        })
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
}

#[test]
fn request_ids_must_increase() {
    let mut s = ready_server(&[]);
    let ping = |id| ClientMessage::Request {
        id,
        request: Request::Ping { payload: 0 },
    };
    s.on_recv(&ping(5)).unwrap();
    let err = s.on_recv(&ping(5)).unwrap_err();
    assert_eq!(err, SessionError::IdNotIncreasing { id: 5, last: 5 });
    assert!(err.is_fatal());
}

#[test]
fn data_for_unknown_ids_is_refused() {
    let mut s = ready_server(&[Capability::Exec]);
    let err = s.on_recv(&data(7, Channel::Stdin, 1)).unwrap_err();
    assert_eq!(err, SessionError::UnknownRequest(7));
    assert!(err.is_fatal());
}

#[test]
fn client_side_refuses_before_ready_and_without_capability() {
    let mut c = client(&[Capability::Exec], Some(key(1)));
    assert_eq!(
        c.request(Request::Info).unwrap_err(),
        SessionError::NotReady
    );
    let mut s = server(&[], &[key(1)]);
    connect(&mut s, &mut c).unwrap();
    assert!(c.granted().is_empty());
    assert!(matches!(
        c.request(exec(false)),
        Err(SessionError::PermissionDenied { .. })
    ));
    let (id, msg) = c.request(Request::Info).unwrap();
    assert!(id > 1, "ids keep increasing past a refused request");
    assert_eq!(s.on_recv(&msg), Ok(Verdict::Deliver));
    // A message for a request the client never made is a protocol error.
    let stray = ServerMessage::Data {
        id: 99,
        channel: Channel::Stdout,
        data: vec![].into(),
    };
    assert!(c.on_recv(&stray).is_err());
}

#[test]
fn connection_errors_reach_the_client_as_errors() {
    let mut c = client(&[], None);
    c.hello().unwrap();
    let err = c
        .on_recv(&ServerMessage::Error {
            id: 0,
            code: ErrorCode::AuthFailed,
            message: "no".into(),
        })
        .unwrap_err();
    assert!(matches!(
        err,
        SessionError::Remote {
            code: ErrorCode::AuthFailed,
            ..
        }
    ));
}
