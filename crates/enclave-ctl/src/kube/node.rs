//! `node setup`: what a Nitro node needs before AWS's device plugin can advertise enclaves and
//! pods can run them, done idempotently under a root directory (`/` from EC2 user data,
//! `/host` from the privileged DaemonSet):
//!
//! 1. `allocator-config`: `etc/nitro_enclaves/allocator.yaml` holds `memory_mib` and
//!    `cpu_count` (edited line by line, so its other keys and comments stay);
//! 2. `hugepages`: enough pages of the chosen size reserved in sysfs to cover the memory
//!    (never lowered);
//! 3. `ne-group`: the `ne` group that owns `/dev/nitro_enclaves` (`groupadd --system ne` on the
//!    real root, an `etc/group` line otherwise);
//! 4. `allocator-service`: `nitro-enclaves-allocator.service` enabled and started, with the real
//!    root's systemctl only; otherwise reported as skipped, with the reason.
//!
//! Files are replaced atomically (temp + rename, mode and owner kept): an error leaves the old
//! file. sysfs is written in place, as it must be. With `check`, nothing changes and every
//! step that would is reported `missing`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::{write_atomically, HugepageSize};

/// The allocator's unit (aws-nitro-enclaves-cli).
pub const ALLOCATOR_SERVICE: &str = "nitro-enclaves-allocator.service";
/// The group of `/dev/nitro_enclaves`.
pub const NE_GROUP: &str = "ne";

/// What to set up.
#[derive(Debug, Clone)]
pub struct NodeParams {
    /// The node's root directory.
    pub root: PathBuf,
    /// `cpu_count`.
    pub cpus: u32,
    /// `memory_mib`.
    pub memory_mib: u64,
    /// The hugepage size reserved.
    pub hugepage_size: HugepageSize,
    /// Report only.
    pub check: bool,
}

/// A step's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Already in place.
    Ok,
    /// Done now.
    Changed,
    /// Not in place (`--check`).
    Missing,
    /// Not done here; the detail says why and what to do.
    Skipped,
}

impl Status {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Missing => "missing",
            Status::Skipped => "skipped",
        }
    }
}

/// One step's report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Outcome.
    pub status: Status,
    /// Which step.
    pub step: &'static str,
    /// What was found or done.
    pub detail: String,
}

/// Why node setup stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The root is not a directory.
    #[error("{}: no such directory", .0.display())]
    NoRoot(PathBuf),
    /// Changing the real root needs root.
    #[error("node setup changes this machine (--root /): run it as root, or with --check")]
    NotRoot,
    /// Reading or writing a file.
    #[error("{action} {}", path.display())]
    Io {
        /// `reading`, `writing`, …
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// allocator.yaml does not parse.
    #[error("{} is not valid YAML (left as it is)", path.display())]
    AllocatorYaml {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: yaml_serde::Error,
    },
    /// allocator.yaml parses but cannot be updated safely.
    #[error("{}: {reason} (left as it is)", path.display())]
    AllocatorShape {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The kernel has no hugepages of that size (or the root has no sysfs).
    #[error("{} does not exist: no {size} hugepages in this kernel, or --root is not a node's root with its /sys", dir.display())]
    NoHugepages {
        /// The sysfs directory.
        dir: PathBuf,
        /// `2M` or `1G`.
        size: &'static str,
    },
    /// The sysfs file does not hold a number.
    #[error("{}: {content:?} is not a number of pages", path.display())]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
    /// The kernel reserved fewer pages than asked.
    #[error("asked the kernel for {wanted} pages in {}, it reserved {got}: memory too fragmented or too small (reserve at boot, or use 2M pages)", path.display())]
    HugepagesShort {
        /// The file.
        path: PathBuf,
        /// Pages asked for.
        wanted: u64,
        /// Pages reserved.
        got: u64,
    },
    /// No group file under the root.
    #[error("{}: no such file (is --root a root filesystem?)", .0.display())]
    NoGroupFile(PathBuf),
    /// No free system gid.
    #[error("{}: no free system group id below 1000", .0.display())]
    NoFreeGid(PathBuf),
    /// A command could not be started.
    #[error("running {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
}

pub(super) fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> NodeError + 'a {
    move |source| NodeError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Runs (or checks) every step, calling `report` after each; stops at the first error.
pub fn setup(p: &NodeParams, report: &mut dyn FnMut(&Step)) -> Result<(), NodeError> {
    if !p.root.is_dir() {
        return Err(NodeError::NoRoot(p.root.clone()));
    }
    let real_root = p
        .root
        .canonicalize()
        .map_err(io_err("resolving", &p.root))?
        == Path::new("/");
    if real_root && !p.check && !nix::unistd::Uid::effective().is_root() {
        return Err(NodeError::NotRoot);
    }
    report(&super::allocator::allocator_config(p)?);
    report(&hugepages(p)?);
    report(&ne_group(p, real_root)?);
    report(&allocator_service(p, real_root)?);
    Ok(())
}

pub(super) fn step(status: Status, step: &'static str, detail: String) -> Step {
    Step {
        status,
        step,
        detail,
    }
}

pub(super) fn read_optional(path: &Path) -> Result<Option<(String, fs::Metadata)>, NodeError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let meta = fs::metadata(path).map_err(io_err("reading", path))?;
            Ok(Some((text, meta)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", path)(e)),
    }
}

fn hugepages(p: &NodeParams) -> Result<Step, NodeError> {
    const STEP: &str = "hugepages";
    let size = p.hugepage_size;
    let dir = p
        .root
        .join("sys/kernel/mm/hugepages")
        .join(size.sysfs_dir());
    let path = dir.join("nr_hugepages");
    let wanted = size.pages_for(p.memory_mib);
    if !dir.is_dir() {
        if p.check {
            return Ok(step(
                Status::Missing,
                STEP,
                format!("{}: no such directory", dir.display()),
            ));
        }
        return Err(NodeError::NoHugepages {
            dir,
            size: size.short(),
        });
    }
    let read = |path: &Path| -> Result<u64, NodeError> {
        let content = fs::read_to_string(path).map_err(io_err("reading", path))?;
        content.trim().parse().map_err(|_| NodeError::NotANumber {
            path: path.to_owned(),
            content,
        })
    };
    let current = read(&path)?;
    let what = format!(
        "{}: {current} pages of {} (need {wanted} for {} MiB)",
        path.display(),
        size.short(),
        p.memory_mib
    );
    if current >= wanted {
        return Ok(step(Status::Ok, STEP, what));
    }
    if p.check {
        return Ok(step(Status::Missing, STEP, what));
    }
    // sysfs: in place, one write.
    fs::write(&path, format!("{wanted}\n")).map_err(io_err("writing", &path))?;
    let got = read(&path)?;
    if got < wanted {
        return Err(NodeError::HugepagesShort { path, wanted, got });
    }
    Ok(step(
        Status::Changed,
        STEP,
        format!(
            "{}: {current} -> {got} pages of {}",
            path.display(),
            size.short()
        ),
    ))
}

fn has_group(text: &str) -> bool {
    text.lines().any(|l| l.split(':').next() == Some(NE_GROUP))
}

fn ne_group(p: &NodeParams, real_root: bool) -> Result<Step, NodeError> {
    const STEP: &str = "ne-group";
    let path = p.root.join("etc/group");
    let Some((text, meta)) = read_optional(&path)? else {
        if p.check {
            return Ok(step(
                Status::Missing,
                STEP,
                format!("{}: no such file", path.display()),
            ));
        }
        return Err(NodeError::NoGroupFile(path));
    };
    if has_group(&text) {
        return Ok(step(
            Status::Ok,
            STEP,
            format!("{}: group {NE_GROUP} exists", path.display()),
        ));
    }
    if p.check {
        return Ok(step(
            Status::Missing,
            STEP,
            format!("{}: no group {NE_GROUP}", path.display()),
        ));
    }
    if real_root {
        run(Command::new("groupadd").args(["--system", NE_GROUP]))?;
        return Ok(step(
            Status::Changed,
            STEP,
            format!("groupadd --system {NE_GROUP}"),
        ));
    }
    // Under another root: a line of our own, with a free system gid (as groupadd --system
    // picks them: the highest free one below 1000).
    let used: Vec<u32> = text
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    let gid = (100..1000)
        .rev()
        .find(|g| !used.contains(g))
        .ok_or_else(|| NodeError::NoFreeGid(path.clone()))?;
    let mut new = text.clone();
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&format!("{NE_GROUP}:x:{gid}:\n"));
    let gshadow = p.root.join("etc/gshadow");
    if let Some((shadow, shadow_meta)) = read_optional(&gshadow)? {
        if !has_group(&shadow) {
            let mut shadow = shadow;
            if !shadow.is_empty() && !shadow.ends_with('\n') {
                shadow.push('\n');
            }
            shadow.push_str(&format!("{NE_GROUP}:!::\n"));
            write_atomically(&gshadow, shadow.as_bytes(), Some(&shadow_meta))
                .map_err(io_err("writing", &gshadow))?;
        }
    }
    write_atomically(&path, new.as_bytes(), Some(&meta)).map_err(io_err("writing", &path))?;
    Ok(step(
        Status::Changed,
        STEP,
        format!("{}: added group {NE_GROUP} (gid {gid})", path.display()),
    ))
}

fn allocator_service(p: &NodeParams, real_root: bool) -> Result<Step, NodeError> {
    const STEP: &str = "allocator-service";
    if !real_root {
        return Ok(step(
            Status::Skipped,
            STEP,
            format!(
                "--root is {}, not /: enable {ALLOCATOR_SERVICE} on the node itself (user data, or the AMI)",
                p.root.display()
            ),
        ));
    }
    let Some(systemctl) = find_program("systemctl") else {
        return Ok(step(
            Status::Skipped,
            STEP,
            format!("no systemctl here: start the allocator ({ALLOCATOR_SERVICE}) yourself"),
        ));
    };
    let quiet = |verb: &str| {
        Command::new(&systemctl)
            .args([verb, "--quiet", ALLOCATOR_SERVICE])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if quiet("is-enabled") && quiet("is-active") {
        return Ok(step(
            Status::Ok,
            STEP,
            format!("{ALLOCATOR_SERVICE} enabled and active"),
        ));
    }
    if p.check {
        return Ok(step(
            Status::Missing,
            STEP,
            format!("{ALLOCATOR_SERVICE} not enabled and active"),
        ));
    }
    run(Command::new(&systemctl).args(["enable", "--now", ALLOCATOR_SERVICE]))?;
    Ok(step(
        Status::Changed,
        STEP,
        format!("systemctl enable --now {ALLOCATOR_SERVICE}"),
    ))
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> Result<(), NodeError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|source| NodeError::Spawn {
        command: command.clone(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NodeError::Command {
        command,
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}
