//! `enclave-ctl run`: record the enclave, start its supervisor, wait for the heartbeat; then
//! either print the id (`-d`) or stream its logs until Ctrl-C, which stops it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use enclave_engine::lifecycle::{self, RunOptions};
use enclave_engine::state::{default_root, StateRoot, Status};
use enclave_engine::supervisor::signals::termination_flag;

use crate::cli::{RunArgs, StateArgs, EXIT_ERROR, EXIT_OK};

/// Opens the state directory the arguments name (checked, whoever chose it).
pub fn state_root(args: &StateArgs) -> Result<StateRoot> {
    let path = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => default_root()?,
    };
    StateRoot::open(&path)
        .with_context(|| format!("opening the state directory {}", path.display()))
}

/// Runs the command; returns the exit status.
pub fn run(args: RunArgs) -> Result<i32> {
    let root = state_root(&args.state)?;
    let opts = RunOptions {
        eif: args.eif.clone(),
        name: args.name.clone(),
        cpus: args.cpus,
        memory_mib: args.memory,
        backend: args.backend,
        debug_mode: args.debug_mode,
        restart: args.restart,
        publish: args.publish.clone(),
        add_hosts: args.add_host.clone(),
        secrets: args.secrets.clone(),
    };
    let rec = lifecycle::create(&root, &opts)
        .with_context(|| format!("cannot run {}", args.eif.display()))?;
    // Before any thread exists: Ctrl-C becomes a flag (the supervisor unblocks it for itself).
    let interrupted = if args.detach {
        None
    } else {
        Some(termination_flag()?)
    };
    let boot_timeout = Duration::from_secs(args.boot_timeout);
    lifecycle::start_supervisor(&root, &rec, Some(boot_timeout))
        .with_context(|| format!("starting the supervisor of {}", rec.name))?;
    let up = lifecycle::wait_running(&root, &rec.id, boot_timeout + Duration::from_secs(30))
        .with_context(|| format!("enclave {} ({}) failed to start", rec.name, rec.short_id()))?;
    let Some(interrupted) = interrupted else {
        println!("{}", up.id);
        return Ok(EXIT_OK);
    };
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
    let logs_dir = root.dir(&up.id).join("logs");
    for e in enclave_engine::logs::read_all(&logs_dir) {
        super::logs::print_entry(&e, false);
    }
    let mut follower = enclave_engine::logs::Follower::at_end(&logs_dir);
    loop {
        for e in follower.poll() {
            super::logs::print_entry(&e, false);
        }
        if interrupted.load(Ordering::SeqCst) {
            eprintln!("stopping {}", up.name);
            let done = lifecycle::stop(&root, &up, Duration::from_secs(10))?;
            return Ok(if done.status == Status::Failed {
                EXIT_ERROR
            } else {
                EXIT_OK
            });
        }
        if !root.supervisor_alive(&up.id) {
            for e in follower.poll() {
                super::logs::print_entry(&e, false);
            }
            let done = root.load(&up.id)?;
            return Ok(if done.status == Status::Failed {
                EXIT_ERROR
            } else {
                EXIT_OK
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
