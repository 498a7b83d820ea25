//! enclave-ctl: the enclave-engine command line. Thin: argument parsing here and in `cli`, the
//! work in the libraries, presentation in `cmd/`.
//!
//! Where it runs: on the parent (or any machine, for `build`, `inspect`, `measure`, `sign` and
//! `verify`), as the user; it starts one supervisor per enclave and talks to enclaves only
//! through the control channel.
#![deny(unsafe_code)]

mod cli;
mod cmd;
mod kube;
mod progress;
mod remote;

use clap::Parser;

use cli::{Cli, Command, EXIT_ENGINE, EXIT_ERROR, RENAMED_ENV};

fn main() {
    honour_old_env_names();
    // The config file's defaults go in as the variables not already set, before clap reads them.
    match enclave_engine::config::Config::load() {
        Ok(config) => config.export_defaults(),
        Err(err) => {
            eprintln!("error: config file: {:#}", anyhow::Error::new(err));
            std::process::exit(EXIT_ERROR);
        }
    }
    let cli = Cli::parse();
    // `run` fails with 125, as `docker run` does, so that its own errors are never mistaken
    // for the main service's exit code.
    let failed = match cli.command {
        Command::Run(_) => EXIT_ENGINE,
        _ => EXIT_ERROR,
    };
    // Before any thread: the supervisor that `run` starts inherits the log choices.
    cli.log.export_to_children();
    if let Err(err) = cli.log.init("warn") {
        eprintln!("error: {:#}", anyhow::Error::new(err));
        std::process::exit(failed);
    }
    // `--log-format json` also makes an attached `run` print the enclave's lines as JSON.
    let json_lines = cli.log.log_format == Some(enclave_cli::logging::LogFormat::Json);
    let remote = match cli.host.as_deref().map(remote::Remote::parse).transpose() {
        Ok(r) => r,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(cli::EXIT_USAGE);
        }
    };
    if let Some(what) = remote.as_ref().and(not_through_the_api(&cli.command)) {
        eprintln!(
            "error: `{what}` does not go through the engine API yet: unset ENCLAVE_ENGINE_HOST or drop --host (every enclave command but console does)"
        );
        std::process::exit(cli::EXIT_USAGE);
    }
    let remote = remote.as_ref();
    let result = match cli.command {
        Command::Build(args) => cmd::build::run(args),
        Command::Sign(args) => cmd::sign::run(args),
        Command::Inspect(args) if args.eif.is_file() => cmd::inspect::run(args),
        Command::Inspect(args) => cmd::enclave_inspect::run(args, remote),
        Command::Measure(args) => cmd::measure::run(args),
        Command::Package(args) => cmd::package::run(args),
        Command::Run(args) => match remote {
            Some(remote) => cmd::run_remote::run(&args, json_lines, remote),
            None => cmd::run::run(args, json_lines),
        },
        Command::Ps(args) => cmd::ps::run(args, remote),
        Command::Logs(args) => cmd::logs::run(args, remote),
        Command::Events(args) => cmd::events::run(args, remote),
        Command::Stop(args) => cmd::stop::stop(args, remote),
        Command::Start(args) => cmd::stop::start(args, remote),
        Command::Restart(args) => cmd::stop::restart(args, remote),
        Command::Kill(args) => cmd::stop::kill(args, remote),
        Command::Rm(args) => cmd::rm::run(args, remote),
        Command::Console(args) => cmd::console::run(args),
        Command::Exec(args) => cmd::exec::run(args, remote),
        Command::Cp(args) => cmd::cp::run(args, remote),
        Command::Services(args) => cmd::services::run(args, remote),
        Command::Health(args) => cmd::health::run(args, remote),
        Command::Attest(args) => cmd::attest::run(args, remote),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Kube(args) => cmd::kube::run(args),
        Command::Node(args) => cmd::node::run(args),
        Command::Selftest(args) => cmd::selftest::run(args),
        Command::Completion(args) => cmd::docs::completion(args),
        Command::Man(args) => cmd::docs::man(args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: "building x: reading y: …".
            eprintln!("error: {err:#}");
            std::process::exit(failed);
        }
    }
}

/// The enclave commands that do not go through the engine API yet, by name; `None` for those
/// that do and for those that never touch enclaves (build, measure, verify, …).
fn not_through_the_api(command: &Command) -> Option<&'static str> {
    match command {
        Command::Console(_) => Some("console"),
        _ => None,
    }
}

/// Lets the variables' old names (before the `ENCLAVE_ENGINE_` prefix) keep working: clap reads
/// the new names only. Runs first, before any thread.
fn honour_old_env_names() {
    for (old, new) in RENAMED_ENV {
        if std::env::var_os(new).is_none() {
            if let Some(value) = std::env::var_os(old) {
                std::env::set_var(new, value);
            }
        }
    }
}
