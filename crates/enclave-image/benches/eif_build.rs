//! EIF build benchmark: our streaming `EifWriter` against the official `EifBuilder` and against
//! `sha384sum` over the same input bytes (the floor: one SHA-384 pass).
//!
//! ```text
//! cargo bench -p enclave-image --bench eif_build -- [--app-mib 200] [--runs 3]
//! ```
//!
//! Each measurement runs in its own child process, so peak RSS is per workload: the bench
//! re-executes itself as a *runner* (`--runner MODE DIR`), which spawns the workload (itself
//! with `--work MODE DIR`, or `sha384sum`), waits for it, and reports the wall time and the
//! child's `ru_maxrss` from `getrusage(RUSAGE_CHILDREN)` (the runner has only that child, so
//! the maximum is that workload's). Inputs are written once and stay in the page cache, so the
//! numbers measure CPU and memory, not the disk.

use std::error::Error;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::EifBuilder;
use enclave_image::eif::{EifOptions, EifWriter};
use nix::sys::resource::{getrusage, UsageWho};
use sha2::{Digest, Sha384};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const KERNEL_MIB: usize = 12;
const BOOTSTRAP_MIB: usize = 4;
const CMDLINE: &str = "reboot=k panic=30 pci=off nomodules console=ttyS0";
const MODES: [&str; 3] = ["ours", "official", "sha384sum"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg_after = |flag: &str, n: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + n))
            .cloned()
    };
    if let (Some(mode), Some(dir)) = (arg_after("--runner", 1), arg_after("--runner", 2)) {
        return runner(&mode, Path::new(&dir));
    }
    if let (Some(mode), Some(dir)) = (arg_after("--work", 1), arg_after("--work", 2)) {
        return work(&mode, Path::new(&dir));
    }
    let app_mib = arg_after("--app-mib", 1).map_or(Ok(200), |v| v.parse())?;
    let runs = arg_after("--runs", 1).map_or(Ok(3), |v| v.parse())?;
    parent(app_mib, runs)
}

fn inputs(dir: &Path) -> [PathBuf; 3] {
    ["kernel", "bootstrap.cpio", "app.cpio"].map(|n| dir.join(n))
}

fn identity() -> EifIdentityInfo {
    EifIdentityInfo {
        img_name: "bench".into(),
        img_version: "1".into(),
        build_info: EifBuildInfo {
            build_time: "1970-01-01T00:00:00Z".into(),
            build_tool: "bench".into(),
            build_tool_version: "0".into(),
            img_os: "linux".into(),
            img_kernel: "6.1".into(),
        },
        docker_info: serde_json::json!({}),
        custom_info: serde_json::json!({}),
    }
}

/// The workload, in the grandchild process.
fn work(mode: &str, dir: &Path) -> Result<()> {
    let [kernel, bootstrap, app] = inputs(dir);
    let out_path = dir.join(format!("out-{mode}.eif"));
    let pcr0 = match mode {
        "ours" => {
            let mut w = EifWriter::new(File::create(&out_path)?, EifOptions::default())?;
            w.kernel(&mut File::open(&kernel)?)?;
            w.cmdline(CMDLINE)?;
            w.metadata(&serde_json::to_vec(&identity())?)?;
            w.ramdisk_from(&mut File::open(&bootstrap)?)?;
            w.ramdisk_from(&mut File::open(&app)?)?;
            w.finish(None)?.pcr0_hex()
        }
        "official" => {
            let mut b = EifBuilder::new(
                &kernel,
                CMDLINE.to_string(),
                None,
                Sha384::new(),
                0,
                identity(),
            );
            b.add_ramdisk(&bootstrap);
            b.add_ramdisk(&app);
            let m = b.write_to(&mut File::create(&out_path)?);
            m.get("PCR0").cloned().unwrap_or_default()
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    println!("{pcr0}");
    Ok(())
}

/// Spawns one workload and reports `wall_ms max_rss_kib`.
fn runner(mode: &str, dir: &Path) -> Result<()> {
    let mut cmd = if mode == "sha384sum" {
        let mut c = Command::new("sha384sum");
        c.args(inputs(dir));
        c
    } else {
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("--work").arg(mode).arg(dir);
        c
    };
    let start = Instant::now();
    let status = cmd.stdout(Stdio::null()).status()?;
    let wall = start.elapsed();
    if !status.success() {
        return Err(format!("{mode} failed: {status}").into());
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    // ru_maxrss is in KiB on Linux.
    println!("{} {}", wall.as_secs_f64() * 1000.0, usage.max_rss());
    Ok(())
}

fn write_random(path: &Path, mib: usize, seed: u64) -> Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        out.write_all(&buf)?;
    }
    // Not a multiple of the chunk size, like real archives.
    out.write_all(&buf[..4099])?;
    out.flush()?;
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn parent(app_mib: usize, runs: usize) -> Result<()> {
    let base = std::env::var_os("EIF_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(base)?;
    let [kernel, bootstrap, app] = inputs(dir.path());
    write_random(&kernel, KERNEL_MIB, 1)?;
    write_random(&bootstrap, BOOTSTRAP_MIB, 2)?;
    write_random(&app, app_mib, 3)?;
    let total: u64 = inputs(dir.path())
        .iter()
        .map(|p| p.metadata().map(|m| m.len()))
        .sum::<std::io::Result<u64>>()?;
    println!(
        "inputs: kernel {KERNEL_MIB} MiB, bootstrap {BOOTSTRAP_MIB} MiB, app {app_mib} MiB \
         ({:.1} MiB in all), {runs} runs, modes interleaved",
        total as f64 / (1 << 20) as f64
    );

    let exe = std::env::current_exe()?;
    let mut results: Vec<Vec<(f64, u64)>> = vec![Vec::new(); MODES.len()];
    for _ in 0..runs {
        for (i, mode) in MODES.iter().enumerate() {
            let out = Command::new(&exe)
                .arg("--runner")
                .arg(mode)
                .arg(dir.path())
                .output()?;
            if !out.status.success() {
                return Err(format!("{mode}: {}", String::from_utf8_lossy(&out.stderr)).into());
            }
            let text = String::from_utf8(out.stdout)?;
            let mut fields = text.split_whitespace();
            let wall: f64 = fields.next().ok_or("no wall time")?.parse()?;
            let rss: u64 = fields.next().ok_or("no rss")?.parse()?;
            results[i].push((wall, rss));
        }
    }
    let identical = same_file(
        &dir.path().join("out-ours.eif"),
        &dir.path().join("out-official.eif"),
    )?;

    println!("\n| workload | wall time, best (median) | peak RSS |\n|---|---|---|");
    let mut best = Vec::new();
    for (mode, runs) in MODES.iter().zip(&results) {
        let mut walls: Vec<f64> = runs.iter().map(|r| r.0).collect();
        walls.sort_by(f64::total_cmp);
        let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
        let (min, median) = (walls[0], walls[walls.len() / 2]);
        best.push(min);
        let name = match *mode {
            "ours" => "enclave-image `EifWriter`",
            "official" => "official `EifBuilder` 0.8.1",
            _ => "`sha384sum` (same input bytes)",
        };
        println!(
            "| {name} | {min:.0} ms ({median:.0} ms) | {:.1} MiB |",
            rss as f64 / 1024.0
        );
    }
    println!(
        "\nours / official: {:.2}x; ours / sha384sum: {:.2}x; outputs byte-identical: {identical}",
        best[0] / best[1],
        best[0] / best[2]
    );
    Ok(())
}
