//! The two message enums, one per direction, and the connection-level payloads (hello,
//! authentication, errors). Operation payloads are in [`super::ops`].
//!
//! Every struct rejects unknown fields except the two hellos: they are the one place a newer
//! peer must still be understood, so that it can be told which version to speak.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ops::{CpEntry, ExitStatus, Reply, Request, WindowSize};

/// Identifies one request and the stream of messages that belongs to it. Chosen by the client,
/// strictly increasing on a connection, never 0 (0 addresses the connection itself in
/// [`ServerMessage::Error`]).
pub type RequestId = u32;

/// What the client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message of every connection.
    Hello(ClientHello),
    /// The client's Noise handshake message (`-> e`), in clear, right after the server's hello
    /// on the host-facing channel ([`super::secure`]).
    Handshake {
        /// The Noise message.
        #[serde(with = "serde_bytes")]
        noise: Vec<u8>,
    },
    /// Proof of a key, signed over the handshake hash (encrypted, after the handshake).
    Auth(Auth),
    /// Starts a request.
    Request {
        /// New request id, greater than every earlier one.
        id: RequestId,
        /// What is asked.
        request: Request,
    },
    /// Stream bytes: `stdin` of an exec, `file` content of a `cp` upload.
    Data {
        /// The request.
        id: RequestId,
        /// Which stream of the request.
        channel: Channel,
        /// At most [`super::MAX_DATA_CHUNK`] bytes. Received data shares the buffer its
        /// record was decrypted into ([`super::data`]).
        data: Bytes,
    },
    /// No more data on this channel (closes the process's stdin).
    Eof {
        /// The request.
        id: RequestId,
        /// The channel that ended.
        channel: Channel,
    },
    /// The terminal of an exec with a pty changed size.
    Resize {
        /// The exec request.
        id: RequestId,
        /// New size.
        size: WindowSize,
    },
    /// Deliver a signal to an exec'd process (e.g. SIGINT for Ctrl-C without a pty).
    Signal {
        /// The exec request.
        id: RequestId,
        /// Signal number.
        signal: i32,
    },
    /// Header of the next entry of a `cp` upload.
    CpEntry {
        /// The cp request.
        id: RequestId,
        /// The entry.
        entry: CpEntry,
    },
    /// End of a `cp` upload file entry, right after its content: the receiver checks that it got
    /// exactly the announced size, then puts the file in place. (No digest: the session's AEAD
    /// already protects the content.)
    CpFileEnd {
        /// The cp request.
        id: RequestId,
    },
    /// All entries of a `cp` upload were sent.
    CpDone {
        /// The cp request.
        id: RequestId,
    },
    /// The client consumed `bytes` of the server's data on this request: grants that much more.
    WindowUpdate {
        /// The request.
        id: RequestId,
        /// Additional credit.
        bytes: u32,
    },
    /// Abandon a request; the server stops the work and ends the request.
    Cancel {
        /// The request.
        id: RequestId,
    },
}

impl ClientMessage {
    /// The request this message belongs to; `None` for the connection-level hello and auth.
    pub fn request_id(&self) -> Option<RequestId> {
        use ClientMessage as M;
        match self {
            M::Hello(_) | M::Handshake { .. } | M::Auth(_) => None,
            M::Request { id, .. }
            | M::Data { id, .. }
            | M::Eof { id, .. }
            | M::Resize { id, .. }
            | M::Signal { id, .. }
            | M::CpEntry { id, .. }
            | M::CpFileEnd { id, .. }
            | M::CpDone { id }
            | M::WindowUpdate { id, .. }
            | M::Cancel { id } => Some(*id),
        }
    }
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// Answer to the client's hello.
    Hello(ServerHello),
    /// The server's Noise handshake message (`<- e, ee, s, es` with the identity payload), in
    /// clear; everything after it is encrypted ([`super::secure`]).
    Handshake {
        /// The Noise message.
        #[serde(with = "serde_bytes")]
        noise: Vec<u8>,
    },
    /// The client's [`Auth`] was accepted; every request the granted capabilities allow may
    /// follow.
    Authenticated {
        /// What the client may use: the wanted capabilities the measured spec allows.
        #[serde(default)]
        capabilities: Vec<Capability>,
    },
    /// A streaming request (exec, cp, logs) was accepted; its stream is open, each direction
    /// with [`super::INITIAL_WINDOW`] bytes of credit.
    Started {
        /// The request.
        id: RequestId,
        /// Process id of an exec.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
    },
    /// The final, successful answer to a request; ends it.
    Reply {
        /// The request.
        id: RequestId,
        /// The answer.
        reply: Reply,
    },
    /// Stream bytes: `stdout`/`stderr` of an exec or of service logs, `file` content of a
    /// `cp` download.
    Data {
        /// The request.
        id: RequestId,
        /// Which stream.
        channel: Channel,
        /// At most [`super::MAX_DATA_CHUNK`] bytes. Received data shares the buffer its
        /// record was decrypted into ([`super::data`]).
        data: Bytes,
    },
    /// No more data on this channel.
    Eof {
        /// The request.
        id: RequestId,
        /// The channel that ended.
        channel: Channel,
    },
    /// Header of the next entry of a `cp` download.
    CpEntry {
        /// The cp request.
        id: RequestId,
        /// The entry.
        entry: CpEntry,
    },
    /// End of a `cp` download file entry, right after its content: the receiver checks that it got
    /// exactly the announced size, then puts the file in place. (No digest: the session's AEAD
    /// already protects the content.)
    CpFileEnd {
        /// The cp request.
        id: RequestId,
    },
    /// All entries of a `cp` download were sent (the request ends with a reply).
    CpDone {
        /// The cp request.
        id: RequestId,
    },
    /// The exec'd process ended; ends the request.
    Exit {
        /// The exec request.
        id: RequestId,
        /// How it ended.
        status: ExitStatus,
    },
    /// The server consumed `bytes` of the client's data on this request.
    WindowUpdate {
        /// The request.
        id: RequestId,
        /// Additional credit.
        bytes: u32,
    },
    /// A request failed (ends it), or with `id` 0 the connection failed.
    Error {
        /// The request, or 0 for the connection.
        id: RequestId,
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// The client's first message. Unknown fields are ignored here (and only here) so a newer
/// client can still negotiate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    /// Highest protocol version the client speaks.
    pub version: u16,
    /// Capabilities the client wants; the server grants a subset.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Free-form client name and version, for logs (e.g. `enclave-ctl 0.1.0`).
    #[serde(default)]
    pub client: String,
}

/// The server's answer to the hello. Unknown fields are ignored, as in [`ClientHello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    /// The version both sides speak from now on: `min(client's, server's)`.
    pub version: u16,
    /// Who answered.
    pub enclave: EnclaveInfo,
    /// The Noise protocol of the handshake that follows ([`super::secure::NOISE_PARAMS`]) on
    /// the host-facing channel; absent on the in-enclave socket, whose file mode is what
    /// authenticates its clients. A client expecting one and getting the other closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<String>,
}

/// Facts about the enclave, in the server hello and the `info` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnclaveInfo {
    /// Server software and version (e.g. `enclave-init 0.1.0`).
    pub server: String,
    /// Name of the enclave from its spec, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Milliseconds since enclave-init started.
    pub uptime_ms: u64,
}

/// Proof of possession of an authorized Ed25519 key; see [`super::auth`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The raw Ed25519 public key (it is also the key's id: the server looks it up in its
    /// authorized set).
    #[serde(with = "serde_bytes")]
    pub public_key: [u8; 32],
    /// Ed25519 signature over the transcript (domain and handshake hash).
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// A capability the server may grant. Decided inside the enclave from the measured spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Capability {
    /// `exec`: run commands in the enclave (`debug.exec` in the spec).
    #[serde(rename = "debug.exec")]
    Exec,
    /// `cp`: copy files in and out (`debug.cp` in the spec).
    #[serde(rename = "debug.cp")]
    Cp,
    /// `attest` with a caller-chosen `public_key` or `user_data` (`debug.attest` in the spec).
    #[serde(rename = "debug.attest")]
    Attest,
    /// A capability this version does not know (from a newer peer); never granted.
    #[serde(other, rename = "unknown")]
    Unknown,
}

impl Capability {
    /// The debug capabilities `debug` grants, sorted: what the control server may grant to an
    /// authenticated peer, and what enclave-init extends into PCR31 at boot
    /// ([`crate::debug_pcr::debug_marker`]).
    pub fn granted_by(debug: &enclave_spec::DebugSpec) -> Vec<Capability> {
        let mut caps = Vec::new();
        if debug.exec {
            caps.push(Capability::Exec);
        }
        if debug.cp {
            caps.push(Capability::Cp);
        }
        if debug.attest {
            caps.push(Capability::Attest);
        }
        caps.sort_unstable();
        caps
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::Exec => "debug.exec",
            Capability::Cp => "debug.cp",
            Capability::Attest => "debug.attest",
            Capability::Unknown => "unknown",
        })
    }
}

/// The byte streams of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Standard input of an exec (client to server).
    Stdin,
    /// Standard output of an exec or a service (server to client).
    Stdout,
    /// Standard error of an exec or a service (server to client).
    Stderr,
    /// Content of the current `cp` file entry (either direction).
    File,
}

/// Why a request or the connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The needed capability was not granted.
    PermissionDenied,
    /// Authentication is required first (closes the connection).
    AuthRequired,
    /// The signature or key was not accepted (closes the connection).
    AuthFailed,
    /// No protocol version in common (closes the connection).
    UnsupportedVersion,
    /// The request is malformed or invalid (bad path, empty argv, ...).
    BadRequest,
    /// What the request names does not exist.
    NotFound,
    /// The request conflicts with the current state (service already running, ...).
    Conflict,
    /// Too many requests in progress on this connection.
    TooManyStreams,
    /// A peer broke flow control (closes the connection).
    FlowControl,
    /// A message out of order or undecodable (closes the connection).
    Protocol,
    /// The request was cancelled by the client.
    Cancelled,
    /// Anything else that went wrong in the server.
    Internal,
    /// A code this version does not know (from a newer peer).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Whether the connection is closed after an error with this code.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::AuthRequired
                | ErrorCode::AuthFailed
                | ErrorCode::UnsupportedVersion
                | ErrorCode::FlowControl
                | ErrorCode::Protocol
        )
    }
}
