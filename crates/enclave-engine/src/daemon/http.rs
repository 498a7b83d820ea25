//! The daemon's HTTP plumbing: JSON answers and errors, and query parameters.

use std::collections::BTreeMap;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use super::ApiBody;
use crate::error::EngineError;
use crate::util::parse_when;

pub type Reply = Response<ApiBody>;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The `Allow` header of a 405 (RFC 9110 requires it).
    allow: Option<String>,
}

impl ApiError {
    /// An error with its status, stable code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    /// 405, naming the methods the path takes.
    pub fn method_not_allowed(message: impl Into<String>, allowed: &[hyper::Method]) -> Self {
        let allow: Vec<&str> = allowed.iter().map(hyper::Method::as_str).collect();
        ApiError {
            allow: Some(allow.join(", ")),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                message,
            )
        }
    }

    /// 400, the caller's mistake.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let (status, code) = match &e {
            EngineError::NotFound(_) => (StatusCode::NOT_FOUND, "no_such_enclave"),
            EngineError::NoSuchImage(_) => (StatusCode::NOT_FOUND, "no_such_image"),
            EngineError::Ambiguous { .. } => (StatusCode::CONFLICT, "ambiguous"),
            EngineError::NameInUse { .. } => (StatusCode::CONFLICT, "name_in_use"),
            EngineError::Running(_) => (StatusCode::CONFLICT, "running"),
            EngineError::NotRunning(_) => (StatusCode::CONFLICT, "not_running"),
            EngineError::InvalidName(_)
            | EngineError::Invalid(_)
            | EngineError::MemoryTooSmall { .. }
            | EngineError::Eif { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            EngineError::MeasurementMismatch { .. } => (StatusCode::CONFLICT, "eif_changed"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "engine_error"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

pub fn json_reply(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(ApiBody::full(body))
        .unwrap_or_else(|_| Response::new(ApiBody::full("")))
}

pub fn error_reply(e: ApiError) -> Reply {
    let mut reply = json_reply(e.status, &json!({"code": e.code, "message": e.message}));
    if let Some(allow) = e
        .allow
        .and_then(|a| hyper::header::HeaderValue::from_str(&a).ok())
    {
        reply.headers_mut().insert(hyper::header::ALLOW, allow);
    }
    reply
}

/// The query string as a map (the last of repeated keys wins).
pub fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    parse_query(req.uri().query().unwrap_or_default())
}

/// A query string (`a=1&b=x%20y`) as a map (the last of repeated keys wins).
pub fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A time parameter: RFC 3339, or a duration ago (`30s`, `5m`, `2h`).
pub fn parse_time(name: &str, s: &str) -> Result<OffsetDateTime, ApiError> {
    parse_when(s)
        .ok_or_else(|| ApiError::bad(format!("{name}={s:?}: expected RFC 3339 or 30s, 5m, 2h")))
}

/// The query parameter `key`, parsed.
pub fn param<T: std::str::FromStr>(
    q: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    q.get(key)
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::bad(format!("{key}={v:?} is not valid")))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(decode("a%20b+c%2Fd"), "a b c/d");
        // Malformed escapes are kept as they are, never a panic.
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%e2%82%ac"), "€");
    }

    /// The fuzz target's body over seeds: well-formed and broken requests, no panic.
    #[test]
    fn the_fuzz_body_runs_on_seeds() {
        for seed in [
            &b"since=5m&until=0s&type=die&enclave=web"[..],
            b"a=%&b=%e2%82&c==&&=x",
            br#"{"eif":"/x.eif","name":"a","cpus":1,"memory_mib":128,"publish":["127.0.0.1:80:80"]}"#,
            br#"{"eif":"/x","publish":["99999:1"],"restart":"sometimes","backend":"kvm"}"#,
            br#"{"eif":"/x","boot_timeout_secs":18446744073709551615,"cpus":0}"#,
            b"\xff\xfe{[",
            b"",
        ] {
            crate::daemon::fuzzing::request_inputs(seed);
        }
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        assert!(parse_time("since", "2026-12-05T10:00:00Z").is_ok());
        let ago = parse_time("since", "5m").unwrap();
        let d = OffsetDateTime::now_utc() - ago;
        assert!(d.whole_seconds() >= 299 && d.whole_seconds() <= 301, "{d}");
        assert!(
            parse_time("since", "99999999999999h").is_ok(),
            "clamped, no overflow"
        );
        for bad in ["", "5x", "yesterday", "-5m"] {
            assert!(parse_time("since", bad).is_err(), "{bad}");
        }
    }
}
