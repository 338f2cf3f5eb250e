/* sha512, and the hash of either registered algorithm that verifies content
 * against the digest its sender names. sha512 is mbedTLS's portable code:
 * x86-64 CPUs (but the newest) have no instructions for it, and on a 64-bit
 * CPU the portable code runs faster than portable sha256 (80 rounds over
 * 128-byte blocks of 64-bit words), though slower than sha256 in hardware
 * (tests/bench/bench_sha256.c measures both). */
#include "wharf/oci/ref.h"

#include <string.h>

/* Export and import read mbedTLS's context fields, private in mbedTLS 3. */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS
#include <mbedtls/sha512.h>

_Static_assert(sizeof(mbedtls_sha512_context) <= sizeof(((wh_sha512 *)0)->opaque),
               "wh_sha512 too small for mbedtls_sha512_context");

static void hex_out(const char *alg, const unsigned char *sum, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t a = strlen(alg);

	memcpy(out, alg, a);
	out[a] = ':';
	for (size_t i = 0; i < n; i++) {
		out[a + 1 + 2 * i] = hex[sum[i] >> 4];
		out[a + 1 + 2 * i + 1] = hex[sum[i] & 0xf];
	}
	out[a + 1 + 2 * n] = '\0';
}

/* The return values of mbedTLS's hash calls only report hardware
 * accelerator failures, which the software implementation never has. */
void wh_sha512_init(wh_sha512 *h)
{
	mbedtls_sha512_context *ctx = (mbedtls_sha512_context *)h->opaque;
	mbedtls_sha512_init(ctx);
	(void)mbedtls_sha512_starts(ctx, 0);
}

void wh_sha512_update(wh_sha512 *h, const void *data, size_t len)
{
	if (len == 0)
		return;
	(void)mbedtls_sha512_update((mbedtls_sha512_context *)h->opaque, data, len);
}

void wh_sha512_final(wh_sha512 *h, char out[WH_DIGEST_LEN + 1])
{
	mbedtls_sha512_context *ctx = (mbedtls_sha512_context *)h->opaque;
	unsigned char sum[64];

	(void)mbedtls_sha512_finish(ctx, sum);
	mbedtls_sha512_free(ctx);
	hex_out("sha512", sum, sizeof(sum), out);
}

void wh_sha512_export(const wh_sha512 *h, wh_sha512_state *out)
{
	const mbedtls_sha512_context *ctx = (const mbedtls_sha512_context *)h->opaque;

	memset(out, 0, sizeof(*out));
	memcpy(out->h, ctx->state, sizeof(out->h));
	/* mbedTLS counts in 128 bits; nothing Wharf hashes reaches 2^64 bytes. */
	out->total = ctx->total[0];
	memcpy(out->block, ctx->buffer, out->total % 128);
}

void wh_sha512_import(wh_sha512 *h, const wh_sha512_state *in)
{
	mbedtls_sha512_context *ctx = (mbedtls_sha512_context *)h->opaque;

	wh_sha512_init(h);
	memcpy(ctx->state, in->h, sizeof(ctx->state));
	ctx->total[0] = in->total;
	ctx->total[1] = 0;
	memcpy(ctx->buffer, in->block, in->total % 128);
}

void wh_digest_init(wh_digest_ctx *c, wh_digest_alg alg)
{
	c->alg = alg == WH_ALG_SHA512 ? WH_ALG_SHA512 : WH_ALG_SHA256;
	if (c->alg == WH_ALG_SHA512)
		wh_sha512_init(&c->u.sha512);
	else
		wh_sha256_init(&c->u.sha256);
}

void wh_digest_update(wh_digest_ctx *c, const void *data, size_t len)
{
	if (c->alg == WH_ALG_SHA512)
		wh_sha512_update(&c->u.sha512, data, len);
	else
		wh_sha256_update(&c->u.sha256, data, len);
}

void wh_digest_final(wh_digest_ctx *c, char out[WH_DIGEST_LEN + 1])
{
	if (c->alg == WH_ALG_SHA512)
		wh_sha512_final(&c->u.sha512, out);
	else
		wh_sha256_final(&c->u.sha256, out);
}

void wh_digest_of(wh_digest_alg alg, const void *data, size_t len, char out[WH_DIGEST_LEN + 1])
{
	wh_digest_ctx c;

	wh_digest_init(&c, alg);
	wh_digest_update(&c, data, len);
	wh_digest_final(&c, out);
}
