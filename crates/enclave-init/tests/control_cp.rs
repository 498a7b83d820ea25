//! `cp` through the control server of a real PID 1 whose app runs as `app` (1000:1000): a tree
//! with symlinks and modes both ways, a 1 GiB file (sparse-generated) both ways with its SHA-256
//! compared by the test, and the refusals of traversal (`..`, absolute paths, escaping links, a
//! symlink already in the destination) and of content longer or shorter than announced.
//! tests/control_cp_user.rs: what cp may do as the app's user (owners, set-id bits, symlinked
//! destinations, directories only root may write).

#[allow(dead_code)]
mod support;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::time::Instant;

use enclave_proto::wire::{
    Capability, ClientMessage, CpEntry, CpKind, ErrorCode, Request, ServerMessage,
};
use sha2::{Digest, Sha256};
use support::control::{boot_as, client, scratch, shell, Access, RawSession};

fn spec() -> serde_json::Value {
    serde_json::json!({"debug": {"exec": true, "cp": true}})
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn sha_file(p: &Path) -> Vec<u8> {
    let mut h = Sha256::new();
    std::io::copy(&mut fs::File::open(p).unwrap(), &mut h).unwrap();
    h.finalize().to_vec()
}

#[test]
fn cp_tree_and_big_file_round_trip() {
    let Some(b) = boot_as(&spec(), "app") else {
        return;
    };
    let mut c = client(&b);
    let host = scratch();

    // A tree: modes, nested dirs, links inside (down and up), an empty file.
    let src = host.path().join("tree");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("a.txt"), "alpha").unwrap();
    fs::write(src.join("sub/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::write(src.join("sub/deeper/empty"), "").unwrap();
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::set_permissions(src.join("sub/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(src.join("sub/deeper"), fs::Permissions::from_mode(0o750)).unwrap();
    symlink("a.txt", src.join("link")).unwrap();
    symlink("../a.txt", src.join("sub/up")).unwrap();

    shell(&mut c, "mkdir -p /tmp/in");
    let stats = c.cp_to(&src, "/tmp/in", |_| {}).unwrap();
    assert_eq!((stats.entries, stats.bytes), (8, 5 + 18));
    let listing = shell(
        &mut c,
        "cd /tmp/in/tree && stat -c '%n %a' a.txt sub/run.sh sub/deeper && readlink link && readlink sub/up \
         && cat sub/up && echo && ls -a /tmp/in/tree | grep -c enclave-cp || true",
    );
    assert_eq!(
        listing,
        "a.txt 640\nsub/run.sh 755\nsub/deeper 750\na.txt\n../a.txt\nalpha\n0\n"
    );

    // And back out.
    let back = host.path().join("back");
    fs::create_dir(&back).unwrap();
    let stats = c.cp_from("/tmp/in/tree", &back, |_| {}).unwrap();
    assert_eq!(stats.entries, 8);
    let t = back.join("tree");
    assert_eq!(fs::read_to_string(t.join("sub/up")).unwrap(), "alpha");
    assert_eq!(fs::read_link(t.join("link")).unwrap(), Path::new("a.txt"));
    assert_eq!(
        (
            mode(&t.join("a.txt")),
            mode(&t.join("sub/run.sh")),
            mode(&t.join("sub/deeper"))
        ),
        (0o640, 0o755, 0o750)
    );
    assert_eq!(fs::read(t.join("sub/deeper/empty")).unwrap(), b"");

    // 1 GiB, sparse on the host with some data in it, there and back.
    let big = host.path().join("big.bin");
    let mut f = fs::File::create(&big).unwrap();
    f.set_len(1 << 30).unwrap();
    for (i, off) in [0u64, 12345, 1 << 29, (1 << 30) - 100].iter().enumerate() {
        f.seek(SeekFrom::Start(*off)).unwrap();
        f.write_all(format!("chunk {i} at {off}").as_bytes())
            .unwrap();
    }
    drop(f);
    let want = sha_file(&big);
    let t0 = Instant::now();
    let stats = c.cp_to(&big, "/tmp", |_| {}).unwrap();
    let up = t0.elapsed();
    assert_eq!(stats.bytes, 1 << 30);
    fs::remove_file(&big).unwrap();
    let t0 = Instant::now();
    c.cp_from("/tmp/big.bin", host.path(), |_| {}).unwrap();
    let down = t0.elapsed();
    assert_eq!(sha_file(&big), want, "1 GiB round trip changed the content");
    eprintln!("1 GiB: up {up:?}, down {down:?} (debug build)");
    fs::remove_file(&big).unwrap();
}

/// One entry of a raw upload: its header and, for a file, the content sent after it (which
/// may differ from the size the header announces).
#[derive(Clone)]
struct RawEntry {
    entry: CpEntry,
    content: Vec<u8>,
}

/// Sends `entries` of a cp_to on a raw connection; returns the error code that ended it.
fn raw_upload(b: &Access, dest: &str, entries: &[RawEntry]) -> ErrorCode {
    let mut s = RawSession::open(b, &[Capability::Cp], Some(b.supervisor_key.clone()));
    let request = Request::CpTo { dest: dest.into() };
    s.send(&ClientMessage::Request { id: 1, request });
    assert!(matches!(s.read_one(), ServerMessage::Started { id: 1, .. }));
    for raw in entries {
        let msg = ClientMessage::CpEntry {
            id: 1,
            entry: raw.entry.clone(),
        };
        s.send(&msg);
        if let CpKind::File { .. } = raw.entry.kind {
            if !raw.content.is_empty() {
                s.send(&ClientMessage::Data {
                    id: 1,
                    channel: enclave_proto::wire::Channel::File,
                    data: raw.content.clone().into(),
                });
            }
            s.send(&ClientMessage::CpFileEnd { id: 1 });
        }
    }
    s.send(&ClientMessage::CpDone { id: 1 });
    loop {
        match s.read_one() {
            ServerMessage::Error { id: 1, code, .. } => return code,
            ServerMessage::Reply { id: 1, reply } => panic!("accepted: {reply:?}"),
            _ => {}
        }
    }
}

fn file(path: &str, content: &[u8]) -> RawEntry {
    RawEntry {
        entry: CpEntry {
            path: path.into(),
            mode: 0o644,
            kind: CpKind::File {
                size: content.len() as u64,
            },
        },
        content: content.to_vec(),
    }
}

fn other(entry: CpEntry) -> RawEntry {
    RawEntry {
        entry,
        content: Vec::new(),
    }
}

#[test]
fn cp_refuses_traversal() {
    let Some(b) = boot_as(&spec(), "app") else {
        return;
    };
    let mut c = client(&b);
    shell(
        &mut c,
        "mkdir -p /tmp/d && ln -s /etc /tmp/d/evil && ln -s sub /tmp/d/inner && mkdir /tmp/d/sub",
    );
    let link = |p: &str, t: &str| {
        other(CpEntry {
            path: p.into(),
            mode: 0o777,
            kind: CpKind::Symlink { target: t.into() },
        })
    };
    let dir = |p: &str| {
        other(CpEntry {
            path: p.into(),
            mode: 0o755,
            kind: CpKind::Dir,
        })
    };
    for (what, entries) in [
        ("..", vec![file("../escape", b"x")]),
        ("inner ..", vec![dir("a"), file("a/../../escape", b"x")]),
        ("absolute", vec![file("/tmp/abs", b"x")]),
        ("escaping link", vec![link("out", "../../etc")]),
        ("absolute link", vec![link("out", "/etc/passwd")]),
        (
            "symlink in the destination",
            vec![file("evil/passwd", b"owned")],
        ),
        (
            "inner symlink in the destination",
            vec![file("inner/x", b"x")],
        ),
        (
            "link made by the tree",
            vec![link("l", "sub"), file("l/x", b"x")],
        ),
    ] {
        let code = raw_upload(&b, "/tmp/d", &entries);
        assert_eq!(code, ErrorCode::BadRequest, "{what}");
    }
    // Content shorter or longer than the entry announced: refused, the temporary file removed
    // and nothing renamed into place (checked below).
    for (what, announced) in [("shorter", 5), ("longer", 3)] {
        let mut bad = file("bad", b"xxxx");
        bad.entry.kind = CpKind::File { size: announced };
        let code = raw_upload(&b, "/tmp/d", &[bad]);
        assert_eq!(code, ErrorCode::BadRequest, "{what}");
    }
    // Nothing landed outside, no temporary file was left behind.
    let check = shell(
        &mut c,
        "ls -a /tmp /tmp/d /tmp/d/sub; grep -c owned /etc/passwd || true",
    );
    assert!(
        !check.contains("escape") && !check.contains("abs") && !check.contains(".enclave-cp"),
        "{check}"
    );
    assert!(!check.contains("bad"), "{check}");
    assert!(check.ends_with("0\n"), "{check}");
    // Sources the client would refuse to name stay out too: cp_from of a missing path.
    let e = c
        .cp_from("/no/such", Path::new("/tmp"), |_| {})
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
    let e = c
        .cp_to(Path::new("/etc/hostname"), "/no/such/dir", |_| {})
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");
}
