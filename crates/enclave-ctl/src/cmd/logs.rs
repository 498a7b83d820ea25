//! `enclave-ctl logs`: the JSON-lines logs the supervisor collected (kernel lines left out).

use std::time::Duration;

use anyhow::{Context, Result};
use enclave_engine::logs::{read_all_then_follow, LogEntry};
use enclave_engine::util::parse_rfc3339;
use time::OffsetDateTime;

use crate::cli::{LogsArgs, EXIT_OK};
use crate::remote::{segment, Remote};

/// Prints one entry: `source: text`, with the time stamp first when asked.
pub fn print_entry(e: &LogEntry, timestamps: bool) {
    if e.source == "kernel" {
        return;
    }
    if timestamps {
        println!("{} {}: {}", e.time, e.source, e.text);
    } else {
        println!("{}: {}", e.source, e.text);
    }
}

/// Prints one log entry as a JSON object on a line (kernel lines are left out, as above).
pub fn print_entry_json(e: &LogEntry) {
    if e.source == "kernel" {
        return;
    }
    if let Ok(line) = serde_json::to_string(e) {
        println!("{line}");
    }
}

/// A time flag's value (`--since`, `--until`): RFC 3339, or a duration ago (`30s`, `5m`, `2h`).
pub fn parse_time(flag: &str, s: &str) -> Result<OffsetDateTime> {
    enclave_engine::util::parse_when(s)
        .with_context(|| format!("invalid {flag} {s:?}: expected RFC 3339 or 30s, 5m, 2h"))
}

/// Runs the command; returns the exit status.
pub fn run(args: LogsArgs, remote: Option<&Remote>) -> Result<i32> {
    if let Some(remote) = remote {
        let mut path = format!("/v1/enclaves/{}/logs?", segment(&args.enclave));
        if let Some(n) = args.tail {
            path.push_str(&format!("tail={n}&"));
        }
        if let Some(s) = &args.since {
            // Checked here, so a bad value gives the same error as without the daemon.
            parse_time("--since", s)?;
            path.push_str(&format!("since={}&", segment(s)));
        }
        if args.follow {
            path.push_str("follow=true");
        }
        let mut bad = None;
        remote.stream(&path, |line| {
            if line.is_empty() {
                return true;
            }
            match serde_json::from_str::<LogEntry>(line) {
                Ok(e) => print_entry(&e, args.timestamps),
                Err(e) => bad = Some(e),
            }
            bad.is_none()
        })?;
        if let Some(e) = bad {
            return Err(e).context("a log line from the engine API");
        }
        return Ok(EXIT_OK);
    }
    let root = super::state_dir::open(&args.state)?;
    let rec = root.resolve(&args.enclave)?;
    let dir = root.dir(&rec.id).join("logs");
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time("--since", s))
        .transpose()?;
    let keep = |e: &LogEntry| {
        e.source != "kernel" && since.is_none_or(|s| parse_rfc3339(&e.time).is_none_or(|t| t >= s))
    };
    let (entries, mut follower) = read_all_then_follow(&dir);
    let entries: Vec<LogEntry> = entries.into_iter().filter(|e| keep(e)).collect();
    let start = args.tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[start..] {
        print_entry(e, args.timestamps);
    }
    if args.follow {
        loop {
            let alive = root.supervisor_alive(&rec.id);
            for e in follower.poll().into_iter().filter(|e| keep(e)) {
                print_entry(&e, args.timestamps);
            }
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(EXIT_OK)
}
