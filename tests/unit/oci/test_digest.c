/* The digest context (either registered algorithm) and sha512: the standard
 * vectors, incremental pieces against one shot, a forked context, and the
 * exported state that upload sessions save, imported into a fresh context. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "wharf/base/common.h"
#include "wharf/oci/ref.h"

#define SHA512_EMPTY                                                                               \
	"sha512:"                                                                                  \
	"cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8"      \
	"318d2877eec2f63b931bd47417a81a538327af927da3e"
#define SHA512_ABC                                                                                 \
	"sha512:"                                                                                  \
	"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836b"      \
	"a3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
#define SHA256_ABC "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static void test_vectors(void)
{
	static const struct {
		const char *in;
		const char *out;
	} vec[] = {
	    {"", SHA512_EMPTY},
	    {"abc", SHA512_ABC},
	    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmno"
	     "pqrlmnopqrsmnopqrstnopqrstu",
	     "sha512:"
	     "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4"
	     "331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"},
	};
	char out[WH_DIGEST_LEN + 1];

	for (size_t i = 0; i < WH_ARRAY_SIZE(vec); i++) {
		wh_digest_of(WH_ALG_SHA512, vec[i].in, strlen(vec[i].in), out);
		CHECK_STREQ(out, vec[i].out);
		CHECK(strlen(out) == WH_SHA512_LEN);
		CHECK(wh_digest_check(out, strlen(out)) == WH_DIGEST_OK);
		CHECK(wh_digest_alg_of(out) == WH_ALG_SHA512);
	}
	/* The context picks the algorithm; NONE is sha256, the spec's default. */
	wh_digest_of(WH_ALG_SHA256, "abc", 3, out);
	CHECK_STREQ(out, SHA256_ABC);
	wh_digest_of(WH_ALG_NONE, "abc", 3, out);
	CHECK_STREQ(out, SHA256_ABC);
	/* A sha256 digest written into a buffer with room for a sha512 one ends
	 * where it should. */
	memset(out, 'x', sizeof(out));
	wh_sha256_digest("abc", 3, out);
	CHECK(strlen(out) == WH_SHA256_LEN);

	char *a = malloc(1000000);
	memset(a, 'a', 1000000);
	wh_digest_of(WH_ALG_SHA512, a, 1000000, out);
	CHECK_STREQ(out,
	            "sha512:e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973ebde0"
	            "ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b");
	free(a);
}

/* Pieces of every size, and an export/import at each cut: what an upload
 * session does when it leaves memory and comes back. */
static void test_incremental(wh_digest_alg alg)
{
	size_t n = 300000;
	unsigned char *buf = malloc(n);
	char one[WH_DIGEST_LEN + 1], inc[WH_DIGEST_LEN + 1], fork_out[WH_DIGEST_LEN + 1];
	srand(42);
	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)rand();
	for (size_t len = 0; len < 300; len++) {
		wh_digest_of(alg, buf, len, one);
		wh_digest_ctx c;
		wh_digest_init(&c, alg);
		for (size_t off = 0; off < len;) {
			size_t r = (size_t)(rand() % 140); /* WH_MIN evaluates twice */
			size_t k = WH_MIN(r, len - off);
			wh_digest_update(&c, buf + off, k);
			off += k;
		}
		wh_digest_final(&c, inc);
		CHECK_STREQ(inc, one);
	}
	wh_digest_of(alg, buf, n, one);
	wh_digest_ctx c;
	wh_digest_init(&c, alg);
	for (size_t off = 0, step = 1; off < n; step = step * 3 + 7) {
		size_t k = WH_MIN(step % 7001, n - off);
		wh_digest_update(&c, buf + off, k);
		off += k;
		/* Through the saved state and back, as a session evicted here. */
		if (alg == WH_ALG_SHA512) {
			wh_sha512_state st;
			wh_sha512_export(&c.u.sha512, &st);
			CHECK(st.total == off);
			wh_digest_ctx back;
			back.alg = WH_ALG_SHA512;
			wh_sha512_import(&back.u.sha512, &st);
			c = back;
		} else {
			wh_sha256_state st;
			wh_sha256_export(&c.u.sha256, &st);
			CHECK(st.total == off);
			wh_sha256_import(&c.u.sha256, &st);
		}
	}
	wh_digest_final(&c, inc);
	CHECK_STREQ(inc, one);

	/* A copy forks the hash. */
	wh_digest_init(&c, alg);
	wh_digest_update(&c, "ab", 2);
	wh_digest_ctx fork = c;
	wh_digest_update(&c, "c", 1);
	wh_digest_final(&c, inc);
	wh_digest_of(alg, "abc", 3, one);
	CHECK_STREQ(inc, one);
	wh_digest_final(&fork, fork_out);
	wh_digest_of(alg, "ab", 2, one);
	CHECK_STREQ(fork_out, one);
	free(buf);
}

int main(void)
{
	test_vectors();
	test_incremental(WH_ALG_SHA512);
	test_incremental(WH_ALG_SHA256);
	CHECK_DONE();
}
