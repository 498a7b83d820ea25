//! The console: init's own log lines and the echo of service output.
//!
//! The kernel starts init with fds 0, 1 and 2 open on `/dev/console` (the serial port on Nitro)
//! when the initramfs lets it open that node; when it could not, [`ensure_fds`] opens it once
//! `/dev` is mounted. Everything is written to fd 1, whatever it is: under a test harness that
//! is the harness' pipe, which is why no console path needs configuring.
//!
//! Writes never fail loudly: a console that went away must not take PID 1 with it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::{Mutex, OnceLock};

use nix::fcntl::{fcntl, FcntlArg};

/// The name init's own lines carry on the console and in the log store.
pub const INIT_LOG_NAME: &str = "enclave-init";

/// Where init's own lines go besides the console: the log store, attached by `lib.rs`. A
/// callback rather than the store itself keeps the console below the log store (which echoes
/// service lines here).
type InitLineSink = Box<dyn Fn(&str) + Send + Sync>;

static WRITE_LOCK: Mutex<()> = Mutex::new(());
static INIT_SINK: OnceLock<InitLineSink> = OnceLock::new();

/// Logs one line of init's own, to the console and (once attached) the log store.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::init_line(&::std::format!($($arg)*))
    };
}

/// Sends init's own lines to `sink` too (the log store, so that the control server can read
/// them).
pub fn attach_init_sink(sink: InitLineSink) {
    // A second attach keeps the first sink: there is one store per boot.
    let _ = INIT_SINK.set(sink);
}

/// Writes `enclave-init: <msg>` to the console and to the attached sink.
pub fn init_line(msg: &str) {
    write_line(&format!("{INIT_LOG_NAME}: {msg}\n"));
    if let Some(sink) = INIT_SINK.get() {
        sink(msg);
    }
}

/// Writes one whole line (ending in a newline) to the console.
pub fn write_line(line: &str) {
    // One write per line under a lock keeps lines from different threads whole.
    let _guard = WRITE_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

fn fd_is_open(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

/// Makes sure fds 0, 1 and 2 are open, on `/dev/console` when the kernel could not open it.
///
/// Call after `/dev` is mounted. Services inherit nothing from these fds (their stdio is
/// /dev/null and pipes), but a closed fd 0-2 would be reused by the next `open`, and a stray
/// write to "stdout" would land in some unrelated file.
pub fn ensure_fds() {
    if (0..=2).all(fd_is_open) {
        return;
    }
    let console = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .or_else(|_| OpenOptions::new().read(true).write(true).open("/dev/null"));
    if let Ok(file) = console {
        for fd in 0..=2 {
            if !fd_is_open(fd) {
                let _ = nix::unistd::dup2(file.as_raw_fd(), fd);
            }
        }
        // If the file itself landed on 0-2 it must stay open.
        if file.as_raw_fd() <= 2 {
            let _ = file.into_raw_fd();
        }
    }
}
