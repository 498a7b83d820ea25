//! `enclave-ctl stop`: graceful stop, killed after `-t`/`--timeout` seconds.

use std::time::Duration;

use anyhow::{Context, Result};
use enclave_engine::lifecycle;

use crate::cli::{StopArgs, EXIT_ERROR, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: StopArgs) -> Result<i32> {
    let root = super::state_dir::open(&args.state)?;
    let mut code = EXIT_OK;
    for q in &args.enclaves {
        let result = root
            .resolve(q)
            .map_err(anyhow::Error::from)
            .and_then(|rec| {
                lifecycle::stop(&root, &rec, Duration::from_secs(args.timeout))
                    .with_context(|| format!("stopping {}", rec.name))
            });
        match result {
            Ok(rec) => println!("{}", rec.name),
            Err(e) => {
                eprintln!("error: {e:#}");
                code = EXIT_ERROR;
            }
        }
    }
    Ok(code)
}
