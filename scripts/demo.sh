#!/usr/bin/env bash
# The main job, end to end: set up, make the example OCI image (busybox, with umoci, no Docker),
# build a reproducible EIF from it, run it as an emulated Nitro enclave (QEMU microvm), exec into
# it, copy a file out, fetch an attestation document and verify it against the image's PCRs,
# show its logs, stop and remove it. Then the same image with the in-enclave attestation server,
# its port published, verified over attested TLS with a file proof.
#
#   scripts/demo.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

"$here/setup.sh"
cargo build --release --locked -p enclave-ctl -p enclave-engine
ctl="$root/target/release/enclave-ctl"
export ENCLAVE_ENGINE_INIT="$root/target/enclave-init/enclave-init"

out="$root/target/demo"
mkdir -p "$out"
examples/hello/make-image.sh "$out/hello-oci"

step() { printf '\n== %s\n' "$*"; }
step "enclave-ctl build (no Docker daemon; the same bytes on every machine)"
"$ctl" build -f examples/hello/enclave.yaml -o "$out/hello.eif"
"$ctl" measure --json "$out/hello.eif" > "$out/measurements.json"
sha256sum "$out/hello.eif"

step "enclave-ctl inspect"
"$ctl" inspect "$out/hello.eif"

# A previous run of this script may have left its enclave behind.
"$ctl" rm -f hello-demo >/dev/null 2>&1 || true
step "enclave-ctl run -d (emulated Nitro enclave: QEMU microvm + vhost-device-vsock)"
"$ctl" run -d --name hello-demo "$out/hello.eif"
trap '"$ctl" rm -f hello-demo >/dev/null 2>&1 || true' EXIT
"$ctl" ps

step "enclave-ctl exec"
"$ctl" exec hello-demo /bin/sh -c 'echo "$GREETING from $(hostname), kernel $(uname -r)"; ls /app'

step "enclave-ctl cp (out of the enclave)"
rm -rf "$out/copied" && mkdir -p "$out/copied"
"$ctl" cp hello-demo:/app/hello.sh "$out/copied"
ls -l "$out/copied"

step "enclave-ctl attest, then verify with the image's PCRs and a fresh nonce"
nonce="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$ctl" attest hello-demo --nonce "$nonce" -o "$out/attestation.cose"
pcr() { sed -n "s/.*\"PCR$1\": \"\([0-9a-f]*\)\".*/\1/p" "$out/measurements.json"; }
# An emulated enclave's document is signed by this host's emulation root, never by AWS: it
# verifies only when that root is trusted explicitly. The PCRs `measure` printed say which
# enclave we expect (verify refuses to run without PCR0, PCR8 or --any-enclave). The hello image
# grants debug.exec and debug.cp (used above), which its PCR31 shows: --allow-debug accepts that
# knowingly; without it the document is refused.
"$ctl" verify "$out/attestation.cose" --trust-root "$("$ctl" attest --print-root)" \
    --nonce "$nonce" --pcr "0=$(pcr 0)" --pcr "1=$(pcr 1)" --pcr "2=$(pcr 2)" --allow-debug

step "enclave-ctl logs"
"$ctl" logs hello-demo

step "enclave-ctl stop, rm"
"$ctl" stop hello-demo
"$ctl" rm hello-demo
trap - EXIT

step "the attestation server: run -p, then verify --https (attested TLS) with a file proof"
"$ctl" build --quiet -f examples/attested/enclave.yaml -o "$out/attested.eif"
"$ctl" measure --json "$out/attested.eif" > "$out/measurements.json"
"$ctl" rm -f attested-demo >/dev/null 2>&1 || true
port="${DEMO_HTTPS_PORT:-18443}"
"$ctl" run -d --name attested-demo -p "127.0.0.1:$port:8443" "$out/attested.eif"
trap '"$ctl" rm -f attested-demo >/dev/null 2>&1 || true' EXIT
"$ctl" ps
# The server starts after the boot (it fetches its own binding document first).
for _ in $(seq 60); do
    curl -skf --max-time 5 "https://127.0.0.1:$port/health" >/dev/null && break
    sleep 1
done
# This image grants no debug capability: PCR31 is zero and no --allow-debug is needed.
"$ctl" verify --https "127.0.0.1:$port" --trust-root "$("$ctl" attest --print-root)" \
    --pcr "0=$(pcr 0)" --pcr "1=$(pcr 1)" --pcr "2=$(pcr 2)" --file /app/hello.sh
"$ctl" stop attested-demo
"$ctl" rm attested-demo
trap - EXIT
