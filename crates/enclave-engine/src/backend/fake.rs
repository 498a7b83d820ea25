//! A recording fake backend for unit tests: every call is logged, every boot follows a script,
//! and its enclaves are wired as the emulated backend's or, when asked, as Nitro's, so that
//! tests see the routes callers take.

use std::collections::VecDeque;
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Backend, BackendKind, Instance, InstanceExit, InstanceInfo, LaunchSpec, VsockRoute};
use crate::eif::EifInfo;
use crate::error::{EngineError, Result};

/// What one boot does.
#[derive(Debug, Clone)]
pub enum FakeBoot {
    /// `launch` fails with this message.
    LaunchFails(String),
    /// Boots; prints `console`; sends the heartbeat when `heartbeat`; ends after `runs_for`
    /// (never when `None`), failed or not.
    Runs {
        /// Console text.
        console: String,
        /// Whether the heartbeat comes.
        heartbeat: bool,
        /// How long it runs.
        runs_for: Option<Duration>,
        /// Whether the end is a failure.
        fails: bool,
    },
}

impl FakeBoot {
    /// Boots and runs until stopped.
    pub fn forever() -> Self {
        FakeBoot::Runs {
            console: "enclave-init: heartbeat ok\n[main] hello\n".into(),
            heartbeat: true,
            runs_for: None,
            fails: false,
        }
    }

    /// Boots and fails after `d`.
    pub fn crashes_after(d: Duration) -> Self {
        FakeBoot::Runs {
            console: "[main] hello\n".into(),
            heartbeat: true,
            runs_for: Some(d),
            fails: true,
        }
    }
}

/// The fake. Clones share the call log and the script.
#[derive(Debug, Clone, Default)]
pub struct FakeBackend {
    /// Calls, in order: `preflight <name>`, `launch <name> cid=<cid>` (only once the pinned EIF
    /// passed its measurement), `kill <name>`.
    pub calls: Arc<Mutex<Vec<String>>>,
    /// Boots to perform, in order; when empty, [`FakeBoot::forever`].
    pub script: Arc<Mutex<VecDeque<FakeBoot>>>,
    /// Whether its enclaves are reached over AF_VSOCK, as Nitro's; otherwise through a hybrid
    /// socket in their socket directory, as the emulated backend's.
    pub over_vsock: bool,
}

impl FakeBackend {
    /// A fake with this script.
    pub fn with_script(boots: impl IntoIterator<Item = FakeBoot>) -> Self {
        let f = Self::default();
        f.script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(boots);
        f
    }

    /// A fake whose enclaves are reached over AF_VSOCK, as Nitro's.
    pub fn over_vsock() -> Self {
        Self {
            over_vsock: true,
            ..Self::default()
        }
    }

    fn record(&self, call: String) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(call);
    }

    /// The recorded calls.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Backend for FakeBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Fake
    }

    fn vsock_route(&self, cid: u32, sockets: &Path) -> VsockRoute {
        if self.over_vsock {
            VsockRoute::vsock(cid)
        } else {
            super::qemu::hybrid_route(cid, sockets)
        }
    }

    fn preflight(&self, spec: &LaunchSpec, eif: &EifInfo) -> Result<()> {
        self.record(format!("preflight {}", spec.name));
        eif.check_memory(spec.memory_mib)
    }

    fn launch(&mut self, spec: &LaunchSpec) -> Result<Box<dyn Instance>> {
        // As the nitro backend does; records made by the unit tests without an EIF have no
        // measurements and skip it.
        if !spec.measurements.is_empty() {
            crate::eif::boot::check_pinned(&spec.eif, &spec.measurements)?;
        }
        self.record(format!("launch {} cid={}", spec.name, spec.cid));
        let boot = self
            .script
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or_else(FakeBoot::forever);
        match boot {
            FakeBoot::LaunchFails(msg) => Err(EngineError::Backend(msg)),
            FakeBoot::Runs {
                console,
                heartbeat,
                runs_for,
                fails,
            } => Ok(Box::new(FakeInstance {
                fake: self.clone(),
                name: spec.name.clone(),
                console: Some(console),
                heartbeat,
                ends_at: runs_for.map(|d| Instant::now() + d),
                fails,
            })),
        }
    }
}

struct FakeInstance {
    fake: FakeBackend,
    name: String,
    console: Option<String>,
    heartbeat: bool,
    ends_at: Option<Instant>,
    fails: bool,
}

impl Instance for FakeInstance {
    fn info(&self) -> InstanceInfo {
        InstanceInfo {
            pid: Some(4242),
            ..Default::default()
        }
    }

    fn heartbeat_by_backend(&self) -> bool {
        self.heartbeat
    }

    fn take_console(&mut self) -> Option<Box<dyn Read + Send>> {
        self.console
            .take()
            .map(|c| Box::new(Cursor::new(c.into_bytes())) as Box<dyn Read + Send>)
    }

    fn try_wait(&mut self) -> Result<Option<InstanceExit>> {
        Ok(match self.ends_at {
            Some(t) if Instant::now() >= t => Some(InstanceExit {
                failed: self.fails,
                description: format!("fake ended (failed: {})", self.fails),
            }),
            _ => None,
        })
    }

    fn kill(&mut self) -> Result<InstanceExit> {
        self.fake.record(format!("kill {}", self.name));
        self.ends_at = Some(Instant::now());
        Ok(InstanceExit {
            failed: true,
            description: "killed".into(),
        })
    }
}
