use super::*;
use crate::health::HealthRecord;
use crate::state::tests::record;

fn value(text: &str, series: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .to_owned()
}

#[test]
fn state_is_one_hot_and_counters_are_read_from_the_record() {
    let mut rec = record("a".repeat(64).as_str(), "web");
    rec.status = Status::Running;
    rec.restarts = 3;
    rec.cpus = 2;
    rec.memory_mib = 512;
    let text = render(
        &rec,
        &BootHistogram::default(),
        &Probe::default(),
        &[],
        Instant::now(),
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_enclave_state{enclave="web",state="running"}"#
        ),
        "1"
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_enclave_state{enclave="web",state="exited"}"#
        ),
        "0"
    );
    let ones = text
        .lines()
        .filter(|l| l.starts_with("enclave_engine_enclave_state{") && l.ends_with(" 1"))
        .count();
    assert_eq!(ones, 1, "{text}");
    assert_eq!(
        value(&text, r#"enclave_engine_restarts_total{enclave="web"}"#),
        "3"
    );
    assert_eq!(value(&text, r#"enclave_engine_cpus{enclave="web"}"#), "2");
    assert_eq!(
        value(&text, r#"enclave_engine_memory_bytes{enclave="web"}"#),
        "536870912"
    );
    // Nothing asked yet, no proxies: those families are absent rather than zero.
    assert!(!text.contains("heartbeat_age") && !text.contains("health_status"));
    assert!(!text.contains("proxy_"));
}

#[test]
fn the_boot_histogram_is_cumulative() {
    let rec = record("b".repeat(64).as_str(), "web");
    let mut boots = BootHistogram::default();
    for ms in [300, 3_000, 3_500, 100_000] {
        boots.observe(Duration::from_millis(ms));
    }
    let text = render(&rec, &boots, &Probe::default(), &[], Instant::now());
    let bucket = |le: &str| {
        value(
            &text,
            &format!("enclave_engine_boot_duration_seconds_bucket{{enclave=\"web\",le=\"{le}\"}}"),
        )
    };
    assert_eq!(bucket("0.25"), "0");
    assert_eq!(bucket("0.5"), "1");
    assert_eq!(bucket("2"), "1");
    assert_eq!(bucket("4"), "3");
    assert_eq!(bucket("64"), "3");
    assert_eq!(bucket("+Inf"), "4");
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_boot_duration_seconds_count{enclave="web"}"#
        ),
        "4"
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_boot_duration_seconds_sum{enclave="web"}"#
        ),
        "106.8"
    );
}

#[test]
fn health_age_and_proxy_rules() {
    let rec = record("c".repeat(64).as_str(), "web");
    let now = Instant::now();
    let probe = Probe {
        live: true,
        reason: None,
        health: Some(HealthRecord {
            status: HealthStatus::Unhealthy,
            failing_streak: 4,
            last: Some("HTTP 500".into()),
            ready: false,
        }),
        answered: Some(now - Duration::from_millis(1500)),
        services: None,
        control: Some((7, 2)),
    };
    let rules = [
        (
            "ingress 127.0.0.1:8080->80".to_owned(),
            RuleCounts {
                opened: 5,
                refused: 1,
                bytes_in: 100,
                bytes_out: 2000,
            },
        ),
        ("egress".to_owned(), RuleCounts::default()),
    ];
    let text = render(&rec, &BootHistogram::default(), &probe, &rules, now);
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_heartbeat_age_seconds{enclave="web"}"#
        ),
        "1.500"
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_health_status{enclave="web",status="unhealthy"}"#
        ),
        "1"
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_control_sessions_total{enclave="web"}"#
        ),
        "7"
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_control_auth_failures_total{enclave="web"}"#
        ),
        "2"
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_health_status{enclave="web",status="healthy"}"#
        ),
        "0"
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_health_failing_streak{enclave="web"}"#
        ),
        "4"
    );
    let ingress = r#"enclave="web",rule="ingress 127.0.0.1:8080->80""#;
    assert_eq!(
        value(
            &text,
            &format!("enclave_engine_proxy_connections_total{{{ingress}}}")
        ),
        "5"
    );
    assert_eq!(
        value(
            &text,
            &format!("enclave_engine_proxy_refused_total{{{ingress}}}")
        ),
        "1"
    );
    assert_eq!(
        value(
            &text,
            &format!("enclave_engine_proxy_bytes_total{{{ingress},direction=\"out\"}}")
        ),
        "2000"
    );
    assert_eq!(
        value(
            &text,
            r#"enclave_engine_proxy_connections_total{enclave="web",rule="egress"}"#
        ),
        "0"
    );
    // Each family once, HELP before TYPE before its samples.
    for name in [
        "enclave_engine_proxy_bytes_total",
        "enclave_engine_health_status",
    ] {
        assert_eq!(
            text.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{text}"
        );
    }
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape("x\ny"), "x\\ny");
}

#[test]
fn serves_metrics_and_404_elsewhere() {
    use std::io::{Read, Write};
    let sources = Sources::default();
    *sources.record.lock().unwrap() = Some(record("d".repeat(64).as_str(), "web"));
    let addr = serve("127.0.0.1:0".parse().unwrap(), sources).unwrap();
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let r = get("/metrics");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
    assert!(r.contains("enclave_engine_enclave_state{enclave=\"web\",state=\"created\"} 1"));
    assert!(get("/livez").starts_with("HTTP/1.1 404"));
}
