//! SIGTERM/SIGINT as a flag: blocked in every thread, taken by one waiting thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};

use crate::error::{EngineError, Result};

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call it before starting threads,
/// which inherit the mask) and starts a thread that sets the returned flag when one arrives.
pub fn termination_flag() -> Result<Arc<AtomicBool>> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.thread_block()
        .map_err(|e| EngineError::sys("blocking signals", e))?;
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    std::thread::spawn(move || loop {
        if let Ok(sig) = set.wait() {
            tracing::info!(signal = sig.as_str(), "termination asked");
            f.store(true, Ordering::SeqCst);
        }
    });
    Ok(flag)
}
