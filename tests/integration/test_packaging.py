"""The command line as a packaged program sees it, and the packaging itself:
each command's --help, --version's fields, exit statuses, one error line per
problem; `cmake --install` into a temporary prefix (the binary, the man page,
the default config, the systemd unit), the man page rendering cleanly, the
unit passing `systemd-analyze verify`, and the .deb cpack builds (control
fields, conffiles, files). Tools that are missing skip their part."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

from harness import WHARF_BIN, WHARF_SRC

# The build directory the binary was built in: cmake --install and cpack
# read it.
BUILD_DIR = os.path.dirname(os.path.abspath(WHARF_BIN))
HAVE_BUILD = os.path.isfile(os.path.join(BUILD_DIR, "CMakeCache.txt")) and \
    shutil.which("cmake") is not None

UNIT = "lib/systemd/system/wharf.service"
CONFIG = "etc/wharf/config.json"
MAN = "share/man/man8/wharf.8"
COMMANDS = ("serve", "verify", "scrub")


def run(args, timeout=30, env=None, cwd=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=timeout, env=e, cwd=cwd)
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


def wharf(*args, **kw):
    return run([WHARF_BIN] + list(args), **kw)


def version():
    rc, out, _ = wharf("--version")
    return out.splitlines()[0].split()[1]


def unit_settings(path):
    """[(key, value)] of the unit's lines, comments left out."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", ";", "[")) and "=" in line:
                k, v = line.split("=", 1)
                out.append((k, v))
    return out


class Tmp(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wharf-pkg-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def config(self, **top):
        cfg = {"distSpecVersion": "1.1.1",
               "storage": {"rootDirectory": os.path.join(self.tmp, "data")},
               "http": {"address": "127.0.0.1", "port": "5000"},
               "log": {"level": "info"}}
        for k, v in top.items():
            cfg.setdefault(k, {}).update(v)
        return self.write("config.json", json.dumps(cfg))


class HelpTest(Tmp):
    def test_command_help(self):
        for cmd in COMMANDS:
            texts = set()
            for args in ([cmd, "--help"], [cmd, "-h"], ["help", cmd],
                         [cmd, "some.json", "--help"]):
                rc, out, err = wharf(*args)
                self.assertEqual((rc, err), (0, ""), args)
                self.assertTrue(out.startswith("usage: wharf %s " % cmd), out)
                self.assertIn("exit status", out)
                texts.add(out)
            self.assertEqual(len(texts), 1, cmd)  # one text, however asked
        rc, out, _ = wharf("serve", "--help")
        self.assertIn("127.0.0.1:5000", out)
        self.assertIn("/var/lib/wharf", out)
        self.assertIn("HUP", out)
        self.assertNotIn("cannot read", out)

    def test_double_dash_ends_options(self):
        # After "--", "--help" is a file name.
        rc, out, err = wharf("verify", "--", "--help")
        self.assertEqual(rc, 1)
        self.assertIn("--help: cannot read", err)
        self.assertEqual(out, "")

    def test_general_help(self):
        for arg in ("--help", "-h", "help"):
            rc, out, err = wharf(arg)
            self.assertEqual((rc, err), (0, ""), arg)
            for cmd in COMMANDS:
                self.assertIn("wharf %s" % cmd, out)
            self.assertIn("wharf COMMAND --help", out)

    def test_usage_errors_are_one_line(self):
        cases = [
            ["serve", "--frob"], ["serve", "-x", "c.json"], ["verify", "--quiet", "c.json"],
            ["scrub", "--rate=1", "c.json"], ["--frob"], ["frobnicate"],
            ["verify"], ["scrub"], ["verify", "a.json", "b.json"], ["serve", "a", "b"],
            ["help", "frob"], ["help", "serve", "verify"], ["--help", "x"],
            ["--version", "extra"],
        ]
        for args in cases:
            rc, out, err = wharf(*args)
            self.assertEqual(rc, 2, args)
            self.assertEqual(out, "", args)
            self.assertEqual(len(err.splitlines()), 1, (args, err))
            self.assertTrue(err.startswith("wharf"), err)
        rc, _, err = wharf("serve", "--frob")
        self.assertIn('"--frob"', err)
        self.assertIn("wharf serve --help", err)
        # No command at all: the usage, on stderr.
        rc, out, err = wharf()
        self.assertEqual((rc, out), (2, ""))
        self.assertIn("usage:", err)


class VersionTest(Tmp):
    def test_fields(self):
        rc, out, err = wharf("--version")
        self.assertEqual((rc, err), (0, ""))
        lines = out.splitlines()
        self.assertRegex(lines[0], r"^wharf \d+\.\d+\.\d+$")
        want = [r"^distribution-spec 1\.1\.1$", r"^libuv \d+\.\d+\.\d+",
                r"^libcurl (\d+\.\d+\.\d+|not loaded \(.+\))", r"^llhttp \d+\.\d+\.\d+",
                r"^Mbed TLS 3\.\d+\.\d+", r"^cJSON \d+\.\d+\.\d+"]
        for pattern in want:
            self.assertTrue(any(re.search(pattern, l) for l in lines[1:]), (pattern, out))
        # -v and `version` are the same.
        self.assertEqual(wharf("-v")[1], out)
        self.assertEqual(wharf("version")[1], out)

    def test_libcurl_not_loadable(self):
        # libcurl is opened at run time: a broken one is reported, not fatal.
        d = os.path.join(self.tmp, "lib")
        os.mkdir(d)
        open(os.path.join(d, "libcurl.so.4"), "w").close()
        rc, out, err = wharf("--version", env={"LD_LIBRARY_PATH": d})
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"\nlibcurl not loaded \(.*libcurl\.so\.4.*\)\n")


class ErrorLinesTest(Tmp):
    """A problem is one line on stderr; with log.output a file, a failure of
    serve is also logged there, as JSON."""

    def test_verify(self):
        path = self.config(http={"adress": "x"})
        rc, out, err = wharf("verify", path)
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("http.adress", err)
        rc, out, err = wharf("verify", self.config())
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "%s: config file is valid\n" % path)

    def test_serve_tls(self):
        missing = os.path.join(self.tmp, "missing.pem")
        tls = {"tls": {"cert": missing, "key": missing}}
        path = self.config(http=tls)
        rc, out, err = wharf("serve", path)
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("http.tls.cert", err)
        self.assertFalse(err.lstrip().startswith("{"), err)
        # The log in a file: the same one line on stderr, the JSON line there.
        log = os.path.join(self.tmp, "wharf.log")
        path = self.config(http=tls, log={"output": log})
        rc, out, err = wharf("serve", path)
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        with open(log) as f:
            records = [json.loads(l) for l in f if l.strip()]
        errors = [r for r in records if r["level"] == "error"]
        self.assertEqual([r["message"] for r in errors], ["cannot set up TLS"], records)

    def test_storage(self):
        self.write("file", "")
        path = self.config(storage={"rootDirectory": os.path.join(self.tmp, "file", "data")})
        rc, out, err = wharf("serve", path)
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("cannot open storage", err)
        rc, out, err = wharf("scrub", path)
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.splitlines()), 1, err)

    def test_serve_port_taken(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        try:
            # On stderr, the log's one line says it.
            path = self.config(http={"port": str(port)})
            rc, out, err = wharf("serve", path)
            self.assertEqual(rc, 1)
            lines = err.splitlines()
            self.assertEqual(
                [l for l in lines if json.loads(l).get("level") == "error"], [lines[-1]], err)
            self.assertIn("cannot listen", lines[-1])
            # Logged in a file: stderr still says that it did not start.
            log = os.path.join(self.tmp, "wharf.log")
            path = self.config(http={"port": str(port)}, log={"output": log})
            rc, out, err = wharf("serve", path)
            self.assertEqual(rc, 1)
            self.assertEqual(err, "wharf serve: cannot start: the reason is logged in %s\n"
                             % log)
            with open(log) as f:
                self.assertIn("cannot listen", f.read())
        finally:
            s.close()


@unittest.skipUnless(HAVE_BUILD, "no CMake build directory beside WHARF_BIN")
class InstallTest(unittest.TestCase):
    """cmake --install into a temporary prefix, once for the class."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wharf-install-")
        cls.prefix = os.path.join(cls.tmp, "prefix")
        rc, out, err = run(["cmake", "--install", BUILD_DIR, "--prefix", cls.prefix],
                           timeout=120)
        if rc != 0:
            raise AssertionError("cmake --install failed:\n" + out + err)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def p(self, rel):
        return os.path.join(self.prefix, rel)

    def test_files(self):
        files = sorted(os.path.relpath(os.path.join(d, n), self.prefix)
                       for d, _, names in os.walk(self.prefix) for n in names)
        self.assertEqual(files, sorted(["bin/wharf", CONFIG, UNIT, MAN]))
        self.assertTrue(os.access(self.p("bin/wharf"), os.X_OK))
        for rel in (CONFIG, UNIT, MAN):
            self.assertEqual(os.stat(self.p(rel)).st_mode & 0o777, 0o644, rel)
        rc, out, _ = run([self.p("bin/wharf"), "--version"])
        self.assertEqual(rc, 0)
        self.assertEqual(out.splitlines()[0], "wharf " + version())

    def test_default_config(self):
        rc, out, err = run([self.p("bin/wharf"), "verify", self.p(CONFIG)])
        self.assertEqual((rc, err), (0, ""), out)
        self.assertIn("config file is valid", out)
        with open(self.p(CONFIG)) as f:
            cfg = json.load(f)
        # The classic config of examples/, on loopback, in /var/lib/wharf
        # (the built-in default's root, which --help names).
        with open(os.path.join(WHARF_SRC, "examples", "config.json")) as f:
            classic = json.load(f)
        self.assertEqual(cfg["storage"]["rootDirectory"], "/var/lib/wharf")
        self.assertIn("/var/lib/wharf", wharf("serve", "--help")[1])
        self.assertEqual(cfg["http"]["address"], "127.0.0.1")
        self.assertEqual(cfg["http"]["port"], "5000")
        self.assertNotIn("output", cfg.get("log", {}))  # stderr: the journal
        classic["storage"]["rootDirectory"] = "/var/lib/wharf"
        classic["http"]["address"] = "127.0.0.1"
        self.assertEqual(cfg, classic)

    def test_config_kept_on_reinstall(self):
        prefix = os.path.join(self.tmp, "again")
        os.makedirs(os.path.join(prefix, "etc", "wharf"))
        with open(os.path.join(prefix, CONFIG), "w") as f:
            f.write("{}\n")
        rc, out, err = run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], timeout=120)
        self.assertEqual(rc, 0, out + err)
        with open(os.path.join(prefix, CONFIG)) as f:
            self.assertEqual(f.read(), "{}\n")
        self.assertTrue(os.path.isfile(os.path.join(prefix, CONFIG + ".new")))

    @unittest.skipUnless(shutil.which("groff"), "groff not installed")
    def test_man_page_groff(self):
        rc, out, err = run(["groff", "-man", "-ww", "-z", self.p(MAN)])
        self.assertEqual((rc, out, err), (0, "", ""))

    @unittest.skipUnless(shutil.which("man"), "man not installed")
    def test_man_page_renders(self):
        rc, out, err = run(["man", "-l", self.p(MAN)],
                           env={"MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat",
                                "LC_ALL": "C.UTF-8"})
        self.assertEqual((rc, err), (0, ""))
        headings = [l for l in out.splitlines() if re.match(r"^[A-Z][A-Z ]+$", l)]
        self.assertEqual(headings, ["NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS",
                                    "FILES", "SIGNALS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"])
        self.assertIn("wharf %s" % version(), out)
        for word in ("serve", "verify", "scrub", "--version", "/etc/wharf/config.json",
                     "SIGHUP", "htpasswd"):
            self.assertIn(word, out)

    def test_unit(self):
        s = unit_settings(self.p(UNIT))
        d = dict(s)
        bin_, conf = self.p("bin/wharf"), self.p(CONFIG)
        self.assertEqual(d["ExecStart"], "%s serve %s" % (bin_, conf))
        self.assertEqual(d["ExecStartPre"], "%s verify %s" % (bin_, conf))
        want = {
            "Type": "simple", "User": "wharf", "Group": "wharf",
            "ExecReload": "/bin/kill -HUP $MAINPID", "Restart": "on-failure",
            "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/wharf",
            "StateDirectory": "wharf", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
            "ProtectHome": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
            "ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "RestrictNamespaces": "yes",
            "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
            "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
            "CapabilityBoundingSet": "", "LimitNOFILE": "65536", "UMask": "0027",
            "MemoryMax": "256M", "WantedBy": "multi-user.target",
        }
        for k, v in want.items():
            self.assertEqual(d.get(k), v, k)
        self.assertIn(("SystemCallFilter", "@system-service"), s)

    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze not installed")
    def test_unit_verifies(self):
        # MANPATH: Documentation=man:wharf(8) is checked with man.
        env = {"MANPATH": self.p("share/man"), "SYSTEMD_LOG_COLOR": "0"}
        rc, out, err = run(["systemd-analyze", "verify", self.p(UNIT)], env=env, timeout=60)
        self.assertEqual((rc, out, err), (0, "", ""))
        rc, out, err = run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                            self.p(UNIT)], env=env, timeout=60)
        m = re.search(r"Overall exposure level for wharf\.service: (\d+\.\d+)", out + err)
        self.assertTrue(m, out + err)
        print("[systemd-analyze security] exposure %s" % m.group(1))
        self.assertLessEqual(float(m.group(1)), 1.5, out)


@unittest.skipUnless(HAVE_BUILD and shutil.which("cpack") and shutil.which("dpkg-deb")
                     and shutil.which("dpkg-shlibdeps"),
                     "cpack, dpkg-deb or dpkg-shlibdeps missing, or no build directory")
class DebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="wharf-deb-")
        rc, out, err = run(["cpack", "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"),
                            "-B", cls.tmp], timeout=300)
        if rc != 0:
            raise AssertionError("cpack failed:\n" + out + err)
        arch = subprocess.run(["dpkg", "--print-architecture"], stdout=subprocess.PIPE,
                              check=True).stdout.decode().strip()
        cls.deb = os.path.join(cls.tmp, "wharf_%s_%s.deb" % (version(), arch))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def deb_field(self, name):
        return subprocess.run(["dpkg-deb", "-f", self.deb, name], stdout=subprocess.PIPE,
                              check=True).stdout.decode().strip()

    def test_control(self):
        self.assertTrue(os.path.isfile(self.deb), os.listdir(self.tmp))
        self.assertEqual(self.deb_field("Package"), "wharf")
        self.assertEqual(self.deb_field("Version"), version())
        self.assertEqual(self.deb_field("Section"), "net")
        depends = [d.strip().split()[0] for d in self.deb_field("Depends").split(",")]
        # dpkg-shlibdeps's, and libcurl, which it cannot see (dlopen).
        for pkg in ("libc6", "libuv1", "libcjson1", "libcurl4", "adduser", "procps"):
            self.assertIn(pkg, depends)
        self.assertTrue(any(d.startswith("libmbedtls") for d in depends), depends)
        self.assertTrue(any(d.startswith("libllhttp") for d in depends), depends)

    def test_files(self):
        out = subprocess.run(["dpkg-deb", "-c", self.deb], stdout=subprocess.PIPE,
                             check=True).stdout.decode()
        files = sorted(l.split()[-1] for l in out.splitlines() if not l.startswith("d"))
        self.assertEqual(files, ["./etc/wharf/config.json", "./lib/systemd/system/wharf.service",
                                 "./usr/bin/wharf", "./usr/share/man/man8/wharf.8.gz"])

    def test_scripts_and_unit(self):
        d = os.path.join(self.tmp, "x")
        subprocess.run(["dpkg-deb", "-R", self.deb, d], check=True)
        with open(os.path.join(d, "DEBIAN", "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/wharf/config.json"])
        for name in ("postinst", "prerm", "postrm"):
            path = os.path.join(d, "DEBIAN", name)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o755, name)
            self.assertEqual(run(["sh", "-n", path])[0], 0, name)
        with open(os.path.join(d, "DEBIAN", "postinst")) as f:
            postinst = f.read()
        self.assertIn("adduser --system", postinst)
        self.assertIn("deb-systemd-helper enable", postinst)
        code = "\n".join(l for l in postinst.splitlines() if not l.lstrip().startswith("#"))
        self.assertNotRegex(code, r"(systemctl|deb-systemd-invoke) +(--\S+ +)*start")
        s = dict(unit_settings(os.path.join(d, UNIT)))
        self.assertEqual(s["ExecStart"], "/usr/bin/wharf serve /etc/wharf/config.json")
        self.assertEqual(s["ExecStartPre"], "/usr/bin/wharf verify /etc/wharf/config.json")
        # The packaged binary is the built one, stripped.
        rc, out, _ = run([os.path.join(d, "usr", "bin", "wharf"), "--version"])
        self.assertEqual(rc, 0)
        self.assertEqual(out, wharf("--version")[1])


if __name__ == "__main__":
    unittest.main()
