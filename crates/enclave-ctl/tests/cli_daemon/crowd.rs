//! 100 clients listing and inspecting, one request after another, while the enclave `d` is
//! stopped, started again, stopped and removed: every answer a 200 with the record (or the
//! list), or a 404 once it is gone; never an error, a torn record or a hang.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Client;

/// `GET path` on the socket over one plain HTTP/1.1 connection (no process per request, so
/// that 100 clients can keep asking); (status, body).
fn raw_get(socket: &Path, path: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).expect("the daemon's socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    (code, body.to_owned())
}

/// Runs the crowd through the enclave's last stop and its removal.
pub fn every_answer_whole_while_the_enclave_stops_starts_and_goes(c: &Client) {
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..100)
        .map(|i| {
            let (socket, done) = (c.socket.clone(), done.clone());
            std::thread::spawn(move || {
                let path = if i % 2 == 0 {
                    "/v1/enclaves"
                } else {
                    "/v1/enclaves/d"
                };
                let mut answers = Vec::new();
                loop {
                    let last = done.load(Ordering::SeqCst);
                    answers.push(raw_get(&socket, path));
                    if last {
                        return answers;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    for (op, route) in [
        ("stop?timeout=5", "/v1/enclaves/{enclave}/stop"),
        ("start", "/v1/enclaves/{enclave}/start"),
        ("stop?timeout=5", "/v1/enclaves/{enclave}/stop"),
    ] {
        let (code, answer) = c.json("POST", &format!("/v1/enclaves/d/{op}"), route, None);
        assert_eq!(code, 200, "{op}: {answer}");
    }
    let (code, _) = c.call("DELETE", "/v1/enclaves/d", "/v1/enclaves/{enclave}", None);
    assert_eq!(code, 204);
    done.store(true, Ordering::SeqCst);
    let mut inspected = BTreeSet::new();
    for (i, t) in clients.into_iter().enumerate() {
        let answers = t.join().unwrap();
        assert!(
            answers.len() >= 2,
            "client {i} made {} requests",
            answers.len()
        );
        for (code, body) in answers {
            let body: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("client {i}: {code} {body:?}: {e}"));
            match code {
                200 if i % 2 == 0 => assert!(body.is_array(), "{body}"),
                200 => {
                    let state: enclave_engine::state::Status =
                        serde_json::from_value(body["status"].clone())
                            .unwrap_or_else(|e| panic!("{body}: {e}"));
                    inspected.insert(state.to_string());
                }
                404 => assert_eq!(body["code"], "no_such_enclave", "{body}"),
                _ => panic!("client {i} got {code}: {body}"),
            }
        }
    }
    // The clients saw it run and end (each state is held for seconds under TCG).
    assert!(
        inspected.contains("running") && inspected.contains("exited"),
        "{inspected:?}"
    );
}
