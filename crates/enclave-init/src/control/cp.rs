//! `cp` in the enclave: `cp_to` writes received entries with the safe [`TreeWriter`], `cp_from`
//! scans and sends a tree within the client's credit, each on a worker thread of its own.
//!
//! A `cp_to`'s content is written by the connection's reader itself, through the descriptor the
//! worker opened, whenever the worker has nothing queued ([`UploadHandle::deliver`]): the bytes
//! go to the file straight from the records they were decrypted into (held until 256 KiB are
//! waiting, then written with one `writev`: [`TreeWriter::write_data`]), with no hand-off (two
//! context switches) per 64 KiB chunk. Everything that names a
//! path (the entries, the file ends with their rename, the removal of a failed file) stays on
//! the worker. The enclave's filesystems are memory (tmpfs), so a write does not stall the
//! reader for long.
//!
//! Each worker runs as the app's user, the one `exec` runs as: PID 1 is root, and a copy made as
//! root would let whoever may `cp` write where the app cannot (a set-id program, `/etc`...), so
//! `cp` would give more than `exec` does. The worker thread drops to the app user's groups, gid
//! and uid before it touches the filesystem (the destination check included) and exits when the
//! copy ends. Linux credentials belong to threads: the raw `setgroups`/`setresgid`/`setresuid`
//! syscalls (rustix's `set_thread_*`) change only the calling thread, unlike libc's wrappers,
//! which change every thread of the process. If the switch fails the request fails; it never
//! proceeds as root. When the app's user is root, cp stays root, as exec does.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use enclave_proto::tree::{self, SourceLink, TreeError, TreeSink, TreeWriter};
use enclave_proto::wire::{
    Channel, ClientMessage, CpEntry, ErrorCode, Reply, RequestId, ServerMessage,
};
use rustix::process::{Gid, Uid};
use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};

use super::conn::{Active, Conn, THREAD_STACK};
use super::frames::FramePool;
use crate::users::Credentials;

/// The window a `cp_to` grants the client: the initial 256 KiB is too little to keep a fast
/// local transport busy while each chunk waits for the disk. Credit is returned in batches of
/// a quarter of it, each a wake of the connection's writer: 8 MiB rather than 4 took cp in from
/// 70% to 76% of a raw copy (docs/benchmarks.md, "Control channel").
const CP_WINDOW: u32 = 8 << 20;

/// What the reader hands the `cp_to` worker.
enum Upload {
    Entry(CpEntry),
    /// Shares the buffer its record was decrypted into: written to the file without a copy.
    Data(Bytes),
    FileEnd,
    Done,
    /// The reader's own write failed: the worker removes the file and ends the request.
    Failed(TreeError),
}

/// The writer and the credit not yet returned, shared by the worker and the reader.
struct Receiving {
    writer: TreeWriter,
    consumed: u32,
}

impl Receiving {
    /// Writes `data` through the file's descriptor; returns the credit to give back, if a
    /// batch is due.
    fn write(&mut self, data: Bytes) -> Result<Option<u32>, TreeError> {
        let len = data.len() as u32;
        self.writer.write_data(data)?;
        self.consumed += len;
        Ok((self.consumed >= CP_WINDOW / 4).then(|| std::mem::take(&mut self.consumed)))
    }
}

struct Shared {
    /// Messages sent to the worker and not yet handled by it.
    queued: AtomicUsize,
    /// `None` until the worker has opened the destination, and again once it ended.
    receiving: Mutex<Option<Receiving>>,
}

impl Shared {
    fn receiving(&self) -> std::sync::MutexGuard<'_, Option<Receiving>> {
        self.receiving.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The reader's side of a `cp_to` in progress.
#[derive(Clone)]
pub(super) struct UploadHandle {
    id: RequestId,
    tx: mpsc::Sender<Upload>,
    shared: Arc<Shared>,
}

impl UploadHandle {
    /// Handles one of the upload's stream messages, on the reader's thread (called without the
    /// connection's lock). Content is written here when the worker has nothing queued, so it
    /// lands after everything sent before it; otherwise it is queued behind that.
    pub(super) fn deliver(&self, conn: &Conn, msg: ClientMessage) {
        let up = match msg {
            ClientMessage::CpEntry { entry, .. } => Upload::Entry(entry),
            ClientMessage::Data { data, .. } => match self.write_here(conn, data) {
                Some(data) => Upload::Data(data),
                None => return,
            },
            ClientMessage::CpFileEnd { .. } => Upload::FileEnd,
            ClientMessage::CpDone { .. } => Upload::Done,
            _ => return,
        };
        self.queue(up);
    }

    fn queue(&self, up: Upload) {
        // Counted before it is sent: the worker uncounts it only once it has handled it.
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        // The worker is gone when the request ended: nothing is left to write to.
        let _ = self.tx.send(up);
    }

    /// Writes `data` on this thread if the worker is idle with the destination open; gives the
    /// data back when it must be queued instead.
    fn write_here(&self, conn: &Conn, data: Bytes) -> Option<Bytes> {
        if self.shared.queued.load(Ordering::Acquire) != 0 {
            return Some(data);
        }
        let mut receiving = self.shared.receiving();
        let Some(r) = receiving.as_mut() else {
            return Some(data);
        };
        let written = r.write(data);
        drop(receiving);
        match written {
            Ok(Some(bytes)) => {
                let _ = conn.send(&ServerMessage::WindowUpdate { id: self.id, bytes });
            }
            Ok(None) => {}
            Err(e) => self.queue(Upload::Failed(e)),
        }
        None
    }
}

fn code_of(e: &TreeError) -> ErrorCode {
    use std::io::ErrorKind;
    match e {
        TreeError::Io { source, .. } => match source.kind() {
            ErrorKind::NotFound => ErrorCode::NotFound,
            // `cp_to`'s destination is not a directory: the client then copies *as* that path.
            ErrorKind::NotADirectory => ErrorCode::Conflict,
            // The app's user may not read or write there.
            ErrorKind::PermissionDenied => ErrorCode::PermissionDenied,
            _ => ErrorCode::Internal,
        },
        TreeError::Replaced(_) => ErrorCode::Conflict,
        _ => ErrorCode::BadRequest,
    }
}

/// Gives the calling thread, and only it, the credentials of `creds`: supplementary groups
/// first, then the gid, then the uid (after which it could change neither). Setting all three
/// uids to a non-root user also clears the thread's capabilities.
fn become_user(creds: &Credentials) -> std::io::Result<()> {
    let groups: Vec<Gid> = creds.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    set_thread_groups(&groups)?;
    let gid = Gid::from_raw(creds.gid);
    set_thread_res_gid(gid, gid, gid)?;
    let uid = Uid::from_raw(creds.uid);
    set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

/// Starts `work` on a new thread that first becomes the app's user; on failure (no user, no
/// thread, no switch) request `id` ends with an error.
fn spawn_as_app(conn: &Arc<Conn>, id: RequestId, name: &str, work: impl FnOnce() + Send + 'static) {
    let creds = match &conn.ctx.creds {
        Ok(c) => c.clone(),
        Err(e) => return conn.fail(id, ErrorCode::Internal, format!("the app's user: {e}")),
    };
    let c = conn.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            if let Err(e) = become_user(&creds) {
                let message = format!(
                    "cannot switch to the app's user {}:{} for the copy: {e}",
                    creds.uid, creds.gid
                );
                return c.fail(id, ErrorCode::Internal, message);
            }
            work();
        });
    if spawned.is_err() {
        conn.fail(id, ErrorCode::Internal, "no thread for the copy");
    }
}

/// `cp_to {dest}`.
pub(super) fn start_to(conn: &Arc<Conn>, id: RequestId, dest: String) {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        receiving: Mutex::new(None),
    });
    // Registered before the worker checks `dest` and sends `started`: entries that follow
    // `started` find it, and a cancel or close before it drops `tx`, which ends the worker.
    let handle = UploadHandle {
        id,
        tx,
        shared: shared.clone(),
    };
    conn.lock().requests.insert(id, Active::CpTo(handle));
    let c = conn.clone();
    spawn_as_app(conn, id, "cp-to", move || {
        receive(&c, id, &dest, rx, &shared);
        // The writer is dropped here, as the app's user: its drop removes the temporary file
        // of an incomplete entry, which the reader (root) must never do.
        drop(shared.receiving().take());
    });
}

/// The `cp_to` worker, as the app's user: checks `dest` (refusals before `started`), then
/// handles what the reader queues.
fn receive(c: &Conn, id: RequestId, dest: &str, rx: mpsc::Receiver<Upload>, shared: &Shared) {
    let writer = match TreeWriter::open_no_symlinks(dest) {
        Ok(w) => w,
        Err(e) => return c.fail(id, code_of(&e), e.to_string()),
    };
    *shared.receiving() = Some(Receiving {
        writer,
        consumed: 0,
    });
    if !c.started_registered(id) {
        return;
    }
    let grow = CP_WINDOW - enclave_proto::wire::INITIAL_WINDOW;
    let _ = c.send(&ServerMessage::WindowUpdate { id, bytes: grow });
    // Ends when the request is cancelled or the connection closes (the reader drops `tx`).
    for up in rx {
        let mut receiving = shared.receiving();
        let Some(r) = receiving.as_mut() else { return };
        let mut credit = None;
        let result = match up {
            Upload::Entry(entry) => r.writer.entry(&entry),
            Upload::Data(data) => r.write(data).map(|c| credit = c),
            Upload::FileEnd => r.writer.file_end(),
            Upload::Failed(e) => Err(e),
            Upload::Done => {
                let reply = r
                    .writer
                    .finish()
                    .map(|(entries, bytes)| Reply::CpComplete { entries, bytes });
                drop(receiving);
                match reply {
                    Ok(reply) => c.end(id, &ServerMessage::Reply { id, reply }),
                    Err(e) => c.fail(id, code_of(&e), e.to_string()),
                }
                return;
            }
        };
        if let Err(e) = result {
            r.writer.abort();
            drop(receiving);
            return c.fail(id, code_of(&e), e.to_string());
        }
        drop(receiving);
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        if let Some(bytes) = credit {
            let _ = c.send(&ServerMessage::WindowUpdate { id, bytes });
        }
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
    /// Buffers the file's chunks are read into, and sealed in by the connection's writer.
    frames: FramePool,
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

    fn data_from(&mut self, file: &mut File, len: usize, what: &str) -> Result<(), SinkError> {
        let frame = self.frames.read(file, len, what, self.id, Channel::File)?;
        self.conn
            .send_laid_out(self.id, Channel::File, len, frame)
            .map_err(|_| SinkError::Ended)
    }

    fn file_end(&mut self) -> Result<(), SinkError> {
        let msg = ServerMessage::CpFileEnd { id: self.id };
        self.conn.send(&msg).map_err(|_| SinkError::Ended)
    }
}

/// `cp_from {src}`: a symlink given as `src` is sent as a link, never followed.
pub(super) fn start_from(conn: &Arc<Conn>, id: RequestId, src: String) {
    conn.register(id);
    let c = conn.clone();
    spawn_as_app(conn, id, "cp-from", move || send(&c, id, &src));
}

/// The `cp_from` worker, as the app's user.
fn send(c: &Conn, id: RequestId, src: &str) {
    let tree = match tree::scan(Path::new(src), SourceLink::Keep) {
        Ok(t) => t,
        Err(e) => return c.fail(id, code_of(&e), e.to_string()),
    };
    if !c.started_registered(id) {
        return;
    }
    let mut sink = Download {
        conn: c,
        id,
        frames: FramePool::default(),
    };
    match tree::send_tree(&tree, &mut sink) {
        Ok(()) => {}
        Err(SinkError::Ended) => return,
        Err(SinkError::Tree(e)) => return c.fail(id, code_of(&e), e.to_string()),
    }
    if c.send(&ServerMessage::CpDone { id }).is_err() {
        return;
    }
    let reply = Reply::CpComplete {
        entries: tree.entries().len() as u64,
        bytes: tree.total_bytes(),
    };
    c.end(id, &ServerMessage::Reply { id, reply });
}
