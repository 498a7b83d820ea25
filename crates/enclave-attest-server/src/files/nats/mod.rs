//! A minimal blocking NATS client: the core text protocol (INFO, CONNECT, PUB/HPUB, SUB,
//! MSG/HMSG, PING/PONG, +OK/-ERR), enough for JetStream requests, over plain TCP or TLS
//! ([`NatsTls`]) with a token, user and password, NKey or user JWT ([`NatsAuth`]). Every line and
//! payload read is bounded, so a hostile or broken server gives a [`NatsError`], never a large
//! allocation or a panic; the decoders are in `proto` (fuzzed).
//!
//! TLS starts the NATS way: the server's INFO arrives in plain text, then the client starts
//! the handshake (before CONNECT, which carries the credentials). Whoever relays the connection
//! can change that INFO, so nothing in it is trusted: configured TLS is never skipped (an INFO
//! that does not offer it is refused, [`NatsError::TlsNotOffered`]), and the nonce an NKey signs
//! only matters to the server that sent it, inside the TLS session.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

mod auth;
mod error;
mod options;
mod proto;
mod tls;

pub use auth::{NKey, NKeyRole, NatsAuth};
pub use error::NatsError;
pub use options::NatsOptions;
pub(crate) use proto::Msg;
pub use tls::NatsTls;

use proto::{clip, parse_headers, parse_info, parse_op, OpLine, MAX_PAYLOAD};

/// Longest protocol line accepted (INFO can list cluster URLs; everything else is short).
const MAX_LINE: usize = 64 * 1024;

/// The byte stream under the protocol.
enum Transport {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(tcp) => tcp,
            Transport::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.read(buf),
            Transport::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(tcp) => tcp.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(tcp) => tcp.flush(),
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

/// One connection with one wildcard inbox subscription for replies.
pub(crate) struct Conn {
    stream: BufReader<Transport>,
    inbox: String,
    next_id: u64,
    max_payload: usize,
}

impl Conn {
    /// Connects, reads INFO, starts TLS when configured, sends CONNECT (with the credentials),
    /// subscribes to the inbox, and round-trips a PING.
    pub fn connect(options: &NatsOptions, timeout: Duration) -> Result<Conn, NatsError> {
        if options.auth.is_some() && options.tls.is_none() {
            return Err(NatsError::CredentialsWithoutTls);
        }
        let addr = &options.url.addr;
        let connect_err = |source| NatsError::Connect {
            addr: addr.to_string(),
            source,
        };
        let mut last = std::io::Error::new(ErrorKind::NotFound, "no address");
        let mut tcp = None;
        for sa in addr.to_socket_addrs().map_err(connect_err)? {
            match TcpStream::connect_timeout(&sa, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let tcp = tcp.ok_or_else(|| connect_err(last))?;
        tcp.set_nodelay(true)?;
        tcp.set_write_timeout(Some(timeout))?;
        let mut seed = [0u8; 12];
        getrandom::getrandom(&mut seed)
            .map_err(|e| NatsError::Io(std::io::Error::other(e.to_string())))?;
        let mut conn = Conn {
            stream: BufReader::with_capacity(64 * 1024, Transport::Plain(tcp)),
            inbox: format!("_INBOX.{}", hex::encode(seed)),
            next_id: 0,
            max_payload: MAX_PAYLOAD,
        };
        let deadline = Instant::now() + timeout;
        let info = parse_info(&conn.read_line(deadline, timeout)?)?;
        match (&options.tls, info.tls_required || info.tls_available) {
            (Some(tls), true) => conn = conn.start_tls(tls, deadline, timeout)?,
            (Some(_), false) => return Err(NatsError::TlsNotOffered),
            (None, _) if info.tls_required => return Err(NatsError::TlsRequired),
            (None, _) => {}
        }
        if info.auth_required && options.auth.is_none() {
            return Err(NatsError::AuthRequired);
        }
        if !info.headers {
            return Err(NatsError::Unsupported("message headers"));
        }
        if let Some(max) = info.max_payload {
            conn.max_payload = usize::try_from(max).unwrap_or(usize::MAX).min(MAX_PAYLOAD);
        }
        let mut hello = serde_json::json!({
            "verbose": false, "pedantic": false, "tls_required": options.tls.is_some(),
            "headers": true, "no_responders": true, "lang": "rust",
            "version": env!("CARGO_PKG_VERSION"), "protocol": 1, "name": "enclave-attest",
        });
        if let (Some(auth), Some(map)) = (&options.auth, hello.as_object_mut()) {
            map.extend(auth.connect_fields(info.nonce.as_deref())?);
        }
        let sub = format!("CONNECT {hello}\r\nSUB {}.* 1\r\nPING\r\n", conn.inbox);
        conn.send(sub.as_bytes())?;
        loop {
            match conn.read_op(deadline, timeout)? {
                Op::Pong => return Ok(conn),
                Op::Err(e) if is_auth_error(&e) => return Err(NatsError::AuthRejected(e)),
                Op::Err(e) => return Err(NatsError::Server(e)),
                Op::Ping => conn.send(b"PONG\r\n")?,
                Op::Other => {}
                Op::Msg(_) => {
                    return Err(NatsError::Protocol(
                        "a message before the connection was set up".into(),
                    ))
                }
            }
        }
    }

    /// The TLS handshake, right after INFO (the server sends nothing more until it is done).
    fn start_tls(
        self,
        tls: &NatsTls,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Conn, NatsError> {
        if !self.stream.buffer().is_empty() {
            return Err(NatsError::Protocol(
                "the server sent more after INFO, before the TLS handshake".into(),
            ));
        }
        let Transport::Plain(mut tcp) = self.stream.into_inner() else {
            return Err(NatsError::Protocol("TLS started twice".into()));
        };
        let mut session = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(NatsError::Tls)?;
        while session.is_handshaking() {
            arm(&tcp, deadline, timeout)?;
            session
                .complete_io(&mut tcp)
                .map_err(|e| io_or_timeout(e, timeout))?;
        }
        Ok(Conn {
            stream: BufReader::with_capacity(
                64 * 1024,
                Transport::Tls(Box::new(StreamOwned::new(session, tcp))),
            ),
            inbox: self.inbox,
            next_id: self.next_id,
            max_payload: self.max_payload,
        })
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
        self.send(&frame)?;
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
                Op::Msg(_) | Op::Other | Op::Pong => {}
                Op::Ping => self.send(b"PONG\r\n")?,
                Op::Err(e) => return Err(NatsError::Server(e)),
            }
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), NatsError> {
        let transport = self.stream.get_mut();
        transport
            .write_all(bytes)
            .and_then(|()| transport.flush())
            .map_err(NatsError::from_io)
    }

    fn read_op(&mut self, deadline: Instant, timeout: Duration) -> Result<Op, NatsError> {
        let line = self.read_line(deadline, timeout)?;
        match parse_op(&line)? {
            OpLine::Msg {
                subject,
                header_len,
                total,
            } => {
                let mut body = vec![0u8; total + 2];
                self.read_exact(&mut body, deadline, timeout)?;
                if !body.ends_with(b"\r\n") {
                    return Err(NatsError::Protocol(format!(
                        "message not terminated by CRLF: {:?}",
                        clip(&line)
                    )));
                }
                body.truncate(total);
                let payload = body.split_off(header_len);
                let mut msg = Msg {
                    subject,
                    status: None,
                    description: String::new(),
                    headers: Vec::new(),
                    payload,
                };
                if header_len > 0 {
                    parse_headers(&body, &mut msg)?;
                }
                Ok(Op::Msg(msg))
            }
            OpLine::Ping => Ok(Op::Ping),
            OpLine::Pong => Ok(Op::Pong),
            OpLine::Err(e) => Ok(Op::Err(e)),
            OpLine::Other => Ok(Op::Other),
        }
    }

    fn read_line(&mut self, deadline: Instant, timeout: Duration) -> Result<String, NatsError> {
        let mut line = Vec::new();
        loop {
            arm(self.stream.get_ref().tcp(), deadline, timeout)?;
            let buf = match self.stream.fill_buf() {
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
            self.stream.consume(take);
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
            arm(self.stream.get_ref().tcp(), deadline, timeout)?;
            match self.stream.read(buf) {
                Ok(0) => return Err(closed()),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_or_timeout(e, timeout)),
            }
        }
        Ok(())
    }
}

/// The fuzz target's body ([`crate::files::fuzzing::nats_server_bytes`]): server bytes
/// through every decoder, line by line as `Conn` splits them.
pub(crate) fn fuzz_server_bytes(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        if text.len() > MAX_LINE {
            continue;
        }
        let _ = parse_info(text);
        if let Ok(OpLine::Msg {
            header_len, total, ..
        }) = parse_op(text)
        {
            assert!(header_len <= total && total <= MAX_PAYLOAD);
        }
    }
    let mut msg = Msg {
        subject: String::new(),
        status: None,
        description: String::new(),
        headers: Vec::new(),
        payload: Vec::new(),
    };
    let _ = parse_headers(data, &mut msg);
}

enum Op {
    Msg(Msg),
    Ping,
    Pong,
    Err(String),
    /// INFO updates, +OK: nothing to do.
    Other,
}

/// Sets the socket's read timeout to what is left before `deadline`.
fn arm(tcp: &TcpStream, deadline: Instant, timeout: Duration) -> Result<(), NatsError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(NatsError::Timeout(timeout));
    }
    tcp.set_read_timeout(Some(left))?;
    Ok(())
}

/// The server's words for refused credentials (nats-server's `-ERR` texts).
fn is_auth_error(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("authorization violation") || lower.contains("authentication")
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
        _ => NatsError::from_io(e),
    }
}
