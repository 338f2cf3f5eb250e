"""Hardening of the store's paths, against the real binary: defects a client
can trigger with ordinary requests, each checked the way it showed.

- Upload sessions evicted from the in-memory table were re-hashed in full on
  the loop whenever they were touched again (every status request, every body
  piece): the bytes a request makes wharf read are counted with
  /proc/<pid>/io's rchar, which cannot flake the way a timing can.
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
import socket
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Wharf  # noqa: E402
from test_oci_conformance import (Client, error_codes, sha256,  # noqa: E402
                                  split_location)

UPLOADS_OPEN_MAX = 256  # WH_UPLOADS_OPEN_MAX in include/wharf/store.h
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

def make_repos_on_disk(root, names):
    for n in names:
        d = os.path.join(root, *n.split("/"))
        os.makedirs(os.path.join(d, "blobs", "sha256"), exist_ok=True)
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
        # Nor is "from=" inside another value a source repository.
        self.c.push_blob("q/src", b"mountme")
        st, h, b = self.w.request("POST", "/v2/q/dst/blobs/uploads/?mount=%s&x=from=q/src"
                                  % sha256(b"mountme"), b"")
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
