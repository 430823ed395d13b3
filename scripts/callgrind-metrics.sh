#!/usr/bin/env bash
# What the drivers' per-request metrics cost: the whole stack's cost per
# 4 KiB read (std client, both cores, loopback, server driver, inline on one
# thread: benches/src/bin/inline_cycle.rs) with metrics on (the default) and
# off (`--no-metrics`: ServerOptions/ClientOptions::request_metrics = false
# — no latency histograms, no request spans, no per-request cell updates).
#
#   scripts/callgrind-metrics.sh [N] [inline_cycle options: QD --polling --threads]
#
# Instructions, counted by callgrind with N and 2N reads and the difference
# divided by N (as scripts/callgrind-inline.sh), when $VALGRIND (or the
# valgrind on PATH) knows openat2(2), i.e. valgrind >= 3.20 — see
# callgrind-inline.sh for using Debian 13's. Otherwise (Debian 12's 3.19)
# it says so and falls back to time: ROUNDS (default 9) runs of N reads,
# on and off alternated, median nanoseconds per read of each.
set -euo pipefail
cd "$(dirname "$0")/.."
valgrind=${VALGRIND:-valgrind}
n=${1:-2000}
shift || true
cargo build --release -q -p rdio-benches --bin inline_cycle
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target_dir/release/inline_cycle
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

count() {
    local reads=$1
    shift
    "$valgrind" --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" "$reads" "$@" >/dev/null 2>"$tmp/log" || return 1
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/log" | grep .
}

if command -v "$valgrind" >/dev/null && count 10 "$@" >/dev/null; then
    for variant in on off; do
        flags=("$@")
        [ "$variant" = off ] && flags+=(--no-metrics)
        a=$(count "$n" "${flags[@]}")
        b=$(count "$((2 * n))" "${flags[@]}")
        echo "metrics $variant: $(( (b - a) / n )) instructions per 4 KiB read ($*)   (N=$n: $a, 2N: $b)"
    done
    exit 0
fi
echo "callgrind-metrics: $valgrind cannot run the server (openat2 needs valgrind >= 3.20); timing instead" >&2
rounds=${ROUNDS:-9}
for _ in $(seq "$rounds"); do
    "$bin" "$n" "$@" | sed -n 's/.* \([0-9.]*\) ns per read/\1/p' >>"$tmp/on"
    "$bin" "$n" "$@" --no-metrics | sed -n 's/.* \([0-9.]*\) ns per read/\1/p' >>"$tmp/off"
done
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
on=$(median "$tmp/on")
off=$(median "$tmp/off")
echo "metrics on:  $on ns per 4 KiB read (median of $rounds runs of $n, $*)"
echo "metrics off: $off ns per 4 KiB read"
awk -v on="$on" -v off="$off" 'BEGIN { printf "cost: %.1f ns per read (%.1f%%)\n", on - off, 100 * (on - off) / off }'
