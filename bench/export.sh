#!/usr/bin/env bash
# Benchmark: the officer's zip export of a submission holding one file of each size (default 100 MiB, 1 GiB),
# streamed from a release build on loopback. Prints the export throughput (MiB/s of plaintext), the same file's
# plain download by the officer (decrypted and verified, no zip) as the baseline measured in the same run, their
# ratio, and the server's peak RSS during the export alone (VmHWM reset through /proc/PID/clear_refs just before)
# next to its RSS when idle: memory must stay flat whatever the file size. The zip is checked with `unzip -t`.
#
#   bench/export.sh [SIZE ...]     sizes as `head -c` takes them (default: 100M 1G)
#   BENCH_PORT=18094, BENCH_DIR=/path (temp dir; default $TMPDIR or /tmp), CARGO_TARGET_DIR honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then SIZES=("$@"); else SIZES=(100M 1G); fi
PORT="${BENCH_PORT:-18094}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet --bin pcii-portal
bin="$target/release/pcii-portal"

work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/pcii-export-bench.XXXXXX")"
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
export PCII_CONFIG=/nonexistent.toml PCII_DATA_DIR="$work/data" PCII_KEYS_DIR="$work/keys" PCII_LOG=warn
export PCII_DATABASE_URL= PCII_ADDRESS=127.0.0.1 PCII_PORT="$PORT"
base="http://127.0.0.1:$PORT"
password="bench-$(openssl rand -hex 16)"
hwm() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$server_pid/status"; }
rss() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$server_pid/status"; }
csrf_of() { grep -o 'name="csrf" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//'; }
now() { date +%s.%N; }

for who in "submitter --organisation BenchOrg" "officer"; do
    role="${who%% *}"
    # shellcheck disable=SC2086
    printf '%s\n' "$password" | "$bin" user add --email "$role@bench.example" --role $who --password-stdin >/dev/null 2>&1
done
"$bin" serve > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 200); do curl -sf -o /dev/null "$base/healthz" && break; sleep 0.1; done
curl -sf -o /dev/null "$base/healthz" || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
login() {
    local jar="$work/$1.jar" token code
    token="$(curl -sf -c "$jar" -b "$jar" "$base/login" | csrf_of)"
    code="$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" --data-urlencode "email=$1@bench.example" \
        --data-urlencode "password=$password" --data-urlencode "csrf=$token" "$base/login")"
    [ "$code" = 303 ] || { echo "login of $1 failed: $code" >&2; exit 1; }
}
login submitter
login officer
idle_rss="$(rss)"

printf '%-6s %12s %14s %8s %22s %14s %s\n' size "export MiB/s" "download MiB/s" ratio "peak RSS (export) MiB" "idle RSS MiB" "unzip -t"
for size in "${SIZES[@]}"; do
    file="$work/in-$size.bin"
    head -c "$size" /dev/urandom > "$file"
    bytes="$(stat -c %s "$file")"
    sj="$work/submitter.jar"
    token="$(curl -sf -b "$sj" -c "$sj" "$base/submissions/new" | csrf_of)"
    loc="$(curl -s -o /dev/null -w '%{redirect_url}' -H 'Expect:' -b "$sj" -c "$sj" \
        -F "csrf=$token" -F sector=Energy -F title=bench -F narrative=bench -F primary_name=Bench \
        -F primary_email=bench@bench.example -F federal_requirement=no -F description_1=bench \
        -F "file_1=@$file;type=application/octet-stream" -F express_statement=yes -F cert_not_public=yes \
        -F cert_not_regulatory=yes -F cert_authorized=yes -F action=submit "$base/submissions")"
    id="$(echo "$loc" | sed -n 's#.*/submissions/\([0-9a-f]*\)/receipt#\1#p')"
    [ -n "$id" ] || { echo "upload of $size failed; server log:" >&2; tail "$work/server.log" >&2; exit 1; }
    oj="$work/officer.jar"
    att="$(curl -sf -b "$oj" "$base/officer/submissions/$id" | grep -o 'files/[0-9a-f]\{32\}' | head -1 | cut -d/ -f2)"
    t2=$(now)
    code="$(curl -s -o /dev/null -w '%{http_code}' -b "$oj" "$base/officer/submissions/$id/files/$att")"
    t3=$(now)
    [ "$code" = 200 ] || { echo "download failed: $code" >&2; exit 1; }
    echo 5 > "/proc/$server_pid/clear_refs"
    t0=$(now)
    code="$(curl -s -o "$work/export.zip" -w '%{http_code}' -b "$oj" "$base/officer/submissions/$id/export")"
    t1=$(now)
    [ "$code" = 200 ] || { echo "export failed: $code" >&2; exit 1; }
    peak="$(hwm)"
    check="skipped"
    if command -v unzip >/dev/null; then
        if unzip -tqq "$work/export.zip" >/dev/null; then check=ok; else check=FAILED; fi
    fi
    awk -v b="$bytes" -v e="$(echo "$t1 - $t0" | bc)" -v o="$(echo "$t3 - $t2" | bc)" -v s="$size" \
        -v p="$peak" -v i="$idle_rss" -v c="$check" 'BEGIN {
        m = b / 1048576; printf "%-6s %12.0f %14.0f %8.2f %22s %14s %s\n", s, m / e, m / o, (m / e) / (m / o), p, i, c }'
    rm -f "$file" "$work/export.zip"
done
