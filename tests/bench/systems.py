"""The systems under test, as processes on 127.0.0.1 on free ports:

    wharf_server(bin, tmp, root, config)    Wharf with a Zot config.json
    distribution_server(tmp, proxy=URL)     Debian's docker-registry, plain or proxy mode
    nginx_static(tmp, root)                 nginx serving files at registry API paths
    nginx_throttle(tmp, upstream_url, rate) nginx in front of a registry, limit_rate per request

Each is a Server: start() returns the time from exec to the first 200 answer
to GET /v2/; stop() stops by pid (SIGTERM, then SIGKILL) and remembers the
process tree's peak RSS (VmHWM) in PEAKS, so the report can give the peak
over the whole run.

Pinning: on() is a context manager that sets this thread's CPU affinity
while a process is spawned, so the child (and every thread or process it
makes) inherits it. The servers of the warm phases run on SERVER_CPUS, the
load tools on CLIENT_CPUS.
"""

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time

import harness
import upstream

_ALL_CPUS = sorted(os.sched_getaffinity(0))
if len(_ALL_CPUS) >= 2:
    SERVER_CPUS = {_ALL_CPUS[0]}
    CLIENT_CPUS = set(_ALL_CPUS[1:])
else:
    SERVER_CPUS = CLIENT_CPUS = None

# system name -> [(role, VmHWM KiB)] of every stopped process tree
PEAKS = {}


def set_pinning(enabled):
    global SERVER_CPUS, CLIENT_CPUS
    if not enabled:
        SERVER_CPUS = CLIENT_CPUS = None


@contextlib.contextmanager
def on(cpus):
    """Run the block (and what it spawns) on cpus; None: no change."""
    if not cpus:
        yield
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


# ------------------------------------------------------------------ /proc

def _status_kib(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def process_tree(pid):
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(_children(p))
    return out


# ------------------------------------------------------------------ HTTP probes

def get_v2(port, timeout=0.5, tls=False):
    """True when GET /v2/ answers 200 (one request, one connection; over
    TLS, unverified, when tls)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            s = raw
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s = ctx.wrap_socket(raw)
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    except OSError:
        return False


class Server:
    """A server process; argv is run with its output in log_path."""

    def __init__(self, system, role, argv, port, log_path, env=None, cleanup=None):
        self.system = system          # "wharf", "distribution", "nginx"
        self.role = role              # e.g. "local", "pull-through", "proxy"
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.env = env                # the whole environment; None: inherit
        self._cleanup = cleanup
        self.proc = None
        self.startup_s = None
        self.tls = False              # serves HTTPS (the readiness probe speaks TLS)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, cpus=None, timeout=15.0, poll_s=0.0005):
        """Spawn, then poll GET /v2/ until 200. Returns seconds from exec to that answer."""
        logf = open(self.log_path, "ab")
        with on(cpus):
            t0 = time.monotonic()
            self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env)
        logf.close()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if get_v2(self.port, tls=self.tls):
                self.startup_s = time.monotonic() - t0
                return self.startup_s
            if self.proc.poll() is not None:
                break
            time.sleep(poll_s)
        self.stop()
        raise RuntimeError("%s (%s) did not answer GET /v2/; log:\n%s"
                           % (self.system, self.role, self.log()[-3000:]))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        """VmRSS of the process tree (nginx: master + workers)."""
        return sum(_status_kib(p, "VmRSS") for p in process_tree(self.pid)) if self.alive() else 0

    def rss_parts_kib(self):
        """VmRSS and its parts (RssAnon: heap and stacks; RssFile: the binary
        and shared libraries; RssShmem) summed over the process tree."""
        keys = ("VmRSS", "RssAnon", "RssFile", "RssShmem")
        tree = process_tree(self.pid) if self.alive() else []
        return {k: sum(_status_kib(p, k) for p in tree) for k in keys}

    def hwm_kib(self):
        """The largest VmHWM in the tree (nginx: the worker that peaked)."""
        if not self.alive():
            return 0
        return max(_status_kib(p, "VmHWM") for p in process_tree(self.pid))

    def cpu_seconds(self):
        """user + system CPU time of the process tree so far."""
        total = 0
        for p in process_tree(self.pid) if self.alive() else ():
            try:
                with open("/proc/%d/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])   # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout=15.0):
        if not self.proc:
            return None
        rc = self.proc.poll()
        if rc is None:
            PEAKS.setdefault(self.system, []).append((self.role, self.hwm_kib()))
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.exit_status = rc
        self.proc = None
        return rc

    def cleanup(self):
        if self._cleanup:
            self._cleanup()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


# ------------------------------------------------------------------ factories

def wharf_server(bin_path, root, config=None, role="local", log_level="warn", port=None):
    """Wharf on port (default: a free one) with data in root; config is
    merged over harness.Wharf's plain local-registry config (which writes
    the file)."""
    cfg = {"log": {"level": log_level},
           "http": {"wharf": {"maxConnections": 4096}}}
    harness.merge(cfg, config or {})
    w = harness.Wharf(cfg, root=root, port=port)
    return Server("wharf", role, [bin_path, "serve", w.config_path], w.port, w.log_path,
                  cleanup=w.cleanup)


# What Debian's package ships in /etc/docker/registry/config.yml and a user
# of it runs with, besides the address, the root directory and the log
# settings (level warn, access log off: no per-request logging in any system).
# Left out: its `auth: htpasswd` (no system here authenticates).
DEBIAN_STORAGE = "  cache:\n    blobdescriptor: inmemory\n"
DEBIAN_HTTP = "  headers:\n    X-Content-Type-Options: [nosniff]\n"
DEBIAN_REST = ("health:\n  storagedriver:\n    enabled: true\n    interval: 10s\n"
               "    threshold: 3\n")
DISTRIBUTION_SETUP = ("Debian's config.yml settings: storage.cache.blobdescriptor inmemory, "
                      "delete enabled, X-Content-Type-Options header, storage health check "
                      "every 10 s (not its htpasswd auth); log level warn, access log off")


def distribution_server(proxy_url=None, role=None):
    """docker-registry with upstream.Distribution's config (the one the
    integration tests use) plus the settings of Debian's packaged config
    (above), plus a proxy section when proxy_url is given (pull-through
    cache mode)."""
    d = upstream.Distribution()
    with open(d.config_path) as f:
        conf = f.read()
    conf = conf.replace("\nstorage:\n", "\nstorage:\n" + DEBIAN_STORAGE, 1)
    conf = conf.replace("\nhttp:\n", "\nhttp:\n" + DEBIAN_HTTP, 1) + DEBIAN_REST
    if DEBIAN_STORAGE not in conf or DEBIAN_HTTP not in conf:
        raise RuntimeError("unexpected Distribution config:\n" + conf)
    if proxy_url:
        conf += "proxy:\n  remoteurl: %s\n" % proxy_url
    with open(d.config_path, "w") as f:
        f.write(conf)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return Server("distribution", role or ("proxy" if proxy_url else "local"),
                  [upstream.REGISTRY_BIN, "serve", d.config_path], d.port, d.log_path,
                  env=env, cleanup=d.cleanup)


_NGINX_MAIN = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  tcp_nodelay on;
{http}
}}
"""

# Files laid out at the registry API paths; the Content-Type comes from the
# location (all bench manifests are OCI image manifests).
_NGINX_STATIC = """\
  access_log off;
  sendfile on;
  tcp_nopush on;
  server {{
    listen 127.0.0.1:{port};
    root {root};
    location = /v2/ {{
      default_type application/json;
      add_header Docker-Distribution-API-Version registry/2.0;
      return 200 '{{}}';
    }}
    location ~ ^/v2/.+/manifests/ {{
      types {{ }}
      default_type application/vnd.oci.image.manifest.v1+json;
    }}
    location ~ ^/v2/.+/blobs/ {{
      types {{ }}
      default_type application/octet-stream;
    }}
  }}
"""

# limit_rate is per request (nginx lets the first second's worth through at
# once, then holds the rate). It only throttles proxied bodies with
# proxy_buffering on: with it off, the body passed at full speed here.
_NGINX_THROTTLE = """\
  log_format upstream '$request_method $uri $status $body_bytes_sent $request_time';
  access_log {prefix}/access.log upstream;
  server {{
    listen 127.0.0.1:{port};
    location = /_status {{
      access_log off;
      stub_status;
    }}
    location / {{
      proxy_pass {upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_buffering on;
      proxy_max_temp_file_size 4096m;
      limit_rate {rate};
    }}
  }}
"""


def _nginx(tmp, role, http_block_fmt, **kw):
    prefix = os.path.join(tmp, "nginx-" + role)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    port = harness.free_port()
    http = http_block_fmt.format(prefix=prefix, port=port, **kw)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(_NGINX_MAIN.format(prefix=prefix, http=http))
    error_log = os.path.join(prefix, "error.log")
    s = Server("nginx", role, ["nginx", "-c", conf, "-p", prefix, "-e", error_log],
               port, error_log)
    s.prefix = prefix
    return s


def nginx_static(tmp, root):
    return _nginx(tmp, "static", _NGINX_STATIC, root=root)


def nginx_static_tls(tmp, root, cert, key):
    """The same static server over TLS (OpenSSL): TLS 1.2 and 1.3, a shared
    session cache and tickets (nginx's defaults), the same certificate as
    Wharf's."""
    fmt = _NGINX_STATIC.replace(
        "listen 127.0.0.1:{port};",
        "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {cert};\n"
        "    ssl_certificate_key {key};\n    ssl_protocols TLSv1.2 TLSv1.3;\n"
        "    ssl_session_cache shared:SSL:10m;\n    ssl_session_tickets on;")
    s = _nginx(tmp, "static-tls", fmt, root=root, cert=cert, key=key)
    s.tls = True
    return s


def nginx_throttle(tmp, upstream_url, rate_bytes):
    s = _nginx(tmp, "throttle", _NGINX_THROTTLE, upstream=upstream_url,
               rate=str(int(rate_bytes)))
    s.access_log = os.path.join(s.prefix, "access.log")
    return s


# ------------------------------------------------------------------ the throttle's books

def throttle_status(front):
    """nginx stub_status of the throttle: {"active", "reading", "writing", "waiting"}."""
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as s:
        s.sendall(b"GET /_status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            c = s.recv(4096)
            if not c:
                break
            data += c
    words = data.decode().split()
    out = {}
    for key, label in (("active", "connections:"), ("reading", "Reading:"),
                       ("writing", "Writing:"), ("waiting", "Waiting:")):
        out[key] = int(words[words.index(label) + 1])
    return out


def wait_throttle_idle(front, timeout):
    """Wait until no request is in progress at the throttle (the status
    request itself is the one writer). Returns False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = throttle_status(front)
        if st["writing"] <= 1 and st["reading"] == 0:
            return True
        time.sleep(0.05)
    return False


def log_offset(front):
    try:
        return os.path.getsize(front.access_log)
    except OSError:
        return 0


def throttle_requests(front, offset):
    """Requests logged since offset: [(method, uri, status, body_bytes)]."""
    with open(front.access_log, "rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", "replace").splitlines()
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 4:
            out.append((parts[0], parts[1], int(parts[2]), int(parts[3])))
    return out
