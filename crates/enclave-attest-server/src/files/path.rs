//! Path rules: requested paths are absolute, lexically normalised, never contain `..`, and must
//! lie under a root; filesystem paths from the walker and the watcher are mapped back to the
//! names clients use.

use std::path::{Component, Path, PathBuf};

use super::FileError;

/// One root of the spec.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    /// The root as named in the spec, lexically normalised: the prefix of every served path.
    pub name: PathBuf,
    /// The root with every symbolic link resolved: where the walker and watcher look. Kept
    /// apart from `name` so a root that is itself a link (e.g. `/srv` -> `/data/srv`) still
    /// serves the names the spec promised.
    pub real: PathBuf,
}

/// The spec's roots.
#[derive(Debug, Clone)]
pub(crate) struct Roots {
    list: Vec<Root>,
}

/// A path resolved against the roots: its root, the path relative to it, and its served name.
#[derive(Debug, Clone)]
pub(crate) struct Located<'a> {
    pub root: &'a Root,
    pub rel: PathBuf,
    pub name: String,
}

impl Located<'_> {
    /// Where the file is on the filesystem.
    pub fn real(&self) -> PathBuf {
        self.root.real.join(&self.rel)
    }
}

impl Roots {
    /// Normalises and resolves the spec's roots; each must be an existing directory.
    pub fn new(specs: &[String]) -> Result<Roots, FileError> {
        if specs.is_empty() {
            return Err(FileError::Spec("no roots".into()));
        }
        let mut list = Vec::with_capacity(specs.len());
        for spec in specs {
            let name = normalise(spec)
                .map_err(|reason| FileError::Spec(format!("root {spec:?} {reason}")))?;
            let real = std::fs::canonicalize(&name)
                .map_err(|e| FileError::Spec(format!("root {spec:?}: {e}")))?;
            if !real.is_dir() {
                return Err(FileError::Spec(format!("root {spec:?} is not a directory")));
            }
            list.push(Root { name, real });
        }
        Ok(Roots { list })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Root> {
        self.list.iter()
    }

    /// The roots' names, comma-separated, for error messages.
    pub fn describe(&self) -> String {
        let names: Vec<_> = self
            .list
            .iter()
            .map(|r| r.name.display().to_string())
            .collect();
        names.join(", ")
    }

    /// Resolves a path a client asked for. `max_len` bounds the request before any work.
    pub fn locate_request(&self, path: &str, max_len: usize) -> Result<Located<'_>, FileError> {
        if path.len() > max_len {
            return Err(FileError::InvalidPath {
                reason: format!("{} bytes long", path.len()),
                max: max_len,
            });
        }
        if path.contains('\0') {
            return Err(FileError::InvalidPath {
                reason: "contains NUL".into(),
                max: max_len,
            });
        }
        let outside = |reason| FileError::OutsideRoots {
            path: path.to_string(),
            reason,
            roots: self.describe(),
        };
        let name = normalise(path).map_err(outside)?;
        self.list
            .iter()
            .find_map(|root| {
                let rel = name.strip_prefix(&root.name).ok()?;
                Some(Located {
                    root,
                    rel: rel.to_path_buf(),
                    name: name.to_str()?.to_string(),
                })
            })
            .ok_or_else(|| outside("not under any root"))
    }

    /// Resolves a filesystem path (from the walker or the watcher, under a root's real path,
    /// or under its name when they differ). `None` when it is under no root or not UTF-8.
    pub fn locate_fs(&self, fs_path: &Path) -> Option<Located<'_>> {
        self.list.iter().find_map(|root| {
            let rel = fs_path
                .strip_prefix(&root.real)
                .or_else(|_| fs_path.strip_prefix(&root.name))
                .ok()?;
            // The watcher reports paths as the kernel spelled them: refuse anything that is
            // not a plain descent so a name can never climb out of its root.
            if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
                return None;
            }
            let name = root.name.join(rel);
            Some(Located {
                root,
                rel: rel.to_path_buf(),
                name: name.to_str()?.to_string(),
            })
        })
    }

    /// Whether `real` (a fully resolved path) is under some root's real path.
    pub fn contains_real(&self, real: &Path) -> bool {
        self.list.iter().any(|r| real.starts_with(&r.real))
    }
}

/// Lexical normalisation: absolute, `.` and repeated `/` dropped, any `..` refused (not
/// resolved: `/srv/a/../b` may name something else once links are involved).
pub(crate) fn normalise(path: &str) -> Result<PathBuf, &'static str> {
    if !path.starts_with('/') {
        return Err("is not absolute");
    }
    let mut out = PathBuf::from("/");
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("has a `..` component"),
            part => out.push(part),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_rules() {
        assert_eq!(normalise("/a//b/./c/").unwrap(), Path::new("/a/b/c"));
        assert_eq!(normalise("/").unwrap(), Path::new("/"));
        assert!(normalise("a/b").is_err());
        assert!(normalise("/a/../b").is_err());
        assert!(normalise("/a/..").is_err());
        assert_eq!(normalise("/a/..b").unwrap(), Path::new("/a/..b"));
    }

    #[test]
    fn locate_request_refuses_escapes() {
        let dir = std::env::temp_dir();
        let roots = Roots::new(&[dir.to_str().unwrap().to_string()]).unwrap();
        let root = dir.to_str().unwrap().trim_end_matches('/');
        let ok = roots
            .locate_request(&format!("{root}//x/./y"), 4096)
            .unwrap();
        assert_eq!(ok.rel, Path::new("x/y"));
        for bad in [
            "/etc/passwd",
            &format!("{root}/../x"),
            "relative",
            &format!("{root}x/y"),
        ] {
            let err = roots.locate_request(bad, 4096).unwrap_err();
            assert!(
                matches!(err, FileError::OutsideRoots { .. }),
                "{bad}: {err}"
            );
        }
        assert!(matches!(
            roots.locate_request(&"/a".repeat(3000), 4096),
            Err(FileError::InvalidPath { .. })
        ));
        assert!(roots.locate_fs(Path::new("/nowhere/x")).is_none());
    }
}
