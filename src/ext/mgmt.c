/* The mgmt endpoint. See include/wharf/ext/mgmt.h. */
#include "wharf/ext/mgmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"
#include "wharf/ext/auth.h"
#include "wharf/ext/search.h"

#define DIST_SPEC_VERSION "1.1.1" /* the distribution spec Wharf follows */

static const char *const paths[] = {"/v2/_zot/ext/mgmt", NULL};

/* The answer never changes while the server runs: made once. */
struct mgmt {
	char body[512];
	size_t len;
};

static int module_init(const wh_module_env *env, const void *settings, void **state)
{
	const wh_search_settings *cfg = settings;
	*state = NULL;
	if (!cfg || !cfg->enable)
		return 0;
	const wh_auth *auth = env->state_of(env, &wh_auth_module);
	const char *dsv = cfg->dist_spec_version && *cfg->dist_spec_version &&
	                          strlen(cfg->dist_spec_version) < 64 &&
	                          !strpbrk(cfg->dist_spec_version, "\"\\")
	                      ? cfg->dist_spec_version
	                      : DIST_SPEC_VERSION;
	struct mgmt *m = wh_calloc(1, sizeof(*m));
	int n = snprintf(m->body, sizeof(m->body),
	                 "{\"distSpecVersion\":\"%s\",\"commit\":\"\",\"releaseTag\":\"v%s\","
	                 "\"binaryType\":\"\",\"http\":{\"auth\":{%s}}}",
	                 dsv, WHARF_VERSION, wh_auth_passwords(auth) ? "\"htpasswd\":{}" : "");
	m->len = (size_t)n;
	*state = m;
	return 0;
}

static void module_free(void *state)
{
	free(state);
}

static bool handle(void *state, wh_call *call)
{
	const struct mgmt *m = state;
	wh_req *req = call->req;
	if (!m)
		return false; /* search is not enabled: no such route */
	if (strcmp(req->method, "GET") != 0) {
		wh_resp_start(req, 405);
		wh_resp_header(req, "Allow", "GET");
		wh_resp_length(req, 0);
		wh_resp_end(req);
		return true;
	}
	wh_resp_start(req, 200);
	wh_resp_header(req, "Content-Type", "application/json");
	wh_resp_length(req, (int64_t)m->len);
	wh_resp_write(req, m->body, m->len);
	wh_resp_end(req);
	return true;
}

const wh_module wh_mgmt_module = {
    .name = "mgmt",
    .paths = paths,
    .open = true,
    .init = module_init,
    .free = module_free,
    .handle = handle,
};
