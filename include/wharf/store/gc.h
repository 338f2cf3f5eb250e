/* Garbage collection, retention and the cache budget: what keeps a root from
 * growing for ever.
 *
 * The sweep (storage.gc, gcDelay, gcInterval, gcTimeWindow, retention), as
 * Zot's (../shared/specs/zot-reference.md §5): right after start and then
 * gcInterval after each sweep ended (gcInterval 0: once), starting only
 * inside gcTimeWindow when one is set. For each repository in turn:
 *   1. tags that retention's keepTags do not keep lose their tag;
 *   2. until a pass removes nothing: referrers whose subject is gone
 *      (deleteReferrers) and untagged manifests that no index lists and
 *      that have no subject (deleteUntagged, the default), once older than
 *      retention.delay and not kept by keepUntagged;
 *   3. entries whose manifest bytes are missing are dropped;
 *   4. blobs that nothing left in index.json reaches, once older than
 *      gcDelay, are removed; a repository left with nothing is removed.
 * Then the shared blob store's copies that no repository links any more,
 * the upload sessions older than gcDelay, and a count of the bytes held.
 *
 * The cache budget (storage.wharf.cacheMaxSize, cacheMinFree): whenever an
 * operation added bytes or a fill claimed room for the blob it fetches, the
 * usage and the fills in flight (store.h) are checked against cacheMaxSize,
 * and the filesystem's free space against cacheMinFree; while
 * either is crossed, manifests the cache stored (meta.h: cached, never
 * pushed) are evicted least recently pulled first: the manifest, the cached
 * children of an index, then their blobs that no remaining manifest of the
 * repository references (on a disk with no room even for the new
 * index.json, those blobs first). Pushed content is never evicted. A pull
 * of what was evicted fetches it again.
 *
 * Nothing runs on the loop but decisions: reading repositories, deleting
 * and counting run in libuv's thread pool, one job at a time, each
 * deletion under the store's lock and only after checking again, under the
 * lock, that index.json is still what the decision was made on (else the
 * repository waits for the next sweep) and that the blob is still old (a
 * push or mount of a blob makes it young: store.c's link_blob). A blob being
 * read is unlinked under its reader, which keeps reading it; a blob being
 * fetched is a temp file, which neither touches. Loop thread only. */
#ifndef WHARF_GC_H
#define WHARF_GC_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "wharf/store/store.h"

typedef struct wh_gc wh_gc;

/* Start collecting for st with s (which must outlive the gc): the usage
 * count, then the first sweep, are queued at once when gc is on or a budget
 * is set; otherwise this does nothing but answer make_room. */
int wh_gc_start(uv_loop_t *loop, wh_store *st, const wh_store_settings *s, wh_gc **out);

/* Stop: no new job starts; the one in the pool finishes, then the gc is
 * freed (the loop must run until then). NULL is fine. */
void wh_gc_stop(wh_gc *gc);

/* A write failed for want of space: evict (when a budget is set) until
 * `bytes` more would fit, then done(done_arg, 0), or an error when nothing
 * more can be evicted (-ENOSPC). done is never called from inside this
 * call. */
void wh_gc_make_room(wh_gc *gc, int64_t bytes, void (*done)(void *done_arg, int rc),
                     void *done_arg);

/* SIGHUP: s from now on (gc, delays, interval, window, retention, the
 * budget); s must outlive the gc, and so must the old settings (a job in
 * the pool may read them). The next sweep is scheduled by s. */
void wh_gc_reload(wh_gc *gc, const wh_store_settings *s);

/* Ask for a sweep now (a test hook and a future admin action); it starts
 * when the current job is done, whatever the window. */
void wh_gc_sweep_now(wh_gc *gc);

typedef struct wh_gc_stats {
	uint64_t sweeps;            /* sweeps finished */
	uint64_t manifests_removed; /* by gc and retention */
	uint64_t tags_removed;      /* by retention */
	uint64_t blobs_removed;     /* orphans, shared copies */
	uint64_t uploads_removed;   /* stale upload sessions */
	uint64_t evictions;         /* images evicted for the budget */
	uint64_t evicted_bytes;
	int64_t last_sweep_ms; /* how long the last sweep took */
	bool sweeping;
	/* Each repository's collection in a sweep (read, decided, applied), as
	 * Zot counts its GC runs: how many, how many failed (the repository
	 * could not be read or changed; one deleted meanwhile is no failure),
	 * and their time in all. Only with storage.gc on. */
	uint64_t repo_sweeps;
	uint64_t repo_sweep_errors;
	uint64_t repo_sweep_ns;
} wh_gc_stats;
void wh_gc_get_stats(const wh_gc *gc, wh_gc_stats *out);

/* How many repositories' bytes the sweeps keep (wh_gc_each_repo_bytes). */
#define WH_GC_REPOS_MAX 1000

/* fn(arg, repo, bytes) for each repository whose bytes the last sweeps
 * counted, in name order: the files under its blobs/ (its blobs and
 * manifests, a blob as often as repositories link it), as the repository's
 * SCAN found them, before that sweep's deletions. Only with storage.gc on
 * (a sweep reads repositories then), for the first WH_GC_REPOS_MAX
 * repositories met (the table's memory is bounded); a repository the sweep
 * no longer finds, or that an eviction or a sweep removed, is dropped. */
void wh_gc_each_repo_bytes(const wh_gc *gc, void (*fn)(void *arg, const char *repo, int64_t bytes),
                           void *arg);

/* The cache budget as configured (storage.wharf.cacheMaxSize and
 * cacheMinFree; 0: none), and the bytes free now on the root's filesystem
 * for an unprivileged writer (a statvfs; -1 when it cannot be read). */
void wh_gc_budget(const wh_gc *gc, int64_t *max_bytes, int64_t *min_free_bytes,
                  int64_t *fs_free_bytes);

#endif
