//! `enclave-engine daemon`: the engine API (issue 14), opt-in, beside the daemonless CLI.
//!
//! A versioned REST API (`/v1/…`, described by `docs/api/openapi.yaml`, served at
//! `/v1/openapi.json`) on a Unix socket only (default `<state root>/engine.sock`, mode 0660).
//! The daemon keeps no state of its own: every request reads the state directory the
//! supervisors write (records, logs, the event log), so it adopts the enclaves already running,
//! can be killed and restarted without touching one, and enclaves it starts are `run`'s (a
//! detached supervisor each). HTTP/1.1 with hyper on a current-thread tokio runtime; whatever
//! blocks (starting, stopping, following the event log) runs on tokio's blocking threads.

mod body;
mod http;
mod images;
mod metrics;
mod relay;
mod routes;
mod run_request;
mod streams;
mod tls;
mod verify;

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::error::{EngineError, Result};
use crate::state::StateRoot;

pub use body::ApiBody;

/// What the fuzz target `api_request` runs (fuzz/fuzz_targets/api_request.rs).
pub mod fuzzing {
    /// The decoders of a request's outside input on arbitrary bytes: the query string (and each
    /// value as a time), and the run, build and measure requests' JSON bodies. None may panic.
    pub fn request_inputs(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        for value in super::http::parse_query(&text).values() {
            let _ = crate::util::parse_when(value);
        }
        let _ = super::run_request::run_options(data);
        super::images::decode_bodies(data);
    }
}

/// The socket's default name in the state directory.
pub const SOCKET_FILE: &str = "engine.sock";

/// Where and how the daemon listens.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The Unix socket (default `<state root>/engine.sock`).
    pub socket: Option<PathBuf>,
    /// A group given read/write on the socket (mode 0660); `None`: the user's own group.
    pub group: Option<u32>,
    /// Also a TCP address, only with mutual TLS.
    pub tcp: Option<TcpOptions>,
}

/// `--listen ADDR --tls-cert --tls-key --client-ca`: TCP with mutual TLS, never plain.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// The address.
    pub listen: std::net::SocketAddr,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) client certificates must chain to.
    pub client_ca: PathBuf,
}

/// Binds the socket (replacing a stale one, refusing a live one) with mode 0660.
fn bind(path: &Path, group: Option<u32>) -> Result<std::os::unix::net::UnixListener> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(EngineError::Invalid(format!(
            "{} answers: another daemon is running (stop it, or give --socket)",
            path.display()
        )));
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() || m.file_type().is_symlink() => {
            return Err(EngineError::Invalid(format!(
                "{} exists and is not a socket; remove it or give another --socket",
                path.display()
            )))
        }
        Ok(_) => std::fs::remove_file(path).map_err(|e| EngineError::io(path, e))?,
        Err(_) => {}
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|e| EngineError::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| EngineError::io(path, e))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(|e| EngineError::sys(format!("chgrp {}", path.display()), e))?;
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| EngineError::io(path, e))?;
    Ok(listener)
}

/// Serves the API for `root` until the process ends.
pub fn serve(root: StateRoot, opts: &DaemonOptions) -> Result<()> {
    let path = opts
        .socket
        .clone()
        .unwrap_or_else(|| root.path().join(SOCKET_FILE));
    // The TLS files first: a mistake in them stops the start before anything is bound.
    let acceptor = opts.tcp.as_ref().map(tls::acceptor).transpose()?;
    let std_listener = bind(&path, opts.group)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("enclave-engine-daemon")
        .build()
        .map_err(|e| EngineError::Backend(format!("starting the daemon's runtime: {e}")))?;
    let api = Arc::new(routes::Api::new(root)?);
    tracing::info!(socket = %path.display(), "engine API listening");
    eprintln!(
        "enclave-engine daemon: listening on unix://{}",
        path.display()
    );
    let tcp = match &opts.tcp {
        Some(t) => {
            let l = std::net::TcpListener::bind(t.listen)
                .map_err(|e| EngineError::Backend(format!("--listen {}: {e}", t.listen)))?;
            l.set_nonblocking(true)
                .map_err(|e| EngineError::Backend(format!("--listen {}: {e}", t.listen)))?;
            eprintln!(
                "enclave-engine daemon: listening on https://{} (mutual TLS)",
                t.listen
            );
            Some(l)
        }
        None => None,
    };
    runtime.block_on(async move {
        if let (Some(tcp), Some(acceptor)) = (tcp, acceptor) {
            let listener = tokio::net::TcpListener::from_std(tcp)
                .map_err(|e| EngineError::Backend(format!("--listen: {e}")))?;
            let api = api.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, peer)) = listener.accept().await else {
                        continue;
                    };
                    let (api, acceptor) = (api.clone(), acceptor.clone());
                    tokio::spawn(async move {
                        // A client without a certificate the CA signed ends here.
                        match acceptor.accept(stream).await {
                            Ok(tls) => serve_connection(api, tls).await,
                            Err(e) => tracing::info!(%peer, "TLS handshake refused: {e}"),
                        }
                    });
                }
            });
        }
        let listener = tokio::net::UnixListener::from_std(std_listener)
            .map_err(|e| EngineError::io(&path, e))?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            };
            tokio::spawn(serve_connection(api.clone(), stream));
        }
    })
}

/// Serves HTTP/1.1 on one connection.
async fn serve_connection<S>(api: Arc<routes::Api>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(api.handle(req).await) }
    });
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::debug!("connection: {e}");
    }
}
