"""Headless Chromium driven over the DevTools protocol, with no package
beyond Debian's chromium: a small WebSocket client (RFC 6455, text frames
only) speaks CDP to one page.

    with Browser() as b:
        p = b.page()
        p.goto("http://127.0.0.1:5000/explore")
        p.wait("document.querySelectorAll('.card').length >= 2")
        p.js("document.title")
        p.problems()    # CSP violations, exceptions, console errors so far

The browser listens on 127.0.0.1 on a free port, has its own profile in a
temporary directory, and is stopped by pid. Every wait is bounded."""

import base64
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from urllib.parse import urlparse

from harness import free_port


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class WebSocket:
    """A client connection: send text, receive text; answers pings."""

    def __init__(self, url, timeout=30):
        u = urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n"
                           % (u.path, u.hostname, u.port, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError("websocket handshake: %r" % head[:200])

    def _frame(self, opcode, data):
        n = len(data)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        m = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
        body = (int.from_bytes(data, "big") ^ m).to_bytes(n, "big") if n else b""
        self.sock.sendall(head + mask + body)

    def send(self, text):
        self._frame(0x1, text.encode())

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("websocket closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout):
        """The next text message, or None after timeout seconds."""
        self.sock.settimeout(timeout)
        parts = []
        try:
            while True:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._read(8))[0]
                data = self._read(n)  # the server does not mask
                op = b0 & 0x0F
                if op == 0x9:
                    self._frame(0xA, data)
                    continue
                if op == 0x8:
                    raise ConnectionError("websocket closed by the browser")
                if op in (0x0, 0x1):
                    parts.append(data)
                    if b0 & 0x80:
                        return b"".join(parts).decode()
        except socket.timeout:
            return None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# Installed before any page script runs; DevTools' own scripts are not
# subject to the page's CSP.
WATCH = """
window.__problems = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__problems.push('CSP ' + e.violatedDirective + ' ' + e.blockedURI);
});
"""


class Page:
    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events = []
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Page.enable")
        self.call("Page.addScriptToEvaluateOnNewDocument", source=WATCH)

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.ws.recv(max(0.01, deadline - time.monotonic()))
            if msg is None:
                break
            m = json.loads(msg)
            if m.get("id") == my:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)
        raise TimeoutError("%s: no answer in %ss" % (method, timeout))

    def js(self, expr, timeout=30):
        """The value of a JavaScript expression (promises awaited)."""
        r = self.call("Runtime.evaluate", timeout=timeout, expression=expr,
                      returnByValue=True, awaitPromise=True, userGesture=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError("%s: %s" % (expr, (d.get("exception") or {}).get(
                "description") or d.get("text")))
        return r.get("result", {}).get("value")

    def wait(self, expr, timeout=15, what=None):
        """Wait until expr is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                v = self.js(expr)
                if v:
                    return v
                last = v
            except RuntimeError as e:
                last = e
            time.sleep(0.1)
        raise AssertionError("timed out waiting for %s (last: %r); page text: %r; problems: %r"
                             % (what or expr, last, self.text()[:1500], self.problems()))

    def text(self):
        try:
            return self.js("document.body ? document.body.innerText : ''") or ""
        except Exception:  # noqa: BLE001 - only for messages
            return ""

    def goto(self, url, timeout=30):
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && location.href !== 'about:blank'",
                  timeout, what="the page to load")

    def problems(self):
        """CSP violations, uncaught exceptions and console errors seen so far
        (network errors, such as a 404 the page expects, are not counted)."""
        try:
            self.call("Runtime.evaluate", expression="1")  # collect pending events
        except Exception:  # noqa: BLE001
            pass
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: %s" % ((d.get("exception") or {}).get("description")
                                              or d.get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.%s: %s" % (p["type"], [a.get("value") for a in p.get("args", [])]))
            elif m == "Log.entryAdded":
                entry = p.get("entry", {})
                if entry.get("source") == "network":
                    continue
                if entry.get("level") == "error" or "Content Security Policy" in entry.get("text", ""):
                    out.append("log (%s): %s" % (entry.get("source"), entry.get("text")))
        try:
            out += self.js("window.__problems || []") or []
        except RuntimeError:
            pass
        return out

    def clear(self):
        self.events = []
        try:
            self.js("window.__problems = []")
        except RuntimeError:
            pass

    def key(self, key, code=None, keycode=0, shift=False):
        mods = 8 if shift else 0
        for t in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=t, key=key, code=code or key,
                      windowsVirtualKeyCode=keycode, modifiers=mods)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        self.ws.close()


class Browser:
    def __init__(self, width=1100, height=900):
        self.exe = chromium_path()
        if not self.exe:
            raise RuntimeError("no chromium")
        self.tmp = tempfile.mkdtemp(prefix="wharf-chromium-")
        self.port = free_port()
        args = [self.exe, "--headless=new", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--mute-audio", "--password-store=basic",
                "--user-data-dir=" + os.path.join(self.tmp, "profile"),
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=%d" % self.port,
                "--window-size=%d,%d" % (width, height), "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # the sandbox refuses to run as root
        self.log = open(os.path.join(self.tmp, "chromium.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.pages = []
        deadline = time.monotonic() + 60
        while True:
            try:
                self._http("GET", "/json/version")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError("chromium did not start")
                time.sleep(0.1)

    def _http(self, method, path):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def page(self):
        t = self._http("PUT", "/json/new?about:blank")
        p = Page(t["webSocketDebuggerUrl"])
        self.pages.append(p)
        return p

    def close(self):
        for p in self.pages:
            p.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # Its helper processes may write a last file just after it exits.
        for _ in range(20):
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not os.path.exists(self.tmp):
                break
            time.sleep(0.1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
