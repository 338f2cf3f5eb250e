/* What the upstream client parses from another registry's answers, white-box
 * (the .c is included, as tests/unit/test_upstream.c does, to reach its
 * static functions): the response header lines curl hands to header_cb, the
 * WWW-Authenticate challenge (parse_challenge), a token server's JSON answer
 * as write_cb collects it and token_done reads it, and the credentials file
 * read from disk (load_creds), and
 *
 * the value of a Link header (link_next).
 *
 * Input: one byte that picks the parser (its low three bits: 0-3, 4 for a
 * Link header, 5-7 as 1-3), then its bytes. */
#include "fuzz.h"

#include <sys/mman.h>
#include <unistd.h>

#include "../../src/cache/upstream.c"

#define REGISTRY "https://registry.example.com"

static void check_challenge(const char *h)
{
	struct challenge c;
	memset(&c, 0x5a, sizeof(c));
	parse_challenge(h, &c);
	FUZZ_ASSERT(memchr(c.scheme, '\0', sizeof(c.scheme)));
	FUZZ_ASSERT(memchr(c.realm, '\0', sizeof(c.realm)));
	FUZZ_ASSERT(memchr(c.service, '\0', sizeof(c.service)));
	FUZZ_ASSERT(memchr(c.scope, '\0', sizeof(c.scope)));
	/* The scheme is the first word, cut to what fits. */
	size_t n = strcspn(h, " ");
	FUZZ_ASSERT(strncmp(c.scheme, h, WH_MIN(n, sizeof(c.scheme) - 1)) == 0);
	/* What main_done and start_token do with a realm short of curl: where
	 * credentials may go, and the base of a URL. */
	char base[512];
	(void)realm_trusted(REGISTRY, c.realm);
	wh_upstream_base(c.realm, base, sizeof(base));
	FUZZ_ASSERT(memchr(base, '\0', sizeof(base)));
}

/* Lines as curl passes them: one header line per call, its line end
 * included, in a buffer of exactly its length. */
static void headers(const uint8_t *data, size_t size)
{
	wh_up_req *r = wh_calloc(1, sizeof(*r));
	r->method = size % 2 ? "HEAD" : "GET";
	r->phase = size % 3 ? PH_MAIN : PH_TOKEN;
	r->opts.max_body = size % 5 ? (int64_t)(size * 1000) : -1;
	r->clen = -1;
	r->retry_after = -1;
	const uint8_t *p = data, *end = data + size;
	while (p < end) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		char *line = malloc(n + 1);
		if (!line)
			abort();
		memcpy(line, p, n);
		line[n] = '\n'; /* a last line without one gets it */
		p += n;
		size_t len = nl ? n : n + 1;
		size_t got = header_cb(line, 1, len, r);
		free(line);
		FUZZ_ASSERT(got == len || got == 0);
		if (got == 0) {
			FUZZ_ASSERT(r->fail != 0 && r->fail_why);
			break;
		}
	}
	FUZZ_ASSERT(r->status >= 0 && r->status <= 999);
	FUZZ_ASSERT(r->clen >= -1 && r->retry_after >= -1 && r->retry_after < 86400);
	FUZZ_ASSERT(memchr(r->ctype, '\0', sizeof(r->ctype)) &&
	            memchr(r->digest, '\0', sizeof(r->digest)));
	FUZZ_ASSERT(!r->ctype[strcspn(r->ctype, "; \t\r\n")]);
	if (r->challenge)
		check_challenge(r->challenge);
	reset_response(r);
	free(r);
}

/* The token server's body: collected by write_cb (bounded), then read as
 * token_done reads it. */
static void token(const uint8_t *data, size_t size)
{
	wh_up_req *r = wh_calloc(1, sizeof(*r));
	wh_upstream *up = wh_calloc(1, sizeof(*up));
	r->up = up;
	r->phase = PH_TOKEN;
	/* In pieces, as they come off the wire. */
	for (size_t off = 0, k = 1; off < size; k = k * 3 + 1) {
		size_t n = WH_MIN(k, size - off);
		char *piece = malloc(n);
		if (!piece)
			abort();
		memcpy(piece, data + off, n);
		size_t got = write_cb(piece, 1, n, r);
		free(piece);
		if (got != n) {
			FUZZ_ASSERT(got == 0 && r->tlen + n > TOKEN_BODY_MAX);
			break;
		}
		off += n;
	}
	FUZZ_ASSERT(r->tlen <= TOKEN_BODY_MAX && (!r->tbuf || r->tbuf[r->tlen] == '\0'));

	cJSON *doc = r->tbuf ? cJSON_Parse(r->tbuf) : NULL;
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, "token");
	if (!cJSON_IsString(tok))
		tok = cJSON_GetObjectItemCaseSensitive(doc, "access_token");
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(doc, "expires_in");
	int64_t ttl = token_ttl_s(exp);
	FUZZ_ASSERT(ttl >= 1 && ttl <= TOKEN_TTL_MAX_S);
	if (cJSON_IsString(tok) && tok->valuestring[0]) {
		uint64_t before = wh_now_ms();
		token_put(up, REGISTRY "|repository:a:pull", tok->valuestring, ttl);
		FUZZ_ASSERT(up->n_tokens == 1);
		FUZZ_ASSERT(up->tokens[0].expires_ms >= before &&
		            up->tokens[0].expires_ms <= wh_now_ms() + (uint64_t)ttl * 1000u);
		const char *got = token_get(up, REGISTRY "|repository:a:pull");
		FUZZ_ASSERT(!got || strcmp(got, tok->valuestring) == 0);
		free(up->tokens[0].key);
		free(up->tokens[0].value);
	}
	cJSON_Delete(doc);
	reset_response(r);
	free(r);
	free(up);
}

/* extensions.sync.credentialsFile, read from a file as the server does. */
static void creds(const uint8_t *data, size_t size)
{
	int fd = memfd_create("creds", MFD_CLOEXEC);
	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	char path[64], err[256];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	wh_upstream *up = wh_calloc(1, sizeof(*up));
	memset(err, 'x', sizeof(err));
	if (load_creds(up, path, err, sizeof(err)) == 0) {
		/* Every host filed is found again by a URL of its own. */
		for (int i = 0; i < up->n_creds; i++) {
			char url[512];
			const char *h = up->creds[i].host;
			if (strlen(h) > 200 || strpbrk(h, "/?#@") || !*h)
				continue;
			snprintf(url, sizeof(url), "https://%s/v2/", h);
			const struct cred *c = find_cred(up, url);
			FUZZ_ASSERT(c != NULL);
		}
	} else {
		FUZZ_ASSERT(memchr(err, '\0', sizeof(err)));
	}
	free_creds(up);
	free(up);
	close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	wh_log_setup(WH_LOG_OFF, NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	int mode = data[0] & 7; /* 0-3 as they always were, 4 a Link header */
	if (mode > 4)
		mode &= 3;
	data++;
	size--;
	if (mode == 4) {
		/* A Link header's value (paged listings): the next target, whole
		 * or nothing, always terminated. */
		char out[64];
		memset(out, 0x5a, sizeof(out));
		link_next((const char *)data, size, out, sizeof(out));
		FUZZ_ASSERT(memchr(out, '\0', sizeof(out)));
		return 0;
	}
	if (mode == 0) {
		char *h = fuzz_strndup(data, size);
		check_challenge(h);
		free(h);
	} else if (mode == 1) {
		headers(data, size);
	} else if (mode == 2) {
		token(data, size);
	} else {
		creds(data, size);
	}
	return 0;
}
