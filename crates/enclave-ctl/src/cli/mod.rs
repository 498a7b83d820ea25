//! Command-line arguments. Only clap structs live here; the commands are in `cmd/`.

mod attest;
mod debug;
mod docs;
mod image;
mod kube;
mod lifecycle;
mod package;
mod selftest;

use clap::{Parser, Subcommand};

pub use attest::{AttestArgs, VerifyArgs};
pub use debug::{ControlArgs, CpArgs, ExecArgs, HealthArgs, ServiceAction, ServicesArgs};
pub use docs::{CompletionArgs, ManArgs};
pub use image::{BuildArgs, InspectArgs, MeasureArgs, SignArgs};
pub use kube::{
    KubeArgs, KubeCommand, KubeGenerateArgs, ManifestOutput, NodeArgs, NodeCommand,
    NodeSetupDaemonsetArgs,
};
pub use lifecycle::{
    ConsoleArgs, EventFilter, EventsArgs, KillArgs, LogsArgs, PsArgs, RestartArgs, RmArgs, RunArgs,
    StartArgs, StateArgs, StopArgs, PS_FIELDS,
};
pub use package::PackageArgs;
pub use selftest::{SelftestArgs, SelftestBackend};

/// Variables renamed to the `ENCLAVE_ENGINE_` prefix: (old name, new name). The old names still
/// work; the new one wins when both are set.
pub const RENAMED_ENV: [(&str, &str); 3] = [
    ("ENCLAVE_INIT", "ENCLAVE_ENGINE_INIT"),
    ("ENCLAVE_ATTEST_SERVER", "ENCLAVE_ENGINE_ATTEST_SERVER"),
    ("ENCLAVE_CTL_KEY", "ENCLAVE_ENGINE_KEY"),
];

/// Exit status: success.
pub const EXIT_OK: i32 = 0;
/// Exit status: the command failed (bad input, I/O error, missing tool…).
pub const EXIT_ERROR: i32 = 1;
/// A usage error (bad flags, a flag that does not apply), as clap exits.
pub const EXIT_USAGE: i32 = 2;
/// Exit status: a check failed (CRC, signature).
pub const EXIT_CHECK_FAILED: i32 = 3;
/// Exit status of `verify`: no expected measurement given, so nothing was checked.
pub const EXIT_NO_EXPECTATION: i32 = 4;
/// Exit status of `run` when the engine failed (Docker's 125): the enclave could not be
/// created, booted or watched. Otherwise `run` exits with the main service's exit code.
pub const EXIT_ENGINE: i32 = 125;

/// enclave-ctl: build reproducible AWS Nitro Enclave images (EIF) without Docker, run and manage
/// enclaves (real Nitro or emulated with QEMU), and verify attestation documents.
#[derive(Debug, Parser)]
#[command(
    name = "enclave-ctl",
    version,
    after_help = "Exit status: 0 success, 1 error, 2 usage error, 3 a check failed (CRC, signature,\n\
                  attestation), 4 `verify` without an expected measurement; `exec` exits with the\n\
                  remote command's status; `run` (attached) with the main service's exit code\n\
                  (the image's entrypoint; 128+N for signal N), and 125 when the engine failed.\n\
                  Logs go to stderr: -v (or --log-level LEVEL, or RUST_LOG) for more, --log-format json for\n\
                  JSON lines; `run` hands both to the enclave's supervisor (supervisor.log)."
)]
pub struct Cli {
    /// Logging: -v, --log-level, --log-format.
    #[command(flatten)]
    pub log: enclave_cli::logging::LogArgs,
    /// Ask the engine API (`enclave-engine daemon`) at unix:///PATH instead of reading the
    /// state directory: ps, inspect, stop, rm, logs (without -f) and events print the same
    /// either way; the other enclave commands refuse it for now.
    #[arg(
        long,
        global = true,
        env = "ENCLAVE_ENGINE_HOST",
        value_name = "unix:///PATH"
    )]
    pub host: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a reproducible EIF from an OCI image or a root filesystem.
    Build(BuildArgs),
    /// Sign an existing EIF (PCR8), like nitro-cli's sign-eif; reproducible.
    Sign(SignArgs),
    /// Show an EIF's header, measurements, signature, metadata and sections; check CRC and signature.
    Inspect(InspectArgs),
    /// Compute the PCRs of an EIF, or PCR8 of a signing certificate (like `nitro-cli pcr`).
    Measure(MeasureArgs),
    /// Package an EIF and enclave-engine's binaries as an OCI image on a base image (no Docker).
    Package(PackageArgs),
    /// Run an enclave from an EIF (emulated with QEMU, or on Nitro).
    Run(RunArgs),
    /// List enclaves.
    Ps(PsArgs),
    /// Show an enclave's logs.
    Logs(LogsArgs),
    /// Show the enclaves' events (create, boot, heartbeat, health, exit, die, service start,
    /// exit and restart, restart, stop, kill, destroy, attest), like `docker events`: past ones with --since, then new ones as they come.
    Events(EventsArgs),
    /// Stop enclaves (gracefully, then killed after -t/--timeout seconds).
    Stop(StopArgs),
    /// Start ended enclaves again (same options, the EIF pinned at `run`).
    Start(StartArgs),
    /// Stop enclaves (gracefully, -t/--timeout) and start them again.
    Restart(RestartArgs),
    /// Power enclaves off at once, with no grace period.
    Kill(KillArgs),
    /// Remove ended enclaves (-f: running ones too).
    Rm(RmArgs),
    /// Follow the console of an enclave started with --debug-mode.
    Console(ConsoleArgs),
    /// Run a command in an enclave (needs `debug.exec` in its spec).
    Exec(ExecArgs),
    /// Copy files and directory trees into or out of an enclave (needs `debug.cp`).
    Cp(CpArgs),
    /// List, start, stop and restart an enclave's services; show their logs.
    Services(ServicesArgs),
    /// Whether an enclave is alive (--live) or ready: running, services ready, health check
    /// passing; exit 0 if so, 1 if not (for probes and scripts).
    Health(HealthArgs),
    /// Fetch a fresh attestation document from a running enclave.
    Attest(AttestArgs),
    /// Verify an attestation document against the pinned AWS root (or given roots) and a policy.
    Verify(VerifyArgs),
    /// Kubernetes manifests: a Deployment (and Service) for an enclave, the node setup DaemonSet.
    Kube(KubeArgs),
    /// Prepare this machine as a Nitro Enclaves node (allocator, hugepages, ne group).
    Node(NodeArgs),
    /// Check this parent end to end: a probe enclave, /dev/nsm in it, attestation verified,
    /// egress allowed and refused (the installed nitro-selftest.sh).
    Selftest(SelftestArgs),
    /// Print a shell completion script (bash, zsh or fish) for enclave-ctl.
    Completion(CompletionArgs),
    /// Write enclave-ctl's man pages into a directory (used by scripts/install.sh).
    #[command(hide = true)]
    Man(ManArgs),
}
