"""Test images made here, with no network and deterministically: the same
call gives the same bytes, hence the same digests, every time (fixed mtimes,
owners and modes in the tars, gzip with mtime 0, seeded random content).

Each function writes an OCI image layout (oci-layout, index.json,
blobs/sha256/<hex>) and returns an Image describing what it wrote, so a test
can compare every digest a client reports with what was pushed:

    img = images.single_image(dir)          # linux/amd64, 3 gzip layers
    img = images.multi_image(dir)           # index: linux/amd64 + linux/arm64
    img = images.big_image(dir, 96 << 20)   # one big random layer (benchmarks)

    skopeo copy oci:<img.layout>:<img.tag> docker://...

The layout's index.json names the top manifest (image manifest or image
index) with org.opencontainers.image.ref.name = tag, which is what skopeo's
`oci:<dir>:<tag>` and oras' `--oci-layout <dir>:<tag>` look up.
"""

import gzip
import hashlib
import io
import json
import os
import random
import tarfile

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# The media types of an image in each format ("oci", "docker": Docker image
# manifest v2 schema 2 and manifest list).
FORMATS = {
    "oci": {"manifest": MT_MANIFEST, "index": MT_INDEX, "config": MT_CONFIG,
            "layer": MT_LAYER_GZIP},
    "docker": {"manifest": MT_DOCKER_MANIFEST, "index": MT_DOCKER_LIST,
               "config": MT_DOCKER_CONFIG, "layer": MT_DOCKER_LAYER_GZIP},
}
MANIFEST_TYPES = (MT_MANIFEST, MT_INDEX, MT_DOCKER_MANIFEST, MT_DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"

# A fixed time for everything: 2024-01-01T00:00:00Z.
EPOCH = 1704067200
CREATED = "2024-01-01T00:00:00Z"


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    """The bytes a manifest/config is stored as (compact, sorted keys)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Blob:
    """One blob written to the layout."""

    def __init__(self, media_type, digest, size, diff_id=None):
        self.media_type = media_type
        self.digest = digest
        self.size = size
        self.diff_id = diff_id   # layers: sha256 of the uncompressed tar

    def descriptor(self, **extra):
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(extra)
        return d

    def __repr__(self):
        return "Blob(%s, %s, %d)" % (self.media_type, self.digest, self.size)


class Image:
    """What a function wrote.

    layout:   the OCI layout directory
    tag:      the ref name of the top manifest in index.json
    digest:   the digest of the top manifest (image manifest, or index)
    media_type, manifest (bytes), size: of the top manifest
    config, layers: Blobs (single-platform image)
    children: {"linux/amd64": Image, ...} (index); empty for an image
    blobs:    {digest: Blob} of every blob and manifest in the layout
    """

    def __init__(self, layout, tag):
        self.layout = layout
        self.tag = tag
        self.digest = None
        self.media_type = None
        self.manifest = None
        self.size = 0
        self.config = None
        self.layers = []
        self.children = {}
        self.platform = None
        self.blobs = {}

    @property
    def ref(self):
        """oci:<layout>:<tag>, for skopeo."""
        return "oci:%s:%s" % (self.layout, self.tag)

    def all_digests(self):
        """Every digest reachable from the top manifest, the top one included."""
        out = {self.digest}
        if self.config:
            out.add(self.config.digest)
        out.update(l.digest for l in self.layers)
        for c in self.children.values():
            out |= c.all_digests()
        return out

    def __repr__(self):
        return "Image(%s:%s %s)" % (self.layout, self.tag, self.digest)


class Layout:
    """An OCI image layout being written."""

    def __init__(self, path):
        self.path = path
        self.blob_dir = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blob_dir, exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.blobs = {}
        self.index_entries = []

    def _blob_path(self, digest):
        return os.path.join(self.blob_dir, digest.split(":", 1)[1])

    def add_bytes(self, media_type, data, diff_id=None):
        digest = sha256_digest(data)
        path = self._blob_path(digest)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
        b = Blob(media_type, digest, len(data), diff_id)
        self.blobs[digest] = b
        return b

    def add_file(self, media_type, tmp_path, digest, size, diff_id=None):
        os.replace(tmp_path, self._blob_path(digest))
        b = Blob(media_type, digest, size, diff_id)
        self.blobs[digest] = b
        return b

    def tag(self, blob, tag):
        d = blob.descriptor()
        if tag:
            d["annotations"] = {REF_NAME: tag}
        self.index_entries.append(d)

    def write_index(self):
        idx = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": self.index_entries}
        with open(os.path.join(self.path, "index.json"), "wb") as f:
            f.write(canonical_json(idx))


# ---- layers ----

def _tarinfo(name, size=0, kind=tarfile.REGTYPE, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mode = mode
    ti.mtime = EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def make_tar(files):
    """files: [(path, bytes or None for a directory)], in order. Parent
    directories are added first. Returns the uncompressed tar bytes."""
    buf = io.BytesIO()
    seen = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in files:
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in seen:
                    seen.add(d)
                    tf.addfile(_tarinfo(d, kind=tarfile.DIRTYPE, mode=0o755))
            if data is None:
                if path not in seen:
                    seen.add(path)
                    tf.addfile(_tarinfo(path, kind=tarfile.DIRTYPE, mode=0o755))
            else:
                mode = 0o755 if path.startswith("bin/") else 0o644
                tf.addfile(_tarinfo(path, len(data), mode=mode), io.BytesIO(data))
    return buf.getvalue()


def gzip_bytes(data, level=6):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0,
                       compresslevel=level) as g:
        g.write(data)
    return buf.getvalue()


def add_layer(layout, files, compress=True, fmt="oci"):
    tar = make_tar(files)
    diff_id = sha256_digest(tar)
    if compress:
        return layout.add_bytes(FORMATS[fmt]["layer"], gzip_bytes(tar), diff_id)
    return layout.add_bytes(MT_LAYER_TAR, tar, diff_id)


class _RandomReader:
    """A file-like object of `size` seeded random bytes, produced in chunks
    (random.Random.randbytes is fast, and memory stays bounded)."""

    CHUNK = 1 << 20

    def __init__(self, size, seed):
        self.left = size
        self.rng = random.Random(seed)

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.left
        n = min(n, self.left)
        out = []
        got = 0
        while got < n:
            k = min(self.CHUNK, n - got)
            out.append(self.rng.randbytes(k))
            got += k
        self.left -= n
        return b"".join(out)


class _HashingWriter:
    """Writes to a file while hashing; optionally also hashes what went in
    before compression (see add_big_layer)."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.f.write(data)
        self.h.update(data)
        self.size += len(data)
        return len(data)

    def flush(self):
        self.f.flush()


class _TeeHash:
    """A writable that hashes what passes through to `inner`."""

    def __init__(self, inner):
        self.inner = inner
        self.h = hashlib.sha256()

    def write(self, data):
        self.h.update(data)
        return self.inner.write(data)

    def flush(self):
        pass


def add_big_layer(layout, size, seed=1, compress=False):
    """A layer with one file of `size` seeded random bytes, streamed to disk.
    Uncompressed by default: random bytes do not compress and gzip would only
    cost time (the layer is then application/vnd.oci.image.layer.v1.tar and
    its digest is its diff_id)."""
    tmp = os.path.join(layout.path, "big.tmp")
    with open(tmp, "wb") as f:
        out = _HashingWriter(f)
        if compress:
            g = gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=1)
            inner = _TeeHash(g)
        else:
            g = None
            inner = _TeeHash(out)
        with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            tf.addfile(_tarinfo("data", kind=tarfile.DIRTYPE, mode=0o755))
            tf.addfile(_tarinfo("data/random.bin", size), _RandomReader(size, seed))
        if g:
            g.close()
    digest = "sha256:" + out.h.hexdigest()
    diff_id = "sha256:" + inner.h.hexdigest()
    mt = MT_LAYER_GZIP if compress else MT_LAYER_TAR
    return layout.add_file(mt, tmp, digest, out.size, diff_id)


# ---- configs and manifests ----

def add_config(layout, layers, os_="linux", arch="amd64", variant=None, cmd=None, fmt="oci"):
    cfg = {
        "created": CREATED,
        "architecture": arch,
        "os": os_,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": cmd or ["/bin/hello"],
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.title": "wharf-test"},
        },
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
        "history": [{"created": CREATED, "created_by": "wharf tests/integration/images.py"}
                    for _ in layers],
    }
    if variant:
        cfg["variant"] = variant
    return layout.add_bytes(FORMATS[fmt]["config"], canonical_json(cfg))


def add_manifest(layout, config, layers, annotations=None, subject=None,
                 artifact_type=None, fmt="oci"):
    mt = FORMATS[fmt]["manifest"]
    m = {
        "schemaVersion": 2,
        "mediaType": mt,
        "config": config.descriptor(),
        "layers": [l.descriptor() for l in layers],
    }
    if annotations:
        m["annotations"] = annotations
    if subject:
        m["subject"] = subject
    if artifact_type:
        m["artifactType"] = artifact_type
    data = canonical_json(m)
    return layout.add_bytes(mt, data), data


def _image_layers(layout, platform, salt, fmt="oci"):
    """Three small gzip layers whose content depends on platform and salt."""
    arch = platform.split("/")[1]
    return [
        add_layer(layout, [
            ("bin/hello", ("#!/bin/sh\necho hello from %s %s\n" % (platform, salt)).encode()),
            ("etc/os-release", b'NAME="wharf-test"\nID=wharf\n'),
        ], fmt=fmt),
        add_layer(layout, [
            ("etc/hostname", b"wharf-test\n"),
            ("usr/share/doc/wharf/README", ("arch %s\n" % arch).encode() * 40),
            ("var/empty", None),
        ], fmt=fmt),
        add_layer(layout, [
            ("opt/app/data.bin", random.Random("%s-%s" % (platform, salt)).randbytes(20000)),
            ("opt/app/VERSION", ("%s\n" % salt).encode()),
        ], fmt=fmt),
    ]


def _build_image(layout, tag, platform="linux/amd64", salt="1", layers=None, fmt="oci"):
    os_, arch = platform.split("/")[:2]
    variant = "v8" if arch == "arm64" else None
    img = Image(layout.path, tag)
    img.platform = platform
    img.layers = layers if layers is not None else _image_layers(layout, platform, salt, fmt)
    img.config = add_config(layout, img.layers, os_, arch, variant, fmt=fmt)
    blob, data = add_manifest(layout, img.config, img.layers, fmt=fmt)
    img.digest, img.size, img.manifest, img.media_type = blob.digest, blob.size, data, blob.media_type
    return img, blob


def single_image(path, tag="1", salt="1", fmt="oci"):
    """A linux/amd64 image with 3 gzip layers (a few files each) at path.
    fmt="docker": a Docker schema 2 image (docker media types throughout;
    skopeo's oci: transport does not read such a layout, push() does)."""
    layout = Layout(path)
    img, blob = _build_image(layout, tag, "linux/amd64", salt, fmt=fmt)
    layout.tag(blob, tag)
    layout.write_index()
    img.blobs = dict(layout.blobs)
    return img


def multi_image(path, tag="multi", salt="m",
                platforms=("linux/amd64", "linux/arm64"), fmt="oci"):
    """An image index (fmt="docker": a Docker manifest list) with one child
    image per platform at path."""
    layout = Layout(path)
    top = Image(path, tag)
    descs = []
    for p in platforms:
        child, blob = _build_image(layout, None, p, salt, fmt=fmt)
        top.children[p] = child
        plat = {"architecture": p.split("/")[1], "os": p.split("/")[0]}
        if p.split("/")[1] == "arm64":
            plat["variant"] = "v8"
        descs.append(blob.descriptor(platform=plat))
    mt = FORMATS[fmt]["index"]
    idx = {"schemaVersion": 2, "mediaType": mt, "manifests": descs}
    data = canonical_json(idx)
    blob = layout.add_bytes(mt, data)
    top.digest, top.size, top.manifest, top.media_type = blob.digest, blob.size, data, mt
    layout.tag(blob, tag)
    layout.write_index()
    top.blobs = dict(layout.blobs)
    for c in top.children.values():
        c.blobs = top.blobs
    return top


def big_image(path, size=96 << 20, tag="big", seed=1, compress=False, salt=None):
    """A linux/amd64 image: one small gzip layer plus one layer holding
    `size` bytes of seeded random data (uncompressed tar by default; ~2.5 s
    for 96 MiB with compress=True, gzip level 1). The small layer is the same
    in every such image unless `salt` (a string) goes into it.

    Note: skopeo/podman compress an uncompressed layer when they push it to
    a registry, so the pushed digests differ from these; use compress=True
    when a client pushes it, or push() (byte-exact) and let clients pull."""
    layout = Layout(path)
    small = add_layer(layout, [("etc/hostname", b"wharf-big\n" if salt is None
                                else ("wharf-big %s\n" % salt).encode())])
    big = add_big_layer(layout, size, seed, compress)
    img, blob = _build_image(layout, tag, "linux/amd64", layers=[small, big])
    layout.tag(blob, tag)
    layout.write_index()
    img.blobs = dict(layout.blobs)
    return img


def verify_layout(path):
    """Check every blob of a layout hashes to its name; returns the number
    checked (raises AssertionError otherwise). Handy for what a client wrote."""
    d = os.path.join(path, "blobs", "sha256")
    n = 0
    for name in os.listdir(d):
        h = hashlib.sha256()
        with open(os.path.join(d, name), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != name:
            raise AssertionError("blob %s hashes to %s" % (name, h.hexdigest()))
        n += 1
    return n


def layout_index(path):
    with open(os.path.join(path, "index.json"), "rb") as f:
        return json.load(f)


def layout_ref(path, tag):
    """The descriptor index.json gives tag, or None."""
    for m in layout_index(path).get("manifests", []):
        if (m.get("annotations") or {}).get(REF_NAME) == tag:
            return m
    return None


# ---- pushing without a client ----

def _blob_bytes(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


def push(hostport, img, repo, tag=None, timeout=60):
    """Push img (every blob, child manifests, then the top manifest, tagged
    `tag`, default img.tag) to the registry at hostport with plain HTTP, with
    no client tool: monolithic POST ?digest= uploads, then manifest PUTs.
    Raises AssertionError with the registry's answer when a step fails.
    Returns the Docker-Content-Digest of the top manifest."""
    import http.client
    from urllib.parse import quote
    host, port = hostport.rsplit(":", 1)

    def req(method, path, body=None, headers=None):
        c = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    manifests = {img.digest}
    for c in img.children.values():
        manifests.add(c.digest)
    for d, b in img.blobs.items():
        if d in manifests or b.media_type in MANIFEST_TYPES:
            continue
        st, _, _ = req("HEAD", "/v2/%s/blobs/%s" % (repo, d))
        if st == 200:
            continue
        st, h, body = req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, quote(d)),
                          _blob_bytes(img.layout, d),
                          {"Content-Type": "application/octet-stream"})
        if st != 201:
            raise AssertionError("push blob %s: %d %r" % (d, st, body[:300]))
    for c in img.children.values():
        st, h, body = req("PUT", "/v2/%s/manifests/%s" % (repo, c.digest), c.manifest,
                          {"Content-Type": c.media_type})
        if st != 201:
            raise AssertionError("push manifest %s: %d %r" % (c.digest, st, body[:300]))
    st, h, body = req("PUT", "/v2/%s/manifests/%s" % (repo, tag or img.tag), img.manifest,
                      {"Content-Type": img.media_type})
    if st != 201:
        raise AssertionError("push manifest %s: %d %r" % (img.digest, st, body[:300]))
    return h.get("docker-content-digest")


if __name__ == "__main__":
    import sys
    import tempfile
    import time
    base = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="wharf-img-")
    for fn, kw in ((single_image, {}), (multi_image, {})):
        img = fn(os.path.join(base, fn.__name__), **kw)
        print(fn.__name__, img.ref, img.digest, len(img.blobs), "blobs")
    if "--big" in sys.argv:
        t = time.monotonic()
        img = big_image(os.path.join(base, "big"))
        print("big_image", img.ref, img.digest, "%.1fs" % (time.monotonic() - t))
