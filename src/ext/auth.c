/* The access phases: htpasswd authentication, then access.h's rules.
 *
 * A request reaches a content handler through here only. The common case —
 * no auth configured, or credentials verified a moment ago — is decided at
 * once, within the authenticate phase. A password not seen recently goes to
 * the thread pool (crypt_r takes tens of milliseconds for bcrypt at cost
 * 10: on the loop that would stall every other client); the phase holds
 * the request until the verification ends, then resumes it from the loop.
 * A denial under failDelay waits on a timer. Either wait detaches itself in
 * a done hook when the client leaves first. */
#include "wharf/ext/auth.h"

#include <crypt.h>
#include <errno.h>
#include <stddef.h>
#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "wharf/base/common.h"
#include "wharf/base/list.h"
#include "wharf/base/log.h"
#include "wharf/ext/access.h"
#include "wharf/oci/ref.h"
#include "wharf/oci/response.h"
/* Remembered verifications: a fixed table, so memory is bounded whatever the
 * number of users; two credentials that share a slot evict each other and
 * cost one more hash, nothing else. */
#define CACHE_SLOTS 1024
/* Short: a password changed or removed in the file is honoured at once on
 * SIGHUP (the table is cleared), and within this without one. */
#define CACHE_TTL_MS (60 * 1000)
#define CRED_MAX     1024 /* decoded user:password */

/* The bodies Zot sends (pkg/api/errors). */
static const char body_authn[] =
    "{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":{"
    "\"description\":\"The access controller was unable to authenticate the client. Often "
    "this will be accompanied by a WWW-Authenticate HTTP response header indicating how to "
    "authenticate.\"}}";
static const char body_authz_anon[] =
    "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\","
    "\"detail\":{\"description\":\"The access controller was unable to authenticate the "
    "client. Often this will be accompanied by a WWW-Authenticate HTTP response header "
    "indicating how to authenticate.\"}}]}";
static const char body_denied[] =
    "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"requested access to the resource is "
    "denied\",\"detail\":{\"description\":\"The access controller denied access for the "
    "operation on a resource.\"}}]}";

struct user {
	char *name;
	char *hash;
	bool supported;
};

struct centry {
	char key[WH_DIGEST_LEN + 1]; /* "" when empty */
	uint64_t expires_ms;
};

/* A request waiting for a verification. */
struct waiter {
	wh_list link; /* in job->waiters */
	wh_call *call;
	wh_req_hook gone; /* the client left first */
};

/* One password being checked in the thread pool. It owns copies of what it
 * needs: the file may be reloaded meanwhile. */
struct job {
	uv_work_t work;
	wh_auth *auth; /* NULL once the module is freed */
	wh_list link;  /* in auth->jobs while auth is there */
	char key[WH_DIGEST_LEN + 1];
	char *user;
	char *pass;
	char *hash;
	bool ok;
	wh_list waiters; /* struct waiter, newest first */
};

/* A denial held for failDelay. */
struct delay {
	uv_timer_t timer;
	wh_req *req; /* NULL once the request is gone */
	wh_req_hook gone;
	int status;
	const char *body;
	char challenge[300];
};

struct wh_auth {
	uv_loop_t *loop;
	const wh_auth_settings *cfg;
	bool authn; /* htpasswd configured */
	bool mtls;  /* http.tls with a cacert: a verified client certificate's CN is a user */
	struct user *users;
	int n_users;
	char challenge[300];      /* Basic realm="..." */
	char base_challenge[300]; /* basic realm=... (Zot's /v2/ header) */
	unsigned char salt[32];
	struct centry *cache;
	wh_list jobs; /* struct job, newest first */
	uint64_t verifications;
	wh_auth_stats stats;
	uint64_t metrics_warned; /* uv_now of the last "no metrics users" warning */
};

/* ---- the htpasswd file ---- */

static bool hash_supported(const char *h)
{
	return strncmp(h, "$2a$", 4) == 0 || strncmp(h, "$2b$", 4) == 0 ||
	       strncmp(h, "$2y$", 4) == 0 || strncmp(h, "$5$", 3) == 0 || strncmp(h, "$6$", 3) == 0;
}

static void users_free(struct user *u, int n)
{
	for (int i = 0; i < n; i++) {
		free(u[i].name);
		free(u[i].hash);
	}
	free(u);
}

/* As Zot: one user:hash a line, split at the first ':'; a line without ':'
 * is ignored; later lines win over earlier ones for the same user. */
static int load_users(const char *path, struct user **out, int *count)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		int rc = -errno;
		wh_log(WH_LOG_ERROR, "cannot read the htpasswd file", "path", WH_LS, path, "error",
		       WH_LS, wh_strerror(rc), NULL);
		return rc;
	}
	struct user *u = NULL;
	int n = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, f)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		char *colon = strchr(line, ':');
		if (!colon)
			continue;
		*colon = '\0';
		u = wh_realloc(u, (size_t)(n + 1) * sizeof(*u));
		u[n].name = wh_strdup(line);
		u[n].hash = wh_strdup(colon + 1);
		u[n].supported = hash_supported(colon + 1);
		if (!u[n].supported)
			wh_log(WH_LOG_WARN,
			       "htpasswd entry has unsupported hash type (use bcrypt: htpasswd -B, "
			       "or SHA-crypt $5$/$6$): this user cannot log in",
			       "user", WH_LS, line, NULL);
		n++;
	}
	free(line);
	fclose(f);
	if (n == 0)
		wh_log(WH_LOG_WARN, "htpasswd file has zero users", "path", WH_LS, path, NULL);
	else
		wh_log(WH_LOG_INFO, "loaded htpasswd file", "path", WH_LS, path, "users", WH_LI,
		       (long long)n, NULL);
	*out = u;
	*count = n;
	return 0;
}

static const struct user *find_user(const wh_auth *a, const char *name)
{
	for (int i = a->n_users - 1; i >= 0; i--)
		if (strcmp(a->users[i].name, name) == 0)
			return &a->users[i];
	return NULL;
}

/* The challenges of a 401, from the realm. */
static void set_challenge(wh_auth *a, const wh_auth_settings *cfg)
{
	const char *realm = cfg->realm && *cfg->realm ? cfg->realm : "Authorization Required";
	/* Go-quoted, as Zot's strconv.Quote: escape '"' and '\'. */
	size_t n = (size_t)snprintf(a->challenge, sizeof(a->challenge), "Basic realm=\"");
	for (const char *c = realm; *c && n + 4 < sizeof(a->challenge); c++) {
		if (*c == '"' || *c == '\\')
			a->challenge[n++] = '\\';
		a->challenge[n++] = *c;
	}
	a->challenge[n++] = '"';
	a->challenge[n] = '\0';
	snprintf(a->base_challenge, sizeof(a->base_challenge), "basic realm=%s", realm);
}

int wh_auth_new(uv_loop_t *loop, const wh_auth_settings *cfg, wh_auth **out)
{
	wh_auth *a = wh_calloc(1, sizeof(*a));
	wh_list_init(&a->jobs);
	a->loop = loop;
	a->cfg = cfg;
	a->authn = cfg->htpasswd_path && *cfg->htpasswd_path;
	a->mtls = cfg->mtls;
	set_challenge(a, cfg);
	if (getrandom(a->salt, sizeof(a->salt), 0) != (ssize_t)sizeof(a->salt)) {
		/* Not secret for correctness, only against reading it back out of a
		 * core dump; a fixed salt still keys the table. */
		memset(a->salt, 0x5a, sizeof(a->salt));
	}
	a->cache = wh_calloc(CACHE_SLOTS, sizeof(*a->cache));
	if (a->authn) {
		int rc = load_users(cfg->htpasswd_path, &a->users, &a->n_users);
		if (rc != 0) {
			free(a->cache);
			free(a);
			return rc;
		}
	}
	*out = a;
	return 0;
}

void wh_auth_free(wh_auth *a)
{
	if (!a)
		return;
	wh_list_foreach_safe(l, next, &a->jobs) {
		struct job *j = wh_list_entry(l, struct job, link);
		wh_list_remove(&j->link);
		j->auth = NULL;
	}
	users_free(a->users, a->n_users);
	explicit_bzero(a->cache, CACHE_SLOTS * sizeof(*a->cache));
	free(a->cache);
	free(a);
}

int wh_auth_reload(wh_auth *a, const wh_auth_settings *cfg)
{
	if (!cfg)
		cfg = a->cfg;
	bool authn = cfg->htpasswd_path && *cfg->htpasswd_path;
	struct user *u = NULL;
	int n = 0;
	if (authn) {
		int rc = load_users(cfg->htpasswd_path, &u, &n);
		if (rc != 0) {
			wh_log(WH_LOG_WARN, "htpasswd reload failed: the users loaded before stay",
			       NULL);
			return rc;
		}
	}
	users_free(a->users, a->n_users);
	a->users = u;
	a->n_users = n;
	a->cfg = cfg;
	a->authn = authn;
	a->mtls = cfg->mtls;
	set_challenge(a, cfg);
	memset(a->cache, 0, CACHE_SLOTS * sizeof(*a->cache));
	return 0;
}

/* ---- remembered verifications ---- */

static void cred_key(const wh_auth *a, const char *user, const char *pass, char *key)
{
	wh_sha256 h;
	wh_sha256_init(&h);
	wh_sha256_update(&h, a->salt, sizeof(a->salt));
	wh_sha256_update(&h, user, strlen(user) + 1);
	wh_sha256_update(&h, pass, strlen(pass));
	wh_sha256_final(&h, key);
}

static struct centry *slot(const wh_auth *a, const char *key)
{
	/* key is "sha256:<hex>": the hex is uniformly spread. */
	unsigned long v = strtoul((char[]){key[7], key[8], key[9], key[10], '\0'}, NULL, 16);
	return &a->cache[v % CACHE_SLOTS];
}

static bool cache_hit(const wh_auth *a, const char *key)
{
	const struct centry *e = slot(a, key);
	return e->key[0] && strcmp(e->key, key) == 0 && e->expires_ms > uv_now(a->loop);
}

/* ---- answers ---- */

static void send_error(wh_req *req, int status, const char *body, const char *challenge)
{
	size_t len = strlen(body);
	wh_oci_start(req, status);
	wh_resp_header(req, "Content-Type", "application/json");
	if (challenge)
		wh_resp_header(req, "WWW-Authenticate", "%s", challenge);
	wh_resp_length(req, (int64_t)len);
	wh_resp_write(req, body, len);
	wh_resp_end(req);
}

static void delay_closed(uv_handle_t *h)
{
	free(h->data);
}

static void delay_gone(wh_req *req, wh_req_hook *hook)
{
	struct delay *d = WH_CONTAINER_OF(hook, struct delay, gone);
	d->req = NULL;
	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *)&d->timer, delay_closed);
}

static void delay_fire(uv_timer_t *t)
{
	struct delay *d = t->data;
	wh_req *req = d->req;
	wh_req_cancel_done(req, &d->gone);
	uv_close((uv_handle_t *)&d->timer, delay_closed);
	send_error(req, d->status, d->body, d->challenge[0] ? d->challenge : NULL);
}

static void deny(wh_auth *a, wh_req *req, int status, const char *body, bool delayed)
{
	/* The UI asks not to be challenged: a browser would pop up a login box. */
	const char *ch = wh_req_header(req, "x-zot-api-client") ? NULL : a->challenge;
	int fd = a->cfg->fail_delay_s;
	if (!delayed || fd <= 0) {
		send_error(req, status, body, ch);
		return;
	}
	struct delay *d = wh_calloc(1, sizeof(*d));
	d->req = req;
	d->status = status;
	d->body = body;
	snprintf(d->challenge, sizeof(d->challenge), "%s", ch ? ch : "");
	uv_timer_init(a->loop, &d->timer);
	d->timer.data = d;
	wh_req_on_done(req, &d->gone, delay_gone);
	uv_timer_start(&d->timer, delay_fire, (uint64_t)fd * 1000, 0);
}

static void authn_failed(wh_auth *a, wh_req *req, const char *user, const char *why)
{
	if (user)
		a->stats.bad_credentials++;
	else
		a->stats.no_credentials++;
	wh_log(WH_LOG_INFO, "authentication failed", "user", WH_LS, user ? user : "", "reason",
	       WH_LS, why, "client", WH_LS, req->client, "path", WH_LS, req->path, NULL);
	/* failDelay only for requests that carried credentials, as Zot: a client
	 * that has not logged in yet is not made to wait for its challenge. */
	deny(a, req, 401, body_authn, user != NULL);
}

/* The user the request is authenticated as, for the rest of it. */
static void set_user(wh_call *call, const char *user)
{
	size_t n = strlen(user) + 1;
	char *u = wh_req_alloc(call->req, n);
	memcpy(u, user, n);
	call->user = u;
}

/* ---- verification in the thread pool ---- */

static void job_work(uv_work_t *w)
{
	struct job *j = w->data;
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	if (!cd)
		return;
	const char *out = crypt_r(j->pass, j->hash, cd);
	/* crypt_r answers "*0"/"*1" (or NULL) on failure, never the hash. */
	if (out && out[0] != '*') {
		size_t n = strlen(out);
		if (n == strlen(j->hash)) {
			unsigned char diff = 0;
			for (size_t i = 0; i < n; i++)
				diff |= (unsigned char)(out[i] ^ j->hash[i]);
			j->ok = diff == 0;
		}
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
}

static void waiter_gone(wh_req *req, wh_req_hook *hook)
{
	struct waiter *w = WH_CONTAINER_OF(hook, struct waiter, gone);
	wh_list_remove(&w->link);
	free(w);
}

static void job_free(struct job *j)
{
	explicit_bzero(j->pass, strlen(j->pass));
	free(j->pass);
	free(j->user);
	free(j->hash);
	free(j);
}

static void job_done(uv_work_t *wk, int status)
{
	struct job *j = wk->data;
	wh_auth *a = j->auth;
	bool ok = j->ok && status == 0;
	wh_list_remove(&j->link);
	if (a && ok) {
		struct centry *e = slot(a, j->key);
		memcpy(e->key, j->key, sizeof(e->key));
		e->expires_ms = uv_now(a->loop) + CACHE_TTL_MS;
	}
	/* One at a time, each off the list before it goes on: going on may
	 * answer, and answering may end other requests. */
	while (!wh_list_empty(&j->waiters)) {
		struct waiter *w = wh_list_entry(wh_list_first(&j->waiters), struct waiter, link);
		wh_list_remove(&w->link);
		wh_call *call = w->call;
		wh_req_cancel_done(call->req, &w->gone);
		free(w);
		if (!a) {
			; /* cannot happen: the module outlives its requests */
		} else if (ok) {
			set_user(call, j->user);
			wh_call_resume(call);
		} else {
			authn_failed(a, call->req, j->user, "wrong password");
		}
	}
	job_free(j);
}

/* Wait for the verification of key, starting one if none is running. */
static wh_phase_rc verify(wh_auth *a, wh_call *call, const struct user *u, const char *pass,
                          const char *key)
{
	struct job *j = NULL;
	wh_list_foreach_safe(l, next, &a->jobs) {
		struct job *x = wh_list_entry(l, struct job, link);
		if (strcmp(x->key, key) == 0) {
			j = x;
			break;
		}
	}
	if (!j) {
		j = wh_calloc(1, sizeof(*j));
		wh_list_init(&j->waiters);
		j->work.data = j;
		j->auth = a;
		memcpy(j->key, key, sizeof(j->key));
		j->user = wh_strdup(u->name);
		j->pass = wh_strdup(pass);
		j->hash = wh_strdup(u->hash);
		if (uv_queue_work(a->loop, &j->work, job_work, job_done) != 0) {
			job_free(j);
			authn_failed(a, call->req, u->name, "cannot queue the verification");
			return WH_PHASE_DONE;
		}
		wh_list_insert_head(&a->jobs, &j->link);
		a->verifications++;
		wh_log(WH_LOG_DEBUG, "verifying password", "user", WH_LS, u->name, NULL);
	}
	struct waiter *w = wh_calloc(1, sizeof(*w));
	w->call = call;
	wh_list_insert_head(&j->waiters, &w->link);
	wh_req_on_done(call->req, &w->gone, waiter_gone);
	return WH_PHASE_WAIT;
}

/* ---- the phase ---- */

/* Credentials from "Basic <base64(user:pass)>": 1 with them, 0 for an empty
 * pair ("Basic Og==", which some clients send before logging in: no
 * credentials), -1 when the header is not that. */
static int parse_basic(const char *h, char *buf, size_t buflen, char **user, char **pass)
{
	while (*h == ' ')
		h++;
	if (strncasecmp(h, "basic", 5) != 0 || (h[5] != ' ' && h[5] != '\t'))
		return -1;
	h += 5;
	while (*h == ' ' || *h == '\t')
		h++;
	size_t inlen = strcspn(h, " \t"), olen = 0;
	if (h[inlen] != '\0' && h[inlen + strspn(h + inlen, " \t")] != '\0')
		return -1;
	if (mbedtls_base64_decode((unsigned char *)buf, buflen - 1, &olen, (const unsigned char *)h,
	                          inlen) != 0)
		return -1;
	buf[olen] = '\0';
	if (memchr(buf, '\0', olen))
		return -1; /* crypt_r would read a shorter password than was sent */
	char *colon = strchr(buf, ':');
	if (!colon)
		return -1;
	*colon = '\0';
	*user = buf;
	*pass = colon + 1;
	return (**user || **pass) ? 1 : 0;
}

static bool docker_client(const wh_req *req)
{
	const char *ua = wh_req_header(req, "user-agent");
	return ua && (strstr(ua, "Docker-Client") || strncasecmp(ua, "docker/", 7) == 0);
}

/* Who asks: Basic credentials, else a verified client certificate, else
 * anonymous where that is possible. */
static wh_phase_rc authenticate(void *state, wh_call *call)
{
	wh_auth *a = state;
	wh_req *req = call->req;
	const wh_access_config *ac = &a->cfg->access;
	if (!a->authn && !a->mtls && !ac->enabled)
		return WH_PHASE_NEXT;
	const char *hdr = NULL;
	int n_hdr = 0;
	for (int i = 0; i < req->n_headers; i++)
		if (strcasecmp(req->headers[i].name, "authorization") == 0) {
			hdr = req->headers[i].value;
			n_hdr++;
		}
	if (n_hdr > 1) {
		authn_failed(a, req, "", "more than one Authorization header");
		return WH_PHASE_DONE;
	}
	if (a->authn && hdr && *hdr) {
		char buf[CRED_MAX + 1];
		char *user = NULL, *pass = NULL;
		int pr = parse_basic(hdr, buf, sizeof(buf), &user, &pass);
		if (pr < 0) {
			authn_failed(a, req, "", "not Basic credentials");
			return WH_PHASE_DONE;
		}
		if (pr > 0) {
			wh_phase_rc rc = WH_PHASE_NEXT;
			char key[WH_DIGEST_LEN + 1];
			cred_key(a, user, pass, key);
			const struct user *u = NULL;
			if (cache_hit(a, key)) {
				set_user(call, user);
			} else if (!(u = find_user(a, user))) {
				authn_failed(a, req, user, "unknown user");
				rc = WH_PHASE_DONE;
			} else if (!u->supported) {
				authn_failed(a, req, user, "unsupported hash type in htpasswd");
				rc = WH_PHASE_DONE;
			} else {
				rc = verify(a, call, u, pass, key);
			}
			/* The password goes before the request does. */
			explicit_bzero(buf, sizeof(buf));
			return rc;
		}
	}
	/* No password: a verified client certificate is the user, as in Zot's
	 * chain (Basic first, then mTLS, then anonymous). */
	if (a->mtls && req->tls_identity) {
		set_user(call, req->tls_identity);
		return WH_PHASE_NEXT;
	}
	/* No credentials. Without any authentication configured, everyone is
	 * authenticated (Zot); otherwise anonymous, where that is possible. */
	if (!a->authn && !a->mtls)
		return WH_PHASE_NEXT;
	bool base = strcmp(req->path, "/v2/") == 0 || strcmp(req->path, "/v2") == 0;
	if (!wh_access_anonymous_possible(ac) ||
	    (base && wh_access_needs_login(ac) && docker_client(req))) {
		/* Docker sends credentials only when challenged on /v2/. */
		authn_failed(a, req, NULL, "no credentials");
		return WH_PHASE_DONE;
	}
	return WH_PHASE_NEXT;
}

/* The metrics' paths: accessControl.metrics, as Zot's metrics route. */
static bool metrics_may(wh_auth *a, const char *user)
{
	const wh_access_config *ac = &a->cfg->access;
	if (wh_access_metrics_allows(ac, user))
		return true;
	uint64_t now = uv_now(a->loop);
	if (user && ac->n_metrics_users == 0 &&
	    (!a->metrics_warned || now - a->metrics_warned >= 60000)) {
		/* As Zot warns: the empty list is probably not what was meant. */
		wh_log(WH_LOG_WARN,
		       "no users in http.accessControl.metrics.users: no authenticated user may "
		       "read the metrics",
		       NULL);
		a->metrics_warned = now;
	}
	return false;
}

/* Authentication is settled: the user (NULL: anonymous) may or may not.
 * Requests about no repository (/v2/, the catalog) need only
 * authentication; the metrics' paths, accessControl.metrics. */
static wh_phase_rc authorize(void *state, wh_call *call)
{
	wh_auth *a = state;
	wh_req *req = call->req;
	const char *user = call->user, *repo = call->route.name;
	bool metrics = call->owner && call->owner->metrics_access;
	if (metrics ? metrics_may(a, user)
	            : (!wh_route_has_repo(&call->route) ||
	               wh_access_allows(&a->cfg->access, user, repo, call->route.action)))
		return WH_PHASE_NEXT;
	a->stats.denied++;
	wh_log(WH_LOG_INFO, "access denied", "user", WH_LS, user ? user : "(anonymous)", "repo",
	       WH_LS, metrics ? "(metrics)" : repo, "method", WH_LS, req->method, "client", WH_LS,
	       req->client, NULL);
	if (user)
		deny(a, req, 403, body_denied, true);
	else
		deny(a, req, 401, body_authz_anon, true);
	return WH_PHASE_DONE;
}

bool wh_auth_may(const wh_auth *a, const char *user, const char *repo, unsigned action)
{
	return wh_access_allows(&a->cfg->access, user, repo, action);
}

bool wh_auth_filters(const wh_auth *a)
{
	return a->cfg->access.enabled;
}

bool wh_auth_passwords(const wh_auth *a)
{
	return a && a->authn;
}

void wh_auth_base_headers(const wh_auth *a, wh_req *req)
{
	if (a->authn && !wh_req_header(req, "x-zot-api-client"))
		wh_resp_header(req, "WWW-Authenticate", "%s", a->base_challenge);
}

uint64_t wh_auth_verifications(const wh_auth *a)
{
	return a->verifications;
}

void wh_auth_get_stats(const wh_auth *a, wh_auth_stats *out)
{
	*out = a->stats;
}

/* ---- the module ---- */

static int module_init(const wh_module_env *env, const void *settings, void **state)
{
	wh_auth *a = NULL;
	int rc = wh_auth_new(env->loop, settings, &a);
	if (rc != 0) {
		wh_log(WH_LOG_ERROR, "cannot start authentication", "error", WH_LS, wh_strerror(rc),
		       NULL);
		return rc;
	}
	*state = a;
	return 0;
}

static void module_free(void *state)
{
	wh_auth_free(state);
}

static int module_reload(void *state, const void *settings)
{
	return wh_auth_reload(state, settings);
}

const wh_module wh_auth_module = {
    .name = "auth",
    .init = module_init,
    .free = module_free,
    .reload = module_reload,
    .authenticate = authenticate,
    .authorize = authorize,
};

/* ---- configuration: http.auth, http.realm ---- */

static const wh_conf_key htpasswd_fields[] = {
    {"path", WH_CONF_STRING, 0, offsetof(wh_auth_settings, htpasswd_path), NULL, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

/* A refused authentication's block: noted, so that the checks across keys
 * do not also call the config one without authentication. */
static int refused_authn(wh_conf *c, const cJSON *v, char *at)
{
	(void)c;
	(void)v;
	*(bool *)(void *)at = true;
	return 0;
}

#define REFUSED_AUTHN offsetof(wh_auth_settings, refused_authn)

/* What Wharf does not implement is refused (WH_CONF_REFUSE): LDAP, OpenID,
 * API keys, bearer tokens and mTLS identities each make some requests
 * authenticated, and without them the server would be open (or differently
 * shut) where the operator expects it protected. Session settings only
 * shape the UI login that OpenID would provide: harmless when absent, so a
 * warning. */
const wh_conf_key wh_auth_keys[] = {
    {"htpasswd", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, htpasswd_fields, NULL},
    {"failDelay", WH_CONF_INT, 0, offsetof(wh_auth_settings, fail_delay_s), NULL, NULL},
    {"ldap", WH_CONF_CUSTOM, WH_CONF_REFUSE, REFUSED_AUTHN, NULL, refused_authn},
    {"bearer", WH_CONF_CUSTOM, WH_CONF_REFUSE, REFUSED_AUTHN, NULL, refused_authn},
    {"openid", WH_CONF_CUSTOM, WH_CONF_REFUSE, REFUSED_AUTHN, NULL, refused_authn},
    {"apikey", WH_CONF_BOOL, WH_CONF_REFUSE_IF_SET, offsetof(wh_auth_settings, apikey), NULL, NULL},
    {"mtls", WH_CONF_CUSTOM, WH_CONF_REFUSE, REFUSED_AUTHN, NULL, refused_authn},
    {"sessionKeysFile", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"sessionDriver", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"secureSession", WH_CONF_BOOL, WH_CONF_WARN_IF_SET, WH_CONF_NOSTORE, NULL, NULL},
    {"sessionHashKey", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"sessionEncryptKey", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

const wh_conf_key wh_auth_http_keys[] = {
    WH_CONF_KEY("realm", WH_CONF_STRING, 0, offsetof(wh_auth_settings, realm)),
    WH_CONF_END,
};

void wh_auth_settings_free(wh_auth_settings *s)
{
	free(s->realm);
	free(s->htpasswd_path);
	wh_access_config_free(&s->access);
	memset(s, 0, sizeof(*s));
}
