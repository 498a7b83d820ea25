//! Routing and the endpoints. Every response is a complete body (`Content-Length`), JSON unless
//! it is a document; every failure is a JSON `{"error": "…"}` with the matching status.

use std::convert::Infallible;
use std::fmt::Display;
use std::sync::Arc;

use base64ct::{Base64, Encoding};
use http_body_util::Full;
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::Semaphore;

use super::limits::TokenBucket;
use super::proofs::FileProofs;
use super::query::parse_query;
use super::source::AttestationSource;
use crate::files::{FileEntry, FileError, VRF_SUITE};

/// Largest nonce, decoded (the NSM takes 1024 bytes; half leaves room and is plenty).
pub const MAX_NONCE_LEN: usize = 512;

pub(crate) type Resp = Response<Full<Bytes>>;

/// What every request may use; built once at start.
pub(crate) struct State {
    pub(crate) source: Arc<dyn AttestationSource>,
    pub(crate) files: Option<Arc<dyn FileProofs>>,
    /// The TLS key's SubjectPublicKeyInfo: every document's `public_key`.
    pub(crate) spki: Vec<u8>,
    /// The encoded binding: every document's `user_data`.
    pub(crate) user_data: Vec<u8>,
    /// The start-up document, whose hash is the epoch of every file proof.
    pub(crate) startup_document: Vec<u8>,
    /// `/pcrs`, rendered once from the startup document.
    pub(crate) pcrs_body: Bytes,
    pub(crate) attestation_bucket: TokenBucket,
    pub(crate) files_bucket: TokenBucket,
    pub(crate) blocking: Semaphore,
}

const ENDPOINTS: [&str; 7] = [
    "/health",
    "/pcrs",
    "/attestation",
    "/files/hash",
    "/files/proof",
    "/files/vrf-key",
    "/files/epoch",
];

/// The service function: never fails (errors are responses).
pub(crate) async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let resp = route(&state, &req).await;
    tracing::debug!(
        method = %req.method(),
        path = req.uri().path(),
        status = resp.status().as_u16(),
        "request"
    );
    Ok(resp)
}

async fn route(state: &Arc<State>, req: &Request<Incoming>) -> Resp {
    // No endpoint takes a body.
    if !req.body().is_end_stream() {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "requests take no body").response();
    }
    let path = req.uri().path();
    if !ENDPOINTS.contains(&path) {
        return error(StatusCode::NOT_FOUND, format!("no endpoint {path}")).response();
    }
    if req.method() != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served").response();
    }
    let query = match parse_query(req.uri().query().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e).response(),
    };
    let result = match path {
        "/health" => params(&query, &[]).map(|_| {
            let body = Bytes::from_static(br#"{"status":"ok"}"#);
            body_response(StatusCode::OK, "application/json", body)
        }),
        "/pcrs" => params(&query, &[])
            .map(|_| body_response(StatusCode::OK, "application/json", state.pcrs_body.clone())),
        "/attestation" => attestation(state, &query).await,
        "/files/hash" => file(state, &query, false).await,
        "/files/proof" => file(state, &query, true).await,
        "/files/epoch" => epoch(state, &query),
        _ => vrf_key(state, &query).await,
    };
    result.unwrap_or_else(Refusal::response)
}

/// A request the server will not serve: status and message. The status decides the extra
/// headers, so every path refusing with a status says the same thing.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn response(self) -> Resp {
        let mut resp = json_response(self.status, &json!({ "error": self.message }));
        let extra = match self.status {
            // The body is left unread, so the connection cannot carry another request.
            StatusCode::PAYLOAD_TOO_LARGE => Some((CONNECTION, "close")),
            StatusCode::METHOD_NOT_ALLOWED => Some((ALLOW, "GET")),
            StatusCode::TOO_MANY_REQUESTS => Some((RETRY_AFTER, "1")),
            _ => None,
        };
        if let Some((name, value)) = extra {
            resp.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        resp
    }
}

/// The parameters, in the order of `allowed`; an unknown one is a 400.
fn params<'q>(
    query: &'q [(String, String)],
    allowed: &[&str],
) -> Result<Vec<Option<&'q str>>, Refusal> {
    if let Some((k, _)) = query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("unknown query parameter {k:?}"),
        ));
    }
    Ok(allowed
        .iter()
        .map(|a| query.iter().find(|(k, _)| k == a).map(|(_, v)| v.as_str()))
        .collect())
}

fn nonce_param(nonce: Option<&str>) -> Result<Option<Vec<u8>>, Refusal> {
    let Some(hex_nonce) = nonce else {
        return Ok(None);
    };
    if hex_nonce.len() > 2 * MAX_NONCE_LEN {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("nonce is longer than {MAX_NONCE_LEN} bytes"),
        ));
    }
    hex::decode(hex_nonce)
        .map(Some)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("nonce is not hex: {e}")))
}

/// `GET /attestation?nonce=HEX&encoding=raw|base64`: a fresh document.
async fn attestation(state: &Arc<State>, query: &[(String, String)]) -> Result<Resp, Refusal> {
    let p = params(query, &["nonce", "encoding"])?;
    let nonce = nonce_param(p[0])?;
    let base64 = match p[1] {
        None | Some("raw") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("encoding {other:?}: raw or base64"),
            ))
        }
    };
    let doc = fetch_document(state, nonce).await?;
    let mut resp = if base64 {
        body_response(
            StatusCode::OK,
            "text/plain",
            Base64::encode_string(&doc).into(),
        )
    } else {
        body_response(StatusCode::OK, "application/cbor", doc.into())
    };
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /files/vrf-key?nonce=HEX`: the VRF key and a fresh document binding it.
async fn vrf_key(state: &Arc<State>, query: &[(String, String)]) -> Result<Resp, Refusal> {
    let p = params(query, &["nonce"])?;
    let files = files_enabled(state)?;
    let nonce = nonce_param(p[0])?;
    let doc = fetch_document(state, nonce).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "public_key": hex::encode(files.vrf_public_key().to_bytes()),
            "suite": VRF_SUITE,
            "epoch": files.epoch().to_hex(),
            "document": Base64::encode_string(&doc),
        }),
    ))
}

/// `GET /files/epoch`: the boot every proof names, and the start-up document it is the hash of
/// (no NSM call: the document was fetched at start).
fn epoch(state: &State, query: &[(String, String)]) -> Result<Resp, Refusal> {
    params(query, &[])?;
    let files = files_enabled(state)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "epoch": files.epoch().to_hex(),
            "vrf_public_key": hex::encode(files.vrf_public_key().to_bytes()),
            "startup_document": Base64::encode_string(&state.startup_document),
        }),
    ))
}

/// `GET /files/hash?path=…` and `GET /files/proof?path=…`.
async fn file(
    state: &Arc<State>,
    query: &[(String, String)],
    proof: bool,
) -> Result<Resp, Refusal> {
    let p = params(query, &["path"])?;
    let files = files_enabled(state)?;
    let path = p[0]
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "the path parameter is required"))?
        .to_string();
    if !state.files_bucket.try_take() {
        return Err(too_many());
    }
    let epoch = files.epoch();
    let found: FileEntry = blocking(state, move || files.lookup(&path))
        .await?
        .map_err(file_refusal)?;
    let body = if proof {
        json!({
            "path": found.path,
            "sha3_512": hex::encode(found.hash),
            "generation": found.generation,
            "epoch": epoch.to_hex(),
            "proof": hex::encode(found.proof.to_bytes()),
            "suite": VRF_SUITE,
        })
    } else {
        json!({"path": found.path, "sha3_512": hex::encode(found.hash)})
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// The status for a file the store will not prove. The enclave's own failures get a generic
/// message (the details, file system paths included, go to the log).
fn file_refusal(e: FileError) -> Refusal {
    let status = match &e {
        FileError::OutsideRoots { .. } | FileError::Ignored { .. } => StatusCode::FORBIDDEN,
        FileError::InvalidPath { .. } => StatusCode::BAD_REQUEST,
        FileError::NotFound { .. } | FileError::NotRegularFile { .. } => StatusCode::NOT_FOUND,
        FileError::TooMany { .. } => StatusCode::SERVICE_UNAVAILABLE,
        FileError::Spec(_) | FileError::Io { .. } | FileError::Vrf { .. } | FileError::Watch(_) => {
            tracing::warn!(error = %e, "file lookup failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the enclave could not hash or prove the file",
            );
        }
    };
    error(status, e)
}

fn files_enabled(state: &State) -> Result<Arc<dyn FileProofs>, Refusal> {
    state.files.clone().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "file attestation is not enabled in this enclave's spec",
        )
    })
}

/// A fresh document bound to this server (rate-limited: each one is an NSM call).
async fn fetch_document(state: &Arc<State>, nonce: Option<Vec<u8>>) -> Result<Vec<u8>, Refusal> {
    if !state.attestation_bucket.try_take() {
        return Err(too_many());
    }
    let st = state.clone();
    blocking(state, move || {
        st.source
            .attest(nonce.as_deref(), Some(&st.user_data), Some(&st.spki))
    })
    .await?
    .map_err(|e| {
        tracing::warn!(error = %e, "attestation failed");
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("attestation failed: {e}"),
        )
    })
}

/// Runs `f` on a blocking thread, at most `Limits::max_blocking` at once.
async fn blocking<T: Send + 'static>(
    state: &State,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Refusal> {
    let unavailable = || error(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    let _slot = state.blocking.acquire().await.map_err(|_| unavailable())?;
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "blocking task failed");
        error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

fn too_many() -> Refusal {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate limit exceeded; retry later",
    )
}

fn body_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Resp {
    body_response(status, "application/json", value.to_string().into())
}

fn error(status: StatusCode, message: impl Display) -> Refusal {
    Refusal {
        status,
        message: message.to_string(),
    }
}

/// The `/pcrs` body: `{"module_id": …, "digest": …, "pcrs": {"0": hex, …}}`, PCRs in numeric
/// order (written by hand because a JSON map would sort "10" before "2").
pub(crate) fn pcrs_body(doc: &enclave_attest::AttestationDocument) -> Bytes {
    let pcrs: Vec<String> = doc
        .pcrs
        .iter()
        .map(|(i, v)| format!("\"{i}\":\"{}\"", hex::encode(v)))
        .collect();
    format!(
        "{{\"module_id\":{},\"digest\":{},\"pcrs\":{{{}}}}}",
        json!(doc.module_id),
        json!(doc.digest),
        pcrs.join(",")
    )
    .into()
}
