/* Metrics: extensions.metrics (Prometheus's text format at
 * prometheus.path, default /metrics) and the status page of the web UI's
 * cache page (GET /v2/_wharf/status, JSON).
 *
 * Both need what authentication needs for /v2/, and, when
 * http.accessControl.metrics is configured, a user it lists (or, for an
 * anonymous request, its anonymousPolicy's read), as Zot's metrics route
 * (access.h: wh_access_metrics_allows). They answer GET and HEAD; another
 * method is a 405. The metrics path answers exactly that path (Zot routes
 * the prefix). The status page is served whether extensions.metrics is
 * enabled or not.
 *
 * What is counted, and where (docs/metrics.md lists every name):
 *   - each request, in the log phase (module.h), into fixed tables: by
 *     method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, other) and
 *     status, and its latency into Zot's buckets by method; manifest GETs
 *     answered 200 and PUTs answered 201 by repository (at most
 *     WH_METRICS_REPOS_MAX repositories; the rest count under repo
 *     "_other"). The metrics path itself is not counted, the status page
 *     is. Only while extensions.metrics is enabled; a repository's first
 *     count allocates its name once, nothing else allocates;
 *   - everything else by the module that owns the event (http.h, tls.h,
 *     gc.h, sync.h, upstream.h, auth.h, ratelimit.h), read when a scrape
 *     or the status page asks.
 *
 * The status page's shape (the web UI is built against it; keep it):
 *
 *   {"version":"0.1.0","uptime_s":123,
 *    "cache":{"hits":{"manifest":0,"blob":0},"misses":{"manifest":0,"blob":0},
 *             "bytes_from_cache":0,"bytes_from_upstream":0,"bytes_from_peers":0,
 *             "usage_bytes":-1,"budget_bytes":0,"min_free_bytes":0,"fs_free_bytes":0,
 *             "evictions":0},
 *    "upstreams":[{"prefix":"dockerhub","url":"https://host:port","up":true,
 *                  "requests":0,"errors":0}],
 *    "fetches":[{"repo":"dockerhub/library/nginx","digest":"sha256:...","bytes":0,
 *                "total":-1,"clients":1,"started_ms":0,"rate_bps":0}],
 *    "gc":{"sweeps":0,"sweeping":false,"last_sweep_ms":0,"manifests_removed":0,
 *          "blobs_removed":0}}
 *
 * usage_bytes is -1 until the GC's first count; budget_bytes and
 * min_free_bytes are 0 when not set; fs_free_bytes is -1 when it cannot be
 * read. upstreams: one entry per URL of each extensions.sync registry, its
 * prefix the registry's first content rule's destination without slashes.
 * fetches: the blob fetches in flight (the tee), newest first, at most
 * WH_METRICS_FETCHES_MAX; total is -1 while unknown, started_ms is Unix
 * time, rate_bps the bytes over the time since it started. */
#ifndef WHARF_METRICS_H
#define WHARF_METRICS_H

#include <stdbool.h>

#include "wharf/base/conf.h"
#include "wharf/ext/module.h"

#define WH_METRICS_STATUS_PATH  "/v2/_wharf/status"
#define WH_METRICS_REPOS_MAX    1000
#define WH_METRICS_FETCHES_MAX  100
#define WH_METRICS_DEFAULT_PATH "/metrics"

/* extensions.metrics (wh_metrics_conf). */
typedef struct wh_metrics_settings {
	bool enable; /* the object is present, unless "enable": false (as Zot) */
	char *path;  /* prometheus.path; NULL: WH_METRICS_DEFAULT_PATH */
} wh_metrics_settings;

/* The whole extensions.metrics object. prometheus.path must begin with '/'
 * and not be under /v2/ (the API's, and the status page's). */
int wh_metrics_conf(wh_conf *c, const cJSON *v, char *base);
void wh_metrics_settings_free(wh_metrics_settings *s);

/* The pipeline's module. It must come after auth and ratelimit in the
 * table (it reads their counters through state_of). */
extern const wh_module wh_metrics_module;

#endif
