//! Whether an enclave is alive and ready, asked over its control channel: used by
//! `enclave-ctl health` (Kubernetes exec probes), and by the supervisor, which keeps asking
//! while the enclave runs, records the health check's status for `ps`/`inspect`, and can serve
//! `/livez` and `/readyz` over HTTP on an address the operator names (`run --health-listen`).
//!
//! Alive: the enclave answers a ping. Ready: also every service it still runs passed its
//! readiness check, and the spec's health check (run inside by enclave-init) is healthy or
//! absent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_proto::client::{Client, ClientError, ConnectOptions};
use enclave_proto::transport::Addr;
use enclave_proto::wire::{
    HealthReport, HealthStatus, Reply, Request, ServiceRequest, ServiceState, ServiceStatus,
};

use crate::error::{EngineError, Result};
use crate::local_http::Response;
pub use crate::state::HealthRecord;
use crate::state::{EnclaveRecord, StateRoot};

/// How often the supervisor asks.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What an enclave said about its readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Every service, as enclave-init listed them.
    pub services: Vec<ServiceStatus>,
    /// Its control server's counts since boot: (sessions, authentication failures).
    pub control: Option<(u64, u64)>,
    /// Services neither ready nor ended, as `name (state)`.
    pub not_ready: Vec<String>,
    /// The health check's state.
    pub health: HealthReport,
}

impl Readiness {
    /// Why the enclave is not ready; `None` when it is.
    pub fn reason(&self) -> Option<String> {
        if !self.not_ready.is_empty() {
            return Some(format!("services not ready: {}", self.not_ready.join(", ")));
        }
        match self.health.status {
            HealthStatus::None | HealthStatus::Healthy => None,
            status => Some(format!(
                "health check {status} ({})",
                self.health
                    .last
                    .as_deref()
                    .unwrap_or("no check finished yet")
            )),
        }
    }
}

/// Asks a connected enclave for its services and its health check.
pub fn ask(client: &mut Client) -> std::result::Result<Readiness, ClientError> {
    let services = match client.service(ServiceRequest::List)? {
        Reply::Services { services } => services,
        _ => Vec::new(),
    };
    let not_ready = services
        .iter()
        .filter(|s| {
            !matches!(
                s.state,
                ServiceState::Running | ServiceState::Exited | ServiceState::Stopped
            )
        })
        .map(|s| {
            let state = serde_json::to_value(s.state).unwrap_or_default();
            format!("{} ({})", s.name, state.as_str().unwrap_or("?"))
        })
        .collect();
    let health = match client.call(Request::Health)? {
        Reply::Health { health } => health,
        _ => HealthReport {
            status: HealthStatus::Unknown,
            failing_streak: 0,
            last: None,
            checked_ms_ago: None,
        },
    };
    let control = match client.info()? {
        Reply::Info { control, .. } => control.map(|c| (c.sessions, c.auth_failures)),
        _ => None,
    };
    Ok(Readiness {
        services,
        control,
        not_ready,
        health,
    })
}

/// What the supervisor last found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// The enclave answered.
    pub live: bool,
    /// Why it is not live or not ready (`None`: ready).
    pub reason: Option<String>,
    /// The health check, once asked.
    pub health: Option<HealthRecord>,
    /// When the enclave last answered on its control channel.
    pub answered: Option<Instant>,
    /// Its services at the last answer.
    pub services: Option<Vec<ServiceStatus>>,
    /// Its control server's (sessions, authentication failures) since boot.
    pub control: Option<(u64, u64)>,
}

/// The supervisor's asking, on a thread, while the enclave runs.
pub struct Monitor {
    probe: Arc<Mutex<Probe>>,
    stop: Arc<AtomicBool>,
}

impl Monitor {
    /// Starts asking enclave `rec` every [`POLL_INTERVAL`], with the supervisor's key, on one
    /// session kept between looks.
    pub fn start(root: &StateRoot, rec: &EnclaveRecord, probe: Arc<Mutex<Probe>>) -> Result<Self> {
        let (addr, opts) = crate::control::supervisor_session(
            root,
            rec,
            "enclave-engine supervisor (health)",
            Duration::from_secs(1),
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (probe.clone(), stop.clone());
        std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                let mut session = None;
                while !s.load(Ordering::SeqCst) {
                    let before = p.lock().unwrap_or_else(|e| e.into_inner()).answered;
                    let found = look(&addr, &opts, &mut session, before);
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    *p.lock().unwrap_or_else(|e| e.into_inner()) = found;
                    let until = Instant::now() + POLL_INTERVAL;
                    while Instant::now() < until && !s.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
            .map_err(|e| EngineError::Backend(format!("starting the health thread: {e}")))?;
        Ok(Self { probe, stop })
    }

    /// The last finding.
    pub fn probe(&self) -> Probe {
        self.probe.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How long the monitor waits for any answer: an enclave that accepted but stopped answering
/// is not live.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a session to the enclave, every read of it bounded by [`ANSWER_TIMEOUT`].
fn open(addr: &Addr, opts: &ConnectOptions) -> std::result::Result<Client, ClientError> {
    let conn = enclave_proto::transport::connect_with_retry(addr, opts.retry)?;
    conn.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Client::handshake(conn, opts)
}

/// One look of the monitor, on the session it keeps between looks (`session`): opened when
/// there is none, and once more when the kept one failed (the enclave rebooted, or closed it),
/// so that only a fresh session's failure counts. `before`: when it last answered.
fn look(
    addr: &Addr,
    opts: &ConnectOptions,
    session: &mut Option<Client>,
    before: Option<Instant>,
) -> Probe {
    if let Some(client) = session.as_mut() {
        if let Ok(r) = ask(client) {
            return answered(r);
        }
        *session = None;
    }
    let mut client = match open(addr, opts) {
        Ok(c) => c,
        Err(e) => {
            return Probe {
                live: false,
                reason: Some(format!("no answer on the control channel: {e}")),
                answered: before,
                ..Probe::default()
            }
        }
    };
    match ask(&mut client) {
        Ok(r) => {
            *session = Some(client);
            answered(r)
        }
        Err(e) => Probe {
            live: true,
            reason: Some(format!("cannot ask its health: {e}")),
            answered: Some(Instant::now()),
            ..Probe::default()
        },
    }
}

/// The probe of an enclave that answered `r`.
fn answered(r: Readiness) -> Probe {
    Probe {
        live: true,
        reason: r.reason(),
        health: Some(HealthRecord {
            status: r.health.status,
            failing_streak: r.health.failing_streak,
            last: r.health.last.clone(),
            ready: r.reason().is_none(),
        }),
        answered: Some(Instant::now()),
        control: r.control,
        services: Some(r.services),
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves `GET /livez` and `GET /readyz` on `addr` from `probe` (200 or 503, the reason in the
/// body; anything else 404). The listener lives as long as the supervisor.
pub fn serve(addr: SocketAddr, probe: Arc<Mutex<Probe>>) -> Result<SocketAddr> {
    crate::local_http::serve(addr, "--health-listen", move |path| {
        let now = probe.lock().unwrap_or_else(|e| e.into_inner()).clone();
        answer(path, &now)
    })
}

/// The answer to `GET path`.
fn answer(path: &str, probe: &Probe) -> Response {
    let reason = || probe.reason.as_deref().unwrap_or("not asked yet");
    match path {
        "/livez" if probe.live => Response::text("200 OK", "live\n".into()),
        "/livez" => Response::text(
            "503 Service Unavailable",
            format!("not live: {}\n", reason()),
        ),
        "/readyz" if probe.live && probe.reason.is_none() => {
            Response::text("200 OK", "ready\n".into())
        }
        "/readyz" => Response::text(
            "503 Service Unavailable",
            format!("not ready: {}\n", reason()),
        ),
        _ => Response::text("404 Not Found", "GET /livez or /readyz\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn an_enclave_that_accepts_and_never_answers_is_not_live() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        // Accepts every connection and keeps it, silent.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in listener.incoming() {
                held.push(c);
            }
        });
        let opts = ConnectOptions {
            retry: Duration::from_millis(100),
            ..ConnectOptions::default()
        };
        let mut session = None;
        let started = Instant::now();
        let probe = look(&Addr::Unix(path), &opts, &mut session, None);
        assert!(!probe.live, "{probe:?}");
        let reason = probe.reason.unwrap();
        assert!(
            reason.starts_with("no answer on the control channel"),
            "{reason}"
        );
        assert!(session.is_none());
        assert!(started.elapsed() >= ANSWER_TIMEOUT);
    }

    #[test]
    fn livez_and_readyz_follow_the_probe() {
        let probe = Arc::new(Mutex::new(Probe::default()));
        let addr = serve("127.0.0.1:0".parse().unwrap(), probe.clone()).unwrap();
        assert!(get(addr, "/livez").starts_with("HTTP/1.1 503"));
        *probe.lock().unwrap() = Probe {
            live: true,
            reason: Some("services not ready: web (starting)".into()),
            ..Probe::default()
        };
        assert!(get(addr, "/livez").starts_with("HTTP/1.1 200"));
        let r = get(addr, "/readyz");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        assert!(
            r.ends_with("not ready: services not ready: web (starting)\n"),
            "{r}"
        );
        probe.lock().unwrap().reason = None;
        assert!(get(addr, "/readyz").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/metrics").starts_with("HTTP/1.1 404"));
        // Garbage is a 405, not a crash.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&[0xff; 2000]).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.starts_with(b"HTTP/1.1 405"));
    }

    #[test]
    fn readiness_reasons() {
        let mut r = Readiness {
            services: vec![],
            control: None,
            not_ready: vec![],
            health: HealthReport {
                status: HealthStatus::Healthy,
                failing_streak: 0,
                last: Some("exit 0".into()),
                checked_ms_ago: Some(1),
            },
        };
        assert_eq!(r.reason(), None);
        r.health.status = HealthStatus::Unhealthy;
        r.health.last = Some("HTTP 503".into());
        assert_eq!(r.reason().unwrap(), "health check unhealthy (HTTP 503)");
        r.not_ready.push("web (starting)".into());
        assert_eq!(r.reason().unwrap(), "services not ready: web (starting)");
    }
}
