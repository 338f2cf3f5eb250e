#!/usr/bin/env python3
"""Wharf side by side with CNCF Distribution (Debian's docker-registry) and
nginx, in one run on this machine: see README.md here. Run it as
tests/bench/run [--quick] [--bin PATH] [--json PATH].

Phases, in order, each bounded in time:
  local     start Wharf, Distribution, nginx (static files); RSS idle;
            RSS with N idle connections
  warm      manifest GET (wrk) / HEAD (ab) by tag and digest; blob GET
            throughput; a whole skopeo pull
  push      a big layer, monolithic and chunked, into Wharf and Distribution;
            sha256 throughput (bench_sha256, built next to the binary)
  cold      Wharf pull-through vs Distribution proxy, both behind an nginx
            limit_rate front on an upstream Distribution: whole pull, first
            byte, 8 clients on one uncached layer, upstream bytes counted
  slow      16 slow readers of an uncached layer from a fast upstream: RSS
  startup   exec to first GET /v2/ answer: empty store, and a large store
  gc        the first GC sweep of a root of 10,000 blobs in 1,000 repositories
            (half garbage) with a latency probe running, beside Distribution's
            offline garbage-collect; eviction to a cache budget; meta.log
            bytes per manifest GET (gcbench.py, latprobe.py)
  scaleout  Wharf nodes behind HAProxy (examples/haproxy/haproxy.cfg): warm
            throughput of 1 node direct, 1 and 3 nodes behind HAProxy;
            upstream bytes of a cold pull by several clients; extra upstream
            bytes when a node dies, comes back, joins (scaleout.py)
The table and a JSON file come at the end. Targets are marked PASS/MISS; a
MISS does not fail the run. A failed request, a wrong body or digest, a tool
that broke makes that system's cell ERR and the row's verdict FAIL, and the
overall verdict FAIL; the exit status is 1 when a Wharf cell is ERR or the
bench itself broke.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)

import fixtures  # noqa: E402
import gcbench  # noqa: E402
import harness  # noqa: E402
import load  # noqa: E402
import report  # noqa: E402
import scaleout  # noqa: E402
import systems  # noqa: E402
import upstream  # noqa: E402
from load import MeasureError  # noqa: E402
from report import (Figure, all_of, at_least, at_most, ratio_at_least,  # noqa: E402
                    ratio_at_most)

MiB = 1 << 20
ACCEPT = "Accept: " + upstream.MANIFEST_ACCEPT


class Plan:
    """Sizes and durations of a mode."""

    FULL = dict(sha256_mib=256, rounds=5, seconds=4, warmup=1, blob_seconds=4, blob=32 * MiB,
                pull_big=128 * MiB, pull_mid=8 * MiB, pull_reps=3,
                cold=96 * MiB, throttle=25e6, clients=8,
                push=96 * MiB, push_chunk=8 * MiB, push_reps=3,
                idle_conns=2000, store_repos=1000, store_blobs=10, startup_reps=5,
                slow_clients=16, slow_rate=1e6, slow_seconds=10,
                gc_repos=1000, gc_limit_s=120, gc_distribution=True, evict_repos=1000,
                meta_manifests=200, meta_pulls=20000, meta_limit_s=60,
                scale_repos=12, scale_layer=1 * MiB, scale_clients=8, scale_deadline=120,
                scale_rounds=3)
    QUICK = dict(FULL, sha256_mib=32, rounds=1, seconds=1, warmup=0, blob_seconds=1, blob=4 * MiB,
                 pull_big=8 * MiB, pull_mid=1 * MiB, pull_reps=1,
                 cold=8 * MiB, push=8 * MiB, push_chunk=2 * MiB, push_reps=1,
                 idle_conns=200, store_repos=100, startup_reps=3,
                 slow_clients=4, slow_seconds=2,
                 gc_repos=100, evict_repos=100, meta_manifests=50, meta_pulls=2000,
                 scale_repos=6, scale_layer=256 << 10, scale_clients=4, scale_rounds=1)

    def __init__(self, quick):
        self.mode = "quick" if quick else "full"
        for k, v in (self.QUICK if quick else self.FULL).items():
            setattr(self, k, v)


def mib(n):
    return "%g MiB" % round(n / MiB, 1)


def say(*a):
    print(*a, flush=True)


def machine_busy(seconds=1.0):
    """The share of all CPUs busy over `seconds` (/proc/stat), e.g. 0.03."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)          # idle + iowait, total
    i0, t0 = sample()
    time.sleep(seconds)
    i1, t1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


class CpuUsage:
    """CPU time used from now to done() by a server, by this process's
    children (the load tool) and by everything else on the machine, each
    per second of wall time."""

    def __init__(self, server):
        self.server = server
        self.t0 = time.monotonic()
        self.srv0 = server.cpu_seconds()
        self.kids0 = self._children()
        self.all0 = self._machine()

    @staticmethod
    def _children():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    @staticmethod
    def _machine():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")   # all but idle, iowait

    def done(self):
        wall = time.monotonic() - self.t0
        srv = self.server.cpu_seconds() - self.srv0
        kids = self._children() - self.kids0
        mine = self._machine() - self.all0
        return {"server_cpu": srv / wall, "client_cpu": kids / wall,
                "other_cpu": max(0.0, mine - srv - kids) / wall}


def median(xs):
    return statistics.median(xs) if xs else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.plan = Plan(args.quick)
        self.work = args.workdir or tempfile.mkdtemp(prefix="wharf-bench-")
        os.makedirs(self.work, exist_ok=True)
        # nginx workers run as nobody: they read the static root and write
        # proxy temp files under here.
        os.chmod(self.work, 0o755)
        # Measure private copies, so that a rebuild during the run cannot
        # change the binary between phases.
        src = os.path.abspath(args.bin)
        os.makedirs(self.path("bin"), exist_ok=True)
        self.bin = self.path("bin", "wharf")
        shutil.copy2(src, self.bin)
        sha = os.path.join(os.path.dirname(src), "bench_sha256")
        if os.access(sha, os.X_OK):
            shutil.copy2(sha, self.path("bin", "bench_sha256"))
        self.bin_source = src
        self.figures = []
        self.notes = []
        self.broken = []          # phases that raised an unexpected exception
        self.servers = []         # every server started, for logs and cleanup
        self.local = {}           # system -> Server of the warm phases

    # -------------------------------------------------------------- plumbing

    def fig(self, *a, **kw):
        f = Figure(*a, **kw)
        self.figures.append(f)
        return f

    def note(self, text):
        self.notes.append(text)
        say("  note: " + text)

    def start(self, server, cpus=None):
        self.servers.append(server)
        server.start(cpus=cpus)
        return server

    def phase(self, name, fn):
        say("== %s" % name)
        t0 = time.monotonic()
        try:
            fn()
        except Exception:
            self.broken.append(name)
            say("  phase %s broke:\n%s" % (name, traceback.format_exc()))
        say("   (%s: %.1fs)" % (name, time.monotonic() - t0))

    def path(self, *p):
        return os.path.join(self.work, *p)

    def new_wharf(self, root, config=None, role="local", log_level="warn"):
        return systems.wharf_server(self.bin, root, config, role, log_level)

    def each_local(self, systems_=report.SYSTEMS):
        return [(s, self.local[s]) for s in systems_ if s in self.local]

    # -------------------------------------------------------------- fixtures

    def prepare(self):
        p = self.plan
        t0 = time.monotonic()
        self.mani = fixtures.manifest_image(self.path("img", "manifest"))
        self.pull = fixtures.pull_image(self.path("img", "pull"), p.pull_big, p.pull_mid)
        self.cold = fixtures.cold_image(self.path("img", "cold"), p.cold)
        self.blob_repo = "bench/blob"
        self.blob = fixtures.random_blob(self.path("img", "blob.bin"), p.blob, seed=21)
        self.nginx_root = self.path("nginx-root")
        fixtures.nginx_root(self.nginx_root, [self.mani, self.pull],
                            blobs=[(self.blob_repo, self.blob)])
        say("  images: pull %s, cold %s (layer %s), blob %s; made in %.1fs"
            % (mib(self.pull.size), mib(self.cold.size), mib(self.cold.biggest_layer.size),
               mib(self.blob.size), time.monotonic() - t0))

    # -------------------------------------------------------------- local systems

    def phase_local(self):
        p = self.plan
        cpus = systems.SERVER_CPUS
        self.local["wharf"] = self.start(self.new_wharf(self.path("wharf-local")), cpus)
        self.local["distribution"] = self.start(systems.distribution_server(), cpus)
        self.local["nginx"] = self.start(systems.nginx_static(self.work, self.nginx_root), cpus)
        time.sleep(1.0)
        parts = {s: srv.rss_parts_kib() for s, srv in self.each_local()}
        for s, v in parts.items():
            say("  %-12s RSS idle %.1f MiB: %s" % (s, v["VmRSS"] / 1024, ", ".join(
                "%s %.1f" % (k, n / 1024) for k, n in v.items() if k != "VmRSS")))
        self.fig("memory", "rss_idle", "RSS idle, fresh start", "MiB",
                 {s: v["VmRSS"] / 1024 for s, v in parts.items()},
                 better="lower", target=at_most(8, "8 MiB"), fmt="%.1f",
                 detail=dict(parts, nginx_processes="master + 1 worker"))

        rss, per, errors, detail = {}, {}, {}, {}
        for s, srv in self.each_local():
            r = load.idle_connections(srv, p.idle_conns)
            detail[s] = r
            rss[s] = r["rss_with_kib"] / 1024
            per[s] = (r["rss_with_kib"] - r["rss_before_kib"]) / p.idle_conns
            if r["ok"] != p.idle_conns or r["still_open"] != p.idle_conns:
                errors[s] = "%d of %d connections answered, %d still open after 1 s" % (
                    r["ok"], p.idle_conns, r["still_open"])
            say("  %-12s %d idle connections: RSS %.1f MiB (%.2f KiB each)"
                % (s, p.idle_conns, rss[s], per[s]))
            time.sleep(0.5)
        self.fig("memory", "rss_idle_conns", "RSS with %d idle connections" % p.idle_conns,
                 "MiB", rss, better="lower", errors=errors, detail=detail, fmt="%.1f")
        self.fig("memory", "kib_per_idle_conn", "  per idle connection", "KiB", per,
                 better="lower", target=at_most(8, "8 KiB"), errors=errors, fmt="%.2f")

    def phase_seed(self):
        for s in ("wharf", "distribution"):
            hp = self.local[s].hostport
            load.push_fixture(hp, self.mani)
            load.push_fixture(hp, self.pull)
            reg = load.Registry(hp)
            reg.upload_post_put(self.blob_repo, self.blob.path, self.blob.digest)
            reg.close()

    # -------------------------------------------------------------- warm

    def _check_manifest(self, srv, method, path):
        """One request first: the answer must be 200 with the manifest."""
        r = load.Registry(srv.hostport, timeout=10)
        try:
            st, h, body = r.req(method, path, headers={"Accept": upstream.MANIFEST_ACCEPT})
        finally:
            r.close()
        if st != 200:
            raise MeasureError("%s %s: %d" % (method, path, st))
        if method == "GET" and body != self.mani.manifest:
            raise MeasureError("GET %s: body is not the manifest" % path)
        if h.get("content-type", "").split(";")[0] != self.mani.media_type:
            raise MeasureError("%s %s: Content-Type %r" % (method, path, h.get("content-type")))

    def _rounds(self, what, prepare, run, key="rps", verify=None):
        """Load runs of every local system, interleaved: prepare(s, srv) once
        (check the answer, warm up), then run(s, srv) `rounds` times in turn,
        each followed by verify(s, srv) if given (outside the measured
        window). Returns ({system: the run with the best `key`}, errors): on
        a shared machine the best round is the least disturbed one; every
        round is kept in the JSON. A system with a failed request in any
        round (or a failed check) is in errors, not in the result: a broken
        round is never the best one, and the row is ERR. Each run records
        the server's CPU use and the CPU used meanwhile by other processes
        (1.0 = one core busy)."""
        runs, errors = {}, {}
        for s, srv in self.each_local():
            try:
                prepare(s, srv)
                runs[s] = []
            except MeasureError as e:
                errors[s] = str(e)
                say("  %-18s %-12s ERROR %s" % (what, s, e))
        for i in range(self.plan.rounds):
            for s, srv in self.each_local():
                if s in errors or s not in runs:
                    continue
                try:
                    usage = CpuUsage(srv)
                    r = run(s, srv)
                    r.update(usage.done())
                    runs[s].append(r)
                    say("  %-18s %-12s %8.0f %-5s  p50 %s ms  p99 %s ms  CPU: server %.2f, "
                        "load tool %.2f, others %.2f%s"
                        % (what, s, r[key], "req/s" if key == "rps" else "MB/s",
                           report._num(r["p50_ms"]), report._num(r["p99_ms"]), r["server_cpu"],
                           r["client_cpu"], r["other_cpu"],
                           "  (%d errors)" % r["errors"] if r["errors"] else ""))
                    if r["errors"]:
                        raise MeasureError("round %d: %d of %d requests failed: %s" % (
                            i + 1, r["errors"], r["requests"], r["error_kinds"]))
                    if verify:
                        verify(s, srv)
                except MeasureError as e:
                    errors[s] = str(e)
                    say("  %-18s %-12s ERROR %s" % (what, s, e))
        picked = {}
        for s, rs in runs.items():
            if rs and s not in errors:
                best = max(rs, key=lambda r: r[key])
                picked[s] = dict(best, rounds=[round(r[key], 1) for r in rs],
                                 rounds_other_cpu=[round(r["other_cpu"], 2) for r in rs])
        bound = [s for s, r in picked.items() if r["client_cpu"] >= 0.95]
        if bound:
            self.note("%s: the load tool used a whole CPU against %s, so that figure is "
                      "bounded by the client; compare the server CPU per unit instead"
                      % (what, ", ".join(bound)))
        return picked, errors

    def phase_warm_manifests(self):
        p = self.plan
        conns = 32
        body = self.path("img", "manifest.json")     # what every GET must answer
        with open(body, "wb") as f:
            f.write(self.mani.manifest)
        for method in ("GET", "HEAD"):
            for by, ref in (("tag", self.mani.tag), ("digest", self.mani.digest)):
                path = "/v2/%s/manifests/%s" % (self.mani.repo, ref)
                notes = {}

                def prepare(s, srv):
                    self._check_manifest(srv, method, path)
                    if method == "HEAD":
                        notes[s] = load.http10_keepalive(srv.port, path, [ACCEPT])
                    elif p.warmup:
                        load.wrk(srv.url + path, conns, p.warmup, body, [ACCEPT])

                def run(s, srv):
                    if method == "GET":
                        return load.wrk(srv.url + path, conns, p.seconds, body, [ACCEPT])
                    try:
                        return load.ab_head(srv.url + path, conns, p.seconds, [ACCEPT])
                    except MeasureError as e:
                        hdr = notes.get(s)
                        if hdr and hdr.lower() == "keep-alive":
                            raise
                        raise MeasureError(
                            "%s (the answer to an HTTP/1.0 request with Connection: Keep-Alive "
                            "has %s, so ab -k waits for a close that never comes)"
                            % (e, "Connection: " + hdr if hdr else "no Connection header"))

                picked, errors = self._rounds("%s by %s" % (method, by), prepare, run)
                detail = dict(picked)
                if notes:
                    detail["http10_keepalive_connection_header"] = notes
                label = "manifest %s by %s, %d conns" % (method, by, conns)
                fid = "manifest_%s_%s" % (method.lower(), by)
                tgt = ratio_at_least("nginx", 0.5) if by == "tag" else None
                self.fig("warm", fid + "_rps", label, "req/s",
                         {s: r["rps"] for s, r in picked.items()}, target=tgt, errors=errors,
                         detail=detail, fmt="%.0f")
                self.fig("warm", fid + "_p50", "  p50", "ms",
                         {s: r["p50_ms"] for s, r in picked.items()}, better="lower",
                         errors=errors)
                self.fig("warm", fid + "_p99", "  p99", "ms",
                         {s: r["p99_ms"] for s, r in picked.items()}, better="lower",
                         errors=errors)
                self.fig("warm", fid + "_cpu_us", "  server CPU per request", "us",
                         {s: r["server_cpu"] / r["rps"] * 1e6 for s, r in picked.items()},
                         better="lower", errors=errors)

    def phase_warm_auth(self):
        """Manifest GET by tag with Basic credentials against a Wharf with
        htpasswd (bcrypt) and access control, the verification cached after
        the first request, vs the plain local Wharf without auth: the cost
        of the access phase. Rounds interleaved, best of each."""
        p = self.plan
        conns = 32
        htp = self.path("htpasswd")
        subprocess.run(["htpasswd", "-B", "-c", "-b", htp, "bench", "bench-pw"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Anonymous pushes seed it (the fixture loader has no credentials);
        # the measured GETs authenticate and are authorized by defaultPolicy.
        cfg = {"http": {"auth": {"htpasswd": {"path": htp}},
                        "accessControl": {"repositories": {"**": {
                            "anonymousPolicy": ["read", "create", "update"],
                            "defaultPolicy": ["read"]}}}}}
        srv = self.start(self.new_wharf(self.path("wharf-auth"), cfg), systems.SERVER_CPUS)
        load.push_fixture(srv.hostport, self.mani)
        body = self.path("img", "manifest.json")
        path = "/v2/%s/manifests/%s" % (self.mani.repo, self.mani.tag)
        cred = "Authorization: Basic " + base64.b64encode(b"bench:bench-pw").decode()
        systems_ = {"plain": (self.local["wharf"], [ACCEPT]), "auth": (srv, [ACCEPT, cred])}
        best, errors = {}, {}
        for name, (server, hdrs) in systems_.items():
            if p.warmup:
                load.wrk(server.url + path, conns, p.warmup, body, hdrs)
        for i in range(p.rounds):
            for name, (server, hdrs) in systems_.items():
                try:
                    r = load.wrk(server.url + path, conns, p.seconds, body, hdrs)
                except MeasureError as e:
                    errors[name] = str(e)
                    continue
                say("  %-18s %-12s %8.0f req/s  p50 %s ms  p99 %s ms%s"
                    % ("GET auth", name, r["rps"], report._num(r["p50_ms"]),
                       report._num(r["p99_ms"]),
                       "  (%d errors)" % r["errors"] if r["errors"] else ""))
                if r["errors"]:
                    errors[name] = "round %d: %d of %d requests failed: %s" % (
                        i + 1, r["errors"], r["requests"], r["error_kinds"])
                if name not in errors and r["rps"] > best.get(name, {}).get("rps", -1):
                    best[name] = r
        srv.stop()
        plain = best.get("plain", {}).get("rps")
        values = {"wharf": best["auth"]["rps"]} if "auth" in best and plain else {}
        errs = {"wharf": "; ".join("%s: %s" % kv for kv in errors.items())} if errors else {}
        self.fig("warm", "manifest_get_auth_rps",
                 "manifest GET by tag, htpasswd (cached), %d conns" % conns, "req/s", values,
                 target=at_least(0.9 * (plain or 0), "0.9x unauthenticated Wharf (%s req/s)"
                                 % report._num(plain, "%.0f")),
                 errors=errs, detail={"plain": best.get("plain"), "auth": best.get("auth")},
                 fmt="%.0f")

    def phase_warm_blob(self):
        p = self.plan
        path = "/v2/%s/blobs/%s" % (self.blob_repo, self.blob.digest)
        conns = 16

        def check(s, srv):
            load.check_blob(srv.url + path, self.blob, 60)

        def prepare(s, srv):
            check(s, srv)
            if p.warmup:
                load.get_load(srv.port, path, conns, p.warmup, self.blob.size)

        picked, errors = self._rounds(
            "blob GET", prepare,
            lambda s, srv: load.get_load(srv.port, path, conns, p.blob_seconds, self.blob.size),
            key="mb_s", verify=check)
        self.fig("warm", "blob_get_mb_s", "blob GET %s, %d conns" % (mib(self.blob.size), conns),
                 "MB/s", {s: r["mb_s"] for s, r in picked.items()},
                 target=ratio_at_least("nginx", 0.9), errors=errors, detail=picked, fmt="%.0f")
        self.fig("warm", "blob_get_cpu_ms_per_gb", "  server CPU per GB sent", "ms/GB",
                 {s: r["server_cpu"] / r["mb_s"] * 1e6 for s, r in picked.items()},
                 better="lower", errors=errors, fmt="%.0f")

    def phase_warm_pull(self):
        p = self.plan
        secs, errors = {}, {}
        for s, srv in self.each_local():
            try:
                runs = [load.skopeo_pull(self.work, srv.hostport, self.pull.repo, self.pull.tag)
                        for _ in range(p.pull_reps)]
                secs[s] = median(runs)
                say("  skopeo pull %-12s %.2f s (runs %s)"
                    % (s, secs[s], ", ".join("%.2f" % x for x in runs)))
            except MeasureError as e:
                errors[s] = str(e)
                say("  skopeo pull %-12s ERROR %s" % (s, e))
        label = "skopeo pull, %s image" % mib(self.pull.size)
        self.fig("warm", "skopeo_pull_s", label, "s", secs, better="lower", errors=errors,
                 detail={"runs": p.pull_reps, "statistic": "median"})
        self.fig("warm", "skopeo_pull_mb_s", "  throughput", "MB/s",
                 {s: self.pull.size / v / 1e6 for s, v in secs.items()}, errors=errors,
                 fmt="%.0f")

    # -------------------------------------------------------------- push

    def phase_push(self):
        p = self.plan
        files = {mode: [fixtures.random_blob(self.path("push-%s-%d.bin" % (mode, i)), p.push,
                                             seed=100 * (1 + k) + i)
                        for i in range(p.push_reps)]
                 for k, mode in enumerate(("monolithic", "chunked"))}
        for mode, blobs in files.items():
            vals, errors, detail = {}, {}, {}
            for s in ("wharf", "distribution"):
                srv = self.local[s]
                runs = []
                try:
                    for b in blobs:
                        repo = "bench/push-%s" % mode
                        reg = load.Registry(srv.hostport)
                        with systems.on(systems.CLIENT_CPUS):
                            t0 = time.monotonic()
                            if mode == "chunked":
                                reg.upload_chunked(repo, b.path, b.digest, p.push_chunk)
                            elif s == "wharf":
                                reg.upload_single_post(repo, b.path, b.digest)
                            else:
                                reg.upload_post_put(repo, b.path, b.digest)
                            runs.append(time.monotonic() - t0)
                        reg.close()
                        # Outside the timed window: the blob reads back whole.
                        load.check_blob("%s/v2/%s/blobs/%s" % (srv.url, repo, b.digest), b)
                    vals[s] = p.push / median(runs) / 1e6
                    detail[s] = {"seconds": runs}
                    say("  push %-10s %-12s %6.0f MB/s (runs %s s)"
                        % (mode, s, vals[s], ", ".join("%.2f" % x for x in runs)))
                except MeasureError as e:
                    errors[s] = str(e)
                    say("  push %-10s %-12s ERROR %s" % (mode, s, e))
            if mode == "monolithic":
                label = "push %s monolithic" % mib(p.push)
                detail["form"] = {"wharf": "POST ?digest= with the body",
                                  "distribution": "POST, then PUT ?digest= with the body "
                                  "(it answers 202 to POST ?digest= and drops the body)"}
            else:
                label = "push %s chunked (%s PATCHes)" % (mib(p.push), mib(p.push_chunk))
            self.fig("push", "push_%s_mb_s" % mode, label, "MB/s", vals,
                     target=ratio_at_least("distribution", 1.0), errors=errors, detail=detail,
                     fmt="%.0f")
        self.pull_back(files["monolithic"][0])
        for b in sum(files.values(), []):
            os.unlink(b.path)

    def pull_back(self, b):
        """The layer just pushed, pulled back by one client (issue 3's pull
        throughput for a 96 MiB layer); the bytes are kept and their sha256
        checked once the clock has stopped."""
        vals, errors = {}, {}
        path = "/v2/bench/push-monolithic/blobs/%s" % b.digest
        for s in ("wharf", "distribution"):
            srv = self.local[s]
            runs = []
            try:
                for _ in range(max(1, self.plan.push_reps)):
                    body = bytearray()
                    with systems.on(systems.CLIENT_CPUS):
                        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
                        t0 = time.monotonic()
                        c.request("GET", path)
                        r = c.getresponse()
                        while True:
                            chunk = r.read(1 << 20)
                            if not chunk:
                                break
                            body += chunk
                        runs.append(time.monotonic() - t0)
                        c.close()
                    digest = "sha256:" + hashlib.sha256(body).hexdigest()
                    if (r.status, len(body), digest) != (200, b.size, b.digest):
                        raise MeasureError("pull back: status %d, %d of %d bytes, %s (want %s)"
                                           % (r.status, len(body), b.size, digest, b.digest))
                vals[s] = b.size / median(runs) / 1e6
                say("  pull back %-12s %6.0f MB/s" % (s, vals[s]))
            except (MeasureError, OSError, http.client.HTTPException) as e:
                errors[s] = str(e)
                say("  pull back %-12s ERROR %s" % (s, e))
        self.fig("push", "pull_layer_mb_s", "pull the %s layer back, 1 client" % mib(b.size),
                 "MB/s", vals, errors=errors, fmt="%.0f")

    def phase_sha256(self):
        """tests/bench/bench_sha256.c, built next to the wharf binary."""
        exe = os.path.join(os.path.dirname(self.bin), "bench_sha256")
        if not os.access(exe, os.X_OK):
            self.note("no %s: sha256 throughput not measured" % exe)
            return
        with systems.on(systems.SERVER_CPUS):
            out = subprocess.run([exe, str(self.plan.sha256_mib)], stdout=subprocess.PIPE,
                                 timeout=120, check=True).stdout.decode()
        r = json.loads(out.strip().splitlines()[-1])
        say("  sha256: %s %s MB/s, mbedTLS %s MB/s" % (r["impl"], r["mbps"], r["mbedtls_mbps"]))
        self.fig("push", "sha256_mb_s", "sha256, run-time choice (%s)" % r["impl"], "MB/s",
                 {"wharf": r["mbps"]}, target=at_least(1500, "1500 MB/s"), fmt="%.0f",
                 detail=r)
        self.fig("push", "sha256_mbedtls_mb_s", "  sha256, mbedTLS", "MB/s",
                 {"wharf": r["mbedtls_mbps"]}, fmt="%.0f")
        if "sha512_mbps" in r:
            say("  sha512: mbedTLS %s MB/s; sha256 and sha512 together %s MB/s"
                % (r["sha512_mbps"], r["sha256_and_sha512_mbps"]))
            self.fig("push", "sha512_mb_s", "  sha512, mbedTLS", "MB/s",
                     {"wharf": r["sha512_mbps"]}, fmt="%.0f")
            self.fig("push", "sha256_sha512_mb_s", "  sha256 + sha512 over the same bytes",
                     "MB/s", {"wharf": r["sha256_and_sha512_mbps"]}, fmt="%.0f")

    def phase_local_end(self):
        time.sleep(1.0)
        dead = {s: "exited during the run, status %s" % getattr(srv.proc, "returncode", None)
                for s, srv in self.each_local() if not srv.alive()}
        self.fig("memory", "rss_after_warm", "RSS idle after warm + push phases", "MiB",
                 {s: srv.rss_kib() / 1024 for s, srv in self.each_local()}, better="lower",
                 errors=dead, fmt="%.1f")
        for s, srv in self.each_local():
            srv.stop()

    # -------------------------------------------------------------- TLS

    def s_time(self, port, reuse, seconds):
        """openssl s_time against port: handshakes/s (full, or resumed from
        the first session), each connection a GET of the manifest read to
        its end. The rate is counted over the wall time of the run."""
        path = "/v2/%s/manifests/%s" % (self.mani.repo, self.mani.tag)
        cmd = ["openssl", "s_time", "-connect", "127.0.0.1:%d" % port,
               "-reuse" if reuse else "-new", "-time", str(seconds), "-www", path]
        t = time.monotonic()
        with systems.on(systems.CLIENT_CPUS):
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, timeout=seconds + 60)
        dt = time.monotonic() - t
        out = p.stdout.decode("utf-8", "replace")
        m = re.findall(r"^(\d+) connections in", out, re.M)
        if p.returncode != 0 or not m or "ERROR" in out:
            raise MeasureError("s_time failed (%d): %s" % (
                p.returncode, (p.stderr.decode("utf-8", "replace") or out).strip()[-300:]))
        n = int(m[-1])
        marks = re.findall(r"^[*r]+$", out, re.M)
        new = sum(l.count("*") for l in marks)
        if reuse and new > max(1, n // 100):
            raise MeasureError("s_time -reuse: %d of %d handshakes were not resumed" % (new, n))
        return {"hs_s": n / dt, "connections": n, "seconds": dt, "full": new}

    def phase_tls(self):
        """Wharf (mbedTLS) and nginx (OpenSSL) over TLS, the same certificate
        (ECDSA P-256) and files: handshakes/s, manifest GET, blob GET, memory
        per idle TLS connection."""
        p = self.plan
        pki = self.path("tls")
        os.makedirs(pki, exist_ok=True)
        ca_key, ca_crt = os.path.join(pki, "ca.key"), os.path.join(pki, "ca.crt")
        key, csr, crt = (os.path.join(pki, "server" + x) for x in (".key", ".csr", ".crt"))
        ext = os.path.join(pki, "ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        ec = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        for cmd in (["openssl", "req", "-x509", "-newkey"] + ec + ["-nodes", "-keyout", ca_key,
                     "-out", ca_crt, "-days", "2", "-subj", "/CN=bench-ca"],
                    ["openssl", "req", "-newkey"] + ec + ["-nodes", "-keyout", key, "-out", csr,
                     "-subj", "/CN=127.0.0.1"],
                    ["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                     "-set_serial", "1", "-out", crt, "-days", "2", "-extfile", ext]):
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.chmod(key, 0o644)   # nginx reads it as root, but keep it simple for workers
        cpus = systems.SERVER_CPUS
        saved = self.local
        w = self.new_wharf(self.path("wharf-tls"), {"http": {"tls": {"cert": crt, "key": key}}})
        w.tls = True
        self.start(w, cpus)
        n = self.start(systems.nginx_static_tls(self.work, self.nginx_root, crt, key), cpus)
        ctx = ssl.create_default_context(cafile=ca_crt)
        load.push_fixture(w.hostport, self.mani, context=ctx)
        reg = load.Registry(w.hostport, context=ctx)
        reg.upload_post_put(self.blob_repo, self.blob.path, self.blob.digest)
        reg.close()
        self.local = {"wharf": w, "nginx": n}
        try:
            for reuse in (False, True):
                vals, errors, detail = {}, {}, {}
                for s_, srv in self.each_local():
                    try:
                        best = None
                        for _ in range(p.rounds):
                            r = self.s_time(srv.port, reuse, p.seconds)
                            if best is None or r["hs_s"] > best["hs_s"]:
                                best = r
                        vals[s_], detail[s_] = best["hs_s"], best
                        say("  TLS handshakes %-7s %-12s %8.0f /s" % (
                            "resumed" if reuse else "full", s_, best["hs_s"]))
                    except MeasureError as e:
                        errors[s_] = str(e)
                        say("  TLS handshakes %-12s ERROR %s" % (s_, e))
                kind = "resumed" if reuse else "full"
                self.fig("tls", "tls_handshakes_%s" % kind,
                         "TLS handshakes/s, %s (s_time, + GET manifest)" % kind, "1/s", vals,
                         errors=errors, detail=detail, fmt="%.0f")

            conns = 32
            body = self.path("img", "manifest.json")
            with open(body, "wb") as f:
                f.write(self.mani.manifest)
            mpath = "/v2/%s/manifests/%s" % (self.mani.repo, self.mani.tag)

            def m_prepare(s_, srv):
                if p.warmup:
                    load.wrk("https://%s%s" % (srv.hostport, mpath), conns, p.warmup, body,
                             [ACCEPT])

            picked, errors = self._rounds(
                "TLS GET manifest", m_prepare,
                lambda s_, srv: load.wrk("https://%s%s" % (srv.hostport, mpath), conns,
                                         p.seconds, body, [ACCEPT]))
            self.fig("tls", "tls_manifest_get_rps",
                     "manifest GET by tag over TLS, %d conns" % conns, "req/s",
                     {s_: r["rps"] for s_, r in picked.items()},
                     target=ratio_at_least("nginx", 0.8), errors=errors, detail=picked,
                     fmt="%.0f")
            self.fig("tls", "tls_manifest_get_cpu_us", "  server CPU per request", "us",
                     {s_: r["server_cpu"] / r["rps"] * 1e6 for s_, r in picked.items()},
                     better="lower", errors=errors)

            bpath = "/v2/%s/blobs/%s" % (self.blob_repo, self.blob.digest)
            bconns = 16

            def b_prepare(s_, srv):
                load.get_load(srv.port, bpath, 1, 0.2, self.blob.size, tls=True)

            picked, errors = self._rounds(
                "TLS blob GET", b_prepare,
                lambda s_, srv: load.get_load(srv.port, bpath, bconns, p.blob_seconds,
                                              self.blob.size, tls=True), key="mb_s")
            self.fig("tls", "tls_blob_get_mb_s",
                     "blob GET %s over TLS, %d conns" % (mib(self.blob.size), bconns), "MB/s",
                     {s_: r["mb_s"] for s_, r in picked.items()},
                     target=ratio_at_least("nginx", 0.6), errors=errors, detail=picked,
                     fmt="%.0f")
            self.fig("tls", "tls_blob_get_cpu_ms_per_gb", "  server CPU per GB sent", "ms/GB",
                     {s_: r["server_cpu"] / r["mb_s"] * 1e6 for s_, r in picked.items()},
                     better="lower", errors=errors, fmt="%.0f")

            nidle = min(p.idle_conns, 500)
            per, errors, detail = {}, {}, {}
            for s_, srv in self.each_local():
                r = load.idle_connections(srv, nidle, context=ctx)
                detail[s_] = r
                per[s_] = (r["rss_with_kib"] - r["rss_before_kib"]) / nidle
                if r["ok"] != nidle or r["still_open"] != nidle:
                    errors[s_] = "%d of %d connections answered, %d still open after 1 s" % (
                        r["ok"], nidle, r["still_open"])
                say("  %-12s %d idle TLS connections: %.1f KiB each" % (s_, nidle, per[s_]))
                time.sleep(0.5)
            self.fig("tls", "tls_kib_per_idle_conn",
                     "memory per idle TLS connection (%d conns)" % nidle, "KiB", per,
                     better="lower", target=at_most(64, "64 KiB"), errors=errors,
                     detail=detail, fmt="%.1f")
        finally:
            self.local = saved
            w.stop()
            n.stop()

    # -------------------------------------------------------------- cold

    def new_cache(self, kind, upstream_url):
        if kind == "wharf":
            cfg = upstream.sync_config(upstream_url, destination="/")
            return self.start(self.new_wharf(self.path("cache-%d" % len(self.servers)), cfg,
                                             role="pull-through", log_level="info"))
        return self.start(systems.distribution_server(proxy_url=upstream_url))

    def phase_cold(self):
        p = self.plan
        self.up = self.start(systems.distribution_server(role="upstream"))
        load.push_fixture(self.up.hostport, self.cold)
        front = self.start(systems.nginx_throttle(self.work, self.up.url, p.throttle))
        self.front = front
        layer = self.cold.biggest_layer
        layer_path = "/v2/%s/blobs/%s" % (self.cold.repo, layer.digest)

        # Is the front throttling? (nginx lets about one second's worth through at once.)
        if layer.size > 2 * p.throttle:
            r = load.fetch(front.url + layer_path, 120)
            rate = layer.size / r["total_s"]
            say("  throttle check: %s in %.2f s = %.1f MB/s" % (mib(layer.size), r["total_s"],
                                                                 rate / 1e6))
            if rate > 2 * p.throttle:
                self.note("the upstream front does not throttle (%.0f MB/s)" % (rate / 1e6))

        def measure(kind, fn):
            """fn(cache) on a fresh cache; returns (fn's result, upstream requests)."""
            cache = self.new_cache(kind, front.url)
            try:
                systems.wait_throttle_idle(front, 10)
                off = systems.log_offset(front)
                out = fn(cache)
                if not systems.wait_throttle_idle(front, 30 + 3 * layer.size / p.throttle):
                    self.note("%s: the upstream was still busy when counting" % kind)
                return out, systems.throttle_requests(front, off)
            finally:
                if not cache.alive():
                    self.note("%s cache exited during the cold phase" % kind)
                cache.stop()

        def upstream_bytes(reqs, digest=None):
            return sum(b for m, uri, st, b in reqs if digest is None or uri.endswith(digest))

        def summary(reqs):
            return Counter("%s %s %d" % (m, uri.rsplit("/", 2)[-2], st)
                           for m, uri, st, b in reqs)

        kinds = ("wharf", "distribution")
        # 1. a whole pull
        secs, ratio, errors, detail = {}, {}, {}, {}
        for k in kinds:
            try:
                t, reqs = measure(k, lambda c: load.skopeo_pull(self.work, c.hostport,
                                                               self.cold.repo, self.cold.tag))
                secs[k] = t
                ratio[k] = upstream_bytes(reqs) / self.cold.size
                detail[k] = {"upstream_requests": summary(reqs),
                             "upstream_bytes": upstream_bytes(reqs)}
                say("  cold pull %-12s %.2f s, upstream bytes %.2fx image" % (k, t, ratio[k]))
            except MeasureError as e:
                errors[k] = str(e)
                say("  cold pull %-12s ERROR %s" % (k, e))
        self.fig("cold", "cold_pull_s", "cold pull, %s image" % mib(self.cold.size), "s", secs,
                 better="lower", errors=errors, detail=detail)
        self.fig("cold", "cold_pull_upstream_ratio", "  upstream bytes / image size", "x",
                 ratio, better="lower", target=at_most(1.01, "1.0x image"), errors=errors)

        # 2. first byte of the big layer, one client
        ttfb, total, errors, detail = {}, {}, {}, {}
        for k in kinds:
            try:
                r, reqs = measure(k, lambda c: load.fetch(c.url + layer_path, 300))
                if r["error"] or (r["status"], r["size"], r["digest"]) != (200, layer.size,
                                                                           layer.digest):
                    raise MeasureError("GET layer: %s, %d bytes, %s %s" % (
                        r["status"], r["size"], r["digest"], r["error"] or ""))
                ttfb[k] = r["ttfb_s"] * 1000
                total[k] = r["total_s"]
                detail[k] = {"upstream_bytes_layer": upstream_bytes(reqs, layer.digest),
                             "upstream_requests": summary(reqs)}
                say("  first byte %-12s %.1f ms (whole layer %.2f s, upstream %.2fx layer)"
                    % (k, ttfb[k], total[k], upstream_bytes(reqs, layer.digest) / layer.size))
            except MeasureError as e:
                errors[k] = str(e)
                say("  first byte %-12s ERROR %s" % (k, e))
        self.fig("cold", "cold_ttfb_ms", "first body byte, uncached %s layer" % mib(layer.size),
                 "ms", ttfb, better="lower", errors=errors, detail=detail,
                 target=all_of(ratio_at_most("distribution", 1.0), at_most(1000, "1000 ms")))
        self.fig("cold", "cold_layer_s", "  whole layer, 1 client", "s", total, better="lower",
                 errors=errors)

        # 3. n clients at once on the same uncached layer
        wall, ratio, errors, detail = {}, {}, {}, {}
        for k in kinds:
            try:
                (w, results), reqs = measure(
                    k, lambda c: load.fetch_parallel(c.url + layer_path, p.clients, 300))
                bad = [r for r in results
                       if r is None or r["error"] or (r["status"], r["size"], r["digest"])
                       != (200, layer.size, layer.digest)]
                if bad:
                    raise MeasureError("%d of %d clients got a wrong answer, e.g. %s"
                                       % (len(bad), p.clients, bad[0]))
                wall[k] = w
                ratio[k] = upstream_bytes(reqs, layer.digest) / layer.size
                detail[k] = {"upstream_requests": summary(reqs),
                             "client_seconds": [r["total_s"] for r in results]}
                say("  %d clients %-12s %.2f s, upstream %.2fx layer" % (p.clients, k, w, ratio[k]))
            except MeasureError as e:
                errors[k] = str(e)
                say("  %d clients %-12s ERROR %s" % (p.clients, k, e))
        self.fig("cold", "cold_clients_s", "%d clients, same uncached layer: wall" % p.clients,
                 "s", wall, better="lower", errors=errors, detail=detail)
        self.fig("cold", "cold_clients_upstream_ratio", "  upstream bytes / layer size", "x",
                 ratio, better="lower", target=at_most(1.01, "1.0x layer"), errors=errors)

    # -------------------------------------------------------------- slow readers

    def phase_slow(self):
        p = self.plan
        layer = self.cold.biggest_layer
        path = "/v2/%s/blobs/%s" % (self.cold.repo, layer.digest)
        vals, errors, detail = {}, {}, {}
        for k in ("wharf", "distribution"):
            cache = self.new_cache(k, self.up.url)
            try:
                before = cache.rss_kib()
                with load.RssSampler(cache.rss_kib, 0.1) as smp:
                    got = load.slow_readers(cache.port, path, p.slow_clients, p.slow_rate,
                                            p.slow_seconds)
                statuses = Counter(st for st, n in got)
                vals[k] = smp.max / 1024
                detail[k] = {"rss_before_kib": before, "samples": smp.samples,
                             "statuses": statuses,
                             "mb_per_client": [round(n / 1e6, 2) for st, n in got]}
                if statuses.get("HTTP/1.1 200 OK", 0) != p.slow_clients:
                    errors[k] = "answers: %s" % dict(statuses)
                if not cache.alive():
                    errors[k] = "exited during the test"
                say("  %d slow clients %-12s RSS max %.1f MiB (before %.1f MiB, %d samples, "
                    "%.1f MB read per client)" % (p.slow_clients, k, vals[k], before / 1024,
                                                  smp.samples, sum(n for s, n in got) / 1e6
                                                  / len(got)))
            finally:
                cache.stop()
        self.fig("memory", "rss_slow_clients",
                 "RSS max, %d slow clients, uncached layer" % p.slow_clients, "MiB", vals,
                 better="lower", target=at_most(32, "32 MiB"), errors=errors, detail=detail,
                 fmt="%.1f")

    # -------------------------------------------------------------- a sick upstream

    def phase_sick(self):
        """A cached image pulled while the upstream accepts and never answers
        (fakes/faults.py in front, every request delayed for ten minutes):
        Wharf answers from the cache (stale while revalidate); Distribution's
        proxy asks the upstream first. The client gives up after SICK_WAIT_S;
        that is the figure of a pull that never came back."""
        SICK_WAIT_S = 60
        front = upstream.FaultProxy(self.up.url).start()
        try:
            caches = {}
            for k in ("wharf", "distribution"):
                if k == "wharf":
                    cfg = upstream.sync_config(front.url, destination="/",
                                               manifest_check_interval="1s")
                    caches[k] = self.start(self.new_wharf(
                        self.path("sick-%d" % len(self.servers)), cfg, role="pull-through",
                        log_level="info"))
                else:
                    caches[k] = self.start(systems.distribution_server(proxy_url=front.url))
                load.skopeo_pull(self.work, caches[k].hostport, self.cold.repo, self.cold.tag)
            front.set("delay", delay_ms=600000)
            time.sleep(1.5)  # past Wharf's freshness window
            vals, errors, detail = {}, {}, {}
            for k, cache in caches.items():
                try:
                    t = load.skopeo_pull(self.work, cache.hostport, self.cold.repo,
                                         self.cold.tag, timeout=SICK_WAIT_S)
                    vals[k] = t
                    say("  cached pull, upstream hanging %-12s %.2f s" % (k, t))
                except MeasureError as e:
                    vals[k] = float(SICK_WAIT_S)
                    detail[k] = {"gave_up_after_s": SICK_WAIT_S, "error": str(e)[-300:]}
                    say("  cached pull, upstream hanging %-12s no answer in %d s"
                        % (k, SICK_WAIT_S))
                    self.note("%s: a cached pull with the upstream hanging did not finish in "
                              "%d s (the figure is the client's give-up time)"
                              % (k, SICK_WAIT_S))
            self.fig("cold", "sick_cached_pull_s",
                     "cached pull, upstream hanging (give up %d s)" % SICK_WAIT_S, "s", vals,
                     better="lower", errors=errors, detail=detail, target=at_most(1.0, "1 s"))
        finally:
            front.set("none")
            front.stop()
            front.cleanup()

    def phase_cold_end(self):
        for srv in (getattr(self, "front", None), getattr(self, "up", None)):
            if srv:
                srv.stop()

    # -------------------------------------------------------------- gc, eviction, metadata

    def _gc_probe_requests(self, fx, repos):
        """GET /v2/, HEAD a tagged manifest, GET a small blob, for each of
        `repos` (spread over the root) in turn."""
        out = []
        for r in repos:
            out += [("GET", "/v2/", 200, None, None),
                    ("HEAD", "/v2/%s/manifests/v1" % r.name, 200, r.manifest_len,
                     {"Accept": gcbench.ACCEPT}),
                    ("GET", "/v2/%s/blobs/%s" % (r.name, r.small[0]), 200, r.small[1], None)]
        return out

    def _watch(self, srv, tail, done, probe, limit_s):
        """Read srv's log until done(records so far) is true, at most limit_s;
        the probe runs meanwhile. Returns (records, monotonic time seen or None)."""
        recs = []
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            recs += tail.read()
            if done(recs):
                return recs, time.monotonic()
            if not srv.alive() or probe.proc.poll() is not None:
                break
            time.sleep(0.005)
        return recs, None

    def _probe_figures(self, what, res, t_end, baseline_s, errors, key, n_reads, n_pushes):
        """Latency rows during [start, t_end) and after (t_end + 0.2 s on,
        baseline_s long): the wire latency (latprobe.py) of the reads, the
        answers over 50 ms by cause (gcbench.attribute); then the pushes'."""
        reads = set(range(n_reads))
        pushes = set(range(n_reads, n_reads + n_pushes))
        t_after = (t_end + 0.2, t_end + 0.2 + baseline_s)
        during = gcbench.latency_stats(res, None, t_end, reads)
        after = gcbench.latency_stats(res, *t_after, reads)
        by, rows = gcbench.stalls(res, None, t_end, 50, reads)
        by_after, rows_after = gcbench.stalls(res, *t_after, 50, reads)
        p_during = gcbench.latency_stats(res, None, t_end, pushes)
        p_after = gcbench.latency_stats(res, *t_after, pushes)
        ours = sum(n for c, n in by.items() if c != gcbench.CAUSES[0])
        if res["errors"]:
            errors.setdefault("wharf", "probe: %s" % res["errors"])
        stuck = [u for u in res.get("unfinished", []) if u[1] > 1.0]
        if stuck:
            errors.setdefault("wharf", "probe: %d request(s) unanswered after %.1f s"
                              % (len(stuck), max(u[1] for u in stuck)))
        if not during["n"] or not after["n"]:
            errors.setdefault("wharf", "probe: %d requests during, %d after"
                              % (during["n"], after["n"]))
        say("  %s: %d requests during: p50 %s, p99 %s, max %s ms (client-side max %s ms); "
            "%d after: p50 %s, p99 %s, max %s ms; %d left out (the probe lost its CPU at "
            "the send); %d schedstat samples"
            % (what, during["n"], report._num(during["p50_ms"]), report._num(during["p99_ms"]),
               report._num(during["max_ms"]), report._num(during["client_max_ms"]), after["n"],
               report._num(after["p50_ms"]), report._num(after["p99_ms"]),
               report._num(after["max_ms"]), during["client_delayed"] + after["client_delayed"],
               len(res.get("samples") or [])))
        for label, b, rs in (("during", by, rows), ("after", by_after, rows_after)):
            if rs:
                say("  %s: answers over 50 ms %s: %s; worst: %s"
                    % (what, label, b, "; ".join("%+.2fs %.1f ms %s %s" % (
                        r[0] - t_end, r[1], r[2], r[3]) for r in rs[:3])))
        if n_pushes:
            say("  %s: %d pushes during: p50 %s, p99 %s, max %s ms; %d after: p50 %s, p99 %s, "
                "max %s ms; slowest [s from the end, wire ms, client ms, request]: %s"
                % (what, p_during["n"], report._num(p_during["p50_ms"]),
                   report._num(p_during["p99_ms"]), report._num(p_during["max_ms"]),
                   p_after["n"], report._num(p_after["p50_ms"]), report._num(p_after["p99_ms"]),
                   report._num(p_after["max_ms"]), gcbench.slowest(res, 4, t_end, pushes)))
        detail = {"during": during, "after": after, "errors": res["errors"],
                  "over_50ms_by_cause": by, "over_50ms_after_by_cause": by_after,
                  "over_50ms_worst": [[round(r[0] - t_end, 3)] + list(r[1:]) for r in rows[:8]],
                  "slowest [s from the end, wire ms, client ms, request]":
                  gcbench.slowest(res, 10, t_end, reads),
                  "pushes_during": p_during, "pushes_after": p_after,
                  "pushes_slowest": gcbench.slowest(res, 10, t_end, pushes)}
        self.fig("gc", key + "_n", "  requests during it (GET /v2/, HEAD, blob)", "count",
                 {"wharf": during["n"]}, errors=errors, fmt="%.0f", detail=detail)
        self.fig("gc", key + "_p50", "  latency during it, p50", "ms",
                 {"wharf": during["p50_ms"]}, better="lower", errors=errors)
        self.fig("gc", key + "_p99", "  latency during it, p99", "ms",
                 {"wharf": during["p99_ms"]}, better="lower", errors=errors)
        self.fig("gc", key + "_max", "  latency during it, max", "ms",
                 {"wharf": during["max_ms"]}, better="lower", errors=errors)
        self.fig("gc", key + "_over50", "  answers over 50 ms, any cause", "count",
                 {"wharf": during["over_50ms"]}, better="lower", errors=errors, fmt="%.0f")
        self.fig("gc", key + "_over50_ours", "  over 50 ms, not other processes' CPU", "count",
                 {"wharf": ours}, better="lower", errors=errors, fmt="%.0f",
                 target=at_most(0, "0"))
        self.fig("gc", key + "_after_p99", "  after it (same server), p99", "ms",
                 {"wharf": after["p99_ms"]}, better="lower", errors=errors)
        self.fig("gc", key + "_after_max", "  after it (same server), max", "ms",
                 {"wharf": after["max_ms"]}, better="lower", errors=errors)
        if not n_pushes:
            return
        self.fig("gc", key + "_push_n", "  pushes during it (2 blobs, 1 manifest)", "count",
                 {"wharf": p_during["n"]}, errors=errors, fmt="%.0f")
        self.fig("gc", key + "_push_p50", "  push latency during it, p50", "ms",
                 {"wharf": p_during["p50_ms"]}, better="lower", errors=errors)
        self.fig("gc", key + "_push_max", "  push latency during it, max", "ms",
                 {"wharf": p_during["max_ms"]}, better="lower", errors=errors)
        self.fig("gc", key + "_push_after_p50", "  push latency after it, p50", "ms",
                 {"wharf": p_after["p50_ms"]}, better="lower", errors=errors)
        self.fig("gc", key + "_push_after_max", "  push latency after it, max", "ms",
                 {"wharf": p_after["max_ms"]}, better="lower", errors=errors)

    def phase_gc_sweep(self):
        """The first sweep of a Wharf started on a root of gc_repos
        repositories (10 blobs each, half of them garbage), while a probe
        sends small requests; Distribution's offline garbage-collect on the
        same content in its layout."""
        p = self.plan
        root = self.path("gc-wharf")
        fx = gcbench.gc_root(root, p.gc_repos)
        say("  root: %d repositories, %d blob files (%d distinct blobs, %.1f MiB), %d of "
            "them garbage; made in %.1fs" % (len(fx.repos), fx.links, fx.distinct,
                                             fx.bytes / MiB, fx.garbage_links, fx.seconds))
        cfg = {"storage": {"gc": True, "gcDelay": "1h", "gcInterval": "1h"}}
        srv = self.new_wharf(root, cfg, role="gc", log_level="info")
        tail = gcbench.LogTail(srv.log_path)
        errors, vals, removed_b, removed_m, detail = {}, {}, {}, {}, {}
        self.start(srv, systems.SERVER_CPUS)
        t_ready = time.monotonic()
        try:
            reads = self._gc_probe_requests(fx, fx.repos[::7])
            pushes = gcbench.push_lane("bench/push")
            probe = gcbench.Probe(self.work, "gc-probe", srv.port, reads, conns=4,
                                  seconds=p.gc_limit_s + 30, watch_pid=srv.pid,
                                  groups=[(1, pushes)])
            recs, t_end = self._watch(
                srv, tail, lambda rs: any(r.get("message") == "gc successfully completed"
                                          for r in rs), probe, p.gc_limit_s)
            if t_end is None:
                probe.stop()
                raise MeasureError("no sweep finished within %d s" % p.gc_limit_s)
            done = next(r for r in recs if r.get("message") == "gc successfully completed")
            sweep_s = done["duration_ms"] / 1000
            baseline = min(max(sweep_s, 2.0), 5.0)
            time.sleep(baseline + 0.3)
            res = probe.stop()
            vals["wharf"] = sweep_s
            removed_b["wharf"], removed_m["wharf"] = done["blobs"], done["manifests"]
            links, shared = gcbench.count_files(root, fx)
            want = (fx.links - fx.garbage_links, fx.distinct - fx.garbage_distinct())
            detail["wharf"] = {"log": done, "files_left": [links, shared], "expected": want,
                               "probe_started_s_after_ready": round(probe.t0 - t_ready, 3),
                               "server_ready_s": srv.startup_s}
            if (links, shared) != want or done["blobs"] != fx.garbage_links:
                errors["wharf"] = ("left %d repository files and %d shared copies, expected "
                                   "%d and %d (log: %d blobs removed)"
                                   % (links, shared, want[0], want[1], done["blobs"]))
            say("  wharf sweep %.2f s: %d blobs, %d manifests removed (log); files left %s"
                % (sweep_s, done["blobs"], done["manifests"], (links, shared)))
        except MeasureError as e:
            errors["wharf"] = str(e)
            res = None
        finally:
            srv.stop()

        # Distribution: the same content, its offline collector.
        if p.gc_distribution:
            try:
                droot = self.path("gc-dist")
                conf = self.path("gc-dist.yml")
                with open(conf, "w") as f:
                    f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                            "    rootdirectory: %s\n  delete:\n    enabled: true\n"
                            "http:\n  addr: 127.0.0.1:%d\n" % (droot, harness.free_port()))
                t0 = time.monotonic()
                gcbench.dist_root(droot, fx)
                made = time.monotonic() - t0
                env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
                t0 = time.monotonic()
                with systems.on(systems.SERVER_CPUS):
                    r = subprocess.run([upstream.REGISTRY_BIN, "garbage-collect",
                                        "--delete-untagged", conf],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, env=env,
                                       timeout=p.gc_limit_s)
                secs = time.monotonic() - t0
                out = r.stdout.decode("utf-8", "replace")
                m = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible",
                              out)
                left = gcbench.dist_blobs_left(droot)
                if r.returncode != 0 or not m:
                    errors["distribution"] = "garbage-collect (%d): %s" % (
                        r.returncode, (r.stderr.decode() or out)[-300:])
                else:
                    vals["distribution"] = secs
                    removed_b["distribution"] = int(m.group(2))
                    removed_m["distribution"] = int(m.group(3))
                    if left != fx.distinct - fx.garbage_distinct():
                        errors["distribution"] = "%d blobs left, expected %d" % (
                            left, fx.distinct - fx.garbage_distinct())
                detail["distribution"] = {"layout_made_s": round(made, 2), "blobs_left": left,
                                          "summary": m.group(0) if m else None}
                say("  distribution garbage-collect --delete-untagged (offline): %.2f s, %s; "
                    "%d blobs left (layout made in %.1fs)"
                    % (secs, m.group(0) if m else "?", left, made))
            except (OSError, subprocess.TimeoutExpired) as e:
                errors["distribution"] = str(e)
        n_label = "%s blobs / %s repos" % (format(fx.links, ","), format(len(fx.repos), ","))
        self.fig("gc", "gc_sweep_s", "GC sweep, %s" % n_label, "s", vals, better="lower",
                 errors=errors, detail=detail, fmt="%.2f")
        self.fig("gc", "gc_blobs_removed", "  blobs removed", "count", removed_b,
                 better=None, errors=errors, fmt="%.0f")
        self.fig("gc", "gc_manifests_removed", "  manifests removed", "count", removed_m,
                 better=None, errors=errors, fmt="%.0f")
        if res is not None:
            self._probe_figures("sweep", res, t_end, baseline,
                                {k: v for k, v in errors.items() if k == "wharf"}, "gc_probe",
                                len(reads), len(pushes))

    def phase_gc_evict(self):
        """A root of evict_repos cached images (meta.log says the cache
        stored them, C lines, oldest first in repository order) and a few
        pushed ones (U: never evicted, which the probe asks for), with
        cacheMaxSize a quarter of what it holds: the server evicts at start
        until it is under the budget."""
        p = self.plan
        root = self.path("evict-wharf")
        fx = gcbench.gc_root(root, p.evict_repos, garbage=False, seed=2, prefix="cache/r")
        pushed = fx.repos[len(fx.repos) // 32::len(fx.repos) // 16][:16]
        base = int((time.time() - gcbench.OLD_S) * 1000)
        with open(os.path.join(root, ".wharf", "meta.log"), "w") as f:
            for i, r in enumerate(fx.repos):
                f.write(gcbench.meta_line("U" if r in pushed else "C", base + i * 1000, r.name,
                                          r.digest))
        budget = fx.bytes // 4
        say("  root: %d images (%d cached, %d pushed), %.2f MiB; cacheMaxSize %d bytes; made "
            "in %.1fs" % (len(fx.repos), len(fx.repos) - len(pushed), len(pushed),
                          fx.bytes / MiB, budget, fx.seconds))
        cfg = {"storage": {"gc": False, "wharf": {"cacheMaxSize": budget}}}
        srv = self.new_wharf(root, cfg, role="evict", log_level="info")
        tail = gcbench.LogTail(srv.log_path)
        errors, detail = {}, {}
        rate = freed = n = None
        res = t_end = None

        def done(recs):
            return any((r.get("message") == "evicted cached image" and r["usage"] <= budget)
                       or r.get("level") in ("warn", "error") for r in recs)

        self.start(srv, systems.SERVER_CPUS)
        try:
            reads = self._gc_probe_requests(fx, pushed)
            pushes = gcbench.push_lane("bench/push")
            probe = gcbench.Probe(self.work, "evict-probe", srv.port, reads, conns=4,
                                  seconds=p.gc_limit_s + 30, watch_pid=srv.pid,
                                  groups=[(1, pushes)])
            recs, t_end = self._watch(srv, tail, done, probe, p.gc_limit_s)
            time.sleep(2.3)
            res = probe.stop()
            recs += tail.read()
            ev = [r for r in recs if r.get("message") == "evicted cached image"]
            problems = [r for r in recs if r.get("level") in ("warn", "error")]
            n = len(ev)
            freed = sum(r["bytes"] for r in ev)
            span = (gcbench.wall_ms(ev[-1]) - gcbench.wall_ms(ev[0])) / 1000 if n > 1 else 0
            rate = (n - 1) / span if span > 0 else None
            gone = sum(1 for r in fx.repos if not os.path.exists(os.path.join(root, r.name)))
            detail["wharf"] = {"evictions": n, "bytes_freed": freed, "span_s": span,
                               "usage_after": ev[-1]["usage"] if ev else None,
                               "budget": budget, "repositories_removed": gone,
                               "log_problems": problems[:5]}
            if t_end is None:
                errors["wharf"] = "not under the budget within %d s" % p.gc_limit_s
            elif problems:
                errors["wharf"] = "log: %s" % problems[0].get("message")
            elif gone != n:
                errors["wharf"] = "%d evictions logged, %d repositories gone" % (n, gone)
            say("  %d evictions in %.2f s (%s/s), %.2f MiB freed, usage %s <= %d; %d "
                "repositories removed" % (n, span, report._num(rate), freed / MiB,
                                          ev[-1]["usage"] if ev else "?", budget, gone))
        except MeasureError as e:
            errors["wharf"] = str(e)
        finally:
            srv.stop()
        label = "eviction, %s cached images, budget 1/4" % format(len(fx.repos) - len(pushed),
                                                                  ",")
        self.fig("gc", "evict_rate", label, "img/s", {"wharf": rate}, errors=errors,
                 detail=detail, fmt="%.0f")
        self.fig("gc", "evict_count", "  images evicted", "count", {"wharf": n}, better=None,
                 errors=errors, fmt="%.0f")
        self.fig("gc", "evict_bytes", "  bytes freed", "KiB",
                 {"wharf": freed / 1024 if freed is not None else None}, better=None,
                 errors=errors, fmt="%.0f")
        if res is not None and t_end is not None:
            self._probe_figures("eviction", res, t_end, 2.0, dict(errors), "evict_probe",
                                len(reads), len(pushes))

    def phase_gc_meta(self):
        """meta_pulls manifest GETs over meta_manifests manifests: how much
        .wharf/meta.log grows (after the 1 s flush), per pull; with strace
        attached (if it can be), the syscalls on the log and the fsyncs."""
        p = self.plan
        root = self.path("meta-wharf")
        fx = gcbench.gc_root(root, p.meta_manifests, garbage=False, seed=3, prefix="meta/r")
        srv = self.new_wharf(root, {}, role="meta")
        log = os.path.join(root, ".wharf", "meta.log")
        errors, detail = {}, {}
        per_pull = writes = fsyncs = None
        self.start(srv, systems.SERVER_CPUS)
        strace = None
        try:
            time.sleep(1.2)
            size0 = os.path.getsize(log)
            trace = self.path("meta.strace")
            if shutil.which("strace"):
                strace = subprocess.Popen(
                    ["strace", "-f", "-y", "-qq", "-e",
                     "trace=openat,write,pwrite64,writev,fsync,fdatasync", "-o", trace,
                     "-p", str(srv.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL)
                time.sleep(0.5)
                if strace.poll() is not None:
                    self.note("strace could not attach: %s" % strace.stderr.read().decode()[-200:])
                    strace = None
            reqs = [("GET", "/v2/%s/manifests/v1" % r.name, 200, r.manifest_len,
                     {"Accept": gcbench.ACCEPT}) for r in fx.repos]
            probe = gcbench.Probe(self.work, "meta-probe", srv.port, reqs, conns=4,
                                  seconds=p.meta_limit_s, max_requests=p.meta_pulls)
            res = probe.result()
            time.sleep(1.5)       # the flush timer: every second
            size1 = os.path.getsize(log)
            with open(log, "rb") as f:
                f.seek(size0)
                lines = f.read().splitlines()
            pulls = sum(1 for r in res["records"] if r[3])
            per_pull = (size1 - size0) / pulls if pulls else None
            if strace:
                strace.send_signal(signal.SIGINT)
                strace.wait(30)
                strace = None
                calls = Counter()
                with open(trace, errors="replace") as f:
                    for line in f:
                        name = line.split(None, 1)[1].split("(", 1)[0] if " " in line else ""
                        if "meta.log" in line:
                            calls["meta.log " + name] += 1
                        if name in ("fsync", "fdatasync"):
                            calls[name] += 1
                writes = sum(n for k, n in calls.items() if k.startswith("meta.log write"))
                fsyncs = calls["fsync"] + calls["fdatasync"]
                detail["strace"] = dict(calls)
            detail.update({"pulls": pulls, "manifests": len(fx.repos), "bytes": size1 - size0,
                           "lines": len(lines), "lines_kinds": dict(Counter(l[:1].decode()
                                                                            for l in lines)),
                           "seconds": max(r[0] + r[1] for r in res["records"]) -
                           min(r[0] for r in res["records"]) if res["records"] else None})
            if res["errors"] or pulls != p.meta_pulls:
                errors["wharf"] = "%d of %d pulls answered right: %s" % (pulls, p.meta_pulls,
                                                                          res["errors"])
            say("  %d pulls of %d manifests in %.1f s: meta.log +%d bytes, %d lines (%s), "
                "%.2f bytes/pull; syscalls: %s"
                % (pulls, len(fx.repos), detail["seconds"] or 0, size1 - size0, len(lines),
                   detail["lines_kinds"], per_pull or 0, detail.get("strace", "no strace")))
        except (MeasureError, OSError) as e:
            errors["wharf"] = str(e)
        finally:
            if strace:
                strace.send_signal(signal.SIGINT)
                strace.wait(30)
            srv.stop()
        self.fig("gc", "meta_bytes_per_pull",
                 "meta.log per pull, %s GETs / %d images" % (format(p.meta_pulls, ","),
                                                            p.meta_manifests),
                 "B/pull", {"wharf": per_pull}, better="lower", errors=errors, detail=detail,
                 fmt="%.2f")
        if writes is not None:
            self.fig("gc", "meta_writes", "  meta.log write() calls for those pulls", "count",
                     {"wharf": writes}, better="lower", errors=errors, fmt="%.0f")
            self.fig("gc", "meta_fsyncs", "  fsync() calls meanwhile, any file", "count",
                     {"wharf": fsyncs}, better="lower", errors=errors, fmt="%.0f")


    # -------------------------------------------------------------- startup

    def _startups(self, make):
        out = []
        for i in range(self.plan.startup_reps):
            srv = make(i)
            self.servers.append(srv)
            try:
                out.append(srv.start() * 1000)
            finally:
                srv.stop()
        return out

    def phase_startup(self):
        p = self.plan
        empty = {
            "wharf": self._startups(lambda i: self.new_wharf(self.path("start-empty-%d" % i))),
            "distribution": self._startups(lambda i: systems.distribution_server()),
        }
        self.fig("startup", "startup_empty_ms",
                 "startup, empty store (median of %d)" % p.startup_reps, "ms",
                 {k: median(v) for k, v in empty.items()}, better="lower",
                 detail={k: v for k, v in empty.items()})

        n_blobs = p.store_repos * p.store_blobs
        store = self.path("store")
        t0 = time.monotonic()
        repos = fixtures.zot_store(store, p.store_repos, p.store_blobs)
        say("  store: %d blobs in %d repositories, made in %.1fs"
            % (n_blobs, p.store_repos, time.monotonic() - t0))
        repo, digest = repos[len(repos) // 2]
        times, first, rss, errors = [], [], [], {}
        for i in range(p.startup_reps):
            srv = self.new_wharf(store)
            self.servers.append(srv)
            try:
                times.append(srv.start() * 1000)
                reg = load.Registry(srv.hostport, timeout=30)
                t0 = time.monotonic()
                st, h, _ = reg.req("GET", "/v2/%s/manifests/v1" % repo,
                                   headers={"Accept": upstream.MANIFEST_ACCEPT})
                first.append((time.monotonic() - t0) * 1000)
                reg.close()
                if (st, h.get("docker-content-digest")) != (200, digest):
                    errors["wharf"] = "GET manifest: %d %s" % (st, h.get("docker-content-digest"))
                rss.append(srv.rss_kib())
            finally:
                srv.stop()
        say("  startup on the store: %s ms; first manifest GET %s ms"
            % (", ".join("%.1f" % t for t in times), ", ".join("%.1f" % t for t in first)))
        self.fig("startup", "startup_store_ms",
                 "startup, %d blobs / %d repos" % (n_blobs, p.store_repos), "ms",
                 {"wharf": median(times)}, better="lower", target=at_most(50, "50 ms"),
                 errors=errors, detail={"runs_ms": times, "rss_kib": rss})
        self.fig("startup", "startup_store_first_get_ms", "  then first manifest GET", "ms",
                 {"wharf": median(first)}, better="lower", errors=errors,
                 detail={"runs_ms": first})

    # -------------------------------------------------------------- the end

    def peak_figure(self):
        peaks = {s: max(h for role, h in systems.PEAKS[s]) / 1024
                 for s in report.SYSTEMS if systems.PEAKS.get(s)}
        detail = {s: ["%s %.1f MiB" % (role, h / 1024) for role, h in systems.PEAKS[s]]
                  for s in systems.PEAKS}
        self.fig("memory", "rss_peak", "peak RSS (VmHWM), any process of the run", "MiB", peaks,
                 better="lower", target=at_most(32, "32 MiB"), detail=detail, fmt="%.1f")
        # The rows in the order a reader wants them: memory after the rest.
        order = ("warm", "push", "tls", "cold", "memory", "startup", "gc", "scaleout")
        self.figures.sort(key=lambda f: order.index(f.section))

    def log_problems(self):
        """Warnings and errors in the servers' logs: {server: Counter(message)}."""
        out = {}
        for srv in self.servers:
            c = Counter()
            for line in srv.log().splitlines():
                if srv.system == "wharf":
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        c["(not JSON) " + line[:100]] += 1
                        continue
                    if rec.get("level") in ("warn", "error"):
                        c["%s: %s" % (rec["level"], rec.get("message"))] += 1
                elif srv.system == "distribution":
                    # Not shown: "blob unknown" (the push client's HEAD before each
                    # upload), resets and broken pipes (the slow readers hanging up).
                    if "level=error" in line and not any(
                            x in line for x in ('err.code="blob unknown"', "reset by peer",
                                                "broken pipe")):
                        c[line.split("msg=", 1)[-1][:100]] += 1
                elif any(x in line for x in ("[error]", "[crit]", "[alert]", "[emerg]")):
                    c[line.split("] ", 1)[-1][:100]] += 1
            if c:
                out["%s %s :%d" % (srv.system, srv.role, srv.port)] = c
        return out

    def machine(self):
        def cmd(*a):
            try:
                p = subprocess.run(a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=10)
                return p.stdout.decode().strip().splitlines()[0]
            except (OSError, subprocess.TimeoutExpired, IndexError):
                return None
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                    if l.startswith("model name")), None)
        return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": os.uname().release,
                "server_cpus": sorted(systems.SERVER_CPUS or []),
                "client_cpus": sorted(systems.CLIENT_CPUS or []),
                "wharf": cmd(self.bin, "--version"), "wharf_binary": self.bin_source,
                "wharf_sha256": upstream.sha256_file(self.bin),
                "wharf_commit": cmd("git", "-C", REPO, "describe", "--always", "--dirty"),
                "distribution": cmd(upstream.REGISTRY_BIN, "--version"),
                "nginx": cmd("nginx", "-v"), "wrk": cmd("wrk", "--version"),
                "skopeo": cmd("skopeo", "--version")}

    def run(self):
        t0 = time.monotonic()
        say("wharf bench (%s mode), work dir %s" % (self.plan.mode, self.work))
        only = set(self.args.phases.split(",")) if self.args.phases else None

        def want(name):
            return only is None or name in only

        self.busy = {"before": machine_busy()}
        if self.busy["before"] > 0.15:
            self.note("the machine was %.0f%% busy before the run (other processes): "
                      "expect noisy figures" % (100 * self.busy["before"]))
        try:
            if any(want(x) for x in ("warm", "push", "memory", "tls", "cold", "slow", "sick")):
                self.phase("prepare", self.prepare)
                if "prepare" in self.broken:
                    return 1
            if want("warm") or want("push") or want("memory"):
                self.phase("local systems, idle memory", self.phase_local)
                self.phase("seed", self.phase_seed)
                if want("warm"):
                    self.phase("warm: manifests", self.phase_warm_manifests)
                    self.phase("warm: authenticated manifest", self.phase_warm_auth)
                    self.phase("warm: blob", self.phase_warm_blob)
                    self.phase("warm: skopeo pull", self.phase_warm_pull)
                if want("push"):
                    self.phase("push", self.phase_push)
                    self.phase("sha256", self.phase_sha256)
                self.phase("local systems: end", self.phase_local_end)
            if want("tls"):
                self.phase("tls", self.phase_tls)
            if want("cold") or want("slow") or want("sick"):
                if want("cold"):
                    self.phase("cold", self.phase_cold)
                else:
                    self.up = self.start(systems.distribution_server(role="upstream"))
                    load.push_fixture(self.up.hostport, self.cold)
                if want("slow"):
                    self.phase("slow readers", self.phase_slow)
                if want("sick"):
                    self.phase("sick upstream", self.phase_sick)
                self.phase("cold: end", self.phase_cold_end)
            if want("startup"):
                self.phase("startup", self.phase_startup)
            if want("gc"):
                self.phase("gc: sweep", self.phase_gc_sweep)
                self.phase("gc: eviction", self.phase_gc_evict)
                self.phase("gc: metadata per pull", self.phase_gc_meta)
            if want("scaleout"):
                self.phase("scaleout", lambda: scaleout.phase(self, CpuUsage))
            self.peak_figure()
        finally:
            for srv in self.servers:
                srv.stop()

        self.busy["after"] = machine_busy()
        if self.busy["after"] > 0.15:
            self.note("the machine was %.0f%% busy after the run (other processes): "
                      "expect noisy figures" % (100 * self.busy["after"]))
        problems = self.log_problems()
        elapsed = time.monotonic() - t0
        say("")
        say("Wharf bench, %s mode, %.0f s; %s; servers on CPU %s, load tools on CPU %s; "
            "nginx: worker_processes 1 (Wharf is single-threaded)"
            % (self.plan.mode, elapsed, self.machine_info["cpu"],
               self.machine_info["server_cpus"] or "any", self.machine_info["client_cpus"]
               or "any"))
        say("Ratios are Wharf / the other system. Load rows: the best of %d round(s) of %d s, "
            "systems taking turns, a round with any failed request never counts (the row is "
            "ERR); skopeo, push, startup: medians. Cold rows: Wharf pull-through vs "
            "Distribution proxy, upstream through nginx limit_rate %g MB/s."
            % (self.plan.rounds, self.plan.seconds, self.plan.throttle / 1e6))
        for line in self.setup_lines():
            say("  " + line)
        say(report.table(self.figures))
        errs = report.errors_text(self.figures)
        if errs:
            say("\nerrors:\n" + errs)
        if self.notes:
            say("\nnotes:\n" + "\n".join("- " + n for n in self.notes))
        if problems:
            say("\nwarnings/errors in server logs:")
            for srv, c in problems.items():
                say("  %s: %s" % (srv, "; ".join("%dx %s" % (n, m) for m, n in c.most_common(6))))
        if self.broken:
            say("\nbench phases that broke: %s" % ", ".join(self.broken))
        verdict, wharf_failed = report.verdict(self.figures, self.broken)
        say("\n" + verdict)

        out = {"mode": self.plan.mode, "seconds": round(elapsed, 1),
               "machine": dict(self.machine_info, busy=self.busy), "plan": vars(self.plan),
               "setup": self.setup_lines(), "verdict": verdict,
               "figures": [f.to_json() for f in self.figures], "notes": self.notes,
               "log_problems": {k: dict(v) for k, v in problems.items()},
               "broken_phases": self.broken}
        os.makedirs(os.path.dirname(os.path.abspath(self.args.json)), exist_ok=True)
        with open(self.args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
        say("\nJSON: %s" % self.args.json)
        return 1 if wharf_failed else 0

    def setup_lines(self):
        """How each system runs, one line each (printed above the table)."""
        m = self.machine_info
        built = ("built from this worktree at %s" % m["wharf_commit"] if self.args.built
                 else "given with --bin (this worktree is at %s)" % m["wharf_commit"])
        return [
            "Wharf: %s (%s..., %s), %s; log level warn, maxConnections 4096"
            % (m["wharf_binary"], m["wharf_sha256"][:19], m["wharf"], built),
            "Distribution: %s; %s" % (m["distribution"], systems.DISTRIBUTION_SETUP),
            "nginx: %s; static files at the registry paths, worker_processes 1, sendfile, "
            "access log off" % (m["nginx"] or "").replace("nginx version: ", ""),
            "Load: wrk -t1 with a Lua check of every answer (manifest GET), ab -k (HEAD), "
            "getload.py x%d process(es) with 1 MiB reads (blob GET)"
            % len(systems.CLIENT_CPUS or [None])]


def build(build_dir):
    say("== build (Release) into %s" % build_dir)
    os.makedirs(build_dir, exist_ok=True)
    log = os.path.join(build_dir, "bench-build.log")
    with open(log, "wb") as f:
        for cmd in (["cmake", "-S", REPO, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release"],
                    ["cmake", "--build", build_dir, "-j2"],
                    ["cmake", "--build", build_dir, "-j2", "--target", "bench_sha256"]):
            if subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=900) != 0:
                with open(log, "rb") as g:
                    say(g.read().decode("utf-8", "replace")[-4000:])
                raise SystemExit("build failed: %s" % " ".join(cmd))
    return os.path.join(build_dir, "wharf")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes and 1 s load runs (a smoke run, well under a minute)")
    ap.add_argument("--bin", help="the wharf binary to measure (default: build one in "
                    "build-release/)")
    ap.add_argument("--json", help="where to write the results (default "
                    "build-release/bench.json)")
    ap.add_argument("--phases", help="comma-separated subset of: warm,push,memory,tls,cold,slow,"
                    "sick,startup,gc,scaleout (default: all)")
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin servers and load tools to separate CPUs")
    ap.add_argument("--workdir", help="work directory (default: a new one in $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    build_dir = os.path.join(REPO, "build-release")
    args.built = not args.bin
    if not args.bin:
        args.bin = build(build_dir)
    args.json = args.json or os.path.join(build_dir, "bench.json")
    systems.set_pinning(not args.no_pin)

    # 2000 idle connections need descriptors; the servers inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    bench = Bench(args)
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < bench.plan.idle_conns + 256:
        raise SystemExit("RLIMIT_NOFILE too low for %d idle connections" % bench.plan.idle_conns)
    bench.machine_info = bench.machine()
    try:
        rc = bench.run()
    finally:
        if not args.keep:
            for srv in bench.servers:
                srv.cleanup()
            if not args.workdir:
                shutil.rmtree(bench.work, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
