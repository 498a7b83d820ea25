//! The protocol state machine of each side of a connection.
//!
//! A [`ServerSession`] or [`ClientSession`] sees every message of its connection: each received
//! one goes through `on_recv`, each one about to be sent through `check_send`. It enforces, for
//! both directions:
//!
//! - the client's hello comes first, the server's answer second;
//! - on the host-facing channel the Noise handshake comes next ([`super::secure`]); its
//!   messages are the last in clear, and the caller switches to encrypted records with the keys
//!   `take_transport` hands out;
//! - nothing but `ping` and `info` before a valid [`super::Auth`] on that channel;
//! - request ids are strictly increasing; stream messages name a request in progress;
//! - each operation's stream admits only its own messages, in order (e.g. no data before
//!   `Started`, no `stdin` after its `Eof`, a `cp` file's content is exactly its size);
//! - no `Data` beyond the credit the receiver granted.
//!
//! Errors are typed ([`SessionError`]): the server turns them into an `Error` message with
//! [`SessionError::to_message`] and closes the connection when [`SessionError::is_fatal`].

mod client;
mod kind;
mod server;
mod streams;

pub use client::{ClientConfig, ClientSession, Security};
pub use server::{RemoteTrust, ServerConfig, ServerSession, Trust};

use super::auth::AuthError;
use super::message::{Capability, ErrorCode, RequestId, ServerMessage};
use super::ops::{Request, ServiceRequest};
use super::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// What to do with a message that passed `on_recv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<Out> {
    /// Hand it to the application.
    Deliver,
    /// Drop it: it belongs to a request that already ended (it crossed the end on the wire).
    Discard,
    /// The session handled it (handshake) and this answer must be sent. It is already
    /// accounted for: do not pass it to `check_send`.
    Respond(Out),
}

/// A message that breaks the protocol, or a request that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Something other than a hello came first.
    #[error("the first message must be a hello")]
    HelloFirst,
    /// A frame that is not one message of the protocol.
    #[error("undecodable message: {0}")]
    Malformed(String),
    /// A connection-level message in the wrong state (a second hello, an unasked auth, ...).
    #[error("unexpected {0}")]
    Unexpected(&'static str),
    /// No protocol version in common.
    #[error("peer speaks protocol version {peer}, this side {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}")]
    UnsupportedVersion {
        /// The peer's version.
        peer: u16,
    },
    /// On the host-facing channel, something other than the Noise handshake after the hellos.
    #[error("the encrypted session's handshake must come first")]
    HandshakeRequired,
    /// The Noise handshake failed (a changed hello, a relayed or replayed message, a bad key).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The server did not offer the session this client requires (an encrypted one on the
    /// host-facing channel, none on the in-enclave socket).
    #[error("the enclave offered {offered}, this client requires {required}")]
    Downgrade {
        /// What the server's hello said.
        offered: &'static str,
        /// What the client requires.
        required: &'static str,
    },
    /// A request other than `ping`/`info` before a key was proven.
    #[error("authentication required: prove a key the enclave accepts (its supervisor's, or one of the spec's debug.authorized_keys) before anything but ping and info")]
    AuthRequired,
    /// The authentication was refused.
    #[error("authentication failed: {0}")]
    AuthFailed(AuthError),
    /// Local only: the request needs a key and the client has none.
    #[error("this needs a key the enclave accepts (its supervisor's, or one listed in the spec's debug.authorized_keys), and no key was given")]
    KeyRequired,
    /// A request id not above the previous one.
    #[error("request id {id} is not greater than the previous one ({last})")]
    IdNotIncreasing {
        /// The new id.
        id: RequestId,
        /// The highest id before it.
        last: RequestId,
    },
    /// A stream message for an id never used.
    #[error("message for unknown request {0}")]
    UnknownRequest(RequestId),
    /// A stream message that the request's operation does not admit now.
    #[error("request {id}: {what}")]
    StreamProtocol {
        /// The request.
        id: RequestId,
        /// What was wrong.
        what: &'static str,
    },
    /// Data beyond the granted window, or a window grown too large.
    #[error("request {id}: flow control violated: {what}")]
    FlowControl {
        /// The request.
        id: RequestId,
        /// What was wrong.
        what: &'static str,
    },
    /// The request needs a capability the connection was not granted.
    #[error("request {id}: capability {capability} not granted")]
    PermissionDenied {
        /// The request.
        id: RequestId,
        /// The missing capability.
        capability: Capability,
    },
    /// Too many requests in progress.
    #[error("request {id}: too many requests in progress")]
    TooManyStreams {
        /// The request.
        id: RequestId,
    },
    /// A request or `cp` entry with invalid content (bad path, empty argv, short file, ...).
    #[error("request {id}: {reason}")]
    BadRequest {
        /// The request.
        id: RequestId,
        /// What was wrong.
        reason: String,
    },
    /// Local only: the request already ended, so this message is not sent.
    #[error("request {0} has ended")]
    Ended(RequestId),
    /// Local only: the handshake is not complete, or the connection failed.
    #[error("the session is not ready for this message")]
    NotReady,
    /// The server reported a connection-level error (`Error` with id 0).
    #[error("server closed the session: {code:?}: {message}")]
    Remote {
        /// The server's code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
}

impl SessionError {
    /// The code an `Error` message carries for this error.
    pub fn code(&self) -> ErrorCode {
        use SessionError as E;
        match self {
            E::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            E::AuthRequired | E::KeyRequired => ErrorCode::AuthRequired,
            E::AuthFailed(_) => ErrorCode::AuthFailed,
            E::FlowControl { .. } => ErrorCode::FlowControl,
            E::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            E::TooManyStreams { .. } => ErrorCode::TooManyStreams,
            E::BadRequest { .. } => ErrorCode::BadRequest,
            E::Remote { code, .. } => *code,
            E::HelloFirst
            | E::Malformed(_)
            | E::Unexpected(_)
            | E::HandshakeRequired
            | E::Handshake(_)
            | E::Downgrade { .. }
            | E::IdNotIncreasing { .. }
            | E::UnknownRequest(_)
            | E::StreamProtocol { .. }
            | E::Ended(_)
            | E::NotReady => ErrorCode::Protocol,
        }
    }

    /// Whether the connection must be closed (after sending the error). Errors that concern
    /// one request only end that request.
    pub fn is_fatal(&self) -> bool {
        match self {
            SessionError::PermissionDenied { .. }
            | SessionError::TooManyStreams { .. }
            | SessionError::BadRequest { .. }
            | SessionError::Ended(_) => false,
            SessionError::Remote { .. } => true,
            other => other.code().is_fatal(),
        }
    }

    /// The request the error is about; 0 for the connection (every fatal error).
    pub fn request_id(&self) -> RequestId {
        match self {
            SessionError::PermissionDenied { id, .. }
            | SessionError::TooManyStreams { id }
            | SessionError::BadRequest { id, .. } => *id,
            _ => 0,
        }
    }

    /// The `Error` message a server sends for this error.
    pub fn to_message(&self) -> ServerMessage {
        ServerMessage::Error {
            id: self.request_id(),
            code: self.code(),
            message: self.to_string(),
        }
    }
}

/// Checks what a request says on its own, whatever the state: the answer is a `BadRequest`.
pub(crate) fn validate_request(request: &Request) -> Result<(), String> {
    fn no_nul(what: &str, s: &str) -> Result<(), String> {
        if s.contains('\0') {
            return Err(format!("{what} contains a NUL byte"));
        }
        Ok(())
    }
    fn absolute(what: &str, s: &str) -> Result<(), String> {
        no_nul(what, s)?;
        if !s.starts_with('/') {
            return Err(format!("{what} {s:?} is not an absolute path"));
        }
        Ok(())
    }
    match request {
        Request::Exec(exec) => {
            if exec.argv.first().is_none_or(String::is_empty) {
                return Err("exec needs a program".into());
            }
            for arg in &exec.argv {
                no_nul("argument", arg)?;
            }
            for (name, value) in &exec.env {
                if name.is_empty() || name.contains('=') {
                    return Err(format!("invalid environment variable name {name:?}"));
                }
                no_nul("environment variable", name)?;
                no_nul("environment variable", value)?;
            }
            if let Some(cwd) = &exec.cwd {
                absolute("working directory", cwd)?;
            }
            if exec.detach && (exec.tty.is_some() || exec.stdin) {
                return Err("a detached exec has no terminal and no stdin".into());
            }
        }
        Request::CpTo { dest } => absolute("destination", dest)?,
        Request::CpFrom { src } => absolute("source", src)?,
        Request::Services(
            ServiceRequest::Status { name }
            | ServiceRequest::Start { name }
            | ServiceRequest::Stop { name }
            | ServiceRequest::Restart { name }
            | ServiceRequest::Logs { name, .. },
        ) if name.is_empty() => return Err("empty service name".into()),
        _ => {}
    }
    Ok(())
}
