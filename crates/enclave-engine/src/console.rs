//! The console of a running enclave: copied raw to `console.log` (size-capped), split into
//! lines for the JSON logs, and its tail kept for error messages.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::logs::{classify, LogWriter};

/// The raw console file in the enclave directory.
pub const CONSOLE_FILE: &str = "console.log";
/// Largest console file before it is rotated to `console.log.1`.
pub const MAX_CONSOLE_BYTES: u64 = 1 << 20;
/// Lines kept for error messages.
pub const TAIL_LINES: usize = 30;

/// What the supervisor learns from the console.
#[derive(Debug, Default)]
pub struct ConsoleState {
    tail: Mutex<VecDeque<String>>,
    /// "Kernel panic" was printed.
    pub panicked: AtomicBool,
    /// enclave-init said it is powering off.
    pub powered_off: AtomicBool,
}

impl ConsoleState {
    /// The last lines, joined.
    pub fn tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn push(&self, line: &str) {
        if line.contains("Kernel panic") {
            self.panicked.store(true, Ordering::SeqCst);
        }
        if line.starts_with("enclave-init: powering off") {
            self.powered_off.store(true, Ordering::SeqCst);
        }
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_owned());
    }
}

struct CappedFile {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl CappedFile {
    fn open(path: PathBuf) -> Self {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
        Self { path, file, size }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.size + bytes.len() as u64 > MAX_CONSOLE_BYTES {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            let _ = fs::rename(&self.path, old);
            self.file = File::create(&self.path).ok();
            self.size = 0;
        }
        if let Some(f) = self.file.as_mut() {
            if f.write_all(bytes).is_ok() {
                self.size += bytes.len() as u64;
            }
        }
    }
}

/// Starts the thread that drains `console` until it ends.
pub fn spawn_reader(
    console: Box<dyn Read + Send>,
    dir: &Path,
    logs: Arc<Mutex<LogWriter>>,
    state: Arc<ConsoleState>,
) -> JoinHandle<()> {
    let mut raw = CappedFile::open(dir.join(CONSOLE_FILE));
    std::thread::spawn(move || {
        let mut reader = BufReader::new(console);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            raw.write(&buf);
            let text = String::from_utf8_lossy(&buf);
            let line = text.trim_end_matches(['\n', '\r']);
            state.push(line);
            let (source, text) = classify(line);
            let mut w = logs.lock().unwrap_or_else(|p| p.into_inner());
            let _ = w.line(&source, &text);
        }
    })
}

/// The last `n` lines of the console file of an enclave directory.
pub fn file_tail(dir: &Path, n: usize) -> String {
    let text = fs::read(dir.join(CONSOLE_FILE)).unwrap_or_default();
    crate::util::tail_lines(&String::from_utf8_lossy(&text), n)
}
