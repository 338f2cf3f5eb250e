"""What Wharf accepts from a hostile upstream: where a redirect may lead, how
much of a body that never ends it reads, what it makes of an absurd token
lifetime. The upstream is fakes/hostile.py on 127.0.0.1 (one blob, one
manifest, misbehaving as each test configures it); each test runs its own
upstream and its own Wharf, both stopped by pid.

    RedirectTest   blob redirects to link-local, private, unspecified addresses
                   refused (unless allowPrivateRedirects), to another loopback
                   port followed; manifest and HEAD redirects never followed;
                   Authorization only to the same origin
    BoundsTest     an error body that never ends, an endless manifest, a
                   Content-Length over the cap: answers come in bounded time
    TokenTest      expires_in 1e300, -5, "abc", 1e19, ...: the pull works

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 -m unittest -v test_hostile_upstream
"""

import hashlib
import http.client
import json
import os
import threading
import time
import unittest

import upstream as up
from harness import WHARF_BIN, Wharf, free_port, merge

REFUSAL = "refusing an upstream redirect to a private address"

# Upper bound for an answer that must come "at once" (well under curl's stall
# limit of 30 s, and under the 60 s deadline); generous for the sanitizer build.
PROMPT_S = 10.0


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)


class HostileFake(up.Fake):
    """fakes/hostile.py: registry API on .port, another listener on .other_port."""

    script = "hostile.py"

    def __init__(self):
        self.other_port = free_port()
        port = free_port()
        super().__init__(["--port", port, "--other-port", self.other_port],
                         [port, self.other_port])

    def configure(self, **cfg):
        return self._call("POST", "/_config", cfg)

    def content(self):
        return self._call("GET", "/_content")

    def events(self, server=None, kind=None, method=None):
        return [e for e in self.stats()["events"]
                if (server is None or e["server"] == server) and
                (kind is None or e["kind"] == kind) and
                (method is None or e["method"] == method)]


class Resp:
    def __init__(self, status=None, headers=None, body=b"", error=None, elapsed=0.0):
        self.status, self.headers, self.body = status, headers or {}, body
        self.error, self.elapsed = error, elapsed
        self.sha = "sha256:" + hashlib.sha256(body).hexdigest()

    def __repr__(self):
        return "Resp(%s, %d bytes, error=%s, %.1fs, body=%r)" % (
            self.status, len(self.body), self.error, self.elapsed, self.body[:200])


def fetch(port, path, method="GET", timeout=30):
    """One request on a fresh connection; transport errors land in .error."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, headers={"Accept": up.MANIFEST_ACCEPT})
        r = c.getresponse()
        body = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, body,
                    elapsed=time.monotonic() - t0)
    except (http.client.HTTPException, OSError) as e:
        return Resp(error=e.__class__.__name__, elapsed=time.monotonic() - t0)
    finally:
        c.close()


def oci_error(resp):
    """The spec's error document, or None."""
    try:
        j = json.loads(resp.body)
    except ValueError:
        return None
    errs = j.get("errors") if isinstance(j, dict) else None
    if not isinstance(errs, list) or not errs or not all("code" in e for e in errs):
        return None
    return errs


class Base(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.up = HostileFake().start()
        self.addCleanup(self._stop_fake, self.up)
        c = self.up.content()
        self.blob, self.blob_size = c["blob"], c["blob_size"]
        self.manifest = c["manifest"]

    def _stop_fake(self, f):
        f.stop()
        f.cleanup()

    def wharf(self, wharf_sync=None, **sync_kw):
        """A Wharf syncing the hostile upstream on demand under /up."""
        cfg = up.sync_config(self.up.url, destination="/up", **sync_kw)
        if wharf_sync:
            merge(cfg, {"extensions": {"sync": {"wharf": wharf_sync}}})
        w = Wharf(cfg)
        self.addCleanup(self._finish, w)
        w.start()
        return w

    def _finish(self, w):
        rc = w.stop()
        log = w.log()
        w.cleanup()
        # The sanitizer build aborts on the first report; say so here.
        self.assertNotIn("runtime error:", log)
        self.assertNotIn("ERROR: AddressSanitizer", log)
        self.assertEqual(rc, 0, "wharf exited with %r" % rc)

    def log_tail(self, w, n=3000):
        return "\n--- wharf log (tail) ---\n" + w.log()[-n:]

    def get_blob(self, w, repo="up/app", method="GET", timeout=30):
        return fetch(w.port, "/v2/%s/blobs/%s" % (repo, self.blob), method, timeout)

    def get_manifest(self, w, ref="latest", repo="up/app", timeout=30):
        return fetch(w.port, "/v2/%s/manifests/%s" % (repo, ref), timeout=timeout)

    def assert_blob_served(self, w, r):
        self.assertEqual(r.status, 200, "%r%s" % (r, self.log_tail(w)))
        self.assertEqual((len(r.body), r.sha), (self.blob_size, self.blob))

    def assert_upstream_error(self, w, r, status=502):
        self.assertEqual(r.status, status, "%r%s" % (r, self.log_tail(w)))
        self.assertIsNotNone(oci_error(r), "not the spec's error document: %r" % r)

    def refusals(self, w):
        return [rec for rec in w.log_records() if rec.get("message") == REFUSAL]


# ================================================================ redirects

class RedirectTest(Base):

    def _refused(self, location, address):
        """A blob GET redirected to location: refused before connecting, the
        client gets a 502 error document at once, nothing is stored (fixed
        upstream: fetched again and served)."""
        self.up.configure(blob="redirect", blob_location=location)
        w = self.wharf()
        r = self.get_blob(w)
        self.assert_upstream_error(w, r)
        self.assertLess(r.elapsed, PROMPT_S)
        recs = self.refusals(w)
        self.assertTrue(recs, "no %r in the log%s" % (REFUSAL, self.log_tail(w)))
        self.assertIn(address, json.dumps(recs[0]))
        # Refused is final: no retry hammering the upstream.
        self.assertEqual(len(self.up.events("registry", "blob", "GET")), 1)
        self.assertEqual(self.up.events("other"), [])
        self.up.configure(blob="serve")
        self.assert_blob_served(w, self.get_blob(w))
        self.assertEqual(len(self.up.events("registry", "blob", "GET")), 2)
        return w

    def test_blob_redirect_to_link_local_is_refused(self):
        self._refused("http://169.254.169.254/latest/meta-data/", "169.254.169.254")

    def test_blob_redirect_to_private_address_is_refused(self):
        self._refused("http://10.1.2.3/blob", "10.1.2.3")

    def test_blob_redirect_to_unspecified_address_is_refused(self):
        # Linux connects 0.0.0.0 to the host itself: here the other port would
        # answer with the blob, were the redirect followed.
        self._refused("http://0.0.0.0:%d/blob" % self.up.other_port, "0.0.0.0")

    def test_blob_redirects_that_lead_nowhere_are_the_answer(self):
        """A redirect to another scheme, or one too many: a 502 at once,
        without asking the upstream again."""
        for i, loc in enumerate(["ftp://127.0.0.1:%d/blob" % self.up.other_port,
                                 "%s/v2/app/blobs/%s" % (self.up.url, self.blob)]):
            with self.subTest(location=loc):
                self.up.configure(blob="redirect", blob_location=loc)
                self.up.reset()
                w = self.wharf()
                r = self.get_blob(w)
                self.assert_upstream_error(w, r)
                self.assertLess(r.elapsed, PROMPT_S)
                # Once, or the original and its 5 hops to itself.
                self.assertEqual(len(self.up.events("registry", "blob", "GET")), [1, 6][i])
                self.assertEqual(self.up.events("other"), [])

    def test_blob_redirect_to_another_loopback_port_is_followed(self):
        # The upstream is on loopback: loopback is its own class, allowed.
        self.up.configure(blob="redirect",
                          blob_location="http://127.0.0.1:%d/blob" % self.up.other_port)
        w = self.wharf()
        self.assert_blob_served(w, self.get_blob(w))
        self.assertEqual(len(self.up.events("other", method="GET")), 1)
        self.assertEqual(self.refusals(w), [])

    def test_allow_private_redirects(self):
        self.up.configure(blob="redirect",
                          blob_location="http://0.0.0.0:%d/blob" % self.up.other_port)
        w = self.wharf(wharf_sync={"allowPrivateRedirects": True})
        self.assert_blob_served(w, self.get_blob(w))
        self.assertEqual(len(self.up.events("other", method="GET")), 1)
        self.assertEqual(self.refusals(w), [])

    def test_manifest_redirect_is_not_followed(self):
        self.up.configure(manifest="redirect",
                          manifest_location="http://127.0.0.1:%d/manifest" % self.up.other_port)
        w = self.wharf()
        r = self.get_manifest(w)
        self.assert_upstream_error(w, r)
        self.assertEqual(self.up.events("other"), [], "a manifest redirect was followed")
        # Nothing stored: with the upstream fixed, the manifest is fetched again.
        self.up.configure(manifest="serve")
        r = self.get_manifest(w)
        self.assertEqual(r.status, 200, "%r%s" % (r, self.log_tail(w)))
        self.assertEqual(r.sha, self.manifest)
        self.assertEqual(len(self.up.events("registry", "manifest", "GET")), 2)

    def test_head_redirects_are_not_followed(self):
        loc = "http://127.0.0.1:%d/" % self.up.other_port
        self.up.configure(manifest_head="redirect", manifest_location=loc + "manifest",
                          blob_head="redirect", blob_location=loc + "blob")
        w = self.wharf()
        self.assert_upstream_error(w, self.get_manifest(w))
        r = self.get_blob(w, method="HEAD")  # no body: the status says it
        self.assertEqual(r.status, 502, "%r%s" % (r, self.log_tail(w)))
        self.assertEqual(self.up.events("other"), [], "a HEAD redirect was followed")

    def test_authorization_only_to_the_same_origin(self):
        self.up.configure(auth=True, blob="redirect",
                          blob_location="%s/v2/app/blobs/%s?hop=1" % (self.up.url, self.blob))
        w = self.wharf()
        self.assert_blob_served(w, self.get_blob(w))
        hops = [e for e in self.up.events("registry", "blob", "GET") if "hop=1" in e["path"]]
        self.assertEqual([e["auth"] for e in hops], ["bearer"])
        # Another port is another origin: no Authorization there.
        self.up.configure(blob_location="http://127.0.0.1:%d/blob" % self.up.other_port)
        w2 = self.wharf()
        self.assert_blob_served(w2, self.get_blob(w2))
        self.assertNotIn("auth_to_other_port", self.up.stats()["counters"])


# ================================================================ bounds

class BoundsTest(Base):

    def test_error_body_that_never_ends(self):
        """A 404 whose body trickles forever (faster than curl's stall limit):
        both clients waiting on that fetch get the 404 promptly."""
        self.up.configure(manifest="trickle404")
        w = self.wharf()
        out = [None, None]

        def client(i):
            out[i] = self.get_manifest(w, self.manifest, timeout=40)

        ts = [threading.Thread(target=client, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        for r in out:
            self.assertIsNotNone(r)
            self.assertEqual(r.status, 404, "%r%s" % (r, self.log_tail(w)))
            self.assertEqual(oci_error(r)[0]["code"], "MANIFEST_UNKNOWN")
            self.assertLess(r.elapsed, PROMPT_S)
        # One upstream fetch for both (single flight), cut after some 64 KiB.
        self.assertEqual(len(self.up.events("registry", "manifest", "GET")), 1)

    def test_endless_manifest_is_cut_at_4MiB(self):
        self.up.configure(manifest="endless")
        w = self.wharf()
        r = self.get_manifest(w, self.manifest)
        self.assert_upstream_error(w, r)
        self.assertLess(r.elapsed, PROMPT_S)
        # Nothing stored: fetched again once the upstream behaves.
        self.up.configure(manifest="serve")
        r = self.get_manifest(w, self.manifest)
        self.assertEqual((r.status, r.sha), (200, self.manifest), "%r" % r)
        self.assertEqual(len(self.up.events("registry", "manifest", "GET")), 2)

    def test_content_length_over_the_cap_fails_at_once(self):
        """200 with Content-Length 1 GiB for a manifest, then no byte: refused
        on the header, not after curl's stall limit."""
        self.up.configure(manifest="huge_length")
        w = self.wharf()
        r = self.get_manifest(w, self.manifest)
        self.assert_upstream_error(w, r)
        self.assertLess(r.elapsed, PROMPT_S)


# ================================================================ tokens

class TokenTest(Base):

    def test_absurd_expires_in(self):
        """Each value under its own repository (its own token scope): the pull
        works, the token is cached (one token request for three upstream
        requests) when its lifetime is long enough to be, and the sanitizer
        build does not abort (checked when Wharf stops)."""
        self.up.configure(auth=True)
        w = self.wharf()
        values = [("1e300", True), ("-5", True), ('"abc"', True), ("1e19", True),
                  ("1e999", True), ("-1e300", True), ("0.5", False), (None, True)]
        for i, (raw, cached) in enumerate(values):
            with self.subTest(expires_in=raw):
                self.up.configure(expires_in=raw)
                repo = "up/t%d" % i
                r = self.get_manifest(w, "latest", repo)
                self.assertEqual((r.status, r.sha), (200, self.manifest),
                                 "%r%s" % (r, self.log_tail(w)))
                self.assert_blob_served(w, self.get_blob(w, repo))
                self.assertIsNone(w.proc.poll(), "wharf died%s" % self.log_tail(w))
                if cached:
                    scope = "repository:t%d:pull" % i
                    n = self.up.stats()["tokens"]["by_scope"].get(scope)
                    self.assertEqual(n, 1, "token requests for %s" % scope)


if __name__ == "__main__":
    unittest.main()
