//! `enclave-ctl inspect ENCLAVE` (when the argument is not an EIF file): the enclave's record
//! as JSON: state, backend, CID, PCRs, ports, restarts, the supervisor's liveness.

use anyhow::{Context, Result};
use enclave_engine::backend::Attestation;
use enclave_engine::state::{default_root, StateRoot};

use crate::cli::{InspectArgs, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: InspectArgs) -> Result<i32> {
    let query = args.eif.to_string_lossy().into_owned();
    // Whatever keeps us from looking for an enclave, say that the argument is no EIF either.
    let not_eif = || format!("{query} is not an EIF file, and no enclave can be looked up");
    let path = match std::env::var_os("ENCLAVE_ENGINE_STATE_DIR") {
        Some(dir) => dir.into(),
        None => default_root().with_context(not_eif)?,
    };
    let root = StateRoot::open(&path).with_context(not_eif)?;
    let rec = root
        .resolve(&query)
        .map_err(|e| anyhow::anyhow!("{e} (and {query} is not an EIF file)"))?;
    let mut value = serde_json::to_value(&rec)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "supervisor_alive".into(),
            root.supervisor_alive(&rec.id).into(),
        );
        obj.insert(
            "state_dir".into(),
            root.dir(&rec.id).display().to_string().into(),
        );
        if rec.backend.attestation() == Attestation::Emulated {
            // What `verify --trust-root` needs for this enclave's documents.
            let ca = path.join(enclave_nsm::emulated::EMULATION_CA_DIR);
            obj.insert(
                "emulation_root".into(),
                ca.join(enclave_nsm::emulated::ROOT_CERT_FILE)
                    .display()
                    .to_string()
                    .into(),
            );
        }
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(EXIT_OK)
}
