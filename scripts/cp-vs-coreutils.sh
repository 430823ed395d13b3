#!/usr/bin/env bash
# `rdio cp` against coreutils `cp` of the same file on tmpfs, side by side.
#
#   bash scripts/cp-vs-coreutils.sh [SIZE] [RUNS]   # SIZE for head -c (1G), RUNS >= 3 (5)
#   RDIO=target/release/rdio bash scripts/cp-vs-coreutils.sh 256M 3
#   RDIO_CP_ARGS="--round-trip" bash scripts/cp-vs-coreutils.sh
#
# Builds `rdio` in release mode unless RDIO names a binary, writes SIZE
# random bytes to a fresh directory under /dev/shm, then alternates the
# two copies RUNS times (cp, rdio cp, cp, rdio cp, ...), each into a new
# destination removed afterwards, and prints every run's wall-clock time,
# the medians, and the median of the per-pair ratios rdio/cp. Both
# destinations are on the same tmpfs. `rdio cp` is a verified download:
# its in-process server exports the source's directory read-only, the
# client reads the file by RDMA from the server's page-cache mapping and
# writes the destination once, as cp does, checked against the server's
# XXH3-128 of the source. RDIO_CP_ARGS=--round-trip measures the long
# way instead, through a temporary server root on the same tmpfs (TMPDIR
# points there), which writes the file twice. Every copy is compared with
# the source (cmp) outside the timing. The directory is removed at the
# end.
set -euo pipefail

size=${1:-1G}
runs=${2:-5}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
read -r -a extra <<<"${RDIO_CP_ARGS:-}"

say() { echo "cp-vs-coreutils: $*" >&2; }

if ((runs < 3)); then
    say "RUNS must be at least 3 (got $runs)"
    exit 2
fi
if [[ -n ${RDIO:-} ]]; then
    rdio=$RDIO
else
    say "building rdio (release)"
    cargo build --quiet --release -p rdio-cli --manifest-path "$repo/Cargo.toml"
    rdio=${CARGO_TARGET_DIR:-$repo/target}/release/rdio
fi
[[ -x $rdio ]] || { say "no rdio binary at $rdio"; exit 1; }

work=$(mktemp -d /dev/shm/rdio-cp-vs-coreutils.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"
say "writing $size of random bytes to $work/src"
head -c "$size" /dev/urandom >"$work/src"

# Wall-clock seconds of "$@", with nanosecond resolution.
seconds() {
    local start end
    start=$(date +%s%N)
    "$@"
    end=$(date +%s%N)
    awk -v ns=$((end - start)) 'BEGIN { printf "%.3f\n", ns / 1e9 }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

cp_times=()
rdio_times=()
ratios=()
printf '%-4s %10s %10s %8s\n' run "cp s" "rdio s" ratio
for ((i = 1; i <= runs; i++)); do
    sync
    t_cp=$(seconds cp "$work/src" "$work/dst-cp")
    cmp "$work/src" "$work/dst-cp"
    rm -f "$work/dst-cp"
    t_rdio=$(seconds env TMPDIR="$work/tmp" "$rdio" -q --no-progress cp "${extra[@]}" "$work/src" "$work/dst-rdio")
    cmp "$work/src" "$work/dst-rdio"
    rm -f "$work/dst-rdio"
    ratio=$(awk -v a="$t_rdio" -v b="$t_cp" 'BEGIN { printf "%.2f\n", a / b }')
    printf '%-4s %10s %10s %8s\n' "$i" "$t_cp" "$t_rdio" "$ratio"
    cp_times+=("$t_cp")
    rdio_times+=("$t_rdio")
    ratios+=("$ratio")
done
printf '%-4s %10s %10s %8s\n' median \
    "$(printf '%s\n' "${cp_times[@]}" | median)" \
    "$(printf '%s\n' "${rdio_times[@]}" | median)" \
    "$(printf '%s\n' "${ratios[@]}" | median)"
