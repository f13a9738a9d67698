/* src/error.c — error codes, names, messages. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

SHVAL_API unsigned shval_version(void)
{
	return SHVAL_VERSION_HEX;
}

#define SHVAL__STR2(x) #x
#define SHVAL__STR(x) SHVAL__STR2(x)
SHVAL_API const char *shval_version_string(void)
{
	return SHVAL__STR(SHVAL_VERSION_MAJOR) "." SHVAL__STR(
		SHVAL_VERSION_MINOR) "." SHVAL__STR(SHVAL_VERSION_PATCH);
}

/* Per-thread messages: the last failure's, tagged with the segment it is
 * about, and shval_strerror()'s text of an errno.  On the heap, in a block
 * allocated at a thread's first failure and freed at its exit, so that the
 * library's thread-local storage stays small (~130 bytes): small enough to
 * fit glibc's static TLS surplus when the library is dlopen()ed (the Python
 * module), where TLS descriptors then resolve to a fixed offset instead of
 * a call (lock.c's held list is read on every section). */
struct err_block {
	char msg[1024];
	char str[160];
};
static __thread struct err_block *err_tls;
static __thread const shval_seg *err_seg;
static __thread bool err_lost; /* no block: the message could not be kept */
static pthread_key_t err_key;
static pthread_once_t err_once = PTHREAD_ONCE_INIT;
static bool err_key_ok;

static void err_block_free(void *p)
{
	free(p);
	err_tls = NULL; /* a later failure in this exiting thread allocates */
}

static void err_key_init(void)
{
	err_key_ok = pthread_key_create(&err_key, err_block_free) == 0;
}

static struct err_block *err_block(void)
{
	if (err_tls)
		return err_tls;
	pthread_once(&err_once, err_key_init);
	struct err_block *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	if (err_key_ok)
		pthread_setspecific(err_key, b);
	err_tls = b;
	return b;
}

SHVAL_API const char *shval_errname(int code)
{
	switch (code) {
#define SHVAL__ERRNAME(n, v, s) \
	case SHVAL_##n:         \
		return "SHVAL_" #n;
		SHVAL_ERRORS(SHVAL__ERRNAME)
#undef SHVAL__ERRNAME
	case 0:
		return "OK";
	}
	if (code < 0 && code > -4096) {
		const char *n = strerrorname_np(-code);
		if (n)
			return n;
	}
	return "SHVAL_E?";
}

SHVAL_API const char *shval_strerror(int code)
{
	switch (code) {
#define SHVAL__ERRSTR(n, v, s) \
	case SHVAL_##n:        \
		return "SHVAL_" #n ": " s;
		SHVAL_ERRORS(SHVAL__ERRSTR)
#undef SHVAL__ERRSTR
	case 0:
		return "OK: success";
	}
	if (code < 0 && code > -4096) {
		/* "ENOENT: No such file or directory", in the thread's block */
		struct err_block *b = err_block();
		if (!b)
			return "E?: (no memory for the message)";
		const char *n = strerrorname_np(-code);
		snprintf(b->str, sizeof b->str, "%s: %s", n ? n : "E?",
			 strerrordesc_np(-code) ? strerrordesc_np(-code)
						: "unknown error");
		return b->str;
	}
	return "SHVAL_E?: unknown error code";
}

int shval__failf(const shval_seg *seg, int code, const char *fmt, ...)
{
	struct err_block *b = err_block();
	err_seg = seg;
	if (!b) {
		err_lost = true;
		return code;
	}
	err_lost = false;
	/* Formatted aside first: an argument may be shval_errmsg() itself
	 * (a message passed on from an inner call), i.e. b->msg. */
	char m[sizeof b->msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	memcpy(b->msg, m, sizeof m);
	for (char *p = b->msg; *p; p++) /* one line, always */
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return code;
}

void shval__clear_err(const shval_seg *seg)
{
	if (err_seg == seg) {
		err_lost = false;
		if (err_tls)
			err_tls->msg[0] = 0;
	}
}

SHVAL_API const char *shval_errmsg(const shval_seg *seg)
{
	if (err_seg != seg)
		return "";
	if (err_lost)
		return "(the message was lost: no memory for it)";
	return err_tls ? err_tls->msg : "";
}
