"""Wharf behind a TLS reverse proxy, as users run it (https://cache.example.com
-> http://127.0.0.1:5000), with the configs from examples/:

    clients (skopeo, ctr, http.client over TLS)
        -> nginx (examples/nginx.conf) | Caddy (examples/Caddyfile)
            -> wharf (local pushes, and extensions.sync under /dockerhub)
                -> fakes/faults.py (throttles the big layer) -> docker-registry

Each proxy runs a config derived from its example: only the listen address,
the certificate (self-signed, made here with openssl; clients trust it or skip
verification) and Wharf's port are replaced, and each replacement must match
the example exactly once, so an edit to the example that the test no longer
covers fails here. For each proxy:

    push with skopeo, pull back, digests equal (image and index)
    a 40 MiB blob pushed chunked (PATCH + Content-Range), streamed (PATCH with
        Transfer-Encoding: chunked, as docker push does) and monolithic
        (POST ?digest=, POST + PUT), read back; Range through the proxy;
        the same over HTTP/2 (curl)
    Wharf's relative Location headers followed through the proxy
    pull-through by skopeo, digests equal the upstream's; the 40 MiB layer
        streams through the proxy while Wharf is still receiving it
    Host and X-Forwarded-* as the proxy sends them (to a header echo: a
        fixture check, NginxConfigFixtures / CaddyConfigFixtures)
    examples/registries.conf (skopeo) and examples/containerd-hosts.toml (ctr)
        pointed at the proxy: docker.io/library/... comes from the mirror;
        examples/docker/daemon.json with examples/config-mirror-root.json
    nginx only: nothing spooled to its temp files (request and response
        buffering off, HTTP/1.1 to Wharf), from nginx's own warnings

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 -m unittest -v test_proxy
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import images
import upstream as up
from harness import WHARF_BIN, WHARF_SRC, Server, Wharf, derive, free_port, have

EXAMPLES = os.path.join(WHARF_SRC, "examples")
BIG = 40 << 20          # over 32 MiB on purpose
CHUNK = 16 << 20        # chunked upload: 16 + 16 + 8 MiB
THROTTLE = 16e6         # upstream rate for the big layer: ~2.6 s for 40 MiB

STATE = {}


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)
    for tool in ("docker-registry", "skopeo", "openssl"):
        if not have(tool):
            raise unittest.SkipTest("%s not installed" % tool)
    tmp = tempfile.mkdtemp(prefix="wharf-proxy-")
    os.chmod(tmp, 0o755)   # nginx workers (nobody) reach their temp dirs below
    STATE["tmp"] = tmp
    try:
        # One self-signed certificate for 127.0.0.1, used by both proxies.
        crt, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        up.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        STATE["crt"], STATE["key"] = crt, key

        lay = os.path.join(tmp, "layouts")
        STATE["img"] = images.single_image(os.path.join(lay, "single"), "1", salt="proxy")
        STATE["multi"] = images.multi_image(os.path.join(lay, "multi"), "m", salt="proxy-m")
        STATE["big"] = images.big_image(os.path.join(lay, "big"), BIG, tag="1", seed=7)
        STATE["upbig"] = images.big_image(os.path.join(lay, "upbig"), BIG, tag="latest",
                                          seed=8)

        # The upstream: Distribution, seeded byte-exact, behind a fault proxy
        # that throttles the big layer (so its streaming can be observed).
        dist = up.Distribution().start()
        STATE["dist"] = dist
        seed(dist, images.single_image(os.path.join(lay, "busy"), "latest",
                                       salt="proxy-busy"), "library/busy")
        seed(dist, images.multi_image(os.path.join(lay, "umulti"), "latest",
                                      salt="proxy-umulti"), "library/multi")
        seed(dist, STATE["upbig"], "library/big")
        client = up.upstream_client(dist)
        STATE["ups"] = {n: up.read_image(client, n, "latest")
                        for n in ("library/busy", "library/multi", "library/big")}
        flt = up.FaultProxy(dist.url).start()
        STATE["faults"] = flt
        flt.set("throttle", rate_bytes_per_s=THROTTLE,
                path_contains=STATE["upbig"].layers[1].digest)
    except BaseException:
        tearDownModule()
        raise


def seed(dist, img, repo):
    """Push img to Distribution byte-exact (upstream.push_exact)."""
    up.push_exact(dist.hostport, img, repo)


def tearDownModule():
    for k in ("ctrd", "faults", "dist"):
        s = STATE.pop(k, None)
        if s:
            s.stop()
            s.cleanup()
    if STATE.get("tmp"):
        shutil.rmtree(STATE["tmp"], ignore_errors=True)
    STATE.clear()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_bytes(img, digest):
    with open(os.path.join(img.layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


def read_example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


# ------------------------------------------------------------------ the proxies

class Front(Server):
    """A reverse proxy (TLS) in front of one Wharf."""

    name = None

    def __init__(self, tmp, wharf_port):
        d = os.path.join(tmp, self.name)
        os.makedirs(d)
        os.chmod(d, 0o755)
        super().__init__(d)
        self.wharf_port = wharf_port


class Nginx(Front):
    name = "nginx"

    def argv(self):
        d = self.dir
        site = derive(read_example("nginx.conf"), [
            ("server 127.0.0.1:5000;", "server 127.0.0.1:%d;" % self.wharf_port),
            ("\tlisten 80;\n", "\tlisten 127.0.0.1:%d;\n" % free_port()),
            ("\tlisten [::]:80;\n", ""),
            ("\tlisten 443 ssl http2;\n", "\tlisten 127.0.0.1:%d ssl http2;\n" % self.port),
            ("\tlisten [::]:443 ssl http2;\n", ""),
            ("/etc/letsencrypt/live/cache.example.com/fullchain.pem;", STATE["crt"] + ";"),
            ("/etc/letsencrypt/live/cache.example.com/privkey.pem;", STATE["key"] + ";"),
        ])
        with open(os.path.join(d, "wharf.conf"), "w") as f:
            f.write(site)
        # What Debian's /etc/nginx/nginx.conf would be, in the temp dir.
        main = """\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
  sendfile on;
  tcp_nopush on;
  gzip on;
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  include {d}/wharf.conf;
}}
""".format(d=d)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(main)
        return ["nginx", "-c", conf, "-p", d, "-e", os.path.join(d, "error.log"),
                "-g", "daemon off;"]

    def logs(self):
        return [self.log_path, os.path.join(self.dir, "error.log"),
                os.path.join(self.dir, "access.log")]


class Caddy(Front):
    name = "caddy"

    def argv(self):
        d = self.dir
        cf = derive(read_example("Caddyfile"), [
            # Global options: no admin endpoint, no ACME, nothing outside d.
            ("\n{\n", "\n{\n\tadmin off\n\tauto_https off\n"
                      "\tstorage file_system %s\n\thttp_port %d\n\thttps_port %d\n"
                      % (os.path.join(d, "data"), free_port(), self.port)),
            ("\ncache.example.com {\n", "\nhttps://127.0.0.1:%d {\n\ttls %s %s\n"
                                        % (self.port, STATE["crt"], STATE["key"])),
            ("reverse_proxy 127.0.0.1:5000 {", "reverse_proxy 127.0.0.1:%d {" % self.wharf_port),
        ])
        conf = os.path.join(d, "Caddyfile")
        with open(conf, "w") as f:
            f.write(cf)
        return ["caddy", "run", "--config", conf, "--adapter", "caddyfile"]

    def env(self):
        e = dict(os.environ)
        for k, sub in (("HOME", "home"), ("XDG_DATA_HOME", "xdg-data"),
                       ("XDG_CONFIG_HOME", "xdg-config"), ("XDG_CACHE_HOME", "xdg-cache")):
            e[k] = os.path.join(self.dir, sub)
            os.makedirs(e[k], exist_ok=True)
        return e


# ------------------------------------------------------------------ the tests

class ProxyCases:
    """One Wharf and one proxy per class; each test uses its own names."""

    front_class = None

    @classmethod
    def setUpClass(cls):
        if not have(cls.front_class.name):
            raise unittest.SkipTest("%s not installed" % cls.front_class.name)
        cls.tmp = tempfile.mkdtemp(prefix="%s-" % cls.front_class.name, dir=STATE["tmp"])
        os.chmod(cls.tmp, 0o755)
        cls.wharf = cls.front = None
        try:
            cls.wharf = Wharf(up.sync_config(STATE["faults"].url, destination="/dockerhub"))
            cls.wharf.start()
            cls.front = cls.front_class(cls.tmp, cls.wharf.port).start()
        except BaseException:
            cls.tearDownClass()
            raise
        cls.hostport = "127.0.0.1:%d" % cls.front.port
        cls.ctx = ssl.create_default_context(cafile=STATE["crt"])   # verified

    @classmethod
    def tearDownClass(cls):
        if cls.front:
            cls.front.stop()
        if cls.wharf:
            rc = cls.wharf.stop()
            log = cls.wharf.log()
            cls.wharf.cleanup()
            # A crash (or a sanitizer report) behind the proxy fails the class.
            if rc != 0:
                raise AssertionError("wharf exited %r:\n%s" % (rc, log[-3000:]))

    # ---- helpers ----

    def diag(self):
        return "\n-- %s:\n%s\n-- wharf log (tail):\n%s" % (
            self.front.name, self.front.log(), "\n".join(self.wharf.log().splitlines()[-15:]))

    def conn(self, timeout=60):
        return http.client.HTTPSConnection("127.0.0.1", self.front.port, timeout=timeout,
                                           context=self.ctx)

    def req(self, method, path, body=None, headers=None, timeout=60):
        """One request through the proxy: (status, headers (lower-case), body)."""
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def skopeo(self, *args):
        try:
            return up.skopeo(os.path.join(self.tmp, "skopeo"), *args, timeout=120)
        except RuntimeError as e:
            self.fail("%s%s" % (e, self.diag()))

    def location(self, h, prefix):
        """Wharf's Location as the client sees it: relative, under prefix."""
        loc = h.get("location", "")
        self.assertTrue(loc.startswith(prefix), "Location %r, want %s...%s"
                        % (loc, prefix, self.diag()))
        return loc

    def assert_blob(self, repo, digest, size):
        """GET (streamed, hashed) and HEAD through the proxy."""
        c = self.conn()
        try:
            c.request("GET", "/v2/%s/blobs/%s" % (repo, digest))
            r = c.getresponse()
            if r.status != 200:
                self.fail("GET blob: %d %s%s" % (r.status, r.read()[:300], self.diag()))
            h, n = hashlib.sha256(), 0
            for chunk in iter(lambda: r.read(1 << 20), b""):
                h.update(chunk)
                n += len(chunk)
        finally:
            c.close()
        self.assertEqual(("sha256:" + h.hexdigest(), n), (digest, size))
        st, hd, _ = self.req("HEAD", "/v2/%s/blobs/%s" % (repo, digest))
        self.assertEqual((st, hd.get("content-length"), hd.get("docker-content-digest")),
                         (200, str(size), digest))

    def put_manifest(self, repo, img, tag):
        st, h, body = self.req("PUT", "/v2/%s/manifests/%s" % (repo, tag), img.manifest,
                               {"Content-Type": img.media_type})
        self.assertEqual(st, 201, "%s%s" % (body[:300], self.diag()))
        self.assertEqual(h.get("docker-content-digest"), img.digest)
        self.location(h, "/v2/%s/manifests/" % repo)

    def pull(self, ref, *extra):
        """skopeo copy docker://<proxy>/ref to a dir: (which keeps manifests and
        layers as they are; oci: would compress the uncompressed big layer).
        Checks every blob file against its name; returns the top manifest's digest."""
        out = os.path.join(tempfile.mkdtemp(dir=self.tmp), "out")
        self.skopeo("copy", "--quiet", "--retry-times", "0", "--src-tls-verify=false",
                    *extra, "docker://%s/%s" % (self.hostport, ref), "dir:" + out)
        names = os.listdir(out)
        blobs = [n for n in names if re.fullmatch(r"[0-9a-f]{64}", n)]
        self.assertTrue(blobs, names)
        for n in blobs:
            self.assertEqual(up.sha256_file(os.path.join(out, n)), "sha256:" + n)
        with open(os.path.join(out, "manifest.json"), "rb") as f:
            return sha256(f.read())

    # ---- basics ----

    def test_v2_through_tls(self):
        st, h, _ = self.req("GET", "/v2/")
        self.assertEqual(st, 200, self.diag())
        self.assertEqual(h.get("docker-distribution-api-version"), "registry/2.0")
        st, h, body = self.req("GET", "/v2/private/none/manifests/x",
                               headers={"Accept": images.MT_MANIFEST})
        self.assertEqual(st, 404)
        self.assertIn(b'"NAME_UNKNOWN"', body)   # Wharf's error body, not the proxy's

    # ---- pushes and pulls by clients ----

    def test_skopeo_push_pull(self):
        for img, repo, extra in ((STATE["img"], "private/app", ()),
                                 (STATE["multi"], "private/multi", ("--all",))):
            self.skopeo("copy", "--quiet", "--retry-times", "0", "--dest-tls-verify=false",
                        *extra, img.ref, "docker://%s/%s:%s" % (self.hostport, repo, img.tag))
            # What landed in Wharf, asked directly.
            st, h, _ = self.wharf.request("HEAD", "/v2/%s/manifests/%s" % (repo, img.tag),
                                          headers={"Accept": img.media_type})
            self.assertEqual((st, h.get("docker-content-digest")), (200, img.digest))
            # Back through the proxy.
            raw = self.skopeo("inspect", "--raw", "--tls-verify=false",
                              "docker://%s/%s:%s" % (self.hostport, repo, img.tag)).stdout
            self.assertEqual(sha256(raw.encode()), img.digest)
            self.assertEqual(self.pull("%s:%s" % (repo, img.tag), *extra), img.digest)

    # ---- big blobs, by hand ----

    def test_big_blob_chunked_then_skopeo_pull(self):
        """The 40 MiB layer in three PATCHes (Content-Range), every step at the
        relative Location Wharf gave; the rest monolithic; then skopeo pulls the
        image through the proxy."""
        img, repo = STATE["big"], "private/big-chunked"
        layer = img.layers[1]
        data = blob_bytes(img, layer.digest)
        self.assertGreater(len(data), 32 << 20)
        st, h, body = self.req("POST", "/v2/%s/blobs/uploads/" % repo)
        self.assertEqual(st, 202, "%s%s" % (body[:300], self.diag()))
        loc = self.location(h, "/v2/%s/blobs/uploads/" % repo)
        for off in range(0, len(data), CHUNK):
            piece = data[off:off + CHUNK]
            st, h, body = self.req("PATCH", loc, piece, {
                "Content-Type": "application/octet-stream",
                "Content-Range": "%d-%d" % (off, off + len(piece) - 1)})
            self.assertEqual(st, 202, "%s%s" % (body[:300], self.diag()))
            self.assertEqual(h.get("range"), "0-%d" % (off + len(piece) - 1))
            loc = self.location(h, "/v2/%s/blobs/uploads/" % repo)
        sep = "&" if "?" in loc else "?"
        st, h, body = self.req("PUT", loc + sep + "digest=" + layer.digest)
        self.assertEqual(st, 201, "%s%s" % (body[:300], self.diag()))
        self.assertEqual(self.location(h, "/v2/%s/blobs/" % repo),
                         "/v2/%s/blobs/%s" % (repo, layer.digest))
        self.assert_blob(repo, layer.digest, len(data))
        for b in (img.layers[0], img.config):
            st, _, body = self.req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, b.digest),
                                   blob_bytes(img, b.digest),
                                   {"Content-Type": "application/octet-stream"})
            self.assertEqual(st, 201, body[:300])
        self.put_manifest(repo, img, "1")
        self.assertEqual(self.pull(repo + ":1"), img.digest)

    def test_big_blob_streamed_patch(self):
        """One PATCH with Transfer-Encoding: chunked and no length (docker push
        does this), then PUT ?digest=."""
        img, repo = STATE["big"], "private/big-streamed"
        data = blob_bytes(img, img.layers[1].digest)
        st, h, body = self.req("POST", "/v2/%s/blobs/uploads/" % repo)
        self.assertEqual(st, 202, body[:300])
        loc = self.location(h, "/v2/%s/blobs/uploads/" % repo)

        def pieces():
            for off in range(0, len(data), 1 << 20):
                yield data[off:off + (1 << 20)]
        c = self.conn()
        try:
            c.request("PATCH", loc, body=pieces(), encode_chunked=True,
                      headers={"Content-Type": "application/octet-stream",
                               "Transfer-Encoding": "chunked"})
            r = c.getresponse()
            st, h, body = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()
        self.assertEqual(st, 202, "%s%s" % (body[:300], self.diag()))
        self.assertEqual(h.get("range"), "0-%d" % (len(data) - 1))
        loc = self.location(h, "/v2/%s/blobs/uploads/" % repo)
        sep = "&" if "?" in loc else "?"
        st, h, body = self.req("PUT", loc + sep + "digest=" + img.layers[1].digest)
        self.assertEqual(st, 201, "%s%s" % (body[:300], self.diag()))
        self.assert_blob(repo, img.layers[1].digest, len(data))

    def test_big_blob_monolithic(self):
        img = STATE["big"]
        d = img.layers[1].digest
        data = blob_bytes(img, d)
        # POST ?digest= with the whole body.
        repo = "private/big-post"
        st, h, body = self.req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, d), data,
                               {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, "%s%s" % (body[:300], self.diag()))
        self.assertEqual(self.location(h, "/v2/%s/blobs/" % repo), "/v2/%s/blobs/%s" % (repo, d))
        self.assert_blob(repo, d, len(data))
        # POST, then PUT ?digest= with the whole body.
        repo = "private/big-put"
        st, h, body = self.req("POST", "/v2/%s/blobs/uploads/" % repo)
        self.assertEqual(st, 202, body[:300])
        loc = self.location(h, "/v2/%s/blobs/uploads/" % repo)
        sep = "&" if "?" in loc else "?"
        st, h, body = self.req("PUT", loc + sep + "digest=" + d, data,
                               {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, "%s%s" % (body[:300], self.diag()))
        self.assert_blob(repo, d, len(data))
        # A Range read through the proxy.
        st, h, body = self.req("GET", "/v2/%s/blobs/%s" % (repo, d),
                               headers={"Range": "bytes=1000-1999"})
        self.assertEqual((st, body), (206, data[1000:2000]))
        self.assertEqual(h.get("content-range"), "bytes 1000-1999/%d" % len(data))

    def test_wrong_digest_rejected_through_proxy(self):
        """Wharf's 400 (with its JSON error) reaches the client; nothing is stored."""
        repo = "private/bad"
        data = b"x" * 100000
        st, h, body = self.req("POST", "/v2/%s/blobs/uploads/?digest=%s"
                               % (repo, sha256(b"something else")), data,
                               {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 400, body[:300])
        self.assertIn(b"DIGEST_INVALID", body)
        st, _, _ = self.req("HEAD", "/v2/%s/blobs/%s" % (repo, sha256(data)))
        self.assertEqual(st, 404)

    def test_http2_client(self):
        """curl over HTTP/2 (skopeo and ctr speak HTTP/1.1 here): a streamed
        PATCH with no length, the PUT, the GET."""
        if not have("curl"):
            self.skipTest("curl not installed")
        img, repo = STATE["big"], "private/h2"
        d = img.layers[1].digest
        path = os.path.join(img.layout, "blobs", "sha256", d.split(":", 1)[1])
        base = "https://%s" % self.hostport

        def curl(*args, stdin=None):
            p = subprocess.run(["curl", "-sS", "--http2", "--cacert", STATE["crt"], "-D", "-",
                                "-o", "/dev/null", "-w", "\nversion=%{http_version}\n"] +
                               list(args), stdin=stdin, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
            out = p.stdout.decode("utf-8", "replace").replace("\r", "")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("version=2\n", out)
            head = out.split("\n\n", 1)[0].split("\n")
            hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip()
                    for l in head[1:] if ":" in l}
            return int(head[0].split()[1]), hdrs

        st, h = curl("-X", "POST", base + "/v2/%s/blobs/uploads/" % repo)
        self.assertEqual(st, 202)
        loc = self.location(h, "/v2/%s/blobs/uploads/" % repo)
        with open(path, "rb") as f:   # -T - : from stdin, no Content-Length
            st, h = curl("-X", "PATCH", "-H", "Content-Type: application/octet-stream",
                         "-T", "-", base + loc, stdin=f)
        self.assertEqual((st, h.get("range")), (202, "0-%d" % (img.layers[1].size - 1)),
                         self.diag())
        loc = self.location(h, "/v2/%s/blobs/uploads/" % repo)
        st, h = curl("-X", "PUT", base + loc + ("&" if "?" in loc else "?") + "digest=" + d)
        self.assertEqual(st, 201, self.diag())
        p = subprocess.run(["curl", "-sS", "--http2", "--cacert", STATE["crt"],
                            base + self.location(h, "/v2/%s/blobs/" % repo)],
                           stdout=subprocess.PIPE, timeout=60)
        self.assertEqual(sha256(p.stdout), d)

    # ---- pull-through ----

    def test_pull_through_skopeo(self):
        for name, extra in (("library/busy", ()), ("library/multi", ("--all",))):
            u = STATE["ups"][name]
            self.assertEqual(self.pull("dockerhub/%s:latest" % name, *extra), u.digest)

    def test_pull_through_big_layer_streams(self):
        """The 40 MiB layer, not cached yet, comes from an upstream throttled to
        ~16 MB/s: its first MiB must reach the client through the proxy long
        before the last one (the proxy does not hold the tee'd stream)."""
        u = STATE["ups"]["library/big"]
        repo = "dockerhub/library/big"
        st, h, _ = self.req("GET", "/v2/%s/manifests/latest" % repo,
                            headers={"Accept": up.MANIFEST_ACCEPT})
        self.assertEqual((st, h.get("docker-content-digest")), (200, u.digest), self.diag())
        d = u.layers[1]
        size = u.blobs[d]
        self.assertGreater(size, 32 << 20)
        c = self.conn(timeout=120)
        try:
            t0 = time.monotonic()
            c.request("GET", "/v2/%s/blobs/%s" % (repo, d))
            r = c.getresponse()
            if r.status != 200:
                self.fail("GET blob: %d %s%s" % (r.status, r.read()[:300], self.diag()))
            hs, n, t_first = hashlib.sha256(), 0, None
            for chunk in iter(lambda: r.read(64 << 10), b""):
                hs.update(chunk)
                n += len(chunk)
                if t_first is None and n >= 1 << 20:
                    t_first = time.monotonic() - t0
            total = time.monotonic() - t0
        finally:
            c.close()
        self.assertEqual(("sha256:" + hs.hexdigest(), n), (d, size))
        print("\n  %s: first MiB after %.2fs, %d MiB after %.2fs"
              % (self.front.name, t_first, size >> 20, total))
        self.assertGreater(total, 0.6 * size / THROTTLE, "the upstream was not throttled")
        self.assertLess(t_first, total / 3, "the blob did not stream through the proxy")
        # Cached now: a second read through the proxy, and skopeo pulls the image.
        self.assert_blob(repo, d, size)
        self.assertEqual(self.pull(repo + ":latest"), u.digest)

    # ---- client-side mirror configs from examples/ ----

    def test_registries_conf_mirror(self):
        """examples/registries.conf, cache.example.com -> this proxy (insecure:
        self-signed): skopeo asks for docker.io/library/busy and gets the mirror's."""
        regs = derive(read_example("registries.conf"), [
            ('location = "cache.example.com/dockerhub"\n',
             'location = "%s/dockerhub"\ninsecure = true\n' % self.hostport)])
        d = tempfile.mkdtemp(dir=self.tmp)
        with open(os.path.join(d, "registries.conf"), "w") as f:
            f.write(regs)
        try:
            # (skopeo 1.9 reads CONTAINERS_REGISTRIES_CONF only from the flag)
            raw = up.skopeo(d, "--registries-conf", os.path.join(d, "registries.conf"),
                            "inspect", "--raw", "docker://docker.io/library/busy:latest",
                            timeout=60).stdout
        except RuntimeError as e:
            self.fail("%s%s" % (e, self.diag()))
        self.assertEqual(sha256(raw.encode()), STATE["ups"]["library/busy"].digest)

    def test_docker_registry_mirror_root(self):
        """examples/docker/daemon.json with examples/config-mirror-root.json: Docker's
        registry-mirrors asks the mirror for /v2/library/busy/... at the root.
        A second Wharf runs that config (upstream, root dir and port replaced)
        behind a second proxy from the example; skopeo asks as Docker would."""
        with open(os.path.join(EXAMPLES, "docker", "daemon.json")) as f:
            mirrors = json.load(f)["registry-mirrors"]
        self.assertEqual(mirrors, ["https://cache.example.com"])
        with open(os.path.join(EXAMPLES, "config-mirror-root.json")) as f:
            cfg = json.load(f)
        reg = cfg["extensions"]["sync"]["registries"][0]
        self.assertEqual([c["destination"] for c in reg["content"]], ["/"])
        del cfg["storage"]["rootDirectory"], cfg["http"]["address"], cfg["http"]["port"]
        reg["urls"], reg["tlsVerify"] = [STATE["faults"].url], False
        w = front = None
        try:
            w = Wharf(cfg).start()
            front = self.front_class(tempfile.mkdtemp(dir=self.tmp), w.port).start()
            out = os.path.join(tempfile.mkdtemp(dir=self.tmp), "out")
            self.skopeo("copy", "--quiet", "--retry-times", "0", "--src-tls-verify=false",
                        "docker://127.0.0.1:%d/library/busy:latest" % front.port, "dir:" + out)
            with open(os.path.join(out, "manifest.json"), "rb") as f:
                self.assertEqual(sha256(f.read()), STATE["ups"]["library/busy"].digest)
        finally:
            if front:
                front.stop()
            if w:
                w.stop()
                w.cleanup()

    def test_containerd_hosts_toml(self):
        """examples/containerd-hosts.toml as certs.d/docker.io/hosts.toml,
        cache.example.com -> this proxy (its certificate as the CA): ctr pulls
        docker.io/library/multi from the mirror."""
        for tool in ("containerd", "ctr"):
            if not have(tool):
                self.skipTest("%s not installed" % tool)
        if "ctrd" not in STATE:
            STATE["ctrd"] = up.Containerd().start()
        ctrd = STATE["ctrd"]
        hosts = derive(read_example("containerd-hosts.toml"), [
            ('[host."https://cache.example.com/v2/dockerhub"]\n',
             '[host."https://%s/v2/dockerhub"]\n  ca = "%s"\n' % (self.hostport, STATE["crt"]))])
        certs = os.path.join(tempfile.mkdtemp(dir=self.tmp), "certs.d")
        os.makedirs(os.path.join(certs, "docker.io"))
        with open(os.path.join(certs, "docker.io", "hosts.toml"), "w") as f:
            f.write(hosts)
        u = STATE["ups"]["library/multi"]
        ref = "docker.io/library/multi:latest"
        ns = "proxy-" + self.front.name
        p = up.run(["ctr", "-a", ctrd.sock, "-n", ns, "images", "pull", "--hosts-dir", certs,
                    "--snapshotter", "native", ref], timeout=60, check=False)
        self.assertEqual(p.returncode, 0, "%s\n%s%s" % (p.stdout[-1500:], p.stderr[-1500:],
                                                        self.diag()))
        out = up.run(["ctr", "-a", ctrd.sock, "-n", ns, "images", "ls"], timeout=30).stdout
        line = [l for l in out.splitlines() if l.startswith(ref + " ")]
        self.assertEqual(len(line), 1, out)
        self.assertIn(u.digest, line[0])


class NginxTest(ProxyCases, unittest.TestCase):
    front_class = Nginx

    def spooled(self):
        with open(os.path.join(self.front.dir, "error.log"), errors="replace") as f:
            return [l for l in f if "buffered to a temporary file" in l]

    def test_nothing_spooled_to_disk(self):
        """proxy_request_buffering off, proxy_buffering off, HTTP/1.1 upstream:
        a 40 MiB upload (with a length, and chunked) and a 40 MiB download read
        slowly never go through nginx's temp files (nginx warns when they do)."""
        img = STATE["big"]
        d = img.layers[1].digest
        data = blob_bytes(img, d)
        repo = "private/spool"
        st, _, body = self.req("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, d), data,
                               {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, body[:300])
        st, h, body = self.req("POST", "/v2/%s/blobs/uploads/" % repo)
        self.assertEqual(st, 202, body[:300])
        c = self.conn()
        try:
            c.request("PATCH", h["location"], body=iter([data[:1 << 20], data[1 << 20:]]),
                      encode_chunked=True, headers={"Content-Type": "application/octet-stream",
                                                    "Transfer-Encoding": "chunked"})
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 202)
        finally:
            c.close()
        c = self.conn()
        try:
            c.request("GET", "/v2/%s/blobs/%s" % (repo, d))
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            head = r.read(64 << 10)
            time.sleep(0.5)      # a slow client: a buffering nginx reads ahead to disk
            self.assertEqual(sha256(head + r.read()), d)
        finally:
            c.close()
        self.assertEqual(self.spooled(), [])


class CaddyTest(ProxyCases, unittest.TestCase):
    front_class = Caddy


class ProxyConfigFixtures:
    """Fixture check (not a test of Wharf): what the example proxy configs
    themselves do, with no Wharf behind them."""

    front_class = None

    @classmethod
    def setUpClass(cls):
        if not have(cls.front_class.name):
            raise unittest.SkipTest("%s not installed" % cls.front_class.name)
        cls.tmp = tempfile.mkdtemp(prefix="%s-fx-" % cls.front_class.name, dir=STATE["tmp"])
        os.chmod(cls.tmp, 0o755)
        cls.ctx = ssl.create_default_context(cafile=STATE["crt"])

    def test_forwarded_headers(self):
        """What the example's proxy sends upstream (an instance pointed at a
        header echo instead of Wharf): the client's Host, X-Forwarded-*."""
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Echo(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        front = None
        try:
            front = self.front_class(tempfile.mkdtemp(dir=self.tmp), srv.server_address[1])
            front.start()
            c = http.client.HTTPSConnection("127.0.0.1", front.port, timeout=30, context=self.ctx)
            try:
                c.request("GET", "/v2/")
                r = c.getresponse()
                self.assertEqual(r.status, 200)
                got = json.loads(r.read())
            finally:
                c.close()
        finally:
            if front:
                front.stop()
            srv.shutdown()
            srv.server_close()
        hp = "127.0.0.1:%d" % front.port
        self.assertEqual(got.get("host"), hp, got)
        self.assertEqual(got.get("x-forwarded-proto"), "https", got)
        self.assertEqual(got.get("x-forwarded-host"), hp, got)
        self.assertIn("127.0.0.1", got.get("x-forwarded-for", ""), got)


class NginxConfigFixtures(ProxyConfigFixtures, unittest.TestCase):
    front_class = Nginx


class CaddyConfigFixtures(ProxyConfigFixtures, unittest.TestCase):
    front_class = Caddy


if __name__ == "__main__":
    unittest.main()
