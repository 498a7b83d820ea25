//! [`ServiceManager`]: the handle through which other threads (the control server) list,
//! start, stop and restart services, read their logs and ask for a shutdown.
//!
//! The supervisor owns all service state on the main thread; the handle sends it requests over
//! a channel and pokes a socket so that its poll wakes up at once, then waits for the answer.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use crate::exits::ExitWatchers;
use crate::logs::LogStore;
use crate::policy::Exit;

/// How long a request waits for the supervisor's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The coarse state of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// Waiting for the services it depends on to be ready.
    Waiting,
    /// Its process is running (see [`ServiceStatus::ready`]).
    Running,
    /// Waiting out the backoff before a restart.
    Backoff,
    /// Ended; its restart policy does not restart it.
    Exited,
    /// Given up on after `max_restarts` restarts.
    Failed,
    /// Stopped on request or by the shutdown.
    Stopped,
}

impl ServiceState {
    /// Lower-case name, for display and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Waiting => "waiting",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Exited => "exited",
            ServiceState::Failed => "failed",
            ServiceState::Stopped => "stopped",
        }
    }
}

/// A service as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Name.
    pub name: String,
    /// Whether it is the main service.
    pub is_main: bool,
    /// State.
    pub state: ServiceState,
    /// Pid of the running process.
    pub pid: Option<i32>,
    /// Whether the running process passed its readiness check.
    pub ready: bool,
    /// Restarts since the last stable run.
    pub restarts: u32,
    /// How its last process ended.
    pub last_exit: Option<Exit>,
    /// How many of its processes the kernel's OOM killer ended since the enclave booted.
    pub oom_kills: u32,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagerError {
    /// No service has that name.
    #[error("no service named {0:?}")]
    UnknownService(String),
    /// `start` of a service that is already running or about to.
    #[error("service {0:?} is already running")]
    AlreadyRunning(String),
    /// The enclave is shutting down; nothing starts any more.
    #[error("the enclave is shutting down")]
    ShuttingDown,
    /// The supervisor did not answer (it has ended, or is stuck).
    #[error("the supervisor did not answer")]
    NoAnswer,
}

pub(crate) type Answer = SyncSender<Result<(), ManagerError>>;

/// A request to the supervisor.
pub(crate) enum Request {
    List(SyncSender<Vec<ServiceStatus>>),
    Start(String, Answer),
    Stop(String, Answer),
    Restart(String, Answer),
    Shutdown(String),
    /// Spawn a process for the control server, on the supervisor's thread: there no reap can
    /// run between std's fork and its own wait for a failed exec.
    Spawn(Box<Command>, SyncSender<SpawnResult>),
}

/// A process spawned through [`ServiceManager::spawn`] and the receiver of its exit.
pub type SpawnResult = std::io::Result<(Child, Receiver<Exit>)>;

/// Cloneable, thread-safe handle on the supervisor. See the module documentation.
#[derive(Clone)]
pub struct ServiceManager {
    tx: Sender<Request>,
    wake: Arc<UnixStream>,
    logs: Arc<LogStore>,
    exits: Arc<ExitWatchers>,
    health: Arc<std::sync::OnceLock<crate::health::HealthBoard>>,
}

impl ServiceManager {
    pub(crate) fn new(
        logs: Arc<LogStore>,
    ) -> std::io::Result<(Self, Receiver<Request>, UnixStream)> {
        let (tx, rx) = mpsc::channel();
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let handle = Self {
            tx,
            wake: Arc::new(wake),
            logs,
            exits: Arc::default(),
            health: Arc::default(),
        };
        Ok((handle, rx, wake_rx))
    }

    fn send(&self, req: Request) -> Result<(), ManagerError> {
        self.tx.send(req).map_err(|_| ManagerError::NoAnswer)?;
        // A full socket buffer means a wake-up is already pending: nothing lost.
        let _ = (&*self.wake).write(&[1]);
        Ok(())
    }

    fn ask(&self, make: impl FnOnce(Answer) -> Request) -> Result<(), ManagerError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(make(tx))?;
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| ManagerError::NoAnswer)?
    }

    /// Every service and its state, main first, then in spec order.
    pub fn list(&self) -> Result<Vec<ServiceStatus>, ManagerError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request::List(tx))?;
        rx.recv_timeout(ANSWER_TIMEOUT)
            .map_err(|_| ManagerError::NoAnswer)
    }

    /// Starts a service that is not running (its restart count starts over); one that is in
    /// its restart backoff starts now. Dependencies still gate the start.
    pub fn start(&self, name: &str) -> Result<(), ManagerError> {
        self.ask(|a| Request::Start(name.to_owned(), a))
    }

    /// Stops a service: SIGTERM to its process group, SIGKILL after the grace period; it is
    /// not restarted. Stopping `main` shuts the enclave down, as its exit would.
    pub fn stop(&self, name: &str) -> Result<(), ManagerError> {
        self.ask(|a| Request::Stop(name.to_owned(), a))
    }

    /// Stops the service if it runs, then starts it again.
    pub fn restart(&self, name: &str) -> Result<(), ManagerError> {
        self.ask(|a| Request::Restart(name.to_owned(), a))
    }

    /// Starts the shutdown (then power-off) of the enclave; returns at once.
    pub fn shutdown(&self, reason: &str) -> Result<(), ManagerError> {
        self.send(Request::Shutdown(reason.to_owned()))
    }

    /// Where the health check's state is kept (once, by the supervisor).
    pub(crate) fn set_health(&self, board: crate::health::HealthBoard) {
        let _ = self.health.set(board);
    }

    /// The health check's state; `none` when the spec has no check.
    pub fn health(&self) -> enclave_proto::wire::HealthReport {
        self.health
            .get()
            .map(crate::health::HealthBoard::report)
            .unwrap_or_else(|| crate::health::HealthBoard::new(false).report())
    }

    /// The log store, for `logs` (snapshot) and `logs -f` (follow).
    pub fn logs(&self) -> &Arc<LogStore> {
        &self.logs
    }

    /// Spawns `cmd` on the supervisor's thread and registers it with [`ExitWatchers`]: its
    /// exit arrives on the receiver (never `wait` on the child). Used for the control server's
    /// exec, whose spawn must not race the supervisor's `waitpid(-1)`.
    pub fn spawn(&self, cmd: Command) -> SpawnResult {
        let no_answer = || std::io::Error::other(ManagerError::NoAnswer);
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request::Spawn(Box::new(cmd), tx))
            .map_err(|_| no_answer())?;
        rx.recv_timeout(ANSWER_TIMEOUT).map_err(|_| no_answer())?
    }

    /// Processes started outside the services (the control server's exec) whose exits the
    /// supervisor's reaper delivers; see [`ExitWatchers`].
    pub fn exits(&self) -> &Arc<ExitWatchers> {
        &self.exits
    }
}
