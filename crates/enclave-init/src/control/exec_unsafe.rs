//! The `unsafe` of the control server: making a pty the controlling terminal of an exec'd
//! process, between fork and exec.
#![allow(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Before exec: a new session (`setsid`), then fd 0 (the pty's slave, set up by std before
/// this runs) as its controlling terminal (`TIOCSCTTY`).
pub fn controlling_tty(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed: it allocates nothing and makes two raw system calls through rustix.
    // `borrow_raw(0)` is sound because std has just dup2'ed the slave onto fd 0 (stdio is set
    // up before `pre_exec` closures run), and the borrow does not outlive the call.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
            Ok(())
        });
    }
}
