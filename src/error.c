/* src/error.c — error codes, names, messages. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
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
		/* "ENOENT: No such file or directory", kept per errno. */
		static __thread char buf[160];
		const char *n = strerrorname_np(-code);
		snprintf(buf, sizeof buf, "%s: %s", n ? n : "E?",
			 strerrordesc_np(-code) ? strerrordesc_np(-code)
						: "unknown error");
		return buf;
	}
	return "SHVAL_E?: unknown error code";
}

/* Per-thread last message, tagged with the segment it is about. */
static __thread char err_msg[1024];
static __thread const shval_seg *err_seg;

int shval__failf(const shval_seg *seg, int code, const char *fmt, ...)
{
	/* Formatted aside first: an argument may be shval_errmsg() itself
	 * (a message passed on from an inner call), i.e. err_msg. */
	char m[sizeof err_msg];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	memcpy(err_msg, m, sizeof m);
	for (char *p = err_msg; *p; p++) /* one line, always */
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	err_seg = seg;
	return code;
}

void shval__clear_err(const shval_seg *seg)
{
	if (err_seg == seg)
		err_msg[0] = 0;
}

SHVAL_API const char *shval_errmsg(const shval_seg *seg)
{
	return err_seg == seg ? err_msg : "";
}
