#!/usr/bin/env bash
# The test command: installs and starts every service the tests need, runs the quality gates
# and every test against both storage backends, and stops what it started, even on failure.
#
#   scripts/test.sh              # everything
#   scripts/test.sh -p imix-core # extra arguments go to `cargo test`
#
# Services (each on a free loopback port):
#   MongoDB-wire  SecantusDB (PyPI, pinned below) unless IMIX_TEST_MONGODB_URI is already set
#   Redis         Debian's redis-server unless IMIX_TEST_REDIS_URL is already set
#   SMTP          aiosmtpd (PyPI, pinned below) driven by scripts/smtp_sink.py, unless
#                 IMIX_TEST_SMTP_HOST is already set
set -euo pipefail

SECANTUSDB_VERSION="0.7.0b3"
AIOSMTPD_VERSION="1.4.6"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${IMIX_TEST_VENV:-$HOME/.cache/imix/test-venv}"
WORK="$(mktemp -d -t imix-test-XXXXXX)"
PIDS=()

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something accepts TCP connections on 127.0.0.1:$1 (bounded: 60 s).
wait_for_port() {
  local port=$1 name=$2 pid=$3
  for _ in $(seq 1 600); do
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1',$port)))" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "$name exited during start-up; its log follows:
$(cat "$WORK/$name.log" 2>/dev/null)"
    sleep 0.1
  done
  die "$name did not listen on port $port within 60 s"
}

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "apt-get is not available to install $*"
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Redis -----------------------------------------------------------------------------
if [ -z "${IMIX_TEST_REDIS_URL:-}" ]; then
  command -v redis-server >/dev/null || apt_install redis-server
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --protected-mode yes >"$WORK/redis.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$port" redis $!
  export IMIX_TEST_REDIS_URL="redis://127.0.0.1:$port"
  log "redis-server listening on $IMIX_TEST_REDIS_URL"
fi

# --- MongoDB-wire server -------------------------------------------------------------
if [ -z "${IMIX_TEST_MONGODB_URI:-}" ]; then
  if [ ! -x "$VENV/bin/secantusd-py" ] || ! "$VENV/bin/pip" show SecantusDB 2>/dev/null | grep -qx "Version: $SECANTUSDB_VERSION"; then
    log "installing SecantusDB $SECANTUSDB_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "SecantusDB==$SECANTUSDB_VERSION"
  fi
  port=$(free_port)
  "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$port" --storage-path :memory: \
    --log-level WARNING >"$WORK/mongodb.log" 2>&1 &
  PIDS+=($!)
  wait_for_port "$port" mongodb $!
  export IMIX_TEST_MONGODB_URI="mongodb://127.0.0.1:$port"
  log "SecantusDB listening on $IMIX_TEST_MONGODB_URI"
else
  log "using the MongoDB server at IMIX_TEST_MONGODB_URI"
fi

# --- SMTP: a recording server (plain+AUTH, STARTTLS, implicit TLS) ------------------------
if [ -z "${IMIX_TEST_SMTP_HOST:-}" ]; then
  command -v openssl >/dev/null || apt_install openssl
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  if ! "$VENV/bin/pip" show aiosmtpd 2>/dev/null | grep -qx "Version: $AIOSMTPD_VERSION"; then
    log "installing aiosmtpd $AIOSMTPD_VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
  fi
  smtp_port=$(free_port)
  starttls_port=$(free_port)
  tls_port=$(free_port)
  mkdir -p "$WORK/smtp/maildir" "$WORK/smtp/certs"
  "$VENV/bin/python" scripts/smtp_sink.py --host 127.0.0.1 --port "$smtp_port" \
    --starttls-port "$starttls_port" --tls-port "$tls_port" \
    --maildir "$WORK/smtp/maildir" --certdir "$WORK/smtp/certs" \
    --user imix-test --password imix-test-password >"$WORK/smtp.log" 2>&1 &
  PIDS+=($!)
  smtp_pid=$!
  for p in "$smtp_port" "$starttls_port" "$tls_port"; do
    wait_for_port "$p" smtp "$smtp_pid"
  done
  export IMIX_TEST_SMTP_HOST=127.0.0.1
  export IMIX_TEST_SMTP_PORT="$smtp_port"
  export IMIX_TEST_SMTP_STARTTLS_PORT="$starttls_port"
  export IMIX_TEST_SMTP_TLS_PORT="$tls_port"
  export IMIX_TEST_SMTP_CA="$WORK/smtp/certs/ca.pem"
  export IMIX_TEST_SMTP_USER=imix-test
  export IMIX_TEST_SMTP_PASSWORD=imix-test-password
  export IMIX_TEST_SMTP_MAILDIR="$WORK/smtp/maildir"
  # Tests that stop and restart a server of their own start scripts/smtp_sink.py with it.
  export IMIX_TEST_SMTP_PYTHON="$VENV/bin/python"
  log "aiosmtpd listening on $IMIX_TEST_SMTP_HOST ports $smtp_port (AUTH), $starttls_port (STARTTLS), $tls_port (TLS)"
else
  log "using the SMTP server at IMIX_TEST_SMTP_HOST"
fi

# --- Quality gates and tests -----------------------------------------------------------
# Incremental compilation only helps rebuilds and costs gigabytes on a one-shot run; a CI
# machine's disk once filled up while linking test binaries. Say how much room there is, so
# a full disk is recognised at once in the log.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
disk_report() {
  log "disk: $(df -h "$ROOT" | awk 'NR==2 {print $4 " free of " $2}'), target/ $(du -sh "$ROOT/target" 2>/dev/null | cut -f1)"
}
disk_report

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test (SQLite and MongoDB backends)"
cargo test --workspace --locked "$@"

disk_report
log "all checks passed"
