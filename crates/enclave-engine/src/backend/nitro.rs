//! The Nitro backend: drives `nitro-cli` (`run-enclave`, `describe-enclaves`,
//! `terminate-enclave`, `console`) and parses its JSON.
//!
//! nitro-cli waits for the boot heartbeat itself (it listens on port 9000 of the parent), so
//! the supervisor does not. Pre-flight checks say what to fix before nitro-cli is run: the
//! device, the allocator configuration, hugepages, memory against the EIF.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::nitro_cli::{failure_message, NitroEnclave, Terminated};
use super::{
    which, Backend, BackendKind, Instance, InstanceExit, InstanceInfo, LaunchSpec, VsockRoute,
    NITRO_DEVICE,
};
use crate::eif::EifInfo;
use crate::error::{EngineError, Result};
use crate::spawn_unsafe::{prepare, Tie};

/// How often a running enclave is looked at with `describe-enclaves`.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// Where the backend looks (overridable for tests).
#[derive(Debug, Clone)]
pub struct NitroPaths {
    /// nitro-cli (`ENCLAVE_ENGINE_NITRO_CLI` overrides the default `nitro-cli`).
    pub cli: Option<PathBuf>,
    /// The device.
    pub device: PathBuf,
    /// The allocator configuration.
    pub allocator: PathBuf,
    /// /proc/meminfo.
    pub meminfo: PathBuf,
    /// /proc/mounts.
    pub mounts: PathBuf,
}

impl Default for NitroPaths {
    fn default() -> Self {
        Self {
            cli: std::env::var_os("ENCLAVE_ENGINE_NITRO_CLI").map(PathBuf::from),
            device: NITRO_DEVICE.into(),
            allocator: "/etc/nitro_enclaves/allocator.yaml".into(),
            meminfo: "/proc/meminfo".into(),
            mounts: "/proc/mounts".into(),
        }
    }
}

/// The Nitro backend.
#[derive(Debug, Clone, Default)]
pub struct NitroBackend {
    paths: NitroPaths,
}

impl NitroBackend {
    /// With the real paths.
    pub fn new() -> Self {
        Self::default()
    }

    /// With other paths (tests).
    pub fn with_paths(paths: NitroPaths) -> Self {
        Self { paths }
    }

    fn cli(&self) -> Result<PathBuf> {
        let name = self.paths.cli.clone().unwrap_or_else(|| "nitro-cli".into());
        which(&name.to_string_lossy()).ok_or_else(|| EngineError::MissingTool {
            tool: name.display().to_string(),
            hint: "install aws-nitro-enclaves-cli (`sudo dnf install aws-nitro-enclaves-cli` on Amazon Linux), or use --backend qemu".into(),
        })
    }

    fn run_cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(self.cli()?)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| EngineError::Spawn {
                what: "nitro-cli".into(),
                error,
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stderr.contains("[ E") {
            return Err(EngineError::Backend(failure_message(args[0], &stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `describe-enclaves`.
    pub fn describe(&self) -> Result<Vec<NitroEnclave>> {
        let out = self.run_cli(&["describe-enclaves"])?;
        parse(&out, "describe-enclaves")
    }

    /// `terminate-enclave --enclave-id ID`.
    pub fn terminate(&self, enclave_id: &str) -> Result<bool> {
        let out = self.run_cli(&["terminate-enclave", "--enclave-id", enclave_id])?;
        let t: Terminated = parse(&out, "terminate-enclave")?;
        Ok(t.terminated)
    }
}

fn parse<T: serde::de::DeserializeOwned>(out: &str, command: &str) -> Result<T> {
    serde_json::from_str(out).map_err(|e| {
        EngineError::Backend(format!(
            "cannot read the output of nitro-cli {command}: {e}"
        ))
    })
}

/// Reads `key: <number>` from a flat YAML file such as allocator.yaml.
fn yaml_number(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|l| {
            l.trim()
                .strip_prefix(key)?
                .trim()
                .strip_prefix(':')
                .map(str::trim)
        })
        .and_then(|v| v.parse().ok())
}

/// `HugePages_Free × Hugepagesize` in MiB, from /proc/meminfo.
fn free_hugepages_mib(meminfo: &str) -> Option<u64> {
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(field("HugePages_Free:")? * field("Hugepagesize:")? / 1024)
}

impl Backend for NitroBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Nitro
    }

    fn vsock_route(&self, cid: u32, _sockets: &Path) -> VsockRoute {
        VsockRoute::vsock(cid)
    }

    fn preflight(&self, spec: &LaunchSpec, eif: &EifInfo) -> Result<()> {
        eif.check_memory(spec.memory_mib)?;
        if !self.paths.device.exists() {
            return Err(EngineError::Backend(format!(
                "{} is absent: this is not a Nitro Enclaves-enabled instance (launch it with enclave support enabled and install aws-nitro-enclaves-cli), or in a container the device was not given (in a Kubernetes pod, request the aws.ec2.nitro/nitro_enclaves resource of AWS's device plugin), or use --backend qemu",
                self.paths.device.display()
            )));
        }
        self.cli()?;
        let alloc = std::fs::read_to_string(&self.paths.allocator).map_err(|e| {
            EngineError::Backend(format!(
                "cannot read {} ({e}): install aws-nitro-enclaves-cli and start nitro-enclaves-allocator.service",
                self.paths.allocator.display()
            ))
        })?;
        let fix = format!(
            "edit {} and `sudo systemctl restart nitro-enclaves-allocator.service`",
            self.paths.allocator.display()
        );
        if let Some(reserved) = yaml_number(&alloc, "memory_mib") {
            if spec.memory_mib > reserved {
                return Err(EngineError::Backend(format!(
                    "--memory {} is more than the {reserved} MiB reserved for enclaves: lower it, or raise memory_mib ({fix})",
                    spec.memory_mib
                )));
            }
        }
        if let Some(cpus) = yaml_number(&alloc, "cpu_count") {
            if u64::from(spec.cpus) > cpus {
                return Err(EngineError::Backend(format!(
                    "--cpus {} is more than the {cpus} CPUs reserved for enclaves: lower it, or raise cpu_count ({fix})",
                    spec.cpus
                )));
            }
        }
        let mounts = std::fs::read_to_string(&self.paths.mounts).unwrap_or_default();
        if !mounts
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        {
            return Err(EngineError::Backend(
                "no hugetlbfs is mounted (nitro-cli would fail with E35): in a container, request hugepages-2Mi and mount an emptyDir with medium HugePages at /dev/hugepages".into(),
            ));
        }
        let meminfo = std::fs::read_to_string(&self.paths.meminfo).unwrap_or_default();
        if let Some(free) = free_hugepages_mib(&meminfo) {
            if free < spec.memory_mib {
                return Err(EngineError::Backend(format!(
                    "only {free} MiB of hugepages are free for --memory {}: stop other enclaves or raise memory_mib ({fix})",
                    spec.memory_mib
                )));
            }
        }
        Ok(())
    }

    fn launch(&mut self, spec: &LaunchSpec) -> Result<Box<dyn Instance>> {
        // nitro-cli reads the file after this check; between the two only this user and root
        // can write the pinned copy, and on Nitro the hardware measures what it boots anyway.
        crate::eif::boot::check_pinned(&spec.eif, &spec.measurements)?;
        let eif = spec.eif.to_string_lossy().into_owned();
        let cpus = spec.cpus.to_string();
        let mem = spec.memory_mib.to_string();
        let cid = spec.cid.to_string();
        let mut args = vec![
            "run-enclave",
            "--eif-path",
            &eif,
            "--cpu-count",
            &cpus,
            "--memory",
            &mem,
            "--enclave-cid",
            &cid,
        ];
        if spec.debug_mode {
            args.push("--debug-mode");
        }
        let out = self.run_cli(&args)?;
        let enclave: NitroEnclave = parse(&out, "run-enclave")?;
        let console = if spec.debug_mode {
            let mut cmd = Command::new(self.cli()?);
            cmd.args(["console", "--enclave-id", &enclave.enclave_id])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            prepare(&mut cmd, Tie::DieWithParent);
            cmd.spawn().ok()
        } else {
            None
        };
        Ok(Box::new(NitroInstance {
            backend: self.clone(),
            enclave,
            console,
            last_poll: Instant::now(),
            _dir: spec.dir.clone(),
        }))
    }
}

/// An enclave started by nitro-cli.
pub struct NitroInstance {
    backend: NitroBackend,
    enclave: NitroEnclave,
    console: Option<Child>,
    last_poll: Instant,
    _dir: PathBuf,
}

impl NitroInstance {
    fn end_console(&mut self) {
        if let Some(mut c) = self.console.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Instance for NitroInstance {
    fn info(&self) -> InstanceInfo {
        InstanceInfo {
            pid: self.enclave.process_id,
            enclave_id: Some(self.enclave.enclave_id.clone()),
            ..Default::default()
        }
    }

    fn heartbeat_by_backend(&self) -> bool {
        true
    }

    fn take_console(&mut self) -> Option<Box<dyn Read + Send>> {
        let out = self.console.as_mut()?.stdout.take()?;
        Some(Box::new(out))
    }

    fn try_wait(&mut self) -> Result<Option<InstanceExit>> {
        if self.last_poll.elapsed() < POLL_EVERY {
            return Ok(None);
        }
        self.last_poll = Instant::now();
        let all = self.backend.describe()?;
        let state = all
            .iter()
            .find(|e| e.enclave_id == self.enclave.enclave_id)
            .and_then(|e| e.state.clone());
        match state.as_deref() {
            Some("RUNNING") => Ok(None),
            other => {
                self.end_console();
                Ok(Some(InstanceExit {
                    failed: true,
                    description: format!(
                        "the enclave is no longer running (nitro-cli state {})",
                        other.unwrap_or("gone")
                    ),
                }))
            }
        }
    }

    fn kill(&mut self) -> Result<InstanceExit> {
        let id = self.enclave.enclave_id.clone();
        let done = self.backend.terminate(&id)?;
        self.end_console();
        Ok(InstanceExit {
            failed: true,
            description: if done {
                "terminated".into()
            } else {
                "nitro-cli could not terminate it".into()
            },
        })
    }
}

impl Drop for NitroInstance {
    fn drop(&mut self) {
        self.end_console();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_and_meminfo_are_read() {
        let alloc = "# How much memory\nmemory_mib: 512\n#\ncpu_count: 2\n";
        assert_eq!(yaml_number(alloc, "memory_mib"), Some(512));
        assert_eq!(yaml_number(alloc, "cpu_count"), Some(2));
        assert_eq!(yaml_number(alloc, "cpu_pool"), None);
        let mi = "MemTotal: 1 kB\nHugePages_Free:     256\nHugepagesize:       2048 kB\n";
        assert_eq!(free_hugepages_mib(mi), Some(512));
    }
}
