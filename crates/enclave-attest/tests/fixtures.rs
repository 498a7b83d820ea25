//! The real Nitro documents: each verifies at its own timestamp against the compiled-in root and
//! reports what the manifest records; each expires with its leaf; debug ones are refused.

mod common;

use common::{fixtures, Fixture};
use enclave_attest::{
    verify, CertPosition, DebugCapabilities, Error, Expectation, Policy, Verifier, VerifyOptions,
};
use time::Duration;

/// The fixture's own expectation ([`Fixture::expectation`]), checked at `at`.
fn options(f: &Fixture, at: time::OffsetDateTime, allow_debug_mode: bool) -> VerifyOptions {
    VerifyOptions {
        at: Some(at),
        ..VerifyOptions::new(f.policy(allow_debug_mode))
    }
}

#[test]
fn every_fixture_verifies_at_its_timestamp_and_matches_the_manifest() {
    for f in fixtures() {
        let report = verify(&f.bytes, &options(&f, f.at(), f.debug_mode))
            .unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_eq!(report.module_id, f.module_id, "{}", f.file);
        assert_eq!(report.timestamp_ms, f.timestamp_ms, "{}", f.file);
        assert_eq!(report.digest, "SHA384");
        assert_eq!(report.debug_mode, f.debug_mode, "{}", f.file);
        // Real documents of other tools' enclaves: PCR31 is not locked, so not reported.
        assert_eq!(report.debug_capabilities, DebugCapabilities::NotMeasured);
        let pinned: Vec<u8> = if f.debug_mode { vec![] } else { vec![0, 8] };
        assert_eq!(report.expected_pcrs, pinned, "{}", f.file);
        for (i, want) in &f.pcrs {
            assert_eq!(&hex::encode(&report.pcrs[i].0), want, "{} PCR{i}", f.file);
        }
        let len = |v: &Option<enclave_attest::HexBytes>| v.as_ref().map(|b| b.len());
        assert_eq!(len(&report.nonce), f.nonce_len, "{} nonce", f.file);
        assert_eq!(
            len(&report.user_data),
            f.user_data_len,
            "{} user_data",
            f.file
        );
        assert_eq!(
            len(&report.public_key),
            f.public_key_len,
            "{} public_key",
            f.file
        );
        assert_eq!(report.certificate.not_after, f.leaf_not_after, "{}", f.file);
        assert!(report.root.subject.contains("CN=aws.nitro-enclaves"));
        assert_eq!(report.root.sha256, enclave_attest::AWS_NITRO_ROOT_G1_SHA256);
        // Leaf plus cabundle[3..=1]; cabundle[0] is not part of the verified path.
        assert_eq!(report.chain.len(), 4, "{}", f.file);
        assert!(!report.cose_tagged);
        // The human and JSON forms carry the essentials.
        let text = report.to_string();
        assert!(text.contains(&f.module_id) && text.contains(&f.pcrs[0].1));
        assert!(text.contains("debug caps:   not measured"), "{text}");
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["module_id"], f.module_id.as_str());
        assert_eq!(json["debug_capabilities"]["state"], "not_measured");
        assert_eq!(
            json["pcrs"]["0"],
            f.pcrs.iter().find(|(i, _)| *i == 0).unwrap().1.as_str()
        );
    }
}

#[test]
fn every_fixture_expires_one_second_after_its_leaf() {
    for f in fixtures() {
        let at = f.leaf_not_after + Duration::seconds(1);
        match verify(&f.bytes, &options(&f, at, true)) {
            Err(Error::Expired {
                which: CertPosition::Leaf,
                not_after,
                at: when,
            }) => {
                assert_eq!(not_after, f.leaf_not_after, "{}", f.file);
                assert_eq!(when, at);
            }
            other => panic!("{}: expected leaf Expired, got {other:?}", f.file),
        }
        // At the very second of expiry it still holds (notAfter is inclusive).
        verify(&f.bytes, &options(&f, f.leaf_not_after, true))
            .unwrap_or_else(|e| panic!("{}: {e}", f.file));
    }
}

#[test]
fn verification_before_the_chain_exists_is_not_yet_valid() {
    let f = &fixtures()[0];
    let at = f.at() - Duration::days(400);
    assert!(matches!(
        verify(&f.bytes, &options(f, at, true)),
        Err(Error::NotYetValid { .. })
    ));
}

#[test]
fn debug_fixtures_are_refused_unless_allowed() {
    let mut debug = 0;
    for f in fixtures() {
        let refused = verify(&f.bytes, &options(&f, f.at(), false));
        if f.debug_mode {
            debug += 1;
            assert!(
                matches!(refused, Err(Error::DebugMode)),
                "{}: {refused:?}",
                f.file
            );
            // Allowing debug capabilities (PCR31) is not allowing Nitro debug mode.
            let mut caps_only = options(&f, f.at(), false);
            caps_only.policy.allow_debug_capabilities = true;
            let err = verify(&f.bytes, &caps_only).unwrap_err();
            assert!(matches!(err, Error::DebugMode), "{}: {err:?}", f.file);
            assert!(err.to_string().contains("--allow-debug-mode"), "{err}");
            assert!(
                verify(&f.bytes, &options(&f, f.at(), true))
                    .unwrap()
                    .debug_mode
            );
        } else {
            assert!(!refused.unwrap().debug_mode, "{}", f.file);
        }
    }
    assert_eq!(debug, 3);
}

#[test]
fn tagged_base64_and_hex_forms_all_verify() {
    use base64ct::Encoding;
    let verifier = Verifier::aws();
    for f in fixtures() {
        let opts = options(&f, f.at(), true);
        let mut tagged = vec![0xd2];
        tagged.extend_from_slice(&f.bytes);
        let report = verify(&tagged, &opts).unwrap();
        assert!(report.cose_tagged);
        let b64 = base64ct::Base64::encode_string(&f.bytes);
        let wrapped: String = b64
            .as_bytes()
            .chunks(76)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let hex_text = format!("{}\n", hex::encode(&f.bytes));
        for text in [
            b64.as_str(),
            wrapped.as_str(),
            hex_text.as_str(),
            &hex::encode_upper(&f.bytes),
        ] {
            assert_eq!(
                verify(text.as_bytes(), &opts).unwrap().module_id,
                f.module_id,
                "{}",
                f.file
            );
        }
        // The reusable verifier agrees with the one-shot entry point.
        assert_eq!(
            verifier
                .verify(&f.bytes, f.at(), &opts.policy)
                .unwrap()
                .module_id,
            f.module_id
        );
    }
}

#[test]
fn high_s_and_low_s_forms_of_every_real_signature_verify() {
    use p384::ecdsa::Signature;
    for f in fixtures() {
        let (_, sig) = common::payload_and_signature(&f.bytes);
        let s = Signature::from_slice(&f.bytes[sig.clone()]).unwrap();
        // (r, n - s): the other form of the same signature, whichever the NSM produced.
        let flipped = Signature::from_scalars(s.r(), -*s.s()).unwrap();
        let mut doc = f.bytes.clone();
        doc[sig].copy_from_slice(&flipped.to_bytes());
        verify(&doc, &options(&f, f.at(), true)).unwrap_or_else(|e| panic!("{}: {e}", f.file));
    }
}

#[test]
fn explicit_roots_replace_the_pinned_one() {
    let f = &fixtures()[0];
    let forged = common::forge::Chain::new("CN=Some Other Root");
    let roots = enclave_attest::TrustRoot::from_pem_or_der(&forged.root).unwrap();
    let opts = VerifyOptions {
        roots,
        ..options(f, f.at(), true)
    };
    assert!(matches!(
        verify(&f.bytes, &opts),
        Err(Error::UntrustedRoot {
            which: CertPosition::CaBundle(1),
            ..
        })
    ));
    // The AWS root given explicitly, as PEM, works like the compiled-in one.
    let aws = enclave_attest::TrustRoot::from_pem(enclave_attest::AWS_NITRO_ROOT_G1_PEM.as_bytes())
        .unwrap();
    verify(
        &f.bytes,
        &VerifyOptions {
            roots: aws,
            ..options(f, f.at(), true)
        },
    )
    .unwrap();
}

#[test]
fn link_cache_changes_speed_not_answers() {
    let verifier = Verifier::aws().with_link_cache(64);
    for f in fixtures() {
        let policy = f.policy(true);
        for _ in 0..2 {
            assert_eq!(
                verifier
                    .verify(&f.bytes, f.at(), &policy)
                    .unwrap()
                    .module_id,
                f.module_id
            );
        }
        // With every link cached, time, tampering and policy are still checked.
        let late = f.leaf_not_after + Duration::seconds(1);
        assert!(matches!(
            verifier.verify(&f.bytes, late, &policy),
            Err(Error::Expired { .. })
        ));
        let (payload, _) = common::payload_and_signature(&f.bytes);
        let mut doc = f.bytes.clone();
        doc[payload.end - 1] ^= 1;
        assert!(verifier.verify(&doc, f.at(), &policy).is_err());
        if f.debug_mode {
            assert!(matches!(
                verifier.verify(&f.bytes, f.at(), &f.policy(false)),
                Err(Error::DebugMode)
            ));
        } else {
            let other = Policy::new(Expectation::pcrs([(0, vec![0xee; 48])]).unwrap());
            assert!(matches!(
                verifier.verify(&f.bytes, f.at(), &other),
                Err(Error::PcrMismatch { index: 0, .. })
            ));
        }
    }
    let policy = fixtures()[0].policy(true);
    // A forged chain is not let through by a warm cache.
    let forged = common::forge::Chain::new(common::forge::AWS_ROOT_NAME);
    let f = &fixtures()[0];
    let doc = common::forge::sign_cose(
        &common::forge::encode(common::forge::forged_payload(&f.bytes, &forged)),
        &forged.leaf_key,
        false,
    );
    assert!(matches!(
        verifier.verify(&doc, f.at(), &policy),
        Err(Error::UntrustedRoot { .. })
    ));
}

#[test]
fn an_expectation_that_pins_no_image_is_refused_before_any_verification() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.file.starts_with("nitro-attest"))
        .unwrap();
    // The document's own PCR1 and PCR2: true, but neither says which image runs.
    let err = Expectation::pcrs([(1, f.pcr(1)), (2, f.pcr(2))]).unwrap_err();
    assert!(
        matches!(&err, Error::NoExpectation { given } if given == &[1, 2]),
        "{err:?}"
    );
    let text = err.to_string();
    for option in [
        "--pcr 0=",
        "--pcr 8=",
        "--any-enclave",
        "(given: PCR1, PCR2)",
    ] {
        assert!(text.contains(option), "{option}: {text}");
    }
    // The same document verifies once its PCR0 is among them.
    let with_pcr0 = Expectation::pcrs([(0, f.pcr(0)), (2, f.pcr(2))]).unwrap();
    let report = verify(
        &f.bytes,
        &VerifyOptions {
            at: Some(f.at()),
            ..VerifyOptions::new(Policy::new(with_pcr0))
        },
    )
    .unwrap();
    assert_eq!(report.expected_pcrs, vec![0, 2]);
    assert!(report.to_string().contains("expected:     PCR0, PCR2"));
    // Any enclave, said explicitly: accepted, and the report says nothing was pinned.
    let report = verify(
        &f.bytes,
        &VerifyOptions {
            at: Some(f.at()),
            ..VerifyOptions::new(Policy::new(Expectation::AnyEnclave))
        },
    )
    .unwrap();
    assert!(report.expected_pcrs.is_empty());
    assert!(report
        .to_string()
        .contains("expected:     any enclave (no PCR pinned)"));
}
