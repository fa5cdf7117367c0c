#!/usr/bin/env bash
# Swarm download throughput and memory of p2p-node (issue 8), release build:
#   1. loopback, a SIZE_MIB file (default 1 GiB) from 1 holder and from 3 holders (the
#      holders' copies are hard links of one file, so the source is in the page cache
#      once); RUNS downloads each; every result compared byte for byte with the source;
#      MB/s from the downloader's own summary (which includes connecting, hashing, writing
#      and the final fsync + rename; the fsync share is printed separately); peak resident
#      memory (VmHWM) of the downloader and of every holder;
#   2. baseline in the same run: a plain single-stream TCP copy of the same file with socat
#      (1 MiB buffers), file to file, with and without a final fsync;
#   3. (root only) 3 holders in network namespaces, each behind a 200 Mbit/s tbf uplink,
#      and a downloader: achieved rate as a fraction of the 600 Mbit/s aggregate.
#
# Usage: bench/p2p_swarm.sh   (BIN=path/to/p2p-node SIZE_MIB=1024 RUNS=3 NS_SIZE_MIB=256)
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT_DIR/target/release/p2p-node}
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
NS_SIZE_MIB=${NS_SIZE_MIB:-256}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p p2p-node ($BIN missing)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/p2p-swarm-bench.XXXXXX)
PIDS=()
NETNS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done
    for ns in "${NETNS[@]:-}"; do [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true; done
    exec 3>&- 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

hwm_kib() { awk '/VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo "?"; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

SRC="$WORK/source.bin"
echo "# machine: $(nproc) vCPU, $(free -g | awk '/Mem:/ { print $2 }') GiB; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# making a ${SIZE_MIB} MiB random file"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$SRC"
sync "$SRC"   # its writeback would otherwise overlap the first runs (measured: 4.9 s instead of 1.3 s)

# start_cluster N_HOLDERS PORT_BASE [WRAP...]: nodes 1 (downloader) .. N+1 on loopback.
start_cluster() {
    local holders=$1 base=$2
    local n=$((holders + 1))
    CL="$WORK/c$holders"
    rm -rf "$CL"; mkdir -p "$CL"
    local peers=()
    for id in $(seq 1 $n); do peers+=(--peer "$id=127.0.0.1:$((base + id))"); done
    mkfifo "$CL/in1"
    for id in $(seq 1 $n); do
        mkdir -p "$CL/N$id"
        [ "$id" -gt 1 ] && ln "$SRC" "$CL/N$id/big.bin"
        if [ "$id" -eq 1 ]; then
            "$BIN" --id 1 "${peers[@]}" --dir "$CL/N1" --index-log "$CL/log1" --rescan-ms 200 \
                < "$CL/in1" > "$CL/out1" 2> "$CL/err1" &
            PIDS+=($!); NODE1=$!
            exec 3> "$CL/in1"
        else
            "$BIN" --id "$id" "${peers[@]}" --dir "$CL/N$id" --index-log "$CL/log$id" --rescan-ms 200 \
                < /dev/null > /dev/null 2> "$CL/err$id" &
            PIDS+=($!); eval "NODE$id=$!"
        fi
    done
    # Wait until the leader's index lists every holder (hashing 1 GiB takes a moment).
    for _ in $(seq 1 600); do
        local listed
        listed=$(grep -c '  big.bin (' "$CL/log1" 2>/dev/null || true)
        [ "${listed:-0}" -ge "$holders" ] && return 0
        sleep 0.1
    done
    echo "holders never indexed" >&2; cat "$CL"/err* >&2; exit 1
}

# get_once: one download of big.bin by node 1; prints its summary line.
get_once() {
    local before
    before=$(grep -c 'get big.bin: complete' "$CL/err1" || true)
    echo "get big.bin" >&3
    for _ in $(seq 1 1200); do
        if [ "$(grep -c 'get big.bin: complete' "$CL/err1" || true)" -gt "$before" ]; then
            grep 'get big.bin: complete' "$CL/err1" | tail -1 | sed 's/.*INFO //'
            return 0
        fi
        grep -q 'get big.bin: failed' "$CL/err1" && { grep 'failed' "$CL/err1" >&2; exit 1; }
        sleep 0.05
    done
    echo "download hung" >&2; cat "$CL/err1" >&2; exit 1
}

stop_cluster() {
    exec 3>&-
    for id in $(seq 1 "$1"); do
        local pid_var="NODE$id"
        kill "${!pid_var}" 2>/dev/null || true
        wait "${!pid_var}" 2>/dev/null || true
    done
}

swarm_case() {
    local holders=$1 base=$2
    start_cluster "$holders" "$base"
    local rates=() syncs=()
    for run in $(seq 1 "$RUNS"); do
        local line
        line=$(get_once)
        cmp -s "$SRC" "$CL/N1/big.bin" || { echo "run $run: downloaded file differs!" >&2; exit 1; }
        local rate sync secs
        secs=$(sed -E 's/.* in ([0-9.]+) s .*/\1/' <<< "$line")
        sync=$(sed -E 's/.*; ([0-9.]+) s of it fsync.*/\1/' <<< "$line")
        rate=$(awk -v b=$((SIZE_MIB << 20)) -v s="$secs" 'BEGIN { printf "%.0f", b / s / 1e6 }')
        local net
        net=$(awk -v b=$((SIZE_MIB << 20)) -v s="$secs" -v f="$sync" 'BEGIN { printf "%.0f", b / (s - f) / 1e6 }')
        echo "  run $run: ${secs} s, ${rate} MB/s incl. fsync (${sync} s), ${net} MB/s before fsync | $(sed -E 's/.*received: //' <<< "$line")"
        rates+=("$rate"); syncs+=("$net")
        rm -f "$CL/N1/big.bin"
        sleep 0.6   # the rescan forgets the deleted copy
    done
    local hw="downloader $(( $(hwm_kib "$NODE1") / 1024 )) MiB"
    for id in $(seq 2 $((holders + 1))); do
        local pid_var="NODE$id"
        hw="$hw, holder $id $(( $(hwm_kib "${!pid_var}") / 1024 )) MiB"
    done
    echo "  median: $(printf '%s\n' "${rates[@]}" | median) MB/s incl. fsync, $(printf '%s\n' "${syncs[@]}" | median) MB/s before fsync; peak RSS: $hw"
    stop_cluster $((holders + 1))
}

echo
echo "## loopback, ${SIZE_MIB} MiB, $RUNS runs each"
echo "1 holder:"
swarm_case 1 19500
echo "3 holders:"
swarm_case 3 19510

echo "baseline: single-stream TCP copy (socat -b 1048576), file to file:"
TCP_RATES=()
for run in $(seq 1 "$RUNS"); do
    rm -f "$WORK/tcp.out"
    /usr/bin/time -f "%M" -o "$WORK/recv.rss" socat -u -b 1048576 TCP-LISTEN:19599,reuseaddr OPEN:"$WORK/tcp.out",creat,trunc &
    RECV=$!
    sleep 0.3
    t0=$(date +%s.%N)
    socat -u -b 1048576 OPEN:"$SRC" TCP:127.0.0.1:19599
    wait "$RECV"
    t1=$(date +%s.%N)
    sync "$WORK/tcp.out"
    t2=$(date +%s.%N)
    cmp -s "$SRC" "$WORK/tcp.out" || { echo "tcp copy differs" >&2; exit 1; }
    r=$(awk -v b=$((SIZE_MIB << 20)) -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f", b / (z - a) / 1e6 }')
    rs=$(awk -v b=$((SIZE_MIB << 20)) -v a="$t0" -v z="$t2" 'BEGIN { printf "%.0f", b / (z - a) / 1e6 }')
    echo "  run $run: ${r} MB/s to the page cache, ${rs} MB/s incl. fsync; receiver peak RSS $(( $(cat "$WORK/recv.rss") / 1024 )) MiB"
    TCP_RATES+=("$r")
done
echo "  median: $(printf '%s\n' "${TCP_RATES[@]}" | median) MB/s (no fsync)"
rm -f "$WORK/tcp.out"

if [ "$(id -u)" -ne 0 ] || ! command -v tc > /dev/null; then
    echo "namespace swarm: skipped (needs root and tc)"
    exit 0
fi

echo
echo "## namespaces: 3 holders behind 200 Mbit/s tbf uplinks, ${NS_SIZE_MIB} MiB, $RUNS runs"
TAG="swb$$"
ip netns add "$TAG-hub"; NETNS+=("$TAG-hub")
ip -n "$TAG-hub" link add br0 type bridge forward_delay 0
ip -n "$TAG-hub" link set br0 up
NSD="$WORK/ns"; mkdir -p "$NSD"
# Addresses outside loopback need keys: one per node, listed with every --peer.
peers=()
for id in 1 2 3 4; do peers+=(--peer "$id=10.78.0.$id:9000=$("$BIN" keygen "$NSD/node$id.key")"); done
head -c $((NS_SIZE_MIB << 20)) "$SRC" > "$NSD/ns.bin"
mkfifo "$NSD/in1"
for id in 1 2 3 4; do
    ns="$TAG-$id"
    ip netns add "$ns"; NETNS+=("$ns")
    ip -n "$TAG-hub" link add "hv$id" type veth peer name eth0 netns "$ns"
    ip -n "$TAG-hub" link set "hv$id" master br0
    ip -n "$TAG-hub" link set "hv$id" up
    ip -n "$ns" addr add "10.78.0.$id/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    mkdir -p "$NSD/N$id"
    if [ "$id" -gt 1 ]; then
        ln "$NSD/ns.bin" "$NSD/N$id/big.bin"
        ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate 200mbit burst 64kb latency 50ms
        ip netns exec "$ns" "$BIN" --id "$id" "${peers[@]}" --key "$NSD/node$id.key" --dir "$NSD/N$id" --index-log "$NSD/log$id" \
            --rescan-ms 200 < /dev/null > /dev/null 2> "$NSD/err$id" &
        PIDS+=($!); disown
    fi
done
ip netns exec "$TAG-1" "$BIN" --id 1 "${peers[@]}" --key "$NSD/node1.key" --dir "$NSD/N1" --index-log "$NSD/log1" --rescan-ms 200 \
    < "$NSD/in1" > "$NSD/out1" 2> "$NSD/err1" &
PIDS+=($!); disown
exec 3> "$NSD/in1"
CL="$NSD"
for _ in $(seq 1 600); do
    listed=$(grep -c '  big.bin (' "$NSD/log1" 2>/dev/null || true)
    [ "${listed:-0}" -ge 3 ] && break
    sleep 0.1
done
FRACS=(); NETS=()
for run in $(seq 1 "$RUNS"); do
    line=$(get_once)
    cmp -s "$NSD/ns.bin" "$NSD/N1/big.bin" || { echo "namespace download differs" >&2; exit 1; }
    secs=$(sed -E 's/.* in ([0-9.]+) s .*/\1/' <<< "$line")
    sync=$(sed -E 's/.*; ([0-9.]+) s of it fsync.*/\1/' <<< "$line")
    frac=$(awk -v b=$((NS_SIZE_MIB << 20)) -v s="$secs" 'BEGIN { printf "%.1f", 100 * b * 8 / s / 600e6 }')
    net=$(awk -v b=$((NS_SIZE_MIB << 20)) -v s="$secs" -v f="$sync" 'BEGIN { printf "%.1f", 100 * b * 8 / (s - f) / 600e6 }')
    echo "  run $run: ${secs} s (fsync ${sync} s): ${frac} % of 600 Mbit/s incl. fsync, ${net} % before it | $(sed -E 's/.*received: //' <<< "$line")"
    FRACS+=("$frac"); NETS+=("$net")
    rm -f "$NSD/N1/big.bin"
    sleep 0.6
done
echo "  median: $(printf '%s\n' "${FRACS[@]}" | median) % of the 600 Mbit/s aggregate incl. fsync, $(printf '%s\n' "${NETS[@]}" | median) % before it"
