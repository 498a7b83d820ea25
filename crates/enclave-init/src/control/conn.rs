//! One control connection: a reader thread (this one), a writer thread, and one worker per
//! streaming request.
//!
//! Every message sent goes through [`Conn::send`]: the session's `check_send` and the hand-off
//! to the writer thread happen under one lock, so the wire order is the order the session
//! checked. The writer thread alone blocks on the socket; workers never do, and the reader
//! never waits for a worker, so a slow or stuck peer cannot wedge the others. Data is bounded by
//! the flow-control credit, so the writer's queue is too.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use enclave_proto::client::encode_frame;
use enclave_proto::transport::Connection;
use enclave_proto::wire::{
    read_message, Channel, ClientMessage, ErrorCode, MessageError, RequestId, ServerConfig,
    ServerMessage, ServerSession, SessionError, Verdict,
};

use super::{cp, exec, ops, Context};

/// Time allowed from connect to the end of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stack of the connection's threads: they hold small buffers only.
pub(super) const THREAD_STACK: usize = 256 << 10;

/// Work of a streaming request in progress, stopped on cancel or close.
pub(super) enum Active {
    Exec(exec::ExecControl),
    CpTo(mpsc::Sender<cp::Upload>),
    /// cp_from and logs: their worker notices through the session (sends fail).
    Worker,
}

impl Active {
    fn stop(self) {
        match self {
            Active::Exec(c) => c.kill(),
            // Dropping the sender ends the worker, which removes its temporary file.
            Active::CpTo(_) | Active::Worker => {}
        }
    }
}

pub(super) struct State {
    pub(super) session: ServerSession,
    pub(super) requests: HashMap<RequestId, Active>,
}

/// What the workers of a connection share.
pub(super) struct Conn {
    state: Mutex<State>,
    /// Signalled on window updates, request ends and close.
    changed: Condvar,
    /// Whole frames for the writer thread.
    out: mpsc::Sender<Vec<u8>>,
    closed: AtomicBool,
    pub(super) ctx: Arc<Context>,
}

impl Conn {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, msg: &ServerMessage) {
        // Only a message breaking a structural limit fails to encode: a bug, dropped.
        if let Ok(frame) = encode_frame(msg) {
            let _ = self.out.send(frame);
        }
    }

    /// Checks and queues a message.
    pub(super) fn send(&self, msg: &ServerMessage) -> Result<(), SessionError> {
        let mut state = self.lock();
        if self.closed.load(Ordering::Relaxed) {
            return Err(SessionError::NotReady);
        }
        state.session.check_send(msg)?;
        self.push(msg);
        Ok(())
    }

    /// Registers the work of a streaming request and sends its `started`.
    pub(super) fn started(&self, id: RequestId, pid: Option<u32>, work: Active) -> bool {
        let mut state = self.lock();
        let ok = !self.closed.load(Ordering::Relaxed)
            && state
                .session
                .check_send(&ServerMessage::Started { id, pid })
                .is_ok();
        if ok {
            self.push(&ServerMessage::Started { id, pid });
            state.requests.insert(id, work);
        } else {
            drop(state);
            work.stop();
        }
        ok
    }

    /// Registers the worker of a streaming request before it starts, so that a `cancel`
    /// arriving first is not lost; the worker then calls [`started_registered`].
    ///
    /// [`started_registered`]: Conn::started_registered
    pub(super) fn register(&self, id: RequestId) {
        self.lock().requests.insert(id, Active::Worker);
    }

    /// Sends `started` for a registered request; false when it was cancelled meanwhile.
    pub(super) fn started_registered(&self, id: RequestId) -> bool {
        let mut state = self.lock();
        let msg = ServerMessage::Started { id, pid: None };
        let ok = !self.closed.load(Ordering::Relaxed)
            && state.requests.contains_key(&id)
            && state.session.check_send(&msg).is_ok();
        if ok {
            self.push(&msg);
        }
        ok
    }

    /// Ends a request with `msg` unless it already ended (cancelled, connection closed).
    pub(super) fn end(&self, id: RequestId, msg: &ServerMessage) {
        let mut state = self.lock();
        let registered = state.requests.remove(&id).is_some();
        if !registered && !state.session.active_requests().contains(&id) {
            return;
        }
        if state.session.check_send(msg).is_ok() {
            self.push(msg);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// An `error` ending request `id`.
    pub(super) fn fail(&self, id: RequestId, code: ErrorCode, message: impl Into<String>) {
        let message = message.into();
        self.end(id, &ServerMessage::Error { id, code, message });
    }

    /// Waits until data may be sent on `id`; `None` once the request ended or the connection
    /// closed.
    pub(super) fn wait_credit(&self, id: RequestId) -> Option<u32> {
        let mut state = self.lock();
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            match state.session.send_credit(id) {
                Some(0) => {}
                other => return other,
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(500))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Sends `bytes` on `channel` in chunks within the credit; false once that is impossible.
    pub(super) fn send_bytes(&self, id: RequestId, channel: Channel, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            let Some(credit) = self.wait_credit(id) else {
                return false;
            };
            let n = bytes
                .len()
                .min(credit as usize)
                .min(enclave_proto::wire::MAX_DATA_CHUNK);
            let data = bytes[..n].to_vec();
            if self
                .send(&ServerMessage::Data { id, channel, data })
                .is_err()
            {
                return false;
            }
            bytes = &bytes[n..];
        }
        true
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// Writes queued frames until the queue is closed, or the connection is and the queue drained.
fn write_loop(conn: Connection, rx: mpsc::Receiver<Vec<u8>>, closed: Arc<Conn>) {
    // Small: it only coalesces small messages; data frames are larger and bypass it.
    let mut w = BufWriter::with_capacity(16 << 10, conn);
    let mut pending = false;
    loop {
        let payload = if pending {
            match rx.try_recv() {
                Ok(p) => p,
                Err(_) => {
                    pending = false;
                    if w.flush().is_err() {
                        break;
                    }
                    continue;
                }
            }
        } else {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(p) => p,
                Err(RecvTimeoutError::Timeout) if closed.is_closed() => break,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        };
        if w.write_all(&payload).is_err() {
            break;
        }
        pending = true;
    }
    let _ = w.flush();
    if let Ok(c) = w.into_inner() {
        let _ = c.shutdown(Shutdown::Both);
    }
    closed.closed.store(true, Ordering::Relaxed);
    closed.changed.notify_all();
}

/// Serves one connection until the peer closes it or breaks the protocol.
pub(super) fn serve(mut reader: Connection, config: ServerConfig, ctx: Arc<Context>) {
    let Ok(session) = ServerSession::new(config) else {
        return;
    };
    let Ok(writer) = reader.try_clone() else {
        return;
    };
    let (tx, rx) = mpsc::channel();
    let conn = Arc::new(Conn {
        state: Mutex::new(State {
            session,
            requests: HashMap::new(),
        }),
        changed: Condvar::new(),
        out: tx,
        closed: AtomicBool::new(false),
        ctx,
    });
    let for_writer = conn.clone();
    let spawned = std::thread::Builder::new()
        .name("control-write".into())
        .stack_size(THREAD_STACK)
        .spawn(move || write_loop(writer, rx, for_writer));
    if spawned.is_err() {
        return;
    }
    let _ = reader.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let mut ready = false;
    loop {
        let msg: ClientMessage = match read_message(&mut reader) {
            Ok(Some(msg)) => msg,
            // End of stream between frames; or the writer shut the socket down.
            Ok(None) => break,
            Err(MessageError::Frame(enclave_proto::wire::FrameError::Io(_))) => break,
            Err(e) => {
                // Oversize, empty, truncated or undecodable: the stream is unusable.
                let _order = conn.lock();
                conn.push(&ServerMessage::Error {
                    id: 0,
                    code: ErrorCode::Protocol,
                    message: e.to_string(),
                });
                break;
            }
        };
        if !handle(&conn, msg) {
            break;
        }
        if !ready && conn.lock().session.is_ready() {
            ready = true;
            let _ = reader.set_read_timeout(None);
        }
    }
    close(&conn);
}

/// Stops whatever the connection's requests still do.
fn close(conn: &Conn) {
    let work: Vec<Active> = {
        let mut state = conn.lock();
        conn.closed.store(true, Ordering::Relaxed);
        state.requests.drain().map(|(_, a)| a).collect()
    };
    conn.changed.notify_all();
    for a in work {
        a.stop();
    }
}

/// Handles one received message; false when the connection must close.
fn handle(conn: &Arc<Conn>, msg: ClientMessage) -> bool {
    let mut state = conn.lock();
    let verdict = state.session.on_recv(&msg);
    conn.changed.notify_all();
    match verdict {
        Ok(Verdict::Deliver) => {}
        Ok(Verdict::Discard) => return true,
        Ok(Verdict::Respond(answer)) => {
            conn.push(&answer);
            return true;
        }
        Err(e) => {
            conn.push(&e.to_message());
            if e.is_fatal() {
                return false;
            }
            // A refused stream message ended its request: stop its work.
            if let Some(work) = state.requests.remove(&e.request_id()) {
                drop(state);
                work.stop();
            }
            return true;
        }
    }
    match msg {
        ClientMessage::Request { id, request } => {
            drop(state);
            ops::dispatch(conn, id, request);
        }
        ClientMessage::Cancel { id } => {
            if let Some(work) = state.requests.remove(&id) {
                let msg = ServerMessage::Error {
                    id,
                    code: ErrorCode::Cancelled,
                    message: format!("request {id} cancelled"),
                };
                if state.session.check_send(&msg).is_ok() {
                    conn.push(&msg);
                }
                drop(state);
                work.stop();
            }
        }
        other => {
            if let Some(work) = other.request_id().and_then(|id| state.requests.get(&id)) {
                match work {
                    Active::Exec(c) => c.deliver(other),
                    Active::CpTo(tx) => cp::deliver(tx, other),
                    Active::Worker => {}
                }
            }
        }
    }
    true
}
