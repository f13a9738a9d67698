/*
 * fuzz/fuzz_type.c — libFuzzer target: type-string parsing.
 *
 * The input, NUL-terminated, goes to shval_type_canonical().  On success the
 * canonical form must parse again to itself with the same size (the
 * grammar's promise in src/type.h), and a short buffer must give
 * SHVAL_ETOOBIG; on failure the code must be SHVAL_EBADTYPE with a message.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <shval.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	memcpy(s, data, size);
	s[size] = 0;
	char canon[SHVAL_TYPE_MAX + 1], again[SHVAL_TYPE_MAX + 1];
	size_t sz = 0, sz2 = 0;
	int r = shval_type_canonical(s, canon, sizeof canon, &sz);
	if (r == 0) {
		if (strlen(canon) > SHVAL_TYPE_MAX || sz == 0)
			abort();
		if (shval_type_canonical(canon, again, sizeof again, &sz2) != 0 ||
		    strcmp(canon, again) != 0 || sz != sz2) {
			fprintf(stderr, "canonical form does not round-trip: \"%s\" -> \"%s\"\n",
				canon, again);
			abort();
		}
		size_t n = strlen(canon);
		if (shval_type_canonical(s, again, n, NULL) != SHVAL_ETOOBIG)
			abort();
	} else if (r != SHVAL_EBADTYPE || !shval_errmsg(NULL)[0]) {
		fprintf(stderr, "shval_type_canonical returned %d (%s)\n", r,
			shval_errname(r));
		abort();
	}
	free(s);
	return 0;
}
