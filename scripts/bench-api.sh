#!/usr/bin/env bash
# The engine API against `enclave-ctl ps --json` on the same 50 records, and the daemon's RSS
# (issue 14): crates/enclave-engine/benches/api_list.rs, with the release binaries it runs.
#
#   scripts/bench-api.sh            # API_BENCH_SECS=5 API_BENCH_CLIENTS=4
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p enclave-ctl -p enclave-engine --bins >&2
echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench --locked -p enclave-engine --bench api_list 2>/dev/null
