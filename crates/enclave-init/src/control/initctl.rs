//! `initctl`: service control from inside the enclave, through [`super::LOCAL_SOCKET`].
//!
//! ```text
//! initctl ping | info | shutdown
//! initctl services [list] | status NAME | start NAME | stop NAME | restart NAME
//! initctl services logs [-f] [--tail N] NAME
//! ```
//!
//! The enclave-init binary runs as `initctl` when its name (argv[0]) is `initctl` or its first
//! argument is `initctl`. `ENCLAVE_INITCTL_SOCKET` overrides the socket path.

use std::io::Write;
use std::time::Duration;

use enclave_proto::client::{Client, ClientError, ConnectOptions};
use enclave_proto::transport::Addr;
use enclave_proto::wire::{Reply, ServiceRequest, ServiceStatus};

const USAGE: &str = "usage: initctl ping | info | shutdown\n       \
    initctl services [list] | status NAME | start NAME | stop NAME | restart NAME\n       \
    initctl services logs [-f] [--tail N] NAME";

/// Whether the program was invoked as initctl; returns its arguments.
pub fn invoked_as(args: &[String]) -> Option<Vec<String>> {
    let name = args.first()?.rsplit('/').next()?;
    if name == "initctl" {
        return Some(args[1..].to_vec());
    }
    (args.get(1).map(String::as_str) == Some("initctl")).then(|| args[2..].to_vec())
}

/// A table of service statuses, as `initctl services` and `enclave-ctl services` print it.
pub fn format_services(services: &[ServiceStatus]) -> String {
    let mut out = format!(
        "{:<20} {:<9} {:>7} {:>8}  LAST EXIT\n",
        "NAME", "STATE", "PID", "RESTARTS"
    );
    for s in services {
        let state = serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        let exit = match s.last_exit {
            Some(enclave_proto::wire::ExitStatus::Code(c)) => format!("exit code {c}"),
            Some(enclave_proto::wire::ExitStatus::Signal(n)) => format!("signal {n}"),
            None => "-".into(),
        };
        out.push_str(&format!(
            "{:<20} {:<9} {:>7} {:>8}  {exit}\n",
            s.name, state, pid, s.restarts
        ));
    }
    out
}

/// Runs initctl; returns the exit status.
pub fn main(args: Vec<String>) -> i32 {
    match run(&args) {
        Ok(()) => 0,
        Err(Usage) => {
            eprintln!("{USAGE}");
            2
        }
    }
}

struct Usage;

fn run(args: &[String]) -> Result<(), Usage> {
    let path =
        std::env::var("ENCLAVE_INITCTL_SOCKET").unwrap_or_else(|_| super::LOCAL_SOCKET.into());
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    if !is_known(&words) {
        return Err(Usage);
    }
    let opts = ConnectOptions {
        client: format!("initctl {}", crate::VERSION),
        retry: Duration::from_secs(2),
        ..ConnectOptions::default()
    };
    let result = (|| -> Result<(), ClientError> {
        let mut client = Client::connect(&Addr::Unix(path.into()), &opts)?;
        let name = |i: usize| words.get(i).map(|s| s.to_string());
        let svc = |req: Option<ServiceRequest>| req.ok_or(ClientError::Closed);
        match words.as_slice() {
            ["ping"] => println!("pong {}", client.ping(1)?),
            ["info"] => {
                if let Reply::Info {
                    enclave,
                    version,
                    capabilities,
                    ..
                } = client.info()?
                {
                    println!(
                        "{} (protocol {version}), up {} ms, capabilities {capabilities:?}",
                        enclave.server, enclave.uptime_ms
                    );
                }
            }
            ["shutdown"] => client.shutdown()?,
            ["services"] | ["services", "list"] => {
                if let Reply::Services { services } = client.service(ServiceRequest::List)? {
                    print!("{}", format_services(&services));
                }
            }
            ["services", "status", _] => {
                let req = ServiceRequest::Status {
                    name: name(2).unwrap_or_default(),
                };
                if let Reply::Service { status } = client.service(req)? {
                    print!("{}", format_services(&[status]));
                }
            }
            ["services", op @ ("start" | "stop" | "restart"), _] => {
                let name = name(2).unwrap_or_default();
                let req = match *op {
                    "start" => ServiceRequest::Start { name },
                    "stop" => ServiceRequest::Stop { name },
                    _ => ServiceRequest::Restart { name },
                };
                client.service(req)?;
            }
            ["services", "logs", rest @ ..] => {
                let req = svc(parse_logs(rest))?;
                client.logs(req, |_, data| {
                    let mut out = std::io::stdout().lock();
                    out.write_all(data)?;
                    out.flush()
                })?;
            }
            _ => return Err(ClientError::Closed),
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(()),
        Err(e) => {
            eprintln!("initctl: {e}");
            std::process::exit(1)
        }
    }
}

fn is_known(words: &[&str]) -> bool {
    matches!(
        words,
        ["ping" | "info" | "shutdown"]
            | ["services"]
            | ["services", "list"]
            | ["services", "status" | "start" | "stop" | "restart", _]
    ) || (words.len() > 2
        && words[..2] == ["services", "logs"]
        && parse_logs(&words[2..]).is_some())
}

fn parse_logs(rest: &[&str]) -> Option<ServiceRequest> {
    let (mut follow, mut tail, mut name) = (false, None, None);
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        match *w {
            "-f" | "--follow" => follow = true,
            "--tail" => tail = Some(it.next()?.parse().ok()?),
            n if !n.starts_with('-') && name.is_none() => name = Some(n.to_owned()),
            _ => return None,
        }
    }
    Some(ServiceRequest::Logs {
        name: name?,
        follow,
        tail,
        since: None,
    })
}
