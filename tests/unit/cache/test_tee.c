/* The blob tee of the pull-through cache (src/cache/sync.c), driven through
 * its public API on one libuv loop, with no server process and no network
 * beyond 127.0.0.1:
 *
 *  - the upstream is a wh_server on 127.0.0.1 (port 0) whose handler serves
 *    /v2/lib/app/blobs/<digest> as the test says: hold the head, send bytes
 *    up to an offset and pause, reset the connection, flip the last byte,
 *    answer a Range with a 206, a 200 or a 500; and /v2/lib/app/manifests/<tag>,
 *    an image manifest declaring a blob's size. It counts what it is asked;
 *  - the cache is a wh_store on a temp dir and a wh_sync whose one registry
 *    is that upstream (onDemand, content "**" under /mirror);
 *  - the clients are connections of a second wh_server, adopted from
 *    socketpairs (as tests/unit/net/test_http.c does), whose handler hands
 *    every /v2/<name>/blobs/<digest> to wh_sync_blob; the test reads each
 *    client's end with llhttp at its own pace (or not at all);
 *  - the store puts what a fetch brings in place in libuv's thread pool: a
 *    test may hold every thread of it (pool_hold) to see what clients get
 *    before the store has it;
 *  - a full disk is a small tmpfs (mounted by the test: root only, else
 *    those tests are skipped) whose room a filler file takes, and the
 *    room-making hook (wh_sync_set_make_room) is the test's: it removes
 *    the filler, or not, and says so at once, later, or never.
 *
 * Every wait is a few turns of the loop with a deadline; a wait that runs
 * out is a failed check. Each test builds all of it afresh and ends with
 * every handle closed and the temp dir removed.
 *
 * Environment: WHARF_TEE_ONLY=<name> runs one test; WHARF_TEST_LOG=1 logs
 * at debug to stderr. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <llhttp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "pool_hold.h"
#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/cache/sync.h"
#include "wharf/net/http.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/ref.h"
#include "wharf/store/store.h"

#define UPSTREAM_NAME "lib/app"
#define LOCAL_NAME    "mirror/lib/app" /* content rule: "**" under destination /mirror */
#define BLOB_LEN      ((int64_t)(1024 * 1024 + 123))
#define NO_LIMIT      INT64_MAX
#define MAX_CLIENTS   8
#define MAX_BLOBS     4
#define MAX_GETS      16

static uv_loop_t loop;
static wh_http_settings hcfg;

/* ---- bounded waits ----
 *
 * The guard timer is unreferenced: it wakes a blocked turn of the loop at the
 * deadline without keeping the loop alive, so "nothing left on the loop" can
 * be one of the conditions waited for. */

static uv_timer_t guard;
static uint64_t deadline;

static void guard_cb(uv_timer_t *t)
{
	(void)t;
}

static void wait_begin(int ms)
{
	uv_update_time(&loop);
	deadline = uv_now(&loop) + (uint64_t)ms;
	uv_timer_start(&guard, guard_cb, (uint64_t)ms, 0);
}

/* One turn of the loop; false once the deadline has passed. */
static bool wait_turn(void)
{
	uv_update_time(&loop);
	if (uv_now(&loop) >= deadline)
		return false;
	uv_run(&loop, UV_RUN_ONCE);
	return true;
}

static void wait_end(void)
{
	uv_timer_stop(&guard);
}

/* Run the loop until cond holds, for at most ms; evaluates to cond. */
#define WAIT(cond, ms)                                                                             \
	__extension__({                                                                            \
		wait_begin(ms);                                                                    \
		while (!(cond) && wait_turn()) {                                                   \
		}                                                                                  \
		wait_end();                                                                        \
		(bool)(cond);                                                                      \
	})

/* Run the loop for ms, whatever happens (to see that something does not). */
static void run_for(int ms)
{
	wait_begin(ms);
	while (wait_turn()) {
	}
	wait_end();
}

/* ---- libuv's thread pool, held ----
 *
 * Every thread of the pool runs a job that waits for pool_release: the
 * store's operations queued meanwhile (it takes jobs in order) wait too. */

static void pool_hold(void)
{
	held_pool_hold(&loop);
}

static void pool_release(void)
{
	held_pool_release();
	CHECK(WAIT(held_pool.done == held_pool.n, 2000));
	held_pool_free();
}

/* ---- blobs ---- */

struct blob {
	char *data;
	int64_t len;
	char digest[WH_DIGEST_LEN + 1];
};

/* ---- the upstream ---- */

enum range_mode {
	RANGE_206,     /* as a registry does */
	RANGE_IGNORED, /* 200 with the whole body, as a server without ranges */
	RANGE_500,     /* the resume refused */
};

/* A blob response the upstream is sending, from the request's memory. */
struct up_resp {
	struct up_resp *next;
	wh_req *req;
	wh_req_hook hook;
	const struct blob *b;
	int status;
	int64_t pos, end; /* the next byte to send, one past the last */
	bool started;     /* the head has been sent */
	bool finished;    /* ended, cut, or gone: nothing more is sent */
};

static struct {
	wh_server *srv;
	struct blob blobs[MAX_BLOBS];
	int n_blobs;
	/* What the test says. */
	bool hold;     /* do not answer yet */
	int64_t allow; /* send no byte at or past this offset of the blob (a pause) */
	bool corrupt;  /* the last byte of a blob goes out flipped */
	enum range_mode range_mode;
	char tag[32];   /* the one tag it has ("" none), */
	char *manifest; /* its manifest */
	char manifest_digest[WH_DIGEST_LEN + 1];
	/* What happened. */
	int gets;                  /* blob GETs */
	int heads;                 /* blob HEADs */
	int manifest_reqs;         /* manifest HEADs and GETs */
	char ranges[MAX_GETS][64]; /* the Range header of each, "" without */
	int others;                /* any other request */
	int sent_whole;            /* responses sent to their last byte */
	int cuts;                  /* responses reset by up_cut */
	struct up_resp *resps;     /* being sent */
} up;

static struct blob *blob_add(int64_t len, uint32_t seed)
{
	if (up.n_blobs == MAX_BLOBS) {
		fprintf(stderr, "more than %d blobs in a test\n", MAX_BLOBS);
		exit(2);
	}
	struct blob *b = &up.blobs[up.n_blobs++];
	uint32_t x = seed * 2654435761u + 1;
	b->data = wh_malloc((size_t)len);
	b->len = len;
	for (int64_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b->data[i] = (char)(x >> 24);
	}
	wh_sha256_digest(b->data, (size_t)len, b->digest);
	return b;
}

static void answer_empty(wh_req *req, int status)
{
	wh_resp_start(req, status);
	wh_resp_length(req, 0);
	wh_resp_end(req);
}

static void up_resp_unlink(struct up_resp *r)
{
	for (struct up_resp **pp = &up.resps; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	r->finished = true;
}

static void up_resp_done(wh_req *req, wh_req_hook *hook)
{
	(void)req;
	up_resp_unlink(WH_CONTAINER_OF(hook, struct up_resp, hook));
}

/* Send what the test allows now. */
static void up_pump(struct up_resp *r)
{
	wh_req *req = r->req;
	if (r->finished || up.hold)
		return;
	if (!r->started) {
		r->started = true;
		wh_resp_start(req, r->status);
		wh_resp_header(req, "Content-Type", "application/octet-stream");
		wh_resp_header(req, "Docker-Content-Digest", "%s", r->b->digest);
		if (r->status == 206)
			wh_resp_header(req, "Content-Range", "bytes %lld-%lld/%lld",
			               (long long)r->pos, (long long)r->end - 1,
			               (long long)r->b->len);
		wh_resp_length(req, r->end - r->pos);
	}
	char buf[16384];
	while (r->pos < r->end && r->pos < up.allow && wh_resp_can_write(req)) {
		int64_t n = WH_MIN((int64_t)sizeof(buf), WH_MIN(r->end, up.allow) - r->pos);
		memcpy(buf, r->b->data + r->pos, (size_t)n);
		if (up.corrupt && r->pos + n == r->b->len)
			buf[n - 1] ^= 0x5a;
		wh_resp_write(req, buf, (size_t)n);
		r->pos += n;
	}
	if (r->pos == r->end) {
		up_resp_unlink(r);
		up.sent_whole++;
		wh_resp_end(req);
	}
}

static void up_writable(wh_req *req)
{
	for (struct up_resp *r = up.resps; r; r = r->next) {
		if (r->req == req) {
			up_pump(r);
			return;
		}
	}
}

/* The test changed what is allowed: every response in progress goes on. */
static void up_kick(void)
{
	for (struct up_resp *r = up.resps, *next; r; r = next) {
		next = r->next;
		up_pump(r);
	}
}

/* Reset every response in progress mid-body. */
static void up_cut(void)
{
	while (up.resps) {
		struct up_resp *r = up.resps;
		up_resp_unlink(r);
		up.cuts++;
		wh_req_abort(r->req);
	}
}

/* The upstream's tag: an image manifest whose one layer is b, of the size
 * declared (which may be a lie). */
static void up_set_manifest(const char *tag, const struct blob *b, int64_t declared)
{
	char cfg[WH_DIGEST_LEN + 1], *m = wh_malloc(1024);
	wh_sha256_digest("{}", 2, cfg);
	FMT(m, 1024,
	    "{\"schemaVersion\":2,\"mediaType\":\"" WH_MT_OCI_MANIFEST "\","
	    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
	    "\"digest\":\"%s\",\"size\":2},"
	    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
	    "\"digest\":\"%s\",\"size\":%lld}]}",
	    cfg, b->digest, (long long)declared);
	free(up.manifest);
	up.manifest = m;
	FMT(up.tag, sizeof(up.tag), "%s", tag);
	wh_sha256_digest(m, strlen(m), up.manifest_digest);
}

static void up_manifest(wh_req *req, const char *ref)
{
	up.manifest_reqs++;
	if (!up.manifest || (strcmp(ref, up.tag) != 0 && strcmp(ref, up.manifest_digest) != 0)) {
		answer_empty(req, 404);
		return;
	}
	size_t len = strlen(up.manifest);
	wh_resp_start(req, 200);
	wh_resp_header(req, "Content-Type", WH_MT_OCI_MANIFEST);
	wh_resp_header(req, "Docker-Content-Digest", "%s", up.manifest_digest);
	wh_resp_length(req, (int64_t)len);
	wh_resp_write(req, up.manifest, len); /* nothing for a HEAD */
	wh_resp_end(req);
}

static void up_handler(wh_req *req, void *ctx)
{
	(void)ctx;
	static const char prefix[] = "/v2/" UPSTREAM_NAME "/blobs/";
	static const char mprefix[] = "/v2/" UPSTREAM_NAME "/manifests/";
	const struct blob *b = NULL;
	if (strncmp(req->path, mprefix, sizeof(mprefix) - 1) == 0) {
		up_manifest(req, req->path + sizeof(mprefix) - 1);
		return;
	}
	if (strncmp(req->path, prefix, sizeof(prefix) - 1) == 0)
		for (int i = 0; i < up.n_blobs; i++)
			if (strcmp(req->path + sizeof(prefix) - 1, up.blobs[i].digest) == 0)
				b = &up.blobs[i];
	if (b && req->is_head) {
		up.heads++;
		wh_resp_start(req, 200);
		wh_resp_header(req, "Docker-Content-Digest", "%s", b->digest);
		wh_resp_length(req, b->len);
		wh_resp_end(req);
		return;
	}
	if (!b || strcmp(req->method, "GET") != 0) {
		up.others++;
		answer_empty(req, 404);
		return;
	}
	const char *range = wh_req_header(req, "Range");
	if (up.gets < MAX_GETS)
		FMT(up.ranges[up.gets], sizeof(up.ranges[0]), "%s", range ? range : "");
	up.gets++;

	if (range && up.range_mode == RANGE_500) {
		answer_empty(req, 500);
		return;
	}
	struct up_resp *r = wh_req_alloc(req, sizeof(*r));
	r->req = req;
	r->b = b;
	r->status = 200;
	r->end = b->len;
	int64_t start, end, a, z;
	if (range && up.range_mode == RANGE_206 && wh_req_range(req, &start, &end)) {
		if (!wh_range_resolve(start, end, b->len, &a, &z)) {
			answer_empty(req, 416);
			return;
		}
		r->status = 206;
		r->pos = a;
		r->end = z + 1;
	}
	wh_req_on_done(req, &r->hook, up_resp_done);
	req->on_writable = up_writable;
	r->next = up.resps;
	up.resps = r;
	up_pump(r);
}

/* ---- the cache: store, sync, and the server the clients talk to ---- */

static struct {
	char root[64];
	wh_store *store;
	wh_sync_settings scfg;
	wh_sync *sync;
	wh_server *srv;
	int handled;  /* client requests handed to wh_sync_blob */
	int over;     /* of those, requests over (answered, or the client gone) */
	int srv_down; /* servers whose shutdown is over */
} env;

static void req_over(wh_req *req, wh_req_hook *hook)
{
	(void)req;
	(void)hook;
	env.over++;
}

/* The last "/<what>/" of path, or NULL. */
static const char *last_part(const char *path, const char *what)
{
	const char *at = NULL;
	for (const char *s = strstr(path, what); s; s = strstr(s + 1, what))
		at = s;
	return at;
}

/* /v2/<name>/blobs/<digest> to wh_sync_blob, /v2/<name>/manifests/<ref> to
 * wh_sync_manifest: what the registry does for a synced name not in the
 * store. */
static void cache_handler(wh_req *req, void *ctx)
{
	(void)ctx;
	char name[WH_NAME_MAX + 1];
	const char *p = req->path;
	const char *blob = last_part(p, "/blobs/"), *manifest = last_part(p, "/manifests/");
	const char *at = blob ? blob : manifest;
	const char *ref = blob ? blob + 7 : manifest ? manifest + 11 : NULL;
	wh_sync_map map;
	if (strncmp(p, "/v2/", 4) != 0 || !at || at - (p + 4) > WH_NAME_MAX ||
	    (blob && wh_digest_check(ref, strlen(ref)) != WH_DIGEST_OK)) {
		answer_empty(req, 404);
		return;
	}
	memcpy(name, p + 4, (size_t)(at - (p + 4)));
	name[at - (p + 4)] = '\0';
	if (!wh_sync_map_name(env.sync, name, &map)) {
		answer_empty(req, 404);
		return;
	}
	env.handled++;
	wh_req_on_done(req, wh_req_alloc(req, sizeof(wh_req_hook)), req_over);
	if (blob)
		wh_sync_blob(env.sync, req, name, ref, &map);
	else
		wh_sync_manifest(env.sync, req, name, ref, &map);
}

static bool blob_stored_in(const char *repo, const struct blob *b)
{
	int64_t size = -1;
	return wh_store_blob_stat(env.store, repo, b->digest, &size) == 0 && size == b->len;
}

static bool blob_stored(const struct blob *b)
{
	return blob_stored_in(LOCAL_NAME, b);
}

static bool manifest_stored(const char *ref)
{
	wh_manifest m;
	if (wh_store_manifest_get(env.store, LOCAL_NAME, ref, &m) != 0)
		return false;
	wh_manifest_free(&m);
	return true;
}

/* Temp files left in the store (a dropped fetch must leave none). */
static int tmp_files(void)
{
	char path[128];
	FMT(path, sizeof(path), "%s/.wharf/tmp", env.root);
	DIR *d = opendir(path);
	int n = 0;
	if (!d)
		return 0;
	for (struct dirent *e; (e = readdir(d));)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

/* ---- the clients ---- */

struct client {
	int fd; /* the test's end; -1 once closed */
	uv_poll_t poll;
	bool eof; /* the connection ended (closed or reset by the cache) */
	llhttp_t parser;
	bool parse_error;
	int status;
	bool is_head;  /* asked with HEAD: the response has no body */
	bool complete; /* llhttp saw the whole response, as its framing says */
	char field[64], value[256];
	size_t field_len, value_len;
	char clen[32], digest[WH_DIGEST_LEN + 8], crange[96], etag[96], cache_control[96];
	char *body;
	size_t body_len, body_cap;
};

static struct client cls[MAX_CLIENTS];
static int n_cls;
static llhttp_settings_t parse_settings;

static int c_field(llhttp_t *p, const char *at, size_t len)
{
	struct client *c = p->data;
	size_t n = WH_MIN(len, sizeof(c->field) - 1 - c->field_len);
	memcpy(c->field + c->field_len, at, n);
	c->field_len += n;
	c->field[c->field_len] = '\0';
	return 0;
}

static int c_value(llhttp_t *p, const char *at, size_t len)
{
	struct client *c = p->data;
	size_t n = WH_MIN(len, sizeof(c->value) - 1 - c->value_len);
	memcpy(c->value + c->value_len, at, n);
	c->value_len += n;
	c->value[c->value_len] = '\0';
	return 0;
}

static int c_value_done(llhttp_t *p)
{
	struct client *c = p->data;
	if (strcasecmp(c->field, "Content-Length") == 0)
		FMT(c->clen, sizeof(c->clen), "%s", c->value);
	else if (strcasecmp(c->field, "Docker-Content-Digest") == 0)
		FMT(c->digest, sizeof(c->digest), "%s", c->value);
	else if (strcasecmp(c->field, "Content-Range") == 0)
		FMT(c->crange, sizeof(c->crange), "%s", c->value);
	else if (strcasecmp(c->field, "ETag") == 0)
		FMT(c->etag, sizeof(c->etag), "%s", c->value);
	else if (strcasecmp(c->field, "Cache-Control") == 0)
		FMT(c->cache_control, sizeof(c->cache_control), "%s", c->value);
	c->field_len = c->value_len = 0;
	c->field[0] = c->value[0] = '\0';
	return 0;
}

static int c_headers_done(llhttp_t *p)
{
	struct client *c = p->data;
	c->status = p->status_code;
	return c->is_head ? 1 : 0; /* 1: no body follows */
}

static int c_body(llhttp_t *p, const char *at, size_t len)
{
	struct client *c = p->data;
	wh_buf_append(&c->body, &c->body_len, &c->body_cap, at, len);
	return 0;
}

static int c_complete(llhttp_t *p)
{
	struct client *c = p->data;
	c->complete = true;
	return 0;
}

static void client_read(struct client *c)
{
	char buf[65536];
	while (c->fd >= 0 && !c->eof) {
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			c->eof = true; /* closed, or reset (ECONNRESET) */
			uv_poll_stop(&c->poll);
			return;
		}
		if (!c->parse_error && llhttp_execute(&c->parser, buf, (size_t)n) != HPE_OK) {
			fprintf(stderr, "client %d: bad response: %s\n", (int)(c - cls),
			        llhttp_get_error_reason(&c->parser));
			c->parse_error = true;
		}
	}
}

static void client_cb(uv_poll_t *h, int status, int events)
{
	(void)status;
	(void)events;
	client_read(h->data);
}

/* A client asking for path with method (and a range when range is not NULL:
 * the Range header's value). sndbuf > 0: the cache's end of the connection
 * gets that send buffer, so that a client that does not read holds it up at
 * once. */
static struct client *client_req(const char *method, const char *path, const char *range,
                                 int sndbuf)
{
	if (n_cls == MAX_CLIENTS) {
		fprintf(stderr, "more than %d clients in a test\n", MAX_CLIENTS);
		exit(2);
	}
	struct client *c = &cls[n_cls++];
	int sv[2];
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
		perror("socketpair");
		exit(2);
	}
	if (sndbuf > 0)
		CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0);
	CHECK(wh_server_adopt(env.srv, sv[0]) == 0);
	c->fd = sv[1];
	c->is_head = strcmp(method, "HEAD") == 0;
	llhttp_init(&c->parser, HTTP_RESPONSE, &parse_settings);
	c->parser.data = c;
	uv_poll_init(&loop, &c->poll, c->fd);
	c->poll.data = c;
	uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, client_cb);
	char rq[512], rh[128] = "";
	if (range)
		FMT(rh, sizeof(rh), "Range: %s\r\n", range);
	FMT(rq, sizeof(rq), "%s %s HTTP/1.1\r\nHost: tee\r\n%s\r\n", method, path, rh);
	CHECK(send(c->fd, rq, strlen(rq), MSG_NOSIGNAL) == (ssize_t)strlen(rq));
	return c;
}

static struct client *client_ask(const struct blob *b, const char *method, const char *range,
                                 int sndbuf)
{
	char path[WH_NAME_MAX + WH_DIGEST_LEN + 16];
	FMT(path, sizeof(path), "/v2/%s/blobs/%s", LOCAL_NAME, b->digest);
	return client_req(method, path, range, sndbuf);
}

static struct client *client_get(const struct blob *b, const char *range, int sndbuf)
{
	return client_ask(b, "GET", range, sndbuf);
}

/* Stop reading: the cache's writes pile up in the socket, then block. */
static void client_pause(struct client *c)
{
	uv_poll_stop(&c->poll);
}

static void client_resume(struct client *c)
{
	uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, client_cb);
}

/* The client goes away. */
static void client_close(struct client *c)
{
	if (c->fd < 0)
		return;
	uv_close((uv_handle_t *)&c->poll, NULL);
	close(c->fd);
	c->fd = -1;
}

/* Bytes sent to the client that it has not read. */
static int client_unread(const struct client *c)
{
	int n = 0;
	return c->fd >= 0 && ioctl(c->fd, FIONREAD, &n) == 0 ? n : -1;
}

/* c got exactly bytes [a, a + len) of b, as a whole response. */
static bool body_is(const struct client *c, const struct blob *b, int64_t a, int64_t len)
{
	return c->complete && !c->parse_error && (int64_t)c->body_len == len &&
	       memcmp(c->body, b->data + a, (size_t)len) == 0;
}

/* What c got so far are the right bytes, from offset a of b. */
static bool prefix_ok(const struct client *c, const struct blob *b, int64_t a)
{
	return !c->parse_error && a + (int64_t)c->body_len <= b->len &&
	       (c->body_len == 0 || memcmp(c->body, b->data + a, c->body_len) == 0);
}

/* A whole, verified answer for the whole blob. */
static void check_whole(const struct client *c, const struct blob *b)
{
	char len[32];
	FMT(len, sizeof(len), "%lld", (long long)b->len);
	CHECK(c->status == 200);
	CHECK_STREQ(c->clen, len);
	CHECK_STREQ(c->digest, b->digest);
	CHECK(body_is(c, b, 0, b->len));
}

/* A 206 for [a, z] of b. */
static void check_range(const struct client *c, const struct blob *b, int64_t a, int64_t z)
{
	char len[32], cr[96];
	FMT(len, sizeof(len), "%lld", (long long)(z - a + 1));
	FMT(cr, sizeof(cr), "bytes %lld-%lld/%lld", (long long)a, (long long)z, (long long)b->len);
	CHECK(c->status == 206);
	CHECK_STREQ(c->clen, len);
	CHECK_STREQ(c->crange, cr);
	CHECK_STREQ(c->digest, b->digest);
	CHECK(body_is(c, b, a, z - a + 1));
}

/* A response the cache began and cut: the client cannot take it for whole. */
static void check_cut(const struct client *c, const struct blob *b, int64_t a, int64_t want)
{
	CHECK(c->eof);
	CHECK(!c->complete);
	CHECK((int64_t)c->body_len < want);
	CHECK(prefix_ok(c, b, a));
}

/* ---- each test's world ---- */

static void srv_down(void *arg)
{
	(void)arg;
	env.srv_down++;
}

/* The store's root is a new directory under parent. */
static void setup_in(const char *parent)
{
	char url[64], err[256] = "";
	memset(&env, 0, sizeof(env));
	memset(&up, 0, sizeof(up));
	memset(cls, 0, sizeof(cls));
	n_cls = 0;
	up.allow = NO_LIMIT;

	FMT(env.root, sizeof(env.root), "%s/wharf-test-tee-XXXXXX", parent);
	if (!mkdtemp(env.root)) {
		perror("mkdtemp");
		exit(2);
	}
	CHECK(wh_store_open(env.root, true, &env.store) == 0);
	CHECK(wh_server_start(&loop, &hcfg, NULL, up_handler, NULL, &up.srv) == 0);
	FMT(url, sizeof(url), "http://127.0.0.1:%d", wh_server_port(up.srv));

	/* One registry as the config parser would leave it (sync.c's
	 * registry_item and check_registry): no retries, Zot's timeouts. */
	wh_sync_settings *s = &env.scfg;
	wh_sync_settings_init(s);
	s->enable = true;
	s->n_registries = 1;
	s->registries = wh_calloc(2, sizeof(*s->registries));
	wh_sync_registry *r = &s->registries[0];
	r->urls = wh_calloc(2, sizeof(*r->urls));
	r->urls[0] = wh_strdup(url);
	r->n_urls = 1;
	r->on_demand = true;
	r->tls_verify = true;
	r->max_retries = 0;
	r->retry_delay_ms = 5 * WH_MINUTE_MS;
	r->max_retry_delay_ms = r->retry_delay_ms;
	r->manifest_check_interval_ms = -1;
	r->sync_timeout_ms = 3 * WH_HOUR_MS;
	r->response_header_timeout_ms = 4000;
	r->content = wh_calloc(1, sizeof(*r->content));
	r->content[0].prefix = wh_strdup("**");
	r->content[0].destination = wh_strdup("/mirror");
	r->n_content = 1;
	r->content_given = true;
	wh_sync_settings_finish(s);
	CHECK(wh_sync_new(&loop, s, env.store, &env.sync, err, sizeof(err)) == 0);
	if (!env.sync) {
		fprintf(stderr, "wh_sync_new: %s\n", err);
		exit(2);
	}
	CHECK(wh_server_start(&loop, &hcfg, NULL, cache_handler, NULL, &env.srv) == 0);
}

static void setup(void)
{
	setup_in("/tmp");
}

/* Everything goes, and nothing of it is left on the loop or on disk. */
static void teardown(void)
{
	for (int i = 0; i < n_cls; i++)
		client_close(&cls[i]);
	/* Before the servers: it may still cut its readers' connections. */
	if (env.sync)
		wh_sync_free(env.sync);
	/* The upstream's own requests: none may hang on a pause of ours (only
	 * its unreferenced shutdown timer would be left to end them). */
	up_cut();
	wh_server_shutdown(env.srv, srv_down, NULL);
	wh_server_shutdown(up.srv, srv_down, NULL);
	CHECK(WAIT(env.srv_down == 2 && !uv_loop_alive(&loop), 5000));
	if (uv_loop_alive(&loop) || env.srv_down != 2) {
		fprintf(stderr, "srv_down=%d; left on the loop:\n", env.srv_down);
		uv_print_active_handles(&loop, stderr);
	}
	wh_store_close(env.store);
	check_rm_rf(env.root);
	wh_sync_settings_free(&env.scfg);
	for (int i = 0; i < up.n_blobs; i++)
		free(up.blobs[i].data);
	for (int i = 0; i < n_cls; i++)
		free(cls[i].body);
	free(up.manifest);
}

/* ---- the tests ---- */

/* 1. Three clients ask for the same missing blob at once: one GET upstream,
 * three whole answers, one blob in the store. */
static void test_single_flight(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 1);
	struct client *c[3];
	up.hold = true; /* the upstream has the request and says nothing yet */
	for (int i = 0; i < 3; i++)
		c[i] = client_get(b, NULL, 0);
	CHECK(WAIT(env.handled == 3 && up.gets >= 1, 2000));
	run_for(100);
	CHECK(up.gets == 1);
	for (int i = 0; i < 3; i++)
		CHECK(c[i]->status == 0); /* no head before the upstream's */
	up.hold = false;
	up_kick();
	CHECK(WAIT(c[0]->complete && c[1]->complete && c[2]->complete, 3000));
	for (int i = 0; i < 3; i++)
		check_whole(c[i], b);
	CHECK(WAIT(blob_stored(b), 2000));
	CHECK(up.gets == 1);
	CHECK(up.others == 0);
	CHECK_STREQ(up.ranges[0], "");
	teardown();
}

/* 2. The first bytes reach a client while the upstream is paused halfway. */
static void test_streaming(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 2);
	const int64_t half = b->len / 2;
	up.allow = half;
	struct client *c = client_get(b, NULL, 0);
	/* Everything the upstream sent, but possibly the byte held back. */
	CHECK(WAIT((int64_t)c->body_len >= half - 1, 2000));
	run_for(50);
	CHECK(c->status == 200);
	CHECK(c->body_len > 0 && (int64_t)c->body_len <= half);
	CHECK(!c->complete && !c->eof);
	CHECK(prefix_ok(c, b, 0));
	CHECK(!blob_stored(b));
	up.allow = NO_LIMIT;
	up_kick();
	CHECK(WAIT(c->complete, 3000));
	check_whole(c, b);
	CHECK(WAIT(blob_stored(b), 2000));
	CHECK(up.gets == 1);
	teardown();
}

/* 3. The last byte is held back until the digest verifies. The upstream
 * sends every byte right but the last, which it flips: no client (whole
 * blob, a range at the start, a suffix range) ever gets a complete-looking
 * answer; all are cut; nothing is published and no temp file is left. A
 * later request starts a fetch of its own, which verifies. */
static void test_hold_back_mismatch(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 3);
	up.corrupt = true;
	up.allow = b->len - 1; /* all but the last byte; the response stays open */
	struct client *w = client_get(b, NULL, 0);
	struct client *r0 = client_get(b, "bytes=0-99", 0);
	struct client *rt = client_get(b, "bytes=-100", 0);
	CHECK(WAIT((int64_t)w->body_len >= b->len - 2 && r0->body_len >= 99 && rt->body_len >= 98,
	           2000));
	run_for(50);
	CHECK(w->status == 200 && r0->status == 206 && rt->status == 206);
	CHECK(!w->complete && !r0->complete && !rt->complete);
	/* The fetch is a megabyte past it, and still the range's last byte
	 * waits for the digest. */
	CHECK(r0->body_len == 99);
	CHECK(prefix_ok(w, b, 0) && prefix_ok(r0, b, 0) && prefix_ok(rt, b, b->len - 100));

	up.allow = NO_LIMIT; /* the flipped last byte */
	up_kick();
	CHECK(WAIT(w->eof && r0->eof && rt->eof, 3000));
	check_cut(w, b, 0, b->len);
	check_cut(r0, b, 0, 100);
	check_cut(rt, b, b->len - 100, 100);
	run_for(100); /* a publish would have happened by now */
	CHECK(!blob_stored(b));
	CHECK(tmp_files() == 0);
	CHECK(up.gets == 1);

	/* The failed fetch left the table: the next client starts another. */
	up.corrupt = false;
	struct client *again = client_get(b, NULL, 0);
	CHECK(WAIT(again->complete, 3000));
	check_whole(again, b);
	CHECK(up.gets == 2);
	CHECK(WAIT(blob_stored(b), 2000));
	teardown();
}

/* 4. A client that does not read holds up neither the others nor the fetch,
 * and gets the whole body once it reads again. */
static void test_slow_reader(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 4);
	struct client *a = client_get(b, NULL, 0);
	struct client *c = client_get(b, NULL, 0);
	struct client *slow = client_get(b, NULL, 4096);
	client_pause(slow);
	CHECK(WAIT(a->complete && c->complete && blob_stored(b), 3000));
	check_whole(a, b);
	check_whole(c, b);
	CHECK(up.sent_whole == 1 && up.resps == NULL); /* the upstream is done with us */
	/* The slow client holds a small part of it, unread. */
	int unread = client_unread(slow);
	CHECK(unread >= 0 && unread < b->len / 2);
	CHECK(slow->body_len == 0);
	client_resume(slow);
	CHECK(WAIT(slow->complete, 3000));
	check_whole(slow, b);
	CHECK(up.gets == 1);
	teardown();
}

/* 5. A client that leaves mid-fill: the others go on, the fetch finishes and
 * the blob is published; even when the only client leaves. */
static void test_client_leaves(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 5);
	const int64_t half = b->len / 2;
	up.allow = half;
	struct client *a = client_get(b, NULL, 0);
	struct client *gone = client_get(b, NULL, 0);
	struct client *c = client_get(b, NULL, 0);
	CHECK(WAIT((int64_t)a->body_len >= half - 1 && (int64_t)gone->body_len >= half - 1 &&
	               (int64_t)c->body_len >= half - 1,
	           2000));
	client_close(gone);
	/* A little more: the cache's next write to it fails, and it sees it go
	 * while the upstream is still paused. */
	up.allow = half + 65536;
	up_kick();
	CHECK(WAIT(env.over == 1, 2000));
	run_for(50);
	up.allow = NO_LIMIT;
	up_kick();
	CHECK(WAIT(a->complete && c->complete, 3000));
	check_whole(a, b);
	check_whole(c, b);
	CHECK(WAIT(blob_stored(b), 2000));
	CHECK(up.gets == 1);

	/* The only client of a second blob leaves. */
	const struct blob *b2 = blob_add(BLOB_LEN, 55);
	up.allow = half;
	struct client *d = client_get(b2, NULL, 0);
	CHECK(WAIT((int64_t)d->body_len >= half - 1, 2000));
	client_close(d);
	up.allow = half + 65536;
	up_kick();
	CHECK(WAIT(env.over == 4, 2000)); /* a, c, the first one gone, and d */
	run_for(50);
	up.allow = NO_LIMIT;
	up_kick();
	CHECK(WAIT(blob_stored(b2), 3000));
	CHECK(up.gets == 2 && up.sent_whole == 2 && up.cuts == 0);
	teardown();
}

/* 6. Ranges joining a fill: 206 with exactly their bytes, the last one only
 * after the digest verifies; ranges before the upstream's head, behind the
 * fill, ahead of it, across the pause, a suffix, and one past the end (416). */
static void test_ranges_join(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 6);
	const int64_t k = 600000;
	up.hold = true;
	struct client *w = client_get(b, NULL, 0);
	struct client *r0 = client_get(b, "bytes=10-19", 0); /* before the size is known */
	CHECK(WAIT(up.gets == 1 && env.handled == 2, 2000));
	up.hold = false;
	up.allow = k;
	up_kick();
	CHECK(WAIT((int64_t)w->body_len >= k - 1 && r0->body_len >= 9, 2000));
	CHECK(r0->status == 206 && r0->body_len == 9 && !r0->complete);
	struct client *r1 = client_get(b, "bytes=1000-99999", 0);    /* already written */
	struct client *r2 = client_get(b, "bytes=800000-800099", 0); /* ahead of the fill */
	struct client *r3 = client_get(b, "bytes=-100", 0);          /* the end */
	struct client *r4 = client_get(b, "bytes=599000-", 0);       /* across the pause */
	CHECK(WAIT(r1->body_len >= 98999 && r4->body_len >= 999, 2000));
	run_for(50);
	CHECK(r1->status == 206 && r4->status == 206);
	CHECK(r1->body_len == 98999); /* all of it but its last byte */
	CHECK(!r1->complete);
	/* Nothing yet for these (http.c sends a head with the first body byte). */
	CHECK(r2->body_len == 0 && r3->body_len == 0 && !r2->complete && !r3->complete);
	CHECK(prefix_ok(r0, b, 10) && prefix_ok(r1, b, 1000) && prefix_ok(r4, b, 599000));
	/* Past the end: a 416 at once, and the connection stays. */
	struct client *r5 = client_get(b, "bytes=5000000-", 0);
	CHECK(WAIT(r5->complete, 2000));
	char cr[64];
	FMT(cr, sizeof(cr), "bytes */%lld", (long long)b->len);
	CHECK(r5->status == 416);
	CHECK_STREQ(r5->crange, cr);
	CHECK(r5->body_len == 0 && !r5->eof);
	CHECK(up.gets == 1);
	up.allow = NO_LIMIT;
	up_kick();
	CHECK(WAIT(w->complete && r0->complete && r1->complete && r2->complete && r3->complete &&
	               r4->complete,
	           3000));
	check_whole(w, b);
	check_range(r0, b, 10, 19);
	check_range(r1, b, 1000, 99999);
	check_range(r2, b, 800000, 800099);
	check_range(r3, b, b->len - 100, b->len - 1);
	check_range(r4, b, 599000, b->len - 1);
	CHECK(up.gets == 1);
	CHECK(WAIT(blob_stored(b), 2000));
	teardown();
}

/* Pause the upstream at k, wait until the client holds everything fetched
 * (so the fetch has exactly k bytes), then reset the connection. */
static bool cut_at(struct client *c, int64_t from, int64_t k)
{
	up.allow = k;
	up_kick();
	bool ok = WAIT((int64_t)c->body_len >= k - from - 1, 2000);
	up_cut();
	return ok;
}

/* 7. An upstream cut mid-body is resumed with a Range from the byte reached
 * (a 206, or a 200 that is skipped to where we were); the clients see a
 * pause and then the whole body. A refused resume, or a fourth cut, fails
 * the fetch: clients cut, nothing published. */
static void test_resume(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 7);
	struct client *a = client_get(b, NULL, 0);
	struct client *r = client_get(b, "bytes=399000-400999", 0);
	CHECK(cut_at(a, 0, 400000));
	up.allow = NO_LIMIT;
	CHECK(WAIT(up.gets == 2, 2000));
	CHECK_STREQ(up.ranges[1], "bytes=400000-");
	CHECK(WAIT(a->complete && r->complete, 3000));
	check_whole(a, b);
	check_range(r, b, 399000, 400999);
	CHECK(!a->eof && !r->eof);
	CHECK(up.cuts == 1 && up.gets == 2);
	CHECK(WAIT(blob_stored(b), 2000));

	/* An upstream that ignores the Range: the whole body again. */
	up.range_mode = RANGE_IGNORED;
	const struct blob *b2 = blob_add(BLOB_LEN, 77);
	struct client *c2 = client_get(b2, NULL, 0);
	CHECK(cut_at(c2, 0, 300000));
	up.allow = NO_LIMIT;
	CHECK(WAIT(c2->complete, 3000));
	check_whole(c2, b2);
	CHECK(up.gets == 4);
	CHECK_STREQ(up.ranges[3], "bytes=300000-");
	CHECK(WAIT(blob_stored(b2), 2000));

	/* The resume refused: the client is cut. */
	up.range_mode = RANGE_500;
	const struct blob *b3 = blob_add(BLOB_LEN, 777);
	struct client *c3 = client_get(b3, NULL, 0);
	CHECK(cut_at(c3, 0, 300000));
	CHECK(WAIT(c3->eof, 3000));
	check_cut(c3, b3, 0, b3->len);
	CHECK(up.gets == 6);
	run_for(50);
	CHECK(!blob_stored(b3));
	CHECK(tmp_files() == 0);

	/* Cut four times: three resumes, then the fetch fails. */
	up.range_mode = RANGE_206;
	const struct blob *b4 = blob_add(BLOB_LEN, 7777);
	struct client *c4 = client_get(b4, NULL, 0);
	for (int i = 1; i <= 4; i++) {
		CHECK(cut_at(c4, 0, 100000 * i));
		if (i < 4)
			CHECK(WAIT(up.gets == 6 + i + 1, 2000));
	}
	CHECK(WAIT(c4->eof, 3000));
	check_cut(c4, b4, 0, b4->len);
	run_for(50);
	CHECK(up.gets == 6 + 4);
	CHECK_STREQ(up.ranges[9], "bytes=300000-");
	CHECK(!blob_stored(b4));
	CHECK(tmp_files() == 0);
	teardown();
}

/* 8. Shutdown mid-fill (wh_sync_free): the fetch is cancelled, its clients'
 * connections are cut (none takes a part for a whole), the temp file goes,
 * nothing is published, and nothing is left on the loop (teardown). */
static void test_free_mid_fill(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 8);
	const int64_t half = b->len / 2;
	up.allow = half;
	struct client *w = client_get(b, NULL, 0);
	struct client *r = client_get(b, "bytes=100-199", 0);
	struct client *ahead = client_get(b, "bytes=900000-900099", 0);
	CHECK(WAIT((int64_t)w->body_len >= half - 1 && r->body_len >= 99, 2000));
	CHECK(tmp_files() == 1);
	wh_sync_free(env.sync);
	env.sync = NULL;
	CHECK(WAIT(w->eof && r->eof && ahead->eof, 2000));
	check_cut(w, b, 0, b->len);
	check_cut(r, b, 100, 100);
	CHECK(!ahead->complete && ahead->body_len == 0);
	CHECK(tmp_files() == 0);
	CHECK(WAIT(env.over == 3, 2000));
	CHECK(!blob_stored(b));
	teardown();
}

/* 9. A blob fetch is held to the size the image's manifest declared: an
 * upstream whose blob is longer is refused before a byte reaches a client
 * (a 502, nothing stored, no temp file); the same with the right size
 * streams as usual. */
static void test_declared_size(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 10);
	const struct blob *b2 = blob_add(BLOB_LEN, 11);
	up_set_manifest("v1", b, b->len - 1);
	struct client *m = client_req("GET", "/v2/" LOCAL_NAME "/manifests/v1", NULL, 0);
	CHECK(WAIT(m->complete, 2000));
	CHECK(m->status == 200);
	CHECK_STREQ(m->digest, up.manifest_digest);
	struct client *c = client_get(b, NULL, 0);
	CHECK(WAIT(c->complete || c->eof, 2000));
	CHECK(c->status == 502 && c->complete);
	CHECK(up.gets == 1);
	run_for(50);
	CHECK(!blob_stored(b));
	CHECK(tmp_files() == 0);

	up_set_manifest("v2", b2, b2->len);
	struct client *m2 = client_req("GET", "/v2/" LOCAL_NAME "/manifests/v2", NULL, 0);
	CHECK(WAIT(m2->complete, 2000));
	CHECK(m2->status == 200);
	struct client *c2 = client_get(b2, NULL, 0);
	CHECK(WAIT(c2->complete, 3000));
	check_whole(c2, b2);
	CHECK(WAIT(blob_stored(b2), 2000));
	CHECK(up.gets == 2);
	teardown();
}

/* 10. What a fetch brings is put in the store in the thread pool, and the
 * fetch is over only once it is there. With the pool held: a manifest's
 * clients (the first, and one that joins) get nothing, not a 404, until the
 * manifest is stored, then their answer from the store; a verified blob's
 * client has it whole from the fetch's file while the store does not hold
 * it yet, and a client of another repository joins that fetch (no second
 * GET). Released: the blob is in both repositories, no temp file is left. */
static void test_stored_then_answered(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 12);
	char other[WH_NAME_MAX + WH_DIGEST_LEN + 16];
	FMT(other, sizeof(other), "/v2/mirror/other/blobs/%s", b->digest);
	up_set_manifest("v1", b, b->len);
	pool_hold();
	struct client *m = client_req("GET", "/v2/" LOCAL_NAME "/manifests/v1", NULL, 0);
	CHECK(WAIT(up.manifest_reqs == 2, 2000)); /* a HEAD, then the GET */
	run_for(100);
	CHECK(m->status == 0 && !m->eof);
	struct client *m2 = client_req("GET", "/v2/" LOCAL_NAME "/manifests/v1", NULL, 0);
	struct client *c = client_get(b, NULL, 0);
	CHECK(WAIT(c->complete, 3000));
	check_whole(c, b);
	struct client *o = client_req("GET", other, NULL, 0);
	CHECK(WAIT(o->complete, 3000));
	check_whole(o, b);
	run_for(50);
	CHECK(m->status == 0 && m2->status == 0);
	CHECK(!blob_stored(b) && !blob_stored_in("mirror/other", b));
	CHECK(up.gets == 1 && up.manifest_reqs == 2);
	pool_release();
	CHECK(WAIT(m->complete && m2->complete, 2000));
	CHECK(m->status == 200 && m2->status == 200);
	CHECK_STREQ(m->digest, up.manifest_digest);
	CHECK_STREQ(m2->digest, up.manifest_digest);
	CHECK(WAIT(blob_stored(b) && blob_stored_in("mirror/other", b) && tmp_files() == 0, 2000));
	CHECK(up.gets == 1 && up.manifest_reqs == 2);
	teardown();
}

/* 11. Shutdown (wh_sync_free) while the store has a fetch's result: the
 * clients waiting on the manifest are cut; what was being stored is stored
 * all the same (the repository that joined the blob's fetch is not linked),
 * and nothing is left: no temp file, nothing on the loop (teardown), no
 * leak (the sanitizer build). */
static void test_free_while_storing(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 13);
	char other[WH_NAME_MAX + WH_DIGEST_LEN + 16];
	FMT(other, sizeof(other), "/v2/mirror/other/blobs/%s", b->digest);
	up_set_manifest("v1", b, b->len);
	pool_hold();
	struct client *m = client_req("GET", "/v2/" LOCAL_NAME "/manifests/v1", NULL, 0);
	CHECK(WAIT(up.manifest_reqs == 2, 2000));
	run_for(100); /* the manifest's bytes are in: its store is queued */
	struct client *c = client_get(b, NULL, 0);
	CHECK(WAIT(c->complete, 3000));
	struct client *o = client_req("GET", other, NULL, 0);
	CHECK(WAIT(o->complete, 3000));
	wh_sync_free(env.sync);
	env.sync = NULL;
	CHECK(WAIT(m->eof, 2000));
	CHECK(m->status == 0);
	pool_release();
	/* The two run side by side in the pool: either may end first. */
	CHECK(WAIT(blob_stored(b) && manifest_stored("v1") && tmp_files() == 0, 2000));
	CHECK(!blob_stored_in("mirror/other", b));
	teardown();
}

/* A HEAD that joins a fetch in flight is answered at once, before the
 * digest has verified, with the upstream's unverified Content-Length: like a
 * HEAD answered from the upstream's HEAD, it carries no ETag and nothing
 * immutable. (It once did: here the fetch then fails its digest, the GET is
 * cut and nothing is published, but the HEAD had told every cache in front
 * to keep its answer for a year.) */
static void test_head_join_unverified(void)
{
	setup();
	const struct blob *b = blob_add(BLOB_LEN, 99);
	up.corrupt = true;
	struct client *h0 = client_ask(b, "HEAD", NULL, 0); /* no fetch: a HEAD upstream */
	CHECK(WAIT(h0->complete, 2000));
	CHECK(h0->status == 200 && h0->etag[0] == '\0' && h0->cache_control[0] == '\0');
	up.allow = b->len / 2;
	struct client *w = client_get(b, NULL, 0);
	CHECK(WAIT((int64_t)w->body_len >= b->len / 2 - 1, 2000));
	struct client *h1 = client_ask(b, "HEAD", NULL, 0); /* joins the fetch */
	CHECK(WAIT(h1->complete, 2000));
	CHECK(h1->status == 200);
	CHECK_STREQ(h1->clen, h0->clen);
	if (h1->etag[0] || strstr(h1->cache_control, "immutable"))
		fprintf(stderr, "HEAD joining an unverified fetch: ETag: %s, Cache-Control: %s\n",
		        h1->etag, h1->cache_control);
	CHECK(h1->etag[0] == '\0');
	CHECK(strstr(h1->cache_control, "immutable") == NULL);
	up.allow = NO_LIMIT; /* the flipped last byte: the digest fails */
	up_kick();
	CHECK(WAIT(w->eof, 3000));
	CHECK(!w->complete);
	run_for(50);
	CHECK(!blob_stored(b));
	CHECK(up.heads == 1 && up.gets == 1);
	teardown();
}

/* ---- a full disk ---- */

#define FULL_SIZE (4 * 1024 * 1024) /* the tmpfs */

static struct {
	char mnt[64];    /* the tmpfs ("": not mounted) */
	char filler[96]; /* a file on it that takes its room */
} disk;

enum room_mode {
	ROOM_FREE_LATER, /* the filler goes, room made: said from the loop, later */
	ROOM_FREE_NOW,   /* the same, said before make_room returns */
	ROOM_NONE,       /* "made" without freeing anything */
	ROOM_FAIL,       /* no room: done(-ENOSPC) */
	ROOM_REFUSE,     /* make_room returns -1 */
	ROOM_HOLD,       /* done is the test's to call */
};

static struct {
	enum room_mode mode;
	int calls;
	int64_t bytes;
	void (*done)(void *, int);
	void *done_arg;
	uv_timer_t timer;
} room;

/* Write the filler: n bytes, or until the disk is full (n < 0). */
static void filler_write(int64_t n)
{
	static char buf[65536];
	FILE *f = fopen(disk.filler, "wbe");
	CHECK(f != NULL);
	if (!f)
		return;
	memset(buf, 'f', sizeof(buf));
	for (int64_t done = 0; n < 0 || done < n; done += (int64_t)sizeof(buf)) {
		size_t k = n < 0 ? sizeof(buf) : (size_t)WH_MIN((int64_t)sizeof(buf), n - done);
		if (fwrite(buf, 1, k, f) != k || fflush(f) != 0)
			break; /* full */
	}
	fclose(f);
}

static void room_later(uv_timer_t *t)
{
	(void)t;
	room.done(room.done_arg, 0);
}

static int make_room(void *arg, int64_t bytes, void (*done)(void *, int), void *done_arg)
{
	CHECK(arg == &room);
	room.calls++;
	room.bytes = bytes;
	room.done = done;
	room.done_arg = done_arg;
	switch (room.mode) {
	case ROOM_FREE_LATER:
		unlink(disk.filler);
		uv_timer_start(&room.timer, room_later, 20, 0);
		break;
	case ROOM_FREE_NOW:
		unlink(disk.filler);
		done(done_arg, 0);
		break;
	case ROOM_NONE:
		done(done_arg, 0);
		break;
	case ROOM_FAIL:
		done(done_arg, -ENOSPC);
		break;
	case ROOM_REFUSE:
		return -1;
	case ROOM_HOLD:
		break;
	}
	return 0;
}

/* The cache's root on a tmpfs of FULL_SIZE that filler_bytes (< 0: all of
 * it) of a filler take; the room-making hook set when hook. False (the
 * test is skipped) when no tmpfs can be mounted here. */
static bool setup_full(int64_t filler_bytes, bool hook, enum room_mode mode)
{
	char opts[32];
	FMT(disk.mnt, sizeof(disk.mnt), "/tmp/wharf-test-full-XXXXXX");
	if (!mkdtemp(disk.mnt)) {
		perror("mkdtemp");
		exit(2);
	}
	FMT(opts, sizeof(opts), "size=%d", FULL_SIZE);
	if (mount("tmpfs", disk.mnt, "tmpfs", 0, opts) != 0) {
		printf("(skipped: cannot mount a tmpfs: %s) ", strerror(errno));
		rmdir(disk.mnt);
		disk.mnt[0] = '\0';
		return false;
	}
	FMT(disk.filler, sizeof(disk.filler), "%s/filler", disk.mnt);
	setup_in(disk.mnt);
	filler_write(filler_bytes);
	memset(&room, 0, sizeof(room));
	room.mode = mode;
	uv_timer_init(&loop, &room.timer);
	if (hook)
		wh_sync_set_make_room(env.sync, make_room, &room);
	return true;
}

static void teardown_full(void)
{
	uv_close((uv_handle_t *)&room.timer, NULL);
	teardown();
	CHECK(umount2(disk.mnt, MNT_DETACH) == 0);
	rmdir(disk.mnt);
	disk.mnt[0] = '\0';
}

/* A 507 "storage is full" as the spec's JSON error, code UNKNOWN. */
static void check_full(const struct client *c)
{
	CHECK(c->status == 507);
	CHECK(c->complete && !c->parse_error);
	CHECK(c->body && strstr(c->body, "\"code\":\"UNKNOWN\"") &&
	      strstr(c->body, "\"message\":\"storage is full\""));
}

/* 12. A blob that does not fit: its room is claimed when the upstream's
 * head gives its size, before any client's answer begins, so every client
 * (two joined, a HEAD too) gets a 507, not a cut; nothing is left on disk;
 * no room-making hook, no second fetch. Three such fills in a row leave the
 * upstream up (three failed exchanges would take it down): once the filler
 * goes, the next fill is whole. */
static void test_full_disk(void)
{
	if (!setup_full(FULL_SIZE - 512 * 1024, false, ROOM_FAIL))
		return;
	const struct blob *b = blob_add(BLOB_LEN, 20);
	up.hold = true;
	struct client *c[2] = {client_get(b, NULL, 0), client_get(b, NULL, 0)};
	struct client *h = client_ask(b, "HEAD", NULL, 0);
	CHECK(WAIT(env.handled == 3 && up.gets == 1, 2000));
	up.hold = false;
	up_kick();
	CHECK(WAIT(c[0]->complete && c[1]->complete && h->complete, 3000));
	check_full(c[0]);
	check_full(c[1]);
	CHECK(h->status == 507);
	CHECK(!c[0]->eof || c[0]->complete);
	CHECK(tmp_files() == 0);
	CHECK(!blob_stored(b));
	for (int i = 0; i < 2; i++) {
		struct client *again = client_get(b, NULL, 0);
		CHECK(WAIT(again->complete, 3000));
		check_full(again);
	}
	CHECK(up.gets == 3 && tmp_files() == 0);
	unlink(disk.filler);
	struct client *ok = client_get(b, NULL, 0);
	CHECK(WAIT(ok->complete, 3000));
	check_whole(ok, b);
	CHECK(WAIT(blob_stored(b), 2000));
	CHECK(up.gets == 4 && tmp_files() == 0);
	teardown_full();
}

/* 13. The room-making hook, told at once or later: asked once, for the
 * blob's size; the fill begins again (a second GET, a new temp file) for
 * the clients that waited, and for one that joined while room was being
 * made; each gets the whole blob, which is stored. */
static void test_full_make_room(void)
{
	enum room_mode modes[] = {ROOM_FREE_LATER, ROOM_FREE_NOW};
	for (size_t i = 0; i < WH_ARRAY_SIZE(modes); i++) {
		if (!setup_full(FULL_SIZE - 512 * 1024, true, modes[i]))
			return;
		const struct blob *b = blob_add(BLOB_LEN, 21);
		up.hold = true;
		struct client *c[2] = {client_get(b, NULL, 0), client_get(b, NULL, 0)};
		CHECK(WAIT(env.handled == 2 && up.gets == 1, 2000));
		up.hold = false;
		up_kick();
		struct client *late = NULL;
		if (modes[i] == ROOM_FREE_LATER) {
			CHECK(WAIT(room.calls == 1, 2000));
			late = client_get(b, NULL, 0); /* while room is being made */
			CHECK(WAIT(env.handled == 3, 2000));
		}
		CHECK(WAIT(c[0]->complete && c[1]->complete && (!late || late->complete), 3000));
		check_whole(c[0], b);
		check_whole(c[1], b);
		if (late)
			check_whole(late, b);
		CHECK(room.calls == 1 && room.bytes == b->len);
		CHECK(up.gets == 2);
		CHECK(WAIT(blob_stored(b) && tmp_files() == 0, 2000));
		teardown_full();
	}
}

/* 14. No room made (the hook says so at once, refuses, or "makes" room
 * that is not there): the fill fails as without a hook, 507 to its
 * clients, after one try at most (one call, at most one more GET). */
static void test_full_no_room(void)
{
	enum room_mode modes[] = {ROOM_FAIL, ROOM_REFUSE, ROOM_NONE};
	for (size_t i = 0; i < WH_ARRAY_SIZE(modes); i++) {
		if (!setup_full(FULL_SIZE - 512 * 1024, true, modes[i]))
			return;
		const struct blob *b = blob_add(BLOB_LEN, 22);
		struct client *c = client_get(b, NULL, 0);
		CHECK(WAIT(c->complete, 3000));
		check_full(c);
		CHECK(room.calls == 1);
		CHECK(up.gets == (modes[i] == ROOM_NONE ? 2 : 1));
		CHECK(tmp_files() == 0 && !blob_stored(b));
		teardown_full();
	}
}

/* 15. A synced manifest the store cannot take (the disk is full to the
 * last page): 507 without a hook; with one that frees the filler, the
 * store is tried again with the bytes already fetched (no second GET) and
 * the client gets the manifest. */
static void test_full_manifest(void)
{
	for (int hook = 0; hook < 2; hook++) {
		if (!setup_full(-1, hook, ROOM_FREE_LATER))
			return;
		const struct blob *b = blob_add(1000, 23);
		up_set_manifest("v1", b, b->len);
		struct client *m = client_req("GET", "/v2/" LOCAL_NAME "/manifests/v1", NULL, 0);
		CHECK(WAIT(m->complete, 3000));
		if (hook) {
			CHECK(m->status == 200);
			CHECK_STREQ(m->digest, up.manifest_digest);
			CHECK(room.calls == 1 && room.bytes == (int64_t)strlen(up.manifest));
			CHECK(manifest_stored("v1"));
		} else {
			check_full(m);
			CHECK(!manifest_stored("v1"));
		}
		CHECK(up.manifest_reqs == 2); /* a HEAD, a GET: never fetched again */
		CHECK(tmp_files() == 0);
		teardown_full();
	}
}

/* 16. Shutdown while room is being made: the waiting clients are cut, and
 * the fill is freed once the hook says it is done (nothing leaks). */
static void test_full_free_while_making_room(void)
{
	if (!setup_full(FULL_SIZE - 512 * 1024, true, ROOM_HOLD))
		return;
	const struct blob *b = blob_add(BLOB_LEN, 24);
	struct client *c = client_get(b, NULL, 0);
	CHECK(WAIT(room.calls == 1, 2000));
	wh_sync_free(env.sync);
	env.sync = NULL;
	CHECK(WAIT(c->eof || c->complete, 2000));
	CHECK(c->status != 200);
	room.done(room.done_arg, 0);
	CHECK(tmp_files() == 0 && up.gets == 1);
	teardown_full();
}

int main(void)
{
	const char *verbose = getenv("WHARF_TEST_LOG");
	wh_log_setup(verbose ? WH_LOG_DEBUG : WH_LOG_OFF, verbose ? "" : "/dev/null");
	/* Only 127.0.0.1, never through a proxy from the environment. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	/* As main.c: a client gone mid-sendfile is an EPIPE, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	CHECK(uv_loop_init(&loop) == 0);
	uv_timer_init(&loop, &guard);
	uv_unref((uv_handle_t *)&guard);

	llhttp_settings_init(&parse_settings);
	parse_settings.on_header_field = c_field;
	parse_settings.on_header_value = c_value;
	parse_settings.on_header_value_complete = c_value_done;
	parse_settings.on_headers_complete = c_headers_done;
	parse_settings.on_body = c_body;
	parse_settings.on_message_complete = c_complete;

	wh_http_settings_init(&hcfg); /* on 127.0.0.1 */
	hcfg.port = 0;
	hcfg.header_timeout_ms = 10000;
	hcfg.idle_timeout_ms = 10000;
	hcfg.body_timeout_ms = 10000;
	hcfg.send_timeout_ms = 10000;
	hcfg.shutdown_timeout_ms = 500;
	hcfg.max_connections = 32;

	struct {
		const char *name;
		void (*fn)(void);
	} tests[] = {
	    {"single_flight", test_single_flight},
	    {"streaming", test_streaming},
	    {"hold_back_mismatch", test_hold_back_mismatch},
	    {"slow_reader", test_slow_reader},
	    {"client_leaves", test_client_leaves},
	    {"ranges_join", test_ranges_join},
	    {"resume", test_resume},
	    {"free_mid_fill", test_free_mid_fill},
	    {"declared_size", test_declared_size},
	    {"head_join_unverified", test_head_join_unverified},
	    {"stored_then_answered", test_stored_then_answered},
	    {"free_while_storing", test_free_while_storing},
	    {"full_disk", test_full_disk},
	    {"full_make_room", test_full_make_room},
	    {"full_no_room", test_full_no_room},
	    {"full_manifest", test_full_manifest},
	    {"full_free_while_making_room", test_full_free_while_making_room},
	};
	const char *only = getenv("WHARF_TEE_ONLY");
	for (size_t i = 0; i < WH_ARRAY_SIZE(tests); i++) {
		if (only && strcmp(only, tests[i].name) != 0)
			continue;
		int before = check_failures;
		uint64_t t0 = wh_now_ms();
		tests[i].fn();
		printf("%-32s %s %4llu ms\n", tests[i].name,
		       check_failures == before ? "ok" : "FAILED",
		       (unsigned long long)(wh_now_ms() - t0));
	}

	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	wh_http_settings_free(&hcfg);
	CHECK(uv_loop_close(&loop) == 0);
	CHECK_DONE();
}
