"""What the fakes share: a threaded HTTP/1.1 server, a streaming proxy with
hooks (cut, flip, throttle), request/byte counters exposed as JSON, and a
Docker-style token issuer (opaque tokens, or RS256 JWTs that Distribution's
`auth: token` verifies). Python stdlib only; RSA signing goes through the
`openssl` CLI.

Counters (GET /_stats on every fake; POST /_stats/reset clears them):

    {
      "requests": 12,                            # every request seen (any port)
      "by_kind": {"manifest GET": 2, "blob GET": 3, "cdn GET": 3, ...},
      "blob_gets":   {"sha256:..": 1},           # GET /v2/<name>/blobs/<d> (incl. ones answered 307)
      "blob_heads":  {"sha256:..": 1},
      "cdn_gets":    {"sha256:..": 1},           # GETs on the CDN port (hubfront)
      "blob_bytes":  {"sha256:..": 4096},        # blob body bytes sent to the client
      "manifest_gets":  {"library/busy:latest": 1},   # name:reference as in the path
      "manifest_heads": {"library/busy:latest": 1},
      "bytes": {"blob": 4096, "manifest": 1234, "other": 0, "total": 5330},
      "tokens": {"requests": 1, "issued": 1, "denied": 0, "anonymous": 1,
                 "basic": 0, "by_scope": {"repository:library/busy:pull": 1}},
      "counters": {"cdn_auth_rejected": 0, "unauthorized": 2, "faults_applied": 0, ...},
      "events": [{"server": "registry", "method": "GET", "path": "/v2/..",
                  "kind": "blob", "name": "..", "ref": "sha256:..", "status": 307,
                  "bytes": 0, "auth": "bearer", "range": null, "done": true,
                  "error": null, "t": 1700000000.1}, ...]
    }
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
              "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}

CHUNK = 64 * 1024

_BLOB = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<ref>[a-z0-9+._-]+:[a-zA-Z0-9=_-]+)$")
_UPLOAD = re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?(?P<ref>[^/]*)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<ref>[^/]+)$")
_CDN = re.compile(r"^/blobs/(?P<name>.+)/(?P<ref>[a-z0-9+._-]+:[a-zA-Z0-9=_-]+)$")


def classify(path):
    """(kind, name, ref) of a request path (query ignored). kind is one of
    base, blob, upload, manifest, tags, referrers, catalog, cdn, token, other."""
    p = path.split("?", 1)[0]
    if p in ("/v2", "/v2/"):
        return "base", None, None
    if p == "/v2/_catalog":
        return "catalog", None, None
    for kind, rx in (("upload", _UPLOAD), ("blob", _BLOB), ("manifest", _MANIFEST),
                     ("tags", _TAGS), ("referrers", _REFERRERS), ("cdn", _CDN)):
        m = rx.match(p)
        if m:
            return kind, m.group("name"), m.groupdict().get("ref")
    if p.startswith("/token"):
        return "token", None, None
    return "other", None, None


def repo_of(path):
    """The repository name in a /v2/ path, or None."""
    kind, name, _ = classify(path)
    return name


def log(*a):
    if os.environ.get("FAKES_VERBOSE"):
        sys.stderr.write("[%s %d] %s\n" % (os.path.basename(sys.argv[0]), os.getpid(),
                                           " ".join(str(x) for x in a)))
        sys.stderr.flush()


# ---------------------------------------------------------------- counters

class Stats:
    """Thread-safe request counters; see the module doc for the JSON shape."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.events = []
            self.counters = {}
            self.tokens = {"requests": 0, "issued": 0, "denied": 0, "anonymous": 0,
                           "basic": 0, "by_scope": {}}

    def begin(self, server, method, path, auth=None, rng=None):
        kind, name, ref = classify(path)
        ev = {"server": server, "method": method, "path": path, "kind": kind,
              "name": name, "ref": ref, "status": None, "bytes": 0, "auth": auth,
              "range": rng, "done": False, "error": None, "t": time.time()}
        with self.lock:
            self.events.append(ev)
        return ev

    def add_bytes(self, ev, n):
        with self.lock:
            ev["bytes"] += n

    def set(self, ev, **kw):
        with self.lock:
            ev.update(kw)

    def count(self, name, n=1):
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def token(self, scopes, how, issued):
        with self.lock:
            t = self.tokens
            t["requests"] += 1
            t[how] = t.get(how, 0) + 1
            if issued:
                t["issued"] += 1
            else:
                t["denied"] += 1
            for s in scopes or [""]:
                t["by_scope"][s] = t["by_scope"].get(s, 0) + 1

    def snapshot(self):
        with self.lock:
            events = [dict(e) for e in self.events]
            counters = dict(self.counters)
            tokens = json.loads(json.dumps(self.tokens))
        out = {"requests": len(events), "by_kind": {}, "blob_gets": {}, "blob_heads": {},
               "cdn_gets": {}, "blob_bytes": {}, "manifest_gets": {}, "manifest_heads": {},
               "bytes": {"blob": 0, "manifest": 0, "other": 0, "total": 0},
               "tokens": tokens, "counters": counters, "events": events}

        def inc(d, k, n=1):
            d[k] = d.get(k, 0) + n

        for e in events:
            kind, m = e["kind"], e["method"]
            label = "%s %s" % (kind, m)
            inc(out["by_kind"], label)
            if kind == "blob":
                if m == "GET":
                    inc(out["blob_gets"], e["ref"])
                elif m == "HEAD":
                    inc(out["blob_heads"], e["ref"])
            elif kind == "cdn" and m == "GET":
                inc(out["cdn_gets"], e["ref"])
            elif kind == "manifest":
                key = "%s:%s" % (e["name"], e["ref"])
                if m == "GET":
                    inc(out["manifest_gets"], key)
                elif m == "HEAD":
                    inc(out["manifest_heads"], key)
            if kind in ("blob", "cdn"):
                if e["bytes"]:
                    inc(out["blob_bytes"], e["ref"], e["bytes"])
                out["bytes"]["blob"] += e["bytes"]
            elif kind == "manifest":
                out["bytes"]["manifest"] += e["bytes"]
            else:
                out["bytes"]["other"] += e["bytes"]
            out["bytes"]["total"] += e["bytes"]
        return out


# ---------------------------------------------------------------- server

class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, port, handler, app, host="127.0.0.1", name="http"):
        self.app = app
        self.name = name
        super().__init__((host, port), handler)


def serve_forever_in_thread(srv):
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         name=srv.name, daemon=True)
    t.start()
    return t


class Handler(BaseHTTPRequestHandler):
    """Base: HTTP/1.1 keep-alive, every method routed to self.app.route(self)."""

    protocol_version = "HTTP/1.1"
    server_version = "wharf-test-fake"
    timeout = 120  # idle keep-alive connections go away eventually

    def log_message(self, fmt, *args):
        log("%s %s" % (self.server.name, fmt % args))

    def _any(self):
        try:
            self.server.app.route(self)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _any

    def do_CONNECT(self):
        fn = getattr(self.server.app, "connect", None)
        if fn is None:
            self.send_text(405, "CONNECT not supported\n")
            return
        fn(self)

    # -- request helpers

    @property
    def path_only(self):
        """The request path with a proxy's absolute-form target reduced to its path."""
        p = self.path
        if p.startswith("http://") or p.startswith("https://"):
            u = urllib.parse.urlsplit(p)
            p = u.path + ("?" + u.query if u.query else "")
        return p

    @property
    def query(self):
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.path_only).query,
                                     keep_blank_values=True)

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = []
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def auth_kind(self):
        a = self.headers.get("Authorization")
        if not a:
            return None
        return a.split(" ", 1)[0].lower()

    # -- response helpers

    def send_bytes(self, status, data, ctype="application/octet-stream", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)

    def send_json(self, status, obj, headers=None):
        self.send_bytes(status, json.dumps(obj, indent=1).encode() + b"\n",
                        "application/json", headers)

    def send_text(self, status, text, headers=None):
        self.send_bytes(status, text.encode(), "text/plain", headers)

    def send_oci_error(self, status, code, message, headers=None):
        self.send_json(status, {"errors": [{"code": code, "message": message, "detail": None}]},
                       headers)

    def close_hard(self, rst=False):
        """Close the client connection now: FIN, or RST with rst=True."""
        self.close_connection = True
        try:
            if rst:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.connection.close()
        except OSError:
            pass


# ---------------------------------------------------------------- proxying

def upstream_conn(base, timeout=120):
    """An http.client connection to base ("http://host:port" or https, which is
    not verified: the fakes sit in front of test servers)."""
    u = urllib.parse.urlsplit(base)
    if u.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=timeout,
                                           context=ctx)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)


def forward(handler, base, path=None, method=None, body=None, drop=("authorization",),
            extra=None):
    """Send the handler's request (or the given method/path) to base; returns
    (conn, response) — the caller relays it and closes conn. Host is kept, so
    Distribution's absolute Location headers point at the front."""
    method = method or handler.command
    path = path or handler.path_only
    if body is None and method in ("POST", "PUT", "PATCH"):
        body = handler.read_body()
    hdrs = []  # a list: repeated headers (skopeo sends several Accept lines) stay repeated
    for k, v in handler.headers.items():
        lk = k.lower()
        if lk in HOP_BY_HOP or lk in drop or lk == "content-length":
            continue
        hdrs.append((k, v))
    for k, v in (extra or {}).items():
        hdrs = [(a, b) for a, b in hdrs if a.lower() != k.lower()] + [(k, v)]
    if body is not None:
        hdrs.append(("Content-Length", str(len(body))))
    c = upstream_conn(base)
    c.putrequest(method, path, skip_host=any(k.lower() == "host" for k, _ in hdrs),
                 skip_accept_encoding=True)
    for k, v in hdrs:
        c.putheader(k, v)
    c.endheaders(body)
    return c, c.getresponse()


class BodyPlan:
    """How to alter a relayed body: cut after N bytes, flip the byte at N,
    limit to rate bytes/s, close with RST instead of FIN, send it chunked
    (Transfer-Encoding: chunked, no Content-Length)."""

    def __init__(self, cut_after=None, flip_at=None, rate=None, rst=False, chunked=False):
        self.cut_after = cut_after
        self.flip_at = flip_at
        self.rate = rate
        self.rst = rst
        self.chunked = chunked


def relay(handler, resp, ev, stats, plan=None, drop_headers=(), add_headers=None):
    """Relay an upstream response to the client: status, headers, body
    (streamed when it has a Content-Length; buffered otherwise), as the plan
    alters it (with plan.chunked the body goes out chunked, and a HEAD's
    answer has no Content-Length). Counts body bytes into ev. Returns True if
    the whole body went out."""
    plan = plan or BodyPlan()
    status = resp.status
    headers = []
    length = None
    for k, v in resp.getheaders():
        lk = k.lower()
        if lk in HOP_BY_HOP or lk in drop_headers:
            continue
        if lk == "content-length":
            length = int(v)
            continue
        headers.append((k, v))
    no_body = handler.command == "HEAD" or status in (204, 304) or 100 <= status < 200
    data = None
    if length is None and not no_body:
        data = resp.read()  # chunked or close-delimited: small JSON bodies
        length = len(data)
    stats.set(ev, status=status)
    handler.send_response(status)
    for k, v in headers:
        handler.send_header(k, v)
    for k, v in (add_headers or {}).items():
        handler.send_header(k, v)
    chunked = plan.chunked and not no_body
    if chunked:
        handler.send_header("Transfer-Encoding", "chunked")
    elif length is not None and not (plan.chunked and handler.command == "HEAD"):
        handler.send_header("Content-Length", str(length))
    handler.end_headers()
    if no_body:
        stats.set(ev, done=True)
        return True

    def write(b):
        if chunked:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
        else:
            handler.wfile.write(b)

    sent = 0
    start = time.monotonic()
    try:
        while sent < length:
            if data is not None:
                chunk = data[sent:sent + CHUNK]
            else:
                want = min(CHUNK, length - sent)
                if plan.rate:
                    want = min(want, max(1024, int(plan.rate / 50)))
                chunk = resp.read(want)
            if not chunk:
                stats.set(ev, error="upstream short body")
                handler.close_hard()
                return False
            if plan.cut_after is not None and sent + len(chunk) > plan.cut_after:
                chunk = chunk[:max(0, plan.cut_after - sent)]
                if chunk:
                    write(chunk)
                    sent += len(chunk)
                    stats.add_bytes(ev, len(chunk))
                stats.set(ev, error="cut", done=True)
                handler.close_hard(plan.rst)
                return False
            if plan.flip_at is not None and sent <= plan.flip_at < sent + len(chunk):
                i = plan.flip_at - sent
                chunk = chunk[:i] + bytes([chunk[i] ^ 0x01]) + chunk[i + 1:]
                stats.count("bytes_flipped")
            write(chunk)
            sent += len(chunk)
            stats.add_bytes(ev, len(chunk))
            if plan.rate:
                ahead = start + sent / plan.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        if chunked:
            handler.wfile.write(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout, OSError) as e:
        stats.set(ev, error="client went away: %s" % e.__class__.__name__, done=True)
        handler.close_connection = True
        return False
    stats.set(ev, done=True)
    return True


# ---------------------------------------------------------------- tokens

def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_scope(s):
    """"repository:library/busy:pull,push" -> ("repository", "library/busy", {"pull","push"})"""
    parts = s.split(":")
    if len(parts) < 3:
        return None
    return parts[0], ":".join(parts[1:-1]), set(a for a in parts[-1].split(",") if a)


class TokenIssuer:
    """The token endpoint of a Docker-style registry.

    users:    {"u": "p"}; when non-empty, anonymous requests are refused (401)
    service:  the service value the endpoint insists on (400 otherwise)
    expires_in: seconds a token lives (sent as expires_in; enforced by valid())
    jwt:      None for opaque tokens, or (key_path, cert_path, issuer) to issue
              RS256 JWTs with an x5c header, as Distribution's `auth: token` wants
    """

    def __init__(self, stats, service="test-registry", users=None, expires_in=300, jwt=None):
        self.stats = stats
        self.service = service
        self.users = dict(users or {})
        self.expires_in = expires_in
        self.jwt = jwt
        self.lock = threading.Lock()
        self.tokens = {}  # token -> (expiry (time.time()), {(type,name): actions}, user)
        if jwt:
            der = subprocess.run(["openssl", "x509", "-in", jwt[1], "-outform", "DER"],
                                 check=True, stdout=subprocess.PIPE).stdout
            self.x5c = base64.b64encode(der).decode()

    def handle(self, h):
        """GET /token?service=..&scope=.. (anonymous or Basic), or POST /token
        with an OAuth2 password grant form."""
        q = h.query
        user = None
        how = "anonymous"
        if h.command == "POST":
            form = urllib.parse.parse_qs(h.read_body().decode("utf-8", "replace"))
            q = {**q, **form}
            if "username" in form:
                user = (form.get("username", [""])[0], form.get("password", [""])[0])
                how = "basic"
        auth = h.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                u, _, p = base64.b64decode(auth[6:].strip()).decode().partition(":")
                user = (u, p)
            except (ValueError, UnicodeDecodeError):
                user = ("", None)
            how = "basic"
        elif auth:
            how = "other"
        scopes = []
        for s in q.get("scope", []):
            scopes.extend(x for x in s.split(" ") if x)
        ev = self.stats.begin(h.server.name, h.command, h.path_only, h.auth_kind())
        service = (q.get("service") or [""])[0]
        if service != self.service:
            self.stats.token(scopes, how, False)
            self.stats.set(ev, status=400, done=True)
            h.send_json(400, {"details": "invalid service %r" % service})
            return
        if user is not None:
            if self.users.get(user[0]) is None or self.users.get(user[0]) != user[1]:
                self.stats.token(scopes, how, False)
                self.stats.set(ev, status=401, done=True)
                h.send_json(401, {"details": "incorrect username or password"},
                            {"WWW-Authenticate": 'Basic realm="token"'})
                return
        elif self.users:
            self.stats.token(scopes, how, False)
            self.stats.set(ev, status=401, done=True)
            h.send_json(401, {"details": "authentication required"},
                        {"WWW-Authenticate": 'Basic realm="token"'})
            return
        granted = {}
        access = []
        for s in scopes:
            ps = parse_scope(s)
            if not ps:
                continue
            typ, name, actions = ps
            allowed = actions & ({"pull", "push", "delete", "*"} if user else {"pull"})
            granted[(typ, name)] = granted.get((typ, name), set()) | allowed
            access.append({"type": typ, "name": name, "actions": sorted(allowed)})
        now = time.time()
        if self.jwt:
            token = self._jwt(access, user[0] if user else "", now)
        else:
            token = "tok-" + secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = (now + self.expires_in, granted, user[0] if user else None)
        self.stats.token(scopes, how, True)
        body = {"token": token, "access_token": token, "expires_in": self.expires_in,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        self.stats.set(ev, status=200, done=True)
        h.send_json(200, body)

    def _jwt(self, access, sub, now):
        key, _, issuer = self.jwt
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": issuer, "sub": sub, "aud": self.service,
                  "exp": int(now) + self.expires_in, "nbf": int(now) - 5, "iat": int(now),
                  "jti": secrets.token_hex(8), "access": access}
        signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                         b64url(json.dumps(claims, separators=(",", ":")).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                             input=signing_input.encode(), check=True,
                             stdout=subprocess.PIPE).stdout
        return signing_input + "." + b64url(sig)

    def valid(self, token, typ, name, action):
        """True if token is known, unexpired and grants action on typ:name
        (name None: any valid token, e.g. for /v2/)."""
        with self.lock:
            t = self.tokens.get(token)
        if not t:
            return False
        exp, granted, _ = t
        if time.time() >= exp:
            return False
        if name is None:
            return True
        acts = granted.get((typ, name), set())
        return action in acts or "*" in acts


def hmac_sig(secret, *parts):
    return hmac.new(secret, "|".join(parts).encode(), hashlib.sha256).hexdigest()[:32]


def parse_users(specs):
    users = {}
    for s in specs or []:
        u, _, p = s.partition(":")
        users[u] = p
    return users


def stats_routes(h, stats):
    """GET /_stats, POST /_stats/reset. True if handled."""
    p = h.path_only.split("?", 1)[0]
    if p == "/_stats" and h.command == "GET":
        h.send_json(200, stats.snapshot())
        return True
    if p == "/_stats/reset" and h.command == "POST":
        h.read_body()
        stats.reset()
        h.send_json(200, {"ok": True})
        return True
    return False


def run_servers(servers):
    """Serve every server until SIGTERM/SIGINT."""
    import signal
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    for s in servers:
        serve_forever_in_thread(s)
    while not stop.wait(0.5):
        pass
    for s in servers:
        s.server_close()


def tls_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx

