/* The configuration engine (conf.h): one walker over the modules' key
 * tables, the typed values, the key path, Go durations, sizes. */
#include "wharf/base/conf.h"
#include "wharf/base/common.h"
#include "wharf/base/pattern.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- durations ---------------------------------------------------------- */

/* Go's time.ParseDuration, without the sign: a sequence of decimal numbers,
 * each with an optional fraction and a unit; "0" alone needs no unit. The
 * result is computed in nanoseconds, as Go does (same overflow limit), then
 * truncated to milliseconds. */
int wh_duration_parse(const char *s, int64_t *ms)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
	    {"ns", 1ULL},           {"us", 1000ULL},
	    {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
	    {"\xce\xbcs", 1000ULL}, /* U+03BC Greek mu */
	    {"ms", 1000000ULL},     {"s", 1000000000ULL},
	    {"m", 60000000000ULL},  {"h", 3600000000000ULL},
	};
	const uint64_t limit = (uint64_t)INT64_MAX;
	uint64_t total = 0;
	const char *p = s;

	if (!p || !*p)
		return WH_EINVAL;
	if (*p == '+')
		p++;
	if (strcmp(p, "0") == 0) {
		*ms = 0;
		return 0;
	}
	if (!*p)
		return WH_EINVAL;
	while (*p) {
		uint64_t v = 0, unit = 0;
		double frac = 0, scale = 1;
		int digits = 0, fdigits = 0;
		size_t ulen = 0;

		for (; *p >= '0' && *p <= '9'; p++, digits++) {
			if (v > (limit - (uint64_t)(*p - '0')) / 10)
				return WH_EINVAL;
			v = v * 10 + (uint64_t)(*p - '0');
		}
		if (*p == '.') {
			for (p++; *p >= '0' && *p <= '9'; p++, fdigits++) {
				if (scale < 1e18) { /* further digits cannot matter */
					frac = frac * 10 + (*p - '0');
					scale *= 10;
				}
			}
		}
		if (digits == 0 && fdigits == 0)
			return WH_EINVAL;
		while (p[ulen] && p[ulen] != '.' && (p[ulen] < '0' || p[ulen] > '9'))
			ulen++;
		for (size_t i = 0; i < WH_ARRAY_SIZE(units); i++)
			if (strlen(units[i].name) == ulen && strncmp(p, units[i].name, ulen) == 0)
				unit = units[i].ns;
		if (!unit)
			return WH_EINVAL;
		p += ulen;
		if (v > limit / unit)
			return WH_EINVAL;
		v *= unit;
		if (frac > 0) {
			v += (uint64_t)(frac * ((double)unit / scale));
			if (v > limit)
				return WH_EINVAL;
		}
		if (v > limit - total)
			return WH_EINVAL;
		total += v;
	}
	*ms = (int64_t)(total / 1000000);
	return 0;
}

/* ---- sizes ---- */

int wh_size_parse(const char *s, int64_t *bytes)
{
	static const struct {
		const char *name;
		uint64_t n;
	} units[] = {
	    {"", 1},
	    {"B", 1},
	    {"KiB", 1ULL << 10},
	    {"MiB", 1ULL << 20},
	    {"GiB", 1ULL << 30},
	    {"TiB", 1ULL << 40},
	    {"KB", 1000ULL},
	    {"MB", 1000000ULL},
	    {"GB", 1000000000ULL},
	    {"TB", 1000000000000ULL},
	};
	const uint64_t limit = (uint64_t)INT64_MAX;
	uint64_t v = 0, frac = 0, scale = 1, unit = 0;
	int digits = 0, fdigits = 0;
	const char *p = s;

	if (!p)
		return WH_EINVAL;
	for (; *p >= '0' && *p <= '9'; p++, digits++) {
		if (v > (limit - (uint64_t)(*p - '0')) / 10)
			return WH_EINVAL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		/* Nine digits of a fraction are more than any unit here needs
		 * (a TiB's billionth is 1100 bytes); the rest only round down. */
		for (p++; *p >= '0' && *p <= '9'; p++, fdigits++) {
			if (fdigits < 9) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				scale *= 10;
			}
		}
		if (fdigits == 0)
			return WH_EINVAL;
	}
	if (digits == 0)
		return WH_EINVAL;
	if (*p == ' ') {
		while (*p == ' ')
			p++;
		if (!*p)
			return WH_EINVAL; /* spaces, then a unit */
	}
	for (size_t i = 0; i < WH_ARRAY_SIZE(units); i++)
		if (strcmp(p, units[i].name) == 0)
			unit = units[i].n;
	if (!unit || (fdigits && unit == 1) || v > limit / unit)
		return WH_EINVAL;
	v *= unit;
	/* floor(frac * unit / scale), exactly and without overflow: unit =
	 * q * scale + r, with frac and r below 10^9. */
	frac = (unit / scale) * frac + (unit % scale) * frac / scale;
	if (frac > limit - v)
		return WH_EINVAL;
	*bytes = (int64_t)(v + frac);
	return 0;
}

/* ---- the walk ---- */

int wh_conf_fail(wh_conf *p, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* A problem under a key already found wrong follows from it
	 * ("storage: expected an object", then "storage.rootDirectory:
	 * required"): the first says it all. */
	for (int i = 0; i < p->n_errors; i++) {
		size_t l = strcspn(p->errors[i], ":");
		if (p->errors[i][l] == ':' && strncmp(p->errors[i], p->path, l) == 0 &&
		    (p->path[l] == '\0' || p->path[l] == '.' || p->path[l] == '['))
			return WH_EINVAL;
	}
	size_t n = strlen(p->path) + strlen(msg) + 3;
	char *text = wh_malloc(n);
	snprintf(text, n, "%s%s%s", p->path, p->len ? ": " : "", msg);
	if (p->err && p->errlen && p->n_errors == 0)
		snprintf(p->err, p->errlen, "%s", text);
	if (p->n_errors < WH_CONF_ERRORS_MAX) {
		p->errors = wh_realloc(p->errors, (size_t)(p->n_errors + 1) * sizeof(*p->errors));
		p->errors[p->n_errors++] = text;
	} else {
		free(text);
	}
	return WH_EINVAL;
}

/* Extends the path by n characters just written (snprintf's return). */
static size_t advance(wh_conf *p, size_t old, int n)
{
	if (n > 0)
		p->len = WH_MIN(old + (size_t)n, sizeof(p->path) - 1);
	return old;
}

size_t wh_conf_push_key(wh_conf *p, const char *key)
{
	size_t old = p->len;
	return advance(p, old,
	               snprintf(p->path + old, sizeof(p->path) - old, "%s%s", old ? "." : "", key));
}

size_t wh_conf_push_index(wh_conf *p, int index)
{
	size_t old = p->len;
	return advance(p, old, snprintf(p->path + old, sizeof(p->path) - old, "[%d]", index));
}

void wh_conf_pop(wh_conf *p, size_t old)
{
	p->len = old;
	p->path[old] = '\0';
}

static void add_warning(wh_conf *p)
{
	p->warnings = wh_realloc(p->warnings, (size_t)(p->n_warnings + 1) * sizeof(*p->warnings));
	p->warnings[p->n_warnings++] = wh_strdup(p->path);
}

/* A config that works, but not as its author may think: "path: what". */
void wh_conf_notice(wh_conf *p, const char *what)
{
	size_t n = strlen(p->path) + strlen(what) + 3;
	char *text = wh_malloc(n);
	snprintf(text, n, "%s: %s", p->path, what);
	p->notices = wh_realloc(p->notices, (size_t)(p->n_notices + 1) * sizeof(*p->notices));
	p->notices[p->n_notices++] = text;
}

void wh_conf_strv_free(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void wh_conf_release(wh_conf *p)
{
	wh_conf_strv_free(p->warnings, p->n_warnings);
	wh_conf_strv_free(p->notices, p->n_notices);
	wh_conf_strv_free(p->errors, p->n_errors);
	p->warnings = p->notices = p->errors = NULL;
	p->n_warnings = p->n_notices = p->n_errors = 0;
}

static void set_string(char *base, size_t off, const char *s)
{
	char **dst;

	if (off == WH_CONF_NOSTORE)
		return;
	dst = (char **)(void *)(base + off);
	free(*dst);
	*dst = wh_strdup(s);
}

/* Go's strconv.ParseBool. */
static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
	static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
	for (size_t i = 0; i < WH_ARRAY_SIZE(yes); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

bool wh_conf_weak_bool(const cJSON *v, bool *out)
{
	if (cJSON_IsBool(v)) {
		*out = cJSON_IsTrue(v);
		return true;
	}
	if (cJSON_IsNumber(v)) {
		*out = v->valuedouble != 0;
		return true;
	}
	if (cJSON_IsString(v)) {
		if (!*v->valuestring) {
			*out = false; /* mapstructure: "" is false */
			return true;
		}
		return parse_bool(v->valuestring, out);
	}
	return false;
}

/* A whole number in [min, max]: a number, a numeric string ("3", "0x10", as
 * strconv.ParseInt with base 0) or a boolean, as Zot's weak decoding. */
int wh_conf_int(wh_conf *p, const cJSON *v, int min, int max, int *out)
{
	double d;

	if (cJSON_IsString(v)) {
		char *end = NULL;
		const char *s = v->valuestring;
		errno = 0;
		long long n = *s ? strtoll(s, &end, 0) : 0;
		if (errno || (*s && (*end || end == s)))
			return wh_conf_fail(p, "expected an integer, not \"%s\"", s);
		d = (double)n;
	} else if (cJSON_IsBool(v)) {
		d = cJSON_IsTrue(v) ? 1 : 0;
	} else if (!cJSON_IsNumber(v)) {
		return wh_conf_fail(p, "expected an integer");
	} else {
		d = v->valuedouble;
	}
	if (d < (double)INT_MIN || d > (double)INT_MAX || d != (double)(int)d)
		return wh_conf_fail(p, "expected an integer");
	if (d < min)
		return min > 0 ? wh_conf_fail(p, "must be greater than 0")
		               : wh_conf_fail(p, "must not be negative");
	if (d > max)
		return wh_conf_fail(p, "must be at most %d", max);
	*out = (int)d;
	return 0;
}

/* A JSON number that is a whole, non-negative int64 (range checked before
 * the conversion, which is undefined outside it). */
static bool whole_number(const cJSON *v, int64_t *out)
{
	double d = v->valuedouble;
	if (!(d >= 0 && d < 9.2e18) || d != (double)(int64_t)d)
		return false;
	*out = (int64_t)d;
	return true;
}

int wh_conf_duration(wh_conf *p, const cJSON *v, int64_t *ms)
{
	/* Zot's decoder takes a bare number as nanoseconds, as Go's time.Duration does. */
	if (cJSON_IsNumber(v)) {
		int64_t ns;
		if (!whole_number(v, &ns))
			return wh_conf_fail(p, "expected a duration such as \"30s\" or \"1h30m\"");
		*ms = ns / 1000000;
		return 0;
	}
	if (!cJSON_IsString(v))
		return wh_conf_fail(p, "expected a duration such as \"30s\" or \"1h30m\"");
	if (wh_duration_parse(v->valuestring, ms) != 0)
		return wh_conf_fail(
		    p, "invalid duration \"%s\" (examples: \"250ms\", \"30s\", \"1h30m\")",
		    v->valuestring);
	return 0;
}

int wh_conf_size(wh_conf *p, const cJSON *v, int64_t *bytes)
{
	/* A bare number is bytes, as a size written without a unit. */
	if (cJSON_IsNumber(v)) {
		if (!whole_number(v, bytes))
			return wh_conf_fail(p, "expected a size such as \"64MiB\", \"1GB\" or "
			                       "\"1048576\" (bytes)");
		return 0;
	}
	if (!cJSON_IsString(v))
		return wh_conf_fail(p, "expected a size such as \"64MiB\", \"1GB\" or \"1048576\" "
		                       "(bytes)");
	if (wh_size_parse(v->valuestring, bytes) != 0)
		return wh_conf_fail(p,
		                    "invalid size \"%s\" (a number of bytes, or with a unit: KiB, "
		                    "MiB, GiB, TiB, or KB, MB, GB, TB)",
		                    v->valuestring);
	return 0;
}

static int get_port(wh_conf *p, const cJSON *v, int *port)
{
	if (cJSON_IsString(v)) {
		const char *s = v->valuestring;
		char *end = NULL;
		long n;

		if (*s < '0' || *s > '9' || strlen(s) > 5)
			return wh_conf_fail(p, "invalid port \"%s\" (1-65535)", s);
		errno = 0;
		n = strtol(s, &end, 10);
		if (errno || *end || n < 1 || n > 65535)
			return wh_conf_fail(p, "invalid port \"%s\" (1-65535)", s);
		*port = (int)n;
		return 0;
	}
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d < 1 || d > 65535 || d != (double)(int)d)
			return wh_conf_fail(p, "invalid port %g (1-65535)", d);
		*port = (int)d;
		return 0;
	}
	return wh_conf_fail(p, "expected a port number (1-65535)");
}

/* What is wrong with a doublestar glob, or NULL. Like doublestar's
 * ValidatePattern: brackets and braces balance, a class is not empty, a
 * backslash escapes something. */
const char *wh_conf_glob_problem(const char *g)
{
	int depth = 0;

	if (!*g)
		return "empty pattern";
	for (const char *c = g; *c; c++) {
		switch (*c) {
		case '\\':
			if (!c[1])
				return "trailing backslash";
			c++;
			break;
		case '[':
			c++;
			if (*c == '!' || *c == '^')
				c++;
			if (*c == ']')
				return "empty character class";
			while (*c && *c != ']') {
				if (*c == '\\' && !*++c)
					return "trailing backslash";
				c++;
			}
			if (!*c)
				return "unbalanced '['";
			break;
		case '{':
			depth++;
			break;
		case '}':
			if (depth == 0)
				return "unbalanced '}'";
			depth--;
			break;
		default:
			break;
		}
	}
	return depth ? "unbalanced '{'" : NULL;
}

void wh_conf_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

int wh_conf_each(wh_conf *p, const cJSON *v, bool map, const char *expected,
                 int (*fn)(wh_conf *p, const cJSON *item, int i, void *arg), void *arg)
{
	const cJSON *item;
	int i = 0, rc = 0;

	if (map ? !cJSON_IsObject(v) : !cJSON_IsArray(v))
		return wh_conf_fail(p, "%s", expected);
	cJSON_ArrayForEach(item, v)
	{
		size_t old = map ? wh_conf_push_key(p, item->string) : wh_conf_push_index(p, i);
		if (map && wh_conf_dup_key(v, item))
			rc = wh_conf_fail(p, "duplicate key");
		else
			rc = fn(p, item, i, arg);
		wh_conf_pop(p, old);
		if (rc)
			break;
		i++;
	}
	return rc;
}

const char *wh_conf_weak_string(const cJSON *v, char *buf, size_t len)
{
	if (cJSON_IsString(v))
		return v->valuestring;
	if (cJSON_IsBool(v))
		return cJSON_IsTrue(v) ? "1" : "0";
	if (!cJSON_IsNumber(v))
		return NULL;
	double d = v->valuedouble;
	/* The range first: converting a double out of it is undefined. */
	if (d > -9e18 && d < 9e18 && d == (double)(long long)d)
		snprintf(buf, len, "%lld", (long long)d);
	else
		snprintf(buf, len, "%.17g", d);
	return buf;
}

struct strv {
	char ***out;
	int *n;
};

static int strv_item(wh_conf *p, const cJSON *item, int i, void *arg)
{
	struct strv *sv = arg;
	char buf[64];
	const char *s = wh_conf_weak_string(item, buf, sizeof(buf));
	if (!s)
		return wh_conf_fail(p, "expected a string");
	(*sv->out)[(*sv->n)++] = wh_strdup(s);
	return 0;
}

/* An array of strings into *out / *n (appended to what is there). */
int wh_conf_strv(wh_conf *p, const cJSON *v, char ***out, int *n)
{
	struct strv sv = {out, n};
	int rc = 0;

	if (cJSON_IsArray(v))
		*out = wh_realloc(*out, (size_t)(*n + cJSON_GetArraySize(v) + 1) * sizeof(**out));
	rc = wh_conf_each(p, v, false, "expected an array of strings", strv_item, &sv);
	return rc;
}

/* True when a key of the map obj before item is item's key, case aside:
 * viper would have merged them. */
bool wh_conf_dup_key(const cJSON *obj, const cJSON *item)
{
	for (const cJSON *prev = obj->child; prev != item; prev = prev->next)
		if (strcasecmp(prev->string, item->string) == 0)
			return true;
	return false;
}

static int parse_key(wh_conf *p, const wh_conf_key *f, const cJSON *v, char *base)
{
	bool set = true; /* for the *_IF_SET flags */
	int rc = 0;

	switch (f->type) {
	case WH_CONF_ANY:
		set = !cJSON_IsNull(v) && !cJSON_IsFalse(v) &&
		      !((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child);
		break;
	case WH_CONF_STRING:
	case WH_CONF_REGEX:
	case WH_CONF_GLOB: {
		const char *why;
		wh_regex *re;
		char num[64];
		const char *s = wh_conf_weak_string(v, num, sizeof(num));
		if (!s)
			return wh_conf_fail(p, "expected a string");
		if ((f->flags & WH_CONF_NONEMPTY) && !*s)
			return wh_conf_fail(p, "must not be empty");
		if (f->type == WH_CONF_GLOB && (why = wh_conf_glob_problem(s)))
			return wh_conf_fail(p, "invalid glob \"%s\": %s", s, why);
		if (f->type == WH_CONF_REGEX) {
			char buf[192];
			if (wh_regex_compile(s, &re, buf, sizeof(buf)) != 0)
				return wh_conf_fail(p, "invalid regular expression \"%s\": %s", s,
				                    buf);
			wh_regex_free(re);
		}
		set_string(base, f->off, s);
		set = *s != '\0';
		break;
	}
	case WH_CONF_BOOL: {
		bool b;
		if (!wh_conf_weak_bool(v, &b))
			return wh_conf_fail(p, "expected a boolean");
		if (f->off != WH_CONF_NOSTORE)
			*(bool *)(void *)(base + f->off) = b;
		set = b;
		break;
	}
	case WH_CONF_INT: {
		int n = 0;
		rc = wh_conf_int(p, v, (f->flags & WH_CONF_POSITIVE) ? 1 : 0, INT_MAX, &n);
		if (rc)
			return rc;
		if (f->off != WH_CONF_NOSTORE)
			*(int *)(void *)(base + f->off) = n;
		set = n != 0;
		break;
	}
	case WH_CONF_DURATION: {
		int64_t ms = 0;
		rc = wh_conf_duration(p, v, &ms);
		if (rc)
			return rc;
		if ((f->flags & WH_CONF_POSITIVE) && ms <= 0)
			return wh_conf_fail(p, "must be greater than 0");
		if (f->off != WH_CONF_NOSTORE)
			*(int64_t *)(void *)(base + f->off) = ms;
		set = ms != 0;
		break;
	}
	case WH_CONF_SIZE: {
		int64_t n = 0;
		rc = wh_conf_size(p, v, &n);
		if (rc)
			return rc;
		if ((f->flags & WH_CONF_POSITIVE) && n <= 0)
			return wh_conf_fail(p, "must be greater than 0");
		if (f->off != WH_CONF_NOSTORE)
			*(int64_t *)(void *)(base + f->off) = n;
		set = n != 0;
		break;
	}
	case WH_CONF_PORT:
		rc = get_port(p, v, (int *)(void *)(base + f->off));
		break;
	case WH_CONF_OBJECT:
		if ((f->flags & WH_CONF_PRESENCE) && cJSON_IsObject(v))
			*(bool *)(void *)(base + f->off) = true;
		rc = wh_conf_walk(p, v, f->sub, base);
		break;
	case WH_CONF_SECTION:
		if ((f->flags & WH_CONF_PRESENCE) && cJSON_IsObject(v))
			*(bool *)(void *)(base + f->off) = true;
		rc = wh_conf_walk(p, v, f->sub, base + f->off);
		break;
	case WH_CONF_INLINE: /* never matched by name */
		break;
	case WH_CONF_CUSTOM:
		rc = f->fn(p, v, f->off == WH_CONF_NOSTORE ? base : base + f->off);
		break;
	}
	if (rc == 0 && ((f->flags & WH_CONF_REFUSE) || ((f->flags & WH_CONF_REFUSE_IF_SET) && set)))
		return wh_conf_fail(p, "not implemented by wharf: refusing to run without the "
		                       "protection it asks for (remove the key, or serve this "
		                       "config with Zot)");
	if (rc == 0 && ((f->flags & WH_CONF_WARN) || ((f->flags & WH_CONF_WARN_IF_SET) && set)))
		add_warning(p);
	return rc;
}

/* The key called name in keys, or in the tables inlined into it; *off is
 * where its base is, relative to keys' own. */
static const wh_conf_key *find_key(const wh_conf_key *keys, const char *name, size_t *off)
{
	for (; keys->name; keys++) {
		if (keys->type == WH_CONF_INLINE) {
			const wh_conf_key *k = find_key(keys->sub, name, off);
			if (k) {
				*off += keys->off;
				return k;
			}
		} else if (strcasecmp(keys->name, name) == 0) {
			*off = 0;
			return keys;
		}
	}
	return NULL;
}

/* Optimal string alignment distance, case aside, capped at cap + 1. */
static int distance(const char *a, const char *b, int cap)
{
	int la = (int)strlen(a), lb = (int)strlen(b);
	if (la > 64 || lb > 64 || abs(la - lb) > cap)
		return cap + 1;
	int d[65][65];
	for (int i = 0; i <= la; i++)
		d[i][0] = i;
	for (int j = 0; j <= lb; j++)
		d[0][j] = j;
	for (int i = 1; i <= la; i++) {
		for (int j = 1; j <= lb; j++) {
			int cost =
			    tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			int v = WH_MIN(WH_MIN(d[i - 1][j] + 1, d[i][j - 1] + 1),
			               d[i - 1][j - 1] + cost);
			if (i > 1 && j > 1 &&
			    tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]))
				v = WH_MIN(v, d[i - 2][j - 2] + 1);
			d[i][j] = v;
		}
	}
	return d[la][lb];
}

/* The known key closest to name (inlined tables included), if close. */
static const char *closest(const wh_conf_key *keys, const char *name, int *best)
{
	const char *found = NULL;
	for (; keys->name; keys++) {
		const char *k = NULL;
		int dk = *best;
		if (keys->type == WH_CONF_INLINE) {
			k = closest(keys->sub, name, &dk);
		} else {
			dk = distance(keys->name, name, *best);
			k = keys->name;
		}
		if (k && dk < *best) {
			*best = dk;
			found = k;
		}
	}
	return found;
}

static int unknown_key(wh_conf *p, const wh_conf_key *keys, const char *name)
{
	/* Two edits at most, fewer for short names: "prot" is not "port". */
	int cap = strlen(name) <= 4 ? 1 : 2, best = cap + 1;
	const char *k = closest(keys, name, &best);
	if (k && best <= cap)
		return wh_conf_fail(p, "unknown key (did you mean \"%s\"?)", k);
	return wh_conf_fail(p, "unknown key");
}

int wh_conf_walk(wh_conf *p, const cJSON *obj, const wh_conf_key *keys, char *base)
{
	const cJSON *item;
	int errors = p->n_errors, rc = 0;

	if (!cJSON_IsObject(obj))
		return wh_conf_fail(p, "expected an object");
	cJSON_ArrayForEach(item, obj)
	{
		size_t off = 0;
		const wh_conf_key *f = find_key(keys, item->string, &off);
		size_t old = wh_conf_push_key(p, item->string);

		if (wh_conf_dup_key(obj, item)) {
			rc = wh_conf_fail(p, "duplicate key");
		} else if (!f) {
			rc = unknown_key(p, keys, item->string);
		} else if (cJSON_IsNull(item)) {
			rc = 0;
		} else if ((f->flags & WH_CONF_LIST) && !cJSON_IsArray(item)) {
			/* A single value for a list: a list of one, parsed as such. */
			cJSON *list = cJSON_CreateArray();
			cJSON_AddItemToArray(list, cJSON_Duplicate(item, true));
			rc = parse_key(p, f, list, base + off);
			cJSON_Delete(list);
		} else {
			rc = parse_key(p, f, item, base + off);
		}
		wh_conf_pop(p, old);
		(void)rc; /* on to the next key: every problem is named */
	}
	return p->n_errors > errors ? WH_EINVAL : 0;
}
