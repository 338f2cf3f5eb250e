/* A tiny test harness: CHECK() records a failure and goes on, so one run
 * reports every broken expectation; main() returns non-zero if any failed. */
#ifndef WHARF_TEST_CHECK_H
#define WHARF_TEST_CHECK_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
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

/* snprintf that must not truncate (a test bug if it does). */
#define FMT(buf, size, ...)                                                                        \
	do {                                                                                       \
		int fmt_n_ = snprintf(buf, size, __VA_ARGS__);                                     \
		if (fmt_n_ < 0 || (size_t)fmt_n_ >= (size_t)(size)) {                              \
			fprintf(stderr, "%s:%d: string too long\n", __FILE__, __LINE__);           \
			exit(2);                                                                   \
		}                                                                                  \
	} while (0)

static inline int check_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove a test's temp directory tree, whatever is in it. */
static inline void check_rm_rf(const char *path)
{
	nftw(path, check_rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

#endif
