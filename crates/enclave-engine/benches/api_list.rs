//! The engine API against the daemonless CLI (issue 14), side by side in one run, on the same
//! 50 enclave records: `GET /v1/enclaves` over the Unix socket under load (CLIENTS keep-alive
//! connections, each request timed) against `enclave-ctl ps -a --format json` from as many
//! workers (a process per query, as scripts polling without the daemon run it); and the
//! daemon's RSS idle and after the load.
//!
//! `cargo bench -p enclave-engine --bench api_list`  (API_BENCH_SECS=5 API_BENCH_CLIENTS=4;
//! builds nothing else: enclave-ctl is taken from next to enclave-engine, so build the
//! workspace's binaries in the same profile first, as scripts/bench-api.sh does)

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use enclave_engine::backend::{BackendKind, InstanceInfo};
use enclave_engine::policy::RestartPolicy;
use enclave_engine::state::{EnclaveRecord, Ports, StateRoot, Status};

const RECORDS: usize = 50;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 50 ended enclaves, as `run` and the supervisors leave them.
fn records(root: &StateRoot) {
    for i in 0..RECORDS {
        let id = format!("{:02x}{}", i, "ab".repeat(31));
        let rec = EnclaveRecord {
            id,
            name: format!("bench-{i}"),
            created: "2026-12-05T10:00:00Z".into(),
            eif: PathBuf::from("/srv/app.eif"),
            backend: BackendKind::Qemu,
            cpus: 2,
            memory_mib: 512,
            debug_mode: false,
            restart: RestartPolicy::No,
            cid: 0,
            status: Status::Exited,
            supervisor_pid: None,
            instance: InstanceInfo::default(),
            started_at: Some("2026-12-05T10:00:01Z".into()),
            finished_at: Some("2026-12-05T10:05:00Z".into()),
            exit_code: Some(0),
            oom_killed: false,
            auto_remove: false,
            health_listen: None,
            metrics_listen: None,
            health: None,
            boot_ms: Some(3100),
            restarts: 0,
            exit: Some("stopped: qemu exited with status 0".into()),
            error: None,
            measurements: BTreeMap::from([
                ("PCR0".to_owned(), "00".repeat(48)),
                ("PCR1".to_owned(), "11".repeat(48)),
                ("PCR2".to_owned(), "22".repeat(48)),
            ]),
            ports: Ports::default(),
            network: Default::default(),
            control_addr: format!("hybrid:/run/x/{i}:5000"),
        };
        root.create(rec).expect("a record");
    }
}

/// One keep-alive request: writes it, reads the status line, headers and the body.
fn get(reader: &mut BufReader<UnixStream>, path: &str) -> usize {
    write!(reader.get_mut(), "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    let mut line = String::new();
    reader.read_line(&mut line).expect("status");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().expect("a length");
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    length
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let secs = env_or("API_BENCH_SECS", 5);
    let clients = env_or("API_BENCH_CLIENTS", 4) as usize;
    let engine = Path::new(env!("CARGO_BIN_EXE_enclave-engine"));
    let ctl = engine.with_file_name("enclave-ctl");
    assert!(
        ctl.is_file(),
        "{} is missing: build the workspace's binaries first",
        ctl.display()
    );
    let tmp = std::env::temp_dir().join(format!("api-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let state = tmp.join("state");
    let root = StateRoot::open(&state).unwrap();
    records(&root);
    let daemon = Daemon(
        Command::new(engine)
            .args(["daemon", "--state-dir"])
            .arg(&state)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let sock = state.join("engine.sock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = daemon.0.id();
    let idle = rss_kib(pid, "VmRSS:");

    // The API under load.
    let stop_at = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(UnixStream::connect(&sock).unwrap());
                let mut times = Vec::new();
                let mut bytes = 0;
                while Instant::now() < stop_at {
                    let t = Instant::now();
                    bytes = get(&mut reader, "/v1/enclaves");
                    times.push(t.elapsed());
                }
                (times, bytes)
            })
        })
        .collect();
    let mut api: Vec<Duration> = Vec::new();
    let mut body = 0;
    for t in threads {
        let (times, bytes) = t.join().unwrap();
        api.extend(times);
        body = bytes;
    }
    let loaded = rss_kib(pid, "VmHWM:");
    api.sort();

    // The CLI for the same records, from as many workers, for as long.
    let stop_at = Instant::now() + Duration::from_secs(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (ctl, state) = (ctl.clone(), state.clone());
            std::thread::spawn(move || {
                let mut times = Vec::new();
                while Instant::now() < stop_at {
                    let t = Instant::now();
                    let o = Command::new(&ctl)
                        .args(["ps", "-a", "--json"])
                        .env("ENCLAVE_ENGINE_STATE_DIR", &state)
                        .output()
                        .unwrap();
                    assert!(o.status.success());
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut ps: Vec<Duration> = Vec::new();
    for t in threads {
        ps.extend(t.join().unwrap());
    }
    ps.sort();
    drop(daemon);
    let _ = std::fs::remove_dir_all(&tmp);

    let rate = |n: usize| n as f64 / secs as f64;
    println!(
        "{RECORDS} records; GET /v1/enclaves answers {body} bytes; {clients} clients, {secs} s each way"
    );
    println!(
        "{:<44} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
        "GET /v1/enclaves (daemon, Unix socket)",
        rate(api.len()),
        percentile(&api, 0.5).as_secs_f64() * 1e3,
        percentile(&api, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "{:<44} {:>9.0} req/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
        "enclave-ctl ps -a --format json (processes)",
        rate(ps.len()),
        percentile(&ps, 0.5).as_secs_f64() * 1e3,
        percentile(&ps, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "ratio API : ps = {:.1}x the rate",
        api.len() as f64 / ps.len() as f64
    );
    println!(
        "daemon RSS: idle {:.1} MiB, peak under load {:.1} MiB",
        idle as f64 / 1024.0,
        loaded as f64 / 1024.0
    );
}
