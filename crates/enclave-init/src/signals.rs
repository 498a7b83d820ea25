//! Signals reach PID 1 through a signalfd, read by the supervisor's poll loop.
//!
//! They are blocked first thing in `main`, before any thread exists, so every thread inherits
//! the mask and none of them takes a signal meant for the loop. Blocked signals are still
//! queued for PID 1 (the kernel drops only signals PID 1 neither handles nor blocks). The mask
//! survives exec, so every child clears it before exec (`exec_unsafe::prepare_exec`).

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::{Error, Result};

/// The signals init acts on.
pub fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        // Shutdown requests: SIGTERM from a container runtime or test, SIGINT from
        // ctrl-alt-del (the kernel sends it to init), SIGPWR from a power event.
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGPWR,
        // Ignored, but blocked so that it cannot be acted on by default.
        Signal::SIGHUP,
    ] {
        set.add(sig);
    }
    set
}

/// Blocks [`handled`] in the calling thread (call before starting any thread), and SIGPIPE:
/// a write to a closed pipe then fails with EPIPE instead of signalling (std's start-up, which
/// would ignore SIGPIPE, does not run in this `no_main` binary).
pub fn block() -> Result<()> {
    let mut set = handled();
    set.add(Signal::SIGPIPE);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Error::sys("block signals", e))
}

/// A non-blocking signalfd for [`handled`].
pub fn open() -> Result<SignalFd> {
    SignalFd::with_flags(&handled(), SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::sys("signalfd", e))
}

/// Reads every pending signal from `fd`.
pub fn drain(fd: &SignalFd) -> Vec<Signal> {
    let mut out = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
            out.push(sig);
        }
    }
    out
}
