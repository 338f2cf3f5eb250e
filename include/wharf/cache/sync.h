/* On-demand sync: the pull-through cache.
 *
 * A local repository name under a sync destination (Zot's
 * extensions.sync.registries[].content rules) maps to an upstream name. For
 * such names the registry asks sync to answer manifest and blob pulls:
 *
 *  - manifests by tag are served from the store while fresh (checked within
 *    manifestCheckInterval). Past that, a cached tag is still answered at
 *    once from the store while it is revalidated in the background (stale
 *    while revalidate: a client never waits on the upstream when the cache
 *    has an answer): a HEAD upstream, and a GET only when the digest
 *    changed; stored byte-exact. A failed revalidation is tried again after
 *    10 s, not by every request. A tag not cached waits for its fetch (one
 *    per tag however many clients ask). Synced manifests pass the same
 *    check as pushed ones (manifest.h) and blob fetches stop at the size
 *    their manifest declared;
 *  - blobs not in the store are fetched once per digest however many clients
 *    ask (the in-flight table). The bytes are hashed and appended to a temp
 *    file as they arrive and every client is fed from that file at its own
 *    pace (the tee); the last byte is held back until the digest verifies,
 *    so a client never receives a complete-looking wrong body. On a match the
 *    blob is published, and linked into the other repositories whose
 *    clients joined the fetch; on a mismatch or a cut the temp file is
 *    dropped and the clients' connections are cut. A full disk is ours,
 *    not the upstream's (see "a full disk" below).
 *
 * What a fetch brings is put in the store with the store's _async calls
 * (fsyncs in libuv's thread pool); the fetch stays in flight until the
 * store holds it, so clients asking meanwhile join it rather than start
 * another. Requests for one fetch are answered from the store (serve.h)
 * once the answer is there; a blob's readers, from the fetch's file.
 *
 * Listings ask the upstream too, and merge its answer with the store's:
 *
 *  - referrers of a digest: the upstream's referrers API, or, when it has
 *    none (404/405 on the endpoint, or a 200 that is not an image index),
 *    the tag schema's `sha256-<hex>` index, whose manifests are the
 *    referrers (its 404 means none). The answer must be an image index of
 *    at most 4 MiB whose every descriptor is well formed, or it is not
 *    taken;
 *  - tags/list: every page of the upstream's list (its Link rel="next"
 *    followed on the same registry), at most 100,000 tags and 16 MiB in
 *    all; tags that the rule's tags.regex / excludeRegex filter out are not
 *    listed. A 404 (or 401/403) means the upstream has no tags.
 *
 * The upstream's answer is kept in memory (at most 1024 answers, 64 MiB)
 * with the tags' freshness rules: within manifestCheckInterval it is used
 * as is; past that it is used at once and refreshed in the background (one
 * fetch per listing however many ask). When the upstream cannot be asked or
 * gives an answer that is not valid, nothing is cached, the store's own
 * answer is served, and the upstream is asked again after 10 s. */
#ifndef WHARF_SYNC_H
#define WHARF_SYNC_H

#include <stdbool.h>
#include <uv.h>

#include "wharf/base/conf.h"
#include "wharf/cache/upstream.h"
#include "wharf/net/http.h"
#include "wharf/oci/ref.h"
#include "wharf/store/store.h"

typedef struct wh_sync wh_sync;

/* extensions.sync (wh_sync_conf). */
typedef struct wh_sync_settings {
	bool enable; /* the object is present, unless "enable": false */
	wh_sync_registry *registries;
	int n_registries;
	/* extensions.sync.wharf.manifestCheckInterval, default 5 min; each
	 * registry's manifest_check_interval_ms is the one to use */
	int64_t manifest_check_interval_ms;
	wh_upstream_settings upstream;
	/* extensions.sync.wharf.peers: the other Wharf nodes of a tier, each a
	 * registry of one URL (no retries, 2 s to answer), asked first on a
	 * miss (peer fill, below). */
	wh_sync_registry *peers;
	int n_peers;
} wh_sync_settings;

/* The whole extensions.sync object (sets enable). */
int wh_sync_conf(wh_conf *c, const cJSON *v, char *base);
void wh_sync_settings_init(wh_sync_settings *s);
/* Defaults that depend on other keys (each registry's check interval). */
void wh_sync_settings_finish(wh_sync_settings *s);
void wh_sync_settings_free(wh_sync_settings *s);

/* SIGHUP: the registries, content rules and upstream settings of cfg from
 * now on (cfg must outlive the sync: fetches in flight keep pointing into
 * the old settings, which must outlive it too). The credentials file is
 * read again. Turning sync off is refused (a restart does it). Returns 0,
 * or WH_EINVAL with a message in err and nothing changed. */
int wh_sync_reload(wh_sync *s, const wh_sync_settings *cfg, char *err, size_t errlen);

/* Where a local name comes from. */
typedef struct wh_sync_map {
	const wh_sync_registry *reg;
	const wh_sync_content *content;
	char upstream[WH_NAME_MAX + 16]; /* upstream repository name */
} wh_sync_map;

/* Returns 0, or WH_EINVAL with a message in err (e.g. an unreadable
 * credentialsFile). With sync disabled, *out is NULL and 0 is returned. */
int wh_sync_new(uv_loop_t *loop, const wh_sync_settings *cfg, wh_store *store, wh_sync **out,
                char *err, size_t errlen);

/* Cancel fetches in flight (their clients' connections are cut) and free.
 * A periodic sync (poll.h) started on it must have been freed first. What
 * is being put in the store goes on (a blob is published, not linked into
 * the other repositories that asked; a manifest is stored): run the loop
 * until it has no more work before wh_store_close. */
void wh_sync_free(wh_sync *s);

/* True when name falls under an on-demand sync rule; fills *map. */
bool wh_sync_map_name(const wh_sync *s, const char *name, wh_sync_map *map);

/* containerd's ?ns=<host>: a mirror's request for `name` of the registry on
 * that host. Writes the local name the request means (the name under the
 * destination of the on-demand registry whose urls are on that host; Docker
 * Hub's names count as one host) to out and returns true; false when no
 * registry is on that host or none of its content rules covers the name.
 * With it one endpoint mirrors several registries at once. */
bool wh_sync_ns_name(const wh_sync *s, const char *ns, const char *name, char *out, size_t outlen);

/* Answer a manifest GET/HEAD by tag or digest for a synced name. A tag
 * that the rule's tags.regex / excludeRegex filter out is never fetched. */
void wh_sync_manifest(wh_sync *s, wh_req *req, const char *name, const char *ref,
                      const wh_sync_map *map);

/* Answer a blob GET/HEAD for a synced name: from the store when it holds
 * the blob, else through the tee (or, for a HEAD with no fetch in flight,
 * a HEAD upstream). */
void wh_sync_blob(wh_sync *s, wh_req *req, const char *name, const char *digest,
                  const wh_sync_map *map);

/* ---- peer fill ----
 *
 * Nodes of a tier behind a hashing balancer (docs/scale-out.md) may list
 * each other as peers. A blob this node lacks, or a manifest by digest
 * (a tag's digest once the upstream's HEAD named it), is asked of each
 * peer in turn with `Cache-Control: only-if-cached` before the upstream
 * is: a peer answers from its own store or says 504 at once, never
 * fetching anything itself, so peers cannot loop. What a peer sends is
 * checked as the upstream's is: a manifest (read whole) that does not match
 * its digest or is not valid is dropped and the next source asked; a blob
 * goes through the tee and is published only once its digest verifies. A
 * peer that cuts a blob's transfer is not asked again for it: the rest
 * comes from the upstream (Range). A blob whose bytes from a peer did not
 * verify, or whose fetch a peer began and that failed all the same, is not
 * asked of peers again for a while (its fetch fails and the client's retry
 * goes to the upstream). Listing the node itself among its
 * peers costs one local round trip per miss, nothing else.
 *
 * Served here: a GET or HEAD with only-if-cached is answered from the
 * store, or 504 with the spec's JSON error, without starting a fetch. */

/* ---- what the cache did, for metrics and the status page ----
 *
 * Counted where it happens, on the loop: an increment each. The gauges
 * (fetches in flight and their clients) are counted when asked. */

enum { WH_SYNC_MANIFEST, WH_SYNC_BLOB }; /* kinds: the index of the arrays below */

typedef struct wh_sync_stats {
	/* Client GETs and HEADs of a synced name (wh_sync_manifest,
	 * wh_sync_blob): a hit is answered from what the store held (a stale
	 * tag answered while it is revalidated included); a miss waits on the
	 * upstream (a fetch started or joined, or a blob HEAD asked upstream).
	 * A tag the rule's filters exclude that the store lacks is neither. */
	uint64_t hits[2];
	uint64_t misses[2];
	uint64_t bytes_from_cache;    /* blob body bytes answered from the store to hits */
	uint64_t bytes_from_upstream; /* blob body bytes the tee received from upstreams */
	uint64_t bytes_from_peers;    /* blob body bytes the tee received from peers */
	uint64_t tee_bytes;           /* blob body bytes sent to clients from the tee's files */
	/* Gauges: fetches in flight (a manifest's from its upstream request
	 * until the store holds it, a blob's until it is in every repository
	 * that asked, or failed) and the clients waiting on them (a blob's
	 * readers, a manifest's waiters). */
	int fetches[2];
	int fetch_clients[2];
} wh_sync_stats;
void wh_sync_get_stats(const wh_sync *s, wh_sync_stats *out);

/* One blob fetch in flight (the tee). */
typedef struct wh_sync_fetch {
	char repo[WH_NAME_MAX + 1]; /* the repository it is published to */
	char digest[WH_DIGEST_LEN + 1];
	int64_t bytes;       /* received so far (written to the temp file) */
	int64_t total;       /* its size, -1 while unknown */
	int clients;         /* readers: the clients fed from it now */
	uint64_t started_ms; /* when it started, wall clock (Unix ms) */
	uint64_t elapsed_ms; /* since then */
	bool verified;       /* its digest checked: being put in the store */
} wh_sync_fetch;

/* Fill out with up to max of the blob fetches in flight, newest first;
 * returns how many. */
int wh_sync_blob_fetches(const wh_sync *s, wh_sync_fetch *out, int max);

/* ---- a full disk ----
 *
 * A fill whose bytes the store cannot take (a write to its temp file, the
 * room reserved for a blob of known size before any client's answer
 * begins, the store of a synced manifest) fails as our storage's failure,
 * never the upstream's: it is logged once ("disk full" when
 * wh_err_disk_full), the upstream's health is not touched, its temp file
 * goes at once, and its clients whose answers have not begun get 507
 * ("storage is full", else 500) while those whose answers began are cut.
 * Before that, a full disk asks the room-making hook, if one is set, once
 * per fill: when it reports room made, a blob's fill begins again (a new
 * temp file, a new upstream fetch) for the clients whose answers have not
 * begun and whoever joins meanwhile; a manifest's store is tried again
 * with the bytes already fetched. */

/* Make room for bytes_needed more bytes on the store's disk (the blob's
 * size when known, else the bytes the fill had written when the disk
 * filled; a manifest's size). Return 0 and call done(done_arg, rc) exactly
 * once, from the loop, with 0 when room was made (it may be called before
 * make_room returns), or return non-zero, without ever calling done, when
 * no room can be made. A fill is kept (in memory, its clients waiting)
 * until done is called, wh_sync_free or not: the hook's owner calls it
 * before the loop ends. */
typedef int (*wh_sync_make_room_fn)(void *arg, int64_t bytes_needed,
                                    void (*done)(void *done_arg, int rc), void *done_arg);

/* Set the hook (fn NULL: none, the default; a full disk then fails the
 * fill). For the cache's budget (eviction). */
void wh_sync_set_make_room(wh_sync *s, wh_sync_make_room_fn fn, void *arg);

/* ---- hooks for periodic sync (wharf/cache/poll.h), started on a wh_sync ----
 *
 * The same fetches as a client's pull (single flight, the tee, the same
 * checks and store), with a callback instead of a client. */

typedef struct wh_upstream wh_upstream;

/* The upstream client and store sync uses (one set of tokens and health). */
wh_upstream *wh_sync_upstream(wh_sync *s);
/* The settings it was made with. */
const wh_sync_settings *wh_sync_settings_of(const wh_sync *s);
wh_store *wh_sync_store(wh_sync *s);

/* The local name of reg's upstream repository `upstream`: the first of
 * reg's content rules whose prefix matches it (onDemand or not), mapped
 * through destination and stripPrefix as wh_sync_map_name reverses. False
 * when no rule matches or the local name would be invalid. */
bool wh_sync_map_upstream(const wh_sync *s, const wh_sync_registry *reg, const char *upstream,
                          char *local, size_t locallen, wh_sync_map *map);

/* The rule's tag filters: regex, excludeRegex, semver. */
bool wh_sync_tag_allowed(const wh_sync *s, const wh_sync_map *map, const char *tag);

/* err is 0, WH_EUPSTREAM when the upstream failed or does not have it, or
 * the store's error (-errno: our storage could not take it); changed: a
 * manifest other than the one held was stored (for a blob: it was
 * fetched). */
typedef void (*wh_sync_done_cb)(void *arg, int err, bool changed);

/* Bring name:ref into the store as a pull would: by tag, a HEAD upstream
 * and a GET only when the digest differs from the local tag's; by digest, a
 * GET. Joins a fetch in flight. cb fires exactly once, later, from the
 * loop; err is non-zero when the upstream failed or does not have it, or
 * the store could not take it (even if a cached copy remains). It does not
 * fire once wh_sync_free has begun. */
void wh_sync_prefetch_manifest(wh_sync *s, const wh_sync_map *map, const char *name,
                               const char *ref, wh_sync_done_cb cb, void *arg);

/* Fetch a blob (not in name's store) through the tee, with no client;
 * size is what its manifest declared (-1: unknown). Returns 0 and cb fires
 * later as above, or the error of the temp file's creation at once (-errno)
 * and cb never fires. For a fill our storage failed, cb's err is the
 * store's (-errno, e.g. -ENOSPC), not WH_EUPSTREAM. */
int wh_sync_prefetch_blob(wh_sync *s, const wh_sync_map *map, const char *name, const char *digest,
                          int64_t size, wh_sync_done_cb cb, void *arg);

/* Answer GET/HEAD /v2/<name>/referrers/<digest> for a synced name, with
 * wh_serve_referrers (at once, or once the upstream has answered). */
void wh_sync_referrers(wh_sync *s, wh_req *req, const char *name, const char *digest,
                       const wh_sync_map *map);

/* Answer GET/HEAD /v2/<name>/tags/list for a synced name, with
 * wh_serve_tags. */
void wh_sync_tag_list(wh_sync *s, wh_req *req, const char *name, const wh_sync_map *map);

#endif
