//! The engine API's TCP listener (`enclave-engine daemon --listen`): mutual TLS only, with
//! certificates openssl makes here. A client certificate from the CA is served, none or another
//! CA's is refused, plain HTTP gets nothing; `--listen` without its TLS files is a usage error
//! and a bad file stops the start before anything is bound. Over that listener, schemathesis
//! holds the running daemon to docs/api/openapi.yaml (no 5xx, no undocumented answer), every
//! operation included (tests/schemathesis.toml).
//!
//! Missing prerequisites skip (fail with CI=true).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::net::until;
use common::{assert_ok, have, require, run, stdout, KillOnDrop};

/// Makes a CA and a certificate it signs for `cn` (PEM files in `dir`); with `server`, for
/// 127.0.0.1.
fn certificate(dir: &Path, ca: &str, cn: &str, server: bool) {
    let ext = dir.join(format!("{cn}.ext"));
    let usage = if server {
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    } else {
        "extendedKeyUsage=clientAuth\n"
    };
    std::fs::write(&ext, format!("basicConstraints=CA:FALSE\n{usage}")).unwrap();
    let openssl =
        |args: &[&str]| assert_ok(&run(Command::new("openssl").current_dir(dir).args(args)));
    if !dir.join(format!("{ca}.pem")).exists() {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "1",
            "-subj",
            &format!("/CN={ca}"),
        ]);
    }
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &format!("{cn}.key"),
        "-out",
        &format!("{cn}.csr"),
        "-subj",
        &format!("/CN={cn}"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &format!("{cn}.csr"),
        "-CA",
        &format!("{ca}.pem"),
        "-CAkey",
        &format!("{ca}.key"),
        "-CAcreateserial",
        "-out",
        &format!("{cn}.pem"),
        "-days",
        "1",
        "-extfile",
        &format!("{cn}.ext"),
    ]);
}

#[test]
fn the_tcp_listener_is_mutual_tls_only() {
    let Some(()) = require(have("curl") && have("openssl"), "curl and openssl") else {
        return;
    };
    let engine = Path::new(env!("CARGO_BIN_EXE_enclave-ctl")).with_file_name("enclave-engine");
    let Some(()) = require(engine.is_file(), "the enclave-engine binary") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    certificate(d, "ca", "server", true);
    certificate(d, "ca", "client", false);
    certificate(d, "other-ca", "stranger", false);
    let state = d.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let port = common::net::free_port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = |extra: &[&str]| {
        Command::new(&engine)
            .args(["daemon", "--state-dir"])
            .arg(&state)
            .args(extra)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let tls = [
        "--tls-cert",
        "server.pem",
        "--tls-key",
        "server.key",
        "--client-ca",
        "ca.pem",
    ];
    let _daemon = KillOnDrop(daemon(&[&["--listen", &listen][..], &tls].concat()));
    let curl = |cert: Option<&str>| {
        let mut cmd = Command::new("curl");
        cmd.current_dir(d).args([
            "-s",
            "-m",
            "10",
            "-w",
            "\n%{http_code}",
            "--cacert",
            "ca.pem",
        ]);
        if let Some(name) = cert {
            cmd.args([
                "--cert",
                &format!("{name}.pem"),
                "--key",
                &format!("{name}.key"),
            ]);
        }
        run(cmd.arg(format!("https://127.0.0.1:{port}/v1/system/info")))
    };
    until(
        "the TLS listener answers",
        Duration::from_secs(10),
        String::new,
        || {
            let o = curl(Some("client"));
            (!o.status.success()).then(|| common::stderr(&o))
        },
    );
    let o = curl(Some("client"));
    let out = stdout(&o);
    assert!(out.ends_with("\n200"), "{out}");
    assert!(out.contains(r#""api_version":"v1""#), "{out}");
    // No certificate, or one another CA signed: the handshake fails, nothing is served.
    for cert in [None, Some("stranger")] {
        let o = curl(cert);
        assert!(!o.status.success(), "{cert:?} was served: {}", stdout(&o));
        assert!(!stdout(&o).contains("api_version"), "{cert:?}");
    }
    // schemathesis, over the same mutual TLS: every operation with generated requests, valid
    // and not: no 5xx, no answer the document does not allow, 405s with Allow, no schema-valid
    // request refused. Its configuration (tests/schemathesis.toml) gives every request of the
    // event stream `until=0s`, since the stream ends only there; the control relay gets every
    // request but a successful upgrade (no enclave runs here), whose 101 leaves HTTP
    // (cli_daemon_control covers what follows it).
    let venv = Path::new(&std::env::var("HOME").unwrap_or_default())
        .join(".cache/enclave-engine/venv/bin/schemathesis");
    let schemathesis = if venv.is_file() {
        venv
    } else {
        PathBuf::from("schemathesis")
    };
    let Some(()) = require(
        run(Command::new(&schemathesis).arg("--version"))
            .status
            .success(),
        "schemathesis (scripts/setup.sh installs it in ~/.cache/enclave-engine/venv)",
    ) else {
        return;
    };
    let o = run(Command::new(&schemathesis)
        .current_dir(d)
        .arg("--config-file")
        .arg(common::workspace().join("crates/enclave-ctl/tests/schemathesis.toml"))
        .arg("run")
        .arg(common::workspace().join("docs/api/openapi.yaml"))
        .args([
            "--url",
            &format!("https://127.0.0.1:{port}"),
            "--tls-verify",
            "ca.pem",
        ])
        .args([
            "--request-cert",
            "client.pem",
            "--request-cert-key",
            "client.key",
        ])
        .args([
            "--request-timeout",
            "30",
            "--checks",
            "all",
            "-n",
            "60",
            "--seed",
            "1",
        ])
        .arg("--no-color"));
    assert!(
        o.status.success(),
        "schemathesis:\n{}\n{}",
        stdout(&o),
        common::stderr(&o)
    );

    // A real Prometheus scrapes the daemon over the same mutual TLS: the number of running
    // enclaves (none here), and the scrape itself up.
    let tls_config = format!(
        "{{ca_file: {0}/ca.pem, cert_file: {0}/client.pem, key_file: {0}/client.key}}",
        d.display()
    );
    let (_prometheus, prom_port) = common::prometheus(
        d,
        &format!(
            "  - job_name: engine\n    scheme: https\n    tls_config: {tls_config}\n    \
             static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ),
    );
    common::prometheus_answers(d, prom_port, "up%7Bjob%3D%22engine%22%7D", "1");
    common::prometheus_answers(
        d,
        prom_port,
        "enclave_engine_enclaves%7Bstate%3D%22running%22%7D",
        "0",
    );

    // Plain HTTP on the TLS port gets nothing either.
    let o = run(Command::new("curl")
        .args(["-s", "-m", "5"])
        .arg(format!("http://127.0.0.1:{port}/v1/system/info")));
    assert!(!stdout(&o).contains("api_version"));

    // --listen needs all three TLS files; a bad file stops the start with its name.
    let mut c = daemon(&["--listen", &listen]);
    assert_eq!(c.wait().unwrap().code(), Some(2));
    std::fs::write(d.join("bad.pem"), "not a certificate\n").unwrap();
    let bad = [
        "--tls-cert",
        "bad.pem",
        "--tls-key",
        "server.key",
        "--client-ca",
        "ca.pem",
    ];
    let other = format!("127.0.0.1:{}", common::net::free_port());
    let mut c = daemon(
        &[
            &["--listen", &other, "--socket"][..],
            &[d.join("other.sock").to_str().unwrap()],
            &bad,
        ]
        .concat(),
    );
    let status = c.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("bad.pem (--tls-cert)"), "{err}");
    assert!(!d.join("other.sock").exists(), "nothing is left bound");
}
