//! Readiness checks: a TCP connect to 127.0.0.1:port, or a command that exits 0, repeated
//! until the service's running process passes one.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{Phase, Supervisor};
use crate::policy::{Exit, Timings};
use crate::say;
use crate::services;

/// Checks slow down to this interval once the readiness timeout has passed.
const SLOW_INTERVAL: Duration = Duration::from_secs(1);
/// A local connect either succeeds or is refused at once; this only bounds a stuck stack.
const TCP_TIMEOUT: Duration = Duration::from_millis(200);

/// The readiness checking of one running process.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ProbeState {
    next_check: Option<Instant>,
    deadline: Option<Instant>,
    /// A readiness command in flight: its pid (also its process group) and start.
    running: Option<(Pid, Instant)>,
    warned: bool,
}

impl ProbeState {
    pub(super) fn new(now: Instant, timings: &Timings) -> Self {
        Self {
            next_check: Some(now),
            deadline: Some(now + timings.ready_timeout),
            running: None,
            warned: false,
        }
    }

    /// When the next check (or the kill of a stuck one) is due.
    pub(super) fn next_due(&self, timings: &Timings) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        match self.running {
            Some((_, started)) => started + timings.probe_timeout,
            None => self.next_check.unwrap_or(far),
        }
    }

    fn schedule(&mut self, now: Instant, timings: &Timings) {
        let late = self.deadline.is_some_and(|d| now >= d);
        let interval = if late {
            SLOW_INTERVAL
        } else {
            timings.ready_interval
        };
        self.next_check = Some(now + interval);
    }

    /// Kills a readiness command still running (the service stopped, or the enclave is).
    pub(super) fn cancel(&mut self) {
        if let Some((pid, _)) = self.running.take() {
            let _ = killpg(pid, Signal::SIGKILL);
        }
        self.next_check = None;
    }
}

impl Supervisor {
    pub(super) fn check_readiness(&mut self, now: Instant) {
        let timings = self.timings.clone();
        for i in 0..self.services.len() {
            let svc = &mut self.services[i];
            let Phase::Running(run) = svc.phase else {
                continue;
            };
            let Some(check) = svc.def.readiness.clone() else {
                continue;
            };
            if run.ready || run.term_at.is_some() {
                continue;
            }
            let name = svc.def.name.clone();
            if let Some(deadline) = svc.probe.deadline {
                if now >= deadline && !svc.probe.warned {
                    svc.probe.warned = true;
                    say!(
                        "{name} is not ready after {} ms; still checking, every {} ms",
                        timings.ready_timeout.as_millis(),
                        SLOW_INTERVAL.as_millis()
                    );
                }
            }
            if let Some((pid, started)) = svc.probe.running {
                if now >= started + timings.probe_timeout {
                    // Reaped later like any child; its exit then counts as "not ready".
                    let _ = killpg(pid, Signal::SIGKILL);
                }
                continue;
            }
            if svc.probe.next_check.is_some_and(|t| now < t) {
                continue;
            }
            if let Some(port) = check.tcp {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                if TcpStream::connect_timeout(&addr, TCP_TIMEOUT).is_ok() {
                    self.mark_ready(i);
                } else {
                    self.services[i].probe.schedule(now, &timings);
                }
            } else if let Some(argv) = &check.command {
                match services::spawn_probe(&svc.def, argv) {
                    Ok(pid) => svc.probe.running = Some((pid, now)),
                    Err(e) => {
                        say!("{name}: cannot run its readiness command: {e}");
                        svc.probe.schedule(now, &timings);
                    }
                }
            }
        }
    }

    /// Handles the exit of `pid` if it is a readiness command; false if it is not one.
    pub(super) fn probe_exited(&mut self, pid: Pid, exit: Exit, now: Instant) -> bool {
        let timings = self.timings.clone();
        let Some(i) = self
            .services
            .iter()
            .position(|s| s.probe.running.is_some_and(|(p, _)| p == pid))
        else {
            return false;
        };
        let svc = &mut self.services[i];
        svc.probe.running = None;
        let still_running =
            matches!(svc.phase, Phase::Running(r) if !r.ready && r.term_at.is_none());
        if exit.success() && still_running {
            self.mark_ready(i);
        } else if still_running {
            svc.probe.schedule(now, &timings);
        }
        true
    }

    fn mark_ready(&mut self, i: usize) {
        let svc = &mut self.services[i];
        if let Phase::Running(run) = &mut svc.phase {
            run.ready = true;
            svc.ever_ready = true;
            svc.probe.next_check = None;
            say!("{} is ready", svc.def.name);
        }
    }
}
