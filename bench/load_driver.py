#!/usr/bin/env python3
"""Load driver for bench/load.sh (Python 3 standard library only).

  load_driver.py setup  BASE ACCOUNTS OUT      sign every account in (one session each) and give each organisation a
                                               small draft; writes the sessions (cookies, a submission id) to OUT
  load_driver.py run    BASE PID SESSIONS ...  one measured server: idle RSS, warm-up, (a) browsing alone, (b) the same
                                               browsing with a login storm and concurrent uploads; prints the figures
                                               and appends a JSON summary line to --summary
  load_driver.py summary FILE                  the table of every run's summary line

Real concurrency: one thread (and one keep-alive connection) per browsing session, one thread per login of the
storm (all released at once by one event), one curl process per upload. Latency is time.perf_counter() around the
whole request: sending it, the status line, the headers and the whole body read.
"""

import argparse
import http.client
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter

UA = "pcii-load-bench/1"
CSRF_RE = re.compile(r'name="csrf" value="([^"]*)"')
TICK_HZ = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------ HTTP plumbing

class Jar:
    """Cookies by name (one host, path / only: enough for the portal)."""

    def __init__(self, cookies=None):
        self.c = dict(cookies or {})

    def header(self):
        return "; ".join(f"{k}={v}" for k, v in self.c.items())

    def update(self, resp):
        for h in resp.headers.get_all("Set-Cookie") or []:
            first, *attrs = h.split(";")
            name, _, value = first.strip().partition("=")
            gone = value == "" or any(a.strip().lower() in ("max-age=0", "max-age=-1") for a in attrs)
            if gone:
                self.c.pop(name, None)
            else:
                self.c[name] = value


class Client:
    def __init__(self, host, port, jar=None, timeout=120):
        self.host, self.port, self.timeout = host, port, timeout
        self.jar = jar or Jar()
        self.conn = None

    def request(self, method, path, body=None, ctype=None):
        """Returns (status, headers, body bytes, seconds). Raises on a connection failure (after closing it)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"User-Agent": UA}
        ck = self.jar.header()
        if ck:
            headers["Cookie"] = ck
        if ctype:
            headers["Content-Type"] = ctype
        reused = self.conn.sock is not None
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # A kept-alive connection the server had closed (its keep-alive timeout): a browser sends the GET
            # again on a new connection, and so do we, once. Anything else is an error.
            self.close()
            if not reused or method != "GET":
                raise
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
            except Exception:
                self.close()
                raise
        except Exception:
            self.close()
            raise
        secs = time.perf_counter() - t0
        self.jar.update(resp)
        if resp.will_close:
            self.close()
        return resp.status, resp.headers, data, secs

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


def csrf_of(body):
    m = CSRF_RE.search(body.decode("utf-8", "replace"))
    return m.group(1) if m else None


def login(client, email, password):
    """GET /login then POST /login; returns (status, location, seconds of the POST)."""
    st, _, body, _ = client.request("GET", "/login")
    token = csrf_of(body)
    if st != 200 or not token:
        raise RuntimeError(f"GET /login answered {st} without a form token")
    form = urllib.parse.urlencode({"email": email, "password": password, "csrf": token})
    st, h, _, secs = client.request("POST", "/login", form, "application/x-www-form-urlencoded")
    return st, h.get("Location", ""), secs


def multipart(fields, files):
    boundary = "----pcii-load-bench-" + os.urandom(8).hex()
    out = []
    for k, v in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (fname, data) in files.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{fname}"\r\n'
                   f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


# ------------------------------------------------------------------------------------------------ /proc readers

def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])   # utime + stime (fields 14, 15 of stat)


def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return sum(int(v[i]) for i in (0, 1, 2, 5, 6, 7))   # user nice system irq softirq steal


def own_cpu():
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


# ------------------------------------------------------------------------------------------------ setup

def cmd_setup(a):
    base = urllib.parse.urlsplit(a.base)
    accounts = [l.split() for l in open(a.accounts) if l.strip()]   # email password org
    sessions = [None] * len(accounts)
    first_of_org = {}
    for i, (email, password, org) in enumerate(accounts):
        first_of_org.setdefault(org, i)
    errors = []

    def sign_in(i):
        email, password, org = accounts[i]
        c = Client(base.hostname, base.port)
        st, loc, _ = login(c, email, password)
        if st != 303 or not loc.endswith("/dashboard"):
            errors.append(f"{email}: POST /login answered {st} -> {loc!r}")
            return
        sessions[i] = {"email": email, "org": org, "cookies": c.jar.c}
        c.close()

    # A few at a time (the setup server, not the measured one, pays for these password checks).
    idx = list(range(len(accounts)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not idx:
                    return
                i = idx.pop(0)
            try:
                sign_in(i)
            except Exception as e:
                errors.append(f"{accounts[i][0]}: {e!r}")

    ts = [threading.Thread(target=worker) for _ in range(2)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    if errors:
        sys.exit("setup: sign-in failed:\n  " + "\n  ".join(errors[:10]))

    # One small draft (a title, a description, a 64 KiB file) per organisation: the page every member opens.
    sub_of_org = {}
    for org, i in first_of_org.items():
        c = Client(base.hostname, base.port, Jar(sessions[i]["cookies"]))
        st, _, body, _ = c.request("GET", "/submissions/new")
        token = csrf_of(body)
        if st != 200 or not token:
            sys.exit(f"setup: GET /submissions/new answered {st}")
        payload, ctype = multipart(
            {"csrf": token, "action": "draft", "title": f"Load bench draft of {org}",
             "description_1": "A small attachment for the load benchmark."},
            {"file_1": ("bench.bin", os.urandom(64 * 1024))})
        st, h, body, _ = c.request("POST", "/submissions", payload, ctype)
        loc = h.get("Location", "")
        m = re.search(r"/submissions/([^/?#]+)$", loc)
        if st != 303 or not m:
            sys.exit(f"setup: creating a draft answered {st} -> {loc!r}: {body[:300]!r}")
        sub_of_org[org] = m.group(1)
        c.close()
    for s in sessions:
        s["submission"] = sub_of_org[s["org"]]
    # Every session opens its organisation's draft once (checks the cookies work).
    for s in sessions:
        c = Client(base.hostname, base.port, Jar(s["cookies"]))
        st, _, _, _ = c.request("GET", f"/submissions/{s['submission']}")
        if st != 200:
            sys.exit(f"setup: {s['email']} GET /submissions/{s['submission']} answered {st}")
        s["cookies"] = c.jar.c
        c.close()
    json.dump({"sessions": sessions, "accounts": accounts}, open(a.out, "w"))
    print(f"setup: {len(sessions)} sessions signed in, {len(sub_of_org)} drafts made", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ run

def pct(xs, p):
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def ms(x):
    return "    -" if x != x else f"{x * 1000:5.0f}" if x >= 0.0995 else f"{x * 1000:5.1f}"


def mib(kib):
    return f"{kib / 1024:6.1f} MiB"


PAGES = [  # (weight, kind, path template): what a signed-in submitter opens
    (30, "/submissions", "/submissions"),
    (30, "/submissions/ID", "/submissions/{sub}"),
    (15, "/account", "/account"),
    (15, "/submissions/new", "/submissions/new"),
    (10, "/dashboard (303)", "/dashboard"),
]


def cmd_run(a):
    base = urllib.parse.urlsplit(a.base)
    host, port, pid = base.hostname, base.port, a.pid
    data = json.load(open(a.sessions))
    sessions, accounts = data["sessions"][: a.sessions_n], data["accounts"]
    rnd = random.Random(a.seed)
    time.sleep(a.idle_wait)   # the server answered /healthz; let its start-up work (blob sweep) finish
    idle_rss = proc_status_kib(pid, "VmRSS")
    idle_hwm = proc_status_kib(pid, "VmHWM")

    # --- RSS sampler (every 50 ms, for the peak of sampled VmRSS and a timeline)
    samples = []
    stop_all = threading.Event()

    def sampler():
        while not stop_all.is_set():
            try:
                samples.append((time.perf_counter(), proc_status_kib(pid, "VmRSS")))
            except OSError:
                return
            time.sleep(0.05)

    # --- browsing sessions
    records = []           # (start, end, kind, status or exception name)
    rec_lock = threading.Lock()
    weights = [w for w, _, _ in PAGES]

    def browse(s, seed):
        r = random.Random(seed)
        c = Client(host, port, Jar(s["cookies"]), timeout=a.timeout)
        think = a.think_ms / 1000
        time.sleep(r.uniform(0, 2 * think))
        mine = []
        while not stop_all.is_set():
            _, kind, tmpl = r.choices(PAGES, weights)[0]
            path = tmpl.format(sub=s["submission"])
            t0 = time.perf_counter()
            try:
                st, _, _, _ = c.request("GET", path)
            except Exception as e:
                st = type(e).__name__
            t1 = time.perf_counter()
            mine.append((t0, t1, kind, st))
            if isinstance(st, int) and st in (401, 403):
                # Signed out: nothing after this would be an ordinary page. Counted as an error; stop this session.
                break
            stop_all.wait(r.uniform(0, 2 * think))
        c.close()
        with rec_lock:
            records.extend(mine)

    def marks():
        return (time.perf_counter(), proc_cpu_ticks(pid), machine_busy_ticks(), own_cpu())

    threading.Thread(target=sampler, daemon=True).start()
    browsers = [threading.Thread(target=browse, args=(s, rnd.random())) for s in sessions]
    for t in browsers:
        t.start()
    time.sleep(a.warmup)
    m_a0 = marks()
    time.sleep(a.seconds)
    m_a1 = marks()
    rss_after_a = proc_status_kib(pid, "VmRSS")
    hwm_after_a = proc_status_kib(pid, "VmHWM")

    # --- (b): prepare the storm (each login has fetched its form) and the uploads (form tokens), then go at once
    go = threading.Event()
    ready = threading.Semaphore(0)
    logins = []            # (start, end, kind, status, location)
    n = a.logins
    good_password = accounts[0][1]
    preparers = []

    def storm_login(i):
        email = accounts[i % len(accounts)][0]
        correct = i % 2 == 0
        password = good_password if correct else good_password + "-wrong"
        c = Client(host, port, timeout=a.timeout)
        try:
            st, _, body, _ = c.request("GET", "/login")
            token = csrf_of(body)
        except Exception as e:
            st, token = type(e).__name__, None
        form = urllib.parse.urlencode({"email": email, "password": password, "csrf": token or ""})
        ready.release()
        go.wait()
        t0 = time.perf_counter()
        try:
            st, h, _, _ = c.request("POST", "/login", form, "application/x-www-form-urlencoded")
            loc = h.get("Location", "")
        except Exception as e:
            st, loc = type(e).__name__, ""
        t1 = time.perf_counter()
        c.close()
        with rec_lock:
            logins.append((t0, t1, "correct" if correct else "wrong", st, loc))

    upload_tokens = []
    for k in range(a.uploads):
        s = sessions[k % len(sessions)]
        c = Client(host, port, Jar(s["cookies"]), timeout=a.timeout)
        st, _, body, _ = c.request("GET", "/submissions/new")
        token = csrf_of(body)
        c.close()
        if st != 200 or not token:
            sys.exit(f"run: GET /submissions/new for an upload answered {st}")
        upload_tokens.append((c.jar.header(), token))

    time.sleep(a.storm_at)
    for i in range(n):
        t = threading.Thread(target=storm_login, args=(i,))
        t.start()
        preparers.append(t)
    for _ in range(n):  # every storm login has fetched its form (one GET /login each)
        ready.acquire()
    m_b0 = marks()
    # The storm (POST /login x n) and the uploads are released together.
    procs = []
    go.set()
    storm_t0 = time.perf_counter()
    for cookie, token in upload_tokens:
        procs.append((time.perf_counter(), subprocess.Popen(
            ["curl", "-s", "-o", "/dev/null", "-H", "Expect:", "-H", f"Cookie: {cookie}", "-H", f"User-Agent: {UA}",
             "-w", "%{http_code} %{time_total}", "-F", f"csrf={token}", "-F", "action=draft",
             "-F", "title=load bench upload", "-F", "description_1=load bench upload",
             "-F", f"file_1=@{a.upload_file};type=application/octet-stream", f"{a.base}/submissions"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)))
    for t in preparers:
        t.join()
    storm_t1 = max([t1 for _, t1, _, _, _ in logins], default=storm_t0)
    uploads = []
    for t0, p in procs:
        out, _ = p.communicate()
        t1 = time.perf_counter()
        code, _, secs = (out or "000 0").partition(" ")
        uploads.append((t0, t1, code, float(secs or 0)))
    load_t1 = max([storm_t1] + [u[1] for u in uploads])
    m_b1 = marks()   # end of the load (storm and uploads)
    # Browsing goes on until the phase's end, at least `settle` seconds after the load; then "after" RSS.
    end = max(m_a1[0] + a.seconds, load_t1 + a.settle)
    time.sleep(max(0.0, end - time.perf_counter()))
    m_b2 = marks()
    rss_after = proc_status_kib(pid, "VmRSS")
    hwm = proc_status_kib(pid, "VmHWM")
    stop_all.set()
    for t in browsers:
        t.join()
    time.sleep(a.quiet_after)
    rss_quiet = proc_status_kib(pid, "VmRSS")

    # ------------------------------------------------------------------ report
    def window(t0, t1, overlap=False):
        if overlap:   # the request was in flight at some moment of [t0, t1]
            return [r for r in records if r[0] <= t1 and r[1] >= t0]
        return [r for r in records if t0 <= r[0] < t1]

    def stats(rs):
        ok = [r[1] - r[0] for r in rs if isinstance(r[3], int) and 200 <= r[3] < 400]
        errs = Counter(str(r[3]) for r in rs if not (isinstance(r[3], int) and 200 <= r[3] < 400))
        return ok, errs

    def errs_text(errs):
        return ", ".join(f"{k}: {v}" for k, v in sorted(errs.items())) if errs else "none"

    def cpu_line(m0, m1):
        wall = m1[0] - m0[0]
        server = (m1[1] - m0[1]) / TICK_HZ
        busy = (m1[2] - m0[2]) / TICK_HZ
        drv = m1[3][0] - m0[3][0]
        kids = m1[3][1] - m0[3][1]
        other = max(0.0, busy - server - drv - kids)
        return (f"server {server / wall:.2f} cores, this driver {drv / wall:.2f}, curl uploads {kids / wall:.2f}, "
                f"everything else on the machine {other / wall:.2f} (of {os.cpu_count()})"), other / wall

    rows = []

    def row(label, rs):
        ok, errs = stats(rs)
        rows.append((label, len(rs), pct(ok, 50), pct(ok, 99), max(ok) if ok else float("nan"), errs))
        return ok, errs

    base_ok, base_err = row(f"(a) baseline, {a.seconds:.0f} s, browsing alone", window(m_a0[0], m_a1[0]))
    storm_ok, storm_err = row(f"(b) during the storm ({storm_t1 - storm_t0:.2f} s, in flight)",
                              window(storm_t0, storm_t1, overlap=True))
    load_ok, load_err = row(f"(b) during storm+uploads ({load_t1 - storm_t0:.2f} s, in flight)",
                            window(storm_t0, load_t1, overlap=True))
    row(f"(b) after the load ({end - load_t1:.1f} s)", window(load_t1, end))
    row(f"(b) whole phase ({end - m_a1[0]:.1f} s)", window(m_a1[0], end))

    print(f"--- storm of {n} logins ({(n + 1) // 2} correct, {n // 2} wrong password) + {a.uploads} uploads of "
          f"{os.path.getsize(a.upload_file) / 2**20:.0f} MiB, {len(sessions)} sessions browsing ---")
    print(f"server RSS idle (fresh server, before any request): {mib(idle_rss)}   (VmHWM {mib(idle_hwm)})")
    print(f"server RSS after (a) baseline                      : {mib(rss_after_a)}   (VmHWM {mib(hwm_after_a)})")
    print()
    print(f"ordinary pages (ms){'':32} {'n':>6} {'p50':>5} {'p99':>5} {'max':>5}  errors (non-2xx/3xx by status)")
    for label, cnt, p50, p99, mx, errs in rows:
        print(f"  {label:<49} {cnt:>6} {ms(p50)} {ms(p99)} {ms(mx)}  {errs_text(errs)}")
    # per page, baseline and storm
    for title, rs in (("(a) baseline", window(m_a0[0], m_a1[0])),
                      ("(b) during the storm", window(storm_t0, storm_t1, overlap=True))):
        parts = []
        for _, kind, _ in PAGES:
            ok, _ = stats([r for r in rs if r[2] == kind])
            parts.append(f"{kind} {ms(pct(ok, 50)).strip()}/{ms(pct(ok, 99)).strip()} (n={len(ok)})")
        print(f"  p50/p99 by page, {title}: " + "; ".join(parts))
    print()
    lat = [t1 - t0 for t0, t1, _, _, _ in logins]
    by = Counter(f"{kind} -> {st}" for _, _, kind, st, _ in logins)
    bad = [l for l in logins if not ((l[2] == "correct" and l[3] == 303 and l[4].endswith("/dashboard"))
                                      or (l[2] == "wrong" and l[3] == 401))]
    print(f"logins (POST /login, all {n} sent at once): p50 {ms(pct(lat, 50)).strip()} ms, "
          f"p99 {ms(pct(lat, 99)).strip()} ms, max {ms(max(lat) if lat else float('nan')).strip()} ms; "
          f"answers: {', '.join(f'{k}: {v}' for k, v in sorted(by.items()))}"
          + (f"; UNEXPECTED: {len(bad)}" if bad else " (all as expected: 303 to /dashboard / 401)"))
    up_codes = Counter(u[2] for u in uploads)
    up_secs = [u[3] for u in uploads]
    size = os.path.getsize(a.upload_file)
    print(f"uploads ({a.uploads} at once, POST /submissions): HTTP {dict(up_codes)}; seconds each "
          f"{[round(s, 2) for s in up_secs]}; "
          + (f"{size * len(uploads) / 2**20 / (max(u[1] for u in uploads) - storm_t0):.0f} MiB/s together"
             if uploads else ""))
    print()
    peak_sampled = max([k for t, k in samples if t >= m_a1[0]], default=0)
    print(f"server RSS at peak (VmHWM)                         : {mib(hwm)}   (highest 50 ms sample in (b): "
          f"{mib(peak_sampled)})")
    print(f"server RSS after ({end - load_t1:.1f} s after the load, browsing on): {mib(rss_after)}")
    print(f"server RSS after browsing stopped (+{a.quiet_after:.0f} s)            : {mib(rss_quiet)}")
    line_a, other_a = cpu_line(m_a0, m_a1)
    line_b, other_b = cpu_line(m_b0, m_b1)
    line_c, _ = cpu_line(m_b1, m_b2)
    print(f"CPU (a) baseline    : {line_a}")
    print(f"CPU (b) storm+upload: {line_b}")
    print(f"CPU (b) after load  : {line_c}")
    print()
    base_p99, storm_p99 = pct(base_ok, 99), pct(storm_ok, 99)
    growth = (rss_after - idle_rss) / 1024
    print(f"(c) RSS after - idle           : {growth:+.1f} MiB   (goal: within 100 MiB: "
          f"{'met' if growth <= 100 else 'NOT met'}; peak - idle {(hwm - idle_rss) / 1024:+.1f} MiB)")
    print(f"(c) p99 during storm           : {ms(storm_p99).strip()} ms over {len(storm_ok)} pages "
          f"(goal: under 250 ms: {'met' if storm_p99 < 0.25 else 'NOT met'}); "
          f"with the uploads' tail {ms(pct(load_ok, 99)).strip()} ms")
    print(f"(c) p99 storm / baseline       : {storm_p99 / base_p99:.1f}x  ({ms(storm_p99).strip()} / "
          f"{ms(base_p99).strip()} ms)")
    errors_total = sum(storm_err.values()) + sum(base_err.values()) + len(bad) + sum(
        1 for u in uploads if u[2] != "303")
    if len(storm_ok) < 100:
        print(f"    note: only {len(storm_ok)} pages were in flight during the storm (a session waits for its page, so a "
              "stall yields about one page per session): with under 100 pages, p99 is the max")
    if max(other_a, other_b) > 0.3:
        print(f"    note: other jobs used up to {max(other_a, other_b):.2f} cores during a measurement: "
              "the figures are skewed")
    if a.summary:
        with open(a.summary, "a") as f:
            f.write(json.dumps({
                "logins": n, "idle": idle_rss, "after_a": rss_after_a, "peak": hwm, "after": rss_after,
                "quiet": rss_quiet, "base_p50": pct(base_ok, 50), "base_p99": base_p99,
                "storm_p50": pct(storm_ok, 50), "storm_p99": storm_p99, "storm_n": len(storm_ok),
                "storm_secs": storm_t1 - storm_t0, "load_p99": pct(load_ok, 99),
                "login_p50": pct(lat, 50), "login_p99": pct(lat, 99), "errors": errors_total,
                "other_cores": max(other_a, other_b)}) + "\n")


def cmd_summary(a):
    rows = [json.loads(l) for l in open(a.file) if l.strip()]
    print(f"{'storm':>6} | {'idle':>6} | {'peak':>6} | {'after':>6} | {'after-idle':>10} | {'base p50/p99':>12} | "
          f"{'storm p50/p99':>13} | {'ratio':>6} | {'login p50/p99':>13} | {'errors':>6}")
    print("-" * 108)
    for r in rows:
        m = lambda k: f"{r[k] / 1024:6.1f}"
        print(f"{r['logins']:>6} | {m('idle')} | {m('peak')} | {m('after')} | {(r['after'] - r['idle']) / 1024:+10.1f} | "
              f"{ms(r['base_p50']).strip():>5}/{ms(r['base_p99']).strip():<6} | "
              f"{ms(r['storm_p50']).strip():>5}/{ms(r['storm_p99']).strip():<7} | "
              f"{r['storm_p99'] / r['base_p99']:5.1f}x | "
              f"{ms(r['login_p50']).strip():>5}/{ms(r['login_p99']).strip():<7} | {r['errors']:>6}")
    print("RSS in MiB; latencies in ms; storm p50/p99: ordinary pages in flight while the storm's logins were;")
    print("ratio: storm p99 / baseline p99; errors: non-2xx/3xx pages in (a) and the storm, unexpected login")
    print("answers, failed uploads.")
    ok_rss = all((r["after"] - r["idle"]) / 1024 <= 100 for r in rows)
    ok_p99 = all(r["storm_p99"] < 0.25 for r in rows)
    print(f"goal 'RSS after a storm within 100 MiB of idle': {'met' if ok_rss else 'NOT met'}; "
          f"'p99 of other pages under 250 ms during it': {'met' if ok_p99 else 'NOT met'}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("base")
    s.add_argument("accounts")
    s.add_argument("out")
    r = sub.add_parser("run")
    r.add_argument("base")
    r.add_argument("pid", type=int)
    r.add_argument("sessions")
    r.add_argument("--sessions-n", type=int, default=50)
    r.add_argument("--seconds", type=float, default=30)
    r.add_argument("--warmup", type=float, default=2)
    r.add_argument("--idle-wait", type=float, default=1)
    r.add_argument("--think-ms", type=float, default=500)
    r.add_argument("--logins", type=int, default=20)
    r.add_argument("--uploads", type=int, default=4)
    r.add_argument("--upload-file", required=True)
    r.add_argument("--storm-at", type=float, default=2)
    r.add_argument("--settle", type=float, default=5)
    r.add_argument("--quiet-after", type=float, default=2)
    r.add_argument("--timeout", type=float, default=120)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--summary")
    m = sub.add_parser("summary")
    m.add_argument("file")
    a = p.parse_args()
    {"setup": cmd_setup, "run": cmd_run, "summary": cmd_summary}[a.cmd](a)


if __name__ == "__main__":
    main()
