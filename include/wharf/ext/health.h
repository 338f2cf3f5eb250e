/* Health probes, as Zot's (controller-runtime's healthz): /livez, /readyz and
 * /startupz answer any method, need no credentials (probes have none), and
 * count against the rate limit as any request does: 200 with the body "ok"
 * (text/plain). Wharf serves only once it is started and ready, and stops
 * listening at once on SIGTERM, so each passes whenever it can be asked
 * (Zot's 500 "not ready yet" has no moment to be sent).
 *
 * The first module of the pipeline (module.h), and the example that
 * docs/architecture.md ("Adding a module") walks through. */
#ifndef WHARF_HEALTH_H
#define WHARF_HEALTH_H

#include "wharf/ext/module.h"

extern const wh_module wh_health_module;

#endif
