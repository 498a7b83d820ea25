//! The emulated NSM's client, inside an emulated enclave: each request is one connection to the
//! host supervisor, one frame each way.

use std::io;
use std::time::Duration;

use enclave_proto::transport::{self, Addr};
use enclave_proto::wire::frame::{read_frame, write_frame};

use crate::{decode_response, encode_request, Nsm, NsmError, Request, Response};

/// How long the emulated NSM may take to answer (signing is milliseconds; TCG guests are slow).
pub const EMULATED_TIMEOUT: Duration = Duration::from_secs(10);

/// The emulated NSM: the host supervisor at `vsock:<parent CID>:9001`
/// ([`enclave_proto::ports::NSM_EMULATION`]), or any [`Addr`] (tests).
#[derive(Debug, Clone)]
pub struct EmulatedNsm {
    addr: Addr,
}

impl EmulatedNsm {
    /// The emulated NSM of an enclave whose parent is `parent_cid`.
    pub fn at_parent(parent_cid: u32) -> Self {
        Self::at(Addr::Vsock {
            cid: parent_cid,
            port: enclave_proto::ports::NSM_EMULATION,
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
