/* The Prometheus text exposition format. See include/wharf/base/prom.h. */
#include "wharf/base/prom.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wharf/base/common.h"

static void put(wh_prom *p, const char *s, size_t n)
{
	wh_buf_append(&p->buf, &p->len, &p->cap, s, n);
}

static void puts_(wh_prom *p, const char *s)
{
	put(p, s, strlen(s));
}

/* s with backslash and line feed escaped, and the double quote too in a
 * label value (quote true). */
static void put_escaped(wh_prom *p, const char *s, bool quote)
{
	const char *run = s;
	for (; *s; s++) {
		const char *esc = NULL;
		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (*s == '"' && quote)
			esc = "\\\"";
		if (!esc)
			continue;
		put(p, run, (size_t)(s - run));
		puts_(p, esc);
		run = s + 1;
	}
	put(p, run, (size_t)(s - run));
}

void wh_prom_reset(wh_prom *p)
{
	p->len = 0;
	p->labels = 0;
	if (p->buf)
		p->buf[0] = '\0';
}

void wh_prom_free(wh_prom *p)
{
	free(p->buf);
	p->buf = NULL;
	p->len = p->cap = 0;
}

void wh_prom_family(wh_prom *p, const char *name, const char *type, const char *help)
{
	puts_(p, "# HELP ");
	puts_(p, name);
	puts_(p, " ");
	put_escaped(p, help, false);
	puts_(p, "\n# TYPE ");
	puts_(p, name);
	puts_(p, " ");
	puts_(p, type);
	puts_(p, "\n");
}

void wh_prom_begin(wh_prom *p, const char *name)
{
	puts_(p, name);
	p->labels = 0;
}

void wh_prom_label(wh_prom *p, const char *name, const char *value)
{
	puts_(p, p->labels++ ? "," : "{");
	puts_(p, name);
	puts_(p, "=\"");
	put_escaped(p, value, true);
	puts_(p, "\"");
}

static void end(wh_prom *p, const char *value)
{
	puts_(p, p->labels ? "} " : " ");
	puts_(p, value);
	puts_(p, "\n");
	p->labels = 0;
}

void wh_prom_end_u64(wh_prom *p, uint64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	end(p, b);
}

void wh_prom_end_i64(wh_prom *p, int64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRId64, v);
	end(p, b);
}

void wh_prom_end_double(wh_prom *p, double v)
{
	char b[32];
	if (isnan(v))
		snprintf(b, sizeof(b), "NaN");
	else if (isinf(v))
		snprintf(b, sizeof(b), "%s", v > 0 ? "+Inf" : "-Inf");
	else if (snprintf(b, sizeof(b), "%.15g", v), strtod(b, NULL) != v)
		snprintf(b, sizeof(b), "%.17g", v); /* the shortest of the two that reads back */
	end(p, b);
}

static void bucket(wh_prom *p, const char *name, const char *label, const char *value,
                   const char *le, uint64_t cum)
{
	wh_prom_begin(p, name);
	if (label)
		wh_prom_label(p, label, value);
	wh_prom_label(p, "le", le);
	wh_prom_end_u64(p, cum);
}

void wh_prom_histogram(wh_prom *p, const char *name, const char *label, const char *value,
                       const char *const *le, const uint64_t *counts, int n, double sum)
{
	char sample[256];
	uint64_t cum = 0;
	snprintf(sample, sizeof(sample), "%s_bucket", name);
	for (int i = 0; i < n; i++) {
		cum += counts[i];
		bucket(p, sample, label, value, le[i], cum);
	}
	cum += counts[n];
	bucket(p, sample, label, value, "+Inf", cum);
	snprintf(sample, sizeof(sample), "%s_sum", name);
	wh_prom_begin(p, sample);
	if (label)
		wh_prom_label(p, label, value);
	wh_prom_end_double(p, sum);
	snprintf(sample, sizeof(sample), "%s_count", name);
	wh_prom_begin(p, sample);
	if (label)
		wh_prom_label(p, label, value);
	wh_prom_end_u64(p, cum);
}
