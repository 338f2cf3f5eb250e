/* Health probes. See include/wharf/ext/health.h. */
#include "wharf/ext/health.h"

#include <string.h>

static const char *const paths[] = {"/livez", "/readyz", "/startupz", NULL};

/* One process serves one loop: a flag is all the state there is. */
static bool draining;

void wh_health_not_ready(void)
{
	draining = true;
}

static void answer(wh_req *req, int status, const char *body)
{
	size_t len = strlen(body);
	wh_resp_start(req, status);
	wh_resp_header(req, "Content-Type", "text/plain; charset=utf-8");
	wh_resp_header(req, "X-Content-Type-Options", "nosniff");
	wh_resp_length(req, (int64_t)len);
	wh_resp_write(req, body, len);
	wh_resp_end(req);
}

/* Called for the paths above only (the pipeline gives a module its own),
 * whatever the method, as Zot answers them. A process that answers is live
 * and started (it serves only once everything is set up), and ready unless
 * it is draining. */
static bool handle(void *state, wh_call *call)
{
	if (draining && strcmp(call->req->path, "/readyz") == 0)
		answer(call->req, 500, "internal server error: not ready yet\n");
	else
		answer(call->req, 200, "ok");
	return true;
}

const wh_module wh_health_module = {
    .name = "health",
    .paths = paths,
    .open = true,
    .handle = handle,
};
