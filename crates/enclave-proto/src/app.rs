//! The application configuration carried in the app ramdisk (`/enclave/app.json`).

use serde::{Deserialize, Serialize};

/// Version of the [`AppConfig`] format.
pub const APP_CONFIG_VERSION: u32 = 1;

/// What the image says to run, after the enclave spec's overrides were applied.
///
/// This is the OCI image config's `Entrypoint`, `Cmd`, `Env`, `WorkingDir` and `User`, with
/// the spec's `entrypoint`, `cmd`, `env`, `workdir` and `user` taking precedence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Format version, [`APP_CONFIG_VERSION`].
    pub version: u32,
    /// Entrypoint argv prefix (may be empty).
    pub entrypoint: Vec<String>,
    /// Arguments appended to the entrypoint (or the whole argv when the entrypoint is empty).
    pub cmd: Vec<String>,
    /// Environment as `KEY=VALUE` strings, in order; later entries win.
    pub env: Vec<String>,
    /// Working directory inside the rootfs.
    pub working_dir: String,
    /// `user[:group]` (names or numeric ids) the main service runs as; empty means root.
    pub user: String,
}

impl AppConfig {
    /// The argv of the main service: entrypoint followed by cmd.
    pub fn argv(&self) -> Vec<String> {
        self.entrypoint
            .iter()
            .chain(self.cmd.iter())
            .cloned()
            .collect()
    }
}
