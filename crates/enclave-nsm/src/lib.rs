//! The Nitro Secure Module: what an enclave asks of it, and every implementation of it.
//!
//! Where it runs: inside the enclave (enclave-init, PID 1, is the NSM's one client there) and,
//! behind the `emulated` feature, on the host, where the supervisor of an emulated enclave
//! plays the NSM.
//!
//! [`Nsm`] is the one interface. [`HardwareNsm`] passes each request to `/dev/nsm` (Nitro);
//! [`EmulatedNsm`] sends it to the host supervisor of an emulated enclave. Both speak the NSM
//! API's own [`Request`]/[`Response`] (crate `aws-nitro-enclaves-nsm-api`) in CBOR, so the
//! emulated device takes exactly what `/dev/nsm` takes. On vsock each message is one frame of
//! [`enclave_proto::wire::frame`]; one request per connection.
//!
//! The `emulated` feature (off by default) adds the host's side, [`emulated`]: the per-host
//! emulation CA, the device that answers requests and signs documents under it, and the socket
//! server the supervisor runs. It brings in the signing and certificate crates and the verifier's
//! document limits; enclave-init depends on this crate without it, so none of that is linked
//! into PID 1.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod client;
#[cfg(feature = "emulated")]
pub mod emulated;
mod hardware;
mod hardware_unsafe;

use std::io;

pub use aws_nitro_enclaves_nsm_api::api::{Digest, ErrorCode, Request, Response};
use enclave_proto::transport;
use enclave_proto::wire::frame::{read_frame, write_frame, FrameError};
use serde_bytes::ByteBuf;

pub use client::{EmulatedNsm, EMULATED_TIMEOUT};
pub use hardware::{HardwareNsm, NSM_DEVICE};

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
