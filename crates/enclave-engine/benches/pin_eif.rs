//! What pinning costs: the copy `run` makes of an EIF into the enclave's directory, and the
//! measurement every boot makes of what it boots, side by side with the tools doing the same
//! bytes' worth of work.
//!
//! `cargo bench -p enclave-engine --bench pin_eif` (env PIN_BENCH_MIB, default 200: the app
//! ramdisk's size; PIN_BENCH_DISK, default /var/tmp: the on-disk directory; PIN_BENCH_RUNS,
//! default 5). The EIF (12 MiB kernel, 4 MiB bootstrap ramdisk, the app ramdisk; pseudo-random
//! bytes) is written once to tmpfs (/dev/shm) and stays in the page cache. Contenders alternate
//! run by run; the best and the median are printed.
//!
//! - `pin` to tmpfs and to disk (copy, fsync, rename) against `cp` of the same file;
//! - the per-boot checks: `extract_boot_files` (qemu: measure while writing kernel and initrd),
//!   `check_pinned` (nitro: measure only), against `EifReader::measure` (the two-thread
//!   pipeline `run` uses, CRC included) and `sha384sum` of the file (one SHA-384 pass).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use enclave_engine::eif::boot::{check_pinned, extract_boot_files};
use enclave_engine::eif::pin::pin;
use enclave_image::eif::{EifOptions, EifReader, EifWriter};

const MIB: usize = 1 << 20;

/// Pseudo-random bytes (xorshift), cheap to make.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Contender {
    name: &'static str,
    times: Vec<Duration>,
}

fn main() {
    let app_mib: usize = env_or("PIN_BENCH_MIB", 200);
    let disk: PathBuf = env_or("PIN_BENCH_DISK", PathBuf::from("/var/tmp"));
    let runs: usize = env_or("PIN_BENCH_RUNS", 5);
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let on_disk = tempfile::tempdir_in(&disk).expect("the disk directory");
    let eif = shm.path().join("app.eif");
    let out = std::fs::File::create(&eif).unwrap();
    let mut w = EifWriter::new(out, EifOptions::default()).unwrap();
    w.kernel(&mut &noise(12 * MIB, 1)[..]).unwrap();
    w.cmdline("console=ttyS0 reboot=k panic=30 pci=off")
        .unwrap();
    w.metadata(br#"{"ImageName":"bench"}"#).unwrap();
    w.ramdisk_from(&mut &noise(4 * MIB, 2)[..]).unwrap();
    w.ramdisk_from(&mut &noise(app_mib * MIB, 3)[..]).unwrap();
    let measurements = w.finish(None).unwrap().to_map();
    let size = std::fs::metadata(&eif).unwrap().len();
    println!(
        "EIF: {:.1} MiB on tmpfs; disk directory {}",
        size as f64 / MIB as f64,
        disk.display()
    );

    let run_in = |dir: &Path, f: &dyn Fn(&Path)| {
        let d = tempfile::tempdir_in(dir).unwrap();
        let start = Instant::now();
        f(d.path());
        start.elapsed()
    };
    let cp = |to: &Path| {
        let o = Command::new("cp").arg(&eif).arg(to).status().unwrap();
        assert!(o.success());
    };
    let mut table: Vec<(Contender, Box<dyn Fn() -> Duration>)> = vec![
        (
            Contender {
                name: "pin to tmpfs (copy, fsync, rename)",
                times: vec![],
            },
            Box::new(|| run_in(shm.path(), &|d| drop(pin(&eif, d).unwrap()))),
        ),
        (
            Contender {
                name: "cp to tmpfs",
                times: vec![],
            },
            Box::new(|| run_in(shm.path(), &|d| cp(&d.join("x")))),
        ),
        (
            Contender {
                name: "pin to disk (copy, fsync, rename)",
                times: vec![],
            },
            Box::new(|| run_in(on_disk.path(), &|d| drop(pin(&eif, d).unwrap()))),
        ),
        (
            Contender {
                name: "cp to disk (no fsync)",
                times: vec![],
            },
            Box::new(|| run_in(on_disk.path(), &|d| cp(&d.join("x")))),
        ),
        (
            Contender {
                name: "boot check, qemu (extract_boot_files to tmpfs)",
                times: vec![],
            },
            Box::new(|| {
                run_in(shm.path(), &|d| {
                    drop(extract_boot_files(&eif, d, &measurements).unwrap())
                })
            }),
        ),
        (
            Contender {
                name: "boot check, nitro (check_pinned)",
                times: vec![],
            },
            Box::new(|| run_in(shm.path(), &|_| check_pinned(&eif, &measurements).unwrap())),
        ),
        (
            Contender {
                name: "EifReader::measure (2 threads, with CRC)",
                times: vec![],
            },
            Box::new(|| {
                run_in(shm.path(), &|_| {
                    let _ = EifReader::open(&eif).unwrap().measure().unwrap();
                })
            }),
        ),
        (
            Contender {
                name: "sha384sum of the EIF (one pass)",
                times: vec![],
            },
            Box::new(|| {
                run_in(shm.path(), &|_| {
                    let o = Command::new("sha384sum").arg(&eif).output().unwrap();
                    assert!(o.status.success());
                })
            }),
        ),
    ];
    for _ in 0..runs {
        for (c, f) in table.iter_mut() {
            c.times.push(f());
        }
    }
    println!("{:<50} {:>10} {:>10}", "workload", "best", "median");
    for (mut c, _) in table {
        c.times.sort();
        println!(
            "{:<50} {:>8} ms {:>7} ms",
            c.name,
            c.times[0].as_millis(),
            c.times[c.times.len() / 2].as_millis()
        );
    }
}
