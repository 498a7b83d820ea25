//! End-to-end tests of `enclave-ctl build`, `inspect` and `measure` with real inputs: OCI images
//! made by umoci, converted by skopeo, the real emulated kernel and the static enclave-init.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn build_json(init: &Path, kernel: &Path, from: &str, out: &Path) -> Value {
    let o = run(ctl(init)
        .args(["build", "--quiet", "--json", "--from", from, "-o"])
        .arg(out)
        .arg("--kernel-dir")
        .arg(kernel));
    assert_ok(&o);
    serde_json::from_slice(&o.stdout).expect("build --json prints JSON")
}

fn inspect_json(init: &Path, eif: &Path) -> (i32, Value) {
    let o = run(ctl(init).arg("inspect").arg("--json").arg(eif));
    let code = o.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (code, v)
}

#[test]
fn every_transport_of_the_same_image_gives_the_same_pcrs() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(oci) = example_image(tmp.path()) else {
        return;
    };
    let Some(()) = require(have("skopeo"), "skopeo") else {
        return;
    };
    let oci_ref = format!("oci:{}:latest", oci.display());
    let archive = tmp.path().join("hello-oci.tar");
    let docker = tmp.path().join("hello-docker.tar");
    for dest in [
        format!("oci-archive:{}:latest", archive.display()),
        format!("docker-archive:{}:hello:latest", docker.display()),
    ] {
        assert_ok(&run(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--quiet",
            &oci_ref,
            &dest,
        ])));
    }

    let sources = [
        oci_ref.clone(),
        format!("oci-archive:{}:latest", archive.display()),
        format!("docker-archive:{}", docker.display()),
    ];
    let mut all = Vec::new();
    for (i, from) in sources.iter().enumerate() {
        let out = tmp.path().join(format!("{i}.eif"));
        let json = build_json(&init, &kernel, from, &out);
        let m = &json["Measurements"];
        assert_eq!(m["HashAlgorithm"], "Sha384 { ... }");
        for pcr in ["PCR0", "PCR1", "PCR2"] {
            assert_eq!(m[pcr].as_str().map(str::len), Some(96), "{pcr} in {json}");
        }
        assert!(m.get("PCR8").is_none(), "unsigned build has no PCR8");
        let (code, described) = inspect_json(&init, &out);
        assert_eq!(code, 0, "{described}");
        assert_eq!(described["Measurements"], *m);
        assert_eq!(described["CheckCRC"], true);
        assert_eq!(described["IsSigned"], false);
        assert_eq!(described["EifVersion"], 4);
        all.push(m.clone());
    }
    assert_eq!(all[0], all[1], "oci vs oci-archive");
    assert_eq!(all[0], all[2], "oci vs docker-archive");
}

/// Builds the same rootfs from two directories with different mtimes, owners, umask, working
/// directory, TMPDIR and locale: the EIFs must be byte-identical.
#[test]
fn builds_are_reproducible_across_machines_and_directories() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a/rootfs");
    make_rootfs(&a);
    let b = tmp.path().join("elsewhere/b/rootfs");
    std::fs::create_dir_all(b.parent().unwrap()).unwrap();
    assert_ok(&run(Command::new("cp").arg("-a").arg(&a).arg(&b)));
    // Different owners and mtimes on the copy (chown clears setuid bits: restore them).
    assert_ok(&run(Command::new("sh").arg("-c").arg(format!(
        "chown -hR 1234:5678 '{0}' && chmod 4755 '{0}/bin/su' && \
         find '{0}' -exec touch -h -d '2001-02-03 04:05:06' {{}} +",
        b.display()
    ))));

    // Each build reads a spec beside its rootfs; `from:` is relative to the spec file.
    let build = |rootfs: &Path, out: &Path, umask: &str, cwd: &Path, locale: &str| {
        let spec = rootfs.parent().unwrap().join("enclave.yaml");
        std::fs::write(&spec, "from: dir:rootfs\ncmd: [/bin/hello]\n").unwrap();
        let tmpdir = cwd.join("tmp");
        std::fs::create_dir_all(&tmpdir).unwrap();
        let script = format!(
            "umask {umask} && exec \"$0\" build --quiet -f {} -o {} --kernel-dir {}",
            spec.display(),
            out.display(),
            kernel.display()
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_enclave-ctl"))
            .current_dir(cwd)
            .env("ENCLAVE_INIT", &init)
            .env("TMPDIR", &tmpdir)
            .env("LC_ALL", locale)
            .env_remove("SOURCE_DATE_EPOCH");
        assert_ok(&run(&mut cmd));
    };
    let out_a = tmp.path().join("a.eif");
    let out_b = tmp.path().join("b.eif");
    build(&a, &out_a, "022", &tmp.path().join("a"), "C");
    build(
        &b,
        &out_b,
        "077",
        &tmp.path().join("elsewhere"),
        "fr_FR.UTF-8",
    );
    assert_eq!(sha256(&out_a), sha256(&out_b));

    // SOURCE_DATE_EPOCH is an input: another value gives other bytes and another PCR2, and the
    // flag and the variable mean the same.
    let out_c = tmp.path().join("c.eif");
    let spec_a = tmp.path().join("a/enclave.yaml");
    let o = run(ctl(&init)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--quiet", "--json", "-f"])
        .arg(&spec_a)
        .arg("-o")
        .arg(&out_c)
        .arg("--kernel-dir")
        .arg(&kernel));
    assert_ok(&o);
    assert_ne!(sha256(&out_a), sha256(&out_c));
    let out_d = tmp.path().join("d.eif");
    let o = run(ctl(&init)
        .args([
            "build",
            "--quiet",
            "--source-date-epoch",
            "1700000000",
            "-f",
        ])
        .arg(&spec_a)
        .arg("-o")
        .arg(&out_d)
        .arg("--kernel-dir")
        .arg(&kernel));
    assert_ok(&o);
    assert_eq!(sha256(&out_c), sha256(&out_d));
}

/// A small rootfs: busybox, a symlink, a hard link, an executable script, a setuid file.
fn make_rootfs(root: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    match busybox {
        Some(b) => {
            std::fs::copy(b, root.join("bin/busybox")).unwrap();
        }
        None => std::fs::write(root.join("bin/busybox"), b"not busybox").unwrap(),
    }
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"enclave\n").unwrap();
    std::fs::hard_link(root.join("etc/hostname"), root.join("etc/hostname.bak")).unwrap();
    std::fs::write(root.join("bin/hello"), b"#!/bin/sh\necho hello\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("bin/su"), b"setuid").unwrap();
    std::fs::set_permissions(root.join("bin/su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
}

#[test]
fn spec_overrides_are_measured_and_bad_specs_are_refused() {
    let Some((kernel, init)) = build_inputs() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    make_rootfs(&rootfs);
    let spec_ok = tmp.path().join("ok.yaml");
    std::fs::write(&spec_ok, "from: dir:rootfs\ncmd: [/bin/hello]\n").unwrap();
    let spec_debug = tmp.path().join("debug.yaml");
    std::fs::write(
        &spec_debug,
        "from: dir:rootfs\ncmd: [/bin/hello]\ndebug: {exec: true}\n",
    )
    .unwrap();
    let pcrs = |spec: &Path, out: &str| {
        let o = run(ctl(&init)
            .current_dir("/")
            .args(["build", "--quiet", "--json", "-f"])
            .arg(spec)
            .arg("-o")
            .arg(tmp.path().join(out))
            .arg("--kernel-dir")
            .arg(&kernel));
        assert_ok(&o);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["Measurements"].clone()
    };
    let ok = pcrs(&spec_ok, "ok.eif");
    let debug = pcrs(&spec_debug, "debug.eif");
    // Granting exec is visible in PCR2 and only there.
    assert_ne!(ok["PCR2"], debug["PCR2"]);
    assert_eq!(ok["PCR1"], debug["PCR1"]);

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "from: dir:rootfs\ncmd: [/bin/hello]\ndebgu: {exec: true}\n",
    )
    .unwrap();
    let out = tmp.path().join("bad.eif");
    let o = run(ctl(&init)
        .args(["build", "--quiet", "-f"])
        .arg(&bad)
        .arg("-o")
        .arg(&out)
        .arg("--kernel-dir")
        .arg(&kernel));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("debgu") && err.contains("line 3"), "{err}");
    assert!(!out.exists());

    // Nothing to run.
    std::fs::write(&bad, "from: dir:rootfs\n").unwrap();
    let o = run(ctl(&init)
        .args(["build", "--quiet", "-f"])
        .arg(&bad)
        .arg("-o")
        .arg(&out)
        .arg("--kernel-dir")
        .arg(&kernel));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nothing to run"), "{}", stderr(&o));
    assert!(!out.exists());
    assert!(leftover_temp_files(tmp.path()).is_empty());
}
