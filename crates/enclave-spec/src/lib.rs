//! enclave-spec: the enclave spec, `enclave.yaml`: its types, validation and measured JSON form.
//!
//! The spec names the source image and what to run, and declares what the enclave allows. It is
//! stored, normalised, in the app ramdisk, so it is measured into PCR2: anything it grants (such
//! as `debug.exec`) is visible in the image's measurements.
//!
//! Where it runs: on the host (`enclave-ctl build` parses the YAML, with the `yaml` feature) and
//! inside the enclave (enclave-init and the attestation server read the measured `spec.json`
//! with serde_json only: no YAML parser in the enclave).
#![deny(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

mod attestation;
mod health;
mod network;
#[cfg(feature = "schema")]
mod schema;

pub use attestation::{
    AttestationServerSpec, AttestationSpec, FileAttestationSpec, NatsCredentialKind,
    NatsCredentialsSpec, NatsSpec, NatsTlsSpec, SECRETS_DIR,
};
pub use health::{HealthDuration, HealthcheckSpec, HttpCheck, MIN_HEALTH_DURATION};
pub use network::{
    holds_special_beyond, special_prefix, special_range, valid_host_name, Cidr, EgressMode,
    EgressRule, EgressSpec, HostPattern, IngressSpec, SpecialRange,
};

/// Version of the spec format this crate reads.
pub const SPEC_VERSION: u32 = 1;

/// The name of the main service (the image's entrypoint and cmd): reserved, and what
/// enclave-init and the host call it.
pub const MAIN_SERVICE: &str = "main";

/// Whether `name` may name an enclave (`enclave-ctl run --name`, a package's default name): 1 to
/// 64 of `[a-zA-Z0-9_.-]`, starting with a letter or digit (Docker's rule, which keeps them safe
/// in paths and shell commands).
pub fn valid_enclave_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Errors reading or validating an enclave spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The YAML does not parse or does not match the schema. The message names the field and
    /// carries the line and column.
    #[cfg(feature = "yaml")]
    #[error("invalid enclave spec: {0}")]
    Yaml(#[from] yaml_serde::Error),
    /// The JSON (the measured spec.json) does not parse or does not match the schema.
    #[error("invalid enclave spec: {0}")]
    Json(#[from] serde_json::Error),
    /// The spec parsed but says something inconsistent.
    #[error("invalid enclave spec: {0}")]
    Invalid(String),
}

/// The root of `enclave.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnclaveSpec {
    /// Spec format version; absent means [`SPEC_VERSION`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Image name recorded in the EIF metadata (`ImageName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Source image in skopeo notation (`oci:dir:tag`, `oci-archive:…`, `docker-archive:…`,
    /// `dir:…`). Relative paths are relative to the spec file. Not measured: the image content is.
    #[serde(default, skip_serializing)]
    pub from: Option<String>,
    /// Overrides the image's Entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Overrides the image's Cmd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Added to (and overriding) the image's Env.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Overrides the image's WorkingDir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Overrides the image's User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Hostname inside the enclave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Services started besides the main one (the image's entrypoint/cmd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    /// Enclave ports reachable from the host (the ingress allow-list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressSpec>,
    /// Endpoints the enclave may reach (the egress allow-list); none by default.
    #[serde(default, skip_serializing_if = "EgressSpec::is_empty")]
    pub egress: EgressSpec,
    /// How the enclave tells it is healthy (like Docker's HEALTHCHECK); run inside by
    /// enclave-init, asked for by `enclave-ctl health`, probes and `ps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthcheckSpec>,
    /// The in-enclave attestation server and file attestation; off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationSpec>,
    /// The debug surface; everything off by default.
    #[serde(default, skip_serializing_if = "DebugSpec::is_default")]
    pub debug: DebugSpec,
}

/// A supervised service inside the enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name (`main` is reserved for the image's entrypoint).
    pub name: String,
    /// argv.
    pub command: Vec<String>,
    /// Extra environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Restarts allowed before the service is given up on (with exponential backoff between).
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// Services that must be ready before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// How to tell the service is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
}

fn default_max_restarts() -> u32 {
    5
}

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never.
    #[default]
    No,
    /// When it exited non-zero or was killed by a signal.
    OnFailure,
    /// Whenever it exited.
    Always,
}

/// A readiness check: exactly one of `tcp` or `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(extend("oneOf" = [{"required": ["tcp"]}, {"required": ["command"]}]))
)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    /// Ready when 127.0.0.1:PORT accepts a TCP connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<u16>,
    /// Ready when this argv exits 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// The debug surface of the enclave. Off unless the (measured) spec turns it on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct DebugSpec {
    /// Allow `enclave-ctl exec`.
    #[serde(default)]
    pub exec: bool,
    /// Allow `enclave-ctl cp`.
    #[serde(default)]
    pub cp: bool,
    /// Allow the host to ask for attestation documents binding a public key or user data of
    /// its choosing (`enclave-ctl attest --public-key/--user-data`). Without it the host gets
    /// documents with a nonce only: a key of the host's in a document would let the host pass
    /// for the enclave.
    #[serde(default)]
    pub attest: bool,
    /// Ed25519 public keys (base64 of the 32 raw bytes, or OpenSSH `ssh-ed25519 …` lines); when
    /// present every control session must prove possession of one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorized_keys: Vec<String>,
}

impl DebugSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl EnclaveSpec {
    /// Parses and validates a spec from YAML text (the host's `enclave.yaml`).
    #[cfg(feature = "yaml")]
    pub fn from_yaml(text: &str) -> Result<Self, SpecError> {
        // An empty document is an empty spec, not an error: `from:` may come from the CLI.
        let spec: EnclaveSpec = if text.trim().is_empty() {
            EnclaveSpec::default()
        } else {
            yaml_serde::from_str(text)?
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Parses and validates the measured JSON form ([`to_canonical_json`](Self::to_canonical_json)),
    /// as the enclave reads it from its image.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SpecError> {
        let spec: EnclaveSpec = serde_json::from_slice(bytes)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what the schema alone cannot: version, unique names, dependencies.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(v) = self.version {
            if v != SPEC_VERSION {
                return Err(SpecError::Invalid(format!(
                    "version {v} is not supported (this build reads version {SPEC_VERSION})"
                )));
            }
        }
        let mut names = BTreeSet::new();
        for svc in &self.services {
            let reserved = svc.name == MAIN_SERVICE
                || (svc.name == "attestation"
                    && self
                        .attestation
                        .as_ref()
                        .is_some_and(|a| a.server.is_some()));
            if svc.name.is_empty() || reserved {
                return Err(SpecError::Invalid(format!(
                    "service name {:?} is reserved or empty",
                    svc.name
                )));
            }
            if !names.insert(svc.name.as_str()) {
                return Err(SpecError::Invalid(format!(
                    "service {:?} is defined twice",
                    svc.name
                )));
            }
            if let Some(r) = &svc.readiness {
                if r.tcp.is_some() == r.command.is_some() {
                    return Err(SpecError::Invalid(format!(
                        "service {:?}: readiness needs exactly one of `tcp` or `command`",
                        svc.name
                    )));
                }
            }
            if svc.command.is_empty() {
                return Err(SpecError::Invalid(format!(
                    "service {:?} has an empty command",
                    svc.name
                )));
            }
        }
        for svc in &self.services {
            for dep in &svc.depends_on {
                if dep != MAIN_SERVICE && !names.contains(dep.as_str()) {
                    return Err(SpecError::Invalid(format!(
                        "service {:?} depends on unknown service {dep:?}",
                        svc.name
                    )));
                }
            }
        }
        self.check_dependency_cycles()?;
        if let Some(h) = &self.healthcheck {
            h.validate()?;
        }
        network::validate(&self.ingress, &self.egress)?;
        if let Some(a) = &self.attestation {
            a.validate()?;
        }
        Ok(())
    }

    fn check_dependency_cycles(&self) -> Result<(), SpecError> {
        let deps: BTreeMap<&str, &[String]> = self
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.depends_on.as_slice()))
            .collect();
        // Depth-first search with an explicit "on the current path" set.
        fn visit<'a>(
            name: &'a str,
            deps: &BTreeMap<&'a str, &'a [String]>,
            path: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
        ) -> Result<(), SpecError> {
            if done.contains(name) {
                return Ok(());
            }
            if path.contains(&name) {
                path.push(name);
                return Err(SpecError::Invalid(format!(
                    "services depend on each other in a cycle: {}",
                    path.join(" -> ")
                )));
            }
            path.push(name);
            for dep in deps.get(name).copied().unwrap_or_default() {
                visit(dep, deps, path, done)?;
            }
            path.pop();
            done.insert(name);
            Ok(())
        }
        let mut done = BTreeSet::new();
        for name in deps.keys() {
            visit(name, &deps, &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }

    /// The canonical JSON stored in the app ramdisk: field order fixed by the struct, maps
    /// sorted, `from` left out (the image content is measured instead).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        // Serialising a struct of strings, vectors and BTreeMaps cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enclave_names_follow_dockers_rule() {
        for ok in ["a", "web-1", "A.b_c", "9lives", &"x".repeat(64)] {
            assert!(valid_enclave_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "_a", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(!valid_enclave_name(bad), "{bad}");
        }
    }

    #[test]
    fn measured_json_errors_are_refused() {
        let err = EnclaveSpec::from_json(br#"{"cmd": ["a"], "entrypont": ["b"]}"#).unwrap_err();
        assert!(matches!(err, SpecError::Json(_)), "{err:?}");
        assert!(err.to_string().contains("entrypont"), "{err}");
        let err = EnclaveSpec::from_json(b"{\"cmd\": [").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        // Validation runs on JSON too.
        let err = EnclaveSpec::from_json(br#"{"version": 2}"#).unwrap_err();
        assert!(matches!(err, SpecError::Invalid(_)), "{err:?}");
    }

    #[test]
    fn full_spec_parses() {
        let spec = EnclaveSpec::from_yaml(
            r#"
from: oci:./image:latest
entrypoint: ["/bin/sh", "-c"]
cmd: ["echo hi"]
env: {B: "2", A: "1"}
workdir: /srv
services:
  - name: db
    command: ["/bin/db"]
    restart: always
    readiness: {tcp: 5432}
  - name: web
    command: ["/bin/web"]
    restart: on-failure
    max_restarts: 3
    depends_on: [db]
    readiness: {command: ["/bin/true"]}
debug: {exec: true}
"#,
        )
        .unwrap();
        assert_eq!(spec.from.as_deref(), Some("oci:./image:latest"));
        assert_eq!(spec.services[1].restart, RestartPolicy::OnFailure);
        assert_eq!(spec.services[1].max_restarts, 3);
        assert_eq!(spec.services[0].max_restarts, 5);
        assert_eq!(
            spec.services[0].readiness.as_ref().and_then(|r| r.tcp),
            Some(5432)
        );
        assert!(spec.debug.exec && !spec.debug.cp);
        // `from` is not measured; maps come out sorted.
        let json = String::from_utf8(spec.to_canonical_json()).unwrap();
        assert!(!json.contains("from"));
        assert!(json.find("\"A\"").unwrap() < json.find("\"B\"").unwrap());
        // The enclave reads the measured JSON back (serde_json only): the same spec, less `from`.
        let back = EnclaveSpec::from_json(json.as_bytes()).unwrap();
        assert_eq!(
            back,
            EnclaveSpec {
                from: None,
                ..spec.clone()
            }
        );
        assert_eq!(back.to_canonical_json(), json.as_bytes());
    }

    #[test]
    fn unknown_field_is_rejected_with_its_line() {
        let err = EnclaveSpec::from_yaml("from: dir:/x\ncmd: [a]\nentrypont: [b]\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown field `entrypont`"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn nested_unknown_field_is_rejected() {
        let err = EnclaveSpec::from_yaml(
            "services:\n  - name: a\n    command: [x]\n    restrat: always\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("restrat"), "{err}");
        assert!(err.to_string().contains("line 4"), "{err}");
    }

    #[test]
    fn bad_restart_policy_is_rejected() {
        let err = EnclaveSpec::from_yaml(
            "services:\n  - name: a\n    command: [x]\n    restart: sometimes\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn inconsistent_services_are_rejected() {
        let dup = "services:\n  - {name: a, command: [x]}\n  - {name: a, command: [y]}\n";
        assert!(EnclaveSpec::from_yaml(dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let unknown = "services:\n  - {name: a, command: [x], depends_on: [b]}\n";
        assert!(EnclaveSpec::from_yaml(unknown)
            .unwrap_err()
            .to_string()
            .contains("unknown service"));
        let cycle = "services:\n  - {name: a, command: [x], depends_on: [b]}\n  - {name: b, command: [y], depends_on: [a]}\n";
        let err = EnclaveSpec::from_yaml(cycle).unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");
        let empty = "services:\n  - {name: a, command: []}\n";
        assert!(EnclaveSpec::from_yaml(empty)
            .unwrap_err()
            .to_string()
            .contains("empty command"));
        let both = "services:\n  - {name: a, command: [x], readiness: {tcp: 1, command: [y]}}\n";
        assert!(EnclaveSpec::from_yaml(both)
            .unwrap_err()
            .to_string()
            .contains("exactly one"));
        let reserved = "services:\n  - {name: main, command: [x]}\n";
        assert!(EnclaveSpec::from_yaml(reserved)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
    }

    #[test]
    fn wrong_version_is_rejected() {
        let err = EnclaveSpec::from_yaml("version: 2\n").unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
    }

    #[test]
    fn empty_spec_is_empty() {
        assert_eq!(EnclaveSpec::from_yaml("").unwrap(), EnclaveSpec::default());
    }
}
