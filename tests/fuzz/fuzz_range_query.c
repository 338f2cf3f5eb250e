/* The request helpers of src/net/http.c that parse what a client wrote: the
 * Range header (wh_req_range, then wh_range_resolve against a size) and query
 * parameters (wh_req_query), on synthetic wh_req structs. Each is checked
 * against a plain reimplementation of its contract in http.h, and a resolved
 * range must lie inside the representation.
 *
 * Input: range value NUL query NUL name NUL, then up to 8 bytes of size and 1
 * of buffer length; missing parts are empty or zero. */
#include "fuzz.h"

#include <stdbool.h>
#include <strings.h>

#include "wharf/base/common.h"
#include "wharf/net/http.h"

/* The next NUL-terminated field of the input, or the rest of it. */
static char *field(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
	size_t n = nul ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *s = fuzz_strndup(*p, n);
	*p += nul ? n + 1 : n;
	return s;
}

/* A decimal number of at most 18 digits... or more, without overflow:
 * false when it does not fit in an int64. */
static bool number(const char **p, int64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;
	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > ((uint64_t)INT64_MAX - (uint64_t)(*s - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*out = (int64_t)v;
	return true;
}

/* RFC 9110 14.1.2, one range of bytes only, as http.h describes it. */
static bool ref_range(const char *h, int64_t *start, int64_t *end)
{
	if (!h || strncasecmp(h, "bytes=", 6) != 0 || strchr(h, ','))
		return false;
	const char *p = h + 6;
	int64_t a, z = -1;
	if (*p == '-') {
		p++;
		if (!number(&p, &z) || *p)
			return false;
		*start = -1;
		*end = z;
		return true;
	}
	if (!number(&p, &a) || *p != '-')
		return false;
	p++;
	if (*p && (!number(&p, &z) || *p))
		return false; /* z < a is kept: a range nothing satisfies */
	*start = a;
	*end = z;
	return true;
}

static int hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The value of the first parameter called name, decoded into out (at most
 * strlen(query) bytes, which may include NULs from %00): its length, or -1
 * when absent. */
static long ref_query(const char *query, const char *name, char *out)
{
	size_t nlen = strlen(name);
	for (const char *q = query; q;) {
		const char *amp = strchr(q, '&');
		size_t plen = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', plen);
		size_t klen = eq ? (size_t)(eq - q) : plen;
		if (klen == nlen && memcmp(q, name, nlen) == 0) {
			long o = 0;
			for (size_t i = eq ? klen + 1 : plen; i < plen; i++) {
				if (q[i] == '%' && i + 2 < plen && hex(q[i + 1]) >= 0 &&
				    hex(q[i + 2]) >= 0) {
					out[o++] = (char)(hex(q[i + 1]) * 16 + hex(q[i + 2]));
					i += 2;
				} else {
					out[o++] = q[i] == '+' ? ' ' : q[i];
				}
			}
			return o;
		}
		q = amp ? amp + 1 : NULL;
	}
	return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char *range = field(&p, end);
	char *query = field(&p, end);
	char *name = field(&p, end);
	uint64_t u = 0;
	size_t k = 0;
	for (; k < 8 && p < end; k++)
		u = u << 8 | *p++;
	/* Sizes as stat gives them: from 0 up to INT64_MAX, small ones often. */
	int64_t rsize = (int64_t)(u & (uint64_t)INT64_MAX);
	if (k < 8)
		rsize = (int64_t)u;
	size_t buflen = p < end ? *p++ : 64;

	/* A request with a few headers around the Range (looked up by any case). */
	wh_header headers[] = {
	    {"Host", "x"},
	    {(size % 2) ? "range" : "Range", range},
	    {"Range", "bytes=0-0"}, /* a second one: the first counts */
	};
	wh_req req;
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.target = req.path = "/";
	req.query = size % 3 ? query : NULL;
	req.headers = headers;
	req.n_headers = (int)WH_ARRAY_SIZE(headers);

	int64_t start = 7, stop = 7, rs = 7, re = 7;
	bool got = wh_req_range(&req, &start, &stop);
	bool want = ref_range(range, &rs, &re);
	FUZZ_ASSERT(got == want);
	if (got) {
		FUZZ_ASSERT(start == rs && stop == re);
		FUZZ_ASSERT(start >= -1 && stop >= -1 && (start >= 0 || stop >= 0));
		int64_t a = -7, z = -7;
		if (wh_range_resolve(start, stop, rsize, &a, &z)) {
			/* Inside the representation, and its length computable. */
			FUZZ_ASSERT(0 <= a && a <= z && z < rsize);
			FUZZ_ASSERT(z - a + 1 > 0 && z - a + 1 <= rsize);
			if (start >= 0) {
				FUZZ_ASSERT(a == start);
				FUZZ_ASSERT(z == (stop < 0 || stop >= rsize ? rsize - 1 : stop));
			} else {
				FUZZ_ASSERT(z == rsize - 1 && z - a + 1 == WH_MIN(stop, rsize));
			}
		} else {
			/* Unsatisfiable: it starts past the end, is reversed, or asks
			 * for nothing. */
			FUZZ_ASSERT(start >= 0 ? start >= rsize || (stop >= 0 && stop < start)
			                       : stop <= 0 || rsize <= 0);
		}
	} else {
		FUZZ_ASSERT(start == 7 && stop == 7); /* untouched */
	}

	/* wh_req_query, with a buffer of any size (0 included). */
	char *buf = malloc(buflen + 1), *ref = malloc(strlen(query) + 1);
	if (!buf || !ref)
		abort();
	buf[buflen] = 'X'; /* a canary just past the buffer */
	const char *v = wh_req_query(&req, name, buf, buflen);
	FUZZ_ASSERT(buf[buflen] == 'X');
	long n = req.query ? ref_query(req.query, name, ref) : -1;
	if (!*name) {
		/* No parameter is called "": what an empty one gives is unspecified. */
	} else if (n < 0 || (size_t)n + 1 > buflen || memchr(ref, '\0', (size_t)n)) {
		/* Absent, too long, or decoding to a NUL (%00: it would cut the
		 * value short where the caller reads it): refused. */
		FUZZ_ASSERT(v == NULL);
	} else {
		FUZZ_ASSERT(v == buf);
		FUZZ_ASSERT(memcmp(buf, ref, (size_t)n) == 0 && buf[n] == '\0');
	}

	free(buf);
	free(ref);
	free(range);
	free(query);
	free(name);
	return 0;
}
