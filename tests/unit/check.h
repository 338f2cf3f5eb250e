/* A tiny test harness: CHECK() records a failure and goes on, so one run
 * reports every broken expectation; main() returns non-zero if any failed. */
#ifndef WHARF_TEST_CHECK_H
#define WHARF_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		check_count++;                                                                     \
		if (!(cond)) {                                                                     \
			check_failures++;                                                          \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
		}                                                                                  \
	} while (0)

#define CHECK_STREQ(a, b)                                                                          \
	do {                                                                                       \
		const char *check_a_ = (a), *check_b_ = (b);                                       \
		check_count++;                                                                     \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {                   \
			check_failures++;                                                          \
			fprintf(stderr,                                                            \
			        "%s:%d: CHECK_STREQ failed: %s == \"%s\", expected \"%s\"\n",      \
			        __FILE__, __LINE__, #a, check_a_ ? check_a_ : "(null)",            \
			        check_b_ ? check_b_ : "(null)");                                   \
		}                                                                                  \
	} while (0)

#define CHECK_DONE()                                                                               \
	do {                                                                                       \
		printf("%d passed, %d failed\n", check_count - check_failures, check_failures);    \
		return check_failures ? 1 : 0;                                                     \
	} while (0)

#endif
