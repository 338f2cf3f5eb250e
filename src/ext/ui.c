/* The web UI. See include/wharf/ext/ui.h; the pages themselves are in
 * src/ext/ui/ and docs/architecture.md ("The web UI") says what they show. */
#include "wharf/ext/ui.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The page paths answer index.html (the page's script reads the path);
 * the files are under /assets/. */
static const char *const paths[] = {"/", "/home", "/explore", "/login", "/cache", NULL};
static const char *const prefixes[] = {"/assets/", "/image/", "/user/", NULL};

#define ASSETS "/assets/"

/* Stricter than Zot's: no 'unsafe-inline' (no inline script or style
 * anywhere), no data: images, no frames, no forms to elsewhere, and DOM
 * sinks that parse HTML are refused (the pages build nodes, never markup). */
static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self'; font-src 'self'; connect-src 'self'; "
                          "manifest-src 'self'; base-uri 'self'; form-action 'self'; "
                          "frame-ancestors 'none'; require-trusted-types-for 'script'";

static const char permissions[] = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), "
                                  "magnetometer=(), microphone=(), payment=(), usb=()";

static void security_headers(wh_req *req)
{
	wh_resp_header(req, "Content-Security-Policy", "%s", csp);
	wh_resp_header(req, "X-Frame-Options", "DENY");
	wh_resp_header(req, "X-Content-Type-Options", "nosniff");
	wh_resp_header(req, "Referrer-Policy", "same-origin");
	wh_resp_header(req, "Permissions-Policy", "%s", permissions);
	wh_resp_header(req, "Cross-Origin-Opener-Policy", "same-origin");
	wh_resp_header(req, "Cross-Origin-Resource-Policy", "same-origin");
	wh_resp_header(req, "Cross-Origin-Embedder-Policy", "require-corp");
}

static void answer_text(wh_req *req, int status, const char *body)
{
	size_t len = strlen(body);
	wh_resp_start(req, status);
	security_headers(req);
	if (status == 405)
		wh_resp_header(req, "Allow", "GET, HEAD");
	wh_resp_header(req, "Content-Type", "text/plain; charset=utf-8");
	wh_resp_header(req, "Cache-Control", "no-store");
	wh_resp_length(req, (int64_t)len);
	wh_resp_write(req, body, len);
	wh_resp_end(req);
}

const wh_ui_asset *wh_ui_asset_find(const char *name)
{
	for (const wh_ui_asset *a = wh_ui_assets; a->name; a++)
		if (strcmp(a->name, name) == 0)
			return a;
	return NULL;
}

/* The next element of a comma-separated header list: [*b, *e), trimmed;
 * false at the end. */
static bool next_item(const char **p, const char **b, const char **e)
{
	const char *s = *p;
	while (*s == ' ' || *s == '\t' || *s == ',')
		s++;
	if (!*s)
		return false;
	const char *end = strchr(s, ',');
	if (!end)
		end = s + strlen(s);
	*p = end;
	*b = s;
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*e = end;
	return true;
}

/* Accept-Encoding names gzip (or *) with a weight above zero. */
static bool accepts_gzip(const wh_req *req)
{
	const char *v = wh_req_header(req, "accept-encoding");
	const char *b, *e;
	while (v && next_item(&v, &b, &e)) {
		const char *semi = memchr(b, ';', (size_t)(e - b));
		const char *ne = semi ? semi : e;
		while (ne > b && (ne[-1] == ' ' || ne[-1] == '\t'))
			ne--;
		size_t n = (size_t)(ne - b);
		if (!((n == 4 && strncasecmp(b, "gzip", 4) == 0) || (n == 1 && *b == '*')))
			continue;
		/* q=0, q=0.0, q=0.000: refused; anything else weighs something. */
		const char *q = semi ? strstr(semi, "q=") : NULL;
		if (!q || q >= e)
			return true;
		for (q += 2; q < e && (*q == '0' || *q == '.'); q++)
			;
		if (q < e && *q >= '1' && *q <= '9')
			return true;
	}
	return false;
}

/* If-None-Match lists etag (weak comparison, as RFC 9110 says for it), or
 * is "*". */
static bool not_modified(const wh_req *req, const char *etag)
{
	const char *v = wh_req_header(req, "if-none-match");
	const char *b, *e;
	size_t n = strlen(etag);
	while (v && next_item(&v, &b, &e)) {
		if (e - b == 1 && *b == '*')
			return true;
		if (e - b > 2 && b[0] == 'W' && b[1] == '/')
			b += 2;
		if ((size_t)(e - b) == n && memcmp(b, etag, n) == 0)
			return true;
	}
	return false;
}

static void send_asset(wh_req *req, const wh_ui_asset *a)
{
	bool gz = a->gzip && accepts_gzip(req);
	char etag[64];
	if (gz) /* another representation, another strong tag: "<hex>-gz" */
		snprintf(etag, sizeof(etag), "%.*s-gz\"", (int)strlen(a->etag) - 1, a->etag);
	else
		snprintf(etag, sizeof(etag), "%s", a->etag);
	bool fresh = not_modified(req, etag);
	wh_resp_start(req, fresh ? 304 : 200);
	security_headers(req);
	wh_resp_header(req, "ETag", "%s", etag);
	/* Revalidated at each use: an upgraded binary's pages are never mixed
	 * with an old script from a cache; a revalidation is a 304. */
	wh_resp_header(req, "Cache-Control", "no-cache");
	if (a->gzip)
		wh_resp_header(req, "Vary", "Accept-Encoding");
	if (fresh) {
		wh_resp_end(req);
		return;
	}
	wh_resp_header(req, "Content-Type", "%s", a->content_type);
	if (gz)
		wh_resp_header(req, "Content-Encoding", "gzip");
	size_t len = gz ? a->gzip_size : a->size;
	wh_resp_length(req, (int64_t)len);
	wh_resp_write(req, gz ? a->gzip : a->data, len);
	wh_resp_end(req);
}

/* Called for the paths above only (the pipeline gives them to no one else). */
static bool handle(void *state, wh_call *call)
{
	wh_req *req = call->req;
	if (!state)
		return false; /* disabled: the pipeline's 404 */
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		answer_text(req, 405, "405 method not allowed\n");
		return true;
	}
	const char *path = req->path;
	const wh_ui_asset *a;
	if (strncmp(path, ASSETS, sizeof(ASSETS) - 1) == 0)
		a = wh_ui_asset_find(path + sizeof(ASSETS) - 1);
	else
		a = wh_ui_asset_find("index.html");
	if (!a)
		answer_text(req, 404, "404 page not found\n");
	else
		send_asset(req, a);
	return true;
}

static int enabled; /* the state when enabled: its address, never read */

static int module_init(const wh_module_env *env, const void *settings, void **state)
{
	const bool *enable = settings;
	*state = enable && *enable ? &enabled : NULL;
	return 0;
}

const wh_module wh_ui_module = {
    .name = "ui",
    .paths = paths,
    .prefixes = prefixes,
    .open = true,
    .init = module_init,
    .handle = handle,
};
