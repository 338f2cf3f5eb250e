"""Peer fill (extensions.sync.wharf.peers): the nodes of a tier ask each other,
with Cache-Control: only-if-cached, before the upstream.

    clients (http.client)
        -> wharf A, wharf B (each lists both: itself too, which is harmless)
            -> fakes/faults.py in front of each peer where a test breaks one
            -> fakes/faults.py (counts what the upstream sends)
                -> docker-registry (Distribution 2.8), seeded by test_cache

The classes:
    OnlyIfCachedTest  what a node answers a peer: the store, or 504 at once,
                      never a fetch
    PeerFillTest      a miss filled from a peer (0 upstream body bytes, the
                      same digests), a miss no peer holds (the upstream once),
                      a dead peer (the upstream, promptly)
    PeerFaultTest     a peer that cuts a blob (the rest from the upstream by
                      Range), sends wrong bytes (the client is cut, the retry
                      goes to the upstream) or a wrong manifest (the next source)

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_peers
"""

import json
import os
import subprocess
import time
import unittest

import test_cache
import upstream as up
from harness import WHARF_BIN, Wharf, free_port
from test_auth import write_htpasswd
from test_cache import CacheBase, codes
from test_pull_through import (MANIFEST_ACCEPT, PROMPT_S, fetch, get_blob, get_manifest,
                               mid_blob)

setUpModule = test_cache.setUpModule
tearDownModule = test_cache.tearDownModule

ONLY_IF_CACHED = {"Cache-Control": "only-if-cached"}


def manifest_oic(w, repo, ref):
    return fetch(w.port, "/v2/%s/manifests/%s" % (repo, ref),
                 headers=dict(ONLY_IF_CACHED, Accept=MANIFEST_ACCEPT))


def metric(w, name):
    r = fetch(w.port, "/metrics")
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


class PeerBase(CacheBase):

    def tier(self, upstream_url, n=2, peer_urls=None):
        """n nodes syncing upstream_url under /f, each listing every node's
        URL (or peer_urls(i, ports)) as its peers."""
        ports = [free_port() for _ in range(n)]
        nodes = []
        for i, port in enumerate(ports):
            peers = (peer_urls(i, ports) if peer_urls else
                     ["http://127.0.0.1:%d" % p for p in ports])
            cfg = up.sync_config(upstream_url, destination="/f", maxRetries=1,
                                 retryDelay="100ms")
            cfg["extensions"]["sync"]["wharf"] = {"peers": peers}
            cfg["extensions"]["metrics"] = {"enable": True}
            w = Wharf(cfg, port=port)
            self.addCleanup(self._finish, w)
            nodes.append(w.start())
        return nodes

    def pull(self, w, repo, ref, upimg):
        """The whole image through w, every digest checked."""
        self.assert_image_via_api(w, repo, ref, upimg)


class OnlyIfCachedTest(PeerBase):
    """A request with only-if-cached is answered from the store or with 504,
    and never starts a fetch."""

    def test_miss_is_504_without_a_fetch(self):
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        upimg = self.ups["library/mid:latest"]
        for method in ("GET", "HEAD"):
            r = fetch(w.port, "/v2/f/%s/blobs/%s" % (repo, dg), method=method,
                      headers=ONLY_IF_CACHED)
            self.assertEqual(r.status, 504, "%s %r" % (method, r))
            r = fetch(w.port, "/v2/f/%s/manifests/%s" % (repo, upimg.digest), method=method,
                      headers=ONLY_IF_CACHED)
            self.assertEqual(r.status, 504, "%s %r" % (method, r))
        r = fetch(w.port, "/v2/f/%s/manifests/latest" % repo, headers=ONLY_IF_CACHED)
        self.assertEqual((r.status, codes(r)), (504, ["UNKNOWN"]), r)
        # Among other directives, in any case.
        r = fetch(w.port, "/v2/f/%s/blobs/%s" % (repo, dg),
                  headers={"Cache-Control": "no-transform,  ONLY-IF-CACHED "})
        self.assertEqual(r.status, 504, r)
        time.sleep(0.3)
        self.assertEqual(f.stats()["requests"], 0, "only-if-cached reached the upstream")

    def test_hit_is_served(self):
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        upimg = self.ups["library/mid:latest"]
        self.pull(w, "f/" + repo, "latest", upimg)
        f.reset()
        r = fetch(w.port, "/v2/f/%s/blobs/%s" % (repo, dg), headers=ONLY_IF_CACHED)
        self.assertEqual((r.status, r.length, r.sha), (200, size, dg))
        r = manifest_oic(w, "f/" + repo, upimg.digest)
        self.assertEqual((r.status, r.sha), (200, upimg.digest))
        # A cached tag is answered as it is, however old: peers ask by digest.
        r = manifest_oic(w, "f/" + repo, "latest")
        self.assertEqual((r.status, r.sha), (200, upimg.digest))
        self.assertEqual(f.stats()["requests"], 0)

    def test_without_the_directive_a_miss_fetches(self):
        """The control: the same request without only-if-cached fills."""
        f = self.faults()
        w = self.fwharf(f)
        repo, dg, size = mid_blob()
        r = fetch(w.port, "/v2/f/%s/blobs/%s" % (repo, dg), headers={"Cache-Control": "no-cache"})
        self.assertEqual((r.status, r.sha), (200, dg))
        self.assertEqual(f.stats()["blob_gets"].get(dg), 1)


class PeerFillTest(PeerBase):

    def test_miss_filled_from_a_peer(self):
        """B pulls what A holds: 0 upstream body bytes, a HEAD for the tag,
        the same digests, and B keeps it (a second pull asks nobody)."""
        f = self.faults()
        a, b = self.tier(f.url)
        for name in ("library/mid:latest", "library/multi:latest"):
            repo, tag = name.split(":")
            upimg = self.ups[name]
            f.reset()
            self.pull(a, "f/" + repo, tag, upimg)
            self.assertGreater(f.stats()["bytes"]["blob"], 0)
            f.reset()
            p0 = metric(b, "wharf_cache_peer_fetched_bytes_total")
            self.pull(b, "f/" + repo, tag, upimg)
            s = f.stats()
            self.assertEqual(s["bytes"]["blob"], 0, "B fetched blobs upstream: %r" % s["blob_gets"])
            self.assertEqual(s["manifest_gets"], {}, "B fetched manifests upstream")
            self.assertEqual(sum(s["manifest_heads"].values()), 1,
                             "the tag is asked of the upstream (a HEAD): %r" % s["manifest_heads"])
            self.assertEqual(metric(b, "wharf_cache_peer_fetched_bytes_total") - p0,
                             sum(upimg.blobs.values()))
            self.assertIn("blob filled from a peer", b.log())
            self.assertIn("manifest filled from a peer", b.log())
            f.reset()
            self.pull(b, "f/" + repo, tag, upimg)
            self.assertEqual(f.stats()["bytes"]["total"], 0)

    def test_miss_no_peer_holds_goes_upstream_once(self):
        """Neither holds it: B asks A (504) then the upstream; A, asked
        only-if-cached, fetches nothing: 1.0x upstream bytes."""
        f = self.faults()
        a, b = self.tier(f.url)
        upimg = self.ups["library/busy:latest"]
        self.pull(b, "f/library/busy", "latest", upimg)
        s = f.stats()
        self.assertEqual(s["bytes"]["blob"], sum(upimg.blobs.values()))
        for d in upimg.blobs:
            self.assertEqual(s["blob_gets"].get(d), 1, d)
        self.assertEqual(up.root_has_blob(a.root, max(upimg.blobs)), [])

    def test_dead_peer_is_passed_over(self):
        """A peer that is not there (nothing listens) costs little: the pull
        goes to the upstream and succeeds promptly, every time."""
        f = self.faults()
        dead = free_port()
        (b,) = self.tier(f.url, n=1, peer_urls=lambda i, ports: ["http://127.0.0.1:%d" % dead])
        upimg = self.ups["library/busy:latest"]
        t0 = time.monotonic()
        self.pull(b, "f/library/busy", "latest", upimg)
        self.assertLess(time.monotonic() - t0, PROMPT_S)
        self.assertEqual(f.stats()["bytes"]["blob"], sum(upimg.blobs.values()))

    def test_peers_config_is_checked(self):
        for peers, want in (
                (["ftp://x"], 'peers[0]: "ftp://x" is not an http:// or https:// URL'),
                (["http://h:1", "http://h:5000/v2"], 'peers[1]: "http://h:5000/v2" must be'),
                ("http://h:5000", None), (["http://h:5000", "https://[::1]:5001"], None)):
            cfg = up.sync_config("http://127.0.0.1:1", destination="/f")
            cfg["extensions"]["sync"]["wharf"] = {"peers": peers}
            w = Wharf(cfg)
            self.addCleanup(w.cleanup)
            r = subprocess.run([WHARF_BIN, "verify", w.config_path], capture_output=True,
                               text=True, timeout=30)
            if want is None:
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            else:
                self.assertNotEqual(r.returncode, 0)
                self.assertIn("extensions.sync.wharf." + want, r.stdout + r.stderr)


class PeerFaultTest(PeerBase):
    """A peer is as hostile as any upstream: what it sends is checked."""

    def faulty_tier(self, f):
        """A and B; B reaches A through fault proxy p (B's peers: p only)."""
        pa, pb = free_port(), free_port()
        # A first, so that the proxy in front of it has something to relay.
        a = self.node(f.url, pa, ["http://127.0.0.1:%d" % pb])
        p = up.FaultProxy(a.url).start()
        self.addCleanup(p.cleanup)
        self.addCleanup(p.stop)
        b = self.node(f.url, pb, [p.url])
        return a, b, p

    def node(self, upstream_url, port, peers, extra=None):
        cfg = up.sync_config(upstream_url, destination="/f", maxRetries=1, retryDelay="100ms")
        cfg["extensions"]["sync"]["wharf"] = {"peers": peers}
        cfg.update(extra or {})
        w = Wharf(cfg, port=port)
        self.addCleanup(self._finish, w)
        return w.start()

    def mid_held_by_a(self, f):
        """faulty_tier, with the 4 MiB image pulled through A and its tag
        through B; f's counters reset. Returns (a, b, p, repo, digest, size)."""
        a, b, p = self.faulty_tier(f)
        repo, dg, size = mid_blob()
        self.pull(a, "f/" + repo, "latest", self.ups["library/mid:latest"])
        self.assertEqual(get_manifest(b, "f/" + repo, "latest").status, 200)
        f.reset()
        return a, b, p, repo, dg, size

    def test_peer_cuts_the_blob_rest_from_upstream(self):
        f = self.faults()
        a, b, p, repo, dg, size = self.mid_held_by_a(f)
        p.set("cut", path_contains=dg, after_bytes=size // 2, count=1)
        r = get_blob(b, "f/" + repo, dg, timeout=30)
        self.assertEqual((r.status, r.error, r.length, r.sha), (200, None, size, dg),
                         "%r%s" % (r, self.log_tail(b)))
        s = f.stats()
        self.assertEqual(s["blob_gets"].get(dg), 1, "the rest is asked of the upstream")
        self.assertLess(s["bytes"]["blob"], size, "only the rest, by Range")
        self.assertIn("blob fetch cut, resuming", b.log())

    def test_peer_sends_wrong_bytes_client_cut_retry_upstream(self):
        f = self.faults()
        a, b, p, repo, dg, size = self.mid_held_by_a(f)
        p.set("flip", path_contains=dg, after_bytes=size // 3)
        r = get_blob(b, "f/" + repo, dg, timeout=30)
        self.assertFalse(r.complete(), "a wrong body looked complete: %r" % r)
        self.assertIn("fetched blob does not match its digest", b.log())
        self.assertEqual(up.root_has_blob(b.root, dg), [])
        # The retry does not ask the peer that lied: the upstream's bytes.
        hits = p.stats()["counters"].get("faults_applied")
        r = get_blob(b, "f/" + repo, dg, timeout=30)
        self.assertEqual((r.status, r.error, r.sha), (200, None, dg), r)
        self.assertEqual(f.stats()["blob_gets"].get(dg), 1)
        self.assertEqual(p.stats()["counters"].get("faults_applied"), hits)

    def test_peer_refusing_us_is_passed_over(self):
        """A peer that wants a login we do not have (its Basic challenge, no
        credentialsFile entry) is one more peer without the image: the
        upstream is asked and the pull succeeds (not a 502 about our
        credentials, which are the upstream's business only)."""
        f = self.faults()
        htp = os.path.join(self.tmpdir("htp"), "htpasswd")
        write_htpasswd(htp, [("tier", "secret", "bcrypt")])
        pa, pb = free_port(), free_port()
        a = self.node(f.url, pa, [], extra={"http": {"auth": {"htpasswd": {"path": htp}}}})
        b = self.node(f.url, pb, ["http://127.0.0.1:%d" % pa])
        upimg = self.ups["library/busy:latest"]
        self.pull(b, "f/library/busy", "latest", upimg)
        self.assertEqual(f.stats()["bytes"]["blob"], sum(upimg.blobs.values()))
        self.assertEqual(fetch(a.port, "/v2/").status, 401, "the peer must ask for a login")

    def test_peer_refusal_is_not_told_as_the_upstreams(self):
        """A peer wants a login we lack, then the upstream cannot be reached:
        the client hears that the upstream is unavailable, not that our
        credentials are missing (that was the peer's 401, and no matter)."""
        htp = os.path.join(self.tmpdir("htp"), "htpasswd")
        write_htpasswd(htp, [("tier", "secret", "bcrypt")])
        pa, pb = free_port(), free_port()
        dead = "http://127.0.0.1:%d" % free_port()
        a = self.node(dead, pa, [], extra={"http": {"auth": {"htpasswd": {"path": htp}}}})
        b = self.node(dead, pb, [a.url])
        repo, dg, size = mid_blob()
        upimg = self.ups["library/mid:latest"]
        for path in ("/v2/f/%s/manifests/%s" % (repo, upimg.digest),
                     "/v2/f/%s/blobs/%s" % (repo, dg)):
            r = fetch(b.port, path, headers={"Accept": MANIFEST_ACCEPT})
            self.assertEqual(r.status, 502, r)
            msg = " ".join(e.get("message", "") for e in json.loads(r.body)["errors"])
            self.assertIn("unavailable", msg, r)
            self.assertNotIn("credentials", msg, r)

    def test_fetch_a_peer_began_fails_retry_goes_upstream(self):
        """The peer cuts the blob, the upstream refuses the rest: the fetch
        fails (the client is cut); the client's retry is answered from the
        upstream whole, without asking that peer again."""
        f = self.faults()
        a, b, p, repo, dg, size = self.mid_held_by_a(f)
        p.set("cut", path_contains=dg, after_bytes=size // 2, count=1)
        f.set("503", path_contains=dg)
        r = get_blob(b, "f/" + repo, dg, timeout=30)
        self.assertFalse(r.complete(), r)
        f.clear()
        asked = p.stats()["blob_gets"].get(dg)
        r = get_blob(b, "f/" + repo, dg, timeout=30)
        self.assertEqual((r.status, r.error, r.sha), (200, None, dg), r)
        self.assertEqual(p.stats()["blob_gets"].get(dg), asked, "the peer was asked again")

    def test_peer_sends_wrong_manifest_next_source(self):
        """A manifest is read whole: a peer's wrong one is dropped before any
        client sees it and the upstream's is served."""
        f = self.faults()
        a, b, p = self.faulty_tier(f)
        upimg = self.ups["library/busy:latest"]
        self.pull(a, "f/library/busy", "latest", upimg)
        p.set("corrupt", path_contains="/manifests/")
        f.reset()
        r = get_manifest(b, "f/library/busy", "latest")
        self.assertEqual((r.status, r.sha), (200, upimg.digest), r)
        self.assertGreaterEqual(p.stats()["counters"].get("faults_applied", 0), 1)
        self.assertEqual(sum(f.stats()["manifest_gets"].values()), 1)
        self.assertIn("a peer sent a manifest that cannot be used", b.log())


if __name__ == "__main__":
    unittest.main()
