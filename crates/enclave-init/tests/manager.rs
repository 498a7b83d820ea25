//! The control seam: a [`Supervisor`] run in this process (not as PID 1) and driven through
//! its [`ServiceManager`], as the control server will.
//!
//! `harness = false`: signals must be blocked before any thread exists, as in PID 1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave_init::policy::{Exit, Timings};
use enclave_init::{services, LogStore, ManagerError, ServiceManager, ServiceState, Supervisor};
use enclave_proto::app::AppConfig;
use enclave_spec::EnclaveSpec;

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state(m: &ServiceManager, name: &str) -> (ServiceState, Option<i32>, Option<Exit>) {
    let list = m.list().expect("list");
    let s = list
        .iter()
        .find(|s| s.name == name)
        .expect("service listed");
    (s.state, s.pid, s.last_exit)
}

fn run() {
    let app = AppConfig {
        version: 1,
        entrypoint: vec![],
        cmd: vec!["sleep".into(), "30".into()],
        env: vec![],
        working_dir: "/".into(),
        user: String::new(),
    };
    let spec = EnclaveSpec::from_yaml(
        "services:\n\
         - {name: a, command: [sleep, '30']}\n\
         - {name: b, command: [sh, -c, 'echo b-out; echo b-err >&2; exec sleep 30'], depends_on: [a]}\n",
    )
    .expect("spec");
    let defs = services::build(&app, &spec, Ok(enclave_init::users::Credentials::root()));
    let timings = Timings {
        grace: Duration::from_millis(300),
        ..Timings::default()
    };
    let supervisor = Supervisor::new(defs, timings, Arc::new(LogStore::default())).expect("new");
    let m = supervisor.manager();
    let runner = std::thread::spawn(move || supervisor.run());

    wait_until("all running", || {
        m.list()
            .expect("list")
            .iter()
            .all(|s| s.state == ServiceState::Running)
    });
    let names: Vec<String> = m.list().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["main", "a", "b"]);

    // Logs: snapshot and follow see b's two streams.
    let mut cursor = 0;
    let mut texts = Vec::new();
    while texts.len() < 2 {
        let batch = m.logs().follow(Some("b"), cursor, Duration::from_secs(5));
        assert!(!batch.lines.is_empty(), "no log line from b");
        cursor = batch.next;
        texts.extend(batch.lines.into_iter().map(|l| l.text));
    }
    texts.sort();
    assert_eq!(texts, ["b-err", "b-out"]);

    // stop / start / restart / errors.
    m.stop("a").expect("stop a");
    wait_until("a stopped", || state(&m, "a").0 == ServiceState::Stopped);
    assert_eq!(state(&m, "a").2, Some(Exit::Signal(15)));
    m.start("a").expect("start a");
    wait_until("a running", || state(&m, "a").0 == ServiceState::Running);
    assert_eq!(m.start("a"), Err(ManagerError::AlreadyRunning("a".into())));
    assert_eq!(m.stop("zz"), Err(ManagerError::UnknownService("zz".into())));
    let old = state(&m, "b").1;
    m.restart("b").expect("restart b");
    wait_until("b restarted", || {
        let (st, pid, _) = state(&m, "b");
        st == ServiceState::Running && pid != old
    });

    // Shutdown: run() returns with the reason once everything stopped.
    let t = Instant::now();
    m.shutdown("test over").expect("shutdown");
    let reason = runner.join().expect("supervisor thread");
    assert_eq!(reason, "test over");
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(m.list(), Err(ManagerError::NoAnswer));
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        // Services switch credentials (setgroups) before exec, which needs root.
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the manager test needs root under CI");
        }
        println!("manager: skipped (needs root)");
        return;
    }
    enclave_init::signals::block().expect("block signals");
    run();
    println!("test manager_controls_services ... ok");
    println!("1 passed, 0 failed");
}
