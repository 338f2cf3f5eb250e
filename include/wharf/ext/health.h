/* Health probes, as Zot's (controller-runtime's healthz): /livez, /readyz and
 * /startupz answer any method, need no credentials (probes have none), and
 * count against the rate limit as any request does: 200 with the body "ok"
 * (text/plain). Wharf serves only once it is started and ready. On SIGTERM
 * with http.wharf.drainDelay set, it keeps serving for that long while
 * /readyz fails (500, "internal server error: not ready yet", as Zot's), so
 * a load balancer that probes it (HAProxy, Kubernetes) sends no new clients
 * before it stops listening; without a delay it stops listening at once.
 *
 * The first module of the pipeline (module.h), and the example that
 * docs/architecture.md ("Adding a module") walks through. */
#ifndef WHARF_HEALTH_H
#define WHARF_HEALTH_H

#include "wharf/ext/module.h"

extern const wh_module wh_health_module;

/* From now on /readyz fails (the process is draining). */
void wh_health_not_ready(void);

#endif
