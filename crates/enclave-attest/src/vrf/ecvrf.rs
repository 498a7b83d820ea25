//! ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381 section 5, suite string `0x03`).

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::{clamp_integer, Scalar};
use curve25519_dalek::traits::IsIdentity;
use sha2::{Digest, Sha512};

use super::{decode_point, Output, Proof, PublicKey, SecretKey, VrfError, PROOF_LEN};

/// `suite_string` for ECVRF-EDWARDS25519-SHA512-TAI.
const SUITE: u8 = 0x03;
/// Challenge length in bytes (`cLen`).
const C_LEN: usize = 16;

/// Expands the seed (RFC 8032 5.1.5): `x` from the clamped low half of SHA-512(seed), and the
/// high half used as the nonce key (RFC 9381 5.4.2.2).
fn expand(sk: &SecretKey) -> (Scalar, [u8; 32]) {
    let h: [u8; 64] = Sha512::digest(sk.seed).into();
    let mut low = [0u8; 32];
    let mut high = [0u8; 32];
    low.copy_from_slice(&h[..32]);
    high.copy_from_slice(&h[32..]);
    (Scalar::from_bytes_mod_order(clamp_integer(low)), high)
}

/// Public key `Y = x * B`. A clamped scalar is a multiple of 8 below 2^255 and non-zero mod
/// the group order, so `Y` always has large order.
pub(super) fn public_key(sk: &SecretKey) -> PublicKey {
    let (x, _) = expand(sk);
    let point = EdwardsPoint::mul_base(&x);
    PublicKey {
        bytes: point.compress().to_bytes(),
        point,
    }
}

/// RFC 9381 5.4.1.1 `ECVRF_encode_to_curve_try_and_increment` with `encode_to_curve_salt =
/// PK_string`. Returns `None` only if all 256 counters fail (probability about 2^-256).
fn encode_to_curve(pk: &[u8; 32], alpha: &[u8]) -> Option<EdwardsPoint> {
    (0u8..=255).find_map(|ctr| {
        let hash = Sha512::new()
            .chain_update([SUITE, 0x01])
            .chain_update(pk)
            .chain_update(alpha)
            .chain_update([ctr, 0x00])
            .finalize();
        let mut candidate = [0u8; 32];
        candidate.copy_from_slice(&hash[..32]);
        let h = decode_point(&candidate)?.mul_by_cofactor();
        (!h.is_identity()).then_some(h)
    })
}

/// RFC 9381 5.4.2.2 nonce generation (from RFC 8032 5.1.6).
fn nonce(nonce_key: &[u8; 32], h_string: &[u8; 32]) -> Scalar {
    let k: [u8; 64] = Sha512::new()
        .chain_update(nonce_key)
        .chain_update(h_string)
        .finalize()
        .into();
    Scalar::from_bytes_mod_order_wide(&k)
}

/// RFC 9381 5.4.3 `ECVRF_challenge_generation` over (Y, H, Gamma, U, V); returns `c_string`.
fn challenge(points: [&EdwardsPoint; 5]) -> [u8; C_LEN] {
    let mut hasher = Sha512::new().chain_update([SUITE, 0x02]);
    for p in points {
        hasher.update(p.compress().as_bytes());
    }
    let hash = hasher.chain_update([0x00]).finalize();
    let mut c = [0u8; C_LEN];
    c.copy_from_slice(&hash[..C_LEN]);
    c
}

/// Interprets a 16-byte little-endian challenge as a scalar (always < q).
fn challenge_scalar(c: &[u8; C_LEN]) -> Scalar {
    let mut wide = [0u8; 32];
    wide[..C_LEN].copy_from_slice(c);
    Scalar::from_bytes_mod_order(wide)
}

/// `Gamma` to `beta`: SHA-512(suite || 0x03 || cofactor * Gamma || 0x00).
fn gamma_to_hash(gamma: &EdwardsPoint) -> Output {
    let beta: [u8; 64] = Sha512::new()
        .chain_update([SUITE, 0x03])
        .chain_update(gamma.mul_by_cofactor().compress().as_bytes())
        .chain_update([0x00])
        .finalize()
        .into();
    Output(beta)
}

/// RFC 9381 5.1 `ECVRF_prove(SK, alpha_string)`. Fails only if `encode_to_curve` finds no
/// point in 256 tries (probability about 2^-256), which the RFC leaves to the implementation.
pub fn prove(sk: &SecretKey, alpha: &[u8]) -> Result<Proof, VrfError> {
    let (x, nonce_key) = expand(sk);
    let y = EdwardsPoint::mul_base(&x);
    let pk = y.compress().to_bytes();
    let h = encode_to_curve(&pk, alpha).ok_or(VrfError::EncodeToCurve)?;
    let h_string = h.compress().to_bytes();
    let gamma = x * h;
    let k = nonce(&nonce_key, &h_string);
    let u = EdwardsPoint::mul_base(&k);
    let v = k * h;
    let c = challenge([&y, &h, &gamma, &u, &v]);
    let s = k + challenge_scalar(&c) * x;
    let mut pi = [0u8; PROOF_LEN];
    pi[..32].copy_from_slice(gamma.compress().as_bytes());
    pi[32..48].copy_from_slice(&c);
    pi[48..].copy_from_slice(s.as_bytes());
    Ok(Proof(pi))
}

/// RFC 9381 5.4.4 `ECVRF_decode_proof`: strict Gamma decoding and `s < q`.
fn decode_proof(proof: &Proof) -> Result<(EdwardsPoint, [u8; C_LEN], Scalar), VrfError> {
    let mut gamma = [0u8; 32];
    let mut c = [0u8; C_LEN];
    let mut s = [0u8; 32];
    gamma.copy_from_slice(&proof.0[..32]);
    c.copy_from_slice(&proof.0[32..48]);
    s.copy_from_slice(&proof.0[48..]);
    let gamma = decode_point(&gamma).ok_or(VrfError::InvalidGamma)?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s))
        .ok_or(VrfError::NonCanonicalScalar)?;
    Ok((gamma, c, s))
}

/// RFC 9381 5.2 `ECVRF_proof_to_hash`. Does not verify the proof: use [`verify`] for that.
pub fn proof_to_hash(proof: &Proof) -> Result<Output, VrfError> {
    let (gamma, _, _) = decode_proof(proof)?;
    Ok(gamma_to_hash(&gamma))
}

/// RFC 9381 5.3 `ECVRF_verify(PK, alpha_string, pi_string)` with `validate_key = TRUE` (the key
/// was validated by [`PublicKey::from_bytes`]). Returns `beta` when the proof is valid.
pub fn verify(pk: &PublicKey, alpha: &[u8], proof: &Proof) -> Result<Output, VrfError> {
    let (gamma, c, s) = decode_proof(proof)?;
    let h = encode_to_curve(&pk.bytes, alpha).ok_or(VrfError::VerificationFailed)?;
    let c_scalar = challenge_scalar(&c);
    // U = s*B - c*Y, V = s*H - c*Gamma.
    let u = EdwardsPoint::vartime_double_scalar_mul_basepoint(&(-c_scalar), &pk.point, &s);
    let v = s * h - c_scalar * gamma;
    let expected = challenge([&pk.point, &h, &gamma, &u, &v]);
    if expected != c {
        return Err(VrfError::VerificationFailed);
    }
    Ok(gamma_to_hash(&gamma))
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;

    #[test]
    fn basepoint_round_trips_strictly() {
        let b = ED25519_BASEPOINT_POINT.compress().to_bytes();
        assert_eq!(decode_point(&b), Some(ED25519_BASEPOINT_POINT));
    }
}
