//! The supervisor's Prometheus metrics for its one enclave (`run --metrics-listen ADDR`,
//! `GET /metrics`), for pods that Prometheus scrapes directly: the enclave's state, restarts,
//! boot durations, the age of its last answer, its health check, the CPUs and memory it holds,
//! and per proxy rule the connections relayed and refused and the bytes moved.
//!
//! The text exposition format 0.0.4, written here: a dozen families of one enclave need no
//! registry, and every value is read at scrape time from what the supervisor already keeps
//! (its record, the health monitor's probe, the proxies' atomics). Labels are the enclave's
//! name and, for the proxies, the rule (one per published port, one for egress): bounded by
//! the measured spec, never per connection.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_proto::wire::HealthStatus;
use enclave_proxy::host::{ProxyStats, RuleCounts};

use crate::error::Result;
use crate::health::Probe;
use crate::local_http::Response;
use crate::state::{EnclaveRecord, Status};

/// The upper bounds of the boot-duration histogram's buckets, in seconds: a KVM boot takes
/// under a second, a TCG one a few, a Nitro one up to tens.
pub const BOOT_BUCKETS: [f64; 9] = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Every state, in the order the metrics list them.
pub const STATES: [Status; 7] = [
    Status::Created,
    Status::Starting,
    Status::Running,
    Status::Restarting,
    Status::Stopping,
    Status::Exited,
    Status::Failed,
];

const HEALTH: [HealthStatus; 4] = [
    HealthStatus::None,
    HealthStatus::Starting,
    HealthStatus::Healthy,
    HealthStatus::Unhealthy,
];

/// Boot durations observed so far, as a histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootHistogram {
    /// Boots at or under each of [`BOOT_BUCKETS`] (not cumulative).
    buckets: [u64; BOOT_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl BootHistogram {
    /// Records one boot.
    pub fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        if let Some(i) = BOOT_BUCKETS.iter().position(|&le| secs <= le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// What the metrics are read from, shared with the supervisor.
#[derive(Clone, Default)]
pub struct Sources {
    /// The record as last saved.
    pub record: Arc<Mutex<Option<EnclaveRecord>>>,
    /// Every boot's duration.
    pub boots: Arc<Mutex<BootHistogram>>,
    /// The health monitor's finding.
    pub probe: Arc<Mutex<Probe>>,
    /// The proxies' counters, once they run.
    pub proxies: Arc<Mutex<ProxyStats>>,
    /// Attestation documents the emulated NSM signed for this enclave, all boots.
    pub documents: Arc<std::sync::atomic::AtomicU64>,
}

impl Sources {
    /// The metrics now, in the text format.
    pub fn render(&self) -> String {
        let record = lock(&self.record).clone();
        let Some(rec) = record else {
            return String::new();
        };
        let boots = lock(&self.boots).clone();
        let probe = lock(&self.probe).clone();
        let rules: Vec<(String, RuleCounts)> = lock(&self.proxies)
            .rules
            .iter()
            .map(|(name, stats)| (name.clone(), stats.read()))
            .collect();
        let mut text = render(&rec, &boots, &probe, &rules, Instant::now());
        // Only an emulated NSM is the supervisor's to count; Nitro's is the hardware's.
        if rec.backend.attestation() == crate::backend::Attestation::Emulated {
            family(
                &mut text,
                "enclave_engine_attestation_documents_total",
                "counter",
                "Attestation documents the emulated NSM signed for the enclave (every boot).",
            );
            let _ = writeln!(
                text,
                "enclave_engine_attestation_documents_total{{enclave=\"{}\"}} {}",
                escape(&rec.name),
                self.documents.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        text
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The file in the enclave's directory where its supervisor keeps the metrics it would serve,
/// rewritten every [`SNAPSHOT_INTERVAL`]: the engine daemon's `/metrics` gathers them.
pub const SNAPSHOT_FILE: &str = "metrics.prom";
/// How often the snapshot is rewritten.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_secs(2);

/// The thread that rewrites the snapshot; stopped (and waited for) when dropped, so nothing
/// writes into the enclave's directory while `--rm` removes it.
pub struct Snapshots {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Rewrites `sources`' metrics to `path` every [`SNAPSHOT_INTERVAL`] on a thread of its own,
/// until the returned handle is dropped or a write fails.
pub fn keep_snapshot(sources: Sources, path: std::path::PathBuf) -> Snapshots {
    use std::sync::atomic::Ordering;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-snapshot".into())
        .spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                if crate::util::write_atomic(&path, sources.render().as_bytes()).is_err() {
                    return;
                }
                let until = Instant::now() + SNAPSHOT_INTERVAL;
                while Instant::now() < until && !flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
    let thread = spawned
        .map_err(|e| tracing::warn!("no metrics snapshot: {e}"))
        .ok();
    Snapshots { stop, thread }
}

impl Drop for Snapshots {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `GET /metrics` from `sources` on `addr` (anything else 404).
pub fn serve(addr: SocketAddr, sources: Sources) -> Result<SocketAddr> {
    crate::local_http::serve(addr, "--metrics-listen", move |path| match path {
        "/metrics" => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: sources.render(),
        },
        _ => Response::text("404 Not Found", "GET /metrics\n".into()),
    })
}

/// A label value, escaped as the format asks (backslash, double quote, newline).
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes a family's HELP and TYPE lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics of `rec` and what goes with it, at `now`.
pub fn render(
    rec: &EnclaveRecord,
    boots: &BootHistogram,
    probe: &Probe,
    rules: &[(String, RuleCounts)],
    now: Instant,
) -> String {
    let enclave = format!("enclave=\"{}\"", escape(&rec.name));
    let mut out = String::new();
    family(
        &mut out,
        "enclave_engine_enclave_state",
        "gauge",
        "1 for the state the enclave is in, 0 for the others.",
    );
    for state in STATES {
        let v = u8::from(rec.status == state);
        let _ = writeln!(
            out,
            "enclave_engine_enclave_state{{{enclave},state=\"{state}\"}} {v}"
        );
    }
    family(
        &mut out,
        "enclave_engine_restarts_total",
        "counter",
        "Boots again by the restart policy.",
    );
    let _ = writeln!(
        out,
        "enclave_engine_restarts_total{{{enclave}}} {}",
        rec.restarts
    );
    family(
        &mut out,
        "enclave_engine_boot_duration_seconds",
        "histogram",
        "From the launch to the boot heartbeat, for each boot that got one.",
    );
    let mut cumulative = 0;
    for (le, n) in BOOT_BUCKETS.iter().zip(boots.buckets) {
        cumulative += n;
        let _ = writeln!(
            out,
            "enclave_engine_boot_duration_seconds_bucket{{{enclave},le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "enclave_engine_boot_duration_seconds_bucket{{{enclave},le=\"+Inf\"}} {}",
        boots.count
    );
    let _ = writeln!(
        out,
        "enclave_engine_boot_duration_seconds_sum{{{enclave}}} {}",
        boots.sum
    );
    let _ = writeln!(
        out,
        "enclave_engine_boot_duration_seconds_count{{{enclave}}} {}",
        boots.count
    );
    if let Some(at) = probe.answered {
        family(
            &mut out,
            "enclave_engine_heartbeat_age_seconds",
            "gauge",
            "Seconds since the enclave last answered the supervisor on its control channel.",
        );
        let age = now.saturating_duration_since(at).as_secs_f64();
        let _ = writeln!(
            out,
            "enclave_engine_heartbeat_age_seconds{{{enclave}}} {age:.3}"
        );
    }
    if let Some((sessions, failures)) = probe.control {
        family(
            &mut out,
            "enclave_engine_control_sessions_total",
            "counter",
            "Connections the enclave's control server accepted since its boot (as it reports).",
        );
        let _ = writeln!(
            out,
            "enclave_engine_control_sessions_total{{{enclave}}} {sessions}"
        );
        family(
            &mut out,
            "enclave_engine_control_auth_failures_total",
            "counter",
            "Sessions the enclave refused for a key it does not accept, since its boot.",
        );
        let _ = writeln!(
            out,
            "enclave_engine_control_auth_failures_total{{{enclave}}} {failures}"
        );
    }
    if let Some(health) = &probe.health {
        family(
            &mut out,
            "enclave_engine_health_status",
            "gauge",
            "1 for the health check's status (none: the spec has no check), 0 for the others.",
        );
        for status in HEALTH {
            let v = u8::from(health.status == status);
            let _ = writeln!(
                out,
                "enclave_engine_health_status{{{enclave},status=\"{status}\"}} {v}"
            );
        }
        family(
            &mut out,
            "enclave_engine_health_failing_streak",
            "gauge",
            "Health checks failed in a row.",
        );
        let _ = writeln!(
            out,
            "enclave_engine_health_failing_streak{{{enclave}}} {}",
            health.failing_streak
        );
    }
    family(
        &mut out,
        "enclave_engine_cpus",
        "gauge",
        "vCPUs the enclave holds.",
    );
    let _ = writeln!(out, "enclave_engine_cpus{{{enclave}}} {}", rec.cpus);
    family(
        &mut out,
        "enclave_engine_memory_bytes",
        "gauge",
        "Memory the enclave holds.",
    );
    let _ = writeln!(
        out,
        "enclave_engine_memory_bytes{{{enclave}}} {}",
        rec.memory_mib * 1024 * 1024
    );
    if !rules.is_empty() {
        proxy_families(&mut out, &enclave, rules);
    }
    out
}

fn proxy_families(out: &mut String, enclave: &str, rules: &[(String, RuleCounts)]) {
    family(
        out,
        "enclave_engine_proxy_connections_total",
        "counter",
        "Connections relayed, by proxy rule (a published port, or egress).",
    );
    for (rule, c) in rules {
        let _ = writeln!(
            out,
            "enclave_engine_proxy_connections_total{{{enclave},rule=\"{}\"}} {}",
            escape(rule),
            c.opened
        );
    }
    family(
        out,
        "enclave_engine_proxy_refused_total",
        "counter",
        "Connections refused (by the enclave, the allow-list, or an unreachable destination), by proxy rule.",
    );
    for (rule, c) in rules {
        let _ = writeln!(
            out,
            "enclave_engine_proxy_refused_total{{{enclave},rule=\"{}\"}} {}",
            escape(rule),
            c.refused
        );
    }
    family(
        out,
        "enclave_engine_proxy_bytes_total",
        "counter",
        "Bytes into (in) and out of (out) the enclave, of closed connections, by proxy rule.",
    );
    for (rule, c) in rules {
        for (direction, v) in [("in", c.bytes_in), ("out", c.bytes_out)] {
            let _ = writeln!(
                out,
                "enclave_engine_proxy_bytes_total{{{enclave},rule=\"{}\",direction=\"{direction}\"}} {v}",
                escape(rule)
            );
        }
    }
}

#[cfg(test)]
mod tests;
