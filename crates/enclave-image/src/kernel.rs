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
//! | netfilter | built into the kernel or absent | `modules/netfilter` listing more modules |
//!
//! Netfilter (nf_tables NAT redirect) is needed only by images with transparent egress:
//! [`KernelInputs::add_netfilter`] adds its modules to such builds, or says the kernel lacks it.
//!
//! Every file is recorded by SHA-256 in the build's provenance.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

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
    /// Whether [`KernelInputs::add_netfilter`] succeeded.
    pub netfilter: bool,
}

/// The kernel options transparent egress needs: nf_tables with NAT chains and `redirect`.
pub const NETFILTER_OPTIONS: [&str; 4] = [
    "CONFIG_NF_TABLES",
    "CONFIG_NF_NAT",
    "CONFIG_NFT_NAT",
    "CONFIG_NFT_REDIR",
];

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
            netfilter: false,
        })
    }

    /// Makes netfilter available to enclave-init (for transparent egress): checks the kernel
    /// config has every option of [`NETFILTER_OPTIONS`], built in or as a module, and appends
    /// the profile's netfilter modules (`modules/netfilter`) to the load order. Fails, naming
    /// the missing option or file, when the kernel cannot do it.
    pub fn add_netfilter(&mut self) -> Result<(), KernelError> {
        let p = self.profile.name();
        let config =
            std::fs::read_to_string(&self.config.path).map_err(|source| KernelError::Missing {
                profile: p,
                path: self.config.path.clone(),
                source,
            })?;
        let setting = |opt: &str| {
            config.lines().find_map(|l| {
                l.strip_prefix(opt)
                    .and_then(|rest| rest.strip_prefix('='))
                    .map(str::to_owned)
            })
        };
        let mut needs_modules = false;
        for opt in NETFILTER_OPTIONS {
            match setting(opt).as_deref() {
                Some("y") => {}
                Some("m") => needs_modules = true,
                _ => {
                    return Err(KernelError::Invalid {
                        profile: p,
                        path: self.config.path.clone(),
                        reason: format!(
                            "the kernel has no netfilter NAT ({opt} is not set), which \
                             transparent egress needs; use `egress.mode: named`, or a kernel \
                             built with {}",
                            NETFILTER_OPTIONS.join(", ")
                        ),
                    })
                }
            }
        }
        if needs_modules {
            let list = self.dir.join("modules/netfilter");
            let extra = modules_listed(p, &self.dir.join("modules"), &list)?;
            self.modules.extend(extra);
        }
        self.netfilter = true;
        Ok(())
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
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
        std::fs::write(dir.join(name), body).unwrap();
    }

    fn profile_dir(dir: &Path) {
        write(dir, "bzImage", "kernel");
        write(
            dir,
            "bzImage.config",
            "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.172 Kernel Configuration\n#\n",
        );
        write(dir, "cmdline", "console=ttyS0 pci=off\n");
    }

    #[test]
    fn emulated_profile_reads_modules_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        profile_dir(tmp.path());
        write(tmp.path(), "modules/order", "b\na\n");
        write(tmp.path(), "modules/a.ko", "A");
        write(tmp.path(), "modules/b.ko", "B");
        let k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
        assert_eq!(k.version, "6.1.172");
        assert_eq!(k.cmdline, "console=ttyS0 pci=off");
        let names: Vec<_> = k.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["b.ko", "a.ko"]);
        assert_eq!(k.kernel.size, 6);
    }

    #[test]
    fn nitro_profile_needs_nsm_ko() {
        let tmp = tempfile::tempdir().unwrap();
        profile_dir(tmp.path());
        let err = KernelInputs::load(KernelProfile::Nitro, tmp.path()).unwrap_err();
        assert!(err.to_string().contains("nsm.ko"), "{err}");
        write(tmp.path(), "nsm.ko", "nsm");
        let k = KernelInputs::load(KernelProfile::Nitro, tmp.path()).unwrap();
        assert_eq!(k.modules[0].name, "nsm.ko");
    }

    #[test]
    fn bad_inputs_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        profile_dir(tmp.path());
        write(tmp.path(), "bzImage.config", "no header\n");
        let err = KernelInputs::load(KernelProfile::Nitro, tmp.path()).unwrap_err();
        assert!(err.to_string().contains("Kernel Configuration"), "{err}");
        profile_dir(tmp.path());
        write(tmp.path(), "modules/order", "../evil\n");
        let err = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap_err();
        assert!(err.to_string().contains("not a plain name"), "{err}");
    }

    #[test]
    fn sha256_matches_known_value() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "f", "abc");
        let (size, digest) = sha256_file(&tmp.path().join("f")).unwrap();
        assert_eq!(size, 3);
        assert_eq!(
            digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn netfilter_modules_are_added_or_the_missing_option_named() {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["bzImage", "cmdline", "modules/a.ko", "modules/nf.ko"] {
            write(tmp.path(), f, "x");
        }
        write(tmp.path(), "modules/order", "a\n");
        write(tmp.path(), "modules/netfilter", "nf\n");
        let config = |nat: &str| {
            format!(
                "#\n# Linux/x86 6.1.172 Kernel Configuration\nCONFIG_NF_TABLES=m\nCONFIG_NF_NAT=m\n{nat}CONFIG_NFT_REDIR=m\n"
            )
        };
        write(tmp.path(), "bzImage.config", &config("CONFIG_NFT_NAT=m\n"));
        let mut k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
        k.add_netfilter().unwrap();
        let names: Vec<_> = k.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a.ko", "nf.ko"]);
        assert!(k.netfilter);

        write(
            tmp.path(),
            "bzImage.config",
            &config("# CONFIG_NFT_NAT is not set\n"),
        );
        let mut k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
        let err = k.add_netfilter().unwrap_err().to_string();
        assert!(err.contains("CONFIG_NFT_NAT is not set"), "{err}");
        assert!(!k.netfilter);
    }
}
