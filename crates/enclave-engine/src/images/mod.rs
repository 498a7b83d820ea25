//! Images: what `enclave-ctl build` and the engine API's `POST /v1/images` share — turning a
//! build's inputs (a spec path, `--from`, the kernel profile and directory, the static
//! binaries) into the image library's [`BuildRequest`] — and the list of the EIFs the daemon
//! built ([`index`]).

pub mod index;

use std::path::{Path, PathBuf};

use enclave_image::build::BuildRequest;
use enclave_image::eif::EifSigner;
use enclave_image::kernel::{KernelInputs, KernelProfile};
use enclave_image::rootfs::Limits;
use enclave_image::source::ImageRef;
use enclave_spec::{EgressMode, EnclaveSpec};

use crate::error::{EngineError, Result};

/// What a build is asked for, before anything is read.
#[derive(Debug)]
pub struct BuildInputs {
    /// The spec file (`-f`); relative `from:` paths in it are relative to its directory.
    pub spec: Option<PathBuf>,
    /// `--from`, which wins over the spec's `from:`.
    pub from: Option<String>,
    /// The kernel profile.
    pub kernel_profile: KernelProfile,
    /// `--kernel-dir`; else the profile's variable, else the default directory.
    pub kernel_dir: Option<PathBuf>,
    /// The static enclave-init; else the installed and build layouts next to `exe`.
    pub init: Option<PathBuf>,
    /// The static enclave-attest; else next to the init (only when the spec attests).
    pub attest_server: Option<PathBuf>,
    /// Where the EIF goes.
    pub output: PathBuf,
    /// The time stamp of every entry (reproducible builds).
    pub source_date_epoch: i64,
    /// The image name in the EIF's metadata.
    pub name: Option<String>,
    /// The image version in the EIF's metadata.
    pub version: Option<String>,
    /// The PCR8 signer.
    pub signer: Option<EifSigner>,
    /// Caps on layers, the root filesystem and its entries.
    pub limits: Limits,
}

/// The library's request for `inputs`, with every input read and checked. `exe` is the running
/// binary, next to which the static binaries are looked for.
pub fn prepare(inputs: BuildInputs, exe: &Path) -> Result<BuildRequest> {
    let (spec, spec_dir) = match &inputs.spec {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                EngineError::Invalid(format!("reading the spec {}: {e}", path.display()))
            })?;
            let spec = EnclaveSpec::from_yaml(&text).map_err(|e| {
                EngineError::Invalid(format!("in {}: {}", path.display(), chain(&e)))
            })?;
            (spec, path.parent().map(Path::to_path_buf))
        }
        None => (EnclaveSpec::default(), None),
    };
    let source = resolve_source(inputs.from.as_deref(), &spec, spec_dir.as_deref())?;

    let profile = inputs.kernel_profile;
    let profile_var = match profile {
        KernelProfile::Emulated => crate::config::ENV_KERNEL_DIR_EMULATED,
        KernelProfile::Nitro => crate::config::ENV_KERNEL_DIR_NITRO,
    };
    let kernel_dir = inputs
        .kernel_dir
        .or_else(|| std::env::var_os(profile_var).map(PathBuf::from))
        .unwrap_or_else(|| KernelInputs::default_dir(profile));
    let mut kernel = KernelInputs::load(profile, &kernel_dir).map_err(|e| {
        let hint = match profile {
            KernelProfile::Emulated => {
                "the emulated kernel is fetched by scripts/fetch-kernel.sh (installed: \
                 <prefix>/libexec/enclave-engine/fetch-kernel.sh), or pass --kernel-dir"
            }
            KernelProfile::Nitro => {
                "pass --kernel-dir with nitro-cli's blobs (bzImage, bzImage.config, cmdline, nsm.ko)"
            }
        };
        EngineError::Invalid(format!("{hint}: {}", chain(&e)))
    })?;
    if spec.egress.mode == EgressMode::Transparent {
        let backend = kernel.add_netfilter().map_err(|e| {
            EngineError::Invalid(format!(
                "the spec asks for transparent egress, which needs netfilter in the {} kernel \
                 (for the emulated kernel, scripts/fetch-kernel.sh fetches its modules): {}",
                profile.name(),
                chain(&e)
            ))
        })?;
        tracing::debug!(
            backend = backend.name(),
            "transparent egress netfilter backend"
        );
    }

    let init = match inputs.init {
        Some(p) => p,
        None => find_init(exe)?,
    };
    tracing::debug!(init = %init.display(), "static enclave-init");
    let attest_server = match (&spec.attestation, inputs.attest_server) {
        (None, _) => None,
        (Some(_), Some(p)) => Some(p),
        (Some(_), None) => {
            let p = init.with_file_name("enclave-attest");
            if !p.is_file() {
                return Err(EngineError::Invalid(format!(
                    "the spec enables attestation, which needs the static enclave-attest binary; \
                     none at {} (build it with scripts/build-init.sh, or pass --attest-server)",
                    p.display()
                )));
            }
            Some(p)
        }
    };
    Ok(BuildRequest {
        source,
        spec,
        kernel,
        init,
        attest_server,
        output: inputs.output,
        source_date_epoch: inputs.source_date_epoch,
        image_name: inputs.name,
        image_version: inputs.version,
        signer: inputs.signer,
        limits: inputs.limits,
    })
}

/// An error and its sources, `: `-separated, as the CLI prints a context chain.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `--from` wins over the spec's `from:`, whose relative paths are relative to the spec file.
fn resolve_source(
    from: Option<&str>,
    spec: &EnclaveSpec,
    spec_dir: Option<&Path>,
) -> Result<ImageRef> {
    if let Some(from) = from {
        return from
            .parse()
            .map_err(|e| EngineError::Invalid(format!("--from {from}: {}", chain(&e))));
    }
    let Some(from) = &spec.from else {
        return Err(EngineError::Invalid(
            "no source image: pass --from SOURCE or set `from:` in the spec (-f)".into(),
        ));
    };
    let source: ImageRef = from
        .parse()
        .map_err(|e| EngineError::Invalid(format!("the spec's from: {from}: {}", chain(&e))))?;
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

/// The static init when none is named: the installed layout (`<prefix>/bin/enclave-ctl` with
/// `<prefix>/libexec/enclave-engine/enclave-init`, as scripts/install.sh puts them), then the
/// layouts of older installs and of cargo's target directory (where scripts/build-init.sh puts
/// it). The error lists every place looked at.
fn find_init(exe: &Path) -> Result<PathBuf> {
    let candidates = init_candidates(exe);
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let searched: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    Err(EngineError::Invalid(format!(
        "no static enclave-init found (looked in {}): install with scripts/install.sh, or build \
         it with scripts/build-init.sh, or pass --init PATH (or set ENCLAVE_ENGINE_INIT)",
        searched.join(", ")
    )))
}

/// Where [`find_init`] looks, in order, for a binary at `exe`.
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

    #[test]
    fn relative_sources_are_relative_to_the_spec() {
        let src = relative_to(
            ImageRef::Dir {
                path: "rootfs".into(),
            },
            Path::new("/srv/app"),
        );
        assert_eq!(
            src,
            ImageRef::Dir {
                path: "/srv/app/rootfs".into()
            }
        );
    }
}
