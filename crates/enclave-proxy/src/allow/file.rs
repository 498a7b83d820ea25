//! Reading allow-list files (YAML, host side only: behind the `yaml` feature, so the enclave
//! side of the proxies carries no YAML parser).

use std::path::{Path, PathBuf};

use enclave_spec::{EnclaveSpec, SpecError};

use super::AllowList;

/// Why an allow-list file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    /// The file could not be read.
    #[error("cannot read allow-list {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not parse or does not match the schema (the message names the field,
    /// line and column).
    #[error("{}invalid allow-list: {source}", in_file(path.as_deref()))]
    Yaml {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// Why.
        source: yaml_serde::Error,
    },
    /// The rules parse but break a rule of the spec (duplicate ports, host and cidr together,
    /// `allow_special` where it changes nothing).
    #[error("{}invalid allow-list: {message}", in_file(path.as_deref()))]
    Invalid {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
}

fn in_file(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl AllowList {
    /// Parses and validates an allow-list.
    pub fn from_yaml(text: &str) -> Result<Self, AllowListError> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates an allow-list file.
    pub fn load(path: &Path) -> Result<Self, AllowListError> {
        let text = std::fs::read_to_string(path).map_err(|source| AllowListError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, AllowListError> {
        let list: AllowList = if text.trim().is_empty() {
            AllowList::default()
        } else {
            yaml_serde::from_str(text).map_err(|source| AllowListError::Yaml {
                path: path.map(Path::to_owned),
                source,
            })?
        };
        // The spec's own validation, so a rule means the same in both files.
        let as_spec = EnclaveSpec {
            ingress: list.ingress.clone(),
            egress: list.egress.clone(),
            ..EnclaveSpec::default()
        };
        match as_spec.validate() {
            Ok(()) => Ok(list),
            Err(SpecError::Invalid(message)) => Err(AllowListError::Invalid {
                path: path.map(Path::to_owned),
                message,
            }),
            Err(SpecError::Yaml(source)) => Err(AllowListError::Yaml {
                path: path.map(Path::to_owned),
                source,
            }),
            // validate() reports what it finds as Invalid; a parse error cannot come from it.
            Err(other @ SpecError::Json(_)) => Err(AllowListError::Invalid {
                path: path.map(Path::to_owned),
                message: other.to_string(),
            }),
        }
    }
}
