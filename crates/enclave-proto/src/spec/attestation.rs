//! The `attestation` section of the spec: the in-enclave attestation server and file attestation.
//!
//! ```yaml
//! attestation:
//!   server:
//!     port: 8443                  # HTTPS inside the enclave; list it under `ingress` to reach it
//!     client_ca: ["-----BEGIN CERTIFICATE-----\n…"]   # optional: require client certificates
//!   files:
//!     roots: [/srv/data]          # files whose SHA3-512 hashes are served with VRF proofs
//!     ignore_file: /srv/data/.attestignore   # optional, gitignore syntax
//!     nats: {url: "nats://10.0.0.5:4222", bucket: file-hashes}   # optional publication
//! ```
//!
//! Measured like the rest of the spec: which CAs may connect and which files are attested is
//! part of PCR2.

use serde::{Deserialize, Serialize};

use super::SpecError;

/// The attestation section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationSpec {
    /// Run the HTTPS attestation server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<AttestationServerSpec>,
    /// Attest files under these roots (served by the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FileAttestationSpec>,
}

/// The HTTPS attestation server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationServerSpec {
    /// TCP port inside the enclave.
    #[serde(default = "default_server_port")]
    pub port: u16,
    /// PEM certificates of the CAs whose client certificates are accepted; empty = no mTLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_ca: Vec<String>,
}

fn default_server_port() -> u16 {
    8443
}

/// File attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAttestationSpec {
    /// Absolute directories whose files are hashed and proven.
    pub roots: Vec<String>,
    /// A gitignore-style file of paths not to attest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_file: Option<String>,
    /// Publish hashes and proofs to a NATS JetStream key-value bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSpec>,
}

/// A NATS JetStream key-value bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSpec {
    /// `nats://HOST:PORT` (reached through egress).
    pub url: String,
    /// The bucket (created when missing).
    pub bucket: String,
}

impl AttestationSpec {
    pub(super) fn validate(&self) -> Result<(), SpecError> {
        let invalid = |m: String| Err(SpecError::Invalid(format!("attestation: {m}")));
        if let Some(s) = &self.server {
            if s.port == 0 {
                return invalid("server.port 0 is not a port".into());
            }
            if let Some(bad) = s
                .client_ca
                .iter()
                .find(|pem| !pem.contains("-----BEGIN CERTIFICATE-----"))
            {
                let head: String = bad.chars().take(30).collect();
                return invalid(format!(
                    "server.client_ca entries are PEM certificates; {head:?}… is not one"
                ));
            }
        }
        if let Some(f) = &self.files {
            if self.server.is_none() {
                return invalid(
                    "files are attested by the attestation server; add `server: {}`".into(),
                );
            }
            if f.roots.is_empty() {
                return invalid("files.roots is empty".into());
            }
            for root in f.roots.iter().chain(&f.ignore_file) {
                if !root.starts_with('/') || root.split('/').any(|c| c == "..") {
                    return invalid(format!("{root:?} must be an absolute path without `..`"));
                }
            }
            if let Some(n) = &f.nats {
                if !n.url.starts_with("nats://") {
                    return invalid(format!(
                        "files.nats.url {:?} must start with nats://",
                        n.url
                    ));
                }
                let ok = !n.bucket.is_empty()
                    && n.bucket
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return invalid(format!(
                        "files.nats.bucket {:?}: letters, digits, '-' and '_' only",
                        n.bucket
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::EnclaveSpec;

    #[test]
    fn attestation_section_parses_with_defaults() {
        let spec = EnclaveSpec::from_yaml(
            "attestation:\n  server: {}\n  files:\n    roots: [/srv]\n    nats: {url: \"nats://127.0.0.1:4222\", bucket: hashes}\n",
        )
        .unwrap();
        let a = spec.attestation.unwrap();
        assert_eq!(a.server.unwrap().port, 8443);
        assert_eq!(a.files.unwrap().roots, ["/srv"]);
    }

    #[test]
    fn attestation_errors() {
        let cases = [
            ("attestation:\n  server: {port: 0}\n", "port 0"),
            ("attestation:\n  server: {client_ca: [nope]}\n", "PEM"),
            ("attestation:\n  files: {roots: [/s]}\n", "add `server: {}`"),
            ("attestation:\n  server: {}\n  files: {roots: []}\n", "empty"),
            ("attestation:\n  server: {}\n  files: {roots: [srv]}\n", "absolute"),
            ("attestation:\n  server: {}\n  files: {roots: [/srv/../etc]}\n", "absolute"),
            ("attestation:\n  server: {}\n  files: {roots: [/s], nats: {url: \"http://x\", bucket: b}}\n", "nats://"),
            ("attestation:\n  server: {}\n  files: {roots: [/s], nats: {url: \"nats://x\", bucket: \"a.b\"}}\n", "bucket"),
            ("attestation:\n  sever: {}\n", "unknown field `sever`"),
        ];
        for (yaml, want) in cases {
            let err = EnclaveSpec::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(want), "{yaml:?}: {err}");
        }
    }
}
