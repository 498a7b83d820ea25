//! Body of the fuzz target for what file attestation reads from outside the enclave: the NATS
//! server's protocol lines. Shared by `fuzz/fuzz_targets/nats_server.rs` and by `cargo test`
//! over seeds, so the seeds run on every test run, not only under libFuzzer. (The records a
//! reader takes from the bucket are the verifier's: `enclave_attest::files::fuzzing`.)

/// Server bytes through the NATS decoders (INFO, operation lines, header blocks): line by
/// line, as the client splits them. Nothing may panic, and a message line never announces
/// more than the payload limit.
pub fn nats_server_bytes(data: &[u8]) {
    super::nats::fuzz_server_bytes(data);
}
