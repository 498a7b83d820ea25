//! The control server: the only way into the enclave (`docs/protocol.md`).
//!
//! [`start`] runs on PID 1's main thread after boot, before the supervisor's loop: it reads the
//! measured spec's `debug` section (from the copy boot made in `/run/enclave` before any
//! service ran), then serves
//!
//! - the host, on `ENCLAVE_INIT_CONTROL_ADDR` (default `vsock:any:5000`; tests use
//!   `unix:/path`): the encrypted session of `enclave_proto::wire::secure` with the enclave's
//!   control identity, then nothing but `ping`/`info` until the client proves a key (the
//!   supervisor's, handed over at boot, or one of the spec's `debug.authorized_keys`), and the
//!   spec's debug capabilities only to such a client;
//! - `initctl` and the attestation server inside the enclave, on the Unix socket
//!   [`LOCAL_SOCKET`] (mode 0600: root only), for service control and documents binding the
//!   caller's own keys: no `debug.*` capability is granted there, so it cannot be used to
//!   widen what the spec allows. `initctl` is this same binary, copied to [`INITCTL_PATH`] at
//!   boot (the bootstrap ramdisk holding `/init` is out of reach after the switch into the
//!   rootfs) and recognised by its name.
//!
//! Threads: one accepts per listener; each connection has a reader and a writer thread
//! ([`conn`]), and each streaming request one worker (an exec with stdin two). Connections are
//! limited by [`slots`] (256 in all, unauthenticated ones fewer and evicted oldest first) and
//! requests per connection to the protocol's `MAX_STREAMS`, which bounds the threads; blocking
//! threads keep init small and simple, where an async runtime would add a dependency and a
//! larger binary for no gain at this scale.

mod conn;
mod cp;
mod exec;
mod exec_unsafe;
mod frames;
pub mod initctl;
mod ops;
pub mod slots;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use enclave_proto::app::AppConfig;
use enclave_proto::transport::{listen, Addr, Listener, VMADDR_CID_ANY};
use enclave_proto::wire::{
    encode, ControlCounts, EnclaveInfo, ErrorCode, ServerConfig, ServerMessage,
};
use enclave_spec::EnclaveSpec;

use crate::manager::ServiceManager;
use crate::trust::ControlKeys;
use crate::users::Credentials;
use crate::{boot, say, services};

pub use ops::wire_status;

/// Environment variable overriding the control server's address (tests: `unix:/path`).
pub const ENV_CONTROL_ADDR: &str = "ENCLAVE_INIT_CONTROL_ADDR";
/// The in-enclave socket `initctl` talks to.
pub const LOCAL_SOCKET: &str = "/run/enclave/control.sock";
/// Where the `initctl` binary (a copy of this one) is put at boot.
pub const INITCTL_PATH: &str = "/run/enclave/initctl";

/// What requests need from the enclave.
pub struct Context {
    /// The supervisor.
    pub manager: ServiceManager,
    /// When PID 1 started (uptime).
    pub started: Instant,
    /// The spec's name.
    pub name: Option<String>,
    /// The app's environment, the base of an exec's.
    pub env: Vec<(String, String)>,
    /// The app's working directory, an exec's default.
    pub workdir: String,
    /// The app's user, whom exec'd processes run as.
    pub creds: Result<Credentials, String>,
    /// Connections accepted since boot.
    pub sessions: AtomicU64,
    /// Key proofs refused since boot.
    pub auth_failures: AtomicU64,
}

impl Context {
    /// The context of the app: its environment, working directory and user.
    pub fn for_app(
        manager: ServiceManager,
        started: Instant,
        app: &AppConfig,
        spec: &EnclaveSpec,
        creds: Result<Credentials, String>,
    ) -> Self {
        // The main service's environment, whatever the app's argv.
        let mut probe = app.clone();
        probe.entrypoint = vec!["/bin/sh".into()];
        let main = services::build(&probe, &EnclaveSpec::default(), creds.clone());
        let env = main.first().map(|d| d.env.clone()).unwrap_or_default();
        Self {
            manager,
            started,
            name: spec.name.clone(),
            env,
            workdir: if app.working_dir.is_empty() {
                "/".into()
            } else {
                app.working_dir.clone()
            },
            creds,
            sessions: AtomicU64::new(0),
            auth_failures: AtomicU64::new(0),
        }
    }

    /// The enclave facts of a hello or `info`.
    pub fn enclave_info(&self) -> EnclaveInfo {
        EnclaveInfo {
            server: format!("enclave-init {}", crate::VERSION),
            name: self.name.clone(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }

    /// The counts `info` reports (protocol 3 and later).
    pub fn control_counts(&self) -> ControlCounts {
        ControlCounts {
            sessions: self.sessions.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
        }
    }
}

/// The address to serve the host on: [`ENV_CONTROL_ADDR`] or `vsock:any:5000`.
pub fn control_addr() -> Result<Addr, String> {
    match std::env::var(ENV_CONTROL_ADDR) {
        Ok(s) => s.parse().map_err(|e| format!("{ENV_CONTROL_ADDR}: {e}")),
        Err(_) => Ok(Addr::Vsock {
            cid: VMADDR_CID_ANY,
            port: enclave_proto::ports::CONTROL,
        }),
    }
}

/// Binds `addr` (a stale Unix socket file is replaced).
pub fn bind(addr: &Addr) -> Result<Listener, String> {
    if let Addr::Unix(path) = addr {
        let _ = std::fs::remove_file(path);
    }
    listen(addr).map_err(|e| e.to_string())
}

/// Accepts connections on `listener` on a thread of its own, within the limits of [`slots`].
pub fn serve(listener: Listener, config: ServerConfig, ctx: Arc<Context>) -> std::io::Result<()> {
    let slots = Arc::new(slots::Slots::default());
    std::thread::Builder::new()
        .name("control-accept".into())
        .stack_size(conn::THREAD_STACK)
        .spawn(move || loop {
            let Ok(mut c) = listener.accept() else {
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            };
            let Some(admitted) = slots.admit(c.peer_cid(), &c) else {
                let refusal = ServerMessage::Error {
                    id: 0,
                    code: ErrorCode::Internal,
                    message: format!(
                        "{} authenticated control sessions are open; try again later",
                        slots::MAX_CONNECTIONS
                    ),
                };
                if let Ok(p) = encode(&refusal) {
                    let _ = enclave_proto::wire::write_frame(&mut c, &p);
                }
                continue;
            };
            let mut config = config.clone();
            config.enclave = ctx.enclave_info();
            let ctx = ctx.clone();
            let for_thread = slots.clone();
            let id = admitted.id;
            let spawned = std::thread::Builder::new()
                .name("control-conn".into())
                .stack_size(conn::THREAD_STACK)
                .spawn(move || {
                    conn::serve(c, config, ctx, admitted.authenticated);
                    for_thread.release(id);
                });
            if spawned.is_err() {
                slots.release(id);
            }
        })
        .map(drop)
}

/// Starts the control server (see the [module doc](self)). Problems are logged: the enclave
/// runs on without a control channel rather than not at all.
pub fn start(manager: ServiceManager, started: Instant, keys: Option<ControlKeys>) {
    let run = Path::new(boot::RUN_DIR);
    let spec = boot::read_spec(&run.join("spec.json")).unwrap_or_else(|e| {
        say!("control: {e}; no debug capability is granted");
        EnclaveSpec::default()
    });
    let app = match boot::read_app_config(&run.join("app.json")) {
        Ok(app) => app,
        Err(e) => {
            say!("control: {e}; not serving");
            return;
        }
    };
    let creds = crate::users::resolve_in(&app.user, Path::new("/")).map_err(|e| e.to_string());
    let ctx = Arc::new(Context::for_app(manager, started, &app, &spec, creds));
    if let Some(keys) = keys {
        start_remote(&ctx, &spec, keys);
    }
    start_local(ctx);
}

/// The host-facing listener.
fn start_remote(ctx: &Arc<Context>, spec: &EnclaveSpec, keys: ControlKeys) {
    let supervisor = if keys.supervisor_key.is_some() {
        "plus the supervisor's"
    } else {
        "and no supervisor key"
    };
    let config = match ServerConfig::remote(
        &spec.debug,
        ctx.enclave_info(),
        keys.identity,
        keys.supervisor_key,
    ) {
        Ok(c) => c,
        Err(e) => return say!("control: debug.authorized_keys: {e}; not serving the host"),
    };
    let (addr, listener) = match control_addr().and_then(|a| bind(&a).map(|l| (a, l))) {
        Ok(x) => x,
        Err(e) => return say!("control: {e}"),
    };
    let caps: Vec<String> = config.capabilities.iter().map(|c| c.to_string()).collect();
    let keys = spec.debug.authorized_keys.len();
    match serve(listener, config, ctx.clone()) {
        Ok(()) => say!(
            "control: listening on {addr} (capabilities [{}], {keys} authorized keys {supervisor})",
            caps.join(", ")
        ),
        Err(e) => say!("control: {e}"),
    }
}

/// The in-enclave socket and the `initctl` binary.
fn start_local(ctx: Arc<Context>) {
    let addr = Addr::Unix(LOCAL_SOCKET.into());
    let config = ServerConfig::local(ctx.enclave_info());
    let listener = match bind(&addr) {
        Ok(l) => l,
        Err(e) => return say!("control: initctl socket: {e}"),
    };
    use std::os::unix::fs::PermissionsExt;
    let perms = std::fs::Permissions::from_mode(0o600);
    if let Err(e) = std::fs::set_permissions(LOCAL_SOCKET, perms) {
        return say!("control: {LOCAL_SOCKET}: {e}; not serving initctl");
    }
    if let Err(e) = serve(listener, config, ctx) {
        return say!("control: initctl socket: {e}");
    }
    let copied = std::fs::copy("/proc/self/exe", INITCTL_PATH).and_then(|_| {
        std::fs::set_permissions(INITCTL_PATH, std::fs::Permissions::from_mode(0o755))
    });
    if let Err(e) = copied {
        say!("control: {INITCTL_PATH}: {e}");
    }
}
