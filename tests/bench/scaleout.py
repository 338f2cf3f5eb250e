"""The scaleout phase (issue 15, "Beyond one machine"): Wharf nodes behind
HAProxy running examples/haproxy/haproxy.cfg (rendered by
tests/integration/tier.py, the test's own renderer), pull-through in front of
an upstream Distribution reached through nginx (systems.nginx_throttle, at a
rate that does not hold anything back: its access log counts every byte the
tier fetches).

    warm      wrk over the manifests and blobs of every repository, in turn:
              1 node direct, 1 node behind HAProxy (its cost), 3 nodes
              behind HAProxy; MB/s and requests/s, best of the rounds
    cold      C clients at once pull every image (digests checked) from an
              empty tier of 1 and of 3 nodes: upstream blob bytes / the
              images' blob bytes (target 1.0x), and the wall time
    death     a warm 3-node tier, clients pulling; the node holding the most
              bytes killed (SIGKILL): extra upstream bytes / its share
              (target <= 1.0x: the names it held are fetched again by the
              nodes that take them, once); back on its root (target 0);
              back on an empty root (no peers: its share again)
    join      a fourth node joins a warm 3-node tier (HAProxy had it down):
              extra upstream bytes / the share of the names it takes
    peers     death and join again with extensions.sync.wharf.peers, when
              the binary takes the key: an empty or new node refills from
              the nodes that hold its names (target 0)

On a 2-CPU machine every server (the nodes and HAProxy) runs on the first CPU
and the load tool on the other, as in the other phases: three nodes cannot
go faster than one there, and the warm rows show what the tier costs, not
how it scales. The output says so.
"""

import os
import shutil
import subprocess
import sys
import time
import types

import fixtures
import harness
import images
import load
import report
import systems
import upstream
from load import MeasureError
from report import Figure, Target, at_most

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import tier  # noqa: E402

WRK_PATHS = os.path.join(HERE, "wrk_paths.lua")
DEST = "hub"
MiB = 1 << 20


def exactly(v, text):
    return Target("= " + text, lambda values: None if values.get("wharf") is None
                  else abs(values["wharf"] - v) < 1e-9)


class Node:
    """A Wharf node as a systems.Server that can be killed and restarted."""

    def __init__(self, bench, root, port, cfg, name):
        self.root = root
        self.srv = systems.wharf_server(bench.bin, root, cfg, role=name, port=port)
        bench.servers.append(self.srv)

    def start(self, cpus):
        self.srv.start(cpus=cpus)

    def kill(self):
        if self.srv.proc is not None:
            self.srv.proc.kill()
            self.srv.proc.wait(10)
            self.srv.proc = None


class Tier:
    """n nodes (started: `running` of them) and an HAProxy with the example,
    on `slots` ports (the others are nodes that have not joined yet)."""

    def __init__(self, bench, work, upstream_url, n, peers=False, slots=None, same_node=False):
        os.makedirs(work, exist_ok=True)
        self.work = work
        slots = slots or n
        ports = [harness.free_port() for _ in range(slots)]
        urls = ["http://127.0.0.1:%d" % p for p in ports]
        self.nodes = []
        for i, p in enumerate(ports):
            cfg = upstream.sync_config(upstream_url, destination="/" + DEST)
            if peers:
                cfg["extensions"]["sync"]["wharf"] = {"peers": urls}
            self.nodes.append(Node(bench, os.path.join(work, "node%d" % i), p, cfg,
                                   "scaleout node %d" % i))
        self.n = n
        node_ports = ports * 3 if same_node else ports
        self.stats_port = harness.free_port()
        port = harness.free_port()
        conf = os.path.join(work, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(tier.render_haproxy(port, node_ports, self.stats_port,
                                        os.path.join(work, "admin.sock")))
        self.haproxy = systems.Server("haproxy", "scaleout front", ["haproxy", "-f", conf], port,
                                      os.path.join(work, "haproxy.log"))
        bench.servers.append(self.haproxy)

    def start(self):
        cpus = systems.SERVER_CPUS
        for nd in self.nodes[:self.n]:
            nd.start(cpus)
        self.haproxy.start(cpus=cpus)
        for i in range(len(self.nodes)):
            if not tier.wait_haproxy_node(self.stats_port, i, i < self.n):
                raise MeasureError("HAProxy never took node %d %s" % (i, "up" if i < self.n
                                                                     else "down"))
        return self

    def stop(self):
        self.haproxy.stop()
        for nd in self.nodes:
            nd.srv.stop()

    def holders(self, name):
        return [i for i, nd in enumerate(self.nodes)
                if os.path.exists(os.path.join(nd.root, name, "index.json"))]


def image_of(fx):
    """What tier.pull needs of a fixtures.Fixture."""
    return types.SimpleNamespace(ref=fx.tag, digest=fx.digest,
                                 blobs={b.digest: b.size for b in fx.blobs})


class Scaleout:
    def __init__(self, bench, cpu_usage):
        self.b = bench
        self.cpu_usage = cpu_usage
        self.p = bench.plan
        self.work = bench.path("scaleout")
        os.makedirs(self.work, exist_ok=True)

    def fig(self, fid, label, unit, value, error=None, **kw):
        f = Figure("scaleout", fid, label, unit, {"wharf": value},
                   errors={"wharf": error} if error else None, **kw)
        self.b.figures.append(f)
        return f

    # ---------------------------------------------------------- fixtures, upstream

    def prepare(self):
        p = self.p
        n = p.scale_repos
        self.fx = []
        for i in range(n):
            repo = "scale/%s/app%02d" % ("team%d" % (i % 3), i)
            size = p.scale_layer + (i % 4) * (p.scale_layer // 4)
            img = images.big_image(os.path.join(self.work, "img", str(i)), size, tag="v1",
                                   seed=400 + i, salt=repo)
            self.fx.append(fixtures.Fixture(img, repo))
        self.names = {"%s/%s" % (DEST, fx.repo): image_of(fx) for fx in self.fx}
        self.blob_bytes = {d: s for img in self.names.values() for d, s in img.blobs.items()}
        self.up = self.b.start(systems.distribution_server(role="scaleout upstream"))
        for fx in self.fx:
            load.push_fixture(self.up.hostport, fx)
        self.counter = self.b.start(systems.nginx_throttle(self.work, self.up.url, 1e9))
        # The wrk paths: every manifest by tag and every blob.
        self.paths_file = os.path.join(self.work, "paths.txt")
        with open(self.paths_file, "w") as f:
            for name, img in sorted(self.names.items()):
                f.write("/v2/%s/manifests/%s %s %d\n" % (name, img.ref, img.digest,
                                                        len(self._manifest(name))))
                for d, s in sorted(img.blobs.items()):
                    f.write("/v2/%s/blobs/%s %s %d\n" % (name, d, d, s))
        total = sum(self.blob_bytes.values())
        self.b.note("scaleout: %d images (%s of blobs), servers (HAProxy and every node) on "
                    "CPU %s, the load tool on CPU %s: with %d CPUs, 3 nodes cannot be faster "
                    "than 1 here; the warm rows show the tier's cost, not its scaling"
                    % (n, "%.1f MiB" % (total / MiB), sorted(systems.SERVER_CPUS or []) or "any",
                       sorted(systems.CLIENT_CPUS or []) or "any", os.cpu_count()))

    def _manifest(self, name):
        fx = next(f for f in self.fx if "%s/%s" % (DEST, f.repo) == name)
        return fx.manifest

    # ---------------------------------------------------------- counting

    def upstream_blobs(self, fn):
        """fn()'s result and the blob bytes the tier fetched meanwhile,
        per digest."""
        if not systems.wait_throttle_idle(self.counter, 30):
            raise MeasureError("the upstream was still busy before counting")
        off = systems.log_offset(self.counter)
        out = fn()
        if not systems.wait_throttle_idle(self.counter, 60):
            raise MeasureError("the upstream was still busy when counting")
        per = {}
        for m, uri, st, b in systems.throttle_requests(self.counter, off):
            if m == "GET" and "/blobs/sha256:" in uri:
                d = uri.rsplit("/", 1)[1]
                per[d] = per.get(d, 0) + b
        return out, per

    def clients(self, port, n, rounds=1, seed=0):
        c = tier.Clients(port, self.names, n, rounds=rounds, seed=seed,
                         deadline_s=self.p.scale_deadline).start().join()
        if c.errors:
            raise MeasureError("%d pulls failed, e.g. %s" % (len(c.errors), c.errors[0]))
        return c

    def owners(self, t):
        out = {}
        for name in self.names:
            h = t.holders(name)
            if len(h) != 1:
                raise MeasureError("%s is held by nodes %s" % (name, h))
            out[name] = h[0]
        return out

    def share(self, names):
        return {d: s for n in names for d, s in self.names[n].blobs.items()}

    # ---------------------------------------------------------- rows

    def cold(self, n):
        """An empty tier of n nodes, C clients at once: (tier, ratio, seconds)."""
        t = Tier(self.b, os.path.join(self.work, "cold%d" % n), self.counter.url, n,
                 same_node=(n == 1)).start()
        t0 = time.monotonic()
        _, per = self.upstream_blobs(lambda: self.clients(t.haproxy.port, self.p.scale_clients))
        secs = time.monotonic() - t0
        ratio = sum(per.values()) / sum(self.blob_bytes.values())
        twice = [d for d in per if per[d] > self.blob_bytes.get(d, 0)]
        report_ = ("  cold pull, %d node(s), %d clients: %.2fs, upstream %.3fx of the images' "
                   "blob bytes%s" % (n, self.p.scale_clients, secs, ratio,
                                     ", %d digest(s) more than once" % len(twice) if twice else ""))
        print(report_, flush=True)
        return t, ratio, secs

    def warm(self, tiers):
        """wrk rounds over the paths: {config: best run}, errors."""
        p = self.p
        conns = 32
        targets = [("direct1", "1 node direct", tiers[1].nodes[0].srv,
                    [tiers[1].nodes[0].srv]),
                   ("haproxy1", "1 node behind HAProxy", tiers[1].haproxy,
                    [tiers[1].haproxy, tiers[1].nodes[0].srv]),
                   ("haproxy3", "3 nodes behind HAProxy", tiers[3].haproxy,
                    [tiers[3].haproxy] + [nd.srv for nd in tiers[3].nodes])]
        runs = {k: [] for k, _, _, _ in targets}
        errors = {}
        for rnd in range(p.scale_rounds):
            for key, label, srv, group in targets:
                if key in errors:
                    continue
                g = types.SimpleNamespace(cpu_seconds=lambda grp=group: sum(
                    s.cpu_seconds() for s in grp))
                try:
                    usage = self.cpu_usage(g)
                    r = load.wrk(srv.url + "/", conns, p.seconds, self.paths_file,
                                 ["Accept: " + upstream.MANIFEST_ACCEPT], script=WRK_PATHS)
                    r.update(usage.done())
                    r["mb_s"] = r["bytes"] / r["seconds"] / 1e6
                    runs[key].append(r)
                    print("  warm %-24s %8.1f MB/s %8.0f req/s  p99 %s ms  CPU: servers %.2f, "
                          "load tool %.2f, others %.2f%s"
                          % (label, r["mb_s"], r["rps"], report._num(r["p99_ms"]),
                             r["server_cpu"], r["client_cpu"], r["other_cpu"],
                             "  (%d errors)" % r["errors"] if r["errors"] else ""), flush=True)
                    if r["errors"]:
                        raise MeasureError("round %d: %d of %d requests failed: %s" % (
                            rnd + 1, r["errors"], r["requests"], r["error_kinds"]))
                    self.verify(srv.port)
                except MeasureError as e:
                    errors[key] = str(e)
                    print("  warm %-24s ERROR %s" % (label, e), flush=True)
        for key, label, _, _ in targets:
            rs = runs[key]
            best = max(rs, key=lambda r: r["mb_s"]) if rs and key not in errors else None
            self.fig("warm_" + key, "warm pulls, " + label, "MB/s",
                     best["mb_s"] if best else None, errors.get(key), fmt="%.0f",
                     detail=dict(best or {}, rounds=[round(r["mb_s"], 1) for r in rs]))
            self.fig("warm_%s_rps" % key, "  requests", "req/s",
                     best["rps"] if best else None, errors.get(key), fmt="%.0f")

    def verify(self, port):
        """One GET of every path, hashed (outside the measured window)."""
        deadline = time.monotonic() + 60
        for name, img in self.names.items():
            try:
                tier.pull(port, name, img, deadline)
            except tier.PullError as e:
                raise MeasureError("after the round: %s" % e)

    def death(self, peers):
        """A warm 3-node tier; kill the node with the most bytes while
        clients pull; back on its root; back on an empty root."""
        tag = "peers" if peers else "no peers"
        t = Tier(self.b, os.path.join(self.work, "death-" + tag.replace(" ", "")),
                 self.counter.url, 3, peers=peers).start()
        try:
            port = t.haproxy.port
            self.upstream_blobs(lambda: self.clients(port, self.p.scale_clients))
            owners = self.owners(t)
            shares = {i: self.share([n for n, o in owners.items() if o == i]) for i in range(3)}
            v = max(shares, key=lambda i: sum(shares[i].values()))
            share = sum(shares[v].values())

            def kill_mid_run():
                c = tier.Clients(port, self.names, 4, seed=2,
                                 deadline_s=self.p.scale_deadline).start()
                harness.wait_for(lambda: c.min_rounds() >= 1 or not c.running(), 30, 0.01)
                t.nodes[v].kill()
                at = c.min_rounds()
                harness.wait_for(lambda: c.min_rounds() >= at + 2 or not c.running(),
                                 self.p.scale_deadline, 0.02)
                c.stop()
                c.join()
                if c.errors:
                    raise MeasureError("%d pulls failed, e.g. %s" % (len(c.errors), c.errors[0]))
                return c

            c, per = self.upstream_blobs(kill_mid_run)
            killed = sum(per.values()) / share
            print("  [%s] node %d (%.1f MiB of %.1f) killed while 4 clients pulled: %d pulls, "
                  "%d retried by the clients; extra upstream %.3fx its share"
                  % (tag, v, share / MiB, sum(self.blob_bytes.values()) / MiB, c.pulls,
                     len(c.failed), killed), flush=True)
            if not tier.wait_haproxy_node(t.stats_port, v, False):
                raise MeasureError("HAProxy never took the dead node down")

            t.nodes[v].start(systems.SERVER_CPUS)
            if not tier.wait_haproxy_node(t.stats_port, v, True):
                raise MeasureError("HAProxy never took node %d back" % v)
            _, per = self.upstream_blobs(lambda: self.clients(port, 2, seed=3))
            back = sum(per.values())
            print("  [%s] back on its root: extra upstream %d bytes" % (tag, back), flush=True)

            t.nodes[v].kill()
            tier.wait_haproxy_node(t.stats_port, v, False)
            shutil.rmtree(t.nodes[v].root)
            t.nodes[v].start(systems.SERVER_CPUS)
            if not tier.wait_haproxy_node(t.stats_port, v, True):
                raise MeasureError("HAProxy never took node %d back" % v)
            _, per = self.upstream_blobs(lambda: self.clients(port, 2, seed=4))
            empty = sum(per.values()) / share
            print("  [%s] back on an empty root: extra upstream %.3fx its share"
                  % (tag, empty), flush=True)
            return killed, back, empty
        finally:
            t.stop()

    def join(self, peers):
        """A warm 3-node tier whose HAProxy lists a fourth node, down; it
        starts: extra upstream bytes / the share of the names it takes."""
        tag = "peers" if peers else "no peers"
        t = Tier(self.b, os.path.join(self.work, "join-" + tag.replace(" ", "")),
                 self.counter.url, 3, peers=peers, slots=4).start()
        try:
            port = t.haproxy.port
            self.upstream_blobs(lambda: self.clients(port, self.p.scale_clients))
            t.nodes[3].start(systems.SERVER_CPUS)
            if not tier.wait_haproxy_node(t.stats_port, 3, True):
                raise MeasureError("HAProxy never took the new node up")
            _, per = self.upstream_blobs(lambda: self.clients(port, 2, seed=5))
            taken = [n for n in self.names if 3 in t.holders(n)]
            share = sum(self.share(taken).values())
            ratio = sum(per.values()) / share if share else None
            print("  [%s] a fourth node joined and took %d of %d names (%.1f MiB): extra "
                  "upstream %s its share" % (tag, len(taken), len(self.names), share / MiB,
                                             "%.3fx" % ratio if ratio is not None else "-"),
                  flush=True)
            return ratio
        finally:
            t.stop()

    def run(self):
        self.prepare()
        tiers, errs = {}, {}
        for n in (1, 3):
            try:
                t, ratio, secs = self.cold(n)
                tiers[n] = t
                self.fig("cold_ratio_%d" % n, "cold pull, %d node%s, %d clients: upstream"
                         % (n, "s" if n > 1 else "", self.p.scale_clients), "x", ratio,
                         target=exactly(1.0, "1.0x"), fmt="%.3f", detail={"seconds": secs})
            except MeasureError as e:
                errs[n] = str(e)
                self.fig("cold_ratio_%d" % n, "cold pull, %d node(s): upstream" % n, "x",
                         None, str(e))
        try:
            if 1 in tiers and 3 in tiers:
                self.warm(tiers)
        finally:
            for t in tiers.values():
                t.stop()

        variants = [False]
        why = peers_refused(self.b.bin)
        if why:
            self.b.note("scaleout: no peers rows: this Wharf does not take "
                        "extensions.sync.wharf.peers (%s)" % why)
        else:
            variants.append(True)
        for peers in variants:
            pre, key = ("with peers, ", "_peers") if peers else ("", "")
            label = pre + ("node killed: extra / its share" if peers
                           else "node killed: extra upstream / its share")
            try:
                killed, back, empty = self.death(peers)
                self.fig("death" + key, label, "x", killed, target=at_most(1.0, "1.0x"),
                         better="lower", fmt="%.3f")
                self.fig("death_back" + key, "  back on its root: extra upstream", "MiB",
                         back / MiB, target=at_most(0, "0"), better="lower", fmt="%.2f")
                self.fig("death_empty" + key, "  back on an empty root: / its share",
                         "x", empty, better="lower", fmt="%.3f",
                         target=at_most(0, "0 (peers)") if peers else None)
            except MeasureError as e:
                self.fig("death" + key, label, "x", None, str(e))
            label = pre + ("a 4th node joins: extra/share" if peers
                           else "a 4th node joins: extra upstream / its share")
            try:
                ratio = self.join(peers)
                self.fig("join" + key, label, "x", ratio, better="lower", fmt="%.3f",
                         target=at_most(0, "0 (peers)") if peers else None)
            except MeasureError as e:
                self.fig("join" + key, label, "x", None, str(e))


def peers_refused(bin_path):
    """Why this binary refuses extensions.sync.wharf.peers, or None."""
    cfg = upstream.sync_config("http://127.0.0.1:9", destination="/" + DEST)
    cfg["extensions"]["sync"]["wharf"] = {"peers": ["http://127.0.0.1:9"]}
    w = harness.Wharf(cfg)
    try:
        p = subprocess.run([bin_path, "verify", w.config_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
    finally:
        w.cleanup()
    return None if p.returncode == 0 else p.stdout.decode("utf-8", "replace").strip()


def phase(bench, cpu_usage):
    """The phase, as bench.py runs it: rows in the "scaleout" section."""
    if not shutil.which("haproxy"):
        bench.note("scaleout: haproxy is not installed (packaging/deps.sh --test): phase skipped")
        return
    Scaleout(bench, cpu_usage).run()
