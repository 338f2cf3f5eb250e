/* The access phases: who is asking (http.auth.htpasswd, Basic credentials,
 * or a verified client certificate) and whether they may
 * (http.accessControl, through access.h). As nginx's auth_basic: a module
 * of the pipeline (module.h) whose authenticate and authorize phases run
 * for every request before the content handlers, and either let the
 * request go on or answer it.
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
#include "wharf/ext/module.h"
#include "wharf/net/http.h"

typedef struct wh_auth wh_auth;

/* http.auth (what Wharf implements of it; the rest is refused by name),
 * http.realm and http.accessControl: the module's settings. */
typedef struct wh_auth_settings {
	char *realm;
	char *htpasswd_path; /* http.auth.htpasswd.path; NULL or "": no htpasswd */
	int fail_delay_s;    /* http.auth.failDelay */
	wh_access_config access;
	/* http.tls with a cacert: a verified client certificate's CN is a user
	 * (set by the config's checks, from http.tls). */
	bool mtls;
	/* An authentication Wharf refuses was asked for (ldap, bearer, openid,
	 * mtls; apikey: true): the config is invalid for that, but it does not
	 * lack authentication, as Zot's access-control check would say. */
	bool refused_authn;
	bool apikey;
} wh_auth_settings;

extern const wh_conf_key wh_auth_keys[];      /* http.auth */
extern const wh_conf_key wh_auth_http_keys[]; /* http.realm */
void wh_auth_settings_free(wh_auth_settings *s);

/* The pipeline's module. Its state (wh_module_env.state_of) is the
 * wh_auth. authenticate sets call->user, at once, or later from the loop
 * when a password is checked in the thread pool (the phase waits); it
 * answers 401 for bad or missing credentials. authorize lets through
 * requests about no repository (call->route names none) and those access
 * control allows (call->route.action on call->route.name), and answers the
 * others. */
extern const wh_module wh_auth_module;

/* Read the htpasswd file if one is configured. The settings must outlive
 * the module. Returns 0, or an error (a missing or unreadable file: the
 * reason is logged) — a server asked to check passwords does not start
 * without them. */
int wh_auth_new(uv_loop_t *loop, const wh_auth_settings *cfg, wh_auth **out);

/* Verifications still in the thread pool end later without touching it. */
void wh_auth_free(wh_auth *a);

/* SIGHUP: the settings cfg from now on (NULL: the same ones; cfg must
 * outlive the module), and the htpasswd file read again. On failure
 * nothing changes (the users already loaded stay, under the old settings)
 * and the reason is logged. Forgets every remembered verification. */
int wh_auth_reload(wh_auth *a, const wh_auth_settings *cfg);

/* The same rule as the phase, for lists: may user (NULL: anonymous) do
 * action on repo. True for everything without access control. */
bool wh_auth_may(const wh_auth *a, const char *user, const char *repo, unsigned action);

/* True when access control is configured: the catalog must be filtered. */
bool wh_auth_filters(const wh_auth *a);

/* True when users log in with a password (http.auth.htpasswd). */
bool wh_auth_passwords(const wh_auth *a);

/* Add what Zot adds to a 200 on /v2/ when authentication is configured
 * (WWW-Authenticate: basic realm=<realm>), so clients that were let in as
 * anonymous still learn that they could log in. Nothing otherwise. */
void wh_auth_base_headers(const wh_auth *a, wh_req *req);

/* Password hashes computed so far (verifications that missed the cache). */
uint64_t wh_auth_verifications(const wh_auth *a);

/* Requests the access phases refused, for metrics. */
typedef struct wh_auth_stats {
	uint64_t bad_credentials; /* 401: malformed, unknown user, wrong password */
	uint64_t no_credentials;  /* 401: none sent where they are needed (a login's challenge) */
	uint64_t denied;          /* access control refused (403, or 401 to anonymous) */
} wh_auth_stats;
void wh_auth_get_stats(const wh_auth *a, wh_auth_stats *out);

#endif
