//! The DNS messages the enclave's resolver understands: a standard query (RFC 1035) with one
//! question and, optionally, one EDNS OPT record (RFC 6891; Go's resolver always sends one and
//! does not retry without it), and the few answers it gives.
//!
//! Parsing is strict and bounded: it reads only the given bytes, allocates at most the name,
//! accepts no compression in the question (a query has nothing earlier to point at), and turns
//! everything else into a [`DnsError`] that maps to FORMERR or NOTIMP, or to silence for bytes
//! that are not a query at all. It never panics.

use std::net::Ipv4Addr;

const HEADER_LEN: usize = 12;
/// The longest name on the wire, length bytes and the root label included (RFC 1035 §2.3.4).
const MAX_NAME_WIRE: usize = 255;
const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;
/// Query types answered with the alias; every other type gets an empty answer.
const TYPE_A: u16 = 1;
const TYPE_ANY: u16 = 255;
/// The UDP payload size we advertise (RFC 9715's recommendation); our answers are far smaller.
const EDNS_UDP_SIZE: u16 = 1232;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The transaction id, echoed in the response.
    pub id: u16,
    /// The RD flag, echoed in the response.
    pub recursion_desired: bool,
    /// The question's name: lower-case, labels joined with dots, no trailing dot, `""` for the
    /// root.
    pub name: String,
    /// The question's type.
    pub qtype: u16,
    /// The EDNS OPT record, if the query had one.
    pub edns: Option<Edns>,
    /// The question as it was on the wire, echoed verbatim (keeps the asker's letter case).
    question: Vec<u8>,
}

/// What an EDNS OPT record said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The asker's UDP payload size.
    pub udp_size: u16,
    /// The EDNS version (only 0 exists; others get BADVERS).
    pub version: u8,
}

/// Why a message is not a query we answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Fewer than 12 bytes: no header to answer to.
    #[error("shorter than a DNS header")]
    Short,
    /// The QR bit is set: a response, never answered (that could loop).
    #[error("a response, not a query")]
    NotQuery,
    /// An opcode other than QUERY.
    #[error("opcode {0} is not implemented")]
    Opcode(u8),
    /// QDCOUNT is not 1.
    #[error("{0} questions (exactly one is answered)")]
    QuestionCount(u16),
    /// Answer or authority records, or additional records other than one OPT.
    #[error("unexpected records: {0}")]
    Records(&'static str),
    /// The question's name is not a plain uncompressed name.
    #[error("bad question name: {0}")]
    Name(&'static str),
    /// The message ends inside the question or the OPT record.
    #[error("truncated message")]
    Truncated,
    /// A class other than IN.
    #[error("class {0} is not implemented (only IN)")]
    Class(u16),
    /// Bytes after the last record.
    #[error("{0} bytes after the last record")]
    Trailing(usize),
}

/// Response codes we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    /// Success (possibly with no answers).
    NoError = 0,
    /// The query was malformed.
    FormErr = 1,
    /// We could not answer (a listener could not be bound).
    ServFail = 2,
    /// The name does not exist (is not allowed).
    NxDomain = 3,
    /// A kind of query we do not implement.
    NotImp = 4,
    /// We will not answer it now: the name is allowed, but every loopback alias is held.
    Refused = 5,
}

impl DnsError {
    /// The response code for this error; `None` means send nothing.
    pub fn rcode(&self) -> Option<Rcode> {
        match self {
            DnsError::Short | DnsError::NotQuery => None,
            DnsError::Opcode(_) | DnsError::Class(_) => Some(Rcode::NotImp),
            _ => Some(Rcode::FormErr),
        }
    }
}

/// What to answer a well-formed query with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// One A record.
    Address(Ipv4Addr),
    /// The name exists but has no record of the asked type (AAAA, MX, ...).
    NoData,
    /// The name does not exist.
    NxDomain,
    /// We could not answer.
    ServFail,
    /// We will not answer it now (no loopback alias free).
    Refused,
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

/// Parses a query. The fuzz target's entry point: must never panic, whatever the bytes.
pub fn parse_query(packet: &[u8]) -> Result<Query, DnsError> {
    let header = packet.get(..HEADER_LEN).ok_or(DnsError::Short)?;
    let id = u16::from_be_bytes([header[0], header[1]]);
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if flags & 0x8000 != 0 {
        return Err(DnsError::NotQuery);
    }
    let opcode = ((flags >> 11) & 0xf) as u8;
    if opcode != 0 {
        return Err(DnsError::Opcode(opcode));
    }
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    if qd != 1 {
        return Err(DnsError::QuestionCount(qd));
    }
    if an != 0 || ns != 0 {
        return Err(DnsError::Records("answer or authority records in a query"));
    }
    if ar > 1 {
        return Err(DnsError::Records("more than one additional record"));
    }

    let (name, name_end) = parse_name(packet, HEADER_LEN)?;
    let qtype = be16(packet, name_end).ok_or(DnsError::Truncated)?;
    let qclass = be16(packet, name_end + 2).ok_or(DnsError::Truncated)?;
    let question_end = name_end + 4;
    if qclass != CLASS_IN {
        return Err(DnsError::Class(qclass));
    }
    let (edns, end) = if ar == 1 {
        let (edns, end) = parse_opt(packet, question_end)?;
        (Some(edns), end)
    } else {
        (None, question_end)
    };
    if end != packet.len() {
        return Err(DnsError::Trailing(packet.len().saturating_sub(end)));
    }
    Ok(Query {
        id,
        recursion_desired: flags & 0x0100 != 0,
        name,
        qtype,
        edns,
        question: packet
            .get(HEADER_LEN..question_end)
            .unwrap_or_default()
            .to_vec(),
    })
}

/// Reads an uncompressed name at `at`: the lower-cased dotted name and where it ends.
fn parse_name(packet: &[u8], mut at: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut wire_len = 0usize;
    loop {
        let len = *packet.get(at).ok_or(DnsError::Truncated)?;
        at += 1;
        match len & 0xc0 {
            0 => {}
            0xc0 => return Err(DnsError::Name("compression pointer in the question")),
            _ => return Err(DnsError::Name("extended label type")),
        }
        let len = usize::from(len);
        wire_len += 1 + len;
        if wire_len > MAX_NAME_WIRE {
            return Err(DnsError::Name("longer than 255 bytes"));
        }
        if len == 0 {
            return Ok((name, at));
        }
        let label = packet.get(at..at + len).ok_or(DnsError::Truncated)?;
        at += len;
        // Host names are LDH; '_' appears in service names (SRV lookups). Anything else, and a
        // '.' inside a label, could not match an allow-list entry and would make the dotted
        // form ambiguous, so it is refused outright.
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return Err(DnsError::Name(
                "characters other than letters, digits, '-' and '_'",
            ));
        }
        if !name.is_empty() {
            name.push('.');
        }
        name.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
}

/// Reads the one OPT record at `at`: what it says and where it ends.
fn parse_opt(packet: &[u8], at: usize) -> Result<(Edns, usize), DnsError> {
    let owner = *packet.get(at).ok_or(DnsError::Truncated)?;
    if owner != 0 {
        return Err(DnsError::Records(
            "an additional record that is not EDNS OPT",
        ));
    }
    let rtype = be16(packet, at + 1).ok_or(DnsError::Truncated)?;
    if rtype != TYPE_OPT {
        return Err(DnsError::Records(
            "an additional record that is not EDNS OPT",
        ));
    }
    let udp_size = be16(packet, at + 3).ok_or(DnsError::Truncated)?;
    let version = *packet.get(at + 6).ok_or(DnsError::Truncated)?;
    let rdlen = usize::from(be16(packet, at + 9).ok_or(DnsError::Truncated)?);
    let end = at + 11 + rdlen;
    if end > packet.len() {
        return Err(DnsError::Truncated);
    }
    Ok((Edns { udp_size, version }, end))
}

impl Query {
    /// The response carrying `answer`. A query with an EDNS version we do not speak gets BADVERS
    /// instead (RFC 6891 §6.1.3), whatever the answer.
    pub fn response(&self, answer: Answer) -> Vec<u8> {
        let bad_version = self.edns.is_some_and(|e| e.version != 0);
        let (rcode, address) = match answer {
            _ if bad_version => (Rcode::NoError, None),
            Answer::Address(a) => (Rcode::NoError, Some(a)),
            Answer::NoData => (Rcode::NoError, None),
            Answer::NxDomain => (Rcode::NxDomain, None),
            Answer::ServFail => (Rcode::ServFail, None),
            Answer::Refused => (Rcode::Refused, None),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + self.question.len() + 16 + 11);
        // QR, AA (we are the only authority there is), RD echoed, RA (we resolve for the asker).
        let flags = 0x8400 | 0x0080 | (u16::from(self.recursion_desired) << 8) | rcode as u16;
        put_header(
            &mut out,
            self.id,
            flags,
            1,
            u16::from(address.is_some()),
            u16::from(self.edns.is_some()),
        );
        out.extend_from_slice(&self.question);
        if let Some(a) = address {
            // The owner is a pointer to the question's name, which starts right after the header.
            out.extend_from_slice(&[0xc0, HEADER_LEN as u8]);
            out.extend_from_slice(&TYPE_A.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ANSWER_TTL.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&a.octets());
        }
        if self.edns.is_some() {
            // BADVERS is extended rcode 16: 1 in the OPT's upper 8 bits, 0 in the header's 4.
            let ext_rcode = u8::from(bad_version);
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
            out.extend_from_slice(&[ext_rcode, 0, 0, 0]);
            out.extend_from_slice(&0u16.to_be_bytes());
        }
        out
    }

    /// Whether the type asks for the A record (A or ANY).
    pub fn wants_address(&self) -> bool {
        matches!(self.qtype, TYPE_A | TYPE_ANY)
    }
}

/// How long askers may cache an alias. Aliases never change while the enclave runs; a minute
/// keeps stale caches short if a program outlives a restart of the proxy.
const ANSWER_TTL: u32 = 60;

fn put_header(out: &mut Vec<u8>, id: u16, flags: u16, qd: u16, an: u16, ar: u16) {
    for v in [id, flags, qd, an, 0, ar] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// The response to a message that failed to parse with `err`: the header's id and RD echoed, no
/// question, the error's rcode. `None` when nothing should be sent.
pub fn error_response(packet: &[u8], err: &DnsError) -> Option<Vec<u8>> {
    let rcode = err.rcode()?;
    let header = packet.get(..4)?;
    let id = u16::from_be_bytes([header[0], header[1]]);
    // Echo the opcode and RD; set QR.
    let flags = 0x8000 | (u16::from(header[2] & 0x79) << 8) | rcode as u16;
    let mut out = Vec::with_capacity(HEADER_LEN);
    put_header(&mut out, id, flags, 0, 0, 0);
    Some(out)
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
