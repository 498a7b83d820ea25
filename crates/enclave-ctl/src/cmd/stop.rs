//! `enclave-ctl stop`, `start`, `restart` and `kill` (and `rm`, [`each`]): one operation on
//! each enclave named, here or through the engine API; each name printed when it worked, as
//! Docker does.

use std::time::Duration;

use anyhow::{Context, Result};
use enclave_engine::lifecycle;
use enclave_engine::state::{EnclaveRecord, StateRoot};

use crate::cli::{KillArgs, RestartArgs, StartArgs, StateArgs, StopArgs};
use crate::remote::{for_each, segment, Remote};

/// The work on one enclave here.
pub(super) type Work = Box<dyn Fn(&StateRoot, &EnclaveRecord) -> Result<()>>;

/// One operation, as done here and as asked of the engine API.
pub(super) struct Operation {
    /// The verb of the error's context ("stopping").
    pub(super) doing: &'static str,
    /// Its HTTP method.
    pub(super) method: &'static str,
    /// What follows `/v1/enclaves/{enclave}` in its route (`/stop?timeout=10`).
    pub(super) route: String,
    /// The work here.
    pub(super) here: Work,
}

/// `stop`: graceful, killed after `-t`/`--timeout` seconds.
pub fn stop(args: StopArgs, remote: Option<&Remote>) -> Result<i32> {
    let timeout = Duration::from_secs(args.grace.timeout);
    let op = Operation {
        doing: "stopping",
        method: "POST",
        route: format!("/stop?timeout={}", args.grace.timeout),
        here: Box::new(move |root, rec| {
            lifecycle::stop(root, rec, timeout)?;
            Ok(())
        }),
    };
    each(&args.enclaves, &args.state, remote, op)
}

/// `start`: an ended enclave boots again; a running one is left as it is.
pub fn start(args: StartArgs, remote: Option<&Remote>) -> Result<i32> {
    let boot = Duration::from_secs(args.boot.boot_timeout);
    let op = Operation {
        doing: "starting",
        method: "POST",
        route: format!("/start?boot_timeout={}", args.boot.boot_timeout),
        here: Box::new(move |root, rec| {
            lifecycle::start(root, rec, boot)?;
            wait(root, rec, boot)
        }),
    };
    each(&args.enclaves, &args.state, remote, op)
}

/// `restart`: stopped as `stop -t` does, then started.
pub fn restart(args: RestartArgs, remote: Option<&Remote>) -> Result<i32> {
    let (timeout, boot) = (
        Duration::from_secs(args.grace.timeout),
        Duration::from_secs(args.boot.boot_timeout),
    );
    let op = Operation {
        doing: "restarting",
        method: "POST",
        route: format!(
            "/restart?timeout={}&boot_timeout={}",
            args.grace.timeout, args.boot.boot_timeout
        ),
        here: Box::new(move |root, rec| {
            lifecycle::restart(root, rec, timeout, boot)?;
            wait(root, rec, boot)
        }),
    };
    each(&args.enclaves, &args.state, remote, op)
}

/// `kill`: powered off with no grace.
pub fn kill(args: KillArgs, remote: Option<&Remote>) -> Result<i32> {
    let op = Operation {
        doing: "killing",
        method: "POST",
        route: "/kill".into(),
        here: Box::new(|root, rec| {
            lifecycle::kill_now(root, rec)?;
            Ok(())
        }),
    };
    each(&args.enclaves, &args.state, remote, op)
}

/// Until the enclave runs (its heartbeat came), or the boot's error.
fn wait(root: &StateRoot, rec: &EnclaveRecord, boot: Duration) -> Result<()> {
    lifecycle::wait_running(root, &rec.id, boot + Duration::from_secs(30))?;
    Ok(())
}

/// Does `op` on each of `enclaves`, here or through `remote`; the exit status.
pub(super) fn each(
    enclaves: &[String],
    state: &StateArgs,
    remote: Option<&Remote>,
    op: Operation,
) -> Result<i32> {
    if let Some(remote) = remote {
        return Ok(for_each(enclaves, |q| {
            let name = remote.name_of(q)?;
            let path = format!("/v1/enclaves/{}{}", segment(q), op.route);
            remote
                .ok(op.method, &path)
                .with_context(|| format!("{} {name}", op.doing))?;
            Ok(name)
        }));
    }
    let root = super::state_dir::open(state)?;
    Ok(for_each(enclaves, |q| {
        let rec = root.resolve(q)?;
        (op.here)(&root, &rec).with_context(|| format!("{} {}", op.doing, rec.name))?;
        Ok(rec.name)
    }))
}
