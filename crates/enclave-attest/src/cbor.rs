//! A small CBOR (RFC 8949) reader for the two structures we need: the COSE_Sign1 envelope and the
//! attestation document inside it.
//!
//! Why our own: the signature must be checked over the payload bytes exactly as received, so the
//! reader borrows byte strings from the input instead of copying and re-encoding them; and it
//! bounds everything an attacker controls (nesting depth, preallocation, total size) instead of
//! trusting length headers. Definite and indefinite lengths are both accepted for arrays, maps
//! and strings, because real NSM documents come with either form.

use std::borrow::Cow;

/// Deepest nesting accepted. A document is three levels deep; COSE adds two.
const MAX_DEPTH: usize = 16;

/// A decoded CBOR item borrowing from the input where it can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    /// Major type 0.
    Uint(u64),
    /// Major type 1: the value is `-1 - n`, kept as `n` so no range is lost.
    Nint(u64),
    /// Major type 2; owned only when it came in indefinite-length chunks.
    Bytes(Cow<'a, [u8]>),
    /// Major type 3, valid UTF-8.
    Text(Cow<'a, str>),
    /// Major type 4.
    Array(Vec<Value<'a>>),
    /// Major type 5, in input order (duplicates are the caller's concern).
    Map(Vec<(Value<'a>, Value<'a>)>),
    /// Major type 6.
    Tag(u64, Box<Value<'a>>),
    /// `false` / `true`.
    Bool(bool),
    /// `null` (and `undefined`, which serde-based encoders never write but which means the same
    /// "absent" to a reader).
    Null,
    /// Any other simple value or a float: never meaningful in our structures.
    Other,
}

impl<'a> Value<'a> {
    /// Short name of the type, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Uint(_) => "unsigned integer",
            Value::Nint(_) => "negative integer",
            Value::Bytes(_) => "byte string",
            Value::Text(_) => "text string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Tag(..) => "tag",
            Value::Bool(_) => "bool",
            Value::Null => "null",
            Value::Other => "simple value or float",
        }
    }
}

/// Decodes exactly one item spanning all of `input` (trailing bytes are an error: they would be
/// signed but invisible to the reader).
pub(crate) fn decode(input: &[u8]) -> Result<Value<'_>, String> {
    let mut r = Reader { input, pos: 0 };
    let v = r.item(0)?;
    if r.pos != input.len() {
        return Err(format!(
            "{} trailing byte(s) after the item",
            input.len() - r.pos
        ));
    }
    Ok(v)
}

/// The argument of an item head.
enum Arg {
    Definite(u64),
    Indefinite,
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let remaining = self.input.len() - self.pos;
        // Compare in u64 so a huge length header cannot wrap or allocate.
        if n > remaining as u64 {
            return Err(format!(
                "length {n} at offset {} runs past the end",
                self.pos
            ));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.input[start..self.pos])
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// Reads an item head: major type and argument.
    fn head(&mut self) -> Result<(u8, u8, Arg), String> {
        let b = self.byte()?;
        let (major, info) = (b >> 5, b & 0x1f);
        let arg = match info {
            0..=23 => Arg::Definite(u64::from(info)),
            24..=27 => {
                let bytes = self.take(1 << (info - 24))?;
                Arg::Definite(bytes.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            }
            31 => Arg::Indefinite,
            _ => {
                return Err(format!(
                    "reserved additional information {info} at offset {}",
                    self.pos - 1
                ))
            }
        };
        Ok((major, info, arg))
    }

    /// Is the next byte the "break" that ends an indefinite-length item?
    fn at_break(&mut self) -> Result<bool, String> {
        match self.input.get(self.pos) {
            Some(0xff) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err("indefinite-length item not terminated".into()),
        }
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nesting deeper than {MAX_DEPTH}"));
        }
        let at = self.pos;
        let (major, info, arg) = self.head()?;
        match (major, arg) {
            (0, Arg::Definite(n)) => Ok(Value::Uint(n)),
            (1, Arg::Definite(n)) => Ok(Value::Nint(n)),
            (2, Arg::Definite(n)) => Ok(Value::Bytes(Cow::Borrowed(self.take(n)?))),
            (2, Arg::Indefinite) => Ok(Value::Bytes(Cow::Owned(self.chunks(2)?))),
            (3, arg) => {
                let bytes: Cow<'a, [u8]> = match arg {
                    Arg::Definite(n) => Cow::Borrowed(self.take(n)?),
                    Arg::Indefinite => Cow::Owned(self.chunks(3)?),
                };
                let text = match bytes {
                    Cow::Borrowed(b) => Cow::Borrowed(
                        std::str::from_utf8(b)
                            .map_err(|_| format!("invalid UTF-8 in text at offset {at}"))?,
                    ),
                    Cow::Owned(b) => Cow::Owned(
                        String::from_utf8(b)
                            .map_err(|_| format!("invalid UTF-8 in text at offset {at}"))?,
                    ),
                };
                Ok(Value::Text(text))
            }
            (4, arg) => {
                let mut items = Vec::with_capacity(self.capacity(&arg, 1));
                match arg {
                    Arg::Definite(n) => {
                        for _ in 0..n {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                    Arg::Indefinite => {
                        while !self.at_break()? {
                            items.push(self.item(depth + 1)?);
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            (5, arg) => {
                let mut entries = Vec::with_capacity(self.capacity(&arg, 2));
                match arg {
                    Arg::Definite(n) => {
                        for _ in 0..n {
                            let k = self.item(depth + 1)?;
                            entries.push((k, self.item(depth + 1)?));
                        }
                    }
                    Arg::Indefinite => {
                        while !self.at_break()? {
                            let k = self.item(depth + 1)?;
                            entries.push((k, self.item(depth + 1)?));
                        }
                    }
                }
                Ok(Value::Map(entries))
            }
            (6, Arg::Definite(tag)) => Ok(Value::Tag(tag, Box::new(self.item(depth + 1)?))),
            (7, Arg::Definite(_)) => Ok(match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 | 23 => Value::Null,
                _ => Value::Other,
            }),
            (7, Arg::Indefinite) => Err(format!("unexpected break at offset {at}")),
            _ => Err(format!(
                "indefinite length not allowed for major type {major} at offset {at}"
            )),
        }
    }

    /// Preallocation for a container: never more than the remaining input could hold (each item
    /// takes at least one byte), so a forged length header cannot make us allocate.
    fn capacity(&self, arg: &Arg, per_entry: usize) -> usize {
        let remaining = (self.input.len() - self.pos) / per_entry;
        match arg {
            Arg::Definite(n) => usize::try_from(*n).unwrap_or(usize::MAX).min(remaining),
            Arg::Indefinite => 0,
        }
    }

    /// Concatenates the definite-length chunks of an indefinite-length string of `major` type.
    fn chunks(&mut self, major: u8) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while !self.at_break()? {
            let at = self.pos;
            match self.head()? {
                (m, _, Arg::Definite(n)) if m == major => out.extend_from_slice(self.take(n)?),
                _ => {
                    return Err(format!(
                        "bad chunk in indefinite-length string at offset {at}"
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// Writes the head of a CBOR item of `major` type with argument `n` in its shortest form.
pub(crate) fn write_head(out: &mut impl FnMut(&[u8]), major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out(&[m | n as u8]);
    } else if n <= 0xff {
        out(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        let b = (n as u16).to_be_bytes();
        out(&[m | 25, b[0], b[1]]);
    } else if n <= 0xffff_ffff {
        let b = (n as u32).to_be_bytes();
        out(&[m | 26, b[0], b[1], b[2], b[3]]);
    } else {
        out(&[m | 27]);
        out(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definite_and_indefinite_maps_decode_alike() {
        // {"a": h'01', "b": [1, -2]} both ways.
        let definite = [0xa2, 0x61, b'a', 0x41, 0x01, 0x61, b'b', 0x82, 0x01, 0x21];
        let indefinite = [
            0xbf, 0x61, b'a', 0x5f, 0x41, 0x01, 0xff, 0x61, b'b', 0x9f, 0x01, 0x21, 0xff, 0xff,
        ];
        assert_eq!(decode(&definite).unwrap(), decode(&indefinite).unwrap());
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        for input in [
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x9f, 0x01][..],
            &[0xff][..],
            &[0x1c][..],
            &[0x41][..],
            &[0x01, 0x02][..],
        ] {
            assert!(decode(input).is_err(), "{input:02x?}");
        }
        let deep = vec![0x81u8; 100];
        assert!(decode(&deep).is_err());
    }

    #[test]
    fn heads_are_shortest_form() {
        for (n, want) in [
            (23u64, vec![0x57]),
            (24, vec![0x58, 24]),
            (300, vec![0x59, 1, 44]),
            (70000, vec![0x5a, 0, 1, 0x11, 0x70]),
        ] {
            let mut got = Vec::new();
            write_head(&mut |b: &[u8]| got.extend_from_slice(b), 2, n);
            assert_eq!(got, want);
        }
    }
}
