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

/* SIGHUP: every module's reload (the htpasswd file). Returns 0, or the
 * first error (logged; the module keeps its previous state). */
int wh_pipeline_reload(wh_pipeline *p);

/* The request handler for wh_server_start (ctx is the wh_pipeline). */
void wh_pipeline_handle(wh_req *req, void *ctx);

#endif
