"""Upstreams for the pull-through tests, all real processes on 127.0.0.1:

    pki = make_pki(dir)                       # openssl CLI: CA, server (IP:127.0.0.1), client, JWT signer
    dist = Distribution(tls=pki).start()      # Debian's docker-registry, filesystem storage in a temp root
    ups = seed(dist, workdir)                 # skopeo pushes the test images; returns {"library/busy:latest": UpImage}
    hub = HubFront(dist.url).start()          # fakes/hubfront.py: token dance, 307 to a CDN port, counters
    flt = FaultProxy(dist.url).start()        # fakes/faults.py: cut / flip / delay / 429 / 503 / drop / throttle
    ctrd = Containerd().start()               # a private containerd for `ctr`
    ... .stop()                               # everything by pid

and the clients: skopeo(), podman(), RegistryClient (a small Python client
doing the Bearer dance and following redirects, dropping Authorization across
host:port, for checking the fakes themselves).

Images come from images.py (deterministic OCI layouts). `seed` reads back what
the upstream holds through the registry API, so the tests compare Wharf's
digests with the upstream's, not with what we think we pushed (skopeo converts
the Docker schema 2 image, for instance).
"""

import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

import images
from harness import free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
FAKES = os.path.join(HERE, "fakes")
REGISTRY_BIN = os.environ.get("DOCKER_REGISTRY_BIN") or shutil.which("docker-registry") \
    or "/usr/bin/docker-registry"

MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([images.MT_MANIFEST, images.MT_INDEX, MT_DOCKER_MANIFEST,
                             MT_DOCKER_LIST])

SERVICE = "test-registry"
ISSUER = "test-issuer"


def _stop(proc, timeout=10.0):
    """Stop a Popen by its pid: SIGTERM, then SIGKILL after timeout."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run(cmd, timeout=120, env=None, check=True, input=None):
    """Run a command; returns CompletedProcess with text stdout/stderr. On
    failure with check=True raises with both outputs in the message."""
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL if input is None else None,
                       input=input, timeout=timeout, env=e)
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(cmd), p.returncode,
                                                       p.stdout, p.stderr))
    return p


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------ PKI

class PKI:
    """Files made by make_pki (all PEM):
    ca_crt/ca_key        the test CA
    server_crt/key       for 127.0.0.1 (SAN IP:127.0.0.1, DNS:localhost and the
                         Docker Hub names, so a MITM front can pose as them)
    client_crt/key       a client certificate (clientAuth) signed by the CA
    jwt_crt/key          a self-signed RSA cert for signing tokens (Distribution's
                         rootcertbundle)
    certdir              Zot/Docker certDir: ca.crt, client.cert, client.key
    certdir_ca_only      certDir with ca.crt only
    """


DOCKER_HUB_NAMES = ("registry-1.docker.io", "index.docker.io", "docker.io",
                    "auth.docker.io", "production.cloudflare.docker.com")


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    p = PKI()
    p.dir = d

    def f(name):
        return os.path.join(d, name)

    p.ca_crt, p.ca_key = f("ca.crt"), f("ca.key")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
         "-keyout", p.ca_key, "-out", p.ca_crt, "-days", "3", "-subj", "/CN=wharf-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def leaf(name, cn, ext):
        key, csr, crt, extf = f(name + ".key"), f(name + ".csr"), f(name + ".crt"), f(name + ".ext")
        with open(extf, "w") as fh:
            fh.write(ext)
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", key,
             "-out", csr, "-subj", "/CN=" + cn])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", p.ca_crt, "-CAkey", p.ca_key,
             "-CAcreateserial", "-out", crt, "-days", "3", "-sha256", "-extfile", extf])
        return crt, key

    san = "subjectAltName=IP:127.0.0.1,DNS:localhost," + ",".join(
        "DNS:" + n for n in DOCKER_HUB_NAMES)
    p.server_crt, p.server_key = leaf(
        "server", "127.0.0.1",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n%s\n" % san)
    p.client_crt, p.client_key = leaf(
        "client", "wharf-test-client",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n")
    p.jwt_crt, p.jwt_key = f("jwt.crt"), f("jwt.key")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
         "-keyout", p.jwt_key, "-out", p.jwt_crt, "-days", "3", "-subj", "/CN=wharf-test-jwt"])
    p.certdir = f("certdir")
    os.makedirs(p.certdir, exist_ok=True)
    shutil.copy(p.ca_crt, os.path.join(p.certdir, "ca.crt"))
    shutil.copy(p.client_crt, os.path.join(p.certdir, "client.cert"))
    shutil.copy(p.client_key, os.path.join(p.certdir, "client.key"))
    p.certdir_ca_only = f("certdir-ca-only")
    os.makedirs(p.certdir_ca_only, exist_ok=True)
    shutil.copy(p.ca_crt, os.path.join(p.certdir_ca_only, "ca.crt"))
    return p


# ------------------------------------------------------------------ Distribution

class Distribution:
    """Debian's docker-registry (CNCF Distribution 2.8) on 127.0.0.1:<free port>.

    tls:        a PKI: serve HTTPS with its server cert
    client_ca:  with tls, require client certificates signed by the test CA
    token:      dict(realm=..., users=...) — `auth: token` with the PKI's JWT
                cert as rootcertbundle (needs tls or jwt_pki); start a
                TokenServer whose URL is the realm
    """

    def __init__(self, tls=None, client_ca=False, token=None, jwt_pki=None, port=None):
        self.tmp = tempfile.mkdtemp(prefix="wharf-dist-")
        self.root = os.path.join(self.tmp, "root")
        os.makedirs(self.root)
        self.port = port or free_port()
        self.tls = tls
        self.proc = None
        self.log_path = os.path.join(self.tmp, "registry.log")
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            "    rootdirectory: %s" % self.root,
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            "  addr: 127.0.0.1:%d" % self.port,
            "  secret: wharf-test-secret",
        ]
        if tls:
            lines += ["  tls:",
                      "    certificate: %s" % tls.server_crt,
                      "    key: %s" % tls.server_key]
            if client_ca:
                lines += ["    clientcas:", "      - %s" % tls.ca_crt]
        if token:
            pki = jwt_pki or tls
            lines += ["auth:", "  token:",
                      "    realm: %s" % token["realm"],
                      "    service: %s" % token.get("service", SERVICE),
                      "    issuer: %s" % token.get("issuer", ISSUER),
                      "    rootcertbundle: %s" % pki.jwt_crt]
        self.config_path = os.path.join(self.tmp, "config.yml")
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.port

    def start(self, timeout=15.0):
        self.logf = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", self.config_path],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        if not wait_port(self.port, timeout):
            self.stop()
            raise RuntimeError("docker-registry did not start:\n" + self.log())
        return self

    def stop(self):
        _stop(self.proc)
        self.proc = None
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        self.cleanup()


# ------------------------------------------------------------------ fakes

class Fake:
    """A fakes/<script>.py process; stopped by pid."""

    script = None

    def __init__(self, args, ports):
        self.args = args
        self.ports = ports
        self.proc = None
        self.tmp = tempfile.mkdtemp(prefix="wharf-fake-")
        self.log_path = os.path.join(self.tmp, "fake.log")

    def start(self, timeout=10.0):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, os.path.join(FAKES, self.script)] +
                                     [str(a) for a in self.args],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        for p in self.ports:
            if not wait_port(p, timeout):
                self.stop()
                raise RuntimeError("%s did not start:\n%s" % (self.script, self.log()))
        return self

    def stop(self):
        _stop(self.proc)
        self.proc = None
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def kill9(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None
            self.logf.close()
            self.logf = None

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
        self.cleanup()

    # -- control

    def _call(self, method, path, obj=None, port=None):
        c = http.client.HTTPConnection("127.0.0.1", port or self.ports[0], timeout=10)
        try:
            body = json.dumps(obj).encode() if obj is not None else None
            c.request(method, path, body=body,
                      headers={"Content-Type": "application/json"} if body else {})
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:200]))
            return json.loads(data)
        finally:
            c.close()

    def stats(self):
        """The counters (see fakes/fakecommon.py for the shape)."""
        return self._call("GET", "/_stats")

    def reset(self):
        return self._call("POST", "/_stats/reset", {})

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.ports[0]

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.ports[0]

    @property
    def port(self):
        return self.ports[0]


class HubFront(Fake):
    """fakes/hubfront.py in front of an open registry: registry API on .port,
    token endpoint on .token_port, CDN on .cdn_port."""

    script = "hubfront.py"

    def __init__(self, upstream_url, users=None, expires_in=300, redirect=True, auth=True,
                 mitm=None, basic=False, realm_host=None):
        self.token_port = free_port()
        self.cdn_port = free_port() if redirect else 0
        port = free_port()
        args = ["--port", port, "--token-port", self.token_port, "--upstream", upstream_url,
                "--expires-in", expires_in, "--service", SERVICE]
        if redirect:
            args += ["--cdn-port", self.cdn_port]
        for u, p in (users or {}).items():
            args += ["--user", "%s:%s" % (u, p)]
        if not auth:
            args.append("--no-auth")
        if basic:
            args.append("--basic")
        if realm_host:
            args += ["--realm-host", realm_host]
        if mitm:
            args += ["--mitm-cert", mitm.server_crt, "--mitm-key", mitm.server_key]
        super().__init__(args, [port, self.token_port] + ([self.cdn_port] if redirect else []))

    def configure(self, **cfg):
        """redirect=bool, auth=bool, expires_in=int, users={u: p}"""
        return self._call("POST", "/_config", cfg)


class FaultProxy(Fake):
    """fakes/faults.py in front of upstream_url."""

    script = "faults.py"

    def __init__(self, upstream_url):
        super().__init__(["--port", free_port(), "--upstream", upstream_url], [])
        self.ports = [int(self.args[1])]

    def set(self, mode, **rule):
        """One rule: set("cut", after_bytes=1<<20, path_contains=digest, count=None)."""
        rule["mode"] = mode
        return self._call("POST", "/_fault", rule)

    def set_rules(self, rules):
        return self._call("POST", "/_fault", {"rules": rules})

    def clear(self):
        return self._call("POST", "/_fault", {"mode": "none"})

    def rules(self):
        return self._call("GET", "/_fault")["rules"]


class TokenServer(Fake):
    """fakes/tokenserver.py: JWTs for Distribution's `auth: token`."""

    script = "tokenserver.py"

    def __init__(self, pki, users=None, expires_in=300):
        port = free_port()
        args = ["--port", port, "--key", pki.jwt_key, "--cert", pki.jwt_crt,
                "--issuer", ISSUER, "--service", SERVICE, "--expires-in", expires_in]
        for u, p in (users or {}).items():
            args += ["--user", "%s:%s" % (u, p)]
        super().__init__(args, [port])

    @property
    def realm(self):
        return "http://127.0.0.1:%d/token" % self.port


# ------------------------------------------------------------------ a small registry client

def _parse_challenge(value):
    scheme, _, rest = value.partition(" ")
    params = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in ", ":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            params[key] = rest[i + 1:end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end]
            i = end
    return scheme.lower(), params


class RegistryClient:
    """Enough of a registry client to check the fakes and upstreams: Bearer
    (anonymous or Basic credentials at the realm) and Basic challenges, token
    cache per scope, redirects followed with Authorization dropped when the
    host:port changes. Not used against Wharf's behaviour under test."""

    def __init__(self, base_url, creds=None, ca_file=None, client_cert=None, verify=True):
        self.base = base_url.rstrip("/")
        self.creds = creds
        self.ctx = None
        if base_url.startswith("https") or ca_file:
            self.ctx = ssl.create_default_context(cafile=ca_file)
            if not verify:
                self.ctx.check_hostname = False
                self.ctx.verify_mode = ssl.CERT_NONE
            if client_cert:
                self.ctx.load_cert_chain(*client_cert)
        self.tokens = {}

    def _conn(self, u, timeout):
        if u.scheme == "https":
            return http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=timeout,
                                               context=self.ctx)
        return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)

    def _once(self, method, url, headers, body, timeout):
        u = urllib.parse.urlsplit(url)
        c = self._conn(u, timeout)
        try:
            c.request(method, u.path + ("?" + u.query if u.query else ""), body=body,
                      headers=headers)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def _token(self, params):
        key = (params.get("realm"), params.get("service"), params.get("scope"))
        if key in self.tokens:
            return self.tokens[key]
        q = {"service": params.get("service", "")}
        if params.get("scope"):
            q["scope"] = params["scope"]
        url = params["realm"] + "?" + urllib.parse.urlencode(q)
        h = {}
        if self.creds:
            h["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % self.creds).encode()).decode()
        st, _, body = self._once("GET", url, h, None, 30)
        if st != 200:
            raise RuntimeError("token endpoint %s: %d %s" % (url, st, body[:200]))
        j = json.loads(body)
        tok = j.get("token") or j.get("access_token")
        self.tokens[key] = tok
        return tok

    def request(self, method, path, headers=None, body=None, timeout=60, max_redirects=5):
        """(status, headers (lower-case), body, final_url)"""
        url = self.base + path
        headers = dict(headers or {})
        auth = None
        for _ in range(3):
            h = dict(headers)
            if auth:
                h["Authorization"] = auth
            cur, hops = url, 0
            origin = urllib.parse.urlsplit(url).netloc
            while True:
                st, rh, data = self._once(method, cur, h, body, timeout)
                if st in (301, 302, 303, 307, 308) and "location" in rh and hops < max_redirects:
                    nxt = urllib.parse.urljoin(cur, rh["location"])
                    if urllib.parse.urlsplit(nxt).netloc != origin:
                        h.pop("Authorization", None)
                    cur, hops = nxt, hops + 1
                    continue
                break
            if st == 401 and "www-authenticate" in rh and auth is None:
                scheme, params = _parse_challenge(rh["www-authenticate"])
                if scheme == "bearer":
                    auth = "Bearer " + self._token(params)
                    continue
                if scheme == "basic" and self.creds:
                    auth = "Basic " + base64.b64encode(("%s:%s" % self.creds).encode()).decode()
                    continue
            return st, rh, data, cur
        return st, rh, data, cur

    def get(self, path, headers=None):
        st, rh, data, _ = self.request("GET", path, headers)
        return st, rh, data

    def manifest(self, repo, ref):
        st, rh, data = self.get("/v2/%s/manifests/%s" % (repo, ref), {"Accept": MANIFEST_ACCEPT})
        if st != 200:
            raise RuntimeError("GET manifest %s:%s: %d %s" % (repo, ref, st, data[:300]))
        return data, rh

    def blob(self, repo, digest):
        st, rh, data = self.get("/v2/%s/blobs/%s" % (repo, digest))
        if st != 200:
            raise RuntimeError("GET blob %s@%s: %d %s" % (repo, digest, st, data[:300]))
        return data


class UpImage:
    """What the upstream holds for repo:ref, read back through the API.

    digest, media_type, manifest (bytes), size
    blobs:     {digest: size} of config and layers (for an index: of every child)
    children:  {digest: UpImage} (index only)
    """

    def __init__(self, repo, ref):
        self.repo = repo
        self.ref = ref
        self.digest = None
        self.media_type = None
        self.manifest = None
        self.size = 0
        self.config = None
        self.layers = []
        self.blobs = {}
        self.children = {}

    @property
    def blob_bytes(self):
        """Total size of every blob (not manifests) the image references."""
        return sum(self.blobs.values())

    def manifests(self):
        """{digest: bytes} of the top manifest and every child."""
        out = {self.digest: self.manifest}
        for c in self.children.values():
            out.update(c.manifests())
        return out

    def all_digests(self):
        return set(self.manifests()) | set(self.blobs)

    def __repr__(self):
        return "UpImage(%s:%s %s, %d blobs)" % (self.repo, self.ref, self.digest, len(self.blobs))


def read_image(client, repo, ref):
    data, rh = client.manifest(repo, ref)
    img = UpImage(repo, ref)
    img.manifest = data
    img.size = len(data)
    img.digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if rh.get("docker-content-digest") and rh["docker-content-digest"] != img.digest:
        raise RuntimeError("upstream Docker-Content-Digest %s != sha256 of body %s"
                           % (rh["docker-content-digest"], img.digest))
    m = json.loads(data)
    img.media_type = m.get("mediaType") or rh.get("content-type")
    if "manifests" in m:
        for d in m["manifests"]:
            child = read_image(client, repo, d["digest"])
            img.children[d["digest"]] = child
            img.blobs.update(child.blobs)
    else:
        img.config = m["config"]["digest"]
        img.layers = [l["digest"] for l in m["layers"]]
        img.blobs[m["config"]["digest"]] = m["config"]["size"]
        for l in m["layers"]:
            img.blobs[l["digest"]] = l["size"]
    return img


# ------------------------------------------------------------------ clients

def _isolated_env(tmp):
    """Environment for skopeo/podman that ignores the host's auth files."""
    auth = os.path.join(tmp, "auth.json")
    if not os.path.exists(auth):
        with open(auth, "w") as f:
            f.write('{"auths":{}}')
    policy = os.path.join(tmp, "policy.json")
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write('{"default":[{"type":"insecureAcceptAnything"}]}')
    regs = os.path.join(tmp, "registries.conf")
    if not os.path.exists(regs):
        with open(regs, "w") as f:
            f.write('unqualified-search-registries = []\n')
    return {"REGISTRY_AUTH_FILE": auth, "CONTAINERS_REGISTRIES_CONF": regs}, policy


def skopeo(tmp, *args, timeout=180, check=True):
    """Run skopeo with an isolated auth file and an accept-anything policy."""
    os.makedirs(tmp, exist_ok=True)
    env, policy = _isolated_env(tmp)
    return run(["skopeo", "--policy", policy] + list(args), timeout=timeout, env=env,
               check=check)


def skopeo_copy(tmp, src, dst, *extra, timeout=180, check=True):
    return skopeo(tmp, "copy", "--quiet", "--retry-times", "0", *extra, src, dst,
                  timeout=timeout, check=check)


def push(tmp, layout_ref, dest_hostport, repo, tag, fmt=None, tls_verify=False, creds=None,
         cert_dir=None):
    extra = ["--all", "--dest-tls-verify=%s" % ("true" if tls_verify else "false")]
    if fmt:
        extra += ["--format", fmt]
    if creds:
        extra += ["--dest-creds", "%s:%s" % creds]
    if cert_dir:
        extra += ["--dest-cert-dir", cert_dir]
    skopeo_copy(tmp, layout_ref, "docker://%s/%s:%s" % (dest_hostport, repo, tag), *extra)


def podman(tmp, *args, timeout=180, check=True):
    """podman with private storage (vfs) under tmp."""
    os.makedirs(tmp, exist_ok=True)
    env, policy = _isolated_env(tmp)
    conf = os.path.join(tmp, "storage.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write('[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n'
                    % (os.path.join(tmp, "run"), os.path.join(tmp, "root")))
    env["CONTAINERS_STORAGE_CONF"] = conf
    env["XDG_RUNTIME_DIR"] = os.path.join(tmp, "xdg")
    os.makedirs(env["XDG_RUNTIME_DIR"], exist_ok=True)
    base = ["podman", "--root", os.path.join(tmp, "root"), "--runroot", os.path.join(tmp, "run"),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--tmpdir", os.path.join(tmp, "tmp")]
    return run(base + list(args), timeout=timeout, env=env, check=check)


class Containerd:
    """A private containerd (root, state and socket in a temp dir, CRI off) for `ctr`."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="wharf-ctrd-")
        self.sock = os.path.join(self.tmp, "containerd.sock")
        self.config = os.path.join(self.tmp, "config.toml")
        with open(self.config, "w") as f:
            f.write('version = 2\nroot = "%s"\nstate = "%s"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    '[grpc]\n  address = "%s"\n[ttrpc]\n  address = "%s.ttrpc"\n'
                    '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
                    % (os.path.join(self.tmp, "root"), os.path.join(self.tmp, "state"),
                       self.sock, self.sock))
        self.proc = None
        self.log_path = os.path.join(self.tmp, "containerd.log")

    def start(self, timeout=15.0):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["containerd", "--config", self.config],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.sock):
                p = run(["ctr", "-a", self.sock, "version"], timeout=5, check=False)
                if p.returncode == 0:
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("containerd did not start:\n" + self.log())

    def ctr(self, *args, timeout=180, check=True):
        return run(["ctr", "-a", self.sock, "-n", "wharftest"] + list(args), timeout=timeout,
                   check=check)

    def stop(self):
        _stop(self.proc, 15)
        self.proc = None
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


# ------------------------------------------------------------------ seeding

# name -> (maker, kwargs, push format). Small ones always; "big" only when asked.
MID_SIZE = 4 << 20
BIG_SIZE = 96 << 20


def build_layouts(workdir, big=True):
    """The OCI layouts to push: {"repo:tag": (images.Image, format or None)}."""
    out = {
        "library/busy:latest": (images.single_image(os.path.join(workdir, "busy"), "latest",
                                                    salt="busy"), None),
        "library/busy:v1": (images.single_image(os.path.join(workdir, "busy-v1"), "v1",
                                                salt="busy-v1"), None),
        "library/multi:latest": (images.multi_image(os.path.join(workdir, "multi"), "latest",
                                                    salt="multi"), None),
        "team/app:v2s2": (images.single_image(os.path.join(workdir, "app"), "v2s2",
                                              salt="app"), "v2s2"),
        "library/mid:latest": (images.big_image(os.path.join(workdir, "mid"), MID_SIZE,
                                                tag="latest", seed=2), None),
    }
    if big:
        out["library/big:latest"] = (images.big_image(os.path.join(workdir, "big"), BIG_SIZE,
                                                      tag="latest", seed=1), None)
    return out


def seed(dist, workdir, big=True, creds=None, cert_dir=None, layouts=None):
    """Push the test images to dist and read them back. Returns
    {"library/busy:latest": UpImage, ...}:

      library/busy:latest   single-platform OCI image (3 small gzip layers)
      library/busy:v1       another single-platform image (for tag filters)
      library/multi:latest  OCI index, linux/amd64 + linux/arm64
      team/app:v2s2         Docker schema 2 (skopeo --format v2s2)
      library/mid:latest    one 4 MiB random layer (fault tests)
      library/big:latest    one 96 MiB random layer (big=True)
    """
    layouts = layouts or build_layouts(os.path.join(workdir, "layouts"), big)
    tls_verify = bool(dist.tls and cert_dir)
    for name, (img, fmt) in layouts.items():
        repo, tag = name.rsplit(":", 1)
        push(os.path.join(workdir, "skopeo"), img.ref, dist.hostport, repo, tag, fmt=fmt,
             tls_verify=tls_verify, creds=creds, cert_dir=cert_dir)
    client = upstream_client(dist, creds)
    out = {}
    for name in layouts:
        repo, tag = name.rsplit(":", 1)
        out[name] = read_image(client, repo, tag)
    return out


def push_exact(hostport, img, repo, tag=None, timeout=60):
    """Push an images.Image to a plain-HTTP registry byte-exact, with no
    client tool: each blob by POST, then PUT ?digest= with the body (what
    Distribution 2.8 needs: it answers a single `POST ?digest=` with 202 and
    drops the body, so images.push is not for it), the child manifests, then
    the top manifest tagged `tag` (default img.tag). Raises AssertionError
    with the registry's answer when a step fails."""
    host, port = hostport.rsplit(":", 1)

    def req(method, path, body=None, ctype=None):
        c = http.client.HTTPConnection(host, int(port), timeout=timeout)
        try:
            c.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
            r = c.getresponse()
            return r.status, r.getheader("Location"), r.read()
        finally:
            c.close()

    manifests = {c.digest: c for c in img.children.values()}
    manifests[img.digest] = img
    for d in img.blobs:
        if d in manifests:
            continue
        st, loc, body = req("POST", "/v2/%s/blobs/uploads/" % repo)
        if st != 202:
            raise AssertionError("POST upload %s: %d %r" % (repo, st, body[:300]))
        loc = loc.split("://", 1)[-1].split("/", 1)[-1]   # absolute or not
        with open(os.path.join(img.layout, "blobs", "sha256", d.split(":", 1)[1]), "rb") as f:
            data = f.read()
        st, _, body = req("PUT", "/%s%sdigest=%s" % (loc, "&" if "?" in loc else "?", d), data,
                          "application/octet-stream")
        if st != 201:
            raise AssertionError("PUT blob %s: %d %r" % (d, st, body[:300]))
    for c in img.children.values():
        st, _, body = req("PUT", "/v2/%s/manifests/%s" % (repo, c.digest), c.manifest,
                          c.media_type)
        if st != 201:
            raise AssertionError("PUT manifest %s: %d %r" % (c.digest, st, body[:300]))
    st, _, body = req("PUT", "/v2/%s/manifests/%s" % (repo, tag or img.tag), img.manifest,
                      img.media_type)
    if st != 201:
        raise AssertionError("PUT manifest %s:%s: %d %r" % (repo, tag or img.tag, st, body[:300]))


def upstream_client(dist, creds=None):
    if dist.tls:
        return RegistryClient(dist.url, creds=creds, ca_file=dist.tls.ca_crt,
                              client_cert=(dist.tls.client_crt, dist.tls.client_key))
    return RegistryClient(dist.url, creds=creds)


# ------------------------------------------------------------------ Wharf configs

def sync_config(urls, destination="/dockerhub", prefix="**", tls_verify=False, cert_dir=None,
                tags=None, credentials_file=None, manifest_check_interval=None,
                on_demand=True, **registry_extra):
    """Wharf's config (merged over harness.Wharf's local one): Zot's
    extensions.sync with one registry and one content rule.

    tags: {"regex": "^v1"} and/or {"excludeRegex": ...}
    manifest_check_interval: a Go duration, set as extensions.sync.wharf.manifestCheckInterval
    registry_extra: more keys of the registry (maxRetries, retryDelay, stripPrefix is
                    a content key: pass content_extra={...})
    """
    content_extra = registry_extra.pop("content_extra", None) or {}
    content = {"prefix": prefix, "destination": destination}
    if tags:
        content["tags"] = tags
    content.update(content_extra)
    reg = {"urls": list(urls) if isinstance(urls, (list, tuple)) else [urls],
           "onDemand": on_demand, "tlsVerify": tls_verify, "content": [content]}
    if cert_dir:
        reg["certDir"] = cert_dir
    reg.update(registry_extra)
    sync = {"enable": True, "registries": [reg]}
    if credentials_file:
        sync["credentialsFile"] = credentials_file
    if manifest_check_interval:
        sync["wharf"] = {"manifestCheckInterval": manifest_check_interval}
    return {"extensions": {"sync": sync}}


def write_credentials(path, entries):
    """Zot's credentialsFile: {"host:port": {"username": u, "password": p}}."""
    with open(path, "w") as f:
        json.dump({h: {"username": u, "password": p} for h, (u, p) in entries.items()}, f)
    return path


# ------------------------------------------------------------------ checks on a Wharf root

def blob_files(root):
    """Every file under any blobs/sha256 directory of the root: [(path, hex)]."""
    out = []
    for dirpath, _, files in os.walk(root):
        if dirpath.endswith(os.path.join("blobs", "sha256")):
            out.extend((os.path.join(dirpath, f), f) for f in files)
    return out


def bad_blob_files(root):
    """Files in blob dirs whose sha256 is not their name (partial or corrupt)."""
    bad = []
    for path, name in blob_files(root):
        if sha256_file(path) != "sha256:" + name:
            bad.append(path)
    return bad


def root_has_blob(root, digest):
    hexd = digest.split(":", 1)[1]
    return [p for p, n in blob_files(root) if n == hexd]


def tmp_files(root):
    """Files in <root>/.wharf/tmp (Wharf's temp area, see include/wharf/store/store.h)."""
    d = os.path.join(root, ".wharf", "tmp")
    try:
        return os.listdir(d)
    except OSError:
        return []


if __name__ == "__main__":
    # python3 upstream.py: start Distribution, seed (small images), print what it holds.
    with tempfile.TemporaryDirectory(prefix="wharf-up-") as t, Distribution() as d:
        t0 = time.monotonic()
        ups = seed(d, t, big="--big" in sys.argv)
        for k, v in ups.items():
            print(k, v.digest, v.media_type, "%d blobs, %d bytes" % (len(v.blobs), v.blob_bytes))
        print("seeded in %.1fs at %s" % (time.monotonic() - t0, d.url))
