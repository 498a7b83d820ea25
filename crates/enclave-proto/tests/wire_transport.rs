//! Transports: address syntax, the hybrid vsock handshake against a listener that speaks the
//! device's side, retries, and that only root can listen on the supervisor's hand-off port. The
//! AF_VSOCK transport's connections are exercised inside real guests by the VM system tests
//! (enclave-init's control server listens with it, its heartbeat and NSM client connect with
//! it).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use enclave_proto::transport::hybrid::{self, HandshakeError};
use enclave_proto::transport::{
    connect, connect_with_retry, listen, Addr, TransportError, VMADDR_CID_ANY,
};

#[test]
fn addresses_parse_and_display() {
    for (text, addr) in [
        ("vsock:3:5000", Addr::Vsock { cid: 3, port: 5000 }),
        (
            "vsock:any:5000",
            Addr::Vsock {
                cid: VMADDR_CID_ANY,
                port: 5000,
            },
        ),
        (
            "hybrid:/path/to/uds:5000",
            Addr::HybridVsock {
                uds_path: "/path/to/uds".into(),
                port: 5000,
            },
        ),
        (
            "hybrid:/odd:name.sock:7",
            Addr::HybridVsock {
                uds_path: "/odd:name.sock".into(),
                port: 7,
            },
        ),
        (
            "unix:/run/enclave.sock",
            Addr::Unix("/run/enclave.sock".into()),
        ),
    ] {
        assert_eq!(text.parse::<Addr>().unwrap(), addr);
        assert_eq!(addr.to_string(), text);
    }
    for bad in [
        "",
        "vsock",
        "vsock:3",
        "vsock:x:1",
        "vsock:3:99999999999",
        "hybrid::5",
        "hybrid:/p",
        "unix:",
        "tcp:1:2",
    ] {
        let err = bad.parse::<Addr>().unwrap_err();
        assert!(
            err.to_string().contains("expected vsock:CID:PORT"),
            "{bad}: {err}"
        );
    }
}

/// Reads one `\n`-terminated line byte by byte, like the device does.
fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8];
    while s.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

/// A fake vhost-device-vsock: answers each connection with `answer` (None: closes at once),
/// then echoes.
fn fake_device(
    listener: UnixListener,
    answers: Vec<Option<&'static str>>,
) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let mut lines = Vec::new();
        for answer in answers {
            let (mut s, _) = listener.accept().unwrap();
            lines.push(read_line(&mut s));
            let Some(answer) = answer else { continue };
            // The answer and the guest's first bytes in one write: the client must not
            // swallow the latter while reading the former.
            s.write_all(format!("{answer}hello from the guest").as_bytes())
                .unwrap();
            let mut buf = [0u8; 256];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => s.write_all(&buf[..n]).unwrap(),
                }
            }
        }
        lines
    })
}

#[test]
fn hybrid_connect_handshake_then_echo() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let device = fake_device(UnixListener::bind(&uds).unwrap(), vec![Some("OK 1234\n")]);
    let addr: Addr = format!("hybrid:{}:5000", uds.display()).parse().unwrap();
    let mut conn = connect(&addr).unwrap();
    let mut first = [0u8; 20];
    conn.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"hello from the guest");
    conn.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    drop(conn);
    assert_eq!(device.join().unwrap(), vec!["CONNECT 5000".to_string()]);
}

#[test]
fn hybrid_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("vsock.sock");
    let device = fake_device(
        UnixListener::bind(&uds).unwrap(),
        vec![
            Some("ERR no listener\n"),
            None,
            Some("OK\n"),
            Some("OK 12x\n"),
        ],
    );
    let addr = Addr::HybridVsock {
        uds_path: uds.clone(),
        port: 5000,
    };
    let err = connect(&addr).unwrap_err();
    assert!(
        matches!(&err, TransportError::Handshake { source: HandshakeError::Refused(l), .. } if l == "ERR no listener"),
        "{err}"
    );
    let err = connect(&addr).unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Handshake {
                source: HandshakeError::Closed,
                ..
            }
        ),
        "{err}"
    );
    for _ in 0..2 {
        let err = connect(&addr).unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Handshake {
                    source: HandshakeError::Refused(_),
                    ..
                }
            ),
            "{err}"
        );
    }
    device.join().unwrap();
    // An overlong answer is refused without reading it all.
    let (mut a, mut b) = UnixStream::pair().unwrap();
    b.write_all(&[b'O'; 100]).unwrap();
    assert!(matches!(
        hybrid::client_handshake(&mut a, 1),
        Err(HandshakeError::Refused(_))
    ));
    assert_eq!(
        hybrid::listen_path(&uds, 5000),
        dir.path().join("vsock.sock_5000")
    );
}

#[test]
fn retry_gives_a_clear_error_and_succeeds_when_the_enclave_appears() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Addr::Unix(dir.path().join("late.sock"));
    let start = Instant::now();
    let err = connect_with_retry(&addr, Duration::from_millis(300)).unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(300));
    let text = err.to_string();
    assert_eq!(
        text,
        format!("no enclave answered at {addr} after 0.3 s: no such file or directory")
    );

    let path = dir.path().join("late.sock");
    let server = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        let listener = listen(&Addr::Unix(path)).unwrap();
        let mut conn = listener.accept().unwrap();
        conn.write_all(b"up").unwrap();
    });
    let mut conn = connect_with_retry(&addr, Duration::from_secs(10)).unwrap();
    let mut buf = [0u8; 2];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"up");
    server.join().unwrap();

    // The device closing before `OK` means the guest is not listening yet: retried too.
    let uds = dir.path().join("dev.sock");
    let device = fake_device(
        UnixListener::bind(&uds).unwrap(),
        vec![None, None, Some("OK 1\n")],
    );
    let hybrid_addr = Addr::HybridVsock {
        uds_path: uds,
        port: 9,
    };
    connect_with_retry(&hybrid_addr, Duration::from_secs(10)).unwrap();
    device.join().unwrap();
}

/// Environment variable that makes the test binary, started again as `nobody`, try to listen
/// on the supervisor's hand-off port and exit 0 if it could.
const AS_NOBODY: &str = "WIRE_TRANSPORT_LISTEN_AS_NOBODY";

#[test]
fn only_root_can_listen_on_the_supervisors_hand_off_port() {
    let port = enclave_proto::ports::SUPERVISOR;
    let addr = Addr::Vsock {
        cid: VMADDR_CID_ANY,
        port,
    };
    if std::env::var_os(AS_NOBODY).is_some() {
        // The child: exit 0 only if the bind worked.
        std::process::exit(i32::from(listen(&addr).is_err()));
    }
    assert!(
        port < 1024,
        "the hand-off port must be one only root can bind"
    );
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root"
        );
        eprintln!("SKIPPED: needs root to compare with nobody");
        return;
    }
    // Root can: that is how the supervisor of a Nitro enclave listens (then lets it go).
    match listen(&addr) {
        Ok(l) => drop(l),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "AF_VSOCK: {e}"
            );
            eprintln!("SKIPPED: no AF_VSOCK on this host: {e}");
            return;
        }
    }
    // An unprivileged user on the parent cannot, so cannot hand an enclave a key of theirs.
    use std::os::unix::process::CommandExt;
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "only_root_can_listen_on_the_supervisors_hand_off_port",
        ])
        .env(AS_NOBODY, "1")
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "nobody could listen on vsock port {port}"
    );
}
