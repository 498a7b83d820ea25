//! The ingress forwarder: the host connects (vsock port 5001) once per published connection,
//! names an enclave port in a request header, and is connected to `127.0.0.1:port` if the
//! measured spec lists the port. The host checks its own `-p` mappings; this check is the one
//! the host cannot skip.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::conn::read_request;
use crate::allow::IngressPolicy;
use crate::header::{Request, Status};
use crate::stream::{relay, BufferPool, ProxyListener, ProxyStream};

/// How long to wait before accepting again after `accept` failed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the ingress forwarder until the runtime stops.
pub(crate) async fn serve(listener: ProxyListener, policy: Arc<IngressPolicy>, pool: BufferPool) {
    loop {
        match listener.accept().await {
            Ok((stream, cid)) => {
                tokio::spawn(handle(stream, cid, policy.clone(), pool.clone()));
            }
            Err(e) => {
                warn!("ingress: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn handle(
    stream: ProxyStream,
    cid: Option<u32>,
    policy: Arc<IngressPolicy>,
    pool: BufferPool,
) {
    let from = cid.map_or_else(|| "the host".to_owned(), |c| format!("CID {c}"));
    let (req, early) = match read_request(&stream).await {
        Ok(r) => r,
        Err(e) => {
            warn!("ingress: bad request from {from}: {e}");
            if let Some(status) = e.status() {
                let _ = stream.write_all(&[status as u8]).await;
            }
            return;
        }
    };
    let port = match req {
        Request::Ingress { port } => match policy.check(port) {
            Ok(()) => port,
            Err(refusal) => {
                warn!("ingress: refused port {port} from {from}: {refusal}");
                let _ = stream.write_all(&[refusal.status() as u8]).await;
                return;
            }
        },
        other => {
            warn!("ingress: refused {other} from {from}: only ingress requests are served here");
            let _ = stream.write_all(&[Status::NotAllowed as u8]).await;
            return;
        }
    };
    let target = match TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
        Ok(t) => t,
        Err(e) => {
            warn!("ingress: connecting to 127.0.0.1:{port} failed: {e}");
            let _ = stream.write_all(&[Status::ConnectFailed as u8]).await;
            return;
        }
    };
    let _ = target.set_nodelay(true);
    let target = ProxyStream::Tcp(target);
    let started = async {
        stream.write_all(&[Status::Connected as u8]).await?;
        target.write_all(&early).await
    };
    if let Err(e) = started.await {
        debug!("ingress: port {port} from {from} gone before relaying: {e}");
        return;
    }
    match relay(&stream, &target, &pool).await {
        Ok(m) => debug!(
            "ingress: port {port} done ({} bytes in, {} out)",
            m.a_to_b, m.b_to_a
        ),
        Err(e) => debug!("ingress: port {port} ended with an error: {e}"),
    }
}
