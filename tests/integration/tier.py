"""A sharded Wharf tier's parts, shared by test_scaleout.py and
tests/bench/scaleout.py:

    render_haproxy(...), render_nginx(...)   examples/haproxy/ with the addresses replaced
    haproxy_servers(stats_port)              {"wharf1": "UP", ...} from HAProxy's stats CSV
    wait_haproxy_node(stats_port, i, up)     until the front takes node i as up or down
    pull(port, name, img, deadline)          a client's pull, every digest checked, retried
    Clients(port, names, n, ...)             n such clients in threads, round after round

Everything on 127.0.0.1; every wait bounded.
"""

import csv
import hashlib
import http.client
import io
import os
import random
import threading
import time

import upstream as up
from harness import WHARF_SRC, derive, wait_for

EXAMPLES = os.path.join(WHARF_SRC, "examples", "haproxy")
ACCEPT = up.MANIFEST_ACCEPT

# The examples' node addresses (documentation addresses, RFC 5737).
NODE_PLACEHOLDERS = ("192.0.2.11:5000", "192.0.2.12:5000", "192.0.2.13:5000")


def read_example(name):
    with open(os.path.join(EXAMPLES, name)) as f:
        return f.read()


def render_haproxy(port, node_ports, stats_port, sock, extra=()):
    """examples/haproxy/haproxy.cfg with the addresses replaced (each
    placeholder must occur once), the admin socket at `sock`, and without
    the lines that need root and the package's directories (chroot, user,
    group). More than three node ports: the others are added after wharf3,
    with the next ids. `extra`: more (old, new) replacements."""
    more = "".join("\tserver wharf%d 127.0.0.1:%d id %d\n" % (i + 1, p, i + 1)
                   for i, p in enumerate(node_ports) if i >= len(NODE_PLACEHOLDERS))
    return derive(read_example("haproxy.cfg"), [
        ("\tbind :5000\n", "\tbind 127.0.0.1:%d\n" % port),
        ("\tbind 127.0.0.1:8404\n", "\tbind 127.0.0.1:%d\n" % stats_port),
        ("/run/haproxy/admin.sock", sock),
        ("\tchroot /var/lib/haproxy\n", ""),
        ("\tuser haproxy\n", ""),
        ("\tgroup haproxy\n", ""),
        ("\tserver wharf3 192.0.2.13:5000 id 3\n", "\tserver wharf3 192.0.2.13:5000 id 3\n" + more),
    ] + [(ph, "127.0.0.1:%d" % p) for ph, p in zip(NODE_PLACEHOLDERS, node_ports)]
        + list(extra))


def render_nginx(port, node_ports, extra=()):
    """examples/haproxy/nginx.conf with the addresses replaced."""
    return derive(read_example("nginx.conf"), [
        ("\tlisten 5000;\n", "\tlisten 127.0.0.1:%d;\n" % port),
    ] + [(ph, "127.0.0.1:%d" % p) for ph, p in zip(NODE_PLACEHOLDERS, node_ports)]
        + list(extra))


def haproxy_servers(stats_port):
    """{"wharf1": "UP", "wharf2": "DOWN", ...}: the backend's servers as the
    stats page's CSV gives them."""
    c = http.client.HTTPConnection("127.0.0.1", stats_port, timeout=5)
    try:
        c.request("GET", "/stats;csv")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {r["svname"]: r["status"] for r in rows
            if r["pxname"] == "wharf" and r["svname"] not in ("FRONTEND", "BACKEND")}


def wait_haproxy_node(stats_port, i, up_, timeout=15.0):
    """Wait until HAProxy takes node i (0-based: wharf<i+1>) as UP (or DOWN);
    True if it did within timeout."""
    want = "UP" if up_ else "DOWN"
    return bool(wait_for(lambda: haproxy_servers(stats_port).get("wharf%d" % (i + 1)) == want,
                         timeout, 0.05))


# ------------------------------------------------------------------ clients

class PullError(Exception):
    pass


class Conn:
    """One keep-alive connection to 127.0.0.1:port, made anew after any
    failure. (A fresh connection per request would take thousands of
    ephemeral ports in a test, and one of them may be the port a node is
    about to listen on again.)"""

    def __init__(self, port):
        self.port = port
        self.c = None

    def get(self, path, headers):
        if self.c is None:
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.c.request("GET", path, headers=headers)
        return self.c.getresponse()

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def get_checked(port, path, digest, deadline, accept=None, conn=None):
    """GET path until a 200 whose body hashes to digest: on conn (a Conn;
    default a fresh connection), made anew after each failure; waits from 50
    ms doubling to 1 s, until deadline. Returns the failed tries (what went
    wrong, each); raises PullError at the deadline."""
    own = conn is None
    conn = conn or Conn(port)
    failed = []
    delay = 0.05
    try:
        while True:
            try:
                r = conn.get(path, {"Accept": accept} if accept else {})
                h = hashlib.sha256()
                n = 0
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    n += len(chunk)
                got = "sha256:" + h.hexdigest()
                if r.status == 200 and got == digest:
                    if r.will_close:
                        conn.close()
                    return failed
                failed.append("%d, %d bytes, %s" % (r.status, n, got[:19]))
            except (OSError, http.client.HTTPException) as e:
                failed.append("%s: %s" % (type(e).__name__, e))
            conn.close()
            if time.monotonic() + delay > deadline:
                raise PullError("GET %s: %d tries failed: %s" % (path, len(failed),
                                                                 failed[-5:]))
            time.sleep(delay)
            delay = min(2 * delay, 1.0)
    finally:
        if own:
            conn.close()


def pull(port, name, img, deadline, conn=None):
    """A pull as a client makes it: the manifest by tag, then every blob,
    each body checked against the upstream's digest (img: an upstream.UpImage
    or anything with .ref, .digest and .blobs), on conn (a Conn) or fresh
    connections. Returns the failed tries (retried)."""
    failed = get_checked(port, "/v2/%s/manifests/%s" % (name, img.ref), img.digest, deadline,
                         ACCEPT, conn)
    for d in sorted(img.blobs):
        failed += get_checked(port, "/v2/%s/blobs/%s" % (name, d), d, deadline, conn=conn)
    return failed


class Clients:
    """n client threads, each on its own keep-alive connection, pulling
    every name of `names` ({name: image}) in its own (seeded) order, round after round: `rounds` rounds, or until
    stop() once it is set (the round in progress is finished), within
    deadline_s in all."""

    def __init__(self, port, names, n, rounds=None, seed=0, deadline_s=60.0):
        self.port = port
        self.names = names
        self.rounds = rounds
        self.done = [0] * n             # rounds finished, per client
        self.failed = []                # retried tries, all clients
        self.errors = []                # pulls that never succeeded
        self.pulls = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.deadline = time.monotonic() + deadline_s
        self.threads = [threading.Thread(target=self._run, args=(i, seed * 100 + i), daemon=True)
                        for i in range(n)]

    def _run(self, i, seed):
        order = sorted(self.names)
        rnd = random.Random(seed)
        conn = Conn(self.port)
        try:
            while time.monotonic() < self.deadline:
                rnd.shuffle(order)
                for name in order:
                    try:
                        f = pull(self.port, name, self.names[name], self.deadline, conn)
                        with self.lock:
                            self.failed += f
                            self.pulls += 1
                    except PullError as e:
                        with self.lock:
                            self.errors.append("client %d, %s: %s" % (i, name, e))
                        return
                self.done[i] += 1
                if self._stop.is_set() or (self.rounds and self.done[i] >= self.rounds):
                    return
        finally:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def min_rounds(self):
        return min(self.done)

    def running(self):
        return any(t.is_alive() for t in self.threads)

    def stop(self):
        self._stop.set()

    def join(self):
        for t in self.threads:
            t.join(max(1.0, self.deadline - time.monotonic() + 5))
        return self
