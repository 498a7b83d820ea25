//! What every forwarder does with a connection: read a request header (ingress), or ask the
//! host's egress proxy for a destination and wait for its answer (egress); and the rate limit
//! on the warnings refused connections log.

use std::io;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;

use super::HostAddr;
use crate::header::{HeaderError, Request, Status, MAX_REQUEST_LEN};
use crate::stream::{AsyncVsock, ProxyStream};

/// How long a connecting host has to send its whole request header (it sends it at once).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the host egress proxy may take to answer: it resolves and connects before it does,
/// so this is generous; it only stops a connection from waiting forever on a stuck host.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);

/// Why no request was read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("the peer closed before sending a complete request")]
    Eof,
    #[error("no complete request within {HEADER_TIMEOUT:?}")]
    Timeout,
    #[error("the request does not fit the longest request")]
    TooLong,
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("reading the request: {0}")]
    Io(#[from] io::Error),
}

impl RequestError {
    /// The status to answer with; `None` when nobody is left to read it.
    pub(crate) fn status(&self) -> Option<Status> {
        match self {
            RequestError::Header(e) => Some(Status::for_error(e)),
            RequestError::Timeout | RequestError::TooLong => Some(Status::Malformed),
            RequestError::Eof | RequestError::Io(_) => None,
        }
    }
}

/// Reads one request, within [`HEADER_TIMEOUT`]. Bytes read past the header (a client that did
/// not wait for the status) come back too, to be sent on before relaying.
pub(crate) async fn read_request(s: &ProxyStream) -> Result<(Request, Vec<u8>), RequestError> {
    let read = async {
        let mut buf = [0u8; MAX_REQUEST_LEN];
        let mut filled = 0;
        loop {
            let have = buf.get(..filled).unwrap_or_default();
            if let Some((req, len)) = Request::decode(have)? {
                return Ok((req, have.get(len..).unwrap_or_default().to_vec()));
            }
            let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) else {
                return Err(RequestError::TooLong);
            };
            match s.read(rest).await? {
                0 => return Err(RequestError::Eof),
                n => filled += n,
            }
        }
    };
    tokio::time::timeout(HEADER_TIMEOUT, read)
        .await
        .map_err(|_| RequestError::Timeout)?
}

/// Why the host did not connect a forwarded connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostError {
    #[error("cannot reach the host egress proxy: {0}")]
    Connect(io::Error),
    #[error("talking to the host egress proxy: {0}")]
    Io(#[from] io::Error),
    #[error("the host egress proxy did not answer within {STATUS_TIMEOUT:?}")]
    Timeout,
    #[error("the host egress proxy closed without answering")]
    Eof,
    #[error("the host egress proxy answered: {0}")]
    Refused(Status),
    #[error("the host egress proxy answered garbage: {0}")]
    BadStatus(HeaderError),
}

/// Connects to the host egress proxy, sends `req` and waits for its status: the stream to relay
/// on when it connected.
pub(crate) async fn ask_host(host: &HostAddr, req: &Request) -> Result<ProxyStream, HostError> {
    let stream = match host {
        HostAddr::Vsock { cid, port } => AsyncVsock::connect(*cid, *port)
            .await
            .map(ProxyStream::Vsock),
        HostAddr::Unix(path) => UnixStream::connect(path).await.map(ProxyStream::Unix),
    }
    .map_err(HostError::Connect)?;
    stream.write_all(&req.to_bytes()).await?;
    // One byte exactly: what follows is the destination's data (a server may speak first).
    let mut status = [0u8; 1];
    let n = tokio::time::timeout(STATUS_TIMEOUT, stream.read(&mut status))
        .await
        .map_err(|_| HostError::Timeout)??;
    if n == 0 {
        return Err(HostError::Eof);
    }
    match Status::from_byte(status[0]).map_err(HostError::BadStatus)? {
        Status::Connected => Ok(stream),
        refused => Err(HostError::Refused(refused)),
    }
}

/// Lets through at most `max` log lines per `window`, and reports how many were dropped with
/// the next line let through: a program retrying a refused destination in a loop must not flood
/// the console (which is also the enclave's log).
#[derive(Debug)]
pub(crate) struct LogLimiter {
    window: Duration,
    max: u32,
    started: Option<Instant>,
    logged: u32,
    suppressed: u32,
}

impl LogLimiter {
    pub(crate) fn new(max: u32, window: Duration) -> Self {
        LogLimiter {
            window,
            max,
            started: None,
            logged: 0,
            suppressed: 0,
        }
    }

    /// `Some(dropped since the last line)` when a line may be logged now, `None` when not.
    pub(crate) fn check(&mut self, now: Instant) -> Option<u32> {
        let expired = self
            .started
            .is_none_or(|s| now.saturating_duration_since(s) >= self.window);
        if expired {
            self.started = Some(now);
            self.logged = 0;
        }
        if self.logged >= self.max {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.logged += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// ", N similar lines suppressed" when lines were dropped, for appending to a log line.
pub(crate) fn suppressed_note(dropped: u32) -> String {
    if dropped == 0 {
        String::new()
    } else {
        format!(" ({dropped} similar lines suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_lets_max_per_window_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(2, Duration::from_secs(10));
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.check(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.check(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.check(t0 + Duration::from_secs(11)), Some(0));
        assert_eq!(suppressed_note(0), "");
        assert_eq!(suppressed_note(2), " (2 similar lines suppressed)");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_are_read_with_what_follows() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (ProxyStream::Unix(a), ProxyStream::Unix(b));
        let mut bytes = Request::Ingress { port: 80 }.to_bytes();
        bytes.extend_from_slice(b"GET /");
        a.write_all(&bytes).await.unwrap();
        let (req, rest) = read_request(&b).await.unwrap();
        assert_eq!(req, Request::Ingress { port: 80 });
        assert_eq!(rest, b"GET /");

        a.write_all(&[1, 1]).await.unwrap();
        a.shutdown_write().unwrap();
        assert!(matches!(read_request(&b).await, Err(RequestError::Eof)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bad_requests_map_to_a_status() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (ProxyStream::Unix(a), ProxyStream::Unix(b));
        a.write_all(&[7, 1, 0, 80]).await.unwrap();
        let err = read_request(&b).await.unwrap_err();
        assert_eq!(err.status(), Some(Status::UnsupportedVersion));
        assert_eq!(RequestError::Timeout.status(), Some(Status::Malformed));
        assert_eq!(RequestError::Eof.status(), None);
    }
}
