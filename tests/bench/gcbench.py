"""The gc phase's fixtures and tools (bench.py's phase_gc uses them):

    gc_root(root, repos, ...)     a Wharf root written on disk, not through
                                  HTTP: the Zot layout with dedupe's shared
                                  copies, tagged images, untagged old
                                  manifests and orphan blobs, aged
    dist_root(root, fx)           the same content in Distribution's layout
    meta_line(kind, ms, repo, d)  a line of .wharf/meta.log
    probe(...)                    latprobe.py in its own process
    LogTail                       the new JSON records of a Wharf log
    latency_stats(records, ...)   p50, p99, max of the requests in a window
"""

import calendar
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import images
import systems

HERE = os.path.dirname(os.path.abspath(__file__))
LATPROBE = os.path.join(HERE, "latprobe.py")
OLD_S = 2 * 3600            # the garbage's age: gcDelay is 1h
ACCEPT = images.MT_MANIFEST + ", " + images.MT_INDEX


def _j(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Repo:
    """One repository of the fixture: its tagged image (kept), and what a
    sweep should remove."""

    def __init__(self, name):
        self.name = name
        self.digest = None          # the tagged manifest ("v1")
        self.manifest_len = 0
        self.small = None           # (digest, size): a layer of the tagged image
        self.kept = []              # digests the sweep must leave (manifest included)
        self.garbage = []           # digests it must remove
        self.untagged = None        # the untagged old manifest's digest
        self.media = {}             # digest -> media type (manifests)


class GcFixture:
    def __init__(self, root):
        self.root = root
        self.repos = []
        self.data = {}              # digest -> bytes of every distinct blob
        self.links = 0              # repository files (hard links)
        self.garbage_links = 0
        self.seconds = 0.0

    @property
    def distinct(self):
        return len(self.data)

    @property
    def bytes(self):
        """What Wharf's usage counts: each distinct blob once."""
        return sum(len(b) for b in self.data.values())

    def garbage_distinct(self):
        g = set()
        for r in self.repos:
            g.update(r.garbage)
        return len(g)


def gc_root(root, repos, garbage=True, shared_pool=50, unique_layers=2, orphans=2,
            seed=1, prefix="gc/r", old_s=OLD_S):
    """A root of `repos` repositories, as a Wharf with dedupe leaves it: each
    blob once in <root>/.wharf/blobs/sha256/<hex>, hard-linked into
    <root>/<repo>/blobs/sha256/<hex> of each repository that holds it, and
    <repo>/{oci-layout,index.json}. Each repository:
      - "v1": a manifest, its config, `unique_layers` layers of its own and
        one of `shared_pool` layers shared across repositories (5 files);
      - with garbage: an untagged manifest (in index.json, no tag) with its
        own config and layer (3 files), and `orphans` blobs nothing
        references (2): half of the repository's 10 files are collectable.
    Blobs are bytes to a few KiB (this is about metadata work, not I/O
    bandwidth). Every file is aged old_s back, so with gcDelay 1h the sweep
    removes all the garbage and nothing else. Returns a GcFixture."""
    t0 = time.monotonic()
    rng = random.Random(seed)
    fx = GcFixture(root)
    shared = os.path.join(root, ".wharf", "blobs", "sha256")
    os.makedirs(shared, exist_ok=True)
    pool = []
    for k in range(shared_pool):
        data = b"shared layer %d\n" % k + rng.randbytes(rng.randint(512, 4096))
        pool.append(("sha256:" + hashlib.sha256(data).hexdigest(), data))

    def put(repo_dir, digest, data):
        hexd = digest[7:]
        src = os.path.join(shared, hexd)
        if digest not in fx.data:
            fx.data[digest] = data
            with open(src, "wb") as f:
                f.write(data)
        os.link(src, os.path.join(repo_dir, "blobs", "sha256", hexd))
        fx.links += 1

    def blob(data, media_type=images.MT_LAYER_TAR):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        return d, data, {"mediaType": media_type, "digest": d, "size": len(data)}

    def image(r, label, layers):
        cfg = _j({"architecture": "amd64", "os": "linux", "created": images.CREATED,
                  "config": {"Labels": {"bench": label}},
                  "rootfs": {"type": "layers", "diff_ids": [l[0] for l in layers]}})
        c = blob(cfg, images.MT_CONFIG)
        man = _j({"schemaVersion": 2, "mediaType": images.MT_MANIFEST, "config": c[2],
                  "layers": [l[2] for l in layers]})
        m = blob(man, images.MT_MANIFEST)
        return m, [c] + layers

    for i in range(repos):
        r = Repo("%s%04d" % (prefix, i))
        d = os.path.join(root, r.name)
        os.makedirs(os.path.join(d, "blobs", "sha256"))
        with open(os.path.join(d, "oci-layout"), "wb") as f:
            f.write(b'{"imageLayoutVersion":"1.0.0"}')
        layers = [blob(b"%s layer %d\n" % (r.name.encode(), k) +
                       rng.randbytes(rng.randint(256, 4096))) for k in range(unique_layers)]
        sd, sdata = pool[i % shared_pool]
        layers.append((sd, sdata, {"mediaType": images.MT_LAYER_TAR, "digest": sd,
                                   "size": len(sdata)}))
        m, refs = image(r, r.name + " v1", layers)
        r.digest, r.manifest_len = m[0], len(m[1])
        r.small = (layers[0][0], len(layers[0][1]))
        entries = [dict(m[2], annotations={images.REF_NAME: "v1"})]
        for b in [m] + refs:
            put(d, b[0], b[1])
            r.kept.append(b[0])
        if garbage:
            layer = blob(b"%s old layer\n" % r.name.encode() +
                         rng.randbytes(rng.randint(256, 4096)))
            um, urefs = image(r, r.name + " old", [layer])
            r.untagged = um[0]
            entries.append(um[2])
            trash = [um] + urefs + [blob(b"%s orphan %d\n" % (r.name.encode(), k) +
                                         rng.randbytes(rng.randint(64, 2048)))
                                    for k in range(orphans)]
            for b in trash:
                put(d, b[0], b[1])
                r.garbage.append(b[0])
                fx.garbage_links += 1
        with open(os.path.join(d, "index.json"), "wb") as f:
            f.write(_j({"schemaVersion": 2, "mediaType": images.MT_INDEX, "manifests": entries}))
        fx.repos.append(r)
    t = time.time() - old_s
    for digest in fx.data:
        os.utime(os.path.join(shared, digest[7:]), (t, t))
    fx.seconds = time.monotonic() - t0
    return fx


def dist_root(root, fx):
    """fx's content in Distribution's filesystem layout (storage driver
    "filesystem", rootdirectory root): blobs/sha256/<hh>/<hex>/data once
    each; per repository a _layers link for every blob it holds, a
    revision link for each manifest, and the tag "v1" (current link and
    index). The untagged manifest has a revision and no tag, the orphans a
    _layers link and no manifest: `garbage-collect --delete-untagged`
    removes the same 5 blobs per repository as Wharf's sweep."""
    v2 = os.path.join(root, "docker", "registry", "v2")

    def link(path, digest):
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "link"), "w") as f:
            f.write(digest)

    for digest, data in fx.data.items():
        h = digest[7:]
        d = os.path.join(v2, "blobs", "sha256", h[:2], h)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "data"), "wb") as f:
            f.write(data)
    for r in fx.repos:
        rd = os.path.join(v2, "repositories", r.name)
        manifests = [r.digest] + ([r.untagged] if r.untagged else [])
        for digest in r.kept + r.garbage:
            if digest in manifests:
                link(os.path.join(rd, "_manifests", "revisions", "sha256", digest[7:]), digest)
            else:
                link(os.path.join(rd, "_layers", "sha256", digest[7:]), digest)
        link(os.path.join(rd, "_manifests", "tags", "v1", "current"), r.digest)
        link(os.path.join(rd, "_manifests", "tags", "v1", "index", "sha256", r.digest[7:]),
             r.digest)


def push_lane(repo):
    """Requests that push to repo, again and again, each taking the store's
    lock: a config and a layer (monolithic POST ?digest=, 201 even when the
    repository holds the blob already), then the manifest to the tag "v1"."""
    layer = b"bench push layer\n" * 64
    cfg = _j({"architecture": "amd64", "os": "linux", "created": images.CREATED,
              "rootfs": {"type": "layers", "diff_ids": [images.sha256_digest(layer)]}})
    man = _j({"schemaVersion": 2, "mediaType": images.MT_MANIFEST,
              "config": {"mediaType": images.MT_CONFIG, "digest": images.sha256_digest(cfg),
                         "size": len(cfg)},
              "layers": [{"mediaType": images.MT_LAYER_TAR,
                          "digest": images.sha256_digest(layer), "size": len(layer)}]})
    out = []
    for data in (cfg, layer):
        out.append(("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, images.sha256_digest(data)),
                    201, None, {"Content-Type": "application/octet-stream"}, data.decode()))
    out.append(("PUT", "/v2/%s/manifests/v1" % repo, 201, None,
                {"Content-Type": images.MT_MANIFEST}, man.decode()))
    return out


def count_files(root, fx):
    """(repository files left, shared copies of fx's blobs left) on disk:
    what the probe's pushes added is not counted."""
    links = 0
    for r in fx.repos:
        try:
            links += len(os.listdir(os.path.join(root, r.name, "blobs", "sha256")))
        except FileNotFoundError:
            pass
    try:
        names = set(os.listdir(os.path.join(root, ".wharf", "blobs", "sha256")))
    except FileNotFoundError:
        names = set()
    return links, sum(1 for d in fx.data if d[7:] in names)


def dist_blobs_left(root):
    d = os.path.join(root, "docker", "registry", "v2", "blobs", "sha256")
    return sum(len(os.listdir(os.path.join(d, hh))) for hh in os.listdir(d))


def meta_line(kind, ms, repo, digest):
    """A line of .wharf/meta.log (include/wharf/store/meta.h): the check is
    FNV-1a 32 of the text before it."""
    text = "%s %d %s %s" % (kind, ms, repo, digest)
    h = 2166136261
    for byte in text.encode():
        h = ((h ^ byte) * 16777619) & 0xFFFFFFFF
    return "%s %08x\n" % (text, h)


# ------------------------------------------------------------------ the probe

class Probe:
    """latprobe.py in its own process on the client CPUs: requests is a
    list of (method, path, want_status, want_length or None, headers[,
    body]) sent on `conns` connections; groups: more (conns, requests),
    each on connections of its own."""

    def __init__(self, work, name, port, requests, conns=4, seconds=120, max_requests=0,
                 watch_pid=None, groups=()):
        self.stop_file = os.path.join(work, name + ".stop")
        if os.path.exists(self.stop_file):
            os.unlink(self.stop_file)
        self.spec = os.path.join(work, name + ".json")
        with open(self.spec, "w") as f:
            json.dump({"port": port, "conns": conns, "seconds": seconds,
                       "max_requests": max_requests, "stop_file": self.stop_file,
                       "watch_pid": watch_pid,
                       "groups": [{"conns": n, "requests": r} for n, r in groups],
                       "requests": requests}, f)
        self.seconds = seconds
        with systems.on(systems.CLIENT_CPUS):
            self.proc = subprocess.Popen([sys.executable, LATPROBE, self.spec],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         stdin=subprocess.DEVNULL)
        self.t0 = time.monotonic()

    def stop(self):
        """Ask it to stop, wait for its result (bounded)."""
        with open(self.stop_file, "w"):
            pass
        return self.result()

    def result(self):
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.communicate()
            raise RuntimeError("latprobe: no result")
        if self.proc.returncode != 0:
            raise RuntimeError("latprobe failed (%d): %s" % (self.proc.returncode,
                                                             err.decode()[-500:]))
        return json.loads(out)


def latency_stats(res, t_from=None, t_to=None, which=None):
    """Of the requests that started in [t_from, t_to) (CLOCK_MONOTONIC
    seconds; None: open) and, if given, whose request index is in `which`:
    p50, p99, max of the wire latency (ms: to the
    kernel's receive time of the answer, latprobe.py), the max of the client
    latency too, and counts. Requests marked client_delayed (the probe lost
    its CPU around the send) are left out and counted."""
    lat, client, bad, delayed = [], [], 0, 0
    for start, secs, i, ok, wire, late in res["records"]:
        if (t_from is not None and start < t_from) or (t_to is not None and start >= t_to):
            continue
        if which is not None and i not in which:
            continue
        if late:
            delayed += 1
            continue
        lat.append(wire * 1000)
        client.append(secs * 1000)
        bad += not ok
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None

    return {"n": len(lat), "failed": bad, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": lat[-1] if lat else None,
            "over_50ms": sum(1 for x in lat if x > 50),
            "client_max_ms": max(client) if client else None, "client_delayed": delayed}


CAUSES = ("cpu taken by other processes", "cpu taken by the server's own threads",
          "loop busy", "loop blocked or idle", "unknown")


def attribute(res, start, wire):
    """Why an answer took `wire` s from `start` (CLOCK_MONOTONIC): from the
    schedstat samples around it (latprobe.py), what the server's loop thread
    did meanwhile. Returns (cause, {"loop_run_ms", "loop_wait_ms",
    "others_run_ms", "window_ms"}). The loop waited for a CPU most of the
    time: taken by the server's own threads if they ran at least half as
    long as it waited (on a CPU they share: the gc's jobs), else by other
    processes; the loop ran most of the time: loop busy; else it slept
    (a blocking call, or no request reached it)."""
    smp = res.get("samples") or []
    # Values read for sure before the request and after its answer (a
    # sample's values were read between its two times). The wait for a CPU
    # is counted when the thread gets one: after the answer, it is in.
    a = next((x for x in reversed(smp) if x[1] <= start), None)
    b = next((x for x in smp if x[0] >= start + wire), None)
    if not a or not b:
        return "unknown", {}
    run, wait, orun = ((b[k] - a[k]) / 1e6 for k in (2, 3, 4))
    info = {"loop_run_ms": round(run, 1), "loop_wait_ms": round(wait, 1),
            "others_run_ms": round(orun, 1), "window_ms": round((b[1] - a[0]) * 1000, 1)}
    ms = wire * 1000
    if wait >= 0.5 * ms:
        return CAUSES[1] if orun >= 0.5 * wait else CAUSES[0], info
    if run >= 0.5 * ms:
        return CAUSES[2], info
    return CAUSES[3], info


def stalls(res, t_from=None, t_to=None, over_ms=50, which=None):
    """The requests in [t_from, t_to) whose wire latency was over over_ms,
    by cause: ({cause: count}, [(start, wire ms, cause, info)] worst first).
    The four connections of the probe see one stall four times: each
    request counts."""
    by, rows = {}, []
    for start, _, i, _, wire, late in res["records"]:
        if late or wire * 1000 <= over_ms or (which is not None and i not in which):
            continue
        if (t_from is not None and start < t_from) or (t_to is not None and start >= t_to):
            continue
        cause, info = attribute(res, start, wire)
        by[cause] = by.get(cause, 0) + 1
        rows.append((start, round(wire * 1000, 1), cause, info))
    rows.sort(key=lambda r: -r[1])
    return by, rows


def slowest(res, k=5, t_ref=0.0, which=None):
    """The k slowest requests by wire latency: [(start - t_ref s, wire ms,
    client ms, request index)]."""
    rows = [[round(s - t_ref, 3), round(wire * 1000, 1), round(secs * 1000, 1), i]
            for s, secs, i, _, wire, late in res["records"]
            if not late and (which is None or i in which)]
    return sorted(rows, key=lambda x: -x[1])[:k]


# ------------------------------------------------------------------ the log

class LogTail:
    """The JSON records appended to a Wharf log since the last read."""

    def __init__(self, path):
        self.path = path
        self.off = 0
        self.rest = b""

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.off)
                data = f.read()
        except FileNotFoundError:
            return []
        self.off += len(data)
        data = self.rest + data
        lines = data.split(b"\n")
        self.rest = lines.pop()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


def wall_ms(rec):
    """A log record's time, ms since the epoch."""
    t = rec["time"]          # 2026-01-01T00:00:00.123Z
    return calendar.timegm(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(t[20:23])
