//! The hardware NSM, inside a Nitro enclave: each request goes through the `nsm` driver's ioctl
//! on `/dev/nsm`.

use crate::{decode_response, encode_request, Nsm, NsmError, Request, Response};

/// The NSM device node, created by the `nsm` driver (loaded as a module or built in).
pub const NSM_DEVICE: &str = "/dev/nsm";

/// The hardware NSM: the device is opened for each request (requests are rare: at boot, and one
/// per attestation document), so nothing is held open between them.
#[derive(Debug, Default, Clone, Copy)]
pub struct HardwareNsm;

impl Nsm for HardwareNsm {
    fn process(&self, request: Request) -> Result<Response, NsmError> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(NSM_DEVICE)?;
        let req = encode_request(&request)?;
        let resp = crate::hardware_unsafe::nsm_ioctl(&dev, &req)?;
        decode_response(&resp)
    }
}
