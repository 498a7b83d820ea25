//! Images through the engine API, with curl on the daemon's socket: `POST /v1/images` builds
//! the same bytes `enclave-ctl build` does from the same spec (reproducible), the list and the
//! inspect show it, a changed EIF shows as changed, `POST /v1/images/measure` answers what
//! `enclave-ctl measure --json` prints, the built image runs through `POST /v1/enclaves`; bad
//! requests (relative paths, missing or malformed specs, a source that fails, a corrupt EIF)
//! are 4xx with a code and leave nothing in the images directory.
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use std::path::Path;

use common::enclaves::{curl_unix, Env};
use common::{assert_ok, ctl, run, stdout};
use serde_json::{json, Value};

/// curl on the daemon's socket.
fn call(env: &Env, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    curl_unix(&env.state.join("engine.sock"), method, path, &[], body)
}

fn rootfs(dir: &Path) {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(
        dir.join("img.yaml"),
        "from: dir:rootfs\nentrypoint: [/bin/sh, -c, \"while true; do sleep 1; done\"]\n",
    )
    .unwrap();
}

/// The images directory's entries.
fn image_files(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.state.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_api_builds_lists_inspects_and_measures_what_the_cli_would() {
    let Some((engine, init)) = common::vm_prerequisites() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    rootfs(tmp.path());
    let env = Env {
        state: tmp.path().join("state"),
        engine,
        names: &["img"],
    };
    let _daemon = env.start_daemon();
    let spec = tmp.path().join("img.yaml");

    // The API's build and the CLI's: the same bytes.
    let (code, rec) = call(
        &env,
        "POST",
        "/v1/images",
        Some(&json!({"spec": spec, "name": "img"})),
    );
    assert_eq!(code, 201, "{rec}");
    let cli_eif = tmp.path().join("cli.eif");
    assert_ok(&run(ctl(&init)
        .args(["build", "--quiet", "--name", "img", "-f"])
        .arg(&spec)
        .arg("-o")
        .arg(&cli_eif)));
    let api_eif = Path::new(rec["eif"].as_str().unwrap()).to_path_buf();
    assert_eq!(
        std::fs::read(&api_eif).unwrap(),
        std::fs::read(&cli_eif).unwrap()
    );
    let id = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(api_eif, env.state.join(format!("images/{id}.eif")));
    let measured: Value = serde_json::from_str(&stdout(&run(ctl(&init)
        .args(["measure", "--json"])
        .arg(&cli_eif))))
    .unwrap();
    for pcr in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(rec["measurements"][pcr], measured["Measurements"][pcr]);
    }
    let (code, measure) = call(
        &env,
        "POST",
        "/v1/images/measure",
        Some(&json!({ "eif": cli_eif })),
    );
    assert_eq!((code, &measure), (200, &measured));

    // Listed; inspected by a prefix, unchanged until the file changes.
    let (code, list) = call(&env, "GET", "/v1/images", None);
    assert_eq!(code, 200);
    assert_eq!(list, json!([rec.clone()]));
    let (code, seen) = call(&env, "GET", &format!("/v1/images/{}", &id[..12]), None);
    assert_eq!(code, 200);
    assert_eq!(seen["unchanged"], true);
    assert_eq!(seen["measured_now"], rec["measurements"]);

    // It runs.
    let (code, enclave) = call(
        &env,
        "POST",
        "/v1/enclaves",
        Some(&json!({"eif": api_eif, "name": "img", "memory_mib": 128, "boot_timeout_secs": 90})),
    );
    assert_eq!(code, 201, "{enclave}");
    assert_eq!(enclave["status"], "running");
    assert_eq!(enclave["measurements"]["PCR0"], rec["measurements"]["PCR0"]);
    let (code, _) = call(&env, "DELETE", "/v1/enclaves/img?force=true", None);
    assert_eq!(code, 204);

    // The EIF replaced on disk: inspect says so.
    std::fs::copy(&init, &api_eif).unwrap();
    let (code, seen) = call(&env, "GET", &format!("/v1/images/{id}"), None);
    assert_eq!(code, 200);
    assert_eq!(seen["unchanged"], false);
    assert_eq!(seen["measured_now"], Value::Null);
    let (code, err) = call(
        &env,
        "POST",
        "/v1/images/measure",
        Some(&json!({ "eif": api_eif })),
    );
    assert_eq!(
        (code, err["code"].as_str()),
        (422, Some("bad_eif")),
        "{err}"
    );

    // Bad requests: a code, and nothing half-written in the images directory.
    let before = image_files(&env);
    std::fs::write(tmp.path().join("bad.yaml"), "from: [unclosed\n").unwrap();
    std::fs::write(tmp.path().join("gone.yaml"), "from: dir:no-such-dir\n").unwrap();
    for (body, want, code_word, says) in [
        (json!({"spec": "img.yaml"}), 400, "bad_request", "absolute"),
        (
            json!({"spec": tmp.path().join("none.yaml")}),
            404,
            "no_such_spec",
            "no such spec",
        ),
        (
            json!({"spec": tmp.path().join("bad.yaml")}),
            400,
            "bad_request",
            "bad.yaml",
        ),
        (
            json!({"spec": spec, "colour": "red"}),
            400,
            "bad_request",
            "unknown field",
        ),
        (
            json!({"spec": spec, "kernel_profile": "vintage"}),
            400,
            "bad_request",
            "vintage",
        ),
        (
            json!({"spec": tmp.path().join("gone.yaml")}),
            422,
            "build_failed",
            "no-such-dir",
        ),
    ] {
        let (code, err) = call(&env, "POST", "/v1/images", Some(&body));
        assert_eq!(
            (code, err["code"].as_str()),
            (want, Some(code_word)),
            "{body}: {err}"
        );
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(image_files(&env), before);
    let (code, err) = call(&env, "GET", "/v1/images/ffff", None);
    assert_eq!((code, err["code"].as_str()), (404, Some("no_such_image")));
}
