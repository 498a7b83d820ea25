//! The state directory: one directory per enclave, no daemon.
//!
//! Every directory here is mode 0700, owned by the effective uid, and checked each time it is
//! opened or made (`crate::private_dir`, re-exported here); files are written through random-named `O_EXCL`
//! temporaries ([`crate::util::TempFile`]).
//!
//! ```text
//! <root>/lock                      flock held while creating (names, CIDs) or removing
//! <root>/events.jsonl              the event log (crate::events), events.1.jsonl before it;
//!                                  events.lock is held while appending
//! <root>/enclaves/<id>/state.json  the EnclaveRecord, written atomically
//!                     image.eif        the EIF pinned at `run` (what every boot measures)
//!                     supervisor.lock  flock held by the live supervisor
//!                     supervisor.log   the supervisor's own log
//!                     console.log      the raw console (size-capped)
//!                     logs/            JSON-lines logs (size-capped)
//!                     stop.json        a pending stop request (timeout)
//!                     attached.lock    flock (shared) held by an attached `run`: a `--rm`
//!                                      enclave is removed once it is released
//!                     kernel, initrd   boot files (qemu)
//!                     vhost.sock, vsock.sock[_PORT]   vhost-user and hybrid vsock sockets
//! ```

mod emulation_ca;
mod inspect;
mod record;

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use crate::private_dir::{
    check_private_dir, default_root, default_root_for, make_private_dir, StateDirError,
};
pub use emulation_ca::emulation_ca;
pub use record::{measured_pcrs, EnclaveRecord, HealthRecord, Ports, Status};

use crate::backend::LaunchSpec;
use crate::error::{EngineError, Result};
use crate::util;

/// The first CID given to an enclave (Nitro's first enclave CID).
pub const FIRST_CID: u32 = 16;
/// The last CID the engine gives out.
pub const LAST_CID: u32 = 0xFFFF_FFFE;

/// Length of the short id (socket directories, `ps`).
pub const SHORT_ID: usize = 12;

/// The lock an attached `run` holds in the enclave's directory.
const ATTACHED_LOCK: &str = "attached.lock";

/// The stop request file in the enclave directory: `stop` writes it, the supervisor reads the
/// grace period from it.
pub const STOP_FILE: &str = "stop.json";

/// A pending `stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequest {
    /// Grace period before the enclave is killed.
    pub timeout_secs: u64,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateRoot {
    root: PathBuf,
}

/// The root lock; released on drop.
pub struct RootLock {
    _lock: Flock<File>,
}

fn lock_file(path: &Path, arg: FlockArg) -> Result<Option<Flock<File>>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| EngineError::io(path, e))?;
    match Flock::lock(file, arg) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::Error::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(EngineError::sys(format!("flock {}", path.display()), e)),
    }
}

impl StateRoot {
    /// Opens the state directory at `root`, making it (mode 0700) when absent; its parent must
    /// exist. Refused unless it and its ancestors pass the checks of `private_dir.rs`, whoever
    /// chose the path (the default, `--state-dir` or `ENCLAVE_ENGINE_STATE_DIR`).
    pub fn open(root: &Path) -> Result<Self> {
        let root = std::path::absolute(root).map_err(|e| EngineError::io(root, e))?;
        crate::private_dir::check_ancestors(&root)?;
        make_private_dir(&root)?;
        make_private_dir(&root.join("enclaves"))?;
        make_private_dir(&root.join("sk"))?;
        Ok(Self { root })
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The directory of enclave `id`.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join("enclaves").join(id)
    }

    /// The directory of the Unix sockets of `id`: `<root>/sk/<first 12 hex digits>`, short
    /// because socket paths are limited to 107 bytes.
    pub fn socket_dir(&self, id: &str) -> PathBuf {
        self.root.join("sk").join(&id[..id.len().min(SHORT_ID)])
    }

    /// What a backend needs to boot `rec`: the EIF pinned in its directory (`rec.eif`, the
    /// path given to `run`, is only shown), its directories and resources.
    pub fn launch_spec(&self, rec: &EnclaveRecord) -> LaunchSpec {
        let dir = self.dir(&rec.id);
        LaunchSpec {
            sockets: self.socket_dir(&rec.id),
            id: rec.id.clone(),
            name: rec.name.clone(),
            eif: dir.join(crate::eif::pin::PINNED_EIF),
            measurements: rec.measurements.clone(),
            dir,
            cpus: rec.cpus,
            memory_mib: rec.memory_mib,
            cid: rec.cid,
            debug_mode: rec.debug_mode,
        }
    }

    /// Takes the root lock (blocking).
    pub fn lock(&self) -> Result<RootLock> {
        let lock = lock_file(&self.root.join("lock"), FlockArg::LockExclusive)?
            .ok_or_else(|| EngineError::Backend("cannot lock the state directory".into()))?;
        Ok(RootLock { _lock: lock })
    }

    /// Takes the supervisor lock of enclave `id` without waiting: `None` when a live
    /// supervisor holds it.
    pub fn try_lock_supervisor(&self, id: &str) -> Result<Option<Flock<File>>> {
        lock_file(
            &self.dir(id).join("supervisor.lock"),
            FlockArg::LockExclusiveNonblock,
        )
    }

    /// Whether the supervisor of `id` is alive (holds its lock).
    pub fn supervisor_alive(&self, id: &str) -> bool {
        matches!(self.try_lock_supervisor(id), Ok(None))
    }

    /// Marks `id` as watched by an attached `run` until the lock is dropped: the supervisor of a
    /// `--rm` enclave waits for it (see [`wait_unattached`](Self::wait_unattached)) so that
    /// `run` reads the exit code before the record goes.
    pub fn attach(&self, id: &str) -> Result<Flock<File>> {
        let path = self.dir(id).join(ATTACHED_LOCK);
        lock_file(&path, FlockArg::LockSharedNonblock)?
            .ok_or_else(|| EngineError::Backend(format!("{}: locked", path.display())))
    }

    /// Waits until no attached `run` watches `id`, at most `limit`; whether none does.
    pub fn wait_unattached(&self, id: &str, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let path = self.dir(id).join(ATTACHED_LOCK);
        loop {
            match lock_file(&path, FlockArg::LockExclusiveNonblock) {
                Ok(Some(_)) => return true,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25))
                }
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!("{e}");
                    return false;
                }
            }
        }
    }

    /// Reads the record of `id`.
    pub fn load(&self, id: &str) -> Result<EnclaveRecord> {
        util::read_json(&self.dir(id).join("state.json"))
    }

    /// Writes the record atomically.
    pub fn save(&self, rec: &EnclaveRecord) -> Result<()> {
        util::write_json_atomic(&self.dir(&rec.id).join("state.json"), rec)
    }

    /// Every enclave, oldest first, with [`effective`](Self::effective) statuses. Directories
    /// without a readable `state.json` are skipped.
    pub fn list(&self) -> Result<Vec<EnclaveRecord>> {
        let dir = self.root.join("enclaves");
        let entries = fs::read_dir(&dir).map_err(|e| EngineError::io(&dir, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Ok(rec) = self.load(&id) {
                out.push(self.effective(rec));
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The record as it really is: an active status whose supervisor died reads as failed.
    pub fn effective(&self, mut rec: EnclaveRecord) -> EnclaveRecord {
        if rec.status.is_active()
            && rec.status != Status::Created
            && !self.supervisor_alive(&rec.id)
        {
            // Re-read: the supervisor may have just written its last state and exited.
            if let Ok(fresh) = self.load(&rec.id) {
                rec = fresh;
            }
            if rec.status.is_active() {
                rec.status = Status::Failed;
                rec.error
                    .get_or_insert_with(|| "the supervisor died".to_owned());
            }
        }
        rec
    }

    /// Finds an enclave by full id, name, or unique id prefix (as Docker does).
    pub fn resolve(&self, query: &str) -> Result<EnclaveRecord> {
        let all = self.list()?;
        if query.is_empty() {
            return Err(EngineError::NotFound(query.to_owned()));
        }
        if let Some(rec) = all.iter().find(|r| r.id == query || r.name == query) {
            return Ok(rec.clone());
        }
        let matches: Vec<&EnclaveRecord> = all.iter().filter(|r| r.id.starts_with(query)).collect();
        match matches.as_slice() {
            [] => Err(EngineError::NotFound(query.to_owned())),
            [one] => Ok((*one).clone()),
            many => Err(EngineError::Ambiguous {
                query: query.to_owned(),
                matches: many.iter().map(|r| r.name.clone()).collect(),
            }),
        }
    }

    /// Records a new enclave under the root lock: checks that the name is free, gives it the
    /// lowest free CID (unless `rec.cid` is already set, non-zero) and writes its directory.
    /// Either all of it is there afterwards, or none of it.
    pub fn create(&self, mut rec: EnclaveRecord) -> Result<EnclaveRecord> {
        check_name(&rec.name)?;
        let _lock = self.lock()?;
        let all = self.list()?;
        let short = &rec.id[..rec.id.len().min(SHORT_ID)];
        if all.iter().any(|r| r.id.starts_with(short)) {
            return Err(EngineError::Invalid(format!(
                "id prefix {short} is taken; try again"
            )));
        }
        if let Some(other) = all.iter().find(|r| r.name == rec.name) {
            return Err(EngineError::NameInUse {
                name: rec.name.clone(),
                id: other.short_id().to_owned(),
            });
        }
        if rec.cid == 0 {
            rec.cid = free_cid(&all)?;
        }
        let dir = self.dir(&rec.id);
        let made = make_private_dir(&dir)
            .and_then(|()| make_private_dir(&dir.join("logs")))
            .and_then(|()| make_private_dir(&self.socket_dir(&rec.id)))
            .map_err(EngineError::from)
            .and_then(|()| self.save(&rec));
        if let Err(e) = made {
            let _ = fs::remove_dir_all(self.socket_dir(&rec.id));
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(rec)
    }

    /// Deletes the directory of `id` (the caller made sure nothing runs). Already gone is
    /// fine: a `--rm` enclave's supervisor and `rm -f` may both remove it.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _lock = self.lock()?;
        let _ = fs::remove_dir_all(self.socket_dir(id));
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EngineError::io(&dir, e)),
            _ => Ok(()),
        }
    }
}

/// The lowest CID from [`FIRST_CID`] that no active enclave uses.
fn free_cid(all: &[EnclaveRecord]) -> Result<u32> {
    let mut used: Vec<u32> = all
        .iter()
        .filter(|r| r.status.is_active())
        .map(|r| r.cid)
        .collect();
    used.sort_unstable();
    let mut cid = FIRST_CID;
    for u in used {
        if u == cid {
            cid = cid.checked_add(1).ok_or(EngineError::NoCidAvailable)?;
        } else if u > cid {
            break;
        }
    }
    if cid > LAST_CID {
        return Err(EngineError::NoCidAvailable);
    }
    Ok(cid)
}

/// Names: [`enclave_spec::valid_enclave_name`] (Docker's rule).
pub fn check_name(name: &str) -> Result<()> {
    if enclave_spec::valid_enclave_name(name) {
        Ok(())
    } else {
        Err(EngineError::InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
pub(crate) mod tests;
