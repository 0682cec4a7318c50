#!/usr/bin/env bash
# Benchmark: `pcii-portal keys rotate` (a new master identity, every data key re-wrapped to it, the old identity
# retired) on a fresh data dir holding N submissions, each with its own wrapped data key (default 100,000; a few
# of them with a small sealed blob). Prints submissions re-wrapped per second and the total time, and, measured in
# the same run on the same data keys, the bare age work of a re-wrap (decrypt each wrapped key with the master
# identity, encrypt it to the master + escrow recipients; library calls in memory, on every core, no database) with
# the ratio. Afterwards every data key must be wrapped to the new master and unwrap with the ring as it is now,
# and the blobs must read back (`examples/data_keys_fill.rs verify`); `keys list` is shown.
#
#   bench/rotate.sh [N]                 number of submissions (default 100000)
#   BENCH_DIR=/path                     where the temp dir goes (default: $TMPDIR or /tmp)
#   BENCH_WAIT_QUIET=300               before each measurement wait up to this many seconds for an idle machine
#   BENCH_ESCROW=age1...                also wrap every data key to this escrow recipient (default: none)
#   CARGO_TARGET_DIR                    honoured for the release build
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet --bin pcii-portal --example data_keys_fill
bin="$target/release/pcii-portal"
fill="$target/release/examples/data_keys_fill"

work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/pcii-rotate-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# This run's organisations are never verified and send more than an unverified one may.
export PCII_MAX_UNVERIFIED_SENT_PER_ORGANISATION=1000000000 PCII_MAX_UNVERIFIED_SENT_BYTES_PER_ORGANISATION=1125899906842624 \
  PCII_MAX_UNVERIFIED_SENT_BYTES_TOTAL=1125899906842624
export PCII_CONFIG=/nonexistent.toml PCII_DATA_DIR="$work/data" PCII_KEYS_DIR="$work/keys" PCII_LOG=warn
export PCII_DATABASE_URL=
if [ -n "${BENCH_ESCROW:-}" ]; then export PCII_ESCROW_RECIPIENTS="[\"$BENCH_ESCROW\"]"; fi
now() { date +%s.%N; }
# shellcheck source=bench/quiet.sh
source bench/quiet.sh

echo "filling $N submissions with a data key each ..." >&2
"$fill" fill "$N" 3
db_bytes="$(du -cb "$work"/data/*.sqlite3* 2>/dev/null | tail -1 | cut -f1)"

# The floor: the same age operations on the same stored keys, without the database. Run twice, the best counts
# (the first run also warms the page cache for the rotation's reads).
base_best=""
for _ in 1 2; do
    wait_quiet
    read -r base_n base_s threads < <("$fill" baseline "$N")
    if [ -z "$base_best" ] || awk -v a="$base_s" -v b="$base_best" 'BEGIN {exit !(a < b)}'; then base_best="$base_s"; fi
done

sync -f "$work"
wait_quiet
t0=$(now)
/usr/bin/time -f '%U %S %M' -o "$work/time.txt" "$bin" keys rotate > "$work/rotate.out" 2> "$work/rotate.err" || {
    echo "keys rotate failed:" >&2; cat "$work/rotate.out" "$work/rotate.err" >&2; exit 1; }
t1=$(now)
read -r user sys maxrss < "$work/time.txt"
grep -v '^\s*$' "$work/rotate.out" | sed 's/^/  keys rotate: /'
rewrapped="$(sed -n 's/^rotation complete: \([0-9]*\) data key.*/\1/p' "$work/rotate.out")"
[ "$rewrapped" = "$N" ] || { echo "keys rotate re-wrapped ${rewrapped:-?} data keys, not $N" >&2; exit 1; }

"$fill" verify 3 | sed 's/^/  verify: /'
"$bin" keys list | sed 's/^/  keys list: /'

awk -v n="$N" -v t0="$t0" -v t1="$t1" -v u="$user" -v s="$sys" -v m="$maxrss" -v bn="$base_n" -v bs="$base_best" \
    -v th="$threads" -v db="$db_bytes" 'BEGIN {
    secs = t1 - t0; rate = n / secs; brate = bn / bs
    printf "\n%d submissions (database %.0f MiB), %d cores\n", n, db / 1048576, th
    printf "keys rotate:          %8.2f s  %8.0f submissions re-wrapped/s  (CPU %.2f s user + %.2f s sys, peak RSS %.1f MiB)\n", secs, rate, u, s, m / 1024
    printf "bare age re-wrap:     %8.2f s  %8.0f data keys/s  (library decrypt + encrypt in memory, %d threads, best of 2)\n", bs * n / bn, brate, th
    printf "ratio (rotate / bare age): %.2fx   goal: the whole store in under 60 s: %s\n", rate / brate, (secs < 60 ? "met" : "NOT met")
}'
