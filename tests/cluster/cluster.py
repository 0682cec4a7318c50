#!/usr/bin/env python3
"""The multi-instance suite's driver (Python 3 standard library only); started by tests/cluster/run.sh.

Three instances of the portal run on one PostgreSQL database, one keys directory and one blob store, behind nginx
(round robin). Each simulated person is one client address on loopback (127.0.1.x; sign-ins of the storm from
127.0.2.x), so that nginx's and the portal's per-address limits see people, not the driver. Phases:

  1. staff sign in through nginx (officers and the analyst enrol an authenticator app on pages served, in turn, by
     different instances)
  2. concurrent work through nginx: each submitter uploads submissions (one or two files) and withdraws some with
     destruction; two officers decide the others (validate or not validated) and grant access to validated ones;
     sign-ins of the submitters' accounts meanwhile. Every acknowledged action (303) is recorded.
  3. checks on the shared database (psql) and the pages: every acknowledged action present exactly once, nothing
     unacknowledged present; sessions made on one instance valid on the others (and ended everywhere by a sign-out
     on one); after a sweep, every blob file referenced by a row and every referenced one there, no temporary, an
     empty deletion queue
  4. `pcii-portal keys rotate` (the CLI on the shared keys directory and database, as an operator on the first
     instance's host would run it); then an upload straight to each instance: its data key is wrapped to the new
     master identity, and every file (new and earlier) downloads byte-identical from every instance
  5. the blob sweep's rounds in the three logs: it ran once per interval across the instances, the other
     instances' rounds skipped
  6. kill -9 of the instance holding the sweep's lease: another takes the lease over once it lapses, and nginx
     keeps answering (pages and uploads) with the two left; then `pcii-portal audit verify` exits 0 and the chain
     is gapless and linear in SQL.

Every check prints "ok   ..." or "FAIL ..."; the exit status is 1 if any failed.

Environment (set by run.sh): CLUSTER_WORK, CLUSTER_BIN, CLUSTER_DB_URL, CLUSTER_LB_PORT, CLUSTER_PORTS (three),
CLUSTER_PASSWORD, CLUSTER_ACCOUNTS (role TAB email per line), CLUSTER_BLOB_STORE (`fs` or `s3://...`),
CLUSTER_BLOB_DIR (the shared directory of the filesystem store); PCII_BLOB_SWEEP_INTERVAL_SECONDS; optional
CLUSTER_UPLOADS (per submitter, default 25), CLUSTER_LOGINS (default 60), CLUSTER_BLOB_LIST_CMD (an S3 store: a
shell command printing the store's object names, one per line, for the orphan check).
"""

import base64
import collections
import datetime
import hashlib
import hmac
import http.client
import json
import os
import queue
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

WORK = os.environ["CLUSTER_WORK"]
BIN = os.environ["CLUSTER_BIN"]
DB_URL = os.environ["CLUSTER_DB_URL"]
LB_PORT = int(os.environ["CLUSTER_LB_PORT"])
PORTS = [int(p) for p in os.environ["CLUSTER_PORTS"].split()]
PASSWORD = os.environ["CLUSTER_PASSWORD"]
ACCOUNTS = [ln.rstrip("\n").split("\t") for ln in open(os.environ["CLUSTER_ACCOUNTS"]) if ln.strip()]
BLOB_STORE = os.environ.get("CLUSTER_BLOB_STORE", "fs")
BLOB_DIR = os.environ.get("CLUSTER_BLOB_DIR", "")
SWEEP_SECONDS = int(os.environ["PCII_BLOB_SWEEP_INTERVAL_SECONDS"])
UPLOADS = int(os.environ.get("CLUSTER_UPLOADS", "25"))
LOGINS = int(os.environ.get("CLUSTER_LOGINS", "60"))

T0 = time.monotonic()
FAILED = []


def log(msg):
    print(f"  [{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILED.append(what)
    return ok


class Failure(Exception):
    pass


# ------------------------------------------------------------------------------------------------
# The shared database, read with psql; the CLI
# ------------------------------------------------------------------------------------------------


def sql(query):
    """Rows of a query as lists of strings (psql, unaligned, tab-separated)."""
    p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", DB_URL,
                        "-c", query], capture_output=True, text=True)
    if p.returncode != 0:
        raise Failure(f"psql: {p.stderr.strip()} (query: {query})")
    return [ln.split("\t") for ln in p.stdout.splitlines() if ln != ""]


def sql1(query):
    rows = sql(query)
    return rows[0][0] if rows else None


def lit(s):
    return "'" + str(s).replace("'", "''") + "'"


def in_list(values):
    return "(" + ",".join(lit(v) for v in values) + ")" if values else "(NULL)"


def cli(*args):
    """Runs the CLI on the shared keys directory and database (the environment run.sh exported)."""
    return subprocess.run([BIN, *args], capture_output=True, text=True, cwd=WORK)


# ------------------------------------------------------------------------------------------------
# HTTP: one client per person (its cookies, its address); a new connection per request; no redirects followed
# ------------------------------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')
SPREAD = collections.Counter()      # which instance nginx sent each request to (X-Cluster-Upstream)
STATUSES = collections.Counter()    # (method, route kind, status) of everything sent
stats_lock = threading.Lock()


def route_kind(path):
    return re.sub(r"/[0-9a-f]{32}(?=/|$)", "/ID", path.split("?")[0])


class Person:
    def __init__(self, name, email, src):
        self.name, self.email, self.src = name, email, src
        self.cookies = {}
        self.csrf = None
        self.lock = threading.Lock()
        self.app = None

    def request(self, method, path, body=None, headers=None, port=LB_PORT, timeout=120):
        h = {"Connection": "close", "User-Agent": "pcii-cluster-suite/1"}
        with self.lock:
            if self.cookies:
                h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(self.src, 0))
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        for value in r.headers.get_all("Set-Cookie") or []:
            first, *attrs = [p.strip() for p in value.split(";")]
            k, _, v = first.partition("=")
            gone = v == "" or any(a.lower() == "max-age=0" for a in attrs)
            with self.lock:
                if gone:
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = v
        with stats_lock:
            STATUSES[(method, route_kind(path), r.status)] += 1
            if port == LB_PORT:
                SPREAD[r.headers.get("X-Cluster-Upstream", "?")] += 1
        return r.status, r.headers, data

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post_form(self, path, fields, **kw):
        body = urllib.parse.urlencode(fields).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"}, **kw)

    def page_csrf(self, path, **kw):
        st, _, body = self.get(path, **kw)
        text = body.decode("utf-8", "replace")
        m = CSRF_RE.search(text)
        if st != 200 or not m:
            raise Failure(f"{self.name}: no form token on {path} (HTTP {st})")
        return m.group(1), text

    def sign_in(self, **kw):
        token, _ = self.page_csrf("/login", **kw)
        st, h, _ = self.post_form("/login", {"email": self.email, "password": PASSWORD, "csrf": token}, **kw)
        if st != 303:
            raise Failure(f"{self.name}: sign-in answered HTTP {st}")
        record_login(self.email)
        return h.get("Location", "")


# TOTP as RFC 6238 (HMAC-SHA-1, 6 digits, 30 s): an authenticator app; the portal takes each step once.
def totp(seed, step):
    mac = hmac.new(seed, struct.pack(">Q", step), hashlib.sha1).digest()
    o = mac[-1] & 0x0F
    return "%06d" % ((struct.unpack(">I", mac[o: o + 4])[0] & 0x7FFFFFFF) % 1_000_000)


def enrol_authenticator(p):
    """A staff member's first sign-in: the app's secret read from the page, confirmed with a code from it."""
    where = p.sign_in()
    if not where.endswith("/account/security"):
        raise Failure(f"{p.name}'s first sign-in led to {where}, not /account/security")
    st, _, body = p.get("/account/security/totp")
    text = body.decode("utf-8", "replace")
    m = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', text)
    tok = CSRF_RE.search(text)
    if st != 200 or not m or not tok:
        raise Failure(f"{p.name}: no TOTP secret on /account/security/totp (HTTP {st})")
    secret = m.group(1).replace(" ", "")
    p.app = base64.b32decode(secret + "=" * (-len(secret) % 8))
    st, _, _ = p.post_form("/account/security/totp",
                           {"code": totp(p.app, int(time.time()) // 30), "csrf": tok.group(1)})
    if st != 303:
        raise Failure(f"{p.name}: confirming the authenticator app answered HTTP {st}")


# Acknowledged sign-ins per account email (each must be one `auth.login` success in the audit log).
LOGINS_ACKED = collections.Counter()


def record_login(email):
    with stats_lock:
        LOGINS_ACKED[email] += 1


# ------------------------------------------------------------------------------------------------
# Uploads
# ------------------------------------------------------------------------------------------------

SUBMIT_FIELDS = [
    ("action", "submit"),
    ("sector", "Energy"),
    ("narrative", "Multi-instance suite: a report about a substation."),
    ("primary_name", "Cluster Submitter"),
    ("primary_phone", "555-0100"),
    ("federal_requirement", "no"),
    ("express_statement", "yes"),
    ("cert_not_public", "yes"),
    ("cert_not_regulatory", "yes"),
    ("cert_authorized", "yes"),
]


class Upload:
    """One acknowledged submission: its id, title, the files' sha256 by position, and what happens to it next."""

    def __init__(self, sid, title, files, plan, owner):
        self.sid, self.title, self.plan, self.owner = sid, title, plan, owner
        self.shas = {i: sha(f) for i, f in enumerate(files, 1)}
        self.size = sum(len(f) for f in files)


def upload(p, title, files, port=LB_PORT):
    """POST /submissions with `files` (bytes); returns the submission id of the receipt it redirects to."""
    boundary = "cluster" + os.urandom(12).hex()
    b = boundary.encode()

    def field(name, value):
        return (b"--" + b + b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
                + value.encode() + b"\r\n")

    parts = [field("csrf", p.csrf), field("form_token", os.urandom(16).hex()), field("title", title),
             field("primary_email", p.email)]
    parts += [field(k, v) for k, v in SUBMIT_FIELDS]
    for i, data in enumerate(files, 1):
        parts.append(field(f"description_{i}", f"file {i} of {title}"))
        parts.append(b"--" + b + (f'\r\nContent-Disposition: form-data; name="file_{i}"; filename="part-{i}.bin"\r\n'
                                  "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n")
    parts.append(b"--" + b + b"--\r\n")
    st, h, body = p.request("POST", "/submissions", b"".join(parts),
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"}, port=port)
    m = re.match(r"^/submissions/([0-9a-f]+)/receipt$", h.get("Location", ""))
    if st != 303 or not m:
        raise Failure(f"{p.name}: upload {title!r} answered HTTP {st} -> {h.get('Location')!r}: "
                      f"{body[:200]!r}")
    return m.group(1)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def download_sha(p, path, port=LB_PORT):
    st, _, body = p.get(path, port=port)
    return st, sha(body), len(body)


# ------------------------------------------------------------------------------------------------
# Phase 2: concurrent work through nginx
# ------------------------------------------------------------------------------------------------

# What happens to the k-th upload (of all): validated and granted, validated, not validated, withdrawn with
# destruction by its submitter, or left received.
PLANS = ["grant", "grant", "grant", "validate", "not_validated", "not_validated", "destroy", "destroy", "destroy",
         "keep"]


def concurrent_work(submitters, officers, analyst_id):
    acked = {"upload": [], "validate": [], "not_validated": [], "grant": [], "destroy": [], "login": 0}
    errors = []
    lock = threading.Lock()
    work = queue.Queue()
    counter = iter(range(10**9))
    done_uploading = threading.Event()

    def guard(fn, *args):
        try:
            fn(*args)
        except Exception as e:  # any answer but the expected one: recorded, the others go on
            with lock:
                errors.append(f"{type(e).__name__}: {e}")

    def submitter_work(p):
        for n in range(UPLOADS):
            with lock:
                k = next(counter)
            plan = PLANS[k % len(PLANS)]
            # One or two files of 4 KiB to 196 KiB; every seventh upload has one of 4 MiB more (it is still streaming
            # while the next sweep rounds run).
            files = [os.urandom(4096 + (k * 7919 + i * 104729) % (192 * 1024)) for i in range(1 + k % 2)]
            if k % 7 == 3:
                files.append(os.urandom(4 << 20))
            title = f"Cluster report {p.name} #{n}"
            sid = upload(p, title, files)
            u = Upload(sid, title, files, plan, p)
            with lock:
                acked["upload"].append(u)
            if plan == "destroy":
                st, _, _ = p.post_form(f"/submissions/{sid}/withdraw", {"csrf": p.csrf, "disposition": "destroy", "confirm": "yes"})
                if st != 303:
                    raise Failure(f"{p.name}: withdrawal with destruction of {sid} answered HTTP {st}")
                with lock:
                    acked["destroy"].append(u)
            elif plan != "keep":
                work.put(u)

    def officer_work(p):
        while True:
            try:
                u = work.get(timeout=0.2)
            except queue.Empty:
                if done_uploading.is_set() and work.empty():
                    return
                continue
            decision = "not_validated" if u.plan == "not_validated" else "validate"
            # confirm=1: the button of the page that asks to confirm a final decision.
            fields = {"csrf": p.csrf, "decision": decision, "confirm": "1",
                      "reason": f"Multi-instance suite: {u.title} is not PCII" if decision != "validate"
                      else f"Multi-instance suite: {u.title} checked"}
            st, _, _ = p.post_form(f"/officer/submissions/{u.sid}/decision", fields)
            if st != 303:
                raise Failure(f"{p.name}: decision {decision} on {u.sid} answered HTTP {st}")
            with lock:
                acked[decision].append(u)
            if u.plan == "grant":
                expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)).date()
                st, _, _ = p.post_form(f"/officer/submissions/{u.sid}/grants", {
                    "csrf": p.csrf, "user_id": analyst_id, "expires": expires.isoformat(),
                    "reason": f"Need to know: analysis of {u.title}"})
                if st != 303:
                    raise Failure(f"{p.name}: grant on {u.sid} answered HTTP {st}")
                with lock:
                    acked["grant"].append(u)

    def sign_ins(first, step):
        # Fresh sessions of the submitters' accounts, each from an address of its own (nginx allows 30 sign-in
        # POSTs a minute per address, burst 10).
        for i in range(first, LOGINS, step):
            _, email = submitter_accounts[i % len(submitter_accounts)]
            p = Person(f"sign-in {i}", email, f"127.0.2.{1 + i % 250}")
            where = p.sign_in()
            if not where.endswith("/dashboard"):
                raise Failure(f"sign-in {i} of {email} led to {where}")
            st, _, _ = p.get("/submissions")
            if st != 200:
                raise Failure(f"sign-in {i} of {email}: its session's first page answered HTTP {st}")
            with lock:
                acked["login"] += 1

    t = time.monotonic()
    uploaders = [threading.Thread(target=guard, args=(submitter_work, p)) for p in submitters]
    deciders = [threading.Thread(target=guard, args=(officer_work, p)) for p in officers]
    logins = [threading.Thread(target=guard, args=(sign_ins, i, 2)) for i in range(2)]
    for th in uploaders + deciders + logins:
        th.start()
    for th in uploaders:
        th.join()
    done_uploading.set()
    for th in deciders + logins:
        th.join()
    return acked, errors, time.monotonic() - t


# ------------------------------------------------------------------------------------------------
# Phase 3: checks
# ------------------------------------------------------------------------------------------------


def counts_by(query):
    return {r[0]: int(r[1]) for r in sql(query)}


def check_exactly_once(acked, analyst_id, analyst):
    ups = {u.sid: u for u in acked["upload"]}
    rows = {r[0]: r[1] for r in sql("SELECT id, status FROM submissions WHERE status <> 'draft'")}
    check(set(rows) == set(ups), f"uploads: {len(ups)} acknowledged, {len(rows)} submissions in the database, "
          f"the same ids ({len(set(rows) - set(ups))} unacknowledged, {len(set(ups) - set(rows))} missing)")
    received = counts_by("SELECT object_id, count(*) FROM audit_entries WHERE action = 'submission.received' "
                         "AND outcome = 'success' GROUP BY object_id")
    bad = [s for s in ups if received.get(s) != 1]
    check(not bad and len(received) == len(ups),
          f"uploads: each acknowledged one audited once as submission.received ({len(received)} entries; "
          f"wrong for {bad[:3]})")
    files = counts_by("SELECT submission_id, count(*) FROM attachments GROUP BY submission_id")
    bad = [s for s, u in ups.items() if files.get(s, 0) != len(u.shas)]
    check(not bad, f"uploads: {sum(len(u.shas) for u in ups.values())} files acknowledged, each an attachment row "
          f"({sum(files.values())} rows; wrong for {bad[:3]})")

    for decision, status, action in (("validate", None, "decision.validated"),
                                     ("not_validated", "not_validated", "decision.not_validated")):
        ids = [u.sid for u in acked[decision]]
        audited = counts_by(f"SELECT object_id, count(*) FROM audit_entries WHERE action = {lit(action)} "
                            "GROUP BY object_id")
        events = counts_by("SELECT submission_id, count(*) FROM submission_events WHERE to_status = "
                           f"{lit('validated' if decision == 'validate' else status)} GROUP BY submission_id")
        bad = [s for s in ids if audited.get(s) != 1 or events.get(s) != 1]
        if decision == "validate":
            # A validated submission may have been granted since; it stays validated.
            bad += [s for s in ids if rows.get(s) != "validated"]
        else:
            bad += [s for s in ids if rows.get(s) != status]
        check(not bad and set(audited) == set(ids) and set(events) == set(ids),
              f"decisions: {len(ids)} acknowledged '{decision}', {len(audited)} audited ({action}), "
              f"{len(events)} history events, each once, status as decided (wrong for {bad[:3]})")

    ids = [u.sid for u in acked["grant"]]
    grants = counts_by(f"SELECT submission_id, count(*) FROM grants WHERE user_id = {lit(analyst_id)} "
                       "GROUP BY submission_id")
    audited = counts_by("SELECT object_id, count(*) FROM audit_entries WHERE action = 'grant.created' "
                        "GROUP BY object_id")
    st, _, body = analyst.get("/analyst")
    shown = collections.Counter(re.findall(r'href="/analyst/submissions/([0-9a-f]+)"', body.decode()))
    bad = [s for s in ids if grants.get(s) != 1 or audited.get(s) != 1 or shown.get(s) != 1]
    check(st == 200 and ids and not bad and set(grants) == set(ids) and set(audited) == set(ids) and set(shown) == set(ids),
          f"grants: {len(ids)} acknowledged, {sum(grants.values())} grant rows, {sum(audited.values())} audited, "
          f"{sum(shown.values())} listed on the analyst's page (HTTP {st}), each once (wrong for {bad[:3]})")

    ids = [u.sid for u in acked["destroy"]]
    destroyed = counts_by("SELECT object_id, count(*) FROM audit_entries WHERE action = 'submission.destroyed' "
                          "GROUP BY object_id")
    withdrawn = counts_by("SELECT object_id, count(*) FROM audit_entries WHERE action = 'submission.withdrawn' "
                          "GROUP BY object_id")
    records = counts_by("SELECT submission_id, count(*) FROM destruction_records GROUP BY submission_id")
    left = counts_by(f"SELECT submission_id, count(*) FROM blobs WHERE submission_id IN {in_list(ids)} "
                     "GROUP BY submission_id")
    keys_left = counts_by(f"SELECT submission_id, count(*) FROM data_keys WHERE submission_id IN {in_list(ids)} "
                          "GROUP BY submission_id")
    bad = [s for s in ids if rows.get(s) != "destroyed" or destroyed.get(s) != 1 or withdrawn.get(s) != 1
           or records.get(s) != 1]
    check(ids and not bad and set(destroyed) == set(ids) and set(records) == set(ids) and not left and not keys_left,
          f"destructions: {len(ids)} acknowledged, {len(destroyed)} audited, {len(records)} destruction records, "
          f"each once; {sum(left.values())} blob rows and {sum(keys_left.values())} data keys left (wrong for "
          f"{bad[:3]})")
    answers = collections.Counter()
    for u in acked["destroy"][:6]:
        for aid in [r[0] for r in sql(f"SELECT id FROM attachments WHERE submission_id = {lit(u.sid)}")]:
            answers[u.owner.get(f"/submissions/{u.sid}/files/{aid}")[0]] += 1
    check(answers and set(answers) <= {404, 410}, f"destructions: the files of destroyed submissions answer "
          f"{dict(answers)} (404 or 410 expected; none asked is a failure too)")

    ids_by_email = {r[1]: r[0] for r in sql("SELECT id, email FROM users")}
    audited = counts_by("SELECT object_id, count(*) FROM audit_entries WHERE action = 'auth.login' "
                        "AND outcome = 'success' GROUP BY object_id")
    bad = [e for e in LOGINS_ACKED if audited.get(ids_by_email.get(e)) != LOGINS_ACKED[e]]
    unacked = sum(audited.values()) - sum(LOGINS_ACKED.values())
    check(not bad and unacked == 0,
          f"sign-ins: {sum(LOGINS_ACKED.values())} acknowledged over {len(LOGINS_ACKED)} accounts, "
          f"{sum(audited.values())} audited as auth.login success, per account the same (wrong for {bad[:3]})")


def blob_names():
    """(committed names, temporaries) of the shared store."""
    if BLOB_STORE == "fs":
        names = os.listdir(BLOB_DIR)
        return ({n for n in names if not n.startswith(".")}, sorted(n for n in names if n.startswith(".tmp-")))
    cmd = os.environ.get("CLUSTER_BLOB_LIST_CMD")
    if not cmd:
        raise Failure(f"the blob store is {BLOB_STORE}: set CLUSTER_BLOB_LIST_CMD to a command that prints its "
                      "object names, one per line")
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=True).stdout
    names = [ln.strip().rsplit("/", 1)[-1] for ln in out.splitlines() if ln.strip()]
    return ({n for n in names if re.fullmatch(r"[0-9a-f]{64}", n)}, sorted(n for n in names if ".tmp" in n))


def check_blobs(when):
    files, tmps = blob_names()
    rows = {r[0] for r in sql("SELECT storage_name FROM blobs")}
    queued = sql1("SELECT count(*) FROM blob_deletions")
    orphans, missing = files - rows, rows - files
    check(not orphans and not missing and not tmps and queued == "0",
          f"blobs {when}: {len(files)} in the store, {len(rows)} referenced by rows; {len(orphans)} orphans, "
          f"{len(missing)} missing, {len(tmps)} temporaries, {queued} queued for deletion")


# ------------------------------------------------------------------------------------------------
# The blob sweep's rounds, from the instances' logs (JSON lines)
# ------------------------------------------------------------------------------------------------


def sweep_rounds():
    """[(unix time the round started, instance number, 'ran' or 'skipped', when it ended)] from the three logs."""
    out = []
    for n in range(1, len(PORTS) + 1):
        with open(os.path.join(WORK, f"instance-{n}.log"), errors="replace") as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                msg = entry.get("message", "")
                kind = "ran" if msg.startswith("blob sweep ran") else "skipped" if msg.startswith(
                    "blob sweep skipped") else None
                if kind:
                    at = datetime.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
                    # A round that ran logs when it ends; its start (when the lease was taken) is what the
                    # interval spaces: a slow round under load must not read as two rounds too close.
                    took = float(entry.get("took_ms", 0)) / 1000.0
                    out.append((at - took, n, kind, at))
    return sorted(out)


def wait_for_a_sweep_after(t, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        if any(at > t and kind == "ran" for at, _, kind, _ in sweep_rounds()):
            return True
        time.sleep(0.5)
    return False


def check_sweeps(since, until):
    rounds = [r for r in sweep_rounds() if since <= r[0] <= until]
    ran = [r for r in rounds if r[2] == "ran"]
    skipped = [r for r in rounds if r[2] == "skipped"]
    window = until - since
    expected = window / SWEEP_SECONDS
    per = {n: (sum(1 for r in ran if r[1] == n), sum(1 for r in skipped if r[1] == n))
           for n in range(1, len(PORTS) + 1)}
    holders = [r[1] for r in ran]
    handovers = sum(1 for a, b in zip(holders, holders[1:]) if a != b)
    gaps = [b[0] - a[0] for a, b in zip(ran, ran[1:])]
    log("sweep rounds per instance (ran, skipped): " +
        ", ".join(f"instance {n}: {r}, {s}" for n, (r, s) in per.items()) +
        f"; {handovers} lease handover(s); gaps between sweeps "
        f"{min(gaps, default=0):.1f}–{max(gaps, default=0):.1f} s")
    check(len(ran) <= expected + 2 and len(ran) >= expected / 2,
          f"blob sweep: ran {len(ran)} times in {window:.0f} s across the three instances, every "
          f"{SWEEP_SECONDS} s expected ≈ {expected:.0f} (three instances sweeping each would be ≈ {3 * expected:.0f})")
    check(all(r + s > 0 for r, s in per.values()) and len(rounds) >= 2 * expected,
          f"blob sweep: every instance had its rounds ({len(rounds)} rounds in all, {len(skipped)} skipped: another "
          f"instance held the lease)")
    # One instance's rounds follow each other (a late start, waiting for a pooled connection under load, may bring
    # two closer than the interval, but never overlapping); another instance's round comes only after the lease
    # lapsed, so never within the interval.
    overlaps = [(a, b) for a, b in zip(ran, ran[1:]) if a[1] == b[1] and b[0] < a[3] - 0.05]
    handover_gaps = [b[0] - a[0] for a, b in zip(ran, ran[1:]) if a[1] != b[1]]
    check(not overlaps and min(handover_gaps, default=SWEEP_SECONDS) >= SWEEP_SECONDS - 1.0,
          f"blob sweep: no two rounds at once ({len(overlaps)} overlapping) and no other instance's round within "
          f"the interval of the last (shortest handover gap {min(handover_gaps, default=float('nan')):.1f} s)")


def check_failover(submitter):
    """kill -9 of the instance that holds the sweep's lease: once its lease lapses, another instance's round takes
    it over; nginx sends everything to the two left, POSTs included (a refused connection is not a sent request).
    Returns the killed instance's number and when it was killed."""
    ran = [r for r in sweep_rounds() if r[2] == "ran"]
    if not ran:
        raise Failure("no sweep has run: no lease holder to kill")
    holder = ran[-1][1]
    with open(os.path.join(WORK, f"instance-{holder}.pid")) as f:
        pid = int(f.read())
    killed_at = time.time()
    os.kill(pid, 9)
    with open(os.path.join(WORK, "killed"), "w") as f:
        f.write(str(holder))
    lease = SWEEP_SECONDS + max(SWEEP_SECONDS // 2, 5)  # workflow::blobs::lease_seconds
    deadline = killed_at + lease + 2 * SWEEP_SECONDS + 10
    taken = None
    while time.time() < deadline and taken is None:
        taken = next((r for r in sweep_rounds() if r[0] > killed_at and r[2] == "ran"), None)
        time.sleep(0.25)
    last = max(r[3] for r in ran if r[1] == holder)
    check(taken is not None and taken[1] != holder and taken[0] - last >= SWEEP_SECONDS - 1.0,
          f"failover: instance {holder} (the sweep's lease holder) killed; instance "
          f"{taken[1] if taken else None} swept {taken[0] - killed_at if taken else float('nan'):.1f} s later, "
          f"{taken[0] - last if taken else float('nan'):.1f} s after the killed one's last sweep ended (its lease: "
          f"{lease} s from that round's start, in whole seconds of the database's clock; then another's next "
          f"round: at most {SWEEP_SECONDS} s)")
    # Through nginx with one instance gone: pages and uploads still answered.
    answers = collections.Counter()
    for i in range(9):
        answers[submitter.get("/submissions")[0]] += 1
        if i % 3 == 0:
            upload(submitter, f"Cluster report after the failover #{i}", [os.urandom(10_000)])
            answers[303] += 1
    check(set(answers) <= {200, 303}, f"failover: through nginx with instance {holder} down, pages and uploads "
          f"answered {dict(answers)}")
    return holder, killed_at


# ------------------------------------------------------------------------------------------------
# Phase 4: key rotation seen by every instance
# ------------------------------------------------------------------------------------------------


def keys_list():
    """{key id: (state, data keys)} and the total line, from `pcii-portal keys list`."""
    p = cli("keys", "list")
    if p.returncode != 0:
        raise Failure(f"`keys list` exited {p.returncode}: {p.stderr.strip()}")
    keys = {}
    for ln in p.stdout.splitlines():
        t = ln.split()
        if t and t[0] in ("current", "old"):
            keys[t[-1]] = (t[0], int(t[-3]))
    total = re.search(r"(\d+) data key\(s\) in all", p.stdout)
    return keys, int(total.group(1)) if total else -1, p.stdout


def check_rotation(submitters, officer, earlier):
    before, total_before, _ = keys_list()
    old = [k for k, (state, _) in before.items() if state == "current"]
    t = time.monotonic()
    p = cli("keys", "rotate")
    took = time.monotonic() - t
    check(p.returncode == 0, f"keys rotate exited {p.returncode} in {took:.1f} s "
          f"({(p.stdout.strip().splitlines() or ['-'])[-1]})")
    after, total, listing = keys_list()
    new = [k for k, (state, _) in after.items() if state == "current"]
    check(len(new) == 1 and new != old and all(k not in after or after[k][1] == 0 for k in old),
          f"keys rotate: a new current master identity ({new[0][:20] if new else None}…), the old one retired "
          f"({'gone' if old and old[0] not in after else 'kept'}), {total} data keys, all on the new one "
          f"({after.get(new[0], ('', -1))[1] if new else -1})")
    if not new:
        return
    new = new[0]
    # An upload straight to each instance: each must have reloaded the changed identity file.
    fresh = []
    for n, port in enumerate(PORTS, 1):
        p = submitters[n % len(submitters)]
        data = os.urandom(50_000 + n)
        title = f"Cluster report after the rotation, through instance {n}"
        sid = upload(p, title, [data], port=port)
        master = [r[0] for r in sql(f"SELECT master_key_id FROM data_keys WHERE submission_id = {lit(sid)}")]
        check(master == [new], f"an upload through instance {n} after the rotation: its data key is wrapped to "
              f"{'the new master identity' if master == [new] else master}")
        fresh.append(Upload(sid, title, [data], "keep", p))
    # Every file, new and earlier (a sample), downloads byte-identical from every instance.
    sample = fresh + [u for u in earlier if u.plan != "destroy"][:9]
    good = bad = 0
    for u in sample:
        atts = {int(r[1]): r[0] for r in sql(f"SELECT id, position FROM attachments WHERE submission_id = "
                                             f"{lit(u.sid)}")}
        for n, port in enumerate(PORTS, 1):
            for pos, digest in u.shas.items():
                st, got, size = download_sha(u.owner, f"/submissions/{u.sid}/files/{atts.get(pos)}", port=port)
                st2, got2, _ = download_sha(officer, f"/officer/submissions/{u.sid}/files/{atts.get(pos)}",
                                            port=port)
                if (st, got, st2, got2) == (200, digest, 200, digest):
                    good += 1
                else:
                    bad += 1
                    check(False, f"after the rotation: file {pos} of {u.sid} through instance {n}: submitter HTTP "
                          f"{st}, officer HTTP {st2}, sha256 {got[:12]}…/{got2[:12]}… (expected {digest[:12]}…)")
    check(bad == 0, f"after the rotation: {good} downloads (submitter and officer, {len(sample)} submissions, "
          f"through each of the {len(PORTS)} instances) byte-identical")
    after, total, listing = keys_list()
    in_db = int(sql1("SELECT count(*) FROM data_keys"))
    check(after.get(new, ("", -1))[1] == in_db == total,
          f"keys list after the new uploads: {after.get(new, ('', -1))[1]} data keys on the new master identity, "
          f"{in_db} in the database")
    log("keys list: " + " | ".join(ln.strip() for ln in listing.strip().splitlines()))
    return fresh


# ------------------------------------------------------------------------------------------------
# Sessions across instances
# ------------------------------------------------------------------------------------------------


def check_sessions(email, officer):
    p = Person("session check", email, "127.0.1.200")
    where = p.sign_in(port=PORTS[0])
    check(where.endswith("/dashboard"), f"sessions: signed in straight on instance 1 (-> {where})")
    for n, port in enumerate(PORTS, 1):
        st, _, body = p.get("/submissions", port=port)
        check(st == 200 and b"My submissions" in body,
              f"sessions: the session made on instance 1 opens the submitter's list on instance {n} (HTTP {st})")
        st, _, _ = officer.get("/officer", port=port)
        check(st == 200, f"sessions: the officer's session (made through nginx) opens the queue on instance {n} "
              f"(HTTP {st})")
    # The form token of a page served by instance 2 is good on instance 3; a sign-out there ends it everywhere.
    token, _ = p.page_csrf("/account", port=PORTS[1])
    st, h, _ = p.post_form("/logout", {"csrf": token}, port=PORTS[2])
    check(st == 303, f"sessions: signed out on instance 3 with instance 2's form token (HTTP {st})")
    for n, port in enumerate(PORTS, 1):
        st, h, _ = p.get("/submissions", port=port)
        check(st in (303, 401) and "/login" in h.get("Location", "/login"),
              f"sessions: after the sign-out, instance {n} answers HTTP {st} -> {h.get('Location')}")


# ------------------------------------------------------------------------------------------------
# The audit chain
# ------------------------------------------------------------------------------------------------


def check_audit():
    p = cli("audit", "verify")
    check(p.returncode == 0, f"`pcii-portal audit verify` on the shared database exited {p.returncode}: "
          f"{(p.stdout or p.stderr).strip().splitlines()[-1:] if (p.stdout or p.stderr).strip() else ''}")
    n, first, last, prevs, hashes = sql("SELECT count(*), min(seq), max(seq), count(DISTINCT prev_hash), "
                                        "count(DISTINCT entry_hash) FROM audit_entries")[0]
    broken = sql1("SELECT count(*) FROM audit_entries a JOIN audit_entries b ON b.seq = a.seq + 1 "
                  "WHERE b.prev_hash <> a.entry_hash")
    head = sql("SELECT seq, entry_hash FROM audit_head")
    last_hash = sql1(f"SELECT entry_hash FROM audit_entries WHERE seq = {int(last)}")
    check(first == "1" and int(last) == int(n) == int(prevs) == int(hashes) and broken == "0"
          and head == [[last, last_hash]],
          f"audit chain: {n} entries, seq {first}..{last} without a gap, each linking to the one before it "
          f"({broken} broken links, {int(n) - int(prevs)} shared predecessors), the head at the last")
    actions = sql("SELECT action, count(*) FROM audit_entries GROUP BY action ORDER BY count(*) DESC")
    log("audit entries by action: " + ", ".join(f"{a} {c}" for a, c in actions))


# ------------------------------------------------------------------------------------------------


def main():
    t_start = time.time()
    staff = {}
    submitters = []
    submitter_accounts[:] = [a for a in ACCOUNTS if a[0] == "submitter"]
    for i, (role, email) in enumerate(ACCOUNTS):
        p = Person(email.split("@")[0], email, f"127.0.1.{10 + i}")
        if role == "submitter":
            submitters.append(p)
        else:
            staff.setdefault(role, []).append(p)
    officers, analyst = staff["officer"], staff["analyst"][0]
    analyst_id = sql1(f"SELECT id FROM users WHERE email = {lit(analyst.email)}")

    print(f"cluster suite: {len(PORTS)} instances on 127.0.0.1:{', '.join(map(str, PORTS))} behind nginx on "
          f"127.0.0.1:{LB_PORT}; blob store {BLOB_STORE}; sweep every {SWEEP_SECONDS} s", flush=True)
    print("== staff sign in and enrol an authenticator app; submitters sign in", flush=True)
    for p in officers + [analyst]:
        enrol_authenticator(p)
        p.csrf, _ = p.page_csrf("/officer" if p in officers else "/account")
    for p in submitters:
        where = p.sign_in()
        if not where.endswith("/dashboard"):
            raise Failure(f"{p.name}'s sign-in led to {where}")
        p.csrf, _ = p.page_csrf("/submissions/new")
    log(f"{len(officers)} officers, 1 analyst, {len(submitters)} submitters signed in")

    print(f"== concurrent work through nginx: {len(submitters)} submitters x {UPLOADS} uploads, {len(officers)} "
          f"officers deciding and granting, {LOGINS} sign-ins", flush=True)
    acked, errors, secs = concurrent_work(submitters, officers, analyst_id)
    n_actions = sum(len(v) if isinstance(v, list) else v for v in acked.values())
    check(not errors, f"concurrent work: no unexpected answer ({len(errors)}: {errors[:3]})")
    log(f"{n_actions} acknowledged actions in {secs:.1f} s ({n_actions / secs:.1f} actions/s): "
        + ", ".join(f"{k} {len(v) if isinstance(v, list) else v}" for k, v in acked.items())
        + f"; {sum(len(u.shas) for u in acked['upload'])} files, "
        f"{sum(u.size for u in acked['upload']) / 2**20:.1f} MiB uploaded")
    spread = ", ".join(f"{addr} {n}" for addr, n in sorted(SPREAD.items()))
    log(f"requests through nginx per instance: {spread}")
    check(len([a for a in SPREAD if a != "?"]) >= len(PORTS),
          f"nginx spread the requests over all {len(PORTS)} instances")
    work_end = time.time()

    print("== checks: every acknowledged action once", flush=True)
    check_exactly_once(acked, analyst_id, analyst)

    print("== sessions across instances", flush=True)
    check_sessions(submitters[0].email, officers[0])

    print("== blobs after a sweep", flush=True)
    swept = wait_for_a_sweep_after(work_end, 3 * SWEEP_SECONDS + 15)
    check(swept, "a sweep ran after the work ended")
    check_blobs("after the concurrent work and a sweep")

    print("== key rotation through one instance, seen by the others", flush=True)
    check_rotation(submitters, officers[0], acked["upload"])
    rotated = time.time()
    swept = wait_for_a_sweep_after(rotated, 3 * SWEEP_SECONDS + 15)
    check(swept, "a sweep ran after the rotation")
    check_blobs("at the end, after a sweep")

    print("== the blob sweep across the instances", flush=True)
    check_sweeps(t_start, time.time())

    print("== the lease holder killed", flush=True)
    killed, _ = check_failover(submitters[1])
    swept = wait_for_a_sweep_after(time.time(), 3 * SWEEP_SECONDS + 15)
    check(swept, "a sweep ran after the failover")
    check_blobs("after the failover, after a sweep")
    n_sweep_audited = sql1("SELECT count(*) FROM audit_entries WHERE action = 'blob.sweep'")
    log(f"{n_sweep_audited} blob.sweep audit entries (a sweep is audited when it removed or failed something)")

    print("== the audit chain", flush=True)
    check_audit()

    odd = {k: v for k, v in STATUSES.items() if k[2] >= 500}
    check(not odd, f"no 5xx answer in {sum(STATUSES.values())} requests ({odd})")
    print(f"cluster suite: {'FAILED' if FAILED else 'passed'} ({len(FAILED)} failed checks) in "
          f"{time.monotonic() - T0:.0f} s; concurrent phase {n_actions} actions in {secs:.1f} s = "
          f"{n_actions / secs:.1f} actions/s", flush=True)
    return 1 if FAILED else 0


submitter_accounts = []

if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"cluster suite FAILED: {e}", file=sys.stderr)
        sys.exit(1)
