/* White-box checks of the upstream client's pure parts (the .c is included to
 * reach its static functions): the address classes a redirect is judged by,
 * the origin our Authorization is kept to, a token's lifetime, a Link
 * header's next page. The traffic
 * itself is tested end to end by tests/integration/test_hostile_upstream.py. */
#include "check.h"

#include "../../../src/cache/upstream.c"

static void test_address_classes(void)
{
	static const struct {
		const char *ip;
		enum addr_class want;
	} cases[] = {
	    {"127.0.0.1", AC_LOOPBACK},
	    {"127.255.0.9", AC_LOOPBACK},
	    {"::1", AC_LOOPBACK},
	    {"::ffff:127.0.0.1", AC_LOOPBACK},
	    {"169.254.169.254", AC_LINK_LOCAL},
	    {"fe80::1", AC_LINK_LOCAL},
	    {"febf::1", AC_LINK_LOCAL},
	    {"::ffff:169.254.169.254", AC_LINK_LOCAL},
	    {"64:ff9b::a9fe:a9fe", AC_LINK_LOCAL}, /* NAT64 of 169.254.169.254 */
	    {"10.1.2.3", AC_PRIVATE},
	    {"172.16.0.1", AC_PRIVATE},
	    {"172.31.255.255", AC_PRIVATE},
	    {"192.168.1.1", AC_PRIVATE},
	    {"100.64.0.1", AC_PRIVATE},
	    {"100.127.255.255", AC_PRIVATE},
	    {"fc00::1", AC_PRIVATE},
	    {"fd12:3456::1", AC_PRIVATE},
	    {"fec0::1", AC_PRIVATE},
	    {"::ffff:10.0.0.1", AC_PRIVATE},
	    {"0.0.0.0", AC_UNSPECIFIED},
	    {"0.1.2.3", AC_UNSPECIFIED},
	    {"::", AC_UNSPECIFIED},
	    {"224.0.0.1", AC_MULTICAST},
	    {"239.255.255.250", AC_MULTICAST},
	    {"255.255.255.255", AC_MULTICAST},
	    {"ff02::1", AC_MULTICAST},
	    /* just outside the ranges */
	    {"172.15.255.255", AC_PUBLIC},
	    {"172.32.0.1", AC_PUBLIC},
	    {"100.63.255.255", AC_PUBLIC},
	    {"100.128.0.1", AC_PUBLIC},
	    {"169.253.1.1", AC_PUBLIC},
	    {"11.0.0.1", AC_PUBLIC},
	    {"192.0.2.1", AC_PUBLIC},
	    {"2001:db8::1", AC_PUBLIC},
	    {"fe00::1", AC_PUBLIC},
	    {"not an address", AC_UNKNOWN},
	};
	for (size_t i = 0; i < WH_ARRAY_SIZE(cases); i++) {
		enum addr_class got = ip_text_class(cases[i].ip);
		if (got != cases[i].want)
			fprintf(stderr, "%s: class %d, expected %d\n", cases[i].ip, (int)got,
			        (int)cases[i].want);
		CHECK(got == cases[i].want);
	}
	CHECK(ip_text_class(NULL) == AC_UNKNOWN);

	/* The sockaddr curl hands the open-socket callback. */
	struct sockaddr_in in = {.sin_family = AF_INET};
	char text[INET6_ADDRSTRLEN];
	inet_pton(AF_INET, "169.254.169.254", &in.sin_addr);
	CHECK(sockaddr_class((struct sockaddr *)&in, text, sizeof(text)) == AC_LINK_LOCAL);
	CHECK_STREQ(text, "169.254.169.254");
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
	inet_pton(AF_INET6, "fd00::5", &in6.sin6_addr);
	CHECK(sockaddr_class((struct sockaddr *)&in6, text, sizeof(text)) == AC_PRIVATE);
	CHECK_STREQ(text, "fd00::5");
}

static void test_policy(void)
{
	wh_upstream up = {0};
	wh_up_req r = {.up = &up, .origin_class = AC_PUBLIC};
	CHECK(addr_allowed(&r, AC_PUBLIC));
	CHECK(!addr_allowed(&r, AC_LOOPBACK));
	CHECK(!addr_allowed(&r, AC_LINK_LOCAL));
	CHECK(!addr_allowed(&r, AC_PRIVATE));
	CHECK(!addr_allowed(&r, AC_UNSPECIFIED));
	CHECK(!addr_allowed(&r, AC_MULTICAST));
	CHECK(!addr_allowed(&r, AC_UNKNOWN));
	r.origin_class = AC_PRIVATE; /* a registry on a private network */
	CHECK(addr_allowed(&r, AC_PRIVATE) && addr_allowed(&r, AC_PUBLIC));
	CHECK(!addr_allowed(&r, AC_LINK_LOCAL) && !addr_allowed(&r, AC_LOOPBACK));
	r.origin_class = AC_UNKNOWN;
	CHECK(!addr_allowed(&r, AC_UNKNOWN));
	up.set.allow_private_redirects = true;
	CHECK(addr_allowed(&r, AC_LINK_LOCAL) && addr_allowed(&r, AC_UNKNOWN));
}

static void test_same_origin(void)
{
	if (curl_load() != 0) {
		fprintf(stderr, "no libcurl: same_origin not checked\n");
		return;
	}
	CHECK(same_origin("https://reg.example.com/v2/a", "https://reg.example.com:443/v2/b"));
	CHECK(same_origin("http://127.0.0.1:5000/v2/", "HTTP://127.0.0.1:5000/x?y=1"));
	CHECK(same_origin("https://Reg.Example.com/", "https://reg.example.com/"));
	CHECK(!same_origin("https://reg.example.com/", "http://reg.example.com/"));
	CHECK(!same_origin("https://reg.example.com/", "https://reg.example.com:8443/"));
	CHECK(!same_origin("http://127.0.0.1:5000/", "http://127.0.0.1:5001/"));
	CHECK(!same_origin("https://reg.example.com/", "https://cdn.example.com/"));
	CHECK(!same_origin("https://reg.example.com/", "https://reg.example.com@cdn.example.com/"));
	CHECK(!same_origin("https://reg.example.com/", "not a url"));
}

static void test_token_ttl(void)
{
	static const struct {
		const char *json;
		int64_t want;
	} cases[] = {
	    {"{\"expires_in\": 300}", 300},
	    {"{\"expires_in\": 1e300}", TOKEN_TTL_MAX_S},
	    {"{\"expires_in\": 1e19}", TOKEN_TTL_MAX_S},
	    {"{\"expires_in\": 1e999}", TOKEN_TTL_DEFAULT_S}, /* infinity: not a number to keep */
	    {"{\"expires_in\": 86401}", TOKEN_TTL_MAX_S},
	    {"{\"expires_in\": -5}", TOKEN_TTL_DEFAULT_S},
	    {"{\"expires_in\": -1e300}", TOKEN_TTL_DEFAULT_S},
	    {"{\"expires_in\": 0}", TOKEN_TTL_DEFAULT_S},
	    {"{\"expires_in\": 0.5}", 1},
	    {"{\"expires_in\": \"abc\"}", TOKEN_TTL_DEFAULT_S},
	    {"{\"expires_in\": null}", TOKEN_TTL_DEFAULT_S},
	    {"{}", TOKEN_TTL_DEFAULT_S},
	};
	for (size_t i = 0; i < WH_ARRAY_SIZE(cases); i++) {
		cJSON *doc = cJSON_Parse(cases[i].json);
		int64_t got = token_ttl_s(cJSON_GetObjectItemCaseSensitive(doc, "expires_in"));
		if (got != cases[i].want)
			fprintf(stderr, "%s: %lld, expected %lld\n", cases[i].json, (long long)got,
			        (long long)cases[i].want);
		CHECK(got == cases[i].want);
		cJSON_Delete(doc);
	}
}

/* Zot's retryDelay / maxRetryDelay: constant, or doubling to the cap; never
 * more than a waiting client is held; a 429's Retry-After wins. */
static void test_backoff(void)
{
	wh_sync_registry reg = {0};
	wh_up_req r = {0};
	r.reg = &reg;
	reg.retry_delay_ms = 300;
	reg.max_retry_delay_ms = 300;
	for (r.attempt = 0; r.attempt < 4; r.attempt++)
		CHECK(backoff_ms(&r, -1) == 300);
	reg.max_retry_delay_ms = 1000;
	const uint64_t want[] = {300, 600, 1000, 1000};
	for (r.attempt = 0; r.attempt < 4; r.attempt++)
		CHECK(backoff_ms(&r, -1) == want[r.attempt]);
	reg.retry_delay_ms = 5 * 60 * 1000; /* Zot's usual 5m */
	reg.max_retry_delay_ms = 30 * 60 * 1000;
	r.attempt = 3;
	CHECK(backoff_ms(&r, -1) == RETRY_WAIT_MAX_MS);
	CHECK(backoff_ms(&r, 2) == 2000);
	r.attempt = 62; /* no overflow however many attempts */
	CHECK(backoff_ms(&r, -1) == RETRY_WAIT_MAX_MS);
}

static void test_link_next(void)
{
	static const struct {
		const char *value;
		const char *want;
	} cases[] = {
	    {"</v2/a/tags/list?n=2&last=b>; rel=\"next\"", "/v2/a/tags/list?n=2&last=b"},
	    {"<https://r.example/v2/a/tags/list?last=b,c>; rel=next",
	     "https://r.example/v2/a/tags/list?last=b,c"},
	    {"</p>; rel=\"prev\", </n>; rel=\"next\"", "/n"},
	    {"</p>; title=\"next\"; rel=\"prev\"", ""},
	    {"</p>; rel=\"prev\"; title=\"next\"", ""},
	    {"</p>;rel=\"first next\"", "/p"},
	    {"</p>; rel=nextish", ""},
	    {"</p>; REL=\"Next\"", "/p"},
	    {"<>; rel=\"next\"", ""},
	    {"</p; rel=\"next\"", ""},
	    {"no link at all", ""},
	};
	char out[64];
	for (size_t i = 0; i < WH_ARRAY_SIZE(cases); i++) {
		link_next(cases[i].value, strlen(cases[i].value), out, sizeof(out));
		CHECK_STREQ(out, cases[i].want);
	}
	/* A target too long for the buffer is not taken, not cut. */
	link_next("</0123456789>; rel=next", 23, out, 8);
	CHECK_STREQ(out, "");
}

int main(void)
{
	test_backoff();
	test_address_classes();
	test_policy();
	test_same_origin();
	test_token_ttl();
	test_link_next();
	CHECK_DONE();
}
