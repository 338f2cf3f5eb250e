/* White-box checks of the store's changes off the loop (the .c is included,
 * with fsync(2) replaced by a recorder): the _async calls fsync nothing on
 * the loop thread and never hold it up while the disk works; a claimed
 * session is gone to everyone else until its finish calls back; the store
 * stays what the synchronous calls would have made of it when operations
 * on one repository run at once in the thread pool and synchronous ones
 * come between them; what the caller passed may go as soon as the call
 * returns. End to end: tests/integration/test_hardening_store.py
 * (TestFsyncOffTheLoop) and test_durability.py. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include "check.h"

#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

/* Every fsync of the store goes through here: which thread, which file, and
 * a delay to make the disk slow. */
#define FSYNC_LOG 4096

static struct {
	uv_mutex_t lock;
	uv_thread_t loop_thread;
	int n, on_loop;
	char path[FSYNC_LOG][PATH_MAX];
	bool loop[FSYNC_LOG];
	int delay_ms;      /* every fsync */
	int data_delay_ms; /* an upload's data file */
} fsyncs;

static int test_fsync(int fd)
{
	char link[64], path[PATH_MAX];
	ssize_t n;
	uv_thread_t self = uv_thread_self();
	bool on_loop = uv_thread_equal(&self, &fsyncs.loop_thread) != 0;
	int delay;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	path[n > 0 ? n : 0] = '\0';
	uv_mutex_lock(&fsyncs.lock);
	if (fsyncs.n < FSYNC_LOG) {
		memcpy(fsyncs.path[fsyncs.n], path, sizeof(path));
		fsyncs.loop[fsyncs.n] = on_loop;
		fsyncs.n++;
	}
	fsyncs.on_loop += on_loop;
	delay = fsyncs.delay_ms;
	if (strstr(path, "/.wharf/uploads/"))
		delay += fsyncs.data_delay_ms;
	uv_mutex_unlock(&fsyncs.lock);
	if (delay > 0)
		uv_sleep((unsigned)delay);
	return fsync(fd);
}

#define fsync test_fsync
#include "../../../src/store/store.c"
#undef fsync

#define BAD_DIGEST_TEXT "sha256:../../../../etc/passwd"

static char root[64];
static uv_loop_t loop;

static void new_root(void)
{
	if (root[0])
		check_rm_rf(root);
	memcpy(root, "/tmp/wharf-test-async-XXXXXX", 29);
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		exit(2);
	}
}

static void fsyncs_reset(void)
{
	uv_mutex_lock(&fsyncs.lock);
	fsyncs.n = fsyncs.on_loop = 0;
	fsyncs.delay_ms = fsyncs.data_delay_ms = 0;
	uv_mutex_unlock(&fsyncs.lock);
}

/* The number of recorded fsyncs whose path contains s. */
static int fsynced(const char *s, bool *any_on_loop)
{
	int k = 0;

	*any_on_loop = false;
	for (int i = 0; i < fsyncs.n; i++) {
		if (strstr(fsyncs.path[i], s)) {
			k++;
			*any_on_loop |= fsyncs.loop[i];
		}
	}
	return k;
}

/* A callback's record: how many times, with what. */
struct done {
	int calls;
	int rc;
	uint64_t at_ms; /* uv_now when it fired */
};

static void on_done(int rc, void *arg)
{
	struct done *d = arg;

	d->calls++;
	d->rc = rc;
	d->at_ms = uv_now(&loop);
}

static void run_loop(void)
{
	uv_run(&loop, UV_RUN_DEFAULT);
}

static bool file_at(const char *rel)
{
	char p[PATH_MAX];
	struct stat sb;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return stat(p, &sb) == 0;
}

static nlink_t links_of(const char *rel)
{
	char p[PATH_MAX];
	struct stat sb;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return stat(p, &sb) == 0 ? sb.st_nlink : 0;
}

static wh_upload *upload_with(wh_store *st, const char *repo, const char *data, size_t len,
                              char id[WH_UUID_LEN + 1], char digest[WH_DIGEST_LEN + 1])
{
	wh_upload *up = NULL;

	CHECK(wh_store_upload_create(st, repo, id) == 0);
	CHECK(wh_store_upload_get(st, repo, id, &up) == 0 && up);
	if (!up)
		exit(1);
	CHECK(wh_upload_write(up, data, len) == 0);
	wh_sha256_digest(data, len, digest);
	return up;
}

/* The loop's ticks while it waits for the callbacks. */
struct ticker {
	uv_timer_t timer;
	int ticks;
};

static void on_tick(uv_timer_t *t)
{
	((struct ticker *)t->data)->ticks++;
}

static void ticker_start(struct ticker *tk)
{
	tk->ticks = 0;
	uv_timer_init(&loop, &tk->timer);
	tk->timer.data = tk;
	uv_timer_start(&tk->timer, on_tick, 5, 5);
}

static void ticker_stop(struct ticker *tk)
{
	uv_timer_stop(&tk->timer);
	uv_close((uv_handle_t *)&tk->timer, NULL);
}

/* ---- tests ---- */

/* A finish off the loop: the session is claimed at once, the fsync runs in
 * the pool while the loop goes on, and the callback finds it all done. The
 * synchronous finish, for comparison, fsyncs on this thread. */
static void test_finish_off_the_loop(void)
{
	static const char data[] = "a layer's bytes";
	char id[WH_UUID_LEN + 1], d[WH_DIGEST_LEN + 1], rel[PATH_MAX];
	wh_store *st = NULL;
	wh_upload *up, *again = NULL;
	wh_upload_catchup *job = NULL;
	struct done done = {0};
	struct ticker tk;
	bool on_loop;
	uint64_t t0;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	up = upload_with(st, "fin/a", data, sizeof(data) - 1, id, d);
	wh_upload_pin(up); /* as a request holds it */
	fsyncs_reset();
	fsyncs.data_delay_ms = 300; /* a big upload on a slow disk */

	CHECK(wh_store_upload_finish_async(&loop, st, up, d, on_done, &done) == 0);
	CHECK(done.calls == 0); /* never from inside the call */
	/* Claimed: gone to everyone else until it calls back. */
	CHECK(wh_store_upload_get(st, "fin/a", id, &again) == WH_ENOTFOUND && !again);
	CHECK(wh_store_upload_cancel(st, up) == WH_EINUSE);
	CHECK(wh_store_upload_finish(st, up, d) == WH_EINUSE);
	CHECK(wh_upload_catchup_begin(up, &job) == WH_EINVAL && !job);
	CHECK(st->ops == 1);

	t0 = uv_now(&loop);
	ticker_start(&tk);
	while (done.calls == 0)
		uv_run(&loop, UV_RUN_ONCE);
	ticker_stop(&tk);
	run_loop();
	fprintf(stderr,
	        "finish with a 300 ms fsync: called back after %llu ms, %d ticks of the "
	        "loop meanwhile\n",
	        (unsigned long long)(done.at_ms - t0), tk.ticks);
	CHECK(done.calls == 1 && done.rc == 0);
	CHECK(done.at_ms - t0 >= 290);
	CHECK(tk.ticks >= 20); /* the loop went on: a 5 ms timer, 300 ms */
	CHECK(fsynced("/.wharf/uploads/", &on_loop) == 1 && !on_loop);
	CHECK(fsyncs.on_loop == 0);
	CHECK(st->ops == 0);
	/* Done: published, the repository listed, the session gone. */
	CHECK(wh_store_blob_stat(st, "fin/a", d, NULL) == 0);
	CHECK(wh_store_repo_exists(st, "fin/a"));
	CHECK(st->n_repos == 1 && strcmp(st->repos[0], "fin/a") == 0);
	snprintf(rel, sizeof(rel), ".wharf/uploads/%s", id);
	CHECK(!file_at(rel));
	CHECK(wh_store_upload_get(st, "fin/a", id, &again) == WH_ENOTFOUND);
	CHECK(st->n_uploads == 0);

	/* The synchronous finish: the same result, its fsyncs on this thread. */
	up = upload_with(st, "fin/b", data, sizeof(data) - 1, id, d);
	fsyncs_reset();
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	CHECK(fsynced("/.wharf/uploads/", &on_loop) == 1 && on_loop);
	CHECK(wh_store_blob_stat(st, "fin/b", d, NULL) == 0);
	wh_store_close(st);
}

/* What the synchronous finish returns, the callback gets; what it refuses
 * up front, the _async call refuses the same way, leaving the session. */
static void test_finish_results(void)
{
	static const char data[] = "some bytes";
	char id[WH_UUID_LEN + 1], d[WH_DIGEST_LEN + 1], rel[PATH_MAX], other[WH_DIGEST_LEN + 1];
	wh_store *st = NULL;
	wh_upload *up, *again = NULL;
	wh_upload_catchup *job = NULL;
	struct done done = {0};

	new_root();
	CHECK(wh_store_open(root, false, &st) == 0);

	/* A wrong digest: known at once, answered through the callback, the
	 * session's files removed off the loop. */
	up = upload_with(st, "res", data, sizeof(data) - 1, id, d);
	wh_sha256_digest("other bytes", 11, other);
	fsyncs_reset();
	CHECK(wh_store_upload_finish_async(&loop, st, up, other, on_done, &done) == 0);
	run_loop();
	CHECK(done.calls == 1 && done.rc == WH_EDIGEST);
	snprintf(rel, sizeof(rel), ".wharf/uploads/%s", id);
	CHECK(!file_at(rel));
	CHECK(wh_store_blob_stat(st, "res", other, NULL) == WH_ENOTFOUND);
	CHECK(!wh_store_repo_exists(st, "res"));
	CHECK(fsyncs.n == 0);

	/* Refused up front: no callback, the session as it was. */
	up = upload_with(st, "res", data, sizeof(data) - 1, id, d);
	done.calls = 0;
	CHECK(wh_store_upload_finish_async(&loop, st, up, BAD_DIGEST_TEXT, on_done, &done) ==
	      WH_EINVAL);
	CHECK(wh_upload_catchup_begin(up, &job) == WH_EINVAL); /* not behind */
	wh_digest_init(&up->hash, WH_ALG_SHA256); /* as if got from disk without a state */
	up->hashed = 0;
	CHECK(wh_store_upload_finish_async(&loop, st, up, d, on_done, &done) == WH_EINVAL);
	CHECK(wh_upload_catchup_begin(up, &job) == 0 && job);
	CHECK(wh_store_upload_finish_async(&loop, st, up, d, on_done, &done) == WH_EINVAL);
	CHECK(wh_store_upload_cancel(st, up) == WH_EINUSE);
	wh_upload_catchup_run(job);
	CHECK(wh_upload_catchup_end(job) == 0);
	run_loop();
	CHECK(done.calls == 0 && st->ops == 0);
	CHECK(wh_store_upload_get(st, "res", id, &again) == 0 && again == up);
	CHECK(up->fd >= 0 && !up->finishing && !wh_upload_pinned(up));
	CHECK(wh_upload_write(up, "!", 1) == 0);
	{
		char d2[WH_DIGEST_LEN + 1];
		wh_sha256_digest("some bytes!", 11, d2);
		CHECK(wh_store_upload_finish_async(&loop, st, up, d2, on_done, &done) == 0);
		run_loop();
		CHECK(done.calls == 1 && done.rc == 0);
		CHECK(wh_store_blob_stat(st, "res", d2, NULL) == 0);
	}
	wh_store_close(st);
}

/* Every change off the loop: each _async call gets what its synchronous
 * twin returns, fsyncs nothing on the loop, and needs nothing the caller
 * passed once it returned. */
static void test_every_change_off_the_loop(void)
{
	char man[512], d_man[WH_DIGEST_LEN + 1], d_blob[WH_DIGEST_LEN + 1], tmp[PATH_MAX];
	char rel[PATH_MAX], *buf;
	wh_store *st = NULL;
	wh_manifest m = {0};
	struct done done[8] = {{0}};
	bool on_loop;
	int fd;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	fsyncs_reset();

	/* publish */
	fd = wh_store_tmp_create(st, tmp, sizeof(tmp));
	CHECK(fd >= 0 && write(fd, "blob", 4) == 4);
	close(fd);
	wh_sha256_digest("blob", 4, d_blob);
	CHECK(wh_store_blob_publish_async(&loop, st, "all/a", tmp, d_blob, on_done, &done[0]) == 0);
	run_loop();
	CHECK(done[0].calls == 1 && done[0].rc == 0 && access(tmp, F_OK) != 0);
	CHECK(wh_store_blob_stat(st, "all/a", d_blob, NULL) == 0);
	CHECK(st->n_repos == 1);
	/* A bad digest: refused at once, the temp file consumed all the same. */
	fd = wh_store_tmp_create(st, tmp, sizeof(tmp));
	close(fd);
	CHECK(wh_store_blob_publish_async(&loop, st, "all/a", tmp, BAD_DIGEST_TEXT, on_done,
	                                  &done[7]) == WH_EINVAL);
	CHECK(access(tmp, F_OK) != 0 && done[7].calls == 0);

	/* mount, from a repository that has it and from one that does not */
	CHECK(wh_store_blob_mount_async(&loop, st, "all/b", "all/a", d_blob, on_done, &done[1]) ==
	      0);
	CHECK(wh_store_blob_mount_async(&loop, st, "all/c", "all/none", d_blob, on_done,
	                                &done[2]) == 0);
	run_loop();
	CHECK(done[1].calls == 1 && done[1].rc == 0);
	CHECK(done[2].calls == 1 && done[2].rc == WH_ENOTFOUND);
	CHECK(wh_store_blob_stat(st, "all/b", d_blob, NULL) == 0);
	snprintf(rel, sizeof(rel), ".wharf/blobs/sha256/%s", d_blob + 7);
	CHECK(links_of(rel) == 3); /* .wharf's, all/a's, all/b's */

	/* manifest put: the caller's buffers are overwritten at once */
	snprintf(man, sizeof(man),
	         "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"x\","
	         "\"digest\":\"%s\",\"size\":4},\"layers\":[]}",
	         WH_MT_OCI_MANIFEST, d_blob);
	wh_sha256_digest(man, strlen(man), d_man);
	buf = wh_strdup(man);
	{
		char tag[8] = "v1", mt[64];
		snprintf(mt, sizeof(mt), "%s", WH_MT_OCI_MANIFEST);
		CHECK(wh_store_manifest_put_async(&loop, st, "all/b", tag, d_man, mt, buf,
		                                  strlen(buf), on_done, &done[3]) == 0);
		memset(buf, 'x', strlen(buf));
		memset(tag, 0, sizeof(tag));
		memset(mt, 0, sizeof(mt));
	}
	free(buf);
	run_loop();
	CHECK(done[3].calls == 1 && done[3].rc == 0);
	CHECK(wh_store_manifest_get(st, "all/b", "v1", &m) == 0);
	CHECK(m.data && strcmp(m.data, man) == 0 && strcmp(m.digest, d_man) == 0);
	CHECK(m.media_type && strcmp(m.media_type, WH_MT_OCI_MANIFEST) == 0);
	wh_manifest_free(&m);

	/* blob delete: a manifest's bytes are refused, a layer goes */
	CHECK(wh_store_blob_delete_async(&loop, st, "all/b", d_man, on_done, &done[4]) == 0);
	CHECK(wh_store_blob_delete_async(&loop, st, "all/a", d_blob, on_done, &done[5]) == 0);
	run_loop();
	CHECK(done[4].calls == 1 && done[4].rc == WH_EINUSE);
	CHECK(done[5].calls == 1 && done[5].rc == 0);
	CHECK(wh_store_blob_stat(st, "all/a", d_blob, NULL) == WH_ENOTFOUND);
	CHECK(links_of(rel) == 2);

	/* manifest delete by digest: the tag and the bytes go */
	CHECK(wh_store_manifest_delete_async(&loop, st, "all/b", d_man, on_done, &done[6]) == 0);
	run_loop();
	CHECK(done[6].calls == 1 && done[6].rc == 0);
	CHECK(wh_store_manifest_get(st, "all/b", "v1", &m) == WH_ENOTFOUND);
	CHECK(wh_store_blob_stat(st, "all/b", d_man, NULL) == WH_ENOTFOUND);

	/* Refused up front, like the synchronous calls. */
	CHECK(wh_store_blob_mount_async(&loop, st, "ALL", "all/a", d_blob, on_done, &done[7]) ==
	      WH_EINVAL);
	CHECK(wh_store_blob_delete_async(&loop, st, "all/a", BAD_DIGEST_TEXT, on_done, &done[7]) ==
	      WH_EINVAL);
	CHECK(wh_store_manifest_put_async(&loop, st, "all/a", "bad tag", d_man, NULL, "{}", 2,
	                                  on_done, &done[7]) == WH_EINVAL);
	CHECK(wh_store_manifest_delete_async(&loop, st, "all/a", "bad tag", on_done, &done[7]) ==
	      WH_EINVAL);
	run_loop();
	CHECK(done[7].calls == 0);

	CHECK(fsyncs.n > 0 && fsyncs.on_loop == 0);
	CHECK(fsynced(".wharf/tmp/", &on_loop) > 0 && !on_loop);
	CHECK(st->ops == 0);
	wh_store_close(st);
}

/* Changes of one repository at once: many puts in the thread pool (four
 * threads, a slow disk), synchronous puts and deletes between them on the
 * loop. Each reads index.json, changes it and writes it back: without the
 * store's lock, one would write back what another had not yet renamed into
 * place, and tags would be lost. And one blob finished into many
 * repositories at once is still one file, linked from each. */
#define PUTS 24

static void test_one_repository_at_once(void)
{
	char tag[PUTS][16], doc[PUTS][64], dg[PUTS][WH_DIGEST_LEN + 1];
	char id[WH_UUID_LEN + 1], d[WH_DIGEST_LEN + 1], rel[PATH_MAX];
	struct done done[PUTS] = {{0}}, fin[PUTS] = {{0}};
	wh_store *st = NULL;
	wh_manifest m = {0};
	char **tags = NULL;
	int count = 0;
	bool more = true, on_loop;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	fsyncs_reset();
	fsyncs.delay_ms = 2;
	for (int i = 0; i < PUTS; i++) {
		snprintf(tag[i], sizeof(tag[i]), "t%02d", i);
		snprintf(doc[i], sizeof(doc[i]), "{\"schemaVersion\":2,\"n\":%d}", i);
		wh_sha256_digest(doc[i], strlen(doc[i]), dg[i]);
		CHECK(wh_store_manifest_put_async(&loop, st, "one/repo", tag[i], dg[i],
		                                  WH_MT_OCI_MANIFEST, doc[i], strlen(doc[i]),
		                                  on_done, &done[i]) == 0);
		if (i % 4 == 3) {
			/* Between them, on the loop: a put of a tag that stays, and
			 * one that is deleted again. */
			char t[16];
			snprintf(t, sizeof(t), "sync%02d", i);
			CHECK(wh_store_manifest_put(st, "one/repo", t, dg[i], WH_MT_OCI_MANIFEST,
			                            doc[i], strlen(doc[i])) == 0);
			CHECK(wh_store_manifest_put(st, "one/repo", "gone", dg[i],
			                            WH_MT_OCI_MANIFEST, doc[i],
			                            strlen(doc[i])) == 0);
			CHECK(wh_store_manifest_delete(st, "one/repo", "gone") == 0);
			uv_run(&loop, UV_RUN_NOWAIT);
		}
	}
	run_loop();
	for (int i = 0; i < PUTS; i++)
		CHECK(done[i].calls == 1 && done[i].rc == 0);
	CHECK(wh_store_tags(st, "one/repo", NULL, -1, &tags, &count, &more) == 0);
	CHECK(count == PUTS + PUTS / 4 && !more);
	for (int i = 0; i < PUTS; i++) {
		CHECK(wh_store_manifest_get(st, "one/repo", tag[i], &m) == 0);
		CHECK(m.data && strcmp(m.data, doc[i]) == 0);
		wh_manifest_free(&m);
	}
	wh_strv_free(tags, count);
	CHECK(fsynced("/one/repo", &on_loop) > 0);

	/* One blob, finished into PUTS repositories at once. */
	fsyncs_reset();
	fsyncs.delay_ms = 1;
	for (int i = 0; i < PUTS; i++) {
		char repo[32];
		wh_upload *up;
		snprintf(repo, sizeof(repo), "many/r%02d", i);
		up = upload_with(st, repo, "shared layer", 12, id, d);
		CHECK(wh_store_upload_finish_async(&loop, st, up, d, on_done, &fin[i]) == 0);
	}
	run_loop();
	for (int i = 0; i < PUTS; i++)
		CHECK(fin[i].calls == 1 && fin[i].rc == 0);
	snprintf(rel, sizeof(rel), ".wharf/blobs/sha256/%s", d + 7);
	CHECK(links_of(rel) == PUTS + 1);
	CHECK(st->n_repos == 1 + PUTS);
	CHECK(fsyncs.on_loop == 0);
	wh_store_close(st);
}

int main(void)
{
	int rc;

	if (uv_mutex_init(&fsyncs.lock) != 0 || uv_loop_init(&loop) != 0)
		return 2;
	fsyncs.loop_thread = uv_thread_self();
	test_finish_off_the_loop();
	test_finish_results();
	test_every_change_off_the_loop();
	test_one_repository_at_once();
	run_loop();
	rc = uv_loop_close(&loop);
	CHECK(rc == 0);
	if (root[0])
		check_rm_rf(root);
	uv_mutex_destroy(&fsyncs.lock);
	CHECK_DONE();
}
