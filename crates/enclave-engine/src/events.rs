//! The event log of a state directory (`<root>/events.jsonl`): one JSON object a line for each
//! step of each enclave's life (create, boot, heartbeat, health status, exit, die, restart,
//! stop, destroy, attest), written by whoever takes the step (`run`, the supervisor, `rm`,
//! `attest`), read by `enclave-ctl events` (and by the engine daemon of issue 14, which replays
//! from a time: the supervisors write, so nothing is lost while no daemon runs).
//!
//! Appends take `<root>/events.lock` (flock), so lines from several supervisors never interleave
//! and rotation is safe: past [`MAX_LOG_BYTES`] the log becomes `events.1.jsonl` (the one
//! before is dropped), so two generations are kept. Writing an event never fails the step it
//! records: a failure is logged.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::state::{EnclaveRecord, StateRoot};
use crate::util::{now_rfc3339, parse_rfc3339};

/// The log's file name in the state directory.
pub const LOG_FILE: &str = "events.jsonl";
/// The previous generation.
pub const OLD_LOG_FILE: &str = "events.1.jsonl";
const LOCK_FILE: &str = "events.lock";
/// Size at which the log is rotated.
pub const MAX_LOG_BYTES: u64 = 4 * 1024 * 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `run` recorded the enclave.
    Create,
    /// A boot began (the first, or one by the restart policy).
    Boot,
    /// The boot heartbeat came: the enclave runs.
    Heartbeat,
    /// The health check's status changed.
    HealthStatus,
    /// The kernel's OOM killer ended a process of a service (`service`; the main service's
    /// last one when the enclave ends: before its `exit`).
    Oom,
    /// The main service ended, with its exit code.
    Exit,
    /// The enclave (the VM, or nitro-cli's enclave) ended.
    Die,
    /// A service of the enclave started (seen by the supervisor's look every 2 s).
    ServiceStart,
    /// A service ended (`state`: exited, failed or stopped; `exit_code` or `signal`).
    ServiceExit,
    /// enclave-init restarted a service by its restart policy (`restarts`: its count).
    ServiceRestart,
    /// It boots again: by its restart policy (`restart`, `policy` attributes) or asked to
    /// (`restart` command or API: `by=request`).
    Restart,
    /// A stop was asked for.
    Stop,
    /// A stop with no grace was asked for (`kill`).
    Kill,
    /// `rm` removed it.
    Destroy,
    /// An attestation document was fetched through the control channel.
    Attest,
}

impl EventKind {
    /// Every kind, for `--filter type=` and its error message.
    pub const ALL: [EventKind; 15] = [
        EventKind::Create,
        EventKind::Boot,
        EventKind::Heartbeat,
        EventKind::HealthStatus,
        EventKind::Oom,
        EventKind::Exit,
        EventKind::Die,
        EventKind::ServiceStart,
        EventKind::ServiceExit,
        EventKind::ServiceRestart,
        EventKind::Restart,
        EventKind::Stop,
        EventKind::Kill,
        EventKind::Destroy,
        EventKind::Attest,
    ];

    /// The name in the log (`health_status`).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Boot => "boot",
            EventKind::Heartbeat => "heartbeat",
            EventKind::HealthStatus => "health_status",
            EventKind::Oom => "oom",
            EventKind::Exit => "exit",
            EventKind::Die => "die",
            EventKind::ServiceStart => "service_start",
            EventKind::ServiceExit => "service_exit",
            EventKind::ServiceRestart => "service_restart",
            EventKind::Restart => "restart",
            EventKind::Stop => "stop",
            EventKind::Kill => "kill",
            EventKind::Destroy => "destroy",
            EventKind::Attest => "attest",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                format!("unknown event type {s:?} (one of {})", names.join(", "))
            })
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When, RFC 3339 in UTC.
    pub time: String,
    /// What.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The enclave's id.
    pub id: String,
    /// The enclave's name.
    pub name: String,
    /// Details (`exit_code`, `status`, `restart`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event of `rec`, now.
    pub fn new(kind: EventKind, rec: &EnclaveRecord) -> Self {
        Event {
            time: now_rfc3339(),
            kind,
            id: rec.id.clone(),
            name: rec.name.clone(),
            attributes: BTreeMap::new(),
        }
    }

    /// With an attribute.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.attributes.insert(key.to_owned(), value.to_string());
        self
    }

    /// Whether it is about the enclave `query` names: its name, or a prefix of its id of at
    /// least 4 hex digits (`events --filter enclave=`, the API's `enclave=`).
    pub fn concerns(&self, query: &str) -> bool {
        self.name == query || (query.len() >= 4 && self.id.starts_with(query))
    }

    /// Its time, if it parses.
    pub fn at(&self) -> Option<OffsetDateTime> {
        parse_rfc3339(&self.time)
    }
}

fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// Appends `event` to `root`'s log; a failure is logged, not returned (the step it records
/// happened all the same).
pub fn record(root: &StateRoot, event: Event) {
    if let Err(e) = append(root.path(), &event) {
        tracing::warn!(kind = event.kind.name(), "cannot record the event: {e}");
    }
}

/// Appends `event` to the log in `dir`, rotating it first when it is full.
pub fn append(dir: &Path, event: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    let lock = open_private(&dir.join(LOCK_FILE), false)?;
    let _held =
        Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    let path = dir.join(LOG_FILE);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.len() >= MAX_LOG_BYTES) {
        std::fs::rename(&path, dir.join(OLD_LOG_FILE))?;
    }
    // One write of the whole line, under the lock.
    open_private(&path, true)?.write_all(&line)
}

/// The events of the log in `dir`, oldest first (both generations); lines that do not parse
/// (a line cut short by a crash) are skipped.
pub fn read_all(dir: &Path) -> Vec<Event> {
    let mut out = read_previous(dir);
    if let Ok(file) = File::open(dir.join(LOG_FILE)) {
        out.extend(parse_lines(BufReader::new(file)));
    }
    out
}

/// The events of the previous generation only (`events.1.jsonl`), oldest first.
pub fn read_previous(dir: &Path) -> Vec<Event> {
    File::open(dir.join(OLD_LOG_FILE))
        .map(|f| parse_lines(BufReader::new(f)).collect())
        .unwrap_or_default()
}

fn parse_lines(reader: impl BufRead) -> impl Iterator<Item = Event> {
    reader
        .lines()
        .map_while(|l| l.ok())
        .filter_map(|l| serde_json::from_str(&l).ok())
}

/// Reads what is appended to the log after it was made, across rotations.
pub struct Follower {
    path: PathBuf,
    offset: u64,
}

impl Follower {
    /// A follower of the log in `dir` from its current end.
    pub fn at_end(dir: &Path) -> Self {
        let path = dir.join(LOG_FILE);
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        Follower { path, offset }
    }

    /// A follower of the log in `dir` from its first line (after [`read_previous`], every
    /// event once).
    pub fn from_start(dir: &Path) -> Self {
        Follower {
            path: dir.join(LOG_FILE),
            offset: 0,
        }
    }

    /// The whole events appended since the last call.
    pub fn poll(&mut self) -> Vec<Event> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            // Rotated: the new log starts from its beginning.
            self.offset = 0;
        }
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut reader = BufReader::new(file);
        let mut out = Vec::new();
        let mut line = String::new();
        while let Ok(n) = reader.read_line(&mut line) {
            // A line being written (no newline yet) is read again next time.
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.offset += n as u64;
            if let Ok(e) = serde_json::from_str(&line) {
                out.push(e);
            }
            line.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests;
