//! The engine API (`enclave-engine daemon`) as a client uses it: curl over the Unix socket,
//! real QEMU microvms.
//! - run through the API, then list, inspect, logs, events (server-sent), metrics (promtool),
//!   system info; the daemonless `enclave-ctl ps` sees the same enclave;
//! - the daemon killed with SIGKILL and started again: the enclave kept running, the answers
//!   are the same;
//! - 100 concurrent clients listing and inspecting, one request after another, while the
//!   enclave is stopped, started, stopped and removed: only 200s and, once it is gone, 404s;
//! - bad input (unknown fields, routes, methods, enclaves, query values) is a 4xx with a code;
//! - every route answered is in docs/api/openapi.yaml with the status it gave, and the
//!   document lists no other path.
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

#[path = "cli_daemon/bad_input.rs"]
mod bad_input;
#[path = "cli_daemon/crowd.rs"]
mod crowd;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::enclaves::{busybox_eif, curl_unix_text, Env};
use common::net::until;
use common::{assert_ok, have, require, run, stdout};
use serde_json::{json, Value};

/// The routes answered and their statuses, to hold against the OpenAPI document.
type Seen = Arc<Mutex<BTreeSet<(String, String, u16)>>>;

/// A client: curl on the socket.
struct Client {
    socket: PathBuf,
    seen: Seen,
}

impl Client {
    /// `METHOD path` (with a JSON body); (status, body). `route` names the documented path.
    fn call(&self, method: &str, path: &str, route: &str, body: Option<&Value>) -> (u16, String) {
        let (code, text) = curl_unix_text(&self.socket, method, path, &[], body);
        self.seen
            .lock()
            .unwrap()
            .insert((route.to_owned(), method.to_lowercase(), code));
        (code, text)
    }

    fn json(&self, method: &str, path: &str, route: &str, body: Option<&Value>) -> (u16, Value) {
        let (code, text) = self.call(method, path, route, body);
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn build(init: &Path, dir: &Path) -> PathBuf {
    busybox_eif(
        init,
        dir,
        "d",
        &["sh", "sleep"],
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"echo up; while true; do sleep 1; done\"]\n",
    )
}

#[test]
fn the_api_runs_lists_streams_survives_a_kill_and_matches_its_openapi_document() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let Some(()) = require(have("curl") && have("promtool"), "curl and promtool") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let eif = build(&init, tmp.path());
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["d"],
    };
    // The state directory exists (0700) before the daemon opens it, as enclave-ctl makes it.
    env.ok(&["ps"]);
    let daemon = env.start_daemon();
    let seen: Seen = Arc::default();
    let c = Client {
        socket: env.state.join("engine.sock"),
        seen: seen.clone(),
    };

    // Run through the API: answered once it runs.
    let run_req =
        json!({"eif": eif, "name": "d", "cpus": 1, "memory_mib": 128, "boot_timeout_secs": 90});
    let (code, rec) = c.json("POST", "/v1/enclaves", "/v1/enclaves", Some(&run_req));
    assert_eq!(code, 201, "{rec}");
    assert_eq!(rec["status"], "running");
    let id = rec["id"].as_str().unwrap().to_owned();
    // The daemonless CLI sees the same enclave.
    assert_eq!(env.inspect("d")["id"], id.as_str());
    let (code, same) = c.json("POST", "/v1/enclaves", "/v1/enclaves", Some(&run_req));
    assert_eq!((code, same["code"].as_str()), (409, Some("name_in_use")));

    let (code, list) = c.json("GET", "/v1/enclaves?status=running", "/v1/enclaves", None);
    assert_eq!(code, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (code, one) = c.json(
        "GET",
        &format!("/v1/enclaves/{}", &id[..8]),
        "/v1/enclaves/{enclave}",
        None,
    );
    assert_eq!((code, one["name"].as_str()), (200, Some("d")));
    until(
        "the main service's line in the logs",
        Duration::from_secs(30),
        String::new,
        || {
            let (code, text) = c.call(
                "GET",
                "/v1/enclaves/d/logs?tail=50",
                "/v1/enclaves/{enclave}/logs",
                None,
            );
            (code != 200 || !text.lines().any(|l| l.contains(r#""text":"up""#))).then_some(text)
        },
    );
    let (code, events) = c.call(
        "GET",
        "/v1/events?since=1h&until=0s&enclave=d",
        "/v1/events",
        None,
    );
    assert_eq!(code, 200);
    let kinds: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        // The supervisor's look at the services (every 2 s) may fall anywhere after the boot.
        .filter(|k| !k.starts_with("service_"))
        .collect();
    assert_eq!(kinds, ["create", "boot", "heartbeat"], "{events}");
    let data: Value = serde_json::from_str(
        events
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["id"], id.as_str());
    let (code, info) = c.json("GET", "/v1/system/info", "/v1/system/info", None);
    assert_eq!(code, 200);
    assert_eq!(
        (info["active"].as_u64(), info["cpus_reserved"].as_u64()),
        (Some(1), Some(1))
    );
    // The supervisor's own families too, from the snapshot it rewrites every 2 s.
    until(
        "the supervisor's families in the daemon's metrics",
        Duration::from_secs(20),
        String::new,
        || {
            let (_, text) = c.call("GET", "/metrics", "/metrics", None);
            (!text.contains(r#"enclave_engine_boot_duration_seconds_count{enclave="d"} 1"#)
                || !text.contains(r#"enclave_engine_heartbeat_age_seconds{enclave="d"}"#))
            .then_some(text)
        },
    );
    let (code, metrics) = c.call("GET", "/metrics", "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("enclave_engine_enclaves{state=\"running\"} 1"),
        "{metrics}"
    );
    assert_ok(&common::promtool_check(&metrics));

    // A document through the API, verified as any other: the emulation root, the record's
    // PCR0, the nonce asked for.
    let nonce = "00112233445566778899aabbccddeeff";
    let doc = tmp.path().join("doc.cbor");
    let o = run(Command::new("curl")
        .args(["-s", "-f", "-X", "POST", "-o"])
        .arg(&doc)
        .arg("--unix-socket")
        .arg(&c.socket)
        .arg(format!(
            "http://localhost/v1/enclaves/d/attest?nonce={nonce}"
        )));
    assert_ok(&o);
    c.seen
        .lock()
        .unwrap()
        .insert(("/v1/enclaves/{enclave}/attest".into(), "post".into(), 200));
    let inspected = env.inspect("d");
    let root_pem = inspected["emulation_root"].as_str().unwrap();
    let pcr0 = format!("0={}", inspected["measurements"]["PCR0"].as_str().unwrap());
    let doc_s = doc.to_str().unwrap();
    env.ok(&[
        "verify",
        doc_s,
        "--trust-root",
        root_pem,
        "--nonce",
        nonce,
        "--pcr",
        &pcr0,
    ]);
    // The same document through /v1/verify: verified with the right PCR0, not with another.
    let verify = |query: &str| {
        let o = run(Command::new("curl")
            .args(["-s", "-X", "POST", "--data-binary"])
            .arg(format!("@{doc_s}"))
            .args([
                "-H",
                "content-type: application/octet-stream",
                "--unix-socket",
            ])
            .arg(&c.socket)
            .arg(format!("http://localhost/v1/verify?{query}")));
        assert_ok(&o);
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let pcr0_hex = &pcr0[2..];
    let good = verify(&format!(
        "pcr0={pcr0_hex}&nonce={nonce}&trust_root=emulation"
    ));
    assert_eq!(good["verified"], true, "{good}");
    assert_eq!(good["report"]["pcrs"]["0"], pcr0_hex);
    let wrong = verify(&format!("pcr0={}&trust_root=emulation", "ab".repeat(48)));
    assert_eq!(wrong["verified"], false, "{wrong}");
    let aws = verify(&format!("pcr0={pcr0_hex}"));
    assert_eq!(
        aws["verified"], false,
        "the emulation root is not AWS's: {aws}"
    );
    let nothing = verify("trust_root=emulation");
    assert_eq!(nothing["verified"], false, "{nothing}");
    c.seen
        .lock()
        .unwrap()
        .insert(("/v1/verify".into(), "post".into(), 200));
    let (code, err) = c.json(
        "POST",
        "/v1/enclaves/d/attest?nonce=zz",
        "/v1/enclaves/{enclave}/attest",
        None,
    );
    assert_eq!((code, err["code"].as_str()), (400, Some("bad_request")));

    // enclave-ctl through the daemon prints what it prints without it.
    let host = env.host();
    for args in [
        &["ps", "-a", "--format", "json"][..],
        &["ps", "--format", "{{.ID}} {{.Name}} {{.State}} {{.Ports}}"],
        &["inspect", "d"],
        &["logs", "--tail", "3", "d"],
        &["events", "--since", "1h", "--until", "0s"],
        &[
            "events",
            "--since",
            "1h",
            "--until",
            "0s",
            "--json",
            "-f",
            "type=boot",
        ],
        &["rm", "nope"],
        &["stop", "nope"],
        &["inspect", "nope"],
    ] {
        let local = run(env.ctl().args(args));
        let remote = run(env.ctl().args(["--host", &host]).args(args));
        assert_eq!(
            (local.status.code(), stdout(&local), common::stderr(&local)),
            (
                remote.status.code(),
                stdout(&remote),
                common::stderr(&remote)
            ),
            "{args:?}"
        );
    }
    // Commands that do not go through the API yet say so; a bad address is a usage error.
    let o = run(env.ctl().args(["--host", &host, "console", "d"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(common::stderr(&o).contains("`console` does not go through the engine API yet"));
    let o = run(env.ctl().args(["--host", "tcp://127.0.0.1:2375", "ps"]));
    assert_eq!(o.status.code(), Some(2));
    let o = run(env
        .ctl()
        .env("ENCLAVE_ENGINE_HOST", "unix:///nonexistent.sock")
        .arg("ps"));
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("is `enclave-engine daemon` running?"));

    // SIGKILL and a new daemon: nothing lost, the enclave untouched.
    drop(daemon);
    let o = run(env.ctl().args(["health", "--live", "d"]));
    assert_ok(&o);
    let daemon = env.start_daemon();
    let (code, again) = c.json("GET", "/v1/enclaves", "/v1/enclaves", None);
    assert_eq!(code, 200);
    assert_eq!(again, list);

    // Bad input, then a crowd of clients through the enclave's end (each in its own file).
    bad_input::answers_4xx_with_a_code(&c);
    crowd::every_answer_whole_while_the_enclave_stops_starts_and_goes(&c);
    let (code, _) = c.json("GET", "/v1/enclaves/d", "/v1/enclaves/{enclave}", None);
    assert_eq!(code, 404);
    let (code, doc) = c.json("GET", "/v1/openapi.json", "/v1/openapi.json", None);
    assert_eq!(code, 200);
    drop(daemon);

    // Every route answered is documented with the status it gave; no path is undocumented.
    let paths = doc["paths"].as_object().unwrap();
    let mut answered = BTreeSet::new();
    for (route, method, code) in seen.lock().unwrap().iter().filter(|(r, ..)| r != "-") {
        let op = &paths
            .get(route)
            .unwrap_or_else(|| panic!("{route} is not in openapi.yaml"))[method];
        assert!(
            op["responses"].get(code.to_string()).is_some(),
            "{method} {route}: {code} is not documented"
        );
        answered.insert(route.clone());
    }
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    assert_eq!(answered, documented);
}
