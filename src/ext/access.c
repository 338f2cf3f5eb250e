/* Zot's access control. Linear scans: a config holds tens of patterns, and a
 * request costs one glob match per pattern, which is far below the cost of
 * answering it. */
#include "wharf/ext/access.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wharf/base/common.h"

#include "wharf/base/pattern.h"

static bool listed(char *const *names, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* Is user in group (a lower-cased name from a policy)? */
static bool in_group(const wh_access_config *ac, const char *group, const char *user)
{
	for (int i = 0; i < ac->n_groups; i++)
		if (strcmp(ac->groups[i].name, group) == 0 &&
		    listed(ac->groups[i].users, ac->groups[i].n_users, user))
			return true;
	return false;
}

static bool policy_grants(const wh_access_config *ac, const wh_policy *pol, const char *user,
                          unsigned action, bool by_group)
{
	if (!(pol->actions & action))
		return false;
	if (!by_group)
		return listed(pol->users, pol->n_users, user);
	for (int i = 0; i < pol->n_groups; i++)
		if (in_group(ac, pol->groups[i], user))
			return true;
	return false;
}

/* doublestar's Match, where a pattern ending in "/" and a doublestar also
 * matches the name before it: "team" for team's whole tree. */
static bool matches(const char *pattern, const char *repo)
{
	if (wh_glob_match(pattern, repo))
		return true;
	size_t pl = strlen(pattern);
	if (pl < 4 || strcmp(pattern + pl - 3, "/**") != 0)
		return false;
	char *prefix = wh_strndup(pattern, pl - 3);
	bool m = wh_glob_match(prefix, repo);
	free(prefix);
	return m;
}

static const wh_repo_policy *winner(const wh_access_config *ac, const char *repo)
{
	const wh_repo_policy *best = NULL;
	size_t best_len = 0;
	for (int i = 0; i < ac->n_repos; i++) {
		size_t len = strlen(ac->repos[i].pattern);
		/* Zot breaks ties by Go's map order, i.e. at random; the first one
		 * written is at least the same answer every time. */
		if ((!best || len > best_len) && matches(ac->repos[i].pattern, repo)) {
			best = &ac->repos[i];
			best_len = len;
		}
	}
	return best;
}

bool wh_access_allows(const wh_access_config *ac, const char *user, const char *repo,
                      unsigned action)
{
	if (!ac->enabled)
		return true;
	const wh_repo_policy *r = winner(ac, repo);
	if (r && user) {
		/* Users first, then groups: Zot's order (it only matters once
		 * conditions exist, but keeps the two readings the same). */
		for (int pass = 0; pass < 2; pass++)
			for (int i = 0; i < r->n_policies; i++)
				if (policy_grants(ac, &r->policies[i], user, action, pass == 1))
					return true;
		if (r->default_actions & action)
			return true;
	}
	if (r && !user && (r->anonymous_actions & action))
		return true;
	/* adminPolicy holds for every repository, matched or not. */
	return user && (policy_grants(ac, &ac->admin, user, action, false) ||
	                policy_grants(ac, &ac->admin, user, action, true));
}

bool wh_access_metrics_allows(const wh_access_config *ac, const char *user)
{
	/* With accessControl but no metrics object, nobody: as Zot, and the
	 * metrics name repositories a user may not be allowed to read. */
	if (!ac->enabled)
		return true;
	if (!user)
		return (ac->metrics_anonymous & WH_ACTION_READ) != 0;
	for (int i = 0; i < ac->n_metrics_users; i++)
		if (strcmp(ac->metrics_users[i], user) == 0)
			return true;
	return false;
}

bool wh_access_anonymous_possible(const wh_access_config *ac)
{
	for (int i = 0; i < ac->n_repos; i++)
		if (ac->repos[i].anonymous_actions)
			return true;
	return false;
}

bool wh_access_needs_login(const wh_access_config *ac)
{
	if (ac->admin.actions)
		return true;
	for (int i = 0; i < ac->n_repos; i++)
		if (ac->repos[i].n_policies || ac->repos[i].default_actions)
			return true;
	return false;
}

/* ---- configuration: http.accessControl ---- */

#define ACC(m) offsetof(wh_access_config, m)
#define POL(m) offsetof(wh_policy, m)

static int parse_users(wh_conf *p, const cJSON *v, char *base)
{
	wh_policy *pol = (wh_policy *)(void *)base;
	return wh_conf_strv(p, v, &pol->users, &pol->n_users);
}

static int parse_groups_ref(wh_conf *p, const cJSON *v, char *base)
{
	wh_policy *pol = (wh_policy *)(void *)base;
	int from = pol->n_groups;
	int rc = wh_conf_strv(p, v, &pol->groups, &pol->n_groups);
	for (int i = from; i < pol->n_groups; i++)
		wh_conf_lower(pol->groups[i]); /* as the keys of accessControl.groups */
	return rc;
}

/* ["read","create",...] into WH_ACTION_* bits. Zot ignores an action it does
 * not know, which silently grants nothing; a typo is an error here. */
static int get_actions(wh_conf *p, const cJSON *v, unsigned *out)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {{"read", WH_ACTION_READ},
	             {"create", WH_ACTION_CREATE},
	             {"update", WH_ACTION_UPDATE},
	             {"delete", WH_ACTION_DELETE},
	             /* a stricter DELETE, off by default: accepting it unimplemented
	              * only makes deletes easier, never reads or writes */
	             {"detectManifestCollision", 0}};
	const cJSON *item;
	int i = 0, rc = 0;

	if (!cJSON_IsArray(v))
		return wh_conf_fail(p,
		                    "expected an array of actions (read, create, update, delete)");
	cJSON_ArrayForEach(item, v)
	{
		size_t old = wh_conf_push_index(p, i++);
		size_t k;
		if (!cJSON_IsString(item))
			rc = wh_conf_fail(p, "expected a string");
		for (k = 0; !rc && k < WH_ARRAY_SIZE(names); k++)
			if (strcasecmp(item->valuestring, names[k].name) == 0)
				break;
		if (!rc && k == WH_ARRAY_SIZE(names))
			rc = wh_conf_fail(p,
			                  "unknown action \"%s\" (read, create, update or delete)",
			                  item->valuestring);
		if (!rc)
			*out |= names[k].bit;
		wh_conf_pop(p, old);
		if (rc)
			break;
	}
	return rc;
}

static int parse_actions(wh_conf *p, const cJSON *v, char *base)
{
	return get_actions(p, v, &((wh_policy *)(void *)base)->actions);
}

/* Conditions are CEL expressions that narrow a grant: ignoring them would
 * grant more than asked, so a non-empty list is refused. */
static const wh_conf_key policy_fields[] = {
    {"users", WH_CONF_CUSTOM, WH_CONF_LIST, WH_CONF_NOSTORE, NULL, parse_users},
    {"groups", WH_CONF_CUSTOM, WH_CONF_LIST, WH_CONF_NOSTORE, NULL, parse_groups_ref},
    {"actions", WH_CONF_CUSTOM, WH_CONF_LIST, WH_CONF_NOSTORE, NULL, parse_actions},
    {"conditions", WH_CONF_ANY, WH_CONF_REFUSE_IF_SET, WH_CONF_NOSTORE, NULL, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

static int policy_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_repo_policy *r = arg;
	r->n_policies++; /* freed whole, even half-parsed */
	return wh_conf_walk(p, item, policy_fields, (char *)&r->policies[i]);
}

static int parse_policies(wh_conf *p, const cJSON *v, char *base)
{
	wh_repo_policy *r = (wh_repo_policy *)(void *)base;
	r->policies = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*r->policies));
	return wh_conf_each(p, v, false, "expected an array", policy_item, r);
}

static int parse_default_policy(wh_conf *p, const cJSON *v, char *base)
{
	return get_actions(p, v, &((wh_repo_policy *)(void *)base)->default_actions);
}

static int parse_anonymous_policy(wh_conf *p, const cJSON *v, char *base)
{
	return get_actions(p, v, &((wh_repo_policy *)(void *)base)->anonymous_actions);
}

static const wh_conf_key repo_policy_fields[] = {
    {"policies", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_policies},
    {"defaultPolicy", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_default_policy},
    {"anonymousPolicy", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_anonymous_policy},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

static int repository_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_access_config *ac = arg;
	wh_repo_policy *r = &ac->repos[ac->n_repos++];
	const char *why = wh_conf_glob_problem(item->string);

	r->pattern = wh_strdup(item->string);
	wh_conf_lower(r->pattern);
	if (why)
		return wh_conf_fail(p, "invalid glob: %s", why);
	return cJSON_IsNull(item) ? 0 : wh_conf_walk(p, item, repo_policy_fields, (char *)r);
}

static int parse_repositories(wh_conf *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	ac->repos = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*ac->repos));
	return wh_conf_each(p, v, true, "expected an object of repository globs", repository_item,
	                    ac);
}

static int parse_group_users(wh_conf *p, const cJSON *v, char *base)
{
	wh_group *g = (wh_group *)(void *)base;
	return wh_conf_strv(p, v, &g->users, &g->n_users);
}

static const wh_conf_key group_fields[] = {
    {"users", WH_CONF_CUSTOM, WH_CONF_LIST, WH_CONF_NOSTORE, NULL, parse_group_users},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

static int group_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	wh_access_config *ac = arg;
	wh_group *g = &ac->groups[ac->n_groups++];

	g->name = wh_strdup(item->string);
	wh_conf_lower(g->name);
	return cJSON_IsNull(item) ? 0 : wh_conf_walk(p, item, group_fields, (char *)g);
}

static int parse_groups(wh_conf *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	ac->groups = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*ac->groups));
	return wh_conf_each(p, v, true, "expected an object of groups", group_item, ac);
}

static int parse_metrics_users(wh_conf *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	return wh_conf_strv(p, v, &ac->metrics_users, &ac->n_metrics_users);
}

static int parse_metrics_anonymous(wh_conf *p, const cJSON *v, char *base)
{
	return get_actions(p, v, &((wh_access_config *)(void *)base)->metrics_anonymous);
}

static const wh_conf_key metrics_access_fields[] = {
    {"users", WH_CONF_CUSTOM, WH_CONF_LIST, WH_CONF_NOSTORE, NULL, parse_metrics_users},
    {"anonymousPolicy", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_metrics_anonymous},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

static int parse_admin_policy(wh_conf *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	return wh_conf_walk(p, v, policy_fields, (char *)&ac->admin);
}

static const wh_conf_key access_fields[] = {
    {"repositories", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_repositories},
    {"groups", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_groups},
    {"adminPolicy", WH_CONF_CUSTOM, 0, WH_CONF_NOSTORE, NULL, parse_admin_policy},
    {"metrics", WH_CONF_OBJECT, WH_CONF_PRESENCE, offsetof(wh_access_config, metrics_set),
     metrics_access_fields, NULL},
    {NULL, WH_CONF_ANY, 0, 0, NULL, NULL},
};

int wh_access_conf(wh_conf *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	ac->enabled = true;
	return wh_conf_walk(p, v, access_fields, base);
}

static void policy_free(wh_policy *pol)
{
	wh_conf_strv_free(pol->users, pol->n_users);
	wh_conf_strv_free(pol->groups, pol->n_groups);
}

void wh_access_config_free(wh_access_config *ac)
{
	for (int i = 0; i < ac->n_repos; i++) {
		wh_repo_policy *r = &ac->repos[i];
		free(r->pattern);
		for (int j = 0; j < r->n_policies; j++)
			policy_free(&r->policies[j]);
		free(r->policies);
	}
	free(ac->repos);
	for (int i = 0; i < ac->n_groups; i++) {
		free(ac->groups[i].name);
		wh_conf_strv_free(ac->groups[i].users, ac->groups[i].n_users);
	}
	free(ac->groups);
	policy_free(&ac->admin);
	wh_conf_strv_free(ac->metrics_users, ac->n_metrics_users);
	memset(ac, 0, sizeof(*ac));
}
