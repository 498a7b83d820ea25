//! The session state machines: handshake order, authentication, request ids, stream rules,
//! flow control.

use enclave_proto::wire::session::ClientConfig;
use enclave_proto::wire::{
    Auth, Capability, Channel, ClientHello, ClientMessage, ClientSession, ErrorCode, Request,
    ServerMessage, SessionError, Verdict,
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
fn old_version_is_refused_and_newer_negotiated_down() {
    let mut s = server(&[], &[]);
    let old = ClientMessage::Hello(ClientHello {
        version: 0,
        capabilities: vec![],
        client: String::new(),
    });
    assert_eq!(
        s.on_recv(&old).unwrap_err().code(),
        ErrorCode::UnsupportedVersion
    );
    let mut s = server(&[], &[]);
    let newer = ClientMessage::Hello(ClientHello {
        version: 9,
        capabilities: vec![],
        client: String::new(),
    });
    let Ok(Verdict::Respond(ServerMessage::Hello(h))) = s.on_recv(&newer) else {
        panic!()
    };
    assert_eq!(h.version, 1);
}

#[test]
fn capabilities_granted_are_wanted_and_allowed() {
    let mut s = server(&[Capability::Exec], &[]);
    let Ok(Verdict::Respond(ServerMessage::Hello(h))) = s.on_recv(&hello(&[
        Capability::Exec,
        Capability::Cp,
        Capability::Unknown,
    ])) else {
        panic!()
    };
    assert_eq!(h.capabilities, vec![Capability::Exec]);
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
    assert!(matches!(
        err.to_message(),
        ServerMessage::Error {
            id: 1,
            code: ErrorCode::PermissionDenied,
            ..
        }
    ));
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
fn auth_accepted_with_the_right_key() {
    let mut s = server(&[], &[key(1), key(2)]);
    let Ok(Verdict::Respond(ServerMessage::Hello(h))) = s.on_recv(&hello(&[])) else {
        panic!()
    };
    assert_eq!(h.challenge, Some(NONCE));
    assert!(!s.is_ready());
    let auth = Auth::sign(&key(2), &NONCE).unwrap();
    assert_eq!(
        s.on_recv(&ClientMessage::Auth(auth)),
        Ok(Verdict::Respond(ServerMessage::Authenticated))
    );
    assert!(s.is_ready());
    assert_eq!(s.authenticated_key(), Some(&key(2).verifying_key()));
}

#[test]
fn auth_refused_with_a_wrong_key_or_none() {
    // An unlisted key.
    let mut s = server(&[], &[key(1)]);
    s.on_recv(&hello(&[])).unwrap();
    let err = s
        .on_recv(&ClientMessage::Auth(Auth::sign(&key(3), &NONCE).unwrap()))
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailed);
    assert!(err.is_fatal());

    // The listed key's id with someone else's signature.
    let mut s = server(&[], &[key(1)]);
    s.on_recv(&hello(&[])).unwrap();
    let mut forged = Auth::sign(&key(3), &NONCE).unwrap();
    forged.public_key = key(1).verifying_key().to_bytes();
    assert_eq!(
        s.on_recv(&ClientMessage::Auth(forged)).unwrap_err().code(),
        ErrorCode::AuthFailed
    );

    // A signature over another session's nonce (replay).
    let mut s = server(&[], &[key(1)]);
    s.on_recv(&hello(&[])).unwrap();
    let replay = Auth::sign(&key(1), &[0x43; 32]).unwrap();
    assert_eq!(
        s.on_recv(&ClientMessage::Auth(replay)).unwrap_err().code(),
        ErrorCode::AuthFailed
    );

    // No auth at all: any request is refused and the connection must close.
    let mut s = server(&[], &[key(1)]);
    s.on_recv(&hello(&[])).unwrap();
    let err = s
        .on_recv(&ClientMessage::Request {
            id: 1,
            request: Request::Ping { payload: 0 },
        })
        .unwrap_err();
    assert_eq!(err, SessionError::AuthRequired);
    assert!(err.is_fatal());
}

#[test]
fn client_answers_the_challenge_or_says_it_has_no_key() {
    let mut s = server(&[], &[key(1)]);
    let mut c = ClientSession::new(ClientConfig {
        key: Some(key(1)),
        ..Default::default()
    });
    let h = c.hello().unwrap();
    let Ok(Verdict::Respond(sh)) = s.on_recv(&h) else {
        panic!()
    };
    let Ok(Verdict::Respond(auth)) = c.on_recv(&sh) else {
        panic!()
    };
    assert!(!c.is_ready());
    let Ok(Verdict::Respond(ok)) = s.on_recv(&auth) else {
        panic!()
    };
    assert_eq!(c.on_recv(&ok), Ok(Verdict::Deliver));
    assert!(c.is_ready() && s.is_ready());

    let mut s = server(&[], &[key(1)]);
    let mut c = ClientSession::new(ClientConfig::default());
    let Ok(Verdict::Respond(sh)) = s.on_recv(&c.hello().unwrap()) else {
        panic!()
    };
    assert_eq!(c.on_recv(&sh), Err(SessionError::KeyRequired));
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
    let mut c = ClientSession::new(ClientConfig {
        capabilities: vec![Capability::Exec],
        ..Default::default()
    });
    assert_eq!(
        c.request(Request::Info).unwrap_err(),
        SessionError::NotReady
    );
    let mut s = server(&[], &[]);
    let Ok(Verdict::Respond(sh)) = s.on_recv(&c.hello().unwrap()) else {
        panic!()
    };
    c.on_recv(&sh).unwrap();
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
        data: vec![],
    };
    assert!(c.on_recv(&stray).is_err());
}

#[test]
fn connection_errors_reach_the_client_as_errors() {
    let mut c = ClientSession::new(ClientConfig::default());
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
