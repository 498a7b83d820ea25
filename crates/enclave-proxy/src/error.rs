//! The errors of the proxies' library API.

use std::io;
use std::time::Duration;

use enclave_proto::transport::hybrid::HandshakeError;

use crate::header::{HeaderError, Request, Status};

/// Why a proxy could not start, or a proxied connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listening socket could not be created.
    #[error("cannot listen on {addr}: {source}{}", listen_hint(source))]
    Listen {
        /// What was to be listened on (`127.0.0.1:8080`, `unix:/path`, `vsock:any:9002`).
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The runtime or its thread could not be started.
    #[error("cannot start the proxy runtime: {0}")]
    Runtime(#[source] io::Error),
    /// Connecting failed.
    #[error("cannot connect to {to}: {source}")]
    Connect {
        /// Where to.
        to: String,
        /// Why.
        source: io::Error,
    },
    /// The hybrid vsock device did not accept the connection.
    #[error("cannot connect to {to}: {source}")]
    Handshake {
        /// Where to.
        to: String,
        /// Why.
        source: HandshakeError,
    },
    /// A step did not finish in time.
    #[error("{what}: no answer within {} s", after.as_secs_f32())]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The other side answered a request with a status other than `Connected`.
    #[error("{to} refused {request}: {status}")]
    Refused {
        /// Who answered.
        to: String,
        /// What was asked.
        request: Request,
        /// The answer.
        status: Status,
    },
    /// The other side's answer is not a status byte.
    #[error("{to} answered {request} with garbage: {source}")]
    BadReply {
        /// Who answered.
        to: String,
        /// What was asked.
        request: Request,
        /// What was wrong.
        source: HeaderError,
    },
    /// The other side closed the connection without answering.
    #[error("{to} closed the connection without answering {request}")]
    Closed {
        /// Who.
        to: String,
        /// What was asked.
        request: Request,
    },
}

fn listen_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            " (another program, or another proxy of this host, already listens there)"
        }
        io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE; paths need write access)"
        }
        io::ErrorKind::AddrNotAvailable => " (no local interface has that address)",
        _ => "",
    }
}
