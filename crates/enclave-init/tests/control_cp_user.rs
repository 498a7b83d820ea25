//! What `cp` may do in a real PID 1 whose app runs as `app` (1000:1000): no more than the app's
//! user may. Files arrive owned by that user, without setuid/setgid bits (both ways), a
//! destination that is or passes through a symlink is refused instead of written through,
//! directories and files only root may write or read are refused as permission denied, and a
//! source that is a symlink comes out as a link. (The round trips and the traversal refusals are
//! tests/control_cp.rs.)

#[allow(dead_code)]
mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use enclave_proto::client::Client;
use enclave_proto::wire::ErrorCode;
use support::control::{boot_as, client, shell, Booted};

fn spec() -> serde_json::Value {
    serde_json::json!({"debug": {"exec": true, "cp": true}})
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The enclave's `/` on the host.
fn rootfs(b: &Booted) -> std::path::PathBuf {
    b.run.root().join("rootfs")
}

/// A file `name` with `mode` under `dir`, made on the host (as root).
fn host_file(dir: &Path, name: &str, content: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, content).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn cp_writes_as_the_app_user_and_strips_set_id_bits() {
    let Some(b) = boot_as(&spec(), "app") else {
        return;
    };
    let mut c = client(&b);
    let host = tempfile::tempdir().unwrap();

    // Up: a tree with set-id files and directories.
    let src = host.path().join("up");
    fs::create_dir_all(src.join("sgid-dir")).unwrap();
    fs::create_dir_all(src.join("sticky-dir")).unwrap();
    fs::set_permissions(src.join("sgid-dir"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::set_permissions(src.join("sticky-dir"), fs::Permissions::from_mode(0o1777)).unwrap();
    host_file(&src, "suid", "#!/bin/sh\nid\n", 0o4755);
    host_file(&src, "sgid", "x", 0o2711);
    host_file(&src, "sticky-file", "x", 0o1644);
    // A read-only directory still receives its children (its mode is set last).
    fs::create_dir(src.join("ro-dir")).unwrap();
    host_file(&src.join("ro-dir"), "inner", "in", 0o644);
    fs::set_permissions(src.join("ro-dir"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(&src, fs::Permissions::from_mode(0o755)).unwrap();
    shell(&mut c, "mkdir /tmp/in");
    c.cp_to(&src, "/tmp/in", |_| {}).unwrap();
    let listing = shell(
        &mut c,
        "cd /tmp/in/up && stat -c '%n %a %u:%g' . suid sgid sticky-file sgid-dir sticky-dir \
         ro-dir ro-dir/inner",
    );
    assert_eq!(
        listing,
        ". 755 1000:1000\nsuid 755 1000:1000\nsgid 711 1000:1000\nsticky-file 644 1000:1000\n\
         sgid-dir 775 1000:1000\nsticky-dir 1777 1000:1000\nro-dir 555 1000:1000\n\
         ro-dir/inner 644 1000:1000\n"
    );

    // Down: a setuid file the app made (it may, on its own file) arrives without the bit.
    let made = shell(
        &mut c,
        "mkdir /tmp/out && echo hi > /tmp/out/tool && chmod 6755 /tmp/out/tool \
         && mkdir /tmp/out/g && chmod 2770 /tmp/out/g && stat -c %a /tmp/out/tool /tmp/out/g",
    );
    assert_eq!(made, "6755\n2770\n");
    let back = host.path().join("back");
    fs::create_dir(&back).unwrap();
    c.cp_from("/tmp/out", &back, |_| {}).unwrap();
    assert_eq!(mode(&back.join("out/tool")), 0o755);
    assert_eq!(mode(&back.join("out/g")), 0o770);
    assert_eq!(fs::read_to_string(back.join("out/tool")).unwrap(), "hi\n");
}

/// The refusal of a `cp_to` of `src` to `dest`: its code and message.
fn refused(c: &mut Client, src: &Path, dest: &str) -> (ErrorCode, String) {
    let e = c.cp_to(src, dest, |_| {}).unwrap_err();
    (e.code().unwrap_or(ErrorCode::Unknown), e.to_string())
}

#[test]
fn a_symlinked_destination_is_refused_not_written_through() {
    let Some(b) = boot_as(&spec(), "app") else {
        return;
    };
    let mut c = client(&b);
    let host = tempfile::tempdir().unwrap();
    let file = host_file(host.path(), "payload", "owned", 0o644);
    // A directory the app may write, reached through links, and a link to /etc.
    shell(
        &mut c,
        "mkdir /tmp/elsewhere /tmp/real && ln -s /tmp/elsewhere /tmp/link \
         && ln -s /etc /tmp/etc && ln -s elsewhere /tmp/rel",
    );
    for dest in [
        "/tmp/link",
        "/tmp/link/",
        "/tmp/etc",
        "/tmp/rel",
        "/tmp/link/sub",
        "/tmp/link/new-name",
    ] {
        let (code, message) = refused(&mut c, &file, dest);
        assert_eq!(code, ErrorCode::BadRequest, "{dest}: {message}");
        assert!(
            message.contains("is a symlink") && message.contains("does not follow symlinks"),
            "{dest}: {message}"
        );
    }
    // A real directory still works; nothing went through the links.
    c.cp_to(&file, "/tmp/real", |_| {}).unwrap();
    let after = shell(
        &mut c,
        "ls -A /tmp/elsewhere; ls /etc; ls -l /tmp | grep -c '^l'; cat /tmp/real/payload",
    );
    assert_eq!(after, "group\npasswd\n3\nowned", "{after}");
}

#[test]
fn what_only_root_may_write_or_read_is_refused() {
    let Some(b) = boot_as(&spec(), "app") else {
        return;
    };
    let mut c = client(&b);
    let host = tempfile::tempdir().unwrap();
    let file = host_file(host.path(), "payload", "owned", 0o644);
    // Made by root on the host, in the enclave's rootfs: a private directory, one the app may
    // read but not write, and a root-only file.
    let srv = rootfs(&b).join("srv");
    for (dir, m) in [("locked", 0o700), ("readonly", 0o755)] {
        fs::create_dir_all(srv.join(dir)).unwrap();
        fs::set_permissions(srv.join(dir), fs::Permissions::from_mode(m)).unwrap();
    }
    host_file(&srv.join("readonly"), "secret", "root only", 0o600);
    assert_eq!(fs::metadata(srv.join("locked")).unwrap().uid(), 0);

    for dest in ["/srv/locked", "/srv/readonly"] {
        let (code, message) = refused(&mut c, &file, dest);
        assert_eq!(code, ErrorCode::PermissionDenied, "{dest}: {message}");
    }
    // A tree into the writable-looking directory fails at its first entry.
    let tree = host.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let (code, message) = refused(&mut c, &tree, "/srv/readonly");
    assert_eq!(code, ErrorCode::PermissionDenied, "{message}");
    let mut left: Vec<_> = fs::read_dir(srv.join("readonly"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["secret"]);
    assert_eq!(fs::read_dir(srv.join("locked")).unwrap().count(), 0);

    // Reading: cp_from as the app user cannot read what it could not.
    let back = host.path().join("back");
    fs::create_dir(&back).unwrap();
    let e = c
        .cp_from("/srv/readonly/secret", &back, |_| {})
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
    let e = c.cp_from("/srv/locked", &back, |_| {}).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PermissionDenied), "{e}");
    assert_eq!(fs::read_dir(&back).unwrap().count(), 0);
}

#[test]
fn a_symlink_source_comes_out_as_a_link() {
    let Some(b) = boot_as(&spec(), "app") else {
        return;
    };
    let mut c = client(&b);
    shell(
        &mut c,
        "mkdir /tmp/d && echo data > /tmp/d/target && ln -s target /tmp/d/link \
         && ln -s /etc/passwd /tmp/abs",
    );
    let host = tempfile::tempdir().unwrap();
    c.cp_from("/tmp/d/link", host.path(), |_| {}).unwrap();
    let link = host.path().join("link");
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("target"));
    // A link the protocol cannot carry (absolute) is refused, not followed.
    let e = c.cp_from("/tmp/abs", host.path(), |_| {}).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadRequest), "{e}");
    assert!(!host.path().join("abs").exists());
    assert!(!host.path().join("passwd").exists());
}

/// `Uid:` of a task's status (real, effective, saved, fs), and its `CapEff:`.
fn task_creds(task: &Path) -> (String, String) {
    let status = fs::read_to_string(task.join("status")).unwrap_or_default();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name));
        line.map(|l| {
            l[name.len()..]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
    };
    (field("Uid:"), field("CapEff:"))
}

/// The threads of `pid` with their names.
fn tasks(pid: i32) -> Vec<(String, std::path::PathBuf)> {
    let dir = format!("/proc/{pid}/task");
    let entries = fs::read_dir(dir).into_iter().flatten().flatten();
    entries
        .map(|e| {
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            (comm.trim().to_owned(), e.path())
        })
        .collect()
}

#[test]
fn only_the_copy_thread_runs_as_the_app_user() {
    use enclave_proto::wire::{Capability, ClientMessage, Request, ServerMessage};
    use support::control::RawSession;

    let Some(b) = boot_as(&spec(), "app") else {
        return;
    };
    let init = b.run.init_host_pid().expect("init pid");
    let mut c = client(&b);
    shell(&mut c, "head -c 3000000 /dev/zero > /tmp/big");
    // A download that stalls once the initial window is spent: its thread stays alive.
    let mut s = RawSession::open(&b, &[Capability::Cp], Some(b.supervisor_key.clone()));
    let request = Request::CpFrom {
        src: "/tmp/big".into(),
    };
    s.send(&ClientMessage::Request { id: 1, request });
    assert!(matches!(s.read_one(), ServerMessage::Started { id: 1, .. }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let copier = loop {
        if let Some((_, path)) = tasks(init).into_iter().find(|(n, _)| n == "cp-from") {
            break path;
        }
        assert!(std::time::Instant::now() < deadline, "no cp-from thread");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let none = "0000000000000000".to_owned();
    assert_eq!(task_creds(&copier), ("1000 1000 1000 1000".into(), none));
    // Every other thread of PID 1 is still root with its capabilities.
    let others: Vec<_> = tasks(init)
        .into_iter()
        .filter(|(n, _)| n != "cp-from")
        .collect();
    assert!(others.len() >= 3, "{others:?}");
    for (name, path) in &others {
        let (uid, cap) = task_creds(path);
        assert_eq!(uid, "0 0 0 0", "{name}");
        assert_ne!(cap, "0000000000000000", "{name}");
    }
    // The copy ends with the connection; its thread goes, PID 1 stays root.
    drop(s);
    while tasks(init).iter().any(|(n, _)| n == "cp-from") {
        assert!(std::time::Instant::now() < deadline, "cp-from thread left");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(task_creds(Path::new(&format!("/proc/{init}"))).0, "0 0 0 0");
}
