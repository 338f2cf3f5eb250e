"""The command line: `wharf --version`, `help`, `verify`, `serve` with a bad
config, and the exit statuses (0 ok, 1 invalid config or failure, 2 usage)."""

import glob
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import WHARF_BIN, WHARF_SRC


def run(*args, timeout=10):
    p = subprocess.run([WHARF_BIN] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        p.stderr.decode("utf-8", "replace")


class CliTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="wharf-cli-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def config(self, extra_http=None, **top):
        cfg = {
            "distSpecVersion": "1.1.1",
            "storage": {"rootDirectory": os.path.join(self.tmp, "data")},
            "http": {"address": "127.0.0.1", "port": "5000"},
            "log": {"level": "info"},
        }
        cfg["http"].update(extra_http or {})
        cfg.update(top)
        return self.write("config.json", json.dumps(cfg))

    # ---- version and help ----

    def test_version(self):
        rc, out, _ = run("--version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^wharf \d+\.\d+\.\d+\n")

    def test_help(self):
        for arg in ("--help", "help"):
            rc, out, _ = run(arg)
            self.assertEqual(rc, 0, arg)
            self.assertIn("serve", out, arg)
            self.assertIn("verify", out, arg)
            self.assertIn("/var/lib/wharf", out, arg)

    def test_usage_errors(self):
        rc, _, err = run()
        self.assertEqual(rc, 2)
        self.assertIn("usage", err)
        rc, _, err = run("frobnicate")
        self.assertEqual(rc, 2)
        self.assertIn("frobnicate", err)
        rc, _, _ = run("verify")
        self.assertEqual(rc, 2)
        rc, _, _ = run("verify", "a.json", "b.json")
        self.assertEqual(rc, 2)

    # ---- verify ----

    def test_verify_examples(self):
        examples = sorted(glob.glob(os.path.join(WHARF_SRC, "examples", "*.json")))
        names = [os.path.basename(e) for e in examples]
        self.assertIn("config.json", names)  # the classic Zot pull-through one
        # The files the examples name, under a temp root: verify reads them.
        for d in ("etc/wharf/certs/registry.example.com", "var/log/wharf", "var/lib"):
            os.makedirs(os.path.join(self.tmp, d), exist_ok=True)
        self.write("etc/wharf/credentials.json", "{}")
        for path in examples:
            with open(path) as f:
                text = f.read()
            for p in ("/etc/wharf", "/var/log/wharf", "/var/lib/wharf"):
                text = text.replace('"%s' % p, '"%s%s' % (self.tmp, p))
            path = self.write(os.path.basename(path), text)
            rc, out, err = run("verify", path)
            self.assertEqual(rc, 0, "%s: %s %s" % (path, out, err))
            self.assertIn("config file is valid", out, path)

    def test_verify_minimal(self):
        rc, out, _ = run("verify", self.config())
        self.assertEqual(rc, 0, out)
        self.assertIn("config file is valid", out)

    def assert_invalid(self, path, *needles):
        rc, out, err = run("verify", path)
        self.assertEqual(rc, 1, out + err)
        self.assertNotIn("config file is valid", out)
        for n in needles:
            self.assertIn(n, out + err)
        return out

    def test_verify_misspelt_key(self):
        self.assert_invalid(self.config({"adress": "127.0.0.1"}), "http.adress")
        # One line, on stderr, and the path is said once, not twice.
        rc, out, err = run("verify", os.path.join(self.tmp, "config.json"))
        self.assertEqual(out, "")
        self.assertEqual(err.count("\n"), 1, err)
        self.assertEqual(err.count("config.json:"), 1, err)

    def test_verify_wrong_type(self):
        with open(self.config()) as f:
            cfg = json.load(f)
        cfg["storage"]["gc"] = "yes"
        self.assert_invalid(self.write("c2.json", json.dumps(cfg)), "storage.gc")

    def test_verify_bad_duration(self):
        self.assert_invalid(self.config({"wharf": {"idleTimeout": "1x"}}),
                            "http.wharf.idleTimeout")

    def test_verify_bad_port(self):
        self.assert_invalid(self.config({"port": "70000"}), "http.port")

    def test_verify_missing_file(self):
        missing = os.path.join(self.tmp, "nope.json")
        self.assert_invalid(missing, missing)

    def test_verify_invalid_json(self):
        self.assert_invalid(self.write("broken.json", '{"storage": {'), "line")

    def test_verify_trailing_bytes(self):
        # Whatever follows the JSON value, a NUL included, makes it invalid:
        # verify must judge the file serve would read.
        with open(self.config()) as f:
            text = f.read()
        self.assert_invalid(self.write("t1.json", text + " x"), "after the JSON value")
        self.assert_invalid(self.write("t2.json", text + "\0garbage"), "NUL byte")
        self.assert_invalid(self.write("t3.json", text + "\n{}"), "after the JSON value")
        rc, out, _ = run("verify", self.write("t4.json", text + " \n\t"))
        self.assertEqual(rc, 0, out)

    def test_verify_lists_every_problem(self):
        # Config text and the files it names: one run, every problem, one
        # line each, with a suggestion for a misspelt key.
        cfg = {
            "storage": {"rootDirectory": os.path.join(self.tmp, "data"), "gcDelay": "soon"},
            "http": {"address": "no-such-host.invalid", "port": "5000", "adress": "x",
                     "auth": {"htpasswd": {"path": os.path.join(self.tmp, "nope.htpasswd")}}},
            "log": {"output": os.path.join(self.tmp, "no", "dir", "wharf.log")},
        }
        rc, out, err = run("verify", self.write("many.json", json.dumps(cfg)))
        self.assertEqual(rc, 1, out + err)
        self.assertIn("storage.gcDelay", err)
        self.assertIn('did you mean "address"', err)
        self.assertEqual(len(err.strip().splitlines()), 2, err)  # the text's problems
        del cfg["storage"]["gcDelay"]
        del cfg["http"]["adress"]
        rc, out, err = run("verify", self.write("files.json", json.dumps(cfg)))
        self.assertEqual(rc, 1, out + err)
        for key in ("http.auth.htpasswd.path", "log.output", "http.address"):
            self.assertIn(key, err)
        self.assertEqual(len(err.strip().splitlines()), 3, err)

    def test_verify_weak_types_and_yaml(self):
        # As Zot reads them: strings for booleans and numbers, a single
        # value for a list, and YAML with lower-case keys.
        cfg = {"storage": {"rootDirectory": os.path.join(self.tmp, "data"), "gc": "true"},
               "http": {"address": "127.0.0.1", "port": 5000},
               "extensions": {"sync": {"enable": "true", "registries": [
                   {"urls": "https://r.example.com", "onDemand": "true", "maxRetries": "2",
                    "retryDelay": "5s", "content": [{"prefix": "**"}]}]}}}
        rc, out, err = run("verify", self.write("weak.json", json.dumps(cfg)))
        self.assertEqual(rc, 0, out + err)
        yaml = ("distspecversion: 1.1.1\n"
                "storage:\n  rootdirectory: %s\n  gc: true\n  gcdelay: 1h\n"
                "http:\n  address: 127.0.0.1\n  port: 8080\n"
                "log:\n  level: debug\n" % os.path.join(self.tmp, "data"))
        rc, out, err = run("verify", self.write("config.yaml", yaml))
        self.assertEqual(rc, 0, out + err)
        self.assertIn("config file is valid", out)
        rc, out, err = run("verify", self.write("bad.yml", yaml.replace("port: 8080",
                                                                        "port: [8080")))
        self.assertEqual(rc, 1, out + err)
        self.assertIn("invalid YAML", err)

    def test_verify_refuses_remote_storage(self):
        with open(self.config()) as f:
            cfg = json.load(f)
        cfg["storage"]["storageDriver"] = {"name": "s3", "bucket": "b"}
        self.assert_invalid(self.write("s3.json", json.dumps(cfg)), "storage.storageDriver",
                            "local filesystem")

    def test_verify_refuses_unimplemented_security_keys(self):
        # Fail closed: a config that asks for protection Wharf does not give
        # is never accepted, by verify or by serve.
        cases = [
            ({"auth": {"ldap": {"address": "ldap.example.com", "baseDN": "dc=x",
                                "userAttribute": "uid"}}}, "http.auth.ldap"),
            ({"auth": {"bearer": {"realm": "https://auth.example.com/token",
                                  "service": "s", "cert": "/c"}}}, "http.auth.bearer"),
            ({"auth": {"openid": {"providers": {}}}}, "http.auth.openid"),
            ({"auth": {"apikey": True}}, "http.auth.apikey"),
            ({"auth": {"mtls": {"identityAttributes": ["CN"]}}}, "http.auth.mtls"),
            ({"auth": {"htpasswd": {"path": "/h"}},
              "accessControl": {"repositories": {"**": {"policies": [
                  {"users": ["a"], "actions": ["read"],
                   "conditions": [{"expression": "req.tls.enabled"}]}]}}}},
             "conditions"),
        ]
        for i, (http_extra, key) in enumerate(cases):
            path = self.config(http_extra)
            out = self.assert_invalid(path, key, "not implemented")
            rc, sout, serr = run("serve", path)
            self.assertEqual(rc, 1, key)
            self.assertIn(key, sout + serr)

    def test_verify_auth_keys(self):
        htpasswd = self.write("htpasswd", "alice:$2y$05$" + "a" * 53 + "\n")
        path = self.config({"realm": "wharf", "auth": {"htpasswd": {"path": htpasswd},
                                                       "failDelay": 1},
                            "accessControl": {"repositories": {"**": {
                                "defaultPolicy": ["read"]}}},
                            "ratelimit": {"rate": 5, "methods": [{"method": "GET", "rate": 2}]}})
        rc, out, err = run("verify", path)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("not implemented", out + err)
        # Unlike Zot, verify reads the htpasswd file, as serve will: a
        # missing one fails both, naming the key.
        os.unlink(htpasswd)
        rc, out, err = run("verify", path)
        self.assertEqual(rc, 1)
        self.assertIn("http.auth.htpasswd.path", err)
        rc, out, err = run("serve", path)
        self.assertEqual(rc, 1)
        self.assertIn("htpasswd", out + err)

    # ---- serve ----

    def test_serve_bad_config(self):
        path = self.config({"adress": "127.0.0.1"})
        rc, out, err = run("serve", path)
        self.assertEqual(rc, 1)
        self.assertIn("http.adress", out + err)
        rc, _, _ = run("serve", os.path.join(self.tmp, "nope.json"))
        self.assertEqual(rc, 1)
        rc, _, _ = run("serve", self.write("broken.json", "{"))
        self.assertEqual(rc, 1)

    def test_serve_too_many_args(self):
        rc, _, _ = run("serve", "a.json", "b.json")
        self.assertEqual(rc, 2)


if __name__ == "__main__":
    unittest.main()
