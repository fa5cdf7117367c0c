#!/usr/bin/env bash
# Swarm download throughput of p2p-node (issues 8, 11, 12), release build, in a controlled
# memory state, with the plain file copy measured beside it:
#   1. loopback, a SIZE_MIB file (default 1 GiB) from 1 holder and from 3 holders (the
#      holders' copies are hard links of one file, so the source is in the page cache
#      once), in up to three variants run side by side, each in its own cluster:
#        plain  BIN without keys (loopback: unauthenticated plaintext, one WARN line)
#        auth   BIN with keys from `init-cluster` (Noise XX, every link encrypted)
#        old    BIN_OLD without keys (e.g. a build of the commit before, for A/B)
#      and the baseline copy: a single-stream TCP copy of the same file with socat (1 MiB
#      buffers), file to file. Every download is compared byte for byte with the source.
#      MB/s from the downloader's own summary (connecting, hashing, writing and the final
#      fsync + rename included; the rate before the final fsync is shown too); the copy's
#      MB/s is to the page cache, without fsync.
#   2. (root only) 3 holders in network namespaces, each behind a 200 Mbit/s tbf uplink,
#      and a downloader: achieved rate as a fraction of the 600 Mbit/s aggregate; BIN with
#      keys (addresses outside loopback need them), and BIN_OLD without, side by side.
#
# Memory state. This VM's balloon returns memory freed more than ~2 s earlier to the host,
# and faulting it in again is slow (writing 1 GiB into the page cache: 0.2 s right after
# other memory was freed, 1.7 s after 20 s). So every measurement, copy included, is taken
# in a stated state:
#   cold  COLD_GAP seconds (default 20) of quiet before it;
#   warm  a 1 GiB page-cache file written and deleted just before it.
# Each (state, run) measures every variant and the copy one after the other, so a ratio
# compares figures taken in the same state minutes apart at most.
#
# Usage: bench/p2p_swarm.sh
#   BIN=path/to/p2p-node (default target/release/p2p-node)  BIN_OLD=path (optional)
#   SIZE_MIB=1024 RUNS=3 STATES="cold warm" COLD_GAP=20 NS_SIZE_MIB=256 NS=1 (0: skip)
#   LOOPBACK=1 (0: the namespace part only)
# Run it under the machine's benchmark lock: flock /work/bench.lock bench/p2p_swarm.sh
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT_DIR/target/release/p2p-node}
BIN_OLD=${BIN_OLD:-}
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
STATES=${STATES:-cold warm}
COLD_GAP=${COLD_GAP:-20}
NS_SIZE_MIB=${NS_SIZE_MIB:-256}
NS=${NS:-1}
LOOPBACK=${LOOPBACK:-1}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p p2p-node ($BIN missing)" >&2; exit 1; }
[ -z "$BIN_OLD" ] || [ -x "$BIN_OLD" ] || { echo "BIN_OLD=$BIN_OLD is not executable" >&2; exit 1; }

# Which CLI a binary has: keys (--key, keygen, init-cluster) came with issue 12.
has_keys() { "$1" --help 2>/dev/null | grep -q -- '--key'; }

declare -A VBIN=()
VARIANTS=(plain)
VBIN[plain]=$BIN
if has_keys "$BIN"; then VARIANTS+=(auth); VBIN[auth]=$BIN; else echo "# $BIN has no keys: no auth variant"; fi
if [ -n "$BIN_OLD" ]; then
    VARIANTS+=(old); VBIN[old]=$BIN_OLD
    has_keys "$BIN_OLD" && echo "# note: BIN_OLD has keys too; it runs without them"
fi

WORK=$(mktemp -d /tmp/p2p-swarm-bench.XXXXXX)
PIDS=()
NETNS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done
    for ns in "${NETNS[@]:-}"; do [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.0f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
BYTES=$((SIZE_MIB << 20))

SRC="$WORK/source.bin"
echo "# machine: $(nproc) vCPU, $(free -g | awk '/Mem:/ { print $2 }') GiB, Linux $(uname -r); load at start: $(loadavg)"
echo "# BIN=$BIN${BIN_OLD:+ BIN_OLD=$BIN_OLD}; variants: ${VARIANTS[*]} + copy; states: $STATES; RUNS=$RUNS, COLD_GAP=${COLD_GAP}s"
echo "# making a ${SIZE_MIB} MiB random file"
head -c "$BYTES" /dev/urandom > "$SRC"
sync "$SRC"   # its writeback would otherwise overlap the first runs

# prepare STATE: puts memory into the named state just before a measurement.
prepare() {
    case $1 in
        cold) sleep "$COLD_GAP" ;;
        warm)
            sleep 0.6   # the downloader's rescan forgets the previous (deleted) copy
            dd if=/dev/zero of="$WORK/warm.bin" bs=1M count=1024 status=none
            rm -f "$WORK/warm.bin"
            ;;
        *) echo "unknown state $1" >&2; exit 1 ;;
    esac
}

declare -A CLDIR=() CLFD=() CLPIDS=()

# start_cluster VARIANT N_HOLDERS PORT_BASE: nodes 1 (downloader) .. N+1 on loopback.
start_cluster() {
    local v=$1 holders=$2 base=$3
    local bin=${VBIN[$v]} n=$((holders + 1)) dir="$WORK/$v-$holders"
    mkdir -p "$dir"
    local conf=()
    if [ "$v" = auth ]; then
        "$bin" init-cluster "$dir/keys" --nodes "$n" --base-port $((base + 1)) --host 127.0.0.1 \
            > "$dir/init.out" 2>&1 || { cat "$dir/init.out" >&2; exit 1; }
        conf=(--cluster "$dir/keys/cluster.toml")
    else
        for id in $(seq 1 $n); do conf+=(--peer "$id=127.0.0.1:$((base + id))"); done
    fi
    mkfifo "$dir/in1"
    local pids=""
    for id in $(seq 1 $n); do
        mkdir -p "$dir/N$id"
        [ "$id" -gt 1 ] && ln "$SRC" "$dir/N$id/big.bin"
        local key=()
        [ "$v" = auth ] && key=(--key "$dir/keys/node$id.key")
        if [ "$id" -eq 1 ]; then
            "$bin" --id 1 "${conf[@]}" "${key[@]}" --dir "$dir/N1" --index-log "$dir/log1" --rescan-ms 200 \
                < "$dir/in1" > "$dir/out1" 2> "$dir/err1" &
        else
            "$bin" --id "$id" "${conf[@]}" "${key[@]}" --dir "$dir/N$id" --index-log "$dir/log$id" --rescan-ms 200 \
                < /dev/null > /dev/null 2> "$dir/err$id" &
        fi
        PIDS+=($!); pids="$pids $!"; disown $!
        if [ "$id" -eq 1 ]; then
            local fd
            exec {fd}> "$dir/in1"
            CLFD[$v]=$fd
        fi
    done
    CLDIR[$v]=$dir; CLPIDS[$v]=$pids
    # Wait until the leader's index lists every holder (hashing 1 GiB takes a moment).
    for _ in $(seq 1 600); do
        local listed
        listed=$(grep -c '  big.bin (' "$dir/log1" 2>/dev/null || true)
        [ "${listed:-0}" -ge "$holders" ] && return 0
        sleep 0.1
    done
    echo "$v: holders never indexed" >&2; cat "$dir"/err* >&2; exit 1
}

stop_cluster() {
    local v=$1
    local fd=${CLFD[$v]}
    exec {fd}>&-
    for pid in ${CLPIDS[$v]}; do kill "$pid" 2>/dev/null || true; done
    for pid in ${CLPIDS[$v]}; do while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done; done
}

# get_once DIR FD: one download of big.bin by node 1; prints its summary line.
get_once() {
    local dir=$1 fd=$2 before
    before=$(grep -c 'get big.bin: complete' "$dir/err1" || true)
    echo "get big.bin" >&"$fd"
    for _ in $(seq 1 2400); do
        if [ "$(grep -c 'get big.bin: complete' "$dir/err1" || true)" -gt "$before" ]; then
            grep 'get big.bin: complete' "$dir/err1" | tail -1 | sed 's/.*INFO //'
            return 0
        fi
        grep -q 'get big.bin: failed' "$dir/err1" && { grep 'failed' "$dir/err1" >&2; exit 1; }
        sleep 0.02
    done
    echo "download hung" >&2; cat "$dir/err1" >&2; exit 1
}

# measure_p2p STATE HOLDERS VARIANT RUN: one download; appends to results.txt.
measure_p2p() {
    local state=$1 holders=$2 v=$3 run=$4
    local dir=${CLDIR[$v]} line secs sync rate net
    line=$(get_once "$dir" "${CLFD[$v]}")
    cmp -s "$SRC" "$dir/N1/big.bin" || { echo "$v run $run: downloaded file differs!" >&2; exit 1; }
    rm -f "$dir/N1/big.bin"
    secs=$(sed -E 's/.* in ([0-9.]+) s .*/\1/' <<< "$line")
    sync=$(sed -E 's/.*; ([0-9.]+) s of it fsync.*/\1/' <<< "$line")
    rate=$(awk -v b="$BYTES" -v s="$secs" 'BEGIN { printf "%.0f", b / s / 1e6 }')
    net=$(awk -v b="$BYTES" -v s="$secs" -v f="$sync" 'BEGIN { printf "%.0f", b / (s - f) / 1e6 }')
    echo "$state $holders $v $rate $net" >> "$WORK/results.txt"
    printf '  %-4s %d holder(s) %-5s run %d: %5s s, %4s MB/s incl. fsync (%s s), %4s MB/s before | load %s | %s\n' \
        "$state" "$holders" "$v" "$run" "$secs" "$rate" "$sync" "$net" "$(loadavg)" "$(sed -E 's/.*received: //' <<< "$line")"
}

# measure_copy STATE HOLDERS RUN: socat single stream, file to file, to the page cache.
measure_copy() {
    local state=$1 holders=$2 run=$3 t0 t1 rate
    rm -f "$WORK/tcp.out"
    socat -u -b 1048576 TCP-LISTEN:19599,reuseaddr OPEN:"$WORK/tcp.out",creat,trunc &
    local recv=$!
    for _ in $(seq 1 100); do ss -ltn 'sport = :19599' | grep -q 19599 && break; sleep 0.01; done
    t0=$(date +%s.%N)
    socat -u -b 1048576 OPEN:"$SRC" TCP:127.0.0.1:19599
    wait "$recv"
    t1=$(date +%s.%N)
    cmp -s "$SRC" "$WORK/tcp.out" || { echo "tcp copy differs" >&2; exit 1; }
    rm -f "$WORK/tcp.out"
    rate=$(awk -v b="$BYTES" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f", b / (z - a) / 1e6 }')
    echo "$state $holders copy $rate $rate" >> "$WORK/results.txt"
    printf '  %-4s %d holder(s) copy  run %d: %4s MB/s to the page cache | load %s\n' "$state" "$holders" "$run" "$rate" "$(loadavg)"
}

: > "$WORK/results.txt"
echo
echo "## loopback, ${SIZE_MIB} MiB"
port=19500
HOLDER_COUNTS="1 3"
[ "$LOOPBACK" = 0 ] && HOLDER_COUNTS=""
for holders in $HOLDER_COUNTS; do
    for v in "${VARIANTS[@]}"; do start_cluster "$v" "$holders" "$port"; port=$((port + 10)); done
    for state in $STATES; do
        for run in $(seq 1 "$RUNS"); do
            for v in "${VARIANTS[@]}" copy; do
                prepare "$state"
                if [ "$v" = copy ]; then measure_copy "$state" "$holders" "$run"
                else measure_p2p "$state" "$holders" "$v" "$run"; fi
            done
        done
    done
    for v in "${VARIANTS[@]}"; do stop_cluster "$v"; done
done

# The table: medians per state, holders and variant, and the ratios the goals name.
pick() { awk -v s="$1" -v h="$2" -v v="$3" -v c="$4" '$1 == s && $2 == h && $3 == v { print $c }' "$WORK/results.txt" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
[ "$LOOPBACK" = 0 ] || { echo
echo "| state | holders | $(for v in "${VARIANTS[@]}"; do printf '%s MB/s (before fsync) | ' "$v"; done)copy MB/s | auth/plain | auth/copy |$( [ -n "$BIN_OLD" ] && printf ' plain/old | auth/old |')"
echo "| --- | ---: | $(for _ in "${VARIANTS[@]}"; do printf -- '---: | '; done)---: | ---: | ---: |$( [ -n "$BIN_OLD" ] && printf ' ---: | ---: |')"
for state in $STATES; do
    for holders in 1 3; do
        row="| $state | $holders |"
        for v in "${VARIANTS[@]}"; do row="$row $(pick "$state" $holders "$v" 4) ($(pick "$state" $holders "$v" 5)) |"; done
        copy=$(pick "$state" $holders copy 4)
        plain=$(pick "$state" $holders plain 4)
        auth=$(pick "$state" $holders auth 4)
        row="$row $copy | $(ratio "$auth" "$plain") | $(ratio "$auth" "$copy") |"
        if [ -n "$BIN_OLD" ]; then
            old=$(pick "$state" $holders old 4)
            row="$row $(ratio "$plain" "$old") | $(ratio "$auth" "$old") |"
        fi
        echo "$row"
    done
done
echo "(medians of $RUNS; p2p incl. the final fsync, before it in brackets; copy to the page cache)"; }

if [ "$NS" = 0 ] || [ "$(id -u)" -ne 0 ] || ! command -v tc > /dev/null; then
    echo "namespace swarm: skipped (NS=0, or needs root and tc)"
    echo "# load at end: $(loadavg)"
    exit 0
fi

echo
echo "## namespaces: 3 holders behind 200 Mbit/s tbf uplinks, ${NS_SIZE_MIB} MiB, $RUNS runs, warm state"
TAG="swb$$"
ip netns add "$TAG-hub"; NETNS+=("$TAG-hub")
ip -n "$TAG-hub" link add br0 type bridge forward_delay 0
ip -n "$TAG-hub" link set br0 up
NSD="$WORK/ns"; mkdir -p "$NSD"
head -c $((NS_SIZE_MIB << 20)) "$SRC" > "$NSD/ns.bin"
for id in 1 2 3 4; do
    ns="$TAG-$id"
    ip netns add "$ns"; NETNS+=("$ns")
    ip -n "$TAG-hub" link add "hv$id" type veth peer name eth0 netns "$ns"
    ip -n "$TAG-hub" link set "hv$id" master br0
    ip -n "$TAG-hub" link set "hv$id" up
    ip -n "$ns" addr add "10.78.0.$id/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    [ "$id" -gt 1 ] && ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate 200mbit burst 64kb latency 50ms
done
# Variants: BIN with keys (addresses outside loopback need them), BIN_OLD without.
NS_VARIANTS=()
has_keys "$BIN" && NS_VARIANTS+=(auth)
[ -n "$BIN_OLD" ] && NS_VARIANTS+=(old)
nsport=9000
for v in "${NS_VARIANTS[@]}"; do
    dir="$NSD/$v"; mkdir -p "$dir"
    bin=${VBIN[$v]}
    peers=()
    for id in 1 2 3 4; do
        if [ "$v" = auth ]; then
            peers+=(--peer "$id=10.78.0.$id:$nsport=$("$bin" keygen "$dir/node$id.key")")
        else
            peers+=(--peer "$id=10.78.0.$id:$nsport")
        fi
    done
    mkfifo "$dir/in1"
    for id in 1 2 3 4; do
        mkdir -p "$dir/N$id"
        key=()
        [ "$v" = auth ] && key=(--key "$dir/node$id.key")
        if [ "$id" -gt 1 ]; then
            ln "$NSD/ns.bin" "$dir/N$id/big.bin"
            ip netns exec "$TAG-$id" "$bin" --id "$id" "${peers[@]}" "${key[@]}" --dir "$dir/N$id" \
                --index-log "$dir/log$id" --rescan-ms 200 < /dev/null > /dev/null 2> "$dir/err$id" &
            PIDS+=($!); disown $!
        fi
    done
    key=()
    [ "$v" = auth ] && key=(--key "$dir/node1.key")
    ip netns exec "$TAG-1" "$bin" --id 1 "${peers[@]}" "${key[@]}" --dir "$dir/N1" --index-log "$dir/log1" \
        --rescan-ms 200 < "$dir/in1" > "$dir/out1" 2> "$dir/err1" &
    PIDS+=($!); disown $!
    exec {fd}> "$dir/in1"
    CLFD[ns-$v]=$fd; CLDIR[ns-$v]=$dir
    for _ in $(seq 1 600); do
        listed=$(grep -c '  big.bin (' "$dir/log1" 2>/dev/null || true)
        [ "${listed:-0}" -ge 3 ] && break
        sleep 0.1
    done
    nsport=$((nsport + 100))
done
: > "$WORK/ns.txt"
for run in $(seq 1 "$RUNS"); do
    for v in "${NS_VARIANTS[@]}"; do
        dir=${CLDIR[ns-$v]}
        prepare warm
        line=$(get_once "$dir" "${CLFD[ns-$v]}")
        cmp -s "$NSD/ns.bin" "$dir/N1/big.bin" || { echo "namespace download differs" >&2; exit 1; }
        rm -f "$dir/N1/big.bin"
        secs=$(sed -E 's/.* in ([0-9.]+) s .*/\1/' <<< "$line")
        sync=$(sed -E 's/.*; ([0-9.]+) s of it fsync.*/\1/' <<< "$line")
        frac=$(awk -v b=$((NS_SIZE_MIB << 20)) -v s="$secs" 'BEGIN { printf "%.1f", 100 * b * 8 / s / 600e6 }')
        net=$(awk -v b=$((NS_SIZE_MIB << 20)) -v s="$secs" -v f="$sync" 'BEGIN { printf "%.1f", 100 * b * 8 / (s - f) / 600e6 }')
        echo "$v $frac $net" >> "$WORK/ns.txt"
        echo "  $v run $run: ${secs} s (fsync ${sync} s): ${frac} % of 600 Mbit/s incl. fsync, ${net} % before it | $(sed -E 's/.*received: //' <<< "$line")"
    done
done
for v in "${NS_VARIANTS[@]}"; do
    echo "  $v median: $(awk -v v="$v" '$1 == v { print $2 }' "$WORK/ns.txt" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }') % of the 600 Mbit/s aggregate incl. fsync, $(awk -v v="$v" '$1 == v { print $3 }' "$WORK/ns.txt" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }') % before it"
done
echo "# load at end: $(loadavg)"
