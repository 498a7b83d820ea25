//! `enclave-ctl sign`: sign an existing EIF (nitro-cli's `sign-eif`), print its measurements.

use anyhow::{Context, Result};
use enclave_image::eif::{sign_eif_file, EifSigner};

use crate::cli::{SignArgs, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: SignArgs) -> Result<i32> {
    let signer = EifSigner::from_pem_files(&args.signing_certificate, &args.private_key)
        .context("loading the signing key")?;
    let output = args.output.as_deref().unwrap_or(&args.eif);
    let measurements = sign_eif_file(&args.eif, output, &signer)
        .with_context(|| format!("signing {}", args.eif.display()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&measurements.to_nitro_cli())?
        );
    } else {
        println!("Signed {} ({})", output.display(), signer.subject());
        super::measure::print_pcrs(&measurements);
    }
    Ok(EXIT_OK)
}
