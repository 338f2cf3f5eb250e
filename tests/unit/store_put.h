/* Putting a blob into a store the way a fill does (temp file, publish),
 * for the unit tests that need content in a store (store, scrub, the search
 * index). */
#ifndef WHARF_TEST_STORE_PUT_H
#define WHARF_TEST_STORE_PUT_H

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "wharf/oci/ref.h"
#include "wharf/store/store.h"

/* len bytes of data as a blob of repo; its sha256 digest into digest. */
static inline int put_blob_n(wh_store *st, const char *repo, const void *data, size_t len,
                             char digest[WH_DIGEST_LEN + 1])
{
	char tmp[PATH_MAX];
	int fd;

	wh_sha256_digest(data, len, digest);
	fd = wh_store_tmp_create(st, tmp, sizeof(tmp));
	if (fd < 0)
		return fd;
	if (write(fd, data, len) != (ssize_t)len) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return wh_store_blob_publish(st, repo, tmp, digest);
}

/* The same for a string. */
static inline int put_blob(wh_store *st, const char *repo, const char *data,
                           char digest[WH_DIGEST_LEN + 1])
{
	return put_blob_n(st, repo, data, strlen(data), digest);
}

#endif
