//! The per-enclave supervisor (`enclave-engine supervise ID`): boots the enclave with its
//! backend, answers the heartbeat, collects the console, applies the restart policy, and
//! records every step in `state.json`. It owns the backend's processes (they die with it) and
//! holds `supervisor.lock` while it lives, which is how `ps` tells a live enclave from one whose
//! supervisor was killed.

mod ending;
pub mod handoff;
mod heartbeat;
pub mod nsm;
mod services;
pub mod signals;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_proto::wire::auth::VerifyingKey;
use enclave_proto::wire::HealthStatus;
use enclave_spec::MAIN_SERVICE;

pub use ending::exit_code;
use ending::{
    auto_remove, ending_with_console, graceful_stop, judge, wait_heartbeat, ATTACHED_WAIT,
};
pub use heartbeat::HeartbeatListener;

use crate::backend::{Attestation, Backend, ParentPort, VsockRoute};
use crate::console::{spawn_reader, ConsoleState};
use crate::error::{EngineError, Result};
use crate::events::{self, Event, EventKind};
use crate::logs::LogWriter;
use crate::policy::{Ending, RestartPolicy};
use crate::state::{EnclaveRecord, StateRoot, Status, StopRequest, STOP_FILE};
use crate::util::now_rfc3339;

/// The default wait for the boot heartbeat.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// The default grace period of `stop`.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Wait for the heartbeat.
    pub boot_timeout: Duration,
    /// How often to look at the instance.
    pub tick: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            boot_timeout: DEFAULT_BOOT_TIMEOUT,
            tick: Duration::from_millis(50),
        }
    }
}

struct Ctx<'a> {
    root: &'a StateRoot,
    rec: EnclaveRecord,
    logs: Arc<Mutex<LogWriter>>,
    stop: &'a AtomicBool,
    opts: &'a Options,
    /// The supervisor key's public half, handed to the enclave at each boot.
    key: VerifyingKey,
    /// The operator's secrets (`run --secret`), handed over at each boot.
    secrets: BTreeMap<String, Vec<u8>>,
    /// What the health monitor last found (served by `--health-listen`).
    probe: Arc<Mutex<crate::health::Probe>>,
    /// What `--metrics-listen` serves (the probe above among it).
    metrics: crate::metrics::Sources,
}

impl Ctx<'_> {
    fn save(&self) {
        if let Err(e) = self.root.save(&self.rec) {
            tracing::error!("saving state: {e}");
        }
        *self
            .metrics
            .record
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(self.rec.clone());
    }

    /// Ends the supervision before the first boot: `error` recorded, the enclave failed.
    fn give_up(&mut self, error: String) -> EnclaveRecord {
        fail(self, error);
        self.rec.status = Status::Failed;
        self.rec.finished_at = Some(now_rfc3339());
        self.save();
        self.rec.clone()
    }

    /// Appends to the state directory's event log.
    fn record(&self, event: Event) {
        events::record(self.root, event);
    }

    fn event(&self, text: &str) {
        tracing::info!("{text}");
        let mut w = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.line("supervisor", text);
    }

    fn stop_timeout(&self) -> Duration {
        let path = self.root.dir(&self.rec.id).join(STOP_FILE);
        crate::util::read_json::<StopRequest>(&path)
            .map(|r| Duration::from_secs(r.timeout_secs))
            .unwrap_or(DEFAULT_STOP_TIMEOUT)
    }
}

/// Supervises enclave `id` until it ends for good. `stop` is set when a stop is asked for.
pub fn supervise(
    root: &StateRoot,
    id: &str,
    backend: &mut dyn Backend,
    opts: &Options,
    stop: &AtomicBool,
) -> Result<EnclaveRecord> {
    let dir = root.dir(id);
    let mut rec = root.load(id)?;
    rec.supervisor_pid = Some(std::process::id());
    let logs = Arc::new(Mutex::new(LogWriter::open(&dir.join("logs"))?));
    let key = crate::control::load_or_create_key(&dir)?.verifying_key();
    let secrets = crate::control::read_secrets(&dir)?;
    let metrics = crate::metrics::Sources::default();
    *metrics.record.lock().unwrap_or_else(|p| p.into_inner()) = Some(rec.clone());
    // Until this function returns, before `--rm` removes the directory.
    let _snapshots =
        crate::metrics::keep_snapshot(metrics.clone(), dir.join(crate::metrics::SNAPSHOT_FILE));
    let mut ctx = Ctx {
        root,
        rec,
        logs,
        stop,
        opts,
        key,
        secrets,
        probe: metrics.probe.clone(),
        metrics,
    };
    if let Some(addr) = ctx.rec.health_listen {
        match crate::health::serve(addr, ctx.probe.clone()) {
            Ok(bound) => ctx.event(&format!("serving /livez and /readyz on http://{bound}")),
            Err(e) => return Ok(ctx.give_up(e.to_string())),
        }
    }
    if let Some(addr) = ctx.rec.metrics_listen {
        match crate::metrics::serve(addr, ctx.metrics.clone()) {
            Ok(bound) => ctx.event(&format!("serving /metrics on http://{bound}")),
            Err(e) => return Ok(ctx.give_up(e.to_string())),
        }
    }
    let route = backend.vsock_route(ctx.rec.cid, &root.socket_dir(id));
    // Once for all boots: published ports stay bound while the enclave restarts.
    let network = match crate::network::start_host_proxies(&ctx.rec.network, &route) {
        Ok(n) => n,
        Err(e) => return Ok(ctx.give_up(e.to_string())),
    };
    if let Some(proxies) = &network {
        *ctx.metrics
            .proxies
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = proxies.stats();
    }
    loop {
        let ending = boot_once(&mut ctx, backend, &route);
        record_die(&ctx);
        let rec = &mut ctx.rec;
        rec.finished_at = Some(now_rfc3339());
        let restart =
            rec.restart.should_restart(ending, rec.restarts) && !stop.load(Ordering::SeqCst);
        if !restart {
            rec.status = match ending {
                Ending::Failed | Ending::Refused => Status::Failed,
                // `exited (3)`, as Docker shows a container whose process exited 3.
                Ending::Clean | Ending::MainFailed | Ending::Stopped => Status::Exited,
            };
            if matches!(ending, Ending::Clean | Ending::MainFailed | Ending::Stopped) {
                rec.error = None;
            }
            ctx.save();
            let text = format!(
                "enclave {}: {}",
                ctx.rec.status,
                ctx.rec.exit.clone().unwrap_or_default()
            );
            ctx.event(&text);
            let _ = std::fs::remove_file(dir.join(STOP_FILE));
            return Ok(ctx.rec);
        }
        if !dir.join("state.json").exists() {
            tracing::warn!("the enclave's state directory is gone; giving up");
            return Ok(ctx.rec);
        }
        rec.status = Status::Restarting;
        rec.restarts += 1;
        let n = rec.restarts;
        let pause = RestartPolicy::backoff(n - 1);
        ctx.save();
        ctx.record(
            Event::new(EventKind::Restart, &ctx.rec)
                .with("restart", n)
                .with("policy", ctx.rec.restart),
        );
        ctx.event(&format!(
            "restarting (restart {n}, policy {}) in {} ms",
            ctx.rec.restart,
            pause.as_millis()
        ));
        let until = Instant::now() + pause;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(opts.tick);
        }
        if stop.load(Ordering::SeqCst) {
            ctx.rec.status = Status::Exited;
            ctx.rec.exit = Some("stopped while waiting to restart".into());
            ctx.save();
            return Ok(ctx.rec);
        }
    }
}

/// One boot: launch, heartbeat, run until it ends. Records everything; returns the ending.
fn boot_once(ctx: &mut Ctx<'_>, backend: &mut dyn Backend, route: &VsockRoute) -> Ending {
    let dir = ctx.root.dir(&ctx.rec.id);
    ctx.rec.status = Status::Starting;
    ctx.rec.started_at = Some(now_rfc3339());
    ctx.rec.finished_at = None;
    ctx.rec.boot_ms = None;
    ctx.rec.exit = None;
    ctx.rec.exit_code = None;
    ctx.rec.oom_killed = false;
    ctx.save();
    ctx.record(Event::new(EventKind::Boot, &ctx.rec).with("restarts", ctx.rec.restarts));
    let spec = ctx.root.launch_spec(&ctx.rec);
    // Listen before the VM starts, so that the guest's connection never finds nobody. An
    // AF_VSOCK heartbeat port is nitro-cli's, which answers the heartbeat itself.
    let listener = match route.parent_port(ctx.rec.ports.heartbeat) {
        ParentPort::Unix(path) => match HeartbeatListener::bind(&path) {
            Ok(l) => Some(l),
            Err(e) => return fail(ctx, format!("cannot listen for the heartbeat: {e}")),
        },
        ParentPort::Vsock { .. } => None,
    };
    let _nsm = start_nsm(ctx, route);
    let handoff = start_handoff(ctx, route);
    let started = Instant::now();
    let mut instance = match backend.launch(&spec) {
        Ok(i) => i,
        Err(e) if e.refuses_boot() => {
            fail(ctx, e.to_string());
            return Ending::Refused;
        }
        Err(e) => return fail(ctx, e.to_string()),
    };
    ctx.rec.instance = instance.info();
    ctx.save();
    let console = Arc::new(ConsoleState::default());
    let reader = instance
        .take_console()
        .map(|c| spawn_reader(c, &dir, ctx.logs.clone(), console.clone()));

    let mut listener = if instance.heartbeat_by_backend() {
        None
    } else {
        listener
    };
    if let Some(l) = listener.as_ref() {
        match wait_heartbeat(ctx, l, instance.as_mut(), started) {
            Ok(()) => {}
            Err(ending) => {
                finish_console(reader);
                return ending_with_console(ctx, ending, &console);
            }
        }
    }
    listener.take();
    ctx.metrics
        .boots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .observe(started.elapsed());
    ctx.rec.boot_ms = Some(started.elapsed().as_millis() as u64);
    ctx.rec.status = Status::Running;
    ctx.rec.error = None;
    ctx.save();
    ctx.event(&format!(
        "enclave running (heartbeat after {} ms)",
        started.elapsed().as_millis()
    ));
    ctx.record(
        Event::new(EventKind::Heartbeat, &ctx.rec).with("boot_ms", started.elapsed().as_millis()),
    );

    // Asks the enclave how it is every few seconds; a failure to start is logged only.
    let monitor = crate::health::Monitor::start(ctx.root, &ctx.rec, ctx.probe.clone())
        .map_err(|e| ctx.event(&format!("no health monitoring: {e}")))
        .ok();
    let mut services: Vec<enclave_proto::wire::ServiceStatus> = Vec::new();
    let ending = loop {
        if ctx.stop.load(Ordering::SeqCst) {
            break graceful_stop(ctx, instance.as_mut());
        }
        if let Some(now) = monitor.as_ref().and_then(|m| m.probe().services) {
            for event in services::changes(&ctx.rec, &services, &now) {
                ctx.record(event);
            }
            services = now;
        }
        if let Some(found) = monitor.as_ref().map(|m| m.probe().health) {
            if found.is_some() && found != ctx.rec.health {
                // As Docker's health_status: only for an image with a health check.
                let status = found.as_ref().map(|h| h.status);
                if status != ctx.rec.health.as_ref().map(|h| h.status) {
                    if let Some(status) = status.filter(|s| *s != HealthStatus::None) {
                        ctx.record(
                            Event::new(EventKind::HealthStatus, &ctx.rec).with("status", status),
                        );
                    }
                }
                ctx.rec.health = found;
                ctx.save();
            }
        }
        match instance.try_wait() {
            Ok(Some(exit)) => break judge(ctx, exit, &console),
            Ok(None) => {}
            Err(e) => tracing::warn!("looking at the instance: {e}"),
        }
        std::thread::sleep(ctx.opts.tick);
    };
    drop(monitor);
    *ctx.probe.lock().unwrap_or_else(|p| p.into_inner()) = crate::health::Probe::default();
    ctx.rec.health = None;
    drop(instance);
    finish_console(reader);
    // The enclave's word beats the guess `graceful_stop` made when it had to kill.
    if let Some(report) = handoff.as_ref().and_then(|h| h.exit_report()) {
        if report.oom {
            ctx.rec.oom_killed = true;
            // Unless the last look at the services saw it already.
            if !services::ended_by_oom(&services, MAIN_SERVICE) {
                ctx.record(Event::new(EventKind::Oom, &ctx.rec).with("service", MAIN_SERVICE));
            }
        }
        if let Some(main) = report.main {
            ctx.rec.exit_code = Some(exit_code(main));
            ctx.record(Event::new(EventKind::Exit, &ctx.rec).with("exit_code", exit_code(main)));
        }
    }
    match (ending, ctx.rec.exit_code) {
        (Ending::Clean, Some(code)) if code != 0 => Ending::MainFailed,
        _ => ending,
    }
}

/// The boot hand-off; a failure is logged, not fatal: the enclave then accepts only its spec's
/// authorized keys, and `stop` falls back to killing it.
fn start_handoff(ctx: &Ctx<'_>, route: &VsockRoute) -> Option<handoff::HandoffServer> {
    let setup = || -> Result<handoff::HandoffSetup> {
        let (listener, expect_cid) = route
            .parent_port(enclave_proto::ports::SUPERVISOR)
            .listen()?;
        // Nitro's debug mode zeroes the PCRs: nothing to check the document against.
        let check = if ctx.rec.debug_mode {
            None
        } else {
            Some(crate::control::DocumentCheck::for_record(
                ctx.root, &ctx.rec,
            )?)
        };
        let logs = ctx.logs.clone();
        Ok(handoff::HandoffSetup {
            listener,
            expect_cid,
            key: ctx.key,
            secrets: ctx.secrets.clone(),
            check,
            dir: ctx.root.dir(&ctx.rec.id),
            events: Arc::new(move |text: &str| {
                tracing::info!("{text}");
                let mut w = logs.lock().unwrap_or_else(|p| p.into_inner());
                let _ = w.line("supervisor", text);
            }),
        })
    };
    match setup().and_then(handoff::HandoffServer::start) {
        Ok(server) => Some(server),
        Err(e) => {
            ctx.event(&format!(
                "no boot hand-off ({e}): the enclave will accept only its spec's authorized keys"
            ));
            None
        }
    }
}

/// The emulated NSM for this boot, for enclaves that ask their parent for documents (Nitro's
/// have `/dev/nsm`); a failure is logged, not fatal.
fn start_nsm(ctx: &Ctx<'_>, route: &VsockRoute) -> Option<nsm::NsmServer> {
    if ctx.rec.backend.attestation() != Attestation::Emulated {
        return None;
    }
    // The emulated NSM serves one enclave, on a socket only that enclave reaches.
    let ParentPort::Unix(path) = route.parent_port(enclave_proto::ports::NSM_EMULATION) else {
        return None;
    };
    nsm::start_for(
        ctx.root.path(),
        &ctx.rec,
        &path,
        ctx.metrics.documents.clone(),
    )
    .map_err(|e| ctx.event(&format!("no emulated NSM for this boot: {e}")))
    .ok()
}

/// The `die` event of a boot (also of one that failed before its heartbeat): how the enclave
/// ended, and the exit code when known.
fn record_die(ctx: &Ctx<'_>) {
    let mut event = Event::new(EventKind::Die, &ctx.rec);
    if let Some(exit) = &ctx.rec.exit {
        event = event.with("exit", exit);
    }
    if let Some(code) = ctx.rec.exit_code {
        event = event.with("exit_code", code);
    }
    ctx.record(event);
}

fn finish_console(reader: Option<std::thread::JoinHandle<()>>) {
    if let Some(r) = reader {
        let _ = r.join();
    }
}

fn fail(ctx: &mut Ctx<'_>, error: String) -> Ending {
    ctx.event(&format!("boot failed: {error}"));
    ctx.rec.error = Some(error.clone());
    ctx.rec.exit = Some(error);
    ctx.save();
    Ending::Failed
}

/// Runs the supervisor of `id` as the `supervise` command does: takes the supervisor lock,
/// makes the backend, supervises.
pub fn run(root_path: &Path, id: &str, opts: &Options, stop: &AtomicBool) -> Result<EnclaveRecord> {
    let root = StateRoot::open(root_path)?;
    let _lock = root
        .try_lock_supervisor(id)?
        .ok_or_else(|| EngineError::Backend(format!("enclave {id} already has a supervisor")))?;
    let rec = root.load(id)?;
    let mut backend = crate::backend::make(rec.backend, root.path())?;
    let rec = supervise(&root, id, backend.as_mut(), opts, stop)?;
    auto_remove(&root, &rec, ATTACHED_WAIT)?;
    Ok(rec)
}

#[cfg(test)]
mod tests;
