//! The enclave's logs: JSON lines (`{"time","source","text"}`), size-capped.
//!
//! The supervisor writes `<dir>/logs/enclave.jsonl`; when it would grow past
//! [`MAX_FILE_BYTES`] it is renamed to `enclave.jsonl.1` (replacing the previous one) and a new
//! file is started, so at most twice that is kept. Readers take both, oldest first.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// Largest log file before rotation.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The current log file, in the enclave's `logs/` directory.
pub const LOG_FILE: &str = "enclave.jsonl";

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When the supervisor read it (RFC 3339).
    pub time: String,
    /// `kernel`, `enclave-init`, a service name, `console` (anything else on the console) or
    /// `supervisor`.
    pub source: String,
    /// The text, without the newline.
    pub text: String,
}

/// Where a console line comes from: `[    1.23] …` is the kernel, `enclave-init: …` is init,
/// `[name] …` is a service's output as enclave-init echoes it.
pub fn classify(line: &str) -> (String, String) {
    if let Some(rest) = line.strip_prefix("enclave-init: ") {
        return ("enclave-init".into(), rest.into());
    }
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((tag, text)) = rest.split_once("] ") {
            let tag_t = tag.trim();
            if !tag_t.is_empty() && tag_t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return ("kernel".into(), text.into());
            }
            if !tag.is_empty()
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return (tag.into(), text.into());
            }
        }
    }
    ("console".into(), line.into())
}

/// Appends entries to the capped log.
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    size: u64,
    max: u64,
}

impl LogWriter {
    /// Opens (appending) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::with_limit(dir, MAX_FILE_BYTES)
    }

    /// With another size limit (tests).
    pub fn with_limit(dir: &Path, max: u64) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            dir: dir.to_owned(),
            file,
            size,
            max,
        })
    }

    /// Appends one entry (errors are the caller's to ignore: logging must not stop the
    /// enclave).
    pub fn write(&mut self, entry: &LogEntry) -> Result<()> {
        let path = self.dir.join(LOG_FILE);
        let mut line = serde_json::to_vec(entry).map_err(|error| EngineError::Json {
            path: path.clone(),
            error,
        })?;
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max {
            let old = self.dir.join(format!("{LOG_FILE}.1"));
            fs::rename(&path, &old).map_err(|e| EngineError::io(&old, e))?;
            self.file = File::create(&path).map_err(|e| EngineError::io(&path, e))?;
            self.size = 0;
        }
        self.file
            .write_all(&line)
            .map_err(|e| EngineError::io(&path, e))?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Appends a line of text from `source`, stamped now.
    pub fn line(&mut self, source: &str, text: &str) -> Result<()> {
        self.write(&LogEntry {
            time: crate::util::now_rfc3339(),
            source: source.to_owned(),
            text: text.to_owned(),
        })
    }
}

fn read_file(path: &Path, from: u64, out: &mut Vec<LogEntry>) -> u64 {
    let Ok(f) = File::open(path) else {
        return from;
    };
    read_open(f, from, out)
}

/// [`read_file`] of a file already open.
fn read_open(mut f: File, from: u64, out: &mut Vec<LogEntry>) -> u64 {
    if f.seek(SeekFrom::Start(from)).is_err() {
        return from;
    }
    let mut reader = BufReader::new(f);
    let mut pos = from;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            // A partial last line is left for the next read.
            Ok(_) if !line.ends_with('\n') => break,
            Ok(n) => {
                pos += n as u64;
                if let Ok(e) = serde_json::from_str(&line) {
                    out.push(e);
                }
            }
        }
    }
    pos
}

/// Every kept entry, oldest first, and a follower from just after the last of them: no entry is
/// missed or seen twice whatever the writer does meanwhile (a follower made before the read
/// would see again what the writer added between the two; one made after would miss it).
pub fn read_all_then_follow(dir: &Path) -> (Vec<LogEntry>, Follower) {
    let mut out = Vec::new();
    read_file(&dir.join(format!("{LOG_FILE}.1")), 0, &mut out);
    let mut follower = Follower {
        dir: dir.to_owned(),
        inode: 0,
        pos: 0,
    };
    if let Ok(f) = File::open(dir.join(LOG_FILE)) {
        // The inode of the file read: if it is rotated meanwhile, the follower finishes it.
        follower.inode = f.metadata().map(|m| m.ino()).unwrap_or(0);
        follower.pos = read_open(f, 0, &mut out);
    }
    (out, follower)
}

/// Follows the log: each [`poll`](Follower::poll) returns the entries written since the last.
pub struct Follower {
    dir: PathBuf,
    inode: u64,
    pos: u64,
}

impl Follower {
    /// New entries.
    pub fn poll(&mut self) -> Vec<LogEntry> {
        let mut out = Vec::new();
        let path = self.dir.join(LOG_FILE);
        let ino = fs::metadata(&path).map(|m| m.ino()).unwrap_or(0);
        if ino != self.inode {
            // Rotated: finish the old file (now `.1`), then start the new one.
            if self.inode != 0 {
                read_file(&self.dir.join(format!("{LOG_FILE}.1")), self.pos, &mut out);
            }
            self.inode = ino;
            self.pos = 0;
        }
        self.pos = read_file(&path, self.pos, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_are_classified() {
        assert_eq!(
            classify("[    1.234] Run /init"),
            ("kernel".into(), "Run /init".into())
        );
        assert_eq!(
            classify("enclave-init: heartbeat ok"),
            ("enclave-init".into(), "heartbeat ok".into())
        );
        assert_eq!(classify("[main] hello"), ("main".into(), "hello".into()));
        assert_eq!(classify("[a b] x"), ("console".into(), "[a b] x".into()));
        assert_eq!(classify("plain"), ("console".into(), "plain".into()));
    }

    #[test]
    fn logs_rotate_within_the_cap_and_followers_see_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::with_limit(dir.path(), 300).unwrap();
        let (past, mut f) = read_all_then_follow(dir.path());
        assert!(past.is_empty());
        let mut seen = Vec::new();
        for i in 0..20 {
            w.line("main", &format!("line {i}")).unwrap();
            seen.extend(f.poll());
        }
        assert_eq!(seen.len(), 20);
        assert_eq!(seen[19].text, "line 19");
        let (kept, _) = read_all_then_follow(dir.path());
        assert!(kept.len() < 20 && kept.last().unwrap().text == "line 19");
        let total: u64 = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(total <= 600, "{total}");
    }

    #[test]
    fn the_past_and_the_follower_meet_without_a_gap_or_a_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path()).unwrap();
        w.line("main", "one").unwrap();
        // A line the writer is still writing: not in the past, all of it to the follower.
        let whole = serde_json::to_string(&LogEntry {
            time: "2026-12-06T00:00:00Z".into(),
            source: "main".into(),
            text: "two".into(),
        })
        .unwrap();
        let (head, tail) = whole.split_at(10);
        let mut raw = fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        raw.write_all(head.as_bytes()).unwrap();
        let (past, mut f) = read_all_then_follow(dir.path());
        let texts = |v: Vec<LogEntry>| v.into_iter().map(|e| e.text).collect::<Vec<_>>();
        assert_eq!(texts(past), ["one"]);
        raw.write_all(format!("{tail}\n").as_bytes()).unwrap();
        assert_eq!(texts(f.poll()), ["two"]);
        assert!(f.poll().is_empty());
    }
}
