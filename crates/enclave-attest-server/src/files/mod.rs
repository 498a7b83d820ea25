//! File attestation inside the enclave: SHA3-512 hashes of the files under the spec's roots,
//! each proven with the enclave's VRF key (see [`enclave_attest::vrf::file`]), published for
//! readers who check them with [`enclave_attest::files::RecordChecker`].
//!
//! * [`FileStore`] scans the roots once at start (regular files only, symbolic links never
//!   followed, paths matched by the ignore file skipped) and answers [`FileStore::lookup`] for
//!   an absolute path with a [`FileEntry`]: the path, its SHA3-512, its generation and the
//!   ECVRF proof over the [`enclave_attest::vrf::FileClaim`] `(epoch, generation, path, hash)`.
//!   Proofs are computed when an entry is (re)hashed, never at lookup, so a lookup of a known
//!   file costs a map read.
//! * [`FileMonitor`] keeps the store current with a debounced `notify` watcher and, given a
//!   [`NatsPublisher`], writes every change to a NATS JetStream key-value bucket (key
//!   [`kv_key`], value [`FileRecord`] JSON; a removed file gets a signed tombstone record,
//!   never a bare KV delete), over TLS with credentials when the spec says so
//!   ([`NatsOptions::from_spec`]).
//!
//! The records' format and the reader's check are the verifier's ([`enclave_attest::files`]);
//! what the store hands out is re-exported here.
//!
//! Threads, not async: hashing is blocking file I/O, and the monitor and publisher run on
//! their own threads. An async caller should use `tokio::task::spawn_blocking` for
//! [`FileStore::lookup`] (a lookup of a path not yet in the store may hash a file).

pub mod fuzzing;
mod kv;
mod monitor;
mod nats;
mod path;
mod scan;
mod store;

use std::path::PathBuf;

pub use enclave_attest::files::{
    kv_key, Change, FileEntry, FileRecord, RecordOp, Tombstone, STARTUP_DOCUMENT_KEY, VRF_SUITE,
};
pub use kv::NatsPublisher;
pub use monitor::FileMonitor;
pub use nats::{NKey, NKeyRole, NatsAuth, NatsError, NatsOptions, NatsTls};
pub use store::{FileStore, Limits};

/// Why a file could not be attested, or the store or monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path is relative, has a `..` component, is not under any root, or a symbolic link
    /// on the way leads out of the roots.
    #[error("{path:?} is outside the attested roots ({reason}); ask for an absolute path, without `..`, to a file under one of: {roots}")]
    OutsideRoots {
        /// The path as given.
        path: String,
        /// What about it is outside.
        reason: &'static str,
        /// The roots, comma-separated.
        roots: String,
    },
    /// The path is longer than [`Limits::max_path_len`] or is not valid text.
    #[error(
        "path is not usable ({reason}); ask for a UTF-8 path of at most {max} bytes without NUL"
    )]
    InvalidPath {
        /// What is wrong with it.
        reason: String,
        /// The length limit in bytes.
        max: usize,
    },
    /// The ignore file excludes the path.
    #[error("{path:?} is excluded by the ignore file {ignore_file}; it is not attested (change the ignore file and restart to attest it)")]
    Ignored {
        /// The path as normalised.
        path: String,
        /// The ignore file named in the spec.
        ignore_file: String,
    },
    /// Nothing is at the path.
    #[error("{path:?} does not exist under the attested roots; check the path (files are attested as they are now, not as they were)")]
    NotFound {
        /// The path as normalised.
        path: String,
    },
    /// Something is at the path, but it is not a regular file.
    #[error("{path:?} is a {kind}, not a regular file; only regular files are attested (ask for the file itself, not a directory or link to it)")]
    NotRegularFile {
        /// The path as normalised.
        path: String,
        /// "directory", "symbolic link", ...
        kind: &'static str,
    },
    /// Attesting one more file would exceed [`Limits::max_files`] (or the walk met more than
    /// [`Limits::max_dirs`] directories).
    #[error("more than {max} {what} under the attested roots; list fewer roots or exclude paths in the ignore file")]
    TooMany {
        /// "files" or "directories".
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A root or the ignore file in the spec is unusable.
    #[error("file attestation spec: {0}; fix attestation.files in the spec")]
    Spec(String),
    /// Reading a file or directory failed.
    #[error("reading {path}: {source}; check that the enclave can read it")]
    Io {
        /// The filesystem path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Proving a claim failed (in practice unreachable: the path length is bounded and
    /// encode-to-curve fails with probability 2^-256).
    #[error("proving {path:?}: {source}")]
    Vrf {
        /// The path as normalised.
        path: String,
        /// The underlying error.
        #[source]
        source: enclave_attest::vrf::VrfError,
    },
    /// The filesystem watcher could not start or watch a root.
    #[error("file monitor: {0}; check inotify limits (fs.inotify.max_user_watches) and that the roots exist")]
    Watch(String),
}

impl FileError {
    /// True when the request itself is at fault (a client error, HTTP 4xx), false when the
    /// enclave is (HTTP 5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            FileError::OutsideRoots { .. }
                | FileError::InvalidPath { .. }
                | FileError::Ignored { .. }
                | FileError::NotFound { .. }
                | FileError::NotRegularFile { .. }
        )
    }
}
