//! Control channel benchmark (docs/benchmarks.md, "Control channel"): enclave-init as PID 1 of
//! a PID + mount namespace, its control server on a Unix socket, measured side by side with
//! raw baselines on the same transport (AF_UNIX stream sockets):
//!
//! - `cp` of a 1 GiB file into the enclave's tmpfs and back out, over the encrypted session,
//!   against a raw copy of the same bytes file -> socket -> file (fsynced) on tmpfs: wall time,
//!   and CPU seconds per GiB of both ends (this process and enclave-init, from /proc). Each end
//!   runs on its own core (`taskset`): enclave-init on CPU 0, the client on CPU 1; the raw copy's
//!   receiving thread on CPU 0, its sender on CPU 1;
//! - `exec true` round trips, each on a new connection (handshake and authentication included)
//!   and on one connection, against spawning `true` locally plus a one-byte socket round trip;
//! - the same copy in AES-256-GCM records with no protocol around them (`baselines/mod.rs`), and
//!   the floor no encrypted copy goes below: the raw copy plus AES-256-GCM at each end.
//!
//! `cargo bench -p enclave-init --bench control_bench [-- --size-mib N --execs N]`

#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

mod baselines;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use baselines::{aead_secs_per_gib, raw_copy, sealed_copy, PageReporting};
use support::control::{boot, client, exec, req, scratch};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// Pins the calling thread (or, with `all`, every thread of process `pid`) to `cpu`.
fn pin(pid: &str, cpu: u32, all: bool) {
    let mut cmd = Command::new("taskset");
    if all {
        cmd.arg("-a");
    }
    let ok = cmd
        .args(["-p", "-c", &cpu.to_string(), pid])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "taskset could not pin {pid} to CPU {cpu}");
}

/// This thread's id, for `taskset -p`.
fn this_thread() -> String {
    let link = fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// Writes `size` bytes of a repeated pseudo-random 1 MiB block to `path`.
fn write_filled(path: &std::path::Path, size: u64) {
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in block.chunks_mut(8) {
        // xorshift64: content that is not all zeros, cheap to make.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let mut f = File::create(path).unwrap();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
}

/// CPU seconds (user + system) a process used so far, over all its threads (exited ones
/// included): fields 14 and 15 of /proc/PID/stat, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_secs(pid: &str) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// CPU seconds of this process (the client, or both ends of the raw copy) and of the enclave's
/// init during `f`.
fn cpu_of(init: i32, f: impl FnOnce()) -> (f64, f64) {
    let init = init.to_string();
    let (me0, init0) = (cpu_secs("self"), cpu_secs(&init));
    f();
    (cpu_secs("self") - me0, cpu_secs(&init) - init0)
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    (at(0.50), at(0.99))
}

fn status_field(pid: i32, name: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

fn main() {
    let size = arg("--size-mib", 1024) << 20;
    let execs = arg("--execs", 500) as usize;
    let Some(b) = boot(&serde_json::json!({"debug": {"exec": true, "cp": true}})) else {
        return;
    };
    let init = b.run.init_host_pid().expect("init pid");
    // Each end on its own core: the enclave (every thread of its init, and what it spawns) on
    // CPU 0, this client on CPU 1.
    pin(&init.to_string(), 0, true);
    pin(&std::process::id().to_string(), 1, true);
    let mut c = client(&b);
    let dir = scratch();

    // The file: every byte written (a 1 MiB pseudo-random block repeated), as the enclave's copy
    // that cp out reads is. A sparse file would flatter whoever reads it: a hole is read by
    // zeroing the reader's buffer, not by copying a page.
    let src = dir.path().join("big.bin");
    write_filled(&src, size);
    let reporting = PageReporting::now();
    if let Some(warning) = reporting.warning() {
        eprintln!("{warning}");
    }
    let mut raw_times = Vec::new();
    let mut raw_receiver_cpu = Vec::new();
    let mut sealed_times = Vec::new();
    let (mut up_times, mut down_times) = (Vec::new(), Vec::new());
    // CPU seconds per round: (this process, init).
    let (mut raw_cpu, mut sealed_cpu) = (Vec::new(), Vec::new());
    let (mut up_cpu, mut down_cpu) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let copy = dir.path().join("raw.bin");
        raw_cpu.push(cpu_of(init, || {
            let (time, receiver) = raw_copy(&src, &copy);
            raw_times.push(time);
            raw_receiver_cpu.push(receiver);
        }));
        fs::remove_file(&copy).unwrap();
        sealed_cpu.push(cpu_of(init, || {
            sealed_times.push(sealed_copy(&src, &copy).0);
        }));
        assert_eq!(
            fs::metadata(&copy).unwrap().len(),
            size,
            "the sealed copy lost bytes"
        );
        fs::remove_file(&copy).unwrap();
        // A new name each round, as the raw copy's: replacing the last round's file would free
        // its 1 GiB of pages inside the measurement.
        let remote = format!("/tmp/big{round}.bin");
        up_cpu.push(cpu_of(init, || {
            let t = Instant::now();
            c.cp_to(&src, &remote, |_| {}).unwrap();
            up_times.push(t.elapsed());
        }));
        let back = dir.path().join(format!("back{round}"));
        fs::create_dir(&back).unwrap();
        down_cpu.push(cpu_of(init, || {
            let t = Instant::now();
            c.cp_from(&remote, &back, |_| {}).unwrap();
            down_times.push(t.elapsed());
        }));
        fs::remove_dir_all(&back).unwrap();
        exec(&mut c, req(&["rm", &remote]), None).unwrap();
    }
    if let Some(mib) = PageReporting::now().reported_mib_since(&reporting) {
        println!("memory reported to the host during the copies: {mib} MiB");
    }
    let best = |v: &[Duration]| *v.iter().min().unwrap();
    let (raw, up, down) = (best(&raw_times), best(&up_times), best(&down_times));
    let sealed = best(&sealed_times);
    println!(
        "cp {} MiB, best of 3 (all: raw {raw_times:?}, sealed {sealed_times:?}, up {up_times:?}, down {down_times:?})",
        size >> 20
    );
    println!("  raw socket copy   {:>8.1} MiB/s", mib_s(size, raw));
    println!(
        "  sealed copy       {:>8.1} MiB/s  ({:.0}% of raw; AES-256-GCM records, no protocol)",
        mib_s(size, sealed),
        100.0 * raw.as_secs_f64() / sealed.as_secs_f64()
    );
    println!(
        "  cp into enclave   {:>8.1} MiB/s  ({:.0}% of raw, {:.0}% of the sealed copy)",
        mib_s(size, up),
        100.0 * raw.as_secs_f64() / up.as_secs_f64(),
        100.0 * sealed.as_secs_f64() / up.as_secs_f64()
    );
    println!(
        "  cp out of enclave {:>8.1} MiB/s  ({:.0}% of raw, {:.0}% of the sealed copy)",
        mib_s(size, down),
        100.0 * raw.as_secs_f64() / down.as_secs_f64(),
        100.0 * sealed.as_secs_f64() / down.as_secs_f64()
    );
    // The round with the least CPU, per GiB, both ends summed.
    let gib = size as f64 / (1u64 << 30) as f64;
    let least = |v: &[(f64, f64)]| {
        let (me, init) = v
            .iter()
            .copied()
            .min_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)))
            .unwrap();
        (me / gib, init / gib)
    };
    let (raw_me, _) = least(&raw_cpu);
    let (sealed_me, _) = least(&sealed_cpu);
    println!("  CPU s/GiB, both ends (least of 3): raw copy {raw_me:.2}");
    println!(
        "    sealed copy        {sealed_me:.2}, {:.2}x raw",
        sealed_me / raw_me
    );
    for (what, v) in [
        ("cp into enclave", &up_cpu),
        ("cp out of enclave", &down_cpu),
    ] {
        let (client, enclave) = least(v);
        println!(
            "    {what:<18} {:.2} (client {client:.2} + enclave {enclave:.2}), {:.2}x raw",
            client + enclave,
            (client + enclave) / raw_me
        );
    }

    // What no encrypted copy can go below: the raw copy plus AES-GCM at each end, for CPU;
    // for time, the receiving end (the busier one) at least the raw receiver's CPU plus AES-GCM.
    let aead = aead_secs_per_gib();
    let receiver = raw_receiver_cpu.iter().copied().fold(f64::MAX, f64::min) / gib;
    println!("  AES-256-GCM (ring, in place, 64 KiB records): {aead:.2} CPU s/GiB per end");
    println!(
        "  floor of an encrypted copy: CPU {:.2} s/GiB ({:.2}x raw); time: raw receiver {receiver:.2} + AES {aead:.2} CPU s/GiB, at best {:.0}% of raw",
        raw_me + 2.0 * aead,
        (raw_me + 2.0 * aead) / raw_me,
        100.0 * (raw.as_secs_f64() / gib / (receiver + aead)).min(1.0)
    );

    // exec true, interleaved with the baselines: on a new connection each time (the Noise
    // handshake and the key's proof included), and on one connection.
    let (mut a, mut bsock) = UnixStream::pair().unwrap();
    let echo = std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while bsock.read_exact(&mut byte).is_ok() {
            if bsock.write_all(&byte).is_err() {
                break;
            }
        }
    });
    let (mut fresh, mut reused, mut spawn, mut rtt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..execs {
        let t = Instant::now();
        let mut one = client(&b);
        let o = exec(&mut one, req(&["true"]), None).unwrap();
        drop(one);
        fresh.push(t.elapsed());
        assert!(matches!(o.status, enclave_proto::wire::ExitStatus::Code(0)));
        let t = Instant::now();
        let o = exec(&mut c, req(&["true"]), None).unwrap();
        reused.push(t.elapsed());
        assert!(matches!(o.status, enclave_proto::wire::ExitStatus::Code(0)));
        let t = Instant::now();
        Command::new("true").status().unwrap();
        spawn.push(t.elapsed());
        let t = Instant::now();
        a.write_all(&[1]).unwrap();
        a.read_exact(&mut [0u8; 1]).unwrap();
        rtt.push(t.elapsed());
    }
    drop(a);
    echo.join().unwrap();
    let (f50, f99) = percentiles(fresh);
    let (r50, r99) = percentiles(reused);
    let (s50, s99) = percentiles(spawn);
    let (t50, t99) = percentiles(rtt);
    println!("exec true, {execs} round trips:");
    println!("  new connection each     p50 {f50:>10.3?}  p99 {f99:>10.3?}  (handshake included)");
    println!("  on one connection       p50 {r50:>10.3?}  p99 {r99:>10.3?}");
    println!("  local spawn of true     p50 {s50:>10.3?}  p99 {s99:>10.3?}");
    println!("  raw socket round trip   p50 {t50:>10.3?}  p99 {t99:>10.3?}");
    println!(
        "  new conn - (spawn + rtt) p50 {:>10.3?}  p99 {:>10.3?}",
        f50.saturating_sub(s50 + t50),
        f99.saturating_sub(s99 + t99)
    );
    println!(
        "enclave-init RSS after the runs: VmRSS {}, VmHWM {}",
        status_field(init, "VmRSS:"),
        status_field(init, "VmHWM:")
    );
}
