#!/usr/bin/env bash
# bench/echo_profile.sh: where the time goes. Runs one bench/echo.sh row against echo-server
# and the C reference under `perf record` (server process only) and prints, per server, the
# share of samples in the kernel vs user space and the top symbols. Pinned like
# bench/echo.sh: server on CPU 0, load driver on CPU 1.
#
# Usage: bench/echo_profile.sh [echo-client flags]   (default: --connections 1 --size 64)
# Needs: perf, gcc, a release build (bench/echo.sh makes one). Loopback traffic only.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
FLAGS=${*:---connections 1 --size 64}
OUT=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$OUT"' EXIT
PID=
gcc -O2 -o "$OUT/echo_ref" bench/echo_ref.c
for which in ours ref; do
  port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::",0)); print(s.getsockname()[1])')
  if [ "$which" = ours ]; then
    RUST_LOG=warn taskset -c 0 "$TARGET/release/echo-server" --port "$port" --udp-rate 0 2>/dev/null &
  else
    taskset -c 0 "$OUT/echo_ref" "$port" 2>/dev/null &
  fi
  PID=$!
  sleep 0.5
  perf record -q -g -o "$OUT/$which.data" -p "$PID" -- sleep 3 >/dev/null 2>&1 &
  rec=$!
  # shellcheck disable=SC2086
  result=$(taskset -c 1 "$TARGET/release/echo-client" 127.0.0.1 --port "$port" --bench --duration 3s --json $FLAGS 2>/dev/null)
  wait "$rec" || true
  kill "$PID"; wait "$PID" 2>/dev/null || true
  echo "=== $which ($FLAGS): $result"
  echo "--- samples by privilege (k = kernel, . = user):"
  perf report -i "$OUT/$which.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep "%" | grep -v "^#" | head -6 || true
  echo "--- top symbols:"
  perf report -i "$OUT/$which.data" --no-children --sort sym --stdio -g none 2>/dev/null | grep "%" | grep -v "^#" | head -12 || true
done
