//! `enclave-proxy`: the host side of the proxies as a standalone binary (sidecar use).
//!
//! The arguments are parsed here and handed to the library (`enclave_proxy::host`); all the
//! behaviour lives there.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use enclave_cli::docs::{self, Shell};
use enclave_cli::logging::LogArgs;
use enclave_proto::transport::{hybrid, Addr, VMADDR_CID_ANY};
use enclave_proxy::allow::{AllowList, EgressPolicy, Resolver};
use enclave_proxy::host::{
    listen_tcp, listen_unix, listen_vsock, serve_egress, serve_ingress, EgressRules, EgressStats,
    EnclaveConnector, IngressTarget, Limits,
};
use enclave_proxy::stream::{BufferPool, ProxyListener};
use enclave_spec::valid_host_name;
use tracing::{info, warn};

/// Proxies between the host's TCP world and an enclave's vsock.
///
/// Logs go to stderr: -v, --log-level or RUST_LOG for more or less detail, --log-format json
/// for log collectors.
#[derive(Debug, Parser)]
#[command(name = "enclave-proxy", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish an enclave port on a host TCP port.
    ///
    /// Each connection to --listen becomes a connection to the enclave's ingress forwarder (--to)
    /// asking for enclave port --port. The enclave checks the port against its own ingress
    /// allow-list.
    ///
    /// Example: enclave-proxy ingress --listen 8080 --to vsock:16:5001 --port 80
    Ingress(IngressArgs),
    /// Let the enclave's forwarders reach the endpoints of an allow-list.
    ///
    /// Every request is checked against the allow-list's `egress:` section: the name, then each
    /// address it resolves to (loopback, private and other special addresses only when a `cidr`
    /// rule with the port lists them).
    ///
    /// Example: enclave-proxy egress --listen vsock:any:9002 --expect-cid 16 --allow allow.yaml
    Egress(EgressArgs),
    /// Print a shell completion script for enclave-proxy.
    #[command(hide = true)]
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write enclave-proxy's man pages into a directory (used by scripts/install.sh).
    #[command(hide = true)]
    Man {
        /// Directory for the section-1 pages (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct IngressArgs {
    /// Host address to listen on: PORT (on 127.0.0.1), IP:PORT or [IPv6]:PORT.
    #[arg(long, value_name = "[IP:]PORT", value_parser = parse_listen)]
    listen: SocketAddr,
    /// The enclave's ingress forwarder: vsock:CID:PORT (Nitro), hybrid:/path/vsock.sock:PORT
    /// (vhost-device-vsock) or unix:/path.
    #[arg(long, value_name = "ADDR")]
    to: Addr,
    /// The enclave port to reach.
    #[arg(long, value_name = "ENCLAVE_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Args)]
struct EgressArgs {
    /// Where the enclave's forwarders connect: vsock:any:PORT (Nitro), hybrid:/path/vsock.sock:PORT
    /// (listens on /path/vsock.sock_PORT, as vhost-device-vsock expects) or unix:/path.
    #[arg(long, value_name = "ADDR")]
    listen: Addr,
    /// With a vsock listener: accept connections only from this enclave CID.
    #[arg(long, value_name = "CID")]
    expect_cid: Option<u32>,
    /// The allow-list: a YAML file with the `egress:` (and optionally `ingress:`) section of
    /// enclave.yaml.
    #[arg(long, value_name = "FILE")]
    allow: PathBuf,
    /// Resolve NAME to IP without asking DNS (repeatable, like `docker run --add-host`). The
    /// address is still checked against the allow-list.
    #[arg(long = "add-host", value_name = "NAME:IP", value_parser = parse_add_host)]
    add_hosts: Vec<(String, IpAddr)>,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Args)]
struct LimitArgs {
    /// Connections held at once; more are accepted and closed at once.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            ..Limits::default()
        }
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse().map_err(|_| {
        format!("{s:?} is not PORT, IP:PORT or [IPv6]:PORT (e.g. 8080, 0.0.0.0:8080, [::1]:8080)")
    })
}

fn parse_add_host(s: &str) -> Result<(String, IpAddr), String> {
    let bad = || format!("{s:?} is not NAME:IP (e.g. db.internal:10.0.0.5 or db.internal:fd00::5)");
    let (name, ip) = s.split_once([':', '=']).ok_or_else(bad)?;
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if !valid_host_name(&name) {
        return Err(bad());
    }
    let ip = ip
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(ip);
    Ok((name, ip.parse().map_err(|_| bad())?))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cli.log.init("info") {
        eprintln!("enclave-proxy: error: {:#}", anyhow::Error::new(e));
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Ingress(args) => ingress(args),
        Command::Egress(args) => egress(args),
        Command::Completion { shell } => std::io::stdout()
            .lock()
            .write_all(&docs::completion(shell, Cli::command()))
            .context("writing the completion script"),
        Command::Man { out } => docs::write_man_pages(Cli::command(), &out)
            .map(drop)
            .context("writing the man pages"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("enclave-proxy: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Only name resolution uses the blocking pool.
        .max_blocking_threads(8)
        .build()
        .context("cannot start the async runtime")
}

fn ingress(args: IngressArgs) -> Result<()> {
    let rt = runtime()?;
    let _entered = rt.enter();
    let listener = listen_tcp(args.listen).context("the ingress proxy cannot start")?;
    let bound = match &listener {
        ProxyListener::Tcp(l) => l.local_addr().ok(),
        _ => None,
    };
    let target = IngressTarget {
        connector: EnclaveConnector::from(args.to),
        enclave_port: args.port,
    };
    info!(
        listen = %bound.unwrap_or(args.listen),
        to = %target.connector,
        enclave_port = target.enclave_port,
        "ingress proxy listening"
    );
    rt.block_on(serve_ingress(
        listener,
        target,
        args.limits.limits(),
        BufferPool::default(),
        Arc::default(),
    ));
    Ok(())
}

fn egress(args: EgressArgs) -> Result<()> {
    let list = AllowList::load(&args.allow).context("fix the allow-list file")?;
    if list.egress.allow.is_empty() {
        warn!(allow = %args.allow.display(), "the allow-list has no egress rules: every request will be refused");
    }
    let rt = runtime()?;
    let _entered = rt.enter();
    if args.expect_cid.is_some() && !matches!(args.listen, Addr::Vsock { .. }) {
        bail!("--expect-cid only applies to a vsock:any:PORT listener (a Unix socket has no peer CID)");
    }
    let (listener, expect_cid) = match &args.listen {
        Addr::Vsock { cid, port } => {
            if *cid != VMADDR_CID_ANY {
                bail!("--listen vsock:{cid}:{port}: listen on vsock:any:{port}, and name the enclave with --expect-cid {cid}");
            }
            if args.expect_cid.is_none() {
                warn!("no --expect-cid: connections from any enclave on this host are served");
            }
            (listen_vsock(*port), args.expect_cid)
        }
        Addr::HybridVsock { uds_path, port } => {
            (listen_unix(&hybrid::listen_path(uds_path, *port)), None)
        }
        Addr::Unix(path) => (listen_unix(path), None),
    };
    let listener = listener.context("the egress proxy cannot start")?;
    let rules = EgressRules {
        policy: EgressPolicy::new(&list.egress),
        resolver: Resolver::new(args.add_hosts),
        expect_cid,
    };
    info!(listen = %args.listen, rules = list.egress.allow.len(), "egress proxy listening");
    rt.block_on(serve_egress(
        listener,
        rules,
        args.limits.limits(),
        BufferPool::default(),
        EgressStats::default(),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn listen_and_add_host_forms() {
        assert_eq!(
            parse_listen("8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:80").unwrap(),
            "[::1]:80".parse().unwrap()
        );
        assert!(parse_listen("localhost:80")
            .unwrap_err()
            .contains("IP:PORT"));
        assert_eq!(
            parse_add_host("DB.internal:10.0.0.5").unwrap(),
            ("db.internal".into(), "10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            parse_add_host("db.internal=[fd00::5]").unwrap(),
            ("db.internal".into(), "fd00::5".parse().unwrap())
        );
        assert_eq!(
            parse_add_host("v6.test:fd00::5").unwrap().1,
            "fd00::5".parse::<IpAddr>().unwrap()
        );
        for bad in [
            "db.internal",
            "db internal:1.2.3.4",
            "db.internal:nope",
            ":1.2.3.4",
        ] {
            assert!(parse_add_host(bad).is_err(), "{bad}");
        }
    }
}
