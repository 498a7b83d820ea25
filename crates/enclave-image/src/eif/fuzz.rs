//! The body of the `eif_reader` fuzz target (`fuzz/fuzz_targets/eif_reader.rs`).

use std::io;
use std::time::SystemTime;

use super::reader::EifReader;
use super::{cose, sign};

/// Runs every reader operation on arbitrary bytes; each must return, never panic. Public so
/// that a normal test (`tests/eif_errors.rs`) runs it over seed inputs too.
pub fn fuzz_one(data: &[u8]) {
    // Signature parsing is reachable through the reader only past the CRC check, which random
    // mutations rarely pass; exercise it on the raw input too.
    let _ = cose::decode_signature_section(data);
    let _ = cose::CoseSign1::from_bytes(data);
    let _ = super::app_spec::find_entry(&mut &data[..], super::app_spec::SPEC_ENTRY);
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    let Ok(mut reader) = EifReader::new(io::Cursor::new(data)) else {
        return;
    };
    let _ = reader.kernel();
    let _ = reader.cmdline();
    let _ = reader.metadata();
    if let Ok(Some(section)) = reader.signature_section() {
        let _ = sign::pcr8_of_section(&section);
        let _ = sign::verify_signature_section(&section, &[0; 48], at);
    }
    let _ = super::app_spec::read_spec(&mut reader);
    for n in 0..reader.ramdisk_count() {
        let _ = reader.copy_ramdisk_to(n, &mut io::sink());
    }
    let _ = reader.check_crc();
    let _ = reader.measure();
    let _ = reader.verify_signature(at);
}
