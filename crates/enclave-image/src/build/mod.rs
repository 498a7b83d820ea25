//! The build pipeline: image source + spec + kernel + init -> EIF.
//!
//! One pass, streaming: layers are applied into a metadata-only tree whose file contents sit in
//! a spool file; the bootstrap and app ramdisks are written as cpio straight into the EIF's
//! sections while PCRs and the CRC are computed; the EIF is written to a temporary file next to
//! the output and renamed into place only when complete, so a failed build leaves nothing.

mod app_config;
mod bootstrap;
mod elf;

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use enclave_spec::EnclaveSpec;

use crate::cpio::{CpioError, CpioWriter, EntryMeta};
use crate::eif::{EifOptions, EifSigner, EifWriter, Measurements, WriteError};
use crate::kernel::{InputFile, KernelError, KernelInputs};
use crate::metadata::{
    rfc3339, BuildMetadata, EifMetadata, Provenance, ProvenanceInput, BUILD_TOOL,
    PROVENANCE_VERSION,
};
use crate::rootfs::{Limits, RootfsError, RootfsTree};
use crate::source::{Image, ImageRef, SourceError};

pub use app_config::merge as merge_app_config;
pub use elf::check_static_elf;

/// Errors of a build. Each names what failed; none leaves a partial output file.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The image source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A layer could not be applied.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// A ramdisk could not be written.
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// The EIF could not be written.
    #[error(transparent)]
    Eif(#[from] WriteError),
    /// The kernel profile is incomplete.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The init binary cannot boot an enclave.
    #[error("the init binary {path}: {reason}")]
    Init {
        /// The binary.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// Neither the image nor the spec says what to run.
    #[error("nothing to run: the image has no Entrypoint or Cmd, and the spec sets neither")]
    NothingToRun,
    /// An input file changed while the build read it.
    #[error("{0} changed during the build; try again")]
    InputChanged(PathBuf),
    /// SOURCE_DATE_EPOCH cannot be used.
    #[error("invalid SOURCE_DATE_EPOCH: {0}")]
    Epoch(String),
    /// An I/O error outside the parts above.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A bug: an invariant did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Reports progress of a long build; the CLI draws a bar with it.
pub trait Progress {
    /// A new phase begins; `total_bytes` is 0 when unknown.
    fn phase(&self, name: &str, total_bytes: u64);
    /// `bytes` more of the phase are done.
    fn advance(&self, bytes: u64);
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
}

/// What to build.
pub struct BuildRequest {
    /// The image source.
    pub source: ImageRef,
    /// The enclave spec (its `from` is ignored here: `source` is authoritative).
    pub spec: EnclaveSpec,
    /// Kernel, cmdline and modules.
    pub kernel: KernelInputs,
    /// The static enclave-init binary.
    pub init: PathBuf,
    /// The static enclave-attest binary (the attestation server); needed when the spec has an
    /// `attestation` section, left out of the image otherwise.
    pub attest_server: Option<PathBuf>,
    /// Where to write the EIF.
    pub output: PathBuf,
    /// Time stamp of every entry and of the metadata's BuildTime.
    pub source_date_epoch: i64,
    /// ImageName (default: the spec's name, else derived from the source).
    pub image_name: Option<String>,
    /// ImageVersion (default: the source's tag, else `latest`).
    pub image_version: Option<String>,
    /// Signs PCR0 and adds PCR8 when set.
    pub signer: Option<EifSigner>,
    /// Caps on what the image's layers (or `dir:` input) may hold.
    pub limits: Limits,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// PCR0/1/2 (and 8 when signed).
    pub measurements: Measurements,
    /// EIF size in bytes.
    pub eif_size: u64,
    /// The provenance recorded in the metadata.
    pub provenance: Provenance,
}

/// Builds an EIF. See the module documentation for how.
pub fn build(req: &BuildRequest, progress: &dyn Progress) -> Result<BuildOutput, BuildError> {
    let mtime = u32::try_from(req.source_date_epoch).map_err(|_| {
        BuildError::Epoch(format!(
            "{} is outside 0..={} (cpio stores 32-bit times)",
            req.source_date_epoch,
            u32::MAX
        ))
    })?;
    let build_time = rfc3339(req.source_date_epoch).map_err(BuildError::Epoch)?;

    check_static_elf(&req.init).map_err(|reason| BuildError::Init {
        path: req.init.clone(),
        reason,
    })?;
    let init = open_input("enclave-init", &req.init)?;

    if req.spec.egress.mode == enclave_spec::EgressMode::Transparent
        && req.kernel.netfilter.is_none()
    {
        // The caller decides whether to add netfilter (KernelInputs::add_netfilter); an image
        // whose spec asks for transparent egress must not silently boot without it.
        return Err(BuildError::Kernel(KernelError::Invalid {
            profile: req.kernel.profile.name(),
            path: req.kernel.dir.clone(),
            reason: "the spec asks for transparent egress but the kernel inputs have no \
                     netfilter (KernelInputs::add_netfilter was not called or failed)"
                .into(),
        }));
    }

    let attest_server = match (&req.spec.attestation, &req.attest_server) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(BuildError::Init {
                path: PathBuf::from("enclave-attest"),
                reason: "the spec enables attestation (`attestation:`), which needs the static \
                         enclave-attest binary; build it with scripts/build-init.sh"
                    .into(),
            })
        }
        (Some(_), Some(path)) => {
            check_static_elf(path).map_err(|reason| BuildError::Init {
                path: path.clone(),
                reason,
            })?;
            Some(open_input("enclave-attest", path)?)
        }
    };

    progress.phase("reading image", 0);
    let image = Image::open(&req.source)?;
    let app = merge_app_config(&image.config, &req.spec).ok_or(BuildError::NothingToRun)?;
    let app_json = to_json(&app)?;
    let spec_json = req.spec.to_canonical_json();

    let tree = apply_layers(&image, req.limits, progress)?;

    let provenance = provenance(req, &image, &init, attest_server.as_ref(), &spec_json);
    let metadata = EifMetadata {
        image_name: req
            .image_name
            .clone()
            .or_else(|| req.spec.name.clone())
            .unwrap_or_else(|| default_image_name(&req.source)),
        image_version: req
            .image_version
            .clone()
            .unwrap_or_else(|| default_image_version(&req.source)),
        build: BuildMetadata {
            build_time,
            build_tool: BUILD_TOOL.into(),
            build_tool_version: env!("CARGO_PKG_VERSION").into(),
            operating_system: "linux".into(),
            kernel_version: req.kernel.version.clone(),
        },
        docker_info: docker_info(&image),
        custom: provenance.to_custom(),
    };
    let metadata_json = to_json(&metadata)?;

    let out_dir = parent_dir(&req.output);
    let tmp = tempfile::Builder::new()
        .prefix(".enclave-ctl-build-")
        .tempfile_in(out_dir)
        .map_err(|source| BuildError::Io {
            what: format!("creating a temporary file in {}", out_dir.display()),
            source,
        })?;
    let file = tmp.as_file().try_clone().map_err(|source| BuildError::Io {
        what: "duplicating the output file handle".into(),
        source,
    })?;

    progress.phase("writing kernel", req.kernel.kernel.size);
    let mut eif = EifWriter::new(file, EifOptions::default())?;
    let mut kernel = open(&req.kernel.kernel.path)?;
    eif.kernel(&mut kernel)?;
    progress.advance(req.kernel.kernel.size);
    eif.cmdline(&req.kernel.cmdline)?;
    eif.metadata(&metadata_json)?;

    progress.phase("writing bootstrap ramdisk", 0);
    let rd = eif.ramdisk()?;
    bootstrap::write_bootstrap(rd, mtime, &req.kernel, &init, attest_server.as_ref())?.finish()?;

    progress.phase("writing app ramdisk", 0);
    let rd = eif.ramdisk()?;
    let mut cpio = CpioWriter::new(
        Counting {
            inner: rd,
            progress,
        },
        mtime,
    );
    let dir = EntryMeta::root(0o755);
    cpio.add_dir(b"enclave", dir)?;
    let file_meta = EntryMeta::root(0o644);
    cpio.add_file(
        b"enclave/app.json",
        file_meta,
        &app_json[..],
        len(&app_json),
    )?;
    cpio.add_file(
        b"enclave/spec.json",
        file_meta,
        &spec_json[..],
        len(&spec_json),
    )?;
    tree.write_cpio("rootfs", &mut cpio)?;
    cpio.finish()?.inner.finish()?;

    progress.phase("measuring and signing", 0);
    let measurements = eif.finish(req.signer.as_ref())?;

    let file = tmp.as_file();
    let eif_size = file
        .sync_all()
        .and_then(|()| file.metadata())
        .map_err(|source| BuildError::Io {
            what: "flushing the EIF to disk".into(),
            source,
        })?
        .len();
    tmp.persist(&req.output).map_err(|e| BuildError::Io {
        what: format!("moving the EIF into place at {}", req.output.display()),
        source: e.error,
    })?;
    // No digest of the whole file here: the header is written last but sits first, so it would
    // take another full read (~35% of the build); `sha256sum` is there for who wants one.
    Ok(BuildOutput {
        measurements,
        eif_size,
        provenance,
    })
}

fn apply_layers(
    image: &Image,
    limits: Limits,
    progress: &dyn Progress,
) -> Result<RootfsTree, BuildError> {
    if let Some(dir) = image.rootfs_dir() {
        progress.phase("reading rootfs directory", 0);
        return Ok(RootfsTree::from_dir(dir, limits)?);
    }
    let mut tree = RootfsTree::with_limits(limits);
    let count = image.layers.len();
    for (index, layer) in image.layers.iter().enumerate() {
        progress.phase(
            &format!("applying layer {}/{count}", index + 1),
            layer.size.unwrap_or(0),
        );
        let mut stream = image.open_layer(index)?;
        tree.apply_layer(layer.digest.as_str(), &mut stream)?;
        stream.finish()?;
        progress.advance(layer.size.unwrap_or(0));
    }
    Ok(tree)
}

/// Opens (and hashes) a binary that goes into the bootstrap ramdisk.
fn open_input(name: &str, path: &Path) -> Result<InputFile, BuildError> {
    InputFile::open("init", name, path).map_err(|e| match e {
        KernelError::Missing { path, source, .. } => BuildError::Io {
            what: format!("reading {}", path.display()),
            source,
        },
        other => BuildError::Kernel(other),
    })
}

fn provenance(
    req: &BuildRequest,
    image: &Image,
    init: &InputFile,
    attest_server: Option<&InputFile>,
    spec_json: &[u8],
) -> Provenance {
    let file = |role: &str, f: &InputFile| ProvenanceInput {
        role: role.into(),
        name: f.name.clone(),
        digest: f.digest.clone(),
        size: Some(f.size),
    };
    let mut inputs = vec![
        file("kernel", &req.kernel.kernel),
        file("kernel-config", &req.kernel.config),
    ];
    inputs.extend(req.kernel.modules.iter().map(|m| file("module", m)));
    inputs.push(file("init", init));
    inputs.extend(attest_server.map(|a| file("attest-server", a)));
    let blob = |role: &str, name: &str, digest: &crate::source::Digest| ProvenanceInput {
        role: role.into(),
        name: name.into(),
        digest: digest.as_str().into(),
        size: None,
    };
    if let Some(d) = &image.manifest_digest {
        inputs.push(blob("image-manifest", "manifest", d));
    }
    if let Some(d) = &image.config_digest {
        inputs.push(blob("image-config", "config", d));
    }
    for layer in &image.layers {
        inputs.push(ProvenanceInput {
            size: layer.size,
            ..blob("layer", &layer.media_type, &layer.digest)
        });
    }
    inputs.push(ProvenanceInput {
        role: "spec".into(),
        name: "spec.json".into(),
        digest: crate::source::Digest::of(spec_json).as_str().into(),
        size: Some(len(spec_json)),
    });
    Provenance {
        version: PROVENANCE_VERSION,
        kernel_profile: req.kernel.profile.name().into(),
        cmdline: req.kernel.cmdline.clone(),
        source_date_epoch: req.source_date_epoch,
        source_transport: transport(&req.source).into(),
        inputs,
    }
}

/// The source image's identity and config, where nitro-cli puts `docker inspect` output.
fn docker_info(image: &Image) -> serde_json::Value {
    serde_json::json!({
        "ManifestDigest": image.manifest_digest.as_ref().map(|d| d.as_str()),
        "ConfigDigest": image.config_digest.as_ref().map(|d| d.as_str()),
        "Config": image.raw_config.get("config").cloned().unwrap_or(serde_json::Value::Null),
    })
}

/// The skopeo transport name of a source.
fn transport(source: &ImageRef) -> &'static str {
    match source {
        ImageRef::Oci { .. } => "oci",
        ImageRef::OciArchive { .. } => "oci-archive",
        ImageRef::DockerArchive { .. } => "docker-archive",
        ImageRef::Dir { .. } => "dir",
    }
}

fn default_image_name(source: &ImageRef) -> String {
    let path = match source {
        ImageRef::Oci { dir, .. } => dir,
        ImageRef::OciArchive { archive, .. } | ImageRef::DockerArchive { archive, .. } => archive,
        ImageRef::Dir { path } => path,
    };
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && s != ".")
        .unwrap_or_else(|| "enclave".into())
}

fn default_image_version(source: &ImageRef) -> String {
    match source {
        ImageRef::Oci { tag: Some(t), .. } | ImageRef::OciArchive { tag: Some(t), .. } => t.clone(),
        ImageRef::DockerArchive {
            reference: Some(r), ..
        } => r.rsplit_once(':').map_or(r.clone(), |(_, t)| t.to_owned()),
        _ => "latest".into(),
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn open(path: &Path) -> Result<File, BuildError> {
    File::open(path).map_err(|source| BuildError::Io {
        what: format!("opening {}", path.display()),
        source,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, BuildError> {
    serde_json::to_vec(value).map_err(|e| BuildError::Internal(format!("serialising JSON: {e}")))
}

fn len(bytes: &[u8]) -> u64 {
    bytes.len() as u64
}

/// Passes writes through and reports their size as progress.
struct Counting<'p, W> {
    inner: W,
    progress: &'p dyn Progress,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
