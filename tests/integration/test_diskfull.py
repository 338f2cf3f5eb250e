"""A full disk, against the real binary on a real small root (a tmpfs of
24 MiB, mounted by the test: root only, skipped otherwise; unmounted in
every case).

The defect: with a 30 MB root, one push that ran out of space left its
partial upload session behind, and from then on every push and every cache
fill failed (blamed on the upstream) until someone removed the session by
hand. Now:

- a write that finds the disk full fails that request with 507 and the
  spec's JSON error (code UNKNOWN, "storage is full"), one log line says
  "disk full", and the partial session goes at once (the tmpfs's usage
  drops back); what follows (a small push, pulls of what was there) works;
- a pull-through fill from the real upstream registry (Debian's
  docker-registry) that does not fit is a 507 (its room is claimed before
  any answer begins) or, where it cannot be, a cut connection: never blamed
  on the upstream, which is not marked down; its temp file is gone and the
  next fill that fits works;
- upload sessions left older than storage.gcDelay are removed when the
  server starts; younger ones stay, and resume.

Run: WHARF_BIN=../../build/wharf python3 run.py test_diskfull
"""

import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import images  # noqa: E402
import upstream as up  # noqa: E402
from harness import Wharf, merge, wait_for  # noqa: E402

MIB = 1 << 20
TMPFS = 24 * MIB
HAVE_UPSTREAM = os.path.exists(up.REGISTRY_BIN)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()




def used(mnt):
    s = os.statvfs(mnt)
    return (s.f_blocks - s.f_bfree) * s.f_frsize


def random_bytes(n, seed):
    """n deterministic bytes that do not compress."""
    out = bytearray()
    h = hashlib.sha256(b"diskfull %d" % seed).digest()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h * 64
    return bytes(out[:n])


def stream_request(port, method, path, body, headers=None, chunk=256 << 10, timeout=30):
    """Send a request whose body is sent piece by piece, watching for an
    early answer as a real client does (Go's): the server may answer (and
    stop reading) before the body is all sent. Returns (status, headers,
    body) of the answer, or (None, {}, b"") when the connection was cut
    before one came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n" % (
            method, path, len(body))
        for k, v in (headers or {}).items():
            head += "%s: %s\r\n" % (k, v)
        s.sendall((head + "\r\n").encode())
        got = b""
        sent = 0
        deadline = time.monotonic() + timeout
        while sent < len(body) and time.monotonic() < deadline:
            r, w, _ = select.select([s], [s], [], 1.0)
            if r:
                break  # an answer (or the end) before the whole body
            if w:
                try:
                    sent += s.send(body[sent:sent + chunk])
                except (BrokenPipeError, ConnectionResetError):
                    break
        while time.monotonic() < deadline:
            if b"\r\n\r\n" in got:
                hdr, rest = got.split(b"\r\n\r\n", 1)
                lines = hdr.decode("latin-1").split("\r\n")
                hs = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hs[k.strip().lower()] = v.strip()
                n = int(hs.get("content-length", "0"))
                if len(rest) >= n:
                    return int(lines[0].split()[1]), hs, rest[:n]
            try:
                data = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                data = b""
            if not data:
                break
            got += data
        return None, {}, b""
    finally:
        s.close()


class Tmpfs:
    """A tmpfs of size bytes at a new temp dir; umount() in every case."""

    def __init__(self, size):
        self.path = tempfile.mkdtemp(prefix="wharf-diskfull-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", self.path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.mounted = r.returncode == 0
        if not self.mounted:
            os.rmdir(self.path)

    def umount(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.path])
            self.mounted = False
            os.rmdir(self.path)

    def fill(self, name="filler"):
        """A file that takes every free byte; returns its path."""
        p = os.path.join(self.path, name)
        with open(p, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        return p


def check_full_answer(t, status, body):
    """507 with the spec's JSON error: code UNKNOWN, "storage is full"."""
    t.assertEqual(status, 507, body)
    doc = json.loads(body)
    e = doc["errors"][0]
    t.assertEqual(e["code"], "UNKNOWN", body)
    t.assertEqual(e["message"], "storage is full", body)
    t.assertTrue(e.get("detail"), body)


def log_messages(w, message):
    return [r for r in w.log_records() if r.get("message") == message]


class FullDiskTest(unittest.TestCase):
    """One tmpfs root per test."""

    def setUp(self):
        self.fs = Tmpfs(TMPFS)
        if not self.fs.mounted:
            self.skipTest("cannot mount a tmpfs here (not root?)")
        self.addCleanup(self.fs.umount)
        self.tmp = tempfile.mkdtemp(prefix="wharf-diskfull-work-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.fs.path, "data")
        self.w = None

    def start(self, config=None):
        cfg = merge({"storage": {"rootDirectory": self.root}}, config or {})
        self.w = Wharf(cfg).start()
        self.addCleanup(self.stop)
        return self.w

    def stop(self):
        if self.w:
            self.w.stop()
            self.w.cleanup()
            self.w = None

    def sessions_on_disk(self):
        try:
            return os.listdir(os.path.join(self.root, ".wharf", "uploads"))
        except OSError:
            return []

    def pull_ok(self, repo, img):
        """Every manifest and blob of img, as pushed."""
        st, h, b = self.w.request("GET", "/v2/%s/manifests/%s" % (repo, img.tag),
                                  headers={"Accept": img.media_type})
        self.assertEqual((st, b), (200, img.manifest), "manifest of %s" % repo)
        for d in img.all_digests() - {img.digest}:
            st, h, b = self.w.request("GET", "/v2/%s/blobs/%s" % (repo, d))
            self.assertEqual((st, sha256(b)), (200, d), "blob %s of %s" % (d, repo))


class TestPush(FullDiskTest):
    """(a) Pushes larger than the room left."""

    def push_image(self, name, salt):
        img = images.single_image(os.path.join(self.tmp, name), "v1", salt=salt)
        images.push(self.w.hostport, img, name, "v1")
        return img

    def big_upload(self, how, data):
        """One upload of data the way a client does it: PATCH, a closing PUT
        with the body, or a monolithic POST. Returns (status, body)."""
        d = sha256(data)
        ct = {"Content-Type": "application/octet-stream"}
        if how == "post":
            st, h, b = stream_request(self.w.port, "POST",
                                      "/v2/big/blobs/uploads/?digest=" + d, data, ct)
            return st, b
        st, h, b = self.w.request("POST", "/v2/big/blobs/uploads/", b"")
        self.assertEqual(st, 202, b)
        loc = urllib.parse.urlsplit(h["location"]).path
        self.assertEqual(len(self.sessions_on_disk()), 1)
        if how == "patch":
            st, h, b = stream_request(self.w.port, "PATCH", loc, data, ct)
        else:
            st, h, b = stream_request(self.w.port, "PUT", loc + "?digest=" + d, data, ct)
        if st is not None:
            # The session is unknown from then on.
            st2, _, b2 = self.w.request("GET", loc)
            self.assertEqual(st2, 404, b2)
        return st, b

    def test_push_larger_than_the_disk(self):
        self.start()
        before = self.push_image("before", "before")
        baseline = used(self.fs.path)
        big = random_bytes(40 * MIB, 1)
        for n, how in enumerate(("patch", "put", "post")):
            with self.subTest(how=how):
                st, body = self.big_upload(how, big)
                check_full_answer(self, st, body)
                # The partial session went at once, and its bytes with it.
                self.assertTrue(wait_for(lambda: not self.sessions_on_disk(), 5.0),
                                self.sessions_on_disk())
                self.assertTrue(wait_for(lambda: used(self.fs.path) <= baseline + MIB, 5.0),
                                "%d bytes used, %d before" % (used(self.fs.path), baseline))
                full = log_messages(self.w, "disk full")
                self.assertEqual(len(full), n + 1, full)
                self.assertIn("/v2/big/blobs/uploads/", full[-1]["path"])
                self.assertIn("No space left on device", full[-1]["error"])
        # What follows works: a push that fits, pulls of what was there.
        after = self.push_image("after", "after")
        self.pull_ok("before", before)
        self.pull_ok("after", after)
        self.assertNotIn("storage error", self.w.log())

    def test_manifest_put_on_a_full_disk(self):
        self.start()
        img = images.single_image(os.path.join(self.tmp, "img"), "v1", salt="m")
        for d in img.all_digests() - {img.digest}:
            with open(os.path.join(img.layout, "blobs", "sha256", d.split(":")[1]), "rb") as f:
                data = f.read()
            st, h, b = self.w.request("POST", "/v2/img/blobs/uploads/?digest=" + d, data,
                                      {"Content-Type": "application/octet-stream"})
            self.assertEqual(st, 201, b)
        filler = self.fs.fill()
        st, h, b = self.w.request("PUT", "/v2/img/manifests/v1", img.manifest,
                                  {"Content-Type": img.media_type})
        check_full_answer(self, st, b)
        self.assertEqual(len(log_messages(self.w, "disk full")), 1)
        tmp = os.path.join(self.root, ".wharf", "tmp")
        self.assertEqual(os.listdir(tmp), [])
        os.unlink(filler)
        st, h, b = self.w.request("PUT", "/v2/img/manifests/v1", img.manifest,
                                  {"Content-Type": img.media_type})
        self.assertEqual(st, 201, b)
        self.pull_ok("img", img)


def upstream_blob(client, repo, data):
    """Upload data to Distribution (POST, then PUT ?digest=). Returns the digest."""
    d = sha256(data)
    st, h, b, _ = client.request("POST", "/v2/%s/blobs/uploads/" % repo)
    assert st == 202, (st, b[:300])
    loc = urllib.parse.urlsplit(h["location"])
    path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + d
    st, _, b, _ = client.request("PUT", path, {"Content-Type": "application/octet-stream"},
                                 data)
    assert st == 201, (st, b[:300])
    return d


def upstream_image(client, repo, tag, layer):
    """An image of one layer in Distribution: its manifest's bytes."""
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
    assert st == 201, (st, b[:300])
    return body


@unittest.skipUnless(HAVE_UPSTREAM, "docker-registry not installed")
class TestCacheFill(FullDiskTest):
    """(b) Pull-through fills from the real upstream that do not fit."""

    @classmethod
    def setUpClass(cls):
        cls.dist = up.Distribution().start()
        client = up.RegistryClient(cls.dist.url)
        cls.big = random_bytes(40 * MIB, 2)
        cls.big_manifest = upstream_image(client, "lib/big", "v1", cls.big)
        cls.small = random_bytes(300 << 10, 3)
        cls.small_manifest = upstream_image(client, "lib/small", "v1", cls.small)

    @classmethod
    def tearDownClass(cls):
        cls.dist.stop()
        cls.dist.cleanup()

    def start_cache(self):
        return self.start(up.sync_config(self.dist.url, destination="/up", maxRetries=0,
                                         retryDelay="1s"))

    def get(self, path, timeout=30):
        """(status, body), or (None, bytes so far) when the connection is cut."""
        c = http.client.HTTPConnection("127.0.0.1", self.w.port, timeout=timeout)
        try:
            c.request("GET", path, headers={"Accept": up.MANIFEST_ACCEPT})
            r = c.getresponse()
            try:
                return r.status, r.read()
            except (http.client.IncompleteRead, ConnectionResetError) as e:
                return None, getattr(e, "partial", b"")
        except (http.client.HTTPException, ConnectionResetError):
            return None, b""
        finally:
            c.close()

    def assert_not_the_upstreams(self):
        log = self.w.log()
        for blame in ("upstream registry is unavailable", "upstream is down",
                      "upstream request failed", "blob fetch failed"):
            self.assertNotIn(blame, log)

    def test_blob_fill_larger_than_the_disk(self):
        self.start_cache()
        st, b = self.get("/v2/up/lib/big/manifests/v1")
        self.assertEqual((st, b), (200, self.big_manifest))
        baseline = used(self.fs.path)
        path = "/v2/up/lib/big/blobs/" + sha256(self.big)
        # Three in a row: three failed exchanges would take the upstream down.
        for n in range(3):
            st, body = self.get(path)
            if st is not None:  # else: cut after its head, as a mismatch is
                check_full_answer(self, st, body)
            self.assertTrue(wait_for(lambda: len(log_messages(self.w, "disk full")) == n + 1,
                                     5.0), self.w.log()[-3000:])
            rec = log_messages(self.w, "disk full")[-1]
            self.assertEqual(rec.get("digest"), sha256(self.big))
            self.assertEqual(rec.get("repo"), "up/lib/big")
            # Its temp file went at once.
            self.assertTrue(wait_for(lambda: not up.tmp_files(self.root), 5.0),
                            up.tmp_files(self.root))
            self.assertTrue(wait_for(lambda: used(self.fs.path) <= baseline + MIB, 5.0))
        self.assert_not_the_upstreams()
        self.assertFalse(up.root_has_blob(self.root, sha256(self.big)))
        # The upstream is up: the next fill that fits is whole.
        st, b = self.get("/v2/up/lib/small/manifests/v1")
        self.assertEqual((st, b), (200, self.small_manifest))
        st, b = self.get("/v2/up/lib/small/blobs/" + sha256(self.small))
        self.assertEqual(st, 200)
        self.assertEqual(sha256(b), sha256(self.small))
        self.assertTrue(wait_for(lambda: up.root_has_blob(self.root, sha256(self.small)), 5.0))
        self.assertEqual(up.tmp_files(self.root), [])
        self.assert_not_the_upstreams()

    def test_manifest_fill_on_a_full_disk(self):
        self.start_cache()
        filler = self.fs.fill()
        st, b = self.get("/v2/up/lib/small/manifests/v1")
        check_full_answer(self, st, b)
        self.assertEqual(len(log_messages(self.w, "disk full")), 1, self.w.log()[-3000:])
        self.assert_not_the_upstreams()
        os.unlink(filler)
        st, b = self.get("/v2/up/lib/small/manifests/v1")
        self.assertEqual((st, b), (200, self.small_manifest))


class TestStaleSessions(unittest.TestCase):
    """(c) Upload sessions older than storage.gcDelay go when the server
    starts; younger ones stay (and resume); without gc nothing goes."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wharf-stale-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.tmp, "data")

    def wharf(self, storage):
        cfg = {"storage": dict({"rootDirectory": self.root}, **storage)}
        w = Wharf(cfg).start()
        self.addCleanup(lambda: (w.stop(), w.cleanup()))
        return w

    def session(self, w, data):
        st, h, b = w.request("POST", "/v2/s/blobs/uploads/", b"")
        self.assertEqual(st, 202, b)
        loc = urllib.parse.urlsplit(h["location"]).path
        st, h, b = w.request("PATCH", loc, data, {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 202, b)
        return loc, loc.rsplit("/", 1)[1]

    def age(self, sid, hours):
        p = os.path.join(self.root, ".wharf", "uploads", sid, "data")
        t = time.time() - hours * 3600
        os.utime(p, (t, t))

    def on_disk(self, sid):
        return os.path.isdir(os.path.join(self.root, ".wharf", "uploads", sid))

    def swept(self, w):
        """Sessions the first GC sweep removed (it logs only a count > 0)."""
        self.assertTrue(wait_for(lambda: log_messages(w, "gc successfully completed"), 5.0),
                        w.log()[-2000:])
        recs = log_messages(w, "removed stale upload sessions")
        self.assertLessEqual(len(recs), 1, w.log()[-2000:])
        return recs[0]["count"] if recs else 0

    def test_stale_sessions_go_at_start(self):
        w = self.wharf({"gc": True, "gcDelay": "1h"})
        self.assertEqual(self.swept(w), 0)
        old = [self.session(w, b"old %d" % i) for i in range(2)]
        young_loc, young = self.session(w, b"young ")
        w.stop()
        for _, sid in old:
            self.age(sid, 2)
        self.age(young, 0.5)  # younger than gcDelay
        w = self.wharf({"gc": True, "gcDelay": "1h"})
        self.assertEqual(self.swept(w), 2)
        for loc, sid in old:
            self.assertFalse(self.on_disk(sid))
            self.assertEqual(w.request("GET", loc)[0], 404)
        self.assertTrue(self.on_disk(young))
        data = b"young and whole"
        st, h, b = w.request("PUT", young_loc + "?digest=" + sha256(data), data[6:],
                             {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, b)
        st, h, b = w.request("GET", "/v2/s/blobs/" + sha256(data))
        self.assertEqual((st, b), (200, data))

    def test_gc_delay_zero_and_gc_off(self):
        w = self.wharf({"gc": False})
        _, kept = self.session(w, b"kept")
        w.stop()
        self.age(kept, 48)
        # Without gc nothing is collected, however old.
        w = self.wharf({"gc": False})
        time.sleep(0.3)
        self.assertEqual(log_messages(w, "removed stale upload sessions"), [])
        self.assertTrue(self.on_disk(kept))
        _, fresh = self.session(w, b"fresh")
        w.stop()
        # gcDelay 0: every session not in use, however young.
        w = self.wharf({"gc": True, "gcDelay": "0s"})
        self.assertEqual(self.swept(w), 2)
        self.assertFalse(self.on_disk(kept) or self.on_disk(fresh))


if __name__ == "__main__":
    unittest.main()
