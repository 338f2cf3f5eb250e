/* The runtime side of `wharf verify`. See include/wharf/app/verify.h. */
#include "wharf/app/verify.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <uv.h>

#include "wharf/base/common.h"
#include "wharf/cache/upstream.h"
#include "wharf/ext/auth.h"
#include "wharf/net/tls.h"
#include "wharf/store/store.h"

struct problems {
	char **v;
	int n, cap;
};

__attribute__((format(printf, 3, 4))) static void add(struct problems *p, const char *key,
                                                      const char *fmt, ...)
{
	char msg[768], line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(line, sizeof(line), "%s%s%s", key ? key : "", key ? ": " : "", msg);
	p->v = wh_grow(p->v, sizeof(*p->v), p->n, &p->cap, 8);
	p->v[p->n++] = wh_strdup(line);
}

/* A directory that exists and we may create files in, or the closest
 * existing ancestor of one we could create. */
static void check_dir(struct problems *p, const char *key, const char *path)
{
	char buf[PATH_MAX];
	struct stat sb;

	if (stat(path, &sb) == 0) {
		if (!S_ISDIR(sb.st_mode))
			add(p, key, "%s: not a directory", path);
		else if (access(path, W_OK | X_OK) != 0)
			add(p, key, "%s: not writable: %s", path, strerror(errno));
		return;
	}
	if (errno != ENOENT) {
		add(p, key, "%s: %s", path, strerror(errno));
		return;
	}
	/* Created at start: its nearest existing ancestor must allow it. */
	snprintf(buf, sizeof(buf), "%s", path);
	for (;;) {
		char *slash = strrchr(buf, '/');
		if (!slash) {
			snprintf(buf, sizeof(buf), ".");
		} else if (slash == buf) {
			buf[1] = '\0';
		} else {
			*slash = '\0';
		}
		if (stat(buf, &sb) == 0)
			break;
		if (strcmp(buf, "/") == 0 || strcmp(buf, ".") == 0)
			break;
	}
	if (!S_ISDIR(sb.st_mode) || access(buf, W_OK | X_OK) != 0)
		add(p, key, "%s cannot be created: %s is not writable", path, buf);
}

static void check_file_readable(struct problems *p, const char *key, const char *path)
{
	if (access(path, R_OK) != 0)
		add(p, key, "%s: %s", path, strerror(errno));
}

static void check_log_output(struct problems *p, const char *path)
{
	char dir[PATH_MAX];
	struct stat sb;

	if (!path || !*path)
		return;
	if (stat(path, &sb) == 0) {
		if (S_ISDIR(sb.st_mode))
			add(p, "log.output", "%s: is a directory", path);
		else if (access(path, W_OK) != 0)
			add(p, "log.output", "%s: not writable: %s", path, strerror(errno));
		return;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	const char *d = dirname(dir);
	if (access(d, W_OK | X_OK) != 0)
		add(p, "log.output", "%s cannot be created in %s: %s", path, d, strerror(errno));
}

static void check_address(struct problems *p, const wh_http_settings *h)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[16];

	snprintf(port, sizeof(port), "%d", h->port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = getaddrinfo(h->address && *h->address ? h->address : NULL, port, &hints, &res);
	if (rc != 0)
		add(p, "http.address", "\"%s\" does not resolve: %s", h->address ? h->address : "",
		    gai_strerror(rc));
	else
		freeaddrinfo(res);
}

/* A registry's certDir, as curl will read it: ca.crt, and client.cert with
 * client.key, each optional but a pair together. */
static void check_cert_dir(struct problems *p, int i, const char *dir)
{
	char key[96], path[PATH_MAX], cert[PATH_MAX], pkey[PATH_MAX];
	struct stat sb;
	char msg[128];

	snprintf(key, sizeof(key), "extensions.sync.registries[%d].certDir", i);
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		add(p, key, "%s: not a directory", dir);
		return;
	}
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	if (access(path, F_OK) == 0) {
		mbedtls_x509_crt crt;
		mbedtls_x509_crt_init(&crt);
		int rc = mbedtls_x509_crt_parse_file(&crt, path);
		if (rc < 0) {
			mbedtls_strerror(rc, msg, sizeof(msg));
			add(p, key, "%s: not a certificate: %s", path, msg);
		}
		mbedtls_x509_crt_free(&crt);
	}
	snprintf(cert, sizeof(cert), "%s/client.cert", dir);
	snprintf(pkey, sizeof(pkey), "%s/client.key", dir);
	bool has_cert = access(cert, F_OK) == 0, has_key = access(pkey, F_OK) == 0;
	if (has_cert != has_key) {
		add(p, key, "%s: client.cert and client.key go together", dir);
		return;
	}
	if (!has_cert)
		return;
	mbedtls_x509_crt crt;
	mbedtls_x509_crt_init(&crt);
	int rc = mbedtls_x509_crt_parse_file(&crt, cert);
	if (rc < 0) {
		mbedtls_strerror(rc, msg, sizeof(msg));
		add(p, key, "%s: not a certificate: %s", cert, msg);
	}
	mbedtls_x509_crt_free(&crt);
	check_file_readable(p, key, pkey);
}

int wh_verify_runtime(const wh_config *cfg, bool reload, char ***problems, int *n)
{
	struct problems p = {0};
	char err[512];

	/* TLS: the pair loads and matches, the CA parses. */
	if (cfg->tls.cert) {
		wh_tls *tls = NULL;
		if (wh_tls_new(&cfg->tls, &tls, err, sizeof(err)) != 0)
			add(&p, "http.tls", "%s", err);
		wh_tls_free(tls);
	}
	/* htpasswd: read as the server reads it. */
	if (cfg->auth.htpasswd_path && *cfg->auth.htpasswd_path) {
		wh_auth *a = NULL;
		int rc = wh_auth_new(NULL, &cfg->auth, &a);
		if (rc != 0)
			add(&p, "http.auth.htpasswd.path", "%s: %s", cfg->auth.htpasswd_path,
			    wh_strerror(rc));
		wh_auth_free(a);
	}
	/* Sync: the credentials file parses, each certDir is whole. */
	if (cfg->sync.enable) {
		uv_loop_t loop;
		if (uv_loop_init(&loop) == 0) {
			wh_upstream *up = NULL;
			if (wh_upstream_new(&loop, &cfg->sync.upstream, &up, err, sizeof(err)) != 0)
				add(&p, NULL, "%s", err); /* it names the key */
			if (up)
				wh_upstream_free(up);
			uv_run(&loop, UV_RUN_DEFAULT);
			uv_loop_close(&loop);
		}
		for (int i = 0; i < cfg->sync.n_registries; i++)
			if (cfg->sync.registries[i].cert_dir && *cfg->sync.registries[i].cert_dir)
				check_cert_dir(&p, i, cfg->sync.registries[i].cert_dir);
	}
	check_log_output(&p, cfg->log.output);
	if (!reload)
		check_address(&p, &cfg->http);
	if (cfg->storage.root_dir)
		check_dir(&p, "storage.rootDirectory", cfg->storage.root_dir);
	*problems = p.v;
	*n = p.n;
	return p.n;
}
