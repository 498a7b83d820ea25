//! Image build benchmark, two suites side by side with the same references:
//!
//! - `writer`: our streaming `EifWriter` from ready-made kernel and ramdisk files, against the
//!   official `EifBuilder` and `sha384sum` over the same input bytes (the floor: one SHA-384
//!   pass).
//! - `build`: the whole pipeline, `enclave_image::build::build`, from a synthetic ~200 MiB
//!   rootfs given once as a `dir:` tree and once as an `oci:` layout with one gzip layer, with
//!   the emulated kernel profile and the real enclave-init; against the official `EifBuilder`
//!   given the two ramdisks our build produced (plus the same kernel, cmdline and metadata),
//!   `sha384sum` over the kernel and both ramdisks, and the build's gzip decoder alone over the
//!   layer blob (what decompression costs).
//!
//! ```text
//! cargo bench -p enclave-image --bench eif_build -- [--suite all|writer|build] [--runs 3]
//!     [--app-mib 200] [--rootfs-mib 200] [--files 2000]
//! ```
//!
//! The build suite needs the emulated kernel (`scripts/fetch-kernel.sh`, or `BENCH_KERNEL_DIR`)
//! and the init binary (`scripts/build-init.sh`, or `BENCH_INIT`). Inputs go to a temporary
//! directory in `EIF_BENCH_DIR` (default: the system's temporary directory).
//!
//! Each measurement runs in its own child process, so peak RSS is per workload: the bench
//! re-executes itself as a *runner* (`--runner MODE DIR`), which spawns the workload (itself
//! with `--work MODE DIR`, or `sha384sum`), waits for it, and reports the wall time and the
//! child's `ru_maxrss` from `getrusage(RUSAGE_CHILDREN)` (the runner has only that child, so
//! the maximum is that workload's). Inputs are written once and stay in the page cache, and the
//! build suite runs a warm-up round first, so the numbers measure CPU and memory rather than
//! reading the disk.
//! The build workloads also write per-phase times (from the build's `Progress` callbacks) and
//! their PCRs to `result-MODE.txt`, which the parent reads to explain where the time goes.

#[path = "support/measure.rs"]
mod measure;
#[path = "support/rootfs.rs"]
mod rootfs;

use std::cell::RefCell;
use std::error::Error;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::EifBuilder;
use enclave_image::build::{build, BuildRequest, Progress};
use enclave_image::eif::reader::Metadata;
use enclave_image::eif::{EifOptions, EifReader, EifWriter};
use enclave_image::kernel::{KernelInputs, KernelProfile};
use enclave_image::source::ImageRef;
use enclave_spec::EnclaveSpec;
use flate2::read::MultiGzDecoder;
use measure::{measure, print_table, run_once, stats, Sample, Stats};
use nix::sys::resource::{getrusage, UsageWho};
use sha2::{Digest, Sha384};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const KERNEL_MIB: usize = 12;
const BOOTSTRAP_MIB: usize = 4;
const CMDLINE: &str = "reboot=k panic=30 pci=off nomodules console=ttyS0";
const WRITER_MODES: [&str; 3] = ["writer-ours", "writer-official", "sha384sum"];
const BUILD_MODES: [&str; 5] = [
    "build-dir",
    "build-oci",
    "build-official",
    "sha384sum",
    "gunzip",
];
const OCI_TAG: &str = "bench";
/// SOURCE_DATE_EPOCH of the builds.
const EPOCH: i64 = 1_700_000_000;

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
    let suite = arg_after("--suite", 1).unwrap_or_else(|| "all".into());
    let app_mib = arg_after("--app-mib", 1).map_or(Ok(200), |v| v.parse())?;
    let rootfs_mib: u64 = arg_after("--rootfs-mib", 1).map_or(Ok(200), |v| v.parse())?;
    let files = arg_after("--files", 1).map_or(Ok(2000), |v| v.parse())?;
    let runs = arg_after("--runs", 1).map_or(Ok(3), |v| v.parse())?;
    if !["all", "writer", "build"].contains(&suite.as_str()) {
        return Err(format!("unknown suite {suite} (all, writer or build)").into());
    }
    let base = std::env::var_os("EIF_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    if suite != "build" {
        writer_suite(&base, app_mib, runs)?;
    }
    if suite != "writer" {
        build_suite(&base, rootfs_mib << 20, files, runs)?;
    }
    Ok(())
}

/// The files `sha384sum` reads, and the official builder's kernel and ramdisks.
fn inputs(dir: &Path) -> [PathBuf; 3] {
    ["kernel", "bootstrap.cpio", "app.cpio"].map(|n| dir.join(n))
}

fn kernel_dir() -> PathBuf {
    std::env::var_os("BENCH_KERNEL_DIR").map_or_else(
        || KernelInputs::default_dir(KernelProfile::Emulated),
        PathBuf::from,
    )
}

fn init_path() -> PathBuf {
    std::env::var_os("BENCH_INIT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/enclave-init/enclave-init"),
        PathBuf::from,
    )
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

/// Records when each build phase starts, for the breakdown.
struct Phases {
    marks: RefCell<Vec<(String, Instant)>>,
}

impl Progress for Phases {
    fn phase(&self, name: &str, _: u64) {
        self.marks
            .borrow_mut()
            .push((name.to_owned(), Instant::now()));
    }
    fn advance(&self, _: u64) {}
}

/// The workload, in the grandchild process.
fn work(mode: &str, dir: &Path) -> Result<()> {
    let start = Instant::now();
    let [kernel, bootstrap, app] = inputs(dir);
    let out_path = dir.join(format!("out-{mode}.eif"));
    let official = |kernel: &Path, cmdline: String, identity: EifIdentityInfo| {
        let mut b = EifBuilder::new(kernel, cmdline, None, Sha384::new(), 0, identity);
        b.add_ramdisk(&bootstrap);
        b.add_ramdisk(&app);
        File::create(&out_path).map(|mut f| b.write_to(&mut f))
    };
    let mut result = String::new();
    match mode {
        "writer-ours" => {
            let mut w = EifWriter::new(File::create(&out_path)?, EifOptions::default())?;
            w.kernel(&mut File::open(&kernel)?)?;
            w.cmdline(CMDLINE)?;
            w.metadata(&serde_json::to_vec(&identity())?)?;
            w.ramdisk_from(&mut File::open(&bootstrap)?)?;
            w.ramdisk_from(&mut File::open(&app)?)?;
            w.finish(None)?;
        }
        "writer-official" => {
            official(&kernel, CMDLINE.into(), identity())?;
        }
        "build-official" => {
            // The cmdline and our build's metadata, as the parent saved them.
            let cmdline = fs::read_to_string(dir.join("cmdline"))?;
            let identity = serde_json::from_slice(&fs::read(dir.join("metadata.json"))?)?;
            let pcrs = official(&kernel, cmdline, identity)?;
            for pcr in ["PCR0", "PCR1", "PCR2"] {
                let value = pcrs.get(pcr).map_or("", String::as_str);
                result += &format!("{} {value}\n", pcr.to_lowercase());
            }
        }
        "build-dir" | "build-oci" => {
            let source = if mode == "build-dir" {
                ImageRef::Dir {
                    path: dir.join("rootfs"),
                }
            } else {
                ImageRef::Oci {
                    dir: dir.join("oci"),
                    tag: Some(OCI_TAG.into()),
                }
            };
            let request = BuildRequest {
                source,
                spec: EnclaveSpec {
                    cmd: Some(vec![rootfs::APP.into()]),
                    ..EnclaveSpec::default()
                },
                kernel: KernelInputs::load(KernelProfile::Emulated, &kernel_dir())?,
                init: init_path(),
                attest_server: None,
                output: out_path.clone(),
                source_date_epoch: EPOCH,
                image_name: Some("bench".into()),
                image_version: Some("1".into()),
                signer: None,
                limits: enclave_image::rootfs::Limits::default(),
            };
            let phases = Phases {
                marks: RefCell::new(vec![("loading kernel inputs".into(), start)]),
            };
            let out = build(&request, &phases)?;
            let end = Instant::now();
            let m = &out.measurements;
            result += &format!(
                "pcr0 {}\npcr1 {}\npcr2 {}\n",
                m.pcr0_hex(),
                m.pcr1_hex(),
                m.pcr2_hex()
            );
            let marks = phases.marks.into_inner();
            for (i, (name, at)) in marks.iter().enumerate() {
                let until = marks.get(i + 1).map_or(end, |next| next.1);
                result += &format!("phase {} {name}\n", (until - *at).as_secs_f64() * 1000.0);
            }
        }
        "gunzip" => {
            // The build's decoder (flate2 with miniz_oxide), alone, to a sink.
            let blob = BufReader::with_capacity(1 << 16, File::open(dir.join("layer.gz"))?);
            let n = std::io::copy(&mut MultiGzDecoder::new(blob), &mut std::io::sink())?;
            result += &format!("bytes {n}\n");
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    fs::write(dir.join(format!("result-{mode}.txt")), result)?;
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(path.metadata()?.len())
}

fn writer_suite(base: &Path, app_mib: usize, runs: usize) -> Result<()> {
    let dir = tempfile::tempdir_in(base)?;
    let [kernel, bootstrap, app] = inputs(dir.path());
    write_random(&kernel, KERNEL_MIB, 1)?;
    write_random(&bootstrap, BOOTSTRAP_MIB, 2)?;
    write_random(&app, app_mib, 3)?;
    let total: u64 = inputs(dir.path())
        .iter()
        .map(|p| file_len(p))
        .sum::<Result<u64>>()?;
    println!(
        "== EIF writer: kernel {KERNEL_MIB} MiB, bootstrap {BOOTSTRAP_MIB} MiB, app {app_mib} \
         MiB ({:.1} MiB in all), {runs} runs, modes interleaved",
        mib(total)
    );
    let results = measure(dir.path(), &WRITER_MODES, runs)?;
    let s: Vec<Stats> = results.iter().map(|r| stats(r)).collect();
    let identical = same_file(
        &dir.path().join("out-writer-ours.eif"),
        &dir.path().join("out-writer-official.eif"),
    )?;
    print_table(&[
        ("enclave-image `EifWriter`", &s[0]),
        ("official `EifBuilder` 0.8.1", &s[1]),
        ("`sha384sum` (same input bytes)", &s[2]),
    ]);
    println!(
        "\nours / official: {:.2}x; ours / sha384sum: {:.2}x; outputs byte-identical: \
         {identical}\n",
        s[0].best / s[1].best,
        s[0].best / s[2].best
    );
    Ok(())
}

fn pcr<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.pcrs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn build_suite(base: &Path, rootfs_bytes: u64, files: usize, runs: usize) -> Result<()> {
    let (kdir, init) = (kernel_dir(), init_path());
    let kernel = KernelInputs::load(KernelProfile::Emulated, &kdir).map_err(|e| {
        format!("{e} (run scripts/fetch-kernel.sh, or set BENCH_KERNEL_DIR; or --suite writer)")
    })?;
    if !init.is_file() {
        return Err(format!(
            "no init binary at {} (run scripts/build-init.sh, or set BENCH_INIT; or --suite \
             writer)",
            init.display()
        )
        .into());
    }
    let dir = tempfile::tempdir_in(base)?;
    let d = dir.path();

    let setup = Instant::now();
    let plan = rootfs::plan(rootfs_bytes, files);
    let sum = rootfs::summary(&plan);
    rootfs::write_dir(&plan, &d.join("rootfs"))?;
    let layer = rootfs::write_oci(&plan, &d.join("oci"), OCI_TAG)?;
    std::os::unix::fs::symlink(&layer.blob, d.join("layer.gz"))?;
    fs::copy(&kernel.kernel.path, d.join("kernel"))?;
    fs::write(d.join("cmdline"), &kernel.cmdline)?;
    let modules: u64 = kernel.modules.iter().map(|m| m.size).sum();
    println!(
        "== Image build: rootfs {} files ({:.1} MiB), {} directories, {} symlinks; OCI layer: \
         tar {:.1} MiB, gzip {:.1} MiB ({:.2}x); kernel {:.1} MiB, {} modules {:.1} MiB, init \
         {:.1} MiB; {runs} runs after a warm-up, modes interleaved (setup {:.0} s)",
        sum.files,
        mib(sum.bytes),
        sum.dirs,
        sum.symlinks,
        mib(layer.tar_len),
        mib(layer.gz_len),
        layer.tar_len as f64 / layer.gz_len as f64,
        mib(kernel.kernel.size),
        kernel.modules.len(),
        mib(modules),
        mib(file_len(&init)?),
        setup.elapsed().as_secs_f64()
    );

    // Warm-up (page cache, and the ramdisks and metadata the references need).
    run_once(d, "build-dir")?;
    run_once(d, "build-oci")?;
    let mut eif = EifReader::open(&d.join("out-build-dir.eif"))?;
    let [_, bootstrap, app] = inputs(d);
    eif.copy_ramdisk_to(0, &mut BufWriter::new(File::create(&bootstrap)?))?;
    eif.copy_ramdisk_to(1, &mut BufWriter::new(File::create(&app)?))?;
    let Some(Metadata::Json(metadata)) = eif.metadata()? else {
        return Err("our EIF has no JSON metadata".into());
    };
    fs::write(d.join("metadata.json"), serde_json::to_vec(&metadata)?)?;
    println!(
        "ramdisks of our build: bootstrap {:.1} MiB, app {:.1} MiB; sha384sum reads {:.1} MiB",
        mib(file_len(&bootstrap)?),
        mib(file_len(&app)?),
        inputs(d)
            .iter()
            .map(|p| file_len(p).map(mib))
            .sum::<Result<f64>>()?
    );

    let results = measure(d, &BUILD_MODES, runs)?;
    let s: Vec<Stats> = results.iter().map(|r| stats(r)).collect();
    print_table(&[
        ("`build()` from `dir:`", &s[0]),
        ("`build()` from `oci:` (gzip layer)", &s[1]),
        ("official `EifBuilder` 0.8.1 (our ramdisks)", &s[2]),
        ("`sha384sum` (kernel + both ramdisks)", &s[3]),
        ("gunzip of the layer blob alone (flate2)", &s[4]),
    ]);
    let last = |i: usize| results[i].last().cloned().unwrap_or_default();
    let (dir_run, oci_run, official_run) = (last(0), last(1), last(2));
    let same_ramdisks = pcr(&dir_run, "pcr1") == pcr(&oci_run, "pcr1")
        && pcr(&dir_run, "pcr2") == pcr(&oci_run, "pcr2");
    let same_pcrs = ["pcr0", "pcr1", "pcr2"]
        .iter()
        .all(|p| !pcr(&dir_run, p).is_empty() && pcr(&dir_run, p) == pcr(&official_run, p));
    let identical = same_file(
        &d.join("out-build-dir.eif"),
        &d.join("out-build-official.eif"),
    )?;
    println!(
        "\ndir / official: {:.2}x; dir / sha384sum: {:.2}x; oci / official: {:.2}x; \
         oci / sha384sum: {:.2}x",
        s[0].best / s[2].best,
        s[0].best / s[3].best,
        s[1].best / s[2].best,
        s[1].best / s[3].best
    );
    println!(
        "oci / (sha384sum + gunzip = {:.0} ms): {:.2}x",
        s[3].best + s[4].best,
        s[1].best / (s[3].best + s[4].best)
    );
    println!(
        "dir and oci builds have the same ramdisks (PCR1, PCR2): {same_ramdisks}; official \
         PCR0-2 equal ours: {same_pcrs}; official EIF byte-identical to our dir build: \
         {identical}"
    );

    println!("\nPhases of the fastest run (ms):\n\n| phase | `dir:` | `oci:` |\n|---|---|---|");
    let (pd, po) = (&s[0].fastest.phases, &s[1].fastest.phases);
    for i in 0..pd.len().max(po.len()) {
        let (nd, td) = pd.get(i).cloned().unwrap_or_default();
        let (no, to) = po.get(i).cloned().unwrap_or_default();
        let name = if nd == no { nd } else { format!("{nd} / {no}") };
        println!("| {name} | {td:.0} | {to:.0} |");
    }
    println!(
        "| (total inside the process) | {:.0} | {:.0} |",
        pd.iter().map(|p| p.1).sum::<f64>(),
        po.iter().map(|p| p.1).sum::<f64>()
    );
    Ok(())
}
