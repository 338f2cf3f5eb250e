/* Unit tests for src/ext/search_index.c: the walk at start, the changes the
 * store tells it of, the aggregates, and what it costs in memory. */
#include "check.h"
#include "store_put.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wharf/base/common.h"
#include "wharf/ext/search_index.h"
#include "wharf/oci/ref.h"

static char root[64];

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX    "application/vnd.oci.image.index.v1+json"
#define MT_CONFIG   "application/vnd.oci.image.config.v1+json"

/* An image: a config (os, arch, created, labels) and layers, pushed; its
 * manifest's digest in digest, its bytes' length returned. */
static size_t put_image(wh_store *st, const char *repo, const char *tag, const char *arch,
                        const char *created, const char *annotations, const char *const *layers,
                        int n, char digest[WH_DIGEST_LEN + 1], int64_t *total)
{
	char cfg[512], cd[WH_DIGEST_LEN + 1], ld[WH_DIGEST_LEN + 1], m[4096];
	FMT(cfg, sizeof(cfg),
	    "{\"os\":\"linux\",\"architecture\":\"%s\",\"created\":\"%s\","
	    "\"config\":{\"Labels\":{\"org.opencontainers.image.vendor\":\"label vendor\","
	    "\"org.opencontainers.image.title\":\"from label\"}}}",
	    arch, created);
	CHECK(put_blob(st, repo, cfg, cd) == 0);
	size_t off = 0;
	FMT(m, sizeof(m),
	    "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST
	    "\",\"config\":{\"mediaType\":\"" MT_CONFIG
	    "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[",
	    cd, strlen(cfg));
	off = strlen(m);
	*total = (int64_t)strlen(cfg);
	for (int i = 0; i < n; i++) {
		CHECK(put_blob(st, repo, layers[i], ld) == 0);
		off += (size_t)snprintf(
		    m + off, sizeof(m) - off,
		    "%s{\"mediaType\":\"application/octet-stream\",\"digest\":\"%s\","
		    "\"size\":%zu}",
		    i ? "," : "", ld, strlen(layers[i]));
		*total += (int64_t)strlen(layers[i]);
	}
	snprintf(m + off, sizeof(m) - off, "]%s%s}", annotations ? ",\"annotations\":" : "",
	         annotations ? annotations : "");
	wh_sha256_digest(m, strlen(m), digest);
	CHECK(wh_store_manifest_put(st, repo, tag, digest, MT_MANIFEST, m, strlen(m)) == 0);
	*total += (int64_t)strlen(m);
	return strlen(m);
}

static void loaded(void *arg)
{
	*(int *)arg += 1;
}

static wh_search_index *start(uv_loop_t *loop, wh_store *st, int *n_loaded)
{
	wh_search_index *idx = NULL;
	CHECK(wh_search_index_new(loop, st, loaded, n_loaded, &idx) == 0);
	CHECK(idx && !wh_search_index_loaded(idx) && *n_loaded == 0);
	uv_run(loop, UV_RUN_DEFAULT);
	CHECK(wh_search_index_loaded(idx) && *n_loaded == 1);
	return idx;
}

static const wh_si_image *image_of(const wh_si_repo *r, const char *digest)
{
	uint8_t raw[32];
	return wh_si_digest_raw(digest, raw) ? wh_si_image_find(r, raw) : NULL;
}

static void test_walk_and_changes(void)
{
	uv_loop_t loop;
	wh_store *st = NULL;
	char d1[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1], k1[WH_DIGEST_LEN + 1],
	    k2[WH_DIGEST_LEN + 1], ix[WH_DIGEST_LEN + 1], s[WH_DIGEST_LEN + 1];
	const char *l1[] = {"base layer", "alpine layer"}, *l2[] = {"base layer", "app layer"};
	int64_t t1, t2, tk1, tk2;
	int n_loaded = 0;

	memcpy(root, "/tmp/wharf-test-sindex-XXXXXX", 30);
	if (!mkdtemp(root))
		exit(2);
	CHECK(uv_loop_init(&loop) == 0);
	CHECK(wh_store_open(root, true, &st) == 0);
	put_image(st, "alpine", "3.19", "amd64", "2024-01-01T00:00:00Z",
	          "{\"org.opencontainers.image.vendor\":\"Alpine\"}", l1, 2, d1, &t1);
	/* An index of two platforms in busybox. */
	put_image(st, "busybox", NULL, "amd64", "2024-02-01T00:00:00Z", NULL, l1, 1, k1, &tk1);
	put_image(st, "busybox", NULL, "arm64", "2024-02-02T00:00:00Z", NULL, l2, 2, k2, &tk2);
	char idx_json[1024];
	FMT(idx_json, sizeof(idx_json),
	    "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"manifests\":["
	    "{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":1,"
	    "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
	    "{\"mediaType\":\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":1,"
	    "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}],"
	    "\"annotations\":{\"org.opencontainers.image.description\":\"multi\"}}",
	    k1, k2);
	wh_sha256_digest(idx_json, strlen(idx_json), ix);
	CHECK(wh_store_manifest_put(st, "busybox", "1.36", ix, MT_INDEX, idx_json,
	                            strlen(idx_json)) == 0);
	/* Blobs and no manifest: not indexed. */
	CHECK(put_blob(st, "blobs/only", "just a blob", s) == 0);

	wh_search_index *idx = start(&loop, st, &n_loaded);
	CHECK(wh_search_index_count(idx) == 2);
	wh_si_repo *a = wh_search_index_repo(idx, "alpine");
	wh_si_repo *b = wh_search_index_repo(idx, "busybox");
	CHECK(a && b && !wh_search_index_repo(idx, "blobs/only"));
	CHECK(wh_search_index_at(idx, 0) == a && wh_search_index_at(idx, 1) == b);
	const wh_si_image *im = image_of(a, d1);
	CHECK(im && im->type == WH_SI_MANIFEST && a->n_tags == 1 && a->n_images == 1);
	CHECK(strcmp(wh_search_index_str(idx, im->os), "linux") == 0 &&
	      strcmp(wh_search_index_str(idx, im->arch), "amd64") == 0);
	CHECK(strcmp(wh_search_index_str(idx, im->media_type), MT_MANIFEST) == 0 &&
	      strcmp(wh_search_index_str(idx, im->artifact_type), MT_CONFIG) == 0);
	CHECK(im->created_ns == 1704067200LL * 1000000000 && !im->annotated_time);
	/* The manifest's annotation first, then the config's labels. */
	CHECK_STREQ(wh_si_text(im, WH_SI_VENDOR), "Alpine");
	CHECK_STREQ(wh_si_text(im, WH_SI_TITLE), "from label");
	CHECK_STREQ(wh_si_text(im, WH_SI_DESCRIPTION), "");
	CHECK(im->n_layers == 2 && wh_si_image_size(a, im) == t1);
	CHECK(a->size == t1 && a->newest == 0 && a->n_platforms == 1);
	CHECK(a->last_updated_ns >= im->created_ns); /* the push, later */

	const wh_si_image *bi = image_of(b, ix);
	CHECK(bi && bi->type == WH_SI_INDEX && bi->n_kids == 2 && b->n_images == 3);
	CHECK(strcmp(wh_search_index_str(idx, bi->kids[1].arch), "arm64/v8") == 0);
	CHECK_STREQ(wh_si_text(bi, WH_SI_DESCRIPTION), "multi");
	/* The index's time: its latest child's (none is annotated). */
	CHECK(wh_si_image_time(b, bi) == image_of(b, k2)->created_ns);
	CHECK(wh_si_image_size(b, bi) == tk1 + tk2);
	/* The repository's size: each blob once (the base layer twice here),
	 * and the index's own bytes. */
	CHECK(b->size == tk1 + tk2 - (int64_t)strlen("base layer") + (int64_t)strlen(idx_json));
	CHECK(b->n_platforms == 2);

	/* A push: the new tag, its image, the newest. */
	put_image(st, "alpine", "3.20", "amd64", "2024-06-01T00:00:00Z", NULL, l2, 2, d2, &t2);
	a = wh_search_index_repo(idx, "alpine");
	CHECK(a->n_tags == 2 && a->n_images == 2 && a->newest == 1 &&
	      strcmp(a->tags[a->newest].name, "3.20") == 0);
	CHECK(a->size == t1 + t2 - (int64_t)strlen("base layer"));
	/* A second tag on a manifest held: one image, two tags. */
	wh_manifest m;
	CHECK(wh_store_manifest_get(st, "alpine", d1, &m) == 0);
	CHECK(wh_store_manifest_put(st, "alpine", "latest", d1, MT_MANIFEST, m.data, m.len) == 0);
	wh_manifest_free(&m);
	a = wh_search_index_repo(idx, "alpine");
	CHECK(a->n_tags == 3 && a->n_images == 2 && wh_si_tag_find(a, "latest"));
	/* Pulls count. */
	wh_store_note_pull(st, "alpine", d1);
	wh_store_note_pull(st, "alpine", d1);
	wh_store_note_pull(st, "alpine", ix); /* not alpine's: nothing */
	CHECK(image_of(a, d1)->downloads == 2 && a->downloads == 2);
	/* Deletes: a tag; a manifest and its tags; the last one. */
	CHECK(wh_store_manifest_delete(st, "alpine", "latest") == 0);
	a = wh_search_index_repo(idx, "alpine");
	CHECK(a->n_tags == 2 && a->n_images == 2 && !wh_si_tag_find(a, "latest"));
	CHECK(wh_store_manifest_delete(st, "alpine", d1) == 0);
	a = wh_search_index_repo(idx, "alpine");
	CHECK(a->n_tags == 1 && a->n_images == 1 && a->size == t2);
	CHECK(wh_store_manifest_delete(st, "alpine", d2) == 0);
	CHECK(!wh_search_index_repo(idx, "alpine") && wh_search_index_count(idx) == 1);

	wh_search_index_free(idx);
	/* After the index is gone, the store goes on without it. */
	CHECK(wh_store_manifest_delete(st, "busybox", "1.36") == 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	wh_store_close(st);
	CHECK(uv_loop_close(&loop) == 0);
	check_rm_rf(root);
}

/* Changes while the walk runs are read again when it is adopted. */
static void test_changes_during_the_walk(void)
{
	uv_loop_t loop;
	wh_store *st = NULL;
	char d1[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1];
	const char *l1[] = {"one"}, *l2[] = {"two"};
	int64_t t;
	int n_loaded = 0;

	memcpy(root, "/tmp/wharf-test-sindex-XXXXXX", 30);
	if (!mkdtemp(root))
		exit(2);
	CHECK(uv_loop_init(&loop) == 0);
	CHECK(wh_store_open(root, true, &st) == 0);
	put_image(st, "r", "1", "amd64", "2024-01-01T00:00:00Z", NULL, l1, 1, d1, &t);
	wh_search_index *idx = NULL;
	CHECK(wh_search_index_new(&loop, st, loaded, &n_loaded, &idx) == 0);
	/* The walk is in the pool: these are marked, and read on adoption. */
	put_image(st, "r", "2", "arm64", "2024-01-02T00:00:00Z", NULL, l2, 1, d2, &t);
	CHECK(wh_store_manifest_delete(st, "r", "1") == 0);
	put_image(st, "s", "x", "amd64", "2024-01-03T00:00:00Z", NULL, l1, 1, d1, &t);
	CHECK(!wh_search_index_loaded(idx));
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(wh_search_index_loaded(idx) && n_loaded == 1);
	const wh_si_repo *r = wh_search_index_repo(idx, "r");
	CHECK(r && r->n_tags == 1 && strcmp(r->tags[0].name, "2") == 0 && r->n_images == 2);
	CHECK(wh_search_index_repo(idx, "s") && wh_search_index_count(idx) == 2);
	wh_search_index_free(idx);
	wh_store_close(st);
	CHECK(uv_loop_close(&loop) == 0);
	check_rm_rf(root);
}

static void stored(int rc, void *arg)
{
	*(int *)arg = rc;
}

/* The cache stores a manifest before its config: the platform and the
 * time come when the config does. */
static void test_config_after_manifest(void)
{
	uv_loop_t loop;
	wh_store *st = NULL;
	char cd[WH_DIGEST_LEN + 1], d[WH_DIGEST_LEN + 1], m[512];
	const char *cfg = "{\"os\":\"linux\",\"architecture\":\"riscv64\","
	                  "\"created\":\"2024-07-01T00:00:00.25+02:00\"}";
	int n_loaded = 0, rc = 1;

	memcpy(root, "/tmp/wharf-test-sindex-XXXXXX", 30);
	if (!mkdtemp(root))
		exit(2);
	CHECK(uv_loop_init(&loop) == 0);
	CHECK(wh_store_open(root, true, &st) == 0);
	wh_search_index *idx = start(&loop, st, &n_loaded);
	wh_sha256_digest(cfg, strlen(cfg), cd);
	FMT(m, sizeof(m),
	    "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST
	    "\",\"config\":{\"mediaType\":\"" MT_CONFIG
	    "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[]}",
	    cd, strlen(cfg));
	wh_sha256_digest(m, strlen(m), d);
	CHECK(wh_store_manifest_cache_async(&loop, st, "mirror/x", "1", d, MT_MANIFEST, m,
	                                    strlen(m), stored, &rc) == 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(rc == 0);
	const wh_si_repo *r = wh_search_index_repo(idx, "mirror/x");
	const wh_si_image *im = r ? image_of(r, d) : NULL;
	CHECK(im && im->config_missing && !im->os && im->created_ns == WH_SI_NO_TIME);
	CHECK(r && r->n_config_missing == 1 && r->n_platforms == 0);
	CHECK(put_blob(st, "mirror/x", cfg, cd) == 0);
	r = wh_search_index_repo(idx, "mirror/x");
	im = r ? image_of(r, d) : NULL;
	CHECK(im && !im->config_missing && r->n_config_missing == 0 && r->n_platforms == 1);
	CHECK(im && strcmp(wh_search_index_str(idx, im->arch), "riscv64") == 0);
	/* 2024-06-30T22:00:00.25Z */
	CHECK(im && im->created_ns == 1719784800LL * 1000000000 + 250000000);
	wh_search_index_free(idx);
	wh_store_close(st);
	CHECK(uv_loop_close(&loop) == 0);
	check_rm_rf(root);
}

/* What a repository costs: the figure search_index.h gives. */
static void test_memory(void)
{
	uv_loop_t loop;
	wh_store *st = NULL;
	char d[WH_DIGEST_LEN + 1], tag[16], lay[6][32];
	const char *layers[6];
	int64_t t;
	int n_loaded = 0;

	memcpy(root, "/tmp/wharf-test-sindex-XXXXXX", 30);
	if (!mkdtemp(root))
		exit(2);
	CHECK(uv_loop_init(&loop) == 0);
	CHECK(wh_store_open(root, true, &st) == 0);
	wh_search_index *idx = start(&loop, st, &n_loaded);
	size_t empty = wh_search_index_bytes(idx);
	/* 20 repositories of 5 tags, each tag an image of 6 layers. */
	for (int r = 0; r < 20; r++) {
		char repo[32];
		FMT(repo, sizeof(repo), "team%d/service", r);
		for (int i = 0; i < 5; i++) {
			for (int k = 0; k < 6; k++) {
				FMT(lay[k], sizeof(lay[k]), "layer %d %d %d", r, i, k);
				layers[k] = lay[k];
			}
			FMT(tag, sizeof(tag), "v1.%d", i);
			put_image(
			    st, repo, tag, "amd64", "2024-01-01T00:00:00Z",
			    "{\"org.opencontainers.image.description\":\"a service of the team\"}",
			    layers, 6, d, &t);
		}
	}
	size_t per_repo = (wh_search_index_bytes(idx) - empty) / 20;
	printf("search index: %zu bytes per repository of 5 tags x 6 layers\n", per_repo);
	CHECK(per_repo > 1024 && per_repo < 3 * 1024);
	wh_search_index_free(idx);
	wh_store_close(st);
	CHECK(uv_loop_close(&loop) == 0);
	check_rm_rf(root);
}

int main(void)
{
	test_walk_and_changes();
	test_changes_during_the_walk();
	test_config_after_manifest();
	test_memory();
	CHECK_DONE();
}
