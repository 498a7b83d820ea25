//! Tar extension headers (PAX `x`/`g`, GNU long names `L` and long links `K`), read here rather
//! than by the tar crate.
//!
//! The tar crate reads an extension header's data whole into a `Vec` inside its entries
//! iterator, sized by what the header declares. In a compressed layer a header can declare
//! gigabytes and a few MiB of gzip can deliver them, so the layer is read in the crate's raw
//! mode (one tar header at a time, nothing interpreted) and the extension headers are handled
//! here: their declared size is checked against [`MAX_EXTENSION_HEADER`] before a byte of them
//! is read, then they are applied to the entry that follows, as the crate would have.

use std::io::{self, Read};

use tar::EntryType;

use super::limits::{ExtensionKind, LimitExceeded, MAX_EXTENSION_HEADER};
use super::EntryProblem;

/// Why an extension header could not be taken.
#[derive(Debug)]
pub(super) enum ExtensionError {
    /// It declares more than the cap.
    TooLarge(LimitExceeded),
    /// A second header of the same kind before the entry they describe.
    Duplicate(ExtensionKind),
    /// Its data could not be read in full.
    Read(io::Error),
}

/// The extension headers seen since the last entry, waiting for the entry they describe.
#[derive(Debug, Default)]
pub(super) struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

/// An entry's path, link target and owners once its extension headers are applied.
#[derive(Debug)]
pub(super) struct Described {
    pub(super) path: Vec<u8>,
    pub(super) link: Option<Vec<u8>>,
    pub(super) uid: Option<u64>,
    pub(super) gid: Option<u64>,
}

impl Extensions {
    /// If `entry` is an extension header, takes it and returns `true`; `false` for an entry
    /// proper. The declared size is checked before anything is read.
    pub(super) fn take_header<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<bool, ExtensionError> {
        let kind = match entry.header().entry_type() {
            EntryType::XHeader => ExtensionKind::Pax,
            EntryType::XGlobalHeader => ExtensionKind::PaxGlobal,
            EntryType::GNULongName => ExtensionKind::GnuLongName,
            EntryType::GNULongLink => ExtensionKind::GnuLongLink,
            _ => return Ok(false),
        };
        let declared = entry.size();
        if declared > MAX_EXTENSION_HEADER {
            return Err(ExtensionError::TooLarge(LimitExceeded::ExtensionHeader {
                kind,
                declared,
                cap: MAX_EXTENSION_HEADER,
            }));
        }
        let slot = match kind {
            // A global header's defaults (mtime, charset, ...) concern nothing we keep; the
            // tar reader skips its data.
            ExtensionKind::PaxGlobal => return Ok(true),
            ExtensionKind::Pax => &mut self.pax,
            ExtensionKind::GnuLongName => &mut self.long_name,
            ExtensionKind::GnuLongLink => &mut self.long_link,
        };
        if slot.is_some() {
            return Err(ExtensionError::Duplicate(kind));
        }
        // Bounded by the check above, so the capacity is too.
        let mut data = Vec::with_capacity(declared as usize);
        entry.read_to_end(&mut data).map_err(ExtensionError::Read)?;
        if data.len() as u64 != declared {
            return Err(ExtensionError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{kind} header truncated"),
            )));
        }
        *slot = Some(data);
        Ok(true)
    }

    /// Whether headers are waiting for an entry (at the end of the archive: a truncated layer).
    pub(super) fn pending(&self) -> bool {
        self.long_name.is_some() || self.long_link.is_some() || self.pax.is_some()
    }

    /// Applies the waiting headers to `entry` and clears them. GNU long names win over PAX
    /// paths, which win over the tar header's own fields, as in the tar crate.
    pub(super) fn describe<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
    ) -> Result<Described, EntryProblem> {
        let taken = std::mem::take(self);
        let mut described = Described {
            path: entry.path_bytes().into_owned(),
            link: entry.link_name_bytes().map(|l| l.into_owned()),
            uid: None,
            gid: None,
        };
        if let Some(records) = &taken.pax {
            for record in pax_records(records) {
                let (key, value) = record?;
                match key {
                    b"path" => described.path = value.to_vec(),
                    b"linkpath" => described.link = Some(value.to_vec()),
                    b"uid" => described.uid = Some(decimal(value, "uid")?),
                    b"gid" => described.gid = Some(decimal(value, "gid")?),
                    b"size" => {
                        // The raw reader frames entries by the header's size; a PAX size that
                        // differs (only needed past 8 GiB, beyond what a ramdisk can hold)
                        // would desynchronise it.
                        let pax = decimal(value, "size")?;
                        if pax != entry.size() {
                            return Err(EntryProblem::PaxSize {
                                pax,
                                header: entry.size(),
                            });
                        }
                    }
                    key if key.starts_with(b"GNU.sparse.") => {
                        return Err(EntryProblem::UnsupportedType("PAX sparse file".into()));
                    }
                    _ => {}
                }
            }
        }
        if let Some(name) = taken.long_name {
            described.path = until_nul(name);
        }
        if let Some(link) = taken.long_link {
            described.link = Some(until_nul(link));
        }
        Ok(described)
    }
}

/// GNU tar writes long names as C strings.
fn until_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    if let Some(end) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(end);
    }
    bytes
}

/// The records of a PAX header: `<length> <key>=<value>\n`, where the decimal length counts the
/// whole record (so values may hold newlines).
fn pax_records(mut data: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), EntryProblem>> + '_ {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        let record = (|| {
            let space = data.iter().position(|&b| b == b' ')?;
            let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
            // The record must hold its length, the space and the newline.
            if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
                return None;
            }
            let body = &data[space + 1..len - 1];
            let equals = body.iter().position(|&b| b == b'=')?;
            data = &data[len..];
            Some((&body[..equals], &body[equals + 1..]))
        })();
        if record.is_none() {
            // Stop after the first malformed record.
            data = &[];
        }
        Some(record.ok_or(EntryProblem::MalformedPax))
    })
}

fn decimal(value: &[u8], field: &'static str) -> Result<u64, EntryProblem> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(EntryProblem::InvalidNumber(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Record = (Vec<u8>, Vec<u8>);

    fn records(data: &[u8]) -> Result<Vec<Record>, EntryProblem> {
        pax_records(data)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect()
    }

    #[test]
    fn pax_records_parse_by_length() {
        let pair = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
        assert_eq!(
            records(b"12 path=a/b\n16 linkpath=x=y\n").unwrap(),
            vec![pair("path", "a/b"), pair("linkpath", "x=y")]
        );
        // A value with a newline in it: the length, not the newline, ends the record.
        assert_eq!(
            records(b"13 path=a\nb/\n").unwrap(),
            vec![pair("path", "a\nb/")]
        );
        for bad in [
            &b"12 path=a/b"[..],     // no newline
            b"99 path=a/b\n",        // longer than the data
            b"3 \n",                 // shorter than its own prefix
            b"x path=a\n",           // no length
            b"9 pathab\n",           // no '='
            b"12 path=a/b\ngarbage", // a bad record after a good one
        ] {
            assert!(records(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(b"1000", "uid"), Ok(1000));
        assert!(decimal(b"", "uid").is_err());
        assert!(decimal(b"-1", "uid").is_err());
        assert!(decimal(b"+1", "uid").is_err());
        assert!(decimal(b"99999999999999999999999", "uid").is_err());
    }
}
