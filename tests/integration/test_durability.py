"""Durability: what the store promises (docs/architecture.md, "The store"):
every write is a temp file, fsynced, renamed (or hard-linked) into place, and
the directory fsynced — all before the client is told 201.

The server runs under strace (-f -y -ttt, only the syscalls that matter);
each request's window runs from just before it is sent to just after its
201 is read, and the syscalls of the window are checked for order:

    fsync(<the new file>)  <  rename/link(<it>, <final name>)  <  fsync(<final name's directory>)

for a monolithic upload, a chunked upload (POST, PATCH, PUT) and a manifest
PUT (the manifest's bytes, then index.json). strace prints a syscall when it
is made, before the answer can leave, and its timestamps (CLOCK_REALTIME)
are compared with the client's. These calls run in libuv's thread pool (-f
follows every thread; test_hardening_store checks which thread). Skipped
when strace is not installed.

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 -m unittest -v test_durability
"""

import hashlib
import json
import os
import re
import shutil
import signal
import time
import unittest

from harness import Wharf

TRACED = "fsync,fdatasync,rename,renameat,renameat2,link,linkat"

_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_FD_PATH = re.compile(r"^\d+<(.*)>\)")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def traced_calls(path):
    """[(tid, time, syscall, [paths])] of the calls that returned 0, in order
    of their start; tid is the thread's (strace -f), the process's pid for
    its first thread, the loop's. For fsync/fdatasync the path is the
    descriptor's (strace -y); for rename/link the source and the destination."""
    out = []
    pending = {}  # pid -> (time, name, args so far)
    with open(path, errors="replace") as f:
        for line in f:
            m = _LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid, t, rest = m.group(1), float(m.group(2)), m.group(3)
            r = _RESUMED.match(rest)
            if r:
                if pid not in pending:
                    continue
                t, name, args = pending.pop(pid)
                rest = "%s(%s%s" % (name, args, r.group(2))
            c = _CALL.match(rest)
            if not c:
                continue
            name, args = c.group(1), c.group(2)
            if args.endswith("<unfinished ...>"):
                pending[pid] = (t, name, args[:-len("<unfinished ...>")])
                continue
            if not re.search(r"\)\s+= 0$", args):
                continue
            if name in ("fsync", "fdatasync"):
                p = _FD_PATH.match(args)
                paths = [p.group(1)] if p else []
            else:
                paths = _QUOTED.findall(args)
            out.append((int(pid), t, name, paths))
    out.sort(key=lambda e: e[1])
    return out


def parse_strace(path):
    """traced_calls without the thread: [(time, syscall, [paths])]."""
    return [e[1:] for e in traced_calls(path)]


def children(pid):
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


def stop_traced(w):
    """SIGTERM to wharf itself (strace, started with a program, ignores
    it); strace exits with wharf's status."""
    if not w.proc:
        return None
    for pid in children(w.proc.pid):
        os.kill(pid, signal.SIGTERM)
    try:
        rc = w.proc.wait(20)
    except Exception:
        w.proc.kill()
        w.proc.wait()
        rc = None
    w.proc = None
    w.logf.close()
    return rc


@unittest.skipUnless(shutil.which("strace"), "strace not installed")
class FsyncOrderTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.w = Wharf()
        cls.trace = os.path.join(cls.w.tmp, "strace.txt")
        # LeakSanitizer cannot run under ptrace; the other tests look for leaks.
        env = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")}
        cls.w.start(timeout=30, env=env, wrapper=["strace", "-f", "-qq", "-y", "-ttt", "-e",
                                         "trace=" + TRACED, "-e", "signal=none", "-o",
                                         cls.trace])
        cls.windows = {}
        cls.events = None

    @classmethod
    def tearDownClass(cls):
        cls.stop_traced()
        cls.w.cleanup()

    @classmethod
    def stop_traced(cls):
        return stop_traced(cls.w)

    def setUp(self):
        self.repo = "dur/" + self._testMethodName[5:]

    def timed(self, method, path, body=b"", headers=None, want=201):
        """One request; returns (status, headers) and records its window."""
        t0 = time.time()
        st, h, b = self.w.request(method, path, body=body, headers=headers or {}, timeout=30)
        t1 = time.time()
        self.assertEqual(st, want, b)
        return h, (t0, t1)

    def events_in(self, window, need):
        """The traced calls made within window, once strace has written the
        ones that place `need` and fsync its directory (strace may buffer;
        the timestamps are what is judged)."""
        t0, t1 = window
        deadline = time.monotonic() + 5
        while True:
            ev = [e for e in parse_strace(self.trace) if t0 <= e[0]]
            placed = [i for i, e in enumerate(ev) if len(e[2]) == 2 and e[2][1] == need]
            if (placed and any(e[1] == "fsync" and e[2] == [os.path.dirname(need)]
                               for e in ev[placed[0]:])) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return [e for e in ev if e[0] <= t1]

    def assert_placed(self, events, final, what):
        """In events: the file renamed or linked to `final` was fsynced before
        (when renamed), and final's directory is fsynced after. Returns the
        index of the rename/link."""
        moves = [i for i, e in enumerate(events) if e[1].startswith(("rename", "link"))
                 and len(e[2]) == 2 and e[2][1] == final]
        self.assertEqual(len(moves), 1, "%s: one rename/link to %s in %s" % (what, final,
                                                                              events))
        i = moves[0]
        name, (src, _) = events[i][1], events[i][2]
        if name.startswith("rename"):
            synced = [j for j, e in enumerate(events[:i]) if e[1] in ("fsync", "fdatasync")
                      and e[2] == [src]]
            self.assertTrue(synced, "%s: %s renamed into place without an fsync before: %s"
                            % (what, src, events))
        d = os.path.dirname(final)
        after = [j for j, e in enumerate(events) if j > i and e[1] == "fsync" and e[2] == [d]]
        self.assertTrue(after, "%s: directory %s not fsynced after the %s: %s"
                        % (what, d, name, events))
        return i

    def assert_blob_durable(self, window, digest, what):
        root = self.w.root
        hexd = digest.split(":")[1]
        global_ = os.path.join(root, ".wharf", "blobs", "sha256", hexd)
        dst = os.path.join(root, self.repo, "blobs", "sha256", hexd)
        ev = self.events_in(window, dst)
        i = self.assert_placed(ev, global_, what + " (the deduplicated copy)")
        j = self.assert_placed(ev, dst, what + " (the repository's link)")
        self.assertLess(i, j)
        self.assertEqual(ev[j][2][0], global_)
        with open(dst, "rb") as f:
            self.assertEqual(sha256(f.read()), digest)
        return ev

    def test_monolithic_upload(self):
        data = os.urandom(100000)
        d = sha256(data)
        _, win = self.timed("POST", "/v2/%s/blobs/uploads/?digest=%s" % (self.repo, d), data)
        self.assert_blob_durable(win, d, "monolithic upload")

    def test_chunked_upload(self):
        data = os.urandom(150000)
        d = sha256(data)
        h, _ = self.timed("POST", "/v2/%s/blobs/uploads/" % self.repo, want=202)
        loc = h["location"]
        h, _ = self.timed("PATCH", loc, data[:100000],
                          {"Content-Range": "0-99999",
                           "Content-Type": "application/octet-stream"}, want=202)
        loc = h["location"]
        _, win = self.timed("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + d,
                            data[100000:], {"Content-Range": "100000-149999",
                                            "Content-Type": "application/octet-stream"})
        self.assert_blob_durable(win, d, "chunked upload")

    def test_manifest_put(self):
        cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
        layer = os.urandom(5000)
        for data in (cfg, layer):
            self.timed("POST", "/v2/%s/blobs/uploads/?digest=%s" % (self.repo, sha256(data)),
                       data)
        m = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(cfg), "size": len(cfg)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(layer), "size": len(layer)}]}).encode()
        _, win = self.timed("PUT", "/v2/%s/manifests/v1" % self.repo, m,
                            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        self.assert_blob_durable(win, sha256(m), "manifest PUT")
        index = os.path.join(self.w.root, self.repo, "index.json")
        self.assert_placed(self.events_in(win, index), index, "manifest PUT (index.json)")
        with open(index) as f:
            tags = [e.get("annotations", {}).get("org.opencontainers.image.ref.name")
                    for e in json.load(f)["manifests"]]
        self.assertEqual(tags, ["v1"])

    def test_zz_exits_cleanly(self):
        """Last: the traced server still exits 0 on SIGTERM."""
        self.assertEqual(self.stop_traced(), 0, self.w.log()[-3000:])


if __name__ == "__main__":
    unittest.main()
