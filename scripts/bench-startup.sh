#!/usr/bin/env bash
# Measures the release binary on the embedded store: time from exec to the first 200 from
# /health (cold data directory, then warm), idle resident memory, and the binary's size.
#
#   scripts/bench-startup.sh [path/to/imix-server]
set -euo pipefail
BIN="${1:-target/release/imix-server}"
[ -x "$BIN" ] || { echo "build it first: cargo build --release -p imix-server" >&2; exit 1; }
DIR="$(mktemp -d)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$DIR"' EXIT

ready_ms() {
  local start end
  start=$(date +%s%N)
  IMIX_DATA_DIR="$DIR/data" IMIX_LOG_DIR="$DIR/logs" IMIX_BIND="127.0.0.1:$PORT" IMIX_ENV_FILE=/dev/null \
    "$BIN" >/dev/null 2>&1 &
  PID=$!
  for _ in $(seq 1 2000); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
      end=$(date +%s%N)
      READY_MS=$(( (end - start) / 1000000 ))
      return
    fi
    sleep 0.005
  done
  echo "did not become ready" >&2; exit 1
}

ready_ms
cold=$READY_MS
sleep 2
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
kill "$PID"; wait "$PID" 2>/dev/null || true
ready_ms
warm=$READY_MS
kill "$PID"; wait "$PID" 2>/dev/null || true
size=$(stat -c %s "$BIN")
echo "ready (cold data dir, incl. migrations and default admin): ${cold} ms"
echo "ready (warm data dir): ${warm} ms"
echo "idle RSS after 2 s: $((rss_kb / 1024)) MiB (${rss_kb} KiB)"
echo "binary size: $((size / 1024 / 1024)) MiB (${size} bytes)"
