#!/usr/bin/env bash
# bench/editor_flood.sh: issue 14's attacks against a release editor-server with its
# default budgets (TLS on, --max-memory 512 MiB, --frame-timeout 5 s, presence 200/s per
# client), while a measuring client types on another document. Written into the
# "### hostile clients (issue 14)" part of BENCHMARKS.md's editor section.
#
# For each attack, on a fresh server, one measuring client (examples/latency.rs: 2 typists
# x 10 keystrokes/s, 2 observers, on a document of its own; key typed -> change at both
# observers) joins and types for MEASURE + WARMUP + MEASURE s:
#   1. quiet: its first MEASURE s;
#   2. the attack (examples/flood.rs) starts; after WARMUP s, its last MEASURE s;
#   3. the attack stops; the server's peak RSS (VmHWM) over the whole run is read.
# Attacks (examples/flood.rs --help), each once as issue 14 describes it (--once) and,
# where it makes a difference, persistent (reconnecting when the server closes it):
#   presence  - 50 connections from one process offering 25 MB/s of Presence frames, each
#               on its own document;
#   partial   - 200 joined connections each sending 8 MiB - 1 of one frame and then
#               nothing;
#   nonreader - 200 joiners that never read, on a 6 MB document (persistent: a fresh
#               wave every 5 s).
#
# Usage: flock /work/bench.lock bench/editor_flood.sh
#   (MEASURE=20 WARMUP=5 by default, about 3 minutes; NO_TLS=1 for plaintext on both
#   sides). Needs cargo and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

MEASURE=${MEASURE:-20}
WARMUP=${WARMUP:-5}
BUDGET_MIB=512 # editor-server's default --max-memory, left as shipped
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
EX="$TARGET/release/examples"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

SERVER_TLS=()
[ "${NO_TLS:-0}" = 1 ] && SERVER_TLS=(--no-tls)

# start_server NAME: a fresh server with default budgets; sets PORT, SPID and CLIENT_TLS.
start_server() {
  mkdir -p "$OUT/$1"
  "$SERVER" --port 0 --bind 127.0.0.1 "${SERVER_TLS[@]}" --data-dir "$OUT/$1/data" 2>"$OUT/$1/server.log" &
  SPID=$!
  PIDS+=("$SPID")
  for _ in $(seq 100); do
    PORT=$(grep -so 'listening on 127.0.0.1:[0-9]*' "$OUT/$1/server.log" | cut -d: -f2 || true)
    [ -n "$PORT" ] && break
    sleep 0.1
  done
  [ -n "$PORT" ] || { echo "server $1 did not start" >&2; exit 1; }
  if [ "${NO_TLS:-0}" = 1 ]; then
    CLIENT_TLS=(--no-tls)
  else
    CLIENT_TLS=(--trust-fingerprint "$(grep -o 'TLS certificate SHA256:[^ ]*' "$OUT/$1/server.log" | head -1 | cut -d' ' -f3)")
  fi
}
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

ATTACKS=(presence partial-once partial nonreader-once nonreader)
for attack in "${ATTACKS[@]}"; do
  flood_args=("${attack%-once}")
  [ "$attack" != "${attack%-once}" ] && flood_args=(--once "${attack%-once}")
  echo "$attack: quiet, then under attack..." >&2
  start_server "$attack"
  "$EX/latency" --port "$PORT" "${CLIENT_TLS[@]}" --typists 2 --observers 2 --rate 10 \
    --seconds $((2 * MEASURE + WARMUP)) --window "0-$MEASURE" --window "$((MEASURE + WARMUP))-$((2 * MEASURE + WARMUP))" \
    >"$OUT/$attack.latency" 2>"$OUT/$attack.latency.err" &
  LPID=$!
  PIDS+=("$LPID")
  for _ in $(seq 600); do grep -q typing "$OUT/$attack.latency.err" && break; sleep 0.1; done
  sleep "$MEASURE"
  mkfifo "$OUT/$attack/in"
  "$EX/flood" --port "$PORT" "${CLIENT_TLS[@]}" "${flood_args[@]}" <"$OUT/$attack/in" >"$OUT/$attack.flood" &
  FPID=$!
  PIDS+=("$FPID")
  exec 3>"$OUT/$attack/in"
  wait "$LPID" || true
  exec 3>&-
  wait "$FPID" || true
  status_kb "$SPID" VmHWM >"$OUT/$attack.rss"
  grep -c 'short of memory' "$OUT/$attack/server.log" >"$OUT/$attack.refused" || true
  kill "$SPID"
  wait "$SPID" 2>/dev/null || true
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
MEM=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)

python3 - "$OUT" "$(nproc)" "$MEM" "$(uname -r)" "$LOAD_START" "$LOAD_END" "$MEASURE" "$WARMUP" "$BUDGET_MIB" "${NO_TLS:-0}" <<'PY'
import json, sys, re, pathlib
out, ncpu, mem, kernel, load0, load1, measure, warmup, budget, no_tls = sys.argv[1:]
out = pathlib.Path(out)
one = lambda p: next(json.loads(l) for l in open(p) if l.startswith("{"))
label = {
    "presence": "presence flood: 50 connections, 25 MB/s of Presence offered, each on its own document",
    "partial-once": "partial frames, once: 200 joined connections, 8 MiB - 1 of one frame each, then nothing",
    "partial": "partial frames, persistent: the same, each reconnecting and starting over when closed",
    "nonreader-once": "200 joiners that never read, on a 6 MB document",
    "nonreader": "the same, persistent: a fresh wave of 200 every 5 s",
}
lines = ["### hostile clients (issue 14)\n"]
lines.append(f"Command: `flock /work/bench.lock bench/editor_flood.sh` (MEASURE={measure} s, WARMUP={warmup} s). "
             f"Machine: {ncpu} vCPU, {mem} RAM, Linux {kernel}; load average {load0} at the start, {load1} at the end. "
             f"Server: release `editor-server` with its default budgets ({'--no-tls' if no_tls == '1' else 'TLS on, as shipped'}; `--max-memory {budget}` MiB, `--frame-timeout 5`, `--presence-rate 200`), a fresh server per attack. "
             "Attack clients: `examples/flood.rs` in one process. "
             "Measuring client: `examples/latency.rs --typists 2 --observers 2 --rate 10` on a document of its own, joined before the attack: key typed to the change at both observers; "
             f"its first {measure} s are the quiet baseline, then the attack starts, and its keystrokes typed from {warmup} s later for {measure} s are the figure under attack. Peak RSS = the server's VmHWM over the whole run.\n")
lines.append("| attack | quiet p50 / p99 ms | under attack p50 / p99 ms | p99 ratio (goal <= 2x) | keystrokes quiet / under attack (not delivered) | attack traffic | joins refused as short of memory (log lines, rate-limited) | server peak RSS (budget %s MiB) |" % budget)
lines.append("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
ok_lat, ok_rss = True, True
for a in ["presence", "partial-once", "partial", "nonreader-once", "nonreader"]:
    r, f = one(out / f"{a}.latency"), one(out / f"{a}.flood")
    q, l = r["windows"]
    hwm = int(open(out / f"{a}.rss").read().split()[0]) / 1024
    refused = open(out / f"{a}.refused").read().strip() or "0"
    ratio = l["p99_ms"] / q["p99_ms"]
    ok_lat &= ratio <= 2 and l["incomplete"] == 0
    ok_rss &= hwm <= int(budget)
    lines.append(f"| {label[a]} | {q['p50_ms']:.1f} / {q['p99_ms']:.1f} | {l['p50_ms']:.1f} / {l['p99_ms']:.1f} | {ratio:.2f}x | {q['keystrokes']} / {l['keystrokes']} ({q['incomplete']} / {l['incomplete']}){'; ' + str(r['failed_clients']) + ' measuring clients disconnected' if r['failed_clients'] else ''} | "
                 f"{f['bytes_sent']/1e6:,.0f} MB in {f['seconds']:.0f} s, {f['connects']} connects, {f['closed_by_server']} closed by the server | {refused} | {hwm:.1f} MiB |")
lines.append("")
lines.append(f"Goals: p99 under attack <= 2x the quiet p99 in every attack: **{'met' if ok_lat else 'not met'}**; peak RSS <= the {budget} MiB budget in every attack: **{'met' if ok_rss else 'not met'}**.\n")
section = "\n".join(lines) + "\n"
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text()
pat = re.compile(r"^### hostile clients \(issue 14\)\n.*?(?=^##+ |\Z)", re.S | re.M)
if pat.search(text):
    text = pat.sub(lambda _: section, text)
elif "### web editor (issue 17)" in text:
    text = text.replace("### web editor (issue 17)", section + "### web editor (issue 17)", 1)
else:
    text = text.rstrip("\n") + "\n\n" + section
path.write_text(text)
print(section)
PY
DONE=1
