//! `enclave-ctl run` through the engine API (`--host`), with the same options and output as
//! without it: the run request (`POST /v1/enclaves`) carries them, `--secret` files included
//! (read here, sent in base64), and the EIF by its absolute path on the daemon's host. With
//! `-d` it prints the id once the enclave runs. Attached, it streams the enclave's lines
//! (`logs?follow=true`, which ends with the enclave's supervisor), stops the enclave on
//! Ctrl-C or SIGTERM (`/stop`), and exits with the main service's code.
//!
//! An attached `--rm` is done here, not by the daemon: the enclave runs without it and this
//! command removes it once it has read how it ended (the supervisor's own removal would take
//! the exit code with the record before it is read).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64ct::{Base64, Encoding};
use enclave_engine::logs::LogEntry;
use enclave_engine::state::{EnclaveRecord, Status};
use enclave_engine::supervisor::signals::termination_flag;
use serde_json::{json, Value};

use crate::cli::{RunArgs, EXIT_ENGINE, EXIT_OK};
use crate::remote::{segment, Remote};

/// How long the log stream may take to end once the enclave was stopped.
const STREAM_END_WAIT: Duration = Duration::from_secs(10);

/// Runs the command through `remote`; returns the exit status.
pub fn run(args: &RunArgs, json_lines: bool, remote: &Remote) -> Result<i32> {
    // Before any thread exists: Ctrl-C becomes a flag.
    let interrupted = if args.detach {
        None
    } else {
        Some(termination_flag()?)
    };
    // The daemon checks this too, but an attached `--rm` is not sent to it.
    enclave_engine::lifecycle::check_rm_and_restart(args.rm, args.restart)?;
    let mut request = run_request(args)?;
    request["rm"] = (args.rm && args.detach).into();
    let up = remote
        .post_json("/v1/enclaves", &request)
        .with_context(|| format!("cannot run {}", args.eif.display()))?;
    let up: EnclaveRecord =
        serde_json::from_value(up).context("the engine API's record of the enclave")?;
    let Some(interrupted) = interrupted else {
        println!("{}", up.id);
        return Ok(EXIT_OK);
    };
    super::run::announce(&up);
    let id = segment(&up.id);
    let lines = {
        let remote = remote.clone();
        let path = format!("/v1/enclaves/{id}/logs?follow=true");
        std::thread::spawn(move || {
            remote.stream(&path, |line| {
                if let Ok(e) = serde_json::from_str::<LogEntry>(line) {
                    if json_lines {
                        super::logs::print_entry_json(&e);
                    } else {
                        super::logs::print_entry(&e, false);
                    }
                }
                true
            })
        })
    };
    // The stream ends when the supervisor does: the enclave ended for good.
    let mut stopped = None;
    while !lines.is_finished() {
        if interrupted.load(Ordering::SeqCst) {
            eprintln!("stopping {} (at most {} s)", up.name, args.stop_timeout);
            let path = format!("/v1/enclaves/{id}/stop?timeout={}", args.stop_timeout);
            stopped = Some(remote.post_json(&path, &json!({}))?);
            let deadline = Instant::now() + STREAM_END_WAIT;
            while !lines.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if lines.is_finished() {
        if let Ok(Err(e)) = lines.join() {
            eprintln!("warning: the enclave's log stream: {e:#}");
        }
    }
    let done = match stopped {
        Some(rec) => rec,
        None => remote.json(&format!("/v1/enclaves/{id}"))?,
    };
    if args.rm {
        remote
            .ok("DELETE", &format!("/v1/enclaves/{id}"))
            .with_context(|| format!("removing {}", up.name))?;
    }
    Ok(exit_status(&done))
}

/// [`super::run::exit_status`] of the record as the API shows it (`inspect`'s JSON). A record
/// still active has no end to tell (the stream ended early): an error of the engine's.
fn exit_status(rec: &Value) -> i32 {
    let status = rec["status"]
        .as_str()
        .and_then(|s| serde_json::from_value::<Status>(s.into()).ok());
    let status = match status {
        Some(s @ (Status::Exited | Status::Created | Status::Failed)) => s,
        _ => Status::Failed,
    };
    let code = rec["exit_code"]
        .as_i64()
        .map(|c| i32::try_from(c).unwrap_or(EXIT_ENGINE));
    super::run::exit_code_of(code, status)
}

/// The run request: `run`'s options as the API takes them.
fn run_request(args: &RunArgs) -> Result<Value> {
    let eif = std::path::absolute(&args.eif)
        .with_context(|| format!("cannot run {}", args.eif.display()))?;
    let mut request = json!({
        "eif": eif,
        "cpus": args.cpus,
        "memory_mib": args.memory.0,
        "backend": args.backend.to_string(),
        "restart": args.restart.to_string(),
        "publish": args.publish.iter()
            .map(|p| match p.host_ip {
                std::net::IpAddr::V4(ip) => format!("{ip}:{}:{}", p.host_port, p.enclave_port),
                std::net::IpAddr::V6(ip) => format!("[{ip}]:{}:{}", p.host_port, p.enclave_port),
            })
            .collect::<Vec<_>>(),
        "add_hosts": args.add_host.iter()
            .map(|h| format!("{}:{}", h.name, h.ip))
            .collect::<Vec<_>>(),
        "debug_mode": args.debug_mode,
        "boot_timeout_secs": args.boot.boot_timeout,
        "secrets": args.secrets.iter()
            .map(|s| (s.name.clone(), Value::from(Base64::encode_string(&s.content))))
            .collect::<serde_json::Map<_, _>>(),
    });
    if let Some(name) = &args.name {
        request["name"] = name.as_str().into();
    }
    if let Some(addr) = args.health_listen {
        request["health_listen"] = addr.to_string().into();
    }
    if let Some(addr) = args.metrics_listen {
        request["metrics_listen"] = addr.to_string().into();
    }
    Ok(request)
}
