//! Service output: captured line by line into bounded per-service rings.
//!
//! [`LogStore`] is the API the control server reads: [`LogStore::snapshot`] for `logs`,
//! [`LogStore::follow`] (a blocking wait for lines newer than a cursor) for `logs -f`. Every line
//! gets a sequence number unique across services, so one cursor follows one service or all of
//! them, and a reader can tell it missed lines (its cursor is older than the oldest kept line).

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::console;

/// Longest line kept, in bytes; longer output is split into several lines of at most this size.
pub const MAX_LINE_BYTES: usize = 4096;
/// Most lines kept per service.
pub const MAX_LINES_PER_SERVICE: usize = 2000;
/// Most bytes of text kept per service (the RAM of an enclave is the host's, and scarce).
pub const MAX_BYTES_PER_SERVICE: usize = 256 * 1024;

/// Which of a service's pipes a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Sequence number, increasing across all services of this boot, starting at 1.
    pub seq: u64,
    /// The service (or [`console::INIT_LOG_NAME`] for init's own lines).
    pub service: Arc<str>,
    /// The pipe it came from.
    pub stream: Stream,
    /// Wall-clock time it was read, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The text, without the newline; invalid UTF-8 is replaced.
    pub text: String,
}

/// The answer to a [`LogStore::snapshot`] or [`LogStore::follow`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogBatch {
    /// Matching lines with `seq >= since`, oldest first.
    pub lines: Vec<LogLine>,
    /// The cursor to pass as `since` next time.
    pub next: u64,
    /// Lines at or after `since` were already evicted from the ring.
    pub missed: bool,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// Sequence number of the newest line evicted so far (0: none).
    evicted_through: u64,
}

#[derive(Default)]
struct Inner {
    next_seq: u64,
    rings: BTreeMap<Arc<str>, Ring>,
}

/// Bounded, thread-safe store of every service's recent output.
pub struct LogStore {
    inner: Mutex<Inner>,
    changed: Condvar,
    max_lines: usize,
    max_bytes: usize,
}

impl Default for LogStore {
    fn default() -> Self {
        Self::new(MAX_LINES_PER_SERVICE, MAX_BYTES_PER_SERVICE)
    }
}

impl LogStore {
    /// A store keeping at most `max_lines` lines and `max_bytes` bytes of text per service.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                next_seq: 1,
                rings: BTreeMap::new(),
            }),
            changed: Condvar::new(),
            max_lines: max_lines.max(1),
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the rings inconsistent in a way that
        // matters more than losing all logs would.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a line and wakes followers; returns its sequence number.
    pub fn push(&self, service: &str, stream: Stream, text: &str) -> u64 {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let key: Arc<str> = match inner.rings.get_key_value(service) {
            Some((k, _)) => k.clone(),
            None => Arc::from(service),
        };
        let ring = inner.rings.entry(key.clone()).or_default();
        ring.bytes += text.len();
        ring.lines.push_back(LogLine {
            seq,
            service: key,
            stream,
            unix_ms,
            text: text.to_owned(),
        });
        while ring.lines.len() > self.max_lines
            || (ring.bytes > self.max_bytes && ring.lines.len() > 1)
        {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.text.len();
                ring.evicted_through = old.seq;
            }
        }
        drop(inner);
        self.changed.notify_all();
        seq
    }

    /// Names with at least one line, sorted.
    pub fn services(&self) -> Vec<String> {
        self.lock().rings.keys().map(|k| k.to_string()).collect()
    }

    /// The cursor of the next line to be written: `follow(.., store.cursor(), ..)` shows only
    /// new lines.
    pub fn cursor(&self) -> u64 {
        self.lock().next_seq
    }

    /// Lines of `service` (all services when `None`) with `seq >= since`.
    pub fn snapshot(&self, service: Option<&str>, since: u64) -> LogBatch {
        Self::collect(&self.lock(), service, since)
    }

    /// Like [`snapshot`](Self::snapshot), but waits up to `timeout` for at least one line.
    pub fn follow(&self, service: Option<&str>, since: u64, timeout: Duration) -> LogBatch {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            let batch = Self::collect(&inner, service, since);
            let now = Instant::now();
            if !batch.lines.is_empty() || batch.missed || now >= deadline {
                return batch;
            }
            inner = match self.changed.wait_timeout(inner, deadline - now) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn collect(inner: &Inner, service: Option<&str>, since: u64) -> LogBatch {
        let mut lines: Vec<LogLine> = Vec::new();
        let mut missed = false;
        for (name, ring) in &inner.rings {
            if service.is_some_and(|s| s != &**name) {
                continue;
            }
            missed |= ring.evicted_through != 0 && ring.evicted_through >= since;
            let start = ring.lines.partition_point(|l| l.seq < since);
            lines.extend(ring.lines.range(start..).cloned());
        }
        lines.sort_by_key(|l| l.seq);
        LogBatch {
            next: lines.last().map_or(since.max(1), |l| l.seq + 1),
            lines,
            missed,
        }
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE_BYTES`].
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// A full-length line was just emitted: a newline right after it ends that line, not a
    /// new empty one.
    after_split: bool,
}

impl LineSplitter {
    /// Feeds bytes, calling `emit` for each complete (or full-length) line, without its newline.
    pub fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while !data.is_empty() {
            if std::mem::take(&mut self.after_split) && data[0] == b'\n' {
                data = &data[1..];
                continue;
            }
            let room = MAX_LINE_BYTES - self.partial.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.partial.extend_from_slice(&window[..nl]);
                    emit(trim_cr(&self.partial));
                    self.partial.clear();
                    data = &data[nl + 1..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    data = &data[window.len()..];
                    if self.partial.len() == MAX_LINE_BYTES {
                        emit(&self.partial);
                        self.partial.clear();
                        self.after_split = true;
                    }
                }
            }
        }
    }

    /// Emits what is left after the stream ended without a final newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(trim_cr(&self.partial));
            self.partial.clear();
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Starts a thread that reads `pipe` to its end, storing and echoing each line.
///
/// The thread ends when every writer of the pipe is gone, which may be after the service
/// itself exited (a daemonised grandchild keeps the pipe).
pub fn spawn_capture(
    store: Arc<LogStore>,
    service: Arc<str>,
    stream: Stream,
    mut pipe: impl Read + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("log-{service}"))
        // The thread only reads into a heap buffer; a small stack keeps PID 1's RSS small.
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut splitter = LineSplitter::default();
            let mut buf = vec![0u8; 8192];
            let mut emit = |line: &[u8]| {
                let text = String::from_utf8_lossy(line);
                echo_line(&service, stream, &text);
                store.push(&service, stream, &text);
            };
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => splitter.feed(&buf[..n], &mut emit),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            splitter.finish(&mut emit);
        })
        .map(drop)
}

/// Echoes a service's line to the console as `[name] line` (stdout) or `[name:err] line`
/// (stderr).
fn echo_line(name: &str, stream: Stream, text: &str) {
    let line = match stream {
        Stream::Stdout => format!("[{name}] {text}\n"),
        Stream::Stderr => format!("[{name}:err] {text}\n"),
    };
    console::write_line(&line);
}

#[cfg(test)]
mod tests;
