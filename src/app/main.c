/* wharf: the command line. `serve [CONFIG]`, `verify CONFIG`, `scrub CONFIG`,
 * each with its own `--help`; `--version` (the libraries' too), `--help`.
 * Exit status: 0 ok, 1 invalid config, runtime failure or (scrub) content
 * affected, 2 usage. A problem is one line on stderr; with log.output a
 * file, a failure after the log is set up is logged there as well. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <libpsl.h>
#include <llhttp.h>
#include <mbedtls/version.h>
#include <uv.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "wharf/base/common.h"
#include "wharf/app/config.h"
#include "wharf/net/http.h"
#include "wharf/base/log.h"
#include "wharf/app/pipeline.h"
#include "wharf/app/verify.h"
#include "wharf/cache/upstream.h"
#include "wharf/ext/health.h"
#include "wharf/store/scrub.h"
#include "wharf/store/store.h"
#include "wharf/net/tls.h"

/* ---- help ---- */

/* The OCI Distribution Specification release the API follows. */
#define DIST_SPEC_VERSION "1.1.1"

static void usage(FILE *f)
{
	fprintf(f,
	        "wharf %s: an OCI registry and pull-through cache that reads Zot's config.json\n"
	        "\n"
	        "usage:\n"
	        "  wharf serve [CONFIG]   serve with CONFIG (Zot's config.json), or the built-in\n"
	        "                         default: Docker Hub and GHCR on demand, listening on\n"
	        "                         127.0.0.1:5000, data in %s\n"
	        "  wharf verify CONFIG    check CONFIG: \"config file is valid\", or the problem\n"
	        "  wharf scrub CONFIG     re-hash, offline, every image under CONFIG's\n"
	        "                         rootDirectory\n"
	        "  wharf COMMAND --help   the command's own help\n"
	        "  wharf --version        the version, and those of the libraries in use\n"
	        "  wharf --help           this text\n"
	        "\n"
	        "exit status: 0 ok, 1 invalid config or runtime failure (scrub: or content\n"
	        "affected), 2 usage error. See wharf(8).\n",
	        WHARF_VERSION, WH_DEFAULT_ROOT);
}

static void help_serve(FILE *f)
{
	fprintf(f,
	        "usage: wharf serve [-h] [--] [CONFIG]\n"
	        "\n"
	        "Serve the registry as CONFIG (Zot's config.json) says. Without CONFIG, the\n"
	        "built-in default: Docker Hub under /dockerhub and GHCR under /ghcr, fetched on\n"
	        "demand; private pushes under any other name; listening on 127.0.0.1:5000; data\n"
	        "in %s; the log on stderr.\n"
	        "\n"
	        "signals: TERM or INT stops (after http.wharf.drainDelay, while /readyz fails;\n"
	        "a second signal stops at once). HUP re-reads the http.tls certificate and key\n"
	        "and the htpasswd file; the config file itself is not re-read.\n"
	        "\n"
	        "options:\n"
	        "  -h, --help   this text\n"
	        "  --           what follows is CONFIG, even if it begins with \"-\"\n"
	        "\n"
	        "exit status: 0 stopped by a signal, 1 invalid config or a failure to start,\n"
	        "2 usage error\n",
	        WH_DEFAULT_ROOT);
}

static void help_verify(FILE *f)
{
	fputs("usage: wharf verify [-h] [--] CONFIG\n"
	      "\n"
	      "Check CONFIG as `wharf serve` would read it, the http.tls files included.\n"
	      "Prints \"CONFIG: config file is valid\" on stdout, or the problem with the key's\n"
	      "path on stderr (\"http.adress: unknown key\"). Keys Zot accepts that Wharf does\n"
	      "not implement are named in warnings; the config is still valid.\n"
	      "\n"
	      "options:\n"
	      "  -h, --help   this text\n"
	      "  --           what follows is CONFIG, even if it begins with \"-\"\n"
	      "\n"
	      "exit status: 0 valid, 1 invalid, 2 usage error\n",
	      f);
}

static void help_scrub(FILE *f)
{
	fputs("usage: wharf scrub [-h] [--] CONFIG\n"
	      "\n"
	      "Check, offline, that every image under CONFIG's rootDirectory still hashes to\n"
	      "its digests: its manifests and blobs are read again. Prints a line per image\n"
	      "(REPOSITORY TAG STATUS AFFECTED BLOB ERROR) and logs them as Zot does. Refuses\n"
	      "while a server answers on CONFIG's address and port: a running server checks\n"
	      "its own root with extensions.scrub. Reads as fast as the disk goes unless\n"
	      "extensions.scrub.wharf.rate is set.\n"
	      "\n"
	      "options:\n"
	      "  -h, --help   this text\n"
	      "  --           what follows is CONFIG, even if it begins with \"-\"\n"
	      "\n"
	      "exit status: 0 every image ok, 1 an image affected, an invalid config or a\n"
	      "failure, 2 usage error\n",
	      f);
}

/* ---- version ---- */

/* The version, then the libraries': read from the library itself where it
 * tells (so an upgraded shared library shows), else as built. */
static void print_version(void)
{
	char curl[256], pcre[64] = "", mbed[32];

	printf("wharf %s\n", WHARF_VERSION);
	printf("distribution-spec %s\n", DIST_SPEC_VERSION);
	printf("libuv %s\n", uv_version_string());
	if (wh_upstream_curl_version(curl, sizeof(curl)) == 0)
		printf("libcurl %s\n", curl);
	else
		printf("libcurl not loaded (%s)\n", curl);
	printf("llhttp %d.%d.%d (built with)\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR,
	       LLHTTP_VERSION_PATCH);
	mbedtls_version_get_string_full(mbed); /* "Mbed TLS 3.6.2" */
	printf("%s\n", mbed);
	printf("cJSON %s\n", cJSON_Version());
	printf("libpsl %s\n", psl_get_version());
	if (pcre2_config(PCRE2_CONFIG_VERSION, pcre) > 0)
		printf("PCRE2 %s\n", pcre);
}

/* ---- failures ---- */

/* Where the log goes once a command has set it up: true for a file. */
static bool log_to_file;

/* A failure of `wharf CMD`: one plain line on stderr, "wharf CMD: message
 * [path]: detail". When the log goes to a file, the failure is logged there
 * too (message, with path and detail as "path" and "error"); when it goes to
 * stderr, the plain line is the only one. path may be NULL. */
static void report(const char *cmd, const char *message, const char *path, const char *detail)
{
	fprintf(stderr, "wharf %s: %s%s%s: %s\n", cmd, message, path ? " " : "", path ? path : "",
	        detail);
	if (log_to_file)
		wh_log(WH_LOG_ERROR, message, "path", WH_LS, path, "error", WH_LS, detail, NULL);
}

static void print_warnings(const wh_config *cfg)
{
	for (int i = 0; i < cfg->n_warnings; i++)
		wh_log(WH_LOG_WARN, "config key accepted but not implemented by wharf yet; ignored",
		       "key", WH_LS, cfg->warnings[i], NULL);
	for (int i = 0; i < cfg->n_notices; i++)
		wh_log(WH_LOG_WARN, "config warning", "detail", WH_LS, cfg->notices[i], NULL);
}

/* Each line of text, prefixed, on f. */
static void print_lines(FILE *f, const char *prefix, const char *text)
{
	while (*text) {
		size_t n = strcspn(text, "\n");
		fprintf(f, "%s%.*s\n", prefix, (int)n, text);
		text += n + (text[n] == '\n');
	}
}

/* What serve and scrub begin with: the config (path, or the built-in one
 * when NULL) and the log it names, its warnings said. -1: the config did
 * not load (said; nothing to free); 1: the log could not be opened (said;
 * cfg to free); 0. */
static int load_and_log(const char *cmd, const char *path, wh_config *cfg, char *err, size_t errlen)
{
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "wharf %s: ", cmd);
	if (path ? wh_config_load(path, cfg, err, errlen) != 0 : wh_config_default(cfg) != 0) {
		/* wh_config_load's lines already begin with the path. */
		print_lines(stderr, prefix, path ? err : "built-in config: invalid");
		return -1;
	}
	int lr = wh_log_setup(cfg->log.level, cfg->log.output);
	if (lr != 0) {
		fprintf(stderr, "%scannot open log.output %s: %s\n", prefix, cfg->log.output,
		        strerror(-lr));
		return 1;
	}
	log_to_file = cfg->log.output && *cfg->log.output;
	print_warnings(cfg);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

static int cmd_verify(const char *path)
{
	wh_config cfg;
	char err[8192];
	/* verify opens no log: its lines are the answer. */
	if (wh_config_load(path, &cfg, err, sizeof(err)) != 0) {
		print_lines(stderr, "wharf verify: ", err); /* each begins with the path */
		return 1;
	}
	/* What serve would meet at start: the files the config names, where
	 * it logs, listens and stores (Zot reads most of these only then; a
	 * config that cannot start is not valid here). */
	char **problems = NULL;
	int n = 0;
	/* The checks would log what they also return: quiet meanwhile. */
	wh_log_set_level(WH_LOG_OFF);
	wh_verify_runtime(&cfg, false, &problems, &n);
	wh_log_set_level(WH_LOG_INFO);
	if (n > 0) {
		for (int i = 0; i < n; i++)
			fprintf(stderr, "wharf verify: %s: %s\n", path, problems[i]);
		wh_strv_free(problems, n);
		wh_config_free(&cfg);
		return 1;
	}
	print_warnings(&cfg);
	fprintf(stdout, "%s: config file is valid\n", path);
	wh_config_free(&cfg);
	return 0;
}

/* ---- scrub ---- */

/* True when something accepts a TCP connection on the config's address and
 * port: a server, most likely on this very root (`zot scrub` asks the same
 * with a GET /v2/). A wildcard address reaches this host. */
static bool server_answers(const wh_http_settings *h)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[16];
	bool up = false;

	snprintf(port, sizeof(port), "%d", h->port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(h->address && *h->address ? h->address : NULL, port, &hints, &res) != 0)
		return false; /* nothing can listen there either */
	for (struct addrinfo *ai = res; ai && !up; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			up = true;
		} else if (errno == EINPROGRESS) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			int err = -1;
			socklen_t len = sizeof(err);
			up = poll(&pfd, 1, 2000) == 1 &&
			     getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
		}
		close(fd);
	}
	freeaddrinfo(res);
	return up;
}

/* The table `wharf scrub` prints, as `zot scrub` does. */
struct scrub_row {
	char *cell[5]; /* repository, tag, status, affected blob, error */
};

struct scrub_table {
	struct scrub_row *rows;
	int n, cap;
};

static void scrub_row_add(void *arg, const wh_scrub_image *img)
{
	struct scrub_table *t = arg;
	t->rows = wh_grow(t->rows, sizeof(*t->rows), t->n, &t->cap, 64);
	struct scrub_row *r = &t->rows[t->n++];
	r->cell[0] = wh_strdup(img->repo);
	r->cell[1] = wh_strdup(img->tag);
	r->cell[2] = wh_strdup(img->ok ? "ok" : "affected");
	r->cell[3] = wh_strdup(img->affected);
	r->cell[4] = wh_strdup(img->error);
}

static void scrub_table_print(struct scrub_table *t)
{
	static const char *const head[5] = {"REPOSITORY", "TAG", "STATUS", "AFFECTED BLOB",
	                                    "ERROR"};
	int w[5];
	for (int c = 0; c < 5; c++) {
		w[c] = (int)strlen(head[c]);
		for (int i = 0; i < t->n; i++)
			w[c] = WH_MAX(w[c], (int)strlen(t->rows[i].cell[c]));
	}
	for (int i = -1; i < t->n; i++) {
		const char *const *cell = i < 0 ? head : (const char *const *)t->rows[i].cell;
		char line[2048];
		int n = snprintf(line, sizeof(line), "%-*s  %-*s  %-*s  %-*s  %s", w[0], cell[0],
		                 w[1], cell[1], w[2], cell[2], w[3], cell[3], cell[4]);
		n = n < 0 ? 0 : WH_MIN(n, (int)sizeof(line) - 1);
		while (n > 0 && line[n - 1] == ' ')
			n--;
		printf("%.*s\n", n, line);
	}
	fflush(stdout);
}

static void scrub_table_free(struct scrub_table *t)
{
	for (int i = 0; i < t->n; i++)
		for (int c = 0; c < 5; c++)
			free(t->rows[i].cell[c]);
	free(t->rows);
}

/* One sweep of the root, offline: the server must not be changing it. */
static int cmd_scrub(const char *path)
{
	int rc = 1;
	wh_config cfg;
	char err[8192];
	wh_store *store = NULL;
	struct scrub_table table = {0};
	struct stat sb;

	int lc = load_and_log("scrub", path, &cfg, err, sizeof(err));
	if (lc < 0)
		return 1;
	if (lc > 0)
		goto out;
	if (server_answers(&cfg.http)) {
		if (log_to_file) /* Zot's line */
			wh_log(
			    WH_LOG_WARN,
			    "server is running, in order to perform the scrub command the server "
			    "should be shut down",
			    "address", WH_LS, cfg.http.address, "port", WH_LI,
			    (long long)cfg.http.port, NULL);
		fprintf(stderr,
		        "wharf scrub: a server answers on %s:%d: stop it first (scrub reads the "
		        "root offline; a running server checks it itself with extensions.scrub)\n",
		        cfg.http.address, cfg.http.port);
		goto out;
	}
	/* Opening the store would make a root that is not there: a typo in
	 * rootDirectory must not read as "everything is fine". */
	const char *bad_root = stat(cfg.storage.root_dir, &sb) != 0 ? strerror(errno)
	                       : !S_ISDIR(sb.st_mode)               ? "not a directory"
	                                                            : NULL;
	if (bad_root) {
		report("scrub", "cannot use rootDirectory", cfg.storage.root_dir, bad_root);
		goto out;
	}
	int sr = wh_store_open(cfg.storage.root_dir, cfg.storage.dedupe, &store);
	if (sr != 0) {
		report("scrub", "cannot open storage", cfg.storage.root_dir, wh_strerror(sr));
		goto out;
	}
	wh_scrub_opts opts = {
	    .rate = cfg.scrub.rate < 0 ? 0 : cfg.scrub.rate,
	    .cached = wh_store_cached,
	    .cached_arg = store,
	    .on_image = scrub_row_add,
	    .on_image_arg = &table,
	};
	wh_scrub_stats stats;
	wh_scrub_run(store, &opts, &stats);
	scrub_table_print(&table);
	rc = stats.affected || stats.errors ? 1 : 0;
out:
	scrub_table_free(&table);
	wh_store_close(store);
	wh_config_free(&cfg);
	return rc;
}

/* ---- serve ---- */

struct serve_state {
	uv_loop_t *loop;
	wh_server *srv;
	wh_pipeline *pipeline;
	wh_tls *tls;
	uv_signal_t sigterm, sigint;
	uv_signal_t sighup;  /* reload: the config file, log.output, TLS, htpasswd */
	uv_timer_t drain;    /* http.wharf.drainDelay: serving on, /readyz failing */
	wh_config *cfg;      /* the configuration in use */
	wh_config **retired; /* replaced by SIGHUP: freed at exit */
	int n_retired;
	int64_t drain_delay_ms;
	bool draining;
	bool stopping;
};

static void server_gone(void *arg)
{
	struct serve_state *st = arg;
	/* No client is left: stop the upstream fetches and close their sockets. */
	wh_pipeline_free(st->pipeline);
	st->pipeline = NULL;
	uv_close((uv_handle_t *)&st->sigterm, NULL);
	uv_close((uv_handle_t *)&st->sigint, NULL);
	uv_close((uv_handle_t *)&st->sighup, NULL);
}

/* What a reload cannot change under a running server: said, and kept. */
static void restart_notes(const wh_config *o, const wh_config *n)
{
	static const char msg[] = "SIGHUP: this setting changes only with a restart";
#define DIFFERS(a, b) (((a) == NULL) != ((b) == NULL) || ((a) && strcmp((a), (b)) != 0))
	if (DIFFERS(o->storage.root_dir, n->storage.root_dir) ||
	    o->storage.dedupe != n->storage.dedupe)
		wh_log(WH_LOG_WARN, msg, "key", WH_LS, "storage.rootDirectory, storage.dedupe",
		       NULL);
	if (DIFFERS(o->http.address, n->http.address) || o->http.port != n->http.port)
		wh_log(WH_LOG_WARN, msg, "key", WH_LS, "http.address, http.port", NULL);
	if ((o->tls.cert == NULL) != (n->tls.cert == NULL) || DIFFERS(o->tls.cacert, n->tls.cacert))
		wh_log(WH_LOG_WARN, msg, "key", WH_LS, "http.tls (on or off, cacert)", NULL);
	if ((o->log.output && *o->log.output) != (n->log.output && *n->log.output))
		wh_log(WH_LOG_WARN, msg, "key", WH_LS, "log.output (to or from stderr)", NULL);
	if (o->sync.enable != n->sync.enable || o->search.enable != n->search.enable ||
	    o->ui_enable != n->ui_enable || o->metrics.enable != n->metrics.enable ||
	    o->scrub.enable != n->scrub.enable)
		wh_log(WH_LOG_WARN, msg, "key", WH_LS, "extensions (turned on or off), scrub",
		       NULL);
#undef DIFFERS
}

/* The configuration file read again, if it verifies; NULL otherwise (and
 * said why). */
static wh_config *reread(const char *path)
{
	wh_config *n = wh_calloc(1, sizeof(*n));
	char err[8192];
	char **problems = NULL;
	int np = 0;
	if (wh_config_load(path, n, err, sizeof(err)) != 0) {
		wh_log(WH_LOG_ERROR,
		       "SIGHUP: the config file does not verify: the running "
		       "configuration stays",
		       "config", WH_LS, path, "error", WH_LS, err, NULL);
		free(n);
		return NULL;
	}
	if (wh_verify_runtime(n, true, &problems, &np) > 0) {
		for (int i = 0; i < np; i++)
			wh_log(WH_LOG_ERROR,
			       "SIGHUP: the config file does not verify: the running "
			       "configuration stays",
			       "config", WH_LS, path, "error", WH_LS, problems[i], NULL);
		wh_strv_free(problems, np);
		wh_config_free(n);
		free(n);
		return NULL;
	}
	return n;
}

/* SIGHUP: reopen log.output (logrotate moved it away); read the config
 * file again and, if it verifies, run with it: what Zot reloads live (auth
 * and access control, rate limits, sync registries, the log level, GC,
 * retention and the budget, TLS certificates, htpasswd), with no connection
 * or fetch dropped; what only a restart changes is said so. A config that
 * does not verify is refused, logged, and the running one stays (its
 * htpasswd file and TLS pair are read again all the same). */
static void on_sighup(uv_signal_t *h, int signum)
{
	struct serve_state *st = h->data;
	char err[8192];
	int lr = wh_log_reopen(st->cfg->log.output);
	wh_log(WH_LOG_INFO, "reloading", "signal", WH_LS, "SIGHUP", NULL);
	if (lr != 0)
		wh_log(WH_LOG_ERROR, "SIGHUP: cannot reopen log.output; logging to the old file",
		       "path", WH_LS, st->cfg->log.output, "error", WH_LS, wh_strerror(lr), NULL);
	wh_config *n = st->cfg->path ? reread(st->cfg->path) : NULL;
	if (n) {
		restart_notes(st->cfg, n);
		wh_log_set_level(n->log.level);
		if (n->log.output && *n->log.output && st->cfg->log.output &&
		    *st->cfg->log.output && strcmp(n->log.output, st->cfg->log.output) != 0 &&
		    (lr = wh_log_reopen(n->log.output)) != 0)
			wh_log(WH_LOG_ERROR, "SIGHUP: cannot open the new log.output", "path",
			       WH_LS, n->log.output, "error", WH_LS, wh_strerror(lr), NULL);
		wh_server_reload(st->srv, &n->http);
		st->drain_delay_ms = n->http.drain_delay_ms;
	}
	if (st->pipeline)
		wh_pipeline_reload(st->pipeline, n);
	if (n) {
		/* Requests and fetches in flight may point into the old one. */
		st->retired =
		    wh_realloc(st->retired, sizeof(*st->retired) * (size_t)(st->n_retired + 1));
		st->retired[st->n_retired++] = st->cfg;
		st->cfg = n;
		print_warnings(n);
		wh_log(WH_LOG_INFO, "SIGHUP: configuration reloaded", "config", WH_LS, n->path,
		       NULL);
	}
	if (!st->tls || (n && !n->tls.cert))
		return;
	if (wh_tls_reload(st->tls, n ? &n->tls : NULL, err, sizeof(err)) != 0) {
		wh_log(WH_LOG_ERROR, "SIGHUP: TLS certificate not reloaded; the previous one stays",
		       "error", WH_LS, err, NULL);
		return;
	}
	wh_log(WH_LOG_INFO, "SIGHUP: TLS certificate reloaded", "serial", WH_LS,
	       wh_tls_serial(st->tls), NULL);
}

/* Loopback addresses: 127/8, ::1, "localhost". */
static bool is_loopback(const char *a)
{
	return a && (strncmp(a, "127.", 4) == 0 || strcmp(a, "::1") == 0 ||
	             strcmp(a, "[::1]") == 0 || strcmp(a, "localhost") == 0);
}

static void stop(struct serve_state *st)
{
	if (st->stopping)
		return;
	st->stopping = true;
	if (st->draining)
		uv_close((uv_handle_t *)&st->drain, NULL);
	wh_server_shutdown(st->srv, server_gone, st);
}

static void drained(uv_timer_t *t)
{
	struct serve_state *st = t->data;
	wh_log(WH_LOG_INFO, "drain delay over: closing the listener", NULL);
	stop(st);
}

/* SIGTERM/SIGINT: with a drain delay, first serve on while /readyz fails,
 * so whatever balances load onto us stops; a second signal stops at once. */
static void on_signal(uv_signal_t *h, int signum)
{
	struct serve_state *st = h->data;
	if (st->stopping)
		return;
	wh_log(WH_LOG_INFO, "shutting down", "signal", WH_LS,
	       signum == SIGTERM ? "SIGTERM" : "SIGINT", "drainDelay_ms", WH_LI,
	       (long long)(st->draining ? 0 : st->drain_delay_ms), NULL);
	if (st->drain_delay_ms > 0 && !st->draining) {
		st->draining = true;
		wh_health_not_ready();
		uv_timer_init(st->loop, &st->drain);
		st->drain.data = st;
		uv_timer_start(&st->drain, drained, (uint64_t)st->drain_delay_ms, 0);
		return;
	}
	stop(st);
}

static void log_start(const wh_config *cfg, int port)
{
	char ups[1024] = "";
	size_t n = 0;
	for (int i = 0; i < cfg->sync.n_registries && n < sizeof(ups); i++) {
		const wh_sync_registry *r = &cfg->sync.registries[i];
		for (int j = 0; j < r->n_content && n < sizeof(ups); j++) {
			int k =
			    snprintf(ups + n, sizeof(ups) - n, "%s%s=%s", n ? "," : "",
			             r->content[j].destination ? r->content[j].destination : "/",
			             r->n_urls ? r->urls[0] : "");
			if (k < 0)
				break;
			n += (size_t)k;
		}
	}
	char listen[300];
	snprintf(listen, sizeof(listen), "%s:%d", cfg->http.address ? cfg->http.address : "", port);
	wh_log(WH_LOG_INFO, "wharf started", "version", WH_LS, WHARF_VERSION, "config", WH_LS,
	       cfg->path ? cfg->path : "(built-in default)", "listen", WH_LS, listen, "tls", WH_LB,
	       cfg->tls.cert != NULL, "rootDirectory", WH_LS, cfg->storage.root_dir, "upstreams",
	       WH_LS, cfg->sync.enable ? ups : "", NULL);
	if (!is_loopback(cfg->http.address) && !wh_config_has_auth(cfg))
		wh_log(WH_LOG_WARN,
		       "listening beyond this host with no http.auth: anyone who reaches the "
		       "port can push, pull and delete",
		       "listen", WH_LS, listen, NULL);
}

static int cmd_serve(const char *path)
{
	int rc = 1;
	wh_config cfg;
	char err[8192];
	wh_store *store = NULL;
	uv_loop_t *loop = uv_default_loop();
	struct serve_state st = {.loop = loop, .cfg = &cfg};

	int lc = load_and_log("serve", path, &cfg, err, sizeof(err));
	if (lc < 0)
		return 1;
	if (lc > 0)
		goto out;
	/* Each connection, file being sent and upstream socket is a descriptor:
	 * take what the hard limit allows, as servers do. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	int sr = wh_store_open(cfg.storage.root_dir, cfg.storage.dedupe, &store);
	if (sr != 0) {
		report("serve", "cannot open storage", cfg.storage.root_dir, wh_strerror(sr));
		goto out;
	}
	wh_store_attach(store, loop);
	if (cfg.tls.cert) {
		if (wh_tls_new(&cfg.tls, &st.tls, err, sizeof(err)) != 0) {
			report("serve", "cannot set up TLS", NULL, err);
			goto out;
		}
	}
	/* These log their own failure: on stderr, that line is the one; with the
	 * log in a file, stderr still says that the server did not start. */
	if (wh_pipeline_new(loop, &cfg, store, &st.pipeline) != 0 ||
	    wh_server_start(loop, &cfg.http, st.tls, wh_pipeline_handle, st.pipeline, &st.srv) !=
	        0) {
		if (log_to_file)
			fprintf(stderr, "wharf serve: cannot start: the reason is logged in %s\n",
			        cfg.log.output);
		goto out;
	}

	uv_signal_init(loop, &st.sigterm);
	uv_signal_init(loop, &st.sigint);
	uv_signal_init(loop, &st.sighup);
	st.sigterm.data = st.sigint.data = st.sighup.data = &st;
	st.drain_delay_ms = cfg.http.drain_delay_ms;
	uv_signal_start(&st.sigterm, on_signal, SIGTERM);
	uv_signal_start(&st.sigint, on_signal, SIGINT);
	uv_signal_start(&st.sighup, on_sighup, SIGHUP);
	log_start(&cfg, wh_server_port(st.srv));

	uv_run(loop, UV_RUN_DEFAULT);
	wh_log(WH_LOG_INFO, "stopped", NULL);
	rc = 0;
out:
	wh_pipeline_free(st.pipeline);
	if (store)
		wh_store_detach(store);
	/* Let the handles closed above finish closing. */
	uv_run(loop, UV_RUN_DEFAULT);
	if (store)
		wh_store_close(store);
	wh_tls_free(st.tls);
	if (uv_loop_close(loop) != 0 && rc == 0)
		wh_log(WH_LOG_WARN, "event loop closed with handles still open", NULL);
	if (st.cfg != &cfg) {
		wh_config_free(st.cfg);
		free(st.cfg);
	}
	for (int i = 0; i < st.n_retired; i++) {
		if (st.retired[i] != &cfg) {
			wh_config_free(st.retired[i]);
			free(st.retired[i]);
		}
	}
	free(st.retired);
	wh_config_free(&cfg);
	return rc;
}

/* ---- the command line ---- */

struct command {
	const char *name;
	void (*help)(FILE *f);
	int min_args, max_args; /* CONFIG: serve's is optional */
	int (*run)(const char *config);
};

static const struct command commands[] = {
    {"serve", help_serve, 0, 1, cmd_serve},
    {"verify", help_verify, 1, 1, cmd_verify},
    {"scrub", help_scrub, 1, 1, cmd_scrub},
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < WH_ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static bool is_help(const char *a)
{
	return strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0;
}

/* `wharf CMD ARGS...`: -h/--help anywhere prints CMD's help; any other
 * option is a usage error, as is a wrong number of arguments; "--" ends the
 * options. Each problem is one line on stderr, exit 2. */
static int run_command(const struct command *c, int argc, char **argv)
{
	const char *config = NULL;
	int n = 0;
	bool options = true;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (options && strcmp(a, "--") == 0) {
			options = false;
		} else if (options && is_help(a)) {
			c->help(stdout);
			return 0;
		} else if (options && a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "wharf %s: unknown option \"%s\" (see wharf %s --help)\n",
			        c->name, a, c->name);
			return 2;
		} else if (n++ == 0) {
			config = a;
		}
	}
	if (n < c->min_args || n > c->max_args) {
		fprintf(stderr,
		        "wharf %s: expected %s the config file, got %d arguments (see wharf %s "
		        "--help)\n",
		        c->name, c->min_args ? "one argument," : "at most one argument,", n,
		        c->name);
		return 2;
	}
	return c->run(config);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	const struct command *c = find_command(cmd);
	if (c)
		return run_command(c, argc - 2, argv + 2);
	if (is_help(cmd) || strcmp(cmd, "help") == 0) {
		/* `wharf help serve`: the command's own help. */
		const struct command *about = argc == 3 ? find_command(argv[2]) : NULL;
		if (argc > 3) {
			fprintf(stderr, "wharf %s: takes at most one argument, a command\n", cmd);
			return 2;
		}
		if (argc == 3 && !about) {
			fprintf(stderr, "wharf %s: no such command \"%s\" (see wharf --help)\n",
			        cmd, argv[2]);
			return 2;
		}
		if (about)
			about->help(stdout);
		else
			usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-v") == 0 ||
	    strcmp(cmd, "version") == 0) {
		if (argc > 2) {
			fprintf(stderr, "wharf %s: takes no arguments\n", cmd);
			return 2;
		}
		print_version();
		return 0;
	}
	if (cmd[0] == '-')
		fprintf(stderr, "wharf: unknown option \"%s\" (see wharf --help)\n", cmd);
	else
		fprintf(stderr, "wharf: unknown command \"%s\" (see wharf --help)\n", cmd);
	return 2;
}
