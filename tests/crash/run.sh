#!/usr/bin/env bash
# The crash-consistency suite: starts the release binary on loopback with fresh data and key directories and, on
# one store, kill -9s it (or `keys rotate`) in the middle of four kinds of work, restarts it on the same data and
# keys, and checks that every acknowledged action is present exactly once, that nothing partial, orphaned or
# temporary is left, and that `pcii-portal audit verify` exits 0. One line per scenario with its result and how many
# acknowledged actions it checked; exit status 0 only when every scenario passed.
#
#   1. upload       concurrent large uploads (two files each) killed mid-stream
#   2. decisions    an officer's burst of decisions (validate / defective / not validated) killed mid-burst
#   3. rotation     `pcii-portal keys rotate` killed at ever later moments, each time rerun to completion
#   4. destruction  a burst of destructions (withdrawal with destruction, destruction after "not validated")
#
# The driver is tests/crash/crash.py (Python 3 standard library only); it reads the SQLite database read-only.
#
#   tests/crash/run.sh                   from anywhere; builds the release binary unless PCII_BIN is set
#   PCII_BIN=/path/to/pcii-portal        use this binary (no build); else $CARGO_TARGET_DIR/release/pcii-portal
#   PCII_CRASH_KEEP=1                    keep the temporary directory (server logs, data, keys) for a look
#   PCII_CRASH_UPLOAD_MIB=96             size of the largest upload; the uploaders' files are spread up to it
#   PCII_CRASH_UPLOADERS=4               concurrent uploaders in scenario 1
#   PCII_CRASH_SUBMISSIONS=150           submissions prepared for the decision burst (and the key store's size)
#   PCII_CRASH_ROTATE_KILLS=8            interrupted rotations in scenario 3
#   PCII_CRASH_THREADS=8                 concurrent requests in the decision and destruction bursts
#   PCII_CRASH_ONLY="upload rotation"    run only these scenarios (the others' preparation is skipped)
#   PCII_CRASH_SEED=N                    repeat a run's random choices (the seed is printed)
#   PCII_CRASH_STRICT_ORPHANS=1          fail on orphan blobs already at the first restart, within the grace period
#   PCII_CRASH_DIR=/path                 where the temporary directory goes (default: $TMPDIR or /tmp)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

die() { echo "crash suite FAILED: $*" >&2; exit 1; }

if [ -z "${PCII_BIN:-}" ]; then
  echo "== crash: cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet --bin pcii-portal)
fi
BIN="${PCII_BIN:-$TARGET/release/pcii-portal}"
[ -x "$BIN" ] || die "no release binary at $BIN"
command -v python3 >/dev/null || die "python3 is not installed"
python3 -c 'import sqlite3' 2>/dev/null || die "python3 has no sqlite3 module"

WORK="$(mktemp -d "${PCII_CRASH_DIR:-${TMPDIR:-/tmp}}/pcii-crash.XXXXXX")"
DRIVER_PID=""
cleanup() {
  local status=$?
  # The driver kills what it starts; if it died or was interrupted, the pid files name what may still run.
  if [ -n "$DRIVER_PID" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
    kill "$DRIVER_PID" 2>/dev/null || true
    wait "$DRIVER_PID" 2>/dev/null || true
  fi
  for f in "$WORK"/pids/*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q pcii "/proc/$pid/cmdline" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ "$status" -ne 0 ]; then
    # The servers' warnings and errors (each start has its own log; kills leave no last words), without the
    # routine ones of every start on loopback.
    notable="$(cat "$WORK"/server-*.log 2>/dev/null | grep -E " (WARN|ERROR) |panicked" |
      grep -v -E "passkeys are off|deprecated config key|Rocket has launched|default catcher" | tail -n 20 || true)"
    if [ -n "$notable" ]; then
      echo "---- warnings and errors in the server logs (last 20)" >&2
      echo "$notable" >&2
    fi
    [ -n "${PCII_CRASH_KEEP:-}" ] || echo "(PCII_CRASH_KEEP=1 keeps the data, keys and server logs)" >&2
  fi
  if [ -n "${PCII_CRASH_KEEP:-}" ]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== crash: kill -9 mid-upload, mid-decision burst, mid-rotation and mid-destruction"
PCII_CRASH_WORK="$WORK" PCII_CRASH_BIN="$BIN" python3 -u "$ROOT/tests/crash/crash.py" &
DRIVER_PID=$!
status=0
wait "$DRIVER_PID" || status=$?
DRIVER_PID=""
exit "$status"
