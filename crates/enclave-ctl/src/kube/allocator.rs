//! The `allocator-config` step of `node setup`: `etc/nitro_enclaves/allocator.yaml` (the
//! config of aws-nitro-enclaves-cli's allocator service) holds `memory_mib` and `cpu_count`.
//! It is edited line by line, so that its other keys and AWS's comments stay; the result is
//! parsed again before it replaces the file (atomically), and a file that cannot be edited
//! safely (not YAML, not a mapping, `cpu_pool` set, flow style) is reported and left alone.

use std::fs;
use std::path::Path;

use super::node::{io_err, read_optional, step, NodeError, NodeParams, Status, Step};
use super::write_atomically;

/// The allocator's config, under the root.
pub const ALLOCATOR_CONFIG: &str = "etc/nitro_enclaves/allocator.yaml";

/// `memory_mib` and `cpu_count` of an allocator.yaml's text; refuses what cannot be updated.
fn allocator_values(path: &Path, text: &str) -> Result<(Option<u64>, Option<u64>), NodeError> {
    let value: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|source| NodeError::AllocatorYaml {
            path: path.to_owned(),
            source,
        })?;
    let shape = |reason| NodeError::AllocatorShape {
        path: path.to_owned(),
        reason,
    };
    let map = match &value {
        yaml_serde::Value::Null => return Ok((None, None)),
        yaml_serde::Value::Mapping(map) => map,
        _ => return Err(shape("not a mapping of keys to values")),
    };
    if map.contains_key("cpu_pool") {
        return Err(shape(
            "sets cpu_pool, which conflicts with cpu_count; remove it to let node setup manage the CPUs",
        ));
    }
    Ok((
        map.get("memory_mib").and_then(yaml_serde::Value::as_u64),
        map.get("cpu_count").and_then(yaml_serde::Value::as_u64),
    ))
}

pub(super) fn allocator_config(p: &NodeParams) -> Result<Step, NodeError> {
    const STEP: &str = "allocator-config";
    let path = p.root.join(ALLOCATOR_CONFIG);
    let existing = read_optional(&path)?;
    let (memory, cpus) = match &existing {
        Some((text, _)) => allocator_values(&path, text)?,
        None => (None, None),
    };
    let want = format!("memory_mib {}, cpu_count {}", p.memory_mib, p.cpus);
    if memory == Some(p.memory_mib) && cpus == Some(u64::from(p.cpus)) {
        return Ok(step(
            Status::Ok,
            STEP,
            format!("{}: {want}", path.display()),
        ));
    }
    let show = |v: Option<u64>| v.map_or("unset".to_owned(), |v| v.to_string());
    let was = match &existing {
        Some(_) => format!("memory_mib {}, cpu_count {}", show(memory), show(cpus)),
        None => "no file".to_owned(),
    };
    if p.check {
        return Ok(step(
            Status::Missing,
            STEP,
            format!("{}: {was}, want {want}", path.display()),
        ));
    }
    let old = existing.as_ref().map_or("", |(text, _)| text.as_str());
    let new = set_keys(
        old,
        &[
            ("memory_mib", p.memory_mib.to_string()),
            ("cpu_count", p.cpus.to_string()),
        ],
    );
    // The edit is by line: make sure it said what was meant before writing it.
    let edited = allocator_values(&path, &new).ok();
    if edited != Some((Some(p.memory_mib), Some(u64::from(p.cpus)))) {
        return Err(NodeError::AllocatorShape {
            path,
            reason: "memory_mib or cpu_count is not a plain top-level `key: value` line; set them by hand",
        });
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    }
    write_atomically(&path, new.as_bytes(), existing.as_ref().map(|(_, m)| m))
        .map_err(io_err("writing", &path))?;
    Ok(step(
        Status::Changed,
        STEP,
        format!("{}: {was} -> {want}", path.display()),
    ))
}

/// `text` with each top-level `key: …` line replaced by `key: value`, missing keys appended.
fn set_keys(text: &str, keys: &[(&str, String)]) -> String {
    let mut found = vec![false; keys.len()];
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let hit = keys.iter().position(|(key, _)| {
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        });
        match hit {
            Some(i) => {
                out.push_str(&format!("{}: {}\n", keys[i].0, keys[i].1));
                found[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for (i, (key, value)) in keys.iter().enumerate() {
        if !found[i] {
            out.push_str(&format!("{key}: {value}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keys_replaces_top_level_lines_and_keeps_the_rest() {
        let text = "---\n# memory\nmemory_mib: 512\n#\ncpu_count: 2\n# cpu_pool: 2,3\n";
        let new = set_keys(
            text,
            &[("memory_mib", "1024".into()), ("cpu_count", "4".into())],
        );
        assert_eq!(
            new,
            "---\n# memory\nmemory_mib: 1024\n#\ncpu_count: 4\n# cpu_pool: 2,3\n"
        );
        let added = set_keys("other: 1", &[("cpu_count", "4".into())]);
        assert_eq!(added, "other: 1\ncpu_count: 4\n");
    }
}
