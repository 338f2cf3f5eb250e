/* The Prometheus text exposition format (version 0.0.4), written into a
 * buffer that the writer keeps and reuses: a scrape allocates only when its
 * output is larger than every one before it.
 *
 * A metric family is its HELP and TYPE lines (wh_prom_family), then its
 * samples, each begun with wh_prom_begin, given labels with wh_prom_label,
 * and ended with its value (wh_prom_end_u64, _i64, _double). Label values
 * and help texts are escaped as the format says (a backslash, a double
 * quote in a label value, a line feed); names are the caller's (they must
 * match [a-zA-Z_:][a-zA-Z0-9_:]*). Nothing checks that a family's samples
 * come together or that a name is not repeated: the caller writes them so. */
#ifndef WHARF_PROM_H
#define WHARF_PROM_H

#include <stddef.h>
#include <stdint.h>

#define WH_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct wh_prom {
	char *buf; /* NUL-terminated; len bytes of output */
	size_t len, cap;
	int labels; /* labels written in the sample being written */
} wh_prom;

/* Start a new output (keeps the buffer). */
void wh_prom_reset(wh_prom *p);
void wh_prom_free(wh_prom *p);

/* # HELP name help, # TYPE name type ("counter", "gauge", "histogram",
 * "summary", "untyped"). */
void wh_prom_family(wh_prom *p, const char *name, const char *type, const char *help);

/* A sample: name, then each label (name="value"), then the value and the
 * line's end. */
void wh_prom_begin(wh_prom *p, const char *name);
void wh_prom_label(wh_prom *p, const char *name, const char *value);
void wh_prom_end_u64(wh_prom *p, uint64_t v);
void wh_prom_end_i64(wh_prom *p, int64_t v);
void wh_prom_end_double(wh_prom *p, double v); /* NaN, +Inf and -Inf as the format spells them */

/* A whole histogram's samples (its family line written before): for each
 * of the n upper bounds le[i] (as they are to be printed, increasing), the
 * cumulative count of observations up to it, then le="+Inf" (count), then
 * name_sum and name_count. counts[i] is the number of observations in
 * bucket i alone (counts[n]: above the last bound). label/value: one label
 * every sample carries, or NULL. */
void wh_prom_histogram(wh_prom *p, const char *name, const char *label, const char *value,
                       const char *const *le, const uint64_t *counts, int n, double sum);

#endif
