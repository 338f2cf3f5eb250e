/* Configuration: Zot's config.json into a wh_config.
 *
 * Each JSON object of the file is described by a table of fields: its keys,
 * their types and where the value goes. One walker applies the tables, so an
 * unknown key, a wrong type or a bad value is reported the same way everywhere,
 * with the key's path ("extensions.sync.registries[0].urls[1]"). The tables
 * follow Zot's Go structs (pkg/api/config, pkg/extensions/config): a key Zot
 * accepts is never an error here; if Wharf does not implement it, its path is
 * added to cfg->warnings and its subtree is accepted as it is.
 *
 * Zot reads the file through viper, which matches keys case-insensitively and
 * turns null into the zero value; we do the same. Zot's decoder is also weakly
 * typed ("gc": "true"); we are not, except for the port, which Zot's own
 * examples write as a string. */
#include "wharf/base/config.h"
#include "wharf/base/common.h"
#include "wharf/base/log.h"
#include "wharf/base/pattern.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SECOND_MS      1000LL
#define MINUTE_MS      (60 * SECOND_MS)
#define HOUR_MS        (60 * MINUTE_MS)
#define MAX_FILE_BYTES (16u << 20)

const char wh_config_default_json[] = "{\n"
                                      "  \"distSpecVersion\": \"1.0.1\",\n"
                                      "  \"storage\": {\n"
                                      "    \"rootDirectory\": \"" WH_DEFAULT_ROOT "\",\n"
                                      "    \"gc\": true,\n"
                                      "    \"dedupe\": true\n"
                                      "  },\n"
                                      "  \"http\": {\n"
                                      "    \"address\": \"127.0.0.1\",\n"
                                      "    \"port\": \"5000\"\n"
                                      "  },\n"
                                      "  \"log\": {\n"
                                      "    \"level\": \"info\"\n"
                                      "  },\n"
                                      "  \"extensions\": {\n"
                                      "    \"search\": {\n"
                                      "      \"enable\": true\n"
                                      "    },\n"
                                      "    \"ui\": {\n"
                                      "      \"enable\": true\n"
                                      "    },\n"
                                      "    \"sync\": {\n"
                                      "      \"enable\": true,\n"
                                      "      \"registries\": [\n"
                                      "        {\n"
                                      "          \"urls\": [\n"
                                      "            \"https://index.docker.io\"\n"
                                      "          ],\n"
                                      "          \"content\": [\n"
                                      "            {\n"
                                      "              \"prefix\": \"**\",\n"
                                      "              \"destination\": \"/dockerhub\"\n"
                                      "            }\n"
                                      "          ],\n"
                                      "          \"onDemand\": true,\n"
                                      "          \"tlsVerify\": true\n"
                                      "        },\n"
                                      "        {\n"
                                      "          \"urls\": [\n"
                                      "            \"https://ghcr.io\"\n"
                                      "          ],\n"
                                      "          \"content\": [\n"
                                      "            {\n"
                                      "              \"prefix\": \"**\",\n"
                                      "              \"destination\": \"/ghcr\"\n"
                                      "            }\n"
                                      "          ],\n"
                                      "          \"onDemand\": true,\n"
                                      "          \"tlsVerify\": true\n"
                                      "        }\n"
                                      "      ]\n"
                                      "    }\n"
                                      "  }\n"
                                      "}\n";

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

/* ---- the walker ----------------------------------------------------------- */

struct parser {
	wh_config *cfg;
	char *err;
	size_t errlen;
	char path[512]; /* the key being parsed, "http.wharf.maxHeaders" */
	size_t len;
};

enum ftype {
	T_ANY,      /* accepted whatever it holds, not inspected */
	T_STRING,   /* char * */
	T_REGEX,    /* char *, a POSIX extended regular expression */
	T_GLOB,     /* char *, a doublestar glob */
	T_BOOL,     /* bool */
	T_INT,      /* int, >= 0 (> 0 with F_POSITIVE) */
	T_DURATION, /* int64_t milliseconds */
	T_PORT,     /* int 1..65535, from a string or a number */
	T_LEVEL,    /* int WH_LOG_* from a level name */
	T_OBJECT,   /* nested fields, same base */
	T_CUSTOM,   /* parsed by fn */
};

enum {
	W_ALWAYS = 1 << 0,   /* not implemented: warn when present */
	W_IF_SET = 1 << 1,   /* not implemented: warn when true, non-zero or non-empty */
	F_POSITIVE = 1 << 2, /* T_INT, T_DURATION: must be > 0 */
	F_NONEMPTY = 1 << 3, /* T_STRING: must not be "" */
	F_PRESENCE = 1 << 4, /* T_OBJECT: the bool at off is set true when the object is present */
	/* A security key Wharf does not implement: an error, never a warning. A
	 * config that asks for protection is not served without it (fail closed).
	 * R_ALWAYS whenever present, R_IF_SET when true, non-zero or non-empty. */
	R_ALWAYS = 1 << 5,
	R_IF_SET = 1 << 6,
};

#define NOSTORE SIZE_MAX

struct parser;
struct field {
	const char *name;
	enum ftype type;
	unsigned flags;
	size_t off; /* into the base, or NOSTORE */
	const struct field *sub;
	int (*fn)(struct parser *p, const cJSON *v, char *base);
};

static int fail(struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct parser *p, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (p->err && p->errlen)
		snprintf(p->err, p->errlen, "%s%s%s", p->path, p->len ? ": " : "", msg);
	return WH_EINVAL;
}

/* Extends the path by n characters just written (snprintf's return). */
static size_t advance(struct parser *p, size_t old, int n)
{
	if (n > 0)
		p->len = WH_MIN(old + (size_t)n, sizeof(p->path) - 1);
	return old;
}

static size_t push_key(struct parser *p, const char *key)
{
	size_t old = p->len;
	return advance(p, old,
	               snprintf(p->path + old, sizeof(p->path) - old, "%s%s", old ? "." : "", key));
}

static size_t push_index(struct parser *p, int index)
{
	size_t old = p->len;
	return advance(p, old, snprintf(p->path + old, sizeof(p->path) - old, "[%d]", index));
}

static void pop(struct parser *p, size_t old)
{
	p->len = old;
	p->path[old] = '\0';
}

static void add_warning(struct parser *p)
{
	wh_config *c = p->cfg;

	c->warnings = wh_realloc(c->warnings, (size_t)(c->n_warnings + 1) * sizeof(*c->warnings));
	c->warnings[c->n_warnings++] = wh_strdup(p->path);
}

/* A config that works, but not as its author may think: "path: what". */
static void add_notice(struct parser *p, const char *what)
{
	wh_config *c = p->cfg;
	size_t n = strlen(p->path) + strlen(what) + 3;
	char *text = wh_malloc(n);
	snprintf(text, n, "%s: %s", p->path, what);
	c->notices = wh_realloc(c->notices, (size_t)(c->n_notices + 1) * sizeof(*c->notices));
	c->notices[c->n_notices++] = text;
}

static void set_string(char *base, size_t off, const char *s)
{
	char **dst;

	if (off == NOSTORE)
		return;
	dst = (char **)(void *)(base + off);
	free(*dst);
	*dst = wh_strdup(s);
}

/* A whole number in [min, max]. */
static int get_int(struct parser *p, const cJSON *v, int min, int max, int *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return fail(p, "expected an integer");
	d = v->valuedouble;
	if (d < (double)INT_MIN || d > (double)INT_MAX || d != (double)(int)d)
		return fail(p, "expected an integer");
	if (d < min)
		return min > 0 ? fail(p, "must be greater than 0")
		               : fail(p, "must not be negative");
	if (d > max)
		return fail(p, "must be at most %d", max);
	*out = (int)d;
	return 0;
}

static int get_duration(struct parser *p, const cJSON *v, int64_t *ms)
{
	/* Zot's decoder takes a bare number as nanoseconds, as Go's time.Duration does. */
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d < 0 || d >= 9.2e18 || d != (double)(int64_t)d)
			return fail(p, "expected a duration such as \"30s\" or \"1h30m\"");
		*ms = (int64_t)d / 1000000;
		return 0;
	}
	if (!cJSON_IsString(v))
		return fail(p, "expected a duration such as \"30s\" or \"1h30m\"");
	if (wh_duration_parse(v->valuestring, ms) != 0)
		return fail(p, "invalid duration \"%s\" (examples: \"250ms\", \"30s\", \"1h30m\")",
		            v->valuestring);
	return 0;
}

static int get_port(struct parser *p, const cJSON *v, int *port)
{
	if (cJSON_IsString(v)) {
		const char *s = v->valuestring;
		char *end = NULL;
		long n;

		if (*s < '0' || *s > '9' || strlen(s) > 5)
			return fail(p, "invalid port \"%s\" (1-65535)", s);
		errno = 0;
		n = strtol(s, &end, 10);
		if (errno || *end || n < 1 || n > 65535)
			return fail(p, "invalid port \"%s\" (1-65535)", s);
		*port = (int)n;
		return 0;
	}
	if (cJSON_IsNumber(v)) {
		double d = v->valuedouble;
		if (d < 1 || d > 65535 || d != (double)(int)d)
			return fail(p, "invalid port %g (1-65535)", d);
		*port = (int)d;
		return 0;
	}
	return fail(p, "expected a port number (1-65535)");
}

/* What is wrong with a doublestar glob, or NULL. Like doublestar's
 * ValidatePattern: brackets and braces balance, a class is not empty, a
 * backslash escapes something. */
static const char *glob_problem(const char *g)
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

/* What is wrong with an upstream URL, or NULL: Wharf takes
 * http(s)://host[:port] with an optional trailing slash, nothing more. */
static const char *url_problem(const char *u)
{
	const char *h, *c;

	if (strncasecmp(u, "https://", 8) == 0)
		h = u + 8;
	else if (strncasecmp(u, "http://", 7) == 0)
		h = u + 7;
	else
		return "is not an http:// or https:// URL";
	c = h;
	if (h[strcspn(h, "@/")] == '@')
		return "must not hold credentials (put them in extensions.sync.credentialsFile)";
	if (*c == '[') { /* IPv6 literal */
		for (c++; *c && *c != ']'; c++)
			if (!strchr("0123456789abcdefABCDEF:.", *c))
				return "has a bad IPv6 address";
		if (*c != ']' || c == h + 1)
			return "has a bad IPv6 address";
		c++;
	} else {
		while ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		       (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_')
			c++;
		if (c == h)
			return "has no host";
	}
	if (*c == ':') {
		long port = 0;
		int digits = 0;
		for (c++; *c >= '0' && *c <= '9' && digits < 6; c++, digits++)
			port = port * 10 + (*c - '0');
		if (digits == 0 || port < 1 || port > 65535)
			return "has a bad port";
	}
	if (*c == '/')
		c++;
	if (*c)
		return "must be scheme://host[:port] (no path, query or credentials)";
	return NULL;
}

static int walk(struct parser *p, const cJSON *obj, const struct field *fields, char *base);

static int parse_field(struct parser *p, const struct field *f, const cJSON *v, char *base)
{
	bool set = true; /* for W_IF_SET */
	int rc = 0;

	switch (f->type) {
	case T_ANY:
		set = !cJSON_IsNull(v) && !cJSON_IsFalse(v) &&
		      !((cJSON_IsArray(v) || cJSON_IsObject(v)) && !v->child);
		break;
	case T_STRING:
	case T_REGEX:
	case T_GLOB: {
		const char *why;
		wh_regex *re;
		if (!cJSON_IsString(v))
			return fail(p, "expected a string");
		if ((f->flags & F_NONEMPTY) && !*v->valuestring)
			return fail(p, "must not be empty");
		if (f->type == T_GLOB && (why = glob_problem(v->valuestring)))
			return fail(p, "invalid glob \"%s\": %s", v->valuestring, why);
		if (f->type == T_REGEX) {
			char buf[192];
			if (wh_regex_compile(v->valuestring, &re, buf, sizeof(buf)) != 0)
				return fail(p, "invalid regular expression \"%s\": %s",
				            v->valuestring, buf);
			wh_regex_free(re);
		}
		set_string(base, f->off, v->valuestring);
		set = *v->valuestring != '\0';
		break;
	}
	case T_BOOL:
		if (!cJSON_IsBool(v))
			return fail(p, "expected a boolean");
		if (f->off != NOSTORE)
			*(bool *)(void *)(base + f->off) = cJSON_IsTrue(v);
		set = cJSON_IsTrue(v);
		break;
	case T_INT: {
		int n = 0;
		rc = get_int(p, v, (f->flags & F_POSITIVE) ? 1 : 0, INT_MAX, &n);
		if (rc)
			return rc;
		if (f->off != NOSTORE)
			*(int *)(void *)(base + f->off) = n;
		set = n != 0;
		break;
	}
	case T_DURATION: {
		int64_t ms = 0;
		rc = get_duration(p, v, &ms);
		if (rc)
			return rc;
		if ((f->flags & F_POSITIVE) && ms <= 0)
			return fail(p, "must be greater than 0");
		if (f->off != NOSTORE)
			*(int64_t *)(void *)(base + f->off) = ms;
		set = ms != 0;
		break;
	}
	case T_PORT:
		rc = get_port(p, v, (int *)(void *)(base + f->off));
		break;
	case T_LEVEL: {
		int level;
		if (!cJSON_IsString(v))
			return fail(p, "expected a string");
		level = wh_log_level_parse(v->valuestring);
		if (level < 0)
			return fail(p, "unknown level \"%s\" (debug, info, warn or error)",
			            v->valuestring);
		*(int *)(void *)(base + f->off) = level;
		break;
	}
	case T_OBJECT:
		if ((f->flags & F_PRESENCE) && cJSON_IsObject(v))
			*(bool *)(void *)(base + f->off) = true;
		rc = walk(p, v, f->sub, base);
		break;
	case T_CUSTOM:
		rc = f->fn(p, v, base);
		break;
	}
	if (rc == 0 && ((f->flags & R_ALWAYS) || ((f->flags & R_IF_SET) && set)))
		return fail(p, "not implemented by wharf: refusing to run without the protection "
		               "it asks for (remove the key, or serve this config with Zot)");
	if (rc == 0 && ((f->flags & W_ALWAYS) || ((f->flags & W_IF_SET) && set)))
		add_warning(p);
	return rc;
}

static const struct field *find_field(const struct field *fields, const char *key)
{
	for (; fields->name; fields++)
		if (strcasecmp(fields->name, key) == 0)
			return fields;
	return NULL;
}

static int walk(struct parser *p, const cJSON *obj, const struct field *fields, char *base)
{
	const cJSON *item;
	int rc = 0;

	if (!cJSON_IsObject(obj))
		return fail(p, "expected an object");
	cJSON_ArrayForEach(item, obj)
	{
		const struct field *f = find_field(fields, item->string);
		size_t old = push_key(p, item->string);

		for (const cJSON *prev = obj->child; !rc && prev != item; prev = prev->next)
			if (strcasecmp(prev->string, item->string) == 0)
				rc = fail(p, "duplicate key");
		if (!rc && !f)
			rc = fail(p, "unknown key");
		if (!rc && !cJSON_IsNull(item))
			rc = parse_field(p, f, item, base);
		pop(p, old);
		if (rc)
			break;
	}
	return rc;
}

/* ---- extensions.sync ------------------------------------------------------ */

#define CFG(m) offsetof(wh_config, m)
#define REG(m) offsetof(wh_sync_registry, m)
#define CON(m) offsetof(wh_sync_content, m)

static const struct field tags_fields[] = {
    {"regex", T_REGEX, 0, CON(tags.regex), NULL, NULL},
    {"excludeRegex", T_REGEX, 0, CON(tags.exclude_regex), NULL, NULL},
    {"semver", T_BOOL, 0, CON(tags.semver), NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field content_fields[] = {
    {"prefix", T_GLOB, 0, CON(prefix), NULL, NULL},
    {"destination", T_STRING, 0, CON(destination), NULL, NULL},
    {"stripPrefix", T_BOOL, 0, CON(strip_prefix), NULL, NULL},
    {"tags", T_OBJECT, 0, NOSTORE, tags_fields, NULL},
    /* Every platform of an index is synced. */
    {"platforms", T_ANY, 0, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static int check_content(struct parser *p, const wh_sync_content *c)
{
	size_t old;
	int rc = 0;

	if (!c->prefix) {
		old = push_key(p, "prefix");
		rc = fail(p, "required");
		pop(p, old);
	} else if (c->strip_prefix && c->destination && strcmp(c->destination, "/") == 0 &&
	           !strstr(c->prefix, "/*")) {
		/* Zot's rule: stripping the whole name would leave nothing to store. */
		old = push_key(p, "stripPrefix");
		rc = fail(p, "with destination \"/\" the prefix must contain a glob (\"/*\")");
		pop(p, old);
	}
	return rc;
}

static int parse_contents(struct parser *p, const cJSON *v, char *base)
{
	wh_sync_registry *r = (wh_sync_registry *)(void *)base;
	const cJSON *item;
	int n, rc = 0;

	if (!cJSON_IsArray(v))
		return fail(p, "expected an array");
	n = cJSON_GetArraySize(v);
	r->content = wh_calloc((size_t)n, sizeof(*r->content));
	r->n_content = n;
	n = 0;
	cJSON_ArrayForEach(item, v)
	{
		wh_sync_content *c = &r->content[n];
		size_t old = push_index(p, n);

		rc = walk(p, item, content_fields, (char *)c);
		if (!rc)
			rc = check_content(p, c);
		pop(p, old);
		if (rc)
			break;
		n++;
	}
	return rc;
}

static int parse_urls(struct parser *p, const cJSON *v, char *base)
{
	wh_sync_registry *r = (wh_sync_registry *)(void *)base;
	const cJSON *item;
	int rc = 0;

	if (!cJSON_IsArray(v))
		return fail(p, "expected an array of URLs");
	r->urls = wh_calloc((size_t)cJSON_GetArraySize(v), sizeof(*r->urls));
	cJSON_ArrayForEach(item, v)
	{
		size_t old = push_index(p, r->n_urls);
		const char *why = NULL;

		if (!cJSON_IsString(item))
			rc = fail(p, "expected a string");
		else if ((why = url_problem(item->valuestring)))
			rc = fail(p, "\"%s\" %s", item->valuestring, why);
		pop(p, old);
		if (rc)
			break;
		r->urls[r->n_urls++] = wh_strdup(item->valuestring);
	}
	return rc;
}

static const struct field registry_fields[] = {
    {"urls", T_CUSTOM, 0, NOSTORE, NULL, parse_urls},
    {"onDemand", T_BOOL, 0, REG(on_demand), NULL, NULL},
    {"tlsVerify", T_BOOL, 0, REG(tls_verify), NULL, NULL},
    {"certDir", T_STRING, 0, REG(cert_dir), NULL, NULL},
    {"maxRetries", T_INT, 0, REG(max_retries), NULL, NULL},
    {"retryDelay", T_DURATION, 0, REG(retry_delay_ms), NULL, NULL},
    {"pollInterval", T_DURATION, 0, REG(poll_interval_ms), NULL, NULL},
    /* true is refused by check_registry: not silently ignored. */
    {"onlySigned", T_BOOL, 0, REG(only_signed), NULL, NULL},
    {"content", T_CUSTOM, 0, NOSTORE, NULL, parse_contents},
    {"manifestCheckInterval", T_DURATION, 0, REG(manifest_check_interval_ms), NULL, NULL},
    /* Wharf stores what upstream sends, byte for byte: always "preserved". */
    {"preserveDigest", T_BOOL, 0, NOSTORE, NULL, NULL},
    {"maxRetryDelay", T_DURATION, 0, REG(max_retry_delay_ms), NULL, NULL},
    {"syncLegacyCosignTags", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"credentialHelper", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"oauth2CredentialHelper", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"syncTimeout", T_DURATION, F_POSITIVE, REG(sync_timeout_ms), NULL, NULL},
    {"responseHeaderTimeout", T_DURATION, F_POSITIVE, REG(response_header_timeout_ms), NULL, NULL},
    {"reqConcurrent", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"reqPerSec", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"disableHTTP2", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"maxIdleConnsPerHost", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    /* Every platform of an index is synced. */
    {"platforms", T_ANY, 0, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

/* Checks across the keys of one registry, and its defaults. */
static int check_registry(struct parser *p, wh_sync_registry *r)
{
	size_t old;
	int rc = 0;

	if (r->n_urls == 0) {
		old = push_key(p, "urls");
		rc = fail(p, "at least one URL is required");
		pop(p, old);
	} else if (r->max_retries >= 0 && r->retry_delay_ms < 0) {
		old = push_key(p, "maxRetries");
		rc = fail(p, "retryDelay is required with maxRetries (as in Zot)");
		pop(p, old);
	} else if (r->max_retry_delay_ms >= 0 && r->retry_delay_ms < 0) {
		old = push_key(p, "maxRetryDelay");
		rc = fail(p, "retryDelay is required with maxRetryDelay (as in Zot)");
		pop(p, old);
	} else if (r->max_retry_delay_ms >= 0 && r->max_retry_delay_ms < r->retry_delay_ms) {
		old = push_key(p, "maxRetryDelay");
		rc = fail(p, "must not be less than retryDelay (as in Zot)");
		pop(p, old);
	} else if (r->manifest_check_interval_ms > 0 && !r->on_demand) {
		old = push_key(p, "manifestCheckInterval");
		rc = fail(p, "requires onDemand to be true");
		pop(p, old);
	} else if (r->only_signed) {
		old = push_key(p, "onlySigned");
		rc = fail(p, "not supported by Wharf: images would be synced without checking "
		             "their signatures; remove the key or set it to false");
		pop(p, old);
	}
	r->content_given = r->n_content > 0;
	if (r->n_content == 0) {
		/* As Zot: no content rules mirror every name, at the root. */
		free(r->content);
		r->content = wh_calloc(1, sizeof(*r->content));
		r->content[0].prefix = wh_strdup("**");
		r->n_content = 1;
	}
	bool periodic = r->poll_interval_ms > 0 && r->content_given;
	if (!rc && r->poll_interval_ms > 0 && !r->content_given)
		add_notice(p, "pollInterval without content rules: periodic sync needs them (as "
		              "in Zot), so none runs");
	if (!rc && !r->on_demand && !periodic)
		add_notice(p, "onDemand is false and there is no periodic sync (pollInterval with "
		              "content rules): this registry is never fetched");
	/* As in Zot: no retries unless asked; maxRetryDelay is retryDelay unless
	 * set (a larger one makes the back-off exponential). */
	if (r->max_retries < 0)
		r->max_retries = 0;
	if (r->retry_delay_ms < 0)
		r->retry_delay_ms = 5 * MINUTE_MS;
	if (r->max_retry_delay_ms < 0)
		r->max_retry_delay_ms = r->retry_delay_ms;
	return rc;
}

static int parse_registries(struct parser *p, const cJSON *v, char *base)
{
	wh_config *cfg = (wh_config *)(void *)base;
	const cJSON *item;
	int n, rc = 0;

	if (!cJSON_IsArray(v))
		return fail(p, "expected an array");
	n = cJSON_GetArraySize(v);
	cfg->registries = wh_calloc((size_t)n, sizeof(*cfg->registries));
	cfg->n_registries = n;
	n = 0;
	cJSON_ArrayForEach(item, v)
	{
		wh_sync_registry *r = &cfg->registries[n];
		size_t old = push_index(p, n);

		r->tls_verify = true;
		r->max_retries = -1; /* -1: absent, resolved by check_registry */
		r->retry_delay_ms = -1;
		r->max_retry_delay_ms = -1;
		r->manifest_check_interval_ms = -1; /* resolved by finish */
		r->sync_timeout_ms = 3 * HOUR_MS;   /* Zot's default */
		/* Zot's is 30 s; a cache must not make a pull wait that long on an
		 * upstream that accepts and never answers. */
		r->response_header_timeout_ms = 4000;
		rc = walk(p, item, registry_fields, (char *)r);
		if (!rc)
			rc = check_registry(p, r);
		pop(p, old);
		if (rc)
			break;
		n++;
	}
	return rc;
}

static const struct field sync_wharf_fields[] = {
    {"manifestCheckInterval", T_DURATION, 0, CFG(manifest_check_interval_ms), NULL, NULL},
    {"allowPrivateRedirects", T_BOOL, 0, CFG(allow_private_redirects), NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field sync_fields[] = {
    {"enable", T_BOOL, 0, CFG(sync_enable), NULL, NULL},
    {"credentialsFile", T_STRING, 0, CFG(sync_credentials_file), NULL, NULL},
    {"registries", T_CUSTOM, 0, NOSTORE, NULL, parse_registries},
    {"downloadDir", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"wharf", T_OBJECT, 0, NOSTORE, sync_wharf_fields, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

/* ---- the other sections --------------------------------------------------- */

static const struct field search_fields[] = {
    {"enable", T_BOOL, 0, CFG(search_enable), NULL, NULL},
    {"cve", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field ui_fields[] = {
    {"enable", T_BOOL, 0, CFG(ui_enable), NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field metrics_fields[] = {
    {"enable", T_BOOL, 0, CFG(metrics_enable), NULL, NULL},
    {"prometheus", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field extensions_fields[] = {
    {"search", T_OBJECT, F_PRESENCE, CFG(search_enable), search_fields, NULL},
    {"ui", T_OBJECT, F_PRESENCE, CFG(ui_enable), ui_fields, NULL},
    {"metrics", T_OBJECT, F_PRESENCE, CFG(metrics_enable), metrics_fields, NULL},
    {"sync", T_OBJECT, F_PRESENCE, CFG(sync_enable), sync_fields, NULL},
    {"scrub", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"lint", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"mgmt", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"apikey", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"trust", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"events", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field storage_fields[] = {
    {"rootDirectory", T_STRING, F_NONEMPTY, CFG(root_dir), NULL, NULL},
    {"dedupe", T_BOOL, 0, CFG(dedupe), NULL, NULL},
    {"gc", T_BOOL, 0, CFG(gc), NULL, NULL},
    {"gcDelay", T_DURATION, 0, CFG(gc_delay_ms), NULL, NULL},
    {"gcInterval", T_DURATION, 0, CFG(gc_interval_ms), NULL, NULL},
    {"commit", T_BOOL, 0, CFG(commit), NULL, NULL},
    {"remoteCache", T_BOOL, W_IF_SET, NOSTORE, NULL, NULL},
    {"redirectBlobURL", T_BOOL, W_IF_SET, NOSTORE, NULL, NULL},
    {"hydrateBlobOnRead", T_BOOL, W_IF_SET, NOSTORE, NULL, NULL},
    {"fastRestart", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"maxRepos", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"gcTimeWindow", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"retention", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"storageDriver", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"cacheDriver", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"subPaths", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

/* ---- http.auth, http.accessControl, http.ratelimit ------------------------- */

#define ACC(m) offsetof(wh_access_config, m)
#define POL(m) offsetof(wh_policy, m)

static void lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* An array of strings into *out / *n (appended to what is there). */
static int get_strv(struct parser *p, const cJSON *v, char ***out, int *n)
{
	const cJSON *item;
	int rc = 0;

	if (!cJSON_IsArray(v))
		return fail(p, "expected an array of strings");
	*out = wh_realloc(*out, (size_t)(*n + cJSON_GetArraySize(v) + 1) * sizeof(**out));
	cJSON_ArrayForEach(item, v)
	{
		size_t old = push_index(p, *n);
		if (!cJSON_IsString(item))
			rc = fail(p, "expected a string");
		pop(p, old);
		if (rc)
			break;
		(*out)[(*n)++] = wh_strdup(item->valuestring);
	}
	return rc;
}

static int parse_users(struct parser *p, const cJSON *v, char *base)
{
	wh_policy *pol = (wh_policy *)(void *)base;
	return get_strv(p, v, &pol->users, &pol->n_users);
}

static int parse_groups_ref(struct parser *p, const cJSON *v, char *base)
{
	wh_policy *pol = (wh_policy *)(void *)base;
	int from = pol->n_groups;
	int rc = get_strv(p, v, &pol->groups, &pol->n_groups);
	for (int i = from; i < pol->n_groups; i++)
		lower(pol->groups[i]); /* as the keys of accessControl.groups */
	return rc;
}

/* ["read","create",...] into WH_ACTION_* bits. Zot ignores an action it does
 * not know, which silently grants nothing; a typo is an error here. */
static int get_actions(struct parser *p, const cJSON *v, unsigned *out)
{
	static const struct {
		const char *name;
		unsigned bit;
	} names[] = {{"read", WH_ACTION_READ},
	             {"create", WH_ACTION_CREATE},
	             {"update", WH_ACTION_UPDATE},
	             {"delete", WH_ACTION_DELETE},
	             /* a stricter DELETE, off by default: accepting it unimplemented
	              * only makes deletes easier, never reads or writes */
	             {"detectManifestCollision", 0}};
	const cJSON *item;
	int i = 0, rc = 0;

	if (!cJSON_IsArray(v))
		return fail(p, "expected an array of actions (read, create, update, delete)");
	cJSON_ArrayForEach(item, v)
	{
		size_t old = push_index(p, i++);
		size_t k;
		if (!cJSON_IsString(item))
			rc = fail(p, "expected a string");
		for (k = 0; !rc && k < WH_ARRAY_SIZE(names); k++)
			if (strcasecmp(item->valuestring, names[k].name) == 0)
				break;
		if (!rc && k == WH_ARRAY_SIZE(names))
			rc = fail(p, "unknown action \"%s\" (read, create, update or delete)",
			          item->valuestring);
		if (!rc)
			*out |= names[k].bit;
		pop(p, old);
		if (rc)
			break;
	}
	return rc;
}

static int parse_actions(struct parser *p, const cJSON *v, char *base)
{
	return get_actions(p, v, &((wh_policy *)(void *)base)->actions);
}

/* Conditions are CEL expressions that narrow a grant: ignoring them would
 * grant more than asked, so a non-empty list is refused. */
static const struct field policy_fields[] = {
    {"users", T_CUSTOM, 0, NOSTORE, NULL, parse_users},
    {"groups", T_CUSTOM, 0, NOSTORE, NULL, parse_groups_ref},
    {"actions", T_CUSTOM, 0, NOSTORE, NULL, parse_actions},
    {"conditions", T_ANY, R_IF_SET, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static int parse_policies(struct parser *p, const cJSON *v, char *base)
{
	wh_repo_policy *r = (wh_repo_policy *)(void *)base;
	const cJSON *item;
	int rc = 0;

	if (!cJSON_IsArray(v))
		return fail(p, "expected an array");
	r->policies = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*r->policies));
	cJSON_ArrayForEach(item, v)
	{
		size_t old = push_index(p, r->n_policies);
		rc = walk(p, item, policy_fields, (char *)&r->policies[r->n_policies]);
		pop(p, old);
		r->n_policies++; /* freed whole, even half-parsed */
		if (rc)
			break;
	}
	return rc;
}

static int parse_default_policy(struct parser *p, const cJSON *v, char *base)
{
	return get_actions(p, v, &((wh_repo_policy *)(void *)base)->default_actions);
}

static int parse_anonymous_policy(struct parser *p, const cJSON *v, char *base)
{
	return get_actions(p, v, &((wh_repo_policy *)(void *)base)->anonymous_actions);
}

static const struct field repo_policy_fields[] = {
    {"policies", T_CUSTOM, 0, NOSTORE, NULL, parse_policies},
    {"defaultPolicy", T_CUSTOM, 0, NOSTORE, NULL, parse_default_policy},
    {"anonymousPolicy", T_CUSTOM, 0, NOSTORE, NULL, parse_anonymous_policy},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

/* True when a key of the map obj before item is item's key, case aside:
 * viper would have merged them. */
static bool dup_key(const cJSON *obj, const cJSON *item)
{
	for (const cJSON *prev = obj->child; prev != item; prev = prev->next)
		if (strcasecmp(prev->string, item->string) == 0)
			return true;
	return false;
}

static int parse_repositories(struct parser *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	const cJSON *item;
	int rc = 0;

	if (!cJSON_IsObject(v))
		return fail(p, "expected an object of repository globs");
	ac->repos = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*ac->repos));
	cJSON_ArrayForEach(item, v)
	{
		size_t old = push_key(p, item->string);
		wh_repo_policy *r = &ac->repos[ac->n_repos++];
		const char *why = glob_problem(item->string);

		r->pattern = wh_strdup(item->string);
		lower(r->pattern);
		if (dup_key(v, item))
			rc = fail(p, "duplicate key");
		else if (why)
			rc = fail(p, "invalid glob: %s", why);
		else if (!cJSON_IsNull(item))
			rc = walk(p, item, repo_policy_fields, (char *)r);
		pop(p, old);
		if (rc)
			break;
	}
	return rc;
}

static int parse_group_users(struct parser *p, const cJSON *v, char *base)
{
	wh_group *g = (wh_group *)(void *)base;
	return get_strv(p, v, &g->users, &g->n_users);
}

static const struct field group_fields[] = {
    {"users", T_CUSTOM, 0, NOSTORE, NULL, parse_group_users},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static int parse_groups(struct parser *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	const cJSON *item;
	int rc = 0;

	if (!cJSON_IsObject(v))
		return fail(p, "expected an object of groups");
	ac->groups = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*ac->groups));
	cJSON_ArrayForEach(item, v)
	{
		size_t old = push_key(p, item->string);
		wh_group *g = &ac->groups[ac->n_groups++];
		g->name = wh_strdup(item->string);
		lower(g->name);
		if (dup_key(v, item))
			rc = fail(p, "duplicate key");
		else if (!cJSON_IsNull(item))
			rc = walk(p, item, group_fields, (char *)g);
		pop(p, old);
		if (rc)
			break;
	}
	return rc;
}

static int parse_metrics_users(struct parser *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	return get_strv(p, v, &ac->metrics_users, &ac->n_metrics_users);
}

static int parse_metrics_anonymous(struct parser *p, const cJSON *v, char *base)
{
	return get_actions(p, v, &((wh_access_config *)(void *)base)->metrics_anonymous);
}

static const struct field metrics_access_fields[] = {
    {"users", T_CUSTOM, 0, NOSTORE, NULL, parse_metrics_users},
    {"anonymousPolicy", T_CUSTOM, 0, NOSTORE, NULL, parse_metrics_anonymous},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static int parse_admin_policy(struct parser *p, const cJSON *v, char *base)
{
	wh_access_config *ac = (wh_access_config *)(void *)base;
	return walk(p, v, policy_fields, (char *)&ac->admin);
}

static const struct field access_fields[] = {
    {"repositories", T_CUSTOM, 0, NOSTORE, NULL, parse_repositories},
    {"groups", T_CUSTOM, 0, NOSTORE, NULL, parse_groups},
    {"adminPolicy", T_CUSTOM, 0, NOSTORE, NULL, parse_admin_policy},
    {"metrics", T_OBJECT, 0, NOSTORE, metrics_access_fields, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static int parse_access(struct parser *p, const cJSON *v, char *base)
{
	wh_config *c = (wh_config *)(void *)base;
	c->access.enabled = true;
	return walk(p, v, access_fields, (char *)&c->access);
}

static const struct field htpasswd_fields[] = {
    {"path", T_STRING, 0, CFG(htpasswd_path), NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

/* What Wharf does not implement is refused (R_*): LDAP, OpenID, API keys,
 * bearer tokens and mTLS identities each make some requests authenticated,
 * and without them the server would be open (or differently shut) where the
 * operator expects it protected. Session settings only shape the UI login
 * that OpenID would provide: harmless when absent, so a warning. */
static const struct field auth_fields[] = {
    {"htpasswd", T_OBJECT, 0, NOSTORE, htpasswd_fields, NULL},
    {"failDelay", T_INT, 0, CFG(fail_delay_s), NULL, NULL},
    {"ldap", T_ANY, R_ALWAYS, NOSTORE, NULL, NULL},
    {"bearer", T_ANY, R_ALWAYS, NOSTORE, NULL, NULL},
    {"openid", T_ANY, R_ALWAYS, NOSTORE, NULL, NULL},
    {"apikey", T_BOOL, R_IF_SET, NOSTORE, NULL, NULL},
    {"mtls", T_ANY, R_ALWAYS, NOSTORE, NULL, NULL},
    {"sessionKeysFile", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"sessionDriver", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"secureSession", T_BOOL, W_IF_SET, NOSTORE, NULL, NULL},
    {"sessionHashKey", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"sessionEncryptKey", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

#define RMT(m) offsetof(wh_rate_method, m)

static const struct field rate_method_fields[] = {
    {"method", T_STRING, F_NONEMPTY, RMT(method), NULL, NULL},
    {"rate", T_INT, 0, RMT(rate), NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static int parse_rate_methods(struct parser *p, const cJSON *v, char *base)
{
	wh_config *c = (wh_config *)(void *)base;
	const cJSON *item;
	int rc = 0;

	if (!cJSON_IsArray(v))
		return fail(p, "expected an array");
	c->rate_methods = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(*c->rate_methods));
	cJSON_ArrayForEach(item, v)
	{
		size_t old = push_index(p, c->n_rate_methods);
		wh_rate_method *m = &c->rate_methods[c->n_rate_methods++];
		rc = walk(p, item, rate_method_fields, (char *)m);
		if (!rc && m->method) {
			for (char *ch = m->method; *ch; ch++)
				if (*ch >= 'a' && *ch <= 'z')
					*ch = (char)(*ch - 'a' + 'A');
		}
		pop(p, old);
		if (rc)
			break;
	}
	return rc;
}

static const struct field ratelimit_fields[] = {
    {"rate", T_INT, 0, CFG(rate), NULL, NULL},
    {"methods", T_CUSTOM, 0, NOSTORE, NULL, parse_rate_methods},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

/* "a.b.c.d", "a.b.c.d/n", "x::y", "x::y/n". */
static int parse_cidr(const char *s, wh_cidr *out)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	uint8_t a4[4];
	int max;

	if (n >= sizeof(buf))
		return WH_EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, buf, a4) == 1) {
		out->addr[10] = out->addr[11] = 0xff;
		memcpy(out->addr + 12, a4, 4);
		max = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		max = 128;
	} else {
		return WH_EINVAL;
	}
	out->bits = 128;
	if (slash) {
		char *end;
		long bits;
		errno = 0;
		bits = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || errno || bits < 0 || bits > max)
			return WH_EINVAL;
		out->bits = (int)bits + (128 - max);
	}
	return 0;
}

static int parse_trusted_proxies(struct parser *p, const cJSON *v, char *base)
{
	wh_config *c = (wh_config *)(void *)base;
	const cJSON *item;
	int rc = 0;

	if (!cJSON_IsArray(v))
		return fail(p, "expected an array of addresses or CIDR blocks");
	free(c->trusted_proxies);
	c->trusted_proxies = wh_calloc((size_t)cJSON_GetArraySize(v) + 1, sizeof(wh_cidr));
	c->n_trusted_proxies = 0;
	cJSON_ArrayForEach(item, v)
	{
		size_t old = push_index(p, c->n_trusted_proxies);
		if (!cJSON_IsString(item) ||
		    parse_cidr(item->valuestring, &c->trusted_proxies[c->n_trusted_proxies]) != 0)
			rc = fail(p,
			          "expected an IP address or CIDR block (\"10.0.0.0/8\", \"::1\")");
		pop(p, old);
		if (rc)
			break;
		c->n_trusted_proxies++;
	}
	return rc;
}

/* Zot's rule: without any authentication, access control may only say what
 * anonymous requests may do. */
static int check_access(struct parser *p)
{
	wh_config *c = p->cfg;
	const wh_access_config *ac = &c->access;
	/* mTLS counts: a verified client certificate's CN is a user. */
	bool authn = (c->htpasswd_path && *c->htpasswd_path) ||
	             (c->tls_cert && *c->tls_cert && c->tls_cacert && *c->tls_cacert);
	bool named =
	    ac->admin.n_users || ac->admin.n_groups || ac->admin.actions || ac->n_metrics_users;

	for (int i = 0; i < ac->n_repos; i++) {
		named |= ac->repos[i].n_policies > 0 || ac->repos[i].default_actions;
	}
	if (ac->enabled && !authn && named) {
		push_key(p, "http.accessControl");
		return fail(p, "access control config requires one of htpasswd, ldap, openid or "
		               "mTLS authentication or using only 'anonymousPolicy' policies");
	}
	return 0;
}

static const struct field http_wharf_fields[] = {
    {"trustedProxies", T_CUSTOM, 0, NOSTORE, NULL, parse_trusted_proxies},
    {"headerTimeout", T_DURATION, F_POSITIVE, CFG(header_timeout_ms), NULL, NULL},
    {"idleTimeout", T_DURATION, F_POSITIVE, CFG(idle_timeout_ms), NULL, NULL},
    {"bodyTimeout", T_DURATION, F_POSITIVE, CFG(body_timeout_ms), NULL, NULL},
    {"sendTimeout", T_DURATION, F_POSITIVE, CFG(send_timeout_ms), NULL, NULL},
    {"shutdownTimeout", T_DURATION, 0, CFG(shutdown_timeout_ms), NULL, NULL},
    {"maxConnections", T_INT, F_POSITIVE, CFG(max_connections), NULL, NULL},
    {"maxHeaderBytes", T_INT, F_POSITIVE, CFG(max_header_bytes), NULL, NULL},
    {"maxHeaders", T_INT, F_POSITIVE, CFG(max_headers), NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field http_tls_fields[] = {
    {"cert", T_STRING, 0, CFG(tls_cert), NULL, NULL},
    {"key", T_STRING, 0, CFG(tls_key), NULL, NULL},
    {"cacert", T_STRING, 0, CFG(tls_cacert), NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field http_fields[] = {
    {"address", T_STRING, 0, CFG(address), NULL, NULL},
    {"port", T_PORT, 0, CFG(port), NULL, NULL},
    {"realm", T_STRING, 0, CFG(realm), NULL, NULL},
    {"externalURL", T_STRING, 0, CFG(external_url), NULL, NULL},
    {"wharf", T_OBJECT, 0, NOSTORE, http_wharf_fields, NULL},
    {"tls", T_OBJECT, 0, NOSTORE, http_tls_fields, NULL},
    {"auth", T_OBJECT, 0, NOSTORE, auth_fields, NULL},
    {"accessControl", T_CUSTOM, 0, NOSTORE, NULL, parse_access},
    {"ratelimit", T_OBJECT, 0, NOSTORE, ratelimit_fields, NULL},
    {"allowOrigin", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"compat", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    /* Wharf's own timeouts are under http.wharf. */
    {"readTimeout", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"writeTimeout", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field log_fields[] = {
    {"level", T_LEVEL, 0, CFG(log_level), NULL, NULL},
    {"output", T_STRING, 0, CFG(log_output), NULL, NULL},
    {"audit", T_STRING, W_IF_SET, CFG(log_audit), NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

static const struct field top_fields[] = {
    {"distSpecVersion", T_STRING, 0, CFG(dist_spec_version), NULL, NULL},
    {"storage", T_OBJECT, 0, NOSTORE, storage_fields, NULL},
    {"http", T_OBJECT, 0, NOSTORE, http_fields, NULL},
    {"log", T_OBJECT, 0, NOSTORE, log_fields, NULL},
    {"extensions", T_OBJECT, 0, NOSTORE, extensions_fields, NULL},
    {"scheduler", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"cluster", T_ANY, W_ALWAYS, NOSTORE, NULL, NULL},
    {"landlock", T_BOOL, W_IF_SET, NOSTORE, NULL, NULL},
    /* Build information Zot writes when it dumps its config; nothing to do. */
    {"goVersion", T_ANY, 0, NOSTORE, NULL, NULL},
    {"commit", T_ANY, 0, NOSTORE, NULL, NULL},
    {"releaseTag", T_ANY, 0, NOSTORE, NULL, NULL},
    {"binaryType", T_ANY, 0, NOSTORE, NULL, NULL},
    {NULL, T_ANY, 0, 0, NULL, NULL},
};

/* ---- entry points --------------------------------------------------------- */

static void set_defaults(wh_config *c)
{
	c->dedupe = true;
	c->gc = true;
	c->gc_delay_ms = -1; /* -1: absent, resolved by finish() from gc */
	c->gc_interval_ms = -1;
	c->address = wh_strdup("127.0.0.1");
	c->port = 8080;
	c->header_timeout_ms = 20 * SECOND_MS;
	c->idle_timeout_ms = 60 * SECOND_MS;
	c->body_timeout_ms = 60 * SECOND_MS;
	c->send_timeout_ms = 60 * SECOND_MS;
	c->shutdown_timeout_ms = 10 * SECOND_MS;
	c->max_connections = 1024;
	c->max_header_bytes = 65536;
	c->max_headers = 100;
	c->log_level = WH_LOG_INFO;
	c->manifest_check_interval_ms = 5 * MINUTE_MS;
	/* Loopback: a proxy on the same host (nginx, Caddy) is the usual setup;
	 * anything further must be named, or any client could choose the
	 * address it is rate-limited as. */
	c->trusted_proxies = wh_calloc(2, sizeof(wh_cidr));
	parse_cidr("127.0.0.0/8", &c->trusted_proxies[0]);
	parse_cidr("::1", &c->trusted_proxies[1]);
	c->n_trusted_proxies = 2;
}

static int finish(struct parser *p)
{
	wh_config *c = p->cfg;

	if (!c->root_dir) {
		push_key(p, "storage.rootDirectory");
		return fail(p, "required");
	}
	/* Zot: without gc, an absent gcDelay/gcInterval is 0, not the default. */
	if (c->gc_delay_ms < 0)
		c->gc_delay_ms = c->gc ? HOUR_MS : 0;
	if (c->gc_interval_ms < 0)
		c->gc_interval_ms = c->gc ? HOUR_MS : 0;
	/* Zot serves plain HTTP when only one of cert and key is set; a config
	 * that asks for TLS and would silently not get it is an error here. */
	char **tls_paths[] = {&c->tls_cert, &c->tls_key, &c->tls_cacert};
	for (size_t i = 0; i < WH_ARRAY_SIZE(tls_paths); i++)
		if (*tls_paths[i] && !**tls_paths[i]) {
			free(*tls_paths[i]); /* "" is unset, as in Zot */
			*tls_paths[i] = NULL;
		}
	if (!c->tls_cert != !c->tls_key) {
		push_key(p, c->tls_cert ? "http.tls.key" : "http.tls.cert");
		return fail(p, "required with http.tls.%s", c->tls_cert ? "cert" : "key");
	}
	if (c->tls_cacert && !c->tls_cert) {
		push_key(p, "http.tls.cacert");
		return fail(p, "needs http.tls.cert and http.tls.key");
	}
	for (int i = 0; i < c->n_registries; i++)
		if (c->registries[i].manifest_check_interval_ms < 0)
			c->registries[i].manifest_check_interval_ms = c->manifest_check_interval_ms;
	return check_access(p);
}

static int syntax_error(struct parser *p, const char *json, size_t len, const char *at,
                        const char *what)
{
	int line = 1, col = 1;

	if (!at || at < json || at > json + len)
		at = json + len;
	for (const char *c = json; c < at; c++) {
		if (*c == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	return fail(p, "%s at line %d, column %d", what, line, col);
}

int wh_config_parse(const char *json, size_t len, wh_config *out, char *err, size_t errlen)
{
	struct parser p;
	wh_config cfg;
	cJSON *root = NULL;
	const char *end = NULL;
	int rc;

	memset(&p, 0, sizeof(p));
	memset(&cfg, 0, sizeof(cfg));
	p.cfg = &cfg;
	p.err = err;
	p.errlen = errlen;
	if (err && errlen)
		err[0] = '\0';
	set_defaults(&cfg);
	if (!json) {
		rc = fail(&p, "no configuration text");
		goto out;
	}
	root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	if (!root) {
		rc = syntax_error(&p, json, len, end, "invalid JSON");
		goto out;
	}
	while (end < json + len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
		end++;
	if (end < json + len) {
		/* A NUL too: the file is the JSON text and nothing after it. */
		rc = syntax_error(&p, json, len, end,
		                  *end ? "unexpected text after the JSON value"
		                       : "a NUL byte after the JSON value");
		goto out;
	}
	if (!cJSON_IsObject(root)) {
		rc = fail(&p, "the configuration must be a JSON object");
		goto out;
	}
	rc = walk(&p, root, top_fields, (char *)&cfg);
	if (rc == 0) {
		/* Only its presence matters here (the start-up warning about an
		 * exposed address without authentication). */
		cfg.http_auth = cfg.htpasswd_path && *cfg.htpasswd_path;
	}
	if (rc == 0)
		rc = finish(&p);
out:
	cJSON_Delete(root);
	if (rc) {
		wh_config_free(&cfg);
		memset(out, 0, sizeof(*out));
	} else {
		*out = cfg;
	}
	return rc;
}

/* The whole file in a NUL-terminated buffer. Returns 0, -errno or WH_ETOOBIG. */
static int read_file(const char *path, char **buf, size_t *len)
{
	FILE *f = fopen(path, "rbe");
	size_t cap = 4096, n = 0;
	char *b = NULL;
	int rc = 0;

	if (!f)
		return -errno;
	b = wh_malloc(cap);
	for (;;) {
		size_t got;
		if (n + 1 >= cap) {
			if (cap > MAX_FILE_BYTES) {
				rc = WH_ETOOBIG;
				goto out;
			}
			cap *= 2;
			b = wh_realloc(b, cap);
		}
		got = fread(b + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0) {
			if (ferror(f))
				rc = errno ? -errno : WH_EIO;
			break;
		}
	}
out:
	fclose(f);
	if (rc) {
		free(b);
		return rc;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

int wh_config_load(const char *path, wh_config *out, char *err, size_t errlen)
{
	char msg[512];
	char *buf = NULL;
	size_t len = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = read_file(path, &buf, &len);
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot read: %s", path,
			         rc == WH_ETOOBIG ? "larger than 16 MiB" : wh_strerror(rc));
		goto out;
	}
	rc = wh_config_parse(buf, len, out, msg, sizeof(msg));
	if (rc) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", path, msg);
		goto out;
	}
	out->path = wh_strdup(path);
out:
	free(buf);
	return rc;
}

int wh_config_default(wh_config *out)
{
	return wh_config_parse(wh_config_default_json, sizeof(wh_config_default_json) - 1, out,
	                       NULL, 0);
}

static void strv_free(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void policy_free(wh_policy *pol)
{
	strv_free(pol->users, pol->n_users);
	strv_free(pol->groups, pol->n_groups);
}

void wh_config_free(wh_config *cfg)
{
	if (!cfg)
		return;
	for (int i = 0; i < cfg->n_registries; i++) {
		wh_sync_registry *r = &cfg->registries[i];
		for (int j = 0; j < r->n_urls; j++)
			free(r->urls[j]);
		free(r->urls);
		free(r->cert_dir);
		for (int j = 0; j < r->n_content; j++) {
			wh_sync_content *c = &r->content[j];
			free(c->prefix);
			free(c->destination);
			free(c->tags.regex);
			free(c->tags.exclude_regex);
		}
		free(r->content);
	}
	free(cfg->registries);
	for (int i = 0; i < cfg->n_warnings; i++)
		free(cfg->warnings[i]);
	free(cfg->warnings);
	for (int i = 0; i < cfg->n_notices; i++)
		free(cfg->notices[i]);
	free(cfg->notices);
	free(cfg->path);
	free(cfg->dist_spec_version);
	free(cfg->root_dir);
	free(cfg->address);
	free(cfg->realm);
	free(cfg->external_url);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->tls_cacert);
	free(cfg->log_output);
	free(cfg->log_audit);
	free(cfg->sync_credentials_file);
	free(cfg->trusted_proxies);
	free(cfg->htpasswd_path);
	wh_access_config *ac = &cfg->access;
	for (int i = 0; i < ac->n_repos; i++) {
		wh_repo_policy *r = &ac->repos[i];
		free(r->pattern);
		for (int j = 0; j < r->n_policies; j++)
			policy_free(&r->policies[j]);
		free(r->policies);
	}
	free(ac->repos);
	for (int i = 0; i < ac->n_groups; i++) {
		free(ac->groups[i].name);
		strv_free(ac->groups[i].users, ac->groups[i].n_users);
	}
	free(ac->groups);
	policy_free(&ac->admin);
	strv_free(ac->metrics_users, ac->n_metrics_users);
	for (int i = 0; i < cfg->n_rate_methods; i++)
		free(cfg->rate_methods[i].method);
	free(cfg->rate_methods);
	memset(cfg, 0, sizeof(*cfg));
}
