//! Telling a kill by the kernel's OOM killer from any other SIGKILL (the `oom` event).
//!
//! Both end the same way for PID 1: a child reaped with SIGKILL. The kernel counts its kills in
//! `/proc/vmstat` (`oom_kill`, since 4.13) and names each victim in its log, in the same words
//! on AWS's 4.14 and on the 6.x kernels ("Killed process PID (comm) total-vm:…", after "Out of
//! memory: Kill process …" on 4.14, or as "Out of memory: Killed process …" /
//! "Memory cgroup out of memory: Killed process …" later). So at every SIGKILL reap the counter
//! is read (one small file); only when it grew is `/dev/kmsg` read, from the record after the
//! last one read, and the victims' pids kept until their reap asks for them. A pid is credited
//! to the OOM killer only when the log names it: a `kill -9` at the same moment as another
//! process's OOM kill is not mistaken for it.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::say;

/// Victims named by the log but not reaped yet (killed grandchildren are reaped by their own
/// parents, never here): the oldest are forgotten past this many.
const MAX_PENDING: usize = 64;

/// One kernel log record is at most this long (the kernel's own limit is 1 KiB of text plus
/// the header and the dictionary).
const RECORD_BUF: usize = 8 << 10;

/// See the [module doc](self).
#[derive(Debug)]
pub struct OomWatch {
    vmstat: PathBuf,
    kmsg: PathBuf,
    /// The kernel's `oom_kill` counter when the log was last read.
    counted: u64,
    /// Sequence number of the last log record read.
    last_seq: Option<u64>,
    /// Pids the log named, not reaped yet.
    pending: VecDeque<i32>,
}

impl OomWatch {
    /// A watch over the running kernel (`/proc/vmstat`, `/dev/kmsg`). Kills before this call
    /// are not looked at.
    pub fn new() -> Self {
        Self::with_paths("/proc/vmstat".into(), "/dev/kmsg".into())
    }

    /// A watch over other files (tests).
    pub fn with_paths(vmstat: PathBuf, kmsg: PathBuf) -> Self {
        let mut watch = Self {
            vmstat,
            kmsg,
            counted: 0,
            last_seq: None,
            pending: VecDeque::new(),
        };
        watch.counted = watch.counter().unwrap_or(0);
        // Skip what the log holds already: those victims died before anything here ran.
        if watch.counted > 0 {
            watch.read_log();
            watch.pending.clear();
        }
        watch
    }

    /// Whether the process `pid`, just reaped with SIGKILL, was killed by the OOM killer.
    pub fn killed(&mut self, pid: i32) -> bool {
        match self.counter() {
            Some(now) if now > self.counted => {
                self.counted = now;
                self.read_log();
            }
            Some(_) => {}
            // No counter (a kernel before 4.13): the log alone.
            None => self.read_log(),
        }
        match self.pending.iter().position(|p| *p == pid) {
            Some(i) => {
                self.pending.remove(i);
                true
            }
            None => false,
        }
    }

    fn counter(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.vmstat).ok()?;
        oom_kill_count(&text)
    }

    /// Reads the records after `last_seq` and keeps the victims they name.
    fn read_log(&mut self) {
        let mut log = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&self.kmsg)
        {
            Ok(f) => f,
            Err(e) => {
                say!("cannot read the kernel log ({e}): OOM kills are not told apart");
                return;
            }
        };
        let mut buf = vec![0u8; RECORD_BUF];
        loop {
            match read_record(&mut log, &mut buf) {
                Ok(Some(record)) => self.take(record),
                Ok(None) => break,
                Err(e) => {
                    say!("reading the kernel log: {e}");
                    break;
                }
            }
        }
    }

    fn take(&mut self, record: &[u8]) {
        let Some((seq, text)) = parse_record(record) else {
            return;
        };
        if self.last_seq.is_some_and(|last| seq <= last) {
            return;
        }
        self.last_seq = Some(seq);
        if let Some(pid) = victim(text) {
            if self.pending.len() == MAX_PENDING {
                self.pending.pop_front();
            }
            self.pending.push_back(pid);
        }
    }
}

impl Default for OomWatch {
    fn default() -> Self {
        Self::new()
    }
}

/// One `read` of `/dev/kmsg` is one record; `None` at the end of the log. Records overwritten
/// while reading (`EPIPE`) are skipped, as the kernel intends.
fn read_record<'b>(log: &mut File, buf: &'b mut [u8]) -> std::io::Result<Option<&'b [u8]>> {
    loop {
        match log.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(&buf[..n])),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EPIPE as i32) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The `oom_kill` line of `/proc/vmstat`.
fn oom_kill_count(vmstat: &str) -> Option<u64> {
    vmstat
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// A `/dev/kmsg` record (`PRIORITY,SEQUENCE,TIMESTAMP,FLAGS[,…];TEXT\n` and continuation
/// lines): its sequence number and the text's first line.
fn parse_record(record: &[u8]) -> Option<(u64, &str)> {
    let record = std::str::from_utf8(record).ok()?;
    let (header, text) = record.split_once(';')?;
    let seq = header.split(',').nth(1)?.parse().ok()?;
    Some((seq, text.lines().next().unwrap_or("")))
}

/// The pid a log line names as the OOM killer's victim.
fn victim(text: &str) -> Option<i32> {
    let (_, rest) = text.split_once("Killed process ")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    if !rest[end..].starts_with(" (") {
        return None;
    }
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from the kernels' own messages (mm/oom_kill.c).
    const LINUX_6: &str = "3,1234,5678901,-;Out of memory: Killed process 231 (dd) total-vm:208212kB, anon-rss:204800kB, file-rss:4kB, shmem-rss:0kB, UID:0 pgtables:444kB oom_score_adj:0\n";
    const LINUX_4_14: &[&str] = &[
        "3,880,9912345,-;Out of memory: Kill process 512 (python3) score 912 or sacrifice child\n",
        "3,881,9912360,-;Killed process 512 (python3) total-vm:1150212kB, anon-rss:901232kB, file-rss:0kB, shmem-rss:0kB\n",
    ];
    const CGROUP: &str = "3,77,100,-;Memory cgroup out of memory: Killed process 99 (java) total-vm:10kB\n SUBSYSTEM=memory\n";

    #[test]
    fn victims_are_read_from_every_kernels_words() {
        let pick = |r: &str| parse_record(r.as_bytes()).and_then(|(_, t)| victim(t));
        assert_eq!(pick(LINUX_6), Some(231));
        assert_eq!(pick(LINUX_4_14[0]), None, "the choice is not the kill");
        assert_eq!(pick(LINUX_4_14[1]), Some(512));
        assert_eq!(pick(CGROUP), Some(99));
        assert_eq!(parse_record(LINUX_6.as_bytes()).map(|(s, _)| s), Some(1234));
        for other in [
            "6,1,2,-;Killed process list printed\n",
            "6,2,3,-;oom_reaper: reaped process 231 (dd), now anon-rss:0kB\n",
            "no header at all",
            "6,x,3,-;Killed process 5 (a)\n",
        ] {
            assert_eq!(pick(other), None, "{other}");
        }
    }

    #[test]
    fn the_counter_is_read_from_vmstat() {
        let vmstat = "nr_free_pages 1000\noom_kill 3\nnr_zone_active_anon 2\n";
        assert_eq!(oom_kill_count(vmstat), Some(3));
        assert_eq!(oom_kill_count("nr_free_pages 1\n"), None);
    }

    #[test]
    fn a_pid_counts_once_and_only_after_a_newer_record_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let (vmstat, kmsg) = (dir.path().join("vmstat"), dir.path().join("kmsg"));
        // A regular file reads whole in one call: one record, enough for the bookkeeping.
        std::fs::write(&vmstat, "oom_kill 1\n").unwrap();
        std::fs::write(&kmsg, LINUX_4_14[1]).unwrap();
        let mut watch = OomWatch::with_paths(vmstat.clone(), kmsg.clone());
        // Pid 512 died before the watch began.
        assert!(!watch.killed(512));
        std::fs::write(&kmsg, LINUX_6).unwrap();
        // The counter has not grown: the log is not read.
        assert!(!watch.killed(231));
        std::fs::write(&vmstat, "oom_kill 2\n").unwrap();
        assert!(!watch.killed(7), "another pid");
        assert!(watch.killed(231));
        assert!(!watch.killed(231), "once");
        // An older record is never taken again.
        std::fs::write(&vmstat, "oom_kill 3\n").unwrap();
        std::fs::write(&kmsg, LINUX_4_14[1]).unwrap();
        assert!(!watch.killed(512));
    }
}
