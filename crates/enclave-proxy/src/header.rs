//! The one header at the start of every proxied connection, and the one-byte reply to it.
//!
//! Every connection that crosses vsock, in either direction, starts with a [`Request`] from the
//! connecting side naming where it wants to go; the accepting side checks it against its
//! allow-list, connects, and answers with a [`Status`] byte before any payload flows. Then the
//! connection is a plain byte stream both ways.
//!
//! ```text
//! request  = version:u8 (=1)  kind:u8  port:u16be  body
//!   kind 1 (ingress)       body = ""                              connect to 127.0.0.1:port in the enclave
//!   kind 2 (egress name)   body = len:u8 (1..=253) name:[u8; len]  a DNS name, lower-case LDH
//!   kind 3 (egress addr)   body = family:u8 (4|6) addr:[u8; 4|16]  transparent mode's original destination
//! reply    = status:u8     0 connected, 1 not allowed, 2 name did not resolve, 3 connect failed,
//!                          4 malformed request, 5 unsupported version, 6 busy (connection limit)
//! ```
//!
//! The longest request is 258 bytes; decoders never read past it, never allocate more than the
//! name, and reject anything else with a [`HeaderError`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enclave_spec::HostPattern;

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// The longest possible request, in bytes.
pub const MAX_REQUEST_LEN: usize = 4 + 1 + 253;

const KIND_INGRESS: u8 = 1;
const KIND_EGRESS_NAME: u8 = 2;
const KIND_EGRESS_ADDR: u8 = 3;

/// What the connecting side asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    /// Host to enclave: connect to `127.0.0.1:port` inside.
    Ingress {
        /// The enclave port.
        port: u16,
    },
    /// Enclave to host: connect to a name (resolved by the host).
    EgressName {
        /// The DNS name, lower-case, no trailing dot.
        name: String,
        /// The TCP port.
        port: u16,
    },
    /// Enclave to host: connect to an address (transparent mode).
    EgressAddr {
        /// The original destination address.
        addr: IpAddr,
        /// The TCP port.
        port: u16,
    },
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The first byte is not [`VERSION`].
    #[error("unsupported proxy header version {0} (this side speaks {VERSION})")]
    Version(u8),
    /// Unknown request kind.
    #[error("unknown proxy request kind {0}")]
    Kind(u8),
    /// Port 0.
    #[error("proxy request for port 0")]
    PortZero,
    /// The name is empty, too long or not a host name.
    #[error("proxy request names an invalid host: {0:?}")]
    Name(String),
    /// The address family byte is not 4 or 6.
    #[error("proxy request has address family {0} (expected 4 or 6)")]
    Family(u8),
    /// The reply byte is not a known status.
    #[error("unknown proxy reply status {0}")]
    Status(u8),
}

impl Request {
    /// Appends the encoded request to `out`.
    ///
    /// # Panics
    /// Never for requests built by [`Request::decode`]; a hand-built `EgressName` whose name is
    /// longer than 253 bytes is truncated to an invalid request that the peer refuses.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        match self {
            Request::Ingress { port } => {
                out.push(KIND_INGRESS);
                out.extend_from_slice(&port.to_be_bytes());
            }
            Request::EgressName { name, port } => {
                out.push(KIND_EGRESS_NAME);
                out.extend_from_slice(&port.to_be_bytes());
                let len = name.len().min(253);
                out.push(len as u8);
                out.extend_from_slice(&name.as_bytes()[..len]);
            }
            Request::EgressAddr { addr, port } => {
                out.push(KIND_EGRESS_ADDR);
                out.extend_from_slice(&port.to_be_bytes());
                match addr {
                    IpAddr::V4(a) => {
                        out.push(4);
                        out.extend_from_slice(&a.octets());
                    }
                    IpAddr::V6(a) => {
                        out.push(6);
                        out.extend_from_slice(&a.octets());
                    }
                }
            }
        }
    }

    /// The encoded request.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_REQUEST_LEN);
        self.encode(&mut out);
        out
    }

    /// Decodes a request from the start of `buf`: `Ok(None)` when more bytes are needed,
    /// `Ok(Some((request, length)))` when complete.
    pub fn decode(buf: &[u8]) -> Result<Option<(Request, usize)>, HeaderError> {
        let Some(&version) = buf.first() else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        let Some(&kind) = buf.get(1) else {
            return Ok(None);
        };
        if !matches!(kind, KIND_INGRESS | KIND_EGRESS_NAME | KIND_EGRESS_ADDR) {
            return Err(HeaderError::Kind(kind));
        }
        let Some(port) = buf.get(2..4) else {
            return Ok(None);
        };
        let port = u16::from_be_bytes([port[0], port[1]]);
        if port == 0 {
            return Err(HeaderError::PortZero);
        }
        match kind {
            KIND_INGRESS => Ok(Some((Request::Ingress { port }, 4))),
            KIND_EGRESS_NAME => {
                let Some(&len) = buf.get(4) else {
                    return Ok(None);
                };
                let len = usize::from(len);
                let Some(raw) = buf.get(5..5 + len) else {
                    return Ok(None);
                };
                let name = std::str::from_utf8(raw)
                    .ok()
                    .filter(|n| n.bytes().all(|b| !b.is_ascii_uppercase()))
                    .filter(|n| enclave_spec::valid_host_name(n))
                    .ok_or_else(|| HeaderError::Name(String::from_utf8_lossy(raw).into()))?;
                Ok(Some((
                    Request::EgressName {
                        name: name.to_owned(),
                        port,
                    },
                    5 + len,
                )))
            }
            _ => {
                let Some(&family) = buf.get(4) else {
                    return Ok(None);
                };
                let len = match family {
                    4 => 4,
                    6 => 16,
                    other => return Err(HeaderError::Family(other)),
                };
                let Some(raw) = buf.get(5..5 + len) else {
                    return Ok(None);
                };
                let addr = if len == 4 {
                    IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
                } else {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(raw);
                    IpAddr::V6(Ipv6Addr::from(octets))
                };
                Ok(Some((Request::EgressAddr { addr, port }, 5 + len)))
            }
        }
    }

    /// A name request for a host pattern's exact name (`None` for a wildcard pattern).
    pub fn for_pattern(pattern: &HostPattern, port: u16) -> Option<Request> {
        pattern
            .wildcard_domain()
            .is_none()
            .then(|| Request::EgressName {
                name: pattern.as_str().to_owned(),
                port,
            })
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Ingress { port } => write!(f, "ingress to enclave port {port}"),
            Request::EgressName { name, port } => write!(f, "egress to {name}:{port}"),
            Request::EgressAddr {
                addr: IpAddr::V6(a),
                port,
            } => write!(f, "egress to [{a}]:{port}"),
            Request::EgressAddr { addr, port } => write!(f, "egress to {addr}:{port}"),
        }
    }
}

/// The accepting side's answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Connected; payload follows.
    Connected = 0,
    /// The allow-list does not contain the destination.
    NotAllowed = 1,
    /// The name did not resolve (or resolved to no allowed address).
    ResolveFailed = 2,
    /// Connecting to the destination failed.
    ConnectFailed = 3,
    /// The request could not be decoded.
    Malformed = 4,
    /// The request's version is not spoken here.
    UnsupportedVersion = 5,
    /// The accepting side holds as many connections as it allows; sent at once, before the
    /// request is read.
    Busy = 6,
}

impl Status {
    /// Decodes a reply byte.
    pub fn from_byte(b: u8) -> Result<Status, HeaderError> {
        Ok(match b {
            0 => Status::Connected,
            1 => Status::NotAllowed,
            2 => Status::ResolveFailed,
            3 => Status::ConnectFailed,
            4 => Status::Malformed,
            5 => Status::UnsupportedVersion,
            6 => Status::Busy,
            other => return Err(HeaderError::Status(other)),
        })
    }

    /// The status for a request that failed to decode.
    pub fn for_error(e: &HeaderError) -> Status {
        match e {
            HeaderError::Version(_) => Status::UnsupportedVersion,
            _ => Status::Malformed,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Connected => "connected",
            Status::NotAllowed => "not allowed by the allow-list",
            Status::ResolveFailed => "the name did not resolve to an allowed address",
            Status::ConnectFailed => "the destination refused or did not answer",
            Status::Malformed => "malformed proxy request",
            Status::UnsupportedVersion => "unsupported proxy protocol version",
            Status::Busy => "busy: at its connection limit",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request> {
        vec![
            Request::Ingress { port: 443 },
            Request::EgressName {
                name: "db.internal".into(),
                port: 5432,
            },
            Request::EgressName {
                name: format!(
                    "{}.{}.{}.{}",
                    "a".repeat(63),
                    "b".repeat(63),
                    "c".repeat(63),
                    "d".repeat(61)
                ),
                port: 1,
            },
            Request::EgressAddr {
                addr: "10.1.2.3".parse().unwrap(),
                port: 65535,
            },
            Request::EgressAddr {
                addr: "fd00::1".parse().unwrap(),
                port: 8080,
            },
        ]
    }

    #[test]
    fn round_trip_and_every_prefix_needs_more() {
        for req in all_requests() {
            let bytes = req.to_bytes();
            assert!(bytes.len() <= MAX_REQUEST_LEN);
            for cut in 0..bytes.len() {
                assert_eq!(
                    Request::decode(&bytes[..cut]),
                    Ok(None),
                    "{req} cut at {cut}"
                );
            }
            let mut more = bytes.clone();
            more.extend_from_slice(b"payload");
            assert_eq!(Request::decode(&more), Ok(Some((req.clone(), bytes.len()))));
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        let cases: [(&[u8], HeaderError); 8] = [
            (&[2, 1, 0, 80], HeaderError::Version(2)),
            (&[1, 9, 0, 80], HeaderError::Kind(9)),
            (&[1, 1, 0, 0], HeaderError::PortZero),
            (&[1, 2, 0, 80, 0], HeaderError::Name(String::new())),
            (
                &[1, 2, 0, 80, 3, b'A', b'.', b'b'],
                HeaderError::Name("A.b".into()),
            ),
            (
                &[1, 2, 0, 80, 3, b'a', b'/', b'b'],
                HeaderError::Name("a/b".into()),
            ),
            (
                &[1, 2, 0, 80, 2, 0xff, 0xfe],
                HeaderError::Name("\u{fffd}\u{fffd}".into()),
            ),
            (&[1, 3, 0, 80, 5], HeaderError::Family(5)),
        ];
        for (bytes, want) in cases {
            assert_eq!(Request::decode(bytes), Err(want.clone()), "{bytes:?}");
            assert_ne!(Status::for_error(&want), Status::Connected);
        }
    }

    #[test]
    fn status_bytes_round_trip() {
        for b in 0..=6u8 {
            assert_eq!(Status::from_byte(b).unwrap() as u8, b);
        }
        assert_eq!(Status::from_byte(7), Err(HeaderError::Status(7)));
    }
}
