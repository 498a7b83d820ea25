//! What `inspect ENCLAVE` shows, the same from `enclave-ctl` and from the engine API: the record
//! and what goes with it on this host.

use std::path::Path;

use serde_json::Value;

use super::{EnclaveRecord, StateRoot};
use crate::backend::Attestation;
use crate::error::{EngineError, Result};

impl StateRoot {
    /// `rec` as JSON, with `supervisor_alive`, its `state_dir` and, for an emulated enclave,
    /// the `emulation_root` its documents verify against (`verify --trust-root`).
    pub fn inspect(&self, rec: &EnclaveRecord) -> Result<Value> {
        let mut value = serde_json::to_value(rec)
            .map_err(|e| EngineError::Invalid(format!("the record of {}: {e}", rec.name)))?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert(
                "supervisor_alive".into(),
                self.supervisor_alive(&rec.id).into(),
            );
            obj.insert("state_dir".into(), path_value(&self.dir(&rec.id)));
            if rec.backend.attestation() == Attestation::Emulated {
                let ca = self.path().join(enclave_nsm::emulated::EMULATION_CA_DIR);
                obj.insert(
                    "emulation_root".into(),
                    path_value(&ca.join(enclave_nsm::emulated::ROOT_CERT_FILE)),
                );
            }
        }
        Ok(value)
    }
}

fn path_value(p: &Path) -> Value {
    p.display().to_string().into()
}
