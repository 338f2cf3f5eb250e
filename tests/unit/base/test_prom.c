/* Unit tests for src/base/prom.c: the Prometheus text exposition writer. */
#include "check.h"

#include <math.h>

#include "wharf/base/prom.h"

static void test_samples(void)
{
	wh_prom p = {0};
	wh_prom_family(&p, "x_total", "counter", "Help with \\ and\nnewline \"kept\".");
	wh_prom_begin(&p, "x_total");
	wh_prom_end_u64(&p, 18446744073709551615ull);
	wh_prom_begin(&p, "x_total");
	wh_prom_label(&p, "repo", "a\"b\\c\nd");
	wh_prom_label(&p, "code", "200");
	wh_prom_end_i64(&p, -1);
	CHECK_STREQ(p.buf, "# HELP x_total Help with \\\\ and\\nnewline \"kept\".\n"
	                   "# TYPE x_total counter\n"
	                   "x_total 18446744073709551615\n"
	                   "x_total{repo=\"a\\\"b\\\\c\\nd\",code=\"200\"} -1\n");
	CHECK(p.len == strlen(p.buf));

	/* A reset keeps the buffer; labels do not leak into the next sample. */
	char *kept = p.buf;
	wh_prom_reset(&p);
	CHECK(p.len == 0 && p.buf == kept);
	wh_prom_begin(&p, "a");
	wh_prom_end_double(&p, 0.1);
	wh_prom_begin(&p, "b");
	wh_prom_end_double(&p, 1.0 / 3.0);
	wh_prom_begin(&p, "c");
	wh_prom_end_double(&p, INFINITY);
	wh_prom_begin(&p, "d");
	wh_prom_end_double(&p, NAN);
	wh_prom_begin(&p, "e");
	wh_prom_end_double(&p, 1796049881.48);
	CHECK_STREQ(p.buf, "a 0.1\nb 0.33333333333333331\nc +Inf\nd NaN\ne 1796049881.48\n");
	wh_prom_free(&p);
	CHECK(p.buf == NULL);
}

static void test_histogram(void)
{
	wh_prom p = {0};
	static const char *const le[] = {".05", ".5", "1"};
	const uint64_t counts[] = {2, 0, 1, 4}; /* 4 above the last bound */
	wh_prom_histogram(&p, "lat_seconds", "method", "GET", le, counts, 3, 12.5);
	CHECK_STREQ(p.buf, "lat_seconds_bucket{method=\"GET\",le=\".05\"} 2\n"
	                   "lat_seconds_bucket{method=\"GET\",le=\".5\"} 2\n"
	                   "lat_seconds_bucket{method=\"GET\",le=\"1\"} 3\n"
	                   "lat_seconds_bucket{method=\"GET\",le=\"+Inf\"} 7\n"
	                   "lat_seconds_sum{method=\"GET\"} 12.5\n"
	                   "lat_seconds_count{method=\"GET\"} 7\n");
	wh_prom_reset(&p);
	const uint64_t none[] = {0, 0, 0, 0};
	wh_prom_histogram(&p, "h", NULL, NULL, le, none, 3, 0);
	CHECK_STREQ(p.buf, "h_bucket{le=\".05\"} 0\nh_bucket{le=\".5\"} 0\nh_bucket{le=\"1\"} 0\n"
	                   "h_bucket{le=\"+Inf\"} 0\nh_sum 0\nh_count 0\n");
	wh_prom_free(&p);
}

int main(void)
{
	test_samples();
	test_histogram();
	CHECK_DONE();
}
