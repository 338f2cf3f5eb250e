"""A sharded cache tier (issue 15, "Beyond one machine"): three Wharf nodes
behind HAProxy running examples/haproxy/haproxy.cfg (or nginx running
examples/haproxy/nginx.conf), which hash the repository name on a
consistent ring, in front of one upstream:

    clients (threads of raw HTTP GETs, every digest checked)
        -> haproxy | nginx (the example; addresses replaced: tier.render_*)
            -> wharf x3 (each its own root; extensions.sync "**" under /hub)
                -> fakes/faults.py (counts what the tier fetches) -> docker-registry

What "upstream bytes" means here: blob body bytes the fault proxy sent to
the nodes, per digest (its /_stats blob_gets and blob_bytes; every node goes
through it, and nothing else does). Manifests are counted apart and only
reported: a tag is asked for again when a node takes a name over, and a
pull-through node may HEAD a tag to revalidate it. The images have no blob
in common, so "1.0x" is exact: every blob fetched once, whole, by one node.

    HaproxyConfigFixtures  fixture checks: `haproxy -c` on the example as it
                           is; the repository name it extracts from a table
                           of paths (the example's frontend answering its
                           variable instead of proxying)
    NginxConfigFixtures    the same for nginx (`nginx -t`, $wharf_repo)
    HaproxyTierTest        a cold pull by 4 clients at once is 1.0x upstream,
                           each repository on exactly one node; names with
                           blobs/manifests/uploads/tags/referrers components
                           and upload sessions (POST, PATCH, PATCH, PUT)
                           through the tier; a node killed (SIGKILL) while
                           clients pull, one of them in the middle of a layer
                           it was fetching: they retry and all succeed, the
                           upstream gives the dead node's share again, once,
                           and the interrupted layer; the node back on its
                           root serves its names and fetches only what it
                           had not finished; back on an empty root, it
                           fetches its share again; a fourth node that joins
                           a warm tier fetches the names it takes, once
    HaproxyDrainTest       a node stopped (SIGTERM) with http.wharf.drainDelay:
                           HAProxy takes it out while it still serves, no
                           request fails, no client retries; its share is
                           fetched again (HaproxyPeersDrainTest: from it, as
                           a peer, while it drains: no upstream byte)
    HaproxyPeersTierTest   the same with extensions.sync.wharf.peers: the
                           death still costs the dead node's share (it was
                           the only holder), but back on its root or on an
                           empty one it fills from the nodes that took its
                           names meanwhile: no upstream byte, and so does a
                           node that joins
    NginxTierTest          a cold pull (1.0x, one node per repository), pushes
                           with upload sessions, a node killed mid-pull

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_scaleout
      (fixture checks: python3 run.py --fixtures test_scaleout)
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import harness
import images
import tier
import upstream as up
from harness import WHARF_BIN, Server, Wharf, free_port, have, wait_for, wait_port

EXAMPLES = tier.EXAMPLES
ACCEPT = tier.ACCEPT
DEST = "hub"

# Upstream names and the size of each one's random layer. Names with
# slashes, and with components a careless key would split on.
IMAGES = [
    ("library/alpha", 8 << 20),    # the node death's interrupted layer
    ("library/bravo", 2 << 20),
    ("org/team/charlie", 5 << 19),
    ("org/team/delta", 3 << 19),
    ("echo", 2 << 20),
    ("tools/foxtrot", 3 << 20),
    ("a/blobs/golf", 3 << 19),
    ("x/manifests/hotel", 5 << 19),
]

BIGGEST = DEST + "/library/alpha"

# Every wait on a pull or a health check is bounded by these.
PULL_DEADLINE_S = 60.0
HEALTH_S = 15.0

STATE = {}


def setUpModule():
    if not os.path.exists(WHARF_BIN):
        raise unittest.SkipTest("no wharf binary at %s" % WHARF_BIN)
    if not have("docker-registry"):
        raise unittest.SkipTest("docker-registry not installed")
    tmp = tempfile.mkdtemp(prefix="wharf-scaleout-")
    os.chmod(tmp, 0o755)   # nginx workers (nobody) reach their temp dirs below
    STATE["tmp"] = tmp
    try:
        dist = up.Distribution().start()
        STATE["dist"] = dist
        client = up.upstream_client(dist)
        ups = {}
        for i, (name, size) in enumerate(IMAGES):
            img = images.big_image(os.path.join(tmp, "layouts", str(i)), size, tag="latest",
                                   seed=150 + i, salt=name)
            up.push_exact(dist.hostport, img, name, "latest")
            ups[name] = up.read_image(client, name, "latest")
        STATE["ups"] = ups
        STATE["faults"] = up.FaultProxy(dist.url).start()
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    for k in ("faults", "dist"):
        s = STATE.pop(k, None)
        if s:
            s.stop()
            s.cleanup()
    if STATE.get("tmp"):
        shutil.rmtree(STATE["tmp"], ignore_errors=True)
    STATE.clear()


def tier_names():
    """The names clients pull through the tier: {"hub/library/alpha": UpImage}."""
    return {"%s/%s" % (DEST, n): img for n, img in STATE["ups"].items()}


# ------------------------------------------------------------------ the fronts

class Front(Server):
    """haproxy or nginx on 127.0.0.1 with its example (tier.render_*)."""

    def __init__(self, tmp, node_ports):
        super().__init__(tmp)
        self.node_ports = list(node_ports)

    def wait_node(self, i, up_, timeout=HEALTH_S):
        """Wait until the front takes node i as up (or down); True if it did."""
        return True


class HAProxy(Front):
    def __init__(self, tmp, node_ports, extra=()):
        super().__init__(tmp, node_ports)
        self.stats_port = free_port()
        self.conf = os.path.join(tmp, "haproxy.cfg")
        with open(self.conf, "w") as f:
            f.write(tier.render_haproxy(self.port, node_ports, self.stats_port,
                                        os.path.join(tmp, "admin.sock"), extra))

    def argv(self):
        return ["haproxy", "-f", self.conf]

    def start(self):
        super().start()
        if not wait_port(self.stats_port, 10, proc=self.proc):
            raise RuntimeError("haproxy's stats frontend did not start:\n" + self.log())
        return self

    def wait_node(self, i, up_, timeout=HEALTH_S):
        return tier.wait_haproxy_node(self.stats_port, i, up_, timeout)


class Nginx(Front):
    def __init__(self, tmp, node_ports, extra=()):
        super().__init__(tmp, node_ports)
        site = os.path.join(tmp, "wharf-tier.conf")
        with open(site, "w") as f:
            f.write(tier.render_nginx(self.port, node_ports, extra))
        # What Debian's /etc/nginx/nginx.conf would be, in the temp dir.
        self.conf = os.path.join(tmp, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write("""\
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  include {site};
}}
""".format(d=tmp, site=site))

    def argv(self):
        return ["nginx", "-c", self.conf, "-p", self.dir, "-e",
                os.path.join(self.dir, "error.log"), "-g", "daemon off;"]

    def logs(self):
        return [self.log_path, os.path.join(self.dir, "error.log")]


# ------------------------------------------------------------------ the tier

class Tier:
    """n Wharf nodes (the first `running` of them started), each its own
    root, with the same pull-through
    config (the fault proxy's upstream under /hub; metrics on; with peers,
    extensions.sync.wharf.peers listing every node, itself included, as one
    file shared by all would), and a front."""

    def __init__(self, tmp, front_class, peers=False, n=3, drain_delay=None, running=None):
        self.tmp = tmp
        self.running = n if running is None else running   # started by start()
        ports = [free_port() for _ in range(n)]
        self.urls = ["http://127.0.0.1:%d" % p for p in ports]
        self.nodes = []
        for p in ports:
            cfg = up.sync_config(STATE["faults"].url, destination="/" + DEST)
            cfg["extensions"]["metrics"] = {}
            if peers:
                cfg["extensions"]["sync"]["wharf"] = {"peers": list(self.urls)}
            if drain_delay:
                cfg["http"] = {"wharf": {"drainDelay": drain_delay}}
            self.nodes.append(Wharf(cfg, port=p))
        self.front = front_class(tmp, ports)

    def start(self):
        for w in self.nodes[:self.running]:
            w.start()
        self.front.start()
        for i in range(len(self.nodes)):
            if not self.front.wait_node(i, i < self.running):
                raise RuntimeError("node %d never %s at the front:\n%s"
                                   % (i, "up" if i < self.running else "down",
                                      self.front.log()))
        return self

    def stop(self):
        """Stop everything (the nodes at once: each may drain); the exit
        statuses of the nodes that were running."""
        self.front.stop()
        running = [(i, w) for i, w in enumerate(self.nodes) if w.proc is not None]
        for _, w in running:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        out = {}
        for i, w in running:
            try:
                w.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
            out[i] = w.stop()     # its status; a second signal only if it is still running
        return out

    def cleanup(self):
        for w in self.nodes:
            w.cleanup()

    def holders(self, name):
        """The nodes whose root holds repository `name` (Zot's layout)."""
        return [i for i, w in enumerate(self.nodes)
                if os.path.exists(os.path.join(w.root, name, "index.json"))]

    def blobs_on(self, i):
        return {"sha256:" + h for _, h in up.blob_files(self.nodes[i].root)}


# ------------------------------------------------------------------ clients

class Reader(threading.Thread):
    """One client reading a blob whose node is fetching it from a throttled
    upstream: when that node dies, the answer is cut (nothing can retry a
    response under way but the client), and the client's retry must get the
    whole blob. `cut` says whether the first answer was cut, `got` how many
    of its bytes came."""

    def __init__(self, port, path, digest):
        super().__init__(daemon=True)
        self.port, self.path, self.digest = port, path, digest
        self.cut = None
        self.got = 0
        self.error = None

    def run(self):
        deadline = time.monotonic() + PULL_DEADLINE_S
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            h = hashlib.sha256()
            try:
                c.request("GET", self.path)
                r = c.getresponse()
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    self.got += len(chunk)
                status = r.status
            except (OSError, http.client.HTTPException):
                status = None
            self.cut = status != 200 or "sha256:" + h.hexdigest() != self.digest
            if self.cut:
                tier.get_checked(self.port, self.path, self.digest, deadline)
        except Exception as e:   # noqa: BLE001 (reported by the test)
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            c.close()


# ------------------------------------------------------------------ metrics and counts

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def node_metrics(w):
    """{(name, labels text): value} from a node's /metrics ({} when it is down)."""
    try:
        st, _, body = w.request("GET", "/metrics", timeout=10)
    except OSError:
        return {}
    out = {}
    for line in body.decode().splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def peer_bytes(metrics):
    return metrics.get(("wharf_cache_peer_fetched_bytes_total", ""), 0.0)


def downloads(metrics, repo):
    return metrics.get(("zot_repo_downloads_total", 'repo="%s"' % repo), 0.0)


def upstream_counts():
    """(blob GETs per digest, blob bytes per digest, manifest GETs + HEADs,
    manifest bytes) since the last reset, once the fault proxy is idle."""
    f = STATE["faults"]
    wait_for(lambda: all(e["done"] for e in f.stats()["events"]), 10, 0.05)
    s = f.stats()
    return (s["blob_gets"], s["blob_bytes"],
            sum(s["manifest_gets"].values()) + sum(s["manifest_heads"].values()),
            s["bytes"]["manifest"])


def fmt_mib(n):
    return "%.2f MiB" % (n / (1 << 20))


# ------------------------------------------------------------------ fixture checks

KEY_TABLE = [
    ("/v2/", ""),
    ("/v2/_catalog", ""),
    ("/livez", ""),
    ("/readyz", ""),
    ("/v2/a/manifests/latest", "a"),
    ("/v2/a/b/c/blobs/sha256:abc", "a/b/c"),
    ("/v2/a/blobs/b/blobs/sha256:0f", "a/blobs/b"),
    ("/v2/a/blobs/uploads/", "a"),
    ("/v2/a/blobs/uploads", "a"),
    ("/v2/a/blobs/uploads/4f2e-1?_state=x", "a"),
    ("/v2/a/blobs/b/blobs/uploads/", "a/blobs/b"),
    ("/v2/a/blobs/b/blobs/uploads/u1", "a/blobs/b"),
    ("/v2/a/manifests/b/manifests/x", "a/manifests/b"),
    ("/v2/x/blobs/uploads/manifests/t", "x/blobs/uploads"),
    ("/v2/org/team/y/tags/list", "org/team/y"),
    ("/v2/p/tags/list/q/tags/list?n=2", "p/tags/list/q"),
    ("/v2/a/b/referrers/sha256:1?artifactType=x", "a/b"),
    ("/v2/r/referrers/s/manifests/v1", "r/referrers/s"),
    ("/v2/blobs/sha256:0f", ""),
    ("/v2/a/manifests/", ""),
    ("/v2/a/tags/list/x", ""),
]


class Endpoint:
    """Requests to 127.0.0.1:port, one fresh connection each."""

    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers dict (lower-case), body bytes)"""
        return harness.request(self.port, method, path, body, headers, timeout)


def get_text(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


class HaproxyConfigFixtures(unittest.TestCase):
    """Fixture check: examples/haproxy/haproxy.cfg parses, and the key its
    frontend extracts is the repository name Wharf's router finds (a table;
    the frontend answers the variable instead of proxying)."""

    def setUp(self):
        if not have("haproxy"):
            self.skipTest("haproxy not installed")
        self.tmp = tempfile.mkdtemp(prefix="haproxy-", dir=STATE["tmp"])

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_example_is_valid_as_it_is(self):
        p = subprocess.run(["haproxy", "-c", "-f", os.path.join(EXAMPLES, "haproxy.cfg")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertNotIn("WARNING", out)

    def test_key_extraction(self):
        echo = ('\thttp-request return status 200 content-type text/plain '
                'lf-string "[%[var(txn.repo)]]"\n')
        h = HAProxy(self.tmp, [free_port()] * 3, extra=[("\tdefault_backend wharf\n", echo)])
        h.start()
        try:
            got = {p: get_text(h.port, p) for p, _ in KEY_TABLE}
        finally:
            h.stop()
        for path, want in KEY_TABLE:
            self.assertEqual(got[path], (200, "[%s]" % want), path)


class NginxConfigFixtures(unittest.TestCase):
    """Fixture check: examples/haproxy/nginx.conf passes `nginx -t`, and its
    $wharf_repo is the repository name of each path of the same table."""

    def setUp(self):
        if not have("nginx"):
            self.skipTest("nginx not installed")
        self.tmp = tempfile.mkdtemp(prefix="nginx-", dir=STATE["tmp"])
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_example_is_valid_and_extracts_the_name(self):
        n = Nginx(self.tmp, [free_port()] * 3, extra=[
            ("\t\tproxy_pass http://wharf_tier;\n",
             '\t\tdefault_type text/plain;\n\t\treturn 200 "[$wharf_repo]";\n')])
        p = subprocess.run(["nginx", "-t", "-c", n.conf, "-p", n.dir, "-e",
                            os.path.join(n.dir, "error.log")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout.decode("utf-8", "replace"))
        n.start()
        try:
            got = {p: get_text(n.port, p) for p, _ in KEY_TABLE}
        finally:
            n.stop()
        for path, want in KEY_TABLE:
            self.assertEqual(got[path], (200, "[%s]" % want), path)


# ------------------------------------------------------------------ the tier's tests

def tier_nodes(n, running):
    """A test's tier: n nodes at the front, the first `running` started."""
    def mark(fn):
        fn.tier_nodes = (n, running)
        return fn
    return mark


class TierCases:
    """One fresh tier (three empty nodes, a front) per test."""

    front_class = None
    front_tool = None
    peers = False
    drain_delay = None

    def setUp(self):
        if not have(self.front_tool):
            self.skipTest("%s not installed" % self.front_tool)
        self.tmp = tempfile.mkdtemp(prefix="tier-", dir=STATE["tmp"])
        os.chmod(self.tmp, 0o755)
        n, running = getattr(getattr(self, self._testMethodName), "tier_nodes", (3, 3))
        self.tier = Tier(self.tmp, self.front_class, peers=self.peers, n=n, running=running,
                         drain_delay=self.drain_delay)
        self.addCleanup(self._finish)
        self.tier.start()
        self.port = self.tier.front.port
        STATE["faults"].reset()

    def _finish(self):
        rcs = self.tier.stop()
        logs = "".join("\n--- node %d log (tail) ---\n%s" % (i, w.log()[-3000:])
                       for i, w in enumerate(self.tier.nodes))
        self.tier.cleanup()
        bad = {i: rc for i, rc in rcs.items() if rc != 0}
        if bad:
            raise AssertionError("nodes exited with %r%s" % (bad, logs))

    def diag(self):
        return "".join("\n--- node %d log (tail) ---\n%s" % (i, w.log()[-2000:])
                       for i, w in enumerate(self.tier.nodes)) + "\n" + self.tier.front.log()

    def run_clients(self, n, rounds=1, seed=0, names=None):
        c = tier.Clients(self.port, names or tier_names(), n, rounds=rounds,
                         seed=seed).start().join()
        self.assertEqual(c.errors, [], "pulls failed" + self.diag())
        self.assertFalse(c.running(), "clients still running")
        return c

    def owners(self, names=None):
        """{name: node} once every name (of names, default all) is held by
        exactly one node, and that node holds every blob of it and no other
        node holds any. A client has a blob's last byte once it verified,
        before the node's store has it in place (fsynced and renamed in the
        thread pool): the placement is awaited a little."""
        names = names or tier_names()
        wait_for(lambda: not self._placement(names)[1], 10)
        out, problems = self._placement(names)
        self.assertEqual(problems, [])
        return out

    def _placement(self, names):
        """({name: node}, what is wrong) as the roots are now."""
        out, bad = {}, []
        for name in names:
            h = self.tier.holders(name)
            if len(h) != 1:
                bad.append("%s is held by nodes %s" % (name, h))
            out[name] = h[0] if h else None
        for i in range(len(self.tier.nodes)):
            on = self.tier.blobs_on(i)
            for name, img in names.items():
                mine = set(img.blobs)
                if out[name] == i and mine - on:
                    bad.append("node %d lacks blobs of %s: %s" % (i, name, sorted(mine - on)))
                elif out[name] != i and mine & on:
                    bad.append("node %d has blobs of %s" % (i, name))
        return out, bad

    def assert_upstream_blobs(self, want, what):
        """Every digest in want fetched exactly once, whole; nothing else."""
        gets, got_bytes, mreqs, mbytes = upstream_counts()
        print("\n[%s] upstream: %d blob GETs, %s of blobs (want %s: %s); %d manifest "
              "requests, %d bytes" % (what, sum(gets.values()), fmt_mib(sum(got_bytes.values())),
                                      len(want), fmt_mib(sum(want.values())), mreqs, mbytes))
        self.assertEqual({d: n for d, n in gets.items() if n}, {d: 1 for d in want},
                         "%s: blob GETs upstream per digest" % what)
        self.assertEqual(got_bytes, {d: s for d, s in want.items()},
                         "%s: blob bytes upstream per digest" % what)

    def all_blobs(self, names=None):
        out = {}
        for name, img in tier_names().items():
            if names is None or name in names:
                out.update(img.blobs)
        return out

    # ---- the tests shared by every front

    def test_cold_pull_is_one_fetch_per_digest(self):
        """4 clients pull all 8 images at once through the front of an empty
        tier: the upstream sends each blob once (1.0x), each repository ends
        up on exactly one node, the names spread over the nodes."""
        t0 = time.monotonic()
        c = self.run_clients(4)
        total = self.all_blobs()
        print("\n[cold pull] 4 clients x %d images (%s) in %.1fs, %d retried tries"
              % (len(tier_names()), fmt_mib(sum(total.values())), time.monotonic() - t0,
                 len(c.failed)))
        self.assertEqual(c.pulls, 4 * len(tier_names()))
        self.assert_upstream_blobs(total, "cold pull, 4 clients")
        owners = self.owners()
        print("[cold pull] owners: %s" % ", ".join("%s: %d" % kv for kv in sorted(owners.items())))
        if self.front_class is HAProxy:
            # Deterministic there (the ring comes from the servers' ids); for
            # nginx, from the nodes' addresses: free ports here.
            self.assertGreaterEqual(len(set(owners.values())), 2, "every name on one node")
        # Pulled again: nothing more from the upstream, every pull from its owner.
        STATE["faults"].reset()
        self.run_clients(2, seed=1)
        self.assert_upstream_blobs({}, "warm pull")

    def test_pushes_and_upload_sessions_land_on_one_node(self):
        """Private names (outside the synced /hub) whose components are
        blobs, manifests, uploads, tags, list and referrers, pushed through
        the front with upload sessions (POST, PATCH, PATCH, PUT to each
        Location): a request on another node than the session's would be
        404. Then every kind of read, four times each (a round robin would
        meet a node without the name): manifest, blob GET and HEAD, tags,
        referrers. Each name is on exactly one node; requests with no name
        are answered (by any node)."""
        names = ["private/app", "private/a/blobs/b", "private/x/manifests/y",
                 "private/blobs/uploads/z", "private/tags/list/w", "private/referrers/r"]
        img = images.single_image(os.path.join(self.tmp, "img"), tag="v1", salt="scaleout")
        empty = b"{}"
        empty_d = "sha256:" + hashlib.sha256(empty).hexdigest()
        art = json.dumps({
            "schemaVersion": 2, "mediaType": images.MT_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_d,
                       "size": 2},
            "layers": [],
            "subject": {"mediaType": img.media_type, "digest": img.digest, "size": img.size},
        }, sort_keys=True).encode()
        art_d = "sha256:" + hashlib.sha256(art).hexdigest()
        front = Endpoint(self.port)

        for name in names:
            for d in sorted(img.blobs):
                if d == img.digest:
                    continue
                self.push_session(front, name, d, blob_bytes(img, d))
            st, _, body = front.request("PUT", "/v2/%s/manifests/v1" % name, img.manifest,
                                        {"Content-Type": img.media_type})
            self.assertEqual(st, 201, body)
            st, _, body = front.request("POST", "/v2/%s/blobs/uploads/?digest=%s"
                                        % (name, empty_d), empty,
                                        {"Content-Type": "application/octet-stream"})
            self.assertEqual(st, 201, body)
            st, _, body = front.request("PUT", "/v2/%s/manifests/%s" % (name, art_d), art,
                                        {"Content-Type": images.MT_MANIFEST})
            self.assertEqual(st, 201, body)

        layer = img.layers[0].digest
        for name in names:
            for _ in range(4):
                st, h, body = front.request("GET", "/v2/%s/manifests/v1" % name,
                                            headers={"Accept": ACCEPT})
                self.assertEqual((st, body), (200, img.manifest), name)
                st, h, body = front.request("GET", "/v2/%s/blobs/%s" % (name, layer))
                self.assertEqual((st, "sha256:" + hashlib.sha256(body).hexdigest()),
                                 (200, layer), name)
                st, h, _ = front.request("HEAD", "/v2/%s/blobs/%s" % (name, img.config.digest))
                self.assertEqual(st, 200, name)
                st, h, body = front.request("GET", "/v2/%s/tags/list" % name)
                self.assertEqual(st, 200, name)
                self.assertEqual(json.loads(body)["tags"], ["v1"], name)
                st, h, body = front.request("GET", "/v2/%s/referrers/%s" % (name, img.digest))
                self.assertEqual(st, 200, name)
                self.assertEqual([m["digest"] for m in json.loads(body)["manifests"]], [art_d],
                                 name)
        placed = {}
        for name in names:
            h = self.tier.holders(name)
            self.assertEqual(len(h), 1, "%s is on nodes %s" % (name, h))
            placed[name] = h[0]
        print("\n[pushes] owners: %s" % ", ".join("%s: %d" % kv for kv in sorted(placed.items())))
        if self.front_class is HAProxy:
            self.assertGreaterEqual(len(set(placed.values())), 2, "every name on one node")
        # No name: any node answers (round robin), each of them 200.
        before = [sum(v for (k, _), v in node_metrics(w).items()
                      if k == "zot_http_requests_total") for w in self.tier.nodes]
        for path in ("/v2/", "/v2/_catalog", "/livez") * 3:
            st, _, _ = front.request("GET", path)
            self.assertEqual(st, 200, path)
        after = [sum(v for (k, _), v in node_metrics(w).items()
                     if k == "zot_http_requests_total") for w in self.tier.nodes]
        # Any node: HAProxy walks its ring in turn (consecutive points are
        # often one node's), nginx goes round robin.
        spread = [a - b for a, b in zip(after, before)]
        print("[pushes] requests with no name, per node: %s" % spread)
        self.assertEqual(sum(spread), 9)

    def push_session(self, front, name, digest, data):
        """An upload session through the front: POST, two PATCHes, PUT."""
        st, h, body = front.request("POST", "/v2/%s/blobs/uploads/" % name)
        self.assertEqual(st, 202, "POST %s: %r" % (name, body))
        loc = h["location"]
        half = len(data) // 2
        for lo, hi in ((0, half), (half, len(data))):
            st, h, body = front.request("PATCH", loc, data[lo:hi], {
                "Content-Type": "application/octet-stream",
                "Content-Range": "%d-%d" % (lo, hi - 1)})
            self.assertEqual(st, 202, "PATCH %s %s: %r" % (name, loc, body))
            loc = h["location"]
        sep = "&" if "?" in loc else "?"
        st, h, body = front.request("PUT", "%s%sdigest=%s" % (loc, sep, digest))
        self.assertEqual(st, 201, "PUT %s %s: %r" % (name, loc, body))

    def test_node_killed_mid_pull_then_back(self):
        """A tier warm with every image but the biggest; its node fetches
        it from an upstream throttled to 4 MB/s for one client while 4 more
        pull every image round after round, and that node is killed
        (SIGKILL) in the middle. Every pull succeeds: the front retries
        requests on the names' new nodes, the clients retry answers cut
        short (the first client's is). Upstream: each blob of the dead
        node's names once more (fetched by the node that took the name),
        the interrupted layer twice (its part, then whole), nothing else:
        at most the dead node's share more than a pull without a death.
        The node restarted on its root: its names come back to it, and the
        upstream sends only what it had not finished (with peers: nothing,
        the node that took the name meanwhile has it). Restarted on an empty
        root (a new disk): without peers it fetches its share again; with
        peers, nothing."""
        f = STATE["faults"]
        names = tier_names()
        others = {n: img for n, img in names.items() if n != BIGGEST}
        self.run_clients(3, names=others)
        self.assert_upstream_blobs(self.all_blobs(set(others)), "warm-up but %s" % BIGGEST)
        owners = self.owners(others)
        # The biggest image's manifest: which node takes it.
        st, _, body = Endpoint(self.port).request(
            "GET", "/v2/%s/manifests/latest" % BIGGEST, headers={"Accept": ACCEPT})
        self.assertEqual(st, 200, body[:300])
        h = self.tier.holders(BIGGEST)
        self.assertEqual(len(h), 1, h)
        v = owners[BIGGEST] = h[0]
        victim = self.tier.nodes[v]
        share = self.all_blobs({n for n, o in owners.items() if o == v})
        alpha = self.all_blobs({BIGGEST})
        big = max(alpha, key=alpha.get)
        print("[death] node %d holds %d names, %s with %s" % (
            v, sum(1 for o in owners.values() if o == v), fmt_mib(sum(share.values())),
            BIGGEST))

        f.reset()
        f.set("throttle", rate_bytes_per_s=4e6, path_contains=big)
        self.addCleanup(f.clear)
        reader = Reader(self.port, "/v2/%s/blobs/%s" % (BIGGEST, big), big)
        reader.start()
        self.assertTrue(wait_for(lambda: f.stats()["blob_bytes"].get(big, 0) >= 1 << 20, 15),
                        "the fetch did not start" + self.diag())
        c = tier.Clients(self.port, names, 4, seed=2).start()
        wait_for(lambda: c.pulls >= 4, 10, 0.01)
        victim.kill9()
        f.clear()
        at_kill = c.min_rounds()
        down = self.tier.front.wait_node(v, False)
        self.assertTrue(wait_for(lambda: c.min_rounds() >= at_kill + 2 or not c.running(),
                                 PULL_DEADLINE_S, 0.02))
        c.stop()
        c.join()
        reader.join(PULL_DEADLINE_S)
        print("[death] %d pulls, %d retried tries (e.g. %s); node down at the front: %s"
              % (c.pulls, len(c.failed), c.failed[:2], down))
        print("[death] the reader of %s (%s): cut %s after %s, then %s"
              % (big[:19], fmt_mib(alpha[big]), reader.cut, fmt_mib(reader.got),
                 reader.error or "whole"))
        self.assertEqual(c.errors, [], "pulls failed" + self.diag())
        self.assertIsNone(reader.error)
        self.assertTrue(reader.cut, "the dead node had the whole layer already")
        self.assertTrue(down, "the front never took the dead node out")
        gets, got, mreqs, _ = upstream_counts()
        total = sum(got.values())
        bound = sum(alpha.values()) + sum(share.values())
        print("[node %d killed] upstream: %d blob GETs, %s (a pull without a death: %s; "
              "its share: %s); %d manifest requests"
              % (v, sum(gets.values()), fmt_mib(total), fmt_mib(sum(alpha.values())),
                 fmt_mib(sum(share.values())), mreqs))
        self.assertEqual(set(d for d, n in gets.items() if n), set(share), "digests fetched")
        for d in share:
            if d in alpha:
                # The interrupted layer twice; the others of that image once
                # or twice (the dead node may have had them).
                want = (2,) if d == big else (1, 2)
                self.assertIn(gets[d], want, d)
                self.assertLessEqual(got[d], gets[d] * share[d], d)
            else:
                self.assertEqual((gets[d], got[d]), (1, share[d]), d)
        self.assertLessEqual(total, bound)

        # Back on its own root: what it had not finished (from the upstream,
        # or from its peers).
        unfinished = {d: n for d, n in alpha.items() if d not in self.tier.blobs_on(v)}
        self.assertIn(big, unfinished)
        victim.start()
        self.assertTrue(self.tier.front.wait_node(v, True), "never back" + self.diag())
        f.reset()
        self.run_clients(2, seed=3)
        self.assert_upstream_blobs({} if self.peers else unfinished,
                                   "node %d back on its root, %s"
                                   % (v, "peers" if self.peers else "no peers"))
        m = node_metrics(victim)
        for name in owners:
            if owners[name] == v:
                self.assertGreaterEqual(downloads(m, name), 2, "%s not served by node %d"
                                        % (name, v))
        self.assertEqual(peer_bytes(m), sum(unfinished.values()) if self.peers else 0,
                         "blob bytes node %d had from its peers" % v)

        # Back on an empty root.
        victim.kill9()
        self.assertTrue(self.tier.front.wait_node(v, False))
        shutil.rmtree(victim.root)
        victim.start()
        self.assertTrue(self.tier.front.wait_node(v, True), "never back" + self.diag())
        f.reset()
        self.run_clients(2, seed=4)
        self.assert_upstream_blobs({} if self.peers else share,
                                   "node %d back on an empty root, %s"
                                   % (v, "peers" if self.peers else "no peers"))
        self.assertEqual(peer_bytes(node_metrics(victim)),
                         sum(share.values()) if self.peers else 0,
                         "blob bytes node %d had from its peers" % v)
        for name, o in owners.items():
            if o == v:
                self.assertIn(v, self.tier.holders(name), name)

    @tier_nodes(4, 3)
    def test_node_joins(self):
        """A fourth node, listed at the front but down, joins a warm tier:
        the names it takes on the ring were held by the other nodes.
        Without peers it fetches them from the upstream (its share, once);
        with peers, from the nodes that hold them: no upstream byte. Only
        its names move."""
        self.run_clients(3)
        self.assert_upstream_blobs(self.all_blobs(), "a tier of 3, warm-up")
        before = self.owners()
        new = self.tier.nodes[3]
        new.start()
        self.assertTrue(self.tier.front.wait_node(3, True), "never up" + self.diag())
        STATE["faults"].reset()
        self.run_clients(2, seed=7)
        taken = {n for n in before if 3 in self.tier.holders(n)}
        share = self.all_blobs(taken)
        print("[join] node 3 took %s (%s)" % (sorted(taken), fmt_mib(sum(share.values()))))
        self.assertTrue(taken, "the new node took no name")
        self.assert_upstream_blobs({} if self.peers else share, "node 3 joined, %s"
                                   % ("peers" if self.peers else "no peers"))
        m = node_metrics(new)
        self.assertEqual(peer_bytes(m), sum(share.values()) if self.peers else 0)
        for name in before:
            self.assertEqual(downloads(m, name) > 0, name in taken, name)


def blob_bytes(img, digest):
    with open(os.path.join(img.layout, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


class HaproxyTierTest(TierCases, unittest.TestCase):
    front_class = HAProxy
    front_tool = "haproxy"


class HaproxyDrainTest(TierCases, unittest.TestCase):
    """Nodes with http.wharf.drainDelay 3s, as the example's comments ask."""

    front_class = HAProxy
    front_tool = "haproxy"
    drain_delay = "3s"

    test_cold_pull_is_one_fetch_per_digest = None
    test_pushes_and_upload_sessions_land_on_one_node = None
    test_node_killed_mid_pull_then_back = None
    test_node_joins = None

    def test_node_stopped_is_drained(self):
        """A node stopped with SIGTERM while 4 clients pull every image
        round after round: its /readyz fails at once, HAProxy takes it out
        of the ring within its checks (well inside the 3 s it keeps
        serving), and no request fails, not even once: no client retries.
        Its names move to the other nodes, which fetch them (its share,
        once; with peers, from the draining node itself: no upstream byte);
        it exits 0."""
        self.run_clients(2)
        owners = self.owners()
        v = owners[BIGGEST]
        share = self.all_blobs({n for n, o in owners.items() if o == v})
        node = self.tier.nodes[v]
        STATE["faults"].reset()
        c = tier.Clients(self.port, tier_names(), 4, seed=6).start()
        self.assertTrue(wait_for(lambda: c.min_rounds() >= 1 or not c.running(), 30, 0.01))
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        self.assertTrue(self.tier.front.wait_node(v, False, timeout=3))
        out_after = time.monotonic() - t0
        rc = node.proc.wait(20)
        node.stop()
        at = c.min_rounds()
        self.assertTrue(wait_for(lambda: c.min_rounds() >= at + 1 or not c.running(),
                                 PULL_DEADLINE_S, 0.02))
        c.stop()
        c.join()
        print("\n[drain] out of the ring after %.2fs; %d pulls, %d retried tries %s"
              % (out_after, c.pulls, len(c.failed), c.failed[:3]))
        self.assertEqual(rc, 0)
        self.assertEqual(c.errors, [], "pulls failed" + self.diag())
        self.assertEqual(c.failed, [], "a client saw a failure while the node drained")
        self.assert_upstream_blobs({} if self.peers else share, "node %d drained, %s"
                                   % (v, "peers" if self.peers else "no peers"))
        if self.peers:
            self.assertEqual(sum(peer_bytes(node_metrics(w)) for w in self.tier.nodes
                                 if w is not node), sum(share.values()))


class HaproxyPeersDrainTest(HaproxyDrainTest):
    peers = True


class HaproxyPeersTierTest(HaproxyTierTest):
    """The node-death case with extensions.sync.wharf.peers (the cold pull
    too: peers that hold nothing answer 504 and the upstream is asked)."""

    peers = True

    test_pushes_and_upload_sessions_land_on_one_node = None   # the same as without peers


class NginxTierTest(TierCases, unittest.TestCase):
    front_class = Nginx
    front_tool = "nginx"
    test_node_joins = None   # no health check to bring a node in

    def test_node_killed_mid_pull_then_back(self):
        """nginx has no health check (a node is out for fail_timeout after a
        failed connection) but moves a dead node's names to the next one on
        the ring in the same way: every pull succeeds and the upstream sends
        the dead node's share again, once."""
        self.run_clients(2)
        owners = self.owners()
        v = owners[sorted(owners)[0]]
        share = self.all_blobs({n for n, o in owners.items() if o == v})
        STATE["faults"].reset()
        c = tier.Clients(self.port, tier_names(), 4, seed=2).start()
        self.assertTrue(wait_for(lambda: c.min_rounds() >= 1 or not c.running(), 30, 0.01))
        self.tier.nodes[v].kill9()
        at_kill = c.min_rounds()
        self.assertTrue(wait_for(lambda: c.min_rounds() >= at_kill + 2 or not c.running(),
                                 PULL_DEADLINE_S, 0.02))
        c.stop()
        c.join()
        print("\n[nginx death] %d pulls, %d retried tries" % (c.pulls, len(c.failed)))
        self.assertEqual(c.errors, [], "pulls failed" + self.diag())
        self.assert_upstream_blobs(share, "nginx, node %d killed" % v)


if __name__ == "__main__":
    unittest.main()
