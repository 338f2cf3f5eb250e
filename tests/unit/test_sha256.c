/* The hardware sha256 path against mbedTLS: the standard vectors, then random
 * data of every length up to a few blocks and larger buffers fed in random
 * pieces. Where the CPU has no SHA extensions both runs use mbedTLS and the
 * test still checks the vectors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "wharf/common.h"
#include "wharf/ref.h"

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
	wh_sha256_force_portable(false);
	free(data);
	CHECK_DONE();
}
