#!/usr/bin/env python3
"""GET load for big bodies, run by load.get_load (one process per client CPU):

    getload.py HOST PORT PATH CONNS SECONDS SIZE [tls]

CONNS keep-alive connections, one thread each, GET PATH over and over for
SECONDS (each finishes the response it is reading). The body is read with
1 MiB recv_into into one buffer and not kept: wrk reads 8 KiB at a time and,
with one thread on the one client CPU of a 2-core machine, is the bottleneck
of a blob row. A response counts only if it is a 200 with Content-Length
SIZE and SIZE body bytes; anything else (status, length, a closed connection,
a timeout) is counted by kind and the connection is made anew. Prints one
JSON line: {"ok", "bad": {kind: n}, "duration_s", "latencies_s"}.
"""

import json
import socket
import ssl
import sys
import threading
import time
from collections import Counter


def main(host, port, path, conns, seconds, size, tls=False):
    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode()
    latencies, bad, lock = [], Counter(), threading.Lock()
    t0 = time.monotonic()
    deadline = t0 + seconds

    def one_response(s, buf):
        """One GET on s: None if it was right, else what was wrong."""
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(65536)
            if not data:
                return "closed in the head"
            head += data
            if len(head) > 65536:
                return "head too long"
        head, _, got = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)[1] if lines[0].count(" ") else lines[0]
        fields = dict(l.split(":", 1) for l in lines[1:] if ":" in l)
        length = {k.strip().lower(): v.strip() for k, v in fields.items()}.get("content-length")
        if status != "200":
            return "status " + status
        if length != str(size):
            return "Content-Length %s" % length
        left = size - len(got)
        view = memoryview(buf)
        while left > 0:
            n = s.recv_into(view, min(left, len(buf)))
            if not n:
                return "short body"
            left -= n
        return None if left == 0 else "body longer than Content-Length"

    def loop():
        buf = bytearray(1 << 20)
        s = None
        while time.monotonic() < deadline:
            try:
                if s is None:
                    s = socket.create_connection((host, port), timeout=30)
                    if tls:
                        # The bench measures throughput, not trust: no verification.
                        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
                        s = ctx.wrap_socket(s)
                t = time.monotonic()
                wrong = one_response(s, buf)
                t = time.monotonic() - t
            except socket.timeout:
                wrong = "timeout"
            except OSError as e:
                wrong = "socket error: %s" % e.__class__.__name__
            with lock:
                if wrong:
                    bad[wrong] += 1
                else:
                    latencies.append(t)
            if wrong and s is not None:
                s.close()
                s = None
        if s is not None:
            s.close()

    threads = [threading.Thread(target=loop) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"ok": len(latencies), "bad": bad, "duration_s": time.monotonic() - t0,
                      "latencies_s": latencies}))


if __name__ == "__main__":
    h, p, path, c, secs, size = sys.argv[1:7]
    main(h, int(p), path, int(c), float(secs), int(size), sys.argv[7:8] == ["tls"])
