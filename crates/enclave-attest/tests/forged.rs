//! Forged documents: a self-made chain with its root in cabundle[0] signing a real payload fails
//! against the pinned root and passes only when its root is configured explicitly. The same
//! forger exercises indefinite-length encodings, field limits and the policy errors.

mod common;

use ciborium::Value;
use common::forge::{self, Chain, AWS_ROOT_NAME};
use enclave_attest::{
    verify, CertPosition, ChainFault, Error, Expectation, Policy, TrustRoot, VerifyOptions,
};

fn real() -> common::Fixture {
    common::fixtures()
        .into_iter()
        .find(|f| f.file.starts_with("blocky"))
        .unwrap()
}

fn opts(f: &common::Fixture, roots: Vec<TrustRoot>, policy: Policy) -> VerifyOptions {
    VerifyOptions {
        at: Some(f.at()),
        roots,
        policy,
    }
}

/// The real payload's own PCR0 and PCR8 expected: what the forged documents claim to be.
fn pinned() -> Policy {
    real().policy(false)
}

fn forged_root(chain: &Chain) -> Vec<TrustRoot> {
    TrustRoot::from_pem_or_der(&chain.root).unwrap()
}

#[test]
fn forged_chain_fails_against_pinned_root_and_passes_with_its_own() {
    let f = real();
    for root_name in ["CN=Forged Root,O=Forger", AWS_ROOT_NAME] {
        let chain = Chain::new(root_name);
        let doc = forge::sign_cose(
            &forge::encode(forge::forged_payload(&f.bytes, &chain)),
            &chain.leaf_key,
            false,
        );
        match verify(&doc, &opts(&f, vec![], pinned())) {
            Err(Error::UntrustedRoot {
                which: CertPosition::CaBundle(1),
                issuer,
            }) => assert!(issuer.contains("CN="), "{issuer}"),
            other => panic!("{root_name}: expected UntrustedRoot, got {other:?}"),
        }
        let report = verify(&doc, &opts(&f, forged_root(&chain), pinned())).unwrap();
        assert_eq!(report.module_id, f.module_id);
        assert_eq!(
            report.root.subject,
            TrustRoot::from_der(&chain.root).unwrap().subject()
        );
    }
}

#[test]
fn forged_leaf_under_the_real_cabundle_breaks_the_chain() {
    let f = real();
    let chain = Chain::new("CN=Forged Root");
    let mut map = forge::payload_map(&f.bytes);
    // A leaf claiming the real instance CA as issuer, but signed by the forger's key.
    let Value::Array(cabundle) = &map
        .iter()
        .find(|(k, _)| k.as_text() == Some("cabundle"))
        .unwrap()
        .1
    else {
        panic!()
    };
    let Value::Bytes(instance_ca) = cabundle.last().unwrap() else {
        panic!()
    };
    let issuer = {
        use der::Decode;
        x509_cert::Certificate::from_der(instance_ca)
            .unwrap()
            .tbs_certificate
            .subject
            .to_string()
    };
    let leaf = forge::issue(
        "CN=forged-leaf",
        &chain.leaf_key,
        &issuer,
        &forge::key("not AWS"),
        forge::Role::Leaf,
        forge::Window(978_307_200, 2_500_000_000),
    );
    forge::set(&mut map, "certificate", Value::Bytes(leaf));
    let doc = forge::sign_cose(&forge::encode(map), &chain.leaf_key, false);
    match verify(&doc, &opts(&f, vec![], pinned())) {
        Err(Error::ChainBroken {
            which: CertPosition::Leaf,
            reason: ChainFault::IssuerMismatch | ChainFault::BadSignature,
        }) => {}
        other => panic!("expected ChainBroken at the leaf, got {other:?}"),
    }
}

#[test]
fn indefinite_length_payloads_verify_over_the_bytes_as_received() {
    let f = real();
    let chain = Chain::new("CN=Forged Root");
    let map = forge::forged_payload(&f.bytes, &chain);
    let mut indefinite = Vec::new();
    forge::encode_indefinite(&Value::Map(map.clone()), &mut indefinite);
    let definite = forge::encode(map);
    assert_ne!(indefinite, definite);
    let roots = forged_root(&chain);
    for tagged in [false, true] {
        let doc = forge::sign_cose(&indefinite, &chain.leaf_key, tagged);
        let report = verify(&doc, &opts(&f, roots.clone(), pinned())).unwrap();
        assert_eq!(
            (report.module_id.as_str(), report.cose_tagged),
            (f.module_id.as_str(), tagged)
        );
    }
    // The same document re-encoded with definite lengths is different bytes: a verifier that
    // re-encoded what it decoded would accept this, a correct one does not.
    let signed = forge::sign_cose(&indefinite, &chain.leaf_key, false);
    let (_, sig) = common::payload_and_signature(&signed);
    let mut swapped = forge::sign_cose(&definite, &chain.leaf_key, false);
    let (_, sig2) = common::payload_and_signature(&swapped);
    swapped[sig2].copy_from_slice(&signed[sig]);
    assert!(matches!(
        verify(&swapped, &opts(&f, roots, pinned())),
        Err(Error::SignatureInvalid)
    ));
}

/// A payload map as ciborium decodes it.
type PayloadMap = Vec<(Value, Value)>;

/// Signs the forged payload after `edit`, and verifies it against the forged root.
fn verify_edited(
    edit: impl FnOnce(&mut Vec<(Value, Value)>),
    policy: Policy,
) -> Result<enclave_attest::Report, Error> {
    let f = real();
    let chain = Chain::new("CN=Forged Root");
    let mut map = forge::forged_payload(&f.bytes, &chain);
    edit(&mut map);
    let doc = forge::sign_cose(&forge::encode(map), &chain.leaf_key, false);
    verify(&doc, &opts(&f, forged_root(&chain), policy))
}

#[test]
fn field_limits_and_missing_fields_are_typed() {
    let bytes = |n: usize| Value::Bytes(vec![7; n]);
    let pcrs = |n: usize, len: usize| {
        Value::Map(
            (0..n)
                .map(|i| (Value::Integer(i.into()), bytes(len)))
                .collect(),
        )
    };
    let limit =
        |field: &str, edit: Box<dyn FnOnce(&mut PayloadMap)>| match verify_edited(edit, pinned()) {
            Err(Error::FieldLimit { field: got, .. }) => assert_eq!(got, field),
            other => panic!("{field}: expected FieldLimit, got {other:?}"),
        };
    limit(
        "pcrs",
        Box::new(move |m| forge::set(m, "pcrs", pcrs(0, 48))),
    );
    limit(
        "pcrs",
        Box::new(move |m| forge::set(m, "pcrs", pcrs(33, 48))),
    );
    limit(
        "pcrs[0]",
        Box::new(move |m| forge::set(m, "pcrs", pcrs(3, 47))),
    );
    limit(
        "nonce",
        Box::new(move |m| forge::set(m, "nonce", bytes(1025))),
    );
    limit(
        "user_data",
        Box::new(move |m| forge::set(m, "user_data", bytes(1025))),
    );
    limit(
        "public_key",
        Box::new(move |m| forge::set(m, "public_key", bytes(1025))),
    );
    limit(
        "certificate",
        Box::new(move |m| forge::set(m, "certificate", bytes(1025))),
    );
    limit(
        "certificate",
        Box::new(move |m| forge::set(m, "certificate", bytes(0))),
    );
    limit(
        "cabundle",
        Box::new(move |m| forge::set(m, "cabundle", Value::Array(vec![]))),
    );
    limit(
        "cabundle[1]",
        Box::new(move |m| forge::set(m, "cabundle", Value::Array(vec![bytes(10), bytes(1025)]))),
    );
    limit(
        "module_id",
        Box::new(move |m| forge::set(m, "module_id", Value::Text(String::new()))),
    );
    // The limits themselves are accepted: 32 PCRs of 64 bytes, 1024-byte optional fields. These
    // PCRs are made up (PCR0 and PCR31 included): any enclave, with PCR31's value, accepted.
    let mut made_up = Policy::new(Expectation::AnyEnclave);
    made_up.allow_debug_capabilities = true;
    let ok = verify_edited(
        |m| {
            forge::set(m, "pcrs", pcrs(32, 64));
            forge::set(m, "nonce", bytes(1024));
            forge::set(m, "user_data", bytes(0));
        },
        made_up,
    )
    .unwrap();
    assert_eq!(
        (
            ok.pcrs.len(),
            ok.nonce.unwrap().len(),
            ok.user_data.unwrap().len()
        ),
        (32, 1024, 0)
    );
    // Optional fields may be absent altogether or CBOR null.
    let ok = verify_edited(
        |m| {
            (
                forge::remove(m, "nonce"),
                forge::set(m, "user_data", Value::Null),
            )
                .0
        },
        pinned(),
    )
    .unwrap();
    assert!(ok.nonce.is_none() && ok.user_data.is_none());
    for field in [
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
    ] {
        match verify_edited(|m| forge::remove(m, field), pinned()) {
            Err(Error::MissingField(got)) => assert_eq!(got, field),
            other => panic!("{field}: expected MissingField, got {other:?}"),
        }
    }
    assert!(matches!(
        verify_edited(
            |m| forge::set(m, "digest", Value::Text("SHA256".into())),
            pinned()
        ),
        Err(Error::UnsupportedAlgorithm(_))
    ));
}

#[test]
fn policy_mismatches_are_typed() {
    let f = real();
    let good = Policy::new(
        Expectation::pcrs(f.pcrs.iter().map(|(i, v)| (*i, hex::decode(v).unwrap()))).unwrap(),
    );
    let verifier = enclave_attest::Verifier::aws();
    let report = verifier.verify(&f.bytes, f.at(), &good).unwrap();
    assert_eq!(report.expected_pcrs, vec![0, 1, 2, 8]);
    let mut full = good.clone();
    full.nonce = report.nonce.clone().map(|b| b.0);
    full.user_data = report.user_data.clone().map(|b| b.0);
    full.public_key = report.public_key.clone().map(|b| b.0);
    verifier.verify(&f.bytes, f.at(), &full).unwrap();

    let check = |policy: Policy| verifier.verify(&f.bytes, f.at(), &policy).unwrap_err();
    let mut pcr2 = f.pcr(2);
    pcr2[5] ^= 1;
    let pcrs = [(0, f.pcr(0)), (1, f.pcr(1)), (2, pcr2)];
    assert!(matches!(
        check(Policy::new(Expectation::pcrs(pcrs).unwrap())),
        Error::PcrMismatch {
            index: 2,
            actual: Some(_),
            ..
        }
    ));
    let (i, v) = Policy::parse_pcr_arg(&format!("20={}", "00".repeat(48))).unwrap();
    assert!(matches!(
        check(Policy::new(
            Expectation::pcrs([(0, f.pcr(0)), (i, v)]).unwrap()
        )),
        Error::PcrMismatch {
            index: 20,
            actual: None,
            ..
        }
    ));
    let with = |edit: &dyn Fn(&mut Policy)| {
        let mut p = full.clone();
        edit(&mut p);
        check(p)
    };
    assert!(matches!(
        with(&|p| p.nonce = Some(vec![1, 2, 3])),
        Error::NonceMismatch { .. }
    ));
    assert!(matches!(
        with(&|p| p.user_data = Some(vec![])),
        Error::UserDataMismatch { .. }
    ));
    assert!(matches!(
        with(&|p| p.public_key = Some(vec![9])),
        Error::PublicKeyMismatch { .. }
    ));
    // An expected field the document lacks is a mismatch too.
    let prod = common::fixtures()
        .into_iter()
        .find(|f| f.file.starts_with("anjuna_2021"))
        .unwrap();
    let mut policy = prod.policy(false);
    policy.nonce = Some(vec![1]);
    let err = verifier
        .verify(&prod.bytes, prod.at(), &policy)
        .unwrap_err();
    assert!(
        matches!(err, Error::NonceMismatch { actual: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("nonce"));
    assert!(
        Policy::parse_pcr_arg("32=00").is_err()
            && Policy::parse_pcr_arg("1=zz").is_err()
            && Policy::parse_pcr_arg("1=00").is_err()
    );
}
