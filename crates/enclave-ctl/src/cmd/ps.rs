//! `enclave-ctl ps`: the enclaves, as a table or JSON.

use anyhow::Result;
use enclave_engine::state::EnclaveRecord;
use enclave_engine::util::parse_rfc3339;
use time::OffsetDateTime;

use crate::cli::{PsArgs, EXIT_OK};

fn ago(t: Option<&str>) -> String {
    let Some(t) = t.and_then(parse_rfc3339) else {
        return String::new();
    };
    let s = (OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// "running 5m", "exited 2m ago", "failed".
pub fn status_text(r: &EnclaveRecord) -> String {
    if r.status.is_active() {
        format!("{} {}", r.status, ago(r.started_at.as_deref()))
            .trim_end()
            .to_owned()
    } else {
        match r.finished_at.as_deref() {
            Some(t) => format!("{} {} ago", r.status, ago(Some(t))),
            None => r.status.to_string(),
        }
    }
}

/// Runs the command; returns the exit status.
pub fn run(args: PsArgs) -> Result<i32> {
    let root = super::run::state_root(&args.state)?;
    let all: Vec<EnclaveRecord> = root
        .list()?
        .into_iter()
        .filter(|r| args.all || r.status.is_active())
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(EXIT_OK);
    }
    println!(
        "{:<12}  {:<20}  {:<18}  {:<10}  {:>5}  {:>4}  {:>7}  {:>8}  {:<24}  EIF",
        "ID", "NAME", "STATUS", "BACKEND", "CID", "CPUS", "MEMORY", "RESTARTS", "PORTS"
    );
    for r in &all {
        let backend = match &r.instance.accel {
            Some(a) => format!("{}/{a}", r.backend),
            None => r.backend.to_string(),
        };
        let ports: Vec<String> = r.network.publish.iter().map(|p| p.to_string()).collect();
        println!(
            "{:<12}  {:<20}  {:<18}  {:<10}  {:>5}  {:>4}  {:>6}M  {:>8}  {:<24}  {}",
            r.short_id(),
            r.name,
            status_text(r),
            backend,
            r.cid,
            r.cpus,
            r.memory_mib,
            r.restarts,
            ports.join(", "),
            r.eif.display()
        );
    }
    Ok(EXIT_OK)
}
