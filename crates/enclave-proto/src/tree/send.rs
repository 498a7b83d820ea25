//! [`send_tree`]: sends a scanned tree through a [`TreeSink`], reopening every directory and
//! file relative to its (already checked) parent's descriptor and checking it against the scan.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

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
    /// Sends the next `len` bytes of `file` (at most the credit and [`RECORD_DATA_CHUNK`]), read
    /// with [`read_chunk`] (`what` names the file in its errors) into the buffer they are sent
    /// from: a record sealed where they were read ([`crate::wire::lay_out_data`]).
    fn data_from(&mut self, file: &mut File, len: usize, what: &str) -> Result<(), Self::Error>;
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
            (SourceKind::File { size }, Some(fd)) => send_file(sink, File::from(fd), *size, entry)?,
            _ => {}
        }
    }
    Ok(())
}

fn send_file<S: TreeSink>(
    sink: &mut S,
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
        sink.data_from(&mut file, n, &entry.rel)?;
        remaining -= n as u64;
    }
    sink.file_end()
}
