/* Configuration: Zot's config.json, parsed with cJSON into typed structs.
 *
 * Keys Wharf implements behave as in Zot. Keys Zot accepts that Wharf does
 * not implement yet are collected as warnings that name them; unknown keys,
 * wrong types, bad durations, globs, regexes and ports are errors naming the
 * key's path (`http.adress: unknown key`). Wharf's own settings live under a
 * `wharf` key of the object they belong to (`http.wharf.headerTimeout`), so
 * Zot still reads the file once those are removed. */
#ifndef WHARF_CONFIG_H
#define WHARF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where `wharf serve` keeps its data without a config file. */
#define WH_DEFAULT_ROOT "/var/lib/wharf"

typedef struct wh_sync_tags {
	char *regex;         /* NULL: every tag */
	char *exclude_regex; /* NULL: none excluded */
	bool semver;         /* keep only tags Masterminds/semver v1 parses (wh_semver_valid) */
} wh_sync_tags;

typedef struct wh_sync_content {
	char *prefix; /* doublestar glob over upstream names; "**" matches every name */
	/* local path prefix, "/dockerhub"; "/" for the root; NULL: same as upstream */
	char *destination;
	bool strip_prefix;
	wh_sync_tags tags;
} wh_sync_content;

typedef struct wh_sync_registry {
	char **urls; /* first is primary, the rest fallbacks; "https://host[:port]" */
	int n_urls;
	bool on_demand;
	bool tls_verify; /* default true */
	char *cert_dir;  /* ca.crt, client.cert, client.key; NULL: none */
	int max_retries; /* default 0, as in Zot */
	/* default 5 min as in Zot; on demand we use it as the backoff cap */
	int64_t retry_delay_ms;
	/* Zot's maxRetryDelay: the back-off grows from retryDelay to it
	 * (exponential); default retryDelay (constant). */
	int64_t max_retry_delay_ms;
	/* > 0 with content rules given: periodic sync (poll.h) every this often. */
	int64_t poll_interval_ms;
	/* How long a tag is served from the cache before upstream is asked again (HEAD):
	 * registries[].manifestCheckInterval (Zot's key; needs onDemand) if set, else
	 * extensions.sync.wharf.manifestCheckInterval. */
	int64_t manifest_check_interval_ms;
	/* Zot's syncTimeout (default 3 h): how long one blob transfer may take
	 * in all; every other exchange is held to a minute. */
	int64_t sync_timeout_ms;
	/* Zot's responseHeaderTimeout: how long the upstream may take to start
	 * answering an exchange (default 4 s, Zot's 30 s). */
	int64_t response_header_timeout_ms;
	bool only_signed; /* parsed; true is refused (not implemented) */
	wh_sync_content *content;
	int n_content;
	bool content_given; /* content[] was in the file (else the default "**" rule) */
} wh_sync_registry;

/* http.accessControl actions, as bits. */
enum {
	WH_ACTION_READ = 1 << 0,   /* GET/HEAD, and what the catalog lists */
	WH_ACTION_CREATE = 1 << 1, /* blob uploads; a manifest under a new tag or digest */
	WH_ACTION_UPDATE = 1 << 2, /* a manifest under a tag that exists */
	WH_ACTION_DELETE = 1 << 3, /* DELETE of a manifest or blob */
};

/* One entry of `policies` (or adminPolicy): who, and what they may do.
 * Names are compared as written, except group names, lower-cased as Zot's
 * viper lower-cases the keys of accessControl.groups. */
typedef struct wh_policy {
	char **users;
	int n_users;
	char **groups;
	int n_groups;
	unsigned actions; /* WH_ACTION_* */
} wh_policy;

/* accessControl.repositories.<pattern>. */
typedef struct wh_repo_policy {
	char *pattern; /* doublestar glob, lower-cased (viper) */
	wh_policy *policies;
	int n_policies;
	unsigned default_actions;   /* defaultPolicy: any authenticated user */
	unsigned anonymous_actions; /* anonymousPolicy: requests without credentials only */
} wh_repo_policy;

typedef struct wh_group {
	char *name; /* lower-cased */
	char **users;
	int n_users;
} wh_group;

typedef struct wh_access_config {
	bool enabled; /* http.accessControl is present */
	wh_repo_policy *repos;
	int n_repos;
	wh_group *groups;
	int n_groups;
	wh_policy admin; /* adminPolicy: every repository */
	/* metrics: who may scrape (Wharf serves no metrics route yet) */
	char **metrics_users;
	int n_metrics_users;
	unsigned metrics_anonymous;
} wh_access_config;

/* http.ratelimit.methods[]. */
typedef struct wh_rate_method {
	char *method; /* upper-cased */
	int rate;     /* requests per second */
} wh_rate_method;

/* An address block: http.wharf.trustedProxies. IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d), so one comparison covers both families. */
typedef struct wh_cidr {
	uint8_t addr[16];
	int bits; /* prefix length over the 128 bits */
} wh_cidr;

typedef struct wh_config {
	char *path;              /* the file read, or NULL for the built-in default */
	char *dist_spec_version; /* informational */

	/* storage */
	char *root_dir; /* storage.rootDirectory: required, as in Zot */
	bool dedupe;    /* default true */
	bool gc;        /* default true */
	/* gcDelay and gcInterval: default 1h as in Zot, or 0 when gc is false */
	int64_t gc_delay_ms;
	int64_t gc_interval_ms;
	bool commit; /* fsync before publishing; Zot default false, Wharf always fsyncs */

	/* http */
	char *address; /* absent: "127.0.0.1", Zot's default */
	/* 1..65535; Zot writes it as a string, "5000"; absent: 8080, Zot's default */
	int port;
	char *realm;
	char *external_url;
	/* http.tls: served over TLS when cert and key are both set (as Zot). Paths
	 * as written; the files are read by wh_tls_new (tls.h), not here. cacert:
	 * client certificates are required and verified against it. */
	char *tls_cert;
	char *tls_key;
	char *tls_cacert;
	bool http_auth; /* an http.auth object is present (any authentication) */
	/* http.wharf: Wharf's own settings */
	int64_t header_timeout_ms;   /* default 20s: whole request head must arrive within it */
	int64_t idle_timeout_ms;     /* default 60s: keep-alive connection with no request */
	int64_t body_timeout_ms;     /* default 60s: a request body that makes no progress */
	int64_t send_timeout_ms;     /* default 60s: a response the client does not read */
	int64_t shutdown_timeout_ms; /* default 10s: in-flight requests on SIGTERM */
	int max_connections;         /* default 1024 */
	int max_header_bytes;        /* default 65536: request line + headers; over → 431 */
	int max_headers;             /* default 100 header fields; over → 431 */

	/* Peers whose X-Forwarded-For / X-Real-IP is believed (rate limiting keys
	 * on the client they name). http.wharf.trustedProxies; default loopback. */
	wh_cidr *trusted_proxies;
	int n_trusted_proxies;

	/* http.auth: what Wharf implements of it; the rest is refused by name. */
	char *htpasswd_path; /* http.auth.htpasswd.path; NULL or "": no htpasswd */
	int fail_delay_s;    /* http.auth.failDelay */
	wh_access_config access;
	/* http.ratelimit: 0 = no global limit */
	int rate;
	wh_rate_method *rate_methods;
	int n_rate_methods;

	/* log */
	int log_level;    /* WH_LOG_* from log.h; default info (Zot's is debug) */
	char *log_output; /* NULL: stderr; else a file path, appended */
	char *log_audit;  /* parsed; not implemented (warning) */

	/* extensions: as in Zot, an extension whose object is present is enabled unless
	 * its "enable" is false */
	bool search_enable;
	bool ui_enable;
	bool metrics_enable;
	bool sync_enable;
	char *sync_credentials_file; /* NULL: anonymous */
	wh_sync_registry *registries;
	int n_registries;
	/* extensions.sync.wharf.manifestCheckInterval, default 5 min; each registry's
	 * manifest_check_interval_ms is the one to use */
	int64_t manifest_check_interval_ms;
	/* extensions.sync.wharf.allowPrivateRedirects, default false: an upstream may
	 * redirect (or send for a token) to a loopback, link-local, private,
	 * unspecified or multicast address only when it is at such an address
	 * itself; true lifts that (upstream.h) */
	bool allow_private_redirects;

	/* Keys Zot accepts that Wharf ignores for now, as "path" strings. */
	char **warnings;
	int n_warnings;
	/* Settings that are valid but probably not what was meant, as
	 * "path: what" strings (a registry that is never fetched, say). */
	char **notices;
	int n_notices;
} wh_config;

/* Parse JSON text. On success returns 0 and fills *out (free with
 * wh_config_free). On failure returns WH_EINVAL, leaves *out zeroed and writes
 * a one-line message naming the key's path into err (NUL-terminated, truncated
 * to errlen; err may be NULL). Keys match case-insensitively, as in Zot (viper);
 * a null value is treated as an absent key. JSON syntax errors give the line and
 * column. */
int wh_config_parse(const char *json, size_t len, wh_config *out, char *err, size_t errlen);

/* Read and parse a file. Every error message begins with the file's path
 * ("/etc/zot/config.json: http.adress: unknown key"). Returns 0, WH_EINVAL,
 * WH_ETOOBIG (over 16 MiB) or -errno when the file cannot be read. */
int wh_config_load(const char *path, wh_config *out, char *err, size_t errlen);

/* The built-in default: the classic Zot pull-through config (Docker Hub under
 * /dockerhub, GHCR under /ghcr, on demand), on 127.0.0.1:5000, data in
 * WH_DEFAULT_ROOT. */
int wh_config_default(wh_config *out);

/* The text of the built-in default config, as JSON. */
extern const char wh_config_default_json[];

void wh_config_free(wh_config *cfg);

/* Go-style duration ("1h30m", "250ms", "0"). Returns 0 and sets *ms, or
 * WH_EINVAL. Fractions are accepted ("1.5h"); negative values are not. */
int wh_duration_parse(const char *s, int64_t *ms);

#endif
