//! `enclave-ctl build`: resolve the inputs, run the library's build, print the measurements.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use enclave_image::build::{build, BuildError, BuildRequest};
use enclave_image::eif::EifSigner;
use enclave_image::kernel::{KernelInputs, KernelProfile};
use enclave_image::rootfs::{LimitExceeded, RootfsError};
use enclave_image::source::ImageRef;
use enclave_spec::EgressMode;
use enclave_spec::EnclaveSpec;

use crate::cli::{BuildArgs, EXIT_OK};
use crate::progress::TerminalProgress;

/// Runs the command; returns the exit status.
pub fn run(args: BuildArgs) -> Result<i32> {
    let (spec, spec_dir) = match &args.spec {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the spec {}", path.display()))?;
            let spec =
                EnclaveSpec::from_yaml(&text).with_context(|| format!("in {}", path.display()))?;
            (spec, path.parent().map(Path::to_path_buf))
        }
        None => (EnclaveSpec::default(), None),
    };
    let source = resolve_source(&args, &spec, spec_dir.as_deref())?;

    let profile: KernelProfile = args.kernel_profile.parse().map_err(anyhow::Error::msg)?;
    // --kernel-dir, then the profile's variable (which the config file may fill), then the default.
    let profile_var = match profile {
        KernelProfile::Emulated => enclave_engine::config::ENV_KERNEL_DIR_EMULATED,
        KernelProfile::Nitro => enclave_engine::config::ENV_KERNEL_DIR_NITRO,
    };
    let kernel_dir = args
        .kernel_dir
        .clone()
        .or_else(|| std::env::var_os(profile_var).map(PathBuf::from))
        .unwrap_or_else(|| KernelInputs::default_dir(profile));
    let mut kernel = KernelInputs::load(profile, &kernel_dir).with_context(|| match profile {
        KernelProfile::Emulated => {
            "the emulated kernel is fetched by scripts/fetch-kernel.sh (installed: \
             <prefix>/libexec/enclave-engine/fetch-kernel.sh), or pass --kernel-dir"
        }
        KernelProfile::Nitro => {
            "pass --kernel-dir with nitro-cli's blobs (bzImage, bzImage.config, cmdline, nsm.ko)"
        }
    })?;
    if spec.egress.mode == EgressMode::Transparent {
        let backend = kernel.add_netfilter().with_context(|| {
            format!(
                "the spec asks for transparent egress, which needs netfilter in the {} kernel \
                 (for the emulated kernel, scripts/fetch-kernel.sh fetches its modules)",
                profile.name()
            )
        })?;
        tracing::debug!(
            backend = backend.name(),
            "transparent egress netfilter backend"
        );
    }

    let init = match &args.init {
        Some(p) => p.clone(),
        None => find_init()?,
    };
    tracing::debug!(init = %init.display(), "static enclave-init");

    let signer = match (&args.signing_certificate, &args.private_key) {
        (Some(cert), Some(key)) => {
            Some(EifSigner::from_pem_files(cert, key).context("loading the signing key")?)
        }
        _ => None,
    };

    let attest_server = match (&spec.attestation, &args.attest_server) {
        (None, _) => None,
        (Some(_), Some(p)) => Some(p.clone()),
        (Some(_), None) => {
            let p = init.with_file_name("enclave-attest");
            if !p.is_file() {
                bail!(
                    "the spec enables attestation, which needs the static enclave-attest binary; \
                     none at {} (build it with scripts/build-init.sh, or pass --attest-server)",
                    p.display()
                );
            }
            Some(p)
        }
    };

    let request = BuildRequest {
        source,
        spec,
        kernel,
        init,
        attest_server,
        output: args.output.clone(),
        source_date_epoch: args.source_date_epoch,
        image_name: args.name.clone(),
        image_version: args.image_version.clone(),
        signer,
        limits: args.limits(),
    };
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

/// `--from` wins over the spec's `from:`, whose relative paths are relative to the spec file.
fn resolve_source(
    args: &BuildArgs,
    spec: &EnclaveSpec,
    spec_dir: Option<&Path>,
) -> Result<ImageRef> {
    if let Some(from) = &args.from {
        return from.parse().with_context(|| format!("--from {from}"));
    }
    let Some(from) = &spec.from else {
        bail!("no source image: pass --from SOURCE or set `from:` in the spec (-f)");
    };
    let source: ImageRef = from
        .parse()
        .with_context(|| format!("the spec's from: {from}"))?;
    Ok(match spec_dir {
        Some(dir) => relative_to(source, dir),
        None => source,
    })
}

/// Makes a relative source path relative to `dir` instead of the working directory.
fn relative_to(source: ImageRef, dir: &Path) -> ImageRef {
    let join = |p: PathBuf| if p.is_relative() { dir.join(p) } else { p };
    match source {
        ImageRef::Oci { dir: d, tag } => ImageRef::Oci { dir: join(d), tag },
        ImageRef::OciArchive { archive, tag } => ImageRef::OciArchive {
            archive: join(archive),
            tag,
        },
        ImageRef::DockerArchive { archive, reference } => ImageRef::DockerArchive {
            archive: join(archive),
            reference,
        },
        ImageRef::Dir { path } => ImageRef::Dir { path: join(path) },
    }
}

/// The static init when neither `--init` nor `ENCLAVE_ENGINE_INIT` (or `ENCLAVE_INIT`) names one: the installed layout
/// (`<prefix>/bin/enclave-ctl` with `<prefix>/libexec/enclave-engine/enclave-init`, as
/// scripts/install.sh puts them), then the layouts of older installs and of cargo's target
/// directory (where scripts/build-init.sh puts it). The error lists every place looked at.
fn find_init() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating enclave-ctl")?;
    let candidates = init_candidates(&exe);
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let searched: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    bail!(
        "no static enclave-init found (looked in {}): install with scripts/install.sh, or build \
         it with scripts/build-init.sh, or pass --init PATH (or set ENCLAVE_ENGINE_INIT)",
        searched.join(", ")
    )
}

/// Where [`find_init`] looks, in order, for an enclave-ctl at `exe`.
fn init_candidates(exe: &Path) -> Vec<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("."));
    let prefix = dir.parent().unwrap_or(dir);
    vec![
        prefix.join("libexec/enclave-engine/enclave-init"),
        dir.join("enclave-init.static"),
        prefix.join("share/enclave-engine/enclave-init"),
        prefix.join("enclave-init/enclave-init"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_layout_comes_first() {
        let found = init_candidates(Path::new("/opt/ee/bin/enclave-ctl"));
        assert_eq!(
            found[0],
            Path::new("/opt/ee/libexec/enclave-engine/enclave-init")
        );
        assert!(found.contains(&PathBuf::from("/opt/ee/enclave-init/enclave-init")));
    }
}
