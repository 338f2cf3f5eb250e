"""Safety of the OCI API against the filesystem, and the on-disk layout.

1. Path traversal: no request reads or writes outside rootDirectory. The root
   is a subdirectory of a temp dir (the sentinel parent) that also holds a
   complete OCI layout and a secret file *outside* the root. Every attack must
   get a 4xx, never return those bytes, leave the server up, and leave the
   parent exactly as it was except for the root (whose content is checked
   against the expected layout) and the server's own log.
2. Layout compatibility: a repository written by hand as Zot writes it is
   served; what wharf writes is a valid OCI image layout (and skopeo reads it,
   when skopeo is installed).

Run: WHARF_BIN=../../build/wharf python3 -m unittest -v test_oci_safety
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Wharf, have  # noqa: E402
from test_oci_conformance import (  # noqa: E402
    MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER, MT_OCI_MANIFEST, Client, descriptor, enc,
    sha256)

SECRET = b"TOP-SECRET-OUTSIDE-ROOT-7f3a9c"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def write_layout(path, tag="latest", secret=b""):
    """A complete OCI image layout at path (as Zot or skopeo would write it).
    Returns dict with the manifest/config/layer bytes and digests."""
    os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
    config = enc({"architecture": "amd64", "os": "linux", "secret": secret.decode(),
                  "rootfs": {"type": "layers", "diff_ids": []}})
    layer = b"layer bytes " + secret
    manifest = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                    "config": descriptor(MT_OCI_CONFIG, config),
                    "layers": [descriptor(MT_OCI_LAYER, layer)],
                    "annotations": {"secret": secret.decode()}}, pretty=True)
    for data in (config, layer, manifest):
        with open(os.path.join(path, "blobs", "sha256", sha256(data)[7:]), "wb") as f:
            f.write(data)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": MT_OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(index, f)
    return {"config": config, "layer": layer, "manifest": manifest,
            "digest": sha256(manifest)}


def snapshot(top, skip=()):
    """{relative path: (type, size, mtime_ns, content hash for small files)}."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = os.path.relpath(dirpath, top)
        if rel_dir != "." and any(rel_dir == s or rel_dir.startswith(s + os.sep) for s in skip):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if rel in skip or any(rel.startswith(s + os.sep) for s in skip):
                continue
            st = os.lstat(p)
            kind = "d" if os.path.isdir(p) and not os.path.islink(p) else (
                "l" if os.path.islink(p) else "f")
            h = None
            if kind == "f" and st.st_size < 1 << 20:
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
            out[rel] = (kind, st.st_size if kind == "f" else 0,
                        st.st_mtime_ns if kind == "f" else 0, h)
    return out


def raw_request(w, method, target, body=b"", headers=None, timeout=5.0):
    """Send one request as raw bytes (the target exactly as given: no client
    normalisation or quoting); return (status, raw response bytes). status is
    None when the server closed without an answer."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1",
             b"Connection: close"]
    hdrs = dict(headers or {})
    if body or method in ("PUT", "POST", "PATCH"):
        hdrs.setdefault("Content-Length", str(len(body)))
    for k, v in hdrs.items():
        lines.append(("%s: %s" % (k, v)).encode("latin-1"))
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    resp = w.raw(data, timeout=timeout)
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return (int(m.group(1)) if m else None), resp


class TestTraversal(unittest.TestCase):
    """One server; the attacks run against a root holding one legitimate
    repository, with an OCI layout and a secret beside the root."""

    @classmethod
    def setUpClass(cls):
        cls.w = w = Wharf()
        cls.parent = w.tmp
        # Outside the root: a full OCI layout, a secret file, a layout one
        # level further up is not possible (the parent is /tmp), so also put
        # one inside a directory named like a repository would be.
        cls.outside = write_layout(os.path.join(cls.parent, "outside"), secret=SECRET)
        write_layout(os.path.join(cls.parent, "etc"), tag="passwd", secret=SECRET)
        with open(os.path.join(cls.parent, "secret.txt"), "wb") as f:
            f.write(SECRET)
        w.start()
        cls.c = Client(unittest.TestCase(), w)
        cls.legit = "legit"
        cls.legit_manifest, cls.legit_digest, cls.legit_blobs = cls.c.push_image(
            cls.legit, "latest")
        cls.c.push_image("legit/nested", "latest", seed="nested")
        st, h, b = w.request("POST", "/v2/legit/blobs/uploads/", b"")
        assert st == 202, (st, b)
        cls.session = urllib.parse.urlsplit(h["location"]).path
        cls.uuid = cls.session.rsplit("/", 1)[1]
        cls.repos = {"legit", "legit/nested"}
        cls.before = snapshot(cls.parent, skip=("data", "wharf.log"))

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.w.cleanup()

    def check_invariants(self):
        self.assertIsNone(self.w.proc.poll(), "wharf exited; log:\n" + self.w.log()[-4000:])
        st, h, b = self.w.request("GET", "/v2/")
        self.assertEqual(st, 200)
        # Nothing outside the root changed.
        after = snapshot(self.parent, skip=("data", "wharf.log"))
        self.assertEqual(sorted(set(after) - set(self.before)), [], "new files outside root")
        self.assertEqual(sorted(set(self.before) - set(after)), [], "files gone outside root")
        for k in self.before:
            self.assertEqual(after[k], self.before[k], "changed outside root: " + k)
        self.assertEqual(sorted(os.listdir(self.parent)),
                         sorted(["config.json", "wharf.log", "data", "outside", "etc",
                                 "secret.txt"]))
        # Inside the root: only the layout's own paths, only expected repositories.
        self.check_root(self.w.root, self.repos)
        # The legitimate content is intact.
        st, h, b = self.w.request("GET", "/v2/legit/manifests/latest")
        self.assertEqual((st, b), (200, self.legit_manifest))

    def check_root(self, root, repos):
        found = set()
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            if rel == ".":
                self.assertTrue(set(filenames) <= set(), "files at the root: %r" % filenames)
                continue
            uploads = os.path.join(".wharf", "uploads")
            if rel == uploads:
                # Upload sessions: one directory per uuid, nothing else.
                self.assertEqual(filenames, [], rel)
                for d in dirnames:
                    self.assertRegex(d, UUID, os.path.join(rel, d))
                continue
            if os.path.dirname(rel) == uploads:
                self.assertEqual(dirnames, [], rel)
                self.assertTrue(set(filenames) <= {"repo", "data", "hash"}, (rel, filenames))
                continue
            if rel == ".wharf" or rel.startswith(".wharf" + os.sep):
                continue
            if "index.json" in filenames:
                found.add(rel)
                self.assertEqual(set(filenames), {"index.json", "oci-layout"}, rel)
                extra = set(dirnames) - {"blobs"}
                # Subdirectories may be nested repositories only.
                for d in extra:
                    sub = os.path.join(rel, d)
                    self.assertTrue(any(r == sub or r.startswith(sub + "/") for r in repos),
                                    "unexpected directory %s" % sub)
            elif rel.endswith(os.sep + "blobs" + os.sep + "sha256"):
                for f in filenames:
                    self.assertRegex(f, HEX64, os.path.join(rel, f))
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), f)
                self.assertEqual(dirnames, [], rel)
            elif rel.endswith(os.sep + "blobs") or rel == "blobs":
                self.assertEqual(filenames, [], rel)
                self.assertTrue(set(dirnames) <= {"sha256"} | {
                    d for d in dirnames
                    if any(r.startswith(os.path.join(rel, d)) for r in repos)}, rel)
            else:
                # An intermediate directory of a nested repository name.
                self.assertEqual(filenames, [], "unexpected files in %s: %r" % (rel, filenames))
                self.assertTrue(any(r.startswith(rel + "/") for r in repos),
                                "unexpected directory %s" % rel)
        self.assertEqual(found, repos)

    def attack(self, method, target, body=b"", headers=None, ok=(400, 404, 405, 414, 416, 431)):
        st, resp = raw_request(self.w, method, target, body, headers)
        self.assertIsNotNone(st, "no answer to %s %r" % (method, target))
        self.assertIn(st, ok, "%s %r -> %r" % (method, target, resp[:300]))
        self.assertNotIn(SECRET, resp, "%s %r leaked the secret" % (method, target))
        self.assertNotIn(self.outside["manifest"][:40], resp)
        return st, resp

    # --- the attacks ---

    NAME_ATTACKS = [
        "..", "../..", "../outside", "../../outside", "..%2foutside", "..%2F..%2Foutside",
        "%2e%2e", "%2e%2e/outside", "%2e%2e%2foutside", "%2E%2E/%2E%2E/outside",
        "%252e%252e/outside", "%252e%252e%252foutside", "..%252foutside",
        "..\\outside", "..%5coutside", "legit\\..\\..\\outside", "legit/../../outside",
        "legit/../legit", "a/../../outside", "./outside", "legit/./nested", "/outside",
        "//outside", "%2foutside", "legit/..", "legit/%2e%2e/%2e%2e/outside",
        "..;/outside", "%c0%ae%c0%ae/outside", "%uff0e%uff0e/outside", "legit%00",
        "legit%00/../../outside", "outside%2f..%2f..", "~/outside", "$HOME",
        "legit/.uploads", ".wharf", ".wharf/blobs", "legit/blobs/sha256/..",
    ]

    def test_names_in_every_endpoint(self):
        d = self.outside["digest"]
        for name in self.NAME_ATTACKS:
            for method, suffix, body in (
                    ("GET", "/manifests/latest", b""),
                    ("HEAD", "/manifests/latest", b""),
                    ("GET", "/manifests/" + d, b""),
                    ("PUT", "/manifests/escaped", self.legit_manifest),
                    ("DELETE", "/manifests/latest", b""),
                    ("DELETE", "/manifests/" + d, b""),
                    ("GET", "/blobs/" + d, b""),
                    ("HEAD", "/blobs/" + d, b""),
                    ("DELETE", "/blobs/" + d, b""),
                    ("POST", "/blobs/uploads/", b""),
                    ("POST", "/blobs/uploads/?digest=" + sha256(b"escaped"), b"escaped"),
                    ("GET", "/blobs/uploads/" + self.uuid, b""),
                    ("PATCH", "/blobs/uploads/" + self.uuid, b"escaped"),
                    ("PUT", "/blobs/uploads/" + self.uuid + "?digest=" + sha256(b"e"), b"e"),
                    ("DELETE", "/blobs/uploads/" + self.uuid, b""),
                    ("GET", "/tags/list", b""),
                    ("GET", "/referrers/" + d, b"")):
                with self.subTest(name=name, method=method, suffix=suffix):
                    self.attack(method, "/v2/" + name + suffix, body)
        self.check_invariants()

    def test_raw_paths(self):
        d = self.outside["digest"]
        hx = d[7:]
        for method, target in (
                ("GET", "/v2/../../etc/passwd"),
                ("GET", "/v2/../etc/passwd"),
                ("GET", "/../../etc/passwd"),
                ("GET", "/v2/../../secret.txt"),
                ("GET", "/v2/..%2f..%2fsecret.txt"),
                ("GET", "/v2/%2e%2e/%2e%2e/secret.txt"),
                ("GET", "/v2/etc/manifests/passwd"),  # "etc" is beside the root, not in it
                ("GET", "/v2/outside/manifests/latest"),
                ("GET", "/v2/outside/blobs/" + d),
                ("GET", "/v2/a/../../outside/blobs/" + d),
                ("GET", "/v2/legit/../../outside/blobs/" + d),
                ("GET", "/v2/legit/blobs/../../../outside/blobs/sha256/" + hx),
                ("GET", "/v2/legit/blobs/..%2f..%2f..%2foutside%2fblobs%2fsha256%2f" + hx),
                ("GET", "/v2/legit/blobs/sha256:..%2f..%2f..%2foutside%2fblobs%2fsha256%2f" + hx),
                ("GET", "/v2/legit/blobs/sha256:../../../outside/blobs/sha256/" + hx),
                ("GET", "/v2/legit/blobs/sha256%3a" + hx),
                ("GET", "/v2/legit/blobs/sha256:" + hx + "/../../../../outside"),
                ("GET", "/v2/legit/blobs/sha256:" + hx + "%00"),
                ("GET", "/v2/legit/blobs/sha256:" + hx[:60] + "%2e%2e"),
                ("GET", "/v2/legit/manifests/..%2f..%2foutside"),
                ("GET", "/v2/legit/manifests/../../../outside/index.json"),
                ("GET", "/v2/legit/manifests/%2e%2e"),
                ("GET", "/v2/legit/manifests/.."),
                ("GET", "/v2/legit/manifests/..\\..\\index.json"),
                ("GET", "/v2/legit/manifests/latest%00"),
                ("GET", "/v2/legit/manifests/sha256:..%2f..%2f..%2foutside"),
                ("GET", "/v2/legit/tags/list/../../../outside"),
                ("GET", "/v2/legit/tags/..%2flist"),
                ("GET", "/v2/legit/referrers/..%2f..%2foutside"),
                ("GET", "/v2/legit/referrers/sha256:..%2f..%2f" + hx[:58]),
                ("GET", "/v2/legit/blobs/uploads/..%2f..%2f..%2foutside%2findex.json"),
                ("GET", "/v2/legit/blobs/uploads/../../../../outside/oci-layout"),
                ("GET", "/v2/legit/blobs/uploads/" + "..%2f" * 7 + "a"),  # 36 chars
                ("GET", "/v2/legit/blobs/uploads/" + "../" * 12),
                ("GET", "/v2/legit/blobs/uploads/%2e%2e%2f%2e%2e%2findex.json-xxxxxxxxx"),
                ("PATCH", "/v2/legit/blobs/uploads/" + "..%2f" * 7 + "a"),
                ("PATCH", "/v2/legit/blobs/uploads/..%2f..%2f..%2f..%2fescaped-xxxxxxxx"),
                ("PUT", "/v2/legit/blobs/uploads/..%2f..%2f..%2f..%2fescaped-xxxxxxxx?digest="
                 + sha256(b"e")),
                ("PUT", "/v2/legit/blobs/uploads/" + self.uuid + "?digest=sha256:..%2f..%2f..%2f"
                 "escaped" + "a" * 49),
                ("PUT", "/v2/legit/blobs/uploads/" + self.uuid + "?digest=sha256%3A..%2F..%2F"),
                ("DELETE", "/v2/legit/blobs/uploads/..%2f..%2f..%2f..%2fsecret.txt-xxxxxxx"),
                ("DELETE", "/v2/legit/manifests/..%2f..%2f..%2fsecret.txt"),
                ("DELETE", "/v2/legit/blobs/..%2f..%2f..%2fsecret.txt"),
                ("DELETE", "/v2/legit/blobs/sha256:..%2f..%2f..%2f..%2fsecret.txt"),
                ("PUT", "/v2/legit/manifests/..%2f..%2f..%2fescaped"),
                ("PUT", "/v2/legit/manifests/sha256:..%2f..%2f..%2fescaped"),
                ("PUT", "/v2/legit/manifests/../../../escaped"),
                ("POST", "/v2/legit/blobs/uploads/?digest=sha256:..%2f..%2f..%2fescaped"),
                ("POST", "/v2/legit/blobs/uploads/?digest=..%2f..%2fescaped"),
                ("POST", "/v2/legit/blobs/uploads/?digest=sha256:" + "a" * 64 + "/../../e"),
                ("POST", "/v2/legit/blobs/uploads/?mount=sha256:..%2f..%2foutside&from=legit"),
                ("GET", "/v2/" + "a/" * 3000 + "manifests/latest"),
                ("GET", "/v2/" + "a" * 70000 + "/manifests/latest"),
                ("GET", "/v2/legit/manifests/" + "a" * 70000),
                ("GET", "/v2/legit/blobs/sha256:" + "a" * 70000),
                ("PUT", "/v2/" + "b" * 300 + "/manifests/latest"),
                ("POST", "/v2/" + "c" * 256 + "/blobs/uploads/"),
                ("POST", "/v2/" + "/".join(["d" * 200] * 30) + "/blobs/uploads/"),
        ):
            body = self.legit_manifest if method == "PUT" and "/manifests/" in target else b"e"
            with self.subTest(method=method, target=target[:120]):
                self.attack(method, target, body if method in ("PUT", "POST", "PATCH") else b"")
        self.check_invariants()

    def test_nul_and_control_bytes(self):
        d = self.outside["digest"]
        for target in (b"/v2/legit\x00/../../outside/manifests/latest",
                       b"/v2/legit/manifests/latest\x00../../../secret.txt",
                       b"/v2/legit/blobs/" + d.encode() + b"\x00",
                       b"/v2/\x00/manifests/latest",
                       b"/v2/legit\r\n/manifests/latest",
                       b"/v2/legit/manifests/lat\x01est",
                       b"/v2/legit\tx/manifests/latest",
                       b"/v2/leg\xffit/manifests/latest",
                       b"/v2/legit/blobs/uploads/" + self.uuid.encode()[:-1] + b"\x00"):
            for method in ("GET", "PUT", "PATCH", "DELETE"):
                with self.subTest(method=method, target=target):
                    st, resp = raw_request(self.w, method, target,
                                           b"x" if method in ("PUT", "PATCH") else b"")
                    # A malformed request line may also just be dropped.
                    if st is not None:
                        self.assertIn(st // 100, (4,), resp[:200])
                    self.assertNotIn(SECRET, resp)
        self.check_invariants()

    def test_mount_from_outside(self):
        d = self.outside["digest"]
        layer_d = sha256(self.outside["layer"])
        tmp_abs = os.path.join(self.parent, "outside")
        for frm in ("..", "../outside", "../../outside", "..%2Foutside", "%2e%2e/outside",
                    "%252e%252e%252foutside", "legit/../../outside", "legit/..%2F..%2Foutside",
                    "..\\outside", urllib.parse.quote(tmp_abs, safe=""), tmp_abs, "/outside",
                    "outside", "etc", ".wharf", "legit%00/../../outside", "x" * 300, ""):
            for dg in (d, layer_d):
                with self.subTest(frm=frm, dg=dg):
                    target = "/v2/legit/blobs/uploads/?mount=%s&from=%s" % (dg, frm)
                    st, resp = raw_request(self.w, "POST", target)
                    self.assertNotEqual(st, 201, resp[:300])
                    if frm in ("outside", "etc"):
                        # Valid names, just not repositories here: an ordinary session.
                        self.assertEqual(st, 202, resp[:300])
                    elif frm.startswith("legit%00"):
                        self.assertIn(st, (202, 400), resp[:300])
                    else:
                        self.assertEqual(st, 400, resp[:300])
                    # The outside blob did not become a blob of legit.
                    st, h, b = self.w.request("GET", "/v2/legit/blobs/%s" % dg)
                    self.assertEqual(st, 404)
        # Sessions begun by the 202s are allowed leftovers; nothing else.
        self.check_invariants()

    def test_catalog_lists_only_the_root(self):
        st, h, b = self.w.request("GET", "/v2/_catalog")
        self.assertEqual(st, 200)
        repos = json.loads(b)["repositories"]
        self.assertNotIn("outside", repos)
        self.assertNotIn("etc", repos)
        for r in repos:
            self.assertNotIn("..", r)
        st, h, b = self.w.request("GET", "/v2/_catalog?last=..%2F..%2F&n=5")
        self.assertIn(st, (200, 400))
        self.check_invariants()

    def test_zz_server_still_serves_after_everything(self):
        # Runs last (alphabetical order): the server survived every attack.
        self.check_invariants()
        st, h, b = self.w.request("GET", "/v2/legit/blobs/%s" % sha256(self.legit_blobs[1]))
        self.assertEqual((st, b), (200, self.legit_blobs[1]))


class TestNameCollisions(unittest.TestCase):
    """Repository names that are valid by the grammar but name a directory
    inside another repository's layout: <repo>/blobs/sha256/<hex> is both the
    repository of that name and the file of blob <hex> in <repo>. Neither may
    break the other: a push answered 201 must be readable, and a refusal must
    be a 4xx, not a storage error."""

    def setUp(self):
        self.w = Wharf().start()
        self.c = Client(self, self.w)

    def tearDown(self):
        self.assertIsNone(self.w.proc.poll())
        self.w.stop()
        self.w.cleanup()

    def test_blob_first_then_repository_of_that_name(self):
        data = b"victim blob"
        d = sha256(data)
        self.c.push_blob("legit", data)
        shadow = "legit/blobs/sha256/" + d[7:]
        other = b"shadow content"
        pst, resp = raw_request(self.w, "POST", "/v2/%s/blobs/uploads/?digest=%s" %
                                (shadow, sha256(other)), other)
        self.assertIsNotNone(pst)
        self.assertLess(pst, 500, resp[:300])
        st, h, b = self.w.request("GET", "/v2/legit/blobs/" + d)
        self.assertEqual((st, b), (200, data))
        if pst == 201:
            st, h, b = self.w.request("GET", "/v2/%s/blobs/%s" % (shadow, sha256(other)))
            self.assertEqual((st, b), (200, other))

    def test_repository_first_then_blob_of_that_name(self):
        data = b"victim blob"
        d = sha256(data)
        other = b"shadow content"
        st, resp = raw_request(self.w, "POST", "/v2/victim/blobs/sha256/%s/blobs/uploads/?digest=%s"
                               % (d[7:], sha256(other)), other)
        self.assertIsNotNone(st)
        self.assertLess(st, 500, resp[:300])
        st, h, b = self.w.request("POST", "/v2/victim/blobs/uploads/?digest=%s" % d, data)
        self.assertEqual(st, 201, "push of a blob into victim refused because repository "
                         "victim/blobs/sha256/<hex> exists: %d %r" % (st, b))
        st, h, b = self.w.request("GET", "/v2/victim/blobs/%s" % d)
        self.assertEqual((st, b), (200, data), "a push answered 201 but the blob is missing")

    def test_repository_named_like_the_blobs_directory(self):
        # legit/blobs/sha256 holds legit's blobs; a repository of that name
        # must not put files among them (legit must stay a valid layout).
        d = self.c.push_blob("legit", b"blob of legit")
        st, resp = raw_request(self.w, "POST", "/v2/legit/blobs/sha256/blobs/uploads/?digest=%s"
                               % sha256(b"o"), b"o")
        self.assertIsNotNone(st)
        self.assertLess(st, 500, resp[:300])
        blob_dir = os.path.join(self.w.root, "legit", "blobs", "sha256")
        for f in os.listdir(blob_dir):
            self.assertRegex(f, HEX64, "legit's blob directory holds " + f)
        st, h, b = self.w.request("GET", "/v2/legit/blobs/" + d)
        self.assertEqual(st, 200)


class TestLayouts(unittest.TestCase):
    def setUp(self):
        self.w = Wharf()
        self.c = Client(self, self.w)

    def tearDown(self):
        self.w.stop()
        self.w.cleanup()

    def test_zot_written_layout_is_served(self):
        root = self.w.root
        repo_dir = os.path.join(root, "zotrepo")
        os.makedirs(os.path.join(repo_dir, "blobs", "sha256"))
        config = enc({"architecture": "arm64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": []}})
        layer = os.urandom(4096)
        manifest = enc({"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                        "config": descriptor(MT_OCI_CONFIG, config),
                        "layers": [descriptor(MT_OCI_LAYER, layer)]}, pretty=True)
        # A second, untagged manifest without mediaType in its index entry.
        manifest2 = enc({"schemaVersion": 2, "config": descriptor(MT_OCI_CONFIG, config),
                         "layers": []})
        for data in (config, layer, manifest, manifest2):
            with open(os.path.join(repo_dir, "blobs", "sha256", sha256(data)[7:]), "wb") as f:
                f.write(data)
        with open(os.path.join(repo_dir, "oci-layout"), "w") as f:
            f.write('{\n  "imageLayoutVersion": "1.0.0"\n}\n')
        index = {
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": MT_OCI_MANIFEST, "digest": sha256(manifest),
                 "size": len(manifest),
                 "annotations": {"org.opencontainers.image.ref.name": "v1.0",
                                 "org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
                 "platform": {"architecture": "arm64", "os": "linux"}},
                {"digest": sha256(manifest2), "size": len(manifest2)},
            ],
            "annotations": {"com.example.zot": "kept"},
            "zotExtra": {"nested": [1, 2, 3]},
        }
        with open(os.path.join(repo_dir, "index.json"), "w") as f:
            json.dump(index, f, indent=2)
        self.w.start()

        for ref in ("v1.0", sha256(manifest)):
            st, h, b = self.w.request("GET", "/v2/zotrepo/manifests/" + ref)
            self.assertEqual((st, b), (200, manifest), ref)
            self.assertEqual(h["content-type"], MT_OCI_MANIFEST)
            self.assertEqual(h["docker-content-digest"], sha256(manifest))
            st, h, b = self.w.request("HEAD", "/v2/zotrepo/manifests/" + ref)
            self.assertEqual(st, 200)
            self.assertEqual(int(h["content-length"]), len(manifest))
        st, h, b = self.w.request("GET", "/v2/zotrepo/manifests/" + sha256(manifest2))
        self.assertEqual((st, b), (200, manifest2))
        self.assertEqual(h["content-type"], MT_OCI_MANIFEST)
        for data in (config, layer):
            st, h, b = self.w.request("GET", "/v2/zotrepo/blobs/" + sha256(data))
            self.assertEqual((st, b), (200, data))
        st, h, b = self.w.request("GET", "/v2/zotrepo/tags/list")
        self.assertEqual(json.loads(b), {"name": "zotrepo", "tags": ["v1.0"]})
        st, h, b = self.w.request("GET", "/v2/_catalog")
        self.assertEqual(json.loads(b)["repositories"], ["zotrepo"])

        # Writing through wharf keeps what it does not know about.
        self.c.push_manifest("zotrepo", "v2.0", manifest2)
        with open(os.path.join(repo_dir, "index.json")) as f:
            idx = json.load(f)
        self.assertEqual(idx.get("annotations"), {"com.example.zot": "kept"})
        self.assertEqual(idx.get("zotExtra"), {"nested": [1, 2, 3]})
        first = [e for e in idx["manifests"] if e["digest"] == sha256(manifest)]
        self.assertEqual(len(first), 1)
        self.assertEqual(first[0]["platform"], {"architecture": "arm64", "os": "linux"})
        self.assertEqual(first[0]["annotations"]["org.opencontainers.image.created"],
                         "2024-05-01T00:00:00Z")
        st, h, b = self.w.request("GET", "/v2/zotrepo/tags/list")
        self.assertEqual(json.loads(b)["tags"], ["v1.0", "v2.0"])
        st, h, b = self.w.request("GET", "/v2/zotrepo/manifests/v1.0")
        self.assertEqual((st, b), (200, manifest))

    def assert_valid_layout(self, repo_dir, tags):
        with open(os.path.join(repo_dir, "oci-layout")) as f:
            self.assertEqual(json.load(f), {"imageLayoutVersion": "1.0.0"})
        with open(os.path.join(repo_dir, "index.json")) as f:
            idx = json.load(f)
        self.assertEqual(idx["schemaVersion"], 2)
        if "mediaType" in idx:
            self.assertEqual(idx["mediaType"], MT_OCI_INDEX)
        got_tags = {}
        blob_dir = os.path.join(repo_dir, "blobs", "sha256")
        for e in idx["manifests"]:
            self.assertRegex(e["digest"], r"^sha256:[0-9a-f]{64}$")
            p = os.path.join(blob_dir, e["digest"][7:])
            self.assertTrue(os.path.isfile(p), p)
            self.assertEqual(os.path.getsize(p), e["size"])
            self.assertIn(e.get("mediaType"), (MT_OCI_MANIFEST, MT_OCI_INDEX))
            t = e.get("annotations", {}).get("org.opencontainers.image.ref.name")
            if t:
                self.assertNotIn(t, got_tags, "tag listed twice")
                got_tags[t] = e["digest"]
            with open(p, "rb") as f:
                m = json.loads(f.read())
            for dsc in [m.get("config")] + m.get("layers", []) + m.get("manifests", []):
                if dsc:
                    bp = os.path.join(blob_dir, dsc["digest"][7:])
                    self.assertTrue(os.path.isfile(bp), "referenced blob missing: " + bp)
                    self.assertEqual(os.path.getsize(bp), dsc["size"])
        self.assertEqual(got_tags, tags)
        for f in os.listdir(blob_dir):
            self.assertRegex(f, HEX64)
            with open(os.path.join(blob_dir, f), "rb") as fh:
                self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), f)
        return idx

    def test_wharf_writes_a_valid_oci_layout(self):
        self.w.start()
        repo = "made/by/wharf"
        m1, d1, _ = self.c.push_image(repo, "v1", seed="one", layers=2)
        m2, d2, _ = self.c.push_image(repo, "v2", seed="two")
        self.c.push_manifest(repo, "also-v1", m1)
        idx_m = enc({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
            descriptor(MT_OCI_MANIFEST, m1, platform={"architecture": "amd64", "os": "linux"}),
            descriptor(MT_OCI_MANIFEST, m2, platform={"architecture": "arm64", "os": "linux"})]})
        di = self.c.push_manifest(repo, "multi", idx_m, MT_OCI_INDEX)
        # A chunked upload, then deleted session: no leftovers.
        st, h, b = self.w.request("POST", "/v2/%s/blobs/uploads/" % repo, b"")
        loc = urllib.parse.urlsplit(h["location"]).path
        self.w.request("PATCH", loc, b"partial")
        self.assertEqual(self.w.request("DELETE", loc)[0], 204)
        # A moved tag and a deleted tag.
        m3, d3, _ = self.c.push_image(repo, "moved", seed="three")
        self.c.push_manifest(repo, "moved", m2)
        self.c.push_manifest(repo, "deleted", m2)
        self.assertEqual(self.w.request("DELETE", "/v2/%s/manifests/deleted" % repo)[0], 202)

        repo_dir = os.path.join(self.w.root, *repo.split("/"))
        idx = self.assert_valid_layout(repo_dir, {"v1": d1, "also-v1": d1, "v2": d2,
                                                  "multi": di, "moved": d2})
        # The manifest whose tag moved away is still listed (untagged), so
        # it stays reachable by digest, as the API says.
        self.assertIn(d3, [e["digest"] for e in idx["manifests"]])
        self.assertEqual([e["mediaType"] for e in idx["manifests"] if e["digest"] == di],
                         [MT_OCI_INDEX])
        # Sessions live outside the repositories; none is left.
        self.assertFalse(os.path.exists(os.path.join(repo_dir, ".uploads")))
        self.assertEqual(os.listdir(os.path.join(self.w.root, ".wharf", "uploads")), [])

    @unittest.skipUnless(have("skopeo"), "skopeo not installed")
    def test_skopeo_reads_what_wharf_wrote(self):
        self.w.start()
        repo = "skopeo/src"
        m, d, blobs = self.c.push_image(repo, "v1", seed="skopeo", layers=2)
        out = tempfile.mkdtemp(prefix="wharf-skopeo-")
        try:
            dst = os.path.join(out, "x")
            src = "oci:%s:v1" % os.path.join(self.w.root, *repo.split("/"))
            r = subprocess.run(["skopeo", "--insecure-policy", "copy", src, "dir:" + dst],
                               capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
            with open(os.path.join(dst, "manifest.json"), "rb") as f:
                self.assertEqual(f.read(), m)
            for data in blobs:
                with open(os.path.join(dst, sha256(data)[7:]), "rb") as f:
                    self.assertEqual(f.read(), data)
            r = subprocess.run(["skopeo", "inspect", "--raw", src], capture_output=True,
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, m)

            # And the reverse: skopeo writes a layout into the root; wharf serves it.
            dst_repo = os.path.join(self.w.root, "skopeo", "written")
            r = subprocess.run(["skopeo", "--insecure-policy", "copy", "dir:" + dst,
                                "oci:%s:copied" % dst_repo], capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
            st, h, b = self.w.request("GET", "/v2/skopeo/written/manifests/copied")
            self.assertEqual(st, 200, b)
            got = json.loads(b)
            for dsc in [got["config"]] + got["layers"]:
                st, h, bb = self.w.request("GET", "/v2/skopeo/written/blobs/" + dsc["digest"])
                self.assertEqual(st, 200)
                self.assertEqual(sha256(bb), dsc["digest"])
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
