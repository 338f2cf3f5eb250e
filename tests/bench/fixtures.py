"""What the bench serves and pushes, made here deterministically (seeded
random data, images.py's layouts):

    manifest_image(dir)        a small single-platform image (warm manifest figures)
    pull_image(dir, big, mid)  small layer + `big` + `mid` random layers (skopeo pull)
    cold_image(dir, size)      small layer + one `size` random layer (pull-through)
    random_blob(path, size)    one file of seeded random bytes (blob GET, pushes)
    nginx_root(root, ...)      the same files at registry API paths, for nginx
    zot_store(root, ...)       an on-disk store of many small repositories (startup)
"""

import hashlib
import os
import random

import images


class BlobFile:
    def __init__(self, digest, size, path, media_type="application/octet-stream"):
        self.digest = digest
        self.size = size
        self.path = path
        self.media_type = media_type


class Fixture:
    """An image to push: repo, tag, the top manifest (bytes, digest, media
    type) and its blobs (config and layers) as files."""

    def __init__(self, img, repo):
        self.repo = repo
        self.tag = img.tag
        self.manifest = img.manifest
        self.digest = img.digest
        self.media_type = img.media_type
        blob_dir = os.path.join(img.layout, "blobs", "sha256")
        self.blobs = [BlobFile(d, b.size, os.path.join(blob_dir, d.split(":", 1)[1]),
                               b.media_type)
                      for d, b in sorted(img.blobs.items()) if d != img.digest]
        self.layers = [self.blob(l.digest) for l in img.layers]

    def blob(self, digest):
        return next(b for b in self.blobs if b.digest == digest)

    @property
    def size(self):
        """Manifest + config + layers: what a pull transfers."""
        return len(self.manifest) + sum(b.size for b in self.blobs)

    @property
    def biggest_layer(self):
        return max(self.layers, key=lambda b: b.size)


def manifest_image(path, repo="bench/manifest"):
    return Fixture(images.single_image(path, tag="v1", salt="bench"), repo)


def pull_image(path, big, mid, repo="bench/pull"):
    """An image of about big + mid bytes: a small gzip layer and two random
    uncompressed layers."""
    layout = images.Layout(path)
    layers = [images.add_layer(layout, [("etc/hostname", b"wharf-bench\n")]),
              images.add_big_layer(layout, big, seed=11),
              images.add_big_layer(layout, mid, seed=12)]
    config = images.add_config(layout, layers)
    blob, data = images.add_manifest(layout, config, layers)
    layout.tag(blob, "v1")
    layout.write_index()
    img = images.Image(path, "v1")
    img.digest, img.size, img.manifest, img.media_type = (blob.digest, blob.size, data,
                                                          blob.media_type)
    img.config, img.layers, img.blobs = config, layers, dict(layout.blobs)
    return Fixture(img, repo)


def cold_image(path, size, repo="bench/cold"):
    return Fixture(images.big_image(path, size, tag="v1", seed=7), repo)


def random_blob(path, size, seed):
    """A file of `size` seeded random bytes; returns its BlobFile."""
    rng = random.Random(seed)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = rng.randbytes(min(left, 4 << 20))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return BlobFile("sha256:" + h.hexdigest(), size, path)


def nginx_root(root, fixtures, blobs=()):
    """Lay the files out where a registry would serve them:
    /v2/<repo>/manifests/<tag> and <digest>, /v2/<repo>/blobs/<digest>
    (hard links where the filesystem allows). blobs: more (repo, BlobFile)."""
    def place(repo, kind, name, src=None, data=None):
        d = os.path.join(root, "v2", repo, kind)
        os.makedirs(d, exist_ok=True)
        dst = os.path.join(d, name)
        if os.path.exists(dst):
            return
        if data is not None:
            with open(dst, "wb") as f:
                f.write(data)
            return
        try:
            os.link(src, dst)
        except OSError:
            with open(src, "rb") as s, open(dst, "wb") as f:
                while True:
                    c = s.read(1 << 20)
                    if not c:
                        break
                    f.write(c)

    for fx in fixtures:
        place(fx.repo, "manifests", fx.tag, data=fx.manifest)
        place(fx.repo, "manifests", fx.digest, data=fx.manifest)
        for b in fx.blobs:
            place(fx.repo, "blobs", b.digest, src=b.path)
    for repo, b in blobs:
        place(repo, "blobs", b.digest, src=b.path)


def zot_store(root, repos, blobs_per_repo):
    """A store as Zot lays it out: <root>/bench/rNNNN/{oci-layout,index.json,
    blobs/sha256/*}, each repository one image (config, manifest and
    blobs_per_repo - 2 small layers) tagged "v1". Returns
    [(repo, manifest digest)]."""
    out = []
    for i in range(repos):
        repo = "bench/r%04d" % i
        layout = images.Layout(os.path.join(root, repo))
        rng = random.Random(i)
        layers = []
        for _ in range(blobs_per_repo - 2):
            b = layout.add_bytes(images.MT_LAYER_TAR, rng.randbytes(rng.randint(256, 2048)))
            b.diff_id = b.digest
            layers.append(b)
        config = images.add_config(layout, layers)
        blob, _ = images.add_manifest(layout, config, layers)
        layout.tag(blob, "v1")
        layout.write_index()
        out.append((repo, blob.digest))
    return out
