"""Hardening of the store's paths, against the real binary: defects a client
can trigger with ordinary requests, each checked the way it showed.

- Upload sessions evicted from the in-memory table were re-hashed in full on
  the loop whenever they were touched again (every status request, every body
  piece): the bytes a request makes wharf read are counted with
  /proc/<pid>/io's rchar, which cannot flake the way a timing can.
- The closing PUT fsynced the upload's bytes on the loop, and a manifest PUT
  its files and directories; so did a mount, a blob or manifest DELETE and a
  pull-through fill (the tee's publish, a synced manifest): strace -f shows
  which thread makes each fsync, rename, link and unlink.
- A blob DELETE of a manifest's digest left a tag pointing at nothing.
- POST .../blobs/uploads/ created a repository for any name; the catalog
  walked the whole root on the loop for every request.
- Query parameters were found with strstr (matching other parameters'
  values) and over-long values were silently ignored; a Content-Range near
  INT64_MAX overflowed (UBSan aborts the sanitizer build).

Run: WHARF_BIN=../../build/wharf python3 -m unittest -v test_hardening_store
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import upstream as up  # noqa: E402
from harness import Wharf  # noqa: E402
from test_durability import children, stop_traced, traced_calls  # noqa: E402
from test_oci_conformance import (Client, error_codes, sha256,  # noqa: E402
                                  split_location)

UPLOADS_OPEN_MAX = 256  # WH_UPLOADS_OPEN_MAX in include/wharf/store/store.h
MIB = 1 << 20
SANITIZED = os.environ.get("WHARF_SANITIZE") == "1"


def rchar(pid):
    """Bytes the process has passed through read(2)-like calls (files and sockets)."""
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/%d/io" % pid)


def pieces(total, seed, piece=MIB):
    """Deterministic bytes, piece by piece."""
    h = hashlib.sha256(b"seed %d" % seed).digest()
    block = h * (piece // len(h))
    sent = 0
    while sent < total:
        n = min(piece, total - sent)
        yield block[:n]
        sent += n


class Session:
    """One upload session driven over a kept-alive connection."""

    def __init__(self, t, w, repo):
        self.t, self.w, self.repo = t, w, repo
        self.hash = hashlib.sha256()
        self.size = 0
        st, h, b = w.request("POST", "/v2/%s/blobs/uploads/" % repo, b"")
        t.assertEqual(st, 202, b)
        self.loc = urllib.parse.urlsplit(h["location"]).path

    def patch(self, size, seed=1):
        c = self.w.conn(timeout=120)
        try:
            body = pieces(size, seed)
            hdrs = {"Content-Length": str(size),
                    "Content-Range": "%d-%d" % (self.size, self.size + size - 1),
                    "Content-Type": "application/octet-stream"}

            def feed():
                for p in body:
                    self.hash.update(p)
                    yield p
            c.request("PATCH", self.loc, body=feed(), headers=hdrs)
            r = c.getresponse()
            data = r.read()
            self.t.assertEqual(r.status, 202, data)
            self.size += size
            self.t.assertEqual(r.getheader("Range"), "0-%d" % (self.size - 1))
        finally:
            c.close()

    def digest(self):
        return "sha256:" + self.hash.hexdigest()

    def status(self):
        st, h, b = self.w.request("GET", self.loc)
        return st, h

    def finish(self, tail=b""):
        self.hash.update(tail)
        self.size += len(tail)
        return self.w.request("PUT", self.loc + "?digest=" + self.digest(), tail,
                              {"Content-Type": "application/octet-stream"}, timeout=300)


def post_sessions(t, w, repo, n):
    """n upload sessions on one kept-alive connection (they push older ones
    out of the in-memory table)."""
    c = w.conn()
    try:
        for _ in range(n):
            c.request("POST", "/v2/%s/blobs/uploads/" % repo, body=b"")
            r = c.getresponse()
            r.read()
            t.assertEqual(r.status, 202)
    finally:
        c.close()


class LatencyProbe:
    """GET /v2/ in a loop on its own connection; records each latency."""

    def __init__(self, w):
        self.w = w
        self.lat = []
        self.stop_flag = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)

    def run(self):
        c = self.w.conn(timeout=30)
        try:
            while not self.stop_flag.is_set():
                t0 = time.monotonic()
                c.request("GET", "/v2/")
                r = c.getresponse()
                r.read()
                self.lat.append(time.monotonic() - t0)
                time.sleep(0.002)
        finally:
            c.close()

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.th.join(30)

    @property
    def worst(self):
        return max(self.lat) if self.lat else 0.0


# ---------------------------------------------------------------------------
# 1. Upload sessions: the hash state stays with the session
# ---------------------------------------------------------------------------

class TestUploadHashState(unittest.TestCase):
    def setUp(self):
        self.w = Wharf().start()

    def tearDown(self):
        if self.w.proc:
            self.assertIsNone(self.w.proc.poll(), "wharf exited; log:\n" + self.w.log()[-4000:])
        self.w.stop()
        self.w.cleanup()

    def restart(self):
        self.w.kill9()
        self.w.start()

    def check_blob(self, repo, s):
        st, h, b = self.w.request("GET", "/v2/%s/blobs/%s" % (repo, s.digest()))
        self.assertEqual(st, 200)
        self.assertEqual(len(b), s.size)
        self.assertEqual(sha256(b), s.digest())

    def test_evicted_session_is_not_read_again(self):
        big = 64 * MIB
        s = Session(self, self.w, "evict/big")
        s.patch(big)
        post_sessions(self, self.w, "evict/other", UPLOADS_OPEN_MAX + 44)
        pid = self.w.proc.pid

        r0, t0 = rchar(pid), time.monotonic()
        st, h = s.status()
        dt, read = time.monotonic() - t0, rchar(pid) - r0
        self.assertEqual(st, 204)
        self.assertEqual(h["range"], "0-%d" % (big - 1))
        print("\n  status of an evicted %d MiB session: %.1f ms, %d bytes read"
              % (big // MIB, dt * 1000, read), file=sys.stderr)
        self.assertLess(read, MIB, "the status request re-read the session's bytes")

        # A chunk and the closing PUT, each after another round of evictions.
        post_sessions(self, self.w, "evict/other", UPLOADS_OPEN_MAX + 44)
        r0 = rchar(pid)
        s.patch(MIB, seed=2)
        self.assertLess(rchar(pid) - r0, 2 * MIB, "the PATCH re-read the session's bytes")
        post_sessions(self, self.w, "evict/other", UPLOADS_OPEN_MAX + 44)
        r0, t0 = rchar(pid), time.monotonic()
        st, h, b = s.finish(b"tail" * 256)
        dt, read = time.monotonic() - t0, rchar(pid) - r0
        self.assertEqual(st, 201, b)
        print("  closing PUT of the evicted session: %.1f ms, %d bytes read"
              % (dt * 1000, read), file=sys.stderr)
        self.assertLess(read, MIB, "the closing PUT re-read the session's bytes")
        self.assertEqual(h["docker-content-digest"], s.digest())
        self.check_blob("evict/big", s)

    def test_interleaved_uploads_beyond_the_table(self):
        """More sessions receiving bodies at once than the table holds: each
        body piece used to get its session again, evicting another one, whose
        next piece then re-hashed everything it had so far."""
        n, size, piece = UPLOADS_OPEN_MAX + 4, 512 * 1024, 64 * 1024
        sessions = [Session(self, self.w, "many/s%d" % (i % 7)) for i in range(n)]
        socks = []
        pid = self.w.proc.pid
        r0, t0 = rchar(pid), time.monotonic()
        try:
            for s in sessions:
                sk = socket.create_connection(("127.0.0.1", self.w.port), timeout=60)
                sk.sendall(("PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                            "Content-Type: application/octet-stream\r\n\r\n"
                            % (s.loc, size)).encode())
                socks.append(sk)
            data = [b"%d " % i * (piece // 4) for i in range(n)]
            for off in range(0, size, piece):
                for i, sk in enumerate(socks):
                    chunk = (data[i] * 2)[:piece]
                    sk.sendall(chunk)
                    sessions[i].hash.update(chunk)
            for i, sk in enumerate(socks):
                resp = b""
                while b"\r\n\r\n" not in resp:
                    got = sk.recv(4096)
                    if not got:
                        break
                    resp += got
                self.assertTrue(resp.startswith(b"HTTP/1.1 202"), resp[:200])
                sessions[i].size = size
        finally:
            for sk in socks:
                sk.close()
        dt, read = time.monotonic() - t0, rchar(pid) - r0
        total = n * size
        print("\n  %d interleaved uploads of %d KiB: %.2f s, %d MiB read for %d MiB sent"
              % (n, size // 1024, dt, read // MIB, total // MIB), file=sys.stderr)
        self.assertLess(read, total + total // 4 + 4 * MIB,
                        "sessions were read again while their bodies arrived")
        for i in (0, 1, n // 2, n - 1):
            st, h, b = sessions[i].finish()
            self.assertEqual(st, 201, b)

    def test_restart_mid_upload(self):
        s = Session(self, self.w, "restart/plain")
        s.patch(8 * MIB)
        self.restart()
        st, h = s.status()
        self.assertEqual((st, h["range"]), (204, "0-%d" % (8 * MIB - 1)))
        s.patch(MIB, seed=3)
        st, h, b = s.finish(b"end")
        self.assertEqual(st, 201, b)
        self.check_blob("restart/plain", s)

    def test_restart_after_eviction_mid_upload(self):
        """The state saved at an eviction covers fewer bytes than the file
        holds after more chunks and a crash: the rest is hashed at the end."""
        s = Session(self, self.w, "restart/evicted")
        s.patch(4 * MIB)
        post_sessions(self, self.w, "restart/other", UPLOADS_OPEN_MAX + 10)
        s.patch(4 * MIB, seed=4)
        self.restart()
        st, h, b = s.finish(b"end")
        self.assertEqual(st, 201, b)
        self.check_blob("restart/evicted", s)
        # The clean stop saves every session's state: nothing to catch up.
        s2 = Session(self, self.w, "restart/clean")
        s2.patch(2 * MIB)
        self.w.stop()
        self.w.start()
        pid = self.w.proc.pid
        r0 = rchar(pid)
        st, h, b = s2.finish()
        self.assertEqual(st, 201, b)
        self.assertLess(rchar(pid) - r0, MIB)
        self.check_blob("restart/clean", s2)

    def finish_while_probing(self, s, what, size):
        """The closing PUT of s, while GET /v2/ is timed over and over: it
        must succeed, and no GET may wait as long as half the PUT (the work
        it does, `what`, is off the loop)."""
        with LatencyProbe(self.w) as probe:
            time.sleep(0.05)
            t0 = time.monotonic()
            st, h, b = s.finish(b"end")
            put = time.monotonic() - t0
            time.sleep(0.05)
        self.assertEqual(st, 201, b)
        print("\n  closing PUT that %s %d MiB: %.0f ms; worst GET /v2/ meanwhile: %.1f ms"
              % (what, size // MIB, put * 1000, probe.worst * 1000), file=sys.stderr)
        self.assertGreater(len(probe.lat), 5)
        self.assertLess(probe.worst, max(0.05, put / 2),
                        "GET /v2/ waited while the PUT %s its bytes" % what)

    def test_catch_up_after_a_crash_does_not_stall_others(self):
        """No saved state after SIGKILL: the bytes are hashed at the closing
        PUT, in the thread pool; other clients are served meanwhile."""
        size = 128 * MIB if not SANITIZED else 64 * MIB
        s = Session(self, self.w, "crash/big")
        s.patch(size)
        self.restart()
        self.finish_while_probing(s, "hashes", size)
        st, h, b = self.w.request("HEAD", "/v2/crash/big/blobs/" + s.digest())
        self.assertEqual((st, int(h["content-length"])), (200, s.size))

    def test_finish_fsync_does_not_stall_others(self):
        """The closing PUT fsyncs the upload's bytes (the disk writes what
        the page cache still holds: here a few hundred MiB, in the order of
        100 ms; gigabytes take seconds): in the thread pool, while the loop
        serves other clients. It ran on the loop, and GET /v2/ waited as
        long as the PUT (TestFsyncOffTheLoop shows which thread does it)."""
        size = 256 * MIB if not SANITIZED else 64 * MIB
        s = Session(self, self.w, "fsync/big")
        s.patch(size)
        self.finish_while_probing(s, "fsyncs", size)
        self.check_blob("fsync/big", s)

    def test_request_gone_during_catch_up(self):
        """The request goes away (its connection cut by a shutdown) while the
        bytes are hashed in the thread pool: the job ends on its own, the
        session stays whole and caught up, and the next PUT finishes it
        without reading anything."""
        self.w.stop()
        self.w.cleanup()
        self.w = Wharf({"http": {"wharf": {"shutdownTimeout": "0s"}}}).start()
        size = 128 * MIB if not SANITIZED else 64 * MIB
        s = Session(self, self.w, "crash/gone")
        s.patch(size)
        self.restart()
        sk = socket.create_connection(("127.0.0.1", self.w.port), timeout=10)
        try:
            sk.sendall(("PUT %s?digest=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                        % (s.loc, s.digest())).encode())
            time.sleep(0.02)
            self.assertEqual(self.w.stop(), 0)
        finally:
            sk.close()
        gone = any(r.get("message") == "request not completed" and r.get("method") == "PUT"
                   for r in self.w.log_records())
        print("\n  shutdown during the catch-up: %s" % ("the PUT was cut" if gone else
              "the PUT finished first"), file=sys.stderr)
        self.w.start()
        pid = self.w.proc.pid
        st, h = s.status()
        if not gone:
            # The hashing won the race: the PUT finished before the cut.
            self.assertEqual(st, 404)
            self.check_blob("crash/gone", s)
            return
        self.assertEqual((st, h["range"]), (204, "0-%d" % (s.size - 1)))
        r0 = rchar(pid)
        st, h, b = s.finish()
        self.assertEqual(st, 201, b)
        self.assertLess(rchar(pid) - r0, MIB, "the caught-up state was not kept")
        self.check_blob("crash/gone", s)


# ---------------------------------------------------------------------------
# 1b. The fsyncs of a push run off the loop
# ---------------------------------------------------------------------------

UPLOAD_DATA = re.compile(r"/\.wharf/uploads/[0-9a-f-]{36}/data$")
# What waits for the disk, or changes what the root holds: none of it on the
# loop thread while requests are served.
PLACING = ("rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat")
BLOCKING = ("fsync", "fdatasync") + PLACING
HAVE_UPSTREAM = os.path.exists(up.REGISTRY_BIN)


def upstream_blob(client, repo, data):
    """Upload data to Distribution (POST, then PUT ?digest=). Returns the digest."""
    d = sha256(data)
    st, h, b, _ = client.request("POST", "/v2/%s/blobs/uploads/" % repo)
    if st != 202:
        raise AssertionError("upstream POST: %d %r" % (st, b[:300]))
    loc = urllib.parse.urlsplit(h["location"])
    path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + d
    st, _, b, _ = client.request("PUT", path, {"Content-Type": "application/octet-stream"},
                                 data)
    if st != 201:
        raise AssertionError("upstream PUT: %d %r" % (st, b[:300]))
    return d


@unittest.skipUnless(shutil.which("strace"), "strace not installed")
class TestFsyncOffTheLoop(unittest.TestCase):
    """The closing PUT of an upload fsynced its bytes on the loop thread:
    the disk writing the whole blob (seconds for gigabytes) held up every
    other client. A manifest PUT fsynced its bytes, index.json and their
    directories there too; a mount, a blob or manifest DELETE, the tee's
    publish of a fetched blob (and its links into the other repositories
    that asked) and the store of a synced manifest fsynced, renamed, linked
    and unlinked there as well. They all run in libuv's thread pool now.
    strace -f names the thread of every call; the loop's is the process's
    first thread, whose tid is the pid.

    The pull-through fills go to a Distribution (docker-registry) behind
    fakes/faults.py, synced under /up; skipped without docker-registry."""

    @classmethod
    def setUpClass(cls):
        cls.dist = cls.faults = None
        cfg = None
        if HAVE_UPSTREAM:
            cls.dist = up.Distribution().start()
            cls.faults = up.FaultProxy(cls.dist.url).start()
            cfg = up.sync_config(cls.faults.url, destination="/up", maxRetries=0,
                                 retryDelay="100ms")
        cls.w = Wharf(cfg)
        cls.trace = os.path.join(cls.w.tmp, "strace.txt")
        # LeakSanitizer cannot run under ptrace; the other tests look for leaks.
        env = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                                ":detect_leaks=0").lstrip(":")}
        cls.w.start(timeout=30, env=env,
                    wrapper=["strace", "-f", "-qq", "-y", "-ttt", "-e",
                             "trace=" + ",".join(BLOCKING), "-e", "signal=none",
                             "-o", cls.trace])
        kids = children(cls.w.proc.pid)
        cls.pid = kids[0] if len(kids) == 1 else None

    @classmethod
    def tearDownClass(cls):
        stop_traced(cls.w)
        cls.w.cleanup()
        for p in (cls.faults, cls.dist):
            if p:
                p.stop()
                p.cleanup()

    def setUp(self):
        self.assertIsNotNone(self.pid, "wharf's pid under strace")
        self.c = Client(self, self.w)

    def fsyncs_in(self, t0, t1, need):
        """The fsyncs of files under the root that started within [t0, t1],
        as (tid, path), once strace has written one whose path ends with
        `need` (it may buffer)."""
        root = os.path.realpath(self.w.root)
        deadline = time.monotonic() + 5
        while True:
            ev = [(tid, p[0]) for tid, t, name, p in traced_calls(self.trace)
                  if t0 <= t <= t1 and name in ("fsync", "fdatasync") and p and
                  p[0].startswith(root)]
            if any(p.endswith(need) for _, p in ev) or time.monotonic() > deadline:
                return ev
            time.sleep(0.05)

    def assert_off_the_loop(self, ev, what):
        on_loop = [p for tid, p in ev if tid == self.pid]
        self.assertEqual(on_loop, [], "%s: fsyncs on the loop thread (%d): %s"
                         % (what, self.pid, ev))

    def calls_since(self, t0, done):
        """Every traced call from t0 on, as (tid, name, paths), once done(calls)
        holds (strace may buffer; 5 s at most). The requests of these tests
        return before the work they started may have ended (a fill is
        published after its last byte went out), so the window runs to now."""
        deadline = time.monotonic() + 5
        while True:
            ev = [(tid, name, p) for tid, t, name, p in traced_calls(self.trace) if t >= t0]
            if done(ev) or time.monotonic() > deadline:
                return ev
            time.sleep(0.05)

    def assert_nothing_on_the_loop(self, ev, what):
        """No fsync, rename, link or unlink on the loop thread, whatever the path."""
        on_loop = [(name, p) for tid, name, p in ev if tid == self.pid and name in BLOCKING]
        self.assertEqual(on_loop, [], "%s: on the loop thread (%d): %s"
                         % (what, self.pid, on_loop))

    def blob_file(self, repo, digest):
        return os.path.join(os.path.realpath(self.w.root), repo, "blobs", "sha256",
                            digest.split(":")[1])

    def placed(self, path):
        """done(): a rename or link to path, and an fsync of its directory."""
        d = os.path.dirname(path)
        return lambda ev: (any(name in PLACING and p and p[-1] == path for _, name, p in ev)
                           and any(name == "fsync" and p == [d] for _, name, p in ev))

    def unlinked(self, path):
        d = os.path.dirname(path)
        return lambda ev: (any(name.startswith("unlink") and path in p for _, name, p in ev)
                           and any(name == "fsync" and p == [d] for _, name, p in ev))

    def test_the_trace_tells_the_loop_apart(self):
        """What this check relies on: at start, the store makes .wharf's
        directories and fsyncs their parents on the main thread, and the
        trace says so."""
        loop = [p for tid, t, name, p in traced_calls(self.trace)
                if tid == self.pid and name == "fsync"]
        self.assertTrue(any(p and p[0].endswith("/.wharf") for p in loop), loop)

    def test_upload_finish(self):
        repo = "offloop/upload"
        for how in ("monolithic", "chunked"):
            data = os.urandom(8 * MIB)
            d = sha256(data)
            t0 = time.time()
            if how == "monolithic":
                st, h, b = self.w.request("POST", "/v2/%s/blobs/uploads/?digest=%s"
                                          % (repo, d), data, timeout=60)
            else:
                s = Session(self, self.w, repo)
                s.hash.update(data[:-100])
                st, h, b = self.w.request(
                    "PATCH", s.loc, data[:-100],
                    {"Content-Type": "application/octet-stream"}, timeout=60)
                self.assertEqual(st, 202, b)
                t0 = time.time()
                s.size = len(data) - 100
                st, h, b = s.finish(data[-100:])
            t1 = time.time()
            self.assertEqual(st, 201, b)
            ev = self.fsyncs_in(t0, t1, "/" + repo + "/blobs/sha256")
            self.assertTrue([p for _, p in ev if UPLOAD_DATA.search(p)],
                            "%s: the upload's bytes were not fsynced: %s" % (how, ev))
            self.assertTrue(any(p.endswith("/" + repo + "/blobs/sha256") for _, p in ev), ev)
            self.assert_off_the_loop(ev, how + " upload")
            st, h, b = self.w.request("GET", "/v2/%s/blobs/%s" % (repo, d))
            self.assertEqual((st, sha256(b)), (200, d))

    def test_manifest_put(self):
        repo = "offloop/manifest"
        cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        layer = os.urandom(5000)
        for data in (cfg, layer):
            self.c.push_blob(repo, data)
        body = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(cfg), "size": len(cfg)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(layer), "size": len(layer)}]}).encode()
        t0 = time.time()
        st, h, b = self.w.request("PUT", "/v2/%s/manifests/v2" % repo, body,
                                  {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        t1 = time.time()
        self.assertEqual(st, 201, b)
        ev = self.fsyncs_in(t0, t1, "/" + repo)
        paths = [p for _, p in ev]
        # The manifest's bytes and index.json (temp files), the directories
        # they were renamed into.
        self.assertGreaterEqual(sum("/.wharf/tmp/" in p for p in paths), 2, ev)
        self.assertTrue(any(p.endswith("/" + repo) for p in paths), ev)
        self.assert_off_the_loop(ev, "manifest PUT")
        st, h, b = self.w.request("GET", "/v2/%s/manifests/v2" % repo)
        self.assertEqual((st, b), (200, body))

    def test_mount(self):
        """A cross-repository mount: the link into the repository (made on
        the way) and the directories' fsyncs; a blob the other repository
        lacks still begins an upload session (202)."""
        data = os.urandom(100000)
        d = self.c.push_blob("offloop/mount-from", data)
        t0 = time.time()
        st, h, b = self.w.request("POST", "/v2/offloop/mount-to/blobs/uploads/?mount=%s"
                                  "&from=offloop/mount-from" % d)
        self.assertEqual((st, h.get("docker-content-digest")), (201, d), b)
        dst = self.blob_file("offloop/mount-to", d)
        ev = self.calls_since(t0, self.placed(dst))
        self.assertTrue(self.placed(dst)(ev), "the mount was not seen: %s" % ev)
        self.assert_nothing_on_the_loop(ev, "mount")
        st, h, b = self.w.request("GET", "/v2/offloop/mount-to/blobs/%s" % d)
        self.assertEqual((st, b), (200, data))
        st, h, b = self.w.request("POST", "/v2/offloop/mount-to/blobs/uploads/?mount=%s"
                                  "&from=offloop/mount-none" % d)
        self.assertEqual(st, 202, b)
        self.assertIn("/blobs/uploads/", h["location"])

    def session_gone(self, sid):
        """done(): the session's data file and directory removed."""
        return lambda ev: (
            any(name.startswith("unlink") and any(q.endswith("/%s/data" % sid) for q in p)
                for _, name, p in ev))

    def test_upload_cancel(self):
        """An upload session's DELETE (204), and a monolithic POST whose
        client leaves mid-body (its session goes with it): the session's
        file is closed and its directory removed off the loop."""
        repo = "offloop/cancel"
        s = Session(self, self.w, repo)
        s.patch(4 * MIB)
        sid = s.loc.rstrip("/").rsplit("/", 1)[1]
        t0 = time.time()
        st, h, b = self.w.request("DELETE", s.loc)
        self.assertEqual(st, 204, b)
        ev = self.calls_since(t0, self.session_gone(sid))
        self.assertTrue(self.session_gone(sid)(ev), "the cancel was not seen: %s" % ev)
        self.assert_nothing_on_the_loop(ev, "upload DELETE")
        self.assertEqual(self.w.request("GET", s.loc)[0], 404)
        self.assertEqual(self.w.request("DELETE", s.loc)[0], 404)

        before = set(os.listdir(os.path.join(self.w.root, ".wharf", "uploads")))
        t0 = time.time()
        sock = socket.create_connection(("127.0.0.1", self.w.port))
        sock.sendall(b"POST /v2/%s/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: %d\r\n\r\n" % (repo.encode(), sha256(b"x").encode(),
                                                       8 * MIB) + os.urandom(MIB))
        uploads = os.path.join(self.w.root, ".wharf", "uploads")
        deadline = time.monotonic() + 5
        while set(os.listdir(uploads)) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        made = set(os.listdir(uploads)) - before
        self.assertEqual(len(made), 1, "the POST's session")
        sid = made.pop()
        sock.close()
        ev = self.calls_since(t0, self.session_gone(sid))
        self.assertTrue(self.session_gone(sid)(ev), "the abandoned POST's cancel: %s" % ev)
        self.assert_nothing_on_the_loop(ev, "abandoned monolithic POST")
        deadline = time.monotonic() + 5
        while sid in os.listdir(uploads) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertNotIn(sid, os.listdir(uploads))

    def test_blob_delete(self):
        repo = "offloop/blobdel"
        data = os.urandom(50000)
        d = self.c.push_blob(repo, data)
        path = self.blob_file(repo, d)
        t0 = time.time()
        st, h, b = self.w.request("DELETE", "/v2/%s/blobs/%s" % (repo, d))
        self.assertEqual(st, 202, b)
        ev = self.calls_since(t0, self.unlinked(path))
        self.assertTrue(self.unlinked(path)(ev), "the delete was not seen: %s" % ev)
        self.assert_nothing_on_the_loop(ev, "blob DELETE")
        self.assertEqual(self.w.request("GET", "/v2/%s/blobs/%s" % (repo, d))[0], 404)
        self.assertEqual(self.w.request("DELETE", "/v2/%s/blobs/%s" % (repo, d))[0], 404)

    def test_manifest_delete(self):
        """By tag (index.json rewritten), then by digest (index.json, and the
        manifest's bytes unlinked)."""
        repo = "offloop/mdel"
        m, d, blobs = self.c.push_image(repo, "v1", seed="offloop-delete")
        index = os.path.join(os.path.realpath(self.w.root), repo, "index.json")
        for ref, done in (("v1", self.placed(index)),
                          (d, lambda ev: self.placed(index)(ev) and
                           self.unlinked(self.blob_file(repo, d))(ev))):
            t0 = time.time()
            st, h, b = self.w.request("DELETE", "/v2/%s/manifests/%s" % (repo, ref))
            self.assertEqual(st, 202, b)
            ev = self.calls_since(t0, done)
            self.assertTrue(done(ev), "the delete of %s was not seen: %s" % (ref, ev))
            self.assert_nothing_on_the_loop(ev, "manifest DELETE " + ref)
            self.assertEqual(self.w.request("GET", "/v2/%s/manifests/%s" % (repo, ref))[0],
                             404)
        self.assertEqual(self.w.request("DELETE", "/v2/%s/manifests/%s" % (repo, d))[0], 404)

    def seed_upstream(self, repo, tag, layer):
        """An image in the upstream: its manifest's bytes and digest."""
        client = up.RegistryClient(self.dist.url)
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "seed": repo,
                          "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        upstream_blob(client, repo, cfg)
        upstream_blob(client, repo, layer)
        body = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(cfg), "size": len(cfg)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(layer), "size": len(layer)}]}).encode()
        st, _, b, _ = client.request(
            "PUT", "/v2/%s/manifests/%s" % (repo, tag),
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, body)
        self.assertEqual(st, 201, b)
        return body, sha256(body)

    @unittest.skipUnless(HAVE_UPSTREAM, "docker-registry not installed")
    def test_fill_manifest(self):
        """A pull-through fill of a manifest: its bytes and index.json stored,
        and the client answered from the store once they are in."""
        body, md = self.seed_upstream("fill/img", "v1", os.urandom(1000))
        t0 = time.time()
        st, h, b = self.w.request("GET", "/v2/up/fill/img/manifests/v1",
                                  headers={"Accept": up.MANIFEST_ACCEPT})
        self.assertEqual((st, b, h.get("docker-content-digest")), (200, body, md))
        index = os.path.join(os.path.realpath(self.w.root), "up/fill/img", "index.json")
        stored = self.placed(self.blob_file("up/fill/img", md))

        def done(ev):
            return stored(ev) and self.placed(index)(ev)
        ev = self.calls_since(t0, done)
        self.assertTrue(done(ev), "the synced manifest's store was not seen: %s" % ev)
        self.assert_nothing_on_the_loop(ev, "manifest fill")
        st, h, b = self.w.request("GET", "/v2/up/fill/img/manifests/%s" % md,
                                  headers={"Accept": up.MANIFEST_ACCEPT})
        self.assertEqual((st, b), (200, body))

    @unittest.skipUnless(HAVE_UPSTREAM, "docker-registry not installed")
    def test_fill_blob(self):
        """A pull-through fill of a blob: fetched through the tee, published
        (renamed into .wharf/blobs, linked into the repository) and linked
        into a second repository whose client joined the fetch meanwhile
        (one upstream GET); both clients get the whole blob."""
        layer = os.urandom(3 * MIB)
        d = upstream_blob(up.RegistryClient(self.dist.url), "fill/blob", layer)
        self.faults.set("throttle", rate_bytes_per_s=2e6, path_contains=d)
        self.addCleanup(self.faults.clear)
        box = {}

        def first():
            box["a"] = self.w.request("GET", "/v2/up/fill/blob/blobs/%s" % d, timeout=30)
        t0 = time.time()
        ta = threading.Thread(target=first)
        ta.start()
        deadline = time.monotonic() + 10
        while (self.faults.stats()["blob_bytes"].get(d, 0) < 256 << 10 and
               time.monotonic() < deadline):
            time.sleep(0.02)
        st, h, b = self.w.request("GET", "/v2/up/fill/other/blobs/%s" % d, timeout=30)
        ta.join(30)
        self.assertEqual((st, sha256(b)), (200, d), "the joining client")
        st, h, b = box["a"]
        self.assertEqual((st, sha256(b)), (200, d), "the first client")
        self.assertEqual(self.faults.stats()["blob_gets"].get(d), 1, "one fetch for both")
        root = os.path.realpath(self.w.root)
        places = (os.path.join(root, ".wharf/blobs/sha256", d.split(":")[1]),
                  self.blob_file("up/fill/blob", d), self.blob_file("up/fill/other", d))

        def done(ev):
            return all(self.placed(p)(ev) for p in places)
        ev = self.calls_since(t0, done)
        self.assertTrue(done(ev), "the publish and the link were not seen: %s" % ev)
        self.assertTrue([p for tid, name, p in ev if name == "fsync" and p and
                         "/.wharf/tmp/" in p[0]], "the fetched bytes were not fsynced: %s" % ev)
        self.assert_nothing_on_the_loop(ev, "blob fill")
        for repo in ("up/fill/blob", "up/fill/other"):
            st, h, b = self.w.request("GET", "/v2/%s/blobs/%s" % (repo, d))
            self.assertEqual((st, sha256(b)), (200, d), repo)
        self.assertEqual(self.faults.stats()["blob_gets"].get(d), 1, "served from the store")


class TestChangesOutliveTheirClients(unittest.TestCase):
    """A mount, a blob DELETE and a manifest DELETE change the store in the
    thread pool and are answered from the store's callback. A client that
    leaves first leaves the store as if it had stayed, and nothing of its
    request is touched once it is gone (the sanitizer build would report it,
    at the time or at exit)."""

    N = 20

    def setUp(self):
        self.w = Wharf().start()
        self.c = Client(self, self.w)

    def tearDown(self):
        rc = self.w.stop()
        log = self.w.log()
        self.w.cleanup()
        self.assertEqual(rc, 0, log[-3000:])
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            self.assertNotIn(bad, log)

    def leave(self, method, path):
        """Send a request and close at once, without reading the answer."""
        s = socket.create_connection(("127.0.0.1", self.w.port), timeout=10)
        try:
            s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                       % (method, path)).encode())
        finally:
            s.close()

    def wait_status(self, path, want):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(self.w.request("GET", path % i)[0] == want for i in range(self.N)):
                return True
            time.sleep(0.05)
        return False

    def test_clients_leave(self):
        data = os.urandom(20000)
        d = self.c.push_blob("leave/src", data)
        for i in range(self.N):
            self.leave("POST", "/v2/leave/m%d/blobs/uploads/?mount=%s&from=leave/src" % (i, d))
        self.assertTrue(self.wait_status("/v2/leave/m%d/blobs/" + d, 200), "not all mounted")
        for i in range(self.N):
            self.leave("DELETE", "/v2/leave/m%d/blobs/%s" % (i, d))
        self.assertTrue(self.wait_status("/v2/leave/m%d/blobs/" + d, 404), "not all deleted")
        for i in range(self.N):
            self.c.push_image("leave/r%d" % i, "v1", seed="leave %d" % i)
            self.leave("DELETE", "/v2/leave/r%d/manifests/v1" % i)
        self.assertTrue(self.wait_status("/v2/leave/r%d/manifests/v1", 404), "tags left")
        gone = sum(r.get("message") == "request not completed"
                   for r in self.w.log_records())
        print("\n  requests whose client left first: %d of %d" % (gone, 3 * self.N),
              file=sys.stderr)


# ---------------------------------------------------------------------------
# 2. Bytes something else still references
# ---------------------------------------------------------------------------

class TestReferencedBytes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Wharf().start()

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.w.cleanup()

    def setUp(self):
        self.c = Client(self, self.w)

    def test_blob_delete_of_a_manifest_is_refused(self):
        repo = "refs/tagged"
        m, d, blobs = self.c.push_image(repo, "v1", seed="refs")
        st, h, b = self.w.request("DELETE", "/v2/%s/blobs/%s" % (repo, d))
        self.assertEqual(st, 405, b)
        self.assertTrue(h["content-type"].startswith("application/json"))
        self.assertEqual(error_codes(b), ["UNSUPPORTED"])
        self.assertIn("/manifests/", json.loads(b)["errors"][0]["message"])
        # Nothing changed: the tag is listed and served.
        st, h, b = self.w.request("GET", "/v2/%s/tags/list" % repo)
        self.assertEqual(json.loads(b)["tags"], ["v1"])
        st, h, b = self.w.request("GET", "/v2/%s/manifests/v1" % repo)
        self.assertEqual((st, b), (200, m))
        # An untagged manifest is refused too; a layer is a blob and goes.
        m2, d2, _ = self.c.push_image(repo, None, seed="untagged")
        self.assertEqual(self.w.request("DELETE", "/v2/%s/blobs/%s" % (repo, d2))[0], 405)
        self.assertEqual(self.w.request("DELETE", "/v2/%s/blobs/%s"
                                        % (repo, sha256(blobs[1])))[0], 202)
        # Through /manifests/ it goes, and the blob route then knows nothing.
        self.assertEqual(self.w.request("DELETE", "/v2/%s/manifests/%s" % (repo, d))[0], 202)
        self.assertEqual(self.w.request("DELETE", "/v2/%s/blobs/%s" % (repo, d))[0], 404)
        st, h, b = self.w.request("GET", "/v2/%s/tags/list" % repo)
        self.assertEqual(json.loads(b)["tags"], [])

    def test_manifest_of_another_repository_is_a_blob_here(self):
        m, d, _ = self.c.push_image("refs/one", "v1", seed="other")
        self.c.push_blob("refs/two", m)
        self.assertEqual(self.w.request("DELETE", "/v2/refs/two/blobs/" + d)[0], 202)
        st, h, b = self.w.request("GET", "/v2/refs/one/manifests/v1")
        self.assertEqual((st, b), (200, m))


# ---------------------------------------------------------------------------
# 3. Creation and listings
# ---------------------------------------------------------------------------

def make_repos_on_disk(root, names, full=True):
    """Repositories written directly; full=False: index.json only (all the
    catalog looks at; file creation is slow on some CI disks)."""
    for n in names:
        d = os.path.join(root, *n.split("/"))
        os.makedirs(os.path.join(d, "blobs", "sha256") if full else d, exist_ok=True)
        if full:
            with open(os.path.join(d, "oci-layout"), "w") as f:
                f.write('{"imageLayoutVersion":"1.0.0"}')
        with open(os.path.join(d, "index.json"), "w") as f:
            f.write('{"schemaVersion":2,"manifests":[]}')


def lexical(names):
    # The spec's lexical order: case-insensitive, then bytewise.
    return sorted(set(names), key=lambda s: (s.lower(), s))


def parse_link(link):
    return link.split(";")[0].strip()[1:-1]


class TestUploadLayout(unittest.TestCase):
    def setUp(self):
        self.w = Wharf().start()
        self.c = Client(self, self.w)

    def tearDown(self):
        if self.w.proc:
            self.assertIsNone(self.w.proc.poll(), "wharf exited; log:\n" + self.w.log()[-4000:])
        self.w.stop()
        self.w.cleanup()

    def catalog(self):
        st, h, b = self.w.request("GET", "/v2/_catalog")
        self.assertEqual(st, 200, b)
        return json.loads(b)["repositories"]

    def sessions_on_disk(self):
        d = os.path.join(self.w.root, ".wharf", "uploads")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def test_post_creates_no_repository(self):
        ids = []
        for i in range(50):
            st, h, b = self.w.request("POST", "/v2/nothing/here%d/blobs/uploads/" % i, b"")
            self.assertEqual(st, 202, b)
            ids.append(h["docker-upload-uuid"])
        self.assertEqual(self.catalog(), [])
        self.assertEqual(sorted(os.listdir(self.w.root)), [".wharf"])
        self.assertEqual(self.sessions_on_disk(), sorted(ids))
        for i in (0, 49):
            st, h, b = self.w.request("GET", "/v2/nothing/here%d/tags/list" % i)
            self.assertEqual(st, 404)
            self.assertEqual(error_codes(b), ["NAME_UNKNOWN"])
        # A mount whose source lacks the blob is a plain session: no repository either.
        st, h, b = self.w.request("POST", "/v2/nothing/mounted/blobs/uploads/?mount=%s&from=x"
                                  % sha256(b"absent"), b"")
        self.assertEqual(st, 202, b)
        self.assertEqual(self.catalog(), [])
        # Something stored: then it is a repository.
        self.c.push_blob("nothing/here7", b"bytes")
        self.assertEqual(self.catalog(), ["nothing/here7"])

    def test_cancelled_session_leaves_nothing(self):
        s = Session(self, self.w, "gone/away")
        s.patch(1000)
        self.assertEqual(len(self.sessions_on_disk()), 1)
        self.assertEqual(self.w.request("DELETE", s.loc)[0], 204)
        self.assertEqual(self.sessions_on_disk(), [])
        self.assertEqual(sorted(os.listdir(self.w.root)), [".wharf"])
        self.assertEqual(self.catalog(), [])

    def test_finished_session_leaves_only_the_blob(self):
        s = Session(self, self.w, "done/here")
        s.patch(1000)
        st, h, b = s.finish(b"x")
        self.assertEqual(st, 201, b)
        self.assertEqual(self.sessions_on_disk(), [])
        self.assertEqual(self.catalog(), ["done/here"])
        # A wrong digest ends the session too.
        s = Session(self, self.w, "done/here")
        s.patch(10)
        st, h, b = self.w.request("PUT", s.loc + "?digest=" + sha256(b"other"), b"")
        self.assertEqual(st, 400)
        self.assertEqual(self.sessions_on_disk(), [])

    def test_session_belongs_to_its_repository(self):
        s = Session(self, self.w, "owner/a")
        s.patch(100)
        other = s.loc.replace("/owner/a/", "/owner/b/")
        for when in ("in memory", "evicted", "after a restart"):
            if when == "evicted":
                post_sessions(self, self.w, "owner/c", UPLOADS_OPEN_MAX + 4)
            if when == "after a restart":
                self.w.kill9()
                self.w.start()
            for method, body in (("GET", None), ("PATCH", b"x"), ("DELETE", None),
                                 ("PUT", b"")):
                path = other + ("?digest=" + sha256(b"x") if method == "PUT" else "")
                st, h, b = self.w.request(method, path, body)
                self.assertEqual(st, 404, "%s %s %s" % (when, method, b))
                self.assertEqual(error_codes(b), ["BLOB_UPLOAD_UNKNOWN"])
            st, h = s.status()
            self.assertEqual((st, h["range"]), (204, "0-99"), when)
        self.assertFalse(os.path.exists(os.path.join(self.w.root, "owner", "b")))
        st, h, b = s.finish(b"!")
        self.assertEqual(st, 201, b)


class TestCatalog(unittest.TestCase):
    def tearDown(self):
        if self.w.proc:
            self.assertIsNone(self.w.proc.poll(), "wharf exited; log:\n" + self.w.log()[-4000:])
        self.w.stop()
        self.w.cleanup()

    def page_all(self, n):
        got, path = [], "/v2/_catalog?n=%d" % n
        while path:
            st, h, b = self.w.request("GET", path)
            self.assertEqual(st, 200, b)
            page = json.loads(b)["repositories"]
            self.assertLessEqual(len(page), n)
            got += page
            path = parse_link(h["link"]) if "link" in h else None
        return got

    def test_paging_over_thousands(self):
        self.w = Wharf()
        names = ["r%04d" % i for i in range(1500)]
        names += ["g/%d/x-%d" % (i % 37, i) for i in range(1500)]
        names += ["a", "a-b", "a.b", "a_b", "a/b", "a0", "z/blobs/in"]
        make_repos_on_disk(self.w.root, names)
        # Not repositories: no index.json, a dot-directory, a blobs/sha256 child.
        os.makedirs(os.path.join(self.w.root, "empty", "dir"))
        make_repos_on_disk(os.path.join(self.w.root, ".hidden"), ["x"])
        make_repos_on_disk(os.path.join(self.w.root, "a", "blobs", "sha256"), ["inner"])
        self.w.start()
        c = Client(self, self.w)
        for r in ("m/new", "a/c", "r0750/deeper", "zzz"):
            c.push_blob(r, b"x")
            names.append(r)
        want = lexical(names)
        st, h, b = self.w.request("GET", "/v2/_catalog")
        self.assertEqual(json.loads(b)["repositories"], want)
        self.assertEqual(self.page_all(7), want)
        self.assertEqual(self.page_all(1000), want)
        for last, n in (("a", 3), ("a/b", 2), ("g/3", 4), ("m", 2), ("r0750", 3),
                        ("r0750/deeper", 1), ("zz", 5), ("zzz", 5), ("zzzz", 5), ("0", 2),
                        ("G/3", 3)):
            st, h, b = self.w.request("GET", "/v2/_catalog?n=%d&last=%s"
                                      % (n, urllib.parse.quote(last, safe="")))
            self.assertEqual(st, 200, b)
            after = [r for r in want if (r.lower(), r) > (last.lower(), last)]
            self.assertEqual(json.loads(b)["repositories"], after[:n], last)
            self.assertEqual("link" in h, len(after) > n, last)

    def test_twenty_thousand_repositories_do_not_stall_others(self):
        self.w = Wharf()
        names = ["p%d/r%d" % (i % 100, i) for i in range(20000)]
        make_repos_on_disk(self.w.root, names, full=False)
        self.w.start(timeout=30)
        want = lexical(names)
        # Requests that arrive while the scan runs wait for it, all of them
        # for the same one.
        early = [None] * 8

        def one(i):
            early[i] = self.w.request("GET", "/v2/_catalog?n=3", timeout=60)
        ths = [threading.Thread(target=one, args=(i,)) for i in range(len(early))]
        t0 = time.monotonic()
        for th in ths:
            th.start()
        for th in ths:
            th.join(60)
        first = time.monotonic() - t0
        for st, h, b in early:
            self.assertEqual((st, json.loads(b)["repositories"]), (200, want[:3]))
        lat = []
        with LatencyProbe(self.w) as probe:
            c = self.w.conn(timeout=60)
            try:
                for i in range(30):
                    t0 = time.monotonic()
                    c.request("GET", "/v2/_catalog?n=1" if i % 2 else
                              "/v2/_catalog?n=2&last=" + urllib.parse.quote(want[i * 500]))
                    r = c.getresponse()
                    b = r.read()
                    lat.append(time.monotonic() - t0)
                    self.assertEqual(r.status, 200, b)
                    got = json.loads(b)["repositories"]
                    self.assertEqual(got, want[:1] if i % 2 else want[i * 500 + 1:i * 500 + 3])
            finally:
                c.close()
        print("\n  20000 repositories: %d catalog requests at start answered within %.0f ms, "
              "then each in at most %.1f ms; worst GET /v2/ meanwhile %.1f ms"
              % (len(early), first * 1000, max(lat) * 1000, probe.worst * 1000),
              file=sys.stderr)
        self.assertLess(first, 10.0)
        self.assertLess(max(lat), 0.1, "a catalog page walked the root again")
        self.assertLess(probe.worst, 0.2, "GET /v2/ waited for a catalog walk")
        loaded = [r for r in self.w.log_records() if r.get("message") == "catalog loaded"]
        self.assertEqual([r["repositories"] for r in loaded], [20000])


# ---------------------------------------------------------------------------
# Query strings and numbers from the client
# ---------------------------------------------------------------------------

class TestQueryAndNumbers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Wharf().start()

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.w.cleanup()

    def setUp(self):
        self.c = Client(self, self.w)

    def tearDown(self):
        self.assertIsNone(self.w.proc.poll(), "wharf exited; log:\n" + self.w.log()[-4000:])

    def err(self, resp, status, code):
        st, h, b = resp
        self.assertEqual(st, status, b)
        self.assertEqual(error_codes(b), [code])

    def test_last_longer_than_any_name_is_400(self):
        self.c.push_image("q/tags", "v1", seed="q")
        self.err(self.w.request("GET", "/v2/_catalog?last=" + "a" * 300), 400, "UNSUPPORTED")
        self.err(self.w.request("GET", "/v2/_catalog?n=1&last=" + "a/" * 200), 400,
                 "UNSUPPORTED")
        self.err(self.w.request("GET", "/v2/q/tags/tags/list?last=" + "v" * 200), 400,
                 "UNSUPPORTED")
        # The longest valid ones still work.
        st, h, b = self.w.request("GET", "/v2/q/tags/tags/list?last=" + "v" * 128)
        self.assertEqual((st, json.loads(b)["tags"]), (200, []))
        st, h, b = self.w.request("GET", "/v2/_catalog?last=" + "z" * 255)
        self.assertEqual((st, json.loads(b)["repositories"]), (200, []))

    def test_n_too_long_is_400(self):
        self.err(self.w.request("GET", "/v2/_catalog?n=" + "0" * 40 + "1"), 400, "UNSUPPORTED")

    def test_parameter_names_inside_other_values(self):
        d = sha256(b"abc")
        # "digest=" inside another parameter's value is not a digest.
        st, h, b = self.w.request("POST", "/v2/q/values/blobs/uploads/?x=digest=" + d, b"")
        self.assertEqual(st, 202, b)
        st, h, b = self.w.request("POST", "/v2/q/values/blobs/uploads/?x=digest=nonsense", b"")
        self.assertEqual(st, 202, b)
        loc = split_location(h["location"])
        st, h, b = self.w.request("PUT", loc + "&x=digest=" + d if "?" in loc else
                                  loc + "?x=digest=" + d, b"abc")
        self.err((st, h, b), 400, "DIGEST_INVALID")  # no digest parameter at all
        # Nor is "from=" inside another value a source repository: the real
        # from (q/none, which lacks the blob) is the one taken, so no mount.
        # (Without any from, the blob would be mounted from wherever it is:
        # test_sha512.AnonymousMount.)
        self.c.push_blob("q/src", b"mountme")
        st, h, b = self.w.request("POST", "/v2/q/dst/blobs/uploads/?x=from=q/src&mount=%s"
                                  "&from=q/none" % sha256(b"mountme"), b"")
        self.assertEqual(st, 202, b)
        st, h, b = self.w.request("POST", "/v2/q/dst/blobs/uploads/?mount=%s&from=q/src"
                                  % sha256(b"mountme"), b"")
        self.assertEqual(st, 201, b)
        # A referrers filter named inside a value is no filter.
        st, h, b = self.w.request("GET", "/v2/q/src/referrers/%s?x=artifactType=a/b" % d)
        self.assertEqual(st, 200, b)
        self.assertNotIn("oci-filters-applied", h)

    def test_values_too_long_or_with_nul_are_refused(self):
        d = sha256(b"abc")
        # A digest with a NUL: not "the digest up to the NUL".
        self.err(self.w.request("POST", "/v2/q/nul/blobs/uploads/?digest=%s%%00junk" % d,
                                b"abc"), 400, "DIGEST_INVALID")
        self.err(self.w.request("POST", "/v2/q/nul/blobs/uploads/?digest=" + d + "0" * 200,
                                b"abc"), 400, "DIGEST_INVALID")
        # A mount too long for any digest is not a plain session.
        self.err(self.w.request("POST", "/v2/q/long/blobs/uploads/?mount=%s&from=q/src"
                                % (d + "0" * 200), b""), 400, "DIGEST_INVALID")
        self.err(self.w.request("POST", "/v2/q/long/blobs/uploads/?mount=%s&from=%s"
                                % (d, "a" * 300), b""), 400, "NAME_INVALID")
        st, h, b = self.w.request("GET", "/v2/q/long/referrers/%s?artifactType=%s"
                                  % (d, "a/" + "b" * 300))
        self.err((st, h, b), 400, "UNSUPPORTED")

    def test_content_range_near_int64_max(self):
        st, h, b = self.w.request("POST", "/v2/q/range/blobs/uploads/", b"")
        loc = split_location(h["location"])
        for cr in ("0-9223372036854775807", "bytes 0-9223372036854775807",
                   "0-9223372036854775806", "9223372036854775807-9223372036854775807",
                   "0-9223372036854775808", "0-99999999999999999999999"):
            st, h, b = self.w.request("PATCH", loc, b"x", {"Content-Range": cr})
            self.assertIn(st, (400, 416), "%s: %r" % (cr, b))
            self.assertIsNone(self.w.proc.poll(), "wharf died on Content-Range " + cr)
        st, h, b = self.w.request("PATCH", loc, b"x", {"Content-Range": "0-0"})
        self.assertEqual(st, 202, b)

    def test_range_near_int64_max(self):
        d = self.c.push_blob("q/rng", b"0123456789")
        for rng, want in (("bytes=0-9223372036854775807", b"0123456789"),
                          ("bytes=9-9223372036854775807", b"9"),
                          ("bytes=-9223372036854775807", b"0123456789")):
            st, h, b = self.w.request("GET", "/v2/q/rng/blobs/" + d, headers={"Range": rng})
            self.assertEqual((st, b), (206, want), rng)
        st, h, b = self.w.request("GET", "/v2/q/rng/blobs/" + d,
                                  headers={"Range": "bytes=9223372036854775807-"})
        self.assertEqual(st, 416)


if __name__ == "__main__":
    unittest.main()
