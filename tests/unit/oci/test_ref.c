/* The OCI grammars (they keep URLs from reaching outside the root) and sha256. */
#include "check.h"

#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"
#include "wharf/oci/ref.h"

static bool name_ok(const char *s)
{
	return wh_name_valid(s, strlen(s));
}

static bool tag_ok(const char *s)
{
	return wh_tag_valid(s, strlen(s));
}

static int digest(const char *s)
{
	return wh_digest_check(s, strlen(s));
}

static const char *const good_names[] = {
    "a",
    "0",
    "library/nginx",
    "dockerhub/library/nginx",
    "ghcr/project-zot/zot-linux-amd64",
    "a.b",
    "a_b",
    "a__b",
    "a-b",
    "a--b",
    "a---------b",
    "a.b_c__d-e--f",
    "a/b/c/d/e/f/g",
    "0a/1b/2c",
    "my.registry/x",
    "blobs",
    "a/blobs",
};

static const char *const bad_names[] = {
    "",       "A",      "Library/nginx",
    "a/B",    "..",     ".",
    "a/../b", "a/./b",  "../a",
    "a/..",   "%2e%2e", "a%2fb",
    "a\\b",   "a//b",   "/a",
    "a/",     "/",      "a___b",
    "a..b",   "a._b",   "a_.b",
    "a-.b",   "a.-b",   "a_-b",
    "-a",     "a-",     "_a",
    "a_",     ".a",     "a.",
    "a b",    "a:b",    "a@b",
    "a\nb",   ".wharf", "a/.uploads",
    "a/-b",   "a/b-",   "é",
};

static void test_names(void)
{
	char buf[300];

	for (size_t i = 0; i < WH_ARRAY_SIZE(good_names); i++) {
		if (!name_ok(good_names[i]))
			fprintf(stderr, "good name rejected: \"%s\"\n", good_names[i]);
		CHECK(name_ok(good_names[i]));
	}
	for (size_t i = 0; i < WH_ARRAY_SIZE(bad_names); i++) {
		if (name_ok(bad_names[i]))
			fprintf(stderr, "bad name accepted: \"%s\"\n", bad_names[i]);
		CHECK(!name_ok(bad_names[i]));
	}

	/* Length: 255 is the limit. */
	memset(buf, 'a', 255);
	buf[255] = '\0';
	CHECK(name_ok(buf));
	memset(buf, 'a', 256);
	buf[256] = '\0';
	CHECK(!name_ok(buf));
	for (int i = 1; i < 255; i += 2)
		buf[i] = '/';
	buf[255] = '\0';
	CHECK(name_ok(buf)); /* a/a/a/.../a, 255 bytes */
	buf[255] = 'a';
	CHECK(!name_ok(buf));

	/* len is honoured: s need not be NUL-terminated, and an embedded NUL fails. */
	CHECK(wh_name_valid("abc/../x", 3));
	CHECK(!wh_name_valid("abc/../x", 4));
	CHECK(!wh_name_valid("a\0b", 3));
	CHECK(!wh_name_valid(NULL, 0));
}

static void test_tags(void)
{
	static const char *const good[] = {"latest", "v1",      "1.0.0",         "_x",
	                                   "A",      "a-b_c.d", "sha256-abcdef", "0",
	                                   "___",    "a..b",    "1.2.3-rc.1"};
	static const char *const bad[] = {"",    ".a", "-a",  "a/b", "a:b",  "a@b",
	                                  "a b", "..", "a+b", "é",   "a\\b", "%2e"};
	char buf[200];

	for (size_t i = 0; i < WH_ARRAY_SIZE(good); i++) {
		if (!tag_ok(good[i]))
			fprintf(stderr, "good tag rejected: \"%s\"\n", good[i]);
		CHECK(tag_ok(good[i]));
	}
	for (size_t i = 0; i < WH_ARRAY_SIZE(bad); i++) {
		if (tag_ok(bad[i]))
			fprintf(stderr, "bad tag accepted: \"%s\"\n", bad[i]);
		CHECK(!tag_ok(bad[i]));
	}
	memset(buf, 'x', 128);
	buf[128] = '\0';
	CHECK(tag_ok(buf));
	buf[128] = 'x';
	buf[129] = '\0';
	CHECK(!tag_ok(buf));
	CHECK(wh_tag_valid("v1:x", 2));
	CHECK(!wh_tag_valid("v\0", 2));
}

#define HEX64 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_digests(void)
{
	CHECK(digest("sha256:" HEX64) == WH_DIGEST_OK);
	CHECK(digest("sha256:" HEX64 "0") == WH_DIGEST_BAD); /* 65 hex */
	CHECK(digest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85") ==
	      WH_DIGEST_BAD); /* 63 hex */
	CHECK(digest("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855") ==
	      WH_DIGEST_BAD); /* upper case */
	CHECK(digest("sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") ==
	      WH_DIGEST_BAD); /* not hex */
	CHECK(digest("sha256:") == WH_DIGEST_BAD);
	CHECK(digest("sha256") == WH_DIGEST_BAD);
	CHECK(digest(":" HEX64) == WH_DIGEST_BAD);
	CHECK(digest("") == WH_DIGEST_BAD);
	CHECK(digest("SHA256:" HEX64) == WH_DIGEST_BAD); /* algorithm is lower case */
	CHECK(digest("sha256:../../etc/passwd") == WH_DIGEST_BAD);
	CHECK(digest("sha256:" HEX64 "/x") == WH_DIGEST_BAD);
	CHECK(digest("sha256:aa:bb") == WH_DIGEST_BAD);

	/* sha512: the image spec's registered algorithm, 128 lower-case hex. */
	CHECK(digest("sha512:" HEX64 HEX64) == WH_DIGEST_OK);
	CHECK(digest("sha512:" HEX64 HEX64 "0") == WH_DIGEST_BAD); /* 129 hex */
	CHECK(digest("sha512:" HEX64
	             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85") ==
	      WH_DIGEST_BAD);                                  /* 127 hex */
	CHECK(digest("sha512:" HEX64) == WH_DIGEST_BAD);       /* a sha256's length */
	CHECK(digest("sha256:" HEX64 HEX64) == WH_DIGEST_BAD); /* a sha512's length */
	CHECK(digest("sha512:abc") == WH_DIGEST_BAD);
	CHECK(digest("sha512:" HEX64
	             "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855") ==
	      WH_DIGEST_BAD); /* upper case */
	CHECK(wh_digest_check("sha512:" HEX64 HEX64 "zz", WH_SHA512_LEN) == WH_DIGEST_OK);
	CHECK(wh_digest_alg_of("sha512:" HEX64 HEX64) == WH_ALG_SHA512);
	CHECK(wh_digest_alg_of("sha256:" HEX64) == WH_ALG_SHA256);
	CHECK(wh_digest_alg_of("blake3:" HEX64) == WH_ALG_NONE);
	CHECK(wh_digest_alg_of("latest") == WH_ALG_NONE);
	CHECK_STREQ(wh_digest_encoded("sha512:abc"), "abc");
	CHECK_STREQ(wh_digest_alg_name(WH_ALG_SHA512), "sha512");
	CHECK_STREQ(wh_digest_alg_name(WH_ALG_NONE), "");
	{
		char d[WH_DIGEST_LEN + 1];
		wh_digest_copy(d, "sha256:" HEX64); /* shorter than the buffer: no over-read */
		CHECK_STREQ(d, "sha256:" HEX64);
		wh_digest_copy(d, "sha512:" HEX64 HEX64 "0123");
		CHECK(strlen(d) == WH_DIGEST_LEN);
	}

	/* Well formed per the general grammar, but not an algorithm Wharf has. */
	CHECK(digest("sha384:" HEX64 HEX64) == WH_DIGEST_UNSUPPORTED);
	CHECK(digest("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8") ==
	      WH_DIGEST_UNSUPPORTED);
	CHECK(digest("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564") ==
	      WH_DIGEST_UNSUPPORTED);
	CHECK(digest("a.b_c-d:x=y_z-w") == WH_DIGEST_UNSUPPORTED);
	CHECK(digest("blake3:" HEX64) == WH_DIGEST_UNSUPPORTED);

	/* Grammar violations in the algorithm or the encoded part. */
	CHECK(digest("sha256+:abc") == WH_DIGEST_BAD);
	CHECK(digest("+sha256:abc") == WH_DIGEST_BAD);
	CHECK(digest("sha++256:abc") == WH_DIGEST_BAD);
	CHECK(digest("sha-_256:abc") == WH_DIGEST_BAD);
	CHECK(digest("Sha512:abc") == WH_DIGEST_BAD);
	CHECK(digest("sha512:a+b") == WH_DIGEST_BAD);
	CHECK(digest("sha384:a+b") == WH_DIGEST_BAD);
	CHECK(digest("sha512:a/b") == WH_DIGEST_BAD);
	CHECK(digest("sha512:a.b") == WH_DIGEST_BAD);
	CHECK(digest("sha 512:ab") == WH_DIGEST_BAD);

	/* len is honoured. */
	CHECK(wh_digest_check("sha256:" HEX64 "zzz", 71) == WH_DIGEST_OK);
	CHECK(wh_digest_check("sha256:" HEX64, 70) == WH_DIGEST_BAD);

	CHECK(wh_ref_is_digest("sha256:" HEX64, 71));
	CHECK(wh_ref_is_digest("x:y", 3));
	CHECK(!wh_ref_is_digest("latest", 6));
	CHECK(!wh_ref_is_digest("ab:c", 2));
}

static void test_sha256(void)
{
	char out[WH_DIGEST_LEN + 1], out2[WH_DIGEST_LEN + 1];
	const size_t n = 1 << 20;
	unsigned char *buf;
	wh_sha256 h, fork;

	wh_sha256_digest("", 0, out);
	CHECK_STREQ(out, "sha256:" HEX64);
	wh_sha256_digest("abc", 3, out);
	CHECK_STREQ(out, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	wh_sha256_digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, out);
	CHECK_STREQ(out, "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	CHECK(wh_digest_check(out, strlen(out)) == WH_DIGEST_OK);

	/* 1 MiB: one shot vs. uneven incremental pieces. */
	buf = wh_malloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(i * 31 + (i >> 8));
	wh_sha256_digest(buf, n, out);
	wh_sha256_init(&h);
	for (size_t off = 0, step = 1; off < n; step = step * 3 + 7) {
		size_t k = WH_MIN(step % 70001, n - off);
		wh_sha256_update(&h, buf + off, k);
		off += k;
	}
	wh_sha256_update(&h, buf, 0);
	wh_sha256_final(&h, out2);
	CHECK_STREQ(out2, out);

	/* A context copied by value forks the hash. */
	wh_sha256_init(&h);
	wh_sha256_update(&h, "ab", 2);
	fork = h;
	wh_sha256_update(&h, "c", 1);
	wh_sha256_final(&h, out);
	CHECK_STREQ(out, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	wh_sha256_final(&fork, out2);
	wh_sha256_digest("ab", 2, out);
	CHECK_STREQ(out2, out);

	/* A million 'a's, the classic long vector. */
	memset(buf, 'a', 1000000);
	wh_sha256_digest(buf, 1000000, out);
	CHECK_STREQ(out, "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(buf);
}

int main(void)
{
	test_names();
	test_tags();
	test_digests();
	test_sha256();
	CHECK_DONE();
}
