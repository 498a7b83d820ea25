//! `cp` both ways: [`Client::cp_to`] uploads a local file or tree into an enclave directory,
//! [`Client::cp_from`] downloads an enclave file or tree into a local directory. The
//! filesystem work is [`super::tree`]'s, the same code the enclave uses.

use std::path::Path;

use super::tree::{self, SourceEntry, TreeSink, TreeWriter};
use super::{Client, ClientError};
use crate::wire::{Channel, ClientMessage, CpEntry, Reply, Request, RequestId, ServerMessage};

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

    fn data(&mut self, data: Vec<u8>) -> Result<(), ClientError> {
        let n = data.len() as u64;
        self.client.send(&ClientMessage::Data {
            id: self.id,
            channel: Channel::File,
            data,
        })?;
        (self.progress)(n);
        Ok(())
    }

    fn file_end(&mut self, sha256: [u8; 32]) -> Result<(), ClientError> {
        self.client.send(&ClientMessage::CpFileEnd {
            id: self.id,
            sha256,
        })
    }
}

fn complete(reply: Reply) -> CpStats {
    match reply {
        Reply::CpComplete { entries, bytes } => CpStats { entries, bytes },
        _ => CpStats::default(),
    }
}

impl Client {
    /// Copies the local file or tree `src` into the enclave directory `dest` (absolute, must
    /// exist). `progress` gets the content bytes as they are sent.
    pub fn cp_to(
        &mut self,
        src: &Path,
        dest: &str,
        progress: impl FnMut(u64),
    ) -> Result<CpStats, ClientError> {
        let entries = tree::scan(src)?;
        self.cp_entries_to(&entries, dest, progress)
    }

    /// [`cp_to`](Self::cp_to) of entries already scanned (e.g. to size a progress bar).
    pub fn cp_entries_to(
        &mut self,
        entries: &[SourceEntry],
        dest: &str,
        progress: impl FnMut(u64),
    ) -> Result<CpStats, ClientError> {
        let id = self.start(Request::CpTo {
            dest: dest.to_owned(),
        })?;
        let mut up = Upload {
            client: self,
            id,
            progress,
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
        if let Err(e) = tree::send_tree(entries, &mut up) {
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

    /// Copies the enclave file or tree `src` (absolute) into the local directory `dest`.
    pub fn cp_from(
        &mut self,
        src: &str,
        dest: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<CpStats, ClientError> {
        let mut writer = TreeWriter::open(dest)?;
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
                ServerMessage::CpEntry { id: rid, entry } if rid == id => writer.entry(&entry),
                ServerMessage::Data { id: rid, data, .. } if rid == id => {
                    let r = writer.data(&data);
                    if r.is_ok() {
                        progress(data.len() as u64);
                        consumed += data.len() as u32;
                        if consumed >= CP_WINDOW / 4 {
                            let bytes = std::mem::take(&mut consumed);
                            self.send(&ClientMessage::WindowUpdate { id, bytes })?;
                        }
                    }
                    r
                }
                ServerMessage::CpFileEnd { id: rid, sha256 } if rid == id => {
                    writer.file_end(&sha256)
                }
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
