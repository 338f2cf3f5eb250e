/* sha256 throughput of each implementation, in MB/s (tests/bench/run prints
 * it in its table). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wharf/oci/ref.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double rate(size_t size, int rounds)
{
	unsigned char *buf = malloc(size);
	memset(buf, 0x5a, size);
	char out[WH_DIGEST_LEN + 1];
	wh_sha256 h;
	double t0 = now();
	for (int r = 0; r < rounds; r++) {
		wh_sha256_init(&h);
		for (size_t off = 0; off < size; off += 65536)
			wh_sha256_update(&h, buf + off, size - off < 65536 ? size - off : 65536);
		wh_sha256_final(&h, out);
	}
	double t = now() - t0;
	free(buf);
	return (double)size * rounds / t / 1e6;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 256;
	const char *best = wh_sha256_impl();
	double fast = rate(mib << 20, 1);
	wh_sha256_force_portable(true);
	double portable = rate(mib << 20, 1);
	printf("{\"impl\":\"%s\",\"mbps\":%.0f,\"mbedtls_mbps\":%.0f}\n", best, fast, portable);
	return 0;
}
