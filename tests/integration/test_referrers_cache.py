"""Referrers and tag lists through the pull-through cache.

    clients (oras, http.client)
        -> wharf (extensions.sync, destination /dockerhub)
            -> docker-registry (Distribution 2.8: no referrers API, so oras
               attaches with the tag schema: an index tagged sha256-<hex>)
            |  or HostileUpstream (test_hardening): a registry WITH a
               referrers API, and a paged tags/list, answering as told

The classes:
    TagSchemaTest        oras attach upstream (tag schema), oras discover and
                         oras pull through wharf; tags/list merges upstream's
    ReferrersApiTest     an upstream referrers API: cached for the window,
                         then served at once and refreshed in the background;
                         artifactType filtering; upstream down; invalid bodies
                         are not cached; local referrers merged
    TagListTest          local pushes merged with upstream tags (paged with
                         Link), n/last over the merged list, local only when
                         the upstream is down

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 -m unittest -v test_referrers_cache
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.parse

import images
import upstream as up
from harness import WHARF_BIN, Wharf, free_port, have
from test_hardening import HostileUpstream, sha, wait_for

MT_INDEX = images.MT_INDEX
SIG_TYPE = "application/vnd.example.sig"
SBOM_TYPE = "application/vnd.example.sbom"

_tmp = None


def setUpModule():
    global _tmp
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)
    _tmp = tempfile.mkdtemp(prefix="wharf-refcache-")


def tearDownModule():
    if _tmp:
        shutil.rmtree(_tmp, ignore_errors=True)


def desc(digest, size=100, artifact_type=SIG_TYPE, mt=images.MT_MANIFEST):
    d = {"mediaType": mt, "digest": digest, "size": size}
    if artifact_type:
        d["artifactType"] = artifact_type
    return d


def index_of(descs):
    return json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX,
                       "manifests": descs}).encode()


class Base(unittest.TestCase):
    maxDiff = 4000

    def tmpdir(self, name="t"):
        return tempfile.mkdtemp(prefix="%s-" % name, dir=_tmp)

    def wharf(self, url, **kw):
        kw.setdefault("maxRetries", 0)
        kw.setdefault("retryDelay", "100ms")
        w = Wharf(up.sync_config(url, **kw))
        self.addCleanup(self._finish, w)
        w.start()
        return w

    def _finish(self, w):
        running = w.proc is not None
        rc = w.stop()
        log = w.log()
        w.cleanup()
        if running and rc != 0:
            raise AssertionError("wharf exited with %r; log (tail):\n%s" % (rc, log[-6000:]))

    def hostile(self):
        h = HostileUpstream().start()
        self.addCleanup(h.stop)
        return h

    def get_json(self, w, path):
        st, h, body = w.request("GET", path)
        self.assertEqual(st, 200, "%s: %r\n%s" % (path, body[:500], w.log()[-3000:]))
        return h, json.loads(body)

    def referrers(self, w, name, digest, query=""):
        h, doc = self.get_json(w, "/v2/%s/referrers/%s%s" % (name, digest, query))
        self.assertEqual(h.get("content-type"), MT_INDEX)
        self.assertEqual(doc["mediaType"], MT_INDEX)
        return h, [(d["digest"], d.get("artifactType")) for d in doc["manifests"]]

    def tags(self, w, name, query=""):
        h, doc = self.get_json(w, "/v2/%s/tags/list%s" % (name, query))
        self.assertEqual(doc["name"], name)
        return h, doc["tags"]

    def push_local_artifact(self, w, name, subject_digest, subject_size, artifact_type,
                            payload):
        """An artifact referring to subject, pushed to wharf by digest."""
        lay = images.Layout(os.path.join(self.tmpdir("art"), "a"))
        cfg = lay.add_bytes("application/vnd.oci.empty.v1+json", b"{}")
        layer = lay.add_bytes("text/plain", payload)
        blob, data = images.add_manifest(
            lay, cfg, [layer], artifact_type=artifact_type,
            subject={"mediaType": images.MT_MANIFEST, "digest": subject_digest,
                     "size": subject_size})
        for body in (b"{}", payload):
            st, _, _ = w.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (name, sha(body)),
                                 body=body)
            self.assertEqual(st, 201)
        st, _, body = w.request("PUT", "/v2/%s/manifests/%s" % (name, blob.digest), data,
                                {"Content-Type": images.MT_MANIFEST})
        self.assertEqual(st, 201, body)
        return blob.digest


# ================================================================ tag schema (Distribution)

@unittest.skipUnless(have("docker-registry") and have("oras") and have("skopeo"),
                     "docker-registry, oras and skopeo are needed")
class TagSchemaTest(Base):
    """Distribution 2.8 has no referrers API: oras attaches there with the
    tag schema, and wharf's referrers API answers from that tag."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tagschema-", dir=_tmp)
        cls.dist = up.Distribution().start()
        try:
            cls.env = dict(os.environ, DOCKER_CONFIG=os.path.join(cls.tmp, "docker"),
                           HOME=cls.tmp, TMPDIR=cls.tmp)
            os.makedirs(os.path.join(cls.tmp, "docker"))
            cls.img = images.single_image(os.path.join(cls.tmp, "img"), "1", salt="tagschema")
            up.push(os.path.join(cls.tmp, "sk"), cls.img.ref, cls.dist.hostport, "team/app", "1")
            cls.payload = b"signed through the tag schema\n"
            with open(os.path.join(cls.tmp, "sig.txt"), "wb") as f:
                f.write(cls.payload)
            cls.oras("attach", "--plain-http", "--artifact-type", SIG_TYPE,
                     "--export-manifest", "sig.json",
                     "%s/team/app@%s" % (cls.dist.hostport, cls.img.digest), "sig.txt:text/plain")
            with open(os.path.join(cls.tmp, "sig.json"), "rb") as f:
                cls.sig = f.read()
            cls.sig_digest = sha(cls.sig)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.dist.stop()
        cls.dist.cleanup()

    @classmethod
    def oras(cls, *args):
        p = subprocess.run(["oras"] + list(args), cwd=cls.tmp, env=cls.env, timeout=120,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise AssertionError("oras %s: exit %d\n%s" % (
                " ".join(args), p.returncode, p.stderr.decode("utf-8", "replace")[-3000:]))
        return p.stdout.decode()

    def test_upstream_used_the_tag_schema(self):
        """Fixture check of the premise: the upstream has no referrers API
        and holds the sha256-<hex> tag."""
        c = up.upstream_client(self.dist)
        st, _, _, _ = c.request("GET", "/v2/team/app/referrers/%s" % self.img.digest)
        self.assertIn(st, (404, 405))
        st, _, body, _ = c.request("GET", "/v2/team/app/tags/list")
        self.assertIn("sha256-" + self.img.digest.split(":")[1], json.loads(body)["tags"])

    def test_discover_and_pull_through_wharf(self):
        w = self.wharf(self.dist.url)
        ref = "%s/dockerhub/team/app" % w.hostport
        out = self.oras("discover", "--plain-http", "--format", "json", ref + ":1")
        found = json.loads(out)["manifests"]
        self.assertEqual([(r["digest"], r["artifactType"]) for r in found],
                         [(self.sig_digest, SIG_TYPE)], out)
        _, got = self.referrers(w, "dockerhub/team/app", self.img.digest)
        self.assertEqual(got, [(self.sig_digest, SIG_TYPE)])
        h, got = self.referrers(w, "dockerhub/team/app", self.img.digest,
                                "?artifactType=" + SBOM_TYPE)
        self.assertEqual((got, h.get("oci-filters-applied")), ([], "artifactType"))
        # the artifact itself comes through the cache like any manifest
        out_dir = os.path.join(self.tmpdir("pull"), "out")
        self.oras("pull", "--plain-http", "-o", out_dir, "%s@%s" % (ref, self.sig_digest))
        with open(os.path.join(out_dir, "sig.txt"), "rb") as f:
            self.assertEqual(f.read(), self.payload)
        # cached now, the local and the upstream's answers agree (one entry)
        _, got = self.referrers(w, "dockerhub/team/app", self.img.digest)
        self.assertEqual(got, [(self.sig_digest, SIG_TYPE)])

    def test_tags_list_is_upstreams(self):
        w = self.wharf(self.dist.url)
        _, tags = self.tags(w, "dockerhub/team/app")
        self.assertEqual(tags, ["1", "sha256-" + self.img.digest.split(":")[1]])


# ================================================================ a referrers API upstream

class ReferrersApiTest(Base):
    NAME = "dockerhub/lib/app"
    SUBJECT = sha(b"the subject")

    def setUp(self):
        self.up = self.hostile()
        self.path = "/v2/lib/app/referrers/%s" % self.SUBJECT
        self.set_referrers([desc(sha(b"sig1")), desc(sha(b"sbom1"), artifact_type=SBOM_TYPE)])

    def set_referrers(self, descs, body=None, ctype=MT_INDEX):
        data = body if body is not None else index_of(descs)
        self.up.routes[self.path] = lambda h: self.up.send(h, 200, data, ctype)

    def test_cached_within_the_window_then_revalidated(self):
        w = self.wharf(self.up.url, manifest_check_interval="2s")
        want = sorted([(sha(b"sig1"), SIG_TYPE), (sha(b"sbom1"), SBOM_TYPE)])
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(got, want)
        self.assertEqual(self.up.hits_for(self.path), 1)
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(got, want)
        self.assertEqual(self.up.hits_for(self.path), 1, "asked again within the window")
        # past the window: the cached answer at once, a refresh behind it
        self.set_referrers([desc(sha(b"sig1")), desc(sha(b"sig2"))])
        time.sleep(2.2)
        t0 = time.monotonic()
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(got, want, "the stale answer is served")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertTrue(wait_for(lambda: self.up.hits_for(self.path) == 2, 5))
        new = sorted([(sha(b"sig1"), SIG_TYPE), (sha(b"sig2"), SIG_TYPE)])
        self.assertTrue(wait_for(
            lambda: self.referrers(w, self.NAME, self.SUBJECT)[1] == new, 5))
        self.assertEqual(self.up.hits_for(self.path), 2)

    def test_artifact_type_filter(self):
        w = self.wharf(self.up.url)
        h, got = self.referrers(w, self.NAME, self.SUBJECT, "?artifactType=" + SBOM_TYPE)
        self.assertEqual(got, [(sha(b"sbom1"), SBOM_TYPE)])
        self.assertEqual(h.get("oci-filters-applied"), "artifactType")
        h, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(len(got), 2)
        self.assertIsNone(h.get("oci-filters-applied"))
        h, got = self.referrers(w, self.NAME, self.SUBJECT, "?artifactType=application/x-none")
        self.assertEqual((got, h.get("oci-filters-applied")), ([], "artifactType"))
        self.assertEqual(self.up.hits_for(self.path), 1, "filtered from the cached answer")

    def test_local_referrers_are_merged(self):
        w = self.wharf(self.up.url)
        local = self.push_local_artifact(w, self.NAME, self.SUBJECT, 11, SIG_TYPE, b"local")
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(got, sorted([(sha(b"sig1"), SIG_TYPE), (sha(b"sbom1"), SBOM_TYPE),
                                      (local, SIG_TYPE)]))

    def test_upstream_down_serves_the_cached_answer(self):
        w = self.wharf(self.up.url, manifest_check_interval="1s")
        _, want = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(len(want), 2)
        self.up.stop()  # stopped again at cleanup: harmless
        time.sleep(1.2)
        for _ in range(3):
            t0 = time.monotonic()
            _, got = self.referrers(w, self.NAME, self.SUBJECT)
            self.assertEqual(got, want)
            self.assertLess(time.monotonic() - t0, 2.0)
            time.sleep(0.3)

    def test_upstream_down_with_nothing_cached_serves_local(self):
        port = free_port()
        w = self.wharf("http://127.0.0.1:%d" % port)
        local = self.push_local_artifact(w, self.NAME, self.SUBJECT, 11, SIG_TYPE, b"local")
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(got, [(local, SIG_TYPE)])

    def check_not_cached(self, body, ctype=MT_INDEX):
        self.set_referrers(None, body=body, ctype=ctype)
        w = self.wharf(self.up.url)
        local = self.push_local_artifact(w, self.NAME, self.SUBJECT, 11, SIG_TYPE, b"local")
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(got, [(local, SIG_TYPE)], "the local answer")
        self.assertEqual(self.up.hits_for(self.path), 1)
        self.assertIn("cannot list upstream", w.log())
        # not asked again by every request meanwhile
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual((got, self.up.hits_for(self.path)), ([(local, SIG_TYPE)], 1))

    def test_invalid_descriptor_is_not_cached(self):
        self.check_not_cached(index_of([desc("sha256:nothex")]))

    def test_negative_size_is_not_cached(self):
        self.check_not_cached(index_of([desc(sha(b"x"), size=-1)]))

    def test_garbage_index_is_not_cached(self):
        self.check_not_cached(b"{not json at all")

    def test_oversized_answer_is_not_cached(self):
        big = index_of([desc(sha(b"%d" % i)) for i in range(40000)])
        self.assertGreater(len(big), 4 << 20)
        self.check_not_cached(big)

    def test_no_referrers_api_uses_the_tag_schema(self):
        """404 on the endpoint: the sha256-<hex> tag is asked, its index used."""
        del self.up.routes[self.path]
        tag_path = "/v2/lib/app/manifests/sha256-%s" % self.SUBJECT.split(":")[1]
        self.up.manifest("lib/app", "sha256-" + self.SUBJECT.split(":")[1],
                         index_of([desc(sha(b"tagged"))]), ctype=MT_INDEX)
        w = self.wharf(self.up.url)
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(got, [(sha(b"tagged"), SIG_TYPE)])
        self.assertEqual((self.up.hits_for(self.path), self.up.hits_for(tag_path)), (1, 1))
        # a subject with neither: an empty list, cached too
        other = sha(b"other")
        _, got = self.referrers(w, self.NAME, other)
        _, got = self.referrers(w, self.NAME, other)
        self.assertEqual(got, [])
        self.assertEqual(self.up.hits_for("/v2/lib/app/referrers/%s" % other), 1)

    def test_sha512_subject_tag_schema_is_cut_to_64(self):
        """A sha512 subject's tag is sha512- and the first 64 characters of
        its hex (the distribution spec's truncation): the cache asks that."""
        import hashlib
        subject = "sha512:" + hashlib.sha512(b"the sha512 subject").hexdigest()
        tag = "sha512-" + subject.split(":")[1][:64]
        self.up.manifest("lib/app", tag, index_of([desc(sha(b"tagged512"))]), ctype=MT_INDEX)
        w = self.wharf(self.up.url)
        _, got = self.referrers(w, self.NAME, subject)
        self.assertEqual(got, [(sha(b"tagged512"), SIG_TYPE)])
        self.assertEqual(self.up.hits_for("/v2/lib/app/manifests/" + tag), 1)

    def test_non_index_answer_falls_back_to_the_tag_schema(self):
        self.set_referrers(None, body=b"<html>not here</html>", ctype="text/html")
        self.up.manifest("lib/app", "sha256-" + self.SUBJECT.split(":")[1],
                         index_of([desc(sha(b"tagged"))]), ctype=MT_INDEX)
        w = self.wharf(self.up.url)
        _, got = self.referrers(w, self.NAME, self.SUBJECT)
        self.assertEqual(got, [(sha(b"tagged"), SIG_TYPE)])


# ================================================================ tags/list

class TagListTest(Base):
    NAME = "dockerhub/lib/app"

    def serve_tags(self, u, tags, page=None):
        """tags/list of lib/app, paged by `page` with Link rel="next" when given."""
        path = "/v2/lib/app/tags/list"

        def handler(h):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
            last = q.get("last", [None])[0]
            rest = [t for t in tags if last is None or t > last]
            n = page or len(rest)
            out, more = rest[:n], len(rest) > n
            extra = {}
            if more:
                extra["Link"] = '<%s?n=%d&last=%s>; rel="next"' % (path, n, out[-1])
            u.send(h, 200, json.dumps({"name": "lib/app", "tags": out}).encode(),
                   "application/json", extra)
        u.routes[path] = handler
        return path

    def push_local(self, w, tag, salt):
        img = images.single_image(os.path.join(self.tmpdir("img"), "i"), tag, salt=salt)
        images.push(w.hostport, img, self.NAME, tag)

    def test_merged_and_paged(self):
        u = self.hostile()
        path = self.serve_tags(u, ["a", "B", "c", "latest", "v1"], page=2)
        w = self.wharf(u.url)
        self.push_local(w, "local1", "l1")
        self.push_local(w, "v1", "v1")   # also upstream: listed once
        self.push_local(w, "Z", "z")
        want = ["a", "B", "c", "latest", "local1", "v1", "Z"]
        _, got = self.tags(w, self.NAME)
        self.assertEqual(got, want)
        self.assertEqual(u.hits_for(path), 3, "the upstream's three pages")
        pages, q = [], "?n=3"
        while True:
            h, got = self.tags(w, self.NAME, q)
            pages.append(got)
            link = h.get("link")
            if not link:
                break
            q = "?" + link[1:link.index(">")].split("?", 1)[1]
        self.assertEqual(pages, [want[0:3], want[3:6], want[6:]])
        _, got = self.tags(w, self.NAME, "?n=2&last=latest")
        self.assertEqual(got, ["local1", "v1"])
        self.assertEqual(u.hits_for(path), 3, "answered from the cache within the window")

    def test_stale_served_then_refreshed(self):
        u = self.hostile()
        path = self.serve_tags(u, ["v1"])
        w = self.wharf(u.url, manifest_check_interval="1s")
        self.assertEqual(self.tags(w, self.NAME)[1], ["v1"])
        self.serve_tags(u, ["v1", "v2"])
        time.sleep(1.2)
        self.assertEqual(self.tags(w, self.NAME)[1], ["v1"], "stale, served at once")
        self.assertTrue(wait_for(lambda: u.hits_for(path) == 2, 5))
        self.assertTrue(wait_for(lambda: self.tags(w, self.NAME)[1] == ["v1", "v2"], 5))

    def test_tag_filters_of_the_rule_apply(self):
        u = self.hostile()
        self.serve_tags(u, ["v1", "v2", "dev"])
        w = self.wharf(u.url, tags={"regex": "^v"})
        self.assertEqual(self.tags(w, self.NAME)[1], ["v1", "v2"])

    def test_upstream_without_the_name(self):
        u = self.hostile()
        w = self.wharf(u.url)
        st, _, body = w.request("GET", "/v2/%s/tags/list" % self.NAME)
        self.assertEqual(st, 404, body)
        self.assertEqual(json.loads(body)["errors"][0]["code"], "NAME_UNKNOWN")
        self.push_local(w, "mine", "m")
        # the 404 is cached for the window; a new wharf asks again
        w2 = self.wharf(u.url)
        self.push_local(w2, "mine", "m")
        self.assertEqual(self.tags(w2, self.NAME)[1], ["mine"])

    def test_upstream_down_serves_local(self):
        w = self.wharf("http://127.0.0.1:%d" % free_port())
        st, _, body = w.request("GET", "/v2/%s/tags/list" % self.NAME)
        self.assertEqual(st, 502, body)
        self.push_local(w, "b", "b")
        self.push_local(w, "A", "a")
        self.assertEqual(self.tags(w, self.NAME)[1], ["A", "b"])
        self.assertEqual(self.tags(w, self.NAME, "?n=1")[1], ["A"])

    def test_upstream_down_serves_the_cached_answer(self):
        u = self.hostile()
        self.serve_tags(u, ["u1", "u2"])
        w = self.wharf(u.url, manifest_check_interval="1s")
        self.push_local(w, "l1", "l1")
        self.assertEqual(self.tags(w, self.NAME)[1], ["l1", "u1", "u2"])
        u.stop()
        time.sleep(1.2)
        for _ in range(2):
            self.assertEqual(self.tags(w, self.NAME)[1], ["l1", "u1", "u2"])
            time.sleep(0.3)

    def test_invalid_tags_are_not_taken(self):
        u = self.hostile()
        u.routes["/v2/lib/app/tags/list"] = lambda h: u.send(
            h, 200, b'{"name":"lib/app","tags":["ok","../../bad"]}', "application/json")
        w = self.wharf(u.url)
        self.push_local(w, "mine", "m")
        self.assertEqual(self.tags(w, self.NAME)[1], ["mine"])


if __name__ == "__main__":
    unittest.main()
