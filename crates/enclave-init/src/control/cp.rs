//! `cp` in the enclave: `cp_to` writes received entries with the safe [`TreeWriter`] (on a
//! worker thread, so slow disks never stall the connection's reader), `cp_from` scans and sends
//! a tree within the client's credit.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use enclave_proto::client::tree::{self, TreeError, TreeSink, TreeWriter};
use enclave_proto::wire::{
    Channel, ClientMessage, CpEntry, ErrorCode, Reply, RequestId, ServerMessage,
};

use super::conn::{Active, Conn, THREAD_STACK};

/// The window a `cp_to` grants the client: the initial 256 KiB is too little to keep a fast
/// local transport busy while each chunk waits for the disk. Credit is returned in batches of
/// a quarter of it.
const CP_WINDOW: u32 = 4 << 20;

/// What the reader hands the `cp_to` worker.
pub(super) enum Upload {
    Entry(CpEntry),
    Data(Vec<u8>),
    FileEnd([u8; 32]),
    Done,
}

/// Forwards an upload's stream messages to its worker.
pub(super) fn deliver(tx: &mpsc::Sender<Upload>, msg: ClientMessage) {
    let up = match msg {
        ClientMessage::CpEntry { entry, .. } => Upload::Entry(entry),
        ClientMessage::Data { data, .. } => Upload::Data(data),
        ClientMessage::CpFileEnd { sha256, .. } => Upload::FileEnd(sha256),
        ClientMessage::CpDone { .. } => Upload::Done,
        _ => return,
    };
    let _ = tx.send(up);
}

fn code_of(e: &TreeError) -> ErrorCode {
    match e {
        TreeError::Checksum(_) => ErrorCode::ChecksumMismatch,
        TreeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            ErrorCode::NotFound
        }
        // `cp_to`'s destination is not a directory: the client then copies *as* that path.
        TreeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotADirectory => {
            ErrorCode::Conflict
        }
        TreeError::Io { .. } => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> bool {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(f)
        .is_ok()
}

/// `cp_to {dest}`.
pub(super) fn start_to(conn: &Arc<Conn>, id: RequestId, dest: String) {
    let mut writer = match TreeWriter::open(Path::new(&dest)) {
        Ok(w) => w,
        Err(e) => return conn.fail(id, code_of(&e), e.to_string()),
    };
    let (tx, rx) = mpsc::channel();
    if !conn.started(id, None, Active::CpTo(tx)) {
        return;
    }
    let grow = CP_WINDOW - enclave_proto::wire::INITIAL_WINDOW;
    let _ = conn.send(&ServerMessage::WindowUpdate { id, bytes: grow });
    let c = conn.clone();
    let ok = spawn("cp-to", move || {
        let mut consumed = 0u32;
        for up in rx {
            let result = match up {
                Upload::Entry(entry) => writer.entry(&entry),
                Upload::Data(data) => {
                    let r = writer.data(&data);
                    consumed += data.len() as u32;
                    if r.is_ok() && consumed >= CP_WINDOW / 4 {
                        let bytes = std::mem::take(&mut consumed);
                        let _ = c.send(&ServerMessage::WindowUpdate { id, bytes });
                    }
                    r
                }
                Upload::FileEnd(sha256) => writer.file_end(&sha256),
                Upload::Done => {
                    let reply = writer
                        .finish()
                        .map(|(entries, bytes)| Reply::CpComplete { entries, bytes });
                    match reply {
                        Ok(reply) => c.end(id, &ServerMessage::Reply { id, reply }),
                        Err(e) => c.fail(id, code_of(&e), e.to_string()),
                    }
                    return;
                }
            };
            if let Err(e) = result {
                writer.abort();
                return c.fail(id, code_of(&e), e.to_string());
            }
        }
        // The request was cancelled or the connection closed: the writer's drop removes the
        // temporary file of an incomplete entry.
    });
    if !ok {
        conn.fail(id, ErrorCode::Internal, "no thread for the copy");
    }
}

enum SinkError {
    Tree(TreeError),
    Ended,
}

impl From<TreeError> for SinkError {
    fn from(e: TreeError) -> Self {
        SinkError::Tree(e)
    }
}

struct Download<'a> {
    conn: &'a Conn,
    id: RequestId,
}

impl TreeSink for Download<'_> {
    type Error = SinkError;

    fn entry(&mut self, entry: CpEntry) -> Result<(), SinkError> {
        let msg = ServerMessage::CpEntry { id: self.id, entry };
        self.conn.send(&msg).map_err(|_| SinkError::Ended)
    }

    fn credit(&mut self) -> Result<usize, SinkError> {
        match self.conn.wait_credit(self.id) {
            Some(c) => Ok(c as usize),
            None => Err(SinkError::Ended),
        }
    }

    fn data(&mut self, data: Vec<u8>) -> Result<(), SinkError> {
        let msg = ServerMessage::Data {
            id: self.id,
            channel: Channel::File,
            data,
        };
        self.conn.send(&msg).map_err(|_| SinkError::Ended)
    }

    fn file_end(&mut self, sha256: [u8; 32]) -> Result<(), SinkError> {
        let msg = ServerMessage::CpFileEnd {
            id: self.id,
            sha256,
        };
        self.conn.send(&msg).map_err(|_| SinkError::Ended)
    }
}

/// `cp_from {src}`.
pub(super) fn start_from(conn: &Arc<Conn>, id: RequestId, src: String) {
    conn.register(id);
    let c = conn.clone();
    let ok = spawn("cp-from", move || {
        let entries = match tree::scan(Path::new(&src)) {
            Ok(e) => e,
            Err(e) => return c.fail(id, code_of(&e), e.to_string()),
        };
        if !c.started_registered(id) {
            return;
        }
        let mut sink = Download { conn: &c, id };
        match tree::send_tree(&entries, &mut sink) {
            Ok(()) => {}
            Err(SinkError::Ended) => return,
            Err(SinkError::Tree(e)) => return c.fail(id, code_of(&e), e.to_string()),
        }
        if c.send(&ServerMessage::CpDone { id }).is_err() {
            return;
        }
        let reply = Reply::CpComplete {
            entries: entries.len() as u64,
            bytes: tree::SourceEntry::total_bytes(&entries),
        };
        c.end(id, &ServerMessage::Reply { id, reply });
    });
    if !ok {
        conn.fail(id, ErrorCode::Internal, "no thread for the copy");
    }
}
