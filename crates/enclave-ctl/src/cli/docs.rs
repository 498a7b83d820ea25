//! Arguments of the commands that describe enclave-ctl itself: shell completions and man pages,
//! generated from the clap definition so that an installation needs no checkout.

use std::path::PathBuf;

use clap::Args;
use enclave_cli::docs::Shell;

/// `enclave-ctl completion`.
#[derive(Debug, Args)]
#[command(after_help = "Install, e.g.:\n  \
    enclave-ctl completion bash > ~/.local/share/bash-completion/completions/enclave-ctl\n  \
    enclave-ctl completion zsh > \"${fpath[1]}/_enclave-ctl\"\n  \
    enclave-ctl completion fish > ~/.config/fish/completions/enclave-ctl.fish")]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `enclave-ctl man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory for the section-1 pages (made if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}
