use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::*;
use crate::backend::fake::{FakeBackend, FakeBoot};
use crate::state::{StateRoot, Status};

fn setup(policy: &str) -> (tempfile::TempDir, StateRoot, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = StateRoot::open(&dir.path().join("state")).unwrap();
    let mut rec = crate::state::tests::record("f00d", "fake");
    rec.status = Status::Created;
    rec.restart = policy.parse().unwrap();
    let rec = root.create(rec).unwrap();
    (dir, root, rec.id)
}

fn opts() -> Options {
    Options {
        boot_timeout: Duration::from_millis(300),
        tick: Duration::from_millis(5),
    }
}

#[test]
fn a_crash_is_restarted_under_on_failure_up_to_its_limit() {
    let (_d, root, id) = setup("on-failure:1");
    let mut fake = FakeBackend::with_script([
        FakeBoot::crashes_after(Duration::from_millis(20)),
        FakeBoot::crashes_after(Duration::from_millis(20)),
    ]);
    let stop = AtomicBool::new(false);
    let rec = supervise(&root, &id, &mut fake, &opts(), &stop).unwrap();
    assert_eq!(rec.status, Status::Failed);
    assert_eq!(rec.restarts, 1);
    assert_eq!(fake.calls(), ["launch fake cid=16", "launch fake cid=16"]);
    let (logs, _) = crate::logs::read_all_then_follow(&root.dir(&id).join("logs"));
    assert!(
        logs.iter().any(|e| e.source == "main" && e.text == "hello"),
        "{logs:?}"
    );
    assert!(logs
        .iter()
        .any(|e| e.source == "supervisor" && e.text.starts_with("restarting")));
}

#[test]
fn a_crash_is_final_under_no() {
    let (_d, root, id) = setup("no");
    let mut fake = FakeBackend::with_script([FakeBoot::crashes_after(Duration::from_millis(10))]);
    let rec = supervise(&root, &id, &mut fake, &opts(), &AtomicBool::new(false)).unwrap();
    assert_eq!((rec.status, rec.restarts), (Status::Failed, 0));
    assert!(rec.error.unwrap().contains("fake ended"));
}

#[test]
fn no_heartbeat_fails_with_the_console_tail() {
    let (_d, root, id) = setup("no");
    let mut fake = FakeBackend::with_script([FakeBoot::Runs {
        console: "[    0.1] booting\nstuck here\n".into(),
        heartbeat: false,
        runs_for: None,
        fails: false,
    }]);
    let rec = supervise(&root, &id, &mut fake, &opts(), &AtomicBool::new(false)).unwrap();
    assert_eq!(rec.status, Status::Failed);
    let err = rec.error.unwrap();
    assert!(
        err.contains("no boot heartbeat") && err.contains("stuck here"),
        "{err}"
    );
    assert_eq!(fake.calls(), ["launch fake cid=16", "kill fake"]);
}

#[test]
fn a_launch_failure_is_recorded() {
    let (_d, root, id) = setup("no");
    let mut fake = FakeBackend::with_script([FakeBoot::LaunchFails("no qemu".into())]);
    let rec = supervise(&root, &id, &mut fake, &opts(), &AtomicBool::new(false)).unwrap();
    assert_eq!(
        (rec.status, rec.error.as_deref()),
        (Status::Failed, Some("no qemu"))
    );
}

#[test]
fn stop_ends_a_running_enclave_without_restart() {
    let (_d, root, id) = setup("always");
    let mut fake = FakeBackend::default();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let r2 = root.clone();
    let id2 = id.clone();
    let t = std::thread::spawn(move || {
        for _ in 0..200 {
            if r2.load(&id2).unwrap().status == Status::Running {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        s.store(true, Ordering::SeqCst);
    });
    let rec = supervise(&root, &id, &mut fake, &opts(), &stop).unwrap();
    t.join().unwrap();
    assert_eq!(rec.status, Status::Exited);
    assert!(rec.exit.unwrap().starts_with("stopped"));
    assert_eq!(fake.calls(), ["launch fake cid=16", "kill fake"]);
}

/// An enclave recorded by `run` (lifecycle::create_with) from a real EIF, with `policy`:
/// (tempdir, root, id, the EIF given to run).
fn setup_with_eif(policy: &str) -> (tempfile::TempDir, StateRoot, String, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = StateRoot::open(&dir.path().join("state")).unwrap();
    let eif = dir.path().join("app.eif");
    crate::eif::tests::write_eif(&eif, b"the app");
    let opts = crate::lifecycle::RunOptions {
        eif: eif.clone(),
        name: Some("pinned".into()),
        cpus: 1,
        memory_mib: 128,
        backend: crate::backend::BackendChoice::Kind(crate::backend::BackendKind::Fake),
        debug_mode: false,
        restart: policy.parse().unwrap(),
        publish: vec![],
        add_hosts: vec![],
        secrets: vec![],
        auto_remove: false,
        health_listen: None,
        metrics_listen: None,
    };
    let rec = crate::lifecycle::create_with(&root, &opts, &FakeBackend::default()).unwrap();
    (dir, root, rec.id, eif)
}

#[test]
fn a_replaced_original_does_not_matter_the_pinned_copy_boots() {
    let (dir, root, id, eif) = setup_with_eif("on-failure:1");
    // Replaced by another valid EIF, then rewritten in place: neither is booted.
    crate::eif::tests::write_eif(&eif, b"another app");
    crate::eif::tests::tamper_app_ramdisk(&eif);
    let mut fake = FakeBackend::with_script([
        FakeBoot::crashes_after(Duration::from_millis(20)),
        FakeBoot::crashes_after(Duration::from_millis(20)),
    ]);
    let rec = supervise(&root, &id, &mut fake, &opts(), &AtomicBool::new(false)).unwrap();
    assert_eq!(
        fake.calls(),
        ["launch pinned cid=16", "launch pinned cid=16"],
        "both boots passed their measurement"
    );
    assert_eq!((rec.status, rec.restarts), (Status::Failed, 1));
    assert_eq!(
        rec.eif,
        dir.path().join("app.eif"),
        "the record shows the original"
    );
}

#[test]
fn a_tampered_pinned_copy_fails_the_restart_for_good() {
    let (_d, root, id, _eif) = setup_with_eif("always");
    let pinned = root.dir(&id).join(crate::eif::pin::PINNED_EIF);
    let mut fake = FakeBackend::with_script([FakeBoot::crashes_after(Duration::from_millis(200))]);
    let stop = AtomicBool::new(false);
    let r2 = root.clone();
    let id2 = id.clone();
    let tamper = std::thread::spawn(move || {
        for _ in 0..400 {
            if r2.load(&id2).unwrap().status == Status::Running {
                crate::eif::tests::tamper_app_ramdisk(&pinned);
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    });
    let rec = supervise(&root, &id, &mut fake, &opts(), &stop).unwrap();
    assert!(tamper.join().unwrap(), "the enclave never ran");
    // One launch; the restart measured the copy and refused before launching; no more
    // attempts although the policy is `always`.
    assert_eq!(fake.calls(), ["launch pinned cid=16"]);
    assert_eq!((rec.status, rec.restarts), (Status::Failed, 1));
    let err = rec.error.unwrap();
    let expected = &rec.measurements["PCR0"];
    assert!(
        err.contains("refusing to boot")
            && err.contains(&format!("PCR0 expected {expected}, found "))
            && err.contains("PCR0, PCR2 differ"),
        "{err}"
    );
    assert_eq!(root.resolve("pinned").unwrap().status, Status::Failed);
}

#[test]
fn a_removed_on_exit_enclave_waits_for_the_attached_run_then_goes() {
    let (_d, root, id) = setup("no");
    let mut rec = root.load(&id).unwrap();
    rec.auto_remove = true;
    root.save(&rec).unwrap();
    let mut fake = FakeBackend::with_script([FakeBoot::crashes_after(Duration::from_millis(10))]);
    let attached = root.attach(&id).unwrap();
    let rec = supervise(&root, &id, &mut fake, &opts(), &AtomicBool::new(false)).unwrap();
    assert!(!rec.status.is_active());
    let remover = {
        let (root, rec) = (root.clone(), rec.clone());
        std::thread::spawn(move || auto_remove(&root, &rec, Duration::from_secs(10)))
    };
    // While `run` watches, the final record stays readable.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(root.load(&id).unwrap().status, Status::Failed);
    drop(attached);
    remover.join().unwrap().unwrap();
    assert!(!root.dir(&id).exists());
    assert!(root.list().unwrap().is_empty());
    // Removing again (rm -f racing the supervisor) is no error.
    root.remove(&id).unwrap();
}

#[test]
fn an_attached_run_that_never_lets_go_delays_the_removal_only_so_long() {
    let (_d, root, id) = setup("no");
    let mut rec = root.load(&id).unwrap();
    rec.status = Status::Exited;
    rec.auto_remove = true;
    root.save(&rec).unwrap();
    let _attached = root.attach(&id).unwrap();
    auto_remove(&root, &rec, Duration::from_millis(200)).unwrap();
    assert!(!root.dir(&id).exists());
    // Without --rm nothing goes.
    let (_d2, root2, id2) = setup("no");
    let mut rec2 = root2.load(&id2).unwrap();
    rec2.status = Status::Exited;
    auto_remove(&root2, &rec2, Duration::ZERO).unwrap();
    assert!(root2.dir(&id2).exists());
}

#[test]
fn the_heartbeat_is_answered_where_the_backends_route_says() {
    use std::io::{Read, Write};
    let (_d, root, id) = setup("no");
    let mut fake = FakeBackend::with_script([FakeBoot::Runs {
        console: String::new(),
        heartbeat: false,
        runs_for: None,
        fails: false,
    }]);
    let rec = root.load(&id).unwrap();
    let route = fake.vsock_route(rec.cid, &root.socket_dir(&id));
    let ParentPort::Unix(path) = route.parent_port(rec.ports.heartbeat) else {
        panic!("the fake's enclaves are reached through a hybrid socket by default");
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (s, r2, id2) = (stop.clone(), root.clone(), id.clone());
    let guest = std::thread::spawn(move || {
        let byte = enclave_proto::init::HEARTBEAT_BYTE;
        let mut conn = loop {
            match std::os::unix::net::UnixStream::connect(&path) {
                Ok(c) => break c,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        conn.write_all(&[byte]).unwrap();
        let mut echo = [0u8];
        conn.read_exact(&mut echo).unwrap();
        assert_eq!(echo[0], byte);
        while r2.load(&id2).unwrap().status != Status::Running {
            std::thread::sleep(Duration::from_millis(5));
        }
        s.store(true, Ordering::SeqCst);
    });
    let rec = supervise(&root, &id, &mut fake, &opts(), &stop).unwrap();
    guest.join().unwrap();
    assert!(rec.boot_ms.is_some(), "{rec:?}");
    assert_eq!(rec.status, Status::Exited);
}
