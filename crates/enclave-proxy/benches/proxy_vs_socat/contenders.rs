//! The contenders' processes: enclave-proxy plus the enclave-side stand-in, or two socats.

use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use enclave_proxy::allow::IngressPolicy;
use enclave_proxy::stream::ProxyListener;
use enclave_spec::IngressSpec;

use super::stand_in;

const PROXY_BIN: &str = env!("CARGO_BIN_EXE_enclave-proxy");

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Ours,
    /// socat as usually written (and as the issue asks); its listen backlog defaults to 5.
    Socat,
    /// socat with `backlog=4096` on both listeners, so that the connection rate measures the
    /// fork per connection rather than SYN retransmissions.
    SocatBacklog,
}

/// The two processes of one contender's path to `target`, killed when dropped.
pub struct Running {
    pub listen: SocketAddr,
    children: Vec<Child>,
    sock: PathBuf,
}

impl Running {
    pub fn start(kind: Kind, dir: &Path, target: u16) -> Running {
        let sock = dir.join(format!("{kind:?}-{target}.sock"));
        let _ = std::fs::remove_file(&sock);
        let mut children = Vec::new();
        let listen = match kind {
            Kind::Ours => {
                let exe = std::env::current_exe().expect("current_exe");
                children.push(spawn(
                    Command::new(exe)
                        .arg("--stand-in")
                        .arg(&sock)
                        .arg(target.to_string()),
                ));
                wait_for_socket(&sock);
                let mut proxy = Command::new(PROXY_BIN);
                proxy.args([
                    "ingress",
                    "--listen",
                    "127.0.0.1:0",
                    "--port",
                    &target.to_string(),
                ]);
                proxy.arg("--to").arg(format!("unix:{}", sock.display()));
                proxy
                    .env("RUST_LOG", "warn,enclave_proxy=info")
                    .stderr(Stdio::piped());
                let mut child = spawn(&mut proxy);
                let listen = listening_address(&mut child);
                children.push(child);
                listen
            }
            Kind::Socat | Kind::SocatBacklog => {
                let backlog = match kind {
                    Kind::SocatBacklog => ",backlog=4096",
                    _ => "",
                };
                let unix_listen = format!("UNIX-LISTEN:{},fork{backlog}", sock.display());
                let tcp = format!("TCP:127.0.0.1:{target}");
                children.push(spawn(Command::new("socat").arg(unix_listen).arg(tcp)));
                wait_for_socket(&sock);
                let port = free_port();
                let tcp_listen =
                    format!("TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1{backlog}");
                let unix = format!("UNIX-CONNECT:{}", sock.display());
                children.push(spawn(Command::new("socat").arg(tcp_listen).arg(unix)));
                let listen = SocketAddr::from(([127, 0, 0, 1], port));
                wait_until(|| probe(listen));
                listen
            }
        };
        Running {
            listen,
            children,
            sock,
        }
    }

    /// The contender's processes: the ones started here and their children (socat forks one per
    /// connection).
    pub fn processes(&self) -> Vec<u32> {
        let parents: Vec<u32> = self.children.iter().map(Child::id).collect();
        let mut all = parents.clone();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid …`; comm may contain spaces, so split after the ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid.is_some_and(|p| parents.contains(&p)) {
                all.push(pid);
            }
        }
        all
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let forked: Vec<u32> = self
            .processes()
            .into_iter()
            .filter(|p| !self.children.iter().any(|c| c.id() == *p))
            .collect();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in forked {
            // socat's per-connection children end with their connections; any left (by pid,
            // ours) are stopped here.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_file(&self.sock);
    }
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn listening_address(child: &mut Child) -> SocketAddr {
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("listen=")?.parse().ok())
        })
        .expect("enclave-proxy did not say where it listens");
    // Keep draining, so a chatty proxy never blocks on a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    addr
}

/// Whether a whole (empty) exchange goes through: connect, EOF, the server's answer and EOF.
fn probe(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    s.shutdown(Shutdown::Write).is_ok() && s.read_to_end(&mut Vec::new()).is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_until(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "a proxy did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_for_socket(path: &Path) {
    wait_until(|| path.exists());
}

/// `--stand-in SOCKET PORT`: the enclave-side stand-in as its own process.
pub fn run_stand_in(args: &[String]) {
    let [sock, port, ..] = args else {
        panic!("usage: --stand-in SOCKET PORT");
    };
    let port: u16 = port.parse().expect("port");
    let policy = IngressPolicy::new(&[IngressSpec {
        port,
        host_port: None,
        host_ip: None,
    }]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = ProxyListener::Unix(tokio::net::UnixListener::bind(sock).expect("bind"));
        stand_in::serve_stand_in(listener, policy).await;
    });
}
