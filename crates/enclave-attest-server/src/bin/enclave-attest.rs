//! `enclave-attest serve`: the HTTPS attestation server, run inside the enclave as a service
//! (see `enclave_attest_server` and docs/attestation.md, "The attestation server").
//!
//! One current-thread runtime: the server uses one core, so its throughput is per core.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use enclave_attest::{vrf, Policy};
use enclave_attest_server::files::{FileMonitor, FileStore, NatsOptions, NatsPublisher};
use enclave_attest_server::{
    AttestationServer, AttestationSource, ControlSocketSource, EmulatedSource, FileProofs,
    ServerConfig, Startup, CONTROL_SOCKET,
};
use enclave_nsm::emulated::{EmulatedDevice, EmulationCa};
use enclave_proto::transport::Addr;
use enclave_spec::{EnclaveSpec, FileAttestationSpec};

#[derive(Parser)]
#[command(
    name = "enclave-attest",
    version,
    about = "The in-enclave HTTPS attestation server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve attestation documents, PCRs and file proofs over attested TLS.
    Serve(ServeArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SourceKind {
    /// The enclave's control server (which asks the NSM, hardware or emulated).
    Control,
    /// An in-process emulated NSM (host tests and benchmarks only).
    Emulated,
}

#[derive(Args)]
struct ServeArgs {
    /// The measured spec (the image's spec.json); its `attestation.server` section configures the
    /// server.
    #[arg(long, default_value = "/enclave/spec.json")]
    spec: PathBuf,
    /// Listening address [default: 127.0.0.1:<attestation.server.port>].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where documents come from.
    #[arg(long, value_enum, default_value_t = SourceKind::Control)]
    source: SourceKind,
    /// The control server, for `--source control`.
    #[arg(long, default_value_t = Addr::Unix(CONTROL_SOCKET.into()))]
    control: Addr,
    /// The emulation CA directory for `--source emulated` (created when absent).
    #[arg(long, required_if_eq("source", "emulated"))]
    emulation_ca: Option<PathBuf>,
    /// A PCR of the emulated NSM, `N=HEX` (48 bytes; others are zero), for `--source emulated`.
    #[arg(long = "pcr", value_name = "N=HEX")]
    pcrs: Vec<String>,
}

fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve(args) = Cli::parse().command;
    serve(args)
}

fn serve(args: ServeArgs) -> Result<()> {
    let text = std::fs::read(&args.spec)
        .with_context(|| format!("reading the spec {}", args.spec.display()))?;
    // The measured spec.json of the image (the build writes it); no YAML parser in the enclave.
    let spec = EnclaveSpec::from_json(&text)
        .with_context(|| format!("parsing the spec {}", args.spec.display()))?;
    let Some(server_spec) = spec.attestation.as_ref().and_then(|a| a.server.as_ref()) else {
        bail!(
            "{} has no attestation.server section; add `attestation: {{server: {{}}}}` to serve",
            args.spec.display()
        );
    };
    let mut config = ServerConfig::from_spec(server_spec);
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let files_spec = spec.attestation.as_ref().and_then(|a| a.files.as_ref());
    // The NATS CA and credentials files are read first: a missing one stops the start here,
    // with its path, before anything is scanned or published.
    let nats = files_spec
        .and_then(|f| f.nats.as_ref())
        .map(|n| {
            NatsOptions::from_spec(n)
                .with_context(|| format!("files.nats ({} bucket {})", n.url, n.bucket))
        })
        .transpose()?;
    let source: Arc<dyn AttestationSource> = match args.source {
        SourceKind::Control => Arc::new(ControlSocketSource::new(args.control.clone())),
        SourceKind::Emulated => Arc::new(emulated_source(&args)?),
    };
    // The VRF key exists before the start-up document binds it; the document's hash (the
    // epoch) before the first file is proven.
    let vrf_key = files_spec
        .map(|_| vrf::SecretKey::generate().context("generating the VRF key"))
        .transpose()?;
    let startup = Startup::fetch(source.as_ref(), vrf_key.as_ref().map(|k| k.public_key()))
        .context("fetching the start-up document")?;
    // The monitor keeps the store current for as long as the server runs.
    let (files, _monitor) = match (files_spec, vrf_key) {
        (Some(spec), Some(key)) => {
            let (store, monitor) = start_files(spec, key, &startup, nats.as_ref())?;
            (Some(store as Arc<dyn FileProofs>), Some(monitor))
        }
        _ => (None, None),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let server = AttestationServer::bind(config, source, startup, files)
            .await
            .context("starting the attestation server")?;
        server.run().await;
        Ok(())
    })
}

fn emulated_source(args: &ServeArgs) -> Result<EmulatedSource> {
    let dir = args
        .emulation_ca
        .as_ref()
        .context("--source emulated needs --emulation-ca DIR")?;
    let ca = EmulationCa::load_or_create(dir)
        .with_context(|| format!("emulation CA {}", dir.display()))?;
    let mut measured = BTreeMap::new();
    for arg in &args.pcrs {
        let (index, value) = Policy::parse_pcr_arg(arg)?;
        let value: [u8; 48] = value
            .try_into()
            .map_err(|_| anyhow::anyhow!("--pcr {arg}: the emulated NSM's PCRs are 48 bytes"))?;
        measured.insert(index, value);
    }
    let mut id = [0u8; 8];
    getrandom::getrandom(&mut id).context("getrandom")?;
    Ok(EmulatedSource::new(EmulatedDevice::new(
        Arc::new(ca),
        &hex::encode(id),
        &measured,
    )))
}

/// Scans the roots (before serving: a proof is never served for a file not yet scanned or
/// hashed on request) with the VRF key the start-up document binds, in its epoch, and starts
/// the monitor (and publication, the start-up document first).
fn start_files(
    spec: &FileAttestationSpec,
    key: vrf::SecretKey,
    startup: &Startup,
    nats: Option<&NatsOptions>,
) -> Result<(Arc<FileStore>, FileMonitor)> {
    let store = Arc::new(FileStore::new(spec, key, startup.epoch()).context("file attestation")?);
    let publisher = match nats {
        Some(options) => {
            let mut publisher = connect_nats(options)?;
            publisher
                .put_startup_document(startup.document())
                .context("publishing the start-up document to NATS")?;
            Some(publisher)
        }
        None => None,
    };
    let monitor = FileMonitor::start(store.clone(), publisher).context("file attestation")?;
    tracing::info!(epoch = %startup.epoch(), files = store.len(), "file attestation ready");
    Ok((store, monitor))
}

/// NATS is reached through egress, which may come up a little after this service: retry for
/// a while, then fail (publication is in the measured spec; serving without it would hide
/// that it is not happening). Refusals that waiting cannot cure (TLS, credentials) fail at
/// once.
fn connect_nats(options: &NatsOptions) -> Result<NatsPublisher> {
    const PATIENCE: Duration = Duration::from_secs(30);
    let started = Instant::now();
    let mut wait = Duration::from_millis(250);
    loop {
        match NatsPublisher::connect(options) {
            Ok(p) => return Ok(p),
            Err(e) if e.is_transient() && started.elapsed() < PATIENCE => {
                tracing::warn!(error = %e, "NATS not reachable yet; retrying");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(4));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "publishing file hashes to NATS (bucket {})",
                        options.bucket()
                    )
                })
            }
        }
    }
}
