"""The pull-through cache's contract, case by case: what a client gets for
each upstream answer, and what ends up in the store. Written so that each
one-line bug listed in docs/testing.md fails at least one test here.

    clients (http.client)
        -> wharf (extensions.sync)
            -> fakes/faults.py (delay, 429, 503, drop, chunked, corrupt, substitute, ...)
            |  or fakes/hubfront.py (token dance, CDN redirect)
            -> docker-registry (Distribution 2.8), seeded once for the module
               with the small images (no 96 MiB layer: test_pull_through has it)

The classes:
    ErrorStatusTest      404 BLOB_UNKNOWN / MANIFEST_UNKNOWN, 429 TOOMANYREQUESTS, 502
    RangeTest            Range on cached and uncached blobs, and during a fetch
    ManifestIntegrityTest  a corrupted or substituted manifest (by tag, by digest)
                         is answered with an error and never cached
    SingleFlightTest     N clients of one uncached tag: one HEAD and one GET upstream
    ChunkedUpstreamTest  upstream blobs without Content-Length
    RetryTest            transient failures retried (maxRetries), exhausted retries
    ListingTest          tags/list, _catalog, referrers of synced names
    TagLifecycleTest     a tag deleted upstream, after the freshness window
    SharedFetchTest      a second repository joining a blob fetch in flight
    ShutdownTest         SIGTERM during a blob fetch, while clients wait on a manifest
    MappingTest          stripPrefix, several registries and content rules,
                         examples/config.json (/dockerhub + /ghcr) at run time

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 -m unittest -v test_cache
"""

import json
import os
import tempfile
import threading
import time
import types
import unittest
import urllib.parse
import uuid

import images
import test_pull_through as pt
import upstream as up
from harness import WHARF_BIN, WHARF_SRC, Wharf, have
from test_pull_through import (MANIFEST_ACCEPT, PROMPT_S, STATE, Base, fetch, get_blob,
                               get_manifest, mid_blob, wait_for)


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)
    for tool in ("docker-registry", "skopeo", "openssl"):
        if not have(tool):
            raise unittest.SkipTest("%s not installed" % tool)
    STATE.clear()  # test_pull_through's, when both modules run in one process
    tmp = tempfile.mkdtemp(prefix="wharf-cache-")
    STATE["tmp"] = tmp
    t0 = time.monotonic()
    dist = up.Distribution().start()
    STATE["dist"] = dist
    layouts = up.build_layouts(os.path.join(tmp, "layouts"), big=False)
    STATE["ups"] = up.seed(dist, os.path.join(tmp, "seed"), layouts=layouts)
    # The 4 MiB layer under a second name, for a fetch two repositories share.
    up.push(os.path.join(tmp, "sk"), layouts["library/mid:latest"][0].ref, dist.hostport,
            "library/midcopy", "latest")
    STATE["hub"] = up.HubFront(dist.url).start()
    print("\n[cache] upstream seeded in %.1fs: %s" % (time.monotonic() - t0, dist.url))


def tearDownModule():
    pt.tearDownModule()
    STATE.clear()


def codes(r):
    """The error codes of an OCI error body, in order ([] if it is not one)."""
    try:
        return [e.get("code") for e in json.loads(r.body)["errors"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def upstream_put_blob(client, repo, data):
    """Upload data to Distribution (POST, then PUT ?digest=: it has no
    monolithic POST). Returns the digest."""
    d = images.sha256_digest(data)
    st, h, body, _ = client.request("POST", "/v2/%s/blobs/uploads/" % repo)
    if st != 202:
        raise AssertionError("POST upload: %d %r" % (st, body[:300]))
    loc = urllib.parse.urlsplit(h["location"])
    path = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + d
    st, _, body, _ = client.request("PUT", path, {"Content-Type": "application/octet-stream"},
                                    data)
    if st != 201:
        raise AssertionError("PUT upload: %d %r" % (st, body[:300]))
    return d


def repo_manifests(root, repo):
    """The manifest entries of <root>/<repo>/index.json ([] when there is none)."""
    try:
        with open(os.path.join(root, repo, "index.json")) as f:
            return json.load(f).get("manifests", [])
    except OSError:
        return []


def repo_blob_files(root, repo):
    d = os.path.join(root, repo, "blobs", "sha256")
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


class CacheBase(Base):

    def faults(self):
        f = up.FaultProxy(self.dist.url).start()
        self.addCleanup(f.cleanup)
        self.addCleanup(f.stop)
        return f

    def fwharf(self, f, **kw):
        """A Wharf in front of the fault proxy f under /f (one retry, 100 ms)."""
        kw.setdefault("destination", "/f")
        kw.setdefault("maxRetries", 1)
        kw.setdefault("retryDelay", "100ms")
        return self.wharf(f.url, **kw)

    def push_up(self, img, repo, tag):
        """Push an images.py image to the upstream (skopeo)."""
        up.push(os.path.join(self.tmpdir("sk"), "cfg"), img.ref, self.dist.hostport, repo, tag)

    def start_wharf(self, cfg):
        """A Wharf with this exact config (merged over harness.Wharf's local one)."""
        w = Wharf(cfg)
        self.addCleanup(self._finish, w)
        w.start()
        return w

    def assert_error(self, r, status, code, w=None):
        self.assertEqual((r.status, codes(r)), (status, [code]),
                         "%r%s" % (r, self.log_tail(w) if w else ""))


# ================================================================ error statuses

class ErrorStatusTest(CacheBase):
    """What the upstream answers reaches the client as the spec's status and code."""

    def test_blob_missing_upstream_is_404_blob_unknown(self):
        w = self.wharf()
        missing = images.sha256_digest(b"no such blob upstream")
        for repo in ("dockerhub/library/busy", "dockerhub/library/nosuch"):
            path = "/v2/%s/blobs/%s" % (repo, missing)
            r = fetch(w.port, path)
            self.assert_error(r, 404, "BLOB_UNKNOWN", w)
            r = fetch(w.port, path, method="HEAD")
            self.assertEqual(r.status, 404, "HEAD %s: %r" % (repo, r))
        self.assertEqual(up.root_has_blob(w.root, missing), [])

    def test_manifest_missing_upstream_is_404_manifest_unknown(self):
        w = self.wharf()
        for repo, ref in (("library/busy", "nosuchtag"), ("library/nosuch", "latest"),
                          ("library/busy", images.sha256_digest(b"no such manifest"))):
            r = get_manifest(w, "dockerhub/" + repo, ref)
            self.assert_error(r, 404, "MANIFEST_UNKNOWN", w)

    def test_blob_429_is_429_toomanyrequests(self):
        """A 429 with a long Retry-After is passed on at once (not waited for),
        and a 429 once the retries are spent is a 429 too."""
        f = self.faults()
        repo, dg, size = mid_blob()
        for retries, retry_after in ((1, 120), (0, None)):
            w = self.fwharf(f, maxRetries=retries)
            f.set("429", path_contains=dg, retry_after=retry_after)
            t0 = time.monotonic()
            r = get_blob(w, "f/" + repo, dg, keep_body=True, timeout=30)
            self.assertLess(time.monotonic() - t0, PROMPT_S)
            self.assert_error(r, 429, "TOOMANYREQUESTS", w)
            self.assertEqual(up.root_has_blob(w.root, dg), [])
        f.clear()
        r = get_blob(w, "f/" + repo, dg)
        self.assertEqual((r.status, r.sha), (200, dg), "after the 429s, the blob comes")

    def test_manifest_429_with_nothing_cached_is_429(self):
        f = self.faults()
        w = self.fwharf(f, maxRetries=0)
        f.set("429", path_contains="/manifests/")
        r = get_manifest(w, "f/library/busy", "latest")
        self.assert_error(r, 429, "TOOMANYREQUESTS", w)
        self.assertEqual(repo_manifests(w.root, "f/library/busy"), [])

    def test_upstream_5xx_is_502(self):
        f = self.faults()
        w = self.fwharf(f, maxRetries=0)
        repo, dg, size = mid_blob()
        f.set("503", path_contains="/library/busy/")
        self.assert_error(get_manifest(w, "f/library/busy", "latest"), 502, "UNKNOWN", w)
        f.set("500", path_contains=dg)
        self.assert_error(get_blob(w, "f/" + repo, dg, keep_body=True), 502, "UNKNOWN", w)


# ================================================================ ranges

def range_cases(size):
    """(Range header, first, last) with last None for a 416: the end at size,
    size - 1 and beyond it, open ranges, suffixes shorter than, equal to and
    longer than the blob."""
    return [
        ("bytes=%d-%d" % (size - 24, size), size - 24, size - 1),
        ("bytes=%d-%d" % (size - 24, size - 1), size - 24, size - 1),
        ("bytes=%d-%d" % (size - 24, size - 2), size - 24, size - 2),
        ("bytes=%d-%d" % (size - 24, size + 1000), size - 24, size - 1),
        ("bytes=0-%d" % size, 0, size - 1),
        ("bytes=%d-%d" % (size - 1, size), size - 1, size - 1),
        ("bytes=%d-" % (size - 1), size - 1, size - 1),
        ("bytes=-24", size - 24, size - 1),
        ("bytes=-%d" % size, 0, size - 1),
        ("bytes=-%d" % (size + 7), 0, size - 1),
        ("bytes=%d-%d" % (size, size + 10), None, None),
        ("bytes=%d-" % size, None, None),
    ]


class RangeTest(CacheBase):
    """Range through the cache: the tee (blob not cached: every request below
    starts its own fetch) and the store (cached) must agree with the bytes."""

    def check_range(self, w, repo, dg, data, rng, a, z, how):
        r = fetch(w.port, "/v2/%s/blobs/%s" % (repo, dg), headers={"Range": rng}, timeout=10)
        size = len(data)
        where = "%s %s: %r" % (how, rng, r)
        if a is None:
            self.assertEqual((r.status, r.headers.get("content-range")),
                             (416, "bytes */%d" % size), where)
            return
        self.assertEqual(r.status, 206, where)
        self.assertEqual(r.headers.get("content-range"), "bytes %d-%d/%d" % (a, z, size), where)
        self.assertEqual(r.headers.get("content-length"), str(z - a + 1), where)
        self.assertIsNone(r.error, where)
        self.assertEqual(r.body, data[a:z + 1], where)

    def setup_blob(self):
        w = self.wharf()
        repo, dg, size = mid_blob()
        data = up.upstream_client(self.dist).blob(repo, dg)
        name = "dockerhub/" + repo
        self.assert_manifest(w, name, "latest", self.ups["library/mid:latest"])
        blob_file = os.path.join(w.root, name, "blobs", "sha256", dg.split(":")[1])
        return w, name, dg, data, blob_file

    def test_ranges_on_uncached_blob(self):
        w, name, dg, data, blob_file = self.setup_blob()
        for rng, a, z in range_cases(len(data)):
            # Not cached: the range is answered by the tee (which fetches
            # the whole blob, and publishes it, even for a 416).
            self.assertFalse(os.path.exists(blob_file))
            self.check_range(w, name, dg, data, rng, a, z, "uncached")
            self.assertTrue(wait_for(lambda: os.path.exists(blob_file), 10), "not published")
            self.assertEqual(up.sha256_file(blob_file), dg)
            st, _, body = w.request("DELETE", "/v2/%s/blobs/%s" % (name, dg))
            self.assertEqual(st, 202, body)

    def test_ranges_on_cached_blob(self):
        w, name, dg, data, blob_file = self.setup_blob()
        r = get_blob(w, name, dg)
        self.assertEqual((r.status, r.sha), (200, dg))
        self.assertTrue(wait_for(lambda: os.path.exists(blob_file), 10), "not published")
        for rng, a, z in range_cases(len(data)):
            self.check_range(w, name, dg, data, rng, a, z, "cached")

    def test_range_to_the_end_during_a_fetch(self):
        """A range ending at the blob's size asked while the fetch runs (the
        tee's reader joins late): answered once the digest verifies."""
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        data = up.upstream_client(self.dist).blob(repo, dg)
        self.assert_manifest(w, "f/" + repo, "latest", self.ups["library/mid:latest"])
        f.set("throttle", rate_bytes_per_s=4e6, path_contains=dg)
        box = {}
        t = threading.Thread(target=lambda: box.setdefault(
            "all", get_blob(w, "f/" + repo, dg, timeout=20)))
        t.start()
        self.assertTrue(wait_for(lambda: f.stats()["blob_bytes"].get(dg, 0) > 256 << 10, 10),
                        "the fetch did not start" + self.log_tail(w))
        for rng, a, z in (("bytes=%d-%d" % (size - 100, size), size - 100, size - 1),
                          ("bytes=-10", size - 10, size - 1)):
            self.check_range(w, "f/" + repo, dg, data, rng, a, z, "during the fetch")
        t.join(20)
        self.assertEqual((box["all"].status, box["all"].sha), (200, dg))
        self.assertEqual(f.stats()["blob_gets"].get(dg), 1)


    def test_range_of_a_blob_that_fails_verification_is_cut(self):
        """A range asked during a fetch whose blob turns out corrupt (a byte
        flipped after the range) never looks complete: its last byte waits
        for the digest, which fails."""
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        self.assert_manifest(w, "f/" + repo, "latest", self.ups["library/mid:latest"])
        f.set("flip", after_bytes=size - 100, rate_bytes_per_s=2e6, path_contains=dg, count=1)
        box = {}
        t = threading.Thread(target=lambda: box.setdefault(
            "all", get_blob(w, "f/" + repo, dg, timeout=20)))
        t.start()
        self.assertTrue(wait_for(lambda: f.stats()["blob_bytes"].get(dg, 0) > 256 << 10, 10),
                        "the fetch did not start" + self.log_tail(w))
        r = fetch(w.port, "/v2/f/%s/blobs/%s" % (repo, dg), headers={"Range": "bytes=0-999"},
                  timeout=20)
        t.join(20)
        self.assertEqual(f.stats()["counters"].get("bytes_flipped"), 1)
        self.assertFalse(r.status == 206 and r.error is None and r.length == 1000,
                         "a range of an unverified blob looked complete: %r" % r)
        self.assertFalse(box["all"].complete(), box["all"])
        self.assert_nothing_partial(w.root, dg)


# ================================================================ manifest integrity

class ManifestIntegrityTest(CacheBase):
    """The fault proxy changes the manifest body of a GET and keeps the
    upstream's headers (Docker-Content-Digest included). Wharf must answer
    with an error and cache nothing, by tag and by digest."""

    def check_rejected(self, mode, ref, **rule):
        f = self.faults()
        w = self.fwharf(f, maxRetries=0)
        img = self.ups["library/busy:latest"]
        f.set(mode, method="GET", path_contains="/manifests/", **rule)
        r = get_manifest(w, "f/library/busy", ref)
        self.assertGreaterEqual(f.stats()["counters"].get("bodies_rewritten", 0), 1,
                                "the fault was not applied")
        self.assert_error(r, 502, "UNKNOWN", w)
        self.assertEqual(repo_manifests(w.root, "f/library/busy"), [], "a manifest was cached")
        self.assertEqual(repo_blob_files(w.root, "f/library/busy"), [], "bytes were stored")
        # The upstream heals: the right manifest comes, and is cached.
        f.clear()
        f.reset()
        self.assert_manifest(w, "f/library/busy", ref, img)
        self.assertEqual([m["digest"] for m in repo_manifests(w.root, "f/library/busy")],
                         [img.digest])

    def test_corrupted_by_tag(self):
        self.check_rejected("corrupt", "latest")

    def test_corrupted_by_digest(self):
        self.check_rejected("corrupt", self.ups["library/busy:latest"].digest)

    def test_substituted_by_tag(self):
        self.check_rejected("substitute", "latest",
                            body_from="/v2/library/busy/manifests/v1")

    def test_substituted_by_digest(self):
        self.check_rejected("substitute", self.ups["library/busy:latest"].digest,
                            body_from="/v2/library/busy/manifests/v1")

    def test_corrupted_after_a_retag_keeps_the_cached_copy(self):
        """The tag moves upstream and the new manifest arrives corrupted: the
        copy cached before is served (stale), the corrupt one is not stored;
        once the upstream heals the new one comes."""
        f = self.faults()
        w = self.fwharf(f, maxRetries=0, manifest_check_interval="1s")
        repo = "library/retag-%s" % uuid.uuid4().hex[:8]
        t = self.tmpdir()
        a = images.single_image(os.path.join(t, "a"), "1", salt=repo + "a")
        b = images.single_image(os.path.join(t, "b"), "1", salt=repo + "b")
        self.push_up(a, repo, "1")
        self.assert_manifest(w, "f/" + repo, "1", a)
        self.push_up(b, repo, "1")
        f.set("corrupt", method="GET", path_contains="/manifests/")
        time.sleep(1.2)
        r = get_manifest(w, "f/" + repo, "1")
        self.assertEqual((r.status, r.sha), (200, a.digest), r)
        # Revalidated in the background (stale while revalidate).
        self.assertTrue(wait_for(lambda: f.stats()["counters"].get("bodies_rewritten") == 1, 10))
        r = get_manifest(w, "f/" + repo, "1")
        self.assertEqual((r.status, r.sha), (200, a.digest), r)
        self.assertEqual([m["digest"] for m in repo_manifests(w.root, "f/" + repo)], [a.digest])
        f.clear()
        time.sleep(1.2)
        # Past the retry delay after the failure: revalidated, then the new one.
        self.assertTrue(wait_for(lambda: get_manifest(w, "f/" + repo, "1").sha == b.digest, 20))


# ================================================================ single flight

class SingleFlightTest(CacheBase):

    N = 8

    def concurrent(self, w, ref):
        results = [None] * self.N
        barrier = threading.Barrier(self.N)

        def client(i):
            try:
                barrier.wait(10)
            except threading.BrokenBarrierError:
                pass
            results[i] = get_manifest(w, "f/library/busy", ref, timeout=30)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(self.N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(40)
        return results

    def test_clients_of_one_uncached_tag_cause_one_head_and_one_get(self):
        f = self.faults()
        w = self.fwharf(f)
        img = self.ups["library/busy:latest"]
        # Slow answers: every client arrives while the first one's fetch runs.
        f.set("delay", delay_ms=700, path_contains="/manifests/latest")
        results = self.concurrent(w, "latest")
        for i, r in enumerate(results):
            self.assertEqual((r.status, r.sha), (200, img.digest), "client %d: %r" % (i, r))
        s = f.stats()
        self.assertEqual(s["manifest_heads"], {"library/busy:latest": 1}, s["manifest_heads"])
        self.assertEqual(s["manifest_gets"], {"library/busy:latest": 1}, s["manifest_gets"])

    def test_clients_of_one_uncached_digest_cause_one_get(self):
        f = self.faults()
        w = self.fwharf(f)
        img = self.ups["library/busy:latest"]
        f.set("delay", delay_ms=700, path_contains="/manifests/sha256:")
        results = self.concurrent(w, img.digest)
        for i, r in enumerate(results):
            self.assertEqual((r.status, r.sha), (200, img.digest), "client %d: %r" % (i, r))
        s = f.stats()
        self.assertEqual(s["manifest_heads"], {})
        self.assertEqual(s["manifest_gets"], {"library/busy:" + img.digest: 1})


# ================================================================ no Content-Length upstream

class ChunkedUpstreamTest(CacheBase):
    """The upstream sends blob bodies with Transfer-Encoding: chunked."""

    def test_blob_whose_size_its_manifest_declared(self):
        """The size is known from the manifest: the answer streams from the
        first bytes on (throttled upstream: 4 MiB in about a second)."""
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        self.assert_manifest(w, "f/" + repo, "latest", self.ups["library/mid:latest"])
        rate = 4e6
        f.set("throttle", rate_bytes_per_s=rate, chunked=True, method="GET", path_contains=dg)
        r = get_blob(w, "f/" + repo, dg)
        self.assertEqual((r.status, r.error, r.length, r.sha), (200, None, size, dg),
                         "%r%s" % (r, self.log_tail(w)))
        self.assertEqual(r.headers.get("content-length"), str(size))
        self.assertGreater(r.elapsed, 0.8 * size / rate, "not throttled?")
        self.assertLess(r.ttfb, 0.25 * size / rate, "the answer waited for the whole body")
        self.assertTrue(wait_for(lambda: up.root_has_blob(w.root, dg), 10))
        self.assert_nothing_partial(w.root)

    def test_blob_of_unknown_size(self):
        """No manifest asked first: the size is known only at the end of the
        body, and the answer starts then (with a Content-Length)."""
        f = self.faults()
        w = self.fwharf(f)
        img = self.ups["library/busy:latest"]
        f.set("chunked", method="GET", path_contains="/blobs/")
        for dg, size in img.blobs.items():
            r = get_blob(w, "f/library/busy", dg)
            self.assertEqual((r.status, r.error, r.length, r.sha), (200, None, size, dg),
                             "%r%s" % (r, self.log_tail(w)))
            self.assertEqual(r.headers.get("content-length"), str(size))
        self.assertEqual(f.stats()["counters"].get("fault_chunked"), len(img.blobs))
        self.assert_nothing_partial(w.root)

    def test_cut_or_flipped_blob_of_unknown_size(self):
        """A flipped byte is an error, never a complete-looking answer. A cut
        is resumed (a Range request): the answer is then the right bytes; and
        a cut on every request, past the resumes, is an error again."""
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        rule = {"mode": "flip", "after_bytes": 3 << 20, "chunked": True, "path_contains": dg,
                "method": "GET", "count": 1}
        f.set_rules([rule])
        r = get_blob(w, "f/" + repo, dg, keep_body=True)
        self.assertFalse(r.status == 200 and r.error is None, "flip: a complete-looking %r" % r)
        self.assertNotEqual(r.length, size)
        self.assertTrue(wait_for(lambda: not up.tmp_files(w.root), 10))
        self.assert_nothing_partial(w.root, dg)
        f.set_rules([dict(rule, mode="cut", after_bytes=1 << 20)])
        r = get_blob(w, "f/" + repo, dg)
        self.assertEqual((r.status, r.error, r.length, r.sha), (200, None, size, dg), r)
        self.assertTrue(wait_for(lambda: up.root_has_blob(w.root, dg), 10))
        # Another repository name, so the blob is fetched again, cut every time.
        w2 = self.fwharf(f)
        f.set_rules([dict(rule, mode="cut", after_bytes=256 << 10, count=None)])
        r = get_blob(w2, "f/" + repo, dg, keep_body=True)
        self.assertFalse(r.status == 200 and r.error is None, "cut: a complete-looking %r" % r)
        self.assertNotEqual(r.length, size)
        self.assertTrue(wait_for(lambda: not up.tmp_files(w2.root), 10))
        self.assert_nothing_partial(w2.root, dg)

    def test_head_of_uncached_blob_without_length(self):
        """An upstream HEAD without Content-Length must not make the blob look
        empty: the size its manifest declared, else no Content-Length."""
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        f.set("chunked", method="HEAD", path_contains=dg)
        path = "/v2/f/%s/blobs/%s" % (repo, dg)
        r = fetch(w.port, path, method="HEAD")
        self.assertEqual((r.status, r.headers.get("content-length")), (200, None), r.headers)
        self.assertEqual(r.headers.get("docker-content-digest"), dg)
        self.assert_manifest(w, "f/" + repo, "latest", self.ups["library/mid:latest"])
        r = fetch(w.port, path, method="HEAD")
        self.assertEqual((r.status, r.headers.get("content-length")), (200, str(size)),
                         r.headers)
        self.assertEqual(f.stats()["counters"].get("fault_chunked"), 2)


# ================================================================ retries

class RetryTest(CacheBase):

    def test_transient_blob_failures_are_retried(self):
        """One 503, one dropped connection, one 429 with Retry-After: 1 — each
        followed by a good answer: the client gets the blob from the retry."""
        f = self.faults()
        w = self.fwharf(f, maxRetries=2)
        img = self.ups["library/busy:latest"]
        for dg, rule in zip(img.layers, ({"mode": "503"}, {"mode": "drop"},
                                        {"mode": "429", "retry_after": 1})):
            rule.update(path_contains=dg, count=1)
            f.set_rules([rule])
            f.reset()
            t0 = time.monotonic()
            r = get_blob(w, "f/library/busy", dg, timeout=30)
            took = time.monotonic() - t0
            self.assertEqual((r.status, r.error, r.sha), (200, None, dg),
                             "%s: %r%s" % (rule["mode"], r, self.log_tail(w)))
            s = f.stats()
            self.assertEqual(s["counters"].get("faults_applied"), 1, rule["mode"])
            self.assertEqual(s["blob_gets"].get(dg), 2, "%s: one failure, one retry"
                             % rule["mode"])
            if rule["mode"] == "429":
                self.assertGreaterEqual(took, 0.9, "Retry-After: 1 not honoured")
            self.assertLess(took, PROMPT_S)

    def test_retries_spent(self):
        f = self.faults()
        w = self.fwharf(f, maxRetries=2)
        img = self.ups["library/busy:latest"]
        dg = img.layers[0]
        f.set("503", path_contains=dg)
        r = get_blob(w, "f/library/busy", dg, keep_body=True, timeout=30)
        self.assert_error(r, 502, "UNKNOWN", w)
        self.assertEqual(f.stats()["blob_gets"].get(dg), 3, "the first try and two retries")


# ================================================================ listings

class ListingTest(CacheBase):
    """_catalog answers from what is cached (the upstream is not asked);
    tags/list and referrers of a synced name merge the upstream's answer
    with the cached one (test_referrers_cache has the details)."""

    def test_tags_and_catalog_of_cached_names(self):
        w = self.wharf()
        self.hub.reset()
        st, _, body = w.request("GET", "/v2/dockerhub/library/busy/tags/list")
        self.assertEqual((st, json.loads(body)),
                         (200, {"name": "dockerhub/library/busy", "tags": ["latest", "v1"]}),
                         "the upstream's tags, nothing cached yet")
        self.assertIn("tags GET", self.hub.stats()["by_kind"])  # (a 401, then with a token)
        st, _, body = w.request("GET", "/v2/dockerhub/library/nothing/tags/list")
        self.assertEqual(st, 404, body)
        self.assertEqual(json.loads(body)["errors"][0]["code"], "NAME_UNKNOWN")
        st, _, body = w.request("GET", "/v2/_catalog")
        self.assertEqual((st, json.loads(body)), (200, {"repositories": []}))
        for tag in ("v1", "latest"):
            self.assert_manifest(w, "dockerhub/library/busy", tag,
                                 self.ups["library/busy:" + tag])
        self.assert_manifest(w, "dockerhub/team/app", "v2s2", self.ups["team/app:v2s2"])
        self.hub.reset()
        st, _, body = w.request("GET", "/v2/dockerhub/library/busy/tags/list")
        self.assertEqual((st, json.loads(body)),
                         (200, {"name": "dockerhub/library/busy", "tags": ["latest", "v1"]}))
        st, h, body = w.request("GET", "/v2/dockerhub/library/busy/tags/list?n=1")
        self.assertEqual(json.loads(body)["tags"], ["latest"])
        self.assertIn("last=latest", h.get("link", ""))
        st, _, body = w.request("GET", "/v2/_catalog")
        self.assertEqual((st, json.loads(body)),
                         (200, {"repositories": ["dockerhub/library/busy",
                                                 "dockerhub/team/app"]}))
        kinds = self.hub.stats()["by_kind"]
        self.assertNotIn("tags GET", kinds, "the upstream's list is cached for the window")
        self.assertNotIn("catalog GET", kinds)

    def test_referrers_of_cached_names(self):
        """An artifact whose subject is an image, both upstream, pushed by
        digest only: Distribution has no referrers API and no sha256-<hex>
        tag names it, so the upstream lists no referrers, and the list names
        the artifact once it is cached (by digest), and not before."""
        repo = "library/refs-%s" % uuid.uuid4().hex[:8]
        t = self.tmpdir()
        subject = images.single_image(os.path.join(t, "s"), "1", salt="refs-subject")
        self.push_up(subject, repo, "1")
        lay = images.Layout(os.path.join(t, "a"))
        cfg = lay.add_bytes("application/vnd.oci.empty.v1+json", b"{}")
        sig = lay.add_bytes("application/vnd.example.signature", b"signed: " + repo.encode())
        art_blob, art = images.add_manifest(
            lay, cfg, [sig], artifact_type="application/vnd.example.signature",
            subject={"mediaType": subject.media_type, "digest": subject.digest,
                     "size": subject.size})
        client = up.upstream_client(self.dist)
        for data in (b"{}", b"signed: " + repo.encode()):
            upstream_put_blob(client, repo, data)
        st, _, body, _ = client.request("PUT", "/v2/%s/manifests/%s" % (repo, art_blob.digest),
                                        {"Content-Type": images.MT_MANIFEST}, art)
        self.assertEqual(st, 201, body)

        w = self.wharf()
        name = "dockerhub/" + repo
        path = "/v2/%s/referrers/%s" % (name, subject.digest)
        r = get_manifest(w, name, "1")
        self.assertEqual((r.status, r.sha), (200, subject.digest))
        st, h, body = w.request("GET", path)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["manifests"], [], "not cached yet: nothing listed")
        r = get_manifest(w, name, art_blob.digest)
        self.assertEqual((r.status, r.sha), (200, art_blob.digest), r)
        st, h, body = w.request("GET", path)
        self.assertEqual((st, h.get("content-type")), (200, images.MT_INDEX))
        got = json.loads(body)["manifests"]
        self.assertEqual([(m["digest"], m.get("artifactType")) for m in got],
                         [(art_blob.digest, "application/vnd.example.signature")], got)
        st, h, body = w.request("GET", path + "?artifactType=application/vnd.example.other")
        self.assertEqual(json.loads(body)["manifests"], [])


# ================================================================ tags come and go upstream

class TagLifecycleTest(CacheBase):

    def test_revalidated_tag_is_fresh_for_another_window(self):
        """A HEAD that finds the digest unchanged starts a new freshness
        window: the next requests within it do not go upstream."""
        w = self.wharf(manifest_check_interval="2s")
        img = self.ups["library/busy:latest"]
        self.assert_manifest(w, "dockerhub/library/busy", "latest", img)
        time.sleep(2.2)
        self.hub.reset()
        self.assert_manifest(w, "dockerhub/library/busy", "latest", img)
        # Revalidated in the background (stale while revalidate).
        wait_for(lambda: self.hub.stats()["manifest_heads"], 10)
        s = self.hub.stats()
        self.assertEqual((s["manifest_heads"], s["manifest_gets"]),
                         ({"library/busy:latest": 1}, {}), "revalidated with one HEAD")
        self.hub.reset()
        for _ in range(3):
            self.assert_manifest(w, "dockerhub/library/busy", "latest", img)
        self.assertEqual(self.hub.stats()["by_kind"], {}, "asked again within the window")

    def test_tag_deleted_upstream_is_still_served(self):
        """Wharf's behaviour, documented: a tag whose manifest was deleted
        upstream keeps being served from the cache after the freshness window
        (the upstream's 404 counts as a check, so it is not asked again within
        the next window); by digest it stays served too."""
        interval = 2.0
        repo = "library/gone-%s" % uuid.uuid4().hex[:8]
        img = images.single_image(os.path.join(self.tmpdir(), "g"), "1", salt=repo)
        self.push_up(img, repo, "1")
        w = self.wharf(manifest_check_interval="2s")
        name = "dockerhub/" + repo
        self.assert_manifest(w, name, "1", img)
        st, _, body, _ = up.upstream_client(self.dist).request(
            "DELETE", "/v2/%s/manifests/%s" % (repo, img.digest))
        self.assertEqual(st, 202, body)
        st, _, _, _ = up.upstream_client(self.dist).request(
            "GET", "/v2/%s/manifests/1" % repo, {"Accept": MANIFEST_ACCEPT})
        self.assertEqual(st, 404, "the tag is still upstream")
        time.sleep(interval + 0.3)
        self.hub.reset()
        r = get_manifest(w, name, "1")
        self.assertEqual((r.status, r.sha), (200, img.digest), r)
        # Revalidated in the background: the answer may come before the HEAD.
        wait_for(lambda: self.hub.stats()["manifest_heads"], 10)
        s = self.hub.stats()
        self.assertEqual(s["manifest_heads"], {repo + ":1": 1}, "revalidated with a HEAD")
        self.assertEqual(s["manifest_gets"], {})
        self.hub.reset()
        for ref in ("1", img.digest):
            r = get_manifest(w, name, ref)
            self.assertEqual((r.status, r.sha), (200, img.digest), r)
        self.assertEqual(self.hub.stats()["by_kind"], {}, "asked again within the window")


# ================================================================ shared fetches

class SharedFetchTest(CacheBase):

    def test_second_repository_joins_a_blob_fetch(self):
        """library/mid and library/midcopy hold the same 4 MiB layer upstream:
        a client of the second repository asking while the first one's fetch
        runs joins it (one upstream GET); both get the bytes and afterwards
        both repositories hold the blob."""
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        img = self.ups["library/mid:latest"]
        self.assert_manifest(w, "f/library/mid", "latest", img)
        self.assert_manifest(w, "f/library/midcopy", "latest", img)
        f.set("throttle", rate_bytes_per_s=2e6, path_contains=dg)
        box = {}
        ta = threading.Thread(target=lambda: box.setdefault(
            "a", get_blob(w, "f/library/mid", dg, timeout=20)))
        ta.start()
        self.assertTrue(wait_for(lambda: f.stats()["blob_bytes"].get(dg, 0) > 256 << 10, 10),
                        "the fetch did not start" + self.log_tail(w))
        box["b"] = get_blob(w, "f/library/midcopy", dg, timeout=20)
        ta.join(20)
        for k in ("a", "b"):
            r = box.get(k)
            self.assertEqual((r.status, r.error, r.length, r.sha), (200, None, size, dg),
                             "client %s: %r%s" % (k, r, self.log_tail(w)))
        s = f.stats()
        self.assertEqual(s["blob_gets"], {dg: 1}, "one upstream GET for both repositories")
        hexd = dg.split(":")[1]
        for name in ("f/library/mid", "f/library/midcopy"):
            p = os.path.join(w.root, name, "blobs", "sha256", hexd)
            self.assertTrue(wait_for(lambda: os.path.exists(p), 10), "%s lacks the blob" % name)
            self.assertEqual(up.sha256_file(p), dg)
        f.reset()
        for name in ("f/library/mid", "f/library/midcopy"):
            r = get_blob(w, name, dg)
            self.assertEqual((r.status, r.sha), (200, dg))
        self.assertEqual(f.stats()["blob_gets"], {}, "served from the cache")


# ================================================================ SIGTERM

class ShutdownTest(CacheBase):
    """SIGTERM while upstream work runs: Wharf exits 0 within its
    shutdownTimeout (1 s here), no sanitizer report, every client gets an
    answer or a cut (never a hang), nothing partial is left behind."""

    SHUTDOWN_S = 1.0

    def swharf(self, f):
        cfg = up.sync_config(f.url, destination="/f", maxRetries=0, retryDelay="100ms")
        cfg["http"] = {"wharf": {"shutdownTimeout": "1s"}}
        return self.start_wharf(cfg)

    def stop_and_check(self, w):
        t0 = time.monotonic()
        rc = w.stop(timeout=15)
        took = time.monotonic() - t0
        log = w.log()
        self.assertEqual(rc, 0, "exit status; log:\n" + log[-4000:])
        self.assertLess(took, self.SHUTDOWN_S + 4, "slow to exit")
        for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
            self.assertNotIn(bad, log)
        return took

    def test_sigterm_during_a_blob_fetch(self):
        f = self.faults()
        w = self.swharf(f)
        repo, dg, size = mid_blob()
        f.set("throttle", rate_bytes_per_s=1e6, path_contains=dg)
        box = {}
        t = threading.Thread(target=lambda: box.setdefault(
            "r", get_blob(w, "f/" + repo, dg, timeout=30)))
        t.start()
        self.assertTrue(wait_for(lambda: f.stats()["blob_bytes"].get(dg, 0) > 256 << 10, 10),
                        "the fetch did not start" + self.log_tail(w))
        self.stop_and_check(w)
        t.join(10)
        self.assertFalse(t.is_alive(), "the client hangs after Wharf exited")
        r = box["r"]
        self.assertTrue(r.error is not None or (r.length, r.sha) == (size, dg),
                        "neither a cut nor the whole blob: %r" % r)
        # Restarted on the same root: no temp file, nothing partial.
        w.start()
        self.assertEqual(up.tmp_files(w.root), [])
        self.assert_nothing_partial(w.root, None if r.error is None else dg)

    def test_sigterm_with_a_fetch_nobody_waits_for(self):
        f = self.faults()
        w = self.swharf(f)
        repo, dg, size = mid_blob()
        f.set("throttle", rate_bytes_per_s=1e6, path_contains=dg)
        c = w.conn(timeout=10)
        c.request("GET", "/v2/f/%s/blobs/%s" % (repo, dg))
        resp = c.getresponse()
        self.assertEqual(resp.status, 200)
        resp.read(64 << 10)
        c.close()  # the only client leaves; the fetch goes on
        self.assertTrue(wait_for(lambda: f.stats()["blob_bytes"].get(dg, 0) > 256 << 10, 10))
        self.stop_and_check(w)

    def test_sigterm_while_clients_wait_on_a_manifest(self):
        f = self.faults()
        w = self.swharf(f)
        img = self.ups["library/busy:latest"]
        f.set("delay", delay_ms=6000, path_contains="/manifests/")
        results = [None] * 3
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, get_manifest(w, "f/library/busy", "latest", timeout=30))) for i in range(3)]
        for t in threads:
            t.start()
        self.assertTrue(wait_for(lambda: f.stats()["by_kind"].get("manifest HEAD"), 10))
        time.sleep(0.2)
        self.stop_and_check(w)
        for t in threads:
            t.join(5)
            self.assertFalse(t.is_alive(), "a client hangs after Wharf exited")
        for r in results:
            self.assertTrue(r.status is None or (r.status, r.sha) == (200, img.digest),
                            "neither a cut nor the manifest: %r" % r)


# ================================================================ mappings

class MappingTest(CacheBase):

    def registry(self, url, content, **extra):
        reg = {"urls": [url], "onDemand": True, "tlsVerify": False, "content": content}
        reg.update(extra)
        return reg

    def names_asked(self, fake):
        """Sorted "manifest <name>" and "blob <name>" of what fake was asked."""
        return sorted(set("%s %s" % (e["kind"], e["name"]) for e in fake.stats()["events"]
                          if e["kind"] in ("manifest", "blob")))

    def test_strip_prefix(self):
        """prefix library/** with stripPrefix under /lib: /lib/busy is the
        upstream's library/busy."""
        w = self.start_wharf({"extensions": {"sync": {"enable": True, "registries": [
            self.registry(self.hub.url, [{"prefix": "library/**", "destination": "/lib",
                                          "stripPrefix": True}])]}}})
        self.hub.reset()
        img = self.ups["library/busy:latest"]
        self.assert_image_via_api(w, "lib/busy", "latest", img)
        r = get_manifest(w, "lib/library/busy", "latest")
        self.assertEqual(r.status, 404, r)
        r = get_manifest(w, "dockerhub/library/busy", "latest")
        self.assertEqual(r.status, 404, "an unmapped name must not be synced: %r" % r)
        self.assertEqual(self.names_asked(self.hub),
                         ["blob library/busy", "manifest library/busy",
                          "manifest library/library/busy"])

    def test_several_registries_and_content_rules(self):
        """Registry 1 (hub front): library/busy under /a, team/** under /b.
        Registry 2 (fault proxy): everything under /c, tags ^v1$ only. Each
        name goes to its own upstream; unmatched names and tags go nowhere."""
        f = self.faults()
        w = self.start_wharf({"extensions": {"sync": {"enable": True, "registries": [
            self.registry(self.hub.url, [{"prefix": "library/busy", "destination": "/a"},
                                         {"prefix": "team/**", "destination": "/b"}]),
            self.registry(f.url, [{"prefix": "**", "destination": "/c",
                                   "tags": {"regex": "^v1$"}}])]}}})
        self.hub.reset()
        busy, v1 = self.ups["library/busy:latest"], self.ups["library/busy:v1"]
        self.assert_image_via_api(w, "a/library/busy", "latest", busy)
        self.assert_image_via_api(w, "b/team/app", "v2s2", self.ups["team/app:v2s2"])
        self.assert_image_via_api(w, "c/library/busy", "v1", v1)
        for name, ref in (("a/library/multi", "latest"), ("b/library/busy", "latest"),
                          ("c/library/busy", "latest")):
            r = get_manifest(w, name, ref)
            self.assertEqual(r.status, 404, "%s:%s %r" % (name, ref, r))
        self.assertEqual(self.names_asked(self.hub),
                         ["blob library/busy", "blob team/app", "manifest library/busy",
                          "manifest team/app"])
        self.assertEqual(self.names_asked(f), ["blob library/busy", "manifest library/busy"])
        refs = set(e["ref"] for e in f.stats()["events"] if e["kind"] == "manifest")
        self.assertEqual(refs, {"v1"})

    def test_classic_config_at_run_time(self):
        """examples/config.json as it is (two registries, /dockerhub and /ghcr,
        tlsVerify), with only the root, the listen address and a certDir
        (the test CA) changed. Both upstream URLs are reached through
        https_proxy = a hub front posing as them (a certificate for their
        names, made here from the example's URLs)."""
        with open(os.path.join(WHARF_SRC, "examples", "config.json")) as fh:
            cfg = json.load(fh)
        regs = cfg["extensions"]["sync"]["registries"]
        self.assertEqual([r["content"][0]["destination"] for r in regs], ["/dockerhub", "/ghcr"])
        hosts = [urllib.parse.urlsplit(r["urls"][0]).hostname for r in regs]
        p = pt.pki()
        mitm = leaf_cert(p, self.tmpdir("mitm"), hosts + list(up.DOCKER_HUB_NAMES))
        hub = up.HubFront(self.dist.url, mitm=mitm).start()
        self.addCleanup(hub.cleanup)
        self.addCleanup(hub.stop)
        del cfg["storage"]["rootDirectory"]
        del cfg["http"]
        for r in regs:
            r["certDir"] = p.certdir_ca_only
        w = Wharf(cfg)
        self.addCleanup(self._finish, w)
        w.start(env={"https_proxy": hub.url, "HTTPS_PROXY": hub.url,
                     "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"})
        busy = self.ups["library/busy:latest"]
        self.assert_image_via_api(w, "dockerhub/busy", "latest", busy)
        self.assert_manifest(w, "dockerhub/library/busy", "latest", busy)
        self.assert_image_via_api(w, "ghcr/library/busy", "latest", busy)
        r = get_manifest(w, "ghcr/busy", "latest")
        self.assertEqual(r.status, 404, "no library/ for the second registry: %r" % r)
        c = hub.stats()["counters"]
        connected = sorted(k.split(":", 1)[1] for k in c if k.startswith("connect:"))
        self.assertEqual(len(connected), 2, connected)
        self.assertIn(hosts[1], connected)
        self.assertTrue(set(connected) - {hosts[1]} <= set(up.DOCKER_HUB_NAMES), connected)


def leaf_cert(pki, d, names):
    """A server certificate for names, signed by the test CA: an object with
    server_crt and server_key, as HubFront(mitm=...) wants."""
    key, csr, crt, ext = (os.path.join(d, n) for n in ("leaf.key", "leaf.csr", "leaf.crt",
                                                         "leaf.ext"))
    with open(ext, "w") as fh:
        fh.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,"
                 "keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n"
                 % ",".join("DNS:" + n for n in sorted(set(names))))
    up.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", key,
            "-out", csr, "-subj", "/CN=wharf-test-mitm"])
    up.run(["openssl", "x509", "-req", "-in", csr, "-CA", pki.ca_crt, "-CAkey", pki.ca_key,
            "-CAcreateserial", "-out", crt, "-days", "3", "-sha256", "-extfile", ext])
    return types.SimpleNamespace(server_crt=crt, server_key=key)


if __name__ == "__main__":
    unittest.main()
