//! The emulated NSM on the parent's side of the hybrid vsock socket: the guest's connections to
//! port 9001 ([`enclave_proto::ports::NSM_EMULATION`]) arrive on `<uds>_9001`. The socket is
//! per enclave (vhost-device-vsock serves one guest), so every request comes from this enclave.
//! The server and the device are enclave-nsm's ([`NsmServer`], [`EmulatedDevice`]); what is
//! the engine's is where the CA lives in the state tree and which PCRs the device holds: those
//! measured from the EIF this supervisor booted.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use enclave_nsm::emulated::EmulatedDevice;
pub use enclave_nsm::emulated::NsmServer;

use crate::error::{EngineError, Result};
use crate::state::{emulation_ca, measured_pcrs};

/// Serves the emulated NSM for one boot of `rec` on `path` (where the guest's connections to
/// the parent's port 9001 arrive), counting the documents it signs in `documents`. A CA that
/// cannot be loaded is an error for the caller to log; only `attest` needs it.
pub fn start_for(
    state_root: &Path,
    rec: &crate::state::EnclaveRecord,
    path: &Path,
    documents: Arc<AtomicU64>,
) -> Result<NsmServer> {
    let ca = Arc::new(emulation_ca(state_root)?);
    let device = EmulatedDevice::new(ca, &rec.id, &measured_pcrs(&rec.measurements));
    NsmServer::start_counting(path, device, documents).map_err(|e| EngineError::io(path, e))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    // The server itself is tested in enclave-nsm (tests/server.rs); here, what the engine adds.
    #[test]
    fn the_device_holds_the_record_s_measured_pcrs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Arc::new(emulation_ca(dir.path()).unwrap());
        let measurements: BTreeMap<String, String> = [
            ("HashAlgorithm", "Sha384 { ... }".to_owned()),
            ("PCR0", "11".repeat(48)),
            ("PCR1", "22".repeat(48)),
            ("PCR2", "33".repeat(48)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let pcrs = measured_pcrs(&measurements);
        assert_eq!(pcrs.len(), 3);
        assert_eq!(pcrs[&2], [0x33; 48]);
        let mut device = EmulatedDevice::new(ca, &"ef".repeat(32), &pcrs);
        assert_eq!(
            format!(
                "{:?}",
                device.handle(enclave_nsm::Request::DescribePCR { index: 2 })
            ),
            format!(
                "{:?}",
                enclave_nsm::Response::DescribePCR {
                    lock: true,
                    data: vec![0x33; 48]
                }
            )
        );
    }
}
