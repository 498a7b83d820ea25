//! The per-request state shared by both sides: which messages a request's stream admits in
//! which order, the flow-control credit of each direction and the structure of `cp` streams.
//!
//! Both sessions feed every message, sent or received, through [`Streams::apply`], so the two
//! ends of a connection hold the same view and each can refuse what the other must not do.

use std::collections::HashMap;

use super::super::message::{Capability, Channel, RequestId};
use super::super::ops::{CpEntry, CpKind, Reply, Request, ServiceRequest};
use super::super::path::{check_symlink, safe_relative};
use super::super::{INITIAL_WINDOW, MAX_STREAMS, MAX_WINDOW};
use super::kind::Kind;
use super::{validate_request, SessionError};

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Client,
    Server,
}

/// What a request is, as far as its stream is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ping,
    Info,
    ExecDetached,
    Exec { tty: bool, stdin: bool },
    CpTo,
    CpFrom,
    ServiceList,
    ServiceStatus,
    ServiceControl,
    Logs,
    Shutdown,
    Attest,
    Health,
}

impl Op {
    fn of(request: &Request) -> Self {
        match request {
            Request::Ping { .. } => Op::Ping,
            Request::Info => Op::Info,
            Request::Exec(e) if e.detach => Op::ExecDetached,
            Request::Exec(e) => Op::Exec {
                tty: e.tty.is_some(),
                stdin: e.stdin,
            },
            Request::CpTo { .. } => Op::CpTo,
            Request::CpFrom { .. } => Op::CpFrom,
            Request::Services(ServiceRequest::List) => Op::ServiceList,
            Request::Services(ServiceRequest::Status { .. }) => Op::ServiceStatus,
            Request::Services(ServiceRequest::Logs { .. }) => Op::Logs,
            Request::Services(_) => Op::ServiceControl,
            Request::Shutdown => Op::Shutdown,
            Request::Attest(_) => Op::Attest,
            Request::Health => Op::Health,
        }
    }

    fn is_streaming(self) -> bool {
        matches!(self, Op::Exec { .. } | Op::CpTo | Op::CpFrom | Op::Logs)
    }

    /// Whether `reply` is the successful answer of this operation.
    fn fits(self, reply: &Reply) -> bool {
        matches!(
            (self, reply),
            (Op::Ping, Reply::Pong { .. })
                | (Op::Info, Reply::Info { .. })
                | (Op::ExecDetached, Reply::Detached { .. })
                | (Op::Attest, Reply::Attestation { .. })
                | (Op::Health, Reply::Health { .. })
                | (Op::CpTo | Op::CpFrom, Reply::CpComplete { .. })
                | (Op::ServiceList, Reply::Services { .. })
                | (Op::ServiceStatus, Reply::Service { .. })
                | (Op::ServiceControl | Op::Logs | Op::Shutdown, Reply::Done)
        )
    }

    /// Whether `from` may send data on `channel` for this operation.
    fn channel_ok(self, from: Side, channel: Channel) -> bool {
        use Channel::*;
        match (self, from, channel) {
            (Op::Exec { stdin, .. }, Side::Client, Stdin) => stdin,
            (Op::Exec { .. }, Side::Server, Stdout) => true,
            // With a pty both outputs are one terminal, sent as stdout.
            (Op::Exec { tty, .. }, Side::Server, Stderr) => !tty,
            (Op::Logs, Side::Server, Stdout | Stderr) => true,
            (Op::CpTo, Side::Client, File) | (Op::CpFrom, Side::Server, File) => true,
            _ => false,
        }
    }

    /// The side sending the entries of a cp.
    fn cp_sender(self) -> Option<Side> {
        match self {
            Op::CpTo => Some(Side::Client),
            Op::CpFrom => Some(Side::Server),
            _ => None,
        }
    }
}

/// Structure of a cp stream: entries, each file followed by exactly its size in data and its
/// `cp_file_end` end marker, then done.
#[derive(Debug, Default)]
struct CpState {
    /// A file entry was sent and its `cp_file_end` not yet.
    in_file: bool,
    /// Content bytes the current file entry still owes.
    remaining: u64,
    done: bool,
}

#[derive(Debug)]
struct Stream {
    id: RequestId,
    op: Op,
    started: bool,
    /// Credit of each direction, indexed by sender: bytes it may still send.
    credit: [u32; 2],
    /// Channels that saw their `Eof`.
    ended: Vec<Channel>,
    cp: CpState,
}

fn idx(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

impl Stream {
    fn protocol(&self, what: &'static str) -> SessionError {
        SessionError::StreamProtocol { id: self.id, what }
    }

    fn bad(&self, reason: impl ToString) -> SessionError {
        SessionError::BadRequest {
            id: self.id,
            reason: reason.to_string(),
        }
    }

    /// Applies one message; `Ok(true)` when it ends the request.
    fn step(&mut self, from: Side, kind: Kind<'_>) -> Result<bool, SessionError> {
        let id = self.id;
        match (from, kind) {
            (Side::Client, Kind::Cancel) => Ok(false),
            (Side::Server, Kind::Error) => Ok(true),
            (Side::Server, Kind::Started) if !self.started && self.op.is_streaming() => {
                self.started = true;
                self.credit = [INITIAL_WINDOW; 2];
                Ok(false)
            }
            (Side::Server, Kind::Reply(r)) if !self.started && !self.op.is_streaming() => {
                if self.op.fits(r) {
                    Ok(true)
                } else {
                    Err(self.protocol("reply of another operation"))
                }
            }
            _ if !self.started => Err(self.protocol("message before the request was started")),
            (_, Kind::WindowUpdate(n)) => {
                let other = idx(if from == Side::Client {
                    Side::Server
                } else {
                    Side::Client
                });
                let credit = self.credit[other]
                    .checked_add(n)
                    .filter(|c| *c <= MAX_WINDOW);
                self.credit[other] = credit.ok_or(SessionError::FlowControl {
                    id,
                    what: "window grown beyond 16 MiB",
                })?;
                Ok(false)
            }
            (_, Kind::Data { channel, len }) => {
                if !self.op.channel_ok(from, channel) || self.ended.contains(&channel) {
                    return Err(self.protocol("data on a channel not open for it"));
                }
                // len <= MAX_DATA_CHUNK (checked at decode), so it fits a u32.
                let len32 = u32::try_from(len).unwrap_or(u32::MAX);
                let credit =
                    self.credit[idx(from)]
                        .checked_sub(len32)
                        .ok_or(SessionError::FlowControl {
                            id,
                            what: "data beyond the granted window",
                        })?;
                let mut remaining = self.cp.remaining;
                if channel == Channel::File {
                    if !self.cp.in_file {
                        return Err(self.bad("file content outside a file entry"));
                    }
                    remaining = (remaining.checked_sub(len as u64))
                        .ok_or_else(|| self.bad("more file content than its entry announced"))?;
                }
                // Committed only once every check passed: a refused send leaves no trace.
                self.credit[idx(from)] = credit;
                self.cp.remaining = remaining;
                Ok(false)
            }
            (_, Kind::Eof(channel)) => {
                if channel == Channel::File
                    || !self.op.channel_ok(from, channel)
                    || self.ended.contains(&channel)
                {
                    return Err(self.protocol("eof on a channel not open for it"));
                }
                self.ended.push(channel);
                Ok(false)
            }
            (Side::Client, Kind::Resize) if matches!(self.op, Op::Exec { tty: true, .. }) => {
                Ok(false)
            }
            (Side::Client, Kind::Signal) if matches!(self.op, Op::Exec { .. }) => Ok(false),
            (_, Kind::CpEntry(entry)) if self.op.cp_sender() == Some(from) => {
                self.cp_entry(entry)?;
                Ok(false)
            }
            (_, Kind::CpFileEnd) if self.op.cp_sender() == Some(from) => {
                if !self.cp.in_file {
                    return Err(self.protocol("cp file end without a file entry"));
                }
                if self.cp.remaining > 0 {
                    return Err(self.bad("file content shorter than its entry announced"));
                }
                self.cp.in_file = false;
                Ok(false)
            }
            (_, Kind::CpDone) if self.op.cp_sender() == Some(from) => {
                if self.cp.done {
                    return Err(self.protocol("second cp done"));
                }
                if self.cp.in_file {
                    return Err(self.bad("file entry not ended (content or cp file end missing)"));
                }
                self.cp.done = true;
                Ok(false)
            }
            (Side::Server, Kind::Reply(r)) if self.op.fits(r) => {
                if self.op.cp_sender().is_some() && !self.cp.done {
                    return Err(self.protocol("cp completed before all entries were sent"));
                }
                Ok(true)
            }
            (Side::Server, Kind::Exit) if matches!(self.op, Op::Exec { .. }) => Ok(true),
            _ => Err(self.protocol("message not part of this operation")),
        }
    }

    fn cp_entry(&mut self, entry: &CpEntry) -> Result<(), SessionError> {
        if self.cp.done {
            return Err(self.protocol("cp entry after cp done"));
        }
        if self.cp.in_file {
            return Err(self.bad("entry before the previous file was ended"));
        }
        let path = safe_relative(&entry.path).map_err(|e| self.bad(e))?;
        if entry.mode & !0o7777 != 0 {
            return Err(self.bad(format!("mode {:o} has bits beyond 0o7777", entry.mode)));
        }
        match &entry.kind {
            CpKind::File { size } => {
                self.cp.remaining = *size;
                self.cp.in_file = true;
            }
            CpKind::Symlink { target } => check_symlink(&path, target).map_err(|e| self.bad(e))?,
            CpKind::Dir => {}
        }
        Ok(())
    }
}

/// Whether [`Streams::apply`] found the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Applied to a request in progress.
    Applied,
    /// The request existed but has ended (a message that crossed its end on the wire).
    Stale,
}

/// The requests of one connection.
#[derive(Debug, Default)]
pub(super) struct Streams {
    active: HashMap<RequestId, Stream>,
    last_id: RequestId,
}

impl Streams {
    /// The highest request id used so far.
    pub(super) fn last_id(&self) -> RequestId {
        self.last_id
    }

    /// Registers a new request. The id is used up even when the request is refused, so that
    /// anything the peer already sent for it is recognised as stale, not unknown.
    pub(super) fn open(
        &mut self,
        id: RequestId,
        request: &Request,
        granted: &[Capability],
    ) -> Result<(), SessionError> {
        if id <= self.last_id {
            return Err(SessionError::IdNotIncreasing {
                id,
                last: self.last_id,
            });
        }
        self.last_id = id;
        validate_request(request).map_err(|reason| SessionError::BadRequest { id, reason })?;
        if let Some(cap) = request.required_capability() {
            if !granted.contains(&cap) {
                return Err(SessionError::PermissionDenied {
                    id,
                    capability: cap,
                });
            }
        }
        if self.active.len() >= MAX_STREAMS {
            return Err(SessionError::TooManyStreams { id });
        }
        let stream = Stream {
            id,
            op: Op::of(request),
            started: false,
            credit: [0; 2],
            ended: Vec::new(),
            cp: CpState::default(),
        };
        self.active.insert(id, stream);
        Ok(())
    }

    /// Applies a stream message. A refused message changes nothing, except that with
    /// `end_on_error` (the server receiving) a non-fatal error ends the request: the server
    /// answers it with an error, after which its stream is stale.
    /// [`apply`](Self::apply) of a message this side is about to send: `Ended` when its request
    /// has already ended.
    pub(super) fn apply_sent(
        &mut self,
        from: Side,
        id: RequestId,
        kind: Kind<'_>,
    ) -> Result<(), SessionError> {
        match self.apply(from, id, kind, false)? {
            Outcome::Applied => Ok(()),
            Outcome::Stale => Err(SessionError::Ended(id)),
        }
    }

    pub(super) fn apply(
        &mut self,
        from: Side,
        id: RequestId,
        kind: Kind<'_>,
        end_on_error: bool,
    ) -> Result<Outcome, SessionError> {
        let Some(stream) = self.active.get_mut(&id) else {
            return if id == 0 || id > self.last_id {
                Err(SessionError::UnknownRequest(id))
            } else {
                Ok(Outcome::Stale)
            };
        };
        match stream.step(from, kind) {
            Ok(false) => Ok(Outcome::Applied),
            Ok(true) => {
                self.active.remove(&id);
                Ok(Outcome::Applied)
            }
            Err(e) => {
                if end_on_error && !e.is_fatal() {
                    self.active.remove(&id);
                }
                Err(e)
            }
        }
    }

    /// Credit left to `side` on a request (0 until it is started).
    pub(super) fn credit(&self, id: RequestId, side: Side) -> Option<u32> {
        self.active.get(&id).map(|s| s.credit[idx(side)])
    }

    /// Ids of the requests in progress (to clean up when the connection closes).
    pub(super) fn active_ids(&self) -> Vec<RequestId> {
        let mut ids: Vec<_> = self.active.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
