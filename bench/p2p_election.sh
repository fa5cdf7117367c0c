#!/usr/bin/env bash
# Election timing of p2p-node with default timeouts (heartbeat 200 ms, failure timeout 1 s):
#   1. first leader: from the last of 3 nodes logging "listening on" to the moment every
#      node has logged "Leader elected: Node 1" for one term (start order rotates through
#      all 6 permutations);
#   2. kill -9 failover: from just before `kill -9` of the leader to every survivor having
#      logged "Leader elected: Node 2";
#   3. (root only) silent failover: 3 nodes as hosts in network namespaces joined by a
#      bridge; from `ip link set <leader's bridge port> down` to nodes 2 and 3 agreeing.
# Times come from the nodes' own log timestamps (UTC, microseconds), so polling by this
# script does not inflate them. Baselines measured in the same runs, to show where the
# time goes: process start (exec to "listening on") and, for kill -9, the kernel's report
# of the closed connection (kill to the first survivor's "disconnected from Node 1").
#
# Usage: bench/p2p_election.sh            (RUNS=20 by default; BIN=path/to/p2p-node)
set -euo pipefail

RUNS=${RUNS:-20}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT_DIR/target/release/p2p-node}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p p2p-node ($BIN missing)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/p2p-bench.XXXXXX)
PIDS=()
NETNS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done
    for ns in "${NETNS[@]:-}"; do [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Seconds since midnight UTC, now.
now_s() { date -u +%H:%M:%S.%N | awk -F: '{ printf "%.6f\n", $1*3600 + $2*60 + $3 }'; }
# Seconds since midnight of the first log line matching a regex (empty if none).
first_at() { grep -m1 -E "$2" "$1" 2>/dev/null | awk '{ split($1, t, "T"); sub("Z", "", t[2]); split(t[2], h, ":"); printf "%.6f\n", h[1]*3600 + h[2]*60 + h[3] }'; }
# "LEADER TERM SECONDS" of the last "Leader elected" line of a log.
last_leader() {
    grep -E "Leader elected: Node" "$1" 2>/dev/null | tail -1 | awk '{
        split($1, t, "T"); sub("Z", "", t[2]); split(t[2], h, ":");
        match($0, /Node [0-9]+ \(term [0-9]+\)/); s = substr($0, RSTART, RLENGTH);
        gsub(/[^0-9 ]/, "", s); split(s, f, " ");
        printf "%s %s %.6f\n", f[1], f[2], h[1]*3600 + h[2]*60 + h[3] }'
}
# Waits until the logs given all name leader $1 with one term; prints the latest time.
wait_agree() {
    local want=$1; shift
    local deadline=$((SECONDS + 10))
    while [ $SECONDS -lt $deadline ]; do
        local terms="" latest=0 ok=1
        for log in "$@"; do
            read -r leader term at <<<"$(last_leader "$log")" || true
            if [ "${leader:-}" != "$want" ]; then ok=0; break; fi
            terms="$terms $term"
            latest=$(awk -v a="$latest" -v b="$at" 'BEGIN { print (b > a) ? b : a }')
        done
        if [ $ok = 1 ] && [ "$(tr ' ' '\n' <<<"$terms" | sed '/^$/d' | sort -u | wc -l)" = 1 ]; then
            echo "$latest"; return 0
        fi
        sleep 0.02
    done
    echo "timeout waiting for leader $want in $*" >&2
    return 1
}
free_ports() { python3 -c 'import socket
s=[socket.socket() for _ in range('"$1"')]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'; }
# median p90 max of a file of numbers
stats() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; p = v[int(NR*0.9 + 0.999999)]; printf "%.1f | %.1f | %.1f", m, p, v[NR] }'; }

ORDERS=("1 2 3" "1 3 2" "2 1 3" "2 3 1" "3 1 2" "3 2 1")
: >"$WORK/first.txt"; : >"$WORK/failover.txt"; : >"$WORK/startup.txt"; : >"$WORK/detect.txt"

for run in $(seq 1 "$RUNS"); do
    dir="$WORK/run$run"; mkdir -p "$dir"
    read -r p1 p2 p3 <<<"$(free_ports 3)"
    peers="--peer 1=127.0.0.1:$p1 --peer 2=127.0.0.1:$p2 --peer 3=127.0.0.1:$p3"
    declare -A pid=()
    order=${ORDERS[$(( (run - 1) % 6 ))]}
    for id in $order; do
        mkdir -p "$dir/Node$id"; echo "node $id" >"$dir/Node$id/file$id.txt"
        t0=$(now_s)
        # shellcheck disable=SC2086
        "$BIN" --id "$id" $peers --dir "$dir/Node$id" --index-log "$dir/Peer_files.log" \
            </dev/null 2>"$dir/node$id.log" >/dev/null &
        pid[$id]=$!; PIDS+=("$!"); disown "$!"
        while [ -z "$(first_at "$dir/node$id.log" 'listening on')" ]; do sleep 0.005; done
        ms "$t0" "$(first_at "$dir/node$id.log" 'listening on')" >>"$WORK/startup.txt"
        sleep 0.05
    done
    last_id=${order: -1}
    last_start=$(first_at "$dir/node$last_id.log" 'listening on')
    agreed=$(wait_agree 1 "$dir/node1.log" "$dir/node2.log" "$dir/node3.log")
    ms "$last_start" "$agreed" >>"$WORK/first.txt"
    sleep 0.5
    t_kill=$(now_s); kill -9 "${pid[1]}"
    agreed=$(wait_agree 2 "$dir/node2.log" "$dir/node3.log")
    ms "$t_kill" "$agreed" >>"$WORK/failover.txt"
    detect=$(for n in 2 3; do first_at "$dir/node$n.log" 'disconnected from Node 1\.'; done | sort -n | head -1)
    ms "$t_kill" "$detect" >>"$WORK/detect.txt"
    kill -9 "${pid[2]}" "${pid[3]}" 2>/dev/null || true
    PIDS=()
    printf '.' >&2
done
echo >&2

SILENT=""
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
    : >"$WORK/silent.txt"
    tag="p2pb$$"
    hub="$tag-hub"; ip netns add "$hub"; NETNS+=("$hub")
    ip -n "$hub" link add br0 type bridge forward_delay 0
    ip -n "$hub" link set br0 up
    for id in 1 2 3; do
        ns="$tag-$id"; ip netns add "$ns"; NETNS+=("$ns")
        ip -n "$ns" link set lo up
        ip -n "$hub" link add "hv$id" type veth peer name eth0 netns "$ns"
        ip -n "$hub" link set "hv$id" master br0
        ip -n "$hub" link set "hv$id" up
        ip -n "$ns" addr add "10.78.0.$id/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    # Addresses outside loopback need keys: one per node, listed with every --peer.
    peers=""
    for id in 1 2 3; do
        peers="$peers --peer $id=10.78.0.$id:9000=$("$BIN" keygen "$WORK/ns-node$id.key")"
    done
    for run in $(seq 1 "$RUNS"); do
        dir="$WORK/ns$run"; mkdir -p "$dir"
        declare -A pid=()
        for id in 1 2 3; do
            mkdir -p "$dir/Node$id"
            # shellcheck disable=SC2086
            ip netns exec "$tag-$id" "$BIN" --id "$id" $peers --key "$WORK/ns-node$id.key" --dir "$dir/Node$id" \
                --index-log "$dir/Node$id.log" </dev/null 2>"$dir/node$id.log" >/dev/null &
            pid[$id]=$!; PIDS+=("$!"); disown "$!"
        done
        wait_agree 1 "$dir/node1.log" "$dir/node2.log" "$dir/node3.log" >/dev/null
        sleep 0.3
        t_cut=$(now_s); ip -n "$hub" link set hv1 down
        agreed=$(wait_agree 2 "$dir/node2.log" "$dir/node3.log")
        ms "$t_cut" "$agreed" >>"$WORK/silent.txt"
        ip -n "$hub" link set hv1 up
        kill -9 "${pid[1]}" "${pid[2]}" "${pid[3]}" 2>/dev/null || true
        sleep 0.1
        PIDS=()
        printf '.' >&2
    done
    echo >&2
    SILENT="| silent failover: leader's link cut (netns + bridge) | $RUNS | $(stats "$WORK/silent.txt") | 1300 (timeout + 300 ms) |"
else
    SILENT="| silent failover (netns) | skipped: needs root and iproute2 | | | | |"
fi

cat <<EOF
Command: \`bench/p2p_election.sh\` (RUNS=$RUNS, release build, default timeouts). Machine: $(nproc) vCPU, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo), $(uname -sr). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg).

| measurement | runs | median ms | p90 ms | max ms | goal ms |
| --- | ---: | ---: | ---: | ---: | ---: |
| first leader after the last start (3 nodes, all 6 start orders) | $RUNS | $(stats "$WORK/first.txt") | 500 |
| kill -9 failover (3 nodes) | $RUNS | $(stats "$WORK/failover.txt") | 300 median, 500 max |
$SILENT
| baseline: process start, exec to "listening on" | $((RUNS * 3)) | $(stats "$WORK/startup.txt") | |
| baseline: kill -9 to the first survivor seeing the link close | $RUNS | $(stats "$WORK/detect.txt") | |
EOF
