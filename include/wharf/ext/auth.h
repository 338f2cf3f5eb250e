/* The access phase: who is asking (http.auth.htpasswd, Basic credentials)
 * and whether they may (http.accessControl, through access.h). As nginx's
 * auth_basic: one handler that runs for every request before the content
 * handlers, and either lets the request go on or answers it.
 *
 * Password hashes (bcrypt, SHA-crypt) are slow by design, so they are
 * checked in libuv's thread pool, never on the loop; a verification that
 * succeeded is remembered for a short while (user + a salted hash of the
 * password), and requests with the same credentials that arrive while one
 * is being checked wait for it: a pull of twenty layers costs one bcrypt.
 *
 * Answers, as Zot's (docs: /work/shared/specs/zot-reference.md §2-§3):
 *   - bad or unknown credentials, or none where nothing is open to anonymous
 *     requests: 401, {"code":"UNAUTHORIZED",...} with
 *     WWW-Authenticate: Basic realm="<http.realm>";
 *   - not allowed, anonymous: 401 {"errors":[{"code":"UNAUTHORIZED",...}]};
 *   - not allowed, authenticated: 403 {"errors":[{"code":"DENIED",...}]};
 *   both with the same WWW-Authenticate. http.auth.failDelay holds the 401 of
 *   a request that carried credentials, and every 403/authorization 401, on
 *   a timer: the loop goes on serving others meanwhile. */
#ifndef WHARF_AUTH_H
#define WHARF_AUTH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wharf/base/conf.h"
#include "wharf/ext/access.h"
#include "wharf/net/http.h"

typedef struct wh_auth wh_auth;

/* http.auth (what Wharf implements of it; the rest is refused by name) and
 * http.realm. */
typedef struct wh_auth_settings {
	char *realm;
	char *htpasswd_path; /* http.auth.htpasswd.path; NULL or "": no htpasswd */
	int fail_delay_s;    /* http.auth.failDelay */
} wh_auth_settings;

extern const wh_conf_key wh_auth_keys[];      /* http.auth */
extern const wh_conf_key wh_auth_http_keys[]; /* http.realm */
void wh_auth_settings_free(wh_auth_settings *s);

/* The request may go on. user is the authenticated user, NULL for an
 * anonymous request; it is valid only during the call (copy it to keep it).
 * Called either from within wh_auth_check or later from the loop; in the
 * second case req->data and req->on_done have been reset to NULL first. */
typedef void (*wh_auth_next)(wh_req *req, void *arg, const char *user);

/* Read the htpasswd file if one is configured. mtls: a verified client
 * certificate's CN is a user (http.tls with a cacert). The settings must
 * outlive the module. Returns 0, or an error (a missing or unreadable file: the
 * reason is logged) — a server asked to check passwords does not start
 * without them. */
int wh_auth_new(uv_loop_t *loop, const wh_auth_settings *cfg, const wh_access_config *access,
                bool mtls, wh_auth **out);

/* Verifications still in the thread pool end later without touching it. */
void wh_auth_free(wh_auth *a);

/* Re-read the htpasswd file (SIGHUP). On failure the users already loaded
 * stay, and the reason is logged. Forgets every remembered verification. */
int wh_auth_reload(wh_auth *a);

/* The access phase for req, which asks to do action (WH_ACTION_*) on repo;
 * repo is NULL for requests about no repository (/v2/, the catalog): those
 * need only authentication. Calls next, or answers req itself. req must not
 * have data or on_done set: the phase uses them while it waits. */
void wh_auth_check(wh_auth *a, wh_req *req, const char *repo, unsigned action, wh_auth_next next,
                   void *arg);

/* The same rule as the phase, for lists: may user (NULL: anonymous) do
 * action on repo. True for everything without access control. */
bool wh_auth_may(const wh_auth *a, const char *user, const char *repo, unsigned action);

/* True when access control is configured: the catalog must be filtered. */
bool wh_auth_filters(const wh_auth *a);

/* Add what Zot adds to a 200 on /v2/ when authentication is configured
 * (WWW-Authenticate: basic realm=<realm>), so clients that were let in as
 * anonymous still learn that they could log in. Nothing otherwise. */
void wh_auth_base_headers(const wh_auth *a, wh_req *req);

/* Password hashes computed so far (verifications that missed the cache). */
uint64_t wh_auth_verifications(const wh_auth *a);

#endif
