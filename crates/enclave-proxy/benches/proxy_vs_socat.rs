//! The ingress path through `enclave-proxy` against the same path through socat, in one run:
//!
//! ```text
//! client → host TCP port → proxy → Unix socket → enclave-side stand-in → TCP → sink/echo
//! ours:  enclave-proxy ingress --to unix:S --port Q      +  this binary --stand-in S Q
//! socat: socat TCP-LISTEN:P,fork,reuseaddr UNIX-CONNECT:S +  socat UNIX-LISTEN:S,fork TCP:127.0.0.1:Q
//! ```
//!
//! Measured: one bulk stream's throughput, the connection rate of 100 concurrent clients each
//! doing connect + small request + response + close, and the memory of the proxy processes with
//! 1,000 idle connections open. Contenders alternate round by round, so load from other
//! processes falls on both alike. `cargo bench -p enclave-proxy --bench proxy_vs_socat`
//! (`BENCH_GIB`, `BENCH_SECONDS`, `BENCH_ROUNDS` to change the sizes).

#[path = "proxy_vs_socat/contenders.rs"]
mod contenders;
#[path = "../tests/support/stand_in.rs"]
mod stand_in;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contenders::{Kind, Running};
use enclave_proxy::stream::ProxyStream;

const CLIENTS: usize = 100;
const IDLE_CONNECTIONS: usize = 1000;
const REQUEST: [u8; 64] = [b'r'; 64];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--stand-in") {
        contenders::run_stand_in(&args[i + 1..]);
        return;
    }
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
        .expect("setrlimit");
    let gib: u64 = env_or("BENCH_GIB", 1);
    let seconds: u64 = env_or("BENCH_SECONDS", 5);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = server(Mode::Sink);
    let echo = server(Mode::Echo);
    println!("{}", machine());
    println!("load average before: {}", load());

    let mut throughput = [0f64; 2];
    let mut rate = [0f64; 3];
    for round in 0..rounds {
        for (i, kind) in [Kind::Ours, Kind::Socat].into_iter().enumerate() {
            let path = Running::start(kind, dir.path(), sink.port);
            let mibs = bulk(path.listen, gib << 30);
            println!("round {round}: {kind:?} bulk {mibs:.0} MiB/s");
            throughput[i] = throughput[i].max(mibs);
        }
        for (i, kind) in [Kind::Ours, Kind::Socat, Kind::SocatBacklog]
            .into_iter()
            .enumerate()
        {
            let path = Running::start(kind, dir.path(), echo.port);
            let (per_s, errors) = connection_rate(path.listen, Duration::from_secs(seconds));
            println!("round {round}: {kind:?} {per_s:.0} connections/s ({errors} failed)");
            rate[i] = rate[i].max(per_s);
        }
    }
    let mut memory = [Memory::default(); 2];
    for (i, kind) in [Kind::Ours, Kind::Socat].into_iter().enumerate() {
        let path = Running::start(kind, dir.path(), echo.port);
        memory[i] = idle_memory(&path);
        let m = memory[i];
        println!(
            "{kind:?}: {} processes, RSS {} KiB, PSS {} KiB with {IDLE_CONNECTIONS} idle connections",
            m.processes, m.rss_kib, m.pss_kib
        );
    }
    println!("load average after: {}", load());
    println!();
    println!("| measure | enclave-proxy | socat | ours/socat |");
    println!("|---|---|---|---|");
    let [tp_ours, tp_socat] = throughput;
    row(
        &format!("one bulk stream, {gib} GiB (best of {rounds})"),
        [
            format!("{tp_ours:.0} MiB/s"),
            format!("{tp_socat:.0} MiB/s"),
        ],
        tp_ours / tp_socat,
    );
    let [ours_rate, socat_rate, backlog_rate] = rate;
    let what = format!("connections/s, {CLIENTS} clients, {seconds} s (best of {rounds})");
    let (ours, socat) = (format!("{ours_rate:.0}"), format!("{socat_rate:.0}"));
    row(&what, [ours.clone(), socat], ours_rate / socat_rate);
    let socat = format!("{backlog_rate:.0}");
    row(
        "the same, socat with backlog=4096",
        [ours, socat],
        ours_rate / backlog_rate,
    );
    let mib = |kib: u64, n: usize| format!("{:.1} MiB ({n} processes)", kib as f64 / 1024.0);
    let [ours, socat] = memory;
    row(
        &format!("RSS summed, {IDLE_CONNECTIONS} idle connections"),
        [
            mib(ours.rss_kib, ours.processes),
            mib(socat.rss_kib, socat.processes),
        ],
        ours.rss_kib as f64 / socat.rss_kib as f64,
    );
    row(
        "PSS summed (shared pages split between processes)",
        [
            mib(ours.pss_kib, ours.processes),
            mib(socat.pss_kib, socat.processes),
        ],
        ours.pss_kib as f64 / socat.pss_kib as f64,
    );
}

fn row(what: &str, [ours, socat]: [String; 2], ratio: f64) {
    println!("| {what} | {ours} | {socat} | {ratio:.3}x |");
}

// ---- the far end -------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Reads to EOF, answers the byte count (8 bytes, big-endian).
    Sink,
    /// Echoes.
    Echo,
}

struct Server {
    port: u16,
}

/// A server on its own thread and runtime, for the whole run.
fn server(mode: Mode) -> Server {
    let std_listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let port = std_listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            while let Ok((s, _)) = listener.accept().await {
                let _ = s.set_nodelay(true);
                tokio::spawn(serve(ProxyStream::Tcp(s), mode));
            }
        });
    });
    Server { port }
}

async fn serve(s: ProxyStream, mode: Mode) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        total += n as u64;
        if let Mode::Echo = mode {
            if s.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
    if let Mode::Sink = mode {
        let _ = s.write_all(&total.to_be_bytes()).await;
    }
    let _ = s.shutdown_write();
}

// ---- the measurements --------------------------------------------------------------------------

/// MiB/s of `bytes` one way, until the sink confirmed it got them all.
fn bulk(addr: SocketAddr, bytes: u64) -> f64 {
    let chunk = vec![0xa5u8; 1 << 20];
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).expect("write");
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut count = [0u8; 8];
    s.read_exact(&mut count).expect("sink's count");
    assert_eq!(u64::from_be_bytes(count), bytes, "bytes lost on the way");
    bytes as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

/// Completed connect + 64-byte request + 64-byte response + close per second, from
/// [`CLIENTS`] threads; and how many attempts failed.
fn connection_rate(addr: SocketAddr, run: Duration) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + run;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (done, failed) = (done.clone(), failed.clone());
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    if one_exchange(addr).is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

fn one_exchange(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(&REQUEST)?;
    let mut reply = [0u8; REQUEST.len()];
    s.read_exact(&mut reply)?;
    if reply != REQUEST {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    processes: usize,
    rss_kib: u64,
    pss_kib: u64,
}

/// The memory of the contender's processes with [`IDLE_CONNECTIONS`] open and idle.
fn idle_memory(path: &Running) -> Memory {
    let mut conns = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let mut s = TcpStream::connect(path.listen).expect("connect");
        // A round trip: the connection is open end to end (socat forks lazily).
        s.write_all(b"x").expect("write");
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("read");
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut m = Memory::default();
    for pid in path.processes() {
        m.processes += 1;
        m.rss_kib += kib_field(&format!("/proc/{pid}/status"), "VmRSS:");
        m.pss_kib += kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:");
    }
    drop(conns);
    m
}

fn kib_field(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let socat = Command::new("socat")
        .arg("-V")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.starts_with("socat version"))
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    format!(
        "machine: {cores} cores, {cpu}, Linux {}; {socat}",
        kernel.trim()
    )
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
