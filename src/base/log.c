#include "wharf/base/log.h"

#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static int log_level = WH_LOG_INFO;
static FILE *log_file; /* NULL: stderr */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int wh_log_level_parse(const char *s)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {
	    {"debug", WH_LOG_DEBUG}, {"trace", WH_LOG_DEBUG},  {"info", WH_LOG_INFO},
	    {"warn", WH_LOG_WARN},   {"warning", WH_LOG_WARN}, {"error", WH_LOG_ERROR},
	    {"fatal", WH_LOG_ERROR}, {"panic", WH_LOG_ERROR},
	};
	for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
		if (strcasecmp(s, names[i].name) == 0)
			return names[i].level;
	return -1;
}

int wh_log_setup(int level, const char *path)
{
	FILE *f = NULL;
	if (path && *path) {
		f = fopen(path, "ae");
		if (!f)
			return -errno;
	}
	if (log_file)
		fclose(log_file);
	log_file = f;
	log_level = level;
	return 0;
}

int wh_log_reopen(const char *path)
{
	if (!log_file || !path || !*path)
		return 0;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	/* The new file takes the old one's descriptor number at once: a thread
	 * writing a line meanwhile writes it whole to one file or the other,
	 * never to a closed or reused descriptor. */
	int rc = dup3(fd, fileno(log_file), O_CLOEXEC) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

void wh_log_set_level(int level)
{
	log_level = level;
}

int wh_log_enabled(int level)
{
	return level >= log_level && level < WH_LOG_OFF;
}

/* A line is built in a fixed buffer and written with one write(2), so lines
 * from the server never interleave and logging never allocates. Strings are
 * cut at STR_MAX bytes, which with a few fields keeps a line far below the
 * buffer's size (escaping grows a byte to at most six). */
#define STR_MAX 1024
struct line {
	char buf[32768];
	size_t len;
	int full;
};

static void put(struct line *l, const char *s, size_t n)
{
	if (l->len + n >= sizeof(l->buf) - 2) {
		l->full = 1;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void put_json_string(struct line *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	put(l, "\"", 1);
	const unsigned char *end = (const unsigned char *)s + strnlen(s, STR_MAX);
	for (const unsigned char *p = (const unsigned char *)s; p < end; p++) {
		char esc[6];
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			put(l, esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			put(l, esc, 6);
		} else {
			put(l, (const char *)p, 1);
		}
	}
	put(l, "\"", 1);
}

void wh_log(int level, const char *message, ...)
{
	if (!wh_log_enabled(level))
		return;

	struct line l = {.len = 0};
	struct timeval tv;
	struct tm tm;
	char ts[64];
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));

	put(&l, "{\"time\":\"", 9);
	put(&l, ts, strlen(ts));
	put(&l, "\",\"level\":\"", 11);
	put(&l, level_names[level], strlen(level_names[level]));
	put(&l, "\",\"message\":", 12);
	put_json_string(&l, message);

	va_list ap;
	va_start(ap, message);
	for (;;) {
		const char *key = va_arg(ap, const char *);
		if (!key)
			break;
		int type = va_arg(ap, int);
		put(&l, ",", 1);
		put_json_string(&l, key);
		put(&l, ":", 1);
		if (type == WH_LS) {
			const char *v = va_arg(ap, const char *);
			if (v)
				put_json_string(&l, v);
			else
				put(&l, "null", 4);
		} else if (type == WH_LI) {
			char num[32];
			int k = snprintf(num, sizeof(num), "%lld", va_arg(ap, long long));
			put(&l, num, (size_t)k);
		} else {
			if (va_arg(ap, int))
				put(&l, "true", 4);
			else
				put(&l, "false", 5);
		}
	}
	va_end(ap);
	put(&l, "}\n", 2);
	if (l.full)
		return; /* cannot happen with the caps above; never write broken JSON */

	int fd = log_file ? fileno(log_file) : STDERR_FILENO;
	const char *p = l.buf;
	size_t left = l.len;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		p += w;
		left -= (size_t)w;
	}
}

/* ---- configuration: log ---- */

static int parse_level(wh_conf *c, const cJSON *v, char *base)
{
	int level;

	if (!cJSON_IsString(v))
		return wh_conf_fail(c, "expected a string");
	level = wh_log_level_parse(v->valuestring);
	if (level < 0)
		return wh_conf_fail(c, "unknown level \"%s\" (debug, info, warn or error)",
		                    v->valuestring);
	((wh_log_settings *)(void *)base)->level = level;
	return 0;
}

const wh_conf_key wh_log_keys[] = {
    WH_CONF_FN("level", WH_CONF_NOSTORE, parse_level),
    WH_CONF_KEY("output", WH_CONF_STRING, 0, offsetof(wh_log_settings, output)),
    WH_CONF_KEY("audit", WH_CONF_STRING, WH_CONF_WARN_IF_SET, offsetof(wh_log_settings, audit)),
    WH_CONF_END,
};

void wh_log_settings_init(wh_log_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->level = WH_LOG_INFO;
}

void wh_log_settings_free(wh_log_settings *s)
{
	free(s->output);
	free(s->audit);
	memset(s, 0, sizeof(*s));
}
