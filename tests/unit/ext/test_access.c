/* Unit tests for src/ext/access.c: Zot's accessControl precedence. */
#include "check.h"

#include "wharf/ext/access.h"
#include "wharf/base/common.h"
#include "wharf/base/config.h"

#include <stdlib.h>
#include <string.h>

static wh_config parse(const char *single_quoted)
{
	char *json = wh_strdup(single_quoted);
	for (char *c = json; *c; c++)
		if (*c == '\'')
			*c = '"';
	wh_config c;
	char err[512];
	if (wh_config_parse(json, strlen(json), &c, err, sizeof(err)) != 0) {
		fprintf(stderr, "config: %s\n", err);
		abort();
	}
	free(json);
	return c;
}

static void test_precedence(void)
{
	wh_config c = parse(
	    "{'storage': {'rootDirectory': '/r'}, 'http': {"
	    " 'auth': {'htpasswd': {'path': '/h'}},"
	    " 'accessControl': {'groups': {'devs': {'users': ['bob']}},"
	    "   'repositories': {"
	    "     '**': {'defaultPolicy': ['read'], 'anonymousPolicy': ['read']},"
	    "     'team/**': {'policies': [{'users': ['alice'], 'actions': ['read', 'create']},"
	    "                 {'groups': ['devs'], 'actions': ['read', 'update']}]},"
	    "     'team/secret/*': {'policies': [{'users': ['alice'], 'actions': ['read']}]},"
	    "     'open': {'anonymousPolicy': ['read', 'create']}},"
	    "   'adminPolicy': {'users': ['root'], 'actions': ['read', 'create', 'update', 'delete']}}}}");
	const wh_access_config *ac = &c.access;
	enum { R = WH_ACTION_READ, C = WH_ACTION_CREATE, U = WH_ACTION_UPDATE, D = WH_ACTION_DELETE };

	/* "**": default and anonymous read */
	CHECK(wh_access_allows(ac, NULL, "lib/x", R));
	CHECK(wh_access_allows(ac, "carol", "lib/x", R));
	CHECK(!wh_access_allows(ac, "carol", "lib/x", C));
	/* the longest pattern wins: team/... has no default or anonymous read */
	CHECK(!wh_access_allows(ac, NULL, "team/app", R));
	CHECK(!wh_access_allows(ac, "carol", "team/app", R));
	CHECK(wh_access_allows(ac, "alice", "team/app", C));
	CHECK(!wh_access_allows(ac, "alice", "team/app", U));
	CHECK(wh_access_allows(ac, "bob", "team/app", U));  /* by group */
	CHECK(!wh_access_allows(ac, "bob", "team/app", C));
	/* a/(doublestar) matches a itself */
	CHECK(wh_access_allows(ac, "alice", "team", C));
	/* team/secret/(star) is longer than team/(doublestar) */
	CHECK(wh_access_allows(ac, "alice", "team/secret/x", R));
	CHECK(!wh_access_allows(ac, "alice", "team/secret/x", C));
	CHECK(!wh_access_allows(ac, "bob", "team/secret/x", R));
	/* authenticated users do not inherit anonymousPolicy */
	CHECK(wh_access_allows(ac, NULL, "open", C));
	CHECK(!wh_access_allows(ac, "carol", "open", C));
	CHECK(!wh_access_allows(ac, "carol", "open", R));
	/* adminPolicy everywhere */
	CHECK(wh_access_allows(ac, "root", "team/secret/x", D));
	CHECK(wh_access_allows(ac, "root", "open", D));
	CHECK(!wh_access_allows(ac, "alice", "team/app", D));
	CHECK(wh_access_anonymous_possible(ac) && wh_access_needs_login(ac));
	wh_config_free(&c);

	/* a repo no pattern matches is denied, even to a default user */
	c = parse("{'storage': {'rootDirectory': '/r'}, 'http': {"
	          " 'auth': {'htpasswd': {'path': '/h'}},"
	          " 'accessControl': {'repositories': {'pub/**': {'defaultPolicy': ['read']}}}}}");
	CHECK(wh_access_allows(&c.access, "carol", "pub/a", R));
	CHECK(!wh_access_allows(&c.access, "carol", "priv/a", R));
	CHECK(!wh_access_anonymous_possible(&c.access));
	wh_config_free(&c);

	/* without accessControl, anything */
	c = parse("{'storage': {'rootDirectory': '/r'}}");
	CHECK(wh_access_allows(&c.access, NULL, "x", D));
	wh_config_free(&c);
}

int main(void)
{
	test_precedence();
	CHECK_DONE();
}
