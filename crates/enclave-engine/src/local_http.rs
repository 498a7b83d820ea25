//! The supervisor's small HTTP listeners (`run --health-listen`, `run --metrics-listen`): GET
//! only, one connection at a time (probes and scrapers are few), the request line read with a
//! size and time bound, the answer written and the connection closed. Off unless the operator
//! asks for an address.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::error::{EngineError, Result};

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status line's code and reason, e.g. `200 OK`.
    pub status: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    /// A `text/plain` answer.
    pub fn text(status: &'static str, body: String) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// Serves `answer(path)` for each `GET path` on `addr` (anything else: 405), on a thread that
/// lives as long as the process. `flag` names the option in errors. Returns the bound address.
pub fn serve(
    addr: SocketAddr,
    flag: &'static str,
    answer: impl Fn(&str) -> Response + Send + 'static,
) -> Result<SocketAddr> {
    let err = |e: std::io::Error| EngineError::Backend(format!("{flag} {addr}: {e}"));
    let listener = TcpListener::bind(addr).map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    std::thread::Builder::new()
        .name(flag.trim_start_matches('-').into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                respond(stream, &answer);
            }
        })
        .map_err(|e| EngineError::Backend(format!("starting the {flag} listener: {e}")))?;
    Ok(bound)
}

/// Reads the request head (at most 1 KiB, 2 s) and answers it.
fn respond(mut stream: TcpStream, answer: &impl Fn(&str) -> Response) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 1024];
    let mut got = 0;
    while got < buf.len() && !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    let mut words = head.split_whitespace();
    let r = match (words.next(), words.next()) {
        (Some("GET"), Some(target)) => {
            // A scraper may add a query string; no path here takes one.
            answer(target.split('?').next().unwrap_or(target))
        }
        _ => Response::text("405 Method Not Allowed", "GET only\n".into()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        r.status,
        r.content_type,
        r.body.len(),
        r.body
    );
}
