#!/usr/bin/env bash
# /dev/nsm against the control channel (issue 12): attestation documents per second from one
# emulated enclave, side by side in one run:
#   - through /dev/nsm inside it: a program written for Nitro (crates/enclave-nsm/tests/nsm-probe,
#     the NSM API crate's own driver) -> CUSE -> enclave-init -> vsock -> the supervisor's
#     emulated NSM;
#   - through the control channel from the host: `enclave-ctl attest`, each a new process,
#     connection, Noise handshake and session, as a verifier's challenge gets one.
# Both end at the same emulated NSM, which signs every document (ECDSA P-384).
#
#   scripts/bench-nsm.sh [N]        # N requests each way, 100 by default
#
# Needs what the VM tests need (scripts/setup.sh: QEMU, vhost-device-vsock, the kernel, the
# static enclave-init in target/enclave-init).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-100}
work=$(mktemp -d)
export ENCLAVE_ENGINE_STATE_DIR="$work/state"
export ENCLAVE_ENGINE_BIN="$PWD/target/debug/enclave-engine"
export ENCLAVE_INIT="$PWD/target/enclave-init/enclave-init"
ctl="$PWD/target/debug/enclave-ctl"
cleanup() {
    "$ctl" rm -f nsmbench >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

[[ -x $ENCLAVE_INIT ]] || { echo "bench-nsm: no $ENCLAVE_INIT (run scripts/build-init.sh)" >&2; exit 1; }
cargo build --locked -p enclave-ctl -p enclave-engine --bins >&2
# Static, like the test builds it, with its own lock file.
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$PWD/target/nsm-probe" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu \
    --manifest-path crates/enclave-nsm/tests/nsm-probe/Cargo.toml >&2
probe="$PWD/target/nsm-probe/x86_64-unknown-linux-gnu/release/nsm-probe"

examples/hello/make-image.sh "$work/hello-oci" >&2
"$ctl" build -f examples/hello/enclave.yaml --from "oci:$work/hello-oci:latest" \
    -o "$work/hello.eif" >/dev/null
"$ctl" run -d --cpus 1 --memory 128 --boot-timeout 90 --name nsmbench "$work/hello.eif" >/dev/null
"$ctl" cp "$probe" nsmbench:/tmp/nsm-probe >/dev/null

echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); $N attestation requests each way"
read -r _ _ dev_s < <("$ctl" exec -u 0 nsmbench /tmp/nsm-probe bench "$N")
start=$(date +%s.%N)
for _ in $(seq "$N"); do
    "$ctl" attest nsmbench -o /dev/null 2>/dev/null
done
end=$(date +%s.%N)
awk -v n="$N" -v d="$dev_s" -v s="$start" -v e="$end" 'BEGIN {
    c = e - s
    printf "%-44s %8.1f docs/s  %7.2f ms each\n", "/dev/nsm inside the enclave", n / d, 1000 * d / n
    printf "%-44s %8.1f docs/s  %7.2f ms each\n", "control channel (enclave-ctl attest, host)", n / c, 1000 * c / n
    printf "ratio /dev/nsm : control channel = %.2f\n", c / d
}'
