//! `enclave-ctl events`: the state directory's event log (`enclave_engine::events`), as
//! `docker events` prints a daemon's: past events with `--since`/`--until`, then new ones as the
//! supervisors append them, until interrupted (or until `--until`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use enclave_engine::events::{self, Event, Follower};
use enclave_engine::supervisor::signals::termination_flag;
use time::OffsetDateTime;

use super::logs::parse_time;
use crate::cli::{EventFilter, EventsArgs, EXIT_OK};
use crate::remote::{segment, Remote};

/// Whether `e` passes the filters: any of each key's values, every key.
fn wanted(e: &Event, filters: &[EventFilter]) -> bool {
    let enclaves: Vec<&str> = filters
        .iter()
        .filter_map(|f| match f {
            EventFilter::Enclave(v) => Some(v.as_str()),
            EventFilter::Type(_) => None,
        })
        .collect();
    let kinds: Vec<_> = filters
        .iter()
        .filter_map(|f| match f {
            EventFilter::Type(k) => Some(*k),
            EventFilter::Enclave(_) => None,
        })
        .collect();
    let enclave_ok = enclaves.is_empty() || enclaves.iter().any(|v| e.concerns(v));
    enclave_ok && (kinds.is_empty() || kinds.contains(&e.kind))
}

/// `TIME enclave TYPE ID (key=value, …)`, as `docker events` prints a container's.
fn print(e: &Event, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(e) {
            println!("{line}");
        }
        return;
    }
    let mut attributes = vec![format!("name={}", e.name)];
    attributes.extend(e.attributes.iter().map(|(k, v)| format!("{k}={v}")));
    println!(
        "{} enclave {} {} ({})",
        e.time,
        e.kind.name(),
        e.id,
        attributes.join(", ")
    );
}

/// Through the engine API: its event stream, with the same filters, printed the same.
fn run_remote(args: &EventsArgs, remote: &Remote) -> Result<i32> {
    let mut query = Vec::new();
    for (key, value) in [("since", &args.since), ("until", &args.until)] {
        if let Some(v) = value {
            parse_time(&format!("--{key}"), v)?;
            query.push(format!("{key}={}", segment(v)));
        }
    }
    // The API takes one value of each filter; the filters are applied here, as without it.
    let interrupted = termination_flag()?;
    remote.stream(&format!("/v1/events?{}", query.join("&")), |line| {
        if let Some(data) = line.strip_prefix("data: ") {
            if let Ok(e) = serde_json::from_str::<Event>(data) {
                if wanted(&e, &args.filter) {
                    print(&e, args.json);
                }
            }
        }
        !interrupted.load(Ordering::SeqCst)
    })?;
    Ok(EXIT_OK)
}

/// Runs the command (through the engine API with `remote`); returns the exit status.
pub fn run(args: EventsArgs, remote: Option<&Remote>) -> Result<i32> {
    if let Some(remote) = remote {
        return run_remote(&args, remote);
    }
    let root = super::state_dir::open(&args.state)?;
    let since = args
        .since
        .as_deref()
        .map(|s| parse_time("--since", s))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|s| parse_time("--until", s))
        .transpose()?;
    let in_range = |e: &Event| {
        let at = e.at();
        since.is_none_or(|s| at.is_some_and(|t| t >= s))
            && until.is_none_or(|u| at.is_some_and(|t| t <= u))
    };
    let show = |e: &Event| {
        if in_range(e) && wanted(e, &args.filter) {
            print(e, args.json);
        }
    };
    // The past: the previous generation, then the current log from its start through the same
    // follower that then waits for new lines, so every event is printed once.
    let mut follower = if since.is_some() || until.is_some() {
        events::read_previous(root.path()).iter().for_each(show);
        Follower::from_start(root.path())
    } else {
        Follower::at_end(root.path())
    };
    follower.poll().iter().for_each(show);
    if until.is_some_and(|u| u <= OffsetDateTime::now_utc()) {
        return Ok(EXIT_OK);
    }
    let interrupted = termination_flag()?;
    while !interrupted.load(Ordering::SeqCst) && until.is_none_or(|u| OffsetDateTime::now_utc() < u)
    {
        follower.poll().iter().for_each(show);
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(EXIT_OK)
}
