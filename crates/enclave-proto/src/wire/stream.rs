//! A connection's two halves once it is set up: frames in clear (the in-enclave socket) or in
//! encrypted records (the host-facing channel). Both ends of the protocol read and write frames
//! through these, so the encrypted path's zero-copy framing ([`SecureReader::read_frame`],
//! [`SecureWriter::write_frame`]) serves the client and the server alike.

use std::io::{self, BufWriter, Read, Write};
use std::ops::Range;

use bytes::Bytes;

use super::codec::{encode_data_head, MessageError};
use super::data::{DATA_PREFIX_MAX, RECORD_DATA_CHUNK};
use super::frame::{read_frame_limited, FrameError, HEADER_LEN};
use super::message::{Channel, RequestId};
use super::secure::record::{ROOM_AFTER, ROOM_BEFORE};
use super::secure::{SecureReader, SecureWriter};

/// Coalesces the small frames written in clear between flushes; larger frames bypass it.
const CLEAR_BUFFER: usize = 16 << 10;

/// Where a `Data` frame laid out by [`lay_out_data`] has its bytes: after the room for its
/// record's length, the frame header and the longest `Data` prefix.
pub const LAID_OUT_DATA_AT: usize = ROOM_BEFORE + HEADER_LEN + DATA_PREFIX_MAX;
/// A buffer that holds any `Data` frame [`lay_out_data`] lays out: up to
/// [`RECORD_DATA_CHUNK`] bytes and the room around them.
pub const LAID_OUT_BUFFER: usize = LAID_OUT_DATA_AT + RECORD_DATA_CHUNK + ROOM_AFTER;

/// Lays out a `Data` message of request `id` on `channel` around the `len` bytes the caller
/// put at `buf[LAID_OUT_DATA_AT..]` (a file's chunk, read there): its frame head right before
/// them, room for the record around. Returns the part of `buf` to give
/// [`FrameWriter::write_frames_in_place`].
pub fn lay_out_data(
    buf: &mut [u8],
    id: RequestId,
    channel: Channel,
    len: usize,
) -> Result<Range<usize>, MessageError> {
    let mut head = Vec::with_capacity(HEADER_LEN + DATA_PREFIX_MAX);
    encode_data_head(id, channel, len, &mut head)?;
    let end = LAID_OUT_DATA_AT + len + ROOM_AFTER;
    if len > RECORD_DATA_CHUNK || end > buf.len() {
        return Err(MessageError::Invalid(
            "data larger than its laid-out buffer",
        ));
    }
    let start = LAID_OUT_DATA_AT - head.len();
    buf[start..LAID_OUT_DATA_AT].copy_from_slice(&head);
    Ok(start - ROOM_BEFORE..end)
}

/// The frame inside a buffer laid out with room around it; `None` when there is none.
fn frame_in(buf: &[u8]) -> Option<&[u8]> {
    let end = buf.len().checked_sub(ROOM_AFTER)?;
    buf.get(ROOM_BEFORE..end).filter(|f| !f.is_empty())
}

/// The receiving half.
pub enum FrameReader<R: Read> {
    /// Frames straight off the stream.
    Clear(R),
    /// Frames inside decrypted records.
    Secure(SecureReader<R>),
}

impl<R: Read> FrameReader<R> {
    /// The next frame's payload, at most `max_len` bytes; `Ok(None)` at a clean end of stream.
    pub fn read_frame(&mut self, max_len: u32) -> Result<Option<Bytes>, FrameError> {
        match self {
            FrameReader::Clear(r) => {
                Ok(read_frame_limited(r, max_len)?.map(|f| Bytes::from(f.into_payload())))
            }
            FrameReader::Secure(r) => r.read_frame(max_len),
        }
    }
}

/// The sending half: frames are buffered until [`flush`](Self::flush).
pub enum FrameWriter<W: Write> {
    /// Frames straight onto the stream.
    Clear(BufWriter<W>),
    /// Frames sealed into records.
    Secure(SecureWriter<W>),
}

impl<W: Write> FrameWriter<W> {
    /// Frames in clear on `w`.
    pub fn clear(w: W) -> Self {
        FrameWriter::Clear(BufWriter::with_capacity(CLEAR_BUFFER, w))
    }

    /// Writes one whole frame (header and payload, as [`super::codec::encode_frame`] makes it).
    pub fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.write_frame_parts(&[frame])
    }

    /// Writes one whole frame given in pieces (as [`super::codec::encode_frame_head`] makes it:
    /// the head, then a `Data` message's bytes from where they are).
    pub fn write_frame_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        match self {
            FrameWriter::Clear(w) => parts.iter().try_for_each(|p| w.write_all(p)),
            FrameWriter::Secure(w) => w.write_frame_parts(parts),
        }
    }

    /// Writes the frames laid out in `frames` with room around them ([`lay_out_data`]): on an
    /// encrypted stream sealed where they lie ([`SecureWriter::write_frames_in_place`]).
    pub fn write_frames_in_place(&mut self, frames: &mut [&mut [u8]]) -> io::Result<()> {
        match self {
            FrameWriter::Clear(w) => {
                if !frames.iter().all(|buf| frame_in(buf).is_some()) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "no frame with room around it",
                    ));
                }
                frames
                    .iter()
                    .try_for_each(|buf| w.write_all(frame_in(buf).unwrap_or_default()))
            }
            FrameWriter::Secure(w) => w.write_frames_in_place(frames),
        }
    }

    /// Sends everything written so far.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            FrameWriter::Clear(w) => w.flush(),
            FrameWriter::Secure(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, ServerMessage};

    #[test]
    fn in_clear_a_laid_out_frame_is_written_without_its_room_and_a_bad_list_not_at_all() {
        let mut buf = vec![0; LAID_OUT_BUFFER];
        buf[LAID_OUT_DATA_AT..LAID_OUT_DATA_AT + 3].copy_from_slice(b"abc");
        let frame = lay_out_data(&mut buf, 9, Channel::Stdout, 3).unwrap();
        let mut laid_out = buf[frame].to_vec();
        let mut w = FrameWriter::clear(Vec::new());
        let refused =
            w.write_frames_in_place(&mut [&mut laid_out, &mut [0; ROOM_BEFORE + ROOM_AFTER]]);
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        w.write_frames_in_place(&mut [&mut laid_out]).unwrap();
        let FrameWriter::Clear(w) = w else {
            unreachable!()
        };
        let written = w.into_inner().unwrap();
        let mut r = FrameReader::Clear(&written[..]);
        let payload = r.read_frame(u32::MAX).unwrap().unwrap();
        let msg: ServerMessage = decode(&payload).unwrap();
        assert_eq!(
            msg,
            ServerMessage::Data {
                id: 9,
                channel: Channel::Stdout,
                data: Bytes::from_static(b"abc")
            }
        );
        assert!(r.read_frame(u32::MAX).unwrap().is_none(), "one frame only");
    }
}
