//! `enclave-ctl stop`: graceful stop, killed after `-t`/`--timeout` seconds.

use std::time::Duration;

use anyhow::{Context, Result};
use enclave_engine::lifecycle;

use crate::cli::{StopArgs, EXIT_ERROR, EXIT_OK};
use crate::remote::{for_each, segment, Remote};

/// Runs the command; returns the exit status.
pub fn run(args: StopArgs, remote: Option<&Remote>) -> Result<i32> {
    if let Some(remote) = remote {
        return Ok(for_each(&args.enclaves, |q| {
            let name = remote.name_of(q)?;
            let path = format!("/v1/enclaves/{}/stop?timeout={}", segment(q), args.timeout);
            remote
                .ok("POST", &path)
                .with_context(|| format!("stopping {name}"))?;
            Ok(name)
        }));
    }
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
