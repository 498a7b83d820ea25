//! How an enclave's life ends, seen from its supervisor: a boot without a heartbeat, a booted
//! instance's exit judged, the graceful stop (ask enclave-init, then kill), the main service's
//! exit code as it is recorded, and the removal of a `run --rm` enclave once it ended for good.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Ctx, Ending, HeartbeatListener};
use crate::backend::{Instance, InstanceExit};
use crate::console::ConsoleState;
use crate::error::{EngineError, Result};
use crate::events::{self, Event, EventKind};
use crate::state::{EnclaveRecord, StateRoot, Status};

/// The exit code of a main service's exit status: the code, or 128+N for signal N (as a
/// shell and Docker report it).
pub fn exit_code(status: enclave_proto::wire::ExitStatus) -> i32 {
    match status {
        enclave_proto::wire::ExitStatus::Code(c) => c,
        enclave_proto::wire::ExitStatus::Signal(n) => 128 + n,
    }
}

/// Asks enclave-init to shut down through the control protocol, waits for the instance to end
/// within the stop timeout, then kills it.
pub(super) fn graceful_stop(ctx: &mut Ctx<'_>, instance: &mut dyn Instance) -> Ending {
    ctx.rec.status = Status::Stopping;
    ctx.save();
    let timeout = ctx.stop_timeout();
    let deadline = Instant::now() + timeout;
    ctx.event(&format!("stopping (grace {} s)", timeout.as_secs()));
    ctx.record(Event::new(EventKind::Stop, &ctx.rec).with("timeout", timeout.as_secs()));
    let asked = !timeout.is_zero() && ask_shutdown(ctx, timeout);
    let exit = loop {
        if let Ok(Some(exit)) = instance.try_wait() {
            break exit;
        }
        if !asked || Instant::now() >= deadline {
            match instance.kill() {
                Ok(mut exit) => {
                    exit.description = format!("killed by stop ({})", exit.description);
                    // As `docker stop` reports a container it had to kill: 128 + SIGKILL.
                    ctx.rec.exit_code = Some(128 + 9);
                    break exit;
                }
                Err(e) => {
                    break InstanceExit {
                        failed: true,
                        description: format!("stop could not kill it: {e}"),
                    }
                }
            }
        }
        std::thread::sleep(ctx.opts.tick);
    };
    ctx.rec.exit = Some(format!("stopped: {}", exit.description));
    Ending::Stopped
}

fn ask_shutdown(ctx: &Ctx<'_>, timeout: Duration) -> bool {
    use enclave_proto::client::Client;
    let session = crate::control::supervisor_session(
        ctx.root,
        &ctx.rec,
        "enclave-engine supervisor",
        timeout.min(Duration::from_secs(1)),
    );
    match session.and_then(|(addr, o)| {
        Client::connect(&addr, &o)
            .and_then(|mut c| c.shutdown())
            .map_err(|e| EngineError::Backend(e.to_string()))
    }) {
        Ok(()) => true,
        Err(e) => {
            tracing::info!("no graceful shutdown through the control server ({e}); killing");
            false
        }
    }
}

/// `run --rm`: removes an enclave that ended for good, once no attached `run` watches it (at
/// most `wait` later), so that `run` reads the exit code first.
pub(super) fn auto_remove(root: &StateRoot, rec: &EnclaveRecord, wait: Duration) -> Result<()> {
    if !rec.auto_remove || rec.status.is_active() {
        return Ok(());
    }
    if !root.wait_unattached(&rec.id, wait) {
        tracing::warn!("the attached run did not let go in time; removing anyway");
    }
    root.remove(&rec.id)?;
    events::record(root, Event::new(EventKind::Destroy, rec));
    Ok(())
}

/// How long a `--rm` enclave's supervisor waits for the attached `run` to read the final
/// record.
pub(super) const ATTACHED_WAIT: Duration = Duration::from_secs(30);

/// How a boot that never got its heartbeat ended.
pub(super) enum NoHeartbeat {
    Exited(InstanceExit),
    TimedOut,
    Stopped,
}

/// Answers the boot heartbeat; how the boot ended when none came.
pub(super) fn wait_heartbeat(
    ctx: &mut Ctx<'_>,
    listener: &HeartbeatListener,
    instance: &mut dyn Instance,
    started: Instant,
) -> std::result::Result<(), NoHeartbeat> {
    loop {
        match listener.poll() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::warn!("heartbeat: {e}"),
        }
        if ctx.stop.load(Ordering::SeqCst) {
            let _ = instance.kill();
            return Err(NoHeartbeat::Stopped);
        }
        if let Ok(Some(exit)) = instance.try_wait() {
            return Err(NoHeartbeat::Exited(exit));
        }
        if started.elapsed() > ctx.opts.boot_timeout {
            let _ = instance.kill();
            return Err(NoHeartbeat::TimedOut);
        }
        std::thread::sleep(ctx.opts.tick.min(Duration::from_millis(20)));
    }
}

/// The ending of a boot without a heartbeat, with the console's last lines in its error.
pub(super) fn ending_with_console(
    ctx: &mut Ctx<'_>,
    why: NoHeartbeat,
    console: &ConsoleState,
) -> Ending {
    let tail = console.tail();
    let tail = if tail.is_empty() {
        "(the console printed nothing)".to_owned()
    } else {
        tail
    };
    let error = match why {
        NoHeartbeat::Stopped => {
            ctx.rec.exit = Some("stopped before the heartbeat".into());
            ctx.save();
            return Ending::Stopped;
        }
        NoHeartbeat::TimedOut => EngineError::BootTimeout {
            secs: ctx.opts.boot_timeout.as_secs(),
            console_tail: tail,
        }
        .to_string(),
        NoHeartbeat::Exited(exit) => format!(
            "the enclave ended before its boot heartbeat ({}); last console lines:\n{tail}",
            exit.description
        ),
    };
    super::fail(ctx, error)
}

/// The ending of a booted enclave by how its instance exited (a kernel panic, or an exit
/// without enclave-init's power-off, is a failure).
pub(super) fn judge(ctx: &mut Ctx<'_>, exit: InstanceExit, console: &ConsoleState) -> Ending {
    let panicked = console.panicked.load(Ordering::SeqCst);
    let powered_off = console.powered_off.load(Ordering::SeqCst);
    let failed = panicked || (exit.failed && !powered_off);
    let mut text = exit.description;
    if panicked {
        text.push_str(" after a kernel panic");
    }
    ctx.rec.exit = Some(text.clone());
    if failed {
        ctx.rec.error = Some(format!("{text}; last console lines:\n{}", console.tail()));
        ctx.event(&format!("enclave failed: {text}"));
        Ending::Failed
    } else {
        ctx.event(&format!("enclave ended: {text}"));
        Ending::Clean
    }
}
