use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::backend::{BackendKind, InstanceInfo};
use crate::policy::RestartPolicy;

pub(crate) fn record(id: &str, name: &str) -> EnclaveRecord {
    EnclaveRecord {
        id: id.to_owned(),
        name: name.to_owned(),
        created: util::now_rfc3339(),
        eif: "/x.eif".into(),
        backend: BackendKind::Fake,
        cpus: 1,
        memory_mib: 128,
        debug_mode: false,
        restart: RestartPolicy::No,
        cid: 0,
        status: Status::Created,
        supervisor_pid: None,
        instance: InstanceInfo::default(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        oom_killed: false,
        auto_remove: false,
        health_listen: None,
        metrics_listen: None,
        health: None,
        boot_ms: None,
        restarts: 0,
        exit: None,
        error: None,
        measurements: Default::default(),
        ports: Ports::default(),
        network: Default::default(),
        control_addr: String::new(),
    }
}

#[test]
fn names_are_checked() {
    for ok in ["a", "hello-1", "x.y_z", "9"] {
        check_name(ok).unwrap();
    }
    for bad in ["", "-a", "a b", "a/b", &"x".repeat(65)] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn create_gives_distinct_cids_and_refuses_duplicate_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = StateRoot::open(&dir.path().join("state")).unwrap();
    let a = root.create(record("aaaa1111", "one")).unwrap();
    let b = root.create(record("aaaa2222", "two")).unwrap();
    assert_eq!((a.cid, b.cid), (FIRST_CID, FIRST_CID + 1));
    let e = root.create(record("bbbb", "one")).unwrap_err();
    assert!(matches!(e, EngineError::NameInUse { .. }), "{e}");
    assert!(!root.dir("bbbb").exists(), "nothing half-created");
    // A free CID below the highest is reused once its enclave ended.
    let mut a = root.load("aaaa1111").unwrap();
    a.status = Status::Exited;
    root.save(&a).unwrap();
    assert_eq!(root.create(record("cccc", "three")).unwrap().cid, FIRST_CID);
}

#[test]
fn resolve_takes_ids_names_and_unique_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let root = StateRoot::open(&dir.path().join("state")).unwrap();
    root.create(record("abc123", "web")).unwrap();
    root.create(record("abd456", "db")).unwrap();
    assert_eq!(root.resolve("web").unwrap().id, "abc123");
    assert_eq!(root.resolve("abd").unwrap().name, "db");
    assert_eq!(root.resolve("abc123").unwrap().name, "web");
    assert!(matches!(
        root.resolve("ab"),
        Err(EngineError::Ambiguous { .. })
    ));
    assert!(matches!(root.resolve("zz"), Err(EngineError::NotFound(_))));
    assert!(matches!(root.resolve(""), Err(EngineError::NotFound(_))));
}

#[test]
fn an_active_enclave_without_supervisor_reads_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let root = StateRoot::open(&dir.path().join("state")).unwrap();
    let mut rec = record("dead", "dead");
    rec.status = Status::Running;
    root.create(rec).unwrap();
    let rec = root.resolve("dead").unwrap();
    assert_eq!(rec.status, Status::Failed);
    assert_eq!(rec.error.as_deref(), Some("the supervisor died"));
    let _held = root.try_lock_supervisor("dead").unwrap().unwrap();
    // The lock is per open file description: a second open in this process conflicts.
    assert!(root.try_lock_supervisor("dead").unwrap().is_none());
    assert_eq!(root.resolve("dead").unwrap().status, Status::Running);
}

/// The uid the squatting tests give their directories (tests run as root, so chown works).
const NOBODY: u32 = 65534;

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn refusal(root: &Path) -> String {
    let e = StateRoot::open(root).expect_err("a squatted root was accepted");
    assert!(matches!(e, EngineError::StateDir(_)), "{e}");
    e.to_string()
}

#[test]
fn the_tree_is_made_0700() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let root = StateRoot::open(&path).unwrap();
    let rec = root.create(record("abcdef0123456789", "x")).unwrap();
    for p in [
        path.clone(),
        path.join("enclaves"),
        path.join("sk"),
        root.dir(&rec.id),
        root.dir(&rec.id).join("logs"),
        root.socket_dir(&rec.id),
    ] {
        assert_eq!(mode_of(&p), 0o700, "{}", p.display());
    }
    assert_eq!(mode_of(&root.dir(&rec.id).join("state.json")), 0o600);
    // Opening again accepts what it made.
    StateRoot::open(&path).unwrap();
}

#[test]
fn a_root_owned_by_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    fs::create_dir(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
    nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(NOBODY)), None).unwrap();
    let e = refusal(&path);
    assert!(
        e.contains(&path.display().to_string())
            && e.contains("owned by uid 65534, not by you (uid 0)")
            && e.contains("remove it"),
        "{e}"
    );
    assert!(!path.join("enclaves").exists(), "nothing made in it");
}

#[test]
fn a_symlinked_root_is_refused_even_to_a_directory_of_ours() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    fs::create_dir(&real).unwrap();
    fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).unwrap();
    let link = dir.path().join("state");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let e = refusal(&link);
    assert!(
        e.contains("is a symbolic link") && e.contains(&format!("(to {})", real.display())),
        "{e}"
    );
    assert_eq!(
        fs::read_dir(&real).unwrap().count(),
        0,
        "the target untouched"
    );
}

#[test]
fn a_root_with_group_or_other_bits_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o755, 0o770, 0o701] {
        let path = dir.path().join(format!("state{mode:o}"));
        fs::create_dir(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let e = refusal(&path);
        assert!(
            e.contains(&format!("mode {mode:04o} has group or other bits"))
                && e.contains(&format!("chmod 0700 {}", path.display())),
            "{e}"
        );
        assert_eq!(mode_of(&path), mode, "not changed behind the user's back");
    }
    // A file is not a directory.
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    assert!(refusal(&file).contains("is not a directory"));
}

#[test]
fn directories_inside_the_root_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    StateRoot::open(&path).unwrap();
    // enclaves/ opened up by someone: refused at the next open.
    fs::set_permissions(path.join("enclaves"), fs::Permissions::from_mode(0o755)).unwrap();
    let e = refusal(&path);
    assert!(
        e.contains(&format!("{}: mode 0755", path.join("enclaves").display())),
        "{e}"
    );
    fs::set_permissions(path.join("enclaves"), fs::Permissions::from_mode(0o700)).unwrap();
    // sk/ replaced by a symlink.
    let elsewhere = tempfile::tempdir().unwrap();
    fs::remove_dir(path.join("sk")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), path.join("sk")).unwrap();
    assert!(refusal(&path).contains("is a symbolic link"));
    fs::remove_file(path.join("sk")).unwrap();
    let root = StateRoot::open(&path).unwrap();
    // A socket directory planted for a future enclave, owned by another user.
    let id = "5ca77e4ed0000000";
    fs::create_dir(root.socket_dir(id)).unwrap();
    fs::set_permissions(root.socket_dir(id), fs::Permissions::from_mode(0o700)).unwrap();
    nix::unistd::chown(
        &root.socket_dir(id),
        Some(nix::unistd::Uid::from_raw(NOBODY)),
        None,
    )
    .unwrap();
    let e = root.create(record(id, "planted")).unwrap_err().to_string();
    assert!(e.contains("owned by uid 65534"), "{e}");
    assert!(!root.dir(id).exists(), "nothing half-created");
    // The emulation CA's directory, as a symlink to a CA someone else made.
    let theirs = tempfile::tempdir().unwrap();
    let ca_dir = theirs.path().join("ca");
    enclave_nsm::emulated::EmulationCa::load_or_create(&ca_dir).unwrap();
    let ours = path.join(enclave_nsm::emulated::EMULATION_CA_DIR);
    std::os::unix::fs::symlink(&ca_dir, &ours).unwrap();
    let e = emulation_ca(&path).unwrap_err();
    assert!(e.to_string().contains("is a symbolic link"), "{e}");
}

#[test]
fn ancestors_others_could_change_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let e = refusal(&open.join("state"));
    assert!(
        e.contains(&format!("its ancestor {} (mode 0777)", open.display())),
        "{e}"
    );
    assert!(!open.join("state").exists());
    // Sticky, as /tmp: only an entry's owner can rename it, so it is fine.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    StateRoot::open(&open.join("state")).unwrap();
    let theirs = dir.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(NOBODY)), None).unwrap();
    let e = refusal(&theirs.join("state"));
    assert!(
        e.contains(&format!(
            "its ancestor {} is owned by uid 65534",
            theirs.display()
        )),
        "{e}"
    );
}

#[test]
fn the_default_root_never_falls_back_to_a_shared_directory() {
    assert_eq!(
        default_root_for(0, None).unwrap(),
        Path::new("/run/enclave-engine")
    );
    assert_eq!(
        default_root_for(1000, Some("/run/user/1000".as_ref())).unwrap(),
        Path::new("/run/user/1000/enclave-engine")
    );
    for unset in [None, Some("".as_ref())] {
        let e = default_root_for(1000, unset).unwrap_err().to_string();
        assert!(
            e.contains("XDG_RUNTIME_DIR is not set")
                && e.contains("/run/user/1000")
                && e.contains("--state-dir")
                && e.contains("ENCLAVE_ENGINE_STATE_DIR"),
            "{e}"
        );
    }
}
