//! A fresh network namespace per test, for tests that need root's view of the network (real
//! netfilter, addresses on `lo` such as the metadata service's) without touching the host's.
//! Shared by the enclave-side and host-proxy test binaries.

use std::process::Command;

/// Set in the re-executed test binary running inside the namespace.
const CHILD_ENV: &str = "ENCLAVE_PROXY_TEST_IN_NETNS";

/// Runs `body` in a fresh network namespace with `lo` up: the test binary re-executes itself under
/// `unshare -n` with only the test `name` selected, and that child runs `body`. Without the tools
/// (or the privileges) the test is skipped with the reason printed, except in CI (`CI=true`),
/// where it fails.
pub fn in_netns(name: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD_ENV).is_some() {
        run(Command::new("ip").args(["link", "set", "lo", "up"]));
        body();
        return;
    }
    if let Err(why) = prerequisites() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{name} cannot run in CI: {why}");
        }
        eprintln!("skipping {name}: {why}");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("unshare")
        .args(["-n", "--"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the test under unshare -n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{name} failed in its network namespace"
    );
    // A filter that matched nothing would pass vacuously.
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run in its network namespace"
    );
}

fn prerequisites() -> Result<(), String> {
    // iptables-legacy reads back the xtables backend's rule (Debian's `iptables` package).
    for tool in ["unshare", "ip", "nft", "iptables-legacy"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    let probe = Command::new("unshare")
        .args(["-n", "--", "nft", "list", "ruleset"])
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !probe.status.success() {
        return Err(format!(
            "`unshare -n nft list ruleset` failed (needs root and nf_tables): {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(())
}

/// Runs a command that must succeed; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
