//! The filesystem side of `cp` on real directories, without a connection: [`scan`] and
//! [`send_tree`] never read through a symlink, even one swapped in between the two (the seam
//! the enclave's app could race), and [`TreeWriter`] writes no set-id bit, refuses content
//! longer or shorter than announced, and reaches a destination only through real directories
//! when asked to.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use bytes::Bytes;
use enclave_proto::tree::{
    scan, send_tree, SourceKind, SourceLink, TreeError, TreeSink, TreeWriter,
};
use enclave_proto::wire::{CpEntry, CpKind};

/// What a sink received.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Entry(CpEntry),
    Data(Vec<u8>),
    FileEnd,
}

/// A sink that records what it gets, optionally also writing it with a [`TreeWriter`].
struct Recorder {
    sent: Vec<Sent>,
    writer: Option<TreeWriter>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            sent: Vec::new(),
            writer: None,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for s in &self.sent {
            if let Sent::Data(d) = s {
                out.extend_from_slice(d);
            }
        }
        out
    }

    fn paths(&self) -> Vec<String> {
        let entries = self.sent.iter().filter_map(|s| match s {
            Sent::Entry(e) => Some(e.path.clone()),
            _ => None,
        });
        entries.collect()
    }
}

impl TreeSink for Recorder {
    type Error = TreeError;

    fn entry(&mut self, entry: CpEntry) -> Result<(), TreeError> {
        if let Some(w) = &mut self.writer {
            w.entry(&entry)?;
        }
        self.sent.push(Sent::Entry(entry));
        Ok(())
    }

    fn credit(&mut self) -> Result<usize, TreeError> {
        Ok(100_000)
    }

    fn data_from(
        &mut self,
        file: &mut std::fs::File,
        len: usize,
        what: &str,
    ) -> Result<(), TreeError> {
        let mut data = vec![0; len];
        enclave_proto::tree::read_chunk(file, &mut data, what)?;
        let data = Bytes::from(data);
        if let Some(w) = &mut self.writer {
            w.data(data.clone())?;
        }
        self.sent.push(Sent::Data(data.to_vec()));
        Ok(())
    }

    fn file_end(&mut self) -> Result<(), TreeError> {
        if let Some(w) = &mut self.writer {
            w.file_end()?;
        }
        self.sent.push(Sent::FileEnd);
        Ok(())
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `root/src` with `a.txt`, `sub/b.txt`, and a `secret` outside it.
fn fixture() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), "alpha").unwrap();
    fs::write(src.join("sub/b.txt"), "bravo").unwrap();
    fs::create_dir(root.path().join("outside")).unwrap();
    fs::write(root.path().join("outside/secret"), "SECRET").unwrap();
    root
}

#[test]
fn a_tree_round_trips_depth_first_with_modes_masked() {
    let root = fixture();
    let src = root.path().join("src");
    fs::set_permissions(src.join("a.txt"), fs::Permissions::from_mode(0o6755)).unwrap();
    fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o3775)).unwrap();
    symlink("sub/b.txt", src.join("link")).unwrap();
    let tree = scan(&src, SourceLink::Keep).unwrap();
    let paths: Vec<&str> = tree.entries().iter().map(|e| e.rel.as_str()).collect();
    assert_eq!(
        paths,
        ["src", "src/a.txt", "src/link", "src/sub", "src/sub/b.txt"]
    );
    // The set-id bits are scanned and sent as they are; the writer drops them.
    assert_eq!(tree.entries()[1].mode, 0o6755);
    assert_eq!(tree.total_bytes(), 10);

    let dest = tempfile::tempdir().unwrap();
    let mut rec = Recorder::new();
    rec.writer = Some(TreeWriter::open(dest.path()).unwrap());
    send_tree(&tree, &mut rec).unwrap();
    assert_eq!(rec.writer.as_mut().unwrap().finish().unwrap(), (5, 10));
    let out = dest.path().join("src");
    assert_eq!(fs::read_to_string(out.join("link")).unwrap(), "bravo");
    assert_eq!(mode(&out.join("a.txt")), 0o755);
    assert_eq!(mode(&out.join("sub")), 0o1775);

    // Renamed: the same files under another top name.
    let renamed = tree.renamed("copy").unwrap();
    let mut rec = Recorder::new();
    send_tree(&renamed, &mut rec).unwrap();
    assert_eq!(rec.paths()[..2], ["copy", "copy/a.txt"]);
    assert_eq!(rec.bytes(), b"alphabravo");
    assert!(tree.renamed("a/b").is_err() && tree.renamed("..").is_err());
}

#[test]
fn a_file_swapped_for_a_symlink_after_the_scan_is_not_sent() {
    let root = fixture();
    let src = root.path().join("src");
    let tree = scan(&src, SourceLink::Keep).unwrap();
    // The race: between the scan and the send, a.txt becomes a link to the secret.
    fs::remove_file(src.join("a.txt")).unwrap();
    symlink(root.path().join("outside/secret"), src.join("a.txt")).unwrap();
    let mut rec = Recorder::new();
    let err = send_tree(&tree, &mut rec).unwrap_err();
    assert!(
        matches!(&err, TreeError::Replaced(p) if p == "src/a.txt"),
        "{err}"
    );
    assert!(err.to_string().contains("src/a.txt"), "{err}");
    assert_eq!(rec.paths(), ["src"], "nothing of a.txt was announced");
    assert!(!String::from_utf8_lossy(&rec.bytes()).contains("SECRET"));
}

#[test]
fn a_directory_swapped_for_a_symlink_after_the_scan_is_not_entered() {
    let root = fixture();
    let src = root.path().join("src");
    // The secret has the same name as the file scanned in sub: only identity tells them apart.
    fs::write(root.path().join("outside/b.txt"), "SECRET").unwrap();
    let tree = scan(&src, SourceLink::Keep).unwrap();
    fs::rename(src.join("sub"), root.path().join("moved")).unwrap();
    symlink(root.path().join("outside"), src.join("sub")).unwrap();
    let mut rec = Recorder::new();
    let err = send_tree(&tree, &mut rec).unwrap_err();
    assert!(
        matches!(&err, TreeError::Replaced(p) if p == "src/sub"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&rec.bytes()).contains("SECRET"));

    // A real directory moved in its place is refused too (another inode).
    fs::remove_file(src.join("sub")).unwrap();
    fs::create_dir(src.join("sub")).unwrap();
    fs::write(src.join("sub/b.txt"), "SECRET").unwrap();
    let err = send_tree(&tree, &mut Recorder::new()).unwrap_err();
    assert!(
        matches!(&err, TreeError::Replaced(p) if p == "src/sub"),
        "{err}"
    );

    // And a file replaced by another file.
    fs::remove_dir_all(src.join("sub")).unwrap();
    fs::rename(root.path().join("moved"), src.join("sub")).unwrap();
    fs::write(src.join("sub/b.tmp"), "SECRET").unwrap();
    fs::rename(src.join("sub/b.tmp"), src.join("sub/b.txt")).unwrap();
    let mut rec = Recorder::new();
    let err = send_tree(&tree, &mut rec).unwrap_err();
    assert!(
        matches!(&err, TreeError::Replaced(p) if p == "src/sub/b.txt"),
        "{err}"
    );
    assert_eq!(rec.bytes(), b"alpha");
}

#[test]
fn symlinks_below_the_source_are_never_walked_and_the_source_link_is_kept_or_followed() {
    let root = fixture();
    let src = root.path().join("src");
    // A link out of the tree cannot be carried: refused at the scan, not followed.
    symlink(root.path().join("outside"), src.join("out")).unwrap();
    let err = scan(&src, SourceLink::Keep).unwrap_err();
    assert!(matches!(err, TreeError::Path(_)), "{err}");
    fs::remove_file(src.join("out")).unwrap();

    // The source itself a link: kept as a link, or followed when asked.
    symlink("src", root.path().join("alias")).unwrap();
    let kept = scan(&root.path().join("alias"), SourceLink::Keep).unwrap();
    assert_eq!(kept.entries().len(), 1);
    assert_eq!(kept.entries()[0].kind, SourceKind::Symlink("src".into()));
    let followed = scan(&root.path().join("alias"), SourceLink::Follow).unwrap();
    let paths: Vec<&str> = followed.entries().iter().map(|e| e.rel.as_str()).collect();
    assert_eq!(
        paths,
        ["alias", "alias/a.txt", "alias/sub", "alias/sub/b.txt"]
    );
    let mut rec = Recorder::new();
    send_tree(&followed, &mut rec).unwrap();
    assert_eq!(rec.bytes(), b"alphabravo");
    // A missing source is a plain not-found.
    let err = scan(&root.path().join("nothing"), SourceLink::Keep).unwrap_err();
    assert!(
        matches!(&err, TreeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
}

#[test]
fn a_file_that_shrank_fails_and_one_that_grew_sends_its_scanned_size() {
    let root = fixture();
    let src = root.path().join("src");
    let tree = scan(&src.join("a.txt"), SourceLink::Keep).unwrap();
    // Same inode required: truncate in place rather than replace.
    fs::OpenOptions::new()
        .write(true)
        .open(src.join("a.txt"))
        .unwrap()
        .set_len(2)
        .unwrap();
    let err = send_tree(&tree, &mut Recorder::new()).unwrap_err();
    assert!(err.to_string().contains("shrank"), "{err}");
    fs::write(src.join("a.txt"), "alphabet").unwrap();
    let mut rec = Recorder::new();
    send_tree(&tree, &mut rec).unwrap();
    assert_eq!(rec.bytes(), b"alpha");
    assert_eq!(rec.sent.last(), Some(&Sent::FileEnd));
}

fn file_entry(path: &str, size: u64, mode: u32) -> CpEntry {
    CpEntry {
        path: path.into(),
        mode,
        kind: CpKind::File { size },
    }
}

#[test]
fn the_writer_refuses_content_longer_or_shorter_than_announced() {
    let dest = tempfile::tempdir().unwrap();
    let mut w = TreeWriter::open(dest.path()).unwrap();
    w.entry(&file_entry("short", 5, 0o644)).unwrap();
    w.data(Bytes::from_static(b"abcd")).unwrap();
    let err = w.file_end().unwrap_err();
    assert!(err.to_string().contains("shorter"), "{err}");
    w.entry(&file_entry("long", 3, 0o644)).unwrap();
    let err = w.data(Bytes::from_static(b"abcd")).unwrap_err();
    assert!(err.to_string().contains("more content"), "{err}");
    // A file whose end never came.
    w.entry(&file_entry("unended", 1, 0o644)).unwrap();
    w.data(Bytes::from_static(b"a")).unwrap();
    assert!(w.finish().is_err());
    drop(w);
    assert_eq!(
        fs::read_dir(dest.path()).unwrap().count(),
        0,
        "nothing left"
    );

    // Set-id and sticky bits never written; a read-only directory still gets its children.
    let mut w = TreeWriter::open(dest.path()).unwrap();
    let dir = |path: &str, mode| CpEntry {
        path: path.into(),
        mode,
        kind: CpKind::Dir,
    };
    w.entry(&dir("d", 0o2555)).unwrap();
    w.entry(&file_entry("d/tool", 2, 0o7755)).unwrap();
    w.data(Bytes::from_static(b"hi")).unwrap();
    w.file_end().unwrap();
    assert_eq!(w.finish().unwrap(), (2, 2));
    assert_eq!(mode(&dest.path().join("d/tool")), 0o755);
    assert_eq!(mode(&dest.path().join("d")), 0o555);
}

#[test]
fn content_in_uneven_chunks_lands_whole_and_in_order() {
    // Chunks of odd sizes across several of the writer's 256 KiB batches, the last one partial:
    // every byte lands where it belongs, and nothing is visible before the file's end.
    let content: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
    let dest = tempfile::tempdir().unwrap();
    let mut w = TreeWriter::open(dest.path()).unwrap();
    w.entry(&file_entry("f", content.len() as u64, 0o644))
        .unwrap();
    let shared = Bytes::from(content.clone());
    let mut at = 0;
    for size in [1, 65_000, 200_000, 3, 65_519].into_iter().cycle() {
        let end = (at + size).min(content.len());
        w.data(shared.slice(at..end)).unwrap();
        at = end;
        if at == content.len() {
            break;
        }
    }
    assert!(!dest.path().join("f").exists(), "visible before its end");
    w.file_end().unwrap();
    assert_eq!(w.finish().unwrap(), (1, content.len() as u64));
    assert!(fs::read(dest.path().join("f")).unwrap() == content);
}

#[test]
fn a_destination_through_a_symlink_is_refused_when_links_are_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let real = root.path().join("real");
    fs::create_dir_all(real.join("sub")).unwrap();
    symlink(&real, root.path().join("link")).unwrap();
    fs::write(root.path().join("file"), "").unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();

    assert!(TreeWriter::open_no_symlinks(&s(&real.join("sub"))).is_ok());
    for (dest, link) in [
        (root.path().join("link"), root.path().join("link")),
        (root.path().join("link/sub"), root.path().join("link")),
    ] {
        let err = TreeWriter::open_no_symlinks(&s(&dest))
            .err()
            .expect("refused");
        match &err {
            TreeError::SymlinkInDestination {
                link: l, target, ..
            } => {
                assert_eq!(
                    (l.as_str(), target.as_str()),
                    (s(&link).as_str(), s(&real).as_str())
                );
            }
            e => panic!("{}: {e}", dest.display()),
        }
    }
    // Not a directory, missing: the usual errors (the client copies *as* such a path).
    for (dest, kind) in [
        ("file", std::io::ErrorKind::NotADirectory),
        ("missing", std::io::ErrorKind::NotFound),
    ] {
        let err = TreeWriter::open_no_symlinks(&s(&root.path().join(dest)))
            .err()
            .expect("refused");
        assert!(
            matches!(&err, TreeError::Io { source, .. } if source.kind() == kind),
            "{dest}: {err}"
        );
    }
    // The host's writer follows the path it is given (the user's choice), not below it.
    assert!(TreeWriter::open(&root.path().join("link")).is_ok());
}
