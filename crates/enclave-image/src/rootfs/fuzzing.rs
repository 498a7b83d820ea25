//! The body of the `layer_reader` fuzz target, public so that a normal test runs it on seeds.

use std::io;

use super::{Limits, RootfsTree};
use crate::cpio::CpioWriter;
use crate::source::decompress;

/// Tiny limits, so that inputs the fuzzer can reach also go over each of them.
const TIGHT: Limits = Limits {
    layer_bytes: 8 * 1024,
    rootfs_bytes: 12 * 1024,
    entries: 6,
};

/// Applies `data` as a layer, once as a plain tar (with the default limits and with tight
/// ones) and once through the compression sniffing, and writes each resulting tree to a cpio
/// into `io::sink()`. Errors are expected; panics, hangs and unbounded allocations are the bugs
/// looked for.
pub fn fuzz_layer(data: &[u8]) {
    // A layer that fails half-way leaves a partial tree, which must still write safely.
    let mut plain = RootfsTree::new();
    let _ = plain.apply_layer("fuzz", data);
    write_to_sink(&plain);
    let mut tight = RootfsTree::with_limits(TIGHT);
    if tight.apply_layer("fuzz-1", data).is_ok() {
        let _ = tight.apply_layer("fuzz-2", data);
    }
    write_to_sink(&tight);
    if let Ok((_, reader)) = decompress(data) {
        let mut stacked = RootfsTree::new();
        let _ = stacked.apply_layer("fuzz-1", reader);
        // The plain bytes on top exercise whiteouts and replacements against lower entries.
        let _ = stacked.apply_layer("fuzz-2", data);
        write_to_sink(&stacked);
    }
}

fn write_to_sink(tree: &RootfsTree) {
    let mut writer = CpioWriter::new(io::sink(), 0);
    if tree.write_cpio("rootfs", &mut writer).is_ok() {
        let _ = writer.finish();
    }
}
