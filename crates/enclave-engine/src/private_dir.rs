//! Directories only this user can enter: the state root and every directory the engine makes in
//! it (`enclaves/`, `enclaves/<id>/`, `logs/`, `sk/`, `sk/<id>/`, `emulation-ca/`).
//!
//! Whoever can write in the state root controls the enclaves recorded there: their records,
//! pinned EIFs, control sockets and the emulation CA's key. Another local user who creates the
//! root first (or a symlink in its place) would own all of that. So a directory is made with
//! one `mkdir(…, 0700)` (never `create_dir_all` and a chmod afterwards), then opened with
//! `O_NOFOLLOW|O_DIRECTORY` and checked through that descriptor (`fstat`): a real directory,
//! owned by the effective uid, no group or other permission bits. An existing directory that
//! fails is refused with the path, what is wrong and what to do; nothing is repaired silently.
//! A chmod is only ever needed on a directory just made under a umask that removed owner bits,
//! and if it fails that is an error too.
//!
//! The root's ancestors are checked as well: each must belong to root or to this user and, when
//! group or others may write it, carry the sticky bit (as /tmp does). Otherwise another user
//! could rename the checked root away and put their own directory in its place between two of
//! the engine's path lookups.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The mode of every directory of the state tree.
const PRIVATE: u32 = 0o700;
/// The sticky bit: in such a directory only an entry's owner may rename or remove it.
const STICKY: u32 = 0o1000;

/// Why a state directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// Not root, and no `XDG_RUNTIME_DIR` to put the default root in.
    #[error("no default state directory: XDG_RUNTIME_DIR is not set and you are not root (uid {uid}). Set XDG_RUNTIME_DIR (a login session sets it to /run/user/{uid}), or choose a directory only you can write with --state-dir or ENCLAVE_ENGINE_STATE_DIR")]
    NoRuntimeDir {
        /// The effective uid.
        uid: u32,
    },
    /// A symbolic link where a directory should be.
    #[error("refusing state directory {}: it is a symbolic link{}; the state directory and the directories in it must be real directories: remove the link, or name the directory itself with --state-dir", path.display(), target.as_ref().map(|t| format!(" (to {})", t.display())).unwrap_or_default())]
    Symlink {
        /// The link.
        path: PathBuf,
        /// Where it points, when readable.
        target: Option<PathBuf>,
    },
    /// Something else than a directory.
    #[error("refusing state directory {}: it is not a directory; remove it or choose another --state-dir", path.display())]
    NotDirectory {
        /// The path.
        path: PathBuf,
    },
    /// Owned by someone else.
    #[error("refusing state directory {}: it is owned by uid {owner}, not by you (uid {euid}); another user may have made it to take over your enclaves: remove it, or choose another --state-dir", path.display())]
    Owner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid.
        euid: u32,
    },
    /// Group or others have some access.
    #[error("refusing state directory {}: mode {mode:04o} has group or other bits, and only its owner may use a state directory: `chmod 0700 {}` if you trust what is in it, or remove it", path.display(), path.display())]
    Mode {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An ancestor of the root belongs to another user.
    #[error("refusing state directory {}: its ancestor {} is owned by uid {owner} (neither root nor you), who could replace it; choose a state directory under directories only root or you can change", path.display(), ancestor.display())]
    AncestorOwner {
        /// The state root.
        path: PathBuf,
        /// The ancestor.
        ancestor: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// An ancestor of the root others may write, without the sticky bit.
    #[error("refusing state directory {}: its ancestor {} (mode {mode:04o}) is writable by group or others and not sticky, so another user could replace it; choose a state directory under directories only root or you can write (a sticky one such as /tmp is fine)", path.display(), ancestor.display())]
    AncestorWritable {
        /// The state root.
        path: PathBuf,
        /// The ancestor.
        ancestor: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A directory just made could not be given mode 0700.
    #[error("cannot make {} private (chmod 0700): {source}", path.display())]
    Chmod {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// This user may not enter it: another user's (root's) state directory.
    #[error("permission denied: the state directory {} belongs to another user; enclaves are driven by the user who started them (root on a Nitro parent): use a state directory of your own (--state-dir, $XDG_RUNTIME_DIR), or reach an enclave by address with a key listed in its spec's debug.authorized_keys (--key)", path.display())]
    Denied {
        /// The path.
        path: PathBuf,
    },
    /// A file operation failed.
    #[error("state directory {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, StateDirError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateDirError + '_ {
    move |source| match source.kind() {
        std::io::ErrorKind::PermissionDenied => StateDirError::Denied {
            path: path.to_owned(),
        },
        _ => StateDirError::Io {
            path: path.to_owned(),
            source,
        },
    }
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The default state root: `/run/enclave-engine` as root, `$XDG_RUNTIME_DIR/enclave-engine`
/// otherwise. There is no fallback to a shared directory such as /tmp.
pub fn default_root() -> Result<PathBuf> {
    default_root_for(euid(), std::env::var_os("XDG_RUNTIME_DIR").as_deref())
}

/// [`default_root`] for a given effective uid and `XDG_RUNTIME_DIR`.
pub fn default_root_for(euid: u32, xdg_runtime_dir: Option<&OsStr>) -> Result<PathBuf> {
    if euid == 0 {
        return Ok(PathBuf::from("/run/enclave-engine"));
    }
    match xdg_runtime_dir {
        Some(dir) if !dir.is_empty() => Ok(Path::new(dir).join("enclave-engine")),
        _ => Err(StateDirError::NoRuntimeDir { uid: euid }),
    }
}

/// Makes `path` (mode 0700) unless it exists, then checks it: see the module documentation.
pub fn make_private_dir(path: &Path) -> Result<()> {
    let created = match DirBuilder::new().mode(PRIVATE).create(path) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
        Err(e) => return Err(io(path)(e)),
    };
    let dir = open_no_follow(path)?;
    let meta = dir.metadata().map_err(io(path))?;
    if created && meta.mode() & 0o7777 != PRIVATE {
        // The umask removed owner bits; group and other bits cannot have been added.
        dir.set_permissions(fs::Permissions::from_mode(PRIVATE))
            .map_err(|source| StateDirError::Chmod {
                path: path.to_owned(),
                source,
            })?;
    }
    check_open(path, &dir)
}

/// Checks an existing directory as [`make_private_dir`] does, without making it.
pub fn check_private_dir(path: &Path) -> Result<()> {
    let dir = open_no_follow(path)?;
    check_open(path, &dir)
}

fn open_no_follow(path: &Path) -> Result<File> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(path);
    match opened {
        Ok(f) => Ok(f),
        // O_NOFOLLOW|O_DIRECTORY on a symlink gives ENOTDIR (ELOOP without O_DIRECTORY).
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::ELOOP | nix::libc::ENOTDIR)
            ) =>
        {
            let link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            Err(if link {
                StateDirError::Symlink {
                    path: path.to_owned(),
                    target: fs::read_link(path).ok(),
                }
            } else {
                StateDirError::NotDirectory {
                    path: path.to_owned(),
                }
            })
        }
        Err(e) => Err(io(path)(e)),
    }
}

fn check_open(path: &Path, dir: &File) -> Result<()> {
    let meta = dir.metadata().map_err(io(path))?;
    let euid = euid();
    if meta.uid() != euid {
        return Err(StateDirError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            euid,
        });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(StateDirError::Mode {
            path: path.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Checks every ancestor of the state root `root` (absolute), resolved: owned by root or by this
/// user, and not writable by group or others unless sticky.
pub fn check_ancestors(root: &Path) -> Result<()> {
    let Some(parent) = root.parent() else {
        return Ok(());
    };
    let parent = fs::canonicalize(parent).map_err(io(parent))?;
    let euid = euid();
    for ancestor in parent.ancestors() {
        let meta = fs::metadata(ancestor).map_err(io(ancestor))?;
        if meta.uid() != 0 && meta.uid() != euid {
            return Err(StateDirError::AncestorOwner {
                path: root.to_owned(),
                ancestor: ancestor.to_owned(),
                owner: meta.uid(),
            });
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & STICKY == 0 {
            return Err(StateDirError::AncestorWritable {
                path: root.to_owned(),
                ancestor: ancestor.to_owned(),
                mode: meta.mode() & 0o7777,
            });
        }
    }
    Ok(())
}
