//! `enclave-ctl kube generate` and `kube node-setup-daemonset` from the real binary: the
//! resource names and sizes pinned (device, hugepages rounded to the page size, requests equal
//! to limits), args and probes, the golden manifests in deploy/kubernetes/ (regenerate them
//! with `UPDATE_GOLDEN=1 cargo test -p enclave-ctl --test cli_kube`), errors and usage errors.
//! Every manifest is validated with kubernetes-validate --strict against two Kubernetes
//! versions (scripts/setup.sh installs it). From an EIF (PCR annotations): cli_kube_eif.rs.

mod common;

use std::process::Command;

use common::kube::validate;
use common::{assert_ok, run, stderr, workspace};
use serde_json::Value;

fn ctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enclave-ctl"));
    cmd.current_dir(workspace());
    cmd
}

/// `kube generate --json …` → the list of objects.
fn generate_json(args: &[&str]) -> Vec<Value> {
    let o = run(ctl().args(["kube", "generate", "--json"]).args(args));
    assert_ok(&o);
    serde_json::from_slice::<Vec<Value>>(&o.stdout).expect("a JSON list")
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

const WEB: &str = "examples/web/enclave.yaml";

#[test]
fn nitro_requests_the_device_and_hugepages_rounded_to_the_page_size() {
    for (memory, size, key, want) in [
        ("512", "2Mi", "hugepages-2Mi", "512Mi"),
        ("1000", "2Mi", "hugepages-2Mi", "1000Mi"),
        ("1001", "2Mi", "hugepages-2Mi", "1002Mi"),
        ("512", "1Gi", "hugepages-1Gi", "1Gi"),
        ("1500", "1G", "hugepages-1Gi", "2Gi"),
        ("2g", "1Gi", "hugepages-1Gi", "2Gi"),
    ] {
        let objects = generate_json(&[
            "-f",
            WEB,
            "--image",
            "web:1",
            "--memory",
            memory,
            "--hugepage-size",
            size,
        ]);
        let c = container(&objects[0]);
        let (requests, limits) = (&c["resources"]["requests"], &c["resources"]["limits"]);
        assert_eq!(limits[key], want, "{memory} MiB in {size} pages");
        assert_eq!(limits["aws.ec2.nitro/nitro_enclaves"], "1");
        assert_eq!(limits["memory"], "256Mi", "the parent's own memory");
        let limit_keys: Vec<&String> = limits.as_object().unwrap().keys().collect();
        assert_eq!(limit_keys.len(), 3, "{limits}");
        for k in limit_keys {
            assert_eq!(requests[k], limits[k], "request == limit for {k}");
        }
        assert_eq!(requests["cpu"], "250m");
        assert!(limits.get("cpu").is_none(), "no CPU limit: {limits}");
    }
}

#[test]
fn nitro_pod_placement_volume_probes_args_and_service() {
    let objects = generate_json(&[
        "-f",
        WEB,
        "--image",
        "web:1",
        "--cpus",
        "4",
        "--memory",
        "1g",
        "--stop-timeout",
        "20",
        "--replicas",
        "3",
        "--parent-memory",
        "512m",
        "--parent-cpu",
        "1",
    ]);
    assert_eq!(objects.len(), 2, "a Deployment and a Service");
    let (d, s) = (&objects[0], &objects[1]);
    assert_eq!(
        (&d["apiVersion"], &d["kind"]),
        (&"apps/v1".into(), &"Deployment".into())
    );
    assert_eq!(d["spec"]["replicas"], 3);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["aws-nitro-enclaves-k8s-dp"], "enabled");
    assert_eq!(pod["tolerations"][0]["key"], "aws-nitro-enclaves-k8s-dp");
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 35,
        "stop timeout + 15"
    );
    assert_eq!(pod["volumes"][0]["emptyDir"]["medium"], "HugePages");
    assert!(
        d["spec"]["template"]["metadata"]
            .get("annotations")
            .is_none(),
        "no PCRs from -f"
    );
    let c = container(d);
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/dev/hugepages");
    assert_eq!(c["securityContext"]["privileged"], false);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "--name",
            "web",
            "--backend",
            "nitro",
            "--cpus",
            "4",
            "--memory",
            "1g",
            "--stop-timeout",
            "20",
            "-p",
            "0.0.0.0:8080:8080",
            "/enclave/app.eif"
        ]
    );
    assert!(
        c.get("command").is_none(),
        "the image's Entrypoint (enclave-ctl run) stays"
    );
    let ctl = "/usr/local/bin/enclave-ctl";
    assert_eq!(
        c["livenessProbe"]["exec"]["command"],
        serde_json::json!([ctl, "health", "--live", "web"])
    );
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        serde_json::json!([ctl, "health", "web"])
    );
    assert_eq!(
        c["startupProbe"]["exec"]["command"],
        serde_json::json!([ctl, "health", "web"])
    );
    assert!(
        c["startupProbe"]["failureThreshold"].as_u64().unwrap()
            * c["startupProbe"]["periodSeconds"].as_u64().unwrap()
            >= 300
    );
    assert_eq!(c["resources"]["requests"]["cpu"], "1");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(s["kind"], "Service");
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(s["spec"]["ports"][0]["port"], 8080);
    assert_eq!(s["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(s["spec"]["selector"], d["spec"]["selector"]["matchLabels"]);
}

#[test]
fn emulated_has_no_device_hugepages_or_node_selector() {
    let objects = generate_json(&["-f", WEB, "--image", "web:1", "--backend", "emulated"]);
    let pod = &objects[0]["spec"]["template"]["spec"];
    assert!(pod.get("nodeSelector").is_none() && pod.get("tolerations").is_none());
    assert!(pod.get("volumes").is_none());
    let c = container(&objects[0]);
    assert_eq!(c["args"][3], "qemu");
    let limits = c["resources"]["limits"].as_object().unwrap();
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert_eq!(
        limits["memory"], "768Mi",
        "the guest's 512 MiB + the parent's 256"
    );
    assert_eq!(c["resources"]["requests"]["memory"], "768Mi");
}

#[test]
fn no_service_without_ingress() {
    let objects = generate_json(&["-f", "examples/hello/enclave.yaml", "--image", "h:1"]);
    assert_eq!(objects.len(), 1);
    let args = container(&objects[0])["args"].as_array().unwrap().clone();
    assert!(!args.iter().any(|a| a == "-p"), "{args:?}");
}

#[test]
fn metrics_port_adds_the_listener_the_container_port_and_the_scrape_annotations() {
    let objects = generate_json(&["-f", WEB, "--image", "web:1", "--metrics-port", "9464"]);
    let c = container(&objects[0]);
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--metrics-listen").unwrap();
    assert_eq!(args[at + 1], "0.0.0.0:9464");
    assert_eq!(args.last(), Some(&"/enclave/app.eif"), "the EIF stays last");
    let ports = c["ports"].as_array().unwrap();
    assert_eq!(ports.last().unwrap()["name"], "metrics");
    assert_eq!(ports.last().unwrap()["containerPort"], 9464);
    let annotations = &objects[0]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9464");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    // The Service stays the enclave's ingress only.
    let service_ports = objects[1]["spec"]["ports"].as_array().unwrap();
    assert!(service_ports.iter().all(|p| p["port"] != 9464));

    // Without the flag: no listener, no annotation.
    let plain = generate_json(&["-f", WEB, "--image", "web:1"]);
    let args = container(&plain[0])["args"].to_string();
    assert!(!args.contains("--metrics-listen"), "{args}");
    assert!(plain[0]["spec"]["template"]["metadata"]
        .get("annotations")
        .is_none_or(|a| a.get("prometheus.io/scrape").is_none()));

    // An ingress port is refused; port 0 is a usage error.
    let o = run(ctl().args([
        "kube",
        "generate",
        "--image",
        "x",
        "-f",
        WEB,
        "--metrics-port",
        "8080",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--metrics-port 8080 is also an ingress port"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    let o = run(ctl().args([
        "kube",
        "generate",
        "--image",
        "x",
        "-f",
        WEB,
        "--metrics-port",
        "0",
    ]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_bad_eif_or_name_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.eif");
    std::fs::write(&bad, b"not an enclave image file").unwrap();
    let o = run(ctl().args(["kube", "generate", "--image", "x"]).arg(&bad));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("reading the EIF") && stderr(&o).contains("bad.eif"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());

    let o = run(ctl().args([
        "kube", "generate", "--image", "x", "-f", WEB, "--name", "Web_1",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a valid Kubernetes name"),
        "{}",
        stderr(&o)
    );

    let o = run(ctl()
        .args(["kube", "generate", "--image", "x", "-f"])
        .arg(dir.path().join("none.yaml")));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("none.yaml"), "{}", stderr(&o));
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        vec!["kube", "generate", "-f", WEB],      // no --image
        vec!["kube", "generate", "--image", "x"], // no input
        vec!["kube", "generate", "--image", "x", "-f", WEB, "a.eif"], // both
        vec![
            "kube",
            "generate",
            "--image",
            "x",
            "-f",
            WEB,
            "--backend",
            "kvm",
        ],
        vec![
            "kube",
            "generate",
            "--image",
            "x",
            "-f",
            WEB,
            "--hugepage-size",
            "4Mi",
        ],
        vec![
            "kube", "generate", "--image", "x", "-f", WEB, "--memory", "1.5g",
        ],
        vec![
            "kube",
            "generate",
            "--image",
            "x",
            "-f",
            WEB,
            "--parent-cpu",
            "lots",
        ],
        vec![
            "kube",
            "node-setup-daemonset",
            "--image",
            "x",
            "--cpus",
            "2",
        ], // no --memory
    ] {
        let o = run(ctl().args(&args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("error:"), "{args:?}: {}", stderr(&o));
    }
}

/// Each golden file and the arguments that make it.
fn goldens() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for example in ["attested", "hello", "web"] {
        for backend in ["nitro", "emulated"] {
            out.push((
                format!("deploy/kubernetes/examples/{example}-{backend}.yaml"),
                [
                    "kube",
                    "generate",
                    "-f",
                    &format!("examples/{example}/enclave.yaml"),
                    "--image",
                    &format!("ghcr.io/enclave-engine/examples/{example}:0.1.0"),
                    "--backend",
                    backend,
                ]
                .map(String::from)
                .to_vec(),
            ));
        }
    }
    out.push((
        "deploy/kubernetes/examples/web-nitro-metrics.yaml".into(),
        [
            "kube",
            "generate",
            "-f",
            "examples/web/enclave.yaml",
            "--image",
            "ghcr.io/enclave-engine/examples/web:0.1.0",
            "--metrics-port",
            "9464",
        ]
        .map(String::from)
        .to_vec(),
    ));
    out.push((
        "deploy/kubernetes/node-setup-daemonset.yaml".into(),
        [
            "kube",
            "node-setup-daemonset",
            "--image",
            "ghcr.io/enclave-engine/enclave-ctl:0.1.0",
            "--cpus",
            "2",
            "--memory",
            "2048",
        ]
        .map(String::from)
        .to_vec(),
    ));
    out
}

#[test]
fn golden_manifests_are_current_and_valid() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    let goldens = goldens();
    for (file, args) in &goldens {
        let o = run(ctl().args(args));
        assert_ok(&o);
        let path = workspace().join(file);
        if update {
            std::fs::write(&path, &o.stdout).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&o.stdout[..]) {
            stale.push(file.clone());
        }
        validate(&path);
    }
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}\nregenerate with: UPDATE_GOLDEN=1 cargo test -p enclave-ctl --test cli_kube"
    );
    // Nothing in examples/ that the test does not make.
    for entry in std::fs::read_dir(workspace().join("deploy/kubernetes/examples")).unwrap() {
        let name = format!(
            "deploy/kubernetes/examples/{}",
            entry.unwrap().file_name().to_string_lossy()
        );
        assert!(
            goldens.iter().any(|(f, _)| *f == name),
            "{name} is made by no test: remove it"
        );
    }
}

#[test]
fn node_setup_daemonset_runs_node_setup_privileged_then_pauses() {
    let o = run(ctl().args([
        "kube",
        "node-setup-daemonset",
        "--image",
        "app:1",
        "--cpus",
        "4",
        "--memory",
        "4096",
        "--hugepage-size",
        "1G",
        "--json",
    ]));
    assert_ok(&o);
    let objects: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let ds = &objects[0];
    assert_eq!(ds["kind"], "DaemonSet");
    assert_eq!(ds["metadata"]["namespace"], "kube-system");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["aws-nitro-enclaves-k8s-dp"], "enabled");
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/");
    let init = &pod["initContainers"][0];
    assert_eq!(
        init["command"],
        serde_json::json!([
            "/usr/local/bin/enclave-ctl",
            "node",
            "setup",
            "--root",
            "/host",
            "--cpus",
            "4",
            "--memory",
            "4096",
            "--hugepage-size",
            "1G"
        ])
    );
    assert_eq!(init["securityContext"]["privileged"], true);
    assert_eq!(init["volumeMounts"][0]["mountPath"], "/host");
    assert_eq!(pod["containers"][0]["securityContext"]["privileged"], false);
}
