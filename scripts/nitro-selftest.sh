#!/usr/bin/env bash
# The self-test for a Nitro parent (docs/nitro.md): checks what the parent needs, builds and runs
# a probe enclave, fetches an attestation document through /dev/nsm inside it and one through
# `enclave-ctl attest`, verifies both against the trust root and the PCRs the build printed,
# tries an allowed and a refused egress, then removes the enclave. One line per check:
#
#   PASS  <check>  <what was seen>
#   FAIL  <check>  <what went wrong> -- <what to do>
#
# The first FAIL stops the run (later checks need the earlier ones); the exit code is 0 when
# every check passed, 1 when one failed, 2 for bad arguments.
#
#   scripts/nitro-selftest.sh [--backend nitro|qemu] [--cpus N] [--memory MIB] [--kernel-dir DIR] [--keep]
#
# On a Nitro parent the backend is `nitro` and documents are verified against the pinned AWS
# root. With `--backend qemu` (what CI runs) the enclave is emulated and documents are verified
# against this host's emulation root.
#
# Installed (scripts/install.sh, the release tarball), `enclave-ctl selftest` runs it from
# libexec/enclave-engine/ with the installed enclave-ctl and the nsm-probe beside it: no checkout.
#
# Environment: ENCLAVE_CTL (the enclave-ctl to test; default: on PATH, else this checkout's
# target/release or target/debug), NSM_PROBE (a static nsm-probe; default: the one beside this
# script, else built with cargo from this checkout), BUSYBOX (a static busybox for the probe's
# rootfs; default: busybox on PATH).
set -uo pipefail

usage() { sed -n '13p' "${BASH_SOURCE[0]}" | sed 's/^#   /usage: /' >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

backend=""
cpus=""
memory=""
kernel_dir=""
keep=""
while (($#)); do
    case "$1" in
        --backend) [[ $# -ge 2 ]] || usage; backend="$2"; shift 2 ;;
        --cpus) [[ $# -ge 2 ]] || usage; cpus="$2"; shift 2 ;;
        --memory) [[ $# -ge 2 ]] || usage; memory="$2"; shift 2 ;;
        --kernel-dir) [[ $# -ge 2 ]] || usage; kernel_dir="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "nitro-selftest: unknown argument: $1" >&2; usage ;;
    esac
done
if [[ -z "$backend" ]]; then
    if [[ -e /dev/nitro_enclaves ]]; then backend=nitro; else backend=qemu; fi
fi
case "$backend" in
    nitro) : "${cpus:=2}" "${memory:=512}" ;;
    qemu|emulated) backend=qemu; : "${cpus:=1}" "${memory:=256}" ;;
    *) echo "nitro-selftest: --backend is nitro or qemu, not $backend" >&2; exit 2 ;;
esac
[[ "$cpus" =~ ^[0-9]+$ && "$memory" =~ ^[0-9]+$ ]] || { echo "nitro-selftest: --cpus and --memory are numbers" >&2; exit 2; }

passed=0
pass() { printf 'PASS  %-24s %s\n' "$1" "$2"; passed=$((passed + 1)); }
# fail CHECK WHAT FIX: the run stops here.
fail() {
    printf 'FAIL  %-24s %s -- %s\n' "$1" "$2" "$3"
    echo "nitro-selftest: $passed passed, 1 failed ($backend backend); fix the FAIL above and run again"
    exit 1
}

work="$(mktemp -d)"
name="selftest-$$"
listener=""
ctl=""
cleanup() {
    [[ -n "$listener" ]] && kill "$listener" 2>/dev/null
    if [[ -n "$ctl" && -z "$keep" ]]; then "$ctl" rm -f "$name" >/dev/null 2>&1; fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- pre-flight -----------------------------------------------------------------------------
ctl="${ENCLAVE_CTL:-}"
if [[ -z "$ctl" ]]; then
    for c in "$(command -v enclave-ctl 2>/dev/null)" "$root/target/release/enclave-ctl" "$root/target/debug/enclave-ctl"; do
        [[ -n "$c" && -x "$c" ]] && { ctl="$c"; break; }
    done
fi
if [[ -z "$ctl" ]] || ! version="$("$ctl" --version 2>&1)"; then
    ctl=""
    fail enclave-ctl "no working enclave-ctl" "install it (docs/nitro.md, step 2) or set ENCLAVE_CTL"
fi
pass enclave-ctl "$version ($ctl)"

if ! command -v python3 >/dev/null; then
    fail python3 "python3 is missing (it serves the egress targets)" "install python3"
fi

if [[ "$backend" == nitro ]]; then
    [[ -e /dev/nitro_enclaves ]] ||
        fail nitro-device "/dev/nitro_enclaves is absent" "launch the instance with enclave support enabled (--enclave-options Enabled=true) and install aws-nitro-enclaves-cli"
    [[ -r /dev/nitro_enclaves && -w /dev/nitro_enclaves ]] ||
        fail nitro-device "$(id -un) cannot open /dev/nitro_enclaves" "sudo usermod -aG ne $(id -un), then log in again"
    pass nitro-device "/dev/nitro_enclaves is open to $(id -un)"
    command -v nitro-cli >/dev/null ||
        fail nitro-cli "nitro-cli is not on PATH" "install aws-nitro-enclaves-cli (dnf or the AWS repository; docs/nitro.md, step 1)"
    pass nitro-cli "$(nitro-cli --version 2>&1 | head -1)"
    alloc=/etc/nitro_enclaves/allocator.yaml
    [[ -r "$alloc" ]] || fail allocator "cannot read $alloc" "install aws-nitro-enclaves-cli and start nitro-enclaves-allocator.service"
    a_mem="$(sed -n 's/^memory_mib:[[:space:]]*\([0-9]*\).*/\1/p' "$alloc")"
    a_cpu="$(sed -n 's/^cpu_count:[[:space:]]*\([0-9]*\).*/\1/p' "$alloc")"
    [[ -n "$a_mem" && "$a_mem" -ge "$memory" ]] ||
        fail allocator "$alloc reserves ${a_mem:-no} MiB, the probe needs $memory" "set memory_mib: $memory or more, then sudo systemctl restart nitro-enclaves-allocator.service"
    [[ -n "$a_cpu" && "$a_cpu" -ge "$cpus" ]] ||
        fail allocator "$alloc reserves ${a_cpu:-no} CPUs, the probe needs $cpus" "set cpu_count: $cpus or more, then sudo systemctl restart nitro-enclaves-allocator.service"
    if command -v systemctl >/dev/null && ! systemctl is-active --quiet nitro-enclaves-allocator.service; then
        fail allocator "nitro-enclaves-allocator.service is not active" "sudo systemctl enable --now nitro-enclaves-allocator.service"
    fi
    pass allocator "$a_mem MiB and $a_cpu CPUs reserved"
    free_pages="$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)"
    page_kb="$(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo)"
    free_mib=$(( ${free_pages:-0} * ${page_kb:-0} / 1024 ))
    [[ "$free_mib" -ge "$memory" ]] ||
        fail hugepages "$free_mib MiB of hugepages are free, the probe needs $memory" "stop other enclaves, or raise memory_mib and restart the allocator"
    pass hugepages "$free_mib MiB free"
    blobs="${kernel_dir:-/usr/share/nitro_enclaves/blobs}"
    for f in bzImage bzImage.config cmdline nsm.ko; do
        [[ -r "$blobs/$f" ]] || fail kernel "$blobs/$f is missing" "install aws-nitro-enclaves-cli (it ships the enclave kernel there) or pass --kernel-dir"
    done
    pass kernel "$(sed -n 's/^# Linux\/[^ ]* \([^ ]*\) Kernel Configuration/\1/p' "$blobs/bzImage.config" | head -1) in $blobs"
    build_kernel=(--kernel-profile nitro --kernel-dir "$blobs")
    trust_root=()
    root_name="the AWS Nitro root (pinned)"
else
    command -v qemu-system-x86_64 >/dev/null ||
        fail qemu "qemu-system-x86_64 is not on PATH" "scripts/setup.sh installs it (apt install qemu-system-x86)"
    pass qemu "$(qemu-system-x86_64 --version | head -1)"
    build_kernel=()
    [[ -n "$kernel_dir" ]] && build_kernel=(--kernel-dir "$kernel_dir")
    root_name="this host's emulation root"
fi

busybox="${BUSYBOX:-$(command -v busybox 2>/dev/null)}"
if [[ -z "$busybox" || ! -x "$busybox" ]]; then
    fail busybox "no busybox for the probe's rootfs" "install a static busybox (Debian/Ubuntu: busybox-static) or set BUSYBOX"
fi
if ldd "$busybox" >/dev/null 2>&1; then
    fail busybox "$busybox is dynamically linked; the probe's rootfs has no libraries" "install a static busybox (busybox-static) or set BUSYBOX"
fi
pass busybox "$busybox (static)"

probe="${NSM_PROBE:-}"
if [[ -z "$probe" && -x "$here/nsm-probe" ]]; then
    probe="$here/nsm-probe"
elif [[ -z "$probe" ]]; then
    if [[ -f "$root/crates/enclave-nsm/tests/nsm-probe/Cargo.toml" ]] && command -v cargo >/dev/null; then
        if ! RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$root/target/nsm-probe" \
            cargo build --quiet --release --locked --target x86_64-unknown-linux-gnu \
            --manifest-path "$root/crates/enclave-nsm/tests/nsm-probe/Cargo.toml" >"$work/cargo.log" 2>&1; then
            fail nsm-probe "building it failed: $(tail -1 "$work/cargo.log")" "see cargo's output above it; the probe needs the x86_64-unknown-linux-gnu target"
        fi
        probe="$root/target/nsm-probe/x86_64-unknown-linux-gnu/release/nsm-probe"
    else
        fail nsm-probe "no nsm-probe" "install enclave-engine (it puts one beside this script), run this script from a source checkout with cargo, or set NSM_PROBE to a static build of crates/enclave-nsm/tests/nsm-probe"
    fi
fi
[[ -x "$probe" ]] || fail nsm-probe "$probe is not executable" "set NSM_PROBE to the static nsm-probe"
pass nsm-probe "$probe (aws-nitro-enclaves-nsm-api's own driver)"

# --- the egress targets: one allowed, one that is not ---------------------------------------
python3 - "$work/ports" <<'PY' 2>"$work/listener.log" &
import http.server, socketserver, sys, threading
class Body(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
ports = []
for ip, body in (("127.0.1.2", b"selftest-allowed"), ("127.0.1.3", b"selftest-refused")):
    server = socketserver.ThreadingTCPServer((ip, 0), Body)
    server.body = body
    ports.append(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(" ".join(map(str, ports)) + "\n")
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
threading.Event().wait()
PY
listener=$!
for _ in $(seq 50); do [[ -s "$work/ports" ]] && break; sleep 0.1; done
read -r allowed_port refused_port < "$work/ports" 2>/dev/null ||
    fail egress-targets "the host listeners did not start: $(tail -1 "$work/listener.log")" "check that 127.0.1.2 and 127.0.1.3 can be bound (loopback is 127.0.0.0/8)"
pass egress-targets "127.0.1.2:$allowed_port (allowed), 127.0.1.3:$refused_port (not)"

# --- build ----------------------------------------------------------------------------------
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,etc,probe,tmp}
cp "$busybox" "$rootfs/bin/busybox"
for applet in sh cat echo sleep wget ls; do ln -s busybox "$rootfs/bin/$applet"; done
cp "$probe" "$rootfs/probe/nsm-probe"
printf 'root:x:0:0:root:/:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
cat > "$work/enclave.yaml" <<EOF
# (busybox 1.35 wget segfaults with -T: no timeout flag.)
# The self-test's probe: exec is on (how the probe runs), so documents show a debug surface.
name: nitro-selftest
from: dir:rootfs
cmd: [/bin/sh, -c, "echo selftest probe ready; while true; do sleep 3600; done"]
env:
  PATH: /bin
egress:
  mode: transparent
  allow:
    - {cidr: 127.0.1.2/32, port: $allowed_port}
debug:
  exec: true
EOF
eif="$work/probe.eif"
if ! "$ctl" build --quiet "${build_kernel[@]}" -f "$work/enclave.yaml" -o "$eif" >"$work/build.log" 2>&1; then
    fail build "enclave-ctl build failed: $(tail -1 "$work/build.log")" "fix what it says (the kernel directory, the static enclave-init)"
fi
if ! "$ctl" measure --json "$eif" > "$work/pcrs.json" 2>"$work/measure.log"; then
    fail build "enclave-ctl measure failed: $(tail -1 "$work/measure.log")" "report this as a bug"
fi
pcr() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Measurements"]["PCR"+sys.argv[2]])' "$work/pcrs.json" "$1"; }
pcr0="$(pcr 0)" pcr1="$(pcr 1)" pcr2="$(pcr 2)" ||
    fail build "no PCR0-2 in measure --json" "report this as a bug"
pass build "PCR0 $pcr0"

# --- run ------------------------------------------------------------------------------------
if ! "$ctl" run -d --backend "$backend" --cpus "$cpus" --memory "$memory" --boot-timeout 120 \
        --name "$name" "$eif" >"$work/run.log" 2>&1; then
    cat "$work/run.log" >&2
    fail run "enclave-ctl run failed: $(grep -m1 "^error" "$work/run.log" || tail -1 "$work/run.log")" "fix what it says; enclave-ctl logs $name shows the boot"
fi
# The backend as ps shows it: qemu/kvm or qemu/tcg (where KVM is absent or hangs), or nitro.
shown="$("$ctl" ps --format '{{.Name}} {{.Backend}}' | sed -n "s/^$name //p")"
pass run "$name is running (${shown:-$backend}, $cpus CPUs, $memory MiB)"

if [[ "$backend" == qemu ]]; then
    root_pem="$("$ctl" attest --print-root 2>"$work/root.log")" ||
        fail trust-root "no emulation root: $(tail -1 "$work/root.log")" "report this as a bug"
    trust_root=(--trust-root "$root_pem")
fi
verify() { "$ctl" verify "$@" "${trust_root[@]}" --pcr "0=$pcr0" --pcr "1=$pcr1" --pcr "2=$pcr2" --allow-debug; }
nonce() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# --- a document through /dev/nsm inside the enclave -----------------------------------------
nonce1="$(nonce)"
key="04$(od -An -N96 -tx1 /dev/urandom | tr -d ' \n')"
if ! "$ctl" exec -u 0 "$name" -- /probe/nsm-probe "$nonce1" "$key" >"$work/probe.out" 2>"$work/probe.err"; then
    fail dev-nsm "nsm-probe failed in the enclave: $(tail -1 "$work/probe.err")" "enclave-ctl logs $name shows whether /dev/nsm came up (nsm.ko on Nitro, CUSE when emulated)"
fi
field() { sed -n "s/^$1 //p" "$work/probe.out"; }
field document > "$work/dev-nsm.hex"
pcr16="$(field extended)"
[[ -s "$work/dev-nsm.hex" && -n "$pcr16" ]] ||
    fail dev-nsm "nsm-probe printed no document" "report this as a bug with $work/probe.out"
pass dev-nsm "document of $(( $(wc -c < "$work/dev-nsm.hex") / 2 )) bytes, PCR16 extended"
if ! verify "$work/dev-nsm.hex" --nonce "$nonce1" --public-key "$key" --pcr "16=$pcr16" >"$work/verify1.log" 2>&1; then
    fail verify-dev-nsm "$(grep -v '^$' "$work/verify1.log" | tail -1)" "the document does not match $root_name and this build's PCRs"
fi
pass verify-dev-nsm "genuine under $root_name; PCR0-2, PCR16, nonce and key match"

# --- a document through the control channel --------------------------------------------------
nonce2="$(nonce)"
if ! "$ctl" attest "$name" --nonce "$nonce2" -o "$work/attest.cose" >"$work/attest.log" 2>&1; then
    fail attest "enclave-ctl attest failed: $(tail -1 "$work/attest.log")" "enclave-ctl logs $name; the control channel needs the key of the user who ran the enclave"
fi
pass attest "document of $(wc -c < "$work/attest.cose") bytes"
if ! verify "$work/attest.cose" --nonce "$nonce2" >"$work/verify2.log" 2>&1; then
    fail verify-attest "$(grep -v '^$' "$work/verify2.log" | tail -1)" "the document does not match $root_name and this build's PCRs"
fi
pass verify-attest "genuine under $root_name; PCR0-2 and nonce match"

# --- egress ---------------------------------------------------------------------------------
got="$("$ctl" exec "$name" -- wget -q -O - "http://127.0.1.2:$allowed_port/" 2>"$work/egress1.err")"
[[ "$got" == selftest-allowed ]] ||
    fail egress-allowed "127.0.1.2:$allowed_port not reached (${got:-$(tail -1 "$work/egress1.err")})" "enclave-ctl logs $name shows the redirect and the host proxy's refusals"
pass egress-allowed "127.0.1.2:$allowed_port answered"
if got="$("$ctl" exec "$name" -- wget -q -O - "http://127.0.1.3:$refused_port/" 2>/dev/null)" || [[ -n "$got" ]]; then
    fail egress-refused "127.0.1.3:$refused_port, not in the allow-list, was reached" "this is a bug in the egress policy: report it"
fi
pass egress-refused "127.0.1.3:$refused_port refused"

# --- stop and remove ------------------------------------------------------------------------
if [[ -z "$keep" ]]; then
    "$ctl" stop "$name" >"$work/stop.log" 2>&1 ||
        fail stop "enclave-ctl stop failed: $(tail -1 "$work/stop.log")" "enclave-ctl rm -f $name"
    "$ctl" rm "$name" >"$work/rm.log" 2>&1 ||
        fail rm "enclave-ctl rm failed: $(tail -1 "$work/rm.log")" "enclave-ctl rm -f $name"
    pass stop "$name stopped and removed"
fi
echo "nitro-selftest: $passed passed, 0 failed ($backend backend)"
