//! The accept loop both proxies share: the connection limit, the peer CID check, one task per
//! connection, and warnings that a flood cannot turn into a flood of log lines.

use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{error, Instrument, Span};

use super::Limits;
use crate::stream::{ProxyListener, ProxyStream};

/// Lines one [`LogLimiter`] lets through per window.
const LOG_BURST: u32 = 10;
/// The window.
const LOG_WINDOW: Duration = Duration::from_secs(1);
/// How long to back off when accepting fails for lack of resources (file descriptors, memory):
/// the pending connection stays queued, so retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Lets through at most [`LOG_BURST`] lines per second of one kind, and counts the rest so the
/// next line that gets through can say how many were dropped.
#[derive(Debug)]
pub(crate) struct LogLimiter(Mutex<LimiterState>);

#[derive(Debug)]
struct LimiterState {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub(crate) fn new() -> Self {
        LogLimiter(Mutex::new(LimiterState {
            window_start: None,
            in_window: 0,
            suppressed: 0,
        }))
    }

    /// `Some(n)` when a line may be logged now, `n` being the lines dropped since the last one.
    pub(crate) fn admit(&self) -> Option<u64> {
        let Ok(mut s) = self.0.lock() else {
            // A poisoned lock only means another thread panicked mid-update; log anyway.
            return Some(0);
        };
        let now = Instant::now();
        if s.window_start
            .is_none_or(|start| now.duration_since(start) >= LOG_WINDOW)
        {
            s.window_start = Some(now);
            s.in_window = 0;
        }
        if s.in_window < LOG_BURST {
            s.in_window += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

/// Logs a warning through a [`LogLimiter`]; after a burst, the first line that gets through has a
/// `suppressed` field with the count of lines dropped before it.
macro_rules! limited_warn {
    ($limiter:expr, $($rest:tt)+) => {
        match $limiter.admit() {
            Some(0) => tracing::warn!($($rest)+),
            Some(suppressed) => tracing::warn!(suppressed, $($rest)+),
            None => {}
        }
    };
}
pub(crate) use limited_warn;

/// Whether an accept error means the process is out of something, as opposed to one connection
/// having gone wrong (reset before it was accepted).
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(nix::errno::Errno::from_raw),
        Some(
            nix::errno::Errno::EMFILE
                | nix::errno::Errno::ENFILE
                | nix::errno::Errno::ENOBUFS
                | nix::errno::Errno::ENOMEM
        )
    )
}

/// Accepts connections forever and runs `handle` on each in its own task, in the caller's span.
/// Connections beyond `limits.max_connections` are closed at once; with `expect_cid`, vsock
/// connections from any other CID are closed at once. Dropping the returned future aborts every
/// connection task it started.
pub(crate) async fn accept_loop<H, F>(
    listener: ProxyListener,
    limits: Limits,
    expect_cid: Option<u32>,
    mut handle: H,
) where
    H: FnMut(ProxyStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut tasks = JoinSet::new();
    let over_limit = LogLimiter::new();
    let foreign = LogLimiter::new();
    let accept_failed = LogLimiter::new();
    loop {
        let accepted = tokio::select! {
            biased;
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        error!(error = %e, "a proxied connection's task panicked");
                    }
                }
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer_cid) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                limited_warn!(accept_failed, error = %e, "accepting a connection failed");
                if out_of_resources(&e) {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        if let (Some(want), Some(cid)) = (expect_cid, peer_cid) {
            if cid != want {
                limited_warn!(
                    foreign,
                    peer_cid = cid,
                    expected_cid = want,
                    "connection from another enclave refused"
                );
                continue;
            }
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            limited_warn!(
                over_limit,
                max_connections = limits.max_connections,
                "connection limit reached; connection closed"
            );
            stream.reset();
            continue;
        };
        let task = handle(stream);
        tasks.spawn(
            async move {
                task.await;
                drop(permit);
            }
            .instrument(Span::current()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_lets_a_burst_through_then_counts() {
        let l = LogLimiter::new();
        for _ in 0..LOG_BURST {
            assert_eq!(l.admit(), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(l.admit(), None);
        }
        // A new window reports what was dropped.
        l.0.lock().unwrap().window_start = Instant::now().checked_sub(LOG_WINDOW);
        assert_eq!(l.admit(), Some(5));
        assert_eq!(l.admit(), Some(0));
    }
}
