//! Process setup between fork and exec: the one place `pre_exec` is used.

#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// How the child is tied to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tie {
    /// The child gets SIGKILL when the thread that spawned it dies (QEMU, vhost-device-vsock
    /// and nitro-cli under the supervisor: they die with it).
    DieWithParent,
    /// The child starts a new session and outlives its parent (the supervisor itself).
    Detach,
}

/// Prepares `cmd` so that the child starts with no blocked signals and is tied as `tie` says.
pub fn prepare(cmd: &mut Command, tie: Tie) {
    // SAFETY: the closure runs in the child between fork and exec; it calls only
    // async-signal-safe system calls (sigprocmask, prctl, setsid, getppid, kill) and allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            // The supervisor blocks SIGTERM/SIGINT to wait for them; children must not inherit
            // that mask, or SIGTERM would not end them.
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            );
            match tie {
                Tie::DieWithParent => {
                    let parent = nix::unistd::getppid();
                    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                    // The parent may have died between fork and prctl.
                    if nix::unistd::getppid() != parent {
                        let _ = nix::sys::signal::raise(Signal::SIGKILL);
                    }
                }
                Tie::Detach => {
                    nix::unistd::setsid()?;
                }
            }
            Ok(())
        });
    }
}
