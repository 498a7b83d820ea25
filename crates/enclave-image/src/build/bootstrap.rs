//! The bootstrap ramdisk (ramdisk 0, measured into PCR1 with the kernel and cmdline): the static
//! `enclave-init` as `/init`, the kernel modules it loads, its configuration, the attestation
//! server when the spec enables it, and the empty mount points. Laid out in docs/architecture.md, "The two ramdisks".

use std::fs::File;
use std::io::Write;

use enclave_proto::init::InitConfig;

use super::BuildError;
use crate::cpio::{CpioWriter, DeviceKind, EntryMeta};
use crate::kernel::{InputFile, KernelInputs};

/// Writes the bootstrap ramdisk to `out`.
pub fn write_bootstrap<W: Write>(
    out: W,
    mtime: u32,
    kernel: &KernelInputs,
    init: &InputFile,
    attest_server: Option<&InputFile>,
) -> Result<W, BuildError> {
    let config = InitConfig::new(
        kernel.profile.name(),
        kernel.modules.iter().map(|m| m.name.clone()).collect(),
        kernel.netfilter,
    );
    let config_json = serde_json::to_vec_pretty(&config)
        .map_err(|e| BuildError::Internal(format!("serialising the init config: {e}")))?;

    let mut cpio = CpioWriter::new(out, mtime);
    let dir = EntryMeta::root(0o755);
    // Component-wise sorted order, parents first: the archive is the same on every machine.
    cpio.add_dir(b"dev", dir)?;
    // The kernel opens /dev/console for PID 1's stdio before devtmpfs is mounted.
    cpio.add_device(
        b"dev/console",
        EntryMeta::root(0o600),
        DeviceKind::Char,
        5,
        1,
    )?;
    // Rust's runtime needs /dev/null if the kernel left fds 0-2 closed.
    cpio.add_device(b"dev/null", EntryMeta::root(0o666), DeviceKind::Char, 1, 3)?;
    cpio.add_dir(b"enclave-init", dir)?;
    cpio.add_file(
        b"enclave-init/config.json",
        EntryMeta::root(0o644),
        config_json.as_slice(),
        config_json.len() as u64,
    )?;
    if let Some(server) = attest_server {
        add_host_file(&mut cpio, "enclave-init/enclave-attest", 0o755, server)?;
    }
    cpio.add_dir(b"enclave-init/modules", dir)?;
    let mut modules: Vec<&InputFile> = kernel.modules.iter().collect();
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    for module in modules {
        let path = format!("enclave-init/modules/{}", module.name);
        add_host_file(&mut cpio, &path, 0o644, module)?;
    }
    add_host_file(&mut cpio, "init", 0o755, init)?;
    for mount_point in ["proc", "run", "sys"] {
        cpio.add_dir(mount_point.as_bytes(), dir)?;
    }
    cpio.add_dir(b"tmp", EntryMeta::root(0o1777))?;
    Ok(cpio.finish()?)
}

/// Copies a host file whose digest was taken earlier, refusing it if it changed since (so the
/// provenance always describes the bytes in the image).
fn add_host_file<W: Write>(
    cpio: &mut CpioWriter<W>,
    path: &str,
    mode: u32,
    input: &InputFile,
) -> Result<(), BuildError> {
    let file = File::open(&input.path).map_err(|source| BuildError::Io {
        what: format!("opening {}", input.path.display()),
        source,
    })?;
    let len = file
        .metadata()
        .map_err(|source| BuildError::Io {
            what: format!("reading {}", input.path.display()),
            source,
        })?
        .len();
    if len != input.size {
        return Err(BuildError::InputChanged(input.path.clone()));
    }
    cpio.add_file(path.as_bytes(), EntryMeta::root(mode), file, input.size)?;
    Ok(())
}
