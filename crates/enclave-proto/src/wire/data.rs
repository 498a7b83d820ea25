//! `Data` messages without a copy of their bytes.
//!
//! `Data` carries nearly every byte of a `cp` or an exec's output, and the generic CBOR path
//! copies it twice: ciborium decodes a byte string into a fresh vector, and encodes one through
//! its writer. This module writes and reads the one CBOR layout a `Data` message has when serde
//! encodes it with ciborium, and nothing else:
//!
//! ```text
//! a1 64 "data" a3  62 "id" <uint>  67 "channel" <text>  64 "data" <byte string header> <bytes>
//! ```
//!
//! (integers and lengths in their shortest form, as ciborium writes them). Decoding a payload
//! of that exact layout gives the message with its bytes a slice of the payload's buffer;
//! anything else, including a valid message encoded differently, is left to the generic decoder
//! ([`super::codec::decode`]), so the two decoders never disagree on a message. Tests check the
//! layout against ciborium's output, and the `wire_decode` fuzz target compares both decoders.

use bytes::Bytes;

use super::frame::HEADER_LEN;
use super::message::{Channel, RequestId};
use super::MAX_DATA_CHUNK;

/// The longest layout before the bytes: the map headers and keys, a `u32` id, the longest
/// channel name and a two-byte length.
pub const DATA_PREFIX_MAX: usize = 1 + 5 + 1 + 3 + 5 + 8 + 7 + 5 + 3;

/// The data chunk senders use: a frame of a `Data` message this size fits one encrypted
/// record ([`super::secure::MAX_RECORD_PLAINTEXT`]), so the receiver finds it whole in one
/// decrypted buffer and hands its bytes on without copying them.
pub const RECORD_DATA_CHUNK: usize =
    super::secure::MAX_RECORD_PLAINTEXT - HEADER_LEN - DATA_PREFIX_MAX;

const _: () = assert!(RECORD_DATA_CHUNK <= MAX_DATA_CHUNK);

fn channel_name(channel: Channel) -> &'static [u8] {
    match channel {
        Channel::Stdin => b"stdin",
        Channel::Stdout => b"stdout",
        Channel::Stderr => b"stderr",
        Channel::File => b"file",
    }
}

fn channel_of(name: &[u8]) -> Option<Channel> {
    Some(match name {
        b"stdin" => Channel::Stdin,
        b"stdout" => Channel::Stdout,
        b"stderr" => Channel::Stderr,
        b"file" => Channel::File,
        _ => return None,
    })
}

/// A CBOR head (major type and argument) in its shortest form.
fn put_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    if value < 24 {
        out.push(major | value as u8);
    } else if let Ok(v) = u8::try_from(value) {
        out.extend_from_slice(&[major | 24, v]);
    } else if let Ok(v) = u16::try_from(value) {
        out.push(major | 25);
        out.extend_from_slice(&v.to_be_bytes());
    } else if let Ok(v) = u32::try_from(value) {
        out.push(major | 26);
        out.extend_from_slice(&v.to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

const TEXT: u8 = 3;
const BYTES: u8 = 2;
const UINT: u8 = 0;
const MAP: u8 = 5;

fn put_text(out: &mut Vec<u8>, text: &[u8]) {
    put_head(out, TEXT, text.len() as u64);
    out.extend_from_slice(text);
}

/// Appends the CBOR of `Data { id, channel, data }` up to and including the byte string's
/// header: the message's bytes follow it. The same bytes ciborium writes for the message.
pub fn put_prefix(out: &mut Vec<u8>, id: RequestId, channel: Channel, len: usize) {
    put_head(out, MAP, 1);
    put_text(out, b"data");
    put_head(out, MAP, 3);
    put_text(out, b"id");
    put_head(out, UINT, u64::from(id));
    put_text(out, b"channel");
    put_text(out, channel_name(channel));
    put_text(out, b"data");
    put_head(out, BYTES, len as u64);
}

/// Reads CBOR heads in their shortest form off the front of a slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// A head of type `major`; `None` for another type or a longer form than needed (the
    /// generic decoder then decides).
    fn head(&mut self, major: u8) -> Option<u64> {
        let first = *self.take(1)?.first()?;
        if first >> 5 != major {
            return None;
        }
        let (value, min) = match first & 0x1f {
            v @ 0..=23 => return Some(u64::from(v)),
            24 => (u64::from(self.take(1)?[0]), 24),
            25 => (
                u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
                0x100,
            ),
            26 => (
                u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
                0x1_0000,
            ),
            _ => return None,
        };
        (value >= min).then_some(value)
    }

    fn text(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.head(TEXT)?).ok()?;
        self.take(len)
    }

    fn key(&mut self, key: &[u8]) -> Option<()> {
        (self.text()? == key).then_some(())
    }
}

/// The `Data` message in `payload` (a frame's payload) when it has exactly the layout above and
/// passes the message's checks (id not 0, at most [`MAX_DATA_CHUNK`] bytes); its bytes are a
/// slice of `payload`. `None` otherwise: decode it the generic way.
pub fn parse(payload: &Bytes) -> Option<(RequestId, Channel, Bytes)> {
    let mut c = Cursor {
        buf: payload,
        pos: 0,
    };
    (c.head(MAP)? == 1).then_some(())?;
    c.key(b"data")?;
    (c.head(MAP)? == 3).then_some(())?;
    c.key(b"id")?;
    let id = RequestId::try_from(c.head(UINT)?).ok()?;
    c.key(b"channel")?;
    let channel = channel_of(c.text()?)?;
    c.key(b"data")?;
    let len = usize::try_from(c.head(BYTES)?).ok()?;
    // Exactly the rest of the payload: trailing bytes are the generic decoder's error to report.
    if id == 0 || len > MAX_DATA_CHUNK || payload.len() - c.pos != len {
        return None;
    }
    Some((id, channel, payload.slice(c.pos..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode, ClientMessage, ServerMessage};

    fn ours(id: RequestId, channel: Channel, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_prefix(&mut out, id, channel, data.len());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn the_layout_is_ciboriums_for_every_size_of_id_and_length() {
        let ids = [1, 23, 24, 255, 256, 65535, 65536, u32::MAX];
        let lens = [0, 1, 23, 24, 255, 256, RECORD_DATA_CHUNK, MAX_DATA_CHUNK];
        let channels = [
            Channel::Stdin,
            Channel::Stdout,
            Channel::Stderr,
            Channel::File,
        ];
        for (&id, &len) in ids.iter().flat_map(|i| lens.iter().map(move |l| (i, l))) {
            for channel in channels {
                let data = Bytes::from(vec![0x5a; len]);
                let msg = ServerMessage::Data {
                    id,
                    channel,
                    data: data.clone(),
                };
                let generic = encode(&msg).unwrap();
                assert_eq!(ours(id, channel, &data), generic, "id {id} len {len}");
                let client = encode(&ClientMessage::Data { id, channel, data }).unwrap();
                assert_eq!(client, generic);
                let parsed = parse(&Bytes::from(generic)).expect("parsed");
                assert_eq!((parsed.0, parsed.1, parsed.2.len()), (id, channel, len));
            }
        }
    }

    #[test]
    fn the_longest_data_frame_senders_make_fits_one_record() {
        let frame = HEADER_LEN + ours(u32::MAX, Channel::Stdout, &[0; RECORD_DATA_CHUNK]).len();
        assert_eq!(frame, crate::wire::secure::MAX_RECORD_PLAINTEXT);
    }

    #[test]
    fn anything_else_is_left_to_the_generic_decoder() {
        let good = ours(7, Channel::File, b"abc");
        // Id 0, oversize data, trailing and missing bytes: the generic decoder's errors.
        let mut cases = vec![
            ours(0, Channel::File, b"abc"),
            ours(1, Channel::File, &vec![0; MAX_DATA_CHUNK + 1]),
            [good.as_slice(), b"x"].concat(),
            good[..good.len() - 1].to_vec(),
        ];
        // A longer form of the id (0x18 0x07 for 7): valid CBOR, not this layout.
        let mut long = good.clone();
        let at = long.iter().position(|&b| b == 7).unwrap();
        long.splice(at..=at, [0x18, 7]);
        cases.push(long);
        // Another message, and an unknown channel name.
        cases.push(encode(&ClientMessage::CpDone { id: 3 }).unwrap());
        let mut unknown = good.clone();
        let at_name = unknown.windows(4).position(|w| w == b"file").unwrap();
        unknown[at_name] = b'd';
        cases.push(unknown);
        for case in cases {
            assert!(parse(&Bytes::from(case.clone())).is_none(), "{case:02x?}");
        }
        // The long form decodes the generic way, to the same message.
        let mut long = good.clone();
        long.splice(at..=at, [0x18, 7]);
        let generic: ClientMessage = decode(&long).unwrap();
        assert_eq!(
            generic,
            ClientMessage::Data {
                id: 7,
                channel: Channel::File,
                data: Bytes::from_static(b"abc")
            }
        );
    }

    #[test]
    fn the_bytes_are_a_slice_of_the_payload_not_a_copy() {
        let payload = Bytes::from(ours(9, Channel::Stdout, &[1; 1000]));
        let (_, _, data) = parse(&payload).unwrap();
        let start = payload.len() - 1000;
        assert_eq!(data.as_ptr(), payload[start..].as_ptr());
    }
}
