//! Both ends of the header exchange: send a request and read the status byte, or read a request.

use std::io;

use crate::error::ProxyError;
use crate::header::{HeaderError, Request, Status, MAX_REQUEST_LEN};
use crate::stream::ProxyStream;

/// Sends `request` on `stream` and reads the one-byte answer; `Ok` only for
/// [`Status::Connected`]. Reads exactly one byte, so payload the other side sends right after
/// its answer stays in the stream. `to` names the other side in errors. The caller bounds the
/// wait.
pub async fn send_request(
    stream: &ProxyStream,
    request: &Request,
    to: &str,
) -> Result<(), ProxyError> {
    let io_err = |source| ProxyError::Connect {
        to: to.to_owned(),
        source,
    };
    let sent = stream.write_all(&request.to_bytes()).await;
    let mut answer = [0u8; 1];
    let read = stream.read(&mut answer).await;
    let got = match (sent, read) {
        (Ok(()), read) => read.map_err(io_err)?,
        // The other side may answer and close before it reads the request (an enclave at its
        // connection limit answers Busy at once): the answer is still there to read.
        (Err(_), Ok(1)) => 1,
        (Err(e), _) => return Err(io_err(e)),
    };
    if got == 0 {
        return Err(ProxyError::Closed {
            to: to.to_owned(),
            request: request.clone(),
        });
    }
    match Status::from_byte(answer[0]) {
        Ok(Status::Connected) => Ok(()),
        Ok(status) => Err(ProxyError::Refused {
            to: to.to_owned(),
            request: request.clone(),
            status,
        }),
        Err(source) => Err(ProxyError::BadReply {
            to: to.to_owned(),
            request: request.clone(),
            source,
        }),
    }
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadRequestError {
    /// The peer closed the connection before a whole header arrived.
    #[error("closed after {got} bytes, before a complete request header")]
    Closed {
        /// Bytes received.
        got: usize,
    },
    /// The header is malformed; answer with [`Status::for_error`].
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Reading failed.
    #[error("reading the request header: {0}")]
    Io(#[from] io::Error),
}

/// Reads one request from the start of `stream`. Returns it with the bytes that arrived after it
/// in the same reads (a peer may send payload without waiting for the answer): at most
/// [`MAX_REQUEST_LEN`] bytes are ever read here. The caller bounds the wait.
pub async fn read_request(stream: &ProxyStream) -> Result<(Request, Vec<u8>), ReadRequestError> {
    let mut buf = [0u8; MAX_REQUEST_LEN];
    let mut filled = 0;
    loop {
        // A complete request never needs more than MAX_REQUEST_LEN bytes, so the decoder has
        // answered before the buffer is full; a full buffer would read 0 and end as `Closed`.
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(ReadRequestError::Closed { got: filled });
        }
        filled += n;
        if let Some((request, len)) = Request::decode(&buf[..filled])? {
            return Ok((request, buf[len..filled].to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixStream;

    fn pair() -> (ProxyStream, ProxyStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (ProxyStream::Unix(a), ProxyStream::Unix(b))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn request_split_across_writes_with_early_payload() {
        let (a, b) = pair();
        let req = Request::EgressName {
            name: "db.internal".into(),
            port: 5432,
        };
        let bytes = req.to_bytes();
        let reader = tokio::spawn(async move { read_request(&b).await.map(|r| (r, b)) });
        a.write_all(&bytes[..3]).await.unwrap();
        tokio::task::yield_now().await;
        let mut rest = bytes[3..].to_vec();
        rest.extend_from_slice(b"early");
        a.write_all(&rest).await.unwrap();
        let ((got, early), _b) = reader.await.unwrap().unwrap();
        assert_eq!(got, req);
        assert_eq!(early, b"early");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn truncated_and_malformed_requests() {
        let (a, b) = pair();
        a.write_all(&[1, 2, 0]).await.unwrap();
        a.shutdown_write().unwrap();
        assert!(matches!(
            read_request(&b).await,
            Err(ReadRequestError::Closed { got: 3 })
        ));
        let (a, b) = pair();
        a.write_all(&[7, 1, 0, 80]).await.unwrap();
        assert!(matches!(
            read_request(&b).await,
            Err(ReadRequestError::Header(HeaderError::Version(7)))
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_sent_before_the_request_was_read_is_still_read() {
        let req = Request::Ingress { port: 80 };
        // Busy, then closed without reading: writing the request fails (EPIPE).
        let (a, b) = pair();
        b.write_all(&[Status::Busy as u8]).await.unwrap();
        drop(b);
        match send_request(&a, &req, "test").await {
            Err(ProxyError::Refused { status, .. }) => assert_eq!(status, Status::Busy),
            other => panic!("{other:?}"),
        }
        // Closed without an answer: the write error is what is reported.
        let (a, b) = pair();
        drop(b);
        assert!(matches!(
            send_request(&a, &req, "test").await,
            Err(ProxyError::Connect { .. })
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn send_request_reads_exactly_the_status() {
        let req = Request::Ingress { port: 80 };
        for (reply, want) in [
            (vec![0u8, b'h', b'i'], "ok"),
            (vec![1], "refused"),
            (vec![9], "garbage"),
            (vec![], "closed"),
        ] {
            let (a, b) = pair();
            b.write_all(&reply).await.unwrap();
            b.shutdown_write().unwrap();
            let got = match send_request(&a, &req, "test").await {
                Ok(()) => "ok",
                Err(ProxyError::Refused { status, .. }) => {
                    assert_eq!(status, Status::NotAllowed);
                    "refused"
                }
                Err(ProxyError::BadReply { .. }) => "garbage",
                Err(ProxyError::Closed { .. }) => "closed",
                Err(e) => panic!("{e}"),
            };
            assert_eq!(got, want);
            let mut sent = [0u8; 8];
            assert_eq!(b.read(&mut sent).await.unwrap(), 4);
            assert_eq!(&sent[..4], &req.to_bytes()[..]);
            if want == "ok" {
                // The payload after the status is still there for the relay.
                let mut rest = [0u8; 4];
                assert_eq!(a.read(&mut rest).await.unwrap(), 2);
                assert_eq!(&rest[..2], b"hi");
            }
        }
    }
}
