//! The end of the enclave: the last kills, `sync`, and power-off.

use std::time::{Duration, Instant};

use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{getpid, Pid};

use crate::say;

/// Whether this process is PID 1 (of the machine or of its PID namespace).
pub fn is_init() -> bool {
    getpid() == Pid::from_raw(1)
}

/// Sends `sig` to every process but init (`kill(-1, sig)`).
///
/// Only as PID 1: from any other process, `kill(-1)` run as root would reach every process of
/// the machine (or of the PID namespace) that the caller can signal.
pub fn signal_all_others(sig: Signal) {
    if is_init() {
        let _ = kill(Pid::from_raw(-1), sig);
    }
}

/// Reaps children for up to `limit`, returning early once there are none left.
pub fn reap_for(limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        crate::reaper::reap_exited();
        match nix::sys::wait::waitpid(
            Pid::from_raw(-1),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            // ECHILD: every child is gone.
            Err(nix::Error::ECHILD) => return,
            _ if Instant::now() >= deadline => return,
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Flushes the filesystems and powers off. In a PID namespace, power-off ends the namespace
/// (the kernel kills its init), which is how the tests see the end.
///
/// Never returns: if the power-off fails, init exits, which the kernel turns into a panic and,
/// with `panic=N` on the enclave's command line, a reboot; the enclave is gone either way.
pub fn power_off(reason: &str) -> ! {
    say!("powering off: {reason}");
    nix::unistd::sync();
    match reboot(RebootMode::RB_POWER_OFF) {
        Ok(never) => match never {},
        Err(e) => {
            say!("power-off failed ({e}); exiting");
            std::process::exit(1)
        }
    }
}
