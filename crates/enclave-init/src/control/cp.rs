//! `cp` in the enclave: `cp_to` writes received entries with the safe [`TreeWriter`], `cp_from`
//! scans and sends a tree within the client's credit, each on a worker thread of its own (so
//! slow disks never stall the connection's reader).
//!
//! Each worker runs as the app's user, the one `exec` runs as: PID 1 is root, and a copy made as
//! root would let whoever may `cp` write where the app cannot (a set-id program, `/etc`...), so
//! `cp` would give more than `exec` does. The worker thread drops to the app user's groups, gid
//! and uid before it touches the filesystem (the destination check included) and exits when the
//! copy ends. Linux credentials belong to threads: the raw `setgroups`/`setresgid`/`setresuid`
//! syscalls (rustix's `set_thread_*`) change only the calling thread, unlike libc's wrappers,
//! which change every thread of the process. If the switch fails the request fails; it never
//! proceeds as root. When the app's user is root, cp stays root, as exec does.

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use enclave_proto::tree::{self, SourceLink, TreeError, TreeSink, TreeWriter};
use enclave_proto::wire::{
    Channel, ClientMessage, CpEntry, ErrorCode, Reply, RequestId, ServerMessage,
};
use rustix::process::{Gid, Uid};
use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};

use super::conn::{Active, Conn, THREAD_STACK};
use crate::users::Credentials;

/// The window a `cp_to` grants the client: the initial 256 KiB is too little to keep a fast
/// local transport busy while each chunk waits for the disk. Credit is returned in batches of
/// a quarter of it.
const CP_WINDOW: u32 = 4 << 20;

/// What the reader hands the `cp_to` worker.
pub(super) enum Upload {
    Entry(CpEntry),
    /// Shares the buffer its record was decrypted into: written to the file without a copy.
    Data(Bytes),
    FileEnd,
    Done,
}

/// Forwards an upload's stream messages to its worker.
pub(super) fn deliver(tx: &mpsc::Sender<Upload>, msg: ClientMessage) {
    let up = match msg {
        ClientMessage::CpEntry { entry, .. } => Upload::Entry(entry),
        ClientMessage::Data { data, .. } => Upload::Data(data),
        ClientMessage::CpFileEnd { .. } => Upload::FileEnd,
        ClientMessage::CpDone { .. } => Upload::Done,
        _ => return,
    };
    let _ = tx.send(up);
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
    // Registered before the worker checks `dest` and sends `started`: entries that follow
    // `started` find it, and a cancel or close before it drops `tx`, which ends the worker.
    conn.lock().requests.insert(id, Active::CpTo(tx));
    let c = conn.clone();
    spawn_as_app(conn, id, "cp-to", move || receive(&c, id, &dest, rx));
}

/// The `cp_to` worker, as the app's user: checks `dest` (refusals before `started`), then
/// writes what the reader delivers.
fn receive(c: &Conn, id: RequestId, dest: &str, rx: mpsc::Receiver<Upload>) {
    let mut writer = match TreeWriter::open_no_symlinks(dest) {
        Ok(w) => w,
        Err(e) => return c.fail(id, code_of(&e), e.to_string()),
    };
    if !c.started_registered(id) {
        return;
    }
    let grow = CP_WINDOW - enclave_proto::wire::INITIAL_WINDOW;
    let _ = c.send(&ServerMessage::WindowUpdate { id, bytes: grow });
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
            Upload::FileEnd => writer.file_end(),
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
            data: data.into(),
        };
        self.conn.send(&msg).map_err(|_| SinkError::Ended)
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
    let mut sink = Download { conn: c, id };
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
