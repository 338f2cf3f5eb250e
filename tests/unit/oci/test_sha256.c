/* The hardware sha256 path against mbedTLS: the standard vectors, then random
 * data of every length up to a few blocks and larger buffers fed in random
 * pieces. Where the CPU has no SHA extensions both runs use mbedTLS and the
 * test still checks the vectors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "wharf/base/common.h"
#include "wharf/oci/ref.h"

static void digest_pieces(const unsigned char *data, size_t len, unsigned seed, char *out)
{
	wh_sha256 h;
	wh_sha256_init(&h);
	size_t off = 0;
	srand(seed);
	while (off < len) {
		size_t n = (size_t)(rand() % 300);
		if (rand() % 8 == 0)
			n = (size_t)(rand() % 70000);
		if (n > len - off)
			n = len - off;
		wh_sha256_update(&h, data + off, n);
		off += n;
	}
	wh_sha256_final(&h, out);
}

int main(void)
{
	static const struct {
		const char *in;
		const char *out;
	} vec[] = {
	    {"", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	    {"abc", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	     "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmno"
	     "pqrlmnopqrsmnopqrstnopqrstu",
	     "sha256:cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	char a[WH_DIGEST_LEN + 1], b[WH_DIGEST_LEN + 1];

	printf("sha256 implementation: %s\n", wh_sha256_impl());
	for (int portable = 0; portable < 2; portable++) {
		wh_sha256_force_portable(portable);
		for (size_t i = 0; i < WH_ARRAY_SIZE(vec); i++) {
			wh_sha256_digest(vec[i].in, strlen(vec[i].in), a);
			CHECK_STREQ(a, vec[i].out);
		}
	}

	/* Every length from 0 to 300 bytes: all padding cases. */
	size_t big = 4 * 1024 * 1024 + 17;
	unsigned char *data = malloc(big);
	srand(12345);
	for (size_t i = 0; i < big; i++)
		data[i] = (unsigned char)rand();
	for (size_t len = 0; len <= 300; len++) {
		wh_sha256_force_portable(false);
		wh_sha256_digest(data, len, a);
		wh_sha256_force_portable(true);
		wh_sha256_digest(data, len, b);
		CHECK_STREQ(a, b);
	}
	/* Large buffers in random pieces. */
	for (unsigned seed = 1; seed <= 8; seed++) {
		size_t len = big - seed * 1000;
		wh_sha256_force_portable(false);
		digest_pieces(data, len, seed, a);
		wh_sha256_force_portable(true);
		wh_sha256_digest(data, len, b);
		CHECK_STREQ(a, b);
	}
	/* Export from one implementation, import into the other (and into the
	 * same), go on hashing: the same digest, at every split point that
	 * matters (block boundaries and around them) and across 4 GiB's worth of
	 * count bits. */
	for (int from = 0; from < 2; from++) {
		for (int to = 0; to < 2; to++) {
			static const size_t splits[] = {0,  1,   55,  56,   63,  64,
			                                65, 127, 128, 1000, 4097};
			for (size_t k = 0; k < WH_ARRAY_SIZE(splits); k++) {
				size_t split = splits[k], len = 5000;
				wh_sha256 h, g;
				wh_sha256_state st;
				wh_sha256_force_portable(from);
				wh_sha256_init(&h);
				wh_sha256_update(&h, data, split);
				wh_sha256_export(&h, &st);
				CHECK(st.total == split);
				wh_sha256_force_portable(to);
				wh_sha256_import(&g, &st);
				wh_sha256_update(&g, data + split, len - split);
				wh_sha256_final(&g, a);
				wh_sha256_digest(data, len, b);
				CHECK_STREQ(a, b);
				/* Exporting the imported context gives the same state. */
				wh_sha256_state again;
				wh_sha256_import(&g, &st);
				wh_sha256_export(&g, &again);
				CHECK(memcmp(&st, &again, sizeof(st)) == 0);
				wh_sha256_final(&h, a); /* spend it (mbedTLS frees in final) */
			}
		}
	}
	{
		/* A count above 32 bits survives (mbedTLS splits it in two words). */
		wh_sha256_state st, back;
		wh_sha256 h;
		memset(&st, 0, sizeof(st));
		for (int i = 0; i < 8; i++)
			st.h[i] = 0x01020304u * (uint32_t)(i + 1);
		st.total = ((uint64_t)5 << 32) + 70;
		memcpy(st.block, "abcdef", 6);
		for (int portable = 0; portable < 2; portable++) {
			wh_sha256_force_portable(portable);
			wh_sha256_import(&h, &st);
			wh_sha256_export(&h, &back);
			CHECK(memcmp(&st, &back, sizeof(st)) == 0);
			wh_sha256_final(&h, a);
		}
	}
	wh_sha256_force_portable(false);
	free(data);
	CHECK_DONE();
}
