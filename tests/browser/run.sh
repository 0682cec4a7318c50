#!/usr/bin/env bash
# The browser suite: builds the release binary, starts three portals on loopback with fresh data and key
# directories, waits for /healthz, drives Debian's Chromium headless through every role's flow
# (tests/browser/run.mjs), then stops the servers.
#   - The main portal's public origin is http://localhost:PORT and the suite browses it there: passkeys need a
#     host name (an IP address has none), and the Origin check and WebAuthn both need the exact origin.
#   - The second portal keeps the default origin, http://127.0.0.1:PORT (passkeys off), has a 1 MiB file limit
#     for the too-large upload, and step_up_minutes = 1 so that a second factor goes stale within a run.
#   - The third portal (http://127.0.0.1:PORT) has session_idle_minutes = 1: an upload that outlives the idle
#     timeout, the idle warning, and a draft saved before the session ends, without disturbing the others.
# Without SMTP each portal writes its mail as .eml files to <data dir>/outbox/, where the suite reads the
# invitation and confirmation links as a person would in its mail client. Exit status: 0 when every flow and
# every page check passed, non-zero otherwise.
#
#   tests/browser/run.sh            from anywhere; honours CARGO_TARGET_DIR
#   PCII_BROWSER_KEEP=1             keep the temporary directory (server logs, downloads) for a look
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SUITE="$ROOT/tests/browser"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/release/pcii-portal"
CHROMIUM="${PCII_CHROMIUM:-/usr/bin/chromium}"

say() { echo "== browser: $*"; }
die() { echo "browser suite FAILED: $*" >&2; exit 1; }

# Debian's Chromium; Playwright's own browser downloads are not used.
if [ ! -x "$CHROMIUM" ]; then
  say "installing chromium (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
[ -x "$CHROMIUM" ] || die "no Chromium at $CHROMIUM"
command -v node >/dev/null || die "node is not installed (Node 20 or later is needed)"
# webauthn-rs links the system OpenSSL: its headers and pkg-config are needed to build (as in .ci/run).
if ! dpkg -s libssl-dev pkg-config >/dev/null 2>&1; then
  say "installing libssl-dev and pkg-config (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi

say "cargo build --release"
(cd "$ROOT" && cargo build --release --quiet)
[ -x "$BIN" ] || die "no release binary at $BIN"

say "npm ci"
(cd "$SUITE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pcii-browser.XXXXXX")"
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/*.log; do
      [ -f "$log" ] || continue
      echo "---- last lines of $(basename "$log")" >&2
      tail -n 40 "$log" >&2 || true
    done
  fi
  if [ -n "${PCII_BROWSER_KEEP:-}" ]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# start NAME PORT [VAR=VALUE...]: a portal with its own data and keys, output in $WORK/NAME.log.
start() {
  local name="$1" port="$2"
  shift 2
  mkdir -p "$WORK/$name"
  (
    cd "$WORK/$name"
    exec env PCII_CONFIG="$ROOT/Rocket.toml" \
      PCII_DATA_DIR="$WORK/$name/data" PCII_KEYS_DIR="$WORK/$name/keys" PCII_DATABASE_URL= \
      PCII_ADDRESS=127.0.0.1 PCII_PORT="$port" ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$port" NO_COLOR=1 \
      "$@" "$BIN" serve
  ) >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
}

# wait_healthy NAME PORT: up to 120 s for /healthz (a cold start on a busy 2-core machine is slow).
wait_healthy() {
  local name="$1" port="$2" pid="${PIDS[-1]}"
  for _ in $(seq 1 240); do
    if node -e 'fetch(process.argv[1], { signal: AbortSignal.timeout(2000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' \
      "http://127.0.0.1:$port/healthz"; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "the $name portal exited during start-up (see its log below)"
    sleep 0.5
  done
  die "the $name portal did not answer /healthz within 120 s"
}

MAIN_PORT="$(free_port)"
MAIN_ORIGIN="http://localhost:$MAIN_PORT"
say "starting the portal on 127.0.0.1:$MAIN_PORT, public origin $MAIN_ORIGIN"
start main "$MAIN_PORT" PCII_PUBLIC_ORIGIN="$MAIN_ORIGIN" PCII_NOTIFICATION_INTERVAL_SECONDS=2
wait_healthy main "$MAIN_PORT"

SMALL_PORT="$(free_port)"
say "starting a second portal on 127.0.0.1:$SMALL_PORT with PCII_MAX_FILE_BYTES=1048576 PCII_STEP_UP_MINUTES=1"
start small "$SMALL_PORT" PCII_MAX_FILE_BYTES=1048576 PCII_STEP_UP_MINUTES=1
wait_healthy small "$SMALL_PORT"

IDLE_PORT="$(free_port)"
say "starting a third portal on 127.0.0.1:$IDLE_PORT with PCII_SESSION_IDLE_MINUTES=1 (uploads and drafts that outlive a session)"
start idle "$IDLE_PORT" PCII_SESSION_IDLE_MINUTES=1
wait_healthy idle "$IDLE_PORT"

# The first-start setup link is printed (never logged) on stderr: "... at: http://.../setup/<token> ***".
SETUP_URL="$(grep -o 'http://[^ ]*/setup/[A-Za-z0-9_-]*' "$WORK/main.log" | head -n 1 || true)"
[ -n "$SETUP_URL" ] || die "the portal printed no setup link"
SMALL_SETUP_URL="$(grep -o 'http://[^ ]*/setup/[A-Za-z0-9_-]*' "$WORK/small.log" | head -n 1 || true)"
[ -n "$SMALL_SETUP_URL" ] || die "the second portal printed no setup link"

say "running the flows in headless Chromium"
(
  cd "$SUITE"
  PCII_BASE_URL="$MAIN_ORIGIN" \
    PCII_SMALL_BASE_URL="http://127.0.0.1:$SMALL_PORT" \
    PCII_SETUP_URL="$SETUP_URL" \
    PCII_SMALL_SETUP_URL="$SMALL_SETUP_URL" \
    PCII_OUTBOX_DIR="$WORK/main/data/outbox" \
    PCII_SMALL_OUTBOX_DIR="$WORK/small/data/outbox" \
    PCII_IDLE_BASE_URL="http://127.0.0.1:$IDLE_PORT" \
    PCII_IDLE_OUTBOX_DIR="$WORK/idle/data/outbox" \
    PCII_CHROMIUM="$CHROMIUM" \
    PCII_BROWSER_WORK="$WORK" \
    PCII_SCREENSHOT_DIR="${PCII_SCREENSHOT_DIR:-$ROOT/docs/screenshots}" \
    node run.mjs
) || die "see the report above"
say "all flows passed"
