//! Loading the Ed25519 key a client authenticates with.
//!
//! Accepted: an unencrypted OpenSSH private key (`ssh-keygen -t ed25519 -N ''`), base64 of the
//! 32-byte seed (or of seed‖public key, 64 bytes), or the 32 raw seed bytes.

use std::path::Path;

use base64::Engine as _;

use crate::wire::auth::SigningKey;

/// Why a key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not a key in an accepted format.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        reason: &'static str,
    },
}

/// Reads a signing key from a file.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyFileError> {
    let bytes = std::fs::read(path).map_err(|source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_signing_key(&bytes).map_err(|reason| KeyFileError::Format {
        path: path.display().to_string(),
        reason,
    })
}

/// Parses a signing key from the bytes of a key file.
pub fn parse_signing_key(bytes: &[u8]) -> Result<SigningKey, &'static str> {
    if let Ok(seed) = <[u8; 32]>::try_from(bytes) {
        return Ok(SigningKey::from_bytes(&seed));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "neither text nor 32 raw bytes")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    const BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";
    if let Some(rest) = text.trim().strip_prefix(BEGIN) {
        let body: String = rest
            .lines()
            .take_while(|l| !l.starts_with("-----END"))
            .flat_map(|l| l.trim().chars())
            .collect();
        let blob = b64
            .decode(body)
            .map_err(|_| "bad base64 in the OpenSSH key")?;
        return openssh_seed(&blob).map(|s| SigningKey::from_bytes(&s));
    }
    let raw = b64
        .decode(text.trim())
        .map_err(|_| "not an OpenSSH private key nor base64 of an Ed25519 seed")?;
    let seed: [u8; 32] = raw
        .get(..32)
        .filter(|_| raw.len() == 32 || raw.len() == 64)
        .and_then(|s| s.try_into().ok())
        .ok_or("base64 key is not 32 (seed) or 64 (seed and public key) bytes")?;
    Ok(SigningKey::from_bytes(&seed))
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    if b.len() < n {
        return Err("truncated OpenSSH key");
    }
    let (head, tail) = b.split_at(n);
    *b = tail;
    Ok(head)
}

fn string<'a>(b: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let len = take(b, 4)?;
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    take(b, len)
}

/// The seed inside an `openssh-key-v1` blob (unencrypted, one Ed25519 key).
fn openssh_seed(blob: &[u8]) -> Result<[u8; 32], &'static str> {
    let mut b = blob
        .strip_prefix(b"openssh-key-v1\0")
        .ok_or("not an openssh-key-v1 key")?;
    if string(&mut b)? != b"none" {
        return Err("the OpenSSH key is encrypted (use a key without a passphrase)");
    }
    string(&mut b)?; // kdf name
    string(&mut b)?; // kdf options
    take(&mut b, 4)?; // number of keys
    string(&mut b)?; // public key blob
    let mut private = string(&mut b)?;
    take(&mut private, 8)?; // check integers
    if string(&mut private)? != b"ssh-ed25519" {
        return Err("the OpenSSH key is not an Ed25519 key");
    }
    string(&mut private)?; // public key
    let pair = string(&mut private)?;
    pair.get(..32)
        .and_then(|s| s.try_into().ok())
        .ok_or("truncated Ed25519 private key")
}
