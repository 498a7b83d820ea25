//! `enclave-ctl exec`, and what the control commands share: [`resolve_enclave`] and
//! [`connect`].

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use enclave_proto::client::key::load_signing_key;
use enclave_proto::client::{Client, ClientError, ConnectOptions, ExecHandle, ExecIo};
use enclave_proto::transport::Addr;
use enclave_proto::wire::{Capability, ErrorCode, ExecRequest, ExitStatus, WindowSize};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use crate::cli::{ControlArgs, ExecArgs};

/// The control address of ENCLAVE: an address string as is (`vsock:CID:PORT`,
/// `hybrid:/uds:PORT`, `unix:/path`), otherwise a name or id looked up in the state directory.
pub fn resolve_enclave(enclave: &str, control: &ControlArgs) -> Result<Addr> {
    if let Ok(addr) = enclave.parse::<Addr>() {
        return Ok(addr);
    }
    let root = super::run::state_root(&control.state)?;
    let rec = root
        .resolve(enclave)
        .with_context(|| format!("no enclave {enclave:?} (not a name, id or address)"))?;
    rec.control_addr
        .parse()
        .with_context(|| format!("enclave {}: control address", rec.name))
}

/// Connects to ENCLAVE asking for `capabilities`, with the key of `--key` when given.
pub fn connect(
    enclave: &str,
    control: &ControlArgs,
    capabilities: &[Capability],
) -> Result<Client> {
    let addr = resolve_enclave(enclave, control)?;
    let key = match &control.key {
        Some(path) => Some(load_signing_key(path)?),
        None => None,
    };
    let opts = ConnectOptions {
        capabilities: capabilities.to_vec(),
        key,
        client: format!("enclave-ctl {}", env!("CARGO_PKG_VERSION")),
        retry: Duration::from_secs(control.connect_timeout),
    };
    let client =
        Client::connect(&addr, &opts).with_context(|| format!("connecting to {enclave}"))?;
    for cap in capabilities {
        if !client.server_hello().capabilities.contains(cap) {
            bail!("{enclave}: the enclave's spec does not allow {cap} (its `debug` section)");
        }
    }
    Ok(client)
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
pub fn run(args: ExecArgs) -> Result<i32> {
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
    };
    let mut client = connect(&args.enclave, &args.control, &[Capability::Exec])?;
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
