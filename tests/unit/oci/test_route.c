/* The router: what a method and path ask for, parsed once per request. */
#include "check.h"

#include <string.h>

#include "wharf/oci/ref.h"
#include "wharf/oci/route.h"

static const struct {
	const char *method, *path;
	wh_route_kind kind;
	const char *name, *ref;
	unsigned action;
} cases[] = {
    {"GET", "/v2/", WH_ROUTE_BASE, "", "", 0},
    {"GET", "/v2", WH_ROUTE_BASE, "", "", 0},
    {"GET", "/v2/_catalog", WH_ROUTE_CATALOG, "", "", 0},
    {"GET", "/livez", WH_ROUTE_NONE, "", "", 0},
    {"GET", "/v3/x/manifests/y", WH_ROUTE_NONE, "", "", 0},
    {"GET", "/v2/manifests/latest", WH_ROUTE_NONE, "", "", 0}, /* no name */
    {"GET", "/v2/a/b/c/manifests/latest", WH_ROUTE_MANIFEST, "a/b/c", "latest", WH_ACTION_READ},
    {"HEAD", "/v2/x/manifests/sha256:ab", WH_ROUTE_MANIFEST, "x", "sha256:ab", WH_ACTION_READ},
    {"PUT", "/v2/x/manifests/t", WH_ROUTE_MANIFEST, "x", "t", WH_ACTION_CREATE},
    {"DELETE", "/v2/x/manifests/t", WH_ROUTE_MANIFEST, "x", "t", WH_ACTION_DELETE},
    /* A name may itself hold the words the route is made of. */
    {"GET", "/v2/manifests/manifests/t", WH_ROUTE_MANIFEST, "manifests", "t", WH_ACTION_READ},
    {"GET", "/v2/tags/list/tags/list", WH_ROUTE_TAGS, "tags/list", "list", WH_ACTION_READ},
    {"GET", "/v2/x/blobs/sha256:ab", WH_ROUTE_BLOB, "x", "sha256:ab", WH_ACTION_READ},
    {"DELETE", "/v2/x/blobs/sha256:ab", WH_ROUTE_BLOB, "x", "sha256:ab", WH_ACTION_DELETE},
    {"POST", "/v2/x/y/blobs/uploads/", WH_ROUTE_UPLOAD_START, "x/y", "", WH_ACTION_CREATE},
    {"POST", "/v2/x/blobs/uploads", WH_ROUTE_UPLOAD_START, "x", "uploads", WH_ACTION_CREATE},
    {"GET", "/v2/x/blobs/uploads", WH_ROUTE_BLOB, "x", "uploads", WH_ACTION_READ},
    {"PATCH", "/v2/x/blobs/uploads/0a1b", WH_ROUTE_UPLOAD, "x", "0a1b", WH_ACTION_CREATE},
    {"GET", "/v2/x/tags/list", WH_ROUTE_TAGS, "x", "list", WH_ACTION_READ},
    {"GET", "/v2/x/tags/other", WH_ROUTE_NONE, "", "", 0},
    {"GET", "/v2/x/referrers/sha256:ab", WH_ROUTE_REFERRERS, "x", "sha256:ab", WH_ACTION_READ},
};

static void test_routes(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		wh_route r;
		memset(&r, 0x5a, sizeof(r)); /* whatever was there before */
		wh_route_parse(cases[i].method, cases[i].path, &r);
		CHECK(r.kind == cases[i].kind);
		CHECK_STREQ(r.name, cases[i].name);
		CHECK_STREQ(r.ref, cases[i].ref);
		CHECK(r.action == cases[i].action);
		CHECK(wh_route_has_repo(&r) == (cases[i].action != 0));
	}
}

/* Too long to be valid: cut to "", so that validation fails. */
static void test_long(void)
{
	char path[1024], name[WH_NAME_MAX + 2];
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(path, sizeof(path), "/v2/%s/manifests/t", name);
	wh_route r;
	wh_route_parse("GET", path, &r);
	CHECK(r.kind == WH_ROUTE_MANIFEST);
	CHECK_STREQ(r.name, "");
	CHECK_STREQ(r.ref, "t");

	char ref[WH_REF_MAX + 2];
	memset(ref, 'b', sizeof(ref) - 1);
	ref[sizeof(ref) - 1] = '\0';
	snprintf(path, sizeof(path), "/v2/x/manifests/%s", ref);
	wh_route_parse("GET", path, &r);
	CHECK_STREQ(r.name, "x");
	CHECK_STREQ(r.ref, "");
	ref[WH_REF_MAX] = '\0'; /* the longest kept */
	snprintf(path, sizeof(path), "/v2/x/manifests/%s", ref);
	wh_route_parse("GET", path, &r);
	CHECK(strlen(r.ref) == WH_REF_MAX);
}

/* Names the grammar allows but an image layout cannot hold. */
static void test_storable(void)
{
	CHECK(wh_name_storable("library/nginx"));
	CHECK(wh_name_storable("index.json")); /* first component: a directory of the root */
	CHECK(wh_name_storable("a/blobs"));
	CHECK(wh_name_storable("a/sha256"));
	CHECK(!wh_name_storable("a/index.json"));
	CHECK(!wh_name_storable("a/oci-layout"));
	CHECK(!wh_name_storable("a/blobs/sha256"));
	CHECK(!wh_name_storable("a/blobs/sha256/x"));
	CHECK(wh_name_storable("a/sha512"));
	CHECK(!wh_name_storable("a/blobs/sha512"));
	CHECK(!wh_name_storable("a/blobs/sha512/x"));
	CHECK(wh_name_storable("a/blobs/sha384")); /* no algorithm Wharf stores */
	CHECK(!wh_name_storable("Upper"));
	CHECK(!wh_name_storable(""));
}

int main(void)
{
	test_routes();
	test_long();
	test_storable();
	CHECK_DONE();
}
