"""http.tls: wharf serving HTTPS with mbedTLS, driven by real clients (curl,
openssl s_client, skopeo, oras, Python's ssl) against a test CA made here
with openssl. Covers TLS 1.2 and 1.3, session resumption, a 32 MiB blob,
client certificates (cacert), SIGHUP swapping the certificate under an open
connection, hostile bytes on the TLS port, plain HTTP on it and TLS on a
plain port, config errors naming the key, and the memory an idle TLS
connection costs."""
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import images
from harness import Wharf, have, rss_kib, WHARF_BIN

SANITIZED = os.environ.get("WHARF_SANITIZE") == "1"
CMD_TIMEOUT = 120


def run(args, check=True, timeout=CMD_TIMEOUT, env=None, input=None, cwd=None):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       env=env, input=input, cwd=cwd,
                       stdin=None if input is not None else subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s\n%s" % (" ".join(args), p.returncode,
                                                    p.stdout[-2000:], p.stderr[-2000:]))
    return p


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class PKI:
    """A CA, a server certificate for 127.0.0.1 (serial chosen by the caller,
    so a reload can be told apart) and a client certificate."""

    def __init__(self, d):
        self.d = d
        os.makedirs(d, exist_ok=True)
        self.ca_crt, self.ca_key = self.f("ca.crt"), self.f("ca.key")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", self.ca_key, "-out", self.ca_crt, "-days", "2",
             "-subj", "/CN=wharf-tls-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        self.server_crt, self.server_key = self.leaf(
            "server", "127.0.0.1", 0x1001,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        self.client_crt, self.client_key = self.leaf(
            "client", "ci-robot", 0x2001, "extendedKeyUsage=clientAuth\n")

    def f(self, name):
        return os.path.join(self.d, name)

    def leaf(self, name, cn, serial, ext, rsa=False):
        key, csr, crt, extf = (self.f(name + s) for s in (".key", ".csr", ".crt", ".ext"))
        with open(extf, "w") as fh:
            fh.write("basicConstraints=CA:FALSE\n" + ext)
        newkey = ["rsa:2048"] if rsa else ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        run(["openssl", "req", "-newkey"] + newkey + ["-nodes", "-keyout", key, "-out", csr,
                                                      "-subj", "/CN=" + cn])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca_crt, "-CAkey", self.ca_key,
             "-set_serial", str(serial), "-out", crt, "-days", "2", "-extfile", extf])
        return crt, key


def tls_config(pki, cacert=False, extra=None):
    cfg = {"http": {"tls": {"cert": pki.server_crt, "key": pki.server_key}},
           "log": {"level": "debug"}}
    if cacert:
        cfg["http"]["tls"]["cacert"] = pki.ca_crt
    if extra:
        cfg["http"].update(extra)
    return cfg


def https(w, pki, client_cert=False):
    ctx = ssl.create_default_context(cafile=pki.ca_crt)
    if client_cert:
        ctx.load_cert_chain(pki.client_crt, pki.client_key)
    return http.client.HTTPSConnection("127.0.0.1", w.port, timeout=30, context=ctx)


def request(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def s_client(port, pki, *args, data=b"", timeout=20):
    return run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                "-CAfile", pki.ca_crt] + list(args), check=False, timeout=timeout, input=data)


def server_serial(port, pki):
    p = s_client(port, pki)
    x = run(["openssl", "x509", "-noout", "-serial"], input=p.stdout)
    return x.stdout.decode().strip().split("=", 1)[1].lstrip("0")


_tmp = None
PKI_ = None


def setUpModule():
    global _tmp, PKI_
    _tmp = tempfile.mkdtemp(prefix="wharf-tls-")
    PKI_ = PKI(os.path.join(_tmp, "pki"))


def tearDownModule():
    if _tmp:
        shutil.rmtree(_tmp, ignore_errors=True)


class TLSCase(unittest.TestCase):
    cacert = False
    extra = None

    @classmethod
    def setUpClass(cls):
        cls.pki = PKI_
        cls.tmp = tempfile.mkdtemp(prefix=cls.__name__ + "-", dir=_tmp)
        cls.wharf = Wharf(tls_config(cls.pki, cls.cacert, cls.extra)).start()
        cls.port = cls.wharf.port
        cls.host = cls.wharf.hostport

    @classmethod
    def tearDownClass(cls):
        rc = cls.wharf.stop()
        cls.wharf.cleanup()
        assert rc == 0, "wharf exit status %r" % rc

    def assert_alive(self):
        self.assertIsNone(self.wharf.proc.poll(), "wharf died:\n" + self.wharf.log()[-3000:])
        c = https(self.wharf, self.pki, client_cert=self.cacert)
        try:
            self.assertEqual(request(c, "GET", "/v2/")[0], 200)
        finally:
            c.close()

    def upload(self, conn, repo, data):
        d = sha256(data)
        st, h, _ = request(conn, "POST", "/v2/%s/blobs/uploads/" % repo)
        self.assertEqual(st, 202)
        loc = h["location"]
        sep = "&" if "?" in loc else "?"
        st, _, body = request(conn, "PUT", "%s%sdigest=%s" % (loc, sep, d), body=data,
                              headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, body[:300])
        return d


class TLSServe(TLSCase):

    def test_curl_tls12_and_tls13(self):
        for flags, version in ((["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"),
                               (["--tlsv1.3"], "TLSv1.3")):
            p = run(["curl", "-sS", "-v", "--cacert", self.pki.ca_crt, "-o", "/dev/null",
                     "-w", "%{http_code}"] + flags + ["https://127.0.0.1:%d/v2/" % self.port])
            self.assertEqual(p.stdout, b"200")
            m = re.search(r"SSL connection using (\S+) / (\S+)", p.stderr.decode())
            self.assertIsNotNone(m, p.stderr.decode())
            self.assertEqual(m.group(1), version)
            self.assertRegex(m.group(2), "GCM|CHACHA20")
            self.assertIn("ALPN: server accepted http/1.1", p.stderr.decode())
            print("\n  curl %s: %s / %s" % (" ".join(flags), m.group(1), m.group(2)))

    def test_session_resumption(self):
        # TLS 1.2: -reconnect resumes five times from the first session.
        p = s_client(self.port, self.pki, "-tls1_2", "-reconnect")
        out = p.stdout.decode("utf-8", "replace")
        self.assertGreaterEqual(out.count("Reused, TLSv1.2"), 1, out[-2000:])
        # TLS 1.3: the ticket comes after the handshake; read an answer so it
        # has arrived before the session is saved.
        sess = os.path.join(self.tmp, "s13")
        req = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        p = s_client(self.port, self.pki, "-tls1_3", "-sess_out", sess, "-ign_eof", data=req)
        self.assertIn(b"HTTP/1.1 200", p.stdout)
        p = s_client(self.port, self.pki, "-tls1_3", "-sess_in", sess, "-ign_eof", data=req)
        self.assertIn(b"Reused, TLSv1.3", p.stdout, p.stdout[-2000:])
        self.assertIn(b"HTTP/1.1 200", p.stdout)

    def test_big_blob(self):
        data = os.urandom(32 << 20)
        c = https(self.wharf, self.pki)
        try:
            d = self.upload(c, "big/blob", data)
            t = time.monotonic()
            st, h, body = request(c, "GET", "/v2/big/blob/blobs/" + d)
            dt = time.monotonic() - t
        finally:
            c.close()
        self.assertEqual(st, 200)
        self.assertEqual(len(body), len(data))
        self.assertEqual(sha256(body), d)
        print("\n  32 MiB blob over TLS (python client): %.0f MB/s" % (len(body) / dt / 1e6))
        # and with curl, to a file
        out = os.path.join(self.tmp, "blob")
        run(["curl", "-sS", "--cacert", self.pki.ca_crt, "-o", out,
             "https://127.0.0.1:%d/v2/big/blob/blobs/%s" % (self.port, d)])
        with open(out, "rb") as f:
            self.assertEqual(sha256(f.read()), d)

    def test_pipelined_requests(self):
        """Several requests in one TLS record: every answer comes, in order."""
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n" * 20 +
                          b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                got = b""
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
        self.assertEqual(got.count(b"HTTP/1.1 200"), 21)

    def test_oversized_head_then_more(self):
        """A head over maxHeaderBytes over TLS: the 431 is read whole, although
        the client goes on sending (the lingering close drains through the
        TLS transport), and the connection then ends."""
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20))
                got = b""
                while True:
                    try:
                        b = s.recv(65536)
                    except (ssl.SSLError, ConnectionResetError):
                        break
                    if not b:
                        break
                    got += b
        self.assertTrue(got.startswith(b"HTTP/1.1 431 "), got[:200])
        self.assertIn(b"Connection: close", got)
        self.assert_alive()

    def test_plain_http_to_tls_port(self):
        t = time.monotonic()
        out = self.wharf.raw(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", timeout=10)
        self.assertLess(time.monotonic() - t, 5, "the connection was not closed")
        self.assertNotIn(b"HTTP/1.1", out)
        self.assert_alive()

    def test_garbage_and_truncated_handshake(self):
        for junk in (os.urandom(4096), b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" +
                     os.urandom(40), b"\x16\x03\x01\xff\xff" + os.urandom(100), b"\x16",
                     b"\x80\x80\x01\x03\x01" + os.urandom(200)):
            self.wharf.raw(junk, timeout=3)
        # a real ClientHello cut in the middle, then silence, then close
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        inc, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, outb, server_hostname="127.0.0.1")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outb.read()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(hello[:len(hello) // 2])
            time.sleep(0.2)
        self.assert_alive()

    def test_handshake_timeout(self):
        """A client that starts a handshake and stalls is closed at the
        handshake deadline (the header timeout's value, 2 s in this class)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01\x00\x10")
            t = time.monotonic()
            try:
                got = s.recv(100)
            except ConnectionResetError:
                got = b""
            dt = time.monotonic() - t
        self.assertEqual(got[:1] in (b"", b"\x15"), True, got)
        self.assertLess(dt, 8)
        self.assertGreater(dt, 1)

    extra = {"wharf": {"headerTimeout": "2s"}}

    def test_sighup_swaps_certificate(self):
        self.assertEqual(server_serial(self.port, self.pki), "1001")
        keep = https(self.wharf, self.pki)
        try:
            self.assertEqual(request(keep, "GET", "/v2/")[0], 200)
            # A renewed certificate written over the same paths
            crt, key = self.pki.leaf("server2", "127.0.0.1", 0x1002,
                                     "subjectAltName=IP:127.0.0.1\n"
                                     "extendedKeyUsage=serverAuth\n", rsa=True)
            saved = self.pki.f("saved")
            os.makedirs(saved, exist_ok=True)
            shutil.copy(self.pki.server_crt, saved)
            shutil.copy(self.pki.server_key, saved)
            try:
                shutil.copy(crt, self.pki.server_crt)
                shutil.copy(key, self.pki.server_key)
                self.wharf.proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 10
                while "TLS certificate reloaded" not in self.wharf.log():
                    self.assertLess(time.monotonic(), deadline, self.wharf.log()[-2000:])
                    time.sleep(0.05)
                self.assertEqual(server_serial(self.port, self.pki), "1002")
                # the connection opened before the reload still works
                for _ in range(3):
                    self.assertEqual(request(keep, "GET", "/v2/")[0], 200)
                # a broken pair is refused and the current one stays
                with open(self.pki.server_key, "w") as f:
                    f.write("not a key\n")
                self.wharf.proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 10
                while "TLS certificate not reloaded" not in self.wharf.log():
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.05)
                self.assertIn("http.tls.key", self.wharf.log())
                self.assertEqual(server_serial(self.port, self.pki), "1002")
            finally:
                shutil.copy(os.path.join(saved, "server.crt"), self.pki.server_crt)
                shutil.copy(os.path.join(saved, "server.key"), self.pki.server_key)
                self.wharf.proc.send_signal(signal.SIGHUP)
        finally:
            keep.close()
        self.assert_alive()

    def test_handshake_in_flight_across_config_reload(self):
        # A SIGHUP verifies the config file again, TLS pair included, with a
        # context of its own. Freeing it took the crypto library's state (PSA,
        # the keys of handshakes in flight) from under the serving context:
        # a handshake begun before the reload failed ("SSL - Internal error").
        # The client here stops after the server's first flight, waits for
        # the reload, then finishes.
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        for i in range(3):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1")
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
            sock.sendall(out.read())  # ClientHello
            first = sock.recv(65536)  # ServerHello .. Finished
            self.assertTrue(first)
            n = self.wharf.log().count("SIGHUP: configuration reloaded")
            self.wharf.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while self.wharf.log().count("SIGHUP: configuration reloaded") <= n:
                self.assertLess(time.monotonic(), deadline, self.wharf.log()[-2000:])
                time.sleep(0.02)
            inc.write(first)
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(out.read())
                    data = sock.recv(65536)
                    self.assertTrue(data, "the server closed the handshake")
                    inc.write(data)
            sock.sendall(out.read())  # the client's Finished
            tls.write(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            sock.sendall(out.read())
            got = b""
            while b"\r\n" not in got:
                data = sock.recv(65536)
                self.assertTrue(data, "closed without an answer: " + self.wharf.log()[-1500:])
                inc.write(data)
                try:
                    got += tls.read(65536)
                except ssl.SSLWantReadError:
                    pass
            self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:100])
            sock.close()
        self.assert_alive()

    @unittest.skipIf(SANITIZED, "memory is measured on the plain build")
    def test_memory_per_idle_connection(self):
        n = 200
        ctx = ssl.create_default_context(cafile=self.pki.ca_crt)
        pid = self.wharf.proc.pid
        # warm up: allocator arenas, one handshake of each kind
        c = https(self.wharf, self.pki)
        request(c, "GET", "/v2/")
        c.close()
        time.sleep(0.2)
        before = rss_kib(pid)
        socks = []
        try:
            for _ in range(n):
                raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                socks.append(s)
            s = socks[-1]
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200", s.recv(4096))  # the server has seen them all
            time.sleep(0.3)
            after = rss_kib(pid)
        finally:
            for s in socks:
                s.close()
        per = (after - before) / n
        print("\n  memory per idle TLS connection: %.1f KiB (RSS %d -> %d KiB, %d connections)"
              % (per, before, after, n))
        self.assertLessEqual(per, 64)


class TLSClients(TLSCase):
    """skopeo and oras over HTTPS with the test CA."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.img = images.single_image(os.path.join(cls.tmp, "img"), tag="1")
        cls.certdir = os.path.join(cls.tmp, "certs")
        os.makedirs(cls.certdir)
        shutil.copy(cls.pki.ca_crt, os.path.join(cls.certdir, "ca.crt"))
        if cls.cacert:
            shutil.copy(cls.pki.client_crt, os.path.join(cls.certdir, "client.cert"))
            shutil.copy(cls.pki.client_key, os.path.join(cls.certdir, "client.key"))
        cfg = os.path.join(cls.tmp, "conf")
        os.makedirs(os.path.join(cfg, "docker"))
        os.makedirs(os.path.join(cls.tmp, "tmp"))
        open(os.path.join(cfg, "registries.conf"), "w").close()
        with open(os.path.join(cfg, "auth.json"), "w") as f:
            f.write('{"auths": {}}')
        cls.policy = os.path.join(cfg, "policy.json")
        with open(cls.policy, "w") as f:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
        cls.env = dict(os.environ)
        cls.env.update({"CONTAINERS_REGISTRIES_CONF": os.path.join(cfg, "registries.conf"),
                        "REGISTRY_AUTH_FILE": os.path.join(cfg, "auth.json"),
                        "DOCKER_CONFIG": os.path.join(cfg, "docker"),
                        "TMPDIR": os.path.join(cls.tmp, "tmp")})

    @unittest.skipUnless(have("skopeo"), "skopeo is not installed")
    def test_skopeo_push_pull(self):
        ref = "docker://%s/tls/app:1" % self.host
        digestfile = os.path.join(self.tmp, "digest")
        run(["skopeo", "--policy", self.policy, "copy", "--dest-cert-dir", self.certdir,
             "--digestfile", digestfile, self.img.ref, ref], env=self.env)
        with open(digestfile) as f:
            self.assertEqual(f.read().strip(), self.img.digest)
        out = os.path.join(self.tmp, "pulled")
        run(["skopeo", "--policy", self.policy, "copy", "--src-cert-dir", self.certdir,
             ref, "dir:" + out], env=self.env)
        with open(os.path.join(out, "manifest.json"), "rb") as f:
            self.assertEqual(f.read(), self.img.manifest)

    @unittest.skipUnless(have("oras"), "oras is not installed")
    def test_oras_push_pull(self):
        data = b"over tls\n" * 100
        with open(os.path.join(self.tmp, "f.txt"), "wb") as f:
            f.write(data)
        ref = "%s/tls/art:v1" % self.host
        tls = ["--ca-file", self.pki.ca_crt]
        if self.cacert:
            tls += ["--cert-file", self.pki.client_crt, "--key-file", self.pki.client_key]
        run(["oras", "push"] + tls + [ref, "f.txt:text/plain"], env=self.env, cwd=self.tmp)
        out = os.path.join(self.tmp, "oras-out")
        run(["oras", "pull"] + tls + ["-o", out, ref], env=self.env, cwd=self.tmp)
        with open(os.path.join(out, "f.txt"), "rb") as f:
            self.assertEqual(f.read(), data)


    @unittest.skipUnless(have("podman"), "podman is not installed")
    def test_podman_push_pull(self):
        # podman with a private vfs storage: pulling and pushing run no
        # container. --cert-dir is a certs.d directory (ca.crt, and
        # client.cert/client.key for mutual TLS).
        st = tempfile.mkdtemp(prefix="pm-")  # podman wants a short runroot
        try:
            base = ["podman", "--root", st + "/root", "--runroot", st + "/run", "--tmpdir",
                    st + "/libpod", "--storage-driver", "vfs", "--events-backend", "none",
                    "--cgroup-manager", "cgroupfs"]
            env = dict(self.env)
            conf = os.path.join(st, "storage.conf")
            with open(conf, "w") as f:
                f.write('[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n'
                        % (st, st))
            env["CONTAINERS_STORAGE_CONF"] = conf
            src = "%s/tls/podman:1" % self.host
            run(["skopeo", "--policy", self.policy, "copy", "--dest-cert-dir", self.certdir,
                 self.img.ref, "docker://" + src], env=self.env)
            run(base + ["pull", "--signature-policy", self.policy, "--cert-dir", self.certdir,
                        src], env=env)
            dst = "%s/tls/podman-pushed:1" % self.host
            run(base + ["tag", src, dst], env=env)
            run(base + ["push", "--signature-policy", self.policy, "--cert-dir", self.certdir,
                        dst], env=env)
            c = https(self.wharf, self.pki, client_cert=self.cacert)
            st_, h, _ = request(c, "HEAD", "/v2/tls/podman-pushed/manifests/1")
            c.close()
            self.assertEqual(st_, 200)
        finally:
            shutil.rmtree(st, ignore_errors=True)

    @unittest.skipUnless(have("containerd") and have("ctr"), "containerd/ctr not installed")
    def test_ctr_pull(self):
        import upstream as up
        src = "%s/tls/ctr:1" % self.host
        run(["skopeo", "--policy", self.policy, "copy", "--dest-cert-dir", self.certdir,
             self.img.ref, "docker://" + src], env=self.env)
        hosts = os.path.join(self.tmp, "hosts-%d" % self.port)
        os.makedirs(os.path.join(hosts, self.host), exist_ok=True)
        toml = 'server = "https://%s"\n[host."https://%s"]\n  ca = "%s"\n' % (
            self.host, self.host, self.pki.ca_crt)
        if self.cacert:
            toml += '  client = [["%s", "%s"]]\n' % (self.pki.client_crt, self.pki.client_key)
        with open(os.path.join(hosts, self.host, "hosts.toml"), "w") as f:
            f.write(toml)
        ctrd = up.Containerd().start()
        try:
            ctrd.ctr("images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", src,
                     timeout=90)
            out = ctrd.ctr("images", "ls").stdout
            line = [l for l in out.splitlines() if l.startswith(src + " ")]
            self.assertTrue(line, out)
            self.assertIn(self.img.digest, line[0])
        finally:
            ctrd.stop()
            ctrd.cleanup()


class MutualTLS(TLSClients):
    """cacert set: a client certificate is asked for and verified if given,
    as Zot (2.1.13 on) does; its CN is the user. A client without one
    finishes the handshake and is anonymous: with no anonymous access
    configured, every request is a 401."""
    cacert = True

    def test_client_without_certificate_is_anonymous(self):
        p = run(["curl", "-sS", "--cacert", self.pki.ca_crt, "-o", "/dev/null", "-w",
                 "%{http_code}", "https://127.0.0.1:%d/v2/" % self.port], check=False)
        self.assertEqual((p.returncode, p.stdout), (0, b"401"))
        c = https(self.wharf, self.pki)
        st, h, body = request(c, "GET", "/v2/_catalog")
        c.close()
        self.assertEqual(st, 401)
        self.assertIn("UNAUTHORIZED", body.decode())
        # a certificate from another CA is refused at the handshake
        other = PKI(os.path.join(self.tmp, "other"))
        p = run(["curl", "-sS", "--cacert", self.pki.ca_crt, "--cert", other.client_crt,
                 "--key", other.client_key, "-o", "/dev/null",
                 "https://127.0.0.1:%d/v2/" % self.port], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assert_alive()

    def test_client_with_certificate(self):
        p = run(["curl", "-sS", "--cacert", self.pki.ca_crt, "--cert", self.pki.client_crt,
                 "--key", self.pki.client_key, "-w", "%{http_code}", "-o", "/dev/null",
                 "https://127.0.0.1:%d/v2/" % self.port])
        self.assertEqual(p.stdout, b"200")
        recs = [r for r in self.wharf.log_records() if r.get("message") == "TLS handshake done"]
        self.assertIn("ci-robot", [r.get("identity") for r in recs])


class MutualTLSAccess(TLSCase):
    """The certificate's CN is a user of accessControl, beside anonymous
    access: Zot's chain (Basic, then the certificate, then anonymous)."""
    cacert = True
    extra = {"accessControl": {"repositories": {"**": {
        "policies": [{"users": ["ci-robot"], "actions": ["read", "create"]}],
        "anonymousPolicy": ["read"]}}}}

    def test_identity_and_anonymous(self):
        with_cert = https(self.wharf, self.pki, client_cert=True)
        d = self.upload(with_cert, "mtls/app", b"pushed by ci-robot")
        with_cert.close()
        anon = https(self.wharf, self.pki)
        st, _, body = request(anon, "GET", "/v2/mtls/app/blobs/" + d)
        self.assertEqual((st, body), (200, b"pushed by ci-robot"))
        st, _, _ = request(anon, "POST", "/v2/mtls/app/blobs/uploads/")
        self.assertEqual(st, 401)
        anon.close()
        # Without a cacert'd identity the user is not ci-robot: an Authorization
        # header with no htpasswd configured does not make anyone a user.
        anon = https(self.wharf, self.pki)
        st, _, _ = request(anon, "POST", "/v2/mtls/app/blobs/uploads/",
                           headers={"Authorization": "Basic Y2ktcm9ib3Q6eA=="})
        self.assertEqual(st, 401)
        anon.close()


class PlainListener(unittest.TestCase):
    """TLS sent to a plain HTTP port: one debug line, no 400 per attempt."""

    def test_tls_on_plain_port(self):
        with Wharf({"log": {"level": "debug"}}) as w:
            for _ in range(3):
                p = run(["curl", "-sS", "-k", "https://127.0.0.1:%d/v2/" % w.port],
                        check=False)
                self.assertNotEqual(p.returncode, 0)
            st, _, _ = w.request("GET", "/v2/")
            self.assertEqual(st, 200)
            log = w.log()
        self.assertEqual(log.count("TLS handshake on a plain HTTP listener"), 1, log)
        self.assertNotIn("Invalid method", log)
        self.assertNotIn('"bad request"', log)


class ConfigErrors(unittest.TestCase):
    """Files missing or invalid: verify and serve fail, naming the key."""

    def check(self, tls, key):
        w = Wharf({"http": {"tls": tls}})
        try:
            p = run([WHARF_BIN, "verify", w.config_path], check=False)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertIn(key.encode(), p.stderr)
            self.assertEqual(p.stderr.count(b"\n"), 1, p.stderr)
            p = run([WHARF_BIN, "serve", w.config_path], check=False, timeout=20)
            self.assertEqual(p.returncode, 1)
            self.assertIn(key.encode(), p.stderr + p.stdout)
        finally:
            w.cleanup()

    def test_errors(self):
        pki = PKI_
        bad = os.path.join(_tmp, "bad.pem")
        with open(bad, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n")
        missing = os.path.join(_tmp, "missing.pem")
        self.check({"cert": missing, "key": pki.server_key}, "http.tls.cert")
        self.check({"cert": pki.server_crt, "key": missing}, "http.tls.key")
        self.check({"cert": bad, "key": pki.server_key}, "http.tls.cert")
        self.check({"cert": pki.server_crt, "key": bad}, "http.tls.key")
        self.check({"cert": pki.server_crt, "key": pki.client_key}, "http.tls.key")  # mismatch
        self.check({"cert": pki.server_crt, "key": pki.server_key, "cacert": missing},
                   "http.tls.cacert")
        self.check({"cert": pki.server_crt, "key": pki.server_key, "cacert": bad},
                   "http.tls.cacert")
        self.check({"cert": pki.server_crt}, "http.tls.key")

    def test_valid(self):
        w = Wharf(tls_config(PKI_, cacert=True))
        try:
            p = run([WHARF_BIN, "verify", w.config_path])
            self.assertIn(b"config file is valid", p.stdout)
        finally:
            w.cleanup()


if __name__ == "__main__":
    unittest.main()
