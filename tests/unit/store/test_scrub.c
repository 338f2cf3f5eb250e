/* The scrubber against a fresh temp root: a clean root is all ok, a flipped
 * byte makes every image that holds the blob affected (an index through its
 * child), a missing blob is affected for pushed content and fine for cached
 * content, a corrupt file of a cached image is moved aside, each file is
 * read once however many repositories link it, the rate is held, and a
 * server's scrubber stops promptly in the middle of a sweep. */
#include "check.h"
#include "store_put.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "wharf/base/common.h"
#include "wharf/oci/ref.h"
#include "wharf/store/scrub.h"
#include "wharf/store/store.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX    "application/vnd.oci.image.index.v1+json"

static char root[64];

static void new_root(void)
{
	if (root[0])
		check_rm_rf(root);
	memcpy(root, "/tmp/wharf-test-scrub-XXXXXX", 29);
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		exit(2);
	}
}

/* An image manifest naming config and layers (NULL-terminated), stored in
 * repo under tag (NULL: untagged); its digest into digest, its bytes'
 * length into *len. */
static int put_image(wh_store *st, const char *repo, const char *tag, const char *config,
                     const char *const *layers, char digest[WH_DIGEST_LEN + 1], size_t *len)
{
	char json[4096];
	size_t n = 0;

	n += (size_t)snprintf(json + n, sizeof(json) - n,
	                      "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\","
	                      "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+"
	                      "json\",\"digest\":\"%s\",\"size\":1},\"layers\":[",
	                      config);
	for (int i = 0; layers[i]; i++)
		n += (size_t)snprintf(json + n, sizeof(json) - n,
		                      "%s{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
		                      "\"digest\":\"%s\",\"size\":1}",
		                      i ? "," : "", layers[i]);
	n += (size_t)snprintf(json + n, sizeof(json) - n, "]}");
	wh_sha256_digest(json, n, digest);
	if (len)
		*len = n;
	return wh_store_manifest_put(st, repo, tag, digest, MT_MANIFEST, json, n);
}

static int put_index(wh_store *st, const char *repo, const char *tag, const char *child,
                     char digest[WH_DIGEST_LEN + 1], size_t *len)
{
	char json[1024];
	int n = snprintf(json, sizeof(json),
	                 "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"manifests\":["
	                 "{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":1,"
	                 "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}",
	                 child);
	wh_sha256_digest(json, (size_t)n, digest);
	if (len)
		*len = (size_t)n;
	return wh_store_manifest_put(st, repo, tag, digest, MT_INDEX, json, (size_t)n);
}

static char *blob_path(char *buf, const char *repo, const char *digest)
{
	FMT(buf, PATH_MAX, "%s/%s/blobs/sha256/%s", root, repo, digest + 7);
	return buf;
}

/* Flip one byte of the file in place: every hard link sees it. */
static void flip(const char *repo, const char *digest)
{
	char p[PATH_MAX];
	int fd = open(blob_path(p, repo, digest), O_RDWR);
	unsigned char c = 0;
	CHECK(fd >= 0 && pread(fd, &c, 1, 0) == 1);
	c ^= 0x20;
	CHECK(fd >= 0 && pwrite(fd, &c, 1, 0) == 1);
	if (fd >= 0)
		close(fd);
}

/* ---- what a sweep reports ---- */

#define MAX_SEEN 32

struct seen {
	int n;
	struct {
		char repo[64], tag[WH_REF_MAX + 1], digest[WH_DIGEST_LEN + 1];
		char affected[WH_DIGEST_HEX + 1], error[160];
		bool ok, cached;
	} img[MAX_SEEN];
};

static void on_image(void *arg, const wh_scrub_image *img)
{
	struct seen *s = arg;
	if (s->n >= MAX_SEEN)
		return;
	FMT(s->img[s->n].repo, sizeof(s->img[0].repo), "%s", img->repo);
	FMT(s->img[s->n].tag, sizeof(s->img[0].tag), "%s", img->tag);
	FMT(s->img[s->n].digest, sizeof(s->img[0].digest), "%s", img->digest);
	FMT(s->img[s->n].affected, sizeof(s->img[0].affected), "%s", img->affected);
	FMT(s->img[s->n].error, sizeof(s->img[0].error), "%s", img->error);
	s->img[s->n].ok = img->ok;
	s->img[s->n].cached = img->cached;
	s->n++;
}

/* The report on repo's image called tag, or -1. */
static int find(const struct seen *s, const char *repo, const char *tag)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->img[i].repo, repo) == 0 && strcmp(s->img[i].tag, tag) == 0)
			return i;
	return -1;
}

static bool cached_repo(void *arg, const char *repo, const char *manifest_digest)
{
	(void)manifest_digest;
	return strcmp(repo, (const char *)arg) == 0;
}

static void sweep(wh_store *st, int64_t rate, const char *cached, struct seen *s,
                  wh_scrub_stats *stats)
{
	wh_scrub_opts o = {.rate = rate,
	                   .cached = cached ? cached_repo : NULL,
	                   .cached_arg = (void *)cached,
	                   .on_image = on_image,
	                   .on_image_arg = s};
	memset(s, 0, sizeof(*s));
	wh_scrub_run(st, &o, stats);
}

/* Two repositories holding the same image (dedupe: the same files), one
 * tagged and untagged manifest, an index over the image. */
static void test_sweep(void)
{
	char cfg[WH_DIGEST_LEN + 1], la[WH_DIGEST_LEN + 1], lb[WH_DIGEST_LEN + 1];
	char man[WH_DIGEST_LEN + 1], idx[WH_DIGEST_LEN + 1], other[WH_DIGEST_LEN + 1];
	char p[PATH_MAX];
	size_t man_len = 0, idx_len = 0, other_len = 0;
	wh_store *st = NULL;
	wh_scrub_stats stats;
	struct seen s;
	struct stat sb;
	int i;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	const char *repos[] = {"app", "mirror/app"};
	for (int r = 0; r < 2; r++) {
		CHECK(put_blob(st, repos[r], "{\"architecture\":\"amd64\"}", cfg) == 0);
		CHECK(put_blob(st, repos[r], "layer a bytes", la) == 0);
		CHECK(put_blob(st, repos[r], "layer b bytes", lb) == 0);
		const char *layers[] = {la, lb, NULL};
		CHECK(put_image(st, repos[r], "v1", cfg, layers, man, &man_len) == 0);
		CHECK(put_index(st, repos[r], "multi", man, idx, &idx_len) == 0);
	}
	const char *only_a[] = {la, NULL};
	CHECK(put_image(st, "app", NULL, cfg, only_a, other, &other_len) == 0);

	/* Clean: every image ok; each blob file read once for both
	 * repositories; manifests per repository. */
	sweep(st, 0, NULL, &s, &stats);
	CHECK(stats.repos == 2 && stats.images == 5 && stats.affected == 0 && stats.errors == 0);
	CHECK(stats.moved == 0 && !stats.stopped);
	CHECK(s.n == 5);
	for (i = 0; i < s.n; i++)
		CHECK(s.img[i].ok && !s.img[i].cached && !s.img[i].affected[0] &&
		      !s.img[i].error[0]);
	CHECK((i = find(&s, "app", other)) >= 0 && strcmp(s.img[i].digest, other) == 0);
	CHECK(find(&s, "mirror/app", "multi") >= 0);
	int64_t blobs = 24 + 13 + 13;
	CHECK(stats.bytes == blobs + 2 * (int64_t)(man_len + idx_len) + (int64_t)other_len);

	/* One byte of layer a: both repositories' v1, the index through its
	 * child, the untagged one: affected, naming layer a. */
	flip("app", la);
	sweep(st, 0, NULL, &s, &stats);
	CHECK(stats.images == 5 && stats.affected == 5 && stats.moved == 0);
	for (i = 0; i < s.n; i++) {
		CHECK(!s.img[i].ok && strcmp(s.img[i].affected, la + 7) == 0);
		CHECK_STREQ(s.img[i].error, "bad blob digest");
	}
	/* Pushed content is only reported. */
	CHECK(stat(blob_path(p, "app", la), &sb) == 0);
	CHECK(stat(blob_path(p, "mirror/app", la), &sb) == 0);

	/* mirror/app came through the cache: its corrupt file is moved aside
	 * (and the shared copy, the same inode), app's stays. */
	sweep(st, 0, "mirror/app", &s, &stats);
	CHECK(stats.affected == 5 && stats.moved == 1);
	CHECK((i = find(&s, "mirror/app", "v1")) >= 0 && s.img[i].cached && !s.img[i].ok);
	CHECK(stat(blob_path(p, "mirror/app", la), &sb) != 0 && errno == ENOENT);
	CHECK(stat(blob_path(p, "app", la), &sb) == 0);
	FMT(p, sizeof(p), "%s/.wharf/blobs/sha256/%s", root, la + 7);
	CHECK(stat(p, &sb) != 0);

	/* Next sweep: missing from the cache is fine (fetched when asked);
	 * missing from pushed content is not. */
	CHECK(unlink(blob_path(p, "app", lb)) == 0);
	sweep(st, 0, "mirror/app", &s, &stats);
	CHECK((i = find(&s, "mirror/app", "v1")) >= 0 && s.img[i].ok);
	CHECK((i = find(&s, "mirror/app", "multi")) >= 0 && s.img[i].ok);
	CHECK((i = find(&s, "app", "v1")) >= 0 && !s.img[i].ok);
	CHECK(i >= 0 && strcmp(s.img[i].affected, la + 7) == 0); /* the first one found */
	CHECK((i = find(&s, "app", other)) >= 0 && !s.img[i].ok);
	CHECK(stats.affected == 3 && stats.moved == 0);

	/* A missing manifest that index.json still names; a corrupt one. */
	CHECK(unlink(blob_path(p, "app", man)) == 0);
	flip("mirror/app", idx);
	sweep(st, 0, NULL, &s, &stats);
	CHECK((i = find(&s, "app", "v1")) >= 0 && !s.img[i].ok);
	CHECK(i >= 0 && strcmp(s.img[i].affected, man + 7) == 0);
	CHECK_STREQ(s.img[i].error, "blob not found");
	CHECK((i = find(&s, "mirror/app", "multi")) >= 0 && !s.img[i].ok);
	CHECK(i >= 0 && strcmp(s.img[i].affected, idx + 7) == 0);

	/* A repository whose index.json is not one: an error, the rest goes on. */
	FMT(p, sizeof(p), "%s/mirror/app/index.json", root);
	FILE *f = fopen(p, "w");
	if (f) {
		fputs("{\"manifests\": 7}", f);
		fclose(f);
	}
	sweep(st, 0, NULL, &s, &stats);
	CHECK(stats.repos == 2 && stats.errors == 1 && stats.images == 3);
	wh_store_close(st);
}

/* A sweep of n bytes at rate r takes at least about n / r. */
static void test_rate(void)
{
	const size_t size = 3 << 20;
	const int64_t rate = 4 << 20;
	char d[WH_DIGEST_LEN + 1], m[WH_DIGEST_LEN + 1], cfg[WH_DIGEST_LEN + 1];
	wh_store *st = NULL;
	wh_scrub_stats stats;
	struct seen s;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	char *big = wh_malloc(size);
	for (size_t i = 0; i < size; i++)
		big[i] = (char)(i * 7);
	CHECK(put_blob_n(st, "big", big, size, d) == 0);
	free(big);
	CHECK(put_blob(st, "big", "{}", cfg) == 0);
	const char *layers[] = {d, NULL};
	CHECK(put_image(st, "big", "1", cfg, layers, m, NULL) == 0);

	uint64_t t0 = uv_hrtime();
	sweep(st, 0, NULL, &s, &stats);
	uint64_t fast = uv_hrtime() - t0;
	CHECK(stats.affected == 0 && stats.bytes > (int64_t)size);

	t0 = uv_hrtime();
	sweep(st, rate, NULL, &s, &stats);
	uint64_t slow = uv_hrtime() - t0;
	CHECK(stats.affected == 0 && s.n == 1 && s.img[0].ok);
	/* 3 MiB at 4 MiB/s: 750 ms, less a little for the clock's grain. */
	CHECK(slow >= 700000000ULL);
	CHECK(slow < 5000000000ULL);
	if (slow < 700000000ULL || fast > slow)
		fprintf(stderr, "  unlimited %.3f s, at 4 MiB/s %.3f s\n", fast / 1e9, slow / 1e9);
	wh_store_close(st);
}

/* A server's scrubber: its first sweep after the start delay, and a stop in
 * the middle of a slow sweep returns at once. */
static void test_background_stop(void)
{
	const size_t size = 8 << 20;
	char d[WH_DIGEST_LEN + 1], m[WH_DIGEST_LEN + 1], cfg[WH_DIGEST_LEN + 1];
	wh_store *st = NULL;
	wh_scrub *sc = NULL;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	char *big = wh_calloc(1, size);
	CHECK(put_blob_n(st, "big", big, size, d) == 0);
	free(big);
	CHECK(put_blob(st, "big", "{}", cfg) == 0);
	const char *layers[] = {d, NULL};
	CHECK(put_image(st, "big", "1", cfg, layers, m, NULL) == 0);

	/* 1 MiB/s: 8 s for the sweep; stopped after 300 ms. */
	wh_scrub_settings set;
	wh_scrub_settings_init(&set);
	set.enable = true;
	set.rate = 1 << 20;
	set.start_delay_ms = 0;
	CHECK(wh_scrub_start(st, &set, NULL, NULL, &sc) == 0);
	usleep(300000);
	uint64_t t0 = uv_hrtime();
	wh_scrub_stop(sc);
	uint64_t took = uv_hrtime() - t0;
	CHECK(took < 1500000000ULL);
	if (took >= 1500000000ULL)
		fprintf(stderr, "  stop took %.3f s\n", took / 1e9);

	/* Stopped while waiting for its first sweep. */
	set.start_delay_ms = 3600000;
	CHECK(wh_scrub_start(st, &set, NULL, NULL, &sc) == 0);
	t0 = uv_hrtime();
	wh_scrub_stop(sc);
	CHECK(uv_hrtime() - t0 < 1000000000ULL);
	wh_scrub_stop(NULL);
	wh_store_close(st);
}

int main(void)
{
	test_sweep();
	test_rate();
	test_background_stop();
	if (root[0])
		check_rm_rf(root);
	CHECK_DONE();
}
