//! Shell completions and man pages from the real binaries: the bash script parses and completes
//! subcommands and flags when bash runs it, the zsh and fish scripts name the commands, and the
//! man pages cover every visible subcommand with a well-formed header that man can render.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_ok, have, run, stdout};

fn ctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enclave-ctl"))
}

/// What bash's programmable completion offers for the words of `line` (the last one is being
/// completed), using the generated script.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         _enclave__ctl enclave-ctl '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let o = run(Command::new("bash").args(["--norc", "-c", &program]));
    assert_ok(&o);
    stdout(&o).lines().map(str::to_owned).collect()
}

#[test]
fn bash_completion_parses_and_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(ctl().args(["completion", "bash"]));
    assert_ok(&o);
    let script = dir.path().join("enclave-ctl.bash");
    std::fs::write(&script, &o.stdout).unwrap();
    assert_ok(&run(Command::new("bash").arg("-n").arg(&script)));

    let subcommands = bash_complete(&script, &["enclave-ctl", "b"]);
    assert_eq!(subcommands, ["build"], "completing `enclave-ctl b`");
    let all = bash_complete(&script, &["enclave-ctl", ""]);
    for sub in ["run", "ps", "verify", "completion"] {
        assert!(all.iter().any(|w| w == sub), "{sub} missing from {all:?}");
    }
    let flags = bash_complete(&script, &["enclave-ctl", "build", "--kernel-p"]);
    assert_eq!(flags, ["--kernel-profile"]);
}

#[test]
fn zsh_and_fish_completions_describe_the_commands() {
    let o = run(ctl().args(["completion", "zsh"]));
    assert_ok(&o);
    let zsh = stdout(&o);
    assert!(zsh.starts_with("#compdef enclave-ctl"), "{zsh}");
    assert!(zsh.contains("--kernel-profile"), "zsh lacks build's flags");
    if have("zsh") {
        assert_ok(&run(Command::new("zsh").args(["-n", "-c", &zsh])));
    }

    let o = run(ctl().args(["completion", "fish"]));
    assert_ok(&o);
    let fish = stdout(&o);
    assert!(
        fish.contains("complete -c enclave-ctl") && fish.contains("-a \"build\""),
        "{fish}"
    );
    if have("fish") {
        assert_ok(&run(Command::new("fish").args(["-n", "-c", &fish])));
    }
}

#[test]
fn completion_refuses_an_unknown_shell() {
    let o = run(ctl().args(["completion", "tcsh"]));
    assert_eq!(o.status.code(), Some(2), "usage error expected");
    assert!(common::stderr(&o).contains("bash"), "the choices are named");
}

/// The `.TH` line of a man page: `.TH <name> 1 …`.
fn th_name(page: &str) -> Option<&str> {
    let th = page.lines().find(|l| l.starts_with(".TH "))?;
    let mut fields = th.split_whitespace().skip(1);
    let name = fields.next()?;
    (fields.next()? == "1").then_some(name)
}

#[test]
fn man_pages_cover_every_visible_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man/man1");
    let o = run(ctl().args(["man", "--out"]).arg(&out));
    assert_ok(&o);
    let listed: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();

    // The subcommands, from `--help` (the user's view), not from the code under test.
    let help = stdout(&run(ctl().arg("--help")));
    let subs: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .and_then(|s| s.split("Options:").next())
        .unwrap()
        .lines()
        // "  name  description"; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help" && w.chars().all(|c| c.is_ascii_lowercase()))
        .collect();
    assert!(subs.len() >= 15, "{subs:?}");
    for sub in subs.iter().copied().chain(["services-list"]) {
        let name = format!("enclave-ctl-{sub}");
        let path = out.join(format!("{name}.1"));
        let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert_eq!(th_name(&page), Some(name.as_str()), "{name}.1 header");
        assert!(page.contains(".SH NAME"), "{name}.1 has no NAME section");
        assert!(listed.iter().any(|l| l.ends_with(&format!("/{name}.1"))));
    }
    assert!(
        !out.join("enclave-ctl-man.1").exists(),
        "hidden `man` paged"
    );
    let top = std::fs::read_to_string(out.join("enclave-ctl.1")).unwrap();
    assert_eq!(th_name(&top), Some("enclave-ctl"));

    if have("man") && have("groff") {
        let o = run(Command::new("man")
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C")
            .arg("-l")
            .arg(out.join("enclave-ctl-build.1")));
        assert_ok(&o);
        let text = stdout(&o);
        assert!(text.contains("--kernel-profile"), "{text}");
    }
}

#[test]
fn man_pages_are_the_same_bytes_each_time() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["a", "b"] {
        assert_ok(&run(ctl().args(["man", "--out"]).arg(dir.path().join(sub))));
    }
    let page = |d: &str| std::fs::read(dir.path().join(d).join("enclave-ctl-run.1")).unwrap();
    assert_eq!(page("a"), page("b"));
}

#[test]
fn man_into_a_file_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let o = run(ctl().args(["man", "--out"]).arg(file.join("man1")));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stderr(&o).contains("not-a-dir/man1"),
        "{}",
        common::stderr(&o)
    );
}

#[test]
fn a_bad_log_level_is_an_error_not_ignored() {
    let o = run(ctl().args(["--log-level", "enclave=debug=x", "ps"]));
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert!(
        err.contains("bad log level") && err.contains("enclave=debug=x"),
        "{err}"
    );
}
