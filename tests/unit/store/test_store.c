/* The store against a fresh temp root: blobs, dedupe, uploads (and their
 * survival across a restart), manifests and tags, catalog, referrers, and
 * reading an index.json as Zot writes it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include "check.h"
#include "store_put.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "wharf/base/common.h"
#include "wharf/oci/ref.h"
#include "wharf/store/store.h"

static char root[64];

/* ---- helpers ---- */

static void new_root(void)
{
	if (root[0])
		check_rm_rf(root);
	memcpy(root, "/tmp/wharf-test-store-XXXXXX", 29);
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		exit(2);
	}
}

static void path_of(char *buf, const char *rel)
{
	FMT(buf, PATH_MAX, "%s/%s", root, rel);
}

static int mkdir_rel(const char *rel)
{
	char p[PATH_MAX];

	path_of(p, rel);
	return mkdir(p, 0755);
}

static bool exists(const char *rel)
{
	char p[PATH_MAX];
	struct stat sb;

	path_of(p, rel);
	return lstat(p, &sb) == 0;
}

static void write_text(const char *rel, const char *text)
{
	char p[PATH_MAX];
	FILE *f;

	path_of(p, rel);
	f = fopen(p, "w");
	if (!f) {
		perror(p);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

static char *read_text(const char *rel)
{
	char p[PATH_MAX];
	char *buf = NULL;
	size_t cap = 0, len = 0;
	FILE *f;

	path_of(p, rel);
	f = fopen(p, "r");
	if (!f)
		return NULL;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap * 2 + 8192;
			buf = wh_realloc(buf, cap);
		}
		size_t n = fread(buf + len, 1, 4096, f);
		len += n;
		if (n == 0)
			break;
	}
	buf[len] = '\0';
	fclose(f);
	return buf;
}

static cJSON *read_json(const char *rel)
{
	char *t = read_text(rel);
	cJSON *j = t ? cJSON_Parse(t) : NULL;

	free(t);
	return j;
}

static int count_dir(const char *rel)
{
	char p[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int n = 0;

	path_of(p, rel);
	d = opendir(p);
	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	}
	closedir(d);
	return n;
}

static int count_fds(void)
{
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL)
		n++;
	closedir(d);
	return n;
}

static int put_manifest(wh_store *st, const char *repo, const char *tag, const char *json,
                        const char *media_type, char digest[WH_DIGEST_LEN + 1])
{
	wh_sha256_digest(json, strlen(json), digest);
	return wh_store_manifest_put(st, repo, tag, digest, media_type, json, strlen(json));
}

static char *blob_rel(char *buf, const char *repo, const char *digest)
{
	FMT(buf, PATH_MAX, "%s/blobs/sha256/%s", repo, digest + 7);
	return buf;
}

static int index_entries(const char *repo)
{
	char rel[PATH_MAX];
	cJSON *j;
	int n;

	FMT(rel, sizeof(rel), "%s/index.json", repo);
	j = read_json(rel);
	n = j ? cJSON_GetArraySize(cJSON_GetObjectItem(j, "manifests")) : -1;
	cJSON_Delete(j);
	return n;
}

static bool tags_are(wh_store *st, const char *repo, const char *const *want, int nwant)
{
	char **tags = NULL;
	int count = 0;
	bool more = true, ok;

	ok =
	    wh_store_tags(st, repo, NULL, -1, &tags, &count, &more) == 0 && count == nwant && !more;
	for (int i = 0; ok && i < nwant; i++)
		ok = strcmp(tags[i], want[i]) == 0;
	if (!ok) {
		fprintf(stderr, "tags of %s:", repo);
		for (int i = 0; i < count; i++)
			fprintf(stderr, " %s", tags[i]);
		fprintf(stderr, "\n");
	}
	wh_strv_free(tags, count);
	return ok;
}

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX    "application/vnd.oci.image.index.v1+json"
#define BAD_DIGEST   "sha256:../../../../etc/passwd"
#define ZERO_DIGEST  "sha256:0000000000000000000000000000000000000000000000000000000000000000"

/* ---- tests ---- */

static void test_open_removes_leftovers(void)
{
	wh_store *st = NULL;

	new_root();
	CHECK(mkdir_rel(".wharf") == 0);
	CHECK(mkdir_rel(".wharf/tmp") == 0);
	write_text(".wharf/tmp/half-written-1", "junk");
	write_text(".wharf/tmp/half-written-2", "junk");
	CHECK(count_dir(".wharf/tmp") == 2);
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(st != NULL);
	CHECK(count_dir(".wharf/tmp") == 0);
	CHECK(exists(".wharf/blobs/sha256"));
	CHECK_STREQ(wh_store_root(st), root);
	wh_store_close(st);

	/* Trailing slashes are dropped; the root is created if missing. */
	{
		char sub[PATH_MAX];
		FMT(sub, sizeof(sub), "%s/new/root//", root);
		CHECK(wh_store_open(sub, false, &st) == 0);
		CHECK(st && wh_store_root(st)[strlen(wh_store_root(st)) - 1] == 't');
		CHECK(exists("new/root/.wharf/tmp"));
		CHECK(!exists("new/root/.wharf/blobs"));
		wh_store_close(st);
	}
}

static void test_blobs(bool dedupe)
{
	char d[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1], rel[PATH_MAX], buf[16];
	char tmp[PATH_MAX];
	wh_store *st = NULL;
	int64_t size = -1;
	int fd = -1;

	new_root();
	CHECK(wh_store_open(root, dedupe, &st) == 0);

	CHECK(!wh_store_repo_exists(st, "a/b"));
	CHECK(put_blob(st, "a/b", "hello", d) == 0);
	CHECK(wh_store_repo_exists(st, "a/b")); /* a push creates the repository */
	CHECK(exists("a/b/oci-layout") && exists("a/b/index.json"));
	CHECK(wh_store_blob_stat(st, "a/b", d, &size) == 0 && size == 5);
	CHECK(wh_store_blob_open(st, "a/b", d, &fd, &size) == 0 && fd >= 0 && size == 5);
	if (fd >= 0) {
		memset(buf, 0, sizeof(buf));
		CHECK(read(fd, buf, sizeof(buf)) == 5 && memcmp(buf, "hello", 5) == 0);
		close(fd);
	}
	CHECK(count_dir(".wharf/tmp") == 0);

	/* Publishing the same blob again is harmless, and drops the temp file. */
	CHECK(put_blob(st, "a/b", "hello", d) == 0);
	CHECK(count_dir(".wharf/tmp") == 0);
	CHECK(wh_store_blob_stat(st, "a/b", d, &size) == 0 && size == 5);

	wh_sha256_digest("absent", 6, d2);
	CHECK(wh_store_blob_stat(st, "a/b", d2, &size) == WH_ENOTFOUND);
	CHECK(wh_store_blob_stat(st, "nope", d, &size) == WH_ENOTFOUND);
	CHECK(wh_store_blob_open(st, "a/b", d2, &fd, &size) == WH_ENOTFOUND && fd == -1);

	/* Dedupe: one copy, hard-linked; without it, no shared copy at all. */
	CHECK(put_blob(st, "other", "hello", d) == 0);
	FMT(rel, sizeof(rel), ".wharf/blobs/sha256/%s", d + 7);
	if (dedupe) {
		struct stat g, r1, r2;
		char p[PATH_MAX];
		path_of(p, rel);
		CHECK(stat(p, &g) == 0 && g.st_nlink == 3);
		path_of(p, blob_rel(rel, "a/b", d));
		CHECK(stat(p, &r1) == 0 && r1.st_ino == g.st_ino);
		path_of(p, blob_rel(rel, "other", d));
		CHECK(stat(p, &r2) == 0 && r2.st_ino == g.st_ino);
	} else {
		CHECK(!exists(rel));
	}

	/* Mount: a link from the source repository. */
	CHECK(wh_store_blob_mount(st, "mounted/here", "a/b", d) == 0);
	CHECK(wh_store_blob_stat(st, "mounted/here", d, &size) == 0 && size == 5);
	CHECK(wh_store_blob_mount(st, "mounted/here", "a/b", d) == 0); /* again: fine */
	CHECK(wh_store_blob_mount(st, "mounted/here", "a/b", d2) == WH_ENOTFOUND);
	CHECK(wh_store_blob_mount(st, "x", "does/not/exist", d) == WH_ENOTFOUND);
	{
		struct stat a, m;
		char p[PATH_MAX];
		path_of(p, blob_rel(rel, "a/b", d));
		CHECK(stat(p, &a) == 0);
		path_of(p, blob_rel(rel, "mounted/here", d));
		CHECK(stat(p, &m) == 0 && m.st_ino == a.st_ino);
		CHECK(a.st_nlink == (dedupe ? 4u : 2u));
	}

	/* Delete: from that repository only. */
	CHECK(wh_store_blob_delete(st, "a/b", d) == 0);
	CHECK(wh_store_blob_stat(st, "a/b", d, &size) == WH_ENOTFOUND);
	CHECK(wh_store_blob_delete(st, "a/b", d) == WH_ENOTFOUND);
	CHECK(wh_store_blob_stat(st, "other", d, &size) == 0);
	CHECK(wh_store_blob_stat(st, "mounted/here", d, &size) == 0);
	if (dedupe) {
		struct stat g;
		char p[PATH_MAX];
		FMT(rel, sizeof(rel), ".wharf/blobs/sha256/%s", d + 7);
		path_of(p, rel);
		CHECK(stat(p, &g) == 0 && g.st_nlink == 3);
	}

	/* Defensive checks: nothing outside the grammar reaches the filesystem,
	 * and a refused temp file is still consumed. */
	CHECK(wh_store_blob_stat(st, "../x", d, &size) == WH_EINVAL);
	CHECK(wh_store_blob_stat(st, "a/b", BAD_DIGEST, &size) == WH_EINVAL);
	CHECK(wh_store_blob_stat(st, "a/b", "sha512:abc", &size) == WH_EINVAL);
	CHECK(wh_store_blob_open(st, "A", d, &fd, &size) == WH_EINVAL);
	CHECK(wh_store_blob_delete(st, "a/../b", d) == WH_EINVAL);
	CHECK(wh_store_blob_mount(st, "a", "/etc", d) == WH_EINVAL);
	fd = wh_store_tmp_create(st, tmp, sizeof(tmp));
	CHECK(fd >= 0);
	close(fd);
	CHECK(wh_store_blob_publish(st, "..", tmp, d) == WH_EINVAL);
	CHECK(access(tmp, F_OK) != 0);
	CHECK(!exists("../index.json"));

	wh_store_close(st);
}

/* Corrupt bytes moved aside: out of the repository (and out of the shared
 * copy when it is the same file, so the next publish does not link them
 * back), kept under .wharf/corrupt under a name never reused; other
 * repositories' links stay; publishing the digest again gives a fresh
 * file. */
static void test_quarantine(bool dedupe)
{
	char d[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1], rel[PATH_MAX], p[PATH_MAX];
	wh_store *st = NULL;
	struct stat before, after;
	int64_t size = -1;

	new_root();
	CHECK(wh_store_open(root, dedupe, &st) == 0);
	CHECK(put_blob(st, "a", "corrupt me", d) == 0);
	CHECK(put_blob(st, "b", "corrupt me", d) == 0);
	path_of(p, blob_rel(rel, "a", d));
	CHECK(stat(p, &before) == 0);
	CHECK(!exists(".wharf/corrupt"));

	CHECK(wh_store_blob_quarantine(st, "a", d) == 0);
	CHECK(wh_store_blob_stat(st, "a", d, &size) == WH_ENOTFOUND);
	CHECK(wh_store_blob_stat(st, "b", d, &size) == 0); /* b's link is b's business */
	FMT(rel, sizeof(rel), ".wharf/blobs/sha256/%s", d + 7);
	CHECK(!exists(rel));
	CHECK(count_dir(".wharf/corrupt") == 1);
	{
		/* <hex>.<unix time>, the same inode */
		DIR *dir;
		struct dirent *de;
		path_of(p, ".wharf/corrupt");
		dir = opendir(p);
		while (dir && (de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			CHECK(strncmp(de->d_name, d + 7, WH_SHA256_HEX) == 0);
			CHECK(de->d_name[WH_SHA256_HEX] == '.');
			FMT(rel, sizeof(rel), ".wharf/corrupt/%s", de->d_name);
			path_of(p, rel);
			CHECK(stat(p, &after) == 0 && after.st_ino == before.st_ino);
		}
		if (dir)
			closedir(dir);
	}

	/* Again for b, within the same second: a second name, nothing replaced. */
	CHECK(wh_store_blob_quarantine(st, "b", d) == 0);
	CHECK(wh_store_blob_stat(st, "b", d, &size) == WH_ENOTFOUND);
	CHECK(count_dir(".wharf/corrupt") == 2);

	/* The next publish is a new file, not the old bytes linked back. */
	CHECK(put_blob(st, "a", "corrupt me", d) == 0);
	path_of(p, blob_rel(rel, "a", d));
	CHECK(stat(p, &after) == 0 && after.st_ino != before.st_ino);
	if (dedupe) {
		FMT(rel, sizeof(rel), ".wharf/blobs/sha256/%s", d + 7);
		path_of(p, rel);
		CHECK(stat(p, &after) == 0 && after.st_ino != before.st_ino && after.st_nlink == 2);
	}

	/* A shared copy that is another file (a copy, not a link) stays. */
	wh_sha256_digest("separate", 8, d2);
	if (dedupe) {
		struct stat g;
		put_blob(st, "c", "separate", d2);
		path_of(p, blob_rel(rel, "c", d2));
		CHECK(unlink(p) == 0);
		write_text(blob_rel(rel, "c", d2), "separaTe");
		CHECK(wh_store_blob_quarantine(st, "c", d2) == 0);
		FMT(rel, sizeof(rel), ".wharf/blobs/sha256/%s", d2 + 7);
		path_of(p, rel);
		CHECK(stat(p, &g) == 0 && g.st_nlink == 1);
	}

	/* Nothing there, or nothing valid. */
	CHECK(wh_store_blob_quarantine(st, "a", d2) == WH_ENOTFOUND);
	CHECK(wh_store_blob_quarantine(st, "nope", d) == WH_ENOTFOUND);
	CHECK(wh_store_blob_quarantine(st, "../a", d) == WH_EINVAL);
	CHECK(wh_store_blob_quarantine(st, "a", BAD_DIGEST) == WH_EINVAL);
	CHECK(count_dir(".wharf/corrupt") == (dedupe ? 3 : 2));
	wh_store_close(st);
}

static void test_uploads(void)
{
	char id[37], id2[37], d[WH_DIGEST_LEN + 1], rel[PATH_MAX];
	wh_store *st = NULL;
	wh_upload *up = NULL, *up2 = NULL;
	int64_t size = 0;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);

	CHECK(wh_store_upload_create(st, "up/load", id) == 0);
	CHECK(strlen(id) == 36 && id[8] == '-' && id[13] == '-' && id[14] == '4' &&
	      strchr("89ab", id[19]) != NULL);
	FMT(rel, sizeof(rel), ".wharf/uploads/%s/data", id);
	CHECK(exists(rel));
	{
		/* The session names its repository beside its bytes; the
		 * repository itself is not created by a session. */
		char repo_rel[PATH_MAX], *text;
		FMT(repo_rel, sizeof(repo_rel), ".wharf/uploads/%s/repo", id);
		text = read_text(repo_rel);
		CHECK_STREQ(text, "up/load\n");
		free(text);
		CHECK(!exists("up"));
		CHECK(!wh_store_repo_exists(st, "up/load"));
	}
	CHECK(wh_store_upload_get(st, "up/load", id, &up) == 0 && up);
	CHECK(wh_store_upload_get(st, "up/load", id, &up2) == 0 && up2 == up);
	CHECK(wh_upload_size(up) == 0);
	CHECK(wh_upload_write(up, "hel", 3) == 0);
	CHECK(wh_upload_write(up, "", 0) == 0);
	CHECK(wh_upload_write(up, "lo", 2) == 0);
	CHECK(wh_upload_size(up) == 5);

	/* Wrong digest: WH_EDIGEST, the session and its bytes are gone. */
	wh_sha256_digest("HELLO", 5, d);
	CHECK(wh_store_upload_finish(st, up, d) == WH_EDIGEST);
	CHECK(!exists(rel));
	CHECK(count_dir(".wharf/uploads") == 0);
	CHECK(!exists("up")); /* nothing was stored: still no repository */
	CHECK(wh_store_upload_get(st, "up/load", id, &up) == WH_ENOTFOUND && up == NULL);
	CHECK(wh_store_blob_stat(st, "up/load", d, &size) == WH_ENOTFOUND);

	/* Right digest: published, session gone. */
	CHECK(wh_store_upload_create(st, "up/load", id) == 0);
	FMT(rel, sizeof(rel), ".wharf/uploads/%s", id);
	CHECK(wh_store_upload_get(st, "up/load", id, &up) == 0);
	CHECK(wh_upload_write(up, "hello", 5) == 0);
	CHECK(wh_store_upload_finish(st, up, "sha256:nope") == WH_EINVAL); /* session kept */
	CHECK(wh_store_upload_get(st, "up/load", id, &up) == 0 && wh_upload_size(up) == 5);
	wh_sha256_digest("hello", 5, d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	CHECK(!exists(rel)); /* the session's directory, whole */
	CHECK(count_dir(".wharf/uploads") == 0);
	CHECK(wh_store_repo_exists(st, "up/load"));
	CHECK(wh_store_blob_stat(st, "up/load", d, &size) == 0 && size == 5);
	CHECK(wh_store_upload_get(st, "up/load", id, &up) == WH_ENOTFOUND);

	/* An empty upload is a valid blob. */
	CHECK(wh_store_upload_create(st, "up/load", id) == 0);
	CHECK(wh_store_upload_get(st, "up/load", id, &up) == 0);
	wh_sha256_digest("", 0, d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	CHECK(wh_store_blob_stat(st, "up/load", d, &size) == 0 && size == 0);

	/* Cancel. */
	CHECK(wh_store_upload_create(st, "up/load", id) == 0);
	FMT(rel, sizeof(rel), ".wharf/uploads/%s", id);
	CHECK(wh_store_upload_get(st, "up/load", id, &up) == 0);
	CHECK(wh_upload_write(up, "zzz", 3) == 0);
	CHECK(wh_store_upload_cancel(st, up) == 0);
	CHECK(!exists(rel));
	CHECK(count_dir(".wharf/uploads") == 0);
	CHECK(wh_store_upload_get(st, "up/load", id, &up) == WH_ENOTFOUND);

	/* Sessions belong to their repository; ids are uuids and nothing else. */
	CHECK(wh_store_upload_create(st, "up/load", id) == 0);
	CHECK(wh_store_upload_create(st, "up/load", id2) == 0);
	CHECK(strcmp(id, id2) != 0);
	CHECK(wh_store_upload_get(st, "other", id, &up) == WH_ENOTFOUND);
	CHECK(wh_store_upload_get(st, "up/load/x", id, &up) == WH_ENOTFOUND);
	CHECK(wh_store_upload_get(st, "up", id, &up) == WH_ENOTFOUND);
	CHECK(wh_store_upload_get(st, "up/load", "../../../../etc/passwd", &up) == WH_ENOTFOUND);
	CHECK(wh_store_upload_get(st, "up/load", "", &up) == WH_ENOTFOUND);
	CHECK(wh_store_upload_get(st, "up/load", "ABCDEF00-0000-4000-8000-000000000000", &up) ==
	      WH_ENOTFOUND);
	CHECK(wh_store_upload_get(st, "up/load", "00000000-0000-4000-8000-000000000000", &up) ==
	      WH_ENOTFOUND);
	CHECK(wh_store_upload_get(st, "../up", id, &up) == WH_EINVAL);
	CHECK(wh_store_upload_create(st, "UP", id2) == WH_EINVAL);

	wh_store_close(st); /* with sessions still open: no leak */
}

static void test_upload_restart(void)
{
	char id[37], d[WH_DIGEST_LEN + 1];
	wh_store *st = NULL;
	wh_upload *up = NULL;
	int64_t size = 0;

	new_root();
	CHECK(wh_store_open(root, false, &st) == 0);
	CHECK(wh_store_upload_create(st, "r", id) == 0);
	CHECK(wh_store_upload_get(st, "r", id, &up) == 0);
	CHECK(wh_upload_write(up, "part1-", 6) == 0);
	wh_store_close(st);

	/* A new process: the session is found on disk, with the hash state
	 * close saved; still not from another repository's URL. */
	st = NULL;
	CHECK(wh_store_open(root, false, &st) == 0);
	CHECK(wh_store_upload_get(st, "s", id, &up) == WH_ENOTFOUND);
	CHECK(wh_store_upload_get(st, "r", id, &up) == 0);
	CHECK(up && wh_upload_size(up) == 6);
	CHECK(wh_upload_write(up, "part2", 5) == 0);
	CHECK(wh_upload_size(up) == 11);
	wh_sha256_digest("part1-part2", 11, d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	CHECK(wh_store_blob_stat(st, "r", d, &size) == 0 && size == 11);

	/* What a crash can leave half-made or half-removed is not a session: a
	 * repo file cut short (no newline: "r" must not pass for "r2"), a
	 * directory without data, one without repo. */
	for (int i = 0; i < 3; i++) {
		char rel[PATH_MAX], p[PATH_MAX];
		CHECK(wh_store_upload_create(st, "r2", id) == 0);
		wh_store_close(st);
		if (i == 0) {
			FMT(rel, sizeof(rel), ".wharf/uploads/%s/repo", id);
			write_text(rel, "r");
		} else {
			FMT(rel, sizeof(rel), ".wharf/uploads/%s/%s", id, i == 1 ? "data" : "repo");
			path_of(p, rel);
			CHECK(unlink(p) == 0);
		}
		CHECK(wh_store_open(root, false, &st) == 0);
		CHECK(wh_store_upload_get(st, "r2", id, &up) == WH_ENOTFOUND);
		CHECK(wh_store_upload_get(st, "r", id, &up) == WH_ENOTFOUND);
	}
	wh_store_close(st);
}

static void test_upload_eviction(void)
{
	enum { N = WH_UPLOADS_OPEN_MAX + 20 };
	static char ids[N][37];
	char d[WH_DIGEST_LEN + 1], data[32];
	wh_store *st = NULL;
	wh_upload *up = NULL;
	int base, ok = 1;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	base = count_fds();
	for (int i = 0; i < N && ok; i++) {
		int len = snprintf(data, sizeof(data), "session %d", i);
		ok = wh_store_upload_create(st, "ev", ids[i]) == 0 &&
		     wh_store_upload_get(st, "ev", ids[i], &up) == 0 &&
		     wh_upload_write(up, data, (size_t)len) == 0;
	}
	CHECK(ok);
	/* Open fds stay bounded by the table size. */
	CHECK(count_fds() <= base + WH_UPLOADS_OPEN_MAX);

	/* The first sessions were evicted: they come back from disk, intact. */
	for (int i = 0; i < 3; i++) {
		int len = snprintf(data, sizeof(data), "session %d", i);
		CHECK(wh_store_upload_get(st, "ev", ids[i], &up) == 0);
		CHECK(up && wh_upload_size(up) == len);
		CHECK(wh_upload_write(up, "+", 1) == 0);
		data[len] = '+';
		wh_sha256_digest(data, (size_t)len + 1, d);
		CHECK(wh_store_upload_finish(st, up, d) == 0);
	}
	/* The most recent one never left memory. */
	{
		int len = snprintf(data, sizeof(data), "session %d", N - 1);
		CHECK(wh_store_upload_get(st, "ev", ids[N - 1], &up) == 0);
		wh_sha256_digest(data, (size_t)len, d);
		CHECK(wh_store_upload_finish(st, up, d) == 0);
	}
	CHECK(count_fds() <= base + WH_UPLOADS_OPEN_MAX);
	wh_store_close(st);
	CHECK(count_fds() == base);
}

/* Overwrite a session's bytes on disk behind the store's back (same
 * length): whatever the store reads from there afterwards is these. */
static void scribble(const char *id, int64_t len)
{
	char rel[PATH_MAX], p[PATH_MAX];
	char *junk = wh_malloc((size_t)len + 1);
	int fd;

	memset(junk, '#', (size_t)len);
	FMT(rel, sizeof(rel), ".wharf/uploads/%s/data", id);
	path_of(p, rel);
	fd = open(p, O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, junk, (size_t)len, 0) == (ssize_t)len);
	if (fd >= 0)
		close(fd);
	free(junk);
}

static bool session_file(const char *id, const char *file)
{
	char rel[PATH_MAX];

	FMT(rel, sizeof(rel), ".wharf/uploads/%s/%s", id, file);
	return exists(rel);
}

/* Push the first sessions out of memory by creating as many new ones. */
static void evict_all(wh_store *st)
{
	char id[37];

	for (int i = 0; i < WH_UPLOADS_OPEN_MAX; i++)
		CHECK(wh_store_upload_create(st, "filler", id) == 0);
}

static void test_upload_state_restored_without_reading(void)
{
	static const char part1[] = "the first part, hashed as it came; ";
	static const char part2[] = "the second, after an eviction";
	char id[37], d[WH_DIGEST_LEN + 1], all[128];
	wh_store *st = NULL;
	wh_upload *up = NULL;
	int64_t size = 0;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(wh_store_upload_create(st, "keep", id) == 0);
	CHECK(wh_store_upload_get(st, "keep", id, &up) == 0);
	CHECK(wh_upload_write(up, part1, strlen(part1)) == 0);
	CHECK(!session_file(id, "hash")); /* in memory: nothing saved yet */
	evict_all(st);
	CHECK(session_file(id, "hash"));

	/* If getting the session read its bytes, it would hash these. */
	scribble(id, (int64_t)strlen(part1));
	CHECK(wh_store_upload_get(st, "keep", id, &up) == 0);
	CHECK(wh_upload_size(up) == (int64_t)strlen(part1));
	CHECK(!wh_upload_hash_behind(up));
	CHECK(wh_upload_write(up, part2, strlen(part2)) == 0);
	evict_all(st);
	CHECK(wh_store_upload_get(st, "keep", id, &up) == 0);
	FMT(all, sizeof(all), "%s%s", part1, part2);
	wh_sha256_digest(all, strlen(all), d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	CHECK(wh_store_blob_stat(st, "keep", d, &size) == 0 && size == (int64_t)strlen(all));
	CHECK(!session_file(id, "hash") && !session_file(id, "repo"));

	/* The same across a restart: close saves the state. */
	CHECK(wh_store_upload_create(st, "keep", id) == 0);
	CHECK(wh_store_upload_get(st, "keep", id, &up) == 0);
	CHECK(wh_upload_write(up, part1, strlen(part1)) == 0);
	wh_store_close(st);
	scribble(id, (int64_t)strlen(part1));
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(wh_store_upload_get(st, "keep", id, &up) == 0);
	CHECK(!wh_upload_hash_behind(up));
	wh_sha256_digest(part1, strlen(part1), d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	wh_store_close(st);
}

static void test_upload_pins(void)
{
	enum { PINNED = 8 };
	char ids[PINNED][37], id[37];
	wh_upload *pinned[PINNED], *up;
	wh_store *st = NULL;
	int base;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	base = count_fds();
	for (int i = 0; i < PINNED; i++) {
		CHECK(wh_store_upload_create(st, "pin", ids[i]) == 0);
		CHECK(wh_store_upload_get(st, "pin", ids[i], &pinned[i]) == 0);
		wh_upload_pin(pinned[i]);
		CHECK(wh_upload_pinned(pinned[i]));
		CHECK(wh_upload_write(pinned[i], "p", 1) == 0);
	}
	/* Twice the table's worth of new sessions: the pinned ones stay, the
	 * pointers stay valid, and only they take the table past its size. */
	for (int i = 0; i < 2 * WH_UPLOADS_OPEN_MAX; i++)
		CHECK(wh_store_upload_create(st, "pin", id) == 0);
	CHECK(count_fds() <= base + WH_UPLOADS_OPEN_MAX);
	for (int i = 0; i < PINNED; i++) {
		CHECK(!session_file(ids[i], "hash"));
		CHECK(wh_upload_write(pinned[i], "q", 1) == 0 && wh_upload_size(pinned[i]) == 2);
		CHECK(wh_store_upload_get(st, "pin", ids[i], &up) == 0 && up == pinned[i]);
		CHECK(wh_store_upload_get(st, "other", ids[i], &up) == WH_ENOTFOUND);
	}
	/* Pins count; the last unpin lets it go (and trims the table). */
	wh_upload_pin(pinned[0]);
	wh_upload_unpin(pinned[0]);
	CHECK(wh_upload_pinned(pinned[0]));
	for (int i = 0; i < PINNED; i++)
		wh_upload_unpin(pinned[i]);
	CHECK(count_fds() <= base + WH_UPLOADS_OPEN_MAX);
	evict_all(st);
	for (int i = 0; i < PINNED; i++) {
		char d[WH_DIGEST_LEN + 1];
		CHECK(session_file(ids[i], "hash"));
		CHECK(wh_store_upload_get(st, "pin", ids[i], &up) == 0);
		CHECK(!wh_upload_pinned(up) && wh_upload_size(up) == 2);
		wh_sha256_digest("pq", 2, d);
		if (i % 2) {
			CHECK(wh_store_upload_finish(st, up, d) == 0);
		} else {
			/* Finishing a pinned session ends it, pins and all. */
			wh_upload_pin(up);
			CHECK(wh_store_upload_cancel(st, up) == 0);
		}
	}
	wh_store_close(st);
	CHECK(count_fds() == base);
}

/* Catch a behind session up the way a server does, but on this thread. */
static int catch_up(wh_upload *up)
{
	wh_upload_catchup *job = NULL;
	int rc = wh_upload_catchup_begin(up, &job);

	if (rc != 0)
		return rc;
	wh_upload_catchup_run(job);
	return wh_upload_catchup_end(job);
}

static void copy_file(const char *from_rel, const char *to_rel)
{
	char from[PATH_MAX], to[PATH_MAX], buf[4096];
	ssize_t n = -1;
	int in, out;

	path_of(from, from_rel);
	path_of(to, to_rel);
	in = open(from, O_RDONLY);
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in >= 0 && out >= 0)
		n = read(in, buf, sizeof(buf));
	CHECK(n > 0 && write(out, buf, (size_t)n) == n);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
}

static void test_upload_catch_up(void)
{
	char id[37], d[WH_DIGEST_LEN + 1], rel[PATH_MAX], old_rel[PATH_MAX];
	wh_store *st = NULL;
	wh_upload *up = NULL;
	wh_upload_catchup *job = NULL;
	int64_t size = 0;

	new_root();
	CHECK(wh_store_open(root, false, &st) == 0);

	/* A crash leaves no saved state: the session is behind; writes go on. */
	CHECK(wh_store_upload_create(st, "cu", id) == 0);
	CHECK(wh_store_upload_get(st, "cu", id, &up) == 0);
	CHECK(wh_upload_write(up, "crash-", 6) == 0);
	wh_store_close(st);
	FMT(rel, sizeof(rel), ".wharf/uploads/%s/hash", id);
	{
		char p[PATH_MAX];
		path_of(p, rel);
		CHECK(unlink(p) == 0);
	}
	CHECK(wh_store_open(root, false, &st) == 0);
	CHECK(wh_store_upload_get(st, "cu", id, &up) == 0);
	CHECK(wh_upload_size(up) == 6 && wh_upload_hash_behind(up));
	CHECK(wh_upload_write(up, "safe", 4) == 0);
	CHECK(wh_upload_size(up) == 10 && wh_upload_hash_behind(up));
	wh_sha256_digest("crash-safe", 10, d);
	CHECK(wh_store_upload_finish(st, up, d) == WH_EINVAL); /* behind: left as it was */
	CHECK(wh_store_upload_get(st, "cu", id, &up) == 0 && wh_upload_size(up) == 10);

	/* A job that never ran installs nothing; while one is out, the session
	 * can be neither finished nor cancelled, and it is pinned. */
	CHECK(wh_upload_catchup_begin(up, &job) == 0 && job);
	CHECK(wh_upload_pinned(up));
	CHECK(wh_upload_catchup_begin(up, &(wh_upload_catchup *){NULL}) == WH_EINVAL);
	CHECK(wh_store_upload_finish(st, up, d) == WH_EINVAL);
	CHECK(wh_store_upload_cancel(st, up) == WH_EINUSE);
	CHECK(wh_upload_catchup_end(job) == -ECANCELED);
	CHECK(wh_upload_hash_behind(up) && !wh_upload_pinned(up));

	/* Bytes written while the job runs: hashed by a second one. */
	CHECK(wh_upload_catchup_begin(up, &job) == 0);
	wh_upload_catchup_run(job);
	CHECK(wh_upload_write(up, "!", 1) == 0);
	CHECK(wh_upload_catchup_end(job) == 0);
	CHECK(wh_upload_hash_behind(up));
	CHECK(catch_up(up) == 0);
	CHECK(!wh_upload_hash_behind(up));
	CHECK(wh_upload_catchup_begin(up, &job) == WH_EINVAL && !job);
	wh_sha256_digest("crash-safe!", 11, d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	CHECK(wh_store_blob_stat(st, "cu", d, &size) == 0 && size == 11);

	/* A state saved at an eviction, then more bytes, then a crash: the
	 * state is good for the prefix it covers and only the rest is read. */
	CHECK(wh_store_upload_create(st, "cu", id) == 0);
	CHECK(wh_store_upload_get(st, "cu", id, &up) == 0);
	CHECK(wh_upload_write(up, "prefix|", 7) == 0);
	evict_all(st);
	FMT(rel, sizeof(rel), ".wharf/uploads/%s/hash", id);
	FMT(old_rel, sizeof(old_rel), ".wharf/uploads/%s/hash.old", id);
	copy_file(rel, old_rel);
	CHECK(wh_store_upload_get(st, "cu", id, &up) == 0);
	CHECK(wh_upload_write(up, "rest", 4) == 0);
	wh_store_close(st);
	{
		char a[PATH_MAX], b[PATH_MAX];
		path_of(a, old_rel);
		path_of(b, rel);
		CHECK(rename(a, b) == 0);
	}
	scribble(id, 7); /* the prefix must not be read again */
	CHECK(wh_store_open(root, false, &st) == 0);
	CHECK(wh_store_upload_get(st, "cu", id, &up) == 0);
	CHECK(wh_upload_size(up) == 11 && wh_upload_hash_behind(up));
	CHECK(catch_up(up) == 0);
	wh_sha256_digest("prefix|rest", 11, d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);

	/* A damaged state, or one from another boot, is not used: all of the
	 * bytes are hashed. */
	for (int damage = 0; damage < 3; damage++) {
		unsigned char buf[512];
		char p[PATH_MAX];
		ssize_t n;
		int fd;

		CHECK(wh_store_upload_create(st, "cu", id) == 0);
		CHECK(wh_store_upload_get(st, "cu", id, &up) == 0);
		CHECK(wh_upload_write(up, "whole", 5) == 0);
		wh_store_close(st);
		FMT(rel, sizeof(rel), ".wharf/uploads/%s/hash", id);
		path_of(p, rel);
		fd = open(p, O_RDWR);
		n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
		CHECK(n > 100);
		if (damage == 0)
			buf[90] ^= 1; /* a bit of the state: the check fails */
		else if (damage == 1)
			buf[20] ^= 1; /* the boot id (with a check to match) */
		if (damage == 1) {
			char check[WH_DIGEST_LEN + 1];
			wh_sha256_digest(buf, (size_t)n - WH_SHA256_LEN, check);
			memcpy(buf + n - WH_SHA256_LEN, check, WH_SHA256_LEN);
		}
		if (damage == 2)
			n -= 1; /* cut short */
		CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)n, 0) == n);
		close(fd);
		CHECK(wh_store_open(root, false, &st) == 0);
		CHECK(wh_store_upload_get(st, "cu", id, &up) == 0);
		CHECK(wh_upload_size(up) == 5 && wh_upload_hash_behind(up));
		CHECK(catch_up(up) == 0);
		wh_sha256_digest("whole", 5, d);
		CHECK(wh_store_upload_finish(st, up, d) == 0);
	}
	FMT(rel, sizeof(rel), ".wharf/uploads/%s", id);
	CHECK(!exists(rel));
	wh_store_close(st);
}

#define M1 "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\",\"config\":{}, \"n\":1}"
#define M2 "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\",\"config\":{}, \"n\":2}"
#define M3 "{\"schemaVersion\":2,\"mediaType\":\"application/x-declared\",\"n\":3}"
#define M4 "{\"schemaVersion\":2,\"manifests\":[],\"n\":4}"
#define M5 "{\"schemaVersion\":2,\"config\":{},\"n\":5}"

static void test_manifests(void)
{
	char d1[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1], d3[WH_DIGEST_LEN + 1];
	char d4[WH_DIGEST_LEN + 1], d5[WH_DIGEST_LEN + 1];
	char dig[WH_DIGEST_LEN + 1], rel[PATH_MAX];
	const char *v1[] = {"v1"}, *v123[] = {"v1", "v2", "v3"}, *v13[] = {"v1", "v3"};
	wh_manifest m = {0};
	wh_store *st = NULL;
	char *mt = NULL, *text;
	int64_t size = 0;
	cJSON *j, *e;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(wh_store_manifest_get(st, "app", "v1", &m) == WH_ENOTFOUND);
	CHECK(wh_store_tags(st, "app", NULL, -1, &(char **){NULL}, &(int){0}, &(bool){0}) ==
	      WH_ENOTFOUND);

	CHECK(put_manifest(st, "app", "v1", M1, OCI_MANIFEST, d1) == 0);
	CHECK(wh_store_repo_exists(st, "app"));
	text = read_text("app/oci-layout");
	CHECK_STREQ(text, "{\"imageLayoutVersion\":\"1.0.0\"}");
	free(text);
	j = read_json("app/index.json");
	CHECK(j && cJSON_GetObjectItem(j, "schemaVersion")->valuedouble == 2);
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "mediaType")), OCI_INDEX);
	e = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "manifests"), 0);
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(e, "mediaType")), OCI_MANIFEST);
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(e, "digest")), d1);
	CHECK(cJSON_GetObjectItem(e, "size") &&
	      cJSON_GetObjectItem(e, "size")->valuedouble == (double)strlen(M1));
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "annotations"),
	                                                     "org.opencontainers.image.ref.name")),
	            "v1");
	cJSON_Delete(j);

	/* By tag and by digest; stat without the bytes. */
	CHECK(wh_store_manifest_get(st, "app", "v1", &m) == 0);
	CHECK_STREQ(m.digest, d1);
	CHECK_STREQ(m.media_type, OCI_MANIFEST);
	CHECK(m.len == strlen(M1) && m.data && memcmp(m.data, M1, m.len) == 0);
	wh_manifest_free(&m);
	CHECK(wh_store_manifest_get(st, "app", d1, &m) == 0 && m.len == strlen(M1));
	wh_manifest_free(&m);
	CHECK(wh_store_manifest_stat(st, "app", "v1", dig, &mt, &size) == 0);
	CHECK_STREQ(dig, d1);
	CHECK_STREQ(mt, OCI_MANIFEST);
	CHECK(size == (int64_t)strlen(M1));
	free(mt);
	mt = NULL;
	CHECK(wh_store_manifest_get(st, "app", "v2", &m) == WH_ENOTFOUND);
	CHECK(wh_store_manifest_get(st, "app", ZERO_DIGEST, &m) == WH_ENOTFOUND);
	CHECK(wh_store_manifest_stat(st, "app", "v2", dig, &mt, &size) == WH_ENOTFOUND && !mt);
	CHECK(wh_store_manifest_get(st, "app", "bad tag", &m) == WH_EINVAL);
	CHECK(wh_store_manifest_get(st, "app", BAD_DIGEST, &m) == WH_EINVAL);
	CHECK(wh_store_manifest_get(st, "../app", "v1", &m) == WH_EINVAL);

	/* Move v1 to M2: M1 stays reachable by digest, as an untagged entry. */
	CHECK(put_manifest(st, "app", "v1", M2, OCI_MANIFEST, d2) == 0);
	CHECK(wh_store_manifest_get(st, "app", "v1", &m) == 0);
	CHECK_STREQ(m.digest, d2);
	wh_manifest_free(&m);
	CHECK(wh_store_manifest_get(st, "app", d1, &m) == 0);
	wh_manifest_free(&m);
	CHECK(index_entries("app") == 2);
	CHECK(tags_are(st, "app", v1, 1));

	/* Tagging M1 again reuses its untagged entry; more tags, more entries. */
	CHECK(put_manifest(st, "app", "v2", M1, OCI_MANIFEST, d1) == 0);
	CHECK(index_entries("app") == 2);
	CHECK(put_manifest(st, "app", "v3", M1, OCI_MANIFEST, d1) == 0);
	CHECK(index_entries("app") == 3);
	CHECK(put_manifest(st, "app", NULL, M1, OCI_MANIFEST, d1) == 0); /* by digest: no change */
	CHECK(put_manifest(st, "app", "v3", M1, OCI_MANIFEST, d1) == 0); /* same again */
	CHECK(index_entries("app") == 3);
	CHECK(tags_are(st, "app", v123, 3));
	CHECK(count_dir(".wharf/tmp") == 0);

	/* Delete by tag: only the tag; the last tag's removal keeps the digest. */
	CHECK(wh_store_manifest_delete(st, "app", "v2") == 0);
	CHECK(tags_are(st, "app", v13, 2));
	CHECK(index_entries("app") == 2);
	CHECK(wh_store_manifest_delete(st, "app", "v3") == 0);
	CHECK(tags_are(st, "app", v1, 1));
	CHECK(index_entries("app") == 2);
	CHECK(wh_store_manifest_get(st, "app", d1, &m) == 0);
	wh_manifest_free(&m);
	CHECK(wh_store_manifest_delete(st, "app", "v3") == WH_ENOTFOUND);

	/* Delete by digest: the manifest, its bytes and its tags. */
	CHECK(wh_store_manifest_delete(st, "app", d1) == 0);
	CHECK(wh_store_manifest_get(st, "app", d1, &m) == WH_ENOTFOUND);
	CHECK(!exists(blob_rel(rel, "app", d1)));
	CHECK(wh_store_manifest_delete(st, "app", d1) == WH_ENOTFOUND);
	CHECK(wh_store_manifest_delete(st, "app", d2) == 0);
	CHECK(tags_are(st, "app", NULL, 0));
	CHECK(index_entries("app") == 0);
	CHECK(wh_store_manifest_delete(st, "nope", "v1") == WH_ENOTFOUND);

	/* A blob that is not a manifest of the repo is not deleted as one. */
	CHECK(put_blob(st, "app", "layer", dig) == 0);
	CHECK(wh_store_manifest_delete(st, "app", dig) == WH_ENOTFOUND);
	CHECK(wh_store_blob_stat(st, "app", dig, &size) == 0);

	/* No media type given: the manifest's own mediaType is reported. */
	CHECK(put_manifest(st, "app", "m3", M3, NULL, d3) == 0);
	CHECK(wh_store_manifest_get(st, "app", "m3", &m) == 0);
	CHECK_STREQ(m.media_type, "application/x-declared");
	wh_manifest_free(&m);
	CHECK(wh_store_manifest_stat(st, "app", d3, dig, &mt, &size) == 0);
	CHECK_STREQ(mt, "application/x-declared");
	free(mt);
	/* Nor in the manifest: inferred as a push's check infers it. */
	CHECK(put_manifest(st, "app", "m4", M4, NULL, d4) == 0);
	CHECK(wh_store_manifest_get(st, "app", "m4", &m) == 0);
	CHECK_STREQ(m.media_type, OCI_INDEX);
	wh_manifest_free(&m);
	CHECK(put_manifest(st, "app", "m5", M5, NULL, d5) == 0);
	CHECK(wh_store_manifest_stat(st, "app", "m5", dig, &mt, &size) == 0);
	CHECK_STREQ(mt, OCI_MANIFEST);
	free(mt);

	/* A manifest's bytes are not deleted as a blob: the tag would point at
	 * nothing. Tagged or not, it is WH_EINUSE and nothing changes. */
	CHECK(wh_store_blob_delete(st, "app", d3) == WH_EINUSE);
	CHECK(exists(blob_rel(rel, "app", d3)));
	CHECK(wh_store_manifest_get(st, "app", "m3", &m) == 0);
	wh_manifest_free(&m);
	CHECK(put_manifest(st, "app", NULL, M2, OCI_MANIFEST, d2) == 0);
	CHECK(wh_store_blob_delete(st, "app", d2) == WH_EINUSE);
	/* The same bytes in a repository that holds them as a blob only go. */
	CHECK(put_blob(st, "other", M2, dig) == 0);
	CHECK(wh_store_blob_delete(st, "other", d2) == 0);
	CHECK(wh_store_manifest_get(st, "app", d2, &m) == 0);
	wh_manifest_free(&m);

	/* The index names a manifest whose bytes are gone (another tool removed
	 * them; a new process, so no cached copy): not found, no crash. */
	{
		char p[PATH_MAX];
		path_of(p, blob_rel(rel, "app", d3));
		CHECK(unlink(p) == 0);
		wh_store_close(st);
		CHECK(wh_store_open(root, true, &st) == 0);
	}
	CHECK(wh_store_manifest_get(st, "app", "m3", &m) == WH_ENOTFOUND);
	mt = NULL;
	CHECK(wh_store_manifest_stat(st, "app", "m3", dig, &mt, &size) == WH_ENOTFOUND && !mt);

	CHECK(wh_store_manifest_put(st, "app", "bad/tag", d1, OCI_MANIFEST, M1, strlen(M1)) ==
	      WH_EINVAL);
	CHECK(wh_store_manifest_put(st, "/etc", "x", d1, OCI_MANIFEST, M1, strlen(M1)) ==
	      WH_EINVAL);
	CHECK(wh_store_manifest_put(st, "app", "x", BAD_DIGEST, OCI_MANIFEST, M1, strlen(M1)) ==
	      WH_EINVAL);
	CHECK(count_dir(".wharf/tmp") == 0);
	wh_store_close(st);
}

static void test_tags_pagination(void)
{
	/* Lexical order is case-insensitive (the spec's words). */
	static const char *const all[] = {"a", "t0", "t1", "t2", "t3", "t4", "v1.0", "Z"};
	const int nall = (int)WH_ARRAY_SIZE(all);
	char d[WH_DIGEST_LEN + 1], json[64];
	wh_store *st = NULL;
	char **tags = NULL;
	const char *last = NULL;
	char lastbuf[WH_TAG_MAX + 1] = "";
	int count = 0, seen = 0;
	bool more = false;

	new_root();
	CHECK(wh_store_open(root, false, &st) == 0);
	for (int i = nall - 1; i >= 0; i--) {
		FMT(json, sizeof(json), "{\"schemaVersion\":2,\"i\":%d}", i % 3);
		CHECK(put_manifest(st, "p", all[i], json, OCI_MANIFEST, d) == 0);
	}
	CHECK(tags_are(st, "p", (const char **)all, nall));

	/* Pages of 3: 3, 3, 2. */
	for (int page = 0; page < 3; page++) {
		CHECK(wh_store_tags(st, "p", last, 3, &tags, &count, &more) == 0);
		CHECK(count == (page < 2 ? 3 : 2));
		CHECK(more == (page < 2));
		for (int i = 0; i < count; i++)
			CHECK_STREQ(tags[i], all[seen + i]);
		seen += count;
		if (count > 0) {
			FMT(lastbuf, sizeof(lastbuf), "%s", tags[count - 1]);
			last = lastbuf;
		}
		wh_strv_free(tags, count);
	}
	CHECK(seen == nall);

	CHECK(wh_store_tags(st, "p", NULL, 0, &tags, &count, &more) == 0 && count == 0 && more);
	wh_strv_free(tags, count);
	CHECK(wh_store_tags(st, "p", "t3", -1, &tags, &count, &more) == 0 && count == 3 && !more);
	if (count == 3) {
		CHECK_STREQ(tags[0], "t4");
		CHECK_STREQ(tags[1], "v1.0");
		CHECK_STREQ(tags[2], "Z");
	}
	wh_strv_free(tags, count);
	CHECK(wh_store_tags(st, "p", "b", 1, &tags, &count, &more) == 0 && count == 1 && more);
	if (count == 1)
		CHECK_STREQ(tags[0], "t0");
	wh_strv_free(tags, count);
	CHECK(wh_store_tags(st, "p", "zzz", 5, &tags, &count, &more) == 0 && count == 0 && !more);
	wh_strv_free(tags, count);
	CHECK(wh_store_tags(st, "p", "v1.0", 1, &tags, &count, &more) == 0 && count == 1 && !more);
	if (count == 1)
		CHECK_STREQ(tags[0], "Z");
	wh_strv_free(tags, count);
	CHECK(wh_store_tags(st, "p", "Z", 1, &tags, &count, &more) == 0 && count == 0 && !more);
	wh_strv_free(tags, count);
	wh_store_close(st);
}

static bool repos_are(wh_store *st, const char *last, int n, const char *const *want, int nwant,
                      bool want_more)
{
	char **repos = NULL;
	int count = 0;
	bool more = !want_more, ok;

	ok = wh_store_repos(st, last, n, &repos, &count, &more) == 0 && count == nwant &&
	     more == want_more;
	for (int i = 0; ok && i < nwant; i++)
		ok = strcmp(repos[i], want[i]) == 0;
	if (!ok) {
		fprintf(stderr, "repos (more=%d):", more);
		for (int i = 0; i < count; i++)
			fprintf(stderr, " %s", repos[i]);
		fprintf(stderr, "\n");
	}
	wh_strv_free(repos, count);
	return ok;
}

static void test_repos(void)
{
	static const char *const all[] = {"a",       "a-b", "a/b",          "b/c/d",
	                                  "x/blobs", "z",   "z/blobs/inner"};
	static const char *const created[] = {"a", "a-b", "a/b", "b/c/d", "x/blobs", "z"};
	static const char *const merged[] = {"a",     "a-b",     "a/b", "b/c/d",
	                                     "c/new", "x/blobs", "z",   "z/blobs/inner"};
	char d[WH_DIGEST_LEN + 1], id[37];
	wh_store *st = NULL;
	char **names;
	int count;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(!wh_store_catalog_loaded(st));
	CHECK(repos_are(st, NULL, -1, NULL, 0, false)); /* scans, here */
	CHECK(wh_store_catalog_loaded(st));

	/* Each repository the store creates joins the catalog, in order. */
	CHECK(put_manifest(st, "z", "latest", M1, OCI_MANIFEST, d) == 0);
	CHECK(put_blob(st, "a/b", "x", d) == 0);
	CHECK(put_manifest(st, "a", "latest", M1, OCI_MANIFEST, d) == 0);
	CHECK(wh_store_upload_create(st, "not/yet", id) == 0); /* stores nothing */
	CHECK(put_blob(st, "b/c/d", "z", d) == 0);
	CHECK(put_manifest(st, "a-b", "latest", M2, OCI_MANIFEST, d) == 0);
	CHECK(put_blob(st, "x/blobs", "y", d) == 0); /* x is not a repository */
	CHECK(put_blob(st, "a", "again", d) == 0);   /* not listed twice */
	CHECK(wh_store_blob_mount(st, "a-b", "a", d) == 0);
	CHECK(repos_are(st, NULL, -1, created, 6, false));

	/* Not repositories: no index.json, a name outside the grammar, dot-dirs.
	 * A repository nested under another's blobs/ is one (its sha256/ is not). */
	CHECK(mkdir_rel("empty") == 0);
	CHECK(mkdir_rel("Bad") == 0);
	write_text("Bad/index.json", "{}");
	CHECK(mkdir_rel(".hidden") == 0);
	write_text(".hidden/index.json", "{}");
	CHECK(mkdir_rel("z/blobs/inner") == 0);
	write_text("z/blobs/inner/index.json", "{}");
	write_text("afile", "not a dir");
	CHECK(mkdir_rel("z/blobs/sha256/inner") == 0);
	write_text("z/blobs/sha256/inner/index.json", "{}");
	/* Written behind the store's back: served, but listed after a restart. */
	CHECK(wh_store_repo_exists(st, "z/blobs/inner"));
	CHECK(repos_are(st, NULL, -1, created, 6, false));
	wh_store_close(st);

	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(repos_are(st, NULL, -1, all, 7, false));
	CHECK(repos_are(st, NULL, 2, all, 2, true));
	CHECK(repos_are(st, "a-b", 2, all + 2, 2, true));
	CHECK(repos_are(st, "b/c/d", 2, all + 4, 2, true));
	CHECK(repos_are(st, "b/c/c", 2, all + 3, 2, true)); /* a last that is not a name */
	CHECK(repos_are(st, "0", 1, all, 1, true));
	CHECK(repos_are(st, "z", 2, all + 6, 1, false));
	CHECK(repos_are(st, "z/blobs/inner", 2, NULL, 0, false));
	CHECK(repos_are(st, "zz", -1, NULL, 0, false));
	CHECK(repos_are(st, NULL, 0, NULL, 0, true));
	CHECK(wh_store_repo_exists(st, "b/c/d"));
	CHECK(!wh_store_repo_exists(st, "b/c"));
	CHECK(!wh_store_repo_exists(st, "Bad"));
	wh_store_close(st);

	/* As a server does it: the scan runs (elsewhere) while repositories are
	 * created; loading merges the two, whether or not the scan saw them. */
	CHECK(wh_store_open(root, true, &st) == 0);
	wh_store_repos_scan(root, &names, &count);
	CHECK(count == 7);
	CHECK(put_blob(st, "c/new", "n", d) == 0); /* after the scan: not in it */
	CHECK(put_blob(st, "b/c/d", "n", d) == 0); /* existed: nothing to add */
	CHECK(!wh_store_catalog_loaded(st));
	wh_store_catalog_load(st, names, count);
	CHECK(wh_store_catalog_loaded(st));
	CHECK(repos_are(st, NULL, -1, merged, 8, false));
	wh_store_repos_scan(root, &names, &count); /* this one saw c/new */
	wh_store_catalog_load(st, names, count);
	CHECK(repos_are(st, NULL, -1, merged, 8, false));
	wh_store_close(st);
}

#define SUBJECT    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\",\"config\":{}}"
#define SBOM_TYPE  "application/vnd.example.sbom.v1"
#define SIG_CONFIG "application/vnd.example.sig.config"

static cJSON *find_desc(cJSON *list, const char *digest)
{
	cJSON *e;

	cJSON_ArrayForEach(e, list)
	{
		if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(e, "digest")), digest))
			return e;
	}
	return NULL;
}

static void test_referrers(void)
{
	char ds[WH_DIGEST_LEN + 1], da[WH_DIGEST_LEN + 1], db[WH_DIGEST_LEN + 1];
	char dc[WH_DIGEST_LEN + 1], dd[WH_DIGEST_LEN + 1];
	char a[512], b[512], c[512], dj[512];
	wh_store *st = NULL;
	char *json = NULL;
	cJSON *j, *list, *e;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(put_manifest(st, "r", "latest", SUBJECT, OCI_MANIFEST, ds) == 0);
	FMT(a, sizeof(a),
	    "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"%s\","
	    "\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\"},"
	    "\"subject\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu},"
	    "\"annotations\":{\"k\":\"v\"}}",
	    OCI_MANIFEST, SBOM_TYPE, OCI_MANIFEST, ds, strlen(SUBJECT));
	FMT(b, sizeof(b),
	    "{\"schemaVersion\":2,\"mediaType\":\"%s\","
	    "\"config\":{\"mediaType\":\"%s\"},\"subject\":{\"digest\":\"%s\"}}",
	    OCI_MANIFEST, SIG_CONFIG, ds);
	FMT(c, sizeof(c),
	    "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[],"
	    "\"subject\":{\"digest\":\"%s\"}}",
	    OCI_INDEX, ds);
	FMT(dj, sizeof(dj),
	    "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"artifactType\":\"%s\","
	    "\"subject\":{\"digest\":\"%s\"}}",
	    OCI_MANIFEST, SBOM_TYPE, ZERO_DIGEST);
	CHECK(put_manifest(st, "r", NULL, a, OCI_MANIFEST, da) == 0);
	CHECK(put_manifest(st, "r", NULL, b, OCI_MANIFEST, db) == 0);
	CHECK(put_manifest(st, "r", "idx", c, OCI_INDEX, dc) == 0);
	CHECK(put_manifest(st, "r", "other", dj, OCI_MANIFEST, dd) == 0);
	CHECK(put_manifest(st, "r", "again", a, OCI_MANIFEST, da) == 0); /* two entries, one desc */

	CHECK(wh_store_referrers(st, "r", ds, NULL, &json) == 0 && json);
	j = cJSON_Parse(json);
	free(json);
	json = NULL;
	CHECK(j && cJSON_GetObjectItem(j, "schemaVersion")->valuedouble == 2);
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "mediaType")), OCI_INDEX);
	list = cJSON_GetObjectItem(j, "manifests");
	CHECK(cJSON_GetArraySize(list) == 3);
	e = find_desc(list, da);
	CHECK(e != NULL);
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(e, "mediaType")), OCI_MANIFEST);
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(e, "artifactType")), SBOM_TYPE);
	CHECK(cJSON_GetObjectItem(e, "size") &&
	      cJSON_GetObjectItem(e, "size")->valuedouble == (double)strlen(a));
	CHECK_STREQ(
	    cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(e, "annotations"), "k")),
	    "v");
	e = find_desc(list, db);
	CHECK(e != NULL);
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(e, "artifactType")), SIG_CONFIG);
	CHECK(!cJSON_GetObjectItem(e, "annotations"));
	e = find_desc(list, dc);
	CHECK(e != NULL);
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(e, "mediaType")), OCI_INDEX);
	CHECK(!cJSON_GetObjectItem(e, "artifactType"));
	CHECK(find_desc(list, dd) == NULL && find_desc(list, ds) == NULL);
	cJSON_Delete(j);

	/* Filtered by artifact type. */
	CHECK(wh_store_referrers(st, "r", ds, SBOM_TYPE, &json) == 0 && json);
	j = cJSON_Parse(json);
	free(json);
	json = NULL;
	list = cJSON_GetObjectItem(j, "manifests");
	CHECK(cJSON_GetArraySize(list) == 1 && find_desc(list, da) != NULL);
	cJSON_Delete(j);
	CHECK(wh_store_referrers(st, "r", ds, "application/none", &json) == 0 && json);
	CHECK_STREQ(json, "{\"schemaVersion\":2,\"mediaType\":\"" OCI_INDEX "\",\"manifests\":[]}");
	free(json);
	json = NULL;

	/* Unknown subject, unknown repository: an empty list. */
	CHECK(wh_store_referrers(st, "r", ZERO_DIGEST "", NULL, &json) == 0 && json);
	j = cJSON_Parse(json);
	CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "manifests")) == 1); /* dd */
	cJSON_Delete(j);
	free(json);
	json = NULL;
	CHECK(wh_store_referrers(st, "r", da, NULL, &json) == 0 && json);
	CHECK_STREQ(json, "{\"schemaVersion\":2,\"mediaType\":\"" OCI_INDEX "\",\"manifests\":[]}");
	free(json);
	json = NULL;
	CHECK(wh_store_referrers(st, "nope", ds, NULL, &json) == 0 && json);
	CHECK_STREQ(json, "{\"schemaVersion\":2,\"mediaType\":\"" OCI_INDEX "\",\"manifests\":[]}");
	free(json);
	json = NULL;
	CHECK(wh_store_referrers(st, "r", BAD_DIGEST, NULL, &json) == WH_EINVAL && !json);

	/* A manifest deleted: no longer a referrer. */
	CHECK(wh_store_manifest_delete(st, "r", db) == 0);
	CHECK(wh_store_referrers(st, "r", ds, NULL, &json) == 0 && json);
	j = cJSON_Parse(json);
	CHECK(j && cJSON_GetArraySize(cJSON_GetObjectItem(j, "manifests")) == 2);
	cJSON_Delete(j);
	free(json);
	wh_store_close(st);
}

/* An index.json as Zot (or skopeo) writes it, with fields we do not use. */
static void test_zot_index(void)
{
	const char *manifest =
	    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST
	    "\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\"}}";
	char d[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1], rel[PATH_MAX], index[2048];
	wh_manifest m = {0};
	wh_store *st = NULL;
	cJSON *j, *arr, *e, *old = NULL;
	char **tags = NULL;
	int count = 0;
	bool more;

	new_root();
	wh_sha256_digest(manifest, strlen(manifest), d);
	CHECK(mkdir_rel("zot") == 0);
	CHECK(mkdir_rel("zot/repo") == 0);
	CHECK(mkdir_rel("zot/repo/blobs") == 0);
	CHECK(mkdir_rel("zot/repo/blobs/sha256") == 0);
	write_text("zot/repo/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
	write_text(blob_rel(rel, "zot/repo", d), manifest);
	FMT(index, sizeof(index),
	    "{\n  \"schemaVersion\": 2,\n  \"annotations\": {\"top\": \"level\"},\n"
	    "  \"manifests\": [\n"
	    "    {\"mediaType\": \"%s\", \"digest\": \"%s\", \"size\": %zu,\n"
	    "     \"annotations\": {\"org.opencontainers.image.ref.name\": \"latest\",\n"
	    "                     \"org.opencontainers.image.created\": \"2024-01-01\"},\n"
	    "     \"platform\": {\"architecture\": \"amd64\", \"os\": \"linux\"},\n"
	    "     \"artifactType\": \"application/x-art\", \"x-unknown\": {\"nested\": [1, 2]}},\n"
	    "    {\"mediaType\": \"%s\", \"digest\": \"%s\", \"size\": %zu,\n"
	    "     \"annotations\": {\"org.opencontainers.image.ref.name\": \"v1.2.3\"}},\n"
	    "    {\"mediaType\": \"%s\", \"digest\": \"%s\", \"size\": %zu,\n"
	    "     \"annotations\": {\"org.opencontainers.image.ref.name\": "
	    "\"docker.io/library/x:full\"}},\n"
	    "    {\"digest\": 12},\n"
	    "    {\"mediaType\": \"x\", \"digest\": \"sha512:abcd\", \"size\": 1,\n"
	    "     \"annotations\": {\"org.opencontainers.image.ref.name\": \"sha512tag\"}}\n"
	    "  ]\n}\n",
	    OCI_MANIFEST, d, strlen(manifest), OCI_MANIFEST, d, strlen(manifest), OCI_MANIFEST, d,
	    strlen(manifest));
	write_text("zot/repo/index.json", index);

	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(wh_store_repo_exists(st, "zot/repo"));
	CHECK(wh_store_tags(st, "zot/repo", NULL, -1, &tags, &count, &more) == 0);
	CHECK(count == 3); /* latest, sha512tag, v1.2.3: not the full reference */
	wh_strv_free(tags, count);
	CHECK(wh_store_manifest_get(st, "zot/repo", "latest", &m) == 0);
	CHECK_STREQ(m.digest, d);
	CHECK(m.len == strlen(manifest));
	wh_manifest_free(&m);
	CHECK(wh_store_manifest_get(st, "zot/repo", "sha512tag", &m) == WH_ENOTFOUND);

	/* Rewriting keeps what we did not write ourselves. */
	CHECK(put_manifest(st, "zot/repo", "new", M1, OCI_MANIFEST, d2) == 0);
	CHECK(put_manifest(st, "zot/repo", "v1.2.3", M1, OCI_MANIFEST, d2) == 0);
	j = read_json("zot/repo/index.json");
	CHECK(j != NULL);
	CHECK_STREQ(
	    cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "annotations"), "top")),
	    "level");
	CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(j, "mediaType")), OCI_INDEX);
	arr = cJSON_GetObjectItem(j, "manifests");
	cJSON_ArrayForEach(e, arr)
	{
		const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(
		    cJSON_GetObjectItem(e, "annotations"), "org.opencontainers.image.ref.name"));
		if (t && !strcmp(t, "latest"))
			old = e;
	}
	CHECK(old != NULL);
	if (old) {
		CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(
		                cJSON_GetObjectItem(old, "platform"), "architecture")),
		            "amd64");
		CHECK_STREQ(cJSON_GetStringValue(cJSON_GetObjectItem(old, "artifactType")),
		            "application/x-art");
		CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(old, "x-unknown"),
		                                             "nested")) == 2);
		CHECK_STREQ(cJSON_GetStringValue(
		                cJSON_GetObjectItem(cJSON_GetObjectItem(old, "annotations"),
		                                    "org.opencontainers.image.created")),
		            "2024-01-01");
	}
	/* v1.2.3 moved: its old entry went (d keeps "latest"), the odd ones stay. */
	CHECK(cJSON_GetArraySize(arr) == 6);
	cJSON_Delete(j);
	{
		const char *want[] = {"latest", "new", "sha512tag", "v1.2.3"};
		CHECK(tags_are(st, "zot/repo", want, 4));
	}
	CHECK(wh_store_manifest_get(st, "zot/repo", "v1.2.3", &m) == 0);
	CHECK_STREQ(m.digest, d2);
	wh_manifest_free(&m);

	/* Corrupt index.json files: errors, not crashes. */
	write_text("zot/repo/index.json", "{\"schemaVersion\": 2, \"manifests\": [");
	CHECK(wh_store_manifest_get(st, "zot/repo", "latest", &m) == WH_EIO);
	CHECK(wh_store_tags(st, "zot/repo", NULL, -1, &tags, &count, &more) == WH_EIO);
	CHECK(wh_store_manifest_put(st, "zot/repo", "x", d2, OCI_MANIFEST, M1, strlen(M1)) ==
	      WH_EIO);
	CHECK(wh_store_manifest_delete(st, "zot/repo", "latest") == WH_EIO);
	write_text("zot/repo/index.json", "{\"manifests\": {}}");
	CHECK(wh_store_manifest_get(st, "zot/repo", "latest", &m) == WH_EIO);
	write_text("zot/repo/index.json", "[]");
	CHECK(wh_store_manifest_stat(st, "zot/repo", "latest", d2, &(char *){NULL}, NULL) ==
	      WH_EIO);
	write_text("zot/repo/index.json", "");
	CHECK(wh_store_manifest_get(st, "zot/repo", d, &m) == WH_EIO);
	{
		char *json = NULL;
		CHECK(wh_store_referrers(st, "zot/repo", d, NULL, &json) == WH_EIO && !json);
	}
	write_text("zot/repo/index.json",
	           "{\"schemaVersion\":2,\"manifests\":[1,\"x\",null,{\"annotations\":[]},"
	           "{\"annotations\":{\"org.opencontainers.image.ref.name\":5}}]}");
	CHECK(wh_store_manifest_get(st, "zot/repo", "latest", &m) == WH_ENOTFOUND);
	CHECK(tags_are(st, "zot/repo", NULL, 0));
	CHECK(put_manifest(st, "zot/repo", "fresh", M1, OCI_MANIFEST, d2) == 0);
	CHECK(index_entries("zot/repo") == 6);
	CHECK(wh_store_manifest_get(st, "zot/repo", "fresh", &m) == 0);
	wh_manifest_free(&m);
	/* No manifests key at all: an empty index. */
	write_text("zot/repo/index.json", "{\"schemaVersion\":2}");
	CHECK(tags_are(st, "zot/repo", NULL, 0));
	wh_store_close(st);
}

/* A pushed manifest is stored only if the repository still holds what it
 * references when the store's lock is taken: a GC sweep may have removed an
 * old orphan between the registry's check and the store (here: deleted by
 * hand). The cache's manifests are exempt (their blobs come later). */
static void test_manifest_references_rechecked(void)
{
	wh_store *st = NULL;
	char cfg[WH_DIGEST_LEN + 1], layer[WH_DIGEST_LEN + 1], m[WH_DIGEST_LEN + 1], json[512];

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(put_blob(st, "ref", "{\"os\":\"linux\"}", cfg) == 0);
	CHECK(put_blob(st, "ref", "layer bytes", layer) == 0);
	FMT(json, sizeof(json),
	    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
	    "\"config\":{\"mediaType\":\"a/b\",\"digest\":\"%s\",\"size\":15},"
	    "\"layers\":[{\"mediaType\":\"a/c\",\"digest\":\"%s\",\"size\":11}]}",
	    cfg, layer);
	CHECK(wh_store_blob_delete(st, "ref", layer) == 0); /* "collected" */
	CHECK(put_manifest(st, "ref", "v1", json, OCI_MANIFEST, m) == WH_EINUSE);
	CHECK(wh_store_manifest_stat(st, "ref", "v1", m, &(char *){NULL}, &(int64_t){0}) ==
	      WH_ENOTFOUND);
	CHECK(put_blob(st, "ref", "layer bytes", layer) == 0);
	CHECK(put_manifest(st, "ref", "v1", json, OCI_MANIFEST, m) == 0);
	wh_store_close(st);
}

/* What the listeners are told (wh_store_on_change), and the readers a
 * thread of the pool may use. */
struct seen {
	int n;
	wh_store_change_kind kind[8];
	char tag[8][32], digest[8][WH_DIGEST_LEN + 1];
	size_t len[8];
};

static void on_change(void *arg, const wh_store_change *ch)
{
	struct seen *s = arg;
	if (s->n == 8)
		return;
	s->kind[s->n] = ch->kind;
	snprintf(s->tag[s->n], sizeof(s->tag[0]), "%s", ch->tag ? ch->tag : "");
	snprintf(s->digest[s->n], sizeof(s->digest[0]), "%s", ch->digest ? ch->digest : "");
	s->len[s->n] = ch->data ? ch->len : 0;
	s->n++;
}

static void test_changes(void)
{
	char d1[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1];
	struct seen s = {0}, other = {0};
	wh_store *st = NULL;
	wh_store_entry *v = NULL;
	int n = 0;
	char *data = NULL;
	size_t len = 0;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(wh_store_on_change(st, on_change, &s) == 0);
	CHECK(wh_store_on_change(st, on_change, &other) == 0);
	CHECK(wh_store_on_change(st, on_change, &other) == 0);
	CHECK(wh_store_on_change(st, on_change, &other) == 0);
	CHECK(wh_store_on_change(st, on_change, &other) == WH_ETOOBIG);
	for (int i = 0; i < 3; i++)
		wh_store_off_change(st, on_change, &other);

	CHECK(put_manifest(st, "app", "v1", M1, OCI_MANIFEST, d1) == 0);
	CHECK(put_manifest(st, "app", NULL, M2, OCI_MANIFEST, d2) == 0);
	wh_store_note_pull(st, "app", d1);
	CHECK(wh_store_manifest_delete(st, "app", "v1") == 0);
	CHECK(wh_store_manifest_delete(st, "app", d2) == 0);
	CHECK(wh_store_manifest_delete(st, "app", "nope") == WH_ENOTFOUND); /* nothing told */
	CHECK(s.n == 5 && other.n == 0);
	CHECK(s.kind[0] == WH_STORE_MANIFEST_PUT && strcmp(s.tag[0], "v1") == 0 &&
	      strcmp(s.digest[0], d1) == 0 && s.len[0] == strlen(M1));
	CHECK(s.kind[1] == WH_STORE_MANIFEST_PUT && !s.tag[1][0] && strcmp(s.digest[1], d2) == 0);
	CHECK(s.kind[2] == WH_STORE_PULLED && strcmp(s.digest[2], d1) == 0);
	CHECK(s.kind[3] == WH_STORE_MANIFEST_DELETE && strcmp(s.tag[3], "v1") == 0 &&
	      !s.digest[3][0]);
	CHECK(s.kind[4] == WH_STORE_MANIFEST_DELETE && !s.tag[4][0] &&
	      strcmp(s.digest[4], d2) == 0);

	/* A blob published. */
	char b[WH_DIGEST_LEN + 1];
	s.n = 0;
	CHECK(put_blob(st, "app", "a blob", b) == 0);
	CHECK(s.n == 1 && s.kind[0] == WH_STORE_BLOB_ADDED && strcmp(s.digest[0], b) == 0);

	/* The readers: index.json's entries, a manifest's bytes. */
	CHECK(put_manifest(st, "app", "v2", M2, OCI_MANIFEST, d2) == 0);
	CHECK(wh_store_entries_read(st, "app", &v, &n) == 0);
	CHECK(n == 2);
	for (int i = 0; i < n; i++)
		if (strcmp(v[i].digest, d2) == 0)
			CHECK(v[i].tag && strcmp(v[i].tag, "v2") == 0 && v[i].media_type &&
			      strcmp(v[i].media_type, OCI_MANIFEST) == 0);
		else
			CHECK(strcmp(v[i].digest, d1) == 0 && !v[i].tag);
	wh_store_entries_free(v, n);
	CHECK(wh_store_entries_read(st, "none", &v, &n) == WH_ENOTFOUND && !v && n == 0);
	CHECK(wh_store_entries_read(st, "../x", &v, &n) == WH_EINVAL);
	CHECK(wh_store_blob_read(st, "app", d2, 1 << 20, &data, &len) == 0);
	CHECK(data && len == strlen(M2) && memcmp(data, M2, len) == 0);
	free(data);
	CHECK(wh_store_blob_read(st, "app", d2, 4, &data, &len) == WH_ETOOBIG && !data);
	CHECK(wh_store_blob_read(st, "app", ZERO_DIGEST, 1 << 20, &data, &len) == WH_ENOTFOUND);
	wh_store_off_change(st, on_change, &s);
	wh_store_close(st);
}

static void on_rc(int rc, void *arg)
{
	*(int *)arg = rc;
}

static bool read_all_but_b(void *arg, const char *repo)
{
	(void)arg;
	return strcmp(repo, "find/b") != 0;
}

/* A repository that holds a blob, for a mount without from: the shared
 * copy says whether any does, the hint where it was last stored, the
 * catalog (bounded) the rest; only repositories the caller may read. */
static void test_blob_find(void)
{
	char d[WH_DIGEST_LEN + 1], d2[WH_DIGEST_LEN + 1], repo[WH_NAME_MAX + 1];
	wh_store *st = NULL;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(put_blob(st, "find/a", "found bytes", d) == 0);
	CHECK(wh_store_blob_find(st, "sha256:nothex", read_all_but_b, NULL, repo) == WH_EINVAL);
	CHECK(wh_store_blob_find(st, d, read_all_but_b, NULL, repo) == 0);
	CHECK_STREQ(repo, "find/a"); /* the hint */
	wh_sha256_digest("nobody", 6, d2);
	CHECK(wh_store_blob_find(st, d2, read_all_but_b, NULL, repo) == WH_ENOTFOUND);
	CHECK(repo[0] == '\0');
	/* Only in a repository the caller may not read: not found. */
	CHECK(put_blob(st, "find/b", "b's bytes", d2) == 0);
	CHECK(wh_store_blob_find(st, d2, read_all_but_b, NULL, repo) == WH_ENOTFOUND);
	/* After a restart there are no hints: the catalog finds it. */
	wh_store_close(st);
	CHECK(wh_store_open(root, true, &st) == 0);
	{
		char **names = NULL;
		int n = 0;
		bool more;
		CHECK(wh_store_repos(st, NULL, -1, &names, &n, &more) == 0 && n == 2);
		wh_strv_free(names, n);
	}
	CHECK(wh_store_blob_find(st, d, read_all_but_b, NULL, repo) == 0);
	CHECK_STREQ(repo, "find/a");
	/* Deleted everywhere: the shared copy goes, and with it the answer. */
	CHECK(wh_store_blob_delete(st, "find/a", d) == 0);
	CHECK(wh_store_blob_find(st, d, read_all_but_b, NULL, repo) == WH_ENOTFOUND);
	wh_store_close(st);
}

/* Several tags in one put, moved together; a bad one refuses them all. */
static void test_manifest_tags(void)
{
	char cfg[WH_DIGEST_LEN + 1], m1[WH_DIGEST_LEN + 1], m2[WH_DIGEST_LEN + 1], json[512];
	wh_store *st = NULL;
	uv_loop_t loop;
	int rc = 1;

	new_root();
	CHECK(uv_loop_init(&loop) == 0);
	CHECK(wh_store_open(root, false, &st) == 0);
	CHECK(put_blob(st, "tg", "{}", cfg) == 0);
	FMT(json, sizeof(json),
	    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
	    "\"config\":{\"mediaType\":\"a/b\",\"digest\":\"%s\",\"size\":2},\"layers\":[]}",
	    cfg);
	wh_sha256_digest(json, strlen(json), m1);
	const char *tags[] = {"a", "b", "c"};
	CHECK(wh_store_manifest_put_tags_async(&loop, st, "tg", tags, 3, m1, OCI_MANIFEST, json,
	                                       strlen(json), on_rc, &rc) == 0);
	CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0 && rc == 0);
	{
		static const char *const want[] = {"a", "b", "c"};
		CHECK(tags_are(st, "tg", want, 3));
	}
	CHECK(index_entries("tg") == 3);
	/* Another manifest takes b and c; a stays. */
	char json2[600];
	FMT(json2, sizeof(json2), "%.*s,\"annotations\":{\"x\":\"y\"}}", (int)strlen(json) - 1,
	    json);
	wh_sha256_digest(json2, strlen(json2), m2);
	const char *moved[] = {"b", "c"};
	rc = 1;
	CHECK(wh_store_manifest_put_tags_async(&loop, st, "tg", moved, 2, m2, OCI_MANIFEST, json2,
	                                       strlen(json2), on_rc, &rc) == 0);
	CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0 && rc == 0);
	{
		char got[WH_DIGEST_LEN + 1];
		char *mt = NULL;
		int64_t size;
		CHECK(wh_store_manifest_stat(st, "tg", "a", got, &mt, &size) == 0);
		CHECK_STREQ(got, m1);
		free(mt);
		CHECK(wh_store_manifest_stat(st, "tg", "c", got, &mt, &size) == 0);
		CHECK_STREQ(got, m2);
		free(mt);
	}
	const char *bad[] = {"ok", "-bad"};
	CHECK(wh_store_manifest_put_tags_async(&loop, st, "tg", bad, 2, m2, OCI_MANIFEST, json2,
	                                       strlen(json2), on_rc, &rc) == WH_EINVAL);
	wh_store_close(st);
	CHECK(uv_loop_close(&loop) == 0);
}

/* sha512 end to end in the store: a session that hashes sha512 (set before
 * any byte, and kept across an eviction by its saved state), one switched
 * to sha512 after its bytes (behind: caught up), blobs under blobs/sha512
 * and the shared copy under .wharf/blobs/sha512 (dedupe, mount, delete),
 * a manifest addressed by sha512 with a tag, and the catalog walk, which
 * does not take blobs/sha512 for a repository. */
static void test_sha512(void)
{
	char id[37], d[WH_DIGEST_LEN + 1], d256[WH_DIGEST_LEN + 1], rel[PATH_MAX];
	char man[1024], dm[WH_DIGEST_LEN + 1], **names = NULL;
	wh_store *st = NULL;
	wh_upload *up = NULL;
	int64_t size = 0;
	int n = 0;

	new_root();
	CHECK(wh_store_open(root, true, &st) == 0);
	CHECK(exists(".wharf/blobs/sha512"));

	/* Chosen before the first byte: hashed as it arrives. */
	CHECK(wh_store_upload_create(st, "s5", id) == 0);
	CHECK(wh_store_upload_get(st, "s5", id, &up) == 0);
	CHECK(wh_upload_hash_alg(up) == WH_ALG_SHA256);
	CHECK(wh_upload_set_alg(up, WH_ALG_NONE) == WH_EINVAL);
	CHECK(wh_upload_set_alg(up, WH_ALG_SHA512) == 0);
	CHECK(!wh_upload_hash_behind(up));
	/* An eviction with no byte yet keeps the algorithm. */
	evict_all(st);
	CHECK(wh_store_upload_get(st, "s5", id, &up) == 0);
	CHECK(wh_upload_hash_alg(up) == WH_ALG_SHA512 && !wh_upload_hash_behind(up));
	CHECK(wh_upload_write(up, "sha512 ", 7) == 0);
	evict_all(st); /* a sha512 state on disk (version 2) */
	CHECK(wh_store_upload_get(st, "s5", id, &up) == 0);
	CHECK(wh_upload_hash_alg(up) == WH_ALG_SHA512 && !wh_upload_hash_behind(up));
	CHECK(wh_upload_write(up, "bytes", 5) == 0);
	wh_digest_of(WH_ALG_SHA256, "sha512 bytes", 12, d256);
	CHECK(wh_store_upload_finish(st, up, d256) == WH_EINVAL); /* not its algorithm */
	wh_digest_of(WH_ALG_SHA512, "sha512 bytes", 12, d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	CHECK(wh_store_blob_stat(st, "s5", d, &size) == 0 && size == 12);
	FMT(rel, sizeof(rel), "s5/blobs/sha512/%s", d + 7);
	CHECK(exists(rel));
	FMT(rel, sizeof(rel), ".wharf/blobs/sha512/%s", d + 7);
	CHECK(exists(rel));
	/* The same bytes by sha256 are another blob. */
	CHECK(wh_store_blob_stat(st, "s5", d256, NULL) == WH_ENOTFOUND);

	/* Switched after its bytes (the closing digest named sha512): behind
	 * by all of them, caught up, then finished. */
	CHECK(wh_store_upload_create(st, "s5", id) == 0);
	CHECK(wh_store_upload_get(st, "s5", id, &up) == 0);
	CHECK(wh_upload_write(up, "late choice", 11) == 0);
	CHECK(wh_upload_set_alg(up, WH_ALG_SHA512) == 0);
	CHECK(wh_upload_hash_behind(up));
	wh_digest_of(WH_ALG_SHA512, "late choice", 11, d);
	CHECK(wh_store_upload_finish(st, up, d) == WH_EINVAL);
	CHECK(catch_up(up) == 0 && !wh_upload_hash_behind(up));
	CHECK(wh_upload_set_alg(up, WH_ALG_SHA512) == 0 && !wh_upload_hash_behind(up));
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	CHECK(wh_store_blob_stat(st, "s5", d, NULL) == 0);

	/* Mount shares the inode; delete takes the shared copy with the last
	 * repository's link. */
	CHECK(wh_store_blob_mount(st, "s5b", "s5", d) == 0);
	FMT(rel, sizeof(rel), "s5b/blobs/sha512/%s", d + 7);
	CHECK(exists(rel));
	FMT(rel, sizeof(rel), ".wharf/blobs/sha512/%s", d + 7);
	{
		char p[PATH_MAX];
		struct stat g;
		path_of(p, rel);
		CHECK(stat(p, &g) == 0 && g.st_nlink == 3);
	}
	CHECK(wh_store_blob_delete(st, "s5b", d) == 0);
	CHECK(wh_store_blob_delete(st, "s5", d) == 0);
	CHECK(!exists(rel));

	/* A manifest by sha512, tagged, whose config and layer are sha512. */
	CHECK(wh_store_upload_create(st, "s5", id) == 0);
	CHECK(wh_store_upload_get(st, "s5", id, &up) == 0);
	CHECK(wh_upload_set_alg(up, WH_ALG_SHA512) == 0);
	CHECK(wh_upload_write(up, "{}", 2) == 0);
	wh_digest_of(WH_ALG_SHA512, "{}", 2, d);
	CHECK(wh_store_upload_finish(st, up, d) == 0);
	FMT(man, sizeof(man),
	    "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MANIFEST "\","
	    "\"config\":{\"mediaType\":\"a/b\",\"digest\":\"%s\",\"size\":2},\"layers\":[]}",
	    d);
	wh_digest_of(WH_ALG_SHA512, man, strlen(man), dm);
	CHECK(wh_store_manifest_put(st, "s5", "v1", dm, OCI_MANIFEST, man, strlen(man)) == 0);
	{
		char got[WH_DIGEST_LEN + 1];
		char *mt = NULL;
		CHECK(wh_store_manifest_stat(st, "s5", "v1", got, &mt, &size) == 0);
		CHECK_STREQ(got, dm);
		free(mt);
		wh_manifest m;
		CHECK(wh_store_manifest_get(st, "s5", dm, &m) == 0 && m.len == strlen(man));
		wh_manifest_free(&m);
	}
	FMT(rel, sizeof(rel), "s5/blobs/sha512/%s", dm + 7);
	CHECK(exists(rel));
	/* A blob that is a manifest is not deleted as a blob. */
	CHECK(wh_store_blob_delete(st, "s5", dm) == WH_EINUSE);

	/* The catalog walk does not descend into blobs/sha512. */
	wh_store_repos_scan(root, &names, &n);
	CHECK(n == 2);
	wh_strv_free(names, n);
	CHECK(wh_store_manifest_delete(st, "s5", dm) == 0);
	CHECK(wh_store_manifest_stat(st, "s5", dm, d, &(char *){NULL}, &size) == WH_ENOTFOUND);
	wh_store_close(st);
}

int main(void)
{
	test_open_removes_leftovers();
	test_blobs(false);
	test_blobs(true);
	test_quarantine(false);
	test_quarantine(true);
	test_uploads();
	test_upload_restart();
	test_upload_eviction();
	test_upload_state_restored_without_reading();
	test_upload_pins();
	test_upload_catch_up();
	test_manifests();
	test_tags_pagination();
	test_repos();
	test_referrers();
	test_zot_index();
	test_manifest_references_rechecked();
	test_changes();
	test_sha512();
	test_blob_find();
	test_manifest_tags();
	if (root[0])
		check_rm_rf(root);
	CHECK_DONE();
}
