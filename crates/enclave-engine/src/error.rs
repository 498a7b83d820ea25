//! The engine's error type.

use std::io;
use std::path::PathBuf;

/// Shorthand.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Why an engine operation failed. Every message says what to do when there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file operation failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A JSON file could not be read or written.
    #[error("{}: {error}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why.
        error: serde_json::Error,
    },
    /// The EIF is missing, unreadable or corrupt.
    #[error("{}: {error}", path.display())]
    Eif {
        /// The EIF.
        path: PathBuf,
        /// Why.
        error: enclave_image::eif::ReadError,
    },
    /// No enclave has this name or id prefix.
    #[error("no such enclave: {0} (see `enclave-ctl ps -a`)")]
    NotFound(String),
    /// No image the engine built has this id prefix.
    #[error("no such image: {0} (see GET /v1/images)")]
    NoSuchImage(String),
    /// An id prefix matches several enclaves.
    #[error("{query:?} matches several enclaves ({}); give more of the id or the name", matches.join(", "))]
    Ambiguous {
        /// What was asked.
        query: String,
        /// The matching names.
        matches: Vec<String>,
    },
    /// The name is taken.
    #[error("the name {name:?} is already used by enclave {id}; remove it (`enclave-ctl rm {name}`) or choose another name")]
    NameInUse {
        /// The name.
        name: String,
        /// The enclave that has it (short id).
        id: String,
    },
    /// The name is not acceptable.
    #[error("invalid enclave name {0:?}: use 1 to 64 of [a-zA-Z0-9_.-], starting with a letter or digit")]
    InvalidName(String),
    /// Bad argument.
    #[error("{0}")]
    Invalid(String),
    /// The memory asked for cannot hold the EIF.
    #[error("{requested} MiB of memory is too small for this EIF ({eif_bytes} bytes): give --memory {needed} or more")]
    MemoryTooSmall {
        /// Asked.
        requested: u64,
        /// Needed.
        needed: u64,
        /// EIF size.
        eif_bytes: u64,
    },
    /// A program the backend needs is not installed.
    #[error("{tool} not found: {hint}")]
    MissingTool {
        /// The program.
        tool: String,
        /// How to get it.
        hint: String,
    },
    /// Starting a process failed.
    #[error("cannot start {what}: {error}")]
    Spawn {
        /// The program.
        what: String,
        /// Why.
        error: io::Error,
    },
    /// A backend failed (message already actionable).
    #[error("{0}")]
    Backend(String),
    /// The enclave did not send its heartbeat in time.
    #[error(
        "the enclave sent no boot heartbeat within {secs} s; last console lines:\n{console_tail}"
    )]
    BootTimeout {
        /// The timeout.
        secs: u64,
        /// The end of the console.
        console_tail: String,
    },
    /// Every CID of the range is taken.
    #[error("no free vsock CID left for a new enclave")]
    NoCidAvailable,
    /// The enclave is running and the operation needs it stopped.
    #[error("enclave {0} is running: stop it first, or use -f")]
    Running(String),
    /// The operation needs the enclave running (`kill`).
    #[error("enclave {0} is not running")]
    NotRunning(String),
    /// The console needs debug mode.
    #[error("enclave {0} was not started with --debug-mode: its console is not available")]
    NotDebug(String),
    /// A system call failed.
    #[error("{what}: {error}")]
    Sys {
        /// What was done.
        what: String,
        /// The errno.
        error: nix::Error,
    },
    /// Something timed out.
    #[error("{0}")]
    Timeout(String),
    /// A helper thread could not be started or failed.
    #[error("helper thread: {0}")]
    Thread(#[source] io::Error),
    /// The kernel gave no random bytes.
    #[error("cannot get random bytes from the kernel: {0}")]
    Random(#[source] getrandom::Error),
    /// The state directory (or a directory in it) is not one only this user controls.
    #[error(transparent)]
    StateDir(#[from] crate::private_dir::StateDirError),
    /// The EIF about to boot is not the one measured at `run`.
    #[error("refusing to boot {}: it is not the EIF measured at `run` (PCR0 expected {expected_pcr0}, found {found_pcr0}; {} differ{}): the pinned copy was modified; remove the enclave and run the EIF again", path.display(), differing.join(", "), if differing.len() == 1 { "s" } else { "" })]
    MeasurementMismatch {
        /// The EIF (the pinned copy).
        path: PathBuf,
        /// The recorded PCR0.
        expected_pcr0: String,
        /// PCR0 of the bytes about to boot.
        found_pcr0: String,
        /// Which of PCR0, PCR1, PCR2 differ.
        differing: Vec<String>,
    },
    /// The pinned EIF cannot be read or parsed any more.
    #[error("refusing to boot {}: the pinned EIF cannot be read ({error}); it was modified or removed: remove the enclave and run the EIF again", path.display())]
    PinnedUnreadable {
        /// The pinned copy.
        path: PathBuf,
        /// Why.
        #[source]
        error: enclave_image::eif::ReadError,
    },
    /// The EIF could not be copied into the enclave's directory.
    #[error("cannot copy {} to {}, the private copy the enclave boots: {source}; the state directory needs room for one copy of the EIF per enclave (another one can be chosen with --state-dir)", eif.display(), target.display())]
    Pin {
        /// The EIF given to `run`.
        eif: PathBuf,
        /// The copy.
        target: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The record lacks a measurement to check the EIF against.
    #[error(
        "the enclave's record has no {0} to check its EIF against; remove it and run the EIF again"
    )]
    MissingMeasurement(String),
}

impl EngineError {
    /// An [`EngineError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, error: io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            error,
        }
    }

    /// Whether this error refuses a boot for good: booting again would be refused again, so
    /// the restart policy does not apply.
    pub fn refuses_boot(&self) -> bool {
        matches!(
            self,
            EngineError::MeasurementMismatch { .. }
                | EngineError::MissingMeasurement(_)
                | EngineError::PinnedUnreadable { .. }
        )
    }

    /// An [`EngineError::Sys`].
    pub fn sys(what: impl Into<String>, error: nix::Error) -> Self {
        EngineError::Sys {
            what: what.into(),
            error,
        }
    }
}
