//! NATS credentials: a token, a user and password, an NKey (an Ed25519 key that signs the
//! server's nonce, so no secret crosses the wire), or a `.creds` file (a user JWT that an
//! account signed, and the user's NKey, which signs the nonce). They are secrets: read at start from a file
//! delivered to the enclave at run time (the spec, which is public and measured, names only
//! the file and its kind), never logged, and shown by `Debug` as their kind alone.

use std::io::Read;
use std::path::Path;

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use enclave_spec::NatsCredentialKind;

use super::NatsError;

/// Largest credentials file read (a token or a seed is well under 1 KiB).
const MAX_CREDENTIALS_FILE: u64 = 64 * 1024;
/// NKey prefix bytes (nkeys: `PrefixByteSeed`, `PrefixByteUser`).
const PREFIX_SEED: u8 = 18 << 3;
const PREFIX_USER: u8 = 20 << 3;

/// Whose public key an NKey's text form names: its first letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NKeyRole {
    /// `O…`: signs account JWTs.
    Operator,
    /// `A…`: signs user JWTs.
    Account,
    /// `U…`: the publisher's own.
    User,
}

impl NKeyRole {
    /// The nkeys prefix byte (`PrefixByteOperator`, `PrefixByteAccount`, `PrefixByteUser`).
    fn prefix(self) -> u8 {
        match self {
            NKeyRole::Operator => 14 << 3,
            NKeyRole::Account => 0,
            NKeyRole::User => PREFIX_USER,
        }
    }
}

/// How the publisher authenticates to NATS.
#[derive(Clone)]
pub enum NatsAuth {
    /// `auth_token`.
    Token(String),
    /// `user` and `pass`.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// An NKey user: `nkey` (the public key) and `sig` (the nonce signed).
    NKey(NKey),
    /// A user JWT: `jwt` (public: the server checks the account's signature on it) and `sig`
    /// (the nonce signed with the user's NKey, whose public key the JWT names).
    Jwt {
        /// The JWT, as the file holds it.
        jwt: String,
        /// The user's key.
        key: NKey,
    },
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::Token(_) => f.write_str("NatsAuth::Token(..)"),
            NatsAuth::UserPassword { user, .. } => {
                write!(f, "NatsAuth::UserPassword {{ user: {user:?}, .. }}")
            }
            NatsAuth::NKey(k) => write!(f, "NatsAuth::NKey({})", k.public_key()),
            NatsAuth::Jwt { key, .. } => write!(f, "NatsAuth::Jwt({})", key.public_key()),
        }
    }
}

impl NatsAuth {
    /// Reads the credentials file of `kind` at `path`:
    ///
    /// * `token`: the token (surrounding white space dropped);
    /// * `user_password`: one line `USER:PASSWORD` (split at the first `:`);
    /// * `nkey`: an NKey user seed (`SU…`, as `nk -gen user` writes it);
    /// * `creds`: a NATS credentials file, as `nsc` writes it (the user JWT and NKey seed
    ///   between their `-----BEGIN …-----` and `------END …------` lines).
    pub fn load(kind: NatsCredentialKind, path: &Path) -> Result<NatsAuth, NatsError> {
        let read_err = |source| NatsError::CredentialsFile {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_CREDENTIALS_FILE + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        let bad = |kind, reason| NatsError::BadCredentials {
            path: path.to_path_buf(),
            kind,
            reason,
        };
        if text.len() as u64 > MAX_CREDENTIALS_FILE {
            return Err(bad(kind_name(kind), "larger than 64 KiB"));
        }
        let text = text.trim();
        match kind {
            NatsCredentialKind::Token => match text {
                "" => Err(bad("token", "the file is empty")),
                t if t.contains(['\n', '\r']) => Err(bad("token", "more than one line")),
                t => Ok(NatsAuth::Token(t.to_string())),
            },
            NatsCredentialKind::UserPassword => {
                if text.contains(['\n', '\r']) {
                    return Err(bad("user:password line", "more than one line"));
                }
                match text.split_once(':') {
                    Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                        Ok(NatsAuth::UserPassword {
                            user: user.to_string(),
                            password: password.to_string(),
                        })
                    }
                    _ => Err(bad("user:password line", "not USER:PASSWORD")),
                }
            }
            NatsCredentialKind::Nkey => NKey::from_seed(text)
                .map(NatsAuth::NKey)
                .map_err(|reason| bad("NKey user seed", reason)),
            NatsCredentialKind::Creds => {
                let (jwt, seed) = parse_creds(text).map_err(|reason| bad("creds file", reason))?;
                let key =
                    NKey::from_seed(seed).map_err(|reason| bad("creds file's seed", reason))?;
                Ok(NatsAuth::Jwt {
                    jwt: jwt.to_string(),
                    key,
                })
            }
        }
    }

    /// The CONNECT fields for these credentials; `nonce` is the server's (for an NKey).
    pub(crate) fn connect_fields(
        &self,
        nonce: Option<&str>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, NatsError> {
        let mut fields = serde_json::Map::new();
        match self {
            NatsAuth::Token(token) => {
                fields.insert("auth_token".into(), token.as_str().into());
            }
            NatsAuth::UserPassword { user, password } => {
                fields.insert("user".into(), user.as_str().into());
                fields.insert("pass".into(), password.as_str().into());
            }
            NatsAuth::NKey(key) => {
                let nonce = nonce.ok_or(NatsError::NoNonce)?;
                fields.insert("nkey".into(), key.public_key().into());
                fields.insert("sig".into(), key.sign_nonce(nonce).into());
            }
            NatsAuth::Jwt { jwt, key } => {
                let nonce = nonce.ok_or(NatsError::NoNonce)?;
                fields.insert("jwt".into(), jwt.as_str().into());
                fields.insert("sig".into(), key.sign_nonce(nonce).into());
            }
        }
        Ok(fields)
    }
}

fn kind_name(kind: NatsCredentialKind) -> &'static str {
    match kind {
        NatsCredentialKind::Token => "token",
        NatsCredentialKind::UserPassword => "user:password line",
        NatsCredentialKind::Nkey => "NKey user seed",
        NatsCredentialKind::Creds => "creds file",
    }
}

/// The user JWT and the seed of a `.creds` file: each the first non-empty line after its
/// `-----BEGIN NATS USER JWT-----` / `-----BEGIN USER NKEY SEED-----` line (`nsc` writes five
/// dashes before, and six after the `------END …------` markers; any number is taken). The
/// reason for a refusal never quotes the file.
fn parse_creds(text: &str) -> Result<(&str, &str), &'static str> {
    let after = |marker: &str| {
        let mut lines = text.lines().map(str::trim);
        lines.find(|l| l.trim_matches('-').trim() == marker)?;
        lines.find(|l| !l.is_empty())
    };
    let jwt = after("BEGIN NATS USER JWT").ok_or("no BEGIN NATS USER JWT section")?;
    let seed = after("BEGIN USER NKEY SEED").ok_or("no BEGIN USER NKEY SEED section")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let base64url = |p: &&str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if parts.len() != 3 || !parts.iter().all(base64url) {
        return Err("the user JWT is not three base64url parts");
    }
    Ok((jwt, seed))
}

/// An NKey user key pair (Ed25519).
#[derive(Clone)]
pub struct NKey {
    signing: SigningKey,
}

impl NKey {
    /// From the 32 raw seed bytes.
    pub fn from_raw_seed(seed: [u8; 32]) -> NKey {
        NKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// Decodes a user seed `SU…`: base32 of the seed prefix, the user prefix, 32 bytes and a
    /// CRC-16 (the nkeys encoding). The reason for a refusal never quotes the seed.
    pub fn from_seed(text: &str) -> Result<NKey, &'static str> {
        let raw = base32_decode(text.as_bytes()).ok_or("not base32")?;
        let (body, crc) = raw.split_last_chunk::<2>().ok_or("too short")?;
        if body.len() != 34 {
            return Err("wrong length for a seed");
        }
        if crc16(body) != u16::from_le_bytes(*crc) {
            return Err("checksum mismatch");
        }
        let seed_prefix = body[0] & 0b1111_1000;
        let kind_prefix = ((body[0] & 0b111) << 5) | ((body[1] & 0b1111_1000) >> 3);
        if seed_prefix != PREFIX_SEED {
            return Err("not a seed (a seed starts with S)");
        }
        if kind_prefix != PREFIX_USER {
            return Err("not a user seed (a user seed starts with SU)");
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&body[2..]);
        Ok(NKey::from_raw_seed(seed))
    }

    /// The seed in the nkeys text form (`SU…`), as the credentials file holds it.
    pub fn seed_text(&self) -> String {
        let mut raw = vec![
            PREFIX_SEED | (PREFIX_USER >> 5),
            (PREFIX_USER & 0b1_1111) << 3,
        ];
        raw.extend_from_slice(self.signing.as_bytes());
        with_crc_base32(raw)
    }

    /// The public key in the nkeys text form (`U…`), as the server's configuration lists it.
    pub fn public_key(&self) -> String {
        self.public_key_as(NKeyRole::User)
    }

    /// The public key in the text form of `role` (`O…`, `A…`, `U…`): the same Ed25519 key
    /// signs JWTs as an operator or an account (what a test of operator mode plays).
    pub fn public_key_as(&self, role: NKeyRole) -> String {
        let mut raw = vec![role.prefix()];
        raw.extend_from_slice(self.signing.verifying_key().as_bytes());
        with_crc_base32(raw)
    }

    /// The server's nonce signed, base64url without padding (what `sig` carries; and, over a
    /// JWT's `header.claims`, the JWT's signature).
    pub fn sign_nonce(&self, nonce: &str) -> String {
        Base64UrlUnpadded::encode_string(&self.signing.sign(nonce.as_bytes()).to_bytes())
    }
}

impl std::fmt::Debug for NKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NKey({})", self.public_key())
    }
}

fn with_crc_base32(mut raw: Vec<u8>) -> String {
    let crc = crc16(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    base32_encode(&raw)
}

/// CRC-16/XMODEM (polynomial 0x1021, initial 0), as nkeys checks its keys.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32, no padding.
fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// RFC 4648 base32, no padding; `None` on a character outside the alphabet or non-zero
/// trailing bits.
fn base32_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &c in text {
        let value = BASE32.iter().position(|&b| b == c)?;
        buffer = ((buffer << 5) | value as u32) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    (bits < 5 && buffer & ((1 << bits) - 1) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base32_decode(base32_encode(&data).as_bytes()), Some(data));
        }
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32_decode(b"MZXW6YTBOI").as_deref(),
            Some(&b"foobar"[..])
        );
        assert_eq!(base32_decode(b"MZXW6YTBO1"), None);
    }

    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
    }

    #[test]
    fn nkey_text_forms_round_trip_and_refuse_damage() {
        let key = NKey::from_raw_seed([42; 32]);
        let seed = key.seed_text();
        assert!(seed.starts_with("SU"), "{seed}");
        assert!(key.public_key().starts_with('U'));
        assert_eq!(key.public_key().len(), 56);
        let back = NKey::from_seed(&seed).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let mut damaged = seed.into_bytes();
        damaged[10] = if damaged[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            NKey::from_seed(std::str::from_utf8(&damaged).unwrap()).unwrap_err(),
            "checksum mismatch"
        );
        // A public key is not a seed.
        assert!(NKey::from_seed(&key.public_key()).is_err());
    }
}
