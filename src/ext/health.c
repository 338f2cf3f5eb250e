/* Health probes. See include/wharf/ext/health.h. */
#include "wharf/ext/health.h"

#include <string.h>

static const char *const paths[] = {"/livez", "/readyz", "/startupz", NULL};

static void answer(wh_req *req, const char *body)
{
	size_t len = strlen(body);
	wh_resp_start(req, 200);
	wh_resp_header(req, "Content-Type", "text/plain; charset=utf-8");
	wh_resp_header(req, "X-Content-Type-Options", "nosniff");
	wh_resp_length(req, (int64_t)len);
	wh_resp_write(req, body, len);
	wh_resp_end(req);
}

/* Called for the paths above only (the pipeline gives a module its own),
 * whatever the method, as Zot answers them. A process that answers is
 * live, started and ready: it starts serving only once everything is set
 * up, and on SIGTERM it closes its listener at once, so a probe then fails
 * to connect. */
static bool handle(void *state, wh_call *call)
{
	answer(call->req, "ok");
	return true;
}

const wh_module wh_health_module = {
    .name = "health",
    .paths = paths,
    .open = true,
    .handle = handle,
};
