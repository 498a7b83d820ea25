//! The session state machines, per request: stream rules, flow control, cp structure and
//! paths, invalid requests.

use enclave_proto::wire::{
    Capability, Channel, ClientMessage, CpEntry, CpKind, ErrorCode, ExecRequest, ExitStatus, Reply,
    Request, ServerMessage, ServerSession, SessionError, Verdict, INITIAL_WINDOW, MAX_DATA_CHUNK,
};

mod session_support;
use session_support::*;

#[test]
fn stream_rules() {
    let mut s = requested(&[Capability::Exec], exec(true));
    // Nothing before Started.
    assert!(matches!(
        s.on_recv(&data(1, Channel::Stdin, 1)),
        Err(SessionError::StreamProtocol { id: 1, .. })
    ));

    let mut s = requested(&[Capability::Exec], exec(true));
    // The server cannot send data before starting, nor a reply of another operation.
    assert!(s
        .check_send(&ServerMessage::Data {
            id: 1,
            channel: Channel::Stdout,
            data: vec![1].into()
        })
        .is_err());
    assert!(s
        .check_send(&ServerMessage::Reply {
            id: 1,
            reply: Reply::Pong { payload: 0 }
        })
        .is_err());
    s.check_send(&ServerMessage::Started {
        id: 1,
        pid: Some(9),
    })
    .unwrap();
    assert_eq!(
        s.on_recv(&data(1, Channel::Stdin, 10)),
        Ok(Verdict::Deliver)
    );
    // Clients do not write stdout; stdin ends once.
    assert!(s.on_recv(&data(1, Channel::Stdout, 1)).is_err());
    let mut s2 = started(&[Capability::Exec], exec(true));
    s2.on_recv(&ClientMessage::Eof {
        id: 1,
        channel: Channel::Stdin,
    })
    .unwrap();
    assert!(s2.on_recv(&data(1, Channel::Stdin, 1)).is_err());
    // Resize needs a tty.
    let mut s3 = started(&[Capability::Exec], exec(false));
    let resize = ClientMessage::Resize {
        id: 1,
        size: enclave_proto::wire::WindowSize { rows: 1, cols: 1 },
    };
    assert!(s3.on_recv(&resize).is_err());
    // Without `stdin`, no stdin data.
    let mut s4 = started(&[Capability::Exec], exec(false));
    assert!(s4.on_recv(&data(1, Channel::Stdin, 1)).is_err());
    // That was fatal: the session refuses everything now.
    assert_eq!(
        s4.on_recv(&ClientMessage::Cancel { id: 1 }),
        Err(SessionError::NotReady)
    );
    // After Exit the request is over: late stdin is discarded; the server cannot send more.
    let mut s4 = started(&[Capability::Exec], exec(true));
    s4.check_send(&ServerMessage::Exit {
        id: 1,
        status: ExitStatus::Code(0),
    })
    .unwrap();
    assert_eq!(
        s4.on_recv(&data(1, Channel::Stdin, 1)),
        Ok(Verdict::Discard)
    );
    assert_eq!(
        s4.check_send(&ServerMessage::Data {
            id: 1,
            channel: Channel::Stdout,
            data: vec![].into()
        }),
        Err(SessionError::Ended(1))
    );
}

#[test]
fn data_beyond_the_window_is_refused() {
    let mut s = started(&[Capability::Exec], exec(true));
    let chunks = INITIAL_WINDOW as usize / MAX_DATA_CHUNK;
    for _ in 0..chunks {
        assert_eq!(
            s.on_recv(&data(1, Channel::Stdin, MAX_DATA_CHUNK)),
            Ok(Verdict::Deliver)
        );
    }
    let err = s.on_recv(&data(1, Channel::Stdin, 1)).unwrap_err();
    assert_eq!(err.code(), ErrorCode::FlowControl);
    assert!(err.is_fatal());

    // With a window update in between, the same traffic is fine.
    let mut s = started(&[Capability::Exec], exec(true));
    for _ in 0..chunks {
        s.on_recv(&data(1, Channel::Stdin, MAX_DATA_CHUNK)).unwrap();
    }
    assert_eq!(s.send_credit(1), Some(INITIAL_WINDOW));
    s.check_send(&ServerMessage::WindowUpdate { id: 1, bytes: 1 })
        .unwrap();
    assert_eq!(s.on_recv(&data(1, Channel::Stdin, 1)), Ok(Verdict::Deliver));
    // A window grown without bound is refused.
    let grow = ServerMessage::WindowUpdate {
        id: 1,
        bytes: u32::MAX,
    };
    assert_eq!(
        s.check_send(&grow).unwrap_err().code(),
        ErrorCode::FlowControl
    );

    // The sending side refuses to overrun the window too.
    let mut s = started(&[Capability::Exec], exec(false));
    let out = |n| ServerMessage::Data {
        id: 1,
        channel: Channel::Stdout,
        data: vec![0; n].into(),
    };
    for _ in 0..chunks {
        s.check_send(&out(MAX_DATA_CHUNK)).unwrap();
    }
    assert_eq!(s.send_credit(1), Some(0));
    assert_eq!(
        s.check_send(&out(1)).unwrap_err().code(),
        ErrorCode::FlowControl
    );
    s.on_recv(&ClientMessage::WindowUpdate { id: 1, bytes: 10 })
        .unwrap();
    s.check_send(&out(10)).unwrap();
}

fn cp_server() -> ServerSession {
    started(
        &[Capability::Cp],
        Request::CpTo {
            dest: "/data".into(),
        },
    )
}

fn entry(path: &str, kind: CpKind) -> ClientMessage {
    ClientMessage::CpEntry {
        id: 1,
        entry: CpEntry {
            path: path.into(),
            mode: 0o644,
            kind,
        },
    }
}

#[test]
fn cp_stream_structure_and_paths() {
    let file = |size| CpKind::File { size };
    let end = ClientMessage::CpFileEnd { id: 1 };
    let mut s = cp_server();
    s.on_recv(&entry("d", CpKind::Dir)).unwrap();
    s.on_recv(&entry("d/f", file(5))).unwrap();
    s.on_recv(&data(1, Channel::File, 3)).unwrap();
    // The next entry before the file is complete ends the request (bad request, not fatal).
    let err = s.on_recv(&entry("d/g", file(1))).unwrap_err();
    assert_eq!(err.code(), ErrorCode::BadRequest);
    assert!(!err.is_fatal());
    assert_eq!(s.on_recv(&data(1, Channel::File, 2)), Ok(Verdict::Discard));

    for (path, kind) in [
        ("../etc/passwd", file(0)),
        ("/etc/passwd", file(0)),
        ("a/../../b", CpKind::Dir),
        (
            "l",
            CpKind::Symlink {
                target: "../outside".into(),
            },
        ),
        (
            "l",
            CpKind::Symlink {
                target: "/etc".into(),
            },
        ),
        (
            "d/l",
            CpKind::Symlink {
                target: "x/../../..".into(),
            },
        ),
    ] {
        let mut s = cp_server();
        let err = s.on_recv(&entry(path, kind)).unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest, "{path}");
    }

    // More content than announced; done or the end marker before the content is complete; done
    // or the next entry before the end marker; an end marker without a file; done twice.
    let mut s = cp_server();
    s.on_recv(&entry("f", file(2))).unwrap();
    assert_eq!(
        s.on_recv(&data(1, Channel::File, 3)).unwrap_err().code(),
        ErrorCode::BadRequest
    );
    let mut s = cp_server();
    s.on_recv(&entry("f", file(2))).unwrap();
    assert!(s.on_recv(&ClientMessage::CpDone { id: 1 }).is_err());
    let mut s = cp_server();
    s.on_recv(&entry("f", file(2))).unwrap();
    s.on_recv(&data(1, Channel::File, 1)).unwrap();
    assert_eq!(s.on_recv(&end).unwrap_err().code(), ErrorCode::BadRequest);
    let mut s = cp_server();
    s.on_recv(&entry("f", file(2))).unwrap();
    s.on_recv(&data(1, Channel::File, 2)).unwrap();
    assert!(s.on_recv(&ClientMessage::CpDone { id: 1 }).is_err());
    let mut s = cp_server();
    s.on_recv(&entry("f", file(0))).unwrap();
    assert_eq!(
        s.on_recv(&entry("g", file(0))).unwrap_err().code(),
        ErrorCode::BadRequest
    );
    let mut s = cp_server();
    s.on_recv(&entry("d", CpKind::Dir)).unwrap();
    assert!(s.on_recv(&end).is_err());
    let mut s = cp_server();
    s.on_recv(&entry("d", CpKind::Dir)).unwrap();
    assert!(s.on_recv(&data(1, Channel::File, 1)).is_err());

    // A complete upload: the reply only after CpDone.
    let mut s = cp_server();
    s.on_recv(&entry("f", file(2))).unwrap();
    s.on_recv(&data(1, Channel::File, 2)).unwrap();
    s.on_recv(&end).unwrap();
    s.on_recv(&entry("e", file(0))).unwrap();
    s.on_recv(&end).unwrap();
    s.on_recv(&entry("link", CpKind::Symlink { target: "f".into() }))
        .unwrap();
    let complete = ServerMessage::Reply {
        id: 1,
        reply: Reply::CpComplete {
            entries: 3,
            bytes: 2,
        },
    };
    assert!(s.check_send(&complete).is_err());
    s.on_recv(&ClientMessage::CpDone { id: 1 }).unwrap();
    assert!(s.on_recv(&ClientMessage::CpDone { id: 1 }).is_err());
}

#[test]
fn invalid_requests_are_bad_requests() {
    let mut s = ready_server(&[Capability::Exec, Capability::Cp]);
    let bad = [
        Request::Exec(ExecRequest {
            argv: vec![],
            env: vec![],
            cwd: None,
            tty: None,
            stdin: false,
            detach: false,
            user: None,
        }),
        Request::CpTo {
            dest: "relative".into(),
        },
        Request::CpFrom {
            src: "/a\0b".into(),
        },
    ];
    for (request, id) in bad.into_iter().zip(1..) {
        let err = s
            .on_recv(&ClientMessage::Request { id, request })
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::BadRequest);
        assert!(!err.is_fatal());
    }
}

fn downloading_client() -> (enclave_proto::wire::ClientSession, u32) {
    let (_, mut c) = ready_pair(&[Capability::Cp]);
    let (id, _) = c.request(Request::CpFrom { src: "/etc".into() }).unwrap();
    c.on_recv(&ServerMessage::Started { id, pid: None })
        .unwrap();
    (c, id)
}

#[test]
fn cp_download_is_checked_by_the_client() {
    let down = |id, path: &str, kind| ServerMessage::CpEntry {
        id,
        entry: CpEntry {
            path: path.into(),
            mode: 0o644,
            kind,
        },
    };
    let (mut c, id) = downloading_client();
    let file = CpKind::File { size: 4 };
    c.on_recv(&down(id, "etc", CpKind::Dir)).unwrap();
    c.on_recv(&down(id, "etc/hosts", file.clone())).unwrap();
    c.on_recv(&ServerMessage::Data {
        id,
        channel: Channel::File,
        data: b"1234".to_vec().into(),
    })
    .unwrap();
    assert_eq!(c.send_credit(id), Some(INITIAL_WINDOW));
    c.check_send(&ClientMessage::WindowUpdate { id, bytes: 4 })
        .unwrap();
    // The end marker ends the file entry.
    c.on_recv(&ServerMessage::CpFileEnd { id }).unwrap();
    c.on_recv(&ServerMessage::CpDone { id }).unwrap();
    let done = ServerMessage::Reply {
        id,
        reply: Reply::CpComplete {
            entries: 2,
            bytes: 4,
        },
    };
    assert_eq!(c.on_recv(&done), Ok(Verdict::Deliver));
    // The client cannot send entries on a download.
    let (mut c, id) = downloading_client();
    let up = ClientMessage::CpEntry {
        id,
        entry: CpEntry {
            path: "x".into(),
            mode: 0,
            kind: CpKind::Dir,
        },
    };
    assert!(c.check_send(&up).is_err());
    // A hostile server naming a path outside the destination.
    let (mut c, id) = downloading_client();
    assert_eq!(
        c.on_recv(&down(id, "../../home/me/.bashrc", file))
            .unwrap_err()
            .code(),
        ErrorCode::BadRequest
    );
    assert!(!c.is_ready(), "the client closes on any error");
}
