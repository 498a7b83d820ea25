//! `enclave-ctl node setup`: the library's steps (crate::kube::node), one line each as they
//! finish, or a JSON list at the end.

use anyhow::Result;

use crate::cli::{NodeArgs, NodeCommand, EXIT_ERROR, EXIT_OK};
use crate::kube::node::{setup, NodeParams, Status, Step};

/// Runs the command; returns the exit status.
pub fn run(args: NodeArgs) -> Result<i32> {
    let NodeCommand::Setup(args) = args.command;
    let params = NodeParams {
        root: args.root,
        cpus: args.cpus,
        memory_mib: args.memory,
        hugepage_size: args.hugepage_size,
        check: args.check,
    };
    let mut steps: Vec<Step> = Vec::new();
    let json = args.json;
    setup(&params, &mut |step| {
        if !json {
            println!(
                "{:<8} {:<18} {}",
                step.status.as_str(),
                step.step,
                step.detail
            );
        }
        steps.push(step.clone());
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&steps)?);
    }
    let missing = steps.iter().any(|s| s.status == Status::Missing);
    Ok(if missing { EXIT_ERROR } else { EXIT_OK })
}
