"""extensions.metrics and the status page (/v2/_wharf/status), end to end on
127.0.0.1 with real parts:

    clients (http.client, images.push)
        -> wharf (extensions.metrics, extensions.sync)
            -> docker-registry (Distribution 2.8) seeded by upstream.seed
            |  or fakes/faults.py in front of it (throttle: a slow fill)

What is checked:
    WorkloadTest   after a mixed workload (pushes, pulls, 404s, a pull-through
                   and its second pull from the cache), `promtool check metrics`
                   has nothing to say but about zot_info's label names (Zot's
                   own, camelCase), and every counter moved by exactly what the
                   workload did; the status page's shape and numbers
    FetchTest      a blob fill throttled upstream is visible in flight on the
                   status page and in the gauges, with its two clients
    AccessTest     accessControl.metrics (Zot's rule: 403 for a user it does
                   not list, 401 anonymous), and without it what /v2/ needs
    ConfigTest     prometheus.path, enable false, methods, HEAD
    TlsTest        TLS handshakes by result, over http.tls

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_metrics
"""

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import images
import upstream as up
from harness import WHARF_BIN, Wharf, have
from test_auth import basic, write_htpasswd

STATE = {}

MANIFEST_ACCEPT = up.MANIFEST_ACCEPT

# promtool's lint on names Zot chose, which we keep: nothing else may be said.
ZOT_LABEL_LINT = "zot_info label names should be written in 'snake_case' not 'camelCase'"

STATUS_KEYS = {"version", "uptime_s", "cache", "upstreams", "fetches", "gc"}
CACHE_KEYS = {"hits", "misses", "bytes_from_cache", "bytes_from_upstream", "bytes_from_peers",
              "usage_bytes", "budget_bytes", "min_free_bytes", "fs_free_bytes", "evictions"}
UPSTREAM_KEYS = {"prefix", "url", "up", "requests", "errors"}
FETCH_KEYS = {"repo", "digest", "bytes", "total", "clients", "started_ms", "rate_bps"}
GC_KEYS = {"sweeps", "sweeping", "last_sweep_ms", "manifests_removed", "blobs_removed"}


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)
    for tool in ("docker-registry", "skopeo"):
        if not have(tool):
            raise unittest.SkipTest("%s not installed" % tool)
    tmp = tempfile.mkdtemp(prefix="wharf-metrics-")
    STATE["tmp"] = tmp
    dist = up.Distribution().start()
    STATE["dist"] = dist
    STATE["ups"] = up.seed(dist, os.path.join(tmp, "seed"), big=False)


def tearDownModule():
    if STATE.get("dist"):
        STATE["dist"].stop()
        STATE["dist"].cleanup()
    if STATE.get("tmp"):
        shutil.rmtree(STATE["tmp"], ignore_errors=True)
    STATE.clear()


# ---------------------------------------------------------------- the format

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_metrics(text):
    """{(name, ((label, value), ...) sorted): value} of every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        name, labels, value = m.groups()
        pairs = []
        if labels:
            pos = 0
            while pos < len(labels):
                lm = _LABEL.match(labels, pos)
                if not lm:
                    raise AssertionError("bad labels in %r" % line)
                v = lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                pairs.append((lm.group(1), v))
                pos = lm.end()
        key = (name, tuple(sorted(pairs)))
        if key in out:
            raise AssertionError("sample repeated: %r" % line)
        out[key] = float(value)
    return out


def val(samples, name, **labels):
    """The sample's value; 0 when absent (a counter not moved yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def promtool_remarks(text):
    """What `promtool check metrics` says about text (its lines), and its status."""
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    lines = [ln.strip() for ln in p.stdout.decode("utf-8", "replace").splitlines()
             if ln.strip()]
    return p.returncode, lines


# ---------------------------------------------------------------- HTTP

def request(w, method, path, headers=None, body=None, timeout=60):
    return w.request(method, path, body=body, headers=headers or {}, timeout=timeout)


def scrape(w, path="/metrics", headers=None):
    st, h, body = request(w, "GET", path, headers)
    if st != 200:
        raise AssertionError("GET %s: %d %r" % (path, st, body[:300]))
    return body.decode(), h


def status(w, headers=None):
    st, h, body = request(w, "GET", "/v2/_wharf/status", headers)
    if st != 200:
        raise AssertionError("GET /v2/_wharf/status: %d %r" % (st, body[:300]))
    return json.loads(body)


def get(w, path, accept=None):
    st, _, body = request(w, "GET", path, {"Accept": accept} if accept else None)
    return st, body


def wait_for(pred, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def usage_on_disk(root):
    """The bytes of every repository's blobs and the shared copies, each
    file (inode) once, as the store counts its usage."""
    seen = {}
    for dirpath, _, names in os.walk(root):
        if not dirpath.endswith(os.path.join("blobs", "sha256")):
            continue
        for n in names:
            st = os.stat(os.path.join(dirpath, n))
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def repo_bytes_on_disk(root, repo):
    d = os.path.join(root, repo, "blobs", "sha256")
    return sum(os.stat(os.path.join(d, n)).st_size for n in os.listdir(d))


# ---------------------------------------------------------------- tests

class Base(unittest.TestCase):
    maxDiff = 4000

    @property
    def dist(self):
        return STATE["dist"]

    @property
    def ups(self):
        return STATE["ups"]

    def tmpdir(self, name="t"):
        d = tempfile.mkdtemp(prefix="wharf-metrics-%s-" % name)
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def wharf(self, config):
        w = Wharf(config)
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

    def log_tail(self, w, n=3000):
        return "\n--- wharf log (tail) ---\n" + w.log()[-n:]


class WorkloadTest(Base):

    def test_counters_and_promtool_after_mixed_workload(self):
        cfg = up.sync_config(self.dist.url, destination="/hub")
        cfg["extensions"]["metrics"] = {}
        # A sweep every second (nothing is old enough to go) counts each
        # repository's bytes.
        cfg["storage"] = {"gc": True, "gcDelay": "1h", "gcInterval": "1s"}
        w = self.wharf(cfg)
        s0 = parse_metrics(scrape(w)[0])

        # Pushes: an image into team/app (its blobs, one manifest PUT).
        img = images.single_image(os.path.join(self.tmpdir("img"), "img"), tag="1", salt="m")
        images.push(w.hostport, img, "team/app", "1")
        # Pulls: three manifest GETs, a HEAD (not a download).
        for _ in range(3):
            st, body = get(w, "/v2/team/app/manifests/1", MANIFEST_ACCEPT)
            self.assertEqual(st, 200, body[:200])
        st, _, _ = request(w, "HEAD", "/v2/team/app/manifests/1",
                           {"Accept": MANIFEST_ACCEPT})
        self.assertEqual(st, 200)
        # 404s: an unknown tag, an unknown repository's blob, no such route.
        self.assertEqual(get(w, "/v2/team/app/manifests/nope")[0], 404)
        self.assertEqual(get(w, "/v2/nothing/blobs/sha256:" + "0" * 64)[0], 404)
        self.assertEqual(get(w, "/nowhere")[0], 404)

        # A pull through the cache: the manifest and every blob, then again.
        busy = self.ups["library/busy:latest"]
        blobs = sorted(busy.blobs.items())
        st, body = get(w, "/v2/hub/library/busy/manifests/latest", MANIFEST_ACCEPT)
        self.assertEqual(st, 200, body[:200])
        for d, size in blobs:
            st, body = get(w, "/v2/hub/library/busy/blobs/" + d)
            self.assertEqual((st, len(body)), (200, size))
        s1 = parse_metrics(scrape(w)[0])
        # Every fill is in the store before the second pull counts as hits.
        self.assertTrue(wait_for(lambda: val(parse_metrics(scrape(w)[0]),
                                             "wharf_cache_fetches_in_flight",
                                             kind="blob") == 0),
                        "a blob fetch stays in flight" + self.log_tail(w))
        st, body = get(w, "/v2/hub/library/busy/manifests/latest", MANIFEST_ACCEPT)
        self.assertEqual(st, 200)
        for d, size in blobs:
            st, body = get(w, "/v2/hub/library/busy/blobs/" + d)
            self.assertEqual((st, len(body)), (200, size))
        text, hdrs = scrape(w)
        s2 = parse_metrics(text)

        self.assertEqual(hdrs.get("content-type"), "text/plain; version=0.0.4; charset=utf-8")
        # promtool: only its remark on Zot's own label names.
        if have("promtool"):
            rc, remarks = promtool_remarks(text)
            self.assertEqual([r for r in remarks if r != ZOT_LABEL_LINT], [],
                             "promtool check metrics:\n" + "\n".join(remarks))
            self.assertIn(rc, (0, 3), remarks)  # 3: lint remarks only, no error
        else:
            print("\n[metrics] promtool not installed (packaging/deps.sh --test): "
                  "the format check is skipped")

        def delta(a, b, name, **labels):
            return val(b, name, **labels) - val(a, name, **labels)

        n = len(blobs)
        size = sum(s for _, s in blobs)
        # Zot's request counters: the metrics path itself is never counted.
        self.assertEqual(delta(s0, s2, "zot_http_requests_total", method="PUT", code="201"), 1)
        self.assertEqual(delta(s0, s2, "zot_http_requests_total", method="HEAD", code="200"), 1)
        self.assertEqual(delta(s0, s2, "zot_http_requests_total", method="GET", code="404"), 3)
        self.assertEqual(delta(s0, s2, "zot_http_requests_total", method="GET", code="200"),
                         3 + 2 + 2 * n)
        posts = len([d for d, b in img.blobs.items() if d != img.digest])
        self.assertEqual(delta(s0, s2, "zot_http_requests_total", method="POST", code="201"),
                         posts)
        gets = 3 + 2 + 2 * n + 3
        self.assertEqual(delta(s0, s2, "zot_http_method_latency_seconds_count", method="GET"),
                         gets)
        self.assertEqual(delta(s0, s2, "zot_http_method_latency_seconds_bucket", method="GET",
                               le="+Inf"), gets)
        self.assertEqual([lb for (nm, lbs) in s2 if nm == "zot_http_method_latency_seconds_bucket"
                          for (k, lb) in lbs if k == "le" and ("method", "GET") in lbs],
                         ["0.05", "0.5", "1", "5", "30", "60", "600", "+Inf"])
        self.assertEqual(val(s2, "zot_repo_downloads_total", repo="team/app"), 3)
        self.assertEqual(val(s2, "zot_repo_uploads_total", repo="team/app"), 1)
        self.assertEqual(val(s2, "zot_repo_downloads_total", repo="hub/library/busy"), 2)
        info = [dict(lb) for (nm, lb) in s2 if nm == "zot_info"]
        self.assertEqual(len(info), 1)
        self.assertEqual({k: v for k, v in info[0].items() if k != "goVersion"},
                         {"commit": "", "binaryType": "wharf", "version": "0.1.0"})
        self.assertIn("goVersion", info[0])

        # The cache: the first pull missed everything and fetched the blobs'
        # bytes once (through the tee to its one client); the second hit.
        self.assertEqual(delta(s0, s1, "wharf_cache_misses_total", kind="manifest"), 1)
        self.assertEqual(delta(s0, s1, "wharf_cache_misses_total", kind="blob"), n)
        self.assertEqual(delta(s0, s1, "wharf_cache_hits_total", kind="manifest"), 0)
        self.assertEqual(delta(s0, s1, "wharf_cache_hits_total", kind="blob"), 0)
        self.assertEqual(delta(s0, s1, "wharf_upstream_fetched_bytes_total"), size)
        self.assertEqual(delta(s0, s1, "wharf_cache_tee_bytes_total"), size)
        self.assertEqual(delta(s0, s1, "wharf_cache_served_bytes_total"), 0)
        self.assertEqual(delta(s1, s2, "wharf_cache_hits_total", kind="manifest"), 1)
        self.assertEqual(delta(s1, s2, "wharf_cache_hits_total", kind="blob"), n)
        self.assertEqual(delta(s1, s2, "wharf_cache_misses_total", kind="blob"), 0)
        self.assertEqual(delta(s1, s2, "wharf_cache_served_bytes_total"), size)
        self.assertEqual(delta(s1, s2, "wharf_upstream_fetched_bytes_total"), 0)
        # Upstream: a HEAD and a GET of the manifest, a GET per blob; all 200.
        reg = self.dist.hostport
        self.assertEqual(val(s2, "wharf_upstream_requests_total", registry=reg, code="200"),
                         2 + n)
        self.assertEqual(sum(v for (nm, lb), v in s2.items()
                             if nm == "wharf_upstream_requests_total"), 2 + n)
        self.assertEqual(val(s2, "wharf_upstream_up", registry=reg), 1)
        self.assertEqual(val(s2, "wharf_cache_fetch_clients", kind="blob"), 0)
        self.assertGreaterEqual(val(s2, "wharf_http_connections"), 1)
        self.assertGreater(val(s2, "wharf_http_connections_accepted_total"), gets)
        self.assertGreater(val(s2, "wharf_fs_free_bytes"), 0)

        # The GC: each repository's bytes as a sweep counted them, once one
        # ran after the pull (a sweep each second).
        def swept():
            s = parse_metrics(scrape(w)[0])
            ok = all(val(s, "zot_repo_storage_bytes", repo=r) == repo_bytes_on_disk(w.root, r)
                     for r in ("team/app", "hub/library/busy"))
            return s if ok else None
        s3 = wait_for(swept, 15, 0.2)
        self.assertTrue(s3, "zot_repo_storage_bytes never matched the disk" + self.log_tail(w))
        runs = val(s3, "zot_gc_runs_total", error="false")
        self.assertGreater(runs, 0)
        self.assertEqual(val(s3, "zot_gc_runs_total", error="true"), 0)
        self.assertEqual(val(s3, "zot_gc_duration_seconds_count"), runs)
        self.assertEqual(val(s3, "zot_gc_deleted_total", type="blob"), 0)
        self.assertGreater(val(s3, "wharf_gc_sweeps_total"), 0)
        self.assertEqual(val(s3, "wharf_cache_usage_bytes"), usage_on_disk(w.root))

        # The status page, the same numbers in the UI's shape.
        doc = status(w)
        self.assertEqual(set(doc), STATUS_KEYS)
        self.assertEqual(set(doc["cache"]), CACHE_KEYS)
        self.assertEqual(set(doc["gc"]), GC_KEYS)
        self.assertEqual(doc["version"], "0.1.0")
        self.assertIsInstance(doc["uptime_s"], int)
        c = doc["cache"]
        self.assertEqual(c["hits"], {"manifest": 1, "blob": n})
        self.assertEqual(c["misses"], {"manifest": 1, "blob": n})
        self.assertEqual((c["bytes_from_cache"], c["bytes_from_upstream"]), (size, size))
        self.assertEqual((c["budget_bytes"], c["min_free_bytes"], c["evictions"]), (0, 0, 0))
        self.assertGreater(c["fs_free_bytes"], 0)
        self.assertGreater(c["usage_bytes"], 0)
        self.assertEqual(doc["upstreams"], [{"prefix": "hub", "url": self.dist.url, "up": True,
                                             "requests": 2 + n, "errors": 0}])
        self.assertEqual(doc["fetches"], [])
        self.assertGreater(doc["gc"]["sweeps"], 0)
        self.assertIsInstance(doc["gc"]["sweeping"], bool)


class FetchTest(Base):

    def test_slow_fill_in_flight_with_two_clients(self):
        f = up.FaultProxy(self.dist.url).start()
        self.addCleanup(f.cleanup)
        self.addCleanup(f.stop)
        cfg = up.sync_config(f.url, destination="/slow")
        cfg["extensions"]["metrics"] = {}
        w = self.wharf(cfg)
        img = self.ups["library/mid:latest"]
        dg = max(img.blobs, key=img.blobs.get)
        size = img.blobs[dg]
        st, _ = get(w, "/v2/slow/library/mid/manifests/latest", MANIFEST_ACCEPT)
        self.assertEqual(st, 200)
        rate = 2e6  # 4 MiB in about 2 s
        f.set("throttle", rate_bytes_per_s=rate, path_contains=dg)

        results = []

        def pull():
            c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=60)
            try:
                c.request("GET", "/v2/slow/library/mid/blobs/" + dg)
                r = c.getresponse()
                results.append((r.status, len(r.read())))
            except (OSError, http.client.HTTPException) as e:
                results.append((None, repr(e)))
            finally:
                c.close()

        threads = [threading.Thread(target=pull) for _ in range(2)]
        t0 = time.time()
        threads[0].start()
        # The second client joins the fetch the first started.
        self.assertTrue(wait_for(lambda: any(x["digest"] == dg for x in status(w)["fetches"]),
                                 10), "no fetch in flight" + self.log_tail(w))
        threads[1].start()

        def seen():
            for x in status(w)["fetches"]:
                if x["digest"] == dg and x["clients"] == 2 and 0 < x["bytes"] < size:
                    return x
            return None
        x = wait_for(seen, 10)
        m = parse_metrics(scrape(w)[0])
        for t in threads:
            t.join(60)
        self.assertTrue(x, "the fetch was not seen with its 2 clients mid-way" +
                        self.log_tail(w))
        self.assertEqual(set(x), FETCH_KEYS)
        self.assertEqual((x["repo"], x["total"]), ("slow/library/mid", size))
        self.assertLessEqual(abs(x["started_ms"] / 1000.0 - t0), 5)
        self.assertGreater(x["rate_bps"], 0)
        self.assertLess(x["rate_bps"], 4 * rate)
        self.assertEqual(val(m, "wharf_cache_fetches_in_flight", kind="blob"), 1)
        self.assertEqual(val(m, "wharf_cache_fetch_clients", kind="blob"), 2)
        self.assertEqual(results, [(200, size), (200, size)])
        self.assertTrue(wait_for(lambda: status(w)["fetches"] == [], 10))
        # Both clients were fed by the tee; the upstream sent the bytes once.
        m = parse_metrics(scrape(w)[0])
        self.assertEqual(val(m, "wharf_cache_misses_total", kind="blob"), 2)
        self.assertEqual(val(m, "wharf_upstream_fetched_bytes_total"), size)
        self.assertEqual(val(m, "wharf_cache_tee_bytes_total"), 2 * size)
        self.assertEqual(f.stats()["counters"].get("fault_throttle"), 1)


class AccessTest(Base):

    @classmethod
    def setUpClass(cls):
        if not (have("htpasswd") and have("openssl")):
            raise unittest.SkipTest("htpasswd (apache2-utils) or openssl is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="wharf-metrics-auth-")
        cls.htpasswd = os.path.join(cls.tmp, "htpasswd")
        write_htpasswd(cls.htpasswd, [("prom", "prom-pw", "bcrypt"),
                                      ("alice", "alice-pw", "sha512")])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def config(self, access=None):
        cfg = {"http": {"auth": {"htpasswd": {"path": self.htpasswd}}},
               "extensions": {"metrics": {}}}
        if access is not None:
            cfg["http"]["accessControl"] = access
        return cfg

    def codes(self, w, path):
        out = []
        for h in ({}, {"Authorization": basic("alice", "alice-pw")},
                  {"Authorization": basic("prom", "prom-pw")}):
            st, _, body = request(w, "GET", path, h)
            out.append(st)
            if st in (401, 403):
                # Zot's shapes: a 403 DENIED list; a 401 UNAUTHORIZED, bare
                # from authentication, a list from authorization.
                doc = json.loads(body)
                codes = [e["code"] for e in doc["errors"]] if "errors" in doc else [doc["code"]]
                self.assertEqual(codes, ["DENIED" if st == 403 else "UNAUTHORIZED"])
        return out

    def test_metrics_users(self):
        w = self.wharf(self.config({
            "repositories": {"**": {"defaultPolicy": ["read"]}},
            "metrics": {"users": ["prom"]}}))
        # anonymous, alice (not listed), prom
        self.assertEqual(self.codes(w, "/metrics"), [401, 403, 200])
        self.assertEqual(self.codes(w, "/v2/_wharf/status"), [401, 403, 200])
        st, _, _ = request(w, "GET", "/v2/", {"Authorization": basic("alice", "alice-pw")})
        self.assertEqual(st, 200)
        m = parse_metrics(scrape(w, headers={"Authorization": basic("prom", "prom-pw")})[0])
        self.assertEqual(val(m, "wharf_auth_failures_total", reason="denied"), 2)
        self.assertEqual(val(m, "wharf_auth_failures_total", reason="no_credentials"), 2)
        self.assertEqual(val(m, "wharf_auth_failures_total", reason="bad_credentials"), 0)

    def test_metrics_anonymous_policy(self):
        # Anonymous requests get past authentication (a repository lets them
        # read), and accessControl.metrics lets them read the metrics.
        w = self.wharf(self.config({
            "repositories": {"**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]}},
            "metrics": {"users": ["prom"], "anonymousPolicy": ["read"]}}))
        self.assertEqual(self.codes(w, "/metrics"), [200, 403, 200])
        # Without read in it, anonymous is refused as Zot refuses it: 401.
        w2 = self.wharf(self.config({
            "repositories": {"**": {"anonymousPolicy": ["read"], "defaultPolicy": ["read"]}},
            "metrics": {"users": []}}))
        self.assertEqual(self.codes(w2, "/metrics"), [401, 403, 403])
        self.assertTrue(any("no users in http.accessControl.metrics.users" in
                            r.get("message", "") for r in w2.log_records()))

    def test_without_metrics_access_control(self):
        # accessControl without a metrics object: nobody scrapes, as Zot
        # (the metrics name repositories); without accessControl at all,
        # what /v2/ needs.
        w = self.wharf(self.config({"repositories": {"**": {"defaultPolicy": ["read"]}}}))
        self.assertEqual(self.codes(w, "/metrics"), [401, 403, 403])
        self.assertEqual(self.codes(w, "/v2/_wharf/status"), [401, 403, 403])
        w2 = self.wharf(self.config())
        self.assertEqual(self.codes(w2, "/metrics"), [401, 200, 200])
        st, _, body = request(w2, "GET", "/metrics", {"Authorization": basic("alice", "no")})
        self.assertEqual(st, 401, body)
        m = parse_metrics(scrape(w2, headers={"Authorization": basic("alice", "alice-pw")})[0])
        self.assertEqual(val(m, "wharf_auth_failures_total", reason="bad_credentials"), 1)


class ConfigTest(Base):

    def test_path_enable_methods(self):
        w = self.wharf({"extensions": {"metrics": {"prometheus": {"path": "/prom"}}}})
        self.assertEqual(request(w, "GET", "/prom")[0], 200)
        self.assertEqual(request(w, "GET", "/metrics")[0], 404)
        st, h, body = request(w, "HEAD", "/prom")
        self.assertEqual((st, body), (200, b""))
        self.assertGreater(int(h["content-length"]), 0)
        self.assertEqual(request(w, "POST", "/prom", body=b"")[0], 405)
        self.assertEqual(request(w, "DELETE", "/v2/_wharf/status")[0], 405)
        self.assertEqual([r for r in w.log_records() if "not implemented" in
                          r.get("message", "")], [], "a config warning" + self.log_tail(w))
        # Not counted: the metrics path; counted: the rest, the 405s too.
        m = parse_metrics(scrape(w, "/prom")[0])
        self.assertEqual(val(m, "zot_http_requests_total", method="GET", code="404"), 1)
        self.assertEqual(val(m, "zot_http_requests_total", method="GET", code="200"), 0)
        self.assertEqual(val(m, "zot_http_requests_total", method="DELETE", code="405"), 1)
        self.assertEqual(val(m, "zot_http_requests_total", method="HEAD", code="200"), 0)

        # enable false: no metrics path; the status page stays.
        w2 = self.wharf({"extensions": {"metrics": {"enable": False}}})
        self.assertEqual(request(w2, "GET", "/metrics")[0], 404)
        doc = status(w2)
        self.assertEqual(set(doc), STATUS_KEYS)
        self.assertEqual((doc["upstreams"], doc["fetches"]), ([], []))
        self.assertEqual(doc["cache"]["usage_bytes"], -1)  # gc off: never counted


class TlsTest(Base):

    def test_handshakes_by_result(self):
        if not have("openssl"):
            self.skipTest("openssl is not installed")
        pki = up.make_pki(self.tmpdir("pki"))
        w = self.wharf({"http": {"tls": {"cert": pki.server_crt, "key": pki.server_key}},
                        "extensions": {"metrics": {}}})
        ctx = ssl.create_default_context(cafile=pki.ca_crt)

        scrapes = []

        def scrape_tls():
            c = http.client.HTTPSConnection("127.0.0.1", w.port, timeout=30, context=ctx)
            try:
                c.request("GET", "/metrics")
                r = c.getresponse()
                self.assertEqual(r.status, 200)
                scrapes.append(1)
                return parse_metrics(r.read().decode())
            finally:
                c.close()

        def result(m, r):
            return val(m, "wharf_tls_handshakes_total", result=r)

        m0 = scrape_tls()
        del scrapes[:]
        # Not TLS at all: a protocol failure.
        with socket.create_connection(("127.0.0.1", w.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                s.recv(100)
            except OSError:
                pass
        # A client that leaves before the end.
        socket.create_connection(("127.0.0.1", w.port), timeout=10).close()
        for _ in range(3):
            scrape_tls()

        def moved():
            m = scrape_tls()
            return m if result(m, "closed") - result(m0, "closed") >= 1 else None
        m1 = wait_for(moved, 5)
        self.assertTrue(m1, "the closed handshake was not counted" + self.log_tail(w))
        # ok: every scrape since m0, its own handshake included (done before
        # it is answered).
        self.assertEqual(result(m1, "ok") - result(m0, "ok"), len(scrapes))
        self.assertEqual(result(m1, "failed") - result(m0, "failed"), 1)
        self.assertEqual(result(m1, "refused"), 0)


if __name__ == "__main__":
    unittest.main()
