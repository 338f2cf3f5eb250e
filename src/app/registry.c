/* The OCI Distribution API (v1.1) over the local store, and the routes of
 * the core (/v2/, health). Requests are validated here, once: names, tags
 * and digests against the spec's grammars, so what reaches the store can
 * never name a path outside rootDirectory. */
#include "wharf/app/registry.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "wharf/ext/auth.h"
#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/oci/manifest.h"
#include "wharf/ext/ratelimit.h"
#include "wharf/oci/ref.h"
#include "wharf/cache/sync.h"

#define MANIFEST_MAX WH_MANIFEST_MAX
#define API_VERSION  "registry/2.0"

/* A closing PUT on a session that is behind (got from disk without a saved
 * hash state, after a crash): its missing bytes are read and hashed in
 * libuv's thread pool, then the upload finishes. The job holds its own pin
 * on the session, so it outlives the request if the connection goes away:
 * the session then stays, hashed, and the client's next PUT finishes it. */
struct catchup {
	uv_work_t work;
	wh_registry *reg;            /* NULL once the registry is freed */
	struct catchup *prev, *next; /* in reg->catchups */
	wh_req *req;                 /* NULL once the request is over */
	wh_upload_catchup *job;
};

/* The catalog's scan of the root, in libuv's thread pool at start (a walk
 * of 20,000 repositories takes about a second). Catalog requests that
 * arrive before it is loaded wait for it, rather than walk again. */
struct catalog_scan {
	uv_work_t work;
	wh_registry *reg; /* NULL once the registry is freed */
	char *root;
	char **names;
	int count;
	uint64_t started_ms;
};

struct catalog_wait {
	wh_req *req;
	wh_registry *reg;
	char *user; /* who asks: the list is filtered for them */
	struct catalog_wait *prev, *next;
};

struct wh_registry {
	uv_loop_t *loop;
	const wh_config *cfg;
	wh_store *store;
	wh_sync *sync; /* NULL without on-demand sync */
	wh_auth *auth;
	wh_ratelimit *ratelimit; /* NULL without http.ratelimit */
	struct catchup *catchups;
	struct catalog_scan *scan;    /* while it runs */
	struct catalog_wait *waiting; /* catalog requests waiting for it */
};

enum route {
	R_NONE,
	R_BASE,
	R_CATALOG,
	R_MANIFEST,
	R_BLOB,
	R_UPLOAD_START,
	R_UPLOAD,
	R_TAGS,
	R_REFERRERS,
};

/* What a request with a body carries from one callback to the next. */
struct rctx {
	wh_registry *reg;
	char name[WH_NAME_MAX + 1];
	char ref[WH_TAG_MAX + WH_DIGEST_LEN + 2];
	char id[37];                    /* upload session */
	char digest[WH_DIGEST_LEN + 1]; /* ?digest= when finishing; a pushed manifest's */
	bool has_digest;
	/* The session this request writes to, pinned: got once, so a body
	 * piece costs no lookup, and never evicted meanwhile. Pinned also
	 * means busy: a second request on it must not interleave its bytes. */
	wh_upload *up;
	struct catchup *catchup; /* the closing PUT's catch-up, while it runs */
	struct store_wait *wait; /* the store's finish or put, while it runs */
	bool finished;           /* the upload was finished or cancelled */
	bool temp_session;       /* created for a monolithic POST: cancel if not finished */
	char *buf;               /* manifest bytes */
	size_t len, cap;
	char content_type[256];          /* of a manifest PUT */
	char subject[WH_DIGEST_LEN + 1]; /* of a manifest PUT, for the 201 ("": none) */
};

/* A store operation in the thread pool for a request (an upload's finish,
 * a manifest's put): it completes whether or not the client stays; req is
 * NULL once the request is over. */
struct store_wait {
	wh_req *req;
};

static void manifest_get(wh_req *req, wh_registry *reg, const char *name, const char *ref);
static void blob_get(wh_req *req, wh_registry *reg, const char *name, const char *digest);

static void serve_manifest(wh_req *req, void *ctx, const char *name, const char *ref)
{
	manifest_get(req, ctx, name, ref);
}

static void serve_blob(wh_req *req, void *ctx, const char *name, const char *digest)
{
	blob_get(req, ctx, name, digest);
}

static void referrers_answer(wh_req *req, wh_registry *reg, const char *name, const char *digest,
                             const char *upstream);
static void tags_answer(wh_req *req, wh_registry *reg, const char *name, char *const *up, int n_up,
                        bool known);

static void serve_referrers(wh_req *req, void *ctx, const char *name, const char *digest,
                            const char *upstream)
{
	referrers_answer(req, ctx, name, digest, upstream);
}

static void serve_tags(wh_req *req, void *ctx, const char *name, char *const *tags, int n,
                       bool known)
{
	tags_answer(req, ctx, name, tags, n, known);
}

static void catalog_scan_work(uv_work_t *w)
{
	struct catalog_scan *sc = w->data;
	wh_store_repos_scan(sc->root, &sc->names, &sc->count);
}

static void catalog(wh_req *req, wh_registry *reg, const char *user);

static void catalog_scan_done(uv_work_t *w, int status)
{
	struct catalog_scan *sc = w->data;
	wh_registry *reg = sc->reg;
	free(sc->root);
	if (!reg || status < 0) {
		/* Cancelled, the catalog is scanned at the next request instead. */
		if (reg)
			reg->scan = NULL;
		wh_strv_free(sc->names, sc->count);
	} else {
		reg->scan = NULL;
		wh_log(WH_LOG_INFO, "catalog loaded", "repositories", WH_LI, (long long)sc->count,
		       "duration_ms", WH_LI, (long long)(uv_now(reg->loop) - sc->started_ms), NULL);
		wh_store_catalog_load(reg->store, sc->names, sc->count);
	}
	free(sc);
	if (!reg)
		return;
	/* One at a time, each off the list before it is answered (answering
	 * may end other requests, whose on_done unlinks them). */
	while (reg->waiting) {
		struct catalog_wait *cw = reg->waiting;
		reg->waiting = cw->next;
		if (reg->waiting)
			reg->waiting->prev = NULL;
		wh_req *req = cw->req;
		char *user = cw->user;
		free(cw);
		req->data = NULL;
		req->on_done = NULL;
		catalog(req, reg, user);
		free(user);
	}
}

static void catalog_scan_start(wh_registry *reg)
{
	struct catalog_scan *sc = wh_calloc(1, sizeof(*sc));
	sc->work.data = sc;
	sc->reg = reg;
	sc->root = wh_strdup(wh_store_root(reg->store));
	sc->started_ms = uv_now(reg->loop);
	if (uv_queue_work(reg->loop, &sc->work, catalog_scan_work, catalog_scan_done) != 0) {
		/* The first catalog request then scans, on the loop. */
		free(sc->root);
		free(sc);
		return;
	}
	reg->scan = sc;
}

int wh_registry_new(uv_loop_t *loop, const wh_config *cfg, wh_store *store, wh_registry **out)
{
	wh_registry *reg = wh_calloc(1, sizeof(*reg));
	reg->loop = loop;
	reg->cfg = cfg;
	reg->store = store;
	const wh_sync_serve serve = {serve_manifest, serve_blob, serve_referrers, serve_tags, reg};
	char err[512];
	int rc = wh_sync_new(loop, cfg, store, &serve, &reg->sync, err, sizeof(err));
	if (rc != 0) {
		wh_log(WH_LOG_ERROR, "cannot start sync", "error", WH_LS, err, NULL);
		free(reg);
		return rc;
	}
	rc = wh_auth_new(loop, cfg, &reg->auth);
	if (rc == 0)
		rc = wh_ratelimit_new(cfg, &reg->ratelimit);
	if (rc != 0) {
		wh_log(WH_LOG_ERROR, "cannot start authentication", "error", WH_LS, wh_strerror(rc),
		       NULL);
		wh_auth_free(reg->auth);
		wh_sync_free(reg->sync);
		free(reg);
		return rc;
	}
	if (reg->ratelimit)
		wh_log(WH_LOG_INFO, "ratelimiter enabled", "rate", WH_LI, (long long)cfg->rate,
		       NULL);
	catalog_scan_start(reg);
	*out = reg;
	return 0;
}

int wh_registry_reload(wh_registry *reg)
{
	return wh_auth_reload(reg->auth);
}

void wh_registry_free(wh_registry *reg)
{
	wh_sync_free(reg->sync);
	/* Jobs still in the thread pool end on the loop after this; they must
	 * not touch the registry then. */
	for (struct catchup *c = reg->catchups; c; c = c->next)
		c->reg = NULL;
	if (reg->scan)
		reg->scan->reg = NULL;
	wh_auth_free(reg->auth);
	wh_ratelimit_free(reg->ratelimit);
	free(reg);
}

/* ---- responses ---- */

void wh_registry_error(wh_req *req, int status, const char *code, const char *message,
                       const char *detail)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *errs = cJSON_AddArrayToObject(root, "errors");
	cJSON *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "code", code);
	cJSON_AddStringToObject(e, "message", message);
	if (detail)
		cJSON_AddStringToObject(e, "detail", detail);
	cJSON_AddItemToArray(errs, e);
	char *body = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	wh_resp_start(req, status);
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_header(req, "Content-Type", "application/json");
	wh_resp_length(req, (int64_t)strlen(body));
	wh_resp_write(req, body, strlen(body));
	wh_resp_end(req);
	cJSON_free(body);
}

static void send_empty(wh_req *req, int status)
{
	wh_resp_start(req, status);
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_length(req, 0);
	wh_resp_end(req);
}

static void storage_error(wh_req *req, int rc)
{
	wh_log(WH_LOG_ERROR, "storage error", "path", WH_LS, req->path, "error", WH_LS,
	       wh_strerror(rc), NULL);
	wh_registry_error(req, 500, "UNKNOWN", "storage error", wh_strerror(rc));
}

/* ---- routing ---- */

/* The last '/' in [begin, end), or NULL. */
static const char *prev_slash(const char *begin, const char *end)
{
	while (end > begin)
		if (*--end == '/')
			return end;
	return NULL;
}

static bool comp_is(const char *p, const char *end, const char *lit)
{
	size_t n = strlen(lit);
	return (size_t)(end - p) == n && memcmp(p, lit, n) == 0;
}

/* Split /v2/<name>/<kind>/<ref> from the right: names contain slashes, the
 * other parts never do. name and ref are cut to their buffers' sizes; an
 * over-long one is returned empty (so that validation fails). */
static enum route route_v2(const char *method, const char *path, char *name, char *ref)
{
	if (strcmp(path, "/v2/") == 0 || strcmp(path, "/v2") == 0)
		return R_BASE;
	if (strncmp(path, "/v2/", 4) != 0)
		return R_NONE;
	if (strcmp(path, "/v2/_catalog") == 0)
		return R_CATALOG;

	const char *rest = path + 4, *end = path + strlen(path);
	const char *s1 = prev_slash(rest, end);
	if (!s1)
		return R_NONE;
	const char *last = s1 + 1;
	const char *s2 = prev_slash(rest, s1);
	const char *c2 = s2 ? s2 + 1 : rest;
	const char *name_end = s2;
	enum route r = R_NONE;
	if (comp_is(c2, s1, "tags") && comp_is(last, end, "list")) {
		r = R_TAGS;
	} else if (comp_is(c2, s1, "manifests")) {
		r = R_MANIFEST;
	} else if (comp_is(c2, s1, "referrers")) {
		r = R_REFERRERS;
	} else if (comp_is(c2, s1, "uploads") && s2) {
		const char *s3 = prev_slash(rest, s2);
		if (comp_is(s3 ? s3 + 1 : rest, s2, "blobs")) {
			r = last == end ? R_UPLOAD_START : R_UPLOAD;
			name_end = s3;
		}
	}
	if (r == R_NONE && comp_is(c2, s1, "blobs")) {
		if (strcmp(method, "POST") == 0 && comp_is(last, end, "uploads"))
			r = R_UPLOAD_START;
		else
			r = R_BLOB;
	}
	if (r == R_NONE || !name_end || name_end == rest)
		return R_NONE;
	size_t nlen = (size_t)(name_end - rest), rlen = (size_t)(end - last);
	if (nlen > WH_NAME_MAX)
		nlen = 0;
	memcpy(name, rest, nlen);
	name[nlen] = '\0';
	if (rlen > WH_TAG_MAX + WH_DIGEST_LEN)
		rlen = 0;
	memcpy(ref, last, rlen);
	ref[rlen] = '\0';
	return r;
}

static bool check_digest(wh_req *req, const char *d)
{
	int rc = wh_digest_check(d, strlen(d));
	if (rc == WH_DIGEST_UNSUPPORTED) {
		wh_registry_error(req, 400, "UNSUPPORTED", "digest algorithm not supported", NULL);
		return true;
	}
	if (rc != WH_DIGEST_OK) {
		wh_registry_error(req, 400, "DIGEST_INVALID", "invalid digest", NULL);
		return true;
	}
	return false;
}

/* Reject what cannot be a reference; returns true when it answered. */
static bool check_reference(wh_req *req, const char *ref, bool *is_digest)
{
	size_t len = strlen(ref);
	*is_digest = wh_ref_is_digest(ref, len);
	if (*is_digest)
		return check_digest(req, ref);
	if (!wh_tag_valid(ref, len)) {
		/* Nothing can be found under a name that cannot be a tag: a read or
		 * a delete is told so (404, as Distribution and Zot answer and the
		 * conformance suite expects); a push is told why (400). */
		if (strcmp(req->method, "PUT") == 0)
			wh_registry_error(req, 400, "MANIFEST_INVALID", "invalid tag", NULL);
		else
			wh_registry_error(req, 404, "MANIFEST_UNKNOWN",
			                  "manifest unknown to registry",
			                  "not a valid tag or digest");
		return true;
	}
	return false;
}

/* ---- blobs ---- */

bool wh_registry_blob_head(wh_req *req, const char *digest, int64_t size, bool range, int64_t a,
                           int64_t z)
{
	if (range && a > z) {
		wh_resp_start(req, 416);
		wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
		wh_resp_header(req, "Content-Range", "bytes */%" PRId64, size);
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return false;
	}
	wh_resp_start(req, range ? 206 : 200);
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_header(req, "Content-Type", "application/octet-stream");
	wh_resp_header(req, "Docker-Content-Digest", "%s", digest);
	wh_resp_header(req, "Accept-Ranges", "bytes");
	/* Content-addressed: the bytes behind a digest never change. */
	wh_resp_header(req, "ETag", "\"%s\"", digest);
	wh_resp_header(req, "Cache-Control", "max-age=31536000, immutable");
	if (range)
		wh_resp_header(req, "Content-Range", "bytes %" PRId64 "-%" PRId64 "/%" PRId64, a, z,
		               size);
	wh_resp_length(req, range ? z - a + 1 : size);
	return true;
}

static void blob_get(wh_req *req, wh_registry *reg, const char *name, const char *digest)
{
	int fd = -1;
	int64_t size = 0;
	int rc = wh_store_blob_open(reg->store, name, digest, &fd, &size);
	if (rc == WH_ENOTFOUND) {
		wh_registry_error(req, 404, "BLOB_UNKNOWN", "blob unknown to registry", digest);
		return;
	}
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	int64_t rs, re, a = 0, z = size - 1;
	bool range = wh_req_range(req, &rs, &re);
	if (range && !wh_range_resolve(rs, re, size, &a, &z))
		a = 1, z = 0; /* unsatisfiable */
	if (!wh_registry_blob_head(req, digest, size, range, a, z)) {
		close(fd);
		return;
	}
	int64_t n = size ? z - a + 1 : 0;
	if (n > 0)
		wh_resp_sendfile(req, fd, a, n);
	else
		close(fd);
	wh_resp_end(req);
}

static void blob_delete(wh_req *req, wh_registry *reg, const char *name, const char *digest)
{
	int rc = wh_store_blob_delete(reg->store, name, digest);
	if (rc == WH_ENOTFOUND)
		wh_registry_error(req, 404, "BLOB_UNKNOWN", "blob unknown to registry", digest);
	else if (rc == WH_EINUSE)
		wh_registry_error(req, 405, "UNSUPPORTED",
		                  "this digest is a manifest of the repository: delete it through "
		                  "/v2/<name>/manifests/<digest>",
		                  digest);
	else if (rc != 0)
		storage_error(req, rc);
	else
		send_empty(req, 202);
}

/* ---- uploads ---- */

static void upload_headers(wh_req *req, const char *name, const char *id, int64_t size)
{
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_header(req, "Location", "/v2/%s/blobs/uploads/%s", name, id);
	wh_resp_header(req, "Range", "0-%" PRId64, size > 0 ? size - 1 : 0);
	wh_resp_header(req, "Docker-Upload-UUID", "%s", id);
}

static void rctx_done(wh_req *req)
{
	struct rctx *x = req->data;
	if (!x)
		return;
	if (x->catchup)
		x->catchup->req = NULL; /* it goes on, and ends without us */
	if (x->wait)
		x->wait->req = NULL; /* likewise */
	if (x->up && !x->finished) {
		/* A monolithic POST's session goes with its request; cancel
		 * refuses only while a catch-up is out, and then the pin goes. */
		if (!x->temp_session || wh_store_upload_cancel(x->reg->store, x->up) == WH_EINUSE)
			wh_upload_unpin(x->up);
	}
	free(x->buf);
	free(x);
	req->data = NULL;
}

static struct rctx *rctx_new(wh_req *req, wh_registry *reg, const char *name)
{
	struct rctx *x = wh_calloc(1, sizeof(*x));
	x->reg = reg;
	snprintf(x->name, sizeof(x->name), "%s", name);
	req->data = x;
	req->on_done = rctx_done;
	return x;
}

static int upload_body(wh_req *req, const char *data, size_t len)
{
	struct rctx *x = req->data;
	int rc = wh_upload_write(x->up, data, len);
	if (rc != 0) {
		storage_error(req, rc);
		return -1;
	}
	return 0;
}

/* The request a store operation was for, or NULL when it went away; frees w. */
static wh_req *store_wait_end(struct store_wait *w)
{
	wh_req *req = w->req;
	free(w);
	if (req)
		((struct rctx *)req->data)->wait = NULL;
	return req;
}

static void upload_finished(int rc, void *arg);

/* Finish the upload of a session whose hash covers every byte (its fsync
 * and publishing run in the thread pool), then answer. */
static void upload_finish(wh_req *req, struct rctx *x)
{
	struct store_wait *w = wh_calloc(1, sizeof(*w));
	int rc = wh_store_upload_finish_async(x->reg->loop, x->reg->store, x->up, x->digest,
	                                      upload_finished, w);
	if (rc != 0) {
		free(w);
		storage_error(req, rc); /* not expected: the session is left as it was */
		return;
	}
	x->finished = true; /* the session is the store's now, with our pin */
	x->up = NULL;
	w->req = req;
	x->wait = w;
}

static void upload_finished(int rc, void *arg)
{
	wh_req *req = store_wait_end(arg);
	if (!req)
		return; /* the client went away: the blob is stored all the same */
	struct rctx *x = req->data;
	if (rc == WH_EDIGEST) {
		wh_registry_error(req, 400, "DIGEST_INVALID",
		                  "provided digest did not match uploaded content", x->digest);
		return;
	}
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	wh_resp_start(req, 201);
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_header(req, "Location", "/v2/%s/blobs/%s", x->name, x->digest);
	wh_resp_header(req, "Docker-Content-Digest", "%s", x->digest);
	wh_resp_length(req, 0);
	wh_resp_end(req);
}

static void catchup_work(uv_work_t *w)
{
	struct catchup *c = w->data;
	wh_upload_catchup_run(c->job);
}

static void catchup_start(wh_req *req, struct rctx *x);

static void catchup_done(uv_work_t *w, int status)
{
	struct catchup *c = w->data;
	/* Cancelled (status < 0), the job did not run and end installs nothing. */
	(void)status;
	int rc = wh_upload_catchup_end(c->job);
	if (c->reg) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->reg->catchups = c->next;
		if (c->next)
			c->next->prev = c->prev;
	}
	wh_req *req = c->req;
	free(c);
	if (!req)
		return; /* the client went away: the session stays, caught up */
	struct rctx *x = req->data;
	x->catchup = NULL;
	if (rc != 0)
		storage_error(req, rc);
	else if (wh_upload_hash_behind(x->up))
		catchup_start(req, x); /* not expected: nobody else writes to it */
	else
		upload_finish(req, x);
}

/* Hash what a session that is behind lacks, off the loop, then finish. */
static void catchup_start(wh_req *req, struct rctx *x)
{
	wh_registry *reg = x->reg;
	struct catchup *c = wh_calloc(1, sizeof(*c));
	int rc = wh_upload_catchup_begin(x->up, &c->job);
	if (rc != 0) {
		free(c);
		storage_error(req, rc);
		return;
	}
	c->work.data = c;
	c->req = req;
	c->reg = reg;
	c->next = reg->catchups;
	if (reg->catchups)
		reg->catchups->prev = c;
	reg->catchups = c;
	x->catchup = c;
	rc = uv_queue_work(reg->loop, &c->work, catchup_work, catchup_done);
	if (rc != 0)
		catchup_done(&c->work, rc); /* ends the job unrun: answers the error */
}

/* The body of a PATCH, a closing PUT or a monolithic POST is in: answer. */
static void upload_body_end(wh_req *req)
{
	struct rctx *x = req->data;
	if (!x->has_digest) {
		wh_resp_start(req, 202);
		upload_headers(req, x->name, x->id, wh_upload_size(x->up));
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return;
	}
	if (wh_upload_hash_behind(x->up))
		catchup_start(req, x); /* answers when the bytes are hashed */
	else
		upload_finish(req, x);
}

/* Content-Range of a chunk: "<start>-<end>" (inclusive). Both are below
 * INT64_MAX, so end - start + 1, the chunk's length, is an int64_t. */
static bool parse_content_range(const char *h, int64_t *start, int64_t *end)
{
	char *e;
	if (strncasecmp(h, "bytes ", 6) == 0)
		h += 6;
	if (*h < '0' || *h > '9')
		return false;
	errno = 0;
	long long a = strtoll(h, &e, 10);
	if (*e != '-' || errno)
		return false;
	const char *b = e + 1;
	if (*b < '0' || *b > '9')
		return false;
	long long z = strtoll(b, &e, 10);
	if ((*e && *e != '/') || errno || z < a || z == INT64_MAX)
		return false;
	*start = a;
	*end = z;
	return true;
}

/* A query parameter: 1 with its value in buf, 0 when it was not sent, -1
 * when it was sent but cannot be used (longer than buf, or a NUL in it): the
 * caller answers 400 rather than act as if it had not been sent. */
static int query_param(const wh_req *req, const char *name, char *buf, size_t len)
{
	if (wh_req_query(req, name, buf, len))
		return 1;
	return wh_req_query_has(req, name) ? -1 : 0;
}

/* Take the digest query parameter, if any; returns true when it answered. */
static bool take_digest_param(wh_req *req, struct rctx *x)
{
	char d[160]; /* room for the longest supported-looking digest (sha512) */
	int q = query_param(req, "digest", d, sizeof(d));
	if (q == 0)
		return false;
	if (q < 0) {
		wh_registry_error(req, 400, "DIGEST_INVALID", "invalid digest", NULL);
		return true;
	}
	if (check_digest(req, d))
		return true;
	memcpy(x->digest, d, WH_DIGEST_LEN + 1);
	x->has_digest = true;
	return false;
}

static void upload_start(wh_req *req, wh_registry *reg, const char *name, const char *user)
{
	char mount[160], from[WH_NAME_MAX + 2];
	int qm = query_param(req, "mount", mount, sizeof(mount));
	if (qm < 0) {
		wh_registry_error(req, 400, "DIGEST_INVALID", "invalid digest in mount", NULL);
		return;
	}
	if (qm > 0) {
		if (check_digest(req, mount))
			return;
		int qf = query_param(req, "from", from, sizeof(from));
		if (qf < 0 || (qf > 0 && !wh_name_valid(from, strlen(from)))) {
			wh_registry_error(req, 400, "NAME_INVALID",
			                  "invalid repository name in from", NULL);
			return;
		}
		/* A mount reads from `from`: without that right, the client uploads
		 * the blob like anyone who does not have it. */
		if (qf > 0 && wh_auth_may(reg->auth, user, from, WH_ACTION_READ) &&
		    wh_store_blob_mount(reg->store, name, from, mount) == 0) {
			wh_resp_start(req, 201);
			wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
			wh_resp_header(req, "Location", "/v2/%s/blobs/%s", name, mount);
			wh_resp_header(req, "Docker-Content-Digest", "%s", mount);
			wh_resp_length(req, 0);
			wh_resp_end(req);
			return;
		}
		/* Not mountable: a normal upload session begins (202). */
	}
	struct rctx *x = rctx_new(req, reg, name);
	if (take_digest_param(req, x))
		return;
	int rc = wh_store_upload_create(reg->store, name, x->id);
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	if (!x->has_digest) {
		/* A body without a digest has nowhere to go; ignore it. */
		wh_resp_start(req, 202);
		upload_headers(req, name, x->id, 0);
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return;
	}
	/* Monolithic: the body is the blob. */
	x->temp_session = true;
	rc = wh_store_upload_get(reg->store, name, x->id, &x->up);
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	wh_upload_pin(x->up);
	wh_req_read_body(req, upload_body, upload_body_end);
	if (!req->has_body)
		return; /* on_body_end fires when the (empty) message completes */
}

static void upload_session(wh_req *req, wh_registry *reg, const char *name, const char *id)
{
	wh_store *st = reg->store;
	wh_upload *up;
	if (strlen(id) != 36) {
		wh_registry_error(req, 404, "BLOB_UPLOAD_UNKNOWN",
		                  "blob upload unknown to registry", NULL);
		return;
	}
	int rc = wh_store_upload_get(st, name, id, &up);
	if (rc == WH_ENOTFOUND) {
		wh_registry_error(req, 404, "BLOB_UPLOAD_UNKNOWN",
		                  "blob upload unknown to registry", NULL);
		return;
	}
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	int64_t size = wh_upload_size(up);
	const char *m = req->method;
	if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
		wh_resp_start(req, 204);
		upload_headers(req, name, id, size);
		wh_resp_end(req);
		return;
	}
	if (strcmp(m, "DELETE") == 0) {
		if (wh_upload_pinned(up)) {
			wh_registry_error(req, 409, "BLOB_UPLOAD_INVALID", "upload session is busy",
			                  NULL);
			return;
		}
		rc = wh_store_upload_cancel(st, up);
		if (rc != 0)
			storage_error(req, rc);
		else
			send_empty(req, 204);
		return;
	}
	if (strcmp(m, "PATCH") != 0 && strcmp(m, "PUT") != 0) {
		wh_registry_error(req, 405, "UNSUPPORTED", "method not allowed", NULL);
		return;
	}
	const char *cr = wh_req_header(req, "content-range");
	if (cr) {
		int64_t a, z;
		if (!parse_content_range(cr, &a, &z)) {
			wh_registry_error(req, 400, "BLOB_UPLOAD_INVALID", "invalid Content-Range",
			                  cr);
			return;
		}
		/* z - a + 1 is the chunk's length; compared as z - a against
		 * length - 1, no term can overflow whatever the client sent. */
		if (a != size || (req->content_length >= 0 && z - a != req->content_length - 1)) {
			wh_resp_start(req, 416);
			upload_headers(req, name, id, size);
			wh_resp_header(req, "Content-Type", "application/json");
			static const char body[] =
			    "{\"errors\":[{\"code\":\"BLOB_UPLOAD_INVALID\",\"message\":"
			    "\"chunk out of order\"}]}";
			wh_resp_length(req, sizeof(body) - 1);
			wh_resp_write(req, body, sizeof(body) - 1);
			wh_resp_end(req);
			return;
		}
	}
	struct rctx *x = rctx_new(req, reg, name);
	memcpy(x->id, id, 37);
	if (strcmp(m, "PUT") == 0) {
		if (take_digest_param(req, x))
			return;
		if (!x->has_digest) {
			wh_registry_error(req, 400, "DIGEST_INVALID",
			                  "the digest parameter is required", NULL);
			return;
		}
	}
	if (wh_upload_pinned(up)) {
		wh_registry_error(req, 409, "BLOB_UPLOAD_INVALID",
		                  "another request is writing to this upload session", NULL);
		return;
	}
	wh_upload_pin(up);
	x->up = up;
	wh_req_read_body(req, upload_body, upload_body_end);
}

/* ---- manifests ---- */

static void manifest_get(wh_req *req, wh_registry *reg, const char *name, const char *ref)
{
	wh_manifest m = {0};
	int rc;
	if (req->is_head) {
		char *mt = NULL;
		int64_t size = 0;
		rc = wh_store_manifest_stat(reg->store, name, ref, m.digest, &mt, &size);
		m.media_type = mt;
		m.len = (size_t)size;
	} else {
		rc = wh_store_manifest_get(reg->store, name, ref, &m);
	}
	if (rc == WH_ENOTFOUND) {
		if (!wh_store_repo_exists(reg->store, name))
			wh_registry_error(req, 404, "NAME_UNKNOWN",
			                  "repository name not known to registry", name);
		else
			wh_registry_error(req, 404, "MANIFEST_UNKNOWN",
			                  "manifest unknown to registry", ref);
		return;
	}
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	wh_resp_start(req, 200);
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_header(req, "Content-Type", "%s", m.media_type ? m.media_type : WH_MT_OCI_MANIFEST);
	wh_resp_header(req, "Docker-Content-Digest", "%s", m.digest);
	wh_resp_header(req, "ETag", "\"%s\"", m.digest);
	wh_resp_length(req, (int64_t)m.len);
	if (!req->is_head)
		wh_resp_write(req, m.data, m.len);
	wh_resp_end(req);
	wh_manifest_free(&m);
}

static void manifest_delete(wh_req *req, wh_registry *reg, const char *name, const char *ref)
{
	int rc = wh_store_manifest_delete(reg->store, name, ref);
	if (rc == WH_ENOTFOUND) {
		if (!wh_store_repo_exists(reg->store, name))
			wh_registry_error(req, 404, "NAME_UNKNOWN",
			                  "repository name not known to registry", name);
		else
			wh_registry_error(req, 404, "MANIFEST_UNKNOWN",
			                  "manifest unknown to registry", ref);
	} else if (rc != 0) {
		storage_error(req, rc);
	} else {
		send_empty(req, 202);
	}
}

/* A descriptor (already well formed) of a pushed manifest names something
 * the repository holds; returns 0, or answers and returns -1. */
static int check_present(wh_req *req, wh_registry *reg, const char *name, const cJSON *d,
                         bool manifest)
{
	const char *dg = cJSON_GetObjectItemCaseSensitive(d, "digest")->valuestring;
	/* Non-distributable layers live elsewhere by design. */
	if (cJSON_GetObjectItemCaseSensitive(d, "urls"))
		return 0;
	int rc;
	if (manifest) {
		char digest[WH_DIGEST_LEN + 1];
		char *m = NULL;
		int64_t size;
		rc = wh_store_manifest_stat(reg->store, name, dg, digest, &m, &size);
		free(m);
	} else {
		int64_t size;
		rc = wh_store_blob_stat(reg->store, name, dg, &size);
	}
	if (rc == WH_ENOTFOUND) {
		wh_registry_error(req, 400, "MANIFEST_BLOB_UNKNOWN",
		                  manifest ? "manifest references a manifest unknown to registry"
		                           : "manifest references a blob unknown to registry",
		                  dg);
		return -1;
	}
	if (rc != 0) {
		storage_error(req, rc);
		return -1;
	}
	return 0;
}

static int manifest_body(wh_req *req, const char *data, size_t len)
{
	struct rctx *x = req->data;
	if (x->len + len > MANIFEST_MAX) {
		wh_registry_error(req, 413, "MANIFEST_INVALID", "manifest too large",
		                  "limit 4 MiB");
		return -1;
	}
	wh_buf_append(&x->buf, &x->len, &x->cap, data, len);
	return 0;
}

static void manifest_stored(int rc, void *arg);

static void manifest_put_end(wh_req *req)
{
	struct rctx *x = req->data;
	wh_registry *reg = x->reg;
	wh_manifest_doc m = {0};
	char digest[WH_DIGEST_LEN + 1];
	wh_sha256_digest(x->buf ? x->buf : "", x->len, digest);
	bool by_digest = wh_ref_is_digest(x->ref, strlen(x->ref));
	if (by_digest && strcmp(digest, x->ref) != 0) {
		wh_registry_error(req, 400, "DIGEST_INVALID",
		                  "the manifest's digest does not match the reference", digest);
		goto out;
	}
	const char *why;
	char detail[256];
	if (wh_manifest_check(x->buf ? x->buf : "", x->len, x->content_type, &m, &why, detail,
	                      sizeof(detail)) != 0) {
		wh_registry_error(req, 400, "MANIFEST_INVALID", why, detail[0] ? detail : NULL);
		goto out;
	}
	/* A push must hold everything it references. */
	const cJSON *d;
	if (m.is_index) {
		cJSON_ArrayForEach(d, m.manifests)
		{
			if (check_present(req, reg, x->name, d, true) != 0)
				goto out;
		}
	} else {
		if (check_present(req, reg, x->name, m.config, false) != 0)
			goto out;
		cJSON_ArrayForEach(d, m.layers)
		{
			if (check_present(req, reg, x->name, d, false) != 0)
				goto out;
		}
	}
	/* Stored in the thread pool (fsyncs); answered when it is done. */
	memcpy(x->digest, digest, sizeof(x->digest));
	snprintf(x->subject, sizeof(x->subject), "%s", m.subject ? m.subject : "");
	struct store_wait *w = wh_calloc(1, sizeof(*w));
	int rc = wh_store_manifest_put_async(reg->loop, reg->store, x->name,
	                                     by_digest ? NULL : x->ref, digest, m.media_type,
	                                     x->buf ? x->buf : "", x->len, manifest_stored, w);
	if (rc != 0) {
		free(w);
		storage_error(req, rc);
		goto out;
	}
	w->req = req;
	x->wait = w;
out:
	cJSON_Delete(m.doc);
}

static void manifest_stored(int rc, void *arg)
{
	wh_req *req = store_wait_end(arg);
	if (!req)
		return; /* the client went away: the manifest is stored all the same */
	struct rctx *x = req->data;
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	wh_resp_start(req, 201);
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_header(req, "Location", "/v2/%s/manifests/%s", x->name, x->digest);
	wh_resp_header(req, "Docker-Content-Digest", "%s", x->digest);
	if (x->subject[0])
		wh_resp_header(req, "OCI-Subject", "%s", x->subject);
	wh_resp_length(req, 0);
	wh_resp_end(req);
}

static void manifest_put(wh_req *req, wh_registry *reg, const char *name, const char *ref)
{
	if (req->content_length > MANIFEST_MAX) {
		wh_registry_error(req, 413, "MANIFEST_INVALID", "manifest too large",
		                  "limit 4 MiB");
		return;
	}
	struct rctx *x = rctx_new(req, reg, name);
	snprintf(x->ref, sizeof(x->ref), "%s", ref);
	const char *ct = wh_req_header(req, "content-type");
	snprintf(x->content_type, sizeof(x->content_type), "%s", ct ? ct : "");
	wh_req_read_body(req, manifest_body, manifest_put_end);
}

/* ---- listings ---- */

/* n and last for tags/list and _catalog; returns true when it answered. */
static bool page_params(wh_req *req, int *n, char *last, size_t lastlen, bool *has_last)
{
	char buf[32];
	*n = -1;
	int ql = query_param(req, "last", last, lastlen);
	if (ql < 0) {
		/* Read as absent, it would restart the listing from the top. */
		wh_registry_error(req, 400, "UNSUPPORTED", "last is longer than any name or tag",
		                  NULL);
		return true;
	}
	*has_last = ql > 0;
	int qn = query_param(req, "n", buf, sizeof(buf));
	if (qn < 0) {
		wh_registry_error(req, 400, "UNSUPPORTED", "n must be a non-negative integer",
		                  NULL);
		return true;
	}
	if (qn > 0) {
		char *e;
		errno = 0;
		long v = strtol(buf, &e, 10);
		if (!*buf || *e || errno || v < 0 || v > 100000) {
			wh_registry_error(req, 400, "UNSUPPORTED",
			                  "n must be a non-negative integer", buf);
			return true;
		}
		*n = (int)v;
	}
	return false;
}

static void send_list(wh_req *req, const char *link_path, const char *key, const char *name,
                      char **items, int count, bool more, int n)
{
	cJSON *doc = cJSON_CreateObject();
	if (name)
		cJSON_AddStringToObject(doc, "name", name);
	cJSON *arr = cJSON_AddArrayToObject(doc, key);
	for (int i = 0; i < count; i++)
		cJSON_AddItemToArray(arr, cJSON_CreateString(items[i]));
	char *body = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	wh_resp_start(req, 200);
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_header(req, "Content-Type", "application/json");
	if (more && count > 0 && n > 0)
		wh_resp_header(req, "Link", "<%s?n=%d&last=%s>; rel=\"next\"", link_path, n,
		               items[count - 1]);
	wh_resp_length(req, (int64_t)strlen(body));
	wh_resp_write(req, body, strlen(body));
	wh_resp_end(req);
	cJSON_free(body);
}

static int cmp_lexical(const void *a, const void *b)
{
	/* As the store sorts tags: case-insensitive, then bytewise. */
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	int c = strcasecmp(x, y);
	return c ? c : strcmp(x, y);
}

/* tags/list: the store's tags, merged with up[0..n_up) when known (a
 * synced name whose upstream answered); paginated over the merged list. */
static void tags_answer(wh_req *req, wh_registry *reg, const char *name, char *const *up, int n_up,
                        bool known)
{
	int n;
	char last[WH_TAG_MAX + 2];
	bool has_last;
	if (page_params(req, &n, last, sizeof(last), &has_last))
		return;
	char **tags = NULL;
	int count = 0;
	bool more = false;
	int rc = wh_store_tags(reg->store, name, known ? NULL : (has_last ? last : NULL),
	                       known ? -1 : n, &tags, &count, &more);
	if (rc == WH_ENOTFOUND && (!known || n_up == 0)) {
		if (reg->sync && !known && wh_sync_map_name(reg->sync, name, &(wh_sync_map){0}))
			wh_registry_error(req, 502, "UNKNOWN",
			                  "the upstream registry is unavailable",
			                  "and nothing of this repository is cached");
		else
			wh_registry_error(req, 404, "NAME_UNKNOWN",
			                  "repository name not known to registry", name);
		return;
	}
	if (rc != 0 && rc != WH_ENOTFOUND) {
		storage_error(req, rc);
		return;
	}
	char **page = tags;
	int n_page = count;
	char **all = NULL;
	if (known) {
		/* Both lists are sorted; merged, repeats dropped, then paged. */
		int n_all = 0;
		all = wh_malloc(sizeof(*all) * (size_t)(count + n_up + 1));
		for (int i = 0; i < count; i++)
			all[n_all++] = tags[i];
		for (int i = 0; i < n_up; i++)
			all[n_all++] = up[i];
		if (n_all > 0)
			qsort(all, (size_t)n_all, sizeof(*all), cmp_lexical);
		int i = 0, k = 0;
		while (has_last && i < n_all && cmp_lexical(&all[i], &(const char *){last}) <= 0)
			i++;
		for (; i < n_all; i++) {
			if (k > 0 && strcmp(all[k - 1], all[i]) == 0)
				continue;
			if (n >= 0 && k == n)
				break;
			all[k++] = all[i];
		}
		while (i < n_all && k > 0 && strcmp(all[k - 1], all[i]) == 0)
			i++;
		more = i < n_all;
		page = all;
		n_page = k;
	}
	char link[WH_NAME_MAX + 32];
	snprintf(link, sizeof(link), "/v2/%s/tags/list", name);
	send_list(req, link, "tags", name, page, n_page, more, n);
	free(all); /* its strings are tags' and up's */
	wh_strv_free(tags, count);
}

static void tags_list(wh_req *req, wh_registry *reg, const char *name)
{
	tags_answer(req, reg, name, NULL, 0, false);
}

static void catalog_wait_done(wh_req *req)
{
	struct catalog_wait *cw = req->data;
	if (cw->prev)
		cw->prev->next = cw->next;
	else
		cw->reg->waiting = cw->next;
	if (cw->next)
		cw->next->prev = cw->prev;
	free(cw->user);
	free(cw);
	req->data = NULL;
}

/* Keep the names user may read, at most n of them (n < 0: all); *more as
 * wh_store_repos's. Filtered before paging, so a page is never short. */
static void catalog_filter(wh_registry *reg, const char *user, char **repos, int *count, int n,
                           bool *more)
{
	int kept = 0;
	*more = false;
	for (int i = 0; i < *count; i++) {
		if (!wh_auth_may(reg->auth, user, repos[i], WH_ACTION_READ)) {
			free(repos[i]);
		} else if (n >= 0 && kept == n) {
			*more = true;
			free(repos[i]);
		} else {
			repos[kept++] = repos[i];
		}
	}
	*count = kept;
}

static void catalog(wh_req *req, wh_registry *reg, const char *user)
{
	int n;
	char last[WH_NAME_MAX + 2];
	bool has_last;
	if (page_params(req, &n, last, sizeof(last), &has_last))
		return;
	if (!wh_store_catalog_loaded(reg->store) && reg->scan) {
		struct catalog_wait *cw = wh_calloc(1, sizeof(*cw));
		cw->req = req;
		cw->reg = reg;
		cw->user = user ? wh_strdup(user) : NULL;
		cw->next = reg->waiting;
		if (reg->waiting)
			reg->waiting->prev = cw;
		reg->waiting = cw;
		req->data = cw;
		req->on_done = catalog_wait_done;
		return; /* answered when the scan is loaded */
	}
	char **repos = NULL;
	int count = 0;
	bool more = false;
	bool filter = wh_auth_filters(reg->auth);
	int rc = wh_store_repos(reg->store, has_last ? last : NULL, filter ? -1 : n, &repos, &count,
	                        &more);
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	if (filter)
		catalog_filter(reg, user, repos, &count, n, &more);
	send_list(req, "/v2/_catalog", "repositories", NULL, repos, count, more, n);
	wh_strv_free(repos, count);
}

static int cmp_desc_digest(const void *a, const void *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)a, "digest");
	const cJSON *y = cJSON_GetObjectItemCaseSensitive(*(cJSON *const *)b, "digest");
	return strcmp(x->valuestring, y->valuestring);
}

/* The store's referrers merged with the upstream's (a JSON array of
 * validated descriptors; one entry per digest, the store's first), in
 * digest order as the store lists them, filtered here. Returns a malloc'd
 * index, or NULL when out of memory. */
static char *referrers_merge(const char *local, const char *upstream, const char *filter)
{
	char *out = NULL;
	cJSON *doc = cJSON_Parse(local);
	cJSON *up = cJSON_Parse(upstream);
	cJSON *list = cJSON_DetachItemFromObjectCaseSensitive(doc, "manifests");
	cJSON *d;
	cJSON **v = NULL;
	int n = 0;
	if (!doc || !cJSON_IsArray(list) || !cJSON_IsArray(up))
		goto out;
	v = wh_malloc(sizeof(*v) * (size_t)(cJSON_GetArraySize(list) + cJSON_GetArraySize(up) + 1));
	cJSON_ArrayForEach(d, list)
	{
		v[n++] = d;
	}
	int n_local = n;
	cJSON_ArrayForEach(d, up)
	{
		const char *dg = cJSON_GetObjectItemCaseSensitive(d, "digest")->valuestring;
		bool dup = false;
		for (int i = 0; i < n_local && !dup; i++)
			dup = strcmp(cJSON_GetObjectItemCaseSensitive(v[i], "digest")->valuestring,
			             dg) == 0;
		if (!dup)
			v[n++] = d;
	}
	if (n > 0)
		qsort(v, (size_t)n, sizeof(*v), cmp_desc_digest);
	cJSON *merged = cJSON_AddArrayToObject(doc, "manifests");
	for (int i = 0; merged && i < n; i++) {
		const cJSON *at = cJSON_GetObjectItemCaseSensitive(v[i], "artifactType");
		if (filter && !(cJSON_IsString(at) && strcmp(at->valuestring, filter) == 0))
			continue;
		cJSON_AddItemToArray(merged, cJSON_Duplicate(v[i], true));
	}
	if (merged)
		out = cJSON_PrintUnformatted(doc);
out:
	free(v);
	cJSON_Delete(list);
	cJSON_Delete(up);
	cJSON_Delete(doc);
	return out;
}

/* The store's referrers of digest, merged with upstream's when given (a
 * synced name whose upstream answered). The artifactType filter is always
 * applied here, so OCI-Filters-Applied says so whenever one was asked. */
static void referrers_answer(wh_req *req, wh_registry *reg, const char *name, const char *digest,
                             const char *upstream)
{
	char at[256]; /* a media type is at most 127 + 1 + 127 bytes (RFC 6838) */
	int qa = query_param(req, "artifactType", at, sizeof(at));
	if (qa < 0) {
		wh_registry_error(req, 400, "UNSUPPORTED", "artifactType is too long", NULL);
		return;
	}
	const char *filter = qa > 0 ? at : NULL;
	char *json = NULL;
	int rc = wh_store_referrers(reg->store, name, digest, upstream ? NULL : filter, &json);
	if (rc != 0) {
		storage_error(req, rc);
		return;
	}
	if (upstream) {
		char *merged = referrers_merge(json, upstream, filter);
		free(json);
		json = merged;
		if (!json) {
			storage_error(req, WH_ENOMEM);
			return;
		}
	}
	wh_resp_start(req, 200);
	wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
	wh_resp_header(req, "Content-Type", WH_MT_OCI_INDEX);
	if (filter)
		wh_resp_header(req, "OCI-Filters-Applied", "artifactType");
	wh_resp_length(req, (int64_t)strlen(json));
	wh_resp_write(req, json, strlen(json));
	wh_resp_end(req);
	free(json);
}

static void referrers(wh_req *req, wh_registry *reg, const char *name, const char *digest)
{
	if (check_digest(req, digest))
		return;
	char at[256];
	if (query_param(req, "artifactType", at, sizeof(at)) < 0) {
		wh_registry_error(req, 400, "UNSUPPORTED", "artifactType is too long", NULL);
		return;
	}
	wh_sync_map map;
	if (reg->sync && wh_sync_map_name(reg->sync, name, &map))
		wh_sync_referrers(reg->sync, req, name, digest, &map);
	else
		referrers_answer(req, reg, name, digest, NULL);
}

/* ---- dispatch ---- */

/* Each repository is a directory holding oci-layout, index.json and
 * blobs/sha256/: a nested repository may not take one of those paths. The
 * grammar allows such names; the layout cannot hold them. */
static bool name_storable(const char *name)
{
	const char *p = name;
	bool after_blobs = false;
	while (*p) {
		size_t n = strcspn(p, "/");
		bool first = p == name;
		if (!first && ((n == 10 && !strncmp(p, "index.json", n)) ||
		               (n == 10 && !strncmp(p, "oci-layout", n)) ||
		               (after_blobs && n == 6 && !strncmp(p, "sha256", n))))
			return false;
		after_blobs = !first && n == 5 && !strncmp(p, "blobs", n);
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
}

static void method_not_allowed(wh_req *req)
{
	wh_registry_error(req, 405, "UNSUPPORTED", "method not allowed", req->method);
}

static bool is(const wh_req *req, const char *m)
{
	return strcmp(req->method, m) == 0;
}

/* The route's content handlers, once the access phase let req through. */
static void dispatch(wh_req *req, void *ctx, const char *user)
{
	wh_registry *reg = ctx;
	char name[WH_NAME_MAX + 1];
	char ref[WH_TAG_MAX + WH_DIGEST_LEN + 2];
	enum route r = route_v2(req->method, req->path, name, ref);
	if (r == R_NONE) {
		wh_registry_error(req, 404, "UNSUPPORTED", "no such route", NULL);
		return;
	}
	if (r == R_BASE) {
		if (!is(req, "GET") && !is(req, "HEAD")) {
			method_not_allowed(req);
			return;
		}
		static const char empty[] = "{}";
		wh_resp_start(req, 200);
		wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
		wh_resp_header(req, "Content-Type", "application/json");
		wh_auth_base_headers(reg->auth, req);
		wh_resp_length(req, sizeof(empty) - 1);
		wh_resp_write(req, empty, sizeof(empty) - 1);
		wh_resp_end(req);
		return;
	}
	if (r == R_CATALOG) {
		if (!is(req, "GET") && !is(req, "HEAD"))
			method_not_allowed(req);
		else
			catalog(req, reg, user);
		return;
	}
	if (!wh_name_valid(name, strlen(name)) || !name_storable(name)) {
		wh_registry_error(req, 400, "NAME_INVALID", "invalid repository name", NULL);
		return;
	}
	/* containerd, using us as a mirror, says for which registry (?ns=host):
	 * the name is then that registry's, under its sync destination, so one
	 * endpoint mirrors several registries. Without ns nothing changes. */
	char ns[256], mapped[WH_NAME_MAX + 1];
	if ((r == R_MANIFEST || r == R_BLOB) && reg->sync &&
	    wh_req_query(req, "ns", ns, sizeof(ns)) &&
	    wh_sync_ns_name(reg->sync, ns, name, mapped, sizeof(mapped)) &&
	    wh_name_valid(mapped, strlen(mapped)) && name_storable(mapped))
		memcpy(name, mapped, strlen(mapped) + 1);

	bool is_digest;
	wh_sync_map map;
	switch (r) {
	case R_MANIFEST:
		if (check_reference(req, ref, &is_digest))
			return;
		if ((is(req, "GET") || is(req, "HEAD")) && reg->sync &&
		    wh_sync_map_name(reg->sync, name, &map))
			wh_sync_manifest(reg->sync, req, name, ref, &map);
		else if (is(req, "GET") || is(req, "HEAD"))
			manifest_get(req, reg, name, ref);
		else if (is(req, "PUT"))
			manifest_put(req, reg, name, ref);
		else if (is(req, "DELETE"))
			manifest_delete(req, reg, name, ref);
		else
			method_not_allowed(req);
		return;
	case R_BLOB:
		if (check_digest(req, ref))
			return;
		if ((is(req, "GET") || is(req, "HEAD")) && reg->sync &&
		    wh_store_blob_stat(reg->store, name, ref, &(int64_t){0}) == WH_ENOTFOUND &&
		    wh_sync_map_name(reg->sync, name, &map))
			wh_sync_blob(reg->sync, req, name, ref, &map);
		else if (is(req, "GET") || is(req, "HEAD"))
			blob_get(req, reg, name, ref);
		else if (is(req, "DELETE"))
			blob_delete(req, reg, name, ref);
		else
			method_not_allowed(req);
		return;
	case R_UPLOAD_START:
		if (is(req, "POST"))
			upload_start(req, reg, name, user);
		else
			method_not_allowed(req);
		return;
	case R_UPLOAD:
		upload_session(req, reg, name, ref);
		return;
	case R_TAGS:
		if ((is(req, "GET") || is(req, "HEAD")) && reg->sync &&
		    wh_sync_map_name(reg->sync, name, &map)) {
			int n;
			char last[WH_TAG_MAX + 2];
			bool has_last;
			if (!page_params(req, &n, last, sizeof(last), &has_last))
				wh_sync_tag_list(reg->sync, req, name, &map);
		} else if (is(req, "GET") || is(req, "HEAD"))
			tags_list(req, reg, name);
		else
			method_not_allowed(req);
		return;
	case R_REFERRERS:
		if (is(req, "GET") || is(req, "HEAD"))
			referrers(req, reg, name, ref);
		else
			method_not_allowed(req);
		return;
	default:
		break;
	}
	wh_registry_error(req, 404, "UNSUPPORTED", "no such route", NULL);
}

/* What req asks to do, in access control's terms. */
static unsigned action_of(const wh_req *req, wh_registry *reg, enum route r, const char *name,
                          const char *ref)
{
	if (is(req, "GET") || is(req, "HEAD"))
		return WH_ACTION_READ;
	if (is(req, "DELETE"))
		return WH_ACTION_DELETE;
	/* The name is not validated yet: the store sees only one that is. */
	if (r == R_MANIFEST && is(req, "PUT") && wh_tag_valid(ref, strlen(ref)) &&
	    !wh_ref_is_digest(ref, strlen(ref)) && wh_name_valid(name, strlen(name)) &&
	    name_storable(name)) {
		/* Overwriting a tag is update; a new tag (or a digest) is create. */
		char digest[WH_DIGEST_LEN + 1];
		char *mt = NULL;
		int64_t size;
		int rc = wh_store_manifest_stat(reg->store, name, ref, digest, &mt, &size);
		free(mt);
		return rc == 0 ? WH_ACTION_UPDATE : WH_ACTION_CREATE;
	}
	return WH_ACTION_CREATE;
}

void wh_registry_handle(wh_req *req, void *ctx)
{
	wh_registry *reg = ctx;
	const char *path = req->path;

	/* Outermost, as Zot's: a refused request costs no password check. */
	if (reg->ratelimit) {
		int wait = wh_ratelimit_take(reg->ratelimit, req, uv_now(reg->loop));
		if (wait > 0) {
			static const char body[] = "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\","
			                           "\"message\":\"too many requests\"}]}";
			wh_resp_start(req, 429);
			wh_resp_header(req, "Docker-Distribution-API-Version", API_VERSION);
			wh_resp_header(req, "Content-Type", "application/json");
			wh_resp_header(req, "Retry-After", "%d", wait);
			wh_resp_length(req, sizeof(body) - 1);
			wh_resp_write(req, body, sizeof(body) - 1);
			wh_resp_end(req);
			return;
		}
	}
	/* Health needs no credentials: probes have none. */
	if (strcmp(path, "/livez") == 0 || strcmp(path, "/readyz") == 0 ||
	    strcmp(path, "/startupz") == 0) {
		if (!is(req, "GET") && !is(req, "HEAD")) {
			method_not_allowed(req);
			return;
		}
		wh_resp_start(req, 200);
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return;
	}

	/* The access phase: before any handler, so nothing — a store read, an
	 * upstream fetch — happens for a request that may not be made. */
	char name[WH_NAME_MAX + 1];
	char ref[WH_TAG_MAX + WH_DIGEST_LEN + 2];
	enum route r = route_v2(req->method, path, name, ref);
	bool has_repo = r != R_NONE && r != R_BASE && r != R_CATALOG;
	unsigned action = has_repo ? action_of(req, reg, r, name, ref) : 0;
	wh_auth_check(reg->auth, req, has_repo ? name : NULL, action, dispatch, reg);
}
