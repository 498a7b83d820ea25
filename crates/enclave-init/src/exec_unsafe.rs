//! What a child of init does between fork and exec (signal mask, credentials): `pre_exec` is
//! unsafe because the closure runs in the forked child. The block says why it is sound.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::unistd::{Gid, Uid};

/// Prepares the child started by `cmd`, right before exec: unblocks every signal (init blocks
/// the ones it reads through its signalfd, the mask survives exec, and std leaves it alone),
/// then switches to `uid`, `gid` and the supplementary `groups`.
///
/// Credentials are set here rather than with `CommandExt::uid/gid` because std clears the
/// supplementary groups and has no stable way to set them, and the order matters: groups, then
/// gid, then uid (after setuid the process may no longer change its groups).
pub fn prepare_exec(cmd: &mut Command, uid: u32, gid: u32, groups: Vec<u32>) {
    let groups: Vec<Gid> = groups.into_iter().map(Gid::from_raw).collect();
    let no_signals = SigSet::empty();
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // work is allowed: it allocates nothing (the group vector and the signal set were built
    // before the fork and are only borrowed) and makes four system calls through thin nix
    // wrappers.
    unsafe {
        cmd.pre_exec(move || {
            pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&no_signals), None)?;
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(Gid::from_raw(gid))?;
            nix::unistd::setuid(Uid::from_raw(uid))?;
            Ok(())
        });
    }
}
