//! `POST /v1/enclaves`: the run request (what `enclave-ctl run -d` takes), checked field by
//! field into `run`'s options.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::http::ApiError;
use crate::backend::BackendChoice;
use crate::lifecycle::{self, RunOptions};
use crate::network::{AddHost, PublishedPort};
use crate::policy::RestartPolicy;

/// `POST /v1/enclaves`: what `enclave-ctl run -d` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    eif: std::path::PathBuf,
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "default_cpus")]
    cpus: u32,
    #[serde(default = "default_memory")]
    memory_mib: u64,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    restart: Option<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    debug_mode: bool,
    #[serde(default = "default_boot_timeout")]
    boot_timeout_secs: u64,
    #[serde(default)]
    add_hosts: Vec<String>,
    #[serde(default)]
    rm: bool,
    #[serde(default)]
    health_listen: Option<String>,
    #[serde(default)]
    metrics_listen: Option<String>,
    /// `run --secret NAME=FILE`: the files' contents by name, in base64.
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, String>,
}

fn default_cpus() -> u32 {
    lifecycle::DEFAULT_CPUS
}
fn default_memory() -> u64 {
    lifecycle::DEFAULT_MEMORY_MIB
}
fn default_boot_timeout() -> u64 {
    60
}

/// A run request's body as `run`'s options and boot timeout; every field checked.
pub fn run_options(body: &[u8]) -> Result<(RunOptions, Duration), ApiError> {
    let bad_json = |e: serde_json::Error| ApiError::bad(format!("the run request: {e}"));
    let mut value: Value = serde_json::from_slice(body).map_err(bad_json)?;
    // JSON Schema counts 2.0 as an integer; serde does not.
    if let Some(obj) = value.as_object_mut() {
        for key in ["cpus", "memory_mib", "boot_timeout_secs"] {
            if let Some(f) = obj.get(key).and_then(Value::as_f64) {
                if f.fract() == 0.0 && f >= 0.0 && f < u64::MAX as f64 && !obj[key].is_u64() {
                    obj.insert(key.to_owned(), Value::from(f as u64));
                }
            }
        }
    }
    let r: RunRequest = serde_json::from_value(value).map_err(bad_json)?;
    // First the resource it names: a request for an EIF this host does not have is a 404,
    // whatever else it asks.
    if !r.eif.is_file() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_eif",
            format!("{}: no such EIF file on this host", r.eif.display()),
        ));
    }
    let bad = |what: &str, e: String| ApiError::bad(format!("{what}: {e}"));
    let opts = RunOptions {
        eif: r.eif,
        name: r.name,
        cpus: r.cpus,
        memory_mib: r.memory_mib,
        backend: match r.backend.as_deref() {
            None => BackendChoice::Auto,
            Some(b) => b
                .parse::<BackendChoice>()
                .map_err(|e| bad("backend", e.to_string()))?,
        },
        debug_mode: r.debug_mode,
        restart: match r.restart.as_deref() {
            None => RestartPolicy::No,
            Some(p) => p
                .parse::<RestartPolicy>()
                .map_err(|e| bad("restart", e.to_string()))?,
        },
        publish: r
            .publish
            .iter()
            .map(|p| p.parse::<PublishedPort>().map_err(|e| bad("publish", e)))
            .collect::<Result<_, _>>()?,
        add_hosts: r
            .add_hosts
            .iter()
            .map(|h| h.parse::<AddHost>().map_err(|e| bad("add_hosts", e)))
            .collect::<Result<_, _>>()?,
        secrets: secrets(&r.secrets)?,
        auto_remove: r.rm,
        health_listen: listen_addr("health_listen", r.health_listen.as_deref())?,
        metrics_listen: listen_addr("metrics_listen", r.metrics_listen.as_deref())?,
    };
    if opts.cpus == 0 || opts.memory_mib == 0 {
        return Err(ApiError::bad("cpus and memory_mib must be at least 1"));
    }
    Ok((
        opts,
        Duration::from_secs(r.boot_timeout_secs.clamp(1, 3600)),
    ))
}

/// The request's secrets, decoded (their names and sizes are checked with `run`'s own rules
/// when the enclave is created).
fn secrets(
    given: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<crate::control::Secret>, ApiError> {
    use base64ct::{Base64, Encoding};
    given
        .iter()
        .map(|(name, b64)| {
            Base64::decode_vec(b64)
                .map(|content| crate::control::Secret {
                    name: name.clone(),
                    content,
                })
                .map_err(|_| ApiError::bad(format!("secrets.{name}: not base64")))
        })
        .collect()
}

/// An `IP:PORT` to listen on, from a request field.
fn listen_addr(what: &str, value: Option<&str>) -> Result<Option<SocketAddr>, ApiError> {
    value
        .map(|v| {
            v.parse::<SocketAddr>()
                .map_err(|e| ApiError::bad(format!("{what}: {v:?}: {e} (expected IP:PORT)")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_arrive_decoded_and_bad_base64_is_the_callers_mistake() {
        let dir = tempfile::tempdir().unwrap();
        let eif = dir.path().join("x.eif");
        std::fs::write(&eif, b"").unwrap();
        let body = |secrets: Value| {
            serde_json::to_vec(&serde_json::json!({"eif": eif, "secrets": secrets})).unwrap()
        };
        let (opts, _) = run_options(&body(serde_json::json!({"token": "aGk="}))).unwrap();
        assert_eq!(opts.secrets.len(), 1);
        assert_eq!(
            (
                opts.secrets[0].name.as_str(),
                opts.secrets[0].content.as_slice()
            ),
            ("token", &b"hi"[..])
        );
        let err = run_options(&body(serde_json::json!({"token": "not base64!"}))).unwrap_err();
        let reply = super::super::http::error_reply(err);
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    }
}
