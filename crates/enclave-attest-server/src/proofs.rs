//! What the server needs of file attestation: a file's hash and VRF proof by path, the VRF
//! public key (bound into every document's user_data) and the epoch its proofs name. [`FileStore`] is the implementation;
//! the trait lets tests stand in a store that misbehaves (a proof the client must refuse).

use crate::files::{FileEntry, FileError, FileStore};
use enclave_attest::vrf;

/// Hashes and proofs by path. Blocking: the server calls it on a blocking thread.
pub trait FileProofs: Send + Sync {
    /// The entry for the file at `path` (absolute, under one of the spec's roots).
    fn lookup(&self, path: &str) -> Result<FileEntry, FileError>;
    /// The key the proofs verify under.
    fn vrf_public_key(&self) -> vrf::PublicKey;
    /// The boot the proofs name (the hash of the start-up document).
    fn epoch(&self) -> vrf::Epoch;
}

impl FileProofs for FileStore {
    fn lookup(&self, path: &str) -> Result<FileEntry, FileError> {
        FileStore::lookup(self, path)
    }

    fn vrf_public_key(&self) -> vrf::PublicKey {
        FileStore::vrf_public_key(self)
    }

    fn epoch(&self) -> vrf::Epoch {
        FileStore::epoch(self)
    }
}
