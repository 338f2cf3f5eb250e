/* The scrubber: re-reads what the store holds and checks that it still hashes
 * to its digest, image by image, as Zot's scrub extension does
 * (extensions.scrub; `wharf scrub CONFIG` runs one sweep offline).
 *
 * A sweep takes every repository under the root (wh_store_repos_scan), and
 * in each, every manifest its index.json names, tagged or not (an "image"):
 * the manifest's own bytes, then for an image manifest its config and
 * layers, for an index its child manifests, recursively (at most
 * WH_SCRUB_DEPTH_MAX levels below the top). Each file is read in 1 MiB
 * pieces at the configured rate and hashed once per sweep: files are
 * remembered by (device, inode, size, mtime), so a blob that dedupe
 * hard-links into a hundred repositories is read once. A descriptor's
 * `subject` is not followed (a referrer's subject may be elsewhere, or
 * nowhere yet). A manifest that is not JSON, or whose descriptors name no
 * sha256 digest, is judged on its own bytes only.
 *
 * One line per image, as Zot writes them (component "scrub"):
 *   info "blobs/manifest ok"        image, tag, status "ok"
 *   warn "blobs/manifest affected"  image, tag, status "affected",
 *                                   "affected blob" (its hex digest), error
 * where image is the repository, tag the image's tag or, untagged, its
 * digest, and error "bad blob digest" (the bytes do not hash to their
 * name), "blob not found", "cannot read: <why>" or "index nested too deep";
 * the affected blob is the first one found (an image's checks go on after
 * it). A manifest deleted while the sweep runs is skipped. Around them:
 * "scrub started" and "scrub finished" (counts), a repository whose
 * index.json cannot be read is an error line, and each repository's
 * "executing scrub to check manifest/blob integrity" is at debug.
 *
 * Cached content: the cached predicate says which images came through the
 * pull-through cache. For those, a missing blob or child manifest is not an
 * error (the cache fetches what clients ask for, when they ask), and a
 * corrupt file (bytes that do not match, or EIO reading them) is moved
 * aside with wh_store_blob_quarantine, so the next pull fetches a good copy.
 * Pushed content is only reported: moving it would lose the only copy.
 *
 * Nothing here runs on the loop or in libuv's thread pool: a sweep sleeps to
 * hold its rate and would take a pool thread for hours. It reads the
 * filesystem only (index.json and blobs, never the store's in-memory
 * caches), and changes the root only through wh_store_blob_quarantine,
 * which takes the store's lock. */
#ifndef WHARF_SCRUB_H
#define WHARF_SCRUB_H

#include <stdbool.h>
#include <stdint.h>

#include "wharf/base/conf.h"
#include "wharf/store/store.h"

#define WH_SCRUB_INTERVAL_MIN (2 * WH_HOUR_MS) /* as Zot: a shorter interval is raised */
#define WH_SCRUB_RATE_DEFAULT (64LL << 20)     /* bytes per second, a server's sweeps */
#define WH_SCRUB_DEPTH_MAX    8                /* index levels below an image's top manifest */

/* extensions.scrub (wh_scrub_conf). */
typedef struct wh_scrub_settings {
	bool enable; /* the object is present, unless "enable": false (as Zot) */
	/* interval: between the end of a sweep and the next; default 24h,
	 * below WH_SCRUB_INTERVAL_MIN raised to it (a notice) as Zot does */
	int64_t interval_ms;
	/* wharf.rate: bytes read per second ("64MiB"); 0 for no limit; -1 when
	 * not set: a server then reads at WH_SCRUB_RATE_DEFAULT, `wharf scrub`
	 * as fast as the disk goes */
	int64_t rate;
	/* wharf.startDelay: from start to a server's first sweep; default 1
	 * minute, so a restart's first moments (the catalog's walk, clients
	 * coming back) have the disk to themselves */
	int64_t start_delay_ms;
} wh_scrub_settings;

/* The whole extensions.scrub object (sets enable; raises the interval). */
int wh_scrub_conf(wh_conf *c, const cJSON *v, char *base);
void wh_scrub_settings_init(wh_scrub_settings *s);

/* Whether the image repo names by manifest_digest (an index.json entry of
 * repo) came through the pull-through cache. Called on the thread that runs
 * the sweep (the scrubber's own thread for a server's sweeps), never on the
 * loop: it must read only what is safe from there. NULL: nothing is cached. */
typedef bool (*wh_scrub_cached_fn)(void *arg, const char *repo, const char *manifest_digest);

/* What one image came to. Strings are valid during the callback only. */
typedef struct wh_scrub_image {
	const char *repo;
	const char *tag;    /* its tag, or its manifest's digest when untagged */
	const char *digest; /* the manifest index.json names */
	bool cached;        /* the predicate said so */
	bool ok;
	const char *affected; /* the first affected blob's hex digest, or "" */
	const char *error;    /* what is wrong with it, or "" */
} wh_scrub_image;

typedef struct wh_scrub_opts {
	int64_t rate; /* bytes read per second; 0: no limit */
	wh_scrub_cached_fn cached;
	void *cached_arg;
	/* Called for each image after its line is logged, or NULL. */
	void (*on_image)(void *arg, const wh_scrub_image *img);
	void *on_image_arg;
} wh_scrub_opts;

typedef struct wh_scrub_stats {
	int repos;    /* repositories looked at */
	int images;   /* index.json entries checked */
	int affected; /* of which affected */
	int moved;    /* files moved aside (cached content) */
	int errors;   /* repositories whose index.json could not be read or understood */
	int64_t bytes;
	bool stopped; /* wh_scrub_stop cut the sweep short */
} wh_scrub_stats;

/* One sweep of st's root on the calling thread (`wharf scrub`; the unit
 * tests), to its end. *stats is filled in. */
void wh_scrub_run(wh_store *st, const wh_scrub_opts *opts, wh_scrub_stats *stats);

/* A server's scrubber: a thread of its own that sweeps start_delay_ms after
 * this call, then interval_ms after each sweep ends, at settings->rate
 * (WH_SCRUB_RATE_DEFAULT when not set). settings are copied; st, and what
 * cached_arg points to, must outlive wh_scrub_stop. Returns 0, or a libuv
 * error when the thread cannot be made (logged). */
typedef struct wh_scrub wh_scrub;
int wh_scrub_start(wh_store *st, const wh_scrub_settings *settings, wh_scrub_cached_fn cached,
                   void *cached_arg, wh_scrub **out);

/* Stop and join the thread, then free. Prompt: a sweep notices between two
 * 1 MiB reads (or in its sleep), so this waits for at most one read and,
 * perhaps, one move aside in progress. NULL is fine. */
void wh_scrub_stop(wh_scrub *sc);

#endif
