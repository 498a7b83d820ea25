use super::*;
use crate::backend::BackendKind;
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
    let root = StateRoot::open(dir.path()).unwrap();
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
    let root = StateRoot::open(dir.path()).unwrap();
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
    let root = StateRoot::open(dir.path()).unwrap();
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
