/* Unit tests for src/base/config.c: Zot's config.json into wh_config. */
#include "check.h"

#include "wharf/base/common.h"
#include "wharf/app/config.h"
#include "wharf/app/verify.h"
#include "wharf/base/log.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* Tests write JSON with single quotes; this turns them into double quotes. */
static char *q(const char *s)
{
	char *out = wh_strdup(s);
	for (char *c = out; *c; c++)
		if (*c == '\'')
			*c = '"';
	return out;
}

static int parse(const char *single_quoted, wh_config *cfg, char *err, size_t errlen)
{
	char *json = q(single_quoted);
	int rc = wh_config_parse(json, strlen(json), cfg, err, errlen);
	free(json);
	return rc;
}

static const char *src_dir(void)
{
	const char *s = getenv("WHARF_SRC");
	return s && *s ? s : ".";
}

static const char classic[] =
    "{\n"
    "  'distSpecVersion': '1.0.1',\n"
    "  'storage': {'rootDirectory': '/var/lib/zot', 'gc': true, 'dedupe': true},\n"
    "  'http': {'address': '0.0.0.0', 'port': '5000'},\n"
    "  'log': {'level': 'info'},\n"
    "  'extensions': {\n"
    "    'search': {'enable': true},\n"
    "    'ui': {'enable': true},\n"
    "    'sync': {\n"
    "      'enable': true,\n"
    "      'registries': [\n"
    "        {'urls': ['https://index.docker.io'],\n"
    "         'content': [{'prefix': '**', 'destination': '/dockerhub'}],\n"
    "         'onDemand': true, 'tlsVerify': true},\n"
    "        {'urls': ['https://ghcr.io'],\n"
    "         'content': [{'prefix': '**', 'destination': '/ghcr'}],\n"
    "         'onDemand': true, 'tlsVerify': true}\n"
    "      ]\n"
    "    }\n"
    "  }\n"
    "}\n";

static void check_classic(const wh_config *c, const char *root, const char *address)
{
	CHECK_STREQ(c->dist_spec_version, "1.0.1");
	CHECK_STREQ(c->storage.root_dir, root);
	CHECK(c->storage.gc && c->storage.dedupe && !c->storage.commit);
	CHECK(c->storage.gc_delay_ms == 3600000 && c->storage.gc_interval_ms == 3600000);
	CHECK_STREQ(c->http.address, address);
	CHECK(c->http.port == 5000);
	CHECK(c->auth.realm == NULL && c->external_url == NULL);
	CHECK(c->http.header_timeout_ms == 20000 && c->http.idle_timeout_ms == 60000);
	CHECK(c->http.body_timeout_ms == 60000 && c->http.send_timeout_ms == 60000);
	CHECK(c->http.shutdown_timeout_ms == 10000);
	CHECK(c->http.max_connections == 1024 && c->http.max_header_bytes == 65536 &&
	      c->http.max_headers == 100);
	CHECK(c->log.level == WH_LOG_INFO && c->log.output == NULL && c->log.audit == NULL);
	CHECK(c->search.enable && c->ui_enable && !c->metrics.enable && c->sync.enable);
	CHECK(c->sync.upstream.credentials_file == NULL);
	CHECK(c->sync.manifest_check_interval_ms == 300000);
	CHECK(!c->sync.upstream.allow_private_redirects);
	CHECK(c->sync.upstream.connect_timeout_ms == 10000);
	CHECK(c->sync.upstream.request_timeout_ms == 60000);
	CHECK(c->sync.upstream.stall_timeout_ms == 30000);
	CHECK(c->sync.upstream.max_host_connections == 16);
	CHECK(c->n_warnings == 0);
	CHECK(c->sync.n_registries == 2);
	if (c->sync.n_registries != 2)
		return;
	for (int i = 0; i < 2; i++) {
		const wh_sync_registry *r = &c->sync.registries[i];
		CHECK(r->n_urls == 1);
		CHECK(r->on_demand && r->tls_verify && !r->only_signed);
		CHECK(r->cert_dir == NULL);
		/* As in Zot: no retries unless asked. */
		CHECK(r->max_retries == 0 && r->retry_delay_ms == 300000 &&
		      r->max_retry_delay_ms == 300000);
		CHECK(r->poll_interval_ms == 0);
		CHECK(r->manifest_check_interval_ms == 300000);
		CHECK(r->n_content == 1);
		if (r->n_content == 1) {
			CHECK_STREQ(r->content[0].prefix, "**");
			CHECK(!r->content[0].strip_prefix);
			CHECK(r->content[0].tags.regex == NULL);
			CHECK(r->content[0].tags.exclude_regex == NULL);
		}
	}
	CHECK_STREQ(c->sync.registries[0].urls[0], "https://index.docker.io");
	CHECK_STREQ(c->sync.registries[0].content[0].destination, "/dockerhub");
	CHECK_STREQ(c->sync.registries[1].urls[0], "https://ghcr.io");
	CHECK_STREQ(c->sync.registries[1].content[0].destination, "/ghcr");
}

static void test_classic(void)
{
	wh_config c;
	char err[256];
	int rc = parse(classic, &c, err, sizeof(err));
	CHECK(rc == 0);
	if (rc) {
		fprintf(stderr, "classic: %s\n", err);
		return;
	}
	check_classic(&c, "/var/lib/zot", "0.0.0.0");
	CHECK(c.path == NULL);
	wh_config_free(&c);
	CHECK(c.sync.registries == NULL && c.storage.root_dir == NULL);
	wh_config_free(&c); /* twice is harmless */
}

static void test_default(void)
{
	wh_config c;
	CHECK(wh_config_default(&c) == 0);
	check_classic(&c, WH_DEFAULT_ROOT, "127.0.0.1");
	CHECK(c.path == NULL);
	wh_config_free(&c);
	CHECK(strstr(wh_config_default_json, "\"" WH_DEFAULT_ROOT "\"") != NULL);
}

static void test_defaults_when_absent(void)
{
	wh_config c;
	char err[256] = "";
	CHECK(parse("{'storage': {'rootDirectory': '/r'}}", &c, err, sizeof(err)) == 0);
	CHECK_STREQ(c.http.address, "127.0.0.1");
	CHECK(c.http.port == 8080);
	CHECK(c.storage.gc && c.storage.dedupe);
	CHECK(c.storage.gc_delay_ms == 3600000 && c.storage.gc_interval_ms == 3600000);
	CHECK(c.log.level == WH_LOG_INFO);
	CHECK(!c.search.enable && !c.ui_enable && !c.metrics.enable && !c.sync.enable);
	CHECK(!c.scrub.enable);
	CHECK(c.sync.n_registries == 0 && c.n_warnings == 0);
	CHECK(c.dist_spec_version == NULL);
	wh_config_free(&c);

	/* As in Zot: without gc, absent gcDelay and gcInterval are 0. */
	CHECK(parse("{'storage': {'rootDirectory': '/r', 'gc': false}}", &c, err, sizeof(err)) ==
	      0);
	CHECK(!c.storage.gc && c.storage.gc_delay_ms == 0 && c.storage.gc_interval_ms == 0);
	wh_config_free(&c);

	/* An extension object present without "enable" is enabled, as in Zot. */
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'extensions': {'sync': {}, 'ui': {},"
	            " 'metrics': {}, 'search': {'enable': false}}}",
	            &c, err, sizeof(err)) == 0);
	CHECK(c.sync.enable && c.ui_enable && c.metrics.enable && !c.search.enable);
	wh_config_free(&c);

	/* Keys match case-insensitively, as with Zot's viper; null is absent. */
	CHECK(parse("{'Storage': {'RootDirectory': '/r', 'GCDelay': '2h', 'gcInterval': null},"
	            " 'HTTP': {'Port': 5001, 'tls': null}, 'log': {'level': 'DEBUG'}}",
	            &c, err, sizeof(err)) == 0);
	CHECK_STREQ(c.storage.root_dir, "/r");
	CHECK(c.storage.gc_delay_ms == 7200000 && c.storage.gc_interval_ms == 3600000);
	CHECK(c.http.port == 5001);
	CHECK(c.log.level == WH_LOG_DEBUG);
	CHECK(c.n_warnings == 0);
	wh_config_free(&c);

	/* A bare number is a Go time.Duration: nanoseconds. */
	CHECK(parse("{'storage': {'rootDirectory': '/r', 'gcDelay': 7200000000000}}", &c, err,
	            sizeof(err)) == 0);
	CHECK(c.storage.gc_delay_ms == 7200000);
	wh_config_free(&c);

	/* Wharf's own settings, and log level aliases. */
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'log': {'level': 'warning',"
	            " 'output': '/tmp/w.log'}, 'http': {'wharf': {'headerTimeout': '5s',"
	            " 'idleTimeout': '1m', 'bodyTimeout': '2m', 'sendTimeout': '3m',"
	            " 'shutdownTimeout': '0', 'maxConnections': 10, 'maxHeaderBytes': 8192,"
	            " 'maxHeaders': 50}}, 'extensions': {'sync': {'wharf':"
	            " {'manifestCheckInterval': '30s', 'allowPrivateRedirects': true,"
	            " 'connectTimeout': '3s', 'requestTimeout': '20s', 'stallTimeout': '1m',"
	            " 'maxHostConnections': 4},"
	            " 'registries': [{'urls':"
	            " ['http://localhost:5001/']}]}}}",
	            &c, err, sizeof(err)) == 0);
	CHECK(c.log.level == WH_LOG_WARN);
	CHECK_STREQ(c.log.output, "/tmp/w.log");
	CHECK(c.http.header_timeout_ms == 5000 && c.http.idle_timeout_ms == 60000);
	CHECK(c.http.body_timeout_ms == 120000 && c.http.send_timeout_ms == 180000);
	CHECK(c.http.shutdown_timeout_ms == 0);
	CHECK(c.http.max_connections == 10 && c.http.max_header_bytes == 8192 &&
	      c.http.max_headers == 50);
	CHECK(c.sync.manifest_check_interval_ms == 30000);
	CHECK(c.sync.upstream.allow_private_redirects);
	CHECK(c.sync.upstream.connect_timeout_ms == 3000 &&
	      c.sync.upstream.request_timeout_ms == 20000);
	CHECK(c.sync.upstream.stall_timeout_ms == 60000 &&
	      c.sync.upstream.max_host_connections == 4);
	CHECK(c.sync.n_registries == 1 && c.sync.registries[0].manifest_check_interval_ms == 30000);
	/* No content rules: every name, at the root, as Zot does. */
	CHECK(c.sync.n_registries == 1 && c.sync.registries[0].n_content == 1);
	CHECK_STREQ(c.sync.registries[0].content[0].prefix, "**");
	CHECK(c.sync.registries[0].content[0].destination == NULL);
	CHECK(c.sync.n_registries == 1 && !c.sync.registries[0].on_demand);
	/* ... and onDemand false: said to be never fetched. */
	CHECK(c.n_notices == 1 && strstr(c.notices[0], "extensions.sync.registries[0]: ") &&
	      strstr(c.notices[0], "never fetched"));
	/* Absent from the registry: as in Zot, TLS is verified and nothing is
	 * retried (maxRetries none). */
	CHECK(c.sync.n_registries == 1 && c.sync.registries[0].tls_verify);
	CHECK(c.sync.n_registries == 1 && c.sync.registries[0].max_retries == 0);
	wh_config_free(&c);
}

#define R        "'storage': {'rootDirectory': '/r'}"
#define REG0     "{" R ", 'extensions': {'sync': {'registries': [{"
#define REG0_END "}]}}}"
#define URLS     "'urls': ['https://registry.example.com']"
#define REGP     "extensions.sync.registries[0]"

static const struct {
	const char *json;
	const char *err; /* the whole message, or its start when it ends with "..." */
} bad[] = {
    /* unknown keys and structure */
    {"{" R ", 'http': {'adress': '0.0.0.0'}}",
     "http.adress: unknown key (did you mean \"address\"?)"},
    {"{" R ", 'foo': 1}", "foo: unknown key"},
    {"{" R ", 'http': {'wharf': {'bogus': 1}}}", "http.wharf.bogus: unknown key"},
    {"{" R ", 'extensions': {'imagetrust': {}}}", "extensions.imagetrust: unknown key"},
    {REG0 URLS ", 'urlz': []" REG0_END, REGP ".urlz: unknown key (did you mean \"urls\"?)"},
    {"{" R ", 'extensions': {'sync': {'registries': [{" URLS "}, {" URLS ", 'x': 1}]}}}",
     "extensions.sync.registries[1].x: unknown key"},
    {REG0 URLS ", 'content': [{'prefix': '**', 'tags': {'regexp': 'a'}}]" REG0_END,
     REGP ".content[0].tags.regexp: unknown key (did you mean \"regex\"?)"},
    {"{'storage': {'rootDirectory': '/r', 'gc': true, 'GC': false}}", "storage.GC: duplicate key"},
    {"{'storage': []}", "storage: expected an object"},
    {"{" R ", 'http': {'tls': {'cert': '/c'}}}", "http.tls.key: required with http.tls.cert"},
    {"{" R ", 'http': {'tls': {'key': '/k', 'cert': ''}}}",
     "http.tls.cert: required with http.tls.key"},
    {"{" R ", 'http': {'tls': {'cacert': '/a'}}}",
     "http.tls.cacert: needs http.tls.cert and http.tls.key"},
    {"{" R ", 'http': {'tls': {'certs': '/c'}}}",
     "http.tls.certs: unknown key (did you mean \"cert\"?)"},
    {"{" R ", 'http': {'tls': {'cert': {}}}}", "http.tls.cert: expected a string"},
    {"{" R ", 'extensions': {'sync': {'registries': {}}}}",
     "extensions.sync.registries: expected an array"},
    {"{" R ", 'extensions': {'sync': {'registries': [5]}}}", REGP ": expected an object"},
    {"[]", "the configuration must be a JSON object"},
    /* storage */
    {"{'http': {'port': '5000'}}", "storage.rootDirectory: required"},
    {"{'storage': {'rootDirectory': ''}}", "storage.rootDirectory: must not be empty"},
    {"{'storage': {'rootDirectory': []}}", "storage.rootDirectory: expected a string"},
    {"{'storage': {'rootDirectory': '/r', 'gc': 'yes'}}", "storage.gc: expected a boolean"},
    {"{'storage': {'rootDirectory': '/r', 'dedupe': 'yes'}}", "storage.dedupe: expected a boolean"},
    {"{'storage': {'rootDirectory': '/r', 'gcDelay': '1x'}}",
     "storage.gcDelay: invalid duration \"1x\" (examples: \"250ms\", \"30s\", \"1h30m\")"},
    {"{'storage': {'rootDirectory': '/r', 'gcInterval': '-1s'}}",
     "storage.gcInterval: invalid duration \"-1s\"..."},
    {"{'storage': {'rootDirectory': '/r', 'gcDelay': true}}",
     "storage.gcDelay: expected a duration such as \"30s\" or \"1h30m\""},
    {"{'storage': {'rootDirectory': '/r', 'gcDelay': -5}}",
     "storage.gcDelay: expected a duration such as \"30s\" or \"1h30m\""},
    {"{'storage': {'rootDirectory': '/r', 'remoteCache': 'no'}}",
     "storage.remoteCache: expected a boolean"},
    /* http */
    {"{" R ", 'http': {'port': '0'}}", "http.port: invalid port \"0\" (1-65535)"},
    {"{" R ", 'http': {'port': '65536'}}", "http.port: invalid port \"65536\" (1-65535)"},
    {"{" R ", 'http': {'port': 'abc'}}", "http.port: invalid port \"abc\" (1-65535)"},
    {"{" R ", 'http': {'port': ''}}", "http.port: invalid port \"\" (1-65535)"},
    {"{" R ", 'http': {'port': ' 5000'}}", "http.port: invalid port \" 5000\" (1-65535)"},
    {"{" R ", 'http': {'port': '+5000'}}", "http.port: invalid port \"+5000\" (1-65535)"},
    {"{" R ", 'http': {'port': '5000x'}}", "http.port: invalid port \"5000x\" (1-65535)"},
    {"{" R ", 'http': {'port': 0}}", "http.port: invalid port 0 (1-65535)"},
    {"{" R ", 'http': {'port': 65536}}", "http.port: invalid port 65536 (1-65535)"},
    {"{" R ", 'http': {'port': 5000.5}}", "http.port: invalid port 5000.5 (1-65535)"},
    {"{" R ", 'http': {'port': true}}", "http.port: expected a port number (1-65535)"},
    {"{" R ", 'http': {'address': [127]}}", "http.address: expected a string"},
    {"{" R ", 'http': {'wharf': {'maxHeaders': 0}}}",
     "http.wharf.maxHeaders: must be greater than 0"},
    {"{" R ", 'http': {'wharf': {'maxConnections': 1.5}}}",
     "http.wharf.maxConnections: expected an integer"},
    {"{" R ", 'http': {'wharf': {'maxHeaderBytes': '64k'}}}",
     "http.wharf.maxHeaderBytes: expected an integer, not \"64k\""},
    {"{" R ", 'http': {'wharf': {'headerTimeout': '0s'}}}",
     "http.wharf.headerTimeout: must be greater than 0"},
    {"{" R ", 'http': {'wharf': {'idleTimeout': '10'}}}",
     "http.wharf.idleTimeout: invalid duration \"10\"..."},
    {"{" R ", 'http': {'wharf': []}}", "http.wharf: expected an object"},
    /* log */
    {"{" R ", 'log': {'level': 'verbose'}}",
     "log.level: unknown level \"verbose\" (debug, info, warn or error)"},
    {"{" R ", 'log': {'level': 1}}", "log.level: expected a string"},
    /* extensions */
    {"{" R ", 'extensions': {'search': {'enable': 'on'}}}",
     "extensions.search.enable: expected a boolean"},
    {"{" R ", 'extensions': {'sync': {'wharf': {'manifestCheckInterval': 'h'}}}}",
     "extensions.sync.wharf.manifestCheckInterval: invalid duration \"h\"..."},
    {"{" R ", 'extensions': {'sync': {'wharf': {'allowPrivateRedirects': []}}}}",
     "extensions.sync.wharf.allowPrivateRedirects: expected a boolean"},
    {"{" R ", 'extensions': {'sync': {'wharf': {'connectTimeout': '0'}}}}",
     "extensions.sync.wharf.connectTimeout: must be greater than 0"},
    {"{" R ", 'extensions': {'sync': {'wharf': {'maxHostConnections': 0}}}}",
     "extensions.sync.wharf.maxHostConnections: must be greater than 0"},
    {"{" R ", 'extensions': {'sync': {'wharf': {'stallTimeout': 'x'}}}}",
     "extensions.sync.wharf.stallTimeout: invalid duration \"x\"..."},
    {"{" R ", 'extensions': {'sync': {'wharf': {'requestTimeot': '1s'}}}}",
     "extensions.sync.wharf.requestTimeot: unknown key (did you mean \"requestTimeout\"?)"},
    {"{" R ", 'extensions': {'sync': {'credentialsFile': ['a']}}}",
     "extensions.sync.credentialsFile: expected a string"},
    /* registries */
    {REG0 "'onDemand': true" REG0_END, REGP ".urls: at least one URL is required"},
    {REG0 "'urls': []" REG0_END, REGP ".urls: at least one URL is required"},
    {REG0 "'urls': {}" REG0_END, REGP ".urls[0]: expected a string"},
    {REG0 "'urls': [5]" REG0_END, REGP ".urls[0]: expected a string"},
    {REG0 "'urls': ['ftp://registry.example.com']" REG0_END,
     REGP ".urls[0]: \"ftp://registry.example.com\" is not an http:// or https:// URL"},
    {REG0 "'urls': ['https://registry.example.com', 'registry.example.com']" REG0_END,
     REGP ".urls[1]: \"registry.example.com\" is not an http:// or https:// URL"},
    {REG0 "'urls': ['https://']" REG0_END, REGP ".urls[0]: \"https://\" has no host"},
    {REG0 "'urls': ['https://registry.example.com:0']" REG0_END,
     REGP ".urls[0]: \"https://registry.example.com:0\" has a bad port"},
    {REG0 "'urls': ['https://registry.example.com:99999']" REG0_END,
     REGP ".urls[0]: \"https://registry.example.com:99999\" has a bad port"},
    {REG0 "'urls': ['https://registry.example.com/v2']" REG0_END,
     REGP ".urls[0]: \"https://registry.example.com/v2\" must be scheme://host[:port]..."},
    {REG0 "'urls': ['https://user:pw@registry.example.com']" REG0_END,
     REGP ".urls[0]: \"https://user:pw@registry.example.com\" must not hold credentials "
          "(put them in extensions.sync.credentialsFile)"},
    {REG0 "'urls': ['https://[zz]']" REG0_END,
     REGP ".urls[0]: \"https://[zz]\" has a bad IPv6 address"},
    {REG0 URLS ", 'onDemand': 'yes'" REG0_END, REGP ".onDemand: expected a boolean"},
    {REG0 URLS ", 'tlsVerify': {}" REG0_END, REGP ".tlsVerify: expected a boolean"},
    {REG0 URLS ", 'maxRetries': 3" REG0_END,
     REGP ".maxRetries: retryDelay is required with maxRetries (as in Zot)"},
    {REG0 URLS ", 'maxRetries': -1, 'retryDelay': '1s'" REG0_END,
     REGP ".maxRetries: must not be negative"},
    {REG0 URLS ", 'maxRetryDelay': '1m'" REG0_END,
     REGP ".maxRetryDelay: retryDelay is required with maxRetryDelay (as in Zot)"},
    {REG0 URLS ", 'maxRetries': 2, 'retryDelay': '2s', 'maxRetryDelay': '1s'" REG0_END,
     REGP ".maxRetryDelay: must not be less than retryDelay (as in Zot)"},
    {REG0 URLS ", 'retryDelay': '5 minutes'" REG0_END,
     REGP ".retryDelay: invalid duration \"5 minutes\"..."},
    {REG0 URLS ", 'pollInterval': '1d'" REG0_END, REGP ".pollInterval: invalid duration \"1d\"..."},
    {REG0 URLS ", 'onlySigned': 'yes'" REG0_END, REGP ".onlySigned: expected a boolean"},
    {REG0 URLS ", 'onlySigned': true" REG0_END,
     REGP ".onlySigned: not supported by Wharf: images would be synced without checking their "
          "signatures; remove the key or set it to false"},
    {REG0 URLS ", 'manifestCheckInterval': '1m'" REG0_END,
     REGP ".manifestCheckInterval: requires onDemand to be true"},
    {REG0 URLS ", 'certDir': {}" REG0_END, REGP ".certDir: expected a string"},
    /* content */
    {REG0 URLS ", 'content': {}" REG0_END, REGP ".content: expected an array"},
    {REG0 URLS ", 'content': [{'destination': '/x'}]" REG0_END,
     REGP ".content[0].prefix: required"},
    {REG0 URLS ", 'content': [{'prefix': ''}]" REG0_END,
     REGP ".content[0].prefix: invalid glob \"\": empty pattern"},
    {REG0 URLS ", 'content': [{'prefix': '**'}, {'prefix': 'a[b'}]" REG0_END,
     "extensions.sync.registries[0].content[1].prefix: invalid glob \"a[b\": unbalanced '['"},
    {REG0 URLS ", 'content': [{'prefix': 'a{b,c'}]" REG0_END,
     REGP ".content[0].prefix: invalid glob \"a{b,c\": unbalanced '{'"},
    {REG0 URLS ", 'content': [{'prefix': 'a}'}]" REG0_END,
     REGP ".content[0].prefix: invalid glob \"a}\": unbalanced '}'"},
    {REG0 URLS ", 'content': [{'prefix': 'a[]'}]" REG0_END,
     REGP ".content[0].prefix: invalid glob \"a[]\": empty character class"},
    {REG0 URLS ", 'content': [{'prefix': []}]" REG0_END,
     REGP ".content[0].prefix: expected a string"},
    {REG0 URLS ", 'content': [{'prefix': '**', 'stripPrefix': 'maybe'}]" REG0_END,
     REGP ".content[0].stripPrefix: expected a boolean"},
    {REG0 URLS
     ", 'content': [{'prefix': 'library', 'destination': '/', 'stripPrefix': true}]" REG0_END,
     REGP ".content[0].stripPrefix: with destination \"/\" the prefix must contain a glob..."},
    {REG0 URLS ", 'content': [{'prefix': '**', 'tags': {'regex': '('}}]" REG0_END,
     REGP ".content[0].tags.regex: invalid regular expression \"(\": ..."},
    {REG0 URLS ", 'content': [{'prefix': '**', 'tags': {'excludeRegex': '[a'}}]" REG0_END,
     REGP ".content[0].tags.excludeRegex: invalid regular expression \"[a\": ..."},
    {REG0 URLS ", 'content': [{'prefix': '**', 'tags': {'regex': {}}}]" REG0_END,
     REGP ".content[0].tags.regex: expected a string"},
    {REG0 URLS ", 'content': [{'prefix': '**', 'tags': {'semver': 'yes'}}]" REG0_END,
     REGP ".content[0].tags.semver: expected a boolean"},
    {REG0 URLS ", 'content': [{'prefix': '**', 'tags': []}]" REG0_END,
     REGP ".content[0].tags: expected an object"},
    /* JSON syntax */
    {"{\n  'storage': ,\n}", "invalid JSON at line 2, column 14"},
    {"{'storage': {'rootDirectory': '/r'}} x",
     "unexpected text after the JSON value at line 1, column 38"},
    {"", "invalid JSON at line 1, column 1"},
};

static void test_errors(void)
{
	for (size_t i = 0; i < WH_ARRAY_SIZE(bad); i++) {
		wh_config c;
		char err[512] = "";
		const char *want = bad[i].err;
		size_t n = strlen(want);
		int rc = parse(bad[i].json, &c, err, sizeof(err));
		bool prefix = n > 3 && strcmp(want + n - 3, "...") == 0;
		bool ok = prefix ? strncmp(err, want, n - 3) == 0 : strcmp(err, want) == 0;

		CHECK(rc == WH_EINVAL);
		CHECK(ok);
		if (!ok)
			fprintf(stderr, "  case %zu: got \"%s\"\n           want \"%s\"\n", i, err,
			        want);
		/* On failure *out is zeroed: freeing it is harmless. */
		CHECK(c.storage.root_dir == NULL && c.sync.registries == NULL &&
		      c.warnings == NULL);
		wh_config_free(&c);
	}
}

static void test_error_buffer(void)
{
	wh_config c;
	char small[8];

	CHECK(parse("{'foo': 1}", &c, NULL, 0) == WH_EINVAL);
	memset(small, 'x', sizeof(small));
	CHECK(parse("{'storage': {'gc': 'yes'}}", &c, small, sizeof(small)) == WH_EINVAL);
	CHECK(small[sizeof(small) - 1] == '\0');
	CHECK_STREQ(small, "storage");
	CHECK(wh_config_parse(NULL, 0, &c, small, sizeof(small)) == WH_EINVAL);
	/* Text that is not NUL-terminated: only len bytes are read. */
	{
		const char text[] = "{\"storage\": {\"rootDirectory\": \"/r\"}}garbage";
		char err[128];
		CHECK(wh_config_parse(text, strlen(text) - 7, &c, err, sizeof(err)) == 0);
		wh_config_free(&c);
	}
}

static void test_warnings(void)
{
	static const char *const want[] = {
	    "storage.remoteCache",
	    "storage.cacheDriver",
	    "http.compat",
	    "log.audit",
	    "extensions.search.cve",
	    "extensions.sync.downloadDir",
	    "extensions.lint",
	    "extensions.trust",
	    "extensions.mgmt",
	    "extensions.apikey",
	    "extensions.events",
	    "scheduler",
	    "cluster",
	};
	const char *json =
	    "{'storage': {'rootDirectory': '/r', 'remoteCache': true,"
	    "   'cacheDriver': {'name': 'dynamodb'}, 'subPaths': {},"
	    "   'retention': {'dryRun': true, 'policies': []}},"
	    " 'http': {'address': '0.0.0.0', 'port': '5000',"
	    "   'tls': {'cert': '/c', 'key': '/k'}, 'auth': {'htpasswd': {'path': '/h'},"
	    "   'failDelay': 5}, 'accessControl': {'repositories': {'**': {}}},"
	    "   'ratelimit': {'rate': 10}, 'compat': ['docker2s2']},"
	    " 'log': {'level': 'debug', 'audit': '/var/log/audit.log'},"
	    " 'extensions': {"
	    "   'search': {'enable': true, 'cve': {'updateInterval': '2h'}},"
	    "   'metrics': {'enable': true, 'prometheus': {'path': '/metrics'}},"
	    "   'sync': {'downloadDir': '/tmp/sync', 'registries': ["
	    "     {'urls': ['https://registry.example.com'], 'pollInterval': '6h',"
	    "      'content': [{'prefix': '**', 'tags': {'semver': true},"
	    "                   'platforms': ['linux/amd64']}],"
	    "      'retryDelay': '5m', 'maxRetryDelay': '10m', 'preserveDigest': true, "
	    "'platforms': ['linux/amd64']},"
	    "     {'urls': ['https://registry.example.com'], 'pollInterval': '0s',"
	    "      'content': [{'prefix': '**', 'tags': {'semver': false}}]},"
	    "     {'urls': ['https://registry.example.com'], 'onlySigned': false}]},"
	    "   'scrub': {'interval': '24h'}, 'lint': {'enable': true},"
	    "   'trust': {'enable': true, 'cosign': true}, 'mgmt': {'enable': true},"
	    "   'apikey': {'enable': true}, 'events': {'enable': false}},"
	    " 'scheduler': {'numWorkers': 3}, 'cluster': {'members': []},"
	    " 'goVersion': 'go1.22', 'commit': 'abc', 'releaseTag': 'v2', 'binaryType': 'full'}";
	wh_config c;
	char err[512] = "";
	int rc = parse(json, &c, err, sizeof(err));

	CHECK(rc == 0);
	if (rc) {
		fprintf(stderr, "warnings: %s\n", err);
		return;
	}
	CHECK(c.n_warnings == (int)WH_ARRAY_SIZE(want));
	for (int i = 0; i < c.n_warnings && i < (int)WH_ARRAY_SIZE(want); i++)
		CHECK_STREQ(c.warnings[i], want[i]);
	CHECK_STREQ(c.log.audit, "/var/log/audit.log");
	/* http.tls is implemented: parsed, no warning (its files are read by tls.c). */
	CHECK_STREQ(c.tls.cert, "/c");
	CHECK_STREQ(c.tls.key, "/k");
	CHECK(c.tls.cacert == NULL);
	CHECK(wh_config_has_auth(&c));
	CHECK(c.sync.n_registries == 3);
	if (c.sync.n_registries == 3) {
		CHECK(c.sync.registries[0].poll_interval_ms == 6 * 3600000LL);
		CHECK(c.sync.registries[0].content_given && !c.sync.registries[2].content_given);
		CHECK(c.sync.registries[0].content[0].tags.semver);
		CHECK(!c.sync.registries[1].content[0].tags.semver);
		CHECK(!c.sync.registries[2].only_signed);
	}
	wh_config_free(&c);
}

/* What Wharf implements of http.auth/accessControl/ratelimit is parsed; a
 * security key it does not implement is an error naming it (fail closed). */
static void test_auth(void)
{
	static const char *const refused[] = {
	    "{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'ldap': {'address': 'l'}}}}",
	    "{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'bearer': {'realm': 'r'}}}}",
	    "{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'openid': {}}}}",
	    "{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'apikey': true}}}",
	    "{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'mtls': {}}}}",
	    "{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'htpasswd': {'path': '/h'}},"
	    " 'accessControl': {'repositories': {'**': {'policies': [{'users': ['a'],"
	    " 'actions': ['read'], 'conditions': [{'expression': 'true'}]}]}}}}}",
	};
	static const char *const refused_key[] = {
	    "http.auth.ldap",   "http.auth.bearer",
	    "http.auth.openid", "http.auth.apikey",
	    "http.auth.mtls",   "http.accessControl.repositories.**.policies[0].conditions",
	};
	wh_config c;
	char err[512];
	for (size_t i = 0; i < WH_ARRAY_SIZE(refused); i++) {
		CHECK(parse(refused[i], &c, err, sizeof(err)) == WH_EINVAL);
		CHECK(strstr(err, refused_key[i]) != NULL);
		CHECK(strstr(err, "not implemented") != NULL);
	}
	/* false and empty are not asking for anything */
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'apikey': false}}}", &c,
	            err, sizeof(err)) == 0);
	wh_config_free(&c);

	const char *json = "{'storage': {'rootDirectory': '/r'}, 'http': {'realm': 'z',"
	                   " 'auth': {'htpasswd': {'path': '/h'}, 'failDelay': 2},"
	                   " 'accessControl': {'groups': {'Devs': {'users': ['bob']}},"
	                   "   'repositories': {'**': {'anonymousPolicy': ['read']},"
	                   "     'Team/**': {'policies': [{'users': ['alice'], 'groups': ['DEVS'],"
	                   "       'actions': ['read', 'create']}], 'defaultPolicy': ['read']}},"
	                   "   'adminPolicy': {'users': ['root'], 'actions': ['read', 'delete']},"
	                   "   'metrics': {'users': ['prom'], 'anonymousPolicy': ['read']}},"
	                   " 'ratelimit': {'rate': 10, 'methods': [{'method': 'get', 'rate': 5}]},"
	                   " 'wharf': {'trustedProxies': ['10.0.0.0/8', '::1', '192.0.2.7']}}}";
	CHECK(parse(json, &c, err, sizeof(err)) == 0);
	if (c.storage.root_dir) {
		CHECK_STREQ(c.auth.htpasswd_path, "/h");
		CHECK(c.auth.fail_delay_s == 2);
		CHECK(c.auth.access.enabled && c.auth.access.n_repos == 2 &&
		      c.auth.access.n_groups == 1);
		CHECK_STREQ(c.auth.access.groups[0].name, "devs");
		CHECK_STREQ(c.auth.access.repos[1].pattern, "team/**");
		CHECK(c.auth.access.repos[1].n_policies == 1);
		CHECK(c.auth.access.repos[1].policies[0].actions ==
		      (WH_ACTION_READ | WH_ACTION_CREATE));
		CHECK(c.auth.access.repos[0].anonymous_actions == WH_ACTION_READ);
		CHECK(c.auth.access.admin.actions == (WH_ACTION_READ | WH_ACTION_DELETE));
		CHECK(c.ratelimit.rate == 10 && c.ratelimit.n_rate_methods == 1);
		CHECK_STREQ(c.ratelimit.rate_methods[0].method, "GET");
		CHECK(c.ratelimit.n_trusted_proxies == 3 &&
		      c.ratelimit.trusted_proxies[0].bits == 96 + 8);
		CHECK(c.n_warnings == 0);
	}
	wh_config_free(&c);

	/* Zot: without authentication, access control is anonymous-only. */
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'http': {'accessControl': "
	            "{'repositories': {'**': {'defaultPolicy': ['read']}}}}}",
	            &c, err, sizeof(err)) == WH_EINVAL);
	CHECK(strstr(err, "anonymousPolicy") != NULL);
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'http': {'accessControl': "
	            "{'repositories': {'**': {'anonymousPolicy': ['read']}}}}}",
	            &c, err, sizeof(err)) == 0);
	wh_config_free(&c);
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'htpasswd': "
	            "{'path': '/h'}}, 'accessControl': {'repositories': {'**': "
	            "{'defaultPolicy': ['raed']}}}}}",
	            &c, err, sizeof(err)) == WH_EINVAL);
	CHECK(strstr(err, "defaultPolicy[0]") && strstr(err, "unknown action"));
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'http': {'wharf': "
	            "{'trustedProxies': ['10.0.0.0/33']}}}",
	            &c, err, sizeof(err)) == WH_EINVAL);
	CHECK(strstr(err, "http.wharf.trustedProxies[0]") != NULL);
}

static void test_durations(void)
{
	static const struct {
		const char *s;
		int64_t ms;
	} good[] = {
	    {"0", 0},
	    {"+0", 0},
	    {"0s", 0},
	    {"1h", 3600000},
	    {"30s", 30000},
	    {"1h30m", 5400000},
	    {"250ms", 250},
	    {"1.5h", 5400000},
	    {"1.5s", 1500},
	    {".5s", 500},
	    {"1.s", 1000},
	    {"+5s", 5000},
	    {"1m30s", 90000},
	    {"10m0s", 600000},
	    {"1h1m1s1ms", 3661001},
	    {"2h45m", 9900000},
	    {"1500000ns", 1},
	    {"2000us", 2},
	    {"3000\xc2\xb5s", 3},
	    {"4000\xce\xbcs", 4},
	    {"999us", 0},
	    {"0.001s", 1},
	    {"2562047h", 2562047LL * 3600000},
	    {"9223372036s", 9223372036000LL},
	};
	static const char *const invalid[] = {
	    "",    "1x",    "-1s", "-0",   "h",           "s",        "1",
	    "1.5", ".s",    ".",   "1h30", "1 h",         " 1h",      "1h ",
	    "1hh", "1h-1m", "1d",  "1H",   "9223372037s", "2562048h", "99999999999999999999ns",
	};

	for (size_t i = 0; i < WH_ARRAY_SIZE(good); i++) {
		int64_t ms = -1;
		int rc = wh_duration_parse(good[i].s, &ms);
		CHECK(rc == 0 && ms == good[i].ms);
		if (rc != 0 || ms != good[i].ms)
			fprintf(stderr, "  duration \"%s\": rc %d, %lld ms, want %lld\n", good[i].s,
			        rc, (long long)ms, (long long)good[i].ms);
	}
	for (size_t i = 0; i < WH_ARRAY_SIZE(invalid); i++) {
		int64_t ms = 12345;
		int rc = wh_duration_parse(invalid[i], &ms);
		CHECK(rc == WH_EINVAL && ms == 12345);
		if (rc != WH_EINVAL)
			fprintf(stderr, "  duration \"%s\" accepted\n", invalid[i]);
	}
	CHECK(wh_duration_parse(NULL, NULL) == WH_EINVAL);
}

static void test_load(void)
{
	wh_config c;
	char err[512], path[] = "/tmp/wharf-test-config-XXXXXX";
	char want[600];
	const char *text =
	    "{\n  \"storage\": {\"rootDirectory\": \"/r\"},\n  \"http\": {\"adress\": 1}\n}\n";
	int fd;

	CHECK(wh_config_load("/nonexistent/wharf.json", &c, err, sizeof(err)) == -ENOENT);
	CHECK_STREQ(err, "/nonexistent/wharf.json: cannot read: No such file or directory");
	CHECK(c.storage.root_dir == NULL);

	CHECK(wh_config_load("/tmp", &c, err, sizeof(err)) == -EISDIR);
	CHECK_STREQ(err, "/tmp: cannot read: Is a directory");

	fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	CHECK(wh_config_load(path, &c, err, sizeof(err)) == WH_EINVAL);
	snprintf(want, sizeof(want), "%s: http.adress: unknown key (did you mean \"address\"?)",
	         path);
	CHECK_STREQ(err, want);

	CHECK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0);
	text = "{\n  \"storage\": {\"rootDirectory\": \"/r\",}\n}\n";
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	CHECK(wh_config_load(path, &c, err, sizeof(err)) == WH_EINVAL);
	/* cJSON places some errors one byte past the offending one: check the line. */
	snprintf(want, sizeof(want), "%s: invalid JSON at line 2, column ", path);
	CHECK(strncmp(err, want, strlen(want)) == 0);

	CHECK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0);
	text = "{\"storage\": {\"rootDirectory\": \"/r\"}}";
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	CHECK(wh_config_load(path, &c, err, sizeof(err)) == 0);
	CHECK_STREQ(c.path, path);
	CHECK_STREQ(c.storage.root_dir, "/r");
	wh_config_free(&c);

	close(fd);
	unlink(path);
}

static void test_examples(void)
{
	char dir[1024], path[2048], err[512];
	struct dirent *e;
	DIR *d;
	int n = 0;
	wh_config c;

	snprintf(dir, sizeof(dir), "%s/examples", src_dir());
	d = opendir(dir);
	CHECK(d != NULL);
	if (!d) {
		fprintf(stderr, "cannot open %s (set WHARF_SRC to the source root)\n", dir);
		return;
	}
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		int rc;
		if (len < 5 || strcmp(e->d_name + len - 5, ".json") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		rc = wh_config_load(path, &c, err, sizeof(err));
		CHECK(rc == 0);
		if (rc) {
			fprintf(stderr, "  %s\n", err);
			continue;
		}
		/* Every example uses only keys Wharf implements. */
		CHECK(c.n_warnings == 0);
		for (int i = 0; i < c.n_warnings; i++)
			fprintf(stderr, "  %s: not implemented: %s\n", e->d_name, c.warnings[i]);
		wh_config_free(&c);
		n++;
	}
	closedir(d);
	CHECK(n >= 4);

	/* The classic one is the classic config. */
	snprintf(path, sizeof(path), "%s/config.json", dir);
	if (wh_config_load(path, &c, err, sizeof(err)) == 0) {
		check_classic(&c, "/var/lib/zot", "0.0.0.0");
		wh_config_free(&c);
	}

	snprintf(path, sizeof(path), "%s/config-mirror-root.json", dir);
	if (wh_config_load(path, &c, err, sizeof(err)) == 0) {
		CHECK(c.sync.n_registries == 1 && c.sync.registries[0].n_content == 1);
		if (c.sync.n_registries == 1 && c.sync.registries[0].n_content == 1)
			CHECK_STREQ(c.sync.registries[0].content[0].destination, "/");
		wh_config_free(&c);
	}

	snprintf(path, sizeof(path), "%s/config-local.json", dir);
	if (wh_config_load(path, &c, err, sizeof(err)) == 0) {
		CHECK(c.sync.n_registries == 0 && !c.sync.enable);
		wh_config_free(&c);
	}

	snprintf(path, sizeof(path), "%s/config-full.json", dir);
	CHECK(wh_config_load(path, &c, err, sizeof(err)) == 0);
	if (c.storage.root_dir) {
		CHECK(c.storage.gc_delay_ms == 3600000 &&
		      c.storage.gc_interval_ms == 24 * 3600000LL);
		CHECK(c.storage.commit);
		CHECK_STREQ(c.auth.realm, "wharf");
		CHECK_STREQ(c.external_url, "https://cache.example.com");
		CHECK(c.http.header_timeout_ms == 20000 && c.http.shutdown_timeout_ms == 10000);
		CHECK(c.http.max_connections == 1024 && c.http.max_headers == 100);
		CHECK_STREQ(c.log.output, "/var/log/wharf/wharf.log");
		CHECK(c.metrics.enable);
		CHECK_STREQ(c.sync.upstream.credentials_file, "/etc/wharf/credentials.json");
		CHECK(c.sync.manifest_check_interval_ms == 300000);
		CHECK(!c.sync.upstream.allow_private_redirects);
		CHECK(c.sync.n_registries == 3);
	}
	if (c.sync.n_registries == 3) {
		const wh_sync_registry *r = &c.sync.registries[2];
		CHECK(c.sync.registries[0].max_retries == 3 &&
		      c.sync.registries[0].retry_delay_ms == 300000);
		CHECK(c.sync.registries[0].manifest_check_interval_ms == 300000);
		CHECK(c.sync.registries[1].manifest_check_interval_ms == 600000);
		CHECK(r->n_urls == 2);
		CHECK_STREQ(r->urls[1], "https://registry-mirror.example.net:8443");
		CHECK_STREQ(r->cert_dir, "/etc/wharf/certs/registry.example.com");
		CHECK(r->max_retries == 5 && r->retry_delay_ms == 30000);
		CHECK(r->n_content == 2);
		if (r->n_content == 2) {
			CHECK_STREQ(r->content[0].prefix, "team/**");
			CHECK(r->content[0].strip_prefix);
			CHECK_STREQ(r->content[0].tags.regex, "^v[0-9]+\\.[0-9]+\\.[0-9]+$");
			CHECK_STREQ(r->content[0].tags.exclude_regex, "-(rc|beta)[0-9]*$");
			CHECK_STREQ(r->content[1].prefix, "base/{alpine,debian}");
		}
	}
	wh_config_free(&c);
}

/* extensions.scrub: present is enabled (as Zot), interval 24h by default and
 * at least 2h (raised, with a notice, as Zot), Wharf's rate and start delay
 * under wharf. */
static void test_scrub(void)
{
	wh_config c;
	char err[512] = "";

	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': {}}}", &c, err,
	            sizeof(err)) == 0);
	CHECK(c.scrub.enable && c.scrub.interval_ms == 24 * 3600000LL);
	CHECK(c.scrub.rate == -1 && c.scrub.start_delay_ms == 60000);
	CHECK(c.n_warnings == 0 && c.n_notices == 0);
	wh_config_free(&c);

	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': {'enable': true,"
	            " 'interval': '6h', 'wharf': {'rate': '50MiB', 'startDelay': '100ms'}}}}",
	            &c, err, sizeof(err)) == 0);
	CHECK(c.scrub.enable && c.scrub.interval_ms == 6 * 3600000LL);
	CHECK(c.scrub.rate == 50LL << 20 && c.scrub.start_delay_ms == 100);
	CHECK(c.n_notices == 0);
	wh_config_free(&c);

	/* Below 2h: 2h, and a notice naming the key. Rate 0: no limit. */
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'extensions': {'Scrub': {'interval':"
	            " '10m', 'wharf': {'rate': 0}}}}",
	            &c, err, sizeof(err)) == 0);
	CHECK(c.scrub.enable && c.scrub.interval_ms == 2 * 3600000LL && c.scrub.rate == 0);
	CHECK(c.n_notices == 1 && strstr(c.notices[0], "extensions.Scrub.interval: ") &&
	      strstr(c.notices[0], "raised to 2h"));
	wh_config_free(&c);

	/* Disabled: no notice, nothing runs. */
	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': {'enable':"
	            " false, 'interval': '1m'}}}",
	            &c, err, sizeof(err)) == 0);
	CHECK(!c.scrub.enable && c.n_notices == 0);
	wh_config_free(&c);

	static const struct {
		const char *json, *err;
	} refused[] = {
	    {"{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': {'interval': 'daily'}}}",
	     "extensions.scrub.interval: invalid duration"},
	    {"{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': {'wharf': {'rate':"
	     " '50mb'}}}}",
	     "extensions.scrub.wharf.rate: invalid size \"50mb\""},
	    {"{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': {'wharf': {'rate':"
	     " -5}}}}",
	     "extensions.scrub.wharf.rate: expected a size"},
	    {"{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': {'speed': 1}}}",
	     "extensions.scrub.speed: unknown key"},
	    {"{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': {'enable': 'yes'}}}",
	     "extensions.scrub.enable: expected a boolean"},
	    {"{'storage': {'rootDirectory': '/r'}, 'extensions': {'scrub': []}}",
	     "extensions.scrub: expected an object"},
	};
	for (size_t i = 0; i < WH_ARRAY_SIZE(refused); i++) {
		CHECK(parse(refused[i].json, &c, err, sizeof(err)) == WH_EINVAL);
		CHECK(strncmp(err, refused[i].err, strlen(refused[i].err)) == 0);
		if (strncmp(err, refused[i].err, strlen(refused[i].err)) != 0)
			fprintf(stderr, "  got \"%s\", want \"%s...\"\n", err, refused[i].err);
	}
}

/* Zot's weakly typed decoding (viper, mapstructure): strings for booleans
 * and integers, numbers for strings, a single value for a list. */
static void test_weak_typing(void)
{
	wh_config c;
	char err[1024] = "";
	int rc =
	    parse("{'storage': {'rootDirectory': '/r', 'dedupe': 'false', 'gc': 1},"
	          " 'http': {'address': '127.0.0.1', 'port': 5000,"
	          "          'wharf': {'maxHeaders': '50'}},"
	          " 'extensions': {'search': {'enable': 'true'},"
	          "   'sync': {'enable': 'true', 'registries': [{'urls': 'https://r.example.com',"
	          "     'onDemand': 'true', 'tlsVerify': 0, 'maxRetries': '3',"
	          "     'retryDelay': '5m', 'content': [{'prefix': '**'}]}]}}}",
	          &c, err, sizeof(err));
	CHECK(rc == 0);
	if (rc) {
		fprintf(stderr, "  weak typing: %s\n", err);
		return;
	}
	CHECK(!c.storage.dedupe && c.storage.gc);
	CHECK(c.http.port == 5000);
	CHECK(c.sync.n_registries == 1);
	if (c.sync.n_registries == 1) {
		const wh_sync_registry *r = &c.sync.registries[0];
		CHECK(r->n_urls == 1 && strcmp(r->urls[0], "https://r.example.com") == 0);
		CHECK(r->on_demand && !r->tls_verify && r->max_retries == 3);
	}
	wh_config_free(&c);
}

/* One run names every problem, each once, and a typo gets a suggestion. */
static void test_every_error(void)
{
	wh_config c;
	char err[2048] = "";
	int rc = parse("{'storage': {'rootDirectory': '/r', 'gcDelay': 'soon', 'dedup': true},"
	               " 'http': {'adress': 'x', 'port': 99999},"
	               " 'log': {'level': 'loud'}}",
	               &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL);
	CHECK(strstr(err, "storage.gcDelay: invalid duration \"soon\"") != NULL);
	CHECK(strstr(err, "storage.dedup: unknown key (did you mean \"dedupe\"?)") != NULL);
	CHECK(strstr(err, "http.adress: unknown key (did you mean \"address\"?)") != NULL);
	CHECK(strstr(err, "http.port: invalid port 99999") != NULL);
	CHECK(strstr(err, "log.level: ") != NULL);
	int lines = 1;
	for (const char *e = err; *e; e++)
		lines += *e == '\n';
	CHECK(lines == 5);
	if (lines != 5)
		fprintf(stderr, "  every error:\n%s\n", err);
	/* Far from every key: no suggestion. */
	rc = parse("{'storage': {'rootDirectory': '/r', 'zzzzzzzz': 1}}", &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL && strcmp(err, "storage.zzzzzzzz: unknown key") == 0);
}

/* The one error err holds, or false when it holds several (or none). */
static bool one_error(const char *err, const char *path)
{
	size_t n = strlen(path);
	return strncmp(err, path, n) == 0 && err[n] == ':' && !strchr(err, '\n');
}

/* What Zot's own examples/ (tests/integration/zot_examples/) need: a config
 * Wharf refuses names the key it refuses, and that key alone. */
static void test_zot_examples(void)
{
	wh_config c;
	char err[2048] = "";

	/* config-all-remote.json: a remote storageDriver needs no rootDirectory
	 * in Zot; the driver is the problem, not a missing root. */
	int rc = parse("{'storage': {'dedupe': true, 'storageDriver': {'name': 's3',"
	               " 'rootdirectory': '/zot', 'bucket': 'b'}}}",
	               &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL && one_error(err, "storage.storageDriver"));
	if (!one_error(err, "storage.storageDriver"))
		fprintf(stderr, "  storageDriver alone: %s\n", err);
	/* Without one, a root is required. */
	rc = parse("{'storage': {'dedupe': true}}", &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL && one_error(err, "storage.rootDirectory"));

	/* config-multiple.json and the others with subPaths: refused, not
	 * ignored, since ignoring them would serve those repositories from the
	 * wrong root and collect them with the wrong rules. The message says
	 * where Zot would have kept them. */
	rc = parse("{'storage': {'rootDirectory': '/r', 'subPaths': {'/a': {'rootDirectory':"
	           " '/tmp/zot1', 'dedupe': true}, '/b': {'rootDirectory': '/tmp/zot2'}}}}",
	           &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL && one_error(err, "storage.subPaths"));
	CHECK(strstr(err, "not implemented") && strstr(err, "\"a/...\" in \"/tmp/zot1\""));
	CHECK(strstr(err, "serve this config with Zot") != NULL); /* not cut short */
	rc = parse("{'Storage': {'RootDirectory': '/r', 'SUBPATHS': {'/a': {}}}}", &c, err,
	           sizeof(err));
	CHECK(rc == WH_EINVAL && one_error(err, "Storage.SUBPATHS"));
	rc =
	    parse("{'storage': {'rootDirectory': '/r', 'subPaths': ['/a']}}", &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL && strstr(err, "storage.subPaths: expected an object"));
	/* Empty, or null: nothing is routed elsewhere. */
	CHECK(parse("{'storage': {'rootDirectory': '/r', 'subPaths': {}}}", &c, err, sizeof(err)) ==
	      0);
	wh_config_free(&c);
	CHECK(parse("{'storage': {'rootDirectory': '/r', 'subPaths': null}}", &c, err,
	            sizeof(err)) == 0);
	wh_config_free(&c);

	/* config-ldap.json, config-bearer-oidc-workload.json,
	 * config-openid-claim-mapping.json: a refused authentication with
	 * access-control policies is that one error; the config does not lack
	 * authentication (Zot counts each of these), so accessControl's rule is
	 * not broken too. */
	static const char *const authn[][2] = {
	    {"'ldap': {'address': 'l', 'baseDN': 'dc=x', 'userAttribute': 'uid'}",
	     "http.auth.ldap"},
	    {"'bearer': {'realm': 'zot', 'oidc': [{'issuer': 'https://i.example.com'}]}",
	     "http.auth.bearer"},
	    {"'openid': {'providers': {'oidc': {'issuer': 'https://i.example.com'}}}",
	     "http.auth.openid"},
	    {"'apikey': 'true'", "http.auth.apikey"},
	    {"'mtls': {'identityAttributes': ['CommonName']}", "http.auth.mtls"},
	};
	for (size_t i = 0; i < WH_ARRAY_SIZE(authn); i++) {
		char json[1024];
		FMT(json, sizeof(json),
		    "{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {%s}, 'accessControl':"
		    " {'repositories': {'**': {'policies': [{'users': ['a'], 'actions': ['read']}],"
		    " 'defaultPolicy': ['read']}}}}}",
		    authn[i][0]);
		rc = parse(json, &c, err, sizeof(err));
		CHECK(rc == WH_EINVAL && one_error(err, authn[i][1]));
		if (!one_error(err, authn[i][1]))
			fprintf(stderr, "  %s: %s\n", authn[i][1], err);
	}
	/* apikey false asks for nothing: no authentication, so the rule holds. */
	rc = parse("{'storage': {'rootDirectory': '/r'}, 'http': {'auth': {'apikey': false},"
	           " 'accessControl': {'repositories': {'**': {'defaultPolicy': ['read']}}}}}",
	           &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL && one_error(err, "http.accessControl"));

	/* config-sync-gcp-credential-helper.json: "credentialsFile": "" is no
	 * file, as in Zot; verify (and serve) read nothing. A missing file is
	 * still a problem. */
	char dir[] = "/tmp/wharf-test-config-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	for (int missing = 0; missing < 2; missing++) {
		char json[1024], **problems = NULL;
		int n = 0;
		FMT(json, sizeof(json),
		    "{'storage': {'rootDirectory': '%s/data'}, 'http': {'address': '127.0.0.1',"
		    " 'port': '8080'}, 'extensions': {'sync': {'credentialsFile': '%s%s',"
		    " 'registries': [{'urls': ['https://registry.example.com'], 'onDemand': true,"
		    " 'credentialHelper': 'gcp'}]}}}",
		    dir, missing ? dir : "", missing ? "/nope.json" : "");
		rc = parse(json, &c, err, sizeof(err));
		CHECK(rc == 0);
		if (rc)
			continue;
		CHECK(wh_verify_runtime(&c, false, &problems, &n) == missing);
		if (missing)
			CHECK(n == 1 && strstr(problems[0], "extensions.sync.credentialsFile"));
		else if (n)
			fprintf(stderr, "  credentialsFile \"\": %s\n", problems[0]);
		wh_strv_free(problems, n);
		wh_config_free(&c);
	}
	check_rm_rf(dir);

	/* The retention example of Zot's examples/README.md writes "KeepTags":
	 * keys match whatever their case, so it is keepTags. */
	rc = parse("{'storage': {'rootDirectory': '/r', 'retention': {'policies': ["
	           "{'repositories': ['infra/*'], 'KeepTags': [{'patterns': ['v2.*', '.*-prod']},"
	           " {'patterns': ['v3.*'], 'PulledWithin': '168h'}]},"
	           "{'repositories': ['**'], 'keepTags': [{'mostRecentlyPushedCount': 10}]}]}}}",
	           &c, err, sizeof(err));
	CHECK(rc == 0);
	if (rc == 0) {
		const wh_retention_settings *r = &c.storage.retention;
		CHECK(r->n_policies == 2);
		CHECK(r->n_policies == 2 && r->policies[0].n_keep_tags == 2 &&
		      r->policies[0].keep_tags[0].n_patterns == 2 &&
		      r->policies[0].keep_tags[1].rules.pulled_within_ms == 168 * WH_HOUR_MS &&
		      r->policies[1].n_keep_tags == 1 &&
		      r->policies[1].keep_tags[0].rules.most_recently_pushed_count == 10);
		CHECK(c.n_warnings == 0);
		wh_config_free(&c);
	} else {
		fprintf(stderr, "  KeepTags: %s\n", err);
	}
}

/* Zot reads config.yaml as config.json: the same tree, the same checks. */
static void test_yaml(void)
{
	static const char yaml[] = "distspecversion: 1.1.1\n"
	                           "storage:\n"
	                           "  rootdirectory: /tmp/zot\n"
	                           "  gc: true\n"
	                           "  gcdelay: 2h\n"
	                           "http:\n"
	                           "  address: 127.0.0.1\n"
	                           "  port: 8080\n"
	                           "log:\n"
	                           "  level: debug\n"
	                           "extensions:\n"
	                           "  sync:\n"
	                           "    enable: 'true'\n"
	                           "    registries:\n"
	                           "      - urls: [https://r.example.com]\n"
	                           "        ondemand: true\n"
	                           "        content: &c\n"
	                           "          - prefix: '**'\n"
	                           "      - urls: https://s.example.com\n"
	                           "        ondemand: yes_not_a_bool_in_yaml12\n"
	                           "        content: *c\n";
	wh_config c;
	char err[1024] = "";
	int rc = wh_config_parse_yaml(yaml, strlen(yaml), &c, err, sizeof(err));
	/* "yes_..." is a string, not a boolean: the one error. */
	CHECK(rc == WH_EINVAL);
	CHECK(strcmp(err, "extensions.sync.registries[1].onDemand: expected a boolean") == 0 ||
	      strcmp(err, "extensions.sync.registries[1].ondemand: expected a boolean") == 0);
	char *fixed = strdup(yaml);
	char *word = strstr(fixed, "yes_not_a_bool_in_yaml12");
	memcpy(word, "false                   ", 24);
	rc = wh_config_parse_yaml(fixed, strlen(fixed), &c, err, sizeof(err));
	CHECK(rc == 0);
	if (rc == 0) {
		CHECK_STREQ(c.storage.root_dir, "/tmp/zot");
		CHECK(c.storage.gc_delay_ms == 2 * 3600 * 1000);
		CHECK(c.http.port == 8080);
		CHECK(c.sync.n_registries == 2);
		wh_config_free(&c);
	} else {
		fprintf(stderr, "  yaml: %s\n", err);
	}
	free(fixed);
	/* Syntax errors say where; a billion laughs is refused, not expanded. */
	rc = wh_config_parse_yaml("storage:\n  rootDirectory: [a\n", 30, &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL && strstr(err, "invalid YAML") && strstr(err, "line"));
	char laughs[4096];
	size_t at = (size_t)snprintf(laughs, sizeof(laughs), "a: &a [x,x,x,x,x,x,x,x,x,x]\n");
	for (char n = 'b'; n <= 'j'; n++)
		at += (size_t)snprintf(laughs + at, sizeof(laughs) - at,
		                       "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", n, n,
		                       n - 1, n - 1, n - 1, n - 1, n - 1, n - 1, n - 1, n - 1,
		                       n - 1, n - 1);
	rc = wh_config_parse_yaml(laughs, at, &c, err, sizeof(err));
	CHECK(rc == WH_EINVAL && strstr(err, "too many nodes"));
}

static void test_metrics(void)
{
	wh_config c;
	char err[512] = "";

	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'extensions': {'metrics': {'prometheus':"
	            " {'path': '/prom'}}}}",
	            &c, err, sizeof(err)) == 0);
	CHECK(c.metrics.enable && c.n_warnings == 0);
	CHECK_STREQ(c.metrics.path, "/prom");
	wh_config_free(&c);

	CHECK(parse("{'storage': {'rootDirectory': '/r'}, 'extensions': {'metrics': {'enable':"
	            " false}}}",
	            &c, err, sizeof(err)) == 0);
	CHECK(!c.metrics.enable && c.metrics.path == NULL);
	wh_config_free(&c);

	static const char *const refused[] = {"'metrics'", "'/v2/metrics'", "'/v2'", "''",
	                                      "'/m?x=1'"};
	for (size_t i = 0; i < WH_ARRAY_SIZE(refused); i++) {
		char json[256];
		FMT(json, sizeof(json),
		    "{'storage': {'rootDirectory': '/r'}, 'extensions': {'metrics': {'prometheus':"
		    " {'path': %s}}}}",
		    refused[i]);
		CHECK(parse(json, &c, err, sizeof(err)) == WH_EINVAL);
		CHECK(strstr(err, "extensions.metrics.prometheus.path: ") == err);
	}
}

int main(void)
{
	test_classic();
	test_default();
	test_defaults_when_absent();
	test_errors();
	test_error_buffer();
	test_warnings();
	test_auth();
	test_durations();
	test_scrub();
	test_metrics();
	test_load();
	test_examples();
	test_weak_typing();
	test_every_error();
	test_yaml();
	test_zot_examples();
	CHECK_DONE();
}
