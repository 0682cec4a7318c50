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
[ -n "$rage" ] || { [ -x "$HOME/.cargo/bin/rage" ] && rage="$HOME/.cargo/bin/rage"; } || true
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
trap 'stop_server; rm -rf "$work"' EXIT

export PCII_CONFIG=/nonexistent.toml PCII_KEYS_DIR="$work/keys" PCII_LOG=warn PCII_DATABASE_URL=
export ROCKET_ADDRESS=127.0.0.1 ROCKET_PORT="$PORT" PCII_ADDRESS=127.0.0.1 PCII_PORT="$PORT"
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
recipient="$(grep -o 'age1[0-9a-z]*' "$work/rage.key" | head -1)"

results="$work/results.txt"   # lines: size_label bytes tool run seconds [extra]
: > "$results"
tick_hz="$(getconf CLK_TCK)"

for size in "${SIZES[@]}"; do
    file="$work/in-$size.bin"
    head -c "$size" /dev/urandom > "$file"
    bytes="$(stat -c %s "$file")"
    cat "$file" > /dev/null

    # A fresh server (and data dir) per size, so VmHWM is this size's peak.
    export PCII_DATA_DIR="$work/data-$size"
    printf '%s\n' "$password" |
        "$bin" user add --email "$email" --role submitter --organisation "Bench Org" --password-stdin >/dev/null 2>&1
    "$bin" serve > "$work/server-$size.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "$base/healthz" && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/server-$size.log" >&2; exit 1; }
        sleep 0.1
    done
    jar="$work/jar-$size"
    token="$(curl -sf -c "$jar" -b "$jar" "$base/login" | csrf_of)"
    code="$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
        --data-urlencode "email=$email" --data-urlencode "password=$password" --data-urlencode "csrf=$token" \
        "$base/login")"
    [ "$code" = 303 ] || { echo "login failed: HTTP $code" >&2; exit 1; }
    echo "$size baseline - 0 $(rss_kib "$server_pid") $(hwm_kib "$server_pid")" >> "$results"

    for run in $(seq 1 "$RUNS"); do
        echo "size $size run $run/$RUNS ..." >&2
        token="$(curl -sf -c "$jar" -b "$jar" "$base/submissions/new" | csrf_of)"
        [ -n "$token" ] || { echo "no csrf token on /submissions/new" >&2; exit 1; }
        c0="$(cpu_ticks "$server_pid")"
        read -r code secs sent < <(curl -s -o /dev/null -H 'Expect:' -b "$jar" -c "$jar" \
            -w '%{http_code} %{time_total} %{size_upload}\n' \
            -F "csrf=$token" -F action=draft -F title=bench -F description_1=bench \
            -F "file_1=@$file;type=application/octet-stream" "$base/submissions")
        c1="$(cpu_ticks "$server_pid")"
        if [ "$code" != 303 ]; then
            echo "upload of $size failed: HTTP $code (sent $sent bytes); server log:" >&2
            tail -20 "$work/server-$size.log" >&2
            exit 1
        fi
        server_cpu="$(awk -v a="$c0" -v b="$c1" -v hz="$tick_hz" 'BEGIN {printf "%.2f", (b - a) / hz}')"
        echo "$size $bytes portal $run $secs $server_cpu $(hwm_kib "$server_pid")" >> "$results"

        out="$work/out-$size.age"
        t0=$(now); "$rage" -r "$recipient" -o "$out" "$file"; t1=$(now)
        echo "$size $bytes rage $run $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" >> "$results"
        rm -f "$out"; sync -f "$work"
        t0=$(now); "$rage" -r "$recipient" -o "$out" "$file"; sync "$out"; t1=$(now)
        echo "$size $bytes rage+sync $run $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" >> "$results"
        rm -f "$out"
    done
    stop_server
    rm -rf "$PCII_DATA_DIR" "$file"
done

python3 - "$results" "$RUNS" "$(nproc)" <<'PY'
import statistics, sys
from collections import defaultdict
path, runs, cores = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t = defaultdict(list); cpu = defaultdict(list); hwm = defaultdict(list); base = {}; nbytes = {}; order = []
for line in open(path):
    f = line.split()
    size, tool = f[0], f[2]
    if size not in order: order.append(size)
    if tool == "-":
        base[size] = (int(f[4]), int(f[5]))
        continue
    nbytes[size] = int(f[1])
    t[size, tool].append(float(f[4]))
    if tool == "portal":
        cpu[size].append(float(f[5])); hwm[size].append(int(f[6]))
mib = lambda s, secs: nbytes[s] / secs / 2**20
print(f"upload benchmark: {cores} cores, loopback, release build, median of {runs} run(s)")
print(f"{'size':>6} | {'portal MiB/s':>12} | {'rage MiB/s':>10} | {'ratio':>6} | {'rage+sync MiB/s':>15} | {'ratio':>6} | {'server peak RSS':>15} | {'server CPU/wall':>15}")
print("-" * 108)
for s in order:
    p, r, rs = (statistics.median(t[s, k]) for k in ("portal", "rage", "rage+sync"))
    peak = max(hwm[s]) / 1024
    util = statistics.median(c / w for c, w in zip(cpu[s], t[s, "portal"]))
    print(f"{s:>6} | {mib(s, p):12.0f} | {mib(s, r):10.0f} | {r / p:5.2f}x | {mib(s, rs):15.0f} | {rs / p:5.2f}x | {peak:11.1f} MiB | {util:14.2f}x")
print()
for s in order:
    runs_txt = ", ".join(f"{mib(s, x):.0f}" for x in t[s, "portal"])
    hwm_txt = ", ".join(f"{h / 1024:.1f}" for h in hwm[s])
    print(f"{s}: portal MiB/s per run [{runs_txt}]; rage [{', '.join(f'{mib(s, x):.0f}' for x in t[s, 'rage'])}]; "
          f"rage+sync [{', '.join(f'{mib(s, x):.0f}' for x in t[s, 'rage+sync'])}]")
    print(f"{s}: server RSS after login {base[s][0] / 1024:.1f} MiB (peak so far {base[s][1] / 1024:.1f}); "
          f"peak after each upload [{hwm_txt}] MiB")
PY
