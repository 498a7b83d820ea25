//! What the CLI does with enclaves: create and start (`run`), stop, remove.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::backend::{self, Backend, BackendChoice, InstanceInfo};
use crate::eif::{pin, EifInfo};
use crate::error::{EngineError, Result};
use crate::events::{self, Event, EventKind};
use crate::network::{AddHost, NetworkRecord, PublishedPort};
use crate::policy::RestartPolicy;
use crate::spawn_unsafe::{prepare, Tie};
use crate::state::{check_name, EnclaveRecord, Ports, StateRoot, Status, StopRequest, STOP_FILE};
use crate::util;

/// The default memory of an enclave, MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 512;
/// The default vCPU count.
pub const DEFAULT_CPUS: u32 = 2;

/// What `run` asks for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The EIF.
    pub eif: PathBuf,
    /// A name (generated when absent).
    pub name: Option<String>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Backend.
    pub backend: BackendChoice,
    /// Debug mode.
    pub debug_mode: bool,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// `-p` mappings (besides those the spec publishes).
    pub publish: Vec<PublishedPort>,
    /// `--add-host` names for the egress proxy.
    pub add_hosts: Vec<AddHost>,
    /// `--secret NAME=FILE`: files handed to the enclave at each boot
    /// (`/run/enclave/secrets/NAME`), read now.
    pub secrets: Vec<crate::control::Secret>,
    /// `--rm`: the supervisor removes the enclave once it ended for good.
    pub auto_remove: bool,
    /// `--health-listen`: serve `/livez` and `/readyz` there (never by default).
    pub health_listen: Option<std::net::SocketAddr>,
    /// Serve `/metrics` (Prometheus) on this address from the supervisor.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Checks everything that can be checked before anything is created (EIF, memory, name,
/// backend prerequisites), records the enclave and pins its EIF. Nothing is left behind on
/// error.
pub fn create(root: &StateRoot, opts: &RunOptions) -> Result<EnclaveRecord> {
    let backend = backend::make(opts.backend.resolve(), root.path())?;
    create_with(root, opts, backend.as_ref())
}

/// Refuses `--rm` with a restart policy, as Docker's "Conflicting options": an enclave removed
/// when it ends is never booted again.
pub fn check_rm_and_restart(auto_remove: bool, restart: RestartPolicy) -> Result<()> {
    if auto_remove && restart != RestartPolicy::No {
        return Err(EngineError::Invalid(format!(
            "--rm and --restart {restart} conflict: an enclave removed when it ends cannot be \
             restarted; drop one of them"
        )));
    }
    Ok(())
}

/// [`create`] with a given backend (for its preflight checks, its kind and its vsock route).
pub fn create_with(
    root: &StateRoot,
    opts: &RunOptions,
    backend: &dyn Backend,
) -> Result<EnclaveRecord> {
    if !opts.eif.is_file() {
        return Err(EngineError::Invalid(format!(
            "{}: no such EIF file",
            opts.eif.display()
        )));
    }
    check_rm_and_restart(opts.auto_remove, opts.restart)?;
    let eif = EifInfo::load(&opts.eif)?;
    let network = NetworkRecord::plan(eif.spec.as_ref(), &opts.publish, &opts.add_hosts)?;
    if let Some(name) = &opts.name {
        check_name(name)?;
    }
    let id = util::random_id()?;
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| default_name(&eif.path, &id));
    let rec = EnclaveRecord {
        id,
        name,
        created: util::now_rfc3339(),
        eif: eif.path.clone(),
        backend: backend.kind(),
        cpus: opts.cpus,
        memory_mib: opts.memory_mib,
        debug_mode: opts.debug_mode,
        restart: opts.restart,
        cid: 0,
        status: Status::Created,
        supervisor_pid: None,
        instance: InstanceInfo::default(),
        started_at: None,
        finished_at: None,
        exit_code: None,
        oom_killed: false,
        auto_remove: opts.auto_remove,
        health_listen: opts.health_listen,
        metrics_listen: opts.metrics_listen,
        health: None,
        boot_ms: None,
        restarts: 0,
        exit: None,
        error: None,
        measurements: eif.measurements.clone(),
        ports: Ports::default(),
        network,
        control_addr: String::new(),
    };
    let spec = root.launch_spec(&rec);
    backend.preflight(&spec, &eif)?;
    crate::control::check_secrets(&opts.secrets)?;
    let mut rec = root.create(rec)?;
    if let Err(e) = crate::control::store_secrets(&root.dir(&rec.id), &opts.secrets) {
        let _ = root.remove(&rec.id);
        return Err(e);
    }
    rec.control_addr = backend
        .vsock_route(rec.cid, &root.socket_dir(&rec.id))
        .enclave_addr(rec.ports.control)
        .to_string();
    // The copy every boot measures against the PCRs just recorded: if the EIF changed since
    // it was measured above, the first boot refuses it.
    let pinned = pin::pin(&eif.path, &root.dir(&rec.id)).and_then(|_| root.save(&rec));
    if let Err(e) = pinned {
        let _ = root.remove(&rec.id);
        return Err(e);
    }
    events::record(
        root,
        Event::new(EventKind::Create, &rec)
            .with("image", rec.eif.display())
            .with("backend", rec.backend),
    );
    Ok(rec)
}

/// `<EIF stem>-<4 hex digits of the id>`.
fn default_name(eif: &Path, id: &str) -> String {
    let stem: String = eif
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(40)
        .collect();
    let stem = stem.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let stem = if stem.is_empty() { "enclave" } else { stem };
    format!("{stem}-{}", &id[..4])
}

/// The `enclave-engine` binary: `ENCLAVE_ENGINE_BIN`, next to the running program (or its
/// parent directory, for test binaries in `target/*/deps`), or in `$PATH`.
pub fn engine_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ENCLAVE_ENGINE_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let p = dir.join("enclave-engine");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    backend::which("enclave-engine").ok_or_else(|| EngineError::MissingTool {
        tool: "enclave-engine".into(),
        hint: "build it (`cargo build -p enclave-engine`) and put it next to enclave-ctl or in PATH, or set ENCLAVE_ENGINE_BIN".into(),
    })
}

/// Starts the detached supervisor of `rec` (a new session, its output in `supervisor.log`).
pub fn start_supervisor(
    root: &StateRoot,
    rec: &EnclaveRecord,
    boot_timeout: Option<Duration>,
) -> Result<u32> {
    let bin = engine_binary()?;
    let log_path = root.dir(&rec.id).join("supervisor.log");
    let log = std::fs::File::create(&log_path).map_err(|e| EngineError::io(&log_path, e))?;
    let log2 = log.try_clone().map_err(|e| EngineError::io(&log_path, e))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("supervise")
        .arg(&rec.id)
        .arg("--state-dir")
        .arg(root.path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if let Some(t) = boot_timeout {
        cmd.arg("--boot-timeout").arg(t.as_secs().to_string());
    }
    prepare(&mut cmd, Tie::Detach);
    let child = cmd.spawn().map_err(|error| EngineError::Spawn {
        what: bin.display().to_string(),
        error,
    })?;
    Ok(child.id())
}

/// Waits until the enclave runs (heartbeat received): its record, or the boot's error.
pub fn wait_running(root: &StateRoot, id: &str, timeout: Duration) -> Result<EnclaveRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        let rec = root.effective(root.load(id)?);
        match rec.status {
            Status::Running => return Ok(rec),
            Status::Failed | Status::Exited | Status::Restarting if rec.error.is_some() => {
                return Err(EngineError::Backend(rec.error.unwrap_or_default()));
            }
            Status::Exited => return Ok(rec),
            _ => {}
        }
        if Instant::now() > deadline {
            return Err(EngineError::Timeout(format!(
                "enclave {} did not come up within {} s (status {}); see `enclave-ctl logs {}`",
                rec.name,
                timeout.as_secs(),
                rec.status,
                rec.name
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Stops an enclave: asks its supervisor (SIGTERM, with the grace period in `stop.json`),
/// waits, and kills the supervisor (whose children die with it) if it does not finish.
pub fn stop(root: &StateRoot, rec: &EnclaveRecord, timeout: Duration) -> Result<EnclaveRecord> {
    let dir = root.dir(&rec.id);
    if !rec.status.is_active() || !root.supervisor_alive(&rec.id) {
        return Ok(root.effective(rec.clone()));
    }
    util::write_json_atomic(
        &dir.join(STOP_FILE),
        &StopRequest {
            timeout_secs: timeout.as_secs(),
        },
    )?;
    let pid = rec.supervisor_pid.map(|p| Pid::from_raw(p as i32));
    if let Some(pid) = pid {
        let _ = kill(pid, Signal::SIGTERM);
    }
    // The grace period, the kill (up to 3 s for QEMU), and a margin.
    let deadline = Instant::now() + timeout + Duration::from_secs(6);
    // Until the supervisor is gone; for a `--rm` enclave, until it recorded the end (its
    // supervisor then waits for an attached `run`, maybe the caller, before removing it).
    let ended = || rec.auto_remove && root.load(&rec.id).map_or(true, |r| !r.status.is_active());
    while root.supervisor_alive(&rec.id) && !ended() {
        if Instant::now() > deadline {
            if let Some(pid) = pid {
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(200));
            let mut r = root.load(&rec.id)?;
            r.status = Status::Exited;
            r.exit = Some("stopped: the supervisor was killed".into());
            root.save(&r)?;
            return Ok(r);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    match root.load(&rec.id) {
        // `--rm`: the supervisor removed it already.
        Err(_) if rec.auto_remove && !root.dir(&rec.id).exists() => {
            let mut gone = rec.clone();
            gone.status = Status::Exited;
            Ok(gone)
        }
        r => r,
    }
}

/// Stops an enclave with no grace period (`kill`): the VM is powered off at once.
pub fn kill_now(root: &StateRoot, rec: &EnclaveRecord) -> Result<EnclaveRecord> {
    let rec = root.effective(rec.clone());
    if !rec.status.is_active() || !root.supervisor_alive(&rec.id) {
        return Err(EngineError::NotRunning(rec.name));
    }
    events::record(root, Event::new(EventKind::Kill, &rec));
    stop(root, &rec, Duration::ZERO)
}

/// Boots an enclave that ended (`start`, `restart`) again: a new supervisor with the record's
/// options and its pinned EIF (checked against the record's PCRs at boot). Nothing to do while
/// its supervisor runs, as `docker start` of a running container; the new supervisor's pid
/// otherwise (then [`wait_running`]).
pub fn start(root: &StateRoot, rec: &EnclaveRecord, boot_timeout: Duration) -> Result<Option<u32>> {
    if root.supervisor_alive(&rec.id) {
        return Ok(None);
    }
    if rec.auto_remove {
        return Err(EngineError::Invalid(format!(
            "{} was started with --rm: it is removed when it stops, never started again",
            rec.name
        )));
    }
    // `created` until the new supervisor writes `starting`: a waiter does not read the last
    // boot's end as this one's.
    let mut fresh = root.load(&rec.id)?;
    fresh.status = Status::Created;
    fresh.error = None;
    fresh.exit = None;
    fresh.exit_code = None;
    fresh.oom_killed = false;
    root.save(&fresh)?;
    start_supervisor(root, &fresh, Some(boot_timeout)).map(Some)
}

/// Stops an enclave (`timeout` of grace) and boots it again; the new supervisor's pid.
pub fn restart(
    root: &StateRoot,
    rec: &EnclaveRecord,
    timeout: Duration,
    boot_timeout: Duration,
) -> Result<Option<u32>> {
    if rec.auto_remove {
        return Err(EngineError::Invalid(format!(
            "{} was started with --rm: a stop removes it; run it again instead",
            rec.name
        )));
    }
    let stopped = stop(root, rec, timeout)?;
    events::record(
        root,
        Event::new(EventKind::Restart, &stopped).with("by", "request"),
    );
    start(root, &stopped, boot_timeout)
}

/// Removes an enclave; a running one only with `force` (which stops it first, with no grace).
pub fn remove(root: &StateRoot, rec: &EnclaveRecord, force: bool) -> Result<()> {
    let rec = root.effective(rec.clone());
    if rec.status.is_active() && root.supervisor_alive(&rec.id) {
        if !force {
            return Err(EngineError::Running(rec.name));
        }
        stop(root, &rec, Duration::ZERO)?;
    }
    root.remove(&rec.id)?;
    events::record(root, Event::new(EventKind::Destroy, &rec));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeBackend;

    fn run_options(eif: PathBuf) -> RunOptions {
        RunOptions {
            eif,
            name: None,
            cpus: 1,
            memory_mib: 128,
            backend: BackendChoice::Auto,
            debug_mode: false,
            restart: RestartPolicy::No,
            publish: vec![],
            add_hosts: vec![],
            secrets: vec![],
            auto_remove: false,
            health_listen: None,
            metrics_listen: None,
        }
    }

    #[test]
    fn the_control_address_is_the_backends_route_to_the_control_port() {
        let dir = tempfile::tempdir().unwrap();
        let root = StateRoot::open(&dir.path().join("state")).unwrap();
        let eif = dir.path().join("app.eif");
        crate::eif::tests::write_eif(&eif, b"the app");
        let opts = run_options(eif);

        let rec = create_with(&root, &opts, &FakeBackend::default()).unwrap();
        let uds = root.socket_dir(&rec.id).join("vsock.sock");
        assert_eq!(rec.control_addr, format!("hybrid:{}:5000", uds.display()));

        let rec = create_with(&root, &opts, &FakeBackend::over_vsock()).unwrap();
        assert_eq!(rec.control_addr, format!("vsock:{}:5000", rec.cid));
    }

    #[test]
    fn rm_with_a_restart_policy_is_refused_before_anything_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let root = StateRoot::open(&dir.path().join("state")).unwrap();
        let eif = dir.path().join("app.eif");
        crate::eif::tests::write_eif(&eif, b"the app");
        let opts = RunOptions {
            auto_remove: true,
            restart: RestartPolicy::Always,
            ..run_options(eif.clone())
        };
        let err = create_with(&root, &opts, &FakeBackend::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("--rm and --restart always conflict"),
            "{err}"
        );
        assert!(root.list().unwrap().is_empty());
        // --rm with the default policy is fine.
        let opts = RunOptions {
            auto_remove: true,
            ..run_options(eif)
        };
        assert!(create_with(&root, &opts, &FakeBackend::default()).is_ok());
    }
}
