//! Stopping services: SIGTERM to the process group, SIGKILL after the grace period; and the
//! shutdown phase, which stops everything.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::{Pending, Phase, Supervisor};
use crate::policy::Timings;
use crate::{say, shutdown};

/// After the grace period and the SIGKILLs, how long to wait for the killed processes to be
/// reaped before powering off anyway (a process stuck in the kernel cannot be waited for).
const KILL_WAIT: Duration = Duration::from_secs(2);

/// The shutdown under way.
#[derive(Debug)]
pub(super) struct Shutdown {
    reason: String,
    started: Instant,
}

impl Shutdown {
    /// When the shutdown ends whatever still runs.
    pub(super) fn deadline(&self, timings: &Timings) -> Instant {
        self.started + timings.grace + KILL_WAIT
    }
}

/// Sends `sig` to the process group led by `pid` (every service leads its own), falling back to
/// the process itself if it left the group.
fn signal_group(pid: Pid, sig: Signal) {
    if killpg(pid, sig).is_err() {
        let _ = kill(pid, sig);
    }
}

impl Supervisor {
    /// Sends SIGTERM to service `i` if it runs, and arms the SIGKILL. Returns whether it runs.
    pub(super) fn terminate(&mut self, i: usize, now: Instant) -> bool {
        self.arm_term(i, now, true)
    }

    /// Arms the SIGKILL of service `i` if it runs, sending its group SIGTERM when `signal`
    /// (the shutdown of PID 1 sends everyone's at once). Returns whether it runs.
    fn arm_term(&mut self, i: usize, now: Instant, signal: bool) -> bool {
        let svc = &mut self.services[i];
        svc.probe.cancel();
        match &mut svc.phase {
            Phase::Running(run) => {
                if run.term_at.is_none() {
                    run.term_at = Some(now);
                    if signal {
                        signal_group(run.pid, Signal::SIGTERM);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// SIGKILLs the services whose grace period after SIGTERM is over.
    pub(super) fn enforce_grace(&mut self, now: Instant) {
        let grace = self.timings.grace;
        for svc in &mut self.services {
            if let Phase::Running(run) = &mut svc.phase {
                if let (Some(t), false) = (run.term_at, run.killed) {
                    if now >= t + grace {
                        run.killed = true;
                        signal_group(run.pid, Signal::SIGKILL);
                        say!(
                            "{} did not stop within {} ms of SIGTERM; sent SIGKILL",
                            svc.def.name,
                            grace.as_millis()
                        );
                    }
                }
            }
        }
    }

    /// Starts the shutdown: nothing starts any more, every running service gets SIGTERM.
    pub(super) fn begin_shutdown(&mut self, reason: String, now: Instant) {
        if self.shutdown.is_some() {
            return;
        }
        if let Some(h) = &mut self.health {
            h.cancel();
        }
        say!(
            "shutting down: {reason}; stopping services (grace {} ms)",
            self.timings.grace.as_millis()
        );
        // As PID 1, one `kill(-1)` asks every process at once: the services' groups and the
        // daemons that left them (setsid) alike, each once, as Docker sends one SIGTERM (a
        // `killpg` per service before it had the services' shells run their TERM traps twice).
        // Anywhere else each service's group is asked.
        let everyone = shutdown::is_init();
        for i in 0..self.services.len() {
            if self.arm_term(i, now, !everyone) {
                self.services[i].pending = Pending::Stop;
            } else if !matches!(self.services[i].phase, Phase::Exited | Phase::Failed) {
                self.services[i].phase = Phase::Stopped;
            }
        }
        shutdown::signal_all_others(Signal::SIGTERM);
        self.shutdown = Some(Shutdown {
            reason,
            started: now,
        });
    }

    /// The shutdown reason once every service has stopped (or the deadline passed); the
    /// remaining processes are killed and reaped on the way out.
    pub(super) fn shutdown_complete(&mut self, now: Instant) -> Option<String> {
        let sd = self.shutdown.as_ref()?;
        let running: Vec<&str> = self
            .services
            .iter()
            .filter(|s| matches!(s.phase, Phase::Running(_)))
            .map(|s| &*s.def.name)
            .collect();
        if !running.is_empty() {
            if now < sd.deadline(&self.timings) {
                return None;
            }
            say!(
                "still running at the shutdown deadline: {}",
                running.join(", ")
            );
        }
        shutdown::signal_all_others(Signal::SIGKILL);
        shutdown::reap_for(Duration::from_millis(500));
        Some(sd.reason.clone())
    }
}
