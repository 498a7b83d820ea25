//! The supervisor: PID 1's main loop.
//!
//! One thread owns every service's state. It sleeps in `poll` on the signalfd (SIGCHLD,
//! shutdown signals) and the [`ServiceManager`]'s wake-up socket, with a timeout set to the
//! next deadline (a restart backoff, a readiness check, a SIGKILL after the grace period).
//! Each turn it reaps every exited child, then starts what is due, checks readiness and
//! decides whether the enclave is done.

mod control;
mod health;
mod readiness;
mod stopping;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use crate::error::Result;
use crate::logs::{spawn_capture, LogStore, Stream};
use crate::manager::{Request, ServiceManager, ServiceState, ServiceStatus};
use crate::oom::OomWatch;
use crate::policy::{Decision, Exit, Timings};
use crate::services::{self, ServiceDef};
use crate::{reaper, say, signals};

/// Longest sleep of the loop when nothing is due: reaping does not depend on it (SIGCHLD wakes
/// the loop), it only bounds the effect of a lost wake-up.
const IDLE_WAKEUP: Duration = Duration::from_secs(1);

/// A running process of a service.
#[derive(Debug, Clone, Copy)]
struct Run {
    pid: Pid,
    since: Instant,
    ready: bool,
    /// When SIGTERM was sent (a stop is under way).
    term_at: Option<Instant>,
    /// SIGKILL was sent after the grace period.
    killed: bool,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Waiting,
    Running(Run),
    Backoff(Instant),
    Exited,
    Failed,
    Stopped,
}

/// What to do once the running process has ended, when a request asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    None,
    Stop,
    Restart,
}

struct Service {
    def: ServiceDef,
    phase: Phase,
    restarts: u32,
    ever_ready: bool,
    last_exit: Option<Exit>,
    /// Whether the OOM killer ended the last process.
    last_oom: bool,
    oom_kills: u32,
    pending: Pending,
    probe: readiness::ProbeState,
}

impl Service {
    fn status(&self) -> ServiceStatus {
        let (state, pid, ready) = match self.phase {
            Phase::Waiting => (ServiceState::Waiting, None, false),
            Phase::Running(r) => (ServiceState::Running, Some(r.pid.as_raw()), r.ready),
            Phase::Backoff(_) => (ServiceState::Backoff, None, false),
            Phase::Exited => (ServiceState::Exited, None, false),
            Phase::Failed => (ServiceState::Failed, None, false),
            Phase::Stopped => (ServiceState::Stopped, None, false),
        };
        ServiceStatus {
            name: self.def.name.to_string(),
            is_main: self.def.is_main,
            state,
            pid,
            ready,
            restarts: self.restarts,
            last_exit: self.last_exit,
            oom_kills: self.oom_kills,
        }
    }

    fn is_over(&self) -> bool {
        matches!(self.phase, Phase::Exited | Phase::Failed | Phase::Stopped)
            && self.pending == Pending::None
    }
}

/// How the supervisor's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Why the enclave stops (for the log).
    pub reason: String,
    /// How the main service (the image's entrypoint and cmd) last ended; `None` without one,
    /// or when it never ran.
    pub main_exit: Option<Exit>,
    /// Whether the kernel's OOM killer ended the main service's last process.
    pub main_oom: bool,
}

/// PID 1's service supervisor. Build it with [`Supervisor::new`], hand [`Supervisor::manager`]
/// to whoever controls the enclave, then [`Supervisor::run`] until shutdown.
pub struct Supervisor {
    services: Vec<Service>,
    timings: Timings,
    store: Arc<LogStore>,
    sigfd: SignalFd,
    requests: Receiver<Request>,
    wake_rx: UnixStream,
    manager: ServiceManager,
    shutdown: Option<stopping::Shutdown>,
    health: Option<health::HealthCheck>,
    oom: OomWatch,
}

impl Supervisor {
    /// A supervisor for `defs`; nothing starts before [`run`](Self::run). The signals must be
    /// blocked already ([`signals::block`]).
    pub fn new(defs: Vec<ServiceDef>, timings: Timings, store: Arc<LogStore>) -> Result<Self> {
        let sigfd = signals::open()?;
        let (manager, requests, wake_rx) = ServiceManager::new(store.clone())
            .map_err(|e| crate::error::Error::io("wake-up socket pair", e))?;
        let services = defs
            .into_iter()
            .map(|def| Service {
                def,
                phase: Phase::Waiting,
                restarts: 0,
                ever_ready: false,
                last_exit: None,
                last_oom: false,
                oom_kills: 0,
                pending: Pending::None,
                probe: readiness::ProbeState::default(),
            })
            .collect();
        Ok(Self {
            services,
            timings,
            store,
            sigfd,
            requests,
            wake_rx,
            manager,
            shutdown: None,
            health: None,
            oom: OomWatch::new(),
        })
    }

    /// Runs the spec's health check (if any) from the start of [`run`](Self::run); the
    /// control server's `health` reads its state through [`Supervisor::manager`].
    pub fn with_health(mut self, spec: Option<enclave_spec::HealthcheckSpec>) -> Self {
        let board = crate::health::HealthBoard::new(spec.is_some());
        self.manager.set_health(board.clone());
        self.health = spec.map(|spec| {
            let main = self.services.iter().find(|s| s.def.is_main);
            let def = main.or(self.services.first()).map(|s| s.def.clone());
            health::HealthCheck::new(spec, def, board, Instant::now())
        });
        self
    }

    /// A handle for the control server.
    pub fn manager(&self) -> ServiceManager {
        self.manager.clone()
    }

    /// Runs the services until the enclave should stop, stops them, and returns why it stopped.
    pub fn run(self) -> String {
        self.run_to_end().reason
    }

    /// [`run`](Self::run), also returning how the main service's last run ended.
    pub fn run_to_end(mut self) -> Ended {
        let reason = self.supervise();
        let main = self.services.iter().find(|s| s.def.is_main);
        Ended {
            reason,
            main_exit: main.and_then(|s| s.last_exit),
            main_oom: main.is_some_and(|s| s.last_oom),
        }
    }

    fn supervise(&mut self) -> String {
        loop {
            let now = Instant::now();
            let exits = reaper::reap_exited();
            self.handle_exits(exits, now);
            if self.shutdown.is_none() {
                while self.start_due(now) {}
                self.check_readiness(now);
                self.check_health(now);
                if let Some(reason) = self.end_reason() {
                    self.begin_shutdown(reason, now);
                }
            }
            self.enforce_grace(now);
            if let Some(reason) = self.shutdown_complete(now) {
                return reason;
            }
            let timeout = self.next_wakeup(now);
            self.wait(timeout);
            let now = Instant::now();
            for sig in signals::drain(&self.sigfd) {
                match sig {
                    Signal::SIGTERM | Signal::SIGINT | Signal::SIGPWR => {
                        self.begin_shutdown(format!("received {}", sig.as_str()), now)
                    }
                    Signal::SIGHUP => say!("ignoring SIGHUP"),
                    // SIGCHLD: the reap at the top of the loop handles it.
                    _ => {}
                }
            }
            while let Ok(req) = self.requests.try_recv() {
                self.handle_request(req, now);
            }
        }
    }

    fn wait(&mut self, timeout: Duration) {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [
            PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
        ];
        // EINTR and friends just mean another turn of the loop.
        let _ = poll(&mut fds, PollTimeout::from(ms));
        let mut buf = [0u8; 64];
        while matches!(self.wake_rx.read(&mut buf), Ok(n) if n > 0) {}
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| &*s.def.name == name)
    }

    fn deps_ready(&self, i: usize) -> bool {
        self.services[i]
            .def
            .depends_on
            .iter()
            .all(|dep| self.index(dep).is_some_and(|j| self.services[j].ever_ready))
    }

    /// Starts every service that is due; true if one started (its dependents may now be due).
    fn start_due(&mut self, now: Instant) -> bool {
        for i in 0..self.services.len() {
            let due = match self.services[i].phase {
                Phase::Waiting => self.deps_ready(i),
                Phase::Backoff(until) => now >= until,
                _ => false,
            };
            if due {
                self.start(i, now);
                return true;
            }
        }
        false
    }

    fn start(&mut self, i: usize, now: Instant) {
        let svc = &mut self.services[i];
        let name = svc.def.name.clone();
        match services::spawn(&svc.def) {
            Ok(spawned) => {
                for (stream, pipe) in [
                    (
                        Stream::Stdout,
                        spawned.stdout.map(|p| Box::new(p) as Box<dyn Read + Send>),
                    ),
                    (
                        Stream::Stderr,
                        spawned.stderr.map(|p| Box::new(p) as Box<dyn Read + Send>),
                    ),
                ] {
                    if let Some(pipe) = pipe {
                        if let Err(e) =
                            spawn_capture(self.store.clone(), name.clone(), stream, pipe)
                        {
                            say!("cannot capture the output of {name}: {e}");
                        }
                    }
                }
                let ready = svc.def.readiness.is_none();
                svc.phase = Phase::Running(Run {
                    pid: spawned.pid,
                    since: now,
                    ready,
                    term_at: None,
                    killed: false,
                });
                svc.ever_ready |= ready;
                svc.probe = readiness::ProbeState::new(now, &self.timings);
                // Debug quoting keeps a multi-line script on one log line.
                say!("started {name} (pid {}): {:?}", spawned.pid, svc.def.argv);
            }
            Err(e) => {
                say!("cannot start {name}: {e}");
                svc.last_oom = false;
                self.after_exit(i, Exit::Code(127), Duration::ZERO, now);
            }
        }
    }

    fn handle_exits(&mut self, exits: Vec<(Pid, Exit)>, now: Instant) {
        for (pid, exit) in exits {
            let oom = exit == Exit::Signal(Signal::SIGKILL as i32) && self.oom.killed(pid.as_raw());
            if oom {
                say!("the kernel's OOM killer ended pid {pid}: the enclave ran out of memory");
            }
            // A process of the control server's exec: its waiter gets the exit.
            if self.manager.exits().deliver(pid.as_raw(), exit) {
                continue;
            }
            let running = self
                .services
                .iter()
                .position(|s| matches!(s.phase, Phase::Running(r) if r.pid == pid));
            if let Some(i) = running {
                let ran = match self.services[i].phase {
                    Phase::Running(r) => now.saturating_duration_since(r.since),
                    _ => Duration::ZERO,
                };
                let svc = &mut self.services[i];
                svc.last_oom = oom;
                svc.oom_kills += u32::from(oom);
                self.after_exit(i, exit, ran, now);
            } else {
                // Not a service: the health command, a readiness command, or an orphan
                // inherited by PID 1, for which the wait was all it needed.
                if !self.health_exited(pid, exit, now) {
                    self.probe_exited(pid, exit, now);
                }
            }
        }
    }

    /// Decides what follows the end of service `i`'s process (or its failed start).
    fn after_exit(&mut self, i: usize, exit: Exit, ran: Duration, now: Instant) {
        let timings = self.timings.clone();
        let shutting_down = self.shutdown.is_some();
        let svc = &mut self.services[i];
        let name = svc.def.name.clone();
        svc.probe.cancel();
        svc.last_exit = Some(exit);
        let pending = std::mem::replace(&mut svc.pending, Pending::None);
        let ran_ms = ran.as_millis();
        if shutting_down || pending == Pending::Stop {
            svc.phase = Phase::Stopped;
            say!("{name} stopped ({exit})");
            return;
        }
        if pending == Pending::Restart {
            svc.restarts = 0;
            svc.phase = Phase::Waiting;
            say!("{name} stopped ({exit}); starting it again");
            return;
        }
        let max = svc.def.max_restarts;
        match timings.decide(svc.def.restart, max, svc.restarts, exit, ran) {
            Decision::Done => {
                svc.phase = Phase::Exited;
                say!("{name} exited ({exit}) after {ran_ms} ms; not restarted (restart policy)");
            }
            Decision::GiveUp => {
                svc.phase = Phase::Failed;
                say!("{name} exited ({exit}) after {ran_ms} ms; giving up after {max} restarts");
            }
            Decision::Restart { attempt, delay } => {
                svc.restarts = attempt;
                svc.phase = Phase::Backoff(now + delay);
                say!(
                    "{name} exited ({exit}) after {ran_ms} ms; restart {attempt} of {max} in {} ms",
                    delay.as_millis()
                );
            }
        }
    }

    /// Why the enclave should shut down now, if it should: the main service ended for good, or
    /// (without a main service) every service did.
    fn end_reason(&self) -> Option<String> {
        match self.services.iter().find(|s| s.def.is_main) {
            Some(main) if main.is_over() => Some(match main.last_exit {
                Some(exit) => format!("the main service ended ({exit})"),
                None => "the main service ended".to_owned(),
            }),
            Some(_) => None,
            None if self.services.iter().all(Service::is_over) => {
                Some("no main service and no service left running".to_owned())
            }
            None => None,
        }
    }

    /// How long the loop may sleep before something is due.
    fn next_wakeup(&self, now: Instant) -> Duration {
        let mut next = now + IDLE_WAKEUP;
        for svc in &self.services {
            match svc.phase {
                Phase::Backoff(until) => next = next.min(until),
                Phase::Running(r) => {
                    if let (Some(t), false) = (r.term_at, r.killed) {
                        next = next.min(t + self.timings.grace);
                    }
                    if !r.ready && self.shutdown.is_none() {
                        next = next.min(svc.probe.next_due(&self.timings));
                    }
                }
                _ => {}
            }
        }
        if let Some(sd) = &self.shutdown {
            next = next.min(sd.deadline(&self.timings));
        } else if let Some(h) = &self.health {
            next = next.min(h.next_due());
        }
        next.saturating_duration_since(now)
    }
}
