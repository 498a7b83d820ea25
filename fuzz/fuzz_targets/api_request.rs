//! Arbitrary bytes through the engine API's decoders of outside input
//! (`enclave_engine::daemon`): the query string and its time values, and the run, build and
//! measure requests' JSON bodies with every field they check. They must not panic.
//!
//! `cargo fuzz run api_request`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    enclave_engine::daemon::fuzzing::request_inputs(data);
});
