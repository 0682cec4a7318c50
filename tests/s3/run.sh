#!/usr/bin/env bash
# The blob-store contract, the intake and lifecycle suites and the backup with their blobs in a real S3 store (SeaweedFS on
# loopback), on SQLite and, when PCII_TEST_DATABASE_URL is set, on PostgreSQL too. Afterwards no multipart upload
# may be left unfinished in the bucket (every refused or broken upload aborted its own).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/s3/seaweedfs.sh
source tests/s3/seaweedfs.sh
work="$(mktemp -d)"
trap 'stop_seaweedfs; rm -rf "$work"' EXIT
start_seaweedfs "$work/seaweedfs"
export PCII_TEST_BLOB_STORE="s3://$SEAWEEDFS_BUCKET"
suites=(blob_store:: intake:: lifecycle:: backup::)

echo "-- SQLite + S3"
PCII_TEST_EXPECT_BACKEND=sqlite cargo test --test integration -- --include-ignored "${suites[@]}"
if [ -n "${PCII_TEST_DATABASE_URL:-}" ]; then
  echo "-- PostgreSQL + S3"
  PCII_TEST_EXPECT_BACKEND=postgres cargo test --features postgres --test integration -- --include-ignored "${suites[@]}"
else
  echo "-- PostgreSQL + S3: SKIPPED (PCII_TEST_DATABASE_URL is not set; only the SQLite + S3 pass ran)"
fi
echo "-- the store goes away under a running release build, then comes back"
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --quiet --bin pcii-portal
bin="$target/release/pcii-portal"
port=18095 base="http://127.0.0.1:18095"
export PCII_CONFIG=/nonexistent.toml PCII_DATA_DIR="$work/portal/data" PCII_KEYS_DIR="$work/portal/keys" \
  PCII_LOG=warn PCII_DATABASE_URL= PCII_ADDRESS=127.0.0.1 PCII_PORT="$port" \
  PCII_BLOB_STORE="s3://$SEAWEEDFS_BUCKET/outage"
email=s3@example.org password="s3-outage-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$bin" keys init >/dev/null
printf '%s\n' "$password" |
  "$bin" user add --email "$email" --role submitter --new-organisation "S3 Org" --password-stdin >/dev/null
"$bin" serve >"$work/portal.log" 2>&1 &
portal_pid=$!
trap 'kill "$portal_pid" 2>/dev/null || true; stop_seaweedfs; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf -o /dev/null "$base/healthz" && break; sleep 0.1; done
jar="$work/jar"
csrf_of() { grep -o 'name="csrf" value="[^"]*"' | head -1 | sed 's/.*value="//; s/"$//'; }
token="$(curl -sf -c "$jar" -b "$jar" "$base/login" | csrf_of)"
curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "email=$email" --data-urlencode "password=$password" \
  --data-urlencode "csrf=$token" "$base/login"
head -c 7000000 /dev/urandom >"$work/file.bin"
upload() {
  local t
  t="$(curl -sf -b "$jar" "$base/submissions/new" | csrf_of)"
  curl -s -o /dev/null -w '%{http_code}' -H 'Expect:' -b "$jar" -F "csrf=$t" -F action=draft -F title=outage \
    -F description_1=file -F "file_1=@$work/file.bin;type=application/octet-stream" "$base/submissions"
}
submissions() {
  python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from submissions").fetchone()[0])' \
    "$PCII_DATA_DIR/pcii.sqlite3"
}
expect() { if [ "$2" != "$3" ]; then echo "FAIL: $1: got $2, expected $3" >&2; tail -20 "$work/portal.log" >&2; exit 1; fi; }
# A draft of text only (its content document is a blob too), and the file of the first upload by its link.
text_only() {
  local t
  t="$(curl -sf -b "$jar" "$base/submissions/new" | csrf_of)"
  curl -s -o /dev/null -w '%{http_code}' -b "$jar" -F "csrf=$t" -F action=draft -F title=words "$base/submissions"
}
download() { curl -s -o /dev/null -w '%{http_code}' -b "$jar" "$base$file_link"; }
expect "upload with the store up" "$(upload)" 303
expect "health with the store up" "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" 200
file_link="$(python3 -c 'import sqlite3, sys; print("/submissions/%s/files/%s" % sqlite3.connect(sys.argv[1]).execute("select submission_id, id from attachments").fetchone())' \
  "$PCII_DATA_DIR/pcii.sqlite3")"
expect "download with the store up" "$(download)" 200
stop_seaweedfs
expect "upload with the store down" "$(upload)" 503
expect "text-only draft with the store down" "$(text_only)" 503
expect "download with the store down" "$(download)" 503
expect "health with the store down" "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" 503
curl -s "$base/healthz" | grep -q '"blob_store":"unavailable"' || { echo "FAIL: healthz does not name the blob store" >&2; exit 1; }
expect "submissions after the refused uploads" "$(submissions)" 1
start_seaweedfs "$work/seaweedfs"
expect "health with the store back" "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" 200
expect "upload with the store back" "$(upload)" 303
expect "submissions after the store came back" "$(submissions)" 2
kill "$portal_pid"
echo "store down: upload, text-only draft and download 503, /healthz 503 naming the blob store, no row; back: 200 and uploads again"

left="$(seaweedfs_unfinished_uploads)"
if [ "$left" != 0 ]; then
  echo "FAIL: $left multipart upload(s) left unfinished in the bucket" >&2
  exit 1
fi
echo "S3 suites passed; no unfinished multipart upload left in the bucket"
