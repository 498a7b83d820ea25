//! `enclave-engine supervise ID`: the per-enclave supervisor that `enclave-ctl run` starts
//! detached. Not meant to be run by hand.
#![deny(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

/// enclave-engine: the per-enclave supervisor, and the opt-in engine API daemon.
#[derive(Debug, Parser)]
#[command(name = "enclave-engine", version)]
struct Cli {
    #[command(flatten)]
    log: enclave_cli::logging::LogArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Supervise enclave ID until it ends for good (started by `enclave-ctl run`).
    Supervise {
        /// The enclave's full id.
        id: String,
        /// The state directory.
        #[arg(long, env = "ENCLAVE_ENGINE_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Seconds to wait for the boot heartbeat.
        #[arg(long, default_value_t = 60)]
        boot_timeout: u64,
    },
    /// Serve the engine API (REST, /v1/…, docs/api/openapi.yaml) on a Unix socket: enclaves,
    /// events (server-sent), metrics. Opt-in; enclave-ctl works without it. Stops on SIGTERM
    /// or Ctrl-C; the enclaves keep running.
    Daemon {
        /// The socket (default: <state dir>/engine.sock). Mode 0660: for a group to reach it,
        /// put it in a directory that group can enter and give --group.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// The socket's group (a numeric gid).
        #[arg(long, value_name = "GID")]
        group: Option<u32>,
        /// Also listen on this TCP address, with mutual TLS only (needs --tls-cert, --tls-key
        /// and --client-ca; there is no plain-HTTP TCP listener).
        #[arg(long, value_name = "IP:PORT", requires_all = ["tls_cert", "tls_key", "client_ca"])]
        listen: Option<std::net::SocketAddr>,
        /// The server's certificate chain (PEM), for --listen.
        #[arg(long, value_name = "PEM", requires = "listen")]
        tls_cert: Option<PathBuf>,
        /// The server's private key (PEM), for --listen.
        #[arg(long, value_name = "PEM", requires = "listen")]
        tls_key: Option<PathBuf>,
        /// The CA (PEM) that signed the clients' certificates, for --listen.
        #[arg(long, value_name = "PEM", requires = "listen")]
        client_ca: Option<PathBuf>,
        /// The state directory.
        #[arg(long, env = "ENCLAVE_ENGINE_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
    /// Print a shell completion script for enclave-engine.
    #[command(hide = true)]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: enclave_cli::docs::Shell,
    },
    /// Write enclave-engine's man pages into a directory (used by scripts/install.sh).
    #[command(hide = true)]
    Man {
        /// Directory for the section-1 pages (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    // Its stderr is supervisor.log, not a terminal: no colours there.
    if let Err(e) = cli.log.init("info") {
        eprintln!("error: {:#}", anyhow::Error::new(e));
        std::process::exit(1);
    }
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Supervise {
            id,
            state_dir,
            boot_timeout,
        } => {
            let root = match state_dir {
                Some(dir) => dir,
                None => enclave_engine::state::default_root()?,
            };
            // Before any thread starts, so that every thread has the signals blocked.
            let stop = enclave_engine::supervisor::signals::termination_flag()?;
            nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
            let opts = enclave_engine::supervisor::Options {
                boot_timeout: Duration::from_secs(boot_timeout),
                ..Default::default()
            };
            let rec = enclave_engine::supervisor::run(&root, &id, &opts, &stop)
                .with_context(|| format!("supervising enclave {id}"))?;
            tracing::info!(status = %rec.status, "supervisor done");
            Ok(())
        }
        Cmd::Daemon {
            socket,
            group,
            listen,
            tls_cert,
            tls_key,
            client_ca,
            state_dir,
        } => {
            let path = match state_dir {
                Some(dir) => dir,
                None => enclave_engine::state::default_root()?,
            };
            let root = enclave_engine::state::StateRoot::open(&path)
                .with_context(|| format!("opening the state directory {}", path.display()))?;
            let tcp = match (listen, tls_cert, tls_key, client_ca) {
                (Some(listen), Some(cert), Some(key), Some(client_ca)) => {
                    Some(enclave_engine::daemon::TcpOptions {
                        listen,
                        cert,
                        key,
                        client_ca,
                    })
                }
                _ => None,
            };
            let opts = enclave_engine::daemon::DaemonOptions { socket, group, tcp };
            enclave_engine::daemon::serve(root, &opts).context("the engine API")?;
            Ok(())
        }
        Cmd::Completion { shell } => {
            let script = enclave_cli::docs::completion(shell, Cli::command());
            std::io::stdout()
                .lock()
                .write_all(&script)
                .context("writing the completion script")
        }
        Cmd::Man { out } => {
            enclave_cli::docs::write_man_pages(Cli::command(), &out)
                .context("writing the man pages")?;
            Ok(())
        }
    }
}
