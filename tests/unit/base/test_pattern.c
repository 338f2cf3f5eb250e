/* Content-rule patterns: doublestar globs and Go-style regular expressions. */
#include <stdlib.h>

#include "check.h"
#include "wharf/base/common.h"
#include "wharf/base/pattern.h"

static bool re_match(const char *pattern, const char *s)
{
	wh_regex *re;
	char err[160];
	if (wh_regex_compile(pattern, &re, err, sizeof(err)) != 0)
		return false;
	bool m = wh_regex_match(re, s);
	wh_regex_free(re);
	return m;
}

int main(void)
{
	static const struct {
		const char *pat, *name;
		bool match;
	} globs[] = {
	    {"**", "library/nginx", true},
	    {"**", "a", true},
	    {"*", "nginx", true},
	    {"*", "library/nginx", false},
	    {"library/*", "library/nginx", true},
	    {"library/*", "library/a/b", false},
	    {"library/**", "library/a/b", true},
	    {"**/nginx", "nginx", true},
	    {"**/nginx", "a/b/nginx", true},
	    {"**/nginx", "a/b/nginx2", false},
	    {"team/{app,web}", "team/web", true},
	    {"team/{app,web}", "team/db", false},
	    {"v?/x", "v1/x", true},
	    {"v?/x", "v/x", false},
	    {"[a-c]*", "beta", true},
	    {"[!a-c]*", "beta", false},
	    {"repo1/repo2/**", "repo1/repo2/x", true},
	    {"repo1/repo2/**", "repo1/other/x", false},
	};
	for (size_t i = 0; i < WH_ARRAY_SIZE(globs); i++) {
		bool m = wh_glob_match(globs[i].pat, globs[i].name);
		if (m != globs[i].match)
			fprintf(stderr, "glob %s vs %s: got %d\n", globs[i].pat, globs[i].name, m);
		CHECK(m == globs[i].match);
	}

	/* Go's syntax, as Zot users write it. */
	CHECK(re_match("^v\\d+\\.\\d+$", "v1.25"));
	CHECK(!re_match("^v\\d+\\.\\d+$", "v1.x"));
	CHECK(re_match("(?i)^LATEST$", "latest"));
	CHECK(re_match("4.*", "1.4.2")); /* unanchored: anywhere */
	CHECK(!re_match("^4.*", "1.4.2"));
	CHECK(re_match("^(alpine|slim)-.*?$", "slim-bookworm"));
	wh_regex *re = NULL;
	char err[160] = "";
	CHECK(wh_regex_compile("(unclosed", &re, err, sizeof(err)) == WH_EINVAL && !re);
	CHECK(err[0] != '\0');

	/* Masterminds/semver v1, as Zot's tags.semver parses. */
	static const char *const ok[] = {"v1.2",    "1",          "1.2.3-alpine", "v2",
	                                 "1.2.3",   "v1.2.3+b.1", "1.0.0-rc.1",   "1.2-x-y.0+meta",
	                                 "10.20.30"};
	static const char *const bad[] = {"latest",
	                                  "1.2.3.4",
	                                  "",
	                                  "v",
	                                  "1.",
	                                  "1..2",
	                                  "1.2.3-",
	                                  "1.2.3-01",
	                                  "1.2.3+",
	                                  "V1",
	                                  "1.2.3-a..b",
	                                  "sha256-abc",
	                                  "1234567890123456789"};
	for (size_t i = 0; i < WH_ARRAY_SIZE(ok); i++) {
		if (!wh_semver_valid(ok[i]))
			fprintf(stderr, "semver %s refused\n", ok[i]);
		CHECK(wh_semver_valid(ok[i]));
	}
	for (size_t i = 0; i < WH_ARRAY_SIZE(bad); i++) {
		if (wh_semver_valid(bad[i]))
			fprintf(stderr, "semver %s accepted\n", bad[i]);
		CHECK(!wh_semver_valid(bad[i]));
	}
	CHECK_DONE();
}
