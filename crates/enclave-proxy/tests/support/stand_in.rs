//! A minimal enclave-side ingress forwarder: reads the header, checks the port against an
//! [`IngressPolicy`], connects to `127.0.0.1:port`, answers and relays, as the real one does
//! inside an enclave. Shared by the host-proxy tests and the socat benchmark.

use std::sync::Arc;
use std::time::Duration;

use enclave_proxy::allow::IngressPolicy;
use enclave_proxy::header::{Request, Status};
use enclave_proxy::host::read_request;
use enclave_proxy::stream::{relay, BufferPool, ProxyListener, ProxyStream};
use tokio::net::TcpStream;

/// Serves forever on `listener`.
pub async fn serve_stand_in(listener: ProxyListener, policy: IngressPolicy) {
    let policy = Arc::new(policy);
    let pool = BufferPool::default();
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, policy.clone(), pool.clone()));
    }
}

async fn connection(s: ProxyStream, policy: Arc<IngressPolicy>, pool: BufferPool) {
    let Ok(Ok((request, early))) =
        tokio::time::timeout(Duration::from_secs(5), read_request(&s)).await
    else {
        return;
    };
    let port = match request {
        Request::Ingress { port } if policy.check(port).is_ok() => port,
        _ => {
            let _ = s.write_all(&[Status::NotAllowed as u8]).await;
            return;
        }
    };
    let Ok(up) = TcpStream::connect(("127.0.0.1", port)).await else {
        let _ = s.write_all(&[Status::ConnectFailed as u8]).await;
        return;
    };
    let _ = up.set_nodelay(true);
    let up = ProxyStream::Tcp(up);
    if s.write_all(&[Status::Connected as u8]).await.is_err() || up.write_all(&early).await.is_err()
    {
        return;
    }
    let _ = relay(&s, &up, &pool).await;
}
