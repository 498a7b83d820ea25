//! `POST /v1/verify`: a document (the body: raw, base64 or hex, as `enclave-ctl verify` reads
//! it) against a policy in the query: `pcr0`/`pcr1`/`pcr2`/`pcr8` (hex), `any_enclave`,
//! `nonce`, `trust_root` (`aws`, the pinned AWS root, by default; or `emulation`, this host's
//! emulation CA), `allow_debug`. The answer is a report either way: a document that fails is
//! the caller's finding, not an error of the request.

use std::collections::BTreeMap;

use enclave_attest::{verify, Expectation, Policy, TrustRoot, VerifyOptions};
use serde_json::{json, Value};

use super::http::{param, ApiError};
use crate::state::StateRoot;

/// The report of `document` under the query's policy: `{verified: true, report}` or
/// `{verified: false, error}`.
pub fn verify_request(
    root: &StateRoot,
    document: &[u8],
    q: &BTreeMap<String, String>,
) -> Result<Value, ApiError> {
    let hex_param = |key: &str| -> Result<Option<Vec<u8>>, ApiError> {
        q.get(key)
            .map(|h| hex::decode(h).map_err(|_| ApiError::bad(format!("{key}: not hex"))))
            .transpose()
    };
    // Every parameter is checked before anything is judged.
    if document.is_empty() {
        return Err(ApiError::bad("no document: send it as the request body"));
    }
    let mut roots = Vec::new();
    match q.get("trust_root").map(String::as_str) {
        None | Some("aws") => {}
        Some("emulation") => {
            let ca = crate::state::emulation_ca(root.path())?;
            let pem = std::fs::read(ca.root_path())
                .map_err(|e| ApiError::bad(format!("the emulation root: {e}")))?;
            roots = TrustRoot::from_pem(&pem)
                .map_err(|e| ApiError::bad(format!("the emulation root: {e}")))?;
        }
        Some(other) => {
            return Err(ApiError::bad(format!(
                "trust_root={other:?}: aws or emulation"
            )))
        }
    }
    let nonce = hex_param("nonce")?;
    let allow_debug = param::<bool>(q, "allow_debug")?.unwrap_or(false);
    let any_enclave = param::<bool>(q, "any_enclave")?.unwrap_or(false);
    let mut pcrs = Vec::new();
    for (index, key) in [(0u8, "pcr0"), (1, "pcr1"), (2, "pcr2"), (8, "pcr8")] {
        if let Some(v) = hex_param(key)? {
            pcrs.push((index, v));
        }
    }
    let expectation = if any_enclave {
        Ok(Expectation::AnyEnclave)
    } else {
        Expectation::pcrs(pcrs)
    };
    let expectation = match expectation {
        Ok(e) => e,
        // Nothing pinned (or pinned twice differently): not verified, and why.
        Err(e) => return Ok(json!({"verified": false, "error": e.to_string()})),
    };
    let mut policy = Policy::new(expectation);
    policy.nonce = nonce;
    policy.allow_debug_capabilities = allow_debug;
    let mut options = VerifyOptions::new(policy);
    options.roots = roots;
    Ok(match verify(document, &options) {
        Ok(report) => json!({"verified": true, "report": report}),
        Err(e) => json!({"verified": false, "error": e.to_string()}),
    })
}
