"""The HTTP server core against the real binary: routes of the core,
pipelining, keep-alive, malformed and oversized requests, the timeouts
(header, idle, body), Expect: 100-continue, chunked bodies, the connection
limit, write backpressure, graceful shutdown on SIGTERM/SIGINT, the access
log and IPv6.

Every socket has a timeout and every wait a deadline."""

import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import tempfile
import threading
import time
import unittest

from harness import Wharf, rss_kib


class Closed(Exception):
    """The server closed the connection."""


class Reader:
    """HTTP/1.1 responses read off a raw socket, one after another."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def read_until(self, sep):
        while sep not in self.buf:
            self._more()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self):
        """(status, headers with lower-case names) of the next response head,
        interim (1xx) ones included."""
        raw = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = raw.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise AssertionError("not a status line: %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return int(parts[1]), headers

    def response(self, head_request=False):
        """(status, headers, body) of the next final response."""
        status, headers = self.head()
        while 100 <= status < 200:
            status, headers = self.head()
        n = int(headers.get("content-length", "0"))
        body = b"" if head_request else self.read_exact(n)
        return status, headers, body

    def at_eof(self, timeout):
        """True when the server closes within timeout (pending bytes are
        dropped); False when the connection is still open then."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not data:
                return True


def connect(w, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", w.port), timeout=timeout)
    return s, Reader(s)


def get(path, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra)).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def upload_head(name, dgst, length=None, extra=""):
    """The head of a monolithic upload: POST .../blobs/uploads/?digest=."""
    h = "POST /v2/%s/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\n" % (name, dgst)
    h += "Content-Type: application/octet-stream\r\n"
    if length is not None:
        h += "Content-Length: %d\r\n" % length
    return (h + extra + "\r\n").encode()


def wait_for(pred, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def ok_quickly(w, path="/v2/", timeout=2.0):
    """A fresh connection gets a 200 for path."""
    status, _, _ = w.request("GET", path, timeout=timeout)
    return status == 200


class ServerTestCase(unittest.TestCase):
    """One wharf per test, with http.wharf settings of its own."""

    wharf_http = {}
    extra_config = {}

    def setUp(self):
        cfg = {"http": {"wharf": dict(self.wharf_http)}}
        cfg.update(self.extra_config)
        self.w = Wharf(cfg)
        self.w.start()
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.w.stop(sig=signal.SIGKILL)
        self.w.cleanup()

    def connect(self, timeout=5.0):
        s, r = connect(self.w, timeout)
        self.socks.append(s)
        return s, r

    def upload(self, name, data):
        """Monolithic upload; returns the status."""
        status, _, _ = self.w.request(
            "POST", "/v2/%s/blobs/uploads/?digest=%s" % (name, digest(data)),
            body=data, headers={"Content-Type": "application/octet-stream"})
        return status


# ---------------------------------------------------------------------------

class CoreRoutes(ServerTestCase):
    def test_base(self):
        status, headers, body = self.w.request("GET", "/v2/")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {})
        self.assertEqual(headers.get("docker-distribution-api-version"), "registry/2.0")

    def test_head_base_has_no_body(self):
        # A HEAD answer followed by a pipelined GET: if HEAD carried a body,
        # the second status line would not come right after the first head.
        s, r = self.connect()
        s.sendall(b"HEAD /v2/ HTTP/1.1\r\nHost: x\r\n\r\n" + get("/livez"))
        status, headers, _ = r.response(head_request=True)
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("docker-distribution-api-version"), "registry/2.0")
        self.assertTrue(r.buf == b"" or r.buf.startswith(b"HTTP/1.1 "), r.buf[:40])
        status, _, body = r.response()
        self.assertEqual(status, 200)
        self.assertEqual(body, b"ok")

    def test_unknown_route(self):
        for path in ("/nope", "/v2/x/bogus/y", "/v3/"):
            status, headers, body = self.w.request("GET", path)
            self.assertEqual(status, 404, path)
            self.assertIn("json", headers.get("content-type", ""))
            doc = json.loads(body)
            self.assertIsInstance(doc["errors"], list)
            self.assertTrue(doc["errors"][0]["code"])

    def test_health(self):
        """As Zot's (controller-runtime healthz): any method, no credentials,
        200 with the body "ok" as text/plain; a HEAD gets the length only."""
        for path in ("/livez", "/readyz", "/startupz"):
            for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
                status, headers, body = self.w.request(method, path)
                self.assertEqual((status, body), (200, b"ok"), (method, path))
                self.assertEqual(headers.get("content-type"), "text/plain; charset=utf-8")
            status, headers, body = self.w.request("HEAD", path)
            self.assertEqual((status, body, headers.get("content-length")), (200, b"", "2"))
        status, _, _ = self.w.request("GET", "/livez/x")
        self.assertEqual(status, 404, "only the exact paths")

    def test_drain_delay_readyz_fails_while_serving(self):
        """http.wharf.drainDelay: on SIGTERM the server serves on for the
        delay while /readyz answers Zot's 500, then stops; without it,
        it stops at once."""
        w = Wharf({"http": {"wharf": {"drainDelay": "1500ms"}}})
        w.start()
        try:
            self.assertEqual(w.request("GET", "/readyz")[0], 200)
            t0 = time.monotonic()
            w.proc.send_signal(signal.SIGTERM)
            time.sleep(0.2)
            status, headers, body = w.request("GET", "/readyz")
            self.assertEqual((status, body), (500, b"internal server error: not ready yet\n"))
            self.assertEqual(w.request("GET", "/livez")[:3:2], (200, b"ok"))
            self.assertEqual(w.request("GET", "/v2/")[0], 200, "still serving")
            self.assertEqual(w.proc.wait(timeout=10), 0)
            self.assertGreaterEqual(time.monotonic() - t0, 1.4)
        finally:
            w.stop()
            w.cleanup()

    def test_sighup_reopens_log_output(self):
        """logrotate moves log.output away and sends SIGHUP: the lines that
        follow go to a new file of the same name, none is lost or split."""
        log = os.path.join(tempfile.mkdtemp(prefix="wharf-log-"), "wharf.log")
        w = Wharf({"log": {"output": log}})
        w.start()
        try:
            self.assertEqual(w.request("GET", "/v2/")[0], 200)
            os.rename(log, log + ".1")
            w.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not os.path.exists(log):
                time.sleep(0.02)
            self.assertEqual(w.request("GET", "/v2/?after=rotate")[0], 200)
            time.sleep(0.2)
            with open(log) as f:
                new = f.read()
            with open(log + ".1") as f:
                old = f.read()
            self.assertIn("after=rotate", new)
            self.assertNotIn("after=rotate", old)
            self.assertIn("reloading", new)
            for line in (old + new).splitlines():
                json.loads(line)  # whole lines only
        finally:
            w.stop()
            w.cleanup()
            shutil.rmtree(os.path.dirname(log), ignore_errors=True)

    def test_pipelined_200(self):
        s, r = self.connect(timeout=10)
        s.sendall(get("/v2/") * 200)
        got = []
        for _ in range(200):
            status, headers, body = r.response()
            got.append((status, body))
        self.assertEqual(len(got), 200)
        self.assertEqual(set(got), {(200, b"{}")})
        # Nothing more: the connection is idle and open.
        self.assertFalse(r.at_eof(0.2))
        self.assertEqual(r.buf, b"")

    def test_pipelined_mixed_in_order(self):
        paths = ["/v2/", "/livez", "/nope"] * 50
        expect = {"/v2/": 200, "/livez": 200, "/nope": 404}
        s, r = self.connect(timeout=10)
        s.sendall(b"".join(get(p) for p in paths))
        statuses = []
        for p in paths:
            status, _, body = r.response()
            statuses.append(status)
            if p == "/v2/":
                self.assertEqual(body, b"{}")
            elif p == "/livez":
                self.assertEqual(body, b"ok")
            else:
                self.assertIn(b"errors", body)
        self.assertEqual(statuses, [expect[p] for p in paths])

    def test_pipelined_split_across_writes(self):
        # Requests cut at every possible place still parse, in order.
        data = get("/v2/") + get("/nope") + get("/livez")
        s, r = self.connect()
        for i in range(0, len(data), 7):
            s.sendall(data[i:i + 7])
            time.sleep(0.001)
        self.assertEqual([r.response()[0] for _ in range(3)], [200, 404, 200])

    def test_keep_alive(self):
        c = self.w.conn(timeout=5)
        try:
            for path, want in [("/v2/", 200), ("/nope", 404), ("/livez", 200),
                               ("/v2/", 200)]:
                c.request("GET", path)
                resp = c.getresponse()
                resp.read()
                self.assertEqual(resp.status, want)
                self.assertFalse(resp.will_close)
            # Still the same socket.
            sock = c.sock
            c.request("GET", "/v2/")
            c.getresponse().read()
            self.assertIs(c.sock, sock)
        finally:
            c.close()

    def test_connection_close(self):
        s, r = self.connect()
        s.sendall(get("/v2/", "Connection: close\r\n"))
        status, headers, body = r.response()
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("connection", "").lower(), "close")
        self.assertTrue(r.at_eof(2.0))

    def test_http10_closes(self):
        s, r = self.connect()
        s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
        status, _, body = r.response()
        self.assertEqual(status, 200)
        self.assertEqual(body, b"{}")
        self.assertTrue(r.at_eof(2.0))

    def test_http10_keep_alive(self):
        s, r = self.connect()
        s.sendall(b"GET /v2/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = r.response()
        self.assertEqual(status, 200)
        # A 1.0 client assumes close unless the answer says otherwise.
        self.assertEqual(headers.get("connection", "").lower(), "keep-alive")
        self.assertFalse(r.at_eof(0.3))

    def test_malformed(self):
        bad = [
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nHo st: x\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET /v2/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            # Both framings at once: a smuggling attempt.
            b"POST /v2/ HTTP/1.1\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            # A bad chunk size in a body the route reads.
            upload_head("test/x", "sha256:" + "c" * 64, None,
                        "Transfer-Encoding: chunked\r\n") + b"zz\r\n",
        ]
        for req in bad:
            s, r = self.connect()
            s.sendall(req)
            status, headers, body = r.response()
            self.assertEqual(status, 400, req)
            self.assertIn(b"errors", body)
            self.assertTrue(r.at_eof(3.0), req)
            self.assertTrue(ok_quickly(self.w), req)

    def test_bad_request_after_good_one(self):
        # A good request answered, then garbage on the same connection: the
        # first answer is intact, the second is a 400.
        s, r = self.connect()
        s.sendall(get("/v2/") + b"\x00\x01\x02 nonsense\r\n\r\n")
        self.assertEqual(r.response()[:3:2], (200, b"{}"))
        self.assertEqual(r.response()[0], 400)
        self.assertTrue(r.at_eof(3.0))

    def test_huge_header_431(self):
        s, r = self.connect()
        req = get("/v2/", "X-Big: %s\r\n" % ("a" * 200 * 1024))
        try:
            s.sendall(req)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer before reading it all
        status, _, _ = r.response()
        self.assertEqual(status, 431)
        self.assertTrue(ok_quickly(self.w))

    def test_huge_url_431(self):
        s, r = self.connect()
        try:
            s.sendall(get("/v2/" + "a" * 100 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.assertEqual(r.response()[0], 431)
        self.assertTrue(ok_quickly(self.w))

    def test_too_many_headers_431(self):
        s, r = self.connect()
        s.sendall(get("/v2/", "".join("X-H%d: v\r\n" % i for i in range(150))))
        self.assertEqual(r.response()[0], 431)
        self.assertTrue(r.at_eof(3.0))
        # Just under the default limit (100) is fine.
        s, r = self.connect()
        s.sendall(get("/v2/", "".join("X-H%d: v\r\n" % i for i in range(98))))
        self.assertEqual(r.response()[0], 200)
        self.assertTrue(ok_quickly(self.w))

    def test_unwanted_small_body_keeps_connection(self):
        # The route answers 405 without reading the body; the body is read
        # and dropped and the next pipelined request is answered.
        s, r = self.connect()
        s.sendall(b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
                  b"0123456789" + get("/livez"))
        status, headers, _ = r.response()
        self.assertEqual(status, 405)
        self.assertNotEqual(headers.get("connection", "").lower(), "close")
        status, _, body = r.response()
        self.assertEqual((status, body), (200, b"ok"))
        self.assertFalse(r.at_eof(0.3))

    def test_unwanted_large_body_closes(self):
        s, r = self.connect()
        s.sendall(b"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        status, headers, _ = r.response()
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("connection", "").lower(), "close")
        self.assertTrue(r.at_eof(3.0))

    def test_half_close_still_answered(self):
        s, r = self.connect()
        s.sendall(get("/v2/") + get("/livez"))
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(r.response()[::2], (200, b"{}"))
        self.assertEqual(r.response()[0], 200)
        self.assertTrue(r.at_eof(2.0))

    def test_access_log(self):
        s, r = self.connect()
        s.sendall(get("/v2/?x=1") + get("/nope", "X-Forwarded-For: 203.0.113.7\r\n"))
        self.assertEqual(r.response()[0], 200)
        self.assertEqual(r.response()[0], 404)
        local = "%s:%d" % s.getsockname()[:2]

        def find():
            recs = self.w.log_records()
            a = [x for x in recs if x.get("method") == "GET" and
                 x.get("path") == "/v2/?x=1"]
            b = [x for x in recs if x.get("path") == "/nope"]
            return (a[0], b[0]) if a and b else None
        found = wait_for(find, 3.0)
        self.assertTrue(found, self.w.log())
        a, b = found
        self.assertEqual(a["status"], 200)
        self.assertEqual(a["bytes"], 2)
        self.assertIsInstance(a["duration_ms"], int)
        self.assertGreaterEqual(a["duration_ms"], 0)
        self.assertEqual(a["client"], local)
        self.assertEqual(b["status"], 404)
        self.assertGreater(b["bytes"], 0)
        # Behind a proxy: whom the proxy speaks for.
        self.assertEqual(b.get("forwardedFor"), "203.0.113.7")
        self.assertNotIn("forwardedFor", a)

        start = [x for x in self.w.log_records() if "listen" in x]
        self.assertTrue(start, self.w.log())
        st = start[0]
        self.assertTrue(st["version"])
        self.assertEqual(st["config"], self.w.config_path)
        self.assertEqual(st["listen"], self.w.hostport)
        self.assertEqual(st["rootDirectory"], self.w.root)
        self.assertIn("upstreams", st)
        self.assertIn("time", st)
        self.assertIn("level", st)


# ---------------------------------------------------------------------------

class Uploads(ServerTestCase):
    wharf_http = {"bodyTimeout": "1s"}

    def test_monolithic_and_get(self):
        data = os.urandom(100 * 1024)
        self.assertEqual(self.upload("test/a", data), 201)
        status, headers, body = self.w.request("GET", "/v2/test/a/blobs/" + digest(data))
        self.assertEqual(status, 200)
        self.assertEqual(body, data)
        self.assertEqual(headers.get("docker-content-digest"), digest(data))

    def test_expect_100_continue(self):
        data = os.urandom(5000)
        s, r = self.connect()
        s.sendall(upload_head("test/cont", digest(data), len(data),
                              "Expect: 100-continue\r\n"))
        # Nothing of the body has been sent: the interim answer must come first.
        s.settimeout(3.0)
        status, _ = r.head()
        self.assertEqual(status, 100)
        s.sendall(data)
        status, headers, _ = r.response()
        self.assertEqual(status, 201)
        self.assertEqual(headers.get("docker-content-digest"), digest(data))
        # The connection is reusable after it.
        s.sendall(get("/v2/"))
        self.assertEqual(r.response()[0], 200)
        status, _, body = self.w.request("GET", "/v2/test/cont/blobs/" + digest(data))
        self.assertEqual((status, body), (200, data))

    def test_expect_100_not_sent_when_not_reading(self):
        # A route that answers without reading the body must not invite it.
        s, r = self.connect()
        s.sendall(b"PUT /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        status, headers = r.head()
        self.assertEqual(status, 405)
        # The body was never invited, so the connection cannot be reused.
        self.assertEqual(headers.get("connection", "").lower(), "close")
        self.assertTrue(r.at_eof(3.0))

    def test_unwanted_chunked_body_closes(self):
        s, r = self.connect()
        s.sendall(b"POST /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n")
        status, headers, _ = r.response()
        self.assertEqual(status, 405)
        self.assertEqual(headers.get("connection", "").lower(), "close")
        self.assertTrue(r.at_eof(3.0))

    def test_chunked_upload(self):
        data = os.urandom(70000)
        s, r = self.connect()
        s.sendall(upload_head("test/chunked", digest(data), None,
                              "Transfer-Encoding: chunked\r\n"))
        for i in range(0, len(data), 9000):
            piece = data[i:i + 9000]
            s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        status, headers, _ = r.response()
        self.assertEqual(status, 201)
        s.sendall(get("/v2/test/chunked/blobs/" + digest(data)))
        status, _, body = r.response()
        self.assertEqual(status, 200)
        self.assertEqual(body, data)

    def test_pipelined_after_body(self):
        # An upload and requests behind it in one write: the body bytes are
        # not taken for a request, the rest is answered in order.
        data = os.urandom(3000)
        s, r = self.connect()
        s.sendall(upload_head("test/pipe", digest(data), len(data)) + data +
                  b"HEAD /v2/test/pipe/blobs/" + digest(data).encode() +
                  b" HTTP/1.1\r\nHost: x\r\n\r\n" +
                  get("/v2/test/pipe/blobs/" + digest(data), "Range: bytes=10-19\r\n") +
                  get("/v2/"))
        self.assertEqual(r.response()[0], 201)
        status, headers, _ = r.response(head_request=True)
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-length"), str(len(data)))
        status, headers, body = r.response()
        self.assertEqual(status, 206)
        self.assertEqual(body, data[10:20])
        self.assertEqual(headers.get("content-range"), "bytes 10-19/%d" % len(data))
        self.assertEqual(r.response()[::2], (200, b"{}"))

    def test_digest_mismatch(self):
        data = b"hello"
        s, r = self.connect()
        s.sendall(upload_head("test/bad", digest(b"other"), len(data)) + data)
        status, _, body = r.response()
        self.assertEqual(status, 400)
        self.assertIn(b"DIGEST_INVALID", body)
        self.assertEqual(self.w.request("HEAD", "/v2/test/bad/blobs/" + digest(data))[0],
                         404)

    def test_body_timeout(self):
        s, r = self.connect()
        s.sendall(upload_head("test/slow", "sha256:" + "a" * 64, 100) + b"0123456789")
        t0 = time.monotonic()
        self.assertTrue(r.at_eof(5.0))
        took = time.monotonic() - t0
        self.assertGreater(took, 0.8)
        self.assertLess(took, 3.5)
        self.assertTrue(ok_quickly(self.w))

    def test_body_progress_resets_timeout(self):
        # 2.5 s of a body trickling in (a byte every 0.25 s) outlasts the 1 s
        # body timeout and must still succeed: the timeout is for no progress.
        data = os.urandom(10)
        s, r = self.connect()
        s.sendall(upload_head("test/trickle", digest(data), len(data)))
        for b in data:
            time.sleep(0.25)
            s.sendall(bytes([b]))
        status, _, _ = r.response()
        self.assertEqual(status, 201)


# ---------------------------------------------------------------------------

class Timeouts(ServerTestCase):
    wharf_http = {"headerTimeout": "2s", "idleTimeout": "1s"}

    def test_slowloris(self):
        s, r = self.connect(timeout=10)
        s.sendall(b"GET /v2/ HTTP/1.1\r\n")
        t0 = time.monotonic()
        closed_at = []
        latencies = []
        errors = []

        def attacker():
            payload = b"X-Slow: " + b"a" * 100
            try:
                for b in payload:
                    s.sendall(bytes([b]))
                    time.sleep(1.0)
                    if time.monotonic() - t0 > 8:
                        return
            except OSError:
                pass
            finally:
                closed_at.append(time.monotonic() - t0)

        def good_client():
            try:
                while time.monotonic() - t0 < 3.5:
                    a = time.monotonic()
                    status, _, _ = self.w.request("GET", "/v2/", timeout=2)
                    latencies.append(time.monotonic() - a)
                    if status != 200:
                        errors.append(status)
                    time.sleep(0.1)
            except OSError as e:
                errors.append(repr(e))

        ta = threading.Thread(target=attacker)
        tg = threading.Thread(target=good_client)
        ta.start()
        tg.start()
        # The server closes the attacker's connection: its reads see EOF
        # (possibly after a 408).
        got = b""
        s.settimeout(6.0)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        eof_after = time.monotonic() - t0
        tg.join(10)
        ta.join(10)
        self.assertGreater(eof_after, 1.5)
        self.assertLess(eof_after, 4.0)
        self.assertTrue(got == b"" or got.startswith(b"HTTP/1.1 408"), got[:60])
        self.assertEqual(errors, [])
        self.assertGreater(len(latencies), 5)
        self.assertLess(max(latencies), 0.5)

    def test_idle_keep_alive_closed(self):
        s, r = self.connect()
        s.sendall(get("/v2/"))
        self.assertEqual(r.response()[0], 200)
        t0 = time.monotonic()
        self.assertTrue(r.at_eof(4.0))
        took = time.monotonic() - t0
        self.assertGreater(took, 0.7)
        self.assertLess(took, 2.5)

    def test_idle_without_request_closed(self):
        s, r = self.connect()
        t0 = time.monotonic()
        self.assertTrue(r.at_eof(4.0))
        self.assertLess(time.monotonic() - t0, 2.5)

    def test_requests_keep_connection_alive(self):
        # Requests every 0.5 s keep the 1 s idle timer from firing.
        s, r = self.connect()
        for _ in range(5):
            s.sendall(get("/livez"))
            self.assertEqual(r.response()[0], 200)
            time.sleep(0.5)
        s.sendall(get("/v2/"))
        self.assertEqual(r.response()[0], 200)


# ---------------------------------------------------------------------------

class OutOfDescriptors(unittest.TestCase):
    """With few file descriptors, accept fails with EMFILE: the server must
    not spin on its readable listener, and must serve again once
    connections close."""

    def test_emfile_pauses_accept_then_recovers(self):
        # Every accepted connection busy (an upload under way): nothing can be
        # reclaimed, so accepting pauses rather than spins.
        w = Wharf({})
        w.start(wrapper=["prlimit", "--nofile=40:40"])
        socks = []
        try:
            for _ in range(60):
                s = socket.create_connection(("127.0.0.1", w.port), timeout=5)
                s.sendall(upload_head("busy", digest(b"x" * 100000), 100000) + b"x")
                socks.append(s)
                time.sleep(0.02)  # read (busy) before the next is accepted
            time.sleep(0.5)
            with open("/proc/%d/stat" % w.proc.pid) as f:
                before = sum(int(x) for x in f.read().split()[13:15])
            time.sleep(1.0)
            with open("/proc/%d/stat" % w.proc.pid) as f:
                after = sum(int(x) for x in f.read().split()[13:15])
            ticks = os.sysconf("SC_CLK_TCK")
            self.assertLess((after - before) / ticks, 0.3, "the server spins on EMFILE")
            for s in socks:
                s.close()
            socks = []
            deadline = time.monotonic() + 5
            status = None
            while time.monotonic() < deadline and status != 200:
                try:
                    status, _, _ = w.request("GET", "/v2/", timeout=2)
                except OSError:
                    time.sleep(0.1)
            self.assertEqual(status, 200)
            self.assertIn("out of file descriptors; accepting again soon", w.log())
        finally:
            for s in socks:
                s.close()
            w.stop()
            w.cleanup()

    def test_emfile_reclaims_idle_connections(self):
        # Idle connections are closed to make room: a new client is served
        # while they are all still open on the client's side.
        w = Wharf({})
        w.start(wrapper=["prlimit", "--nofile=40:40"])
        socks = []
        try:
            for _ in range(60):
                socks.append(socket.create_connection(("127.0.0.1", w.port), timeout=5))
            time.sleep(0.3)
            for _ in range(5):
                status, _, _ = w.request("GET", "/v2/", timeout=2)
                self.assertEqual(status, 200)
            self.assertIn("closing idle connections to admit new ones", w.log())
            self.assertNotIn("accepting again soon", w.log())
        finally:
            for s in socks:
                s.close()
            w.stop()
            w.cleanup()


class ConnectionLimit(ServerTestCase):
    wharf_http = {"maxConnections": 5}

    def busy(self):
        """A connection with a request in progress: an upload whose body is
        still coming."""
        s, r = self.connect()
        s.sendall(upload_head("busy", digest(b"x" * 100000), 100000) + b"x" * 10)
        return s, r

    def test_limit_when_every_connection_is_busy(self):
        # wait_port's probe connection may still be counted for a moment.
        time.sleep(0.2)
        held = [self.busy() for _ in range(5)]
        time.sleep(0.2)
        s6, r6 = self.connect()
        status, headers, body = r6.response()
        self.assertEqual(status, 503)
        self.assertEqual(headers.get("retry-after"), "1")
        self.assertIn(b"errors", body)
        self.assertTrue(r6.at_eof(2.0))
        # Also when the refused client has already sent its request.
        for _ in range(3):
            s7, r7 = self.connect()
            s7.sendall(get("/v2/"))
            status, headers, body = r7.response()
            self.assertEqual(status, 503)
            self.assertTrue(r7.at_eof(2.0))
        # The busy ones were not disturbed: each upload completes.
        for s, r in held:
            s.sendall(b"x" * (100000 - 10))
            self.assertEqual(r.response()[0], 201)
        self.assertIn("every connection busy", self.w.log())

    def test_idle_connections_make_room(self):
        time.sleep(0.2)
        idle = []
        for _ in range(3):  # idle between requests (keep-alive)
            s, r = self.connect()
            s.sendall(get("/v2/"))
            self.assertEqual(r.response()[0], 200)
            idle.append((s, r))
        for _ in range(2):  # connected, never sent a byte
            idle.append(self.connect())
        time.sleep(0.2)
        # Five more clients: each is served, each taking the oldest idle slot.
        for i in range(5):
            s, r = self.connect()
            s.sendall(get("/v2/"))
            status, _, body = r.response()
            self.assertEqual((status, body), (200, b"{}"), i)
        # The idle ones were closed, silently (no response was owed).
        for s, r in idle:
            self.assertTrue(r.at_eof(2.0))
            self.assertEqual(r.buf, b"")
        self.assertIn("closing idle connections to admit new ones", self.w.log())

    def test_half_sent_heads_make_room(self):
        time.sleep(0.2)
        slow = []
        for _ in range(5):
            s, r = self.connect()
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")  # the head never ends
            slow.append((s, r))
        time.sleep(0.2)
        s, r = self.connect()
        s.sendall(get("/v2/"))
        self.assertEqual(r.response()[0], 200)
        self.assertTrue(slow[0][1].at_eof(2.0))

    def test_mixed_busy_and_idle(self):
        time.sleep(0.2)
        busy = [self.busy() for _ in range(4)]
        s, r = self.connect()
        s.sendall(get("/v2/"))
        self.assertEqual(r.response()[0], 200)  # idle from now on
        time.sleep(0.2)
        # The one idle slot is taken; then there is none left to take.
        s2, r2 = self.connect()
        s2.sendall(upload_head("busy", digest(b"y" * 1000), 1000) + b"y")
        time.sleep(0.2)
        self.assertTrue(r.at_eof(2.0))
        s3, r3 = self.connect()
        self.assertEqual(r3.response()[0], 503)
        for sk, rd in busy:
            sk.sendall(b"x" * (100000 - 10))
            self.assertEqual(rd.response()[0], 201)


class ManyIdleConnections(unittest.TestCase):
    """Issue 18's scenario: far more idle connections than maxConnections
    (the default, 1024) held open, and a normal client served throughout."""

    HOLD = 2000

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < self.HOLD + 200:
            self.skipTest("descriptor limit %d is too low to hold %d connections"
                          % (hard, self.HOLD))
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, self.HOLD + 200), hard))
        self.w = Wharf({})
        self.w.start()
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()
        self.w.stop(sig=signal.SIGKILL)
        self.w.cleanup()

    def test_normal_client_served_while_thousands_idle(self):
        rss0 = rss_kib(self.w.proc.pid)
        deadline = time.monotonic() + 60
        for i in range(self.HOLD):
            self.assertLess(time.monotonic(), deadline)
            self.socks.append(socket.create_connection(("127.0.0.1", self.w.port), timeout=5))
        time.sleep(0.5)
        times = []
        for i in range(20):
            t0 = time.monotonic()
            status, _, body = self.w.request("GET", "/v2/", timeout=5)
            times.append((time.monotonic() - t0) * 1000)
            self.assertEqual((status, body), (200, b"{}"), i)
        times.sort()
        print("\n[issue 18] %d idle connections held, maxConnections 1024: 20 requests, "
              "median %.1f ms, max %.1f ms; RSS %d -> %d KiB"
              % (self.HOLD, times[10], times[-1], rss0, rss_kib(self.w.proc.pid)))
        self.assertLess(times[-1], 1000)
        if not os.environ.get("WHARF_SANITIZE"):
            # Never more than maxConnections are held, at under a KiB each.
            self.assertLess(rss_kib(self.w.proc.pid) - rss0, 16 * 1024)
        open_fds = len(os.listdir("/proc/%d/fd" % self.w.proc.pid))
        self.assertLess(open_fds, 1024 + 64)


# ---------------------------------------------------------------------------

@unittest.skipIf(os.environ.get("WHARF_SANITIZE"),
                 "memory is measured in the plain build: the sanitizers' own memory hides it")
class Backpressure(ServerTestCase):
    def test_slow_readers_bounded_memory(self):
        data = os.urandom(64 * 1024 * 1024)
        d = digest(data)
        self.assertEqual(self.upload("test/big", data), 201)
        del data
        time.sleep(0.2)
        pid = self.w.proc.pid
        before = rss_kib(pid)
        readers = []
        for _ in range(20):
            s, r = self.connect()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.sendall(get("/v2/test/big/blobs/" + d))
            readers.append((s, r))
        # Each one has its head, and then the server is blocked on it.
        for s, r in readers:
            s.settimeout(5.0)
            status, headers = r.head()
            self.assertEqual(status, 200)
            self.assertEqual(int(headers["content-length"]), 64 * 1024 * 1024)
        time.sleep(1.0)
        peak = rss_kib(pid)
        self.assertLess(peak - before, 20 * 1024, (before, peak))
        # The server answers others meanwhile.
        a = time.monotonic()
        self.assertTrue(ok_quickly(self.w))
        self.assertLess(time.monotonic() - a, 0.5)
        # One of them reads it all and gets the right bytes.
        s, r = readers[0]
        s.settimeout(20.0)
        h = hashlib.sha256(r.buf)
        got = len(r.buf)
        while got < 64 * 1024 * 1024:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        self.assertEqual("sha256:" + h.hexdigest(), d)
        for s, _ in readers:
            s.close()
        self.socks.clear()
        self.assertTrue(wait_for(lambda: ok_quickly(self.w), 3.0))
        self.assertLess(rss_kib(pid) - before, 20 * 1024)


    def test_pipelining_client_that_never_reads(self):
        # 20 MB of pipelined requests, no response read: the server stops
        # reading once its answers back up, so the sender blocks, and memory
        # stays bounded.
        pid = self.w.proc.pid
        before = rss_kib(pid)
        s, r = self.connect(timeout=2.0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        blob = get("/v2/") * (20 * 1024 * 1024 // len(get("/v2/")))
        sent = 0
        try:
            while sent < len(blob):
                sent += s.send(blob[sent:sent + 1024 * 1024])
        except socket.timeout:
            pass
        self.assertLess(sent, len(blob))
        self.assertLess(rss_kib(pid) - before, 10 * 1024)
        self.assertTrue(ok_quickly(self.w))
        # The answers that were made are in order and well formed.
        for _ in range(100):
            self.assertEqual(r.response()[::2], (200, b"{}"))


    def test_many_tiny_pipelined_requests_memory(self):
        # 60 KB of minimal requests in one write, read as one buffer: the
        # thousands of requests in it must not each cost a copy of the rest.
        pid = self.w.proc.pid
        before = rss_kib(pid)
        req = b"GET /livez HTTP/1.1\r\n\r\n"
        n = 60000 // len(req)
        s, r = self.connect(timeout=10)
        s.sendall(req * n)
        for _ in range(n):
            self.assertEqual(r.response()[0], 200)
        self.assertLess(rss_kib(pid) - before, 10 * 1024)
        self.assertFalse(r.at_eof(0.2))


class SendTimeout(ServerTestCase):
    wharf_http = {"sendTimeout": "1s"}

    def test_reader_that_never_reads_is_dropped(self):
        size = 32 * 1024 * 1024
        data = os.urandom(size)
        d = digest(data)
        self.assertEqual(self.upload("test/st", data), 201)
        del data
        s, r = self.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(get("/v2/test/st/blobs/" + d))
        self.assertEqual(r.head()[0], 200)
        time.sleep(3.0)  # the send queue is blocked for longer than 1 s
        got = len(r.buf)
        s.settimeout(5.0)
        try:
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
        except ConnectionResetError:
            pass
        self.assertLess(got, size)
        self.assertTrue(ok_quickly(self.w))


# ---------------------------------------------------------------------------

class Shutdown(unittest.TestCase):
    def start(self, **http):
        self.w = Wharf({"http": {"wharf": http}})
        self.w.start()
        self.addCleanup(self.w.cleanup)
        self.addCleanup(self.w.stop, signal.SIGKILL)
        return self.w

    def test_sigterm_idle(self):
        w = self.start()
        self.assertTrue(ok_quickly(w))
        t0 = time.monotonic()
        self.assertEqual(w.stop(signal.SIGTERM, timeout=5), 0)
        self.assertLess(time.monotonic() - t0, 1.5)
        self.assertIn("stopped", w.log())

    def test_sigint_idle(self):
        w = self.start()
        self.assertTrue(ok_quickly(w))
        t0 = time.monotonic()
        self.assertEqual(w.stop(signal.SIGINT, timeout=5), 0)
        self.assertLess(time.monotonic() - t0, 1.5)

    def test_sigterm_graceful(self):
        w = self.start(shutdownTimeout="5s")
        idle, idle_r = connect(w)
        self.addCleanup(idle.close)
        idle.sendall(get("/v2/"))
        self.assertEqual(idle_r.response()[0], 200)

        data = os.urandom(64 * 1024)
        busy, busy_r = connect(w)
        self.addCleanup(busy.close)
        busy.sendall(upload_head("test/inflight", digest(data), len(data)))
        busy.sendall(data[:1000])
        time.sleep(0.2)  # the server has the request

        w.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()

        # The listener goes promptly.
        def refused():
            try:
                socket.create_connection(("127.0.0.1", w.port), timeout=0.5).close()
                return False
            except OSError:
                return True
        self.assertTrue(wait_for(refused, 1.0))
        self.assertLess(time.monotonic() - t0, 1.0)
        # The idle connection is closed.
        self.assertTrue(idle_r.at_eof(1.0))
        # The upload in flight finishes, slowly, and is answered.
        self.assertIsNone(w.proc.poll())
        for i in range(1000, len(data), 16 * 1024):
            busy.sendall(data[i:i + 16 * 1024])
            time.sleep(0.2)
        busy.settimeout(5.0)
        status, headers, _ = busy_r.response()
        self.assertEqual(status, 201)
        self.assertEqual(headers.get("connection", "").lower(), "close")
        self.assertTrue(busy_r.at_eof(2.0))
        self.assertEqual(w.proc.wait(5), 0)
        self.assertLess(time.monotonic() - t0, 4.0)
        # It was published.
        self.assertTrue(os.path.exists(os.path.join(
            w.root, "test", "inflight", "blobs", "sha256", digest(data)[7:])), w.root)

    def test_sigterm_deadline(self):
        # A request still going at shutdownTimeout is cut; exit is still 0.
        w = self.start(shutdownTimeout="1s", bodyTimeout="30s")
        busy, busy_r = connect(w)
        self.addCleanup(busy.close)
        busy.sendall(upload_head("test/cut", "sha256:" + "b" * 64, 1000) + b"x" * 10)
        time.sleep(0.2)
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        self.assertEqual(w.proc.wait(5), 0)
        took = time.monotonic() - t0
        self.assertGreater(took, 0.8)
        self.assertLess(took, 3.0)
        self.assertTrue(busy_r.at_eof(1.0))


# ---------------------------------------------------------------------------

class LogOutput(unittest.TestCase):
    def test_log_output_file(self):
        w2 = Wharf()
        self.addCleanup(w2.cleanup)
        out = os.path.join(w2.tmp, "out.log")
        w2.config["log"]["output"] = out
        with open(w2.config_path, "w") as f:
            json.dump(w2.config, f)
        w2.start()
        self.addCleanup(w2.stop, signal.SIGKILL)
        self.assertEqual(w2.request("GET", "/v2/")[0], 200)
        self.assertEqual(w2.stop(), 0)

        with open(out) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        self.assertTrue(any("listen" in r for r in recs), recs)
        self.assertTrue(any(r.get("path") == "/v2/" and r.get("status") == 200
                            for r in recs), recs)
        # Nothing of that on stderr/stdout.
        self.assertNotIn('"path":"/v2/"', w2.log())


class IPv6(unittest.TestCase):
    def test_ipv6_loopback(self):
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.bind(("::1", 0))
                port = s.getsockname()[1]
        except OSError:
            self.skipTest("no IPv6 loopback")
        w = Wharf({"http": {"address": "::1"}}, port=port)
        self.addCleanup(w.cleanup)
        w.start(host="::1")
        self.addCleanup(w.stop, signal.SIGKILL)
        s = socket.create_connection(("::1", port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(get("/v2/"))
        r = Reader(s)
        status, _, body = r.response()
        self.assertEqual((status, body), (200, b"{}"))
        recs = w.log_records()
        self.assertTrue(any(x.get("listen") == "::1:%d" % port or
                            x.get("listen") == "[::1]:%d" % port for x in recs),
                        w.log())
        self.assertTrue(wait_for(
            lambda: any(str(x.get("client", "")).startswith("[::1]:")
                        for x in w.log_records()), 2.0), w.log())
        # Not on IPv4.
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


if __name__ == "__main__":
    unittest.main()
