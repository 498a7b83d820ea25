//! `/v1/images`: a build from a spec on this host (as `enclave-ctl build`, the inputs resolved
//! by [`crate::images::prepare`]), the list of the EIFs the API built, one of them with its
//! measurements taken again, and the PCRs of any EIF on the host.

use std::path::{Path, PathBuf};

use enclave_image::build::{build as build_eif, NoProgress};
use enclave_image::eif::EifReader;
use enclave_image::kernel::KernelProfile;
use enclave_image::rootfs::Limits;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::http::{json_reply, ApiError, Reply};
use super::routes::blocking;
use crate::error::EngineError;
use crate::images::{self, chain, index, BuildInputs};
use crate::state::StateRoot;

/// `POST /v1/images`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildBody {
    /// The spec file, absolute.
    spec: PathBuf,
    #[serde(default)]
    from: Option<String>,
    /// Where the EIF goes (absolute); `<root>/images/<id>.eif` when absent.
    #[serde(default)]
    output: Option<PathBuf>,
    #[serde(default)]
    kernel_profile: Option<String>,
    #[serde(default)]
    kernel_dir: Option<PathBuf>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    source_date_epoch: Option<i64>,
}

/// `POST /v1/images/measure`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasureBody {
    eif: PathBuf,
}

fn absolute(what: &str, p: &Path) -> Result<(), ApiError> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{what} {}: give an absolute path (the daemon's working directory is not yours)",
            p.display()
        )))
    }
}

/// A build request's body, every field checked that can be without reading a file.
fn build_body(body: &[u8]) -> Result<(BuildBody, KernelProfile), ApiError> {
    let b: BuildBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the build request: {e}")))?;
    absolute("spec", &b.spec)?;
    if let Some(o) = &b.output {
        absolute("output", o)?;
    }
    if let Some(k) = &b.kernel_dir {
        absolute("kernel_dir", k)?;
    }
    let profile = match b.kernel_profile.as_deref() {
        None => KernelProfile::Emulated,
        Some(p) => p.parse().map_err(|e: String| ApiError::bad(e))?,
    };
    Ok((b, profile))
}

/// A measure request's body.
fn measure_body(body: &[u8]) -> Result<MeasureBody, ApiError> {
    let b: MeasureBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the measure request: {e}")))?;
    absolute("eif", &b.eif)?;
    Ok(b)
}

/// The decoders above on arbitrary bytes (the fuzz target `api_request`).
pub fn decode_bodies(data: &[u8]) {
    let _ = build_body(data);
    let _ = measure_body(data);
}

/// Builds; answers 201 with the image's record once the EIF is written and recorded.
pub async fn build(root: &StateRoot, body: &[u8]) -> Result<Reply, ApiError> {
    let (b, kernel_profile) = build_body(body)?;
    if !b.spec.is_file() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_spec",
            format!("{}: no such spec file on this host", b.spec.display()),
        ));
    }
    let dir = index::dir(root)?;
    // Into the images directory under a name no other build uses, renamed to its id after.
    let (output, chosen) = match &b.output {
        Some(o) => (o.clone(), true),
        None => (
            dir.join(format!(".building-{}.eif", crate::util::random_id()?)),
            false,
        ),
    };
    let inputs = BuildInputs {
        spec: Some(b.spec.clone()),
        from: b.from,
        kernel_profile,
        kernel_dir: b.kernel_dir,
        init: ["ENCLAVE_ENGINE_INIT", "ENCLAVE_INIT"]
            .iter()
            .find_map(std::env::var_os)
            .map(PathBuf::from),
        attest_server: None,
        output: output.clone(),
        source_date_epoch: b.source_date_epoch.unwrap_or(0),
        name: b.name.clone(),
        version: b.version,
        signer: None,
        limits: Limits::default(),
    };
    let root = root.clone();
    let rec = blocking(move || -> Result<index::ImageRecord, ApiError> {
        let exe = std::env::current_exe()
            .map_err(|e| EngineError::Backend(format!("locating enclave-engine: {e}")))?;
        let request = images::prepare(inputs, &exe)?;
        if let Err(e) = build_eif(&request, &NoProgress) {
            if !chosen {
                let _ = std::fs::remove_file(&output);
            }
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "build_failed",
                format!("building from {}: {}", b.spec.display(), chain(&e)),
            ));
        }
        let eif = if chosen {
            output
        } else {
            let id = index::file_digest(&output)?;
            let done = dir.join(format!("{id}.eif"));
            std::fs::rename(&output, &done).map_err(|e| EngineError::io(&done, e))?;
            done
        };
        Ok(index::record(
            &root,
            &eif,
            Some(&b.spec),
            b.name.as_deref(),
        )?)
    })
    .await?;
    Ok(json_reply(StatusCode::CREATED, &rec))
}

/// One image's record, with its EIF measured again: `unchanged` says whether the file still
/// holds what was built.
pub fn inspect(root: &StateRoot, id: &str) -> Result<Reply, ApiError> {
    let rec = index::find(root, id)?;
    let now = EifReader::open(&rec.eif)
        .and_then(|mut r| r.measure())
        .ok()
        .map(|m| index::pcr_map(&m));
    let mut value = serde_json::to_value(&rec)
        .map_err(|e| EngineError::Invalid(format!("the record of image {id}: {e}")))?;
    value["measured_now"] = json!(now);
    value["unchanged"] = json!(now.as_ref() == Some(&rec.measurements));
    Ok(json_reply(StatusCode::OK, &value))
}

/// The PCRs of an EIF on this host, as `enclave-ctl measure --json` prints them.
pub async fn measure(body: &[u8]) -> Result<Reply, ApiError> {
    let b = measure_body(body)?;
    if !b.eif.is_file() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_eif",
            format!("{}: no such EIF file on this host", b.eif.display()),
        ));
    }
    let path = b.eif;
    let measurements = blocking(move || {
        EifReader::open(&path)
            .and_then(|mut r| r.measure())
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad_eif",
                    format!("{}: {e}", path.display()),
                )
            })
    })
    .await?;
    Ok(json_reply(StatusCode::OK, &measurements.to_nitro_cli()))
}
