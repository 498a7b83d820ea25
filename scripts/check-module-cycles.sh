#!/usr/bin/env bash
# Every crate's modules are layered: a module uses modules below it, never one that uses it
# back (docs/architecture.md, "Module layers"). A cycle is how the layers start to blur, and
# the compiler accepts it, so this lists the edges between the sibling modules of each
# directory below and fails on a cycle (`tsort` finds them). An edge is a sibling named in code
# as `crate::NAME` (or `super::NAME` between the files of a directory); comment lines are left
# out, test modules are not.
#
#   scripts/check-module-cycles.sh [--edges]   (--edges: print the edges too)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

show=false
[[ ${1:-} == --edges ]] && show=true

# edges DIR PREFIX: "A B" for every module A of DIR whose code names its sibling B as PREFIX B.
edges() {
    local dir=$1 prefix=$2 mods=() a b f
    for f in "$dir"/*.rs; do
        b=$(basename "$f" .rs)
        [[ $b == lib || $b == main || $b == mod ]] || mods+=("$b")
    done
    for f in "$dir"/*/; do
        b=$(basename "$f")
        [[ -f $dir/$b/mod.rs || -f $dir/$b.rs ]] && mods+=("$b")
    done
    for a in $(printf '%s\n' "${mods[@]}" | sort -u); do
        # `use crate::{x, y::z}` groups may span lines: flatten the code first.
        local paths=()
        [[ -f $dir/$a.rs ]] && paths+=("$dir/$a.rs")
        [[ -d $dir/$a ]] && paths+=("$dir/$a")
        ((${#paths[@]})) || continue
        find "${paths[@]}" -name '*.rs' | sort | xargs cat |
            { grep -vE '^\s*//' || true; } | tr '\n' ' ' |
            { grep -oE "${prefix}(\{[^}]*\}|[a-z_0-9]+)" || true; } |
            sed -E "s/^${prefix}//; s/[{}]//g" | tr ',' '\n' |
            sed -E 's/^ *//; s/::.*//; s/ .*//' | sort -u |
            while read -r b; do
                for m in "${mods[@]}"; do
                    if [[ $b == "$m" && $b != "$a" ]]; then echo "$a $b"; fi
                done
            done
    done
}

status=0
check() {
    local what=$1 out err
    shift
    out=$(edges "$@")
    $show && printf '%s:\n%s\n' "$what" "$out" | sed '2,$s/^/  /'
    if ! err=$(tsort <<<"$out" 2>&1 >/dev/null); then
        echo "module cycle in $what:" >&2
        grep -v 'input contains a loop' <<<"$err" | sed 's/^tsort: /  /' >&2
        status=1
    fi
}

check "enclave-engine" crates/enclave-engine/src 'crate::'
check "enclave-ctl" crates/enclave-ctl/src 'crate::'
check "enclave-ctl cmd/" crates/enclave-ctl/src/cmd '(crate::cmd::|super::)'
check "enclave-init" crates/enclave-init/src 'crate::'
check "enclave-proto" crates/enclave-proto/src 'crate::'
check "enclave-proxy" crates/enclave-proxy/src 'crate::'
check "enclave-image" crates/enclave-image/src 'crate::'
check "enclave-spec" crates/enclave-spec/src 'crate::'
check "enclave-cli" crates/enclave-cli/src 'crate::'
check "enclave-nsm" crates/enclave-nsm/src 'crate::'
check "enclave-attest" crates/enclave-attest/src 'crate::'
check "enclave-attest-server" crates/enclave-attest-server/src 'crate::'
[[ $status -eq 0 ]] && echo "check-module-cycles: no module cycle"
exit $status
