//! `enclave-ctl node setup` from the real binary, on a node root made in a temporary directory
//! (`--root`): `--check` names what is missing (exit 1), the first run changes it, the second
//! changes nothing, `--check` then passes; other keys and comments of allocator.yaml stay, a
//! bad one is reported and left as it is, and bad flags are usage errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_ok, run, stderr, stdout};

/// nitro-cli's own allocator.yaml (aws-nitro-enclaves-cli, bootstrap/allocator.yaml).
const AWS_ALLOCATOR: &str = "---\n# Enclave configuration file.\n#\n# How much memory to allocate for enclaves (in MiB).\nmemory_mib: 512\n#\n# How many CPUs to reserve for enclaves.\ncpu_count: 2\n#\n# Alternatively, the exact CPUs to be reserved for the enclave can be explicitly\n# configured by using `cpu_pool` (like below), instead of `cpu_count`.\n# Note: cpu_count and cpu_pool conflict with each other. Only use exactly one of them.\n# Example of reserving CPUs 2, 3, and 6 through 9:\n# cpu_pool: 2,3,6-9\n";

const HUGE_2M: &str = "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
const HUGE_1G: &str = "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages";

/// A node's root as a fresh instance with aws-nitro-enclaves-cli installed has it, minus the
/// group: allocator.yaml at its defaults, no hugepages.
fn node_root(dir: &Path) {
    for (file, content) in [
        (
            "etc/group",
            "root:x:0:\nshadow:x:42:\nsystemd-journal:x:999:\n",
        ),
        ("etc/gshadow", "root:*::\nshadow:*::\n"),
        ("etc/nitro_enclaves/allocator.yaml", AWS_ALLOCATOR),
        (HUGE_2M, "0\n"),
        (HUGE_1G, "0\n"),
    ] {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

fn setup(root: &Path, extra: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
        .args(["node", "setup", "--root"])
        .arg(root)
        .args(extra))
}

/// (status, step) of each output line.
fn steps(o: &Output) -> Vec<(String, String)> {
    stdout(o)
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            (
                words.next().unwrap().to_owned(),
                words.next().unwrap().to_owned(),
            )
        })
        .collect()
}

fn statuses(o: &Output) -> Vec<String> {
    steps(o).into_iter().map(|(s, _)| s).collect()
}

fn read(root: &Path, file: &str) -> String {
    std::fs::read_to_string(root.join(file)).unwrap()
}

#[test]
fn check_setup_again_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    node_root(root);
    let args = ["--cpus", "4", "--memory", "1000"];

    let before = setup(root, &[&args[..], &["--check"]].concat());
    assert_eq!(before.status.code(), Some(1), "{}", stdout(&before));
    assert_eq!(
        steps(&before),
        [
            ("missing", "allocator-config"),
            ("missing", "hugepages"),
            ("missing", "ne-group"),
            ("skipped", "allocator-service")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert!(
        stdout(&before).contains("memory_mib 512, cpu_count 2, want memory_mib 1000, cpu_count 4"),
        "{}",
        stdout(&before)
    );
    assert_eq!(
        read(root, "etc/nitro_enclaves/allocator.yaml"),
        AWS_ALLOCATOR,
        "--check changes nothing"
    );
    assert_eq!(read(root, HUGE_2M), "0\n");

    let first = setup(root, &args);
    assert_ok(&first);
    assert_eq!(
        statuses(&first),
        ["changed", "changed", "changed", "skipped"],
        "{}",
        stdout(&first)
    );
    assert!(
        stdout(&first).contains("not /: enable nitro-enclaves-allocator.service"),
        "{}",
        stdout(&first)
    );
    let allocator = read(root, "etc/nitro_enclaves/allocator.yaml");
    assert_eq!(
        allocator,
        AWS_ALLOCATOR
            .replace("memory_mib: 512", "memory_mib: 1000")
            .replace("cpu_count: 2", "cpu_count: 4"),
        "the two values changed, comments kept"
    );
    assert_eq!(read(root, HUGE_2M).trim(), "500", "1000 MiB in 2 MiB pages");
    assert_eq!(read(root, HUGE_1G).trim(), "0", "the other size untouched");
    assert!(
        read(root, "etc/group").ends_with("systemd-journal:x:999:\nne:x:998:\n"),
        "{}",
        read(root, "etc/group")
    );
    assert!(read(root, "etc/gshadow").ends_with("ne:!::\n"));

    let files = [
        "etc/nitro_enclaves/allocator.yaml",
        "etc/group",
        "etc/gshadow",
        HUGE_2M,
    ];
    let snapshot: Vec<String> = files.iter().map(|f| read(root, f)).collect();
    let second = setup(root, &args);
    assert_ok(&second);
    assert_eq!(
        statuses(&second),
        ["ok", "ok", "ok", "skipped"],
        "{}",
        stdout(&second)
    );
    let again: Vec<String> = files.iter().map(|f| read(root, f)).collect();
    assert_eq!(snapshot, again, "the second run changes nothing");

    let after = setup(root, &[&args[..], &["--check"]].concat());
    assert_eq!(after.status.code(), Some(0), "{}", stdout(&after));

    let json = setup(root, &[&args[..], &["--check", "--json"]].concat());
    assert_ok(&json);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["status"], "ok");
    assert_eq!(list[0]["step"], "allocator-config");

    // No temporary file left next to the files replaced.
    for d in ["etc", "etc/nitro_enclaves"] {
        for e in std::fs::read_dir(root.join(d)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".enclave-ctl"), "{d}/{name} left behind");
        }
    }
}

#[test]
fn one_gib_pages_round_up_and_hugepages_are_never_lowered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    node_root(root);
    let o = setup(
        root,
        &["--cpus", "2", "--memory", "1500", "--hugepage-size", "1G"],
    );
    assert_ok(&o);
    assert_eq!(read(root, HUGE_1G).trim(), "2");

    std::fs::write(root.join(HUGE_2M), "4096\n").unwrap();
    let o = setup(root, &["--cpus", "2", "--memory", "512"]);
    assert_ok(&o);
    assert_eq!(
        steps(&o)[1],
        ("ok".to_owned(), "hugepages".to_owned()),
        "{}",
        stdout(&o)
    );
    assert_eq!(read(root, HUGE_2M).trim(), "4096");
}

#[test]
fn a_missing_allocator_config_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    node_root(root);
    std::fs::remove_dir_all(root.join("etc/nitro_enclaves")).unwrap();
    let o = setup(root, &["--cpus", "2", "--memory", "512"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("no file ->"), "{}", stdout(&o));
    assert_eq!(
        read(root, "etc/nitro_enclaves/allocator.yaml"),
        "memory_mib: 512\ncpu_count: 2\n"
    );
}

#[test]
fn a_bad_allocator_config_is_reported_and_left_alone() {
    for (content, says) in [
        ("memory_mib: [512\ncpu_count: 2\n", "is not valid YAML"),
        ("- 1\n- 2\n", "not a mapping"),
        ("memory_mib: 512\ncpu_pool: 2,3\n", "cpu_pool"),
        ("{memory_mib: 512, cpu_count: 2}\n", "set them by hand"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        node_root(root);
        let path = root.join("etc/nitro_enclaves/allocator.yaml");
        std::fs::write(&path, content).unwrap();
        let o = setup(root, &["--cpus", "4", "--memory", "1024"]);
        assert_eq!(o.status.code(), Some(1), "{content:?}: {}", stdout(&o));
        assert!(
            stderr(&o).contains(says) && stderr(&o).contains("allocator.yaml"),
            "{content:?}: {}",
            stderr(&o)
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            content,
            "not clobbered"
        );
        assert_eq!(read(root, HUGE_2M), "0\n", "nothing after the failed step");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }
}

#[test]
fn clear_errors_for_a_missing_root_or_sysfs() {
    let dir = tempfile::tempdir().unwrap();
    let o = setup(
        &dir.path().join("nope"),
        &["--cpus", "2", "--memory", "512"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nope: no such directory"),
        "{}",
        stderr(&o)
    );

    let root = dir.path();
    node_root(root);
    std::fs::remove_dir_all(root.join("sys")).unwrap();
    let o = setup(root, &["--cpus", "2", "--memory", "512"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("hugepages-2048kB does not exist"),
        "{}",
        stderr(&o)
    );
    let o = setup(root, &["--cpus", "2", "--memory", "512", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(steps(&o)[1].0, "missing");
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--memory", "512"][..],
        &["--cpus", "2"],
        &["--cpus", "0", "--memory", "512"],
        &["--cpus", "2", "--memory", "512", "--hugepage-size", "4M"],
        &["--cpus", "two", "--memory", "512"],
    ] {
        let o = setup(dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}
