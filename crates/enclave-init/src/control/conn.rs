//! One control connection: a reader thread (this one), a writer thread ([`super::writer`]), and
//! one worker per streaming request.
//!
//! Every message sent goes through [`Conn::send`]: the session's `check_send` and the hand-off
//! to the writer thread happen under one lock, so the wire order is the order the session
//! checked. The writer thread alone blocks on the socket; workers never do, and the reader
//! never waits for a worker, so a slow or stuck peer cannot wedge the others. Data is bounded by
//! the flow-control credit, so the writer's queue is too.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use enclave_proto::transport::Connection;
use enclave_proto::wire::secure::{SecureReader, SecureWriter, Transport};
use enclave_proto::wire::{
    encode_frame, encode_frame_head, read_frame_limited, Channel, ClientMessage, ErrorCode,
    FrameError, FrameReader, FrameWriter, RequestId, ServerConfig, ServerMessage, ServerSession,
    SessionError, Verdict, MAX_UNAUTHENTICATED_FRAME, RECORD_DATA_CHUNK,
};

use super::frames::LaidOutFrame;
use super::writer::{write_loop, Outgoing};
use super::{cp, exec, ops, Context};

/// Time allowed for each read from connect until the session proved a key and sent its first
/// request.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that has not proven a key (only `ping` and `info`) is closed after this long.
pub(super) const UNAUTHENTICATED_LIFETIME: Duration = Duration::from_secs(30);
/// Stack of the connection's threads: they hold small buffers only.
pub(super) const THREAD_STACK: usize = 256 << 10;

/// Work of a streaming request in progress, stopped on cancel or close.
pub(super) enum Active {
    Exec(exec::ExecControl),
    CpTo(cp::UploadHandle),
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
    /// Frames for the writer thread.
    out: mpsc::Sender<Outgoing>,
    closed: AtomicBool,
    pub(super) ctx: Arc<Context>,
}

impl Conn {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, msg: &ServerMessage) {
        // Only a message breaking a structural limit fails to encode: a bug, dropped.
        let mut head = Vec::new();
        if let Ok(data) = encode_frame_head(msg, &mut head) {
            let data = data.cloned();
            let _ = self.out.send(Outgoing::Frame { head, data });
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

    /// Checks and queues the `Data` message of `len` bytes on `channel` laid out in `frame`.
    pub(super) fn send_laid_out(
        &self,
        id: RequestId,
        channel: Channel,
        len: usize,
        frame: LaidOutFrame,
    ) -> Result<(), SessionError> {
        let mut state = self.lock();
        if self.closed.load(Ordering::Relaxed) {
            return Err(SessionError::NotReady);
        }
        state.session.check_send_data(id, channel, len)?;
        let _ = self.out.send(Outgoing::LaidOut(frame));
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
            let n = bytes.len().min(credit as usize).min(RECORD_DATA_CHUNK);
            let data = Bytes::copy_from_slice(&bytes[..n]);
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

    /// Marks the connection closed (its writer ended) and wakes whoever waits for credit.
    pub(super) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }
}

/// The set-up in clear: the hellos and, on the host-facing channel, the Noise handshake.
/// Returns the transport keys (host-facing) or `None` (local); `Err` when the connection ends.
fn setup(session: &mut ServerSession, sock: &Connection) -> Result<Option<Transport>, ()> {
    let mut r = sock.try_clone().map_err(drop)?;
    let mut w = sock.try_clone().map_err(drop)?;
    let mut send = |msg: &ServerMessage| {
        if let Ok(frame) = encode_frame(msg) {
            let _ = w.write_all(&frame);
        }
    };
    loop {
        let frame = match read_frame_limited(&mut r, MAX_UNAUTHENTICATED_FRAME) {
            Ok(Some(frame)) => frame,
            Ok(None) | Err(FrameError::Io(_)) => return Err(()),
            Err(e) => {
                send(&ServerMessage::Error {
                    id: 0,
                    code: ErrorCode::Protocol,
                    message: e.to_string(),
                });
                return Err(());
            }
        };
        match session.on_recv_frame(frame.payload()) {
            Ok((_, Verdict::Respond(answer))) => send(&answer),
            Ok(_) => {}
            Err(e) => {
                send(&e.to_message());
                return Err(());
            }
        }
        if let Some(transport) = session.take_transport() {
            return Ok(Some(transport));
        }
        if session.is_open() {
            return Ok(None);
        }
    }
}

/// Serves one connection until the peer closes it or breaks the protocol. `authenticated` is
/// set once the session may use every request (a local session after its hello, a host-facing
/// one after proving a key): the accept loop evicts only sessions that are not.
pub(super) fn serve(
    sock: Connection,
    config: ServerConfig,
    ctx: Arc<Context>,
    authenticated: Arc<AtomicBool>,
) {
    let connected = Instant::now();
    ctx.sessions.fetch_add(1, Ordering::Relaxed);
    let _ = sock.set_read_timeout(Some(SETUP_TIMEOUT));
    let mut session = ServerSession::new(config);
    let Ok(transport) = setup(&mut session, &sock) else {
        return;
    };
    let (Ok(r), Ok(w), Ok(for_shutdown)) = (sock.try_clone(), sock.try_clone(), sock.try_clone())
    else {
        return;
    };
    // The host-facing channel is where files are copied out: its socket gets a larger send
    // buffer once the peer proved a key (an unauthenticated peer keeps the default).
    let mut raise_send_buffer = transport.is_some();
    let (mut reader, writer) = match transport {
        Some(t) => (
            FrameReader::Secure(SecureReader::new(r, t.state())),
            FrameWriter::Secure(SecureWriter::new(w, t.state())),
        ),
        None => (FrameReader::Clear(r), FrameWriter::clear(w)),
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
        .spawn(move || write_loop(for_shutdown, writer, rx, for_writer));
    if spawned.is_err() {
        return;
    }
    // Until the session proved a key and asked for something, every read is bounded, and a
    // session that never proves one is closed after a while: idle connections cannot hold the
    // slots operators need.
    let mut idle_bounded = true;
    let mut ready = false;
    loop {
        // A peer that has not proven a key gets small frames only.
        let limit = if ready {
            enclave_proto::wire::MAX_FRAME_LEN
        } else {
            MAX_UNAUTHENTICATED_FRAME
        };
        let frame = match reader.read_frame(limit) {
            Ok(Some(frame)) => frame,
            // End of stream between frames; or the writer shut the socket down; or a record
            // that failed authentication (the stream is no longer the peer's).
            Ok(None) | Err(FrameError::Io(_)) => break,
            Err(e) => {
                // Oversize, empty or truncated: the stream is unusable.
                let _order = conn.lock();
                conn.push(&ServerMessage::Error {
                    id: 0,
                    code: ErrorCode::Protocol,
                    message: e.to_string(),
                });
                break;
            }
        };
        if !handle(&conn, &frame) {
            break;
        }
        if !idle_bounded {
            // Set up: a session stays ready, so nothing below can change any more.
            continue;
        }
        let asked = {
            let state = conn.lock();
            ready = state.session.is_ready();
            state.session.last_request_id() > 0
        };
        if ready {
            authenticated.store(true, Ordering::Relaxed);
            if raise_send_buffer {
                raise_send_buffer = false;
                // Best effort: a smaller buffer is only slower.
                let _ = sock.set_bulk_send_buffer();
            }
        }
        if ready && asked {
            idle_bounded = false;
            let _ = sock.set_read_timeout(None);
        }
        if !ready && connected.elapsed() > UNAUTHENTICATED_LIFETIME {
            break;
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
fn handle(conn: &Arc<Conn>, payload: &Bytes) -> bool {
    let mut state = conn.lock();
    let verdict = state.session.on_recv_bytes(payload);
    // Waiters want send credit or a request's end; content brings neither (and a wake is a
    // system call, with or without waiters, on every chunk of a copy).
    if !matches!(verdict, Ok((ClientMessage::Data { .. }, _))) {
        conn.changed.notify_all();
    }
    let msg = match verdict {
        Ok((msg, Verdict::Deliver)) => msg,
        Ok((_, Verdict::Discard)) => return true,
        Ok((_, Verdict::Respond(answer))) => {
            conn.push(&answer);
            return true;
        }
        Err(e) => {
            let message = e.to_message();
            if matches!(
                message,
                ServerMessage::Error {
                    code: ErrorCode::AuthFailed,
                    ..
                }
            ) {
                conn.ctx.auth_failures.fetch_add(1, Ordering::Relaxed);
            }
            conn.push(&message);
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
    };
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
        other => match other.request_id().and_then(|id| state.requests.get(&id)) {
            Some(Active::Exec(c)) => c.deliver(other),
            Some(Active::CpTo(upload)) => {
                // Without the lock: the upload may write its content here, and send credit.
                let upload = upload.clone();
                drop(state);
                upload.deliver(conn, other);
            }
            Some(Active::Worker) | None => {}
        },
    }
    true
}
