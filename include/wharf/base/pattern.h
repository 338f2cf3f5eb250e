/* The patterns of sync content rules, with the semantics Zot gives them:
 * `prefix` is a doublestar glob, `tags.regex` / `tags.excludeRegex` are
 * regular expressions in the syntax Zot's users write (Go's RE2: `\d`,
 * `(?i)`, non-greedy repeats), matched anywhere in the tag unless anchored.
 * PCRE2 reads that syntax; POSIX regcomp would not. */
#ifndef WHARF_PATTERN_H
#define WHARF_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

typedef struct wh_regex wh_regex;

/* Compile; on failure returns WH_EINVAL with the reason and offset in err. */
int wh_regex_compile(const char *pattern, wh_regex **out, char *err, size_t errlen);
bool wh_regex_match(wh_regex *re, const char *subject);
void wh_regex_free(wh_regex *re);

/* Doublestar glob: `*` within a path component, `**` across components,
 * `?`, `[...]`, `{a,b}`. */
bool wh_glob_match(const char *pattern, const char *name);

/* True when tag parses as a version the way Masterminds/semver v1 does (Zot's
 * tags.semver): an optional "v", 1 to 3 dot-separated numbers, then an
 * optional -prerelease and +metadata of dot-separated [0-9A-Za-z-]
 * identifiers (a numeric prerelease identifier without a leading zero).
 * So v1.2, 1, 1.2.3-alpine and v2 pass; latest and 1.2.3.4 fail. */
bool wh_semver_valid(const char *tag);

#endif
