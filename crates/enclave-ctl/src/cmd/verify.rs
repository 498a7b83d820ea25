//! `enclave-ctl verify DOC | --https ADDR`: verify an attestation document against a pinned root
//! and a policy; with `--https`, fetched from an attestation server over attested TLS.
//!
//! The policy must say which enclave is expected (PCR0 or PCR8, or `--any-enclave`): without
//! one, every genuine document passes, an attacker's enclave included, so the command refuses
//! to run (exit 4) before reading or fetching anything.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use enclave_attest::client::{AttestedClient, ClientAuth, ClientError, ClientOptions};
use enclave_attest::{
    parse_hex_arg, parse_time, verify, Expectation, Policy, Report, TrustRoot, VerifyOptions,
};

use crate::cli::{VerifyArgs, EXIT_CHECK_FAILED, EXIT_NO_EXPECTATION, EXIT_OK};

/// The PCRs the `--any-enclave` warning shows: the image, kernel, application and signer.
const IDENTITY_PCRS: [u8; 4] = [0, 1, 2, 8];

/// Runs the command; returns the exit status.
pub fn run(args: VerifyArgs) -> Result<i32> {
    let Some(expectation) = expectation(&args)? else {
        return Ok(EXIT_NO_EXPECTATION);
    };
    let options = options(&args, expectation)?;
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
                    "file {}: sha3-512 {} at generation {} of epoch {} (VRF proof verified under the attested key)",
                    file.path,
                    hex::encode(file.sha3_512),
                    file.generation,
                    file.epoch
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
    outcome: std::result::Result<Report, enclave_attest::Error>,
) -> Result<i32> {
    match outcome {
        Ok(report) => {
            if args.any_enclave {
                warn_any_enclave(&report);
            }
            if args.json {
                let mut value = serde_json::to_value(&report)?;
                value["Verified"] = serde_json::Value::Bool(true);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("{report}");
                if args.any_enclave {
                    println!("OK: the document is genuine; no PCR was pinned (--any-enclave)");
                } else {
                    println!("OK: the document is genuine and the policy holds");
                }
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
                let root = super::state_dir::emulation_ca_dir(state.as_deref())
                    .map(|dir| dir.join(enclave_nsm::emulated::ROOT_CERT_FILE));
                if let Some(root) = root.ok().filter(|r| r.is_file()) {
                    eprintln!("this host's emulation root is {}", root.display());
                }
            }
            Ok(EXIT_CHECK_FAILED)
        }
    }
}

/// What the user expects of the enclave, or `None` (after saying why on stderr) when the
/// arguments pin nothing.
fn expectation(args: &VerifyArgs) -> Result<Option<Expectation>> {
    if args.any_enclave {
        return Ok(Some(Expectation::AnyEnclave));
    }
    let pcrs = args
        .pcrs
        .iter()
        .map(|p| Policy::parse_pcr_arg(p))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    match Expectation::pcrs(pcrs) {
        Ok(e) => Ok(Some(e)),
        Err(err @ enclave_attest::Error::NoExpectation { .. }) => {
            eprintln!("error: {err}");
            eprintln!("say which enclave you expect, with at least one of:");
            eprintln!("  --pcr 0=HEX     PCR0 of the image (printed by `enclave-ctl build` and `measure`)");
            eprintln!("  --pcr 8=HEX     PCR8 of the certificate that signed the image");
            eprintln!(
                "  --any-enclave   any genuine enclave, whatever code it runs (an attacker's too)"
            );
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// `--any-enclave` passed: say what that means and what to pin next time.
fn warn_any_enclave(report: &Report) {
    eprintln!(
        "warning: --any-enclave: no PCR was pinned, so any genuine enclave passes, one running \
         an attacker's code included. This enclave measures:"
    );
    for i in IDENTITY_PCRS {
        if let Some(v) = report.pcrs.get(&i) {
            eprintln!("  --pcr {i}={}", hex::encode(&v.0));
        }
    }
    eprintln!("pin PCR0 (the image) or PCR8 (its signer) next time, once you trust them");
}

fn options(args: &VerifyArgs, expectation: Expectation) -> Result<VerifyOptions> {
    let mut policy = Policy::new(expectation);
    policy.allow_debug_capabilities = args.allow_debug;
    policy.allow_debug_mode = args.allow_debug_mode;
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
