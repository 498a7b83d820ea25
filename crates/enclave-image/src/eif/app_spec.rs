//! Reading the measured enclave spec back out of an EIF.
//!
//! The build stores the normalised spec as `enclave/spec.json` in the first app ramdisk (a newc
//! cpio archive). The host needs it at `run` time: the ingress ports the enclave accepts and the
//! egress allow-list the host proxy re-checks are the measured ones, not what the operator says.
//! Entries are written in sorted order, so `enclave/…` comes before `rootfs/…` and only the head
//! of the ramdisk is read.

use std::io::{self, Read, Seek};

use enclave_spec::EnclaveSpec;

use super::reader::{EifReader, ReadError};

/// The spec's path inside the app ramdisk (without the leading `/`).
pub const SPEC_ENTRY: &str = "enclave/spec.json";
/// Entries looked at before giving up (the spec is among the first few).
const MAX_ENTRIES: usize = 64;
/// The largest spec accepted.
const MAX_SPEC_LEN: u64 = 1 << 20;
/// The longest entry name accepted.
const MAX_NAME_LEN: u64 = 4096;
const HEADER_LEN: usize = 110;

/// Why the spec could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AppSpecError {
    /// The EIF itself is unreadable.
    #[error(transparent)]
    Eif(#[from] ReadError),
    /// The ramdisk is not the cpio archive the build writes.
    #[error("the app ramdisk is not a newc cpio archive: {0}")]
    Cpio(String),
    /// The spec entry is there but does not parse.
    #[error("the measured spec ({SPEC_ENTRY}) is invalid: {0}")]
    Spec(String),
    /// I/O.
    #[error("reading the app ramdisk: {0}")]
    Io(#[from] io::Error),
}

/// The measured spec of an EIF built by enclave-engine, or `None` when the EIF has no
/// `enclave/spec.json` near the start of its app ramdisk, or an app ramdisk that is not an
/// uncompressed newc archive (an EIF from another tool).
pub fn read_spec<R: Read + Seek>(
    eif: &mut EifReader<R>,
) -> Result<Option<EnclaveSpec>, AppSpecError> {
    if eif.ramdisk_count() < 2 {
        return Ok(None);
    }
    let mut ramdisk = eif.ramdisk(1)?;
    let Some(bytes) = find_entry(&mut ramdisk, SPEC_ENTRY)? else {
        return Ok(None);
    };
    let spec: EnclaveSpec =
        serde_json::from_slice(&bytes).map_err(|e| AppSpecError::Spec(e.to_string()))?;
    spec.validate()
        .map_err(|e| AppSpecError::Spec(e.to_string()))?;
    Ok(Some(spec))
}

/// Scans a newc archive for the regular file `name`; returns its content.
pub(super) fn find_entry(r: &mut impl Read, name: &str) -> Result<Option<Vec<u8>>, AppSpecError> {
    let bad = |m: String| AppSpecError::Cpio(m);
    for entry in 0..MAX_ENTRIES {
        let mut header = [0u8; HEADER_LEN];
        match r.read_exact(&mut header) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            other => other?,
        }
        if &header[..6] != b"070701" {
            // Not a newc archive from the start (nitro-cli's ramdisks may be compressed): an EIF
            // of another tool, without a spec. Past the first entry it is a broken archive.
            if entry == 0 {
                return Ok(None);
            }
            return Err(bad("bad magic".into()));
        }
        let field = |i: usize| -> Result<u64, AppSpecError> {
            let raw = &header[6 + 8 * i..6 + 8 * (i + 1)];
            std::str::from_utf8(raw)
                .ok()
                .and_then(|s| u32::from_str_radix(s, 16).ok())
                .map(u64::from)
                .ok_or_else(|| bad(format!("bad header field {i}")))
        };
        let mode = field(1)?;
        let file_size = field(6)?;
        let name_size = field(11)?;
        if name_size == 0 || name_size > MAX_NAME_LEN {
            return Err(bad(format!("entry name of {name_size} bytes")));
        }
        let mut entry_name = vec![0u8; name_size as usize];
        r.read_exact(&mut entry_name)?;
        skip(r, pad4(HEADER_LEN as u64 + name_size))?;
        let entry_name = entry_name.strip_suffix(&[0]).unwrap_or(&entry_name);
        if entry_name == b"TRAILER!!!" {
            return Ok(None);
        }
        let is_regular = mode & 0o170000 == 0o100000;
        if entry_name == name.as_bytes() && is_regular {
            if file_size > MAX_SPEC_LEN {
                return Err(AppSpecError::Spec(format!(
                    "{file_size} bytes is too large"
                )));
            }
            let mut data = vec![0u8; file_size as usize];
            r.read_exact(&mut data)?;
            return Ok(Some(data));
        }
        skip(r, file_size + pad4(file_size))?;
    }
    Ok(None)
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::{CpioWriter, EntryMeta};

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new(), 0);
        for (name, data) in entries {
            w.add_file(
                name.as_bytes(),
                EntryMeta::root(0o644),
                &data[..],
                data.len() as u64,
            )
            .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn finds_the_entry_and_stops_at_the_trailer() {
        let a = archive(&[("enclave/app.json", b"{}"), (SPEC_ENTRY, b"{\"x\":1}")]);
        assert_eq!(
            find_entry(&mut &a[..], SPEC_ENTRY).unwrap().as_deref(),
            Some(&b"{\"x\":1}"[..])
        );
        assert_eq!(find_entry(&mut &a[..], "missing").unwrap(), None);
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let a = archive(&[(SPEC_ENTRY, b"{\"x\":1}")]);
        // Not newc at all (e.g. a gzip ramdisk of another tool): no spec, not an error.
        let mut gzip = vec![0x1f, 0x8b, 8, 0];
        gzip.resize(200, b'x');
        assert!(find_entry(&mut &gzip[..], SPEC_ENTRY).unwrap().is_none());
        // A newc archive that breaks after its first entry: an error.
        let mut broken = archive(&[("enclave/app.json", b"{}")]);
        let second = 1 + broken[1..].windows(6).position(|w| w == b"070701").unwrap();
        broken[second..second + 6].copy_from_slice(b"xxxxxx");
        assert!(find_entry(&mut &broken[..], SPEC_ENTRY).is_err());
        // Truncated before a header: no entry; inside an entry: an error.
        assert!(find_entry(&mut &a[..10], SPEC_ENTRY).unwrap().is_none());
        for cut in [111, 120, 130] {
            assert!(
                find_entry(&mut &a[..cut], SPEC_ENTRY).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad_size = a.clone();
        bad_size[6 + 8 * 11..6 + 8 * 12].copy_from_slice(b"FFFFFFFF");
        assert!(find_entry(&mut &bad_size[..], SPEC_ENTRY).is_err());
    }
}
