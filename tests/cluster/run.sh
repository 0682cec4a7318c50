#!/usr/bin/env bash
# The multi-instance suite: three release instances on one PostgreSQL database, one keys directory and one blob
# store, behind Debian's nginx with the upstream block deploy/nginx/pcii-portal-cluster.conf ships (round robin)
# and the three snippets of deploy/nginx/snippets/. tests/cluster/cluster.py (Python 3 standard library) then
# drives concurrent uploads, decisions, grants, destructions and sign-ins through nginx, and checks: every
# acknowledged action present exactly once; the audit chain gapless, linear and valid (`pcii-portal audit
# verify`); no orphan blob and no missing one after a sweep; a session made on one instance valid on the others; a
# `keys rotate` seen by every instance; the blob sweep run once per interval across the three, not three times.
# Prints its figures and one line per check; exit status 0 when every check passed.
#
# What it starts (and stops on exit, failure or interruption): PostgreSQL 15 if it is not running (installed
# with apt-get when missing), a database of its own (CLUSTER_DB, dropped before and after), the instances and
# nginx as the current user with their own ports, logs and temp directories in a mktemp directory. Accounts are
# made with `pcii-portal keys init` and `user add` before any instance starts (keys, then schema); the
# first instance starts alone, the other two at the same moment (a concurrent start on a made store is safe:
# nothing is generated or migrated, and the start-up sweep goes to whichever holds the lease).
#
#   bash tests/cluster/run.sh            from the repository root (or anywhere); builds the release binary with
#                                        --features postgres (honours CARGO_TARGET_DIR)
#   PCII_BIN=/path/to/pcii-portal        use this binary (built with --features postgres) and do not build
#   CLUSTER_DATABASE_URL=postgres://pcii_ci:pcii_ci@127.0.0.1:5432/pcii_ci
#                                        a role that may create databases (the CI role of .ci/run, made if missing
#                                        on a local server); the suite's own database is made beside it
#   CLUSTER_DB=pcii_cluster              the suite's database (dropped first if it exists, and at the end)
#   CLUSTER_BLOB_STORE=seaweedfs         the blob store: `seaweedfs` (default), a bucket of SeaweedFS started here
#                                        (tests/s3/seaweedfs.sh), each instance with a data_dir of its own; `fs`, the
#                                        filesystem store in one directory all instances share (their common
#                                        data_dir); or `s3://bucket/prefix` of a store you run, passed to every
#                                        instance as PCII_BLOB_STORE (S3 settings as PCII_ variables in the
#                                        environment), whose orphan check needs CLUSTER_BLOB_LIST_CMD (cluster.py).
#   CLUSTER_SWEEP_SECONDS=2              blob_sweep_interval_seconds of the instances
#   CLUSTER_SUBMITTERS=8 CLUSTER_UPLOADS=25 CLUSTER_LOGINS=60  people and work: submitters (two per
#                                        organisation), uploads each, sign-ins meanwhile (see cluster.py)
#   CLUSTER_KEEP=1                       keep the temporary directory (logs, nginx config) and the database
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
ADMIN_URL="${CLUSTER_DATABASE_URL:-postgres://pcii_ci:pcii_ci@127.0.0.1:5432/pcii_ci}"
DB_NAME="${CLUSTER_DB:-pcii_cluster}"
BLOB_STORE="${CLUSTER_BLOB_STORE:-seaweedfs}"
INSTANCES=3
T0=$(date +%s)

say() { echo "== cluster: $*"; }
die() { echo "cluster suite FAILED: $*" >&2; exit 1; }

[[ "$DB_NAME" =~ ^[a-z_][a-z0-9_]*$ ]] || die "CLUSTER_DB must be a plain lowercase identifier"
case "$BLOB_STORE" in
  fs | seaweedfs | s3://*) ;;
  *) die "CLUSTER_BLOB_STORE is 'seaweedfs', 'fs' or 's3://bucket/prefix', not '$BLOB_STORE'" ;;
esac

apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
if ! command -v nginx >/dev/null 2>&1; then
  say "installing nginx (Debian)"
  apt_install nginx
fi
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
  say "installing PostgreSQL 15 (Debian)"
  apt_install postgresql-15 postgresql-client-15
fi
if ! dpkg -s libpq-dev >/dev/null 2>&1; then
  say "installing libpq-dev (Debian)"
  apt_install libpq-dev
fi
NGINX="$(command -v nginx)" || die "nginx is not installed"
PYTHON="$(command -v python3)" || die "python3 is not installed"
command -v curl >/dev/null || die "curl is not installed"

if [ -z "${PCII_BIN:-}" ]; then
  say "cargo build --release --features postgres"
  (cd "$ROOT" && cargo build --release --quiet --features postgres --bin pcii-portal)
fi
BUILT="${PCII_BIN:-$TARGET/release/pcii-portal}"
[ -x "$BUILT" ] || die "no release binary at $BUILT"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pcii-cluster.XXXXXX")"
# A copy: a build in the same target directory meanwhile must not swap the binary under the running instances.
BIN="$WORK/pcii-portal"
cp "$BUILT" "$BIN"

# ---------------------------------------------------------------------------------------------------- PostgreSQL
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  say "starting PostgreSQL 15"
  pg_ctlcluster 15 main start 2>/dev/null || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL does not answer on 127.0.0.1:5432"
if ! psql -q -X "$ADMIN_URL" -c 'SELECT 1' >/dev/null 2>&1; then
  # The CI role, as .ci/run makes it (a local server, and this user may act as postgres).
  say "creating the CI role pcii_ci"
  su postgres -c "psql -q -c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pcii_ci') THEN CREATE ROLE pcii_ci LOGIN CREATEDB PASSWORD 'pcii_ci'; END IF; END \\\$\\\$;\""
  su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname = 'pcii_ci'\" | grep -q 1 || createdb -O pcii_ci pcii_ci"
fi
DB_URL="${ADMIN_URL%/*}/$DB_NAME"
drop_db() { psql -q -X "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1; }

PIDS=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  stop_seaweedfs
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/instance-*.log "$WORK"/nginx/error.log; do
      [ -f "$log" ] || continue
      notable="$(grep -E '"level":"(WARN|ERROR)"|panicked| (WARN|ERROR) ' "$log" | grep -v -E 'passkeys are off|default catcher|Request guard|Received SIGTERM|[Ss]hutdown' |
        tail -n 10 || true)"
      [ -n "$notable" ] || continue
      echo "---- warnings and errors in $log (last 10)" >&2
      echo "$notable" | cut -c1-400 >&2
    done
  fi
  if [ -n "${CLUSTER_KEEP:-}" ]; then
    echo "kept $WORK and the database $DB_NAME" >&2
  else
    drop_db || echo "could not drop the database $DB_NAME" >&2
    rm -rf "$WORK"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/s3/seaweedfs.sh
source "$ROOT/tests/s3/seaweedfs.sh"
if [ "$BLOB_STORE" = seaweedfs ]; then
  say "starting SeaweedFS (weed mini, S3 gateway on loopback)"
  start_seaweedfs "$WORK/seaweedfs" pcii-cluster || die "SeaweedFS did not start"
  BLOB_STORE="s3://$SEAWEEDFS_BUCKET/cluster"
  # The orphan check reads the bucket's objects from SeaweedFS's filer (not through the portal's own client).
  export CLUSTER_BLOB_LIST_CMD="bash -c 'source \"$ROOT/tests/s3/seaweedfs.sh\"; seaweedfs_objects cluster'"
fi

drop_db || true
psql -q -X "$ADMIN_URL" -c "CREATE DATABASE $DB_NAME" >/dev/null || die "could not create the database $DB_NAME"

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PORTS=()
while [ "${#PORTS[@]}" -lt $((INSTANCES + 1)) ]; do
  p="$(free_port)"
  [[ " ${PORTS[*]} " == *" $p "* ]] || PORTS+=("$p")
done
LB_PORT="${PORTS[$INSTANCES]}"

# ---------------------------------------------------------------------------------------------------- the portal
# What every instance shares: the database, the keys, the blob store, the origin people use (nginx's) and the
# client-address header nginx sets.
mkdir -p "$WORK/shared"
# This run's organisations are never verified and send more than an unverified one may.
export PCII_MAX_UNVERIFIED_SENT_PER_ORGANISATION=1000000000 PCII_MAX_UNVERIFIED_SENT_BYTES_PER_ORGANISATION=1125899906842624 \
  PCII_MAX_UNVERIFIED_SENT_BYTES_TOTAL=1125899906842624
export PCII_CONFIG=/nonexistent.toml PCII_KEYS_DIR="$WORK/keys" PCII_DATABASE_URL="$DB_URL"
export PCII_DATA_DIR="$WORK/shared"
export PCII_PUBLIC_ORIGIN="http://127.0.0.1:$LB_PORT" PCII_IP_HEADER=X-Real-IP
export PCII_BLOB_SWEEP_INTERVAL_SECONDS="${CLUSTER_SWEEP_SECONDS:-2}"
export PCII_STEP_UP_MINUTES=120   # the officers' second factor, given once, must outlast a slow machine's run
export PCII_LOG_FORMAT=json PCII_LOG="warn,pcii_portal::workflow::blobs=debug" NO_COLOR=1
if [ "$BLOB_STORE" != fs ]; then
  export PCII_BLOB_STORE="$BLOB_STORE"
fi
data_dir_of() {
  if [ "$BLOB_STORE" = fs ]; then echo "$WORK/shared"; else echo "$WORK/data-$1"; fi
}

say "keys, schema and accounts (pcii-portal migrate, keys init, user add)"
"$BIN" migrate >"$WORK/cli.log" 2>&1 || { cat "$WORK/cli.log" >&2; die "migrate failed"; }
"$BIN" keys init >>"$WORK/cli.log" 2>&1 || { cat "$WORK/cli.log" >&2; die "keys init failed"; }
ACCOUNTS="$WORK/accounts.tsv"
PASSWORD="cluster-$(openssl rand -hex 12)"
add_user() { # email role [more user add arguments]; prints the output
  local email="$1" role="$2"
  shift 2
  printf '%s\n' "$PASSWORD" | "$BIN" user add --email "$email" --role "$role" --name "Cluster $email" \
    --password-stdin "$@" 2>>"$WORK/cli.log" || die "user add $email failed (see $WORK/cli.log)"
}
: >"$ACCOUNTS"
add_user admin@pcii.example.gov administrator --agency "PCII Program Office" >/dev/null
for who in officer-1 officer-2; do
  add_user "$who@pcii.example.gov" officer --agency "PCII Program Office" >/dev/null
  echo -e "officer\t$who@pcii.example.gov" >>"$ACCOUNTS"
done
add_user analyst@dhs.example.gov authorized_user --agency "Analysis Office" >/dev/null
echo -e "analyst\tanalyst@dhs.example.gov" >>"$ACCOUNTS"
org=""
for i in $(seq 1 "${CLUSTER_SUBMITTERS:-8}"); do
  email="submitter-$i@utility.example.com"
  if [ $((i % 2)) = 1 ]; then
    out="$(add_user "$email" submitter --new-organisation "Cluster Utility $(((i + 1) / 2))")"
    org="$(sed -n 's/.* in organisation \([^ ]*\).*/\1/p' <<<"$out")"
    [ -n "$org" ] || die "no organisation id in: $out"
  else
    add_user "$email" submitter --organisation-id "$org" >/dev/null
  fi
  echo -e "submitter\t$email" >>"$ACCOUNTS"
done

start_instance() { # n
  local n="$1" port="${PORTS[$(($1 - 1))]}"
  mkdir -p "$(data_dir_of "$n")"
  PCII_DATA_DIR="$(data_dir_of "$n")" PCII_ADDRESS=127.0.0.1 PCII_PORT="$port" \
    "$BIN" serve >"$WORK/instance-$n.log" 2>&1 &
  PIDS+=("$!")
  disown "$!"   # the driver may kill -9 one: no job notice from bash about it
  echo "$!" >"$WORK/instance-$n.pid"
}
wait_healthy() { # n
  local n="$1" port="${PORTS[$(($1 - 1))]}"
  for _ in $(seq 1 240); do
    curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$port/healthz" && return 0
    kill -0 "$(cat "$WORK/instance-$n.pid")" 2>/dev/null || { tail -n 20 "$WORK/instance-$n.log" >&2; die "instance $n exited during start-up"; }
    sleep 0.25
  done
  die "instance $n did not answer /healthz"
}
say "starting instance 1 on 127.0.0.1:${PORTS[0]}, then instances 2 and 3 at once (${PORTS[1]}, ${PORTS[2]});" \
  "blob store: $BLOB_STORE; database $DB_NAME; sweep every ${PCII_BLOB_SWEEP_INTERVAL_SECONDS} s"
start_instance 1
wait_healthy 1
start_instance 2
start_instance 3
wait_healthy 2
wait_healthy 3

# ---------------------------------------------------------------------------------------------------- nginx
NGX="$WORK/nginx"
mkdir -p "$NGX/conf"
ln -s "$ROOT/deploy/nginx/snippets" "$NGX/conf/snippets"   # the shipped limits, literally
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user $(id -un) $(id -gn);"   # as root, workers would otherwise drop to nobody
# The shipped upstream block, its three `server` addresses replaced by the instances' loopback ports in order.
UPSTREAM="$(sed -n '/^upstream pcii_portal {/,/^}/p' "$ROOT/deploy/nginx/pcii-portal-cluster.conf" |
  awk -v ports="${PORTS[0]} ${PORTS[1]} ${PORTS[2]}" '
    BEGIN { split(ports, p, " ") }
    /^[ \t]*server [^ ;]+/ { n++; sub(/server [^ ;]+/, "server 127.0.0.1:" p[n]) }
    { print }')"
for p in "${PORTS[@]:0:$INSTANCES}"; do
  grep -q "server 127.0.0.1:$p " <<<"$UPSTREAM" ||
    die "the upstream block of deploy/nginx/pcii-portal-cluster.conf does not have $INSTANCES server lines"
done
cat >"$NGX/conf/nginx.conf" <<EOF
# Generated by tests/cluster/run.sh: the test's own main context, then the shipped snippets and upstream block.
$USER_LINE
daemon off;
worker_processes 1;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events {
    worker_connections 4096;
}
http {
    client_body_temp_path $NGX/client_body_temp;
    proxy_temp_path $NGX/proxy_temp;
    fastcgi_temp_path $NGX/fastcgi_temp;
    uwsgi_temp_path $NGX/uwsgi_temp;
    scgi_temp_path $NGX/scgi_temp;
    default_type application/octet-stream;
    # Which instance answered each request, for the driver's spread figures.
    add_header X-Cluster-Upstream \$upstream_addr always;

    include snippets/pcii-portal-http.conf;
$UPSTREAM

    server {
        # Plain HTTP on loopback instead of the shipped 443 ssl server.
        listen 127.0.0.1:$LB_PORT;
        # The shipped servers' log line (no tokens, no query strings).
        access_log $NGX/access.log pcii_portal;
        include snippets/pcii-portal-limits.conf;
        include snippets/pcii-portal-proxy.conf;
    }
}
EOF
"$NGINX" -t -q -p "$NGX" -c "$NGX/conf/nginx.conf" -e "$NGX/error.log" || die "nginx -t refused the configuration"
say "starting nginx $("$NGINX" -v 2>&1 | sed 's/.*\///') on 127.0.0.1:$LB_PORT (round robin over the three)"
"$NGINX" -p "$NGX" -c "$NGX/conf/nginx.conf" -e "$NGX/error.log" &
PIDS+=("$!")
for _ in $(seq 1 50); do
  curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$LB_PORT/healthz" && break
  sleep 0.2
done
curl -sf -o /dev/null --max-time 2 "http://127.0.0.1:$LB_PORT/healthz" || die "/healthz through nginx failed"

# ---------------------------------------------------------------------------------------------------- the driver
CLUSTER_WORK="$WORK" CLUSTER_BIN="$BIN" CLUSTER_DB_URL="$DB_URL" CLUSTER_LB_PORT="$LB_PORT" \
  CLUSTER_PORTS="${PORTS[*]:0:$INSTANCES}" CLUSTER_PASSWORD="$PASSWORD" CLUSTER_ACCOUNTS="$ACCOUNTS" \
  CLUSTER_BLOB_STORE="$BLOB_STORE" CLUSTER_BLOB_DIR="$WORK/shared/blobs" \
  "$PYTHON" -u "$ROOT/tests/cluster/cluster.py" || die "see the report above"
for n in $(seq 1 "$INSTANCES"); do
  [ "$n" = "$(cat "$WORK/killed" 2>/dev/null)" ] && continue   # the driver's kill -9 of the lease holder
  kill -0 "$(cat "$WORK/instance-$n.pid")" 2>/dev/null || die "instance $n is no longer running"
done
if [ -n "${SEAWEEDFS_PID:-}" ]; then
  left="$(seaweedfs_unfinished_uploads)"
  [ "$left" = 0 ] || die "$left multipart upload(s) left unfinished in the bucket"
  say "no multipart upload left unfinished in the bucket"
fi
say "all checks passed in $(($(date +%s) - T0)) s (build included)"
