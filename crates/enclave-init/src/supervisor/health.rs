//! The spec's health check, run by the supervisor's loop: a command (a child of PID 1, so its
//! exit comes through the loop's reaping), or a TCP/HTTP request to 127.0.0.1 on a short-lived
//! thread (it may block for the whole timeout). The first check runs once the services are
//! started, then one every `interval` after the previous one ended (Docker waits one interval
//! first; an enclave in a pod gets ready sooner this way).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use enclave_spec::HealthcheckSpec;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::Supervisor;
use crate::health::HealthBoard;
use crate::policy::Exit;
use crate::services::{self, ServiceDef};

/// A check under way.
enum Running {
    /// A command: its pid (also its process group); `timed_out` once it was killed for it.
    Command { pid: Pid, timed_out: bool },
    /// A TCP or HTTP request on a thread.
    Request(Receiver<Result<String, String>>),
}

/// The health check of the enclave.
pub(super) struct HealthCheck {
    spec: HealthcheckSpec,
    /// Whose user and environment a command check runs with (the main service's).
    def: Option<ServiceDef>,
    board: HealthBoard,
    booted: Instant,
    next: Instant,
    running: Option<(Running, Instant)>,
}

impl HealthCheck {
    pub(super) fn new(
        spec: HealthcheckSpec,
        def: Option<ServiceDef>,
        board: HealthBoard,
        now: Instant,
    ) -> Self {
        Self {
            spec,
            def,
            board,
            booted: now,
            next: now,
            running: None,
        }
    }

    /// When the loop must look at the check again.
    pub(super) fn next_due(&self) -> Instant {
        match &self.running {
            // A thread's answer is polled: look often, it is cheap.
            Some((Running::Request(_), started)) => {
                (Instant::now() + Duration::from_millis(50)).min(*started + self.spec.timeout.0)
            }
            Some((Running::Command { .. }, started)) => *started + self.spec.timeout.0,
            None => self.next,
        }
    }

    fn finish(&mut self, ok: bool, detail: String, now: Instant) {
        let counts = now.saturating_duration_since(self.booted) >= self.spec.start_period.0;
        self.board
            .record(ok, detail, self.spec.retries, counts, now);
        self.running = None;
        self.next = now + self.spec.interval.0;
    }

    /// Kills a command check still running (the enclave is shutting down).
    pub(super) fn cancel(&mut self) {
        if let Some((Running::Command { pid, .. }, _)) = &self.running {
            let _ = killpg(*pid, Signal::SIGKILL);
        }
        self.running = None;
    }

    fn start(&mut self, now: Instant) {
        let timeout = self.spec.timeout.0;
        if let Some(argv) = &self.spec.command {
            let Some(def) = &self.def else {
                return self.finish(false, "no main service to run the command as".into(), now);
            };
            match services::spawn_probe(def, argv) {
                Ok(pid) => {
                    self.running = Some((
                        Running::Command {
                            pid,
                            timed_out: false,
                        },
                        now,
                    ))
                }
                Err(e) => self.finish(false, format!("cannot run the command: {e}"), now),
            }
            return;
        }
        let (port, path) = match (&self.spec.tcp, &self.spec.http) {
            (Some(port), _) => (*port, None),
            (None, Some(h)) => (h.port, Some(h.path.clone())),
            (None, None) => return self.finish(false, "no check in the spec".into(), now),
        };
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("healthcheck".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = tx.send(request(port, path.as_deref(), timeout));
            });
        match spawned {
            Ok(_) => self.running = Some((Running::Request(rx), now)),
            Err(e) => self.finish(false, format!("cannot start the check: {e}"), now),
        }
    }
}

/// A TCP connect to 127.0.0.1:`port`, and with `path` an HTTP/1.0 GET whose status must be
/// 2xx or 3xx; all within `timeout`.
fn request(port: u16, path: Option<&str>, timeout: Duration) -> Result<String, String> {
    let started = Instant::now();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{addr}: {e}"))?;
    let Some(path) = path else {
        return Ok(format!("{addr} accepted"));
    };
    let left = timeout
        .checked_sub(started.elapsed())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("timed out after {} ms", timeout.as_millis()))?;
    let _ = stream.set_read_timeout(Some(left));
    let _ = stream.set_write_timeout(Some(left));
    let head = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: enclave-init-healthcheck\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < buf.len() && !buf[..got].contains(&b'\n') {
        match stream.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let code = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| "the answer is not HTTP".to_owned())?;
    if (200..400).contains(&code) {
        Ok(format!("HTTP {code}"))
    } else {
        Err(format!("HTTP {code}"))
    }
}

impl Supervisor {
    /// Starts a check that is due, ends one that ran out of time, takes a thread's answer.
    pub(super) fn check_health(&mut self, now: Instant) {
        let Some(h) = &mut self.health else {
            return;
        };
        let timeout = h.spec.timeout.0;
        match &mut h.running {
            None if now >= h.next => h.start(now),
            None => {}
            Some((Running::Command { pid, timed_out }, started))
                if now >= *started + timeout && !*timed_out =>
            {
                // Its exit, reaped later, then counts as the timeout.
                let _ = killpg(*pid, Signal::SIGKILL);
                *timed_out = true;
            }
            Some((Running::Command { .. }, _)) => {}
            Some((Running::Request(rx), started)) => match rx.try_recv() {
                Ok(Ok(detail)) => h.finish(true, detail, now),
                Ok(Err(detail)) => h.finish(false, detail, now),
                Err(TryRecvError::Empty) if now >= *started + timeout => h.finish(
                    false,
                    format!("timed out after {} ms", timeout.as_millis()),
                    now,
                ),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    h.finish(false, "the check's thread ended".into(), now)
                }
            },
        }
    }

    /// Handles the exit of `pid` if it is the health command; false if it is not.
    pub(super) fn health_exited(&mut self, pid: Pid, exit: Exit, now: Instant) -> bool {
        let Some(h) = &mut self.health else {
            return false;
        };
        let Some((Running::Command { pid: p, timed_out }, _)) = &h.running else {
            return false;
        };
        if *p != pid {
            return false;
        }
        if *timed_out {
            let ms = h.spec.timeout.0.as_millis();
            h.finish(false, format!("timed out after {ms} ms"), now);
        } else {
            h.finish(exit.success(), exit.to_string(), now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static [u8]) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer);
            }
        });
        port
    }

    #[test]
    fn http_checks_read_the_status_line() {
        let t = Duration::from_secs(5);
        let ok = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(request(ok, Some("/healthz"), t), Ok("HTTP 204".into()));
        let bad = serve_once(b"HTTP/1.0 503 Service Unavailable\r\n\r\n");
        assert_eq!(request(bad, Some("/"), t), Err("HTTP 503".into()));
        let junk = serve_once(b"SSH-2.0-OpenSSH\r\n");
        assert_eq!(
            request(junk, Some("/"), t),
            Err("the answer is not HTTP".into())
        );
        let tcp = serve_once(b"");
        assert!(request(tcp, None, t).unwrap().ends_with("accepted"));
        // Nothing listens on a port just freed.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(request(closed, None, t).unwrap_err().contains("refused"));
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let err = request(port, Some("/"), Duration::from_millis(300)).unwrap_err();
        assert!(err.contains("reading the answer"), "{err}");
        drop(l);
    }
}
