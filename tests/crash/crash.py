#!/usr/bin/env python3
"""The crash-consistency suite's driver (Python 3 standard library only); started by tests/crash/run.sh.

Starts the release binary on loopback with fresh data and key directories, then, scenario after scenario on the
same store, fires actions, `kill -9`s the process while they are in flight, restarts it on the same data and keys,
and checks what a crash may and may not leave behind:

  1. upload       several concurrent large uploads (two files each), the server killed mid-stream
  2. decisions    an officer's burst of decisions (validate, defective, not validated; some sent twice at once)
  3. rotation     `pcii-portal keys rotate` killed at ever later moments, each time rerun to completion
  4. destruction  a burst of destructions (withdrawal with destruction; destruction after "not validated")

After every restart: every acknowledged action (a 303) is present, exactly once; an unacknowledged one is either
wholly there or wholly absent; no row points to a missing blob; no temporary file remains; the deletion queue is
empty; no blob file lacks a row (after the grace period, see below); and `pcii-portal audit verify` exits 0.

Blob files no row references ("orphans") are, by design, kept by the start-up sweep while they are younger than
`blob_sweep_grace_minutes` (another instance may be about to commit them). So scenario 1 counts them after the
first restart (PCII_CRASH_STRICT_ORPHANS=1 makes that a failure), then restarts once more as if the grace period
had passed (PCII_BLOB_SWEEP_GRACE_MINUTES=0) and asserts that none remain. Temporaries (`.tmp-*`) of the killed
process must be gone after the first restart whatever their age.

Environment (all optional): see tests/crash/run.sh.
"""

import base64
import concurrent.futures as cf
import hashlib
import hmac
import http.client
import os
import random
import re
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

WORK = os.environ["PCII_CRASH_WORK"]
BIN = os.environ["PCII_CRASH_BIN"]
UPLOAD_MIB = int(os.environ.get("PCII_CRASH_UPLOAD_MIB", "96"))
UPLOADERS = int(os.environ.get("PCII_CRASH_UPLOADERS", "4"))
SUBMISSIONS = int(os.environ.get("PCII_CRASH_SUBMISSIONS", "150"))
ROTATE_KILLS = int(os.environ.get("PCII_CRASH_ROTATE_KILLS", "10"))
ROTATE_KEYS = int(os.environ.get("PCII_CRASH_ROTATE_KEYS", "4500"))
ROUNDS = int(os.environ.get("PCII_CRASH_ROUNDS", "2"))
DESTROY = int(os.environ.get("PCII_CRASH_DESTROY", "120"))
BURST_THREADS = int(os.environ.get("PCII_CRASH_THREADS", "8"))
STRICT_ORPHANS = os.environ.get("PCII_CRASH_STRICT_ORPHANS", "") not in ("", "0")
ONLY = [s for s in os.environ.get("PCII_CRASH_ONLY", "").replace(",", " ").split() if s]
# The prefix of an age identity in clear, spelt in two halves so that no tracked file holds the string itself.
AGE_IDENTITY = "AGE-SECRET" + "-KEY-"
AGE_IDENTITY_RE = re.compile(re.escape(AGE_IDENTITY) + r"[0-9A-Z]+")
SEED = int(os.environ.get("PCII_CRASH_SEED") or random.SystemRandom().randrange(1, 2**31))
rng = random.Random(SEED)

DATA = os.path.join(WORK, "data")
KEYS = os.path.join(WORK, "keys")
BLOBS = os.path.join(DATA, "blobs")
DB_PATH = os.path.join(DATA, "pcii.sqlite3")
PIDS = os.path.join(WORK, "pids")
os.makedirs(PIDS, exist_ok=True)

T0 = time.monotonic()


def log(msg):
    print(f"  [{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class Failure(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# The portal process and its CLI
# ------------------------------------------------------------------------------------------------


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


PORT = free_port()


def base_env(extra=None):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("PCII_CRASH_"):
            del env[k]
    env.update(
        PCII_CONFIG="/nonexistent.toml",
        PCII_DATA_DIR=DATA,
        PCII_KEYS_DIR=KEYS,
        PCII_DATABASE_URL="",
        PCII_ADDRESS="127.0.0.1",
        PCII_PORT=str(PORT),
        ROCKET_ADDRESS="127.0.0.1",
        ROCKET_PORT=str(PORT),
        PCII_LOG=os.environ.get("PCII_LOG", "info"),
        # The suite signs its officer in once per server life; a slow CI machine must not outlive the step-up.
        PCII_STEP_UP_MINUTES="120",
        # The suite's organisation is never verified and sends more than an unverified one may.
        PCII_MAX_UNVERIFIED_SENT_PER_ORGANISATION="1000000000",
        PCII_MAX_UNVERIFIED_SENT_BYTES_PER_ORGANISATION=str(1 << 50),
        PCII_MAX_UNVERIFIED_SENT_BYTES_TOTAL=str(1 << 50),
        NO_COLOR="1",
    )
    if extra:
        env.update(extra)
    return env


def cli(*args, stdin=None, extra=None, check=True):
    p = subprocess.run(
        [BIN, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=base_env(extra),
        cwd=WORK,
    )
    if check and p.returncode != 0:
        raise Failure(f"`pcii-portal {' '.join(args)}` exited {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


class Portal:
    def __init__(self):
        self.proc = None
        self.starts = 0

    def start(self, extra=None, label="start"):
        self.starts += 1
        self.log_path = os.path.join(WORK, f"server-{self.starts:02d}-{label}.log")
        out = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [BIN, "serve"], stdout=out, stderr=subprocess.STDOUT, env=base_env(extra), cwd=WORK
        )
        out.close()
        with open(os.path.join(PIDS, "server.pid"), "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"the portal exited during start-up ({self.log_path}):\n{tail(self.log_path)}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
                c.request("GET", "/healthz")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise Failure("the portal did not answer /healthz within 120 s")

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self, extra=None, label="restart"):
        self.kill9()
        self.start(extra, label)


def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
    except OSError:
        return ""


portal = Portal()

# ------------------------------------------------------------------------------------------------
# HTTP: one client per person (its cookies), a new connection per request, redirects not followed
# ------------------------------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')


class Client:
    def __init__(self, name):
        self.name = name
        self.cookies = {}
        self.lock = threading.Lock()
        self.csrf = None

    def _cookie_header(self):
        with self.lock:
            return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _take_cookies(self, resp):
        for value in resp.headers.get_all("Set-Cookie") or []:
            first, *attrs = [p.strip() for p in value.split(";")]
            k, _, v = first.partition("=")
            gone = any(a.lower() == "max-age=0" for a in attrs) or (
                any(a.lower().startswith("expires=") and "1970" in a for a in attrs)
            )
            with self.lock:
                if gone or v == "":
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = v

    def request(self, method, path, body=None, headers=None, sink=None, timeout=120):
        """(status, headers, body). With `sink`, the body is fed to sink(chunk) and not kept."""
        h = {"Cookie": self._cookie_header(), "Connection": "close"}
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            self._take_cookies(r)
            if sink is None:
                data = r.read()
            else:
                data = b""
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    sink(chunk)
            return r.status, r.headers, data
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post_form(self, path, fields, **kw):
        body = urllib.parse.urlencode(fields).encode()
        return self.request(
            "POST", path, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}, **kw
        )

    def page_csrf(self, path):
        st, _, body = self.get(path)
        m = CSRF_RE.search(body.decode("utf-8", "replace"))
        if st != 200 or not m:
            raise Failure(f"{self.name}: no form token on {path} (HTTP {st})")
        return m.group(1), body.decode("utf-8", "replace")

    def sign_in(self, email, password):
        token, _ = self.page_csrf("/login")
        st, h, _ = self.post_form("/login", {"email": email, "password": password, "csrf": token})
        if st != 303:
            raise Failure(f"{self.name}: sign-in answered HTTP {st}")
        return h.get("Location", "")

    def download_sha(self, path):
        digest = hashlib.sha256()
        n = [0]

        def sink(chunk):
            digest.update(chunk)
            n[0] += len(chunk)

        st, _, _ = self.request("GET", path, sink=sink, timeout=300)
        return st, digest.hexdigest(), n[0]


# ------------------------------------------------------------------------------------------------
# TOTP as RFC 6238 (HMAC-SHA-1, 6 digits, 30 s); the portal takes one step of skew and each step once
# ------------------------------------------------------------------------------------------------


def totp(seed, step):
    mac = hmac.new(seed, struct.pack(">Q", step), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[o : o + 4])[0] & 0x7FFFFFFF) % 1_000_000)


def totp_self_test():
    seed = b"12345678901234567890"
    for t, code in [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")]:
        if totp(seed, t // 30) != code:
            raise Failure(f"TOTP self-test failed at {t}")


class App:
    """An authenticator app: the seed and the last step it gave (a step is accepted once)."""

    def __init__(self, secret_text):
        s = secret_text.replace(" ", "").upper()
        self.seed = base64.b32decode(s + "=" * (-len(s) % 8))
        self.last = -1

    def code(self):
        while True:
            now = int(time.time()) // 30
            step = max(now, self.last + 1)
            if step <= now + 1:
                self.last = step
                return totp(self.seed, step)
            time.sleep((now + 1) * 30 - time.time() + 0.2)


# ------------------------------------------------------------------------------------------------
# The database, read directly (read-only) by the checks
# ------------------------------------------------------------------------------------------------


def db():
    c = sqlite3.connect(f"file:{DB_PATH}?mode=ro", uri=True, timeout=30)
    c.row_factory = sqlite3.Row
    return c


_conn = threading.local()


def q(sql, *args):
    shared = getattr(_conn, "c", None)
    if shared is not None:
        return shared.execute(sql, args).fetchall()
    c = db()
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


class one_connection:
    """Within it, q() on this thread reads through one connection (one snapshot per query still)."""

    def __enter__(self):
        _conn.c = db()

    def __exit__(self, *exc):
        _conn.c.close()
        _conn.c = None


def q1(sql, *args):
    rows = q(sql, *args)
    return rows[0][0] if rows else None


def blob_files():
    names = os.listdir(BLOBS) if os.path.isdir(BLOBS) else []
    tmps = sorted(n for n in names if n.startswith(".tmp-"))
    blobs = set(n for n in names if not n.startswith("."))
    return blobs, tmps


class Checks:
    """Failures of one scenario, each with its evidence; `n` counts acknowledged actions checked."""

    def __init__(self, name):
        self.name = name
        self.failures = []
        self.notes = []
        self.n = 0

    def fail(self, what):
        self.failures.append(what)
        log(f"FAIL: {what}")

    def expect(self, ok, what):
        if not ok:
            self.fail(what)
        return ok

    def note(self, what):
        self.notes.append(what)
        log(what)


LIVE = ("received", "defective", "validated", "not_validated", "withdrawn", "protection_removed")
DEAD = ("destroyed", "returned")
STATUSES = ("draft",) + LIVE + DEAD


def check_store(ck, when, orphans_fail=True):
    """Store-wide invariants after a restart: rows and blob files agree, no temporaries, an empty deletion queue,
    every submission in a possible state. Returns the orphan names."""
    with one_connection():
        return _check_store(ck, when, orphans_fail)


def _check_store(ck, when, orphans_fail):
    files, tmps = blob_files()
    ck.expect(not tmps, f"{when}: {len(tmps)} temporary file(s) left in data/blobs after the start-up sweep: "
              f"{', '.join(tmps[:5])}")
    rows = q("SELECT storage_name, submission_id, kind FROM blobs")
    referenced = {r["storage_name"] for r in rows}
    queued = {r[0] for r in q("SELECT storage_name FROM blob_deletions")}
    ck.expect(not queued, f"{when}: {len(queued)} name(s) still on the deletion queue after the start-up sweep")
    missing = sorted(referenced - files)
    ck.expect(not missing, f"{when}: {len(missing)} blob row(s) point to a missing file: {missing[:3]}")
    orphans = sorted(files - referenced - queued)
    if orphans and orphans_fail:
        ck.fail(f"{when}: {len(orphans)} blob file(s) no row references (orphans): {orphans[:3]}")
    bad = q(f"SELECT id, status FROM submissions WHERE status NOT IN ({','.join('?' * len(STATUSES))})", *STATUSES)
    ck.expect(not bad, f"{when}: submissions with an unknown status: {[tuple(r) for r in bad[:3]]}")
    for s in q("SELECT * FROM submissions WHERE status != 'draft'"):
        sid, st = s["id"], s["status"]
        where = f"{when}: submission {sid} ({st})"
        ck.expect(s["tracking_number"] and s["received_at"], f"{where} has no tracking number or receipt time")
        atts = q("SELECT * FROM attachments WHERE submission_id = ?", sid)
        nkeys = q1("SELECT count(*) FROM data_keys WHERE submission_id = ?", sid)
        nblobs = q1("SELECT count(*) FROM blobs WHERE submission_id = ?", sid)
        ndestr = q1("SELECT count(*) FROM destruction_records WHERE submission_id = ?", sid)
        ck.expect(len(atts) == s["file_count"], f"{where}: {len(atts)} attachment rows, file_count {s['file_count']}")
        if st in DEAD:
            ck.expect(nkeys == 0, f"{where}: {nkeys} data key(s) survive its destruction")
            ck.expect(nblobs == 0, f"{where}: {nblobs} blob row(s) survive its destruction")
            ck.expect(ndestr == 1, f"{where}: {ndestr} destruction records (1 expected)")
            ck.expect(all(a["blob_id"] is None for a in atts), f"{where}: an attachment still points to a blob")
        else:
            ck.expect(nkeys >= 1, f"{where}: no data key")
            ck.expect(ndestr == 0, f"{where}: has a destruction record")
            ck.expect(s["content_blob_id"] is not None, f"{where}: no content document")
            for a in atts:
                ok = a["blob_id"] is not None and q1("SELECT count(*) FROM blobs WHERE id = ?", a["blob_id"]) == 1
                ck.expect(ok, f"{where}: attachment {a['id']} points to no blob row")
        if st == "defective":
            ck.expect(s["defect_notice_at"] and s["cure_due_at"], f"{where}: no defect notice date or cure date")
        if st in ("validated", "not_validated"):
            ck.expect(s["decided_at"] and s["decided_by"], f"{where}: no decision date or officer")
        last = q("SELECT to_status FROM submission_events WHERE submission_id = ? "
                 "ORDER BY at DESC, rowid DESC LIMIT 1", sid)
        ck.expect(last and last[0][0] == st, f"{where}: its last history event leads to "
                  f"{last[0][0] if last else None}, not to its status")
    return orphans


def audit_verify(ck, when):
    p = cli("audit", "verify", check=False)
    ck.expect(p.returncode == 0, f"{when}: `pcii-portal audit verify` exited {p.returncode}: "
              f"{(p.stderr or p.stdout).strip()[-800:]}")


def audit_count(action, sid):
    return q1("SELECT count(*) FROM audit_entries WHERE action = ? AND object_id = ? AND outcome = 'success'",
              action, sid)


# ------------------------------------------------------------------------------------------------
# Accounts and uploads
# ------------------------------------------------------------------------------------------------

PASSWORD = "crash-" + os.urandom(12).hex()
SUBMITTER = "sam.crash@gridco.example.com"
OFFICER = "otto.crash@pcii.example.gov"
submitter = Client("submitter")
officer = Client("officer")
officer_app = None

# What the suite knows each live attachment must hold: attachment id -> (submission id, sha256, size).
expected_files = {}


def setup_accounts():
    global officer_app
    cli("keys", "init")
    cli("user", "add", "--email", SUBMITTER, "--role", "submitter", "--name", "Sam Crash",
        "--new-organisation", "GridCo Crash Test", "--password-stdin", stdin=PASSWORD + "\n")
    cli("user", "add", "--email", OFFICER, "--role", "officer", "--name", "Otto Crash",
        "--agency", "PCII Program Office", "--password-stdin", stdin=PASSWORD + "\n")
    portal.start(label="first")
    submitter.sign_in(SUBMITTER, PASSWORD)
    submitter.csrf, _ = submitter.page_csrf("/submissions/new")
    # The officer must enrol a second factor at its first sign-in: the secret is read from the page as a person
    # types it into an app, and confirmed with a code computed from it.
    where = officer.sign_in(OFFICER, PASSWORD)
    if not where.endswith("/account/security"):
        raise Failure(f"officer's first sign-in led to {where}, not /account/security")
    st, _, body = officer.get("/account/security/totp")
    text = body.decode("utf-8", "replace")
    m = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', text)
    tok = CSRF_RE.search(text)
    if st != 200 or not m or not tok:
        raise Failure(f"officer: no TOTP secret on /account/security/totp (HTTP {st})")
    officer_app = App(m.group(1))
    st, h, _ = officer.post_form("/account/security/totp", {"code": officer_app.code(), "csrf": tok.group(1)})
    if st != 303:
        raise Failure(f"officer: confirming the authenticator app answered HTTP {st}")
    officer.csrf, _ = officer.page_csrf("/officer")


def officer_sign_in_again():
    """A new officer session: password, then a code from the app (the sealed TOTP seed must still open)."""
    global officer
    officer = Client("officer")
    where = officer.sign_in(OFFICER, PASSWORD)
    if not where.endswith("/login/second-factor"):
        raise Failure(f"officer's sign-in led to {where}, not /login/second-factor")
    token, _ = officer.page_csrf("/login/second-factor")
    st, h, _ = officer.post_form("/login/second-factor", {"factor_code": officer_app.code(), "csrf": token})
    if st != 303 or not h.get("Location", "").endswith("/dashboard"):
        raise Failure(f"officer: the authenticator code was refused (HTTP {st}, to {h.get('Location')})")
    officer.csrf, _ = officer.page_csrf("/officer")


SUBMIT_FIELDS = [
    ("action", "submit"),
    ("sector", "Energy"),
    ("narrative", "Crash-consistency suite: a report about a substation."),
    ("primary_name", "Sam Crash"),
    ("primary_email", SUBMITTER),
    ("primary_phone", "555-0100"),
    ("federal_requirement", "no"),
    ("express_statement", "yes"),
    ("cert_not_public", "yes"),
    ("cert_not_regulatory", "yes"),
    ("cert_authorized", "yes"),
]


class Upload:
    """One multipart POST /submissions of files on disk, streamed; progress is visible to the killer."""

    def __init__(self, title, paths):
        self.title = title
        self.paths = paths
        self.sent = 0
        self.total = 0
        self.started = False
        self.done = False
        self.status = None
        self.location = None
        self.error = None

    def body(self, boundary):
        b = boundary.encode()
        parts = []

        def field(name, value):
            return (b"--" + b + b"\r\nContent-Disposition: form-data; name=\"" + name.encode() + b"\"\r\n\r\n"
                    + value.encode() + b"\r\n")

        head = field("csrf", submitter.csrf)
        head += field("form_token", os.urandom(16).hex())
        head += field("title", self.title)
        for k, v in SUBMIT_FIELDS:
            head += field(k, v)
        parts.append(head)
        for i, p in enumerate(self.paths, 1):
            parts.append(field(f"description_{i}", f"file {i} of {self.title}"))
            parts.append(b"--" + b + (f"\r\nContent-Disposition: form-data; name=\"file_{i}\"; "
                                      f"filename=\"{os.path.basename(p)}\"\r\n"
                                      "Content-Type: application/octet-stream\r\n\r\n").encode())
            parts.append(("file", p))
            parts.append(b"\r\n")
        parts.append(b"--" + b + b"--\r\n")
        length = sum(os.path.getsize(x[1]) if isinstance(x, tuple) else len(x) for x in parts)

        def gen():
            for x in parts:
                if isinstance(x, tuple):
                    with open(x[1], "rb") as f:
                        while True:
                            chunk = f.read(1 << 20)
                            if not chunk:
                                break
                            self.sent += len(chunk)
                            yield chunk
                else:
                    self.sent += len(x)
                    yield x

        return length, gen()

    def run(self):
        boundary = "crash" + os.urandom(12).hex()
        length, gen = self.body(boundary)
        self.total = length
        self.started = True
        try:
            st, h, _ = submitter.request(
                "POST", "/submissions", body=gen,
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)},
                timeout=300)
            self.status = st
            self.location = h.get("Location")
        except (OSError, http.client.HTTPException) as e:
            self.error = f"{type(e).__name__}: {e}"
        self.done = True
        return self

    def submission_id(self):
        m = re.match(r"^/submissions/([^/]+)/receipt$", self.location or "")
        return m.group(1) if m else None


def make_file(path, nbytes):
    with open(path, "wb") as f:
        left = nbytes
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_files(sid, shas_by_position):
    """After an acknowledged upload: its attachments' ids, by position, with the sha256 they must download as."""
    for a in q("SELECT id, position, size_bytes FROM attachments WHERE submission_id = ?", sid):
        sha = shas_by_position.get(a["position"])
        if sha:
            expected_files[a["id"]] = (sid, sha, a["size_bytes"])


def check_downloads(ck, client, att_ids, when, prefix="/submissions"):
    bad = 0
    for aid in att_ids:
        sid, sha, size = expected_files[aid]
        st, got, n = client.download_sha(f"{prefix}/{sid}/files/{aid}")
        if st != 200 or got != sha:
            bad += 1
            ck.fail(f"{when}: attachment {aid} of {sid}: HTTP {st}, {n} bytes, sha256 {got[:12]}… "
                    f"(expected 200, {size} bytes, {sha[:12]}…)")
    return len(att_ids) - bad


def small_submissions(count, prefix, threads=4, tiny=False):
    """`count` submitted (received) submissions with one small random file each; returns their ids."""
    os.makedirs(os.path.join(WORK, "small"), exist_ok=True)

    def one(i):
        path = os.path.join(WORK, "small", f"{prefix}-{i}.bin")
        sha = make_file(path, 64 if tiny else 4096 + (i * 7919) % 65536)
        up = Upload(f"crash {prefix} {i}", [path]).run()
        os.unlink(path)
        if up.status != 303 or not up.submission_id():
            raise Failure(f"preparing {prefix} submission {i}: HTTP {up.status} {up.error or ''}")
        return up.submission_id(), sha

    with cf.ThreadPoolExecutor(threads) as ex:
        done = list(ex.map(one, range(count)))
    with one_connection():
        for sid, sha in done:
            record_files(sid, {1: sha})
    return [sid for sid, _ in done]


# ------------------------------------------------------------------------------------------------
# Scenario 1: mid-upload
# ------------------------------------------------------------------------------------------------


def scenario_upload(ck, rnd):
    os.makedirs(os.path.join(WORK, "files"), exist_ok=True)
    big_bytes = UPLOAD_MIB << 20
    # Each uploader sends its own pair: a small first file (its blob is committed to the store while the second
    # still streams) and a large second one, sizes spread so that uploads finish at different moments.
    pairs = []
    for w in range(UPLOADERS):
        small = os.path.join(WORK, "files", f"w{w}-small.bin")
        large = os.path.join(WORK, "files", f"w{w}-large.bin")
        s1 = make_file(small, 256 * 1024 + w)
        s2 = make_file(large, max(1 << 20, big_bytes * (UPLOADERS + w) // (2 * UPLOADERS - 1)))
        pairs.append(((small, s1), (large, s2)))
    existing = {r["id"] for r in q("SELECT id FROM submissions")}
    log(f"{UPLOADERS} uploaders, second files of "
        f"{', '.join(str(os.path.getsize(p[1][0]) >> 20) for p in pairs)} MiB")
    uploads = []
    lock = threading.Lock()
    stop = threading.Event()

    crashed = []

    def worker(w):
        try:
            work(w)
        except Exception as e:  # a bug of the suite, not of the portal: stop at once
            crashed.append(f"uploader {w}: {type(e).__name__}: {e}")
            stop.set()

    def work(w):
        n = 0
        while not stop.is_set():
            (small, _), (large, _) = pairs[w]
            up = Upload(f"crash upload w{w} n{n}", [small, large])
            up.worker = w
            with lock:
                uploads.append(up)
            up.run()
            n += 1
            if up.error:
                return

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(UPLOADERS)]
    for t in threads:
        t.start()
    # Kill once enough uploads were acknowledged, and then: in even rounds when every uploader is in the middle of
    # a file; in odd rounds the moment an upload has sent its last byte and waits for its answer (the blobs being
    # fsynced and renamed, the rows committed).
    mode = "mid-stream" if rnd % 2 == 0 else "at commit"
    want = UPLOADERS + rng.randrange(0, UPLOADERS + 1)
    deadline = time.monotonic() + 240
    while True:
        with lock:
            acked = sum(1 for u in uploads if u.status == 303)
            inflight = [u for u in uploads if u.started and not u.done]
        if acked >= want and mode == "mid-stream" and len(inflight) == UPLOADERS and all(
                (1 << 20) < u.sent < u.total - (1 << 20) for u in inflight):
            time.sleep(rng.random() * 0.2)
            break
        if acked >= want and mode == "at commit" and any(u.sent == u.total for u in inflight):
            break
        if crashed:
            raise Failure(crashed[0])
        if time.monotonic() > deadline:
            raise Failure(f"only {acked} of {want} uploads acknowledged within 240 s")
        bad = [u for u in uploads if u.done and u.status not in (303, None)]
        if bad:
            raise Failure(f"an upload answered HTTP {bad[0].status} before the kill")
        time.sleep(0.005 if mode == "mid-stream" else 0.0005)
    _, tmps = blob_files()
    with lock:
        progress = [f"{u.sent * 100 // max(u.total, 1)}%" for u in uploads if u.started and not u.done]
    portal.kill9()
    stop.set()
    log(f"kill -9 ({mode}) with {len(progress)} upload(s) in flight ({', '.join(progress)} sent), "
        f"{len(tmps)} temporary file(s) in data/blobs")
    if mode == "mid-stream":
        ck.expect(tmps, "no temporary file was in data/blobs at the kill (the kill was not mid-stream)")
    for t in threads:
        t.join(60)
    files_at_kill, tmps_at_kill = blob_files()

    portal.start(label="after-upload-kill")
    acked = [u for u in uploads if u.status == 303]
    lost = [u for u in uploads if u.status != 303]
    ck.expect(all(u.error for u in lost), "an unacknowledged upload ended without a connection error: "
              f"{[(u.title, u.status) for u in lost if not u.error]}")
    shas = {u.title: {1: pairs[u.worker][0][1], 2: pairs[u.worker][1][1]} for u in uploads}
    # Every acknowledged upload: its submission, received with both files, byte-identical.
    for u in acked:
        sid = u.submission_id()
        if not ck.expect(sid, f"{u.title}: 303 to {u.location}, not to a receipt"):
            continue
        st, _, body = submitter.get(f"/submissions/{sid}")
        ck.expect(st == 200 and u.title in body.decode("utf-8", "replace"),
                  f"{u.title}: its submission page answers HTTP {st} without its title")
        row = q("SELECT status, tracking_number, file_count FROM submissions WHERE id = ?", sid)
        ck.expect(row and row[0]["status"] == "received" and row[0]["tracking_number"] and row[0]["file_count"] == 2,
                  f"{u.title}: row {[tuple(r) for r in row]} (expected received, a tracking number, 2 files)")
        n_audit = audit_count("submission.received", sid)
        ck.expect(n_audit == 1, f"{u.title}: {n_audit} submission.received audit entries (1 expected)")
        record_files(sid, shas[u.title])
    ids = [a for a, (sid, _, _) in expected_files.items() if sid in {u.submission_id() for u in acked}]
    good = check_downloads(ck, submitter, ids, "after the upload kill")
    ck.expect(len(ids) == 2 * len(acked), f"{len(ids)} attachment rows for {len(acked)} acknowledged uploads")
    # Unacknowledged uploads: wholly there (committed, the answer lost) or wholly absent — never a part.
    known = {u.submission_id() for u in acked} | existing
    extra = [r["id"] for r in q("SELECT id FROM submissions WHERE status != 'draft'") if r["id"] not in known]
    for sid in extra:
        st, _, body = submitter.get(f"/submissions/{sid}")
        text = body.decode("utf-8", "replace")
        u = next((u for u in lost if u.title in text), None)
        if not ck.expect(st == 200 and u, f"an unacknowledged submission {sid} matches no upload (HTTP {st})"):
            continue
        record_files(sid, shas[u.title])
        ids2 = [a for a, (s, _, _) in expected_files.items() if s == sid]
        ck.expect(len(ids2) == 2, f"unacknowledged {u.title} committed with {len(ids2)} of 2 files")
        check_downloads(ck, submitter, ids2, f"unacknowledged but committed {u.title}")
    drafts = q1("SELECT count(*) FROM submissions WHERE status = 'draft'")
    ck.expect(drafts == 0, f"{drafts} draft row(s) appeared from submit-only uploads")
    orphans = check_store(ck, "after the upload kill", orphans_fail=STRICT_ORPHANS)
    left_tmps = [t for t in tmps_at_kill if os.path.exists(os.path.join(BLOBS, t))]
    log(f"after restart: {len(acked)} acknowledged upload(s) present ({good} file(s) byte-identical), "
        f"{len(extra)} unacknowledged but committed, {len(lost)} lost in flight; "
        f"{len(left_tmps)} of {len(tmps_at_kill)} temporaries of the killed process left; "
        f"{len(orphans)} orphan blob(s) kept within the grace period")
    audit_verify(ck, "after the upload kill")
    # As if the grace period had passed: the sweep at start must take every orphan and temporary.
    portal.restart({"PCII_BLOB_SWEEP_GRACE_MINUTES": "0"}, label="grace-elapsed")
    check_store(ck, "after a restart past the grace period")
    for aid in list(expected_files):
        sid = expected_files[aid][0]
        ok = q1("SELECT count(*) FROM attachments a JOIN blobs b ON b.id = a.blob_id WHERE a.id = ?", aid)
        ck.expect(ok == 1, f"after the grace sweep: attachment {aid} of {sid} lost its blob")
    audit_verify(ck, "after the grace sweep")
    portal.restart(label="default-grace")  # what follows runs with the default grace period again
    ck.n += len(acked)
    return {"kills": 1, "acknowledged uploads": len(acked), "committed unacknowledged": len(extra),
            "lost in flight": len(lost), "temporaries left by the start": len(left_tmps),
            "orphans kept within the grace": len(orphans)}


# ------------------------------------------------------------------------------------------------
# Scenario 2: mid-decision burst
# ------------------------------------------------------------------------------------------------

DECISIONS = [("validate", "validated", "decision.validated"),
             ("defective", "defective", "decision.defective"),
             ("not_validated", "not_validated", "decision.not_validated")]


def counts_of(sid):
    return (q1("SELECT count(*) FROM submission_events WHERE submission_id = ?", sid),
            q1("SELECT count(*) FROM notices WHERE submission_id = ?", sid))


def burst(client, jobs, want_acks, label):
    """Runs `jobs` (path, form fields, key) as POSTs on BURST_THREADS threads; kills the portal once `want_acks`
    were acknowledged (plus a random moment up to 10 ms). Returns {key: [HTTP status or exception name]}."""
    results = {}
    lock = threading.Lock()
    acked = [0]
    killed = threading.Event()
    jobs = list(jobs)

    def one(job):
        path, fields, key = job
        if killed.is_set():
            return
        try:
            st, _, _ = client.post_form(path, fields, timeout=60)
            res = st
        except (OSError, http.client.HTTPException) as e:
            res = f"{type(e).__name__}"
        with lock:
            results.setdefault(key, []).append(res)
            if res == 303:
                acked[0] += 1

    with cf.ThreadPoolExecutor(BURST_THREADS) as ex:
        futs = [ex.submit(one, j) for j in jobs]
        deadline = time.monotonic() + 120
        while True:
            with lock:
                n = acked[0]
            if n >= want_acks or all(f.done() for f in futs):
                break
            if time.monotonic() > deadline:
                raise Failure(f"{label}: only {n} of {want_acks} acknowledged within 120 s")
            time.sleep(0.001)
        time.sleep(rng.random() * 0.01)
        running = sum(1 for f in futs if f.running())
        with lock:
            at_kill = acked[0]
        portal.kill9()
        killed.set()
        log(f"{label}: kill -9 after {at_kill} acknowledged, {running} request(s) in flight")
        for f in futs:
            f.result()
    return results


def scenario_decisions(ck, rnd):
    log(f"preparing {SUBMISSIONS} received submissions")
    ids = small_submissions(SUBMISSIONS, "decision")
    before = {sid: counts_of(sid) for sid in ids}
    plan = {}
    jobs = []
    for i, sid in enumerate(ids):
        d = DECISIONS[i % 3]
        plan[sid] = d
        # confirm=1: the button of the page that asks to confirm a final decision (defective needs none).
        fields = {"csrf": officer.csrf, "decision": d[0], "confirm": "1", "reason": f"crash suite reason {i}"}
        jobs.append((f"/officer/submissions/{sid}/decision", fields, sid))
        if i % 10 == 0:  # the same decision sent twice at once: at most one may be recorded
            jobs.append((f"/officer/submissions/{sid}/decision", fields, sid))
    rng.shuffle(jobs)
    results = burst(officer, jobs, int(len(ids) * (0.3 + 0.4 * rng.random())), "decision burst")
    portal.start(label="after-decision-kill")
    n_acked = n_applied = 0
    for sid in ids:
        verb, target, action = plan[sid]
        res = results.get(sid, [])
        acked = res.count(303)
        row = q("SELECT status FROM submissions WHERE id = ?", sid)
        status = row[0]["status"] if row else None
        ev, no = counts_of(sid)
        aud = audit_count(action, sid)
        ev_to = q1("SELECT count(*) FROM submission_events WHERE submission_id = ? AND to_status = ?", sid, target)
        where = f"submission {sid} ({verb}; answers {res})"
        ck.expect(acked <= 1, f"{where}: the same decision was acknowledged {acked} times")
        # 303, a refused second copy (409), or a connection the kill broke; any other answer is a failure.
        odd = [r for r in res if isinstance(r, int) and r not in (303, 409)]
        ck.expect(not odd, f"{where}: answered {odd}")
        if acked:
            n_acked += 1
            ck.expect(status == target, f"{where}: acknowledged, but its status is {status}")
        if status == target:
            n_applied += 1
            ck.expect(ev == before[sid][0] + 1 and ev_to == 1,
                      f"{where}: {ev - before[sid][0]} new history event(s), {ev_to} to {target} (1 expected)")
            ck.expect(no == before[sid][1] + 1, f"{where}: {no - before[sid][1]} new notice(s) (1 expected)")
            ck.expect(aud == 1, f"{where}: {aud} audit entries {action} (1 expected)")
        elif status == "received":
            ck.expect((ev, no) == before[sid] and aud == 0,
                      f"{where}: not decided, yet {ev - before[sid][0]} event(s), {no - before[sid][1]} "
                      f"notice(s), {aud} audit entries")
        else:
            ck.fail(f"{where}: impossible status {status}")
    log(f"after restart: {n_acked} acknowledged decisions recorded once, {n_applied - n_acked} applied but "
        f"unacknowledged, {len(ids) - n_applied} not applied")
    check_store(ck, "after the decision kill")
    audit_verify(ck, "after the decision kill")
    ck.n += n_acked
    return {"kills": 1, "acknowledged decisions": n_acked, "applied unacknowledged": n_applied - n_acked,
            "not applied": len(ids) - n_applied}


# ------------------------------------------------------------------------------------------------
# Scenario 3: mid-rotation
# ------------------------------------------------------------------------------------------------


def keys_dir_listing():
    out = []
    for root, _, names in os.walk(KEYS):
        for n in names:
            out.append(os.path.relpath(os.path.join(root, n), KEYS))
    return sorted(out)


def live_attachments():
    live = {r["id"] for r in q(f"SELECT id FROM submissions WHERE status IN ({','.join('?' * len(LIVE))})", *LIVE)}
    return [a for a, (sid, _, _) in expected_files.items() if sid in live]


def identities_in_file():
    try:
        with open(os.path.join(KEYS, "age-identities.txt")) as f:
            return f.read().count(AGE_IDENTITY)
    except OSError:
        return 0


def masters_in_use():
    return {r[0]: r[1] for r in q("SELECT master_key_id, count(*) FROM data_keys GROUP BY master_key_id")}


def scenario_rotation(ck, rnd):
    nkeys = q1("SELECT count(*) FROM data_keys")
    if nkeys < ROTATE_KEYS:
        # `keys rotate` re-wraps 2,000 data keys per transaction: several batches make a kill between them likely.
        log(f"preparing {ROTATE_KEYS - nkeys} more submissions (one small file each) for {ROTATE_KEYS} data keys")
        small_submissions(ROTATE_KEYS - nkeys, "rotation", tiny=True)
        nkeys = q1("SELECT count(*) FROM data_keys")
    keys_before = keys_dir_listing()
    t = time.monotonic()
    cli("keys", "rotate")
    full = time.monotonic() - t
    log(f"a whole `keys rotate` of {nkeys} data keys took {full * 1000:.0f} ms")
    att = live_attachments()
    small = [a for a in att if expected_files[a][2] < (1 << 20)]
    mid_way = split = 0
    # Kills at a random moment of a whole run's duration, and at moments the store is seen in: a temporary of the
    # key file on disk (it is being replaced), the new identity written to the key file, the data keys split
    # between two identities (batches of 2,000 committed), every key re-wrapped but the old identity not retired.
    modes = ["time", "key file being written", "identity written", "keys split", "all re-wrapped"]
    # Meanwhile the running portal keeps taking submissions (new data keys, wrapped to whatever its key ring
    # holds): they too must open after the rotations.
    during, stop = [], threading.Event()

    def keep_submitting(t):
        i = 0
        while not stop.is_set():
            path = os.path.join(WORK, "small", f"during-{t}-{i}.bin")
            sha = make_file(path, 512)
            up = Upload(f"crash during rotation {t} {i}", [path]).run()
            os.unlink(path)
            if up.status == 303 and up.submission_id():
                during.append((up.submission_id(), sha))
            elif up.status is not None:
                ck.fail(f"an upload during the rotations answered HTTP {up.status}")
                return
            i += 1
            time.sleep(0.02)

    feeders = [threading.Thread(target=keep_submitting, args=(t,), daemon=True) for t in range(2)]
    for t in feeders:
        t.start()
    for k in range(ROTATE_KILLS):
        mode = modes[k % len(modes)]
        delay = full * (k // len(modes) + rng.random()) / max(1, ROTATE_KILLS // len(modes))
        before = set(masters_in_use())
        p = subprocess.Popen([BIN, "keys", "rotate"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=base_env(), cwd=WORK)
        t0 = time.monotonic()
        if mode == "time":
            time.sleep(delay)
        else:
            while p.poll() is None:
                if mode == "key file being written":
                    if any(".tmp" in n for n in os.listdir(KEYS)):
                        break
                    time.sleep(0.0002)
                    continue
                n_ids = identities_in_file()
                spread = masters_in_use() if n_ids > 1 else {}
                if mode == "identity written" and n_ids > len(before):
                    break
                if mode == "keys split" and len(spread) > 1:
                    break
                if mode == "all re-wrapped" and len(spread) == 1 and not set(spread) & before:
                    break
                time.sleep(0.001)
        at = time.monotonic() - t0
        finished = p.poll() is not None
        if not finished:
            p.send_signal(signal.SIGKILL)
            mid_way += 1
        p.communicate()
        spread = masters_in_use()
        if len(spread) > 1:
            split += 1
        log(f"rotation kill {k + 1} ({mode}) at {at * 1000:.0f} ms{' (it had ended)' if finished else ''}: "
            f"{identities_in_file()} identities in the key file, data keys per identity "
            f"{sorted(spread.values(), reverse=True)}")
        masters = cli("keys", "list", check=False)
        ck.expect(masters.returncode == 0, f"kill {k + 1}: `keys list` after the kill exited {masters.returncode}: "
                  f"{masters.stderr.strip()[-400:]}")
        # The interrupted state must read: the running portal reloads the key file as it changes.
        sample = rng.sample(small, min(5, len(small)))
        check_downloads(ck, submitter, sample, f"rotation kill {k + 1} ({mode}, {at * 1000:.0f} ms"
                        f"{', after it had ended' if finished else ''}), before the rerun")
        rerun = cli("keys", "rotate", check=False)
        ck.expect(rerun.returncode == 0, f"kill {k + 1}: the rerun of `keys rotate` exited {rerun.returncode}: "
                  f"{rerun.stderr.strip()[-400:]}")
    stop.set()
    for t in feeders:
        t.join(60)
    with one_connection():
        for sid, sha in during:
            record_files(sid, {1: sha})
    log(f"{len(during)} submissions made by the running portal during the rotations")
    att = live_attachments()
    log(f"{mid_way} of {ROTATE_KILLS} rotations killed before they ended ({split} with the data keys split between "
        f"two master identities), each rerun to completion")
    portal.restart(label="after-rotation")
    listing = cli("keys", "list").stdout
    log("keys list: " + " | ".join(ln.strip() for ln in listing.strip().splitlines()[:6]))
    good = check_downloads(ck, submitter, att, "after the rotations")
    masters = {r[0] for r in q("SELECT DISTINCT master_key_id FROM data_keys")}
    ck.expect(len(masters) == 1, f"after the rotations data keys are wrapped to {len(masters)} master identities")
    current = set(AGE_IDENTITY_RE.findall(open(os.path.join(KEYS, "age-identities.txt")).read()))
    for n in keys_dir_listing():
        if n in keys_before or not re.search(r"tmp|\.new$|\.partial$|~$", n):
            continue
        with open(os.path.join(KEYS, n), errors="replace") as f:
            secrets = set(AGE_IDENTITY_RE.findall(f.read()))
        ck.fail(f"after the rotations and reruns: keys/{n} is left behind, holding {len(secrets)} age identities in "
                f"clear, {len(secrets - current)} of them retired (no longer in age-identities.txt)")
    try:
        officer_sign_in_again()
    except Failure as e:
        ck.fail(f"after the rotations: {e}")
    check_store(ck, "after the rotations")
    audit_verify(ck, "after the rotations")
    ck.n = len(att)
    return {"rotations killed": mid_way, "mid re-wrap": split, "reruns": ROTATE_KILLS,
            "submissions made during them": len(during),
            "attachments byte-identical": f"{good}/{len(att)}"}


# ------------------------------------------------------------------------------------------------
# Scenario 4: mid-destruction
# ------------------------------------------------------------------------------------------------


def scenario_destruction(ck, rnd):
    subs = q("SELECT id, status FROM submissions WHERE status IN ('received', 'not_validated')")
    if len(subs) < 20:
        log(f"preparing {SUBMISSIONS} more received submissions")
        small_submissions(SUBMISSIONS, "destruction")
        subs = q("SELECT id, status FROM submissions WHERE status IN ('received', 'not_validated')")
    subs = [tuple(r) for r in subs]
    rng.shuffle(subs)
    # Up to DESTROY targets, "not validated" ones first (their destruction is the submitter's choice), and a
    # fifth as many left alone beside them.
    subs.sort(key=lambda r: r[1] != "not_validated")
    targets = subs[:DESTROY]
    keep = subs[DESTROY: DESTROY + max(3, DESTROY // 5)]
    subs = targets + keep
    names = {sid: {r[0] for r in q("SELECT storage_name FROM blobs WHERE submission_id = ?", sid)} for sid, _ in subs}
    jobs = []
    for sid, st in targets:
        if st == "received":
            jobs.append((f"/submissions/{sid}/withdraw", {"csrf": submitter.csrf, "disposition": "destroy", "confirm": "yes"}, sid))
        else:
            jobs.append((f"/submissions/{sid}/disposition", {"csrf": submitter.csrf, "disposition": "destroy", "confirm": "yes"}, sid))
    results = burst(submitter, jobs, int(len(jobs) * (0.3 + 0.4 * rng.random())), "destruction burst")
    # What the kill left for the start-up sweep: names queued (committed destructions whose files were not yet
    # deleted), and files of destroyed submissions still on disk.
    queued_at_kill = q1("SELECT count(*) FROM blob_deletions")
    files_at_kill, _ = blob_files()
    destroyed_at_kill = {r[0] for r in q("SELECT id FROM submissions WHERE status = 'destroyed'")}
    left_at_kill = sum(len(names[sid] & files_at_kill) for sid, _ in subs if sid in destroyed_at_kill)
    log(f"the kill left {queued_at_kill} name(s) on the deletion queue, {left_at_kill} file(s) of destroyed "
        f"submissions in data/blobs")
    portal.start(label="after-destruction-kill")
    files, _ = blob_files()
    _conn.c = db()
    n_acked = n_applied = 0
    intact_ids = []
    for sid, st0 in subs:
        res = results.get(sid, [])
        row = q("SELECT status FROM submissions WHERE id = ?", sid)[0]
        where = f"submission {sid} ({st0}; answers {res or 'not targeted'})"
        odd = [r for r in res if isinstance(r, int) and r != 303]
        ck.expect(not odd, f"{where}: answered {odd}")
        atts = [a for a, (s, _, _) in expected_files.items() if s == sid]
        if 303 in res:
            n_acked += 1
            ck.expect(row["status"] == "destroyed", f"{where}: destruction acknowledged, status {row['status']}")
        if row["status"] == "destroyed":
            n_applied += 1
            ck.expect(audit_count("submission.destroyed", sid) == 1,
                      f"{where}: {audit_count('submission.destroyed', sid)} submission.destroyed audit entries")
            if st0 == "received":
                ck.expect(audit_count("submission.withdrawn", sid) == 1, f"{where}: withdrawal not audited once")
            left = names[sid] & files
            ck.expect(not left, f"{where}: {len(left)} of its blob file(s) still in data/blobs after the start")
            for aid in atts:
                for who, prefix in ((submitter, "/submissions"), (officer, "/officer/submissions")):
                    s, _, _ = who.get(f"{prefix}/{sid}/files/{aid}")
                    ck.expect(s in (404, 410), f"{where}: {prefix}/…/files/{aid} answers {s} (404 or 410 expected)")
            ck.expect(q1("SELECT count(*) FROM data_keys WHERE submission_id = ?", sid) == 0,
                      f"{where}: its data key survived")
        else:
            ck.expect(row["status"] == st0, f"{where}: status {row['status']}, neither destroyed nor {st0}")
            ck.expect(audit_count("submission.destroyed", sid) == 0, f"{where}: a destruction audited, not applied")
            ck.expect(names[sid] <= files, f"{where}: intact, but blob file(s) missing")
            intact_ids += atts
        for aid in atts:
            if row["status"] == "destroyed":
                expected_files.pop(aid, None)
    _conn.c.close()
    _conn.c = None
    good = check_downloads(ck, submitter, intact_ids, "after the destruction kill (intact submissions)")
    others = [a for a in live_attachments() if a not in intact_ids]
    good_others = check_downloads(ck, submitter, others, "after the destruction kill (other submissions)")
    log(f"after restart: {n_acked} acknowledged destructions destroyed, {n_applied - n_acked} destroyed "
        f"unacknowledged, {len(subs) - n_applied} intact ({good + good_others} file(s) byte-identical)")
    check_store(ck, "after the destruction kill")
    audit_verify(ck, "after the destruction kill")
    ck.n += n_acked
    return {"kills": 1, "acknowledged destructions": n_acked, "applied unacknowledged": n_applied - n_acked,
            "intact": len(subs) - n_applied, "deletions left queued by the kill": queued_at_kill}


# ------------------------------------------------------------------------------------------------

SCENARIOS = [("upload", scenario_upload), ("decisions", scenario_decisions),
             ("rotation", scenario_rotation), ("destruction", scenario_destruction)]


def main():
    totp_self_test()
    print(f"crash suite: binary {BIN}, work dir {WORK}, port {PORT}, seed {SEED} (PCII_CRASH_SEED to repeat)",
          flush=True)
    setup_accounts()
    summary = []
    for name, fn in SCENARIOS:
        if ONLY and name not in ONLY:
            continue
        if name != "upload" and not expected_files:
            small_submissions(max(10, SUBMISSIONS // 5), "base")
        print(f"== {name}", flush=True)
        ck = Checks(name)
        t = time.monotonic()
        details = []
        for r in range(1 if name == "rotation" else ROUNDS):
            if name != "rotation" and ROUNDS > 1:
                log(f"round {r + 1} of {ROUNDS}")
            try:
                details.append(fn(ck, r))
            except Failure as e:
                ck.fail(f"aborted: {e}")
                details.append({"aborted": "yes"})
                break
        total = {}
        for d in details:
            for k, v in d.items():
                total[k] = total.get(k, 0) + v if isinstance(v, int) else v
        detail = ", ".join(f"{k} {v}" for k, v in total.items())
        if portal.proc is None:  # a scenario that failed between its kill and its restart
            try:
                portal.start(label=f"after-{name}")
            except Failure as e:
                ck.fail(str(e))
        summary.append((name, ck, detail, time.monotonic() - t))
        if "aborted" in details[-1]:
            break
    portal.kill9()
    print()
    failed = False
    for name, ck, detail, secs in summary:
        verdict = "FAIL" if ck.failures else "ok"
        failed |= bool(ck.failures)
        print(f"crash: {name:<12} {verdict:<4} {ck.n:>4} acknowledged actions checked ({detail}; {secs:.0f} s)")
        for f in ck.failures[:12]:
            print(f"         - {f}")
        if len(ck.failures) > 12:
            print(f"         - … and {len(ck.failures) - 12} more")
    print(f"crash suite: {'FAILED' if failed else 'passed'} in {time.monotonic() - T0:.0f} s (seed {SEED})")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"crash suite FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        portal.kill9()
