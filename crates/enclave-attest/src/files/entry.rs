//! What the store holds and reports: a file's entry, a removed file's tombstone, and the
//! change that carries one or the other to the publisher.

use crate::vrf::{DeleteClaim, Epoch, FileClaim, Proof};

/// One attested file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The absolute path, as named under a spec root.
    pub path: String,
    /// SHA3-512 of the contents.
    pub hash: [u8; 64],
    /// The store's counter when the file was hashed with these contents.
    pub generation: u64,
    /// ECVRF proof over [`FileEntry::claim`], made when the file was hashed.
    pub proof: Proof,
}

impl FileEntry {
    /// The claim the proof is over in boot `epoch` ([`FileStore::epoch`]), for
    /// [`crate::vrf::verify_file`].
    pub fn claim(&self, epoch: Epoch) -> FileClaim {
        FileClaim {
            path: self.path.clone(),
            sha3_512: self.hash,
            generation: self.generation,
            epoch,
        }
    }
}

/// The signed removal of a file: what is published instead of a bare key-value delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// The path that no longer holds an attested file.
    pub path: String,
    /// The store's counter when the removal was seen.
    pub generation: u64,
    /// ECVRF proof over [`Tombstone::claim`].
    pub proof: Proof,
}

impl Tombstone {
    /// The claim the proof is over in boot `epoch`, for [`crate::vrf::verify_delete`].
    pub fn claim(&self, epoch: Epoch) -> DeleteClaim {
        DeleteClaim {
            path: self.path.clone(),
            generation: self.generation,
            epoch,
        }
    }
}

/// A change to the store, as the monitor publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A file appeared or its contents changed.
    Put(FileEntry),
    /// A file is gone (removed, renamed away, or no longer a regular file).
    Removed(Tombstone),
}

impl Change {
    /// The path the change is about.
    pub fn path(&self) -> &str {
        match self {
            Change::Put(e) => &e.path,
            Change::Removed(t) => &t.path,
        }
    }

    /// The generation of the change.
    pub fn generation(&self) -> u64 {
        match self {
            Change::Put(e) => e.generation,
            Change::Removed(t) => t.generation,
        }
    }
}
