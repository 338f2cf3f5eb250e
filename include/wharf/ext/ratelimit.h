/* http.ratelimit: token buckets per client, as Zot's tollbooth keys them.
 *
 * Each limiter (the global `rate`, then one per `methods[]` entry, which
 * applies to its method only) has a bucket per (client address, exact URL
 * path): burst max(1, rate), refilled at rate per second. IPv6 clients are
 * grouped by /64, as tollbooth does. The client is the peer address, or,
 * when the peer is one of http.wharf.trustedProxies, the rightmost
 * X-Forwarded-For entry (else X-Real-IP): Zot believes those headers from
 * anyone, which lets any client pick the address it is limited as.
 *
 * Memory is fixed whatever the number of clients: the buckets live in a
 * table of WH_RATELIMIT_SLOTS entries, set-associative, the least recently
 * used bucket of a set evicted for a new one (an evicted client starts again
 * with a full bucket: it can only gain from that, never be refused). */
#ifndef WHARF_RATELIMIT_H
#define WHARF_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "wharf/base/conf.h"
#include "wharf/ext/module.h"
#include "wharf/net/http.h"

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

/* http.ratelimit, and the trusted proxies of http.wharf. */
typedef struct wh_ratelimit_settings {
	int rate; /* requests per second; 0 = no global limit */
	wh_rate_method *rate_methods;
	int n_rate_methods;
	/* Peers whose X-Forwarded-For / X-Real-IP is believed (rate limiting
	 * keys on the client they name). Default loopback. */
	wh_cidr *trusted_proxies;
	int n_trusted_proxies;
} wh_ratelimit_settings;

extern const wh_conf_key wh_ratelimit_keys[];       /* http.ratelimit */
extern const wh_conf_key wh_ratelimit_wharf_keys[]; /* http.wharf.trustedProxies */
void wh_ratelimit_settings_init(wh_ratelimit_settings *s);
void wh_ratelimit_settings_free(wh_ratelimit_settings *s);

#define WH_RATELIMIT_SLOTS 8192

/* The pipeline's module (module.h): in the preaccess phase, a request
 * without a token is answered 429 TOOMANYREQUESTS with Retry-After. Logs
 * "ratelimiter enabled" at start when a limit is set. */
extern const wh_module wh_ratelimit_module;

typedef struct wh_ratelimit wh_ratelimit;

/* NULL in *out when the config sets no limit. The config must outlive it. */
int wh_ratelimit_new(const wh_ratelimit_settings *cfg, wh_ratelimit **out);
void wh_ratelimit_free(wh_ratelimit *rl);

/* SIGHUP: cfg's limits from now on (cfg must outlive it); every bucket
 * starts full again. */
void wh_ratelimit_reload(wh_ratelimit *rl, const wh_ratelimit_settings *cfg);

/* Take a token for req at now_ms (monotonic). Returns 0 when the request may
 * go on, or the seconds (>= 1) until it may be retried. */
int wh_ratelimit_take(wh_ratelimit *rl, const wh_req *req, uint64_t now_ms);

/* Requests answered 429 so far (0 for NULL: no limit set), for metrics.
 * The module's state (wh_module_env.state_of) is the wh_ratelimit. */
uint64_t wh_ratelimit_limited(const wh_ratelimit *rl);

/* The client address req is limited as, into buf ("192.0.2.1", "2001:db8::"),
 * with trusted proxies' headers applied. */
void wh_ratelimit_client(const wh_ratelimit_settings *cfg, const wh_req *req, char *buf,
                         size_t buflen);

#endif
