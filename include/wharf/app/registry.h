/* The registry: the OCI Distribution API (v1.1) over the store, and, for
 * names under a sync destination, over the pull-through cache (sync.h).
 *
 * The pipeline's last module (ext/module.h): its content phase answers
 * every route of the API (oci/route.h) that the access phases let through,
 * and validates names, tags and digests before anything reaches the store.
 * It starts the catalog's scan of the root (in libuv's thread pool) when it
 * starts; catalog requests that arrive before it ends wait for it. It uses
 * the auth module's state to filter the catalog and to check a mount's
 * source, so it comes after that module in the table. */
#ifndef WHARF_REGISTRY_H
#define WHARF_REGISTRY_H

#include "wharf/ext/module.h"

extern const wh_module wh_registry_module;

#endif
