//! `enclave-ctl health`: is the enclave alive, and is it ready? For Kubernetes probes (exec
//! probes: no network listener needed) and scripts. Exit 0 when it is, 1 when it is not (the
//! reason on stderr, or in `--json`).
//!
//! Alive: the record says running, its supervisor holds its lock, and the enclave answers a
//! ping on its control channel. Ready: also every service the enclave still runs is ready (its
//! readiness check passed) and the spec's health check, run inside by enclave-init, is healthy
//! (or there is none).

use anyhow::{bail, Context, Result};
use enclave_engine::health;
use enclave_engine::state::{EnclaveRecord, StateRoot, Status};
use enclave_proto::wire::HealthReport;
use serde::Serialize;

use super::exec::connect;
use crate::cli::{HealthArgs, EXIT_ERROR, EXIT_OK};
use crate::remote::Remote;

/// What `health` found.
#[derive(Debug, Serialize)]
struct Findings {
    enclave: String,
    live: bool,
    /// `None` with `--live` (not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    ready: Option<bool>,
    /// Services not ready, as `name (state)`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    not_ready: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<HealthReport>,
    /// Why it is not live or not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The enclave asked about, as its record says.
struct Subject {
    name: String,
    id: String,
    /// Why the record says it cannot be live (not running, or its supervisor is gone).
    down: Option<String>,
}

impl Subject {
    fn local(root: &StateRoot, name: Option<&str>) -> Result<Subject> {
        let rec = pick(root, name)?;
        let down = if rec.status != Status::Running {
            Some(format!("it is {}", rec.status))
        } else if !root.supervisor_alive(&rec.id) {
            Some("its supervisor is gone".into())
        } else {
            None
        };
        Ok(Subject {
            name: rec.name,
            id: rec.id,
            down,
        })
    }

    /// Through the engine API, whose records already read a dead supervisor's as failed.
    fn remote(api: &Remote, name: Option<&str>) -> Result<Subject> {
        let rec = match name {
            Some(name) => api.record(name, "")?,
            None => {
                let active = api.json("/v1/enclaves?status=running")?;
                match active.as_array().map(Vec::as_slice) {
                    Some([one]) => one.clone(),
                    Some([]) | None => {
                        bail!("no enclave is running there (name one: enclave-ctl health NAME)")
                    }
                    Some(many) => bail!(
                        "{} enclaves run there: name one (enclave-ctl health NAME)",
                        many.len()
                    ),
                }
            }
        };
        let text = |k: &str| rec[k].as_str().unwrap_or_default().to_owned();
        let status = text("status");
        Ok(Subject {
            name: text("name"),
            id: text("id"),
            down: (status != "running").then(|| format!("it is {status}")),
        })
    }
}

/// The enclave named, or the only active one.
fn pick(root: &StateRoot, name: Option<&str>) -> Result<EnclaveRecord> {
    if let Some(name) = name {
        return root
            .resolve(name)
            .with_context(|| format!("no enclave {name:?}"));
    }
    let active: Vec<EnclaveRecord> = root
        .list()?
        .into_iter()
        .filter(|r| r.status.is_active())
        .collect();
    match active.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no enclave is running here (name one: enclave-ctl health NAME)"),
        many => bail!(
            "{} enclaves run here: name one (enclave-ctl health NAME)",
            many.len()
        ),
    }
}

/// Runs the command; returns the exit status.
pub fn run(args: HealthArgs, api: Option<&Remote>) -> Result<i32> {
    let rec = match api {
        Some(api) => Subject::remote(api, args.enclave.as_deref())?,
        None => {
            let root = super::state_dir::open(&args.control.state)?;
            Subject::local(&root, args.enclave.as_deref())?
        }
    };
    let mut f = Findings {
        enclave: rec.name.clone(),
        live: false,
        ready: None,
        not_ready: Vec::new(),
        health: None,
        reason: None,
    };
    f.reason = check(&rec, &args, api, &mut f)
        .err()
        .map(|e| format!("{e:#}"));
    let ok = f.live && f.ready.unwrap_or(true) && f.reason.is_none();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
    } else if ok {
        println!("{}: {}", rec.name, if args.live { "live" } else { "ready" });
    } else {
        eprintln!(
            "{}: not {}: {}",
            rec.name,
            if f.live { "ready" } else { "live" },
            f.reason.as_deref().unwrap_or("")
        );
    }
    Ok(if ok { EXIT_OK } else { EXIT_ERROR })
}

/// Fills `f`; an error is the reason the enclave is not live or not ready.
fn check(rec: &Subject, args: &HealthArgs, api: Option<&Remote>, f: &mut Findings) -> Result<()> {
    if let Some(why) = &rec.down {
        bail!("{why}");
    }
    let mut client = connect(&rec.id, &args.control, &[], api)?;
    client
        .ping(1)
        .context("it does not answer on its control channel")?;
    f.live = true;
    if args.live {
        return Ok(());
    }
    f.ready = Some(false);
    // The supervisor's monitor asks the same questions (enclave_engine::health).
    let readiness = health::ask(&mut client).context(
        "asking its services and health check (an image built before `health` existed cannot say)",
    )?;
    f.not_ready.clone_from(&readiness.not_ready);
    f.health = Some(readiness.health.clone());
    if let Some(reason) = readiness.reason() {
        bail!("{reason}");
    }
    f.ready = Some(true);
    Ok(())
}
