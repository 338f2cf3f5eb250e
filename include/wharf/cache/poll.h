/* Periodic sync (Zot's pollInterval): mirror an upstream's matching
 * repositories and tags into the store without any client asking.
 *
 * Started by the server on its sync (sync.h) for every registry with
 * pollInterval > 0 and content rules given (as in Zot: neither alone runs anything). The first
 * run starts right after startup, the next one pollInterval after a run
 * ends. One run:
 *
 *  1. GET /v2/_catalog, paged (n=100, last=), at most 10000 names and 1 MiB
 *     a page. A name is kept when a content rule's prefix matches it (the
 *     first rule wins) and is mapped to a local name through destination and
 *     stripPrefix (wh_sync_map_upstream).
 *  2. For each repository, GET tags/list (paged the same way, at most 10000
 *     tags), keep the tags the rule's regex / excludeRegex / semver allow,
 *     and skip cosign and referrer-looking tags (sha256-<hex>, with or
 *     without a suffix).
 *  3. For each tag: a HEAD upstream and, when the digest differs from the
 *     local tag's, the manifest; then, for an index, its child manifests;
 *     and every blob the manifests reference that the store lacks. All
 *     through sync's own fetches (wh_sync_prefetch_*), so a client pulling
 *     the same thing meanwhile shares the fetch. Errors skip the tag.
 *
 * At most 3 tag listings or images of one registry are in progress at a
 * time; an image fetches one manifest or blob at a time.
 *
 * Logged: "periodic sync started" and "periodic sync finished" (with
 * counts) per run; "successfully synced image" per image fetched (info);
 * "skipping image because it's already synced" (debug); "failed to sync
 * image" (warn). An upstream without a catalog (404, 401, 403, 405: Docker
 * Hub) is reported once and its periodic sync stops until Wharf restarts;
 * other catalog errors are retried at the next interval. */
#ifndef WHARF_POLL_H
#define WHARF_POLL_H

#include <uv.h>

typedef struct wh_poll wh_poll;
typedef struct wh_sync wh_sync;
struct wh_sync_settings; /* sync.h */

/* Start periodic sync for the registries that have it; NULL when none do.
 * sync must outlive the result. */
wh_poll *wh_poll_new(uv_loop_t *loop, const struct wh_sync_settings *cfg, wh_sync *sync);

/* Stop: requests in flight are cancelled and no callback of sync's reaches
 * it afterwards (call it before wh_sync_free: its callbacks wait on sync's
 * fetches). Memory is released once the timers have closed. NULL is a
 * no-op. */
void wh_poll_free(wh_poll *p);

#endif
