//! The log lines of every thread of a test binary, captured so tests can wait for a refusal's
//! reason or count how many lines a flood caused.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long [`wait_for_log`] waits. Generous: the machine is shared. Never used to assert speed.
const PATIENCE: Duration = Duration::from_secs(20);

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Captures the log lines of every thread of this test binary (the proxies' included).
pub fn capture_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buf.clone());
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .init();
        buf
    });
}

/// The captured lines that contain every one of `needles`.
pub fn log_lines(needles: &[&str]) -> Vec<String> {
    let Some(buf) = LOGS.get() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// Waits (up to [`PATIENCE`]) for a line containing every one of `needles`; returns it.
pub fn wait_for_log(needles: &[&str]) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(line) = log_lines(needles).pop() {
            return line;
        }
        assert!(Instant::now() < deadline, "no log line with {needles:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
