//! `enclave-ctl services`: list, status, start, stop, restart, logs of an enclave's services.

use std::io::Write;

use anyhow::{Context, Result};
use enclave_proto::wire::{Channel, ExitStatus, Reply, ServiceRequest, ServiceStatus};

use super::exec::connect;
use crate::cli::{ServiceAction, ServicesArgs};

fn table(services: &[ServiceStatus]) -> String {
    let mut out = format!(
        "{:<20} {:<9} {:>7} {:>8}  LAST EXIT\n",
        "NAME", "STATE", "PID", "RESTARTS"
    );
    for s in services {
        let state = serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let pid = s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
        let mut exit = match s.last_exit {
            Some(ExitStatus::Code(c)) => format!("exit code {c}"),
            Some(ExitStatus::Signal(n)) => format!("signal {n}"),
            None => "-".into(),
        };
        match s.oom_kills {
            0 => {}
            1 => exit.push_str(" (1 OOM kill since boot)"),
            n => exit.push_str(&format!(" ({n} OOM kills since boot)")),
        }
        out.push_str(&format!(
            "{:<20} {:<9} {:>7} {:>8}  {exit}\n",
            s.name, state, pid, s.restarts
        ));
    }
    out
}

/// Runs the command.
pub fn run(args: ServicesArgs, remote: Option<&crate::remote::Remote>) -> Result<i32> {
    let mut client = connect(&args.enclave, &args.control, &[], remote)?;
    let action = args.action.unwrap_or(ServiceAction::List);
    let request = match action.clone() {
        ServiceAction::List => ServiceRequest::List,
        ServiceAction::Status { name } => ServiceRequest::Status { name },
        ServiceAction::Start { name } => ServiceRequest::Start { name },
        ServiceAction::Stop { name } => ServiceRequest::Stop { name },
        ServiceAction::Restart { name } => ServiceRequest::Restart { name },
        ServiceAction::Logs { follow, tail, name } => {
            let req = ServiceRequest::Logs {
                name,
                follow,
                tail,
                since: None,
            };
            client
                .logs(req, |channel, data| {
                    if channel == Channel::Stderr {
                        let mut err = std::io::stderr().lock();
                        err.write_all(data)?;
                        err.flush()
                    } else {
                        let mut out = std::io::stdout().lock();
                        out.write_all(data)?;
                        out.flush()
                    }
                })
                .context("logs")?;
            return Ok(0);
        }
    };
    match client
        .service(request)
        .with_context(|| format!("services {action:?}"))?
    {
        Reply::Services { services } => print!("{}", table(&services)),
        Reply::Service { status } => print!("{}", table(&[status])),
        _ => {}
    }
    Ok(0)
}
