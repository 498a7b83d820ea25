//! Test servers (echo, summary, silent, early-closing), the enclave-side stand-in and a lock that
//! lets the fd-counting test run alone (captured logs are in `logs`).

pub mod stand_in;

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use enclave_proxy::allow::IngressPolicy;
use enclave_proxy::header::{Request, Status};
use enclave_proxy::stream::{ProxyListener, ProxyStream};
use enclave_spec::IngressSpec;
use tokio::sync::oneshot;

/// How long any single blocking step of a test may take before the test fails instead of
/// hanging. Generous: the machine is shared. Never used to assert speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

// ---- isolation -------------------------------------------------------------------------------

static FD_LOCK: RwLock<()> = RwLock::new(());

/// Held by every test; the fd-counting test takes [`exclusive`] instead.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    FD_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

/// Runs alone: no other test of this binary opens or closes descriptors meanwhile.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    FD_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

// ---- background servers ------------------------------------------------------------------------

/// A future running on its own current-thread runtime in its own thread, until dropped.
pub struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// `make` runs inside the runtime (so it may register sockets), then its future is driven.
    pub fn spawn<M, F>(make: M) -> Background
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                tokio::select! {
                    _ = make() => {}
                    _ = stopped => {}
                }
            });
        });
        Background {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a test TCP server does with each connection.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Sends back what it reads; at EOF, closes its write half.
    Echo,
    /// Reads to EOF, then answers `<bytes> <fnv1a>` and closes: proves the client's half-close
    /// came through while the way back stayed open.
    Summary,
    /// Never reads, never writes, never closes.
    Silent,
    /// Reads 5 bytes, answers "bye" and closes, whatever the client does next.
    CloseEarly,
}

/// A TCP server on `ip` (any free port).
pub fn tcp_server(ip: IpAddr, behaviour: Behaviour) -> (SocketAddr, Background) {
    let std_listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let bg = Background::spawn(move || async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            let s = ProxyStream::Tcp(s);
            match behaviour {
                Behaviour::Silent => held.push(s),
                _ => {
                    tokio::spawn(serve(s, behaviour));
                }
            }
        }
    });
    (addr, bg)
}

async fn serve(s: ProxyStream, behaviour: Behaviour) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let mut hash = FNV_OFFSET;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match behaviour {
            Behaviour::Echo if s.write_all(&buf[..n]).await.is_err() => return,
            Behaviour::CloseEarly if total + n as u64 >= 5 => {
                let _ = s.write_all(b"bye").await;
                return;
            }
            _ => {}
        }
        total += n as u64;
        hash = fnv1a(hash, &buf[..n]);
    }
    if let Behaviour::Summary = behaviour {
        let _ = s.write_all(format!("{total} {hash:016x}").as_bytes()).await;
    }
    let _ = s.shutdown_write();
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `hash`.
pub fn fnv1a(mut hash: u64, data: &[u8]) -> u64 {
    for &b in data {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// What [`Behaviour::Summary`] answers for `data`.
pub fn summary_of(data: &[u8]) -> String {
    format!("{} {:016x}", data.len(), fnv1a(FNV_OFFSET, data))
}

/// The enclave-side stand-in on a Unix socket at `path`, allowing `ports`.
pub fn enclave_stand_in(path: &Path, ports: &[u16]) -> Background {
    let std_listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let specs: Vec<IngressSpec> = ports
        .iter()
        .map(|&port| IngressSpec {
            port,
            host_port: None,
            host_ip: None,
        })
        .collect();
    let policy = IngressPolicy::new(&specs);
    Background::spawn(move || async move {
        let listener =
            ProxyListener::Unix(tokio::net::UnixListener::from_std(std_listener).unwrap());
        stand_in::serve_stand_in(listener, policy).await;
    })
}

// ---- clients -----------------------------------------------------------------------------------

/// Connects over TCP with [`PATIENCE`] as read and write timeout.
pub fn tcp_client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s
}

/// Reads to EOF. A reset after the data counts as EOF (the proxies reset refused clients).
pub fn read_all(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
}

/// Connects to an egress proxy's Unix socket and sends `header` (raw bytes).
pub fn egress_client(path: &Path, header: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s.write_all(header).unwrap();
    s
}

/// Sends `request` and returns the status byte the proxy answered (`None`: closed unanswered).
pub fn egress_request(path: &Path, request: &Request) -> (Option<u8>, UnixStream) {
    let mut s = egress_client(path, &request.to_bytes());
    let mut status = [0u8; 1];
    let got = match s.read(&mut status) {
        Ok(1) => Some(status[0]),
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("{request}: {e}"),
    };
    (got, s)
}

/// The status byte of `s`.
pub fn byte(s: Status) -> Option<u8> {
    Some(s as u8)
}

/// The number of open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
