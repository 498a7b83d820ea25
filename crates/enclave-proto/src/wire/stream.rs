//! A connection's two halves once it is set up: frames in clear (the in-enclave socket) or in
//! encrypted records (the host-facing channel). Both ends of the protocol read and write frames
//! through these, so the encrypted path's zero-copy framing ([`SecureReader::read_frame`],
//! [`SecureWriter::write_frame`]) serves the client and the server alike.

use std::io::{self, BufWriter, Read, Write};

use bytes::Bytes;

use super::frame::{read_frame_limited, FrameError};
use super::secure::{SecureReader, SecureWriter};

/// Coalesces the small frames written in clear between flushes; larger frames bypass it.
const CLEAR_BUFFER: usize = 16 << 10;

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

    /// Sends everything written so far.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            FrameWriter::Clear(w) => w.flush(),
            FrameWriter::Secure(w) => w.flush(),
        }
    }
}
