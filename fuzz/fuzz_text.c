/*
 * fuzz/fuzz_text.c — libFuzzer target: text -> value -> text.
 *
 * Input: a selector byte, then arguments separated by '\n'.  Selector
 * 0xff: the text up to the first '\n' is a type string; any other value
 * picks a type from the list below.  The value is created in an anonymous
 * segment (one per iteration, closed at the end), set with
 * shval_from_text(), formatted with shval_to_text() (plain and JSON), and
 * for non-string scalars parse(format(x)) must give back x bit for bit
 * (NaN: any NaN).  A failed from_text must leave the value unchanged.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <shval.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const types[] = {
	"q", "b", "B", "h", "H", "i", "I", "l", "L", "Q",       /* 0-9 */
	"d", "f", "?", "u", "c", "n", "16s", "3i", "x:d y:d name:16s", /* 10-18 */
	"q d 4s", "2f", "a:3c b:u", "1s", "N",                 /* 19-23 */
};
#define NTYPES (sizeof types / sizeof types[0])
#define MAX_ARGS 64

static int same_scalar(const char *type, const unsigned char *a,
		       const unsigned char *b, size_t n)
{
	if (memcmp(a, b, n) == 0)
		return 1;
	if (strcmp(type, "d") == 0) {
		double x, y;
		memcpy(&x, a, 8);
		memcpy(&y, b, 8);
		return isnan(x) && isnan(y);
	}
	if (strcmp(type, "f") == 0) {
		float x, y;
		memcpy(&x, a, 4);
		memcpy(&y, b, 4);
		return isnan(x) && isnan(y);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *in = malloc(size);
	if (!in)
		abort();
	memcpy(in, data + 1, size - 1);
	in[size - 1] = 0;
	size_t n = size - 1;
	char *p = in, *end = in + n;
	char type[SHVAL_TYPE_MAX + 1];
	size_t tsize = 0;
	if (data[0] == 0xff) {
		char *nl = memchr(p, '\n', n);
		if (nl)
			*nl = 0;
		/* keep the segment small: types up to 64 KiB */
		if (shval_type_canonical(p, type, sizeof type, &tsize) != 0 ||
		    tsize > 65536) {
			free(in);
			return 0;
		}
		p = nl ? nl + 1 : end;
	} else {
		snprintf(type, sizeof type, "%s", types[data[0] % NTYPES]);
	}
	const char *argv[MAX_ARGS];
	int argc = 0;
	while (p < end && argc < MAX_ARGS) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		argv[argc++] = p;
		if (!nl)
			break;
		*nl = 0;
		p = nl + 1;
	}

	shval_seg_opts o = { .struct_size = sizeof o, .initial_size = 8192,
			     .max_size = 1u << 20 };
	shval_seg *seg;
	if (shval_seg_open(NULL, SHVAL_CREATE, &o, &seg) != 0)
		abort();
	unsigned modes[] = { SHVAL_RLOCK, SHVAL_RAW, SHVAL_ATOMIC, SHVAL_LOCK };
	unsigned mode = modes[(size > 1 ? data[size - 1] : 0) & 3];
	shval *v;
	int r = shval_create(seg, "x", type, mode, NULL, 0, &v);
	if (r == SHVAL_EMODE)
		r = shval_create(seg, "x", type, SHVAL_RLOCK, NULL, 0, &v);
	if (r != 0) {
		fprintf(stderr, "create %s: %s\n", type, shval_errmsg(seg));
		abort();
	}
	struct shval_info info;
	if (shval_info(v, &info) != 0)
		abort();
	unsigned char *before = malloc(info.size + 1), *after = malloc(info.size + 1),
		      *again = malloc(info.size + 1);
	if (!before || !after || !again)
		abort();
	if (shval_read(v, before, info.size) != 0)
		abort();
	r = shval_from_text(v, argc, argv);
	if (r > 0 || shval_read(v, after, info.size) != 0)
		abort();
	if (r != 0 && memcmp(before, after, info.size) != 0) {
		fprintf(stderr, "from_text failed (%s) but changed the value\n",
			shval_errname(r));
		abort();
	}
	char *text = NULL;
	for (unsigned fl = 0; fl <= SHVAL_TEXT_JSON; fl += SHVAL_TEXT_JSON) {
		size_t len = 0;
		r = shval_to_text(v, fl, NULL, 0, &len);
		if (r != SHVAL_ETOOBIG)
			abort();
		char *t = malloc(len + 1);
		if (!t || shval_to_text(v, fl, t, len + 1, &len) != 0)
			abort();
		if (fl == 0)
			text = t;
		else
			free(t);
	}
	/* round trip for non-string scalars: parse(format(x)) == x */
	if (info.kind == SHVAL_KIND_SCALAR && shval_from_text(v, argc, argv) == 0) {
		const char *a[1] = { text };
		r = shval_from_text(v, 1, a);
		if (r != 0) {
			fprintf(stderr, "type %s: \"%s\" does not parse back: %s (%s)\n",
				type, text, shval_errname(r), shval_errmsg(seg));
			abort();
		}
		if (shval_read(v, again, info.size) != 0)
			abort();
		if (!same_scalar(type, after, again, info.size)) {
			fprintf(stderr, "type %s: \"%s\" parses to other bits\n",
				type, text);
			abort();
		}
	}
	free(text);
	free(before);
	free(after);
	free(again);
	shval_close(v);
	shval_seg_close(seg);
	free(in);
	return 0;
}
