//! `enclave-ctl package`: an EIF, with this project's binaries, as an OCI image on a base image
//! (the work is enclave-image's `package`); prints the manifest digest.

use anyhow::{Context, Result};
use enclave_image::package::{package, PackageRequest};

use crate::cli::{PackageArgs, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: PackageArgs) -> Result<i32> {
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("locating enclave-ctl")?
            .parent()
            .context("locating enclave-ctl's directory")?
            .to_owned(),
    };
    let request = PackageRequest {
        eif: args.eif,
        base: args.base,
        target: args.output,
        bin_dir,
        name: args.name,
        source_date_epoch: args.source_date_epoch,
    };
    let out = package(&request).with_context(|| {
        format!(
            "packaging {} into {}",
            request.eif.display(),
            request.target.path().display()
        )
    })?;
    if args.json {
        let json = serde_json::json!({
            "manifest_digest": out.manifest_digest.as_str(),
            "config_digest": out.config_digest.as_str(),
            "layer_digest": out.layer.digest.as_str(),
            "layer_size": out.layer.size,
            "pcrs": out.measurements.to_map(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "Packaged {}:{} (enclave name {})",
            request.target.path().display(),
            out.tag,
            out.name
        );
        println!("Manifest {}", out.manifest_digest);
        super::measure::print_pcrs(&out.measurements);
    }
    Ok(EXIT_OK)
}
