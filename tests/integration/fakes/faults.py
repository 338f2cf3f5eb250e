#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of any upstream.

    python3 faults.py --port P --upstream http://127.0.0.1:M

Every request is forwarded to the upstream (Host kept, so absolute Location
headers point back here) unless a fault rule matches it. Rules are set at run
time:

    POST /_fault {"mode": "cut", "after_bytes": 1048576, "path_contains": "sha256:ab", "count": 1}
    POST /_fault {"rules": [{...}, {...}]}        several at once (first match wins)
    POST /_fault {"mode": "none"}                 clear
    GET  /_fault                                  the rules, with "remaining" and "hits"

Rule fields:
    mode            none | cut | flip | delay | 429 | 503 | drop | throttle | chunked |
                    corrupt | substitute | <any 3-digit status>
    path_contains   only requests whose path contains this ("" or absent: all)
    method          only this method ("GET", "HEAD"; absent: all)
    count           how many matching requests to affect (absent/null: all)
    after_bytes     cut: close after this many body bytes; flip: the body offset
                    whose byte is XORed with 0x01 (default 0)
    delay_ms        delay: wait before forwarding (also applies before any mode)
    rate_bytes_per_s throttle: body rate per connection (also with cut, flip, chunked)
    retry_after     429/503: the Retry-After header value (seconds)
    rst             cut/drop: close with RST instead of FIN
    find            corrupt: the text after which one character is changed
                    (default "sha256:"; after_bytes moves further on)
    chunked         true: also send the body chunked (with cut, flip, throttle)
    body_from       substitute: a path on the upstream whose body is sent instead
                    (GETs only: a HEAD matching these modes is relayed as it is)

The modes that rewrite a body keep the upstream's status and headers
(Docker-Content-Digest and Content-Type included) and send a fresh
Content-Length; they are meant for manifests (small bodies, read whole):

    chunked     the body goes out with Transfer-Encoding: chunked and no
                Content-Length (streamed, any size)
    corrupt     one character inside a JSON string is changed to another of
                its class (digit, a-f, g-z, A-Z): the JSON stays valid and a
                digest stays a well-formed digest, but the bytes are not the
                ones the upstream's digest names
    substitute  the body of GET body_from (another valid manifest) is sent in
                place of this one

GET /_stats and POST /_stats/reset as in fakecommon.py; faults applied are
counted in counters.faults_applied (and per mode, "fault_<mode>").
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakecommon as fc  # noqa: E402


_CLASSES = (b"0123456789", b"abcdef", b"ghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def corrupt_in_string(data, find="sha256:", offset=0):
    """data with the character at find's end + offset changed to the next one
    of its class; None when find is absent or that byte has no class."""
    i = data.find(find.encode())
    if i < 0:
        return None
    j = i + len(find) + offset
    if j >= len(data):
        return None
    for cls in _CLASSES:
        k = cls.find(data[j:j + 1])
        if k >= 0:
            return data[:j] + cls[(k + 1) % len(cls):][:1] + data[j + 1:]
    return None


class Faults:
    def __init__(self, upstream):
        self.upstream = upstream.rstrip("/")
        self.stats = fc.Stats()
        self.lock = threading.Lock()
        self.rules = []

    def set_rules(self, obj):
        rules = obj.get("rules") if isinstance(obj, dict) and "rules" in obj else [obj]
        out = []
        for r in rules:
            r = dict(r or {})
            mode = str(r.get("mode", "none"))
            if mode == "none":
                continue
            r["mode"] = mode
            r["remaining"] = r.get("count")
            r["hits"] = 0
            out.append(r)
        with self.lock:
            self.rules = out
        return out

    def match(self, h, path):
        with self.lock:
            for r in self.rules:
                if r.get("path_contains") and r["path_contains"] not in path:
                    continue
                if r.get("method") and r["method"].upper() != h.command:
                    continue
                if r["remaining"] is not None:
                    if r["remaining"] <= 0:
                        continue
                    r["remaining"] -= 1
                r["hits"] += 1
                return dict(r)
        return None

    def route(self, h):
        if fc.stats_routes(h, self.stats):
            return
        path = h.path_only
        if path.split("?")[0] == "/_fault":
            if h.command == "POST":
                rules = self.set_rules(json.loads(h.read_body() or b"{}"))
                h.send_json(200, {"rules": rules})
            else:
                with self.lock:
                    h.send_json(200, {"rules": [dict(r) for r in self.rules]})
            return
        ev = self.stats.begin("faults", h.command, path, h.auth_kind(), h.headers.get("Range"))
        rule = self.match(h, path)
        mode = rule["mode"] if rule else "none"
        if rule:
            self.stats.count("faults_applied")
            self.stats.count("fault_" + mode)
            self.stats.set(ev, error="fault:" + mode)
            if rule.get("delay_ms"):
                time.sleep(float(rule["delay_ms"]) / 1000.0)
        body = h.read_body() if h.command in ("POST", "PUT", "PATCH") else None
        if mode == "drop":
            self.stats.set(ev, status=0, done=True)
            h.close_hard(bool(rule.get("rst")))
            return
        if mode.isdigit() and len(mode) == 3:
            status = int(mode)
            hdrs = {"Docker-Distribution-Api-Version": "registry/2.0"}
            if rule.get("retry_after") is not None:
                hdrs["Retry-After"] = str(rule["retry_after"])
            code = {429: "TOOMANYREQUESTS", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")
            self.stats.set(ev, status=status, done=True)
            h.send_oci_error(status, code, "injected fault %d" % status, hdrs)
            return
        if mode in ("corrupt", "substitute") and h.command == "GET":
            self.rewrite(h, path, body, ev, rule)
            return
        plan = fc.BodyPlan()
        if mode == "chunked":
            plan.chunked = True
        elif mode == "cut":
            plan.cut_after = int(rule.get("after_bytes") or 0)
            plan.rst = bool(rule.get("rst"))
        elif mode == "flip":
            plan.flip_at = int(rule.get("after_bytes") or 0)
        elif mode == "throttle":
            plan.rate = float(rule.get("rate_bytes_per_s") or 25e6)
        if rule and rule.get("chunked"):
            plan.chunked = True
        if rule and rule.get("rate_bytes_per_s"):
            plan.rate = float(rule["rate_bytes_per_s"])
        try:
            c, resp = fc.forward(h, self.upstream, path, body=body, drop=())
        except OSError as e:
            self.stats.set(ev, status=502, error=str(e), done=True)
            h.send_oci_error(502, "UNAVAILABLE", "upstream: %s" % e)
            return
        try:
            fc.relay(h, resp, ev, self.stats, plan)
        finally:
            c.close()


    def rewrite(self, h, path, body, ev, rule):
        """corrupt / substitute: the upstream's answer with another body."""
        try:
            c, resp = fc.forward(h, self.upstream, path, body=body, drop=())
            data = resp.read()
            c.close()
            if resp.status == 200:
                if rule["mode"] == "corrupt":
                    new = corrupt_in_string(data, rule.get("find") or "sha256:",
                                            int(rule.get("after_bytes") or 0))
                else:
                    c2, r2 = fc.forward(h, self.upstream, rule["body_from"], method="GET",
                                        drop=())
                    new = r2.read() if r2.status == 200 else None
                    c2.close()
                if new is None:
                    self.stats.count("rewrite_failed")
                else:
                    self.stats.count("bodies_rewritten")
                    data = new
        except (OSError, http.client.HTTPException) as e:
            self.stats.set(ev, status=502, error=str(e), done=True)
            h.send_oci_error(502, "UNAVAILABLE", "upstream: %s" % e)
            return
        self.stats.set(ev, status=resp.status)
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in fc.HOP_BY_HOP or k.lower() == "content-length":
                continue
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        self.stats.add_bytes(ev, len(data))
        self.stats.set(ev, done=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--fault", help="an initial rule, as JSON")
    args = ap.parse_args()
    app = Faults(args.upstream)
    if args.fault:
        app.set_rules(json.loads(args.fault))
    fc.run_servers([fc.Server(args.port, fc.Handler, app, name="faults")])


if __name__ == "__main__":
    main()
