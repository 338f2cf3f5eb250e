/* Hash throughput of each implementation, in MB/s (tests/bench/run prints
 * it in its table): sha256 (the hardware path where the CPU has one, and
 * mbedTLS's portable code), sha512 (mbedTLS), and sha256 and sha512 over
 * the same bytes, which is what an upload session would cost if it hashed
 * both algorithms as bytes arrive (the choice it does not make: see
 * docs/architecture.md, "sha512"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wharf/oci/ref.h"

enum { SHA256, SHA512, BOTH };

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rate(int what, size_t size, int rounds)
{
	unsigned char *buf = malloc(size);
	memset(buf, 0x5a, size);
	char out[WH_DIGEST_LEN + 1];
	wh_digest_ctx a, b;
	double t0 = now();
	for (int r = 0; r < rounds; r++) {
		wh_digest_init(&a, what == SHA512 ? WH_ALG_SHA512 : WH_ALG_SHA256);
		wh_digest_init(&b, WH_ALG_SHA512);
		for (size_t off = 0; off < size; off += 65536) {
			size_t n = size - off < 65536 ? size - off : 65536;
			wh_digest_update(&a, buf + off, n);
			if (what == BOTH)
				wh_digest_update(&b, buf + off, n);
		}
		wh_digest_final(&a, out);
		wh_digest_final(&b, out);
	}
	double t = now() - t0;
	free(buf);
	return (double)size * rounds / t / 1e6;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 256;
	const char *best = wh_sha256_impl();
	double fast = rate(SHA256, mib << 20, 1);
	double s512 = rate(SHA512, mib << 20, 1);
	double both = rate(BOTH, mib << 20, 1);
	wh_sha256_force_portable(true);
	double portable = rate(SHA256, mib << 20, 1);
	printf("{\"impl\":\"%s\",\"mbps\":%.0f,\"mbedtls_mbps\":%.0f,\"sha512_mbps\":%.0f,"
	       "\"sha256_and_sha512_mbps\":%.0f}\n",
	       best, fast, portable, s512, both);
	return 0;
}
