#!/usr/bin/env bash
# Benchmark: the officer's queue over N submissions (default 100,000) on the release build, through HTTP.
# Fills a fresh data directory, starts the release server, signs in as an officer, then times R requests
# (default 50) of each queue page below and of GET /healthz in the same run (one keep-alive connection per
# page, after one warm-up request). Prints median and p95 per page in ms and the ratio to /healthz.
#   bench/officer_queue.sh [N] [R]          PORT (default 18731) and CARGO_TARGET_DIR are honoured;
#   BENCH_DATABASE_URL=postgres://... (an empty database) runs it on PostgreSQL instead of SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
R="${2:-50}"
PORT="${PORT:-18731}"
BIN="${CARGO_TARGET_DIR:-target}/release"
features=()
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  features=(--features postgres)
  export PCII_DATABASE_URL="$BENCH_DATABASE_URL"
fi
cargo build --release --quiet "${features[@]}" --bin pcii-portal --example queue_fill
work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export PCII_CONFIG=/nonexistent.toml PCII_DATA_DIR="$work/data" PCII_KEYS_DIR="$work/keys" PCII_LOG=warn
export PCII_ADDRESS=127.0.0.1 PCII_PORT="$PORT"
base="http://127.0.0.1:$PORT"

echo "filling $N submissions ..."
"$BIN/examples/queue_fill" "$N" 2>/dev/null | tail -1
if [ -n "${BENCH_DATABASE_URL:-}" ]; then psql -q "$BENCH_DATABASE_URL" -c 'VACUUM ANALYZE submissions' >/dev/null; fi
password="bench-officer-passphrase-$RANDOM$RANDOM"
printf '%s\n' "$password" |
  "$BIN/pcii-portal" user add --email officer@bench.example --role officer --password-stdin >/dev/null 2>&1

"$BIN/pcii-portal" serve >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "$base/healthz" && break
  sleep 0.2
done
curl -sf -o /dev/null "$base/healthz" || { cat "$work/server.log"; exit 1; }

jar="$work/cookies"
csrf="$(curl -s -c "$jar" -b "$jar" "$base/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)"
code="$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
  --data-urlencode "csrf=$csrf" --data-urlencode "email=officer@bench.example" \
  --data-urlencode "password=$password" "$base/login")"
[ "$code" = 303 ] || { echo "login failed ($code)"; exit 1; }

# The organisation with the most open submissions is the first one queue_fill made (its ids are random).
org="$(curl -s -b "$jar" "$base/officer" |
  sed -n 's/.*<option value="\([0-9a-f]\{32\}\)">Benchmark Utility 001<.*/\1/p' | head -1)"
[ -n "$org" ] || { echo "no organisation found on the queue page"; exit 1; }

pages=(
  "/healthz"
  "/officer"
  "/officer?page=280"
  "/officer?page=999999"
  "/officer?sort=newest&page=400"
  "/officer?status=overdue"
  "/officer?status=overdue&sort=newest&page=200"
  "/officer?sort=notice&page=300"
  "/officer?sort=cure"
  "/officer?status=received&sort=notice&page=100"
  "/officer?status=defective&sort=cure&page=100"
  "/officer?sector=Energy"
  "/officer?sector=Nuclear%20Reactors,%20Materials,%20and%20Waste&status=overdue&sort=cure&page=10"
  "/officer?organisation=$org"
  "/officer?organisation=$org&status=received&sort=newest&page=30"
  "/officer?organisation=$org&sector=Dams&status=overdue"
)

results="$work/results"
: >"$results"
for p in "${pages[@]}"; do
  conf="$work/curl.conf"
  : >"$conf"
  for _ in $(seq 0 "$R"); do printf 'url = "%s%s"\noutput = "/dev/null"\n' "$base" "$p" >>"$conf"; done
  # One connection for the page's requests; the first is the warm-up and is dropped.
  curl -s -b "$jar" -w '%{http_code} %{time_total}\n' -K "$conf" | tail -n +2 |
    while read -r status t; do printf '%s\t%s\t%s\n' "$p" "$status" "$t"; done >>"$results"
done

python3 - "$results" "$N" "$R" <<'PY'
import os, statistics, sys
path, n, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = {}
for line in open(path):
    page, status, t = line.rstrip("\n").split("\t")
    rows.setdefault(page, []).append((status, float(t) * 1000))
def p95(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
base = statistics.median(t for _, t in rows["/healthz"])
backend = "PostgreSQL" if os.environ.get("BENCH_DATABASE_URL") else "SQLite"
print(f"{n} submissions on {backend}, {r} requests per page (release build, one keep-alive connection per page)")
print(f"{'page':<92} {'status':>6} {'median':>9} {'p95':>9} {'x healthz':>9}")
worst = 0.0
for page, samples in rows.items():
    times = [t for _, t in samples]
    codes = ",".join(sorted({s for s, _ in samples}))
    med = statistics.median(times)
    if page != "/healthz":
        worst = max(worst, p95(times))
    print(f"{page:<92} {codes:>6} {med:8.1f}ms {p95(times):8.1f}ms {med / base:8.1f}x")
print(f"worst p95 over the queue pages: {worst:.1f} ms (target: under 100 ms)")
PY
