/* The upstream client: HTTP requests to other registries through libcurl's
 * multi interface, driven by the same libuv loop as the server (a uv_poll per
 * socket, one uv_timer for curl's timeouts). Nothing here blocks the loop.
 *
 * A wh_up_req is one logical request: it may take several HTTP exchanges
 * before its answer is delivered — the Bearer token dance on a 401 (token
 * fetched anonymously or with the registry's credentials and cached per
 * scope until it expires, at most a day), a Basic retry, redirects when the
 * caller allows them, fallback URLs, retries with backoff on connection
 * errors, 5xx and 429 (honouring a short Retry-After). Only the final
 * response reaches the caller.
 *
 * Redirects (301, 302, 303, 307, 308) are followed only with
 * wh_up_opts.follow_redirects, at most 5 in a row; otherwise the 3xx is the
 * answer. The Authorization header and the registry's credentials go only to
 * the scheme, host and port of the original request. A redirect, and a token
 * realm, are places the upstream chose: their connections may not go to a
 * loopback, link-local, private (RFC 1918, 100.64/10, fc00::/7), unspecified or
 * multicast address unless the upstream itself (the address the first
 * exchange connected to) is in that same class, or the client was created
 * with allow_private_redirects. The address is checked when the connection is
 * opened (and again before a request goes on a reused one), so no name
 * resolution trick gets around it; a refused one is logged and the request
 * ends with WH_EUPSTREAM, without retries.
 *
 * Bounds on what the upstream sends: every exchange must begin to answer
 * (its response headers) within the registry's responseHeaderTimeout (4 s by
 * default); every exchange but a bulk one (a blob GET) must be over within a
 * minute; a bulk one within syncTimeout (3 h), and it is cut when it stalls
 * (under 1 KiB/s for 30 s).
 *
 * Health, per upstream URL: after 3 failed exchanges in a row, or one with
 * no headers in time, the URL is down. Requests then use the registry's
 * other URLs, or end at once with WH_EUPSTREAM when all are down; a probe
 * (GET /v2/) goes in the background once its back-off (2 s, doubling to a
 * minute) has passed, and any HTTP answer brings the URL back. Both changes
 * are logged once. An exchange that timed out is not retried on the same
 * URL. Headers are read up to 64 KiB an exchange. The
 * body of a non-2xx answer is never passed on and is read up to 64 KiB: past
 * that (or when it stalls) the transfer ends and the status is the answer.
 * A 2xx body over wh_up_opts.max_body ends the request with WH_ETOOBIG (at
 * once when Content-Length says so, before any of the body is read).
 *
 * Callbacks, in order, each from the loop — never from inside
 * wh_upstream_request itself, and never re-entrantly:
 *   on_head  once, with the final response's status and headers;
 *   on_data  zero or more times with body bytes (only for 2xx answers, and
 *            never more than max_body in all);
 *   on_done  exactly once, last; the request is freed after it returns.
 * on_done's err is 0 when the whole body arrived (for a non-2xx answer: when
 * the status did), or a WH_E* code (the response was cut, the upstream could
 * not be reached, the body was over max_body, ...), or the caller's own
 * (wh_upstream_abort). on_done can come without on_head when no response
 * was ever had. */
#ifndef WHARF_UPSTREAM_H
#define WHARF_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wharf/base/conf.h"

/* An entry of extensions.sync.registries[]: where and how to reach an
 * upstream registry, and the content rules that sync (sync.h) applies to its
 * names. Parsed by sync's keys (wh_sync_conf). */
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

/* What applies to every upstream (extensions.sync.credentialsFile and Wharf's
 * own extensions.sync.wharf keys, wh_upstream_wharf_keys). */
typedef struct wh_upstream_settings {
	char *credentials_file; /* NULL or "": anonymous */
	/* allowPrivateRedirects, default false: an upstream may redirect (or
	 * send for a token) to a loopback, link-local, private, unspecified or
	 * multicast address only when it is at such an address itself; true
	 * lifts that. */
	bool allow_private_redirects;
	int64_t connect_timeout_ms; /* connectTimeout, default 10 s */
	int64_t request_timeout_ms; /* requestTimeout, default 60 s: a whole exchange, but a blob */
	int64_t stall_timeout_ms;   /* stallTimeout, default 30 s under 1 KiB/s: a blob cut */
	int max_host_connections;   /* maxHostConnections, default 16 per upstream host */
} wh_upstream_settings;

extern const wh_conf_key wh_upstream_wharf_keys[];
void wh_upstream_settings_init(wh_upstream_settings *s);
void wh_upstream_settings_free(wh_upstream_settings *s);

typedef struct wh_upstream wh_upstream;
typedef struct wh_up_req wh_up_req;

typedef struct wh_up_head {
	int status;
	int64_t content_length;   /* -1 when not given */
	const char *content_type; /* without parameters; NULL when not given */
	const char *digest;       /* Docker-Content-Digest; NULL when not given */
	int retry_after_s;        /* Retry-After in seconds; -1 when not given */
	int64_t range_start;      /* a 206's first byte (Content-Range); -1 when not given */
	const char *link_next;    /* a Link header's rel="next" target, as sent; NULL when none */
} wh_up_head;

typedef struct wh_up_cbs {
	void (*on_head)(wh_up_req *r, const wh_up_head *head, void *arg);
	/* Return 0 to go on, non-zero to abort the transfer (on_done follows
	 * with an error). */
	int (*on_data)(wh_up_req *r, const char *data, size_t len, void *arg);
	void (*on_done)(wh_up_req *r, int err, void *arg);
} wh_up_cbs;

/* What a request may do. NULL for wh_upstream_request's opts means
 * {false, false, -1}. */
typedef struct wh_up_opts {
	/* Follow redirects, as a blob GET must to reach a CDN. */
	bool follow_redirects;
	/* A large body (a blob GET): no total deadline, only the stall limit. */
	bool bulk;
	/* The largest 2xx body accepted, in bytes; -1: no limit. */
	int64_t max_body;
	/* > 0: ask for the bytes from there on (Range: bytes=N-), to resume a
	 * cut transfer. The answer may be a 206 (range_start says from where)
	 * or a 200 with the whole body, when the upstream ignores ranges. */
	int64_t range_from;
	/* Sent with Cache-Control: only-if-cached: a peer Wharf is asked for
	 * what it holds, never to fetch it (see sync.h, peer fill). */
	bool cached_only;
} wh_up_opts;

/* Create the client with settings s (copied). s->credentials_file may be
 * NULL or "" (none); its format is Zot's: {"host[:port]": {"username": "...", "password":
 * "..."}}. Returns 0, or WH_EINVAL with a message in err. */
int wh_upstream_new(uv_loop_t *loop, const wh_upstream_settings *s, wh_upstream **out, char *err,
                    size_t errlen);

/* SIGHUP: the settings s from now on (timeouts, connection limits) and the
 * credentials file read again. Requests in flight go on. Returns 0, or
 * WH_EINVAL with a message in err (the old credentials stay). */
int wh_upstream_reload(wh_upstream *up, const wh_upstream_settings *s, char *err, size_t errlen);

/* Cancel every request (no callbacks fire) and free the client once curl's
 * sockets are closed. */
void wh_upstream_free(wh_upstream *up);

/* Start a request for `path` (beginning with /v2/) on the registry `reg`.
 * repo is the upstream repository name, used for the token scope
 * (repository:<repo>:pull). accept and opts may be NULL; opts is copied. */
wh_up_req *wh_upstream_request(wh_upstream *up, const wh_sync_registry *reg, const char *method,
                               const char *path, const char *repo, const char *accept,
                               const wh_up_opts *opts, const wh_up_cbs *cbs, void *arg);

/* Stop a request: no callback fires after this returns. Safe to call from
 * inside on_head or on_data. */
void wh_upstream_cancel(wh_up_req *r);

/* Stop a request's transfer for a reason of the caller's (err < 0: a WH_E*
 * code or -errno, e.g. its disk is full), from inside on_head or on_data
 * only: no more on_data, and on_done follows, later from the loop as
 * always, with err. Nothing is logged, nothing is retried or tried on
 * another URL, and the URL's health is not touched: the upstream did
 * nothing wrong. A second call, or one after the request ended, does
 * nothing. */
void wh_upstream_abort(wh_up_req *r, int err);

/* What the client did with one upstream URL (every URL with the same
 * wh_upstream_base shares it), for metrics and the status page. An
 * exchange is one HTTP request to the registry (a retry, a fallback URL's,
 * a redirect's hop and a health probe each count; token requests, sent
 * to a token realm, do not). */
#define WH_UPSTREAM_CODES 600
typedef struct wh_upstream_url_stats {
	bool up; /* not marked down (health, above) */
	uint64_t requests;
	uint64_t errors; /* no answer (a transport error, no headers in time), or a 5xx */
	/* Exchanges by status (100..599); [0]: without an answer. NULL when
	 * nothing was ever sent there. Valid as long as the client. */
	const uint64_t *codes;
} wh_upstream_url_stats;
void wh_upstream_get_url_stats(const wh_upstream *up, const char *url, wh_upstream_url_stats *out);

/* The API base of a registry URL: scheme://host[:port] without a trailing
 * slash, with Docker Hub's web names mapped to its registry API host. Writes
 * into buf (NUL-terminated) and returns it. */
const char *wh_upstream_base(const char *url, char *buf, size_t buflen);

/* True when url names Docker Hub, whose official images live under library/. */
bool wh_upstream_is_docker_hub(const char *url);

/* libcurl's version and TLS library ("8.14.1 OpenSSL/3.5.1"), as the shared
 * library that requests would load says (for `wharf --version`); it is
 * loaded if need be, without initialising it. Returns 0, or WH_EUPSTREAM
 * with the loader's reason in buf. buf is NUL-terminated either way. */
int wh_upstream_curl_version(char *buf, size_t buflen);

#endif
