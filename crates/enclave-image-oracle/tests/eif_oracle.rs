//! Our EIF writer, reader and signer against the official `aws-nitro-enclaves-image-format`
//! 0.8.1, used as the oracle.

#[path = "../../enclave-image/tests/eif_common/mod.rs"]
mod eif_common;
mod official;

use std::path::Path;
use std::time::SystemTime;

use aws_nitro_enclaves_image_format::utils::eif_reader::EifReader as OfficialReader;
use aws_nitro_enclaves_image_format::utils::PcrSignatureChecker;
use eif_common::*;
use enclave_image::eif::cose::{decode_signature_section, CoseSign1, PcrInfo};
use enclave_image::eif::header::{EifHeader, HEADER_LEN};
use enclave_image::eif::reader::Metadata;
use enclave_image::eif::{pcr8_of_certificate, EifReader, EifSigner, SectionType};
use official::{build_official, identity_info};

/// Kernel and ramdisk sizes: empty ramdisks, sizes not multiple of 4, chunk (1 MiB) boundaries.
const CASES: &[(usize, &[usize])] = &[
    (1001, &[5]),
    (4096, &[0, 3]),
    (2_000_003, &[1 << 20, 7]),
    (513, &[(1 << 20) + 3, (2 << 20) - 1, 0]),
    (77, &[7, 0, 13, (3 << 20) + 1]),
];

fn official_measurements(path: &Path) -> std::collections::BTreeMap<String, String> {
    let mut reader =
        OfficialReader::from_eif(path.to_str().expect("utf-8").to_string()).expect("oracle reads");
    assert!(reader.check_crc(), "oracle: CRC of {path:?} is wrong");
    reader.get_measurements().expect("oracle measurements")
}

#[test]
fn unsigned_eif_is_byte_identical_to_official() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (kernel_len, ramdisks)) in CASES.iter().enumerate() {
        let inputs = Inputs::new(*kernel_len, ramdisks);
        let (ours, m) = build_ours(dir.path(), &format!("ours{i}.eif"), &inputs, None);
        let (theirs, their_m) =
            build_official(dir.path(), &format!("theirs{i}.eif"), &inputs, None);
        let their_m = pcrs_only(their_m);
        let (a, b) = (
            std::fs::read(&ours).expect("read"),
            std::fs::read(&theirs).expect("read"),
        );
        assert_eq!(a.len(), b.len(), "case {i}: length");
        assert!(a == b, "case {i}: bytes differ");
        assert_eq!(as_map(&m), their_m, "case {i}: measurements");
        assert_eq!(m.pcr8, None);

        // Each reader reads the other's output (identical here, but both paths are checked).
        assert_eq!(
            pcrs_only(official_measurements(&ours)),
            their_m,
            "case {i}: oracle reads ours"
        );
        let mut r = EifReader::open(&theirs).expect("we read theirs");
        assert_eq!(as_map(&r.measure().expect("measure")), their_m);
        assert_eq!(r.cmdline().expect("cmdline"), CMDLINE);
        assert_eq!(r.kernel().expect("kernel"), inputs.kernel);
        let expected_meta = serde_json::to_value(identity_info()).expect("json");
        assert_eq!(
            r.metadata().expect("metadata"),
            Some(Metadata::Json(expected_meta))
        );
        assert_eq!(r.ramdisk_count(), ramdisks.len());
        for (n, rd) in inputs.ramdisks.iter().enumerate() {
            let mut out = Vec::new();
            assert_eq!(
                r.copy_ramdisk_to(n, &mut out).expect("ramdisk"),
                rd.len() as u64
            );
            assert!(&out == rd, "case {i}: ramdisk {n} content");
        }
        let kinds: Vec<_> = r.sections().iter().map(|s| s.section_type).collect();
        let mut expected = vec![
            SectionType::Kernel,
            SectionType::Cmdline,
            SectionType::Metadata,
        ];
        expected.extend(std::iter::repeat_n(SectionType::Ramdisk, ramdisks.len()));
        assert_eq!(kinds, expected);
    }
}

#[test]
fn signed_eif_matches_official_except_ecdsa_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = p384_keys(dir.path(), "");
    let inputs = Inputs::new(3001, &[1234, (1 << 20) + 5]);
    let cert_pem = std::fs::read(&keys.cert).expect("cert");
    let expected_pcr8 = pcr8_of_certificate(&cert_pem).expect("pcr8");

    // The same signature from every key encoding, and across runs (RFC 6979).
    let mut outputs = Vec::new();
    for (n, key) in [&keys.key, &keys.pkcs8, &keys.sec1, &keys.key]
        .iter()
        .enumerate()
    {
        let signer = EifSigner::from_pem_files(&keys.cert, key).expect("signer");
        let (path, m) = build_ours(
            dir.path(),
            &format!("signed{n}.eif"),
            &inputs,
            Some(&signer),
        );
        assert_eq!(m.pcr8, Some(expected_pcr8));
        outputs.push((path, m));
    }
    let first = std::fs::read(&outputs[0].0).expect("read");
    for (path, _) in &outputs[1..] {
        assert!(
            std::fs::read(path).expect("read") == first,
            "signed output not reproducible"
        );
    }
    let (ours, m) = &outputs[0];

    let (theirs, their_m) = build_official(
        dir.path(),
        "theirs.eif",
        &inputs,
        Some((&keys.key, &keys.cert)),
    );
    let their_m = pcrs_only(their_m);
    assert_eq!(as_map(m), their_m, "measurements incl. PCR8");

    // The oracle accepts our signature and reads our measurements.
    let mut checker =
        PcrSignatureChecker::from_eif(ours.to_str().expect("utf-8")).expect("checker");
    checker.verify().expect("oracle verifies our signature");
    let mut official =
        OfficialReader::from_eif(ours.to_str().expect("utf-8").into()).expect("read");
    assert!(official.check_crc());
    let official_m = official.get_measurements().expect("measurements");
    assert_eq!(pcrs_only(official_m.clone()), their_m);
    official
        .get_certificate_info(official_m.clone())
        .expect("certificate info");
    assert_eq!(
        official.sign_check,
        Some(true),
        "oracle: signed payload is our PCR0"
    );

    // We accept the oracle's signature.
    let now = SystemTime::now();
    let mut r = EifReader::open(&theirs).expect("open theirs");
    assert_eq!(as_map(&r.measure().expect("measure")), their_m);
    let verified = r
        .verify_signature(now)
        .expect("we verify the oracle's signature");
    assert_eq!(verified.pcr8, expected_pcr8);
    let mut r = EifReader::open(ours).expect("open ours");
    r.verify_signature(now).expect("we verify ours");

    // Everything but the ECDSA value is identical: the sections before the signature, the
    // header apart from the signature's size and the CRC (the signature bytes are CBOR
    // integers, 1 or 2 bytes each depending on their value, so the section size varies), and
    // in the signature section the certificate, the COSE protected and unprotected headers and
    // the payload.
    let theirs_bytes = std::fs::read(&theirs).expect("read");
    let header_of = |bytes: &[u8]| {
        let raw: [u8; HEADER_LEN] = bytes[..HEADER_LEN].try_into().expect("header bytes");
        EifHeader::decode(&raw).expect("header")
    };
    let (mut our_header, mut their_header) = (header_of(&first), header_of(&theirs_bytes));
    let last = usize::from(our_header.num_sections) - 1;
    for h in [&mut our_header, &mut their_header] {
        h.section_sizes[last] = 0;
        h.crc32 = 0;
    }
    assert_eq!(
        our_header, their_header,
        "headers apart from signature size and CRC"
    );
    let sig_info = *r.sections().last().expect("sections");
    assert_eq!(sig_info.section_type, SectionType::Signature);
    let sig_start = sig_info.data_offset() as usize;
    assert_eq!(
        first[HEADER_LEN..sig_info.offset as usize],
        theirs_bytes[HEADER_LEN..sig_info.offset as usize],
        "sections before the signature"
    );
    assert_eq!(
        theirs_bytes[sig_info.offset as usize..sig_info.offset as usize + 4],
        [0, 4, 0, 0],
        "their signature section header"
    );
    let ours_sig = decode_signature_section(&first[sig_start..]).expect("our section");
    let theirs_sig = decode_signature_section(&theirs_bytes[sig_start..]).expect("their section");
    assert_eq!(ours_sig.len(), 1);
    assert_eq!(theirs_sig.len(), 1);
    assert_eq!(
        ours_sig[0].signing_certificate,
        theirs_sig[0].signing_certificate
    );
    assert_eq!(ours_sig[0].signing_certificate, cert_pem);
    let ours_cose = CoseSign1::from_bytes(&ours_sig[0].signature).expect("our COSE");
    let theirs_cose = CoseSign1::from_bytes(&theirs_sig[0].signature).expect("their COSE");
    assert_eq!(ours_cose.protected, theirs_cose.protected);
    assert_eq!(ours_cose.unprotected, theirs_cose.unprotected);
    assert_eq!(ours_cose.payload, theirs_cose.payload);
    assert_eq!(ours_cose.signature.len(), 96);
    assert_eq!(theirs_cose.signature.len(), 96);
    let payload: PcrInfo =
        enclave_image::eif::cose::from_cbor(&ours_cose.payload, "payload").expect("payload");
    assert_eq!(payload.register_index, 0);
    assert_eq!(payload.register_value, m.pcr0.to_vec());
    // With the ECDSA value swapped in, their COSE and section bytes are exactly ours.
    let swapped = CoseSign1 {
        signature: ours_cose.signature.clone(),
        ..theirs_cose
    };
    assert_eq!(swapped.to_bytes(), ours_sig[0].signature);
    let mut theirs_swapped = theirs_sig.clone();
    theirs_swapped[0].signature = swapped.to_bytes();
    assert_eq!(
        enclave_image::eif::cose::encode_signature_section(&theirs_swapped),
        first[sig_start..]
    );
}

#[test]
fn nitro_cli_json_matches_official_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = Inputs::new(100, &[10, 20]);
    let (_, m) = build_ours(dir.path(), "a.eif", &inputs, None);
    let (_, theirs) = build_official(dir.path(), "b.eif", &inputs, None);
    let json = serde_json::to_value(m.to_nitro_cli()).expect("json");
    let mut expected = pcrs_only(theirs);
    expected.insert("HashAlgorithm".into(), "Sha384 { ... }".into());
    assert_eq!(json, serde_json::json!({ "Measurements": expected }));
}

#[test]
fn official_eifs_signed_afterwards_verify_with_the_official_checker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = p384_keys(dir.path(), "");
    let signer = EifSigner::from_pem_files(&keys.cert, &keys.key).expect("signer");
    let inputs = Inputs::new(2001, &[999, (1 << 20) + 1]);
    // An unsigned official build, and the official build signed at build time (randomized ECDSA).
    let (unsigned, plain) = build_official(dir.path(), "unsigned.eif", &inputs, None);
    let (_, signed_m) = build_official(
        dir.path(),
        "signed.eif",
        &inputs,
        Some((&keys.key, &keys.cert)),
    );
    let resigned = dir.path().join("resigned.eif");
    let m = enclave_image::eif::sign_eif_file(&unsigned, &resigned, &signer).expect("signs");
    // The official build's measurements, PCR8 included; PCR0-2 those of the unsigned image.
    assert_eq!(as_map(&m), pcrs_only(signed_m));
    for pcr in ["PCR0", "PCR1", "PCR2"] {
        assert_eq!(as_map(&m)[pcr], plain[pcr]);
    }
    let path = resigned.to_str().expect("utf-8");
    PcrSignatureChecker::from_eif(path)
        .expect("checker")
        .verify()
        .expect("the oracle verifies the signature");
    let mut official = OfficialReader::from_eif(path.into()).expect("read");
    assert!(official.check_crc());
    let official_m = official.get_measurements().expect("measurements");
    official
        .get_certificate_info(official_m)
        .expect("certificate info");
    assert_eq!(official.sign_check, Some(true));
}
