"""sha512 end to end, ?tag= on a manifest push, a mount without `from`, and
the edge cases of issue 16, against the real wharf binary.

Written from the specs: the image spec's digests (sha256 and sha512 are the
registered algorithms: "sha512:" + 128 lower-case hex), the distribution
spec's API table (v1.1.1, /work/shared/specs/) and what its main branch adds
since: `?digest-algorithm=` on a POST (end-4c), `?tag=` on a manifest push by
digest answered with `OCI-Tag` (end-7b), and the referrers tag schema's
truncation to 64 characters (a sha512 subject's tag is `sha512-` and half of
its hex).

    Sha512Push        every way to push a blob by sha512 (monolithic, POST then
                      PUT, chunked, streamed, digest-algorithm), pulls (GET,
                      HEAD, Range), DELETE, mounts, the layout on disk, a
                      session that survives a restart or a kill -9
    Sha512Manifests   manifests and indexes of sha512 descriptors, by sha512
                      digest, tags, referrers and OCI-Subject
    Tags              ?tag=: OCI-Tag per tag, TAG_INVALID before anything is
                      stored, 414, moving tags, access control (update)
    AnonymousMount    ?mount= without from: 201 from a readable repository,
                      202 otherwise (unknown blob, no read right)
    EdgeCases         reversed Range, HEAD bodies, Docker-Content-Digest on
                      every blob and manifest answer
    SparseManifests   an index whose children, or an image whose layers, were
                      never pushed: refused (MANIFEST_BLOB_UNKNOWN), as
                      docs/architecture.md decides
    Sha512Gc          GC keeps every sha512 blob a manifest references and
                      collects the orphans; the shared copies too
    Sha512Scrub       `wharf scrub` checks sha512 blobs and reports the flipped one
    Sha512PullThrough a downstream Wharf caches a second Wharf's sha512 image
                      (manifest by tag and by digest, blobs, verified)
    Oras              oras pushes sha512 blobs and pulls a sha512 manifest (oras
                      1.2 cannot push a manifest by sha512: it hashes sha256)

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_sha512
"""

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import WHARF_BIN, Wharf, have
from test_oci_conformance import (MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST,
                                  SPEC_CODES, Client, enc, error_codes, sha256, split_location,
                                  with_query)
import upstream as up

MT_ARTIFACT = "application/vnd.example.sig.v1"


def sha512(data):
    return "sha512:" + hashlib.sha512(data).hexdigest()


def desc512(media_type, data, **extra):
    d = {"mediaType": media_type, "digest": sha512(data), "size": len(data)}
    d.update(extra)
    return d


def hexof(digest):
    return digest.split(":", 1)[1]


class Base(unittest.TestCase):
    """One wharf per class (gc off, dedupe on); self.repo is the test's own."""

    config = None
    w = None

    @classmethod
    def setUpClass(cls):
        cls.w = Wharf(cls.config).start()

    @classmethod
    def tearDownClass(cls):
        if cls.w:
            cls.w.stop()
            cls.w.cleanup()

    def setUp(self):
        self.c = Client(self, self.w)
        self.repo = "s5/" + self._testMethodName.lower().replace("test_", "")

    def tearDown(self):
        self.assertIsNone(self.w.proc.poll(), "wharf exited; log:\n" + self.w.log()[-4000:])

    def req(self, method, path, body=None, headers=None):
        return self.w.request(method, path, body=body, headers=headers or {})

    def assertError(self, resp, status, code=None):
        st, h, b = resp
        self.assertEqual(st, status, b)
        if b:
            codes = error_codes(b)
            if code is not None:
                self.assertIn(code, codes, b)

    def push512(self, repo, data):
        """A monolithic POST by sha512: 201 with the blob's location and digest."""
        d = sha512(data)
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, d), data,
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], d)
        self.assertEqual(h["location"], "/v2/%s/blobs/%s" % (repo, d))
        return d

    def put_manifest(self, repo, ref, data, media_type=MT_OCI_MANIFEST, query=""):
        return self.req("PUT", "/v2/%s/manifests/%s%s" % (repo, ref, query), data,
                        {"Content-Type": media_type})

    def image512(self, repo, seed="x", extra=None):
        """Config and one layer pushed by sha512, and the manifest's bytes."""
        config = enc({"architecture": "amd64", "os": "linux", "seed": seed})
        layer = ("sha512 layer %s " % seed).encode() * 50
        self.push512(repo, config)
        self.push512(repo, layer)
        m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
             "config": desc512(MT_OCI_CONFIG, config), "layers": [desc512(MT_OCI_LAYER, layer)]}
        if extra:
            m.update(extra)
        return enc(m), [sha512(config), sha512(layer)]

    def start_upload(self, repo, query=""):
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/%s" % (repo, query), b"",
                            {"Content-Length": "0"})
        self.assertEqual(st, 202, b)
        return h["location"]

    def blob_file(self, repo, digest):
        alg, hx = digest.split(":", 1)
        return os.path.join(self.w.root, repo, "blobs", alg, hx)

    def shared_file(self, digest):
        alg, hx = digest.split(":", 1)
        return os.path.join(self.w.root, ".wharf", "blobs", alg, hx)


class Sha512Push(Base):

    def check_blob(self, repo, data):
        d = sha512(data)
        st, h, b = self.req("GET", "/v2/%s/blobs/%s" % (repo, d))
        self.assertEqual((st, b), (200, data))
        self.assertEqual(h["docker-content-digest"], d)
        self.assertEqual(h["etag"], '"%s"' % d)
        st, h, b = self.req("HEAD", "/v2/%s/blobs/%s" % (repo, d))
        self.assertEqual((st, b), (200, b""))
        self.assertEqual(int(h["content-length"]), len(data))
        self.assertEqual(h["docker-content-digest"], d)
        # Stored as the image layout stores it, deduplicated as sha256 is.
        f = self.blob_file(repo, d)
        self.assertTrue(os.path.isfile(f), f)
        self.assertEqual(os.stat(f).st_ino, os.stat(self.shared_file(d)).st_ino)
        with open(f, "rb") as fh:
            self.assertEqual(fh.read(), data)

    def test_monolithic_post(self):
        data = os.urandom(100000)
        self.push512(self.repo, data)
        self.check_blob(self.repo, data)
        # The same bytes by sha256 are another blob, not this one.
        st, _, _ = self.req("HEAD", "/v2/%s/blobs/%s" % (self.repo, sha256(data)))
        self.assertEqual(st, 404)

    def test_post_then_put(self):
        # The session hashes sha256 as bytes come (nobody said otherwise);
        # the closing digest names sha512, so the bytes are hashed again.
        data = os.urandom(300000)
        loc = self.start_upload(self.repo)
        st, h, b = self.req("PUT", with_query(loc, digest=sha512(data)), data,
                            {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], sha512(data))
        self.assertEqual(split_location(h["location"]),
                         "/v2/%s/blobs/%s" % (self.repo, sha512(data)))
        self.check_blob(self.repo, data)

    def test_chunked_with_digest_algorithm(self):
        data = os.urandom(200000)
        loc = self.start_upload(self.repo, "?digest-algorithm=sha512")
        off = 0
        for n in (65536, 65536, 60000):
            chunk = data[off:off + n]
            st, h, b = self.req("PATCH", split_location(loc), chunk,
                                {"Content-Type": "application/octet-stream",
                                 "Content-Range": "%d-%d" % (off, off + n - 1)})
            self.assertEqual(st, 202, b)
            off += n
            self.assertEqual(h["range"], "0-%d" % (off - 1))
            loc = h["location"]
        # The last chunk in the closing PUT.
        st, h, b = self.req("PUT", with_query(loc, digest=sha512(data)), data[off:],
                            {"Content-Type": "application/octet-stream",
                             "Content-Range": "%d-%d" % (off, len(data) - 1)})
        self.assertEqual(st, 201, b)
        self.check_blob(self.repo, data)
        # Hashed as the bytes came: nothing read back at the end.
        self.assertFalse([r for r in self.w.log_records()
                          if "saved hash state not usable" in r.get("message", "")])

    def test_streamed(self):
        # A PATCH without Content-Range, its body chunked as it is produced.
        data = os.urandom(150000)
        loc = self.start_upload(self.repo, "?digest-algorithm=sha512")
        c = self.w.conn()
        try:
            c.putrequest("PATCH", split_location(loc))
            c.putheader("Content-Type", "application/octet-stream")
            c.putheader("Transfer-Encoding", "chunked")
            c.endheaders()
            for i in range(0, len(data), 10000):
                piece = data[i:i + 10000]
                c.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            c.send(b"0\r\n\r\n")
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 202)
            loc = r.getheader("Location")
        finally:
            c.close()
        st, h, b = self.req("PUT", with_query(loc, digest=sha512(data)))
        self.assertEqual(st, 201, b)
        self.check_blob(self.repo, data)

    def test_digest_algorithm_then_sha256_close(self):
        # Said sha512, closed with sha256: hashed again with sha256.
        data = b"changed my mind" * 1000
        loc = self.start_upload(self.repo, "?digest-algorithm=sha512")
        st, h, b = self.req("PUT", with_query(loc, digest=sha256(data)), data)
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], sha256(data))

    def test_unknown_digest_algorithm(self):
        for alg in ("sha384", "md5", "SHA512", ""):
            with self.subTest(alg=alg):
                self.assertError(self.req("POST", "/v2/%s/blobs/uploads/?digest-algorithm=%s"
                                          % (self.repo, alg), b""), 400, "UNSUPPORTED")

    def test_mismatch_and_malformed(self):
        data = b"the real bytes"
        wrong = sha512(b"other bytes")
        self.assertError(self.req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (self.repo, wrong),
                                  data), 400, "DIGEST_INVALID")
        loc = self.start_upload(self.repo, "?digest-algorithm=sha512")
        self.assertError(self.req("PUT", with_query(loc, digest=wrong), data), 400,
                         "DIGEST_INVALID")
        for bad in ("sha512:" + "a" * 127, "sha512:" + "A" * 128, "sha512:" + "a" * 129,
                    "sha256:" + "a" * 128):
            with self.subTest(bad=bad):
                self.assertError(self.req("GET", "/v2/%s/blobs/%s" % (self.repo, bad)), 400,
                                 "DIGEST_INVALID")
        # Unregistered algorithms stay unsupported.
        self.assertError(self.req("GET", "/v2/%s/blobs/sha384:%s" % (self.repo, "a" * 96)),
                         400, "UNSUPPORTED")
        self.assertEqual(self.req("HEAD", "/v2/%s/blobs/%s" % (self.repo, wrong))[0], 404)

    def test_range(self):
        data = bytes(range(256)) * 8
        d = self.push512(self.repo, data)
        path = "/v2/%s/blobs/%s" % (self.repo, d)
        st, h, b = self.req("GET", path, headers={"Range": "bytes=100-199"})
        self.assertEqual((st, b), (206, data[100:200]))
        self.assertEqual(h["content-range"], "bytes 100-199/2048")
        self.assertEqual(h["docker-content-digest"], d)
        st, h, b = self.req("GET", path, headers={"Range": "bytes=500-0"})
        self.assertEqual((st, b), (416, b""))
        self.assertEqual(h["content-range"], "bytes */2048")

    def test_delete(self):
        d = self.push512(self.repo, b"to be deleted")
        shared = self.shared_file(d)
        self.assertTrue(os.path.exists(shared))
        st, h, b = self.req("DELETE", "/v2/%s/blobs/%s" % (self.repo, d))
        self.assertEqual(st, 202, b)
        self.assertEqual(self.req("GET", "/v2/%s/blobs/%s" % (self.repo, d))[0], 404)
        self.assertError(self.req("DELETE", "/v2/%s/blobs/%s" % (self.repo, d)), 404,
                         "BLOB_UNKNOWN")
        self.assertFalse(os.path.exists(shared), "the last link took the shared copy")

    def test_mount_with_from(self):
        data = b"mounted by sha512" * 100
        d = self.push512(self.repo, data)
        other = self.repo + "/other"
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s"
                            % (other, d, self.repo), b"")
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], d)
        self.assertEqual(h["location"], "/v2/%s/blobs/%s" % (other, d))
        self.assertEqual(os.stat(self.blob_file(other, d)).st_ino,
                         os.stat(self.blob_file(self.repo, d)).st_ino)
        self.check_blob(other, data)

    def test_session_survives_restart_and_kill(self):
        # A clean stop saves a sha512 session's hash state (version 2) beside
        # its bytes; the next process goes on from there. After a kill -9 it
        # is not saved: the closing PUT hashes the bytes again, in the pool.
        for how in ("stop", "kill"):
            with self.subTest(how=how):
                data = os.urandom(120000)
                loc = self.start_upload(self.repo, "?digest-algorithm=sha512")
                st, h, _ = self.req("PATCH", split_location(loc), data[:70000],
                                    {"Content-Range": "0-69999"})
                self.assertEqual(st, 202)
                if how == "stop":
                    self.assertEqual(self.w.stop(), 0)
                    sid = split_location(loc).rstrip("/").split("/")[-1]
                    hashfile = os.path.join(self.w.root, ".wharf", "uploads", sid, "hash")
                    with open(hashfile, "rb") as f:
                        state = f.read()
                    self.assertEqual(state[:8], b"WHARFUPH")
                    self.assertEqual(int.from_bytes(state[8:12], "little"), 2)  # sha512
                else:
                    self.w.kill9()
                self.w.start()
                st, h, b = self.req("PUT", with_query(h["location"], digest=sha512(data)),
                                    data[70000:], {"Content-Range": "70000-119999"})
                self.assertEqual(st, 201, b)
                self.check_blob(self.repo, data)


class Sha512Manifests(Base):

    def test_manifest_by_sha512_digest(self):
        data, blobs = self.image512(self.repo)
        d = sha512(data)
        st, h, b = self.put_manifest(self.repo, d, data)
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], d)
        self.assertEqual(h["location"], "/v2/%s/manifests/%s" % (self.repo, d))
        for method in ("GET", "HEAD"):
            st, h, b = self.req(method, "/v2/%s/manifests/%s" % (self.repo, d))
            self.assertEqual(st, 200)
            self.assertEqual(b, data if method == "GET" else b"")
            self.assertEqual(h["docker-content-digest"], d)
            self.assertEqual(h["content-type"], MT_OCI_MANIFEST)
            self.assertEqual(int(h["content-length"]), len(data))
        self.assertTrue(os.path.isfile(self.blob_file(self.repo, d)))
        # The image layout's index.json names it by its sha512 digest.
        with open(os.path.join(self.w.root, self.repo, "index.json")) as f:
            idx = json.load(f)
        self.assertIn(d, [m["digest"] for m in idx["manifests"]])
        # Bytes that do not hash to the reference.
        self.assertError(self.put_manifest(self.repo, sha512(b"x"), data), 400,
                         "DIGEST_INVALID")
        # Deleted by sha512 digest.
        self.assertEqual(self.req("DELETE", "/v2/%s/manifests/%s" % (self.repo, d))[0], 202)
        self.assertEqual(self.req("GET", "/v2/%s/manifests/%s" % (self.repo, d))[0], 404)

    def test_tag_points_at_sha512_manifest(self):
        data, _ = self.image512(self.repo, seed="t")
        d = sha512(data)
        st, h, b = self.put_manifest(self.repo, d, data, query="?tag=v1")
        self.assertEqual(st, 201, b)
        st, h, b = self.req("GET", "/v2/%s/manifests/v1" % self.repo)
        self.assertEqual((st, b), (200, data))
        self.assertEqual(h["docker-content-digest"], d)
        st, h, b = self.req("GET", "/v2/%s/tags/list" % self.repo)
        self.assertEqual(json.loads(b)["tags"], ["v1"])
        # Pushed by tag, a manifest is addressed by sha256, the default.
        st, h, b = self.put_manifest(self.repo, "v2", data)
        self.assertEqual(st, 201, b)
        self.assertEqual(h["docker-content-digest"], sha256(data))

    def test_index_of_sha512_children(self):
        children = []
        for seed in ("amd64", "arm64"):
            data, _ = self.image512(self.repo, seed=seed)
            self.assertEqual(self.put_manifest(self.repo, sha512(data), data)[0], 201)
            children.append(desc512(MT_OCI_MANIFEST, data,
                                    platform={"os": "linux", "architecture": seed}))
        index = enc({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": children})
        st, h, b = self.put_manifest(self.repo, sha512(index), index, MT_OCI_INDEX,
                                     query="?tag=multi")
        self.assertEqual(st, 201, b)
        st, h, b = self.req("GET", "/v2/%s/manifests/multi" % self.repo)
        self.assertEqual((st, b), (200, index))
        self.assertEqual(h["content-type"], MT_OCI_INDEX)
        for ch in children:
            st, _, b = self.req("GET", "/v2/%s/manifests/%s" % (self.repo, ch["digest"]))
            self.assertEqual(st, 200)
            self.assertEqual(sha512(b), ch["digest"])

    def test_referrers_with_sha512_subject(self):
        data, _ = self.image512(self.repo, seed="subject")
        subject = sha512(data)
        self.assertEqual(self.put_manifest(self.repo, subject, data)[0], 201)
        empty = b"{}"
        self.push512(self.repo, empty)
        sig = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "artifactType": MT_ARTIFACT,
                   "config": desc512("application/vnd.oci.empty.v1+json", empty),
                   "layers": [desc512("application/vnd.oci.empty.v1+json", empty)],
                   "subject": desc512(MT_OCI_MANIFEST, data),
                   "annotations": {"k": "v"}})
        st, h, b = self.put_manifest(self.repo, sha512(sig), sig)
        self.assertEqual(st, 201, b)
        self.assertEqual(h["oci-subject"], subject)
        for q in ("", "?artifactType=" + MT_ARTIFACT):
            st, h, b = self.req("GET", "/v2/%s/referrers/%s%s" % (self.repo, subject, q))
            self.assertEqual(st, 200, b)
            self.assertEqual(h["content-type"], MT_OCI_INDEX)
            refs = json.loads(b)["manifests"]
            self.assertEqual([r["digest"] for r in refs], [sha512(sig)])
            self.assertEqual(refs[0]["artifactType"], MT_ARTIFACT)
            self.assertEqual(refs[0]["annotations"], {"k": "v"})
        # A subject pushed after its referrer is fine (the spec's MUST).
        later = sha512(b"not pushed yet")
        st, h, b = self.put_manifest(
            self.repo, "dangling", enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                                        "config": desc512("application/vnd.oci.empty.v1+json",
                                                          empty),
                                        "layers": [],
                                        "subject": {"mediaType": MT_OCI_MANIFEST,
                                                    "digest": later, "size": 3}}))
        self.assertEqual(st, 201, b)
        self.assertEqual(h["oci-subject"], later)
        st, h, b = self.req("GET", "/v2/%s/referrers/%s" % (self.repo, later))
        self.assertEqual(len(json.loads(b)["manifests"]), 1)


class Tags(Base):

    def image(self, seed):
        data, _ = self.image512(self.repo, seed=seed)
        return data

    def put_with_tags(self, ref, data, query):
        """The status and the tags of every OCI-Tag header (one or a list each)."""
        c = self.w.conn()
        try:
            c.request("PUT", "/v2/%s/manifests/%s%s" % (self.repo, ref, query), body=data,
                      headers={"Content-Type": MT_OCI_MANIFEST})
            r = c.getresponse()
            r.read()
            self.last = r
            return r.status, [t.strip() for k, v in r.getheaders() if k.lower() == "oci-tag"
                              for t in v.split(",")]
        finally:
            c.close()

    def test_oci_tag_per_tag(self):
        data = self.image("one")
        tags = ["1.2.3", "1.2", "1", "latest"]
        q = "?" + "&".join("tag=" + t for t in tags)
        for d in (sha512(data), sha256(data)):
            with self.subTest(digest=d[:6]):
                st, got = self.put_with_tags(d, data, q)
                self.assertEqual(st, 201)
                self.assertEqual(got, tags)
                self.assertEqual(self.last.getheader("Docker-Content-Digest"), d)
                for t in tags:
                    st, h, _ = self.req("HEAD", "/v2/%s/manifests/%s" % (self.repo, t))
                    self.assertEqual((st, h["docker-content-digest"]), (200, d))
        st, h, b = self.req("GET", "/v2/%s/tags/list" % self.repo)
        self.assertEqual(sorted(json.loads(b)["tags"]), sorted(tags))

    def test_no_tag_parameter_no_oci_tag(self):
        data = self.image("none")
        st, h, b = self.put_manifest(self.repo, sha512(data), data)
        self.assertEqual(st, 201, b)
        self.assertNotIn("oci-tag", h)
        st, h, b = self.put_manifest(self.repo, "v1", data)
        self.assertNotIn("oci-tag", h)

    def test_invalid_tag_stores_nothing(self):
        data = self.image("bad")
        d = sha512(data)
        for q in ("?tag=ok&tag=-bad", "?tag=" + "a" * 129, "?tag=", "?tag=a%2Fb", "?tag=a:b"):
            with self.subTest(q=q):
                resp = self.put_manifest(self.repo, d, data, query=q)
                self.assertError(resp, 400, "TAG_INVALID")
        self.assertEqual(self.req("HEAD", "/v2/%s/manifests/%s" % (self.repo, d))[0], 404)
        self.assertEqual(self.req("HEAD", "/v2/%s/manifests/ok" % self.repo)[0], 404)
        self.assertFalse(os.path.exists(self.blob_file(self.repo, d)))

    def test_too_many_tags(self):
        data = self.image("many")
        q = "?" + "&".join("tag=t%d" % i for i in range(65))
        st, h, b = self.put_manifest(self.repo, sha512(data), data, query=q)
        self.assertEqual(st, 414, b)
        q = "?" + "&".join("tag=t%d" % i for i in range(10))  # the spec's SHOULD
        st, tags = self.put_with_tags(sha512(data), data, q)
        self.assertEqual(st, 201)
        self.assertEqual(tags, ["t%d" % i for i in range(10)])

    def test_tag_moves(self):
        a, b_ = self.image("a"), self.image("b")
        self.assertEqual(self.put_manifest(self.repo, sha512(a), a, query="?tag=x&tag=y")[0], 201)
        self.assertEqual(self.put_manifest(self.repo, sha512(b_), b_, query="?tag=y")[0], 201)
        self.assertEqual(self.req("HEAD", "/v2/%s/manifests/x" % self.repo)[1]
                         ["docker-content-digest"], sha512(a))
        self.assertEqual(self.req("HEAD", "/v2/%s/manifests/y" % self.repo)[1]
                         ["docker-content-digest"], sha512(b_))
        # a stays reachable by digest.
        self.assertEqual(self.req("HEAD", "/v2/%s/manifests/%s" % (self.repo, sha512(a)))[0],
                         200)


class TagsAccess(unittest.TestCase):
    """An existing tag moved by ?tag= is an update: a user who may only
    create cannot move it (Zot's access control, http.accessControl)."""

    def test_update_right_needed(self):
        tmp = tempfile.mkdtemp(prefix="wharf-s5-auth-")
        try:
            pw = os.path.join(tmp, "htpasswd")
            with open(pw, "w") as f:
                f.write("alice:" + subprocess.run(
                    ["openssl", "passwd", "-6", "alice-pw"], capture_output=True,
                    text=True, check=True).stdout.strip() + "\n")
            w = Wharf({"http": {"auth": {"htpasswd": {"path": pw}},
                                "accessControl": {"repositories": {"**": {
                                    "policies": [{"users": ["alice"],
                                                  "actions": ["read", "create"]}]}}}}})
            w.start()
            try:
                import base64
                auth = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-pw").decode()}
                # Credentials checked once first: a POST with a body whose
                # password check waits for the thread pool loses its body
                # (a bug of its own, not this test's).
                self.assertEqual(w.request("GET", "/v2/", headers=auth)[0], 200)
                repo = "s5/acl"
                blob = b"{}"
                st, _, b = w.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo,
                                     sha512(blob)), blob, auth)
                self.assertEqual(st, 201, b)
                docs = []
                for seed in ("1", "2"):
                    m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                             "config": desc512(MT_OCI_CONFIG, blob), "layers": [],
                             "annotations": {"seed": seed}})
                    docs.append(m)
                hdr = dict(auth, **{"Content-Type": MT_OCI_MANIFEST})
                st, _, b = w.request("PUT", "/v2/%s/manifests/%s?tag=t" % (repo, sha512(docs[0])),
                                     docs[0], hdr)
                self.assertEqual(st, 201, b)
                # Moving t is an update: refused (403), nothing stored.
                st, _, b = w.request("PUT", "/v2/%s/manifests/%s?tag=t" % (repo, sha512(docs[1])),
                                     docs[1], hdr)
                self.assertEqual(st, 403, b)
                st, h, _ = w.request("HEAD", "/v2/%s/manifests/t" % repo, headers=auth)
                self.assertEqual(h["docker-content-digest"], sha512(docs[0]))
                # A new tag is a create: allowed.
                st, _, b = w.request("PUT", "/v2/%s/manifests/%s?tag=u" % (repo, sha512(docs[1])),
                                     docs[1], hdr)
                self.assertEqual(st, 201, b)
            finally:
                w.stop()
                w.cleanup()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class AnonymousMount(Base):

    def test_mount_without_from(self):
        for hashf in (sha256, sha512):
            with self.subTest(alg=hashf.__name__):
                data = ("anonymous mount %s" % hashf.__name__).encode() * 50
                d = hashf(data)
                st, _, b = self.req("POST", "/v2/%s/src/blobs/uploads/?digest=%s"
                                    % (self.repo, d), data)
                self.assertEqual(st, 201, b)
                dst = self.repo + "/dst"
                st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s" % (dst, d), b"")
                self.assertEqual(st, 201, b)
                self.assertEqual(h["docker-content-digest"], d)
                self.assertEqual(h["location"], "/v2/%s/blobs/%s" % (dst, d))
                self.assertEqual(os.stat(self.blob_file(dst, d)).st_ino,
                                 os.stat(self.blob_file(self.repo + "/src", d)).st_ino)

    def test_found_after_restart(self):
        # The hints are gone after a restart: the catalog finds it.
        data = b"held before the restart" * 30
        d = self.push512(self.repo + "/held", data)
        self.assertEqual(self.w.stop(), 0)
        self.w.start()
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s" % (self.repo + "/new", d),
                            b"")
        self.assertEqual(st, 201, b)

    def test_unknown_blob_falls_back_to_upload(self):
        d = sha512(b"nobody has this")
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s" % (self.repo, d), b"")
        self.assertEqual(st, 202, b)
        self.assertIn("/blobs/uploads/", h["location"])
        # The session works: the blob is uploaded after all.
        st, h, b = self.req("PUT", with_query(h["location"], digest=d), b"nobody has this")
        self.assertEqual(st, 201, b)

    def test_from_that_lacks_it_falls_back(self):
        d = self.push512(self.repo + "/has", b"only here")
        st, h, b = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s/none"
                            % (self.repo, d, self.repo), b"")
        self.assertEqual(st, 202, b)


class AnonymousMountAccess(unittest.TestCase):
    """Without read right on the only repository that holds the blob, a
    mount without from is an upload session (202), and nothing leaks."""

    def test_unreadable_source(self):
        tmp = tempfile.mkdtemp(prefix="wharf-s5-mount-")
        try:
            pw = os.path.join(tmp, "htpasswd")
            line = subprocess.run(["openssl", "passwd", "-6", "pw"], capture_output=True,
                                  text=True, check=True).stdout.strip()
            with open(pw, "w") as f:
                f.write("alice:%s\nbob:%s\n" % (line, line))
            w = Wharf({"http": {"auth": {"htpasswd": {"path": pw}},
                                "accessControl": {"repositories": {
                                    "private/**": {"policies": [{"users": ["alice"],
                                                                 "actions": ["read", "create"]}]},
                                    "bob/**": {"policies": [{"users": ["bob"],
                                                             "actions": ["read", "create"]}]}}}}})
            w.start()
            try:
                import base64

                def auth(u):
                    return {"Authorization": "Basic " + base64.b64encode(
                        (u + ":pw").encode()).decode()}
                for u in ("alice", "bob"):  # credentials checked once first (above)
                    self.assertEqual(w.request("GET", "/v2/", headers=auth(u))[0], 200)
                data = b"alice's secret layer" * 10
                d = sha512(data)
                st, _, b = w.request("POST", "/v2/private/a/blobs/uploads/?digest=%s" % d, data,
                                     auth("alice"))
                self.assertEqual(st, 201, b)
                st, h, b = w.request("POST", "/v2/bob/x/blobs/uploads/?mount=%s" % d, b"",
                                     auth("bob"))
                self.assertEqual(st, 202, b)
                self.assertEqual(w.request("HEAD", "/v2/bob/x/blobs/%s" % d,
                                           headers=auth("bob"))[0], 404)
            finally:
                w.stop()
                w.cleanup()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class EdgeCases(Base):

    def test_reversed_range_416(self):
        data = os.urandom(1000)
        for d in (self.c.push_blob(self.repo, data), self.push512(self.repo, data)):
            for rng in ("bytes=500-0", "bytes=999-998"):
                for method in ("GET", "HEAD"):
                    with self.subTest(d=d[:6], rng=rng, method=method):
                        st, h, b = self.req(method, "/v2/%s/blobs/%s" % (self.repo, d),
                                            headers={"Range": rng})
                        self.assertEqual(st, 416)
                        self.assertEqual(h["content-range"], "bytes */1000")
                        self.assertEqual(b, b"")

    def test_head_has_no_body_and_digest_everywhere(self):
        data, blobs = self.image512(self.repo, seed="heads")
        md = sha512(data)
        self.assertEqual(self.put_manifest(self.repo, md, data, query="?tag=v")[0], 201)
        paths = ["/v2/%s/blobs/%s" % (self.repo, d) for d in blobs] + \
                ["/v2/%s/manifests/%s" % (self.repo, r) for r in (md, "v")]
        for p in paths:
            want = p.rsplit("/", 1)[1] if ":" in p.rsplit("/", 1)[1] else md
            for method in ("GET", "HEAD"):
                with self.subTest(p=p, method=method):
                    st, h, b = self.req(method, p)
                    self.assertEqual(st, 200)
                    self.assertEqual(h["docker-content-digest"], want)
                    if method == "HEAD":
                        self.assertEqual(b, b"")
                        self.assertGreater(int(h["content-length"]), 0)
            with self.subTest(p=p, range=True):
                st, h, b = self.req("GET", p, headers={"Range": "bytes=0-0"})
                if "/blobs/" in p:
                    self.assertEqual(st, 206)
                    self.assertEqual(h["docker-content-digest"], want)
        # Errors to HEAD have no body either.
        for p in ("/v2/%s/blobs/%s" % (self.repo, sha512(b"none")),
                  "/v2/%s/manifests/nope" % self.repo,
                  "/v2/%s/blobs/sha384:%s" % (self.repo, "a" * 96)):
            with self.subTest(p=p):
                st, h, b = self.req("HEAD", p)
                self.assertIn(st, (400, 404))
                self.assertEqual(b, b"")

    def test_upload_status_and_cancel(self):
        loc = self.start_upload(self.repo, "?digest-algorithm=sha512")
        st, h, b = self.req("GET", split_location(loc))
        self.assertEqual((st, b), (204, b""))
        self.assertEqual(h["range"], "0-0")
        st, h, b = self.req("DELETE", split_location(loc))
        self.assertEqual(st, 204, b)
        self.assertError(self.req("GET", split_location(loc)), 404, "BLOB_UPLOAD_UNKNOWN")
        self.assertError(self.req("PUT", with_query(loc, digest=sha512(b""))), 404,
                         "BLOB_UPLOAD_UNKNOWN")


class SparseManifests(Base):
    """docs/architecture.md ("Sparse manifests"): a push must hold what it
    references; only the cache stores an index whose children it has not
    fetched. The spec lets a registry refuse (MANIFEST_BLOB_UNKNOWN)."""

    def test_index_of_missing_children_refused(self):
        child = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                     "config": desc512(MT_OCI_CONFIG, b"{}"), "layers": []})
        index = enc({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                     "manifests": [desc512(MT_OCI_MANIFEST, child)]})
        self.assertError(self.put_manifest(self.repo, sha512(index), index, MT_OCI_INDEX), 400,
                         "MANIFEST_BLOB_UNKNOWN")

    def test_image_of_missing_layers_refused(self):
        self.push512(self.repo, b"{}")
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": desc512(MT_OCI_CONFIG, b"{}"),
                 "layers": [desc512(MT_OCI_LAYER, b"never pushed")]})
        self.assertError(self.put_manifest(self.repo, "v1", m), 400, "MANIFEST_BLOB_UNKNOWN")
        # Non-distributable: where its urls say, not here; accepted.
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": desc512(MT_OCI_CONFIG, b"{}"),
                 "layers": [desc512(MT_OCI_LAYER, b"elsewhere",
                                    urls=["http://127.0.0.1:9/layer"])]})
        self.assertEqual(self.put_manifest(self.repo, "v2", m)[0], 201)


class Sha512Gc(unittest.TestCase):
    """GC never deletes a sha512 blob that a manifest references; orphans
    and their shared copies go (ages made, as test_gc.py does)."""

    def test_referenced_sha512_blobs_stay(self):
        w = Wharf({"storage": {"gc": True, "gcDelay": "1h", "gcInterval": "1h"}})
        w.start()
        try:
            t = Base("setUp")
            t.w = w
            t.c = Client(self, w)
            repo = "s5/gc"
            data, blobs = t.image512(repo, seed="kept")
            md = sha512(data)
            self.assertEqual(t.put_manifest(repo, md, data, query="?tag=v1")[0], 201)
            untagged, ublobs = t.image512(repo, seed="untagged")
            self.assertEqual(t.put_manifest(repo, sha512(untagged), untagged)[0], 201)
            orphan = t.push512(repo, b"an orphan sha512 blob" * 10)
            young = t.push512(repo, b"a young sha512 orphan" * 10)
            self.assertEqual(w.stop(), 0)
            old = time.time() - 2 * 3600
            for d in [md, sha512(untagged), orphan] + blobs + ublobs:
                os.utime(t.blob_file(repo, d), (old, old))
            w.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not [
                    r for r in w.log_records() if r.get("message") == "gc successfully completed"]:
                time.sleep(0.05)
            for d in [md] + blobs + [young]:
                path = "manifests" if d == md else "blobs"
                self.assertEqual(w.request("HEAD", "/v2/%s/%s/%s" % (repo, path, d))[0], 200, d)
                self.assertTrue(os.path.exists(t.blob_file(repo, d)), d)
            self.assertEqual(w.request("GET", "/v2/%s/manifests/v1" % repo)[2], data)
            for d in [sha512(untagged), orphan] + ublobs:
                self.assertFalse(os.path.exists(t.blob_file(repo, d)), d)
            shared = os.path.join(w.root, ".wharf", "blobs", "sha512")
            for name in os.listdir(shared):
                self.assertGreater(os.stat(os.path.join(shared, name)).st_nlink, 1, name)
            self.assertIn(hexof(blobs[1]), os.listdir(shared))
        finally:
            w.stop()
            w.cleanup()


class Sha512Scrub(unittest.TestCase):
    """`wharf scrub` hashes sha512 blobs with sha512: clean is ok, a flipped
    byte is `affected` with the blob's whole sha512 hex."""

    def test_flipped_byte(self):
        w = Wharf(keep_root=True)
        w.start()
        try:
            t = Base("setUp")
            t.w = w
            t.c = Client(self, w)
            repo = "s5/scrub"
            data, blobs = t.image512(repo, seed="scrub")
            self.assertEqual(t.put_manifest(repo, sha512(data), data, query="?tag=v1")[0], 201)
            self.assertEqual(w.stop(), 0)

            def scrub():
                p = subprocess.run([WHARF_BIN, "scrub", w.config_path], capture_output=True,
                                   text=True, timeout=60)
                return p.returncode, p.stdout

            rc, out = scrub()
            self.assertEqual(rc, 0, out)
            self.assertIn("ok", out.splitlines()[1])
            layer = t.blob_file(repo, blobs[1])
            with open(layer, "r+b") as f:
                b0 = f.read(1)
                f.seek(0)
                f.write(bytes([b0[0] ^ 1]))
            rc, out = scrub()
            self.assertEqual(rc, 1, out)
            row = out.splitlines()[1].split()
            self.assertEqual(row[:3], [repo, "v1", "affected"])
            self.assertEqual(row[3], hexof(blobs[1]))
            self.assertIn("bad blob digest", out)
        finally:
            w.stop()
            w.cleanup()
            shutil.rmtree(w.root, ignore_errors=True)


class Sha512PullThrough(unittest.TestCase):
    """A second Wharf holds a sha512 image (Distribution may not hold
    sha512); the cache fetches, verifies and tees it like a sha256 one."""

    @classmethod
    def setUpClass(cls):
        cls.up = Wharf().start()
        cls.down = Wharf(up.sync_config([cls.up.url], destination="/mirror")).start()

    @classmethod
    def tearDownClass(cls):
        for w in (cls.down, cls.up):
            w.stop()
            w.cleanup()

    def test_image_through_the_cache(self):
        t = Base("setUp")
        t.w = self.up
        t.c = Client(self, self.up)
        data, blobs = t.image512("s5/pulled", seed="upstream")
        md = sha512(data)
        self.assertEqual(t.put_manifest("s5/pulled", md, data, query="?tag=v1")[0], 201)
        # By tag: the upstream's Docker-Content-Digest is sha512, so the
        # cache hashes the manifest with sha512 and keeps that digest.
        st, h, b = self.down.request("GET", "/v2/mirror/s5/pulled/manifests/v1")
        self.assertEqual((st, b), (200, data), b)
        self.assertEqual(h["docker-content-digest"], md)
        st, h, b = self.down.request("GET", "/v2/mirror/s5/pulled/manifests/%s" % md)
        self.assertEqual((st, b), (200, data))
        for d in blobs:
            for method in ("HEAD", "GET"):
                st, h, b = self.down.request(method, "/v2/mirror/s5/pulled/blobs/%s" % d)
                self.assertEqual(st, 200)
                self.assertEqual(h["docker-content-digest"], d)
                if method == "GET":
                    self.assertEqual(sha512(b), d)
        # In the cache's store as the image layout stores it.
        deadline = time.monotonic() + 10
        f = os.path.join(self.down.root, "mirror/s5/pulled/blobs/sha512", hexof(blobs[1]))
        while time.monotonic() < deadline and not os.path.exists(f):
            time.sleep(0.05)
        self.assertTrue(os.path.exists(f))
        self.assertTrue(os.path.exists(os.path.join(self.down.root, "mirror/s5/pulled/blobs/sha512",
                                                    hexof(md))))
        # Served from the store with the upstream gone: stop it, pull again.
        st, h, b = self.down.request("GET", "/v2/mirror/s5/pulled/blobs/%s" % blobs[1],
                                     headers={"Range": "bytes=0-9"})
        self.assertEqual(st, 206)

    def test_corrupt_upstream_blob_refused(self):
        # The upstream's file is flipped behind its back: the cache's sha512
        # check fails, the client's body is cut, nothing is stored.
        t = Base("setUp")
        t.w = self.up
        t.c = Client(self, self.up)
        data = os.urandom(50000)
        d = t.push512("s5/corrupt", data)
        path = t.blob_file("s5/corrupt", d)
        with open(path, "r+b") as f:
            f.seek(100)
            f.write(bytes([data[100] ^ 0xff]))
        c = self.down.conn()
        try:
            c.request("GET", "/v2/mirror/s5/corrupt/blobs/%s" % d)
            r = c.getresponse()
            try:
                body = r.read()
                self.assertNotEqual(sha512(body), sha512(data[:0]))
                self.assertLess(len(body), len(data), "a whole wrong body was sent")
            except (http.client.IncompleteRead, ConnectionError):
                pass
        finally:
            c.close()
        time.sleep(0.3)
        self.assertFalse(os.path.exists(os.path.join(self.down.root,
                                                     "mirror/s5/corrupt/blobs/sha512", hexof(d))))


@unittest.skipUnless(have("oras"), "oras is not installed")
class Oras(Base):
    """oras 1.2 (trixie) has no option to choose the digest algorithm of what
    it pushes: `oras push` and `oras manifest push` hash sha256. It does push
    a blob under a digest it is given (`oras blob push <ref>@sha512:...`,
    which it checks), and it fetches and pulls sha512 manifests and blobs."""

    def oras(self, *args):
        p = subprocess.run(["oras"] + list(args), capture_output=True, text=True, timeout=60,
                           cwd=self.tmp)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="wharf-s5-oras-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        super().tearDown()

    def test_push_and_pull_sha512(self):
        ref = "%s/%s" % (self.w.hostport, self.repo)
        content = b"hello sha512 from oras\n"
        with open(os.path.join(self.tmp, "f.txt"), "wb") as f:
            f.write(content)
        with open(os.path.join(self.tmp, "empty"), "wb") as f:
            f.write(b"{}")
        d = sha512(content)
        self.oras("blob", "push", "--plain-http", "%s@%s" % (ref, d), "f.txt")
        self.oras("blob", "push", "--plain-http", "%s@%s" % (ref, sha512(b"{}")), "empty")
        self.assertTrue(os.path.isfile(self.blob_file(self.repo, d)))
        # The manifest goes by HTTP (oras cannot push it by sha512).
        m = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "artifactType": "application/vnd.example.oras",
                 "config": desc512("application/vnd.oci.empty.v1+json", b"{}"),
                 "layers": [desc512("text/plain", content,
                                    annotations={"org.opencontainers.image.title": "f.txt"})]})
        md = sha512(m)
        self.assertEqual(self.put_manifest(self.repo, md, m, query="?tag=v1")[0], 201)
        out = self.oras("manifest", "fetch", "--plain-http", "%s@%s" % (ref, md))
        self.assertEqual(out.encode(), m)
        out = self.oras("blob", "fetch", "--plain-http", "--output", "-", "%s@%s" % (ref, d))
        self.assertEqual(out.encode(), content)
        for r in ("%s@%s" % (ref, md), ref + ":v1"):
            with self.subTest(ref=r):
                outdir = os.path.join(self.tmp, "out-" + r[-4:].replace(":", "_"))
                self.oras("pull", "--plain-http", "-o", outdir, r)
                with open(os.path.join(outdir, "f.txt"), "rb") as f:
                    self.assertEqual(f.read(), content)
        # And a sha256 push, the default, still works beside it.
        self.oras("push", "--plain-http", ref + ":plain", "f.txt")
        st, h, _ = self.req("HEAD", "/v2/%s/manifests/plain" % self.repo)
        self.assertTrue(h["docker-content-digest"].startswith("sha256:"))


if __name__ == "__main__":
    unittest.main()
