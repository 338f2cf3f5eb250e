/* White-box checks of the sweep of stale upload sessions (the .c is
 * included, to see when a sweep has judged its sessions: st->sweeps):
 * what is old goes and what is young or in use stays, by the data file's
 * age and by what memory knows of a session (pinned, touched lately);
 * max_age 0 takes every session not in use; a half-made session (no data
 * file) goes by its directory's age; the async sweep lists and removes in
 * the pool, and between its two parts a session it is removing is gone to
 * lookups while its files are still on disk. End to end (at the server's
 * start, with storage.gcDelay): tests/integration/test_diskfull.py. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include "check.h"
#include "pool_hold.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "../../../src/store/store.c"

#define HOUR_MS ((int64_t)3600 * 1000)

static char root[64];
static uv_loop_t loop;

static void new_root(void)
{
	if (root[0])
		check_rm_rf(root);
	memcpy(root, "/tmp/wharf-test-sweep-XXXXXX", 29);
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		exit(2);
	}
}

/* A session of repo with a few bytes; id receives its uuid. */
static void session_new(wh_store *st, const char *repo, char id[WH_UUID_LEN + 1])
{
	wh_upload *up = NULL;

	CHECK(wh_store_upload_create(st, repo, id) == 0);
	CHECK(wh_store_upload_get(st, repo, id, &up) == 0 && up);
	if (up)
		CHECK(wh_upload_write(up, "some bytes", 10) == 0);
}

static void session_rel(const char *id, const char *file, char *out, size_t n)
{
	if (file)
		snprintf(out, n, "%s/.wharf/uploads/%s/%s", root, id, file);
	else
		snprintf(out, n, "%s/.wharf/uploads/%s", root, id);
}

static bool on_disk(const char *id)
{
	char p[PATH_MAX];
	struct stat sb;

	session_rel(id, NULL, p, sizeof(p));
	return stat(p, &sb) == 0;
}

/* Make the session's data file (or its directory) ms old. */
static void age(const char *id, const char *file, int64_t ms)
{
	char p[PATH_MAX];
	struct timespec now, t[2];

	session_rel(id, file, p, sizeof(p));
	clock_gettime(CLOCK_REALTIME, &now);
	t[0].tv_sec = t[1].tv_sec = now.tv_sec - (time_t)(ms / 1000);
	t[0].tv_nsec = t[1].tv_nsec = now.tv_nsec;
	CHECK(utimensat(AT_FDCWD, p, t, 0) == 0);
}

static bool gettable(wh_store *st, const char *repo, const char *id)
{
	wh_upload *up = NULL;

	return wh_store_upload_get(st, repo, id, &up) == 0 && up;
}

/* By age and by use: the data file's mtime decides for a session nobody
 * has in memory; one in memory is spared while pinned or touched within
 * max_age. A directory without a data file goes by its own age. */
static void test_by_age_and_use(void)
{
	char old1[WH_UUID_LEN + 1], old2[WH_UUID_LEN + 1], young[WH_UUID_LEN + 1];
	char pinned[WH_UUID_LEN + 1], touched[WH_UUID_LEN + 1], half[WH_UUID_LEN + 1];
	char half_young[WH_UUID_LEN + 1], p[PATH_MAX];
	wh_store *st = NULL;
	wh_upload *up = NULL;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	session_new(st, "a", old1);
	session_new(st, "b/c", old2);
	session_new(st, "a", young);
	session_new(st, "a", pinned);
	session_new(st, "a", touched);
	session_new(st, "a", half);
	session_new(st, "a", half_young);
	wh_store_close(st); /* nothing in memory: as after a restart */

	for (const char *const *id = (const char *const[]){old1, old2, pinned, touched, half, NULL};
	     *id; id++)
		age(*id, "data", 2 * HOUR_MS);
	age(half_young, "data", 2 * HOUR_MS);
	/* Half made (a crash between mkdir and data): no data file. */
	session_rel(half, "data", p, sizeof(p));
	CHECK(unlink(p) == 0);
	age(half, NULL, 2 * HOUR_MS);
	session_rel(half_young, "data", p, sizeof(p));
	CHECK(unlink(p) == 0);

	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(wh_store_upload_get(st, "a", pinned, &up) == 0 && up);
	if (up)
		wh_upload_pin(up);
	CHECK(gettable(st, "a", touched)); /* in memory, unpinned, touched just now */

	CHECK(wh_store_uploads_sweep(st, -1) == WH_EINVAL);
	CHECK(wh_store_uploads_sweep(st, HOUR_MS) == 3); /* old1, old2, half */
	CHECK(!on_disk(old1) && !on_disk(old2) && !on_disk(half));
	CHECK(on_disk(young) && on_disk(pinned) && on_disk(touched) && on_disk(half_young));
	CHECK(!gettable(st, "a", old1));
	CHECK(!gettable(st, "b/c", old2));
	CHECK(gettable(st, "a", young) && gettable(st, "a", touched));
	CHECK(wh_store_uploads_sweep(st, HOUR_MS) == 0); /* nothing more is stale */

	/* 0: every session not in use. The pinned one stays; the others go,
	 * touched lately or not (the young half-made directory too). */
	CHECK(wh_store_uploads_sweep(st, 0) == 3);
	CHECK(on_disk(pinned));
	CHECK(!on_disk(young) && !on_disk(touched) && !on_disk(half_young));
	CHECK(up && wh_upload_size(up) == 10);
	if (up)
		wh_upload_unpin(up);
	CHECK(wh_store_uploads_sweep(st, 0) == 1);
	CHECK(!on_disk(pinned));
	wh_store_close(st);
}

static void on_swept(int rc, void *arg)
{
	int *out = arg;
	*out = rc;
}

static void on_finished(int rc, void *arg)
{
	*(int *)arg = rc == 0 ? 1 : rc;
}

/* The async sweep: listed in the pool, judged on the loop, removed in the
 * pool. Between the two, a session it removes is gone to lookups though
 * its files are still there; one being finished meanwhile is left to the
 * finish; one created meanwhile is not touched. */
static void test_async(void)
{
	char old[WH_UUID_LEN + 1], fin[WH_UUID_LEN + 1], young[WH_UUID_LEN + 1];
	char later[WH_UUID_LEN + 1], d[WH_DIGEST_LEN + 1];
	wh_store *st = NULL;
	wh_upload *up = NULL;
	int swept = -1000, finished = 0;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	session_new(st, "a", old);
	session_new(st, "a", fin);
	session_new(st, "a", young);
	wh_store_close(st);
	age(old, "data", 2 * HOUR_MS);
	age(fin, "data", 2 * HOUR_MS);
	CHECK(wh_store_open(root, true, &st) == 0);

	CHECK(wh_store_uploads_sweep_async(&loop, st, -5, on_swept, &swept) == WH_EINVAL);
	CHECK(wh_store_uploads_sweep_async(&loop, st, HOUR_MS, on_swept, &swept) == 0);
	CHECK(st->ops == 1 && swept == -1000); /* never from inside the call */
	held_pool_hold(&loop);                 /* after the listing: the removal waits */
	/* Meanwhile a client finishes fin: in use from then on. */
	CHECK(wh_store_upload_get(st, "a", fin, &up) == 0 && up);
	wh_sha256_digest("some bytes", 10, d);
	CHECK(wh_store_upload_finish_async(&loop, st, up, d, on_finished, &finished) == 0);
	while (wh_list_empty(&st->sweeps) && swept == -1000)
		uv_run(&loop, UV_RUN_ONCE);
	CHECK(!wh_list_empty(&st->sweeps));
	CHECK(on_disk(old));            /* not removed yet */
	CHECK(!gettable(st, "a", old)); /* but gone to lookups */
	CHECK(wh_store_upload_create(st, "a", later) == 0);
	held_pool_release();
	while (swept == -1000 || finished == 0)
		uv_run(&loop, UV_RUN_ONCE);
	uv_run(&loop, UV_RUN_DEFAULT);
	held_pool_free();
	CHECK(swept == 1);
	CHECK(finished == 1); /* published */
	CHECK(wh_store_blob_stat(st, "a", d, NULL) == 0);
	CHECK(!on_disk(old) && !on_disk(fin));
	CHECK(on_disk(young) && on_disk(later));
	CHECK(wh_list_empty(&st->sweeps) && st->ops == 0);
	CHECK(gettable(st, "a", young) && gettable(st, "a", later));

	/* An empty uploads directory: 0. */
	swept = -1000;
	CHECK(wh_store_uploads_sweep(st, 0) == 2);
	CHECK(wh_store_uploads_sweep_async(&loop, st, 0, on_swept, &swept) == 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK(swept == 0);
	wh_store_close(st);
}

int main(void)
{
	int rc;

	if (uv_loop_init(&loop) != 0)
		return 2;
	wh_log_setup(getenv("WHARF_TEST_LOG") ? WH_LOG_DEBUG : WH_LOG_OFF,
	             getenv("WHARF_TEST_LOG") ? "" : "/dev/null");
	test_by_age_and_use();
	test_async();
	rc = uv_loop_close(&loop);
	CHECK(rc == 0);
	if (root[0])
		check_rm_rf(root);
	CHECK_DONE();
}
