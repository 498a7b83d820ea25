//! `enclave-ctl cp`: a file or tree into or out of an enclave, with a progress bar.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context, Result};
use enclave_proto::tree;
use enclave_proto::wire::Capability;
use indicatif::{ProgressBar, ProgressStyle};

use super::exec::{connect, resolve_enclave};
use crate::cli::{ControlArgs, CpArgs};
use crate::remote::Remote;

/// Splits `ENCLAVE:/path` (the enclave part may itself contain colons, as in
/// `unix:/run/x.sock:/tmp`); `None` for a local path.
fn in_enclave<'a>(
    arg: &'a str,
    control: &ControlArgs,
    api: Option<&Remote>,
) -> Option<(&'a str, &'a str)> {
    arg.match_indices(":/").find_map(|(i, _)| {
        let (enclave, path) = (&arg[..i], &arg[i + 1..]);
        let known = |e: &str| match api {
            Some(api) => api.name_of(e).is_ok(),
            None => resolve_enclave(e, control).is_ok(),
        };
        let plausible = enclave.parse::<enclave_proto::transport::Addr>().is_ok()
            || (!enclave.contains('/') && known(enclave));
        plausible.then_some((enclave, path))
    })
}

fn bar(quiet: bool, total: Option<u64>) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total.unwrap_or(0));
    let template = if total.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}"
    } else {
        "{spinner} {msg} {bytes} {bytes_per_sec}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Runs the command.
pub fn run(args: CpArgs, api: Option<&Remote>) -> Result<i32> {
    let (src, dst) = (
        in_enclave(&args.src, &args.control, api),
        in_enclave(&args.dst, &args.control, api),
    );
    let stats = match (src, dst) {
        (None, Some((enclave, dest))) => {
            // A symlink named as SRC is followed (the user named it); none below it is.
            let tree = tree::scan(Path::new(&args.src), tree::SourceLink::Follow)
                .with_context(|| format!("reading {}", args.src))?;
            let bar = bar(args.quiet, Some(tree.total_bytes()));
            bar.set_message(format!("{} -> {enclave}", args.src));
            let mut client = connect(enclave, &args.control, &[Capability::Cp], api)?;
            let stats = client
                .cp_tree_to(&tree, dest, |n| bar.inc(n))
                .with_context(|| format!("copying {} to {}", args.src, args.dst));
            bar.finish_and_clear();
            stats?
        }
        (Some((enclave, path)), None) => {
            let bar = bar(args.quiet, None);
            bar.set_message(format!("{enclave} -> {}", args.dst));
            let mut client = connect(enclave, &args.control, &[Capability::Cp], api)?;
            let stats = client
                .cp_from(path, Path::new(&args.dst), |n| bar.inc(n))
                .with_context(|| format!("copying {} to {}", args.src, args.dst));
            bar.finish_and_clear();
            stats?
        }
        (Some(_), Some(_)) => bail!("both SRC and DST are in an enclave; one must be local"),
        (None, None) => bail!("neither SRC nor DST is ENCLAVE:/PATH"),
    };
    if !args.quiet {
        eprintln!("copied {} entries, {} bytes", stats.entries, stats.bytes);
    }
    Ok(0)
}
