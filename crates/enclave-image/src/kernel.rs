//! Kernel profiles: which kernel, command line and modules go into an image.
//!
//! Both profiles read a directory shaped like nitro-cli's blobs directory:
//!
//! | file | nitro | emulated |
//! |---|---|---|
//! | `bzImage` | Nitro's enclave kernel | Debian's cloud kernel |
//! | `bzImage.config` | its config | its config |
//! | `cmdline` | its command line | `console=ttyS0 …` (see scripts/fetch-kernel.sh) |
//! | modules | `nsm.ko` | `modules/order` listing `modules/<name>.ko` |
//! | nf_tables | built in, or absent (AWS's kernels) | `modules/netfilter` listing more modules |
//! | iptables | built in | `modules/xtables` listing more modules |
//!
//! Netfilter is needed only by images with transparent egress: [`KernelInputs::add_netfilter`]
//! picks the backend the kernel config allows (nf_tables first, else iptables; see
//! docs/networking.md), adds that backend's modules and only those, or says the kernel has
//! neither.
//!
//! Every file is recorded by SHA-256 in the build's provenance.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use enclave_proto::init::Netfilter;
use sha2::{Digest, Sha256};

/// Errors resolving a kernel profile.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A file the profile needs is missing or unreadable.
    #[error("kernel profile {profile}: cannot read {path}: {source}")]
    Missing {
        /// Profile name.
        profile: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is there but its content is unusable.
    #[error("kernel profile {profile}: {path}: {reason}")]
    Invalid {
        /// Profile name.
        profile: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Which kind of enclave the image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelProfile {
    /// Real Nitro Enclaves, with nitro-cli's kernel blobs and `nsm.ko`.
    Nitro,
    /// The emulated Nitro enclave (QEMU microvm): Debian's cloud kernel and virtio/vsock modules.
    Emulated,
}

impl KernelProfile {
    /// The profile's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            KernelProfile::Nitro => "nitro",
            KernelProfile::Emulated => "emulated",
        }
    }
}

impl std::str::FromStr for KernelProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nitro" => Ok(KernelProfile::Nitro),
            "emulated" => Ok(KernelProfile::Emulated),
            other => Err(format!(
                "unknown kernel profile {other:?} (expected `nitro` or `emulated`)"
            )),
        }
    }
}

/// A file that goes into the image, with its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Name recorded in the provenance and, for modules, the file name in the ramdisk.
    pub name: String,
    /// Where it is on the host.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:<hex>`.
    pub digest: String,
}

impl InputFile {
    /// Reads and hashes a file.
    pub fn open(profile: &'static str, name: &str, path: &Path) -> Result<Self, KernelError> {
        let missing = |source| KernelError::Missing {
            profile,
            path: path.to_owned(),
            source,
        };
        let (size, digest) = sha256_file(path).map_err(missing)?;
        Ok(Self {
            name: name.to_owned(),
            path: path.to_owned(),
            size,
            digest,
        })
    }
}

/// Hashes a file with SHA-256, streaming; returns its size and `sha256:<hex>`.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, format!("sha256:{}", hex::encode(hasher.finalize()))))
}

/// The resolved kernel inputs of a build.
#[derive(Debug, Clone)]
pub struct KernelInputs {
    /// The profile.
    pub profile: KernelProfile,
    /// The kernel image.
    pub kernel: InputFile,
    /// Its config (recorded, and the source of the kernel version).
    pub config: InputFile,
    /// Kernel version as the config's header states it, e.g. `6.1.172`.
    pub version: String,
    /// The command line (trimmed).
    pub cmdline: String,
    /// Modules, in load order.
    pub modules: Vec<InputFile>,
    /// The profile's directory.
    pub dir: PathBuf,
    /// The backend [`KernelInputs::add_netfilter`] chose, once it succeeded.
    pub netfilter: Option<Netfilter>,
}

/// The kernel options of the nftables backend: nf_tables with NAT chains and `redirect`. Each
/// entry lists alternatives, one of which must be set (`y` or `m`).
pub const NFTABLES_OPTIONS: [&[&str]; 4] = [
    &["CONFIG_NF_TABLES"],
    &["CONFIG_NF_NAT"],
    &["CONFIG_NFT_NAT"],
    &["CONFIG_NFT_REDIR"],
];

/// The kernel options of the xtables backend: the iptables nat table and the REDIRECT target.
/// REDIRECT is `NETFILTER_XT_TARGET_REDIRECT` (xt_REDIRECT) since Linux 3.7, which
/// `IP_NF_TARGET_REDIRECT` only selects; either is taken.
pub const XTABLES_OPTIONS: [&[&str]; 5] = [
    &["CONFIG_NETFILTER_XTABLES"],
    &["CONFIG_IP_NF_IPTABLES"],
    &["CONFIG_NF_NAT"],
    &["CONFIG_IP_NF_NAT"],
    &[
        "CONFIG_NETFILTER_XT_TARGET_REDIRECT",
        "CONFIG_IP_NF_TARGET_REDIRECT",
    ],
];

/// What a kernel config says of the options a backend needs.
enum Support {
    /// All set; `true` when one of them is a module.
    Yes { modules: bool },
    /// Not set (the first such option, for the error).
    No(&'static str),
}

fn support(config: &str, options: &[&'static [&'static str]]) -> Support {
    let setting = |opt: &str| {
        config.lines().find_map(|l| {
            l.strip_prefix(opt)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::to_owned)
        })
    };
    let mut modules = false;
    for alternatives in options {
        let values: Vec<_> = alternatives.iter().filter_map(|o| setting(o)).collect();
        if values.iter().any(|v| v == "y") {
            continue;
        }
        if values.iter().any(|v| v == "m") {
            modules = true;
            continue;
        }
        return Support::No(alternatives[0]);
    }
    Support::Yes { modules }
}

fn option_names(options: &[&[&str]]) -> String {
    let names: Vec<String> = options.iter().map(|alts| alts.join(" or ")).collect();
    names.join(", ")
}

impl KernelInputs {
    /// Reads a profile's directory.
    pub fn load(profile: KernelProfile, dir: &Path) -> Result<Self, KernelError> {
        let p = profile.name();
        let kernel = InputFile::open(p, "bzImage", &dir.join("bzImage"))?;
        let config = InputFile::open(p, "bzImage.config", &dir.join("bzImage.config"))?;
        let version = kernel_version(p, &config.path)?;
        let cmdline_path = dir.join("cmdline");
        let cmdline = std::fs::read_to_string(&cmdline_path)
            .map_err(|source| KernelError::Missing {
                profile: p,
                path: cmdline_path.clone(),
                source,
            })?
            .trim()
            .to_owned();
        if cmdline.contains('\0') {
            return Err(KernelError::Invalid {
                profile: p,
                path: cmdline_path,
                reason: "the command line contains a NUL byte".into(),
            });
        }
        let modules = match profile {
            KernelProfile::Nitro => vec![InputFile::open(p, "nsm.ko", &dir.join("nsm.ko"))?],
            KernelProfile::Emulated => emulated_modules(p, &dir.join("modules"))?,
        };
        Ok(Self {
            profile,
            kernel,
            config,
            version,
            cmdline,
            modules,
            dir: dir.to_owned(),
            netfilter: None,
        })
    }

    /// Makes netfilter available to enclave-init (for transparent egress): picks nftables when
    /// the kernel config has every option of [`NFTABLES_OPTIONS`] (built in or as modules),
    /// else xtables when it has [`XTABLES_OPTIONS`], and appends that backend's modules (listed
    /// in `modules/netfilter` or `modules/xtables`) to the load order when any option is a
    /// module. Fails, naming the missing options or file, when the kernel has neither.
    pub fn add_netfilter(&mut self) -> Result<Netfilter, KernelError> {
        let p = self.profile.name();
        let config =
            std::fs::read_to_string(&self.config.path).map_err(|source| KernelError::Missing {
                profile: p,
                path: self.config.path.clone(),
                source,
            })?;
        let (backend, needs_modules, list) = match (
            support(&config, &NFTABLES_OPTIONS),
            support(&config, &XTABLES_OPTIONS),
        ) {
            (Support::Yes { modules }, _) => (Netfilter::Nftables, modules, "netfilter"),
            (_, Support::Yes { modules }) => (Netfilter::Xtables, modules, "xtables"),
            (Support::No(nft), Support::No(xt)) => {
                return Err(KernelError::Invalid {
                    profile: p,
                    path: self.config.path.clone(),
                    reason: format!(
                        "the kernel has no netfilter NAT redirect ({nft} is not set for \
                         nf_tables, {xt} is not set for iptables), which transparent egress \
                         needs; use `egress.mode: named`, or a kernel built with {} (nf_tables) \
                         or {} (iptables)",
                        option_names(&NFTABLES_OPTIONS),
                        option_names(&XTABLES_OPTIONS),
                    ),
                })
            }
        };
        if needs_modules {
            let list = self.dir.join("modules").join(list);
            let extra = modules_listed(p, &self.dir.join("modules"), &list)?;
            self.modules.extend(extra);
        }
        self.netfilter = Some(backend);
        Ok(backend)
    }

    /// The default directory of a profile: nitro-cli's blobs for `nitro`, the cache filled by
    /// `scripts/fetch-kernel.sh` for `emulated`.
    pub fn default_dir(profile: KernelProfile) -> PathBuf {
        match profile {
            KernelProfile::Nitro => PathBuf::from("/usr/share/nitro_enclaves/blobs"),
            KernelProfile::Emulated => cache_dir().join("kernel/emulated"),
        }
    }
}

/// `$XDG_CACHE_HOME/enclave-engine`, or `~/.cache/enclave-engine`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("enclave-engine")
}

fn emulated_modules(profile: &'static str, dir: &Path) -> Result<Vec<InputFile>, KernelError> {
    modules_listed(profile, dir, &dir.join("order"))
}

/// The modules named, one per line, in `order_path`, from `dir`.
fn modules_listed(
    profile: &'static str,
    dir: &Path,
    order_path: &Path,
) -> Result<Vec<InputFile>, KernelError> {
    let order_path = order_path.to_owned();
    let order = std::fs::read_to_string(&order_path).map_err(|source| KernelError::Missing {
        profile,
        path: order_path.clone(),
        source,
    })?;
    let mut modules = Vec::new();
    for name in order.split_whitespace() {
        if name.contains('/') || name.starts_with('.') {
            return Err(KernelError::Invalid {
                profile,
                path: order_path,
                reason: format!("module name {name:?} is not a plain name"),
            });
        }
        let file = format!("{name}.ko");
        modules.push(InputFile::open(profile, &file, &dir.join(&file))?);
    }
    Ok(modules)
}

/// Reads the version from the `# Linux/x86 6.1.172 Kernel Configuration` header line.
fn kernel_version(profile: &'static str, config: &Path) -> Result<String, KernelError> {
    let text = std::fs::read_to_string(config).map_err(|source| KernelError::Missing {
        profile,
        path: config.to_owned(),
        source,
    })?;
    text.lines()
        .take(10)
        .find_map(|line| {
            let rest = line.strip_prefix("# Linux/")?;
            let version = rest.split_whitespace().nth(1)?;
            rest.ends_with("Kernel Configuration")
                .then(|| version.to_owned())
        })
        .ok_or_else(|| KernelError::Invalid {
            profile,
            path: config.to_owned(),
            reason: "no `# Linux/<arch> <version> Kernel Configuration` header".into(),
        })
}

#[cfg(test)]
#[path = "kernel_tests.rs"]
mod tests;
