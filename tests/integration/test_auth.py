"""http.auth (htpasswd), http.accessControl and http.ratelimit against the
real binary, with real clients where they can be made to log in (skopeo,
oras): what Zot answers, as /work/shared/specs/zot-reference.md §2-§4 says.

Users (the file is written by `htpasswd -B` and `openssl passwd -6`):
  alice  bcrypt   read/create/update/delete everywhere
  bob    $6$      defaultPolicy: read everywhere but private/**
  carol  $apr1$   an unsupported hash: never logs in
  dave   bcrypt   only for counting verifications
Anonymous requests may read public/**."""

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import images
from harness import Wharf, have, merge

CMD_TIMEOUT = 120
REALM = "wharf test"
DESCRIPTION = ("The access controller was unable to authenticate the client. Often this "
               "will be accompanied by a WWW-Authenticate HTTP response header indicating "
               "how to authenticate.")


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def write_htpasswd(path, users):
    """users: (name, password, kind) with kind bcrypt, sha512 or apr1."""
    if os.path.exists(path):
        os.unlink(path)
    open(path, "w").close()
    for name, password, kind in users:
        if kind == "bcrypt":
            subprocess.run(["htpasswd", "-B", "-b", path, name, password], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            flag = "-6" if kind == "sha512" else "-apr1"
            h = subprocess.run(["openssl", "passwd", flag, password], check=True,
                               stdout=subprocess.PIPE).stdout.decode().strip()
            with open(path, "a") as f:
                f.write("%s:%s\n" % (name, h))


USERS = [("alice", "alice-pw", "bcrypt"), ("bob", "bob-pw", "sha512"),
         ("carol", "carol-pw", "apr1"), ("dave", "dave-pw", "bcrypt")]

ACCESS = {
    "repositories": {
        "**": {"policies": [{"users": ["alice"],
                             "actions": ["read", "create", "update", "delete"]}],
               "defaultPolicy": ["read"]},
        "public/**": {"policies": [{"users": ["alice"], "actions": ["read", "create"]}],
                      "defaultPolicy": ["read"], "anonymousPolicy": ["read"]},
        "private/**": {"policies": [{"users": ["alice", "dave"], "actions": ["read", "create"]}]},
    },
}


def auth_config(htpasswd, fail_delay=0, access=None, extra=None):
    cfg = {"http": {"realm": REALM,
                    "auth": {"htpasswd": {"path": htpasswd}, "failDelay": fail_delay},
                    "accessControl": access or ACCESS},
           "log": {"level": "debug"}}
    return merge(cfg, extra or {})


def have_tools():
    return have("htpasswd") and have("openssl")


@unittest.skipUnless(have_tools(), "htpasswd (apache2-utils) or openssl is not installed")
class AuthTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wharf-auth-")
        cls.htpasswd = os.path.join(cls.tmp, "htpasswd")
        write_htpasswd(cls.htpasswd, USERS)
        cls.wharf = Wharf(auth_config(cls.htpasswd)).start()
        cls.img = images.single_image(os.path.join(cls.tmp, "img"), tag="1")
        # Clients isolated from the host's configuration, as in test_clients.
        cfg = os.path.join(cls.tmp, "conf")
        os.makedirs(os.path.join(cfg, "docker"))
        os.makedirs(os.path.join(cls.tmp, "ctmp"))
        for name in ("registries.conf", "containers.conf"):
            open(os.path.join(cfg, name), "w").close()
        with open(os.path.join(cfg, "auth.json"), "w") as f:
            f.write('{"auths": {}}')
        cls.policy = os.path.join(cfg, "policy.json")
        with open(cls.policy, "w") as f:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, f)
        cls.env = dict(os.environ)
        cls.env.update({
            "CONTAINERS_REGISTRIES_CONF": os.path.join(cfg, "registries.conf"),
            "CONTAINERS_CONF": os.path.join(cfg, "containers.conf"),
            "REGISTRY_AUTH_FILE": os.path.join(cfg, "auth.json"),
            "DOCKER_CONFIG": os.path.join(cfg, "docker"),
            "TMPDIR": os.path.join(cls.tmp, "ctmp"),
        })

    @classmethod
    def tearDownClass(cls):
        cls.wharf.stop()
        cls.wharf.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def req(self, method, path, user=None, password=None, headers=None, body=None):
        h = dict(headers or {})
        if user is not None:
            h["Authorization"] = basic(user, password)
        return self.wharf.request(method, path, body=body, headers=h)

    def run_tool(self, args, check=True):
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=CMD_TIMEOUT, env=self.env,
                           cwd=self.tmp)
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if check and p.returncode:
            self.fail("%s: exit %d\n%s\n%s\nwharf log:\n%s" % (
                " ".join(args), p.returncode, out[-2000:], err[-2000:],
                "\n".join(self.wharf.log().splitlines()[-15:])))
        return p.returncode, out, err

    def push(self, repo, user="alice", password="alice-pw"):
        self.run_tool(["skopeo", "--policy", self.policy, "copy", "--dest-tls-verify=false",
                       "--dest-creds", "%s:%s" % (user, password),
                       "oci:%s:1" % self.img.layout, "docker://%s/%s:1" % (self.wharf.hostport, repo)])

    def assert_authn_401(self, st, hdrs, body):
        self.assertEqual(st, 401, body)
        self.assertEqual(hdrs.get("www-authenticate"), 'Basic realm="%s"' % REALM)
        doc = json.loads(body)
        self.assertEqual(doc, {"code": "UNAUTHORIZED", "message": "authentication required",
                               "detail": {"description": DESCRIPTION}})

    def verifications(self, user):
        return sum(1 for r in self.wharf.log_records()
                   if r.get("message") == "verifying password" and r.get("user") == user)

    # ---- authentication ----

    def test_base_anonymous_and_docker(self):
        # Anonymous reads exist (public/**): /v2/ lets the client in, with
        # the lower-case challenge Zot adds so it knows it could log in.
        st, hdrs, _ = self.req("GET", "/v2/")
        self.assertEqual(st, 200)
        self.assertEqual(hdrs.get("www-authenticate"), "basic realm=%s" % REALM)
        # Docker sends credentials only when challenged there.
        st, hdrs, body = self.req("GET", "/v2/", headers={"User-Agent": "docker/27.0 go/1.22"})
        self.assert_authn_401(st, hdrs, body)
        st, _, _ = self.req("GET", "/v2/", "alice", "alice-pw")
        self.assertEqual(st, 200)

    def test_bad_credentials(self):
        for user, pw in (("alice", "wrong"), ("nobody", "x"), ("carol", "carol-pw"),
                         ("bob", "alice-pw")):
            st, hdrs, body = self.req("GET", "/v2/_catalog", user, pw)
            self.assert_authn_401(st, hdrs, body)
        st, hdrs, body = self.req("GET", "/v2/_catalog", headers={"Authorization": "Bearer abc"})
        self.assert_authn_401(st, hdrs, body)
        st, hdrs, body = self.req("GET", "/v2/_catalog",
                                  headers={"Authorization": "Basic !!!notbase64"})
        self.assert_authn_401(st, hdrs, body)
        # The unsupported hash was named at start.
        self.assertTrue(any(r.get("user") == "carol" and "unsupported hash" in r.get("message", "")
                            for r in self.wharf.log_records()))
        # "Basic Og==" (empty user and password) is no credentials: anonymous.
        st, _, _ = self.req("GET", "/v2/", headers={"Authorization": "Basic Og=="})
        self.assertEqual(st, 200)

    def test_anonymous_denied_is_401_list(self):
        st, hdrs, body = self.req("GET", "/v2/private/x/tags/list")
        self.assertEqual(st, 401)
        self.assertEqual(hdrs.get("www-authenticate"), 'Basic realm="%s"' % REALM)
        doc = json.loads(body)
        self.assertEqual(doc["errors"][0]["code"], "UNAUTHORIZED")
        # ...and an authenticated user without the right gets 403 DENIED.
        st, hdrs, body = self.req("GET", "/v2/private/x/tags/list", "bob", "bob-pw")
        self.assertEqual(st, 403)
        self.assertEqual(hdrs.get("www-authenticate"), 'Basic realm="%s"' % REALM)
        self.assertEqual(json.loads(body)["errors"][0]["code"], "DENIED")

    @unittest.skipUnless(have("skopeo"), "skopeo is not installed")
    def test_skopeo_push_pull_and_rights(self):
        self.push("team/app")
        d = os.path.join(self.tmp, "pulled-bob")
        # bob ($6$) reads with his credentials...
        self.run_tool(["skopeo", "--policy", self.policy, "copy", "--src-tls-verify=false",
                       "--src-creds", "bob:bob-pw",
                       "docker://%s/team/app:1" % self.wharf.hostport, "dir:" + d])
        self.assertTrue(os.path.exists(os.path.join(d, "manifest.json")))
        # ...but may not push: 403 (skopeo says "denied").
        rc, out, err = self.run_tool(
            ["skopeo", "--policy", self.policy, "copy", "--dest-tls-verify=false",
             "--dest-creds", "bob:bob-pw", "oci:%s:1" % self.img.layout,
             "docker://%s/team/bob:1" % self.wharf.hostport], check=False)
        self.assertNotEqual(rc, 0)
        self.assertTrue(any(r.get("status") == 403 and "/v2/team/bob/" in r.get("path", "")
                            for r in self.wharf.log_records()), err)
        # Without credentials nothing under team/ is readable...
        rc, _, err = self.run_tool(
            ["skopeo", "--policy", self.policy, "inspect", "--raw", "--tls-verify=false",
             "docker://%s/team/app:1" % self.wharf.hostport], check=False)
        self.assertNotEqual(rc, 0)
        # ...while public/ is, anonymously.
        self.push("public/app")
        self.run_tool(["skopeo", "--policy", self.policy, "copy", "--src-tls-verify=false",
                       "docker://%s/public/app:1" % self.wharf.hostport,
                       "dir:" + os.path.join(self.tmp, "pulled-anon")])

    @unittest.skipUnless(have("oras"), "oras is not installed")
    def test_oras_push_pull(self):
        with open(os.path.join(self.tmp, "f.txt"), "wb") as f:
            f.write(b"oras with credentials\n")
        ref = "%s/private/art:v1" % self.wharf.hostport
        self.run_tool(["oras", "push", "--plain-http", "-u", "alice", "-p", "alice-pw", ref,
                       "f.txt:text/plain"])
        self.run_tool(["oras", "pull", "--plain-http", "-u", "alice", "-p", "alice-pw", "-o",
                       os.path.join(self.tmp, "oras-out"), ref])
        with open(os.path.join(self.tmp, "oras-out", "f.txt"), "rb") as f:
            self.assertEqual(f.read(), b"oras with credentials\n")
        rc, _, _ = self.run_tool(["oras", "pull", "--plain-http", "-u", "bob", "-p", "bob-pw",
                                  "-o", os.path.join(self.tmp, "oras-bob"), ref], check=False)
        self.assertNotEqual(rc, 0)

    def test_update_needs_update_right(self):
        # public/**: alice may create but not update there.
        m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                   "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                                   "size": 2},
                        "layers": []}).encode()
        h = {"Authorization": basic("alice", "alice-pw")}
        st, _, body = self.req("POST", "/v2/public/upd/blobs/uploads/?digest=sha256:"
                               "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                               headers=dict(h, **{"Content-Type": "application/octet-stream"}),
                               body=b"{}")
        self.assertEqual(st, 201, body)
        ct = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        st, _, body = self.req("PUT", "/v2/public/upd/manifests/t", headers=dict(h, **ct), body=m)
        self.assertEqual(st, 201, body)   # a new tag: create
        st, _, body = self.req("PUT", "/v2/public/upd/manifests/t", headers=dict(h, **ct), body=m)
        self.assertEqual(st, 403, body)   # the tag exists: update
        st, _, body = self.req("PUT", "/v2/other/upd/manifests/t", headers=dict(h, **ct), body=m)
        self.assertIn(st, (201, 400))     # ** grants alice everything (400: blob missing there)

    def test_catalog_filtered(self):
        h = {"Authorization": basic("alice", "alice-pw")}
        for repo in ("public/c1", "private/c2", "team/c3"):
            st, _, body = self.req("POST", "/v2/%s/blobs/uploads/?digest=sha256:"
                                   "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" % repo,
                                   headers=h, body=b"{}")
            self.assertEqual(st, 201, body)

        def catalog(*cred):
            st, _, body = self.req("GET", "/v2/_catalog", *cred)
            self.assertEqual(st, 200, body)
            return set(json.loads(body)["repositories"])
        a, b, anon = catalog("alice", "alice-pw"), catalog("bob", "bob-pw"), catalog()
        self.assertTrue({"public/c1", "private/c2", "team/c3"} <= a)
        self.assertIn("team/c3", b)
        self.assertIn("public/c1", b)
        self.assertNotIn("private/c2", b)
        self.assertIn("public/c1", anon)
        self.assertFalse(any(not r.startswith("public/") for r in anon), anon)
        # Paging counts what the user may see.
        st, hdrs, body = self.req("GET", "/v2/_catalog?n=1", "bob", "bob-pw")
        self.assertEqual(len(json.loads(body)["repositories"]), 1)
        self.assertIn("link", hdrs)

    def test_verification_cached(self):
        """Twenty blob GETs (ten at once, ten after) cost one password check."""
        before = self.verifications("dave")
        results = []

        def get():
            results.append(self.req("GET", "/v2/private/none/blobs/sha256:" + "0" * 64,
                                    "dave", "dave-pw")[0])
        threads = [threading.Thread(target=get) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(10):
            get()
        self.assertEqual(results, [404] * 20)
        self.assertEqual(self.verifications("dave") - before, 1)
        # A wrong password is not taken for the cached one.
        st, _, _ = self.req("GET", "/v2/private/none/blobs/sha256:" + "0" * 64, "dave", "x")
        self.assertEqual(st, 401)


@unittest.skipUnless(have_tools(), "htpasswd (apache2-utils) or openssl is not installed")
class FailDelayAndReloadTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wharf-auth2-")
        self.htpasswd = os.path.join(self.tmp, "htpasswd")
        write_htpasswd(self.htpasswd, USERS[:2])
        self.wharf = Wharf(auth_config(self.htpasswd, fail_delay=2)).start()

    def tearDown(self):
        self.wharf.stop()
        self.wharf.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def req(self, path, user=None, pw=None):
        h = {"Authorization": basic(user, pw)} if user else {}
        return self.wharf.request("GET", path, headers=h)

    def test_fail_delay_does_not_block_others(self):
        self.req("/v2/", "alice", "alice-pw")   # verified once, cached
        out = {}

        def bad():
            t = time.monotonic()
            out["status"] = self.req("/v2/_catalog", "alice", "nope")[0]
            out["bad"] = time.monotonic() - t
        th = threading.Thread(target=bad)
        th.start()
        time.sleep(0.3)
        t = time.monotonic()
        st = self.req("/v2/_catalog", "alice", "alice-pw")[0]
        good = time.monotonic() - t
        th.join()
        self.assertEqual(out["status"], 401)
        self.assertGreaterEqual(out["bad"], 1.9)
        self.assertEqual(st, 200)
        self.assertLess(good, 1.0)
        # Without credentials the challenge is not delayed (Zot).
        t = time.monotonic()
        st = self.wharf.request("GET", "/v2/private/x/tags/list")[0]
        self.assertEqual(st, 401)
        self.assertGreaterEqual(time.monotonic() - t, 1.9)  # authorization failure: delayed
        t = time.monotonic()
        self.wharf.request("GET", "/v2/")
        self.assertLess(time.monotonic() - t, 1.0)

    def test_sighup_reloads(self):
        self.assertEqual(self.req("/v2/_catalog", "alice", "alice-pw")[0], 200)
        write_htpasswd(self.htpasswd, [("erin", "erin-pw", "bcrypt"), ("bob", "bob-pw", "sha512")])
        self.wharf.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.req("/v2/_catalog", "erin", "erin-pw")[0] == 200:
                break
            time.sleep(0.1)
        self.assertEqual(self.req("/v2/_catalog", "erin", "erin-pw")[0], 200)
        # alice is gone, cached verification and all.
        self.assertEqual(self.req("/v2/_catalog", "alice", "alice-pw")[0], 401)
        # A file that cannot be read keeps the users loaded.
        os.unlink(self.htpasswd)
        self.wharf.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.assertEqual(self.req("/v2/_catalog", "erin", "erin-pw")[0], 200)
        self.assertIsNone(self.wharf.proc.poll())


class BodyWhilePasswordCheckedTest(unittest.TestCase):
    """A request with a body whose credentials are checked in the thread
    pool (the first use of a password: bcrypt): the body that arrived
    meanwhile is the handler's, not dropped. It used to be: a monolithic
    upload (or a search POST) with fresh credentials hung for ever."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wharf-auth3-")
        self.htpasswd = os.path.join(self.tmp, "htpasswd")
        write_htpasswd(self.htpasswd, USERS[:1])
        self.wharf = Wharf(auth_config(self.htpasswd)).start()

    def tearDown(self):
        self.wharf.stop()
        self.wharf.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def post(self, data, user, pw, timeout=10):
        import hashlib
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        return self.wharf.request(
            "POST", "/v2/held/blobs/uploads/?digest=" + d, body=data,
            headers={"Authorization": basic(user, pw),
                     "Content-Type": "application/octet-stream"}, timeout=timeout)

    def check_upload(self, size):
        # The server is new: alice's password is checked in the pool.
        import hashlib
        data = os.urandom(size)
        st, _, body = self.post(data, "alice", "alice-pw")
        self.assertEqual(st, 201, body)
        st, _, got = self.wharf.request(
            "GET", "/v2/held/blobs/sha256:" + hashlib.sha256(data).hexdigest(),
            headers={"Authorization": basic("alice", "alice-pw")})
        self.assertEqual((st, got), (200, data))

    def test_small_body_with_fresh_credentials(self):
        self.check_upload(100)

    def test_large_body_with_fresh_credentials(self):
        self.check_upload(3 * 1024 * 1024)

    def test_wrong_password_with_a_body_is_answered(self):
        st, _, _ = self.post(b"x" * 1000, "alice", "wrong")
        self.assertEqual(st, 401)
        self.assertEqual(self.wharf.request("GET", "/livez")[0], 200)  # still serving


class CountingUpstream:
    """A registry that answers nothing but counts what it is asked."""

    def __init__(self):
        self.hits = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            do_HEAD = do_GET

            def log_message(self, *a):
                pass
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@unittest.skipUnless(have_tools(), "htpasswd (apache2-utils) or openssl is not installed")
class PullThroughTest(unittest.TestCase):
    def test_anonymous_never_reaches_upstream(self):
        tmp = tempfile.mkdtemp(prefix="wharf-auth3-")
        up = CountingUpstream()
        try:
            htp = os.path.join(tmp, "htpasswd")
            write_htpasswd(htp, USERS[:1])
            access = {"repositories": {
                "public/**": {"anonymousPolicy": ["read"]},
                "cache/**": {"policies": [{"users": ["alice"], "actions": ["read"]}]}}}
            sync = {"extensions": {"sync": {"enable": True, "registries": [{
                "urls": [up.url], "onDemand": True, "tlsVerify": False,
                "content": [{"prefix": "**", "destination": "/cache"}]}]}}}
            with Wharf(auth_config(htp, access=access, extra=sync)) as w:
                for path in ("/v2/cache/library/alpine/manifests/latest",
                             "/v2/cache/library/alpine/blobs/sha256:" + "1" * 64):
                    st, _, _ = w.request("GET", path)
                    self.assertEqual(st, 401)
                    st, _, _ = w.request("GET", path,
                                         headers={"Authorization": basic("alice", "wrong")})
                    self.assertEqual(st, 401)
                self.assertEqual(up.hits, [])
                # alice may: now the upstream is asked.
                st, _, _ = w.request("GET", "/v2/cache/library/alpine/manifests/latest",
                                     headers={"Authorization": basic("alice", "alice-pw")})
                self.assertNotIn(st, (401, 403))
                self.assertTrue(up.hits)
        finally:
            up.close()
            shutil.rmtree(tmp, ignore_errors=True)


class RateLimitTest(unittest.TestCase):
    def test_burst_429_and_recovery(self):
        with Wharf({"http": {"ratelimit": {"rate": 5}}}) as w:
            path = "/v2/_catalog"
            statuses = [w.request("GET", path)[0] for _ in range(20)]
            self.assertIn(429, statuses)
            self.assertLessEqual(statuses.count(200), 8)   # burst 5 + refill over the run
            st, hdrs, body = w.request("GET", path)
            if st == 429:
                self.assertGreaterEqual(int(hdrs["retry-after"]), 1)
                self.assertEqual(json.loads(body)["errors"][0]["code"], "TOOMANYREQUESTS")
            # Another path is another bucket (Zot keys by client and path).
            self.assertEqual(w.request("GET", "/v2/")[0], 200)
            # Behind a trusted proxy (loopback by default), the client is the
            # rightmost X-Forwarded-For entry: another client, another bucket.
            self.assertEqual(w.request("GET", path,
                                       headers={"X-Forwarded-For": "198.51.100.7, 192.0.2.9"})[0], 200)
            time.sleep(1.2)
            self.assertEqual(w.request("GET", path)[0], 200)

    def test_untrusted_peer_cannot_choose_its_address(self):
        cfg = {"http": {"ratelimit": {"rate": 1},
                        "wharf": {"trustedProxies": ["192.0.2.0/24"]}}}
        with Wharf(cfg) as w:
            self.assertEqual(w.request("GET", "/v2/_catalog")[0], 200)
            for i in range(3):
                st = w.request("GET", "/v2/_catalog",
                               headers={"X-Forwarded-For": "203.0.113.%d" % i})[0]
                self.assertEqual(st, 429)

    def test_per_method(self):
        with Wharf({"http": {"ratelimit": {"methods": [{"method": "HEAD", "rate": 1}]}}}) as w:
            self.assertEqual([w.request("GET", "/v2/")[0] for _ in range(5)], [200] * 5)
            st = [w.request("HEAD", "/v2/")[0] for _ in range(3)]
            self.assertEqual(st[0], 200)
            self.assertIn(429, st)


if __name__ == "__main__":
    unittest.main()
