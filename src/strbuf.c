/*
 * src/strbuf.c — shval__buf, the growable output buffer of the text forms
 * (declared in type.h).  An allocation failure sets b->oom and every later
 * append is a no-op, so callers check once at the end.
 */
#include "type.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void shval__buf_init(shval__buf *b)
{
	b->p = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}

void shval__buf_free(shval__buf *b)
{
	free(b->p);
	shval__buf_init(b);
}

/* Make room for n more bytes plus a NUL; 0 or -1 (and b->oom set). */
static int buf_reserve(shval__buf *b, size_t n)
{
	size_t need, ncap;
	char *np;
	if (b->oom)
		return -1;
	if (n > SIZE_MAX / 2 - b->len) {
		b->oom = true;
		return -1;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap *= 2;
	np = realloc(b->p, ncap);
	if (!np) {
		b->oom = true;
		return -1;
	}
	b->p = np;
	b->cap = ncap;
	return 0;
}

/* The buffer stays NUL-terminated (once anything was added), so b->p can be
 * used as a C string when the content has no NULs. */
void shval__buf_add(shval__buf *b, const void *s, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return;
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void shval__buf_printf(shval__buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	char small[128];

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true; /* an encoding error: no better flag to raise */
		return;
	}
	if ((size_t)n < sizeof small) {
		shval__buf_add(b, small, (size_t)n);
		return;
	}
	if (buf_reserve(b, (size_t)n) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}
