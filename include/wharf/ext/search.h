/* extensions.search: Zot's GraphQL search at /v2/_zot/ext/search, and the
 * extension discovery at /v2/_oci/ext/discover (zot-reference.md §7, §8).
 *
 * GET ?query=<document>[&variables=<json>][&operationName=<name>], or POST
 * {"query": "...", "variables": {...}, "operationName": "..."}; the answer
 * is {"data": ...} and/or {"errors": [...]}, application/json. A document
 * that does not parse, or does not fit the schema (an unknown field or
 * argument, a value of the wrong type, a missing required argument or
 * variable), is a 422 with GraphQL errors, nothing run; an error while
 * running a query (an invalid search, an unknown repository or tag) is a
 * 200 with the error and "data": null, as gqlgen answers for Zot's
 * non-null queries. A POST body that is not JSON is a 400.
 *
 * The queries: GlobalSearch (its four targets: repository names ranked as
 * Zot ranks them, "repo:tagprefix", ":tag", a digest; repositories or
 * images; filter, paging, sorting), ExpandedRepoInfo, Image, ImageList,
 * ImageListForDigest, Referrers, RepoListWithNewestImage, DerivedImageList,
 * BaseImageList, StarredRepos and BookmarkedRepos (empty: nothing is starred
 * or bookmarked). The CVE queries answer "cve search is disabled", as Zot
 * without a scanner. Only the fields a query selects are in its answer.
 * What Wharf does not compute is null, 0 or false: Vulnerabilities,
 * signatures (IsSigned false, SignatureInfo []), stars and bookmarks,
 * PushedBy. DownloadCount counts manifest GETs since the server started;
 * the push and last pull times are the store's metadata (meta.h).
 *
 * Every answer holds only repositories the caller may read (access
 * control, as the catalog's), and IsDeletable says whether they may
 * delete. The answers come from the search index (search_index.h), in
 * memory; a request that arrives before it is loaded waits for it. */
#ifndef WHARF_SEARCH_H
#define WHARF_SEARCH_H

#include <stdbool.h>

#include "wharf/base/conf.h"
#include "wharf/ext/module.h"

/* extensions.search. */
typedef struct wh_search_settings {
	bool enable; /* first: the object is present and its enable is not false */
	/* Set by the configuration's checks, from the file's top level: what
	 * the mgmt endpoint reports (NULL: the spec version Wharf follows). */
	const char *dist_spec_version;
} wh_search_settings;

/* enable (a bool); cve accepted and ignored, with a warning. */
extern const wh_conf_key wh_search_keys[];

/* The pipeline's module: its paths are /v2/_zot/ext/search (GET, POST;
 * 404 when search is not enabled) and /v2/_oci/ext/discover (GET: the _zot
 * extension with its endpoints when search is enabled, else an empty
 * list). Both need the credentials /v2/ needs. Its state is the search
 * index (NULL when search is not enabled). */
extern const wh_module wh_search_module;

#endif
