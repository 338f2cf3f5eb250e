/* The request pipeline: the modules' table, and every request's way through
 * the phases. See include/wharf/app/pipeline.h and include/wharf/ext/module.h.
 *
 * A request's state is a struct pcall in the request's own memory
 * (wh_req_alloc): the route, the user, and where in the phases it is, so a
 * phase that holds it (a password checked in the thread pool) resumes it
 * where it stopped, and the route is parsed once. */
#include "wharf/app/pipeline.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/app/registry.h"
#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/cache/poll.h"
#include "wharf/cache/sync.h"
#include "wharf/ext/auth.h"
#include "wharf/ext/health.h"
#include "wharf/ext/metrics.h"
#include "wharf/ext/mgmt.h"
#include "wharf/ext/module.h"
#include "wharf/ext/ratelimit.h"
#include "wharf/ext/search.h"
#include "wharf/ext/ui.h"
#include "wharf/oci/response.h"
#include "wharf/store/gc.h"
#include "wharf/store/scrub.h"

/* The modules, in the order their functions run within a phase (and start),
 * each with its section of the configuration (its init's settings).
 * Adding one is a file and a line here: docs/architecture.md says how. */
#define NO_SETTINGS SIZE_MAX
#define SETTINGS(m) offsetof(wh_config, m)

static const struct registration {
	const wh_module *m;
	size_t settings; /* offset of the module's section in wh_config, or NO_SETTINGS */
} modules[] = {
    {&wh_health_module, NO_SETTINGS},            /* /livez, /readyz, /startupz, open */
    {&wh_auth_module, SETTINGS(auth)},           /* authenticate, authorize */
    {&wh_ratelimit_module, SETTINGS(ratelimit)}, /* preaccess */
    {&wh_search_module, SETTINGS(search)},       /* GraphQL search, discovery; uses auth's */
    {&wh_mgmt_module, SETTINGS(search)},         /* zui's config, open; uses auth's */
    {&wh_registry_module, NO_SETTINGS},          /* the OCI API; uses auth's state */
    {&wh_metrics_module, SETTINGS(metrics)},     /* the metrics, the status page; log */
    {&wh_ui_module, SETTINGS(ui_enable)},        /* /, /assets/..., the pages; open */
};

#define N_MODULES ((int)WH_ARRAY_SIZE(modules))

enum phase { PH_PREACCESS, PH_AUTHENTICATE, PH_AUTHORIZE, PH_HANDLE };

struct wh_pipeline {
	uv_loop_t *loop;
	const wh_config *cfg;
	wh_store *store;
	wh_sync *sync;   /* NULL without on-demand sync */
	wh_poll *poll;   /* NULL without periodic sync */
	wh_gc *gc;       /* collection, retention, the cache budget */
	wh_scrub *scrub; /* NULL without extensions.scrub */
	wh_module_env env;
	void *state[WH_ARRAY_SIZE(modules)];
	int started;  /* modules whose init ran (and succeeded) */
	bool has_log; /* some module has a log phase */
};

/* One request's way through the phases, in its memory (wh_req_alloc). */
struct pcall {
	wh_call call; /* first: the modules see this */
	wh_pipeline *p;
	enum phase phase;
	int next; /* the module whose function of the phase runs next */
	bool action_known;
	wh_req_hook log;
};

static wh_phase_rc (*phase_fn(const wh_module *m, enum phase ph))(void *, wh_call *)
{
	switch (ph) {
	case PH_PREACCESS:
		return m->preaccess;
	case PH_AUTHENTICATE:
		return m->authenticate;
	case PH_AUTHORIZE:
		return m->authorize;
	default:
		return NULL;
	}
}

/* A manifest PUT under a tag that exists (the URL's, or a ?tag=) updates it; under a new tag (or a
 * digest), it creates: access control tells them apart. The route cannot
 * (it has no store); the name is not validated yet: the store sees only one
 * that is. */
static void decide_action(wh_pipeline *p, wh_call *call)
{
	wh_route *r = &call->route;
	if (r->kind != WH_ROUTE_MANIFEST || strcmp(call->req->method, "PUT") != 0 ||
	    !wh_name_storable(r->name))
		return;
	/* The URL's tag, and each ?tag= of the push (one that moves an
	 * existing tag is an update as much as a push by that tag). */
	int n = wh_req_query_count(call->req, "tag");
	for (int i = -1; i < n && r->action != WH_ACTION_UPDATE; i++) {
		char tag[WH_TAG_MAX + 2];
		const char *t =
		    i < 0 ? r->ref : wh_req_query_nth(call->req, "tag", i, tag, sizeof(tag));
		size_t tl = t ? strlen(t) : 0;
		if (!t || !wh_tag_valid(t, tl) || wh_ref_is_digest(t, tl))
			continue;
		char digest[WH_DIGEST_LEN + 1];
		char *mt = NULL;
		int64_t size;
		if (wh_store_manifest_stat(p->store, r->name, t, digest, &mt, &size) == 0)
			r->action = WH_ACTION_UPDATE;
		free(mt);
	}
}

/* The content phase: the owner of the path, or else each module in turn. */
static void handle(struct pcall *pc)
{
	wh_pipeline *p = pc->p;
	wh_call *call = &pc->call;
	for (int i = 0; i < N_MODULES; i++) {
		const wh_module *m = modules[i].m;
		/* A module that lists paths answers those only. */
		if (!m->handle ||
		    (call->owner ? call->owner != m : m->paths != NULL || m->prefixes != NULL))
			continue;
		if (m->handle(p->state[i], call))
			return;
	}
	wh_oci_error(call->req, 404, "UNSUPPORTED", "no such route", NULL);
}

/* Run the phases from where pc is; returns when one answers or holds the
 * request, or after the content phase. */
static void run(struct pcall *pc)
{
	wh_pipeline *p = pc->p;
	wh_call *call = &pc->call;
	bool open = call->owner && call->owner->open;
	for (; pc->phase < PH_HANDLE; pc->phase++, pc->next = 0) {
		if (pc->phase == PH_AUTHENTICATE && !pc->action_known) {
			/* After preaccess: a refused request costs no store read. */
			pc->action_known = true;
			decide_action(p, call);
		}
		if (open && (pc->phase == PH_AUTHENTICATE || pc->phase == PH_AUTHORIZE))
			continue;
		while (pc->next < N_MODULES) {
			int i = pc->next++;
			wh_phase_rc (*fn)(void *, wh_call *) = phase_fn(modules[i].m, pc->phase);
			if (!fn)
				continue;
			wh_phase_rc rc = fn(p->state[i], call);
			if (rc == WH_PHASE_WAIT) {
				/* Whether the body is wanted is the handler's to say,
				 * once the request goes on: keep it till then. */
				wh_req_hold_body(call->req);
				return;
			}
			if (rc != WH_PHASE_NEXT)
				return; /* answered */
		}
	}
	handle(pc);
}

static void resume(wh_call *call)
{
	run(WH_CONTAINER_OF(call, struct pcall, call));
}

/* The log phase: the request is over. */
static void log_phase(wh_req *req, wh_req_hook *hook)
{
	struct pcall *pc = WH_CONTAINER_OF(hook, struct pcall, log);
	for (int i = 0; i < N_MODULES; i++)
		if (modules[i].m->log)
			modules[i].m->log(pc->p->state[i], &pc->call);
}

/* The module that lists the path as its own, or one of its prefixes, or
 * NULL. An exact path wins: /metrics stays the metrics module's whatever
 * prefix another lists. */
static const wh_module *owner_of(const char *path)
{
	for (int i = 0; i < N_MODULES; i++)
		for (const char *const *q = modules[i].m->paths; q && *q; q++)
			if (strcmp(*q, path) == 0)
				return modules[i].m;
	for (int i = 0; i < N_MODULES; i++)
		for (const char *const *q = modules[i].m->prefixes; q && *q; q++)
			if (strncmp(*q, path, strlen(*q)) == 0)
				return modules[i].m;
	return NULL;
}

void wh_pipeline_handle(wh_req *req, void *ctx)
{
	wh_pipeline *p = ctx;
	struct pcall *pc = wh_req_alloc(req, sizeof(*pc));
	pc->p = p;
	pc->call.req = req;
	pc->call.resume = resume;
	if (p->has_log)
		wh_req_on_done(req, &pc->log, log_phase); /* first in, so it runs last */
	/* The route phase. */
	wh_route_parse(req->method, req->path, &pc->call.route);
	if (pc->call.route.kind == WH_ROUTE_NONE)
		pc->call.owner = owner_of(req->path);
	run(pc);
}

/* ---- life ---- */

static void *state_of(const wh_module_env *env, const wh_module *m)
{
	const wh_pipeline *p = env->priv;
	for (int i = 0; i < p->started; i++)
		if (modules[i].m == m)
			return p->state[i];
	return NULL;
}

/* A fill that found the disk full asks the cache budget to evict. */
static int make_room(void *arg, int64_t bytes, void (*done)(void *done_arg, int rc), void *done_arg)
{
	wh_gc_make_room(arg, bytes, done, done_arg);
	return 0;
}

int wh_pipeline_new(uv_loop_t *loop, const wh_config *cfg, wh_store *store, wh_pipeline **out)
{
	*out = NULL;
	wh_pipeline *p = wh_calloc(1, sizeof(*p));
	p->loop = loop;
	p->cfg = cfg;
	p->store = store;
	char err[512];
	int rc = wh_sync_new(loop, &cfg->sync, store, &p->sync, err, sizeof(err));
	if (rc != 0) {
		wh_log(WH_LOG_ERROR, "cannot start sync", "error", WH_LS, err, NULL);
		free(p);
		return rc;
	}
	/* The GC before the modules: the metrics read its counters. */
	wh_gc_start(loop, store, &cfg->storage, &p->gc);
	p->env = (wh_module_env){loop, store, p->sync, p->gc, state_of, p};
	for (int i = 0; i < N_MODULES; i++) {
		const struct registration *r = &modules[i];
		const void *settings =
		    r->settings == NO_SETTINGS ? NULL : (const char *)cfg + r->settings;
		rc = r->m->init ? r->m->init(&p->env, settings, &p->state[i]) : 0;
		if (rc != 0) {
			wh_pipeline_free(p);
			return rc;
		}
		p->started++;
		p->has_log |= modules[i].m->log != NULL;
	}
	if (p->sync)
		p->poll = wh_poll_new(loop, &cfg->sync, p->sync);
	if (p->sync)
		wh_sync_set_make_room(p->sync, make_room, p->gc);
	/* The scrubber's thread, last. The store's metadata says which images
	 * came through the cache (moved aside when corrupt, fetched again). */
	if (cfg->scrub.enable &&
	    wh_scrub_start(store, &cfg->scrub, wh_store_cached, store, &p->scrub) != 0) {
		wh_pipeline_free(p);
		return WH_EIO;
	}
	*out = p;
	return 0;
}

void wh_pipeline_free(wh_pipeline *p)
{
	if (!p)
		return;
	/* The scrubber first: it touches the store alone, and stops between
	 * two reads. Then periodic sync: its callbacks wait on sync's fetches. */
	wh_scrub_stop(p->scrub);
	wh_poll_free(p->poll);
	wh_gc_stop(p->gc);
	for (int i = p->started - 1; i >= 0; i--)
		if (modules[i].m->free)
			modules[i].m->free(p->state[i]);
	wh_sync_free(p->sync);
	free(p);
}

int wh_pipeline_reload(wh_pipeline *p, const wh_config *cfg)
{
	int first = 0;
	if (!cfg)
		cfg = p->cfg;
	for (int i = 0; i < p->started; i++) {
		const struct registration *r = &modules[i];
		const void *settings =
		    r->settings == NO_SETTINGS ? NULL : (const char *)cfg + r->settings;
		int rc = r->m->reload ? r->m->reload(p->state[i], settings) : 0;
		if (rc != 0 && first == 0)
			first = rc;
	}
	if (cfg != p->cfg) {
		char err[512];
		/* Sync's registries and rules; periodic sync starts over with
		 * them (its runs in flight end, their fetches go on). */
		if (p->sync) {
			int rc = wh_sync_reload(p->sync, &cfg->sync, err, sizeof(err));
			if (rc != 0) {
				wh_log(WH_LOG_ERROR, "SIGHUP: sync settings not reloaded", "error",
				       WH_LS, err, NULL);
				if (first == 0)
					first = rc;
			} else {
				wh_poll_free(p->poll);
				p->poll = wh_poll_new(p->loop, &cfg->sync, p->sync);
			}
		}
		wh_gc_reload(p->gc, &cfg->storage);
		p->cfg = cfg;
	}
	return first;
}
