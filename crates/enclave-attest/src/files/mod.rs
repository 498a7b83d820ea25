//! File attestation's records, as a relying party reads them: the attestation server (crate
//! `enclave-attest-server`) hashes the files under the spec's roots, proves each with the
//! enclave's VRF key (see [`crate::vrf::file`]) and publishes every change as a [`FileRecord`]
//! under [`kv_key`] in a NATS JetStream key-value bucket (a removed file gets a signed
//! tombstone record, never a bare KV delete).
//!
//! [`RecordChecker`] is the reader's side: a record counts only if its proof verifies under
//! the attested key, it is of the current boot (epoch) and not older than what the reader
//! already accepted for its path (generation). [`FileEntry`], [`Tombstone`] and [`Change`] are
//! what a record carries, shared with the server that makes them.

mod check;
mod entry;
pub mod fuzzing;
mod record;

pub use check::{Checked, KvEntry, RecordChecker, RecordError};
pub use entry::{Change, FileEntry, Tombstone};
pub use record::{kv_key, FileRecord, RecordOp, STARTUP_DOCUMENT_KEY, VRF_SUITE};
