/* The configuration engine's sizes: wh_size_parse (units binary and
 * decimal, fractions, limits) and a WH_CONF_SIZE key in a table, with its
 * errors naming the key. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "wharf/base/common.h"
#include "wharf/base/conf.h"

static void test_size_parse(void)
{
	static const struct {
		const char *s;
		int64_t want;
	} good[] = {
	    {"0", 0},
	    {"1048576", 1048576},
	    {"512B", 512},
	    {"1KiB", 1024},
	    {"50MiB", 50LL << 20},
	    {"20GiB", 20LL << 30},
	    {"2TiB", 2LL << 40},
	    {"1KB", 1000},
	    {"512MB", 512000000},
	    {"3GB", 3000000000LL},
	    {"4TB", 4000000000000LL},
	    {"64 MiB", 64LL << 20},
	    {"1.5GiB", 3LL << 29},
	    {"0.5KB", 500},
	    {"0.0009765625KiB", 0}, /* nine digits count: 0.000976562 KiB, rounded down */
	    {"1.999999999999KB", 1999},
	    {"9223372036854775807", INT64_MAX},
	    {"8388607TiB", 8388607LL << 40},
	};
	static const char *const bad[] = {
	    "",
	    "MiB",
	    "-1",
	    "-1MiB",
	    "1.5",
	    "1.5B",
	    "1.MiB",
	    ".5MiB",
	    "10mb",
	    "10 mib",
	    "10M",
	    "10K",
	    "10 MiB ",
	    "10MiBs",
	    "1e6",
	    "0x10",
	    "10 ",
	    " 10",
	    "8388608TiB",
	    "9223372036854775808",
	    "9223372036854775807KB",
	};
	for (size_t i = 0; i < WH_ARRAY_SIZE(good); i++) {
		int64_t n = -1;
		int rc = wh_size_parse(good[i].s, &n);
		CHECK(rc == 0);
		CHECK(n == good[i].want);
		if (rc != 0 || n != good[i].want)
			fprintf(stderr, "  \"%s\": rc %d, %lld\n", good[i].s, rc, (long long)n);
	}
	for (size_t i = 0; i < WH_ARRAY_SIZE(bad); i++) {
		int64_t n = -7;
		int rc = wh_size_parse(bad[i], &n);
		CHECK(rc == WH_EINVAL && n == -7);
		if (rc != WH_EINVAL)
			fprintf(stderr, "  \"%s\" was accepted: %lld\n", bad[i], (long long)n);
	}
	CHECK(wh_size_parse(NULL, NULL) == WH_EINVAL);
}

struct sizes {
	int64_t rate;
	int64_t any;
};

static const wh_conf_key size_keys[] = {
    WH_CONF_KEY("rate", WH_CONF_SIZE, WH_CONF_POSITIVE, offsetof(struct sizes, rate)),
    WH_CONF_KEY("any", WH_CONF_SIZE, 0, offsetof(struct sizes, any)),
    WH_CONF_END,
};

/* Walk {"x": json} with size_keys under x; returns the walk's result. */
static int walk(const char *json, struct sizes *out, char *err, size_t errlen)
{
	static const wh_conf_key top[] = {
	    WH_CONF_SUB("x", WH_CONF_OBJECT, 0, 0, size_keys),
	    WH_CONF_END,
	};
	wh_conf c;
	memset(&c, 0, sizeof(c));
	c.err = err;
	c.errlen = errlen;
	err[0] = '\0';
	cJSON *doc = cJSON_Parse(json);
	int rc = doc ? wh_conf_walk(&c, doc, top, (char *)out) : -1;
	cJSON_Delete(doc);
	wh_conf_release(&c);
	return rc;
}

static void test_size_key(void)
{
	struct sizes s = {-1, -1};
	char err[512];

	CHECK(walk("{\"x\": {\"rate\": \"50MiB\", \"any\": 0}}", &s, err, sizeof(err)) == 0);
	CHECK(s.rate == 50LL << 20 && s.any == 0);
	/* A bare number is bytes. */
	CHECK(walk("{\"x\": {\"rate\": 4096}}", &s, err, sizeof(err)) == 0 && s.rate == 4096);
	CHECK(walk("{\"x\": {\"rate\": \"0\"}}", &s, err, sizeof(err)) == WH_EINVAL);
	CHECK_STREQ(err, "x.rate: must be greater than 0");
	CHECK(walk("{\"x\": {\"rate\": \"50 mb\"}}", &s, err, sizeof(err)) == WH_EINVAL);
	CHECK(strncmp(err, "x.rate: invalid size \"50 mb\"", 28) == 0);
	CHECK(walk("{\"x\": {\"any\": 1.5}}", &s, err, sizeof(err)) == WH_EINVAL);
	CHECK(strncmp(err, "x.any: expected a size", 22) == 0);
	CHECK(walk("{\"x\": {\"any\": -1}}", &s, err, sizeof(err)) == WH_EINVAL);
	CHECK(walk("{\"x\": {\"any\": true}}", &s, err, sizeof(err)) == WH_EINVAL);
	CHECK(strncmp(err, "x.any: expected a size", 22) == 0);
}

int main(void)
{
	test_size_parse();
	test_size_key();
	CHECK_DONE();
}
