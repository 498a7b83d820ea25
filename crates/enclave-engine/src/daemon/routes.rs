//! The routes of the engine API. Every answer is JSON (errors `{code, message}` with a stable
//! `code`: 4xx for the caller's mistakes, 5xx only for the engine's own failures), except the
//! logs (JSON lines), the events (server-sent events) and `/metrics` (Prometheus text).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::http::{error_reply, json_reply, param, query, ApiError, Reply};
use super::run_request::run_options;
use super::ApiBody;
use crate::backend::BackendChoice;
use crate::error::EngineError;
use crate::events::{self, Event, EventKind};
use crate::images;
use crate::lifecycle;
use crate::state::{EnclaveRecord, StateRoot};

/// The committed OpenAPI document, served as JSON.
const OPENAPI_YAML: &str = include_str!("../../../../docs/api/openapi.yaml");
/// The largest request body accepted (a run request is a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;
/// A run request may carry the secrets of `run --secret` (8 of 64 KiB at most, in base64).
const MAX_RUN_BODY: usize = 1024 * 1024;
/// The largest document body: hex of the largest document the verifier reads.
const MAX_DOCUMENT_BODY: usize = enclave_attest::MAX_DOCUMENT_LEN * 2 + 64;

/// The API's state: the state directory and the OpenAPI document.
pub struct Api {
    root: StateRoot,
    openapi: Value,
}

impl Api {
    /// The API over `root`.
    pub fn new(root: StateRoot) -> crate::error::Result<Self> {
        let openapi: Value = yaml_serde::from_str(OPENAPI_YAML)
            .map_err(|e| EngineError::Invalid(format!("docs/api/openapi.yaml: {e}")))?;
        Ok(Api { root, openapi })
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Reply {
        match self.route(req).await {
            Ok(reply) => reply,
            Err(e) => error_reply(e),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<Reply, ApiError> {
        let path = req.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let q = query(&req);
        let method = req.method().clone();
        let allow = |methods: &[Method]| {
            if methods.contains(&method) {
                Ok(())
            } else {
                Err(ApiError::method_not_allowed(
                    format!("{method} {path}: allowed {methods:?}"),
                    methods,
                ))
            }
        };
        match segments.as_slice() {
            ["v1", "openapi.json"] => {
                allow(&[Method::GET])?;
                Ok(json_reply(StatusCode::OK, &self.openapi))
            }
            ["v1", "system", "info"] => {
                allow(&[Method::GET])?;
                self.info()
            }
            ["v1", "enclaves"] if method == Method::POST => self.run(req).await,
            ["v1", "enclaves"] => {
                allow(&[Method::GET, Method::POST])?;
                self.list(&q)
            }
            ["v1", "enclaves", r] if method == Method::DELETE => self.remove(r, &q).await,
            ["v1", "enclaves", r] => {
                allow(&[Method::GET, Method::DELETE])?;
                let rec = self.root.resolve(r)?;
                Ok(json_reply(StatusCode::OK, &self.root.inspect(&rec)?))
            }
            ["v1", "enclaves", r, "stop"] => {
                allow(&[Method::POST])?;
                self.stop(r, &q).await
            }
            ["v1", "enclaves", r, "kill"] => {
                allow(&[Method::POST])?;
                let rec = self.root.resolve(r)?;
                let root = self.root.clone();
                let rec = blocking(move || lifecycle::kill_now(&root, &rec)).await?;
                Ok(json_reply(StatusCode::OK, &rec))
            }
            ["v1", "enclaves", r, op @ ("start" | "restart")] => {
                allow(&[Method::POST])?;
                self.start(r, op == &"restart", &q).await
            }
            ["v1", "enclaves", r, "control"] => {
                allow(&[Method::POST])?;
                super::relay::upgrade(&self.root, r, req).await
            }
            ["v1", "enclaves", r, "attest"] => {
                allow(&[Method::POST])?;
                self.attest(r, &q).await
            }
            ["v1", "enclaves", r, "logs"] => {
                allow(&[Method::GET])?;
                super::streams::logs(&self.root, r, &q)
            }
            ["v1", "images"] if method == Method::POST => {
                let body = read_body(req, MAX_BODY, "the body").await?;
                super::images::build(&self.root, &body).await
            }
            ["v1", "images"] => {
                allow(&[Method::GET, Method::POST])?;
                Ok(json_reply(
                    StatusCode::OK,
                    &images::index::list(&self.root)?,
                ))
            }
            ["v1", "images", "measure"] => {
                allow(&[Method::POST])?;
                let body = read_body(req, MAX_BODY, "the body").await?;
                super::images::measure(&body).await
            }
            ["v1", "images", id] => {
                allow(&[Method::GET])?;
                super::images::inspect(&self.root, id)
            }
            ["v1", "verify"] => {
                allow(&[Method::POST])?;
                let body = read_body(req, MAX_DOCUMENT_BODY, "the document").await?;
                let report = super::verify::verify_request(&self.root, &body, &q)?;
                Ok(json_reply(StatusCode::OK, &report))
            }
            ["v1", "events"] => {
                allow(&[Method::GET])?;
                super::streams::events(&self.root, &q)
            }
            ["metrics"] => {
                allow(&[Method::GET])?;
                let text = super::metrics::render(&self.root)?;
                Ok(Response::builder()
                    .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                    .body(ApiBody::full(text))
                    .unwrap_or_else(|_| Response::new(ApiBody::full(""))))
            }
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route {path} (see /v1/openapi.json)"),
            )),
        }
    }

    /// Every record, as `ps -a` sees them (`list` already reads a dead supervisor's as failed).
    fn records(&self) -> Result<Vec<EnclaveRecord>, ApiError> {
        Ok(self.root.list()?)
    }

    fn info(&self) -> Result<Reply, ApiError> {
        let records = self.records()?;
        let active: Vec<&EnclaveRecord> = records.iter().filter(|r| r.status.is_active()).collect();
        Ok(json_reply(
            StatusCode::OK,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "api_version": "v1",
                "state_dir": self.root.path(),
                "default_backend": BackendChoice::Auto.resolve().to_string(),
                "kvm_device": std::path::Path::new("/dev/kvm").exists(),
                "enclaves": records.len(),
                "active": active.len(),
                "cpus_reserved": active.iter().map(|r| u64::from(r.cpus)).sum::<u64>(),
                "memory_mib_reserved": active.iter().map(|r| r.memory_mib).sum::<u64>(),
            }),
        ))
    }

    fn list(&self, q: &BTreeMap<String, String>) -> Result<Reply, ApiError> {
        let status: Option<String> = q.get("status").cloned();
        if let Some(s) = &status {
            let known = [
                "created",
                "starting",
                "running",
                "restarting",
                "stopping",
                "exited",
                "failed",
            ];
            if !known.contains(&s.as_str()) {
                return Err(ApiError::bad(format!(
                    "status={s:?}: one of {}",
                    known.join(", ")
                )));
            }
        }
        let name = q.get("name");
        let records: Vec<EnclaveRecord> = self
            .records()?
            .into_iter()
            .filter(|r| status.as_ref().is_none_or(|s| r.status.to_string() == *s))
            .filter(|r| name.is_none_or(|n| r.name == *n))
            .collect();
        Ok(json_reply(StatusCode::OK, &records))
    }

    async fn run(&self, req: Request<Incoming>) -> Result<Reply, ApiError> {
        let body = read_body(req, MAX_RUN_BODY, "the body").await?;
        let (opts, boot) = run_options(&body)?;
        let root = self.root.clone();
        let rec = blocking(move || -> Result<EnclaveRecord, EngineError> {
            let rec = lifecycle::create(&root, &opts)?;
            let pid = lifecycle::start_supervisor(&root, &rec, Some(boot))?;
            reap(pid);
            lifecycle::wait_running(&root, &rec.id, boot + Duration::from_secs(30))
        })
        .await?;
        Ok(json_reply(StatusCode::CREATED, &rec))
    }

    async fn stop(&self, r: &str, q: &BTreeMap<String, String>) -> Result<Reply, ApiError> {
        let rec = self.root.resolve(r)?;
        let timeout = Duration::from_secs(param::<u64>(q, "timeout")?.unwrap_or(10).min(3600));
        let root = self.root.clone();
        let rec = blocking(move || lifecycle::stop(&root, &rec, timeout)).await?;
        Ok(json_reply(StatusCode::OK, &rec))
    }

    /// `start` (nothing to do when it runs) or `restart` (stopped with `timeout` of grace
    /// first); answers once it runs, with its record, or with the boot's error.
    async fn start(
        &self,
        r: &str,
        restart: bool,
        q: &BTreeMap<String, String>,
    ) -> Result<Reply, ApiError> {
        let rec = self.root.resolve(r)?;
        let timeout = Duration::from_secs(param::<u64>(q, "timeout")?.unwrap_or(10).min(3600));
        let boot = Duration::from_secs(
            param::<u64>(q, "boot_timeout")?
                .unwrap_or(60)
                .clamp(1, 3600),
        );
        let root = self.root.clone();
        let rec = blocking(move || -> Result<EnclaveRecord, EngineError> {
            let pid = if restart {
                lifecycle::restart(&root, &rec, timeout, boot)?
            } else {
                lifecycle::start(&root, &rec, boot)?
            };
            if let Some(pid) = pid {
                reap(pid);
            }
            lifecycle::wait_running(&root, &rec.id, boot + Duration::from_secs(30))
        })
        .await?;
        Ok(json_reply(StatusCode::OK, &rec))
    }

    async fn remove(&self, r: &str, q: &BTreeMap<String, String>) -> Result<Reply, ApiError> {
        let rec = self.root.resolve(r)?;
        let force = param::<bool>(q, "force")?.unwrap_or(false);
        let root = self.root.clone();
        blocking(move || lifecycle::remove(&root, &rec, force)).await?;
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(ApiBody::full(""))
            .unwrap_or_else(|_| Response::new(ApiBody::full(""))))
    }

    /// A fresh attestation document binding `nonce` (hex, 1-512 bytes; random when absent) and
    /// nothing the caller chooses besides: as the control channel grants the host.
    async fn attest(&self, r: &str, q: &BTreeMap<String, String>) -> Result<Reply, ApiError> {
        let rec = self.root.resolve(r)?;
        if rec.status != crate::state::Status::Running {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_running",
                format!("enclave {} is {}", rec.name, rec.status),
            ));
        }
        let nonce = match q.get("nonce") {
            Some(h) => hex::decode(h)
                .ok()
                .filter(|n| !n.is_empty() && n.len() <= 512)
                .ok_or_else(|| ApiError::bad("nonce: 1 to 512 bytes in hex"))?,
            None => {
                let mut n = vec![0u8; 32];
                getrandom::getrandom(&mut n).map_err(EngineError::Random)?;
                n
            }
        };
        let root = self.root.clone();
        let nonce_hex = hex::encode(&nonce);
        let document = blocking(move || -> Result<Vec<u8>, ApiError> {
            let (addr, opts) = crate::control::supervisor_session(
                &root,
                &rec,
                "enclave-engine daemon (attest)",
                Duration::from_secs(5),
            )?;
            let unavailable = |e: enclave_proto::client::ClientError| {
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "enclave_unavailable",
                    format!("{}: {e}", rec.name),
                )
            };
            let mut client =
                enclave_proto::client::Client::connect(&addr, &opts).map_err(unavailable)?;
            let doc = client
                .attest(enclave_proto::wire::AttestRequest {
                    nonce: Some(nonce),
                    user_data: None,
                    public_key: None,
                })
                .map_err(unavailable)?;
            events::record(
                &root,
                Event::new(EventKind::Attest, &rec).with("binds", "nonce"),
            );
            Ok(doc)
        })
        .await?;
        Ok(Response::builder()
            .header("content-type", "application/cbor")
            .header("x-enclave-nonce", nonce_hex)
            .body(ApiBody::full(document))
            .unwrap_or_else(|_| Response::new(ApiBody::full(""))))
    }
}

/// The request's body, refused past `max` bytes.
async fn read_body(req: Request<Incoming>, max: usize, what: &str) -> Result<Bytes, ApiError> {
    Ok(http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|e| ApiError::bad(format!("reading {what}: {e}")))?
        .to_bytes())
}

/// Runs blocking work (starting, stopping, the control channel) on tokio's blocking threads.
pub(super) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "engine_error",
                e.to_string(),
            )
        })?
        .map_err(Into::into)
}

/// Reaps the supervisor `pid` when it ends (it is the daemon's child until then).
fn reap(pid: u32) {
    let _ = std::thread::Builder::new()
        .name("reap".into())
        .spawn(move || {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
        });
}
