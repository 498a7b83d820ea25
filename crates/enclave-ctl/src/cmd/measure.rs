//! `enclave-ctl measure`: PCRs of an EIF, or PCR8 of a signing certificate (`nitro-cli pcr`).

use anyhow::{Context, Result};
use enclave_image::eif::{pcr8_of_certificate, EifReader, Measurements};

use crate::cli::{MeasureArgs, EXIT_CHECK_FAILED, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: MeasureArgs) -> Result<i32> {
    if let Some(cert) = &args.signing_certificate {
        let pem = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let pcr8 = pcr8_of_certificate(&pem)
            .with_context(|| format!("{} is not a PEM or DER certificate", cert.display()))?;
        let pcr8 = hex::encode(pcr8);
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "HashAlgorithm": enclave_image::eif::pcr::HASH_ALGORITHM, "PCR8": pcr8 })
            );
        } else {
            println!("PCR8  {pcr8}");
        }
        return Ok(EXIT_OK);
    }
    let Some(path) = &args.eif else {
        // clap's argument group makes one of the two required.
        anyhow::bail!("give an EIF or --signing-certificate");
    };
    let mut reader =
        EifReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let measurements = match reader.measure() {
        Ok(m) => m,
        Err(e @ enclave_image::eif::ReadError::CrcMismatch { .. }) => {
            eprintln!(
                "error: {}: {e}; the image is corrupt, its PCRs are meaningless",
                path.display()
            );
            return Ok(EXIT_CHECK_FAILED);
        }
        Err(e) => return Err(e).with_context(|| format!("measuring {}", path.display())),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&measurements.to_nitro_cli())?
        );
    } else {
        print_pcrs(&measurements);
    }
    Ok(EXIT_OK)
}

/// The PCRs as `measure` and `sign` print them: one per line, PCR8 when signed.
pub fn print_pcrs(measurements: &Measurements) {
    println!("PCR0  {}", measurements.pcr0_hex());
    println!("PCR1  {}", measurements.pcr1_hex());
    println!("PCR2  {}", measurements.pcr2_hex());
    if let Some(pcr8) = measurements.pcr8_hex() {
        println!("PCR8  {pcr8}");
    }
}
