"""SIGHUP reloads the config file, as Zot reloads it live: access control,
authentication, rate limits, the log level, GC settings, with no connection
dropped; a config that does not verify is refused and the running one stays;
what needs a restart is said so.

Run:  cd tests/integration && WHARF_BIN=../../build/wharf python3 run.py test_reload
"""

import json
import os
import signal
import socket
import time
import unittest

from harness import Wharf
from test_auth import basic, have_tools, write_htpasswd


class ReloadTest(unittest.TestCase):

    def setUp(self):
        self.w = Wharf({"log": {"level": "info"}})
        self.w.start()

    def tearDown(self):
        self.w.stop()
        self.w.cleanup()

    def rewrite(self, change):
        cfg = json.loads(json.dumps(self.w.config))
        change(cfg)
        self.w.config = cfg
        with open(self.w.config_path, "w") as f:
            json.dump(cfg, f)

    def hup_and_wait(self, message):
        n = self.count(message)
        self.w.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.count(message) <= n:
            time.sleep(0.02)
        self.assertGreater(self.count(message), n, self.w.log()[-3000:])

    def count(self, message):
        return sum(1 for r in self.w.log_records() if r.get("message") == message)

    def test_rate_limit_and_log_level_live(self):
        # A keep-alive connection open across the reload keeps working.
        s = socket.create_connection(("127.0.0.1", self.w.port), timeout=5)
        try:
            self.assertEqual(self.w.request("GET", "/v2/")[0], 200)
            self.rewrite(lambda c: (c["http"].update({"ratelimit": {"rate": 1}}),
                                    c["log"].update({"level": "debug"})))
            self.hup_and_wait("SIGHUP: configuration reloaded")
            codes = [self.w.request("GET", "/v2/")[0] for _ in range(5)]
            self.assertIn(429, codes, "the new rate limit applies")
            # Something logged at debug only: a TLS hello on the plain port.
            with socket.create_connection(("127.0.0.1", self.w.port), timeout=5) as t:
                t.sendall(b"\x16\x03\x01\x00\x05hello")
                t.recv(100)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and \
                    not any(r.get("level") == "debug" for r in self.w.log_records()):
                time.sleep(0.05)
            self.assertTrue(any(r.get("level") == "debug" for r in self.w.log_records()),
                            "the new log level applies")
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200", s.recv(4096))
        finally:
            s.close()
        self.assertIsNone(self.w.proc.poll())

    def test_invalid_config_refused_running_one_stays(self):
        self.rewrite(lambda c: c["http"].update({"adress": "x", "ratelimit": {"rate": 1}}))
        self.hup_and_wait("SIGHUP: the config file does not verify: the running "
                          "configuration stays")
        codes = [self.w.request("GET", "/v2/")[0] for _ in range(5)]
        self.assertEqual(codes, [200] * 5, "the old config (no rate limit) stays")
        self.assertIsNone(self.w.proc.poll())

    def test_restart_only_settings_are_said(self):
        self.rewrite(lambda c: c["storage"].update({"rootDirectory": c["storage"]["rootDirectory"] + "2"}))
        self.hup_and_wait("SIGHUP: configuration reloaded")
        notes = [r for r in self.w.log_records()
                 if r.get("message") == "SIGHUP: this setting changes only with a restart"]
        self.assertTrue(any("storage.rootDirectory" in r.get("key", "") for r in notes))
        self.assertFalse(os.path.exists(self.w.root + "2"))

    def test_gc_turned_on_sweeps(self):
        self.rewrite(lambda c: c["storage"].update({"gc": True, "gcDelay": "1h"}))
        self.hup_and_wait("SIGHUP: configuration reloaded")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.count("gc successfully completed"):
            time.sleep(0.05)
        self.assertTrue(self.count("gc successfully completed"))


@unittest.skipUnless(have_tools(), "needs htpasswd and openssl")
class AccessReloadTest(unittest.TestCase):

    def test_access_control_and_users_live(self):
        w = Wharf({})
        htpasswd = os.path.join(w.tmp, "htpasswd")
        write_htpasswd(htpasswd, [("alice", "alice-pw", "bcrypt")])
        cfg = {"http": {"auth": {"htpasswd": {"path": htpasswd}},
                        "accessControl": {"repositories": {"**": {
                            "anonymousPolicy": ["read"],
                            "policies": [{"users": ["alice"], "actions": ["read", "create"]}]}}}}}
        w = Wharf(cfg)
        write_htpasswd(htpasswd, [("alice", "alice-pw", "bcrypt")])
        w.start()
        try:
            self.assertEqual(w.request("GET", "/v2/_catalog")[0], 200)
            # Anonymous reading taken away, bob added: live.
            write_htpasswd(htpasswd, [("alice", "alice-pw", "bcrypt"),
                                      ("bob", "bob-pw", "bcrypt")])
            cfg = json.loads(json.dumps(w.config))
            cfg["http"]["accessControl"]["repositories"]["**"] = {
                "policies": [{"users": ["alice", "bob"], "actions": ["read"]}]}
            with open(w.config_path, "w") as f:
                json.dump(cfg, f)
            w.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and \
                    w.request("GET", "/v2/x/tags/list")[0] not in (401, 403):
                time.sleep(0.05)
            self.assertIn(w.request("GET", "/v2/x/tags/list")[0], (401, 403))
            st = w.request("GET", "/v2/_catalog",
                           headers={"Authorization": basic("bob", "bob-pw")})[0]
            self.assertEqual(st, 200)
        finally:
            w.stop()
            w.cleanup()


if __name__ == "__main__":
    unittest.main()
