#!/usr/bin/env bash
# Election timing of p2p-node with default timeouts (heartbeat 200 ms, failure timeout 1 s),
# in up to three variants run side by side (each run does every variant in turn):
#   plain  BIN without keys (loopback: unauthenticated plaintext)
#   auth   BIN with keys from `init-cluster` (Noise XX handshake on every link)
#   old    BIN_OLD without keys (e.g. a build of the commit before, for A/B)
# Measured:
#   1. first leader: from the last of 3 nodes logging "listening on" to the moment every
#      node has logged "Leader elected: Node 1" for one term (start order rotates through
#      all 6 permutations);
#   2. kill -9 failover: from just before `kill -9` of the leader to every survivor having
#      logged "Leader elected: Node 2";
#   3. (root only) silent failover: 3 nodes as hosts in network namespaces joined by a
#      bridge; from `ip link set <leader's bridge port> down` to nodes 2 and 3 agreeing
#      (BIN with keys, BIN_OLD without).
# Times come from the nodes' own log timestamps (UTC, microseconds), so polling by this
# script does not inflate them. Baselines measured in the same runs, to show where the
# time goes: process start (exec to "listening on"), for kill -9 the kernel's report of the
# closed connection (kill to the first survivor's "disconnected from Node 1"), and with
# keys the Noise handshakes themselves (BIN logs each one's duration at debug level,
# RUST_LOG=netutil::noise=debug): their durations, and the share of the failover spent in
# the handshakes that completed during it.
#
# Usage: bench/p2p_election.sh   (RUNS=20; BIN=path/to/p2p-node; BIN_OLD=path optional;
#        NS=0 skips the namespace rows). Under the lock: flock /work/bench.lock bench/...
set -euo pipefail

RUNS=${RUNS:-20}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT_DIR/target/release/p2p-node}
BIN_OLD=${BIN_OLD:-}
NS=${NS:-1}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p p2p-node ($BIN missing)" >&2; exit 1; }
[ -z "$BIN_OLD" ] || [ -x "$BIN_OLD" ] || { echo "BIN_OLD=$BIN_OLD is not executable" >&2; exit 1; }

# Which CLI a binary has: keys (--key, keygen, init-cluster) came with issue 12.
has_keys() { "$1" --help 2>/dev/null | grep -q -- '--key'; }
declare -A VBIN=()
VARIANTS=(plain); VBIN[plain]=$BIN
if has_keys "$BIN"; then VARIANTS+=(auth); VBIN[auth]=$BIN; fi
if [ -n "$BIN_OLD" ]; then VARIANTS+=(old); VBIN[old]=$BIN_OLD; fi
export RUST_LOG=info,netutil::noise=debug
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

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
# "SECONDS ROLE MICROSECONDS" of every Noise handshake a log reports.
handshakes() {
    grep -h -E "Noise handshake as [a-z]+ done in [0-9]+ us" "$@" 2>/dev/null | awk '{
        split($1, t, "T"); sub("Z", "", t[2]); split(t[2], h, ":");
        match($0, /as [a-z]+ done in [0-9]+ us/); s = substr($0, RSTART, RLENGTH); split(s, f, " ");
        printf "%.6f %s %s\n", h[1]*3600 + h[2]*60 + h[3], f[2], f[5] }'
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
# N consecutive free loopback ports (init-cluster numbers its nodes from a base port).
free_run() { python3 -c 'import socket, random
n = '"$1"'
while True:
    base = random.randrange(20000, 60000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
    except OSError:
        continue
    print(" ".join(str(p) for p in range(base, base + n))); break'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }'; }
# median p90 max of a file of numbers
stats() {
    [ -s "$1" ] || { printf -- '- | - | -'; return; }
    sort -n "$1" | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; p = v[int(NR*0.9 + 0.999999)]; printf "%.1f | %.1f | %.1f", m, p, v[NR] }'
}
count() { [ -s "$1" ] && wc -l < "$1" || echo 0; }

ORDERS=("1 2 3" "1 3 2" "2 1 3" "2 3 1" "3 1 2" "3 2 1")
for v in "${VARIANTS[@]}"; do
    for f in first failover startup detect hs_init hs_resp hs_first_share hs_fail_share hs_fail_ms; do
        : >"$WORK/$v.$f.txt"
    done
done

# one_run VARIANT RUN: start 3 nodes in the run's order, time the first leader, kill -9 it,
# time the failover.
one_run() {
    local v=$1 run=$2
    local bin=${VBIN[$v]} dir="$WORK/$v-run$run"
    mkdir -p "$dir"
    local p1 p2 p3 conf
    read -r p1 p2 p3 <<<"$(free_run 3)"
    if [ "$v" = auth ]; then
        "$bin" init-cluster "$dir/keys" --nodes 3 --base-port "$p1" --host 127.0.0.1 >"$dir/init.out" 2>&1
        conf="--cluster $dir/keys/cluster.toml"
    else
        conf="--peer 1=127.0.0.1:$p1 --peer 2=127.0.0.1:$p2 --peer 3=127.0.0.1:$p3"
    fi
    declare -A pid=()
    local order=${ORDERS[$(( (run - 1) % 6 ))]}
    for id in $order; do
        mkdir -p "$dir/Node$id"; echo "node $id" >"$dir/Node$id/file$id.txt"
        local key=""
        [ "$v" = auth ] && key="--key $dir/keys/node$id.key"
        local t0; t0=$(now_s)
        # shellcheck disable=SC2086
        "$bin" --id "$id" $conf $key --dir "$dir/Node$id" --index-log "$dir/Peer_files.log" \
            </dev/null 2>"$dir/node$id.log" >/dev/null &
        pid[$id]=$!; PIDS+=("$!"); disown "$!"
        while [ -z "$(first_at "$dir/node$id.log" 'listening on')" ]; do sleep 0.005; done
        ms "$t0" "$(first_at "$dir/node$id.log" 'listening on')" >>"$WORK/$v.startup.txt"
        sleep 0.05
    done
    local last_id=${order: -1}
    local last_start agreed
    last_start=$(first_at "$dir/node$last_id.log" 'listening on')
    agreed=$(wait_agree 1 "$dir/node1.log" "$dir/node2.log" "$dir/node3.log")
    ms "$last_start" "$agreed" >>"$WORK/$v.first.txt"
    if [ "$v" = auth ]; then
        # The longest initiator handshake that completed while the first leader was settled.
        handshakes "$dir"/node?.log | awk -v a="$last_start" -v z="$agreed" \
            '$1 > a && $1 <= z && $2 == "initiator" { if ($3 > m) m = $3 } END { printf "%.1f\n", 100 * m / 1e6 / (z - a) }' \
            >>"$WORK/$v.hs_first_share.txt"
    fi
    sleep 0.5
    local t_kill; t_kill=$(now_s); kill -9 "${pid[1]}"
    agreed=$(wait_agree 2 "$dir/node2.log" "$dir/node3.log")
    ms "$t_kill" "$agreed" >>"$WORK/$v.failover.txt"
    local detect
    detect=$(for n in 2 3; do first_at "$dir/node$n.log" 'disconnected from Node 1\.'; done | sort -n | head -1)
    ms "$t_kill" "$detect" >>"$WORK/$v.detect.txt"
    if [ "$v" = auth ]; then
        # Initiator handshakes completed between the kill and the agreement (the survivors'
        # new link): their time, and its share of the failover.
        handshakes "$dir/node2.log" "$dir/node3.log" | awk -v a="$t_kill" -v z="$agreed" \
            '$1 > a && $1 <= z && $2 == "initiator" { s += $3 } END { printf "%.3f %.1f\n", s / 1000, 100 * s / 1e6 / (z - a) }' \
            >"$dir/hs_fail"
        cut -d' ' -f1 "$dir/hs_fail" >>"$WORK/$v.hs_fail_ms.txt"
        cut -d' ' -f2 "$dir/hs_fail" >>"$WORK/$v.hs_fail_share.txt"
        handshakes "$dir"/node?.log | awk '$2 == "initiator" { printf "%.3f\n", $3 / 1000 }' >>"$WORK/$v.hs_init.txt"
        handshakes "$dir"/node?.log | awk '$2 == "responder" { printf "%.3f\n", $3 / 1000 }' >>"$WORK/$v.hs_resp.txt"
    fi
    kill -9 "${pid[2]}" "${pid[3]}" 2>/dev/null || true
    PIDS=()
}

for run in $(seq 1 "$RUNS"); do
    for v in "${VARIANTS[@]}"; do one_run "$v" "$run"; done
    printf '.' >&2
done
echo >&2

# silent VARIANT: the namespace failover, RUNS times.
silent() {
    local v=$1 bin=${VBIN[$1]} tag="p2pb$$$1"
    : >"$WORK/$v.silent.txt"
    local hub="$tag-hub"; ip netns add "$hub"; NETNS+=("$hub")
    ip -n "$hub" link add br0 type bridge forward_delay 0
    ip -n "$hub" link set br0 up
    for id in 1 2 3; do
        local ns="$tag-$id"; ip netns add "$ns"; NETNS+=("$ns")
        ip -n "$ns" link set lo up
        ip -n "$hub" link add "hv$id" type veth peer name eth0 netns "$ns"
        ip -n "$hub" link set "hv$id" master br0
        ip -n "$hub" link set "hv$id" up
        ip -n "$ns" addr add "10.78.0.$id/24" dev eth0
        ip -n "$ns" link set eth0 up
    done
    # Addresses outside loopback need keys (BIN); the old binary runs without.
    local peers=""
    for id in 1 2 3; do
        if [ "$v" = auth ]; then
            peers="$peers --peer $id=10.78.0.$id:9000=$("$bin" keygen "$WORK/$v-ns-node$id.key")"
        else
            peers="$peers --peer $id=10.78.0.$id:9000"
        fi
    done
    for run in $(seq 1 "$RUNS"); do
        local dir="$WORK/$v-ns$run"; mkdir -p "$dir"
        declare -A pid=()
        for id in 1 2 3; do
            mkdir -p "$dir/Node$id"
            local key=""
            [ "$v" = auth ] && key="--key $WORK/$v-ns-node$id.key"
            # shellcheck disable=SC2086
            ip netns exec "$tag-$id" "$bin" --id "$id" $peers $key --dir "$dir/Node$id" \
                --index-log "$dir/Node$id.log" </dev/null 2>"$dir/node$id.log" >/dev/null &
            pid[$id]=$!; PIDS+=("$!"); disown "$!"
        done
        wait_agree 1 "$dir/node1.log" "$dir/node2.log" "$dir/node3.log" >/dev/null
        sleep 0.3
        local t_cut agreed; t_cut=$(now_s); ip -n "$hub" link set hv1 down
        agreed=$(wait_agree 2 "$dir/node2.log" "$dir/node3.log")
        ms "$t_cut" "$agreed" >>"$WORK/$v.silent.txt"
        ip -n "$hub" link set hv1 up
        kill -9 "${pid[1]}" "${pid[2]}" "${pid[3]}" 2>/dev/null || true
        sleep 0.1
        PIDS=()
        printf '.' >&2
    done
    echo >&2
    for ns in "$hub" "$tag-1" "$tag-2" "$tag-3"; do ip netns del "$ns" 2>/dev/null || true; done
    NETNS=()
}
NS_VARIANTS=()
if [ "$NS" != 0 ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
    has_keys "$BIN" && NS_VARIANTS+=(auth)
    [ -n "$BIN_OLD" ] && NS_VARIANTS+=(old)
    for v in "${NS_VARIANTS[@]}"; do silent "$v"; done
fi

row() { echo "| $1 | $2 | $(count "$WORK/$2.$3.txt") | $(stats "$WORK/$2.$3.txt") | $4 |"; }
cat <<EOF
Command: \`bench/p2p_election.sh\` (RUNS=$RUNS, BIN=$BIN${BIN_OLD:+, BIN_OLD=$BIN_OLD}; release builds, default timeouts). Machine: $(nproc) vCPU, $(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo), Linux $(uname -r). Load average at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg).

| measurement | variant | runs | median ms | p90 ms | max ms | goal ms |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
EOF
for v in "${VARIANTS[@]}"; do row "first leader after the last start (3 nodes, all 6 start orders)" "$v" first 500; done
for v in "${VARIANTS[@]}"; do row "kill -9 failover (3 nodes)" "$v" failover "300 median, 500 max"; done
for v in "${NS_VARIANTS[@]}"; do row "silent failover: leader's link cut (netns + bridge)" "$v" silent "1300 (timeout + 300 ms)"; done
for v in "${VARIANTS[@]}"; do row "baseline: process start, exec to \"listening on\"" "$v" startup ""; done
for v in "${VARIANTS[@]}"; do row "baseline: kill -9 to the first survivor seeing the link close" "$v" detect ""; done
if [[ " ${VARIANTS[*]} " == *" auth "* ]]; then
    row "Noise handshake, initiator (connected to keys ready; all handshakes of the runs)" auth hs_init ""
    row "Noise handshake, responder" auth hs_resp ""
    row "handshakes completed during a kill -9 failover (sum, initiator side)" auth hs_fail_ms ""
    echo
    echo "| handshake share (%) | runs | median | p90 | max |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    echo "| of the first leader time: longest initiator handshake in it | $(count "$WORK/auth.hs_first_share.txt") | $(stats "$WORK/auth.hs_first_share.txt") |"
    echo "| of the kill -9 failover: initiator handshakes completed in it | $(count "$WORK/auth.hs_fail_share.txt") | $(stats "$WORK/auth.hs_fail_share.txt") |"
fi
