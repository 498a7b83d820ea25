//! Frames: a `u32` big-endian payload length followed by that many payload bytes.
//!
//! The length is checked against [`MAX_FRAME_LEN`] as soon as its four bytes are known, before
//! any buffer is sized from it, so a hostile prefix cannot make either side allocate. A zero
//! length is refused too: no message encodes to nothing, and refusing it keeps a stream of zero
//! bytes from being an endless source of empty frames.

use std::io::{self, Read, Write};

use super::MAX_FRAME_LEN;

/// Length of the frame header (the big-endian `u32` length).
pub const HEADER_LEN: usize = 4;

/// One frame's payload (a CBOR-encoded message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    payload: Vec<u8>,
}

impl Frame {
    /// Wraps a payload, refusing an empty or oversize one.
    pub fn new(payload: Vec<u8>) -> Result<Self, FrameError> {
        check_len(payload.len() as u64)?;
        Ok(Self { payload })
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The frame as it goes on the wire: header then payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        // The constructor bounded the length to MAX_FRAME_LEN, so it fits a u32.
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    Oversize {
        /// The announced length.
        len: u64,
    },
    /// The length prefix is zero.
    #[error("empty frame")]
    Empty,
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame ({buffered} bytes of an unfinished frame)")]
    Truncated {
        /// Bytes of the unfinished frame (header included) that were received.
        buffered: usize,
    },
    /// The decoder already failed; the connection must be closed.
    #[error("frame decoder failed earlier; the connection is unusable")]
    Poisoned,
    /// Reading or writing failed.
    #[error("frame i/o: {0}")]
    Io(#[from] io::Error),
}

fn check_len(len: u64) -> Result<(), FrameError> {
    if len == 0 {
        Err(FrameError::Empty)
    } else if len > u64::from(MAX_FRAME_LEN) {
        Err(FrameError::Oversize { len })
    } else {
        Ok(())
    }
}

/// Incremental, sans-IO frame decoder: feed it whatever bytes arrived with [`push`], take the
/// complete frames out with [`next_frame`]. Usable from blocking, async or fuzzing code alike.
///
/// After an error the decoder is poisoned: the byte stream has lost its framing, so the only
/// safe thing is to close the connection.
///
/// [`push`]: FrameDecoder::push
/// [`next_frame`]: FrameDecoder::next_frame
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`; consumed bytes are dropped lazily so that many
    /// small frames in one push cost one copy, not one per frame.
    start: usize,
    poisoned: bool,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.poisoned {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Number of received bytes not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        let avail = &self.buf[self.start..];
        let Some(header) = avail.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header);
        if let Err(e) = check_len(u64::from(len)) {
            self.poison();
            return Err(e);
        }
        let total = HEADER_LEN + len as usize;
        let Some(frame) = avail.get(HEADER_LEN..total) else {
            return Ok(None);
        };
        let payload = frame.to_vec();
        self.start += total;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(Frame { payload }))
    }

    /// Call when the peer closed its side: an error if an unfinished frame is buffered.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.poisoned {
            return Err(FrameError::Poisoned);
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    fn poison(&mut self) {
        self.poisoned = true;
        self.buf = Vec::new();
        self.start = 0;
    }
}

/// Reads one frame from a blocking reader. `Ok(None)` on a clean end of stream (between
/// frames); [`FrameError::Truncated`] when the stream ends inside one.
pub fn read_frame(reader: &mut impl Read) -> Result<Option<Frame>, FrameError> {
    read_frame_limited(reader, MAX_FRAME_LEN)
}

/// [`read_frame`] with a lower bound than [`MAX_FRAME_LEN`] (a server reading a peer that has
/// not proven a key yet allocates no more than this for it): a longer frame is `Oversize`.
pub fn read_frame_limited(
    reader: &mut impl Read,
    max_len: u32,
) -> Result<Option<Frame>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(reader, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(FrameError::Truncated { buffered: got });
    }
    let len = u32::from_be_bytes(header);
    check_len(u64::from(len))?;
    if len > max_len {
        return Err(FrameError::Oversize {
            len: u64::from(len),
        });
    }
    // Only now, with the length bounded, is the buffer sized from it.
    let mut payload = vec![0u8; len as usize];
    let got = read_full(reader, &mut payload)?;
    if got < payload.len() {
        return Err(FrameError::Truncated {
            buffered: HEADER_LEN + got,
        });
    }
    Ok(Some(Frame { payload }))
}

/// Writes one frame (header and payload in a single write, so frames written by threads that
/// share a locked writer never interleave) and flushes.
pub fn write_frame(writer: &mut impl Write, payload: &[u8]) -> Result<(), FrameError> {
    check_len(payload.len() as u64)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    writer.write_all(&out)?;
    writer.flush()?;
    Ok(())
}

/// Like `read_exact`, but reports how many bytes arrived before end of stream instead of
/// failing, so the caller can tell a clean close from a truncated frame.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
