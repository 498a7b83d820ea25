//! A minimal blocking NATS client: the core text protocol (INFO, CONNECT, PUB/HPUB, SUB,
//! MSG/HMSG, PING/PONG, +OK/-ERR), enough for JetStream requests. Every line and payload read
//! is bounded, so a hostile or broken server gives a [`NatsError`], never a large allocation
//! or a panic.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

mod error;

pub(crate) use error::parse_url;
pub use error::NatsError;

/// Longest protocol line accepted (INFO can list cluster URLs; everything else is short).
const MAX_LINE: usize = 64 * 1024;
/// Largest message accepted from the server (NATS's default max_payload).
pub(crate) const MAX_PAYLOAD: usize = 1 << 20;

/// A message received on our inbox.
#[derive(Debug)]
pub(crate) struct Msg {
    pub subject: String,
    /// The status of a header-only reply (`NATS/1.0 404 ...`).
    pub status: Option<u16>,
    pub description: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Msg {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Op {
    Msg(Msg),
    Ping,
    Err(String),
    /// INFO updates, PONG, +OK: nothing to do.
    Other,
}

#[derive(serde::Deserialize)]
struct ServerInfo {
    #[serde(default)]
    headers: bool,
    #[serde(default)]
    max_payload: Option<u64>,
    #[serde(default)]
    tls_required: bool,
    #[serde(default)]
    auth_required: bool,
}

/// One connection with one wildcard inbox subscription for replies.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    inbox: String,
    next_id: u64,
    max_payload: usize,
}

impl Conn {
    /// Connects, checks INFO, sends CONNECT, subscribes to the inbox, and round-trips a PING.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Conn, NatsError> {
        let connect_err = |source| NatsError::Connect {
            addr: addr.to_string(),
            source,
        };
        let mut last = std::io::Error::new(ErrorKind::NotFound, "no address");
        let mut stream = None;
        for sa in addr.to_socket_addrs().map_err(connect_err)? {
            match TcpStream::connect_timeout(&sa, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let stream = stream.ok_or_else(|| connect_err(last))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        let mut seed = [0u8; 12];
        getrandom::getrandom(&mut seed)
            .map_err(|e| NatsError::Io(std::io::Error::other(e.to_string())))?;
        let mut conn = Conn {
            writer: stream.try_clone()?,
            reader: BufReader::with_capacity(64 * 1024, stream),
            inbox: format!("_INBOX.{}", hex::encode(seed)),
            next_id: 0,
            max_payload: MAX_PAYLOAD,
        };
        let deadline = Instant::now() + timeout;
        let line = conn.read_line(deadline, timeout)?;
        let info = line
            .strip_prefix("INFO ")
            .or_else(|| line.strip_prefix("info "))
            .ok_or_else(|| NatsError::Protocol(format!("expected INFO, got {:?}", clip(&line))))?;
        let info: ServerInfo = serde_json::from_str(info)
            .map_err(|e| NatsError::Protocol(format!("INFO is not JSON: {e}")))?;
        if info.tls_required {
            return Err(NatsError::Unsupported("TLS"));
        }
        if info.auth_required {
            return Err(NatsError::Unsupported("authentication"));
        }
        if !info.headers {
            return Err(NatsError::Unsupported("message headers"));
        }
        if let Some(max) = info.max_payload {
            conn.max_payload = usize::try_from(max).unwrap_or(usize::MAX).min(MAX_PAYLOAD);
        }
        let hello = serde_json::json!({
            "verbose": false, "pedantic": false, "tls_required": false, "headers": true,
            "no_responders": true, "lang": "rust", "version": env!("CARGO_PKG_VERSION"),
            "protocol": 1, "name": "enclave-attest",
        });
        let sub = format!("CONNECT {hello}\r\nSUB {}.* 1\r\nPING\r\n", conn.inbox);
        conn.writer.write_all(sub.as_bytes())?;
        loop {
            let line = conn.read_line(deadline, timeout)?;
            match line
                .split(' ')
                .next()
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                Some("PONG") => return Ok(conn),
                Some("-ERR") => return Err(NatsError::Server(err_text(&line))),
                Some("+OK" | "INFO") => {}
                Some("PING") => conn.writer.write_all(b"PONG\r\n")?,
                _ => {
                    return Err(NatsError::Protocol(format!(
                        "expected PONG, got {:?}",
                        clip(&line)
                    )))
                }
            }
        }
    }

    /// Publishes `payload` (with `headers` when non-empty) to `subject` and waits for the
    /// reply on our inbox.
    pub fn request(
        &mut self,
        subject: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Msg, NatsError> {
        self.next_id += 1;
        let reply = format!("{}.{}", self.inbox, self.next_id);
        let mut block = String::new();
        if !headers.is_empty() {
            block.push_str("NATS/1.0\r\n");
            for (k, v) in headers {
                block.push_str(&format!("{k}: {v}\r\n"));
            }
            block.push_str("\r\n");
        }
        let total = block.len() + payload.len();
        if total > self.max_payload {
            return Err(NatsError::TooLarge {
                len: total,
                max: self.max_payload,
            });
        }
        let control = if block.is_empty() {
            format!("PUB {subject} {reply} {total}\r\n")
        } else {
            format!("HPUB {subject} {reply} {} {total}\r\n{block}", block.len())
        };
        let mut frame = Vec::with_capacity(control.len() + payload.len() + 2);
        frame.extend_from_slice(control.as_bytes());
        frame.extend_from_slice(payload);
        frame.extend_from_slice(b"\r\n");
        self.writer.write_all(&frame)?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_op(deadline, timeout)? {
                Op::Msg(msg) if msg.subject == reply => {
                    if msg.status == Some(503) {
                        return Err(NatsError::NoResponders(subject.to_string()));
                    }
                    return Ok(msg);
                }
                // A late reply to an earlier request that timed out: not ours any more.
                Op::Msg(_) | Op::Other => {}
                Op::Ping => self.writer.write_all(b"PONG\r\n")?,
                Op::Err(e) => return Err(NatsError::Server(e)),
            }
        }
    }

    fn read_op(&mut self, deadline: Instant, timeout: Duration) -> Result<Op, NatsError> {
        let line = self.read_line(deadline, timeout)?;
        let mut parts = line.split_ascii_whitespace();
        let op = parts.next().unwrap_or("").to_ascii_uppercase();
        let args: Vec<&str> = parts.collect();
        let bad = |what: &str| NatsError::Protocol(format!("{what}: {:?}", clip(&line)));
        match op.as_str() {
            "MSG" | "HMSG" => {
                let with_headers = op == "HMSG";
                let sizes = if with_headers { 2 } else { 1 };
                if args.len() != 2 + sizes && args.len() != 3 + sizes {
                    return Err(bad("malformed message line"));
                }
                let num = |s: &str| s.parse::<usize>().map_err(|_| bad("bad size"));
                let total = num(args[args.len() - 1])?;
                let header_len = if with_headers {
                    num(args[args.len() - 2])?
                } else {
                    0
                };
                if total > MAX_PAYLOAD || header_len > total {
                    return Err(NatsError::Protocol(format!(
                        "message of {total} bytes (headers {header_len}) is over the {MAX_PAYLOAD}-byte limit or inconsistent"
                    )));
                }
                let mut body = vec![0u8; total + 2];
                self.read_exact(&mut body, deadline, timeout)?;
                if !body.ends_with(b"\r\n") {
                    return Err(bad("message not terminated by CRLF"));
                }
                body.truncate(total);
                let payload = body.split_off(header_len);
                let mut msg = Msg {
                    subject: args[0].to_string(),
                    status: None,
                    description: String::new(),
                    headers: Vec::new(),
                    payload,
                };
                if with_headers {
                    parse_headers(&body, &mut msg)?;
                }
                Ok(Op::Msg(msg))
            }
            "PING" => Ok(Op::Ping),
            "PONG" | "+OK" | "INFO" => Ok(Op::Other),
            "-ERR" => Ok(Op::Err(err_text(&line))),
            _ => Err(bad("unknown operation")),
        }
    }

    fn read_line(&mut self, deadline: Instant, timeout: Duration) -> Result<String, NatsError> {
        let mut line = Vec::new();
        loop {
            self.arm(deadline, timeout)?;
            let buf = match self.reader.fill_buf() {
                Ok([]) => return Err(closed()),
                Ok(buf) => buf,
                Err(e) => return Err(io_or_timeout(e, timeout)),
            };
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if line.len() + take > MAX_LINE {
                return Err(NatsError::Protocol(format!(
                    "protocol line longer than {MAX_LINE} bytes"
                )));
            }
            line.extend_from_slice(&buf[..take]);
            self.reader.consume(take);
            if done {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return String::from_utf8(line)
                    .map_err(|_| NatsError::Protocol("protocol line is not UTF-8".into()));
            }
        }
    }

    fn read_exact(
        &mut self,
        mut buf: &mut [u8],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), NatsError> {
        while !buf.is_empty() {
            self.arm(deadline, timeout)?;
            match self.reader.read(buf) {
                Ok(0) => return Err(closed()),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_or_timeout(e, timeout)),
            }
        }
        Ok(())
    }

    /// Sets the socket's read timeout to what is left before `deadline`.
    fn arm(&mut self, deadline: Instant, timeout: Duration) -> Result<(), NatsError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NatsError::Timeout(timeout));
        }
        self.reader.get_ref().set_read_timeout(Some(left))?;
        Ok(())
    }
}

fn parse_headers(block: &[u8], msg: &mut Msg) -> Result<(), NatsError> {
    let text = std::str::from_utf8(block)
        .map_err(|_| NatsError::Protocol("message headers are not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let status = first
        .strip_prefix("NATS/1.0")
        .ok_or_else(|| NatsError::Protocol(format!("bad header version {:?}", clip(first))))?
        .trim();
    if !status.is_empty() {
        let (code, description) = status.split_once(' ').unwrap_or((status, ""));
        msg.status = Some(
            code.parse()
                .map_err(|_| NatsError::Protocol(format!("bad status {:?}", clip(code))))?,
        );
        msg.description = description.trim().to_string();
    }
    for line in lines.filter(|l| !l.is_empty()) {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| NatsError::Protocol(format!("bad header line {:?}", clip(line))))?;
        msg.headers
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(())
}

fn err_text(line: &str) -> String {
    let text = line.get(4..).unwrap_or("").trim().trim_matches('\'');
    clip(text).to_string()
}

/// At most 200 bytes of untrusted text for messages and logs.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn closed() -> NatsError {
    NatsError::Io(std::io::Error::new(
        ErrorKind::UnexpectedEof,
        "server closed the connection",
    ))
}

fn io_or_timeout(e: std::io::Error, timeout: Duration) -> NatsError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => NatsError::Timeout(timeout),
        _ => NatsError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks() {
        let mut msg = Msg {
            subject: String::new(),
            status: None,
            description: String::new(),
            headers: Vec::new(),
            payload: Vec::new(),
        };
        parse_headers(
            b"NATS/1.0 404 Message Not Found\r\nKV-Operation: DEL\r\n\r\n",
            &mut msg,
        )
        .unwrap();
        assert_eq!(msg.status, Some(404));
        assert_eq!(msg.description, "Message Not Found");
        assert_eq!(msg.header("kv-operation"), Some("DEL"));
        assert!(parse_headers(b"HTTP/1.1 200\r\n\r\n", &mut msg).is_err());
        assert!(parse_headers(b"NATS/1.0 abc\r\n\r\n", &mut msg).is_err());
    }
}
