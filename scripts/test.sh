#!/usr/bin/env bash
# Set up everything the test suite needs, then run the whole suite.
#
#   scripts/test.sh [extra cargo test args]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."

"$here/setup.sh"
# Tests that need a prerequisite fail instead of skipping when CI=true.
export ENCLAVE_INIT="$PWD/target/enclave-init/enclave-init"
cargo test --workspace --locked "$@"
"$here/check-init-reproducible.sh"
