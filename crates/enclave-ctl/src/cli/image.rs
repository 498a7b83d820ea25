//! Arguments of the image commands: build, sign, inspect, measure.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;
use enclave_image::rootfs::Limits;

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
    An image over a limit is refused with the layer and the limit named; raise the limit with\n\
    the --max-* options if the image is really that large.\n\n\
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

    /// The static enclave-init binary to put in the image (default: ../libexec/enclave-engine/
    /// next to enclave-ctl, as scripts/install.sh puts it, or target/enclave-init/ in a checkout).
    #[arg(long, env = "ENCLAVE_ENGINE_INIT", value_name = "PATH")]
    pub init: Option<PathBuf>,

    /// The static enclave-attest binary (the attestation server), used when the spec has an
    /// `attestation` section (default: next to the enclave-init found above).
    #[arg(long, env = "ENCLAVE_ENGINE_ATTEST_SERVER", value_name = "PATH")]
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

    /// Largest decompressed size of one layer (bytes, or with a K, M, G or T suffix: powers of
    /// 1024).
    #[arg(
        long,
        value_name = "SIZE",
        default_value_t = ByteSize(Limits::DEFAULT.layer_bytes),
        help_heading = "Limits"
    )]
    pub max_layer_size: ByteSize,

    /// Largest decompressed size of all layers together (for dir: sources, of the files).
    #[arg(
        long,
        value_name = "SIZE",
        default_value_t = ByteSize(Limits::DEFAULT.rootfs_bytes),
        help_heading = "Limits"
    )]
    pub max_rootfs_size: ByteSize,

    /// Most entries (files, directories, links, whiteouts) in all layers together.
    #[arg(
        long,
        value_name = "N",
        default_value_t = Limits::DEFAULT.entries,
        help_heading = "Limits"
    )]
    pub max_entries: u64,
}

impl BuildArgs {
    /// The limits the options ask for.
    pub fn limits(&self) -> Limits {
        Limits {
            layer_bytes: self.max_layer_size.0,
            rootfs_bytes: self.max_rootfs_size.0,
            entries: self.max_entries,
        }
    }
}

/// A byte count written as `1048576`, `512K`, `64M`, `16G` or `1T` (powers of 1024; `KiB`,
/// `MiB`, ... are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u32); 4] = [("K", 10), ("M", 20), ("G", 30), ("T", 40)];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a size: use bytes, or a number with K, M, G or T");
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(digits);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit = unit.strip_suffix("iB").unwrap_or(unit);
        let shift = match unit {
            "" => 0,
            _ => UNITS
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(unit))
                .map(|&(_, shift)| shift)
                .ok_or_else(bad)?,
        };
        number
            .checked_mul(1 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly, so that it parses back unchanged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = UNITS
            .iter()
            .rev()
            .find(|&&(_, shift)| self.0 != 0 && self.0.is_multiple_of(1 << shift));
        match unit {
            Some((u, shift)) => write!(f, "{}{u}", self.0 >> shift),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn sizes_parse_and_print_back() {
        for (text, bytes) in [
            ("0", 0),
            ("1000", 1000),
            ("4K", 4096),
            ("4KiB", 4096),
            ("64m", 64 << 20),
            ("8G", 8 << 30),
            ("2T", 2 << 40),
        ] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
            let printed = ByteSize(bytes).to_string();
            assert_eq!(printed.parse::<ByteSize>(), Ok(ByteSize(bytes)));
        }
        assert_eq!(ByteSize(8 << 30).to_string(), "8G");
        assert_eq!(ByteSize(1500).to_string(), "1500");
        for bad in ["", "G", "1.5G", "-1", "1X", "1 G", "99999999999T"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }
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

/// `enclave-ctl sign`.
#[derive(Debug, Args)]
#[command(
    after_help = "The EIF is copied with a new signature section (any previous one is \
    replaced), so PCR8\nbecomes the certificate's measurement; PCR0, PCR1 and PCR2 do not change. \
    Signing is\ndeterministic (RFC 6979): the same EIF, certificate and key give the same bytes, \
    the same as\n`build --signing-certificate` would have written. The output is written \
    atomically.\n\n\
    Example:\n  \
    enclave-ctl sign app.eif --signing-certificate cert.pem --private-key key.pem -o app-signed.eif"
)]
pub struct SignArgs {
    /// The EIF to sign.
    pub eif: PathBuf,

    /// PEM (or DER) X.509 certificate with an ECDSA P-384 key; PCR8 is its measurement.
    #[arg(long, value_name = "PEM")]
    pub signing_certificate: PathBuf,

    /// PEM (or DER) ECDSA P-384 private key of the certificate (PKCS#8 or SEC1, unencrypted).
    #[arg(long, value_name = "PEM")]
    pub private_key: PathBuf,

    /// Where to write the signed EIF (default: replace the input).
    #[arg(short, long, value_name = "EIF")]
    pub output: Option<PathBuf>,

    /// Print nitro-cli's JSON ({"Measurements": {...}}) instead of text.
    #[arg(long)]
    pub json: bool,
}
