/* The manifest metadata: the table, the log it replays, damage, rewriting. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "wharf/base/common.h"
#include "wharf/oci/ref.h"
#include "wharf/store/meta.h"

static char dir[] = "/tmp/wharf-test-meta-XXXXXX";
static char path[256];

static void digest_of(int i, char out[WH_DIGEST_LEN + 1])
{
	char buf[32];
	FMT(buf, sizeof(buf), "content %d", i);
	wh_sha256_digest(buf, strlen(buf), out);
}

static long file_size(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static void test_roundtrip(void)
{
	wh_meta *m;
	wh_meta_stats st;
	char d1[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1], d3[WH_DIGEST_LEN + 1];

	digest_of(1, d1);
	digest_of(2, d2);
	digest_of(3, d3);
	unlink(path);
	CHECK(wh_meta_open(path, &m) == 0);
	wh_meta_stored(m, "private/app", d1, false, 1000);
	wh_meta_stored(m, "dockerhub/library/nginx", d2, true, 2000);
	wh_meta_stored(m, "dockerhub/library/nginx", d3, true, 2500);
	wh_meta_pulled(m, "dockerhub/library/nginx", d2, 100000);
	/* Within the grain: memory moves, the log does not. */
	uint64_t before = wh_meta_bytes_written(m);
	wh_meta_pulled(m, "dockerhub/library/nginx", d2, 100000 + 5000);
	CHECK(wh_meta_bytes_written(m) == before);
	/* A cache fill of pushed content does not make it evictable. */
	wh_meta_stored(m, "private/app", d1, true, 3000);
	wh_meta_forget(m, "dockerhub/library/nginx", d3);
	CHECK(!wh_meta_get(m, "dockerhub/library/nginx", d3, &st));
	CHECK(wh_meta_count(m) == 2);
	wh_meta_close(m);

	CHECK(wh_meta_open(path, &m) == 0);
	CHECK(wh_meta_count(m) == 2);
	CHECK(wh_meta_get(m, "private/app", d1, &st));
	CHECK(st.flags == WH_META_PUSHED && st.pushed_ms == 1000 && st.pulled_ms == 0);
	CHECK(wh_meta_get(m, "dockerhub/library/nginx", d2, &st));
	CHECK(st.flags == WH_META_CACHED && st.pushed_ms == 2000);
	CHECK(st.pulled_ms == 100000); /* the last logged pull */
	CHECK(!wh_meta_get(m, "dockerhub/library/nginx", d3, &st));
	CHECK(!wh_meta_get(m, "private/app", d2, &st)); /* per repository */
	wh_meta_close(m);
}

/* A sha512 digest, the longest a line holds, with the longest name. */
static void test_sha512_line(void)
{
	wh_meta *m;
	wh_meta_stats st;
	char d[WH_DIGEST_LEN + 1], name[WH_NAME_MAX + 1];

	wh_digest_of(WH_ALG_SHA512, "x", 1, d);
	memset(name, 'a', WH_NAME_MAX);
	name[WH_NAME_MAX] = '\0';
	unlink(path);
	CHECK(wh_meta_open(path, &m) == 0);
	wh_meta_stored(m, name, d, true, 1234);
	wh_meta_pulled(m, name, d, 999999);
	wh_meta_close(m);
	CHECK(wh_meta_open(path, &m) == 0);
	CHECK(wh_meta_get(m, name, d, &st));
	CHECK(st.flags == WH_META_CACHED && st.pushed_ms == 1234 && st.pulled_ms == 999999);
	wh_meta_close(m);
}

/* A flipped byte, garbage and a torn last line lose only themselves. */
static void test_damage(void)
{
	wh_meta *m;
	wh_meta_stats st;
	char d[4][WH_DIGEST_LEN + 1];

	unlink(path);
	CHECK(wh_meta_open(path, &m) == 0);
	for (int i = 0; i < 4; i++) {
		digest_of(10 + i, d[i]);
		wh_meta_stored(m, "r", d[i], true, 1000 + i);
	}
	wh_meta_close(m);

	/* Flip a digit of the second line's time. */
	char *text;
	size_t len;
	CHECK(wh_read_file(path, 1 << 20, &text, &len) == 0);
	char *second = strchr(text, '\n') + 1;
	second[3] ^= 1;
	FILE *f = fopen(path, "w");
	fwrite(text, 1, len, f);
	fputs("garbage without a check\n", f);
	fputs("C 5 r sha256:00 0000", f); /* torn: no newline */
	fclose(f);
	free(text);

	CHECK(wh_meta_open(path, &m) == 0);
	CHECK(wh_meta_count(m) == 3);
	CHECK(wh_meta_get(m, "r", d[0], &st) && st.pushed_ms == 1000);
	CHECK(!wh_meta_get(m, "r", d[1], &st));
	CHECK(wh_meta_get(m, "r", d[3], &st) && st.pushed_ms == 1003);
	wh_meta_close(m);
	/* Damage is rewritten away at once: a second open finds none. */
	CHECK(wh_read_file(path, 1 << 20, &text, &len) == 0);
	CHECK(strstr(text, "garbage") == NULL);
	CHECK(len > 0 && text[len - 1] == '\n');
	free(text);
}

/* Many entries in and out: every lookup stays right (the table's deletion
 * shifts probe chains), and a log of mostly dead lines is rewritten. */
static void test_churn_and_rewrite(void)
{
	enum { N = 6000 };
	wh_meta *m;
	wh_meta_stats st;
	char d[WH_DIGEST_LEN + 1], repo[32];

	unlink(path);
	CHECK(wh_meta_open(path, &m) == 0);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < N; i++) {
			digest_of(i, d);
			FMT(repo, sizeof(repo), "repo%d", i % 37);
			wh_meta_stored(m, repo, d, i % 2, 1 + i);
		}
		for (int i = 0; i < N; i++) {
			if (i % 3 == 0)
				continue;
			digest_of(i, d);
			FMT(repo, sizeof(repo), "repo%d", i % 37);
			wh_meta_forget(m, repo, d);
		}
	}
	int bad = 0;
	for (int i = 0; i < N; i++) {
		digest_of(i, d);
		FMT(repo, sizeof(repo), "repo%d", i % 37);
		bool have = wh_meta_get(m, repo, d, &st);
		if (have != (i % 3 == 0) || (have && st.pushed_ms != 1 + i))
			bad++;
	}
	CHECK(bad == 0);
	CHECK(wh_meta_count(m) == N / 3);
	wh_meta_close(m);
	long grown = file_size(path);
	CHECK(wh_meta_open(path, &m) == 0);
	CHECK(wh_meta_count(m) == N / 3);
	wh_meta_close(m);
	long rewritten = file_size(path);
	CHECK(grown > 1000000);
	CHECK(rewritten > 0 && rewritten * 4 < grown);
}

/* Attached to a loop, lines go out from the pool, in batches. */
static void test_loop(void)
{
	uv_loop_t loop;
	wh_meta *m;
	char d[WH_DIGEST_LEN + 1];

	unlink(path);
	uv_loop_init(&loop);
	CHECK(wh_meta_open(path, &m) == 0);
	wh_meta_attach(m, &loop);
	digest_of(99, d);
	wh_meta_stored(m, "a/b", d, true, 42);
	for (int i = 0; i < 100; i++)
		wh_meta_pulled(m, "a/b", d, 100000 + i * 1000);
	uv_run(&loop, UV_RUN_NOWAIT);
	wh_meta_detach(m);
	uv_run(&loop, UV_RUN_DEFAULT); /* the write and the timer's close */
	CHECK(file_size(path) > 0);
	wh_meta_close(m);
	CHECK(uv_loop_close(&loop) == 0);
	CHECK(wh_meta_open(path, &m) == 0);
	wh_meta_stats st;
	CHECK(wh_meta_get(m, "a/b", d, &st) && st.pushed_ms == 42);
	/* 100 pulls a second apart: two lines (the first and 60 s later). */
	CHECK(st.pulled_ms == 160000);
	wh_meta_close(m);
}

int main(void)
{
	if (!mkdtemp(dir))
		return 2;
	FMT(path, sizeof(path), "%s/meta.log", dir);
	test_roundtrip();
	test_sha512_line();
	test_damage();
	test_churn_and_rewrite();
	test_loop();
	check_rm_rf(dir);
	CHECK_DONE();
}
