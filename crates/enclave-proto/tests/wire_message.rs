//! Messages: every variant round-trips; garbage, unknown types and fields, oversize data and
//! trailing bytes are refused.

use std::io::Cursor;

use enclave_proto::wire::{
    decode, encode, read_message, write_message, Auth, Capability, Channel, ClientHello,
    ClientMessage, CpEntry, CpKind, EnclaveInfo, ErrorCode, ExecRequest, ExitStatus, Reply,
    Request, ServerHello, ServerMessage, ServiceRequest, ServiceState, ServiceStatus, WindowSize,
    MAX_DATA_CHUNK,
};

fn info() -> EnclaveInfo {
    EnclaveInfo {
        server: "enclave-init 0.1.0".into(),
        name: Some("hello".into()),
        uptime_ms: 1234,
    }
}

fn status() -> ServiceStatus {
    ServiceStatus {
        name: "web".into(),
        state: ServiceState::Running,
        pid: Some(42),
        restarts: 1,
        last_exit: Some(ExitStatus::Signal(9)),
        since_ms: 10,
        oom_kills: 2,
    }
}

fn requests() -> Vec<Request> {
    let exec = ExecRequest {
        argv: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
        env: vec![("A".into(), "b".into())],
        cwd: Some("/tmp".into()),
        tty: Some(WindowSize { rows: 24, cols: 80 }),
        stdin: true,
        detach: false,
        user: Some("nobody:65534".into()),
    };
    let name = || "web".to_string();
    vec![
        Request::Ping { payload: 7 },
        Request::Info,
        Request::Exec(exec.clone()),
        Request::Exec(ExecRequest {
            tty: None,
            stdin: false,
            detach: true,
            cwd: None,
            ..exec
        }),
        Request::CpTo {
            dest: "/data".into(),
        },
        Request::CpFrom {
            src: "/etc/hostname".into(),
        },
        Request::Services(ServiceRequest::List),
        Request::Services(ServiceRequest::Status { name: name() }),
        Request::Services(ServiceRequest::Start { name: name() }),
        Request::Services(ServiceRequest::Stop { name: name() }),
        Request::Services(ServiceRequest::Restart { name: name() }),
        Request::Services(ServiceRequest::Logs {
            name: name(),
            follow: true,
            tail: Some(10),
            since: Some(5),
        }),
        Request::Shutdown,
    ]
}

fn entries() -> Vec<CpEntry> {
    vec![
        CpEntry {
            path: "d".into(),
            mode: 0o755,
            kind: CpKind::Dir,
        },
        CpEntry {
            path: "d/f".into(),
            mode: 0o644,
            kind: CpKind::File { size: 3 },
        },
        CpEntry {
            path: "d/l".into(),
            mode: 0o777,
            kind: CpKind::Symlink { target: "f".into() },
        },
    ]
}

fn client_messages() -> Vec<ClientMessage> {
    let mut all = vec![
        ClientMessage::Hello(ClientHello {
            version: 2,
            capabilities: vec![Capability::Exec, Capability::Cp],
            client: "enclave-ctl 0.1.0".into(),
        }),
        ClientMessage::Handshake { noise: vec![4; 32] },
        ClientMessage::Auth(Auth {
            public_key: [1; 32],
            signature: [3; 64],
        }),
        ClientMessage::Data {
            id: 1,
            channel: Channel::Stdin,
            data: vec![0xab; MAX_DATA_CHUNK].into(),
        },
        ClientMessage::Data {
            id: 1,
            channel: Channel::File,
            data: vec![].into(),
        },
        ClientMessage::Eof {
            id: 1,
            channel: Channel::Stdin,
        },
        ClientMessage::Resize {
            id: 1,
            size: WindowSize {
                rows: 50,
                cols: 132,
            },
        },
        ClientMessage::Signal { id: 1, signal: 2 },
        ClientMessage::CpFileEnd { id: 3 },
        ClientMessage::CpDone { id: 3 },
        ClientMessage::WindowUpdate {
            id: 1,
            bytes: 65536,
        },
        ClientMessage::Cancel { id: 1 },
    ];
    all.extend(
        requests()
            .into_iter()
            .zip(1..)
            .map(|(request, id)| ClientMessage::Request { id, request }),
    );
    all.extend(
        entries()
            .into_iter()
            .map(|entry| ClientMessage::CpEntry { id: 3, entry }),
    );
    all
}

fn server_messages() -> Vec<ServerMessage> {
    let replies = vec![
        Reply::Pong { payload: 7 },
        Reply::Info {
            enclave: info(),
            version: 1,
            capabilities: vec![Capability::Exec],
            control: None,
        },
        Reply::Info {
            enclave: info(),
            version: 3,
            capabilities: vec![],
            control: Some(enclave_proto::wire::ControlCounts {
                sessions: 9,
                auth_failures: 1,
            }),
        },
        Reply::Detached { pid: 77 },
        Reply::Services {
            services: vec![status(), status()],
        },
        Reply::Service { status: status() },
        Reply::CpComplete {
            entries: 3,
            bytes: 3,
        },
        Reply::Done,
    ];
    let mut all = vec![
        ServerMessage::Hello(ServerHello {
            version: 2,
            enclave: info(),
            handshake: Some("Noise_NX_25519_AESGCM_SHA256".into()),
        }),
        ServerMessage::Hello(ServerHello {
            version: 2,
            enclave: info(),
            handshake: None,
        }),
        ServerMessage::Handshake { noise: vec![6; 96] },
        ServerMessage::Authenticated {
            capabilities: vec![Capability::Cp, Capability::Attest],
        },
        ServerMessage::Started {
            id: 1,
            pid: Some(12),
        },
        ServerMessage::Started { id: 2, pid: None },
        ServerMessage::Data {
            id: 1,
            channel: Channel::Stdout,
            data: b"hi\n".to_vec().into(),
        },
        ServerMessage::Data {
            id: 1,
            channel: Channel::Stderr,
            data: vec![0; 10].into(),
        },
        ServerMessage::Eof {
            id: 1,
            channel: Channel::Stdout,
        },
        ServerMessage::CpFileEnd { id: 2 },
        ServerMessage::CpDone { id: 2 },
        ServerMessage::Exit {
            id: 1,
            status: ExitStatus::Code(3),
        },
        ServerMessage::Exit {
            id: 1,
            status: ExitStatus::Signal(15),
        },
        ServerMessage::WindowUpdate { id: 1, bytes: 1 },
        ServerMessage::Error {
            id: 0,
            code: ErrorCode::Protocol,
            message: "bad".into(),
        },
        ServerMessage::Error {
            id: 4,
            code: ErrorCode::PermissionDenied,
            message: "no".into(),
        },
    ];
    all.extend(
        replies
            .into_iter()
            .map(|reply| ServerMessage::Reply { id: 9, reply }),
    );
    all.extend(
        entries()
            .into_iter()
            .map(|entry| ServerMessage::CpEntry { id: 2, entry }),
    );
    all
}

#[test]
fn every_message_round_trips() {
    for msg in client_messages() {
        let bytes = encode(&msg).unwrap();
        assert_eq!(decode::<ClientMessage>(&bytes).unwrap(), msg);
    }
    for msg in server_messages() {
        let bytes = encode(&msg).unwrap();
        assert_eq!(decode::<ServerMessage>(&bytes).unwrap(), msg);
    }
}

#[test]
fn messages_round_trip_through_frames() {
    let mut wire = Vec::new();
    for msg in client_messages() {
        write_message(&mut wire, &msg).unwrap();
    }
    let mut reader = Cursor::new(wire);
    for msg in client_messages() {
        assert_eq!(
            read_message::<ClientMessage>(&mut reader).unwrap(),
            Some(msg)
        );
    }
    assert!(read_message::<ClientMessage>(&mut reader)
        .unwrap()
        .is_none());
}

#[test]
fn data_is_a_compact_byte_string() {
    // 64 KiB of 0xff must stay ~64 KiB (a CBOR byte string, not an array of integers).
    let msg = ClientMessage::Data {
        id: 1,
        channel: Channel::Stdin,
        data: vec![0xff; MAX_DATA_CHUNK].into(),
    };
    assert!(encode(&msg).unwrap().len() < MAX_DATA_CHUNK + 64);
}
