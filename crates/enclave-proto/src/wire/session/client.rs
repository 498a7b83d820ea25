//! The client's side of a connection (enclave-ctl, the supervisor, initctl).

use bytes::Bytes;

use super::super::auth::SigningKey;
use super::super::codec::{decode, decode_bytes, encode, MessageError};
use super::super::message::{
    Auth, Capability, Channel, ClientHello, ClientMessage, RequestId, ServerHello, ServerMessage,
};
use super::super::ops::Request;
use super::super::secure::{prologue, Initiator, ServerCheck, Transport, NOISE_PARAMS};
use super::super::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use super::kind::{client_kind, server_kind, Kind};
use super::streams::{Outcome, Side, Streams};
use super::{SessionError, Verdict};

/// What kind of session the client requires.
#[derive(Debug, Clone)]
pub enum Security {
    /// The in-enclave socket: no handshake (the socket's file mode authenticates).
    Local,
    /// The host-facing channel: the Noise handshake, with this check of the enclave's identity.
    Remote(ServerCheck),
}

/// What the client asks for and proves.
#[derive(Clone)]
pub struct ClientConfig {
    /// Capabilities wanted (ask only for what the command needs).
    pub capabilities: Vec<Capability>,
    /// Client name and version for the server's logs.
    pub client: String,
    /// Key to authenticate with after the handshake; without one only `ping` and `info` work.
    pub key: Option<SigningKey>,
    /// Local, or remote with the enclave's expected identity.
    pub security: Security,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            capabilities: Vec::new(),
            client: String::new(),
            key: None,
            security: Security::Local,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("ClientConfig")
            .field("capabilities", &self.capabilities)
            .field("client", &self.client)
            .field("key", &self.key.as_ref().map(|k| k.verifying_key()))
            .field("security", &self.security)
            .finish()
    }
}

#[derive(Debug)]
enum Phase {
    Start,
    AwaitHello {
        /// Our hello's frame payload, for the prologue.
        sent: Vec<u8>,
    },
    AwaitHandshake(Box<Initiator>),
    /// Encrypted, no key proven (yet).
    Secured {
        hash: [u8; 32],
    },
    AwaitAuthenticated,
    Ready,
    Failed,
}

/// The client's protocol state for one connection. See the [module doc](super).
///
/// Any error from [`on_recv`](ClientSession::on_recv) means the server broke the protocol or
/// refused the session: close the connection.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    phase: Phase,
    hello: Option<ServerHello>,
    granted: Vec<Capability>,
    transport: Option<Transport>,
    server_key: Option<[u8; 32]>,
    streams: Streams,
}

impl ClientSession {
    /// A session that has sent nothing yet.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            phase: Phase::Start,
            hello: None,
            granted: Vec::new(),
            transport: None,
            server_key: None,
            streams: Streams::default(),
        }
    }

    /// The first message to send.
    pub fn hello(&mut self) -> Result<ClientMessage, SessionError> {
        if !matches!(self.phase, Phase::Start) {
            return Err(SessionError::Unexpected("second hello"));
        }
        let msg = ClientMessage::Hello(ClientHello {
            version: PROTOCOL_VERSION,
            capabilities: self.config.capabilities.clone(),
            client: self.config.client.clone(),
        });
        let sent = encode(&msg).map_err(|e| SessionError::Malformed(e.to_string()))?;
        self.phase = Phase::AwaitHello { sent };
        Ok(msg)
    }

    /// Whether requests may be sent: after the handshake. Without a proven key only `ping` and
    /// `info` are answered.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Secured { .. })
    }

    /// Whether the set-up is over: the handshake done and the key proven (or none to prove).
    /// After it, [`is_open`](Self::is_open) says whether requests may be sent.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
            || (matches!(self.phase, Phase::Secured { .. }) && self.config.key.is_none())
    }

    /// Whether a key was proven to the server.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Ready) && matches!(self.config.security, Security::Remote(_))
    }

    /// The server's hello, once received.
    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.hello.as_ref()
    }

    /// The enclave's control identity key the handshake proved (remote sessions).
    pub fn server_key(&self) -> Option<&[u8; 32]> {
        self.server_key.as_ref()
    }

    /// The capabilities the server granted.
    pub fn granted(&self) -> &[Capability] {
        &self.granted
    }

    /// The transport keys of a handshake just completed, once: everything the client sends or
    /// receives from now on goes through them.
    pub fn take_transport(&mut self) -> Option<Transport> {
        self.transport.take()
    }

    /// After the handshake: the `auth` message proving the configured key (`None` without a
    /// key, and then the session stays unauthenticated). Send it encrypted.
    pub fn auth(&mut self) -> Result<Option<ClientMessage>, SessionError> {
        let Phase::Secured { hash } = &self.phase else {
            return Err(SessionError::NotReady);
        };
        let Some(key) = &self.config.key else {
            return Ok(None);
        };
        let auth = Auth::sign(key, hash);
        self.phase = Phase::AwaitAuthenticated;
        Ok(Some(ClientMessage::Auth(auth)))
    }

    /// Starts a request with the next free id; returns the id and the message to send.
    pub fn request(
        &mut self,
        request: Request,
    ) -> Result<(RequestId, ClientMessage), SessionError> {
        let id = self
            .streams
            .last_id()
            .checked_add(1)
            .ok_or(SessionError::Unexpected("request ids exhausted"))?;
        let msg = ClientMessage::Request { id, request };
        self.check_send(&msg)?;
        Ok((id, msg))
    }

    /// How many `Data` bytes the client may still send on a request before the server grants
    /// more; `None` when the request is not in progress.
    pub fn send_credit(&self, id: RequestId) -> Option<u32> {
        self.streams.credit(id, Side::Client)
    }

    /// Decodes a frame payload and checks it as [`on_recv`](Self::on_recv) does; the server's
    /// hello goes into the handshake's prologue exactly as received.
    pub fn on_recv_frame(
        &mut self,
        payload: &[u8],
    ) -> Result<(ServerMessage, Verdict<ClientMessage>), SessionError> {
        self.received(decode(payload), payload)
    }

    /// [`on_recv_frame`](Self::on_recv_frame) of a payload in a shared buffer: a `Data`
    /// message's bytes stay in it ([`decode_bytes`]).
    pub fn on_recv_bytes(
        &mut self,
        payload: &Bytes,
    ) -> Result<(ServerMessage, Verdict<ClientMessage>), SessionError> {
        self.received(decode_bytes(payload), payload)
    }

    fn received(
        &mut self,
        decoded: Result<ServerMessage, MessageError>,
        payload: &[u8],
    ) -> Result<(ServerMessage, Verdict<ClientMessage>), SessionError> {
        let result = match decoded {
            Ok(msg) => self.recv(&msg, Some(payload)).map(|v| (msg, v)),
            Err(e) => Err(SessionError::Malformed(e.to_string())),
        };
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    /// Checks a received message.
    pub fn on_recv(&mut self, msg: &ServerMessage) -> Result<Verdict<ClientMessage>, SessionError> {
        let result = self.recv(msg, None);
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    fn server_hello_received(
        &mut self,
        hello: &ServerHello,
        sent: Vec<u8>,
        raw: Option<&[u8]>,
    ) -> Result<Verdict<ClientMessage>, SessionError> {
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.version) {
            return Err(SessionError::UnsupportedVersion {
                peer: hello.version,
            });
        }
        self.hello = Some(hello.clone());
        let offered = hello.handshake.as_deref();
        match (&self.config.security, offered) {
            (Security::Local, None) => {
                // Inside the enclave a caller may bind its own keys into documents.
                self.granted = vec![Capability::Attest];
                self.phase = Phase::Ready;
                Ok(Verdict::Deliver)
            }
            (Security::Remote(_), Some(NOISE_PARAMS)) => {
                let raw = match raw {
                    Some(raw) => raw.to_vec(),
                    None => encode(&ServerMessage::Hello(hello.clone()))
                        .map_err(|e| SessionError::Malformed(e.to_string()))?,
                };
                let (initiator, noise) = Initiator::start(&prologue(&sent, &raw))
                    .map_err(|e| SessionError::Handshake(e.to_string()))?;
                self.phase = Phase::AwaitHandshake(Box::new(initiator));
                Ok(Verdict::Respond(ClientMessage::Handshake { noise }))
            }
            (Security::Local, Some(_)) => Err(SessionError::Downgrade {
                offered: "an encrypted session",
                required: "the in-enclave socket's plain session",
            }),
            (Security::Remote(_), _) => Err(SessionError::Downgrade {
                offered: if offered.is_some() {
                    "an unknown handshake"
                } else {
                    "no encrypted session"
                },
                required: NOISE_PARAMS,
            }),
        }
    }

    fn recv(
        &mut self,
        msg: &ServerMessage,
        raw: Option<&[u8]>,
    ) -> Result<Verdict<ClientMessage>, SessionError> {
        if let ServerMessage::Error {
            id: 0,
            code,
            message,
        } = msg
        {
            return Err(SessionError::Remote {
                code: *code,
                message: message.clone(),
            });
        }
        match (std::mem::replace(&mut self.phase, Phase::Failed), msg) {
            (Phase::AwaitHello { sent }, ServerMessage::Hello(hello)) => {
                self.server_hello_received(hello, sent, raw)
            }
            (Phase::AwaitHello { .. }, _) => Err(SessionError::HelloFirst),
            (Phase::AwaitHandshake(initiator), ServerMessage::Handshake { noise }) => {
                let Security::Remote(check) = &self.config.security else {
                    return Err(SessionError::Unexpected("handshake"));
                };
                let (transport, key) = initiator.finish(noise, check).map_err(|e| match e {
                    super::super::secure::SecureError::Identity(why) => {
                        SessionError::Handshake(format!("the enclave's identity: {why}"))
                    }
                    other => SessionError::Handshake(other.to_string()),
                })?;
                self.phase = Phase::Secured {
                    hash: *transport.handshake_hash(),
                };
                self.server_key = Some(key);
                self.transport = Some(transport);
                Ok(Verdict::Deliver)
            }
            (Phase::AwaitHandshake(_), _) => Err(SessionError::HandshakeRequired),
            (Phase::AwaitAuthenticated, ServerMessage::Authenticated { capabilities }) => {
                self.granted = capabilities.clone();
                self.phase = Phase::Ready;
                Ok(Verdict::Deliver)
            }
            (Phase::AwaitAuthenticated, _) => Err(SessionError::AuthRequired),
            (phase @ (Phase::Ready | Phase::Secured { .. }), msg) => {
                self.phase = phase;
                let Some((id, kind)) = server_kind(msg) else {
                    return Err(SessionError::Unexpected("handshake message"));
                };
                match self.streams.apply(Side::Server, id, kind, false)? {
                    Outcome::Applied => Ok(Verdict::Deliver),
                    // Only the server ends requests, so it never has a reason to mention an
                    // ended one.
                    Outcome::Stale => Err(SessionError::StreamProtocol {
                        id,
                        what: "message after the request ended",
                    }),
                }
            }
            (Phase::Start | Phase::Failed, _) => Err(SessionError::NotReady),
        }
    }

    /// Checks a message before sending it. [`SessionError::Ended`] means the request already
    /// ended (e.g. the process exited while stdin was still being read): stop sending for it.
    pub fn check_send(&mut self, msg: &ClientMessage) -> Result<(), SessionError> {
        let authenticated = match self.phase {
            Phase::Ready => true,
            Phase::Secured { .. } => false,
            _ => return Err(SessionError::NotReady),
        };
        if let ClientMessage::Request { id, request } = msg {
            if !authenticated && !matches!(request, Request::Ping { .. } | Request::Info) {
                return Err(SessionError::KeyRequired);
            }
            return self.streams.open(*id, request, &self.granted);
        }
        let Some((id, kind)) = client_kind(msg) else {
            return Err(SessionError::Unexpected(
                "hello, handshake or auth sent by the application",
            ));
        };
        self.streams.apply_sent(Side::Client, id, kind)
    }

    /// [`check_send`](Self::check_send) of a `Data` message of `len` bytes whose bytes are not
    /// read yet (a sender that reads them into the record's place once allowed).
    pub fn check_send_data(
        &mut self,
        id: RequestId,
        channel: Channel,
        len: usize,
    ) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::Ready | Phase::Secured { .. }) {
            return Err(SessionError::NotReady);
        }
        self.streams
            .apply_sent(Side::Client, id, Kind::Data { channel, len })
    }
}
