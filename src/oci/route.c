/* The router of the OCI Distribution API. See include/wharf/oci/route.h. */
#include "wharf/oci/route.h"

#include <string.h>

/* The last '/' in [begin, end), or NULL. */
static const char *prev_slash(const char *begin, const char *end)
{
	while (end > begin)
		if (*--end == '/')
			return end;
	return NULL;
}

static bool comp_is(const char *p, const char *end, const char *lit)
{
	size_t n = strlen(lit);
	return (size_t)(end - p) == n && memcmp(p, lit, n) == 0;
}

/* Split /v2/<name>/<kind>/<ref> from the right: names contain slashes, the
 * other parts never do. */
static wh_route_kind route_v2(const char *method, const char *path, char *name, char *ref)
{
	if (strcmp(path, "/v2/") == 0 || strcmp(path, "/v2") == 0)
		return WH_ROUTE_BASE;
	if (strncmp(path, "/v2/", 4) != 0)
		return WH_ROUTE_NONE;
	if (strcmp(path, "/v2/_catalog") == 0)
		return WH_ROUTE_CATALOG;

	const char *rest = path + 4, *end = path + strlen(path);
	const char *s1 = prev_slash(rest, end);
	if (!s1)
		return WH_ROUTE_NONE;
	const char *last = s1 + 1;
	const char *s2 = prev_slash(rest, s1);
	const char *c2 = s2 ? s2 + 1 : rest;
	const char *name_end = s2;
	wh_route_kind r = WH_ROUTE_NONE;
	if (comp_is(c2, s1, "tags") && comp_is(last, end, "list")) {
		r = WH_ROUTE_TAGS;
	} else if (comp_is(c2, s1, "manifests")) {
		r = WH_ROUTE_MANIFEST;
	} else if (comp_is(c2, s1, "referrers")) {
		r = WH_ROUTE_REFERRERS;
	} else if (comp_is(c2, s1, "uploads") && s2) {
		const char *s3 = prev_slash(rest, s2);
		if (comp_is(s3 ? s3 + 1 : rest, s2, "blobs")) {
			r = last == end ? WH_ROUTE_UPLOAD_START : WH_ROUTE_UPLOAD;
			name_end = s3;
		}
	}
	if (r == WH_ROUTE_NONE && comp_is(c2, s1, "blobs")) {
		if (strcmp(method, "POST") == 0 && comp_is(last, end, "uploads"))
			r = WH_ROUTE_UPLOAD_START;
		else
			r = WH_ROUTE_BLOB;
	}
	if (r == WH_ROUTE_NONE || !name_end || name_end == rest)
		return WH_ROUTE_NONE;
	size_t nlen = (size_t)(name_end - rest), rlen = (size_t)(end - last);
	if (nlen > WH_NAME_MAX)
		nlen = 0;
	memcpy(name, rest, nlen);
	name[nlen] = '\0';
	if (rlen > WH_REF_MAX)
		rlen = 0;
	memcpy(ref, last, rlen);
	ref[rlen] = '\0';
	return r;
}

bool wh_route_has_repo(const wh_route *r)
{
	return r->kind != WH_ROUTE_NONE && r->kind != WH_ROUTE_BASE && r->kind != WH_ROUTE_CATALOG;
}

void wh_route_parse(const char *method, const char *path, wh_route *out)
{
	out->name[0] = out->ref[0] = '\0';
	out->kind = route_v2(method, path, out->name, out->ref);
	if (!wh_route_has_repo(out))
		out->action = 0;
	else if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
		out->action = WH_ACTION_READ;
	else if (strcmp(method, "DELETE") == 0)
		out->action = WH_ACTION_DELETE;
	else
		out->action = WH_ACTION_CREATE;
}
