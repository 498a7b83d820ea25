//! The frame layer: incremental decoder under every split, limits, truncation.

use std::io::{self, Cursor, Read};

use enclave_proto::wire::frame::HEADER_LEN;
use enclave_proto::wire::{
    read_frame, write_frame, Frame, FrameDecoder, FrameError, MAX_FRAME_LEN,
};

/// A small deterministic PRNG (xorshift64*) so the random splits are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn payloads() -> Vec<Vec<u8>> {
    vec![
        vec![1],
        b"hello".to_vec(),
        (0..=255u8).cycle().take(70_000).collect(),
        vec![0; 3],
        vec![0xff; MAX_FRAME_LEN as usize],
    ]
}

fn wire_bytes(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        write_frame(&mut out, p).unwrap();
    }
    out
}

fn drain(decoder: &mut FrameDecoder, out: &mut Vec<Vec<u8>>) {
    while let Some(frame) = decoder.next_frame().unwrap() {
        out.push(frame.into_payload());
    }
}

#[test]
fn decoder_fed_byte_by_byte() {
    let payloads = payloads()[..4].to_vec();
    let bytes = wire_bytes(&payloads);
    let mut decoder = FrameDecoder::new();
    let mut got = Vec::new();
    for b in &bytes {
        decoder.push(std::slice::from_ref(b));
        drain(&mut decoder, &mut got);
    }
    decoder.finish().unwrap();
    assert_eq!(got, payloads);
}

#[test]
fn decoder_fed_random_splits() {
    let payloads = payloads();
    let bytes = wire_bytes(&payloads);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..50 {
        let mut decoder = FrameDecoder::new();
        let mut got = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            // Mostly small pieces, sometimes big ones, to cross every boundary.
            let max = if round % 2 == 0 { 17 } else { 200_000 };
            let n = (rng.next() as usize % max + 1).min(rest.len());
            decoder.push(&rest[..n]);
            rest = &rest[n..];
            drain(&mut decoder, &mut got);
        }
        decoder.finish().unwrap();
        assert_eq!(got, payloads, "round {round}");
        assert_eq!(decoder.buffered(), 0);
    }
}

#[test]
fn blocking_round_trip() {
    let payloads = payloads();
    let mut reader = Cursor::new(wire_bytes(&payloads));
    for p in &payloads {
        assert_eq!(read_frame(&mut reader).unwrap().unwrap().payload(), &p[..]);
    }
    assert!(
        read_frame(&mut reader).unwrap().is_none(),
        "clean end of stream"
    );
}

#[test]
fn oversize_length_refused_before_allocating() {
    // Incremental: the error comes as soon as the four header bytes are in, with nothing but
    // them buffered.
    let mut decoder = FrameDecoder::new();
    decoder.push(&(MAX_FRAME_LEN + 1).to_be_bytes());
    assert!(
        matches!(decoder.next_frame(), Err(FrameError::Oversize { len }) if len == u64::from(MAX_FRAME_LEN) + 1)
    );
    // Poisoned from now on, and it stops buffering.
    decoder.push(&[0; 1000]);
    assert_eq!(decoder.buffered(), 0);
    assert!(matches!(decoder.next_frame(), Err(FrameError::Poisoned)));

    // Blocking: an endless source of 0xff announces a 4 GiB frame. Allocating or reading it
    // would take forever; the reader must stop after the header.
    struct Counting<R>(R, usize);
    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n;
            Ok(n)
        }
    }
    let mut endless = Counting(io::repeat(0xff), 0);
    assert!(
        matches!(read_frame(&mut endless), Err(FrameError::Oversize { len }) if len == u64::from(u32::MAX))
    );
    assert_eq!(endless.1, HEADER_LEN);

    // And nothing oversize is ever written.
    let big = vec![0u8; MAX_FRAME_LEN as usize + 1];
    assert!(matches!(
        write_frame(&mut Vec::new(), &big),
        Err(FrameError::Oversize { .. })
    ));
    assert!(Frame::new(big).is_err());
}

#[test]
fn empty_frame_refused() {
    let mut decoder = FrameDecoder::new();
    decoder.push(&[0, 0, 0, 0]);
    assert!(matches!(decoder.next_frame(), Err(FrameError::Empty)));
    assert!(matches!(
        read_frame(&mut Cursor::new([0u8; 4])),
        Err(FrameError::Empty)
    ));
    assert!(matches!(
        write_frame(&mut Vec::new(), &[]),
        Err(FrameError::Empty)
    ));
}

#[test]
fn truncated_frames_error_at_eof() {
    let bytes = wire_bytes(&[b"complete".to_vec(), b"cut short".to_vec()]);
    for cut in 1..bytes.len() {
        let part = &bytes[..cut];
        let boundary = cut == 12; // right after the first frame
        let mut decoder = FrameDecoder::new();
        decoder.push(part);
        while decoder.next_frame().unwrap().is_some() {}
        let mut reader = Cursor::new(part);
        let mut blocking = Ok(None);
        for _ in 0..3 {
            blocking = read_frame(&mut reader);
            if !matches!(blocking, Ok(Some(_))) {
                break;
            }
        }
        if boundary {
            decoder.finish().unwrap();
            assert!(matches!(blocking, Ok(None)));
        } else {
            assert!(
                matches!(decoder.finish(), Err(FrameError::Truncated { .. })),
                "cut {cut}"
            );
            assert!(
                matches!(blocking, Err(FrameError::Truncated { .. })),
                "cut {cut}"
            );
        }
    }
}

#[test]
fn interrupted_reads_are_retried() {
    struct Flaky(Cursor<Vec<u8>>, bool);
    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.1 = !self.1;
            if self.1 {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }
    let mut r = Flaky(Cursor::new(wire_bytes(&[b"abc".to_vec()])), false);
    assert_eq!(read_frame(&mut r).unwrap().unwrap().payload(), b"abc");
}
