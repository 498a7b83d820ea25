//! The header decoder over a few thousand pseudo-random and mutated inputs (a deterministic
//! stand-in for `fuzz/fuzz_targets/proxy_header.rs`, run with the unit tests).

use crate::header::{Request, Status, MAX_REQUEST_LEN};

/// SplitMix64: deterministic, good enough to spread bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// Decodes `input` and checks what the decoder promises: a complete request is no longer than
/// the input or [`MAX_REQUEST_LEN`] and re-encodes to exactly the bytes it came from; "need
/// more" only for inputs shorter than the longest request.
fn check(input: &[u8]) {
    match Request::decode(input) {
        Ok(Some((request, len))) => {
            assert!(
                len <= input.len() && len <= MAX_REQUEST_LEN,
                "{input:?}: {len}"
            );
            assert_eq!(request.to_bytes(), &input[..len], "{input:?}");
        }
        Ok(None) => assert!(input.len() < MAX_REQUEST_LEN, "{input:?}"),
        Err(e) => assert_ne!(Status::for_error(&e), Status::Connected),
    }
}

fn seeds() -> Vec<Vec<u8>> {
    [
        Request::Ingress { port: 8080 },
        Request::EgressName {
            name: "api.example.com".into(),
            port: 443,
        },
        Request::EgressName {
            name: format!("{}.x", "a".repeat(63)),
            port: 1,
        },
        Request::EgressAddr {
            addr: "10.1.2.3".parse().expect("literal"),
            port: 5432,
        },
        Request::EgressAddr {
            addr: "fd00::1".parse().expect("literal"),
            port: 65535,
        },
    ]
    .iter()
    .map(Request::to_bytes)
    .collect()
}

#[test]
fn random_inputs_never_panic_or_overclaim() {
    let mut rng = Rng(0x5eed);
    for _ in 0..3000 {
        let len = rng.below(MAX_REQUEST_LEN + 40);
        let mut input: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        check(&input);
        // Most random inputs die at the version byte; make them get further too.
        if len >= 2 {
            input[0] = crate::header::VERSION;
            input[1] = 1 + rng.below(3) as u8;
            check(&input);
        }
    }
}

#[test]
fn mutated_requests_never_panic_or_overclaim() {
    let mut rng = Rng(0xfeed);
    let seeds = seeds();
    for i in 0..6000 {
        let mut input = seeds[i % seeds.len()].clone();
        for _ in 0..1 + rng.below(3) {
            match rng.below(4) {
                0 => {
                    let at = rng.below(input.len());
                    input[at] = rng.byte();
                }
                1 => input.truncate(rng.below(input.len() + 1)),
                2 => input.extend((0..rng.below(300)).map(|_| rng.byte())),
                _ if input.len() > 4 => input[4] = rng.byte(),
                _ => input.push(rng.byte()),
            }
            if input.is_empty() {
                input.push(rng.byte());
            }
        }
        check(&input);
    }
}
