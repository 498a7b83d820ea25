//! The host<->enclave control protocol, sans IO.
//!
//! Layers, bottom up (the full specification is `docs/protocol.md`):
//!
//! - [`frame`]: `u32` big-endian length prefix + payload, at most [`MAX_FRAME_LEN`] bytes; an
//!   incremental decoder usable from any IO model and blocking helpers.
//! - [`message`] / [`ops`]: the typed messages ([`ClientMessage`], [`ServerMessage`]) and the
//!   payloads of each operation; [`codec`] turns them into CBOR frame payloads and checks their
//!   limits.
//! - [`session`]: the per-connection state machine for each side: hello first, authentication
//!   when required, request ids, per-stream flow control. Every message sent or received goes
//!   through it, which is what makes malformed or out-of-order peers harmless.
//! - [`data`]: `Data` messages encoded and decoded without copying their bytes; [`stream`]: a
//!   connection's halves after set-up, frames in clear or in records.
//! - [`secure`]: the Noise handshake and the encrypted records of the host-facing channel;
//!   [`auth`]: the client's proof of a key over the handshake hash; [`path`]: the path rules
//!   of `cp`.
//!
//! Nothing here does IO except the blocking helpers [`frame::read_frame`],
//! [`frame::write_frame`], [`codec::read_message`] and [`codec::write_message`]; sockets live in
//! [`crate::transport`].

pub mod auth;
pub mod codec;
pub mod data;
pub mod frame;
pub mod fuzzing;
pub mod message;
pub mod ops;
pub mod path;
pub mod secure;
pub mod session;
pub mod stream;

pub use codec::{
    decode, decode_bytes, encode, encode_frame, encode_frame_head, read_message, write_message,
    MessageError,
};
pub use data::RECORD_DATA_CHUNK;
pub use frame::{read_frame, read_frame_limited, write_frame, Frame, FrameDecoder, FrameError};
pub use message::{
    Auth, Capability, Channel, ClientHello, ClientMessage, EnclaveInfo, ErrorCode, RequestId,
    ServerHello, ServerMessage,
};
pub use ops::{
    AttestRequest, ControlCounts, CpEntry, CpKind, ExecRequest, ExitStatus, HealthReport,
    HealthStatus, Reply, Request, ServiceRequest, ServiceState, ServiceStatus, WindowSize,
    MAX_HEALTH_DETAIL,
};
pub use session::{
    ClientConfig, ClientSession, RemoteTrust, Security, ServerConfig, ServerSession, SessionError,
    Trust, Verdict,
};
pub use stream::{lay_out_data, FrameReader, FrameWriter, LAID_OUT_BUFFER, LAID_OUT_DATA_AT};

/// The protocol version this code speaks. A peer announces the highest version it speaks in its
/// hello; the server answers with the version both will use.
pub const PROTOCOL_VERSION: u16 = 4;

/// The oldest protocol version this code still speaks. Version 1 had no encrypted session and
/// let anyone on the parent drive an enclave without a key: it is not spoken any more.
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// Hard maximum of a frame payload (the bytes after the length prefix): 1 MiB. A length prefix
/// above it is refused before anything is allocated.
pub const MAX_FRAME_LEN: u32 = 1 << 20;

/// Maximum number of payload bytes in one `Data` message: 64 KiB. Keeps a frame far below
/// [`MAX_FRAME_LEN`] and lets streams interleave fairly on one connection.
pub const MAX_DATA_CHUNK: usize = 64 << 10;

/// The flow-control window each direction of a stream starts with once the stream is started:
/// 256 KiB of `Data` payload may be sent before the first `WindowUpdate`.
pub const INITIAL_WINDOW: u32 = 256 << 10;

/// The largest window a receiver may grant (the sum of what is outstanding); more is a
/// flow-control error. Bounds what a receiver can be made to buffer.
pub const MAX_WINDOW: u32 = 16 << 20;

/// Largest frame a server reads from a peer that has not proven a key: the hellos, the
/// handshake (a Noise message is at most 65535 bytes), `auth`, `ping` and `info` all fit with
/// room to spare, and an unauthenticated peer can make the enclave allocate no more.
pub const MAX_UNAUTHENTICATED_FRAME: u32 = 68 << 10;

/// Maximum number of requests in progress at once on one connection.
pub const MAX_STREAMS: usize = 64;
