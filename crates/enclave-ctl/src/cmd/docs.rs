//! `enclave-ctl completion` and `enclave-ctl man`: the CLI definition rendered for shells and man.

use anyhow::{Context, Result};
use clap::CommandFactory;
use enclave_cli::docs as cli_docs;

use crate::cli::{Cli, CompletionArgs, ManArgs, EXIT_OK};

/// Prints the completion script on stdout.
pub fn completion(args: CompletionArgs) -> Result<i32> {
    let script = cli_docs::completion(args.shell, Cli::command());
    std::io::Write::write_all(&mut std::io::stdout().lock(), &script)
        .context("writing the completion script")?;
    Ok(EXIT_OK)
}

/// Writes the man pages and lists them on stdout.
pub fn man(args: ManArgs) -> Result<i32> {
    let written =
        cli_docs::write_man_pages(Cli::command(), &args.out).context("writing the man pages")?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(EXIT_OK)
}
