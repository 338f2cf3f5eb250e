/* On-demand sync: name mapping, tag freshness, manifest fetches with single
 * flight, and the blob tee. See include/wharf/cache/sync.h for the contract. */
#include "wharf/cache/sync.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "wharf/base/common.h"
#include "wharf/base/list.h"
#include "wharf/base/log.h"
#include "wharf/base/pattern.h"
#include "wharf/cache/upstream.h"
#include "wharf/oci/manifest.h"
#include "wharf/oci/response.h"
#include "wharf/store/meta.h"
#include "wharf/store/serve.h"

#define FRESH_SLOTS    4096 /* tag freshness entries (16 bytes each) */
#define SIZE_SLOTS     1024 /* declared blob sizes (88 bytes each) */
#define NOTFOUND_SLOTS 256  /* names logged as not found upstream */
/* A cached tag whose revalidation failed is asked about again after this. */
#define RECHECK_AFTER_ERROR_MS 10000
/* A blob transfer cut mid-body is resumed (Range) at most this many times. */
#define RESUME_MAX    3
#define SEGMENT_MAX   (4 * 1024 * 1024) /* bytes queued to one client at a time */
#define SPOILED_SLOTS 64                /* blobs whose bytes from a peer did not verify */
#define SPOILED_MS    600000            /* ... and are not asked of peers for this long */

/* Everything a client may accept: upstream is always asked for all of them,
 * so the cache holds the upstream's own manifest (same digest) whatever the
 * first client was able to read. */
static const char ACCEPT_ALL[] = WH_MT_ACCEPT_MANIFESTS;

/* What each kind of upstream request may do (wharf/cache/upstream.h). Only a blob
 * GET follows redirects, to a CDN: a manifest or a HEAD is answered by the
 * registry itself, and a 3xx for it is an error. A blob's size is not known
 * before its fetch: the digest check catches a wrong one, and b_on_data holds
 * the upstream to its Content-Length. */
static const wh_up_opts MANIFEST_GET = {.max_body = WH_MANIFEST_MAX};
static const wh_up_opts BLOB_GET = {.follow_redirects = true, .bulk = true, .max_body = -1};

struct rule_re {
	wh_regex *re, *ex; /* NULL: no such filter */
};

struct reader;
struct lfetch;
struct lentry;

/* A client waiting on a fetch (a manifest's or a listing's) to be answered
 * from the store. */
struct waiter {
	wh_list link; /* in its fetch's waiters */
	wh_req *req;
	wh_req_hook gone; /* the client left first */
};

/* A caller without a client (periodic sync) told when a fetch ends. */
struct note {
	struct note *next;
	wh_sync_done_cb cb;
	void *arg;
};

/* An upstream answer's body, collected whole (a manifest, a listing). The
 * first member of what collects one: body_on_data takes that for it. */
struct body {
	char *buf;
	size_t len, cap;
};

/* A manifest being fetched for (name, ref); every client asking meanwhile waits on it. */
struct mfetch {
	struct body body; /* first */
	wh_list link;     /* in s->mfetches */
	wh_sync *s;
	char name[WH_NAME_MAX + 1];
	char ref[WH_REF_MAX + 1];
	bool by_digest;
	wh_sync_map map;
	wh_up_req *up;
	bool head_phase;
	bool had_local;
	char local_digest[WH_DIGEST_LEN + 1];
	char up_digest[WH_DIGEST_LEN + 1]; /* from the upstream's Docker-Content-Digest */
	int status;
	int auth; /* enum wh_up_auth: the upstream's 401 is about our credentials */
	char ctype[256];
	wh_list waiters; /* struct waiter, newest first */
	struct note *notes;
	bool up_failed;  /* answered from the cache only: the upstream failed or lacks it */
	bool changed;    /* stored a manifest other than the one held before */
	bool background; /* started by a prefetch: its caller logs the result */
	/* The manifest is being stored (wh_store_manifest_put_async): everyone
	 * waiting is answered from the store once it is there. */
	bool storing;
	bool orphan; /* sync was freed while storing (or making room): the callback frees it */
	char digest[WH_DIGEST_LEN + 1]; /* of the manifest being stored */
	char media_type[sizeof(((wh_manifest_doc *)0)->media_type)]; /* its type (the check's) */
	int store_err; /* the store could not take it (-errno, WH_E*): ours, not the upstream's */
	bool making_room; /* the disk was full: the room-making hook is at work */
	bool retried;     /* it made room once already */
	int peer;         /* the next peer to ask (peer fill); n_peers: the upstream */
	const wh_sync_registry *from_peer; /* the GET in flight is to this peer */
};

/* A blob being fetched: the tee. */
struct bfetch {
	wh_list link; /* in s->bfetches until it is published or has failed */
	wh_sync *s;
	char digest[WH_DIGEST_LEN + 1];
	char name[WH_NAME_MAX + 1]; /* the repository it is published to */
	char **also;                /* other repositories that asked: linked after */
	int n_also;
	int n_linked; /* of also, mounted (or tried) so far */
	wh_sync_map map;
	wh_up_req *up;
	int fd;        /* file's descriptor, written to */
	wh_file *file; /* shared with the readers' send queues */
	char tmp[PATH_MAX];
	wh_digest_ctx hash; /* with the algorithm of digest */
	int status;
	int auth;       /* enum wh_up_auth: the upstream's 401 is about our credentials */
	int64_t total;  /* -1 until known */
	int64_t expect; /* the size a synced manifest declared, or -1 */
	int64_t written;
	bool got_head;
	bool size_wrong; /* the upstream's length is not the declared one */
	/* Our storage failed the fill (-errno: a write to the temp file, its
	 * reservation): not the upstream's doing. */
	int store_err;
	int64_t needed;   /* then: the bytes it needs (the blob's size, when known) */
	bool making_room; /* the disk was full: the room-making hook is at work */
	bool retried;     /* it made room once already */
	int64_t claimed;  /* the store's pending bytes it holds (its reservation) */
	int resumes;      /* Range requests sent after cuts */
	bool resuming;    /* the next head is a resumed transfer's */
	bool resume_failed;
	int64_t skip; /* body bytes to drop: a resume answered from the start */
	int peer;     /* the next peer to ask (peer fill); n_peers: the upstream */
	const wh_sync_registry *from_peer; /* the GET in flight is to this peer */
	const char *peer_url;              /* the peer that began the answer, or NULL */
	bool fetch_done;
	bool verified;
	bool failed;
	/* In the store's hands: published, then linked into also, each in the
	 * thread pool (fsyncs and all). */
	bool publishing;
	bool orphan; /* sync was freed while publishing: just clean up */
	int iterating;
	wh_list readers; /* struct reader, newest first */
	struct note *notes;
	uint64_t started_ms;
};

/* A client fed from a bfetch. */
struct reader {
	wh_list link; /* in f->readers */
	struct bfetch *f;
	wh_req *req;
	bool head_only;
	bool range;
	int64_t start, end; /* wanted range as wh_req_range gives it; resolved at the head */
	int64_t off;
	bool head_sent;
	wh_req_hook gone; /* the client left */
};

/* A HEAD of an uncached blob, answered by a HEAD upstream. */
struct bhead {
	wh_req *req;
	wh_up_req *up;
	int64_t declared; /* the size a synced manifest declared, or -1 */
	char digest[WH_DIGEST_LEN + 1];
	wh_req_hook gone;
};

struct wh_sync {
	uv_loop_t *loop;
	const wh_sync_settings *cfg;
	wh_store *store;
	wh_upstream *up;
	struct rule_re **re; /* [registry][content] */
	wh_list mfetches;    /* struct mfetch, newest first */
	wh_list bfetches;    /* struct bfetch, newest first */
	struct {
		uint64_t key;
		uint64_t checked_ms;
	} fresh[FRESH_SLOTS];
	struct {
		uint64_t key;
		uint64_t logged_ms;
	} notfound[NOTFOUND_SLOTS]; /* when "not found upstream" was last logged */
	/* Blob sizes declared by synced manifests, per upstream (one upstream
	 * cannot bound another's blobs); a slot is overwritten by the next
	 * digest that hashes to it. */
	struct {
		const wh_sync_registry *reg;
		int64_t size;
		char digest[WH_DIGEST_LEN + 1];
	} sizes[SIZE_SLOTS];
	/* Listings (referrers, tags): fetches in flight and cached answers. */
	wh_list lfetches; /* struct lfetch, newest first */
	wh_list listings; /* struct lentry, most recently stored first */
	int n_listings;
	size_t listings_bytes;
	wh_sync_make_room_fn make_room; /* NULL: a full disk fails the fill */
	void *make_room_arg;
	/* Settings a reload replaced, with their compiled rules: fetches in
	 * flight may still point into them, so they go with the sync. */
	struct retired {
		const wh_sync_settings *cfg;
		struct rule_re **re;
	} * retired;
	int n_retired;
	wh_sync_stats stats; /* the counters; the gauges are filled when asked */
	struct {
		uint64_t key;
		uint64_t until_ms;
	} spoiled[SPOILED_SLOTS]; /* blobs a peer sent wrong: asked of the upstream only */
};

/* ---- names ---- */

static const char *trim_slashes(const char *s, size_t *len)
{
	while (*s == '/')
		s++;
	size_t n = strlen(s);
	while (n > 0 && s[n - 1] == '/')
		n--;
	*len = n;
	return s;
}

/* How much of a prefix glob is literal leading components, what stripPrefix
 * strips: "library" of "library" followed by a glob. */
static size_t literal_len(const char *prefix, size_t pl)
{
	size_t lit = 0;
	for (size_t x = 0; x < pl; x++) {
		if (strchr("*?[{", prefix[x]))
			break;
		if (prefix[x] == '/')
			lit = x;
		if (x + 1 == pl)
			lit = pl;
	}
	return lit;
}

/* A content rule's destination and prefix, without the slashes around them. */
struct rule {
	const char *dest; /* "" for none */
	size_t dl;
	const char *prefix; /* "**" for none */
	size_t pl;
};

static struct rule rule_of(const wh_sync_content *c)
{
	struct rule r = {"", 0, NULL, 0};
	if (c->destination)
		r.dest = trim_slashes(c->destination, &r.dl);
	r.prefix = trim_slashes(c->prefix ? c->prefix : "**", &r.pl);
	return r;
}

/* Does a content rule's prefix (pl bytes) cover the upstream name: as a
 * glob, or, when literal, as the name or one of its leading components. */
static bool prefix_matches(const char *prefix, size_t pl, const char *upstream)
{
	char pat[1024];
	snprintf(pat, sizeof(pat), "%.*s", (int)pl, prefix);
	bool literal = strpbrk(pat, "*?[{") == NULL;
	return wh_glob_match(pat, upstream) ||
	       (literal && strncmp(upstream, pat, pl) == 0 && upstream[pl] == '/');
}

bool wh_sync_map_name(const wh_sync *s, const char *name, wh_sync_map *map)
{
	if (!s)
		return false;
	const wh_sync_settings *cfg = s->cfg;
	for (int i = 0; i < cfg->n_registries; i++) {
		const wh_sync_registry *reg = &cfg->registries[i];
		if (!reg->on_demand || reg->n_urls == 0)
			continue;
		for (int j = 0; j < reg->n_content; j++) {
			const wh_sync_content *c = &reg->content[j];
			struct rule r = rule_of(c);
			const char *rest = name;
			if (r.dl > 0) {
				if (strncmp(name, r.dest, r.dl) != 0 || name[r.dl] != '/')
					continue;
				rest = name + r.dl + 1;
			}
			char up[WH_NAME_MAX + 16];
			int k;
			if (c->strip_prefix) {
				/* The prefix's literal leading components were stripped. */
				size_t lit = literal_len(r.prefix, r.pl);
				k = snprintf(up, sizeof(up), "%.*s%s%s", (int)lit, r.prefix,
				             lit ? "/" : "", rest);
			} else {
				k = snprintf(up, sizeof(up), "%s", rest);
			}
			if (k < 0 || (size_t)k >= sizeof(up) || !*rest)
				continue;
			if (wh_upstream_is_docker_hub(reg->urls[0]) && !strchr(up, '/')) {
				/* Docker Hub's official images: nginx is library/nginx. */
				size_t ul = strlen(up);
				if (ul + 8 >= sizeof(up))
					continue;
				memmove(up + 8, up, ul + 1);
				memcpy(up, "library/", 8);
			}
			if (!prefix_matches(r.prefix, r.pl, up))
				continue;
			map->reg = reg;
			map->content = c;
			memcpy(map->upstream, up, sizeof(up));
			return true;
		}
	}
	return false;
}

/* Does the registry URL live on host[:port] `ns` (containerd's ?ns=)? */
static bool url_on_host(const char *url, const char *ns)
{
	if (wh_upstream_is_docker_hub(url))
		return wh_upstream_is_docker_hub(ns);
	const char *h = strstr(url, "://");
	bool https = h && h - url == 5;
	h = h ? h + 3 : url;
	size_t n = strcspn(h, "/");
	if (strlen(ns) == n && strncasecmp(h, ns, n) == 0)
		return true;
	/* "ghcr.io" for https://ghcr.io:443, "host" for http://host:80 */
	const char *colon = memchr(h, ':', n);
	if (!colon || strchr(ns, ':'))
		return false;
	const char *port = colon + 1;
	size_t pn = n - (size_t)(port - h);
	bool dflt = (https && pn == 3 && !strncmp(port, "443", 3)) ||
	            (!https && pn == 2 && !strncmp(port, "80", 2));
	return dflt && strlen(ns) == (size_t)(colon - h) && strncasecmp(h, ns, strlen(ns)) == 0;
}

bool wh_sync_ns_name(const wh_sync *s, const char *ns, const char *name, char *out, size_t outlen)
{
	if (!s || !*ns)
		return false;
	const wh_sync_settings *cfg = s->cfg;
	for (int i = 0; i < cfg->n_registries; i++) {
		const wh_sync_registry *reg = &cfg->registries[i];
		if (!reg->on_demand)
			continue;
		bool on_host = false;
		for (int u = 0; u < reg->n_urls && !on_host; u++)
			on_host = url_on_host(reg->urls[u], ns);
		if (!on_host)
			continue;
		/* The local name whose forward mapping is this registry and name:
		 * each rule, undone. */
		for (int j = 0; j < reg->n_content; j++) {
			const wh_sync_content *c = &reg->content[j];
			struct rule r = rule_of(c);
			const char *rest = name;
			if (c->strip_prefix) {
				size_t lit = literal_len(r.prefix, r.pl);
				if (lit == 0 || strncmp(name, r.prefix, lit) != 0 ||
				    name[lit] != '/')
					continue;
				rest = name + lit + 1;
			}
			int k = snprintf(out, outlen, "%.*s%s%s", (int)r.dl, r.dest,
			                 r.dl ? "/" : "", rest);
			if (k < 0 || (size_t)k >= outlen)
				continue;
			wh_sync_map map;
			if (wh_sync_map_name(s, out, &map) && map.reg == reg)
				return true;
		}
	}
	return false;
}

static const struct rule_re *rule_for(const wh_sync *s, const wh_sync_map *map)
{
	const wh_sync_settings *cfg = s->cfg;
	int i = (int)(map->reg - cfg->registries);
	int j = (int)(map->content - map->reg->content);
	return &s->re[i][j];
}

static bool tag_allowed(const wh_sync *s, const wh_sync_map *map, const char *tag)
{
	const struct rule_re *r = rule_for(s, map);
	if (r->re && !wh_regex_match(r->re, tag))
		return false;
	if (r->ex && wh_regex_match(r->ex, tag))
		return false;
	if (map->content->tags.semver && !wh_semver_valid(tag))
		return false;
	return true;
}

/* ---- freshness of tags ---- */

static uint64_t fnv1a(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = a; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h = (h ^ 0xff) * 1099511628211ull;
	for (const char *p = b; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h | 1; /* 0 marks an empty slot */
}

static int64_t check_interval(const wh_sync *s, const wh_sync_map *map)
{
	return map->reg->manifest_check_interval_ms > 0 ? map->reg->manifest_check_interval_ms
	                                                : s->cfg->manifest_check_interval_ms;
}

static bool is_fresh(wh_sync *s, const wh_sync_map *map, const char *name, const char *tag)
{
	uint64_t k = fnv1a(name, tag);
	size_t slot = k % FRESH_SLOTS;
	return s->fresh[slot].key == k &&
	       uv_now(s->loop) - s->fresh[slot].checked_ms < (uint64_t)check_interval(s, map);
}

static void mark_fresh(wh_sync *s, const char *name, const char *tag)
{
	uint64_t k = fnv1a(name, tag);
	size_t slot = k % FRESH_SLOTS;
	s->fresh[slot].key = k;
	s->fresh[slot].checked_ms = uv_now(s->loop);
}

/* Count the tag as checked so that it goes stale again after `after` ms (or
 * its interval, if shorter). */
static void mark_checked(wh_sync *s, const wh_sync_map *map, const char *name, const char *tag,
                         uint64_t after)
{
	uint64_t interval = (uint64_t)check_interval(s, map);
	uint64_t now = uv_now(s->loop);
	mark_fresh(s, name, tag);
	if (after < interval) {
		size_t slot = fnv1a(name, tag) % FRESH_SLOTS;
		uint64_t back = interval - after;
		s->fresh[slot].checked_ms = now > back ? now - back : 0;
	}
}

/* ---- declared blob sizes ---- */

static void declare_size(wh_sync *s, const wh_sync_map *map, const cJSON *d)
{
	/* wh_manifest_check vouched for the digest and size. */
	const char *dg = cJSON_GetObjectItemCaseSensitive(d, "digest")->valuestring;
	double size = cJSON_GetObjectItemCaseSensitive(d, "size")->valuedouble;
	size_t slot = fnv1a(dg, "") % SIZE_SLOTS;
	s->sizes[slot].reg = map->reg;
	s->sizes[slot].size = (int64_t)size;
	snprintf(s->sizes[slot].digest, sizeof(s->sizes[slot].digest), "%s", dg);
}

/* The size a synced manifest declared for digest, or -1. */
static int64_t declared_size(const wh_sync *s, const wh_sync_map *map, const char *digest)
{
	size_t slot = fnv1a(digest, "") % SIZE_SLOTS;
	if (s->sizes[slot].reg == map->reg && strcmp(s->sizes[slot].digest, digest) == 0)
		return s->sizes[slot].size;
	return -1;
}

/* ---- errors ---- */

/* The answer to a fetch that failed: store_err (non-zero) when our own
 * storage could not take what the upstream sent (507 for a full disk, else
 * 500); a 502 that says so when the upstream refused our credentials (auth,
 * enum wh_up_auth: the client cannot mend that, and the name may well be
 * there); else the upstream's status. */
static void fetch_error(wh_req *req, int store_err, int status, int auth, bool blob,
                        const char *what)
{
	if (store_err)
		wh_oci_storage_answer(req, store_err, what);
	else if (auth != WH_UP_AUTH_OK)
		wh_oci_error(req, 502, "UNKNOWN", wh_upstream_auth_text(auth), NULL);
	else if ((status == 404 || status == 401 || status == 403) && blob)
		wh_oci_blob_unknown(req, what);
	else if (status == 404 || status == 401 || status == 403)
		wh_oci_manifest_unknown(req, what);
	else if (status == 429)
		wh_oci_error(req, 429, "TOOMANYREQUESTS", "the upstream registry is rate limiting",
		             what);
	else
		wh_oci_error(req, 502, "UNKNOWN", "the upstream registry is unavailable", what);
}

/* ---- peer fill (sync.h) ---- */

/* The client asks only for what is held here (Cache-Control:
 * only-if-cached, RFC 9111 5.2.1.7): a peer filling its cache. */
static bool cached_only(wh_req *req)
{
	const char *v = wh_req_header(req, "cache-control");
	while (v && *v) {
		v += strspn(v, " \t,");
		size_t n = strcspn(v, ","), t = n;
		while (t > 0 && (v[t - 1] == ' ' || v[t - 1] == '\t'))
			t--;
		if (t == 14 && strncasecmp(v, "only-if-cached", 14) == 0)
			return true;
		v += n;
	}
	return false;
}

static void not_cached(wh_req *req)
{
	wh_oci_error(req, 504, "UNKNOWN", "not held here", "asked with only-if-cached");
}

/* The next peer a fetch asks (its index in *next), or NULL: the upstream's
 * turn. */
static const wh_sync_registry *next_peer(const wh_sync *s, int *next)
{
	return *next < s->cfg->n_peers ? &s->cfg->peers[(*next)++] : NULL;
}

/* A blob whose bytes from a peer did not verify: the upstream only, for a while. */
static void spoil(wh_sync *s, const char *digest)
{
	uint64_t k = fnv1a(digest, "");
	s->spoiled[k % SPOILED_SLOTS].key = k;
	s->spoiled[k % SPOILED_SLOTS].until_ms = uv_now(s->loop) + SPOILED_MS;
}

static bool spoiled(const wh_sync *s, const char *digest)
{
	uint64_t k = fnv1a(digest, "");
	return s->spoiled[k % SPOILED_SLOTS].key == k &&
	       uv_now(s->loop) < s->spoiled[k % SPOILED_SLOTS].until_ms;
}

/* Never past the request's max_body: the upstream client holds the body to
 * it. */
static int body_on_data(wh_up_req *r, const char *data, size_t len, void *arg)
{
	struct body *b = arg; /* the fetch, whose first member it is */
	wh_buf_append(&b->buf, &b->len, &b->cap, data, len);
	return 0;
}

/* ---- clients waiting on a fetch ---- */

static void waiter_gone(wh_req *req, wh_req_hook *hook)
{
	struct waiter *w = WH_CONTAINER_OF(hook, struct waiter, gone);
	wh_list_remove(&w->link);
	free(w);
}

static void waiter_add(wh_list *list, wh_req *req)
{
	struct waiter *w = wh_calloc(1, sizeof(*w));
	w->req = req;
	wh_list_insert_head(list, &w->link);
	wh_req_on_done(req, &w->gone, waiter_gone);
}

/* Take the first client off list; NULL when none is left. The caller
 * answers it (or cuts it). */
static wh_req *waiter_pop(wh_list *list)
{
	if (wh_list_empty(list))
		return NULL;
	struct waiter *w = wh_list_entry(wh_list_first(list), struct waiter, link);
	wh_list_remove(&w->link);
	wh_req *req = w->req;
	wh_req_cancel_done(req, &w->gone);
	free(w);
	return req;
}

/* ---- manifests ---- */

static void mfetch_unlink(struct mfetch *f)
{
	wh_list_remove(&f->link);
}

/* The fetch of (name, ref) in flight, or NULL. */
static struct mfetch *mfetch_find(wh_sync *s, const char *name, const char *ref)
{
	wh_list_foreach_safe(l, next, &s->mfetches) {
		struct mfetch *f = wh_list_entry(l, struct mfetch, link);
		if (strcmp(f->name, name) == 0 && strcmp(f->ref, ref) == 0)
			return f;
	}
	return NULL;
}

static void note_add(struct note **list, wh_sync_done_cb cb, void *arg)
{
	struct note *n = wh_calloc(1, sizeof(*n));
	n->cb = cb;
	n->arg = arg;
	n->next = *list;
	*list = n;
}

/* Detach the list first: a callback may start the next fetch. */
static void notes_fire(struct note **list, int err, bool changed)
{
	struct note *n = *list;
	*list = NULL;
	while (n) {
		struct note *next = n->next;
		n->cb(n->arg, err, changed);
		free(n);
		n = next;
	}
}

static void notes_drop(struct note **list)
{
	while (*list) {
		struct note *n = *list;
		*list = n->next;
		free(n);
	}
}

/* Answer everyone waiting: from the store when ok, else with the error. */
static void mfetch_finish(struct mfetch *f, bool ok, int status, const char *why)
{
	mfetch_unlink(f);
	wh_req *req;
	while ((req = waiter_pop(&f->waiters))) {
		if (ok)
			wh_serve_manifest(req, f->s->store, f->name, f->ref);
		else
			fetch_error(req, f->store_err, status, f->auth, false, why);
	}
	notes_fire(&f->notes,
	           f->store_err          ? f->store_err
	           : ok && !f->up_failed ? 0
	                                 : WH_EUPSTREAM,
	           f->changed);
	free(f->body.buf);
	free(f);
}

static void mfetch_stale_or_error(struct mfetch *f, int status, const char *why)
{
	f->up_failed = true;
	if (f->had_local) {
		wh_log(WH_LOG_WARN, "upstream unavailable, serving the cached manifest", "repo",
		       WH_LS, f->name, "reference", WH_LS, f->ref, "upstream", WH_LS,
		       f->map.reg->urls[0], "error", WH_LS, why, NULL);
		/* Asked again after a short while, not by every request meanwhile. */
		if (!f->by_digest)
			mark_checked(f->s, &f->map, f->name, f->ref, RECHECK_AFTER_ERROR_MS);
		mfetch_finish(f, true, 0, NULL);
		return;
	}
	wh_log(WH_LOG_WARN, "cannot sync manifest", "repo", WH_LS, f->name, "reference", WH_LS,
	       f->ref, "upstream", WH_LS, f->map.reg->urls[0], "status", WH_LI, (long long)status,
	       "error", WH_LS, why, NULL);
	mfetch_finish(f, false, status, why);
}

/* The upstream does not have it (or will not say: registries answer 401 for
 * a repository they do not hold). A tag pushed here under a synced name is
 * still ours to serve; the answer counts as a check for freshness. */
static void mfetch_not_upstream(struct mfetch *f)
{
	f->up_failed = true;
	if (f->had_local) {
		if (!f->by_digest)
			mark_fresh(f->s, f->name, f->ref);
		mfetch_finish(f, true, 0, NULL);
		return;
	}
	/* Told once per name and window, not per pull: a client retrying a
	 * wrong name must not flood the log. */
	uint64_t k = fnv1a(f->name, "");
	size_t slot = k % NOTFOUND_SLOTS;
	uint64_t now = uv_now(f->s->loop);
	if (f->s->notfound[slot].key != k ||
	    now - f->s->notfound[slot].logged_ms >= (uint64_t)check_interval(f->s, &f->map)) {
		f->s->notfound[slot].key = k;
		f->s->notfound[slot].logged_ms = now;
		wh_log(WH_LOG_INFO, "image not found upstream", "repo", WH_LS, f->name, "reference",
		       WH_LS, f->ref, "upstream", WH_LS, f->map.reg->urls[0], "remote", WH_LS,
		       f->map.upstream, "status", WH_LI, (long long)f->status, NULL);
	}
	mfetch_finish(f, false, f->status, "not found upstream");
}

static void m_on_head(wh_up_req *r, const wh_up_head *h, void *arg)
{
	struct mfetch *f = arg;
	f->status = h->status;
	f->auth = h->auth;
	snprintf(f->ctype, sizeof(f->ctype), "%s", h->content_type ? h->content_type : "");
	if (f->from_peer)
		return; /* asked by digest: the one the upstream named stays the one to match */
	f->up_digest[0] = '\0';
	if (h->digest && wh_digest_check(h->digest, strlen(h->digest)) == WH_DIGEST_OK)
		wh_digest_copy(f->up_digest, h->digest);
}

static void m_on_done(wh_up_req *r, int err, void *arg);
static void m_stored(int rc, void *arg);

static const wh_up_cbs mcbs = {m_on_head, body_on_data, m_on_done};

/* The GET of the manifest: by digest (a tag's once the upstream's HEAD
 * named it) from each peer in turn, then from the upstream. */
static void mfetch_get(struct mfetch *f)
{
	wh_sync *s = f->s;
	char path[WH_NAME_MAX + WH_REF_MAX + 64];
	const char *digest = f->by_digest ? f->ref : f->up_digest;
	f->head_phase = false;
	f->body.len = 0;
	f->auth = WH_UP_AUTH_OK; /* a peer's refusal is not the upstream's */
	f->from_peer = *digest ? next_peer(s, &f->peer) : NULL;
	if (f->from_peer) {
		/* Under our own name: a tier's nodes share one configuration. */
		wh_up_opts opts = MANIFEST_GET;
		opts.cached_only = true;
		snprintf(path, sizeof(path), "/v2/%s/manifests/%s", f->name, digest);
		f->up = wh_upstream_request(s->up, f->from_peer, "GET", path, f->name, ACCEPT_ALL,
		                            &opts, &mcbs, f);
		return;
	}
	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", f->map.upstream, f->ref);
	f->up = wh_upstream_request(s->up, f->map.reg, "GET", path, f->map.upstream, ACCEPT_ALL,
	                            &MANIFEST_GET, &mcbs, f);
}

/* The peer asked did not give the manifest (it does not hold it, could not
 * be reached, or sent something wrong: why): the next peer, or the upstream.
 * False when the answer was the upstream's. */
static bool mfetch_peer_failed(struct mfetch *f, const char *why)
{
	if (!f->from_peer)
		return false;
	if (why)
		wh_log(WH_LOG_WARN, "a peer sent a manifest that cannot be used; asking elsewhere",
		       "repo", WH_LS, f->name, "reference", WH_LS, f->ref, "peer", WH_LS,
		       f->from_peer->urls[0], "error", WH_LS, why, NULL);
	mfetch_get(f);
	return true;
}

/* Remember the sizes an image manifest declares for its blobs, so that the
 * fetch of one of them stops at that size rather than at whatever the
 * upstream sends. */
static void note_sizes(wh_sync *s, const wh_sync_map *map, const wh_manifest_doc *m)
{
	if (m->is_index)
		return;
	const cJSON *d;
	declare_size(s, map, m->config);
	cJSON_ArrayForEach(d, m->layers)
	{
		declare_size(s, map, d);
	}
}

/* Ask the room-making hook for room, once per fill: true when it took the
 * request (done fires then, maybe before this returns), false when there is
 * no hook, the fill had its one try, or the hook refused at once. */
static bool ask_room(wh_sync *s, bool *retried, int64_t bytes, const char *repo, const char *what,
                     void (*done)(void *, int), void *arg)
{
	if (!s->make_room || *retried)
		return false;
	*retried = true;
	wh_log(WH_LOG_INFO, "storage is full, making room to fill the cache", "repo", WH_LS, repo,
	       "object", WH_LS, what, "bytes", WH_LI, (long long)bytes, NULL);
	return s->make_room(s->make_room_arg, bytes, done, arg) == 0;
}

/* The store could not take the synced manifest (f->store_err): our
 * failure, told as such, once. A cached copy is still served. */
static void mfetch_store_failed(struct mfetch *f)
{
	int rc = f->store_err;
	wh_log(WH_LOG_ERROR, wh_err_disk_full(rc) ? "disk full" : "cannot store synced manifest",
	       "repo", WH_LS, f->name, "reference", WH_LS, f->ref, "digest", WH_LS, f->digest,
	       "error", WH_LS, wh_strerror(rc), "cached", WH_LB, f->had_local, "retried", WH_LB,
	       f->retried, NULL);
	f->up_failed = true;
	if (f->had_local) {
		/* Asked again after a short while, not by every request meanwhile. */
		if (!f->by_digest)
			mark_checked(f->s, &f->map, f->name, f->ref, RECHECK_AFTER_ERROR_MS);
		mfetch_finish(f, true, 0, NULL);
		return;
	}
	mfetch_finish(f, false, 0, wh_strerror(rc));
}

static void mfetch_store(struct mfetch *f);

static void m_room_made(void *arg, int rc)
{
	struct mfetch *f = arg;
	f->making_room = false;
	if (f->orphan) {
		/* sync is gone, and with it everyone who waited. */
		free(f->body.buf);
		free(f);
		return;
	}
	if (rc != 0) {
		mfetch_store_failed(f);
		return;
	}
	f->store_err = 0;
	mfetch_store(f); /* the bytes are still here: only the store is tried again */
}

/* The upstream's manifest is in the store (rc 0), or could not be put there. */
static void mfetch_stored(struct mfetch *f, int rc)
{
	wh_sync *s = f->s;
	if (rc != 0) {
		f->store_err = rc;
		if (wh_err_disk_full(rc)) {
			f->making_room = true;
			if (ask_room(s, &f->retried, (int64_t)f->body.len, f->name, f->digest,
			             m_room_made, f))
				return; /* m_room_made goes on */
			f->making_room = false;
		}
		mfetch_store_failed(f);
		return;
	}
	if (!f->by_digest)
		mark_fresh(s, f->name, f->ref);
	f->changed = !f->had_local || strcmp(f->local_digest, f->digest) != 0;
	if (f->changed && !f->background)
		wh_log(WH_LOG_INFO, "successfully synced image", "repo", WH_LS, f->name,
		       "reference", WH_LS, f->ref, "digest", WH_LS, f->digest, "upstream", WH_LS,
		       f->map.reg->urls[0], "remote", WH_LS, f->map.upstream, NULL);
	mfetch_finish(f, true, 0, NULL);
}

static void m_stored(int rc, void *arg)
{
	struct mfetch *f = arg;
	f->storing = false;
	if (f->orphan) {
		/* sync is gone, and with it everyone who waited. */
		free(f->body.buf);
		free(f);
		return;
	}
	mfetch_stored(f, rc);
}

static void m_on_done(wh_up_req *r, int err, void *arg)
{
	struct mfetch *f = arg;
	wh_sync *s = f->s;
	f->up = NULL;
	if ((err != 0 || f->status != 200) && mfetch_peer_failed(f, NULL))
		return;
	if (err != 0) {
		mfetch_stale_or_error(f, 502,
		                      err == WH_ETOOBIG ? "manifest over " WH_MANIFEST_MAX_TEXT
		                                        : wh_strerror(err));
		return;
	}
	if (f->auth != WH_UP_AUTH_OK) {
		/* Not "not there": we could not ask. A cached copy is served. */
		mfetch_stale_or_error(f, 502, wh_upstream_auth_text(f->auth));
		return;
	}
	if (f->head_phase) {
		if (f->status == 200 && f->had_local &&
		    strcmp(f->up_digest, f->local_digest) == 0) {
			mark_fresh(s, f->name, f->ref);
			mfetch_finish(f, true, 0, NULL);
			return;
		}
		if (f->status == 200) {
			mfetch_get(f);
			return;
		}
		if (f->status == 404 || f->status == 401 || f->status == 403) {
			mfetch_not_upstream(f);
			return;
		}
		char why[64];
		snprintf(why, sizeof(why), "upstream answered %d", f->status);
		mfetch_stale_or_error(f, f->status, why);
		return;
	}
	if (f->status != 200) {
		char why[64];
		snprintf(why, sizeof(why), "upstream answered %d", f->status);
		if (f->status == 404 || f->status == 401 || f->status == 403)
			mfetch_not_upstream(f);
		else
			mfetch_stale_or_error(f, f->status, why);
		return;
	}
	const char *body = f->body.buf ? f->body.buf : "";
	/* Hashed with the algorithm of the digest it must match: the one asked
	 * for, else the upstream's Docker-Content-Digest (an upstream that
	 * addresses its manifests by sha512 is cached under the same digest),
	 * else sha256, the spec's default. */
	const char *want = f->by_digest ? f->ref : (f->up_digest[0] ? f->up_digest : NULL);
	char digest[WH_DIGEST_LEN + 1];
	wh_digest_of(want ? wh_digest_alg_of(want) : WH_ALG_SHA256, body, f->body.len, digest);
	if (want && strcmp(want, digest) != 0 && mfetch_peer_failed(f, "digest mismatch"))
		return;
	if (want && strcmp(want, digest) != 0) {
		wh_log(WH_LOG_ERROR, "upstream manifest does not match its digest", "repo", WH_LS,
		       f->name, "reference", WH_LS, f->ref, "expected", WH_LS, want, "got", WH_LS,
		       digest, NULL);
		mfetch_stale_or_error(f, 502, "digest mismatch");
		return;
	}
	/* Checked as a push is: what is stored here is served to every client,
	 * and a cache in front keeps it too. */
	wh_manifest_doc m;
	const char *why;
	char detail[WH_MANIFEST_DETAIL_MAX];
	if (wh_manifest_check(body, f->body.len, f->ctype, &m, &why, detail, sizeof(detail)) != 0) {
		if (mfetch_peer_failed(f, why))
			return;
		wh_log(WH_LOG_ERROR, "upstream sent an invalid manifest", "repo", WH_LS, f->name,
		       "reference", WH_LS, f->ref, "error", WH_LS, why, "detail", WH_LS, detail,
		       NULL);
		mfetch_stale_or_error(f, 502, "invalid manifest");
		return;
	}
	if (f->from_peer)
		wh_log(WH_LOG_INFO, "manifest filled from a peer", "repo", WH_LS, f->name,
		       "reference", WH_LS, f->ref, "digest", WH_LS, digest, "peer", WH_LS,
		       f->from_peer->urls[0], NULL);
	note_sizes(s, &f->map, &m);
	memcpy(f->digest, digest, sizeof(f->digest));
	snprintf(f->media_type, sizeof(f->media_type), "%s", m.media_type);
	cJSON_Delete(m.doc);
	mfetch_store(f);
}

/* Stored in the thread pool (fsyncs): the fetch stays in the table
 * meanwhile, so clients asking for it wait on it, and everyone is answered
 * from the store once the manifest is there (m_stored). */
static void mfetch_store(struct mfetch *f)
{
	wh_sync *s = f->s;
	int rc = wh_store_manifest_cache_async(
	    s->loop, s->store, f->name, f->by_digest ? NULL : f->ref, f->digest, f->media_type,
	    f->body.buf ? f->body.buf : "", f->body.len, m_stored, f);
	if (rc != 0) {
		mfetch_stored(f, rc);
		return;
	}
	f->storing = true;
}

/* The fetch of (name, ref) in flight, or a new one. */
static struct mfetch *mfetch_for(wh_sync *s, const char *name, const char *ref,
                                 const wh_sync_map *map, bool by_digest, const char *local)
{
	struct mfetch *f = mfetch_find(s, name, ref);
	if (f)
		return f;
	f = wh_calloc(1, sizeof(*f));
	f->s = s;
	wh_list_init(&f->waiters);
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->ref, sizeof(f->ref), "%s", ref);
	f->by_digest = by_digest;
	f->map = *map;
	f->had_local = local != NULL;
	snprintf(f->local_digest, sizeof(f->local_digest), "%s", local ? local : "");
	wh_list_insert_head(&s->mfetches, &f->link);
	if (by_digest) {
		mfetch_get(f);
	} else {
		/* A HEAD costs nothing against Docker Hub's pull limit. */
		char path[WH_NAME_MAX + WH_REF_MAX + 64];
		snprintf(path, sizeof(path), "/v2/%s/manifests/%s", map->upstream, ref);
		f->head_phase = true;
		f->up = wh_upstream_request(s->up, map->reg, "HEAD", path, map->upstream,
		                            ACCEPT_ALL, NULL, &mcbs, f);
	}
	return f;
}

void wh_sync_manifest(wh_sync *s, wh_req *req, const char *name, const char *ref,
                      const wh_sync_map *map)
{
	bool by_digest = wh_ref_is_digest(ref, strlen(ref));
	char local[WH_DIGEST_LEN + 1] = "";
	char *mt = NULL;
	int64_t size;
	bool have = wh_store_manifest_stat(s->store, name, ref, local, &mt, &size) == 0;
	free(mt);
	if (have)
		s->stats.hits[WH_SYNC_MANIFEST]++; /* fresh or not, the store answers */
	if (have && (by_digest || cached_only(req) || is_fresh(s, map, name, ref))) {
		wh_serve_manifest(req, s->store, name, ref);
		return;
	}
	if (cached_only(req)) {
		not_cached(req);
		return;
	}
	if (!by_digest && !tag_allowed(s, map, ref)) {
		/* Excluded by the rule's tag filters: never fetched. */
		wh_serve_manifest(req, s->store, name, ref);
		return;
	}
	if (have) {
		/* Stale while revalidating: the cache has an answer, so the client
		 * gets it now and the upstream is asked in the background (once,
		 * however many ask meanwhile). The fetch is registered before the
		 * answer goes: answering can start the next pipelined request,
		 * which must find it. */
		mfetch_for(s, name, ref, map, by_digest, local);
		wh_serve_manifest(req, s->store, name, ref);
		return;
	}
	s->stats.misses[WH_SYNC_MANIFEST]++;
	struct mfetch *f = mfetch_for(s, name, ref, map, by_digest, NULL);
	waiter_add(&f->waiters, req);
}

/* ---- blobs: the tee ---- */

static void bfetch_maybe_free(struct bfetch *f)
{
	if (!f->fetch_done || !wh_list_empty(&f->readers) || f->iterating ||
	    wh_list_linked(&f->link) || f->publishing || f->making_room)
		return;
	wh_file_unref(f->file); /* closed once no reader's queue holds it */
	for (int i = 0; i < f->n_also; i++)
		free(f->also[i]);
	free(f->also);
	free(f);
}

static void reader_gone(wh_req *req, wh_req_hook *hook)
{
	struct reader *rd = WH_CONTAINER_OF(hook, struct reader, gone);
	struct bfetch *f = rd->f;
	wh_list_remove(&rd->link);
	req->data = NULL;
	free(rd);
	bfetch_maybe_free(f);
}

/* Cut a client whose answer began (a reset: it cannot take what it got for
 * a whole body) and forget it now, not when its connection is closed. */
static void reader_cut(struct reader *rd)
{
	wh_req *req = rd->req;
	wh_list_remove(&rd->link);
	req->data = NULL;
	wh_req_cancel_done(req, &rd->gone);
	free(rd);
	wh_req_abort(req);
}

static void reader_pump(struct reader *rd);

static void reader_writable(wh_req *req)
{
	struct reader *rd = req->data;
	if (rd)
		reader_pump(rd);
}

/* Send the response head once the size is known (from the upstream's
 * Content-Length, or after the fetch when it gave none). */
static void reader_head(struct reader *rd)
{
	struct bfetch *f = rd->f;
	wh_req *req = rd->req;
	int64_t total = f->total;
	if (rd->head_sent || total < 0)
		return;
	rd->head_sent = true;
	int64_t a = 0, z = total - 1;
	if (rd->range && !wh_range_resolve(rd->start, rd->end, total, &a, &z))
		a = 1, z = 0; /* unsatisfiable: 416 */
	/* A HEAD is answered now, maybe before the digest verified: then its
	 * Content-Length is only what the upstream said, and nothing may be
	 * kept as immutable (a GET's body is cut on a mismatch instead). */
	if (!wh_oci_blob_head(req, f->digest, total, f->verified || !rd->head_only, rd->range, a,
	                      z))
		return;
	rd->start = a;
	rd->end = z;
	rd->off = a;
	if (rd->head_only || total == 0) {
		/* An empty blob's "body" is complete only once verified. */
		if (rd->head_only || f->verified)
			wh_resp_end(req);
		return;
	}
	reader_pump(rd);
}

/* Queue the next piece of the temp file to this client. Until the digest is
 * verified the last byte of the blob is held back. May end the response, after
 * which rd is gone. */
static void reader_pump(struct reader *rd)
{
	struct bfetch *f = rd->f;
	wh_req *req = rd->req;
	if (!rd->head_sent || rd->head_only)
		return;
	int64_t end_excl = rd->end + 1;
	int64_t avail = f->verified ? f->total : f->written - 1;
	/* The last byte of what this client asked for, whole blob or range, is
	 * held back until the digest verifies: a complete-looking answer is a
	 * verified one (a cache in front keeps it). */
	int64_t limit = WH_MIN(avail, f->verified ? end_excl : end_excl - 1);
	if (rd->off < limit && wh_resp_can_write(req)) {
		int64_t n = WH_MIN(limit - rd->off, (int64_t)SEGMENT_MAX);
		int64_t off = rd->off;
		rd->off += n;
		f->s->stats.tee_bytes += (uint64_t)n;
		wh_resp_send_file(req, f->file, off, n);
		return; /* on_writable brings us back for the rest */
	}
	if (rd->off >= end_excl && f->verified)
		wh_resp_end(req);
}

static void bfetch_pump_all(struct bfetch *f)
{
	f->iterating++;
	wh_list_foreach_safe(l, next, &f->readers) {
		struct reader *rd = wh_list_entry(l, struct reader, link);
		if (!rd->head_sent)
			reader_head(rd);
		else
			reader_pump(rd);
	}
	f->iterating--;
}

/* Claim the room for len bytes of fd before any of them, or a client's
 * answer, goes anywhere: a full disk is then told before the answers
 * begin (a 507, not a body cut halfway). The file's size stays what is
 * written. 0, or the -errno of a full disk; a file system that cannot
 * reserve is written as the bytes come, and writes tell. */
static int reserve(int fd, int64_t len)
{
	if (len <= 0 || fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)len) == 0)
		return 0;
	int rc = -errno;
	return wh_err_disk_full(rc) ? rc : 0;
}

/* The fill's room, reserved on the disk, counts against the cache budget
 * until the blob is published (then the store's usage has it) or the fill
 * fails: room is made while the blob is fetched. */
static void bfetch_claim(struct bfetch *f, int64_t bytes)
{
	f->claimed += bytes;
	wh_store_pending_add(f->s->store, bytes);
}

static void bfetch_unclaim(struct bfetch *f)
{
	if (f->claimed > 0)
		wh_store_pending_add(f->s->store, -f->claimed);
	f->claimed = 0;
}

static void b_on_head(wh_up_req *r, const wh_up_head *h, void *arg)
{
	struct bfetch *f = arg;
	if (f->resuming) {
		/* The rest of a cut transfer: a 206 from where we are, or the whole
		 * body again from an upstream that ignores ranges (what we have is
		 * skipped). Anything else ends the fetch. */
		f->resuming = false;
		int64_t rest = f->total >= 0 ? f->total - f->written : -1;
		if (h->status == 206 && h->range_start == f->written &&
		    (h->content_length < 0 || rest < 0 || h->content_length == rest)) {
			f->skip = 0;
		} else if (h->status == 200 && (h->content_length < 0 || f->total < 0 ||
		                                h->content_length == f->total)) {
			f->skip = f->written;
		} else {
			f->status = h->status == 200 || h->status == 206 ? 502 : h->status;
			f->auth = h->auth;
			f->resume_failed = true;
		}
		return;
	}
	f->status = h->status;
	f->auth = h->auth;
	if (h->status != 200)
		return;
	f->total = h->content_length >= 0 ? h->content_length : f->expect;
	if (f->expect >= 0 && f->total != f->expect && f->from_peer) {
		/* Asked elsewhere, before a byte is stored or sent. */
		wh_log(WH_LOG_WARN,
		       "a peer's blob size differs from its manifest's; asking elsewhere", "digest",
		       WH_LS, f->digest, "peer", WH_LS, f->from_peer->urls[0], "declared", WH_LI,
		       (long long)f->expect, "sent", WH_LI, (long long)f->total, NULL);
		f->status = 0;
		f->total = -1;
		wh_upstream_abort(r, WH_EUPSTREAM);
		return;
	}
	if (f->expect >= 0 && f->total != f->expect) {
		/* Not the blob the manifest described: fail before a byte is stored. */
		wh_log(WH_LOG_ERROR, "upstream blob size differs from its manifest's", "digest",
		       WH_LS, f->digest, "declared", WH_LI, (long long)f->expect, "sent", WH_LI,
		       (long long)f->total, NULL);
		f->got_head = true;
		f->size_wrong = true;
		return;
	}
	int rc = reserve(f->fd, f->total);
	if (rc != 0) {
		/* No room for it: told before any client's answer begins. */
		f->store_err = rc;
		f->needed = f->total;
		f->total = -1;
		wh_upstream_abort(r, rc);
		return;
	}
	if (f->total > 0)
		bfetch_claim(f, f->total);
	f->got_head = true;
	if (f->from_peer)
		f->peer_url = f->from_peer->urls[0];
	bfetch_pump_all(f);
	bfetch_maybe_free(f);
}

static int b_on_data(wh_up_req *r, const char *data, size_t len, void *arg)
{
	struct bfetch *f = arg;
	if (f->resume_failed || f->store_err)
		return -1;
	if (f->skip > 0) {
		/* Sent again from the start: drop what is already in the file. */
		size_t n = (size_t)WH_MIN((int64_t)len, f->skip);
		f->skip -= (int64_t)n;
		data += n;
		len -= n;
		if (len == 0)
			return 0;
	}
	if (f->size_wrong || (f->total >= 0 && f->written + (int64_t)len > f->total))
		return -1; /* more than promised */
	size_t done = 0;
	while (done < len) {
		ssize_t w =
		    pwrite(f->fd, data + done, len - done, (off_t)(f->written + (int64_t)done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			/* Ours, not the upstream's: said so once the transfer is over. */
			f->store_err = w < 0 ? -errno : -ENOSPC;
			f->needed = f->total >= 0 ? f->total : f->written + (int64_t)len;
			wh_upstream_abort(r, f->store_err);
			return -1;
		}
		done += (size_t)w;
	}
	wh_digest_update(&f->hash, data, len);
	f->written += (int64_t)len;
	if (f->from_peer)
		f->s->stats.bytes_from_peers += len;
	else
		f->s->stats.bytes_from_upstream += len;
	bfetch_pump_all(f);
	return 0;
}

static void bfetch_unlink(struct bfetch *f)
{
	wh_list_remove(&f->link);
}

static void bfetch_fail(struct bfetch *f, const char *why)
{
	f->failed = true;
	unlink(f->tmp);
	bfetch_unclaim(f);
	f->iterating++;
	notes_fire(&f->notes, f->store_err ? f->store_err : WH_EUPSTREAM, false);
	wh_list_foreach_safe(l, next, &f->readers) {
		struct reader *rd = wh_list_entry(l, struct reader, link);
		if (!rd->head_sent) {
			rd->head_sent = true;
			fetch_error(rd->req, f->store_err, f->status ? f->status : 502, f->auth,
			            true, why);
		} else {
			/* Mid-body: cut it, so the client cannot take it for whole. */
			wh_req_abort(rd->req);
		}
	}
	f->iterating--;
}

/* The store holds the blob in every repository that asked (rc 0), or it
 * could not be published: the fetch leaves the table, and whoever waits
 * without a client (periodic sync) is told. */
static void bfetch_stored(struct bfetch *f, int rc)
{
	wh_sync *s = f->s;
	f->publishing = false;
	bfetch_unlink(f);
	if (rc != 0)
		wh_log(WH_LOG_ERROR,
		       wh_err_disk_full(rc) ? "disk full" : "cannot store fetched blob", "repo",
		       WH_LS, f->name, "digest", WH_LS, f->digest, "error", WH_LS, wh_strerror(rc),
		       NULL);
	else
		wh_log(WH_LOG_DEBUG, "blob cached", "digest", WH_LS, f->digest, "repo", WH_LS,
		       f->name, "bytes", WH_LI, (long long)f->written, "ms", WH_LI,
		       (long long)(uv_now(s->loop) - f->started_ms), NULL);
	f->iterating++;
	notes_fire(&f->notes, rc, true);
	f->iterating--;
	bfetch_maybe_free(f);
}

static void b_linked(int rc, void *arg);

/* Link the blob into the next repository that joined the fetch (one at a
 * time: a client of yet another one may join meanwhile), or, when every one
 * has it, the fetch is over. As before, a repository it cannot be linked
 * into fetches it again when asked. */
static void bfetch_link_next(struct bfetch *f)
{
	wh_sync *s = f->s;
	while (f->n_linked < f->n_also) {
		const char *name = f->also[f->n_linked++];
		if (wh_store_blob_mount_async(s->loop, s->store, name, f->name, f->digest, b_linked,
		                              f) == 0)
			return;
	}
	bfetch_stored(f, 0);
}

static void b_linked(int rc, void *arg)
{
	struct bfetch *f = arg;
	(void)rc; /* the store logged it */
	if (f->orphan) {
		f->publishing = false;
		bfetch_maybe_free(f);
		return;
	}
	bfetch_link_next(f);
}

static void b_published(int rc, void *arg)
{
	struct bfetch *f = arg;
	if (f->orphan) {
		/* sync is gone: the blob is stored, the other repositories are
		 * not linked (they fetch it again when asked). */
		f->publishing = false;
		bfetch_maybe_free(f);
		return;
	}
	if (rc != 0)
		bfetch_stored(f, rc);
	else
		bfetch_link_next(f);
}

/* Verified: the temp file goes into the store, fsynced and renamed in the
 * thread pool; the readers go on sending from the open file meanwhile (a
 * rename does not change what a descriptor reads). The fetch stays in the
 * table until the store holds the blob, so clients arriving meanwhile join
 * it instead of starting another. */
static void bfetch_publish(struct bfetch *f)
{
	wh_sync *s = f->s;
	f->publishing = true;
	bfetch_unclaim(f); /* the store's usage counts it once published */
	int rc = wh_store_blob_publish_async(s->loop, s->store, f->name, f->tmp, f->digest,
	                                     b_published, f);
	if (rc != 0)
		b_published(rc, f); /* the temp file is gone all the same */
}

static void bfetch_request(struct bfetch *f, int64_t from);

/* Begin the fill again from scratch, on the temp file fd: nothing of the
 * failed attempt is kept but its clients whose answers had not begun. */
static void bfetch_restart(struct bfetch *f, int fd)
{
	f->fd = fd;
	f->file = wh_file_new(fd);
	f->status = 0;
	f->auth = WH_UP_AUTH_OK;
	f->total = -1;
	f->written = 0;
	f->got_head = false;
	f->size_wrong = false;
	f->store_err = 0;
	f->needed = 0;
	f->resumes = 0;
	f->resuming = false;
	f->resume_failed = false;
	f->skip = 0;
	f->peer = 0;
	f->peer_url = NULL;
	f->fetch_done = false;
	wh_digest_init(&f->hash, wh_digest_alg_of(f->digest));
	bfetch_request(f, 0);
}

/* The fill failed for good on our storage (f->store_err): its clients
 * that wait for an answer get 507 (full) or 500, the others are cut. */
static void bfetch_store_gives_up(struct bfetch *f)
{
	char why[96];
	snprintf(why, sizeof(why), "cannot store the blob: %s", wh_strerror(f->store_err));
	bfetch_unlink(f);
	bfetch_fail(f, why);
}

static void bfetch_room_made(void *arg, int rc)
{
	struct bfetch *f = arg;
	wh_sync *s = f->s;
	f->making_room = false;
	if (f->orphan) {
		/* sync is gone: its clients were cut, nothing more to do. */
		bfetch_maybe_free(f);
		return;
	}
	f->iterating++;
	if (rc == 0) {
		int fd = wh_store_tmp_create(s->store, f->tmp, sizeof(f->tmp));
		if (fd >= 0) {
			wh_log(WH_LOG_INFO, "room made, filling the cache again", "repo", WH_LS,
			       f->name, "digest", WH_LS, f->digest, NULL);
			bfetch_restart(f, fd);
		} else {
			wh_log(WH_LOG_ERROR, "cannot create a temp file", "repo", WH_LS, f->name,
			       "digest", WH_LS, f->digest, "error", WH_LS, wh_strerror(fd), NULL);
			f->tmp[0] = '\0';
			bfetch_store_gives_up(f);
		}
	} else {
		wh_log(WH_LOG_ERROR, "disk full", "repo", WH_LS, f->name, "digest", WH_LS,
		       f->digest, "error", WH_LS, wh_strerror(f->store_err), "needed", WH_LI,
		       (long long)f->needed, "room", WH_LS, wh_strerror(rc), NULL);
		bfetch_store_gives_up(f);
	}
	f->iterating--;
	bfetch_maybe_free(f);
}

/* Our storage failed the fill (f->store_err): not the upstream's doing,
 * and never told as such. The temp file goes at once (its blocks with its
 * last descriptor). On a full disk the room-making hook, when there is
 * one, is asked once for room; the fill then begins again (a new temp
 * file, a new fetch) for the clients still waiting for their answer to
 * begin and whoever joins meanwhile, while those whose answers began are
 * cut, as they would be anyway. Called with f->iterating held. */
static void bfetch_store_failed(struct bfetch *f)
{
	wh_sync *s = f->s;
	int rc = f->store_err;
	unlink(f->tmp);
	bfetch_unclaim(f);
	if (wh_err_disk_full(rc) && s->make_room && !f->retried) {
		wh_list_foreach_safe(l, next, &f->readers) {
			struct reader *rd = wh_list_entry(l, struct reader, link);
			if (rd->head_sent)
				reader_cut(rd);
		}
		wh_file_unref(f->file); /* readers cut: the last reference is ours */
		f->file = NULL;
		f->fd = -1;
		f->got_head = false; /* those who join wait for the next attempt's head */
		f->total = -1;
		f->making_room = true;
		if (ask_room(s, &f->retried, f->needed, f->name, f->digest, bfetch_room_made, f))
			return; /* bfetch_room_made goes on */
		f->making_room = false;
	}
	if (wh_err_disk_full(rc))
		wh_log(WH_LOG_ERROR, "disk full", "repo", WH_LS, f->name, "digest", WH_LS,
		       f->digest, "path", WH_LS, f->tmp, "error", WH_LS, wh_strerror(rc), "needed",
		       WH_LI, (long long)f->needed, NULL);
	else
		wh_log(WH_LOG_ERROR, "cannot write a fetched blob", "repo", WH_LS, f->name,
		       "digest", WH_LS, f->digest, "path", WH_LS, f->tmp, "error", WH_LS,
		       wh_strerror(rc), NULL);
	bfetch_store_gives_up(f);
}

static void b_on_done(wh_up_req *r, int err, void *arg)
{
	struct bfetch *f = arg;
	f->up = NULL;
	f->fetch_done = true;
	f->iterating++; /* readers answered below must not free f under us */
	char got[WH_DIGEST_LEN + 1] = "";
	if (err == 0 && f->status == 200 && (f->total < 0 || f->written == f->total))
		wh_digest_final(&f->hash, got);
	if (f->store_err) {
		bfetch_store_failed(f); /* our disk, not the upstream */
		f->iterating--;
		bfetch_maybe_free(f);
		return;
	}
	if (f->from_peer && !f->got_head) {
		/* That peer does not hold it (its 504), or could not answer: the
		 * next peer, or the upstream. */
		f->fetch_done = false;
		f->status = 0;
		f->iterating--;
		bfetch_request(f, 0);
		return;
	}
	/* A cut transfer is resumed from the upstream, a peer's too (even
	 * before its first byte: its answer had begun). */
	if (err != 0 && err != WH_ETOOBIG && !f->size_wrong && !f->resume_failed && f->got_head &&
	    (f->written > 0 || f->from_peer) && (f->total < 0 || f->written < f->total) &&
	    f->resumes < RESUME_MAX) {
		/* Cut mid-body: ask for the rest. The clients streaming from the
		 * temp file see a pause, nothing else; the digest is checked over
		 * the whole at the end as always. */
		f->resumes++;
		f->fetch_done = false;
		f->resuming = true;
		f->iterating--;
		wh_log(WH_LOG_WARN, "blob fetch cut, resuming", "digest", WH_LS, f->digest, "from",
		       WH_LI, (long long)f->written, "attempt", WH_LI, (long long)f->resumes, NULL);
		bfetch_request(f, f->written);
		return;
	}
	if (err != 0 || f->status != 200) {
		char why[80];
		if (err != 0)
			snprintf(why, sizeof(why), "fetch failed after %" PRId64 " bytes: %s",
			         f->written, wh_strerror(err));
		else if (f->auth != WH_UP_AUTH_OK)
			snprintf(why, sizeof(why), "upstream answered 401: our credentials");
		else
			snprintf(why, sizeof(why), "upstream answered %d", f->status);
		if (err != 0 || (f->status != 404 && f->status != 401))
			wh_log(WH_LOG_WARN, "blob fetch failed", "digest", WH_LS, f->digest, "repo",
			       WH_LS, f->name, "error", WH_LS, why, NULL);
		if (f->peer_url)
			spoil(f->s, f->digest); /* a peer began it: the upstream whole next time */
		/* Out of the table before any client is answered: answering one
		 * can start the next request pipelined behind it, which must
		 * begin a new fetch, not join this dead one. */
		bfetch_unlink(f);
		bfetch_fail(f, why);
	} else if (strcmp(got, f->digest) != 0) {
		wh_log(WH_LOG_ERROR, "fetched blob does not match its digest; dropped", "digest",
		       WH_LS, f->digest, "got", WH_LS, got[0] ? got : "(short body)", "repo", WH_LS,
		       f->name, "peer", WH_LS, f->peer_url ? f->peer_url : "-", NULL);
		if (f->peer_url)
			spoil(f->s, f->digest); /* the next fetch asks the upstream */
		f->status = 502;
		bfetch_unlink(f);
		bfetch_fail(f, "digest mismatch");
	} else {
		/* Verified: the clients may have the last byte now. */
		if (f->peer_url)
			wh_log(WH_LOG_INFO, "blob filled from a peer", "repo", WH_LS, f->name,
			       "digest", WH_LS, f->digest, "peer", WH_LS, f->peer_url, "bytes",
			       WH_LI, (long long)f->written, NULL);
		f->total = f->written;
		f->verified = true;
		bfetch_pump_all(f);
		f->iterating--;
		bfetch_publish(f);
		return;
	}
	f->iterating--;
	bfetch_maybe_free(f);
}

static const wh_up_cbs bcbs = {b_on_head, b_on_data, b_on_done};

/* The upstream GET of the blob, from byte `from` on (0: all of it). */
static void bfetch_request(struct bfetch *f, int64_t from)
{
	wh_sync *s = f->s;
	char path[WH_NAME_MAX + WH_DIGEST_LEN + 64];
	/* Never more than the manifest declared, when one did. */
	wh_up_opts opts = BLOB_GET;
	opts.max_body = f->expect;
	opts.range_from = from;
	/* The whole blob from each peer in turn (under our own name: a tier
	 * shares one configuration); the rest of a cut transfer from the
	 * upstream. */
	f->auth = WH_UP_AUTH_OK; /* a peer's refusal is not the upstream's */
	f->from_peer = !f->resuming && !spoiled(s, f->digest) ? next_peer(s, &f->peer) : NULL;
	if (f->from_peer) {
		opts.cached_only = true;
		opts.follow_redirects = false;
		snprintf(path, sizeof(path), "/v2/%s/blobs/%s", f->name, f->digest);
		f->up = wh_upstream_request(s->up, f->from_peer, "GET", path, f->name, NULL, &opts,
		                            &bcbs, f);
		return;
	}
	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", f->map.upstream, f->digest);
	f->up = wh_upstream_request(s->up, f->map.reg, "GET", path, f->map.upstream, NULL, &opts,
	                            &bcbs, f);
}

/* The fetch of digest in flight that has not failed, or NULL. */
static struct bfetch *bfetch_find(wh_sync *s, const char *digest)
{
	wh_list_foreach_safe(l, next, &s->bfetches) {
		struct bfetch *f = wh_list_entry(l, struct bfetch, link);
		if (strcmp(f->digest, digest) == 0 && !f->failed)
			return f;
	}
	return NULL;
}

/* A new fetch of digest for name, or NULL with *err (the temp file could
 * not be made: logged). */
static struct bfetch *bfetch_start(wh_sync *s, const char *name, const char *digest,
                                   const wh_sync_map *map, int *err)
{
	struct bfetch *f = wh_calloc(1, sizeof(*f));
	f->s = s;
	wh_list_init(&f->readers);
	f->fd = wh_store_tmp_create(s->store, f->tmp, sizeof(f->tmp));
	if (f->fd < 0) {
		*err = f->fd;
		wh_log(WH_LOG_ERROR,
		       wh_err_disk_full(*err) ? "disk full" : "cannot create a temp file", "repo",
		       WH_LS, name, "digest", WH_LS, digest, "error", WH_LS, wh_strerror(*err),
		       NULL);
		free(f);
		return NULL;
	}
	f->file = wh_file_new(f->fd);
	snprintf(f->digest, sizeof(f->digest), "%s", digest);
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->map = *map;
	f->total = -1;
	f->expect = declared_size(s, map, digest);
	f->started_ms = uv_now(s->loop);
	wh_digest_init(&f->hash, wh_digest_alg_of(f->digest));
	wh_list_insert_head(&s->bfetches, &f->link);
	bfetch_request(f, 0);
	return f;
}

/* Another repository asked for the blob in flight: it is linked there too. */
static void bfetch_also(struct bfetch *f, const char *name)
{
	if (strcmp(f->name, name) == 0)
		return;
	for (int i = 0; i < f->n_also; i++)
		if (strcmp(f->also[i], name) == 0)
			return;
	f->also = wh_realloc(f->also, sizeof(char *) * (size_t)(f->n_also + 1));
	f->also[f->n_also++] = wh_strdup(name);
}

static void bhead_gone(wh_req *req, wh_req_hook *hook)
{
	struct bhead *b = WH_CONTAINER_OF(hook, struct bhead, gone);
	if (b->up)
		wh_upstream_cancel(b->up);
	free(b);
}

static void bh_on_head(wh_up_req *r, const wh_up_head *h, void *arg)
{
	struct bhead *b = arg;
	wh_req *req = b->req;
	if (h->status != 200) {
		fetch_error(req, 0, h->status, h->auth, true, "HEAD upstream");
		return;
	}
	/* An upstream that gives no length (chunked) must not make the blob look
	 * empty: the size its manifest declared, or no Content-Length at all.
	 * Nothing here is verified: no ETag, nothing immutable. */
	int64_t len = h->content_length >= 0 ? h->content_length : b->declared;
	wh_oci_blob_head(req, b->digest, len, false, false, 0, 0);
	wh_resp_end(req);
}

static void bh_on_done(wh_up_req *r, int err, void *arg)
{
	struct bhead *b = arg;
	b->up = NULL;
	if (err != 0 && wh_resp_status(b->req) == 0)
		fetch_error(b->req, 0, 502, WH_UP_AUTH_OK, true, wh_strerror(err));
}

static const wh_up_cbs bhcbs = {bh_on_head, NULL, bh_on_done};

void wh_sync_blob(wh_sync *s, wh_req *req, const char *name, const char *digest,
                  const wh_sync_map *map)
{
	if (wh_store_blob_stat(s->store, name, digest, &(int64_t){0}) != WH_ENOTFOUND) {
		s->stats.hits[WH_SYNC_BLOB]++;
		s->stats.bytes_from_cache += (uint64_t)wh_serve_blob(req, s->store, name, digest);
		return;
	}
	struct bfetch *f = bfetch_find(s, digest);
	if (cached_only(req) && !(f && f->verified && strcmp(f->name, name) == 0)) {
		/* Held here once verified (being published is as good), and
		 * under this name only, as from the store. */
		not_cached(req);
		return;
	}
	s->stats.misses[WH_SYNC_BLOB]++;
	if (req->is_head && !f) {
		struct bhead *b = wh_calloc(1, sizeof(*b));
		b->req = req;
		b->declared = declared_size(s, map, digest);
		snprintf(b->digest, sizeof(b->digest), "%s", digest);
		wh_req_on_done(req, &b->gone, bhead_gone);
		char path[WH_NAME_MAX + WH_DIGEST_LEN + 64];
		snprintf(path, sizeof(path), "/v2/%s/blobs/%s", map->upstream, digest);
		b->up = wh_upstream_request(s->up, map->reg, "HEAD", path, map->upstream, NULL,
		                            NULL, &bhcbs, b);
		return;
	}
	if (!f) {
		int rc;
		f = bfetch_start(s, name, digest, map, &rc);
		if (!f) {
			wh_oci_storage_answer(req, rc, wh_strerror(rc));
			return;
		}
	} else {
		bfetch_also(f, name);
	}
	struct reader *rd = wh_calloc(1, sizeof(*rd));
	rd->f = f;
	rd->req = req;
	rd->head_only = req->is_head;
	rd->end = -1;
	rd->range = !req->is_head && wh_req_range(req, &rd->start, &rd->end);
	wh_list_insert_head(&f->readers, &rd->link);
	req->data = rd; /* for reader_writable */
	req->on_writable = reader_writable;
	wh_req_on_done(req, &rd->gone, reader_gone);
	if (f->got_head)
		reader_head(rd);
}

void wh_sync_get_stats(const wh_sync *s, wh_sync_stats *out)
{
	*out = s->stats;
	wh_list_foreach_safe(l, next, (wh_list *)&s->mfetches) {
		const struct mfetch *f = wh_list_entry(l, struct mfetch, link);
		out->fetches[WH_SYNC_MANIFEST]++;
		out->fetch_clients[WH_SYNC_MANIFEST] += (int)wh_list_count(&f->waiters);
	}
	wh_list_foreach_safe(l, next, (wh_list *)&s->bfetches) {
		const struct bfetch *f = wh_list_entry(l, struct bfetch, link);
		out->fetches[WH_SYNC_BLOB]++;
		out->fetch_clients[WH_SYNC_BLOB] += (int)wh_list_count(&f->readers);
	}
}

int wh_sync_blob_fetches(const wh_sync *s, wh_sync_fetch *out, int max)
{
	int n = 0;
	uint64_t now = uv_now(s->loop), wall = (uint64_t)wh_wall_ms();
	wh_list_foreach_safe(l, next, (wh_list *)&s->bfetches) {
		if (n >= max)
			break;
		const struct bfetch *f = wh_list_entry(l, struct bfetch, link);
		wh_sync_fetch *o = &out[n++];
		memcpy(o->repo, f->name, sizeof(o->repo));
		memcpy(o->digest, f->digest, sizeof(o->digest));
		o->bytes = f->written;
		o->total = f->total;
		o->clients = (int)wh_list_count(&f->readers);
		o->elapsed_ms = now - f->started_ms;
		o->started_ms = wall - o->elapsed_ms;
		o->verified = f->verified;
	}
	return n;
}

void wh_sync_set_make_room(wh_sync *s, wh_sync_make_room_fn fn, void *arg)
{
	s->make_room = fn;
	s->make_room_arg = arg;
}

/* ---- hooks for periodic sync (poll.h) ---- */

wh_upstream *wh_sync_upstream(wh_sync *s)
{
	return s->up;
}

const wh_sync_settings *wh_sync_settings_of(const wh_sync *s)
{
	return s->cfg;
}

wh_store *wh_sync_store(wh_sync *s)
{
	return s->store;
}

bool wh_sync_map_upstream(const wh_sync *s, const wh_sync_registry *reg, const char *upstream,
                          char *local, size_t locallen, wh_sync_map *map)
{
	(void)s;
	for (int j = 0; j < reg->n_content; j++) {
		const wh_sync_content *c = &reg->content[j];
		struct rule r = rule_of(c);
		if (!prefix_matches(r.prefix, r.pl, upstream))
			continue;
		/* The first rule that matches decides, as in Zot. The inverse of
		 * wh_sync_map_name: stripPrefix drops the prefix's literal leading
		 * components, destination goes in front. */
		const char *rest = upstream;
		if (c->strip_prefix) {
			size_t lit = literal_len(r.prefix, r.pl);
			rest = upstream + WH_MIN(lit, strlen(upstream));
			while (*rest == '/')
				rest++;
		}
		int k = snprintf(local, locallen, "%.*s%s%s", (int)r.dl, r.dest,
		                 r.dl && *rest ? "/" : "", rest);
		if (k <= 0 || (size_t)k >= locallen || !wh_name_valid(local, (size_t)k) ||
		    strlen(upstream) >= sizeof(map->upstream))
			return false;
		map->reg = reg;
		map->content = c;
		snprintf(map->upstream, sizeof(map->upstream), "%s", upstream);
		return true;
	}
	return false;
}

bool wh_sync_tag_allowed(const wh_sync *s, const wh_sync_map *map, const char *tag)
{
	return tag_allowed(s, map, tag);
}

void wh_sync_prefetch_manifest(wh_sync *s, const wh_sync_map *map, const char *name,
                               const char *ref, wh_sync_done_cb cb, void *arg)
{
	bool by_digest = wh_ref_is_digest(ref, strlen(ref));
	char local[WH_DIGEST_LEN + 1] = "";
	char *mt = NULL;
	int64_t size;
	bool have =
	    !by_digest && wh_store_manifest_stat(s->store, name, ref, local, &mt, &size) == 0;
	free(mt);
	struct mfetch *f = mfetch_find(s, name, ref);
	if (!f) {
		f = mfetch_for(s, name, ref, map, by_digest, have ? local : NULL);
		f->background = true;
	}
	note_add(&f->notes, cb, arg);
}

int wh_sync_prefetch_blob(wh_sync *s, const wh_sync_map *map, const char *name, const char *digest,
                          int64_t size, wh_sync_done_cb cb, void *arg)
{
	struct bfetch *f = bfetch_find(s, digest);
	if (!f) {
		if (size >= 0 && declared_size(s, map, digest) < 0) {
			/* The size the manifest declared, as note_sizes does. */
			size_t slot = fnv1a(digest, "") % SIZE_SLOTS;
			s->sizes[slot].reg = map->reg;
			s->sizes[slot].size = size;
			snprintf(s->sizes[slot].digest, sizeof(s->sizes[slot].digest), "%s",
			         digest);
		}
		int rc;
		f = bfetch_start(s, name, digest, map, &rc);
		if (!f)
			return rc;
	} else {
		bfetch_also(f, name);
	}
	note_add(&f->notes, cb, arg);
	return 0;
}

/* ---- listings: referrers and tags ---- */

#define REFERRERS_MAX     WH_MANIFEST_MAX    /* an upstream's referrers: an image index */
#define TAGS_BYTES_MAX    (16 * 1024 * 1024) /* an upstream's tags/list, all pages */
#define TAGS_MAX          100000
#define TAGS_PAGES_MAX    1000
#define LISTINGS_MAX      1024 /* cached answers */
#define LISTINGS_BYTES    (64 * 1024 * 1024)
#define LISTING_ENTRY_EST 64 /* bytes counted per entry and per tag beyond their text */

enum lkind { L_REFERRERS, L_TAGS };

/* An upstream's answer to a listing, kept. Entries change only when a fetch
 * ends (never while a request is being answered from one). */
struct lentry {
	wh_list link; /* in s->listings */
	enum lkind kind;
	char name[WH_NAME_MAX + 1];
	char key[WH_DIGEST_LEN + 1]; /* the subject of referrers; "" for tags */
	bool known;                  /* false: the upstream could not be asked (a failure noted) */
	int auth;                    /* then: enum wh_up_auth, why it could not */
	char *referrers;             /* a JSON array of descriptors */
	char **tags;                 /* sorted, no repeats */
	int n_tags;
	size_t bytes;
	uint64_t checked_ms;
	uint64_t valid_ms; /* fresh for this long after checked_ms */
};

enum lphase { LP_REFERRERS_API, LP_TAG_SCHEMA, LP_TAGS };

/* A listing being fetched; every client asking meanwhile waits on it. */
struct lfetch {
	struct body body; /* first */
	wh_list link;     /* in s->lfetches */
	wh_sync *s;
	enum lkind kind;
	enum lphase phase;
	char name[WH_NAME_MAX + 1];
	char key[WH_DIGEST_LEN + 1];
	wh_sync_map map;
	wh_up_req *up;
	int status;
	int auth; /* enum wh_up_auth: the upstream's 401 is about our credentials */
	char ctype[256];
	char next_path[1024]; /* the next page's path; "" when none */
	size_t total;         /* tag bytes over all pages */
	int pages;
	char **tags;
	int n_tags, cap_tags;
	wh_list waiters; /* struct waiter, newest first */
};

static void lentry_free(struct lentry *e)
{
	free(e->referrers);
	wh_strv_free(e->tags, e->n_tags);
	free(e);
}

static void lentry_unlink(wh_sync *s, struct lentry *e)
{
	wh_list_remove(&e->link);
	s->n_listings--;
	s->listings_bytes -= e->bytes;
}

static void lentry_push(wh_sync *s, struct lentry *e)
{
	wh_list_insert_head(&s->listings, &e->link);
	s->n_listings++;
	s->listings_bytes += e->bytes;
	/* The oldest go first; the one just stored stays. */
	while ((s->n_listings > LISTINGS_MAX || s->listings_bytes > LISTINGS_BYTES) &&
	       wh_list_last(&s->listings) != &e->link) {
		struct lentry *old = wh_list_entry(wh_list_last(&s->listings), struct lentry, link);
		lentry_unlink(s, old);
		lentry_free(old);
	}
}

static struct lentry *lentry_find(wh_sync *s, enum lkind kind, const char *name, const char *key)
{
	wh_list_foreach_safe(l, next, &s->listings) {
		struct lentry *e = wh_list_entry(l, struct lentry, link);
		if (e->kind == kind && strcmp(e->name, name) == 0 && strcmp(e->key, key) == 0)
			return e;
	}
	return NULL;
}

static bool lentry_fresh(const wh_sync *s, const struct lentry *e)
{
	return uv_now(s->loop) - e->checked_ms < e->valid_ms;
}

static void lentry_serve(wh_sync *s, const struct lentry *e, wh_req *req)
{
	if (e->kind == L_REFERRERS) {
		wh_serve_referrers(req, s->store, e->name, e->key, e->known ? e->referrers : NULL);
	} else {
		const wh_upstream_tags up = {
		    e->known, e->known ? e->tags : NULL, e->known ? e->n_tags : 0,
		    e->auth != WH_UP_AUTH_OK ? wh_upstream_auth_text(e->auth) : NULL};
		wh_serve_tags(req, s->store, e->name, &up);
	}
}

/* The manifests of an image index, validated, as a JSON array (malloc'd).
 * Returns 0; 1 when body is not an image index at all (not JSON, or no
 * manifests array, or another mediaType); -1 when it is one but a
 * descriptor is not valid. */
static int index_referrers(const char *body, size_t len, char **out)
{
	int rc = 1;
	*out = NULL;
	cJSON *doc = cJSON_ParseWithLength(body ? body : "", len);
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(doc, "mediaType");
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "manifests");
	const cJSON *d;
	if (!cJSON_IsObject(doc) || !cJSON_IsArray(list) ||
	    (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, WH_MT_OCI_INDEX) != 0)))
		goto out;
	rc = -1;
	cJSON_ArrayForEach(d, list)
	{
		if (!wh_descriptor_valid(d))
			goto out;
	}
	*out = cJSON_PrintUnformatted(list);
	rc = *out ? 0 : -1;
out:
	cJSON_Delete(doc);
	return rc;
}

static void lfetch_free(struct lfetch *f)
{
	free(f->body.buf);
	wh_strv_free(f->tags, f->n_tags);
	free(f);
}

/* The fetch is over: keep what it found (referrers, or tags taken from f),
 * or note a failure (why), and answer everyone waiting from the cache. */
static void lfetch_finish(struct lfetch *f, char *referrers, const char *why)
{
	wh_sync *s = f->s;
	wh_list_remove(&f->link);
	struct lentry *e = lentry_find(s, f->kind, f->name, f->key);
	bool ok = why == NULL;
	uint64_t interval = (uint64_t)check_interval(s, &f->map);
	if (!ok) {
		wh_log(WH_LOG_WARN,
		       e && e->known ? "cannot list upstream, serving the cached answer"
		                     : "cannot list upstream, serving the local answer",
		       "repo", WH_LS, f->name, "listing", WH_LS,
		       f->kind == L_REFERRERS ? "referrers" : "tags", "upstream", WH_LS,
		       f->map.reg->urls[0], "error", WH_LS, why, NULL);
	}
	if (e && (ok || !e->known)) {
		lentry_unlink(s, e);
		lentry_free(e);
		e = NULL;
	}
	if (!e) {
		e = wh_calloc(1, sizeof(*e));
		e->kind = f->kind;
		snprintf(e->name, sizeof(e->name), "%s", f->name);
		snprintf(e->key, sizeof(e->key), "%s", f->key);
		e->known = ok;
		e->auth = ok ? WH_UP_AUTH_OK : f->auth;
		e->bytes = LISTING_ENTRY_EST;
		if (ok && f->kind == L_REFERRERS) {
			e->referrers = referrers;
			referrers = NULL;
			e->bytes += strlen(e->referrers);
		} else if (ok) {
			e->tags = f->tags;
			e->n_tags = f->n_tags;
			f->tags = NULL;
			f->n_tags = 0;
			e->bytes += f->total + (size_t)e->n_tags * LISTING_ENTRY_EST;
		}
		lentry_push(s, e);
	}
	free(referrers);
	/* A failure is not asked about again by every request meanwhile. */
	e->checked_ms = uv_now(s->loop);
	e->valid_ms = ok ? interval : WH_MIN(interval, (uint64_t)RECHECK_AFTER_ERROR_MS);
	wh_req *req;
	while ((req = waiter_pop(&f->waiters)))
		lentry_serve(s, e, req);
	lfetch_free(f);
}

static void l_on_head(wh_up_req *r, const wh_up_head *h, void *arg)
{
	struct lfetch *f = arg;
	f->status = h->status;
	f->auth = h->auth;
	snprintf(f->ctype, sizeof(f->ctype), "%s", h->content_type ? h->content_type : "");
	snprintf(f->next_path, sizeof(f->next_path), "%s", h->link_next ? h->link_next : "");
}

static void l_on_done(wh_up_req *r, int err, void *arg);

static const wh_up_cbs lcbs = {l_on_head, body_on_data, l_on_done};

static void lfetch_request(struct lfetch *f, enum lphase phase, const char *path)
{
	wh_up_opts opts = {.max_body = REFERRERS_MAX};
	if (phase == LP_TAGS)
		opts.max_body = (int64_t)(TAGS_BYTES_MAX - f->total);
	f->phase = phase;
	f->body.len = 0;
	f->status = 0;
	f->auth = WH_UP_AUTH_OK;
	f->up = wh_upstream_request(f->s->up, f->map.reg, "GET", path, f->map.upstream,
	                            phase == LP_TAGS            ? "application/json"
	                            : phase == LP_REFERRERS_API ? WH_MT_OCI_INDEX
	                                                        : ACCEPT_ALL,
	                            &opts, &lcbs, f);
}

/* The tag schema: the referrers of <alg>:<hex> are the manifests of the
 * index tagged <alg>-<hex>, the hex cut to 64 characters (a sha512
 * subject's tag is sha512- and the first half of its hex). */
static void lfetch_tag_schema(struct lfetch *f)
{
	char path[WH_NAME_MAX + WH_REF_MAX + 64];
	snprintf(path, sizeof(path), "/v2/%s/manifests/%s-%.64s", f->map.upstream,
	         wh_digest_alg_name(wh_digest_alg_of(f->key)), wh_digest_encoded(f->key));
	lfetch_request(f, LP_TAG_SCHEMA, path);
}

/* The path of the next page, when the upstream's Link names one on this
 * repository's tags/list (a full URL is reduced to its path: the request
 * goes to the same registry whatever host it names). Returns false if not. */
static bool next_tags_page(const struct lfetch *f, char *path, size_t len)
{
	const char *p = f->next_path;
	if (!*p)
		return false;
	const char *scheme = strstr(p, "://");
	if (scheme && scheme < p + 8) {
		p = strchr(scheme + 3, '/');
		if (!p)
			return false;
	}
	char want[WH_NAME_MAX + 64];
	int k = snprintf(want, sizeof(want), "/v2/%s/tags/list", f->map.upstream);
	if (k < 0 || strncmp(p, want, (size_t)k) != 0 || (p[k] != '?' && p[k] != '\0') ||
	    strpbrk(p, " \t\r\n#"))
		return false;
	snprintf(path, len, "%s", p);
	return true;
}

/* One page of tags/list: append its tags. Returns NULL, or what is wrong. */
static const char *take_tags_page(struct lfetch *f)
{
	const char *why = NULL;
	cJSON *doc = cJSON_ParseWithLength(f->body.buf ? f->body.buf : "", f->body.len);
	const cJSON *tags = cJSON_GetObjectItemCaseSensitive(doc, "tags");
	const cJSON *t;
	if (!cJSON_IsObject(doc) || !(cJSON_IsArray(tags) || cJSON_IsNull(tags) || !tags)) {
		why = "tags/list is not a tag list";
		goto out;
	}
	f->total += f->body.len;
	const cJSON *arr = cJSON_IsArray(tags) ? tags : NULL;
	cJSON_ArrayForEach(t, arr)
	{
		if (!cJSON_IsString(t) || !wh_tag_valid(t->valuestring, strlen(t->valuestring))) {
			why = "tags/list holds something that is not a tag";
			goto out;
		}
		if (!tag_allowed(f->s, &f->map, t->valuestring))
			continue;
		if (f->n_tags >= TAGS_MAX) {
			why = "more than 100,000 tags";
			goto out;
		}
		f->tags = wh_grow(f->tags, sizeof(*f->tags), f->n_tags, &f->cap_tags, 64);
		f->tags[f->n_tags++] = wh_strdup(t->valuestring);
	}
out:
	cJSON_Delete(doc);
	return why;
}

static void tags_done(struct lfetch *f)
{
	if (f->n_tags > 0)
		qsort(f->tags, (size_t)f->n_tags, sizeof(*f->tags), wh_store_tag_cmp);
	int k = 0;
	for (int i = 0; i < f->n_tags; i++) {
		if (k > 0 && strcmp(f->tags[k - 1], f->tags[i]) == 0)
			free(f->tags[i]);
		else
			f->tags[k++] = f->tags[i];
	}
	f->n_tags = k;
	lfetch_finish(f, NULL, NULL);
}

static void l_on_done(wh_up_req *r, int err, void *arg)
{
	struct lfetch *f = arg;
	f->up = NULL;
	char why[96];
	char *list = NULL;
	if (err != 0) {
		snprintf(why, sizeof(why), "%s",
		         err == WH_ETOOBIG
		             ? (f->phase == LP_TAGS ? "tags/list over 16 MiB"
		                                    : "referrers over " WH_MANIFEST_MAX_TEXT)
		             : wh_strerror(err));
		lfetch_finish(f, NULL, why);
		return;
	}
	if (f->auth != WH_UP_AUTH_OK) {
		/* We could not ask: not "none". */
		lfetch_finish(f, NULL, wh_upstream_auth_text(f->auth));
		return;
	}
	bool absent = f->status == 404 || f->status == 401 || f->status == 403;
	switch (f->phase) {
	case LP_REFERRERS_API:
		if (absent || f->status == 405) {
			lfetch_tag_schema(f); /* no referrers API */
			return;
		}
		if (f->status != 200)
			break;
		switch (index_referrers(f->body.buf, f->body.len, &list)) {
		case 0:
			lfetch_finish(f, list, NULL);
			return;
		case 1:
			/* Not an index: no referrers API there, unless it said it
			 * was one. */
			if (strcmp(f->ctype, WH_MT_OCI_INDEX) != 0) {
				lfetch_tag_schema(f);
				return;
			}
			/* fall through */
		default:
			lfetch_finish(f, NULL, "the upstream's referrers are not a valid index");
			return;
		}
	case LP_TAG_SCHEMA:
		if (absent) {
			lfetch_finish(f, wh_strdup("[]"), NULL); /* no referrers */
			return;
		}
		if (f->status != 200)
			break;
		if (index_referrers(f->body.buf, f->body.len, &list) != 0) {
			lfetch_finish(f, NULL, "the upstream's referrers tag is not a valid index");
			return;
		}
		lfetch_finish(f, list, NULL);
		return;
	case LP_TAGS: {
		if (absent && f->pages == 0) {
			tags_done(f); /* the upstream has no such repository */
			return;
		}
		if (f->status != 200)
			break;
		const char *bad = take_tags_page(f);
		if (bad) {
			lfetch_finish(f, NULL, bad);
			return;
		}
		char path[sizeof(f->next_path)];
		if (next_tags_page(f, path, sizeof(path))) {
			if (++f->pages >= TAGS_PAGES_MAX) {
				lfetch_finish(f, NULL, "tags/list pages without end");
				return;
			}
			lfetch_request(f, LP_TAGS, path);
			return;
		}
		tags_done(f);
		return;
	}
	}
	snprintf(why, sizeof(why), "upstream answered %d", f->status);
	lfetch_finish(f, NULL, why);
}

/* The fetch of this listing in flight, or a new one. */
static struct lfetch *lfetch_for(wh_sync *s, enum lkind kind, const char *name, const char *key,
                                 const wh_sync_map *map)
{
	wh_list_foreach_safe(l, next, &s->lfetches) {
		struct lfetch *f = wh_list_entry(l, struct lfetch, link);
		if (f->kind == kind && strcmp(f->name, name) == 0 && strcmp(f->key, key) == 0)
			return f;
	}
	struct lfetch *f = wh_calloc(1, sizeof(*f));
	f->s = s;
	wh_list_init(&f->waiters);
	f->kind = kind;
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->key, sizeof(f->key), "%s", key);
	f->map = *map;
	wh_list_insert_head(&s->lfetches, &f->link);
	char path[WH_NAME_MAX + WH_REF_MAX + 64];
	if (kind == L_REFERRERS) {
		snprintf(path, sizeof(path), "/v2/%s/referrers/%s", map->upstream, key);
		lfetch_request(f, LP_REFERRERS_API, path);
	} else {
		snprintf(path, sizeof(path), "/v2/%s/tags/list", map->upstream);
		lfetch_request(f, LP_TAGS, path);
	}
	return f;
}

static void listing(wh_sync *s, wh_req *req, enum lkind kind, const char *name, const char *key,
                    const wh_sync_map *map)
{
	struct lentry *e = lentry_find(s, kind, name, key);
	if (e && lentry_fresh(s, e)) {
		lentry_serve(s, e, req);
		return;
	}
	if (e && e->known) {
		/* Stale while revalidating, as manifests by tag are. Registered
		 * before the answer goes, for a pipelined request to find. */
		lfetch_for(s, kind, name, key, map);
		lentry_serve(s, e, req);
		return;
	}
	struct lfetch *f = lfetch_for(s, kind, name, key, map);
	waiter_add(&f->waiters, req);
}

void wh_sync_referrers(wh_sync *s, wh_req *req, const char *name, const char *digest,
                       const wh_sync_map *map)
{
	listing(s, req, L_REFERRERS, name, digest, map);
}

void wh_sync_tag_list(wh_sync *s, wh_req *req, const char *name, const wh_sync_map *map)
{
	listing(s, req, L_TAGS, name, "", map);
}

/* Cancel the listings' fetches (their clients' connections are cut) and
 * drop the cached answers. */
static void listings_free(wh_sync *s)
{
	while (!wh_list_empty(&s->lfetches)) {
		struct lfetch *f = wh_list_entry(wh_list_first(&s->lfetches), struct lfetch, link);
		wh_list_remove(&f->link);
		if (f->up)
			wh_upstream_cancel(f->up);
		wh_req *req;
		while ((req = waiter_pop(&f->waiters)))
			wh_req_abort(req);
		lfetch_free(f);
	}
	while (!wh_list_empty(&s->listings)) {
		struct lentry *e = wh_list_entry(wh_list_first(&s->listings), struct lentry, link);
		lentry_unlink(s, e);
		lentry_free(e);
	}
}

/* ---- life ---- */

/* Each registry's content rules' tag regexes, compiled ([registry][rule]). */
static struct rule_re **rules_compile(const wh_sync_settings *cfg)
{
	struct rule_re **re = wh_calloc((size_t)cfg->n_registries + 1, sizeof(*re));
	for (int i = 0; i < cfg->n_registries; i++) {
		const wh_sync_registry *reg = &cfg->registries[i];
		re[i] = wh_calloc((size_t)(reg->n_content ? reg->n_content : 1), sizeof(**re));
		for (int j = 0; j < reg->n_content; j++) {
			const wh_sync_tags *t = &reg->content[j].tags;
			struct rule_re *r = &re[i][j];
			/* Validated by the config already. */
			char e[160];
			if (t->regex)
				wh_regex_compile(t->regex, &r->re, e, sizeof(e));
			if (t->exclude_regex)
				wh_regex_compile(t->exclude_regex, &r->ex, e, sizeof(e));
		}
	}
	return re;
}

static void rules_free(const wh_sync_settings *cfg, struct rule_re **re)
{
	for (int i = 0; i < cfg->n_registries; i++) {
		for (int j = 0; j < cfg->registries[i].n_content; j++) {
			wh_regex_free(re[i][j].re);
			wh_regex_free(re[i][j].ex);
		}
		free(re[i]);
	}
	free(re);
}

int wh_sync_new(uv_loop_t *loop, const wh_sync_settings *cfg, wh_store *store, wh_sync **out,
                char *err, size_t errlen)
{
	*out = NULL;
	if (!cfg->enable || cfg->n_registries == 0)
		return 0;
	wh_sync *s = wh_calloc(1, sizeof(*s));
	s->loop = loop;
	s->cfg = cfg;
	s->store = store;
	wh_list_init(&s->mfetches);
	wh_list_init(&s->bfetches);
	wh_list_init(&s->lfetches);
	wh_list_init(&s->listings);
	int rc = wh_upstream_new(loop, &cfg->upstream, &s->up, err, errlen);
	if (rc != 0) {
		free(s);
		return rc;
	}
	s->re = rules_compile(cfg);
	*out = s;
	return 0;
}

int wh_sync_reload(wh_sync *s, const wh_sync_settings *cfg, char *err, size_t errlen)
{
	if (!cfg->enable || cfg->n_registries == 0) {
		snprintf(err, errlen, "extensions.sync: turning sync off needs a restart");
		return WH_EINVAL;
	}
	int rc = wh_upstream_reload(s->up, &cfg->upstream, err, errlen);
	if (rc != 0)
		return rc;
	s->retired = wh_realloc(s->retired, sizeof(*s->retired) * (size_t)(s->n_retired + 1));
	s->retired[s->n_retired++] = (struct retired){s->cfg, s->re};
	s->cfg = cfg;
	s->re = rules_compile(cfg);
	/* Freshness was judged under the old rules: ask again. */
	memset(s->fresh, 0, sizeof(s->fresh));
	return 0;
}

void wh_sync_free(wh_sync *s)
{
	if (!s)
		return;
	while (!wh_list_empty(&s->mfetches)) {
		struct mfetch *f = wh_list_entry(wh_list_first(&s->mfetches), struct mfetch, link);
		if (f->up)
			wh_upstream_cancel(f->up);
		wh_req *req;
		while ((req = waiter_pop(&f->waiters)))
			wh_req_abort(req);
		mfetch_unlink(f);
		notes_drop(&f->notes);
		if (f->storing || f->making_room) {
			/* The store, or the room-making hook, calls back; its
			 * callback frees it. */
			f->orphan = true;
			continue;
		}
		free(f->body.buf);
		free(f);
	}
	while (!wh_list_empty(&s->bfetches)) {
		struct bfetch *f = wh_list_entry(wh_list_first(&s->bfetches), struct bfetch, link);
		if (f->publishing) {
			/* The store still has it; its callback frees it. */
			bfetch_unlink(f);
			notes_drop(&f->notes);
			f->orphan = true;
			continue;
		}
		if (f->up)
			wh_upstream_cancel(f->up);
		/* Making room: the hook calls back, which frees it. */
		f->orphan = f->making_room;
		f->fetch_done = true;
		bfetch_unlink(f);
		notes_drop(&f->notes);
		bfetch_fail(f, "shutting down");
		while (!wh_list_empty(&f->readers)) {
			struct reader *rd =
			    wh_list_entry(wh_list_first(&f->readers), struct reader, link);
			wh_list_remove(&rd->link);
			rd->req->data = NULL;
			wh_req_cancel_done(rd->req, &rd->gone);
			free(rd);
		}
		bfetch_maybe_free(f);
	}
	listings_free(s);
	wh_upstream_free(s->up);
	rules_free(s->cfg, s->re);
	for (int i = 0; i < s->n_retired; i++)
		rules_free(s->retired[i].cfg, s->retired[i].re);
	free(s->retired);
	free(s);
}

/* ---- configuration: extensions.sync ---- */

/* What is wrong with an upstream URL, or NULL: Wharf takes
 * http(s)://host[:port] with an optional trailing slash, nothing more. */
static const char *url_problem(const char *u)
{
	const char *h, *c;

	if (strncasecmp(u, "https://", 8) == 0)
		h = u + 8;
	else if (strncasecmp(u, "http://", 7) == 0)
		h = u + 7;
	else
		return "is not an http:// or https:// URL";
	c = h;
	if (h[strcspn(h, "@/")] == '@')
		return "must not hold credentials (put them in extensions.sync.credentialsFile)";
	if (*c == '[') { /* IPv6 literal */
		for (c++; *c && *c != ']'; c++)
			if (!strchr("0123456789abcdefABCDEF:.", *c))
				return "has a bad IPv6 address";
		if (*c != ']' || c == h + 1)
			return "has a bad IPv6 address";
		c++;
	} else {
		while ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		       (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_')
			c++;
		if (c == h)
			return "has no host";
	}
	if (*c == ':') {
		long port = 0;
		int digits = 0;
		for (c++; *c >= '0' && *c <= '9' && digits < 6; c++, digits++)
			port = port * 10 + (*c - '0');
		if (digits == 0 || port < 1 || port > 65535)
			return "has a bad port";
	}
	if (*c == '/')
		c++;
	if (*c)
		return "must be scheme://host[:port] (no path, query or credentials)";
	return NULL;
}

#define REG(m) offsetof(wh_sync_registry, m)
#define CON(m) offsetof(wh_sync_content, m)

static const wh_conf_key tags_fields[] = {
    {"regex", WH_CONF_REGEX, 0, CON(tags.regex), NULL, NULL},
    {"excludeRegex", WH_CONF_REGEX, 0, CON(tags.exclude_regex), NULL, NULL},
    {"semver", WH_CONF_BOOL, 0, CON(tags.semver), NULL, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

static const wh_conf_key content_fields[] = {
    {"prefix", WH_CONF_GLOB, 0, CON(prefix), NULL, NULL},
    {"destination", WH_CONF_STRING, 0, CON(destination), NULL, NULL},
    {"stripPrefix", WH_CONF_BOOL, 0, CON(strip_prefix), NULL, NULL},
    {"tags", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, tags_fields, NULL},
    /* Every platform of an index is synced. */
    {"platforms", WH_CONF_ANY, 0, WH_CONF_NOSTORE, NULL, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

static int check_content(wh_conf *p, const wh_sync_content *c)
{
	size_t old;
	int rc = 0;

	if (!c->prefix) {
		old = wh_conf_push_key(p, "prefix");
		rc = wh_conf_fail(p, "required");
		wh_conf_pop(p, old);
	} else if (c->strip_prefix && c->destination && strcmp(c->destination, "/") == 0 &&
	           !strstr(c->prefix, "/*")) {
		/* Zot's rule: stripping the whole name would leave nothing to store. */
		old = wh_conf_push_key(p, "stripPrefix");
		rc = wh_conf_fail(p,
		                  "with destination \"/\" the prefix must contain a glob (\"/*\")");
		wh_conf_pop(p, old);
	}
	return rc;
}

static int content_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_sync_content *c = &((wh_sync_registry *)arg)->content[i];
	int rc = wh_conf_walk(p, item, content_fields, (char *)c);
	return rc ? rc : check_content(p, c);
}

static int parse_contents(wh_conf *p, const cJSON *v, char *base)
{
	wh_sync_registry *r = (wh_sync_registry *)(void *)base;
	r->n_content = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
	r->content = wh_calloc((size_t)r->n_content + 1, sizeof(*r->content));
	return wh_conf_each(p, v, false, "expected an array", content_item, r);
}

static int url_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_sync_registry *r = arg;
	const char *why;

	if (!cJSON_IsString(item))
		return wh_conf_fail(p, "expected a string");
	if ((why = url_problem(item->valuestring)))
		return wh_conf_fail(p, "\"%s\" %s", item->valuestring, why);
	r->urls[r->n_urls++] = wh_strdup(item->valuestring);
	return 0;
}

static int parse_urls(wh_conf *p, const cJSON *v, char *base)
{
	wh_sync_registry *r = (wh_sync_registry *)(void *)base;
	r->urls = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*r->urls));
	return wh_conf_each(p, v, false, "expected an array of URLs", url_item, r);
}

static const wh_conf_key registry_fields[] = {
    {"urls", WH_CONF_CUSTOM, WH_CONF_LIST, WH_CONF_NOSTORE, NULL, parse_urls},
    {"onDemand", WH_CONF_BOOL, 0, REG(on_demand), NULL, NULL},
    {"tlsVerify", WH_CONF_BOOL, 0, REG(tls_verify), NULL, NULL},
    {"certDir", WH_CONF_STRING, 0, REG(cert_dir), NULL, NULL},
    {"maxRetries", WH_CONF_INT, 0, REG(max_retries), NULL, NULL},
    {"retryDelay", WH_CONF_DURATION, 0, REG(retry_delay_ms), NULL, NULL},
    {"pollInterval", WH_CONF_DURATION, 0, REG(poll_interval_ms), NULL, NULL},
    /* true is refused by check_registry: not silently ignored. */
    {"onlySigned", WH_CONF_BOOL, 0, REG(only_signed), NULL, NULL},
    {"content", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_contents},
    {"manifestCheckInterval", WH_CONF_DURATION, 0, REG(manifest_check_interval_ms), NULL, NULL},
    /* Wharf stores what upstream sends, byte for byte: always "preserved". */
    {"preserveDigest", WH_CONF_BOOL, 0, WH_CONF_NOSTORE, NULL, NULL},
    {"maxRetryDelay", WH_CONF_DURATION, 0, REG(max_retry_delay_ms), NULL, NULL},
    {"syncLegacyCosignTags", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"credentialHelper", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"oauth2CredentialHelper", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"syncTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, REG(sync_timeout_ms), NULL, NULL},
    {"responseHeaderTimeout", WH_CONF_DURATION, WH_CONF_POSITIVE, REG(response_header_timeout_ms),
     NULL, NULL},
    {"reqConcurrent", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"reqPerSec", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"disableHTTP2", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"maxIdleConnsPerHost", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    /* Every platform of an index is synced. */
    {"platforms", WH_CONF_ANY, 0, WH_CONF_NOSTORE, NULL, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

/* Checks across the keys of one registry, and its defaults. */
static int check_registry(wh_conf *p, wh_sync_registry *r)
{
	size_t old;
	int rc = 0;

	if (r->n_urls == 0) {
		old = wh_conf_push_key(p, "urls");
		rc = wh_conf_fail(p, "at least one URL is required");
		wh_conf_pop(p, old);
	} else if (r->max_retries >= 0 && r->retry_delay_ms < 0) {
		old = wh_conf_push_key(p, "maxRetries");
		rc = wh_conf_fail(p, "retryDelay is required with maxRetries (as in Zot)");
		wh_conf_pop(p, old);
	} else if (r->max_retry_delay_ms >= 0 && r->retry_delay_ms < 0) {
		old = wh_conf_push_key(p, "maxRetryDelay");
		rc = wh_conf_fail(p, "retryDelay is required with maxRetryDelay (as in Zot)");
		wh_conf_pop(p, old);
	} else if (r->max_retry_delay_ms >= 0 && r->max_retry_delay_ms < r->retry_delay_ms) {
		old = wh_conf_push_key(p, "maxRetryDelay");
		rc = wh_conf_fail(p, "must not be less than retryDelay (as in Zot)");
		wh_conf_pop(p, old);
	} else if (r->manifest_check_interval_ms > 0 && !r->on_demand) {
		old = wh_conf_push_key(p, "manifestCheckInterval");
		rc = wh_conf_fail(p, "requires onDemand to be true");
		wh_conf_pop(p, old);
	} else if (r->only_signed) {
		old = wh_conf_push_key(p, "onlySigned");
		rc = wh_conf_fail(p,
		                  "not supported by Wharf: images would be synced without checking "
		                  "their signatures; remove the key or set it to false");
		wh_conf_pop(p, old);
	}
	r->content_given = r->n_content > 0;
	if (r->n_content == 0) {
		/* As Zot: no content rules mirror every name, at the root. */
		free(r->content);
		r->content = wh_calloc(1, sizeof(*r->content));
		r->content[0].prefix = wh_strdup("**");
		r->n_content = 1;
	}
	bool periodic = r->poll_interval_ms > 0 && r->content_given;
	if (!rc && r->poll_interval_ms > 0 && !r->content_given)
		wh_conf_notice(p,
		               "pollInterval without content rules: periodic sync needs them (as "
		               "in Zot), so none runs");
	if (!rc && !r->on_demand && !periodic)
		wh_conf_notice(p,
		               "onDemand is false and there is no periodic sync (pollInterval with "
		               "content rules): this registry is never fetched");
	/* As in Zot: no retries unless asked; maxRetryDelay is retryDelay unless
	 * set (a larger one makes the back-off exponential). */
	if (r->max_retries < 0)
		r->max_retries = 0;
	if (r->retry_delay_ms < 0)
		r->retry_delay_ms = 5 * WH_MINUTE_MS;
	if (r->max_retry_delay_ms < 0)
		r->max_retry_delay_ms = r->retry_delay_ms;
	return rc;
}

static int registry_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_sync_registry *r = &((wh_sync_settings *)arg)->registries[i];
	int rc;

	r->tls_verify = true;
	r->max_retries = -1; /* -1: absent, resolved by check_registry */
	r->retry_delay_ms = -1;
	r->max_retry_delay_ms = -1;
	r->manifest_check_interval_ms = -1;  /* resolved by finish */
	r->sync_timeout_ms = 3 * WH_HOUR_MS; /* Zot's default */
	/* Zot's is 30 s; a cache must not make a pull wait that long on an
	 * upstream that accepts and never answers. */
	r->response_header_timeout_ms = 4000;
	rc = wh_conf_walk(p, item, registry_fields, (char *)r);
	return rc ? rc : check_registry(p, r);
}

static int parse_registries(wh_conf *p, const cJSON *v, char *base)
{
	wh_sync_settings *cfg = (wh_sync_settings *)(void *)base;
	cfg->n_registries = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 0;
	cfg->registries = wh_calloc((size_t)cfg->n_registries + 1, sizeof(*cfg->registries));
	return wh_conf_each(p, v, false, "expected an array", registry_item, cfg);
}

#define SYN(m) offsetof(wh_sync_settings, m)

/* extensions.sync.wharf.peers: URLs as a registry's, each its own registry
 * (a peer's 504 must not send the request to the next URL as a fallback
 * would: each peer is asked in turn by sync itself). A peer is on the same
 * network and answers from its disk: no retries, 2 s to begin. */
static int parse_peers(wh_conf *p, const cJSON *v, char *base)
{
	wh_sync_settings *s = (wh_sync_settings *)(void *)base;
	wh_sync_registry list = {0};
	int rc = parse_urls(p, v, (char *)&list);
	s->peers = wh_calloc((size_t)list.n_urls + 1, sizeof(*s->peers));
	for (int i = 0; i < list.n_urls; i++) {
		wh_sync_registry *r = &s->peers[i];
		r->urls = wh_calloc(2, sizeof(*r->urls));
		r->urls[0] = list.urls[i];
		r->n_urls = 1;
		r->on_demand = true;
		r->tls_verify = true;
		r->retry_delay_ms = r->max_retry_delay_ms = 1000;
		r->sync_timeout_ms = 3 * WH_HOUR_MS;
		r->response_header_timeout_ms = 2000;
	}
	s->n_peers = list.n_urls;
	free(list.urls);
	return rc;
}

static const wh_conf_key sync_wharf_fields[] = {
    {"manifestCheckInterval", WH_CONF_DURATION, 0, SYN(manifest_check_interval_ms), NULL, NULL},
    {"peers", WH_CONF_CUSTOM, WH_CONF_LIST, WH_CONF_NOSTORE, NULL, parse_peers},
    WH_CONF_INLINED(wh_upstream_wharf_keys, SYN(upstream)),
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

static const wh_conf_key sync_fields[] = {
    {"enable", WH_CONF_BOOL, 0, SYN(enable), NULL, NULL},
    {"credentialsFile", WH_CONF_STRING, 0, SYN(upstream.credentials_file), NULL, NULL},
    {"registries", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_registries},
    {"downloadDir", WH_CONF_ANY, WH_CONF_WARN, WH_CONF_NOSTORE, NULL, NULL},
    {"wharf", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, sync_wharf_fields, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

int wh_sync_conf(wh_conf *p, const cJSON *v, char *base)
{
	wh_sync_settings *s = (wh_sync_settings *)(void *)base;
	if (cJSON_IsObject(v))
		s->enable = true; /* as Zot: present means enabled unless "enable" says not */
	return wh_conf_walk(p, v, sync_fields, base);
}

void wh_sync_settings_init(wh_sync_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->manifest_check_interval_ms = 5 * WH_MINUTE_MS;
	wh_upstream_settings_init(&s->upstream);
}

void wh_sync_settings_finish(wh_sync_settings *s)
{
	for (int i = 0; i < s->n_registries; i++)
		if (s->registries[i].manifest_check_interval_ms < 0)
			s->registries[i].manifest_check_interval_ms = s->manifest_check_interval_ms;
}

void wh_sync_settings_free(wh_sync_settings *s)
{
	for (int i = 0; i < s->n_registries; i++) {
		wh_sync_registry *r = &s->registries[i];
		for (int j = 0; j < r->n_urls; j++)
			free(r->urls[j]);
		free(r->urls);
		free(r->cert_dir);
		for (int j = 0; j < r->n_content; j++) {
			wh_sync_content *c = &r->content[j];
			free(c->prefix);
			free(c->destination);
			free(c->tags.regex);
			free(c->tags.exclude_regex);
		}
		free(r->content);
	}
	free(s->registries);
	for (int i = 0; i < s->n_peers; i++) {
		free(s->peers[i].urls[0]);
		free(s->peers[i].urls);
	}
	free(s->peers);
	wh_upstream_settings_free(&s->upstream);
	memset(s, 0, sizeof(*s));
}
