/* Answers from the store: a manifest, a blob, the referrers of a digest and
 * the tags of a repository, for a GET or HEAD of the OCI API. The registry
 * answers local names with them, and sync answers synced names with them
 * once what the upstream has is in the store (or merged in: listings).
 *
 * name, ref and digest must have been validated (ref.h). Each function
 * answers req completely: the content, or the spec's error. */
#ifndef WHARF_SERVE_H
#define WHARF_SERVE_H

#include <stdbool.h>
#include <stdint.h>

#include "wharf/net/http.h"
#include "wharf/store/store.h"

/* name:ref is not in the store: 404 NAME_UNKNOWN when the repository does
 * not exist, else MANIFEST_UNKNOWN. */
void wh_serve_manifest_unknown(wh_req *req, wh_store *st, const char *name, const char *ref);

/* name:ref (a tag or a digest): 200 with the manifest's media type,
 * Docker-Content-Digest and ETag, the bytes unless HEAD; else as
 * wh_serve_manifest_unknown. */
void wh_serve_manifest(wh_req *req, wh_store *st, const char *name, const char *ref);

/* The blob, whole or the one range asked for (206; 416 when it cannot be
 * satisfied), sent from the file; 404 BLOB_UNKNOWN. Returns the body bytes
 * the answer carries (0 for a HEAD or an error). */
int64_t wh_serve_blob(wh_req *req, wh_store *st, const char *name, const char *digest);

/* The referrers of digest: an image index of the store's referrers, merged
 * with upstream's when given (a JSON array of validated descriptors, for a
 * synced name whose upstream answered; one entry per digest, the store's
 * first). The artifactType query filter is applied here, always, so
 * OCI-Filters-Applied says so whenever one was asked. */
void wh_serve_referrers(wh_req *req, wh_store *st, const char *name, const char *digest,
                        const char *upstream);

/* What the upstream lists as a synced name's tags. */
typedef struct wh_upstream_tags {
	bool known;        /* false: the upstream could not be asked */
	char *const *tags; /* sorted by wh_store_tag_cmp, no repeats; NULL when !known */
	int n;
	/* When !known: why, for the client (static text); NULL: the upstream
	 * is unavailable. */
	const char *why;
} wh_upstream_tags;

/* tags/list: the store's tags, merged with up's when known, paged (n,
 * last) over the merged list. up is NULL for a name that is not synced.
 * With no tag at all: 404 NAME_UNKNOWN, or, for a synced name whose
 * upstream's list is not known, 502 (the upstream is unavailable and
 * nothing is cached; up->why says why when given). */
void wh_serve_tags(wh_req *req, wh_store *st, const char *name, const wh_upstream_tags *up);

#endif
