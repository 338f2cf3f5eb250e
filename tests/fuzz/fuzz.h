/* What every fuzz target shares: libFuzzer's entry points (declared, for
 * -Wmissing-prototypes) and the oracle's assertion. */
#ifndef WHARF_FUZZ_H
#define WHARF_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* An oracle failed: say which, then abort so that libFuzzer keeps the input.
 * Unlike assert() it stays in every build. */
#define FUZZ_ASSERT(cond)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: fuzz oracle failed: %s\n", __FILE__, __LINE__,     \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A NUL-terminated copy of n bytes (which may hold NULs themselves). */
static inline char *fuzz_strndup(const void *data, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		abort();
	if (n)
		memcpy(s, data, n);
	s[n] = '\0';
	return s;
}

#endif
