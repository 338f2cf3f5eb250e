/* sha256 for everything Wharf stores: every byte pushed or fetched is hashed
 * once, so on a fast disk the hash can be the bottleneck. mbedTLS's portable
 * code runs at a few hundred MB/s; x86-64 CPUs with the SHA extensions do
 * several times that, so where cpuid says they are there, blocks go through
 * the SHA-NI instructions instead. Both paths are checked against each other
 * by tests/unit/test_sha256.c. */
#include "wharf/oci/ref.h"

#include <stdbool.h>
#include <string.h>

/* Export and import read mbedTLS's context fields, private in mbedTLS 3. */
#define MBEDTLS_ALLOW_PRIVATE_ACCESS
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHANI_CODE 1
#include <cpuid.h>
#include <immintrin.h>
#endif

enum { IMPL_MBEDTLS = 1, IMPL_SHANI = 2 };

/* The hardware path's own state: the chaining value, a partial block, and
 * the length so far. */
struct ni {
	uint32_t state[8];
	uint8_t buf[64];
	uint64_t total;
	uint32_t used;
};

_Static_assert(sizeof(mbedtls_sha256_context) <= sizeof(((wh_sha256 *)0)->opaque),
               "wh_sha256 too small for mbedtls_sha256_context");
_Static_assert(sizeof(struct ni) <= sizeof(((wh_sha256 *)0)->opaque),
               "wh_sha256 too small for the SHA-NI state");

static int chosen; /* 0: not decided yet */
static bool forced_portable;

#ifdef HAVE_SHANI_CODE
static bool cpu_has_shani(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return false;
	bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return false;
	return ssse3 && sse41 && (b & (1u << 29));
}

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* Hash n 64-byte blocks. The instructions keep the eight working variables
 * as two vectors, ABEF and CDGH; each sha256rnds2 does two rounds, and
 * sha256msg1/msg2 extend the message schedule four words at a time. */
__attribute__((target("sha,sse4.1,ssse3"))) static void shani_blocks(uint32_t state[8],
                                                                     const uint8_t *p, size_t n)
{
	const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i t = _mm_loadu_si128((const __m128i *)&state[0]);  /* DCBA */
	__m128i s1 = _mm_loadu_si128((const __m128i *)&state[4]); /* HGFE */
	t = _mm_shuffle_epi32(t, 0xB1);                           /* CDAB */
	s1 = _mm_shuffle_epi32(s1, 0x1B);                         /* EFGH */
	__m128i s0 = _mm_alignr_epi8(t, s1, 8);                   /* ABEF */
	s1 = _mm_blend_epi16(s1, t, 0xF0);                        /* CDGH */

	/* Four rounds with message words m: add the constants, two rnds2. */
#define QROUND(m, k)                                                                               \
	do {                                                                                       \
		__m128i wk_ = _mm_add_epi32(m, _mm_loadu_si128((const __m128i *)&K[k]));           \
		s1 = _mm_sha256rnds2_epu32(s1, s0, wk_);                                           \
		s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(wk_, 0x0E));                  \
	} while (0)
	/* W[t..t+3] from W[t-16..t-1], held in a, b, c, d; the result replaces a. */
#define SCHEDULE(a, b, c, d)                                                                       \
	a = _mm_sha256msg2_epu32(                                                                  \
	    _mm_add_epi32(_mm_sha256msg1_epu32(a, b), _mm_alignr_epi8(d, c, 4)), d)
	while (n--) {
		__m128i abef = s0, cdgh = s1;
		__m128i m0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 0)), bswap);
		__m128i m1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16)), bswap);
		__m128i m2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 32)), bswap);
		__m128i m3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 48)), bswap);
		QROUND(m0, 0);
		QROUND(m1, 4);
		QROUND(m2, 8);
		QROUND(m3, 12);
		for (int k = 16; k < 64; k += 16) {
			SCHEDULE(m0, m1, m2, m3);
			QROUND(m0, k);
			SCHEDULE(m1, m2, m3, m0);
			QROUND(m1, k + 4);
			SCHEDULE(m2, m3, m0, m1);
			QROUND(m2, k + 8);
			SCHEDULE(m3, m0, m1, m2);
			QROUND(m3, k + 12);
		}
		s0 = _mm_add_epi32(s0, abef);
		s1 = _mm_add_epi32(s1, cdgh);
		p += 64;
	}
#undef QROUND
#undef SCHEDULE

	t = _mm_shuffle_epi32(s0, 0x1B);   /* FEBA */
	s1 = _mm_shuffle_epi32(s1, 0xB1);  /* DCHG */
	s0 = _mm_blend_epi16(t, s1, 0xF0); /* DCBA */
	s1 = _mm_alignr_epi8(s1, t, 8);    /* HGFE */
	_mm_storeu_si128((__m128i *)&state[0], s0);
	_mm_storeu_si128((__m128i *)&state[4], s1);
}
#endif

static int impl(void)
{
	if (forced_portable)
		return IMPL_MBEDTLS;
	if (!chosen) {
		chosen = IMPL_MBEDTLS;
#ifdef HAVE_SHANI_CODE
		if (cpu_has_shani())
			chosen = IMPL_SHANI;
#endif
	}
	return chosen;
}

const char *wh_sha256_impl(void)
{
	return impl() == IMPL_SHANI ? "sha-ni" : "mbedtls";
}

void wh_sha256_force_portable(bool portable)
{
	forced_portable = portable;
}

/* mbedTLS 3 (CMakeLists.txt requires it) has no _ret suffix. The return
 * values only report hardware-accelerator failures, which the software
 * implementation never has. */
void wh_sha256_init(wh_sha256 *h)
{
	h->impl = impl();
	if (h->impl == IMPL_SHANI) {
		static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
		                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
		struct ni *s = (struct ni *)h->opaque;
		memcpy(s->state, iv, sizeof(iv));
		s->total = 0;
		s->used = 0;
		return;
	}
	mbedtls_sha256_context *ctx = (mbedtls_sha256_context *)h->opaque;
	mbedtls_sha256_init(ctx);
	(void)mbedtls_sha256_starts(ctx, 0);
}

void wh_sha256_update(wh_sha256 *h, const void *data, size_t len)
{
	if (len == 0)
		return;
#ifdef HAVE_SHANI_CODE
	if (h->impl == IMPL_SHANI) {
		struct ni *s = (struct ni *)h->opaque;
		const uint8_t *p = data;
		s->total += len;
		if (s->used) {
			size_t k = 64 - s->used < len ? 64 - s->used : len;
			memcpy(s->buf + s->used, p, k);
			s->used += (uint32_t)k;
			p += k;
			len -= k;
			if (s->used < 64)
				return;
			shani_blocks(s->state, s->buf, 1);
			s->used = 0;
		}
		if (len >= 64) {
			shani_blocks(s->state, p, len / 64);
			p += len & ~(size_t)63;
			len &= 63;
		}
		memcpy(s->buf, p, len);
		s->used = (uint32_t)len;
		return;
	}
#endif
	mbedtls_sha256_context *ctx = (mbedtls_sha256_context *)h->opaque;
	(void)mbedtls_sha256_update(ctx, data, len);
}

void wh_sha256_final(wh_sha256 *h, char out[WH_DIGEST_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char sum[32];

#ifdef HAVE_SHANI_CODE
	if (h->impl == IMPL_SHANI) {
		struct ni *s = (struct ni *)h->opaque;
		uint64_t bits = s->total * 8;
		uint8_t pad[72] = {0x80};
		size_t padlen = (s->used < 56 ? 56 : 120) - s->used;
		for (int i = 0; i < 8; i++)
			pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
		uint64_t keep = s->total;
		wh_sha256_update(h, pad, padlen + 8);
		s->total = keep;
		for (int i = 0; i < 8; i++) {
			sum[4 * i] = (uint8_t)(s->state[i] >> 24);
			sum[4 * i + 1] = (uint8_t)(s->state[i] >> 16);
			sum[4 * i + 2] = (uint8_t)(s->state[i] >> 8);
			sum[4 * i + 3] = (uint8_t)s->state[i];
		}
		goto hex_out;
	}
#endif
	{
		mbedtls_sha256_context *ctx = (mbedtls_sha256_context *)h->opaque;
		(void)mbedtls_sha256_finish(ctx, sum);
		mbedtls_sha256_free(ctx);
	}
#ifdef HAVE_SHANI_CODE
hex_out:
#endif
	memcpy(out, "sha256:", 7);
	for (size_t i = 0; i < sizeof(sum); i++) {
		out[7 + 2 * i] = hex[sum[i] >> 4];
		out[7 + 2 * i + 1] = hex[sum[i] & 0xf];
	}
	out[WH_SHA256_LEN] = '\0';
}

void wh_sha256_export(const wh_sha256 *h, wh_sha256_state *out)
{
	memset(out, 0, sizeof(*out));
#ifdef HAVE_SHANI_CODE
	if (h->impl == IMPL_SHANI) {
		const struct ni *s = (const struct ni *)h->opaque;
		memcpy(out->h, s->state, sizeof(out->h));
		out->total = s->total;
		memcpy(out->block, s->buf, s->used);
		return;
	}
#endif
	const mbedtls_sha256_context *ctx = (const mbedtls_sha256_context *)h->opaque;
	memcpy(out->h, ctx->state, sizeof(out->h));
	out->total = (uint64_t)ctx->total[0] | (uint64_t)ctx->total[1] << 32;
	memcpy(out->block, ctx->buffer, out->total % 64);
}

void wh_sha256_import(wh_sha256 *h, const wh_sha256_state *in)
{
	wh_sha256_init(h);
#ifdef HAVE_SHANI_CODE
	if (h->impl == IMPL_SHANI) {
		struct ni *s = (struct ni *)h->opaque;
		memcpy(s->state, in->h, sizeof(s->state));
		s->total = in->total;
		s->used = (uint32_t)(in->total % 64);
		memcpy(s->buf, in->block, s->used);
		return;
	}
#endif
	/* mbedTLS counts bytes in two 32-bit words and keeps total % 64 of them
	 * in its buffer, the same shape. */
	mbedtls_sha256_context *ctx = (mbedtls_sha256_context *)h->opaque;
	memcpy(ctx->state, in->h, sizeof(ctx->state));
	ctx->total[0] = (uint32_t)in->total;
	ctx->total[1] = (uint32_t)(in->total >> 32);
	memcpy(ctx->buffer, in->block, in->total % 64);
}

void wh_sha256_digest(const void *data, size_t len, char out[WH_DIGEST_LEN + 1])
{
	wh_sha256 h;

	wh_sha256_init(&h);
	wh_sha256_update(&h, data, len);
	wh_sha256_final(&h, out);
}
