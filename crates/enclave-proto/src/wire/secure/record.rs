//! The record layer after the handshake: the control protocol's frames, as a byte stream, cut
//! into Noise transport messages.
//!
//! ```text
//! +---------------------+-------------------------------------------------+
//! | length: u16, big end| AES-256-GCM ciphertext of ≤ 65519 bytes + tag(16)|
//! +---------------------+-------------------------------------------------+
//! ```
//!
//! Each direction has its own key and counts its records from 0; the count is the nonce, so a
//! record dropped, repeated, reordered or changed fails to decrypt and the stream ends with an
//! `InvalidData` error. Records carry no type: the frames above delimit messages, and the
//! stream ending between records is an ordinary close (the protocol above knows whether a
//! request was still open).
//!
//! The writer buffers: [`SecureWriter::write`] fills a record and seals it when full;
//! [`SecureWriter::flush`] seals what is pending and writes every sealed record in one go. So a
//! burst of small frames costs one record and one `write`, and bulk data goes in full records.
//! A sender that reads a file's chunk into a buffer with room for the record around it has the
//! record sealed there ([`SecureWriter::write_frames_in_place`]): the chunk is never copied.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::RecordKeys;
use crate::wire::frame::{self, FrameError, HEADER_LEN};

/// Most plaintext bytes in one record: Noise's 65535-byte message limit minus the 16-byte tag.
pub const MAX_RECORD_PLAINTEXT: usize = 65535 - TAG_LEN;

const TAG_LEN: usize = 16;
/// Room a frame needs before it to be sealed where it lies: the record's length.
pub const ROOM_BEFORE: usize = 2;
/// Room a frame needs after it to be sealed where it lies: the record's tag.
pub const ROOM_AFTER: usize = TAG_LEN;
/// Sealed records are written once this many bytes are waiting.
const WRITE_BATCH: usize = 256 << 10;
/// At most this much pending plaintext is sealed on its own to let a large write go direct.
const SMALL_PENDING: usize = 4 << 10;
/// The reader's buffer under the records.
const READ_BUFFER: usize = 4 << 10;
/// Buffers of earlier records the reader keeps to reuse once their frames are dropped: fresh
/// memory for every record costs page faults and zeroing, more than the decryption.
const RECYCLED: usize = 8;

/// `write_all` of several buffers in as few vectored writes as the stream takes.
fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(super) fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// The sending half: frames in, records out.
pub struct SecureWriter<W: Write> {
    inner: W,
    keys: Arc<RecordKeys>,
    nonce: u64,
    plain: Vec<u8>,
    sealed: Vec<u8>,
}

impl<W: Write> SecureWriter<W> {
    /// Encrypts what is written to it with the sending key of `keys` onto `inner`.
    pub fn new(inner: W, keys: Arc<RecordKeys>) -> Self {
        Self {
            inner,
            keys,
            nonce: 0,
            // Grown as records need them: an idle connection costs little memory.
            plain: Vec::new(),
            sealed: Vec::new(),
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The underlying stream, mutably (what was written to a `Vec`, in tests and fuzzing).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Seals what is pending into a record.
    fn seal(&mut self) -> io::Result<()> {
        if self.plain.is_empty() {
            return Ok(());
        }
        let plain = std::mem::take(&mut self.plain);
        let result = self.seal_parts(&[&plain]);
        self.plain = plain;
        self.plain.clear();
        result
    }

    /// Seals `parts` (1 to [`MAX_RECORD_PLAINTEXT`] bytes in all) into one record after those
    /// waiting: copied once, into the record's place, and encrypted there.
    fn seal_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let start = self.sealed.len();
        self.sealed.extend_from_slice(&[0, 0]);
        for part in parts {
            self.sealed.extend_from_slice(part);
        }
        let tag = self.keys.seal(self.nonce, &mut self.sealed[start + 2..])?;
        self.sealed.extend_from_slice(tag.as_ref());
        let len = self.sealed.len() - start - 2;
        // At most MAX_RECORD_PLAINTEXT + TAG_LEN = 65535.
        self.sealed[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
        self.nonce = self
            .nonce
            .checked_add(1)
            .ok_or_else(|| invalid("record counter exhausted"))?;
        Ok(())
    }

    /// Writes one whole frame so that the reader finds it in one record when it fits one: what
    /// is pending is sealed first if the frame would not fit after it, and a large frame is
    /// sealed in a record of its own. Small frames still share records.
    pub fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.write_frame_parts(&[frame])
    }

    /// [`write_frame`](Self::write_frame) of a frame in pieces (a header and the data it
    /// frames), each copied once, into the record.
    pub fn write_frame_parts(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > MAX_RECORD_PLAINTEXT {
            return parts.iter().try_for_each(|p| self.write_all(p));
        }
        if self.plain.len() + total > MAX_RECORD_PLAINTEXT {
            self.seal()?;
        }
        if self.plain.is_empty() && total > SMALL_PENDING {
            self.seal_parts(parts)?;
        } else {
            parts.iter().for_each(|p| self.plain.extend_from_slice(p));
        }
        if self.sealed.len() >= WRITE_BATCH {
            self.write_sealed()?;
        }
        Ok(())
    }

    /// Writes each frame laid out in `frames` (the frame in `buf[ROOM_BEFORE..buf.len() -
    /// ROOM_AFTER]`, 1 to [`MAX_RECORD_PLAINTEXT`] bytes) as a record of its own, sealed where
    /// it lies, after everything written before them, all in one vectored write: chunks read
    /// into their place are never copied.
    pub fn write_frames_in_place(&mut self, frames: &mut [&mut [u8]]) -> io::Result<()> {
        let fits = |buf: &&mut [u8]| {
            buf.len()
                .checked_sub(ROOM_BEFORE + ROOM_AFTER)
                .is_some_and(|n| (1..=MAX_RECORD_PLAINTEXT).contains(&n))
        };
        if !frames.iter().all(fits) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a frame sealed in place must fit one record, with room around it",
            ));
        }
        self.seal()?;
        for buf in frames.iter_mut() {
            let frame_len = buf.len() - ROOM_BEFORE - ROOM_AFTER;
            let (length, rest) = buf.split_at_mut(ROOM_BEFORE);
            let (body, tag_room) = rest.split_at_mut(frame_len);
            let tag = self.keys.seal(self.nonce, body)?;
            tag_room.copy_from_slice(tag.as_ref());
            // At most MAX_RECORD_PLAINTEXT + TAG_LEN = 65535.
            length.copy_from_slice(&((frame_len + TAG_LEN) as u16).to_be_bytes());
            self.nonce = self
                .nonce
                .checked_add(1)
                .ok_or_else(|| invalid("record counter exhausted"))?;
        }
        let mut slices: Vec<IoSlice<'_>> = std::iter::once(&self.sealed[..])
            .chain(frames.iter().map(|f| &f[..]))
            .filter(|b| !b.is_empty())
            .map(IoSlice::new)
            .collect();
        write_all_vectored(&mut self.inner, &mut slices)?;
        self.sealed.clear();
        Ok(())
    }

    fn write_sealed(&mut self) -> io::Result<()> {
        if !self.sealed.is_empty() {
            self.inner.write_all(&self.sealed)?;
            self.sealed.clear();
        }
        Ok(())
    }
}

impl<W: Write> Write for SecureWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A whole record's worth: what little is pending goes in a record of its own, and the
        // caller's bytes are sealed straight from where they are, one copy less for bulk data.
        if buf.len() >= MAX_RECORD_PLAINTEXT && self.plain.len() <= SMALL_PENDING {
            self.seal()?;
            self.seal_parts(&[&buf[..MAX_RECORD_PLAINTEXT]])?;
            if self.sealed.len() >= WRITE_BATCH {
                self.write_sealed()?;
            }
            return Ok(MAX_RECORD_PLAINTEXT);
        }
        let n = buf.len().min(MAX_RECORD_PLAINTEXT - self.plain.len());
        self.plain.extend_from_slice(&buf[..n]);
        if self.plain.len() == MAX_RECORD_PLAINTEXT {
            self.seal()?;
            if self.sealed.len() >= WRITE_BATCH {
                self.write_sealed()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.seal()?;
        self.write_sealed()?;
        self.inner.flush()
    }
}

/// The receiving half: records in, frames out.
pub struct SecureReader<R: Read> {
    inner: BufReader<R>,
    keys: Arc<RecordKeys>,
    nonce: u64,
    /// Opened plaintext of the current record, each record in a buffer of its own: the frames
    /// [`read_frame`](Self::read_frame) returns share it. `plain[pos..]` is unread.
    plain: Bytes,
    pos: usize,
    /// Earlier records' buffers, oldest first.
    recycled: VecDeque<Bytes>,
}

impl<R: Read> SecureReader<R> {
    /// Decrypts records read from `inner` with the receiving key of `keys`.
    pub fn new(inner: R, keys: Arc<RecordKeys>) -> Self {
        Self {
            // Small: it batches the headers and small records; a record's body larger than it
            // is read straight into its buffer (BufReader passes large reads through), one
            // copy less for bulk data.
            inner: BufReader::with_capacity(READ_BUFFER, inner),
            keys,
            nonce: 0,
            plain: Bytes::new(),
            pos: 0,
            recycled: VecDeque::with_capacity(RECYCLED),
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// Reads and opens the next record; false at a clean end of stream (between records).
    fn next_record(&mut self) -> io::Result<bool> {
        if self.inner.fill_buf()?.is_empty() {
            return Ok(false);
        }
        let mut header = [0u8; 2];
        self.inner.read_exact(&mut header).map_err(truncated)?;
        let len = usize::from(u16::from_be_bytes(header));
        if len <= TAG_LEN {
            // An empty record is never sent: one would be a way to make the reader spin.
            return Err(invalid("control record without plaintext"));
        }
        // Sized for this record: an idle connection's buffers stay small.
        let mut plain = self.buffer(len);
        self.inner.read_exact(&mut plain).map_err(truncated)?;
        let n = self.keys.open(self.nonce, &mut plain)?.len();
        self.nonce = self
            .nonce
            .checked_add(1)
            .ok_or_else(|| invalid("record counter exhausted"))?;
        plain.truncate(n);
        let done = std::mem::replace(&mut self.plain, plain.freeze());
        if !done.is_empty() {
            if self.recycled.len() == RECYCLED {
                self.recycled.pop_front();
            }
            self.recycled.push_back(done);
        }
        self.pos = 0;
        Ok(true)
    }

    /// A buffer of `len` bytes to read a record into: the oldest earlier record's that nothing
    /// else holds any more, or a new one.
    fn buffer(&mut self, len: usize) -> BytesMut {
        for _ in 0..self.recycled.len() {
            let Some(old) = self.recycled.pop_front() else {
                break;
            };
            match old.try_into_mut() {
                Ok(mut buf) if buf.capacity() >= len => {
                    // Only bytes beyond the old length are zeroed; the record overwrites all.
                    buf.resize(len, 0);
                    return buf;
                }
                Ok(_) => {}
                Err(held) => self.recycled.push_back(held),
            }
        }
        BytesMut::zeroed(len)
    }

    /// Reads one frame of at most `max_len` bytes, as [`frame::read_frame_limited`] does. A
    /// frame inside one record (as [`SecureWriter::write_frame`] puts it) is returned as a
    /// slice of the record's buffer, without a copy; one that spans records is assembled.
    pub fn read_frame(&mut self, max_len: u32) -> Result<Option<Bytes>, FrameError> {
        if self.pos == self.plain.len() && !self.next_record()? {
            return Ok(None);
        }
        let avail = &self.plain[self.pos..];
        if let Some(header) = avail.first_chunk::<HEADER_LEN>() {
            let len = u32::from_be_bytes(*header);
            let end = HEADER_LEN + len as usize;
            if len > 0 && len <= max_len && end <= avail.len() {
                let payload = self.plain.slice(self.pos + HEADER_LEN..self.pos + end);
                self.pos += end;
                return Ok(Some(payload));
            }
        }
        // Across records, or a bad length: the generic reader assembles it or says what is wrong.
        let frame = frame::read_frame_limited(self, max_len)?;
        Ok(frame.map(|f| Bytes::from(f.into_payload())))
    }
}

fn truncated(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        invalid("the stream ended inside a control record")
    } else {
        e
    }
}

impl<R: Read> Read for SecureReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos == self.plain.len() && !self.next_record()? {
            return Ok(0);
        }
        let n = buf.len().min(self.plain.len() - self.pos);
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
