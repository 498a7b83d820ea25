//! `enclave-ctl selftest`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Where the self-test runs its probe enclave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SelftestBackend {
    /// A real Nitro enclave (the parent needs /dev/nitro_enclaves, nitro-cli and the allocator).
    Nitro,
    /// An emulated enclave (QEMU): what CI runs.
    Qemu,
}

/// `enclave-ctl selftest`: the options of the installed self-test script
/// (libexec/enclave-engine/nitro-selftest.sh), passed on as they are.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "One line per check: PASS <check> <what was seen>, or FAIL <check> <what \
                        went wrong> -- <what to do>; the first FAIL stops the run.\n\
                        Exit status: 0 every check passed, 1 one failed, 2 bad arguments."
)]
pub struct SelftestArgs {
    /// Where to run the probe enclave (default: nitro when /dev/nitro_enclaves exists, else qemu).
    #[arg(long, value_enum)]
    pub backend: Option<SelftestBackend>,
    /// The probe enclave's CPUs (default 2 on Nitro, 1 emulated).
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// The probe enclave's memory in MiB (default 512 on Nitro, 256 emulated).
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u32>,
    /// Nitro: nitro-cli's blobs (default /usr/share/nitro_enclaves/blobs); emulated: a kernel
    /// directory other than the emulated profile's.
    #[arg(long, value_name = "DIR")]
    pub kernel_dir: Option<PathBuf>,
    /// Leave the probe enclave running afterwards, to look at it.
    #[arg(long)]
    pub keep: bool,
}
