/* Authorization: http.accessControl with Zot's semantics (pkg/api/authz.go).
 *
 * Pure functions over the parsed configuration: no I/O, no state. The access
 * phase (auth.h) asks them once a request's user is known. */
#ifndef WHARF_ACCESS_H
#define WHARF_ACCESS_H

#include <stdbool.h>

#include "wharf/base/config.h"

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

/* True when some repository pattern grants anything to anonymous requests:
 * a request without credentials then goes on, as anonymous, to be judged by
 * wh_access_allows, rather than being answered 401 at once. */
bool wh_access_anonymous_possible(const wh_access_config *ac);

/* True when some grant needs an authenticated user (policies, defaultPolicy,
 * adminPolicy): with anonymous grants too, Docker clients get a 401 on /v2/
 * to make them send credentials (Zot's Docker quirk). */
bool wh_access_needs_login(const wh_access_config *ac);

#endif
