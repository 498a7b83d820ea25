//! The standalone `enclave-proxy` binary, as a real process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_enclave-proxy");

/// A running `enclave-proxy`, killed when dropped; its stderr lines arrive on `lines`.
struct Proxy {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proxy {
    fn spawn(args: &[&str]) -> Proxy {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proxy { child, lines }
    }

    /// The first stderr line containing `needle`.
    fn wait_for(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("no line with {needle:?} from enclave-proxy: {e}"),
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn standalone_binary_serves_ingress_and_egress() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let (echo, _echo) = tcp_server(LOOPBACK_5, Behaviour::Echo);
    let p = echo.port();

    // Egress, with an allow-list file and an --add-host override.
    let allow = dir.path().join("allow.yaml");
    std::fs::write(
        &allow,
        format!(
            "egress:\n  - {{host: db.test, port: {p}}}\n  - {{cidr: 127.0.0.5/32, port: {p}}}\n"
        ),
    )
    .unwrap();
    let sock = dir.path().join("egress.sock");
    let egress = Proxy::spawn(&[
        "egress",
        "--listen",
        &format!("unix:{}", sock.display()),
        "--allow",
        allow.to_str().unwrap(),
        "--add-host",
        "db.test:127.0.0.5",
    ]);
    egress.wait_for("egress proxy listening");
    let (got, mut s) = egress_request(&sock, &name("db.test", p));
    assert_eq!(got, byte(Status::Connected));
    s.write_all(b"via the binary").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(&mut s), b"via the binary");
    let (got, _s) = egress_request(&sock, &name("evil.test", p));
    assert_eq!(got, byte(Status::NotAllowed));
    egress.wait_for(&format!("no egress rule allows evil.test:{p}"));

    // Ingress to the enclave stand-in, on a port the kernel picks.
    let (summary, _summary) = tcp_server(LOCALHOST, Behaviour::Summary);
    let enclave = dir.path().join("enclave.sock");
    let _enclave = enclave_stand_in(&enclave, &[summary.port()]);
    let ingress = Proxy::spawn(&[
        "ingress",
        "--listen",
        "127.0.0.1:0",
        "--to",
        &format!("unix:{}", enclave.display()),
        "--port",
        &summary.port().to_string(),
    ]);
    let line = ingress.wait_for("ingress proxy listening");
    let listen: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("listen="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_ne!(listen.port(), 0);
    let data = vec![7u8; 300_000];
    let mut c = tcp_client(listen);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        String::from_utf8(read_all(&mut c)).unwrap(),
        summary_of(&data)
    );
}

#[test]
fn standalone_binary_errors_say_what_to_do_and_exit_non_zero() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().map(|a| a.to_string()).unwrap();
    let missing = dir.path().join("missing.yaml");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "egress:\n  - {host: a.test, cidr: 10.0.0.0/8, port: 1}\n",
    )
    .unwrap();
    let sock = format!("unix:{}", dir.path().join("e.sock").display());
    let cases: [(Vec<&str>, i32, &str); 6] = [
        (
            vec![
                "ingress", "--listen", &taken, "--to", "unix:/x", "--port", "1",
            ],
            1,
            "already listens there",
        ),
        (
            vec![
                "ingress", "--listen", "8080", "--to", "tcp:x", "--port", "1",
            ],
            2,
            "expected vsock:CID:PORT",
        ),
        (
            vec![
                "ingress", "--listen", "8080", "--to", "unix:/x", "--port", "0",
            ],
            2,
            "--port",
        ),
        (
            vec![
                "egress",
                "--listen",
                &sock,
                "--allow",
                missing.to_str().unwrap(),
            ],
            1,
            "cannot read allow-list",
        ),
        (
            vec![
                "egress",
                "--listen",
                &sock,
                "--allow",
                bad.to_str().unwrap(),
            ],
            1,
            "exactly one of `host` or `cidr`",
        ),
        (
            vec![
                "egress",
                "--listen",
                &sock,
                "--allow",
                bad.to_str().unwrap(),
                "--add-host",
                "nope",
            ],
            2,
            "is not NAME:IP",
        ),
    ];
    for (args, code, text) in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(text), "{args:?}: {stderr}");
    }
    let help = Command::new(BIN)
        .args(["egress", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for text in [
        "--allow <FILE>",
        "--add-host <NAME:IP>",
        "--expect-cid <CID>",
        "vsock:any:PORT",
    ] {
        assert!(help.contains(text), "{text} not in:\n{help}");
    }
}

#[test]
fn standalone_binary_logs_json_lines_and_writes_its_man_pages() {
    let _g = shared();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let sock = format!("unix:{}", dir.path().join("e.sock").display());
    let args = [
        "egress",
        "--listen",
        &sock,
        "--allow",
        missing.to_str().unwrap(),
    ];

    // --log-format json: the error path still ends with the human error line, but what was
    // logged before it is JSON. An allow-list without rules logs a warning first.
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "egress: []\n").unwrap();
    let proxy = Proxy::spawn(&[
        "--log-format",
        "json",
        "egress",
        "--listen",
        &sock,
        "--allow",
        empty.to_str().unwrap(),
    ]);
    let line = proxy.wait_for("egress proxy listening");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
    assert_eq!(v["level"], "INFO", "{line}");
    assert_eq!(v["fields"]["rules"], 0, "{line}");
    drop(proxy);

    // --log-level that does not parse: a usage error, not a silent default.
    let out = Command::new(BIN)
        .args(["--log-level", "info,=="])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad log level"));

    let man = dir.path().join("man");
    let out = Command::new(BIN)
        .args(["man", "--out"])
        .arg(&man)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(man.join("enclave-proxy-egress.1")).unwrap();
    assert!(page.contains("expect\\-cid"), "the flags are described");
    assert!(
        page.contains("log\\-format"),
        "the logging flags are described"
    );
    assert!(man.join("enclave-proxy.1").is_file());
    assert!(
        !man.join("enclave-proxy-man.1").exists(),
        "hidden `man` paged"
    );
}
