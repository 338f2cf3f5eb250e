/* Zot's access control. Linear scans: a config holds tens of patterns, and a
 * request costs one glob match per pattern, which is far below the cost of
 * answering it. */
#include "wharf/ext/access.h"

#include <stdlib.h>
#include <string.h>

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
