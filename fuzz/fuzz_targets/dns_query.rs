//! Arbitrary bytes through the enclave's DNS server codec (`enclave_proxy::enclave::dns`): any
//! program in the enclave can send it anything. Parsing must not panic; a parsed query must
//! produce a response for every kind of answer; a refused one an error response (or none).
//!
//! `cargo fuzz run dns_query`
#![no_main]

use std::net::Ipv4Addr;

use enclave_proxy::enclave::dns::{error_response, parse_query, Answer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_query(data) {
        Ok(query) => {
            for answer in [
                Answer::Address(Ipv4Addr::new(127, 0, 0, 2)),
                Answer::NoData,
                Answer::NxDomain,
                Answer::ServFail,
                Answer::Refused,
            ] {
                let response = query.response(answer);
                assert!(response.len() >= 12);
            }
        }
        Err(e) => {
            let _ = error_response(data, &e);
        }
    }
});
