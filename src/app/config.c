/* The configuration file (config.h): Zot's layout put together from the
 * modules' key tables (conf.h), the checks that span modules, the built-in
 * default, loading.
 *
 * The tables follow Zot's Go structs (pkg/api/config, pkg/extensions/config):
 * a key Zot accepts is not an error here unless Wharf refuses it (a
 * security key it does not implement, a remote storageDriver, subPaths: the
 * config would not do what it says); any other key Wharf does not implement
 * is added to cfg->warnings and its subtree is accepted as it is.
 * Zot reads the file through viper, which matches keys case-insensitively and
 * turns null into the zero value, with a weakly typed decoder ("gc": "true",
 * "port": 8080, a single value for a list); the engine (conf.h) does the
 * same. Zot's own examples/ are the test of it
 * (tests/integration/zot_examples/). */
#include "wharf/app/config.h"
#include "wharf/base/common.h"
#include "wharf/base/yaml.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FILE_BYTES (16u << 20)

const char wh_config_default_json[] = "{\n"
                                      "  \"distSpecVersion\": \"1.0.1\",\n"
                                      "  \"storage\": {\n"
                                      "    \"rootDirectory\": \"" WH_DEFAULT_ROOT "\",\n"
                                      "    \"gc\": true,\n"
                                      "    \"dedupe\": true\n"
                                      "  },\n"
                                      "  \"http\": {\n"
                                      "    \"address\": \"127.0.0.1\",\n"
                                      "    \"port\": \"5000\"\n"
                                      "  },\n"
                                      "  \"log\": {\n"
                                      "    \"level\": \"info\"\n"
                                      "  },\n"
                                      "  \"extensions\": {\n"
                                      "    \"search\": {\n"
                                      "      \"enable\": true\n"
                                      "    },\n"
                                      "    \"ui\": {\n"
                                      "      \"enable\": true\n"
                                      "    },\n"
                                      "    \"sync\": {\n"
                                      "      \"enable\": true,\n"
                                      "      \"registries\": [\n"
                                      "        {\n"
                                      "          \"urls\": [\n"
                                      "            \"https://index.docker.io\"\n"
                                      "          ],\n"
                                      "          \"content\": [\n"
                                      "            {\n"
                                      "              \"prefix\": \"**\",\n"
                                      "              \"destination\": \"/dockerhub\"\n"
                                      "            }\n"
                                      "          ],\n"
                                      "          \"onDemand\": true,\n"
                                      "          \"tlsVerify\": true\n"
                                      "        },\n"
                                      "        {\n"
                                      "          \"urls\": [\n"
                                      "            \"https://ghcr.io\"\n"
                                      "          ],\n"
                                      "          \"content\": [\n"
                                      "            {\n"
                                      "              \"prefix\": \"**\",\n"
                                      "              \"destination\": \"/ghcr\"\n"
                                      "            }\n"
                                      "          ],\n"
                                      "          \"onDemand\": true,\n"
                                      "          \"tlsVerify\": true\n"
                                      "        }\n"
                                      "      ]\n"
                                      "    }\n"
                                      "  }\n"
                                      "}\n";

/* ---- the file's layout: each module's keys where Zot puts them ---- */

#define CFG(m) offsetof(wh_config, m)

/* http.wharf holds the server's limits and the rate limiter's proxies. */
static const wh_conf_key http_wharf_keys[] = {
    WH_CONF_INLINED(wh_http_wharf_keys, CFG(http)),
    WH_CONF_INLINED(wh_ratelimit_wharf_keys, CFG(ratelimit)),
    WH_CONF_END,
};

static const wh_conf_key http_keys[] = {
    WH_CONF_INLINED(wh_http_keys, CFG(http)),
    WH_CONF_INLINED(wh_auth_http_keys, CFG(auth)),
    WH_CONF_KEY("externalURL", WH_CONF_STRING, 0, CFG(external_url)),
    WH_CONF_SUB("wharf", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, http_wharf_keys),
    WH_CONF_SUB("tls", WH_CONF_SECTION, 0, CFG(tls), wh_tls_keys),
    WH_CONF_SUB("auth", WH_CONF_SECTION, 0, CFG(auth), wh_auth_keys),
    WH_CONF_FN("accessControl", CFG(auth.access), wh_access_conf),
    WH_CONF_SUB("ratelimit", WH_CONF_SECTION, 0, CFG(ratelimit), wh_ratelimit_keys),
    WH_CONF_IGNORED("allowOrigin", WH_CONF_WARN),
    WH_CONF_IGNORED("compat", WH_CONF_WARN),
    /* Wharf's own timeouts are under http.wharf. */
    WH_CONF_IGNORED("readTimeout", WH_CONF_WARN),
    WH_CONF_IGNORED("writeTimeout", WH_CONF_WARN),
    WH_CONF_END,
};

static const wh_conf_key ui_keys[] = {
    WH_CONF_KEY("enable", WH_CONF_BOOL, 0, CFG(ui_enable)),
    WH_CONF_END,
};

static const wh_conf_key extensions_keys[] = {
    WH_CONF_SUB("search", WH_CONF_SECTION, WH_CONF_PRESENCE, CFG(search), wh_search_keys),
    WH_CONF_SUB("ui", WH_CONF_OBJECT, WH_CONF_PRESENCE, CFG(ui_enable), ui_keys),
    WH_CONF_FN("metrics", CFG(metrics), wh_metrics_conf),
    WH_CONF_FN("sync", CFG(sync), wh_sync_conf),
    WH_CONF_FN("scrub", CFG(scrub), wh_scrub_conf),
    WH_CONF_IGNORED("lint", WH_CONF_WARN),
    WH_CONF_IGNORED("mgmt", WH_CONF_WARN),
    WH_CONF_IGNORED("apikey", WH_CONF_WARN),
    WH_CONF_IGNORED("trust", WH_CONF_WARN),
    WH_CONF_IGNORED("events", WH_CONF_WARN),
    WH_CONF_END,
};

static const wh_conf_key top_keys[] = {
    WH_CONF_KEY("distSpecVersion", WH_CONF_STRING, 0, CFG(dist_spec_version)),
    WH_CONF_SUB("storage", WH_CONF_SECTION, 0, CFG(storage), wh_store_keys),
    WH_CONF_SUB("http", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, http_keys),
    WH_CONF_SUB("log", WH_CONF_SECTION, 0, CFG(log), wh_log_keys),
    WH_CONF_SUB("extensions", WH_CONF_OBJECT, 0, WH_CONF_NOSTORE, extensions_keys),
    WH_CONF_IGNORED("scheduler", WH_CONF_WARN),
    WH_CONF_IGNORED("cluster", WH_CONF_WARN),
    {"landlock", WH_CONF_BOOL, WH_CONF_WARN_IF_SET, WH_CONF_NOSTORE, NULL, NULL},
    /* Build information Zot writes when it dumps its config; nothing to do. */
    WH_CONF_IGNORED("goVersion", 0),
    WH_CONF_IGNORED("commit", 0),
    WH_CONF_IGNORED("releaseTag", 0),
    WH_CONF_IGNORED("binaryType", 0),
    WH_CONF_END,
};

/* ---- checks across modules ---- */

bool wh_config_has_auth(const wh_config *c)
{
	/* mTLS counts: a verified client certificate's CN is a user. */
	return (c->auth.htpasswd_path && *c->auth.htpasswd_path) ||
	       (c->tls.cert && *c->tls.cert && c->tls.cacert && *c->tls.cacert);
}

/* Zot's rule: without any authentication, access control may only say what
 * anonymous requests may do. */
static int check_access(wh_conf *p, const wh_config *c)
{
	const wh_access_config *ac = &c->auth.access;
	/* An authentication that is refused is an error of its own already:
	 * not also this one (Zot counts it as authentication). */
	bool authn = wh_config_has_auth(c) || c->auth.refused_authn || c->auth.apikey;
	bool named =
	    ac->admin.n_users || ac->admin.n_groups || ac->admin.actions || ac->n_metrics_users;

	for (int i = 0; i < ac->n_repos; i++) {
		named |= ac->repos[i].n_policies > 0 || ac->repos[i].default_actions;
	}
	if (ac->enabled && !authn && named) {
		wh_conf_push_key(p, "http.accessControl");
		return wh_conf_fail(
		    p, "access control config requires one of htpasswd, ldap, openid or "
		       "mTLS authentication or using only 'anonymousPolicy' policies");
	}
	return 0;
}

/* ---- entry points ---- */

static void init(wh_config *c)
{
	memset(c, 0, sizeof(*c));
	wh_store_settings_init(&c->storage);
	wh_http_settings_init(&c->http);
	wh_ratelimit_settings_init(&c->ratelimit);
	wh_log_settings_init(&c->log);
	wh_sync_settings_init(&c->sync);
	wh_scrub_settings_init(&c->scrub);
}

/* The checks across keys, each run whatever the others found, so that one
 * run names every problem. */
static void finish(wh_conf *p, wh_config *c)
{
	wh_store_settings_check(p, &c->storage);
	wh_tls_settings_check(p, &c->tls);
	wh_sync_settings_finish(&c->sync);
	c->auth.mtls = c->tls.cert && c->tls.cacert;
	c->search.dist_spec_version = c->dist_spec_version;
	check_access(p, c);
}

/* Every error of p into err, one per line ("path: message"), each line
 * prefixed with prefix (NULL: none), as much as fits. */
static void join_errors(const wh_conf *p, const char *prefix, char *err, size_t errlen)
{
	size_t at = 0;
	if (!err || !errlen)
		return;
	err[0] = '\0';
	for (int i = 0; i < p->n_errors && at + 1 < errlen; i++) {
		int n = snprintf(err + at, errlen - at, "%s%s%s%s", i ? "\n" : "",
		                 prefix ? prefix : "", prefix ? ": " : "", p->errors[i]);
		if (n < 0)
			break;
		at += (size_t)n;
	}
	if (at >= errlen)
		at = errlen - 1;
	err[at] = '\0';
}

static int syntax_error(wh_conf *p, const char *json, size_t len, const char *at, const char *what)
{
	int line = 1, col = 1;

	if (!at || at < json || at > json + len)
		at = json + len;
	for (const char *c = json; c < at; c++) {
		if (*c == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	return wh_conf_fail(p, "%s at line %d, column %d", what, line, col);
}

/* The text as a tree: JSON, or YAML when yaml (a .yaml/.yml file). */
static cJSON *text_tree(wh_conf *p, const char *text, size_t len, bool yaml)
{
	cJSON *root = NULL;
	const char *end = NULL;

	if (!text) {
		wh_conf_fail(p, "no configuration text");
		return NULL;
	}
	if (yaml) {
		char msg[256];
		if (wh_yaml_parse(text, len, &root, msg, sizeof(msg)) != 0) {
			wh_conf_fail(p, "%s", msg);
			return NULL;
		}
		if (cJSON_IsNull(root)) {
			cJSON_Delete(root);
			/* Zot: "the absence of any key:value pair" */
			wh_conf_fail(p, "the configuration is empty");
			return NULL;
		}
	} else {
		root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
		if (!root) {
			syntax_error(p, text, len, end, "invalid JSON");
			return NULL;
		}
		while (end < text + len &&
		       (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
			end++;
		if (end < text + len) {
			/* A NUL too: the file is the JSON text and nothing after it. */
			syntax_error(p, text, len, end,
			             *end ? "unexpected text after the JSON value"
			                  : "a NUL byte after the JSON value");
			cJSON_Delete(root);
			return NULL;
		}
	}
	if (!cJSON_IsObject(root)) {
		wh_conf_fail(p, "the configuration must be a JSON object");
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

/* Parse text (JSON, or YAML) into *out; every error, each line prefixed
 * with prefix (a file's path) when not NULL, into err. */
static int parse_text(const char *text, size_t len, bool yaml, const char *prefix, wh_config *out,
                      char *err, size_t errlen)
{
	wh_conf p;
	wh_config cfg;
	int rc = WH_EINVAL;

	memset(&p, 0, sizeof(p));
	if (err && errlen)
		err[0] = '\0';
	init(&cfg);
	cJSON *root = text_tree(&p, text, len, yaml);
	if (root) {
		wh_conf_walk(&p, root, top_keys, (char *)&cfg);
		finish(&p, &cfg);
		rc = p.n_errors ? WH_EINVAL : 0;
	}
	if (rc)
		join_errors(&p, prefix, err, errlen);
	wh_conf_strv_free(p.errors, p.n_errors);
	cJSON_Delete(root);
	cfg.warnings = p.warnings;
	cfg.n_warnings = p.n_warnings;
	cfg.notices = p.notices;
	cfg.n_notices = p.n_notices;
	if (rc) {
		wh_config_free(&cfg);
		memset(out, 0, sizeof(*out));
	} else {
		*out = cfg;
	}
	return rc;
}

int wh_config_parse(const char *json, size_t len, wh_config *out, char *err, size_t errlen)
{
	return parse_text(json, len, false, NULL, out, err, errlen);
}

int wh_config_parse_yaml(const char *yaml, size_t len, wh_config *out, char *err, size_t errlen)
{
	return parse_text(yaml, len, true, NULL, out, err, errlen);
}

/* As Zot (viper) decides: by the file's extension; a name without a known
 * one is read as JSON, and as YAML when it is not JSON. */
static bool yaml_name(const char *path)
{
	const char *dot = strrchr(path, '.');
	return dot && !strchr(dot, '/') &&
	       (strcasecmp(dot, ".yaml") == 0 || strcasecmp(dot, ".yml") == 0);
}

static bool json_name(const char *path)
{
	const char *dot = strrchr(path, '.');
	return dot && !strchr(dot, '/') && strcasecmp(dot, ".json") == 0;
}

int wh_config_load(const char *path, wh_config *out, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = wh_read_file(path, MAX_FILE_BYTES, &buf, &len);
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot read: %s", path,
			         rc == WH_ETOOBIG ? "larger than 16 MiB" : wh_strerror(rc));
		goto out;
	}
	bool yaml = yaml_name(path);
	if (!yaml && !json_name(path)) {
		/* Neither: JSON when it looks like JSON (its errors are JSON's),
		 * else YAML. */
		size_t i = strspn(buf, " \t\r\n");
		yaml = i >= len || buf[i] != '{';
	}
	rc = parse_text(buf, len, yaml, path, out, err, errlen);
	if (rc == 0)
		out->path = wh_strdup(path);
out:
	free(buf);
	return rc;
}

int wh_config_default(wh_config *out)
{
	return wh_config_parse(wh_config_default_json, sizeof(wh_config_default_json) - 1, out,
	                       NULL, 0);
}

void wh_config_free(wh_config *cfg)
{
	if (!cfg)
		return;
	wh_conf_strv_free(cfg->warnings, cfg->n_warnings);
	wh_conf_strv_free(cfg->notices, cfg->n_notices);
	free(cfg->path);
	free(cfg->dist_spec_version);
	free(cfg->external_url);
	wh_store_settings_free(&cfg->storage);
	wh_http_settings_free(&cfg->http);
	wh_tls_settings_free(&cfg->tls);
	wh_auth_settings_free(&cfg->auth);
	wh_ratelimit_settings_free(&cfg->ratelimit);
	wh_log_settings_free(&cfg->log);
	wh_sync_settings_free(&cfg->sync);
	wh_metrics_settings_free(&cfg->metrics);
	memset(cfg, 0, sizeof(*cfg));
}
