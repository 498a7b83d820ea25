//! The emulated NSM's signer: the per-host CA, documents of the Nitro shape, and the request
//! handler. Everything is checked through the verifier (enclave-attest) and, independently, through
//! the NSM API crate's `AttestationDoc` and ciborium.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use aws_nitro_enclaves_nsm_api::api::{AttestationDoc, ErrorCode, Request, Response};
use ciborium::Value;
use enclave_attest::{Error, Expectation, Policy, TrustRoot, Verifier, VerifyOptions};
use enclave_nsm::emulated::{
    is_emulation_root_name, DocumentFields, EmulatedDevice, EmulationCa, EmulationError,
    ROOT_CERT_FILE, ROOT_KEY_FILE,
};
use serde_bytes::ByteBuf;

fn new_ca() -> (tempfile::TempDir, Arc<EmulationCa>) {
    let dir = tempfile::tempdir().unwrap();
    let ca = EmulationCa::load_or_create(&dir.path().join("emulation-ca")).unwrap();
    (dir, Arc::new(ca))
}

fn measured() -> BTreeMap<u8, [u8; 48]> {
    [
        (0u8, [0xa0; 48]),
        (1, [0xa1; 48]),
        (2, [0xa2; 48]),
        (8, [0xa8; 48]),
    ]
    .into_iter()
    .collect()
}

fn roots(ca: &EmulationCa) -> Vec<TrustRoot> {
    TrustRoot::from_pem_or_der(&std::fs::read(ca.root_path()).unwrap()).unwrap()
}

fn attest(dev: &mut EmulatedDevice, nonce: Option<&[u8]>) -> Vec<u8> {
    match dev.handle(Request::Attestation {
        user_data: None,
        nonce: nonce.map(|n| ByteBuf::from(n.to_vec())),
        public_key: None,
    }) {
        Response::Attestation { document } => document,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_ca_is_created_once_with_a_private_key() {
    let (dir, ca) = new_ca();
    let ca_dir = dir.path().join("emulation-ca");
    let key_mode = std::fs::metadata(ca_dir.join(ROOT_KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let again = EmulationCa::load_or_create(&ca_dir).unwrap();
    assert_eq!(again.root_der(), ca.root_der(), "the root is reused");
    assert_eq!(ca.root_path(), ca_dir.join(ROOT_CERT_FILE));
    let root = &roots(&ca)[0];
    assert!(is_emulation_root_name(root.subject()), "{}", root.subject());
    assert!(!format!("{ca:?}").contains("PRIVATE"));
    // No temporary directory is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    std::fs::set_permissions(
        ca_dir.join(ROOT_KEY_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    assert!(matches!(
        EmulationCa::load(&ca_dir),
        Err(EmulationError::KeyPermissions { .. })
    ));
}

#[test]
fn documents_verify_with_the_emulation_root_only() {
    let (_dir, ca) = new_ca();
    let mut dev = EmulatedDevice::new(ca.clone(), &"ab".repeat(32), &measured());
    let nonce = [7u8; 32];
    let doc = attest(&mut dev, Some(&nonce));
    assert_eq!(doc[0], 0x84, "untagged COSE_Sign1, as the NSM writes it");

    let expected = [(0u8, 0xa0u8), (1, 0xa1), (2, 0xa2), (8, 0xa8)];
    let mut policy =
        Policy::new(Expectation::pcrs(expected.iter().map(|&(i, b)| (i, vec![b; 48]))).unwrap());
    policy.nonce = Some(nonce.to_vec());
    let opts = VerifyOptions {
        roots: roots(&ca),
        ..VerifyOptions::new(policy.clone())
    };
    let report = enclave_attest::verify(&doc, &opts).unwrap();
    assert_eq!(report.module_id, dev.module_id());
    assert_eq!(report.pcrs.len(), 16);

    // Without the emulation root: refused, and the message says why.
    let err = enclave_attest::verify(&doc, &VerifyOptions::new(policy.clone())).unwrap_err();
    assert!(matches!(err, Error::EmulationRoot { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("enclave-engine emulation root"), "{text}");
    assert!(text.contains("--trust-root"), "{text}");

    // A wrong PCR, a wrong nonce.
    let mut wrong = opts.clone();
    wrong.policy = Policy::new(Expectation::pcrs([(0, vec![0xa1; 48])]).unwrap());
    assert!(matches!(
        enclave_attest::verify(&doc, &wrong),
        Err(Error::PcrMismatch { index: 0, .. })
    ));
    let mut wrong = opts.clone();
    wrong.policy.nonce = Some(vec![8; 32]);
    assert!(matches!(
        enclave_attest::verify(&doc, &wrong),
        Err(Error::NonceMismatch { .. })
    ));

    // Another host's emulation root does not verify this host's documents.
    let (_other_dir, other) = new_ca();
    let other_opts = VerifyOptions {
        roots: roots(&other),
        ..VerifyOptions::new(policy.clone())
    };
    assert!(enclave_attest::verify(&doc, &other_opts).is_err());
    // Nor does a document verify after its leaf expires.
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(4);
    assert!(matches!(
        Verifier::with_roots(roots(&ca))
            .unwrap()
            .verify(&doc, later, &policy),
        Err(Error::Expired { .. })
    ));
}

#[test]
fn the_payload_has_the_nitro_shape() {
    let (_dir, ca) = new_ca();
    let mut dev = EmulatedDevice::new(ca.clone(), &"0123456789abcdef".repeat(4), &measured());
    let module_id = dev.module_id().to_owned();
    let (host, enc) = module_id
        .strip_prefix("i-")
        .and_then(|m| m.split_once("-enc"))
        .unwrap();
    assert_eq!(host.len(), 16);
    assert_eq!(enc, "0123456789abcdef");
    let doc = attest(&mut dev, None);

    let (_, parsed) = enclave_attest::parse_unverified(&doc).unwrap();
    let Value::Array(cose) = ciborium::from_reader::<Value, _>(&doc[..]).unwrap() else {
        panic!("not an array")
    };
    assert_eq!(cose[0], Value::Bytes(vec![0xa1, 0x01, 0x38, 0x22]));
    assert_eq!(cose[1], Value::Map(vec![]));
    let payload = cose[2].as_bytes().unwrap();
    let Value::Map(fields) = ciborium::from_reader::<Value, _>(&payload[..]).unwrap() else {
        panic!("payload is not a map")
    };
    let keys: Vec<_> = fields.iter().map(|(k, _)| k.as_text().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "module_id",
            "digest",
            "timestamp",
            "pcrs",
            "certificate",
            "cabundle",
            "public_key",
            "user_data",
            "nonce"
        ]
    );
    for (k, v) in &fields[6..] {
        assert_eq!(v, &Value::Null, "{k:?} absent is CBOR null");
    }
    // The NSM API crate's own type reads it.
    let nitro = AttestationDoc::from_binary(payload).unwrap();
    assert_eq!(nitro.module_id, module_id);
    assert_eq!(nitro.pcrs.len(), 16);
    assert!(nitro.pcrs.values().all(|v| v.len() == 48));
    assert_eq!(nitro.pcrs[&8].as_slice(), &[0xa8; 48]);
    assert_eq!(nitro.pcrs[&3].as_slice(), &[0; 48]);
    assert_eq!(nitro.cabundle.len(), 1);
    assert_eq!(nitro.cabundle[0].as_slice(), ca.root_der());
    assert_eq!(nitro.certificate.as_slice(), parsed.certificate.as_slice());
    assert!(nitro.nonce.is_none() && nitro.user_data.is_none() && nitro.public_key.is_none());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(nitro.timestamp <= now_ms && nitro.timestamp + 60_000 > now_ms);

    // Present optional fields are byte strings; over-long ones are refused.
    let fields = DocumentFields {
        module_id: module_id.clone(),
        pcrs: [(0, vec![1; 48])].into_iter().collect(),
        public_key: Some(vec![1; 91]),
        user_data: Some(vec![]),
        nonce: Some(vec![3; 1024]),
    };
    let (_, doc) = enclave_attest::parse_unverified(&fields.sign(&ca).unwrap())
        .map(|(_, d)| ((), d))
        .unwrap();
    assert_eq!(doc.public_key, Some(vec![1; 91]));
    assert_eq!(doc.user_data, Some(vec![]));
    let too_long = DocumentFields {
        nonce: Some(vec![0; 1025]),
        ..fields
    };
    assert!(matches!(too_long.sign(&ca), Err(EmulationError::Limit(_))));
}

#[test]
fn the_device_answers_like_the_nsm() {
    let (_dir, ca) = new_ca();
    let mut dev = EmulatedDevice::new(ca, "cd", &measured());
    match dev.handle(Request::DescribePCR { index: 0 }) {
        Response::DescribePCR { lock, data } => {
            assert!(lock);
            assert_eq!(data, vec![0xa0; 48]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dev.handle(Request::ExtendPCR {
            index: 2,
            data: vec![1]
        }),
        Response::Error(ErrorCode::ReadOnlyIndex)
    ));
    let Response::ExtendPCR { data } = dev.handle(Request::ExtendPCR {
        index: 16,
        data: b"x".to_vec(),
    }) else {
        panic!("extend 16")
    };
    use sha2::Digest;
    let mut h = sha2::Sha384::new();
    h.update([0u8; 48]);
    h.update(b"x");
    assert_eq!(data, h.finalize().to_vec());
    assert!(matches!(
        dev.handle(Request::LockPCR { index: 16 }),
        Response::LockPCR
    ));
    // A locked PCR is reported in documents from then on, as by the Nitro NSM; an unlocked one
    // is not.
    let doc = attest(&mut dev, None);
    let (_, parsed) = enclave_attest::parse_unverified(&doc).unwrap();
    assert_eq!(parsed.pcrs.len(), 17);
    assert_eq!(parsed.pcrs[&16], data);
    assert!(!parsed.pcrs.contains_key(&17));
    assert!(matches!(
        dev.handle(Request::ExtendPCR {
            index: 16,
            data: vec![]
        }),
        Response::Error(ErrorCode::ReadOnlyIndex)
    ));
    assert!(matches!(
        dev.handle(Request::DescribePCR { index: 32 }),
        Response::Error(ErrorCode::InvalidIndex)
    ));
    match dev.handle(Request::GetRandom) {
        Response::GetRandom { random } => assert_eq!(random.len(), 256),
        other => panic!("{other:?}"),
    }
    match dev.handle(Request::DescribeNSM) {
        Response::DescribeNSM {
            max_pcrs,
            locked_pcrs,
            module_id,
            ..
        } => {
            assert_eq!(max_pcrs, 32);
            assert!(locked_pcrs.contains(&15) && locked_pcrs.contains(&16));
            assert_eq!(module_id, dev.module_id());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dev.handle(Request::Attestation {
            user_data: Some(ByteBuf::from(vec![0; 1025])),
            nonce: None,
            public_key: None
        }),
        Response::Error(ErrorCode::InputTooLarge)
    ));
}
