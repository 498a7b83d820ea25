//! Stream messages of both directions reduced to what the state machine looks at.

use super::super::message::{Channel, ClientMessage, RequestId, ServerMessage};
use super::super::ops::{CpEntry, Reply};

/// A stream message reduced to what the state machine looks at.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind<'a> {
    Data { channel: Channel, len: usize },
    Eof(Channel),
    Resize,
    Signal,
    CpEntry(&'a CpEntry),
    CpFileEnd,
    CpDone,
    WindowUpdate(u32),
    Cancel,
    Started,
    Reply(&'a Reply),
    Exit,
    Error,
}

/// The id and kind of a client message; `None` for hello, handshake, auth and requests.
pub(super) fn client_kind(msg: &ClientMessage) -> Option<(RequestId, Kind<'_>)> {
    use ClientMessage as M;
    Some(match msg {
        M::Hello(_) | M::Handshake { .. } | M::Auth(_) | M::Request { .. } => return None,
        M::Data { id, channel, data } => (
            *id,
            Kind::Data {
                channel: *channel,
                len: data.len(),
            },
        ),
        M::Eof { id, channel } => (*id, Kind::Eof(*channel)),
        M::Resize { id, .. } => (*id, Kind::Resize),
        M::Signal { id, .. } => (*id, Kind::Signal),
        M::CpEntry { id, entry } => (*id, Kind::CpEntry(entry)),
        M::CpFileEnd { id, .. } => (*id, Kind::CpFileEnd),
        M::CpDone { id } => (*id, Kind::CpDone),
        M::WindowUpdate { id, bytes } => (*id, Kind::WindowUpdate(*bytes)),
        M::Cancel { id } => (*id, Kind::Cancel),
    })
}

/// The id and kind of a server message; `None` for hello, handshake and authenticated.
pub(super) fn server_kind(msg: &ServerMessage) -> Option<(RequestId, Kind<'_>)> {
    use ServerMessage as M;
    Some(match msg {
        M::Hello(_) | M::Handshake { .. } | M::Authenticated { .. } => return None,
        M::Started { id, .. } => (*id, Kind::Started),
        M::Reply { id, reply } => (*id, Kind::Reply(reply)),
        M::Data { id, channel, data } => (
            *id,
            Kind::Data {
                channel: *channel,
                len: data.len(),
            },
        ),
        M::Eof { id, channel } => (*id, Kind::Eof(*channel)),
        M::CpEntry { id, entry } => (*id, Kind::CpEntry(entry)),
        M::CpFileEnd { id, .. } => (*id, Kind::CpFileEnd),
        M::CpDone { id } => (*id, Kind::CpDone),
        M::Exit { id, .. } => (*id, Kind::Exit),
        M::WindowUpdate { id, bytes } => (*id, Kind::WindowUpdate(*bytes)),
        M::Error { id, .. } => (*id, Kind::Error),
    })
}
