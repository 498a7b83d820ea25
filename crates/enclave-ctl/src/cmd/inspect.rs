//! `enclave-ctl inspect EIF`: what `nitro-cli describe-eif` prints, plus the section table and
//! our provenance. Checks the CRC and the signature and says which failed (exit status 3).

use std::time::SystemTime;

use anyhow::{Context, Result};
use enclave_image::eif::reader::Metadata;
use enclave_image::eif::{EifReader, ReadError};
use enclave_image::metadata::Provenance;
use serde_json::{json, Map, Value};

use crate::cli::{InspectArgs, EXIT_CHECK_FAILED, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: InspectArgs) -> Result<i32> {
    let path = &args.eif;
    let mut reader =
        EifReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut problems = Vec::new();

    let sections: Vec<Value> = reader
        .sections()
        .iter()
        .map(|s| json!({"Index": s.index, "Type": s.section_type.to_string(), "Offset": s.offset, "Size": s.size}))
        .collect();
    let metadata = match reader.metadata() {
        Ok(Some(Metadata::Json(v))) => Some(v),
        Ok(Some(Metadata::Raw(_))) => {
            problems.push("the metadata section is not JSON".to_owned());
            None
        }
        Ok(None) => None,
        Err(e) => {
            problems.push(format!("metadata: {e}"));
            None
        }
    };

    let mut out = Map::new();
    out.insert("EifVersion".into(), json!(reader.header().version));
    let is_signed = reader.is_signed();
    let crc_ok = match reader.check_crc() {
        Ok(()) => true,
        Err(e @ ReadError::CrcMismatch { .. }) => {
            problems.push(e.to_string());
            false
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if crc_ok {
        let measurements = reader
            .measure()
            .with_context(|| format!("measuring {}", path.display()))?;
        out.insert(
            "Measurements".into(),
            serde_json::to_value(measurements.to_nitro_cli().measurements)?,
        );
    }
    out.insert("IsSigned".into(), json!(is_signed));
    if is_signed {
        if let Some(section) = reader.signature_section()? {
            match enclave_image::eif::cert_info::certificate_info(&section) {
                Ok(info) => {
                    out.insert("SigningCertificate".into(), serde_json::to_value(info)?);
                }
                Err(e) => problems.push(format!("signing certificate: {e}")),
            }
        }
    }
    out.insert("CheckCRC".into(), json!(crc_ok));
    if is_signed {
        let check = match reader.verify_signature(SystemTime::now()) {
            Ok(_) => true,
            Err(e) => {
                problems.push(format!("signature check failed: {e}"));
                false
            }
        };
        out.insert("SignatureCheck".into(), json!(check));
    }
    let provenance = metadata
        .as_ref()
        .and_then(|m| m.get("CustomMetadata"))
        .and_then(Provenance::from_custom);
    if let Some(meta) = &metadata {
        out.insert(
            "ImageName".into(),
            meta.get("ImageName").cloned().unwrap_or(Value::Null),
        );
        out.insert(
            "ImageVersion".into(),
            meta.get("ImageVersion").cloned().unwrap_or(Value::Null),
        );
        // describe-eif flattens BuildMetadata next to DockerInfo and CustomMetadata.
        let mut m = meta
            .get("BuildMetadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for key in ["DockerInfo", "CustomMetadata"] {
            m.insert(key.into(), meta.get(key).cloned().unwrap_or(Value::Null));
        }
        out.insert("Metadata".into(), Value::Object(m));
    }
    out.insert("Sections".into(), Value::Array(sections));
    out.insert("Provenance".into(), serde_json::to_value(&provenance)?);
    if !problems.is_empty() {
        out.insert("Problems".into(), json!(problems));
    }

    let failed = !crc_ok || out.get("SignatureCheck") == Some(&json!(false));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    } else {
        print_text(path, &out, provenance.as_ref());
    }
    for p in &problems {
        eprintln!("error: {}: {p}", path.display());
    }
    Ok(if failed { EXIT_CHECK_FAILED } else { EXIT_OK })
}

fn print_text(path: &std::path::Path, out: &Map<String, Value>, provenance: Option<&Provenance>) {
    let s = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(v) => v.to_string(),
    };
    println!("EIF             {}", path.display());
    println!("EifVersion      {}", s(out.get("EifVersion")));
    println!("ImageName       {}", s(out.get("ImageName")));
    println!("ImageVersion    {}", s(out.get("ImageVersion")));
    let check = |key: &str| match out.get(key) {
        Some(Value::Bool(true)) => "ok",
        Some(Value::Bool(false)) => "FAILED",
        _ => "-",
    };
    println!("CheckCRC        {}", check("CheckCRC"));
    println!("IsSigned        {}", s(out.get("IsSigned")));
    println!("SignatureCheck  {}", check("SignatureCheck"));
    if let Some(Value::Object(cert)) = out.get("SigningCertificate") {
        for (k, v) in cert {
            println!("  {k:<14}{}", s(Some(v)));
        }
    }
    if let Some(Value::Object(m)) = out.get("Measurements") {
        println!("Measurements");
        for (k, v) in m {
            println!("  {k:<14}{}", s(Some(v)));
        }
    }
    if let Some(Value::Object(m)) = out.get("Metadata") {
        println!("Metadata");
        for (k, v) in m {
            if k != "CustomMetadata" && k != "DockerInfo" {
                println!("  {k:<18}{}", s(Some(v)));
            }
        }
    }
    if let Some(Value::Array(sections)) = out.get("Sections") {
        println!(
            "Sections\n  {:<3} {:<10} {:>12} {:>12}",
            "#", "type", "offset", "size"
        );
        for sec in sections {
            println!(
                "  {:<3} {:<10} {:>12} {:>12}",
                s(sec.get("Index")),
                s(sec.get("Type")),
                s(sec.get("Offset")),
                s(sec.get("Size"))
            );
        }
    }
    if let Some(p) = provenance {
        println!(
            "Provenance (profile {}, SOURCE_DATE_EPOCH {})",
            p.kernel_profile, p.source_date_epoch
        );
        println!("  cmdline: {}", p.cmdline);
        for input in &p.inputs {
            println!("  {:<15} {:<48} {}", input.role, input.name, input.digest);
        }
    }
}
