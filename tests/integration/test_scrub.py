"""Scrub (Zot's extensions.scrub and `zot scrub`): every image's manifests and
blobs are hashed again and compared with their digests.

    OfflineTest     `wharf scrub CONFIG`: a clean root is exit 0 with an `ok`
                    line per image; one byte flipped in a stored layer (in
                    place, so every hard link sees it) is exit 1 with an
                    `affected` line naming that blob; refused while a server
                    answers on the configured port; a bad config or a missing
                    root is exit 1; the rate is held (N MiB at R MiB/s take
                    at least about N/R seconds)
    BackgroundTest  a server with extensions.scrub finds the flipped byte on
                    its own thread after wharf.startDelay, answering pulls all
                    the while; SIGTERM in the middle of a sweep exits 0 at once

Images are pushed with images.push (plain HTTP, no client tool).

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_scrub
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import images
from harness import WHARF_BIN, Wharf, free_port

MIB = 1 << 20


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)


def flip_byte(path, offset=0):
    """Flip one bit of one byte in place (r+b): the file keeps its inode, so
    every hard link to it (dedupe) holds the flipped byte too."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def blob_file(root, repo, digest):
    return os.path.join(root, repo, "blobs", "sha256", digest.split(":", 1)[1])


def records(text):
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def table_rows(stdout):
    """`wharf scrub`'s table: [[repository, tag, status, affected, error]]
    under its header line."""
    lines = [l for l in stdout.splitlines() if l.strip()]
    assert lines and lines[0].split()[:3] == ["REPOSITORY", "TAG", "STATUS"], stdout
    rows = []
    for l in lines[1:]:
        parts = l.split(None, 4)
        if len(parts) >= 4 and parts[2] == "affected":
            rows.append(parts + [""] * (5 - len(parts)))
        else:
            rows.append(parts[:3] + ["", ""])
    return rows


class Base(unittest.TestCase):
    """A root filled by a server that is stopped again; scrub runs on it."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wharf-scrub-")
        self.root = os.path.join(self.tmp, "data")
        self.servers = []

    def tearDown(self):
        for w in self.servers:
            w.stop()
            w.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def server(self, config=None, start=True):
        w = Wharf(config=config, root=self.root, keep_root=True)
        self.servers.append(w)
        if start:
            w.start()
        return w

    def fill(self, *pushes):
        """pushes: (image, repo, tag); pushed to a server on the root, stopped
        afterwards."""
        w = self.server()
        for img, repo, tag in pushes:
            images.push(w.hostport, img, repo, tag)
        self.assertEqual(w.stop(), 0)
        return w

    def scrub(self, config=None, timeout=120):
        """Run `wharf scrub` with the root's config (plus config); returns
        (rc, stdout, stderr, seconds)."""
        w = Wharf(config=config, root=self.root, keep_root=True)
        self.servers.append(w)
        t0 = time.monotonic()
        p = subprocess.run([WHARF_BIN, "scrub", w.config_path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout)
        return (p.returncode, p.stdout.decode("utf-8", "replace"),
                p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)


class OfflineTest(Base):
    def test_clean_root_is_ok(self):
        single = images.single_image(os.path.join(self.tmp, "single"))
        multi = images.multi_image(os.path.join(self.tmp, "multi"))
        self.fill((single, "app", "1"), (multi, "team/multi", "multi"), (single, "copy", "c"))
        rc, out, err, _ = self.scrub()
        self.assertEqual(rc, 0, out + err)
        rows = table_rows(out)
        # app:1, copy:c, and team/multi's index with its two children (their
        # index.json entries are untagged: their digests stand for the tag).
        self.assertEqual(len(rows), 5, out)
        self.assertTrue(all(r[2] == "ok" for r in rows), out)
        self.assertIn(["app", "1", "ok", "", ""], rows)
        children = {c.digest for c in multi.children.values()}
        self.assertEqual({r[1] for r in rows if r[0] == "team/multi"}, children | {"multi"})
        recs = records(err)
        ok = [r for r in recs if r.get("message") == "blobs/manifest ok"]
        self.assertEqual(len(ok), 5, err)
        self.assertEqual(ok[0]["status"], "ok")
        self.assertEqual(ok[0]["component"], "scrub")
        self.assertIn({"image": "app", "tag": "1"},
                      [{"image": r["image"], "tag": r["tag"]} for r in ok])
        fin = [r for r in recs if r.get("message") == "scrub finished"]
        self.assertEqual(len(fin), 1)
        self.assertEqual((fin[0]["images"], fin[0]["affected"]), (5, 0))

    def test_flipped_byte_in_a_layer(self):
        img = images.single_image(os.path.join(self.tmp, "single"))
        self.fill((img, "app", "1"), (img, "other", "o"))
        layer = img.layers[1].digest
        path = blob_file(self.root, "app", layer)
        self.assertGreater(os.stat(path).st_nlink, 1)  # dedupe: shared with other/
        flip_byte(path, os.path.getsize(path) // 2)
        rc, out, err, _ = self.scrub()
        self.assertEqual(rc, 1, out + err)
        rows = table_rows(out)
        hexd = layer.split(":", 1)[1]
        self.assertIn(["app", "1", "affected", hexd, "bad blob digest"], rows)
        self.assertIn(["other", "o", "affected", hexd, "bad blob digest"], rows)
        aff = [r for r in records(err) if r.get("message") == "blobs/manifest affected"]
        self.assertEqual(len(aff), 2, err)
        for r in aff:
            self.assertEqual(r["level"], "warn")
            self.assertEqual(r["status"], "affected")
            self.assertEqual(r["affected blob"], hexd)
            self.assertEqual(r["error"], "bad blob digest")
        # Pushed content is reported, never moved.
        self.assertTrue(os.path.exists(path))
        self.assertFalse(os.path.exists(os.path.join(self.root, ".wharf", "corrupt")))

    def test_missing_layer(self):
        img = images.single_image(os.path.join(self.tmp, "single"))
        self.fill((img, "app", "1"))
        os.unlink(blob_file(self.root, "app", img.config.digest))
        rc, out, err, _ = self.scrub()
        self.assertEqual(rc, 1, out + err)
        self.assertIn(["app", "1", "affected", img.config.digest.split(":", 1)[1],
                       "blob not found"], table_rows(out))

    def test_refuses_while_a_server_runs(self):
        img = images.single_image(os.path.join(self.tmp, "single"))
        w = self.server()
        images.push(w.hostport, img, "app", "1")
        cfg = {"http": {"port": str(w.port)}}
        rc, out, err, took = self.scrub(cfg)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("server answers on 127.0.0.1:%d" % w.port, err)
        self.assertIn("stop it first", err)
        # One line on the terminal: the log is on stderr too, so Zot's line
        # is not written as well.
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertEqual(out, "")
        self.assertLess(took, 5)
        # With the log in a file, Zot's line goes there.
        log = os.path.join(self.tmp, "scrub.log")
        rc, out, err, _ = self.scrub(dict(cfg, log={"level": "info", "output": log}))
        self.assertEqual(rc, 1, out + err)
        self.assertEqual(len(err.splitlines()), 1, err)
        with open(log) as f:
            msgs = [r.get("message") for r in records(f.read())]
        self.assertIn("server is running, in order to perform the scrub command the server "
                      "should be shut down", msgs)
        self.assertNotIn("scrub started", msgs)
        # Stopped: it runs.
        self.assertEqual(w.stop(), 0)
        rc, out, err, _ = self.scrub(cfg)
        self.assertEqual(rc, 0, out + err)

    def test_bad_config_and_missing_root(self):
        bad = os.path.join(self.tmp, "bad.json")
        with open(bad, "w") as f:
            json.dump({"storage": {"rootDirectory": self.root},
                       "extensions": {"scrub": {"wharf": {"rate": "fast"}}}}, f)
        p = subprocess.run([WHARF_BIN, "scrub", bad], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"extensions.scrub.wharf.rate: invalid size", p.stderr)
        p = subprocess.run([WHARF_BIN, "scrub", os.path.join(self.tmp, "nope.json")],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        p = subprocess.run([WHARF_BIN, "scrub"], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        # A root that is not there is not a clean one.
        rc, out, err, _ = self.scrub()
        self.assertEqual(rc, 1, out + err)
        self.assertIn("rootDirectory %s" % self.root, err)
        self.assertFalse(os.path.exists(self.root))
        p = subprocess.run([WHARF_BIN, "--help"], capture_output=True, timeout=30)
        self.assertIn(b"wharf scrub CONFIG", p.stdout)

    def test_rate_is_held(self):
        size = 12 * MIB
        img = images.big_image(os.path.join(self.tmp, "big"), size, tag="big")
        self.fill((img, "big", "big"))
        rc, out, err, fast = self.scrub()
        self.assertEqual(rc, 0, out + err)
        rate = 4 * MIB
        rc, out, err, slow = self.scrub({"extensions": {"scrub": {"wharf": {"rate": "4MiB"}}}})
        self.assertEqual(rc, 0, out + err)
        fin = [r for r in records(err) if r.get("message") == "scrub finished"][0]
        self.assertGreater(fin["bytes"], size)
        want = fin["bytes"] / rate
        print("\n[scrub rate] %.1f MiB: unlimited %.2f s, at 4 MiB/s %.2f s (at least %.2f s)"
              % (fin["bytes"] / MIB, fast, slow, want))
        self.assertGreaterEqual(slow, 0.9 * want)
        self.assertLess(slow, want + 20)


class BackgroundTest(Base):
    def scrub_config(self, rate, delay="200ms"):
        return {"extensions": {"scrub": {"interval": "24h",
                                         "wharf": {"rate": rate, "startDelay": delay}}}}

    def test_finds_flipped_byte_and_keeps_serving(self):
        big = images.big_image(os.path.join(self.tmp, "big"), 8 * MIB, tag="big")
        self.fill((big, "big", "big"))
        small = big.layers[0].digest
        flip_byte(blob_file(self.root, "big", small))
        # 8 MiB at 2 MiB/s: about 4 s of sweep to pull during.
        w = self.server(self.scrub_config("2MiB"))

        def msgs():
            return [r.get("message") for r in w.log_records()]

        self.assertTrue(wait_for(lambda: "scrub started" in msgs(), 15), w.log()[-2000:])
        pulls = []
        while "scrub finished" not in msgs():
            t0 = time.monotonic()
            st, _, _ = w.request("GET", "/v2/big/manifests/big", headers={
                "Accept": images.MT_MANIFEST}, timeout=5)
            self.assertEqual(st, 200)
            st, _, body = w.request("GET", "/v2/big/blobs/" + big.config.digest, timeout=5)
            self.assertEqual(st, 200)
            self.assertEqual(images.sha256_digest(body), big.config.digest)
            pulls.append(time.monotonic() - t0)
            self.assertIsNone(w.proc.poll(), "wharf exited")
            if len(pulls) > 2000:
                self.fail("the sweep does not finish")
            time.sleep(0.05)
        recs = w.log_records()
        aff = [r for r in recs if r.get("message") == "blobs/manifest affected"]
        self.assertEqual(len(aff), 1, w.log()[-3000:])
        self.assertEqual((aff[0]["image"], aff[0]["tag"]), ("big", "big"))
        self.assertEqual(aff[0]["affected blob"], small.split(":", 1)[1])
        self.assertEqual(aff[0]["error"], "bad blob digest")
        self.assertGreaterEqual(len(pulls), 10, "too few pulls during the sweep")
        self.assertLess(max(pulls), 1.0, pulls)
        fin = [r for r in recs if r.get("message") == "scrub finished"][0]
        self.assertGreaterEqual(fin["ms"], 3000)
        self.assertIn("scrub extension is enabled", [r.get("message") for r in recs])
        self.assertEqual(w.stop(), 0)

    def test_sigterm_mid_sweep(self):
        big = images.big_image(os.path.join(self.tmp, "big"), 16 * MIB, tag="big")
        self.fill((big, "big", "big"))
        w = self.server(self.scrub_config("1MiB", delay="0s"))
        self.assertTrue(wait_for(lambda: "scrub started" in
                                 [r.get("message") for r in w.log_records()], 15))
        time.sleep(0.5)
        t0 = time.monotonic()
        rc = w.stop(signal.SIGTERM, timeout=20)
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, w.log()[-3000:])
        self.assertLess(took, 5)
        msgs = [r.get("message") for r in w.log_records()]
        self.assertIn("scrub stopped", msgs)
        self.assertNotIn("scrub finished", msgs)

    def test_disabled_and_interval_notice(self):
        w = self.server({"extensions": {"scrub": {"enable": False}}})
        self.assertEqual(w.stop(), 0)
        self.assertNotIn("scrub extension is enabled", w.log())
        w = self.server({"extensions": {"scrub": {"interval": "1h",
                                                  "wharf": {"startDelay": "1h"}}}})
        self.assertEqual(w.stop(), 0)
        recs = w.log_records()
        notes = [r for r in recs if r.get("message") == "config warning"]
        self.assertTrue(any("extensions.scrub.interval" in r.get("detail", "") for r in notes),
                        w.log())
        on = [r for r in recs if r.get("message") == "scrub extension is enabled"]
        self.assertEqual(on[0]["intervalMs"], 2 * 3600 * 1000)
        self.assertEqual(on[0]["rate"], 64 * MIB)
        self.assertNotIn("extensions.scrub",
                         [r.get("key") for r in recs
                          if r.get("message", "").startswith("config key accepted")])


if __name__ == "__main__":
    unittest.main()
