//! Early boot: the kernel filesystems, the configuration files, and the switch into the app
//! rootfs.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use enclave_proto::app::{AppConfig, APP_CONFIG_VERSION};
use enclave_proto::init::{InitConfig, INIT_CONFIG_VERSION, PARENT_CID_CMDLINE_PARAM};
use enclave_spec::EnclaveSpec;
use nix::mount::{mount, MsFlags};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::say;

/// Where copies of the app configuration and spec are kept once the initramfs is out of reach
/// (for the control server and for services that want to read them).
pub const RUN_DIR: &str = "/run/enclave";

/// The filesystems mounted before anything else, in order, and moved into the app rootfs.
struct EarlyMount {
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: &'static str,
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV.union(MsFlags::MS_NOEXEC),
        data: "",
    },
    EarlyMount {
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV.union(MsFlags::MS_NOEXEC),
        data: "",
    },
    EarlyMount {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: "mode=0755",
    },
    EarlyMount {
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "newinstance,ptmxmode=0666,mode=0620",
    },
    EarlyMount {
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=1777",
    },
    EarlyMount {
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=1777",
    },
    EarlyMount {
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=0755",
    },
];

/// The top-level mount points carried into the app rootfs (their submounts come along).
const MOVED_MOUNTS: &[&str] = &["/dev", "/proc", "/sys", "/tmp", "/run"];

/// Whether `path` is the root of a mount: its device differs from its parent's.
fn is_mount_point(path: &Path) -> bool {
    let parent = path.parent().unwrap_or(Path::new("/"));
    match (fs::metadata(path), fs::metadata(parent)) {
        (Ok(p), Ok(q)) => p.dev() != q.dev(),
        _ => false,
    }
}

/// Mounts /proc, /sys, /dev (devtmpfs, with /dev/pts and /dev/shm), /tmp and /run.
///
/// A target that is already a mount point is left alone (the kernel or a test harness may have
/// mounted it). Failures are returned after trying every mount, so that one missing filesystem
/// type does not leave the others unmounted.
pub fn mount_early() -> Result<()> {
    let mut first_err = None;
    for m in EARLY_MOUNTS {
        let target = Path::new(m.target);
        if let Err(e) = fs::create_dir_all(target) {
            first_err.get_or_insert(Error::io(target, e));
            continue;
        }
        if is_mount_point(target) {
            continue;
        }
        let data = (!m.data.is_empty()).then_some(m.data);
        match mount(Some(m.fstype), target, Some(m.fstype), m.flags, data) {
            Ok(()) | Err(nix::Error::EBUSY) => {}
            Err(e) => {
                first_err
                    .get_or_insert(Error::sys(format!("mount {} on {}", m.fstype, m.target), e));
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

fn check_version(path: &Path, found: u32, expected: u32) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(Error::Config {
        path: path.to_owned(),
        reason: format!("format version {found} is not supported (this init reads {expected})"),
    })
}

/// Reads and checks enclave-init's configuration.
pub fn read_init_config(path: &Path) -> Result<InitConfig> {
    let cfg: InitConfig = read_json(path)?;
    check_version(path, cfg.version, INIT_CONFIG_VERSION)?;
    Ok(cfg)
}

/// Reads and checks the app configuration.
pub fn read_app_config(path: &Path) -> Result<AppConfig> {
    let cfg: AppConfig = read_json(path)?;
    check_version(path, cfg.version, APP_CONFIG_VERSION)?;
    Ok(cfg)
}

/// Reads and validates the enclave spec (the build validated it too; this init does not trust
/// that a newer or older builder agreed on what valid means).
pub fn read_spec(path: &Path) -> Result<EnclaveSpec> {
    let spec: EnclaveSpec = read_json(path)?;
    spec.validate().map_err(|e| Error::Config {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(spec)
}

/// The parent CID given on the kernel command line (`enclave.parent_cid=N`), if any; the last
/// occurrence wins, as for kernel parameters.
pub fn parent_cid_from_cmdline(cmdline: &str) -> Option<u32> {
    let prefix = format!("{PARENT_CID_CMDLINE_PARAM}=");
    cmdline
        .split_ascii_whitespace()
        // Everything after `--` is init's argv, not kernel parameters.
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix(&prefix))
        .filter_map(|v| v.parse().ok())
        .last()
}

/// Copies `files` into [`RUN_DIR`] (which moves with /run into the app rootfs).
pub fn keep_copies(files: &[&str]) -> Result<()> {
    let dir = Path::new(RUN_DIR);
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for file in files {
        let src = Path::new(file);
        let dst: PathBuf = dir.join(src.file_name().unwrap_or(src.as_os_str()));
        fs::copy(src, &dst).map_err(|e| Error::io(&dst, e))?;
    }
    Ok(())
}

fn sys(what: &str) -> impl FnOnce(nix::Error) -> Error + '_ {
    move |e| Error::sys(what, e)
}

/// Makes `rootfs` the root directory, carrying the kernel filesystems along.
///
/// `rootfs` is a directory of the initramfs, not a mount, so it is bind-mounted onto itself
/// first: only a mount can be moved onto `/`. This is switch_root without deleting the
/// initramfs (the app rootfs lives inside it).
pub fn switch_root(rootfs: &Path) -> Result<()> {
    let none: Option<&str> = None;
    for m in MOVED_MOUNTS {
        let inside = rootfs.join(m.trim_start_matches('/'));
        fs::create_dir_all(&inside).map_err(|e| Error::io(&inside, e))?;
    }
    mount(
        Some(rootfs),
        rootfs,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )
    .map_err(sys("bind-mount the rootfs onto itself"))?;
    for m in MOVED_MOUNTS {
        let inside = rootfs.join(m.trim_start_matches('/'));
        if !is_mount_point(Path::new(m)) {
            continue;
        }
        if let Err(e) = mount(Some(*m), &inside, none, MsFlags::MS_MOVE, none) {
            // Not fatal: the app runs without that filesystem, and says so.
            say!("cannot move {m} into the rootfs: {e}");
        }
    }
    nix::unistd::chdir(rootfs).map_err(sys("chdir to the rootfs"))?;
    mount(Some("."), "/", none, MsFlags::MS_MOVE, none).map_err(sys("move the rootfs onto /"))?;
    nix::unistd::chroot(".").map_err(sys("chroot into the rootfs"))?;
    nix::unistd::chdir("/").map_err(sys("chdir to /"))?;
    Ok(())
}

/// Sets the hostname (UTS namespace of the enclave).
pub fn set_hostname(name: &str) -> Result<()> {
    nix::unistd::sethostname(name).map_err(sys("sethostname"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_cid_is_read_from_the_cmdline() {
        assert_eq!(parent_cid_from_cmdline("console=ttyS0 quiet"), None);
        assert_eq!(parent_cid_from_cmdline("a enclave.parent_cid=2 b"), Some(2));
        assert_eq!(
            parent_cid_from_cmdline("enclave.parent_cid=2 enclave.parent_cid=5\n"),
            Some(5)
        );
        assert_eq!(parent_cid_from_cmdline("enclave.parent_cid=x"), None);
        assert_eq!(parent_cid_from_cmdline("x -- enclave.parent_cid=4"), None);
        assert_eq!(parent_cid_from_cmdline("xenclave.parent_cid=4"), None);
    }

    #[test]
    fn configs_are_read_and_versions_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let cfg = InitConfig::new("nitro", vec!["a.ko".into()], None);
        fs::write(&p, serde_json::to_vec(&cfg).unwrap()).unwrap();
        assert_eq!(read_init_config(&p).unwrap(), cfg);
        let mut bad = cfg.clone();
        bad.version = 99;
        fs::write(&p, serde_json::to_vec(&bad).unwrap()).unwrap();
        let e = read_init_config(&p).unwrap_err().to_string();
        assert!(e.contains("version 99"), "{e}");
        fs::write(&p, b"{\"version\":1}").unwrap();
        assert!(matches!(read_init_config(&p), Err(Error::Json { .. })));
        assert!(matches!(
            read_init_config(&dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn an_invalid_spec_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spec.json");
        fs::write(
            &p,
            br#"{"services":[{"name":"a","command":["x"],"depends_on":["b"]}]}"#,
        )
        .unwrap();
        let e = read_spec(&p).unwrap_err().to_string();
        assert!(e.contains("unknown service"), "{e}");
    }
}
