//! `POST /v1/enclaves/{e}/control` with `Connection: Upgrade` and `Upgrade: enclave-control`:
//! after `101 Switching Protocols` the connection carries the enclave's control channel byte
//! for byte — the same frames, the same Noise handshake, the same key proof as on vsock. The
//! daemon only relays: it holds no key, it sees ciphertext once the handshake is done, and the
//! client gets exactly what the enclave grants the client's key (exec, cp, services, health,
//! attest; `docs/security.md`).

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::http::{ApiError, Reply};
use super::routes::blocking;
use super::ApiBody;
use crate::error::EngineError;
use crate::state::{StateRoot, Status};
use enclave_proto::transport::{connect_with_retry, Addr, Connection};

/// The protocol name of the `Upgrade` header.
pub const PROTOCOL: &str = "enclave-control";
/// How long the daemon tries to reach an enclave's control port before answering 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The relay's read size in either direction.
const CHUNK: usize = 64 * 1024;

/// Answers the upgrade request: 101 and a relay once the enclave answered, an error otherwise.
pub async fn upgrade(
    root: &StateRoot,
    enclave: &str,
    mut req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    let asks_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(PROTOCOL));
    if !asks_upgrade {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            format!("this route relays the control channel: send `Connection: Upgrade` and `Upgrade: {PROTOCOL}`"),
        ));
    }
    let rec = root.resolve(enclave)?;
    if rec.status != Status::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_running",
            format!("enclave {} is {}", rec.name, rec.status),
        ));
    }
    let addr: Addr = rec
        .control_addr
        .parse()
        .map_err(|e| EngineError::Invalid(format!("control address: {e}")))?;
    let name = rec.name.clone();
    let conn = blocking(move || {
        connect_with_retry(&addr, CONNECT_TIMEOUT).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "enclave_unavailable",
                format!("{name}: {e}"),
            )
        })
    })
    .await?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    let name = rec.name.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                tracing::debug!(enclave = %name, "control relay opened");
                relay(TokioIo::new(upgraded), conn).await;
                tracing::debug!(enclave = %name, "control relay closed");
            }
            Err(e) => tracing::debug!(enclave = %name, "upgrade failed: {e}"),
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, PROTOCOL)
        .body(ApiBody::full(""))
        .unwrap_or_else(|_| Response::new(ApiBody::full(""))))
}

/// Copies both ways until the enclave ends the session (or the client goes). The enclave's
/// side is a blocking socket (vsock has no tokio type), so a blocking thread serves each
/// direction of it and channels meet the async side.
async fn relay<U>(client: U, conn: Connection)
where
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (Ok(mut from_enclave), Ok(mut to_enclave), Ok(closer)) =
        (conn.try_clone(), conn.try_clone(), conn.try_clone())
    else {
        return;
    };
    let (mut from_client, mut to_client) = tokio::io::split(client);

    let (down_tx, mut down_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n) = from_enclave.read(&mut buf) {
            if n == 0 || down_tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let (up_tx, mut up_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    tokio::task::spawn_blocking(move || {
        while let Some(chunk) = up_rx.blocking_recv() {
            if to_enclave.write_all(&chunk).is_err() {
                return;
            }
        }
        // The client finished sending: the enclave reads the end of its stream.
        let _ = to_enclave.shutdown(Shutdown::Write);
    });
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if up_tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some(chunk) = down_rx.recv().await {
        if to_client.write_all(&chunk).await.is_err() || to_client.flush().await.is_err() {
            break;
        }
    }
    // The enclave ended the session (or the client went): end both sides.
    let _ = to_client.shutdown().await;
    up.abort();
    let _ = closer.shutdown(Shutdown::Both);
}
