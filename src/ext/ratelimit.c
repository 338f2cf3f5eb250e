/* Token buckets in a fixed table. Tokens are counted in millitokens so a
 * bucket refills exactly at any rate without floating point. */
#include "wharf/ext/ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/oci/response.h"

#define WAYS 4
#define SETS (WH_RATELIMIT_SLOTS / WAYS)

struct bucket {
	uint64_t tag;     /* hash of (limiter, address, path); 0: empty */
	int64_t milli;    /* tokens * 1000 */
	uint64_t last_ms; /* last refill, and last use (for eviction) */
};

struct limiter {
	const char *method; /* NULL: every method */
	int rate;
};

struct wh_ratelimit {
	const wh_ratelimit_settings *cfg;
	uv_loop_t *loop; /* the module's clock; NULL outside the pipeline */
	struct limiter *limiters;
	int n_limiters;
	uint64_t seed; /* so that nobody can aim paths at one set */
	struct bucket *table;
	uint64_t limited; /* requests answered 429 */
};

/* The limiters cfg sets; how many. */
static int limiters_of(const wh_ratelimit_settings *cfg, struct limiter **out)
{
	int n = (cfg->rate > 0 ? 1 : 0), k = 0;
	for (int i = 0; i < cfg->n_rate_methods; i++)
		n += cfg->rate_methods[i].rate > 0 && cfg->rate_methods[i].method;
	*out = NULL;
	if (n == 0)
		return 0;
	struct limiter *l = wh_calloc((size_t)n, sizeof(*l));
	if (cfg->rate > 0)
		l[k++] = (struct limiter){NULL, cfg->rate};
	for (int i = 0; i < cfg->n_rate_methods; i++)
		if (cfg->rate_methods[i].rate > 0 && cfg->rate_methods[i].method)
			l[k++] = (struct limiter){cfg->rate_methods[i].method,
			                          cfg->rate_methods[i].rate};
	*out = l;
	return k;
}

/* A limiter for cfg, with no limit when it sets none (a reload may add
 * some). */
static wh_ratelimit *rl_create(const wh_ratelimit_settings *cfg)
{
	wh_ratelimit *rl = wh_calloc(1, sizeof(*rl));
	rl->cfg = cfg;
	rl->n_limiters = limiters_of(cfg, &rl->limiters);
	if (getrandom(&rl->seed, sizeof(rl->seed), 0) != (ssize_t)sizeof(rl->seed))
		rl->seed = (uint64_t)(uintptr_t)rl ^ wh_now_ms();
	rl->table = wh_calloc(WH_RATELIMIT_SLOTS, sizeof(*rl->table));
	return rl;
}

int wh_ratelimit_new(const wh_ratelimit_settings *cfg, wh_ratelimit **out)
{
	struct limiter *l;
	int n = limiters_of(cfg, &l);
	free(l);
	*out = n > 0 ? rl_create(cfg) : NULL;
	return 0;
}

void wh_ratelimit_reload(wh_ratelimit *rl, const wh_ratelimit_settings *cfg)
{
	struct limiter *l;
	int n = limiters_of(cfg, &l);
	free(rl->limiters);
	rl->limiters = l;
	rl->n_limiters = n;
	rl->cfg = cfg;
	/* Buckets were filled at the old rates: everyone starts afresh. */
	memset(rl->table, 0, WH_RATELIMIT_SLOTS * sizeof(*rl->table));
}

void wh_ratelimit_free(wh_ratelimit *rl)
{
	if (!rl)
		return;
	free(rl->limiters);
	free(rl->table);
	free(rl);
}

/* An address into 16 bytes (IPv4 mapped). */
static bool parse_ip(const char *s, size_t n, uint8_t out[16])
{
	char buf[INET6_ADDRSTRLEN + 1];
	uint8_t a4[4];
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n && *s == '[' && s[n - 1] == ']')
		s++, n -= 2;
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(out, 0, 16);
	if (inet_pton(AF_INET, buf, a4) == 1) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12, a4, 4);
		return true;
	}
	return inet_pton(AF_INET6, buf, out) == 1;
}

/* The peer, from "ip:port" or "[ip]:port". */
static bool peer_ip(const char *client, uint8_t out[16])
{
	const char *colon = strrchr(client, ':');
	return colon && parse_ip(client, (size_t)(colon - client), out);
}

static bool in_cidr(const wh_cidr *c, const uint8_t ip[16])
{
	int full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->addr, ip, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (c->addr[full] & mask) == (ip[full] & mask);
}

static const char *last_header(const wh_req *req, const char *name)
{
	const char *v = NULL;
	for (int i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, name) == 0)
			v = req->headers[i].value;
	return v;
}

static void client_ip(const wh_ratelimit_settings *cfg, const wh_req *req, uint8_t ip[16])
{
	if (!peer_ip(req->client, ip))
		memset(ip, 0, 16);
	bool trusted = false;
	for (int i = 0; i < cfg->n_trusted_proxies && !trusted; i++)
		trusted = in_cidr(&cfg->trusted_proxies[i], ip);
	if (!trusted)
		return;
	const char *xff = last_header(req, "x-forwarded-for");
	if (xff) {
		const char *comma = strrchr(xff, ',');
		const char *e = comma ? comma + 1 : xff;
		if (parse_ip(e, strlen(e), ip))
			return;
	}
	const char *xri = last_header(req, "x-real-ip");
	if (xri)
		parse_ip(xri, strlen(xri), ip);
}

static bool is_v4(const uint8_t ip[16])
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return memcmp(ip, prefix, 12) == 0;
}

void wh_ratelimit_client(const wh_ratelimit_settings *cfg, const wh_req *req, char *buf,
                         size_t buflen)
{
	uint8_t ip[16];
	client_ip(cfg, req, ip);
	if (is_v4(ip)) {
		inet_ntop(AF_INET, ip + 12, buf, (socklen_t)buflen);
	} else {
		memset(ip + 8, 0, 8);
		inet_ntop(AF_INET6, ip, buf, (socklen_t)buflen);
	}
}

/* FNV-1a, seeded. */
static uint64_t mix(uint64_t h, const void *data, size_t n)
{
	const uint8_t *p = data;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Take from the bucket of tag; returns 0 or the seconds to wait. */
static int take(wh_ratelimit *rl, uint64_t tag, int rate, uint64_t now)
{
	struct bucket *set = &rl->table[(tag >> 16) % SETS * WAYS];
	struct bucket *b = NULL, *lru = &set[0];
	int64_t burst = (int64_t)WH_MAX(1, rate) * 1000;
	for (int i = 0; i < WAYS; i++) {
		if (set[i].tag == tag) {
			b = &set[i];
			break;
		}
		if (set[i].last_ms < lru->last_ms || !set[i].tag)
			lru = &set[i];
	}
	if (!b) {
		b = lru;
		b->tag = tag;
		b->milli = burst;
		b->last_ms = now;
	}
	if (now > b->last_ms) {
		int64_t add = (int64_t)(now - b->last_ms) * rate; /* ms * per-second = milli */
		b->milli = WH_MIN(burst, b->milli + add);
		b->last_ms = now;
	}
	if (b->milli >= 1000) {
		b->milli -= 1000;
		return 0;
	}
	int64_t wait_ms = (1000 - b->milli + rate - 1) / rate;
	return (int)WH_MAX(1, (wait_ms + 999) / 1000);
}

int wh_ratelimit_take(wh_ratelimit *rl, const wh_req *req, uint64_t now_ms)
{
	uint8_t ip[16];
	client_ip(rl->cfg, req, ip);
	if (!is_v4(ip))
		memset(ip + 8, 0, 8); /* one /64 is one client */
	uint64_t base = mix(rl->seed ^ 0xcbf29ce484222325ULL, ip, 16);
	base = mix(base, req->path, strlen(req->path));
	for (int i = 0; i < rl->n_limiters; i++) {
		const struct limiter *l = &rl->limiters[i];
		if (l->method && strcmp(l->method, req->method) != 0)
			continue;
		uint64_t tag = mix(base, &i, sizeof(i)) | 1; /* never 0, the empty tag */
		int wait = take(rl, tag, l->rate, now_ms);
		if (wait)
			return wait;
	}
	return 0;
}

/* ---- the module: the preaccess phase ---- */

/* The module's state is a limiter, there whether or not the config sets a
 * limit, so that a reload can set one (and the metrics read its count). */
static int module_init(const wh_module_env *env, const void *settings, void **state)
{
	const wh_ratelimit_settings *cfg = settings;
	wh_ratelimit *rl = rl_create(cfg);
	rl->loop = env->loop;
	if (rl->n_limiters > 0)
		wh_log(WH_LOG_INFO, "ratelimiter enabled", "rate", WH_LI, (long long)cfg->rate,
		       NULL);
	*state = rl;
	return 0;
}

static int module_reload(void *state, const void *settings)
{
	wh_ratelimit_reload(state, settings);
	return 0;
}

static void module_free(void *state)
{
	wh_ratelimit_free(state);
}

/* Outermost, as Zot's: a refused request costs no password check. */
static wh_phase_rc preaccess(void *state, wh_call *call)
{
	wh_ratelimit *rl = state;
	if (!rl || rl->n_limiters == 0)
		return WH_PHASE_NEXT;
	int wait = wh_ratelimit_take(rl, call->req, uv_now(rl->loop));
	if (wait == 0)
		return WH_PHASE_NEXT;
	rl->limited++;
	static const char body[] = "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\","
	                           "\"message\":\"too many requests\"}]}";
	wh_req *req = call->req;
	wh_oci_start(req, 429);
	wh_resp_header(req, "Content-Type", "application/json");
	wh_resp_header(req, "Retry-After", "%d", wait);
	wh_resp_length(req, sizeof(body) - 1);
	wh_resp_write(req, body, sizeof(body) - 1);
	wh_resp_end(req);
	return WH_PHASE_DONE;
}

uint64_t wh_ratelimit_limited(const wh_ratelimit *rl)
{
	return rl ? rl->limited : 0;
}

const wh_module wh_ratelimit_module = {
    .name = "ratelimit",
    .init = module_init,
    .free = module_free,
    .reload = module_reload,
    .preaccess = preaccess,
};

/* ---- configuration: http.ratelimit, http.wharf.trustedProxies ---- */

#define RMT(m) offsetof(wh_rate_method, m)

static const wh_conf_key rate_method_fields[] = {
    {"method", WH_CONF_STRING, WH_CONF_NONEMPTY, RMT(method), NULL, NULL},
    {"rate", WH_CONF_INT, 0, RMT(rate), NULL, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

static int rate_method_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_ratelimit_settings *c = arg;
	wh_rate_method *m = &c->rate_methods[c->n_rate_methods++];
	int rc = wh_conf_walk(p, item, rate_method_fields, (char *)m);

	for (char *ch = m->method; !rc && ch && *ch; ch++)
		if (*ch >= 'a' && *ch <= 'z')
			*ch = (char)(*ch - 'a' + 'A');
	return rc;
}

static int parse_rate_methods(wh_conf *p, const cJSON *v, char *base)
{
	wh_ratelimit_settings *c = (wh_ratelimit_settings *)(void *)base;
	c->rate_methods = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*c->rate_methods));
	return wh_conf_each(p, v, false, "expected an array", rate_method_item, c);
}

const wh_conf_key wh_ratelimit_keys[] = {
    {"rate", WH_CONF_INT, 0, offsetof(wh_ratelimit_settings, rate), NULL, NULL},
    {"methods", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_rate_methods},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

/* "a.b.c.d", "a.b.c.d/n", "x::y", "x::y/n". */
static int parse_cidr(const char *s, wh_cidr *out)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	uint8_t a4[4];
	int max;

	if (n >= sizeof(buf))
		return WH_EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, a4) == 1) {
		out->addr[10] = out->addr[11] = 0xff;
		memcpy(out->addr + 12, a4, 4);
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		max = 128;
	} else {
		return WH_EINVAL;
	}
	out->bits = 128;
	if (slash) {
		char *end;
		long bits;
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || errno || bits < 0 || bits > max)
			return WH_EINVAL;
		out->bits = (int)bits + (128 - max);
	}
	return 0;
}

static int proxy_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_ratelimit_settings *c = arg;
	if (!cJSON_IsString(item) ||
	    parse_cidr(item->valuestring, &c->trusted_proxies[c->n_trusted_proxies]) != 0)
		return wh_conf_fail(
		    p, "expected an IP address or CIDR block (\"10.0.0.0/8\", \"::1\")");
	c->n_trusted_proxies++;
	return 0;
}

static int parse_trusted_proxies(wh_conf *p, const cJSON *v, char *base)
{
	wh_ratelimit_settings *c = (wh_ratelimit_settings *)(void *)base;
	free(c->trusted_proxies); /* the defaults */
	c->trusted_proxies = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(wh_cidr));
	c->n_trusted_proxies = 0;
	return wh_conf_each(p, v, false, "expected an array of addresses or CIDR blocks",
	                    proxy_item, c);
}

const wh_conf_key wh_ratelimit_wharf_keys[] = {
    WH_CONF_FN_LIST("trustedProxies", WH_CONF_NOSTORE, parse_trusted_proxies),
    WH_CONF_END,
};

void wh_ratelimit_settings_init(wh_ratelimit_settings *s)
{
	memset(s, 0, sizeof(*s));
	/* Loopback: a proxy on the same host (nginx, Caddy) is the usual setup;
	 * anything further must be named, or any client could choose the
	 * address it is rate-limited as. */
	s->trusted_proxies = wh_calloc(2, sizeof(wh_cidr));
	parse_cidr("127.0.0.0/8", &s->trusted_proxies[0]);
	parse_cidr("::1", &s->trusted_proxies[1]);
	s->n_trusted_proxies = 2;
}

void wh_ratelimit_settings_free(wh_ratelimit_settings *s)
{
	for (int i = 0; i < s->n_rate_methods; i++)
		free(s->rate_methods[i].method);
	free(s->rate_methods);
	free(s->trusted_proxies);
	memset(s, 0, sizeof(*s));
}
