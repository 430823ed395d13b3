#!/usr/bin/env bash
# Where the CPU of rdio's two processes goes while they move small I/Os:
# `rdio serve` and `rdio bench --server --no-baselines` over TRANSPORT on
# 127.0.0.1, both sampled by `perf record` for SECONDS once the bench's
# timed I/Os (OP: read or write) have begun (its file already filled), then each process's
# samples split by where they ran (the kernel, rdio's own code, libfabric,
# libc) and its hottest symbols. The share in rdio's own code bounds what
# any change to rdio's core or driver can gain on that transport at that
# size and depth: the rest is the kernel's (system calls, the TCP stack,
# the copies) and the provider's. docs/PERFORMANCE.md, "Stop 37".
#
#   scripts/cpu-split.sh [TRANSPORT] [QD] [SIZE] [SECONDS] [OP]
#       (defaults: cma 32 4K 3 read; TRANSPORT fabric or cma)
#
# Needs perf (apt-get install -y linux-perf) and permission to sample
# other processes (root, or kernel.perf_event_paranoid <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."
transport=${1:-cma}
qd=${2:-32}
size=${3:-4K}
seconds=${4:-3}
op=${5:-read}
case $transport in
fabric | cma) ;;
*) echo "cpu-split: TRANSPORT is fabric or cma, not '$transport'" >&2; exit 2 ;;
esac
[[ $qd =~ ^[0-9]+$ && $seconds =~ ^[0-9]+$ ]] || { echo "cpu-split: QD and SECONDS are whole numbers" >&2; exit 2; }
[[ $op == read || $op == write ]] || { echo "cpu-split: OP is read or write, not '$op'" >&2; exit 2; }
command -v perf >/dev/null || { echo "cpu-split: needs perf (apt-get install -y linux-perf)" >&2; exit 1; }
cargo build --release -q -p rdio-cli
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
rdio=$target_dir/release/rdio

work=$(mktemp -d /dev/shm/rdio-cpu.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/root"

"$rdio" --transport "$transport" serve --root "$work/root" --listen 127.0.0.1:0 \
    >"$work/serve.out" 2>"$work/serve.err" &
server=$!
pids+=("$server")
addr=""
for _ in $(seq 100); do
    line=$(head -n 1 "$work/serve.out")
    if [[ $line == "rdio serve: listening on "* ]]; then
        line=${line#rdio serve: listening on }
        addr=${line%% *}
        break
    fi
    sleep 0.1
done
[[ -n $addr ]] || { echo "cpu-split: rdio serve did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }

# Enough runs that the timed I/Os outlast the sampling (the file is as
# large as one run's bytes).
"$rdio" --transport "$transport" bench --server "$addr" --no-baselines --in-place --ops "$op" \
    --sizes "$size" --queue-depths "$qd" --repeat 100 --bytes 256MiB \
    >"$work/bench.out" 2>"$work/bench.err" &
client=$!
pids+=("$client")
# The table's header is printed once the file is filled, just before the
# timed I/Os.
for _ in $(seq 600); do
    grep -q '^op ' "$work/bench.out" 2>/dev/null && break
    kill -0 "$client" 2>/dev/null || { echo "cpu-split: the bench ended early:" >&2; cat "$work/bench.err" >&2; exit 1; }
    sleep 0.1
done
sleep 0.5
tick() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
s0=$(tick "$server") c0=$(tick "$client") t0=$(date +%s.%N)
perf record -q -o "$work/server.data" -p "$server" -- sleep "$seconds" 2>"$work/perf-server.err" &
perf_server=$!
perf record -q -o "$work/client.data" -p "$client" -- sleep "$seconds" 2>"$work/perf-client.err"
wait "$perf_server"
s1=$(tick "$server") c1=$(tick "$client") t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
report() { # SIDE SORT LINES: the first LINES of perf's report (head may close the pipe early)
    perf report -i "$work/$1.data" --stdio --sort "$2" 2>/dev/null | grep -v -e '^#' -e '^$' | head -"$3" || true
}
echo "rdio $transport: $size ${op}s at QD $qd, in place; $seconds s sampled by perf; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for side in server client; do
    if [[ $side == server ]]; then used=$((s1 - s0)); else used=$((c1 - c0)); fi
    echo
    echo "== $side: $(awk -v t="$used" -v hz="$hz" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * t / hz / (b - a) }') % of a CPU; samples by where they ran:"
    if [[ ! -s $work/$side.data ]]; then
        echo "   no samples:" && cat "$work/perf-$side.err"
        continue
    fi
    report "$side" dso 6
    echo "   hottest symbols:"
    report "$side" dso,sym 8
done
