/* Upstream client: libcurl multi on the libuv loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION → a uv_poll
 * per socket, attached with curl_multi_assign) and when to wake it
 * (CURLMOPT_TIMERFUNCTION → one uv_timer). Every call into curl that can
 * complete transfers is followed by draining curl_multi_info_read, and the
 * callbacks to our callers run from there or from curl's write callback —
 * never while we are inside one of curl's socket or timer functions.
 *
 * A request that must be retried (401 → token, 429, 5xx, connection error)
 * gets a fresh easy handle; the multi handle keeps the connections, so a retry
 * or the next request to the same host reuses them. Redirects are followed
 * here too, not by curl, each hop a fresh easy handle: that is how we know
 * which connections go where the upstream sent us (and must pass the address
 * check) and which requests may carry our Authorization. */
#include "wharf/cache/upstream.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
/* libcurl is loaded with dlopen at the first upstream request: it brings a
 * TLS stack and a dozen libraries (Kerberos, LDAP, ...) whose start-up costs
 * several MiB of memory, which a registry that is not filling its cache
 * should not pay. The type-checking macros go: calls go through lc. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <libpsl.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "wharf/base/common.h"
#include "wharf/base/list.h"
#include "wharf/base/log.h"

#define TOKEN_MAX           256       /* cached tokens */
#define TOKEN_BODY_MAX      (1 << 16) /* a token response larger than this is refused */
#define TOKEN_TTL_DEFAULT_S 60        /* the token spec's lifetime when expires_in is absent */
#define TOKEN_TTL_MAX_S     86400     /* a token is asked for again at least daily */
#define RETRY_AFTER_MAX_S   5         /* wait at most this long for a 429's Retry-After */
#define BACKOFF_MIN_MS      200
#define RETRY_WAIT_MAX_MS   5000 /* the longest a waiting client is held per retry */

/* How long and how much the upstream may take. Kept here together: Zot's
 * syncTimeout and responseHeaderTimeout will set some of them. */
#define STALL_BYTES_PER_S 1024        /* under this for stallTimeout, a transfer is cut */
#define HEADERS_MAX       (64 * 1024) /* header bytes of one exchange */
#define MAX_REDIRECTS     5
/* An upstream that failed this many exchanges in a row (or let one wait past
 * its header deadline) is down: clients are not sent there while it is, and
 * it is probed (GET /v2/) after a back-off that doubles up to a minute. */
#define DOWN_AFTER_FAILURES  3
#define PROBE_BACKOFF_MIN_MS 2000
#define PROBE_BACKOFF_MAX_MS 60000
#define ERROR_BODY_MAX       (64 * 1024) /* of a body that is read only to be dropped */
#define CREDS_FILE_MAX       (1 << 20)   /* credentialsFile */

struct token {
	char *key; /* base + "|" + scope */
	char *value;
	uint64_t expires_ms; /* wh_now_ms() time */
};

struct cred {
	char *host; /* host[:port] as in the credentials file */
	char *user, *pass;
};

struct sock {
	uv_poll_t poll;
	curl_socket_t fd;
	wh_upstream *up;
	wh_list link; /* in up->socks */
};

/* What we know of one upstream URL's health. */
struct health {
	struct health *next;
	char *base; /* scheme://host[:port], as wh_upstream_base gives it */
	int fails;  /* exchanges failed in a row */
	bool down;
	uint64_t probe_at_ms; /* while down: when the next probe may go (uv_now) */
	uint64_t backoff_ms;
	bool probing;
	/* Exchanges with it, by status; [0]: no answer (wh_upstream_get_url_stats). */
	uint64_t codes[WH_UPSTREAM_CODES];
	uint64_t requests, errors;
};

struct wh_upstream {
	uv_loop_t *loop;
	struct health *health;
	int n_health;
	CURLM *multi;
	uv_timer_t timer;
	struct token tokens[TOKEN_MAX];
	int n_tokens;
	struct cred *creds;
	int n_creds;
	wh_list reqs;             /* wh_up_req, newest first */
	wh_list socks;            /* struct sock */
	wh_upstream_settings set; /* credentials_file not kept */
	int in_curl;              /* depth of calls into curl that may call us back */
	bool freeing;
	int pending_closes;
};

enum phase { PH_MAIN, PH_TOKEN };

/* Kinds of addresses a redirect may not lead to from an upstream of another
 * kind. */
enum addr_class {
	AC_UNKNOWN,
	AC_PUBLIC,
	AC_LOOPBACK,
	AC_LINK_LOCAL, /* 169.254/16 (cloud metadata), fe80::/10 */
	AC_PRIVATE,    /* RFC 1918, 100.64/10, fc00::/7, fec0::/10 */
	AC_UNSPECIFIED,
	AC_MULTICAST, /* and broadcast, and 240/4 */
};

struct wh_up_req {
	wh_upstream *up;
	wh_list link; /* in up->reqs */
	const wh_sync_registry *reg;
	char *method, *path, *repo, *accept;
	wh_up_cbs cbs;
	void *arg;
	wh_up_opts opts;

	int url_idx;
	int attempt;
	enum phase phase;
	CURL *easy;
	struct curl_slist *hdrs;
	char *authz; /* "Authorization: ..." for the main request, or NULL */
	bool tried_auth;
	bool basic; /* answer a Basic challenge with the registry's credentials */
	char token_key[512];
	int hops;                     /* redirects followed since the original request */
	char *hop_url;                /* where the current hop goes; NULL for the original */
	enum addr_class origin_class; /* of the upstream that sent us elsewhere */
	bool guarded;                 /* this exchange goes where the upstream sent us */
	bool refused;                 /* ... and the address check refused a connection */

	/* The response being received (headers are reset by each status line,
	 * so after redirects they are the final response's). */
	int status;
	int64_t clen;
	int64_t range_start; /* of a 206's Content-Range; -1 none */
	char ctype[256];
	char digest[160];
	char link_next[1024]; /* the target of a Link rel="next"; "" none */
	int retry_after;
	char *challenge;
	bool decided; /* looked at the final status: delivering or discarding */
	bool discarding;
	bool head_delivered;
	bool headers_done; /* a final (non-1xx) response's headers are all in */
	size_t header_bytes;
	size_t dropped;   /* body bytes read and dropped */
	int64_t body_len; /* 2xx body bytes passed on */
	int fail;         /* a WH_E* code that ends the request whatever curl says */
	const char *fail_why;
	int abort_err; /* the caller stopped it (wh_upstream_abort): on_done's err */
	char *tbuf;    /* token response body */
	size_t tlen, tcap;

	uv_timer_t retry_timer;
	bool cancelled;
	bool done;
	bool probe;        /* a health probe: this URL only, no auth, no retry */
	struct health *hl; /* of the URL the current exchange goes to */
};

static void check_done(wh_upstream *up);
static int multi_ready(wh_upstream *up);
static void head_deadline_cb(uv_timer_t *t);
static uint64_t header_timeout_ms(const wh_up_req *r);
static void start_main(wh_up_req *r);
static void req_finish(wh_up_req *r, int err);

/* ---- libcurl, loaded on first use ---- */

static struct {
	CURLcode (*global_init)(long);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_cleanup)(CURLM *);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	char *(*easy_escape)(CURL *, const char *, int);
	void (*free)(void *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLU *(*url)(void);
	CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
	CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
	void (*url_cleanup)(CURLU *);
} lc;

#define CURL_SONAME "libcurl.so.4"

int wh_upstream_curl_version(char *buf, size_t buflen)
{
	/* A second handle on the library if requests loaded it: dlopen counts. */
	void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	curl_version_info_data *(*info)(CURLversion) = NULL;
	if (h)
		*(void **)&info = dlsym(h, "curl_version_info");
	if (!info) {
		const char *why = dlerror();
		snprintf(buf, buflen, "%s", why ? why : CURL_SONAME ": no curl_version_info");
		if (h)
			dlclose(h);
		return WH_EUPSTREAM;
	}
	const curl_version_info_data *v = info(CURLVERSION_NOW);
	snprintf(buf, buflen, "%s%s%s", v->version, v->ssl_version ? " " : "",
	         v->ssl_version ? v->ssl_version : "");
	/* Kept loaded: its TLS library may not survive being unloaded. */
	return 0;
}

/* 0 when libcurl is ready, WH_EUPSTREAM (logged once) when it cannot be. */
static int curl_load(void)
{
	static int state; /* 0 not tried, 1 loaded, -1 failed */
	if (state)
		return state > 0 ? 0 : WH_EUPSTREAM;
	state = -1;
	void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		wh_log(WH_LOG_ERROR, "cannot load libcurl: install libcurl4", "error", WH_LS,
		       dlerror(), NULL);
		return WH_EUPSTREAM;
	}
#define SYM(field, name)                                                                           \
	do {                                                                                       \
		*(void **)&lc.field = dlsym(h, name);                                              \
		if (!lc.field) {                                                                   \
			wh_log(WH_LOG_ERROR, "libcurl lacks a function", "name", WH_LS, name,      \
			       NULL);                                                              \
			return WH_EUPSTREAM;                                                       \
		}                                                                                  \
	} while (0)
	SYM(global_init, "curl_global_init");
	SYM(multi_init, "curl_multi_init");
	SYM(multi_setopt, "curl_multi_setopt");
	SYM(multi_socket_action, "curl_multi_socket_action");
	SYM(multi_info_read, "curl_multi_info_read");
	SYM(multi_assign, "curl_multi_assign");
	SYM(multi_add_handle, "curl_multi_add_handle");
	SYM(multi_remove_handle, "curl_multi_remove_handle");
	SYM(multi_cleanup, "curl_multi_cleanup");
	SYM(easy_init, "curl_easy_init");
	SYM(easy_setopt, "curl_easy_setopt");
	SYM(easy_getinfo, "curl_easy_getinfo");
	SYM(easy_cleanup, "curl_easy_cleanup");
	SYM(easy_strerror, "curl_easy_strerror");
	SYM(easy_escape, "curl_easy_escape");
	SYM(free, "curl_free");
	SYM(slist_append, "curl_slist_append");
	SYM(slist_free_all, "curl_slist_free_all");
	SYM(url, "curl_url");
	SYM(url_set, "curl_url_set");
	SYM(url_get, "curl_url_get");
	SYM(url_cleanup, "curl_url_cleanup");
#undef SYM
	if (lc.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		wh_log(WH_LOG_ERROR, "libcurl failed to initialise", NULL);
		return WH_EUPSTREAM;
	}
	state = 1;
	return 0;
}

/* ---- names ---- */

bool wh_upstream_is_docker_hub(const char *url)
{
	/* Docker Hub is known by several names; its web ones do not serve the
	 * registry API. */
	static const char *const hub[] = {"index.docker.io", "docker.io", "registry-1.docker.io",
	                                  "registry.hub.docker.com"};
	const char *h = strstr(url, "://");
	h = h ? h + 3 : url;
	size_t n = strcspn(h, "/:");
	for (size_t i = 0; i < WH_ARRAY_SIZE(hub); i++)
		if (strlen(hub[i]) == n && strncasecmp(h, hub[i], n) == 0)
			return true;
	return false;
}

const char *wh_upstream_base(const char *url, char *buf, size_t buflen)
{
	const char *h = strstr(url, "://");
	const char *scheme_end = h ? h : url;
	h = h ? h + 3 : url;
	size_t hostlen = strcspn(h, "/");
	if (wh_upstream_is_docker_hub(url))
		snprintf(buf, buflen, "https://registry-1.docker.io");
	else if (scheme_end == url)
		snprintf(buf, buflen, "https://%.*s", (int)hostlen, h);
	else
		snprintf(buf, buflen, "%.*s://%.*s", (int)(scheme_end - url), url, (int)hostlen, h);
	return buf;
}

/* host[:port] of a URL into buf. */
static void url_hostport(const char *url, char *buf, size_t buflen)
{
	const char *h = strstr(url, "://");
	h = h ? h + 3 : url;
	size_t n = strcspn(h, "/?#");
	snprintf(buf, buflen, "%.*s", (int)n, h);
}

static void url_host(const char *url, char *buf, size_t buflen)
{
	url_hostport(url, buf, buflen);
	if (buf[0] == '[') {
		char *e = strchr(buf, ']');
		if (e)
			e[1] = '\0';
		return;
	}
	char *c = strchr(buf, ':');
	if (c)
		*c = '\0';
}

/* Credentials go to a token realm only on the registry's own host or one
 * under the same registrable domain (auth.example.com for
 * registry.example.com), decided with the Public Suffix List. */
static bool realm_trusted(const char *registry_url, const char *realm)
{
	char a[256], b[256];
	url_host(registry_url, a, sizeof(a));
	url_host(realm, b, sizeof(b));
	if (strncasecmp(realm, "https://", 8) != 0 && strncasecmp(registry_url, "http://", 7) != 0)
		return false; /* never downgrade credentials to plain HTTP */
	if (strcasecmp(a, b) == 0)
		return true;
	const psl_ctx_t *psl = psl_builtin();
	const char *ra = psl ? psl_registrable_domain(psl, a) : NULL;
	const char *rb = psl ? psl_registrable_domain(psl, b) : NULL;
	return ra && rb && strcasecmp(ra, rb) == 0;
}

static const struct cred *find_cred(wh_upstream *up, const char *url)
{
	char hp[256], h[256];
	url_hostport(url, hp, sizeof(hp));
	url_host(url, h, sizeof(h));
	for (int i = 0; i < up->n_creds; i++)
		if (strcasecmp(up->creds[i].host, hp) == 0)
			return &up->creds[i];
	for (int i = 0; i < up->n_creds; i++)
		if (strcasecmp(up->creds[i].host, h) == 0)
			return &up->creds[i];
	/* Docker Hub credentials are often filed under one of its other names. */
	if (wh_upstream_is_docker_hub(url))
		for (int i = 0; i < up->n_creds; i++)
			if (wh_upstream_is_docker_hub(up->creds[i].host))
				return &up->creds[i];
	return NULL;
}

/* scheme://host:port of a URL, lower-cased, the port always given, into buf.
 * False when curl cannot parse the URL. */
static bool url_origin(const char *url, char *buf, size_t buflen)
{
	CURLU *u = lc.url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	bool ok = u && lc.url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	          lc.url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	          lc.url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
	          lc.url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
	if (ok) {
		snprintf(buf, buflen, "%s://%s:%s", scheme, host, port);
		for (char *p = buf; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	lc.free(scheme);
	lc.free(host);
	lc.free(port);
	if (u)
		lc.url_cleanup(u);
	return ok;
}

/* Our Authorization and credentials go to the original request's scheme,
 * host and port only, never to a CDN or anywhere else a redirect leads. */
static bool same_origin(const char *a, const char *b)
{
	char oa[512], ob[512];
	return url_origin(a, oa, sizeof(oa)) && url_origin(b, ob, sizeof(ob)) &&
	       strcmp(oa, ob) == 0;
}

static enum addr_class ipv4_class(const unsigned char *a)
{
	if (a[0] == 127)
		return AC_LOOPBACK;
	if (a[0] == 169 && a[1] == 254)
		return AC_LINK_LOCAL;
	if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168) ||
	    (a[0] == 100 && (a[1] & 0xc0) == 64))
		return AC_PRIVATE;
	if (a[0] == 0) /* 0.0.0.0/8: Linux connects 0.0.0.0 to the host itself */
		return AC_UNSPECIFIED;
	if (a[0] >= 224)
		return AC_MULTICAST;
	return AC_PUBLIC;
}

static enum addr_class ipv6_class(const unsigned char *a)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
	static const unsigned char zero[16];
	if (memcmp(a, zero, 15) == 0 && a[15] <= 1)
		return a[15] == 1 ? AC_LOOPBACK : AC_UNSPECIFIED;
	/* An IPv4 address in IPv6 clothes is what it wraps. */
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 || memcmp(a, zero, 12) == 0)
		return ipv4_class(a + 12);
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return AC_LINK_LOCAL;
	if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0))
		return AC_PRIVATE;
	if (a[0] == 0xff)
		return AC_MULTICAST;
	return AC_PUBLIC;
}

static enum addr_class sockaddr_class(const struct sockaddr *sa, char *text, size_t textlen)
{
	snprintf(text, textlen, "?");
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)textlen);
		return ipv4_class((const unsigned char *)&in->sin_addr);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, text, (socklen_t)textlen);
		return ipv6_class(in6->sin6_addr.s6_addr);
	}
	return AC_UNKNOWN;
}

/* The class of a numeric address as curl gives it (CURLINFO_PRIMARY_IP). */
static enum addr_class ip_text_class(const char *ip)
{
	unsigned char a[16];
	if (!ip)
		return AC_UNKNOWN;
	if (inet_pton(AF_INET, ip, a) == 1)
		return ipv4_class(a);
	if (inet_pton(AF_INET6, ip, a) == 1)
		return ipv6_class(a);
	return AC_UNKNOWN;
}

/* A redirect (or a token realm) may lead to a public address, or to one of
 * the same kind as the upstream's own: a registry on a private network may
 * send us to its storage there, one on the internet may not send us to the
 * cloud's metadata service or to what sits next to us. */
static bool addr_allowed(const wh_up_req *r, enum addr_class c)
{
	return c == AC_PUBLIC || (c != AC_UNKNOWN && c == r->origin_class) ||
	       r->up->set.allow_private_redirects;
}

static void log_refused(wh_up_req *r, const char *address)
{
	char *url = NULL;
	lc.easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &url);
	wh_log(WH_LOG_WARN,
	       r->phase == PH_TOKEN ? "refusing a token realm at a private address"
	                            : "refusing an upstream redirect to a private address",
	       "address", WH_LS, address, "url", WH_LS, url ? url : "", "registry", WH_LS,
	       r->reg->urls[r->url_idx], "hint", WH_LS,
	       "extensions.sync.wharf.allowPrivateRedirects allows it", NULL);
}

/* curl asks us for every socket of a guarded exchange: the address is checked
 * here, when it is known for sure, so that no name (nor a second answer to
 * the same name) gets around the check. */
static curl_socket_t open_socket_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
	wh_up_req *r = arg;
	char text[INET6_ADDRSTRLEN];
	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	if (!addr_allowed(r, sockaddr_class(&a->addr, text, sizeof(text)))) {
		log_refused(r, text);
		r->refused = true;
		return CURL_SOCKET_BAD; /* curl tries the next address, if any */
	}
	int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	return fd < 0 ? CURL_SOCKET_BAD : fd;
}

/* Before a request goes out, on a new connection or on one reused from the
 * pool (opened for another request, under that one's rules). */
static int prereq_cb(void *arg, char *ip, char *local_ip, int port, int local_port)
{
	wh_up_req *r = arg;
	(void)local_ip, (void)port, (void)local_port;
	if (addr_allowed(r, ip_text_class(ip)))
		return CURL_PREREQFUNC_OK;
	log_refused(r, ip ? ip : "?");
	r->refused = true;
	return CURL_PREREQFUNC_ABORT;
}

/* ---- upstream health ----
 *
 * A sick upstream must not make every pull wait: after DOWN_AFTER_FAILURES
 * failed exchanges in a row, or one that got no response headers within the
 * registry's responseHeaderTimeout, the URL is down. Requests then go to the
 * registry's other URLs, or fail at once when every URL is down; meanwhile a
 * probe (GET /v2/, any HTTP answer will do) is sent in the background when
 * its back-off has passed, started by the next request that finds the URL
 * down. The transitions are logged, once each. */

static struct health *health_of(wh_upstream *up, const char *url)
{
	char base[512];
	wh_upstream_base(url, base, sizeof(base));
	struct health *h;
	for (h = up->health; h; h = h->next)
		if (strcmp(h->base, base) == 0)
			return h;
	h = wh_calloc(1, sizeof(*h));
	h->base = wh_strdup(base);
	h->next = up->health;
	up->health = h;
	return h;
}

/* It answered (any HTTP status: it is reachable). */
static void health_ok(wh_upstream *up, struct health *h)
{
	h->fails = 0;
	if (!h->down)
		return;
	h->down = false;
	h->backoff_ms = 0;
	wh_log(WH_LOG_WARN, "upstream is answering again", "upstream", WH_LS, h->base, NULL);
}

static void health_fail(wh_upstream *up, struct health *h, bool timed_out, const char *why)
{
	uint64_t now = uv_now(up->loop);
	if (h->down) {
		/* A probe (or a request already under way) failed: wait longer. */
		h->backoff_ms = WH_MIN(h->backoff_ms * 2, (uint64_t)PROBE_BACKOFF_MAX_MS);
		h->probe_at_ms = now + h->backoff_ms;
		return;
	}
	if (++h->fails < DOWN_AFTER_FAILURES && !timed_out)
		return;
	h->down = true;
	h->backoff_ms = PROBE_BACKOFF_MIN_MS;
	h->probe_at_ms = now + h->backoff_ms;
	wh_log(WH_LOG_WARN, "upstream is down: clients are not sent there until it answers again",
	       "upstream", WH_LS, h->base, "error", WH_LS, why, "failures", WH_LI,
	       (long long)h->fails, NULL);
}

/* An exchange with the URL ended: its status, or 0 when it got no answer.
 * Counted for metrics: a cost of two increments. */
static void health_count(struct health *h, int status)
{
	if (!h)
		return;
	if (status < 100 || status >= WH_UPSTREAM_CODES)
		status = 0;
	h->codes[status]++;
	h->requests++;
	if (status == 0 || status >= 500)
		h->errors++;
}

void wh_upstream_get_url_stats(const wh_upstream *up, const char *url, wh_upstream_url_stats *out)
{
	char base[512];
	memset(out, 0, sizeof(*out));
	out->up = true;
	wh_upstream_base(url, base, sizeof(base));
	for (const struct health *h = up->health; h; h = h->next) {
		if (strcmp(h->base, base) != 0)
			continue;
		out->up = !h->down;
		out->requests = h->requests;
		out->errors = h->errors;
		out->codes = h->codes;
		break;
	}
}

static void probe_done(wh_up_req *r, int err, void *arg)
{
	struct health *h = arg;
	h->probing = false; /* the exchange itself told health_ok/health_fail */
}

static const wh_up_cbs probe_cbs = {NULL, NULL, probe_done};

/* URL idx of reg is down: probe it if its back-off has passed. */
static void health_maybe_probe(wh_upstream *up, const wh_sync_registry *reg, int idx,
                               struct health *h)
{
	if (h->probing || uv_now(up->loop) < h->probe_at_ms)
		return;
	h->probing = true;
	const wh_up_opts opts = {.max_body = 64 * 1024};
	wh_up_req *p = wh_upstream_request(up, reg, "GET", "/v2/", "", NULL, &opts, &probe_cbs, h);
	p->probe = true;
	p->url_idx = idx;
}

/* ---- tokens ---- */

static const char *token_get(wh_upstream *up, const char *key)
{
	uint64_t now = wh_now_ms();
	for (int i = 0; i < up->n_tokens; i++)
		if (strcmp(up->tokens[i].key, key) == 0)
			return up->tokens[i].expires_ms > now ? up->tokens[i].value : NULL;
	return NULL;
}

/* A token's lifetime from the token server's expires_in. The number is the
 * server's to choose, so before any integer arithmetic it is brought into
 * [1 s, TOKEN_TTL_MAX_S]: converting 1e300 to an integer is undefined, and so
 * is what follows. What is not a positive finite number counts as absent. */
static int64_t token_ttl_s(const cJSON *expires_in)
{
	if (!cJSON_IsNumber(expires_in) || !isfinite(expires_in->valuedouble) ||
	    expires_in->valuedouble <= 0)
		return TOKEN_TTL_DEFAULT_S;
	if (expires_in->valuedouble >= TOKEN_TTL_MAX_S)
		return TOKEN_TTL_MAX_S;
	if (expires_in->valuedouble < 1)
		return 1;
	return (int64_t)expires_in->valuedouble;
}

/* ttl_s comes from token_ttl_s: in [1, TOKEN_TTL_MAX_S]. */
static void token_put(wh_upstream *up, const char *key, const char *value, int64_t ttl_s)
{
	uint64_t now = wh_now_ms();
	/* Leave a margin so a token never expires on the way. */
	uint64_t exp = now + (uint64_t)(ttl_s > 20 ? ttl_s - 10 : ttl_s * 2 / 3) * 1000u;
	int slot = -1;
	for (int i = 0; i < up->n_tokens; i++) {
		if (strcmp(up->tokens[i].key, key) == 0 || up->tokens[i].expires_ms <= now) {
			slot = i;
			break;
		}
	}
	if (slot < 0 && up->n_tokens < TOKEN_MAX)
		slot = up->n_tokens++;
	if (slot < 0) {
		slot = 0; /* full of live tokens: replace the one closest to expiry */
		for (int i = 1; i < up->n_tokens; i++)
			if (up->tokens[i].expires_ms < up->tokens[slot].expires_ms)
				slot = i;
	}
	struct token *t = &up->tokens[slot];
	if (t->key) {
		free(t->key);
		free(t->value);
	}
	t->key = wh_strdup(key);
	t->value = wh_strdup(value);
	t->expires_ms = exp;
}

/* Parse `Bearer realm="...",service="...",scope="..."` (or Basic). */
struct challenge {
	char scheme[16];
	char realm[1024];
	char service[256];
	char scope[1024];
};

static void parse_challenge(const char *h, struct challenge *c)
{
	memset(c, 0, sizeof(*c));
	size_t n = strcspn(h, " ");
	snprintf(c->scheme, sizeof(c->scheme), "%.*s", (int)n, h);
	const char *p = h + n;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *k = p;
		while (*p && *p != '=' && *p != ',' && *p != ' ')
			p++;
		size_t klen = (size_t)(p - k);
		if (*p != '=') {
			continue;
		}
		p++;
		char val[1024];
		size_t vl = 0;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				if (vl + 1 < sizeof(val))
					val[vl++] = *p;
				p++;
			}
			if (*p == '"')
				p++;
		} else {
			while (*p && *p != ',' && *p != ' ') {
				if (vl + 1 < sizeof(val))
					val[vl++] = *p;
				p++;
			}
		}
		val[vl] = '\0';
		if (klen == 5 && strncasecmp(k, "realm", 5) == 0)
			snprintf(c->realm, sizeof(c->realm), "%s", val);
		else if (klen == 7 && strncasecmp(k, "service", 7) == 0)
			snprintf(c->service, sizeof(c->service), "%.*s",
			         (int)sizeof(c->service) - 1, val);
		else if (klen == 5 && strncasecmp(k, "scope", 5) == 0)
			snprintf(c->scope, sizeof(c->scope), "%s", val);
	}
}

/* ---- curl glue ---- */

static void on_curl_timeout(uv_timer_t *t)
{
	wh_upstream *up = t->data;
	int running;
	up->in_curl++;
	lc.multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	up->in_curl--;
	check_done(up);
}

static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	wh_upstream *up = userp;
	if (timeout_ms < 0)
		uv_timer_stop(&up->timer);
	else
		uv_timer_start(&up->timer, on_curl_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct sock *s = h->data;
	wh_upstream *up = s->up;
	int flags = 0;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	int running;
	up->in_curl++;
	lc.multi_socket_action(up->multi, s->fd, flags, &running);
	up->in_curl--;
	check_done(up);
}

static void up_free_cb(uv_handle_t *h)
{
	free(h->data);
}

static void sock_free(uv_handle_t *h)
{
	struct sock *s = h->data;
	wh_upstream *up = s->up;
	free(s);
	if (--up->pending_closes == 0 && up->freeing)
		uv_close((uv_handle_t *)&up->timer, up_free_cb);
}

static void sock_close(wh_upstream *up, struct sock *s)
{
	wh_list_remove(&s->link);
	uv_poll_stop(&s->poll);
	up->pending_closes++;
	uv_close((uv_handle_t *)&s->poll, sock_free);
}

static int socket_fn(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	wh_upstream *up = userp;
	struct sock *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			lc.multi_assign(up->multi, fd, NULL);
			sock_close(up, s);
		}
		return 0;
	}
	if (!s) {
		s = wh_calloc(1, sizeof(*s));
		s->fd = fd;
		s->up = up;
		uv_poll_init_socket(up->loop, &s->poll, fd);
		s->poll.data = s;
		wh_list_insert_head(&up->socks, &s->link);
		lc.multi_assign(up->multi, fd, s);
	}
	int ev = 0;
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&s->poll, ev, on_poll);
	return 0;
}

/* ---- one request ---- */

static void reset_response(wh_up_req *r)
{
	r->status = 0;
	r->clen = -1;
	r->range_start = -1;
	r->ctype[0] = '\0';
	r->digest[0] = '\0';
	r->link_next[0] = '\0';
	r->retry_after = -1;
	free(r->challenge);
	r->challenge = NULL;
	r->decided = r->discarding = false;
	r->headers_done = false;
	r->dropped = 0;
	free(r->tbuf);
	r->tbuf = NULL;
	r->tlen = r->tcap = 0;
}

static bool is_2xx(int status)
{
	return status >= 200 && status < 300;
}

/* The target of the rel="next" link in a Link header's value (RFC 8288:
 * `<target>; rel="next"`, several links separated by commas), or "". A
 * target too long for out is not taken. */
static void link_next(const char *v, size_t vlen, char *out, size_t outlen)
{
	const char *end = v + vlen;
	out[0] = '\0';
	while (v < end) {
		const char *lt = memchr(v, '<', (size_t)(end - v));
		if (!lt)
			return;
		const char *gt = memchr(lt, '>', (size_t)(end - lt));
		if (!gt)
			return;
		const char *comma = memchr(gt, ',', (size_t)(end - gt));
		const char *pend = comma ? comma : end;
		/* rel=next, rel="next" or rel="a next b"; case-insensitive. */
		bool next = false;
		for (const char *p = gt; p + 3 <= pend && !next; p++) {
			if (strncasecmp(p, "rel", 3) != 0 || (p[-1] != ';' && p[-1] != ' '))
				continue;
			const char *q = p + 3;
			while (q < pend && *q == ' ')
				q++;
			if (q >= pend || *q != '=')
				continue;
			q++;
			while (q < pend && *q == ' ')
				q++;
			bool quoted = q < pend && *q == '"';
			q += quoted;
			const char *vend = q;
			while (vend < pend && *vend != (quoted ? '"' : ';'))
				vend++;
			while (q < vend && !next) {
				size_t w = 0;
				while (q + w < vend && q[w] != ' ')
					w++;
				next = w == 4 && strncasecmp(q, "next", 4) == 0;
				q += w + 1;
			}
		}
		size_t tl = (size_t)(gt - lt - 1);
		if (next && tl > 0 && tl < outlen) {
			memcpy(out, lt + 1, tl);
			out[tl] = '\0';
			return;
		}
		v = comma ? comma + 1 : end;
	}
}

static size_t header_cb(char *buf, size_t size, size_t n, void *arg)
{
	wh_up_req *r = arg;
	size_t len = size * n;
	/* Counted over the exchange, 1xx responses included, so that headers
	 * that never end cannot hold a request that has no deadline. */
	r->header_bytes += len;
	if (r->header_bytes > HEADERS_MAX) {
		r->fail = WH_EUPSTREAM;
		r->fail_why = "response headers over 64 KiB";
		return 0;
	}
	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		reset_response(r);
		/* Three digits, as curl reads them: a longer number converted to an
		 * int would wrap into some other status ("HTTP/1.1 4294967496"). */
		const char *sp = memchr(buf, ' ', len);
		size_t rest = sp ? len - (size_t)(sp - buf) - 1 : 0;
		if (rest >= 3 && isdigit((unsigned char)sp[1]) && isdigit((unsigned char)sp[2]) &&
		    isdigit((unsigned char)sp[3]) && (rest == 3 || !isdigit((unsigned char)sp[4])))
			r->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
		return len;
	}
	if (buf[0] == '\r' || buf[0] == '\n') {
		/* The end of a response's headers. */
		if (r->status < 200)
			return len;
		r->headers_done = true;
		uv_timer_stop(&r->retry_timer); /* it answered in time */
		if (r->hl)
			health_ok(r->up, r->hl);
		if (r->phase == PH_MAIN && is_2xx(r->status) && r->opts.max_body >= 0 &&
		    r->clen > r->opts.max_body && strcmp(r->method, "HEAD") != 0) {
			/* Not a byte of it is read. */
			r->fail = WH_ETOOBIG;
			r->fail_why = "Content-Length over the size limit";
			return 0;
		}
		return len;
	}
	const char *colon = memchr(buf, ':', len);
	if (!colon)
		return len;
	size_t klen = (size_t)(colon - buf);
	const char *v = colon + 1;
	const char *end = buf + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	size_t vlen = (size_t)(end - v);
#define IS(name) (klen == sizeof(name) - 1 && strncasecmp(buf, name, klen) == 0)
	if (IS("content-type")) {
		size_t m = strcspn(v, "; \t\r\n");
		snprintf(r->ctype, sizeof(r->ctype), "%.*s", (int)WH_MIN(m, vlen), v);
	} else if (IS("docker-content-digest")) {
		snprintf(r->digest, sizeof(r->digest), "%.*s", (int)vlen, v);
	} else if (IS("content-range")) {
		/* "bytes A-B/T": A is where a 206's body begins. */
		char tmp[96];
		snprintf(tmp, sizeof(tmp), "%.*s", (int)WH_MIN(vlen, sizeof(tmp) - 1), v);
		char *e;
		long long a = -1;
		if (strncasecmp(tmp, "bytes ", 6) == 0 && tmp[6] >= '0' && tmp[6] <= '9') {
			errno = 0;
			a = strtoll(tmp + 6, &e, 10);
			if (errno || *e != '-')
				a = -1;
		}
		r->range_start = a;
	} else if (IS("content-length")) {
		char tmp[32];
		snprintf(tmp, sizeof(tmp), "%.*s", (int)WH_MIN(vlen, sizeof(tmp) - 1), v);
		char *e;
		long long cl = strtoll(tmp, &e, 10);
		r->clen = (*e == '\0' && cl >= 0) ? cl : -1;
	} else if (IS("retry-after")) {
		char tmp[32];
		snprintf(tmp, sizeof(tmp), "%.*s", (int)WH_MIN(vlen, sizeof(tmp) - 1), v);
		char *e;
		long s = strtol(tmp, &e, 10);
		r->retry_after = (*e == '\0' && s >= 0 && s < 86400) ? (int)s : -1;
	} else if (IS("link") && !r->link_next[0]) {
		link_next(v, vlen, r->link_next, sizeof(r->link_next));
	} else if (IS("www-authenticate") && !r->challenge) {
		r->challenge = wh_strndup(v, vlen);
	}
#undef IS
	return len;
}

static bool is_redirect(int status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

static bool retryable(int status)
{
	return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

static void deliver_head(wh_up_req *r)
{
	if (r->head_delivered || r->cancelled)
		return;
	r->head_delivered = true;
	wh_up_head h = {
	    .status = r->status,
	    .content_length = r->clen,
	    .content_type = r->ctype[0] ? r->ctype : NULL,
	    .digest = r->digest[0] ? r->digest : NULL,
	    .retry_after_s = r->retry_after,
	    .range_start = r->range_start,
	    .link_next = r->link_next[0] ? r->link_next : NULL,
	};
	if (r->cbs.on_head)
		r->cbs.on_head(r, &h, r->arg);
}

static size_t write_cb(char *buf, size_t size, size_t n, void *arg)
{
	wh_up_req *r = arg;
	size_t len = size * n;
	if (r->cancelled || r->abort_err)
		return 0;
	if (r->phase == PH_TOKEN) {
		if (r->tlen + len > TOKEN_BODY_MAX)
			return 0;
		wh_buf_append(&r->tbuf, &r->tlen, &r->tcap, buf, len);
		return len;
	}
	if (!r->decided) {
		r->decided = true;
		/* An answer we may still replace (auth, retry) is read and dropped. */
		r->discarding = r->status < 200 || r->status == 401 ||
		                (is_redirect(r->status) && r->opts.follow_redirects) ||
		                (retryable(r->status) && r->attempt < r->reg->max_retries);
		if (!r->discarding)
			deliver_head(r);
		if (r->abort_err)
			return 0;
	}
	if (r->discarding || !is_2xx(r->status)) {
		/* Error bodies are not passed on, so they are read only so far: one
		 * that never ends must not hold the request (and every client
		 * waiting on it). Once cut, the status is the answer (main_done). */
		r->dropped += len;
		return r->dropped > ERROR_BODY_MAX ? 0 : len;
	}
	if (r->opts.max_body >= 0 && (int64_t)len > r->opts.max_body - r->body_len) {
		r->fail = WH_ETOOBIG;
		r->fail_why = "body over the size limit";
		return 0;
	}
	r->body_len += (int64_t)len;
	if (r->cbs.on_data && r->cbs.on_data(r, buf, len, r->arg) != 0)
		return 0;
	return r->cancelled || r->abort_err ? 0 : len;
}

static void easy_release(wh_up_req *r)
{
	if (r->easy) {
		uv_timer_stop(&r->retry_timer); /* the header deadline of the exchange */
		lc.multi_remove_handle(r->up->multi, r->easy);
		lc.easy_cleanup(r->easy);
		r->easy = NULL;
	}
	lc.slist_free_all(r->hdrs);
	r->hdrs = NULL;
}

static void tls_options(wh_up_req *r, CURL *e)
{
	const wh_sync_registry *reg = r->reg;
	lc.easy_setopt(e, CURLOPT_SSL_VERIFYPEER, reg->tls_verify ? 1L : 0L);
	lc.easy_setopt(e, CURLOPT_SSL_VERIFYHOST, reg->tls_verify ? 2L : 0L);
	if (reg->cert_dir) {
		char p[4096];
		struct stat st;
		snprintf(p, sizeof(p), "%s/ca.crt", reg->cert_dir);
		if (stat(p, &st) == 0)
			lc.easy_setopt(e, CURLOPT_CAINFO, p);
		snprintf(p, sizeof(p), "%s/client.cert", reg->cert_dir);
		if (stat(p, &st) == 0) {
			lc.easy_setopt(e, CURLOPT_SSLCERT, p);
			snprintf(p, sizeof(p), "%s/client.key", reg->cert_dir);
			lc.easy_setopt(e, CURLOPT_SSLKEY, p);
		}
	}
}

static CURL *easy_new(wh_up_req *r, const char *url)
{
	CURL *e = lc.easy_init();
	if (!e)
		return NULL;
	lc.easy_setopt(e, CURLOPT_URL, url);
	lc.easy_setopt(e, CURLOPT_PRIVATE, r);
	lc.easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	lc.easy_setopt(e, CURLOPT_HEADERDATA, r);
	lc.easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	lc.easy_setopt(e, CURLOPT_WRITEDATA, r);
	lc.easy_setopt(e, CURLOPT_USERAGENT, "wharf/" WHARF_VERSION);
	lc.easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	lc.easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)r->up->set.connect_timeout_ms);
	/* A transfer that stalls is cut; one that goes on and on too, unless its
	 * body may be large. */
	lc.easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, (long)STALL_BYTES_PER_S);
	/* A small answer (a manifest, a token) that stalls is a sick upstream:
	 * it gets as long as the headers did; a blob the full stall time. */
	bool bulk = r->phase == PH_MAIN && r->opts.bulk;
	long stall = bulk ? (long)WH_MAX(r->up->set.stall_timeout_ms / 1000, 1)
	                  : (long)WH_MAX(header_timeout_ms(r) / 1000, (uint64_t)2);
	lc.easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall);
	if (!(r->phase == PH_MAIN && r->opts.bulk))
		lc.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->up->set.request_timeout_ms);
	else if (r->reg->sync_timeout_ms > 0)
		lc.easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->reg->sync_timeout_ms);
	lc.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	lc.easy_setopt(e, CURLOPT_BUFFERSIZE, 64L * 1024);
	lc.easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	tls_options(r, e);
	if (r->guarded) {
		lc.easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket_cb);
		lc.easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
		lc.easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
		lc.easy_setopt(e, CURLOPT_PREREQDATA, r);
	}
	return e;
}

static int add_easy(wh_up_req *r, CURL *e)
{
	r->easy = e;
	r->decided = r->discarding = false;
	r->header_bytes = 0;
	r->body_len = 0;
	r->fail = 0;
	r->fail_why = NULL;
	r->refused = false;
	if (lc.multi_add_handle(r->up->multi, e) != CURLM_OK) {
		lc.easy_cleanup(e);
		r->easy = NULL;
		return WH_EUPSTREAM;
	}
	/* Between exchanges the request's timer waits for a retry; during one
	 * it is the header deadline. */
	uv_timer_start(&r->retry_timer, head_deadline_cb, header_timeout_ms(r), 0);
	return 0;
}

/* The URL of the original request: the registry's, at url_idx. */
static void main_url(const wh_up_req *r, char *url, size_t urllen)
{
	char base[512];
	wh_upstream_base(r->reg->urls[r->url_idx], base, sizeof(base));
	snprintf(url, urllen, "%s%s", base, r->path);
}

/* One exchange of the main request: to url, the original or a redirect hop. */
static void send_main(wh_up_req *r, const char *url)
{
	char orig[4096];
	main_url(r, orig, sizeof(orig));
	r->phase = PH_MAIN;
	r->guarded = r->hops > 0;
	reset_response(r);
	CURL *e = easy_new(r, url);
	if (!e) {
		req_finish(r, WH_ENOMEM);
		return;
	}
	if (strcmp(r->method, "HEAD") == 0)
		lc.easy_setopt(e, CURLOPT_NOBODY, 1L);
	if (r->accept) {
		char h[2048];
		snprintf(h, sizeof(h), "Accept: %s", r->accept);
		r->hdrs = lc.slist_append(r->hdrs, h);
	}
	if (r->opts.range_from > 0) {
		char h[64];
		snprintf(h, sizeof(h), "Range: bytes=%lld-", (long long)r->opts.range_from);
		r->hdrs = lc.slist_append(r->hdrs, h);
	}
	if (r->opts.cached_only)
		r->hdrs = lc.slist_append(r->hdrs, "Cache-Control: only-if-cached");
	bool home = r->hops == 0 || same_origin(url, orig);
	if (home && r->authz)
		r->hdrs = lc.slist_append(r->hdrs, r->authz);
	lc.easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
	const struct cred *cr =
	    home && r->basic ? find_cred(r->up, r->reg->urls[r->url_idx]) : NULL;
	if (cr) {
		lc.easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		lc.easy_setopt(e, CURLOPT_USERNAME, cr->user);
		lc.easy_setopt(e, CURLOPT_PASSWORD, cr->pass);
	}
	if (add_easy(r, e) != 0)
		req_finish(r, WH_EUPSTREAM);
}

/* The original request, from the start (again, after a retry), on the
 * first URL from url_idx on that is not down. */
static void start_main(wh_up_req *r)
{
	char base[512], url[4096];
	if (!r->probe) {
		int i = r->url_idx;
		for (; i < r->reg->n_urls; i++) {
			struct health *h = health_of(r->up, r->reg->urls[i]);
			if (!h->down)
				break;
			health_maybe_probe(r->up, r->reg, i, h);
		}
		if (i == r->reg->n_urls) {
			req_finish(r, WH_EUPSTREAM); /* every URL down: at once */
			return;
		}
		r->url_idx = i;
	}
	r->hl = health_of(r->up, r->reg->urls[r->url_idx]);
	wh_upstream_base(r->reg->urls[r->url_idx], base, sizeof(base));
	main_url(r, url, sizeof(url));
	r->hops = 0;
	free(r->hop_url);
	r->hop_url = NULL;
	r->origin_class = AC_UNKNOWN;
	if (snprintf(r->token_key, sizeof(r->token_key), "%s|repository:%s:pull", base, r->repo) >=
	    (int)sizeof(r->token_key))
		r->token_key[0] = '\0'; /* too long to cache under */
	if (!r->authz) {
		const char *tok = token_get(r->up, r->token_key);
		if (tok) {
			size_t n = strlen(tok) + 32;
			r->authz = wh_malloc(n);
			snprintf(r->authz, n, "Authorization: Bearer %s", tok);
		}
	}
	send_main(r, url);
}

/* A 3xx that the caller lets us follow: the next hop, on a fresh handle. */
static void follow_redirect(wh_up_req *r)
{
	char *loc = NULL, *ip = NULL;
	lc.easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &loc);
	if (r->hops == 0) {
		lc.easy_getinfo(r->easy, CURLINFO_PRIMARY_IP, &ip);
		r->origin_class = ip_text_class(ip);
	}
	const char *why = NULL;
	if (!loc)
		why = "upstream redirect without a Location";
	else if (r->hops >= MAX_REDIRECTS)
		why = "too many upstream redirects";
	else if (strncasecmp(loc, "http://", 7) != 0 && strncasecmp(loc, "https://", 8) != 0)
		why = "upstream redirect to neither http nor https";
	if (why) {
		/* The 3xx is the answer (asking again would get the same): the
		 * caller makes an error of it. */
		wh_log(WH_LOG_WARN, why, "url", WH_LS, r->reg->urls[r->url_idx], "path", WH_LS,
		       r->path, "status", WH_LI, (long long)r->status, "location", WH_LS,
		       loc ? loc : "", NULL);
		deliver_head(r);
		req_finish(r, 0);
		return;
	}
	char *next = wh_strdup(loc); /* loc belongs to the handle */
	easy_release(r);
	free(r->hop_url);
	r->hop_url = next;
	r->hops++;
	send_main(r, next);
}

static char *url_escape(const char *s)
{
	char *e = lc.easy_escape(NULL, s, 0);
	char *out = wh_strdup(e ? e : "");
	lc.free(e);
	return out;
}

/* A 401 with a Bearer challenge: get a token from the realm. */
static bool start_token(wh_up_req *r, const struct challenge *c)
{
	const char *u = r->reg->urls[r->url_idx];
	if (strncasecmp(c->realm, "http://", 7) != 0 && strncasecmp(c->realm, "https://", 8) != 0)
		return false;
	char scope[1200];
	if (c->scope[0])
		snprintf(scope, sizeof(scope), "%s", c->scope);
	else
		snprintf(scope, sizeof(scope), "repository:%s:pull", r->repo);
	char *es = url_escape(c->service), *sc = url_escape(scope);
	char url[4096];
	snprintf(url, sizeof(url), "%s%sservice=%s&scope=%s", c->realm,
	         strchr(c->realm, '?') ? "&" : "?", es, sc);
	free(es);
	free(sc);
	r->phase = PH_TOKEN;
	/* The realm is the upstream's choice, as a redirect is; and its answer
	 * is the answer: a 3xx is no token. */
	r->guarded = true;
	reset_response(r);
	CURL *e = easy_new(r, url);
	if (!e)
		return false;
	const struct cred *cr = find_cred(r->up, u);
	if (cr && realm_trusted(u, c->realm)) {
		lc.easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		lc.easy_setopt(e, CURLOPT_USERNAME, cr->user);
		lc.easy_setopt(e, CURLOPT_PASSWORD, cr->pass);
	} else if (cr) {
		wh_log(WH_LOG_WARN, "not sending credentials to a token realm on another domain",
		       "registry", WH_LS, u, "realm", WH_LS, c->realm, NULL);
	}
	return add_easy(r, e) == 0;
}

/* The wait before retry number attempt + 1: the registry's retryDelay,
 * doubling up to maxRetryDelay, as Zot does; or a 429's Retry-After. A
 * client is waiting on it, so no wait is longer than RETRY_WAIT_MAX_MS:
 * Zot's usual retryDelay of minutes is for its background copies. */
static uint64_t backoff_ms(const wh_up_req *r, int retry_after)
{
	if (retry_after >= 0)
		return (uint64_t)retry_after * 1000u;
	const wh_sync_registry *reg = r->reg;
	uint64_t d = reg->retry_delay_ms > 0 ? (uint64_t)reg->retry_delay_ms : BACKOFF_MIN_MS;
	uint64_t cap = reg->max_retry_delay_ms > 0 ? (uint64_t)reg->max_retry_delay_ms : d;
	for (int i = 0; i < r->attempt && d < cap; i++)
		d *= 2;
	return WH_MIN(WH_MIN(d, cap), (uint64_t)RETRY_WAIT_MAX_MS);
}

static void retry_cb(uv_timer_t *t)
{
	wh_up_req *r = t->data;
	if (r->cancelled)
		return;
	int rc = multi_ready(r->up);
	if (rc != 0)
		req_finish(r, rc);
	else
		start_main(r);
}

static void schedule_retry(wh_up_req *r, uint64_t delay)
{
	r->attempt++;
	uv_timer_start(&r->retry_timer, retry_cb, delay, 0);
}

static void req_free_cb(uv_handle_t *h)
{
	wh_up_req *r = h->data;
	free(r->method);
	free(r->path);
	free(r->repo);
	free(r->accept);
	free(r->authz);
	free(r->challenge);
	free(r->tbuf);
	free(r->hop_url);
	free(r);
}

static void req_unlink(wh_up_req *r)
{
	wh_list_remove(&r->link);
}

/* The end: one callback, then the request goes. */
static void req_finish(wh_up_req *r, int err)
{
	if (r->done)
		return;
	r->done = true;
	if (r->abort_err)
		err = r->abort_err;
	easy_release(r);
	uv_timer_stop(&r->retry_timer);
	req_unlink(r);
	if (!r->cancelled && r->cbs.on_done)
		r->cbs.on_done(r, err, r->arg);
	uv_close((uv_handle_t *)&r->retry_timer, req_free_cb);
}

/* An exchange got no answer (a transport error, or no headers in time):
 * another URL, a retry, or the end. Nothing is retried once bytes were
 * passed on, nor on a URL that has just gone down. */
static void exchange_failed(wh_up_req *r)
{
	if (r->head_delivered || r->probe) {
		req_finish(r, WH_EUPSTREAM);
		return;
	}
	if (r->url_idx + 1 < r->reg->n_urls) {
		r->url_idx++;
		start_main(r);
		return;
	}
	if (r->attempt < r->reg->max_retries && !(r->hl && r->hl->down)) {
		r->url_idx = 0;
		schedule_retry(r, backoff_ms(r, -1));
		return;
	}
	req_finish(r, WH_EUPSTREAM);
}

static uint64_t header_timeout_ms(const wh_up_req *r)
{
	int64_t t = r->reg->response_header_timeout_ms;
	return t > 0 ? (uint64_t)t : 4000;
}

/* The upstream accepted the exchange and has not begun to answer: what a
 * sick upstream does. The client is not kept waiting for curl's stall limit. */
static void head_deadline_cb(uv_timer_t *t)
{
	wh_up_req *r = t->data;
	if (r->done || r->cancelled || !r->easy || r->headers_done)
		return;
	char why[96];
	snprintf(why, sizeof(why), "no response headers within %llu ms",
	         (unsigned long long)header_timeout_ms(r));
	wh_log(WH_LOG_WARN, "upstream request failed", "url", WH_LS, r->reg->urls[r->url_idx],
	       "path", WH_LS, r->path, "error", WH_LS, why, NULL);
	easy_release(r);
	health_count(r->hl, 0);
	if (r->hl)
		health_fail(r->up, r->hl, true, why);
	exchange_failed(r);
}

static void token_done(wh_up_req *r, CURLcode res)
{
	long status = 0;
	lc.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	bool answered = r->headers_done;
	easy_release(r);
	if (res != CURLE_OK && !answered) {
		/* The token server could not be reached: the upstream is failing,
		 * not refusing us. */
		wh_log(WH_LOG_WARN, "upstream token request failed", "registry", WH_LS,
		       r->reg->urls[r->url_idx], "error", WH_LS, lc.easy_strerror(res), NULL);
		if (r->hl)
			health_fail(r->up, r->hl, false, lc.easy_strerror(res));
		exchange_failed(r);
		return;
	}
	cJSON *doc = NULL;
	if (res == CURLE_OK && status == 200 && r->tbuf)
		doc = cJSON_Parse(r->tbuf);
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, "token");
	if (!cJSON_IsString(tok))
		tok = cJSON_GetObjectItemCaseSensitive(doc, "access_token");
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(doc, "expires_in");
	if (!cJSON_IsString(tok) || !tok->valuestring[0]) {
		wh_log(WH_LOG_WARN, "upstream token request failed", "registry", WH_LS,
		       r->reg->urls[r->url_idx], "status", WH_LI, (long long)status, "error", WH_LS,
		       res == CURLE_OK ? "no token in the answer" : lc.easy_strerror(res), NULL);
		cJSON_Delete(doc);
		/* Answer as the registry did: unauthorized. */
		reset_response(r);
		r->status = 401;
		deliver_head(r);
		req_finish(r, 0);
		return;
	}
	token_put(r->up, r->token_key, tok->valuestring, token_ttl_s(exp));
	size_t n = strlen(tok->valuestring) + 32;
	free(r->authz);
	r->authz = wh_malloc(n);
	snprintf(r->authz, n, "Authorization: Bearer %s", tok->valuestring);
	cJSON_Delete(doc);
	start_main(r);
}

static void main_done(wh_up_req *r, CURLcode res)
{
	long status = 0;
	lc.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	r->status = (int)status;
	const char *u = r->reg->urls[r->url_idx];
	health_count(r->hl, r->headers_done ? (int)status : 0);
	if (r->abort_err) {
		/* The caller's reason, not the upstream's: not logged, not
		 * retried, and the URL's health is not touched. */
		easy_release(r);
		req_finish(r, r->abort_err);
		return;
	}
	if (r->fail) {
		/* Retrying would only ask for more of the same. */
		if (r->fail_why)
			wh_log(WH_LOG_WARN, "upstream answer refused", "url", WH_LS, u, "path",
			       WH_LS, r->path, "error", WH_LS, r->fail_why, NULL);
		easy_release(r);
		req_finish(r, r->fail);
		return;
	}
	if (res != CURLE_OK && r->refused) {
		/* Logged with the address; asking again would go the same way. */
		easy_release(r);
		req_finish(r, WH_EUPSTREAM);
		return;
	}
	if (res != CURLE_OK && r->headers_done && !is_2xx((int)status))
		res = CURLE_OK; /* the body is dropped anyway: its status is the answer */
	if (res != CURLE_OK) {
		wh_log(WH_LOG_WARN, "upstream request failed", "url", WH_LS, u, "path", WH_LS,
		       r->path, "error", WH_LS, lc.easy_strerror(res), "attempt", WH_LI,
		       (long long)r->attempt, NULL);
		easy_release(r);
		if (r->hl && !r->headers_done)
			health_fail(r->up, r->hl, false, lc.easy_strerror(res));
		exchange_failed(r);
		return;
	}
	if (r->probe) {
		/* Any answer will do: it is reachable. */
		deliver_head(r);
		req_finish(r, 0);
		return;
	}
	if (is_redirect((int)status) && r->opts.follow_redirects) {
		follow_redirect(r);
		return;
	}
	if (status == 401 && r->hops == 0 && !r->tried_auth && r->challenge) {
		struct challenge c;
		char *ip = NULL;
		parse_challenge(r->challenge, &c);
		lc.easy_getinfo(r->easy, CURLINFO_PRIMARY_IP, &ip);
		r->origin_class = ip_text_class(ip); /* for the realm's address check */
		easy_release(r);
		r->tried_auth = true;
		free(r->authz);
		r->authz = NULL;
		if (strcasecmp(c.scheme, "Bearer") == 0 && start_token(r, &c))
			return;
		if (strcasecmp(c.scheme, "Basic") == 0 && find_cred(r->up, u)) {
			r->basic = true;
			start_main(r);
			return;
		}
		/* No way to authenticate: the 401 is the answer. */
		r->status = 401;
		deliver_head(r);
		req_finish(r, 0);
		return;
	}
	if (retryable((int)status) && r->attempt < r->reg->max_retries && !r->head_delivered) {
		int ra = r->retry_after;
		easy_release(r);
		if (status != 429 || ra <= RETRY_AFTER_MAX_S) {
			wh_log(WH_LOG_INFO, "upstream busy, retrying", "url", WH_LS, u, "path",
			       WH_LS, r->path, "status", WH_LI, (long long)status, NULL);
			schedule_retry(r, backoff_ms(r, status == 429 ? ra : -1));
			return;
		}
		/* Told to come back much later: do not hold the client that long. */
		deliver_head(r);
		req_finish(r, 0);
		return;
	}
	deliver_head(r);
	req_finish(r, 0);
}

static void check_done(wh_upstream *up)
{
	CURLMsg *m;
	int left;
	while ((m = lc.multi_info_read(up->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		wh_up_req *r = NULL;
		CURLcode res = m->data.result;
		lc.easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (!r)
			continue;
		if (r->cancelled) {
			req_finish(r, 0);
			continue;
		}
		if (r->phase == PH_TOKEN)
			token_done(r, res);
		else
			main_done(r, res);
	}
	/* Requests cancelled from inside a curl callback go now. */
	for (wh_list *l = wh_list_first(&up->reqs); l != &up->reqs;) {
		wh_up_req *r = wh_list_entry(l, wh_up_req, link);
		if (r->cancelled && !r->done) {
			req_finish(r, 0);
			l = wh_list_first(&up->reqs);
		} else {
			l = l->next;
		}
	}
}

/* ---- public ---- */

static int load_creds(wh_upstream *up, const char *path, char *err, size_t errlen)
{
	int rc = WH_EINVAL;
	char *text = NULL;
	size_t len;
	cJSON *doc = NULL;
	int r = wh_read_file(path, CREDS_FILE_MAX, &text, &len);
	if (r < 0) {
		snprintf(err, errlen, "extensions.sync.credentialsFile: %s: %s", path,
		         r == WH_ETOOBIG ? "larger than 1 MiB" : wh_strerror(r));
		goto out;
	}
	doc = cJSON_Parse(text);
	if (!cJSON_IsObject(doc)) {
		snprintf(err, errlen, "extensions.sync.credentialsFile: %s: not a JSON object",
		         path);
		goto out;
	}
	const cJSON *e;
	cJSON_ArrayForEach(e, doc)
	{
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(e, "username");
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "password");
		if (!cJSON_IsString(u) || !cJSON_IsString(p)) {
			snprintf(
			    err, errlen,
			    "extensions.sync.credentialsFile: %s: \"%s\" needs string username and "
			    "password",
			    path, e->string);
			goto out;
		}
		up->creds = wh_realloc(up->creds, sizeof(*up->creds) * (size_t)(up->n_creds + 1));
		struct cred *c = &up->creds[up->n_creds++];
		c->host = wh_strdup(e->string);
		c->user = wh_strdup(u->valuestring);
		c->pass = wh_strdup(p->valuestring);
	}
	rc = 0;
out:
	cJSON_Delete(doc);
	free(text);
	return rc;
}

static void free_creds(wh_upstream *up)
{
	for (int i = 0; i < up->n_creds; i++) {
		free(up->creds[i].host);
		free(up->creds[i].user);
		/* Do not leave the secret in freed memory. */
		explicit_bzero(up->creds[i].pass, strlen(up->creds[i].pass));
		free(up->creds[i].pass);
	}
	free(up->creds);
	up->creds = NULL;
	up->n_creds = 0;
}

/* curl (and the TLS library under it) is set up at the first upstream
 * request, not at start: a cache that is not being filled does not pay the
 * memory of a TLS stack. */
static int multi_ready(wh_upstream *up)
{
	if (up->multi)
		return 0;
	int rc = curl_load();
	if (rc != 0)
		return rc;
	up->multi = lc.multi_init();
	if (!up->multi)
		return WH_ENOMEM;
	lc.multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, socket_fn);
	lc.multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
	lc.multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
	lc.multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
	lc.multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
	                (long)up->set.max_host_connections);
	return 0;
}

int wh_upstream_new(uv_loop_t *loop, const wh_upstream_settings *s, wh_upstream **out, char *err,
                    size_t errlen)
{
	wh_upstream *up = wh_calloc(1, sizeof(*up));
	up->loop = loop;
	up->set = *s;
	up->set.credentials_file = NULL;
	wh_list_init(&up->reqs);
	wh_list_init(&up->socks);
	/* "" is none, as in Zot (its examples write "credentialsFile": ""). */
	if (s->credentials_file && *s->credentials_file &&
	    load_creds(up, s->credentials_file, err, errlen) != 0) {
		free_creds(up);
		free(up);
		return WH_EINVAL;
	}
	uv_timer_init(loop, &up->timer);
	up->timer.data = up;
	*out = up;
	return 0;
}

int wh_upstream_reload(wh_upstream *up, const wh_upstream_settings *s, char *err, size_t errlen)
{
	/* The new credentials into a scratch client first: a file that does not
	 * load leaves the old ones. curl copies the strings it is given, so no
	 * request in flight holds the old ones. */
	wh_upstream tmp = {0};
	if (s->credentials_file && *s->credentials_file &&
	    load_creds(&tmp, s->credentials_file, err, errlen) != 0) {
		free_creds(&tmp);
		return WH_EINVAL;
	}
	free_creds(up);
	up->creds = tmp.creds;
	up->n_creds = tmp.n_creds;
	up->set = *s;
	up->set.credentials_file = NULL;
	if (up->multi)
		lc.multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
		                (long)up->set.max_host_connections);
	return 0;
}

void wh_upstream_free(wh_upstream *up)
{
	while (!wh_list_empty(&up->reqs)) {
		wh_up_req *r = wh_list_entry(wh_list_first(&up->reqs), wh_up_req, link);
		r->cancelled = true;
		req_finish(r, 0);
	}
	for (int i = 0; i < up->n_tokens; i++) {
		free(up->tokens[i].key);
		free(up->tokens[i].value);
	}
	free_creds(up);
	while (up->health) {
		struct health *h = up->health;
		up->health = h->next;
		free(h->base);
		free(h);
	}
	up->freeing = true;
	/* Cleaning up the multi handle closes its sockets (CURL_POLL_REMOVE). */
	if (up->multi)
		lc.multi_cleanup(up->multi);
	up->multi = NULL;
	while (!wh_list_empty(&up->socks))
		sock_close(up, wh_list_entry(wh_list_first(&up->socks), struct sock, link));
	if (up->pending_closes == 0)
		uv_close((uv_handle_t *)&up->timer, up_free_cb);
}

wh_up_req *wh_upstream_request(wh_upstream *up, const wh_sync_registry *reg, const char *method,
                               const char *path, const char *repo, const char *accept,
                               const wh_up_opts *opts, const wh_up_cbs *cbs, void *arg)
{
	wh_up_req *r = wh_calloc(1, sizeof(*r));
	r->up = up;
	r->reg = reg;
	r->method = wh_strdup(method);
	r->path = wh_strdup(path);
	r->repo = wh_strdup(repo);
	r->accept = accept ? wh_strdup(accept) : NULL;
	r->cbs = *cbs;
	r->arg = arg;
	if (opts)
		r->opts = *opts;
	else
		r->opts.max_body = -1;
	r->retry_after = -1;
	r->clen = -1;
	uv_timer_init(up->loop, &r->retry_timer);
	r->retry_timer.data = r;
	wh_list_insert_head(&up->reqs, &r->link);
	/* Started from the loop, so that no callback can run before the caller
	 * has the request in hand. */
	uv_timer_start(&r->retry_timer, retry_cb, 0, 0);
	return r;
}

void wh_upstream_abort(wh_up_req *r, int err)
{
	if (r->done || r->cancelled || r->abort_err || err >= 0)
		return;
	/* The write callback refuses the next bytes (or the exchange is over
	 * already) and main_done, or req_finish, ends the request with err. */
	r->abort_err = err;
}

void wh_upstream_cancel(wh_up_req *r)
{
	if (r->done || r->cancelled)
		return;
	r->cancelled = true;
	/* Inside curl's callbacks the handle cannot be removed: the write
	 * callback refuses the next bytes and check_done cleans up. */
	if (r->up->in_curl == 0 || !r->easy)
		req_finish(r, 0);
}

/* ---- configuration: extensions.sync.wharf ---- */

#define UPS(m) offsetof(wh_upstream_settings, m)

const wh_conf_key wh_upstream_wharf_keys[] = {
    WH_CONF_KEY("allowPrivateRedirects", WH_CONF_BOOL, 0, UPS(allow_private_redirects)),
    WH_CONF_KEY("connectTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, UPS(connect_timeout_ms)),
    WH_CONF_KEY("requestTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, UPS(request_timeout_ms)),
    WH_CONF_KEY("stallTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, UPS(stall_timeout_ms)),
    WH_CONF_KEY("maxHostConnections", WH_CONF_INT, WH_CONF_POSITIVE, UPS(max_host_connections)),
    WH_CONF_END,
};

void wh_upstream_settings_init(wh_upstream_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->connect_timeout_ms = 10 * WH_SECOND_MS;
	s->request_timeout_ms = 60 * WH_SECOND_MS;
	s->stall_timeout_ms = 30 * WH_SECOND_MS;
	s->max_host_connections = 16;
}

void wh_upstream_settings_free(wh_upstream_settings *s)
{
	free(s->credentials_file);
	memset(s, 0, sizeof(*s));
}
