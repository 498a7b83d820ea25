//! `exec`: a process started for the client, its streams pumped over the connection.
//!
//! The process runs as the app's user (or the request's `user`, resolved against the rootfs'
//! `/etc/passwd`, with that user's `HOME`) with the app's environment (plus the request's), in
//! its own process group (with a tty: its own session, the pty its controlling terminal). It is
//! spawned through the supervisor's [`ExitWatchers`](crate::exits::ExitWatchers), which
//! delivers the exit PID 1 reaped. Threads: one pumps the output (stdout and stderr, or the pty)
//! within the client's credit and then sends the exit; one writes stdin when the request
//! forwards it, returning credit as the process consumes it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use enclave_proto::wire::{
    Channel, ClientMessage, ErrorCode, ExecRequest, ExitStatus, RequestId, ServerMessage,
    WindowSize, RECORD_DATA_CHUNK,
};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};

use super::conn::{Active, Conn, THREAD_STACK};
use super::exec_unsafe;
use crate::logs::{spawn_capture, Stream};
use crate::policy::Exit;
use crate::users;

/// Input for the stdin thread.
enum StdinMsg {
    Data(Bytes),
    Eof,
}

/// Handle on a running exec, kept by the connection.
pub(super) struct ExecControl {
    pgid: Pid,
    stdin: Option<mpsc::Sender<StdinMsg>>,
    pty: Option<Arc<OwnedFd>>,
}

impl ExecControl {
    /// Kills the process group (cancel, connection closed).
    pub(super) fn kill(&self) {
        let _ = killpg(self.pgid, Signal::SIGKILL);
    }

    /// Stream messages of the exec: stdin, eof, resize, signal.
    pub(super) fn deliver(&self, msg: ClientMessage) {
        match msg {
            ClientMessage::Data { data, .. } => self.to_stdin(StdinMsg::Data(data)),
            ClientMessage::Eof { .. } => self.to_stdin(StdinMsg::Eof),
            ClientMessage::Resize { size, .. } => {
                if let Some(pty) = &self.pty {
                    let _ = tcsetwinsize(&**pty, winsize(size));
                }
            }
            ClientMessage::Signal { signal, .. } => {
                if let Ok(sig) = Signal::try_from(signal) {
                    let _ = killpg(self.pgid, sig);
                }
            }
            _ => {}
        }
    }

    fn to_stdin(&self, msg: StdinMsg) {
        if let Some(tx) = &self.stdin {
            // The thread is gone when the process stopped reading for good: drop the input.
            let _ = tx.send(msg);
        }
    }
}

fn winsize(size: WindowSize) -> Winsize {
    Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// A new pty of `size`: (master, slave), both close-on-exec.
fn open_pty(size: WindowSize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    tcsetwinsize(&master, winsize(size))?;
    Ok((master, slave))
}

/// The command of an exec request, stdio not set yet.
fn command(conn: &Conn, req: &ExecRequest) -> Result<Command, (ErrorCode, String)> {
    let ctx = &conn.ctx;
    let as_user;
    let creds = match req.user.as_deref() {
        // `exec -u`: resolved now, against the rootfs as it is (an image may add users).
        Some(user) => {
            as_user = users::resolve_in(user, Path::new("/"))
                .map_err(|e| (ErrorCode::BadRequest, e.to_string()))?;
            &as_user
        }
        None => ctx
            .creds
            .as_ref()
            .map_err(|e| (ErrorCode::Internal, format!("the app's user: {e}")))?,
    };
    let mut env = ctx.env.clone();
    if req.user.is_some() {
        // That user's home, as `docker exec -u` gives it (the request's `-e HOME=` still wins).
        match env.iter_mut().find(|(k, _)| k == "HOME") {
            Some(slot) => slot.1 = creds.home.clone(),
            None => env.push(("HOME".into(), creds.home.clone())),
        }
    }
    for (k, v) in &req.env {
        match env.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    if req.tty.is_some() && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    let mut cmd = Command::new(&req.argv[0]);
    cmd.args(&req.argv[1..])
        .env_clear()
        .envs(env)
        .current_dir(req.cwd.as_deref().unwrap_or(&ctx.workdir));
    if req.tty.is_some() {
        // Its own session, the pty its controlling terminal (setsid needs a non-leader, so
        // no process_group here: the session's group is the process's own).
        exec_unsafe::controlling_tty(&mut cmd);
    } else {
        cmd.process_group(0);
    }
    crate::exec_unsafe::prepare_exec(&mut cmd, creds.uid, creds.gid, creds.groups.clone());
    Ok(cmd)
}

fn spawn_error(argv0: &str, e: std::io::Error) -> (ErrorCode, String) {
    let code = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorCode::NotFound,
        _ => ErrorCode::BadRequest,
    };
    (code, format!("cannot run {argv0:?}: {e}"))
}

/// `exec` with `detach`: started, its output kept in the log store as `exec-<pid>`, reaped by
/// the supervisor like an orphan.
pub(super) fn detached(conn: &Conn, req: &ExecRequest) -> Result<u32, (ErrorCode, String)> {
    let mut cmd = command(conn, req)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, _exit) =
        (conn.ctx.manager.spawn(cmd)).map_err(|e| spawn_error(&req.argv[0], e))?;
    let pid = child.id();
    let name: Arc<str> = Arc::from(format!("exec-{pid}"));
    let store = conn.ctx.manager.logs().clone();
    if let Some(out) = child.stdout.take() {
        let _ = spawn_capture(store.clone(), name.clone(), Stream::Stdout, out);
    }
    if let Some(err) = child.stderr.take() {
        let _ = spawn_capture(store, name, Stream::Stderr, err);
    }
    Ok(pid)
}

/// Starts an exec with its stream; the request then ends with `exit` (or an error).
pub(super) fn start(conn: &Arc<Conn>, id: RequestId, req: ExecRequest) {
    if let Err((code, message)) = start_inner(conn, id, &req) {
        conn.fail(id, code, message);
    }
}

fn start_inner(
    conn: &Arc<Conn>,
    id: RequestId,
    req: &ExecRequest,
) -> Result<(), (ErrorCode, String)> {
    let mut cmd = command(conn, req)?;
    let internal = |e: std::io::Error| (ErrorCode::Internal, format!("exec: {e}"));
    let (outputs, stdin_sink, pty) = match req.tty {
        Some(size) => {
            let (master, slave) = open_pty(size).map_err(internal)?;
            cmd.stdin(Stdio::from(slave.try_clone().map_err(internal)?))
                .stdout(Stdio::from(slave.try_clone().map_err(internal)?))
                .stderr(Stdio::from(slave));
            let out = File::from(master.try_clone().map_err(internal)?);
            let sink = File::from(master.try_clone().map_err(internal)?);
            (
                vec![(Channel::Stdout, out)],
                Some(sink),
                Some(Arc::new(master)),
            )
        }
        None => {
            let stdin = if req.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            };
            cmd.stdin(stdin)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            (Vec::new(), None, None)
        }
    };
    // The supervisor drops the command after the spawn, closing the pty's slave it holds.
    let spawned = conn.ctx.manager.spawn(cmd);
    let (mut child, exit_rx) = spawned.map_err(|e| spawn_error(&req.argv[0], e))?;
    let pid = child.id();
    let mut outputs = outputs;
    let mut stdin_sink = stdin_sink;
    if pty.is_none() {
        if let Some(o) = child.stdout.take() {
            outputs.push((Channel::Stdout, File::from(OwnedFd::from(o))));
        }
        if let Some(e) = child.stderr.take() {
            outputs.push((Channel::Stderr, File::from(OwnedFd::from(e))));
        }
        stdin_sink = child.stdin.take().map(|s| File::from(OwnedFd::from(s)));
    }
    let tty = pty.is_some();
    let (stdin_tx, stdin_rx) = mpsc::channel();
    let control = ExecControl {
        pgid: Pid::from_raw(pid as i32),
        stdin: (req.stdin).then_some(stdin_tx),
        pty,
    };
    if !conn.started(id, Some(pid), Active::Exec(control)) {
        return Ok(());
    }
    if let (true, Some(sink)) = (req.stdin, stdin_sink) {
        let c = conn.clone();
        let _ = std::thread::Builder::new()
            .name("exec-stdin".into())
            .stack_size(THREAD_STACK)
            .spawn(move || pump_stdin(&c, id, stdin_rx, sink, tty));
    }
    let c = conn.clone();
    let pgid = Pid::from_raw(pid as i32);
    let spawned = std::thread::Builder::new()
        .name("exec-out".into())
        .stack_size(THREAD_STACK)
        .spawn(move || pump_output(&c, id, outputs, exit_rx, pgid));
    if spawned.is_err() {
        let _ = killpg(pgid, Signal::SIGKILL);
        return Err((
            ErrorCode::Internal,
            "no thread for the exec's output".into(),
        ));
    }
    Ok(())
}

fn pump_stdin(conn: &Conn, id: RequestId, rx: mpsc::Receiver<StdinMsg>, mut sink: File, tty: bool) {
    for msg in rx {
        match msg {
            StdinMsg::Data(data) => {
                if sink.write_all(&data).is_err() {
                    return;
                }
                let bytes = data.len() as u32;
                let _ = conn.send(&ServerMessage::WindowUpdate { id, bytes });
            }
            // On a terminal, end of input is the EOF character (^D) of the line discipline.
            StdinMsg::Eof if tty => {
                let _ = sink.write_all(&[4]);
            }
            StdinMsg::Eof => return,
        }
    }
}

/// Sends the process's output within the credit until every output ended, then its exit.
fn pump_output(
    conn: &Conn,
    id: RequestId,
    mut open: Vec<(Channel, File)>,
    exit_rx: mpsc::Receiver<Exit>,
    pgid: Pid,
) {
    let mut buf = vec![0u8; RECORD_DATA_CHUNK];
    let timeout = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 250_000_000,
    };
    while !open.is_empty() {
        let Some(credit) = conn.wait_credit(id) else {
            // Cancelled or the connection closed: the group was killed.
            return;
        };
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd<'_>> = open
                .iter()
                .map(|(_, f)| PollFd::new(f, PollFlags::IN))
                .collect();
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(_) => continue,
                Ok(_) => {}
            }
            (fds.iter().enumerate())
                .filter(|(_, f)| !f.revents().is_empty())
                .map(|(i, _)| i)
                .collect()
        };
        for i in ready.into_iter().rev() {
            let want = (credit as usize).min(buf.len());
            let (channel, file) = &mut open[i];
            let channel = *channel;
            match file.read(&mut buf[..want]) {
                Ok(n) if n > 0 => {
                    let data = Bytes::copy_from_slice(&buf[..n]);
                    if conn
                        .send(&ServerMessage::Data { id, channel, data })
                        .is_err()
                    {
                        let _ = killpg(pgid, Signal::SIGKILL);
                        return;
                    }
                    // Credit changed: poll again before reading the other stream.
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // End of file, or EIO from a pty whose every slave is closed.
                _ => {
                    open.remove(i);
                    if conn.send(&ServerMessage::Eof { id, channel }).is_err() {
                        return;
                    }
                }
            }
        }
    }
    let exit = loop {
        match exit_rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok(exit) => break exit,
            Err(mpsc::RecvTimeoutError::Timeout) if !conn.is_closed() => {}
            Err(_) => return,
        }
    };
    let status = match exit {
        Exit::Code(c) => ExitStatus::Code(c),
        Exit::Signal(s) => ExitStatus::Signal(s),
    };
    conn.end(id, &ServerMessage::Exit { id, status });
}
