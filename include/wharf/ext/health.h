/* Health probes, as Zot's: GET or HEAD of /livez, /readyz and /startupz is
 * answered 200 with an empty body; another method, 405. They need no
 * credentials (probes have none), but count against the rate limit as any
 * request does.
 *
 * The first module of the pipeline (module.h), and the example that
 * docs/architecture.md ("Adding a module") walks through. */
#ifndef WHARF_HEALTH_H
#define WHARF_HEALTH_H

#include "wharf/ext/module.h"

extern const wh_module wh_health_module;

#endif
