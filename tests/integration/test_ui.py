"""extensions.ui: the web UI compiled into the binary (src/ext/ui.c, the pages
in src/ext/ui/), against the real binary.

HTTP: the page paths answer index.html, the files are under /assets/, every
answer carries the security headers (zot-reference.md §9, with a stricter
CSP), unknown files are 404, GET and HEAD only, ETags and 304, gzip, the
registry's routes and the health probes are not the UI's, no credentials are
needed for the pages, and the files are really inside the executable (a copy
of it alone in a directory, run from /).

Headless Chromium (Debian's, over the DevTools protocol: browser.py): the
repository list shows the pushed repositories and filters them, a
repository page shows its tags and platforms and a pull command naming the
host:port the browser used, the cache page degrades when /v2/_wharf/status
is missing (and shows real data when it is there), the login form appears on
a 401 and logs in, a phone-sized screen needs no sideways scrolling, dark
mode, keyboard focus; and no page meets a CSP violation, an exception or a
console error. Search is off in these servers (the pages then read the
catalog and tags); with search built in, one more test reads it through
GraphQL."""

import gzip
import os
import shutil
import subprocess
import tempfile
import unittest

import browser
import harness
import images
from harness import WHARF_SRC, Wharf, have

UI_DIR = os.path.join(WHARF_SRC, "src", "ext", "ui")
UI = {"extensions": {"ui": {"enable": True}}}

SECURITY = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'; require-trusted-types-for 'script'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
}

PAGES = ["/", "/home", "/explore", "/login", "/cache", "/image/team%2Fapp",
         "/image/team%2Fapp/tag/1.0", "/image/a/b/c", "/user/apikey"]


def asset(name):
    with open(os.path.join(UI_DIR, name), "rb") as f:
        return f.read()


def sha512_htpasswd(path, user, password):
    h = subprocess.run(["openssl", "passwd", "-6", password], check=True,
                       stdout=subprocess.PIPE).stdout.decode().strip()
    with open(path, "w") as f:
        f.write("%s:%s\n" % (user, h))


class UIHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Wharf(UI).start()

    @classmethod
    def tearDownClass(cls):
        cls.w.stop()
        cls.w.cleanup()

    def check_security(self, h, what):
        for k, v in SECURITY.items():
            self.assertEqual(h.get(k), v, "%s: %s" % (what, k))
        self.assertIn("camera=()", h.get("permissions-policy", ""), what)

    def test_pages_answer_index_html(self):
        index = asset("index.html")
        for path in PAGES:
            st, h, body = self.w.request("GET", path)
            self.assertEqual(st, 200, path)
            self.assertEqual(h["content-type"], "text/html; charset=utf-8", path)
            self.assertEqual(body, index, path)
            self.assertEqual(h["cache-control"], "no-cache", path)
            self.assertTrue(h["etag"].startswith('"') and h["etag"].endswith('"'), path)
            self.check_security(h, path)

    def test_assets(self):
        for name, ctype in (("app.js", "text/javascript; charset=utf-8"),
                            ("app.css", "text/css; charset=utf-8"),
                            ("icon.svg", "image/svg+xml"),
                            ("index.html", "text/html; charset=utf-8")):
            st, h, body = self.w.request("GET", "/assets/" + name)
            self.assertEqual(st, 200, name)
            self.assertEqual(h["content-type"], ctype, name)
            self.assertEqual(body, asset(name), name)
            self.assertNotIn("content-encoding", h, name)
            self.check_security(h, name)

    def test_pages_have_no_inline_script_or_style(self):
        index = asset("index.html").decode()
        self.assertNotIn("<style", index)
        self.assertNotIn("style=", index)
        self.assertNotRegex(index, r"<script(?![^>]*\bsrc=)")
        self.assertNotRegex(index, r"\son[a-z]+=")
        for name in os.listdir(UI_DIR):
            text = asset(name).decode()
            for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                        "eval(", "new Function", "http://", "https://", "@import", "url("):
                if name == "icon.svg" and bad == "http://":
                    continue  # the SVG namespace
                self.assertNotIn(bad, text, "%s uses %s" % (name, bad))

    def test_assets_are_small(self):
        total = sum(len(asset(n)) for n in os.listdir(UI_DIR))
        self.assertLess(total, 64 << 10, "the UI's files weigh %d bytes" % total)

    def test_unknown_files_are_404(self):
        for path in ("/assets/nope.js", "/assets/", "/assets/../index.html",
                     "/assets/app.js/x", "/assets/APP.JS"):
            st, h, body = self.w.request("GET", path)
            self.assertEqual(st, 404, path)
            self.assertEqual(h["content-type"], "text/plain; charset=utf-8", path)
            self.check_security(h, path)
            st, h, body = self.w.request("HEAD", path)
            self.assertEqual((st, body), (404, b""), path)

    def test_get_and_head_only(self):
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            for path in ("/", "/assets/app.js", "/image/x"):
                st, h, _ = self.w.request(method, path, body=b"" if method != "OPTIONS" else None)
                self.assertEqual(st, 405, "%s %s" % (method, path))
                self.assertEqual(h.get("allow"), "GET, HEAD")
                self.check_security(h, "%s %s" % (method, path))
        for path in ("/", "/assets/app.js"):
            st, h, body = self.w.request("HEAD", path)
            self.assertEqual(st, 200, path)
            self.assertEqual(body, b"")
            want = asset("index.html" if path == "/" else "app.js")
            self.assertEqual(int(h["content-length"]), len(want))
            self.check_security(h, "HEAD " + path)

    def test_etag_and_304(self):
        st, h, _ = self.w.request("GET", "/assets/app.js")
        etag = h["etag"]
        st2, h2, _ = self.w.request("GET", "/")
        self.assertNotEqual(h2["etag"], etag)  # one per file
        for inm in (etag, "W/" + etag, '"other", ' + etag, "*"):
            st, h, body = self.w.request("GET", "/assets/app.js", headers={"If-None-Match": inm})
            self.assertEqual((st, body), (304, b""), inm)
            self.assertEqual(h["etag"], etag)
            self.assertEqual(h["cache-control"], "no-cache")
            self.check_security(h, "304")
        st, h, body = self.w.request("GET", "/assets/app.js", headers={"If-None-Match": '"other"'})
        self.assertEqual(st, 200)
        self.assertEqual(body, asset("app.js"))
        # The pages share index.html's tag.
        st, h, _ = self.w.request("GET", "/image/x", headers={"If-None-Match": h2["etag"]})
        self.assertEqual(st, 304)

    def test_gzip(self):
        for ae in ("gzip", "br, gzip;q=0.5", "*", "deflate, GZIP"):
            st, h, body = self.w.request("GET", "/assets/app.js", headers={"Accept-Encoding": ae})
            self.assertEqual(st, 200)
            self.assertEqual(h.get("content-encoding"), "gzip", ae)
            self.assertEqual(h.get("vary"), "Accept-Encoding")
            self.assertEqual(gzip.decompress(body), asset("app.js"))
            self.assertLess(len(body), len(asset("app.js")) // 2)
            gz_etag = h["etag"]
        st, h, body = self.w.request("GET", "/assets/app.js")
        self.assertNotEqual(h["etag"], gz_etag)  # another representation
        self.assertEqual(h.get("vary"), "Accept-Encoding")
        for ae in ("gzip;q=0", "identity", "br", "gzip; q=0.000"):
            st, h, body = self.w.request("GET", "/assets/app.js", headers={"Accept-Encoding": ae})
            self.assertNotIn("content-encoding", h, ae)
            self.assertEqual(body, asset("app.js"), ae)
        st, h, body = self.w.request("GET", "/assets/app.js", headers={
            "Accept-Encoding": "gzip", "If-None-Match": gz_etag})
        self.assertEqual(st, 304)
        # Too small to be worth it: never compressed.
        st, h, body = self.w.request("GET", "/assets/icon.svg", headers={"Accept-Encoding": "gzip"})
        self.assertNotIn("content-encoding", h)
        self.assertNotIn("vary", h)

    def test_the_registry_and_probes_are_not_the_ui(self):
        st, h, body = self.w.request("GET", "/v2/")
        self.assertEqual(st, 200)
        self.assertEqual(h["docker-distribution-api-version"], "registry/2.0")
        self.assertNotIn("content-security-policy", h)
        st, h, body = self.w.request("GET", "/v2/_catalog")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-type"], "application/json")
        for path in ("/v2/image/x/tags/list", "/v2/_zot/ext/search", "/v2/_wharf/status",
                     "/metrics", "/v2/assets/app.js"):
            st, h, body = self.w.request("GET", path)
            self.assertNotIn("content-security-policy", h, path)
            self.assertNotEqual(h.get("content-type"), "text/html; charset=utf-8", path)
        for path in ("/livez", "/readyz", "/startupz"):
            st, h, body = self.w.request("GET", path)
            self.assertEqual((st, body), (200, b"ok"), path)
            self.assertNotIn("content-security-policy", h)
        # Not a page path: the pipeline's own 404.
        st, h, body = self.w.request("GET", "/nowhere")
        self.assertEqual(st, 404)
        self.assertNotIn("content-security-policy", h)


class UIConfigTest(unittest.TestCase):
    def test_disabled_or_absent(self):
        for cfg in ({"extensions": {"ui": {"enable": False}}}, {}):
            with Wharf(cfg) as w:
                for path in ("/", "/home", "/assets/app.js"):
                    st, h, body = w.request("GET", path)
                    self.assertEqual(st, 404, (cfg, path))
                    self.assertNotIn("content-security-policy", h)
                st, _, _ = w.request("GET", "/v2/")
                self.assertEqual(st, 200)

    def test_enabled_by_presence(self):
        with Wharf({"extensions": {"ui": {}}}) as w:
            st, h, body = w.request("GET", "/")
            self.assertEqual(st, 200)
            self.assertEqual(body, asset("index.html"))

    def test_files_are_inside_the_executable(self):
        """A copy of the binary alone in a directory, run from /, serves every
        file as in the source tree."""
        d = tempfile.mkdtemp(prefix="wharf-ui-bin-")
        saved = harness.WHARF_BIN
        cwd = os.getcwd()
        try:
            shutil.copy(harness.WHARF_BIN, os.path.join(d, "wharf"))
            harness.WHARF_BIN = os.path.join(d, "wharf")
            os.chdir("/")
            with Wharf(UI) as w:
                for name in os.listdir(UI_DIR):
                    st, h, body = w.request("GET", "/assets/" + name)
                    self.assertEqual((st, body), (200, asset(name)), name)
        finally:
            os.chdir(cwd)
            harness.WHARF_BIN = saved
            shutil.rmtree(d, ignore_errors=True)

    @unittest.skipUnless(have("openssl"), "needs openssl")
    def test_no_credentials_needed_for_the_pages(self):
        tmp = tempfile.mkdtemp(prefix="wharf-ui-auth-")
        try:
            pw = os.path.join(tmp, "htpasswd")
            sha512_htpasswd(pw, "alice", "alice-pw")
            with Wharf({"extensions": {"ui": {"enable": True}},
                        "http": {"auth": {"htpasswd": {"path": pw}}}}) as w:
                for path in ("/", "/login", "/image/x", "/assets/app.js"):
                    st, h, _ = w.request("GET", path)
                    self.assertEqual(st, 200, path)
                    self.assertNotIn("www-authenticate", h)
                st, h, _ = w.request("GET", "/v2/_catalog")
                self.assertEqual(st, 401)
                # The pages ask not to be challenged (no browser pop-up).
                st, h, _ = w.request("GET", "/v2/_catalog", headers={"X-ZOT-API-CLIENT": "zot-ui"})
                self.assertEqual(st, 401)
                self.assertNotIn("www-authenticate", h)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---- in a browser ----

_browser = None


def setUpModule():
    global _browser
    if browser.chromium_path():
        _browser = browser.Browser()


def tearDownModule():
    if _browser:
        _browser.close()


def need_browser(test):
    return unittest.skipUnless(browser.chromium_path(),
                               "needs chromium (packaging/deps.sh --test)")(test)


@need_browser
class UIBrowserTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = Wharf(UI).start()
        cls.tmp = tempfile.mkdtemp(prefix="wharf-ui-img-")
        single = images.single_image(os.path.join(cls.tmp, "single"))
        multi = images.multi_image(os.path.join(cls.tmp, "multi"))
        images.push(cls.w.hostport, single, "team/app", "1.0")
        images.push(cls.w.hostport, single, "team/app", "latest")
        cls.multi_digest = images.push(cls.w.hostport, multi, "library/multi", "v2")
        cls.p = _browser.page()

    @classmethod
    def tearDownClass(cls):
        cls.p.close()
        cls.w.stop()
        cls.w.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.p.call("Emulation.clearDeviceMetricsOverride")
        self.p.call("Emulation.setEmulatedMedia", media="", features=[])

    def tearDown(self):
        problems = self.p.problems()
        self.p.clear()
        self.assertEqual(problems, [], "the page met problems")

    def open(self, path, host=None):
        self.p.goto("http://%s%s" % (host or self.w.hostport, path))

    def set_value(self, id_, value, event="change"):
        self.p.js("(() => { const e = document.getElementById(%r); e.value = %r;"
                  "e.dispatchEvent(new Event(%r)); })()" % (id_, value, event))

    def cards(self):
        return self.p.js("[...document.querySelectorAll('.card h2')].map(e => e.textContent)")

    def test_repository_list(self):
        self.open("/explore")
        self.p.wait("document.querySelectorAll('.card').length === 2", what="two repositories")
        self.assertEqual(self.cards(), ["library/multi", "team/app"])
        self.p.wait("document.body.innerText.includes('2 tags')", what="tag counts")
        self.assertIn("Search is off", self.p.text())
        self.assertEqual(self.p.js("document.title"), "Repositories · Wharf")
        # The search box narrows the list (the catalog's names, here).
        self.set_value("q", "multi", "input")
        self.p.wait("document.querySelectorAll('.card').length === 1", what="one repository")
        self.assertEqual(self.cards(), ["library/multi"])
        self.assertEqual(self.p.js("location.search"), "?q=multi")
        self.set_value("q", "nothing-like-it", "input")
        self.p.wait("document.getElementById('count').textContent === 'No repository matches.'")

    def test_platform_filter(self):
        self.open("/explore")
        self.p.wait("document.querySelectorAll('.card').length === 2")
        self.set_value("arch", "arm64")
        self.p.wait("document.querySelectorAll('.card').length === 1 && "
                    "!document.getElementById('count').textContent.includes('reading')",
                    what="only the multi-platform image")
        self.assertEqual(self.cards(), ["library/multi"])
        self.assertEqual(self.p.js("location.search"), "?arch=arm64")
        self.open("/explore?os=linux&arch=amd64")
        self.p.wait("document.querySelectorAll('.card').length === 2 && "
                    "!document.getElementById('count').textContent.includes('reading')")
        self.assertEqual(self.p.js("document.getElementById('os').value"), "linux")

    def test_repository_page(self):
        self.open("/explore")
        self.p.wait("document.querySelectorAll('.card a').length === 2")
        # A link is followed in the page (no reload), and focus moves to the heading.
        self.p.js("[...document.querySelectorAll('.card a')].find(a => a.textContent === 'team/app').click()")
        self.p.wait("location.pathname === '/image/team%2Fapp'")
        self.p.wait("document.querySelectorAll('tbody tr').length === 2", what="two tags")
        self.assertEqual(self.p.js("document.querySelector('h1').textContent"), "team/app")
        self.assertEqual(self.p.js("document.activeElement.tagName"), "H1")
        tags = self.p.js("[...document.querySelectorAll('tbody tr')].map(r => r.dataset.tag).sort()")
        self.assertEqual(tags, ["1.0", "latest"])
        self.p.wait("document.querySelector('tbody').innerText.includes('linux/amd64')",
                    what="the platform")
        cmd = self.p.js("document.getElementById('pullcmd').textContent")
        self.assertEqual(cmd, "docker pull %s/team/app:latest" % self.w.hostport)
        self.p.js("document.querySelector('input[value=podman]').click()")
        self.assertEqual(self.p.js("document.getElementById('pullcmd').textContent"),
                         "podman pull --tls-verify=false %s/team/app:latest" % self.w.hostport)
        self.p.js("document.querySelector('input[value=nerdctl]').click()")
        self.assertEqual(self.p.js("document.getElementById('pullcmd').textContent"),
                         "nerdctl pull --insecure-registry %s/team/app:latest" % self.w.hostport)
        self.set_value("pulltag", "1.0")
        self.assertEqual(self.p.js("document.getElementById('pullcmd').textContent"),
                         "nerdctl pull --insecure-registry %s/team/app:1.0" % self.w.hostport)
        self.assertEqual(self.p.js("location.pathname"), "/image/team%2Fapp/tag/1.0")
        self.p.js("document.querySelector('input[value=docker]').click()")  # the choice is kept

    def test_pull_command_names_the_host_the_browser_used(self):
        self.open("/image/team%2Fapp", host="localhost:%d" % self.w.port)
        self.p.wait("document.getElementById('pullcmd').textContent.includes('pull')")
        self.assertEqual(self.p.js("document.getElementById('pullcmd').textContent"),
                         "docker pull localhost:%d/team/app:latest" % self.w.port)

    def test_copy_button(self):
        self.p.call("Browser.grantPermissions", permissions=["clipboardReadWrite",
                                                            "clipboardSanitizedWrite"])
        self.open("/image/team%2Fapp")
        self.p.wait("document.getElementById('pullcmd').textContent.includes('pull')")
        self.p.call("Page.bringToFront")
        self.p.js("document.getElementById('copy').click()")
        self.p.wait("['Copied', 'Press Ctrl+C'].includes(document.getElementById('copy').textContent)")
        if self.p.js("document.getElementById('copy').textContent") == "Copied":
            self.assertEqual(self.p.js("navigator.clipboard.readText()"),
                             "docker pull %s/team/app:latest" % self.w.hostport)

    def test_multi_platform_tag_page(self):
        self.open("/image/library%2Fmulti/tag/v2")
        self.p.wait("document.querySelector('tbody') && "
                    "document.querySelector('tbody').innerText.includes('linux/arm64/v8')",
                    what="both platforms")
        body = self.p.js("document.querySelector('tbody').innerText")
        self.assertIn("linux/amd64", body)
        self.assertIn(self.multi_digest[:19], body)  # the index's digest, shortened
        # The tag's own section: the whole digest and the media type.
        text = self.p.text()
        self.assertIn("Tag v2", text)
        self.assertIn(self.multi_digest, text)
        self.assertIn("application/vnd.oci.image.index.v1+json", text)
        self.assertEqual(self.p.js("document.getElementById('pullcmd').textContent"),
                         "docker pull %s/library/multi:v2" % self.w.hostport)

    def test_unknown_repository(self):
        self.open("/image/no%2Fsuch")
        self.p.wait("document.body.innerText.includes('There is no repository called no/such')")

    def test_cache_page(self):
        st, _, body = self.w.request("GET", "/v2/_wharf/status")
        self.assertEqual(st, 200, body)
        self.open("/cache")
        self.p.wait("document.querySelectorAll('.stat').length > 0", what="the status")

    def test_phone_sized_screen(self):
        self.p.call("Emulation.setDeviceMetricsOverride", width=360, height=740,
                    deviceScaleFactor=2, mobile=True)
        for path in ("/explore", "/image/library%2Fmulti/tag/v2", "/cache", "/login"):
            self.open(path)
            self.p.wait("!!document.querySelector('h1')")
            if path.startswith("/image"):
                self.p.wait("document.querySelector('tbody').innerText.includes('arm64')")
            self.assertLessEqual(self.p.js("document.documentElement.scrollWidth"),
                                 self.p.js("window.innerWidth"), "%s scrolls sideways" % path)

    def test_dark_and_light(self):
        self.p.call("Emulation.setEmulatedMedia", media="",
                    features=[{"name": "prefers-color-scheme", "value": "dark"}])
        self.open("/explore")
        self.p.wait("document.querySelectorAll('.card').length === 2")
        dark = self.p.js("getComputedStyle(document.body).backgroundColor")
        self.p.call("Emulation.setEmulatedMedia", media="",
                    features=[{"name": "prefers-color-scheme", "value": "light"}])
        light = self.p.js("getComputedStyle(document.body).backgroundColor")
        self.assertEqual(light, "rgb(255, 255, 255)")
        self.assertEqual(dark, "rgb(15, 20, 25)")

    def test_keyboard_and_labels(self):
        self.open("/image/team%2Fapp")
        self.p.wait("document.querySelectorAll('tbody tr').length === 2")
        unlabelled = self.p.js(
            "[...document.querySelectorAll('input, select, button')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')"
            " && !e.textContent.trim()).map(e => e.outerHTML)")
        self.assertEqual(unlabelled, [])
        self.p.js("document.activeElement.blur(); window.focus()")
        self.p.key("Tab", keycode=9)
        self.assertEqual(self.p.js("document.activeElement.textContent"), "Skip to content")
        self.p.key("Tab", keycode=9)
        self.assertEqual(self.p.js("document.activeElement.getAttribute('href')"), "/home")
        # Tab order reaches the copy button, with nothing unreachable in between.
        for _ in range(12):
            self.p.key("Tab", keycode=9)
            if self.p.js("document.activeElement.id") == "copy":
                break
        self.assertEqual(self.p.js("document.activeElement.id"), "copy")

    def test_not_found_page(self):
        self.open("/user/apikey")
        self.p.wait("document.querySelector('h1') && document.querySelector('h1').textContent === 'Not found'")


@need_browser
@unittest.skipUnless(have("openssl"), "needs openssl")
class UILoginTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wharf-ui-login-")
        pw = os.path.join(cls.tmp, "htpasswd")
        sha512_htpasswd(pw, "alice", "alice-pw")
        cls.w = Wharf({"extensions": {"ui": {"enable": True}},
                       "http": {"auth": {"htpasswd": {"path": pw}}}}).start()
        cls.p = _browser.page()

    @classmethod
    def tearDownClass(cls):
        cls.p.close()
        cls.w.stop()
        cls.w.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_login(self):
        self.p.goto("http://%s/explore" % self.w.hostport)
        self.p.wait("location.pathname === '/login'", what="the login form")
        self.assertEqual(self.p.js("location.search"), "?next=%2Fexplore")
        self.assertEqual(self.p.js("document.activeElement.id"), "user")
        fill = ("document.getElementById('user').value = 'alice';"
                "document.getElementById('password').value = %r;"
                "document.querySelector('form.login').requestSubmit()")
        self.p.js(fill % "wrong")
        self.p.wait("document.querySelector('[role=alert]').textContent.includes('not right')")
        self.p.js(fill % "alice-pw")
        self.p.wait("location.pathname === '/explore'", what="back to the list")
        self.p.wait("document.getElementById('count').textContent === 'No repositories yet.'")
        self.assertIn("Signed in as alice", self.p.js("document.getElementById('who').innerText"))
        # A reload keeps the session (this tab's sessionStorage); logging out forgets it.
        self.p.goto("http://%s/explore" % self.w.hostport)
        self.p.wait("document.getElementById('count') && "
                    "document.getElementById('count').textContent === 'No repositories yet.'")
        self.p.js("document.querySelector('#who button').click()")
        self.p.wait("location.pathname === '/login'")
        problems = [p for p in self.p.problems()]
        self.assertEqual(problems, [])


@need_browser
class UISearchTest(unittest.TestCase):
    """With search built in and on, the list and the repository page read
    GraphQL (GlobalSearch, ExpandedRepoInfo) instead of the catalog."""

    def test_search_mode(self):
        tmp = tempfile.mkdtemp(prefix="wharf-ui-search-")
        try:
            with Wharf({"extensions": {"ui": {"enable": True}, "search": {"enable": True}}}) as w:
                img = images.single_image(os.path.join(tmp, "single"))
                images.push(w.hostport, img, "team/app", "1.0")
                st, _, _ = w.request("GET", "/v2/_zot/ext/search?query=%7BGlobalSearch(query%3A%22%22)"
                                            "%7BRepos%7BName%7D%7D%7D")
                self.assertEqual(st, 200, "search answers")
                p = _browser.page()
                try:
                    p.goto("http://%s/explore" % w.hostport)
                    p.wait("document.querySelectorAll('.card').length === 1")
                    self.assertNotIn("Search is off", p.text())
                    self.assertNotIn("Search failed", p.text())
                    p.goto("http://%s/image/team%%2Fapp" % w.hostport)
                    p.wait("document.querySelectorAll('tbody tr').length === 1")
                    p.wait("document.querySelector('tbody').innerText.includes('linux/amd64')")
                    self.assertNotIn("Search failed", p.text())
                    self.assertEqual(p.problems(), [])
                finally:
                    p.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@need_browser
class UIStatusTest(unittest.TestCase):
    """The cache page with real data from /v2/_wharf/status: an upstream
    that answers nothing (a closed port) is listed, with its state."""

    def test_status_page(self):
        dead = harness.free_port()
        cfg = {"extensions": {"ui": {"enable": True}, "sync": {"enable": True, "registries": [{
            "urls": ["http://127.0.0.1:%d" % dead], "onDemand": True, "tlsVerify": False,
            "content": [{"prefix": "**", "destination": "/up"}]}]}}}
        with Wharf(cfg) as w:
            st, _, body = w.request("GET", "/v2/_wharf/status")
            self.assertEqual(st, 200, body)
            import json
            status = json.loads(body)
            p = _browser.page()
            try:
                p.goto("http://%s/cache" % w.hostport)
                p.wait("document.querySelectorAll('.stat').length >= 6", what="the summary")
                text = p.text()
                self.assertIn("Hit ratio", text)
                self.assertIn("Upstream registries", text)
                for u in status.get("upstreams", []):
                    self.assertIn(u["url"], text)
                self.assertIn("Wharf " + status["version"], text)
                # Polled: the uptime moves on.
                first = p.js("document.body.innerText")
                p.wait("document.body.innerText !== %r" % first, timeout=5, what="a new poll")
                self.assertEqual(p.problems(), [])
            finally:
                p.close()


if __name__ == "__main__":
    unittest.main()
