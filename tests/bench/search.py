"""The search on many repositories: how long the index takes to load, what
it holds, and how long zui's queries take. Not a test (nothing here passes
or fails); run it by hand:

    python3 tests/bench/search.py [--bin build/wharf] [--repos 1000] [--tags 5]
                                  [--layers 6] [--runs 200]

The root is written straight to disk in Zot's layout (no pushes: quicker,
and it is the walk at start that is measured), each repository with --tags
single-platform images of --layers small layers and a description. Then a
Wharf with extensions.search starts on it, and each query runs --runs times
over one keep-alive connection; the table gives the median and the 99th
percentile, in milliseconds, of the whole request as the client sees it.
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import Wharf, rss_kib  # noqa: E402

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def write_blob(repo_dir, data):
    d = hashlib.sha256(data).hexdigest()
    path = os.path.join(repo_dir, "blobs", "sha256", d)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    return "sha256:" + d


def make_root(root, repos, tags, layers):
    for r in range(repos):
        name = "team%d/service%d" % (r % 50, r)
        rd = os.path.join(root, name)
        os.makedirs(os.path.join(rd, "blobs", "sha256"))
        with open(os.path.join(rd, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        entries = []
        for t in range(tags):
            ls = [("layer %d %d %d" % (r, t, k)).encode() * 4 for k in range(layers)]
            cfg = json.dumps({"architecture": "amd64" if t % 2 else "arm64", "os": "linux",
                              "created": "2024-%02d-01T00:00:00Z" % (t % 12 + 1),
                              "config": {"Labels": {"org.opencontainers.image.vendor": "v%d" % r}},
                              "rootfs": {"type": "layers", "diff_ids": []}}).encode()
            m = json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                            "config": {"mediaType": MT_CONFIG, "digest": write_blob(rd, cfg),
                                       "size": len(cfg)},
                            "layers": [{"mediaType": MT_LAYER, "digest": write_blob(rd, l),
                                        "size": len(l)} for l in ls],
                            "annotations": {"org.opencontainers.image.description":
                                            "service %d, build %d" % (r, t)}}).encode()
            entries.append({"mediaType": MT_MANIFEST, "digest": write_blob(rd, m),
                            "size": len(m),
                            "annotations": {"org.opencontainers.image.ref.name": "v1.%d" % t}})
        with open(os.path.join(rd, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries}, f)


ROW1 = ("{GlobalSearch(query:\"%s\", requestedPage: {limit:10 offset:0 sortBy:%s}) {Page "
        "{TotalCount ItemCount} Repos {Name LastUpdated Size Platforms { Os Arch } IsStarred "
        "IsBookmarked NewestImage { Tag Vulnerabilities {MaxSeverity Count} Description IsSigned "
        "SignatureInfo { Tool IsTrusted Author } Licenses Vendor Labels } StarCount "
        "DownloadCount}}}")
ROW2 = "{GlobalSearch(query:\"%s\", requestedPage: {limit:9 offset:0 sortBy:RELEVANCE}) {Images {RepoName Tag}}}"
ROW3 = ("{ExpandedRepoInfo(repo:\"%s\"){Images {Manifests {Digest Platform {Os Arch} Size} "
        "Vulnerabilities {MaxSeverity Count} Tag LastUpdated Vendor IsDeletable} Summary {Name "
        "LastUpdated Size Platforms {Os Arch} Vendors IsStarred IsBookmarked NewestImage "
        "{RepoName IsSigned SignatureInfo { Tool IsTrusted Author } Vulnerabilities "
        "{MaxSeverity Count} Manifests {Digest} Tag Vendor Title Documentation DownloadCount "
        "Source Description Licenses}}}}")
ROW4 = ("{Image(image: \"%s\"){RepoName IsSigned Tag TaggedTimestamp ArtifactType Manifests "
        "{ArtifactType Layers {Size Digest} History {Layer {Size Digest} HistoryDescription "
        "{CreatedBy EmptyLayer}} Digest ConfigDigest LastUpdated Size Platform {Os Arch}} Vendor "
        "Licenses}}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.environ.get("WHARF_BIN") or "build/wharf")
    ap.add_argument("--repos", type=int, default=1000)
    ap.add_argument("--tags", type=int, default=5)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    os.environ["WHARF_BIN"] = os.path.abspath(a.bin)
    import harness
    harness.WHARF_BIN = os.environ["WHARF_BIN"]
    tmp = tempfile.mkdtemp(prefix="wharf-bench-search-")
    try:
        root = os.path.join(tmp, "data")
        t0 = time.monotonic()
        make_root(root, a.repos, a.tags, a.layers)
        print("root: %d repositories x %d tags x %d layers written in %.1f s" %
              (a.repos, a.tags, a.layers, time.monotonic() - t0))
        with Wharf({"extensions": {"search": {}}, "log": {"level": "info"}}, root=root) as w:
            rss_idle = rss_kib(w.proc.pid)
            conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=60)
            queries = [
                ("row 1, name search, RELEVANCE", ROW1 % ("service1", "RELEVANCE")),
                ("row 1, all, DOWNLOADS", ROW1 % ("", "DOWNLOADS")),
                ("row 1, all, UPDATE_TIME", ROW1 % ("", "UPDATE_TIME")),
                ("row 2, repo:tag", ROW2 % "team1/service1:v1"),
                ("row 2, :tag everywhere", ROW2 % ":v1.3"),
                ("digest prefix", ROW2 % "sha256:0a"),
                ("row 3, ExpandedRepoInfo", ROW3 % "team7/service7"),
                ("row 4, Image", ROW4 % "team7/service7:v1.0"),
            ]
            print("%-32s %9s %9s %9s" % ("query", "bytes", "p50 ms", "p99 ms"))
            for label, q in queries:
                path = "/v2/_zot/ext/search?" + urllib.parse.urlencode({"query": q})
                times = []
                size = 0
                for _ in range(a.runs):
                    t = time.perf_counter()
                    conn.request("GET", path)
                    r = conn.getresponse()
                    body = r.read()
                    times.append((time.perf_counter() - t) * 1000)
                    if r.status != 200 or b'"errors"' in body:
                        sys.exit("%s: %d %s" % (label, r.status, body[:300]))
                    size = len(body)
                times.sort()
                print("%-32s %9d %9.2f %9.2f" % (label, size, statistics.median(times),
                                                 times[int(len(times) * 0.99) - 1]))
            loaded = [r for r in w.log_records() if r.get("message") == "search index loaded"]
            if loaded:
                l = loaded[0]
                print("index: %d repositories, %d tags, %d manifests, %d bytes (%.0f per "
                      "repository), loaded in %d ms" %
                      (l["repositories"], l["tags"], l["manifests"], l["bytes"],
                       l["bytes"] / max(l["repositories"], 1), l["duration_ms"]))
            print("resident: %d KiB after start, %d KiB after the queries" %
                  (rss_idle, rss_kib(w.proc.pid)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
