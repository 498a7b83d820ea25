//! The client's side of a connection (enclave-ctl).

use super::super::auth::SigningKey;
use super::super::message::{
    Auth, Capability, ClientHello, ClientMessage, RequestId, ServerHello, ServerMessage,
};
use super::super::ops::Request;
use super::super::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use super::kind::{client_kind, server_kind};
use super::streams::{Outcome, Side, Streams};
use super::{SessionError, Verdict};

/// What the client asks for and proves.
#[derive(Clone, Default)]
pub struct ClientConfig {
    /// Capabilities wanted (ask only for what the command needs).
    pub capabilities: Vec<Capability>,
    /// Client name and version for the server's logs.
    pub client: String,
    /// Key to answer an authentication challenge with.
    pub key: Option<SigningKey>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("ClientConfig")
            .field("capabilities", &self.capabilities)
            .field("client", &self.client)
            .field("key", &self.key.as_ref().map(|k| k.verifying_key()))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    AwaitHello,
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
    streams: Streams,
}

impl ClientSession {
    /// A session that has sent nothing yet.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            phase: Phase::Start,
            hello: None,
            streams: Streams::default(),
        }
    }

    /// The first message to send.
    pub fn hello(&mut self) -> Result<ClientMessage, SessionError> {
        if self.phase != Phase::Start {
            return Err(SessionError::Unexpected("second hello"));
        }
        self.phase = Phase::AwaitHello;
        Ok(ClientMessage::Hello(ClientHello {
            version: PROTOCOL_VERSION,
            capabilities: self.config.capabilities.clone(),
            client: self.config.client.clone(),
        }))
    }

    /// Whether requests may be sent.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The server's hello, once received.
    pub fn server_hello(&self) -> Option<&ServerHello> {
        self.hello.as_ref()
    }

    /// The capabilities the server granted.
    pub fn granted(&self) -> &[Capability] {
        self.hello.as_ref().map_or(&[], |h| &h.capabilities)
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

    /// Checks a received message.
    pub fn on_recv(&mut self, msg: &ServerMessage) -> Result<Verdict<ClientMessage>, SessionError> {
        let result = self.recv(msg);
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result
    }

    fn recv(&mut self, msg: &ServerMessage) -> Result<Verdict<ClientMessage>, SessionError> {
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
        match (self.phase, msg) {
            (Phase::Start | Phase::Failed, _) => Err(SessionError::NotReady),
            (Phase::AwaitHello, ServerMessage::Hello(hello)) => {
                if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.version) {
                    return Err(SessionError::UnsupportedVersion {
                        peer: hello.version,
                    });
                }
                self.hello = Some(hello.clone());
                let Some(nonce) = hello.challenge else {
                    self.phase = Phase::Ready;
                    return Ok(Verdict::Deliver);
                };
                let key = self.config.key.as_ref().ok_or(SessionError::KeyRequired)?;
                let auth =
                    Auth::sign(key, &nonce).map_err(|e| SessionError::Random(e.to_string()))?;
                self.phase = Phase::AwaitAuthenticated;
                Ok(Verdict::Respond(ClientMessage::Auth(auth)))
            }
            (Phase::AwaitHello, _) => Err(SessionError::HelloFirst),
            (Phase::AwaitAuthenticated, ServerMessage::Authenticated) => {
                self.phase = Phase::Ready;
                Ok(Verdict::Deliver)
            }
            (Phase::AwaitAuthenticated, _) => Err(SessionError::AuthRequired),
            (Phase::Ready, msg) => {
                let Some((id, kind)) = server_kind(msg) else {
                    return Err(SessionError::Unexpected("second hello"));
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
        }
    }

    /// Checks a message before sending it. [`SessionError::Ended`] means the request already
    /// ended (e.g. the process exited while stdin was still being read): stop sending for it.
    pub fn check_send(&mut self, msg: &ClientMessage) -> Result<(), SessionError> {
        if self.phase != Phase::Ready {
            return Err(SessionError::NotReady);
        }
        if let ClientMessage::Request { id, request } = msg {
            let granted = self.hello.as_ref().map_or(&[][..], |h| &h.capabilities[..]);
            return self.streams.open(*id, request, granted);
        }
        let Some((id, kind)) = client_kind(msg) else {
            return Err(SessionError::Unexpected(
                "hello or auth sent by the application",
            ));
        };
        match self.streams.apply(Side::Client, id, kind, false)? {
            Outcome::Applied => Ok(()),
            Outcome::Stale => Err(SessionError::Ended(id)),
        }
    }
}
