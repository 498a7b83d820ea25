//! ECVRF-EDWARDS25519-SHA512-TAI against RFC 9381 Appendix B.3, file-claim proofs and
//! tombstones (bound to their boot and generation, and never mistaken for each other).

use enclave_attest::vrf::{
    file_hash, proof_to_hash, prove, prove_delete, prove_file, verify, verify_delete, verify_file,
    DeleteClaim, Epoch, FileClaim, Proof, PublicKey, SecretKey, VrfError, DELETE_CLAIM_DOMAIN,
    FILE_CLAIM_DOMAIN,
};

/// RFC 9381 Appendix B.3 (ECVRF-EDWARDS25519-SHA512-TAI), Examples 16, 17 and 18:
/// (SK, PK, alpha, pi, beta), hex exactly as printed in the RFC.
const VECTORS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "8657106690b5526245a92b003bb079ccd1a92130477671f6fc01ad16f26f723f\
         26f8a57ccaed74ee1b190bed1f479d9727d2d0f9b005a6e456a35d4fb0daab12\
         68a1b0db10836d9826a528ca76567805",
        "90cf1df3b703cce59e2a35b925d411164068269d7b2d29f3301c03dd757876ff\
         66b71dda49d2de59d03450451af026798e8f81cd2e333de5cdf4f3e140fdd8ae",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "f3141cd382dc42909d19ec5110469e4feae18300e94f304590abdced48aed593\
         3bf0864a62558b3ed7f2fea45c92a465301b3bbf5e3e54ddf2d935be3b67926d\
         a3ef39226bbc355bdc9850112c8f4b02",
        "eb4440665d3891d668e7e0fcaf587f1b4bd7fbfe99d0eb2211ccec90496310eb\
         5e33821bc613efb94db5e5b54c70a848a0bef4553a41befc57663b56373a5031",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "9bc0f79119cc5604bf02d23b4caede71393cedfbb191434dd016d30177ccbf80\
         96bb474e53895c362d8628ee9f9ea3c0e52c7a5c691b6c18c9979866568add7a\
         2d41b00b05081ed0f58ee5e31b3a970e",
        "645427e5d00c62a23fb703732fa5d892940935942101e456ecca7bb217c61c45\
         2118fec1219202a0edcf038bb6373241578be7217ba85a2687f7a0310b2df19f",
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("test vector hex")
}

fn secret(s: &str) -> SecretKey {
    SecretKey::from_seed(unhex(s).try_into().expect("32-byte seed"))
}

#[test]
fn rfc9381_b3_vectors_match_byte_for_byte() {
    for (sk, pk, alpha, pi, beta) in VECTORS {
        let sk = secret(sk);
        let alpha = unhex(alpha);
        let pk = PublicKey::from_bytes(&unhex(pk)).expect("vector PK is valid");
        assert_eq!(sk.public_key(), pk, "PK");

        let proof = prove(&sk, &alpha).expect("prove");
        assert_eq!(proof.to_bytes().to_vec(), unhex(pi), "pi");
        assert_eq!(
            proof_to_hash(&proof).unwrap().to_bytes().to_vec(),
            unhex(beta),
            "beta"
        );
        let out = verify(&pk, &alpha, &proof).expect("vector proof verifies");
        assert_eq!(out.to_bytes().to_vec(), unhex(beta), "verify beta");
    }
}

#[test]
fn rfc9381_vectors_reject_tampering() {
    for (i, (_, pk, alpha, pi, _)) in VECTORS.iter().enumerate() {
        let pk = PublicKey::from_bytes(&unhex(pk)).unwrap();
        let alpha = unhex(alpha);
        let proof = Proof::from_bytes(&unhex(pi)).unwrap();
        assert!(verify(&pk, &alpha, &proof).is_ok());

        // A flipped bit in every byte of pi (Gamma, c and s) is rejected.
        for byte in 0..80 {
            let mut bad = proof;
            bad.0[byte] ^= 1 << (byte % 8);
            assert!(verify(&pk, &alpha, &bad).is_err(), "vector {i} byte {byte}");
        }
        // A different alpha.
        let mut other_alpha = alpha.clone();
        other_alpha.push(0);
        assert_eq!(
            verify(&pk, &other_alpha, &proof),
            Err(VrfError::VerificationFailed)
        );
        // A different key (the next vector's).
        let other = PublicKey::from_bytes(&unhex(VECTORS[(i + 1) % 3].1)).unwrap();
        assert_eq!(
            verify(&other, &alpha, &proof),
            Err(VrfError::VerificationFailed)
        );
    }
}

#[test]
fn malformed_keys_and_proofs_are_typed_errors() {
    // Identity (y = 1) and a non-canonical encoding (y = p) are rejected.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        PublicKey::from_bytes(&identity),
        Err(VrfError::SmallOrderPublicKey)
    );
    let mut y_eq_p = [0xffu8; 32];
    y_eq_p[0] = 0xed;
    y_eq_p[31] = 0x7f;
    assert_eq!(
        PublicKey::from_bytes(&y_eq_p),
        Err(VrfError::InvalidPublicKey)
    );
    // y = p + 1 is a non-canonical encoding of the identity.
    let mut y_p1 = y_eq_p;
    y_p1[0] = 0xee;
    assert_eq!(
        PublicKey::from_bytes(&y_p1),
        Err(VrfError::InvalidPublicKey)
    );
    assert_eq!(
        PublicKey::from_bytes(&[1u8; 31]),
        Err(VrfError::InvalidPublicKey)
    );
    assert_eq!(
        Proof::from_bytes(&[0u8; 79]),
        Err(VrfError::ProofLength(79))
    );

    // s >= q is rejected.
    let (_, pk, alpha, pi, _) = VECTORS[0];
    let pk = PublicKey::from_bytes(&unhex(pk)).unwrap();
    let mut proof = Proof::from_bytes(&unhex(pi)).unwrap();
    proof.0[48..].copy_from_slice(&[0xff; 32]);
    assert_eq!(
        verify(&pk, &unhex(alpha), &proof),
        Err(VrfError::NonCanonicalScalar)
    );
}

/// A claim of `path` with the contents of `file`, in boot `epoch` at `generation`.
fn claim_of(path: &str, file: &std::path::Path, generation: u64, epoch: Epoch) -> FileClaim {
    FileClaim {
        path: path.into(),
        sha3_512: file_hash(file).unwrap(),
        generation,
        epoch,
    }
}

#[test]
fn file_proof_verifies_and_detects_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.bin");
    std::fs::write(&file, b"enclave payload v1\n".repeat(10_000)).unwrap();

    let sk = SecretKey::generate().unwrap();
    let pk = PublicKey::from_bytes(&sk.public_key().to_bytes()).unwrap();
    let epoch = Epoch::of_startup_document(b"a start-up document");
    let claim = claim_of("/opt/app/app.bin", &file, 7, epoch);
    let proof = prove_file(&sk, &claim).unwrap();
    let beta = verify_file(&pk, &claim, &proof).expect("file proof verifies");
    assert_eq!(beta, proof_to_hash(&proof).unwrap());

    // Change one byte: the recomputed claim no longer verifies against the old proof.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[12_345] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    let changed = claim_of("/opt/app/app.bin", &file, 7, epoch);
    assert_ne!(changed.sha3_512, claim.sha3_512);
    let refused = |claim: &FileClaim| {
        assert_eq!(
            verify_file(&pk, claim, &proof),
            Err(VrfError::VerificationFailed),
            "{claim:?}"
        )
    };
    refused(&changed);
    // Same contents under a different path, generation or boot fails too: a proof is of one
    // place in one boot's history.
    refused(&FileClaim {
        path: "/opt/app/other.bin".into(),
        ..claim.clone()
    });
    refused(&FileClaim {
        generation: 8,
        ..claim.clone()
    });
    refused(&FileClaim {
        epoch: Epoch::of_startup_document(b"another boot"),
        ..claim.clone()
    });

    // A different enclave key fails.
    let other = SecretKey::generate().unwrap().public_key();
    assert_eq!(
        verify_file(&other, &claim, &proof),
        Err(VrfError::VerificationFailed)
    );
}

#[test]
fn a_tombstone_proof_is_never_a_file_proof_and_the_reverse() {
    let sk = SecretKey::generate().unwrap();
    let pk = sk.public_key();
    let epoch = Epoch([3; 32]);
    let delete = DeleteClaim {
        path: "/srv/a".into(),
        generation: 9,
        epoch,
    };
    let tombstone = prove_delete(&sk, &delete).unwrap();
    verify_delete(&pk, &delete, &tombstone).expect("the tombstone verifies");
    let file = FileClaim {
        path: "/srv/a".into(),
        sha3_512: [0; 64],
        generation: 9,
        epoch,
    };
    let file_proof = prove_file(&sk, &file).unwrap();
    assert_eq!(
        verify_file(&pk, &file, &tombstone),
        Err(VrfError::VerificationFailed)
    );
    assert_eq!(
        verify_delete(&pk, &delete, &file_proof),
        Err(VrfError::VerificationFailed)
    );
    for changed in [
        DeleteClaim {
            generation: 10,
            ..delete.clone()
        },
        DeleteClaim {
            path: "/srv/b".into(),
            ..delete.clone()
        },
        DeleteClaim {
            epoch: Epoch([4; 32]),
            ..delete.clone()
        },
    ] {
        assert_eq!(
            verify_delete(&pk, &changed, &tombstone),
            Err(VrfError::VerificationFailed),
            "{changed:?}"
        );
    }
    // Structurally: the two inputs start with different domain strings, neither a prefix of
    // the other (each ends with its only NUL), so no file input is ever a delete input.
    let (f, d) = (file.alpha().unwrap(), delete.alpha().unwrap());
    assert!(f.starts_with(FILE_CLAIM_DOMAIN) && d.starts_with(DELETE_CLAIM_DOMAIN));
    for domain in [FILE_CLAIM_DOMAIN, DELETE_CLAIM_DOMAIN] {
        assert_eq!(domain.iter().position(|&b| b == 0), Some(domain.len() - 1));
    }
    assert_ne!(FILE_CLAIM_DOMAIN, DELETE_CLAIM_DOMAIN);
    assert_ne!(
        FILE_CLAIM_DOMAIN, b"enclave-engine file v1\0",
        "the retired v1 input"
    );
}

#[test]
fn file_hash_is_sha3_512() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("abc");
    std::fs::write(&file, b"abc").unwrap();
    // FIPS 202 / NIST example: SHA3-512("abc").
    let expected = "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e\
                    10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0";
    assert_eq!(hex::encode(file_hash(&file).unwrap()), expected);
    assert!(file_hash(dir.path().join("missing")).is_err());
}

#[test]
fn alpha_encoding_is_fixed_or_length_prefixed() {
    let claim = FileClaim {
        path: "a/b".into(),
        sha3_512: [7u8; 64],
        generation: 0x0102_0304_0506_0708,
        epoch: Epoch([5; 32]),
    };
    let alpha = claim.alpha().unwrap();
    let (domain, rest) = alpha.split_at(FILE_CLAIM_DOMAIN.len());
    assert_eq!(domain, b"enclave-engine file v2\0");
    let (epoch, rest) = rest.split_at(32);
    assert_eq!(epoch, &[5u8; 32]);
    let (generation, rest) = rest.split_at(8);
    assert_eq!(generation, &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&rest[..4], &3u32.to_be_bytes());
    assert_eq!(&rest[4..7], b"a/b");
    assert_eq!(&rest[7..], &[7u8; 64]);
    let delete = DeleteClaim {
        path: "a/b".into(),
        generation: claim.generation,
        epoch: claim.epoch,
    };
    let alpha = delete.alpha().unwrap();
    assert_eq!(
        &alpha[..DELETE_CLAIM_DOMAIN.len()],
        b"enclave-engine delete v1\0"
    );
    assert_eq!(
        &alpha[DELETE_CLAIM_DOMAIN.len()..],
        &claim.alpha().unwrap()[FILE_CLAIM_DOMAIN.len()..][..32 + 8 + 4 + 3]
    );
}
