#!/usr/bin/env python3
"""Measurements and checks for tests/proxy/run.sh (Python 3 standard library only).

run.sh starts the portal and nginx (the shipped snippets of deploy/nginx/) and calls this with the environment
described in main(). Every check prints one line "ok   ..." or "FAIL ..."; the exit status is 1 if any failed.
The attacks come from other loopback addresses (127.0.0.0/8 is all loopback on Linux) than the probes, so
"one client" is one source address, as nginx's per-address limits see it.
"""
import errno
import hashlib
import html
import http.client
import json
import math
import os
import random
import re
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time

IP_BIND_ADDRESS_NO_PORT = 24
FAILED = []


def say(msg):
    print(msg, flush=True)


def check(ok, what):
    say(("ok   " if ok else "FAIL ") + what)
    if not ok:
        FAILED.append(what)
    return ok


# ----------------------------------------------------------------------------------------------- process figures
def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return -1.0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def nginx_fds():
    return sum(max(fds(w), 0) for w in children(NGINX_PID))


# nginx's temporary files. nginx unlinks a temporary file right after opening it (ngx_open_tempfile: persistent
# only with client_body_in_file_only, proxy_store or a cache), so its directory stays empty even while it buffers:
# counting entries there cannot fail. What shows is the worker's open descriptor ("<path> (deleted)" in
# /proc/<pid>/fd) and, at error_log level warn (run.sh's test config), nginx's own warning.
TEMP_DIRS = ("client_body_temp", "proxy_temp")
TEMP_WARNINGS = {"client_body_temp": "a client request body is buffered to a temporary file",
                 "proxy_temp": "an upstream response is buffered to a temporary file"}


def nginx_temp_fds(prefix):
    """For each of TEMP_DIRS, the nginx workers' open descriptors on a file in it (deleted or not), and the targets."""
    roots = {d: os.path.join(os.path.realpath(prefix), d) + "/" for d in TEMP_DIRS}
    found = {d: [] for d in TEMP_DIRS}
    for w in children(NGINX_PID):
        try:
            names = os.listdir(f"/proc/{w}/fd")
        except OSError:
            continue
        for fd in names:
            try:
                target = os.readlink(f"/proc/{w}/fd/{fd}")
            except OSError:
                continue
            for d, root in roots.items():
                if target.startswith(root):
                    found[d].append(f"{w}:{target}")
    return found


class TempWatch:
    """While the `with` block runs: the peak number of nginx worker descriptors open on a file in client_body_temp and
    proxy_temp (sampled every 10 ms), and afterwards the "buffered to a temporary file" warnings nginx logged meanwhile."""

    def __init__(self, prefix):
        self.prefix, self.log = prefix, os.path.join(prefix, "error.log")
        self.fds = {d: 0 for d in TEMP_DIRS}
        self.examples = {d: "" for d in TEMP_DIRS}
        self.logged = {d: 0 for d in TEMP_DIRS}
        self.samples = 0
        self._stop = threading.Event()

    def _sample(self):
        while True:
            for d, targets in nginx_temp_fds(self.prefix).items():
                if len(targets) > self.fds[d]:
                    self.fds[d], self.examples[d] = len(targets), targets[0]
            self.samples += 1
            if self._stop.wait(0.01):
                return

    def __enter__(self):
        self._offset = os.path.getsize(self.log)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_):
        time.sleep(0.2)  # nginx writes its warning when it opens the file; let a last sample and the log settle
        self._stop.set()
        self._thread.join()
        with open(self.log, "rb") as f:
            f.seek(self._offset)
            new = f.read().decode(errors="replace")
        for d, warning in TEMP_WARNINGS.items():
            self.logged[d] = new.count(warning)
        return False

    def seen(self, d):
        return (f"{self.fds[d]} open descriptor(s) in {d} at peak over {self.samples} samples"
                + (f" (e.g. {self.examples[d]})" if self.examples[d] else "")
                + f", {self.logged[d]} '{TEMP_WARNINGS[d]}' warning(s) in error.log")


# ----------------------------------------------------------------------------------------------- HTTP helpers
class Client:
    """A tiny cookie-keeping HTTP/1.1 client bound to one source address; no redirects followed."""

    def __init__(self, port, src="127.0.0.1"):
        self.port, self.src, self.cookies = port, src, {}
        # An IPv6 source talks to nginx's [::1] listener; the Host header stays the portal's origin.
        self.host = "::1" if ":" in src else "127.0.0.1"

    def request(self, method, path, body=None, headers=None, timeout=10):
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout, source_address=(self.src, 0))
        h = {"Host": f"127.0.0.1:{self.port}"}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None and isinstance(body, dict):
            body = "&".join(f"{k}={urlq(v)}" for k, v in body.items())
            h["Content-Type"] = "application/x-www-form-urlencoded"
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in v or "max-age=0" in v.lower() and not value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
        c.close()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data

    def csrf(self, path):
        status, _, page = self.request("GET", path)
        m = re.search(rb'name="csrf" value="([^"]*)"', page)
        if not m:
            raise SystemExit(f"no csrf token on {path} (HTTP {status})")
        return m.group(1).decode()

    def login(self, email, password, extra_headers=None):
        token = self.csrf("/login")
        return self.request("POST", "/login", {"email": email, "password": password, "csrf": token},
                            headers=extra_headers)


def urlq(s):
    from urllib.parse import quote_plus
    return quote_plus(s)


def healthz(port, timeout=2.0):
    t0 = time.monotonic()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", "/healthz")
        status = c.getresponse().status
        c.close()
    except OSError as e:
        status = type(e).__name__
    return status, time.monotonic() - t0


# ----------------------------------------------------------------------------------------------- a. slowloris
def slowloris_worker(port, src, n, seconds, statfile):
    """Holds n connections that each sent half a request header, re-opening any the server closes, and
    trickles one more header line every 3 s (which nginx does not count as progress). Connects are
    non-blocking, up to 1,000 in flight: a blocking connect waits out a SYN retransmit whenever the
    listener's accept queue is full, and on a busy 2-core machine that slowed the ramp so much that nginx's
    header timeout closed the first connections before the last were open. Writes its figures to statfile as
    JSON twice a second."""
    sel = selectors.DefaultSelector()
    connecting = {}   # socket -> when its connect began
    opened_at = {}    # socket -> when its half header went out
    opened = closed = failed = 0
    lifetimes = []
    end = time.monotonic() + seconds
    last_trickle = last_stat = time.monotonic()
    half_header = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"

    def stat(final=False):
        with open(statfile + ".tmp", "w") as f:
            json.dump({"open": len(opened_at), "opened": opened, "closed_by_server": closed, "failed": failed,
                       "lifetimes": lifetimes[-2000:] if final else []}, f)
        os.replace(statfile + ".tmp", statfile)

    def drop(s):
        sel.unregister(s)
        s.close()

    while time.monotonic() < end:
        budget = 500
        while (len(opened_at) + len(connecting) < n and len(connecting) < 1000 and budget > 0
               and time.monotonic() < end):
            budget -= 1
            s = socket.socket()
            try:
                s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((src, 0))
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", port))
            except OSError:
                err = -1
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                break
            sel.register(s, selectors.EVENT_WRITE)
            connecting[s] = time.monotonic()
        busy = len(opened_at) + len(connecting) < n or connecting
        for key, _ in sel.select(timeout=0.05 if busy else 0.2):
            s = key.fileobj
            if s in connecting:
                del connecting[s]
                try:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                        raise OSError("connect failed")
                    s.send(half_header)
                except OSError:
                    failed += 1
                    drop(s)
                    continue
                sel.modify(s, selectors.EVENT_READ)
                opened_at[s] = time.monotonic()
                opened += 1
                continue
            try:
                s.recv(4096)
            except OSError:
                pass
            lifetimes.append(time.monotonic() - opened_at.pop(s))
            closed += 1
            drop(s)
        now = time.monotonic()
        for s in [s for s, t in connecting.items() if now - t > 2]:
            del connecting[s]
            failed += 1
            drop(s)
        if now - last_trickle > 3:
            last_trickle = now
            for s in list(opened_at):
                try:
                    s.send(b"X-Slow: a\r\n")
                except OSError:
                    pass
        if now - last_stat > 0.5:
            last_stat = now
            stat()
    stat(final=True)
    for s in list(opened_at) + list(connecting):
        s.close()


def slowloris(label, attack_port, probe_port, watch_pid, n, seconds, src="127.0.0.9"):
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    per_proc = max(100, soft - 200)
    procs = math.ceil(n / per_proc)
    say(f"  {label}: {n} connections from {src} that send half a request header and stall ({procs} attacker "
        f"process(es), {seconds} s); /healthz probed from 127.0.0.1 every 0.5 s")
    before_fds, before_nginx = fds(watch_pid), nginx_fds()
    workers = []
    statfiles = []
    for i in range(procs):
        share = n // procs + (1 if i < n % procs else 0)
        sf = os.path.join(WORK, f"slowloris-{label}-{i}.json")
        statfiles.append(sf)
        workers.append(subprocess.Popen([sys.executable, __file__, "slowloris-worker", str(attack_port), src,
                                         str(share), str(seconds), sf]))

    def attack_stats():
        tot = {"open": 0, "opened": 0, "closed_by_server": 0, "failed": 0, "lifetimes": []}
        for sf in statfiles:
            try:
                with open(sf) as f:
                    d = json.load(f)
            except (OSError, ValueError):
                continue
            for k in tot:
                tot[k] += d[k]
        return tot

    probes, max_fds, max_nginx, max_open = [], before_fds, before_nginx, 0
    t0 = time.monotonic()
    last_print = -10
    while any(w.poll() is None for w in workers):
        status, secs = healthz(probe_port)
        probes.append((time.monotonic() - t0, status, secs))
        f, nf, st = fds(watch_pid), nginx_fds(), attack_stats()
        max_fds, max_nginx, max_open = max(max_fds, f), max(max_nginx, nf), max(max_open, st["open"])
        el = time.monotonic() - t0
        if el - last_print >= 2.5:
            last_print = el
            say(f"    t={el:5.1f}s attack open {st['open']:6d} (opened {st['opened']}, closed by server "
                f"{st['closed_by_server']}, connect failures {st['failed']}) | portal fds {f:6d} | "
                f"nginx worker fds {nf:6d} | /healthz {status} in {secs * 1000:.0f} ms")
        time.sleep(max(0.0, 0.5 - secs))
    st = attack_stats()
    time.sleep(2)
    after_fds, after_nginx = fds(watch_pid), nginx_fds()
    answered = [p for p in probes if p[1] == 200]
    lat = sorted(p[2] for p in answered)
    res = {
        "before_fds": before_fds, "max_fds": max_fds, "after_fds": after_fds, "max_open": max_open,
        "before_nginx": before_nginx, "max_nginx": max_nginx, "after_nginx": after_nginx,
        "probes": len(probes), "answered": len(answered),
        "lat_median_ms": statistics.median(lat) * 1000 if lat else None,
        "lat_max_ms": lat[-1] * 1000 if lat else None,
        "failures": sorted({str(p[1]) for p in probes if p[1] != 200}),
        "closed_by_server": st["closed_by_server"], "connect_failures": st["failed"], "opened": st["opened"],
        "lifetime_median_s": statistics.median(st["lifetimes"]) if st["lifetimes"] else None,
    }
    say(f"  {label}: attack held up to {max_open} of {n} connections at once ({res['opened']} opened in all, "
        f"{res['closed_by_server']} closed by the server, {res['connect_failures']} connects failed); "
        f"/healthz answered 200 to {len(answered)}/{len(probes)} probes"
        + (f", median {res['lat_median_ms']:.0f} ms, max {res['lat_max_ms']:.0f} ms" if lat else "")
        + (f"; other outcomes: {', '.join(res['failures'])}" if res["failures"] else ""))
    say(f"  {label}: portal open fds before {before_fds}, during (max) {max_fds}, after {after_fds}; "
        f"nginx worker fds before {before_nginx}, max {max_nginx}, after {after_nginx}"
        + (f"; a stalled connection lived {res['lifetime_median_s']:.1f} s (median) before the server closed it"
           if res["lifetime_median_s"] is not None else ""))
    return res


# ----------------------------------------------------------------------------------------------- b. stalled uploads
TEXT_FIELDS = 4
TEXT_FIELD_BYTES = 1_000_000   # the portal's caps: 1 MiB per field, 4 MiB of text in all


def stalled_upload(port, src, cookie, csrf):
    """A POST /submissions whose multipart body sends the token and 4 x ~1 MB of text fields, then stalls
    (Content-Length promises 1 MiB more). Returns the socket, or the error text."""
    b = "----pcii-stall-boundary"
    parts = [f"--{b}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n".encode()]
    for i in range(TEXT_FIELDS):
        parts.append(f"--{b}\r\nContent-Disposition: form-data; name=\"description_{i + 1}\"\r\n\r\n".encode()
                     + b"a" * TEXT_FIELD_BYTES + b"\r\n")
    body = b"".join(parts)
    head = (f"POST /submissions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
            f"Content-Type: multipart/form-data; boundary={b}\r\nContent-Length: {len(body) + (1 << 20)}\r\n\r\n")
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((src, 0))
        s.settimeout(20)
        s.connect(("127.0.0.1", port))
        s.sendall(head.encode())
        s.sendall(body)
        s.setblocking(False)
        return s
    except OSError as e:
        s.close()
        return f"{type(e).__name__}"


def answer_of(s, wait):
    """What the server sent back on a stalled upload within `wait` seconds: a status line, 'closed', or None."""
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    ev = sel.select(timeout=wait)
    sel.close()
    if not ev:
        return None
    try:
        data = s.recv(200)
    except OSError as e:
        return type(e).__name__
    if not data:
        return "closed"
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def send_stalled(n_per_src, sources, port, cookie, csrf):
    socks, errors = [], []
    lock = threading.Lock()

    def one(src):
        for _ in range(n_per_src):
            r = stalled_upload(port, src, cookie, csrf)
            with lock:
                (socks if isinstance(r, socket.socket) else errors).append(r)

    ths = [threading.Thread(target=one, args=(src,)) for src in sources]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return socks, errors


# ----------------------------------------------------------------------------------------------- main
def main():
    global WORK, NGINX_PID
    env = os.environ
    WORK = env["PROXY_WORK"]
    NGINX_PID = int(env["PROXY_NGINX_PID"])
    nginx_port, portal_port, portal_pid = int(env["PROXY_NGINX_PORT"]), int(env["PROXY_PORTAL_PORT"]), \
        int(env["PROXY_PORTAL_PID"])
    nginx_prefix = env["PROXY_NGINX_PREFIX"]
    n_slow = int(env.get("PCII_PROXY_SLOWLORIS", "20000"))
    slow_secs = int(env.get("PCII_PROXY_SLOWLORIS_SECONDS", "25"))
    n_stall = int(env.get("PCII_PROXY_STALLED", "300"))
    n_spread = int(env.get("PCII_PROXY_SPREAD", "60"))
    upload_mib = int(env.get("PCII_PROXY_UPLOAD_MIB", "200"))
    sub_email, sub_pw = env["PROXY_SUBMITTER_EMAIL"], env["PROXY_SUBMITTER_PASSWORD"]
    vic_email, vic_pw = env["PROXY_VICTIM_EMAIL"], env["PROXY_VICTIM_PASSWORD"]
    say(f"portal pid {portal_pid} on 127.0.0.1:{portal_port}; nginx (pid {NGINX_PID}, "
        f"{len(children(NGINX_PID))} worker(s)) on 127.0.0.1:{nginx_port}; "
        f"open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")

    # ------------------------------------------------------------------ a. slowloris through nginx
    say("== a. slowloris through nginx")
    r = slowloris("via-nginx", nginx_port, nginx_port, portal_pid, n_slow, slow_secs)
    check(r["max_open"] >= 0.9 * n_slow,
          f"a. the attack held {r['max_open']} half-sent headers open at once through nginx (>= 90% of {n_slow})")
    check(r["answered"] == r["probes"] and r["lat_max_ms"] is not None and r["lat_max_ms"] < 1000,
          f"a. /healthz through nginx answered 200 to every probe during the attack "
          f"({r['answered']}/{r['probes']}, max {r['lat_max_ms'] or 0:.0f} ms < 1000 ms)")
    check(r["max_fds"] <= r["before_fds"] + 20,
          f"a. the portal's open fds stayed bounded ({r['before_fds']} before, {r['max_fds']} max, "
          f"{r['after_fds']} after; no more than 20 added)")
    life = r["lifetime_median_s"]
    check(life is not None and 9 <= life <= 13,
          f"a. nginx closed a stalled header after client_header_timeout (10 s) despite the trickle "
          f"(median lifetime {life if life is None else round(life, 1)} s)")

    # Log in the submitter (its own address: the sign-in forms are rate limited per address).
    sub = Client(nginx_port, "127.0.0.50")
    status, headers, _ = sub.login(sub_email, sub_pw)
    if status != 303:
        raise SystemExit(f"the submitter's login through nginx answered HTTP {status}")
    cookie = "; ".join(f"{k}={v}" for k, v in sub.cookies.items())
    csrf = sub.csrf("/submissions/new")

    # ------------------------------------------------------------------ b/c. stalled uploads, one address
    say(f"== b/c. {n_stall} stalled uploads (4 x {TEXT_FIELD_BYTES} bytes of text fields each) from one address")
    base_rss, base_fds = rss_mib(portal_pid), fds(portal_pid)
    t0 = time.monotonic()
    socks, errors = send_stalled(n_stall, ["127.0.0.20"], nginx_port, cookie, csrf)
    say(f"  sent in {time.monotonic() - t0:.1f} s; {len(errors)} connections failed while sending"
        + (f" ({', '.join(sorted(set(errors)))})" if errors else ""))
    time.sleep(2)
    answers = {}
    held = []
    for s in socks:
        a = answer_of(s, 0.01)
        answers[a or "held (no answer)"] = answers.get(a or "held (no answer)", 0) + 1
        if a is None:
            held.append(s)
    during_rss, during_fds = rss_mib(portal_pid), fds(portal_pid)
    n429 = sum(v for k, v in answers.items() if " 429 " in k + " ")
    say(f"  answers: {answers}; errors while sending (nginx refused and closed): {len(errors)}")
    say(f"  portal RSS {base_rss:.1f} MiB before, {during_rss:.1f} MiB with the uploads stalled, fds {base_fds} -> "
        f"{during_fds}")
    check(len(held) <= 20, f"c. at most 20 (limit_conn) uploads from one address were let through: {len(held)}")
    check(n429 + len(errors) >= n_stall - 20,
          f"c. the other {n_stall - len(held)} were refused at once: {n429} with 429, {len(errors)} cut while sending")
    bound = base_rss + 20 * 4 * 4 + 64
    check(during_rss <= bound,
          f"b. the portal's RSS stayed bounded with {n_stall} stalled uploads from one address: "
          f"{during_rss:.1f} MiB (bound {bound:.0f} MiB = before + 20 x 16 MiB + 64 MiB)")
    for s in socks:
        s.close()
    time.sleep(3)
    say(f"  after the client closed them: portal RSS {rss_mib(portal_pid):.1f} MiB, fds {fds(portal_pid)}")

    # ------------------------------------------------------------------ b. stalled uploads, many addresses
    say(f"== b. {n_spread} stalled uploads from {n_spread} addresses (limit_conn cannot help: client_body_timeout must)")
    base_rss, base_fds = rss_mib(portal_pid), fds(portal_pid)
    sources = [f"127.0.1.{i + 1}" for i in range(n_spread)]
    socks, errors = send_stalled(1, sources, nginx_port, cookie, csrf)
    t_sent = time.monotonic()
    time.sleep(2)
    during_rss, during_fds = rss_mib(portal_pid), fds(portal_pid)
    say(f"  {len(socks)} sent and stalled ({len(errors)} failed); portal RSS {base_rss:.1f} MiB before, "
        f"{during_rss:.1f} MiB during ({(during_rss - base_rss) / max(len(socks), 1):.1f} MiB per upload); "
        f"fds {base_fds} -> {during_fds}")
    cut, outcome = [], {}
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    pending = len(socks)
    while pending and time.monotonic() - t_sent < 50:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            a = answer_of(s, 0) or "closed"
            outcome[a] = outcome.get(a, 0) + 1
            cut.append(time.monotonic() - t_sent)
            sel.unregister(s)
            s.close()
            pending -= 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    time.sleep(3)
    after_rss, after_fds = rss_mib(portal_pid), fds(portal_pid)
    say(f"  nginx cut them {min(cut) if cut else 0:.1f}-{max(cut) if cut else 0:.1f} s after the last byte; "
        f"the client saw: {outcome}")
    say(f"  portal RSS {after_rss:.1f} MiB and fds {after_fds} 3 s after the cut")
    check(len(cut) == len(socks) and cut and 25 <= min(cut) and max(cut) <= 40,
          f"b. nginx cut every stalled upload after client_body_timeout (30 s): {len(cut)}/{len(socks)}, "
          f"{min(cut) if cut else 0:.1f}-{max(cut) if cut else 0:.1f} s")
    check(after_fds <= base_fds + 2,
          f"b. the portal closed its side too: fds {base_fds} before, {during_fds} during, {after_fds} after")

    # ------------------------------------------------------------------ c. login flood
    say("== c. login flood: 40 POST /login at once from one address")
    flood = Client(nginx_port, "127.0.0.60")
    token = flood.csrf("/login")
    codes = {}
    nginx_429 = None
    for _ in range(40):
        st, hd, _ = flood.request("POST", "/login",
                                  {"email": "nobody@example.org", "password": "wrong-password", "csrf": token})
        who = "portal" if "x-request-id" in hd else "nginx"
        codes[f"{st} from {who}"] = codes.get(f"{st} from {who}", 0) + 1
        if who == "nginx" and st == 429:
            nginx_429 = hd
    say(f"  answers: {codes}")
    passed = sum(v for k, v in codes.items() if k.endswith("portal"))
    check(codes.get("429 from nginx", 0) >= 25 and 10 <= passed <= 13,
          f"c. limit_req let {passed} through (burst 10 + the rate) and refused {codes.get('429 from nginx', 0)} "
          f"with 429")
    st, _, _ = Client(nginx_port, "127.0.0.60").request("GET", "/login")
    check(st == 200, f"c. GET /login from the flooding address is not limited: HTTP {st}")

    # ------------------------------------------------------------------ c. an IPv6 /64 is one client
    v6 = env.get("PROXY_V6", "").split()
    if len(v6) == 3:
        first, same_64, other_64 = v6
        say(f"== c. sign-in POSTs from IPv6: 15 from {first}, then 5 from {same_64} (same /64), "
            f"5 from {other_64} (another /64)")

        def posts(src, n):
            cl = Client(nginx_port, src)
            token = cl.csrf("/login")
            answers = {}
            for _ in range(n):
                st, hd, _ = cl.request("POST", "/login",
                                       {"email": "nobody6@example.org", "password": "wrong-password", "csrf": token})
                who = "portal" if "x-request-id" in hd else "nginx"
                answers[f"{st} from {who}"] = answers.get(f"{st} from {who}", 0) + 1
            return answers

        def reached(answers):
            return sum(v for k, v in answers.items() if k.endswith("portal"))

        a, b, c = posts(first, 15), posts(same_64, 5), posts(other_64, 5)
        say(f"  answers: {first} {a}; {same_64} {b}; {other_64} {c}")
        check(10 <= reached(a) <= 13 and a.get("429 from nginx", 0) >= 2,
              f"c. limit_req let {reached(a)} of 15 from {first} through (burst 10 + the rate)")
        check(b.get("429 from nginx", 0) >= 3,
              f"c. another address of the same /64 gets no fresh allowance: nginx refused "
              f"{b.get('429 from nginx', 0)} of 5 ({reached(b)} reached the portal)")
        check(reached(c) == 5, f"c. an address in another /64 has its own: {reached(c)} of 5 reached the portal")
    else:
        say("== c. SKIPPED the IPv6 /64 check: IPv6 on lo or the right to add addresses to it (root) is missing")

    # ------------------------------------------------------------------ c. a large upload and download stream
    say(f"== c. a {upload_mib} MiB upload and its download through nginx")
    src_file = os.path.join(WORK, "upload.bin")
    with open(src_file, "wb") as f:
        for _ in range(upload_mib):
            f.write(os.urandom(1 << 20))
    digest = hashlib.sha256(open(src_file, "rb").read()).hexdigest()
    peak_rss = [rss_mib(portal_pid)]
    stop = threading.Event()

    def watch_rss():
        while not stop.is_set():
            peak_rss[0] = max(peak_rss[0], rss_mib(portal_pid))
            time.sleep(0.1)

    rss_thread = threading.Thread(target=watch_rss, daemon=True)
    rss_thread.start()
    csrf = sub.csrf("/submissions/new")
    with TempWatch(nginx_prefix) as up:
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "--interface", "127.0.0.50", "-H", "Expect:", "-H", f"Cookie: {cookie}",
             "-w", "%{http_code} %{time_total} %{size_upload} %{redirect_url}",
             "-F", f"csrf={csrf}", "-F", "action=draft", "-F", "title=proxy", "-F", "description_1=proxy",
             "-F", f"file_1=@{src_file};type=application/octet-stream",
             f"http://127.0.0.1:{nginx_port}/submissions"], capture_output=True, text=True).stdout.split()
    code, secs, sent = out[0], float(out[1]), int(float(out[2]))
    location = out[3] if len(out) > 3 else ""
    say(f"  upload: HTTP {code} in {secs:.1f} s ({sent / secs / 2**20:.0f} MiB/s), portal peak RSS "
        f"{peak_rss[0]:.1f} MiB; nginx: {up.seen('client_body_temp')}")
    check(code == "303", f"c. the {upload_mib} MiB upload through nginx succeeded: HTTP {code}")
    check(up.fds["client_body_temp"] == 0 and up.logged["client_body_temp"] == 0,
          "c. the upload streamed: no nginx worker held a client_body_temp file and nginx logged no buffered "
          "request body (proxy_request_buffering off)")
    path = location.replace(f"http://127.0.0.1:{nginx_port}", "") or "/submissions"
    _, _, page = sub.request("GET", path)
    m = re.search(r'href="(/submissions/[^"/]+/files/[^"]+)"', html.unescape(page.decode()))
    if not check(m is not None, f"c. the submission page ({path}) links the uploaded file"):
        stop.set()
        raise SystemExit(1)
    dl = os.path.join(WORK, "download.bin")
    with TempWatch(nginx_prefix) as down:
        out = subprocess.run(
            ["curl", "-s", "-o", dl, "--interface", "127.0.0.50", "-H", f"Cookie: {cookie}",
             "-w", "%{http_code} %{time_starttransfer} %{time_total} %{size_download}",
             f"http://127.0.0.1:{nginx_port}{m.group(1)}"], capture_output=True, text=True).stdout.split()
    stop.set()
    rss_thread.join()
    got = hashlib.sha256(open(dl, "rb").read()).hexdigest() if os.path.exists(dl) else ""
    say(f"  download: HTTP {out[0]}, first byte after {float(out[1]) * 1000:.0f} ms, {int(out[3]) / 2**20:.0f} MiB "
        f"in {float(out[2]):.1f} s; nginx: {down.seen('proxy_temp')}")
    check(out[0] == "200" and got == digest, "c. the download through nginx is the uploaded file (sha256 equal)")
    check(down.fds["proxy_temp"] == 0 and down.logged["proxy_temp"] == 0,
          "c. the download streamed: no nginx worker held a proxy_temp file and nginx logged no buffered "
          "response (proxy_buffering off)")
    os.remove(src_file)
    os.remove(dl)

    # Positive control: the same detector sees buffering where nginx does buffer. run.sh's test config (not the
    # shipped one) has `location /__buffered/` passing to the portal with request and response buffering on and
    # small in-memory buffers, so both go to temporary files.
    say("== c. positive control: the same detector on /__buffered/ (test config only: buffering on, tiny buffers)")
    ctl_file = os.path.join(WORK, "control.bin")
    with open(ctl_file, "wb") as f:
        f.write(os.urandom(8 << 20))
    with TempWatch(nginx_prefix) as ctl_up:
        # 8 MiB at 4 MiB/s: nginx reads the whole body into its temp file before passing it on; the portal's
        # answer to a POST on /healthz does not matter.
        code = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "--interface", "127.0.0.51", "-H", "Expect:", "--limit-rate", "4M",
             "-w", "%{http_code}", "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{ctl_file}",
             f"http://127.0.0.1:{nginx_port}/__buffered/healthz"], capture_output=True, text=True).stdout
    say(f"  buffered upload: HTTP {code}; nginx: {ctl_up.seen('client_body_temp')}")
    check(ctl_up.fds["client_body_temp"] >= 1 and ctl_up.logged["client_body_temp"] >= 1,
          "c. control: a request body nginx buffers shows as an open client_body_temp file and a warning")
    with TempWatch(nginx_prefix) as ctl_down:
        # The portal sends faster than curl reads (8 MiB/s for 3 s), so nginx spills the response to proxy_temp.
        out = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "--interface", "127.0.0.51", "-H", f"Cookie: {cookie}",
             "--limit-rate", "8M", "--max-time", "3", "-w", "%{http_code} %{size_download}",
             f"http://127.0.0.1:{nginx_port}/__buffered{m.group(1)}"], capture_output=True, text=True).stdout.split()
    say(f"  buffered download: HTTP {out[0]}, {int(out[1]) / 2**20:.0f} MiB read before curl stopped; "
        f"nginx: {ctl_down.seen('proxy_temp')}")
    check(out[0] == "200" and ctl_down.fds["proxy_temp"] >= 1 and ctl_down.logged["proxy_temp"] >= 1,
          "c. control: a response nginx buffers shows as an open proxy_temp file and a warning")
    os.remove(ctl_file)

    # ------------------------------------------------------------------ d. the portal sees the client's address
    say("== d. the portal sees the client's address (ip_header = X-Real-IP), and a forged X-Real-IP is overwritten")
    a = Client(nginx_port, "127.0.0.2")
    seen = []
    for _ in range(5):
        seen.append(a.login(vic_email, "not-the-password")[0])
    st, hd, _ = a.login(vic_email, vic_pw)
    say(f"  from 127.0.0.2: five wrong passwords -> {seen}; the right one next -> {st}"
        f" ({'the portal' if 'x-request-id' in hd else 'nginx'} answered)")
    check(seen == [401] * 5 and st == 429 and "x-request-id" in hd,
          "d. the portal throttled the account from 127.0.0.2 after 5 failures (429 from the portal, not nginx)")
    st, _, _ = Client(nginx_port, "127.0.0.3").login(vic_email, vic_pw)
    check(st == 303, f"d. the same account from 127.0.0.3 signs in (another address, not throttled): HTTP {st}")
    st, _, _ = Client(nginx_port, "127.0.0.4").login(vic_email, vic_pw, {"X-Real-IP": "127.0.0.2"})
    check(st == 303, f"d. from 127.0.0.4 with a forged 'X-Real-IP: 127.0.0.2' it signs in too (nginx set the "
                     f"header to the real address): HTTP {st}")
    import sqlite3
    db = sqlite3.connect(f"file:{env['PROXY_DB']}?mode=ro", uri=True)
    rows = db.execute("SELECT client_addr, outcome, reason FROM audit_entries WHERE action = 'auth.login' "
                      "ORDER BY seq").fetchall()
    db.close()
    by_addr = {}
    for addr, outcome, reason in rows:
        k = f"{addr} {outcome}" + (f" ({reason})" if reason else "")
        by_addr[k] = by_addr.get(k, 0) + 1
    say(f"  audit log, auth.login entries by client address: {by_addr}")
    addrs = {r[0] for r in rows}
    check({"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.50"} <= addrs and "127.0.0.1" not in addrs,
          "d. the audit log names each client's own address (127.0.0.2/.3/.4/.50), never nginx's 127.0.0.1")

    # ------------------------------------------------------------------ e. nginx's own answers
    say("== e. the answers nginx makes itself carry the portal's security headers, as a page or as JSON")
    _, portal_hd, _ = Client(nginx_port, "127.0.0.70").request("GET", "/login")
    check("x-request-id" in portal_hd, "e. control: GET /login through nginx is the portal's answer")
    security = ["content-security-policy", "x-content-type-options", "referrer-policy", "cross-origin-opener-policy",
                "cross-origin-resource-policy", "x-frame-options", "permissions-policy", "cache-control", "pragma"]
    check(all(portal_hd.get(h) for h in security), f"e. control: the portal's page has all of {security}")

    def same_headers(what, hd):
        differ = {h: hd.get(h) for h in security if hd.get(h) != portal_hd.get(h)}
        check(not differ and "x-request-id" not in hd,
              f"e. {what}: nginx's answer has the portal's security headers with the same values"
              + (f" (differ: {differ})" if differ else ""))

    if nginx_429 is None:
        check(False, "e. the login flood (c) gave no 429 from nginx to look at")
    else:
        same_headers("the login flood's 429", nginx_429)
        check(nginx_429.get("retry-after") == "10", f"e. nginx's 429 says when to try again: "
                                                    f"Retry-After {nginx_429.get('retry-after')}")
    big = Client(nginx_port, "127.0.0.71")
    st, hd, body = big.request("POST", "/submissions/new", headers={"Content-Length": str(5 << 30)}, timeout=10)
    say(f"  a POST declaring 5 GiB: HTTP {st}, {hd.get('content-type')}")
    check(st == 413 and hd.get("content-type", "").startswith("text/html") and b"Nothing was stored" in body,
          "e. a body over client_max_body_size: 413 from nginx, a page saying nothing was stored")
    same_headers("the 413 page", hd)
    st, hd, body = big.request("POST", "/submissions/new", headers={"Content-Length": str(5 << 30),
                                                                   "Accept": "application/json"}, timeout=10)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    check(st == 413 and hd.get("content-type") == "application/json" and isinstance(answer, dict)
          and answer.get("status") == 413 and answer.get("error") == "Too large",
          f"e. the same asked for as JSON: 413 with {answer}")
    same_headers("the 413 as JSON", hd)
    down_port = int(env["PROXY_NGINX_DOWN_PORT"])
    st, hd, body = Client(down_port, "127.0.0.72").request("GET", "/dashboard", headers={"Accept": "text/html"})
    check(st == 502 and hd.get("content-type", "").startswith("text/html") and b"not answering" in body,
          f"e. the portal down (an nginx server of the same snippets whose upstream is closed): 502 page, HTTP {st}")
    same_headers("the 502 page", hd)
    st, hd, body = Client(down_port, "127.0.0.72").request("GET", "/officer/disseminations.csv")
    check(st == 502 and hd.get("content-type", "").startswith("text/html"),
          f"e. a page answered for an address ending .csv is still text/html (not mime.types' text/csv): "
          f"{hd.get('content-type')}")
    st, hd, body = Client(down_port, "127.0.0.72").request("GET", "/healthz")
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    check(st == 502 and isinstance(answer, dict) and answer.get("status") == 502,
          f"e. /healthz with the portal down: 502 as JSON, for a monitor: {answer}")
    same_headers("the 502 as JSON", hd)
    # The error log writes a refused request's line: at addresses that carry a token (a reset, invitation or setup
    # link) it must not. A flood of one invitation link is refused (429) with no line naming it, while the login
    # flood (c) was logged (so the check can fail).
    token = "Tok" + "%032x" % random.getrandbits(128)
    with open(os.path.join(nginx_prefix, "error.log"), "rb") as f:
        logged_before = f.read()
    flood = Client(nginx_port, "127.0.0.73")
    refused = 0
    for _ in range(30):
        st, _h, _b = flood.request("POST", f"/invitations/{token}", {"display_name": "x"}, timeout=10)
        refused += st == 429
    with open(os.path.join(nginx_prefix, "error.log"), "rb") as f:
        logged = f.read()
    say(f"  30 POSTs of one invitation link: {refused} refused with 429")
    check(refused > 0 and b"limiting requests" in logged_before and token.encode() not in logged,
          f"e. a refused invitation link's token is not in nginx's error log ({refused} refused; login's refusals "
          f"{'were' if b'limiting requests' in logged_before else 'were NOT'} logged)")
    # nginx logs a body it refuses as too large with the request line: at a token address, with or without more
    # path after the token, it is not logged, while at another address it is (so the check can fail).
    huge = Client(nginx_port, "127.0.0.74")
    other = "/no-token-" + "%016x" % random.getrandbits(64)
    for path in (f"/invitations/{token}", f"/invitations/{token}/x", f"/password/reset/{token}/more", other):
        huge.request("POST", path, headers={"Content-Length": str(5 << 30)}, timeout=10)
    with open(os.path.join(nginx_prefix, "error.log"), "rb") as f:
        logged = f.read()
    check(other.encode() in logged and token.encode() not in logged,
          f"e. a body refused as too large at a token address (with more path after it too) is not in nginx's "
          f"error log, at another address it is ({'logged' if other.encode() in logged else 'NOT logged'})")

    # ------------------------------------------------------------------ contrast: the same attack at the portal
    say("== contrast (measured, not asserted): the same slowloris straight at the portal")
    r = slowloris("direct", portal_port, portal_port, portal_pid, n_slow,
                  int(env.get("PCII_PROXY_DIRECT_SECONDS", "40")))
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        st, _ = healthz(portal_port)
        if st == 200:
            break
        time.sleep(0.5)
    say(f"  the portal answered /healthz again {time.monotonic() - t0:.1f} s after the attack stopped "
        f"(HTTP {st}); fds {fds(portal_pid)}")
    status, _ = healthz(nginx_port)
    check(status == 200, f"the portal still answers through nginx at the end: HTTP {status}")

    if FAILED:
        say(f"{len(FAILED)} check(s) FAILED:")
        for f in FAILED:
            say(f"  - {f}")
        sys.exit(1)
    say("all checks passed")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "slowloris-worker":
        _, _, port, src, n, seconds, statfile = sys.argv
        slowloris_worker(int(port), src, int(n), float(seconds), statfile)
    else:
        main()
