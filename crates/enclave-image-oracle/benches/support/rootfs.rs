//! The synthetic root filesystem of the build benchmark, written twice from one plan: as a
//! plain directory (for `dir:`) and as an OCI image layout with one gzip layer (for `oci:`).
//!
//! The plan is deterministic (fixed seeds): a few large files holding about 45% of the bytes,
//! the rest spread over ~2,000 files of log-uniformly distributed sizes (64 B to 512 KiB before
//! scaling), ~100 relative symlinks, and ~150 directories. Contents are pseudo-random but not
//! uniformly so, so the layer compresses roughly like a real one: "text" files are words from
//! a small vocabulary, "binary" files mix incompressible 4 KiB blocks (3 in 8) with sparse and
//! repetitive ones; gzip makes the layer about half the size of the tar.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// What one entry of the tree is.
pub enum Kind {
    Dir,
    File {
        size: u64,
        seed: u64,
        text: bool,
        mode: u32,
    },
    Symlink(String),
}

/// One entry, by its path relative to the root (no leading `/`).
pub struct Entry {
    pub path: String,
    pub kind: Kind,
}

/// Totals of a plan, for the report.
pub struct Summary {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub bytes: u64,
}

/// The entry the image's Cmd points at.
pub const APP: &str = "/opt/app/bin/app";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn mix(a: u64, b: u64) -> u64 {
    // splitmix64 of the pair, never 0 (xorshift's fixed point).
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

/// Plans a tree of about `total` bytes in about `file_count` regular files, parents first.
pub fn plan(total: u64, file_count: usize) -> Vec<Entry> {
    let mut rng = Rng(0x5EED_F00D_B007);
    let mut entries = Vec::new();
    let dir = |path: &str, entries: &mut Vec<Entry>| {
        entries.push(Entry {
            path: path.to_owned(),
            kind: Kind::Dir,
        })
    };
    for d in [
        "etc",
        "etc/app",
        "opt",
        "opt/app",
        "opt/app/bin",
        "opt/app/data",
        "opt/app/lib",
        "usr",
        "usr/bin",
        "usr/lib",
        "usr/share",
        "usr/share/doc",
        "var",
        "var/lib",
        "var/lib/app",
    ] {
        dir(d, &mut entries);
    }
    let doc_dirs = 120;
    for i in 0..doc_dirs {
        dir(&format!("usr/share/doc/pkg{i:03}"), &mut entries);
    }
    let lib_dirs = 16;
    for i in 0..lib_dirs {
        dir(&format!("usr/lib/mod{i:02}"), &mut entries);
    }

    // A few large files: 45% of the bytes.
    let big = [
        ("opt/app/data/model.bin", 0.20, false, 0o644),
        ("opt/app/lib/libapp.so", 0.10, false, 0o755),
        ("usr/lib/libbig.so.3", 0.08, false, 0o644),
        ("opt/app/data/assets.pak", 0.07, false, 0o644),
    ];
    let mut seed = 1u64;
    let mut file = |path: String, size: u64, text: bool, mode: u32, entries: &mut Vec<Entry>| {
        seed += 1;
        entries.push(Entry {
            path,
            kind: Kind::File {
                size,
                seed,
                text,
                mode,
            },
        });
    };
    let mut big_bytes = 0;
    for (path, share, text, mode) in big {
        let size = (total as f64 * share) as u64 + 4099;
        big_bytes += size;
        file(path.into(), size, text, mode, &mut entries);
    }
    file(APP[1..].into(), 3 << 20, false, 0o755, &mut entries);
    big_bytes += 3 << 20;

    // The rest: log-uniform sizes, scaled so that the total comes out right.
    let small_count = file_count.saturating_sub(big.len() + 1).max(1);
    let (lo, hi) = (64f64.ln(), (512.0 * 1024f64).ln());
    let raw: Vec<f64> = (0..small_count)
        .map(|_| (lo + (hi - lo) * rng.unit()).exp())
        .collect();
    let budget = total.saturating_sub(big_bytes) as f64;
    let scale = budget / raw.iter().sum::<f64>();
    for (i, r) in raw.iter().enumerate() {
        let size = (r * scale) as u64;
        let (path, text, mode) = match rng.below(10) {
            0..=3 => (
                format!("usr/share/doc/pkg{:03}/file{i:04}.txt", rng.below(doc_dirs)),
                true,
                0o644,
            ),
            4..=6 => (
                format!("usr/lib/mod{:02}/lib{i:04}.so.1", rng.below(lib_dirs)),
                false,
                0o644,
            ),
            7 => (format!("usr/bin/tool{i:04}"), false, 0o755),
            8 => (format!("etc/app/conf{i:04}.conf"), true, 0o644),
            _ => (format!("var/lib/app/state{i:04}.db"), false, 0o600),
        };
        file(path, size, text, mode, &mut entries);
    }

    // Symlinks, relative, like a distribution's library links.
    let libs: Vec<String> = entries
        .iter()
        .filter(|e| e.path.starts_with("usr/lib/mod") && e.path.ends_with(".so.1"))
        .map(|e| e.path.clone())
        .take(90)
        .collect();
    for lib in libs {
        let (parent, name) = lib.rsplit_once('/').unwrap_or(("", &lib));
        let link = format!("{parent}/{}", name.trim_end_matches(".1"));
        entries.push(Entry {
            path: link,
            kind: Kind::Symlink(name.to_owned()),
        });
    }
    for (path, target) in [
        ("usr/lib/libbig.so", "libbig.so.3"),
        ("usr/bin/app", "../../opt/app/bin/app"),
        ("opt/app/lib/libbig.so.3", "../../../usr/lib/libbig.so.3"),
        ("etc/app/current", "conf.d"),
        ("var/lib/app/model", "/opt/app/data/model.bin"),
    ] {
        entries.push(Entry {
            path: path.into(),
            kind: Kind::Symlink(target.into()),
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

pub fn summary(entries: &[Entry]) -> Summary {
    let mut s = Summary {
        files: 0,
        dirs: 0,
        symlinks: 0,
        bytes: 0,
    };
    for e in entries {
        match e.kind {
            Kind::Dir => s.dirs += 1,
            Kind::File { size, .. } => {
                s.files += 1;
                s.bytes += size;
            }
            Kind::Symlink(_) => s.symlinks += 1,
        }
    }
    s
}

const BLOCK: usize = 4096;

/// The content of one planned file, generated block by block as it is read.
pub struct Content {
    seed: u64,
    text: bool,
    left: u64,
    block: u64,
    buf: Vec<u8>,
    pos: usize,
    words: &'static [Vec<u8>],
}

fn vocabulary() -> &'static [Vec<u8>] {
    static WORDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        let mut rng = Rng(0xC0FFEE);
        (0..512)
            .map(|_| {
                let len = 2 + rng.below(9) as usize;
                (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
            })
            .collect()
    })
}

impl Content {
    pub fn new(size: u64, seed: u64, text: bool) -> Self {
        Self {
            seed,
            text,
            left: size,
            block: 0,
            buf: Vec::with_capacity(BLOCK),
            pos: 0,
            words: vocabulary(),
        }
    }

    fn refill(&mut self) {
        let mut rng = Rng(mix(self.seed, self.block));
        self.block += 1;
        self.pos = 0;
        self.buf.clear();
        if self.text {
            let mut line = 0;
            while self.buf.len() < BLOCK {
                self.buf
                    .extend_from_slice(&self.words[rng.below(512) as usize]);
                line += 1;
                self.buf.push(if line % 12 == 0 { b'\n' } else { b' ' });
            }
            self.buf.truncate(BLOCK);
            return;
        }
        match rng.below(8) {
            // Incompressible: 3 blocks in 8, like already-compressed data.
            0..=2 => {
                for _ in 0..BLOCK / 8 {
                    self.buf.extend_from_slice(&rng.next().to_le_bytes());
                }
            }
            // Sparse: zeros with a few values, like tables and padding.
            3 => {
                self.buf.resize(BLOCK, 0);
                for _ in 0..64 {
                    let at = rng.below(BLOCK as u64) as usize;
                    self.buf[at] = rng.next() as u8;
                }
            }
            // Repetitive: 16-byte snippets from a per-file set of 256, like machine code.
            _ => {
                let mut snippets = Rng(mix(self.seed, u64::MAX));
                let dict: Vec<u64> = (0..512).map(|_| snippets.next()).collect();
                while self.buf.len() < BLOCK {
                    let at = 2 * rng.below(256) as usize;
                    self.buf.extend_from_slice(&dict[at].to_le_bytes());
                    self.buf.extend_from_slice(&dict[at + 1].to_le_bytes());
                }
            }
        }
    }
}

impl Read for Content {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.buf.len() {
            self.refill();
        }
        let n = out
            .len()
            .min(self.buf.len() - self.pos)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Writes the plan as a directory at `root` (which must not exist).
pub fn write_dir(entries: &[Entry], root: &Path) -> io::Result<()> {
    fs::create_dir(root)?;
    fs::set_permissions(root, Permissions::from_mode(0o755))?;
    for e in entries {
        let path = root.join(&e.path);
        match &e.kind {
            Kind::Dir => {
                fs::create_dir(&path)?;
                fs::set_permissions(&path, Permissions::from_mode(0o755))?;
            }
            Kind::File {
                size,
                seed,
                text,
                mode,
            } => {
                let mut out = BufWriter::with_capacity(1 << 16, File::create(&path)?);
                io::copy(&mut Content::new(*size, *seed, *text), &mut out)?;
                out.into_inner().map_err(|e| e.into_error())?;
                fs::set_permissions(&path, Permissions::from_mode(*mode))?;
            }
            Kind::Symlink(target) => std::os::unix::fs::symlink(target, &path)?,
        }
    }
    Ok(())
}

/// Passes writes through while hashing them with SHA-256 and counting them.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hash.clone().finalize()))
    }
}

/// Sizes of the written layout, for the report.
pub struct Layer {
    /// The layer blob.
    pub blob: std::path::PathBuf,
    pub tar_len: u64,
    pub gz_len: u64,
}

fn put_blob(layout: &Path, bytes: &[u8]) -> io::Result<(String, u64)> {
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
    fs::write(layout.join("blobs/sha256").join(&digest[7..]), bytes)?;
    Ok((digest, bytes.len() as u64))
}

/// Writes the plan as an OCI image layout at `layout`, tagged `tag`, with one gzip layer
/// (flate2's default level, as `docker`/`buildah` use) and Cmd [`APP`].
pub fn write_oci(entries: &[Entry], layout: &Path, tag: &str) -> io::Result<Layer> {
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let tmp = blobs.join("layer.tmp");
    let file = Hashing::new(BufWriter::with_capacity(1 << 16, File::create(&tmp)?));
    let gz = GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(Hashing::new(gz));
    for e in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        match &e.kind {
            Kind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, format!("{}/", e.path), io::empty())?;
            }
            Kind::File {
                size,
                seed,
                text,
                mode,
            } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(*size);
                tar.append_data(&mut header, &e.path, Content::new(*size, *seed, *text))?;
            }
            Kind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                tar.append_link(&mut header, &e.path, target)?;
            }
        }
    }
    let hashing_gz = tar.into_inner()?;
    let (diff_id, tar_len) = (hashing_gz.digest(), hashing_gz.len);
    let mut file = hashing_gz.inner.finish()?;
    file.flush()?;
    let (layer_digest, gz_len) = (file.digest(), file.len);
    drop(file);
    let blob = blobs.join(&layer_digest[7..]);
    fs::rename(&tmp, &blob)?;

    let config = serde_json::json!({
        "architecture": match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        },
        "os": "linux",
        "config": { "Cmd": [APP] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let (config_digest, config_len) = put_blob(layout, &serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_len,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": gz_len,
        }],
    });
    let (manifest_digest, manifest_len) = put_blob(layout, &serde_json::to_vec(&manifest)?)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_len,
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(Layer {
        blob,
        tar_len,
        gz_len,
    })
}
