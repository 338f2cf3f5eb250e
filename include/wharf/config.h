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
	int max_retries; /* default 3 */
	/* default 5 min as in Zot; on demand we use it as the backoff cap */
	int64_t retry_delay_ms;
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
	/* http.wharf: Wharf's own settings */
	int64_t header_timeout_ms;   /* default 20s: whole request head must arrive within it */
	int64_t idle_timeout_ms;     /* default 60s: keep-alive connection with no request */
	int64_t body_timeout_ms;     /* default 60s: a request body that makes no progress */
	int64_t send_timeout_ms;     /* default 60s: a response the client does not read */
	int64_t shutdown_timeout_ms; /* default 10s: in-flight requests on SIGTERM */
	int max_connections;         /* default 1024 */
	int max_header_bytes;        /* default 65536: request line + headers; over → 431 */
	int max_headers;             /* default 100 header fields; over → 431 */

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
