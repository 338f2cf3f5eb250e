"""OCI Distribution Spec v1.1.1 conformance, against the real wharf binary.

Written from the spec text (/work/shared/specs/oci-distribution-spec-v1.1.1.md):
every endpoint end-1..end-13 and the error codes, with status, headers and
bodies checked. One server per test class; each test works in its own
repository, so tests are independent.

Run: WHARF_BIN=../../build/wharf python3 -m unittest -v test_oci_conformance
"""

import hashlib
import json
import os
import re
import socket
import sys
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Wharf  # noqa: E402

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# The spec's error code table (code-1 .. code-14).
SPEC_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED",
    "TOOMANYREQUESTS",
}

NAME_RE = re.compile(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, **extra):
    d = {"mediaType": media_type, "digest": sha256(data), "size": len(data)}
    d.update(extra)
    return d


def enc(doc, pretty=False):
    """JSON bytes; pretty=True gives unusual whitespace so byte-exactness shows."""
    if pretty:
        return (json.dumps(doc, indent=3, sort_keys=False) + "\n").encode()
    return json.dumps(doc, separators=(",", ":")).encode()


def error_codes(body):
    """The codes of a spec error body; fails (AssertionError) when the body is
    not in the spec's JSON error format."""
    doc = json.loads(body)
    assert isinstance(doc, dict) and isinstance(doc.get("errors"), list) and doc["errors"], body
    codes = []
    for e in doc["errors"]:
        assert isinstance(e.get("code"), str) and re.fullmatch(r"[A-Z_]+", e["code"]), body
        if "message" in e:
            assert isinstance(e["message"], str), body
        codes.append(e["code"])
    return codes


def split_location(loc):
    """Relative path (+query) of a Location header, absolute or relative."""
    u = urllib.parse.urlsplit(loc)
    return u.path + ("?" + u.query if u.query else "")


def with_query(loc, **params):
    path = split_location(loc)
    sep = "&" if "?" in path else "?"
    return path + sep + urllib.parse.urlencode(params)


class Client:
    """Registry operations on a Wharf, asserting the success cases."""

    def __init__(self, test, w):
        self.t = test
        self.w = w

    def req(self, method, path, body=None, headers=None):
        return self.w.request(method, path, body=body, headers=headers or {})

    def push_blob(self, repo, data):
        d = sha256(data)
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, d), data,
                            {"Content-Type": "application/octet-stream"})
        self.t.assertEqual(st, 201, b)
        return d

    def push_manifest(self, repo, ref, data, media_type=MT_OCI_MANIFEST):
        st, h, b = self.req("PUT", "/v2/%s/manifests/%s" % (repo, ref), data,
                            {"Content-Type": media_type})
        self.t.assertEqual(st, 201, b)
        self.t.assertEqual(h.get("docker-content-digest"), sha256(data))
        return sha256(data)

    def push_image(self, repo, tag=None, seed="x", layers=1, media_type=MT_OCI_MANIFEST,
                   extra=None, pretty=False):
        """Config + layers + manifest; returns (manifest bytes, digest, blobs)."""
        config = enc({"architecture": "amd64", "os": "linux", "seed": seed,
                      "rootfs": {"type": "layers", "diff_ids": []}})
        blobs = [config]
        self.push_blob(repo, config)
        ls = []
        for i in range(layers):
            layer = ("layer %s %d " % (seed, i)).encode() * 7
            self.push_blob(repo, layer)
            blobs.append(layer)
            ls.append(descriptor(MT_DOCKER_LAYER if media_type == MT_DOCKER_MANIFEST
                                 else MT_OCI_LAYER, layer))
        m = {"schemaVersion": 2, "mediaType": media_type,
             "config": descriptor(MT_DOCKER_CONFIG if media_type == MT_DOCKER_MANIFEST
                                  else MT_OCI_CONFIG, config),
             "layers": ls}
        if extra:
            m.update(extra)
        data = enc(m, pretty)
        d = self.push_manifest(repo, tag or sha256(data), data, media_type)
        return data, d, blobs


class RegistryTest(unittest.TestCase):
    """One wharf for the whole class; self.repo is unique to each test."""

    w = None

    @classmethod
    def setUpClass(cls):
        cls.w = Wharf().start()

    @classmethod
    def tearDownClass(cls):
        if cls.w:
            cls.w.stop()
            cls.w.cleanup()

    def setUp(self):
        self.c = Client(self, self.w)
        self.repo = "conf/" + self._testMethodName.lower()
        self.assertTrue(NAME_RE.match(self.repo), self.repo)

    def tearDown(self):
        # The server must still be alive after every test.
        self.assertIsNone(self.w.proc.poll(), "wharf exited; log:\n" + self.w.log()[-4000:])

    def req(self, method, path, body=None, headers=None):
        return self.w.request(method, path, body=body, headers=headers or {})

    def assertError(self, resp, status, code=None):
        st, h, b = resp
        self.assertEqual(st, status, b)
        if code is None and not b:
            return
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        codes = error_codes(b)
        for c in codes:
            self.assertIn(c, SPEC_CODES, "error code not in the spec's table: %r" % b)
        if code is not None:
            self.assertIn(code, codes, b)

    def start_upload(self, repo=None):
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/" % (repo or self.repo), b"",
                            {"Content-Length": "0"})
        self.assertEqual(st, 202, b)
        self.assertIn("location", h)
        return h["location"]


# ---------------------------------------------------------------------------
# end-1
# ---------------------------------------------------------------------------

class TestBase(RegistryTest):
    def test_v2_base(self):
        st, h, b = self.req("GET", "/v2/")
        self.assertEqual(st, 200)
        self.assertEqual(h.get("docker-distribution-api-version"), "registry/2.0")
        st, h, b = self.req("HEAD", "/v2/")
        self.assertEqual(st, 200)
        self.assertEqual(b, b"")

    def test_unknown_route_error_code_from_spec_table(self):
        # A JSON error body's code MUST be one of the spec's table.
        self.assertError(self.req("GET", "/v2/foo/bar/baz"), 404)
        self.assertError(self.req("GET", "/v3/"), 404)


# ---------------------------------------------------------------------------
# Pull: end-2, end-3
# ---------------------------------------------------------------------------

class TestPull(RegistryTest):
    def test_manifest_get_by_tag_and_digest(self):
        data, d, _ = self.c.push_image(self.repo, "v1", pretty=True)
        for ref in ("v1", d):
            st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, ref),
                                headers={"Accept": MT_OCI_MANIFEST})
            self.assertEqual(st, 200)
            self.assertEqual(b, data)  # byte-exact
            self.assertEqual(h["content-type"], MT_OCI_MANIFEST)
            self.assertEqual(h["docker-content-digest"], d)
            self.assertEqual(int(h["content-length"]), len(data))

    def test_manifest_head_by_tag_and_digest(self):
        data, d, _ = self.c.push_image(self.repo, "v1")
        for ref in ("v1", d):
            st, h, b = self.req("HEAD", "/v2/%s/manifests/%s" % (self.repo, ref))
            self.assertEqual(st, 200)
            self.assertEqual(b, b"")
            self.assertEqual(h["content-type"], MT_OCI_MANIFEST)
            self.assertEqual(h["docker-content-digest"], d)
            self.assertEqual(int(h["content-length"]), len(data))

    def test_manifest_content_type_is_pushed_type_without_mediatype_field(self):
        # No mediaType in the body: the type comes from the PUT's Content-Type.
        config = enc({"a": 1})
        self.c.push_blob(self.repo, config)
        m = enc({"schemaVersion": 2, "config": descriptor(MT_OCI_CONFIG, config), "layers": []})
        d = self.c.push_manifest(self.repo, "t", m, MT_OCI_MANIFEST)
        for method in ("GET", "HEAD"):
            st, h, b = self.req(method, "/v2/%s/manifests/%s" % (self.repo, d))
            self.assertEqual(st, 200)
            self.assertEqual(h["content-type"], MT_OCI_MANIFEST)

    def test_content_type_parameters_ignored_on_push(self):
        config = enc({"p": 1})
        self.c.push_blob(self.repo, config)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor(MT_OCI_CONFIG, config), "layers": []})
        st, h, b = self.req("PUT", "/v2/%s/manifests/p" % self.repo, m,
                            {"Content-Type": MT_OCI_MANIFEST + "; charset=utf-8"})
        self.assertEqual(st, 201, b)
        st, h, b = self.req("GET", "/v2/%s/manifests/p" % self.repo)
        self.assertEqual(h["content-type"], MT_OCI_MANIFEST)

    def test_blob_get_and_head(self):
        data = os.urandom(70000)
        d = self.c.push_blob(self.repo, data)
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual(st, 200)
        self.assertEqual(b, data)
        self.assertEqual(h["docker-content-digest"], d)
        self.assertEqual(int(h["content-length"]), len(data))
        st, h, b = self.req("HEAD", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual(st, 200)
        self.assertEqual(b, b"")
        self.assertEqual(h["docker-content-digest"], d)
        self.assertEqual(int(h["content-length"]), len(data))

    def test_empty_blob(self):
        d = self.c.push_blob(self.repo, b"")
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual(st, 200)
        self.assertEqual(b, b"")
        self.assertEqual(h["content-length"], "0")

    def test_blob_range(self):
        data = bytes(range(256)) * 4  # 1024 bytes
        d = self.c.push_blob(self.repo, data)
        path = "/v2/%s/blobs/%s" % (self.repo, d)
        cases = [
            ("bytes=10-19", 10, 19),
            ("bytes=0-0", 0, 0),
            ("bytes=-100", 924, 1023),   # suffix
            ("bytes=1000-", 1000, 1023),  # open
            ("bytes=1000-5000", 1000, 1023),  # end past size: clamped
            ("bytes=1000-1024", 1000, 1023),  # end at size: clamped
            ("bytes=1000-1023", 1000, 1023),  # end at size - 1: the last byte
            ("bytes=1000-1022", 1000, 1022),
            ("bytes=0-1024", 0, 1023),
            ("bytes=1023-1024", 1023, 1023),
            ("bytes=1023-", 1023, 1023),
            ("bytes=-1024", 0, 1023),    # suffix as long as the blob
            ("bytes=-5000", 0, 1023),    # suffix longer than the blob
        ]
        for rng, a, z in cases:
            with self.subTest(rng=rng):
                # A short timeout: a Content-Length the body does not fill
                # would otherwise hang the read.
                st, h, b = self.w.request("GET", path, headers={"Range": rng}, timeout=5)
                self.assertEqual(st, 206, rng)
                self.assertEqual(h["content-range"], "bytes %d-%d/1024" % (a, z))
                self.assertEqual(int(h["content-length"]), z - a + 1)
                self.assertEqual(b, data[a:z + 1])
        # Unsatisfiable, a reversed range included (RFC 9110 lets a server
        # reject it; sending the whole blob instead would hand a client that
        # asked for a few bytes all of them).
        for rng in ("bytes=1024-", "bytes=5000-6000", "bytes=-0", "bytes=20-10", "bytes=500-0"):
            for method in ("GET", "HEAD"):
                with self.subTest(rng=rng, method=method):
                    st, h, b = self.req(method, path, headers={"Range": rng})
                    self.assertEqual(st, 416, rng)
                    self.assertEqual(h["content-range"], "bytes */1024")
                    self.assertEqual(b, b"")
        # Not a byte range, or not a usable one (RFC 9110: ignored): the whole blob.
        for rng in ("items=0-1", "bytes=0-1,5-6", "bytes=x-"):
            with self.subTest(rng=rng):
                st, h, b = self.w.request("GET", path, headers={"Range": rng}, timeout=5)
                self.assertEqual((st, b), (200, data))

    def test_manifest_unknown(self):
        self.c.push_image(self.repo, "v1")
        self.assertError(self.req("GET", "/v2/%s/manifests/nope" % self.repo), 404,
                         "MANIFEST_UNKNOWN")
        self.assertError(self.req("GET", "/v2/%s/manifests/%s" % (self.repo, sha256(b"no"))),
                         404, "MANIFEST_UNKNOWN")
        st, h, b = self.req("HEAD", "/v2/%s/manifests/nope" % self.repo)
        self.assertEqual(st, 404)
        self.assertEqual(b, b"")

    def test_blob_unknown(self):
        self.c.push_blob(self.repo, b"something")
        self.assertError(self.req("GET", "/v2/%s/blobs/%s" % (self.repo, sha256(b"no"))),
                         404, "BLOB_UNKNOWN")
        st, h, b = self.req("HEAD", "/v2/%s/blobs/%s" % (self.repo, sha256(b"no")))
        self.assertEqual(st, 404)
        self.assertEqual(b, b"")

    def test_blob_of_another_repo_is_not_served(self):
        d = self.c.push_blob(self.repo + "/other", b"private bytes")
        self.assertError(self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d)), 404)
        self.c.push_blob(self.repo, b"x")
        self.assertError(self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d)), 404,
                         "BLOB_UNKNOWN")

    def test_unknown_repository(self):
        r = self.repo + "/never/pushed"
        self.assertError(self.req("GET", "/v2/%s/manifests/latest" % r), 404, "NAME_UNKNOWN")
        self.assertError(self.req("GET", "/v2/%s/tags/list" % r), 404, "NAME_UNKNOWN")
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (r, sha256(b"x")))
        self.assertEqual(st, 404)
        self.assertTrue(set(error_codes(b)) & {"BLOB_UNKNOWN", "NAME_UNKNOWN"}, b)


# ---------------------------------------------------------------------------
# Push: end-4a, end-4b, end-5, end-6, end-11, end-13
# ---------------------------------------------------------------------------

class TestPushBlobs(RegistryTest):
    def test_monolithic_post(self):
        data = b"monolithic post"
        d = sha256(data)
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (self.repo, d), data,
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], d)
        loc = split_location(h["location"])
        st, h, b = self.req("GET", loc)
        self.assertEqual(st, 200)
        self.assertEqual(b, data)

    def test_monolithic_post_wrong_digest(self):
        data = b"these bytes"
        wrong = sha256(b"other bytes")
        self.assertError(self.req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (self.repo, wrong),
                                  data, {"Content-Type": "application/octet-stream"}),
                         400, "DIGEST_INVALID")
        for dg in (wrong, sha256(data)):
            st, h, b = self.req("HEAD", "/v2/%s/blobs/%s" % (self.repo, dg))
            self.assertEqual(st, 404)

    def test_post_then_put(self):
        data = os.urandom(5000)
        d = sha256(data)
        loc = self.start_upload()
        self.assertTrue(h_uuid_like(loc), loc)
        st, h, b = self.req("PUT", with_query(loc, digest=d), data,
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], d)
        st, h, b = self.req("GET", split_location(h["location"]))
        self.assertEqual((st, b), (200, data))
        # The session is over.
        self.assertError(self.req("GET", split_location(loc)), 404, "BLOB_UPLOAD_UNKNOWN")

    def test_upload_sessions_are_distinct(self):
        self.assertNotEqual(self.start_upload(), self.start_upload())

    def test_chunked_upload(self):
        data = os.urandom(3000)
        d = sha256(data)
        loc = self.start_upload()
        chunks = [(0, 999), (1000, 1999)]
        for a, z in chunks:
            st, h, b = self.req("PATCH", split_location(loc), data[a:z + 1],
                                {"Content-Type": "application/octet-stream",
                                 "Content-Range": "%d-%d" % (a, z)})
            self.assertEqual(st, 202, b)
            self.assertEqual(h["range"], "0-%d" % z)
            self.assertIn("location", h)
            loc = h["location"]
        # Status of the session (end-13).
        st, h, b = self.req("GET", split_location(loc))
        self.assertEqual(st, 204)
        self.assertEqual(b, b"")
        self.assertEqual(h["range"], "0-1999")
        self.assertIn("location", h)
        # Last chunk with a PATCH, then close with an empty PUT.
        st, h, b = self.req("PATCH", split_location(h["location"]), data[2000:],
                            {"Content-Type": "application/octet-stream",
                             "Content-Range": "2000-2999"})
        self.assertEqual(st, 202, b)
        self.assertEqual(h["range"], "0-2999")
        st, h, b = self.req("PUT", with_query(h["location"], digest=d), b"",
                            {"Content-Length": "0"})
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], d)
        st, h, b = self.req("GET", split_location(h["location"]))
        self.assertEqual((st, b), (200, data))

    def test_chunk_out_of_order_416(self):
        data = os.urandom(300)
        loc = self.start_upload()
        st, h, b = self.req("PATCH", split_location(loc), data[:100],
                            {"Content-Range": "0-99", "Content-Type": "application/octet-stream"})
        self.assertEqual(st, 202, b)
        loc = h["location"]
        # A gap, an overlap, and a first chunk that does not begin at 0.
        for a, z in ((150, 249), (50, 149), (0, 99)):
            with self.subTest(range=(a, z)):
                st, h, b = self.req("PATCH", split_location(loc), data[a:z + 1],
                                    {"Content-Range": "%d-%d" % (a, z),
                                     "Content-Type": "application/octet-stream"})
                self.assertEqual(st, 416, b)
        # The session is unharmed: the status still says 0-99 and the upload completes.
        st, h, b = self.req("GET", split_location(loc))
        self.assertEqual(st, 204)
        self.assertEqual(h["range"], "0-99")
        st, h, b = self.req("PATCH", split_location(loc), data[100:],
                            {"Content-Range": "100-299",
                             "Content-Type": "application/octet-stream"})
        self.assertEqual(st, 202, b)
        st, h, b = self.req("PUT", with_query(h["location"], digest=sha256(data)), b"")
        self.assertEqual(st, 201, b)

    def test_first_chunk_not_at_zero_416(self):
        loc = self.start_upload()
        st, h, b = self.req("PATCH", split_location(loc), b"x" * 10,
                            {"Content-Range": "5-14", "Content-Type": "application/octet-stream"})
        self.assertEqual(st, 416, b)

    def test_streamed_patch_without_content_range(self):
        data = os.urandom(200000)
        d = sha256(data)
        loc = self.start_upload()
        # Chunked transfer encoding: the length is not known in advance.
        c = self.w.conn()
        try:
            c.request("PATCH", split_location(loc),
                      body=iter([data[:70000], data[70000:140000], data[140000:]]),
                      headers={"Content-Type": "application/octet-stream"},
                      encode_chunked=True)
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 202)
            self.assertEqual(r.getheader("Range"), "0-%d" % (len(data) - 1))
            loc = r.getheader("Location")
        finally:
            c.close()
        st, h, b = self.req("PUT", with_query(loc, digest=d), b"")
        self.assertEqual(st, 201, b)
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual(b, data)

    def test_streamed_patch_with_length_only(self):
        data = b"abc" * 1000
        loc = self.start_upload()
        st, h, b = self.req("PATCH", split_location(loc), data[:1500],
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 202, b)
        self.assertEqual(h["range"], "0-1499")
        st, h, b = self.req("PATCH", split_location(h["location"]), data[1500:],
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 202, b)
        self.assertEqual(h["range"], "0-2999")
        st, h, b = self.req("PUT", with_query(h["location"], digest=sha256(data)), b"")
        self.assertEqual(st, 201, b)

    def test_final_chunk_in_closing_put(self):
        data = os.urandom(2500)
        d = sha256(data)
        loc = self.start_upload()
        st, h, b = self.req("PATCH", split_location(loc), data[:2000],
                            {"Content-Range": "0-1999", "Content-Type": "application/octet-stream"})
        self.assertEqual(st, 202, b)
        st, h, b = self.req("PUT", with_query(h["location"], digest=d), data[2000:],
                            {"Content-Range": "2000-2499",
                             "Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, b)
        self.assertIn("location", h)
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual((st, b), (200, data))

    def test_upload_status_initial(self):
        loc = self.start_upload()
        st, h, b = self.req("GET", split_location(loc))
        self.assertEqual(st, 204)
        self.assertIn("location", h)
        self.assertIn("range", h)
        self.assertTrue(re.fullmatch(r"0-\d+", h["range"]), h["range"])

    def test_delete_upload_session(self):
        loc = self.start_upload()
        st, h, b = self.req("PATCH", split_location(loc), b"partial",
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 202)
        st, h, b = self.req("DELETE", split_location(loc))
        self.assertEqual(st, 204, b)
        self.assertError(self.req("GET", split_location(loc)), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(self.req("PATCH", split_location(loc), b"more",
                                  {"Content-Type": "application/octet-stream"}),
                         404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(self.req("PUT", with_query(loc, digest=sha256(b"partial")), b""),
                         404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(self.req("DELETE", split_location(loc)), 404, "BLOB_UPLOAD_UNKNOWN")

    def test_unknown_upload_session(self):
        self.c.push_blob(self.repo, b"exists")
        for sid in ("00000000-0000-4000-8000-000000000000", "not-a-uuid", "x" * 36):
            p = "/v2/%s/blobs/uploads/%s" % (self.repo, sid)
            with self.subTest(sid=sid):
                self.assertError(self.req("GET", p), 404, "BLOB_UPLOAD_UNKNOWN")
                self.assertError(self.req("PATCH", p, b"data"), 404, "BLOB_UPLOAD_UNKNOWN")
                self.assertError(self.req("PUT", p + "?digest=" + sha256(b"data"), b"data"), 404,
                                 "BLOB_UPLOAD_UNKNOWN")
                self.assertError(self.req("DELETE", p), 404, "BLOB_UPLOAD_UNKNOWN")

    def test_session_of_another_repo_is_unknown(self):
        loc = self.start_upload()
        sid = split_location(loc).split("?")[0].rsplit("/", 1)[1]
        other = "/v2/%s/other/blobs/uploads/%s" % (self.repo, sid)
        self.assertError(self.req("GET", other), 404, "BLOB_UPLOAD_UNKNOWN")

    def test_close_with_wrong_digest(self):
        data = b"the real content"
        loc = self.start_upload()
        wrong = sha256(b"not it")
        self.assertError(self.req("PUT", with_query(loc, digest=wrong), data,
                                  {"Content-Type": "application/octet-stream"}),
                         400, "DIGEST_INVALID")
        for dg in (wrong, sha256(data)):
            st, h, b = self.req("HEAD", "/v2/%s/blobs/%s" % (self.repo, dg))
            self.assertEqual(st, 404)

    def test_close_without_digest(self):
        loc = self.start_upload()
        st, h, b = self.req("PUT", split_location(loc), b"data",
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 400, b)
        if b:
            error_codes(b)
        # The session is still usable.
        st, h, b = self.req("GET", split_location(loc))
        self.assertEqual(st, 204)

    def test_close_with_malformed_digest(self):
        loc = self.start_upload()
        self.assertError(self.req("PUT", with_query(loc, digest="sha256:nothex"), b"x"), 400,
                         "DIGEST_INVALID")
        # sha512 is registered and served (test_sha512.py); sha384 is not.
        self.assertError(self.req("PUT", with_query(loc, digest="sha384:" + "a" * 96), b"x"),
                         400, "UNSUPPORTED")

    def test_push_existing_blob_again(self):
        data = b"twice"
        self.c.push_blob(self.repo, data)
        self.c.push_blob(self.repo, data)
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (self.repo, sha256(data)))
        self.assertEqual((st, b), (200, data))

    def test_mount_from_repo_that_has_it(self):
        src = self.repo + "/src"
        data = b"mount me"
        d = self.c.push_blob(src, data)
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s" % (self.repo, d, src),
                            b"")
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], d)
        st, h, b = self.req("GET", split_location(h["location"]))
        self.assertEqual((st, b), (200, data))
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual((st, b), (200, data))

    def test_mount_when_source_lacks_it(self):
        src = self.repo + "/src"
        self.c.push_blob(src, b"something else")
        data = b"not in src"
        d = sha256(data)
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s" % (self.repo, d, src),
                            b"")
        self.assertEqual(st, 202, b)
        self.assertIn("location", h)
        # The 202 began an upload session: use it.
        st, h, b = self.req("PUT", with_query(h["location"], digest=d), data,
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, b)
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual((st, b), (200, data))

    def test_mount_from_unknown_repo(self):
        d = sha256(b"whatever")
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s" %
                            (self.repo, d, "conf/no/such/repo"), b"")
        self.assertEqual(st, 202, b)
        self.assertIn("location", h)


def h_uuid_like(loc):
    return re.search(r"/blobs/uploads/[0-9a-zA-Z-]{8,}", loc) is not None


class TestPushManifests(RegistryTest):
    def test_put_by_tag(self):
        data, d, _ = self.c.push_image(self.repo, "latest")
        st, h, b = self.req("GET", "/v2/%s/manifests/latest" % self.repo)
        self.assertEqual((st, b), (200, data))

    def test_put_response_headers(self):
        config = enc({"h": 1})
        self.c.push_blob(self.repo, config)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor(MT_OCI_CONFIG, config), "layers": []})
        st, h, b = self.req("PUT", "/v2/%s/manifests/v1" % self.repo, m,
                            {"Content-Type": MT_OCI_MANIFEST})
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], sha256(m))
        self.assertNotIn("oci-subject", h)
        st, h, b = self.req("GET", split_location(h["location"]))
        self.assertEqual((st, b), (200, m))

    def test_put_by_digest(self):
        config = enc({"bd": 1})
        self.c.push_blob(self.repo, config)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor(MT_OCI_CONFIG, config), "layers": []}, pretty=True)
        d = sha256(m)
        st, h, b = self.req("PUT", "/v2/%s/manifests/%s" % (self.repo, d), m,
                            {"Content-Type": MT_OCI_MANIFEST})
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], d)
        st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, d))
        self.assertEqual((st, b), (200, m))
        # No tag was made.
        st, h, b = self.req("GET", "/v2/%s/tags/list" % self.repo)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(b)["tags"], [])

    def test_put_by_digest_mismatch(self):
        config = enc({"mm": 1})
        self.c.push_blob(self.repo, config)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor(MT_OCI_CONFIG, config), "layers": []})
        wrong = sha256(m + b" ")
        self.assertError(self.req("PUT", "/v2/%s/manifests/%s" % (self.repo, wrong), m,
                                  {"Content-Type": MT_OCI_MANIFEST}), 400, "DIGEST_INVALID")
        for dg in (wrong, sha256(m)):
            st, h, b = self.req("HEAD", "/v2/%s/manifests/%s" % (self.repo, dg))
            self.assertEqual(st, 404)

    def test_missing_config_blob(self):
        layer = b"layer"
        self.c.push_blob(self.repo, layer)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor(MT_OCI_CONFIG, b"missing config"),
                 "layers": [descriptor(MT_OCI_LAYER, layer)]})
        self.assertError(self.req("PUT", "/v2/%s/manifests/t" % self.repo, m,
                                  {"Content-Type": MT_OCI_MANIFEST}), 400, "MANIFEST_BLOB_UNKNOWN")
        st, h, b = self.req("HEAD", "/v2/%s/manifests/t" % self.repo)
        self.assertEqual(st, 404)

    def test_missing_layer_blob(self):
        config = enc({"ml": 1})
        self.c.push_blob(self.repo, config)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor(MT_OCI_CONFIG, config),
                 "layers": [descriptor(MT_OCI_LAYER, b"missing layer")]})
        self.assertError(self.req("PUT", "/v2/%s/manifests/t" % self.repo, m,
                                  {"Content-Type": MT_OCI_MANIFEST}), 400, "MANIFEST_BLOB_UNKNOWN")

    def test_blob_of_other_repo_does_not_satisfy_manifest(self):
        config = enc({"other": 1})
        self.c.push_blob(self.repo + "/elsewhere", config)
        self.c.push_blob(self.repo, b"placeholder")
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor(MT_OCI_CONFIG, config), "layers": []})
        self.assertError(self.req("PUT", "/v2/%s/manifests/t" % self.repo, m,
                                  {"Content-Type": MT_OCI_MANIFEST}), 400, "MANIFEST_BLOB_UNKNOWN")

    def test_index(self):
        m1, d1, _ = self.c.push_image(self.repo, None, seed="amd64")
        m2, d2, _ = self.c.push_image(self.repo, None, seed="arm64")
        idx = enc({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
            descriptor(MT_OCI_MANIFEST, m1, platform={"architecture": "amd64", "os": "linux"}),
            descriptor(MT_OCI_MANIFEST, m2, platform={"architecture": "arm64", "os": "linux"}),
        ]}, pretty=True)
        d = self.c.push_manifest(self.repo, "multi", idx, MT_OCI_INDEX)
        for ref in ("multi", d):
            st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, ref))
            self.assertEqual((st, b), (200, idx))
            self.assertEqual(h["content-type"], MT_OCI_INDEX)
            self.assertEqual(h["docker-content-digest"], d)

    def test_index_with_missing_child(self):
        m1, d1, _ = self.c.push_image(self.repo, None, seed="present")
        missing = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                       "config": descriptor(MT_OCI_CONFIG, b"c"), "layers": []})
        idx = enc({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
            descriptor(MT_OCI_MANIFEST, m1), descriptor(MT_OCI_MANIFEST, missing)]})
        self.assertError(self.req("PUT", "/v2/%s/manifests/multi" % self.repo, idx,
                                  {"Content-Type": MT_OCI_INDEX}), 400, "MANIFEST_BLOB_UNKNOWN")

    def test_invalid_json(self):
        self.c.push_blob(self.repo, b"x")
        for body in (b"{not json", b"", b"[]", b"\"string\"", b"{\"schemaVersion\":2,"):
            with self.subTest(body=body):
                self.assertError(self.req("PUT", "/v2/%s/manifests/bad" % self.repo, body,
                                          {"Content-Type": MT_OCI_MANIFEST}),
                                 400, "MANIFEST_INVALID")

    def test_manifest_too_large(self):
        # Over 4 MiB: 413. The server may answer before reading the body, so
        # announce it with Expect: 100-continue and send the body only if asked.
        size = 4 * 1024 * 1024 + 1
        s = socket.create_connection(("127.0.0.1", self.w.port), timeout=10)
        try:
            s.sendall(("PUT /v2/%s/manifests/big HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: %s\r\nContent-Length: %d\r\n"
                       "Expect: 100-continue\r\n\r\n" % (self.repo, MT_OCI_MANIFEST, size))
                      .encode())
            head = s.recv(65536)
            if head.startswith(b"HTTP/1.1 100"):
                try:
                    s.sendall(b"{" + b" " * (size - 2) + b"}")
                except OSError:
                    pass
                head = head.split(b"\r\n\r\n", 1)[1]
                while b"\r\n\r\n" not in head:
                    more = s.recv(65536)
                    if not more:
                        break
                    head += more
        finally:
            s.close()
        self.assertTrue(head.startswith(b"HTTP/1.1 413"), head[:200])
        st, h, b = self.req("HEAD", "/v2/%s/manifests/big" % self.repo)
        self.assertEqual(st, 404)

    def test_manifest_too_large_chunked(self):
        # Same without a Content-Length: the limit applies to the bytes as they come.
        size = 4 * 1024 * 1024 + 4096
        c = self.w.conn()
        status = None
        try:
            def gen():
                yield b"{\"schemaVersion\":2,\"annotations\":{\"a\":\""
                for _ in range(size // 65536):
                    yield b"a" * 65536
                yield b"\"}}"
            try:
                c.request("PUT", "/v2/%s/manifests/big" % self.repo, body=gen(),
                          headers={"Content-Type": MT_OCI_MANIFEST}, encode_chunked=True)
            except OSError:
                pass  # the server may stop reading once it has answered
            r = c.getresponse()
            status = r.status
        finally:
            c.close()
        self.assertEqual(status, 413)

    def test_manifest_of_4_megabytes_accepted(self):
        # "registry implementations SHOULD expect to be able to support manifest
        # pushes of at least 4 megabytes."
        config = enc({"big": 1})
        self.c.push_blob(self.repo, config)
        base = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                "config": descriptor(MT_OCI_CONFIG, config), "layers": [],
                "annotations": {"pad": ""}}
        pad = 4000000 - len(enc(base))
        base["annotations"]["pad"] = "p" * pad
        m = enc(base)
        self.assertEqual(len(m), 4000000)
        d = self.c.push_manifest(self.repo, "big", m)
        st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, d))
        self.assertEqual(st, 200)
        self.assertEqual(b, m)

    def test_subject_header(self):
        config = enc({"s": 1})
        self.c.push_blob(self.repo, config)
        subject = {"mediaType": MT_OCI_MANIFEST, "size": 1234,
                   "digest": sha256(b"subject that does not exist")}
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "artifactType": "application/vnd.example.sig.v1",
                 "config": descriptor(MT_OCI_CONFIG, config), "layers": [],
                 "subject": subject})
        st, h, b = self.req("PUT", "/v2/%s/manifests/%s" % (self.repo, sha256(m)), m,
                            {"Content-Type": MT_OCI_MANIFEST})
        self.assertEqual(st, 201, b)
        self.assertEqual(h.get("oci-subject"), subject["digest"])

    def test_docker_schema2_manifest_and_list(self):
        data, d, _ = self.c.push_image(self.repo, "docker", media_type=MT_DOCKER_MANIFEST)
        st, h, b = self.req("GET", "/v2/%s/manifests/docker" % self.repo,
                            headers={"Accept": MT_DOCKER_MANIFEST})
        self.assertEqual((st, b), (200, data))
        self.assertEqual(h["content-type"], MT_DOCKER_MANIFEST)
        lst = enc({"schemaVersion": 2, "mediaType": MT_DOCKER_LIST, "manifests": [
            descriptor(MT_DOCKER_MANIFEST, data, platform={"architecture": "amd64",
                                                           "os": "linux"})]})
        ld = self.c.push_manifest(self.repo, "list", lst, MT_DOCKER_LIST)
        for ref in ("list", ld):
            for method in ("GET", "HEAD"):
                st, h, b = self.req(method, "/v2/%s/manifests/%s" % (self.repo, ref),
                                    headers={"Accept": MT_DOCKER_LIST})
                self.assertEqual(st, 200)
                self.assertEqual(h["content-type"], MT_DOCKER_LIST)
                self.assertEqual(h["docker-content-digest"], ld)
                if method == "GET":
                    self.assertEqual(b, lst)

    def test_docker_list_with_missing_child(self):
        self.c.push_blob(self.repo, b"x")
        missing = enc({"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST})
        lst = enc({"schemaVersion": 2, "mediaType": MT_DOCKER_LIST, "manifests": [
            descriptor(MT_DOCKER_MANIFEST, missing)]})
        self.assertError(self.req("PUT", "/v2/%s/manifests/list" % self.repo, lst,
                                  {"Content-Type": MT_DOCKER_LIST}), 400, "MANIFEST_BLOB_UNKNOWN")

    def test_artifact_manifest_with_empty_config(self):
        self.assertEqual(sha256(EMPTY_JSON), EMPTY_JSON_DIGEST)
        self.c.push_blob(self.repo, EMPTY_JSON)
        payload = b"an sbom"
        self.c.push_blob(self.repo, payload)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "artifactType": "application/vnd.example.sbom.v1",
                 "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2},
                 "layers": [descriptor("application/vnd.example.sbom.v1+json", payload)]})
        d = self.c.push_manifest(self.repo, "sbom", m)
        st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, d))
        self.assertEqual((st, b), (200, m))
        # An artifact with only the empty descriptor as a layer.
        m2 = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                  "artifactType": "application/vnd.example.empty.v1",
                  "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2},
                  "layers": [{"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST,
                              "size": 2}]})
        self.c.push_manifest(self.repo, "empty", m2)
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (self.repo, EMPTY_JSON_DIGEST))
        self.assertEqual((st, b), (200, EMPTY_JSON))

    def test_unknown_config_media_type_accepted(self):
        cfg = b"\x00\x01 arbitrary binary config"
        self.c.push_blob(self.repo, cfg)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor("application/vnd.example.unknown.config", cfg),
                 "layers": []})
        self.c.push_manifest(self.repo, "t", m)

    def test_tag_move(self):
        m1, d1, _ = self.c.push_image(self.repo, "moving", seed="one")
        m2, d2, _ = self.c.push_image(self.repo, "moving", seed="two")
        self.assertNotEqual(d1, d2)
        st, h, b = self.req("GET", "/v2/%s/manifests/moving" % self.repo)
        self.assertEqual((st, b), (200, m2))
        self.assertEqual(h["docker-content-digest"], d2)
        # The old manifest is still there by digest.
        st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, d1))
        self.assertEqual((st, b), (200, m1))
        st, h, b = self.req("GET", "/v2/%s/tags/list" % self.repo)
        self.assertEqual(json.loads(b)["tags"], ["moving"])

    def test_same_manifest_two_tags(self):
        m, d, _ = self.c.push_image(self.repo, "a")
        self.c.push_manifest(self.repo, "b", m)
        for t in ("a", "b"):
            st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, t))
            self.assertEqual((st, b), (200, m))
        st, h, b = self.req("GET", "/v2/%s/tags/list" % self.repo)
        self.assertEqual(json.loads(b)["tags"], ["a", "b"])

    def test_content_type_mismatch_with_mediatype(self):
        config = enc({"ct": 1})
        self.c.push_blob(self.repo, config)
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": descriptor(MT_OCI_CONFIG, config), "layers": []})
        st, h, b = self.req("PUT", "/v2/%s/manifests/t" % self.repo, m,
                            {"Content-Type": MT_OCI_INDEX})
        self.assertError((st, h, b), 400, "MANIFEST_INVALID")


# ---------------------------------------------------------------------------
# Content discovery: end-8a, end-8b, end-12a, end-12b, _catalog
# ---------------------------------------------------------------------------

def parse_link(value):
    """'<url>; rel="next"' -> url."""
    m = re.fullmatch(r'\s*<([^>]+)>\s*;\s*rel="?next"?\s*', value)
    assert m, value
    return split_location(m.group(1))


class TestTags(RegistryTest):
    TAGS = ["v1.0", "latest", "0.9", "v2", "alpha", "beta_1", "z-last", "m"]

    def setUp(self):
        super().setUp()
        m, self.d, _ = self.c.push_image(self.repo, None)
        for t in self.TAGS:
            self.c.push_manifest(self.repo, t, m)
        self.all = sorted(self.TAGS)

    def tags(self, query=""):
        st, h, b = self.req("GET", "/v2/%s/tags/list%s" % (self.repo, query))
        self.assertEqual(st, 200, b)
        self.assertTrue(h["content-type"].startswith("application/json"))
        doc = json.loads(b)
        self.assertEqual(doc["name"], self.repo)
        return doc["tags"], h.get("link")

    def test_list_all_sorted(self):
        tags, link = self.tags()
        self.assertEqual(tags, self.all)
        self.assertIsNone(link)

    def test_n(self):
        tags, link = self.tags("?n=3")
        self.assertEqual(tags, self.all[:3])
        self.assertIsNotNone(link)
        tags, link = self.tags("?n=%d" % len(self.all))
        self.assertEqual(tags, self.all)
        self.assertIsNone(link)
        tags, link = self.tags("?n=1000")
        self.assertEqual(tags, self.all)
        self.assertIsNone(link)

    def test_n_zero(self):
        tags, link = self.tags("?n=0")
        self.assertEqual(tags, [])
        self.assertIsNone(link)
        tags, link = self.tags("?n=0&last=alpha")
        self.assertEqual(tags, [])
        self.assertIsNone(link)

    def test_last(self):
        tags, link = self.tags("?last=latest")
        self.assertEqual(tags, [t for t in self.all if t > "latest"])
        tags, link = self.tags("?n=2&last=latest")
        self.assertEqual(tags, [t for t in self.all if t > "latest"][:2])
        # last need not be an existing tag.
        tags, link = self.tags("?last=n")
        self.assertEqual(tags, [t for t in self.all if t > "n"])
        tags, link = self.tags("?last=%s" % self.all[-1])
        self.assertEqual(tags, [])
        self.assertIsNone(link)

    def test_link_pagination(self):
        got, path, pages = [], "/v2/%s/tags/list?n=3" % self.repo, 0
        while path:
            st, h, b = self.req("GET", path)
            self.assertEqual(st, 200, b)
            page = json.loads(b)["tags"]
            self.assertLessEqual(len(page), 3)
            if "link" in h:
                self.assertEqual(len(page), 3)
            got += page
            path = parse_link(h["link"]) if "link" in h else None
            pages += 1
            self.assertLess(pages, 10)
        self.assertEqual(got, self.all)
        self.assertEqual(pages, 3)

    def test_invalid_n(self):
        for q in ("?n=-1", "?n=abc"):
            with self.subTest(q=q):
                st, h, b = self.req("GET", "/v2/%s/tags/list%s" % (self.repo, q))
                self.assertEqual(st, 400, b)

    def test_empty_repository_lists_no_tags(self):
        r = self.repo + "/untagged"
        self.c.push_image(r, None)
        st, h, b = self.req("GET", "/v2/%s/tags/list" % r)
        self.assertEqual(st, 200, b)
        self.assertEqual(json.loads(b), {"name": r, "tags": []})

    def test_case_insensitive_order(self):
        # "the tags MUST be in lexical order (i.e. case-insensitive alphanumeric order)"
        r = self.repo + "/case"
        m, d, _ = self.c.push_image(r, None)
        for t in ("b", "A", "a1", "C"):
            self.c.push_manifest(r, t, m)
        st, h, b = self.req("GET", "/v2/%s/tags/list" % r)
        tags = json.loads(b)["tags"]
        self.assertEqual(tags, sorted(tags, key=str.lower))
        st, h, b = self.req("GET", "/v2/%s/tags/list?n=2" % r)
        page1 = json.loads(b)["tags"]
        st, h, b = self.req("GET", parse_link(h["link"]))
        self.assertEqual(page1 + json.loads(b)["tags"], tags)


class TestCatalog(unittest.TestCase):
    """A server of its own: the catalog is global."""

    REPOS = ["zeta", "alpha/one", "alpha/two", "beta", "alpha", "m/n/o", "a.b_c--d"]

    @classmethod
    def setUpClass(cls):
        cls.w = Wharf().start()

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.w.cleanup()

    def setUp(self):
        self.c = Client(self, self.w)
        if not getattr(type(self), "pushed", False):
            for r in self.REPOS:
                self.c.push_image(r, "latest", seed=r)
            type(self).pushed = True
        self.all = sorted(self.REPOS)

    def catalog(self, query=""):
        st, h, b = self.w.request("GET", "/v2/_catalog" + query)
        self.assertEqual(st, 200, b)
        self.assertTrue(h["content-type"].startswith("application/json"))
        return json.loads(b)["repositories"], h.get("link")

    def test_all(self):
        repos, link = self.catalog()
        self.assertEqual(repos, self.all)
        self.assertIsNone(link)

    def test_n_zero(self):
        repos, link = self.catalog("?n=0")
        self.assertEqual(repos, [])
        self.assertIsNone(link)

    def test_n_last_and_link(self):
        repos, link = self.catalog("?n=2")
        self.assertEqual(repos, self.all[:2])
        self.assertIsNotNone(link)
        got, path = [], "/v2/_catalog?n=2"
        while path:
            st, h, b = self.w.request("GET", path)
            got += json.loads(b)["repositories"]
            path = parse_link(h["link"]) if "link" in h else None
        self.assertEqual(got, self.all)
        repos, link = self.catalog("?last=alpha/one")
        self.assertEqual(repos, [r for r in self.all if r > "alpha/one"])
        repos, link = self.catalog("?n=1&last=alpha%2Ftwo")
        self.assertEqual(repos, [r for r in self.all if r > "alpha/two"][:1])

    def test_upload_only_and_deleted_content(self):
        # A repository that holds no manifest yet, but blobs, is still a repository.
        r = "zz/blobs-only"
        self.c.push_blob(r, b"blob")
        repos, _ = self.catalog()
        self.assertIn(r, repos)
        self.assertEqual(repos, sorted(repos))


class TestReferrers(RegistryTest):
    def setUp(self):
        super().setUp()
        self.subject_m, self.subject, _ = self.c.push_image(self.repo, "base")
        self.c.push_blob(self.repo, EMPTY_JSON)
        self.sig_payload = b"signature"
        self.c.push_blob(self.repo, self.sig_payload)
        self.sub_desc = descriptor(MT_OCI_MANIFEST, self.subject_m)
        # 1: artifactType set in the manifest.
        self.a1 = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                       "artifactType": "application/vnd.example.sig.v1",
                       "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST,
                                  "size": 2},
                       "layers": [descriptor("application/octet-stream", self.sig_payload)],
                       "subject": self.sub_desc,
                       "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z",
                                       "org.example.key": "v1"}})
        # 2: no artifactType: config.mediaType is used.
        cfg = enc({"sbom": "config"})
        self.c.push_blob(self.repo, cfg)
        self.a2 = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                       "config": descriptor("application/vnd.example.sbom.config.v1+json", cfg),
                       "layers": [], "subject": self.sub_desc})
        # 3: an index with a subject and no artifactType: artifactType omitted.
        self.a3 = enc({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                       "manifests": [self.sub_desc], "subject": self.sub_desc,
                       "annotations": {"org.example.index": "yes"}})
        # 4: refers to something else.
        self.a4 = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                       "artifactType": "application/vnd.example.sig.v1",
                       "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST,
                                  "size": 2},
                       "layers": [], "subject": {"mediaType": MT_OCI_MANIFEST, "size": 10,
                                                 "digest": sha256(b"other")}})
        self.d1 = self.c.push_manifest(self.repo, sha256(self.a1), self.a1)
        self.d2 = self.c.push_manifest(self.repo, sha256(self.a2), self.a2)
        self.d3 = self.c.push_manifest(self.repo, "idx", self.a3, MT_OCI_INDEX)
        self.d4 = self.c.push_manifest(self.repo, sha256(self.a4), self.a4)

    def referrers(self, digest, query=""):
        st, h, b = self.req("GET", "/v2/%s/referrers/%s%s" % (self.repo, digest, query))
        self.assertEqual(st, 200, b)
        self.assertEqual(h["content-type"], MT_OCI_INDEX)
        doc = json.loads(b)
        self.assertEqual(doc["schemaVersion"], 2)
        self.assertEqual(doc["mediaType"], MT_OCI_INDEX)
        self.assertIsInstance(doc["manifests"], list)
        return doc["manifests"], h

    def test_list(self):
        ms, h = self.referrers(self.subject)
        self.assertNotIn("oci-filters-applied", h)
        by = {m["digest"]: m for m in ms}
        self.assertEqual(set(by), {self.d1, self.d2, self.d3})
        self.assertEqual(by[self.d1], {
            "mediaType": MT_OCI_MANIFEST, "digest": self.d1, "size": len(self.a1),
            "artifactType": "application/vnd.example.sig.v1",
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z",
                            "org.example.key": "v1"}})
        self.assertEqual(by[self.d2]["artifactType"], "application/vnd.example.sbom.config.v1+json")
        self.assertEqual(by[self.d2]["size"], len(self.a2))
        self.assertEqual(by[self.d2]["mediaType"], MT_OCI_MANIFEST)
        self.assertNotIn("annotations", by[self.d2])
        self.assertEqual(by[self.d3]["mediaType"], MT_OCI_INDEX)
        self.assertNotIn("artifactType", by[self.d3])
        self.assertEqual(by[self.d3]["annotations"], {"org.example.index": "yes"})

    def test_filter(self):
        ms, h = self.referrers(self.subject, "?artifactType=application/vnd.example.sig.v1")
        self.assertEqual([m["digest"] for m in ms], [self.d1])
        self.assertEqual(h.get("oci-filters-applied"), "artifactType")
        ms, h = self.referrers(self.subject,
                               "?artifactType=" + urllib.parse.quote(
                                   "application/vnd.example.sbom.config.v1+json", safe=""))
        self.assertEqual([m["digest"] for m in ms], [self.d2])
        ms, h = self.referrers(self.subject, "?artifactType=application/none")
        self.assertEqual(ms, [])
        self.assertEqual(h.get("oci-filters-applied"), "artifactType")

    def test_unknown_subject(self):
        ms, h = self.referrers(sha256(b"nobody refers to me"))
        self.assertEqual(ms, [])

    def test_unknown_repository(self):
        st, h, b = self.req("GET", "/v2/%s/nothing/here/referrers/%s" % (self.repo, self.subject))
        # "the registry MUST NOT return a 404 Not Found to a referrers API requests"
        self.assertEqual(st, 200, b)
        self.assertEqual(json.loads(b)["manifests"], [])

    def test_invalid_digest(self):
        for d in ("sha256:xyz", "notadigest", "sha256:" + "A" * 64):
            with self.subTest(d=d):
                st, h, b = self.req("GET", "/v2/%s/referrers/%s" % (self.repo, d))
                self.assertEqual(st, 400, b)

    def test_subject_pushed_after_referrer(self):
        r = self.repo + "/later"
        self.c.push_blob(r, EMPTY_JSON)
        cfg = enc({"later": True})
        self.c.push_blob(r, cfg)
        base = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                    "config": descriptor(MT_OCI_CONFIG, cfg), "layers": []})
        ref = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                   "artifactType": "application/vnd.example.x",
                   "config": {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2},
                   "layers": [], "subject": descriptor(MT_OCI_MANIFEST, base)})
        st, h, b = self.req("PUT", "/v2/%s/manifests/%s" % (r, sha256(ref)), ref,
                            {"Content-Type": MT_OCI_MANIFEST})
        self.assertEqual(st, 201, b)
        self.assertEqual(h.get("oci-subject"), sha256(base))
        self.c.push_manifest(r, "base", base)
        st, h, b = self.req("GET", "/v2/%s/referrers/%s" % (r, sha256(base)))
        self.assertEqual(st, 200)
        self.assertEqual([m["digest"] for m in json.loads(b)["manifests"]], [sha256(ref)])

    def test_deleted_referrer_disappears(self):
        st, h, b = self.req("DELETE", "/v2/%s/manifests/%s" % (self.repo, self.d1))
        self.assertEqual(st, 202, b)
        ms, h = self.referrers(self.subject)
        self.assertEqual({m["digest"] for m in ms}, {self.d2, self.d3})


# ---------------------------------------------------------------------------
# Content management: end-9, end-10
# ---------------------------------------------------------------------------

class TestDelete(RegistryTest):
    def test_delete_manifest_by_digest(self):
        m, d, _ = self.c.push_image(self.repo, "t1")
        self.c.push_manifest(self.repo, "t2", m)
        st, h, b = self.req("DELETE", "/v2/%s/manifests/%s" % (self.repo, d))
        self.assertEqual(st, 202, b)
        self.assertError(self.req("GET", "/v2/%s/manifests/%s" % (self.repo, d)), 404,
                         "MANIFEST_UNKNOWN")
        for t in ("t1", "t2"):
            self.assertError(self.req("GET", "/v2/%s/manifests/%s" % (self.repo, t)), 404,
                             "MANIFEST_UNKNOWN")
        st, h, b = self.req("HEAD", "/v2/%s/manifests/%s" % (self.repo, d))
        self.assertEqual(st, 404)
        st, h, b = self.req("GET", "/v2/%s/tags/list" % self.repo)
        self.assertEqual(json.loads(b)["tags"], [])
        # Again: nothing to delete.
        self.assertError(self.req("DELETE", "/v2/%s/manifests/%s" % (self.repo, d)), 404,
                         "MANIFEST_UNKNOWN")

    def test_delete_tag(self):
        m, d, _ = self.c.push_image(self.repo, "gone")
        self.c.push_manifest(self.repo, "stays", m)
        st, h, b = self.req("DELETE", "/v2/%s/manifests/gone" % self.repo)
        self.assertEqual(st, 202, b)
        self.assertError(self.req("GET", "/v2/%s/manifests/gone" % self.repo), 404,
                         "MANIFEST_UNKNOWN")
        for ref in (d, "stays"):
            st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, ref))
            self.assertEqual((st, b), (200, m))
        st, h, b = self.req("GET", "/v2/%s/tags/list" % self.repo)
        self.assertEqual(json.loads(b)["tags"], ["stays"])
        self.assertError(self.req("DELETE", "/v2/%s/manifests/gone" % self.repo), 404,
                         "MANIFEST_UNKNOWN")

    def test_delete_only_tag_keeps_manifest_by_digest(self):
        m, d, _ = self.c.push_image(self.repo, "only")
        st, h, b = self.req("DELETE", "/v2/%s/manifests/only" % self.repo)
        self.assertEqual(st, 202, b)
        st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, d))
        self.assertEqual((st, b), (200, m))

    def test_delete_blob(self):
        d = self.c.push_blob(self.repo, b"delete me")
        st, h, b = self.req("DELETE", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual(st, 202, b)
        self.assertError(self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d)), 404, "BLOB_UNKNOWN")
        st, h, b = self.req("HEAD", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual(st, 404)
        self.assertError(self.req("DELETE", "/v2/%s/blobs/%s" % (self.repo, d)), 404,
                         "BLOB_UNKNOWN")

    def test_delete_blob_in_one_repo_keeps_it_in_another(self):
        data = b"shared blob"
        d = self.c.push_blob(self.repo, data)
        self.c.push_blob(self.repo + "/b", data)
        st, h, b = self.req("DELETE", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual(st, 202)
        st, h, b = self.req("GET", "/v2/%s/b/blobs/%s" % (self.repo, d))
        self.assertEqual((st, b), (200, data))

    def test_delete_unknown(self):
        self.c.push_blob(self.repo, b"x")
        self.assertError(self.req("DELETE", "/v2/%s/blobs/%s" % (self.repo, sha256(b"no"))), 404,
                         "BLOB_UNKNOWN")
        self.assertError(self.req("DELETE", "/v2/%s/manifests/%s" % (self.repo, sha256(b"no"))),
                         404, "MANIFEST_UNKNOWN")
        self.assertError(self.req("DELETE", "/v2/%s/manifests/nosuchtag" % self.repo), 404,
                         "MANIFEST_UNKNOWN")
        # Unknown repository: 404.
        st, h, b = self.req("DELETE", "/v2/%s/none/manifests/%s" % (self.repo, sha256(b"no")))
        self.assertEqual(st, 404)
        self.assertTrue(set(error_codes(b)) & {"NAME_UNKNOWN", "MANIFEST_UNKNOWN"}, b)

    def test_push_again_after_delete(self):
        m, d, blobs = self.c.push_image(self.repo, "again")
        self.assertEqual(self.req("DELETE", "/v2/%s/manifests/%s" % (self.repo, d))[0], 202)
        self.c.push_manifest(self.repo, "again", m)
        st, h, b = self.req("GET", "/v2/%s/manifests/again" % self.repo)
        self.assertEqual((st, b), (200, m))


# ---------------------------------------------------------------------------
# Names, tags and digests
# ---------------------------------------------------------------------------

class TestNames(RegistryTest):
    def roundtrip(self, repo):
        data, d, blobs = self.c.push_image(repo, "latest", seed=repo)
        st, h, b = self.req("GET", "/v2/%s/manifests/latest" % repo)
        self.assertEqual((st, b), (200, data), repo)
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (repo, sha256(blobs[1])))
        self.assertEqual((st, b), (200, blobs[1]), repo)
        st, h, b = self.req("GET", "/v2/%s/tags/list" % repo)
        self.assertEqual(json.loads(b), {"name": repo, "tags": ["latest"]})
        loc = self.start_upload(repo)
        st, h, b = self.req("GET", split_location(loc))
        self.assertEqual(st, 204, repo)
        st, h, b = self.req("GET", "/v2/%s/referrers/%s" % (repo, d))
        self.assertEqual(st, 200)
        return d

    def test_nested(self):
        self.roundtrip(self.repo + "/a/b/c")

    def test_separators(self):
        for r in ("a.b", "a_b", "a__b", "a-b", "a---b", "a1/2b/c.d_e__f-g"):
            with self.subTest(r=r):
                self.roundtrip(self.repo + "/" + r)

    def test_names_with_path_words(self):
        for r in ("a/blobs/b", "x/manifests/y", "p/tags/list", "q/referrers/r",
                  "u/blobs/uploads/v", "blobs", "manifests/uploads", "tags"):
            with self.subTest(r=r):
                self.roundtrip(self.repo + "/" + r)

    def test_name_below_an_existing_repository(self):
        # "a" and "a/blobs/b" are both repositories: neither hides the other.
        parent = self.repo + "/a"
        child = parent + "/blobs/b"
        d1 = self.roundtrip(parent)
        d2 = self.roundtrip(child)
        st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (parent, d1))
        self.assertEqual(st, 200)
        self.assertError(self.req("GET", "/v2/%s/manifests/%s" % (parent, d2)), 404,
                         "MANIFEST_UNKNOWN")
        st, h, b = self.req("GET", "/v2/_catalog")
        repos = json.loads(b)["repositories"]
        self.assertIn(parent, repos)
        self.assertIn(child, repos)

    def test_name_max_length(self):
        r = "a" * 100 + "/" + "b" * 100 + "/" + "c" * 53
        self.assertEqual(len(r), 255)
        self.roundtrip(r)
        self.assertError(self.req("GET", "/v2/%s/manifests/latest" % (r + "c")), 400,
                         "NAME_INVALID")

    def test_invalid_names(self):
        d = sha256(b"x")
        bad = ["Upper/case", "conf/UP", "a/../b", "..", "a/./b", "a//b", "/a", "a/", "-a",
               "a-", "a_", ".a", "a..b", "a___b", "a/_b", "a b", "a%2fb", "a%2e%2e",
               "a" * 256, "x/" * 127 + "yy", "a:b", "a@b", "a+b", "é"]
        for name in bad:
            q = urllib.parse.quote(name, safe="/%:@+")
            for method, path in (("GET", "/v2/%s/manifests/latest"),
                                 ("HEAD", "/v2/%s/manifests/latest"),
                                 ("PUT", "/v2/%s/manifests/latest"),
                                 ("DELETE", "/v2/%s/manifests/latest"),
                                 ("GET", "/v2/%s/blobs/" + d),
                                 ("DELETE", "/v2/%s/blobs/" + d),
                                 ("POST", "/v2/%s/blobs/uploads/"),
                                 ("GET", "/v2/%s/tags/list"),
                                 ("GET", "/v2/%s/referrers/" + d)):
                with self.subTest(name=name, method=method, path=path):
                    resp = self.req(method, path % q, b"{}" if method in ("PUT", "POST") else None)
                    self.assertEqual(resp[0] // 100, 4, resp)
                    if method != "HEAD" and resp[0] == 400:
                        self.assertError(resp, 400, "NAME_INVALID")
        # The plain cases must be exactly 400 NAME_INVALID.
        for name in ("Upper/case", "a/../b", "/a", "a" * 256, "a__-b", "-a"):
            with self.subTest(exact=name):
                self.assertError(self.req("GET", "/v2/%s/manifests/latest" % name), 400,
                                 "NAME_INVALID")

    def test_tags_valid(self):
        m, d, _ = self.c.push_image(self.repo, None)
        for t in ("a", "A", "_", "0", "v1.2.3-rc.1_build", "T" * 128, "a..b", "a--b", "_x."):
            with self.subTest(t=t):
                self.c.push_manifest(self.repo, t, m)
                st, h, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, t))
                self.assertEqual((st, b), (200, m))

    def test_tags_invalid(self):
        # A push is told why (400 MANIFEST_INVALID); a read or a delete that
        # cannot find anything under such a name is a 404 MANIFEST_UNKNOWN, as
        # Distribution and Zot answer (the conformance suite's
        # INVALID_MANIFEST_NAME case).
        m, d, _ = self.c.push_image(self.repo, "ok")
        for t in ("t" * 129, ".tag", "-tag", "a+b", "a%2fb", "%2e%2e", "tag%00"):
            for method in ("PUT", "GET", "DELETE"):
                with self.subTest(t=t, method=method):
                    resp = self.req(method, "/v2/%s/manifests/%s" % (self.repo, t),
                                    m if method == "PUT" else None,
                                    {"Content-Type": MT_OCI_MANIFEST})
                    if method == "PUT":
                        self.assertError(resp, 400, "MANIFEST_INVALID")
                    else:
                        self.assertError(resp, 404, "MANIFEST_UNKNOWN")
            st, _, _ = self.req("HEAD", "/v2/%s/manifests/%s" % (self.repo, t))
            self.assertEqual(st, 404, t)
        st, h, b = self.req("GET", "/v2/%s/tags/list" % self.repo)
        self.assertEqual(json.loads(b)["tags"], ["ok"])

    def test_unregistered_algorithm_unsupported(self):
        # sha256 and sha512 are the registered algorithms (test_sha512.py);
        # another well-formed one is 400 UNSUPPORTED everywhere.
        self.c.push_blob(self.repo, b"x")
        d512 = "sha384:" + hashlib.sha384(b"x").hexdigest()
        for method, path, body in (
                ("GET", "/v2/%s/blobs/" + d512, None),
                ("HEAD", "/v2/%s/blobs/" + d512, None),
                ("DELETE", "/v2/%s/blobs/" + d512, None),
                ("GET", "/v2/%s/manifests/" + d512, None),
                ("PUT", "/v2/%s/manifests/" + d512, b"{}"),
                ("DELETE", "/v2/%s/manifests/" + d512, None),
                ("POST", "/v2/%s/blobs/uploads/?digest=" + d512, b"x"),
                ("POST", "/v2/%s/blobs/uploads/?mount=" + d512 + "&from=conf/x", b""),
                ("GET", "/v2/%s/referrers/" + d512, None)):
            with self.subTest(method=method, path=path):
                resp = self.req(method, path.replace("%s", self.repo, 1), body)
                if method == "HEAD":
                    self.assertEqual(resp[0], 400)
                else:
                    self.assertError(resp, 400, "UNSUPPORTED")

    def test_malformed_digests(self):
        self.c.push_blob(self.repo, b"x")
        bad = ["sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64,
               "sha256:" + "g" * 64, "sha256:", ":" + "a" * 64, "sha256::" + "a" * 64,
               "SHA256:" + "a" * 64, "sha256:" + "a" * 63 + "%00", "md5:"]
        for d in bad:
            for method, path, body in (
                    ("GET", "/v2/%s/blobs/" + d, None),
                    ("DELETE", "/v2/%s/blobs/" + d, None),
                    ("GET", "/v2/%s/manifests/" + d, None),
                    ("PUT", "/v2/%s/manifests/" + d, b"{}"),
                    ("DELETE", "/v2/%s/manifests/" + d, None),
                    ("POST", "/v2/%s/blobs/uploads/?digest=" + d, b"x")):
                with self.subTest(d=d, method=method, path=path):
                    resp = self.req(method, path.replace("%s", self.repo, 1), body)
                    self.assertEqual(resp[0], 400, resp)
                    codes = error_codes(resp[2])
                    self.assertTrue(set(codes) & {"DIGEST_INVALID", "UNSUPPORTED"}, resp)
                    if d.startswith("sha256:"):
                        self.assertIn("DIGEST_INVALID", codes)

    def test_blob_path_without_digest(self):
        self.c.push_blob(self.repo, b"x")
        for ref in ("latest", "notadigest"):
            self.assertError(self.req("GET", "/v2/%s/blobs/%s" % (self.repo, ref)), 400,
                             "DIGEST_INVALID")

    def test_methods_not_allowed(self):
        d = self.c.push_blob(self.repo, b"x")
        for method, path in (("POST", "/v2/%s/manifests/latest"),
                             ("PATCH", "/v2/%s/manifests/latest"),
                             ("PUT", "/v2/%s/blobs/" + d),
                             ("POST", "/v2/%s/tags/list"),
                             ("DELETE", "/v2/%s/tags/list"),
                             ("PUT", "/v2/%s/referrers/" + d),
                             ("DELETE", "/v2/_catalog%s"),
                             ("PUT", "/v2/%s/blobs/uploads/")):
            with self.subTest(method=method, path=path):
                p = path % self.repo if "%s" in path else path
                if path.startswith("/v2/_catalog"):
                    p = "/v2/_catalog"
                st, h, b = self.req(method, p, b"")
                self.assertIn(st, (400, 404, 405), b)


if __name__ == "__main__":
    unittest.main()
