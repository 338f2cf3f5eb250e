#include "wharf/base/common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *wh_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case WH_EINVAL:
		return "invalid argument";
	case WH_ENOMEM:
		return "out of memory";
	case WH_ENOTFOUND:
		return "not found";
	case WH_EEXIST:
		return "already exists";
	case WH_ETOOBIG:
		return "too large";
	case WH_EIO:
		return "storage error";
	case WH_EDIGEST:
		return "digest mismatch";
	case WH_ERANGE:
		return "range not satisfiable";
	case WH_EUPSTREAM:
		return "upstream error";
	case WH_EINUSE:
		return "in use";
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

bool wh_err_disk_full(int err)
{
	return err == -ENOSPC || err == -EDQUOT;
}

static void oom(size_t n)
{
	fprintf(stderr, "wharf: out of memory allocating %zu bytes\n", n);
	abort();
}

void *wh_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *wh_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *wh_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *wh_strndup(const char *s, size_t n)
{
	char *p = wh_malloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *wh_strdup(const char *s)
{
	return wh_strndup(s, strlen(s));
}

int wh_bsearch_pos(const void *v, int n, size_t size, const void *key,
                   int (*cmp)(const void *elem, const void *key), bool *found)
{
	int lo = 0, hi = n;
	while (lo < hi) {
		int mid = lo + (hi - lo) / 2;
		int c = cmp((const char *)v + (size_t)mid * size, key);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* wh_sorted_pos's comparison: the offset rides along with the key. */
struct named_key {
	size_t off;
	const char *want;
};

static int named_cmp(const void *elem, const void *key)
{
	const struct named_key *k = key;
	const char *name = *(const char *const *)(const void *)((const char *)elem + k->off);
	return strcmp(name, k->want);
}

int wh_sorted_pos(const void *v, int n, size_t size, size_t off, const char *want, bool *found)
{
	struct named_key k = {off, want};
	return wh_bsearch_pos(v, n, size, &k, named_cmp, found);
}

uint64_t wh_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

size_t wh_grow_cap(size_t cap, size_t need, size_t first)
{
	size_t c = cap ? cap : first;
	while (c < need)
		c *= 2;
	return c;
}

void *wh_grow(void *v, size_t size, int n, int *cap, int first)
{
	if (n < *cap)
		return v;
	*cap = (int)wh_grow_cap((size_t)*cap, (size_t)n + 1, (size_t)first);
	return wh_realloc(v, size * (size_t)*cap);
}

void wh_buf_append(char **buf, size_t *len, size_t *cap, const void *data, size_t n)
{
	if (*len + n + 1 > *cap) {
		*cap = wh_grow_cap(*cap, *len + n + 1, 4096);
		*buf = wh_realloc(*buf, *cap);
	}
	if (n)
		memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
}

int wh_read_fd(int fd, size_t max, char **buf, size_t *len)
{
	struct stat sb;
	size_t cap = 4096, used = 0;
	char *data;
	int rc = 0;

	*buf = NULL;
	*len = 0;
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
		if ((uint64_t)sb.st_size > max)
			return WH_ETOOBIG;
		cap = (size_t)sb.st_size + 1;
	}
	data = wh_malloc(cap);
	for (;;) {
		ssize_t n;
		if (used + 1 == cap) {
			cap *= 2;
			data = wh_realloc(data, cap);
		}
		n = read(fd, data + used, cap - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : 0;
			break;
		}
		used += (size_t)n;
		if (used > max) {
			rc = WH_ETOOBIG;
			break;
		}
	}
	if (rc < 0) {
		free(data);
		return rc;
	}
	data[used] = '\0';
	*buf = data;
	*len = used;
	return 0;
}

int wh_read_file(const char *path, size_t max, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	*buf = NULL;
	*len = 0;
	if (fd < 0)
		return -errno;
	rc = wh_read_fd(fd, max, buf, len);
	close(fd);
	return rc;
}
