//! `cp` both ways: [`Client::cp_to`] uploads a local file or tree into an enclave directory (or
//! as a new name there), [`Client::cp_from`] downloads an enclave file or tree into a local
//! directory (or as a new name). The filesystem work is [`super::tree`]'s, the same code the
//! enclave uses: below the local path the user gave, no symlink is ever followed, and no
//! setuid/setgid bit is written.

use std::fs::File;
use std::path::Path;

use super::{Client, ClientError};
use crate::tree::{self, SourceLink, SourceTree, TreeError, TreeSink, TreeWriter};
use crate::wire::{
    lay_out_data, Channel, ClientMessage, CpEntry, CpKind, ErrorCode, Reply, Request, RequestId,
    ServerMessage, LAID_OUT_BUFFER, LAID_OUT_DATA_AT,
};

/// The window a download grants the enclave (the initial 256 KiB is too little to keep a fast
/// transport busy); credit is returned in batches of a quarter of it.
const CP_WINDOW: u32 = 4 << 20;

/// What a completed `cp` transferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpStats {
    /// Entries (files, directories, symlinks).
    pub entries: u64,
    /// File content bytes.
    pub bytes: u64,
}

struct Upload<'a, P: FnMut(u64)> {
    client: &'a mut Client,
    id: RequestId,
    progress: P,
    /// The buffer each chunk is read into and sealed in ([`LAID_OUT_BUFFER`] bytes).
    frame: Vec<u8>,
}

impl<P: FnMut(u64)> Upload<'_, P> {
    /// Handles a message arriving during the upload: credit, or the request's end.
    fn handle(&mut self, msg: ServerMessage) -> Result<Option<Reply>, ClientError> {
        match msg {
            ServerMessage::Error { id, code, message } if id == self.id => {
                Err(ClientError::Remote { code, message })
            }
            ServerMessage::Reply { id, reply } if id == self.id => Ok(Some(reply)),
            _ => Ok(None),
        }
    }
}

impl<P: FnMut(u64)> TreeSink for Upload<'_, P> {
    type Error = ClientError;

    fn entry(&mut self, entry: CpEntry) -> Result<(), ClientError> {
        self.client
            .send(&ClientMessage::CpEntry { id: self.id, entry })
    }

    fn credit(&mut self) -> Result<usize, ClientError> {
        loop {
            let credit = self.client.shared.lock().send_credit(self.id);
            match credit {
                Some(c) if c > 0 => return Ok(c as usize),
                None => return Err(ClientError::Closed),
                Some(_) => {
                    let msg = self.client.recv()?;
                    if self.handle(msg)?.is_some() {
                        return Err(crate::wire::SessionError::Unexpected("early reply").into());
                    }
                }
            }
        }
    }

    fn data_from(&mut self, file: &mut File, len: usize, what: &str) -> Result<(), ClientError> {
        let frame = &mut self.frame;
        let data = frame
            .get_mut(LAID_OUT_DATA_AT..LAID_OUT_DATA_AT + len)
            .ok_or_else(|| TreeError::refused(what, "chunk larger than a record's data"))?;
        tree::read_chunk(file, data, what)?;
        let laid_out = lay_out_data(frame, self.id, Channel::File, len)?;
        self.client
            .shared
            .send_laid_out(self.id, Channel::File, len, &mut frame[laid_out])?;
        (self.progress)(len as u64);
        Ok(())
    }

    fn file_end(&mut self) -> Result<(), ClientError> {
        self.client.send(&ClientMessage::CpFileEnd { id: self.id })
    }
}

fn complete(reply: Reply) -> CpStats {
    match reply {
        Reply::CpComplete { entries, bytes } => CpStats { entries, bytes },
        _ => CpStats::default(),
    }
}

/// Splits an absolute enclave path into its parent and last component (`/a/b` -> `/a`, `b`).
fn split_remote(dest: &str) -> Option<(&str, &str)> {
    let (parent, name) = dest.rsplit_once('/')?;
    Some((if parent.is_empty() { "/" } else { parent }, name))
}

impl Client {
    /// Copies the local file or tree `src` to the enclave path `dest` (absolute), with Docker's
    /// `cp` semantics: into `dest` when it is an existing directory, otherwise *as* `dest` (the
    /// top-level entry renamed to `dest`'s last component, created in its parent, which must
    /// exist; a file replaces an existing file, a directory never does). A symlink given as
    /// `src` is followed; symlinks below it are copied as links.
    /// `progress` gets the content bytes as they are sent.
    pub fn cp_to(
        &mut self,
        src: &Path,
        dest: &str,
        progress: impl FnMut(u64),
    ) -> Result<CpStats, ClientError> {
        let tree = tree::scan(src, SourceLink::Follow)?;
        self.cp_tree_to(&tree, dest, progress)
    }

    /// [`cp_to`](Self::cp_to) of a tree already scanned (e.g. to size a progress bar).
    pub fn cp_tree_to(
        &mut self,
        tree: &SourceTree,
        dest: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<CpStats, ClientError> {
        let mut started = false;
        let first = self.cp_attempt(tree, dest, &mut progress, &mut started);
        // Only a refusal of `dest` itself (before any entry was sent) means "not a directory".
        let not_dir = match &first {
            Err(e) if !started => {
                matches!(e.code(), Some(ErrorCode::NotFound | ErrorCode::Conflict))
            }
            _ => false,
        };
        let split = split_remote(dest).filter(|(_, name)| !name.is_empty());
        let (Some((parent, name)), true) = (split, not_dir) else {
            return first;
        };
        if tree.is_dir()
            && first.as_ref().err().and_then(ClientError::code) == Some(ErrorCode::Conflict)
        {
            return Err(ClientError::Remote {
                code: ErrorCode::Conflict,
                message: format!(
                    "{dest} exists and is not a directory: cannot copy a directory onto it"
                ),
            });
        }
        let renamed = tree.renamed(name)?;
        let mut started = false;
        match self.cp_attempt(&renamed, parent, &mut progress, &mut started) {
            Err(ClientError::Remote { code, message })
                if !started && matches!(code, ErrorCode::NotFound | ErrorCode::Conflict) =>
            {
                Err(ClientError::Remote {
                    code,
                    message: format!(
                        "{dest}: the destination's parent {parent} does not exist or is not a directory ({message})"
                    ),
                })
            }
            r => r,
        }
    }

    /// One `cp_to` request of `tree` into the directory `dest`; `started` tells whether the
    /// server accepted `dest`.
    fn cp_attempt(
        &mut self,
        tree: &SourceTree,
        dest: &str,
        progress: &mut dyn FnMut(u64),
        started: &mut bool,
    ) -> Result<CpStats, ClientError> {
        let id = self.start(Request::CpTo {
            dest: dest.to_owned(),
        })?;
        let mut up = Upload {
            client: self,
            id,
            progress,
            frame: vec![0; LAID_OUT_BUFFER],
        };
        // Wait for `started` (or the refusal).
        loop {
            match up.client.recv()? {
                ServerMessage::Started { id: rid, .. } if rid == id => break,
                msg => {
                    if let Some(reply) = up.handle(msg)? {
                        return Ok(complete(reply));
                    }
                }
            }
        }
        *started = true;
        if let Err(e) = tree::send_tree(tree, &mut up) {
            if !matches!(e, ClientError::Remote { .. }) {
                let _ = up.client.send(&ClientMessage::Cancel { id });
            }
            return Err(e);
        }
        up.client.send(&ClientMessage::CpDone { id })?;
        loop {
            let msg = up.client.recv()?;
            if let Some(reply) = up.handle(msg)? {
                return Ok(complete(reply));
            }
        }
    }

    /// Copies the enclave file or tree `src` (absolute) to the local path `dest`, with the
    /// semantics of [`cp_to`](Self::cp_to): into `dest` when it is a directory, otherwise as
    /// `dest` (its parent must exist; a directory never replaces an existing file).
    pub fn cp_from(
        &mut self,
        src: &str,
        dest: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<CpStats, ClientError> {
        let into = dest.is_dir() || dest.as_os_str().as_encoded_bytes().ends_with(b"/");
        let (mut writer, rename, exists) = match dest.file_name() {
            Some(name) if !into => {
                let name = name
                    .to_str()
                    .ok_or_else(|| TreeError::NotUtf8(dest.to_owned()))?;
                tree::check_top_name(name)?;
                let parent = match dest.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                if !parent.is_dir() {
                    return Err(TreeError::refused(
                        dest.display(),
                        format!(
                            "the destination's parent {} does not exist or is not a directory",
                            parent.display()
                        ),
                    )
                    .into());
                }
                let exists = dest.symlink_metadata().is_ok();
                (TreeWriter::open(parent)?, Some(name.to_owned()), exists)
            }
            _ => (TreeWriter::open(dest)?, None, false),
        };
        let id = self.start(Request::CpFrom {
            src: src.to_owned(),
        })?;
        let mut consumed = 0u32;
        loop {
            let msg = self.recv()?;
            let local = match msg {
                ServerMessage::Started { id: rid, .. } if rid == id => {
                    let bytes = CP_WINDOW - crate::wire::INITIAL_WINDOW;
                    self.send(&ClientMessage::WindowUpdate { id, bytes })?;
                    Ok(())
                }
                ServerMessage::CpEntry { id: rid, mut entry } if rid == id => match &rename {
                    Some(_) if exists && entry.kind == CpKind::Dir && !entry.path.contains('/') => {
                        Err(TreeError::refused(
                            dest.display(),
                            "exists and is not a directory: cannot copy a directory onto it",
                        ))
                    }
                    Some(name) => {
                        entry.path = tree::rename_top(&entry.path, name);
                        writer.entry(&entry)
                    }
                    None => writer.entry(&entry),
                },
                ServerMessage::Data { id: rid, data, .. } if rid == id => {
                    let len = data.len();
                    let r = writer.data(data);
                    if r.is_ok() {
                        progress(len as u64);
                        consumed += len as u32;
                        if consumed >= CP_WINDOW / 4 {
                            let bytes = std::mem::take(&mut consumed);
                            self.send(&ClientMessage::WindowUpdate { id, bytes })?;
                        }
                    }
                    r
                }
                ServerMessage::CpFileEnd { id: rid } if rid == id => writer.file_end(),
                ServerMessage::CpDone { id: rid } if rid == id => writer.finish().map(drop),
                ServerMessage::Reply { id: rid, reply } if rid == id => return Ok(complete(reply)),
                ServerMessage::Error {
                    id: rid,
                    code,
                    message,
                } if rid == id => return Err(ClientError::Remote { code, message }),
                _ => Ok(()),
            };
            if let Err(e) = local {
                let _ = self.send(&ClientMessage::Cancel { id });
                return Err(e.into());
            }
        }
    }
}
