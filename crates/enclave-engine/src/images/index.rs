//! The EIFs the engine API built: one JSON record a build in `<root>/images/<id>.json`, the id
//! being the SHA-256 of the EIF as written. The daemon keeps nothing else: like the enclaves'
//! records, the list survives a daemon restart and is read by whoever opens the directory.

use std::path::{Path, PathBuf};

use enclave_image::eif::{EifReader, Measurements};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};
use crate::state::StateRoot;
use crate::util;

/// The images directory under the state root.
pub const IMAGES_DIR: &str = "images";

/// One build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRecord {
    /// SHA-256 of the EIF, hex.
    pub id: String,
    /// Where the EIF is.
    pub eif: PathBuf,
    /// The spec it was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<PathBuf>,
    /// The image name of its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was built (RFC 3339).
    pub built: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its PCRs, hex (`PCR0`, `PCR1`, `PCR2`, and `PCR8` when signed).
    pub measurements: std::collections::BTreeMap<String, String>,
}

/// The images directory of `root`, made private when missing.
pub fn dir(root: &StateRoot) -> Result<PathBuf> {
    let dir = root.path().join(IMAGES_DIR);
    crate::private_dir::make_private_dir(&dir)?;
    Ok(dir)
}

/// The PCRs as the record keeps them.
pub fn pcr_map(m: &Measurements) -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::from([
        ("PCR0".to_owned(), m.pcr0_hex()),
        ("PCR1".to_owned(), m.pcr1_hex()),
        ("PCR2".to_owned(), m.pcr2_hex()),
    ]);
    if let Some(pcr8) = m.pcr8_hex() {
        map.insert("PCR8".into(), pcr8);
    }
    map
}

/// The SHA-256 of a file, hex.
pub fn file_digest(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| EngineError::io(path, e))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Records a build of `eif` (measured again here: the record says what the file holds).
pub fn record(
    root: &StateRoot,
    eif: &Path,
    spec: Option<&Path>,
    name: Option<&str>,
) -> Result<ImageRecord> {
    let measurements = EifReader::open(eif)
        .and_then(|mut r| r.measure())
        .map_err(|error| EngineError::Eif {
            path: eif.to_path_buf(),
            error,
        })?;
    let size = std::fs::metadata(eif)
        .map_err(|e| EngineError::io(eif, e))?
        .len();
    let rec = ImageRecord {
        id: file_digest(eif)?,
        eif: eif.to_path_buf(),
        spec: spec.map(Path::to_path_buf),
        name: name.map(str::to_owned),
        built: util::now_rfc3339(),
        size,
        measurements: pcr_map(&measurements),
    };
    util::write_json_atomic(&dir(root)?.join(format!("{}.json", rec.id)), &rec)?;
    Ok(rec)
}

/// Every image recorded, oldest first; unreadable records are skipped with a warning.
pub fn list(root: &StateRoot) -> Result<Vec<ImageRecord>> {
    let dir = dir(root)?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| EngineError::io(&dir, e))? {
        let path = entry.map_err(|e| EngineError::io(&dir, e))?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).ok())
        {
            Some(rec) => out.push(rec),
            None => tracing::warn!(path = %path.display(), "unreadable image record skipped"),
        }
    }
    out.sort_by(|a, b| a.built.cmp(&b.built).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The image `query` names: its full id or a unique prefix of it.
pub fn find(root: &StateRoot, query: &str) -> Result<ImageRecord> {
    let all = list(root)?;
    let hits: Vec<&ImageRecord> = all
        .iter()
        .filter(|r| !query.is_empty() && r.id.starts_with(query))
        .collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(EngineError::NoSuchImage(query.to_owned())),
        many => Err(EngineError::Invalid(format!(
            "{query:?} matches {} images; give more of the id",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_listed_found_by_prefix_and_unknown_ones_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let root = StateRoot::open(&tmp.path().join("state")).unwrap();
        let eif = tmp.path().join("a.eif");
        crate::eif::tests::write_eif(&eif, b"the app");
        let rec = record(&root, &eif, None, Some("a")).unwrap();
        assert_eq!(rec.id, file_digest(&eif).unwrap());
        assert_eq!(rec.measurements.len(), 3);
        assert_eq!(list(&root).unwrap(), vec![rec.clone()]);
        assert_eq!(find(&root, &rec.id[..8]).unwrap(), rec);
        assert!(matches!(
            find(&root, "ffff"),
            Err(EngineError::NoSuchImage(_))
        ));
        assert!(matches!(find(&root, ""), Err(EngineError::NoSuchImage(_))));
        // A record that is not one is skipped, not fatal.
        std::fs::write(dir(&root).unwrap().join("junk.json"), b"{").unwrap();
        assert_eq!(list(&root).unwrap().len(), 1);
    }
}
