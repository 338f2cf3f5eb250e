#!/usr/bin/env python3
"""A hostile upstream registry: one blob and one manifest, served honestly or
not, as /_config says. For the tests of what Wharf accepts from an upstream
(tests/integration/test_hostile_upstream.py).

    python3 hostile.py --port P --other-port Q

Two listeners on 127.0.0.1:

  P  the registry API: /v2/, GET|HEAD /v2/<name>/blobs/<digest>,
     GET|HEAD /v2/<name>/manifests/<tag or digest> (any name, any tag), and
     the token endpoint GET /token. With "auth", /v2/ paths want
     `Authorization: Bearer x`; otherwise 401 with
       WWW-Authenticate: Bearer realm="http://127.0.0.1:P/token",service="x"
     and /token answers {"token": "x", "expires_in": <expires_in>}, the value
     written as given (raw JSON text: "1e300", "-5", "\\"abc\\""; null: no
     expires_in).
  Q  another port: GET /blob serves the blob, GET /manifest the manifest. It
     refuses (400) and counts a request carrying Authorization.

POST /_config (either port) sets, merged over the current settings:

  blob           "serve" | "redirect" (blob GET: 307 to blob_location)
  blob_location  an absolute URL
  blob_head      "serve" | "redirect" (307 to blob_location)
  manifest       "serve" | "redirect" (307 to manifest_location) |
                 "trickle404" (404, a chunked body that never ends, 2 KiB every 10 ms) |
                 "endless" (200, a chunked manifest body that never ends, as fast as it goes) |
                 "huge_length" (200, Content-Length 1 GiB, then no byte; held until closed)
  manifest_location  an absolute URL
  manifest_head  "serve" | "redirect"
  auth           bool
  expires_in     raw JSON text or null

A request for /v2/... with `hop=1` in its query is always served (a redirect
to the registry itself). Endless bodies stop when the peer goes away, or after
120 s at most. GET /_content gives {"blob", "blob_size", "manifest",
"manifest_type"}; GET /_stats and POST /_stats/reset as in fakecommon.py, plus
counters: "cut_after_bytes" (bytes of an endless body written before the peer
went away), "held_s" (how long a huge_length answer was held open),
"auth_to_other_port".
"""

import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon as fc  # noqa: E402

ENDLESS_MAX_S = 120
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def make_blob(n):
    out = bytearray()
    seed = b"wharf-hostile"
    while len(out) < n:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:n])


class Hostile:
    def __init__(self, args):
        self.port = args.port
        self.stats = fc.Stats()
        self.lock = threading.Lock()
        self.blob = make_blob(300 * 1024)
        self.blob_digest = "sha256:" + hashlib.sha256(self.blob).hexdigest()
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self.blob_digest, "size": len(self.blob)},
            "layers": []}, separators=(",", ":")).encode()
        self.manifest_digest = "sha256:" + hashlib.sha256(self.manifest).hexdigest()
        self.cfg = {"blob": "serve", "blob_location": None, "blob_head": "serve",
                    "manifest": "serve", "manifest_location": None, "manifest_head": "serve",
                    "auth": False, "expires_in": "300"}

    def conf(self, key):
        with self.lock:
            return self.cfg[key]

    # -- dispatch

    def route(self, h):
        if fc.stats_routes(h, self.stats):
            return
        p = h.path_only.split("?", 1)[0]
        if p == "/_config" and h.command == "POST":
            cfg = json.loads(h.read_body() or b"{}")
            with self.lock:
                self.cfg.update(cfg)
                now = dict(self.cfg)
            h.send_json(200, now)
            return
        if p == "/_content":
            h.send_json(200, {"blob": self.blob_digest, "blob_size": len(self.blob),
                              "manifest": self.manifest_digest, "manifest_type": MT_MANIFEST})
            return
        if h.server.name == "other":
            self.other(h, p)
        elif p == "/token":
            self.token(h)
        else:
            self.registry(h, p)

    # -- P: the registry

    def token(self, h):
        ev = self.stats.begin("registry", h.command, h.path_only, h.auth_kind())
        scopes = h.query.get("scope", [])
        self.stats.token(scopes, "anonymous", True)
        raw = self.conf("expires_in")
        body = '{"token": "x"%s}' % ("" if raw is None else ', "expires_in": ' + raw)
        self.stats.set(ev, status=200, done=True)
        h.send_bytes(200, body.encode(), "application/json")

    def registry(self, h, p):
        kind, name, ref = fc.classify(h.path_only)
        ev = self.stats.begin("registry", h.command, h.path_only, h.auth_kind())
        if self.conf("auth") and (h.headers.get("Authorization") or "") != "Bearer x":
            self.stats.count("unauthorized")
            self.stats.set(ev, status=401, done=True)
            h.send_oci_error(401, "UNAUTHORIZED", "authentication required", {
                "WWW-Authenticate":
                    'Bearer realm="http://127.0.0.1:%d/token",service="x"' % self.port})
            return
        hop = "hop" in h.query
        if kind == "base":
            self.stats.set(ev, status=200, done=True)
            h.send_json(200, {})
        elif kind == "blob" and ref == self.blob_digest:
            mode = self.conf("blob_head" if h.command == "HEAD" else "blob")
            if mode == "redirect" and not hop:
                self.redirect(h, ev, self.conf("blob_location"))
            else:
                self.stats.set(ev, status=200, done=True)
                self.stats.add_bytes(ev, 0 if h.command == "HEAD" else len(self.blob))
                h.send_bytes(200, self.blob, headers={"Docker-Content-Digest": ref})
        elif kind == "manifest" and ref != self.blob_digest:
            mode = self.conf("manifest_head" if h.command == "HEAD" else "manifest")
            if hop:
                mode = "serve"
            if mode == "redirect":
                self.redirect(h, ev, self.conf("manifest_location"))
            elif mode == "trickle404":
                self.trickle404(h, ev)
            elif mode == "endless":
                self.endless(h, ev)
            elif mode == "huge_length":
                self.huge_length(h, ev)
            else:
                self.stats.set(ev, status=200, done=True)
                self.stats.add_bytes(ev, 0 if h.command == "HEAD" else len(self.manifest))
                h.send_bytes(200, self.manifest, MT_MANIFEST,
                             {"Docker-Content-Digest": self.manifest_digest})
        else:
            self.stats.set(ev, status=404, done=True)
            h.send_oci_error(404, "NAME_UNKNOWN", "not here")

    def redirect(self, h, ev, location):
        self.stats.set(ev, status=307, done=True)
        h.send_bytes(307, b"", "text/html", {"Location": location})

    def chunked_forever(self, h, ev, piece, interval):
        """Write piece as chunks until the peer goes away (or ENDLESS_MAX_S)."""
        sent = 0
        end = time.monotonic() + ENDLESS_MAX_S
        frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
        try:
            while time.monotonic() < end:
                h.wfile.write(frame)
                h.wfile.flush()
                sent += len(piece)
                if interval:
                    time.sleep(interval)
        except OSError:
            pass
        self.stats.count("cut_after_bytes", sent)
        self.stats.set(ev, bytes=sent, done=True)
        h.close_connection = True

    def trickle404(self, h, ev):
        self.stats.set(ev, status=404)
        h.send_response(404)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        if h.command != "HEAD":
            self.chunked_forever(h, ev, b" " * 2048, 0.01)

    def endless(self, h, ev):
        self.stats.set(ev, status=200)
        h.send_response(200)
        h.send_header("Content-Type", MT_MANIFEST)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        if h.command != "HEAD":
            self.chunked_forever(h, ev, b" " * 65536, 0)

    def huge_length(self, h, ev):
        self.stats.set(ev, status=200)
        h.send_response(200)
        h.send_header("Content-Type", MT_MANIFEST)
        h.send_header("Content-Length", str(1 << 30))
        h.end_headers()
        h.wfile.flush()
        if h.command == "HEAD":
            return
        t0 = time.monotonic()
        h.connection.settimeout(ENDLESS_MAX_S)
        try:
            while h.connection.recv(4096):
                pass
        except (OSError, socket.timeout):
            pass
        self.stats.count("held_s", round(time.monotonic() - t0, 2))
        self.stats.set(ev, done=True)
        h.close_connection = True

    # -- Q: the other port

    def other(self, h, p):
        ev = self.stats.begin("other", h.command, h.path_only, h.auth_kind())
        if h.headers.get("Authorization"):
            self.stats.count("auth_to_other_port")
            self.stats.set(ev, status=400, done=True)
            h.send_text(400, "Authorization header sent to another port\n")
            return
        if p == "/blob":
            self.stats.set(ev, status=200, done=True)
            self.stats.add_bytes(ev, len(self.blob))
            h.send_bytes(200, self.blob)
        elif p == "/manifest":
            self.stats.set(ev, status=200, done=True)
            h.send_bytes(200, self.manifest, MT_MANIFEST,
                         {"Docker-Content-Digest": self.manifest_digest})
        else:
            self.stats.set(ev, status=404, done=True)
            h.send_text(404, "not found\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--other-port", type=int, required=True)
    args = ap.parse_args()
    app = Hostile(args)
    fc.run_servers([fc.Server(args.port, fc.Handler, app, name="registry"),
                    fc.Server(args.other_port, fc.Handler, app, name="other")])


if __name__ == "__main__":
    main()
