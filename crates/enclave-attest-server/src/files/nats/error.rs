//! NATS errors and URLs. Messages say what to fix; none of them ever quotes a credential.

use std::path::PathBuf;
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
    /// The CA certificate file named in the spec cannot be read.
    #[error("reading the NATS CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The CA PEM is not a list of certificates.
    #[error("NATS tls.ca is not PEM certificates: {0}")]
    CaPem(#[source] rustls::pki_types::pem::Error),
    /// The CA PEM holds no certificate.
    #[error("NATS tls.ca holds no certificate; give the PEM certificate of the CA that signed the server's certificate")]
    NoCaCertificate,
    /// A CA certificate is not usable as a trust anchor.
    #[error("NATS tls.ca: {0}")]
    CaRejected(#[source] rustls::Error),
    /// The TLS server name is not a DNS name or an IP address.
    #[error("NATS TLS server name {0:?} is not a DNS name or IP address; set files.nats.tls.server_name")]
    BadServerName(String),
    /// The credentials file named in the spec cannot be read.
    #[error("reading the NATS credentials file {path}: {source}; deliver it to the enclave at run time (it is never part of the image)")]
    CredentialsFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The credentials file does not hold what its kind says (the contents are not quoted).
    #[error("the NATS credentials file {path} is not a valid {kind}: {reason}")]
    BadCredentials {
        /// The file.
        path: PathBuf,
        /// "token", "user:password line" or "NKey user seed".
        kind: &'static str,
        /// What is wrong (never the contents).
        reason: &'static str,
    },
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
    /// The TLS handshake or a TLS record failed (an untrusted certificate, a wrong name...).
    #[error("NATS TLS: {0}; check files.nats.tls (the CA that signed the server's certificate, and the name in it)")]
    Tls(#[source] rustls::Error),
    /// TLS is configured but the server does not offer it: a plain listener, or someone on
    /// the path removed the offer. Never answered by falling back to plain text.
    #[error("TLS is configured for NATS but the server does not offer it (its INFO has neither tls_required nor tls_available); refusing to talk in plain text")]
    TlsNotOffered,
    /// The server requires TLS and the spec configures none.
    #[error("the NATS server requires TLS; set files.nats.tls with the CA of its certificate")]
    TlsRequired,
    /// Credentials are configured without TLS: whoever relays the connection would read them
    /// (or use an NKey's signature over a nonce it chose).
    #[error("NATS credentials need TLS; set files.nats.tls")]
    CredentialsWithoutTls,
    /// The server requires authentication and the spec configures no credentials.
    #[error("the NATS server requires authentication; set files.nats.credentials and deliver the file at run time")]
    AuthRequired,
    /// NKey authentication needs the server's nonce, and its INFO has none.
    #[error("NKey authentication needs a nonce in the server's INFO, and there is none")]
    NoNonce,
    /// The server refused the credentials.
    #[error("the NATS server refused the credentials ({0}); check the credentials file and the server's authorization")]
    AuthRejected(String),
    /// The server sent something that is not the NATS protocol, or is over our limits.
    #[error("NATS protocol violation: {0}; is the URL a NATS server?")]
    Protocol(String),
    /// The server answered `-ERR`.
    #[error("NATS server error: {0}")]
    Server(String),
    /// The server lacks a feature this client needs.
    #[error("NATS server lacks {0}, which this client needs (nats-server 2.2 or later)")]
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
    /// Encoding a record failed (in practice unreachable: records are plain strings and numbers).
    #[error("encoding a record: {0}")]
    Encode(#[source] serde_json::Error),
    /// A previous attempt failed; the publisher waits before reconnecting.
    #[error("not connected to NATS; next attempt in {0:?}")]
    Backoff(Duration),
}

impl NatsError {
    /// Whether trying again later may succeed (the server or the path to it is not up yet),
    /// as opposed to a refusal that waiting cannot cure (TLS, credentials, configuration).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            NatsError::Connect { .. }
                | NatsError::Io(_)
                | NatsError::Timeout(_)
                | NatsError::NoResponders(_)
                | NatsError::Backoff(_)
                | NatsError::JetStream { code: 503, .. }
        )
    }

    /// Whether the connection is unusable after this error.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self,
            NatsError::Io(_)
                | NatsError::Tls(_)
                | NatsError::Protocol(_)
                | NatsError::Server(_)
                | NatsError::Timeout(_)
                | NatsError::Connect { .. }
        )
    }

    /// An I/O error, or the TLS error rustls reported through one.
    pub(crate) fn from_io(e: std::io::Error) -> NatsError {
        let is_tls = e
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        if is_tls {
            if let Some(inner) = e.into_inner() {
                if let Ok(tls) = inner.downcast::<rustls::Error>() {
                    return NatsError::Tls(*tls);
                }
            }
            return NatsError::Protocol("unreadable TLS error".into());
        }
        NatsError::Io(e)
    }
}

/// A parsed `nats://HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NatsUrl {
    /// `HOST:PORT`, as `ToSocketAddrs` takes it.
    pub addr: String,
    /// The host alone (brackets of an IPv6 literal removed): the default TLS server name.
    pub host: String,
}

/// `nats://HOST[:PORT]` -> `HOST:PORT` (default port 4222) and `HOST`.
pub(crate) fn parse_url(url: &str) -> Result<NatsUrl, NatsError> {
    let bad = |reason| NatsError::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("nats://")
        .ok_or_else(|| bad("must start with nats:// (TLS is set by files.nats.tls)"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(bad("no host"));
    }
    if rest.contains(['@', '/', '?', '#', ' ']) {
        return Err(bad(
            "credentials, paths and queries are not supported (credentials come from files.nats.credentials)",
        ));
    }
    // A port follows the last ':' unless that ':' is inside an IPv6 literal.
    let port_at = rest.rfind(':').filter(|&i| !rest[i..].contains(']'));
    let (host, addr) = match port_at {
        Some(i) => (&rest[..i], rest.to_string()),
        None => (rest, format!("{rest}:4222")),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(NatsUrl {
        addr,
        host: host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = |url: &str, addr: &str, host: &str| {
            let parsed = parse_url(url).unwrap();
            assert_eq!(
                (parsed.addr.as_str(), parsed.host.as_str()),
                (addr, host),
                "{url}"
            );
        };
        ok("nats://127.0.0.1:4222", "127.0.0.1:4222", "127.0.0.1");
        ok("nats://example.com", "example.com:4222", "example.com");
        ok("nats://[::1]", "[::1]:4222", "::1");
        ok("nats://[::1]:5000/", "[::1]:5000", "::1");
        for bad in [
            "http://x",
            "tls://x",
            "nats://",
            "nats://:4222",
            "nats://u:p@h:1",
            "nats://h/x",
        ] {
            assert!(
                matches!(parse_url(bad), Err(NatsError::BadUrl { .. })),
                "{bad}"
            );
        }
    }
}
