/* Health probes. See include/wharf/ext/health.h. */
#include "wharf/ext/health.h"

#include <string.h>

#include "wharf/oci/response.h"

static const char *const paths[] = {"/livez", "/readyz", "/startupz", NULL};

/* Called for the paths above only: the pipeline gives a module its own. */
static bool handle(void *state, wh_call *call)
{
	wh_req *req = call->req;
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		wh_oci_method_not_allowed(req);
		return true;
	}
	wh_resp_start(req, 200);
	wh_resp_length(req, 0);
	wh_resp_end(req);
	return true;
}

const wh_module wh_health_module = {
    .name = "health",
    .paths = paths,
    .open = true,
    .handle = handle,
};
