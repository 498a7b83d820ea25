//! What an enclave asks of its Nitro Secure Module, and the emulated NSM's transport.
//!
//! [`Nsm`] is the one interface: the hardware implementation (in enclave-init) passes the
//! request to `/dev/nsm`, [`EmulatedNsm`] sends it to the host supervisor of an emulated
//! enclave. Both speak the NSM API's own [`Request`]/[`Response`] (crate
//! `aws-nitro-enclaves-nsm-api`) in CBOR, so the emulated device takes exactly what `/dev/nsm`
//! takes. On vsock each message is one frame of [`crate::wire::frame`]; one request per
//! connection.

use std::io;
use std::time::Duration;

pub use aws_nitro_enclaves_nsm_api::api::{Digest, ErrorCode, Request, Response};
use serde_bytes::ByteBuf;

use crate::transport::{self, Addr};
use crate::wire::frame::{read_frame, write_frame, FrameError};

/// How long the emulated NSM may take to answer (signing is milliseconds; TCG guests are slow).
pub const EMULATED_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an NSM request failed.
#[derive(Debug, thiserror::Error)]
pub enum NsmError {
    /// The device or the connection failed.
    #[error("NSM i/o: {0}")]
    Io(#[from] io::Error),
    /// Connecting to the emulated NSM failed.
    #[error("emulated NSM: {0}")]
    Transport(#[from] transport::TransportError),
    /// Framing failed.
    #[error("emulated NSM: {0}")]
    Frame(#[from] FrameError),
    /// The message is not the NSM's CBOR.
    #[error("NSM message: {0}")]
    Cbor(String),
    /// The NSM answered with an error code.
    #[error("the NSM refused the request: {0:?}")]
    Refused(ErrorCode),
    /// The NSM answered with a response of another kind.
    #[error("unexpected NSM response: {0}")]
    Unexpected(String),
}

/// The Nitro Secure Module, hardware or emulated.
pub trait Nsm: Send + Sync {
    /// Sends one request and returns the NSM's response (an `Error` response is `Ok` here).
    fn process(&self, request: Request) -> Result<Response, NsmError>;

    /// A fresh attestation document with the given optional fields.
    fn attest(
        &self,
        user_data: Option<Vec<u8>>,
        nonce: Option<Vec<u8>>,
        public_key: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, NsmError> {
        match self.process(Request::Attestation {
            user_data: user_data.map(ByteBuf::from),
            nonce: nonce.map(ByteBuf::from),
            public_key: public_key.map(ByteBuf::from),
        })? {
            Response::Attestation { document } => Ok(document),
            other => Err(unexpected(other)),
        }
    }

    /// Random bytes from the NSM.
    fn get_random(&self) -> Result<Vec<u8>, NsmError> {
        match self.process(Request::GetRandom)? {
            Response::GetRandom { random } => Ok(random),
            other => Err(unexpected(other)),
        }
    }

    /// A PCR's value and whether it is locked.
    fn describe_pcr(&self, index: u16) -> Result<(bool, Vec<u8>), NsmError> {
        match self.process(Request::DescribePCR { index })? {
            Response::DescribePCR { lock, data } => Ok((lock, data)),
            other => Err(unexpected(other)),
        }
    }

    /// Extends a PCR with `data`; returns its new value.
    fn extend_pcr(&self, index: u16, data: Vec<u8>) -> Result<Vec<u8>, NsmError> {
        match self.process(Request::ExtendPCR { index, data })? {
            Response::ExtendPCR { data } => Ok(data),
            other => Err(unexpected(other)),
        }
    }

    /// Locks a PCR.
    fn lock_pcr(&self, index: u16) -> Result<(), NsmError> {
        match self.process(Request::LockPCR { index })? {
            Response::LockPCR => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> NsmError {
    match r {
        Response::Error(code) => NsmError::Refused(code),
        other => NsmError::Unexpected(format!("{other:?}").chars().take(80).collect()),
    }
}

/// Encodes a request as the NSM reads it (CBOR of the NSM API type).
pub fn encode_request(r: &Request) -> Result<Vec<u8>, NsmError> {
    to_cbor(r)
}

/// Decodes a request.
pub fn decode_request(bytes: &[u8]) -> Result<Request, NsmError> {
    ciborium::from_reader(bytes).map_err(|e| NsmError::Cbor(e.to_string()))
}

/// Encodes a response.
pub fn encode_response(r: &Response) -> Result<Vec<u8>, NsmError> {
    to_cbor(r)
}

/// Decodes a response.
pub fn decode_response(bytes: &[u8]) -> Result<Response, NsmError> {
    ciborium::from_reader(bytes).map_err(|e| NsmError::Cbor(e.to_string()))
}

fn to_cbor(v: &impl serde::Serialize) -> Result<Vec<u8>, NsmError> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).map_err(|e| NsmError::Cbor(e.to_string()))?;
    Ok(out)
}

/// Reads one framed request (the server's side); `None` when the peer closed first.
pub fn read_request(stream: &mut impl io::Read) -> Result<Option<Request>, NsmError> {
    read_frame(stream)?
        .map(|f| decode_request(f.payload()))
        .transpose()
}

/// Writes one framed response.
pub fn write_response(stream: &mut impl io::Write, r: &Response) -> Result<(), NsmError> {
    Ok(write_frame(stream, &encode_response(r)?)?)
}

/// The emulated NSM: the host supervisor at `vsock:<parent CID>:9001`
/// ([`crate::ports::NSM_EMULATION`]), or any [`Addr`] (tests).
#[derive(Debug, Clone)]
pub struct EmulatedNsm {
    addr: Addr,
}

impl EmulatedNsm {
    /// The emulated NSM of an enclave whose parent is `parent_cid`.
    pub fn at_parent(parent_cid: u32) -> Self {
        Self::at(Addr::Vsock {
            cid: parent_cid,
            port: crate::ports::NSM_EMULATION,
        })
    }

    /// The emulated NSM at `addr`.
    pub fn at(addr: Addr) -> Self {
        Self { addr }
    }
}

impl Nsm for EmulatedNsm {
    fn process(&self, request: Request) -> Result<Response, NsmError> {
        let mut conn = transport::connect(&self.addr)?;
        conn.set_read_timeout(Some(EMULATED_TIMEOUT))?;
        conn.set_write_timeout(Some(EMULATED_TIMEOUT))?;
        write_frame(&mut conn, &encode_request(&request)?)?;
        let frame = read_frame(&mut conn)?.ok_or_else(|| {
            NsmError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the emulated NSM closed the connection without answering",
            ))
        })?;
        decode_response(frame.payload())
    }
}

/// The PCR that records the enclave's debug surface: at boot, before any service runs,
/// enclave-init extends it with [`debug_marker`] of the capabilities the measured spec grants
/// (not at all when it grants none) and locks it. A verifier reads it with [`read_debug_pcr`].
/// PCR16 to PCR30 stay free for applications.
pub const DEBUG_PCR: u16 = 31;

/// Domain string of the PCR31 marker.
pub const DEBUG_MARKER_DOMAIN: &str = "enclave-engine debug capabilities v1:";

/// What PCR31 is extended with when `caps` is not empty: the domain followed by the
/// capabilities' names sorted and joined by commas, e.g.
/// `enclave-engine debug capabilities v1:debug.cp,debug.exec`. `None` for no capability (PCR31
/// then stays zero). Unknown capabilities are left out.
pub fn debug_marker(caps: &[crate::wire::Capability]) -> Option<Vec<u8>> {
    let mut names: Vec<String> = caps
        .iter()
        .filter(|c| **c != crate::wire::Capability::Unknown)
        .map(ToString::to_string)
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return None;
    }
    Some(format!("{DEBUG_MARKER_DOMAIN}{}", names.join(",")).into_bytes())
}

/// The value PCR31 has after boot when the spec grants `caps`: zero for none, otherwise
/// `SHA384(0^48 || debug_marker(caps))` (one NSM extension of a zero register).
pub fn debug_pcr_value(caps: &[crate::wire::Capability]) -> [u8; 48] {
    use sha2::{Digest, Sha384};
    match debug_marker(caps) {
        None => [0; 48],
        Some(marker) => {
            let mut h = Sha384::new();
            h.update([0u8; 48]);
            h.update(&marker);
            h.finalize().into()
        }
    }
}

/// What a document's PCR31 says about the enclave's debug surface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugSurface {
    /// All zero: no debug capability.
    None,
    /// The marker of these capabilities (sorted).
    Granted(Vec<crate::wire::Capability>),
    /// Not zero and no known marker: something else extended PCR31; treat it as debug.
    Unknown,
}

/// Reads PCR31's value (any length; Nitro's registers are 48 bytes).
pub fn read_debug_pcr(value: &[u8]) -> DebugSurface {
    use crate::wire::Capability;
    if value.iter().all(|b| *b == 0) {
        return DebugSurface::None;
    }
    let all = [Capability::Exec, Capability::Cp, Capability::Attest];
    for mask in 1u32..(1 << all.len()) {
        let caps: Vec<Capability> = (0..all.len())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| all[i])
            .collect();
        if debug_pcr_value(&caps)[..] == *value {
            let mut caps = caps;
            caps.sort_unstable();
            return DebugSurface::Granted(caps);
        }
    }
    DebugSurface::Unknown
}

#[cfg(test)]
mod debug_pcr_tests {
    use super::*;
    use crate::wire::Capability;

    #[test]
    fn marker_is_canonical_and_readable() {
        assert_eq!(debug_marker(&[]), None);
        assert_eq!(debug_pcr_value(&[]), [0; 48]);
        let a = debug_pcr_value(&[Capability::Exec, Capability::Cp]);
        let b = debug_pcr_value(&[Capability::Cp, Capability::Exec, Capability::Exec]);
        assert_eq!(a, b, "order and repeats do not matter");
        assert_eq!(
            debug_marker(&[Capability::Exec, Capability::Cp]).unwrap(),
            b"enclave-engine debug capabilities v1:debug.cp,debug.exec"
        );
        assert_eq!(
            read_debug_pcr(&a),
            DebugSurface::Granted(vec![Capability::Exec, Capability::Cp])
        );
        assert_eq!(read_debug_pcr(&[0; 48]), DebugSurface::None);
        let mut other = a;
        other[0] ^= 1;
        assert_eq!(read_debug_pcr(&other), DebugSurface::Unknown);
        assert_eq!(
            read_debug_pcr(&debug_pcr_value(&[Capability::Attest])),
            DebugSurface::Granted(vec![Capability::Attest])
        );
    }
}
