//! `enclave-ctl run`: record the enclave, start its supervisor, wait for the heartbeat; then
//! either print the id (`-d`) or stream its logs until the enclave ends (Ctrl-C stops it), and
//! exit with its main service's exit code, as `docker run` does with its container's.
//!
//! The main service is the image's entrypoint and cmd (as the spec's `entrypoint:`/`cmd:`
//! amend them); enclave-init reports how it ended to the supervisor just before powering off,
//! and the supervisor records it (`exit_code` in the record). An enclave that failed without
//! such a report (its boot failed, it crashed, its supervisor died) makes `run` exit 125, like
//! any error of the engine's own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use enclave_engine::lifecycle::{self, RunOptions};
use enclave_engine::state::Status;
use enclave_engine::supervisor::signals::termination_flag;

use enclave_engine::state::EnclaveRecord;

use crate::cli::{RunArgs, EXIT_ENGINE, EXIT_OK};

/// Runs the command; returns the exit status. `json_lines`: print the enclave's log lines as
/// JSON objects (`{"time", "source", "text"}`), one a line, for log collectors.
/// (`--host`: [`super::run_remote`].)
pub fn run(args: RunArgs, json_lines: bool) -> Result<i32> {
    let print = |e: &enclave_engine::logs::LogEntry| {
        if json_lines {
            super::logs::print_entry_json(e);
        } else {
            super::logs::print_entry(e, false);
        }
    };
    let root = super::state_dir::open(&args.state)?;
    let opts = RunOptions {
        eif: args.eif.clone(),
        name: args.name.clone(),
        cpus: args.cpus,
        memory_mib: args.memory.0,
        backend: args.backend,
        debug_mode: args.debug_mode,
        restart: args.restart,
        publish: args.publish.clone(),
        add_hosts: args.add_host.clone(),
        secrets: args.secrets.clone(),
        auto_remove: args.rm,
        health_listen: args.health_listen,
        metrics_listen: args.metrics_listen,
    };
    let rec = lifecycle::create(&root, &opts)
        .with_context(|| format!("cannot run {}", args.eif.display()))?;
    // Held while this command watches: a `--rm` enclave's record stays until it let go, so the
    // boot's error or the exit code is read before the supervisor removes it.
    let attached = root.attach(&rec.id)?;
    // Before any thread exists: Ctrl-C becomes a flag (the supervisor unblocks it for itself).
    let interrupted = if args.detach {
        None
    } else {
        Some(termination_flag()?)
    };
    let boot_timeout = Duration::from_secs(args.boot.boot_timeout);
    lifecycle::start_supervisor(&root, &rec, Some(boot_timeout))
        .with_context(|| format!("starting the supervisor of {}", rec.name))?;
    let up = lifecycle::wait_running(&root, &rec.id, boot_timeout + Duration::from_secs(30))
        .with_context(|| format!("enclave {} ({}) failed to start", rec.name, rec.short_id()))?;
    let Some(interrupted) = interrupted else {
        drop(attached);
        println!("{}", up.id);
        return Ok(EXIT_OK);
    };
    announce(&up);
    let logs_dir = root.dir(&up.id).join("logs");
    let (past, mut follower) = enclave_engine::logs::read_all_then_follow(&logs_dir);
    for e in past {
        print(&e);
    }
    let done = loop {
        for e in follower.poll() {
            print(&e);
        }
        if interrupted.load(Ordering::SeqCst) {
            eprintln!("stopping {} (at most {} s)", up.name, args.stop_timeout);
            break lifecycle::stop(&root, &up, Duration::from_secs(args.stop_timeout))?;
        }
        // Ended for good (the restart policy's restarts are not the end), or the supervisor
        // is gone (then the record says how).
        let now = root.load(&up.id)?;
        if !now.status.is_active() || !root.supervisor_alive(&up.id) {
            break root.effective(now);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for e in follower.poll() {
        print(&e);
    }
    drop(attached);
    if args.rm {
        // As `docker run --rm`: back to the prompt once it is gone, not just about to go.
        // (Looking at the supervisor's lock would create the lock file in the directory being
        // removed: its pid says whether it lives.)
        let supervisor = done
            .supervisor_pid
            .map(|p| nix::unistd::Pid::from_raw(p as i32));
        let alive = || supervisor.is_some_and(|p| nix::sys::signal::kill(p, None).is_ok());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while root.dir(&up.id).exists() && alive() {
            if std::time::Instant::now() > deadline {
                eprintln!("warning: {} is not removed yet", up.name);
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    Ok(exit_status(&done))
}

/// The line an attached `run` prints on stderr once the enclave runs.
pub fn announce(up: &EnclaveRecord) {
    eprintln!(
        "enclave {} ({}) running on {}{}, CID {}; Ctrl-C stops it",
        up.name,
        up.short_id(),
        up.backend,
        up.instance
            .accel
            .as_deref()
            .map(|a| format!(" ({a})"))
            .unwrap_or_default(),
        up.cid
    );
}

/// What `run` exits with once the enclave ended: its main service's exit code; 125 when it
/// failed without one (an error of the engine or the enclave's boot); 0 otherwise (an image
/// without a main service whose services all ended).
pub fn exit_status(rec: &EnclaveRecord) -> i32 {
    exit_code_of(rec.exit_code, rec.status)
}

/// [`exit_status`] of a record's exit code and status.
pub fn exit_code_of(exit_code: Option<i32>, status: Status) -> i32 {
    match (exit_code, status) {
        (Some(code), _) => code,
        (None, Status::Failed) => EXIT_ENGINE,
        (None, _) => EXIT_OK,
    }
}
