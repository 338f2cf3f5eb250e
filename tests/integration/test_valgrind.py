"""The server under valgrind (memcheck): a push, a pull through the cache from
a real Distribution upstream, pipelining, a malformed request, then SIGTERM.
Any invalid access, uninitialised use or leak makes valgrind exit non-zero."""

import hashlib
import os
import shutil
import subprocess
import unittest

import harness
import images
import upstream


@unittest.skipUnless(shutil.which("valgrind"), "valgrind not installed")
class ValgrindTest(unittest.TestCase):
    def test_memcheck_clean(self):
        dist = upstream.Distribution()
        dist.start()
        self.addCleanup(dist.stop)
        w = harness.Wharf({
            "extensions": {"sync": {"enable": True, "registries": [{
                "urls": ["http://" + dist.hostport], "onDemand": True, "tlsVerify": False,
                "maxRetries": 1, "retryDelay": "100ms",
                "content": [{"prefix": "**", "destination": "/hub"}]}]}}})
        img = images.single_image(os.path.join(w.tmp, "img"), tag="v1")
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        "oci:%s:v1" % img.layout, "docker://%s/library/vg:v1" % dist.hostport],
                       check=True, timeout=120)
        vlog = os.path.join(w.tmp, "valgrind.log")
        w.start(timeout=60, wrapper=[
            "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--log-file=" + vlog])
        try:
            # Push a blob, read it back with a range.
            data = os.urandom(300000)
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            st, _, _ = w.request("POST", "/v2/private/a/blobs/uploads/?digest=" + digest,
                                 body=data, timeout=60)
            self.assertEqual(st, 201)
            st, _, body = w.request("GET", "/v2/private/a/blobs/" + digest,
                                    headers={"Range": "bytes=10-99"}, timeout=60)
            self.assertEqual((st, body), (206, data[10:100]))
            # Pull an image through the cache.
            st, h, body = w.request("GET", "/v2/hub/library/vg/manifests/v1", timeout=60,
                                    headers={"Accept": img.media_type})
            self.assertEqual(st, 200)
            self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), img.digest)
            self.assertEqual(h.get("docker-content-digest"), img.digest)
            for blob in img.layers:
                st, _, body = w.request("GET", "/v2/hub/library/vg/blobs/" + blob.digest,
                                        timeout=60)
                self.assertEqual(st, 200)
                self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), blob.digest)
            # Pipelining and a malformed request.
            out = w.raw(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n" * 5 + b"BAD\r\n\r\n",
                        timeout=30)
            self.assertEqual(out.count(b"HTTP/1.1 200"), 5)
            self.assertIn(b"HTTP/1.1 400", out)
        finally:
            rc = w.stop(timeout=120)
            with open(vlog) as f:
                report = f.read()
            w.cleanup()
        self.assertEqual(rc, 0, "valgrind reported errors:\n" + report)


if __name__ == "__main__":
    unittest.main()
