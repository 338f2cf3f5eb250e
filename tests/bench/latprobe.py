#!/usr/bin/env python3
"""A latency probe: small requests back to back on a few keep-alive
connections, each request's latency recorded, until a stop file appears, a
request count or a time limit is reached.

    latprobe.py SPEC.json     (prints the result as JSON on stdout)

SPEC: {"port": N, "conns": 4, "seconds": 60, "max_requests": 0 (none),
       "stop_file": PATH or null, "watch_pid": the server's pid or null,
       "requests": [[method, path, want_status, want_length or null, headers,
                     body (optional, text)], ...],
       "groups": [{"conns": n, "requests": [...]}, ...] (optional)}
With groups, each group has its own connections and takes its own requests
in turn (so slow pushes do not hold up the reads); "requests" and "conns"
are then a first group. A request's index is its place in the requests of
all groups, in order.

One thread and non-blocking sockets (selectors): no GIL hand-off between
client threads adds to a latency, and one connection's answer is read as
soon as it arrives. Each connection sends the next request of the list
(shared, round-robin) as soon as the previous answer is whole. An answer
with another status, or a Content-Length other than the one expected, is
an error; so is a closed or failed connection (which is reopened).

Two latencies per request, both from just before its send:
  client  to the moment this process has read the whole answer;
  wire    to the moment the kernel received the answer's last bytes
          (SO_TIMESTAMPNS on the socket: the receive timestamp of the last
          segment read). On a shared machine this process can wait for its
          CPU for tens of ms after the server answered; the wire latency
          does not count that wait, the client latency does.
A request whose send() call itself took over 1 ms (this process was
descheduled between taking the time and sending) is marked client_delayed:
its latencies would count the client's wait, so the caller leaves it out.

With watch_pid, the server's threads' scheduler statistics
(/proc/PID/task/*/schedstat: time run, time waited runnable for a CPU) are
sampled every 2 ms or so, so that a slow answer can be told apart: the
server's loop thread (tid == pid) running, waiting for a CPU (taken by its
own threads or by other processes), or neither (blocked, or idle).
"samples": [[CLOCK_MONOTONIC s before the read, after it, loop run ns,
loop wait ns, other threads run ns, other threads wait ns], ...]: the two
times bound when the values were read (this process can lose its CPU in
between).

Result: {"records": [[start (CLOCK_MONOTONIC s), client latency s, request
index, ok 0/1, wire latency s, client_delayed 0/1], ...], "errors": {kind:
count}, "requests": n, "unfinished": [[start, age s, request index], ...]
(the requests still out at the stop)}. CLOCK_MONOTONIC is
the same clock in every process of the machine, so the caller can compare
the starts with its own time.monotonic().
"""

import json
import os
import selectors
import socket
import struct
import sys
import time
from collections import Counter

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)     # Linux


class Conn:
    def __init__(self, port):
        self.port = port
        self.sock = None
        self.open()

    def open(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setblocking(False)
        self.sock = s
        self.buf = b""
        self.req = None
        self.t0 = None
        self.t0_wall = None
        self.rx_wall = None       # kernel receive time of the last bytes read
        self.delayed = False
        self.out = b""


def schedstat(pid):
    """[loop run, loop wait, others run, others wait] in ns, or None."""
    out = [0, 0, 0, 0]
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                run, wait = (int(x) for x in f.read().split()[:2])
        except (OSError, ValueError):
            continue
        k = 0 if int(tid) == pid else 2
        out[k] += run
        out[k + 1] += wait
    return out


def parse(buf, head_only):
    """(status, content_length, total bytes of the answer) once the answer in
    buf is whole, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    total = end + 4 + (0 if head_only else length)
    if len(buf) < total:
        return None
    return status, length, total


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    reqs = []
    groups = ([{"conns": spec["conns"], "requests": spec["requests"]}]
              if spec.get("requests") else []) + spec.get("groups", [])
    for g in groups:
        g["base"] = len(reqs)
        g["sent"] = 0
        for method, path, want, want_len, headers, *body in g["requests"]:
            data = body[0].encode() if body else b""
            text = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % (method, path)
            if body:
                text += "Content-Length: %d\r\n" % len(data)
            text += "".join("%s: %s\r\n" % kv for kv in (headers or {}).items()) + "\r\n"
            reqs.append((text.encode() + data, method == "HEAD", want, want_len))
    deadline = time.monotonic() + spec["seconds"]
    max_requests = spec.get("max_requests") or 0
    stop_file = spec.get("stop_file")
    sel = selectors.DefaultSelector()
    conns = []
    for g in groups:
        for _ in range(g["conns"]):
            conns.append(Conn(spec["port"]))
            conns[-1].group = g
    records, errors = [], Counter()
    sent = 0
    watch = spec.get("watch_pid")
    samples = []
    next_sample = 0.0

    def send_next(c):
        nonlocal sent
        if max_requests and sent >= max_requests:
            c.req = None
            return False
        g = c.group
        c.req = g["base"] + g["sent"] % len(g["requests"])
        g["sent"] += 1
        sent += 1
        c.out = reqs[c.req][0]
        c.rx_wall = None
        c.t0 = time.monotonic()
        c.t0_wall = time.time()
        try:
            n = c.sock.send(c.out)
            c.out = c.out[n:]
        except BlockingIOError:
            pass
        except OSError:
            fail(c, "send")
            return True
        c.delayed = time.time() - c.t0_wall > 0.001
        sel.register(c.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0), c)
        return True

    def fail(c, kind):
        errors[kind] += 1
        secs = time.monotonic() - c.t0
        records.append([c.t0, secs, c.req, 0, secs, int(c.delayed)])
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        try:
            c.open()
        except OSError:
            errors["reconnect"] += 1
            conns.remove(c)
            return
        send_next(c)

    for c in conns:
        send_next(c)
    next_check = 0.0
    while sel.get_map():
        now = time.monotonic()
        if now >= deadline:
            break
        if watch and now >= next_sample:
            next_sample = now + 0.002
            st = schedstat(watch)
            if st:
                samples.append([now, time.monotonic()] + st)
        if now >= next_check:
            next_check = now + 0.02
            if stop_file and os.path.exists(stop_file):
                break
        for key, ev in sel.select(timeout=0.002 if watch else 0.02):
            c = key.data
            if ev & selectors.EVENT_WRITE and c.out:
                try:
                    n = c.sock.send(c.out)
                    c.out = c.out[n:]
                except BlockingIOError:
                    pass
                except OSError:
                    fail(c, "send")
                    continue
                if not c.out:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
            if not ev & selectors.EVENT_READ:
                continue
            try:
                data, anc, _, _ = c.sock.recvmsg(65536, socket.CMSG_SPACE(16))
                for level, kind, raw in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, ns = struct.unpack("qq", raw[:16])
                        c.rx_wall = sec + ns / 1e9
            except BlockingIOError:
                continue
            except OSError:
                fail(c, "recv")
                continue
            if not data:
                fail(c, "closed")
                continue
            c.buf += data
            _, head_only, want, want_len = reqs[c.req]
            got = parse(c.buf, head_only)
            if not got:
                continue
            t1 = time.monotonic()
            status, length, total = got
            ok = status == want and (want_len is None or length == want_len)
            if not ok:
                path = reqs[c.req][0].split(b" ")[1][:60].decode()
                errors["status %d length %d (want %d %s) %s" % (
                    status, length, want, want_len, path)] += 1
            wire = c.rx_wall - c.t0_wall if c.rx_wall else t1 - c.t0
            records.append([c.t0, t1 - c.t0, c.req, int(ok), max(0.0, wire), int(c.delayed)])
            c.buf = c.buf[total:]
            sel.unregister(c.sock)
            send_next(c)
    end = time.monotonic()
    unfinished = [[c.t0, end - c.t0, c.req] for c in conns if c.req is not None and c.t0]
    for c in conns:
        try:
            c.sock.close()
        except OSError:
            pass
    json.dump({"records": records, "errors": dict(errors), "requests": len(records),
               "unfinished": unfinished, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
