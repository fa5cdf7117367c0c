#!/usr/bin/env bash
# bench/editor_profile.sh: where editor-server's CPU goes in the keystroke benchmark
# (20 typists x 10/s, 200 observers, 10 s, plaintext), this commit beside an older build:
# the server's CPU seconds and a perf flat profile of each (user-space symbols and the
# kernel/user split). Prints to stdout; BENCHMARKS.md quotes it by hand.
#
# Usage: OLD=<release dir of an older build> flock /work/bench.lock bench/editor_profile.sh
# (without OLD, this commit alone). Needs perf (perf_event_paranoid <= 2 for one's own
# processes) and a release build (cargo build --release -p editor --bins --examples).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
OLD=${OLD:-}
OUT=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$OUT"; }
trap cleanup EXIT
TICKS=$(getconf CLK_TCK)

VARIANTS=(new)
[ -n "$OLD" ] && VARIANTS+=(old)
for v in "${VARIANTS[@]}"; do
  if [ "$v" = new ]; then
    server=$TARGET/release/editor-server latency=$TARGET/release/examples/latency tls=(--no-tls)
  else
    server=$OLD/editor-server latency=$OLD/examples/latency tls=() # before TLS existed
  fi
  "$server" --port 0 --bind 127.0.0.1 "${tls[@]}" --data-dir "$OUT/data-$v" 2>"$OUT/log-$v" &
  spid=$!
  PIDS+=("$spid")
  port=
  for _ in $(seq 100); do
    port=$(grep -so 'listening on 127.0.0.1:[0-9]*' "$OUT/log-$v" | cut -d: -f2 || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  perf record -F 999 -g -p "$spid" -o "$OUT/perf-$v.data" 2>/dev/null &
  ppid=$!
  "$latency" --port "$port" "${tls[@]}" --typists 20 --observers 200 --rate 10 --seconds 10 >"$OUT/lat-$v" 2>/dev/null
  kill -INT "$ppid"
  wait "$ppid" || true
  echo "== $v: server CPU $(awk -v t="$TICKS" '{printf "%.2f", ($14 + $15) / t}' "/proc/$spid/stat") s; $(cat "$OUT/lat-$v")"
  kill "$spid"
  perf report -i "$OUT/perf-$v.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | head -4 || true
  perf report -i "$OUT/perf-$v.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
    grep '%' | grep -v kernel | head -15 || true
done
