//! A progress bar on stderr when it is a terminal, nothing otherwise.

use std::io::IsTerminal;

use enclave_image::build::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// Shows the build's phases and bytes with indicatif.
pub struct TerminalProgress {
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    /// A bar if stderr is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg:<24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self { bar }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for TerminalProgress {
    fn phase(&self, name: &str, total_bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_message(name.to_owned());
            bar.set_length(total_bytes);
            bar.set_position(0);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
}
