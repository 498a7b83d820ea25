//! Messages to and from frame payloads: one CBOR item (RFC 8949) per frame, as serde writes it
//! with `ciborium`.
//!
//! CBOR rather than a non-self-describing format because it lets every struct reject unknown
//! fields, lets the hellos ignore them (version negotiation), and keeps byte strings compact.
//! Decoding is strict: exactly one item, no trailing bytes, bounded nesting, and the structural
//! limits of [`WireMessage::check`] (request id not 0, data chunks at most
//! [`MAX_DATA_CHUNK`]). Semantic checks that depend on the connection's state are the
//! session's ([`super::session`]).

use std::io::{Read, Write};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::data;
use super::frame::{read_frame, write_frame, FrameError, HEADER_LEN};
use super::message::{Channel, ClientMessage, RequestId, ServerMessage};
use super::{MAX_DATA_CHUNK, MAX_FRAME_LEN};

/// Nesting depth accepted by the decoder. The deepest message is about 6 levels; the limit
/// keeps a hostile payload of nested arrays from exhausting the stack.
const RECURSION_LIMIT: usize = 24;

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// The payload is not a valid message (bad CBOR, unknown variant or field, wrong type...).
    #[error("undecodable message: {0}")]
    Decode(String),
    /// Bytes follow the message in the frame.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The message decoded but breaks a structural limit.
    #[error("invalid message: {0}")]
    Invalid(&'static str),
    /// Encoding failed (only for a message that breaks a limit or an I/O error).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The frame layer failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// A message type of this protocol.
pub trait WireMessage: Serialize + DeserializeOwned {
    /// Structural checks done right after decoding and before encoding.
    fn check(&self) -> Result<(), MessageError>;

    /// The message's request, channel and bytes when it is `Data`.
    fn as_data(&self) -> Option<(RequestId, Channel, &Bytes)>;

    /// The `Data` message of this direction.
    fn data(id: RequestId, channel: Channel, data: Bytes) -> Self;
}

fn check_data(id: u32, len: usize) -> Result<(), MessageError> {
    check_id(id)?;
    if len > MAX_DATA_CHUNK {
        return Err(MessageError::Invalid("data chunk larger than 64 KiB"));
    }
    Ok(())
}

/// A Noise message is at most 65535 bytes (the Noise specification's own limit).
fn check_noise(noise: &[u8]) -> Result<(), MessageError> {
    if noise.len() > 65535 {
        return Err(MessageError::Invalid(
            "handshake message larger than 65535 bytes",
        ));
    }
    Ok(())
}

fn check_id(id: u32) -> Result<(), MessageError> {
    if id == 0 {
        return Err(MessageError::Invalid("request id 0"));
    }
    Ok(())
}

impl WireMessage for ClientMessage {
    fn check(&self) -> Result<(), MessageError> {
        match self {
            ClientMessage::Data { id, data, .. } => check_data(*id, data.len()),
            ClientMessage::Handshake { noise } => check_noise(noise),
            other => other.request_id().map_or(Ok(()), check_id),
        }
    }

    fn as_data(&self) -> Option<(RequestId, Channel, &Bytes)> {
        match self {
            ClientMessage::Data { id, channel, data } => Some((*id, *channel, data)),
            _ => None,
        }
    }

    fn data(id: RequestId, channel: Channel, data: Bytes) -> Self {
        ClientMessage::Data { id, channel, data }
    }
}

impl WireMessage for ServerMessage {
    fn check(&self) -> Result<(), MessageError> {
        use ServerMessage as M;
        match self {
            // Error may carry id 0: it then addresses the connection.
            M::Hello(_) | M::Authenticated { .. } | M::Error { .. } => Ok(()),
            M::Handshake { noise } => check_noise(noise),
            M::Data { id, data, .. } => check_data(*id, data.len()),
            M::Started { id, .. }
            | M::Reply { id, .. }
            | M::Eof { id, .. }
            | M::CpEntry { id, .. }
            | M::CpFileEnd { id, .. }
            | M::CpDone { id }
            | M::Exit { id, .. }
            | M::WindowUpdate { id, .. } => check_id(*id),
        }
    }

    fn as_data(&self) -> Option<(RequestId, Channel, &Bytes)> {
        match self {
            ServerMessage::Data { id, channel, data } => Some((*id, *channel, data)),
            _ => None,
        }
    }

    fn data(id: RequestId, channel: Channel, data: Bytes) -> Self {
        ServerMessage::Data { id, channel, data }
    }
}

/// Encodes a message into a frame payload.
pub fn encode<M: WireMessage>(msg: &M) -> Result<Vec<u8>, MessageError> {
    msg.check()?;
    let mut out = Vec::new();
    ciborium::into_writer(msg, &mut out).map_err(|e| MessageError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes a frame payload into a message.
pub fn decode<M: WireMessage>(payload: &[u8]) -> Result<M, MessageError> {
    let mut rest = payload;
    let msg: M = ciborium::de::from_reader_with_recursion_limit(&mut rest, RECURSION_LIMIT)
        .map_err(|e| MessageError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(MessageError::TrailingBytes(rest.len()));
    }
    msg.check()?;
    Ok(msg)
}

/// [`decode`] of a payload in a shared buffer: a `Data` message's bytes stay in that buffer
/// ([`data::parse`]); every other message, and a `Data` message in any other layout, is decoded
/// the generic way.
pub fn decode_bytes<M: WireMessage>(payload: &Bytes) -> Result<M, MessageError> {
    match data::parse(payload) {
        Some((id, channel, bytes)) => Ok(M::data(id, channel, bytes)),
        None => decode(payload),
    }
}

/// A message encoded as a whole frame (length prefix and CBOR payload) in one buffer: the
/// same bytes as [`write_message`] writes, with the data of a `Data` message copied once.
pub fn encode_frame<M: WireMessage>(msg: &M) -> Result<Vec<u8>, MessageError> {
    let mut out = Vec::new();
    if let Some(data) = encode_frame_head(msg, &mut out)? {
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// The frame of `msg` in `head` (cleared first), except the bytes of a `Data` message, which
/// are returned to be written right after `head` from where they are: the frame is `head`
/// then those bytes.
pub fn encode_frame_head<'m, M: WireMessage>(
    msg: &'m M,
    head: &mut Vec<u8>,
) -> Result<Option<&'m Bytes>, MessageError> {
    if let Some((id, channel, bytes)) = msg.as_data() {
        encode_data_head(id, channel, bytes.len(), head)?;
        return Ok(Some(bytes));
    }
    msg.check()?;
    head.clear();
    head.extend_from_slice(&[0; HEADER_LEN]);
    ciborium::into_writer(msg, &mut *head).map_err(|e| MessageError::Encode(e.to_string()))?;
    finish_head(head, 0)?;
    Ok(None)
}

/// The frame head of a `Data` message of `len` bytes on `channel` of request `id` (either
/// direction: both encode it alike), for a sender that puts the bytes in place itself
/// ([`super::lay_out_data`]).
pub(super) fn encode_data_head(
    id: RequestId,
    channel: Channel,
    len: usize,
    head: &mut Vec<u8>,
) -> Result<(), MessageError> {
    check_data(id, len)?;
    head.clear();
    head.extend_from_slice(&[0; HEADER_LEN]);
    data::put_prefix(head, id, channel, len);
    finish_head(head, len)
}

/// Puts the frame's length (`head`'s payload and `data_len` bytes after it) into its header.
fn finish_head(head: &mut [u8], data_len: usize) -> Result<(), MessageError> {
    let len = head.len() - HEADER_LEN + data_len;
    if len == 0 || len > MAX_FRAME_LEN as usize {
        return Err(FrameError::Oversize { len: len as u64 }.into());
    }
    head[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Reads and decodes one message; `Ok(None)` on a clean end of stream.
pub fn read_message<M: WireMessage>(reader: &mut impl Read) -> Result<Option<M>, MessageError> {
    match read_frame(reader)? {
        Some(frame) => decode(frame.payload()).map(Some),
        None => Ok(None),
    }
}

/// Encodes and writes one message as one frame.
pub fn write_message<M: WireMessage>(writer: &mut impl Write, msg: &M) -> Result<(), MessageError> {
    let payload = encode(msg)?;
    write_frame(writer, &payload)?;
    Ok(())
}
