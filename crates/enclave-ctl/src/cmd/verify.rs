//! `enclave-ctl verify DOC | --https ADDR`: verify an attestation document against a pinned root
//! and a policy; with `--https`, fetched from an attestation server over attested TLS.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use enclave_attest::client::{AttestedClient, ClientAuth, ClientError, ClientOptions};
use enclave_attest::{parse_hex_arg, parse_time, verify, Policy, TrustRoot, VerifyOptions};

use crate::cli::{VerifyArgs, EXIT_CHECK_FAILED, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: VerifyArgs) -> Result<i32> {
    let options = options(&args)?;
    if let Some(addr) = &args.https {
        return verify_https(&args, addr, options);
    }
    let path = args.doc.clone().unwrap_or_default();
    let doc = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(enclave_attest::MAX_DOCUMENT_LEN as u64 * 4)
            .read_to_end(&mut buf)
            .context("reading the document from stdin")?;
        buf
    } else {
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
    };
    report_outcome(&args, verify(&doc, &options))
}

/// `--https`: attested TLS to an attestation server.
fn verify_https(args: &VerifyArgs, addr: &str, verify: VerifyOptions) -> Result<i32> {
    let mut options = ClientOptions::new(verify);
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        options.client_auth = Some(
            ClientAuth::from_pem(&read(cert)?, &read(key)?)
                .context("loading the client certificate")?,
        );
    }
    let outcome = match AttestedClient::connect(addr, &options) {
        Ok((mut client, verified)) => {
            if let Some(out) = &args.output {
                std::fs::write(out, &verified.document)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            eprintln!(
                "attested TLS: the server's key {} is the one the document binds (nonce {})",
                short_hex(&verified.tls_public_key),
                hex::encode(&verified.nonce)
            );
            for path in &args.files {
                let file = client
                    .get_file_proof(path)
                    .with_context(|| format!("file attestation of {path}"))?;
                eprintln!(
                    "file {}: sha3-512 {} (VRF proof verified under the attested key)",
                    file.path,
                    hex::encode(file.sha3_512)
                );
            }
            Ok(verified.report)
        }
        Err(ClientError::Verify(e)) => Err(e),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "could not get a verifiable document from https://{addr}"
            )))
        }
    };
    report_outcome(args, outcome)
}

fn short_hex(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    format!("…{}", &h[h.len().saturating_sub(16)..])
}

fn report_outcome(
    args: &VerifyArgs,
    outcome: std::result::Result<enclave_attest::Report, enclave_attest::Error>,
) -> Result<i32> {
    match outcome {
        Ok(report) => {
            if args.json {
                let mut value = serde_json::to_value(&report)?;
                value["Verified"] = serde_json::Value::Bool(true);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("{report}");
                println!("OK: the document is genuine and the policy holds");
            }
            Ok(EXIT_OK)
        }
        Err(err) => {
            if args.json {
                let value = serde_json::json!({ "Verified": false, "Error": err.to_string() });
                println!("{}", serde_json::to_string_pretty(&value)?);
            }
            eprintln!("verification failed: {err}");
            if matches!(err, enclave_attest::Error::EmulationRoot { .. }) {
                let state = std::env::var_os("ENCLAVE_ENGINE_STATE_DIR").map(PathBuf::from);
                let root = super::attest::emulation_ca_dir(state.as_deref())
                    .map(|dir| dir.join(enclave_attest::emulated::ROOT_CERT_FILE));
                if let Some(root) = root.ok().filter(|r| r.is_file()) {
                    eprintln!("this host's emulation root is {}", root.display());
                }
            }
            Ok(EXIT_CHECK_FAILED)
        }
    }
}

fn options(args: &VerifyArgs) -> Result<VerifyOptions> {
    let mut policy = Policy {
        allow_debug: args.allow_debug,
        ..Policy::default()
    };
    for pcr in &args.pcrs {
        let (index, value) = Policy::parse_pcr_arg(pcr)?;
        policy.pcrs.insert(index, value);
    }
    policy.nonce = args
        .nonce
        .as_deref()
        .map(|h| parse_hex_arg("nonce", h))
        .transpose()?;
    policy.user_data = args
        .user_data
        .as_deref()
        .map(|h| parse_hex_arg("user data", h))
        .transpose()?;
    policy.public_key = args
        .public_key
        .as_deref()
        .map(|h| parse_hex_arg("public key", h))
        .transpose()?;
    let mut roots = Vec::new();
    for path in &args.trust_roots {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        roots.extend(
            TrustRoot::from_pem_or_der(&bytes)
                .with_context(|| format!("{} is not a PEM or DER certificate", path.display()))?,
        );
    }
    let at = args.at.as_deref().map(parse_time).transpose()?;
    Ok(VerifyOptions { at, roots, policy })
}
