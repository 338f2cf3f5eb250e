/* Content-rule patterns: doublestar globs (our own: small, and the rules are
 * Zot's) and regular expressions (PCRE2). */
#include "wharf/base/pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"

struct wh_regex {
	pcre2_code *code;
	pcre2_match_data *md;
};

int wh_regex_compile(const char *pattern, wh_regex **out, char *err, size_t errlen)
{
	int code;
	PCRE2_SIZE off;
	pcre2_code *c =
	    pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &code, &off, NULL);
	*out = NULL;
	if (!c) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(code, msg, sizeof(msg));
		snprintf(err, errlen, "%s at offset %zu", (const char *)msg, (size_t)off);
		return WH_EINVAL;
	}
	wh_regex *re = wh_malloc(sizeof(*re));
	re->code = c;
	re->md = pcre2_match_data_create_from_pattern(c, NULL);
	if (!re->md) {
		pcre2_code_free(c);
		free(re);
		snprintf(err, errlen, "out of memory");
		return WH_ENOMEM;
	}
	*out = re;
	return 0;
}

bool wh_regex_match(wh_regex *re, const char *subject)
{
	return pcre2_match(re->code, (PCRE2_SPTR)subject, strlen(subject), 0, 0, re->md, NULL) >= 0;
}

void wh_regex_free(wh_regex *re)
{
	if (!re)
		return;
	pcre2_match_data_free(re->md);
	pcre2_code_free(re->code);
	free(re);
}

static bool class_match(const char **pp, char c)
{
	const char *p = *pp + 1;
	bool neg = false, ok = false;
	if (*p == '!' || *p == '^') {
		neg = true;
		p++;
	}
	bool first = true;
	while (*p && (*p != ']' || first)) {
		first = false;
		char lo = *p, hi = *p;
		if (p[1] == '-' && p[2] && p[2] != ']') {
			hi = p[2];
			p += 2;
		}
		if (c >= lo && c <= hi)
			ok = true;
		p++;
	}
	*pp = *p ? p + 1 : p;
	return ok != neg;
}

static bool glob_rec(const char *p, const char *n, int depth)
{
	if (depth > 64)
		return false;
	while (*p) {
		if (p[0] == '*' && p[1] == '*') {
			const char *rest = p + 2;
			/* "**\/" may match nothing at all. */
			if (*rest == '/' && glob_rec(rest + 1, n, depth + 1))
				return true;
			for (const char *t = n;; t++) {
				if (glob_rec(rest, t, depth + 1))
					return true;
				if (!*t)
					return false;
			}
		}
		if (*p == '*') {
			for (const char *t = n;; t++) {
				if (glob_rec(p + 1, t, depth + 1))
					return true;
				if (!*t || *t == '/')
					return false;
			}
		}
		if (*p == '{') {
			/* Try each alternative followed by the rest of the pattern. */
			const char *close = strchr(p, '}');
			if (!close)
				return false;
			const char *alt = p + 1;
			for (;;) {
				const char *e = alt;
				while (e < close && *e != ',')
					e++;
				char buf[1024];
				int k = snprintf(buf, sizeof(buf), "%.*s%s", (int)(e - alt), alt,
				                 close + 1);
				if (k > 0 && (size_t)k < sizeof(buf) && glob_rec(buf, n, depth + 1))
					return true;
				if (e >= close)
					return false;
				alt = e + 1;
			}
		}
		if (!*n)
			return false;
		if (*p == '?') {
			if (*n == '/')
				return false;
			p++;
			n++;
			continue;
		}
		if (*p == '[') {
			if (*n == '/' || !class_match(&p, *n))
				return false;
			n++;
			continue;
		}
		if (*p == '\\' && p[1])
			p++;
		if (*p != *n)
			return false;
		p++;
		n++;
	}
	return *n == '\0';
}

bool wh_glob_match(const char *pattern, const char *name)
{
	return glob_rec(pattern, name, 0);
}

/* ---- semver ---- */

static bool ident_char(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '-';
}

/* Dot-separated non-empty identifiers up to the end or `stop`; returns the
 * end, or NULL. */
static const char *idents(const char *s, char stop, bool prerelease)
{
	for (;;) {
		const char *b = s;
		bool digits = true;
		while (ident_char(*s)) {
			digits = digits && *s >= '0' && *s <= '9';
			s++;
		}
		if (s == b)
			return NULL;
		/* v1's validatePrerelease: no leading zero in a numeric one. */
		if (prerelease && digits && s - b > 1 && *b == '0')
			return NULL;
		if (*s != '.')
			return *s == '\0' || *s == stop ? s : NULL;
		s++;
	}
}

bool wh_semver_valid(const char *tag)
{
	const char *s = tag;
	if (*s == 'v')
		s++;
	for (int part = 0; part < 3; part++) {
		if (part > 0) {
			if (*s != '.')
				break;
			s++;
		}
		const char *b = s;
		while (*s >= '0' && *s <= '9')
			s++;
		/* Each number must fit an int64 (strconv.ParseInt). */
		if (s == b || s - b > 18)
			return false;
	}
	if (*s == '-') {
		s = idents(s + 1, '+', true);
		if (!s)
			return false;
	}
	if (*s == '+') {
		s = idents(s + 1, '\0', false);
		if (!s)
			return false;
	}
	return *s == '\0';
}
