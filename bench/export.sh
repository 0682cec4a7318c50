#!/usr/bin/env bash
# Benchmark: the officer's zip export of a submission holding one file of each size (default 100 MiB, 1 GiB),
# streamed from a release build on loopback. Prints the export throughput (MiB/s of plaintext), the same file's
# plain download by the officer (decrypted and verified, no zip), and `rage -d` decrypting the very ciphertext
# both read (the blob, with its data key: `examples/blob_key.rs` unwraps it with the key ring into a 0600 temp
# file), all measured in the same run, interleaved, median of BENCH_RUNS; then the ratios to `rage -d`, and the
# server's peak RSS during the export alone (VmHWM reset through /proc/PID/clear_refs just before the first
# export) next to its RSS when idle: memory must stay flat whatever the file size. The zip is checked with
# `unzip -t` (one more export, written to a file, when the disk has room for it). The timed runs all write to
# /dev/null; the blob is read once beforehand, so all three read it from the page cache. Before each measurement
# the script waits (up to BENCH_WAIT_QUIET seconds, default 300) for a quiet machine, and says so when it was not.
#
#   bench/export.sh [SIZE ...]     sizes as `head -c` takes them (default: 100M 1G)
#   BENCH_RUNS=3                   runs per size and tool (interleaved); the median is reported
#   PCII_BIN=/path/pcii-portal     measure that binary instead of building this tree's (an A/B against an older build)
#   BENCH_PORT=18094, BENCH_DIR=/path (temp dir; default $TMPDIR or /tmp), CARGO_TARGET_DIR honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then SIZES=("$@"); else SIZES=(100M 1G); fi
PORT="${BENCH_PORT:-18094}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
RUNS="${BENCH_RUNS:-3}"
if [ -n "${PCII_BIN:-}" ]; then
    cargo build --release --quiet --example blob_key
    bin="$PCII_BIN"
else
    cargo build --release --quiet --bin pcii-portal --example blob_key
    bin="$target/release/pcii-portal"
fi
blob_key="$target/release/examples/blob_key"
rage="$(command -v rage || true)"
if [ -z "$rage" ] && [ -x "$HOME/.cargo/bin/rage" ]; then rage="$HOME/.cargo/bin/rage"; fi
if [ -z "$rage" ]; then
    echo "installing rage (cargo install rage) ..." >&2
    cargo install --quiet rage
    rage="$HOME/.cargo/bin/rage"
fi

work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/pcii-export-bench.XXXXXX")"
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
# This run's organisations are never verified and send more than an unverified one may.
export PCII_MAX_UNVERIFIED_SENT_PER_ORGANISATION=1000000000 PCII_MAX_UNVERIFIED_SENT_BYTES_PER_ORGANISATION=1125899906842624 \
  PCII_MAX_UNVERIFIED_SENT_BYTES_TOTAL=1125899906842624
export PCII_CONFIG=/nonexistent.toml PCII_DATA_DIR="$work/data" PCII_KEYS_DIR="$work/keys" PCII_LOG=warn
export PCII_DATABASE_URL= PCII_ADDRESS=127.0.0.1 PCII_PORT="$PORT"
base="http://127.0.0.1:$PORT"
password="bench-$(openssl rand -hex 16)"
hwm() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$server_pid/status"; }
rss() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$server_pid/status"; }
csrf_of() { grep -o 'name="csrf" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//'; }
now() { date +%s.%N; }
# Seconds taken by a command.
timed() { local t0 t1; t0=$(now); "$@"; t1=$(now); echo "$t1 - $t0" | bc; }
# shellcheck source=bench/quiet.sh
source bench/quiet.sh
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

"$bin" keys init >/dev/null 2>&1
for who in "submitter --new-organisation BenchOrg" "officer"; do
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

printf '%-6s %7s %9s %8s %8s %9s %8s %18s %9s %s\n' size "export" "download" "rage -d" \
    "exp/rage" "down/rage" "exp/down" "peak RSS (export)" "idle RSS" "unzip -t"
printf '%-6s %7s %9s %8s %8s %9s %8s %18s %9s %s\n' "" "MiB/s" "MiB/s" "MiB/s" "" "" "" "MiB" "MiB" ""
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
    rm -f "$file"
    oj="$work/officer.jar"
    att="$(curl -sf -b "$oj" "$base/officer/submissions/$id" | grep -o 'files/[0-9a-f]\{32\}' | head -1 | cut -d/ -f2)"
    # The blob and its data key, for rage.
    key="$work/data-key-$size.txt"
    blob="$("$blob_key" "$att" "$key")"
    cat "$blob" > /dev/null
    : > "$work/t-export"; : > "$work/t-download"; : > "$work/t-rage"
    check="skipped"; peak=""
    for run in $(seq 1 "$RUNS"); do
        echo "size $size run $run/$RUNS ..." >&2
        wait_quiet
        code="$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -b "$oj" \
            "$base/officer/submissions/$id/files/$att")"
        [ "${code%% *}" = 200 ] || { echo "download failed: $code" >&2; exit 1; }
        echo "${code#* }" >> "$work/t-download"
        wait_quiet
        [ "$run" = 1 ] && echo 5 > "/proc/$server_pid/clear_refs"
        code="$(curl -s -o /dev/null -w '%{http_code} %{time_total}' -b "$oj" \
            "$base/officer/submissions/$id/export")"
        [ "${code%% *}" = 200 ] || { echo "export failed: $code" >&2; exit 1; }
        echo "${code#* }" >> "$work/t-export"
        [ "$run" = 1 ] && peak="$(hwm)"
        wait_quiet
        timed "$rage" -d -i "$key" -o /dev/null "$blob" >> "$work/t-rage"
    done
    # The archive itself, checked once (if the disk has room for it).
    if command -v unzip >/dev/null && [ "$(df -B1 --output=avail "$work" | tail -1)" -gt $((bytes + bytes / 10 + 67108864)) ]; then
        curl -sf -o "$work/export.zip" -b "$oj" "$base/officer/submissions/$id/export"
        if unzip -tqq "$work/export.zip" >/dev/null; then check=ok; else check=FAILED; fi
        rm -f "$work/export.zip"
    fi
    rm -f "$key"
    awk -v b="$bytes" -v e="$(median < "$work/t-export")" -v o="$(median < "$work/t-download")" \
        -v r="$(median < "$work/t-rage")" -v s="$size" -v p="$peak" -v i="$idle_rss" -v c="$check" 'BEGIN {
        m = b / 1048576; ex = m / e; dl = m / o; rg = m / r
        printf "%-6s %7.0f %9.0f %8.0f %7.2fx %8.2fx %7.2fx %18s %9s %s\n", s, ex, dl, rg, ex / rg, dl / rg, ex / dl, p, i, c }'
done
