//! `enclave-ctl rm`: remove ended enclaves (`-f`: running ones too).

use anyhow::{Context, Result};
use enclave_engine::lifecycle;

use crate::cli::{RmArgs, EXIT_ERROR, EXIT_OK};
use crate::remote::{for_each, segment, Remote};

/// Runs the command; returns the exit status.
pub fn run(args: RmArgs, remote: Option<&Remote>) -> Result<i32> {
    if let Some(remote) = remote {
        return Ok(for_each(&args.enclaves, |q| {
            let name = remote.name_of(q)?;
            let path = format!("/v1/enclaves/{}?force={}", segment(q), args.force);
            remote
                .ok("DELETE", &path)
                .with_context(|| format!("removing {name}"))?;
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
                lifecycle::remove(&root, &rec, args.force)
                    .with_context(|| format!("removing {}", rec.name))
                    .map(|()| rec)
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
