//! The blocking client of the control protocol (used by `enclave-ctl` and by `initctl` inside
//! the enclave).
//!
//! [`Client::connect`] connects with retries ([`crate::transport::connect_with_retry`]), says
//! hello, answers the authentication challenge when the enclave asks for one, and then runs one
//! operation at a time: [`Client::ping`], [`Client::info`], [`Client::service`],
//! [`Client::logs`], [`Client::shutdown`], [`Client::exec`] / [`Client::exec_detached`],
//! [`Client::cp_to`] / [`Client::cp_from`]. Every message goes through a
//! [`ClientSession`], so a misbehaving server is an error, never a hang or a panic.
//!
//! Threads: the calling thread reads the connection; an exec with stdin adds one thread that
//! reads the local input and sends it within the flow-control credit. Sending is serialised
//! by a lock held together with the session's, so messages leave in the order the session saw.

mod cp;
mod exec;
pub mod key;

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

pub use cp::CpStats;
pub use exec::{ExecHandle, ExecIo};

use crate::transport::{connect_with_retry, Addr, Connection, TransportError};
use crate::wire::auth::SigningKey;
use crate::wire::secure::{SecureReader, SecureWriter};
use crate::wire::session::ClientConfig;
use crate::wire::{
    encode_frame, encode_frame_head, Capability, Channel, ClientMessage, ClientSession, ErrorCode,
    FrameReader, FrameWriter, MessageError, Reply, Request, RequestId, Security, ServerHello,
    ServerMessage, ServiceRequest, SessionError, Verdict, MAX_FRAME_LEN,
};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be made.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Reading or writing the connection failed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// A frame or message could not be read or written.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The server broke the protocol or refused the session.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The server ended the request with an error.
    #[error("{message}")]
    Remote {
        /// The server's code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The server closed the connection before the request ended.
    #[error("the enclave closed the connection")]
    Closed,
    /// Local files of a `cp`.
    #[error(transparent)]
    Tree(#[from] crate::tree::TreeError),
}

impl ClientError {
    /// The server's error code, when the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote { code, .. } => Some(*code),
            ClientError::Session(SessionError::Remote { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Capabilities to ask for (only what the command needs).
    pub capabilities: Vec<Capability>,
    /// Key to authenticate with after the handshake (the supervisor's, or one of the spec's
    /// `debug.authorized_keys`); without one only `ping` and `info` are answered.
    pub key: Option<SigningKey>,
    /// Client name for the server's logs.
    pub client: String,
    /// How long to retry connecting while the enclave boots.
    pub retry: Duration,
    /// The in-enclave socket, or the host-facing channel and the enclave identity expected.
    pub security: Security,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            capabilities: Vec::new(),
            key: None,
            client: format!("enclave-proto {}", env!("CARGO_PKG_VERSION")),
            retry: Duration::from_secs(10),
            security: Security::Local,
        }
    }
}

/// The receiving half of a connection: the socket, or the decrypting record reader on it.
type ReadHalf = FrameReader<Connection>;
/// The sending half, flushed after every message.
type WriteHalf = FrameWriter<Connection>;

/// The sending half, shared with helper threads.
pub(crate) struct Shared {
    session: Mutex<ClientSession>,
    /// Signalled when a window update or the end of a request arrives.
    changed: Condvar,
    /// The sending half and the buffer frame heads are encoded into (one for the connection).
    writer: Mutex<(WriteHalf, Vec<u8>)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ClientSession> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks and sends a message.
    pub(crate) fn send(&self, msg: &ClientMessage) -> Result<(), ClientError> {
        let mut session = self.lock();
        session.check_send(msg)?;
        self.write(msg)
    }

    fn write(&self, msg: &ClientMessage) -> Result<(), ClientError> {
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (w, head) = &mut *guard;
        match encode_frame_head(msg, head)? {
            Some(data) => w.write_frame_parts(&[head, data])?,
            None => w.write_frame(head)?,
        }
        w.flush()?;
        Ok(())
    }

    /// Checks and sends the `Data` message of `len` bytes laid out in `frame`
    /// ([`crate::wire::lay_out_data`]): sealed where it lies, its bytes never copied.
    pub(crate) fn send_laid_out(
        &self,
        id: RequestId,
        channel: Channel,
        len: usize,
        frame: &mut [u8],
    ) -> Result<(), ClientError> {
        let mut session = self.lock();
        session.check_send_data(id, channel, len)?;
        let mut guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let w = &mut guard.0;
        w.write_frames_in_place(&mut [frame])?;
        w.flush()?;
        Ok(())
    }

    /// Waits until the client may send data on `id`; `None` once the request has ended.
    pub(crate) fn wait_credit(&self, id: RequestId) -> Option<u32> {
        let mut session = self.lock();
        loop {
            match session.send_credit(id) {
                Some(0) => {}
                other => return other,
            }
            session = self
                .changed
                .wait_timeout(session, Duration::from_millis(500))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// A connected, ready control session.
pub struct Client {
    reader: ReadHalf,
    shared: Arc<Shared>,
    hello: ServerHello,
}

/// Reads one message during the set-up, through the session.
fn setup_recv(
    session: &mut ClientSession,
    reader: &mut ReadHalf,
) -> Result<Verdict<ClientMessage>, ClientError> {
    let frame = reader
        .read_frame(MAX_FRAME_LEN)
        .map_err(MessageError::from)?
        .ok_or(ClientError::Closed)?;
    Ok(session.on_recv_bytes(&frame)?.1)
}

impl Client {
    /// Connects to `addr` (retrying while nothing answers) and completes the handshake.
    pub fn connect(addr: &Addr, opts: &ConnectOptions) -> Result<Self, ClientError> {
        let conn = connect_with_retry(addr, opts.retry)?;
        Self::handshake(conn, opts)
    }

    /// Completes the set-up on an established connection: the hellos; on the host-facing
    /// channel the Noise handshake (checking the enclave's identity), then the key's proof.
    pub fn handshake(conn: Connection, opts: &ConnectOptions) -> Result<Self, ClientError> {
        let mut session = ClientSession::new(ClientConfig {
            capabilities: opts.capabilities.clone(),
            client: opts.client.clone(),
            key: opts.key.clone(),
            security: opts.security.clone(),
        });
        let mut reader: ReadHalf = FrameReader::Clear(conn.try_clone()?);
        let mut writer: WriteHalf = FrameWriter::clear(conn.try_clone()?);
        let hello = session.hello()?;
        writer.write_frame(&encode_frame(&hello)?)?;
        writer.flush()?;
        loop {
            match setup_recv(&mut session, &mut reader)? {
                Verdict::Respond(answer) => {
                    writer.write_frame(&encode_frame(&answer)?)?;
                    writer.flush()?;
                }
                Verdict::Deliver | Verdict::Discard => {}
            }
            if let Some(transport) = session.take_transport() {
                // A client of the host-facing channel may copy files in: best effort, a
                // smaller buffer is only slower.
                let _ = conn.set_bulk_send_buffer();
                // The handshake's last message was the last in clear.
                reader =
                    FrameReader::Secure(SecureReader::new(conn.try_clone()?, transport.state()));
                writer =
                    FrameWriter::Secure(SecureWriter::new(conn.try_clone()?, transport.state()));
                if let Some(auth) = session.auth()? {
                    writer.write_frame(&encode_frame(&auth)?)?;
                    writer.flush()?;
                }
            }
            if session.is_ready() {
                break;
            }
        }
        let hello = session
            .server_hello()
            .cloned()
            .ok_or(SessionError::NotReady)?;
        let shared = Arc::new(Shared {
            changed: Condvar::new(),
            writer: Mutex::new((writer, Vec::new())),
            session: Mutex::new(session),
        });
        Ok(Self {
            reader,
            shared,
            hello,
        })
    }

    /// The capabilities the enclave granted this session.
    pub fn granted(&self) -> Vec<Capability> {
        self.shared.lock().granted().to_vec()
    }

    /// Whether this session proved a key (otherwise only `ping` and `info` are answered).
    pub fn is_authenticated(&self) -> bool {
        self.shared.lock().is_authenticated()
    }

    /// The enclave's control identity key the handshake proved (host-facing sessions).
    pub fn server_key(&self) -> Option<[u8; 32]> {
        self.shared.lock().server_key().copied()
    }

    /// The server's hello: version, enclave facts, the handshake offered.
    pub fn server_hello(&self) -> &ServerHello {
        &self.hello
    }

    /// Reads the next message for the application.
    pub(crate) fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        loop {
            let frame = self
                .reader
                .read_frame(MAX_FRAME_LEN)
                .map_err(MessageError::from)?
                .ok_or(ClientError::Closed)?;
            let (msg, verdict) = {
                let mut session = self.shared.lock();
                let v = session.on_recv_bytes(&frame);
                // Waiters want send credit or a request's end; content brings neither (and a
                // wake is a system call, with or without waiters, on every chunk of a copy).
                if !matches!(v, Ok((ServerMessage::Data { .. }, _))) {
                    self.shared.changed.notify_all();
                }
                v?
            };
            match verdict {
                Verdict::Deliver => return Ok(msg),
                Verdict::Discard => {}
                Verdict::Respond(answer) => self.shared.write(&answer)?,
            }
        }
    }

    pub(crate) fn send(&self, msg: &ClientMessage) -> Result<(), ClientError> {
        self.shared.send(msg)
    }

    /// Sends a request and returns its id.
    pub(crate) fn start(&mut self, request: Request) -> Result<RequestId, ClientError> {
        let mut session = self.shared.lock();
        let (id, msg) = session.request(request)?;
        self.shared.write(&msg)?;
        Ok(id)
    }

    /// Sends a simple request and waits for its reply.
    pub fn call(&mut self, request: Request) -> Result<Reply, ClientError> {
        let id = self.start(request)?;
        loop {
            match self.recv()? {
                ServerMessage::Reply { id: rid, reply } if rid == id => return Ok(reply),
                ServerMessage::Error {
                    id: rid,
                    code,
                    message,
                } if rid == id => return Err(ClientError::Remote { code, message }),
                _ => {}
            }
        }
    }

    /// Round trip; returns the echoed payload.
    pub fn ping(&mut self, payload: u64) -> Result<u64, ClientError> {
        match self.call(Request::Ping { payload })? {
            Reply::Pong { payload } => Ok(payload),
            _ => Err(SessionError::Unexpected("reply").into()),
        }
    }

    /// Version, uptime and granted capabilities (a [`Reply::Info`]).
    pub fn info(&mut self) -> Result<Reply, ClientError> {
        self.call(Request::Info)
    }

    /// A `services` request other than `logs`.
    pub fn service(&mut self, request: ServiceRequest) -> Result<Reply, ClientError> {
        self.call(Request::Services(request))
    }

    /// Asks the enclave to stop its services and power off.
    pub fn shutdown(&mut self) -> Result<(), ClientError> {
        self.call(Request::Shutdown).map(drop)
    }

    /// A fresh attestation document from the enclave's NSM (raw COSE_Sign1 bytes).
    pub fn attest(&mut self, request: crate::wire::AttestRequest) -> Result<Vec<u8>, ClientError> {
        match self.call(Request::Attest(request))? {
            Reply::Attestation { document } => Ok(document),
            _ => Err(SessionError::Unexpected("reply").into()),
        }
    }

    /// A service's logs; `out` gets each chunk with its channel (`stdout`/`stderr`). With
    /// `follow` this returns only when the enclave ends the stream or the connection closes.
    pub fn logs(
        &mut self,
        request: ServiceRequest,
        mut out: impl FnMut(crate::wire::Channel, &[u8]) -> io::Result<()>,
    ) -> Result<(), ClientError> {
        let id = self.start(Request::Services(request))?;
        loop {
            match self.recv()? {
                ServerMessage::Data {
                    id: rid,
                    channel,
                    data,
                } if rid == id => {
                    out(channel, &data)?;
                    let bytes = data.len() as u32;
                    self.send(&ClientMessage::WindowUpdate { id, bytes })?;
                }
                ServerMessage::Reply { id: rid, .. } if rid == id => return Ok(()),
                ServerMessage::Error {
                    id: rid,
                    code,
                    message,
                } if rid == id => return Err(ClientError::Remote { code, message }),
                _ => {}
            }
        }
    }
}
