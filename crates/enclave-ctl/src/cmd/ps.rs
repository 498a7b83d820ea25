//! `enclave-ctl ps`: the enclaves as a table, JSON, ids only (`-q`), or a template of field
//! names (`--format '{{.Name}} {{.Status}}'`, Docker's notation; the fields are in
//! [`PS_FIELDS`] and in `ps --help`).

use anyhow::{bail, Context, Result};
use enclave_engine::state::{EnclaveRecord, Status};
use enclave_engine::util::parse_rfc3339;
use time::OffsetDateTime;

use crate::cli::{PsArgs, EXIT_OK, PS_FIELDS};
use crate::remote::Remote;

/// "5 seconds", "1 minute", "3 hours", "2 days".
fn human(t: Option<&str>) -> Option<String> {
    let t = t.and_then(parse_rfc3339)?;
    let s = (OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86399 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    Some(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
}

/// "running 5 minutes", "exited (3) 2 minutes ago", "failed 10 seconds ago".
pub fn status_text(r: &EnclaveRecord) -> String {
    let status = match (r.status, r.exit_code) {
        (Status::Exited | Status::Failed, Some(code)) => format!("{} ({code})", r.status),
        _ => r.status.to_string(),
    };
    if r.status.is_active() {
        // As Docker's "Up 5 minutes (healthy)".
        let health = match &r.health {
            Some(h) if h.status != enclave_proto::wire::HealthStatus::None => {
                format!(" ({})", h.status)
            }
            _ => String::new(),
        };
        match human(r.started_at.as_deref()) {
            Some(d) => format!("{status} {d}{health}"),
            None => format!("{status}{health}"),
        }
    } else {
        match human(r.finished_at.as_deref()) {
            Some(d) => format!("{status} {d} ago"),
            None => status,
        }
    }
}

/// The value of field `name` of `r`; `None` for a name not in [`PS_FIELDS`].
fn field(r: &EnclaveRecord, name: &str) -> Option<String> {
    Some(match name {
        "ID" => r.short_id().to_owned(),
        "FullID" => r.id.clone(),
        "Name" => r.name.clone(),
        "Status" => status_text(r),
        "State" => r.status.to_string(),
        "Health" => r
            .health
            .as_ref()
            .map(|h| h.status.to_string())
            .unwrap_or_default(),
        "ExitCode" => r.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        "Backend" => match &r.instance.accel {
            Some(a) => format!("{}/{a}", r.backend),
            None => r.backend.to_string(),
        },
        "CID" => r.cid.to_string(),
        "CPUs" => r.cpus.to_string(),
        "Memory" => r.memory_mib.to_string(),
        "Restarts" => r.restarts.to_string(),
        "Ports" => {
            let ports: Vec<String> = r.network.publish.iter().map(|p| p.to_string()).collect();
            ports.join(", ")
        }
        "EIF" => r.eif.display().to_string(),
        "CreatedAt" => r.created.clone(),
        "FinishedAt" => r.finished_at.clone().unwrap_or_default(),
        _ => return None,
    })
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(String),
}

/// A `--format` template: text with `{{.Field}}` (spaces allowed inside the braces), `\t` and
/// `\n` written as escapes; a leading `table ` adds a header line of the field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    header: bool,
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `format`, refusing unknown fields and unclosed braces with what is allowed.
    pub fn parse(format: &str) -> Result<Self> {
        let (header, body) = match format.strip_prefix("table ") {
            Some(rest) => (true, rest),
            None => (false, format),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let known = || {
            PS_FIELDS
                .iter()
                .map(|(n, _)| format!("{{{{.{n}}}}}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut pieces = Vec::new();
        let mut rest = body.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                bail!("--format {format:?}: `{{{{` without `}}}}`");
            };
            let inner = after[..close].trim();
            let name = inner.strip_prefix('.').unwrap_or("");
            if PS_FIELDS.iter().all(|(n, _)| *n != name) {
                bail!(
                    "--format {format:?}: unknown field {{{{{inner}}}}}; the fields are: {}",
                    known()
                );
            }
            pieces.push(Piece::Field(name.to_owned()));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self { header, pieces })
    }

    fn render(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(f) => out.push_str(&value(f)),
            }
        }
        out
    }

    /// The header line (field names in capitals), when the template asked for one.
    pub fn header(&self) -> Option<String> {
        self.header.then(|| self.render(|f| f.to_ascii_uppercase()))
    }

    /// The line of `r`.
    pub fn line(&self, r: &EnclaveRecord) -> String {
        self.render(|f| field(r, f).unwrap_or_default())
    }
}

/// What `--format` asks for.
enum Output {
    Table,
    /// `--json`: one array.
    Json,
    /// `--format json`: one record a line.
    JsonLines,
    Template(Template),
}

/// Runs the command (through the engine API with `remote`); returns the exit status.
pub fn run(args: PsArgs, remote: Option<&Remote>) -> Result<i32> {
    let output = match args.format.as_deref() {
        _ if args.json => Output::Json,
        None | Some("table") => Output::Table,
        Some("json") => Output::JsonLines,
        Some(t) => Output::Template(Template::parse(t)?),
    };
    let all = match remote {
        Some(remote) => serde_json::from_value(remote.json("/v1/enclaves")?)
            .context("the engine API's list of enclaves")?,
        None => super::state_dir::open(&args.state)?.list()?,
    };
    let all: Vec<EnclaveRecord> = all
        .into_iter()
        .filter(|r: &EnclaveRecord| args.all || r.status.is_active())
        .collect();
    if args.quiet {
        for r in &all {
            println!("{}", r.short_id());
        }
        return Ok(EXIT_OK);
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&all)?),
        Output::JsonLines => {
            for r in &all {
                println!("{}", serde_json::to_string(r)?);
            }
        }
        Output::Template(t) => {
            if let Some(h) = t.header() {
                println!("{h}");
            }
            for r in &all {
                println!("{}", t.line(r));
            }
        }
        Output::Table => print_table(&all),
    }
    Ok(EXIT_OK)
}

fn print_table(all: &[EnclaveRecord]) {
    println!(
        "{:<12}  {:<20}  {:<28}  {:<10}  {:>5}  {:>4}  {:>7}  {:>8}  {:<24}  EIF",
        "ID", "NAME", "STATUS", "BACKEND", "CID", "CPUS", "MEMORY", "RESTARTS", "PORTS"
    );
    for r in all {
        let f = |name: &str| field(r, name).unwrap_or_default();
        println!(
            "{:<12}  {:<20}  {:<28}  {:<10}  {:>5}  {:>4}  {:>6}M  {:>8}  {:<24}  {}",
            f("ID"),
            f("Name"),
            f("Status"),
            f("Backend"),
            f("CID"),
            f("CPUs"),
            f("Memory"),
            f("Restarts"),
            f("Ports"),
            f("EIF"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_with_fields_escapes_and_headers() {
        let t = Template::parse("table {{.Name}}\\t{{ .ExitCode }}").unwrap();
        assert_eq!(t.header().as_deref(), Some("NAME\tEXITCODE"));
        let t = Template::parse("{{.ID}}: {{.Status}}").unwrap();
        assert_eq!(t.header(), None);
        assert_eq!(
            t.pieces,
            vec![
                Piece::Field("ID".into()),
                Piece::Text(": ".into()),
                Piece::Field("Status".into())
            ]
        );
    }

    #[test]
    fn bad_templates_name_the_problem() {
        let e = Template::parse("{{.Nope}}").unwrap_err().to_string();
        assert!(
            e.contains("unknown field {{.Nope}}") && e.contains("{{.Name}}"),
            "{e}"
        );
        let e = Template::parse("{{Name}}").unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = Template::parse("{{.Name").unwrap_err().to_string();
        assert!(e.contains("without"), "{e}");
    }

    #[test]
    fn every_documented_field_has_a_value() {
        let rec: EnclaveRecord = serde_json::from_value(serde_json::json!({
            "id": "ab".repeat(32), "name": "n", "created": "2026-01-01T00:00:00Z",
            "eif": "/x.eif", "backend": "qemu", "cpus": 1, "memory_mib": 512,
            "debug_mode": false, "restart": "no", "cid": 16, "status": "exited",
            "exit_code": 3, "finished_at": "2026-01-01T00:00:00Z", "measurements": {},
            "control_addr": ""
        }))
        .unwrap();
        for (name, _) in PS_FIELDS {
            assert!(field(&rec, name).is_some(), "{name}");
        }
        assert_eq!(field(&rec, "ExitCode").as_deref(), Some("3"));
        let status = status_text(&rec);
        assert!(
            status.starts_with("exited (3) ") && status.ends_with(" ago"),
            "{status}"
        );
    }
}
