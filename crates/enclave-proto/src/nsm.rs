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
