/* Metrics and the status page. See include/wharf/ext/metrics.h; the names
 * are listed in docs/metrics.md.
 *
 * The request path pays for metrics only in the log phase: an index into
 * fixed tables (method x status, the latency buckets per method) and, for a
 * manifest GET or PUT, a lookup in an open-addressing table of repositories
 * sized at start. Everything the other modules count is read from them when
 * asked, so a scrape costs a walk over those tables and one buffer that is
 * kept for the next scrape. */
#include "wharf/ext/metrics.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/base/prom.h"
#include "wharf/cache/sync.h"
#include "wharf/cache/upstream.h"
#include "wharf/ext/auth.h"
#include "wharf/ext/ratelimit.h"
#include "wharf/net/http.h"
#include "wharf/net/tls.h"
#include "wharf/oci/response.h"
#include "wharf/store/gc.h"

/* Methods counted apart; the rest are "other". */
enum { M_GET, M_HEAD, M_POST, M_PUT, M_PATCH, M_DELETE, M_OPTIONS, M_OTHER, N_METHODS };
static const char *const method_names[N_METHODS] = {"GET",   "HEAD",   "POST",    "PUT",
                                                    "PATCH", "DELETE", "OPTIONS", "other"};

/* Statuses 100..599, and 0: nothing was answered (the client left first). */
#define N_CODES 600

/* Zot's buckets for zot_http_method_latency_seconds, their le as Go's client
 * prints them (a dashboard made for Zot matches them as text). */
static const char *const latency_le[] = {"0.05", "0.5", "1", "5", "30", "60", "600"};
static const uint64_t latency_ms[] = {50, 500, 1000, 5000, 30000, 60000, 600000};
#define N_BUCKETS ((int)WH_ARRAY_SIZE(latency_ms))

#define REPO_SLOTS 2048     /* twice WH_METRICS_REPOS_MAX: probes stay short */
#define OTHER_REPO "_other" /* not a valid repository name: no collision */

#if defined(__clang__)
#define COMPILER __VERSION__
#elif defined(__GNUC__)
#define COMPILER "gcc " __VERSION__
#else
#define COMPILER ""
#endif
#ifndef WHARF_COMMIT
#define WHARF_COMMIT ""
#endif

struct repo_count {
	char *name; /* NULL: a free slot */
	uint64_t hash;
	uint64_t downloads, uploads;
};

struct latency {
	uint64_t buckets[N_BUCKETS + 1]; /* [N_BUCKETS]: over the last bound */
	uint64_t sum_ms;
};

struct metrics {
	uv_loop_t *loop;
	const wh_metrics_settings *cfg;
	wh_store *store;
	wh_sync *sync;           /* NULL without sync */
	wh_gc *gc;               /* NULL outside a pipeline that has one */
	const wh_auth *auth;     /* NULL when the table has none */
	const wh_ratelimit *rl;  /* NULL without a limit */
	uint64_t started;        /* uv_now at start */
	int64_t started_wall_ms; /* the same, Unix time */
	const char *path;        /* the metrics path, or NULL when disabled */
	/* Only while enabled (else NULL): */
	uint64_t (*requests)[N_CODES]; /* [N_METHODS] */
	struct latency *latency;       /* [N_METHODS] */
	struct repo_count *repos;      /* [REPO_SLOTS] */
	int n_repos;
	struct repo_count other;
	wh_prom out;            /* the last scrape's text, reused */
	wh_sync_fetch *fetches; /* [WH_METRICS_FETCHES_MAX], at the first status page */
};

/* The paths: the status page, then the metrics path when enabled (set by
 * init, before any request). */
static const char *paths[] = {WH_METRICS_STATUS_PATH, NULL, NULL};

/* ---- the log phase ---- */

static int method_index(const char *m)
{
	switch (m[0]) {
	case 'G':
		return strcmp(m, "GET") == 0 ? M_GET : M_OTHER;
	case 'H':
		return strcmp(m, "HEAD") == 0 ? M_HEAD : M_OTHER;
	case 'P':
		if (strcmp(m, "PUT") == 0)
			return M_PUT;
		if (strcmp(m, "POST") == 0)
			return M_POST;
		return strcmp(m, "PATCH") == 0 ? M_PATCH : M_OTHER;
	case 'D':
		return strcmp(m, "DELETE") == 0 ? M_DELETE : M_OTHER;
	case 'O':
		return strcmp(m, "OPTIONS") == 0 ? M_OPTIONS : M_OTHER;
	default:
		return M_OTHER;
	}
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* The repository's counters: found, or made when there is room, else the
 * shared "_other" ones. */
static struct repo_count *repo_counts(struct metrics *m, const char *name)
{
	uint64_t h = fnv1a(name);
	for (size_t i = h % REPO_SLOTS, n = 0; n < REPO_SLOTS; i = (i + 1) % REPO_SLOTS, n++) {
		struct repo_count *r = &m->repos[i];
		if (!r->name) {
			if (m->n_repos >= WH_METRICS_REPOS_MAX)
				break;
			r->name = wh_strdup(name);
			r->hash = h;
			m->n_repos++;
			return r;
		}
		if (r->hash == h && strcmp(r->name, name) == 0)
			return r;
	}
	return &m->other;
}

static void log_phase(void *state, wh_call *call)
{
	struct metrics *m = state;
	wh_req *req = call->req;
	if (!m->path || (call->owner == &wh_metrics_module && strcmp(req->path, m->path) == 0))
		return;
	int status = wh_resp_status(req);
	if (status < 0 || status >= N_CODES)
		status = 0;
	int mi = method_index(req->method);
	m->requests[mi][status]++;
	uint64_t ms = wh_req_duration_ms(req);
	int b = 0;
	while (b < N_BUCKETS && ms > latency_ms[b])
		b++;
	m->latency[mi].buckets[b]++;
	m->latency[mi].sum_ms += ms;
	if (call->route.kind != WH_ROUTE_MANIFEST || !call->route.name[0])
		return;
	if (mi == M_GET && status == 200)
		repo_counts(m, call->route.name)->downloads++;
	else if (mi == M_PUT && status == 201)
		repo_counts(m, call->route.name)->uploads++;
}

/* ---- the exposition ---- */

/* "host:port" of an upstream URL, the port written out when the URL has
 * none. */
static void url_hostport(const char *url, char *buf, size_t len)
{
	const char *h = strstr(url, "://");
	bool https = !h || (h - url == 5 && strncmp(url, "https", 5) == 0);
	h = h ? h + 3 : url;
	size_t n = strcspn(h, "/?#");
	const char *close = memchr(h, ']', n);
	const char *colon = memchr(close ? close : h, ':', n - (size_t)((close ? close : h) - h));
	if (colon)
		snprintf(buf, len, "%.*s", (int)n, h);
	else
		snprintf(buf, len, "%.*s:%s", (int)n, h, https ? "443" : "80");
}

static void family_u64(wh_prom *p, const char *name, const char *type, const char *help, uint64_t v)
{
	wh_prom_family(p, name, type, help);
	wh_prom_begin(p, name);
	wh_prom_end_u64(p, v);
}

static void gauge_i64(wh_prom *p, const char *name, const char *help, int64_t v)
{
	wh_prom_family(p, name, "gauge", help);
	wh_prom_begin(p, name);
	wh_prom_end_i64(p, v);
}

static void sample_u64(wh_prom *p, const char *name, const char *k, const char *v, uint64_t n)
{
	wh_prom_begin(p, name);
	wh_prom_label(p, k, v);
	wh_prom_end_u64(p, n);
}

static void write_requests(struct metrics *m, wh_prom *p)
{
	char code[8];
	wh_prom_family(p, "zot_http_requests_total", "counter",
	               "Requests answered, by method and status (the metrics path aside).");
	for (int mi = 0; mi < N_METHODS; mi++)
		for (int c = 0; c < N_CODES; c++) {
			if (!m->requests[mi][c])
				continue;
			snprintf(code, sizeof(code), "%d", c);
			wh_prom_begin(p, "zot_http_requests_total");
			wh_prom_label(p, "method", method_names[mi]);
			wh_prom_label(p, "code", code);
			wh_prom_end_u64(p, m->requests[mi][c]);
		}
	wh_prom_family(p, "zot_http_method_latency_seconds", "histogram",
	               "Time from a request's head to its end, by method.");
	for (int mi = 0; mi < N_METHODS; mi++) {
		const struct latency *l = &m->latency[mi];
		uint64_t n = 0;
		for (int b = 0; b <= N_BUCKETS; b++)
			n += l->buckets[b];
		if (n)
			wh_prom_histogram(p, "zot_http_method_latency_seconds", "method",
			                  method_names[mi], latency_le, l->buckets, N_BUCKETS,
			                  (double)l->sum_ms / 1000.0);
	}
}

static void write_repos(struct metrics *m, wh_prom *p, bool uploads)
{
	const char *name = uploads ? "zot_repo_uploads_total" : "zot_repo_downloads_total";
	wh_prom_family(p, name, "counter",
	               uploads ? "Manifests pushed (PUT answered 201), by repository."
	                       : "Manifests pulled (GET answered 200), by repository.");
	for (int i = 0; i < REPO_SLOTS; i++) {
		const struct repo_count *r = &m->repos[i];
		uint64_t v = uploads ? r->uploads : r->downloads;
		if (r->name && v)
			sample_u64(p, name, "repo", r->name, v);
	}
	uint64_t v = uploads ? m->other.uploads : m->other.downloads;
	if (v)
		sample_u64(p, name, "repo", OTHER_REPO, v);
}

static void repo_bytes(void *arg, const char *repo, int64_t bytes)
{
	wh_prom *p = arg;
	wh_prom_begin(p, "zot_repo_storage_bytes");
	wh_prom_label(p, "repo", repo);
	wh_prom_end_i64(p, bytes);
}

static void write_gc(struct metrics *m, wh_prom *p)
{
	wh_gc_stats g;
	wh_gc_get_stats(m->gc, &g);
	wh_prom_family(p, "zot_repo_storage_bytes", "gauge",
	               "Bytes of a repository's blobs and manifests, as the last GC sweep "
	               "counted them (storage.gc on; at most 1000 repositories).");
	wh_gc_each_repo_bytes(m->gc, repo_bytes, p);
	wh_prom_family(p, "zot_gc_runs_total", "counter",
	               "Repositories collected by GC sweeps, by whether it failed.");
	sample_u64(p, "zot_gc_runs_total", "error", "false", g.repo_sweeps - g.repo_sweep_errors);
	sample_u64(p, "zot_gc_runs_total", "error", "true", g.repo_sweep_errors);
	wh_prom_family(p, "zot_gc_duration_seconds", "summary",
	               "Time to collect a repository in a GC sweep.");
	wh_prom_begin(p, "zot_gc_duration_seconds_sum");
	wh_prom_end_double(p, (double)g.repo_sweep_ns / 1e9);
	wh_prom_begin(p, "zot_gc_duration_seconds_count");
	wh_prom_end_u64(p, g.repo_sweeps);
	wh_prom_family(p, "zot_gc_deleted_total", "counter",
	               "What GC sweeps and retention removed, by type (not in dryRun).");
	sample_u64(p, "zot_gc_deleted_total", "type", "manifest", g.manifests_removed);
	sample_u64(p, "zot_gc_deleted_total", "type", "blob", g.blobs_removed);
	sample_u64(p, "zot_gc_deleted_total", "type", "upload", g.uploads_removed);
	family_u64(p, "wharf_gc_sweeps_total", "counter", "GC sweeps finished.", g.sweeps);
	family_u64(p, "wharf_cache_evictions_total", "counter",
	           "Cached images evicted for the cache budget.", g.evictions);
	family_u64(p, "wharf_cache_evicted_bytes_total", "counter",
	           "Bytes freed by evictions for the cache budget.", g.evicted_bytes);
	int64_t max, min_free, fs_free, usage = wh_store_usage(m->store);
	wh_gc_budget(m->gc, &max, &min_free, &fs_free);
	if (usage >= 0)
		gauge_i64(p, "wharf_cache_usage_bytes",
		          "Bytes the store's blobs and manifests take, each file once.", usage);
	gauge_i64(p, "wharf_cache_budget_bytes", "storage.wharf.cacheMaxSize (0: none).", max);
	gauge_i64(p, "wharf_cache_min_free_bytes", "storage.wharf.cacheMinFree (0: none).",
	          min_free);
	if (fs_free >= 0)
		gauge_i64(p, "wharf_fs_free_bytes",
		          "Bytes free on the root directory's filesystem (unprivileged).", fs_free);
}

static void write_upstreams(struct metrics *m, wh_prom *p)
{
	const wh_sync_settings *cfg = wh_sync_settings_of(m->sync);
	const wh_upstream *up = wh_sync_upstream(m->sync);
	char code[8];
	for (int pass = 0; pass < 2; pass++) {
		const char *name = pass ? "wharf_upstream_up" : "wharf_upstream_requests_total";
		wh_prom_family(p, name, pass ? "gauge" : "counter",
		               pass ? "Whether an upstream registry URL is up (0: marked down)."
		                    : "Exchanges with an upstream registry URL, by status "
		                      "(\"error\": no answer).");
		for (int i = 0; i < cfg->n_registries; i++)
			for (int u = 0; u < cfg->registries[i].n_urls; u++) {
				char hp[300], seen[300];
				url_hostport(cfg->registries[i].urls[u], hp, sizeof(hp));
				bool dup = false;
				for (int j = 0; j <= i && !dup; j++)
					for (int v = 0; v < cfg->registries[j].n_urls && !dup;
					     v++) {
						if (j == i && v == u)
							break;
						url_hostport(cfg->registries[j].urls[v], seen,
						             sizeof(seen));
						dup = strcmp(hp, seen) == 0;
					}
				if (dup)
					continue;
				wh_upstream_url_stats st;
				wh_upstream_get_url_stats(up, cfg->registries[i].urls[u], &st);
				if (pass) {
					sample_u64(p, name, "registry", hp, st.up);
					continue;
				}
				for (int c = 0; st.codes && c < WH_UPSTREAM_CODES; c++) {
					if (!st.codes[c])
						continue;
					snprintf(code, sizeof(code), "%d", c);
					wh_prom_begin(p, name);
					wh_prom_label(p, "registry", hp);
					wh_prom_label(p, "code", c ? code : "error");
					wh_prom_end_u64(p, st.codes[c]);
				}
			}
	}
}

static void write_cache(struct metrics *m, wh_prom *p)
{
	wh_sync_stats s;
	static const char *const kinds[] = {"manifest", "blob"};
	wh_sync_get_stats(m->sync, &s);
	wh_prom_family(p, "wharf_cache_hits_total", "counter",
	               "Pulls of a synced name answered from the cache, by kind.");
	for (int k = 0; k < 2; k++)
		sample_u64(p, "wharf_cache_hits_total", "kind", kinds[k], s.hits[k]);
	wh_prom_family(p, "wharf_cache_misses_total", "counter",
	               "Pulls of a synced name that waited on an upstream, by kind.");
	for (int k = 0; k < 2; k++)
		sample_u64(p, "wharf_cache_misses_total", "kind", kinds[k], s.misses[k]);
	family_u64(p, "wharf_cache_served_bytes_total", "counter",
	           "Blob bytes answered from the cache.", s.bytes_from_cache);
	family_u64(p, "wharf_upstream_fetched_bytes_total", "counter",
	           "Blob bytes received from upstream registries.", s.bytes_from_upstream);
	family_u64(p, "wharf_cache_peer_fetched_bytes_total", "counter",
	           "Blob bytes received from peers (extensions.sync.wharf.peers).",
	           s.bytes_from_peers);
	family_u64(p, "wharf_cache_tee_bytes_total", "counter",
	           "Blob bytes sent to clients from fetches in flight.", s.tee_bytes);
	wh_prom_family(p, "wharf_cache_fetches_in_flight", "gauge",
	               "Upstream fetches in flight, by kind.");
	for (int k = 0; k < 2; k++)
		sample_u64(p, "wharf_cache_fetches_in_flight", "kind", kinds[k],
		           (uint64_t)s.fetches[k]);
	wh_prom_family(p, "wharf_cache_fetch_clients", "gauge",
	               "Clients waiting on or fed by fetches in flight, by kind.");
	for (int k = 0; k < 2; k++)
		sample_u64(p, "wharf_cache_fetch_clients", "kind", kinds[k],
		           (uint64_t)s.fetch_clients[k]);
	write_upstreams(m, p);
}

static void write_server(struct metrics *m, wh_prom *p)
{
	wh_http_stats h;
	wh_tls_stats t;
	wh_http_get_stats(&h);
	wh_tls_get_stats(&t);
	gauge_i64(p, "wharf_http_connections", "Client connections open.", h.connections);
	family_u64(p, "wharf_http_connections_accepted_total", "counter",
	           "Client connections accepted.", h.accepted);
	wh_prom_family(p, "wharf_tls_handshakes_total", "counter",
	               "TLS handshakes, by result (\"closed\": the client left first).");
	sample_u64(p, "wharf_tls_handshakes_total", "result", "ok", t.ok);
	sample_u64(p, "wharf_tls_handshakes_total", "result", "failed", t.failed);
	sample_u64(p, "wharf_tls_handshakes_total", "result", "refused", t.refused);
	sample_u64(p, "wharf_tls_handshakes_total", "result", "closed", t.closed);
	sample_u64(p, "wharf_tls_handshakes_total", "result", "timeout", h.handshake_timeouts);
	if (m->auth) {
		wh_auth_stats a;
		wh_auth_get_stats(m->auth, &a);
		wh_prom_family(p, "wharf_auth_failures_total", "counter",
		               "Requests refused by authentication or access control, by reason.");
		sample_u64(p, "wharf_auth_failures_total", "reason", "bad_credentials",
		           a.bad_credentials);
		sample_u64(p, "wharf_auth_failures_total", "reason", "no_credentials",
		           a.no_credentials);
		sample_u64(p, "wharf_auth_failures_total", "reason", "denied", a.denied);
	}
	family_u64(p, "wharf_ratelimited_requests_total", "counter",
	           "Requests answered 429 by http.ratelimit.", wh_ratelimit_limited(m->rl));
}

static void write_all(struct metrics *m, wh_prom *p)
{
	wh_prom_reset(p);
	wh_prom_family(p, "zot_info", "gauge", "Build information (the value is 0).");
	wh_prom_begin(p, "zot_info");
	wh_prom_label(p, "commit", WHARF_COMMIT);
	wh_prom_label(p, "binaryType", "wharf");
	wh_prom_label(p, "goVersion", COMPILER);
	wh_prom_label(p, "version", WHARF_VERSION);
	wh_prom_end_u64(p, 0);
	wh_prom_family(p, "process_start_time_seconds", "gauge",
	               "When the server started, in Unix seconds.");
	wh_prom_begin(p, "process_start_time_seconds");
	wh_prom_end_double(p, (double)m->started_wall_ms / 1000.0);
	write_requests(m, p);
	write_repos(m, p, false);
	write_repos(m, p, true);
	if (m->gc)
		write_gc(m, p);
	if (m->sync)
		write_cache(m, p);
	write_server(m, p);
}

static void answer(wh_req *req, const char *type, const char *body, size_t len)
{
	wh_resp_start(req, 200);
	wh_resp_header(req, "Content-Type", "%s", type);
	wh_resp_header(req, "Cache-Control", "no-store");
	wh_resp_length(req, (int64_t)len);
	wh_resp_write(req, body, len);
	wh_resp_end(req);
}

/* ---- the status page ---- */

static void add_num(cJSON *o, const char *k, double v)
{
	cJSON_AddNumberToObject(o, k, v);
}

static cJSON *status_cache(struct metrics *m)
{
	cJSON *c = cJSON_CreateObject();
	wh_sync_stats s = {0};
	if (m->sync)
		wh_sync_get_stats(m->sync, &s);
	cJSON *h = cJSON_AddObjectToObject(c, "hits");
	add_num(h, "manifest", (double)s.hits[WH_SYNC_MANIFEST]);
	add_num(h, "blob", (double)s.hits[WH_SYNC_BLOB]);
	h = cJSON_AddObjectToObject(c, "misses");
	add_num(h, "manifest", (double)s.misses[WH_SYNC_MANIFEST]);
	add_num(h, "blob", (double)s.misses[WH_SYNC_BLOB]);
	add_num(c, "bytes_from_cache", (double)s.bytes_from_cache);
	add_num(c, "bytes_from_upstream", (double)s.bytes_from_upstream);
	add_num(c, "bytes_from_peers", (double)s.bytes_from_peers);
	int64_t max = 0, min_free = 0, fs_free = -1;
	wh_gc_stats g = {0};
	if (m->gc) {
		wh_gc_budget(m->gc, &max, &min_free, &fs_free);
		wh_gc_get_stats(m->gc, &g);
	}
	add_num(c, "usage_bytes", (double)wh_store_usage(m->store));
	add_num(c, "budget_bytes", (double)max);
	add_num(c, "min_free_bytes", (double)min_free);
	add_num(c, "fs_free_bytes", (double)fs_free);
	add_num(c, "evictions", (double)g.evictions);
	return c;
}

static cJSON *status_upstreams(struct metrics *m)
{
	cJSON *a = cJSON_CreateArray();
	if (!m->sync)
		return a;
	const wh_sync_settings *cfg = wh_sync_settings_of(m->sync);
	const wh_upstream *up = wh_sync_upstream(m->sync);
	for (int i = 0; i < cfg->n_registries; i++) {
		const wh_sync_registry *reg = &cfg->registries[i];
		const char *dest = reg->n_content > 0 && reg->content[0].destination
		                       ? reg->content[0].destination
		                       : "";
		while (*dest == '/')
			dest++;
		size_t dl = strlen(dest);
		while (dl > 0 && dest[dl - 1] == '/')
			dl--;
		char prefix[WH_NAME_MAX + 1];
		snprintf(prefix, sizeof(prefix), "%.*s", (int)dl, dest);
		for (int u = 0; u < reg->n_urls; u++) {
			wh_upstream_url_stats st;
			wh_upstream_get_url_stats(up, reg->urls[u], &st);
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "prefix", prefix);
			cJSON_AddStringToObject(o, "url", reg->urls[u]);
			cJSON_AddBoolToObject(o, "up", st.up);
			add_num(o, "requests", (double)st.requests);
			add_num(o, "errors", (double)st.errors);
			cJSON_AddItemToArray(a, o);
		}
	}
	return a;
}

static cJSON *status_fetches(struct metrics *m)
{
	cJSON *a = cJSON_CreateArray();
	if (!m->sync)
		return a;
	if (!m->fetches)
		m->fetches = wh_calloc(WH_METRICS_FETCHES_MAX, sizeof(*m->fetches));
	int n = wh_sync_blob_fetches(m->sync, m->fetches, WH_METRICS_FETCHES_MAX);
	for (int i = 0; i < n; i++) {
		const wh_sync_fetch *f = &m->fetches[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "repo", f->repo);
		cJSON_AddStringToObject(o, "digest", f->digest);
		add_num(o, "bytes", (double)f->bytes);
		add_num(o, "total", (double)f->total);
		add_num(o, "clients", f->clients);
		add_num(o, "started_ms", (double)f->started_ms);
		add_num(o, "rate_bps",
		        f->elapsed_ms ? (double)((uint64_t)f->bytes * 1000 / f->elapsed_ms) : 0);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

static cJSON *status_gc(struct metrics *m)
{
	cJSON *o = cJSON_CreateObject();
	wh_gc_stats g = {0};
	if (m->gc)
		wh_gc_get_stats(m->gc, &g);
	add_num(o, "sweeps", (double)g.sweeps);
	cJSON_AddBoolToObject(o, "sweeping", g.sweeping);
	add_num(o, "last_sweep_ms", (double)g.last_sweep_ms);
	add_num(o, "manifests_removed", (double)g.manifests_removed);
	add_num(o, "blobs_removed", (double)g.blobs_removed);
	return o;
}

static void status(struct metrics *m, wh_req *req)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "version", WHARF_VERSION);
	add_num(doc, "uptime_s", (double)((uv_now(m->loop) - m->started) / 1000));
	cJSON_AddItemToObject(doc, "cache", status_cache(m));
	cJSON_AddItemToObject(doc, "upstreams", status_upstreams(m));
	cJSON_AddItemToObject(doc, "fetches", status_fetches(m));
	cJSON_AddItemToObject(doc, "gc", status_gc(m));
	char *text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	if (!text) {
		wh_oci_error(req, 500, "UNKNOWN", "out of memory", NULL);
		return;
	}
	answer(req, "application/json", text, strlen(text));
	free(text);
}

/* ---- the module ---- */

static bool handle(void *state, wh_call *call)
{
	struct metrics *m = state;
	wh_req *req = call->req;
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		wh_oci_method_not_allowed(req);
		return true;
	}
	if (strcmp(req->path, WH_METRICS_STATUS_PATH) == 0) {
		status(m, req);
		return true;
	}
	write_all(m, &m->out);
	answer(req, WH_PROM_CONTENT_TYPE, m->out.buf, m->out.len);
	return true;
}

static int init(const wh_module_env *env, const void *settings, void **state)
{
	const wh_metrics_settings *cfg = settings;
	struct metrics *m = wh_calloc(1, sizeof(*m));
	m->loop = env->loop;
	m->cfg = cfg;
	m->store = env->store;
	m->sync = env->sync;
	m->gc = env->gc;
	m->auth = env->state_of(env, &wh_auth_module);
	m->rl = env->state_of(env, &wh_ratelimit_module);
	m->started = uv_now(env->loop);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	m->started_wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	paths[1] = NULL;
	if (cfg && cfg->enable) {
		m->path = cfg->path ? cfg->path : WH_METRICS_DEFAULT_PATH;
		paths[1] = m->path;
		m->requests = wh_calloc(N_METHODS, sizeof(*m->requests));
		m->latency = wh_calloc(N_METHODS, sizeof(*m->latency));
		m->repos = wh_calloc(REPO_SLOTS, sizeof(*m->repos));
		wh_log(WH_LOG_INFO, "metrics enabled", "path", WH_LS, m->path, NULL);
	}
	*state = m;
	return 0;
}

static void fini(void *state)
{
	struct metrics *m = state;
	if (m->repos)
		for (int i = 0; i < REPO_SLOTS; i++)
			free(m->repos[i].name);
	free(m->repos);
	free(m->requests);
	free(m->latency);
	free(m->fetches);
	wh_prom_free(&m->out);
	free(m);
}

const wh_module wh_metrics_module = {
    .name = "metrics",
    .paths = paths,
    .metrics_access = true,
    .init = init,
    .free = fini,
    .handle = handle,
    .log = log_phase,
};

/* ---- configuration: extensions.metrics ---- */

#define MET(m) offsetof(wh_metrics_settings, m)

static const wh_conf_key prometheus_keys[] = {
    WH_CONF_KEY("path", WH_CONF_STRING, WH_CONF_NONEMPTY, MET(path)),
    WH_CONF_END,
};

static const wh_conf_key metrics_keys[] = {
    WH_CONF_KEY("enable", WH_CONF_BOOL, 0, MET(enable)),
    WH_CONF_SUB("prometheus", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, prometheus_keys),
    WH_CONF_END,
};

int wh_metrics_conf(wh_conf *c, const cJSON *v, char *base)
{
	wh_metrics_settings *s = (wh_metrics_settings *)(void *)base;
	if (cJSON_IsObject(v))
		s->enable = true; /* as Zot: present means enabled unless "enable" says not */
	int rc = wh_conf_walk(c, v, metrics_keys, base);
	const char *p = s->path;
	if (rc == 0 && p &&
	    (p[0] != '/' || strncmp(p, "/v2/", 4) == 0 || strcmp(p, "/v2") == 0 ||
	     strchr(p, '?'))) {
		size_t old = wh_conf_push_key(c, "prometheus");
		wh_conf_push_key(c, "path");
		rc = wh_conf_fail(c,
		                  "must begin with '/' and not be under /v2/ (the registry API's)");
		wh_conf_pop(c, old);
	}
	return rc;
}

void wh_metrics_settings_free(wh_metrics_settings *s)
{
	free(s->path);
	memset(s, 0, sizeof(*s));
}
