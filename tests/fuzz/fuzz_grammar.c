/* The OCI distribution grammars of src/oci/ref.c, written by hand there, against
 * the spec's regular expressions run by PCRE2 here: any input on which the
 * two disagree aborts. Names, tags and digests come from request URLs and
 * query strings, and a name that passes becomes a path under rootDirectory. */
#include "fuzz.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>

#include "wharf/oci/ref.h"

/* The distribution spec (and the image spec for digests), verbatim but for
 * non-capturing groups. Anchored at both ends when compiled. */
#define RE_NAME   "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*)*"
#define RE_TAG    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"
#define RE_DIGEST "[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+"
#define RE_SHA256 "sha256:[a-f0-9]{64}"
#define RE_SHA512 "sha512:[a-f0-9]{128}"

static pcre2_code *re_name, *re_tag, *re_digest, *re_sha256, *re_sha512, *re_colon;
static pcre2_match_data *md;

static pcre2_code *compile(const char *pattern, uint32_t options)
{
	int err;
	PCRE2_SIZE off;
	pcre2_code *re =
	    pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, options, &err, &off, NULL);
	if (!re) {
		fprintf(stderr, "cannot compile %s at %zu\n", pattern, (size_t)off);
		abort();
	}
	return re;
}

static bool matches(const pcre2_code *re, const char *s, size_t len)
{
	int rc = pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL);
	if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
		fprintf(stderr, "pcre2_match failed: %d\n", rc);
		abort(); /* the oracle itself failed: not a verdict */
	}
	return rc >= 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const uint32_t whole = PCRE2_ANCHORED | PCRE2_ENDANCHORED;
	re_name = compile(RE_NAME, whole);
	re_tag = compile(RE_TAG, whole);
	re_digest = compile(RE_DIGEST, whole);
	re_sha256 = compile(RE_SHA256, whole);
	re_sha512 = compile(RE_SHA512, whole);
	re_colon = compile(":", 0);
	md = pcre2_match_data_create(4, NULL);
	/* The NULL cases, once. */
	FUZZ_ASSERT(!wh_name_valid(NULL, 0) && !wh_tag_valid(NULL, 0));
	FUZZ_ASSERT(wh_digest_check(NULL, 0) == WH_DIGEST_BAD && !wh_ref_is_digest(NULL, 0));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes: ASan then catches a read past the end. */
	char *s = malloc(size ? size : 1);
	if (!s)
		abort();
	memcpy(s, data, size);

	bool name = wh_name_valid(s, size);
	FUZZ_ASSERT(name == (size <= WH_NAME_MAX && matches(re_name, s, size)));

	bool tag = wh_tag_valid(s, size);
	FUZZ_ASSERT(tag == matches(re_tag, s, size));

	int digest = wh_digest_check(s, size);
	int want = WH_DIGEST_BAD;
	/* The image spec's registered algorithms restrict the encoded part;
	 * any other well-formed one is not Wharf's. */
	if (matches(re_digest, s, size))
		want = size >= 7 && memcmp(s, "sha256:", 7) == 0
		           ? (matches(re_sha256, s, size) ? WH_DIGEST_OK : WH_DIGEST_BAD)
		       : size >= 7 && memcmp(s, "sha512:", 7) == 0
		           ? (matches(re_sha512, s, size) ? WH_DIGEST_OK : WH_DIGEST_BAD)
		           : WH_DIGEST_UNSUPPORTED;
	if (digest != want)
		fprintf(stderr, "wh_digest_check: %d, the spec says %d\n", digest, want);
	FUZZ_ASSERT(digest == want);

	bool is_digest = wh_ref_is_digest(s, size);
	FUZZ_ASSERT(is_digest == matches(re_colon, s, size));
	/* A reference is a tag or a digest, never both; a name is never a digest. */
	FUZZ_ASSERT(!(tag && is_digest) && !(name && is_digest));
	FUZZ_ASSERT(digest == WH_DIGEST_BAD || is_digest);

	free(s);
	return 0;
}
