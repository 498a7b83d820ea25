#!/usr/bin/env bash
# Packaging and pod mode (issue 13), side by side in one run:
#   - `enclave-ctl package` of an EIF on the emulated base: the size of the layer it adds and its
#     time, against `tar -czf` of the same four files (what the layer is: a gzip'd tar);
#   - start to ready of the same EIF two ways, alternating: pod mode (the packaged image run by
#     runc as uid 65534, ready when `enclave-ctl health` in the container says so) against
#     `enclave-ctl run -d` on the host (ready when `enclave-ctl health` says so).
#
#   sudo scripts/bench-package.sh [ROUNDS]     # 3 rounds by default
#
# The binaries are the release build (what scripts/release.sh ships and users package); both
# ways of starting run them. Needs root (runc), and what the VM tests need (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
[[ $(id -u) == 0 ]] || { echo "bench-package: runc needs root" >&2; exit 1; }
work=$(mktemp -d)
export ENCLAVE_ENGINE_STATE_DIR="$work/state"
export ENCLAVE_ENGINE_BIN="$PWD/target/release/enclave-engine"
export ENCLAVE_INIT="$PWD/target/enclave-init/enclave-init"
ctl="$PWD/target/release/enclave-ctl"
cid="ee-bench-$$"
cleanup() {
    runc kill "$cid" KILL >/dev/null 2>&1 || true
    runc delete -f "$cid" >/dev/null 2>&1 || true
    "$ctl" rm -f pkgbench >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
[[ -x $ENCLAVE_INIT ]] || { echo "bench-package: no $ENCLAVE_INIT (run scripts/build-init.sh)" >&2; exit 1; }
cargo build --release --locked -p enclave-ctl -p enclave-engine -p enclave-proxy --bins >&2

now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 1000 * (b - a) }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# The app of crates/enclave-ctl/tests/cli_container.rs: httpd as a service, an HTTP health check.
mkdir -p "$work/rootfs/bin" "$work/rootfs/www"
cp /bin/busybox "$work/rootfs/bin/"
for a in sh sleep httpd; do ln -s busybox "$work/rootfs/bin/$a"; done
echo fine > "$work/rootfs/www/ok"
cat > "$work/app.yaml" <<'EOF'
name: app
from: dir:rootfs
entrypoint: [/bin/sh, -c, "trap 'exit 0' TERM; while true; do sleep 1; done"]
services:
  - name: web
    command: [/bin/httpd, -f, -p, "8080", -h, /www]
healthcheck:
  http: {port: 8080, path: /ok}
  interval: 200ms
EOF
(cd "$work" && "$ctl" build --quiet -f app.yaml -o app.eif >/dev/null)
scripts/make-emulated-base.sh "$work/base" >/dev/null

echo "machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); release binaries; $rounds rounds"
bin="$(dirname "$ctl")"
inputs=("$work/app.eif" "$bin/enclave-ctl" "$bin/enclave-engine" "$bin/enclave-proxy")
raw=$(stat -c %s "${inputs[@]}" | awk '{ s += $1 } END { print s }')
pkg_ms=() tar_ms=()
for r in $(seq "$rounds"); do
    t0=$(now)
    "$ctl" package "$work/app.eif" --base "oci:$work/base:latest" -o "oci:$work/image-$r:app" \
        --json > "$work/package-$r.json"
    t1=$(now)
    tar -czf "$work/layer-$r.tar.gz" -C / "${inputs[@]#/}" 2>/dev/null
    t2=$(now)
    pkg_ms+=("$(ms "$t0" "$t1")") tar_ms+=("$(ms "$t1" "$t2")")
done
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layer_size"])' "$work/package-1.json")
digests=$(for r in $(seq "$rounds"); do python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest_digest"])' "$work/package-$r.json"; done | sort -u | wc -l)
tarsize=$(stat -c %s "$work/layer-1.tar.gz")
pkg=$(printf '%s\n' "${pkg_ms[@]}" | median) tarm=$(printf '%s\n' "${tar_ms[@]}" | median)
printf '%-46s %s\n' "EIF + 3 binaries, uncompressed" "$((raw / 1024)) KiB"
printf '%-46s %s KiB (%s manifest digest(s) over %s runs)\n' "layer added by package (tar+gzip)" "$((layer / 1024))" "$digests" "$rounds"
printf '%-46s %s KiB\n' "tar -czf of the same files" "$((tarsize / 1024))"
printf '%-46s median %s ms (%s)\n' "enclave-ctl package" "$pkg" "${pkg_ms[*]}"
printf '%-46s median %s ms (%s)\n' "tar -czf of the same files" "$tarm" "${tar_ms[*]}"
awk -v p="$pkg" -v t="$tarm" 'BEGIN { printf "ratio package : tar -czf = %.2f\n", p / t }'

umoci unpack --image "$work/image-1:app" "$work/bundle" >/dev/null
python3 - "$work/bundle/config.json" <<'EOF'
import json, sys
path = sys.argv[1]
c = json.load(open(path))
c["process"]["args"] = ["/usr/local/bin/enclave-ctl", "run", "--name", "app", "--memory", "128",
                        "--boot-timeout", "120", "/enclave/app.eif"]
c["process"]["terminal"] = False
c["process"]["user"] = {"uid": 65534, "gid": 65534}
c["mounts"].append({"destination": "/run/enclave-engine", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=0700", "uid=65534", "gid=65534"]})
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
json.dump(c, open(path, "w"))
EOF
install -d -m 0700 -o 65534 -g 65534 "$work/bundle/rootfs/run/enclave-engine"

pod_ms=() host_ms=()
for r in $(seq "$rounds"); do
    t0=$(now)
    runc run --bundle "$work/bundle" "$cid" </dev/null >"$work/pod-$r.log" 2>&1 &
    pod=$!
    until runc exec "$cid" enclave-ctl health >/dev/null 2>&1; do
        kill -0 "$pod" 2>/dev/null || { cat "$work/pod-$r.log" >&2; exit 1; }
        sleep 0.1
    done
    pod_ms+=("$(ms "$t0" "$(now)")")
    runc kill "$cid" TERM; wait "$pod" || true

    t0=$(now)
    "$ctl" run -d --name pkgbench --memory 128 --boot-timeout 120 "$work/app.eif" >/dev/null
    until "$ctl" health pkgbench >/dev/null 2>&1; do sleep 0.1; done
    host_ms+=("$(ms "$t0" "$(now)")")
    "$ctl" rm -f pkgbench >/dev/null
done
pm=$(printf '%s\n' "${pod_ms[@]}" | median) hm=$(printf '%s\n' "${host_ms[@]}" | median)
printf '%-46s median %s ms (%s)\n' "pod mode (runc, uid 65534): start to ready" "$pm" "${pod_ms[*]}"
printf '%-46s median %s ms (%s)\n' "enclave-ctl run -d: start to ready" "$hm" "${host_ms[*]}"
awk -v p="$pm" -v h="$hm" 'BEGIN { printf "ratio pod mode : run -d = %.2f\n", p / h }'
