//! What file attestation writes to the key-value bucket: one [`FileRecord`] per path under
//! [`kv_key`], and the start-up document under [`STARTUP_DOCUMENT_KEY`]. A record is either a
//! file (`"op": "put"`, its hash) or a signed tombstone (`"op": "delete"`); both carry the
//! generation and the epoch their VRF proof covers, so a reader can verify it offline and
//! tell a current record from an old one ([`super::RecordChecker`]).

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};

use super::{Change, FileEntry, Tombstone};
use crate::vrf::{Epoch, PublicKey};

/// The VRF suite named in every record (RFC 9381 section 5.5).
pub const VRF_SUITE: &str = "ECVRF-EDWARDS25519-SHA512-TAI";

/// The key of the attestation server's start-up document (raw COSE_Sign1 bytes) in the
/// bucket. It is never a path's key: those are base64url of a path starting with `/`, so they
/// start with `L`.
pub const STARTUP_DOCUMENT_KEY: &str = "startup-document";

/// The KV key of a file: its path's UTF-8 bytes in unpadded base64url (RFC 4648 section 5).
/// Keys must be single subject tokens; this alphabet (`A-Z a-z 0-9 - _`) always is, and the
/// encoding is reversible, so a reader can list the bucket and recover every path.
pub fn kv_key(path: &str) -> String {
    Base64UrlUnpadded::encode_string(path.as_bytes())
}

/// Whether a record says a file is there or is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordOp {
    /// The file at `path` has the hash `sha3_512`.
    Put,
    /// Nothing is attested at `path` any more (a signed tombstone).
    Delete,
}

/// The KV value of a path: everything a reader needs to verify it offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// A file, or a tombstone.
    pub op: RecordOp,
    /// The absolute path under a spec root.
    pub path: String,
    /// SHA3-512 of the contents, lowercase hex; only with `op: put`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha3_512: Option<String>,
    /// The enclave's change counter for this record (higher is newer, within one epoch).
    pub generation: u64,
    /// The boot: SHA-256 of the start-up document, lowercase hex.
    pub epoch: String,
    /// The 80-byte ECVRF proof over the file claim (or the delete claim), lowercase hex.
    pub proof: String,
    /// Always [`VRF_SUITE`].
    pub suite: String,
    /// The 32-byte VRF public key, lowercase hex (compare it with the attested one).
    pub vrf_public_key: String,
}

impl FileRecord {
    /// The record of `entry`, proven under `key` in boot `epoch`.
    pub fn put(entry: &FileEntry, epoch: Epoch, key: &PublicKey) -> FileRecord {
        FileRecord {
            op: RecordOp::Put,
            path: entry.path.clone(),
            sha3_512: Some(hex::encode(entry.hash)),
            generation: entry.generation,
            epoch: epoch.to_hex(),
            proof: hex::encode(entry.proof.to_bytes()),
            suite: VRF_SUITE.to_string(),
            vrf_public_key: hex::encode(key.to_bytes()),
        }
    }

    /// The tombstone record of `tombstone`.
    pub fn delete(tombstone: &Tombstone, epoch: Epoch, key: &PublicKey) -> FileRecord {
        FileRecord {
            op: RecordOp::Delete,
            path: tombstone.path.clone(),
            sha3_512: None,
            generation: tombstone.generation,
            epoch: epoch.to_hex(),
            proof: hex::encode(tombstone.proof.to_bytes()),
            suite: VRF_SUITE.to_string(),
            vrf_public_key: hex::encode(key.to_bytes()),
        }
    }

    /// The record that publishes `change`.
    pub fn of_change(change: &Change, epoch: Epoch, key: &PublicKey) -> FileRecord {
        match change {
            Change::Put(entry) => FileRecord::put(entry, epoch, key),
            Change::Removed(tombstone) => FileRecord::delete(tombstone, epoch, key),
        }
    }
}
