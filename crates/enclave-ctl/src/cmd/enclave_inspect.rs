//! `enclave-ctl inspect ENCLAVE` (when the argument is not an EIF file): the enclave's record
//! as JSON: state, backend, CID, PCRs, ports, restarts, the supervisor's liveness.

use anyhow::{Context, Result};
use enclave_engine::state::{default_root, StateRoot};

use crate::cli::{InspectArgs, EXIT_OK};
use crate::remote::{segment, Remote};

/// Runs the command; returns the exit status.
pub fn run(args: InspectArgs, remote: Option<&Remote>) -> Result<i32> {
    let query = args.eif.to_string_lossy().into_owned();
    if let Some(remote) = remote {
        let value = remote
            .json(&format!("/v1/enclaves/{}", segment(&query)))
            .map_err(|e| anyhow::anyhow!("{e} (and {query} is not an EIF file)"))?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(EXIT_OK);
    }
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
    let value = root.inspect(&rec)?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(EXIT_OK)
}
