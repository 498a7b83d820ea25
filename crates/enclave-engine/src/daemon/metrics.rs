//! `GET /metrics` of the engine daemon: its own families (enclaves by state, the CPUs and memory
//! active enclaves hold, restarts of every enclave), then the per-enclave families of every
//! enclave whose supervisor runs, from the snapshot each supervisor rewrites every 2 s
//! ([`crate::metrics::SNAPSHOT_FILE`]). The text format wants a family's samples together under
//! one `# HELP` and `# TYPE`, so the snapshots are merged family by family.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::error::Result;
use crate::metrics::{escape, SNAPSHOT_FILE, STATES};
use crate::state::{EnclaveRecord, StateRoot};

/// The daemon's own families, which the snapshots' copies must not repeat.
const OWN: [&str; 1] = ["enclave_engine_restarts_total"];

/// The whole text.
pub fn render(root: &StateRoot) -> Result<String> {
    let records = root.list()?;
    let mut out = String::new();
    own_families(&mut out, &records);
    let mut merged = Families::default();
    for rec in records
        .iter()
        .filter(|r| r.status.is_active() && root.supervisor_alive(&r.id))
    {
        if let Ok(text) = std::fs::read_to_string(root.dir(&rec.id).join(SNAPSHOT_FILE)) {
            merged.add(&text);
        }
    }
    merged.write(&mut out, &OWN);
    Ok(out)
}

fn own_families(out: &mut String, records: &[EnclaveRecord]) {
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    family(
        out,
        "enclave_engine_enclaves",
        "gauge",
        "Enclaves in the state directory, by state.",
    );
    for state in STATES {
        let n = records.iter().filter(|r| r.status == state).count();
        let _ = writeln!(out, "enclave_engine_enclaves{{state=\"{state}\"}} {n}");
    }
    let active: Vec<&EnclaveRecord> = records.iter().filter(|r| r.status.is_active()).collect();
    family(
        out,
        "enclave_engine_cpus_reserved",
        "gauge",
        "vCPUs held by active enclaves.",
    );
    let cpus: u64 = active.iter().map(|r| u64::from(r.cpus)).sum();
    let _ = writeln!(out, "enclave_engine_cpus_reserved {cpus}");
    family(
        out,
        "enclave_engine_memory_reserved_bytes",
        "gauge",
        "Memory held by active enclaves.",
    );
    let mem: u64 = active.iter().map(|r| r.memory_mib * 1024 * 1024).sum();
    let _ = writeln!(out, "enclave_engine_memory_reserved_bytes {mem}");
    family(
        out,
        OWN[0],
        "counter",
        "Boots again by the restart policy, by enclave.",
    );
    for r in records {
        let _ = writeln!(
            out,
            "enclave_engine_restarts_total{{enclave=\"{}\"}} {}",
            escape(&r.name),
            r.restarts
        );
    }
}

/// Families gathered from several texts, in the order first seen.
#[derive(Default)]
struct Families {
    order: Vec<String>,
    by_name: HashMap<String, Family>,
}

#[derive(Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<String>,
}

impl Families {
    /// The families of one text: a sample belongs to the family whose `# HELP` or `# TYPE`
    /// came last (a sample before any is dropped).
    fn add(&mut self, text: &str) {
        let mut current: Option<String> = None;
        for line in text.lines() {
            let meta = line
                .strip_prefix("# HELP ")
                .map(|rest| (true, rest))
                .or_else(|| line.strip_prefix("# TYPE ").map(|rest| (false, rest)));
            if let Some((help, rest)) = meta {
                let Some(name) = rest.split_whitespace().next() else {
                    continue;
                };
                let family = self.entry(name);
                let slot = if help {
                    &mut family.help
                } else {
                    &mut family.kind
                };
                slot.get_or_insert_with(|| line.to_owned());
                current = Some(name.to_owned());
            } else if !line.is_empty() && !line.starts_with('#') {
                if let Some(name) = &current {
                    self.entry(name).samples.push(line.to_owned());
                }
            }
        }
    }

    fn entry(&mut self, name: &str) -> &mut Family {
        if !self.by_name.contains_key(name) {
            self.order.push(name.to_owned());
        }
        self.by_name.entry(name.to_owned()).or_default()
    }

    /// Writes every family but those in `skip`.
    fn write(&self, out: &mut String, skip: &[&str]) {
        for name in self.order.iter().filter(|n| !skip.contains(&n.as_str())) {
            let family = &self.by_name[name];
            for line in [&family.help, &family.kind].into_iter().flatten() {
                let _ = writeln!(out, "{line}");
            }
            for sample in &family.samples {
                let _ = writeln!(out, "{sample}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_merge_family_by_family_without_the_daemon_s_own() {
        let a = "# HELP x_total Xs.\n# TYPE x_total counter\nx_total{enclave=\"a\"} 1\n\
                 # HELP enclave_engine_restarts_total R.\n# TYPE enclave_engine_restarts_total counter\n\
                 enclave_engine_restarts_total{enclave=\"a\"} 0\n\
                 # HELP g G.\n# TYPE g gauge\ng{enclave=\"a\"} 2\n";
        let b = "# HELP g G.\n# TYPE g gauge\ng{enclave=\"b\"} 3\n\
                 # HELP x_total Xs.\n# TYPE x_total counter\nx_total{enclave=\"b\"} 4\n";
        let mut f = Families::default();
        f.add(a);
        f.add(b);
        f.add("orphan 1\n# just a comment\n");
        let mut out = String::new();
        f.write(&mut out, &OWN);
        assert_eq!(
            out,
            "# HELP x_total Xs.\n# TYPE x_total counter\nx_total{enclave=\"a\"} 1\n\
             x_total{enclave=\"b\"} 4\n# HELP g G.\n# TYPE g gauge\ng{enclave=\"a\"} 2\n\
             g{enclave=\"b\"} 3\n"
        );
    }
}
