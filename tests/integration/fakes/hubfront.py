#!/usr/bin/env python3
"""A Docker-Hub-style front in front of an open registry (Distribution).

    python3 hubfront.py --port P --token-port T --cdn-port C --upstream http://127.0.0.1:D
                        [--user u:p ...] [--expires-in 300] [--service test-registry]
                        [--no-redirect] [--no-auth] [--basic] [--realm-host H]
                        [--mitm-cert crt --mitm-key key]

Three listeners on 127.0.0.1, as Docker Hub has three hosts:

  P  the registry API (registry-1.docker.io). /v2/ requests need
     `Authorization: Bearer <token>` whose scope covers the repository (pull
     for GET/HEAD, push otherwise); else 401 with
       WWW-Authenticate: Bearer realm="http://127.0.0.1:T/token",service="test-registry",scope="repository:<name>:pull"
     Blob GETs are answered `307 Location: http://127.0.0.1:C/blobs/<name>/<digest>?expires=..&sig=..`;
     everything else is proxied to the upstream (Authorization dropped).
     With --basic the registry port asks for HTTP Basic (--user) instead of
     tokens: 401 with WWW-Authenticate: Basic realm="test-registry".
     --realm-host puts another host name (e.g. localhost) in the realm and
     CDN URLs, to check that credentials do not follow a foreign realm.
     Also accepts a proxy's absolute-form target (GET http://registry-1.docker.io/v2/..)
     and, with --mitm-cert/--mitm-key, CONNECT (then TLS with that cert), so a
     client pointed at a Docker Hub URL through http(s)_proxy lands here
     (counted as counters.connect, and counters["connect:<host>"] per host).
  T  the token endpoint (auth.docker.io): GET /token?service=&scope= anonymous
     or HTTP Basic, POST /token (OAuth2 password grant). With --user, anonymous
     requests are refused. Answers {"token","access_token","expires_in","issued_at"}.
  C  the CDN: serves the blob bytes for a valid signature; a request carrying
     an Authorization header is refused (400) and counted (cdn_auth_rejected).

GET /_stats (any port) gives the counters (see fakecommon.py), POST /_stats/reset
clears them; POST /_config {"redirect": bool, "auth": bool, "expires_in": n,
"users": {"u": "p"}} changes behaviour at run time.
"""

import argparse
import os
import secrets
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon as fc  # noqa: E402


class Hub:
    def __init__(self, args):
        self.upstream = args.upstream.rstrip("/")
        self.port = args.port
        self.token_port = args.token_port
        self.cdn_port = args.cdn_port
        self.host = args.realm_host
        self.redirect = bool(args.cdn_port) and not args.no_redirect
        self.auth = not args.no_auth
        self.basic = args.basic
        self.stats = fc.Stats()
        self.issuer = fc.TokenIssuer(self.stats, args.service, fc.parse_users(args.user),
                                     args.expires_in)
        self.secret = secrets.token_bytes(16)
        self.mitm = fc.tls_context(args.mitm_cert, args.mitm_key) if args.mitm_cert else None

    # -- dispatch

    def route(self, h):
        if fc.stats_routes(h, self.stats):
            return
        if h.path_only.split("?")[0] == "/_config" and h.command == "POST":
            import json
            cfg = json.loads(h.read_body() or b"{}")
            if "redirect" in cfg:
                self.redirect = bool(cfg["redirect"]) and bool(self.cdn_port)
            if "auth" in cfg:
                self.auth = bool(cfg["auth"])
            if "expires_in" in cfg:
                self.issuer.expires_in = int(cfg["expires_in"])
            if "users" in cfg:
                self.issuer.users = dict(cfg["users"])
            h.send_json(200, {"redirect": self.redirect, "auth": self.auth,
                              "expires_in": self.issuer.expires_in})
            return
        name = h.server.name
        if name == "token":
            self.token(h)
        elif name == "cdn":
            self.cdn(h)
        else:
            self.registry(h)

    def connect(self, h):
        """CONNECT host:443 → TLS with the MITM cert, then serve the registry API
        on the decrypted stream (the handler loop reads the next requests)."""
        if not self.mitm or h.server.name != "registry":
            h.send_text(405, "CONNECT not supported\n")
            return
        self.stats.count("connect")
        self.stats.count("connect:" + h.path.rsplit(":", 1)[0])
        h.send_response(200, "Connection Established")
        h.end_headers()
        h.wfile.flush()
        try:
            tls = self.mitm.wrap_socket(h.connection, server_side=True)
        except OSError as e:
            fc.log("mitm handshake failed", e)
            self.stats.count("connect_tls_failed")
            h.close_connection = True
            return
        import socketserver
        h.connection = tls
        h.rfile = tls.makefile("rb", -1)
        h.wfile = socketserver._SocketWriter(tls)
        h.close_connection = False

    # -- the three hosts

    def token(self, h):
        if h.path_only.split("?")[0] != "/token":
            h.send_text(404, "not found\n")
            return
        self.issuer.handle(h)

    def challenge(self, name, action):
        v = 'Bearer realm="http://%s:%d/token",service="%s"' % (
            self.host, self.token_port, self.issuer.service)
        if name:
            v += ',scope="repository:%s:%s"' % (name, action)
        return v

    def basic_ok(self, auth):
        import base64
        if not auth.lower().startswith("basic "):
            return False
        try:
            u, _, p = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return u in self.issuer.users and self.issuer.users[u] == p

    def registry(self, h):
        path = h.path_only
        if not path.startswith("/v2"):
            h.send_text(404, "not found\n")
            return
        kind, name, ref = fc.classify(path)
        ev = self.stats.begin("registry", h.command, path, h.auth_kind(), h.headers.get("Range"))
        action = "pull" if h.command in ("GET", "HEAD") else "push"
        if self.auth and self.basic:
            if not self.basic_ok(h.headers.get("Authorization") or ""):
                if h.command in ("POST", "PUT", "PATCH"):
                    h.read_body()
                self.stats.count("unauthorized")
                self.stats.set(ev, status=401, done=True)
                h.send_oci_error(401, "UNAUTHORIZED", "authentication required",
                                 {"WWW-Authenticate": 'Basic realm="test-registry"',
                                  "Docker-Distribution-Api-Version": "registry/2.0"})
                return
            self.stats.count("basic_ok")
        elif self.auth:
            auth = h.headers.get("Authorization") or ""
            tok = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            if not tok or not self.issuer.valid(tok, "repository", name, action):
                if h.command in ("POST", "PUT", "PATCH"):
                    h.read_body()
                self.stats.count("unauthorized")
                self.stats.set(ev, status=401, done=True)
                h.send_oci_error(401, "UNAUTHORIZED", "authentication required",
                                 {"WWW-Authenticate": self.challenge(name, action),
                                  "Docker-Distribution-Api-Version": "registry/2.0"})
                return
        if kind == "blob" and h.command == "GET" and self.redirect:
            expires = str(int(time.time()) + 600)
            sig = fc.hmac_sig(self.secret, name, ref, expires)
            loc = "http://%s:%d/blobs/%s/%s?expires=%s&sig=%s" % (
                self.host, self.cdn_port, name, ref, expires, sig)
            self.stats.set(ev, status=307, done=True)
            h.send_bytes(307, b"", "text/html", {"Location": loc})
            return
        try:
            c, resp = fc.forward(h, self.upstream, path)
        except OSError as e:
            self.stats.set(ev, status=502, error=str(e), done=True)
            h.send_oci_error(502, "UNAVAILABLE", "upstream: %s" % e)
            return
        try:
            fc.relay(h, resp, ev, self.stats)
        finally:
            c.close()

    def cdn(self, h):
        path = h.path_only
        kind, name, ref = fc.classify(path)
        ev = self.stats.begin("cdn", h.command, path, h.auth_kind(), h.headers.get("Range"))
        if h.headers.get("Authorization"):
            self.stats.count("cdn_auth_rejected")
            self.stats.set(ev, status=400, done=True)
            h.send_text(400, "Authorization header sent to the CDN\n")
            return
        if kind != "cdn" or h.command not in ("GET", "HEAD"):
            self.stats.set(ev, status=404, done=True)
            h.send_text(404, "not found\n")
            return
        q = h.query
        expires = (q.get("expires") or [""])[0]
        sig = (q.get("sig") or [""])[0]
        if (not expires.isdigit() or int(expires) < time.time()
                or sig != fc.hmac_sig(self.secret, name, ref, expires)):
            self.stats.count("cdn_bad_signature")
            self.stats.set(ev, status=403, done=True)
            h.send_text(403, "bad or expired signature\n")
            return
        try:
            c, resp = fc.forward(h, self.upstream, "/v2/%s/blobs/%s" % (name, ref))
        except OSError as e:
            self.stats.set(ev, status=502, error=str(e), done=True)
            h.send_text(502, "upstream: %s\n" % e)
            return
        try:
            fc.relay(h, resp, ev, self.stats)
        finally:
            c.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-port", type=int, required=True)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--user", action="append", help="u:p (repeatable); refuses anonymous")
    ap.add_argument("--expires-in", type=int, default=300)
    ap.add_argument("--service", default="test-registry")
    ap.add_argument("--realm-host", default="127.0.0.1")
    ap.add_argument("--no-redirect", action="store_true")
    ap.add_argument("--no-auth", action="store_true")
    ap.add_argument("--basic", action="store_true",
                    help="the registry port wants HTTP Basic (--user) itself, no tokens")
    ap.add_argument("--mitm-cert")
    ap.add_argument("--mitm-key")
    args = ap.parse_args()
    hub = Hub(args)
    servers = [fc.Server(args.port, fc.Handler, hub, name="registry"),
               fc.Server(args.token_port, fc.Handler, hub, name="token")]
    if args.cdn_port:
        servers.append(fc.Server(args.cdn_port, fc.Handler, hub, name="cdn"))
    fc.run_servers(servers)


if __name__ == "__main__":
    main()
