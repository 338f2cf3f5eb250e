/* The shared helpers: reading a whole file or descriptor (wh_read_file,
 * wh_read_fd), its limit exact to the byte, and a pipe read to its end;
 * which errors say the storage is full (wh_err_disk_full). */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "wharf/base/common.h"

static char dir[] = "/tmp/wharf-test-common-XXXXXX";

/* A file of n bytes 'a'..'z' repeating; returns its path (static). */
static const char *file_of(size_t n)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/f%zu", dir, n);
	FILE *f = fopen(path, "wbe");
	for (size_t i = 0; f && i < n; i++)
		fputc('a' + (int)(i % 26), f);
	if (f)
		fclose(f);
	return path;
}

static void test_read_file(void)
{
	char *buf = NULL;
	size_t len = 0;

	/* Up to max bytes, NUL-terminated; one more is too large. */
	CHECK(wh_read_file(file_of(0), 10, &buf, &len) == 0 && len == 0 && buf && buf[0] == '\0');
	free(buf);
	CHECK(wh_read_file(file_of(10), 10, &buf, &len) == 0 && len == 10 &&
	      strcmp(buf, "abcdefghij") == 0);
	free(buf);
	buf = (char *)"x";
	CHECK(wh_read_file(file_of(11), 10, &buf, &len) == WH_ETOOBIG && !buf && len == 0);
	/* A larger one, sized by fstat. */
	CHECK(wh_read_file(file_of(100000), 100000, &buf, &len) == 0 && len == 100000 &&
	      buf[99999] == 'a' + 99999 % 26 && buf[100000] == '\0');
	free(buf);

	CHECK(wh_read_file("/nonexistent/x", 10, &buf, &len) == -ENOENT && !buf);
	CHECK(wh_read_file(dir, 10, &buf, &len) == -EISDIR && !buf);
}

static void test_read_pipe(void)
{
	int p[2];
	char *buf = NULL;
	size_t len = 0;
	static char big[10000];

	/* No size to go by: read until the writer is gone, growing on the way. */
	memset(big, 'p', sizeof(big));
	CHECK(pipe(p) == 0);
	CHECK(write(p[1], big, sizeof(big)) == (ssize_t)sizeof(big));
	close(p[1]);
	CHECK(wh_read_fd(p[0], sizeof(big), &buf, &len) == 0 && len == sizeof(big) &&
	      buf[len - 1] == 'p' && buf[len] == '\0');
	free(buf);
	close(p[0]);

	CHECK(pipe(p) == 0);
	CHECK(write(p[1], big, sizeof(big)) == (ssize_t)sizeof(big));
	close(p[1]);
	CHECK(wh_read_fd(p[0], sizeof(big) - 1, &buf, &len) == WH_ETOOBIG && !buf);
	close(p[0]);
}

static void test_disk_full(void)
{
	CHECK(wh_err_disk_full(-ENOSPC));
	CHECK(wh_err_disk_full(-EDQUOT));
	CHECK(!wh_err_disk_full(0));
	CHECK(!wh_err_disk_full(ENOSPC)); /* an errno, not a -errno: not ours to guess */
	CHECK(!wh_err_disk_full(-EIO));
	CHECK(!wh_err_disk_full(-EFBIG)); /* too large for the file system, not full */
	CHECK(!wh_err_disk_full(WH_EIO));
	CHECK(strcmp(wh_strerror(-ENOSPC), strerror(ENOSPC)) == 0);
}

/* The binary searches: found, or where it would go, at both ends too. */
struct named {
	int n;
	char *name;
};

static void test_sorted_pos(void)
{
	struct named v[] = {{1, "alpha"}, {2, "delta"}, {3, "kilo"}, {4, "zulu"}};
	bool found;
	CHECK(wh_sorted_pos(v, 4, sizeof(*v), offsetof(struct named, name), "delta", &found) == 1 &&
	      found);
	CHECK(wh_sorted_pos(v, 4, sizeof(*v), offsetof(struct named, name), "echo", &found) == 2 &&
	      !found);
	CHECK(wh_sorted_pos(v, 4, sizeof(*v), offsetof(struct named, name), "a", &found) == 0 &&
	      !found);
	CHECK(wh_sorted_pos(v, 4, sizeof(*v), offsetof(struct named, name), "zz", &found) == 4 &&
	      !found);
	CHECK(wh_sorted_pos(v, 0, sizeof(*v), offsetof(struct named, name), "x", &found) == 0 &&
	      !found);
}

int main(void)
{
	test_sorted_pos();
	if (!mkdtemp(dir))
		return 1;
	test_read_file();
	test_read_pipe();
	test_disk_full();
	char cmd[sizeof(dir) + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	CHECK_DONE();
}
