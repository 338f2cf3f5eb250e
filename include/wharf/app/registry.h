/* The registry: routes requests to the OCI Distribution API handlers, the
 * health endpoints, and (for names under a sync destination) the pull-through
 * cache (sync.h). */
#ifndef WHARF_REGISTRY_H
#define WHARF_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wharf/app/config.h"
#include "wharf/cache/sync.h"
#include "wharf/net/http.h"
#include "wharf/store/store.h"

typedef struct wh_registry wh_registry;

/* sync is NULL without on-demand sync. The configuration, store and sync
 * must outlive the registry. */
int wh_registry_new(uv_loop_t *loop, const wh_config *cfg, wh_store *store, wh_sync *sync,
                    wh_registry **out);
void wh_registry_free(wh_registry *reg);

/* Re-read what may change under a running server: the htpasswd file
 * (SIGHUP). Returns 0, or an error (logged; the previous state stays). */
int wh_registry_reload(wh_registry *reg);

/* The request handler for wh_server_start (ctx is the wh_registry): rate
 * limit, health, the access phase (auth.h), then the route's handler. */
void wh_registry_handle(wh_req *req, void *ctx);

#endif
