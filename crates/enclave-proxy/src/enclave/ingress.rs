//! The ingress forwarder: the host connects (vsock port 5001) once per published connection,
//! names an enclave port in a request header, and is connected to `127.0.0.1:port` if the
//! measured spec lists the port. The host checks its own `-p` mappings; this check is the one
//! the host cannot skip.
//!
//! At most `max` connections are served at once (see
//! [`EnclaveLimits`](super::EnclaveLimits)): the forwarder runs in PID 1, and whoever can reach a
//! published port (the network, for `0.0.0.0:PORT`) must not be able to take all of PID 1's
//! descriptors. One more is answered [`Status::Busy`] at once, without its request being read,
//! and closed: refused promptly, never queued.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::conn::{read_request, suppressed_note, LogLimiter};
use crate::allow::IngressPolicy;
use crate::header::{Request, Status};
use crate::stream::{relay, BufferPool, ProxyListener, ProxyStream};

/// How long to wait before accepting again after `accept` failed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the ingress forwarder until the runtime stops, with at most `max` connections at once.
pub(crate) async fn serve(
    listener: ProxyListener,
    policy: Arc<IngressPolicy>,
    pool: BufferPool,
    max: usize,
) {
    let permits = Arc::new(Semaphore::new(max));
    // A flood over the limit gives a line now and then with a count, not a line per connection.
    let mut over_limit = LogLimiter::new(10, Duration::from_secs(60));
    loop {
        match listener.accept().await {
            Ok((stream, cid)) => match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (policy, pool) = (policy.clone(), pool.clone());
                    tokio::spawn(async move {
                        handle(stream, cid, policy, pool).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    if let Some(dropped) = over_limit.check(Instant::now()) {
                        warn!(
                            "ingress: {max} connections open, the limit; refused one from {}{}",
                            peer_name(cid),
                            suppressed_note(dropped)
                        );
                    }
                    // One byte into a new socket's empty send buffer: never blocks, and the host
                    // reads it as the answer to the request it sent.
                    let _ = stream.write_now(&[Status::Busy as u8]);
                    let _ = stream.shutdown_write();
                }
            },
            Err(e) => {
                warn!("ingress: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

fn peer_name(cid: Option<u32>) -> String {
    cid.map_or_else(|| "the host".to_owned(), |c| format!("CID {c}"))
}

async fn handle(
    stream: ProxyStream,
    cid: Option<u32>,
    policy: Arc<IngressPolicy>,
    pool: BufferPool,
) {
    let from = peer_name(cid);
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
