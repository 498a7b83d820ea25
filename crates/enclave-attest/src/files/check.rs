//! The reader's side of the bucket: [`RecordChecker`] accepts a record only if its proof
//! verifies under the attested VRF key, it is of the current boot, and it is not older than
//! what the reader already accepted for the path. Anyone with publish rights on the bucket (or
//! a relay, were TLS off) can write a value or a bare delete marker; none of that passes.

use std::collections::HashMap;

use super::record::{kv_key, FileRecord, RecordOp, STARTUP_DOCUMENT_KEY, VRF_SUITE};
use crate::binding::{Binding, BindingError};
use crate::vrf::{self, DeleteClaim, Epoch, FileClaim, Proof, PublicKey, VrfError};
use crate::{Report, VerifyOptions};

/// A bucket entry as a reader gets it (the last message on the key's subject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvEntry {
    /// A value.
    Value(Vec<u8>),
    /// A bare delete marker (`KV-Operation: DEL`): unsigned, so never trusted.
    Delete,
    /// A bare purge marker (`KV-Operation: PURGE`): unsigned, so never trusted.
    Purge,
}

/// What a checked record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The file at `path` had this hash at `generation`.
    File {
        /// The path.
        path: String,
        /// SHA3-512 of its contents.
        sha3_512: [u8; 64],
        /// The record's generation.
        generation: u64,
    },
    /// Nothing was attested at `path` any more at `generation` (a signed tombstone).
    Removed {
        /// The path.
        path: String,
        /// The tombstone's generation.
        generation: u64,
    },
}

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The start-up document does not verify.
    #[error("start-up document: {0}")]
    Document(#[source] crate::Error),
    /// The start-up document's user_data is not a binding.
    #[error("start-up document: {0}")]
    Binding(#[source] BindingError),
    /// The start-up document binds no VRF key: that enclave does not attest files.
    #[error("the start-up document binds no VRF key; that enclave does not attest files")]
    NoVrfKey,
    /// The key holds the start-up document, not a record.
    #[error("{STARTUP_DOCUMENT_KEY} holds the start-up document, not a file record")]
    NotARecord,
    /// A bare KV delete or purge marker: anyone with publish rights can write one.
    #[error("key {key}: a bare KV {marker} marker, not a signed tombstone; refused")]
    UnsignedDelete {
        /// The KV key.
        key: String,
        /// "delete" or "purge".
        marker: &'static str,
    },
    /// The value is not a record.
    #[error("key {key}: not a file record: {source}")]
    Malformed {
        /// The KV key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A field has the wrong form.
    #[error("key {key}: field {field} {reason}")]
    Field {
        /// The KV key.
        key: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The record is for a path whose key is not this one.
    #[error("key {key} holds a record for {path:?}, whose key is another")]
    WrongKey {
        /// The KV key.
        key: String,
        /// The path in the record.
        path: String,
    },
    /// The record names a suite other than [`VRF_SUITE`].
    #[error("record for {path:?} names the suite {suite:?}, not {VRF_SUITE}")]
    Suite {
        /// The path.
        path: String,
        /// The suite named.
        suite: String,
    },
    /// The record names another VRF key than the attested one.
    #[error("record for {path:?} names the VRF key {named}, not the attested one")]
    OtherKey {
        /// The path.
        path: String,
        /// The key named, hex.
        named: String,
    },
    /// The record is of another boot than the one the reader verified.
    #[error("record for {path:?} is of another boot (epoch {record}, current {current}); it does not describe the running enclave")]
    OtherEpoch {
        /// The path.
        path: String,
        /// The record's epoch.
        record: Epoch,
        /// The reader's.
        current: Epoch,
    },
    /// The record is older than one the reader already accepted for the path: a replay.
    #[error("record for {path:?} has generation {generation}, older than the {seen} already accepted; a replayed record")]
    Replay {
        /// The path.
        path: String,
        /// The record's generation.
        generation: u64,
        /// The highest generation accepted for the path.
        seen: u64,
    },
    /// The VRF proof does not verify for what the record says.
    #[error("record for {path:?}: {source}")]
    Proof {
        /// The path.
        path: String,
        /// The VRF error.
        #[source]
        source: VrfError,
    },
}

/// Checks records of one boot of one enclave, remembering the highest generation accepted per
/// path. One checker per epoch: when the enclave restarts, make a new one from the new
/// start-up document.
#[derive(Debug, Clone)]
pub struct RecordChecker {
    vrf_public_key: PublicKey,
    epoch: Epoch,
    seen: HashMap<String, u64>,
}

impl RecordChecker {
    /// Records proven under `vrf_public_key` in boot `epoch` (both from a start-up document
    /// the reader verified, or from an attested connection to the enclave).
    pub fn new(vrf_public_key: PublicKey, epoch: Epoch) -> RecordChecker {
        RecordChecker {
            vrf_public_key,
            epoch,
            seen: HashMap::new(),
        }
    }

    /// Verifies the start-up document (raw COSE_Sign1, as stored under
    /// [`STARTUP_DOCUMENT_KEY`]) with `options` (roots, PCR expectations, time) and checks
    /// records against the VRF key it binds and its epoch.
    ///
    /// The document was signed when the enclave started: on Nitro its leaf certificate lasts
    /// hours, so for an older document set `options.at` to its timestamp. Its freshness is not
    /// what this proves (a document carries no nonce here); it proves which enclave holds the
    /// key. Whether it is the *running* boot's is for the reader to know: fetch it over
    /// attested TLS (`AttestedClient::file_epoch`), or compare timestamps.
    pub fn from_startup_document(
        document: &[u8],
        options: &VerifyOptions,
    ) -> Result<(RecordChecker, Report), RecordError> {
        let report = crate::verify(document, options).map_err(RecordError::Document)?;
        let user_data = report
            .user_data
            .as_ref()
            .ok_or(RecordError::Binding(BindingError::Missing))?;
        let binding = Binding::decode(user_data).map_err(RecordError::Binding)?;
        let key = binding.vrf_public_key.ok_or(RecordError::NoVrfKey)?;
        let raw = crate::decode_input(document).map_err(RecordError::Document)?;
        Ok((
            RecordChecker::new(key, Epoch::of_startup_document(&raw)),
            report,
        ))
    }

    /// The boot this checker accepts.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The VRF key records must verify under.
    pub fn vrf_public_key(&self) -> PublicKey {
        self.vrf_public_key
    }

    /// The highest generation accepted for `path`.
    pub fn seen(&self, path: &str) -> Option<u64> {
        self.seen.get(path).copied()
    }

    /// Checks the entry read under `key`; on success remembers its generation for the path.
    /// A record of the same generation as the last accepted is accepted again (a re-read);
    /// a lower one is a [`RecordError::Replay`].
    pub fn check(&mut self, key: &str, entry: &KvEntry) -> Result<Checked, RecordError> {
        let value = match entry {
            KvEntry::Value(value) => value,
            KvEntry::Delete => return Err(unsigned(key, "delete")),
            KvEntry::Purge => return Err(unsigned(key, "purge")),
        };
        if key == STARTUP_DOCUMENT_KEY {
            return Err(RecordError::NotARecord);
        }
        let record: FileRecord =
            serde_json::from_slice(value).map_err(|source| RecordError::Malformed {
                key: key.to_string(),
                source,
            })?;
        let path = record.path.clone();
        if kv_key(&path) != key {
            return Err(RecordError::WrongKey {
                key: key.to_string(),
                path,
            });
        }
        if record.suite != VRF_SUITE {
            return Err(RecordError::Suite {
                path,
                suite: record.suite.chars().take(64).collect(),
            });
        }
        let field = |field, reason| RecordError::Field {
            key: key.to_string(),
            field,
            reason,
        };
        let named: [u8; 32] = fixed_hex(&record.vrf_public_key)
            .ok_or_else(|| field("vrf_public_key", "is not 32 bytes of hex"))?;
        if named != self.vrf_public_key.to_bytes() {
            return Err(RecordError::OtherKey {
                path,
                named: hex::encode(named),
            });
        }
        let epoch = Epoch::from_hex(&record.epoch)
            .ok_or_else(|| field("epoch", "is not 32 bytes of hex"))?;
        if epoch != self.epoch {
            return Err(RecordError::OtherEpoch {
                path,
                record: epoch,
                current: self.epoch,
            });
        }
        if let Some(&seen) = self.seen.get(&path) {
            if record.generation < seen {
                return Err(RecordError::Replay {
                    path,
                    generation: record.generation,
                    seen,
                });
            }
        }
        let proof = fixed_hex::<{ vrf::PROOF_LEN }>(&record.proof)
            .map(Proof)
            .ok_or_else(|| field("proof", "is not 80 bytes of hex"))?;
        let generation = record.generation;
        let proven = match (record.op, &record.sha3_512) {
            (RecordOp::Put, Some(hash)) => {
                let sha3_512 =
                    fixed_hex(hash).ok_or_else(|| field("sha3_512", "is not 64 bytes of hex"))?;
                let claim = FileClaim {
                    path: path.clone(),
                    sha3_512,
                    generation,
                    epoch,
                };
                vrf::verify_file(&self.vrf_public_key, &claim, &proof).map(|_| Checked::File {
                    path: path.clone(),
                    sha3_512,
                    generation,
                })
            }
            (RecordOp::Delete, None) => {
                let claim = DeleteClaim {
                    path: path.clone(),
                    generation,
                    epoch,
                };
                vrf::verify_delete(&self.vrf_public_key, &claim, &proof).map(|_| Checked::Removed {
                    path: path.clone(),
                    generation,
                })
            }
            (RecordOp::Put, None) => return Err(field("sha3_512", "is missing from a put")),
            (RecordOp::Delete, Some(_)) => {
                return Err(field("sha3_512", "is not allowed in a delete"))
            }
        };
        let checked = proven.map_err(|source| RecordError::Proof {
            path: path.clone(),
            source,
        })?;
        self.seen.insert(path, generation);
        Ok(checked)
    }
}

fn unsigned(key: &str, marker: &'static str) -> RecordError {
    RecordError::UnsignedDelete {
        key: key.to_string(),
        marker,
    }
}

fn fixed_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
