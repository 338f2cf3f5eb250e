"""A sick upstream must not make a pull wait: the upstream that accepts
connections and never answers (what Docker Hub often does from the networks
our users are on), and the one that is down and comes back.

    - a cached tag past its freshness window is answered from the cache at
      once, every time (stale while revalidate);
    - an uncached image fails with the spec's JSON error within the
      responseHeaderTimeout (4 s by default), not after curl's stall limit
      times the retries (it used to take 121 s);
    - the upstream is then down: later requests fail at once, a probe goes in
      the background, and the log says "down" once and "answering again" once.

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 -m unittest -v test_sick_upstream
"""

import json
import socket
import time
import unittest

import upstream as up
from harness import Wharf
from test_hardening import HostileUpstream, manifest_for, sha, wait_for


class BlackHole:
    """Accepts connections (the kernel does, from the backlog) and never
    answers a byte."""

    def __init__(self, port=0):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind(("127.0.0.1", port))
        self.s.listen(128)
        self.port = self.s.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.s.close()


def records(w, message):
    return [r for r in w.log_records() if r.get("message") == message]


class SickUpstreamTest(unittest.TestCase):
    def setUp(self):
        self.w = None
        self.hole = None
        self.up = None

    def tearDown(self):
        if self.w:
            self.w.stop()
            self.w.cleanup()
        if self.hole:
            self.hole.stop()
        if self.up:
            self.up.stop()

    def start_wharf(self, url, **kw):
        cfg = up.sync_config(url, manifest_check_interval="1s", **kw)
        self.w = Wharf(cfg).start()
        return self.w

    def test_upstream_that_never_answers(self):
        # A healthy upstream first, to cache a tag; then Wharf starts again on
        # the same root with a black hole for its upstream.
        self.up = HostileUpstream().start()
        good = manifest_for(b"{}", [b"layer"])
        self.up.manifest("app", "v1", good)
        w = self.start_wharf(self.up.url)
        st, _, body = w.request("GET", "/v2/dockerhub/app/manifests/v1")
        self.assertEqual((st, body), (200, good))
        root = w.root
        first = w
        w.stop()
        self.up.stop()
        self.up = None
        self.hole = BlackHole()
        port = self.hole.port
        cfg = up.sync_config(self.hole.url, manifest_check_interval="1s")
        cfg["storage"] = {"rootDirectory": root}
        self.addCleanup(first.cleanup)  # after tearDown has stopped the second
        self.w = w = Wharf(cfg).start()

        # Cached, past its window: answered from the cache at once, every time.
        for i in range(5):
            t0 = time.monotonic()
            st, _, body = w.request("GET", "/v2/dockerhub/app/manifests/v1", timeout=10)
            took = time.monotonic() - t0
            self.assertEqual((st, body), (200, good), i)
            self.assertLess(took, 1.0, "a cached tag waited %.1f s on the upstream" % took)

        # Not cached: the JSON error within the header deadline (4 s).
        t0 = time.monotonic()
        st, _, body = w.request("GET", "/v2/dockerhub/other/manifests/v1", timeout=30)
        took = time.monotonic() - t0
        self.assertEqual(st, 502, body)
        self.assertEqual(json.loads(body)["errors"][0]["code"], "UNKNOWN")
        self.assertLess(took, 5.0, "an uncached image took %.1f s to fail" % took)
        print("\n[sick upstream] uncached image failed in %.2f s" % took)

        # Down now: the next ones fail at once.
        for i in range(3):
            t0 = time.monotonic()
            st, _, body = w.request("GET", "/v2/dockerhub/third/manifests/v%d" % i)
            self.assertEqual(st, 502, body)
            self.assertLess(time.monotonic() - t0, 1.0)
            st, _, body = w.request("GET", "/v2/dockerhub/x/blobs/" + sha(b"%d" % i))
            self.assertEqual(st, 502, body)
        self.assertEqual(len(records(w, "upstream is down: clients are not sent there until "
                                        "it answers again")), 1, w.log()[-3000:])

        # It comes back: a probe notices (within its back-off), once.
        self.hole.stop()
        self.hole = None
        self.up = HostileUpstream(port).start()
        fresh = manifest_for(b"{}", [b"layer2"])
        self.up.manifest("other", "v1", fresh)

        def pulled():
            st, _, body = w.request("GET", "/v2/dockerhub/other/manifests/v1")
            return st == 200 and body == fresh
        self.assertTrue(wait_for(pulled, 15.0, step=0.5), w.log()[-3000:])
        self.assertEqual(len(records(w, "upstream is answering again")), 1, w.log()[-3000:])
        self.assertEqual(self.up.hits_for("/v2/"), 1, "one probe")

    def test_fallback_url_is_used_while_the_primary_is_down(self):
        self.hole = BlackHole()
        self.up = HostileUpstream().start()
        good = manifest_for(b"{}", [b"fallback"])
        self.up.manifest("app", "v1", good)
        w = self.start_wharf([self.hole.url, self.up.url])
        t0 = time.monotonic()
        st, _, body = w.request("GET", "/v2/dockerhub/app/manifests/v1", timeout=30)
        self.assertEqual((st, body), (200, good))
        self.assertLess(time.monotonic() - t0, 5.0)
        # The primary is down: the next pull goes straight to the fallback.
        self.up.manifest("app", "v2", good)
        t0 = time.monotonic()
        st, _, body = w.request("GET", "/v2/dockerhub/app/manifests/v2", timeout=30)
        self.assertEqual((st, body), (200, good))
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_upstream_that_sends_headers_then_stalls(self):
        # The head of the answer arrives, the body never does: a small answer
        # (a manifest) gets as long as the headers did, not curl's 30 s.
        self.up = HostileUpstream().start()

        def stall(h):
            h.send_response(200)
            h.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            h.send_header("Content-Length", "1000")
            h.end_headers()
            h.wfile.flush()
            time.sleep(30)
        self.up.routes["/v2/app/manifests/v1"] = stall
        w = self.start_wharf(self.up.url)
        t0 = time.monotonic()
        st, _, body = w.request("GET", "/v2/dockerhub/app/manifests/v1", timeout=30)
        took = time.monotonic() - t0
        self.assertEqual(st, 502, body)
        self.assertEqual(json.loads(body)["errors"][0]["code"], "UNKNOWN")
        self.assertLess(took, 10.0, "a stalled manifest held the client %.1f s" % took)
        print("\n[sick upstream] a stalled manifest body failed in %.2f s" % took)

    def test_not_found_upstream_is_logged_once_per_window(self):
        self.up = HostileUpstream().start()
        w = self.start_wharf(self.up.url)
        for _ in range(5):
            st, _, _ = w.request("GET", "/v2/dockerhub/nope/manifests/v1")
            self.assertEqual(st, 404)
        recs = wait_for(lambda: records(w, "image not found upstream"), 3.0)
        self.assertEqual(len(recs), 1, w.log()[-2000:])
        self.assertEqual(recs[0].get("remote"), "nope")
        self.assertEqual(recs[0].get("level"), "info")

    def test_response_header_timeout_is_honoured(self):
        self.hole = BlackHole()
        w = self.start_wharf(self.hole.url, responseHeaderTimeout="1s")
        t0 = time.monotonic()
        st, _, body = w.request("GET", "/v2/dockerhub/app/manifests/v1", timeout=30)
        took = time.monotonic() - t0
        self.assertEqual(st, 502, body)
        self.assertLess(took, 2.5)
        self.assertGreaterEqual(took, 0.9)


if __name__ == "__main__":
    unittest.main()
