//! The attested files: path -> (SHA3-512, generation, ECVRF proof), shared between the server
//! and the monitor.
//!
//! Generations come from one counter per store (so per boot), shared by every path, files and
//! tombstones alike: each new proof takes the next value. One counter rather than one per path
//! because a path can be deleted and created again: a per-path counter would have to outlive
//! the file (or restart and let the new file's records look older than the old tombstone),
//! while the shared counter needs no memory of removed paths and still grows along every path.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use enclave_spec::FileAttestationSpec;

use super::path::{Located, Roots};
use super::scan::{self, Hashed, Ignore, Stamp};
use super::FileError;
use super::{Change, FileEntry, Tombstone};
use enclave_attest::vrf::{
    prove_delete, prove_file, DeleteClaim, Epoch, FileClaim, PublicKey, SecretKey,
};

/// Bounds on what the store holds and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most files attested at once (default 100,000).
    pub max_files: usize,
    /// Most directories walked in one scan (default 100,000).
    pub max_dirs: usize,
    /// Longest path, in bytes, that is attested or accepted in a request (default 4096,
    /// Linux's PATH_MAX).
    pub max_path_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 100_000,
            max_dirs: 100_000,
            max_path_len: 4096,
        }
    }
}

struct Slot {
    entry: FileEntry,
    /// Set when the stamp can vouch for the hash (see `scan::Stamp`): a rescan then skips
    /// re-reading the file.
    stamp: Option<Stamp>,
}

/// The attested files under the spec's roots. Shared as `Arc<FileStore>`: lookups take a read
/// lock; hashing and proving happen outside any lock.
pub struct FileStore {
    roots: Roots,
    ignore: Ignore,
    key: SecretKey,
    public: PublicKey,
    epoch: Epoch,
    limits: Limits,
    entries: RwLock<BTreeMap<String, Slot>>,
    /// The last generation handed out (0: none yet).
    generation: AtomicU64,
    version: Mutex<u64>,
    changed: Condvar,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("roots", &self.roots.describe())
            .field("files", &self.len())
            .field("vrf_public_key", &self.public)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl FileStore {
    /// Scans the spec's roots with the default [`Limits`] and proves every file with `key`
    /// in boot `epoch` (the hash of the start-up document that binds `key`'s public half).
    pub fn new(
        spec: &FileAttestationSpec,
        key: SecretKey,
        epoch: Epoch,
    ) -> Result<FileStore, FileError> {
        FileStore::with_limits(spec, key, epoch, Limits::default())
    }

    /// [`FileStore::new`] with explicit limits. Fails if the roots hold more than
    /// `limits.max_files` files that are not ignored.
    pub fn with_limits(
        spec: &FileAttestationSpec,
        key: SecretKey,
        epoch: Epoch,
        limits: Limits,
    ) -> Result<FileStore, FileError> {
        let store = FileStore {
            roots: Roots::new(&spec.roots)?,
            ignore: Ignore::load(spec.ignore_file.as_deref())?,
            public: key.public_key(),
            key,
            epoch,
            limits,
            entries: RwLock::new(BTreeMap::new()),
            generation: AtomicU64::new(0),
            version: Mutex::new(0),
            changed: Condvar::new(),
        };
        let started = Instant::now();
        store.rescan()?;
        tracing::info!(
            files = store.len(),
            roots = %store.roots.describe(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "file attestation: initial scan done"
        );
        Ok(store)
    }

    /// The entry for `path` (absolute; no `..`; under a root; not ignored). A regular file the
    /// store does not hold yet (created since the last event, or beyond `max_files`) is hashed
    /// and proven on the spot, under a generation of its own, but not stored: the monitor adds
    /// it, and publishes it, when its event arrives.
    pub fn lookup(&self, path: &str) -> Result<FileEntry, FileError> {
        let loc = self.roots.locate_request(path, self.limits.max_path_len)?;
        if self.ignore.is_ignored(&loc.rel, false) {
            return Err(self.ignored(&loc));
        }
        if let Some(slot) = self.read().get(&loc.name) {
            return Ok(slot.entry.clone());
        }
        let hashed = scan::hash_file(&loc, &self.roots)?;
        self.prove(&loc.name, hashed.hash)
    }

    /// The VRF public key the proofs verify under (bind it into an attestation document).
    pub fn vrf_public_key(&self) -> PublicKey {
        self.public
    }

    /// The boot every proof names.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The last generation handed out (a proof made now gets a larger one).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How many files are attested.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no file is attested.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every attested path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Brings the store in line with what is at `fs_path` now (a path under a root, as the
    /// watcher reports it): a regular file is re-hashed (and re-proven if it changed), a
    /// directory is walked, and anything else, including nothing, removes the entries at and
    /// under the path. Returns what changed; an unchanged file is no change.
    pub fn update(&self, fs_path: &Path) -> Result<Vec<Change>, FileError> {
        let loc = self.locate_fs(fs_path)?;
        let real = loc.real();
        // Only a path through plain directories is looked at: one through a link (or whose
        // directory is gone) attests nothing, and what was stored under it goes.
        let plain = real
            .parent()
            .is_some_and(|p| std::fs::canonicalize(p).is_ok_and(|c| c == p));
        let meta = std::fs::symlink_metadata(&real).ok().filter(|_| plain);
        let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
        if self.ignore.is_ignored(&loc.rel, is_dir) {
            return Err(self.ignored(&loc));
        }
        let changes = match meta {
            Some(m) if m.is_dir() => self.sync_dir(&loc)?,
            Some(m) if m.is_file() => match scan::hash_file(&loc, &self.roots) {
                Ok(hashed) => self.put(&loc.name, hashed)?.into_iter().collect(),
                Err(FileError::NotFound { .. } | FileError::NotRegularFile { .. }) => {
                    self.drop_under(&loc.name)?
                }
                Err(e) => return Err(e),
            },
            _ => self.drop_under(&loc.name)?,
        };
        self.bump_if(&changes);
        Ok(changes)
    }

    /// Removes the entries at and under `fs_path` (a path under a root).
    pub fn remove(&self, fs_path: &Path) -> Result<Vec<Change>, FileError> {
        let loc = self.locate_fs(fs_path)?;
        let changes = self.drop_under(&loc.name)?;
        self.bump_if(&changes);
        Ok(changes)
    }

    /// Walks every root again (after the watcher lost events, or to catch changes made
    /// between the initial scan and the start of the monitor). Files whose stamp vouches for
    /// the stored hash are not re-read.
    pub fn rescan(&self) -> Result<Vec<Change>, FileError> {
        let mut next = BTreeMap::new();
        for root in self.roots.iter() {
            let top = Located {
                root,
                rel: Default::default(),
                name: root.name.to_string_lossy().into_owned(),
            };
            for found in scan::walk(&top, &self.ignore, &self.limits)? {
                if next.contains_key(&found.name) {
                    continue; // nested roots list a file twice
                }
                if next.len() >= self.limits.max_files {
                    return Err(self.too_many());
                }
                let kept = self.read().get(&found.name).and_then(|slot| {
                    let stamp = slot.stamp?;
                    (scan::stamp_now(&found.real()) == Some(stamp)).then(|| Slot {
                        entry: slot.entry.clone(),
                        stamp: Some(stamp),
                    })
                });
                let slot = match kept {
                    Some(slot) => slot,
                    None => match self.hash_found(&found) {
                        Ok(slot) => slot,
                        // Gone or replaced since the walk listed it: not attested.
                        Err(FileError::NotFound { .. } | FileError::NotRegularFile { .. }) => {
                            continue
                        }
                        Err(e) => return Err(e),
                    },
                };
                next.insert(found.name.clone(), slot);
            }
        }
        let mut entries = self.write();
        let gone: Vec<String> = entries
            .keys()
            .filter(|k| !next.contains_key(*k))
            .cloned()
            .collect();
        let mut changes: Vec<Change> = next
            .iter()
            .filter_map(|(k, new)| {
                let same = entries.get(k).is_some_and(|old| old.entry == new.entry);
                (!same).then(|| Change::Put(new.entry.clone()))
            })
            .collect();
        *entries = next;
        drop(entries);
        for path in gone {
            changes.push(Change::Removed(self.tombstone(path)?));
        }
        self.bump_if(&changes);
        Ok(changes)
    }

    /// A counter bumped whenever the store changes (not a generation: one change of many
    /// files bumps it once).
    pub fn version(&self) -> u64 {
        *self.version.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until [`FileStore::version`] reaches `at_least` or `timeout` passes; returns
    /// the version then (less than `at_least` on timeout).
    pub fn wait_for_version(&self, at_least: u64, timeout: Duration) -> u64 {
        let guard = self.version.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |g| *g < at_least)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    /// The stored entry for a served name, if any (for the publisher).
    pub(crate) fn get(&self, name: &str) -> Option<FileEntry> {
        self.read().get(name).map(|s| s.entry.clone())
    }

    /// The real paths of the roots (for the watcher).
    pub(crate) fn real_roots(&self) -> Vec<std::path::PathBuf> {
        self.roots.iter().map(|r| r.real.clone()).collect()
    }

    fn sync_dir(&self, loc: &Located<'_>) -> Result<Vec<Change>, FileError> {
        let found = scan::walk(loc, &self.ignore, &self.limits)?;
        let prefix = dir_prefix(&loc.name);
        let mut changes: Vec<Change> = {
            let listed: std::collections::BTreeSet<&str> =
                found.iter().map(|f| f.name.as_str()).collect();
            let mut entries = self.write();
            let gone: Vec<String> = entries
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter(|(k, _)| !listed.contains(k.as_str()))
                .map(|(k, _)| k.clone())
                .collect();
            for k in &gone {
                entries.remove(k);
            }
            drop(entries);
            gone.into_iter()
                .map(|path| self.tombstone(path).map(Change::Removed))
                .collect::<Result<_, _>>()?
        };
        for f in &found {
            match scan::hash_file(f, &self.roots) {
                Ok(hashed) => changes.extend(self.put(&f.name, hashed)?),
                Err(FileError::NotFound { .. } | FileError::NotRegularFile { .. }) => {
                    changes.extend(self.drop_under(&f.name)?)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(changes)
    }

    /// Stores a freshly hashed file; a new proof only when the hash changed.
    fn put(&self, name: &str, hashed: Hashed) -> Result<Option<Change>, FileError> {
        let old = self.read().get(name).map(|s| s.entry.clone());
        let (entry, change) = match old {
            Some(old) if old.hash == hashed.hash => (old, None),
            old => {
                if old.is_none() && self.len() >= self.limits.max_files {
                    return Err(self.too_many());
                }
                let entry = self.prove(name, hashed.hash)?;
                (entry.clone(), Some(Change::Put(entry)))
            }
        };
        let slot = Slot {
            entry,
            stamp: hashed.stamp,
        };
        self.write().insert(name.to_string(), slot);
        Ok(change)
    }

    fn hash_found(&self, found: &Located<'_>) -> Result<Slot, FileError> {
        let hashed = scan::hash_file(found, &self.roots)?;
        let entry = match self.read().get(&found.name) {
            Some(old) if old.entry.hash == hashed.hash => old.entry.clone(),
            _ => self.prove(&found.name, hashed.hash)?,
        };
        Ok(Slot {
            entry,
            stamp: hashed.stamp,
        })
    }

    /// The next generation. Only the monitor's thread stores entries, so the entries (and
    /// tombstones) of one path get increasing generations in the order it applies them.
    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn prove(&self, name: &str, hash: [u8; 64]) -> Result<FileEntry, FileError> {
        let claim = FileClaim {
            path: name.to_string(),
            sha3_512: hash,
            generation: self.next_generation(),
            epoch: self.epoch,
        };
        let proof = prove_file(&self.key, &claim).map_err(|source| FileError::Vrf {
            path: name.to_string(),
            source,
        })?;
        Ok(FileEntry {
            path: claim.path,
            hash,
            generation: claim.generation,
            proof,
        })
    }

    fn tombstone(&self, path: String) -> Result<Tombstone, FileError> {
        let claim = DeleteClaim {
            path,
            generation: self.next_generation(),
            epoch: self.epoch,
        };
        match prove_delete(&self.key, &claim) {
            Ok(proof) => Ok(Tombstone {
                path: claim.path,
                generation: claim.generation,
                proof,
            }),
            Err(source) => Err(FileError::Vrf {
                path: claim.path,
                source,
            }),
        }
    }

    /// Removes the entries at and under `name`; a tombstone for each.
    fn drop_under(&self, name: &str) -> Result<Vec<Change>, FileError> {
        let prefix = dir_prefix(name);
        let mut entries = self.write();
        let mut gone: Vec<String> = entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        if entries.contains_key(name) {
            gone.push(name.to_string());
        }
        for k in &gone {
            entries.remove(k);
        }
        drop(entries);
        gone.into_iter()
            .map(|path| self.tombstone(path).map(Change::Removed))
            .collect()
    }

    fn bump_if(&self, changes: &[Change]) {
        if changes.is_empty() {
            return;
        }
        let mut v = self.version.lock().unwrap_or_else(PoisonError::into_inner);
        *v += 1;
        self.changed.notify_all();
    }

    fn locate_fs(&self, fs_path: &Path) -> Result<Located<'_>, FileError> {
        self.roots
            .locate_fs(fs_path)
            .ok_or_else(|| self.outside(fs_path))
    }

    fn outside(&self, fs_path: &Path) -> FileError {
        FileError::OutsideRoots {
            path: fs_path.display().to_string(),
            reason: "not under any root",
            roots: self.roots.describe(),
        }
    }

    fn ignored(&self, loc: &Located<'_>) -> FileError {
        FileError::Ignored {
            path: loc.name.clone(),
            ignore_file: self.ignore.file.clone(),
        }
    }

    fn too_many(&self) -> FileError {
        FileError::TooMany {
            what: "files",
            max: self.limits.max_files,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Slot>> {
        // A panic elsewhere cannot leave the map half-updated (every write is one insert,
        // remove or swap), so a poisoned lock is still consistent.
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Slot>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `name` as a prefix of the paths under it (`/` stays `/`).
fn dir_prefix(name: &str) -> String {
    if name.ends_with('/') {
        name.to_string()
    } else {
        format!("{name}/")
    }
}
