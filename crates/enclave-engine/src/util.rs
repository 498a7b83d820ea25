//! Small helpers: time stamps, random ids, atomic writes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{EngineError, Result};

/// Now, in RFC 3339 (UTC, nanoseconds).
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// A time in RFC 3339.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// Parses RFC 3339.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// A point in time as `--since`/`--until` and the API's `since`/`until` take it: RFC 3339, or a
/// duration ago (`30s`, `5m`, `2h`; a bare number is seconds). `None` when it is neither.
pub fn parse_when(s: &str) -> Option<OffsetDateTime> {
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let secs = match &s[split..] {
        "s" | "" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return None,
    };
    // A century back at most: the subtraction cannot overflow.
    let ago = std::time::Duration::from_secs(secs.min(100 * 365 * 86_400));
    Some(OffsetDateTime::now_utc() - ago)
}

/// A new random 64-hex-digit id (as Docker's).
pub fn random_id() -> Result<String> {
    random_hex::<32>()
}

/// `N` random bytes from the kernel, as hex.
fn random_hex<const N: usize>() -> Result<String> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(EngineError::Random)?;
    Ok(hex::encode(bytes))
}

/// A file being written next to its final path, renamed over it by [`commit`](Self::commit).
///
/// It is created `O_CREAT|O_EXCL|O_NOFOLLOW` under a random name (`.<name>.tmp-<16 hex>`) in
/// the target's directory: a file or symlink planted at a name the engine will use is never
/// opened, let alone followed, and two writers never share a temporary. Dropped without
/// `commit`, it is removed.
pub struct TempFile {
    file: fs::File,
    path: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl TempFile {
    /// Creates the temporary for `target`, with permission bits `mode`.
    pub fn new(target: &Path, mode: u32) -> Result<Self> {
        let dir = target.parent().unwrap_or(Path::new("."));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = dir.join(format!(".{name}.tmp-{}", random_hex::<8>()?));
        let file = create_exclusive(&path, mode).map_err(|e| EngineError::io(&path, e))?;
        Ok(Self {
            file,
            path,
            target: target.to_owned(),
            committed: false,
        })
    }

    /// The open file, to write into.
    pub fn file(&mut self) -> &mut fs::File {
        &mut self.file
    }

    /// Syncs the file and renames it over the target (which, if it is a symlink, is replaced,
    /// not followed).
    pub fn commit(mut self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| EngineError::io(&self.path, e))?;
        fs::rename(&self.path, &self.target).map_err(|e| EngineError::io(&self.target, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates `path`, which must not exist (not even as a dangling symlink), for writing.
fn create_exclusive(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .mode(mode)
        .open(path)
}

/// Writes `bytes` to `path` atomically (a [`TempFile`], fsync, rename), mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = TempFile::new(path, 0o600)?;
    tmp.file()
        .write_all(bytes)
        .map_err(|e| EngineError::io(path, e))?;
    tmp.commit()
}

/// Serialises `value` as pretty JSON into `path`, atomically.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|error| EngineError::Json {
        path: path.to_owned(),
        error,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads and parses a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|error| EngineError::Json {
        path: path.to_owned(),
        error,
    })
}

/// The last `n` lines of a text, as one string.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_digits_and_differ() {
        let a = random_id().unwrap();
        let b = random_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_json_atomic(&p, &serde_json::json!({"a": 1})).unwrap();
        write_json_atomic(&p, &serde_json::json!({"a": 2})).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["a"], 2);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn temporaries_have_unpredictable_names_and_vanish_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        let a = TempFile::new(&target, 0o600).unwrap();
        let b = TempFile::new(&target, 0o600).unwrap();
        assert_ne!(a.path, b.path);
        let name = a.path.file_name().unwrap().to_str().unwrap().to_owned();
        let suffix = name.strip_prefix(".state.json.tmp-").unwrap();
        assert!(
            suffix.len() == 16 && suffix.bytes().all(|c| c.is_ascii_hexdigit()),
            "{name}"
        );
        drop((a, b));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// Symlinks planted where the engine writes: at the target, at the fixed temporary name
    /// older versions used, and (to show what `O_EXCL|O_NOFOLLOW` does when a random name is
    /// hit) at the very name of a temporary. None is followed; the files outside stay as they
    /// were, and a dangling link does not create its target.
    #[test]
    fn planted_symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let target = dir.path().join("state.json");
        let old_tmp = dir
            .path()
            .join(format!(".state.json.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        write_atomic(&target, b"{}").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!fs::symlink_metadata(&target).unwrap().is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"{}");

        let planted = dir.path().join(".x.tmp-0123456789abcdef");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let e = create_exclusive(&planted, 0o600).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let dangling = dir.path().join(".y.tmp-0123456789abcdef");
        let would_be = outside.path().join("created");
        std::os::unix::fs::symlink(&would_be, &dangling).unwrap();
        assert!(create_exclusive(&dangling, 0o600).is_err());
        assert!(!would_be.exists());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
    }
}
