//! The emulated NSM on the parent's side of the hybrid vsock socket: the guest's connections to
//! port 9001 ([`enclave_proto::ports::NSM_EMULATION`]) arrive on `<uds>_9001`. The socket is
//! per enclave (vhost-device-vsock serves one guest), so every request comes from this enclave.
//! The server and the device are enclave-nsm's ([`NsmServer`], [`EmulatedDevice`]); what is
//! the engine's is where the CA lives in the state tree and which PCRs the device holds: those
//! measured from the EIF this supervisor booted.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use enclave_nsm::emulated::NsmServer;
use enclave_nsm::emulated::{EmulatedDevice, EmulationCa, EMULATION_CA_DIR};

use crate::error::{EngineError, Result};

/// The emulation CA of a state root (`<root>/emulation-ca`), created on first use (in a 0700
/// directory renamed into place). Refused, as every directory of the state tree, unless the
/// directory is a real one owned by this user with mode 0700 (see `state/private_dir.rs`).
pub fn emulation_ca(state_root: &Path) -> Result<EmulationCa> {
    let dir = state_root.join(EMULATION_CA_DIR);
    if dir.symlink_metadata().is_ok() {
        crate::state::check_private_dir(&dir)?;
    }
    let ca = EmulationCa::load_or_create(&dir)
        .map_err(|e| EngineError::Backend(format!("emulation CA: {e}")))?;
    crate::state::check_private_dir(&dir)?;
    Ok(ca)
}

/// The measured PCRs of a record (`PCR0` … `PCR8` as hex) as the NSM's registers.
pub fn measured_pcrs(measurements: &BTreeMap<String, String>) -> BTreeMap<u8, [u8; 48]> {
    measurements
        .iter()
        .filter_map(|(k, v)| {
            let index = k.strip_prefix("PCR")?.parse::<u8>().ok()?;
            let bytes: [u8; 48] = hex::decode(v).ok()?.try_into().ok()?;
            Some((index, bytes))
        })
        .collect()
}

/// Serves the emulated NSM for one boot of `rec` on `<uds>_9001`: `None` for backends whose
/// enclaves have `/dev/nsm`. A CA that cannot be loaded is an error for the caller to log; only
/// `attest` needs it.
pub fn start_for(
    state_root: &Path,
    rec: &crate::state::EnclaveRecord,
    uds: &Path,
) -> Result<Option<NsmServer>> {
    if rec.backend != crate::backend::BackendKind::Qemu {
        return Ok(None);
    }
    let ca = Arc::new(emulation_ca(state_root)?);
    let device = EmulatedDevice::new(ca, &rec.id, &measured_pcrs(&rec.measurements));
    let path =
        enclave_proto::transport::hybrid::listen_path(uds, enclave_proto::ports::NSM_EMULATION);
    NsmServer::start(&path, device)
        .map(Some)
        .map_err(|e| EngineError::io(&path, e))
}

#[cfg(test)]
mod tests {
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
