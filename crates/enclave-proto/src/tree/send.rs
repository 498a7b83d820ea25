//! [`send_tree`]: sends a scanned tree through a [`TreeSink`], reopening every directory and
//! file relative to its (already checked) parent's descriptor and checking it against the scan.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::scan::open_checked;
use super::{SourceKind, SourceLink, SourceTree, TreeError};
use crate::wire::{CpEntry, RECORD_DATA_CHUNK};

/// Where [`send_tree`] sends: a connection with flow control, seen from either end.
pub trait TreeSink {
    /// The sink's error; local file errors convert into it.
    type Error: From<TreeError>;
    /// Sends an entry header.
    fn entry(&mut self, entry: CpEntry) -> Result<(), Self::Error>;
    /// Waits until content may be sent; returns how many bytes (at least 1).
    fn credit(&mut self) -> Result<usize, Self::Error>;
    /// Sends a chunk of content (at most the credit and [`crate::wire::MAX_DATA_CHUNK`]).
    fn data(&mut self, data: Bytes) -> Result<(), Self::Error>;
    /// Sends the end marker of a file entry, once all its content was sent.
    fn file_end(&mut self) -> Result<(), Self::Error>;
}

/// Reads the next chunk of a file being sent: exactly `buf.len()` bytes unless the file ended
/// (then an error: it shrank since it was scanned).
pub fn read_chunk(file: &mut File, buf: &mut [u8], what: &str) -> Result<(), TreeError> {
    file.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TreeError::refused(what, "file shrank while it was being copied")
        } else {
            TreeError::io(what, e)
        }
    })
}

/// Sends `tree` (from [`super::scan`]): each entry is opened (directories and files) relative to
/// its parent directory's descriptor without following a symlink, and must be the file the scan
/// saw ([`TreeError::Replaced`] otherwise, before its header is sent). A file's entry announces
/// the size it was scanned with; exactly that much content follows in chunks within the sink's
/// credit (a file that shrank meanwhile fails; bytes it grew by are not sent), then its end
/// marker. The caller sends `cp_done`.
pub fn send_tree<S: TreeSink>(tree: &SourceTree, sink: &mut S) -> Result<(), S::Error> {
    // The open directories of the current path: `dirs[d]` is the directory of depth `d + 1`
    // (the top is 1), the parent of the entries of depth `d + 2`.
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let chunks = ChunkPool::default();
    for entry in tree.entries() {
        let depth = entry.depth();
        let opened = if depth == 1 {
            let follow = tree.link == SourceLink::Follow;
            match entry.kind {
                SourceKind::Symlink(_) => None,
                _ => Some(open_checked(
                    tree.base.as_fd(),
                    &tree.top_name,
                    follow,
                    entry,
                )?),
            }
        } else {
            dirs.truncate(depth - 1);
            let parent = dirs.get(depth - 2).ok_or_else(|| {
                TreeError::refused(&entry.rel, "entry without its parent directory before it")
            })?;
            match entry.kind {
                SourceKind::Symlink(_) => None,
                _ => Some(open_checked(parent.as_fd(), entry.name(), false, entry)?),
            }
        };
        sink.entry(entry.to_entry())?;
        match (&entry.kind, opened) {
            (SourceKind::Dir, Some(fd)) => {
                dirs.truncate(depth - 1);
                dirs.push(fd);
            }
            (SourceKind::File { size }, Some(fd)) => {
                send_file(sink, &chunks, File::from(fd), *size, entry)?
            }
            _ => {}
        }
    }
    Ok(())
}

fn send_file<S: TreeSink>(
    sink: &mut S,
    chunks: &ChunkPool,
    mut file: File,
    size: u64,
    entry: &super::SourceEntry,
) -> Result<(), S::Error> {
    let mut remaining = size;
    while remaining > 0 {
        let credit = sink.credit()?;
        // Chunks whose frames fit one encrypted record: the receiver keeps them where they were
        // decrypted.
        let max = credit.min(RECORD_DATA_CHUNK) as u64;
        // At most RECORD_DATA_CHUNK: fits a usize.
        let n = usize::try_from(max.min(remaining)).unwrap_or(RECORD_DATA_CHUNK);
        let mut buf = chunks.take();
        read_chunk(&mut file, &mut buf[..n], &entry.rel)?;
        sink.data(chunks.share(buf, n))?;
        remaining -= n as u64;
    }
    sink.file_end()
}

/// Buffers of [`RECORD_DATA_CHUNK`] bytes that file content is read into, reused once the sink
/// dropped what it sent: a fresh allocation per chunk costs zeroing and, as the allocator hands
/// the memory back to the kernel and takes it again, page faults, both more than the read.
#[derive(Clone, Default)]
struct ChunkPool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Buffers kept for reuse: more than the sink holds at once while its writer keeps up.
const POOLED_CHUNKS: usize = 16;

impl ChunkPool {
    fn take(&self) -> Vec<u8> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        reused.unwrap_or_else(|| vec![0; RECORD_DATA_CHUNK])
    }

    /// The first `len` bytes of `buf`, shared; `buf` comes back once the last share is dropped.
    fn share(&self, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Chunk {
            buf,
            len,
            pool: self.clone(),
        })
    }
}

/// A chunk read into a pooled buffer.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
    pool: ChunkPool,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOLED_CHUNKS {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_buffer_comes_back_once_its_last_share_is_dropped() {
        let pool = ChunkPool::default();
        let mut buf = pool.take();
        buf[..3].copy_from_slice(b"abc");
        let at = buf.as_ptr();
        let shared = pool.share(buf, 3);
        let clone = shared.clone();
        drop(shared);
        assert!(pool.free.lock().unwrap().is_empty(), "still shared");
        assert_eq!(&clone[..], b"abc");
        drop(clone);
        let again = pool.take();
        assert_eq!(again.as_ptr(), at);
        assert_eq!(again.len(), RECORD_DATA_CHUNK);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_buffers() {
        let pool = ChunkPool::default();
        let chunks: Vec<Bytes> = (0..POOLED_CHUNKS + 4)
            .map(|_| pool.share(pool.take(), 1))
            .collect();
        drop(chunks);
        assert_eq!(pool.free.lock().unwrap().len(), POOLED_CHUNKS);
    }
}
