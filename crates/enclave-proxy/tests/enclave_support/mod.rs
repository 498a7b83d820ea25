//! Helpers for the enclave-side tests: a fake host egress proxy on a Unix socket, an echo
//! server, and a DNS query by hand (each test runs in its own network namespace, `netns`).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use enclave_proxy::header::{Request, Status, MAX_REQUEST_LEN};

/// Guards every blocking read and write, so a broken forwarder fails a test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// An echo server on 127.0.0.1 (inside 127.0.0.0/24, so never redirected): echoes every
/// connection until the client's EOF, then closes.
pub fn echo_server() -> SocketAddr {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = io::copy(&mut r, &mut w);
                let _ = w.shutdown(Shutdown::Write);
            });
        }
    });
    addr
}

/// Sends `msg`, half-closes, and returns everything read back.
pub fn round_trip(mut s: TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(msg)?;
    s.shutdown(Shutdown::Write)?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    Ok(got)
}

/// Connects to `addr` and asserts the connection is reset without any data.
pub fn assert_reset(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("{addr}: expected a reset, got {other:?}"),
    }
}

/// The host egress proxy, played on a Unix socket: reads each request, reports it on the
/// channel, and connects it to `decide(&request)` (or refuses with NotAllowed on `None`).
pub struct FakeHost {
    pub path: PathBuf,
    pub requests: mpsc::Receiver<Request>,
}

impl FakeHost {
    pub fn start(
        dir: &Path,
        decide: impl Fn(&Request) -> Option<SocketAddr> + Send + Sync + 'static,
    ) -> FakeHost {
        let path = dir.join("egress.sock");
        let l = UnixListener::bind(&path).unwrap();
        let (tx, requests) = mpsc::channel();
        let decide: Arc<Decide> = Arc::new(decide);
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (tx, decide) = (tx.clone(), decide.clone());
                thread::spawn(move || serve_one(s, &*decide, tx));
            }
        });
        FakeHost { path, requests }
    }

    /// The next request the host received.
    pub fn next(&self) -> Request {
        self.requests
            .recv_timeout(IO_TIMEOUT)
            .expect("a request at the host")
    }
}

type Decide = dyn Fn(&Request) -> Option<SocketAddr> + Send + Sync;

fn serve_one(mut s: UnixStream, decide: &Decide, tx: mpsc::Sender<Request>) {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let req = read_request(&mut s);
    let to = decide(&req);
    let _ = tx.send(req);
    let Some(to) = to else {
        let _ = s.write_all(&[Status::NotAllowed as u8]);
        return;
    };
    let upstream = TcpStream::connect(to).unwrap();
    s.write_all(&[Status::Connected as u8]).unwrap();
    let (mut up_r, mut s_w) = (upstream.try_clone().unwrap(), s.try_clone().unwrap());
    let back = thread::spawn(move || {
        let _ = io::copy(&mut up_r, &mut s_w);
        let _ = s_w.shutdown(Shutdown::Write);
    });
    let mut up_w = upstream;
    let _ = io::copy(&mut s, &mut up_w);
    let _ = up_w.shutdown(Shutdown::Write);
    let _ = back.join();
}

/// Reads one request byte by byte (so no payload is taken with it).
pub fn read_request(s: &mut impl Read) -> Request {
    let mut buf = Vec::new();
    loop {
        if let Some((req, _)) = Request::decode(&buf).expect("a well-formed request") {
            return req;
        }
        assert!(buf.len() < MAX_REQUEST_LEN);
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("the rest of the request");
        buf.push(b[0]);
    }
}

/// A DNS answer, as far as the tests look: the rcode, and the A record if there is one.
#[derive(Debug, PartialEq, Eq)]
pub struct DnsReply {
    pub rcode: u8,
    pub answers: u16,
    pub a: Option<Ipv4Addr>,
}

/// Asks `server` for `name`'s record of type `qtype` (1 = A, 28 = AAAA).
pub fn dns_query(server: SocketAddr, name: &str, qtype: u16) -> DnsReply {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    sock.send_to(&q, server).unwrap();
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a DNS reply");
    let r = &buf[..n];
    assert_eq!(&r[..2], &[0x12, 0x34], "the id is echoed");
    let answers = u16::from_be_bytes([r[6], r[7]]);
    // With one answer and no EDNS, the A record's address is the last 4 bytes.
    let a = (answers == 1).then(|| Ipv4Addr::new(r[n - 4], r[n - 3], r[n - 2], r[n - 1]));
    DnsReply {
        rcode: r[3] & 0xf,
        answers,
        a,
    }
}
