"""Periodic sync (Zot's pollInterval): images appear in the store without any
client pull.

    wharf (pollInterval 1s, onDemand false)
        -> fakes/faults.py (counters, delays)
            -> docker-registry (Distribution 2.8), seeded once for the module

    PeriodicTest     tags synced with the upstream's digests; tag filters (regex,
                     excludeRegex, semver) and cosign-looking tags; a second run
                     fetches nothing; a re-tag upstream is picked up; at most 3
                     images in progress; SIGTERM mid-run exits 0
    NoCatalogTest    an upstream without /v2/_catalog is reported once

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 -m unittest -v test_periodic
"""

import os
import shutil
import signal
import tempfile
import time
import unittest

import upstream as up
from harness import WHARF_BIN, Wharf, have
from test_hardening import HostileUpstream
from test_pull_through import fetch, get_blob, get_manifest, wait_for

STATE = {}

# repo:tag -> the layout pushed there
PUSHES = [
    ("library/busy", "latest", "busy"),
    ("library/busy", "v1", "busy-v1"),
    ("library/busy", "v1.2.3-alpine", "busy"),
    ("library/busy", "v2-rc", "busy-v1"),
    ("library/busy", "1.0.0.1", "busy"),
    ("library/multi", "latest", "multi"),
    ("library/retag", "t", "busy"),
    ("team/app", "v1", "busy-v1"),
]


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)
    for tool in ("docker-registry", "skopeo"):
        if not have(tool):
            raise unittest.SkipTest("%s not installed" % tool)
    tmp = tempfile.mkdtemp(prefix="wharf-periodic-")
    STATE["tmp"] = tmp
    dist = up.Distribution().start()
    STATE["dist"] = dist
    lay = up.build_layouts(os.path.join(tmp, "layouts"), big=False)
    refs = {"busy": lay["library/busy:latest"][0].ref, "busy-v1": lay["library/busy:v1"][0].ref,
            "multi": lay["library/multi:latest"][0].ref}
    sk = os.path.join(tmp, "sk")
    for repo, tag, src in PUSHES:
        up.push(sk, refs[src], dist.hostport, repo, tag)
    client = up.upstream_client(dist)
    STATE["client"] = client
    STATE["refs"] = refs
    ups = {"%s:%s" % (r, t): up.read_image(client, r, t) for r, t, _ in PUSHES}
    # A cosign signature's tag: never synced as an image.
    sig = "sha256-%s.sig" % ups["library/busy:latest"].digest.split(":")[1]
    up.push(sk, refs["busy-v1"], dist.hostport, "library/busy", sig)
    STATE["sig"] = sig
    STATE["ups"] = ups
    STATE["flt"] = up.FaultProxy(dist.url).start()


def tearDownModule():
    for k in ("flt", "dist"):
        if STATE.get(k):
            STATE[k].stop()
    if STATE.get("dist"):
        STATE["dist"].cleanup()
    shutil.rmtree(STATE.get("tmp", "/nonexistent"), True)
    STATE.clear()


def periodic_config(url, prefix="library/**", tags=None, interval="1s", destination="/mirror"):
    return up.sync_config(url, destination=destination, prefix=prefix, tags=tags,
                          on_demand=False, pollInterval=interval)


def count(w, message):
    return sum(1 for r in w.log_records() if r.get("message") == message)


class Base(unittest.TestCase):
    maxDiff = 4000

    def wharf(self, cfg, level="info"):
        cfg.setdefault("log", {})["level"] = level
        w = Wharf(cfg)
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

    def wait_runs(self, w, n, timeout=20):
        ok = wait_for(lambda: count(w, "periodic sync finished") >= n, timeout)
        self.assertTrue(ok, "fewer than %d runs; log:\n%s" % (n, w.log()[-4000:]))

    def tags(self, w, repo):
        r = fetch(w.port, "/v2/%s/tags/list" % repo)
        if r.status == 404:
            return set()
        self.assertEqual(r.status, 200, r)
        return set(r.json()["tags"] or [])

    def assert_image(self, w, repo, tag, upimg):
        r = get_manifest(w, repo, tag)
        self.assertEqual((r.status, r.sha), (200, upimg.digest), "%s:%s %r" % (repo, tag, r))
        for d, child in upimg.children.items():
            self.assertEqual(get_manifest(w, repo, d).sha, child.digest)
        for d, size in upimg.blobs.items():
            b = get_blob(w, repo, d)
            self.assertEqual((b.status, b.length, b.sha), (200, size, d), "blob %s" % d)


class PeriodicTest(Base):
    def setUp(self):
        self.flt = STATE["flt"]
        self.flt.clear()
        self.ups = STATE["ups"]

    def test_images_synced_then_nothing_then_retag(self):
        w = self.wharf(periodic_config(self.flt.url), level="debug")
        self.wait_runs(w, 1)
        # Every tag of the matching repositories, with the upstream's digests,
        # without any client pull (onDemand is false: served from the store).
        self.assertEqual(self.tags(w, "mirror/library/busy"),
                         {"latest", "v1", "v1.2.3-alpine", "v2-rc", "1.0.0.1"})
        self.assertNotIn(STATE["sig"], self.tags(w, "mirror/library/busy"))
        self.assertEqual(self.tags(w, "mirror/team/app"), set())  # prefix library/**
        for name, img in self.ups.items():
            repo, tag = name.split(":")
            if repo.startswith("library/"):
                self.assert_image(w, "mirror/" + repo, tag, img)
        self.assertEqual(count(w, "successfully synced image"), 7, w.log()[-3000:])
        # The next run fetches no manifest and no blob: a HEAD per tag.
        self.flt.reset()
        n = count(w, "periodic sync finished")
        self.wait_runs(w, n + 1)
        st = self.flt.stats()
        self.assertEqual((st["manifest_gets"], st["blob_gets"]), ({}, {}), st["by_kind"])
        self.assertGreaterEqual(count(w, "skipping image because it's already synced"), 7)
        self.assertEqual(count(w, "successfully synced image"), 7)
        # A tag moved upstream is picked up by the next run.
        up.push(os.path.join(STATE["tmp"], "sk"), STATE["refs"]["multi"],
                STATE["dist"].hostport, "library/retag", "t")
        moved = up.read_image(STATE["client"], "library/retag", "t")
        self.assertNotEqual(moved.digest, self.ups["library/retag:t"].digest)
        # The tag moves when its manifest is stored; the image is complete
        # when its line is logged.
        ok = wait_for(lambda: count(w, "successfully synced image") >= 8, 10)
        self.assertTrue(ok, w.log()[-3000:])
        self.assert_image(w, "mirror/library/retag", "t", moved)
        up.push(os.path.join(STATE["tmp"], "sk"), STATE["refs"]["busy"],
                STATE["dist"].hostport, "library/retag", "t")

    def test_tag_filters(self):
        tags = {"regex": "^v", "excludeRegex": "rc$", "semver": True}
        w = self.wharf(periodic_config(self.flt.url, prefix="library/busy", tags=tags,
                                       destination="/f"))
        self.wait_runs(w, 1)
        self.assertEqual(self.tags(w, "f/library/busy"), {"v1", "v1.2.3-alpine"})
        self.assert_image(w, "f/library/busy", "v1", self.ups["library/busy:v1"])
        # semver alone: latest and 1.0.0.1 fail it.
        w2 = self.wharf(periodic_config(self.flt.url, prefix="library/busy",
                                        tags={"semver": True}, destination="/s"))
        self.wait_runs(w2, 1)
        self.assertEqual(self.tags(w2, "s/library/busy"), {"v1", "v1.2.3-alpine", "v2-rc"})

    def test_stripprefix_maps_like_on_demand(self):
        cfg = periodic_config(self.flt.url, prefix="library/*", destination="/lib")
        cfg["extensions"]["sync"]["registries"][0]["content"][0]["stripPrefix"] = True
        w = self.wharf(cfg)
        self.wait_runs(w, 1)
        self.assert_image(w, "lib/multi", "latest", self.ups["library/multi:latest"])

    def test_at_most_three_images_at_a_time(self):
        # Every manifest HEAD takes 0.4 s: with 3 slots no more than 3 start
        # in any 0.35 s, and more than one does (they do overlap).
        self.flt.set("delay", delay_ms=400, method="HEAD", path_contains="/manifests/")
        self.flt.reset()
        w = self.wharf(periodic_config(self.flt.url))
        self.wait_runs(w, 1, timeout=30)
        heads = sorted(e["t"] for e in self.flt.stats()["events"]
                       if e["method"] == "HEAD" and e["kind"] == "manifest")
        self.assertGreaterEqual(len(heads), 7)
        most = max(sum(1 for u in heads if t <= u < t + 0.35) for t in heads)
        self.assertLessEqual(most, 3, heads)
        self.assertGreaterEqual(most, 2, heads)

    def test_sigterm_mid_run_exits_cleanly(self):
        self.flt.set("delay", delay_ms=3000, path_contains="/blobs/")
        w = self.wharf(periodic_config(self.flt.url, destination="/t"))
        self.assertTrue(wait_for(lambda: count(w, "periodic sync started") >= 1, 10))
        time.sleep(0.5)
        t0 = time.monotonic()
        rc = w.stop(signal.SIGTERM, timeout=15)
        self.assertEqual(rc, 0, w.log()[-3000:])
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(count(w, "periodic sync finished"), 0)


class NoCatalogTest(Base):
    def test_reported_once(self):
        hostile = HostileUpstream().start()  # /v2/_catalog: 404
        self.addCleanup(hostile.stop)
        w = self.wharf(periodic_config(hostile.url, prefix="**"))
        self.assertTrue(wait_for(lambda: count(w, "periodic sync finished") >= 1, 10))
        time.sleep(3.5)  # three more intervals
        self.assertEqual(count(w, "periodic sync started"), 1, w.log()[-3000:])
        recs = [r for r in w.log_records()
                if r.get("message", "").startswith("upstream has no catalog")]
        self.assertEqual(len(recs), 1)
        self.assertEqual(recs[0]["level"], "warn")
        self.assertEqual(hostile.hits.get("/v2/_catalog"), 1)


if __name__ == "__main__":
    unittest.main()
