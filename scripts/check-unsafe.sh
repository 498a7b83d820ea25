#!/usr/bin/env bash
# The unsafe-code rule, checked in CI: `unsafe` only in modules named `*_unsafe.rs`, and every
# unsafe block there preceded by a `// SAFETY:` comment (within the 6 lines above it). The
# compiler enforces the first half too (`[workspace.lints]`: unsafe_code = "deny", allowed only
# by `#![allow(unsafe_code)]`); this check also refuses that allow anywhere else.
#
#   scripts/check-unsafe.sh [DIR...]     (default: crates fuzz)
#   scripts/check-unsafe.sh --self-test  (shows that it fails on a violation)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

check() {
    # Comments and string literals are removed first: "unsafe path" in a message is no code.
    perl -e '
        my $bad = 0;
        for my $file (@ARGV) {
            open my $fh, "<", $file or die "$file: $!";
            my @lines = <$fh>;
            my $unsafe_module = $file =~ /_unsafe\.rs$/;
            for my $i (0 .. $#lines) {
                my $code = $lines[$i];
                $code =~ s/"(?:[^"\\]|\\.)*"//g;
                $code =~ s{//.*}{};
                if (!$unsafe_module && ($code =~ /\bunsafe\b/ || $lines[$i] =~ /allow\(unsafe_code\)/)) {
                    print "$file:", $i + 1, ": unsafe outside a *_unsafe.rs module\n";
                    $bad = 1;
                }
                if ($unsafe_module && $code =~ /\bunsafe\s*\{/) {
                    my $from = $i >= 6 ? $i - 6 : 0;
                    my $ok = grep { /SAFETY:/ } @lines[$from .. $i];
                    if (!$ok) {
                        print "$file:", $i + 1, ": unsafe block without a // SAFETY: comment\n";
                        $bad = 1;
                    }
                }
            }
        }
        exit $bad;
    ' "$@"
}

if [ "${1:-}" = "--self-test" ]; then
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' EXIT
    printf 'fn f() { let _ = "unsafe in a string"; } // unsafe in a comment\n' > "$dir/clean.rs"
    printf '// SAFETY: nothing\nfn g() { unsafe { } }\n' > "$dir/ok_unsafe.rs"
    "$here/check-unsafe.sh" "$dir" > /dev/null 2>&1 || { echo "self-test: clean files refused" >&2; exit 1; }
    printf 'fn h() { unsafe { } }\n' > "$dir/sneaky.rs"
    if "$here/check-unsafe.sh" "$dir" > /dev/null 2>&1; then
        echo "self-test: an unsafe block outside *_unsafe.rs passed" >&2; exit 1
    fi
    rm "$dir/sneaky.rs"
    printf 'fn i() {\n    unsafe { }\n}\n' > "$dir/bare_unsafe.rs"
    if "$here/check-unsafe.sh" "$dir" > /dev/null 2>&1; then
        echo "self-test: an unsafe block without SAFETY passed" >&2; exit 1
    fi
    echo "check-unsafe: self-test passed"
    exit 0
fi

[ $# -gt 0 ] || { cd "$here/.."; set -- crates fuzz; }
mapfile -t files < <(find "$@" -name '*.rs' -not -path '*/target/*' | sort)
if check "${files[@]}"; then
    echo "check-unsafe: ${#files[@]} files, unsafe only in *_unsafe.rs, every block with SAFETY"
else
    echo "check-unsafe: failed (see above): move the code into a *_unsafe.rs module with a // SAFETY: comment" >&2
    exit 1
fi
