//! Loopback helpers of the system tests: a free port, a plain HTTP GET, polling for a state.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: the whole response, or what went wrong ("no connection" when
/// nothing listens). Never panics: callers poll it while a server comes up.
pub fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return "no connection".into();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    // Before the enclave listens, a proxy accepts and then drops the connection.
    if let Err(e) = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n") {
        return format!("write failed: {e}");
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Polls `f` every 250 ms until it returns `None` (the state waited for); after `limit`, panics
/// naming `what`, the last state `f` returned, and `context()` (a log, for instance).
pub fn until(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut f: impl FnMut() -> Option<String>,
) {
    let deadline = Instant::now() + limit;
    let mut last = None;
    while Instant::now() < deadline {
        match f() {
            None => return,
            Some(state) => last = Some(state),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what} not reached; last: {last:?}\n{}", context());
}
