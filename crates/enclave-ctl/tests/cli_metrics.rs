//! `run --metrics-listen` in a real QEMU microvm: the supervisor's `/metrics` follows the
//! enclave (running, one boot, its health check, connections and bytes through a published
//! port, the attestation documents its emulated NSM signed, its control sessions and refused
//! keys), `promtool check metrics` (Debian's prometheus package) accepts the text, and a real
//! Prometheus server on loopback scrapes it and answers a query for the running enclave.
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use std::path::Path;
use std::time::Duration;

use common::enclaves::Env;
use common::net::{free_port, http_get, until};
use common::{assert_ok, ctl, have, require, run, stdout};

fn build(init: &Path, dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "httpd"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::create_dir_all(dir.join("rootfs/www")).unwrap();
    std::fs::write(dir.join("rootfs/www/ok"), "fine\n").unwrap();
    std::fs::write(
        dir.join("m.yaml"),
        "from: dir:rootfs\nentrypoint: [/bin/httpd, -f, -p, \"8080\", -h, /www]\n\
         ingress:\n  - {port: 8080}\n\
         healthcheck:\n  http: {port: 8080, path: /ok}\n  interval: 500ms\n",
    )
    .unwrap();
    assert_ok(&run(ctl(init)
        .current_dir(dir)
        .args(["build", "--quiet", "-f", "m.yaml", "-o", "m.eif"])));
    dir.join("m.eif")
}

/// The value of the first sample named `series` (with its labels) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_supervisor_serves_metrics_that_promtool_accepts_and_prometheus_scrapes() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let Some(()) = require(
        have("promtool") && have("prometheus"),
        "promtool and prometheus (apt prometheus)",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let eif = build(&init, tmp.path());
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["m"],
    };
    let (web, metrics) = (free_port(), free_port());
    let publish = format!("127.0.0.1:{web}:8080");
    let listen = format!("127.0.0.1:{metrics}");
    env.run_detached("m", &eif, &["-p", &publish, "--metrics-listen", &listen]);
    env.wait_ready("m", Duration::from_secs(60));
    for _ in 0..2 {
        assert!(http_get(web, "/ok").ends_with("fine\n"));
    }

    let rule = format!("enclave=\"m\",rule=\"ingress 127.0.0.1:{web}->8080\"");
    let mut text = String::new();
    until(
        "the metrics count both connections",
        Duration::from_secs(20),
        String::new,
        || {
            text = http_get(metrics, "/metrics");
            let opened = sample(
                &text,
                &format!("enclave_engine_proxy_connections_total{{{rule}}}"),
            );
            let health = sample(
                &text,
                r#"enclave_engine_health_status{enclave="m",status="healthy"}"#,
            );
            (opened != Some(2.0) || health != Some(1.0)).then(|| text.clone())
        },
    );
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    let running = r#"enclave_engine_enclave_state{enclave="m",state="running"}"#;
    assert_eq!(sample(&body, running), Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body,
            r#"enclave_engine_boot_duration_seconds_count{enclave="m"}"#
        ),
        Some(1.0)
    );
    let out = format!("enclave_engine_proxy_bytes_total{{{rule},direction=\"out\"}}");
    let bytes_out = sample(&body, &out).unwrap();
    assert!(bytes_out >= 2.0 * "fine\n".len() as f64, "{body}");
    assert_eq!(
        sample(
            &body,
            &format!("enclave_engine_proxy_refused_total{{{rule}}}")
        ),
        Some(0.0)
    );
    let age = sample(
        &body,
        r#"enclave_engine_heartbeat_age_seconds{enclave="m"}"#,
    )
    .unwrap();
    assert!((0.0..10.0).contains(&age), "{body}");

    // Each document the emulated NSM signs counts: one more after one `attest`.
    let documents = |text: &str| {
        sample(
            text,
            r#"enclave_engine_attestation_documents_total{enclave="m"}"#,
        )
        .unwrap_or_else(|| panic!("no documents counter in {text}"))
    };
    let before = documents(&body);
    let doc = tmp.path().join("doc.cbor");
    env.ok(&["attest", "m", "-o", doc.to_str().unwrap()]);
    let after = documents(&http_get(metrics, "/metrics"));
    assert_eq!(after, before + 1.0);

    // The enclave's control server counts sessions and refused keys; the supervisor asks
    // every 2 s. A key the enclave does not accept is one failure.
    let stranger = tmp.path().join("stranger.key");
    std::fs::write(&stranger, "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").unwrap();
    let o = run(env
        .ctl()
        .args(["services", "--key", stranger.to_str().unwrap(), "m", "list"]));
    assert!(!o.status.success());
    let failures = r#"enclave_engine_control_auth_failures_total{enclave="m"}"#;
    until(
        "the refused key counted",
        Duration::from_secs(20),
        String::new,
        || {
            let text = http_get(metrics, "/metrics");
            (sample(&text, failures) != Some(1.0)).then_some(text)
        },
    );
    let text = http_get(metrics, "/metrics");
    let sessions = r#"enclave_engine_control_sessions_total{enclave="m"}"#;
    assert!(sample(&text, sessions).unwrap() >= 3.0, "{text}");

    // promtool, Prometheus' own checker (and linter), reads it from stdin.
    let checked = common::promtool_check(&body);
    assert_ok(&checked);
    assert!(checked.stdout.is_empty(), "{}", stdout(&checked));

    // A real Prometheus, on loopback, scraping every second.
    let (_prometheus, prom_port) = common::prometheus(
        tmp.path(),
        &format!(
            "  - job_name: enclave\n    static_configs: [{{targets: ['127.0.0.1:{metrics}']}}]\n"
        ),
    );
    common::prometheus_answers(
        tmp.path(),
        prom_port,
        "sum(enclave_engine_enclave_state%7Bstate%3D%22running%22%7D)",
        "1",
    );

    // The listener goes with the supervisor.
    env.ok(&["stop", "m"]);
    assert_eq!(http_get(metrics, "/metrics"), "no connection");
}
