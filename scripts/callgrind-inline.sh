#!/usr/bin/env bash
# Instructions per 4 KiB read through the whole stack — std client, core
# client and server, loopback transport, server driver, the copy from the
# file's mapping — with client and server inline on one thread, counted by
# callgrind. Runs the inline_cycle binary with N and 2N reads and divides the
# difference by N, so set-up and process start-up cancel out; then splits
# the 2N run's instructions by where they were spent (callgrind_annotate,
# grouped by source file).
#
#   scripts/callgrind-inline.sh [N] [inline_cycle options: QD --copy-out --polling --threads]
#
# FUNCTIONS=K also lists the K functions that ran the most instructions
# per read (self cost: what the compiler inlined into a function counts
# for it), the table to start from when looking for what to cut.
#
# The server opens files with openat2(2), which valgrind knows from 3.20 on;
# Debian 12's valgrind (3.19) fails the open (ENOSYS). Point $VALGRIND at a
# newer one, e.g. Debian 13's package unpacked with `dpkg -x` (its
# valgrind needs VALGRIND_LIB=<unpacked>/usr/libexec/valgrind too).
set -euo pipefail
cd "$(dirname "$0")/.."
valgrind=${VALGRIND:-valgrind}
annotate=${CALLGRIND_ANNOTATE:-$(dirname "$(command -v "$valgrind")")/callgrind_annotate}
command -v "$valgrind" >/dev/null || { echo "callgrind-inline: install valgrind (apt-get install -y valgrind)" >&2; exit 1; }
n=${1:-2000}
shift || true
functions=${FUNCTIONS:-0}
[[ $functions =~ ^[0-9]+$ ]] || { echo "callgrind-inline: FUNCTIONS is a count, not '$functions'" >&2; exit 2; }
cargo build --release -q -p rdio-benches --bin inline_cycle
# Where cargo put it: honours CARGO_TARGET_DIR and build.target-dir.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target_dir/release/inline_cycle
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() {
    local reads=$1
    shift
    "$valgrind" --tool=callgrind --callgrind-out-file="$tmp/out.$reads" "$bin" "$reads" "$@" >/dev/null 2>"$tmp/log.$reads"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/log.$reads" | grep . ||
        { cat "$tmp/log.$reads" >&2; exit 1; }
}
a=$(count "$n" "$@")
b=$(count "$((2 * n))" "$@")
per=$(( (b - a) / n ))
echo "instructions per 4 KiB read, whole stack ($*): $per   (N=$n: $a, 2N: $b)"
# Self cost of N reads = (2N run) - (N run), by the crate of the function
# the instructions were executed in (std code inlined into a crate's
# function counts for that crate), and with FUNCTIONS by function.
functions_of() { # a run's self cost by function: "function<TAB>instructions"
    "$annotate" --inclusive=no --auto=no --threshold=100 "$1" 2>/dev/null | awk '
        /^ *[0-9,]+ +\(/ && !/PROGRAM TOTALS/ {
            n = $1; gsub(",", "", n)
            line = $0
            sub(/^ *[0-9,]+ +\([^)]*\) +/, "", line)
            fn = substr(line, index(line, ":") + 1)
            sub(/ \[[^]]*\]$/, "", fn)
            sum[fn] += n
        }
        END { for (f in sum) printf "%s\t%d\n", f, sum[f] }'
}
parts_of() { # the same by the part of the stack the function's crate is
    functions_of "$1" | awk -F'\t' '
        {
            fn = $1
            crate = fn
            sub(/^</, "", crate)
            sub(/::.*/, "", crate)
            if (fn ~ /memmove|memcpy|memset/) part = "libc memcpy/memset"
            else if (crate == "rdio_core") part = "core (rdio-core)"
            else if (crate == "rdio") part = "driver (rdio)"
            else if (crate == "rdio_loopback") part = "loopback"
            else if (crate == "rdio_transport") part = "transport api"
            else if (crate == "inline_cycle") part = "bench loop"
            else if (crate ~ /^(std|core|alloc|hashbrown)$/) part = "std (out of line)"
            else part = "libc, vdso, other"
            sum[part] += $2
        }
        END { for (p in sum) printf "%s\t%d\n", p, sum[p] }'
}
per_read() { # KEY<TAB>count of the N run and of the 2N run -> per read, largest first
    LC_ALL=C join -t $'\t' -a 2 -e 0 -o 0,1.2,2.2 "$1" "$2" |
        awk -F'\t' -v n="$n" '{ printf "%8d  %s\n", ($3 - $2) / n, $1 }' | sort -rn
}
parts_of "$tmp/out.$n" | LC_ALL=C sort -t $'\t' -k1,1 >"$tmp/split.a"
parts_of "$tmp/out.$((2 * n))" | LC_ALL=C sort -t $'\t' -k1,1 >"$tmp/split.b"
echo "per read, by where the instructions ran (self cost):"
per_read "$tmp/split.a" "$tmp/split.b"
if [[ $functions -gt 0 ]]; then
    functions_of "$tmp/out.$n" | LC_ALL=C sort -t $'\t' -k1,1 >"$tmp/fn.a"
    functions_of "$tmp/out.$((2 * n))" | LC_ALL=C sort -t $'\t' -k1,1 >"$tmp/fn.b"
    echo "the $functions functions with the most instructions per read (self cost):"
    per_read "$tmp/fn.a" "$tmp/fn.b" | head -"$functions"
fi
