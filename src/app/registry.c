/* The OCI Distribution API (v1.1) over the local store and, for synced
 * names, the pull-through cache: the content phase of the pipeline's routes
 * of the API. Requests are validated here, once: names, tags and digests
 * against the spec's grammars, so what reaches the store can never name a
 * path outside rootDirectory. */
#include "wharf/app/registry.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "wharf/base/common.h"
#include "wharf/base/list.h"
#include "wharf/base/log.h"
#include "wharf/cache/sync.h"
#include "wharf/ext/auth.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/ref.h"
#include "wharf/oci/response.h"
#include "wharf/oci/route.h"
#include "wharf/store/serve.h"

/* Room for a digest in a query (?digest=, ?mount=): more than the longest
 * supported one (sha512, 135), so that a longer one is told UNSUPPORTED. */
#define DIGEST_PARAM_MAX 160

/* ?tag= parameters a manifest push takes (the spec asks for at least 10);
 * more is a 414, as the spec allows. */
#define PUSH_TAGS_MAX 64 /* the 414 says so: keep its text in step */

typedef struct wh_registry wh_registry;

/* A closing PUT on a session that is behind (got from disk without a saved
 * hash state, after a crash): its missing bytes are read and hashed in
 * libuv's thread pool, then the upload finishes. The job holds its own pin
 * on the session, so it outlives the request if the connection goes away:
 * the session then stays, hashed, and the client's next PUT finishes it. */
struct catchup {
	uv_work_t work;
	wh_list link; /* in the registry's catchups (unlinked when it is freed) */
	wh_req *req;  /* NULL once the request is over */
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
	char *user;       /* who asks: the list is filtered for them */
	wh_list link;     /* in reg->waiting */
	wh_req_hook gone; /* the client left first */
};

struct wh_registry {
	uv_loop_t *loop;
	wh_store *store;
	wh_sync *sync;             /* NULL without on-demand sync */
	wh_auth *auth;             /* the auth module's: who may read what */
	wh_list catchups;          /* struct catchup */
	struct catalog_scan *scan; /* while it runs */
	wh_list waiting;           /* struct catalog_wait: catalog requests waiting for it */
};

/* What a request with a body carries from one callback to the next, in
 * the request's memory; req->data points to it for the body callbacks. */
struct rctx {
	wh_registry *reg;
	char name[WH_NAME_MAX + 1];
	char ref[WH_REF_MAX + 1];
	char id[WH_UUID_LEN + 1];       /* upload session */
	char digest[WH_DIGEST_LEN + 1]; /* ?digest= when finishing; a pushed manifest's */
	bool has_digest;
	/* The session this request writes to, pinned: got once, so a body
	 * piece costs no lookup, and never evicted meanwhile. Pinned also
	 * means busy: a second request on it must not interleave its bytes. */
	wh_upload *up;
	struct catchup *catchup; /* the closing PUT's catch-up, while it runs */
	struct store_wait *wait; /* the store's operation, while it runs */
	bool finished;           /* the upload was finished or cancelled */
	bool temp_session;       /* created for a monolithic POST: cancel if not finished */
	char *buf;               /* manifest bytes */
	size_t len, cap;
	char content_type[256];          /* of a manifest PUT */
	char subject[WH_DIGEST_LEN + 1]; /* of a manifest PUT, for the 201 ("": none) */
	char (*tags)[WH_TAG_MAX + 1];    /* of a manifest PUT: the tags to apply (request memory) */
	int n_tags;
	wh_digest_alg alg; /* a POST's ?digest-algorithm= (NONE: not given) */
	/* A POST's ?mount= and ?from= while the mount is still to be tried
	 * ("" once it was, or without one). The upload is the mount's fallback. */
	char mount[WH_DIGEST_LEN + 1];
	char from[WH_NAME_MAX + 1];
	int fallback_err; /* the fallback upload could not begin: its answer */
	int body_err;     /* a write to the session failed: answered if not mounted */
	wh_req_hook done;
};

/* A store operation in the thread pool for a request (an upload's finish,
 * a mount, a manifest's put, a delete): it completes whether or not the
 * client stays; req is NULL once the request is over. */
struct store_wait {
	wh_req *req;
};

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
	 * may end other requests, whose done hooks unlink them). */
	while (!wh_list_empty(&reg->waiting)) {
		struct catalog_wait *cw =
		    wh_list_entry(wh_list_first(&reg->waiting), struct catalog_wait, link);
		wh_list_remove(&cw->link);
		wh_req *req = cw->req;
		char *user = cw->user;
		wh_req_cancel_done(req, &cw->gone);
		free(cw);
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

static int module_init(const wh_module_env *env, const void *settings, void **state)
{
	wh_registry *reg = wh_calloc(1, sizeof(*reg));
	wh_list_init(&reg->catchups);
	wh_list_init(&reg->waiting);
	reg->loop = env->loop;
	reg->store = env->store;
	reg->sync = env->sync;
	reg->auth = env->state_of(env, &wh_auth_module);
	catalog_scan_start(reg);
	*state = reg;
	return 0;
}

static void module_free(void *state)
{
	wh_registry *reg = state;
	/* Jobs still in the thread pool end on the loop after this; they must
	 * not touch the registry then. */
	while (!wh_list_empty(&reg->catchups))
		wh_list_remove(wh_list_first(&reg->catchups));
	if (reg->scan)
		reg->scan->reg = NULL;
	free(reg);
}

/* ---- validation ---- */

static bool check_digest(wh_req *req, const char *d)
{
	int rc = wh_digest_check(d, strlen(d));
	if (rc == WH_DIGEST_UNSUPPORTED) {
		wh_oci_error(req, 400, "UNSUPPORTED", "digest algorithm not supported", NULL);
		return true;
	}
	if (rc != WH_DIGEST_OK) {
		wh_oci_error(req, 400, "DIGEST_INVALID", "invalid digest", NULL);
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
			wh_oci_error(req, 400, "MANIFEST_INVALID", "invalid tag", NULL);
		else
			wh_oci_manifest_unknown(req, "not a valid tag or digest");
		return true;
	}
	return false;
}

/* ---- uploads ---- */

static void upload_headers(wh_req *req, const char *name, const char *id, int64_t size)
{
	wh_resp_header(req, "Docker-Distribution-API-Version", WH_API_VERSION);
	wh_resp_header(req, "Location", "/v2/%s/blobs/uploads/%s", name, id);
	wh_resp_header(req, "Range", "0-%" PRId64, size > 0 ? size - 1 : 0);
	wh_resp_header(req, "Docker-Upload-UUID", "%s", id);
}

/* 201: the blob is in the repository (uploaded or mounted). */
static void blob_created(wh_req *req, const char *name, const char *digest)
{
	wh_oci_start(req, 201);
	wh_resp_header(req, "Location", "/v2/%s/blobs/%s", name, digest);
	wh_resp_header(req, "Docker-Content-Digest", "%s", digest);
	wh_resp_length(req, 0);
	wh_resp_end(req);
}

static void cancelled(int rc, void *arg)
{
	(void)rc; /* logged by the store; nobody to answer */
	(void)arg;
}

static void rctx_done(wh_req *req, wh_req_hook *hook)
{
	struct rctx *x = WH_CONTAINER_OF(hook, struct rctx, done);
	if (x->catchup)
		x->catchup->req = NULL; /* it goes on, and ends without us */
	if (x->wait)
		x->wait->req = NULL; /* likewise */
	if (x->up && !x->finished) {
		/* A monolithic POST's session goes with its request; cancel
		 * refuses only while a catch-up is out, and then the pin goes. */
		if (!x->temp_session || wh_store_upload_cancel_async(x->reg->loop, x->reg->store,
		                                                     x->up, cancelled, NULL) != 0)
			wh_upload_unpin(x->up);
	}
	free(x->buf);
	req->data = NULL; /* x goes with the request's memory */
}

static struct rctx *rctx_new(wh_req *req, wh_registry *reg, const char *name)
{
	struct rctx *x = wh_req_alloc(req, sizeof(*x));
	x->reg = reg;
	snprintf(x->name, sizeof(x->name), "%s", name);
	req->data = x;
	wh_req_on_done(req, &x->done, rctx_done);
	return x;
}

static int upload_body(wh_req *req, const char *data, size_t len)
{
	struct rctx *x = req->data;
	if (x->body_err)
		return 0; /* dropped: the session is no use any more */
	int rc = wh_upload_write(x->up, data, len);
	if (rc == 0)
		return 0;
	if (wh_err_disk_full(rc) && wh_store_upload_cancel_async(x->reg->loop, x->reg->store, x->up,
	                                                         cancelled, NULL) == 0) {
		/* What it holds would keep the disk full for every other push
		 * and fill until someone removed it: the session goes now, its
		 * bytes with it (a client that resumes is told it is unknown).
		 * Another failure leaves it, consistent, to be resumed. */
		x->up = NULL;
		x->finished = true;
	}
	if (x->mount[0]) {
		x->body_err = rc; /* the mount may still make the upload moot */
		return 0;
	}
	wh_oci_storage_error(req, rc);
	return -1;
}

/* Begin waiting on the store operation whose queuing returned rc, with w
 * as its callback's arg: queued (0), req waits on it until the callback
 * (store_wait_end) or the request's end; not queued, w is dropped and rc
 * is the caller's to answer. */
static int store_wait_begin(wh_req *req, struct store_wait *w, int rc)
{
	if (rc != 0) {
		free(w);
		return rc;
	}
	w->req = req;
	((struct rctx *)req->data)->wait = w;
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

/* ---- blob deletes ---- */

static void blob_delete_answer(wh_req *req, const char *digest, int rc)
{
	if (rc == WH_ENOTFOUND)
		wh_oci_blob_unknown(req, digest);
	else if (rc == WH_EINUSE)
		wh_oci_error(req, 405, "UNSUPPORTED",
		             "this digest is a manifest of the repository: delete it through "
		             "/v2/<name>/manifests/<digest>",
		             digest);
	else if (rc != 0)
		wh_oci_storage_error(req, rc);
	else
		wh_oci_empty(req, 202);
}

static void blob_deleted(int rc, void *arg)
{
	wh_req *req = store_wait_end(arg);
	if (!req)
		return; /* the client went away: the blob is deleted all the same */
	struct rctx *x = req->data;
	blob_delete_answer(req, x->digest, rc);
}

/* The unlink and the directory's fsync run in the thread pool; answered
 * when they are done. */
static void blob_delete(wh_req *req, wh_registry *reg, const char *name, const char *digest)
{
	struct rctx *x = rctx_new(req, reg, name);
	wh_digest_copy(x->digest, digest);
	struct store_wait *w = wh_calloc(1, sizeof(*w));
	int rc = store_wait_begin(
	    req, w,
	    wh_store_blob_delete_async(reg->loop, reg->store, name, digest, blob_deleted, w));
	if (rc != 0)
		blob_delete_answer(req, digest, rc);
}

/* ---- finishing an upload ---- */

/* DELETE of an upload session: 204 once its files are gone. */
static void session_cancelled(int rc, void *arg)
{
	wh_req *req = store_wait_end(arg);
	if (!req)
		return; /* the client went away: the session is removed all the same */
	if (rc != 0)
		wh_oci_storage_error(req, rc);
	else
		wh_oci_empty(req, 204);
}

static void upload_finished(int rc, void *arg);

/* Finish the upload of a session whose hash covers every byte (its fsync
 * and publishing run in the thread pool), then answer. */
static void upload_finish(wh_req *req, struct rctx *x)
{
	struct store_wait *w = wh_calloc(1, sizeof(*w));
	int rc = store_wait_begin(req, w,
	                          wh_store_upload_finish_async(x->reg->loop, x->reg->store, x->up,
	                                                       x->digest, upload_finished, w));
	if (rc != 0) {
		wh_oci_storage_error(req, rc); /* not expected: the session is left as it was */
		return;
	}
	x->finished = true; /* the session is the store's now, with our pin */
	x->up = NULL;
}

static void upload_finished(int rc, void *arg)
{
	wh_req *req = store_wait_end(arg);
	if (!req)
		return; /* the client went away: the blob is stored all the same */
	struct rctx *x = req->data;
	if (rc == WH_EDIGEST) {
		wh_oci_error(req, 400, "DIGEST_INVALID",
		             "provided digest did not match uploaded content", x->digest);
		return;
	}
	if (rc != 0) {
		wh_oci_storage_error(req, rc);
		return;
	}
	blob_created(req, x->name, x->digest);
}

static void catchup_work(uv_work_t *w)
{
	struct catchup *c = w->data;
	wh_upload_catchup_run(c->job);
}

static void catchup_start(wh_req *req, struct rctx *x);
static void mount_start(wh_req *req, struct rctx *x);

static void catchup_done(uv_work_t *w, int status)
{
	struct catchup *c = w->data;
	/* Cancelled (status < 0), the job did not run and end installs nothing. */
	(void)status;
	int rc = wh_upload_catchup_end(c->job);
	wh_list_remove(&c->link);
	wh_req *req = c->req;
	free(c);
	if (!req)
		return; /* the client went away: the session stays, caught up */
	struct rctx *x = req->data;
	x->catchup = NULL;
	if (rc != 0)
		wh_oci_storage_error(req, rc);
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
		wh_oci_storage_error(req, rc);
		return;
	}
	c->work.data = c;
	c->req = req;
	wh_list_insert_head(&reg->catchups, &c->link);
	x->catchup = c;
	rc = uv_queue_work(reg->loop, &c->work, catchup_work, catchup_done);
	if (rc != 0)
		catchup_done(&c->work, rc); /* ends the job unrun: answers the error */
}

/* The body of a PATCH, a closing PUT or a monolithic POST is in: answer. */
static void upload_body_end(wh_req *req)
{
	struct rctx *x = req->data;
	if (x->mount[0]) {
		mount_start(req, x); /* the body is in: the mount decides */
		return;
	}
	if (x->body_err) {
		wh_oci_storage_error(req, x->body_err);
		return;
	}
	if (!x->has_digest) {
		wh_resp_start(req, 202);
		upload_headers(req, x->name, x->id, wh_upload_size(x->up));
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return;
	}
	/* The session must hash with the algorithm the digest names. It hashes
	 * sha256 unless the POST said otherwise (?digest-algorithm=, or a
	 * monolithic ?digest=): a closing digest of the other algorithm makes
	 * it hash its bytes again, in the thread pool, as a catch-up. */
	int rc = wh_upload_set_alg(x->up, wh_digest_alg_of(x->digest));
	if (rc != 0) {
		wh_oci_storage_error(req, rc); /* not expected: the session is ours, pinned */
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

/* Take the digest query parameter, if any; returns true when it answered. */
static bool take_digest_param(wh_req *req, struct rctx *x)
{
	char d[DIGEST_PARAM_MAX];
	int q = wh_oci_query(req, "digest", d, sizeof(d));
	if (q == 0)
		return false;
	if (q < 0) {
		wh_oci_error(req, 400, "DIGEST_INVALID", "invalid digest", NULL);
		return true;
	}
	if (check_digest(req, d))
		return true;
	wh_digest_copy(x->digest, d);
	x->has_digest = true;
	return false;
}

/* The session could not begin. With a mount still to try, that mount is
 * the answer if it works, and this error if not. */
static void upload_begin_failed(wh_req *req, struct rctx *x, int rc)
{
	if (x->mount[0]) {
		x->fallback_err = rc;
		mount_start(req, x);
		return;
	}
	wh_oci_storage_error(req, rc);
}

/* The session of a POST: 202 with its location or, with ?digest=, a
 * monolithic upload whose body is the blob. */
static void upload_begin(wh_req *req, struct rctx *x)
{
	wh_registry *reg = x->reg;
	if (take_digest_param(req, x))
		return;
	int rc = wh_store_upload_create(reg->store, x->name, x->id);
	if (rc != 0) {
		upload_begin_failed(req, x, rc);
		return;
	}
	/* The algorithm the session hashes with, when the POST names one: as
	 * bytes arrive, so the closing PUT hashes nothing again. */
	wh_digest_alg alg = x->has_digest ? wh_digest_alg_of(x->digest) : x->alg;
	if (!x->has_digest) {
		/* A new session: switching it hashes nothing again. */
		wh_upload *fresh;
		if (alg == WH_ALG_SHA512 &&
		    wh_store_upload_get(reg->store, x->name, x->id, &fresh) == 0)
			(void)wh_upload_set_alg(fresh, alg);
		/* A body without a digest has nowhere to go; ignore it. */
		wh_resp_start(req, 202);
		upload_headers(req, x->name, x->id, 0);
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return;
	}
	/* Monolithic: the body is the blob. */
	x->temp_session = true;
	rc = wh_store_upload_get(reg->store, x->name, x->id, &x->up);
	if (rc != 0) {
		upload_begin_failed(req, x, rc);
		return;
	}
	wh_upload_pin(x->up);
	(void)wh_upload_set_alg(x->up, alg);
	wh_req_read_body(req, upload_body, upload_body_end);
	if (!req->has_body)
		return; /* on_body_end fires when the (empty) message completes */
}

/* Not mounted: what the POST asks besides the mount is done, as if it had
 * asked for no mount. */
static void mount_failed(wh_req *req, struct rctx *x)
{
	x->mount[0] = '\0';
	if (x->fallback_err)
		wh_oci_storage_error(req, x->fallback_err);
	else if (x->body_err)
		wh_oci_storage_error(req, x->body_err); /* its session may be gone already */
	else if (x->up)
		upload_body_end(req); /* a monolithic upload's body is in */
	else
		upload_begin(req, x);
}

static void mounted(int rc, void *arg)
{
	wh_req *req = store_wait_end(arg);
	if (!req)
		return; /* the client went away: the blob is mounted all the same */
	struct rctx *x = req->data;
	if (rc != 0) {
		mount_failed(req, x);
		return;
	}
	blob_created(req, x->name, x->mount); /* a monolithic session is dropped */
}

/* The link and the directories' fsyncs run in the thread pool; answered
 * when they are done. */
static void mount_start(wh_req *req, struct rctx *x)
{
	wh_registry *reg = x->reg;
	struct store_wait *w = wh_calloc(1, sizeof(*w));
	if (store_wait_begin(req, w,
	                     wh_store_blob_mount_async(reg->loop, reg->store, x->name, x->from,
	                                               x->mount, mounted, w)) != 0)
		mount_failed(req, x);
}

/* Would the POST, were the blob not mounted, upload its body (?digest=,
 * valid)? Its body must then be taken before the mount is known. */
static bool posts_the_blob(wh_req *req)
{
	char d[DIGEST_PARAM_MAX];
	return wh_oci_query(req, "digest", d, sizeof(d)) > 0 &&
	       wh_digest_check(d, strlen(d)) == WH_DIGEST_OK;
}

/* Who asks a mount without `from`: the repositories they may read. */
struct reader_of {
	wh_registry *reg;
	const char *user;
};

static bool may_read(void *arg, const char *repo)
{
	struct reader_of *r = arg;
	return wh_auth_may(r->reg->auth, r->user, repo, WH_ACTION_READ);
}

static void upload_start(wh_req *req, wh_registry *reg, const char *name, const char *user)
{
	char mount[DIGEST_PARAM_MAX], from[WH_NAME_MAX + 2], alg_name[16];
	/* ?digest-algorithm= (distribution-spec after 1.1.1): the algorithm
	 * of the digest the closing PUT will name. */
	wh_digest_alg alg = WH_ALG_NONE;
	int qa = wh_oci_query(req, "digest-algorithm", alg_name, sizeof(alg_name));
	if (qa != 0) {
		alg = qa > 0 ? wh_digest_alg_named(alg_name, strlen(alg_name)) : WH_ALG_NONE;
		if (alg == WH_ALG_NONE) {
			wh_oci_error(req, 400, "UNSUPPORTED", "digest algorithm not supported",
			             qa > 0 ? alg_name : NULL);
			return;
		}
	}
	int qm = wh_oci_query(req, "mount", mount, sizeof(mount));
	if (qm < 0) {
		wh_oci_error(req, 400, "DIGEST_INVALID", "invalid digest in mount", NULL);
		return;
	}
	struct rctx *x = NULL;
	if (qm > 0) {
		if (check_digest(req, mount))
			return;
		int qf = wh_oci_query(req, "from", from, sizeof(from));
		if (qf < 0 || (qf > 0 && !wh_name_valid(from, strlen(from)))) {
			wh_oci_error(req, 400, "NAME_INVALID", "invalid repository name in from",
			             NULL);
			return;
		}
		/* No `from`: the spec lets a registry mount from wherever it finds
		 * the blob. Any repository that holds it and that the client may
		 * read will do (the store finds one without walking the root). */
		struct reader_of r = {reg, user};
		if (qf == 0 && wh_store_blob_find(reg->store, mount, may_read, &r, from) == 0)
			qf = 1;
		/* A mount reads from `from`: without that right, the client uploads
		 * the blob like anyone who does not have it. A blob that `from`
		 * does not hold is not mounted either (the mount's own first
		 * check, made here on the loop: a stat). */
		if (qf > 0 && wh_auth_may(reg->auth, user, from, WH_ACTION_READ) &&
		    wh_store_blob_stat(reg->store, from, mount, NULL) == 0) {
			x = rctx_new(req, reg, name);
			x->alg = alg; /* for the upload it falls back on */
			memcpy(x->mount, mount, sizeof(x->mount));
			memcpy(x->from, from, strlen(from) + 1); /* wh_name_valid: it fits */
			/* Mounted in the thread pool. The upload it falls back on
			 * begins from the callback, unless it would take the body:
			 * bytes that arrive meanwhile are not kept, so that upload
			 * begins first, and the mount is tried once the body is in
			 * (mounted, the session is dropped). */
			if (!posts_the_blob(req)) {
				mount_start(req, x);
				return;
			}
		}
		/* Otherwise a normal upload session begins (202). */
	}
	if (!x)
		x = rctx_new(req, reg, name);
	x->alg = alg;
	upload_begin(req, x);
}

static void upload_session(wh_req *req, wh_registry *reg, const char *name, const char *id)
{
	wh_store *st = reg->store;
	wh_upload *up;
	if (strlen(id) != WH_UUID_LEN) {
		wh_oci_error(req, 404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
		             NULL);
		return;
	}
	int rc = wh_store_upload_get(st, name, id, &up);
	if (rc == WH_ENOTFOUND) {
		wh_oci_error(req, 404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry",
		             NULL);
		return;
	}
	if (rc != 0) {
		wh_oci_storage_error(req, rc);
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
			wh_oci_error(req, 409, "BLOB_UPLOAD_INVALID", "upload session is busy",
			             NULL);
			return;
		}
		rctx_new(req, reg, name); /* holds the wait, cleared if the client leaves */
		struct store_wait *w = wh_calloc(1, sizeof(*w));
		rc = store_wait_begin(
		    req, w, wh_store_upload_cancel_async(reg->loop, st, up, session_cancelled, w));
		if (rc != 0)
			wh_oci_storage_error(req, rc);
		return;
	}
	if (strcmp(m, "PATCH") != 0 && strcmp(m, "PUT") != 0) {
		wh_oci_error(req, 405, "UNSUPPORTED", "method not allowed", NULL);
		return;
	}
	const char *cr = wh_req_header(req, "content-range");
	if (cr) {
		int64_t a, z;
		if (!parse_content_range(cr, &a, &z)) {
			wh_oci_error(req, 400, "BLOB_UPLOAD_INVALID", "invalid Content-Range", cr);
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
	memcpy(x->id, id, WH_UUID_LEN + 1);
	if (strcmp(m, "PUT") == 0) {
		if (take_digest_param(req, x))
			return;
		if (!x->has_digest) {
			wh_oci_error(req, 400, "DIGEST_INVALID", "the digest parameter is required",
			             NULL);
			return;
		}
	}
	if (wh_upload_pinned(up)) {
		wh_oci_error(req, 409, "BLOB_UPLOAD_INVALID",
		             "another request is writing to this upload session", NULL);
		return;
	}
	wh_upload_pin(up);
	x->up = up;
	wh_req_read_body(req, upload_body, upload_body_end);
}

/* ---- manifests ---- */

static void manifest_delete_answer(wh_req *req, wh_registry *reg, const char *name, const char *ref,
                                   int rc)
{
	if (rc == WH_ENOTFOUND) {
		wh_serve_manifest_unknown(req, reg->store, name, ref);
	} else if (rc != 0) {
		wh_oci_storage_error(req, rc);
	} else {
		wh_oci_empty(req, 202);
	}
}

static void manifest_deleted(int rc, void *arg)
{
	wh_req *req = store_wait_end(arg);
	if (!req)
		return; /* the client went away: the manifest is deleted all the same */
	struct rctx *x = req->data;
	manifest_delete_answer(req, x->reg, x->name, x->ref, rc);
}

/* index.json rewritten (and the manifest's bytes unlinked) with their
 * fsyncs in the thread pool; answered when done. */
static void manifest_delete(wh_req *req, wh_registry *reg, const char *name, const char *ref)
{
	struct rctx *x = rctx_new(req, reg, name);
	snprintf(x->ref, sizeof(x->ref), "%s", ref);
	struct store_wait *w = wh_calloc(1, sizeof(*w));
	int rc = store_wait_begin(
	    req, w,
	    wh_store_manifest_delete_async(reg->loop, reg->store, name, ref, manifest_deleted, w));
	if (rc != 0)
		manifest_delete_answer(req, reg, name, ref, rc);
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
		wh_oci_error(req, 400, "MANIFEST_BLOB_UNKNOWN",
		             manifest ? "manifest references a manifest unknown to registry"
		                      : "manifest references a blob unknown to registry",
		             dg);
		return -1;
	}
	if (rc != 0) {
		wh_oci_storage_error(req, rc);
		return -1;
	}
	return 0;
}

static void manifest_too_large(wh_req *req)
{
	wh_oci_error(req, 413, "MANIFEST_INVALID", "manifest too large",
	             "limit " WH_MANIFEST_MAX_TEXT);
}

static int manifest_body(wh_req *req, const char *data, size_t len)
{
	struct rctx *x = req->data;
	if (x->len + len > WH_MANIFEST_MAX) {
		manifest_too_large(req);
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
	bool by_digest = wh_ref_is_digest(x->ref, strlen(x->ref));
	/* Pushed by digest, its bytes are hashed with that digest's algorithm
	 * (sha512 included); by tag, with sha256, the spec's default. */
	wh_digest_of(by_digest ? wh_digest_alg_of(x->ref) : WH_ALG_SHA256, x->buf ? x->buf : "",
	             x->len, digest);
	if (by_digest && strcmp(digest, x->ref) != 0) {
		wh_oci_error(req, 400, "DIGEST_INVALID",
		             "the manifest's digest does not match the reference", digest);
		goto out;
	}
	const char *why;
	char detail[WH_MANIFEST_DETAIL_MAX];
	if (wh_manifest_check(x->buf ? x->buf : "", x->len, x->content_type, &m, &why, detail,
	                      sizeof(detail)) != 0) {
		wh_oci_error(req, 400, "MANIFEST_INVALID", why, detail[0] ? detail : NULL);
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
	const char *tags[PUSH_TAGS_MAX + 1];
	for (int i = 0; i < x->n_tags; i++)
		tags[i] = x->tags[i];
	int rc =
	    store_wait_begin(req, w,
	                     wh_store_manifest_put_tags_async(
	                         reg->loop, reg->store, x->name, tags, x->n_tags, digest,
	                         m.media_type, x->buf ? x->buf : "", x->len, manifest_stored, w));
	if (rc != 0)
		wh_oci_storage_error(req, rc);
out:
	cJSON_Delete(m.doc);
}

static void manifest_stored(int rc, void *arg)
{
	wh_req *req = store_wait_end(arg);
	if (!req)
		return; /* the client went away: the manifest is stored all the same */
	struct rctx *x = req->data;
	if (rc == WH_EINUSE) {
		/* A blob it references was collected after it was checked. */
		wh_oci_error(req, 400, "MANIFEST_BLOB_UNKNOWN",
		             "manifest references a blob unknown to registry", NULL);
		return;
	}
	if (rc != 0) {
		wh_oci_storage_error(req, rc);
		return;
	}
	wh_oci_start(req, 201);
	wh_resp_header(req, "Location", "/v2/%s/manifests/%s", x->name, x->digest);
	wh_resp_header(req, "Docker-Content-Digest", "%s", x->digest);
	if (x->subject[0])
		wh_resp_header(req, "OCI-Subject", "%s", x->subject);
	/* One OCI-Tag per tag applied, the spec's answer to ?tag=. A push by
	 * tag alone says nothing new: its tag is the URL's. */
	if (wh_req_query_count(req, "tag") > 0)
		for (int i = 0; i < x->n_tags; i++)
			wh_resp_header(req, "OCI-Tag", "%s", x->tags[i]);
	wh_resp_length(req, 0);
	wh_resp_end(req);
}

/* The tags a push applies: the reference when it is a tag, then each ?tag=
 * (distribution-spec after 1.1.1: "tag" parameters on a push by digest; a
 * push by tag may add more the same way), each once. All are checked before
 * anything is read or stored; returns true when it answered (400
 * TAG_INVALID, 414 for too many). */
static bool take_tags(wh_req *req, struct rctx *x, const char *ref)
{
	int n = wh_req_query_count(req, "tag");
	bool by_digest = wh_ref_is_digest(ref, strlen(ref));
	if (n > PUSH_TAGS_MAX) {
		wh_oci_error(req, 414, "TAG_INVALID", "too many tag parameters",
		             "at most 64 tags a push");
		return true;
	}
	x->tags = wh_req_alloc(req, sizeof(*x->tags) * (size_t)(n + 1));
	x->n_tags = 0;
	if (!by_digest)
		snprintf(x->tags[x->n_tags++], WH_TAG_MAX + 1, "%s", ref);
	for (int i = 0; i < n; i++) {
		char t[WH_TAG_MAX + 2];
		if (!wh_req_query_nth(req, "tag", i, t, sizeof(t))) {
			wh_oci_error(req, 400, "TAG_INVALID", "invalid tag",
			             NULL); /* too long, or a NUL */
			return true;
		}
		if (!wh_tag_valid(t, strlen(t))) {
			wh_oci_error(req, 400, "TAG_INVALID", "invalid tag", t);
			return true;
		}
		bool seen = false;
		for (int j = 0; j < x->n_tags && !seen; j++)
			seen = strcmp(x->tags[j], t) == 0;
		if (!seen)
			memcpy(x->tags[x->n_tags++], t, strlen(t) + 1);
	}
	return false;
}

static void manifest_put(wh_req *req, wh_registry *reg, const char *name, const char *ref)
{
	if (req->content_length > WH_MANIFEST_MAX) {
		manifest_too_large(req);
		return;
	}
	struct rctx *x = rctx_new(req, reg, name);
	if (take_tags(req, x, ref))
		return;
	snprintf(x->ref, sizeof(x->ref), "%s", ref);
	const char *ct = wh_req_header(req, "content-type");
	snprintf(x->content_type, sizeof(x->content_type), "%s", ct ? ct : "");
	wh_req_read_body(req, manifest_body, manifest_put_end);
}

/* ---- listings ---- */

static void catalog_wait_done(wh_req *req, wh_req_hook *hook)
{
	struct catalog_wait *cw = WH_CONTAINER_OF(hook, struct catalog_wait, gone);
	wh_list_remove(&cw->link);
	free(cw->user);
	free(cw);
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
	if (wh_oci_page_params(req, &n, last, sizeof(last), &has_last))
		return;
	if (!wh_store_catalog_loaded(reg->store) && reg->scan) {
		struct catalog_wait *cw = wh_calloc(1, sizeof(*cw));
		cw->req = req;
		cw->user = user ? wh_strdup(user) : NULL;
		wh_list_insert_head(&reg->waiting, &cw->link);
		wh_req_on_done(req, &cw->gone, catalog_wait_done);
		return; /* answered when the scan is loaded */
	}
	char **repos = NULL;
	int count = 0;
	bool more = false;
	bool filter = wh_auth_filters(reg->auth);
	int rc = wh_store_repos(reg->store, has_last ? last : NULL, filter ? -1 : n, &repos, &count,
	                        &more);
	if (rc != 0) {
		wh_oci_storage_error(req, rc);
		return;
	}
	if (filter)
		catalog_filter(reg, user, repos, &count, n, &more);
	wh_oci_list(req, "/v2/_catalog", "repositories", NULL, repos, count, more, n);
	wh_strv_free(repos, count);
}

static void referrers(wh_req *req, wh_registry *reg, const char *name, const char *digest)
{
	if (check_digest(req, digest))
		return;
	char at[WH_MEDIA_TYPE_MAX + 1];
	if (wh_oci_query(req, "artifactType", at, sizeof(at)) < 0) {
		wh_oci_error(req, 400, "UNSUPPORTED", "artifactType is too long", NULL);
		return;
	}
	wh_sync_map map;
	if (reg->sync && wh_sync_map_name(reg->sync, name, &map))
		wh_sync_referrers(reg->sync, req, name, digest, &map);
	else
		wh_serve_referrers(req, reg->store, name, digest, NULL);
}

/* ---- dispatch ---- */

static bool is(const wh_req *req, const char *m)
{
	return strcmp(req->method, m) == 0;
}

/* The content phase for the routes of the API: the route's handler, once
 * the access phases let the request through. */
static bool handle(void *state, wh_call *call)
{
	wh_registry *reg = state;
	wh_req *req = call->req;
	const char *user = call->user;
	const wh_route_kind r = call->route.kind;
	if (r == WH_ROUTE_NONE)
		return false; /* not ours: the pipeline says there is no such route */
	char name[WH_NAME_MAX + 1];
	const char *ref = call->route.ref;
	memcpy(name, call->route.name, sizeof(name));
	if (r == WH_ROUTE_BASE) {
		if (!is(req, "GET") && !is(req, "HEAD")) {
			wh_oci_method_not_allowed(req);
			return true;
		}
		static const char empty[] = "{}";
		wh_oci_start(req, 200);
		wh_resp_header(req, "Content-Type", "application/json");
		wh_auth_base_headers(reg->auth, req);
		wh_resp_length(req, sizeof(empty) - 1);
		wh_resp_write(req, empty, sizeof(empty) - 1);
		wh_resp_end(req);
		return true;
	}
	if (r == WH_ROUTE_CATALOG) {
		if (!is(req, "GET") && !is(req, "HEAD"))
			wh_oci_method_not_allowed(req);
		else
			catalog(req, reg, user);
		return true;
	}
	if (!wh_name_storable(name)) {
		wh_oci_error(req, 400, "NAME_INVALID", "invalid repository name", NULL);
		return true;
	}
	/* containerd, using us as a mirror, says for which registry (?ns=host):
	 * the name is then that registry's, under its sync destination, so one
	 * endpoint mirrors several registries. Without ns nothing changes. */
	char ns[256], mapped[WH_NAME_MAX + 1];
	if ((r == WH_ROUTE_MANIFEST || r == WH_ROUTE_BLOB) && reg->sync &&
	    wh_req_query(req, "ns", ns, sizeof(ns)) &&
	    wh_sync_ns_name(reg->sync, ns, name, mapped, sizeof(mapped)) &&
	    wh_name_storable(mapped))
		memcpy(name, mapped, strlen(mapped) + 1);

	bool is_digest;
	wh_sync_map map;
	bool read = is(req, "GET") || is(req, "HEAD");
	switch (r) {
	case WH_ROUTE_MANIFEST:
		if (check_reference(req, ref, &is_digest))
			break;
		if (read && reg->sync && wh_sync_map_name(reg->sync, name, &map))
			wh_sync_manifest(reg->sync, req, name, ref, &map);
		else if (read)
			wh_serve_manifest(req, reg->store, name, ref);
		else if (is(req, "PUT"))
			manifest_put(req, reg, name, ref);
		else if (is(req, "DELETE"))
			manifest_delete(req, reg, name, ref);
		else
			wh_oci_method_not_allowed(req);
		break;
	case WH_ROUTE_BLOB:
		if (check_digest(req, ref))
			break;
		if (read && reg->sync && wh_sync_map_name(reg->sync, name, &map))
			wh_sync_blob(reg->sync, req, name, ref, &map);
		else if (read)
			wh_serve_blob(req, reg->store, name, ref);
		else if (is(req, "DELETE"))
			blob_delete(req, reg, name, ref);
		else
			wh_oci_method_not_allowed(req);
		break;
	case WH_ROUTE_UPLOAD_START:
		if (is(req, "POST"))
			upload_start(req, reg, name, user);
		else
			wh_oci_method_not_allowed(req);
		break;
	case WH_ROUTE_UPLOAD:
		upload_session(req, reg, name, ref);
		break;
	case WH_ROUTE_TAGS:
		if (read && reg->sync && wh_sync_map_name(reg->sync, name, &map)) {
			int n;
			char last[WH_TAG_MAX + 2];
			bool has_last;
			if (!wh_oci_page_params(req, &n, last, sizeof(last), &has_last))
				wh_sync_tag_list(reg->sync, req, name, &map);
		} else if (read) {
			wh_serve_tags(req, reg->store, name, NULL);
		} else {
			wh_oci_method_not_allowed(req);
		}
		break;
	case WH_ROUTE_REFERRERS:
		if (read)
			referrers(req, reg, name, ref);
		else
			wh_oci_method_not_allowed(req);
		break;
	default: /* the kinds above the switch */
		break;
	}
	return true;
}

const wh_module wh_registry_module = {
    .name = "registry",
    .init = module_init,
    .free = module_free,
    .handle = handle,
};
