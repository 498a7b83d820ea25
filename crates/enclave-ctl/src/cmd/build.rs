//! `enclave-ctl build`: the inputs (resolved by `enclave_engine::images`, as for the engine
//! API), the library's build with a progress bar, the measurements printed.

use anyhow::{Context, Result};
use enclave_engine::images::{self, BuildInputs};
use enclave_image::build::{build, BuildError};
use enclave_image::eif::EifSigner;
use enclave_image::kernel::KernelProfile;
use enclave_image::rootfs::{LimitExceeded, RootfsError};

use crate::cli::{BuildArgs, EXIT_OK};
use crate::progress::TerminalProgress;

/// Runs the command; returns the exit status.
pub fn run(args: BuildArgs) -> Result<i32> {
    let kernel_profile: KernelProfile = args.kernel_profile.parse().map_err(anyhow::Error::msg)?;
    let signer = match (&args.signing_certificate, &args.private_key) {
        (Some(cert), Some(key)) => {
            Some(EifSigner::from_pem_files(cert, key).context("loading the signing key")?)
        }
        _ => None,
    };
    let inputs = BuildInputs {
        spec: args.spec.clone(),
        from: args.from.clone(),
        kernel_profile,
        kernel_dir: args.kernel_dir.clone(),
        init: args.init.clone(),
        attest_server: args.attest_server.clone(),
        output: args.output.clone(),
        source_date_epoch: args.source_date_epoch,
        name: args.name.clone(),
        version: args.image_version.clone(),
        signer,
        limits: args.limits(),
    };
    let exe = std::env::current_exe().context("locating enclave-ctl")?;
    let request = images::prepare(inputs, &exe)?;
    let progress = TerminalProgress::new(args.quiet || args.json);
    let result = build(&request, &progress);
    progress.finish();
    let out = result
        .map_err(with_limit_hint)
        .with_context(|| format!("building {}", args.output.display()))?;

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out.measurements.to_nitro_cli())?
        );
    } else {
        println!("Built {} ({} bytes)", args.output.display(), out.eif_size);
        println!("PCR0  {}", out.measurements.pcr0_hex());
        println!("PCR1  {}", out.measurements.pcr1_hex());
        println!("PCR2  {}", out.measurements.pcr2_hex());
        if let Some(pcr8) = out.measurements.pcr8_hex() {
            println!("PCR8  {pcr8}");
        }
    }
    Ok(EXIT_OK)
}

/// A limit error names the option that raises the limit; other errors pass unchanged.
fn with_limit_hint(err: BuildError) -> anyhow::Error {
    let BuildError::Rootfs(RootfsError::Limit { limit, .. }) = &err else {
        return err.into();
    };
    let option = match limit {
        LimitExceeded::LayerBytes { .. } => "--max-layer-size",
        LimitExceeded::RootfsBytes { .. } => "--max-rootfs-size",
        LimitExceeded::Entries { .. } => "--max-entries",
        // A fixed cap: no real image comes near it.
        LimitExceeded::ExtensionHeader { .. } => return err.into(),
    };
    anyhow::anyhow!("{err} (raise it with {option} if the image is really that large)")
}
