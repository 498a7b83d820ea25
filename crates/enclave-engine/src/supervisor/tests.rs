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
    let logs = crate::logs::read_all(&root.dir(&id).join("logs"));
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
