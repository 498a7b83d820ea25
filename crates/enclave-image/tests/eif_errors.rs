//! Corrupted input, wrong keys and misuse: always a typed error, never a panic.

mod eif_common;

use std::io::{Cursor, Write};
use std::time::{Duration, SystemTime};

use eif_common::*;
use enclave_image::eif::cose::{decode_signature_section, encode_signature_section, CoseSign1};
use enclave_image::eif::fuzz::fuzz_one;
use enclave_image::eif::header::{HeaderError, HEADER_LEN, SECTION_HEADER_LEN};
use enclave_image::eif::sign::verify_signature_section;
use enclave_image::eif::{
    EifOptions, EifReader, EifSigner, EifWriter, ReadError, SectionType, SignError, WriteError,
};

/// A small signed EIF (kernel, cmdline, metadata, two ramdisks, signature) in memory.
fn signed_sample() -> (Vec<u8>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = p384_keys(dir.path(), "");
    let signer = EifSigner::from_pem_files(&keys.cert, &keys.key).expect("signer");
    let inputs = Inputs::new(300, &[101, 0, 250]);
    let (path, _) = build_ours(dir.path(), "s.eif", &inputs, Some(&signer));
    (std::fs::read(path).expect("read"), dir)
}

/// Runs every reader operation; returns the first error, or `None` if all succeeded.
fn read_all(bytes: &[u8]) -> Option<ReadError> {
    let now = SystemTime::now();
    let run = || -> Result<(), ReadError> {
        let mut r = EifReader::new(Cursor::new(bytes))?;
        r.check_crc()?;
        r.measure()?;
        r.verify_signature(now)?;
        r.cmdline()?;
        r.metadata()?;
        Ok(())
    };
    run().err()
}

#[test]
fn intact_sample_reads() {
    let (bytes, _dir) = signed_sample();
    assert!(read_all(&bytes).is_none());
}

#[test]
fn truncated_files_are_rejected() {
    let (bytes, _dir) = signed_sample();
    let mut cuts: Vec<usize> = (0..HEADER_LEN + 2 * SECTION_HEADER_LEN).collect();
    cuts.extend((HEADER_LEN..bytes.len()).step_by(13));
    cuts.push(bytes.len() - 1);
    for cut in cuts {
        let err = read_all(&bytes[..cut]).unwrap_or_else(|| panic!("cut at {cut} accepted"));
        assert!(
            matches!(
                err,
                ReadError::Header(HeaderError::TooShort { .. })
                    | ReadError::Header(HeaderError::SectionOutOfBounds { .. })
            ),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let (bytes, _dir) = signed_sample();
    let r = EifReader::new(Cursor::new(&bytes)).expect("open");
    let header_crc = r.header().crc32;
    let sections = r.sections().to_vec();
    assert_eq!(
        sections.last().map(|s| s.section_type),
        Some(SectionType::Signature)
    );

    // All bits of the header and of every section header, a sample of the data bits of every
    // section (including the signature).
    let mut positions: Vec<(usize, bool)> = (0..HEADER_LEN).map(|p| (p, false)).collect();
    for s in &sections {
        let start = s.offset as usize;
        positions.extend((start..start + SECTION_HEADER_LEN).map(|p| (p, false)));
        let data = s.data_offset() as usize..(s.data_offset() + s.size) as usize;
        positions.extend(data.step_by(7).map(|p| (p, true)));
    }
    let mut data_flips = 0;
    for (pos, in_data) in positions {
        for bit in 0..8 {
            let mut corrupted = bytes.clone();
            corrupted[pos] ^= 1 << bit;
            let err = read_all(&corrupted)
                .unwrap_or_else(|| panic!("flip of bit {bit} at {pos} went unnoticed"));
            if in_data {
                data_flips += 1;
                match err {
                    ReadError::CrcMismatch { header, computed } => {
                        assert_eq!(header, header_crc);
                        assert_ne!(computed, header_crc);
                        let msg = err.to_string();
                        assert!(msg.starts_with("CRC check failed: header says 0x"), "{msg}");
                    }
                    other => panic!("flip at {pos} (data) gave {other} instead of a CRC error"),
                }
            }
        }
    }
    assert!(data_flips > 100);
}

#[test]
fn signature_checks() {
    let (bytes, _dir) = signed_sample();
    let mut r = EifReader::new(Cursor::new(&bytes)).expect("open");
    let m = r.measure().expect("measure");
    let section = r.signature_section().expect("read").expect("signed");
    let now = SystemTime::now();
    verify_signature_section(&section, &m.pcr0, now).expect("valid");

    let mut other_pcr0 = m.pcr0;
    other_pcr0[0] ^= 1;
    assert!(matches!(
        verify_signature_section(&section, &other_pcr0, now),
        Err(SignError::Pcr0Mismatch { .. })
    ));
    assert!(matches!(
        verify_signature_section(&section, &m.pcr0, now + Duration::from_secs(40 * 86_400)),
        Err(SignError::Expired { .. })
    ));
    assert!(matches!(
        verify_signature_section(&section, &m.pcr0, SystemTime::UNIX_EPOCH),
        Err(SignError::NotYetValid { .. })
    ));

    // A tampered ECDSA value, re-encoded so the CBOR stays valid.
    let mut entries = decode_signature_section(&section).expect("decode");
    let mut cose = CoseSign1::from_bytes(&entries[0].signature).expect("cose");
    cose.signature[10] ^= 0x40;
    entries[0].signature = cose.to_bytes();
    let tampered = encode_signature_section(&entries);
    assert!(matches!(
        verify_signature_section(&tampered, &m.pcr0, now),
        Err(SignError::BadSignature)
    ));

    let unsigned = {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = build_ours(dir.path(), "u.eif", &Inputs::new(10, &[10]), None);
        std::fs::read(path).expect("read")
    };
    let mut r = EifReader::new(Cursor::new(&unsigned)).expect("open");
    assert!(matches!(r.verify_signature(now), Err(ReadError::NotSigned)));
    assert_eq!(r.measure().expect("measure").pcr8, None);
}

#[test]
fn wrong_key_types_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let p384 = p384_keys(d, "p384");
    let (rsa_cert, rsa_key) = other_keys(d, "rsa", "rsa:2048", &[]);
    let (p256_cert, p256_key) = other_keys(
        d,
        "p256",
        "ec",
        &["-pkeyopt", "ec_paramgen_curve:prime256v1"],
    );
    let (ed_cert, ed_key) = other_keys(d, "ed", "ed25519", &[]);
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "rsak.pem",
            "-traditional",
            "-out",
            "rsa_trad.pem",
        ],
    );
    openssl(d, &["ec", "-in", "p256k.pem", "-out", "p256_sec1.pem"]);

    let key_error = |cert: &std::path::Path, key: &std::path::Path| {
        EifSigner::from_pem_files(cert, key).expect_err("must be refused")
    };
    for (key, found) in [
        (rsa_key.clone(), "RSA"),
        (d.join("rsa_trad.pem"), "RSA"),
        (p256_key.clone(), "ECDSA P-256"),
        (d.join("p256_sec1.pem"), "ECDSA P-256"),
        (ed_key.clone(), "Ed25519"),
    ] {
        let err = key_error(&p384.cert, &key);
        assert!(
            matches!(&err, SignError::WrongKeyType { found: f } if f == found),
            "{key:?}: {err}"
        );
        assert_eq!(
            err.to_string(),
            format!("the private key is {found}; EIF signing needs an ECDSA P-384 key")
        );
        // The same with its own certificate: the key's type is still what gets reported.
        let cert = match found {
            "RSA" => &rsa_cert,
            "ECDSA P-256" => &p256_cert,
            _ => &ed_cert,
        };
        assert!(matches!(
            key_error(cert, &key),
            SignError::WrongKeyType { .. }
        ));
    }
    // A P-384 key with a certificate for another key type.
    let err = key_error(&rsa_cert, &p384.key);
    assert!(matches!(err, SignError::WrongCertificateKeyType { ref found } if found == "RSA"));

    // Mismatched P-384 certificate and key.
    let other = p384_keys(d, "other");
    assert!(matches!(
        key_error(&p384.cert, &other.key),
        SignError::KeyMismatch
    ));

    // Encrypted keys, garbage.
    openssl(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-in",
            "p384k.pem",
            "-out",
            "enc.pem",
            "-passout",
            "pass:x",
        ],
    );
    assert!(matches!(
        key_error(&p384.cert, &d.join("enc.pem")),
        SignError::EncryptedKey
    ));
    std::fs::write(d.join("junk.pem"), "not a key").expect("write");
    assert!(matches!(
        key_error(&p384.cert, &d.join("junk.pem")),
        SignError::Key(_)
    ));
    assert!(matches!(
        key_error(&d.join("junk.pem"), &p384.key),
        SignError::Certificate(_)
    ));
    assert!(matches!(
        key_error(&d.join("missing.pem"), &p384.key),
        SignError::Io { .. }
    ));
}

#[test]
fn writer_misuse_is_an_error() {
    let new = || EifWriter::new(Cursor::new(Vec::new()), EifOptions::default()).expect("writer");

    let mut w = new();
    assert!(matches!(
        w.cmdline("x"),
        Err(WriteError::OutOfOrder {
            expected: "kernel",
            got: "cmdline"
        })
    ));
    w.kernel(&mut &b"k"[..]).expect("kernel");
    assert!(matches!(
        w.cmdline("a\0b"),
        Err(WriteError::NulInCmdline(1))
    ));
    w.cmdline("ok").expect("cmdline");
    assert!(matches!(w.ramdisk(), Err(WriteError::OutOfOrder { .. })));
    w.metadata(b"{}").expect("metadata");
    {
        let mut rd = w.ramdisk().expect("ramdisk");
        rd.write_all(b"abc").expect("write");
        // Dropped without finish().
    }
    assert!(matches!(
        w.ramdisk(),
        Err(WriteError::Unfinished("ramdisk"))
    ));
    assert!(matches!(
        w.finish(None),
        Err(WriteError::Unfinished("ramdisk"))
    ));

    let mut w = new();
    w.kernel(&mut &b"k"[..]).expect("kernel");
    w.cmdline("").expect("cmdline");
    w.metadata(b"").expect("metadata");
    assert!(matches!(w.finish(None), Err(WriteError::NoRamdisk)));

    let mut w = new();
    w.kernel(&mut &b"k"[..]).expect("kernel");
    w.cmdline("").expect("cmdline");
    w.metadata(b"").expect("metadata");
    for _ in 0..29 {
        w.ramdisk_from(&mut &b"r"[..]).expect("ramdisk");
    }
    assert!(matches!(w.ramdisk(), Err(WriteError::TooManySections)));
    w.finish(None).expect("32 sections fit when unsigned");

    // A failing input or a full output poisons the writer.
    struct FailingRead;
    impl std::io::Read for FailingRead {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("boom"))
        }
    }
    let mut w = new();
    assert!(matches!(w.kernel(&mut FailingRead), Err(WriteError::Io(_))));
    assert!(matches!(w.cmdline("x"), Err(WriteError::Poisoned)));
    let mut small = vec![0u8; 4096];
    let mut w = EifWriter::new(Cursor::new(&mut small[..]), EifOptions::default()).expect("writer");
    let big = bytes(3 << 20, 9);
    assert!(matches!(
        w.kernel(&mut big.as_slice()),
        Err(WriteError::Io(_))
    ));
    assert!(matches!(w.finish(None), Err(WriteError::Poisoned)));
}

#[test]
fn fuzz_body_runs_on_seeds() {
    let (signed, _dir) = signed_sample();
    let unsigned = {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _) = build_ours(dir.path(), "u.eif", &Inputs::new(10, &[10, 3]), None);
        std::fs::read(path).expect("read")
    };
    let mut seeds = vec![Vec::new(), vec![0u8; 548], b".eif".to_vec(), bytes(4096, 7)];
    for base in [&signed, &unsigned] {
        seeds.push(base.clone());
        seeds.push(base[..base.len() / 2].to_vec());
        let mut flipped = base.clone();
        let last = flipped.len() - 20;
        flipped[last] ^= 0xff;
        seeds.push(flipped);
    }
    // The signature section alone, as CBOR.
    let r = EifReader::new(Cursor::new(&signed)).expect("open");
    let sig = *r.sections().last().expect("sections");
    seeds.push(signed[sig.data_offset() as usize..].to_vec());
    for seed in &seeds {
        fuzz_one(seed);
    }
    // The fuzz corpus directory, when it has inputs (e.g. crashes fixed since).
    let corpus =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/eif_reader");
    if let Ok(entries) = std::fs::read_dir(corpus) {
        for entry in entries.flatten() {
            if let Ok(data) = std::fs::read(entry.path()) {
                fuzz_one(&data);
            }
        }
    }
}
