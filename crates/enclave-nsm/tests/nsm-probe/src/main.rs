//! `nsm-probe NONCE_HEX PUBLIC_KEY_HEX`: what a Nitro application does with `/dev/nsm`, through
//! the NSM API crate's own driver. Extends PCR16, locks it (a document carries the locked
//! PCRs), reads it back, gets random bytes and an attestation document with the given nonce
//! and public key. Prints `key value` lines, values in hex; exits non-zero on the first
//! failure, saying which request failed.
//!
//! `nsm-probe bench N`: N attestation requests (a fresh 32-byte nonce each, as a verifier's
//! challenge would be) one after the other; prints `bench N SECONDS` (scripts/bench-nsm.sh).

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver::{nsm_exit, nsm_init, nsm_process_request};
use serde_bytes::ByteBuf;

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn fail(what: &str, r: &Response) -> ! {
    eprintln!("nsm-probe: {what}: {r:?}");
    std::process::exit(1)
}

/// N attestation requests in a row; the time they took.
fn bench(fd: i32, n: u32) -> std::time::Duration {
    let started = std::time::Instant::now();
    for i in 0..n {
        let mut nonce = [0u8; 32];
        nonce[..4].copy_from_slice(&i.to_le_bytes());
        let request = Request::Attestation {
            user_data: None,
            nonce: Some(ByteBuf::from(nonce.to_vec())),
            public_key: None,
        };
        match nsm_process_request(fd, request) {
            Response::Attestation { .. } => {}
            r => fail("Attestation", &r),
        }
    }
    started.elapsed()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bench") {
        let Some(n) = args.get(2).and_then(|s| s.parse::<u32>().ok()) else {
            eprintln!("usage: nsm-probe bench N");
            std::process::exit(2)
        };
        let fd = nsm_init();
        if fd < 0 {
            eprintln!("nsm-probe: cannot open /dev/nsm");
            std::process::exit(1)
        }
        let took = bench(fd, n);
        println!("bench {n} {:.3}", took.as_secs_f64());
        nsm_exit(fd);
        return;
    }
    let (Some(nonce), Some(key)) = (
        args.get(1).and_then(|s| unhex(s)),
        args.get(2).and_then(|s| unhex(s)),
    ) else {
        eprintln!("usage: nsm-probe NONCE_HEX PUBLIC_KEY_HEX");
        std::process::exit(2)
    };
    let fd = nsm_init();
    if fd < 0 {
        eprintln!("nsm-probe: cannot open /dev/nsm");
        std::process::exit(1)
    }
    let data = b"nsm-probe".to_vec();
    match nsm_process_request(fd, Request::ExtendPCR { index: 16, data }) {
        Response::ExtendPCR { data } => println!("extended {}", hex(&data)),
        r => fail("ExtendPCR 16", &r),
    }
    // PCR0..15 are locked from boot: extending them is refused, as on Nitro.
    let data = b"x".to_vec();
    match nsm_process_request(fd, Request::ExtendPCR { index: 0, data }) {
        Response::Error(e) => println!("extend0 {e:?}"),
        r => fail("ExtendPCR 0 was not refused", &r),
    }
    match nsm_process_request(fd, Request::LockPCR { index: 16 }) {
        Response::LockPCR => {}
        r => fail("LockPCR 16", &r),
    }
    match nsm_process_request(fd, Request::DescribePCR { index: 16 }) {
        Response::DescribePCR { lock, data } => println!("pcr16 {lock} {}", hex(&data)),
        r => fail("DescribePCR 16", &r),
    }
    match nsm_process_request(fd, Request::DescribeNSM) {
        Response::DescribeNSM { module_id, .. } => println!("module {module_id}"),
        r => fail("DescribeNSM", &r),
    }
    match nsm_process_request(fd, Request::GetRandom) {
        Response::GetRandom { random } => println!("random {}", random.len()),
        r => fail("GetRandom", &r),
    }
    // Over the NSM's 1024-byte limit: refused, not truncated.
    let big = Request::Attestation {
        user_data: Some(ByteBuf::from(vec![0; 1025])),
        nonce: None,
        public_key: None,
    };
    match nsm_process_request(fd, big) {
        Response::Error(e) => println!("oversized {e:?}"),
        r => fail("oversized user_data was not refused", &r),
    }
    let request = Request::Attestation {
        user_data: None,
        nonce: Some(ByteBuf::from(nonce)),
        public_key: Some(ByteBuf::from(key)),
    };
    match nsm_process_request(fd, request) {
        Response::Attestation { document } => println!("document {}", hex(&document)),
        r => fail("Attestation", &r),
    }
    nsm_exit(fd);
}
