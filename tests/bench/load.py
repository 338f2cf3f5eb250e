"""Load and measurement tools: wrk (manifest GET), getload.py (blob GET),
ab (HEAD), http.client fetches (first body byte, concurrent fetches, digest
checks), skopeo (whole pulls), a small push client (monolithic and chunked
uploads), idle connections, slow readers and an RSS sampler.

Every call is bounded in time; a tool that fails or times out raises
MeasureError with the reason, which the bench records for that figure and
goes on.
"""

import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter

import upstream
import systems

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(HERE, "wrk_report.lua")
GETLOAD = os.path.join(HERE, "getload.py")


class MeasureError(Exception):
    """A measurement did not produce a figure (tool error, timeout, bad answer)."""


def _run(cmd, timeout, cpus=None):
    try:
        with systems.on(cpus):
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MeasureError("%s: no result within %ds" % (cmd[0], timeout))
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


# ------------------------------------------------------------------ wrk, ab

def wrk(url, conns, seconds, body_file, headers=(), timeout_s=10, script=WRK_SCRIPT):
    """GET load: {"rps", "p50_ms", "p99_ms", "requests", "bytes", "errors",
    "error_kinds"}. One wrk thread on the client CPUs (the server has its own
    CPU). Every answer must be a 200 with body_file's bytes as its body
    (wrk_report.lua counts the others: wrk alone takes a 302 for a success);
    errors is the number of requests that failed in any way. Another script
    (wrk_paths.lua) takes its own file in place of body_file and prints the
    same summary line."""
    cmd = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--latency",
           "--timeout", "%ds" % timeout_s, "-s", script]
    for h in headers:
        cmd += ["-H", h]
    rc, out, err = _run(cmd + [url, "--", body_file], seconds + timeout_s + 30,
                        systems.CLIENT_CPUS)
    line = next((l for l in out.splitlines() if l.startswith("WRKJSON ")), None)
    if rc != 0 or line is None:
        raise MeasureError("wrk failed (%d): %s" % (rc, (err or out).strip()[-300:]))
    r = json.loads(line[len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    kinds = {k: n for k, n in r["errors"].items() if n}
    if r["errors"]["bad_answer"]:
        kinds["bad_answer_example"] = r["bad_example"]
    if r["requests"] == 0 and not kinds:
        kinds["no_request_completed"] = 1
    return {"rps": r["requests"] / secs, "p50_ms": r["p50_us"] / 1000.0,
            "p99_ms": r["p99_us"] / 1000.0, "requests": r["requests"], "bytes": r["bytes"],
            "seconds": secs,
            "errors": sum(n for k, n in kinds.items() if isinstance(n, int)),
            "error_kinds": kinds}


def get_load(port, path, conns, seconds, size, tls=False):
    """GET load for big bodies with getload.py: one process per client CPU,
    each pinned to its CPU, the connections shared out. Only complete 200s
    of `size` bytes count: {"mb_s", "rps", "p50_ms", "p99_ms", "requests",
    "errors", "error_kinds"}; MB/s = correct body bytes / 10^6 / seconds."""
    cpus = sorted(systems.CLIENT_CPUS) if systems.CLIENT_CPUS else [None]
    cpus = cpus[:conns]
    procs = []
    for i, cpu in enumerate(cpus):
        n = conns // len(cpus) + (i < conns % len(cpus))
        with systems.on({cpu} if cpu is not None else None):
            procs.append(subprocess.Popen(
                [sys.executable, GETLOAD, "127.0.0.1", str(port), path, str(n), str(seconds),
                 str(size)] + (["tls"] if tls else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL))
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise MeasureError("getload: no result within %ds" % (seconds + 60))
        if p.returncode != 0:
            raise MeasureError("getload failed (%d): %s" % (p.returncode, err.decode()[-300:]))
        results.append(json.loads(out))
    ok = sum(r["ok"] for r in results)
    secs = max(r["duration_s"] for r in results)
    lat = sorted(t for r in results for t in r["latencies_s"])
    kinds = Counter()
    for r in results:
        kinds.update(r["bad"])
    if not ok and not kinds:
        kinds["no_request_completed"] = 1

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else None

    return {"mb_s": ok * size / secs / 1e6, "rps": ok / secs, "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "requests": ok + sum(kinds.values()),
            "errors": sum(kinds.values()), "error_kinds": dict(kinds),
            "processes": len(procs)}


def ab_head(url, conns, seconds, headers=()):
    """HEAD load with ab -i -k: {"rps", "p50_ms", "p99_ms", "requests", "errors"}.
    ab speaks HTTP/1.0 with Connection: Keep-Alive: a server that keeps the
    connection open without saying `Connection: keep-alive` stalls it (the
    socket timeout, -s, then ends the run with an error)."""
    with tempfile.NamedTemporaryFile(prefix="ab-", suffix=".csv") as csv:
        # -t first: it sets -n to 50000, which the -n after it overrides.
        cmd = ["ab", "-q", "-i", "-k", "-c", str(conns), "-t", str(seconds),
               "-n", str(seconds * 150000), "-s", "5", "-e", csv.name]
        for h in headers:
            cmd += ["-H", h]
        rc, out, err = _run(cmd + [url], seconds + 40, systems.CLIENT_CPUS)
        if rc != 0:
            raise MeasureError("ab failed (%d): %s" % (rc, (err or out).strip()[-200:]))
        pct = {}
        for line in open(csv.name).read().splitlines()[1:]:
            p, ms = line.split(",")
            pct[int(p)] = float(ms)

    def field(label, default=None):
        for l in out.splitlines():
            if l.startswith(label):
                return float(l.split(":", 1)[1].split()[0])
        return default

    done = int(field("Complete requests", 0))
    kinds = {k: int(field(k + ":", 0)) for k in ("Failed requests", "Non-2xx responses")}
    kinds = {k: n for k, n in kinds.items() if n}     # ab counts 3xx as non-2xx too
    if not done:
        raise MeasureError("ab: no request completed")
    return {"rps": field("Requests per second"), "p50_ms": pct.get(50), "p99_ms": pct.get(99),
            "requests": done, "errors": sum(kinds.values()), "error_kinds": kinds}


def http10_keepalive(port, path, headers=()):
    """Does the server confirm an HTTP/1.0 keep-alive request (what ab -k
    needs)? Returns the response's Connection header value, or None."""
    req = "HEAD %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: Keep-Alive\r\n" % path
    req += "".join("%s\r\n" % h for h in headers) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(req.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                c = s.recv(4096)
            except socket.timeout:
                break
            if not c:
                break
            data += c
    for line in data.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "connection":
            return v.strip()
    return None


# ------------------------------------------------------------------ single fetches

def fetch(url, timeout=300):
    """GET url on a fresh connection, as tests/integration/test_pull_through.py
    does: the clock starts before the request is sent, the first byte is the
    first byte of the BODY (read(1) after the head), and the body is hashed
    as it streams. {"status", "ttfb_s", "total_s", "size", "digest", "error"};
    error is None, or why the body is not whole (short, a socket error)."""
    u = urllib.parse.urlsplit(url)
    h = hashlib.sha256()
    out = {"status": None, "ttfb_s": None, "size": 0, "error": None}
    t0 = time.monotonic()
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        c.request("GET", u.path)
        r = c.getresponse()
        out["status"] = r.status
        data = r.read(1)
        out["ttfb_s"] = time.monotonic() - t0
        while data:
            h.update(data)
            out["size"] += len(data)
            data = r.read(1 << 20)
        length = r.getheader("content-length")
        if length is not None and length.isdigit() and int(length) != out["size"]:
            out["error"] = "short body: %d of %s bytes" % (out["size"], length)
    except (http.client.HTTPException, OSError) as e:
        out["error"] = "%s: %s" % (e.__class__.__name__, e)
    finally:
        c.close()
    out["total_s"] = time.monotonic() - t0
    out["digest"] = "sha256:" + h.hexdigest()
    return out


def fetch_parallel(url, n, timeout=300):
    """n clients at once on url: (wall seconds, [fetch results])."""
    results = [None] * n

    def one(i):
        results[i] = fetch(url, timeout)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 20)
    return time.monotonic() - t0, results


def check_blob(url, blob, timeout=300):
    """GET url and check it is blob, byte for byte (status, length, sha256).
    Raises MeasureError; returns the fetch result."""
    r = fetch(url, timeout)
    if r["error"] or (r["status"], r["size"], r["digest"]) != (200, blob.size, blob.digest):
        raise MeasureError("GET %s: status %s, %d of %d bytes, %s (want %s)%s" % (
            urllib.parse.urlsplit(url).path, r["status"], r["size"], blob.size, r["digest"],
            blob.digest, ", " + r["error"] if r["error"] else ""))
    return r


# ------------------------------------------------------------------ skopeo

def skopeo_pull(tmp, hostport, repo, tag, timeout=300):
    """skopeo copy docker://hostport/repo:tag dir:<tmp> (then removed);
    returns seconds."""
    dest = tempfile.mkdtemp(prefix="pull-", dir=tmp)
    t0 = time.monotonic()
    try:
        with systems.on(systems.CLIENT_CPUS):
            upstream.skopeo_copy(os.path.join(tmp, "skopeo"),
                                 "docker://%s/%s:%s" % (hostport, repo, tag), "dir:" + dest,
                                 "--src-tls-verify=false", timeout=timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        raise MeasureError("skopeo pull %s:%s: %s" % (repo, tag, str(e).strip()[-300:]))
    finally:
        elapsed = time.monotonic() - t0
        subprocess.run(["rm", "-rf", dest])
    return elapsed


# ------------------------------------------------------------------ push client

class Registry:
    """A minimal OCI push client on one keep-alive connection."""

    def __init__(self, hostport, timeout=300, context=None):
        host, port = hostport.rsplit(":", 1)
        if context:
            self.conn = http.client.HTTPSConnection(host, int(port), timeout=timeout,
                                                    blocksize=1 << 20, context=context)
        else:
            self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout,
                                                   blocksize=1 << 20)

    def close(self):
        self.conn.close()

    def req(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def _expect(self, want, what, resp):
        st, h, data = resp
        if st != want:
            raise MeasureError("%s: %d %s" % (what, st, data[:200].decode("utf-8", "replace")))
        return h

    @staticmethod
    def _path(location, digest=None):
        u = urllib.parse.urlsplit(location)
        q = u.query
        if digest:
            q = (q + "&" if q else "") + "digest=" + urllib.parse.quote(digest)
        return u.path + ("?" + q if q else "")

    def _start(self, repo):
        h = self._expect(202, "POST upload", self.req("POST", "/v2/%s/blobs/uploads/" % repo))
        return h["location"]

    def has_blob(self, repo, digest):
        return self.req("HEAD", "/v2/%s/blobs/%s" % (repo, digest))[0] == 200

    def upload_single_post(self, repo, path, digest):
        """Monolithic in one request: POST ?digest= with the body."""
        with open(path, "rb") as f:
            self._expect(201, "POST ?digest=", self.req(
                "POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, urllib.parse.quote(digest)),
                f, {"Content-Type": "application/octet-stream",
                    "Content-Length": str(os.path.getsize(path))}))

    def upload_post_put(self, repo, path, digest):
        """Monolithic in two requests: POST, then PUT ?digest= with the body."""
        loc = self._start(repo)
        with open(path, "rb") as f:
            self._expect(201, "PUT ?digest=", self.req(
                "PUT", self._path(loc, digest), f,
                {"Content-Type": "application/octet-stream",
                 "Content-Length": str(os.path.getsize(path))}))

    def upload_chunked(self, repo, path, digest, chunk):
        """POST, PATCH each chunk with Content-Range, PUT ?digest=."""
        loc = self._start(repo)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            off = 0
            while off < size:
                data = f.read(chunk)
                h = self._expect(202, "PATCH", self.req(
                    "PATCH", self._path(loc), data,
                    {"Content-Type": "application/octet-stream",
                     "Content-Range": "%d-%d" % (off, off + len(data) - 1),
                     "Content-Length": str(len(data))}))
                loc = h["location"]
                off += len(data)
        self._expect(201, "PUT ?digest=", self.req("PUT", self._path(loc, digest), b"",
                                                   {"Content-Length": "0"}))

    def put_manifest(self, repo, ref, data, media_type):
        self._expect(201, "PUT manifest", self.req(
            "PUT", "/v2/%s/manifests/%s" % (repo, ref), data, {"Content-Type": media_type}))


def push_fixture(hostport, fx, context=None):
    """Push a fixtures.Fixture (blobs by POST + PUT, which every registry
    takes, then the manifest by tag)."""
    r = Registry(hostport, context=context)
    try:
        for b in fx.blobs:
            if not r.has_blob(fx.repo, b.digest):
                r.upload_post_put(fx.repo, b.path, b.digest)
        r.put_manifest(fx.repo, fx.tag, fx.manifest, fx.media_type)
    finally:
        r.close()


# ------------------------------------------------------------------ memory

class RssSampler:
    """Samples fn() (KiB) every interval seconds in a thread; .max, .samples."""

    def __init__(self, fn, interval=0.1):
        self.fn = fn
        self.interval = interval
        self.max = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.max = max(self.max, self.fn())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(5)
        self.max = max(self.max, self.fn())


def idle_connections(server, n, settle=1.0, context=None):
    """Open n keep-alive connections to server (over TLS with an ssl
    context), one GET /v2/ on each, then leave them idle. Returns {"ok",
    "rss_before_kib", "rss_with_kib"}."""
    before = server.rss_kib()
    socks = []
    ok = 0
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if context:
                s = context.wrap_socket(s, server_hostname="127.0.0.1")
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            socks.append(s)
        for s in socks:
            try:
                if s.recv(4096).startswith(b"HTTP/1.1 200"):
                    ok += 1
            except OSError:
                pass
        time.sleep(settle)
        with_conns = server.rss_kib()
        still_open = sum(1 for s in socks if _still_open(s))
    finally:
        for s in socks:
            s.close()
    return {"ok": ok, "still_open": still_open, "rss_before_kib": before,
            "rss_with_kib": with_conns}


def _still_open(s):
    """True if the peer has not closed s (non-blocking peek)."""
    if isinstance(s, ssl.SSLSocket):   # no MSG_PEEK on TLS: a read that would block
        try:
            s.setblocking(False)
            return s.recv(1) != b""
        except (BlockingIOError, ssl.SSLWantReadError):
            return True
        except OSError:
            return False
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def slow_readers(port, path, n, rate, seconds):
    """n clients GET path and read it at `rate` bytes/s each for `seconds`
    (small receive buffers, so the kernel does not soak up the body), then
    hang up. Returns [(status line, bytes read)]."""
    out = [None] * n
    deadline = time.monotonic() + seconds

    def one(i):
        got, status = 0, b""
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
            t0 = time.monotonic()
            while time.monotonic() < deadline:
                data = s.recv(16 << 10)
                if not data:
                    break
                if not status:
                    status = data.split(b"\r\n", 1)[0]
                got += len(data)
                ahead = got / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(min(ahead, max(0.0, deadline - time.monotonic())))
            s.close()
        except OSError as e:
            status = status or ("error: %s" % e).encode()
        out[i] = (status.decode("latin-1"), got)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return out
