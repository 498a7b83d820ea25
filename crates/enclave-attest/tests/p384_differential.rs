//! The P-384 verifier (ring, `p384_verify.rs`) against the `p384` crate (RustCrypto) over tens of
//! thousands of cases: valid and high-S signatures, tampered messages and signatures, wrong keys,
//! r or s zero or not below n, keys off the curve, out of range or malformed. Both must give the
//! same answer on every case, and the answer the case calls for where there is one.
//!
//! `P384_DIFFERENTIAL_ROUNDS` sets the number of signatures (default 2500; each gives 21 cases:
//! five full verifications and 16 refusals of malformed keys and signatures).

use enclave_attest::p384_verify::{verify_raw, Hash};
use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// The group order n of P-384, big-endian.
const N: [u8; 48] = hex48("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973");
/// The field prime p of P-384, big-endian.
const P: [u8; 48] = hex48("fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff");

const fn hex48(s: &str) -> [u8; 48] {
    let b = s.as_bytes();
    let mut out = [0u8; 48];
    let mut i = 0;
    while i < 48 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    }
}

/// The reference: `p384`'s verifier, high-S accepted (normalised), as ECDSA allows.
fn reference(key: &[u8], message: &[u8], hash: Hash, sig: &[u8]) -> bool {
    let (Ok(key), Ok(sig)) = (
        VerifyingKey::from_sec1_bytes(key),
        Signature::from_slice(sig),
    ) else {
        return false;
    };
    let sig = sig.normalize_s().unwrap_or(sig);
    key.verify_prehash(&digest(message, hash), &sig).is_ok()
}

fn digest(message: &[u8], hash: Hash) -> Vec<u8> {
    match hash {
        Hash::Sha256 => Sha256::digest(message).to_vec(),
        Hash::Sha384 => Sha384::digest(message).to_vec(),
        Hash::Sha512 => Sha512::digest(message).to_vec(),
    }
}

/// Deterministic pseudo-random numbers (splitmix64), so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// r ‖ (n - s): the other signature with the same r.
fn high_s(sig: &[u8]) -> Vec<u8> {
    let mut out = sig.to_vec();
    let mut borrow = 0i16;
    for i in (0..48).rev() {
        let d = i16::from(N[i]) - i16::from(sig[48 + i]) - borrow;
        out[48 + i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    out
}

/// Counts of each kind of case, and of the answers, so the test shows it covered them.
#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    accepted: u64,
}

/// One case: both verifiers agree, and agree with `expected` when given.
fn check(
    t: &mut Tally,
    what: &str,
    key: &[u8],
    msg: &[u8],
    hash: Hash,
    sig: &[u8],
    expected: Option<bool>,
) {
    let ours = verify_raw(key, msg, hash, sig);
    let theirs = reference(key, msg, hash, sig);
    assert_eq!(
        ours,
        theirs,
        "{what}: ring says {ours}, p384 says {theirs}\nkey {}\nmsg {}\nhash {hash:?}\nsig {}",
        hex::encode(key),
        hex::encode(msg),
        hex::encode(sig)
    );
    if let Some(expected) = expected {
        assert_eq!(
            ours,
            expected,
            "{what}: both say {ours}\nkey {}\nsig {}",
            hex::encode(key),
            hex::encode(sig)
        );
    }
    t.cases += 1;
    t.accepted += u64::from(ours);
}

fn run_rounds(seed: u64, rounds: usize) -> Tally {
    let mut rng = Rng(seed);
    let keys: Vec<SigningKey> = (0..16)
        .map(|_| loop {
            if let Ok(k) = SigningKey::from_slice(&rng.bytes(48)) {
                break k;
            }
        })
        .collect();
    let public: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| {
            k.verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec()
        })
        .collect();
    let mut t = Tally::default();
    for round in 0..rounds {
        let which = rng.below(keys.len());
        let (key, pk) = (&keys[which], &public[which]);
        let hash = match round % 5 {
            0 => Hash::Sha256,
            1 => Hash::Sha512,
            _ => Hash::Sha384,
        };
        let len = rng.below(300);
        let msg = rng.bytes(len);
        let sig: Signature = key.sign_prehash(&digest(&msg, hash)).expect("signs");
        let sig = sig.to_bytes().to_vec();

        check(&mut t, "valid", pk, &msg, hash, &sig, Some(true));
        check(&mut t, "high-S", pk, &msg, hash, &high_s(&sig), Some(true));
        let mut tampered = msg.clone();
        if tampered.is_empty() {
            tampered.push(0);
        } else {
            let i = rng.below(tampered.len());
            tampered[i] ^= 1 << rng.below(8);
        }
        check(
            &mut t,
            "tampered message",
            pk,
            &tampered,
            hash,
            &sig,
            Some(false),
        );
        let mut bad = sig.clone();
        let bit = rng.below(96 * 8);
        bad[bit / 8] ^= 1 << (bit % 8);
        check(
            &mut t,
            "tampered signature",
            pk,
            &msg,
            hash,
            &bad,
            Some(false),
        );
        let other = &public[(which + 1 + rng.below(keys.len() - 1)) % keys.len()];
        check(&mut t, "wrong key", other, &msg, hash, &sig, Some(false));

        // r or s zero, n, above n, all ones: refused before any arithmetic.
        let (r, s) = sig.split_at(48);
        let mut above_n = N;
        above_n[47] = above_n[47].wrapping_add(1 + rng.below(0x8c) as u8);
        for bad in [[0u8; 48], N, above_n, [0xff; 48]] {
            check(
                &mut t,
                "bad r",
                pk,
                &msg,
                hash,
                &[&bad[..], s].concat(),
                Some(false),
            );
            check(
                &mut t,
                "bad s",
                pk,
                &msg,
                hash,
                &[r, &bad[..]].concat(),
                Some(false),
            );
        }
        // Keys: a flipped bit of y (off the curve), x or y = p (out of range), the point at
        // infinity, a truncated point, garbage.
        let mut off_curve = pk.clone();
        let bit = rng.below(48 * 8);
        off_curve[49 + bit / 8] ^= 1 << (bit % 8);
        let mut x_is_p = pk.clone();
        x_is_p[1..49].copy_from_slice(&P);
        let mut y_is_p = pk.clone();
        y_is_p[49..].copy_from_slice(&P);
        let mut garbage = rng.bytes(97);
        garbage[0] = 4;
        let truncated = &pk[..96];
        for (what, bad_key) in [
            ("off-curve key", &off_curve[..]),
            ("x = p", &x_is_p[..]),
            ("y = p", &y_is_p[..]),
            ("point at infinity", &[0u8][..]),
            ("truncated key", truncated),
            ("garbage key", &garbage[..]),
        ] {
            check(&mut t, what, bad_key, &msg, hash, &sig, Some(false));
        }
        // Wrong signature lengths.
        check(
            &mut t,
            "short signature",
            pk,
            &msg,
            hash,
            &sig[..95],
            Some(false),
        );
        check(
            &mut t,
            "long signature",
            pk,
            &msg,
            hash,
            &[&sig[..], &[0]].concat(),
            Some(false),
        );
    }
    t
}

#[test]
fn ring_and_p384_agree_on_every_case() {
    let rounds: usize = std::env::var("P384_DIFFERENTIAL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2500);
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let share = rounds / threads + usize::from(i < rounds % threads);
                s.spawn(move || run_rounds(0x5EED_0000 + i as u64, share))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    let cases: u64 = tallies.iter().map(|t| t.cases).sum();
    let accepted: u64 = tallies.iter().map(|t| t.accepted).sum();
    // Two of the 21 cases a round are valid signatures (low-S and high-S).
    assert_eq!(accepted, 2 * rounds as u64);
    assert_eq!(cases, 21 * rounds as u64);
    eprintln!("{cases} cases, {accepted} accepted, ring and p384 agreeing on each");
}

#[test]
fn the_verifier_accepts_keys_given_compressed() {
    // verify() re-encodes the parsed key uncompressed for ring, so how a certificate encoded it
    // does not matter; ring itself refuses compressed points.
    let key = SigningKey::from_slice(&Sha384::digest(b"compressed")).expect("key");
    let compressed = key.verifying_key().to_encoded_point(true);
    let msg = b"message";
    let sig: Signature = key.sign_prehash(&Sha384::digest(msg)).expect("signs");
    assert!(!verify_raw(
        compressed.as_bytes(),
        msg,
        Hash::Sha384,
        &sig.to_bytes()
    ));
    let parsed = VerifyingKey::from_sec1_bytes(compressed.as_bytes()).expect("parses");
    let uncompressed = parsed.to_encoded_point(false);
    assert!(verify_raw(
        uncompressed.as_bytes(),
        msg,
        Hash::Sha384,
        &sig.to_bytes()
    ));
}
