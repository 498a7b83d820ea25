//! Collecting exited children: PID 1 inherits every orphan of the enclave, and each one that
//! exits stays a zombie until init waits for it.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::policy::Exit;

/// Waits for every child that has exited, without blocking, and returns their pids and exits.
///
/// Stopped and continued children are not exits and are skipped (WNOHANG alone does not report
/// them anyway). The caller matches the pids against its services; any other pid was an
/// orphan and needs nothing more than this wait.
pub fn reap_exited() -> Vec<(Pid, Exit)> {
    let mut exits = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => exits.push((pid, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _core)) => {
                exits.push((pid, Exit::Signal(sig as i32)))
            }
            // No more exited children for now.
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            // ECHILD: no children at all.
            Err(_) => break,
        }
    }
    exits
}
