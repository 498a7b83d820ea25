//! Any single flipped byte in a real document's payload or signature makes verification fail,
//! with an error and never a panic.

mod common;

use enclave_attest::{Error, Verifier};

/// Positions to flip within `range`: every 37th byte plus the first and the last.
fn sample(range: std::ops::Range<usize>) -> Vec<usize> {
    let mut v: Vec<usize> = range.clone().step_by(37).collect();
    v.push(range.end - 1);
    v.dedup();
    v
}

#[test]
fn single_byte_flips_in_payload_and_signature_all_fail() {
    let verifier = Verifier::aws();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut total = 0;
    for f in common::fixtures() {
        let policy = f.policy(true);
        let (payload, sig) = common::payload_and_signature(&f.bytes);
        assert!(verifier.verify(&f.bytes, f.at(), &policy).is_ok());
        for pos in sample(payload).into_iter().chain(sample(sig)) {
            // Two flips per position: the low bit (most likely to leave the CBOR valid, so the
            // signature is what catches it) and the whole byte.
            for mask in [0x01u8, 0xff] {
                let mut doc = f.bytes.clone();
                doc[pos] ^= mask;
                let result = std::panic::catch_unwind(|| verifier.verify(&doc, f.at(), &policy));
                let err = match result {
                    Ok(Ok(_)) => panic!("{}: flip {mask:#04x} at {pos} still verifies", f.file),
                    Ok(Err(e)) => e,
                    Err(_) => panic!("{}: flip {mask:#04x} at {pos} panicked", f.file),
                };
                let kind = format!("{err:?}")
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                *kinds.entry(kind).or_default() += 1;
                total += 1;
            }
        }
    }
    eprintln!("{total} flips, errors by kind: {kinds:?}");
    // Most flips leave a well-formed document whose signature no longer matches.
    assert!(
        kinds.get("SignatureInvalid").copied().unwrap_or(0) > total / 3,
        "{kinds:?}"
    );
}

#[test]
fn truncations_fail_cleanly() {
    let verifier = Verifier::aws();
    for f in common::fixtures() {
        let policy = f.policy(true);
        for len in (0..f.bytes.len()).step_by(101) {
            assert!(verifier.verify(&f.bytes[..len], f.at(), &policy).is_err());
        }
        let mut longer = f.bytes.clone();
        longer.push(0);
        assert!(matches!(
            verifier.verify(&longer, f.at(), &policy),
            Err(Error::BadCose(_))
        ));
    }
}
