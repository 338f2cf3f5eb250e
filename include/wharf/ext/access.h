/* Authorization: http.accessControl with Zot's semantics (pkg/api/authz.go).
 *
 * Pure functions over the parsed configuration: no I/O, no state. The access
 * phase (auth.h) asks them once a request's user is known. */
#ifndef WHARF_ACCESS_H
#define WHARF_ACCESS_H

#include <stdbool.h>

#include "wharf/base/conf.h"
#include "wharf/oci/route.h" /* WH_ACTION_* */

/* One entry of `policies` (or adminPolicy): who, and what they may do.
 * Names are compared as written, except group names, lower-cased as Zot's
 * viper lower-cases the keys of accessControl.groups. */
typedef struct wh_policy {
	char **users;
	int n_users;
	char **groups;
	int n_groups;
	unsigned actions; /* WH_ACTION_* */
} wh_policy;

/* accessControl.repositories.<pattern>. */
typedef struct wh_repo_policy {
	char *pattern; /* doublestar glob, lower-cased (viper) */
	wh_policy *policies;
	int n_policies;
	unsigned default_actions;   /* defaultPolicy: any authenticated user */
	unsigned anonymous_actions; /* anonymousPolicy: requests without credentials only */
} wh_repo_policy;

typedef struct wh_group {
	char *name; /* lower-cased */
	char **users;
	int n_users;
} wh_group;

typedef struct wh_access_config {
	bool enabled; /* http.accessControl is present */
	wh_repo_policy *repos;
	int n_repos;
	wh_group *groups;
	int n_groups;
	wh_policy admin; /* adminPolicy: every repository */
	/* metrics: who may read the metrics (extensions.metrics' path and the
	 * status page, /v2/_wharf/status) */
	bool metrics_set; /* accessControl.metrics is present */
	char **metrics_users;
	int n_metrics_users;
	unsigned metrics_anonymous;
} wh_access_config;

/* http.accessControl: the whole object (wh_access_conf); sets enabled. */
int wh_access_conf(wh_conf *c, const cJSON *v, char *base);
void wh_access_config_free(wh_access_config *ac);

/* May user (NULL: anonymous) do action (one WH_ACTION_*) on repo?
 *
 * Among the repository patterns that match repo (doublestar), the longest
 * pattern string wins; a repo no pattern matches is denied. Inside the
 * winner, the first grant of: a policy naming the user, a policy naming one
 * of the user's groups (accessControl.groups), defaultPolicy for an
 * authenticated user, anonymousPolicy for an anonymous one (authenticated
 * users do not inherit it). Failing those, adminPolicy, for every repo.
 * Without access control (ac->enabled false) everything is allowed. */
bool wh_access_allows(const wh_access_config *ac, const char *user, const char *repo,
                      unsigned action);

/* May user (NULL: anonymous) read the metrics (and the status page)? As
 * Zot's metrics route: without accessControl, anyone who got past
 * authentication; with it, an anonymous request when metrics.anonymousPolicy
 * has read, an authenticated user when metrics.users lists them: nobody
 * when there is no metrics object or its users list is empty (the metrics
 * name repositories a user may not be allowed to read). */
bool wh_access_metrics_allows(const wh_access_config *ac, const char *user);

/* True when some repository pattern grants anything to anonymous requests:
 * a request without credentials then goes on, as anonymous, to be judged by
 * wh_access_allows, rather than being answered 401 at once. */
bool wh_access_anonymous_possible(const wh_access_config *ac);

/* True when some grant needs an authenticated user (policies, defaultPolicy,
 * adminPolicy): with anonymous grants too, Docker clients get a 401 on /v2/
 * to make them send credentials (Zot's Docker quirk). */
bool wh_access_needs_login(const wh_access_config *ac);

#endif
