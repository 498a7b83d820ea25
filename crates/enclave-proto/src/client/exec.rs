//! `exec`: run a command in the enclave with its streams forwarded.

use bytes::Bytes;
use std::io::{self, Read, Write};
use std::sync::Arc;

use super::{Client, ClientError, Shared};
use crate::wire::{
    Channel, ClientMessage, ExecRequest, ExitStatus, Reply, Request, RequestId, ServerMessage,
    SessionError, WindowSize, RECORD_DATA_CHUNK,
};

/// Where an exec's streams go.
pub struct ExecIo {
    /// Forwarded as the process's stdin (when the request has `stdin`); read on a thread of
    /// its own, which is left behind, blocked in `read`, if the process ends first.
    pub stdin: Option<Box<dyn Read + Send>>,
    /// The process's stdout (with a tty: the terminal's output).
    pub stdout: Box<dyn Write>,
    /// The process's stderr.
    pub stderr: Box<dyn Write>,
}

/// Controls a running exec from another thread: terminal size, signals, cancel.
#[derive(Clone)]
pub struct ExecHandle {
    shared: Arc<Shared>,
    id: RequestId,
    pid: Option<u32>,
}

impl ExecHandle {
    /// The process id in the enclave.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The terminal changed size (exec with a tty).
    pub fn resize(&self, size: WindowSize) -> Result<(), ClientError> {
        self.ignore_ended(
            self.shared
                .send(&ClientMessage::Resize { id: self.id, size }),
        )
    }

    /// Delivers a signal to the process's group.
    pub fn signal(&self, signal: i32) -> Result<(), ClientError> {
        self.ignore_ended(self.shared.send(&ClientMessage::Signal {
            id: self.id,
            signal,
        }))
    }

    /// Abandons the exec: the enclave kills the process.
    pub fn cancel(&self) -> Result<(), ClientError> {
        self.ignore_ended(self.shared.send(&ClientMessage::Cancel { id: self.id }))
    }

    fn ignore_ended(&self, r: Result<(), ClientError>) -> Result<(), ClientError> {
        match r {
            Err(ClientError::Session(SessionError::Ended(_))) => Ok(()),
            other => other,
        }
    }
}

/// Sends `input` as stdin within the credit, then `eof`. Runs on its own thread.
fn pump_stdin(shared: Arc<Shared>, id: RequestId, mut input: Box<dyn Read + Send>) {
    let mut buf = vec![0u8; RECORD_DATA_CHUNK];
    loop {
        let Some(credit) = shared.wait_credit(id) else {
            return;
        };
        let want = (credit as usize).min(RECORD_DATA_CHUNK);
        let n = match input.read(&mut buf[..want]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let msg = if n == 0 {
            ClientMessage::Eof {
                id,
                channel: Channel::Stdin,
            }
        } else {
            ClientMessage::Data {
                id,
                channel: Channel::Stdin,
                data: Bytes::copy_from_slice(&buf[..n]),
            }
        };
        if shared.send(&msg).is_err() || n == 0 {
            return;
        }
    }
}

impl Client {
    /// Runs a command and forwards its streams until it ends; returns how it ended.
    /// `on_started` gets a handle for resizes and signals once the process runs.
    pub fn exec(
        &mut self,
        request: ExecRequest,
        mut io: ExecIo,
        on_started: impl FnOnce(ExecHandle),
    ) -> Result<ExitStatus, ClientError> {
        let with_stdin = request.stdin;
        let id = self.start(Request::Exec(request))?;
        let mut on_started = Some(on_started);
        loop {
            match self.recv()? {
                ServerMessage::Started { id: rid, pid } if rid == id => {
                    if let Some(f) = on_started.take() {
                        f(ExecHandle {
                            shared: self.shared.clone(),
                            id,
                            pid,
                        });
                    }
                    if let (true, Some(input)) = (with_stdin, io.stdin.take()) {
                        let shared = self.shared.clone();
                        std::thread::Builder::new()
                            .name("exec-stdin".into())
                            .spawn(move || pump_stdin(shared, id, input))?;
                    }
                }
                ServerMessage::Data {
                    id: rid,
                    channel,
                    data,
                } if rid == id => {
                    let out = match channel {
                        Channel::Stderr => &mut io.stderr,
                        _ => &mut io.stdout,
                    };
                    out.write_all(&data)?;
                    out.flush()?;
                    let bytes = data.len() as u32;
                    if bytes > 0 {
                        self.send(&ClientMessage::WindowUpdate { id, bytes })?;
                    }
                }
                ServerMessage::Exit { id: rid, status } if rid == id => return Ok(status),
                ServerMessage::Error {
                    id: rid,
                    code,
                    message,
                } if rid == id => return Err(ClientError::Remote { code, message }),
                _ => {}
            }
        }
    }

    /// Starts a command in the background; returns its pid.
    pub fn exec_detached(&mut self, mut request: ExecRequest) -> Result<u32, ClientError> {
        request.detach = true;
        request.stdin = false;
        request.tty = None;
        match self.call(Request::Exec(request))? {
            Reply::Detached { pid } => Ok(pid),
            _ => Err(SessionError::Unexpected("reply").into()),
        }
    }
}
