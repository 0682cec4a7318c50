#!/usr/bin/env bash
# Benchmark: upload files (default 100 MiB and 1 GiB) over HTTP on loopback to a release build, and encrypt the same
# files with the `rage` CLI to a file, in one run. Prints the median throughput of both (MiB/s), their ratio and the
# server's peak RSS (VmHWM), with a fresh server per file size.
#
#   bench/upload.sh [SIZE ...]          sizes as `head -c` takes them (default: 100M 1G)
#   BENCH_RUNS=3                        runs per size and tool; the median is reported
#   BENCH_DIR=/path                     where the temp dir goes (default: $TMPDIR or /tmp; the test files, the
#                                       portal's data dir and rage's output are all in it, i.e. on one disk)
#   BENCH_PORT=18093                    loopback port of the server
#   BENCH_WAIT_QUIET=300                before each measurement wait up to this many seconds for an idle machine
#   BENCH_REPEAT=40                     then, on one more fresh server, this many 64 MiB uploads one after the other
#                                       and 5 rounds of 4 at once, printing the server's RSS as it goes (0 = skip)
#   BENCH_S3=1                          also upload each file to a server whose blob store is an S3 bucket (SeaweedFS
#                                       on loopback, started here: tests/s3/seaweedfs.sh), in the same run
#   CARGO_TARGET_DIR                    honoured for the release build
#
# "portal" is curl's time_total for the POST /submissions (request sent, blob sealed, fsynced, committed, 303 back).
# "rage" is `rage -r KEY -o OUT IN`; "rage+sync" also fsyncs OUT (the portal fsyncs its blob, rage does not).
# Ratios are portal / rage throughput. Both read the input from the page cache (it is read once beforehand).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -gt 0 ]; then SIZES=("$@"); else SIZES=(100M 1G); fi
RUNS="${BENCH_RUNS:-3}"
PORT="${BENCH_PORT:-18093}"

target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet --bin pcii-portal
bin="$target/release/pcii-portal"

rage="$(command -v rage || true)"
if [ -z "$rage" ] && [ -x "$HOME/.cargo/bin/rage" ]; then rage="$HOME/.cargo/bin/rage"; fi
if [ -z "$rage" ]; then
    echo "installing rage (cargo install rage) ..."
    cargo install --quiet rage
    rage="$HOME/.cargo/bin/rage"
fi
rage_keygen="$(dirname "$rage")/rage-keygen"

work="$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/pcii-upload-bench.XXXXXX")"
server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
S3="${BENCH_S3:-0}"
if [ "$S3" = 1 ]; then
    # shellcheck source=tests/s3/seaweedfs.sh
    source tests/s3/seaweedfs.sh
fi
trap 'stop_server; [ "$S3" != 1 ] || stop_seaweedfs; rm -rf "$work"' EXIT

# This run's organisations are never verified and send more than an unverified one may.
export PCII_MAX_UNVERIFIED_SENT_PER_ORGANISATION=1000000000 PCII_MAX_UNVERIFIED_SENT_BYTES_PER_ORGANISATION=1125899906842624 \
  PCII_MAX_UNVERIFIED_SENT_BYTES_TOTAL=1125899906842624
export PCII_CONFIG=/nonexistent.toml PCII_KEYS_DIR="$work/keys" PCII_LOG=warn PCII_DATABASE_URL=
export PCII_ADDRESS=127.0.0.1 PCII_PORT="$PORT"   # Rocket's own keys are read with the PCII_ prefix
"$bin" keys init >/dev/null 2>&1   # one key store for every server of the run (user add no longer makes one)
base="http://127.0.0.1:$PORT"
email=bench@example.org
password="bench-$(openssl rand -hex 16)"

now() { date +%s.%N; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
csrf_of() { grep -o 'name="csrf" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//'; }

"$rage_keygen" -o "$work/rage.key" 2>/dev/null
if [ "$S3" = 1 ]; then start_seaweedfs "$work/seaweedfs" pcii-bench; fi
recipient="$(grep -o 'age1[0-9a-z]*' "$work/rage.key" | head -1)"

results="$work/results.txt"   # one line per measurement, see the report below
: > "$results"
# shellcheck source=bench/quiet.sh
source bench/quiet.sh
# Runs a command under /usr/bin/time, its stdout to $work/cmd.out; prints
# "<wall s> <cpu s of the command> <machine busy cpu s>".
measure() {
    local b0 b1 t0 t1
    sync -f "$work"
    wait_quiet
    b0="$(busy_ticks)"; t0=$(now)
    /usr/bin/time -f '%U %S' -o "$work/time.txt" "$@" > "$work/cmd.out"
    t1=$(now); b1="$(busy_ticks)"
    awk -v t0="$t0" -v t1="$t1" -v b0="$b0" -v b1="$b1" -v hz="$tick_hz" '
        NR == 1 {printf "%.4f %.2f %.2f\n", t1 - t0, $1 + $2, (b1 - b0) / hz}' "$work/time.txt"
}

# Starts a fresh server with its own data dir ($work/data-NAME) and logs in (cookie jar $jar).
start_server() {
    export PCII_DATA_DIR="$work/data-$1"
    printf '%s\n' "$password" |
        "$bin" user add --email "$email" --role submitter --new-organisation "Bench Org" --password-stdin >/dev/null 2>&1
    "$bin" serve > "$work/server-$1.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "$base/healthz" && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server-$1.log" >&2; exit 1; }
        sleep 0.1
    done
    jar="$work/jar-$1"
    local token code
    token="$(curl -sf -c "$jar" -b "$jar" "$base/login" | csrf_of)"
    code="$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
        --data-urlencode "email=$email" --data-urlencode "password=$password" --data-urlencode "csrf=$token" \
        "$base/login")"
    [ "$code" = 303 ] || { echo "login failed: HTTP $code" >&2; exit 1; }
}

# One measured upload of $file to the running server, recorded as tool $1 ("portal": blobs in the data dir; "s3").
measure_upload() {
    local tool="$1" token c0 c1 wall curl_cpu busy code secs sent server_cpu
    token="$(curl -sf -c "$jar" -b "$jar" "$base/submissions/new" | csrf_of)"
    [ -n "$token" ] || { echo "no csrf token on /submissions/new" >&2; exit 1; }
    c0="$(cpu_ticks "$server_pid")"
    read -r wall curl_cpu busy < <(measure curl -s -o /dev/null -H 'Expect:' -b "$jar" -c "$jar" \
        -w '%{http_code} %{time_total} %{size_upload}\n' \
        -F "csrf=$token" -F action=draft -F title=bench -F description_1=bench \
        -F "file_1=@$file;type=application/octet-stream" "$base/submissions")
    c1="$(cpu_ticks "$server_pid")"
    read -r code secs sent < <(tail -1 "$work/cmd.out")
    if [ "$code" != 303 ]; then
        echo "upload of $size ($tool) failed: HTTP $code (sent $sent bytes); server log:" >&2
        tail -20 "$work/server-$size.log" "$work/server-$size-s3.log" 2>/dev/null >&2
        exit 1
    fi
    server_cpu="$(awk -v a="$c0" -v b="$c1" -v hz="$tick_hz" 'BEGIN {printf "%.2f", (b - a) / hz}')"
    echo "$size $bytes $tool $run $secs $wall $busy $server_cpu $curl_cpu $(hwm_kib "$server_pid")" >> "$results"
}

for size in "${SIZES[@]}"; do
    file="$work/in-$size.bin"
    head -c "$size" /dev/urandom > "$file"
    bytes="$(stat -c %s "$file")"
    cat "$file" > /dev/null

    # A fresh server (and data dir) per size, so VmHWM is this size's peak.
    start_server "$size"
    echo "$size $bytes baseline 0 $(rss_kib "$server_pid") $(hwm_kib "$server_pid")" >> "$results"

    out="$work/out-$size.age"
    for run in $(seq 1 "$RUNS"); do
        echo "size $size run $run/$RUNS ..." >&2
        measure_upload portal

        read -r wall cpu busy < <(measure "$rage" -r "$recipient" -o "$out" "$file")
        echo "$size $bytes rage $run $wall $wall $busy $cpu" >> "$results"
        rm -f "$out"
        read -r wall cpu busy < <(measure bash -c '"$0" -r "$1" -o "$3" "$2" && sync "$3"' \
            "$rage" "$recipient" "$file" "$out")
        echo "$size $bytes rage+sync $run $wall $wall $busy $cpu" >> "$results"
        rm -f "$out"
    done
    stop_server
    rm -rf "$PCII_DATA_DIR"
    if [ "$S3" = 1 ]; then
        # The same uploads to a server whose blobs go to the S3 bucket (fresh server: its own peak RSS).
        export PCII_BLOB_STORE="s3://$SEAWEEDFS_BUCKET/bench-$size"
        start_server "$size-s3"
        for run in $(seq 1 "$RUNS"); do
            echo "size $size run $run/$RUNS (S3) ..." >&2
            measure_upload s3
            # The store's own speed: the same file PUT by curl straight to the bucket (one request, not sealed).
            read -r wall cpu busy < <(measure curl -s -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" \
                --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
                -T "$file" "$PCII_S3_ENDPOINT/$SEAWEEDFS_BUCKET/put-$size-$run")
            echo "$size $bytes s3put $run $wall $wall $busy $cpu" >> "$results"
        done
        stop_server
        unset PCII_BLOB_STORE
        rm -rf "$PCII_DATA_DIR"
    fi
    rm -f "$file"
done

# Sustained use: does the server's memory settle, or creep with the number of uploads?
REPEAT="${BENCH_REPEAT:-40}"
sustained="$work/sustained.txt"
: > "$sustained"
if [ "$REPEAT" -gt 0 ]; then
    file="$work/in-64M.bin"
    head -c 64M /dev/urandom > "$file"
    start_server sustained
    upload_quietly() {
        local token code
        token="$(curl -sf -b "$jar" "$base/submissions/new" | csrf_of)"
        code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Expect:' -b "$jar" \
            -F "csrf=$token" -F action=draft -F title=bench -F description_1=bench \
            -F "file_1=@$file;type=application/octet-stream" "$base/submissions")"
        [ "$code" = 303 ] || echo "  (an upload answered HTTP $code)" >&2
    }
    echo "sustained: $REPEAT uploads of 64 MiB, then 5 rounds of 4 at once ..." >&2
    mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
    line="after login $(mib "$(rss_kib "$server_pid")")"
    for i in $(seq 1 "$REPEAT"); do
        upload_quietly
        if [ $((i % 10)) = 0 ] || [ "$i" = 1 ]; then line="$line | $i: $(mib "$(rss_kib "$server_pid")")"; fi
    done
    echo "one at a time: $line" >> "$sustained"
    line="before $(mib "$(rss_kib "$server_pid")")"
    for round in 1 2 3 4 5; do
        pids=""
        for _ in 1 2 3 4; do upload_quietly & pids="$pids $!"; done
        # shellcheck disable=SC2086
        wait $pids
        line="$line | round $round: $(mib "$(rss_kib "$server_pid")")"
    done
    echo "four at a time: $line" >> "$sustained"
    echo "peak: $(mib "$(hwm_kib "$server_pid")")" >> "$sustained"
    stop_server
    rm -rf "$PCII_DATA_DIR" "$file"
fi

python3 - "$results" "$RUNS" "$(nproc)" <<'PY'
import statistics, sys
from collections import defaultdict
path, runs, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
med = statistics.median
rows = defaultdict(list); base = {}; nbytes = {}; order = []
for line in open(path):
    f = line.split()
    size, tool = f[0], f[2]
    nbytes[size] = int(f[1])
    if size not in order:
        order.append(size)
    if tool == "baseline":
        base[size] = (int(f[4]), int(f[5]))
        continue
    secs, wall, busy = map(float, f[4:7])
    served = tool in ("portal", "s3")
    own = float(f[7]) + (float(f[8]) if served else 0.0)
    rows[size, tool].append(dict(secs=secs, wall=wall, own=own, other=max(busy - own, 0.0) / wall,
                                 server=float(f[7]), client=float(f[8]) if served else 0.0,
                                 hwm=int(f[9]) if served else 0))
mib = lambda s, secs: nbytes[s] / secs / 2**20
ms = lambda s, k: med(r["secs"] for r in rows[s, k])
print(f"upload benchmark: {cores} cores, HTTP on loopback, release build, median of {runs} run(s)")
print(f"{'size':>6} | {'portal MiB/s':>12} | {'rage MiB/s':>10} | {'ratio':>6} | {'rage+sync MiB/s':>15} | {'ratio':>6} | {'server peak RSS':>15}")
print("-" * 90)
peaks = {}
for s in order:
    p, r, rs = ms(s, "portal"), ms(s, "rage"), ms(s, "rage+sync")
    peaks[s] = max(x["hwm"] for x in rows[s, "portal"]) / 1024
    print(f"{s:>6} | {mib(s, p):12.0f} | {mib(s, r):10.0f} | {r / p:5.2f}x | {mib(s, rs):15.0f} | {rs / p:5.2f}x | {peaks[s]:11.1f} MiB")
print("ratio = portal throughput / rage throughput; rage+sync = rage followed by an fsync of its output (the portal fsyncs)")
if any(t == "s3" for (_, t) in rows):
    print()
    print(f"{'size':>6} | {'S3 store MiB/s':>14} | {'curl PUT MiB/s':>14} | {'ratio':>6} | {'vs directory':>12} | {'vs rage':>7} | {'server peak RSS':>15}")
    print("-" * 96)
    for s in order:
        if (s, "s3") not in rows:
            continue
        q, put, p, r = ms(s, "s3"), ms(s, "s3put"), ms(s, "portal"), ms(s, "rage")
        peak = max(x["hwm"] for x in rows[s, "s3"]) / 1024
        print(f"{s:>6} | {mib(s, q):14.0f} | {mib(s, put):14.0f} | {put / q:5.2f}x | {p / q:11.2f}x | {r / q:6.2f}x | "
              f"{peak:11.1f} MiB")
    print("S3 store: SeaweedFS (weed mini) on loopback, on the same cores; curl PUT = the same file sent straight to the")
    print("bucket in one request (the store's own speed); ratios = S3 store throughput / the other's")
print()
noisy = 0.0
for s in order:
    P, R, RS = rows[s, "portal"], rows[s, "rage"], rows[s, "rage+sync"]
    print(f"{s}: MiB/s per run: portal {[round(mib(s, x['secs'])) for x in P]}, rage {[round(mib(s, x['secs'])) for x in R]}, "
          f"rage+sync {[round(mib(s, x['secs'])) for x in RS]}")
    print(f"{s}: CPU per run (median): portal server {med(x['server'] for x in P):.2f} s + curl {med(x['client'] for x in P):.2f} s "
          f"in {med(x['wall'] for x in P):.2f} s wall = {med((x['server'] + x['client']) / x['wall'] for x in P):.2f} cores; "
          f"rage {med(x['own'] for x in R):.2f} s in {med(x['wall'] for x in R):.2f} s = {med(x['own'] / x['wall'] for x in R):.2f} cores")
    print(f"{s}: other CPU on the machine per run (cores): portal {[round(x['other'], 2) for x in P]}, "
          f"rage {[round(x['other'], 2) for x in R]}, rage+sync {[round(x['other'], 2) for x in RS]}")
    print(f"{s}: server RSS after login {base[s][0] / 1024:.1f} MiB; peak after each upload {[round(x['hwm'] / 1024, 1) for x in P]} MiB")
    if (s, "s3") in rows:
        Q = rows[s, "s3"]
        print(f"{s}: S3 store MiB/s per run {[round(mib(s, x['secs'])) for x in Q]}; server CPU {med(x['server'] for x in Q):.2f} s; "
              f"peak RSS after each upload {[round(x['hwm'] / 1024, 1) for x in Q]} MiB")
    noisy = max([noisy] + [x["other"] for x in P + R + RS])
print()
sizes = sorted(order, key=lambda s: nbytes[s])
worst = min(ms(s, "rage") / ms(s, "portal") for s in order)
worst_sync = min(ms(s, "rage+sync") / ms(s, "portal") for s in order)
print(f"target upload >= 0.8x rage      : {'met' if worst >= 0.8 else 'NOT met'} (lowest ratio {worst:.2f}x; "
      f"against rage + fsync {worst_sync:.2f}x)")
print(f"target peak RSS < 64 MiB        : {'met' if max(peaks.values()) < 64 else 'NOT met'} (highest {max(peaks.values()):.1f} MiB)")
if len(sizes) > 1:
    print(f"{'peak RSS ' + sizes[0] + ' -> ' + sizes[-1]:<32}: {peaks[sizes[-1]] - peaks[sizes[0]]:+.1f} MiB")
print(f"other CPU use on the machine    : up to {noisy:.2f} cores during a measurement (kernel writeback included; 10 ms ticks)"
      + ("  <-- other jobs were running; figures are unreliable" if noisy > 0.5 else ""))
PY
if [ -s "$sustained" ]; then
    echo
    echo "server RSS under sustained use (MiB, one fresh server):"
    sed 's/^/  /' "$sustained"
fi
