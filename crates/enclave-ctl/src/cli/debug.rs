//! Arguments of the commands that talk to a running enclave's control server: exec, cp,
//! services.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::StateArgs;

/// How to reach and authenticate to an enclave.
#[derive(Debug, Clone, Args)]
pub struct ControlArgs {
    /// Ed25519 private key to authenticate with, one of the spec's `debug.authorized_keys`
    /// (OpenSSH format without passphrase, or base64 of the seed). By default enclave-ctl uses
    /// the key of the enclave's supervisor, which only the user who started it can read.
    #[arg(long, value_name = "FILE", env = "ENCLAVE_ENGINE_KEY", global = true)]
    pub key: Option<PathBuf>,

    /// With a control address instead of a name: the PCRs the enclave's identity document must
    /// show (N=HEX, repeatable; at least PCR0 or PCR8), checked against the AWS root and this
    /// host's emulation root.
    #[arg(long = "enclave-pcr", value_name = "N=HEX", global = true)]
    pub enclave_pcrs: Vec<String>,

    /// With a control address instead of a name: accept whichever enclave answers (the session
    /// is still encrypted, but nothing proves whose it is).
    #[arg(long, global = true)]
    pub any_enclave: bool,

    /// Seconds to keep retrying while the enclave is not answering yet.
    #[arg(long, value_name = "SECS", default_value_t = 10, global = true)]
    pub connect_timeout: u64,

    #[command(flatten)]
    pub state: StateArgs,
}

/// `enclave-ctl exec`.
#[derive(Debug, Args)]
#[command(
    after_help = "ENCLAVE is a name or id from `enclave-ctl ps`, or a control address: \
    vsock:CID:5000, hybrid:/path/to/uds:5000, unix:/path.\n\n\
    Options go before ENCLAVE: everything after the command's name is the command's (`--` \
    before it is accepted, not needed).\n\n\
    The exit status is the command's (128+N when a signal N killed it; 127 when it cannot be \
    found).\n\nExamples:\n  enclave-ctl exec app ls -l /\n  enclave-ctl exec -it app /bin/sh\n  \
    enclave-ctl exec -u nobody app id\n  \
    echo hi | enclave-ctl exec -i -e A=1 -w /tmp app sh -c 'cat; echo $A'"
)]
pub struct ExecArgs {
    /// Forward stdin to the command.
    #[arg(short, long)]
    pub interactive: bool,

    /// Run the command under a pseudo-terminal (raw mode here, window size followed).
    #[arg(short, long)]
    pub tty: bool,

    /// Start the command in the background and print its pid.
    #[arg(short, long, conflicts_with_all = ["interactive", "tty"])]
    pub detach: bool,

    /// Environment variable for the command (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Working directory of the command (absolute).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,

    /// Run as this user inside the enclave: a name or uid, with an optional :group (name or
    /// gid), looked up in the enclave's /etc/passwd and /etc/group; HOME is that user's.
    /// Default: the image's user. An unknown name is refused.
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,

    #[command(flatten)]
    pub control: ControlArgs,

    /// The enclave.
    pub enclave: String,

    /// The command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// `enclave-ctl cp`.
#[derive(Debug, Args)]
#[command(
    after_help = "One of SRC and DST is ENCLAVE:PATH (PATH absolute), the other a local \
    path. As with docker cp: when DST is an existing directory, SRC (a file or a directory, no \
    -r needed) is copied into it; otherwise it is copied AS DST, whose parent must exist (a file \
    replaces an existing file, a directory never does). Modes kept, every file checked by \
    SHA-256 and renamed into place once complete.\n\n\
    Examples:\n  enclave-ctl cp ./config app:/etc/app\n  enclave-ctl cp app:/var/log/app.log .\n  \
    enclave-ctl cp ./build app:/srv/site"
)]
pub struct CpArgs {
    /// Source: a local path or ENCLAVE:PATH.
    pub src: String,

    /// Destination directory: a local path or ENCLAVE:PATH.
    pub dst: String,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,

    #[command(flatten)]
    pub control: ControlArgs,
}

/// `enclave-ctl health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The enclave (default: the only one running, as in a pod).
    pub enclave: Option<String>,

    /// Liveness only: the enclave runs, its supervisor lives and it answers on its control
    /// channel (a Kubernetes livenessProbe). Without it, also every service ready and the
    /// spec's health check passing (a readinessProbe).
    #[arg(long)]
    pub live: bool,

    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub control: ControlArgs,
}

/// `enclave-ctl services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// The enclave.
    pub enclave: String,

    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<ServiceAction>,

    #[command(flatten)]
    pub control: ControlArgs,
}

/// `enclave-ctl services ENCLAVE <action>`.
#[derive(Debug, Clone, Subcommand)]
pub enum ServiceAction {
    /// List the services and their states.
    List,
    /// Show one service.
    Status {
        /// Service name.
        name: String,
    },
    /// Start a stopped service.
    Start {
        /// Service name.
        name: String,
    },
    /// Stop a service (stopping `main` shuts the enclave down).
    Stop {
        /// Service name.
        name: String,
    },
    /// Stop then start a service.
    Restart {
        /// Service name.
        name: String,
    },
    /// Show a service's output.
    Logs {
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<u32>,
        /// Service name.
        name: String,
    },
}
