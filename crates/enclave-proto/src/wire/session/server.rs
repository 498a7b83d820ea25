//! The server's side of a connection (enclave-init).

use std::sync::Arc;

use bytes::Bytes;

use super::super::auth::{AuthorizedKeys, KeyError, VerifyingKey};
use super::super::codec::{decode, decode_bytes, encode, MessageError};
use super::super::message::{
    Capability, Channel, ClientMessage, EnclaveInfo, RequestId, ServerHello, ServerMessage,
};
use super::super::ops::Request;
use super::super::secure::{
    prologue, ControlIdentity, Responder, Transport, NOISE_PARAMS, RESERVED_USER_DATA_PREFIX,
};
use super::super::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use super::kind::{client_kind, server_kind, Kind};
use super::streams::{Outcome, Side, Streams};
use super::{SessionError, Verdict};
use enclave_spec::DebugSpec;

/// Who the listener serves, and so how a session proves itself.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The in-enclave socket (`initctl`, the attestation server): only root inside the enclave
    /// can open it (file mode 0600), so no handshake and no key; no debug capability, but
    /// `attest` may bind the caller's key and data (the caller is inside the enclave).
    Local,
    /// The host-facing listener: the Noise handshake with the enclave's identity, then a key.
    Remote(RemoteTrust),
}

/// The enclave's identity and the keys that may drive it from the host side.
#[derive(Debug, Clone)]
pub struct RemoteTrust {
    /// The enclave's control identity (static Noise key and its attestation document).
    pub identity: Arc<ControlIdentity>,
    /// `debug.authorized_keys` plus the supervisor's key. Empty: only `ping` and `info` are
    /// served, to anyone.
    pub keys: AuthorizedKeys,
}

/// What the enclave allows, decided from its measured spec.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Capabilities that may be granted (to authenticated clients that ask for them).
    pub capabilities: Vec<Capability>,
    /// Local or remote, and what remote clients must prove.
    pub trust: Trust,
    /// Sent in the hello.
    pub enclave: EnclaveInfo,
}

impl ServerConfig {
    /// The host-facing configuration the spec's `debug` section asks for: its capabilities, its
    /// authorized keys and the supervisor's key (when the supervisor handed one over at boot).
    pub fn remote(
        debug: &DebugSpec,
        enclave: EnclaveInfo,
        identity: Arc<ControlIdentity>,
        supervisor_key: Option<VerifyingKey>,
    ) -> Result<Self, KeyError> {
        let mut keys = AuthorizedKeys::parse(&debug.authorized_keys)?;
        if let Some(k) = supervisor_key {
            keys.push(k);
        }
        Ok(Self {
            capabilities: Capability::granted_by(debug),
            trust: Trust::Remote(RemoteTrust { identity, keys }),
            enclave,
        })
    }

    /// The in-enclave socket's configuration.
    pub fn local(enclave: EnclaveInfo) -> Self {
        Self {
            capabilities: Vec::new(),
            trust: Trust::Local,
            enclave,
        }
    }
}

#[derive(Debug)]
enum Phase {
    AwaitHello,
    /// Remote: the hellos' bytes, the Noise prologue.
    AwaitHandshake {
        prologue: Vec<u8>,
    },
    /// Remote, encrypted, no key proven yet: `ping` and `info` only.
    Secured {
        hash: [u8; 32],
    },
    Ready,
    Failed,
}

/// The server's protocol state for one connection. See the [module doc](super).
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    phase: Phase,
    version: u16,
    wanted: Vec<Capability>,
    granted: Vec<Capability>,
    key: Option<VerifyingKey>,
    transport: Option<Transport>,
    streams: Streams,
}

impl ServerSession {
    /// A session waiting for the client's hello.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            phase: Phase::AwaitHello,
            version: 0,
            wanted: Vec::new(),
            granted: Vec::new(),
            key: None,
            transport: None,
            streams: Streams::default(),
        }
    }

    /// Whether every request the granted capabilities allow may be served: a local session
    /// after the hello, a remote one after its key was proven.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Whether the handshake is over (requests may come, if only `ping` and `info`).
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Ready | Phase::Secured { .. })
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

    /// The transport keys of a handshake just completed, once: the caller sends the answer
    /// [`Verdict::Respond`] gave in clear, then encrypts everything after with them.
    pub fn take_transport(&mut self) -> Option<Transport> {
        self.transport.take()
    }

    /// The highest request id received so far (0: none yet).
    pub fn last_request_id(&self) -> RequestId {
        self.streams.last_id()
    }

    /// Requests in progress, lowest id first (to stop their work when the connection closes).
    pub fn active_requests(&self) -> Vec<RequestId> {
        self.streams.active_ids()
    }

    /// Decodes a frame payload and checks it as [`on_recv`](Self::on_recv) does. The client's
    /// hello goes into the handshake's prologue exactly as received.
    pub fn on_recv_frame(
        &mut self,
        payload: &[u8],
    ) -> Result<(ClientMessage, Verdict<ServerMessage>), SessionError> {
        self.received(decode(payload), payload)
    }

    /// [`on_recv_frame`](Self::on_recv_frame) of a payload in a shared buffer: a `Data`
    /// message's bytes stay in it ([`decode_bytes`]).
    pub fn on_recv_bytes(
        &mut self,
        payload: &Bytes,
    ) -> Result<(ClientMessage, Verdict<ServerMessage>), SessionError> {
        self.received(decode_bytes(payload), payload)
    }

    fn received(
        &mut self,
        decoded: Result<ClientMessage, MessageError>,
        payload: &[u8],
    ) -> Result<(ClientMessage, Verdict<ServerMessage>), SessionError> {
        let msg = match decoded {
            Ok(msg) => msg,
            Err(e) => {
                self.phase = Phase::Failed;
                return Err(SessionError::Malformed(e.to_string()));
            }
        };
        let result = self.recv(&msg, Some(payload));
        self.settle(&result);
        result.map(|v| (msg, v))
    }

    /// Checks a received message. On `Err`, send [`SessionError::to_message`] and, when
    /// [`SessionError::is_fatal`], close the connection; further calls then fail.
    pub fn on_recv(&mut self, msg: &ClientMessage) -> Result<Verdict<ServerMessage>, SessionError> {
        let result = self.recv(msg, None);
        self.settle(&result);
        result
    }

    fn settle<T>(&mut self, result: &Result<T, SessionError>) {
        if let Err(e) = result {
            if e.is_fatal() {
                self.phase = Phase::Failed;
            }
        }
    }

    fn hello(
        &mut self,
        hello: &super::super::message::ClientHello,
        raw: Option<&[u8]>,
    ) -> Result<Verdict<ServerMessage>, SessionError> {
        if hello.version < MIN_PROTOCOL_VERSION {
            return Err(SessionError::UnsupportedVersion {
                peer: hello.version,
            });
        }
        self.version = hello.version.min(PROTOCOL_VERSION);
        self.wanted = hello.capabilities.clone();
        let remote = matches!(self.config.trust, Trust::Remote(_));
        let answer = ServerHello {
            version: self.version,
            enclave: self.config.enclave.clone(),
            handshake: remote.then(|| NOISE_PARAMS.to_owned()),
        };
        if remote {
            let client_raw = match raw {
                Some(raw) => raw.to_vec(),
                None => encode(&ClientMessage::Hello(hello.clone()))
                    .map_err(|e| SessionError::Malformed(e.to_string()))?,
            };
            let server_raw = encode(&ServerMessage::Hello(answer.clone()))
                .map_err(|e| SessionError::Malformed(e.to_string()))?;
            self.phase = Phase::AwaitHandshake {
                prologue: prologue(&client_raw, &server_raw),
            };
        } else {
            // Inside the enclave the caller may bind its own keys into documents.
            self.granted = vec![Capability::Attest];
            self.phase = Phase::Ready;
        }
        Ok(Verdict::Respond(ServerMessage::Hello(answer)))
    }

    fn recv(
        &mut self,
        msg: &ClientMessage,
        raw: Option<&[u8]>,
    ) -> Result<Verdict<ServerMessage>, SessionError> {
        match (&self.phase, msg) {
            (Phase::Failed, _) => Err(SessionError::NotReady),
            (Phase::AwaitHello, ClientMessage::Hello(hello)) => self.hello(hello, raw),
            (Phase::AwaitHello, _) => Err(SessionError::HelloFirst),
            (Phase::AwaitHandshake { prologue }, ClientMessage::Handshake { noise }) => {
                let Trust::Remote(trust) = &self.config.trust else {
                    return Err(SessionError::Unexpected("handshake"));
                };
                let (answer, transport) = Responder::new(&trust.identity, prologue)
                    .and_then(|r| r.respond(noise, &trust.identity))
                    .map_err(|e| SessionError::Handshake(e.to_string()))?;
                self.phase = Phase::Secured {
                    hash: *transport.handshake_hash(),
                };
                self.transport = Some(transport);
                Ok(Verdict::Respond(ServerMessage::Handshake { noise: answer }))
            }
            (Phase::AwaitHandshake { .. }, _) => Err(SessionError::HandshakeRequired),
            (Phase::Secured { hash }, ClientMessage::Auth(auth)) => {
                let Trust::Remote(trust) = &self.config.trust else {
                    return Err(SessionError::Unexpected("auth"));
                };
                let key = trust
                    .keys
                    .verify(auth, hash)
                    .map_err(SessionError::AuthFailed)?;
                let mut granted: Vec<Capability> = (self.wanted.iter().copied())
                    .filter(|c| *c != Capability::Unknown && self.config.capabilities.contains(c))
                    .collect();
                granted.sort_unstable();
                granted.dedup();
                self.granted = granted.clone();
                self.key = Some(key);
                self.phase = Phase::Ready;
                Ok(Verdict::Respond(ServerMessage::Authenticated {
                    capabilities: granted,
                }))
            }
            (Phase::Secured { .. }, ClientMessage::Request { id, request }) => {
                if !matches!(request, Request::Ping { .. } | Request::Info) {
                    return Err(SessionError::AuthRequired);
                }
                self.streams.open(*id, request, &[])?;
                Ok(Verdict::Deliver)
            }
            (Phase::Ready, ClientMessage::Request { id, request }) => {
                if let (Trust::Remote(_), Request::Attest(a)) = (&self.config.trust, request) {
                    if (a.user_data.as_deref())
                        .is_some_and(|u| u.starts_with(RESERVED_USER_DATA_PREFIX))
                    {
                        return Err(SessionError::BadRequest {
                            id: *id,
                            reason: "user_data starting with \"enclave-engine\" is reserved for \
                                     what the enclave binds itself"
                                .into(),
                        });
                    }
                }
                self.streams.open(*id, request, &self.granted)?;
                Ok(Verdict::Deliver)
            }
            (Phase::Secured { .. } | Phase::Ready, ClientMessage::Hello(_)) => {
                Err(SessionError::Unexpected("second hello"))
            }
            (Phase::Secured { .. } | Phase::Ready, ClientMessage::Handshake { .. }) => {
                Err(SessionError::Unexpected("second handshake"))
            }
            (Phase::Ready, ClientMessage::Auth(_)) => Err(SessionError::Unexpected("auth")),
            (Phase::Secured { .. } | Phase::Ready, msg) => {
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
            return Err(SessionError::Unexpected(
                "handshake message sent by the application",
            ));
        };
        // A connection-level error may be sent in any state (e.g. shutting down).
        if id == 0 && matches!(msg, ServerMessage::Error { .. }) {
            return Ok(());
        }
        if !self.is_open() {
            return Err(SessionError::NotReady);
        }
        match self.streams.apply(Side::Server, id, kind, false)? {
            Outcome::Applied => Ok(()),
            // The answer to a request refused by `on_recv`, or to one that ended by an error.
            Outcome::Stale if matches!(msg, ServerMessage::Error { .. }) => Ok(()),
            Outcome::Stale => Err(SessionError::Ended(id)),
        }
    }

    /// [`check_send`](Self::check_send) of a `Data` message of `len` bytes laid out to be
    /// sealed in place ([`crate::wire::lay_out_data`]), without the message itself.
    pub fn check_send_data(
        &mut self,
        id: RequestId,
        channel: Channel,
        len: usize,
    ) -> Result<(), SessionError> {
        if !self.is_open() {
            return Err(SessionError::NotReady);
        }
        self.streams
            .apply_sent(Side::Server, id, Kind::Data { channel, len })
    }

    /// How many `Data` bytes the server may still send on a request before the client grants
    /// more; `None` when the request is not in progress.
    pub fn send_credit(&self, id: RequestId) -> Option<u32> {
        self.streams.credit(id, Side::Server)
    }
}
