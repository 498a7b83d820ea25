//! A document as it arrives on disk or on the wire: raw COSE bytes, base64 text or hex text.

use std::borrow::Cow;

use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};

use crate::Error;

/// Largest raw document accepted. A document at every specification limit (32 PCRs of 64 bytes,
/// a 1024-byte certificate, 16 cabundle entries, three 1024-byte optional fields) is under 24 KiB.
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;

/// Returns the raw COSE_Sign1 bytes of `input`, which may be the raw bytes, base64 (standard or
/// URL-safe, padded or not, line breaks allowed) or hex (optionally `0x`-prefixed).
pub fn decode_input(input: &[u8]) -> Result<Cow<'_, [u8]>, Error> {
    // Text is at most twice the raw size (hex) plus line breaks.
    if input.len() > 3 * MAX_DOCUMENT_LEN {
        return Err(Error::BadInput(format!(
            "{} bytes, more than any attestation document",
            input.len()
        )));
    }
    // A COSE_Sign1 starts with an array of 4 (0x84) or tag 18 (0xd2): neither is a text byte,
    // so raw input cannot be mistaken for base64 or hex.
    match input.first() {
        None => return Err(Error::BadInput("empty input".into())),
        Some(0x84 | 0xd2) => return within_limit(Cow::Borrowed(input)),
        _ => {}
    }
    let text: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let text = text.strip_prefix(b"0x").unwrap_or(&text);
    if text.is_empty() || !text.is_ascii() {
        return Err(Error::BadInput(
            "neither raw COSE_Sign1 (0x84 or 0xd2 first) nor base64 or hex text".into(),
        ));
    }
    if text.len().is_multiple_of(2) && text.iter().all(u8::is_ascii_hexdigit) {
        return within_limit(Cow::Owned(
            hex::decode(text).map_err(|e| Error::BadInput(format!("hex: {e}")))?,
        ));
    }
    // Safe to view as str: checked ASCII above.
    let s = std::str::from_utf8(text).map_err(|_| Error::BadInput("not ASCII".into()))?;
    let decoded = Base64::decode_vec(s)
        .or_else(|_| Base64Unpadded::decode_vec(s))
        .or_else(|_| Base64Url::decode_vec(s))
        .or_else(|_| Base64UrlUnpadded::decode_vec(s))
        .map_err(|_| Error::BadInput("text is neither hex nor base64".into()))?;
    within_limit(Cow::Owned(decoded))
}

fn within_limit(raw: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, Error> {
    if raw.len() > MAX_DOCUMENT_LEN {
        return Err(Error::BadInput(format!(
            "{} bytes, more than the {MAX_DOCUMENT_LEN}-byte limit",
            raw.len()
        )));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_to_the_same_bytes() {
        let raw = [0x84u8, 0x44, 0xa1, 0x01, 0x38, 0x22, 0xa0, 0xff];
        let hex_text = format!("0x{}\n", hex::encode(raw));
        let b64 = Base64::encode_string(&raw);
        let b64_wrapped = format!("{}\n{}\n", &b64[..4], &b64[4..]);
        let b64url = Base64UrlUnpadded::encode_string(&raw);
        for input in [
            &raw[..],
            hex_text.as_bytes(),
            b64.as_bytes(),
            b64_wrapped.as_bytes(),
            b64url.as_bytes(),
        ] {
            assert_eq!(decode_input(input).unwrap().as_ref(), &raw[..]);
        }
        assert!(decode_input(b"").is_err());
        assert!(decode_input(b"not base64 !").is_err());
        assert!(decode_input(&[0xffu8; 10]).is_err());
    }
}
