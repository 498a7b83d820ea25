//! `enclave-ctl exec`, and what the control commands share: [`resolve_enclave`] and
//! [`connect`].

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use enclave_proto::client::key::load_signing_key;
use enclave_proto::client::{Client, ClientError, ConnectOptions, ExecHandle, ExecIo};
use enclave_proto::transport::{Addr, Connection};
use enclave_proto::wire::secure::ServerCheck;
use enclave_proto::wire::{Capability, ErrorCode, ExecRequest, ExitStatus, Security, WindowSize};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::cli::{ControlArgs, ExecArgs};
use crate::remote::Remote;

/// The control address of ENCLAVE: an address string as is (`vsock:CID:PORT`,
/// `hybrid:/uds:PORT`, `unix:/path`), otherwise a name or id looked up in the state directory.
pub fn resolve_enclave(enclave: &str, control: &ControlArgs) -> Result<Addr> {
    if let Ok(addr) = enclave.parse::<Addr>() {
        return Ok(addr);
    }
    let root = super::state_dir::open(&control.state)?;
    let rec = root
        .resolve(enclave)
        .with_context(|| format!("no enclave {enclave:?} (not a name, id or address)"))?;
    rec.control_addr
        .parse()
        .with_context(|| format!("enclave {}: control address", rec.name))
}

const CLIENT: &str = concat!("enclave-ctl ", env!("CARGO_PKG_VERSION"));

/// Connects to ENCLAVE asking for `capabilities`: by name, with the supervisor's key (or
/// `--key`) and the identity the supervisor pinned at boot; by address, with `--key` and the
/// identity checked by `--enclave-pcr` (or not at all with `--any-enclave`).
///
/// Through the engine API (`remote`), the same session runs over the daemon's relay: with the
/// supervisor's key and pin when the daemon's state directory is this user's, otherwise as by
/// address (`--key` and `--enclave-pcr`).
pub fn connect(
    enclave: &str,
    control: &ControlArgs,
    capabilities: &[Capability],
    remote: Option<&Remote>,
) -> Result<Client> {
    let key = match &control.key {
        Some(path) => Some(load_signing_key(path)?),
        None => None,
    };
    let retry = Duration::from_secs(control.connect_timeout);
    if let Some(remote) = remote {
        let client = through_daemon(remote, enclave, control, capabilities, key, retry)?;
        return check_granted(enclave, client, capabilities);
    }
    let (addr, opts) = match enclave.parse::<Addr>() {
        Ok(addr) => (addr, by_address(control, key, capabilities, retry)?),
        Err(_) => {
            let root = super::state_dir::open(&control.state)?;
            let rec = root
                .resolve(enclave)
                .with_context(|| format!("no enclave {enclave:?} (not a name, id or address)"))?;
            let opts = enclave_engine::control::connect_options(
                &root,
                &rec,
                capabilities,
                key,
                CLIENT,
                retry,
            )?;
            let addr = (rec.control_addr.parse())
                .with_context(|| format!("enclave {}: control address", rec.name))?;
            (addr, opts)
        }
    };
    let client =
        Client::connect(&addr, &opts).with_context(|| format!("connecting to {enclave}"))?;
    check_granted(enclave, client, capabilities)
}

fn check_granted(enclave: &str, client: Client, capabilities: &[Capability]) -> Result<Client> {
    let granted = client.granted();
    for cap in capabilities {
        if !granted.contains(cap) {
            bail!("{enclave}: the enclave's spec does not allow {cap} (its `debug` section)");
        }
    }
    Ok(client)
}

/// The session through the daemon's relay of the enclave's control port.
fn through_daemon(
    remote: &Remote,
    enclave: &str,
    control: &ControlArgs,
    capabilities: &[Capability],
    key: Option<enclave_proto::wire::auth::SigningKey>,
    retry: Duration,
) -> Result<Client> {
    let rec = remote.control_record(enclave)?;
    let id = rec["id"]
        .as_str()
        .context("the engine API's record has no id")?
        .to_owned();
    let local = remote.local_root().and_then(|root| {
        let rec = root.load(&id).ok()?;
        enclave_engine::control::connect_options(
            &root,
            &rec,
            capabilities,
            key.clone(),
            CLIENT,
            retry,
        )
        .ok()
    });
    let opts = match local {
        Some(opts) => opts,
        None => by_address(control, key, capabilities, retry).context(
            "the daemon's state directory is not this user's, so its supervisor key is not at hand",
        )?,
    };
    let stream = remote.control_stream(&id)?;
    Client::handshake(Connection::Unix(stream), &opts)
        .with_context(|| format!("connecting to {enclave} through the engine API"))
}

/// The options for a control address given directly (no record on this host).
fn by_address(
    control: &ControlArgs,
    key: Option<enclave_proto::wire::auth::SigningKey>,
    capabilities: &[Capability],
    retry: Duration,
) -> Result<ConnectOptions> {
    if key.is_none() {
        bail!(
            "connecting by address needs --key: a key listed in the enclave's \
             debug.authorized_keys (an enclave started on this host is driven by its name)"
        );
    }
    let check = if control.any_enclave {
        eprintln!(
            "warning: --any-enclave: the session is encrypted, but nothing checks which enclave \
             answers"
        );
        ServerCheck::AnyEnclave
    } else {
        let check = identity_check(&control.enclave_pcrs, &control.state)?;
        ServerCheck::Verify(std::sync::Arc::new(check))
    };
    Ok(ConnectOptions {
        capabilities: capabilities.to_vec(),
        key,
        client: CLIENT.into(),
        retry,
        security: Security::Remote(check),
    })
}

/// The check of an enclave reached by address: its identity document must chain to the AWS
/// root or this host's emulation root and show `pcrs` (PCR0 or PCR8 among them).
fn identity_check(
    pcrs: &[String],
    state: &crate::cli::StateArgs,
) -> Result<enclave_engine::control::DocumentCheck> {
    let pcrs = pcrs
        .iter()
        .map(|p| enclave_attest::Policy::parse_pcr_arg(p))
        .collect::<Result<std::collections::BTreeMap<_, _>, _>>()?;
    if !pcrs.contains_key(&0) && !pcrs.contains_key(&8) {
        bail!(
            "connecting by address needs the enclave's expected measurements: --enclave-pcr 0=HEX \
             (the image) or --enclave-pcr 8=HEX (its signer); or --any-enclave to skip the check"
        );
    }
    let mut roots = vec![enclave_attest::TrustRoot::aws_nitro_root_g1()];
    let ca_dir = super::state_dir::emulation_ca_dir(state.state_dir.as_deref());
    if let Some(ca) = ca_dir
        .ok()
        .and_then(|d| enclave_nsm::emulated::EmulationCa::load(&d).ok())
    {
        roots.push(enclave_attest::TrustRoot::from_der(ca.root_der())?);
    }
    Ok(enclave_engine::control::DocumentCheck::new(roots, pcrs)?)
}

/// The terminal in raw mode until dropped.
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn enable() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = rustix::termios::tcgetattr(&stdin) else {
            return Self(None);
        };
        let mut raw = saved.clone();
        raw.make_raw();
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw);
        Self(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let stdin = std::io::stdin();
            let _ =
                rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, saved);
        }
    }
}

fn terminal_size() -> Option<WindowSize> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (ws.ws_row > 0).then_some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Forwards SIGWINCH (as resizes, with a tty) and SIGINT/SIGTERM/SIGHUP/SIGQUIT (as signals,
/// without one) to the remote process. The signals are blocked in every thread and waited for
/// by one, so no handler (and no unsafe) is needed.
fn forward_signals(tty: bool) -> Option<impl FnOnce(ExecHandle)> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    if !tty {
        for s in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
        ] {
            set.add(s);
        }
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).ok()?;
    Some(move |handle: ExecHandle| {
        let _ = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                while let Ok(sig) = set.wait() {
                    let _ = match sig {
                        Signal::SIGWINCH => match terminal_size() {
                            Some(size) if tty => handle.resize(size),
                            _ => Ok(()),
                        },
                        sig => handle.signal(sig as i32),
                    };
                }
            });
    })
}

/// Runs the command; returns the remote command's exit status.
pub fn run(args: ExecArgs, remote: Option<&Remote>) -> Result<i32> {
    let mut env = Vec::new();
    for kv in &args.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("-e {kv}: expected KEY=VALUE"))?;
        env.push((k.to_owned(), v.to_owned()));
    }
    let tty = args.tty && std::io::stdout().is_terminal();
    let request = ExecRequest {
        argv: args.command.clone(),
        env,
        cwd: args.workdir.clone(),
        tty: if args.tty {
            Some(terminal_size().unwrap_or(WindowSize { rows: 24, cols: 80 }))
        } else {
            None
        },
        stdin: args.interactive,
        detach: args.detach,
        user: args.user.clone(),
    };
    let mut client = connect(&args.enclave, &args.control, &[Capability::Exec], remote)?;
    if args.detach {
        let pid = client.exec_detached(request).context("exec")?;
        println!("{pid}");
        return Ok(0);
    }
    let io = ExecIo {
        stdin: args
            .interactive
            .then(|| Box::new(std::io::stdin()) as Box<dyn std::io::Read + Send>),
        stdout: Box::new(std::io::stdout()),
        stderr: Box::new(std::io::stderr()),
    };
    let raw = (tty && args.interactive && std::io::stdin().is_terminal()).then(RawMode::enable);
    let on_started = forward_signals(args.tty);
    let result = client.exec(request, io, |h| {
        if let Some(f) = on_started {
            f(h)
        }
    });
    drop(raw);
    match result {
        Ok(ExitStatus::Code(c)) => Ok(c),
        Ok(ExitStatus::Signal(s)) => Ok(128 + s),
        Err(
            e @ ClientError::Remote {
                code: ErrorCode::NotFound,
                ..
            },
        ) => {
            eprintln!("error: {e}");
            Ok(127)
        }
        Err(e) => Err(e).context("exec"),
    }
}
