//! The crate's typed errors.

use std::path::PathBuf;

/// Everything that can go wrong while booting the enclave.
///
/// Errors during boot are fatal (the enclave powers off after logging them); errors while
/// running services are logged and the service is treated as failed, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// enclave-init refuses to mount, switch root and power off anything but its own enclave.
    #[error("not running as PID 1 (pid {0}); enclave-init only runs as an enclave's init")]
    NotPid1(i32),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        source: nix::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The network the spec asks for (ingress, egress, DNS, netfilter) could not be set up.
    #[error("network: {0}")]
    Network(String),
    /// A configuration file is not valid JSON of the expected shape.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A configuration file parsed but is unusable.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why it is unusable.
        reason: String,
    },
    /// A `user[:group]` could not be resolved against the rootfs' /etc/passwd and /etc/group.
    #[error("user {spec:?}: {reason}")]
    User {
        /// The `user[:group]` string.
        spec: String,
        /// Why it does not resolve.
        reason: String,
    },
}

impl Error {
    /// Wraps an errno with a description of the failed call.
    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        Error::Sys {
            what: what.into(),
            source,
        }
    }

    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
