#!/usr/bin/env bash
# The reverse-proxy suite: the portal behind Debian's nginx with the limits the repo ships (deploy/nginx/),
# measured under the attacks they are for. Prints its figures and one line per check; exit status 0 when every
# check passed.
#
# What runs: the release binary with fresh data and keys directories on a free loopback port, started with
# ip_header = X-Real-IP (PCII_IP_HEADER) as deploy/nginx/pcii-portal.conf says; and nginx, as the current user,
# with its own prefix, pid, logs and temp directories in a mktemp directory, on another free loopback port, in
# plain HTTP. Its configuration is generated: a test nginx.conf (main and events contexts, temp paths, the
# listen line) that includes deploy/nginx/snippets/pcii-portal-{http,limits,proxy}.conf through a symlink,
# i.e. the very files the site config includes, plus the site file's `upstream pcii_portal` block with the
# port changed. Only the TLS server, the :80 redirect and nginx.conf's own settings are not the shipped ones.
#
# Then tests/proxy/check.py (Python 3 standard library): (a) a slowloris of 20,000 half-sent headers from one
# address, through nginx (asserted) and straight at the portal (measured only); (b) stalled multipart uploads
# with 4 MB of text fields, from one address and from many; (c) limit_conn, limit_req on the sign-in form, a
# 200 MiB upload and its download streaming through nginx (nginx workers hold no temp file and log no buffering,
# with a positive control through a test-only location that buffers); (d) the portal's throttle and audit log see each
# client's own address, and a forged X-Real-IP is overwritten.
#
#   tests/proxy/run.sh                 from anywhere; builds the release binary (honours CARGO_TARGET_DIR)
#   PCII_BIN=/path/to/pcii-portal      use this binary instead, and do not build
#   PCII_PROXY_SLOWLORIS=20000         half-sent headers held at once (split over processes by `ulimit -n`)
#   PCII_PROXY_SLOWLORIS_SECONDS=25    how long the slowloris through nginx lasts
#   PCII_PROXY_DIRECT_SECONDS=40       how long the same slowloris straight at the portal lasts (the portal
#                                      accepts more slowly than nginx: it needs this long to reach its fd limit)
#   PCII_PROXY_STALLED=300             stalled uploads from one address;  PCII_PROXY_SPREAD=60  from as many addresses
#   PCII_PROXY_UPLOAD_MIB=200          size of the upload that must stream
#   PCII_PROXY_KEEP=1                  keep the temporary directory (logs, nginx config) for a look
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${PCII_BIN:-$TARGET/release/pcii-portal}"

say() { echo "== proxy: $*"; }
die() { echo "proxy suite FAILED: $*" >&2; exit 1; }

if ! command -v nginx >/dev/null 2>&1; then
  say "installing nginx (Debian)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
NGINX="$(command -v nginx)" || die "nginx is not installed"
command -v curl >/dev/null || die "curl is not installed"
PYTHON="$(command -v python3)" || die "python3 is not installed"

if [ -z "${PCII_BIN:-}" ]; then
  say "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
fi
[ -x "$BIN" ] || die "no release binary at $BIN"

# As many open files as we are allowed: the attack clients, nginx and the portal inherit this limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE="$(ulimit -n)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pcii-proxy.XXXXXX")"
PIDS=()
V6_ADDED=()
cleanup() {
  local status=$?
  for a in "${V6_ADDED[@]}"; do ip -6 addr del "$a/128" dev lo 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/portal.log "$WORK"/nginx/error.log; do
      [ -f "$log" ] || continue
      echo "---- last lines of $log" >&2
      tail -n 30 "$log" >&2 || true
    done
  fi
  if [ -n "${PCII_PROXY_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORTAL_PORT="$(free_port)"
NGINX_PORT="$(free_port)"
[ "$PORTAL_PORT" != "$NGINX_PORT" ] || NGINX_PORT="$(free_port)"
DOWN_PORT="$(free_port)"     # an nginx server of the same snippets in front of a portal that is down
CLOSED_PORT="$(free_port)"   # ... which would listen here (nothing does)

# ---------------------------------------------------------------------------------------------------- the portal
export PCII_CONFIG="$ROOT/Rocket.toml" PCII_DATA_DIR="$WORK/data" PCII_KEYS_DIR="$WORK/keys" PCII_DATABASE_URL=
export PCII_ADDRESS=127.0.0.1 PCII_PORT="$PORTAL_PORT" PCII_LOG=warn NO_COLOR=1
export PCII_PUBLIC_ORIGIN="http://127.0.0.1:$NGINX_PORT"   # in production: the https origin
export PCII_IP_HEADER=X-Real-IP                            # as deploy/nginx/pcii-portal.conf says
SUBMITTER_EMAIL=submitter@example.org
SUBMITTER_PASSWORD="proxy-$(openssl rand -hex 12)"
VICTIM_EMAIL=throttled@example.org
VICTIM_PASSWORD="proxy-$(openssl rand -hex 12)"
"$BIN" keys init >>"$WORK/portal.log" 2>&1 || die "keys init failed"
printf '%s\n' "$SUBMITTER_PASSWORD" | "$BIN" user add --email "$SUBMITTER_EMAIL" --role submitter \
  --new-organisation "Proxy Test Org" --password-stdin >>"$WORK/portal.log" 2>&1 || die "user add failed"
printf '%s\n' "$VICTIM_PASSWORD" | "$BIN" user add --email "$VICTIM_EMAIL" --role submitter \
  --new-organisation "Throttle Test Org" --password-stdin >>"$WORK/portal.log" 2>&1 || die "user add failed"
say "starting the portal on 127.0.0.1:$PORTAL_PORT (ip_header X-Real-IP, open-file limit $NOFILE)"
"$BIN" serve >>"$WORK/portal.log" 2>&1 &
PORTAL_PID=$!
PIDS+=("$PORTAL_PID")
for _ in $(seq 1 240); do
  curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORTAL_PORT/healthz" && break
  kill -0 "$PORTAL_PID" 2>/dev/null || die "the portal exited during start-up"
  sleep 0.5
done
curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$PORTAL_PORT/healthz" || die "the portal did not answer /healthz"

# ---------------------------------------------------------------------------------------------------- IPv6
# Three IPv6 addresses on lo, two in one /64 and one in another, so that check.py can show that nginx counts a /64
# as one client. Needs IPv6 on lo and the right to add addresses (root); without them that check is skipped, loudly.
V6_ADDRS=(fd00:5c11:0:1::1 fd00:5c11:0:1::2 fd00:5c11:0:2::1)
V6=""
if command -v ip >/dev/null && ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1/128'; then
  v6_ok=1
  for a in "${V6_ADDRS[@]}"; do
    if ip -6 addr show dev lo | grep -q "inet6 $a/128"; then continue; fi
    if ip -6 addr add "$a/128" dev lo nodad 2>/dev/null; then V6_ADDED+=("$a"); else v6_ok=0; fi
  done
  [ "$v6_ok" = 1 ] && V6="${V6_ADDRS[*]}"
fi
V6_LISTEN=""
[ -n "$V6" ] && V6_LISTEN="listen [::1]:$NGINX_PORT;"

# ---------------------------------------------------------------------------------------------------- nginx
NGX="$WORK/nginx"
mkdir -p "$NGX/conf" "$NGX/logs"
ln -s "$ROOT/deploy/nginx/snippets" "$NGX/conf/snippets"   # the shipped limits, literally
# A slowloris of N connections needs N + a few descriptors in nginx; one worker may hold NOFILE - 100 of them.
SLOW="${PCII_PROXY_SLOWLORIS:-20000}"
WORKERS=$(( (SLOW + 2000) / (NOFILE - 100) + 1 ))
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user $(id -un) $(id -gn);"   # as root, workers would otherwise drop to nobody
UPSTREAM="$(sed -n '/^upstream pcii_portal {/,/^}/p' "$ROOT/deploy/nginx/pcii-portal.conf" \
  | sed "s/127\.0\.0\.1:8000/127.0.0.1:$PORTAL_PORT/")"
grep -q "127.0.0.1:$PORTAL_PORT" <<<"$UPSTREAM" || die "no 'upstream pcii_portal' with 127.0.0.1:8000 in deploy/nginx/pcii-portal.conf"
cat >"$NGX/conf/nginx.conf" <<EOF
# Generated by tests/proxy/run.sh: the test's own main context, then the shipped snippets.
$USER_LINE
daemon off;
worker_processes $WORKERS;
worker_rlimit_nofile $NOFILE;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events {
    worker_connections $((NOFILE - 100));
}
http {
    client_body_temp_path $NGX/client_body_temp;
    proxy_temp_path $NGX/proxy_temp;
    fastcgi_temp_path $NGX/fastcgi_temp;
    uwsgi_temp_path $NGX/uwsgi_temp;
    scgi_temp_path $NGX/scgi_temp;
    include /etc/nginx/mime.types;   # as Debian's nginx.conf does
    default_type application/octet-stream;

    include snippets/pcii-portal-http.conf;
    access_log $NGX/access.log pcii_portal;
$UPSTREAM

    server {
        # Plain HTTP on loopback instead of the shipped 443 ssl server; reuseport spreads the slowloris
        # over the workers (each holds at most worker_connections).
        listen 127.0.0.1:$NGINX_PORT reuseport backlog=4096;
        $V6_LISTEN
        include snippets/pcii-portal-limits.conf;
        include snippets/pcii-portal-proxy.conf;

        # Test only, not shipped: the positive control of check.py's "streamed, not buffered" detector. Here
        # nginx buffers on purpose (request body and response, tiny in-memory buffers, so both spill to temp files).
        location /__buffered/ {
            proxy_request_buffering on;
            client_body_buffer_size 1k;
            proxy_buffering on;
            proxy_buffers 4 4k;
            proxy_busy_buffers_size 8k;
            proxy_max_temp_file_size 1024m;
            proxy_temp_file_write_size 8k;
            proxy_pass http://pcii_portal/;
        }
    }

    # Test only: the shipped limits (and with them nginx's own error answers) in front of a portal that is down.
    server {
        listen 127.0.0.1:$DOWN_PORT;
        include snippets/pcii-portal-limits.conf;
        location / {
            proxy_pass http://127.0.0.1:$CLOSED_PORT;
        }
    }
}
EOF
"$NGINX" -t -q -p "$NGX" -c "$NGX/conf/nginx.conf" -e "$NGX/error.log" || die "nginx -t refused the configuration"
say "starting nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') on 127.0.0.1:$NGINX_PORT ($WORKERS worker(s), worker_connections $((NOFILE - 100)))"
"$NGINX" -p "$NGX" -c "$NGX/conf/nginx.conf" -e "$NGX/error.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
for _ in $(seq 1 50); do
  curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$NGINX_PORT/healthz" && break
  kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited during start-up"
  sleep 0.2
done
curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$NGINX_PORT/healthz" || die "/healthz through nginx failed"

# ------------------------------------------------------------------ the access log: no tokens, no query strings
for p in /invitations/SecretTok0a1b2c /password/reset/SecretTok3d4e5f /setup/SecretTok6a7b8c \
         /verify-email/SecretTok9d0e1f "/officer/disseminations?recipient=SecretTok42" /verify-email/resend; do
  curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$NGINX_PORT$p" || true
done
! grep -q SecretTok "$NGX/access.log" || die "the access log holds a token or a query string: $(grep SecretTok "$NGX/access.log")"
grep -q '"GET /invitations/\[token\] ' "$NGX/access.log" || die "the access log lacks the invitation path: $(tail -6 "$NGX/access.log")"
grep -q '"GET /verify-email/resend ' "$NGX/access.log" || die "the access log lacks /verify-email/resend"
grep -q '"GET /officer/disseminations ' "$NGX/access.log" || die "the access log lacks the disseminations path"
say "the access log names token paths without their tokens, and no query string"

# ---------------------------------------------------------------------------------------------------- the checks
start=$(date +%s)
PROXY_WORK="$WORK" PROXY_NGINX_PID="$NGINX_PID" PROXY_NGINX_PORT="$NGINX_PORT" PROXY_NGINX_DOWN_PORT="$DOWN_PORT" PROXY_NGINX_PREFIX="$NGX" \
  PROXY_PORTAL_PORT="$PORTAL_PORT" PROXY_PORTAL_PID="$PORTAL_PID" PROXY_DB="$WORK/data/pcii.sqlite3" \
  PROXY_SUBMITTER_EMAIL="$SUBMITTER_EMAIL" PROXY_SUBMITTER_PASSWORD="$SUBMITTER_PASSWORD" \
  PROXY_VICTIM_EMAIL="$VICTIM_EMAIL" PROXY_VICTIM_PASSWORD="$VICTIM_PASSWORD" PROXY_V6="$V6" \
  "$PYTHON" "$ROOT/tests/proxy/check.py" || die "see the report above"
kill -0 "$PORTAL_PID" 2>/dev/null || die "the portal is no longer running"
say "all checks passed in $(( $(date +%s) - start )) s"
