//! Verifications per second of enclave-attest and of the `nitro_attest` crate, side by side, on
//! the same real documents (testdata/*.cose) at each document's own timestamp.
//!
//! `cargo bench -p enclave-attest --bench verify` (env BENCH_SECONDS, default 10).
//! The contenders alternate document by document so machine noise hits them alike. Reported:
//! enclave-attest checking every signature of every document (the default), enclave-attest with
//! its opt-in link cache (CA links already verified are not re-checked; the same documents
//! repeat, so this is the warm case), and `nitro_attest`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use enclave_attest::{Expectation, Policy, Verifier};
use time::OffsetDateTime;

struct Doc {
    name: String,
    bytes: Vec<u8>,
    at: OffsetDateTime,
}

fn docs() -> Vec<Doc> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["file"].as_str().unwrap().to_string();
            let ms = e["timestamp_ms"].as_u64().unwrap();
            Doc {
                bytes: std::fs::read(dir.join(&name)).unwrap(),
                at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
                name,
            }
        })
        .collect()
}

/// Total time spent in each contender, summed over interleaved single verifications.
#[derive(Default)]
struct Tally {
    time: Duration,
    n: u64,
}

impl Tally {
    fn run(&mut self, f: impl FnOnce()) {
        let start = Instant::now();
        f();
        self.time += start.elapsed();
        self.n += 1;
    }

    fn per_second(&self) -> f64 {
        self.n as f64 / self.time.as_secs_f64()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not need.
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let docs = docs();
    let verifier = Verifier::aws();
    // nitro_attest checks no PCR: any enclave, debug mode included, so both do the same work.
    let mut policy = Policy::new(Expectation::AnyEnclave);
    policy.allow_debug_mode = true;

    // Both must accept every document, or the comparison means nothing.
    for d in &docs {
        verifier
            .verify(&d.bytes, d.at, &policy)
            .unwrap_or_else(|e| panic!("enclave-attest rejects {}: {e}", d.name));
        nitro_attest::UnparsedAttestationDoc::from(d.bytes.as_slice())
            .parse_and_verify(d.at)
            .unwrap_or_else(|e| panic!("nitro_attest rejects {}: {e}", d.name));
    }

    let cached = Verifier::aws().with_link_cache(1024);
    let (mut ours, mut ours_cached, mut theirs) =
        (Tally::default(), Tally::default(), Tally::default());
    // Interleaved one document at a time, so load from other processes on the machine falls on
    // all three alike and the ratio stays meaningful even when the absolute numbers do not.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for d in &docs {
            ours.run(|| {
                black_box(verifier.verify(black_box(&d.bytes), d.at, &policy).unwrap());
            });
            ours_cached.run(|| {
                black_box(cached.verify(black_box(&d.bytes), d.at, &policy).unwrap());
            });
            theirs.run(|| {
                let doc = nitro_attest::UnparsedAttestationDoc::from(black_box(d.bytes.as_slice()));
                black_box(doc.parse_and_verify(d.at).unwrap());
            });
        }
    }
    let (a, b, c) = (
        ours.per_second(),
        ours_cached.per_second(),
        theirs.per_second(),
    );
    println!("documents: {} real Nitro attestation documents, each verified at its own timestamp, {} rounds", docs.len(), ours.n / docs.len() as u64);
    println!(
        "enclave-attest (every signature checked) {a:>9.1} verifications/s  {:>5.2}x",
        a / c
    );
    println!(
        "enclave-attest (link cache, warm)        {b:>9.1} verifications/s  {:>5.2}x",
        b / c
    );
    println!("nitro_attest 0.2                         {c:>9.1} verifications/s  1.00x");
}
