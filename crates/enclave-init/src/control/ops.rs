//! Requests: the simple ones answered here (ping, info, services, shutdown), the streaming
//! ones handed to their module (exec, cp) or to a worker thread (logs).

use std::sync::Arc;
use std::time::Duration;

use enclave_proto::wire::{
    AttestRequest, Channel, ErrorCode, ExitStatus, Reply, Request, RequestId, ServerMessage,
    ServiceRequest, ServiceState, ServiceStatus,
};

use super::conn::{Conn, THREAD_STACK};
use super::{cp, exec};
use crate::logs::{LogLine, Stream};
use crate::manager::{self, ManagerError};
use crate::policy::Exit;
use crate::say;

/// Serves a request that passed the session's checks.
pub(super) fn dispatch(conn: &Arc<Conn>, id: RequestId, request: Request) {
    let reply = |reply: Reply| conn.end(id, &ServerMessage::Reply { id, reply });
    match request {
        Request::Ping { payload } => reply(Reply::Pong { payload }),
        Request::Info => {
            let (version, capabilities) = {
                let state = conn.lock();
                (state.session.version(), state.session.granted().to_vec())
            };
            reply(Reply::Info {
                enclave: conn.ctx.enclave_info(),
                version,
                capabilities,
                // A version-2 client rejects fields it does not know.
                control: (version >= 3).then(|| conn.ctx.control_counts()),
            })
        }
        Request::Exec(req) if req.detach => match exec::detached(conn, &req) {
            Ok(pid) => reply(Reply::Detached { pid }),
            Err((code, message)) => conn.fail(id, code, message),
        },
        Request::Exec(req) => exec::start(conn, id, req),
        Request::CpTo { dest } => cp::start_to(conn, id, dest),
        Request::CpFrom { src } => cp::start_from(conn, id, src),
        Request::Services(ServiceRequest::Logs {
            name,
            follow,
            tail,
            since,
        }) => logs(conn, id, name, follow, tail, since),
        Request::Services(req) => match service(conn, req) {
            Ok(r) => reply(r),
            Err(e) => conn.fail(id, error_code(&e), e.to_string()),
        },
        Request::Attest(req) => attest(conn, id, req),
        Request::Health => reply(Reply::Health {
            health: conn.ctx.manager.health(),
        }),
        Request::Shutdown => {
            reply(Reply::Done);
            say!("shutdown requested over the control channel");
            let _ = conn
                .ctx
                .manager
                .shutdown("shutdown requested over the control channel");
        }
    }
}

/// A fresh document from the NSM, on a thread: the emulated NSM is a round trip to the host.
fn attest(conn: &Arc<Conn>, id: RequestId, req: AttestRequest) {
    let Some(nsm) = crate::nsm::device() else {
        return conn.fail(
            id,
            ErrorCode::NotFound,
            "this enclave has no NSM (no /dev/nsm, and not an emulated enclave)",
        );
    };
    let c = conn.clone();
    let spawned = std::thread::Builder::new()
        .name("attest".into())
        .stack_size(THREAD_STACK)
        .spawn(
            move || match nsm.attest(req.user_data, req.nonce, req.public_key) {
                Ok(document) => c.end(
                    id,
                    &ServerMessage::Reply {
                        id,
                        reply: Reply::Attestation { document },
                    },
                ),
                Err(e) => c.fail(id, ErrorCode::Internal, format!("NSM: {e}")),
            },
        );
    if spawned.is_err() {
        conn.fail(id, ErrorCode::Internal, "no thread for the attestation");
    }
}

fn error_code(e: &ManagerError) -> ErrorCode {
    match e {
        ManagerError::UnknownService(_) => ErrorCode::NotFound,
        ManagerError::AlreadyRunning(_) | ManagerError::ShuttingDown => ErrorCode::Conflict,
        ManagerError::NoAnswer => ErrorCode::Internal,
    }
}

/// A service's status as the protocol shows it.
pub fn wire_status(s: &manager::ServiceStatus) -> ServiceStatus {
    use manager::ServiceState as S;
    let state = match s.state {
        S::Waiting | S::Backoff => ServiceState::Waiting,
        S::Running if !s.ready => ServiceState::Starting,
        S::Running => ServiceState::Running,
        S::Exited => ServiceState::Exited,
        S::Failed => ServiceState::Failed,
        S::Stopped => ServiceState::Stopped,
    };
    ServiceStatus {
        name: s.name.clone(),
        state,
        pid: s.pid.and_then(|p| u32::try_from(p).ok()),
        restarts: s.restarts,
        last_exit: s.last_exit.map(|e| match e {
            Exit::Code(c) => ExitStatus::Code(c),
            Exit::Signal(s) => ExitStatus::Signal(s),
        }),
        since_ms: 0,
        oom_kills: s.oom_kills,
    }
}

/// What a session of `version` may receive: a version-3 client rejects `oom_kills`.
fn for_version(mut status: ServiceStatus, version: u16) -> ServiceStatus {
    if version < 4 {
        status.oom_kills = 0;
    }
    status
}

fn service(conn: &Conn, req: ServiceRequest) -> Result<Reply, ManagerError> {
    let m = &conn.ctx.manager;
    let version = conn.lock().session.version();
    match req {
        ServiceRequest::List => Ok(Reply::Services {
            services: m
                .list()?
                .iter()
                .map(|s| for_version(wire_status(s), version))
                .collect(),
        }),
        ServiceRequest::Status { name } => {
            let list = m.list()?;
            let s = list
                .iter()
                .find(|s| s.name == name)
                .ok_or(ManagerError::UnknownService(name))?;
            Ok(Reply::Service {
                status: for_version(wire_status(s), version),
            })
        }
        ServiceRequest::Start { name } => m.start(&name).map(|()| Reply::Done),
        ServiceRequest::Stop { name } => m.stop(&name).map(|()| Reply::Done),
        ServiceRequest::Restart { name } => m.restart(&name).map(|()| Reply::Done),
        // Served as a stream by `logs`.
        ServiceRequest::Logs { .. } => Ok(Reply::Done),
    }
}

fn send_lines(conn: &Conn, id: RequestId, lines: &[LogLine], since_ms: u64) -> bool {
    for line in lines.iter().filter(|l| l.unix_ms >= since_ms) {
        let channel = match line.stream {
            Stream::Stdout => Channel::Stdout,
            Stream::Stderr => Channel::Stderr,
        };
        let mut text = Vec::with_capacity(line.text.len() + 1);
        text.extend_from_slice(line.text.as_bytes());
        text.push(b'\n');
        if !conn.send_bytes(id, channel, &text) {
            return false;
        }
    }
    true
}

/// `services logs`: the retained lines (the last `tail`, those since `since`), then with
/// `follow` new lines as they come, until cancelled.
fn logs(
    conn: &Arc<Conn>,
    id: RequestId,
    name: String,
    follow: bool,
    tail: Option<u32>,
    since: Option<u64>,
) {
    let m = &conn.ctx.manager;
    let known = m.list().is_ok_and(|l| l.iter().any(|s| s.name == name))
        || m.logs().services().contains(&name);
    if !known {
        return conn.fail(
            id,
            ErrorCode::NotFound,
            format!("no service named {name:?}"),
        );
    }
    conn.register(id);
    let c = conn.clone();
    let since_ms = since.unwrap_or(0).saturating_mul(1000);
    let spawned = std::thread::Builder::new()
        .name("logs".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            if !c.started_registered(id) {
                return;
            }
            let store = c.ctx.manager.logs().clone();
            let batch = store.snapshot(Some(&name), 0);
            let skip = match tail {
                Some(n) => batch.lines.len().saturating_sub(n as usize),
                None => 0,
            };
            if !send_lines(&c, id, &batch.lines[skip..], since_ms) {
                return;
            }
            if !follow {
                return c.end(
                    id,
                    &ServerMessage::Reply {
                        id,
                        reply: Reply::Done,
                    },
                );
            }
            let mut next = batch.next;
            loop {
                let batch = store.follow(Some(&name), next, Duration::from_millis(500));
                next = batch.next;
                if !send_lines(&c, id, &batch.lines, since_ms) || c.wait_credit(id).is_none() {
                    return;
                }
            }
        });
    if spawned.is_err() {
        conn.fail(id, ErrorCode::Internal, "no thread for the logs");
    }
}
