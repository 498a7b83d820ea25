//! ECDSA P-384 signature verification with a variable-time double-scalar multiplication.
//!
//! Why: `p384` 0.13 verifies with two separate constant-time scalar multiplications (4-bit
//! windows scanned in constant time, 768 doublings per verification). Verification handles only
//! public data (key, signature, message), so constant time buys nothing there, and one
//! interleaved wNAF pass (Shamir's trick, 384 doublings, ~130 additions) does the same work in
//! about half the time. A document needs five verifications, so this is most of the verifier's
//! cost. All field and point arithmetic is still `p384`'s (fiat-crypto, complete formulas); only
//! the order of additions and doublings is ours, and tests check it against `p384`'s own
//! `G*a + Q*b` and against `p384`'s verifier on real signatures.

use p384::ecdsa::{Signature, VerifyingKey};
use p384::elliptic_curve::group::Group;
use p384::elliptic_curve::ops::{Invert, Reduce};
use p384::elliptic_curve::point::AffineCoordinates;
use p384::elliptic_curve::PrimeField;
use p384::{AffinePoint, NistP384, ProjectivePoint, Scalar, U384};
use std::sync::OnceLock;

/// wNAF window width for the key: digits are odd in -15..=15, so its table holds 8 points.
const W: u32 = 5;
/// Window width for the generator, whose table is computed once: 32 points, fewer additions.
const WG: u32 = 7;
/// A 384-bit scalar has at most 385 wNAF digits.
const DIGITS: usize = 386;

/// Verifies `sig` over a message digest `prehash` (any length; truncated or padded as ECDSA's
/// bits2field specifies). High-S signatures are accepted: (r, s) and (r, n - s) both verify.
pub(crate) fn verify_prehash(key: &VerifyingKey, prehash: &[u8], sig: &Signature) -> bool {
    let Ok(z) = ecdsa::hazmat::bits2field::<NistP384>(prehash) else {
        return false;
    };
    let z = <Scalar as Reduce<U384>>::reduce_bytes(&z);
    let (r, s) = sig.split_scalars();
    let s_inv = *s.invert();
    let u1 = z * s_inv;
    let u2 = *r * s_inv;
    let point = lincomb_g_vartime(&u1, &ProjectivePoint::from(*key.as_affine()), &u2);
    if bool::from(point.is_identity()) {
        return false;
    }
    let x = point.to_affine().x();
    *r == <Scalar as Reduce<U384>>::reduce_bytes(&x)
}

/// `G * a + q * b`, in variable time.
pub(crate) fn lincomb_g_vartime(a: &Scalar, q: &ProjectivePoint, b: &Scalar) -> ProjectivePoint {
    let (na, nb) = (wnaf(a, WG), wnaf(b, W));
    let (tg, tq) = (g_table(), odd_multiples(q));
    let mut acc = ProjectivePoint::IDENTITY;
    let Some(top) = (0..DIGITS).rev().find(|&i| na[i] != 0 || nb[i] != 0) else {
        return acc;
    };
    for i in (0..=top).rev() {
        acc = acc.double();
        // Digits are odd, so |d| / 2 indexes P, 3P, 5P, ... in a table.
        match na[i] {
            d if d > 0 => acc += &tg[(d / 2) as usize],
            d if d < 0 => acc -= &tg[(-d / 2) as usize],
            _ => {}
        }
        match nb[i] {
            d if d > 0 => acc += tq[(d / 2) as usize],
            d if d < 0 => acc -= tq[(-d / 2) as usize],
            _ => {}
        }
    }
    acc
}

/// G, 3G, ..., 63G in affine form (cheaper mixed additions), computed once.
fn g_table() -> &'static [AffinePoint] {
    static TABLE: OnceLock<Vec<AffinePoint>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let g = ProjectivePoint::GENERATOR;
        let twice = g.double();
        let mut t = vec![g];
        for _ in 1..1 << (WG - 2) {
            let next = t[t.len() - 1] + twice;
            t.push(next);
        }
        t.iter().map(|p| p.to_affine()).collect()
    })
}

/// P, 3P, 5P, ..., 15P.
fn odd_multiples(p: &ProjectivePoint) -> [ProjectivePoint; 1 << (W - 2)] {
    let twice = p.double();
    let mut t = [*p; 1 << (W - 2)];
    for i in 1..t.len() {
        t[i] = t[i - 1] + twice;
    }
    t
}

/// Width-W non-adjacent form, least significant digit first.
fn wnaf(k: &Scalar, w: u32) -> [i8; DIGITS] {
    // Little-endian 64-bit limbs plus one spare limb for the carry of a negative digit.
    let be = k.to_repr();
    let mut limbs = [0u64; 7];
    for (i, chunk) in be.rchunks(8).enumerate() {
        limbs[i] = chunk.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    }
    let mut out = [0i8; DIGITS];
    let mut i = 0;
    while limbs.iter().any(|&l| l != 0) && i < DIGITS {
        if limbs[0] & 1 == 1 {
            let m = (limbs[0] & ((1 << w) - 1)) as i64;
            let d = if m >= 1 << (w - 1) { m - (1 << w) } else { m };
            out[i] = d as i8;
            // k -= d, which clears the low W bits.
            if d > 0 {
                sub_small(&mut limbs, d as u64);
            } else {
                add_small(&mut limbs, (-d) as u64);
            }
        }
        // k >>= 1
        for j in 0..limbs.len() {
            let next = limbs.get(j + 1).copied().unwrap_or(0);
            limbs[j] = (limbs[j] >> 1) | (next << 63);
        }
        i += 1;
    }
    out
}

fn add_small(limbs: &mut [u64; 7], v: u64) {
    let mut carry = v;
    for l in limbs.iter_mut() {
        let (sum, c) = l.overflowing_add(carry);
        *l = sum;
        carry = u64::from(c);
        if carry == 0 {
            break;
        }
    }
}

fn sub_small(limbs: &mut [u64; 7], v: u64) {
    let mut borrow = v;
    for l in limbs.iter_mut() {
        let (diff, b) = l.overflowing_sub(borrow);
        *l = diff;
        borrow = u64::from(b);
        if borrow == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
    use p384::ecdsa::SigningKey;
    use sha2::{Digest, Sha384};

    fn scalar(seed: u32) -> Scalar {
        <Scalar as Reduce<U384>>::reduce_bytes(&Sha384::digest(seed.to_be_bytes()))
    }

    #[test]
    fn lincomb_matches_p384() {
        let q = ProjectivePoint::GENERATOR * scalar(999);
        let minus_one = -Scalar::ONE;
        let specials = [
            Scalar::ZERO,
            Scalar::ONE,
            minus_one,
            Scalar::from(15u64),
            Scalar::from(16u64),
            Scalar::from(31u64),
        ];
        // Kept small: the reference multiplications are slow in debug builds.
        let mut pairs: Vec<(Scalar, Scalar)> =
            (0..8).map(|i| (scalar(i), scalar(i + 1000))).collect();
        for (i, s) in specials.into_iter().enumerate() {
            pairs.push((s, scalar(i as u32)));
            pairs.push((scalar(i as u32), s));
        }
        pairs.push((minus_one, minus_one));
        for (a, b) in pairs {
            let want = ProjectivePoint::GENERATOR * a + q * b;
            assert_eq!(lincomb_g_vartime(&a, &q, &b), want);
        }
        // q = G and q = -G exercise doubling and cancellation inside the complete formulas.
        let (a, b) = (scalar(1), scalar(2));
        let g = ProjectivePoint::GENERATOR;
        assert_eq!(lincomb_g_vartime(&a, &g, &b), g * (a + b));
        assert_eq!(lincomb_g_vartime(&a, &-g, &a), ProjectivePoint::IDENTITY);
    }

    #[test]
    fn agrees_with_p384_verifier() {
        let key = SigningKey::from_slice(&Sha384::digest(b"k")).unwrap();
        for i in 0..20u32 {
            let digest = Sha384::digest(i.to_be_bytes());
            let sig: Signature = key.sign_prehash(&digest).unwrap();
            let high = Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
            for s in [sig, high] {
                assert!(verify_prehash(key.verifying_key(), &digest, &s));
            }
            assert!(key.verifying_key().verify_prehash(&digest, &sig).is_ok());
            let mut other = digest;
            other[i as usize % 48] ^= 1;
            assert!(!verify_prehash(key.verifying_key(), &other, &sig));
            // SHA-256 and SHA-512 sized digests, as certificates may use.
            let short: Signature = key.sign_prehash(&digest[..32]).unwrap();
            assert!(verify_prehash(key.verifying_key(), &digest[..32], &short));
            assert!(!verify_prehash(key.verifying_key(), &digest[..32], &sig));
        }
    }
}
