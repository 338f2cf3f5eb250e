"""Hardening (issue 8): what a hostile client or a hostile upstream could do
to the server, each case a regression test of a defect that was found and
fixed. Raw sockets on the client side; on the upstream side a small
in-process registry (HostileUpstream) that serves whatever a test tells it
to, wrong on purpose: a real registry cannot be made to lie.

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 -m unittest -v test_hardening
"""

import hashlib
import http.client
import http.server
import json
import os
import socket
import socketserver
import threading
import time
import unittest

import upstream as up
from harness import WHARF_BIN, WHARF_SRC, Wharf, wait_for

SEEDS = os.path.join(WHARF_SRC, "tests", "fuzz", "seeds", "http")
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"



def fd_targets(pid):
    """What pid's descriptors point at; one closed meanwhile is skipped."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            out.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except FileNotFoundError:
            pass
    return out

def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()




class Reader:
    """Reads HTTP/1.1 responses off a raw socket, one at a time."""

    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def response(self, head_only=False):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        n = 0 if head_only else int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def at_eof(self, timeout):
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b""
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


def connect(w, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", w.port), timeout=timeout)
    return s, Reader(s)


def alive(w):
    """The server answers /v2/ on a new connection, at once."""
    st, _, _ = w.request("GET", "/v2/", timeout=5)
    return st == 200 and w.proc.poll() is None


def manifest_for(config, layers):
    return json.dumps({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha(l), "size": len(l)} for l in layers],
    }).encode()


class HostileUpstream:
    """A registry on 127.0.0.1 whose answers a test sets route by route.

    routes: {path: handler(h)} where h is the BaseHTTPRequestHandler; an
    unlisted path is a 404 with the spec's error. `hits` counts requests per
    path. Started in a thread, stopped with stop()."""

    def __init__(self, port=0):
        self.routes = {}
        self.hits = {}
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                path = self.path.split("?")[0]
                with outer.lock:
                    outer.hits[path] = outer.hits.get(path, 0) + 1
                fn = outer.routes.get(path)
                if path == "/v2/" and not fn:
                    return outer.send(self, 200, b"{}", "application/json")
                if not fn:
                    return outer.send(self, 404, b'{"errors":[{"code":"NOT_FOUND"}]}',
                                      "application/json")
                return fn(self)

            do_GET = do_HEAD = handle_one

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                pass  # Wharf cutting a hostile answer short is the point

        self.srv = S(("127.0.0.1", port), H)
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)

    @staticmethod
    def send(h, status, body, ctype, extra=None):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    @staticmethod
    def send_chunked(h, body):
        """200 with the body chunked: no Content-Length, so its size is only
        what a manifest may have said."""
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i in range(0, len(body), 65536):
            piece = body[i:i + 65536]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.write(b"0\r\n\r\n")

    def blob(self, repo, data, **kw):
        self.routes["/v2/%s/blobs/%s" % (repo, sha(data))] = \
            lambda h: self.send(h, 200, data, "application/octet-stream", **kw)

    def manifest(self, repo, ref, body, ctype=MT_MANIFEST, digest=True):
        extra = {"Docker-Content-Digest": sha(body)} if digest else {}
        self.routes["/v2/%s/manifests/%s" % (repo, ref)] = \
            lambda h: self.send(h, 200, body, ctype, extra)

    def hits_for(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class HostileClientTest(unittest.TestCase):
    """The server against raw, malicious requests (a local registry)."""

    @classmethod
    def setUpClass(cls):
        cls.w = Wharf().start()

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.w.cleanup()

    def tearDown(self):
        self.assertIsNone(self.w.proc.poll(), "the server died:\n" + self.w.log()[-3000:])

    def push_blob(self, repo, data):
        st, _, _ = self.w.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, sha(data)),
                                  body=data)
        self.assertEqual(st, 201)

    def push_tag(self, repo, tag):
        cfg, layer = b"{}", b"layer-" + repo.encode()
        self.push_blob(repo, cfg)
        self.push_blob(repo, layer)
        m = manifest_for(cfg, [layer])
        st, _, _ = self.w.request("PUT", "/v2/%s/manifests/%s" % (repo, tag), body=m,
                                  headers={"Content-Type": MT_MANIFEST})
        self.assertEqual(st, 201)
        return m

    # 1. Trailers after a chunked body used to be appended to the request
    # head's arena after the request pointed into it: a large one moved the
    # arena and the access log read freed memory (ASan: heap-use-after-free).
    def test_chunked_put_with_large_trailer(self):
        cfg, layer = b"{}", b"trailer-layer"
        self.push_blob("trail", cfg)
        self.push_blob("trail", layer)
        m = manifest_for(cfg, [layer])
        s, r = connect(self.w)
        body = b"%x\r\n%s\r\n0\r\nX-Trailer: %s\r\n\r\n" % (len(m), m, b"t" * 3000)
        s.sendall(b"PUT /v2/trail/manifests/v1 HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: " + MT_MANIFEST.encode() + b"\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + body +
                  b"GET /v2/trail/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n")
        st, _, _ = r.response()
        self.assertEqual(st, 201)
        st, _, got = r.response()
        self.assertEqual((st, got), (200, m))
        s.close()
        # The access line names the request as it came, not freed bytes.
        recs = wait_for(lambda: [x for x in self.w.log_records()
                                 if x.get("method") == "PUT" and
                                 x.get("path") == "/v2/trail/manifests/v1"], 3.0)
        self.assertTrue(recs, self.w.log()[-2000:])

    def test_trailers_are_bounded(self):
        # More trailer bytes than a head may have: refused, not stored.
        s, r = connect(self.w)
        trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 1000) for i in range(100))
        s.sendall(b"PUT /v2/trail/manifests/v2 HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n" + trailers + b"\r\n")
        try:
            st, _, _ = r.response()
        except (EOFError, ConnectionResetError):
            st = None
        self.assertIn(st, (None, 400, 431))
        self.assertTrue(alive(self.w))

    def test_chunk_extensions_are_bounded(self):
        s, r = connect(self.w)
        s.sendall(b"PUT /v2/trail/manifests/v3 HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n2;ext=" + b"e" * 200000)
        try:
            st, _, _ = r.response()
        except (EOFError, ConnectionResetError):
            st = None
        self.assertIn(st, (None, 400, 431))
        self.assertTrue(r.at_eof(5.0))
        self.assertTrue(alive(self.w))

    # 8. Framing llhttp judges only after on_headers_complete used to be judged
    # after the handler ran: the tag was deleted, then the request refused.
    def test_delete_with_bad_transfer_encoding_does_nothing(self):
        self.push_tag("framing", "keep")
        s, r = connect(self.w)
        s.sendall(b"DELETE /v2/framing/manifests/keep HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: identity\r\n\r\n")
        st, _, _ = r.response()
        self.assertEqual(st, 400)
        self.assertTrue(r.at_eof(3.0))
        st, _, _ = self.w.request("GET", "/v2/framing/manifests/keep")
        self.assertEqual(st, 200, "the tag was deleted by a request that was refused")

    def test_post_with_bad_transfer_encoding_creates_nothing(self):
        for te in (b"gzip", b"chunked, gzip", b"identity"):
            s, r = connect(self.w)
            s.sendall(b"POST /v2/framing2/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: " + te + b"\r\n\r\n")
            st, h, _ = r.response()
            self.assertEqual(st, 400, te)
            self.assertNotIn("location", h)
            s.close()
        st, _, body = self.w.request("GET", "/v2/_catalog")
        self.assertNotIn("framing2", json.loads(body)["repositories"])
        self.assertFalse(os.path.exists(os.path.join(self.w.root, "framing2")))

    def test_content_length_with_chunked_is_refused_before_dispatch(self):
        self.push_tag("framing3", "keep")
        s, r = connect(self.w)
        s.sendall(b"DELETE /v2/framing3/manifests/keep HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        try:
            st, _, _ = r.response()
        except (EOFError, ConnectionResetError):
            st = None
        self.assertIn(st, (None, 400))
        st, _, _ = self.w.request("GET", "/v2/framing3/manifests/keep")
        self.assertEqual(st, 200)

    # 9. An Upgrade used to pause llhttp for good: every later request on the
    # connection got 400.
    def test_upgrade_h2c_is_ignored(self):
        s, r = connect(self.w)
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
                  b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, body = r.response()
        self.assertEqual((st, body), (200, b"{}"))
        self.assertNotIn("upgrade", h)
        self.assertEqual(r.response()[0], 200)
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  b"\r\n")
        self.assertEqual(r.response()[0], 200)
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(r.response()[0], 200)

    def test_connect_method_is_answered(self):
        s, r = connect(self.w)
        s.sendall(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n"
                  b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        st, _, _ = r.response()
        self.assertIn(st, (400, 404, 405))
        self.assertTrue(alive(self.w))

    # Found by fuzz_http: the client's FIN arrived while a long answer was
    # going out (the connection not being read, a half head pipelined behind
    # it); once the answer was sent the half head was parsed and the
    # connection waited for more that could never come.
    def test_fin_during_an_answer_with_half_a_head_behind_it(self):
        data = os.urandom(4 << 20)
        self.push_blob("fin", data)
        s, r = connect(self.w)
        s.sendall(b"GET /v2/fin/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n" % sha(data).encode() +
                  b"HEAD /v2/ HTTP/1.1\r\nHost: x\r\n")
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.5)  # the answer is blocked on us meanwhile
        st, _, body = r.response()
        self.assertEqual((st, sha(body)), (200, sha(data)))
        t0 = time.monotonic()
        self.assertTrue(r.at_eof(5.0), "the connection stayed open")
        self.assertLess(time.monotonic() - t0, 5.0)

    # Every seed of the HTTP fuzz corpus, replayed: the server survives all.
    def test_fuzz_seeds_replayed(self):
        names = sorted(os.listdir(SEEDS))
        self.assertGreater(len(names), 5)
        for name in names:
            with open(os.path.join(SEEDS, name), "rb") as f:
                data = f.read()
            try:
                self.w.raw(data, timeout=2.0)
            except OSError:
                pass
            self.assertTrue(alive(self.w), name)


def sync_wharf(upstream, **http_kw):
    cfg = up.sync_config(upstream.url, maxRetries=0, retryDelay="1s")
    if http_kw:
        cfg["http"] = {"wharf": http_kw}
    return Wharf(cfg).start()


class HostileUpstreamTest(unittest.TestCase):
    def setUp(self):
        self.up = HostileUpstream().start()
        self.w = None

    def tearDown(self):
        died = self.w and self.w.proc and self.w.proc.poll() is not None
        log = self.w.log()[-3000:] if self.w else ""
        if self.w:
            self.w.stop()
            self.w.cleanup()
        self.up.stop()
        self.assertFalse(died, "the server died:\n" + log)

    # 2. A failed fetch used to answer its first client before leaving the
    # in-flight table; the request pipelined behind joined the dead fetch and
    # was never answered, holding its slot (and a deleted temp file) for good.
    def test_pipelined_gets_of_a_missing_blob_are_all_answered(self):
        self.w = sync_wharf(self.up, maxConnections=10)
        missing = sha(b"nowhere")
        req = b"GET /v2/dockerhub/x/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n" % missing.encode()
        socks = []
        for i in range(12):  # more than maxConnections: slots must come back
            s, r = connect(self.w)
            s.sendall(req * 3)
            for _ in range(3):
                st, _, body = r.response()
                self.assertEqual(st, 404, body)
                self.assertEqual(json.loads(body)["errors"][0]["code"], "BLOB_UNKNOWN")
            socks.append(s)
            s.close()
        self.assertTrue(alive(self.w))
        # No descriptor left on a deleted temp file.
        deleted = [p for p in fd_targets(self.w.proc.pid) if p.endswith("(deleted)")]
        self.assertEqual(deleted, [])

    # 2, second half: a connection whose request waits (here on an upstream
    # that never answers) is not being read; it must still notice its client
    # leaving, or the slot is held until the upstream gives up.
    def test_client_leaving_a_waiting_request_frees_its_slot(self):
        gate = threading.Event()

        def stall(h):
            gate.wait(30)
            HostileUpstream.send(h, 404, b"{}", "application/json")
        data = b"slow blob"
        self.up.routes["/v2/slow/blobs/%s" % sha(data)] = stall
        self.w = sync_wharf(self.up, maxConnections=3)
        try:
            for _ in range(3):
                socks = []
                for i in range(3):
                    s, r = connect(self.w)
                    s.sendall(b"GET /v2/dockerhub/slow/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n"
                              % sha(data).encode())
                    socks.append(s)
                time.sleep(0.3)
                for s in socks:
                    s.close()
                # The slots come back at once: a new client is served, not 503'd.
                ok = wait_for(lambda: self.w.request("GET", "/v2/", timeout=5)[0] == 200, 3.0)
                self.assertTrue(ok, "slots were not freed when their clients left")
        finally:
            gate.set()

    # 4. A ranged request during a fill used to get a complete 206 (with
    # ETag and Cache-Control: immutable) before the digest was checked.
    def test_range_during_fill_waits_for_verification(self):
        good = os.urandom(256 * 1024)
        bad = bytearray(good)
        bad[200000] ^= 1
        digest = sha(good)
        self.up.routes["/v2/r/blobs/%s" % digest] = \
            lambda h: HostileUpstream.send(h, 200, bytes(bad), "application/octet-stream")
        self.w = sync_wharf(self.up)
        c = http.client.HTTPConnection("127.0.0.1", self.w.port, timeout=10)
        c.request("GET", "/v2/dockerhub/r/blobs/" + digest, headers={"Range": "bytes=0-99"})
        resp = c.getresponse()
        got = b""
        err = None
        try:
            got = resp.read()
        except (http.client.IncompleteRead, ConnectionResetError) as e:
            err = e
        c.close()
        self.assertFalse(resp.status == 206 and err is None and len(got) == 100,
                         "a complete 206 was sent for a blob that failed its digest")
        # And a good blob's range is answered whole once verified.
        self.up.routes["/v2/r/blobs/%s" % digest] = \
            lambda h: HostileUpstream.send(h, 200, good, "application/octet-stream")
        c = http.client.HTTPConnection("127.0.0.1", self.w.port, timeout=10)
        c.request("GET", "/v2/dockerhub/r/blobs/" + digest,
                  headers={"Range": "bytes=1000-1999"})
        resp = c.getresponse()
        self.assertEqual(resp.status, 206)
        self.assertEqual(resp.read(), good[1000:2000])
        c.close()

    def test_resume_from_an_upstream_that_ignores_ranges(self):
        # Cut once; the Range request is answered 200 with the whole body:
        # what is already in the file is skipped, the digest still checks.
        data = os.urandom(1 << 20)
        ranges = []

        def h(hh):
            ranges.append(hh.headers.get("Range"))
            hh.send_response(200)
            hh.send_header("Content-Type", "application/octet-stream")
            hh.send_header("Content-Length", str(len(data)))
            hh.end_headers()
            if len(ranges) == 1:
                hh.wfile.write(data[:300000])
                hh.wfile.flush()
                hh.close_connection = True
                hh.request.shutdown(socket.SHUT_RDWR)
            else:
                hh.wfile.write(data)
        self.up.routes["/v2/rs/blobs/%s" % sha(data)] = h
        self.w = sync_wharf(self.up)
        st, _, body = self.w.request("GET", "/v2/dockerhub/rs/blobs/" + sha(data), timeout=30)
        self.assertEqual((st, sha(body)), (200, sha(data)))
        self.assertEqual(len(ranges), 2, ranges)
        self.assertIsNone(ranges[0])
        self.assertTrue(ranges[1].startswith("bytes="), ranges)

    # 6. A synced manifest used to be stored without validation.
    def test_invalid_manifests_are_not_cached(self):
        cases = {
            "notjson": (b"<html>hello</html>", "text/html"),
            "array": (b"[1,2,3]", MT_MANIFEST),
            "schema1": (json.dumps({"schemaVersion": 1, "name": "x"}).encode(),
                        "application/vnd.docker.distribution.manifest.v1+json"),
            "badtype": (manifest_for(b"{}", []), "application/x-evil"),
            "baddesc": (json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                                    "config": {"digest": "sha256:zz", "size": 1},
                                    "layers": []}).encode(), MT_MANIFEST),
            "negsize": (json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                                    "config": {"digest": sha(b"{}"), "size": -1},
                                    "layers": []}).encode(), MT_MANIFEST),
            "trailing": (manifest_for(b"{}", []) + b"garbage", MT_MANIFEST),
        }
        for tag, (body, ctype) in cases.items():
            self.up.manifest("m", tag, body, ctype)
        self.w = sync_wharf(self.up)
        for tag in cases:
            st, h, body = self.w.request("GET", "/v2/dockerhub/m/manifests/" + tag)
            self.assertEqual(st, 502, (tag, body))
            self.assertEqual(json.loads(body)["errors"][0]["code"], "UNKNOWN")
        # Nothing was stored: with the upstream gone, nothing is served.
        self.up.routes.clear()
        for tag in cases:
            st, _, _ = self.w.request("GET", "/v2/dockerhub/m/manifests/" + tag)
            self.assertEqual(st, 404, tag)
        self.assertFalse(os.path.exists(os.path.join(self.w.root, "dockerhub", "m",
                                                     "index.json")) and
                         json.load(open(os.path.join(self.w.root, "dockerhub", "m",
                                                     "index.json")))["manifests"])
        # A valid one still goes through.
        good = manifest_for(b"{}", [])
        self.up.manifest("m", "good", good)
        st, _, body = self.w.request("GET", "/v2/dockerhub/m/manifests/good")
        self.assertEqual((st, body), (200, good))

    # 6. Blob fetches stop at the size the manifest declared.
    def test_blob_bigger_than_declared_is_cut_before_it_is_written(self):
        layer = b"L" * 1000
        body = manifest_for(b"{}", [layer])
        self.up.manifest("big", "v1", body)
        endless = b"X" * (8 << 20)
        self.up.routes["/v2/big/blobs/%s" % sha(layer)] = \
            lambda h: HostileUpstream.send_chunked(h, endless)
        self.w = sync_wharf(self.up)
        st, _, _ = self.w.request("GET", "/v2/dockerhub/big/manifests/v1")
        self.assertEqual(st, 200)
        c = http.client.HTTPConnection("127.0.0.1", self.w.port, timeout=10)
        c.request("GET", "/v2/dockerhub/big/blobs/" + sha(layer))
        status, got = None, None
        try:
            resp = c.getresponse()
            status = resp.status
            got = resp.read()
        except (http.client.HTTPException, ConnectionResetError):
            pass
        c.close()
        # Cut (reset) or refused, never a body of the wrong length.
        self.assertTrue(status != 200 or got is None or len(got) < len(layer), (status, got))
        # Never more than the declared size was written to the temp dir.
        tmp = os.path.join(self.w.root, ".wharf", "tmp")
        sizes = [os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)] \
            if os.path.isdir(tmp) else []
        self.assertTrue(all(s <= len(layer) for s in sizes), sizes)

    def test_blob_length_differing_from_declared_fails_at_once(self):
        # Longer than declared (refused on its Content-Length, before a body
        # byte) and shorter (refused at its head): nothing is streamed.
        big, small = b"M" * 1000, b"N" * 1000
        self.up.manifest("len", "v1", manifest_for(b"{}", [big, small]))
        self.up.routes["/v2/len/blobs/%s" % sha(big)] = \
            lambda h: HostileUpstream.send(h, 200, b"Y" * (4 << 20), "application/octet-stream")
        self.up.routes["/v2/len/blobs/%s" % sha(small)] = \
            lambda h: HostileUpstream.send(h, 200, b"Y" * 10, "application/octet-stream")
        self.w = sync_wharf(self.up)
        self.assertEqual(self.w.request("GET", "/v2/dockerhub/len/manifests/v1")[0], 200)
        for layer, needle in ((big, "over the size limit"), (small, "differs from its manifest")):
            st, _, body = self.w.request("GET", "/v2/dockerhub/len/blobs/" + sha(layer))
            self.assertEqual(st, 502, body)
            self.assertEqual(json.loads(body)["errors"][0]["code"], "UNKNOWN")
            self.assertIn(needle, self.w.log())

class DiskFullTest(unittest.TestCase):
    """Filling the cache on a full disk is our storage failing, and is told as
    such: 507 "storage is full", not "the upstream registry is unavailable".
    A 6 MiB tmpfs is the root (needs root to mount; skipped otherwise).
    tests/integration/test_diskfull.py has the rest (pushes, the real
    upstream, stale upload sessions)."""

    def setUp(self):
        import subprocess
        import tempfile
        self.mnt = tempfile.mkdtemp(prefix="wharf-full-")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", self.mnt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            os.rmdir(self.mnt)
            self.skipTest("cannot mount a tmpfs here (not root?)")
        self.up = HostileUpstream().start()
        self.w = None

    def tearDown(self):
        import subprocess
        if self.w:
            self.w.stop()
            self.w.cleanup()
        self.up.stop()
        subprocess.run(["umount", self.mnt])
        os.rmdir(self.mnt)

    def test_blob_fill_on_a_full_disk(self):
        layer = os.urandom(8 << 20)  # more than the disk holds
        self.up.manifest("full", "v1", manifest_for(b"{}", [layer]))
        self.up.blob("full", layer)
        small = b"fits"
        self.up.blob("full", small)
        cfg = up.sync_config(self.up.url, maxRetries=0, retryDelay="1s")
        cfg["storage"] = {"rootDirectory": os.path.join(self.mnt, "data")}
        self.w = Wharf(cfg).start()
        self.assertEqual(self.w.request("GET", "/v2/dockerhub/full/manifests/v1")[0], 200)
        c = http.client.HTTPConnection("127.0.0.1", self.w.port, timeout=20)
        c.request("GET", "/v2/dockerhub/full/blobs/" + sha(layer))
        status, got = None, None
        try:
            resp = c.getresponse()
            status = resp.status
            got = resp.read()
        except (http.client.HTTPException, ConnectionResetError):
            pass
        c.close()
        self.assertFalse(status == 200 and got == layer)
        if status not in (None, 200):
            self.assertEqual(status, 507)
            self.assertIn(b"storage is full", got)
        log = wait_for(lambda: "No space left on device" in self.w.log() and self.w.log(), 5.0)
        self.assertTrue(log, self.w.log()[-2000:])
        self.assertNotIn("upstream registry is unavailable", self.w.log())
        # The temp file went with the failure: the space is back for what fits.
        tmp = os.path.join(self.mnt, "data", ".wharf", "tmp")
        self.assertTrue(wait_for(lambda: not os.listdir(tmp), 5.0), os.listdir(tmp))
        st, _, body = self.w.request("GET", "/v2/dockerhub/full/blobs/" + sha(small))
        self.assertEqual((st, body), (200, small))
        # Without a length nothing was promised yet: the answer is the
        # storage error itself (507: full), not a cut.
        other = os.urandom(8 << 20)
        self.up.routes["/v2/full/blobs/%s" % sha(other)] = \
            lambda h: HostileUpstream.send_chunked(h, other)
        st, _, body = self.w.request("GET", "/v2/dockerhub/full/blobs/" + sha(other))
        self.assertEqual(st, 507, body)
        self.assertIn(b"storage is full", body)

    def test_manifest_fill_on_a_full_disk(self):
        m = manifest_for(b"{}", [b"x" * 10])
        self.up.manifest("full", "v2", m)
        cfg = up.sync_config(self.up.url, maxRetries=0, retryDelay="1s")
        cfg["storage"] = {"rootDirectory": os.path.join(self.mnt, "data")}
        self.w = Wharf(cfg).start()
        filler = os.path.join(self.mnt, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        st, _, body = self.w.request("GET", "/v2/dockerhub/full/manifests/v2")
        self.assertEqual(st, 507, body)
        self.assertEqual(json.loads(body)["errors"][0]["code"], "UNKNOWN")
        self.assertIn(b"storage is full", body)
        self.assertNotIn("upstream registry is unavailable", self.w.log())
        os.unlink(filler)
        st, _, body = self.w.request("GET", "/v2/dockerhub/full/manifests/v2")
        self.assertEqual((st, body), (200, m))


if __name__ == "__main__":
    unittest.main()
