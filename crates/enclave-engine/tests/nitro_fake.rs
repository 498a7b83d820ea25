//! The Nitro backend against a fake `nitro-cli` that replays the outputs recorded on a real
//! Nitro instance (testdata/nitro-cli, copied from the shared fixtures; or NITRO_CLI_FIXTURES).
//! Enclaves are recorded as `run` records them (`lifecycle::create_with`), so nitro-cli is
//! handed the EIF pinned in the enclave's directory, measured just before.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use enclave_engine::backend::nitro::{NitroBackend, NitroPaths};
use enclave_engine::backend::{Backend, BackendChoice, BackendKind, LaunchSpec};
use enclave_engine::eif::EifInfo;
use enclave_engine::lifecycle::{create_with, RunOptions};
use enclave_engine::state::StateRoot;
use enclave_engine::EngineError;
use enclave_image::eif::{EifOptions, EifWriter};

fn fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("NITRO_CLI_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/nitro-cli"));
    if dir.join("run-enclave.json").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "nitro-cli fixtures missing in CI"
    );
    eprintln!("SKIP: no nitro-cli fixtures at {}", dir.display());
    None
}

/// A nitro-cli that prints the recorded stdout/stderr of each command and logs its arguments;
/// with `fail_run_with`, `run-enclave` prints that file to stderr and fails.
fn fake_cli(dir: &Path, fx: &Path, fail_run_with: Option<&Path>) -> PathBuf {
    let script = dir.join("nitro-cli");
    let run = match fail_run_with {
        Some(stderr) => format!("cat '{}' >&2; exit 1", stderr.display()),
        None => format!(
            "cat '{0}/run-enclave.json'; cat '{0}/run-enclave.stderr' >&2",
            fx.display()
        ),
    };
    let text = format!(
        "#!/bin/sh\necho \"$@\" >> '{log}'\ncase \"$1\" in\n\
         run-enclave) {run} ;;\n\
         describe-enclaves) cat '{fx}/describe-enclaves.json' ;;\n\
         terminate-enclave) cat '{fx}/terminate-enclave.json'; cat '{fx}/terminate-enclave.stderr' >&2 ;;\n\
         console) sleep 30 ;;\n\
         *) echo \"[ E14 ] Invalid command.\" >&2; exit 1 ;;\nesac\n",
        log = dir.join("calls").display(),
        fx = fx.display(),
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn paths(dir: &Path, cli: PathBuf, fx: &Path) -> NitroPaths {
    let device = dir.join("nitro_enclaves");
    std::fs::write(&device, "").unwrap();
    let mounts = dir.join("mounts");
    std::fs::write(&mounts, "hugetlbfs /dev/hugepages hugetlbfs rw 0 0\n").unwrap();
    let meminfo = dir.join("meminfo");
    std::fs::write(
        &meminfo,
        "HugePages_Free:     512\nHugepagesize:       2048 kB\n",
    )
    .unwrap();
    NitroPaths {
        cli: Some(cli),
        device,
        allocator: fx.join("allocator.yaml"),
        meminfo,
        mounts,
    }
}

/// A launch spec for the preflight checks, which do not look at the EIF.
fn spec(dir: &Path, memory: u64, cpus: u32) -> LaunchSpec {
    LaunchSpec {
        id: "0123456789abcdef".into(),
        name: "hello".into(),
        eif: "/x/hello.eif".into(),
        measurements: Default::default(),
        dir: dir.to_owned(),
        sockets: dir.to_owned(),
        cpus,
        memory_mib: memory,
        cid: 16,
        debug_mode: true,
    }
}

/// A small EIF whose app ramdisk is `app`.
fn write_eif(path: &Path, app: &[u8]) {
    let out = std::fs::File::create(path).unwrap();
    let mut w = EifWriter::new(out, EifOptions::default()).unwrap();
    w.kernel(&mut &b"kernel"[..]).unwrap();
    w.cmdline("console=ttyS0").unwrap();
    w.metadata(br#"{"ImageName":"hello"}"#).unwrap();
    w.ramdisk_from(&mut &b"bootstrap"[..]).unwrap();
    w.ramdisk_from(&mut &app[..]).unwrap();
    w.finish(None).unwrap();
}

/// `enclave-ctl run --backend nitro --debug-mode --cpus 2 --memory 512 <tmp>/hello.eif` with
/// this backend: the state root, the launch spec the supervisor would use, the EIF given.
fn run(tmp: &Path, backend: &NitroBackend) -> (StateRoot, LaunchSpec, PathBuf) {
    let eif = tmp.join("hello.eif");
    write_eif(&eif, b"the app");
    let root = StateRoot::open(&tmp.join("state")).unwrap();
    let opts = RunOptions {
        eif: eif.clone(),
        name: Some("hello".into()),
        cpus: 2,
        memory_mib: 512,
        backend: BackendChoice::Kind(BackendKind::Nitro),
        debug_mode: true,
        restart: Default::default(),
        publish: vec![],
        add_hosts: vec![],
        secrets: vec![],
        auto_remove: false,
        health_listen: None,
        metrics_listen: None,
    };
    let rec = create_with(&root, &opts, backend).unwrap();
    let spec = root.launch_spec(&rec);
    (root, spec, eif)
}

/// Flips the last byte of `path` in place (the app ramdisk's data ends the file).
fn tamper(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = f.metadata().unwrap().len();
    let mut last = [0u8];
    f.read_exact_at(&mut last, len - 1).unwrap();
    f.write_all_at(&[last[0] ^ 0xff], len - 1).unwrap();
}

fn eif() -> EifInfo {
    EifInfo {
        path: "/x/hello.eif".into(),
        size: 20 << 20,
        measurements: Default::default(),
        ramdisks: 2,
        spec: None,
    }
}

#[test]
fn run_describe_terminate_replay_the_recorded_outputs() {
    let Some(fx) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cli = fake_cli(tmp.path(), &fx, None);
    let mut backend = NitroBackend::with_paths(paths(tmp.path(), cli, &fx));
    let (_root, s, _eif) = run(tmp.path(), &backend);
    let mut inst = backend.launch(&s).unwrap();
    let info = inst.info();
    assert_eq!(info.enclave_id.as_deref(), Some("i-09...78"));
    assert_eq!(info.pid, Some(23953));
    assert!(inst.heartbeat_by_backend());
    assert!(inst.take_console().is_some(), "debug mode has a console");
    assert_eq!(inst.try_wait().unwrap(), None);
    let described = backend.describe().unwrap();
    assert_eq!(described[0].state.as_deref(), Some("RUNNING"));
    assert_eq!(described[0].flags.as_deref(), Some("DEBUG_MODE"));
    assert_eq!(described[0].cpu_ids, [1, 3]);
    let exit = inst.kill().unwrap();
    assert_eq!(exit.description, "terminated");
    let calls = std::fs::read_to_string(tmp.path().join("calls")).unwrap();
    assert!(
        calls.contains(&format!(
            "run-enclave --eif-path {} --cpu-count 2 --memory 512 --enclave-cid 16 --debug-mode",
            s.eif.display()
        )),
        "{calls}"
    );
    assert!(
        calls.contains("terminate-enclave --enclave-id i-09...78"),
        "{calls}"
    );
}

#[test]
fn e35_is_explained() {
    let Some(fx) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cli = fake_cli(tmp.path(), &fx, Some(&fx.join("run-enclave-E35.stderr")));
    let mut backend = NitroBackend::with_paths(paths(tmp.path(), cli, &fx));
    let (_root, s, _eif) = run(tmp.path(), &backend);
    let err = backend.launch(&s).err().unwrap().to_string();
    assert!(err.contains("E35") && err.contains("hugepages"), "{err}");
}

/// Each class of failure a user meets first on a new parent, replayed by the fake nitro-cli in
/// nitro-cli's own format (the recorded E35's), says what to fix and keeps nitro-cli's words.
#[test]
fn each_class_of_first_day_failure_says_what_to_fix() {
    let Some(fx) = fixtures() else { return };
    // (class, code, nitro-cli's sentence, what our message must name)
    let cases = [
        (
            "device permission",
            "E18",
            "File permissions error.",
            "`ne` group",
        ),
        (
            "CPU pool",
            "E22",
            "Insufficient CPUs requested.",
            "cpu_count",
        ),
        (
            "allocator",
            "E27",
            "Insufficient memory available.",
            "memory_mib",
        ),
        (
            "memory",
            "E26",
            "Insufficient memory requested.",
            "raise --memory",
        ),
        ("hugepages", "E25", "No such hugepage flag.", "hugepages"),
    ];
    for (class, code, sentence, fix) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let stderr = tmp.path().join("run.stderr");
        std::fs::write(
            &stderr,
            format!(
                "Start allocating memory...\n[ {code} ] {sentence} Such error appears when …\n\n\
                 For more details, please visit \
                 https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#{code}\n"
            ),
        )
        .unwrap();
        let cli = fake_cli(tmp.path(), &fx, Some(&stderr));
        let mut backend = NitroBackend::with_paths(paths(tmp.path(), cli, &fx));
        let (_root, s, _eif) = run(tmp.path(), &backend);
        let err = backend.launch(&s).err().unwrap().to_string();
        assert!(err.contains(code) && err.contains(fix), "{class}: {err}");
        assert!(
            err.contains(sentence),
            "{class}: nitro-cli's words kept: {err}"
        );
    }
}

#[test]
fn nitro_cli_runs_the_pinned_copy_and_never_sees_a_tampered_one() {
    let Some(fx) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cli = fake_cli(tmp.path(), &fx, None);
    let mut backend = NitroBackend::with_paths(paths(tmp.path(), cli, &fx));
    let (root, s, eif) = run(tmp.path(), &backend);
    assert!(s.eif.starts_with(root.path()) && s.eif.ends_with("image.eif"));
    // The EIF given to run, replaced and then rewritten in place: nitro-cli still gets the
    // pinned copy, which still measures as recorded.
    write_eif(&eif, b"another app");
    tamper(&eif);
    drop(backend.launch(&s).unwrap());
    let calls = std::fs::read_to_string(tmp.path().join("calls")).unwrap();
    assert!(
        calls.contains(&format!("run-enclave --eif-path {} ", s.eif.display())),
        "{calls}"
    );
    assert!(!calls.contains(&eif.display().to_string()), "{calls}");
    // The pinned copy itself modified: refused before nitro-cli is run.
    tamper(&s.eif);
    let err = backend.launch(&s).err().unwrap();
    assert!(
        matches!(err, EngineError::MeasurementMismatch { .. }) && err.refuses_boot(),
        "{err}"
    );
    assert!(err.to_string().contains(&s.measurements["PCR0"]), "{err}");
    let after = std::fs::read_to_string(tmp.path().join("calls")).unwrap();
    assert_eq!(after, calls, "nitro-cli was not called again");
}

#[test]
fn preflight_says_what_to_fix() {
    let Some(fx) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cli = fake_cli(tmp.path(), &fx, None);
    let p = paths(tmp.path(), cli, &fx);
    let check = |p: &NitroPaths, mem, cpus| {
        NitroBackend::with_paths(p.clone())
            .preflight(&spec(tmp.path(), mem, cpus), &eif())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(check(&p, 1024, 2).contains("memory_mib"));
    assert!(check(&p, 512, 4).contains("cpu_count"));
    assert!(
        check(&p, 64, 2).contains("--memory 80"),
        "{}",
        check(&p, 64, 2)
    );
    let mut no_huge = p.clone();
    no_huge.mounts = tmp.path().join("nomounts");
    assert!(check(&no_huge, 512, 2).contains("hugetlbfs"));
    let mut no_dev = p.clone();
    no_dev.device = tmp.path().join("absent");
    assert!(check(&no_dev, 512, 2).contains("--backend qemu"));
}
