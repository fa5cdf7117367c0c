#!/usr/bin/env bash
# Where a swarm download's CPU time goes: one cluster (1 downloader, HOLDERS holders) on
# loopback, plaintext or with keys, a SIZE_MIB file fetched RUNS times in the warm memory
# state (see p2p_swarm.sh) while `perf record` samples every process of the cluster.
# Prints the download times, CPU seconds per GiB of each process (from /proc; robust when
# the machine is busy, unlike wall-clock rates), and each process's flat profile with every
# symbol's share turned into CPU seconds per GiB.
#
# Usage: MODE=auth|plain HOLDERS=1 SIZE_MIB=1024 RUNS=3 bench/p2p_swarm_profile.sh
#        (BIN=path/to/p2p-node; needs perf; under the lock: flock /work/bench.lock ...)
set -euo pipefail

ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT_DIR/target/release/p2p-node}
MODE=${MODE:-auth}
HOLDERS=${HOLDERS:-1}
SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
TOP=${TOP:-25}
command -v perf > /dev/null || { echo "needs perf" >&2; exit 1; }

WORK=$(mktemp -d /tmp/p2p-profile.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "# $(nproc) vCPU, Linux $(uname -r); MODE=$MODE HOLDERS=$HOLDERS SIZE_MIB=$SIZE_MIB RUNS=$RUNS; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$WORK/source.bin"
sync "$WORK/source.bin"
n=$((HOLDERS + 1))
base=19700
conf=()
if [ "$MODE" = auth ]; then
    "$BIN" init-cluster "$WORK/keys" --nodes "$n" --base-port $((base + 1)) > /dev/null 2>&1
    conf=(--cluster "$WORK/keys/cluster.toml")
else
    for id in $(seq 1 $n); do conf+=(--peer "$id=127.0.0.1:$((base + id))"); done
fi
mkfifo "$WORK/in1"
for id in $(seq 1 $n); do
    mkdir -p "$WORK/N$id"
    [ "$id" -gt 1 ] && ln "$WORK/source.bin" "$WORK/N$id/big.bin"
    key=()
    [ "$MODE" = auth ] && key=(--key "$WORK/keys/node$id.key")
    if [ "$id" -eq 1 ]; then
        "$BIN" --id 1 "${conf[@]}" "${key[@]}" --dir "$WORK/N1" --index-log "$WORK/log1" --rescan-ms 200 \
            < "$WORK/in1" > /dev/null 2> "$WORK/err1" &
    else
        "$BIN" --id "$id" "${conf[@]}" "${key[@]}" --dir "$WORK/N$id" --index-log "$WORK/log$id" --rescan-ms 200 \
            < /dev/null > /dev/null 2> "$WORK/err$id" &
    fi
    PIDS+=($!); disown $!
done
exec 3> "$WORK/in1"
for _ in $(seq 1 600); do
    listed=$(grep -c '  big.bin (' "$WORK/log1" 2>/dev/null || true)
    [ "${listed:-0}" -ge "$HOLDERS" ] && break
    sleep 0.1
done
cpu() { for pid in "${PIDS[@]}"; do awk '{ printf "%s ", $14 + $15 }' "/proc/$pid/stat"; done; echo; }
cpu0=$(cpu)
# One perf per node, so each node's profile is its own.
PERFS=()
for id in $(seq 1 $n); do
    perf record -F 1999 -o "$WORK/perf$id.data" -p "${PIDS[$((id - 1))]}" 2> "$WORK/perf$id.err" > /dev/null &
    PERFS+=($!)
done
sleep 0.5
for run in $(seq 1 "$RUNS"); do
    sleep 0.6
    dd if=/dev/zero of="$WORK/warm.bin" bs=1M count=1024 status=none; rm -f "$WORK/warm.bin"
    before=$(grep -c 'get big.bin: complete' "$WORK/err1" || true)
    echo "get big.bin" >&3
    until [ "$(grep -c 'get big.bin: complete' "$WORK/err1" || true)" -gt "$before" ]; do
        grep -q 'get big.bin: failed' "$WORK/err1" && { grep failed "$WORK/err1" >&2; exit 1; }
        sleep 0.02
    done
    echo "  run $run: $(grep 'get big.bin: complete' "$WORK/err1" | tail -1 | sed -E 's/.*complete, [0-9]+ bytes \([^)]*\) in ([0-9.]+ s).*/\1/')"
    rm -f "$WORK/N1/big.bin"
done
cpu1=$(cpu)
for p in "${PERFS[@]}"; do kill -INT "$p"; done
for p in "${PERFS[@]}"; do wait "$p" || true; done
hz=$(getconf CLK_TCK)
GIB=$(awk -v m="$SIZE_MIB" -v r="$RUNS" 'BEGIN { print m * r / 1024 }')
echo "# CPU seconds per GiB downloaded (user+sys), node 1 = downloader:"
paste <(tr ' ' '\n' <<< "$cpu0") <(tr ' ' '\n' <<< "$cpu1") | awk -v hz="$hz" -v g="$GIB" 'NF == 2 { s = ($2 - $1) / hz / g; t += s; printf "  node %d: %.2f s/GiB\n", NR, s } END { printf "  all: %.2f s/GiB\n", t }' | tee "$WORK/cpu.txt"
echo "# load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
for id in $(seq 1 $n); do
    secs=$(awk -v id="$id" 'NR == id { print $3 }' "$WORK/cpu.txt")
    echo "## node $id: top symbols, share of its samples and CPU s/GiB ($secs s/GiB in all)"
    perf report -i "$WORK/perf$id.data" --no-children --sort sym --stdio 2> /dev/null | grep -E '^ +[0-9]' | head -"$TOP" \
        | awk -v t="$secs" '{ p = $1; sub("%", "", p); printf "  %6.2f%%  %.3f s/GiB  %s %s\n", p, p / 100 * t, $2, $3 }' || true
done
