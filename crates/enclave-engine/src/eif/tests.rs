use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use enclave_image::eif::{EifOptions, EifReader, EifWriter};

use super::boot::{check_pinned, extract_boot_files};
use super::pin::{pin, PINNED_EIF};
use crate::error::EngineError;

pub(crate) const KERNEL: &[u8] = b"not a real kernel, but measured like one";
pub(crate) const CMDLINE: &str = "console=ttyS0 quiet";
pub(crate) const BOOTSTRAP: &[u8] = b"bootstrap ramdisk bytes";

/// Writes a small EIF (kernel, cmdline, metadata, bootstrap ramdisk, an app ramdisk of `app`)
/// and returns its measurements as a record holds them.
pub(crate) fn write_eif(path: &Path, app: &[u8]) -> BTreeMap<String, String> {
    let mut w = EifWriter::new(fs::File::create(path).unwrap(), EifOptions::default()).unwrap();
    w.kernel(&mut &KERNEL[..]).unwrap();
    w.cmdline(CMDLINE).unwrap();
    w.metadata(br#"{"ImageName":"test"}"#).unwrap();
    w.ramdisk_from(&mut &BOOTSTRAP[..]).unwrap();
    w.ramdisk_from(&mut &app[..]).unwrap();
    w.finish(None).unwrap().to_map()
}

/// Flips one byte of the app ramdisk's data in place (the file keeps its inode and size).
pub(crate) fn tamper_app_ramdisk(eif: &Path) {
    let offset = {
        let reader = EifReader::open(eif).unwrap();
        let last = reader
            .sections()
            .iter()
            .rfind(|s| s.section_type == enclave_image::eif::SectionType::Ramdisk)
            .copied()
            .unwrap();
        last.data_offset()
    };
    let mut bytes = fs::read(eif).unwrap();
    bytes[offset as usize] ^= 0xff;
    // Not fs::write: that would truncate; write over the same bytes of the same file.
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(eif).unwrap();
    f.write_all_at(&bytes[offset as usize..offset as usize + 1], offset)
        .unwrap();
}

#[test]
fn boot_files_are_the_measured_bytes_and_match_the_eifs_own_measurement() {
    let dir = tempfile::tempdir().unwrap();
    let eif = dir.path().join("a.eif");
    let app = vec![7u8; 3 << 20];
    let expected = write_eif(&eif, &app);
    // The reader's independent pass (CRC included) agrees with the writer's.
    let read = EifReader::open(&eif).unwrap().measure().unwrap().to_map();
    assert_eq!(read, expected);
    let boot = extract_boot_files(&eif, dir.path(), &expected).unwrap();
    assert_eq!(fs::read(&boot.kernel).unwrap(), KERNEL);
    assert_eq!(boot.cmdline, CMDLINE);
    let initrd = fs::read(&boot.initrd).unwrap();
    assert_eq!(&initrd[..BOOTSTRAP.len()], BOOTSTRAP);
    assert_eq!(&initrd[BOOTSTRAP.len()..], &app[..]);
    check_pinned(&eif, &expected).unwrap();
}

#[test]
fn a_modified_eif_is_refused_and_nothing_is_extracted() {
    let dir = tempfile::tempdir().unwrap();
    let eif = dir.path().join("a.eif");
    let expected = write_eif(&eif, b"app one");
    tamper_app_ramdisk(&eif);
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let e = extract_boot_files(&eif, &out, &expected).unwrap_err();
    let text = e.to_string();
    // What the tampered bytes measure: the same sections, written as an EIF of their own.
    let found = write_eif(&dir.path().join("b.eif"), b"\x9epp one")["PCR0"].clone();
    assert!(e.refuses_boot(), "{e}");
    match &e {
        EngineError::MeasurementMismatch {
            expected_pcr0,
            found_pcr0,
            differing,
            ..
        } => {
            assert_eq!(expected_pcr0, &expected["PCR0"]);
            assert_eq!(found_pcr0, &found);
            assert_ne!(found_pcr0, expected_pcr0);
            assert_eq!(differing, &["PCR0", "PCR2"]);
        }
        other => panic!("{other}"),
    }
    assert!(
        text.contains(&expected["PCR0"]) && text.contains(&found),
        "{text}"
    );
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0, "nothing extracted");
    let e = check_pinned(&eif, &expected).unwrap_err();
    assert!(matches!(e, EngineError::MeasurementMismatch { .. }), "{e}");

    // A record without PCR1 cannot vouch for anything.
    let mut partial = expected.clone();
    partial.remove("PCR1");
    let e = check_pinned(&dir.path().join("a.eif"), &partial).unwrap_err();
    assert!(
        matches!(e, EngineError::MissingMeasurement(ref p) if p == "PCR1"),
        "{e}"
    );
    // A copy cut short no longer parses: refused for good as well.
    let cut = dir.path().join("cut.eif");
    let bytes = fs::read(&eif).unwrap();
    fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let e = check_pinned(&cut, &expected).unwrap_err();
    assert!(
        matches!(e, EngineError::PinnedUnreadable { .. }) && e.refuses_boot(),
        "{e}"
    );
}

#[test]
fn the_pinned_copy_is_private_and_does_not_follow_the_original() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let eif = dir.path().join("a.eif");
    let expected = write_eif(&eif, b"app one");
    let enclave = dir.path().join("enclave");
    fs::create_dir(&enclave).unwrap();
    let pinned = pin(&eif, &enclave).unwrap();
    assert_eq!(pinned, enclave.join(PINNED_EIF));
    let (o, p) = (fs::metadata(&eif).unwrap(), fs::metadata(&pinned).unwrap());
    assert_ne!(o.ino(), p.ino(), "a copy, not a link");
    assert_eq!(p.mode() & 0o777, 0o400);
    // The original rewritten in place, then replaced: the copy still measures as recorded.
    tamper_app_ramdisk(&eif);
    check_pinned(&pinned, &expected).unwrap();
    write_eif(&eif, b"app two");
    check_pinned(&pinned, &expected).unwrap();
    assert_eq!(
        fs::read_dir(&enclave).unwrap().count(),
        1,
        "no temporary left"
    );
}
