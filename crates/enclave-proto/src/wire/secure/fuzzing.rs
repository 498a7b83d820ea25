//! Bodies of the fuzz targets of the encrypted session (`fuzz/fuzz_targets/wire_handshake.rs`,
//! `wire_secure.rs`), plain functions so that unit tests run them over seeds on every
//! `cargo test`. Each must return normally for any input: a panic or a hang is the bug.

use std::io::{Cursor, Write};
use std::sync::{Arc, OnceLock};

use super::record::{ROOM_AFTER, ROOM_BEFORE};
use super::{
    prologue, ControlIdentity, IdentityPayload, Initiator, Responder, SecureReader, SecureWriter,
    ServerCheck, Transport,
};
use crate::wire::{decode, read_frame, ClientMessage, Frame, MAX_FRAME_LEN};

/// One identity for every input of every fuzz body (key generation is the slow part).
pub(crate) fn identity() -> Arc<ControlIdentity> {
    static ID: OnceLock<Arc<ControlIdentity>> = OnceLock::new();
    ID.get_or_init(|| {
        // ok: not outside input; without randomness nothing here could run.
        let id = ControlIdentity::generate().expect("X25519 key generation");
        Arc::new(id.with_document(vec![0xd0; 64]))
    })
    .clone()
}

/// A finished handshake's two transports (server's, client's), made once.
fn transports() -> &'static (Transport, Transport) {
    static T: OnceLock<(Transport, Transport)> = OnceLock::new();
    T.get_or_init(|| {
        let id = identity();
        let p = prologue(b"client hello", b"server hello");
        // ok: a handshake between two honest ends of this code; failing is a bug, not input.
        let (initiator, msg1) = Initiator::start(&p).expect("start");
        let (msg2, server) = Responder::new(&id, &p)
            .and_then(|r| r.respond(&msg1, &id))
            .expect("respond");
        let (client, _) = initiator
            .finish(&msg2, &ServerCheck::Pinned(id.public_key()))
            .expect("finish");
        (server, client)
    })
}

/// The handshake's decoders with arbitrary bytes: the enclave reading a client's first
/// message, a client reading the enclave's answer, the identity payload; then a real handshake
/// whose messages are changed by the input, which both ends must refuse or agree on.
pub fn handshake(data: &[u8]) {
    let id = identity();
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (a, b) = data.split_at(split);
    let p = prologue(a, b"server hello");
    if let Ok(responder) = Responder::new(&id, &p) {
        let _ = responder.respond(data, &id);
    }
    if let Ok((initiator, _)) = Initiator::start(&p) {
        let _ = initiator.finish(data, &ServerCheck::AnyEnclave);
    }
    let _ = IdentityPayload::decode(data);

    // A genuine exchange, each message xored with the input where it overlaps.
    let p = prologue(b"c", b"s");
    let (Ok((initiator, mut msg1)), Ok(responder)) =
        (Initiator::start(&p), Responder::new(&id, &p))
    else {
        return;
    };
    for (m, d) in msg1.iter_mut().zip(a) {
        *m ^= d;
    }
    let Ok((mut msg2, server)) = responder.respond(&msg1, &id) else {
        return;
    };
    for (m, d) in msg2.iter_mut().zip(b) {
        *m ^= d;
    }
    if let Ok((client, key)) = initiator.finish(&msg2, &ServerCheck::AnyEnclave) {
        // A change anywhere makes the client's decryption of the enclave's key fail, so what
        // gets through is the genuine session with the genuine enclave.
        assert_eq!(client.handshake_hash(), server.handshake_hash());
        assert_eq!(key, id.public_key());
    }
}

/// The record reader over arbitrary bytes, and over genuine records whose bytes the input
/// changes; whatever opens must decode (or be refused) as control messages without panic, and
/// the zero-copy frame reader must see exactly the frames the byte-stream reader sees.
pub fn records(data: &[u8]) {
    let (server, client) = transports();
    read_messages(data, server);

    let mut w = SecureWriter::new(Vec::new(), client.state());
    let half = data.len() / 2;
    // Frames whole (as the endpoints write them) when the input's first byte is odd, some
    // sealed in place (as `cp` sends a file's chunks), as a raw byte stream otherwise: records
    // then cut frames anywhere.
    if data.first().is_some_and(|b| b & 1 == 1) {
        let mut rest = &data[..half];
        while let Some((len, tail)) = rest.split_first() {
            let (frame, tail) = tail.split_at(usize::from(*len & 0x7f).min(tail.len()));
            let _ = if len & 0x80 == 0 {
                w.write_frame(frame)
            } else {
                let mut laid_out = vec![0; ROOM_BEFORE + frame.len() + ROOM_AFTER];
                laid_out[ROOM_BEFORE..ROOM_BEFORE + frame.len()].copy_from_slice(frame);
                w.write_frames_in_place(&mut [&mut laid_out])
            };
            rest = tail;
        }
    } else {
        let _ = w.write_all(&data[..half]);
    }
    let _ = w.flush();
    let mut sealed = std::mem::take(w.get_mut());
    for (s, d) in sealed.iter_mut().zip(&data[half..]) {
        *s ^= d;
    }
    read_messages(&sealed, server);
}

fn read_messages(sealed: &[u8], server: &Transport) {
    let mut streamed = SecureReader::new(Cursor::new(sealed.to_vec()), server.state());
    let mut whole = SecureReader::new(Cursor::new(sealed.to_vec()), server.state());
    loop {
        let a = read_frame(&mut streamed).map(|f| f.map(Frame::into_payload));
        let b = whole
            .read_frame(MAX_FRAME_LEN)
            .map(|f| f.map(|b| b.to_vec()));
        match (a, b) {
            (Ok(Some(a)), Ok(Some(b))) => {
                assert_eq!(a, b);
                let _ = decode::<ClientMessage>(&a);
            }
            (Ok(None), Ok(None)) | (Err(_), Err(_)) => break,
            (a, b) => panic!("frame readers disagree: {a:?} / {b:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_do_not_panic() {
        let (_, client) = transports();
        let mut w = SecureWriter::new(Vec::new(), client.state());
        let _ = w.write_all(&[0, 0, 0, 2, 0xa1, 0x00]);
        let _ = w.flush();
        let genuine = w.get_mut().clone();
        let seeds: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0xff; 32],
            vec![0, 16, 0, 0],
            vec![0xff, 0xff, 1, 2, 3],
            genuine.clone(),
            [genuine.clone(), genuine].concat(),
            (0..=255u8).collect(),
            vec![48; 200],
        ];
        for seed in &seeds {
            handshake(seed);
            records(seed);
            for cut in 0..seed.len().min(64) {
                handshake(&seed[..cut]);
                records(&seed[..cut]);
            }
        }
    }

    /// Cheap mutations of a genuine record stream, so that `cargo test` goes a little
    /// beyond the fixed seeds.
    #[test]
    fn mutated_records_do_not_panic() {
        let (_, client) = transports();
        let mut w = SecureWriter::new(Vec::new(), client.state());
        for i in 0..20u8 {
            let _ = w.write_all(&[0, 0, 0, 3, 0xa1, 0x00, i]);
        }
        let _ = w.flush();
        let base = w.get_mut().clone();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let mut input = base.clone();
            let at = (next() as usize) % input.len();
            match next() % 3 {
                0 => input[at] ^= 1 << (next() % 8),
                1 => input.truncate(at),
                _ => input.insert(at, next() as u8),
            }
            records(&input);
        }
    }
}
