//! `enclave-init`: PID 1 inside the enclave.
//!
//! The boot, in order ([`boot_enclave`]): mount the kernel filesystems, read
//! `/enclave-init/config.json`, load the kernel modules, bring up `lo`, take the parent CID from
//! the kernel command line, read the app configuration and spec, choose the NSM, record the
//! debug surface in PCR31, seed the RNG, switch into `/rootfs`, set the hostname, make the
//! control identity and hand it to the supervisor ([`trust`]), send the heartbeat to the parent.
//! Then the [`Supervisor`] runs the services until the main one ends or a shutdown is asked
//! for, stops them, tells the supervisor how the main service ended
//! ([`trust::SupervisorLink::report_exit`]), and init powers off.
//!
//! The control server ([`control`]) gets [`Supervisor::manager`], a [`ServiceManager`] (list,
//! start, stop, restart, shutdown, exit watching for exec) whose [`LogStore`] serves `logs`.
//!
//! PID 1 must never panic (a panic in init is a kernel panic): errors are values, logged, and
//! either survived or turned into a clean power-off.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod boot;
pub mod console;
pub mod control;
pub mod cuse;
pub mod entropy;
mod entropy_unsafe;
pub mod error;
mod exec_unsafe;
pub mod exits;
pub mod health;
pub mod heartbeat;
mod iface_unsafe;
pub mod logs;
pub mod manager;
pub mod modules;
pub mod net;
pub mod nsm;
pub mod oom;
pub mod policy;
pub mod proxies;
pub mod reaper;
pub mod services;
pub mod shutdown;
pub mod signals;
mod supervisor;
pub mod trust;
pub mod users;
mod vsock_cid_unsafe;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use enclave_proto::paths;

pub use error::{Error, Result};
pub use logs::LogStore;
pub use manager::{ManagerError, ServiceManager, ServiceState, ServiceStatus};
pub use supervisor::{Ended, Supervisor};

/// enclave-init's version, logged at boot.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The hostname when the spec sets none.
pub const DEFAULT_HOSTNAME: &str = "enclave";

fn elapsed_ms(since: Instant) -> String {
    format!("{:.1} ms", since.elapsed().as_secs_f64() * 1000.0)
}

/// What the boot hands to the rest of PID 1's life.
pub struct Booted {
    /// Runs the services.
    pub supervisor: Supervisor,
    /// The control channel's identity and keys; `None` when no identity could be made (then the
    /// host-facing control server does not start).
    pub control: Option<trust::ControlKeys>,
    /// The hand-off connection to the supervisor, for the exit report; `None` without one.
    pub supervisor_link: Option<trust::SupervisorLink>,
}

/// Boots the enclave up to the point where services can start.
///
/// `started` is when PID 1 started, for the boot timings in the log. Errors are fatal (the
/// caller powers off); problems the enclave can live with are logged here and survived.
pub fn boot_enclave(started: Instant, store: Arc<LogStore>) -> Result<Booted> {
    let mounted = boot::mount_early();
    console::ensure_fds();
    let init_lines = store.clone();
    console::attach_init_sink(Box::new(move |msg| {
        init_lines.push(console::INIT_LOG_NAME, logs::Stream::Stdout, msg);
    }));
    say!(
        "enclave-init {VERSION} starting as pid {}",
        std::process::id()
    );
    if let Err(e) = mounted {
        say!("mounting the kernel filesystems: {e}");
    }

    let config = boot::read_init_config(Path::new(paths::INIT_CONFIG))?;
    match modules::load_all(Path::new(paths::MODULES_DIR), &config.modules) {
        Ok(n) => say!("loaded {n} of {} kernel modules", config.modules.len()),
        Err(e) => say!("kernel modules: {e}"),
    }
    if let Err(e) = net::loopback_up() {
        say!("loopback: {e}");
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let parent_cid = boot::parent_cid_from_cmdline(&cmdline).unwrap_or(config.parent_cid);
    let app = boot::read_app_config(Path::new(paths::APP_CONFIG))?;
    let spec = boot::read_spec(Path::new(paths::SPEC))?;

    nsm::configure(&config.kernel_profile, parent_cid);
    match trust::mark_debug_surface(nsm::device(), &spec.debug) {
        Ok(Some(caps)) if caps.is_empty() => say!("PCR31 locked: no debug capability"),
        Ok(Some(caps)) => {
            let names: Vec<String> = caps.iter().map(ToString::to_string).collect();
            say!(
                "PCR31 extended with the debug surface [{}] and locked",
                names.join(", ")
            );
        }
        Ok(None) => say!("no NSM: no attestation documents on this boot"),
        Err(e) => {
            nsm::disable();
            say!("{e}: the NSM is withdrawn, no attestation document will be issued on this boot");
        }
    }
    if let (Some(nsm), Some(source)) = (nsm::device(), nsm::source()) {
        let credit = source == nsm::NsmSource::Hardware;
        match entropy::seed_from_nsm(nsm, credit) {
            Ok(entropy::Seeded::Credited(n)) => {
                say!("seeded the RNG with {n} bytes from the NSM (credited)")
            }
            Ok(entropy::Seeded::Mixed(n)) => say!(
                "mixed {n} bytes from the emulated NSM into the RNG (not credited: they come \
                 from the host)"
            ),
            Err(e) => say!("RNG seeding from the NSM failed: {e}; booting on"),
        }
    }
    // Applications reach the emulated NSM as they reach Nitro's, through /dev/nsm. On Nitro
    // nsm.ko provides it; never serve it in front of the hardware NSM.
    if nsm::source() == Some(nsm::NsmSource::Emulated) && nsm::device().is_some() {
        match cuse::start(nsm::device) {
            Ok(()) => say!("/dev/{} serves the emulated NSM (CUSE)", cuse::DEVNAME),
            Err(e) => say!(
                "/dev/{}: {e}; applications cannot reach the NSM",
                cuse::DEVNAME
            ),
        }
    }

    let mut keep = vec![paths::APP_CONFIG, paths::SPEC];
    if spec.attestation.is_some() {
        keep.push(paths::ATTEST_SERVER);
    }
    if let Err(e) = boot::keep_copies(&keep) {
        say!("keeping copies of the app configuration: {e}");
    }
    boot::switch_root(Path::new(paths::ROOTFS))?;
    let hostname = spec.hostname.as_deref().unwrap_or(DEFAULT_HOSTNAME);
    if let Err(e) = boot::set_hostname(hostname) {
        say!("{e}");
    }
    say!(
        "switched to {} in {} (profile {:?}, hostname {hostname})",
        paths::ROOTFS,
        elapsed_ms(started),
        config.kernel_profile
    );

    // Before the heartbeat: once the supervisor sees it, clients may connect.
    let (control, supervisor_link) = match trust::establish(parent_cid, nsm::device()) {
        Ok((keys, link)) => (Some(keys), link),
        Err(e) => {
            say!("{e}: the host-facing control channel stays closed");
            (None, None)
        }
    };

    match heartbeat::send(parent_cid, config.heartbeat_port) {
        Ok(()) => say!("heartbeat ok in {}", elapsed_ms(started)),
        Err(e) => say!(
            "heartbeat to cid {parent_cid} port {} failed after {}: {e}; booting on",
            config.heartbeat_port,
            elapsed_ms(started)
        ),
    }

    // Before the services: their first connection may be an egress one.
    if proxies::start(&spec, parent_cid, config.netfilter)? {
        say!("network up in {}", elapsed_ms(started));
    }

    let creds = users::resolve_in(&app.user, Path::new("/")).map_err(|e| e.to_string());
    if let Err(e) = &creds {
        say!("{e}: no service can start");
    }
    let defs = services::build(&app, &spec, creds);
    Ok(Booted {
        supervisor: Supervisor::new(defs, policy::Timings::from_env(), store)?
            .with_health(spec.healthcheck.clone()),
        control,
        supervisor_link,
    })
}

/// Peak and current resident memory of init, from /proc/self/status (for the log).
pub fn memory_usage() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    Some(format!(
        "VmHWM {}, VmRSS {}",
        field("VmHWM:")?,
        field("VmRSS:")?
    ))
}

/// The whole life of PID 1: boot, supervise, power off. Never returns.
pub fn run_pid1(started: Instant) -> ! {
    let store = Arc::new(LogStore::default());
    let reason = match boot_enclave(started, store) {
        Ok(Booted {
            supervisor,
            control,
            supervisor_link,
        }) => {
            // Before the services start: the control server reads the spec's copy in /run.
            control::start(supervisor.manager(), started, control);
            let ended = supervisor.run_to_end();
            if let Some(link) = supervisor_link {
                let main = ended.main_exit.map(|e| match e {
                    policy::Exit::Code(c) => enclave_proto::wire::ExitStatus::Code(c),
                    policy::Exit::Signal(s) => enclave_proto::wire::ExitStatus::Signal(s),
                });
                link.report_exit(main, ended.main_oom, &ended.reason);
            }
            ended.reason
        }
        Err(e) => {
            say!("boot failed: {e}");
            "boot failed".to_owned()
        }
    };
    if let Some(mem) = memory_usage() {
        say!("memory: {mem}");
    }
    shutdown::power_off(&reason)
}
