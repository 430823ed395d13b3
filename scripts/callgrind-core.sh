#!/usr/bin/env bash
# Instructions per 4 KiB read, client + server core together, counted by
# callgrind (repeatable on a shared machine, unlike time). Runs the cycle
# binary with N and 2N reads and divides the difference by N, so set-up and
# process start-up cancel out.
set -euo pipefail
cd "$(dirname "$0")/.."
valgrind=${VALGRIND:-valgrind}
command -v "$valgrind" >/dev/null || { echo "callgrind-core: install valgrind (apt-get install -y valgrind)" >&2; exit 1; }
n=${1:-2000}
cargo build --release -q -p rdio-benches --bin core_cycle
# Where cargo put it: honours CARGO_TARGET_DIR and build.target-dir.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target_dir/release/core_cycle
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
count() {
    # A cycle that fails (a read that did not complete) must not print a
    # count: the binary asserts, and its exit status ends the script.
    "$valgrind" --tool=callgrind --callgrind-out-file="$tmp/out.$1" "$bin" "$@" >/dev/null 2>"$tmp/log.$1" ||
        { cat "$tmp/log.$1" >&2; echo "callgrind-core: core_cycle $* failed" >&2; exit 1; }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/log.$1"
}
# The completion taken straight from the status block (take_status_block),
# then the same read with it queued and drained by poll_event.
a=$(count "$n")
b=$(count "$((2 * n))")
per=$(( (b - a) / n ))
echo "core instructions per 4 KiB read (client + server): $per   (N=$n: $a, 2N: $b)"
a=$(count "$n" events)
b=$(count "$((2 * n))" events)
per=$(( (b - a) / n ))
echo "  the same, completion through poll_event: $per   (N=$n: $a, 2N: $b)"
a=$(count "$n" batch)
b=$(count "$((2 * n))" batch)
per=$(( (b - a) / n ))
echo "  the same, read batches of 16 (one ReadBatch, one immediate): $per   (N=$n: $a, 2N: $b)"
a=$(count "$n" files)
b=$(count "$((2 * n))" files)
per=$(( (b - a) / n ))
echo "  the same, the last of 16 registered files: $per   (N=$n: $a, 2N: $b)"
