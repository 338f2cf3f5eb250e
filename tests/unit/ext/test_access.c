/* Unit tests for src/ext/access.c: Zot's accessControl precedence. */
#include "check.h"

#include "wharf/base/common.h"
#include "wharf/ext/access.h"

#include <stdlib.h>
#include <string.h>

/* A config file's http.accessControl, through the module's own keys. */
typedef struct {
	wh_access_config access;
} parsed;

static parsed parse(const char *single_quoted)
{
	char *json = wh_strdup(single_quoted);
	for (char *c = json; *c; c++)
		if (*c == '\'')
			*c = '"';
	cJSON *root = cJSON_Parse(json);
	const cJSON *http = cJSON_GetObjectItemCaseSensitive(root, "http");
	const cJSON *ac = cJSON_GetObjectItemCaseSensitive(http, "accessControl");
	parsed c;
	wh_conf conf;
	char err[512];
	memset(&c, 0, sizeof(c));
	memset(&conf, 0, sizeof(conf));
	conf.err = err;
	conf.errlen = sizeof(err);
	/* Without http.accessControl: the zero config, no access control. */
	if (ac && wh_access_conf(&conf, ac, (char *)&c.access) != 0) {
		fprintf(stderr, "config: %s\n", err);
		abort();
	}
	wh_conf_release(&conf);
	cJSON_Delete(root);
	free(json);
	return c;
}

static void test_precedence(void)
{
	parsed c = parse(
	    "{'storage': {'rootDirectory': '/r'}, 'http': {"
	    " 'auth': {'htpasswd': {'path': '/h'}},"
	    " 'accessControl': {'groups': {'devs': {'users': ['bob']}},"
	    "   'repositories': {"
	    "     '**': {'defaultPolicy': ['read'], 'anonymousPolicy': ['read']},"
	    "     'team/**': {'policies': [{'users': ['alice'], 'actions': ['read', 'create']},"
	    "                 {'groups': ['devs'], 'actions': ['read', 'update']}]},"
	    "     'team/secret/*': {'policies': [{'users': ['alice'], 'actions': ['read']}]},"
	    "     'open': {'anonymousPolicy': ['read', 'create']}},"
	    "   'adminPolicy': {'users': ['root'], 'actions': ['read', 'create', 'update', "
	    "'delete']}}}}");
	const wh_access_config *ac = &c.access;
	enum {
		R = WH_ACTION_READ,
		C = WH_ACTION_CREATE,
		U = WH_ACTION_UPDATE,
		D = WH_ACTION_DELETE
	};

	/* "**": default and anonymous read */
	CHECK(wh_access_allows(ac, NULL, "lib/x", R));
	CHECK(wh_access_allows(ac, "carol", "lib/x", R));
	CHECK(!wh_access_allows(ac, "carol", "lib/x", C));
	/* the longest pattern wins: team/... has no default or anonymous read */
	CHECK(!wh_access_allows(ac, NULL, "team/app", R));
	CHECK(!wh_access_allows(ac, "carol", "team/app", R));
	CHECK(wh_access_allows(ac, "alice", "team/app", C));
	CHECK(!wh_access_allows(ac, "alice", "team/app", U));
	CHECK(wh_access_allows(ac, "bob", "team/app", U)); /* by group */
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
	wh_access_config_free(&c.access);

	/* a repo no pattern matches is denied, even to a default user */
	c = parse("{'storage': {'rootDirectory': '/r'}, 'http': {"
	          " 'auth': {'htpasswd': {'path': '/h'}},"
	          " 'accessControl': {'repositories': {'pub/**': {'defaultPolicy': ['read']}}}}}");
	CHECK(wh_access_allows(&c.access, "carol", "pub/a", R));
	CHECK(!wh_access_allows(&c.access, "carol", "priv/a", R));
	CHECK(!wh_access_anonymous_possible(&c.access));
	wh_access_config_free(&c.access);

	/* without accessControl, anything */
	c = parse("{'storage': {'rootDirectory': '/r'}}");
	CHECK(wh_access_allows(&c.access, NULL, "x", D));
	wh_access_config_free(&c.access);
}

/* accessControl.metrics: Zot's rule when the object is there, else
 * whoever passed authentication. */
static void test_metrics(void)
{
	parsed c =
	    parse("{'http': {'accessControl': {'repositories': {'**': {'anonymousPolicy': "
	          "['read']}}, 'metrics': {'users': ['prom'], 'anonymousPolicy': ['read']}}}}");
	CHECK(c.access.metrics_set);
	CHECK(wh_access_metrics_allows(&c.access, "prom"));
	CHECK(!wh_access_metrics_allows(&c.access, "alice"));
	CHECK(wh_access_metrics_allows(&c.access, NULL));
	wh_access_config_free(&c.access);

	/* no anonymousPolicy: anonymous may not; an empty users list: nobody */
	c = parse("{'http': {'accessControl': {'repositories': {}, 'metrics': {'users': []}}}}");
	CHECK(!wh_access_metrics_allows(&c.access, NULL));
	CHECK(!wh_access_metrics_allows(&c.access, "prom"));
	wh_access_config_free(&c.access);

	/* accessControl without a metrics object: nobody, as Zot; none at all:
	 * anyone past authentication */
	c = parse(
	    "{'http': {'accessControl': {'repositories': {'**': {'defaultPolicy': ['read']}}}}}");
	CHECK(!c.access.metrics_set);
	CHECK(!wh_access_metrics_allows(&c.access, "alice"));
	CHECK(!wh_access_metrics_allows(&c.access, NULL));
	wh_access_config_free(&c.access);
	c = parse("{'storage': {'rootDirectory': '/r'}}");
	CHECK(wh_access_metrics_allows(&c.access, NULL));
	wh_access_config_free(&c.access);
}

int main(void)
{
	test_precedence();
	test_metrics();
	CHECK_DONE();
}
