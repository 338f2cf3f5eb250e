"""extensions.search against the real binary: Zot's GraphQL search at
/v2/_zot/ext/search as zui calls it (zot-reference.md §8 rows 1-4), its
targets, paging, sorting and filters, answers that hold only the fields asked
for, access control, the index following pushes and deletes and rebuilt at
start, and the discover and mgmt endpoints (§7, §9).

Images are made here, deterministic: configs with a creation time, a
platform and labels, manifests with annotations, an index of two platforms,
a referrer. Sizes are checked against the bytes pushed."""

import hashlib
import json
import os
import shutil
import tempfile
import time
import unittest
import urllib.parse

from harness import Wharf, have
from test_auth import basic, write_htpasswd

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SEARCH = "/v2/_zot/ext/search"
ZERO_TIME = "0001-01-01T00:00:00Z"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def enc(doc):
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def rfc3339(s):
    """A Time as a number (seconds since the epoch), to compare."""
    import datetime
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def selection(text):
    """A GraphQL selection ("Name Platforms{Os Arch}") as [(key, sub or None)]."""
    toks = text.replace("{", " { ").replace("}", " } ").split()
    pos = 0

    def parse():
        nonlocal pos
        out = []
        while pos < len(toks) and toks[pos] != "}":
            name = toks[pos]
            pos += 1
            sub = None
            if pos < len(toks) and toks[pos] == "{":
                pos += 1
                sub = parse()
                pos += 1  # }
            out.append((name, sub))
        return out

    return parse()


class Image:
    """What was pushed: digests and sizes, to check the answers against."""

    def __init__(self, repo, tag, manifest, media_type, config=b"", layers=(), children=()):
        self.repo, self.tag = repo, tag
        self.manifest = manifest
        self.digest = sha256(manifest)
        self.media_type = media_type
        self.config = config
        self.config_digest = sha256(config) if config else None
        self.layers = list(layers)
        self.children = list(children)

    @property
    def size(self):
        """Zot's ImageSummary.Size: manifest, config and layers; an index, its
        children's."""
        if self.children:
            return sum(c.size for c in self.children)
        return len(self.manifest) + len(self.config) + sum(len(l) for l in self.layers)


class Pusher:
    def __init__(self, test, w, auth=None):
        self.t, self.w = test, w
        self.headers = {"Authorization": auth} if auth else {}

    def blob(self, repo, data):
        d = sha256(data)
        st, _, b = self.w.request("POST", "/v2/%s/blobs/uploads/?digest=%s" % (repo, d), data,
                                  dict(self.headers, **{"Content-Type": "application/octet-stream"}))
        self.t.assertEqual(st, 201, b)
        return d

    def manifest(self, repo, ref, data, media_type):
        st, _, b = self.w.request("PUT", "/v2/%s/manifests/%s" % (repo, ref), data,
                                  dict(self.headers, **{"Content-Type": media_type}))
        self.t.assertEqual(st, 201, b)
        return sha256(data)

    def image(self, repo, tag, layers, os_="linux", arch="amd64", variant=None, created=None,
              annotations=None, labels=None, subject=None, artifact_type=None, config=None):
        """An image manifest; tag None: pushed by digest."""
        if config is None:
            cfg = {"architecture": arch, "os": os_,
                   "rootfs": {"type": "layers", "diff_ids": [sha256(l) for l in layers]},
                   "config": {"Labels": labels or {}},
                   "history": [{"created": created or "2020-01-01T00:00:00Z",
                                "created_by": "step %d" % i} for i in range(len(layers))] +
                   [{"created_by": "CMD [\"sh\"]", "empty_layer": True}]}
            if variant:
                cfg["variant"] = variant
            if created:
                cfg["created"] = created
            config = enc(cfg)
            config_type = MT_CONFIG
        else:
            config_type = "application/vnd.oci.empty.v1+json"
        self.blob(repo, config)
        for l in layers:
            self.blob(repo, l)
        m = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
             "config": {"mediaType": config_type, "digest": sha256(config), "size": len(config)},
             "layers": [{"mediaType": MT_LAYER, "digest": sha256(l), "size": len(l)}
                        for l in layers]}
        if annotations:
            m["annotations"] = annotations
        if subject:
            m["subject"] = {"mediaType": subject.media_type, "digest": subject.digest,
                            "size": len(subject.manifest)}
        if artifact_type:
            m["artifactType"] = artifact_type
        data = enc(m)
        self.manifest(repo, tag or sha256(data), data, MT_MANIFEST)
        return Image(repo, tag, data, MT_MANIFEST, config, layers)

    def index(self, repo, tag, children, platforms, annotations=None):
        m = {"schemaVersion": 2, "mediaType": MT_INDEX,
             "manifests": [{"mediaType": MT_MANIFEST, "digest": c.digest,
                            "size": len(c.manifest), "platform": p}
                           for c, p in zip(children, platforms)]}
        if annotations:
            m["annotations"] = annotations
        data = enc(m)
        self.manifest(repo, tag, data, MT_INDEX)
        return Image(repo, tag, data, MT_INDEX, children=children)


def layer(name):
    return ("layer %s " % name).encode() * 9


class SearchClient:
    """GraphQL over GET (zui's way) or POST."""

    def __init__(self, test, w):
        self.t, self.w = test, w

    def get(self, query, headers=None, variables=None, op=None):
        params = {"query": query}
        if variables is not None:
            params["variables"] = json.dumps(variables)
        if op:
            params["operationName"] = op
        st, h, b = self.w.request("GET", SEARCH + "?" + urllib.parse.urlencode(params),
                                  headers=headers or {})
        return st, h, json.loads(b) if b else None

    def post(self, doc, headers=None):
        st, h, b = self.w.request("POST", SEARCH, json.dumps(doc).encode(),
                                  dict(headers or {}, **{"Content-Type": "application/json"}))
        return st, h, json.loads(b) if b else None

    def data(self, query, headers=None):
        st, h, doc = self.get(query, headers)
        self.t.assertEqual(st, 200, doc)
        self.t.assertEqual(h.get("content-type"), "application/json")
        self.t.assertNotIn("errors", doc, doc)
        self.t.assertEqual(list(doc), ["data"])
        return doc["data"]

    def error(self, query, status=200):
        st, _, doc = self.get(query)
        self.t.assertEqual(st, status, doc)
        self.t.assertIsNone(doc["data"], doc)
        self.t.assertTrue(doc["errors"], doc)
        return doc["errors"]


class SearchTestBase(unittest.TestCase):

    def assertShape(self, value, sel, where="data"):
        """value holds exactly the fields of sel, in its order, at every level
        (objects may be null, lists hold such objects)."""
        if value is None:
            return
        if isinstance(value, list):
            for i, v in enumerate(value):
                self.assertShape(v, sel, "%s[%d]" % (where, i))
            return
        self.assertIsInstance(value, dict, where)
        self.assertEqual(list(value), [k for k, _ in sel], where)
        for k, sub in sel:
            if sub is not None:
                self.assertShape(value[k], sub, where + "." + k)
            else:
                self.assertNotIsInstance(value[k], (dict, list) if k not in ("Vendors",) else dict,
                                         where + "." + k)


# zui's selection sets (§8).
ROW1_REPOS = ("Page {TotalCount ItemCount} Repos {Name LastUpdated Size Platforms { Os Arch } "
              "IsStarred IsBookmarked NewestImage { Tag Vulnerabilities {MaxSeverity Count} "
              "Description IsSigned SignatureInfo { Tool IsTrusted Author } Licenses Vendor "
              "Labels } StarCount DownloadCount}")
ROW2_IMAGES = "Images {RepoName Tag}"
ROW3_EXPANDED = ("Images {Manifests {Digest Platform {Os Arch} Size} Vulnerabilities "
                 "{MaxSeverity Count} Tag LastUpdated Vendor IsDeletable} Summary {Name "
                 "LastUpdated Size Platforms {Os Arch} Vendors IsStarred IsBookmarked NewestImage "
                 "{RepoName IsSigned SignatureInfo { Tool IsTrusted Author } Vulnerabilities "
                 "{MaxSeverity Count} Manifests {Digest} Tag Vendor Title Documentation "
                 "DownloadCount Source Description Licenses}}")
ROW4_IMAGE = ("RepoName IsSigned SignatureInfo { Tool IsTrusted Author } Vulnerabilities "
              "{MaxSeverity Count} Referrers {MediaType ArtifactType Size Digest Annotations "
              "{Key Value}} Tag TaggedTimestamp ArtifactType Manifests {ArtifactType Layers "
              "{Size Digest} History {Layer {Size Digest} HistoryDescription {CreatedBy "
              "EmptyLayer}} Digest ConfigDigest LastUpdated Size Platform {Os Arch} Referrers "
              "{MediaType ArtifactType Size Digest Annotations {Key Value}}} Vendor Licenses")


def global_search(query, sel, page=None, flt=None):
    args = ['query: %s' % json.dumps(query)]
    if page:
        args.append("requestedPage: {%s}" % page)
    if flt:
        args.append("filter: {%s}" % flt)
    return "{ GlobalSearch(%s) { %s } }" % (", ".join(args), sel)


class SearchTest(SearchTestBase):
    """One server with search enabled and five repositories."""

    @classmethod
    def setUpClass(cls):
        cls.w = Wharf({"extensions": {"search": {"enable": True}}}).start()
        p = Pusher(unittest.TestCase(), cls.w)
        L = {n: layer(n) for n in ("base", "a18", "a19", "app", "app11", "bb1", "bb2", "edge",
                                   "sbom", "blobonly")}
        cls.a18 = p.image("alpine", "3.18", [L["base"], L["a18"]], created="2023-06-01T00:00:00Z",
                          annotations={"org.opencontainers.image.vendor": "Alpine Linux",
                                       "org.opencontainers.image.description": "old alpine"})
        cls.a19 = p.image(
            "alpine", "3.19", [L["base"], L["a19"]], created="2024-01-01T00:00:00Z",
            annotations={"org.opencontainers.image.vendor": "Alpine Linux",
                         "org.opencontainers.image.description": "small",
                         "org.opencontainers.image.licenses": "MIT",
                         "org.opencontainers.image.title": "alpine"},
            labels={"org.opencontainers.image.source": "https://example.invalid/alpine",
                    "org.label-schema.usage": "https://example.invalid/docs",
                    "org.opencontainers.image.description": "not this one"})
        p.manifest("alpine", "latest", cls.a19.manifest, MT_MANIFEST)
        time.sleep(0.01)
        cls.edge = p.image("library/alpine", "edge", [L["edge"]], arch="arm64", variant="v8",
                           created="2024-03-01T00:00:00Z")
        time.sleep(0.01)
        amd = p.image("busybox", None, [L["bb1"]], created="2024-02-01T00:00:00Z")
        arm = p.image("busybox", None, [L["bb2"]], arch="arm64",
                      created="2024-02-02T00:00:00.5Z")
        cls.bb = p.index("busybox", "1.36", [amd, arm],
                         [{"os": "linux", "architecture": "amd64"},
                          {"os": "linux", "architecture": "arm64"}],
                         annotations={"org.opencontainers.image.description": "busybox multi"})
        time.sleep(0.01)
        # team/app builds on alpine 3.19's layers.
        cls.app10 = p.image("team/app", "v1.0", [L["base"], L["a19"], L["app"]],
                            created="2024-04-01T00:00:00Z",
                            annotations={"org.opencontainers.image.vendor": "Team"})
        cls.app11 = p.image("team/app", "v1.1", [L["app11"]], created="2024-05-01T00:00:00Z",
                            annotations={"org.opencontainers.image.vendor": "Team"})
        cls.sbom = p.image("team/app", None, [L["sbom"]], config=b"{}",
                           subject=cls.app10, artifact_type="application/vnd.example.sbom",
                           annotations={"org.example.kind": "sbom"})
        # A repository with a blob and no manifest: nothing to find.
        p.blob("blobs/only", L["blobonly"])
        cls.L = L

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.w.cleanup()

    def setUp(self):
        self.c = SearchClient(self, self.w)

    def tearDown(self):
        self.assertIsNone(self.w.proc.poll(), "wharf exited; log:\n" + self.w.log()[-4000:])

    def repos(self, query="", page=None, flt=None):
        d = self.c.data(global_search(query, "Page {TotalCount ItemCount} Repos {Name Rank}",
                                      page, flt))["GlobalSearch"]
        return [r["Name"] for r in d["Repos"]], d["Page"]

    def images(self, query, page=None, flt=None):
        d = self.c.data(global_search(query, "Page {TotalCount ItemCount} Images {RepoName Tag}",
                                      page, flt))["GlobalSearch"]
        return ["%s:%s" % (i["RepoName"], i["Tag"]) for i in d["Images"]], d["Page"]

    # ---- zui's queries, exactly the fields asked ----

    def test_row1_global_search_repos(self):
        q = global_search("alpine", ROW1_REPOS,
                          page="limit:10 offset:0 sortBy:RELEVANCE",
                          flt='Os:["linux"] Arch:["amd64", "arm64/v8"]')
        d = self.c.data(q)
        self.assertShape(d, selection("GlobalSearch {" + ROW1_REPOS + "}"))
        gs = d["GlobalSearch"]
        self.assertEqual(gs["Page"], {"TotalCount": 2, "ItemCount": 2})
        # Ranked: the exact name first.
        self.assertEqual([r["Name"] for r in gs["Repos"]], ["alpine", "library/alpine"])
        a = gs["Repos"][0]
        self.assertEqual(a["Platforms"], [{"Os": "linux", "Arch": "amd64"}])
        # Each blob once: the shared base layer and the tags on one manifest.
        blobs = {self.a18.digest: len(self.a18.manifest), self.a19.digest: len(self.a19.manifest),
                 self.a18.config_digest: len(self.a18.config),
                 self.a19.config_digest: len(self.a19.config)}
        for l in self.a18.layers + self.a19.layers:
            blobs[sha256(l)] = len(l)
        self.assertEqual(a["Size"], str(sum(blobs.values())))
        self.assertEqual((a["IsStarred"], a["IsBookmarked"], a["StarCount"]), (False, False, 0))
        n = a["NewestImage"]
        self.assertIn(n["Tag"], ("3.19", "latest"))  # one manifest, two tags
        self.assertIsNone(n["Vulnerabilities"])
        self.assertEqual((n["IsSigned"], n["SignatureInfo"]), (False, []))
        self.assertEqual((n["Description"], n["Licenses"], n["Vendor"], n["Labels"]),
                         ("small", "MIT", "Alpine Linux", ""))
        self.assertEqual(gs["Repos"][1]["Platforms"], [{"Os": "linux", "Arch": "arm64/v8"}])

    def test_row2_global_search_images(self):
        q = global_search("alpine:3", ROW2_IMAGES, page="limit:9 offset:0 sortBy:RELEVANCE")
        d = self.c.data(q)
        self.assertShape(d, selection("GlobalSearch {" + ROW2_IMAGES + "}"))
        self.assertEqual(d["GlobalSearch"]["Images"],
                         [{"RepoName": "alpine", "Tag": "3.18"}, {"RepoName": "alpine", "Tag": "3.19"}])

    def test_row3_expanded_repo_info(self):
        d = self.c.data('{ExpandedRepoInfo(repo:"alpine"){%s}}' % ROW3_EXPANDED)
        self.assertShape(d, selection("ExpandedRepoInfo {" + ROW3_EXPANDED + "}"))
        info = d["ExpandedRepoInfo"]
        # Newest first.
        self.assertEqual([i["Tag"] for i in info["Images"]][-1], "3.18")
        self.assertEqual(sorted(i["Tag"] for i in info["Images"]), ["3.18", "3.19", "latest"])
        i18 = [i for i in info["Images"] if i["Tag"] == "3.18"][0]
        self.assertEqual(i18["Manifests"], [{"Digest": self.a18.digest,
                                             "Platform": {"Os": "linux", "Arch": "amd64"},
                                             "Size": str(self.a18.size)}])
        self.assertEqual(i18["LastUpdated"], "2023-06-01T00:00:00Z")
        self.assertEqual((i18["Vendor"], i18["IsDeletable"]), ("Alpine Linux", True))
        s = info["Summary"]
        self.assertEqual(s["Name"], "alpine")
        self.assertEqual(s["Vendors"], ["Alpine Linux"])
        n = s["NewestImage"]
        self.assertEqual((n["RepoName"], n["Manifests"]), ("alpine", [{"Digest": self.a19.digest}]))
        # Annotations first, then the config's labels.
        self.assertEqual((n["Title"], n["Description"], n["Source"], n["Documentation"]),
                         ("alpine", "small", "https://example.invalid/alpine",
                          "https://example.invalid/docs"))
        self.assertEqual(n["DownloadCount"], 0)

    def test_row4_image(self):
        d = self.c.data('{Image(image: "team/app:v1.0"){%s}}' % ROW4_IMAGE)
        self.assertShape(d, selection("Image {" + ROW4_IMAGE + "}"))
        im = d["Image"]
        self.assertEqual((im["RepoName"], im["Tag"], im["ArtifactType"], im["Vendor"]),
                         ("team/app", "v1.0", MT_CONFIG, "Team"))
        self.assertRegex(im["TaggedTimestamp"], r"^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        ref = {"MediaType": MT_MANIFEST, "ArtifactType": "application/vnd.example.sbom",
               "Size": len(self.sbom.manifest), "Digest": self.sbom.digest,
               "Annotations": [{"Key": "org.example.kind", "Value": "sbom"}]}
        self.assertEqual(im["Referrers"], [ref])
        m = im["Manifests"][0]
        self.assertEqual((m["Digest"], m["ConfigDigest"], m["Size"], m["LastUpdated"]),
                         (self.app10.digest, self.app10.config_digest, str(self.app10.size),
                          "2024-04-01T00:00:00Z"))
        self.assertEqual(m["Layers"], [{"Size": str(len(l)), "Digest": sha256(l)}
                                       for l in self.app10.layers])
        # One history entry per layer, then the empty one.
        self.assertEqual(len(m["History"]), 4)
        self.assertEqual(m["History"][0], {"Layer": {"Size": str(len(self.app10.layers[0])),
                                                     "Digest": sha256(self.app10.layers[0])},
                                           "HistoryDescription": {"CreatedBy": "step 0",
                                                                  "EmptyLayer": False}})
        self.assertEqual(m["History"][3], {"Layer": None, "HistoryDescription": {
            "CreatedBy": "CMD [\"sh\"]", "EmptyLayer": True}})
        self.assertEqual(m["Referrers"], [ref])

    def test_only_the_fields_asked(self):
        d = self.c.data('{ a: Image(image: "alpine:3.19") { Tag } b: Image(image: "alpine:3.19") '
                        '{ __typename Digest t: Tag } }')
        self.assertEqual(d, {"a": {"Tag": "3.19"},
                             "b": {"__typename": "ImageSummary", "Digest": self.a19.digest,
                                   "t": "3.19"}})
        # The same field twice is one field, its selections merged.
        d = self.c.data('{ Image(image: "alpine:3.18") { Tag } Image(image: "alpine:3.18") '
                        '{ RepoName Tag } }')
        self.assertEqual(d, {"Image": {"Tag": "3.18", "RepoName": "alpine"}})

    # ---- the four targets ----

    def test_repo_names_ranked(self):
        self.assertEqual(self.repos("")[0], ["alpine", "busybox", "library/alpine", "team/app"])
        self.assertEqual(self.repos("app")[0], ["team/app"])
        d = self.c.data(global_search("team", "Repos { Name Rank }"))
        self.assertEqual(d["GlobalSearch"]["Repos"], [{"Name": "team/app", "Rank": 10}])
        d = self.c.data(global_search("ALPINE/", "Repos { Name Rank }"))
        self.assertEqual(d["GlobalSearch"]["Repos"], [{"Name": "alpine", "Rank": 0},
                                                     {"Name": "library/alpine", "Rank": 1}])
        self.assertEqual(self.repos("library/alp")[0], ["library/alpine"])
        self.assertEqual(self.repos("nothing-like-it")[0], [])
        # A repository with blobs and no manifest is not listed.
        self.assertEqual(self.repos("blobs")[0], [])

    def test_repo_colon_tag_prefix(self):
        self.assertEqual(self.images("alpine:")[0],
                         ["alpine:3.18", "alpine:3.19", "alpine:latest"])
        self.assertEqual(self.images("alpine:3.1")[0], ["alpine:3.18", "alpine:3.19"])
        self.assertEqual(self.images("alpine:4")[0], [])
        self.assertEqual(self.images("nope:1")[0], [])

    def test_tag_everywhere(self):
        self.assertEqual(self.images(":latest")[0], ["alpine:latest"])
        self.assertEqual(self.images(":3")[0], ["alpine:3.18", "alpine:3.19", "busybox:1.36"])
        self.assertEqual(self.images(":V1")[0], ["team/app:v1.0", "team/app:v1.1"])

    def test_digest(self):
        self.assertEqual(self.images(self.a18.digest)[0], ["alpine:3.18"])
        # Both tags on 3.19's manifest.
        self.assertEqual(self.images(self.a19.digest[:20])[0], ["alpine:3.19", "alpine:latest"])
        self.assertEqual(self.images(self.a18.config_digest[:16])[0], ["alpine:3.18"])
        # A layer: the short prefix from the index, a long one confirmed.
        app = sha256(self.L["app"])
        self.assertEqual(self.images(app[:12])[0], ["team/app:v1.0"])
        self.assertEqual(self.images(app[:40])[0], ["team/app:v1.0"])
        self.assertEqual(self.images(app[:40] + "0")[0] if app[40] != "0"
                         else self.images(app[:40] + "1")[0], [])
        base = sha256(self.L["base"])
        self.assertEqual(self.images(base)[0],
                         ["alpine:3.18", "alpine:3.19", "alpine:latest", "team/app:v1.0"])
        # A child of an index: the index, with only that child.
        arm = self.bb.children[1]
        d = self.c.data(global_search(arm.digest, "Images { Tag Manifests { Digest Platform "
                                      "{ Os Arch } } Size }"))
        self.assertEqual(d["GlobalSearch"]["Images"], [
            {"Tag": "1.36", "Manifests": [{"Digest": arm.digest,
                                           "Platform": {"Os": "linux", "Arch": "arm64"}}],
             "Size": str(arm.size)}])
        # The index's own digest: every child.
        d = self.c.data(global_search(self.bb.digest, "Images { Tag Size Manifests { Digest } }"))
        self.assertEqual(d["GlobalSearch"]["Images"], [
            {"Tag": "1.36", "Size": str(self.bb.size),
             "Manifests": [{"Digest": c.digest} for c in self.bb.children]}])
        d = self.c.data('{ ImageListForDigest(id: "%s") { Page { TotalCount } Results { RepoName '
                        'Tag } } }' % self.edge.digest)
        self.assertEqual(d["ImageListForDigest"], {"Page": {"TotalCount": 1},
                                                   "Results": [{"RepoName": "library/alpine",
                                                                "Tag": "edge"}]})

    def test_invalid_targets(self):
        for q in ("a:b:c", "alpine@latest", ":"):
            errs = self.c.error(global_search(q, "Page { TotalCount }"))
            self.assertEqual(errs[0]["path"], ["GlobalSearch"], errs)
        # As Zot: a colon after an '@' makes it repo:tag (of no such repo).
        self.assertEqual(self.images("alpine@sha256:0"), ([], {"TotalCount": 0, "ItemCount": 0}))
        errs = self.c.error(global_search("x" * 257, "Page { TotalCount }"))
        self.assertIn("max string size limit exceeded", errs[0]["message"])

    # ---- paging, sorting, filters ----

    def test_paging(self):
        names, page = self.repos("", page="limit:2 offset:1 sortBy:ALPHABETIC_ASC")
        self.assertEqual((names, page), (["busybox", "library/alpine"],
                                         {"TotalCount": 4, "ItemCount": 2}))
        names, page = self.repos("", page="limit:0 offset:0")
        self.assertEqual((len(names), page), (4, {"TotalCount": 4, "ItemCount": 4}))
        # Zot's arithmetic: a limit of 0 past the start is an empty page.
        names, page = self.repos("", page="limit:0 offset:1")
        self.assertEqual((names, page), ([], {"TotalCount": 4, "ItemCount": 0}))
        names, page = self.repos("", page="limit:3 offset:10")
        self.assertEqual((names, page), ([], {"TotalCount": 4, "ItemCount": 0}))
        imgs, page = self.images("alpine:", page="limit:1 offset:2 sortBy:ALPHABETIC_DSC")
        self.assertEqual((imgs, page), (["alpine:3.18"], {"TotalCount": 3, "ItemCount": 1}))
        d = self.c.data('{ ImageList(repo: "team/app", requestedPage: {limit: 1}) { Page '
                        '{ TotalCount ItemCount } Results { Tag } } }')
        self.assertEqual(d["ImageList"], {"Page": {"TotalCount": 2, "ItemCount": 1},
                                          "Results": [{"Tag": "v1.0"}]})
        errs = self.c.error(global_search("", "Page { TotalCount }", page="limit: -1"))
        self.assertIn("can't be negative", errs[0]["message"])
        errs = self.c.error('{ ImageList(repo: "", requestedPage: {offset: -1}) { Page '
                            '{ TotalCount } } }')
        self.assertIn("negative", errs[0]["message"])
        errs = self.c.error(global_search("", "Page { TotalCount }", page="sortBy: STARS"))
        self.assertIn("not supported", errs[0]["message"])

    def test_sorting(self):
        self.assertEqual(self.repos("", page="sortBy: ALPHABETIC_DSC")[0],
                         ["team/app", "library/alpine", "busybox", "alpine"])
        # A repository's time is its newest push (the tag's time, as Zot's).
        self.assertEqual(self.repos("", page="sortBy: UPDATE_TIME")[0],
                         ["team/app", "busybox", "library/alpine", "alpine"])
        # Images by their creation time.
        d = self.c.data('{ ImageList(repo: "", requestedPage: {sortBy: UPDATE_TIME}) { Results '
                        '{ RepoName Tag LastUpdated } } }')
        got = [(r["RepoName"] + ":" + r["Tag"], r["LastUpdated"]) for r in d["ImageList"]["Results"]]
        self.assertEqual(got, [("team/app:v1.1", "2024-05-01T00:00:00Z"),
                               ("team/app:v1.0", "2024-04-01T00:00:00Z"),
                               ("library/alpine:edge", "2024-03-01T00:00:00Z"),
                               ("busybox:1.36", "2024-02-02T00:00:00.5Z"),
                               ("alpine:3.19", "2024-01-01T00:00:00Z"),
                               ("alpine:latest", "2024-01-01T00:00:00Z"),
                               ("alpine:3.18", "2023-06-01T00:00:00Z")])

    def test_sorting_by_downloads(self):
        # Pulls count; in a fresh server so other tests' pulls do not.
        with Wharf({"extensions": {"search": {}}}) as w:
            p = Pusher(self, w)
            for name in ("a", "b", "c"):
                p.image(name, "1", [layer("dl " + name)])
            for name, n in (("c", 3), ("b", 1)):
                for _ in range(n):
                    st, _, _ = w.request("GET", "/v2/%s/manifests/1" % name,
                                         headers={"Accept": MT_MANIFEST})
                    self.assertEqual(st, 200)
            c = SearchClient(self, w)
            d = c.data(global_search("", "Repos { Name DownloadCount NewestImage "
                                     "{ DownloadCount } }", page="sortBy: DOWNLOADS"))
            self.assertEqual(d["GlobalSearch"]["Repos"], [
                {"Name": "c", "DownloadCount": 3, "NewestImage": {"DownloadCount": 3}},
                {"Name": "b", "DownloadCount": 1, "NewestImage": {"DownloadCount": 1}},
                {"Name": "a", "DownloadCount": 0, "NewestImage": {"DownloadCount": 0}}])
            d = c.data('{ Image(image: "c:1") { LastPullTimestamp PushTimestamp } }')["Image"]
            self.assertNotEqual(d["LastPullTimestamp"], ZERO_TIME)
            self.assertLessEqual(rfc3339(d["PushTimestamp"]), rfc3339(d["LastPullTimestamp"]))
            d = c.data('{ Image(image: "a:1") { LastPullTimestamp } }')["Image"]
            self.assertEqual(d["LastPullTimestamp"], ZERO_TIME)

    def test_filters(self):
        self.assertEqual(self.repos("", flt='Arch: ["arm64"]')[0], ["busybox"])
        self.assertEqual(self.repos("", flt='Arch: [" ARM64/v8 "]')[0], ["library/alpine"])
        self.assertEqual(self.repos("", flt='Os: ["LINUX"]')[0],
                         ["alpine", "busybox", "library/alpine", "team/app"])
        self.assertEqual(self.repos("", flt='Os: ["windows"]')[0], [])
        self.assertEqual(self.repos("", flt="HasToBeSigned: true")[0], [])
        self.assertEqual(self.repos("", flt="IsBookmarked: true")[0], [])
        self.assertEqual(len(self.repos("", flt="IsStarred: false")[0]), 4)
        self.assertEqual(self.images(":", flt='Arch: ["arm64"]')[0] if False else
                         self.images(":3", flt='Arch: ["arm64"]')[0], ["busybox:1.36"])
        self.assertEqual(self.images("alpine:", flt="HasToBeSigned: true")[0], [])

    # ---- the other queries ----

    def test_lineage(self):
        d = self.c.data('{ BaseImageList(image: "team/app:v1.0") { Results { RepoName Tag } } '
                        'DerivedImageList(image: "alpine:3.19") { Page { TotalCount } Results '
                        '{ RepoName Tag } } }')
        # v1.0 is 3.19's two layers and one more; 3.18 shares only the first.
        self.assertEqual(d["BaseImageList"]["Results"], [{"RepoName": "alpine", "Tag": "3.19"},
                                                         {"RepoName": "alpine", "Tag": "latest"}])
        self.assertEqual(d["DerivedImageList"], {"Page": {"TotalCount": 1}, "Results": [
            {"RepoName": "team/app", "Tag": "v1.0"}]})
        d = self.c.data('{ DerivedImageList(image: "alpine:3.18") { Results { Tag } } '
                        'BaseImageList(image: "alpine:3.18") { Results { Tag } } }')
        self.assertEqual(d, {"DerivedImageList": {"Results": []},
                             "BaseImageList": {"Results": []}})
        errs = self.c.error('{ DerivedImageList(image: "nope:1") { Results { Tag } } }')
        self.assertEqual(errs[0]["message"], "repository not found")

    def test_referrers_and_lists(self):
        d = self.c.data('{ Referrers(repo: "team/app", digest: "%s", type: ["application/vnd.'
                        'example.sbom"]) { Digest ArtifactType } none: Referrers(repo: "team/app", '
                        'digest: "%s", type: "other") { Digest } }' % (self.app10.digest,
                                                                     self.app10.digest))
        self.assertEqual(d, {"Referrers": [{"Digest": self.sbom.digest,
                                            "ArtifactType": "application/vnd.example.sbom"}],
                             "none": []})
        d = self.c.data('{ RepoListWithNewestImage(requestedPage: {limit: 2}) { Page { TotalCount '
                        'ItemCount } Results { Name } } StarredRepos { Page { TotalCount } Results '
                        '{ Name } } BookmarkedRepos { Results { Name } } }')
        self.assertEqual(d["RepoListWithNewestImage"],
                         {"Page": {"TotalCount": 4, "ItemCount": 2},
                          "Results": [{"Name": "team/app"}, {"Name": "busybox"}]})
        self.assertEqual(d["StarredRepos"], {"Page": {"TotalCount": 0}, "Results": []})
        self.assertEqual(d["BookmarkedRepos"], {"Results": []})
        errs = self.c.error('{ CVEListForImage(image: "alpine:3.19") { Tag } }')
        self.assertEqual(errs[0]["message"], "cve search is disabled")

    def test_errors(self):
        # A document that does not parse: 422, where.
        st, _, doc = self.c.get("{ GlobalSearch(query: \"x\") { Page { TotalCount } }")
        self.assertEqual(st, 422, doc)
        self.assertIsNone(doc["data"])
        self.assertEqual(doc["errors"][0]["extensions"], {"code": "GRAPHQL_PARSE_FAILED"})
        self.assertEqual(doc["errors"][0]["locations"], [{"line": 1, "column": 51}])
        # Not the schema's: 422 too.
        for q, want in (('{ Nope }', 'Cannot query field "Nope" on type "Query"'),
                        ('{ GlobalSearch(query: "") { Repos { Nope } } }', 'on type "RepoSummary"'),
                        ('{ GlobalSearch { Page { TotalCount } } }', 'argument "query" of type'),
                        ('{ GlobalSearch(query: "", bad: 1) { Page { TotalCount } } }',
                         'Unknown argument "bad"'),
                        ('{ GlobalSearch(query: "") { Repos } }', "must have a selection"),
                        ('{ GlobalSearch(query: "") { Page { TotalCount { x } } } }',
                         "must not have a selection"),
                        ('{ GlobalSearch(query: "", requestedPage: {sortBy: SIDEWAYS}) '
                         '{ Page { TotalCount } } }', 'does not exist in "SortCriteria"'),
                        ('{ GlobalSearch(query: "", requestedPage: {limit: "1"}) '
                         '{ Page { TotalCount } } }', "Int cannot represent"),
                        ('{ ImageList(repo: $r) { Page { TotalCount } } }', "is not defined"),
                        ('query ($q: String!) { ImageList(repo: "") { Page { TotalCount } } }',
                         "never used"),
                        ('mutation { x }', "not configured for mutations"),
                        ('{ ... F }', "fragments are not supported")):
            st, _, doc = self.c.get(q)
            self.assertEqual(st, 422, (q, doc))
            self.assertIn(want, doc["errors"][0]["message"], q)
            self.assertIsNone(doc["data"])
        st, _, doc = self.c.get("")
        self.assertEqual((st, doc["errors"][0]["message"]), (422, "no operation provided"))
        # Running fails: 200, the error, data null.
        errs = self.c.error('{ Image(image: "alpine:9") { Tag } }')
        self.assertEqual(errs, [{"message": "can't find image: alpine:9", "path": ["Image"]}])
        errs = self.c.error('{ ExpandedRepoInfo(repo: "nope") { Summary { Name } } }')
        self.assertEqual(errs[0]["message"], "repo metadata not found for given repo name")
        # POST bodies.
        st, _, b = self.w.request("POST", SEARCH, b"{not json", {"Content-Type": "application/json"})
        self.assertEqual(st, 400)
        self.assertIn("could not be decoded", json.loads(b)["errors"][0]["message"])
        st, _, _ = self.w.request("PUT", SEARCH, b"{}")
        self.assertEqual(st, 405)

    def test_variables_and_operations(self):
        doc = {"query": "query Find($q: String!, $p: PageInput = {limit: 1}) { GlobalSearch("
                        "query: $q, requestedPage: $p) { Repos { Name } } } "
                        "query Other { Image(image: \"alpine:3.18\") { Tag } }",
               "operationName": "Find", "variables": {"q": "alp"}}
        st, _, d = self.c.post(doc)
        self.assertEqual((st, d), (200, {"data": {"GlobalSearch": {"Repos": [{"Name": "alpine"}]}}}))
        doc["variables"] = {"q": "alp", "p": {"limit": 5, "sortBy": "ALPHABETIC_DSC"}}
        st, _, d = self.c.post(doc)
        self.assertEqual(d["data"]["GlobalSearch"]["Repos"],
                         [{"Name": "library/alpine"}, {"Name": "alpine"}])
        st, _, d = self.c.get(doc["query"], variables={"q": "busy"}, op="Find")
        self.assertEqual(d, {"data": {"GlobalSearch": {"Repos": [{"Name": "busybox"}]}}})
        st, _, d = self.c.post(dict(doc, operationName="Other"))
        self.assertEqual(d, {"data": {"Image": {"Tag": "3.18"}}})
        # A required variable missing, of the wrong type, no operation named.
        for variables, op in (({}, "Find"), ({"q": 5}, "Find"), ({"q": "x"}, None),
                              ({"q": "x", "p": {"sortBy": "NO"}}, "Find")):
            st, _, d = self.c.post(dict(doc, variables=variables, operationName=op))
            self.assertEqual(st, 422, (variables, op, d))

    def test_fuzz_seeds_answered(self):
        # The parser's seeds (tests/fuzz/seeds/graphql), each answered with
        # a GraphQL body, the server still up.
        seeds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "seeds",
                             "graphql")
        for name in sorted(os.listdir(seeds)):
            with open(os.path.join(seeds, name), "rb") as f:
                data = f.read()
            if data[:1] == b"\x01":  # a variables document
                st, _, doc = self.c.post({"query": "{ ImageList(repo: \"\") { Page { TotalCount "
                                                   "} } }", "variables": json.loads(data[1:])})
            else:
                st, _, doc = self.c.post({"query": data.decode("utf-8")})
            self.assertIn(st, (200, 422), name)
            self.assertIn("data", doc, name)

    # ---- following the store ----

    def test_index_follows_pushes_and_deletes(self):
        p = Pusher(self, self.w)
        one = p.image("fresh/repo", "1", [layer("fresh 1")], created="2025-01-01T00:00:00Z")
        self.assertEqual(self.repos("fresh")[0], ["fresh/repo"])
        # The tag moves: the newest image is the new manifest.
        two = p.image("fresh/repo", "1", [layer("fresh 2")], created="2025-02-01T00:00:00Z")
        d = self.c.data('{ ExpandedRepoInfo(repo: "fresh/repo") { Images { Tag Digest } '
                        'Summary { Size NewestImage { Digest } } } }')["ExpandedRepoInfo"]
        self.assertEqual(d["Images"], [{"Tag": "1", "Digest": two.digest}])
        self.assertEqual(d["Summary"]["NewestImage"], {"Digest": two.digest})
        self.assertEqual(d["Summary"]["Size"], str(two.size))
        # The old manifest stays, untagged: found by digest? No: only tags are.
        self.assertEqual(self.images(one.digest)[0], [])
        p.manifest("fresh/repo", "2", one.manifest, MT_MANIFEST)
        self.assertEqual(self.images("fresh/repo:")[0], ["fresh/repo:1", "fresh/repo:2"])
        # Deleting a tag, then a manifest by digest.
        st, _, _ = self.w.request("DELETE", "/v2/fresh/repo/manifests/2")
        self.assertEqual(st, 202)
        self.assertEqual(self.images("fresh/repo:")[0], ["fresh/repo:1"])
        st, _, _ = self.w.request("DELETE", "/v2/fresh/repo/manifests/" + two.digest)
        self.assertEqual(st, 202)
        self.assertEqual(self.images("fresh/repo:")[0], [])
        self.assertEqual(self.repos("fresh")[0], [])
        self.c.error('{ ExpandedRepoInfo(repo: "fresh/repo") { Summary { Name } } }')

    # ---- discover and mgmt ----

    def test_discover_and_mgmt(self):
        st, h, b = self.w.request("GET", "/v2/_oci/ext/discover")
        self.assertEqual(st, 200)
        ext = json.loads(b)["extensions"]
        self.assertEqual([e["name"] for e in ext], ["_zot"])
        self.assertEqual(ext[0]["endpoints"], ["/v2/_zot/ext/search", "/v2/_zot/ext/mgmt"])
        self.assertEqual(ext[0]["description"], "zot registry extensions")
        st, h, b = self.w.request("GET", "/v2/_zot/ext/mgmt")
        self.assertEqual(st, 200)
        doc = json.loads(b)
        self.assertEqual(list(doc), ["distSpecVersion", "commit", "releaseTag", "binaryType",
                                     "http"])
        self.assertEqual(doc["distSpecVersion"], "1.1.1")
        self.assertEqual(doc["http"], {"auth": {}})
        st, _, _ = self.w.request("POST", "/v2/_zot/ext/mgmt", b"")
        self.assertEqual(st, 405)


class SearchDisabledTest(unittest.TestCase):
    """Without extensions.search: no search, no mgmt, nothing to discover."""

    def test_disabled(self):
        for cfg in (None, {"extensions": {"search": {"enable": False}}}):
            with Wharf(cfg) as w:
                st, _, _ = w.request("GET", SEARCH + "?query=%7BImage%7D")
                self.assertEqual(st, 404)
                st, _, _ = w.request("GET", "/v2/_zot/ext/mgmt")
                self.assertEqual(st, 404)
                st, _, b = w.request("GET", "/v2/_oci/ext/discover")
                self.assertEqual((st, json.loads(b)), (200, {"extensions": []}))

    def test_cve_is_accepted_and_warned(self):
        with Wharf({"extensions": {"search": {"cve": {"updateInterval": "2h"}}}}) as w:
            c = SearchClient(self, w)
            self.assertEqual(c.data('{ ImageList(repo: "") { Page { TotalCount } } }'),
                             {"ImageList": {"Page": {"TotalCount": 0}}})
            self.assertIn("extensions.search.cve", w.log())


class SearchRestartTest(SearchTestBase):
    """The index built at start from the root says what the one kept up to
    date said (downloads aside: they are counted since the start)."""

    def test_same_answers_after_restart(self):
        tmp = tempfile.mkdtemp(prefix="wharf-search-")
        root = os.path.join(tmp, "data")
        q = ('{ GlobalSearch(query: "", requestedPage: {sortBy: ALPHABETIC_ASC}) { Page '
             '{ TotalCount } Repos { Name LastUpdated Size Platforms { Os Arch } Vendors '
             'NewestImage { Tag Digest Size LastUpdated Description Vendor Manifests { Digest '
             'Platform { Os Arch } Size } } } } ImageList(repo: "") { Results { RepoName Tag '
             'Digest Size LastUpdated Referrers { Digest } } } }')
        try:
            w = Wharf({"extensions": {"search": {}}}, root=root).start()
            try:
                p = Pusher(self, w)
                base = p.image("r/one", "1", [layer("r1")], created="2024-01-01T00:00:00Z",
                               annotations={"org.opencontainers.image.vendor": "V"})
                p.image("r/one", "2", [layer("r1"), layer("r2")], created="2024-02-01T00:00:00Z")
                a = p.image("r/two", None, [layer("t1")])
                b = p.image("r/two", None, [layer("t2")], arch="arm64")
                p.index("r/two", "m", [a, b], [{"os": "linux", "architecture": "amd64"},
                                               {"os": "linux", "architecture": "arm64"}])
                p.image("r/one", None, [layer("sig")], config=b"{}", subject=base,
                        artifact_type="application/vnd.example.sig")
                before = SearchClient(self, w).data(q)
            finally:
                w.stop()
            w = Wharf({"extensions": {"search": {}}}, root=root).start()
            try:
                after = SearchClient(self, w).data(q)
                loaded = [r for r in w.log_records() if r.get("message") == "search index loaded"]
            finally:
                w.stop()
            self.assertEqual(after, before)
            self.assertEqual(before["GlobalSearch"]["Page"]["TotalCount"], 2)
            self.assertEqual(len(loaded), 1, loaded)
            self.assertEqual((loaded[0]["repositories"], loaded[0]["tags"],
                              loaded[0]["manifests"]), (2, 3, 6))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class SearchGcTest(SearchTestBase):
    """What the GC and retention remove leaves the index too (the store tells
    it a repository's index.json was rewritten, or the repository removed)."""

    def sweeps(self, w):
        return sum(1 for r in w.log_records() if r.get("message") == "gc successfully completed")

    def wait_sweeps(self, w, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.sweeps(w) < n:
            time.sleep(0.05)
        self.assertGreaterEqual(self.sweeps(w), n, w.log())

    def test_retention_and_gc(self):
        policy = {"repositories": ["ret/**"], "keepTags": [{"patterns": ["^v1"]}]}
        cfg = {"storage": {"gc": True, "gcDelay": "1h", "gcInterval": "1s",
                           "retention": {"delay": "1h", "policies": [policy]}},
               "extensions": {"search": {}}}
        with Wharf(cfg) as w:
            self.wait_sweeps(w, 1)
            c = SearchClient(self, w)
            p = Pusher(self, w)
            p.image("ret/app", "v1.0", [layer("ret 1")])
            p.image("ret/app", "v2.0", [layer("ret 2")])
            q = global_search("ret/app:", "Images { Tag }")
            n = self.sweeps(w)
            # Whichever way it goes: pushed between two sweeps, or during
            # one (then the next), v2.0 loses its tag within two.
            self.wait_sweeps(w, n + 2)
            self.assertEqual(c.data(q)["GlobalSearch"]["Images"], [{"Tag": "v1.0"}])
            removed = [r for r in w.log_records() if r.get("message") == "applied policy"
                       and r.get("decision") == "delete"]
            self.assertEqual([r["tag"] for r in removed], ["v2.0"])
            # Its last tag deleted: nothing left to find (the sweeps go on).
            st, _, _ = w.request("DELETE", "/v2/ret/app/manifests/v1.0")
            self.assertEqual(st, 202)
            self.assertEqual(c.data(q)["GlobalSearch"]["Images"], [])


ACCESS = {
    "repositories": {
        "public/**": {"policies": [{"users": ["alice"],
                                    "actions": ["read", "create", "update", "delete"]}],
                      "defaultPolicy": ["read"], "anonymousPolicy": ["read"]},
        "private/**": {"policies": [{"users": ["alice"],
                                     "actions": ["read", "create", "update", "delete"]}]},
    },
}


@unittest.skipUnless(have("htpasswd") and have("openssl"),
                     "htpasswd (apache2-utils) or openssl is not installed")
class SearchAccessTest(SearchTestBase):
    """alice reads and deletes everything; bob, and anonymous requests, read
    public/** only."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wharf-search-auth-")
        htp = os.path.join(cls.tmp, "htpasswd")
        write_htpasswd(htp, [("alice", "alice-pw", "bcrypt"), ("bob", "bob-pw", "sha512")])
        cls.w = Wharf({"http": {"auth": {"htpasswd": {"path": htp}}, "accessControl": ACCESS},
                       "extensions": {"search": {}}}).start()
        # alice's password checked once, by a request without a body: a
        # request with one (a monolithic POST) whose password is still being
        # checked loses its body and hangs, on main too (a known bug of the
        # HTTP server's body handling while a phase holds the request).
        st, _, _ = cls.w.request("GET", "/v2/", headers={"Authorization": basic("alice", "alice-pw")})
        assert st == 200, st
        p = Pusher(unittest.TestCase(), cls.w, basic("alice", "alice-pw"))
        cls.pub_a = p.image("public/a", "1", [layer("pa")])
        cls.pub_b = p.image("public/b", "1", [layer("pb")])
        cls.priv = p.image("private/x", "1", [layer("px")])

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.w.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def as_(self, user):
        return {"Authorization": basic(user, user + "-pw")} if user else {}

    def test_results_filtered(self):
        c = SearchClient(self, self.w)
        q = global_search("", "Page { TotalCount } Repos { Name NewestImage { IsDeletable } }")
        for user, names, deletable in (("alice", ["private/x", "public/a", "public/b"], True),
                                       ("bob", ["public/a", "public/b"], False),
                                       (None, ["public/a", "public/b"], False)):
            d = c.data(q, self.as_(user))["GlobalSearch"]
            self.assertEqual([r["Name"] for r in d["Repos"]], names, user)
            self.assertEqual(d["Page"]["TotalCount"], len(names))
            self.assertEqual({r["NewestImage"]["IsDeletable"] for r in d["Repos"]}, {deletable})
            d = c.data(global_search(":1", "Images { RepoName }"), self.as_(user))
            self.assertEqual([i["RepoName"] for i in d["GlobalSearch"]["Images"]], names)
            d = c.data(global_search(self.priv.digest, "Images { RepoName }"), self.as_(user))
            self.assertEqual(len(d["GlobalSearch"]["Images"]), 1 if user == "alice" else 0)
            d = c.data('{ ImageList(repo: "") { Page { TotalCount } } }', self.as_(user))
            self.assertEqual(d["ImageList"]["Page"]["TotalCount"], len(names))

    def test_unreadable_is_empty_not_an_error(self):
        c = SearchClient(self, self.w)
        d = c.data('{ ExpandedRepoInfo(repo: "private/x") { Images { Tag } Summary { Name } } '
                   'Image(image: "private/x:1") { __typename RepoName Tag Manifests { Digest } } '
                   'Referrers(repo: "private/x", digest: "%s") { Digest } }' % self.priv.digest,
                   self.as_("bob"))
        self.assertEqual(d, {"ExpandedRepoInfo": {"Images": None, "Summary": None},
                             "Image": {"__typename": "ImageSummary", "RepoName": None,
                                       "Tag": None, "Manifests": None},
                             "Referrers": []})
        d = c.data('{ ExpandedRepoInfo(repo: "private/x") { Images { Tag IsDeletable } } }',
                   self.as_("alice"))
        self.assertEqual(d["ExpandedRepoInfo"]["Images"], [{"Tag": "1", "IsDeletable": True}])

    def test_credentials_and_mgmt(self):
        st, _, _ = self.w.request("GET", SEARCH + "?query=%7BImage%7D",
                                  headers={"Authorization": basic("bob", "wrong")})
        self.assertEqual(st, 401)
        # mgmt: no credentials needed; it says passwords are how to log in.
        st, _, b = self.w.request("GET", "/v2/_zot/ext/mgmt")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(b)["http"], {"auth": {"htpasswd": {}}})


if __name__ == "__main__":
    unittest.main()
