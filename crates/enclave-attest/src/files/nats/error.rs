//! NATS errors and URLs.

use std::time::Duration;

/// Why talking to NATS failed.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The URL is not `nats://HOST[:PORT]`.
    #[error("NATS url {url:?}: {reason}; use nats://HOST:PORT")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bucket name has characters a KV bucket cannot have.
    #[error("NATS bucket {0:?}: use letters, digits, '-' and '_' only")]
    BadBucket(String),
    /// The key is not a valid KV key or makes a subject too long for the server.
    #[error("NATS key {0:?} is not a valid key or is too long (paths of more than about 2 KiB do not fit a subject)")]
    BadKey(String),
    /// No TCP connection could be made.
    #[error("cannot connect to NATS at {addr}: {source}; check the URL and that egress to it is allowed")]
    Connect {
        /// `HOST:PORT`.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed after it was made.
    #[error("NATS connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent something that is not the NATS protocol, or is over our limits.
    #[error("NATS protocol violation: {0}; is the URL a NATS server?")]
    Protocol(String),
    /// The server answered `-ERR`.
    #[error("NATS server error: {0}")]
    Server(String),
    /// The server needs a feature this client lacks (TLS, authentication, headers).
    #[error("NATS server requires {0}, which this client does not support; use a plain, unauthenticated listener (nats-server 2.2 or later)")]
    Unsupported(&'static str),
    /// No reply in time.
    #[error("no reply from NATS within {0:?}")]
    Timeout(Duration),
    /// Nobody listens on the subject (JetStream off, or the stream is missing).
    #[error("no responders for {0}: is JetStream enabled on the server (nats-server -js)?")]
    NoResponders(String),
    /// The JetStream API refused the request.
    #[error("JetStream: {description} (code {code}, err_code {err_code})")]
    JetStream {
        /// HTTP-like status code.
        code: u16,
        /// JetStream's error code (0 when the reply was a status header).
        err_code: u32,
        /// The server's description.
        description: String,
    },
    /// The message is larger than the server accepts.
    #[error("message of {len} bytes is over the server's {max}-byte max_payload")]
    TooLarge {
        /// Size of the message.
        len: usize,
        /// The server's limit.
        max: usize,
    },
    /// A previous attempt failed; the publisher waits before reconnecting.
    #[error("not connected to NATS; next attempt in {0:?}")]
    Backoff(Duration),
}

impl NatsError {
    /// Whether the connection is unusable after this error.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self,
            NatsError::Io(_)
                | NatsError::Protocol(_)
                | NatsError::Server(_)
                | NatsError::Timeout(_)
                | NatsError::Connect { .. }
        )
    }
}

/// `nats://HOST[:PORT]` -> `HOST:PORT` (default port 4222).
pub(crate) fn parse_url(url: &str) -> Result<String, NatsError> {
    let bad = |reason| NatsError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("nats://")
        .ok_or_else(|| bad("must start with nats://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(bad("no host"));
    }
    if rest.contains(['@', '/', '?', '#', ' ']) {
        return Err(bad("credentials, paths and queries are not supported"));
    }
    // A port follows the last ':' unless that ':' is inside an IPv6 literal.
    let has_port = rest.rfind(':').is_some_and(|i| !rest[i..].contains(']'));
    Ok(if has_port {
        rest.to_string()
    } else {
        format!("{rest}:4222")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("nats://127.0.0.1:4222").unwrap(),
            "127.0.0.1:4222"
        );
        assert_eq!(parse_url("nats://example.com").unwrap(), "example.com:4222");
        assert_eq!(parse_url("nats://[::1]").unwrap(), "[::1]:4222");
        assert_eq!(parse_url("nats://[::1]:5000/").unwrap(), "[::1]:5000");
        for bad in ["http://x", "nats://", "nats://u:p@h:1", "nats://h/x"] {
            assert!(
                matches!(parse_url(bad), Err(NatsError::BadUrl { .. })),
                "{bad}"
            );
        }
    }
}
