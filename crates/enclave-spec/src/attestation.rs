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
//!     nats:                       # optional publication to a JetStream key-value bucket
//!       url: nats://nats.internal:4222
//!       bucket: file-hashes
//!       tls:                      # required whenever credentials are set
//!         ca: "-----BEGIN CERTIFICATE-----\n…"   # or ca_file: /etc/nats/ca.pem (in the image)
//!         server_name: nats.internal             # default: the URL's host
//!       credentials: {kind: nkey, file: /run/enclave/secrets/nats.nk}
//! ```
//!
//! Measured like the rest of the spec: which CAs may connect, which files are attested and
//! where they are published is part of PCR2. NATS credentials are secrets, so the spec names
//! only their kind and a file under [`SECRETS_DIR`], delivered to the running enclave; a file
//! anywhere else would be in the image, which anyone holding the EIF can read.

use serde::{Deserialize, Serialize};

use super::SpecError;

/// The attestation section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// Where secrets delivered to the enclave at run time live (root-only, never in the image).
pub const SECRETS_DIR: &str = "/run/enclave/secrets";

/// A NATS JetStream key-value bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NatsSpec {
    /// `nats://HOST:PORT` (reached through egress).
    pub url: String,
    /// The bucket (created when missing).
    pub bucket: String,
    /// Talk TLS, trusting only this CA (no plain-text fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NatsTlsSpec>,
    /// Authenticate with credentials read from a run-time file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<NatsCredentialsSpec>,
}

/// TLS to the NATS server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NatsTlsSpec {
    /// PEM certificates of the CA(s) that sign the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Or: an absolute path, inside the image, to such a PEM file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The name the server's certificate must carry; default: the URL's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// NATS credentials: their kind, and the run-time file that holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct NatsCredentialsSpec {
    /// What the file holds.
    pub kind: NatsCredentialKind,
    /// An absolute path under [`SECRETS_DIR`].
    pub file: String,
}

/// What a NATS credentials file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NatsCredentialKind {
    /// A token (`auth_token`).
    Token,
    /// One line `USER:PASSWORD`.
    UserPassword,
    /// An NKey user seed (`SU…`).
    Nkey,
    /// A NATS credentials file (`.creds`, as `nsc` writes it): the user's JWT, which an
    /// account signed, and the user's NKey seed (decentralised auth, operator mode).
    Creds,
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
                n.validate()
                    .or_else(|m| invalid(format!("files.nats.{m}")))?;
            }
        }
        Ok(())
    }
}

impl NatsSpec {
    /// Checks the section; the error names the field after `files.nats.`.
    fn validate(&self) -> Result<(), String> {
        if !self.url.starts_with("nats://") {
            return Err(format!(
                "url {:?} must start with nats:// (TLS is set by files.nats.tls)",
                self.url
            ));
        }
        let ok = !self.bucket.is_empty()
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "bucket {:?}: letters, digits, '-' and '_' only",
                self.bucket
            ));
        }
        if let Some(tls) = &self.tls {
            match (&tls.ca, &tls.ca_file) {
                (Some(pem), None) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
                (Some(_), None) => return Err("tls.ca must be PEM certificates".into()),
                (None, Some(path)) if is_clean_absolute(path) => {}
                (None, Some(path)) => {
                    return Err(format!(
                        "tls.ca_file {path:?} must be an absolute path without `..`"
                    ))
                }
                _ => return Err("tls needs exactly one of ca (PEM) and ca_file".into()),
            }
            if tls.server_name.as_deref().is_some_and(str::is_empty) {
                return Err("tls.server_name is empty".into());
            }
        }
        if let Some(creds) = &self.credentials {
            if self.tls.is_none() {
                return Err("credentials need tls: the host relays egress and would read them (or relay an NKey login) in plain text".into());
            }
            let under_secrets = creds
                .file
                .strip_prefix(SECRETS_DIR)
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
            if !under_secrets || !is_clean_absolute(&creds.file) {
                return Err(format!(
                    "credentials.file {:?} must be a file under {SECRETS_DIR}/, delivered at run time; a file in the image is readable by anyone holding the EIF",
                    creds.file
                ));
            }
        }
        Ok(())
    }
}

fn is_clean_absolute(path: &str) -> bool {
    path.starts_with('/') && !path.split('/').any(|c| c == "..")
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

    /// A spec whose `files.nats` has `extra` besides its url and bucket.
    fn nats(extra: &str) -> String {
        format!("attestation:\n  server: {{}}\n  files: {{roots: [/s], nats: {{url: \"nats://x\", bucket: b, {extra}}}}}\n")
    }

    #[test]
    fn nats_tls_and_credentials_parse() {
        let yaml = nats("tls: {ca: \"-----BEGIN CERTIFICATE-----\\nAA\\n-----END CERTIFICATE-----\", server_name: nats.internal}, credentials: {kind: user_password, file: /run/enclave/secrets/nats}");
        let spec = EnclaveSpec::from_yaml(&yaml).unwrap();
        let n = spec.attestation.unwrap().files.unwrap().nats.unwrap();
        assert_eq!(n.tls.unwrap().server_name.as_deref(), Some("nats.internal"));
        let creds = n.credentials.unwrap();
        assert_eq!(creds.kind, super::NatsCredentialKind::UserPassword);
        assert_eq!(creds.file, "/run/enclave/secrets/nats");
    }

    #[test]
    fn attestation_errors() {
        let cases: [(&str, &str); 18] = [
            ("attestation:\n  server: {port: 0}\n", "port 0"),
            ("attestation:\n  server: {client_ca: [nope]}\n", "PEM"),
            ("attestation:\n  files: {roots: [/s]}\n", "add `server: {}`"),
            ("attestation:\n  server: {}\n  files: {roots: []}\n", "empty"),
            ("attestation:\n  server: {}\n  files: {roots: [srv]}\n", "absolute"),
            ("attestation:\n  server: {}\n  files: {roots: [/srv/../etc]}\n", "absolute"),
            ("attestation:\n  server: {}\n  files: {roots: [/s], nats: {url: \"http://x\", bucket: b}}\n", "nats://"),
            ("attestation:\n  server: {}\n  files: {roots: [/s], nats: {url: \"nats://x\", bucket: \"a.b\"}}\n", "bucket"),
            (&nats("tls: {}"), "exactly one of ca"),
            (&nats("tls: {ca: nope}"), "PEM"),
            (&nats("tls: {ca_file: etc/ca.pem}"), "absolute"),
            (&nats("tls: {ca_file: /etc/ca.pem, server_name: ''}"), "server_name"),
            (&nats("tls: {ca_file: /etc/ca.pem, tls_first: true}"), "unknown field"),
            (
                &nats("credentials: {kind: token, file: /run/enclave/secrets/t}"),
                "credentials need tls",
            ),
            (
                &nats("tls: {ca_file: /c}, credentials: {kind: token, file: /etc/nats.token}"),
                "under /run/enclave/secrets/",
            ),
            (
                &nats("tls: {ca_file: /c}, credentials: {kind: token, file: /run/enclave/secrets/../x}"),
                "under /run/enclave/secrets/",
            ),
            (
                &nats("tls: {ca_file: /c}, credentials: {kind: kerberos, file: /run/enclave/secrets/x}"),
                "unknown variant",
            ),
            ("attestation:\n  sever: {}\n", "unknown field `sever`"),
        ];
        for (yaml, want) in cases {
            let err = EnclaveSpec::from_yaml(yaml).unwrap_err().to_string();
            assert!(err.contains(want), "{yaml:?}: {err}");
        }
    }
}
