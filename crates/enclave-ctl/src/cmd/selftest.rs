//! `enclave-ctl selftest`: runs the Nitro self-test installed beside this enclave-ctl
//! (`<prefix>/libexec/enclave-engine/nitro-selftest.sh`, with the nsm-probe next to it), or the
//! one of the checkout this enclave-ctl was built in, against this very enclave-ctl.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cli::{SelftestArgs, SelftestBackend, EXIT_ERROR};

const SCRIPT: &str = "nitro-selftest.sh";

/// Where the script may be for an enclave-ctl at `exe`, in order: the installed layout
/// (`<prefix>/bin/enclave-ctl`), then a checkout's (`<checkout>/target/<profile>/enclave-ctl`).
fn script_candidates(exe: &Path) -> Vec<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("."));
    let prefix = dir.parent().unwrap_or(dir);
    let mut found = vec![prefix.join("libexec/enclave-engine").join(SCRIPT)];
    if let Some(checkout) = prefix.parent() {
        found.push(checkout.join("scripts").join(SCRIPT));
    }
    found
}

/// The script's arguments for `args`.
fn script_args(args: &SelftestArgs) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(backend) = args.backend {
        let name = match backend {
            SelftestBackend::Nitro => "nitro",
            SelftestBackend::Qemu => "qemu",
        };
        out.extend(["--backend".to_owned(), name.to_owned()]);
    }
    if let Some(n) = args.cpus {
        out.extend(["--cpus".to_owned(), n.to_string()]);
    }
    if let Some(m) = args.memory {
        out.extend(["--memory".to_owned(), m.to_string()]);
    }
    if let Some(dir) = &args.kernel_dir {
        out.extend(["--kernel-dir".to_owned(), dir.display().to_string()]);
    }
    if args.keep {
        out.push("--keep".to_owned());
    }
    out
}

/// Runs the command; returns the script's exit status.
pub fn run(args: SelftestArgs) -> Result<i32> {
    let exe = std::env::current_exe().context("finding enclave-ctl's own path")?;
    let candidates = script_candidates(&exe);
    let Some(script) = candidates.iter().find(|p| p.is_file()) else {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "no {SCRIPT} found (looked in {}): install enclave-engine with scripts/install.sh or \
             the release tarball, or run scripts/{SCRIPT} from a checkout",
            looked.join(", ")
        );
    };
    // The enclave-ctl under test is this one; the script finds the nsm-probe beside itself.
    let status = Command::new("bash")
        .arg(script)
        .args(script_args(&args))
        .env("ENCLAVE_CTL", &exe)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    Ok(status.code().unwrap_or(EXIT_ERROR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_script_comes_before_a_checkouts() {
        let found = script_candidates(Path::new("/opt/ee/bin/enclave-ctl"));
        assert_eq!(
            found,
            [
                PathBuf::from("/opt/ee/libexec/enclave-engine/nitro-selftest.sh"),
                PathBuf::from("/opt/scripts/nitro-selftest.sh"),
            ]
        );
        let found = script_candidates(Path::new("/src/ee/target/debug/enclave-ctl"));
        assert_eq!(found[1], Path::new("/src/ee/scripts/nitro-selftest.sh"));
    }

    #[test]
    fn options_pass_on_as_the_script_spells_them() {
        let args = SelftestArgs {
            backend: Some(SelftestBackend::Qemu),
            cpus: Some(2),
            memory: None,
            kernel_dir: Some("/k".into()),
            keep: true,
        };
        assert_eq!(
            script_args(&args),
            [
                "--backend",
                "qemu",
                "--cpus",
                "2",
                "--kernel-dir",
                "/k",
                "--keep"
            ]
        );
    }
}
