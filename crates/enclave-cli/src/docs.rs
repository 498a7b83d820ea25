//! Shell completions and man pages generated from a binary's clap definition, so that what the
//! installer puts in `share/` is always the CLI that shipped (nothing hand-written to drift).
//! Used by the hidden `completion` and `man` commands of enclave-ctl, enclave-engine and
//! enclave-proxy.

use std::path::{Path, PathBuf};

/// The shells completions are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU bash (bash-completion).
    Bash,
    /// zsh (compsys).
    Zsh,
    /// fish.
    Fish,
}

impl Shell {
    /// The file name a completion for `bin` has in the shell's usual directory.
    pub fn file_name(self, bin: &str) -> String {
        match self {
            Shell::Bash => bin.to_owned(),
            Shell::Zsh => format!("_{bin}"),
            Shell::Fish => format!("{bin}.fish"),
        }
    }

    /// The shell's usual completion directory under an installation prefix.
    pub fn dir_under(self, prefix: &Path) -> PathBuf {
        match self {
            Shell::Bash => prefix.join("share/bash-completion/completions"),
            Shell::Zsh => prefix.join("share/zsh/site-functions"),
            Shell::Fish => prefix.join("share/fish/vendor_completions.d"),
        }
    }
}

/// Why writing a man page failed.
#[derive(Debug, thiserror::Error)]
pub enum CliDocsError {
    /// The output directory could not be made.
    #[error("creating {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// A page could not be rendered or written.
    #[error("writing {}", path.display())]
    Write {
        /// The page.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

/// The completion script of `cmd` for `shell`.
pub fn completion(shell: Shell, mut cmd: clap::Command) -> Vec<u8> {
    let name = cmd.get_name().to_owned();
    let mut script = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, &name, &mut script);
    if shell != Shell::Bash || !name.contains('-') {
        return script;
    }
    // clap_complete 4.6 spells a hyphenated binary's name two ways in bash: `enclave__ctl` where
    // it tracks the subcommand typed, `enclave__subcmd__ctl` in the case labels that hold each
    // subcommand's flags, so no flag of a subcommand would ever complete. Use the first.
    let tracked = format!("{}__subcmd__", name.replace('-', "__"));
    let labelled = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    String::from_utf8_lossy(&script)
        .replace(&labelled, &tracked)
        .into_bytes()
}

/// Writes section-1 man pages for `cmd` and each visible subcommand, nested ones included
/// (`enclave-ctl.1`, `enclave-ctl-build.1`, `enclave-ctl-services-list.1`, …) into `dir`, made if
/// missing. Pages carry no date, so the same CLI gives the same bytes. Returns the paths written.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, CliDocsError> {
    std::fs::create_dir_all(dir).map_err(|error| CliDocsError::CreateDir {
        path: dir.to_owned(),
        error,
    })?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), CliDocsError> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)
        .and_then(|()| std::fs::write(&path, &page))
        .map_err(|error| CliDocsError::Write {
            path: path.clone(),
            error,
        })?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> clap::Command {
        clap::Command::new("tool")
            .version("1.2.3")
            .about("A sample tool.")
            .arg(clap::Arg::new("verbose").short('v').long("verbose"))
            .subcommand(
                clap::Command::new("group")
                    .about("A group.")
                    .subcommand(clap::Command::new("leaf").about("A leaf.")),
            )
            .subcommand(clap::Command::new("secret").hide(true))
    }

    #[test]
    fn man_pages_cover_visible_subcommands_recursively_and_skip_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("man1");
        let written = write_man_pages(sample(), &out).unwrap();
        let mut names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["tool-group-leaf.1", "tool-group.1", "tool.1"]);
        let page = std::fs::read_to_string(out.join("tool.1")).unwrap();
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains(".TH tool 1  \"tool 1.2.3\""), "{page}");
        assert!(page.contains("\\-\\-verbose"), "{page}");
    }

    #[test]
    fn man_pages_into_an_unwritable_place_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = write_man_pages(sample(), &file.join("man1")).unwrap_err();
        assert!(matches!(err, CliDocsError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains("file/man1"), "{err}");
    }

    #[test]
    fn completions_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = String::from_utf8(completion(shell, sample())).unwrap();
            assert!(text.contains("group"), "{shell:?}: {text}");
            assert!(text.contains("leaf"), "{shell:?}: {text}");
        }
    }
}
