"""Garbage collection and retention, as Zot's (docs/gc.md; the reference's §5).

Ages are made, not waited for: a test pushes, stops the server, sets the
mtimes of the files it wants old two hours back (hard links share one inode:
aging a repository's link ages the shared copy too), and starts the server
again, whose first sweep runs at once. gcDelay is 1h, so anything not aged
is young and must survive.

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_gc
"""

import json
import os
import threading
import time
import unittest

from harness import Wharf
from test_oci_conformance import (MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST,
                                  Client, descriptor, enc, sha256)

OLD = 2 * 3600


def gc_config(**storage):
    s = {"gc": True, "gcDelay": "1h", "gcInterval": "1h"}
    s.update(storage)
    return {"storage": s}


class GcTest(unittest.TestCase):

    def setUp(self):
        self.w = None

    def tearDown(self):
        if self.w:
            self.w.stop()
            self.w.cleanup()

    def start(self, config):
        self.w = Wharf(config)
        self.w.start()
        self.c = Client(self, self.w)
        self.wait_sweeps(1)

    def restart(self):
        self.w.stop()
        self.start_and_sweep()

    def start_and_sweep(self):
        """Start the stopped server and wait for its first sweep."""
        n = self.sweeps_logged()
        self.w.start()
        self.wait_sweeps(n + 1)

    def sweeps_logged(self):
        return sum(1 for r in self.w.log_records()
                   if r.get("message") == "gc successfully completed")

    def wait_sweeps(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sweeps_logged() >= n:
                return
            time.sleep(0.05)
        self.fail("no gc sweep finished; log:\n" + self.w.log())

    def blob_path(self, repo, digest):
        return os.path.join(self.w.root, repo, "blobs", "sha256", digest.split(":", 1)[1])

    def age(self, repo, digest, seconds=OLD):
        t = time.time() - seconds
        os.utime(self.blob_path(repo, digest), (t, t))

    def status(self, method, path):
        return self.w.request(method, path)[0]

    def image(self, repo, tag=None, seed="x", extra=None):
        data, d, blobs = self.c.push_image(repo, tag, seed=seed, extra=extra)
        return d, [sha256(b) for b in blobs]

    def records(self, message):
        return [r for r in self.w.log_records() if r.get("message") == message]


class Collect(GcTest):

    def test_untagged_orphans_children_referrers(self):
        self.start(gc_config())
        repo = "gc/a"
        tagged, tagged_blobs = self.image(repo, "v1", seed="t")
        untagged, untagged_blobs = self.image(repo, None, seed="u")
        young, young_blobs = self.image(repo, None, seed="y")
        # An index (tagged) and its child, pushed by digest: the child is
        # untagged but listed, so it stays.
        child, child_blobs = self.image(repo, None, seed="c")
        child_data = self.w.request("GET", "/v2/%s/manifests/%s" % (repo, child))[2]
        index = enc({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                     "manifests": [descriptor(MT_OCI_MANIFEST, child_data,
                                              platform={"os": "linux",
                                                        "architecture": "amd64"})]})
        self.c.push_manifest(repo, "multi", index, MT_OCI_INDEX)
        # A referrer of the tagged image (no deleteReferrers): stays.
        tagged_data = self.w.request("GET", "/v2/%s/manifests/v1" % repo)[2]
        ref, ref_blobs = self.image(repo, None, seed="r",
                                    extra={"subject": descriptor(MT_OCI_MANIFEST, tagged_data)})
        orphan = self.c.push_blob(repo, b"an orphan blob" * 20)
        young_orphan = self.c.push_blob(repo, b"a young orphan" * 20)

        self.w.stop()
        for d in [tagged, untagged, child, ref, orphan] + untagged_blobs + tagged_blobs + \
                child_blobs + ref_blobs:
            self.age(repo, d)
        self.start_and_sweep()

        m = "/v2/%s/manifests/" % repo
        b = "/v2/%s/blobs/" % repo
        self.assertEqual(self.status("GET", m + "v1"), 200)
        self.assertEqual(self.status("GET", m + tagged), 200)
        self.assertEqual(self.status("GET", m + untagged), 404)
        self.assertEqual(self.status("GET", m + young), 200, "younger than the delay")
        self.assertEqual(self.status("GET", m + child), 200, "an index lists it")
        self.assertEqual(self.status("GET", m + ref), 200, "a referrer")
        for d in tagged_blobs + child_blobs + young_blobs + ref_blobs + [young_orphan]:
            self.assertEqual(self.status("HEAD", b + d), 200, d)
        # The untagged image's layer is its alone: gone with it; its config
        # is shared with nothing either.
        for d in untagged_blobs + [orphan]:
            self.assertEqual(self.status("HEAD", b + d), 404, d)
        removed = self.records("removed untagged manifest")
        self.assertEqual([r["digest"] for r in removed], [untagged])
        self.assertEqual(removed[0]["reason"], "deleteUntagged")
        self.assertTrue(self.records("garbage collected blobs"))
        # The shared copies of what went are gone too: nothing is left
        # that no repository links.
        shared = os.path.join(self.w.root, ".wharf", "blobs", "sha256")
        for name in os.listdir(shared):
            self.assertGreater(os.stat(os.path.join(shared, name)).st_nlink, 1, name)

    def test_empty_repository_removed(self):
        self.start(gc_config())
        d = self.c.push_blob("gc/empty", b"alone" * 30)
        self.c.push_blob("gc/kept", b"kept" * 30)
        self.image("gc/kept", "v1")
        self.w.stop()
        self.age("gc/empty", d)
        self.start_and_sweep()
        self.assertFalse(os.path.exists(os.path.join(self.w.root, "gc", "empty")))
        st, _, body = self.w.request("GET", "/v2/_catalog")
        self.assertEqual(json.loads(body)["repositories"], ["gc/kept"])
        self.assertEqual(self.status("HEAD", "/v2/gc/kept/manifests/v1"), 200)

    def test_sweep_lists_what_another_tool_wrote(self):
        # A repository written into the root by another tool (skopeo copy
        # oci:..., a restore) while Wharf runs: listed once a sweep walked it.
        self.start(gc_config(gcInterval="1s"))
        repo = os.path.join(self.w.root, "other", "tool")
        blobs = os.path.join(repo, "blobs", "sha256")
        os.makedirs(blobs)
        config = enc({"architecture": "amd64", "os": "linux"})
        manifest = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "config": descriptor(MT_OCI_CONFIG, config), "layers": []})
        for data in (config, manifest):
            with open(os.path.join(blobs, sha256(data)[7:]), "wb") as f:
                f.write(data)
        with open(os.path.join(repo, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        with open(os.path.join(repo, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": [
                {"mediaType": MT_OCI_MANIFEST, "digest": sha256(manifest),
                 "size": len(manifest),
                 "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
        self.assertEqual(self.status("GET", "/v2/other/tool/manifests/v1"), 200)  # served
        names = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            n = self.sweeps_logged()
            self.wait_sweeps(n + 1)
            names = json.loads(self.w.request("GET", "/v2/_catalog")[2])["repositories"]
            if "other/tool" in names:
                break
        self.assertIn("other/tool", names)

    def test_stale_shared_copy_removed(self):
        self.start(gc_config())
        self.image("gc/s", "v1")
        # A copy in the shared store that no repository links (a crash
        # between unlinks leaves one).
        data = b"stray shared copy"
        path = os.path.join(self.w.root, ".wharf", "blobs", "sha256", sha256(data)[7:])
        with open(path, "wb") as f:
            f.write(data)
        young = os.path.join(self.w.root, ".wharf", "blobs", "sha256", "0" * 64)
        with open(young, "wb") as f:
            f.write(b"young")
        t = time.time() - OLD
        os.utime(path, (t, t))
        self.restart()
        self.assertFalse(os.path.exists(path))
        self.assertTrue(os.path.exists(young), "younger than gcDelay")
        self.assertEqual(self.status("GET", "/v2/gc/s/manifests/v1"), 200)

    def test_delete_frees_the_shared_copy(self):
        # Dedupe keeps one copy in .wharf/blobs, linked into each repository
        # that holds the blob: deleting it from the last one frees the copy
        # at once (it used to stay for ever). GC off: the DELETE does it.
        self.start({"storage": {"gc": False, "wharf": {"cacheMaxSize": "1GiB"}}})
        data = b"shared between two repositories" * 10
        d = self.c.push_blob("del/a", data)
        self.c.push_blob("del/b", data)
        shared = os.path.join(self.w.root, ".wharf", "blobs", "sha256", d[7:])
        self.assertEqual(os.stat(shared).st_nlink, 3)
        self.assertEqual(self.status("DELETE", "/v2/del/a/blobs/" + d), 202)
        self.assertEqual(os.stat(shared).st_nlink, 2)
        self.assertEqual(self.status("DELETE", "/v2/del/b/blobs/" + d), 202)
        self.assertFalse(os.path.exists(shared))

    def test_dry_run_changes_nothing(self):
        self.start(gc_config(retention={"dryRun": True}))
        repo = "gc/dry"
        self.image(repo, "v1")
        untagged, blobs = self.image(repo, None, seed="u")
        orphan = self.c.push_blob(repo, b"orphan" * 20)
        self.w.stop()
        for d in [untagged, orphan] + blobs:
            self.age(repo, d)
        self.start_and_sweep()
        self.assertEqual(self.status("GET", "/v2/%s/manifests/%s" % (repo, untagged)), 200)
        self.assertEqual(self.status("HEAD", "/v2/%s/blobs/%s" % (repo, orphan)), 200)
        removed = self.records("removed untagged manifest")
        self.assertEqual([r["digest"] for r in removed], [untagged])
        self.assertTrue(all(r["dry-run"] for r in removed))

    def test_gc_off_collects_nothing(self):
        self.start({"storage": {"gc": False,
                                "wharf": {"cacheMaxSize": "1GiB"}}})  # a byte count runs
        repo = "gc/off"
        untagged, blobs = self.image(repo, None, seed="u")
        self.w.stop()
        for d in [untagged] + blobs:
            self.age(repo, d)
        self.start_and_sweep()
        self.assertEqual(self.status("GET", "/v2/%s/manifests/%s" % (repo, untagged)), 200)


class Retention(GcTest):

    def test_keep_tags_patterns_and_referrers(self):
        policy = {"repositories": ["ret/**"], "deleteReferrers": True,
                  "keepTags": [{"patterns": ["^v1"]}]}
        self.start(gc_config(retention={"delay": "1h", "policies": [policy]}))
        repo = "ret/app"
        v1, v1_blobs = self.image(repo, "v1.0", seed="1")
        v2, v2_blobs = self.image(repo, "v2.0", seed="2")
        v2_data = self.w.request("GET", "/v2/%s/manifests/v2.0" % repo)[2]
        sig, sig_blobs = self.image(repo, None, seed="s",
                                    extra={"subject": descriptor(MT_OCI_MANIFEST, v2_data)})
        other, _ = self.image("other/app", "v2.0", seed="o")  # no policy: kept
        self.w.stop()
        for d in [v1, v2, sig] + v1_blobs + v2_blobs + sig_blobs:
            self.age(repo, d)
        self.start_and_sweep()
        m = "/v2/%s/manifests/" % repo
        self.assertEqual(self.status("GET", m + "v1.0"), 200)
        self.assertEqual(self.status("GET", m + "v2.0"), 404)
        # v2.0 lost its tag, then (old, untagged) its manifest; then its
        # referrer, whose subject is gone.
        self.assertEqual(self.status("GET", m + v2), 404)
        self.assertEqual(self.status("GET", m + sig), 404)
        self.assertEqual(self.status("GET", "/v2/other/app/manifests/v2.0"), 200)
        applied = [r for r in self.records("applied policy") if r.get("decision") == "delete"]
        self.assertEqual([(r["tag"], r["repository"]) for r in applied], [("v2.0", repo)])
        self.assertEqual(applied[0]["reason"], "didn't meet any tag 'patterns' rules")
        refs = self.records("removed manifest without reference")
        self.assertEqual([r["digest"] for r in refs], [sig])
        self.assertEqual(refs[0]["reason"], "deleteReferrers")

    def test_pulled_within_keeps_recent_pulls(self):
        # Statistics come from the metadata log: the tag pulled now is kept;
        # the one pushed two hours ago and never pulled goes; one with no
        # statistics at all is kept, as Zot keeps it.
        policy = {"repositories": ["**"], "keepTags": [{"pulledWithin": "1h"}]}
        self.start(gc_config(retention={"policies": [policy]}))
        repo = "ret/pulled"
        hot, _ = self.image(repo, "hot", seed="h")
        cold, _ = self.image(repo, "cold", seed="c")
        self.image(repo, "unknown", seed="n")
        self.w.stop()
        # Rewrite the log as the server writes it: both pushed 2 h ago, hot
        # pulled a minute ago, and "unknown" not in it at all.
        old_ms = int((time.time() - OLD) * 1000)
        with open(os.path.join(self.w.root, ".wharf", "meta.log"), "w") as f:
            f.write(meta_line("U", old_ms, repo, cold))
            f.write(meta_line("U", old_ms, repo, hot))
            f.write(meta_line("L", int((time.time() - 60) * 1000), repo, hot))
        self.start_and_sweep()
        self.assertEqual(self.status("HEAD", "/v2/%s/manifests/hot" % repo), 200)
        self.assertEqual(self.status("HEAD", "/v2/%s/manifests/unknown" % repo), 200)
        self.assertEqual(self.status("HEAD", "/v2/%s/manifests/cold" % repo), 404)
        last = {}
        for r in self.records("applied policy"):
            last[r["tag"]] = (r["decision"], r["reason"])
        self.assertEqual(last.get("cold"), ("delete", "didn't meet any tag retention rule"))
        self.assertEqual(last.get("unknown"), ("keep", "tag statistics not found"))
        self.assertEqual(last.get("hot"),
                         ("keep", "retained by pulledWithin:3600000000000 policy"))


class Budget(GcTest):

    def test_evicts_least_recently_used_cached_images(self):
        # storage.wharf.cacheMaxSize: images the cache stored (C in the
        # metadata log) go, the least recently pulled (or stored) first,
        # until the blobs fit; what a user pushed (U) never goes, however
        # old. Each evicted image takes its blobs and, left empty, its
        # repository with it.
        self.start(gc_config())
        names = ("old", "mid", "new", "pushed")
        imgs = {n: self.image("cache/" + n, "v1", seed=n) for n in names}
        self.w.stop()

        def size(n):
            d = os.path.join(self.w.root, "cache", n, "blobs", "sha256")
            return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))

        now = int(time.time() * 1000)
        with open(os.path.join(self.w.root, ".wharf", "meta.log"), "w") as f:
            for k, n in enumerate(names[:3]):
                f.write(meta_line("C", now - (3 - k) * 3600 * 1000, "cache/" + n, imgs[n][0]))
            f.write(meta_line("U", now - 5 * 3600 * 1000, "cache/pushed", imgs["pushed"][0]))
        budget = size("new") + size("pushed") + 16
        self.w.config["storage"]["wharf"] = {"cacheMaxSize": budget}
        with open(self.w.config_path, "w") as f:
            json.dump(self.w.config, f)
        self.start_and_sweep()
        evicted = self.records("evicted cached image")
        self.assertEqual([r["repository"] for r in evicted], ["cache/old", "cache/mid"])
        self.assertLessEqual(evicted[-1]["usage"], budget)
        for n in ("old", "mid"):
            d, blobs = imgs[n]
            self.assertEqual(self.status("GET", "/v2/cache/%s/manifests/v1" % n), 404, n)
            for b in blobs:
                self.assertFalse(os.path.exists(self.blob_path("cache/" + n, b)), (n, b))
            self.assertFalse(os.path.exists(os.path.join(self.w.root, "cache", n)), n)
        for n in ("new", "pushed"):
            d, blobs = imgs[n]
            self.assertEqual(self.status("GET", "/v2/cache/%s/manifests/v1" % n), 200, n)
            for b in blobs:
                st, _, body = self.w.request("GET", "/v2/cache/%s/blobs/%s" % (n, b))
                self.assertEqual((st, sha256(body)), (200, b))
        # No copy in the shared store is left that no repository links.
        shared = os.path.join(self.w.root, ".wharf", "blobs", "sha256")
        for name in os.listdir(shared):
            self.assertGreater(os.stat(os.path.join(shared, name)).st_nlink, 1, name)


def meta_line(kind, ms, repo, digest):
    """A line of .wharf/meta.log (include/wharf/store/meta.h)."""
    text = "%s %d %s %s" % (kind, ms, repo, digest)
    h = 2166136261
    for byte in text.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return "%s %08x\n" % (text, h)


class Safety(GcTest):

    def test_pushes_and_pulls_during_gc_never_fail(self):
        # A sweep a second, gcDelay 3s: clients push new images (blobs, then
        # the manifest at once) and pull old ones in a bounded loop; not one
        # request may fail. The loop runs at least 6 s, and on until three
        # sweeps ran and one collected a manifest a moved tag left (a slow
        # machine takes longer), 40 s at most.
        self.start(gc_config(gcDelay="3s", gcInterval="1s"))
        kept = [self.image("load/%d" % i, "v1", seed="k%d" % i) for i in range(5)]
        failures = []
        t0 = time.monotonic()

        def running():
            now = time.monotonic()
            if now < t0 + 6:
                return True
            if now > t0 + 40:
                return False
            return self.sweeps_logged() < 3 or not self.records("removed untagged manifest")

        def pusher(n):
            c = Client(self, self.w)
            i = 0
            while running() and i < 5000:
                try:
                    c.push_image("load/p%d" % n, "t%d" % (i % 3), seed="p%d-%d" % (n, i))
                    # Yesterday's tag moved: the old manifest is untagged
                    # and (after 1 s) collected, while we pull the new one.
                    st = self.w.request("GET", "/v2/load/p%d/manifests/t%d" % (n, i % 3))[0]
                    if st != 200:
                        failures.append(("pull own", st))
                except AssertionError as e:
                    failures.append(("push", str(e)[:200]))
                i += 1
                time.sleep(0.01)  # the loop runs on time (running()), not on count

        def puller():
            i = 0
            while running() and i < 50000:
                d, blobs = kept[i % len(kept)]
                repo = "load/%d" % (i % len(kept))
                for path in ["/v2/%s/manifests/v1" % repo] + \
                        ["/v2/%s/blobs/%s" % (repo, b) for b in blobs]:
                    st = self.w.request("GET", path)[0]
                    if st != 200:
                        failures.append((path, st))
                i += 1

        threads = [threading.Thread(target=pusher, args=(n,)) for n in range(2)] + \
            [threading.Thread(target=puller)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        self.assertGreaterEqual(self.sweeps_logged(), 3)
        self.assertTrue(self.records("removed untagged manifest"), "the loop moved tags")

    def test_kill_during_gc_loses_nothing_referenced(self):
        self.start(gc_config())
        kept, aged = [], []
        for i in range(40):
            repo = "kill/%d" % i
            kept.append((repo, self.image(repo, "v1", seed="k%d" % i)))
            for j in range(3):
                u, ub = self.image(repo, None, seed="u%d-%d" % (i, j))
                aged += [(repo, d) for d in [u] + ub]
        self.w.stop()
        for repo, d in aged:
            self.age(repo, d)
        self.w.start()
        # Kill as soon as the sweep has removed something.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not self.records("removed untagged manifest"):
            time.sleep(0.002)
        self.assertTrue(self.records("removed untagged manifest"))
        self.w.kill9()
        n = self.sweeps_logged()
        self.w.start()
        self.wait_sweeps(n + 1)
        for repo, (d, blobs) in kept:
            self.assertEqual(self.status("GET", "/v2/%s/manifests/v1" % repo), 200, repo)
            for b in blobs:
                st, _, body = self.w.request("GET", "/v2/%s/blobs/%s" % (repo, b))
                self.assertEqual(st, 200, (repo, b))
                self.assertEqual(sha256(body), b)
        # And the second sweep finished the work.
        for repo, d in aged:
            self.assertFalse(os.path.exists(self.blob_path(repo, d)), (repo, d))


if __name__ == "__main__":
    unittest.main()
