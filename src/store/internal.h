/* What the store's own modules (store.c, gc.c) share and nobody else sees:
 * the lock and the index.json primitives that the public calls are built
 * from. Everything here that changes the root runs with the lock held. */
#ifndef WHARF_STORE_INTERNAL_H
#define WHARF_STORE_INTERNAL_H

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "wharf/store/store.h"

/* The lock every change of the root is made under (store.h, "Atomicity"). */
void wh_store__lock(wh_store *st);
void wh_store__unlock(wh_store *st);

bool wh_store__dedupe(const wh_store *st);

/* repo's index.json, parsed (free it with cJSON_Delete): WH_ENOTFOUND when
 * the repository does not exist, WH_EIO when it cannot be understood. Any
 * thread. Its identity (inode, size, mtime) in *id, to tell later whether
 * it was replaced. */
typedef struct wh_index_id {
	uint64_t ino, size;
	int64_t mtime_ns;
} wh_index_id;
int wh_store__index_load(wh_store *st, const char *repo, cJSON **out, wh_index_id *id);
/* The identity of repo's index.json now; false when it is gone. */
bool wh_store__index_id(wh_store *st, const char *repo, wh_index_id *id);
bool wh_store__index_id_eq(const wh_index_id *a, const wh_index_id *b);
/* Write it back atomically (lock held). */
int wh_store__index_write(wh_store *st, const char *repo, cJSON *idx);
/* The manifests array of a parsed index, and an entry's digest and tag. */
cJSON *wh_store__index_manifests(cJSON *idx);
const char *wh_store__entry_digest(const cJSON *e);
const char *wh_store__entry_tag(const cJSON *e);
/* Drop the tag of entry e of arr, keeping one untagged entry per digest. */
void wh_store__entry_untag(cJSON *arr, cJSON *e);

/* <root>/<repo>/blobs/<alg>/<hex>, in buf[PATH_MAX] ("<alg>:" alone: the
 * directory, with a trailing slash). */
int wh_store__blob_path(const wh_store *st, const char *repo, const char *digest, char *buf);

/* Unlink repo's blob (lock held); when that was the last repository's link,
 * the shared copy goes too, and the bytes freed are added to *freed. The
 * directories are fsynced before it returns. WH_ENOTFOUND when repo did not
 * hold it. */
int wh_store__blob_unlink(wh_store *st, const char *repo, const char *digest, int64_t *freed);
/* The same without the fsyncs, for the gc, which removes many blobs under
 * the lock and makes the removals last afterwards, with the lock released
 * (wh_store__blob_dirs_sync): fsyncs under the lock keep every push and
 * fill waiting for them. An unlink that a crash undoes leaves a blob
 * nothing references, which the next sweep removes. */
int wh_store__blob_unlink_nosync(wh_store *st, const char *repo, const char *digest,
                                 int64_t *freed);
/* fsync repo's blob directory and the shared copies' directory, those that
 * exist. Any thread; no lock needed. */
void wh_store__blob_dirs_sync(wh_store *st, const char *repo);

/* Remove repo's directory when it holds nothing (no manifest, no blob): its
 * index.json, oci-layout and empty blob directories (lock held). True when
 * it was removed; a directory that also holds a nested repository stays. */
bool wh_store__repo_remove_if_empty(wh_store *st, const char *repo);

/* Loop: repo's index.json changed (its cached copy goes); repo was removed
 * (it leaves the catalog). */
void wh_store__index_forget(wh_store *st, const char *repo);
void wh_store__catalog_remove(wh_store *st, const char *repo);

/* Loop: tell the listeners (wh_store_on_change) of a change. */
void wh_store__notify(wh_store *st, const wh_store_change *ch);

/* Loop: the bytes the blobs take changed by delta / were counted anew. */
void wh_store__usage_add(wh_store *st, int64_t delta);
void wh_store__usage_set(wh_store *st, int64_t usage);

#endif
