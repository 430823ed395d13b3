#!/usr/bin/env bash
# Compare `rdio get`/`rdio put` with smbclient get/put of the same file, both
# servers serving the same tmpfs directory on 127.0.0.1.
#
#   bash scripts/bench-vs-samba.sh [SIZE]        # SIZE for head -c: 1G (default), 256M, ...
#   RDIO_SAMBA_SIZE=256M bash scripts/bench-vs-samba.sh
#
# Installs samba and smbclient if missing (apt, needs root or sudo), builds
# `rdio` in release mode, and then, all on 127.0.0.1 only:
#   * smbd in the foreground with a private smb.conf (temp dir), SMB port
#     $RDIO_SAMBA_PORT (default 4455), one guest share of a /dev/shm dir;
#   * one `rdio serve` of the same dir per transport in RDIO_TRANSPORTS
#     (default "fabric cma": libfabric with provider RDIO_PROVIDER, default
#     tcp, and cross-memory attach);
# times smbclient get/put against rdio get/put of the same file over each
# transport, checks every result by SHA-256, and prints a table with the
# rdio/smbclient ratios, of the whole commands' wall clock and of the
# transfer time each client reports itself (without process start-up).
# All servers are stopped by their PIDs; the temp dirs are removed.
set -euo pipefail

size=${1:-${RDIO_SAMBA_SIZE:-1G}}
port=${RDIO_SAMBA_PORT:-4455}
read -r -a transports <<<"${RDIO_TRANSPORTS:-${RDIO_TRANSPORT:-fabric cma}}"
provider=${RDIO_PROVIDER:-tcp}
io_size=${RDIO_IO_SIZE:-1MiB}
queue_depth=${RDIO_QUEUE_DEPTH:-8}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { echo "bench-vs-samba: $*" >&2; }

missing=()
command -v smbd >/dev/null 2>&1 || [[ -x /usr/sbin/smbd ]] || missing+=(samba)
command -v smbclient >/dev/null 2>&1 || missing+=(smbclient)
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    say "installing ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
smbd=$(command -v smbd || echo /usr/sbin/smbd)

say "building rdio (release)"
(cd "$repo" && cargo build --release -q -p rdio-cli)
rdio="${CARGO_TARGET_DIR:-$repo/target}/release/rdio"

work=$(mktemp -d /dev/shm/rdio-vs-samba.XXXXXX)
conf=$(mktemp -d /tmp/rdio-vs-samba-conf.XXXXXX)
share="$work/share"
out="$work/out"
mkdir -p "$share" "$out" "$conf"/{private,lock,state,cache,pid,log}
smbd_pid=
rdio_pids=()
cleanup() {
    local status=$?
    # By PID only: these are the two servers this script started.
    if [[ -n $smbd_pid ]] && kill -0 "$smbd_pid" 2>/dev/null; then
        kill -TERM "$smbd_pid" 2>/dev/null || true
        wait "$smbd_pid" 2>/dev/null || true
    fi
    local pid
    for pid in "${rdio_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    # smbd may still have started RPC helpers (samba-dcerpcd), which outlive
    # it: stop those of this run, found by its private config path, by PID.
    local helpers
    helpers=$(pgrep -f -- "--configfile=$conf/smb.conf" || true)
    if [[ -n $helpers ]]; then
        # shellcheck disable=SC2086
        kill -TERM $helpers 2>/dev/null || true
    fi
    rm -rf "$work" "$conf"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$conf/smb.conf" <<EOF
[global]
    server role = standalone server
    interfaces = 127.0.0.1
    bind interfaces only = yes
    smb ports = $port
    disable netbios = yes
    server min protocol = SMB3
    private dir = $conf/private
    lock directory = $conf/lock
    state directory = $conf/state
    cache directory = $conf/cache
    pid directory = $conf/pid
    ncalrpc dir = $conf/ncalrpc
    log file = $conf/log/smbd.log
    log level = 0
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes
    map to guest = Bad User
    usershare max shares = 0
    kernel oplocks = no
    # No RPC helper daemons (samba-dcerpcd): file transfers need none, and
    # they would outlive smbd.
    rpc start on demand helpers = no

[bench]
    path = $share
    read only = no
    guest ok = yes
    guest only = yes
    force user = $(id -un)
EOF
cat >"$conf/client.conf" <<EOF
[global]
    client min protocol = SMB3
    client max protocol = SMB3
EOF

say "creating a $size file in $share"
head -c "$size" /dev/urandom >"$share/data.bin"
bytes=$(stat -c %s "$share/data.bin")
sum=$(sha256sum "$share/data.bin" | cut -d' ' -f1)
cp "$share/data.bin" "$work/upload.bin"

"$smbd" --foreground --configfile="$conf/smb.conf" --debug-stdout \
    >"$conf/log/smbd.out" 2>&1 &
smbd_pid=$!
# One `rdio serve` per transport, each on its own port. Their identity,
# clients file and this user's credential (created on first start, TLS on
# the side channel as by default) live in $conf, not in the user's home.
export XDG_STATE_HOME="$conf/state" XDG_CONFIG_HOME="$conf/config"
declare -A rdio_addr
for t in "${transports[@]}"; do
    "$rdio" --transport "$t" serve --root "$share" --listen 127.0.0.1:0 \
        --provider "$provider" >"$conf/rdio-serve-$t.out" 2>"$conf/rdio-serve-$t.err" &
    rdio_pids+=($!)
done

# Wait for all of them to listen.
listening() {
    local t
    for t in "${transports[@]}"; do
        grep -q "listening on" "$conf/rdio-serve-$t.out" 2>/dev/null || return 1
    done
}
for _ in $(seq 100); do
    if listening && smbclient -s "$conf/client.conf" -N -p "$port" -L 127.0.0.1 >/dev/null 2>&1; then
        break
    fi
    kill -0 "$smbd_pid" 2>/dev/null || { cat "$conf/log/smbd.out" >&2; say "smbd exited"; exit 1; }
    for i in "${!transports[@]}"; do
        kill -0 "${rdio_pids[$i]}" 2>/dev/null || {
            cat "$conf/rdio-serve-${transports[$i]}.err" >&2
            say "rdio serve --transport ${transports[$i]} exited"
            exit 1
        }
    done
    sleep 0.1
done
say "smbd on 127.0.0.1:$port (pid $smbd_pid)"
for i in "${!transports[@]}"; do
    t=${transports[$i]}
    rdio_addr[$t]=$(sed -n 's/^rdio serve: listening on \([0-9.]*:[0-9]*\) .*/\1/p' "$conf/rdio-serve-$t.out")
    [[ -n ${rdio_addr[$t]} ]] || { say "rdio serve --transport $t did not start"; exit 1; }
    say "$(head -1 "$conf/rdio-serve-$t.out" | sed 's/^rdio serve: //') (pid ${rdio_pids[$i]})"
done

# Output goes to a log (smbclient reports progress on stderr); shown on failure.
smb() {
    smbclient -s "$conf/client.conf" -N -p "$port" //127.0.0.1/bench -c "$1" \
        >"$conf/smbclient.log" 2>&1 || { cat "$conf/smbclient.log" >&2; return 1; }
}
# rdio_cmd TRANSPORT ARGS...
rdio_cmd() {
    local t=$1
    shift
    "$rdio" "$@" --transport "$t" --provider "$provider" --io-size "$io_size" \
        --queue-depth "$queue_depth" >"$conf/rdio.log" 2>&1 || { cat "$conf/rdio.log" >&2; return 1; }
}
now() { date +%s.%N; }
# Seconds taken by "$@".
timed() {
    local start end
    start=$(now)
    "$@"
    end=$(now)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.6f", b - a }'

}
check() {
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    [[ $got == "$sum" ]] || { say "SHA-256 mismatch: $1"; exit 1; }
}
# The transfer seconds a client reports itself: smbclient's KiloBytes/sec
# (KiB/s) or kb/s line, rdio's "… in 1.23 s (…)".
smb_own() {
    local rate
    rate=$(grep -o '([0-9.]* \(KiloBytes/sec\|kb/s\))' "$conf/smbclient.log" | head -1 | tr -d '(' | cut -d' ' -f1)
    awk -v n="$bytes" -v r="$rate" 'BEGIN { printf "%.6f", n / (r * 1024) }'
}
rdio_own() {
    tail -1 "$conf/rdio.log" | sed -n 's/.* in \([0-9.]*\) s (.*/\1/p'
}
# Wall-clock time of whole commands (process start, connect, transfer, exit)
# for both clients, and the transfer time each reports.

# One untimed get through each, so the servers and the page cache are warm.
smb "get data.bin /dev/null"
for t in "${transports[@]}"; do
    rdio_cmd "$t" get "${rdio_addr[$t]}:data.bin" "$out/warm.bin"
    rm -f "$out/warm.bin"
done

declare -A wall own
reports=()
smb_run() {
    local op=$1 cmd=$2 result=$3
    wall[smb_$op]=$(timed smb "$cmd")
    own[smb_$op]=$(smb_own)
    reports+=("smbclient $op: $(grep -o '([0-9.]* \(KiloBytes/sec\|kb/s\))' "$conf/smbclient.log" | head -1)")
    check "$result"
    rm -f "$result"
}
rdio_run() {
    local t=$1 op=$2 result=$3
    shift 3
    wall[${t}_$op]=$(timed rdio_cmd "$t" "$@")
    own[${t}_$op]=$(rdio_own)
    reports+=("rdio $op --transport $t: $(tail -1 "$conf/rdio.log")")
    check "$result"
    rm -f "$result"
}
smb_run get "get data.bin $out/smb-get.bin" "$out/smb-get.bin"
for t in "${transports[@]}"; do
    rdio_run "$t" get "$out/rdio-get.bin" get "${rdio_addr[$t]}:data.bin" "$out/rdio-get.bin"
done
smb_run put "put $work/upload.bin smb-put.bin" "$share/smb-put.bin"
for t in "${transports[@]}"; do
    rdio_run "$t" put "$share/rdio-put.bin" put "$work/upload.bin" "${rdio_addr[$t]}:rdio-put.bin"
done

mbps() { awk -v n="$bytes" -v t="$1" 'BEGIN { printf "%.6f", n / t / 1e6 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a / b }'; }
printf '\n%s of %s bytes (%s), 127.0.0.1, tmpfs; rdio: --provider %s (fabric) --io-size %s --queue-depth %s; smbclient: SMB3\n' \
    "$size" "$bytes" "$(nproc) cores" "$provider" "$io_size" "$queue_depth"
printf '%-4s %-9s %11s %9s %9s %9s %7s %11s %10s %9s\n' op transport "smbclient s" "smb MB/s" "rdio s" "rdio MB/s" ratio \
    "smb own s" "rdio own s" "own ratio"
for op in get put; do
    for t in "${transports[@]}"; do
        s=${wall[smb_$op]} r=${wall[${t}_$op]} so=${own[smb_$op]} ro=${own[${t}_$op]}
        printf '%-4s %-9s %11.3f %9.1f %9.3f %9.1f %7.2f %11.3f %10.3f %9.2f\n' "$op" "$t" "$s" "$(mbps "$s")" \
            "$r" "$(mbps "$r")" "$(div "$s" "$r")" "$so" "$ro" "$(div "$so" "$ro")"
    done
done
echo "(rdio s / smbclient s: wall-clock of each whole command; ratio = smbclient s / rdio s = rdio MB/s / smbclient MB/s;"
echo " own s: the transfer time each client reports itself, without process start-up and connect; own ratio likewise;"
echo " all results SHA-256 verified)"
echo "as each client reports it:"
printf '  %s\n' "${reports[@]}"
