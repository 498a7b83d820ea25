#!/usr/bin/env bash
# Attestation server throughput (issue 5): requests per second for /health and /pcrs over TLS
# keep-alive, measured with wrk. The server (release build, emulated NSM, one current-thread
# runtime) is pinned to CPU 0 and wrk to CPU 1 when taskset and two CPUs are there, so the
# number is per server core.
#
#   scripts/bench-attest-server.sh            # 10 s per endpoint, 64 connections
#   DURATION=30s CONNECTIONS=128 scripts/bench-attest-server.sh
#
# Needs wrk and curl. Goal: at least 10,000 req/s per core; the framework we replace claims
# 1,000 req/s.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${PORT:-18443}
GOAL=10000
REPLACED=1000

for tool in wrk curl; do
    command -v "$tool" >/dev/null || { echo "bench-attest-server: $tool is not installed" >&2; exit 1; }
done

cargo build --release -p enclave-attest-server --bin enclave-attest
bin=target/release/enclave-attest

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# The measured spec's JSON form, as the server reads it inside the enclave (no YAML there).
printf '{"attestation": {"server": {"port": %s}}}\n' "$PORT" >"$work/spec.json"
pin_server=()
pin_client=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_server=(taskset -c 0)
    pin_client=(taskset -c 1)
fi

RUST_LOG=warn "${pin_server[@]}" "$bin" serve --spec "$work/spec.json" \
    --listen "127.0.0.1:$PORT" --source emulated --emulation-ca "$work/emulation-ca" \
    --pcr "0=$(printf 'a0%.0s' $(seq 48))" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
    curl -skf "https://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
    sleep 0.1
done
curl -skf "https://127.0.0.1:$PORT/health" >/dev/null || { echo "server did not start" >&2; exit 1; }

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: ${pin_server[*]:-unpinned} $bin serve --source emulated (current-thread runtime)"
echo "client: ${pin_client[*]:-unpinned} wrk -t1 -c$CONNECTIONS -d$DURATION --latency"
echo
# The server's CPU time over each run: when wrk's core is the limit the server is not
# saturated, and req/s per server CPU-second is the per-core figure.
tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
printf '%-8s %10s %9s %9s %11s %13s %10s %15s\n' \
    endpoint req/s p50 p99 "/ goal" "/ replaced" "server CPU" "req/s per core"
for path in /health /pcrs; do
    t0=$(date +%s.%N)
    c0=$(cpu_ticks)
    out=$("${pin_client[@]}" wrk -t1 "-c$CONNECTIONS" "-d$DURATION" --latency "https://127.0.0.1:$PORT$path")
    c1=$(cpu_ticks)
    t1=$(date +%s.%N)
    if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
        echo "$out" >&2
        echo "bench-attest-server: errors during the $path run" >&2
        exit 1
    fi
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    cpu=$(awk -v c="$((c1 - c0))" -v k="$tck" -v t0="$t0" -v t1="$t1" 'BEGIN { print c / k / (t1 - t0) }')
    awk -v p="$path" -v r="$rps" -v a="$p50" -v b="$p99" -v g="$GOAL" -v f="$REPLACED" -v u="$cpu" \
        'BEGIN { printf "%-8s %10.0f %9s %9s %10.1fx %12.1fx %9.0f%% %15.0f\n", p, r, a, b, r / g, r / f, 100 * u, r / u }'
done
