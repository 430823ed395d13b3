#!/usr/bin/env bash
# Issue 17's targets, every one measured in one run and checked: the
# protocol-shaped and plain ratios over libfabric's tcp provider and over
# cma (each against `rdio serve` on 127.0.0.1), loopback IOPS, and — when a
# valgrind that follows openat2 is at hand — the instruction counts. The
# w/file column is each row's ratio to the protocol-shaped loop with the
# server's file I/O (`rdio bench --file-baseline`, a file on the served
# file system): how much of a miss is the file system's, not a target; the
# file/shaped (4 KiB) and file/raw (1 MiB) columns are that file-backed
# loop's own ratio to the row's baseline, the most a server doing the file
# I/O reaches with no code of its own. For the plain-loop rows (4 KiB
# reads at QD 32) that file-backed loop is the batched one (`fbat_rd`:
# requests and notifications batched as rdio batches them), since the
# plain-loop target is reachable only by batching. Every row is measured twice: as
# `rdio bench` runs by default (reads copied out to the caller's memory,
# writes copied into a registered buffer) and with `--in-place` (the
# client's registered buffers lent, as the raw loops use theirs).
#
#   scripts/hot-path-targets.sh [REPEAT]          (default 3 runs per row)
#   FROM=DIR scripts/hot-path-targets.sh          (the table again from the
#                                                  CSVs an OUT=DIR run kept)
#
# Environment: BYTES (bytes per row, default 256MiB), PIN (a CPU list for
# taskset: every server, bench and baseline then runs on those CPUs only.
# A diagnostic, not the targets' method: PIN=0 puts rdio and the raw loops
# alike on one CPU, which steadies the raw cma loops on a VM where handing
# work between vCPUs is slow and erratic, but starves the raw libfabric
# loops (docs/PERFORMANCE.md, stop 32)), OUT (a directory to
# keep the CSVs and logs in; default a temporary one, removed), VALGRIND /
# VALGRIND_LIB / CALLGRIND_ANNOTATE as scripts/callgrind-inline.sh takes
# them (skipped with a note when valgrind is older than 3.20 or missing).
# With perf at hand (CPU_SPLIT=0 skips it), scripts/cpu-split.sh samples
# rdio serve during 4 KiB QD 32 reads over each transport and the table
# ends with the share of its CPU in rdio's own code.
# Every ratio is a median of REPEAT alternated baseline/rdio runs (`rdio
# bench --repeat`); the machine's load average is printed with the table,
# because these are wall-clock figures.
set -euo pipefail
cd "$(dirname "$0")/.."
repeat=${1:-3}
bytes=${BYTES:-256MiB}

if [[ -n ${FROM:-} ]]; then
    out=$FROM
    for csv in fabric cma fabric-in-place cma-in-place loopback; do
        [[ -f $out/$csv.csv ]] || { echo "hot-path-targets: no $out/$csv.csv (FROM takes an OUT directory of a full run)" >&2; exit 1; }
    done
    repeat="(as measured)" bytes="(as measured)"
else
cargo build --release -q -p rdio-cli
pin=()
if [[ -n ${PIN:-} ]]; then
    command -v taskset >/dev/null || { echo "hot-path-targets: PIN needs taskset (util-linux)" >&2; exit 1; }
    pin=(taskset -c "$PIN")
fi
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
rdio=$target_dir/release/rdio

work=$(mktemp -d /dev/shm/rdio-targets.XXXXXX)
out=${OUT:-$work/out}
mkdir -p "$work/root" "$out"
# Servers are started inside `$(serve ...)`, a subshell: their PIDs go to a
# file, since a variable set there would not reach the cleanup.
cleanup() {
    if [[ -f $work/pids ]]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$work/pids"
    fi
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Start `rdio serve` over TRANSPORT on an ephemeral port; prints its address.
serve() {
    local transport=$1 line
    "${pin[@]}" "$rdio" --transport "$transport" serve --root "$work/root" --listen 127.0.0.1:0 \
        >"$out/serve-$transport.out" 2>"$out/serve-$transport.err" &
    echo "$!" >>"$work/pids"
    for _ in $(seq 100); do
        line=$(head -n 1 "$out/serve-$transport.out")
        if [[ $line == "rdio serve: listening on "* ]]; then
            line=${line#rdio serve: listening on }
            echo "${line%% *}"
            return
        fi
        sleep 0.1
    done
    echo "hot-path-targets: rdio serve --transport $transport did not start:" >&2
    cat "$out/serve-$transport.err" >&2
    return 1
}

for transport in fabric cma; do
    addr=$(serve "$transport") || exit 1
    echo "== $transport: rdio bench --server $addr (4K and 1M, QD 1/8/32, read and write, $repeat runs)" >&2
    # --file-baseline: the shaped loops again with the server's file I/O,
    # on the served file system, for the w/file column (not a target).
    "${pin[@]}" "$rdio" --transport "$transport" bench --server "$addr" --sizes 4K,1M --queue-depths 1,8,32 \
        --ops read,write --bytes "$bytes" --repeat "$repeat" --csv "$out/$transport.csv" \
        --file-baseline "$work/root" >"$out/$transport.txt"
    # Every row again with the client's registered buffers lent
    # (--in-place): data lands where the server's RDMA write puts it and
    # writes are sent from it, as the raw and shaped loops do with their
    # own buffers; the default rows above add a copy into or out of the
    # caller's memory (Client::read / Client::write).
    echo "== $transport: the same, --in-place" >&2
    "${pin[@]}" "$rdio" --transport "$transport" bench --server "$addr" --sizes 4K,1M --queue-depths 1,8,32 \
        --ops read,write --bytes "$bytes" --repeat "$repeat" --in-place --csv "$out/$transport-in-place.csv" \
        --file-baseline "$work/root" >"$out/$transport-in-place.txt"
done
echo "== loopback (inline): rdio bench, 4K read QD 32, $repeat runs" >&2
"${pin[@]}" "$rdio" bench --sizes 4K --queue-depths 32 --ops read --bytes "$bytes" --repeat "$repeat" \
    --csv "$out/loopback.csv" >"$out/loopback.txt"

valgrind=${VALGRIND:-valgrind}
version=$({ "$valgrind" --version 2>/dev/null || true; } | sed -n 's/^valgrind-3\.\([0-9]*\).*/\1/p')
# The core count runs no file system call valgrind does not know, so any
# valgrind counts it; the whole stack opens files with openat2(2), which
# valgrind follows from 3.20 on (Debian 12 has 3.19: set VALGRIND).
whole="not measured (needs valgrind >= 3.20: set VALGRIND)"
core="not measured (needs valgrind)"
if [[ -n $version ]]; then
    echo "== callgrind: core" >&2
    core=$(bash scripts/callgrind-core.sh | sed -n 's/^core instructions per 4 KiB read (client + server): \([0-9]*\).*/\1/p')
    core=${core:-"not measured (callgrind-core.sh printed no count)"}
fi
if [[ -n $version && $version -ge 20 ]]; then
    echo "== callgrind: whole stack" >&2
    whole=$(bash scripts/callgrind-inline.sh 2000 | sed -n 's/^instructions per 4 KiB read, whole stack[^:]*: \([0-9]*\).*/\1/p')
    whole=${whole:-"not measured (callgrind-inline.sh printed no count)"}
else
    echo "hot-path-targets: no valgrind >= 3.20 (set VALGRIND): the whole stack's instruction count is not measured" >&2
fi
# The share of the busy server's CPU in rdio's own code at 4 KiB QD 32
# reads (scripts/cpu-split.sh): the most any change to rdio can gain on
# that row's wall clock. Kept with the CSVs for FROM runs.
if command -v perf >/dev/null && [[ ${CPU_SPLIT:-1} != 0 ]]; then
    for transport in fabric cma; do
        echo "== cpu split: $transport 4K read QD 32 (perf)" >&2
        bash scripts/cpu-split.sh "$transport" 32 4K 2 read >"$out/cpu-split-$transport.txt" 2>&1 ||
            echo "hot-path-targets: cpu-split.sh $transport failed (see $out/cpu-split-$transport.txt)" >&2
    done
else
    echo "hot-path-targets: no perf (apt-get install -y linux-perf) or CPU_SPLIT=0; CPU split skipped" >&2
fi
fi

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)${FROM:+ (now; the table is from $FROM)}   runs per row: $repeat   bytes per row: $bytes${PIN:+   pinned to CPU $PIN}"
printf '%-58s %-10s %-8s %-4s %-7s %s\n' "target" "measured" "needed" "met" "w/file" "file/base"
# CSV: transport,op,kind,size_bytes,queue_depth,mb_per_s,iops,...,ratio(11),...,shaped_ratio(18),
# ...,file_ratio(22)
row() { # FILE OP SIZE QD COLUMN -> the rdio row's value
    awk -F, -v op="$2" -v size="$3" -v qd="$4" -v col="$5" \
        '$2 == op && $3 == "rdio" && $4 == size && $5 == qd { print $col }' "$1"
}
baseline() { # FILE NAME SIZE QD COLUMN -> that baseline row's value
    awk -F, -v op="$2" -v size="$3" -v qd="$4" -v col="$5" \
        '$2 == op && $3 == "baseline" && $4 == size && $5 == qd { print $col }' "$1"
}
check() { # LABEL VALUE NEED [W/FILE [FILE/SHAPED]] (value >= need; W/FILE:
    # the same row's ratio to the file-backed shaped loop; FILE/SHAPED: that
    # loop's own ratio to the shaped loop, the most a server doing the file
    # I/O can reach against the shaped loop with no code of its own; both
    # shown for information)
    local met
    met=$(awk -v v="$2" -v n="$3" 'BEGIN { print (v != "" && v + 0 >= n + 0) ? "yes" : "NO" }')
    printf '%-58s %-10s %-8s %-4s %-7s %s\n' "$1" "${2:--}" ">= $3" "$met" "${4:-}" "${5:-}"
}
bound() { # BASELINE_RATIO FILE_RATIO -> file-backed loop / baseline
    awk -v s="$1" -v f="$2" 'BEGIN { if (s != "" && f != "" && f + 0 > 0) printf "%.2f", s / f }'
}
for transport in fabric cma; do
    csv=$out/$transport.csv
    for placed in "" " in place"; do
        [[ -n $placed ]] && csv=$out/$transport-in-place.csv
        for op in read write; do
            for qd in 1 8 32; do
                shaped=$(row "$csv" "$op" 4096 "$qd" 18)
                file=$(row "$csv" "$op" 4096 "$qd" 22)
                check "$transport 4K $op QD $qd$placed / protocol-shaped loop" "$shaped" 0.8 "$file" \
                    "$(bound "$shaped" "$file")"
            done
        done
        # The plain-loop target's bound: the batched protocol-shaped loop
        # with the server's file I/O (fbat_rd). w/file: rdio's MB/s over
        # it; file/base: its own ratio to the plain loop, the most any
        # protocol that reads the file reaches with no code of its own.
        plain=$(row "$csv" read 4096 32 11)
        batched=$(baseline "$csv" fbat_rd 4096 32 6)
        mbps=$(row "$csv" read 4096 32 6)
        wbatch=$(awk -v r="$mbps" -v b="$batched" 'BEGIN { if (r != "" && b + 0 > 0) printf "%.2f", r / b }')
        check "$transport 4K read QD 32$placed / plain loop" "$plain" 0.8 "$wbatch" "$(bound "$plain" "$wbatch")"
    done
    for placed in "" " in place"; do
        csv=$out/$transport.csv
        [[ -n $placed ]] && csv=$out/$transport-in-place.csv
        for op in write read; do
            for qd in 1 8 32; do
                if [[ $op == write ]]; then need=0.6 base="raw send loop"; else need=0.9 base="raw write loop"; fi
                raw=$(row "$csv" "$op" 1048576 "$qd" 11)
                file=$(row "$csv" "$op" 1048576 "$qd" 22)
                check "$transport 1M $op QD $qd$placed / $base" "$raw" "$need" "$file" "$(bound "$raw" "$file")"
            done
        done
    done
done
check "loopback 4K read QD 32 inline, IOPS" "$(row "$out/loopback.csv" read 4096 32 7)" 2000000
for transport in fabric cma; do
    split=$out/cpu-split-$transport.txt
    [[ -f $split ]] || continue
    # The server's CPU, and the share of its samples in rdio's code.
    line=$(awk '/^== server:/ { cpu = $3; s = 1; next } /^== client:/ { s = 0 }
        s && NF == 2 && $2 == "rdio" && rdio == "" { rdio = $1 } END { if (cpu != "") printf "%s %% of a CPU; %s of its samples in rdio code", cpu, (rdio == "" ? "0%" : rdio) }' "$split")
    printf '%-58s %s\n' "server CPU, $transport 4K read QD 32 (perf)" "${line:-(no samples)}"
done
# A FROM run re-tables saved CSVs: the counts were not kept with them.
if [[ -z ${FROM:-} ]]; then
    for count in "whole stack instructions per 4K read (inline)|$whole|2000" \
        "core instructions per 4K read|$core|300"; do
        IFS='|' read -r what measured limit <<<"$count"
        if [[ $measured =~ ^[0-9]+$ ]]; then
            printf '%-58s %-10s %-8s %s\n' "$what" "$measured" "<= $limit" \
                "$([[ $measured -le $limit ]] && echo yes || echo NO)"
        else
            printf '%-58s %s\n' "$what" "$measured"
        fi
    done
fi
echo "(tables: $out/*.txt; CSV: $out/*.csv$([[ -z ${OUT:-}${FROM:-} ]] && echo ', removed on exit: set OUT to keep them'))"
