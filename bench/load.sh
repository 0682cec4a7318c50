#!/usr/bin/env bash
# Benchmark: a storm of logins (argon2id, 19 MiB each) and concurrent uploads while signed-in submitters browse, on a
# release build through HTTP on loopback. Measures what the reliability goal names: "a storm of 20-40 logins leaves
# the server's RSS within 100 MiB of its idle level, and other pages keep p99 under 250 ms during it".
#
#   bench/load.sh
#   PCII_BIN=/path/to/pcii-portal       use this binary (no build); otherwise `cargo build --release` and
#                                       $CARGO_TARGET_DIR/release/pcii-portal (default target/)
#   BENCH_SESSIONS=50                   signed-in submitter sessions browsing (one account each, 5 per organisation)
#   BENCH_THINK_MS=500                  each session waits uniformly 0..2x this between pages (~2 pages/s each)
#   BENCH_SECONDS=30                    length of the baseline phase (a), and the least length of phase (b)
#   BENCH_LOGINS=20                     logins of the storm (half with the right password, half with a wrong one)
#   BENCH_LOGINS2=40                    then a second storm of this many on a fresh server (0 = skip)
#   BENCH_UPLOADS=4                     uploads sent at the same moment as the storm (0 = none) ...
#   BENCH_UPLOAD_SIZE=100M              ... of this size each (as `head -c` takes it)
#   BENCH_SETTLE=5                      "after" RSS is read at least this many seconds after the storm and uploads
#   BENCH_PORT=18094                    loopback port of the server
#   BENCH_DIR=/path                     where the temp dir goes (default: $TMPDIR or /tmp; the data dir, the
#                                       uploads' blobs (BENCH_UPLOADS x size per storm) and the upload file)
#   BENCH_WAIT_QUIET=120                before each measured server wait up to this many seconds for an idle machine
#
# Set-up (not measured): BENCH_SESSIONS accounts made with `pcii-portal user add` (so neither email confirmation
# nor the registrations_per_hour throttle is involved), signed in over HTTP on a set-up server that is then
# stopped, so the measured server starts without having hashed a password. Each organisation gets one small draft.
# Then, per storm, a fresh server on the same data (the sessions stay valid):
#   idle      VmRSS of the fresh server before any request
#   (a)       the sessions browse alone (after 2 s of warm-up) for BENCH_SECONDS: GET /submissions, the
#             organisation's draft /submissions/ID, /account, /submissions/new, /dashboard (a 303)
#   (b)       the same browsing goes on; 2 s in, the storm's POST /login requests (each having fetched its form
#             first) and the uploads' POST /submissions (curl) are all released at once. Pages are reported
#             "during the storm" (in flight at any moment between the first login sent and the last answered),
#             "during storm+uploads" (until the last upload answered too), after, and for the whole phase.
#             Login latency is the POST /login alone. Failed logins are throttled per account+address (5 per
#             60 s) and per address (4x that); everything here comes from 127.0.0.1, so the bench raises
#             PCII_LOGIN_MAX_FAILURES to 1000000 for every wrong password to really be hashed. PCII_LOGIN_ATTEMPTS_PER_MINUTE likewise (every login comes from 127.0.0.1).
#   peak      VmHWM of the server (its highest RSS since it started); "after": VmRSS BENCH_SETTLE s after the
#             load ended (browsing still on), and again 2 s after browsing stopped
#   (c)       after - idle (goal: <= 100 MiB), p99 of pages during the storm (goal: < 250 ms), storm/baseline p99
# Latency: from sending the request to having read the whole answer (Python http.client, one keep-alive connection
# and one thread per session). Errors: answers other than 2xx/3xx, counted by status, and failed connections by
# exception. Percentiles are nearest-rank. CPU lines split the machine's CPU between the server, this driver, curl
# and everything else (other jobs on a shared machine skew the figures; they are shown).
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS="${BENCH_SESSIONS:-50}"
THINK_MS="${BENCH_THINK_MS:-500}"
SECS="${BENCH_SECONDS:-30}"
LOGINS="${BENCH_LOGINS:-20}"
LOGINS2="${BENCH_LOGINS2:-40}"
UPLOADS="${BENCH_UPLOADS:-4}"
UPLOAD_SIZE="${BENCH_UPLOAD_SIZE:-100M}"
SETTLE="${BENCH_SETTLE:-5}"
PORT="${BENCH_PORT:-18094}"

target="${CARGO_TARGET_DIR:-$PWD/target}"
if [ -z "${PCII_BIN:-}" ]; then cargo build --release --quiet --bin pcii-portal; fi
bin="${PCII_BIN:-$target/release/pcii-portal}"
[ -x "$bin" ] || { echo "no server binary at $bin" >&2; exit 1; }
driver="$PWD/bench/load_driver.py"

work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/pcii-load-bench.XXXXXX")"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT

# This run's organisations are never verified and send more than an unverified one may.
export PCII_MAX_UNVERIFIED_SENT_PER_ORGANISATION=1000000000 PCII_MAX_UNVERIFIED_SENT_BYTES_PER_ORGANISATION=1125899906842624 \
  PCII_MAX_UNVERIFIED_SENT_BYTES_TOTAL=1125899906842624
export PCII_CONFIG=/nonexistent.toml PCII_DATA_DIR="$work/data" PCII_KEYS_DIR="$work/keys" PCII_LOG=warn
export PCII_DATABASE_URL=
export PCII_ADDRESS=127.0.0.1 PCII_PORT="$PORT"   # Rocket's own keys are read with the PCII_ prefix
export PCII_LOGIN_MAX_FAILURES=1000000             # see above: the storm's wrong passwords must be hashed
export PCII_LOGIN_ATTEMPTS_PER_MINUTE=1000000       # and no attempt refused by the per-address rate (all come from 127.0.0.1)
base="http://127.0.0.1:$PORT"
password="bench-$(openssl rand -hex 16)"

wait_quiet_default=120
# shellcheck source=bench/quiet.sh
source bench/quiet.sh

start_server() {
    "$bin" serve > "$work/server-$1.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 150); do
        curl -sf -o /dev/null "$base/healthz" && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "the server did not start; its log:" >&2
    cat "$work/server-$1.log" >&2
    exit 1
}

# Server log lines worth a look (PCII_LOG=warn: warnings and errors).
log_notes() {
    local log="$work/server-$1.log" errors warns
    errors="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -cE '^[^ ]+ +ERROR |panicked' || true)"
    warns="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -cE '^[^ ]+ +WARN ' || true)"
    echo "server log: $errors error line(s), $warns warning(s)"
    sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^[^ ]+ +ERROR |panicked' | head -5 | cut -c1-300 | sed 's/^/  /' || true
}

t_start=$(date +%s)
echo "set-up: $SESSIONS accounts (pcii-portal user add), signing them in on a set-up server ..." >&2
"$bin" keys init >/dev/null 2>&1
accounts="$work/accounts.txt"
: > "$accounts"
org_id=""
for i in $(seq 0 $((SESSIONS - 1))); do
    email="bench-$i@example.org"
    if [ $((i % 5)) = 0 ]; then
        out="$(printf '%s\n' "$password" | "$bin" user add --email "$email" --role submitter \
            --new-organisation "Load Bench Org $((i / 5))" --password-stdin 2>&1)" || { echo "$out" >&2; exit 1; }
        org_id="$(sed -n 's/.* in organisation \([^ ]*\).*/\1/p' <<< "$out")"
        [ -n "$org_id" ] || { echo "no organisation id in: $out" >&2; exit 1; }
    else
        out="$(printf '%s\n' "$password" | "$bin" user add --email "$email" --role submitter \
            --organisation-id "$org_id" --password-stdin 2>&1)" || { echo "$out" >&2; exit 1; }
    fi
    echo "$email $password $org_id" >> "$accounts"
done
start_server setup
python3 "$driver" setup "$base" "$accounts" "$work/sessions.json"
stop_server

upload_file="$work/upload.bin"
head -c "$UPLOAD_SIZE" /dev/urandom > "$upload_file"
cat "$upload_file" > /dev/null
t_setup=$(($(date +%s) - t_start))

summary="$work/summary.jsonl"
: > "$summary"
storms=("$LOGINS")
if [ "$LOGINS2" -gt 0 ]; then storms+=("$LOGINS2"); fi
echo "load benchmark: $(nproc) cores, release build $bin, HTTP on loopback"
echo "$SESSIONS sessions (5 accounts per organisation) browsing with 0..$((2 * THINK_MS)) ms between pages;" \
    "storms of ${storms[*]} logins (half wrong passwords; PCII_LOGIN_MAX_FAILURES=$PCII_LOGIN_MAX_FAILURES so none" \
    "is throttled) with $UPLOADS concurrent uploads of $UPLOAD_SIZE; db_pool_size ${PCII_DB_POOL_SIZE:-8 (default)};" \
    "set-up took ${t_setup} s"
for n in "${storms[@]}"; do
    echo >&2
    echo "storm of $n logins: fresh server, ${SECS} s baseline, then the storm ..." >&2
    wait_quiet
    start_server "storm-$n"
    echo
    python3 "$driver" run "$base" "$server_pid" "$work/sessions.json" --sessions-n "$SESSIONS" \
        --seconds "$SECS" --think-ms "$THINK_MS" --logins "$n" --uploads "$UPLOADS" \
        --upload-file "$upload_file" --settle "$SETTLE" --summary "$summary"
    stop_server
    log_notes "storm-$n"
done
echo
echo "=== summary ==="
python3 "$driver" summary "$summary"
echo "wall time $(($(date +%s) - t_start)) s"
