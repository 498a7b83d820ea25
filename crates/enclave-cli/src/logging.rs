//! Log setup of the host binaries (`enclave-ctl` and the supervisor, with the proxies it runs):
//! one set of flags, `-v`/`--log-level`/`--log-format`, next to `RUST_LOG`; colours only on a
//! terminal and never under `NO_COLOR`; JSON lines on request, for log collectors.
//!
//! The supervisor runs detached with its output in `supervisor.log`: `enclave-ctl` hands its
//! choices down through [`ENV_LOG_LEVEL`] and [`ENV_LOG_FORMAT`], which the supervisor reads.

use std::io::IsTerminal;

/// The variable that carries `--log-level` (and `-v`) to child processes.
pub const ENV_LOG_LEVEL: &str = "ENCLAVE_ENGINE_LOG_LEVEL";
/// The variable that carries `--log-format` to child processes.
pub const ENV_LOG_FORMAT: &str = "ENCLAVE_ENGINE_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, fields, message).
    Json,
}

impl LogFormat {
    /// The value as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The logging flags, global to every subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// More detail on stderr: -v info, -vv debug, -vvv trace.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log level (error, warn, info, debug, trace) or a RUST_LOG-style filter such as
    /// `enclave_engine=debug`. Wins over -v and RUST_LOG.
    #[arg(long, value_name = "LEVEL", env = ENV_LOG_LEVEL, global = true)]
    pub log_level: Option<String>,
    /// Log format: text, or json (one object per line).
    #[arg(long, value_name = "FORMAT", value_enum, env = ENV_LOG_FORMAT, global = true)]
    pub log_format: Option<LogFormat>,
}

impl LogArgs {
    /// The filter: `--log-level`, else `-v`, else `RUST_LOG`, else `default`.
    pub fn filter(&self, rust_log: Option<&str>, default: &str) -> String {
        if let Some(level) = self.log_level.as_deref().filter(|l| !l.is_empty()) {
            return level.to_owned();
        }
        match self.verbose {
            0 => rust_log
                .filter(|v| !v.is_empty())
                .unwrap_or(default)
                .to_owned(),
            1 => "info".to_owned(),
            2 => "debug".to_owned(),
            _ => "trace".to_owned(),
        }
    }

    /// Installs the global subscriber on stderr. A filter that does not parse is an error, so a
    /// typo in `--log-level` is not silently ignored.
    pub fn init(&self, default: &str) -> Result<(), LogSetupError> {
        let rust_log = std::env::var("RUST_LOG").ok();
        let spec = self.filter(rust_log.as_deref(), default);
        let filter = tracing_subscriber::EnvFilter::try_new(&spec).map_err(|error| {
            LogSetupError::Filter {
                filter: spec.clone(),
                error,
            }
        })?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false);
        match self.log_format.unwrap_or_default() {
            LogFormat::Text => {
                let ansi = colours_wanted(
                    std::io::stderr().is_terminal(),
                    std::env::var_os("NO_COLOR").as_deref(),
                );
                builder.with_ansi(ansi).init();
            }
            LogFormat::Json => builder.json().with_ansi(false).init(),
        }
        Ok(())
    }

    /// Exports the choices made on the command line so that child processes (the supervisor)
    /// log the same way. Call before any thread starts.
    pub fn export_to_children(&self) {
        // RUST_LOG reaches them by itself.
        if self.log_level.is_some() || self.verbose > 0 {
            std::env::set_var(ENV_LOG_LEVEL, self.filter(None, "info"));
        }
        if let Some(format) = self.log_format {
            std::env::set_var(ENV_LOG_FORMAT, format.name());
        }
    }
}

/// Colours on stderr: only when it is a terminal, and never when `NO_COLOR` is set to anything
/// but the empty string (https://no-color.org).
pub fn colours_wanted(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogSetupError {
    /// `--log-level` (or the variable) is not a level or filter.
    #[error("bad log level or filter {filter:?}")]
    Filter {
        /// What was given.
        filter: String,
        /// Why it does not parse.
        #[source]
        error: tracing_subscriber::filter::ParseError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn log_level_beats_verbose_which_beats_rust_log() {
        let mut args = LogArgs::default();
        assert_eq!(args.filter(None, "warn"), "warn");
        assert_eq!(args.filter(Some("debug"), "warn"), "debug");
        assert_eq!(args.filter(Some(""), "warn"), "warn");
        args.verbose = 1;
        assert_eq!(args.filter(Some("error"), "warn"), "info");
        args.verbose = 5;
        assert_eq!(args.filter(None, "warn"), "trace");
        args.log_level = Some("enclave_engine=debug".into());
        assert_eq!(args.filter(Some("error"), "warn"), "enclave_engine=debug");
    }

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours_wanted(true, None));
        assert!(!colours_wanted(false, None));
        assert!(!colours_wanted(true, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(colours_wanted(true, Some(OsStr::new(""))));
    }
}
