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
#   * `rdio serve` of the same dir (--transport fabric, provider tcp, unless
#     RDIO_TRANSPORT/RDIO_PROVIDER say otherwise);
# times smbclient get/put against rdio get/put of the same file, checks every
# result by SHA-256, and prints a table with the rdio/smbclient ratios.
# Both servers are stopped by their PIDs; the temp dirs are removed.
set -euo pipefail

size=${1:-${RDIO_SAMBA_SIZE:-1G}}
port=${RDIO_SAMBA_PORT:-4455}
transport=${RDIO_TRANSPORT:-fabric}
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
rdio="$repo/target/release/rdio"

work=$(mktemp -d /dev/shm/rdio-vs-samba.XXXXXX)
conf=$(mktemp -d /tmp/rdio-vs-samba-conf.XXXXXX)
share="$work/share"
out="$work/out"
mkdir -p "$share" "$out" "$conf"/{private,lock,state,cache,pid,log}
smbd_pid=
rdio_pid=
cleanup() {
    local status=$?
    # By PID only: these are the two servers this script started.
    if [[ -n $smbd_pid ]] && kill -0 "$smbd_pid" 2>/dev/null; then
        kill -TERM "$smbd_pid" 2>/dev/null || true
        wait "$smbd_pid" 2>/dev/null || true
    fi
    if [[ -n $rdio_pid ]] && kill -0 "$rdio_pid" 2>/dev/null; then
        kill -TERM "$rdio_pid" 2>/dev/null || true
        wait "$rdio_pid" 2>/dev/null || true
    fi
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
"$rdio" --transport "$transport" serve --root "$share" --listen 127.0.0.1:0 \
    --provider "$provider" >"$conf/rdio-serve.out" 2>"$conf/rdio-serve.err" &
rdio_pid=$!

# Wait for both to listen.
for _ in $(seq 100); do
    if grep -q "listening on" "$conf/rdio-serve.out" 2>/dev/null &&
        smbclient -s "$conf/client.conf" -N -p "$port" -L 127.0.0.1 >/dev/null 2>&1; then
        break
    fi
    kill -0 "$smbd_pid" 2>/dev/null || { cat "$conf/log/smbd.out" >&2; say "smbd exited"; exit 1; }
    kill -0 "$rdio_pid" 2>/dev/null || { cat "$conf/rdio-serve.err" >&2; say "rdio serve exited"; exit 1; }
    sleep 0.1
done
rdio_addr=$(sed -n 's/^rdio serve: listening on \([0-9.]*:[0-9]*\) .*/\1/p' "$conf/rdio-serve.out")
[[ -n $rdio_addr ]] || { say "rdio serve did not start"; exit 1; }
say "smbd on 127.0.0.1:$port (pid $smbd_pid), $(head -1 "$conf/rdio-serve.out" | sed 's/^rdio serve: //') (pid $rdio_pid)"

# Output goes to a log (smbclient reports progress on stderr); shown on failure.
smb() {
    smbclient -s "$conf/client.conf" -N -p "$port" //127.0.0.1/bench -c "$1" \
        >"$conf/smbclient.log" 2>&1 || { cat "$conf/smbclient.log" >&2; return 1; }
}
rdio_cmd() {
    "$rdio" "$@" "${rdio_flags[@]}" >"$conf/rdio.log" 2>&1 || { cat "$conf/rdio.log" >&2; return 1; }
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
rdio_flags=(--transport "$transport" --provider "$provider" --io-size "$io_size" --queue-depth "$queue_depth")
# Wall-clock time of whole commands (process start, connect, transfer, exit)
# for both clients.

# One untimed get through each, so both servers and the page cache are warm.
smb "get data.bin /dev/null"
rdio_cmd get "$rdio_addr:data.bin" "$out/warm.bin"
rm -f "$out/warm.bin"

# Each client's own report of the transfer (without process start and connect).
own=()
smb_get=$(timed smb "get data.bin $out/smb-get.bin")
own+=("smbclient get: $(grep -o '([0-9.]* KiloBytes/sec)' "$conf/smbclient.log" | head -1)")
check "$out/smb-get.bin"
rm -f "$out/smb-get.bin"
rdio_get=$(timed rdio_cmd get "$rdio_addr:data.bin" "$out/rdio-get.bin")
own+=("rdio get: $(tail -1 "$conf/rdio.log")")
check "$out/rdio-get.bin"
rm -f "$out/rdio-get.bin"
smb_put=$(timed smb "put $work/upload.bin smb-put.bin")
own+=("smbclient put: $(grep -o '([0-9.]* kb/s)' "$conf/smbclient.log" | head -1)")
check "$share/smb-put.bin"
rm -f "$share/smb-put.bin"
rdio_put=$(timed rdio_cmd put "$work/upload.bin" "$rdio_addr:rdio-put.bin")
own+=("rdio put: $(tail -1 "$conf/rdio.log")")
check "$share/rdio-put.bin"
rm -f "$share/rdio-put.bin"

mbps() { awk -v n="$bytes" -v t="$1" 'BEGIN { printf "%.6f", n / t / 1e6 }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a / b }'; }
printf '\n%s of %s bytes (%s), 127.0.0.1, tmpfs; rdio: --transport %s --provider %s --io-size %s --queue-depth %s; smbclient: SMB3\n' \
    "$size" "$bytes" "$(nproc) cores" "$transport" "$provider" "$io_size" "$queue_depth"
printf '%-6s %12s %12s %12s %12s %8s\n' op "smbclient s" "smb MB/s" "rdio s" "rdio MB/s" "ratio"
for op in get put; do
    s_var="smb_$op" r_var="rdio_$op"
    s=${!s_var} r=${!r_var}
    printf '%-6s %12.3f %12.1f %12.3f %12.1f %8.2f\n' "$op" "$s" "$(mbps "$s")" "$r" "$(mbps "$r")" \
        "$(div "$s" "$r")"
done
echo "(wall-clock of each whole command; ratio = smbclient s / rdio s = rdio MB/s / smbclient MB/s;"
echo " all results SHA-256 verified)"
echo "as each client reports it:"
printf '  %s\n' "${own[@]}"
