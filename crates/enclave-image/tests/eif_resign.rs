//! Signing an existing EIF (`resign`, behind `enclave-ctl sign`): the result is the EIF a
//! signed build writes, byte for byte; bad input is refused with a typed error.

mod eif_common;

use std::io::{Cursor, Read, Seek, SeekFrom};

use eif_common::*;
use enclave_image::eif::header::{EifHeader, SectionHeader, CRC_OFFSET, HEADER_LEN};
use enclave_image::eif::{
    resign, sign_eif_file, EifReader, EifSigner, ReadError, ResignError, SectionType,
};

fn signer(dir: &std::path::Path, prefix: &str) -> EifSigner {
    let keys = p384_keys(dir, prefix);
    EifSigner::from_pem_files(&keys.cert, &keys.key).expect("signer")
}

fn resigned(input: &[u8], signer: &EifSigner) -> Result<Vec<u8>, ResignError> {
    let mut out = Cursor::new(Vec::new());
    resign(Cursor::new(input), &mut out, signer)?;
    Ok(out.into_inner())
}

#[test]
fn signing_afterwards_equals_signing_at_build_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (signer(dir.path(), "a"), signer(dir.path(), "b"));
    for (i, lens) in [&[5usize][..], &[(1 << 20) + 3, 0, 77]].iter().enumerate() {
        let inputs = Inputs::new(4099, lens);
        let (unsigned, plain) = build_ours(dir.path(), &format!("u{i}.eif"), &inputs, None);
        let (signed_a, at_build) = build_ours(dir.path(), &format!("a{i}.eif"), &inputs, Some(&a));
        let (signed_b, _) = build_ours(dir.path(), &format!("b{i}.eif"), &inputs, Some(&b));
        let expected = std::fs::read(&signed_a).expect("read");

        let once = resigned(&std::fs::read(&unsigned).expect("read"), &a).expect("sign");
        assert!(once == expected, "case {i}: signing afterwards differs");
        // Replacing another signer's signature gives the same bytes too.
        let replaced = resigned(&std::fs::read(&signed_b).expect("read"), &a).expect("re-sign");
        assert!(
            replaced == expected,
            "case {i}: replacing a signature differs"
        );

        let m = EifReader::new(Cursor::new(&once))
            .expect("reads")
            .measure()
            .expect("measures");
        assert_eq!(m, at_build);
        assert_eq!(m.pcr8, Some(a.pcr8()));
        assert_eq!(
            (m.pcr0, m.pcr1, m.pcr2),
            (plain.pcr0, plain.pcr1, plain.pcr2)
        );
    }
}

#[test]
fn file_signing_is_atomic_and_keeps_the_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = signer(dir.path(), "a");
    let inputs = Inputs::new(300, &[101, 250]);
    let (unsigned, _) = build_ours(dir.path(), "u.eif", &inputs, None);
    let (signed, _) = build_ours(dir.path(), "s.eif", &inputs, Some(&a));
    std::fs::set_permissions(&unsigned, std::fs::Permissions::from_mode(0o640)).expect("chmod");

    // In place: the input is replaced by the signed image, with its mode.
    sign_eif_file(&unsigned, &unsigned, &a).expect("sign in place");
    assert!(std::fs::read(&unsigned).expect("read") == std::fs::read(&signed).expect("read"));
    let mode = std::fs::metadata(&unsigned)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);

    // A corrupt input: an error, the output never created, no temporary file left.
    let mut bytes = std::fs::read(&signed).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let corrupt = dir.path().join("corrupt.eif");
    std::fs::write(&corrupt, &bytes).expect("write");
    let out = dir.path().join("out.eif");
    let err = sign_eif_file(&corrupt, &out, &a).expect_err("corrupt input signed");
    assert!(
        matches!(err, ResignError::Input(ReadError::CrcMismatch { .. })),
        "{err:?}"
    );
    assert!(!out.exists());
    // Signing a corrupt file in place leaves it as it was.
    sign_eif_file(&corrupt, &corrupt, &a).expect_err("corrupt input signed");
    assert!(std::fs::read(&corrupt).expect("read") == bytes);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".enclave-ctl-sign-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A file whose last ramdisk changes once more than one full pass has been read: the PCR0 of
/// the copy no longer matches the checked one.
struct ChangesAfterFirstPass {
    inner: Cursor<Vec<u8>>,
    read: usize,
    flipped: bool,
}

impl Read for ChangesAfterFirstPass {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = self.inner.get_ref().len();
        if !self.flipped && self.read > len + HEADER_LEN {
            self.inner.get_mut()[len - 1] ^= 0x80;
            self.flipped = true;
        }
        let n = self.inner.read(buf)?;
        self.read += n;
        Ok(n)
    }
}

impl Seek for ChangesAfterFirstPass {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn an_input_changed_while_signing_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = signer(dir.path(), "a");
    let inputs = Inputs::new(3000, &[2000, 5000]);
    let (unsigned, _) = build_ours(dir.path(), "u.eif", &inputs, None);
    let input = ChangesAfterFirstPass {
        inner: Cursor::new(std::fs::read(&unsigned).expect("read")),
        read: 0,
        flipped: false,
    };
    let err = resign(input, Cursor::new(Vec::new()), &a).expect_err("changed input signed");
    assert!(matches!(err, ResignError::InputChanged { .. }), "{err:?}");
}

/// An EIF with the given sections (type, data), with a valid header and CRC.
fn eif_with(sections: &[(SectionType, &[u8])]) -> Vec<u8> {
    let mut header = EifHeader {
        version: 4,
        flags: 0,
        default_mem: 1 << 30,
        default_cpus: 2,
        reserved: 0,
        num_sections: sections.len() as u16,
        section_offsets: [0; 32],
        section_sizes: [0; 32],
        unused: 0,
        crc32: 0,
    };
    let mut body = Vec::new();
    for (i, (kind, data)) in sections.iter().enumerate() {
        header.section_offsets[i] = (HEADER_LEN + body.len()) as u64;
        header.section_sizes[i] = data.len() as u64;
        body.extend_from_slice(&SectionHeader::new(*kind, data.len() as u64).to_bytes());
        body.extend_from_slice(data);
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header.to_bytes()[..CRC_OFFSET]);
    crc.update(&body);
    header.crc32 = crc.finalize();
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

#[test]
fn other_layouts_and_non_eifs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = signer(dir.path(), "a");
    let (k, c, m, r) = (
        (SectionType::Kernel, &b"kernel"[..]),
        (SectionType::Cmdline, &b"console=ttyS0"[..]),
        (SectionType::Metadata, &b"{}"[..]),
        (SectionType::Ramdisk, &b"ramdisk"[..]),
    );
    // The layout check is what refuses these, not the reader: both are readable EIFs.
    for sections in [vec![k, c, r], vec![k, c, r, m], vec![c, k, m, r]] {
        let eif = eif_with(&sections);
        EifReader::new(Cursor::new(&eif))
            .expect("a readable EIF")
            .check_crc()
            .expect("a valid CRC");
        let err = resigned(&eif, &a).expect_err("odd layout signed");
        assert!(
            matches!(err, ResignError::UnsupportedLayout { .. }),
            "{err:?}"
        );
    }
    // The canonical layout built by hand signs.
    resigned(&eif_with(&[k, c, m, r, r]), &a).expect("canonical layout");
    // Not an EIF at all, or truncated.
    let err = resigned(&bytes(5000, 7), &a).expect_err("random bytes signed");
    assert!(matches!(err, ResignError::Input(_)), "{err:?}");
    let whole = eif_with(&[k, c, m, r]);
    let err = resigned(&whole[..whole.len() - 3], &a).expect_err("truncated EIF signed");
    assert!(matches!(err, ResignError::Input(_)), "{err:?}");
}
