/* Modules of the request pipeline (app/pipeline.c). As nginx's: a module is
 * one file that defines a `const wh_module` naming its functions, and one
 * line in the pipeline's table (src/app/pipeline.c) registers it; the
 * pipeline calls its functions, it never calls the pipeline back but to
 * resume a request it held (wh_call_resume).
 *
 * Every request goes through the phases in this order; within a phase, the
 * modules' functions run in the table's order, and a function that answers
 * the request ends the phases (the log phase still runs):
 *
 *   route         the OCI router (oci/route.h) parses method and path, once;
 *                 a path that is no route of the API and that a module lists
 *                 in `paths`, or that starts with one of its `prefixes`, is
 *                 that module's (call->owner): exact paths first, then
 *                 prefixes, each in the table's order;
 *   preaccess     every request (a rate limit refuses here, before anything
 *                 costs more);
 *   authenticate  who asks: sets call->user (NULL: anonymous); skipped for a
 *                 path whose owner is `open` (health probes carry no
 *                 credentials);
 *   authorize     may they: call->route.action on call->route.name; skipped
 *                 likewise. Nothing of the request has run yet: no store
 *                 read, no upstream fetch happens for a request refused here;
 *   handle        the content: the owner's handle, or else, in order until
 *                 one answers, each module's that lists no paths;
 *   log           once the request is over (its answer sent, or the client
 *                 gone): every module's, whatever happened before.
 *
 * The functions run on the loop; none may block. */
#ifndef WHARF_MODULE_H
#define WHARF_MODULE_H

#include <stdbool.h>
#include <uv.h>

#include "wharf/net/http.h"
#include "wharf/oci/route.h"
#include "wharf/store/gc.h"
#include "wharf/store/store.h"

typedef struct wh_sync wh_sync; /* cache/sync.h */
typedef struct wh_module wh_module;
typedef struct wh_call wh_call;

/* What a phase function did. */
typedef enum wh_phase_rc {
	WH_PHASE_NEXT, /* go on: the next module, or the next phase */
	WH_PHASE_DONE, /* it answered the request (or will, itself: a delayed denial) */
	WH_PHASE_WAIT, /* it holds the request and calls wh_call_resume later (or answers) */
} wh_phase_rc;

/* One request on its way through the phases. It lives as long as the
 * request (wh_req_alloc); what a module sets in it must too (take it from
 * wh_req_alloc). */
struct wh_call {
	wh_req *req;
	wh_route route;         /* the route phase's result */
	const wh_module *owner; /* the module whose `paths` hold the path, or NULL */
	const char *user;       /* after authenticate: the user; NULL: anonymous */
	/* Private to the pipeline. */
	void (*resume)(wh_call *call);
};

/* Go on with a request held by WH_PHASE_WAIT, from the loop (not from
 * within the phase function that returned WAIT): the next module of the
 * phase, or the next phase. Not after the request is over: a module
 * holding a request detaches itself in a done hook (http.h). */
static inline void wh_call_resume(wh_call *call)
{
	call->resume(call);
}

/* What a module is given when the server starts. Everything outlives the
 * module. */
typedef struct wh_module_env {
	uv_loop_t *loop;
	wh_store *store;
	wh_sync *sync; /* NULL without on-demand sync */
	wh_gc *gc;     /* collection, retention, the cache budget */
	/* The state of a module started before this one in the table (what its
	 * init set), or NULL when there is none such. */
	void *(*state_of)(const struct wh_module_env *env, const wh_module *m);
	void *priv; /* the pipeline's */
} wh_module_env;

struct wh_module {
	const char *name;
	/* Exact paths the module answers (NULL-terminated list), or NULL;
	 * prefixes: the paths under these (each ends in '/'; NULL-terminated),
	 * or NULL. An exact path of any module wins over a prefix. open: they
	 * need no credentials (authenticate and authorize are skipped for
	 * them). */
	const char *const *paths;
	const char *const *prefixes;
	bool open;
	/* Its paths are the metrics' (extensions.metrics, the status page):
	 * authorize (auth.h) lets through only who http.accessControl.metrics
	 * allows (access.h: wh_access_metrics_allows). */
	bool metrics_access;

	/* Start: set *state (may stay NULL). settings is the module's section
	 * of the configuration (the settings struct its header declares), as
	 * its line in the pipeline's table names it, or NULL. Returns 0, or an
	 * error that has been logged (the server does not start). */
	int (*init)(const wh_module_env *env, const void *settings, void **state);
	/* Stop; requests are gone by then. */
	void (*free)(void *state);
	/* SIGHUP: settings is the module's section of the configuration read
	 * again (as init's; the new one outlives the module, and so does the
	 * old one: requests in flight may still point into it); take it and
	 * re-read what may change under a running server. Returns 0, or an
	 * error (logged; the previous state stays). */
	int (*reload)(void *state, const void *settings);

	/* Phases, each optional (NULL: nothing to do). */
	wh_phase_rc (*preaccess)(void *state, wh_call *call);
	wh_phase_rc (*authenticate)(void *state, wh_call *call);
	wh_phase_rc (*authorize)(void *state, wh_call *call);
	/* Content: true when it answered (or will, from a later event). */
	bool (*handle)(void *state, wh_call *call);
	/* The request is over: wh_resp_status(call->req) is what was answered
	 * (0: nothing; the client left first). */
	void (*log)(void *state, wh_call *call);
};

#endif
