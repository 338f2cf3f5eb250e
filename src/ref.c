/* Grammars from the OCI distribution spec, written by hand: the name grammar
 * is small enough that a state machine is clearer than a regex engine, and
 * it is the wall between URLs and the filesystem, so it must be exact. */
#include "wharf/ref.h"

#include <string.h>

#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

_Static_assert(sizeof(mbedtls_sha256_context) <= sizeof(((wh_sha256 *)0)->opaque),
               "wh_sha256 too small for mbedtls_sha256_context");
_Static_assert(_Alignof(mbedtls_sha256_context) <= _Alignof(uint64_t),
               "wh_sha256 under-aligned for mbedtls_sha256_context");

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_lower_hex(char c)
{
	return (c >= 'a' && c <= 'f') || (c >= '0' && c <= '9');
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*. Returns the index
 * just past it, or 0 when s[i..] does not start with a valid component. */
static size_t name_component(const char *s, size_t len, size_t i)
{
	size_t start = i;

	while (i < len && is_lower_alnum(s[i]))
		i++;
	if (i == start)
		return 0;
	while (i < len && (s[i] == '.' || s[i] == '_' || s[i] == '-')) {
		if (s[i] == '.') {
			i++;
		} else if (s[i] == '_') {
			i++;
			if (i < len && s[i] == '_')
				i++;
		} else {
			while (i < len && s[i] == '-')
				i++;
		}
		start = i;
		while (i < len && is_lower_alnum(s[i]))
			i++;
		if (i == start)
			return 0;
	}
	return i;
}

bool wh_name_valid(const char *s, size_t len)
{
	size_t i = 0;

	if (!s || len == 0 || len > WH_NAME_MAX)
		return false;
	for (;;) {
		i = name_component(s, len, i);
		if (i == 0)
			return false;
		if (i == len)
			return true;
		if (s[i] != '/')
			return false;
		i++;
	}
}

bool wh_tag_valid(const char *s, size_t len)
{
	if (!s || len == 0 || len > WH_TAG_MAX)
		return false;
	if (!is_alnum(s[0]) && s[0] != '_')
		return false;
	for (size_t i = 1; i < len; i++) {
		if (!is_alnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return false;
	}
	return true;
}

int wh_digest_check(const char *s, size_t len)
{
	const char *colon;
	size_t alen, i;

	if (!s || len == 0)
		return WH_DIGEST_BAD;
	colon = memchr(s, ':', len);
	if (!colon)
		return WH_DIGEST_BAD;
	alen = (size_t)(colon - s);

	/* algorithm ::= [a-z0-9]+ ([+._-] [a-z0-9]+)* */
	if (alen == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[alen - 1]))
		return WH_DIGEST_BAD;
	for (i = 1; i < alen; i++) {
		char c = s[i];
		if (is_lower_alnum(c))
			continue;
		if (c != '+' && c != '.' && c != '_' && c != '-')
			return WH_DIGEST_BAD;
		if (!is_lower_alnum(s[i - 1]))
			return WH_DIGEST_BAD; /* two separators in a row */
	}

	/* encoded ::= [a-zA-Z0-9=_-]+ */
	if (alen + 1 == len)
		return WH_DIGEST_BAD;
	for (i = alen + 1; i < len; i++) {
		char c = s[i];
		if (!is_alnum(c) && c != '=' && c != '_' && c != '-')
			return WH_DIGEST_BAD;
	}

	if (alen == 6 && memcmp(s, "sha256", 6) == 0) {
		if (len - alen - 1 != WH_DIGEST_HEX)
			return WH_DIGEST_BAD;
		for (i = alen + 1; i < len; i++) {
			if (!is_lower_hex(s[i]))
				return WH_DIGEST_BAD;
		}
		return WH_DIGEST_OK;
	}
	return WH_DIGEST_UNSUPPORTED;
}

bool wh_ref_is_digest(const char *s, size_t len)
{
	return s && memchr(s, ':', len) != NULL;
}

/* mbedTLS 3 dropped the _ret suffix (and the void variants). The return
 * values only report hardware-accelerator failures, which the software
 * implementation never has. */
void wh_sha256_init(wh_sha256 *h)
{
	mbedtls_sha256_context *ctx = (mbedtls_sha256_context *)h->opaque;

	mbedtls_sha256_init(ctx);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	(void)mbedtls_sha256_starts(ctx, 0);
#else
	(void)mbedtls_sha256_starts_ret(ctx, 0);
#endif
}

void wh_sha256_update(wh_sha256 *h, const void *data, size_t len)
{
	mbedtls_sha256_context *ctx = (mbedtls_sha256_context *)h->opaque;

	if (len == 0)
		return;
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	(void)mbedtls_sha256_update(ctx, data, len);
#else
	(void)mbedtls_sha256_update_ret(ctx, data, len);
#endif
}

void wh_sha256_final(wh_sha256 *h, char out[WH_DIGEST_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	mbedtls_sha256_context *ctx = (mbedtls_sha256_context *)h->opaque;
	unsigned char sum[32];

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
	(void)mbedtls_sha256_finish(ctx, sum);
#else
	(void)mbedtls_sha256_finish_ret(ctx, sum);
#endif
	mbedtls_sha256_free(ctx);
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < sizeof(sum); i++) {
		out[7 + 2 * i] = hex[sum[i] >> 4];
		out[7 + 2 * i + 1] = hex[sum[i] & 0xf];
	}
	out[WH_DIGEST_LEN] = '\0';
}

void wh_sha256_digest(const void *data, size_t len, char out[WH_DIGEST_LEN + 1])
{
	wh_sha256 h;

	wh_sha256_init(&h);
	wh_sha256_update(&h, data, len);
	wh_sha256_final(&h, out);
}
