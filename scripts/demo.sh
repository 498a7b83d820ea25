#!/usr/bin/env bash
# The main job, end to end: set up, make the example OCI image (busybox, with umoci), build a
# reproducible EIF from it with no Docker daemon, print its PCRs, inspect it.
#
#   scripts/demo.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/.."
cd "$root"

"$here/setup.sh"
cargo build --release --locked -p enclave-ctl
ctl="$root/target/release/enclave-ctl"
export ENCLAVE_INIT="$root/target/enclave-init/enclave-init"

out="$root/target/demo"
mkdir -p "$out"
examples/hello/make-image.sh "$out/hello-oci"

echo "== enclave-ctl build"
"$ctl" build -f examples/hello/enclave.yaml --from "oci:$out/hello-oci:latest" -o "$out/hello.eif"
echo "== enclave-ctl inspect"
"$ctl" inspect "$out/hello.eif"
echo "== sha256 (the same on every machine with the same inputs)"
sha256sum "$out/hello.eif"
