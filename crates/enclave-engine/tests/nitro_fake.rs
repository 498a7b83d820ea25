//! The Nitro backend against a fake `nitro-cli` that replays the outputs recorded on a real
//! Nitro instance (testdata/nitro-cli, copied from the shared fixtures; or NITRO_CLI_FIXTURES).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use enclave_engine::backend::nitro::{NitroBackend, NitroPaths};
use enclave_engine::backend::{Backend, LaunchSpec};
use enclave_engine::eif::EifInfo;

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

/// A nitro-cli that prints the recorded stdout/stderr of each command and logs its arguments.
fn fake_cli(dir: &Path, fx: &Path, fail_run_with: Option<&str>) -> PathBuf {
    let script = dir.join("nitro-cli");
    let run = match fail_run_with {
        Some(stderr) => format!("cat '{}/{stderr}' >&2; exit 1", fx.display()),
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
         *) echo \"[ E13 ] Invalid command\" >&2; exit 1 ;;\nesac\n",
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

fn spec(dir: &Path, memory: u64, cpus: u32) -> LaunchSpec {
    LaunchSpec {
        id: "0123456789abcdef".into(),
        name: "hello".into(),
        eif: "/x/hello.eif".into(),
        dir: dir.to_owned(),
        sockets: dir.to_owned(),
        cpus,
        memory_mib: memory,
        cid: 16,
        debug_mode: true,
    }
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
    let s = spec(tmp.path(), 512, 2);
    backend.preflight(&s, &eif()).unwrap();
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
    assert!(calls.contains(
        "run-enclave --eif-path /x/hello.eif --cpu-count 2 --memory 512 --enclave-cid 16 --debug-mode"
    ), "{calls}");
    assert!(
        calls.contains("terminate-enclave --enclave-id i-09...78"),
        "{calls}"
    );
}

#[test]
fn e35_is_explained() {
    let Some(fx) = fixtures() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cli = fake_cli(tmp.path(), &fx, Some("run-enclave-E35.stderr"));
    let mut backend = NitroBackend::with_paths(paths(tmp.path(), cli, &fx));
    let err = backend
        .launch(&spec(tmp.path(), 512, 2))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("E35") && err.contains("hugepages"), "{err}");
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
