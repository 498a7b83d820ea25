//! Arguments of the image commands: build, inspect, measure.

use std::path::PathBuf;

use clap::Args;

/// `enclave-ctl build`.
#[derive(Debug, Args)]
#[command(
    after_help = "Sources (skopeo's notation, no Docker daemon needed):\n  \
    oci:<dir>[:<tag>]           OCI image layout directory\n  \
    oci-archive:<tar>[:<tag>]   OCI image layout in a tar\n  \
    docker-archive:<tar>        `docker save` output\n  \
    dir:<rootfs>                a plain root filesystem (owners become 0:0)\n\n\
    The output is byte-identical for the same inputs, whatever the machine, directory, umask,\n\
    locale or file mtimes. Time stamps come from --source-date-epoch (default 0).\n\n\
    Examples:\n  \
    enclave-ctl build --from oci:./hello:latest -o hello.eif\n  \
    enclave-ctl build -f enclave.yaml -o app.eif --json"
)]
pub struct BuildArgs {
    /// Source image, e.g. `oci:./image:latest`; overrides the spec's `from:`.
    #[arg(long, value_name = "SOURCE")]
    pub from: Option<String>,

    /// Enclave spec (enclave.yaml): source, entrypoint/cmd/env/workdir overrides, services, debug.
    #[arg(short = 'f', long = "file", value_name = "enclave.yaml")]
    pub spec: Option<PathBuf>,

    /// Output EIF path (written atomically: nothing is left behind on failure).
    #[arg(short, long, value_name = "EIF")]
    pub output: PathBuf,

    /// Kernel profile: `emulated` (QEMU, Debian cloud kernel) or `nitro` (nitro-cli's blobs).
    #[arg(long, default_value = "emulated", value_name = "PROFILE")]
    pub kernel_profile: String,

    /// Directory with bzImage, bzImage.config, cmdline and the modules (default: the profile's).
    #[arg(long, value_name = "DIR")]
    pub kernel_dir: Option<PathBuf>,

    /// The static enclave-init binary to put in the image (default: found next to enclave-ctl or
    /// in target/enclave-init/, as built by scripts/build-init.sh).
    #[arg(long, env = "ENCLAVE_INIT", value_name = "PATH")]
    pub init: Option<PathBuf>,

    /// The static enclave-attest binary (the attestation server), used when the spec has an
    /// `attestation` section (default: next to the enclave-init found above).
    #[arg(long, env = "ENCLAVE_ATTEST_SERVER", value_name = "PATH")]
    pub attest_server: Option<PathBuf>,

    /// Seconds since the epoch used for every time stamp in the image.
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        default_value_t = 0,
        value_name = "SECONDS"
    )]
    pub source_date_epoch: i64,

    /// Image name recorded in the metadata (default: the spec's name or the source's).
    #[arg(long)]
    pub name: Option<String>,

    /// Image version recorded in the metadata (default: the source's tag or `latest`).
    #[arg(long = "image-version", value_name = "VERSION")]
    pub image_version: Option<String>,

    /// PEM certificate to sign the image with (PCR8); needs --private-key.
    #[arg(long, requires = "private_key", value_name = "PEM")]
    pub signing_certificate: Option<PathBuf>,

    /// PEM ECDSA P-384 private key (PKCS#8 or SEC1); needs --signing-certificate.
    #[arg(long, requires = "signing_certificate", value_name = "PEM")]
    pub private_key: Option<PathBuf>,

    /// Print nitro-cli's JSON ({"Measurements": {...}}) instead of text.
    #[arg(long)]
    pub json: bool,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `enclave-ctl inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The EIF to inspect.
    pub eif: PathBuf,

    /// JSON with nitro-cli describe-eif's field names (plus Sections and Provenance).
    #[arg(long)]
    pub json: bool,
}

/// `enclave-ctl measure`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["eif", "signing_certificate"]))]
pub struct MeasureArgs {
    /// The EIF to measure.
    pub eif: Option<PathBuf>,

    /// Print PCR8 of this PEM certificate instead.
    #[arg(long, value_name = "PEM")]
    pub signing_certificate: Option<PathBuf>,

    /// JSON output.
    #[arg(long)]
    pub json: bool,
}
