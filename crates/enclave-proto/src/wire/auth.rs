//! Client authentication: an Ed25519 signature over a challenge from the server.
//!
//! When the measured spec lists `debug.authorized_keys`, the server's hello carries a random
//! 32-byte nonce. The client answers with [`Auth`]: its public key, a random 32-byte nonce of
//! its own and a signature over the transcript
//!
//! ```text
//! "enclave-engine control v1 auth\0" || server nonce (32) || client nonce (32)
//! ```
//!
//! The domain string keeps these signatures from being valid for anything else signed with the
//! same key; the server nonce makes every signature good for one session only; the client nonce
//! means the client never signs bytes chosen entirely by the server.

use base64::Engine as _;
use ed25519_dalek::Signature;
pub use ed25519_dalek::{SigningKey, VerifyingKey};

use super::message::Auth;

/// Domain separation prefix of the signed transcript.
pub const TRANSCRIPT_DOMAIN: &[u8] = b"enclave-engine control v1 auth\0";

/// Why an [`Auth`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The public key is not in the authorized set.
    #[error("key is not authorized")]
    UnknownKey,
    /// The key is authorized but the signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// Why an authorized key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither raw base64 nor an OpenSSH `ssh-ed25519` line.
    #[error("not an Ed25519 public key (base64 of 32 bytes or `ssh-ed25519 AAAA...`): {0:?}")]
    Format(String),
    /// The bytes are not a valid Ed25519 point.
    #[error("invalid Ed25519 public key")]
    Invalid,
}

/// The bytes signed by the client.
pub fn transcript(server_nonce: &[u8; 32], client_nonce: &[u8; 32]) -> Vec<u8> {
    let mut t = Vec::with_capacity(TRANSCRIPT_DOMAIN.len() + 64);
    t.extend_from_slice(TRANSCRIPT_DOMAIN);
    t.extend_from_slice(server_nonce);
    t.extend_from_slice(client_nonce);
    t
}

/// 32 random bytes from the kernel (`getrandom(2)`, no file descriptor needed, so it also works
/// in enclave-init before `/dev` is mounted).
pub fn random_nonce() -> Result<[u8; 32], std::io::Error> {
    let mut nonce = [0u8; 32];
    getrandom::getrandom(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(nonce)
}

impl Auth {
    /// Answers a challenge with `key`, using a fresh random client nonce.
    pub fn sign(key: &SigningKey, server_nonce: &[u8; 32]) -> Result<Self, std::io::Error> {
        Ok(Self::sign_with_nonce(key, server_nonce, random_nonce()?))
    }

    /// Answers a challenge with a given client nonce (deterministic; for tests).
    pub fn sign_with_nonce(
        key: &SigningKey,
        server_nonce: &[u8; 32],
        client_nonce: [u8; 32],
    ) -> Self {
        use ed25519_dalek::Signer as _;
        let signature = key.sign(&transcript(server_nonce, &client_nonce));
        Self {
            public_key: key.verifying_key().to_bytes(),
            client_nonce,
            signature: signature.to_bytes(),
        }
    }
}

/// The keys allowed to open a control session (`debug.authorized_keys` of the spec).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizedKeys {
    keys: Vec<VerifyingKey>,
}

impl AuthorizedKeys {
    /// Parses the spec's list ([`parse_public_key`] for each line).
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Result<Self, KeyError> {
        let keys = lines
            .iter()
            .map(|l| parse_public_key(l.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }

    /// From already parsed keys.
    pub fn new(keys: Vec<VerifyingKey>) -> Self {
        Self { keys }
    }

    /// Whether no key is listed (then no authentication is asked).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks an answer to the challenge `server_nonce`; returns the key that signed.
    pub fn verify(&self, auth: &Auth, server_nonce: &[u8; 32]) -> Result<VerifyingKey, AuthError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.as_bytes() == &auth.public_key)
            .ok_or(AuthError::UnknownKey)?;
        let signature = Signature::from_bytes(&auth.signature);
        // verify_strict also refuses small-order keys and non-canonical signatures, so one
        // signature cannot be reshaped into another that verifies.
        key.verify_strict(&transcript(server_nonce, &auth.client_nonce), &signature)
            .map_err(|_| AuthError::BadSignature)?;
        Ok(*key)
    }
}

/// Parses an Ed25519 public key written as base64 of its 32 raw bytes or as an OpenSSH
/// `ssh-ed25519 AAAA... [comment]` line.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let format = || KeyError::Format(text.chars().take(80).collect());
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut words = text.split_whitespace();
    let first = words.next().ok_or_else(format)?;
    let raw: [u8; 32] = if first == "ssh-ed25519" {
        let blob = b64
            .decode(words.next().ok_or_else(format)?)
            .map_err(|_| format())?;
        openssh_blob_key(&blob).ok_or_else(format)?
    } else {
        let bytes = b64.decode(first).map_err(|_| format())?;
        bytes.try_into().map_err(|_| format())?
    };
    VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::Invalid)
}

/// The key inside an OpenSSH public key blob: `string "ssh-ed25519"`, `string key(32)`, each
/// `string` a big-endian u32 length then the bytes.
fn openssh_blob_key(blob: &[u8]) -> Option<[u8; 32]> {
    fn take_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = b.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    let (kind, rest) = take_string(blob)?;
    let (key, rest) = take_string(rest)?;
    if kind != b"ssh-ed25519" || !rest.is_empty() {
        return None;
    }
    key.try_into().ok()
}
