//! Arguments of `enclave-ctl package`.

use std::path::PathBuf;

use clap::Args;
use enclave_image::package::Target;
use enclave_image::source::ImageRef;

/// `enclave-ctl package`.
#[derive(Debug, Args)]
#[command(
    after_help = "The image: the base's layers as they are (same blobs, same digests) and one new, \
    reproducible\nlayer with /enclave/app.eif and /usr/local/bin/enclave-ctl, enclave-engine and \
    enclave-proxy.\nIts config: Entrypoint [\"/usr/local/bin/enclave-ctl\", \"run\"], Cmd \
    [\"--name\", NAME, \"/enclave/app.eif\"],\nENCLAVE_ENGINE_STATE_DIR=/run/enclave-engine, the \
    PCRs as labels dev.enclave-engine.pcr0/1/2(/8).\nThe same inputs give the same manifest \
    digest. The output is written atomically; an existing\nnon-empty oci: directory is refused, \
    an existing oci-archive: file is replaced.\n\n\
    Examples:\n  \
    enclave-ctl package app.eif --base oci:./base:latest -o oci:./app-image:v1\n  \
    skopeo copy oci:./app-image:v1 docker://registry.example.com/app:v1"
)]
pub struct PackageArgs {
    /// The EIF to package.
    pub eif: PathBuf,

    /// The base image: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or `docker-archive:FILE`.
    #[arg(long, value_name = "SOURCE", value_parser = parse_base)]
    pub base: ImageRef,

    /// The output: `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]` (tag `latest` by default).
    #[arg(short, long, value_name = "DEST", value_parser = parse_output)]
    pub output: Target,

    /// The enclave name the image runs under (default: the measured spec's name, else `app`).
    #[arg(long)]
    pub name: Option<String>,

    /// Where enclave-ctl, enclave-engine and enclave-proxy are taken from (default: the
    /// directory of this enclave-ctl).
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Seconds since the epoch for every time stamp (layer mtimes, `created`).
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        default_value_t = 0,
        value_name = "SECONDS"
    )]
    pub source_date_epoch: u64,

    /// Print {manifest_digest, config_digest, layer_digest, layer_size, pcrs} as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_base(s: &str) -> Result<ImageRef, String> {
    match s.parse::<ImageRef>().map_err(|e| e.to_string())? {
        ImageRef::Dir { .. } => Err(
            "a dir: source has no layers to copy; use oci:, oci-archive: or docker-archive:".into(),
        ),
        other => Ok(other),
    }
}

fn parse_output(s: &str) -> Result<Target, String> {
    let reference = s.parse::<ImageRef>().map_err(|e| e.to_string())?;
    Target::from_ref(&reference)
        .ok_or_else(|| format!("{s:?}: the output must be oci:DIR[:TAG] or oci-archive:FILE[:TAG]"))
}
