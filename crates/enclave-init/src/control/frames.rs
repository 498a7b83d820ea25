//! `Data` frames laid out in buffers of their own: `cp_from` reads a file's chunk into one, and
//! the connection's writer thread seals the record where the chunk lies
//! ([`enclave_proto::wire::lay_out_data`]), so the chunk is never copied on its way out.
//! The buffers are reused: a fresh 64 KiB allocation per chunk costs zeroing and, as the
//! allocator hands the memory back to the kernel and takes it again, page faults, both more
//! than the read.

use std::fs::File;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use enclave_proto::tree::{self, TreeError};
use enclave_proto::wire::{lay_out_data, Channel, RequestId, LAID_OUT_BUFFER, LAID_OUT_DATA_AT};

/// Buffers kept for reuse: more than a connection's writer holds queued while it keeps up.
const POOLED: usize = 16;

/// Buffers of [`LAID_OUT_BUFFER`] bytes; a frame's buffer comes back when the frame is dropped.
#[derive(Default)]
pub(super) struct FramePool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// A `Data` frame in a pooled buffer, with room around it for its record.
pub(super) struct LaidOutFrame {
    buf: Vec<u8>,
    frame: Range<usize>,
    pool: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FramePool {
    /// The `Data` message of request `id` on `channel` carrying the next `len` bytes of `file`
    /// (at most [`enclave_proto::wire::RECORD_DATA_CHUNK`]), read as [`tree::read_chunk`] reads
    /// them; `what` names the file in errors.
    pub(super) fn read(
        &self,
        file: &mut File,
        len: usize,
        what: &str,
        id: RequestId,
        channel: Channel,
    ) -> Result<LaidOutFrame, TreeError> {
        let mut buf = self.take();
        let too_large = || TreeError::Refused {
            path: what.to_owned(),
            reason: "chunk larger than a record's data".to_owned(),
        };
        let data = buf
            .get_mut(LAID_OUT_DATA_AT..LAID_OUT_DATA_AT + len)
            .ok_or_else(too_large)?;
        tree::read_chunk(file, data, what)?;
        let frame = lay_out_data(&mut buf, id, channel, len).map_err(|_| too_large())?;
        Ok(LaidOutFrame {
            buf,
            frame,
            pool: self.free.clone(),
        })
    }

    fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| vec![0; LAID_OUT_BUFFER])
    }
}

impl LaidOutFrame {
    /// The frame and the room around it, as one of the frames
    /// [`enclave_proto::wire::FrameWriter::write_frames_in_place`] takes.
    pub(super) fn laid_out(&mut self) -> &mut [u8] {
        &mut self.buf[self.frame.clone()]
    }
}

impl Drop for LaidOutFrame {
    fn drop(&mut self) {
        let mut free = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOLED {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, Write};

    use enclave_proto::wire::{decode, ServerMessage, RECORD_DATA_CHUNK};

    use super::*;

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    #[test]
    fn a_frame_holds_the_files_next_bytes_as_a_data_message() {
        let pool = FramePool::default();
        let mut file = file_of(b"hello, world");
        let mut frame = pool.read(&mut file, 5, "f", 7, Channel::File).unwrap();
        let laid_out = frame.laid_out();
        // Room for the record's length before the frame (4-byte length, payload) and for the
        // tag after it.
        let payload = &laid_out[2 + 4..laid_out.len() - 16];
        let msg: ServerMessage = decode(payload).unwrap();
        let ServerMessage::Data { id, channel, data } = msg else {
            panic!("{msg:?}")
        };
        assert_eq!((id, channel, &data[..]), (7, Channel::File, &b"hello"[..]));
        let next = pool.read(&mut file, 7, "f", 7, Channel::File).unwrap();
        assert!(next.buf[LAID_OUT_DATA_AT..].starts_with(b", world"));
    }

    #[test]
    fn a_short_file_or_an_oversized_chunk_is_refused() {
        let pool = FramePool::default();
        let mut file = file_of(b"abc");
        let shrank = pool.read(&mut file, 4, "f", 1, Channel::File);
        assert!(shrank.is_err());
        let mut big = file_of(&vec![1; RECORD_DATA_CHUNK + 1]);
        let oversized = pool.read(&mut big, RECORD_DATA_CHUNK + 1, "f", 1, Channel::File);
        assert!(matches!(oversized, Err(TreeError::Refused { .. })));
    }

    #[test]
    fn buffers_come_back_when_their_frames_are_dropped_and_the_pool_is_bounded() {
        let pool = FramePool::default();
        let mut file = file_of(&[0; 64]);
        let frame = pool.read(&mut file, 1, "f", 1, Channel::File).unwrap();
        let at = frame.buf.as_ptr();
        drop(frame);
        let again = pool.read(&mut file, 1, "f", 1, Channel::File).unwrap();
        assert_eq!(again.buf.as_ptr(), at);
        drop(again);
        let frames: Vec<LaidOutFrame> = (0..POOLED + 4)
            .map(|_| pool.read(&mut file, 1, "f", 1, Channel::File).unwrap())
            .collect();
        drop(frames);
        assert_eq!(pool.free.lock().unwrap().len(), POOLED);
    }
}
