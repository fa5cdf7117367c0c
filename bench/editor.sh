#!/usr/bin/env bash
# bench/editor.sh: editor-server benchmarks, written into the "## editor" section of
# BENCHMARKS.md (its ### subsections are left alone).
#
#  1. automerge-paper (259,778 edits) replayed through a release editor-server (durability
#     on, as shipped, --no-tls) by one writer with 0, 1 and 16 observers: elapsed time from
#     the first edit sent to the last observer holding endContent (median of RUNS), with
#     the same trace applied to a local rope in the same process as the baseline;
#  2. the client side alone (SyncClient, no network): every edit buffered, then composed;
#  3. keystroke latency (issue 6): 20 typists x 10 keystrokes/s, 200 observers, 10 s
#     (examples/latency.rs): key typed -> change reaches the last observer, p50/p99;
#  4. issue 13: the 16-observer replay and the keystroke benchmark with TLS on (the
#     default; clients pin the server's fingerprint) beside --no-tls, interleaved run by
#     run, and the cost of a client connect (examples/connect_time.rs, 100 connects);
#  5. issue 14: the same two with OLD=DIR, a release directory (editor-server,
#     editor-client, examples/latency) built from the previous commit, interleaved too;
#  6. server peak RSS over the 16-observer replays; RSS with 1,000 idle connections on one
#     document; RSS with 100 documents of 1 MB loaded.
#
# Usage: flock /work/bench.lock bench/editor.sh   (RUNS=5 replays and LAT_RUNS=3 latency
# runs of 10 s per variant by default; about five minutes after the build). For the A/B:
#   git worktree add ../editor-old 60a00f3
#   (cd ../editor-old && CARGO_TARGET_DIR=/tmp/editor-old cargo build --release -p editor --bins --examples)
#   OLD=/tmp/editor-old/release flock /work/bench.lock bench/editor.sh
# Needs cargo and python3. The replay driver is `editor-client --replay TRACE --observers N
# --json`; load for the memory rows is examples/hold.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
LAT_RUNS=${LAT_RUNS:-3}
TRACE=${TRACE:-bench/traces/automerge-paper.json.gz}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=$(mktemp -d)
PIDS=()
# The raw results stay in $OUT if the report cannot be written.
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${DONE:-}" ] && rm -rf "$OUT"; }
trap cleanup EXIT

if [ "${BUILD:-1}" = 1 ]; then # BUILD=0: use what is already built
  echo "building release binaries and examples..." >&2
  nice -n 19 cargo build --release --locked -p editor --bins --examples >&2
fi
SERVER="$TARGET/release/editor-server"
CLIENT="$TARGET/release/editor-client"
EX="$TARGET/release/examples"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

OLD=${OLD:-}
VARIANTS=(plain tls)
[ -n "$OLD" ] && VARIANTS+=(old)

# start_server NAME [VARIANT]: starts a fresh server on its own data directory; sets PORT
# and SPID, and CLIENT/LATENCY/TLS_ARGS for the clients of that variant: plain (this
# commit, --no-tls; the default), tls (this commit as shipped, the client pinning the
# server's fingerprint) or old (the build in $OLD, which has no TLS).
start_server() {
  mkdir -p "$OUT/$1"
  local variant=${2:-plain} bin=$SERVER flags=(--no-tls)
  CLIENT=$TARGET/release/editor-client LATENCY=$EX/latency
  case $variant in
    tls) flags=() ;;
    old) bin=$OLD/editor-server flags=() CLIENT=$OLD/editor-client LATENCY=$OLD/examples/latency ;;
  esac
  "$bin" --port 0 --bind 127.0.0.1 "${flags[@]}" --data-dir "$OUT/$1/data" 2>"$OUT/$1/server.log" &
  SPID=$!
  PIDS+=("$SPID")
  for _ in $(seq 100); do
    PORT=$(grep -so 'listening on 127.0.0.1:[0-9]*' "$OUT/$1/server.log" | cut -d: -f2 || true)
    [ -n "$PORT" ] && break
    sleep 0.1
  done
  [ -n "$PORT" ] || { echo "server $1 did not start" >&2; exit 1; }
  case $variant in
    plain) TLS_ARGS=(--no-tls) ;;
    tls) TLS_ARGS=(--trust-fingerprint "$(grep -o 'TLS certificate SHA256:[^ ]*' "$OUT/$1/server.log" | head -1 | cut -d' ' -f3)") ;;
    old) TLS_ARGS=() ;;
  esac
}
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# CPU seconds (user + system, all threads) a process has used: unlike elapsed times, a
# figure the machine's load hardly changes.
TICKS=$(getconf CLK_TCK)
cpu_s() { awk -v t="$TICKS" '{printf "%.3f", ($14 + $15) / t}' "/proc/$1/stat"; }

echo "client-side cost (no network)..." >&2
for _ in $(seq "$RUNS"); do "$EX/sync_cost" "$TRACE"; done >"$OUT/sync.jsonl"

for obs in 0 1; do
  echo "replay with $obs observers..." >&2
  start_server "replay$obs"
  for _ in $(seq "$RUNS"); do
    "$CLIENT" 127.0.0.1 --no-tls --port "$PORT" --replay "$TRACE" --observers "$obs" --json
  done >"$OUT/replay$obs.jsonl"
  echo "$obs $(status_kb "$SPID" VmHWM)" >>"$OUT/replay_rss.txt"
  kill "$SPID"
done

# 16 observers, every variant on a server of its own, interleaved run by run (the order
# rotates) so that a change in the machine's load hits them alike.
echo "replay with 16 observers (${VARIANTS[*]})..." >&2
declare -A VPORT VPID VCLIENT VTLS
for v in "${VARIANTS[@]}"; do
  start_server "replay16-$v" "$v"
  VPORT[$v]=$PORT VPID[$v]=$SPID VCLIENT[$v]=$CLIENT VTLS[$v]="${TLS_ARGS[*]}"
done
for i in $(seq "$RUNS"); do
  n=${#VARIANTS[@]}
  for j in $(seq 0 $((n - 1))); do
    v=${VARIANTS[$(((i + j) % n))]}
    # shellcheck disable=SC2086 # VTLS holds zero, one or two words
    "${VCLIENT[$v]}" 127.0.0.1 ${VTLS[$v]} --port "${VPORT[$v]}" --replay "$TRACE" --observers 16 --json >>"$OUT/replay16-$v.jsonl"
  done
done
for v in "${VARIANTS[@]}"; do
  echo "$v $(status_kb "${VPID[$v]}" VmHWM)" >>"$OUT/replay_rss.txt"
  echo "$v $(cpu_s "${VPID[$v]}")" >>"$OUT/replay_cpu.txt"
  kill "${VPID[$v]}"
done

echo "client connect time (100 connects, TLS and --no-tls)..." >&2
for v in tls plain; do
  start_server "connect-$v" "$v"
  "$EX/connect_time" --port "$PORT" "${TLS_ARGS[@]}" --connects 100 >>"$OUT/connect.jsonl"
  kill "$SPID"
done

hold() { # NAME ARGS...: runs examples/hold against a fresh server, records its RSS
  local name=$1; shift
  start_server "$name"
  local before; before=$(status_kb "$SPID" VmRSS)
  mkfifo "$OUT/$name/in"
  "$EX/hold" --port "$PORT" "$@" <"$OUT/$name/in" >"$OUT/$name/out" &
  local hpid=$!
  PIDS+=("$hpid")
  exec 3>"$OUT/$name/in"
  for _ in $(seq 600); do grep -q ready "$OUT/$name/out" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  echo "$name $before $(status_kb "$SPID" VmRSS) $(status_kb "$SPID" VmHWM)" >>"$OUT/hold.txt"
  exec 3>&-
  wait "$hpid" || true
  kill "$SPID"
}
echo "keystroke latency (20 typists x 10/s, 200 observers; ${VARIANTS[*]})..." >&2
for i in $(seq "$LAT_RUNS"); do
  n=${#VARIANTS[@]}
  for j in $(seq 0 $((n - 1))); do
    v=${VARIANTS[$(((i + j) % n))]}
    start_server "latency$i-$v" "$v"
    "$LATENCY" --port "$PORT" "${TLS_ARGS[@]}" --typists 20 --observers 200 --rate 10 --seconds 10 >>"$OUT/latency-$v.jsonl"
    echo "$v $(status_kb "$SPID" VmHWM)" >>"$OUT/latency_rss.txt"
    echo "$v $(cpu_s "$SPID")" >>"$OUT/latency_cpu.txt"
    kill "$SPID"
  done
done

echo "1000 idle connections..." >&2
hold idle --connections 1000 --doc idle
echo "100 documents of 1 MB..." >&2
hold docs --documents 100 --size 1000000 --doc big

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)

python3 - "$OUT" "$RUNS" "$(nproc)" "$CPU" "$MEM" "$(uname -r)" "$LOAD_START" "$LOAD_END" "$OLD" <<'PY'
import json, statistics, sys, re, pathlib, os
out, runs, ncpu, cpu, mem, kernel, load0, load1, old = sys.argv[1:]
out = pathlib.Path(out)
med = lambda xs: statistics.median(xs)
def rows(path):
    return [json.loads(l) for l in open(path) if l.startswith("{")]
sync = rows(out / "sync.jsonl")
rss = dict(l.split() for l in open(out / "replay_rss.txt"))
lines = []
lines.append("## editor\n")
lines.append(f"Command: `{'OLD=<release dir of 60a00f3> ' if old else ''}flock /work/bench.lock bench/editor.sh` (release build, RUNS={runs}, medians). Machine: {ncpu} vCPU ({cpu}), {mem} RAM, Linux {kernel}; "
             f"load average {load0} at the start, {load1} at the end (other helpers' builds share the machine). "
             "Server: `editor-server` as shipped (journal fsync before every ack, info logging to a file) but with `--no-tls` on both sides, except where TLS is named. "
             "Replay driver: `editor-client 127.0.0.1 --port P --replay automerge-paper.json.gz --observers N --json`, one writer using the library's `SyncClient` (every edit applied locally at once; "
             "edits made while a change is in flight are buffered and sent as one composed change when the ack arrives), observers on the same document, "
             "all on 127.0.0.1. Elapsed = first edit sent to the last observer holding a text equal to the trace's `endContent` (checked byte for byte, as is the server's text received by a fresh connection afterwards; trace loading excluded). "
             "Baseline in the same process: the trace's patches applied to a local ropey `Rope`, no network.\n")
lines.append("| automerge-paper (259,778 edits) | elapsed ms (median, min-max) | edits/s | changes committed | local rope ms | ratio to local rope | server peak RSS | converged |")
lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for obs in ["0", "1", "16"]:
    r = rows(out / (f"replay{obs}.jsonl" if obs != "16" else "replay16-plain.jsonl"))
    obs_rss = rss[obs if obs != "16" else "plain"]
    el = [x["elapsed_ms"] for x in r]
    local = med([x["local_rope_ms"] for x in r])
    m = med(el)
    lines.append(f"| 1 writer, {obs} observers | {m:.0f} ({min(el):.0f}-{max(el):.0f}) | {259778/ (m/1000):,.0f} | {med([x['revisions'] for x in r]):.0f} | {local:.0f} | {m/local:.1f}x | {int(obs_rss)/1024:.1f} MiB | {all(x['converged'] for x in r)} |")
lines.append("")
lines.append(f"Client side alone (`examples/sync_cost.rs`, no network, first change never acknowledged so all 259,777 later edits are buffered): "
             f"`SyncClient::edit` for every edit {med([x['sync_edit_ms'] for x in sync]):.0f} ms, composing the whole buffer into one change when the ack arrives "
             f"{med([x['compose_buffer_ms'] for x in sync]):.0f} ms; plain rope apply {med([x['rope_apply_ms'] for x in sync]):.0f} ms, building the 259,778 operations {med([x['build_ops_ms'] for x in sync]):.0f} ms.\n")
lats = rows(out / "latency-plain.jsonl")
lat = lats[0]
lrss_all = [l.split() for l in open(out / "latency_rss.txt")]
lrss_of = lambda v: max(int(k) for w, k in lrss_all if w == v) / 1024
lrss = lrss_of("plain")
rng = lambda k: f"{med([x[k] for x in lats]):.1f} ms ({min(x[k] for x in lats):.1f}-{max(x[k] for x in lats):.1f})"
lines.append(f"Keystroke latency (`examples/latency.rs`, all 220 clients in one process on the same 2 vCPUs as the server, so their clocks agree; {len(lats)} runs of 10 s, each on a fresh server; median of the runs and min-max): "
             f"{lat['typists']} typists x {lat['rate']} keystrokes/s at random positions, {lat['observers']} observers: "
             f"{sum(x['keystrokes'] for x in lats)} keystrokes in {sum(x['changes'] for x in lats)} changes ({sum(x['multi_key_changes'] for x in lats)} carried more than one keystroke because the previous change was still unacknowledged); "
             f"time from a key being typed (including any wait in the typist's buffer) to the change carrying it reaching the last of the {lat['observers']} observers: "
             f"p50 {rng('p50_ms')}, p99 {rng('p99_ms')}, max {rng('max_ms')} ({sum(x['incomplete'] for x in lats)} keystrokes not seen by every observer); server peak RSS {lrss:.1f} MiB. "
             "Each change costs one journal fsync and 200 socket writes on the server plus 200 reads in the measuring process, on the same two cores: "
             "at 200 changes/s the fan-out keeps the machine about half busy, so a keystroke that arrives while the previous one is still being delivered waits (the p99).\n")
# TLS vs --no-tls (issue 13) and this commit vs the previous one (issue 14), same run.
variants = ["plain", "tls"] + (["old"] if old else [])
vname = {"plain": "this commit, `--no-tls`", "tls": "this commit, TLS (as shipped)", "old": "previous commit 60a00f3 (plaintext only)"}
rep = {v: rows(out / f"replay16-{v}.jsonl") for v in variants}
lat_v = {v: rows(out / f"latency-{v}.jsonl") for v in variants}
rep_m = {v: med([x["elapsed_ms"] for x in rep[v]]) for v in variants}
p99_m = {v: med([x["p99_ms"] for x in lat_v[v]]) for v in variants}
lines.append(f"Same run, interleaved (each replay round and each latency round runs every variant once, in a rotating order; every variant has its own server): "
             f"the 16-observer replay ({runs} runs each) and the keystroke benchmark above ({len(lats)} runs of 10 s each, 20 typists x 10/s, 200 observers). "
             "With TLS the clients pin the server's self-signed certificate by its fingerprint (`--trust-fingerprint`, taken from the server's log). "
             "Server CPU = user + system seconds of the server process (all threads, /proc/PID/stat): what the work costs, which the machine's load hardly changes, unlike the elapsed times.\n")
rcpu = {l.split()[0]: float(l.split()[1]) / int(runs) for l in open(out / "replay_cpu.txt")}
lcpu = {}
for l in open(out / "latency_cpu.txt"):
    lcpu.setdefault(l.split()[0], []).append(float(l.split()[1]))
lines.append("| variant | replay, 16 observers: ms (median, min-max) | server CPU per replay | converged | server peak RSS | keystroke p50 ms (median, min-max) | keystroke p99 ms (median, min-max) | keystroke max ms (median) | server CPU per 10 s latency run (median) |")
lines.append("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
mm = lambda xs: f"{med(xs):.1f} ({min(xs):.1f}-{max(xs):.1f})"
for v in variants:
    el = [x["elapsed_ms"] for x in rep[v]]
    L = lat_v[v]
    lines.append(f"| {vname[v]} | {med(el):.0f} ({min(el):.0f}-{max(el):.0f}) | {rcpu[v]*1000:.0f} ms | {all(x['converged'] for x in rep[v])} | {int(rss[v])/1024:.1f} MiB | "
                 f"{mm([x['p50_ms'] for x in L])} | {mm([x['p99_ms'] for x in L])} | {med([x['max_ms'] for x in L]):.1f} | {med(lcpu[v]):.2f} s |")
lines.append("")
tr, tl = rep_m["tls"] / rep_m["plain"], p99_m["tls"] / p99_m["plain"]
goal = lambda ok: "**met**" if ok else "**not met**"
lines.append(f"Issue 13 goals: replay with TLS {rep_m['tls']:.0f} ms <= 250 ms: {goal(rep_m['tls'] <= 250)}; within 1.25x of plaintext ({tr:.2f}x): {goal(tr <= 1.25)}; "
             f"keystroke p99 with TLS within 1.25x of plaintext ({p99_m['tls']:.1f} / {p99_m['plain']:.1f} ms = {tl:.2f}x): {goal(tl <= 1.25)}.")
if old:
    orr, ol = rep_m["plain"] / rep_m["old"], p99_m["plain"] / p99_m["old"]
    lines.append(f"Issue 14 goal, no slower than the previous commit (both plaintext): replay {rep_m['plain']:.0f} vs {rep_m['old']:.0f} ms ({orr:.2f}x), "
                 f"keystroke p99 {p99_m['plain']:.1f} vs {p99_m['old']:.1f} ms ({ol:.2f}x), p50 {med([x['p50_ms'] for x in lat_v['plain']]):.1f} vs {med([x['p50_ms'] for x in lat_v['old']]):.1f} ms.")
lines.append("")
conn = {("tls" if x["tls"] else "plain"): x for x in rows(out / "connect.jsonl")}
t, p = conn["tls"], conn["plain"]
lines.append(f"Client connect (`examples/connect_time.rs --connects {t['connects']}`, one after another on 127.0.0.1, medians): "
             f"TLS handshake (TLS 1.3, rustls/ring, self-signed ECDSA P-256 certificate checked against the pinned fingerprint) {t['tls_p50_ms']:.2f} ms (p90 {t['tls_p90_ms']:.2f}); "
             f"whole connect with TLS {t['total_p50_ms']:.2f} ms (TCP {t['tcp_p50_ms']:.2f}, TLS {t['tls_p50_ms']:.2f}, protocol hello {t['hello_p50_ms']:.2f}) "
             f"vs {p['total_p50_ms']:.2f} ms with `--no-tls` (TCP {p['tcp_p50_ms']:.2f}, hello {p['hello_p50_ms']:.2f}).\n")
hold = {l.split()[0]: l.split()[1:] for l in open(out / "hold.txt")}
lines.append("| server memory | RSS before | RSS after | peak RSS |")
lines.append("| --- | ---: | ---: | ---: |")
label = {"idle": "1,000 idle connections on one document", "docs": "100 documents of 1 MB loaded (one client each)"}
for k in ["idle", "docs"]:
    b, a, p = (int(x) / 1024 for x in hold[k])
    lines.append(f"| {label[k]} | {b:.1f} MiB | {a:.1f} MiB | {p:.1f} MiB |")
lines.append("")
section = "\n".join(lines) + "\n"
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text() if path.exists() else "# Benchmarks\n\n"
# Up to the next heading, so the ### subsections other scripts write stay.
pat = re.compile(r"^## editor\n.*?(?=^##+ |\Z)", re.S | re.M)
text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip("\n") + "\n\n" + section
path.write_text(text)
print(section)
PY
DONE=1
