/* The search index: what the search extension (search.h) needs of every
 * repository, in memory, so that a query over a thousand repositories
 * reads no file.
 *
 * Built off the loop when the server starts (a walk of the root in libuv's
 * thread pool, reading each repository's index.json, its manifests and
 * their configs), then kept up to date by the store's listeners
 * (wh_store_on_change): a push or a cache fill adds its manifest (its
 * config is read then, one small file), a delete drops a tag or a
 * manifest, a GC sweep's rewrite of index.json has the repository read
 * again (what it still names is known already: only index.json is read),
 * a pull counts a download. Changes during the walk mark their
 * repositories, which are read again when the walk's result is adopted.
 *
 * Per repository: its name and, sorted, its tags (tag -> digest) and its
 * manifests (by digest, tagged or not: an index's children, referrers).
 * Per manifest: the digest, media type, artifact type, subject, its own
 * size, its config's digest and size, and each layer's size and the first
 * 8 bytes of its digest (enough to add sizes once per blob, to compare
 * layers between images, and to narrow a digest search that the manifest
 * itself then confirms); platform, creation time, and the descriptive
 * annotations (description, title, documentation, source, licenses,
 * labels, vendor, authors; each at most WH_SI_TEXT_MAX bytes); the
 * downloads counted since the server started. Aggregates per repository
 * (size counting each blob once, platforms, the newest image, the last
 * update) are computed again after every change of it.
 *
 * Memory: 100 bytes per repository plus its name, 40 bytes per tag plus
 * its name, and 160 bytes per manifest plus 16 per layer (36 per child of
 * an index) and the annotation text it has (at most 8 x WH_SI_TEXT_MAX);
 * arrays are cut to what they hold; platforms and media types are interned
 * once for all. A repository of 5 tags of single-platform images of 6
 * layers with a description takes 1.9 KiB (wh_search_index_bytes counts;
 * tests/unit/ext/test_search_index.c measures it): 1,000 such take 2 MiB.
 *
 * Loop thread only, but the walk, which touches nothing shared. */
#ifndef WHARF_SEARCH_INDEX_H
#define WHARF_SEARCH_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "wharf/store/store.h"

#define WH_SI_TEXT_MAX   512  /* bytes of one annotation kept (cut at a character) */
#define WH_SI_LAYERS_MAX 1024 /* layers kept per manifest (the rest still count in its size) */
#define WH_SI_KIDS_MAX   1024 /* children kept per index */
#define WH_SI_NO_TIME    INT64_MIN

typedef struct wh_search_index wh_search_index;

/* The descriptive annotations, as Zot takes them: the manifest's
 * org.opencontainers.image.* annotation, else its label-schema one, else
 * the same from the config's labels (authors: the config's author last).
 * An index's are its own annotations only; the search falls back to its
 * first child's. */
enum {
	WH_SI_DESCRIPTION,
	WH_SI_TITLE,
	WH_SI_DOCUMENTATION,
	WH_SI_SOURCE,
	WH_SI_LICENSES,
	WH_SI_LABELS,
	WH_SI_VENDOR,
	WH_SI_AUTHORS,
	WH_SI_TEXT_N,
};

enum { WH_SI_MANIFEST, WH_SI_INDEX };

/* A config or a layer: the first 8 bytes of its sha256 digest (or a hash
 * of any other digest), and its size. */
typedef struct wh_si_blob {
	uint64_t key;
	int64_t size;
} wh_si_blob;

/* A child of an index, with its descriptor's platform (interned). */
typedef struct wh_si_kid {
	uint8_t digest[32];
	uint16_t os, arch;
} wh_si_kid;

typedef struct wh_si_image {
	uint8_t digest[32];
	uint8_t config[32];  /* an image manifest's config; zeros for an index */
	uint8_t *subject;    /* 32 bytes, or NULL */
	uint8_t type;        /* WH_SI_MANIFEST, WH_SI_INDEX */
	bool annotated_time; /* created came from an annotation or label */
	/* Its config was not in the repository when the manifest came (a cache
	 * fill stores the manifest first): what the config says is added when
	 * it arrives. */
	bool config_missing;
	/* Interned (wh_search_index_str; 0 is ""): the media type, the artifact
	 * type (artifactType, else an image manifest's config media type), and
	 * an image manifest's platform (arch with its variant: "arm64/v8"). */
	uint16_t media_type, artifact_type, os, arch;
	uint32_t downloads; /* manifest GETs since the server started */
	int64_t msize;      /* the manifest's own bytes */
	int64_t config_size;
	int64_t layers_size; /* every layer's size, kept or not */
	int64_t created_ns;  /* ns since the epoch, or WH_SI_NO_TIME */
	wh_si_blob *layers;
	int n_layers;
	wh_si_kid *kids;
	int n_kids;
	char *text; /* WH_SI_TEXT_N strings one after the other, or NULL: all empty */
} wh_si_image;

typedef struct wh_si_tag {
	char *name;
	uint8_t digest[32];
} wh_si_tag;

typedef struct wh_si_repo {
	char *name;
	wh_si_tag *tags; /* by name (strcmp) */
	int n_tags, cap_tags;
	wh_si_image *images; /* by digest */
	int n_images, cap_images;
	/* Aggregates over the tagged images (and their children), as Zot's. */
	int64_t size;            /* each blob and manifest once */
	int64_t last_updated_ns; /* the newest image's time, or a tag's push if later */
	int newest;              /* the tag of the most recently created image, or -1 */
	uint32_t *platforms;     /* os << 16 | arch, each once */
	int n_platforms;
	int n_config_missing; /* images waiting for their config */
	uint64_t downloads;
} wh_si_repo;

/* Start: the walk goes to the thread pool at once; loaded(arg) is called
 * on the loop when its result has been adopted (not from inside this
 * call). The index listens to store from now on. */
int wh_search_index_new(uv_loop_t *loop, wh_store *store, void (*loaded)(void *arg), void *arg,
                        wh_search_index **out);
/* Stops listening; a walk still in the pool ends without touching it. */
void wh_search_index_free(wh_search_index *idx);

bool wh_search_index_loaded(const wh_search_index *idx);

/* The repositories, by name (wh_store_tag_cmp's order). The pointers are
 * good until the next change (a return to the loop). */
int wh_search_index_count(const wh_search_index *idx);
wh_si_repo *wh_search_index_at(const wh_search_index *idx, int i);
wh_si_repo *wh_search_index_repo(const wh_search_index *idx, const char *name);

const wh_si_image *wh_si_image_find(const wh_si_repo *r, const uint8_t digest[32]);
const wh_si_tag *wh_si_tag_find(const wh_si_repo *r, const char *tag);
/* An image's time as Zot shows it (LastUpdated): an image manifest's
 * created_ns; an index's own, else its first child's annotated time, else
 * its latest child's. WH_SI_NO_TIME when none is known. */
int64_t wh_si_image_time(const wh_si_repo *r, const wh_si_image *im);
/* The bytes an image takes: a manifest with its config and layers; an
 * index, the sum of its children's (those the repository holds). */
int64_t wh_si_image_size(const wh_si_repo *r, const wh_si_image *im);

/* One of the WH_SI_TEXT_N annotations of im ("" when it has none). */
const char *wh_si_text(const wh_si_image *im, int which);
/* An interned string. */
const char *wh_search_index_str(const wh_search_index *idx, uint16_t id);

/* "sha256:<hex>" of raw digest bytes, into out[WH_DIGEST_LEN + 1]; and back
 * (false when s is not a sha256 digest). */
void wh_si_digest_str(const uint8_t d[32], char out[WH_DIGEST_LEN + 1]);
bool wh_si_digest_raw(const char *s, uint8_t out[32]);
/* A blob's key (wh_si_blob.key) from its digest. */
uint64_t wh_si_blob_key(const char *digest);

/* Bytes the index holds (structures, strings, arrays), for the logs and
 * the benchmark. */
size_t wh_search_index_bytes(const wh_search_index *idx);

#endif
