/* The web UI (extensions.ui): our own pages, plain HTML, CSS and JavaScript
 * compiled into the executable (src/ext/ui/, embedded at build time by
 * cmake/embed_assets.cmake), so the binary serves them from any working
 * directory and with nothing installed beside it.
 *
 * As Zot's UI: GET and HEAD only, no credentials needed (the pages ask for
 * them and send them on their own API calls), index.html answered for the
 * page paths (/, /home, /explore, /login, /cache, /image/..., /user/...),
 * the files themselves under /assets/<name>. The API's routes, /metrics and
 * the health probes are never the UI's: the router gives /v2/... to the
 * registry, and an exact path of another module wins over a prefix.
 *
 * Every answer, 304, 404 and 405 included, carries the security headers
 * (Content-Security-Policy without 'unsafe-inline': the pages have no inline
 * script or style; X-Frame-Options DENY; nosniff; Referrer-Policy;
 * Permissions-Policy; COOP, CORP and COEP), a strong ETag (If-None-Match:
 * 304) and Cache-Control: no-cache (revalidated at each use: a new binary's
 * files are never mixed with an old page). A file is sent gzip'ed when the
 * client accepts it and that is smaller (Vary: Accept-Encoding).
 *
 * Disabled (extensions.ui absent, or "enable": false), the paths answer the
 * pipeline's 404. */
#ifndef WHARF_UI_H
#define WHARF_UI_H

#include <stddef.h>

#include "wharf/ext/module.h"

/* One embedded file. */
typedef struct wh_ui_asset {
	const char *name;         /* its name in src/ext/ui/: "index.html", "app.js" */
	const char *content_type; /* from its extension */
	const char *etag;         /* strong and quoted: "\"<20 hex digits of sha256>\"" */
	const unsigned char *data;
	size_t size;
	const unsigned char *gzip; /* the same gzip'ed, or NULL when that saves little */
	size_t gzip_size;
} wh_ui_asset;

/* The files, in name order; the last has a NULL name. Generated. */
extern const wh_ui_asset wh_ui_assets[];

/* The file called name (a whole name: "app.js"), or NULL. */
const wh_ui_asset *wh_ui_asset_find(const char *name);

/* Its settings are extensions.ui's enable (a const bool *). */
extern const wh_module wh_ui_module;

#endif
