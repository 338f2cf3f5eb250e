/* Configuration: Zot's config.json, parsed with cJSON into the modules'
 * settings structs. Each module declares the keys it owns (conf.h); this
 * module puts the sections together as Zot's file lays them out, checks what
 * spans modules, and loads the file.
 *
 * Keys Wharf implements behave as in Zot. Keys Zot accepts that Wharf does
 * not implement yet are collected as warnings that name them; unknown keys,
 * wrong types, bad durations, globs, regexes and ports are errors naming the
 * key's path (`http.adress: unknown key`). Wharf's own settings live under a
 * `wharf` key of the object they belong to (`http.wharf.headerTimeout`), so
 * Zot still reads the file once those are removed. */
#ifndef WHARF_CONFIG_H
#define WHARF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wharf/base/conf.h"
#include "wharf/base/log.h"
#include "wharf/cache/sync.h"
#include "wharf/ext/access.h"
#include "wharf/ext/auth.h"
#include "wharf/ext/metrics.h"
#include "wharf/ext/ratelimit.h"
#include "wharf/ext/search.h"
#include "wharf/net/http.h"
#include "wharf/net/tls.h"
#include "wharf/store/scrub.h"
#include "wharf/store/store.h"

/* Where `wharf serve` keeps its data without a config file. */
#define WH_DEFAULT_ROOT "/var/lib/wharf"

typedef struct wh_config {
	char *path;              /* the file read, or NULL for the built-in default */
	char *dist_spec_version; /* informational */
	char *external_url;      /* http.externalURL: informational */

	/* Each module's section, with the keys the module declares. */
	wh_store_settings storage;       /* storage (store.h) */
	wh_http_settings http;           /* http.address, http.port, http.wharf (http.h) */
	wh_tls_settings tls;             /* http.tls (tls.h) */
	wh_auth_settings auth;           /* http.auth, http.realm, http.accessControl */
	wh_ratelimit_settings ratelimit; /* http.ratelimit, http.wharf.trustedProxies */
	wh_log_settings log;             /* log (log.h) */
	wh_sync_settings sync;           /* extensions.sync (sync.h, upstream.h) */
	wh_scrub_settings scrub;         /* extensions.scrub (scrub.h) */
	wh_metrics_settings metrics;     /* extensions.metrics (metrics.h) */
	wh_search_settings search;       /* extensions.search (search.h) */

	/* extensions: as in Zot, an extension whose object is present is enabled
	 * unless its "enable" is false */
	bool ui_enable;

	/* Keys Zot accepts that Wharf ignores for now, as "path" strings. */
	char **warnings;
	int n_warnings;
	/* Settings that are valid but probably not what was meant, as
	 * "path: what" strings (a registry that is never fetched, say). */
	char **notices;
	int n_notices;
} wh_config;

/* Parse JSON text. On success returns 0 and fills *out (free with
 * wh_config_free). On failure returns WH_EINVAL, leaves *out zeroed and writes
 * every problem found, one per line, each naming its key's path, into err
 * (NUL-terminated, truncated to errlen; err may be NULL). Keys match
 * case-insensitively and values are weakly typed, as in Zot (viper; see
 * wh_conf_walk); a null value is treated as an absent key. JSON syntax errors
 * give the line and column. */
int wh_config_parse(const char *json, size_t len, wh_config *out, char *err, size_t errlen);

/* The same for YAML text (base/yaml.h), as Zot reads config.yaml. */
int wh_config_parse_yaml(const char *yaml, size_t len, wh_config *out, char *err, size_t errlen);

/* Read and parse a file: YAML when its name ends in .yaml or .yml, JSON when
 * in .json, otherwise JSON if it parses as JSON, else YAML. Every line of
 * err begins with the file's path ("/etc/zot/config.json: http.adress:
 * unknown key (did you mean \"address\"?)"). Returns 0, WH_EINVAL,
 * WH_ETOOBIG (over 16 MiB) or -errno when the file cannot be read. */
int wh_config_load(const char *path, wh_config *out, char *err, size_t errlen);

/* The built-in default: the classic Zot pull-through config (Docker Hub under
 * /dockerhub, GHCR under /ghcr, on demand), on 127.0.0.1:5000, data in
 * WH_DEFAULT_ROOT. */
int wh_config_default(wh_config *out);

/* The text of the built-in default config, as JSON. */
extern const char wh_config_default_json[];

void wh_config_free(wh_config *cfg);

/* True when requests can be authenticated (htpasswd, or client certificates). */
bool wh_config_has_auth(const wh_config *cfg);

#endif
