"""Shared pieces of the integration tests: start the real wharf binary (and
real peers) on 127.0.0.1 on free ports, talk HTTP to them, stop them by pid.

Every server a test starts is stopped by the test; nothing listens beyond
127.0.0.1; every wait is bounded."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

WHARF_BIN = os.environ.get("WHARF_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "wharf")
WHARF_SRC = os.environ.get("WHARF_SRC") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1", proc=None):
    """Wait until something accepts on host:port; False on timeout, or at once
    when proc (the server expected to listen) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def merge(base, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


class Wharf:
    """A wharf process with its own root directory and config file.

    config: a dict merged over a plain local-registry config.
    """

    def __init__(self, config=None, root=None, port=None, keep_root=False):
        self.tmp = tempfile.mkdtemp(prefix="wharf-it-")
        self.root = root or os.path.join(self.tmp, "data")
        self.port = port or free_port()
        self.keep_root = keep_root
        cfg = {
            "distSpecVersion": "1.1.1",
            "storage": {"rootDirectory": self.root, "gc": False, "dedupe": True},
            "http": {"address": "127.0.0.1", "port": str(self.port)},
            "log": {"level": "info"},
        }
        merge(cfg, config or {})
        self.config = cfg
        self.config_path = os.path.join(self.tmp, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.log_path = os.path.join(self.tmp, "wharf.log")
        self.proc = None

    def start(self, timeout=10.0, env=None, host="127.0.0.1", wrapper=None):
        """host: where to wait for the port (the config's http.address).
        wrapper: a command to run wharf under (valgrind ...)."""
        self.logf = open(self.log_path, "ab")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(list(wrapper or []) + [WHARF_BIN, "serve", self.config_path],
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=e)
        if not wait_port(self.port, timeout, host=host, proc=self.proc):
            self.stop()
            raise RuntimeError("wharf did not start; log:\n" + self.log())
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self.cleanup()

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        """Stop by pid; returns the exit status (None if it had to be killed)."""
        if not self.proc:
            return None
        rc = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:
            rc = self.proc.returncode
        self.proc = None
        self.logf.close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self.logf.close()

    def cleanup(self):
        if not self.keep_root:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_records(self):
        out = []
        for line in self.log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.port

    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=30):
        """One request on a fresh connection: (status, headers dict (lower-case), body bytes)."""
        return request(self.port, method, path, body, headers, timeout)

    def raw(self, data, timeout=5.0, read_until_close=True):
        """Send raw bytes; return everything read until the server closes (or timeout)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            s.sendall(data)
            out = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
                if not read_until_close:
                    break
            return out
        finally:
            s.close()


def request(port, method, path, body=None, headers=None, timeout=30):
    """One request to 127.0.0.1:port on a fresh connection: (status, headers
    dict (lower-case), body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


class Server:
    """A server process of a test (a reverse proxy, a balancer) listening on
    127.0.0.1:<port>: argv() starts it, its output goes to log_path, and it
    is stopped by pid. Subclasses give argv(), and env() or logs() when
    they need more."""

    def __init__(self, dir, port=None):
        self.dir = dir
        self.port = port or free_port()
        self.log_path = os.path.join(dir, "front.log")
        self.proc = None
        self.logf = None

    def argv(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    def start(self):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env())
        if not wait_port(self.port, 15, proc=self.proc):
            self.stop()
            raise RuntimeError("%s did not start:\n%s" % (type(self).__name__, self.log()))
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None

    def log(self):
        """The tail of each of logs(), for a failure's message."""
        out = ""
        for p in self.logs():
            try:
                with open(p, "rb") as f:
                    out += "== %s\n%s\n" % (p, f.read()[-4000:].decode("utf-8", "replace"))
            except OSError:
                pass
        return out

    def logs(self):
        return [self.log_path]


def derive(text, replacements):
    """Apply (old, new) replacements to an example config; each old must occur
    exactly once (so a test follows the example, or fails loudly)."""
    for old, new in replacements:
        n = text.count(old)
        if n != 1:
            raise AssertionError("example: %r occurs %d times, expected once" % (old, n))
        text = text.replace(old, new)
    return text


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def have(cmd):
    return shutil.which(cmd) is not None


def wait_for(fn, timeout, step=0.05):
    """fn() until it is true or timeout seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()
