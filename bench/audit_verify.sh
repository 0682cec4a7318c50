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
#   BENCH_WAIT_QUIET=300  before each full verify and openssl run, wait up to this many seconds for an idle machine
#   CARGO_TARGET_DIR    honoured for the release build
#
# Each full verify and openssl run also records the CPU time it used and what the rest of the machine used meanwhile
# (steal included): the verify needs both cores and openssl one, so another job on the machine weighs on the ratio.
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
# shellcheck source=bench/quiet.sh
source bench/quiet.sh
# One run of a command after waiting for a quiet machine: prints "<wall s> <its CPU s> <other CPU s on the machine>".
measured() {
    local b0 b1 t0 t1
    wait_quiet
    b0="$(busy_ticks)"; t0=$(now)
    /usr/bin/time -f '%U %S' -o "$work/time.txt" "$@" >/dev/null
    t1=$(now); b1="$(busy_ticks)"
    awk -v t0="$t0" -v t1="$t1" -v b0="$b0" -v b1="$b1" -v hz="$tick_hz" '
        NR == 1 { own = $1 + $2; other = (b1 - b0) / hz - own; if (other < 0) other = 0
                  printf "%.4f %.2f %.2f\n", t1 - t0, own, other }' "$work/time.txt"
}

echo "filling $N audit entries (through the real append path) ..."
t0=$(now)
read -r count bytes < <("$fill" "$N" 2>/dev/null | tail -1)
t1=$(now)
printf 'filled       : %d entries in %.0f s\n' "$count" "$(minus "$t1" "$t0")"

head -c "$bytes" /dev/urandom > "$work/blob"
sync
# Taken in turns, each after a quiet moment.
fulls=() ossls=() runs=()
for ((i = 0; i < RUNS; i++)); do
    # (Assigned first, so that a failing command stops the script.)
    line=$(measured "$bin" audit verify --full)
    read -r v_wall v_cpu v_other <<< "$line"
    line=$(measured openssl dgst -sha256 "$work/blob")
    read -r o_wall o_cpu o_other <<< "$line"
    fulls+=("$v_wall") ossls+=("$o_wall")
    runs+=("$(awk -v v="$v_wall" -v o="$o_wall" -v vc="$v_cpu" -v oc="$o_cpu" -v vo="$v_other" -v oo="$o_other" \
        'BEGIN { printf "%.2f/%.2f s = %.2fx (CPU %.2f/%.2f s, other %.2f/%.2f)", v, o, v / o, vc, oc, vo, oo }')")
done
full=$(median "${fulls[@]}")
ossl=$(median "${ossls[@]}")
python3 - "$count" "$bytes" "$full" "$ossl" <<'PY'
import sys
count, nbytes = int(sys.argv[1]), int(sys.argv[2])
v, o = float(sys.argv[3]), float(sys.argv[4])
print(f"full verify  : {count} entries in {v:.2f} s = {count / v:,.0f} entries/s ({nbytes / v / 2**20:.0f} MiB/s hashed)")
print(f"openssl dgst : {nbytes} bytes in {o:.2f} s = {nbytes / o / 2**20:.0f} MiB/s")
print(f"ratio        : the full verify takes {v / o:.2f}x the time of openssl over the same bytes (medians)")
print(f"target       : full verify <= 2.5x openssl: {'met' if v / o <= 2.5 else 'NOT met'}")
PY
echo "each run     : verify/openssl wall, ratio, each one's CPU time, and the CPU the rest of the machine used meanwhile"
printf '               %s\n' "${runs[@]}"

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
