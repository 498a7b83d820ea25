//! Support for the NATS tests: a real `nats-server -js` child per test (configuration file,
//! random port, temporary store), a CA and server certificate made with `openssl` at test time,
//! and a raw client that writes to the bucket as anyone with publish rights could. Missing
//! `nats-server` or `openssl` skips with a message, and fails when `CI=true`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `nats-server` child, killed on drop.
pub struct Server {
    child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// Whether `tool` runs; when it does not, prints why the test is skipped, or fails with
/// `CI=true`.
pub fn have(tool: &str, install: &str) -> bool {
    if Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .output()
        .is_ok()
    {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{tool} is not installed; CI must run the NATS tests ({install})"
    );
    eprintln!("SKIPPED: {tool} is not installed ({install})");
    false
}

/// Starts `nats-server` with JetStream storing in `dir`, on `port` (0: any), with `extra`
/// appended to its configuration (TLS, authorization). `None` when it is not installed.
pub fn nats_server(dir: &Path, port: u16, extra: &str) -> Option<Server> {
    if !have("nats-server", "apt-get install nats-server") {
        return None;
    }
    let port_conf = if port == 0 { -1 } else { i32::from(port) };
    let conf = dir.join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "host: 127.0.0.1\nport: {port_conf}\njetstream {{ store_dir: {:?} }}\n{extra}\n",
            dir.join("js").display()
        ),
    )
    .unwrap();
    let mut child = Command::new("nats-server")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning nats-server");
    // The log names the port it listens on; keep draining it so the server never blocks.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.split("Listening for client connections on ").nth(1) {
                let _ = tx.send(Ok(at
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse::<u16>().ok())));
            } else if line.contains("[FTL]") || line.contains("[ERR]") {
                let _ = tx.send(Err(line));
            }
        }
    });
    let mut server = Server { child, port: 0 };
    server.port = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(Some(port))) => port,
        Ok(Err(line)) => panic!("nats-server failed: {line}"),
        other => panic!("nats-server did not report its client port: {other:?}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", server.port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

/// A CA and a server certificate it signed for `nats.test` and 127.0.0.1, made now with
/// `openssl` in a temporary directory (no key is ever committed), plus an unrelated CA.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Option<Pki> {
        if !have("openssl", "apt-get install openssl") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ext = d.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:nats.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        for ca in ["ca", "other-ca"] {
            openssl(d, &format!("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {ca}.key -out {ca}.pem -subj /CN={ca} -days 2"));
        }
        openssl(d, "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj /CN=nats.test");
        openssl(d, "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext");
        Some(Pki { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA's PEM certificate.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.path("ca.pem")).unwrap()
    }

    /// The nats-server `tls` block serving the CA-signed certificate.
    pub fn server_tls(&self) -> String {
        format!(
            "tls {{ cert_file: {:?}, key_file: {:?}, timeout: 5 }}",
            self.path("server.pem").display(),
            self.path("server.key").display()
        )
    }
}

fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Retries `f` until it returns `Some`, failing after a generous deadline (not a speed test).
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain connection that has sent CONNECT and subscribed `_INBOX.t`.
fn raw(port: u16) -> BufReader<TcpStream> {
    let conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(conn);
    reader
        .get_mut()
        .write_all(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB _INBOX.t 1\r\n")
        .unwrap();
    reader
}

/// Reads lines until one starts with `prefix`, then the `len`-byte body its last field names.
fn reply(reader: &mut BufReader<TcpStream>, prefix: &str) -> Vec<u8> {
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "connection closed"
        );
        if let Some(rest) = line.strip_prefix(prefix) {
            let len: usize = rest.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).unwrap();
            body.truncate(len);
            return body;
        }
    }
}

/// Publishes to `subject` (with a header block when `headers` is non-empty) over a plain
/// connection and waits for JetStream's acknowledgement: what anyone with publish rights on
/// the bucket can do, outside the enclave.
pub fn raw_publish(port: u16, subject: &str, headers: &str, payload: &[u8]) {
    let mut conn = raw(port);
    let mut frame = if headers.is_empty() {
        format!("PUB {subject} _INBOX.t {}\r\n", payload.len()).into_bytes()
    } else {
        let block = format!("NATS/1.0\r\n{headers}\r\n\r\n");
        let total = block.len() + payload.len();
        format!("HPUB {subject} _INBOX.t {} {total}\r\n{block}", block.len()).into_bytes()
    };
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\n");
    conn.get_mut().write_all(&frame).unwrap();
    let ack: serde_json::Value = serde_json::from_slice(&reply(&mut conn, "MSG ")).unwrap();
    assert!(ack["seq"].is_u64(), "not acknowledged: {ack}");
}

/// `$JS.API.STREAM.INFO.<stream>` over a raw connection, to check what `connect` created.
pub fn stream_info(port: u16, stream: &str) -> serde_json::Value {
    let mut conn = raw(port);
    conn.get_mut()
        .write_all(format!("PUB $JS.API.STREAM.INFO.{stream} _INBOX.t 0\r\n\r\n").as_bytes())
        .unwrap();
    serde_json::from_slice(&reply(&mut conn, "MSG ")).unwrap()
}
