"""`wharf verify` on every server config of Zot's examples/, as mirrored key
for key in zot_examples/ (its README.md says how, and lists the verdicts).

Each is valid, or invalid naming exactly the keys Wharf refuses: a security
key it does not implement (fail closed), a remote storageDriver, subPaths.
Any other rejection would be a Wharf bug. A valid one also names exactly the
keys it accepts and ignores, so none is ignored silently.

The configs are run as Zot's are, from a directory laid out like Zot's
repository root: the relative paths they name (test/data/server.cert,
examples/config-ldap-credentials.json, ...) are created there, and their
absolute paths (/tmp/zot, /home/user/certs, ...) are moved under it."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import WHARF_BIN

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "zot_examples")

VALID = "config file is valid"

# file: (keys refused, keys accepted and ignored). A file with refused keys
# is invalid: verify stops there, so it warns of nothing.
EXPECTED = {
    "config-all-remote.json": (["storage.storageDriver"], []),
    "config-allextensions.json": ([], ["extensions.search.cve"]),
    "config-anonymous-authz.json": ([], []),
    "config-azure.json": (["storage.storageDriver"], []),
    "config-bearer-auth.json": (["http.auth.bearer"], []),
    "config-bearer-oidc-workload.json": (["http.auth.bearer"], []),
    "config-bench.json": ([], ["http.readTimeout", "http.writeTimeout"]),
    "config-boltdb.json": ([], []),
    "config-commit.json": ([], []),
    "config-conformance.json": ([], []),
    "config-cve-trivy.json": ([], ["extensions.search.cve"]),
    "config-cve.json": ([], ["extensions.search.cve"]),
    "config-docker-compat-sync.json": ([], ["http.compat"]),
    "config-docker-compat.json": ([], ["http.compat"]),
    "config-dynamodb.json": (["storage.storageDriver"], []),
    "config-events.json": ([], ["extensions.events"]),
    "config-example.json": (["http.auth.ldap"], []),
    "config-example.yaml": (["http.auth.ldap"], []),
    "config-gc-periodic.json": (["storage.subPaths"], []),
    "config-gc.json": ([], []),
    "config-gcs.json": (["storage.storageDriver"], []),
    "config-ldap.json": (["http.auth.ldap"], []),
    "config-lint.json": ([], ["extensions.lint"]),
    "config-metrics-authn-anonymous-access.json": ([], []),
    "config-metrics-authz.json": ([], []),
    "config-metrics.json": ([], []),
    "config-minimal.json": ([], []),
    "config-mtls-spiffe.json": (["http.auth.mtls"], []),
    "config-mtls.json": (["http.auth.mtls"], []),
    "config-multiple-cve.json": (["storage.subPaths"], []),
    "config-multiple.json": (["storage.subPaths"], []),
    "config-openid-claim-mapping.json": (["http.auth.openid"], []),
    "config-openid.json": (["http.auth.apikey", "http.auth.openid"], []),
    "config-policy.json": (["http.accessControl.repositories.prod/**.policies[0].conditions"],
                           []),
    "config-popular-registries.json": ([], []),
    "config-ratelimit.json": ([], []),
    "config-redis-all-options.json": (["storage.storageDriver"], []),
    "config-redis-cluster.json": (["storage.storageDriver"], []),
    "config-redis.json": (["storage.storageDriver"], []),
    "config-remote-session-store-redis.json": ([], ["http.auth.sessionDriver",
                                                    "extensions.search.cve"]),
    "config-retention.json": (["storage.subPaths"], []),
    "config-s3.json": (["storage.storageDriver", "storage.subPaths"], []),
    "config-sbom-trivy.json": ([], ["extensions.search.cve"]),
    "config-scheduler.json": ([], ["scheduler"]),
    "config-scrub.json": ([], []),
    "config-search.json": ([], ["extensions.search.cve"]),
    "config-sync-cloud-storage.json": (["storage.storageDriver"], []),
    "config-sync-ecr-credential-helper.json": (["storage.storageDriver"], []),
    "config-sync-gcp-credential-helper.json": (
        [], ["extensions.sync.registries[0].credentialHelper", "extensions.sync.downloadDir"]),
    "config-sync-oauth2-assertion-file.json": (
        [], ["extensions.sync.registries[0].credentialHelper",
             "extensions.sync.registries[0].oauth2CredentialHelper",
             "extensions.sync.downloadDir"]),
    "config-sync-oauth2-credential-helper.json": (
        [], ["extensions.sync.registries[0].credentialHelper",
             "extensions.sync.registries[0].oauth2CredentialHelper",
             "extensions.sync.downloadDir"]),
    "config-sync-oauth2-token-exchange.json": (
        [], ["extensions.sync.registries[0].credentialHelper",
             "extensions.sync.registries[0].oauth2CredentialHelper",
             "extensions.sync.downloadDir"]),
    "config-sync.json": (["extensions.sync.registries[0].onlySigned"], []),
    "config-test.json": ([], []),
    "config-tls.json": ([], []),
    "config-ui.json": ([], ["extensions.search.cve"]),
    # The retention example of Zot's examples/README.md, "KeepTags" and all.
    "readme-retention.json": ([], []),
}
for _i in range(3):
    for _tls in ("", "tls/"):
        EXPECTED["scale-out-cluster-cloud/%sconfig-cluster-member%d.json" % (_tls, _i)] = \
            (["storage.storageDriver"], [])

# The absolute paths the configs name, moved under the run's directory.
ABSOLUTE = re.compile(r'(?<=["\s])(?=/(?:tmp|home|config|etc|path)/|/data["\s])')

HTPASSWD = "user:$2y$05$" + "a" * 53 + "\n"


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def fixtures():
    out = []
    for d, _, names in os.walk(FIXTURES):
        for n in names:
            if n.endswith((".json", ".yaml")):
                out.append(os.path.relpath(os.path.join(d, n), FIXTURES))
    return sorted(out)


class ZotExamplesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="wharf-zotex-")
        r = cls.root

        def write(rel, text):
            path = os.path.join(r, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

        # Zot's test/data: a CA, a server pair it signed, an htpasswd file.
        data = os.path.join(r, "test", "data")
        os.makedirs(data)
        ca, ca_key = os.path.join(data, "ca.crt"), os.path.join(data, "ca.key")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
                "-subj", "/CN=wharf-zot-examples-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        cert, key = os.path.join(data, "server.cert"), os.path.join(data, "server.key")
        csr = os.path.join(data, "server.csr")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", "7",
                "-out", cert, "-days", "2")
        write("test/data/htpasswd", HTPASSWD)
        # Zot's examples/ side files, in their formats, with placeholders.
        write("examples/config-ldap-credentials.json", json.dumps(
            {"bindDN": "cn=reader,dc=example,dc=org", "bindPassword": "placeholder"}))
        for p in ("github", "google", "gitlab", "oidc"):
            write("examples/config-openid-%s-credentials.json" % p, json.dumps(
                {"clientid": "client-id", "clientsecret": "client-secret"}))
        write("examples/sessionKeys.json", json.dumps(
            {"hashKey": "h" * 64, "encryptKey": "e" * 32}))
        write("examples/sync-auth-filepath.json", json.dumps(
            {"127.0.0.1:8080": {"username": "user", "password": "pass"},
             "registry2.example.com:5000": {"username": "user2", "password": "pass2"}}))
        write("examples/sync-oauth2-assertion.jwt", "e30.e30.placeholder\n")
        write("examples/sync-oauth2-client-secret", "placeholder\n")
        write("examples/sync-oauth2-signing.json", json.dumps(
            {"privateKeyFile": "./examples/sync-oauth2-signing-key.pem",
             "algorithm": "ES256", "keyId": "example", "issuer": "wharf-test",
             "subject": "wharf-test", "audience": "https://idp.example.com/oauth2/token"}))
        shutil.copy(key, os.path.join(r, "examples", "sync-oauth2-signing-key.pem"))
        # The absolute paths, under the root.
        write("tmp/zot-test-htpasswd", HTPASSWD)
        write("tmp/zotpasswd", HTPASSWD)
        os.makedirs(os.path.join(r, "home/user/certs"))
        write("config/credentials.json", "{}")
        write("etc/zot/auth.crt", open(cert).read())
        write("path/to/gcs-credentials.json", "{}")
        # The configs themselves, their absolute paths moved.
        for rel in fixtures():
            with open(os.path.join(FIXTURES, rel)) as f:
                text = ABSOLUTE.sub(lambda m: r, f.read())
            write(os.path.join("configs", rel), text)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def verify(self, rel):
        """(exit status, keys named by errors, keys warned of, output)."""
        path = os.path.join(self.root, "configs", rel)
        p = subprocess.run([WHARF_BIN, "verify", path], cwd=self.root,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=30)
        out, err = p.stdout.decode(), p.stderr.decode()
        errors, warned = [], []
        # Problems: one line each on stderr, "wharf verify: <path>: <key>: ...".
        for line in err.splitlines():
            if line.startswith("wharf verify: "):
                line = line[len("wharf verify: "):]
            if line.startswith(path + ": "):
                errors.append(line[len(path) + 2:].split(":")[0])
        for line in (out + err).splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("level") == "warn":
                warned.append(rec.get("key") or rec.get("detail"))
        return p.returncode, errors, warned, out + err

    def test_every_example_has_a_verdict(self):
        self.assertEqual(fixtures(), sorted(EXPECTED))

    def test_verdicts(self):
        for rel in sorted(EXPECTED):
            refused, ignored = EXPECTED[rel]
            with self.subTest(config=rel):
                rc, errors, warned, out = self.verify(rel)
                if refused:
                    self.assertEqual(rc, 1, out)
                    self.assertNotIn(VALID, out)
                    self.assertEqual(sorted(errors), sorted(refused), out)
                else:
                    self.assertEqual(rc, 0, out)
                    self.assertIn(VALID, out)
                    self.assertEqual(sorted(warned), sorted(ignored), out)

    def test_refusals_say_why(self):
        # Each refusal tells the operator what to do: remove the key, or
        # serve the config with Zot.
        for rel in ("config-ldap.json", "config-s3.json", "config-sync.json",
                    "config-policy.json"):
            with self.subTest(config=rel):
                _, _, _, out = self.verify(rel)
                self.assertRegex(out, "remove (the key|storageDriver|subPaths)")

    def test_yaml_twin(self):
        # config-example.yaml is config-example.json in YAML with lower-case
        # keys: the same verdict.
        _, json_errors, json_warned, _ = self.verify("config-example.json")
        _, yaml_errors, yaml_warned, _ = self.verify("config-example.yaml")
        self.assertEqual(yaml_errors, json_errors)
        self.assertEqual(yaml_warned, json_warned)
        # Without LDAP, both are valid, with the same warnings.
        for rel in ("config-example.json", "config-example.yaml"):
            path = os.path.join(self.root, "configs", rel)
            with open(path) as f:
                text = f.read()
            if rel.endswith(".json"):
                cfg = json.loads(text)
                del cfg["http"]["auth"]["ldap"]
                text = json.dumps(cfg)
            else:
                text = re.sub(r"\n    ldap:\n(      .*\n)+", "\n", text)
                self.assertNotIn("ldap", text)
            with open(os.path.join(self.root, "configs", "noldap-" + rel), "w") as f:
                f.write(text)
        a = self.verify("noldap-config-example.json")
        b = self.verify("noldap-config-example.yaml")
        self.assertEqual(a[0], 0, a[3])
        self.assertEqual(b[0], 0, b[3])
        self.assertEqual(a[2], b[2])
        self.assertEqual(a[2], ["log.audit"])


if __name__ == "__main__":
    unittest.main()
