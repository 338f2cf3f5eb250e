/* The router of the OCI Distribution API: what a request's method and path
 * ask for, found once per request. OCI names contain slashes, so the path is
 * split from the right: /v2/<name>/(manifests|blobs|tags|referrers)/...
 *
 * The router only parses: the name and reference are not validated yet
 * (ref.h does that, and the handlers answer what is wrong with them), and
 * nothing is looked up. */
#ifndef WHARF_ROUTE_H
#define WHARF_ROUTE_H

#include <stdbool.h>

#include "wharf/oci/ref.h"

/* What a request asks to do, as http.accessControl names it; bits. */
enum {
	WH_ACTION_READ = 1 << 0,   /* GET/HEAD, and what the catalog lists */
	WH_ACTION_CREATE = 1 << 1, /* blob uploads; a manifest under a new tag or digest */
	WH_ACTION_UPDATE = 1 << 2, /* a manifest under a tag that exists */
	WH_ACTION_DELETE = 1 << 3, /* DELETE of a manifest or blob */
};

typedef enum wh_route_kind {
	WH_ROUTE_NONE,         /* not a route of the API */
	WH_ROUTE_BASE,         /* /v2/ */
	WH_ROUTE_CATALOG,      /* /v2/_catalog */
	WH_ROUTE_MANIFEST,     /* /v2/<name>/manifests/<reference> */
	WH_ROUTE_BLOB,         /* /v2/<name>/blobs/<digest> */
	WH_ROUTE_UPLOAD_START, /* POST /v2/<name>/blobs/uploads/ */
	WH_ROUTE_UPLOAD,       /* /v2/<name>/blobs/uploads/<session> */
	WH_ROUTE_TAGS,         /* /v2/<name>/tags/list */
	WH_ROUTE_REFERRERS,    /* /v2/<name>/referrers/<digest> */
} wh_route_kind;

typedef struct wh_route {
	wh_route_kind kind;
	/* The repository, for the kinds that name one, else "". Cut to "" when
	 * longer than any valid name, so that validation fails. */
	char name[WH_NAME_MAX + 1];
	/* The reference, digest or upload session ("" when none); cut to ""
	 * when longer than any valid one. */
	char ref[WH_REF_MAX + 1];
	/* What access control is asked for (WH_ACTION_*): 0 for the kinds
	 * about no repository (none, base, catalog: they need only
	 * authentication); GET and HEAD read, DELETE deletes, anything else
	 * creates. A manifest PUT under a tag that exists is an update rather
	 * than a create: that takes the store, so whoever has one decides it. */
	unsigned action;
} wh_route;

/* Parse method and path (the target up to '?') into *out. */
void wh_route_parse(const char *method, const char *path, wh_route *out);

/* True for the kinds that name a repository. */
bool wh_route_has_repo(const wh_route *r);

#endif
