//! Arbitrary bytes through the proxy connection header decoder (`enclave_proxy::header`), which
//! both proxies run on whatever the other side of a vsock connection sends. It must not panic,
//! must never claim more bytes than it was given or than the longest request, and a request it
//! accepts must re-encode to exactly the bytes it was decoded from.
//!
//! `cargo fuzz run proxy_header`
#![no_main]

use enclave_proxy::header::{Request, Status, MAX_REQUEST_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Request::decode(data) {
        Ok(Some((request, len))) => {
            assert!(len <= data.len() && len <= MAX_REQUEST_LEN);
            assert_eq!(request.to_bytes(), &data[..len]);
        }
        Ok(None) => assert!(data.len() < MAX_REQUEST_LEN),
        Err(e) => assert_ne!(Status::for_error(&e), Status::Connected),
    }
    if let Some(&b) = data.first() {
        let _ = Status::from_byte(b);
    }
});
