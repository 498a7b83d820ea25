//! The optional config file: defaults for the host tools (backend, state directory, kernel
//! directories, vCPUs, memory) so that they need not be repeated on every command line.
//!
//! `/etc/enclave-engine/config.toml` first, then `$XDG_CONFIG_HOME/enclave-engine/config.toml`
//! (`~/.config/…`), a key of the second replacing the same key of the first. The file's values
//! only fill the `ENCLAVE_ENGINE_…` variables that are not set, so the order is: flag, variable,
//! user file, system file, built-in default; and the supervisor, started by `enclave-ctl run`,
//! inherits the result. Unknown keys are refused with their line, as in `enclave.yaml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The system-wide file.
pub const SYSTEM_FILE: &str = "/etc/enclave-engine/config.toml";

/// The variables the file's keys fill.
pub const ENV_BACKEND: &str = "ENCLAVE_ENGINE_BACKEND";
/// `state_dir`.
pub const ENV_STATE_DIR: &str = "ENCLAVE_ENGINE_STATE_DIR";
/// `cpus`.
pub const ENV_CPUS: &str = "ENCLAVE_ENGINE_CPUS";
/// `memory`.
pub const ENV_MEMORY: &str = "ENCLAVE_ENGINE_MEMORY";
/// `kernel_dir.emulated`.
pub const ENV_KERNEL_DIR_EMULATED: &str = "ENCLAVE_ENGINE_KERNEL_DIR_EMULATED";
/// `kernel_dir.nitro`.
pub const ENV_KERNEL_DIR_NITRO: &str = "ENCLAVE_ENGINE_KERNEL_DIR_NITRO";

/// The file's contents; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `run --backend`: auto, qemu or nitro.
    pub backend: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `run --cpus`.
    pub cpus: Option<u32>,
    /// `run --memory`, as on the command line (MiB, or with a suffix where `run` takes one).
    pub memory: Option<Memory>,
    /// `build --kernel-dir`, per kernel profile.
    #[serde(default)]
    pub kernel_dir: KernelDirs,
}

/// `memory`: a number of MiB, or a string as `run --memory` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Memory {
    /// MiB.
    Mib(u64),
    /// As written, e.g. `"2g"`.
    Text(String),
}

/// Kernel directories by profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelDirs {
    /// The `emulated` profile's directory.
    pub emulated: Option<PathBuf>,
    /// The `nitro` profile's directory.
    pub nitro: Option<PathBuf>,
}

/// Why the config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("{}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where (line and column).
        #[source]
        error: Box<toml::de::Error>,
    },
}

impl Config {
    /// Parses one file's text.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// Reads `path`; a missing file is an empty config, and so is one behind a directory we
    /// may not enter (`sudo -u nobody` keeps HOME=/root): we cannot know it is there. A file we
    /// can see but not read is an error.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    && std::fs::symlink_metadata(path).is_err() =>
            {
                Ok(Self::default())
            }
            Err(error) => Err(ConfigError::Read {
                path: path.to_owned(),
                error,
            }),
        }
    }

    /// `other`'s keys replace ours.
    pub fn overlay(mut self, other: Config) -> Self {
        self.backend = other.backend.or(self.backend);
        self.state_dir = other.state_dir.or(self.state_dir);
        self.cpus = other.cpus.or(self.cpus);
        self.memory = other.memory.or(self.memory);
        self.kernel_dir.emulated = other.kernel_dir.emulated.or(self.kernel_dir.emulated);
        self.kernel_dir.nitro = other.kernel_dir.nitro.or(self.kernel_dir.nitro);
        self
    }

    /// The system file, then the user's.
    pub fn load() -> Result<Self, ConfigError> {
        let system = Self::read(Path::new(SYSTEM_FILE))?;
        Ok(match user_file() {
            Some(path) => system.overlay(Self::read(&path)?),
            None => system,
        })
    }

    /// The variables this config sets, as (name, value), for keys that have a value.
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let memory = self.memory.as_ref().map(|m| match m {
            Memory::Mib(n) => n.to_string(),
            Memory::Text(s) => s.clone(),
        });
        [
            (ENV_BACKEND, self.backend.clone()),
            (ENV_STATE_DIR, path(&self.state_dir)),
            (ENV_CPUS, self.cpus.map(|c| c.to_string())),
            (ENV_MEMORY, memory),
            (ENV_KERNEL_DIR_EMULATED, path(&self.kernel_dir.emulated)),
            (ENV_KERNEL_DIR_NITRO, path(&self.kernel_dir.nitro)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }

    /// Sets the variables that are not already set. Call before any thread starts.
    pub fn export_defaults(&self) {
        for (name, value) in self.variables() {
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    }
}

/// `$XDG_CONFIG_HOME/enclave-engine/config.toml`, or `~/.config/…`.
pub fn user_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("enclave-engine/config.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_gives_every_variable() {
        let text = r#"
backend = "qemu"
state_dir = "/srv/enclaves"
cpus = 4
memory = "2g"
[kernel_dir]
emulated = "/opt/kernels/emulated"
nitro = "/usr/share/nitro_enclaves/blobs"
"#;
        let config = Config::parse(Path::new("c.toml"), text).unwrap();
        assert_eq!(
            config.variables(),
            [
                (ENV_BACKEND, "qemu".to_owned()),
                (ENV_STATE_DIR, "/srv/enclaves".to_owned()),
                (ENV_CPUS, "4".to_owned()),
                (ENV_MEMORY, "2g".to_owned()),
                (ENV_KERNEL_DIR_EMULATED, "/opt/kernels/emulated".to_owned()),
                (
                    ENV_KERNEL_DIR_NITRO,
                    "/usr/share/nitro_enclaves/blobs".to_owned()
                ),
            ]
        );
        let mib = Config::parse(Path::new("c.toml"), "memory = 512").unwrap();
        assert_eq!(mib.variables(), [(ENV_MEMORY, "512".to_owned())]);
    }

    #[test]
    fn the_user_file_replaces_keys_of_the_system_file() {
        let system = Config::parse(Path::new("s"), "cpus = 2\nbackend = \"qemu\"").unwrap();
        let user = Config::parse(Path::new("u"), "cpus = 8").unwrap();
        let both = system.overlay(user);
        assert_eq!(both.cpus, Some(8));
        assert_eq!(both.backend.as_deref(), Some("qemu"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_with_the_line() {
        let err = Config::parse(Path::new("/etc/x.toml"), "cpus = 2\nmemroy = 512").unwrap_err();
        let text = format!("{err}");
        assert!(
            text.contains("/etc/x.toml") && text.contains("memroy"),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
        let err = Config::parse(Path::new("x"), "cpus = \"four\"").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        let err = Config::parse(Path::new("x"), "memory = [1]").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_is_empty_and_an_unreadable_one_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::read(&dir.path().join("none.toml")).unwrap(),
            Config::default()
        );
        let err = Config::read(dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }
}
