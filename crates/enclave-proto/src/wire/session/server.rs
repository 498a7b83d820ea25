//! The server's side of a connection (enclave-init).

use super::super::auth::{random_nonce, AuthorizedKeys, KeyError, VerifyingKey};
use super::super::message::{
    Capability, ClientMessage, EnclaveInfo, RequestId, ServerHello, ServerMessage,
};
use super::super::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use super::kind::{client_kind, server_kind};
use super::streams::{Outcome, Side, Streams};
use super::{SessionError, Verdict};
use crate::spec::DebugSpec;

/// What the enclave allows, decided from its measured spec.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Capabilities that may be granted (to clients that ask for them).
    pub capabilities: Vec<Capability>,
    /// When not empty, every session must authenticate with one of these keys.
    pub authorized_keys: AuthorizedKeys,
    /// Sent in the hello.
    pub enclave: EnclaveInfo,
}

impl ServerConfig {
    /// The configuration the spec's `debug` section asks for.
    pub fn from_debug_spec(debug: &DebugSpec, enclave: EnclaveInfo) -> Result<Self, KeyError> {
        Ok(Self {
            capabilities: debug.capabilities(),
            authorized_keys: AuthorizedKeys::parse(&debug.authorized_keys)?,
            enclave,
        })
    }
}

#[derive(Debug)]
enum Phase {
    AwaitHello,
    AwaitAuth,
    Ready,
    Failed,
}

/// The server's protocol state for one connection. See the [module doc](super).
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    nonce: [u8; 32],
    phase: Phase,
    version: u16,
    granted: Vec<Capability>,
    key: Option<VerifyingKey>,
    streams: Streams,
}

impl ServerSession {
    /// A session with a fresh random challenge nonce.
    pub fn new(config: ServerConfig) -> Result<Self, std::io::Error> {
        Ok(Self::with_nonce(config, random_nonce()?))
    }

    /// A session with a given challenge nonce. Only for tests: a repeated nonce lets a recorded
    /// answer be replayed.
    pub fn with_nonce(config: ServerConfig, nonce: [u8; 32]) -> Self {
        Self {
            config,
            nonce,
            phase: Phase::AwaitHello,
            version: 0,
            granted: Vec::new(),
            key: None,
            streams: Streams::default(),
        }
    }

    /// Whether the handshake (and authentication, when required) is complete.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// The negotiated protocol version (0 before the hello).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// The capabilities granted to this connection.
    pub fn granted(&self) -> &[Capability] {
        &self.granted
    }

    /// The key the client authenticated with.
    pub fn authenticated_key(&self) -> Option<&VerifyingKey> {
        self.key.as_ref()
    }

    /// Requests in progress, lowest id first (to stop their work when the connection closes).
    pub fn active_requests(&self) -> Vec<RequestId> {
        self.streams.active_ids()
    }

    /// Checks a received message. On `Err`, send [`SessionError::to_message`] and, when
    /// [`SessionError::is_fatal`], close the connection; further calls then fail.
    pub fn on_recv(&mut self, msg: &ClientMessage) -> Result<Verdict<ServerMessage>, SessionError> {
        let result = self.recv(msg);
        if let Err(e) = &result {
            if e.is_fatal() {
                self.phase = Phase::Failed;
            }
        }
        result
    }

    fn recv(&mut self, msg: &ClientMessage) -> Result<Verdict<ServerMessage>, SessionError> {
        match (&self.phase, msg) {
            (Phase::Failed, _) => Err(SessionError::NotReady),
            (Phase::AwaitHello, ClientMessage::Hello(hello)) => {
                if hello.version < MIN_PROTOCOL_VERSION {
                    return Err(SessionError::UnsupportedVersion {
                        peer: hello.version,
                    });
                }
                self.version = hello.version.min(PROTOCOL_VERSION);
                let mut granted: Vec<Capability> = hello
                    .capabilities
                    .iter()
                    .copied()
                    .filter(|c| *c != Capability::Unknown && self.config.capabilities.contains(c))
                    .collect();
                granted.sort_unstable();
                granted.dedup();
                self.granted = granted;
                let challenge = if self.config.authorized_keys.is_empty() {
                    self.phase = Phase::Ready;
                    None
                } else {
                    self.phase = Phase::AwaitAuth;
                    Some(self.nonce)
                };
                Ok(Verdict::Respond(ServerMessage::Hello(ServerHello {
                    version: self.version,
                    capabilities: self.granted.clone(),
                    enclave: self.config.enclave.clone(),
                    challenge,
                })))
            }
            (Phase::AwaitHello, _) => Err(SessionError::HelloFirst),
            (Phase::AwaitAuth, ClientMessage::Auth(auth)) => {
                let key = (self.config.authorized_keys)
                    .verify(auth, &self.nonce)
                    .map_err(SessionError::AuthFailed)?;
                self.key = Some(key);
                self.phase = Phase::Ready;
                Ok(Verdict::Respond(ServerMessage::Authenticated))
            }
            (Phase::AwaitAuth, _) => Err(SessionError::AuthRequired),
            (Phase::Ready, ClientMessage::Hello(_)) => {
                Err(SessionError::Unexpected("second hello"))
            }
            (Phase::Ready, ClientMessage::Auth(_)) => Err(SessionError::Unexpected("auth")),
            (Phase::Ready, ClientMessage::Request { id, request }) => {
                self.streams.open(*id, request, &self.granted)?;
                Ok(Verdict::Deliver)
            }
            (Phase::Ready, msg) => {
                let Some((id, kind)) = client_kind(msg) else {
                    return Err(SessionError::Unexpected("message"));
                };
                match self.streams.apply(Side::Client, id, kind, true)? {
                    Outcome::Applied => Ok(Verdict::Deliver),
                    Outcome::Stale => Ok(Verdict::Discard),
                }
            }
        }
    }

    /// Checks a message before sending it. An error means it must not be sent: the application
    /// tried something the protocol does not allow (e.g. data beyond the client's window, in
    /// which case it waits for a `WindowUpdate`). The session's own answers ([`Verdict::Respond`])
    /// are not passed here.
    pub fn check_send(&mut self, msg: &ServerMessage) -> Result<(), SessionError> {
        let Some((id, kind)) = server_kind(msg) else {
            return Err(SessionError::Unexpected("hello sent by the application"));
        };
        // A connection-level error may be sent in any state (e.g. shutting down).
        if id == 0 && matches!(msg, ServerMessage::Error { .. }) {
            return Ok(());
        }
        if !self.is_ready() {
            return Err(SessionError::NotReady);
        }
        match self.streams.apply(Side::Server, id, kind, false)? {
            Outcome::Applied => Ok(()),
            // The answer to a request refused by `on_recv`, or to one that ended by an error.
            Outcome::Stale if matches!(msg, ServerMessage::Error { .. }) => Ok(()),
            Outcome::Stale => Err(SessionError::Ended(id)),
        }
    }

    /// How many `Data` bytes the server may still send on a request before the client grants
    /// more; `None` when the request is not in progress.
    pub fn send_credit(&self, id: RequestId) -> Option<u32> {
        self.streams.credit(id, Side::Server)
    }
}
