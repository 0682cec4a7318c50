#!/usr/bin/env bash
# Benchmark: `pcii-portal audit verify` over N audit entries (default 1,000,000) against `openssl dgst -sha256`
# over the same number of bytes, in one run. Prints entries/s and the ratio of the two times.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
cargo build --release --quiet --bin pcii-portal --example audit_fill
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PCII_CONFIG=/nonexistent.toml PCII_DATA_DIR="$work/data" PCII_KEYS_DIR="$work/keys" PCII_LOG=warn
echo "filling $N audit entries (through the real append path) ..."
read -r count bytes < <(./target/release/examples/audit_fill "$N" 2>/dev/null | tail -1)
now() { date +%s.%N; }
t0=$(now); ./target/release/pcii-portal audit verify >/dev/null 2>&1; t1=$(now)
head -c "$bytes" /dev/urandom > "$work/blob"
sync
t2=$(now); openssl dgst -sha256 "$work/blob" >/dev/null; t3=$(now)
python3 - "$count" "$bytes" "$t0" "$t1" "$t2" "$t3" <<'PY'
import sys
count, nbytes = int(sys.argv[1]), int(sys.argv[2])
t0, t1, t2, t3 = map(float, sys.argv[3:])
v, o = t1 - t0, t3 - t2
print(f"audit verify : {count} entries in {v:.2f} s = {count / v:,.0f} entries/s ({nbytes / v / 2**20:.0f} MiB/s hashed)")
print(f"openssl dgst : {nbytes} bytes in {o:.2f} s = {nbytes / o / 2**20:.0f} MiB/s")
print(f"ratio        : audit verify takes {v / o:.1f}x the time of openssl over the same bytes")
PY
