"""Two tiers of Wharf (issue 15): an edge whose sync upstream is a regional
Wharf, which pulls through from the real upstream. Everything on 127.0.0.1:

    clients (skopeo, ctr, http.client)
        -> edge Wharf      content {"prefix": "dockerhub/**", "destination": "/hub",
        |                           "stripPrefix": true}, urls [region]
        -> region Wharf    content {"prefix": "**", "destination": "/dockerhub"}
        -> fakes/faults.py (counters; a throttle when asked)
        -> docker-registry (Distribution 2.8) seeded once for the module

so the edge's hub/library/alpine is the region's dockerhub/library/alpine is
the upstream's library/alpine. Each test starts its own region and edge on
fresh roots; the region's requests are read from its request log, the
upstream's from the fault proxy's /_stats.

The classes:
    DigestTest     manifests (an image, an index, a Docker schema 2 image, an
                   artifact and its referrers) and blobs byte-identical at every
                   tier and equal to the upstream's (GET, HEAD, a range, skopeo);
                   a cold pull costs one fetch per blob at each tier, a second
                   pull none beyond the edge
    MappingTest    prefix mapping composed over two tiers (stripPrefix, a plain
                   destination, the root), containerd's ?ns= (an edge mirroring
                   the region's host, and an edge mirroring the original
                   registry through the region, with ctr), tags/list through
                   both tiers
    AuthTest       the region behind htpasswd, the edge's credentialsFile; the
                   edge's own clients anonymous; wrong or missing credentials a
                   prompt, explicit error
    TeeTest        the tee streams through both tiers (a throttled upstream: the
                   edge's client has bytes while the region is still fetching);
                   clients at once at the edge: one fetch at each tier
    FaultTest      the region killed mid-transfer (the edge's client cut,
                   nothing stored, a retry after the region is back); the region
                   down (the edge serves what it holds, stale tags included)

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_tiers
"""

import json
import os
import shutil
import signal
import tempfile
import threading
import time
import unittest
import urllib.parse

import images
import upstream as up
from harness import WHARF_BIN, Wharf, have, merge, request, wait_for
from test_auth import basic, write_htpasswd
from test_metrics import parse_metrics, val
from test_pull_through import error_codes, fetch

MANIFEST_ACCEPT = up.MANIFEST_ACCEPT
SIG_TYPE = "application/vnd.example.signature"
SBOM_TYPE = "application/vnd.example.sbom"

# The tee's layer: random bytes (incompressible), fetched through a throttled
# upstream at THROTTLE bytes/s: about 4.7 s for the whole layer.
TEE_SIZE = 7 << 20
THROTTLE = 1.5e6
# The edge's client must have its first body byte within this share of the
# throttled transfer's time (measured: a few tens of ms of about 4.9 s).
TTFB_SHARE = 0.10

# "Promptly": an error, or a cached answer with the region gone.
PROMPT_S = 5.0

STATE = {}


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)
    for tool in ("docker-registry", "skopeo"):
        if not have(tool):
            raise unittest.SkipTest("%s not installed" % tool)
    tmp = tempfile.mkdtemp(prefix="wharf-tiers-")
    STATE["tmp"] = tmp
    t0 = time.monotonic()
    dist = up.Distribution().start()
    STATE["dist"] = dist
    lay = os.path.join(tmp, "layouts")
    layouts = {
        "library/alpine:latest": (images.single_image(os.path.join(lay, "alpine"), "latest",
                                                      salt="tiers-alpine"), None),
        "library/alpine:3.20": (images.single_image(os.path.join(lay, "alpine-3.20"), "3.20",
                                                    salt="tiers-alpine-3.20"), None),
        "library/multi:latest": (images.multi_image(os.path.join(lay, "multi"), "latest",
                                                    salt="tiers-multi"), None),
        "team/app:v2s2": (images.single_image(os.path.join(lay, "app"), "v2s2",
                                              salt="tiers-app"), "v2s2"),
        "library/big:latest": (images.big_image(os.path.join(lay, "big"), TEE_SIZE,
                                                tag="latest", seed=15), None),
    }
    STATE["ups"] = up.seed(dist, os.path.join(tmp, "seed"), layouts=layouts)
    STATE["artifact"] = push_artifact(dist, "library/alpine",
                                      STATE["ups"]["library/alpine:latest"])
    flt = up.FaultProxy(dist.url).start()
    STATE["flt"] = flt
    print("\n[tiers] upstream seeded in %.1fs: %s, fault proxy %s"
          % (time.monotonic() - t0, dist.url, flt.url))


def tearDownModule():
    for k in ("flt", "dist"):
        if STATE.get(k):
            STATE[k].stop()
            STATE[k].cleanup()
    if STATE.get("tmp"):
        shutil.rmtree(STATE["tmp"], ignore_errors=True)
    STATE.clear()


sha = images.sha256_digest


# ---------------------------------------------------------------- pushing an artifact upstream

def _dist_req(dist, method, path, body=None, headers=None):
    return request(dist.port, method, path, body, headers)


def _dist_blob(dist, repo, data):
    """A blob pushed to Distribution (POST, then PUT ?digest=: it has no
    single-request upload)."""
    st, h, body = _dist_req(dist, "POST", "/v2/%s/blobs/uploads/" % repo)
    assert st == 202, (st, body)
    loc = urllib.parse.urlsplit(h["location"])
    q = loc.query + ("&" if loc.query else "") + "digest=" + urllib.parse.quote(sha(data))
    st, _, body = _dist_req(dist, "PUT", loc.path + "?" + q, data,
                            {"Content-Type": "application/octet-stream"})
    assert st == 201, (st, body)


def _dist_manifest(dist, repo, ref, data, mt):
    st, _, body = _dist_req(dist, "PUT", "/v2/%s/manifests/%s" % (repo, ref), data,
                            {"Content-Type": mt})
    assert st == 201, (st, body)


class Artifact:
    """A signature-like artifact whose subject is an upstream image, attached
    with the referrers tag schema (Distribution 2.8 has no referrers API)."""


def push_artifact(dist, repo, subject):
    a = Artifact()
    a.payload = b"signed by the tiers test\n"
    a.config = b"{}"
    for data in (a.config, a.payload):
        _dist_blob(dist, repo, data)
    m = {"schemaVersion": 2, "mediaType": images.MT_MANIFEST, "artifactType": SIG_TYPE,
         "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(a.config),
                    "size": len(a.config)},
         "layers": [{"mediaType": "text/plain", "digest": sha(a.payload),
                     "size": len(a.payload)}],
         "subject": {"mediaType": subject.media_type, "digest": subject.digest,
                     "size": subject.size}}
    a.manifest = images.canonical_json(m)
    a.digest = sha(a.manifest)
    _dist_manifest(dist, repo, a.digest, a.manifest, images.MT_MANIFEST)
    idx = images.canonical_json({"schemaVersion": 2, "mediaType": images.MT_INDEX, "manifests": [
        {"mediaType": images.MT_MANIFEST, "digest": a.digest, "size": len(a.manifest),
         "artifactType": SIG_TYPE}]})
    a.tag = "sha256-" + subject.digest.split(":", 1)[1]
    _dist_manifest(dist, repo, a.tag, idx, images.MT_INDEX)
    return a


# ---------------------------------------------------------------- HTTP

def get_manifest(port, repo, ref, headers=None, timeout=30, query=""):
    h = {"Accept": MANIFEST_ACCEPT}
    h.update(headers or {})
    return fetch(port, "/v2/%s/manifests/%s%s" % (repo, ref, query), headers=h, timeout=timeout)


def get_blob(port, repo, digest, headers=None, timeout=60, keep_body=False, on_first_byte=None,
             query=""):
    return fetch(port, "/v2/%s/blobs/%s%s" % (repo, digest, query), headers=headers,
                 timeout=timeout, keep_body=keep_body, on_first_byte=on_first_byte)


def error_text(r):
    try:
        return " ".join("%s %s" % (e.get("message"), json.dumps(e.get("detail")))
                        for e in json.loads(r.body)["errors"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def requests_seen(w, since=0):
    """The request log lines of w from the since-th record on: [(method, path, status)]."""
    return [(x.get("method"), x.get("path"), x.get("status")) for x in w.log_records()[since:]
            if x.get("message") == "request"]


def log_mark(w):
    """Where w's log ends once it has settled (nothing new for 0.2 s): a
    request is logged when its answer has gone, which can be a moment after
    its client has it, so a mark taken at once could come before it."""
    n = len(w.log_records())
    for _ in range(50):
        time.sleep(0.2)
        m = len(w.log_records())
        if m == n:
            break
        n = m
    return n


def blob_gets(w, digest, since=0):
    """w's logged GETs of the blob. A request is logged when its answer has
    been sent, which can be a moment after its client (another tier) has
    the last byte: at least one is waited for, a little."""
    def gets():
        return [x for x in requests_seen(w, since) if x[0] == "GET" and x[1].endswith(digest)]
    return wait_for(gets, 5)


# ---------------------------------------------------------------- base class

class Base(unittest.TestCase):
    maxDiff = 4000

    @property
    def dist(self):
        return STATE["dist"]

    @property
    def flt(self):
        return STATE["flt"]

    @property
    def ups(self):
        return STATE["ups"]

    def setUp(self):
        self.flt.clear()
        self.flt.reset()

    def tmpdir(self, name="t"):
        d = tempfile.mkdtemp(prefix="wharf-tiers-%s-" % name)
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def start(self, cfg, name):
        w = Wharf(cfg)
        w.name = name
        self.addCleanup(self._finish, w)
        w.start()
        return w

    def region(self, upstream_url=None, destination="/dockerhub", extra=None, **reg):
        """The regional Wharf: the upstream (by default through the fault
        proxy) under destination."""
        cfg = up.sync_config(upstream_url or self.flt.url, destination=destination, **reg)
        cfg["extensions"]["metrics"] = {}
        if extra:
            merge(cfg, extra)
        return self.start(cfg, "region")

    def edge(self, urls, content=None, credentials_file=None, extra=None, **reg):
        """An edge Wharf whose one sync registry is urls (the region first);
        content defaults to the region's /dockerhub mapped to /hub."""
        if content is None:
            content = [{"prefix": "dockerhub/**", "destination": "/hub", "stripPrefix": True}]
        r = {"urls": urls if isinstance(urls, list) else [urls], "onDemand": True,
             "tlsVerify": False, "content": content}
        r.update(reg)
        sync = {"enable": True, "registries": [r]}
        if credentials_file:
            sync["credentialsFile"] = credentials_file
        cfg = {"extensions": {"sync": sync, "metrics": {}}}
        if extra:
            merge(cfg, extra)
        return self.start(cfg, "edge")

    def tiers(self, **edge_kw):
        region = self.region()
        return region, self.edge(region.url, **edge_kw)

    def _finish(self, w):
        """Stop w if it runs; a non-zero exit (a crash, a sanitizer's report)
        fails the test."""
        running = w.proc is not None
        rc = w.stop()
        log = w.log()
        if os.environ.get("WHARF_KEEP"):
            print("\n[kept] %s %s" % (w.name, w.tmp))
        else:
            w.cleanup()
        if running and rc != 0:
            raise AssertionError("%s exited with %r; log (tail):\n%s" % (w.name, rc, log[-6000:]))

    def stop(self, w):
        """Stop w now; as at the test's end, only a clean exit will do."""
        rc = w.stop()
        self.assertEqual(rc, 0, "%s exited with %r; log (tail):\n%s"
                         % (w.name, rc, w.log()[-6000:]))

    def logs(self, *ws):
        return "".join("\n--- %s log (tail) ---\n%s" % (w.name, w.log()[-3000:]) for w in ws)

    def skopeo(self, *args, check=True):
        return up.skopeo(os.path.join(self.tmpdir("sk"), "cfg"), *args, check=check, timeout=90)

    def assert_manifest_at(self, port, repo, ref, img, headers=None, what="", query=""):
        """GET repo:ref at port: the upstream's bytes, digest and media type."""
        r = get_manifest(port, repo, ref, headers, query=query)
        self.assertEqual(r.status, 200, "%s %s:%s -> %r" % (what, repo, ref, r))
        self.assertEqual(r.sha, img.digest, "%s %s:%s: bytes differ from the upstream's"
                         % (what, repo, ref))
        self.assertEqual(r.headers.get("docker-content-digest"), img.digest, what)
        self.assertEqual(r.headers.get("content-type"), img.media_type, what)
        return r

    def assert_blob_at(self, port, repo, digest, size, headers=None, what="", query=""):
        r = get_blob(port, repo, digest, headers, query=query)
        self.assertEqual((r.status, r.error, r.length, r.sha), (200, None, size, digest),
                         "%s blob %s of %s: %r" % (what, digest, repo, r))
        self.assertEqual(r.headers.get("docker-content-digest"), digest, what)
        return r

    def assert_heads_at(self, port, repo, ref, img, what=""):
        """HEADs of the manifest and of every blob: the upstream's lengths and
        digests, no body."""
        r = fetch(port, "/v2/%s/manifests/%s" % (repo, ref), "HEAD",
                  headers={"Accept": MANIFEST_ACCEPT})
        self.assertEqual((r.status, r.headers.get("docker-content-digest"),
                          r.headers.get("content-length")), (200, img.digest, str(img.size)),
                         "%s HEAD %s:%s" % (what, repo, ref))
        for d, size in img.blobs.items():
            r = fetch(port, "/v2/%s/blobs/%s" % (repo, d), "HEAD")
            self.assertEqual((r.status, r.headers.get("docker-content-digest"),
                              r.headers.get("content-length")), (200, d, str(size)),
                             "%s HEAD blob %s" % (what, d))

    def assert_image_at(self, port, repo, ref, img, headers=None, what=""):
        """The manifest by tag, each child by digest, each blob."""
        self.assert_manifest_at(port, repo, ref, img, headers, what)
        for d, child in img.children.items():
            self.assert_manifest_at(port, repo, d, child, headers, what + " child")
        for d, size in img.blobs.items():
            self.assert_blob_at(port, repo, d, size, headers, what)

    def assert_stored(self, w, img):
        for d in img.all_digests():
            self.assertTrue(wait_for(lambda: up.root_has_blob(w.root, d), 5),
                            "%s not stored by the %s" % (d, w.name))
        self.assertEqual(up.bad_blob_files(w.root), [], "%s holds a corrupt blob" % w.name)


def big_blob():
    img = STATE["ups"]["library/big:latest"]
    d = max(img.blobs, key=img.blobs.get)
    return d, img.blobs[d]


def status(w, headers=None):
    st, _, body = w.request("GET", "/v2/_wharf/status", headers=headers or {})
    if st != 200:
        raise AssertionError("%s: GET /v2/_wharf/status: %d %r" % (w.name, st, body[:300]))
    return json.loads(body)


def metrics(w, headers=None):
    st, _, body = w.request("GET", "/metrics", headers=headers or {})
    if st != 200:
        raise AssertionError("%s: GET /metrics: %d %r" % (w.name, st, body[:300]))
    return parse_metrics(body.decode())


def fetch_of(w, digest, headers=None):
    """The blob fetch in flight for digest on w's status page, or None."""
    for x in status(w, headers)["fetches"]:
        if x["digest"] == digest:
            return x
    return None


# ================================================================ digests

class DigestTest(Base):

    def test_every_tier_serves_the_upstreams_bytes(self):
        """An image, an index (with its children) and a Docker schema 2 image,
        pulled cold through the edge: manifests by tag and by digest and every
        blob are byte-identical (sha256 of the body, Docker-Content-Digest,
        media type) at the edge, at the region and at the upstream; both tiers
        store them under their digests; each blob crossed each tier once."""
        region, edge = self.tiers()
        for name in ("library/alpine:latest", "library/multi:latest", "team/app:v2s2"):
            img = self.ups[name]
            repo, tag = name.rsplit(":", 1)
            # HEADs first, of what neither tier holds yet: asked through.
            self.assert_heads_at(edge.port, "hub/" + repo, tag, img, what="edge, uncached")
            self.flt.reset()
            before = log_mark(region)
            self.assert_image_at(edge.port, "hub/" + repo, tag, img, what="edge")
            s = self.flt.stats()
            for d in img.blobs:
                gets = blob_gets(region, d, before)
                self.assertEqual(len(gets), 1, "%s: the edge asked the region for %s %d times"
                                 % (name, d, len(gets)))
                self.assertEqual(s["blob_gets"].get(d), 1, "%s: upstream GETs of %s" % (name, d))
            self.assertEqual(s["bytes"]["blob"], img.blob_bytes, "%s: upstream blob bytes" % name)
            self.assert_image_at(region.port, "dockerhub/" + repo, tag, img, what="region")
            self.assert_image_at(self.dist.port, repo, tag, img, what="upstream")
            self.assert_stored(edge, img)
            self.assert_stored(region, img)
            self.assert_heads_at(edge.port, "hub/" + repo, tag, img, what="edge, cached")
        self.assertTrue(os.path.isdir(os.path.join(edge.root, "hub", "library", "multi")))
        self.assertTrue(os.path.isdir(os.path.join(region.root, "dockerhub", "library", "multi")))

    def test_range_of_an_uncached_layer(self):
        """A Range GET of a layer neither tier holds: a 206 with the
        upstream's bytes, the layer then held whole by both tiers."""
        region, edge = self.tiers()
        img = self.ups["library/alpine:3.20"]
        self.assert_manifest_at(edge.port, "hub/library/alpine", "3.20", img)
        dg = max(img.blobs, key=img.blobs.get)
        data = up.upstream_client(self.dist).blob("library/alpine", dg)
        lo, hi = 1000, 4999
        r = fetch(edge.port, "/v2/hub/library/alpine/blobs/" + dg,
                  headers={"Range": "bytes=%d-%d" % (lo, hi)})
        self.assertEqual((r.status, r.body, r.headers.get("content-range")),
                         (206, data[lo:hi + 1], "bytes %d-%d/%d" % (lo, hi, len(data))), r)
        for w in (edge, region):
            self.assertTrue(wait_for(lambda: up.root_has_blob(w.root, dg), 5), w.name)
        self.assertEqual(self.flt.stats()["blob_gets"].get(dg), 1)

    def test_skopeo_through_two_tiers_and_second_pull_stays_at_the_edge(self):
        """skopeo inspect --raw and skopeo copy --all (dir:, which keeps
        manifests byte for byte) through the edge: the upstream's digests. A
        second pull is the edge's alone: no request reaches the region, none
        the upstream."""
        region, edge = self.tiers()
        img = self.ups["library/multi:latest"]
        ref = "docker://%s/hub/library/multi:latest" % edge.hostport
        raw = self.skopeo("inspect", "--raw", "--tls-verify=false", ref).stdout
        self.assertEqual(sha(raw.encode()), img.digest, "skopeo inspect --raw at the edge")
        d1 = os.path.join(self.tmpdir("copy"), "one")
        self.skopeo("copy", "--quiet", "--retry-times", "0", "--all", "--src-tls-verify=false",
                    ref, "dir:" + d1)
        self.assert_dir_copy(d1, img)
        cold = self.flt.stats()
        print("\n[tiers, cold pull of an index] upstream blob bytes %d for an image of %d; "
              "region requests %d" % (cold["bytes"]["blob"], img.blob_bytes,
                                      len(requests_seen(region))))
        self.assertEqual(cold["bytes"]["blob"], img.blob_bytes, "the cold pull costs 1.0x")
        self.flt.reset()
        before = log_mark(region)
        d2 = os.path.join(self.tmpdir("copy"), "two")
        self.skopeo("copy", "--quiet", "--retry-times", "0", "--all", "--src-tls-verify=false",
                    ref, "dir:" + d2)
        self.assert_dir_copy(d2, img)
        time.sleep(0.2)  # a request the region would log arrives with the pull's end
        self.assertEqual(requests_seen(region, before), [], "the second pull reached the region")
        self.assertEqual(self.flt.stats()["requests"], 0, "the second pull reached the upstream")
        m = metrics(edge)
        self.assertGreaterEqual(val(m, "wharf_cache_hits_total", kind="blob"), len(img.blobs))

    def test_artifact_and_its_referrers(self):
        """An artifact attached upstream (tag schema): the region's referrers
        API lists it, the edge's (asking the region's) too, with
        artifactType filtering; the artifact and its blob come through both
        tiers with the upstream's digests."""
        region, edge = self.tiers()
        subject = self.ups["library/alpine:latest"]
        a = STATE["artifact"]
        want = [(a.digest, SIG_TYPE)]
        for w, name in ((edge, "hub/library/alpine"), (region, "dockerhub/library/alpine")):
            st, h, body = w.request("GET", "/v2/%s/referrers/%s" % (name, subject.digest))
            self.assertEqual(st, 200, "%s: %r%s" % (w.name, body[:300], self.logs(w)))
            self.assertEqual(h.get("content-type"), images.MT_INDEX)
            doc = json.loads(body)
            self.assertEqual([(x["digest"], x.get("artifactType")) for x in doc["manifests"]],
                             want, w.name)
            st, h, body = w.request("GET", "/v2/%s/referrers/%s?artifactType=%s"
                                    % (name, subject.digest, SBOM_TYPE))
            self.assertEqual((st, json.loads(body)["manifests"], h.get("oci-filters-applied")),
                             (200, [], "artifactType"), w.name)
        r = get_manifest(edge.port, "hub/library/alpine", a.digest)
        self.assertEqual((r.status, r.sha, r.headers.get("docker-content-digest")),
                         (200, a.digest, a.digest), r)
        self.assertEqual(json.loads(r.body)["subject"]["digest"], subject.digest)
        self.assert_blob_at(edge.port, "hub/library/alpine", sha(a.payload), len(a.payload))
        self.assertTrue(up.root_has_blob(edge.root, a.digest))

    def assert_dir_copy(self, d, img):
        self.assertEqual(up.sha256_file(os.path.join(d, "manifest.json")), img.digest)
        for cd in img.children:
            self.assertEqual(up.sha256_file(os.path.join(d, cd.split(":")[1] + ".manifest.json")),
                             cd)
        for bd in img.blobs:
            self.assertEqual(up.sha256_file(os.path.join(d, bd.split(":")[1])), bd)


# ================================================================ names

class MappingTest(Base):

    def test_strip_prefix_composes(self):
        """edge hub/library/alpine -> region dockerhub/library/alpine ->
        upstream library/alpine: each tier asks the next by the name the next
        one serves, and stores under its own."""
        region, edge = self.tiers()
        img = self.ups["library/alpine:latest"]
        self.assert_image_at(edge.port, "hub/library/alpine", "latest", img, what="edge")
        paths = [p for _, p, _ in requests_seen(region)]
        self.assertTrue(paths, "the region was not asked")
        self.assertEqual([p for p in paths if not p.startswith("/v2/dockerhub/library/alpine/")],
                         [])
        names = set(e["name"] for e in self.flt.stats()["events"] if e["name"])
        self.assertEqual(names, {"library/alpine"})
        self.assertTrue(os.path.isdir(os.path.join(edge.root, "hub", "library", "alpine")))
        self.assertTrue(os.path.isdir(os.path.join(region.root, "dockerhub", "library", "alpine")))
        self.assertFalse(os.path.exists(os.path.join(edge.root, "dockerhub")))
        # Names outside the edge's rule are not the region's.
        before = log_mark(region)
        r = get_manifest(edge.port, "other/library/alpine", "latest")
        self.assertEqual((r.status, error_codes(r)), (404, ["NAME_UNKNOWN"]), r)
        self.assertEqual(requests_seen(region, before), [])

    def test_plain_destination_and_root(self):
        """No stripPrefix: the edge's name keeps the region's whole
        (mirror/dockerhub/library/alpine); destination "/": the edge serves
        the region's names as they are. A name the prefix does not cover is
        never asked of the region."""
        region = self.region()
        img = self.ups["team/app:v2s2"]
        for content, local in (
                ([{"prefix": "dockerhub/**", "destination": "/mirror"}],
                 "mirror/dockerhub/team/app"),
                ([{"prefix": "**", "destination": "/"}], "dockerhub/team/app")):
            edge = self.edge(region.url, content=content)
            self.assert_image_at(edge.port, local, "v2s2", img, what=local)
            self.assertTrue(os.path.isdir(os.path.join(edge.root, *local.split("/"))), local)
            self.stop(edge)
        edge = self.edge(region.url,
                         content=[{"prefix": "dockerhub/**", "destination": "/mirror"}])
        before = log_mark(region)
        r = get_manifest(edge.port, "mirror/team/app", "v2s2")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(requests_seen(region, before), [], "an unmapped name went to the region")

    def test_ns_an_edge_mirroring_the_region(self):
        """containerd with the edge as the mirror of the region's host asks
        the edge for the region's name with ?ns=<region>: the edge maps it
        through its rule (hub/..., or mirror/dockerhub/... without
        stripPrefix) and asks the region for the name containerd gave."""
        region = self.region()
        img = self.ups["library/multi:latest"]
        ns = "?ns=" + region.hostport
        for content, local in (
                (None, "hub/library/multi"),
                ([{"prefix": "dockerhub/**", "destination": "/mirror"}],
                 "mirror/dockerhub/library/multi")):
            edge = self.edge(region.url, content=content)
            self.assert_manifest_at(edge.port, "dockerhub/library/multi", "latest", img, query=ns)
            for d, child in img.children.items():
                self.assert_manifest_at(edge.port, "dockerhub/library/multi", d, child, query=ns)
            for d, size in img.blobs.items():
                self.assert_blob_at(edge.port, "dockerhub/library/multi", d, size, query=ns)
            self.assertTrue(os.path.isdir(os.path.join(edge.root, *local.split("/"))),
                            "%s: not stored under %s" % (content, local))
            self.assertFalse(os.path.exists(os.path.join(edge.root, "dockerhub")))
            # Another registry's host: not mapped, a local name nobody pushed.
            r = get_manifest(edge.port, "dockerhub/library/multi", "latest",
                             query="?ns=elsewhere.example:5000")
            self.assertEqual(r.status, 404, r)
            self.stop(edge)

    def _ns_original(self):
        """A region mirroring the upstream at its root, and an edge whose
        registry is the region first and the upstream's host as the
        fallback (a second fault proxy, so its traffic is counted apart)."""
        direct = up.FaultProxy(self.dist.url).start()
        self.addCleanup(direct.cleanup)
        self.addCleanup(direct.stop)
        region = self.region(destination="/")
        edge = self.edge([region.url, direct.url],
                         content=[{"prefix": "**", "destination": "/up"}])
        return direct, region, edge

    def test_ns_an_edge_mirroring_the_original_registry(self):
        """Clients that name the original registry (containerd with the edge
        as that registry's mirror: ?ns=<upstream>): the edge maps the host to
        up/..., asks the region (its primary URL) by the upstream's own name,
        and the upstream directly only when the region is down. For this the
        region mirrors the upstream at its root (destination "/"), so one
        name is right at both URLs."""
        direct, region, edge = self._ns_original()
        img = self.ups["library/alpine:latest"]
        ns = "?ns=" + direct.hostport
        self.assert_manifest_at(edge.port, "library/alpine", "latest", img, query=ns)
        for d, size in img.blobs.items():
            self.assert_blob_at(edge.port, "library/alpine", d, size, query=ns)
        self.assertTrue(os.path.isdir(os.path.join(edge.root, "up", "library", "alpine")))
        self.assertEqual(direct.stats()["requests"], 0, "the edge went round the region")
        paths = set(p.split("/manifests/")[0].split("/blobs/")[0] for _, p, _ in
                    requests_seen(region))
        self.assertEqual(paths, {"/v2/library/alpine"})
        self.assertTrue(os.path.isdir(os.path.join(region.root, "library", "alpine")))
        # The region down: the edge goes to the upstream itself, same names.
        self.stop(region)
        multi = self.ups["library/multi:latest"]
        self.assert_manifest_at(edge.port, "library/multi", "latest", multi, query=ns)
        for d, size in multi.blobs.items():
            self.assert_blob_at(edge.port, "library/multi", d, size, query=ns)
        self.assertEqual(set(e["name"] for e in direct.stats()["events"] if e["name"]),
                         {"library/multi"})

    @unittest.skipUnless(have("containerd") and have("ctr"), "containerd/ctr not installed")
    def test_ctr_pulls_the_original_registry_through_both_tiers(self):
        """ctr with a hosts.toml for the upstream's host naming the edge as its
        mirror (examples/containerd-ns): the image comes with the upstream's
        digests, through the edge and the region, not from the upstream
        directly (containerd falls back to the server on a mirror's 404)."""
        direct, region, edge = self._ns_original()
        certs = os.path.join(self.tmpdir("certs"), "certs.d")
        os.makedirs(os.path.join(certs, direct.hostport))
        with open(os.path.join(certs, direct.hostport, "hosts.toml"), "w") as f:
            f.write('server = "%s"\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n'
                    % (direct.url, edge.hostport))
        ctrd = up.Containerd().start()
        self.addCleanup(ctrd.cleanup)
        self.addCleanup(ctrd.stop)
        img = self.ups["library/multi:latest"]
        ref = "%s/library/multi:latest" % direct.hostport
        ctrd.ctr("images", "pull", "--hosts-dir", certs, "--snapshotter", "native",
                 "--all-platforms", ref, timeout=90)
        out = ctrd.ctr("images", "ls").stdout
        line = [ln for ln in out.splitlines() if ln.startswith(ref + " ")]
        self.assertTrue(line, out)
        self.assertIn(img.digest, line[0])
        content = set(ctrd.ctr("content", "ls", "-q").stdout.split())
        self.assertTrue(img.all_digests() <= content, img.all_digests() - content)
        self.assertEqual(direct.stats()["requests"], 0,
                         "containerd or the edge went to the upstream directly" + self.logs(edge))
        served = [(m, p, s) for m, p, s in requests_seen(edge) if "ns=" in p]
        self.assertTrue(served and all(s == 200 for _, _, s in served), served)
        for d in img.blobs:
            self.assertEqual(len(blob_gets(region, d)), 1, d)

    def test_tags_list_through_two_tiers(self):
        """tags/list at the edge is the upstream's list (the tag schema's
        sha256-<hex> tag included), under the edge's name; n and last page it."""
        region, edge = self.tiers()
        st, _, body = _dist_req(self.dist, "GET", "/v2/library/alpine/tags/list")
        want = json.loads(body)["tags"]
        self.assertEqual(len(want), 3, want)
        for w, name in ((edge, "hub/library/alpine"), (region, "dockerhub/library/alpine")):
            st, _, body = w.request("GET", "/v2/%s/tags/list" % name)
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body), {"name": name, "tags": sorted(want)}, w.name)
        st, h, body = edge.request("GET", "/v2/hub/library/alpine/tags/list?n=1")
        self.assertEqual((st, json.loads(body)["tags"]), (200, sorted(want)[:1]))
        self.assertIn("last=", h.get("link", ""))
        st, h, body = edge.request("GET", "/v2/hub/library/alpine/tags/list?last=%s"
                                   % sorted(want)[0])
        self.assertEqual(json.loads(body)["tags"], sorted(want)[1:])
        # Every tag listed is pullable through both tiers.
        for tag in ("latest", "3.20"):
            self.assert_manifest_at(edge.port, "hub/library/alpine", tag,
                                    self.ups["library/alpine:%s" % tag])


# ================================================================ auth

@unittest.skipUnless(have("htpasswd"), "htpasswd (apache2-utils) is not installed")
class AuthTest(Base):
    USER = ("edge", "edge-secret")

    def auth_tiers(self, creds):
        t = self.tmpdir("auth")
        htp = os.path.join(t, "htpasswd")
        write_htpasswd(htp, [(self.USER[0], self.USER[1], "bcrypt")])
        region = self.region(extra={"http": {"realm": "region",
                                             "auth": {"htpasswd": {"path": htp}}}})
        path = None
        if creds:
            path = up.write_credentials(os.path.join(t, "credentials.json"),
                                        {region.hostport: creds})
        return region, self.edge(region.url, credentials_file=path, manifestCheckInterval="1s")

    def test_credentials_file_for_the_region(self):
        """The region needs a login; the edge has one in its credentialsFile.
        The edge's own clients are anonymous and get the upstream's bytes; a
        cached second pull does not ask the region."""
        region, edge = self.auth_tiers(self.USER)
        self.assertEqual(get_manifest(region.port, "dockerhub/library/alpine", "latest").status,
                         401, "the region lets anonymous clients in")
        before = log_mark(region)
        img = self.ups["library/multi:latest"]
        self.assert_image_at(edge.port, "hub/library/multi", "latest", img, what="edge")
        # The edge learnt the scheme: its credentials go with the first
        # exchange, one 401 in all, not one per request.
        self.assertEqual(len([x for x in requests_seen(region, before) if x[2] == 401]), 1)
        d = os.path.join(self.tmpdir("copy"), "m")
        self.skopeo("copy", "--quiet", "--retry-times", "0", "--all", "--src-tls-verify=false",
                    "docker://%s/hub/library/multi:latest" % edge.hostport, "dir:" + d)
        self.assertEqual(up.sha256_file(os.path.join(d, "manifest.json")), img.digest)
        # The region served the edge as its user.
        auth = {"Authorization": basic(*self.USER)}
        self.assert_manifest_at(region.port, "dockerhub/library/multi", "latest", img, auth)
        m = metrics(region, auth)
        self.assertEqual(val(m, "wharf_auth_failures_total", reason="bad_credentials"), 0)
        self.assertEqual(val(m, "wharf_auth_failures_total", reason="no_credentials"), 2)
        seen = requests_seen(region, before)
        print("\n[auth] the region answered the edge %d times, %d of them 401"
              % (len(seen), len([x for x in seen if x[2] == 401])))

    def _refused(self, creds, says):
        """Every pull at the edge is a prompt 502 whose message says what
        happened (the client cannot mend it, and the image may well be
        there: not a 404); the edge logs it once; nothing is fetched."""
        region, edge = self.auth_tiers(creds)
        img = self.ups["library/alpine:latest"]
        for path in ("/v2/hub/library/alpine/manifests/latest",
                     "/v2/hub/library/alpine/blobs/" + img.config,
                     "/v2/hub/library/alpine/manifests/3.20"):
            t0 = time.monotonic()
            r = fetch(edge.port, path, headers={"Accept": MANIFEST_ACCEPT}, timeout=30)
            took = time.monotonic() - t0
            self.assertLess(took, PROMPT_S, "%s took %.1fs" % (path, took))
            self.assertEqual((r.status, error_codes(r)), (502, ["UNKNOWN"]),
                             "%s: %r%s" % (path, r, self.logs(edge)))
            self.assertIn(says, error_text(r), "%s: the answer does not say why: %r" % (path, r))
        logged = [x for x in edge.log_records() if "credentials" in str(x.get("message"))]
        self.assertEqual(len(logged), 1, "the edge should say it once: %s" % logged)
        self.assertEqual(logged[0]["level"], "warn")
        self.assertEqual(logged[0]["upstream"], region.url)
        self.assertEqual(logged[0]["credentials"], region.hostport)
        self.assertEqual(self.flt.stats()["requests"], 0, "the region fetched for a refused login")
        self.assertEqual(up.blob_files(edge.root), [])
        # tags/list: not "no tags" (the upstream could not be asked), and why.
        r = fetch(edge.port, "/v2/hub/library/alpine/tags/list")
        self.assertEqual((r.status, error_codes(r)), (502, ["UNKNOWN"]), r)
        self.assertIn(says, error_text(r))
        logged = [x for x in edge.log_records() if "credentials" in str(x.get("message"))]
        self.assertEqual(len(logged), 1, "the edge should say it once: %s" % logged)
        return region, edge

    def test_wrong_credentials_are_a_clear_error(self):
        region, edge = self._refused((self.USER[0], "wrong"), "refused the credentials")
        m = metrics(region, {"Authorization": basic(*self.USER)})
        self.assertGreaterEqual(val(m, "wharf_auth_failures_total", reason="bad_credentials"), 3)

    def test_no_credentials_is_a_clear_error(self):
        self._refused(None, "requires credentials")

    def test_credentials_gone_wrong_cached_images_still_served(self):
        """The credentials go wrong after a pull (the file rewritten, SIGHUP):
        what the edge holds is still served past its freshness window (the
        revalidation's refusal is the upstream's failure, not "gone"), what
        it does not hold is the 502 that says why."""
        region, edge = self.auth_tiers(self.USER)
        img = self.ups["library/alpine:latest"]
        self.assert_image_at(edge.port, "hub/library/alpine", "latest", img)
        up.write_credentials(edge.config["extensions"]["sync"]["credentialsFile"],
                             {region.hostport: (self.USER[0], "changed")})
        edge.proc.send_signal(signal.SIGHUP)  # the credentials file is read again
        self.assertTrue(wait_for(lambda: [x for x in edge.log_records() if x.get("message") ==
                                          "SIGHUP: configuration reloaded"], 5), self.logs(edge))
        time.sleep(1.2)
        self.assert_image_at(edge.port, "hub/library/alpine", "latest", img, what="stale")
        self.assertTrue(wait_for(lambda: [x for x in edge.log_records()
                                          if "refused our credentials" in str(x.get("message"))],
                                 5), "the revalidation was not refused" + self.logs(edge))
        r = get_manifest(edge.port, "hub/library/alpine", "3.20")
        self.assertEqual((r.status, error_codes(r)), (502, ["UNKNOWN"]), r)
        self.assertIn("refused the credentials", error_text(r))


# ================================================================ the tee

class TeeTest(Base):

    def _slow(self):
        region, edge = self.tiers()
        self.assert_manifest_at(edge.port, "hub/library/big", "latest",
                                self.ups["library/big:latest"])
        dg, size = big_blob()
        self.flt.set("throttle", rate_bytes_per_s=THROTTLE, path_contains=dg)
        return region, edge, dg, size

    def test_edge_client_streams_while_the_region_fetches(self):
        """A 7 MiB layer through a 1.5 MB/s upstream: the edge's client has its
        first body byte while the region's fetch is in flight (seen on the
        region's status page and in the upstream's byte count at that
        moment), long before the transfer could have ended; the bytes
        verify; each tier sent the layer once."""
        region, edge, dg, size = self._slow()
        transfer = size / THROTTLE

        def snapshot():
            return {"region": fetch_of(region, dg), "edge": fetch_of(edge, dg),
                    "upstream_bytes": self.flt.stats()["blob_bytes"].get(dg, 0),
                    "t": time.monotonic()}
        t0 = time.monotonic()
        r = get_blob(edge.port, "hub/library/big", dg, timeout=60, on_first_byte=snapshot)
        at = r.at_first_byte or {}
        self.assertEqual((r.status, r.error, r.length, r.sha), (200, None, size, dg),
                         "%r%s" % (r, self.logs(edge, region)))
        self.assertGreater(r.elapsed, 0.8 * transfer, "the throttle was not in effect")
        rf = at.get("region")
        print("\n[tee, two tiers] first byte at the edge %.3fs; whole %d bytes in %.2fs "
              "(%.1fs at the throttle); then: region %s/%s bytes, upstream sent %d, edge %s"
              % (r.ttfb, size, r.elapsed, transfer, rf and rf["bytes"], rf and rf["total"],
                 at.get("upstream_bytes", -1), at.get("edge") and at["edge"]["bytes"]))
        self.assertLess(r.ttfb, TTFB_SHARE * transfer,
                        "the edge's first byte came %.2fs in: buffered somewhere" % r.ttfb)
        self.assertIsNotNone(rf, "the region had no fetch in flight when the edge's client "
                             "had bytes")
        self.assertLess(rf["bytes"], size)
        self.assertLess(at["upstream_bytes"], size // 2)
        self.assertIsNotNone(at.get("edge"), "the edge's fetch was not in flight")
        self.assertEqual(len(blob_gets(region, dg)), 1)
        self.assertEqual(self.flt.stats()["blob_gets"].get(dg), 1)
        self.assertTrue(wait_for(lambda: up.root_has_blob(edge.root, dg) and
                                 up.root_has_blob(region.root, dg), 10))
        for w in (edge, region):
            for p in up.root_has_blob(w.root, dg):
                self.assertEqual(up.sha256_file(p), dg)
            self.assertTrue(wait_for(lambda: fetch_of(w, dg) is None, 5))
            self.assertEqual(val(metrics(w), "wharf_upstream_fetched_bytes_total"), size, w.name)
        self.assertEqual(self.flt.stats()["blob_bytes"].get(dg), size)
        self.assertLess(time.monotonic() - t0, 3 * transfer)

    def test_clients_at_once_one_fetch_at_each_tier(self):
        """Four clients at the edge for one layer, at once and while it
        streams: one GET at the region, one at the upstream, every client the
        right bytes, the edge's one fetch feeding all four."""
        region, edge, dg, size = self._slow()
        n = 4
        results = [None] * n

        def client(i):
            results[i] = get_blob(edge.port, "hub/library/big", dg, timeout=60)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
        for t in threads[:2]:
            t.start()
        # Two more join once bytes flow.
        self.assertTrue(wait_for(lambda: self.flt.stats()["blob_bytes"].get(dg, 0) > 1 << 20, 10),
                        "the fetch did not start" + self.logs(edge, region))
        for t in threads[2:]:
            t.start()
        seen = wait_for(lambda: (fetch_of(edge, dg) or {}).get("clients") == n and
                        fetch_of(edge, dg), 5)
        region_fetch = fetch_of(region, dg)
        for t in threads:
            t.join(60)
        for i, r in enumerate(results):
            self.assertIsNotNone(r, "client %d did not finish" % i)
            self.assertEqual((r.status, r.error, r.length, r.sha), (200, None, size, dg),
                             "client %d: %r%s" % (i, r, self.logs(edge, region)))
        self.assertTrue(seen, "the edge's fetch was never seen with its %d clients" % n)
        self.assertTrue(region_fetch and region_fetch["clients"] == 1, region_fetch)
        gets = blob_gets(region, dg)
        s = self.flt.stats()
        print("\n[%d clients at the edge] region GETs %d, upstream GETs %d, upstream bytes %d"
              % (n, len(gets), s["blob_gets"].get(dg, 0), s["blob_bytes"].get(dg, 0)))
        self.assertEqual(len(gets), 1, gets)
        self.assertEqual((s["blob_gets"].get(dg), s["blob_bytes"].get(dg)), (1, size))
        m = metrics(region)
        self.assertEqual(val(m, "wharf_upstream_fetched_bytes_total"), size)
        self.assertEqual(val(m, "wharf_cache_misses_total", kind="blob"), 1)
        m = metrics(edge)
        self.assertEqual(val(m, "wharf_upstream_fetched_bytes_total"), size)
        self.assertEqual(val(m, "wharf_cache_tee_bytes_total"), n * size)


# ================================================================ faults

class FaultTest(Base):

    def test_region_killed_mid_transfer(self):
        """kill -9 of the region while the edge's client streams a layer from
        it: the client's connection is cut short (never a whole body),
        nothing of the layer is stored at the edge (no temp file left); once
        the region is back, a retry at the edge gets the right bytes."""
        region, edge = self.tiers()
        self.assert_manifest_at(edge.port, "hub/library/big", "latest",
                                self.ups["library/big:latest"])
        dg, size = big_blob()
        self.flt.set("throttle", rate_bytes_per_s=THROTTLE, path_contains=dg)
        box = {}

        def pull():
            box["r"] = get_blob(edge.port, "hub/library/big", dg, timeout=30)
        t = threading.Thread(target=pull)
        t.start()
        self.assertTrue(wait_for(lambda: (fetch_of(edge, dg) or {}).get("bytes", 0) > 1 << 20,
                                 10),
                        "the edge's fetch did not get going" + self.logs(edge, region))
        region.kill9()
        t.join(30)
        r = box.get("r")
        self.assertIsNotNone(r, "the edge's client hangs")
        print("\n[region killed] the edge's client got %d of %d bytes: %s"
              % (r.length, size, r.error))
        self.assertEqual(r.status, 200)
        self.assertIsNotNone(r.error, "the edge's client got a whole body: %r" % r)
        self.assertLess(r.length, size)
        self.assertTrue(wait_for(lambda: fetch_of(edge, dg) is None and
                                 not up.tmp_files(edge.root), 10),
                        "the edge's fetch or its temp file outlived the cut")
        self.assertEqual(up.root_has_blob(edge.root, dg), [])
        self.assertEqual(up.bad_blob_files(edge.root), [])
        self.flt.clear()
        region.start()
        self.assertEqual(up.tmp_files(region.root), [], "the region kept a temp file")
        t0 = time.monotonic()
        ok = wait_for(lambda: get_blob(edge.port, "hub/library/big", dg, timeout=30).complete(),
                      15, step=0.5)
        print("[region killed] a retry at the edge succeeded %.2fs after the region was back"
              % (time.monotonic() - t0))
        self.assertTrue(ok, "no retry succeeded once the region was back" + self.logs(edge))
        r = get_blob(edge.port, "hub/library/big", dg)
        self.assertEqual((r.status, r.length, r.sha), (200, size, dg))
        self.assertTrue(wait_for(lambda: up.root_has_blob(edge.root, dg), 5))
        self.assertEqual(up.bad_blob_files(edge.root), [])
        self.assertEqual(up.bad_blob_files(region.root), [])

    def test_region_down_edge_serves_its_cache(self):
        """With the region stopped, what the edge holds is still served, at
        once: a tag past its freshness window (stale while revalidate), the
        index's children and blobs, a whole skopeo pull; what it does not
        hold is a prompt 502 with an OCI error."""
        region = self.region()
        edge = self.edge(region.url, manifestCheckInterval="1s")
        img = self.ups["library/multi:latest"]
        self.assert_image_at(edge.port, "hub/library/multi", "latest", img)
        self.stop(region)
        time.sleep(1.2)
        t0 = time.monotonic()
        self.assert_image_at(edge.port, "hub/library/multi", "latest", img, what="region down")
        d = os.path.join(self.tmpdir("copy"), "m")
        self.skopeo("copy", "--quiet", "--retry-times", "0", "--all", "--src-tls-verify=false",
                    "docker://%s/hub/library/multi:latest" % edge.hostport, "dir:" + d)
        took = time.monotonic() - t0
        print("\n[region down] the edge served an index, its children and blobs, and a skopeo "
              "pull, in %.2fs" % took)
        self.assertLess(took, 2 * PROMPT_S)
        self.assertEqual(up.sha256_file(os.path.join(d, "manifest.json")), img.digest)
        for path in ("/v2/hub/library/alpine/manifests/latest",
                     "/v2/hub/library/alpine/blobs/" + self.ups["library/alpine:latest"].config):
            t0 = time.monotonic()
            r = fetch(edge.port, path, headers={"Accept": MANIFEST_ACCEPT}, timeout=30)
            self.assertLess(time.monotonic() - t0, PROMPT_S, path)
            self.assertEqual((r.status, error_codes(r)), (502, ["UNKNOWN"]), r)


if __name__ == "__main__":
    unittest.main()
