//! Body of the fuzz target for what a reader takes from the bucket (the records). Shared by
//! `fuzz/fuzz_targets/file_record.rs` and by `cargo test` over seeds, so the seeds run on every
//! test run, not only under libFuzzer.

use super::check::{Checked, KvEntry, RecordChecker};
use crate::vrf::{Epoch, SecretKey};

/// Arbitrary bytes as a bucket value through [`RecordChecker`], under the key of the path
/// they name and under keys that hold no record: it may refuse, never panic, and what it
/// accepts it remembers.
pub fn record_check(data: &[u8]) {
    let key = SecretKey::from_seed([7; 32]).public_key();
    let mut checker = RecordChecker::new(key, Epoch([1; 32]));
    let value = KvEntry::Value(data.to_vec());
    // The key of the path the record names, when it names one, so the checks past the key
    // comparison run too.
    let path_key = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v.get("path")?.as_str().map(super::kv_key))
        .unwrap_or_else(|| super::kv_key("/x"));
    for key in [path_key.as_str(), "startup-document", ""] {
        match checker.check(key, &value) {
            Ok(Checked::File {
                path, generation, ..
            })
            | Ok(Checked::Removed { path, generation }) => {
                assert_eq!(checker.seen(&path), Some(generation));
            }
            Err(_) => {}
        }
    }
}
