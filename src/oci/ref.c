/* Grammars from the OCI distribution spec, written by hand: the name grammar
 * is small enough that a state machine is clearer than a regex engine, and
 * it is the wall between URLs and the filesystem, so it must be exact. */
#include "wharf/oci/ref.h"

#include <string.h>

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

bool wh_name_storable(const char *name)
{
	if (!wh_name_valid(name, strlen(name)))
		return false;
	const char *p = name;
	bool after_blobs = false;
	while (*p) {
		size_t n = strcspn(p, "/");
		bool first = p == name;
		if (!first && ((n == 10 && !strncmp(p, "index.json", n)) ||
		               (n == 10 && !strncmp(p, "oci-layout", n)) ||
		               (after_blobs && wh_digest_alg_named(p, n) != WH_ALG_NONE)))
			return false;
		after_blobs = !first && n == 5 && !strncmp(p, "blobs", n);
		p += n;
		if (*p == '/')
			p++;
	}
	return true;
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

/* The encoded part of a registered algorithm: exactly n lower-case hex. */
static bool hex_of_len(const char *s, size_t len, size_t n)
{
	if (len != n)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_lower_hex(s[i]))
			return false;
	return true;
}

int wh_digest_check(const char *s, size_t len)
{
	const char *colon;
	size_t alen, i;

	if (!s || len == 0)
		return WH_DIGEST_BAD;
	if (len == WH_SHA256_LEN && memcmp(s, "sha256:", 7) == 0)
		/* The common case, checked on every blob and manifest request. */
		return hex_of_len(s + 7, len - 7, WH_SHA256_HEX) ? WH_DIGEST_OK : WH_DIGEST_BAD;
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

	/* The registered algorithms restrict the encoded part further. */
	switch (wh_digest_alg_named(s, alen)) {
	case WH_ALG_SHA256:
		return hex_of_len(colon + 1, len - alen - 1, WH_SHA256_HEX) ? WH_DIGEST_OK
		                                                            : WH_DIGEST_BAD;
	case WH_ALG_SHA512:
		return hex_of_len(colon + 1, len - alen - 1, WH_SHA512_HEX) ? WH_DIGEST_OK
		                                                            : WH_DIGEST_BAD;
	default:
		return WH_DIGEST_UNSUPPORTED;
	}
}

wh_digest_alg wh_digest_alg_named(const char *s, size_t len)
{
	if (s && len == 6 && memcmp(s, "sha256", 6) == 0)
		return WH_ALG_SHA256;
	if (s && len == 6 && memcmp(s, "sha512", 6) == 0)
		return WH_ALG_SHA512;
	return WH_ALG_NONE;
}

wh_digest_alg wh_digest_alg_of(const char *digest)
{
	const char *colon = digest ? strchr(digest, ':') : NULL;
	return colon ? wh_digest_alg_named(digest, (size_t)(colon - digest)) : WH_ALG_NONE;
}

const char *wh_digest_alg_name(wh_digest_alg alg)
{
	return alg == WH_ALG_SHA256 ? "sha256" : alg == WH_ALG_SHA512 ? "sha512" : "";
}

const char *wh_digest_encoded(const char *digest)
{
	const char *colon = strchr(digest, ':');
	return colon ? colon + 1 : digest + strlen(digest);
}

void wh_digest_copy(char dst[WH_DIGEST_LEN + 1], const char *src)
{
	size_t n = strnlen(src, WH_DIGEST_LEN);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

bool wh_ref_is_digest(const char *s, size_t len)
{
	return s && memchr(s, ':', len) != NULL;
}
