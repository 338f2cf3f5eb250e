/* The registry: routes requests to the OCI Distribution API handlers, the
 * health endpoints, and (for names under a sync destination) the pull-through
 * cache. */
#ifndef WHARF_REGISTRY_H
#define WHARF_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "wharf/app/config.h"
#include "wharf/net/http.h"
#include "wharf/store/store.h"

typedef struct wh_registry wh_registry;

/* The configuration and store must outlive the registry. */
int wh_registry_new(uv_loop_t *loop, const wh_config *cfg, wh_store *store, wh_registry **out);
void wh_registry_free(wh_registry *reg);

/* Re-read what may change under a running server: the htpasswd file
 * (SIGHUP). Returns 0, or an error (logged; the previous state stays). */
int wh_registry_reload(wh_registry *reg);

/* The request handler for wh_server_start (ctx is the wh_registry): rate
 * limit, health, the access phase (auth.h), then the route's handler. */
void wh_registry_handle(wh_req *req, void *ctx);

/* Send the spec's JSON error: {"errors":[{"code":...,"message":...,"detail":...}]}.
 * detail may be NULL. */
void wh_registry_error(wh_req *req, int status, const char *code, const char *message,
                       const char *detail);

/* Start the answer to a blob GET/HEAD: 200, or 206 for [a, z] when range,
 * with the blob's headers and Content-Length; the caller sends the body (or
 * not, for HEAD) and ends. When range is set and the range cannot be
 * satisfied (a > z), answers 416 completely and returns false. */
bool wh_registry_blob_head(wh_req *req, const char *digest, int64_t size, bool range, int64_t a,
                           int64_t z);

#endif
