/* The configuration engine: each module declares the keys it owns as a table
 * (wh_conf_key[]) over its own settings struct, and one walker applies the
 * tables to the parsed JSON, so an unknown key, a wrong type or a bad value
 * is reported the same way everywhere, with the key's path
 * ("extensions.sync.registries[0].urls[1]: ..."). As nginx's command tables
 * or h2o's configurators: the module that reads a setting says what it is
 * called, its type and its default; app/config.c only puts the sections
 * together into Zot's file layout.
 *
 * Keys match case-insensitively, as in Zot (viper), and a null value is an
 * absent key. A key Zot accepts that Wharf does not implement is never an
 * error unless it asks for protection Wharf cannot give (WH_CONF_REFUSE*):
 * its path is collected as a warning. */
#ifndef WHARF_CONF_H
#define WHARF_CONF_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WH_SECOND_MS 1000LL
#define WH_MINUTE_MS (60 * WH_SECOND_MS)
#define WH_HOUR_MS   (60 * WH_MINUTE_MS)

/* One walk over a document: where it is (the key path) and what it found. */
typedef struct wh_conf {
	char *err; /* the first error, "path: message" (may be NULL) */
	size_t errlen;
	char path[512]; /* the key being parsed, "http.wharf.maxHeaders" */
	size_t len;
	/* Keys Zot accepts that Wharf ignores, as paths; settings that are valid
	 * but probably not what was meant, as "path: what". */
	char **warnings;
	int n_warnings;
	char **notices;
	int n_notices;
	/* Every error, "path: message", in the order found (at most
	 * WH_CONF_ERRORS_MAX): the walk goes on past a bad key, so one run
	 * names every problem. err holds the first. */
	char **errors;
	int n_errors;
} wh_conf;

#define WH_CONF_ERRORS_MAX 64

typedef enum wh_conf_type {
	WH_CONF_ANY,      /* accepted whatever it holds, not inspected */
	WH_CONF_STRING,   /* char * */
	WH_CONF_REGEX,    /* char *, a POSIX extended regular expression */
	WH_CONF_GLOB,     /* char *, a doublestar glob */
	WH_CONF_BOOL,     /* bool */
	WH_CONF_INT,      /* int, >= 0 (> 0 with WH_CONF_POSITIVE) */
	WH_CONF_DURATION, /* int64_t milliseconds */
	WH_CONF_PORT,     /* int 1..65535, from a string or a number */
	WH_CONF_SIZE,     /* int64_t bytes: "512MiB", "20GB", "1048576" or a number */
	WH_CONF_OBJECT,   /* nested keys (sub), same base */
	WH_CONF_SECTION,  /* nested keys (sub) of the struct at base + off */
	/* No key of its own: sub's keys are looked up as if they were in this
	 * table, over the struct at base + off. How two modules share one JSON
	 * object (http.wharf holds the server's limits and the rate limiter's
	 * trusted proxies). Its name is "". */
	WH_CONF_INLINE,
	WH_CONF_CUSTOM, /* parsed by fn, given base + off (base when WH_CONF_NOSTORE) */
} wh_conf_type;

enum {
	WH_CONF_WARN = 1 << 0,        /* not implemented: warn when present */
	WH_CONF_WARN_IF_SET = 1 << 1, /* not implemented: warn when true, non-zero or non-empty */
	WH_CONF_POSITIVE = 1 << 2,    /* INT, DURATION, SIZE: must be > 0 */
	WH_CONF_NONEMPTY = 1 << 3,    /* STRING: must not be "" */
	/* OBJECT: the bool at off is set true when present; SECTION: the bool
	 * its struct begins with (an extension's `enable`, true when present) */
	WH_CONF_PRESENCE = 1 << 4,
	/* A security key Wharf does not implement: an error, never a warning. A
	 * config that asks for protection is not served without it (fail
	 * closed). REFUSE whenever present, REFUSE_IF_SET when true, non-zero or
	 * non-empty. */
	WH_CONF_REFUSE = 1 << 5,
	WH_CONF_REFUSE_IF_SET = 1 << 6,
	/* The value is a list: a single value stands for a list of one, as
	 * Zot's weakly typed decoding takes it ("users": "alice"). */
	WH_CONF_LIST = 1 << 7,
};

/* Where a key stores nothing. */
#define WH_CONF_NOSTORE SIZE_MAX

typedef struct wh_conf_key wh_conf_key;
typedef int (*wh_conf_fn)(wh_conf *c, const cJSON *v, char *base);

struct wh_conf_key {
	const char *name; /* NULL ends a table */
	wh_conf_type type;
	unsigned flags;
	size_t off; /* into the base, or WH_CONF_NOSTORE */
	const wh_conf_key *sub;
	wh_conf_fn fn;
};

/* Table rows, so that tables read as lists of keys. */
#define WH_CONF_KEY(name, type, flags, off)                                                        \
	{                                                                                          \
		name, type, flags, off, NULL, NULL                                                 \
	}
#define WH_CONF_SUB(name, type, flags, off, sub)                                                   \
	{                                                                                          \
		name, type, flags, off, sub, NULL                                                  \
	}
#define WH_CONF_FN(name, off, fn)                                                                  \
	{                                                                                          \
		name, WH_CONF_CUSTOM, 0, off, NULL, fn                                             \
	}
#define WH_CONF_FN_LIST(name, off, fn)                                                             \
	{                                                                                          \
		name, WH_CONF_CUSTOM, WH_CONF_LIST, off, NULL, fn                                  \
	}
#define WH_CONF_IGNORED(name, flags)                                                               \
	{                                                                                          \
		name, WH_CONF_ANY, flags, WH_CONF_NOSTORE, NULL, NULL                              \
	}
#define WH_CONF_INLINED(sub, off)                                                                  \
	{                                                                                          \
		"", WH_CONF_INLINE, 0, off, sub, NULL                                              \
	}
#define WH_CONF_END                                                                                \
	{                                                                                          \
		NULL, WH_CONF_ANY, 0, 0, NULL, NULL                                                \
	}

/* Walk obj (must be an object) with keys over base. Returns 0 or WH_EINVAL
 * with c->err set. Values are taken as Zot takes them (viper, mapstructure
 * with WeaklyTypedInput): a boolean from "true"/"false"/"1"/"0"/"t"/"f" or a
 * number (non-zero is true), an integer from a numeric string or a boolean,
 * a string from a number or a boolean, a list from a single value
 * (WH_CONF_LIST). An unknown key names the closest known one ("did you
 * mean"). The walk goes on past a bad key: c->errors lists them all. */
int wh_conf_walk(wh_conf *c, const cJSON *obj, const wh_conf_key *keys, char *base);

/* Fail at the current path: writes "path: message" into c->err; returns
 * WH_EINVAL. */
int wh_conf_fail(wh_conf *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Descend into a key or an array index; pop returns to the mark. */
size_t wh_conf_push_key(wh_conf *c, const char *key);
size_t wh_conf_push_index(wh_conf *c, int index);
void wh_conf_pop(wh_conf *c, size_t mark);

/* Record a notice "path: what" at the current path. */
void wh_conf_notice(wh_conf *c, const char *what);

/* Typed values for custom parsers. */
int wh_conf_int(wh_conf *c, const cJSON *v, int min, int max, int *out);
int wh_conf_duration(wh_conf *c, const cJSON *v, int64_t *ms);
int wh_conf_size(wh_conf *c, const cJSON *v, int64_t *bytes);
/* An array of strings, appended to *out / *n (kept NULL-terminated). */
int wh_conf_strv(wh_conf *c, const cJSON *v, char ***out, int *n);
void wh_conf_strv_free(char **v, int n);

/* Each element of the array v (each member of the object v with map) in
 * turn, at its path ("[2]", or ".key"): fn(c, item, i, arg) parses it. A key
 * repeated in a map is an error before fn sees it. expected is the message
 * when v is not an array (an object). Stops at the first error. */
int wh_conf_each(wh_conf *c, const cJSON *v, bool map, const char *expected,
                 int (*fn)(wh_conf *c, const cJSON *item, int i, void *arg), void *arg);

/* True when a key of obj before item is item's key, case aside: viper would
 * have merged them. */
bool wh_conf_dup_key(const cJSON *obj, const cJSON *item);

/* What is wrong with a doublestar glob, or NULL. */
const char *wh_conf_glob_problem(const char *g);

/* ASCII lower case, in place. */
void wh_conf_lower(char *s);

/* Go-style duration ("1h30m", "250ms", "0"). Returns 0 and sets *ms, or
 * WH_EINVAL. Fractions are accepted ("1.5h"); negative values are not. */
int wh_duration_parse(const char *s, int64_t *ms);

/* A size in bytes: a whole number, then optional spaces and a unit: none or
 * "B" (bytes), "KiB", "MiB", "GiB", "TiB" (powers of 1024) or "KB", "MB",
 * "GB", "TB" (powers of 1000), as written (case matters: "mb" is refused,
 * it could mean bits). A fraction is accepted with a unit other than bytes
 * ("1.5GiB"; the result is rounded down). Returns 0 and sets *bytes, or
 * WH_EINVAL (nothing, a negative number, an unknown unit, more than
 * INT64_MAX bytes). */
int wh_size_parse(const char *s, int64_t *bytes);

/* A value as a boolean, weakly (see wh_conf_walk); false when it is none. */
bool wh_conf_weak_bool(const cJSON *v, bool *out);

/* A value as a string, weakly: a string itself, a number as Go formats it
 * (written into buf), a boolean as "1" or "0"; NULL for anything else. */
const char *wh_conf_weak_string(const cJSON *v, char *buf, size_t len);

/* Free what wh_conf collected. */
void wh_conf_release(wh_conf *c);

#endif
