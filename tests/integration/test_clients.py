"""Real clients against a real wharf: skopeo, podman, containerd's ctr and
oras push to and pull from a wharf started here (plain HTTP, local storage),
and every digest they report is compared with what was pushed.

The images come from images.py (OCI layouts written with the stdlib, the same
bytes every run). Each client runs isolated from the host's configuration:
its own registries.conf, policy, auth file, storage, containerd root/state/
socket, all under a temp directory. (skopeo and podman running as root still
keep containers/image's blob-info cache in /var/lib/containers/cache: there is
no flag for it.)

A client that is not installed is skipped, by name. Everything else that goes
wrong fails, with the client's stderr and the tail of the wharf log."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import images
from harness import Wharf, have

CMD_TIMEOUT = 120

_tmp = None
SINGLE = None   # linux/amd64 image, 3 gzip layers, tag "1"
MULTI = None    # index: linux/amd64 + linux/arm64/v8, tag "multi"
DOCKER = None   # a linux/amd64 Docker schema 2 image, tag "d1"
DLIST = None    # a Docker manifest list: linux/amd64 + linux/arm64/v8, tag "dlist"


def setUpModule():
    global _tmp, SINGLE, MULTI, DOCKER, DLIST
    _tmp = tempfile.mkdtemp(prefix="wharf-clients-")
    SINGLE = images.single_image(os.path.join(_tmp, "img-single"), tag="1")
    MULTI = images.multi_image(os.path.join(_tmp, "img-multi"), tag="multi")
    DOCKER = images.single_image(os.path.join(_tmp, "img-docker"), tag="d1", salt="d",
                                 fmt="docker")
    DLIST = images.multi_image(os.path.join(_tmp, "img-dlist"), tag="dlist", salt="dl",
                               fmt="docker")


def tearDownModule():
    if _tmp:
        shutil.rmtree(_tmp, ignore_errors=True)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def hexpart(digest):
    return digest.split(":", 1)[1]


class ClientCase(unittest.TestCase):
    """One wharf per class; each test uses its own repositories."""

    wharf = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="%s-" % cls.__name__, dir=_tmp)
        cls.wharf = Wharf().start()
        cls.host = cls.wharf.hostport
        # Keep the clients away from the host's configuration.
        cfg = os.path.join(cls.tmp, "conf")
        os.makedirs(os.path.join(cfg, "docker"))
        os.makedirs(os.path.join(cls.tmp, "tmp"))
        for name in ("registries.conf", "containers.conf"):
            open(os.path.join(cfg, name), "w").close()
        with open(os.path.join(cfg, "auth.json"), "w") as f:
            f.write('{"auths": {}}')   # podman insists that it exists
        cls.policy = os.path.join(cfg, "policy.json")
        with open(cls.policy, "w") as f:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
        env = dict(os.environ)
        env.update({
            "CONTAINERS_REGISTRIES_CONF": os.path.join(cfg, "registries.conf"),
            "CONTAINERS_CONF": os.path.join(cfg, "containers.conf"),
            "REGISTRY_AUTH_FILE": os.path.join(cfg, "auth.json"),
            "DOCKER_CONFIG": os.path.join(cfg, "docker"),
            "TMPDIR": os.path.join(cls.tmp, "tmp"),
        })
        cls.env = env
        try:
            cls.prepare()
        except BaseException:
            cls.tearDownClass()   # unittest does not when setUpClass fails
            raise

    @classmethod
    def prepare(cls):
        """What a class needs beyond a wharf (pushed images, a daemon)."""

    @classmethod
    def tearDownClass(cls):
        if cls.wharf:
            cls.wharf.stop()
            cls.wharf.cleanup()
            cls.wharf = None

    # ---- helpers ----

    def wharf_log_tail(self, n=20):
        """The last requests that did not succeed, then the last few lines."""
        lines = self.wharf.log().splitlines()
        bad = [l for l in lines if '"status":2' not in l]
        return "\n".join(l[:400] for l in bad[-n:] + ["..."] + lines[-5:])

    def run_tool(self, args, timeout=CMD_TIMEOUT, cwd=None, check=True, env=None):
        try:
            p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, timeout=timeout, cwd=cwd,
                               env=env or self.env)
        except subprocess.TimeoutExpired as e:
            self.fail("%s: timed out after %ss\nstderr: %s\nwharf log:\n%s" % (
                " ".join(args), timeout, (e.stderr or b"")[-2000:].decode("utf-8", "replace"),
                self.wharf_log_tail()))
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if check and p.returncode != 0:
            self.fail("%s: exit %d\nstdout: %s\nstderr: %s\nwharf log:\n%s" % (
                " ".join(args), p.returncode, out[-2000:], err[-3000:], self.wharf_log_tail()))
        return p.returncode, out, err

    def head_manifest(self, repo, ref):
        st, h, _ = self.wharf.request("HEAD", "/v2/%s/manifests/%s" % (repo, ref))
        return st, h

    def get_manifest(self, repo, ref):
        st, h, body = self.wharf.request("GET", "/v2/%s/manifests/%s" % (repo, ref))
        self.assertEqual(st, 200, "GET manifest %s:%s: %r" % (repo, ref, body[:300]))
        return h, body

    def get_blob(self, repo, digest):
        st, _, body = self.wharf.request("GET", "/v2/%s/blobs/%s" % (repo, digest))
        self.assertEqual(st, 200, "GET blob %s@%s" % (repo, digest))
        self.assertEqual(sha256(body), digest)
        return body

    def assert_tag(self, repo, tag, digest, media_type):
        """The tag resolves to digest, with that media type, on HEAD and GET,
        and the bytes served hash to it."""
        st, h = self.head_manifest(repo, tag)
        self.assertEqual(st, 200, "HEAD %s:%s" % (repo, tag))
        self.assertEqual(h.get("docker-content-digest"), digest)
        self.assertEqual(h.get("content-type"), media_type)
        h, body = self.get_manifest(repo, tag)
        self.assertEqual(sha256(body), digest)
        self.assertEqual(h.get("docker-content-digest"), digest)
        self.assertEqual(h.get("content-type"), media_type)
        return body

    def assert_image_in_registry(self, repo, img):
        """Every manifest and blob of img is served by digest, byte-exact."""
        for d in sorted(img.all_digests()):
            b = img.blobs[d]
            if b.media_type in images.MANIFEST_TYPES:
                _, body = self.get_manifest(repo, d)
                self.assertEqual(sha256(body), d)
            else:
                self.get_blob(repo, d)

    def assert_layout_holds(self, layout, tag, img):
        """An OCI layout a client wrote holds img under tag, every blob intact."""
        desc = images.layout_ref(layout, tag)
        self.assertIsNotNone(desc, "no %r in %s/index.json" % (tag, layout))
        self.assertEqual(desc["digest"], img.digest)
        self.assertEqual(desc["mediaType"], img.media_type)
        images.verify_layout(layout)
        have_ = set("sha256:" + n for n in os.listdir(os.path.join(layout, "blobs", "sha256")))
        self.assertLessEqual(img.all_digests(), have_)

    def assert_dir_holds(self, d, img):
        """A skopeo dir: copy of a single-platform image."""
        with open(os.path.join(d, "manifest.json"), "rb") as f:
            self.assertEqual(f.read(), img.manifest)
        for b in [img.config] + img.layers:
            self.assertEqual(file_digest(os.path.join(d, hexpart(b.digest))), b.digest)


class ImagesFixtures(unittest.TestCase):
    """Fixture check (not a test of Wharf): images.py itself, the same bytes
    every time, and valid images."""

    def test_deterministic_and_valid(self):
        import gzip
        with tempfile.TemporaryDirectory(dir=_tmp) as d:
            again = images.single_image(os.path.join(d, "s"), tag="1")
            self.assertEqual(again.digest, SINGLE.digest)
            self.assertEqual(images.multi_image(os.path.join(d, "m")).digest, MULTI.digest)
            self.assertEqual(images.single_image(os.path.join(d, "d"), tag="d1", salt="d",
                                                 fmt="docker").digest, DOCKER.digest)
        for img in (SINGLE, DOCKER) + tuple(MULTI.children.values()):
            self.assertEqual(images.verify_layout(img.layout), len(img.blobs))
            self.assertLessEqual(img.all_digests(), set(img.blobs))
            m = json.loads(img.manifest)
            with open(os.path.join(img.layout, "blobs", "sha256",
                                   hexpart(img.config.digest)), "rb") as f:
                cfg = json.load(f)
            self.assertEqual(m["config"]["digest"], img.config.digest)
            self.assertEqual(cfg["rootfs"]["diff_ids"], [l.diff_id for l in img.layers])
            self.assertEqual("%s/%s" % (cfg["os"], cfg["architecture"]), img.platform)
            for l in img.layers:
                with open(os.path.join(img.layout, "blobs", "sha256", hexpart(l.digest)),
                          "rb") as f:
                    self.assertEqual(sha256(gzip.decompress(f.read())), l.diff_id)
        self.assertEqual(images.layout_ref(MULTI.layout, "multi")["digest"], MULTI.digest)
        self.assertEqual(json.loads(DLIST.manifest)["mediaType"], images.MT_DOCKER_LIST)


@unittest.skipUnless(have("skopeo"), "skopeo is not installed")
class SkopeoTest(ClientCase):

    def skopeo(self, *args, **kw):
        return self.run_tool(["skopeo", "--policy", self.policy] + list(args), **kw)

    def push(self, img, repo, tag, *extra):
        digestfile = os.path.join(self.tmp, "digest-%s-%s" % (repo.replace("/", "_"), tag))
        self.skopeo("copy", "--dest-tls-verify=false", "--digestfile", digestfile,
                    *extra, img.ref, "docker://%s/%s:%s" % (self.host, repo, tag))
        with open(digestfile) as f:
            return f.read().strip()

    def test_copy_oci_roundtrip(self):
        repo = "private/app"
        self.assertEqual(self.push(SINGLE, repo, "1"), SINGLE.digest)
        self.assert_tag(repo, "1", SINGLE.digest, images.MT_MANIFEST)
        self.assert_image_in_registry(repo, SINGLE)
        _, raw, _ = self.skopeo("inspect", "--raw", "--tls-verify=false",
                                "docker://%s/%s:1" % (self.host, repo))
        self.assertEqual(raw.encode(), SINGLE.manifest)
        # back to an OCI layout, and to a dir:
        out = os.path.join(self.tmp, "back-oci")
        self.skopeo("copy", "--src-tls-verify=false", "docker://%s/%s:1" % (self.host, repo),
                    "oci:%s:1" % out)
        self.assert_layout_holds(out, "1", SINGLE)
        out = os.path.join(self.tmp, "back-dir")
        self.skopeo("copy", "--src-tls-verify=false",
                    "docker://%s/%s@%s" % (self.host, repo, SINGLE.digest), "dir:" + out)
        self.assert_dir_holds(out, SINGLE)

    def test_copy_all_index(self):
        repo = "private/multi"
        self.assertEqual(self.push(MULTI, repo, "multi", "--all"), MULTI.digest)
        self.assert_tag(repo, "multi", MULTI.digest, images.MT_INDEX)
        self.assert_image_in_registry(repo, MULTI)
        _, raw, _ = self.skopeo("inspect", "--raw", "--tls-verify=false",
                                "docker://%s/%s:multi" % (self.host, repo))
        self.assertEqual(raw.encode(), MULTI.manifest)
        for plat, child in MULTI.children.items():
            _, raw, _ = self.skopeo("inspect", "--raw", "--tls-verify=false",
                                    "docker://%s/%s@%s" % (self.host, repo, child.digest))
            self.assertEqual(raw.encode(), child.manifest, plat)
        # skopeo picks the arm64 child out of the index
        _, out, _ = self.skopeo("--override-arch", "arm64", "--override-variant", "v8",
                                "inspect", "--tls-verify=false",
                                "docker://%s/%s:multi" % (self.host, repo))
        info = json.loads(out)
        arm = MULTI.children["linux/arm64"]
        self.assertEqual(info["Digest"], MULTI.digest)
        self.assertEqual(info["Architecture"], "arm64")
        self.assertEqual(info["Layers"], [l.digest for l in arm.layers])
        out = os.path.join(self.tmp, "back-multi")
        self.skopeo("copy", "--all", "--src-tls-verify=false",
                    "docker://%s/%s:multi" % (self.host, repo), "oci:%s:multi" % out)
        self.assert_layout_holds(out, "multi", MULTI)

    def test_docker_schema2(self):
        repo = "private/v2s2"
        digest = self.push(SINGLE, repo, "1", "--format", "v2s2")
        self.assertNotEqual(digest, SINGLE.digest)
        raw = self.assert_tag(repo, "1", digest, images.MT_DOCKER_MANIFEST)
        m = json.loads(raw)
        self.assertEqual(m["mediaType"], images.MT_DOCKER_MANIFEST)
        self.assertEqual(m["config"]["mediaType"], "application/vnd.docker.container.image.v1+json")
        # the conversion keeps the config and the (gzip) layers' bytes
        self.assertEqual(m["config"]["digest"], SINGLE.config.digest)
        self.assertEqual([l["digest"] for l in m["layers"]], [l.digest for l in SINGLE.layers])
        self.assertEqual({l["mediaType"] for l in m["layers"]},
                         {"application/vnd.docker.image.rootfs.diff.tar.gzip"})
        _, out, _ = self.skopeo("inspect", "--raw", "--tls-verify=false",
                                "docker://%s/%s:1" % (self.host, repo))
        self.assertEqual(out.encode(), raw)
        # pulled back: same bytes, same digest
        d = os.path.join(self.tmp, "back-v2s2")
        self.skopeo("copy", "--src-tls-verify=false", "docker://%s/%s:1" % (self.host, repo),
                    "dir:" + d)
        with open(os.path.join(d, "manifest.json"), "rb") as f:
            self.assertEqual(sha256(f.read()), digest)
        # registry to registry: the digest survives another hop
        df = os.path.join(self.tmp, "digest-v2s2-copy")
        self.skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                    "--digestfile", df, "docker://%s/%s:1" % (self.host, repo),
                    "docker://%s/private/v2s2-copy:1" % self.host)
        with open(df) as f:
            self.assertEqual(f.read().strip(), digest)
        self.assert_tag("private/v2s2-copy", "1", digest, images.MT_DOCKER_MANIFEST)

    def test_docker_manifest_list(self):
        repo = "private/dlist"
        digest = self.push(MULTI, repo, "1", "--all", "--format", "v2s2")
        raw = self.assert_tag(repo, "1", digest, images.MT_DOCKER_LIST)
        lst = json.loads(raw)
        self.assertEqual(lst["mediaType"], images.MT_DOCKER_LIST)
        self.assertEqual(len(lst["manifests"]), 2)
        for d in lst["manifests"]:
            self.assertEqual(d["mediaType"], images.MT_DOCKER_MANIFEST)
            body = self.assert_tag(repo, d["digest"], d["digest"], images.MT_DOCKER_MANIFEST)
            self.assertEqual(len(body), d["size"])
        # and one pushed as a list from the start (no conversion by skopeo)
        images.push(self.host, DLIST, "private/dlist2")
        self.assert_tag("private/dlist2", "dlist", DLIST.digest, images.MT_DOCKER_LIST)
        _, out, _ = self.skopeo("inspect", "--raw", "--tls-verify=false",
                                "docker://%s/private/dlist2:dlist" % self.host)
        self.assertEqual(out.encode(), DLIST.manifest)
        d = os.path.join(self.tmp, "back-dlist")
        self.skopeo("copy", "--all", "--src-tls-verify=false",
                    "docker://%s/private/dlist2:dlist" % self.host, "dir:" + d)
        with open(os.path.join(d, "manifest.json"), "rb") as f:
            self.assertEqual(f.read(), DLIST.manifest)
        for child in DLIST.children.values():
            with open(os.path.join(d, hexpart(child.digest) + ".manifest.json"), "rb") as f:
                self.assertEqual(f.read(), child.manifest)

    def test_big_layer(self):
        """A 24 MiB layer both ways (streamed upload, sendfile download). gzip:
        skopeo would compress an uncompressed layer on its way to a registry."""
        big = images.big_image(os.path.join(self.tmp, "img-big"), 24 << 20, tag="big",
                               compress=True)
        repo = "private/big"
        self.assertEqual(self.push(big, repo, "big"), big.digest)
        self.assert_tag(repo, "big", big.digest, images.MT_MANIFEST)
        d = os.path.join(self.tmp, "back-big")
        self.skopeo("copy", "--src-tls-verify=false", "docker://%s/%s:big" % (self.host, repo),
                    "dir:" + d)
        self.assert_dir_holds(d, big)

    def test_inspect_and_tags(self):
        repo = "private/inspect"
        self.push(SINGLE, repo, "1")
        self.push(SINGLE, repo, "latest")
        _, out, _ = self.skopeo("inspect", "--tls-verify=false",
                                "docker://%s/%s:1" % (self.host, repo))
        info = json.loads(out)
        self.assertEqual(info["Digest"], SINGLE.digest)
        self.assertEqual(info["Layers"], [l.digest for l in SINGLE.layers])
        self.assertEqual((info["Os"], info["Architecture"]), ("linux", "amd64"))
        self.assertEqual(info["Labels"], {"org.opencontainers.image.title": "wharf-test"})
        _, out, _ = self.skopeo("list-tags", "--tls-verify=false",
                                "docker://%s/%s" % (self.host, repo))
        self.assertEqual(sorted(json.loads(out)["Tags"]), ["1", "latest"])
        _, raw, _ = self.skopeo("inspect", "--config", "--raw", "--tls-verify=false",
                                "docker://%s/%s:1" % (self.host, repo))
        self.assertEqual(sha256(raw.encode()), SINGLE.config.digest)

    def test_delete(self):
        repo = "private/del"
        self.push(SINGLE, repo, "1")
        self.skopeo("delete", "--tls-verify=false", "docker://%s/%s:1" % (self.host, repo))
        st, _ = self.head_manifest(repo, SINGLE.digest)
        self.assertEqual(st, 404)
        st, _ = self.head_manifest(repo, "1")
        self.assertEqual(st, 404)
        rc, _, err = self.skopeo("inspect", "--raw", "--tls-verify=false",
                                 "docker://%s/%s:1" % (self.host, repo), check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("manifest unknown", err)

    def test_read_wharf_root(self):
        """The repository directory wharf wrote is an OCI layout skopeo reads."""
        self.push(SINGLE, "private/root/app", "1")
        self.push(MULTI, "private/root/app", "multi", "--all")
        layout = os.path.join(self.wharf.root, "private", "root", "app")
        d = os.path.join(self.tmp, "from-root")
        self.skopeo("copy", "oci:%s:1" % layout, "dir:" + d)
        self.assert_dir_holds(d, SINGLE)
        out = os.path.join(self.tmp, "from-root-multi")
        self.skopeo("copy", "--all", "oci:%s:multi" % layout, "oci:%s:multi" % out)
        self.assert_layout_holds(out, "multi", MULTI)
        images.verify_layout(layout)


@unittest.skipUnless(have("podman"), "podman is not installed")
class PodmanTest(ClientCase):
    """podman with a private storage (vfs, no mounts), no events, cgroupfs:
    pulling and pushing need no container to run."""

    pm_dir = None

    @classmethod
    def prepare(cls):
        images.push(cls.host, SINGLE, "private/app", "1")
        images.push(cls.host, MULTI, "private/app", "multi")
        images.push(cls.host, DOCKER, "private/app", "d1")
        # short: podman refuses a runroot longer than 50 characters
        st = tempfile.mkdtemp(prefix="pm-")
        cls.pm_dir = st
        cls.storage_conf = os.path.join(cls.tmp, "conf", "storage.conf")
        with open(cls.storage_conf, "w") as f:
            f.write('[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n'
                    % (st, st))
        cls.env["CONTAINERS_STORAGE_CONF"] = cls.storage_conf
        cls.podman_base = ["podman", "--root", st + "/root", "--runroot", st + "/run",
                           "--tmpdir", st + "/libpod", "--storage-driver", "vfs",
                           "--events-backend", "none", "--cgroup-manager", "cgroupfs"]

    @classmethod
    def tearDownClass(cls):
        if cls.pm_dir:
            shutil.rmtree(cls.pm_dir, ignore_errors=True)
        super().tearDownClass()

    def podman(self, *args, **kw):
        return self.run_tool(self.podman_base + list(args), **kw)

    def inspect(self, ref):
        _, out, _ = self.podman("image", "inspect", ref)
        return json.loads(out)[0]

    def test_pull(self):
        ref = "%s/private/app:1" % self.host
        self.podman("pull", "--signature-policy", self.policy, "--tls-verify=false", ref)
        info = self.inspect(ref)
        self.assertEqual(info["Digest"], SINGLE.digest)
        self.assertEqual(info["Id"], hexpart(SINGLE.config.digest))
        self.assertIn("%s/private/app@%s" % (self.host, SINGLE.digest), info["RepoDigests"])
        self.assertEqual(info["RootFS"]["Layers"], [l.diff_id for l in SINGLE.layers])
        self.assertEqual((info["Os"], info["Architecture"]), ("linux", "amd64"))
        self.assertEqual(info.get("ManifestType"), images.MT_MANIFEST)
        # by digest
        ref = "%s/private/app@%s" % (self.host, SINGLE.digest)
        self.podman("pull", "--signature-policy", self.policy, "--tls-verify=false", ref)
        self.assertEqual(self.inspect(ref)["Id"], hexpart(SINGLE.config.digest))

    def test_pull_platform_from_index(self):
        ref = "%s/private/app:multi" % self.host
        self.podman("pull", "--signature-policy", self.policy, "--tls-verify=false",
                    "--platform", "linux/arm64/v8", ref)
        info = self.inspect(ref)
        arm = MULTI.children["linux/arm64"]
        self.assertEqual(info["Digest"], MULTI.digest)
        self.assertEqual(info["Id"], hexpart(arm.config.digest))
        self.assertEqual(info["Architecture"], "arm64")
        self.assertEqual(info["RootFS"]["Layers"], [l.diff_id for l in arm.layers])

    def test_pull_docker_schema2(self):
        ref = "%s/private/app:d1" % self.host
        self.podman("pull", "--signature-policy", self.policy, "--tls-verify=false", ref)
        info = self.inspect(ref)
        self.assertEqual(info["Digest"], DOCKER.digest)
        self.assertEqual(info["Id"], hexpart(DOCKER.config.digest))
        self.assertEqual(info.get("ManifestType"), images.MT_DOCKER_MANIFEST)
        self.assertEqual(info["RootFS"]["Layers"], [l.diff_id for l in DOCKER.layers])

    def test_push(self):
        src = "%s/private/app:1" % self.host
        self.podman("pull", "--signature-policy", self.policy, "--tls-verify=false", src)
        df = os.path.join(self.tmp, "podman-push-digest")
        self.podman("push", "--signature-policy", self.policy, "--tls-verify=false",
                    "--digestfile", df, src, "%s/private/podman-pushed:1" % self.host)
        with open(df) as f:
            digest = f.read().strip()
        raw = self.assert_tag("private/podman-pushed", "1", digest, images.MT_MANIFEST)
        m = json.loads(raw)
        # podman may recompress the layers (it does when its blob-info cache
        # does not know them); the config and the uncompressed layers are the image.
        self.assertEqual(m["config"]["digest"], SINGLE.config.digest)
        import gzip
        diff_ids = []
        for l in m["layers"]:
            body = self.get_blob("private/podman-pushed", l["digest"])
            diff_ids.append(sha256(gzip.decompress(body)))
        self.assertEqual(diff_ids, [l.diff_id for l in SINGLE.layers])


CONTAINERD_CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
temp = "{d}/tmp"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd-ttrpc.sock"
[debug]
  address = "{d}/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"""


@unittest.skipUnless(have("containerd") and have("ctr"), "containerd/ctr are not installed")
class ContainerdTest(ClientCase):
    """containerd started here with a private root, state and socket, the CRI
    plugin disabled; ctr pulls (unpacking with the native snapshotter: no
    mounts) and pushes. Each test uses its own containerd namespace."""

    containerd = None
    ctd_dir = None

    @classmethod
    def prepare(cls):
        images.push(cls.host, SINGLE, "private/app", "1")
        images.push(cls.host, MULTI, "private/app", "multi")
        images.push(cls.host, DLIST, "private/app", "dlist")
        d = tempfile.mkdtemp(prefix="ctd-")   # short: unix socket paths are < 108 bytes
        cls.ctd_dir = d
        for sub in ("root", "state", "tmp", "opt"):
            os.makedirs(os.path.join(d, sub))
        cfg = os.path.join(d, "config.toml")
        with open(cfg, "w") as f:
            f.write(CONTAINERD_CONFIG.format(d=d))
        cls.sock = os.path.join(d, "containerd.sock")
        cls.ctd_log = os.path.join(d, "containerd.log")
        cls.ctd_logf = open(cls.ctd_log, "wb")
        cls.containerd = subprocess.Popen(["containerd", "--config", cfg],
                                          stdout=cls.ctd_logf, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=cls.env)
        deadline = time.monotonic() + 20
        ok = False
        while time.monotonic() < deadline and cls.containerd.poll() is None:
            if os.path.exists(cls.sock):
                p = subprocess.run(["ctr", "--address", cls.sock, "version"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=10)
                if p.returncode == 0:
                    ok = True
                    break
            time.sleep(0.1)
        if not ok:
            with open(cls.ctd_log, "rb") as f:
                log = f.read()[-3000:].decode("utf-8", "replace")
            raise RuntimeError("containerd did not start; log:\n" + log)

    @classmethod
    def tearDownClass(cls):
        if cls.containerd:
            if cls.containerd.poll() is None:
                cls.containerd.send_signal(signal.SIGTERM)
                try:
                    cls.containerd.wait(15)
                except subprocess.TimeoutExpired:
                    cls.containerd.kill()
                    cls.containerd.wait()
            cls.containerd = None
            cls.ctd_logf.close()
        if cls.ctd_dir:
            shutil.rmtree(cls.ctd_dir, ignore_errors=True)
            cls.ctd_dir = None
        super().tearDownClass()

    def ctr(self, ns, *args, **kw):
        return self.run_tool(["ctr", "--address", self.sock, "--namespace", ns] + list(args),
                             **kw)

    def images_ls(self, ns):
        """{ref: (media type, digest, platforms)} from `ctr images ls`."""
        _, out, _ = self.ctr(ns, "images", "ls")
        res = {}
        for line in out.splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                plats = [x for x in f[3:] if "/" in x]
                res[f[0]] = (f[1], f[2], plats[0] if plats else "")
        return res

    def content(self, ns):
        """{digest: labels dict} from `ctr content ls`."""
        _, out, _ = self.ctr(ns, "content", "ls")
        res = {}
        for line in out.splitlines()[1:]:
            f = [x for x in line.split("\t") if x.strip()]
            if not f or not f[0].startswith("sha256:"):
                continue
            labels = {}
            lab = f[-1].strip()
            if lab and lab != "-":
                for kv in lab.split(","):
                    k, _, v = kv.partition("=")
                    labels[k] = v
            res[f[0]] = labels
        return res

    def assert_content(self, ns, img):
        have_ = self.content(ns)
        for d in img.all_digests():
            self.assertIn(d, have_)
        # containerd computed each layer's uncompressed digest when unpacking
        for l in img.layers:
            self.assertEqual(have_[l.digest].get("containerd.io/uncompressed"), l.diff_id)

    def test_pull(self):
        ref = "%s/private/app:1" % self.host
        self.ctr("t1", "images", "pull", "--plain-http", "--snapshotter", "native", ref)
        ls = self.images_ls("t1")
        self.assertEqual(ls[ref][:2], (images.MT_MANIFEST, SINGLE.digest))
        self.assertEqual(ls[ref][2], "linux/amd64")
        self.assert_content("t1", SINGLE)

    def test_pull_all_platforms(self):
        ref = "%s/private/app:multi" % self.host
        self.ctr("t2", "images", "pull", "--plain-http", "--snapshotter", "native",
                 "--all-platforms", ref)
        ls = self.images_ls("t2")
        self.assertEqual(ls[ref][:2], (images.MT_INDEX, MULTI.digest))
        self.assertEqual(set(ls[ref][2].split(",")), {"linux/amd64", "linux/arm64/v8"})
        have_ = self.content("t2")
        self.assertLessEqual(MULTI.all_digests(), set(have_))

    def test_pull_docker_manifest_list(self):
        ref = "%s/private/app:dlist" % self.host
        self.ctr("t5", "images", "pull", "--plain-http", "--snapshotter", "native",
                 "--all-platforms", ref)
        ls = self.images_ls("t5")
        self.assertEqual(ls[ref][:2], (images.MT_DOCKER_LIST, DLIST.digest))
        self.assertEqual(set(ls[ref][2].split(",")), {"linux/amd64", "linux/arm64/v8"})
        for child in DLIST.children.values():
            self.assert_content("t5", child)

    def test_pull_one_platform(self):
        ref = "%s/private/app:multi" % self.host
        self.ctr("t3", "images", "pull", "--plain-http", "--snapshotter", "native",
                 "--platform", "linux/amd64", ref)
        ls = self.images_ls("t3")
        self.assertEqual(ls[ref][:2], (images.MT_INDEX, MULTI.digest))
        amd = MULTI.children["linux/amd64"]
        arm = MULTI.children["linux/arm64"]
        have_ = self.content("t3")
        self.assertLessEqual(amd.all_digests() | {MULTI.digest}, set(have_))
        self.assertFalse({l.digest for l in arm.layers} & set(have_))
        for l in amd.layers:
            self.assertEqual(have_[l.digest].get("containerd.io/uncompressed"), l.diff_id)

    def test_push(self):
        """ctr pushes the exact bytes it pulled (mounting blobs across repos)."""
        ref = "%s/private/app:1" % self.host
        dst = "%s/private/ctr-pushed:1" % self.host
        self.ctr("t4", "images", "pull", "--plain-http", "--snapshotter", "native", ref)
        self.ctr("t4", "images", "tag", ref, dst)
        self.ctr("t4", "images", "push", "--plain-http", dst)
        self.assert_tag("private/ctr-pushed", "1", SINGLE.digest, images.MT_MANIFEST)
        self.assert_image_in_registry("private/ctr-pushed", SINGLE)


@unittest.skipUnless(have("oras"), "oras is not installed")
class OrasTest(ClientCase):

    @classmethod
    def prepare(cls):
        images.push(cls.host, SINGLE, "private/app", "1")

    def oras(self, *args, **kw):
        kw.setdefault("cwd", self.tmp)
        return self.run_tool(["oras"] + list(args), **kw)

    def write(self, name, data):
        with open(os.path.join(self.tmp, name), "wb") as f:
            f.write(data)

    def test_push_pull(self):
        data = b"hello wharf\n" * 3
        self.write("file.txt", data)
        ref = "%s/private/art:v1" % self.host
        self.oras("push", "--plain-http", "--artifact-type", "application/vnd.example.thing",
                  "--export-manifest", "pushed.json", ref, "file.txt:text/plain")
        with open(os.path.join(self.tmp, "pushed.json"), "rb") as f:
            pushed = f.read()
        m = json.loads(pushed)
        self.assertEqual(m["artifactType"], "application/vnd.example.thing")
        self.assertEqual(m["layers"][0]["digest"], sha256(data))
        self.assertEqual(m["layers"][0]["mediaType"], "text/plain")
        self.assert_tag("private/art", "v1", sha256(pushed), images.MT_MANIFEST)
        self.assertEqual(self.get_blob("private/art", sha256(data)), data)
        _, out, _ = self.oras("manifest", "fetch", "--plain-http", ref)
        self.assertEqual(out.encode(), pushed)
        self.oras("pull", "--plain-http", "-o", "pulled", ref)
        with open(os.path.join(self.tmp, "pulled", "file.txt"), "rb") as f:
            self.assertEqual(f.read(), data)
        _, out, _ = self.oras("repo", "tags", "--plain-http", "%s/private/art" % self.host)
        self.assertEqual(out.split(), ["v1"])
        _, out, _ = self.oras("repo", "ls", "--plain-http", self.host)
        self.assertIn("private/art", out.split())

    def test_attach_discover(self):
        subject = "%s/private/app@%s" % (self.host, SINGLE.digest)
        self.write("sig.txt", b"signed, wharf\n")
        self.oras("attach", "--plain-http", "--artifact-type", "application/vnd.example.sig",
                  "--export-manifest", "sig.json", subject, "sig.txt:text/plain")
        with open(os.path.join(self.tmp, "sig.json"), "rb") as f:
            sig = f.read()
        sig_digest = sha256(sig)
        self.assertEqual(json.loads(sig)["subject"]["digest"], SINGLE.digest)
        _, out, _ = self.oras("discover", "--plain-http", "--format", "json",
                              "%s/private/app:1" % self.host)
        found = json.loads(out)["manifests"]
        self.assertEqual([(r["digest"], r["artifactType"]) for r in found],
                         [(sig_digest, "application/vnd.example.sig")])
        # the referrers API directly
        st, h, body = self.wharf.request(
            "GET", "/v2/private/app/referrers/%s" % SINGLE.digest)
        self.assertEqual(st, 200)
        self.assertEqual(h.get("content-type"), images.MT_INDEX)
        idx = json.loads(body)
        self.assertEqual(idx["mediaType"], images.MT_INDEX)
        self.assertEqual([(r["digest"], r["size"], r["artifactType"]) for r in idx["manifests"]],
                         [(sig_digest, len(sig), "application/vnd.example.sig")])
        st, h, body = self.wharf.request(
            "GET", "/v2/private/app/referrers/%s?artifactType=application/vnd.example.none"
            % SINGLE.digest)
        self.assertEqual(st, 200)
        self.assertEqual(h.get("oci-filters-applied"), "artifactType")
        self.assertEqual(json.loads(body)["manifests"], [])
        # the referrers API was used: no fallback tag sha256-<hex>
        st, _, body = self.wharf.request("GET", "/v2/private/app/tags/list")
        self.assertEqual(json.loads(body)["tags"], ["1"])
        # what tells a client so (oras would also find out by asking the API):
        # the manifest PUT answers OCI-Subject
        st, h, body = self.wharf.request("PUT", "/v2/private/app/manifests/%s" % sig_digest,
                                         sig, {"Content-Type": images.MT_MANIFEST})
        self.assertEqual(st, 201, body)
        self.assertEqual(h.get("oci-subject"), SINGLE.digest)
        # deleting the referrer removes it from the list
        self.oras("manifest", "delete", "--plain-http", "--force",
                  "%s/private/app@%s" % (self.host, sig_digest))
        st, _, body = self.wharf.request(
            "GET", "/v2/private/app/referrers/%s" % SINGLE.digest)
        self.assertEqual((st, json.loads(body)["manifests"]), (200, []))
        _, out, _ = self.oras("discover", "--plain-http", "--format", "json",
                              "%s/private/app:1" % self.host)
        self.assertEqual(json.loads(out)["manifests"], [])

    def test_copy_layout(self):
        """oras cp from an OCI layout to wharf and back."""
        self.oras("cp", "--from-oci-layout", "--to-plain-http", "%s:multi" % MULTI.layout,
                  "%s/private/oras-cp:m" % self.host)
        self.assert_tag("private/oras-cp", "m", MULTI.digest, images.MT_INDEX)
        self.assert_image_in_registry("private/oras-cp", MULTI)
        out = os.path.join(self.tmp, "oras-out")
        self.oras("cp", "--from-plain-http", "--to-oci-layout",
                  "%s/private/oras-cp:m" % self.host, "%s:m" % out)
        self.assert_layout_holds(out, "m", MULTI)


if __name__ == "__main__":
    unittest.main()
