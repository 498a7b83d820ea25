//! The control server in a real PID 1 (see tests/pid1.rs for the set-up): exec, services,
//! initctl, and 200 concurrent execs without fd or zombie leaks. Client: the library
//! `enclave_proto::client`, over the Unix socket the server listens on in the rootfs.

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use enclave_proto::client::{Client, ExecIo};
use enclave_proto::wire::{
    Capability, Channel, ErrorCode, ExitStatus, Reply, ServiceRequest, ServiceState, WindowSize,
};
use support::control::{boot, client, exec, opts, req, sh, shell};

fn spec() -> serde_json::Value {
    serde_json::json!({
        "name": "ctl-test",
        "services": [
            {"name": "ticker", "command": sh("i=0; while :; do i=$((i+1)); echo tick-$i; echo tock-$i >&2; sleep 0.1; done")}
        ],
        "debug": {"exec": true, "cp": true}
    })
}

#[test]
fn exec_streams_exit_codes_and_signals() {
    let Some(b) = boot(&spec()) else { return };
    let mut c = client(&b);
    assert_eq!(c.ping(42).unwrap(), 42);
    match c.info().unwrap() {
        Reply::Info {
            enclave,
            capabilities,
            control,
            ..
        } => {
            assert_eq!(enclave.name.as_deref(), Some("ctl-test"));
            assert!(enclave.server.starts_with("enclave-init "));
            assert_eq!(capabilities, [Capability::Exec, Capability::Cp]);
            // This session counted, no key refused (protocol 3).
            let control = control.expect("the control counts");
            assert!(control.sessions >= 1);
            assert_eq!(control.auth_failures, 0);
        }
        other => panic!("{other:?}"),
    }

    // stdout and stderr apart, the exit code.
    let o = exec(
        &mut c,
        req(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
        None,
    )
    .unwrap();
    assert_eq!(
        (o.stdout.as_slice(), o.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    assert_eq!(o.status, ExitStatus::Code(3));
    // Killed by a signal.
    let o = exec(&mut c, req(&["sh", "-c", "kill -9 $$"]), None).unwrap();
    assert_eq!(o.status, ExitStatus::Signal(9));
    // Environment, working directory, the app's environment underneath.
    let mut r = req(&["sh", "-c", "echo $FOO:$PATH; pwd"]);
    r.env = vec![("FOO".into(), "bar".into())];
    r.cwd = Some("/tmp".into());
    let o = exec(&mut c, r, None).unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "bar:/bin\n/tmp\n");
    // A missing program.
    let e = exec(&mut c, req(&["/no/such"]), None).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");

    // stdin streamed: 3 MiB through `tr`, more than the flow-control windows.
    let input: Vec<u8> = (0..3 << 20).map(|i| b"abcdefghij\n"[i % 11]).collect();
    let o = exec(&mut c, req(&["tr", "a-z", "A-Z"]), Some(input.clone())).unwrap();
    assert_eq!(o.status, ExitStatus::Code(0));
    assert_eq!(o.stdout, input.to_ascii_uppercase());
    // stdin ended by eof.
    let o = exec(&mut c, req(&["wc", "-c"]), Some(b"12345".to_vec())).unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "5");

    // Detached: a pid at once, output kept in the logs.
    let pid = c
        .exec_detached(req(&["sh", "-c", "echo detached-ran"]))
        .unwrap();
    assert!(pid > 1);
    std::thread::sleep(Duration::from_millis(300));
    let mut logs = Vec::new();
    let name = format!("exec-{pid}");
    let logs_req = ServiceRequest::Logs {
        name,
        follow: false,
        tail: None,
        since: None,
    };
    c.logs(logs_req, |_, d| {
        logs.extend_from_slice(d);
        Ok(())
    })
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&logs), "detached-ran\n");

    // A pty: `tty` names it, the size is the one asked, stdout carries the terminal.
    let mut r = req(&["sh", "-c", "tty; stty size; echo err >&2"]);
    r.tty = Some(WindowSize {
        rows: 33,
        cols: 101,
    });
    let o = exec(&mut c, r, None).unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(text.contains("33 101"), "{text:?}");
    assert!(text.contains("err"), "{text:?}");
    assert!(o.stderr.is_empty());
    assert_eq!(o.status, ExitStatus::Code(0));

    // Resize and signal through the handle: the shell reports its new size, then is killed.
    let mut r = req(&[
        "sh",
        "-c",
        "trap 'stty size; exit 7' USR1; echo ready; while :; do sleep 0.05; done",
    ]);
    r.tty = Some(WindowSize { rows: 10, cols: 20 });
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let io = ExecIo {
        stdin: None,
        stdout: Box::new(Shared(out.clone())),
        stderr: Box::new(std::io::sink()),
    };
    let status = c
        .exec(r, io, |h| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                h.resize(WindowSize { rows: 50, cols: 60 }).unwrap();
                h.signal(10).unwrap();
            });
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.lock().unwrap()).into_owned();
    assert_eq!(status, ExitStatus::Code(7), "{text}");
    assert!(text.contains("50 60"), "{text:?}");
}

struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn services_logs_and_initctl() {
    let Some(mut b) = boot(&spec()) else { return };
    // Needs no capability.
    let mut c = Client::connect(&b.addr, &opts(&b, &[])).unwrap();
    let Reply::Services { services } = c.service(ServiceRequest::List).unwrap() else {
        panic!()
    };
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["main", "ticker"]);
    assert!(services
        .iter()
        .all(|s| s.state == ServiceState::Running && s.pid.is_some()));

    // Logs with tail, both streams.
    std::thread::sleep(Duration::from_millis(500));
    let mut got = Vec::new();
    let logs = ServiceRequest::Logs {
        name: "ticker".into(),
        follow: false,
        tail: Some(4),
        since: None,
    };
    c.logs(logs, |ch, d| {
        got.push((ch, String::from_utf8_lossy(d).into_owned()));
        Ok(())
    })
    .unwrap();
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(got
        .iter()
        .any(|(ch, t)| *ch == Channel::Stdout && t.starts_with("tick-")));
    assert!(got
        .iter()
        .any(|(ch, t)| *ch == Channel::Stderr && t.starts_with("tock-")));
    // Follow: new lines keep coming; the client leaves after a few.
    let mut seen = 0;
    let follow = ServiceRequest::Logs {
        name: "ticker".into(),
        follow: true,
        tail: Some(0),
        since: None,
    };
    let started = Instant::now();
    let end = c.logs(follow, |_, _| {
        seen += 1;
        if seen == 6 {
            return Err(std::io::Error::other("enough"));
        }
        Ok(())
    });
    assert!(end.is_err() && seen == 6 && started.elapsed() < Duration::from_secs(5));

    // Control.
    let mut c = Client::connect(&b.addr, &opts(&b, &[Capability::Exec])).unwrap();
    let e = c
        .service(ServiceRequest::Status {
            name: "nope".into(),
        })
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    c.service(ServiceRequest::Stop {
        name: "ticker".into(),
    })
    .unwrap();
    let status = |c: &mut Client| match c.service(ServiceRequest::Status {
        name: "ticker".into(),
    }) {
        Ok(Reply::Service { status }) => status.state,
        other => panic!("{other:?}"),
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&mut c) != ServiceState::Stopped {
        assert!(Instant::now() < deadline, "ticker did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.service(ServiceRequest::Start {
        name: "ticker".into(),
    })
    .unwrap();
    let e = c
        .service(ServiceRequest::Start {
            name: "main".into(),
        })
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict));

    // initctl inside the enclave, over the local socket.
    let list = shell(&mut c, "/run/enclave/initctl services list");
    assert!(list.contains("main") && list.contains("ticker"), "{list}");
    let pong = shell(&mut c, "/run/enclave/initctl ping");
    assert_eq!(pong.trim(), "pong 1");
    shell(&mut c, "/run/enclave/initctl services restart ticker");
    let o = exec(&mut c, req(&["/run/enclave/initctl", "bogus"]), None).unwrap();
    assert_eq!(o.status, ExitStatus::Code(2));

    // Shutdown over the channel powers the enclave off.
    c.shutdown().unwrap();
    let run = &mut b.run;
    assert!(
        run.wait_exit(Duration::from_secs(10)).is_some(),
        "{}",
        run.output()
    );
    assert!(run
        .output()
        .contains("powering off: shutdown requested over the control channel"));
}

#[test]
fn two_hundred_concurrent_execs_leak_nothing() {
    let Some(b) = boot(&spec()) else { return };
    let init = b.run.init_host_pid().expect("init pid");
    // Warm up (first connection, first exec) before counting.
    shell(&mut client(&b), "true");
    std::thread::sleep(Duration::from_millis(300));
    let fds_before = support::control::fd_count(init);

    let started = Instant::now();
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let access = b.access.clone();
            std::thread::spawn(move || {
                let mut c = client(&access);
                let o = exec(&mut c, req(&["sh", "-c", &format!("echo {i}")]), None).unwrap();
                assert_eq!(o.status, ExitStatus::Code(0));
                assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{i}\n"));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("an exec failed");
    }
    eprintln!("200 concurrent execs in {:?}", started.elapsed());

    // Everything closes once the clients are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fds = support::control::fd_count(init);
        let zombies = support::control::zombie_children(init);
        if fds <= fds_before && zombies.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fds {fds_before} -> {fds}, zombies {zombies:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And it still serves.
    assert_eq!(client(&b).ping(7).unwrap(), 7);
}
