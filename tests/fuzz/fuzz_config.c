/* The configuration loader (src/app/config.c): whole documents, as
 * wh_config_load reads them from disk, through wh_config_parse and, for
 * YAML files, wh_config_parse_yaml (src/base/yaml.c). A document is
 * accepted with every value in range, or refused with a message and nothing
 * to free. The same bytes, when short, are also tried as a duration. */
#include "fuzz.h"

#include <stdbool.h>
#include <strings.h>

#include "wharf/base/common.h"
#include "wharf/app/config.h"
#include "wharf/base/log.h"

static void check_ok(const wh_config *c)
{
	FUZZ_ASSERT(c->storage.root_dir && *c->storage.root_dir && c->http.address);
	FUZZ_ASSERT(c->http.port >= 1 && c->http.port <= 65535);
	FUZZ_ASSERT(c->http.header_timeout_ms > 0 && c->http.idle_timeout_ms > 0 &&
	            c->http.body_timeout_ms > 0 && c->http.send_timeout_ms > 0 &&
	            c->http.shutdown_timeout_ms >= 0);
	FUZZ_ASSERT(c->http.max_connections > 0 && c->http.max_header_bytes > 0 &&
	            c->http.max_headers > 0);
	FUZZ_ASSERT(c->storage.gc_delay_ms >= 0 && c->storage.gc_interval_ms >= 0);
	FUZZ_ASSERT(c->log.level >= WH_LOG_DEBUG && c->log.level <= WH_LOG_ERROR);
	FUZZ_ASSERT(c->sync.n_registries >= 0 && (c->sync.n_registries == 0 || c->sync.registries));
	for (int i = 0; i < c->sync.n_registries; i++) {
		const wh_sync_registry *r = &c->sync.registries[i];
		FUZZ_ASSERT(r->n_urls >= 1);
		for (int j = 0; j < r->n_urls; j++)
			FUZZ_ASSERT(r->urls[j] && strncasecmp(r->urls[j], "http", 4) == 0);
		FUZZ_ASSERT(r->max_retries >= 0 && r->retry_delay_ms >= 0);
		FUZZ_ASSERT(r->manifest_check_interval_ms >= 0);
		for (int j = 0; j < r->n_content; j++)
			FUZZ_ASSERT(r->content[j].prefix);
	}
	for (int i = 0; i < c->n_warnings; i++)
		FUZZ_ASSERT(c->warnings[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly size bytes, not terminated, as the contract allows. */
	char *json = malloc(size ? size : 1);
	char err[200];
	wh_config cfg;
	if (!json)
		abort();
	memcpy(json, data, size);
	memset(err, 'x', sizeof(err));
	memset(&cfg, 0x5a, sizeof(cfg));
	/* As JSON, then as YAML (libyaml's events into the same tree). */
	for (int yaml = 0; yaml < 2; yaml++) {
		memset(err, 'x', sizeof(err));
		memset(&cfg, 0x5a, sizeof(cfg));
		int rc = yaml ? wh_config_parse_yaml(json, size, &cfg, err, sizeof(err))
		              : wh_config_parse(json, size, &cfg, err, sizeof(err));
		FUZZ_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
		if (rc == 0) {
			FUZZ_ASSERT(err[0] == '\0');
			check_ok(&cfg);
			wh_config_free(&cfg);
		} else {
			static const wh_config zero;
			FUZZ_ASSERT(rc == WH_EINVAL);
			FUZZ_ASSERT(err[0] != '\0');
			FUZZ_ASSERT(memcmp(&cfg, &zero, sizeof(cfg)) == 0);
		}
	}
	free(json);

	if (size < 64) {
		char *s = fuzz_strndup(data, size);
		int64_t ms = -1;
		if (wh_duration_parse(s, &ms) == 0)
			FUZZ_ASSERT(ms >= 0);
		free(s);
	}
	return 0;
}
