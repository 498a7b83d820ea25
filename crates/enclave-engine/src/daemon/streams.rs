//! The API's streamed answers: an enclave's logs (JSON lines, `follow` until its supervisor
//! ends) and the event log (server-sent events). Each follows its files on a blocking thread
//! that stops when the client goes (a send fails).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use hyper::Response;
use time::OffsetDateTime;

use super::http::{param, parse_time, ApiError, Reply};
use super::ApiBody;
use crate::events::{self, Event, EventKind, Follower};
use crate::logs::LogEntry;
use crate::state::StateRoot;
use crate::util::parse_rfc3339;

/// `GET /v1/enclaves/{e}/logs?tail=&since=&follow=`: one `{time, source, text}` a line (kernel
/// lines left out); with `follow=true`, new lines as they come until the supervisor ends.
pub fn logs(root: &StateRoot, r: &str, q: &BTreeMap<String, String>) -> Result<Reply, ApiError> {
    let rec = root.resolve(r)?;
    let tail = param::<usize>(q, "tail")?;
    let follow = param::<bool>(q, "follow")?.unwrap_or(false);
    let since = q.get("since").map(|s| parse_time("since", s)).transpose()?;
    let keep = move |e: &LogEntry| {
        e.source != "kernel" && since.is_none_or(|s| parse_rfc3339(&e.time).is_none_or(|t| t >= s))
    };
    let dir = root.dir(&rec.id).join("logs");
    // The follower starts where the past ends: no line is lost or repeated between.
    let (entries, mut follower) = crate::logs::read_all_then_follow(&dir);
    let entries: Vec<LogEntry> = entries.into_iter().filter(|e| keep(e)).collect();
    let start = tail.map_or(0, |n| entries.len().saturating_sub(n));
    let line = |e: &LogEntry| {
        let mut text = serde_json::to_string(e).unwrap_or_default();
        text.push('\n');
        Bytes::from(text)
    };
    let past: Vec<Bytes> = entries[start..].iter().map(line).collect();
    let body = if follow {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let (root, id) = (root.clone(), rec.id.clone());
        tokio::task::spawn_blocking(move || {
            for chunk in past {
                if tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
            loop {
                let alive = root.supervisor_alive(&id);
                for e in follower.poll().iter().filter(|e| keep(e)) {
                    if tx.blocking_send(line(e)).is_err() {
                        return;
                    }
                }
                if !alive {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        ApiBody::Stream(rx)
    } else {
        ApiBody::full(past.concat())
    };
    Ok(Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(body)
        .unwrap_or_else(|_| Response::new(ApiBody::full(""))))
}

/// `GET /v1/events?since=&until=&type=&enclave=`: server-sent events, past ones from `since`,
/// then new ones as they come (until `until`).
pub fn events(root: &StateRoot, q: &BTreeMap<String, String>) -> Result<Reply, ApiError> {
    let since = q.get("since").map(|s| parse_time("since", s)).transpose()?;
    let until = q.get("until").map(|s| parse_time("until", s)).transpose()?;
    let kind = param::<EventKind>(q, "type")?;
    let enclave = q.get("enclave").cloned();
    let keep = move |e: &Event| {
        let at = e.at();
        since.is_none_or(|s| at.is_some_and(|t| t >= s))
            && until.is_none_or(|u| at.is_some_and(|t| t <= u))
            && kind.is_none_or(|k| e.kind == k)
            && enclave.as_ref().is_none_or(|v| e.concerns(v))
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let dir = root.path().to_owned();
    // Follows the log on a blocking thread until the client goes (a send fails) or `until`.
    tokio::task::spawn_blocking(move || {
        let send = |e: &Event| {
            let line = format!(
                "event: {}\ndata: {}\n\n",
                e.kind.name(),
                serde_json::to_string(e).unwrap_or_default()
            );
            tx.blocking_send(Bytes::from(line)).is_ok()
        };
        let mut follower = if since.is_some() || until.is_some() {
            for e in events::read_previous(&dir).iter().filter(|e| keep(e)) {
                if !send(e) {
                    return;
                }
            }
            Follower::from_start(&dir)
        } else {
            Follower::at_end(&dir)
        };
        let mut quiet = 0u32;
        loop {
            for e in follower.poll().iter().filter(|e| keep(e)) {
                if !send(e) {
                    return;
                }
            }
            if until.is_some_and(|u| OffsetDateTime::now_utc() >= u) {
                return;
            }
            // A comment every 5 s: a client that went away is noticed.
            quiet += 1;
            if quiet >= 25 {
                quiet = 0;
                if tx
                    .blocking_send(Bytes::from_static(b": keep-alive\n\n"))
                    .is_err()
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    Ok(Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(ApiBody::Stream(rx))
        .unwrap_or_else(|_| Response::new(ApiBody::full(""))))
}
