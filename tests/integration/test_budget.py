"""The cache budget (storage.wharf.cacheMaxSize, cacheMinFree; see
include/wharf/store/gc.h), against the real binary, the real upstream
registry (Debian's docker-registry, upstream.py) and, where the disk must be
small or full, a real tmpfs root (root only; unmounted in every case).

    TestBudgetHolds     a 96 MiB tmpfs, cacheMaxSize 24 MiB: private images
                        pushed first, then ten distinct 6 MiB images (layers
                        of 1-3 MiB) pulled through the cache, every blob
                        verified. The bytes of the root's blobs (each inode
                        once, plus .wharf/tmp), sampled every 20 ms and after
                        each pull, never exceed the budget by more than the
                        largest blob being fetched, and settle under it; the
                        pushed images are whole at the end; images were
                        evicted, oldest first, and only cached ones; the last
                        one pulled is served with the upstream stopped; an
                        evicted one is fetched again when it is back
    TestRoomWhileFetching  the room a fill reserves counts from its start:
                        the image that makes room for it is evicted while
                        the blob is fetched (a throttled upstream), and
                        fills that fail give their claim back
    TestRecentlyPulled  A, B, C pulled, A pulled again, then D: B goes (the
                        least recently pulled), A stays (upstream stopped)
    TestMinFree         a 48 MiB tmpfs, cacheMinFree 20 MiB: the free space
                        never drops below it by more than one blob
    TestDiskFull        a 40 MiB tmpfs under a 1 GiB budget, nearly filled
                        with cached images: a blob that does not fit makes
                        room (evictions) and its fill is retried once, a 200
                        with the right bytes; without a budget the same pull
                        is a 507 and nothing cached goes. Regressions: room
                        made on a disk with no byte free (eviction's own
                        index.json needs room), and while the GC sweeps
                        stale upload sessions
    TestScrubCached     a byte flipped in a cached layer: `wharf scrub` moves
                        it aside, the next pull fetches it again

Run: cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_budget
"""

import hashlib
import http.client
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import upstream as up  # noqa: E402
from harness import WHARF_BIN, Wharf, merge, wait_for  # noqa: E402
from test_diskfull import Tmpfs, check_full_answer, upstream_blob  # noqa: E402
from test_scrub import flip_byte, table_rows  # noqa: E402

MIB = 1 << 20
KIB = 1 << 10
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"

# The series pulled through the cache: distinct images of three layers,
# 1, 2 and 3 MiB (a little less each time: no two blobs alike).
SERIES = 10
SERIES_LAYERS = (1 * MIB, 2 * MIB, 3 * MIB)
BIG_LAYER = 16 * MIB  # TestDiskFull's image that does not fit


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_bytes(n, seed):
    return random.Random(seed).randbytes(n)




class Image:
    """An image of one manifest: its bytes and digest, and {digest: size}
    of its config and layers."""

    def __init__(self, name, tag, manifest, blobs):
        self.name = name
        self.tag = tag
        self.manifest = manifest
        self.digest = sha256(manifest)
        self.blobs = blobs
        self.layers = [l["digest"] for l in json.loads(manifest)["layers"]]

    @property
    def size(self):
        return sum(self.blobs.values()) + len(self.manifest)

    @property
    def largest(self):
        return max(self.blobs.values())


def make_image(name, layers, seed):
    """(Image, {digest: bytes}): a config and layers, each random bytes of
    the size given, or the bytes given."""
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed,
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layers = [l if isinstance(l, bytes) else random_bytes(l, "%s/%d" % (seed, i))
              for i, l in enumerate(layers)]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(cfg), "size": len(cfg)},
        "layers": [{"mediaType": MT_LAYER, "digest": sha256(l), "size": len(l)}
                   for l in layers]}).encode()
    data = {sha256(b): b for b in [cfg] + layers}
    return Image(name, "v1", manifest, {d: len(b) for d, b in data.items()}), data


def push_upstream(client, img, data):
    for b in data.values():
        upstream_blob(client, img.name, b)
    st, _, b, _ = client.request("PUT", "/v2/%s/manifests/%s" % (img.name, img.tag),
                                 {"Content-Type": MT_MANIFEST}, img.manifest)
    assert st == 201, (st, b[:300])


def push_wharf(w, img, data):
    """A user's push (monolithic uploads, then the manifest)."""
    for d, b in data.items():
        st, _, body = w.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (img.name, d), b,
                                {"Content-Type": "application/octet-stream"})
        assert st == 201, (st, body[:300])
    st, _, body = w.request("PUT", "/v2/%s/manifests/%s" % (img.name, img.tag), img.manifest,
                            {"Content-Type": MT_MANIFEST})
    assert st == 201, (st, body[:300])


# ---- what the root holds

def store_bytes(root):
    """Bytes of the blob files under root (every blobs/sha256 directory, the
    shared one included), each inode once, plus what .wharf/tmp holds (a
    temp file by its blocks too: a fill reserves its whole size at once)."""
    seen = {}
    tmp = os.path.join(root, ".wharf", "tmp")
    suffix = os.sep + os.path.join("blobs", "sha256")
    for dirpath, _, files in os.walk(root):
        is_tmp = dirpath == tmp
        if not (is_tmp or dirpath.endswith(suffix)):
            continue
        for f in files:
            try:
                sb = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue  # gone meanwhile
            if not stat.S_ISREG(sb.st_mode):
                continue
            n = max(sb.st_size, sb.st_blocks * 512) if is_tmp else sb.st_size
            key = (sb.st_dev, sb.st_ino)
            seen[key] = max(seen.get(key, 0), n)
    return sum(seen.values())


def free_bytes(path):
    s = os.statvfs(path)
    return s.f_bavail * s.f_frsize


def held(root, name, digest):
    return os.path.exists(os.path.join(root, name, "blobs", "sha256", digest.split(":")[1]))


class Sampler:
    """A thread calling fn every period seconds until stop(): the samples
    (time, value) and the extreme one."""

    def __init__(self, fn, period=0.02, worst=max):
        self.fn = fn
        self.period = period
        self.worst = worst
        self.samples = []
        self.errors = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.done.is_set():
            try:
                self.samples.append((time.monotonic(), self.fn()))
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
            self.done.wait(self.period)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.done.set()
        self.thread.join(10)

    def extreme(self):
        return self.worst(v for _, v in self.samples)


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)
    if not os.path.exists(up.REGISTRY_BIN):
        raise unittest.SkipTest("docker-registry not installed")
    global DIST, SERIES_IMAGES, BIG, PRIVATE
    DIST = up.Distribution().start()
    try:
        client = up.RegistryClient(DIST.url)
        SERIES_IMAGES = []
        for i in range(SERIES):
            img, data = make_image("lib/s%d" % i, [n - i * 4 * KIB for n in SERIES_LAYERS],
                                   "series %d" % i)
            push_upstream(client, img, data)
            SERIES_IMAGES.append(img)
            if i == 0:
                shared = data[img.layers[0]]
        BIG, data = make_image("lib/big", [BIG_LAYER], "big")
        push_upstream(client, BIG, data)
        # The private images a user pushes (not to the upstream); one of them
        # has the first cached image's first layer too (one file, linked).
        PRIVATE = [make_image("private/app", [1 * MIB, shared], "private app"),
                   make_image("private/tool", [1536 * KIB], "private tool")]
    except BaseException:
        DIST.stop()
        DIST.cleanup()
        raise


def tearDownModule():
    DIST.stop()
    DIST.cleanup()


def restart_upstream():
    if DIST.proc is None:
        DIST.start()


class BudgetTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wharf-budget-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.addCleanup(restart_upstream)  # a test that stopped it
        self.w = None

    def mount(self, size):
        fs = Tmpfs(size)
        if not fs.mounted:
            self.skipTest("cannot mount a tmpfs here (not root?)")
        self.addCleanup(fs.umount)
        return fs

    def start(self, root, storage=None, config=None):
        """A pull-through cache of DIST at /up on root."""
        cfg = up.sync_config(DIST.url, destination="/up", maxRetries=0, retryDelay="1s",
                             manifest_check_interval="1h")
        merge(cfg, {"storage": merge({"rootDirectory": root}, storage or {}),
                    "log": {"level": "debug"}})
        merge(cfg, config or {})
        w = Wharf(cfg).start()
        self.w = w
        self.addCleanup(self.stop, w)
        return w

    def stop(self, w):
        w.stop()
        w.cleanup()

    def get(self, w, path, timeout=60):
        return w.request("GET", path, headers={"Accept": up.MANIFEST_ACCEPT}, timeout=timeout)

    def pull(self, w, img, name=None, each=None):
        """The manifest and every blob, each verified; each() after each."""
        name = name or "up/" + img.name
        st, _, b = self.get(w, "/v2/%s/manifests/%s" % (name, img.tag))
        self.assertEqual(st, 200, "manifest of %s: %s" % (name, b[:300]))
        self.assertEqual(sha256(b), img.digest, "manifest of %s" % name)
        for d in img.blobs:
            if each:
                each()
            st, _, b = self.get(w, "/v2/%s/blobs/%s" % (name, d))
            self.assertEqual(st, 200, "blob %s of %s: %s" % (d, name, b[:300]))
            self.assertEqual(sha256(b), d, "blob of %s" % name)
        if each:
            each()

    def records(self, w, message):
        return [r for r in w.log_records() if r.get("message") == message]

    def evicted(self, w):
        return [r["repository"] for r in self.records(w, "evicted cached image")]

    def fetched_bytes(self, w):
        """Bytes of the blobs the cache fetched and stored (its debug log)."""
        return sum(r.get("bytes", 0) for r in self.records(w, "blob cached"))


class TestBudgetHolds(BudgetTest):

    def test_budget_holds_over_a_series_of_pulls(self):
        budget = 24 * MIB
        fs = self.mount(96 * MIB)
        root = os.path.join(fs.path, "data")
        w = self.start(root, {"wharf": {"cacheMaxSize": "24MiB"}})
        for img, data in PRIVATE:
            push_wharf(w, img, data)
        pushed = store_bytes(root)
        largest = max(img.largest for img in SERIES_IMAGES)
        total = sum(img.size for img in SERIES_IMAGES)
        self.assertGreater(total, 2 * budget)  # several times what fits
        # What must be held at the end: the pushed images and the last
        # images pulled that fit beside them; the rest evicted, no more.
        fit = 0
        while pushed + sum(i.size for i in SERIES_IMAGES[SERIES - fit - 1:]) <= budget:
            fit += 1
        self.assertGreaterEqual(fit, 2)

        sampler = Sampler(lambda: store_bytes(root)).start()
        each = []  # sampled before and after each blob's GET
        after = []  # right after each pull
        try:
            for img in SERIES_IMAGES:
                self.pull(w, img, each=lambda: each.append(store_bytes(root)))
                after.append(store_bytes(root))
                # Evictions follow the pull: the usage is back under the budget.
                self.assertTrue(wait_for(lambda: store_bytes(root) <= budget, 5.0),
                                "after pulling %s: %d bytes held, budget %d"
                                % (img.name, store_bytes(root), budget))
        finally:
            sampler.stop()
        self.assertEqual(sampler.errors, [])
        peak = max(sampler.extreme(), max(each))
        evicted = self.evicted(w)
        print("\n  budget %d MiB, pushed %.2f MiB, pulled %.1f MiB (largest blob %.2f MiB): "
              "peak %.2f MiB (%+.2f MiB over the budget; %d samples), right after each pull "
              "%s MiB; %d evictions, %.1f MiB fetched"
              % (budget // MIB, pushed / MIB, total / MIB, largest / MIB, peak / MIB,
                 (peak - budget) / MIB, len(sampler.samples) + len(each),
                 ", ".join("%.1f" % (a / MIB) for a in after), len(evicted),
                 self.fetched_bytes(w) / MIB), file=sys.stderr)
        self.assertGreaterEqual(len(sampler.samples), 5)
        self.assertLessEqual(peak, budget + largest,
                             "peak %d bytes, budget %d, largest blob %d" % (peak, budget, largest))
        # Each blob fetched once (the cache fetches a blob its repository
        # lacks even when another one holds it: the shared layer too).
        # The line is logged when the blob is published, which may come a
        # moment after its last client got the last byte.
        want = sum(sum(i.blobs.values()) for i in SERIES_IMAGES)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.fetched_bytes(w) < want:
            time.sleep(0.05)
        self.assertEqual(self.fetched_bytes(w), want)

        # Evicted: cached images only, least recently pulled first, and no
        # more than needed.
        names = ["up/" + img.name for img in SERIES_IMAGES]
        self.assertEqual(evicted, names[:SERIES - fit], "not least recently pulled first, "
                         "or not as many as needed")
        for img in SERIES_IMAGES[:SERIES - fit]:
            self.assertFalse(os.path.exists(os.path.join(root, "up", img.name)), img.name)
        self.assertEqual(self.records(w, "cache budget exceeded and no cached image is left "
                                         "to evict"), [])
        self.assertEqual(self.records(w, "cannot evict cached image"), [])

        # The pushed images are whole, the one that shares a layer with the
        # first image evicted too.
        for img, _ in PRIVATE:
            self.pull(w, img, img.name)

        # The most recently pulled image is held: served with the upstream gone.
        DIST.stop()
        self.pull(w, SERIES_IMAGES[-1])
        DIST.start()

        # An evicted one is fetched again.
        first = SERIES_IMAGES[0]
        before = self.fetched_bytes(w)
        self.pull(w, first)
        want = sum(first.blobs.values())
        self.assertTrue(wait_for(lambda: self.fetched_bytes(w) - before >= want, 5.0),
                        "%d bytes fetched again, %d wanted"
                        % (self.fetched_bytes(w) - before, want))
        self.assertTrue(wait_for(lambda: store_bytes(root) <= budget, 5.0), store_bytes(root))
        # Room was made for it by evicting the next oldest, never a pushed image.
        self.assertTrue(wait_for(lambda: len(self.evicted(w)) > len(evicted), 5.0))
        self.assertEqual(self.evicted(w)[len(evicted)], names[len(evicted)])
        for img, _ in PRIVATE:
            self.pull(w, img, img.name)


class TestRoomWhileFetching(BudgetTest):
    """Regression: a fill's bytes counted against the budget only once the
    blob was published, so eviction began only then; a publish that lagged
    let the next fill pile on (the disk over the budget by two blobs). The
    room a fill reserves counts from its start now: the eviction happens
    while the blob is fetched. Shown with a throttled upstream (the fault
    proxy in front of the real one), so the fetch lasts seconds."""

    def test_room_is_made_while_the_blob_is_fetched(self):
        budget = 20 * MIB
        flt = up.FaultProxy(DIST.url).start()
        self.addCleanup(lambda: (flt.stop(), flt.cleanup()))
        root = os.path.join(self.tmp, "data")
        w = self.start(root, {"wharf": {"cacheMaxSize": "20MiB"}},
                       up.sync_config(flt.url, destination="/up", maxRetries=0,
                                      retryDelay="1s", manifest_check_interval="1h"))
        for img in SERIES_IMAGES[:3]:
            self.pull(w, img)
        img = SERIES_IMAGES[3]
        st, _, b = self.get(w, "/v2/up/%s/manifests/%s" % (img.name, img.tag))
        self.assertEqual(st, 200)
        small, middle = img.layers[0], img.layers[1]
        for d in (json.loads(b)["config"]["digest"], small):
            st, _, b = self.get(w, "/v2/up/%s/blobs/%s" % (img.name, d))
            self.assertEqual((st, sha256(b)), (200, d))
        time.sleep(0.2)
        self.assertEqual(self.evicted(w), [])
        self.assertLess(store_bytes(root), budget)
        # The 2 MiB layer crosses the budget: at 512 KiB/s it takes 4 s.
        flt.set("throttle", rate_bytes_per_s=512 * KIB, path_contains=middle)
        got = {}

        def fetch():
            got["answer"] = self.get(w, "/v2/up/%s/blobs/%s" % (img.name, middle))

        t = threading.Thread(target=fetch, daemon=True)
        t.start()
        self.addCleanup(t.join, 30)
        self.assertTrue(wait_for(lambda: self.evicted(w), 2.5),
                        "nothing evicted while the blob was fetched")
        self.assertTrue(t.is_alive(), "the fetch was over before it was checked")
        self.assertFalse(held(root, "up/" + img.name, middle))
        self.assertEqual(self.evicted(w), ["up/" + SERIES_IMAGES[0].name])
        self.assertLessEqual(store_bytes(root), budget)
        t.join(30)
        st, _, b = got["answer"]
        self.assertEqual((st, sha256(b)), (200, middle))
        # Fills that fail give their claim back: three of the last layer
        # whose bytes do not match their digest, then it and the next image
        # whole; a claim kept would evict more than needed.
        last = img.layers[2]
        flt.set("flip", after_bytes=MIB, path_contains=last, count=3)
        for _ in range(3):
            try:
                st, _, b = self.get(w, "/v2/up/%s/blobs/%s" % (img.name, last))
                self.assertNotEqual((st, sha256(b)), (200, last))
            except (http.client.HTTPException, ConnectionError):
                pass  # cut: the last byte is held back until the digest verifies
        self.assertTrue(wait_for(lambda: len(self.records(
            w, "fetched blob does not match its digest; dropped")) == 3, 5.0))
        flt.clear()
        self.pull(w, img)
        self.pull(w, SERIES_IMAGES[4])
        self.assertTrue(wait_for(lambda: store_bytes(root) <= budget, 5.0))
        time.sleep(0.3)
        self.assertEqual(self.evicted(w), ["up/" + i.name for i in SERIES_IMAGES[:2]])


class TestRecentlyPulled(BudgetTest):

    def test_recently_pulled_stays(self):
        # Three 6 MiB images fit in 20 MiB, a fourth does not.
        root = os.path.join(self.tmp, "data")
        w = self.start(root, {"wharf": {"cacheMaxSize": "20MiB"}})
        a, b, c, d = SERIES_IMAGES[:4]
        for img in (a, b, c):
            self.pull(w, img)
            time.sleep(0.01)  # distinct pull times
        time.sleep(0.2)
        self.assertEqual(self.evicted(w), [])
        # A again: its manifest's GET makes it the most recently pulled.
        st, _, body = self.get(w, "/v2/up/%s/manifests/%s" % (a.name, a.tag))
        self.assertEqual((st, sha256(body)), (200, a.digest))
        time.sleep(0.01)
        self.pull(w, d)
        self.assertTrue(wait_for(lambda: self.evicted(w), 5.0))
        time.sleep(0.3)  # no second eviction follows
        self.assertEqual(self.evicted(w), ["up/" + b.name])
        DIST.stop()
        for img in (a, c, d):
            self.pull(w, img)
        st, _, body = self.get(w, "/v2/up/%s/manifests/%s" % (b.name, b.tag))
        self.assertNotEqual(st, 200, "B was not evicted")
        self.assertFalse(os.path.exists(os.path.join(root, "up", b.name)))
        self.assertLessEqual(store_bytes(root), 20 * MIB)


class TestMinFree(BudgetTest):

    def test_min_free_is_kept(self):
        min_free = 20 * MIB
        fs = self.mount(48 * MIB)
        root = os.path.join(fs.path, "data")
        w = self.start(root, {"wharf": {"cacheMinFree": "20MiB"}})
        largest = max(img.largest for img in SERIES_IMAGES)
        sampler = Sampler(lambda: free_bytes(fs.path), worst=min).start()
        try:
            for img in SERIES_IMAGES[:8]:
                self.pull(w, img)
                self.assertGreaterEqual(free_bytes(fs.path), min_free - largest, img.name)
                self.assertTrue(wait_for(lambda: free_bytes(fs.path) >= min_free, 5.0),
                                "after %s: %d bytes free" % (img.name, free_bytes(fs.path)))
        finally:
            sampler.stop()
        low = sampler.extreme()
        evicted = self.evicted(w)
        print("\n  cacheMinFree 20 MiB on 48 MiB: lowest free %.2f MiB (%+.2f MiB), "
              "%d evictions" % (low / MIB, (low - min_free) / MIB, len(evicted)),
              file=sys.stderr)
        self.assertGreaterEqual(low, min_free - largest)
        self.assertGreaterEqual(len(evicted), 3, evicted)
        self.assertEqual(evicted, ["up/" + i.name for i in SERIES_IMAGES[:len(evicted)]])


class TestDiskFull(BudgetTest):

    FS = 40 * MIB
    FILL = 5  # images of 6 MiB: about 10 MiB left, less than BIG's layer

    def fill(self, storage):
        fs = self.mount(self.FS)
        root = os.path.join(fs.path, "data")
        w = self.start(root, storage)
        for img in SERIES_IMAGES[:self.FILL]:
            self.pull(w, img)
        self.assertLess(free_bytes(fs.path), BIG_LAYER)
        self.assertGreater(free_bytes(fs.path), BIG.size - BIG_LAYER + MIB)
        st, _, b = self.get(w, "/v2/up/%s/manifests/%s" % (BIG.name, BIG.tag))
        self.assertEqual((st, sha256(b)), (200, BIG.digest))
        return fs, root, w

    def big_layer_path(self):
        return "/v2/up/%s/blobs/%s" % (BIG.name, [d for d, n in BIG.blobs.items()
                                                   if n == BIG_LAYER][0])

    def test_disk_full_makes_room_and_retries_once(self):
        fs, root, w = self.fill({"wharf": {"cacheMaxSize": "1GiB"}})
        self.assertEqual(self.evicted(w), [])
        layer = self.big_layer_path()
        st, _, b = self.get(w, layer)
        self.assertEqual(st, 200, b[:300])
        self.assertEqual(sha256(b), layer.rsplit("/", 1)[1])
        self.assertEqual(len(b), BIG_LAYER)
        evicted = self.evicted(w)
        print("\n  disk full under a 1 GiB budget: %d evictions made room for %d MiB"
              % (len(evicted), BIG_LAYER // MIB), file=sys.stderr)
        self.assertGreaterEqual(len(evicted), 1)
        self.assertEqual(evicted, ["up/" + i.name for i in SERIES_IMAGES[:len(evicted)]])
        self.assertEqual(len(self.records(w, "storage is full, making room to fill the cache")),
                         1, w.log()[-3000:])
        self.assertEqual(len(self.records(w, "room made, filling the cache again")), 1)
        self.assertEqual(self.records(w, "disk full"), [])
        self.assertTrue(wait_for(lambda: held(root, "up/" + BIG.name, layer.rsplit("/", 1)[1]),
                                 5.0))
        self.assertEqual(up.tmp_files(root), [])
        # What was not evicted is whole, and served without the upstream.
        DIST.stop()
        for img in SERIES_IMAGES[len(evicted):self.FILL]:
            self.pull(w, img)

    def test_eviction_on_a_disk_with_no_byte_free(self):
        # Regression: eviction rewrites index.json, which needs room too; on
        # a disk with nothing free it failed ("cannot evict cached image"),
        # forgot every image it tried, and the fill was a 507.
        fs = self.mount(self.FS)
        root = os.path.join(fs.path, "data")
        w = self.start(root, {"wharf": {"cacheMaxSize": "1GiB"}})
        for img in SERIES_IMAGES[:3]:
            self.pull(w, img)
        fs.fill()
        self.assertLess(free_bytes(fs.path), 4 * KIB)
        new = SERIES_IMAGES[3]
        st, _, b = self.get(w, "/v2/up/%s/manifests/%s" % (new.name, new.tag))
        self.assertEqual((st, sha256(b)), (200, new.digest), b[:300])
        self.assertEqual(self.records(w, "cannot evict cached image"), [])
        self.assertEqual(self.evicted(w), ["up/" + SERIES_IMAGES[0].name])
        self.assertEqual(len(self.records(w, "storage is full, making room to fill the cache")),
                         1)
        self.assertFalse(os.path.exists(os.path.join(root, "up", SERIES_IMAGES[0].name)))
        # The next oldest go for the blobs that follow, and what is left is
        # whole.
        self.pull(w, new)
        self.pull(w, SERIES_IMAGES[4])
        evicted = self.evicted(w)
        self.assertGreaterEqual(len(evicted), 2)
        self.assertEqual(evicted, ["up/" + i.name for i in SERIES_IMAGES[:len(evicted)]])
        self.assertEqual(self.records(w, "cannot evict cached image"), [])
        DIST.stop()
        for img in SERIES_IMAGES[len(evicted):5]:
            self.pull(w, img)

    def test_room_made_while_upload_sessions_are_swept(self):
        # Regression: while the GC's sweep of stale upload sessions was out,
        # a request for room was refused at once (507) instead of waiting
        # for the sweep's end to evict. 30,000 stale sessions keep the
        # first sweep busy for a few hundred ms after the start.
        fs = self.mount(self.FS)
        root = os.path.join(fs.path, "data")
        w = self.start(root, {"gc": True, "gcDelay": "1h",
                              "wharf": {"cacheMaxSize": "1GiB"}})
        for img in SERIES_IMAGES[:3]:
            self.pull(w, img)
        w.stop()
        uploads = os.path.join(root, ".wharf", "uploads")
        os.makedirs(uploads, exist_ok=True)
        old = time.time() - 7200
        for i in range(30000):
            p = os.path.join(uploads, "%08x-0000-4000-8000-000000000000" % i)
            os.mkdir(p)
            os.utime(p, (old, old))
        fs.fill()
        w.start()
        new = SERIES_IMAGES[3]
        st, _, b = self.get(w, "/v2/up/%s/manifests/%s" % (new.name, new.tag))
        self.assertEqual((st, sha256(b)), (200, new.digest), b[:300])
        self.assertEqual(self.evicted(w), ["up/" + SERIES_IMAGES[0].name])
        swept = self.records(w, "removed stale upload sessions")
        self.assertEqual([r["count"] for r in swept], [30000])

    def test_without_a_budget_nothing_is_evicted(self):
        fs, root, w = self.fill({})
        st, _, b = self.get(w, self.big_layer_path())
        check_full_answer(self, st, b)
        self.assertTrue(wait_for(lambda: self.records(w, "disk full"), 5.0))
        self.assertEqual(self.evicted(w), [])
        self.assertEqual(self.records(w, "room made, filling the cache again"), [])
        self.assertTrue(wait_for(lambda: up.tmp_files(root) == [], 5.0), up.tmp_files(root))
        DIST.stop()
        for img in SERIES_IMAGES[:self.FILL]:
            self.pull(w, img)


class TestScrubCached(BudgetTest):

    def test_scrub_moves_a_cached_layer_aside_and_it_is_fetched_again(self):
        root = os.path.join(self.tmp, "data")
        w = self.start(root)
        img = SERIES_IMAGES[5]
        name = "up/" + img.name
        self.pull(w, img)
        self.assertEqual(w.stop(), 0)
        layer = max(img.blobs, key=img.blobs.get)
        path = os.path.join(root, name, "blobs", "sha256", layer.split(":")[1])
        flip_byte(path, img.blobs[layer] // 2)
        p = subprocess.run([WHARF_BIN, "scrub", w.config_path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=60)
        out, err = p.stdout.decode(), p.stderr.decode()
        self.assertEqual(p.returncode, 1, out + err)
        self.assertIn([name, img.tag, "affected", layer.split(":")[1], "bad blob digest"],
                      table_rows(out))
        self.assertIn("moved corrupt blob aside", err)
        self.assertFalse(os.path.exists(path))
        self.assertFalse(os.path.exists(os.path.join(root, ".wharf", "blobs", "sha256",
                                                     layer.split(":")[1])))
        w.start()
        self.pull(w, img)
        self.assertTrue(wait_for(lambda: os.path.exists(path), 5.0))
        self.assertEqual(up.sha256_file(path), layer)
        cached = self.records(w, "blob cached")
        self.assertEqual([r["digest"] for r in cached[-1:]], [layer], w.log()[-3000:])


if __name__ == "__main__":
    unittest.main()
