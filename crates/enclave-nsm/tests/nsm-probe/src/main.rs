//! `nsm-probe NONCE_HEX PUBLIC_KEY_HEX`: what a Nitro application does with `/dev/nsm`, through
//! the NSM API crate's own driver. Extends PCR16, locks it (a document carries the locked
//! PCRs), reads it back, gets random bytes and an attestation document with the given nonce
//! and public key. Prints `key value` lines, values in hex; exits non-zero on the first
//! failure, saying which request failed.

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

fn main() {
    let args: Vec<String> = std::env::args().collect();
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
