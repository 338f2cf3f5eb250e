/* The request pipeline: every request's way from the HTTP server to an
 * answer, in phases (route, preaccess, authenticate, authorize, handle,
 * log; ext/module.h says what each does), over the modules registered in
 * one table in src/app/pipeline.c. The registry (the OCI Distribution API)
 * is the last of them.
 *
 * The pipeline also starts what the modules share: on-demand sync
 * (cache/sync.h), given to them, and periodic sync on it (cache/poll.h). */
#ifndef WHARF_PIPELINE_H
#define WHARF_PIPELINE_H

#include <uv.h>

#include "wharf/app/config.h"
#include "wharf/net/http.h"
#include "wharf/store/store.h"

typedef struct wh_pipeline wh_pipeline;

/* Start sync, the modules in the table's order, and periodic sync. The
 * configuration and store must outlive the pipeline. Returns 0, or an
 * error that has been logged (what started is stopped again). */
int wh_pipeline_new(uv_loop_t *loop, const wh_config *cfg, wh_store *store, wh_pipeline **out);

/* Stop periodic sync, the modules (in reverse order), then sync, whose
 * fetches in flight are cancelled. Call it once no request is left (the
 * server's shutdown is done). NULL is a no-op. */
void wh_pipeline_free(wh_pipeline *p);

/* SIGHUP: cfg (a configuration read again, NULL for the same one) from
 * now on: each module's reload with its section (the htpasswd file re-read,
 * access control, rate limits), sync's registries and rules (periodic sync
 * starts over), the GC's and the budget's settings. The old configuration
 * must outlive the pipeline too (requests and fetches in flight point into
 * it). Returns 0, or the first error (logged; that part keeps its previous
 * settings). */
int wh_pipeline_reload(wh_pipeline *p, const wh_config *cfg);

/* The request handler for wh_server_start (ctx is the wh_pipeline). */
void wh_pipeline_handle(wh_req *req, void *ctx);

#endif
