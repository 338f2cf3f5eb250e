/* The scrubber (scrub.h): sweeps of the root, on the caller's thread or on a
 * thread of its own, and extensions.scrub.
 *
 * What a sweep remembers, all for its own length only:
 *   inodes     (dev, ino, size, mtime) -> the hash of the file (with the
 *              algorithm of the digest it is stored under), or the error
 *              reading it: each file is read once, however many
 *              repositories link it;
 *   manifests  this repository's manifests by digest -> the verdict on the
 *              manifest and everything below it (an index's children are
 *              often index.json entries of their own, untagged);
 *   blobs      this repository's blobs by digest -> the verdict on the file
 *              (whether it was moved aside too).
 * The first is the large one: about 120 bytes a file (a sha512 digest fits
 * in each), 12 MiB for a root of 100,000 blobs. The two others are keyed
 * by the first 32 bytes of a digest: a sha256 whole, half a sha512, as
 * unique a content address either way.
 *
 * The rate: before each 1 MiB read, the read may start no earlier than the
 * bytes read so far allow (a read's start plus its bytes' share of a
 * second). A sweep that falls behind (a slow disk, a wait for the store's
 * lock) does not catch up in a burst: the budget starts again from then. */
#include "wharf/store/scrub.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/oci/ref.h"

#define CHUNK ((size_t)1 << 20) /* bytes per read */
/* index.json and manifests are read whole up to this (as the store reads
 * them); a larger manifest is only hashed. */
#define JSON_MAX     ((size_t)64 << 20)
#define ANN_REF_NAME "org.opencontainers.image.ref.name"
#define NS           1000000000ULL

/* A sweep ends early (wh_scrub_stop); positive, so never an error code. */
#define STOPPED 1

enum what {
	V_OK,
	V_MISMATCH, /* the bytes do not hash to the digest */
	V_MISSING,  /* no such file */
	V_READ,     /* it could not be read: err */
	V_DEEP,     /* an index nested deeper than WH_SCRUB_DEPTH_MAX */
};

#define DIGEST_BYTES 64 /* a sha512's; a sha256 uses the first 32 */

struct verdict {
	uint8_t what;
	uint8_t dlen; /* bytes of digest: 32 (sha256) or 64 (sha512) */
	int err;      /* V_READ: -errno */
	uint8_t
	    digest[DIGEST_BYTES]; /* the affected file's digest; in the inodes table, the hash */
};

struct slot {
	uint8_t key[32];
	bool used;
	bool cached; /* manifests: reached for a cached image (missing is fine there) */
	bool moved;  /* blobs: moved aside already */
	struct verdict v;
};

/* Open addressing, linear probing, at most half full. */
struct table {
	struct slot *s;
	size_t cap, n;
};

struct wh_scrub {
	wh_store *st;
	wh_scrub_opts opts;
	int64_t interval_ms, start_delay_ms;
	uv_thread_t thread;
	uv_mutex_t mu;
	uv_cond_t cond;
	bool stop; /* under mu */
};

struct sweep {
	wh_store *st;
	const char *root;
	const wh_scrub_opts *o;
	wh_scrub *bg;   /* the server's scrubber: stops and waits; NULL: run to the end */
	uint64_t allow; /* (uv_hrtime) the next read may start then, for the rate */
	unsigned char *buf;
	struct table inodes, manifests, blobs;
	const char *repo;
	bool cached; /* the image being checked came through the cache */
	wh_scrub_stats *stats;
};

/* ---- tables ---- */

static uint64_t key_hash(const uint8_t *k)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (int i = 0; i < 32; i++)
		h = (h ^ k[i]) * 1099511628211ULL;
	return h;
}

static struct slot *table_probe(struct slot *s, size_t cap, const uint8_t *key)
{
	size_t i = (size_t)key_hash(key) & (cap - 1);
	while (s[i].used && memcmp(s[i].key, key, 32) != 0)
		i = (i + 1) & (cap - 1);
	return &s[i];
}

/* The slot for key: found, or (add) a new one, zeroed but for its key;
 * NULL when absent and !add. Valid until the next add. */
static struct slot *table_get(struct table *t, const uint8_t *key, bool add)
{
	struct slot *e;
	if (t->cap && (e = table_probe(t->s, t->cap, key))->used)
		return e;
	if (!add)
		return NULL;
	if ((t->n + 1) * 2 > t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct slot *s = wh_calloc(cap, sizeof(*s));
		for (size_t i = 0; i < t->cap; i++)
			if (t->s[i].used)
				*table_probe(s, cap, t->s[i].key) = t->s[i];
		free(t->s);
		t->s = s;
		t->cap = cap;
	}
	e = table_probe(t->s, t->cap, key);
	memset(e, 0, sizeof(*e));
	memcpy(e->key, key, 32);
	e->used = true;
	t->n++;
	return e;
}

static void table_clear(struct table *t)
{
	if (t->n)
		memset(t->s, 0, t->cap * sizeof(*t->s));
	t->n = 0;
}

static void table_free(struct table *t)
{
	free(t->s);
	memset(t, 0, sizeof(*t));
}

/* ---- digests ---- */

static int unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The bytes of a digest ("<alg>:<hex>", checked) into out, the rest of it
 * zeroed; how many (32 for sha256, 64 for sha512). */
static uint8_t digest_bytes(const char *digest, uint8_t out[DIGEST_BYTES])
{
	const char *hex = wh_digest_encoded(digest);
	size_t n = strlen(hex) / 2;
	memset(out, 0, DIGEST_BYTES);
	for (size_t i = 0; i < n && i < DIGEST_BYTES; i++)
		out[i] = (uint8_t)(unhex(hex[2 * i]) << 4 | unhex(hex[2 * i + 1]));
	return (uint8_t)WH_MIN(n, (size_t)DIGEST_BYTES);
}

/* A table key for a digest: its first 32 bytes. */
static void digest_key(const char *digest, uint8_t key[32])
{
	uint8_t all[DIGEST_BYTES];
	digest_bytes(digest, all);
	memcpy(key, all, 32);
}

static void bytes_hex(const uint8_t *in, uint8_t n, char out[WH_DIGEST_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < n; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* A digest a store can hold: sha256 or sha512, well formed. */
static bool digest_ok(const char *d)
{
	return d && wh_digest_check(d, strlen(d)) == WH_DIGEST_OK;
}

/* ---- stops and the rate ---- */

/* Wait until the monotonic time t (uv_hrtime) or a stop; true if stopped. */
static bool wait_until(wh_scrub *sc, uint64_t t)
{
	bool stop;
	uv_mutex_lock(&sc->mu);
	for (;;) {
		uint64_t now = uv_hrtime();
		if (sc->stop || now >= t)
			break;
		(void)uv_cond_timedwait(&sc->cond, &sc->mu, t - now);
	}
	stop = sc->stop;
	uv_mutex_unlock(&sc->mu);
	return stop;
}

static bool stop_asked(wh_scrub *sc)
{
	bool stop;
	uv_mutex_lock(&sc->mu);
	stop = sc->stop;
	uv_mutex_unlock(&sc->mu);
	return stop;
}

/* Before a read: wait until the rate allows one; true if stopped. */
static bool pace(struct sweep *sw)
{
	uint64_t now = uv_hrtime();
	if (sw->o->rate > 0 && sw->allow > now) {
		if (sw->bg)
			return wait_until(sw->bg, sw->allow);
		while ((now = uv_hrtime()) < sw->allow) {
			struct timespec ts = {(time_t)((sw->allow - now) / NS),
			                      (long)((sw->allow - now) % NS)};
			nanosleep(&ts, NULL);
		}
		return false;
	}
	return sw->bg && stop_asked(sw->bg);
}

/* After a read of n bytes that started at start. */
static void account(struct sweep *sw, uint64_t start, size_t n)
{
	sw->stats->bytes += (int64_t)n;
	if (sw->o->rate > 0)
		sw->allow = WH_MAX(sw->allow, start) + (uint64_t)n * NS / (uint64_t)sw->o->rate;
}

/* Hash what fd holds with alg into *out (its digest's bytes and their
 * count), keeping the bytes in *keep (up to keep_max, NUL-terminated; more:
 * WH_ETOOBIG) when keep is not NULL. 0, -errno, WH_ETOOBIG or STOPPED. */
static int hash_fd(struct sweep *sw, int fd, wh_digest_alg alg, struct verdict *out, char **keep,
                   size_t *keep_len, size_t keep_max)
{
	wh_digest_ctx h;
	char digest[WH_DIGEST_LEN + 1];
	size_t cap = 0;

	wh_digest_init(&h, alg);
	for (;;) {
		if (pace(sw))
			return STOPPED;
		uint64_t start = uv_hrtime();
		ssize_t r = read(fd, sw->buf, CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		account(sw, start, (size_t)r);
		wh_digest_update(&h, sw->buf, (size_t)r);
		if (keep) {
			if (*keep_len + (size_t)r > keep_max)
				return WH_ETOOBIG;
			wh_buf_append(keep, keep_len, &cap, sw->buf, (size_t)r);
		}
	}
	wh_digest_final(&h, digest);
	out->dlen = digest_bytes(digest, out->digest);
	return 0;
}

/* ---- files ---- */

/* Open a file of the repository being swept; the fd, WH_ENOTFOUND, or
 * -errno. */
static int open_file(struct sweep *sw, const char *digest, struct stat *sb)
{
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/%s/blobs/%s/%s", sw->root, sw->repo,
	                 wh_digest_alg_name(wh_digest_alg_of(digest)), wh_digest_encoded(digest));
	if (n < 0 || (size_t)n >= sizeof(path))
		return -ENAMETOOLONG;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? WH_ENOTFOUND : -errno;
	int rc = fstat(fd, sb) < 0 ? -errno : S_ISREG(sb->st_mode) ? 0 : WH_ENOTFOUND;
	if (rc < 0) {
		close(fd);
		return rc;
	}
#ifdef POSIX_FADV_SEQUENTIAL
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
	return fd;
}

/* A corrupt file of a cached image goes; anything else stays. */
static bool corrupt(const struct verdict *v)
{
	return v->what == V_MISMATCH || (v->what == V_READ && v->err == -EIO);
}

static void move_aside(struct sweep *sw, const char *digest)
{
	if (wh_store_blob_quarantine(sw->st, sw->repo, digest) == 0)
		sw->stats->moved++;
}

/* What the file of a blob holds: its verdict (digest: the blob's). 0 or
 * STOPPED. */
static int check_file(struct sweep *sw, const char *digest, struct verdict *v)
{
	struct stat sb;
	int fd, rc = 0;

	memset(v, 0, sizeof(*v));
	v->dlen = digest_bytes(digest, v->digest);
	fd = open_file(sw, digest, &sb);
	if (fd < 0) {
		v->what = fd == WH_ENOTFOUND ? V_MISSING : V_READ;
		v->err = fd;
		return 0;
	}
	uint64_t key[4] = {(uint64_t)sb.st_dev, (uint64_t)sb.st_ino, (uint64_t)sb.st_size,
	                   (uint64_t)sb.st_mtim.tv_sec * NS + (uint64_t)sb.st_mtim.tv_nsec};
	struct slot *known = table_get(&sw->inodes, (const uint8_t *)key, false);
	struct verdict hashed;
	/* Hashed already, with this digest's algorithm (a file is stored under
	 * one digest: the other case is no more than a precaution). */
	if (known && (known->v.what != V_OK || known->v.dlen == v->dlen)) {
		hashed = known->v;
	} else {
		memset(&hashed, 0, sizeof(hashed));
		rc = hash_fd(sw, fd, wh_digest_alg_of(digest), &hashed, NULL, NULL, 0);
		if (rc == STOPPED)
			goto out;
		if (rc < 0) {
			hashed.what = V_READ;
			hashed.err = rc;
		}
		table_get(&sw->inodes, (const uint8_t *)key, true)->v = hashed;
		rc = 0;
	}
	if (hashed.what != V_OK) {
		v->what = hashed.what;
		v->err = hashed.err;
	} else if (hashed.dlen != v->dlen || memcmp(hashed.digest, v->digest, DIGEST_BYTES) != 0) {
		v->what = V_MISMATCH;
	}
out:
	close(fd);
	return rc;
}

/* A blob a manifest names (desc: its descriptor): the file's verdict, from
 * the repository's table or the disk, with what a missing blob means here;
 * a corrupt one of a cached image is moved aside. 0 or STOPPED. */
static int check_blob(struct sweep *sw, const cJSON *desc, struct verdict *v)
{
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(desc, "digest");
	uint8_t key[32];
	int rc;

	memset(v, 0, sizeof(*v));
	if (!cJSON_IsString(d) || !digest_ok(d->valuestring))
		return 0; /* nothing the store can hold */
	digest_key(d->valuestring, key);
	struct slot *e = table_get(&sw->blobs, key, false);
	if (e) {
		*v = e->v;
	} else {
		rc = check_file(sw, d->valuestring, v);
		if (rc)
			return rc;
		e = table_get(&sw->blobs, key, true);
		e->v = *v;
	}
	if (corrupt(v) && sw->cached && !e->moved) {
		e->moved = true;
		move_aside(sw, d->valuestring);
	}
	/* The cache fetches what clients ask for; a non-distributable layer
	 * lives where its urls say (a push does not need it either). */
	if (v->what == V_MISSING && (sw->cached || cJSON_GetObjectItemCaseSensitive(desc, "urls")))
		v->what = V_OK;
	return 0;
}

static void first_bad(struct verdict *acc, const struct verdict *v)
{
	if (acc->what == V_OK && v->what != V_OK)
		*acc = *v;
}

static int check_manifest(struct sweep *sw, const char *digest, int depth, struct verdict *v);

/* The manifests and blobs a manifest's bytes name, into *acc. */
static int check_refs(struct sweep *sw, const char *data, size_t len, int depth,
                      struct verdict *acc)
{
	cJSON *doc = cJSON_ParseWithLength(data, len);
	const cJSON *item;
	struct verdict v;
	int rc = 0;

	/* Not a document: its bytes are what was stored, nothing more to see. */
	if (!cJSON_IsObject(doc))
		goto out;
	const cJSON *children = cJSON_GetObjectItemCaseSensitive(doc, "manifests");
	if (cJSON_IsArray(children)) {
		cJSON_ArrayForEach(item, children)
		{
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(item, "digest");
			if (!cJSON_IsString(d) || !digest_ok(d->valuestring))
				continue;
			if (depth >= WH_SCRUB_DEPTH_MAX) {
				memset(&v, 0, sizeof(v));
				v.what = V_DEEP;
				v.dlen = digest_bytes(d->valuestring, v.digest);
				first_bad(acc, &v);
				break;
			}
			rc = check_manifest(sw, d->valuestring, depth + 1, &v);
			if (rc)
				goto out;
			/* A child the cache has not fetched yet. */
			uint8_t self[DIGEST_BYTES];
			digest_bytes(d->valuestring, self);
			if (v.what == V_MISSING && sw->cached &&
			    memcmp(v.digest, self, DIGEST_BYTES) == 0)
				v.what = V_OK;
			first_bad(acc, &v);
		}
	}
	const cJSON *config = cJSON_GetObjectItemCaseSensitive(doc, "config");
	if (cJSON_IsObject(config)) {
		rc = check_blob(sw, config, &v);
		if (rc)
			goto out;
		first_bad(acc, &v);
	}
	const cJSON *layers = cJSON_GetObjectItemCaseSensitive(doc, "layers");
	if (cJSON_IsArray(layers)) {
		cJSON_ArrayForEach(item, layers)
		{
			rc = check_blob(sw, item, &v);
			if (rc)
				goto out;
			first_bad(acc, &v);
		}
	}
out:
	cJSON_Delete(doc);
	return rc;
}

/* A manifest and everything below it: the first thing wrong (V_MISSING
 * about the manifest itself is left to the caller: what it means depends on
 * where it is named), remembered for the repository. 0 or STOPPED. */
static int check_manifest(struct sweep *sw, const char *digest, int depth, struct verdict *v)
{
	uint8_t key[32], self[DIGEST_BYTES];
	struct stat sb;
	char *data = NULL;
	size_t len = 0;
	int fd = -1, rc = 0;

	digest_key(digest, key);
	struct slot *e = table_get(&sw->manifests, key, false);
	if (e && e->cached == sw->cached) {
		*v = e->v;
		return 0;
	}
	memset(v, 0, sizeof(*v));
	v->dlen = digest_bytes(digest, v->digest);
	memcpy(self, v->digest, DIGEST_BYTES);
	wh_digest_alg alg = wh_digest_alg_of(digest);
	fd = open_file(sw, digest, &sb);
	if (fd < 0) {
		v->what = fd == WH_ENOTFOUND ? V_MISSING : V_READ;
		v->err = fd;
		goto done;
	}
	struct verdict got = {0};
	bool whole = (size_t)sb.st_size <= JSON_MAX;
	rc = hash_fd(sw, fd, alg, &got, whole ? &data : NULL, &len, JSON_MAX);
	if (rc == STOPPED)
		goto out;
	if (rc == WH_ETOOBIG) { /* it grew: judge it by its hash alone */
		free(data);
		data = NULL;
		whole = false;
		if (lseek(fd, 0, SEEK_SET) == 0)
			rc = hash_fd(sw, fd, alg, &got, NULL, NULL, 0);
		if (rc == STOPPED)
			goto out;
	}
	if (rc < 0) {
		v->what = V_READ;
		v->err = rc;
		rc = 0;
	} else if (got.dlen != v->dlen || memcmp(got.digest, self, DIGEST_BYTES) != 0) {
		v->what = V_MISMATCH;
	} else if (whole) {
		rc = check_refs(sw, data, len, depth, v);
		if (rc)
			goto out;
	}
	/* A corrupt manifest of a cached image is fetched again when asked. */
	if (corrupt(v) && memcmp(v->digest, self, DIGEST_BYTES) == 0 && sw->cached)
		move_aside(sw, digest);
done:
	e = table_get(&sw->manifests, key, true);
	e->cached = sw->cached;
	e->v = *v;
out:
	free(data);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- repositories ---- */

static cJSON *read_index(struct sweep *sw, const char *repo, int *err)
{
	char path[PATH_MAX];
	char *text = NULL;
	size_t len = 0;
	cJSON *idx = NULL;

	*err = 0;
	int n = snprintf(path, sizeof(path), "%s/%s/index.json", sw->root, repo);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		*err = -ENAMETOOLONG;
		return NULL;
	}
	*err = wh_read_file(path, JSON_MAX, &text, &len);
	if (*err == 0) {
		idx = cJSON_ParseWithLength(text, len);
		if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(idx, "manifests"))) {
			cJSON_Delete(idx);
			idx = NULL;
			*err = WH_EINVAL;
		}
	}
	free(text);
	return idx;
}

/* Whether index.json still names digest (a manifest found missing may have
 * been deleted since the sweep read it). */
static bool still_named(struct sweep *sw, const char *digest)
{
	int err;
	cJSON *idx = read_index(sw, sw->repo, &err), *e;
	bool named = false;

	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(idx, "manifests"))
	{
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "digest");
		named |= cJSON_IsString(d) && strcmp(d->valuestring, digest) == 0;
	}
	cJSON_Delete(idx);
	return named || err; /* unreadable now: as it was */
}

static void report(struct sweep *sw, const char *tag, const char *digest, const struct verdict *v)
{
	char hex[WH_DIGEST_HEX + 1] = "", error[160] = "";
	bool ok = v->what == V_OK;

	sw->stats->images++;
	if (ok) {
		wh_log(WH_LOG_INFO, "blobs/manifest ok", "image", WH_LS, sw->repo, "tag", WH_LS,
		       tag, "status", WH_LS, "ok", "component", WH_LS, "scrub", NULL);
	} else {
		sw->stats->affected++;
		bytes_hex(v->digest, v->dlen, hex);
		switch (v->what) {
		case V_MISMATCH:
			snprintf(error, sizeof(error), "bad blob digest");
			break;
		case V_MISSING:
			snprintf(error, sizeof(error), "blob not found");
			break;
		case V_READ:
			snprintf(error, sizeof(error), "cannot read: %s", wh_strerror(v->err));
			break;
		default:
			snprintf(error, sizeof(error), "index nested more than %d deep",
			         WH_SCRUB_DEPTH_MAX);
			break;
		}
		wh_log(WH_LOG_WARN, "blobs/manifest affected", "image", WH_LS, sw->repo, "tag",
		       WH_LS, tag, "status", WH_LS, "affected", "affected blob", WH_LS, hex,
		       "error", WH_LS, error, "component", WH_LS, "scrub", NULL);
	}
	if (sw->o->on_image) {
		wh_scrub_image img = {sw->repo, tag, digest, sw->cached, ok, hex, error};
		sw->o->on_image(sw->o->on_image_arg, &img);
	}
}

/* 0 or STOPPED. */
static int sweep_repo(struct sweep *sw, const char *repo)
{
	const cJSON *e;
	struct verdict v;
	int err, rc = 0;

	sw->repo = repo;
	sw->stats->repos++;
	cJSON *idx = read_index(sw, repo, &err);
	if (!idx) {
		sw->stats->errors++;
		wh_log(WH_LOG_ERROR, "scrub: cannot read the repository's index.json", "image",
		       WH_LS, repo, "error", WH_LS,
		       err == WH_EINVAL ? "not an image index with a manifests array"
		                        : wh_strerror(err),
		       "component", WH_LS, "scrub", NULL);
		return 0;
	}
	wh_log(WH_LOG_DEBUG, "executing scrub to check manifest/blob integrity", "image", WH_LS,
	       repo, "component", WH_LS, "scrub", NULL);
	table_clear(&sw->manifests);
	table_clear(&sw->blobs);
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(idx, "manifests"))
	{
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "digest");
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(
		    cJSON_GetObjectItemCaseSensitive(e, "annotations"), ANN_REF_NAME);
		if (!cJSON_IsString(d) || !digest_ok(d->valuestring))
			continue; /* the store serves none but sha256 and sha512 either */
		const char *digest = d->valuestring;
		const char *tag = cJSON_IsString(t) ? t->valuestring : digest;
		sw->cached = sw->o->cached && sw->o->cached(sw->o->cached_arg, repo, digest);
		rc = check_manifest(sw, digest, 0, &v);
		if (rc)
			break;
		uint8_t self[DIGEST_BYTES];
		digest_bytes(digest, self);
		if (v.what == V_MISSING && memcmp(v.digest, self, DIGEST_BYTES) == 0) {
			if (!still_named(sw, digest))
				continue; /* deleted meanwhile */
			if (sw->cached)
				v.what = V_OK; /* moved aside before: fetched again when asked */
		}
		report(sw, tag, digest, &v);
	}
	cJSON_Delete(idx);
	return rc;
}

static void sweep(wh_store *st, const wh_scrub_opts *o, wh_scrub *bg, wh_scrub_stats *stats)
{
	struct sweep sw = {.st = st, .root = wh_store_root(st), .o = o, .bg = bg, .stats = stats};
	char **names = NULL;
	int n = 0;
	uint64_t t0 = uv_hrtime();

	memset(stats, 0, sizeof(*stats));
	wh_log(WH_LOG_INFO, "scrub started", "rootDirectory", WH_LS, sw.root, "rate", WH_LI,
	       (long long)o->rate, "component", WH_LS, "scrub", NULL);
	sw.buf = wh_malloc(CHUNK);
	wh_store_repos_scan(sw.root, &names, &n);
	for (int i = 0; i < n && !stats->stopped; i++)
		stats->stopped = sweep_repo(&sw, names[i]) == STOPPED;
	wh_log(WH_LOG_INFO, stats->stopped ? "scrub stopped" : "scrub finished", "repositories",
	       WH_LI, (long long)stats->repos, "images", WH_LI, (long long)stats->images,
	       "affected", WH_LI, (long long)stats->affected, "moved", WH_LI,
	       (long long)stats->moved, "errors", WH_LI, (long long)stats->errors, "bytes", WH_LI,
	       (long long)stats->bytes, "ms", WH_LI, (long long)((uv_hrtime() - t0) / 1000000),
	       "component", WH_LS, "scrub", NULL);
	wh_strv_free(names, n);
	table_free(&sw.inodes);
	table_free(&sw.manifests);
	table_free(&sw.blobs);
	free(sw.buf);
}

void wh_scrub_run(wh_store *st, const wh_scrub_opts *opts, wh_scrub_stats *stats)
{
	sweep(st, opts, NULL, stats);
}

/* ---- the server's scrubber ---- */

static void scrub_thread(void *arg)
{
	wh_scrub *sc = arg;
	wh_scrub_stats stats;

	if (wait_until(sc, uv_hrtime() + (uint64_t)sc->start_delay_ms * 1000000))
		return;
	for (;;) {
		sweep(sc->st, &sc->opts, sc, &stats);
		if (stats.stopped ||
		    wait_until(sc, uv_hrtime() + (uint64_t)sc->interval_ms * 1000000))
			return;
	}
}

int wh_scrub_start(wh_store *st, const wh_scrub_settings *s, wh_scrub_cached_fn cached,
                   void *cached_arg, wh_scrub **out)
{
	wh_scrub *sc = wh_calloc(1, sizeof(*sc));
	int rc;

	*out = NULL;
	sc->st = st;
	sc->opts.rate = s->rate < 0 ? WH_SCRUB_RATE_DEFAULT : s->rate;
	sc->opts.cached = cached;
	sc->opts.cached_arg = cached_arg;
	sc->interval_ms = s->interval_ms;
	sc->start_delay_ms = s->start_delay_ms;
	rc = uv_mutex_init(&sc->mu);
	if (rc < 0)
		goto fail_mutex;
	rc = uv_cond_init(&sc->cond);
	if (rc < 0)
		goto fail_cond;
	/* The thread is born with every asynchronous signal blocked: they are
	 * the loop's (uv_signal). And sha256 picks its implementation on first
	 * use, a write nobody guards: let it happen here, before the thread. */
	sigset_t all, old;
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	(void)wh_sha256_impl();
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = uv_thread_create(&sc->thread, scrub_thread, sc);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		goto fail_thread;
	wh_log(WH_LOG_INFO, "scrub extension is enabled", "intervalMs", WH_LI,
	       (long long)sc->interval_ms, "startDelayMs", WH_LI, (long long)sc->start_delay_ms,
	       "rate", WH_LI, (long long)sc->opts.rate, "component", WH_LS, "scrub", NULL);
	*out = sc;
	return 0;

fail_thread:
	uv_cond_destroy(&sc->cond);
fail_cond:
	uv_mutex_destroy(&sc->mu);
fail_mutex:
	wh_log(WH_LOG_ERROR, "cannot start the scrubber", "error", WH_LS, uv_strerror(rc), NULL);
	free(sc);
	return rc;
}

void wh_scrub_stop(wh_scrub *sc)
{
	if (!sc)
		return;
	uv_mutex_lock(&sc->mu);
	sc->stop = true;
	uv_cond_signal(&sc->cond);
	uv_mutex_unlock(&sc->mu);
	uv_thread_join(&sc->thread);
	uv_cond_destroy(&sc->cond);
	uv_mutex_destroy(&sc->mu);
	free(sc);
}

/* ---- configuration: extensions.scrub ---- */

#define SCR(m) offsetof(wh_scrub_settings, m)

static const wh_conf_key scrub_wharf_keys[] = {
    WH_CONF_KEY("rate", WH_CONF_SIZE, 0, SCR(rate)),
    WH_CONF_KEY("startDelay", WH_CONF_DURATION, 0, SCR(start_delay_ms)),
    WH_CONF_END,
};

static const wh_conf_key scrub_keys[] = {
    WH_CONF_KEY("enable", WH_CONF_BOOL, 0, SCR(enable)),
    WH_CONF_KEY("interval", WH_CONF_DURATION, 0, SCR(interval_ms)),
    WH_CONF_SUB("wharf", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, scrub_wharf_keys),
    WH_CONF_END,
};

int wh_scrub_conf(wh_conf *c, const cJSON *v, char *base)
{
	wh_scrub_settings *s = (wh_scrub_settings *)(void *)base;
	if (cJSON_IsObject(v))
		s->enable = true; /* as Zot: present means enabled unless "enable" says not */
	int rc = wh_conf_walk(c, v, scrub_keys, base);
	if (rc == 0 && s->interval_ms < WH_SCRUB_INTERVAL_MIN) {
		if (s->enable) {
			size_t old = wh_conf_push_key(c, "interval");
			wh_conf_notice(c, "below 2h, the least Zot allows: raised to 2h");
			wh_conf_pop(c, old);
		}
		s->interval_ms = WH_SCRUB_INTERVAL_MIN;
	}
	return rc;
}

void wh_scrub_settings_init(wh_scrub_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->interval_ms = 24 * WH_HOUR_MS;
	s->rate = -1;
	s->start_delay_ms = WH_MINUTE_MS;
}
