//! `enclave-ctl rm`: remove ended enclaves (`-f`: running ones too).

use anyhow::Result;
use enclave_engine::lifecycle;

use super::stop::{each, Operation};
use crate::cli::RmArgs;
use crate::remote::Remote;

/// Runs the command; returns the exit status.
pub fn run(args: RmArgs, remote: Option<&Remote>) -> Result<i32> {
    let force = args.force;
    let op = Operation {
        doing: "removing",
        method: "DELETE",
        route: format!("?force={force}"),
        here: Box::new(move |root, rec| Ok(lifecycle::remove(root, rec, force)?)),
    };
    each(&args.enclaves, &args.state, remote, op)
}
