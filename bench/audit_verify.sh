#!/usr/bin/env bash
# Benchmark: `pcii-portal audit verify` over N audit entries (default 1,000,000), in one run:
#
#   1. the full verify (`--full`) against `openssl dgst -sha256` over the same number of bytes (canonical
#      encodings plus Merkle nodes): entries/s and the ratio of the two times;
#   2. the incremental verify (the default): a checkpoint is signed at the end, a verify keeps it as the place to
#      start from, 1,000 more entries are appended, and the next verify (which reads only those) is timed.
#
#   bench/audit_verify.sh [N]
#   BENCH_RUNS=3        runs of each timed command; the median is reported
#   BENCH_DIR=/path     where the temp dir goes (default: $TMPDIR or /tmp)
#   CARGO_TARGET_DIR    honoured for the release build
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
RUNS="${BENCH_RUNS:-3}"
MORE=1000
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet --bin pcii-portal --example audit_fill
bin="$target/release/pcii-portal"
fill="$target/release/examples/audit_fill"
work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/pcii-audit-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export PCII_CONFIG=/nonexistent.toml PCII_DATA_DIR="$work/data" PCII_KEYS_DIR="$work/keys" PCII_LOG=warn
now() { date +%s.%N; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { print a - b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
# Wall time, in seconds, of one run of a command (its output discarded; it must succeed).
once() {
    local t0 t1
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    minus "$t1" "$t0"
}

echo "filling $N audit entries (through the real append path) ..."
t0=$(now)
read -r count bytes < <("$fill" "$N" 2>/dev/null | tail -1)
t1=$(now)
printf 'filled       : %d entries in %.0f s\n' "$count" "$(minus "$t1" "$t0")"

head -c "$bytes" /dev/urandom > "$work/blob"
sync
# Taken in turns, so that whatever else the machine does weighs on both alike.
fulls=() ossls=()
for ((i = 0; i < RUNS; i++)); do
    fulls+=("$(once "$bin" audit verify --full)")
    ossls+=("$(once openssl dgst -sha256 "$work/blob")")
done
full=$(median "${fulls[@]}")
ossl=$(median "${ossls[@]}")
python3 - "$count" "$bytes" "$full" "$ossl" <<'PY'
import sys
count, nbytes = int(sys.argv[1]), int(sys.argv[2])
v, o = float(sys.argv[3]), float(sys.argv[4])
print(f"full verify  : {count} entries in {v:.2f} s = {count / v:,.0f} entries/s ({nbytes / v / 2**20:.0f} MiB/s hashed)")
print(f"openssl dgst : {nbytes} bytes in {o:.2f} s = {nbytes / o / 2**20:.0f} MiB/s")
print(f"ratio        : the full verify takes {v / o:.1f}x the time of openssl over the same bytes")
PY

"$bin" audit checkpoint >/dev/null
"$bin" audit verify >/dev/null
# Each run: 1,000 more entries, then the verify that reads them (and the few after the checkpoint it starts from).
times=()
for ((i = 0; i < RUNS; i++)); do
    "$fill" "$MORE" --append >/dev/null 2>&1
    t0=$(now)
    out=$("$bin" audit verify)
    t1=$(now)
    times+=("$(minus "$t1" "$t0")")
done
echo "$out" | head -1 | sed 's/, chain head [0-9a-f]*//; s/^/last run     : /'
printf 'incremental  : %s entries appended after a verified checkpoint, verified in %.2f s (the whole command)\n' \
    "$MORE" "$(median "${times[@]}")"
