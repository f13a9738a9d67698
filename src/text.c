/*
 * src/text.c — values <-> text (plain and JSON).  The growable output
 * buffer is strbuf.c, UTF-8 decoding and encoding utf8.c.
 *
 * Formats (the contract is at shval_to_text() / shval_from_text() in
 * include/shval.h; the details decided here):
 *
 * Elements, plain / JSON:
 *   integers   exact decimal ("-9223372036854775808") / JSON number
 *   f, d       shortest text that reads back to the same bits: "%.*g" with
 *              precision 1, 2, ... 17 (9 for 'f', read back through
 *              strtof so a float round-trips as a float); -0.0 is "-0".
 *              Non-finite: nan, inf, -inf / the JSON strings "nan", "inf",
 *              "-inf" (every NaN prints as "nan": its sign and payload are
 *              lost).
 *   ?          true / false (any non-zero byte is true)
 *   c          the raw byte / a one-character JSON string, escaped, bytes
 *              >= 0x80 as "\u00XX"
 *   u          the code point in UTF-8 / a JSON string.  A wchar_t that is
 *              not a Unicode scalar value (a surrogate, or above 0x10FFFF,
 *              or negative) prints as the ASCII text \u{HEX} (e.g.
 *              "\u{110000}"); in JSON that text is a string, so the
 *              backslash doubles: "\\u{110000}".  This keeps JSON output
 *              valid UTF-8; such values do not parse back.
 * Strings ("Ns"):
 *   plain, whole value   the raw bytes, exactly (NULs included)
 *   plain, struct field  "..." with C escapes: \" \\ \n \t \r, \0 (or \x00
 *                        when a digit follows, to stay unambiguous), other
 *                        control bytes and invalid UTF-8 as \xHH; valid
 *                        UTF-8 as is.  Parsed back exactly: a field=value
 *                        argument whose value starts with a quote is read
 *                        in this form (shval__text_unquote); one that does
 *                        not is taken as raw bytes.
 *   JSON                 escaped exactly: \" \\ \b \f \n \r \t, other
 *                        control bytes and DEL as \u00XX (NUL is \u0000);
 *                        valid UTF-8 as is; each byte of invalid UTF-8
 *                        as \u00XX.  The output is always valid JSON and
 *                        UTF-8, but a JSON reader then sees U+00XX, not the
 *                        byte XX: JSON round-trips strings exactly only when
 *                        they are valid UTF-8.
 *   A stored length above the capacity (a damaged segment; normally caught
 *   by shval__type_check() first) is clamped to the capacity — nothing
 *   past the string is read — and, in plain text only, followed by the
 *   marker "[damaged: length L > capacity C]".  JSON output stays valid and
 *   carries no marker.
 * Arrays: plain elements separated by one space (comma inside a struct);
 *   JSON [a,b,c].
 * Structs: plain "name=value" separated by one space ("0=value" when
 *   unnamed); JSON {"name":value,...}, or [v0,v1,...] when unnamed.
 * JSON output is compact (no spaces).
 *
 * Parsing (shval__text_parse_elem):
 *   integers   optional sign, then decimal digits (leading zeros allowed,
 *              still decimal) or 0x/0X and hex digits; exact, range-checked
 *              for the letter ("-0" is 0 and fits unsigned letters)
 *   f, d       strtod syntax (also hex floats, nan, inf, infinity) read in
 *              the C locale whatever the process's locale; overflow to
 *              infinity is SHVAL_ERANGE, underflow to 0/denormal is accepted
 *              (as C and Python do)
 *   ?          true, false, True, False, 1, 0
 *   c          exactly one byte;  u: exactly one valid UTF-8 character
 *   No white space is skipped anywhere: " 1" and "1 " are SHVAL_EPARSE.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* newlocale/uselocale, strtod_l */
#endif
#include "type.h"

#include <shval.h>

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void buf_addc(shval__buf *b, char c)
{
	shval__buf_add(b, &c, 1);
}

static void buf_adds(shval__buf *b, const char *s)
{
	shval__buf_add(b, s, strlen(s));
}

/* ---- helpers ------------------------------------------------------------ */

/*
 * Numbers must read and print the same whatever setlocale() the application
 * made (a "de_DE" LC_NUMERIC would print "0,1").  Float conversions run
 * under a private "C" locale object: uselocale() for snprintf (per thread,
 * restored right after) and strtod_l/strtof_l for reading.  If the locale
 * object cannot be created (out of memory), we fall back to the process
 * locale, which is "C" unless the application changed it.
 */
static locale_t c_loc;
static pthread_once_t c_loc_once = PTHREAD_ONCE_INIT;
static void c_loc_init(void)
{
	c_loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}
static locale_t c_locale(void)
{
	pthread_once(&c_loc_once, c_loc_init);
	return c_loc;
}

static double parse_double_c(const char *s, char **end)
{
	locale_t l = c_locale();
	return l ? strtod_l(s, end, l) : strtod(s, end);
}

static float parse_float_c(const char *s, char **end)
{
	locale_t l = c_locale();
	return l ? strtof_l(s, end, l) : strtof(s, end);
}

static int fail(char *err, size_t errcap, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errcap, int code, const char *fmt, ...)
{
	if (err && errcap > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errcap, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Put "<prefix>: " in front of the message already in err. */
static void err_prefix(char *err, size_t errcap, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void err_prefix(char *err, size_t errcap, const char *fmt, ...)
{
	char pre[160], old[512];
	va_list ap;
	if (!err || errcap == 0)
		return;
	snprintf(old, sizeof old, "%s", err);
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	snprintf(err, errcap, "%s: %s", pre, old);
}

/* ---- formatting --------------------------------------------------------- */

/* The short escape of control byte c in a string body, or NULL: \n \t \r
 * in both forms, \b \f in JSON, \0 in plain text unless a digit follows
 * ("\01" would read as octal). */
static const char *short_escape(unsigned char c, bool json, bool digit_next)
{
	switch (c) {
	case '\n':
		return "\\n";
	case '\t':
		return "\\t";
	case '\r':
		return "\\r";
	case '\b':
		return json ? "\\b" : NULL;
	case '\f':
		return json ? "\\f" : NULL;
	case 0:
		return json || digit_next ? NULL : "\\0";
	default:
		return NULL;
	}
}

/* String bodies: see type.h and the header comment. */
void shval__text_escape(shval__buf *b, const void *bytes, size_t n, bool json)
{
	const unsigned char *s = bytes;
	size_t i = 0;
	while (i < n && !b->oom) {
		unsigned char c = s[i];
		bool digit_next =
			i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9';
		const char *e;
		uint32_t cp;
		size_t k = 1;
		if (c == '"' || c == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (char)c);
		} else if (c >= 0x20 && c < 0x7f) {
			/* a run of plain ASCII in one go */
			while (i + k < n && s[i + k] >= 0x20 &&
			       s[i + k] < 0x7f && s[i + k] != '"' &&
			       s[i + k] != '\\')
				k++;
			shval__buf_add(b, s + i, k);
		} else if ((e = short_escape(c, json, digit_next))) {
			buf_adds(b, e);
		} else if (c >= 0x80 &&
			   (k = shval__utf8_decode(s + i, n - i, &cp))) {
			shval__buf_add(b, s + i, k);
		} else {
			k = 1;
			if (json)
				shval__buf_printf(b, "\\u%04x", c);
			else
				shval__buf_printf(b, "\\x%02x", c);
		}
		i += k;
	}
}

/* Shortest "%.*g" text of x that reads back to the same bits.  For 'f' the
 * value is a float widened to double and read back with strtof. */
static void fmt_float(shval__buf *b, double x, bool is_float, bool json)
{
	char tmp[40];
	locale_t l = c_locale(), old = (locale_t)0;
	int maxp = is_float ? 9 : 17; /* these always round-trip */

	if (isnan(x) || isinf(x)) {
		const char *s = isnan(x) ? "nan" : x > 0 ? "inf" : "-inf";
		if (json)
			shval__buf_printf(b, "\"%s\"", s);
		else
			buf_adds(b, s);
		return;
	}
	if (l)
		old = uselocale(l); /* '.' as the decimal point; see c_loc */
	for (int prec = 1; prec <= maxp; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, x);
		if (is_float) {
			float y = parse_float_c(tmp, NULL), xf = (float)x;
			if (memcmp(&y, &xf, sizeof y) == 0)
				break;
		} else {
			double y = parse_double_c(tmp, NULL);
			if (memcmp(&y, &x, sizeof y) == 0)
				break;
		}
	}
	if (l)
		uselocale(old);
	buf_adds(b, tmp);
}

static void fmt_elem(shval__buf *b, char code, const unsigned char *p,
		     bool json)
{
	switch (code) {
	case 'f': {
		float v;
		memcpy(&v, p, sizeof v);
		fmt_float(b, v, true, json);
		return;
	}
	case 'd': {
		double v;
		memcpy(&v, p, sizeof v);
		fmt_float(b, v, false, json);
		return;
	}
	case '?':
		buf_adds(b, p[0] ? "true" : "false");
		return;
	case 'c':
		if (json) {
			buf_addc(b, '"');
			if (p[0] >= 0x80) /* one byte alone is never UTF-8 */
				shval__buf_printf(b, "\\u%04x", p[0]);
			else
				shval__text_escape(b, p, 1, true);
			buf_addc(b, '"');
		} else {
			buf_addc(b, (char)p[0]);
		}
		return;
	case 'u': {
		uint32_t cp; /* wchar_t is a 4-byte int on Linux */
		char u8[4];
		memcpy(&cp, p, sizeof cp);
		if (json)
			buf_addc(b, '"');
		if (shval__utf8_scalar(cp)) {
			size_t k = shval__utf8_encode(cp, u8);
			if (json)
				shval__text_escape(b, (const unsigned char *)u8,
						   k, true);
			else
				shval__buf_add(b, u8, k);
		} else {
			shval__buf_printf(b,
					  json ? "\\\\u{%" PRIX32 "}"
					       : "\\u{%" PRIX32 "}",
					  cp);
		}
		if (json)
			buf_addc(b, '"');
		return;
	}
	default: {
		const shval__letter *l = shval__letter_info(code);
		uint64_t x = shval__int_load(l, p);
		if (l->is_signed)
			shval__buf_printf(b, "%" PRId64, (int64_t)x);
		else
			shval__buf_printf(b, "%" PRIu64, x);
		return;
	}
	}
}

/* One field (or a whole non-struct value).  in_struct: plain text inside a
 * struct (quoted strings, comma-separated arrays). */
static void fmt_field(shval__buf *b, const shval__field *f,
		      const unsigned char *base, bool json, bool in_struct)
{
	const unsigned char *p = base + f->offset;

	switch (f->kind) {
	case SHVAL_KIND_SCALAR:
		fmt_elem(b, f->code, p, json);
		return;
	case SHVAL_KIND_ARRAY: {
		char sep = (json || in_struct) ? ',' : ' ';
		if (json)
			buf_addc(b, '[');
		for (uint32_t k = 0; k < f->count && !b->oom; k++) {
			if (k)
				buf_addc(b, sep);
			fmt_elem(b, f->code, p + (size_t)k * f->elem_size,
				 json);
		}
		if (json)
			buf_addc(b, ']');
		return;
	}
	case SHVAL_KIND_STRING: {
		uint32_t len, n;
		memcpy(&len, p, sizeof len);
		n = len > f->count ? f->count : len; /* never read past */
		if (json) {
			buf_addc(b, '"');
			shval__text_escape(b, p + 4, n, true);
			buf_addc(b, '"');
			return;
		}
		if (in_struct) {
			buf_addc(b, '"');
			shval__text_escape(b, p + 4, n, false);
			buf_addc(b, '"');
		} else {
			shval__buf_add(b, p + 4, n);
		}
		if (len > f->count)
			shval__buf_printf(b,
					  "[damaged: length %" PRIu32
					  " > capacity %" PRIu32 "]",
					  len, f->count);
		return;
	}
	default:
		return; /* not reached: the parser makes only these kinds */
	}
}

int shval__text_format(const shval__type *t, const void *data, unsigned flags,
		       shval__buf *out)
{
	const unsigned char *base = data;
	bool json = (flags & SHVAL_TEXT_JSON) != 0;

	if (t->kind != SHVAL_KIND_STRUCT) {
		fmt_field(out, &t->fields[0], base, json, false);
	} else {
		bool named = t->fields[0].name[0] != '\0';
		if (json)
			buf_addc(out, named ? '{' : '[');
		for (size_t k = 0; k < t->nfields && !out->oom; k++) {
			const shval__field *f = &t->fields[k];
			if (k)
				buf_addc(out, json ? ',' : ' ');
			if (json && named)
				shval__buf_printf(out, "\"%s\":", f->name);
			else if (!json && named)
				shval__buf_printf(out, "%s=", f->name);
			else if (!json)
				shval__buf_printf(out, "%zu=", k);
			fmt_field(out, f, base, json, true);
		}
		if (json)
			buf_addc(out, named ? '}' : ']');
	}
	if (!out->p) /* an empty result still gives a NUL-terminated buffer */
		shval__buf_add(out, "", 0);
	return out->oom ? -ENOMEM : 0;
}

/* ---- parsing ------------------------------------------------------------ */

/* Integer syntax: [+-] (digits | 0x hexdigits).  Sets *neg and the
 * magnitude; returns 0, or -1 if malformed, -2 if above UINT64_MAX. */
static int parse_uint_mag(const char *s, bool *neg, uint64_t *mag)
{
	uint64_t v = 0;
	unsigned base = 10;
	bool any = false, over = false;

	*neg = false;
	if (*s == '+' || *s == '-')
		*neg = *s++ == '-';
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	for (; *s; s++) {
		unsigned d;
		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = (unsigned)(*s - 'a' + 10);
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = (unsigned)(*s - 'A' + 10);
		else
			return -1;
		any = true;
		if (v > (UINT64_MAX - d) / base)
			over = true; /* keep scanning: "99...9x" is malformed */
		else
			v = v * base + d;
	}
	if (!any)
		return -1;
	*mag = v;
	return over ? -2 : 0;
}

static int parse_int(char code, const char *text, void *out, char *err,
		     size_t errcap)
{
	char q[200];
	bool neg;
	int r;
	uint64_t mag = 0;
	const shval__letter *l = shval__letter_info(code);

	shval__quote(q, sizeof q, text, strlen(text));
	r = parse_uint_mag(text, &neg, &mag);
	if (r == -1)
		return fail(err, errcap, SHVAL_EPARSE,
			    "\"%s\" is not an "
			    "integer (type %c)",
			    q, code);
	/* the magnitude may reach max, or -min when negative ("-0" fits an
	 * unsigned letter); two's complement, no signed overflow in C */
	if (r == 0 &&
	    (neg ? mag <= (uint64_t)0 - (uint64_t)l->min : mag <= l->max)) {
		shval__int_store(l, out, neg ? (uint64_t)0 - mag : mag);
		return 0;
	}
	return fail(err, errcap, SHVAL_ERANGE,
		    "\"%s\" is out of range for "
		    "type %c (%" PRId64 "..%" PRIu64 ")",
		    q, code, l->min, l->max);
}

static int parse_real(char code, const char *text, void *out, char *err,
		      size_t errcap)
{
	char q[200];
	char *end = NULL;
	bool is_float = code == 'f';
	float f = 0;
	double d = 0;
	int e;

	shval__quote(q, sizeof q, text, strlen(text));
	errno = 0;
	/* strtod would skip leading white space and accept "": refuse both */
	if (text[0] == '\0' || text[0] == ' ' ||
	    (text[0] >= '\t' && text[0] <= '\r'))
		end = (char *)text;
	else if (is_float)
		d = f = parse_float_c(text, &end);
	else
		d = parse_double_c(text, &end);
	e = errno;
	if (end == text || *end != '\0')
		return fail(err, errcap, SHVAL_EPARSE,
			    "\"%s\" is not a number (type %c)", q, code);
	/* ERANGE with an infinite result is overflow ("inf" itself does not
	 * set ERANGE); with a tiny one it is underflow, which we accept as C
	 * and Python do. */
	if (e == ERANGE && isinf(d))
		return fail(err, errcap, SHVAL_ERANGE,
			    "\"%s\" is out of range for type %c (magnitude up "
			    "to %s)",
			    q, code,
			    is_float ? "3.4028235e+38"
				     : "1.7976931348623157e+308");
	if (is_float)
		memcpy(out, &f, sizeof f);
	else
		memcpy(out, &d, sizeof d);
	return 0;
}

int shval__text_parse_elem(char code, const char *text, void *out, char *err,
			   size_t errcap)
{
	char q[200];
	size_t n;

	if (err && errcap > 0)
		err[0] = '\0';
	if (!text)
		return fail(err, errcap, SHVAL_EPARSE, "missing value");
	n = strlen(text);
	switch (code) {
	case 'f':
	case 'd':
		return parse_real(code, text, out, err, errcap);
	case '?': {
		uint8_t v;
		if (!strcmp(text, "true") || !strcmp(text, "True") ||
		    !strcmp(text, "1"))
			v = 1;
		else if (!strcmp(text, "false") || !strcmp(text, "False") ||
			 !strcmp(text, "0"))
			v = 0;
		else {
			shval__quote(q, sizeof q, text, n);
			return fail(err, errcap, SHVAL_EPARSE,
				    "\"%s\" is not "
				    "a boolean (true, false, 1 or 0)",
				    q);
		}
		memcpy(out, &v, 1);
		return 0;
	}
	case 'c':
		if (n != 1) {
			shval__quote(q, sizeof q, text, n);
			return fail(err, errcap, SHVAL_EPARSE,
				    "\"%s\" is not "
				    "one byte (type c)",
				    q);
		}
		memcpy(out, text, 1);
		return 0;
	case 'u': {
		uint32_t cp;
		size_t k =
			shval__utf8_decode((const unsigned char *)text, n, &cp);
		if (k == 0 || k != n) {
			shval__quote(q, sizeof q, text, n);
			return fail(err, errcap, SHVAL_EPARSE,
				    "\"%s\" is not "
				    "one UTF-8 character (type u)",
				    q);
		}
		memcpy(out, &cp, sizeof cp);
		return 0;
	}
	default:
		if (shval__letter_size(code) == 0 ||
		    shval__letter_info(code)->cls != SHVAL__L_INT)
			return fail(err, errcap, SHVAL_EPARSE,
				    "no element "
				    "syntax for type letter '%c'",
				    code);
		return parse_int(code, text, out, err, errcap);
	}
}

static int hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

int shval__text_unquote(const char *text, unsigned char *out, size_t *len,
			char *err, size_t errcap)
{
	size_t n = strlen(text), k = 0;
	char q[200];
	if (n < 2 || text[0] != '"' || text[n - 1] != '"') {
		shval__quote(q, sizeof q, text, n);
		return fail(err, errcap, SHVAL_EPARSE,
			    "\"%s\" is not a quoted string (\"...\")", q);
	}
	for (size_t i = 1; i < n - 1; i++) {
		char c = text[i];
		if (c == '"') {
			shval__quote(q, sizeof q, text, n);
			return fail(err, errcap, SHVAL_EPARSE,
				    "\"%s\": a quote inside a quoted string "
				    "must be escaped (\\\")",
				    q);
		}
		if (c != '\\') {
			out[k++] = (unsigned char)c;
			continue;
		}
		if (i + 1 >= n - 1) {
			shval__quote(q, sizeof q, text, n);
			return fail(err, errcap, SHVAL_EPARSE,
				    "\"%s\": a backslash ends the string", q);
		}
		c = text[++i];
		int h1, h2;
		switch (c) {
		case '"':
		case '\\':
			out[k++] = (unsigned char)c;
			break;
		case 'n':
			out[k++] = '\n';
			break;
		case 't':
			out[k++] = '\t';
			break;
		case 'r':
			out[k++] = '\r';
			break;
		case '0':
			out[k++] = 0;
			break;
		case 'x':
			if (i + 2 < n - 1 && (h1 = hexval(text[i + 1])) >= 0 &&
			    (h2 = hexval(text[i + 2])) >= 0) {
				out[k++] = (unsigned char)(h1 * 16 + h2);
				i += 2;
				break;
			}
			/* fall through */
		default:
			shval__quote(q, sizeof q, text, n);
			return fail(err, errcap, SHVAL_EPARSE,
				    "\"%s\": unknown escape at byte %zu "
				    "(known: \\\" \\\\ \\n \\t \\r \\0 "
				    "\\xHH)",
				    q, i);
		}
	}
	*len = k;
	return 0;
}

/* Set a string field to n bytes, zeroing the rest of the capacity. */
static int set_string_bytes(const shval__field *f, unsigned char *base,
			    const void *bytes, size_t n, char *err,
			    size_t errcap)
{
	uint32_t len;
	if (n > f->count)
		return fail(err, errcap, SHVAL_ETOOBIG,
			    "string of %zu bytes "
			    "exceeds capacity %" PRIu32,
			    n, f->count);
	len = (uint32_t)n;
	memcpy(base + f->offset, &len, sizeof len);
	memcpy(base + f->offset + 4, bytes, n);
	memset(base + f->offset + 4 + n, 0, f->count - n);
	return 0;
}

/* A struct's string field: the quoted form plain text prints ("..." with
 * C escapes) when the text starts with a quote, else the raw bytes. */
static int set_string_field(const shval__field *f, unsigned char *base,
			    const char *text, char *err, size_t errcap)
{
	if (text[0] != '"')
		return set_string_bytes(f, base, text, strlen(text), err,
					errcap);
	size_t n = strlen(text), len;
	unsigned char small[256], *tmp = small;
	if (n > sizeof small && !(tmp = malloc(n)))
		return fail(err, errcap, -ENOMEM, "out of memory");
	int rc = shval__text_unquote(text, tmp, &len, err, errcap);
	if (rc == 0)
		rc = set_string_bytes(f, base, tmp, len, err, errcap);
	if (tmp != small)
		free(tmp);
	return rc;
}

/* An array takes exactly its count of elements: n of them were given as
 * what (" arguments", " comma-separated elements"). */
static int check_count(const shval__field *f, size_t n, const char *what,
		       char *err, size_t errcap)
{
	if (n == f->count)
		return 0;
	return fail(err, errcap, SHVAL_EINDEX,
		    "array of %" PRIu32 " takes %" PRIu32 "%s, got %zu",
		    f->count, f->count, what, n);
}

/* Element k of array field f from text; the error names the element. */
static int set_elem(const shval__field *f, unsigned char *base, uint32_t k,
		    const char *text, char *err, size_t errcap)
{
	int rc = shval__text_parse_elem(
		f->code, text, base + f->offset + (size_t)k * f->elem_size, err,
		errcap);
	if (rc < 0)
		err_prefix(err, errcap, "element %" PRIu32, k);
	return rc;
}

/* A struct's array field from "a,b,c": exactly count elements. */
static int set_array_csv(const shval__field *f, unsigned char *base,
			 const char *text, char *err, size_t errcap)
{
	size_t n = 1;
	const char *s = text;
	char small[256];

	for (const char *c = text; *c; c++)
		n += *c == ',';
	int rc = check_count(f, n, " comma-separated elements", err, errcap);
	if (rc)
		return rc;
	for (uint32_t k = 0; k < f->count; k++) {
		const char *e = strchr(s, ',');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		char *tmp = small;
		if (len >= sizeof small) {
			tmp = malloc(len + 1);
			if (!tmp)
				return fail(err, errcap, -ENOMEM,
					    "out of memory");
		}
		memcpy(tmp, s, len);
		tmp[len] = '\0';
		rc = set_elem(f, base, k, tmp, err, errcap);
		if (tmp != small)
			free(tmp);
		if (rc < 0)
			return rc;
		s += len + 1;
	}
	return 0;
}

/* Fields are at most 512 (type.c: canonical form <= 1023 characters and
 * each field takes >= 2 of them with its separator). */
#define MAX_FIELDS 512

int shval__text_parse(const shval__type *t, void *data, int argc,
		      const char *const *argv, char *err, size_t errcap)
{
	unsigned char *base = data;
	const shval__field *f0 = &t->fields[0];
	int rc;

	if (err && errcap > 0)
		err[0] = '\0';
	if (argc < 0 || (argc > 0 && !argv))
		return fail(err, errcap, SHVAL_EPARSE, "no arguments");
	for (int a = 0; a < argc; a++)
		if (!argv[a])
			return fail(err, errcap, SHVAL_EPARSE,
				    "argument %d "
				    "is NULL",
				    a + 1);

	switch (t->kind) {
	case SHVAL_KIND_SCALAR:
	case SHVAL_KIND_STRING:
		if (argc != 1)
			return fail(err, errcap, SHVAL_EPARSE,
				    "type %s takes "
				    "1 argument, got %d",
				    t->canon, argc);
		if (t->kind == SHVAL_KIND_STRING)
			return set_string_bytes(f0, base, argv[0],
						strlen(argv[0]), err, errcap);
		return shval__text_parse_elem(f0->code, argv[0],
					      base + f0->offset, err, errcap);
	case SHVAL_KIND_ARRAY:
		rc = check_count(f0, (size_t)argc, " arguments", err, errcap);
		for (uint32_t k = 0; rc == 0 && k < f0->count; k++)
			rc = set_elem(f0, base, k, argv[k], err, errcap);
		return rc;
	default:
		break;
	}

	/* A struct: field=value arguments, each field at most once. */
	unsigned char seen[MAX_FIELDS / 8] = { 0 };
	if (argc == 0)
		return fail(err, errcap, SHVAL_EPARSE,
			    "type \"%s\" takes "
			    "field=value arguments, got none",
			    t->canon);
	for (int a = 0; a < argc; a++) {
		const char *arg = argv[a], *eq = strchr(arg, '=');
		char name[SHVAL__FIELD_NAME_MAX + 2], q[200];
		size_t nlen;
		int idx;
		const shval__field *f;

		if (!eq) {
			shval__quote(q, sizeof q, arg, strlen(arg));
			return fail(err, errcap, SHVAL_EPARSE,
				    "argument %d "
				    "\"%s\": expected field=value",
				    a + 1, q);
		}
		nlen = (size_t)(eq - arg);
		shval__quote(q, sizeof q, arg, nlen);
		/* longer than any field name: cannot match, say so below */
		idx = -1;
		if (nlen < sizeof name) {
			memcpy(name, arg, nlen);
			name[nlen] = '\0';
			idx = shval__type_field(t, name);
		}
		if (idx < 0)
			return fail(err, errcap, SHVAL_ENOFIELD,
				    "argument %d: "
				    "no field \"%s\" in type \"%s\"",
				    a + 1, q, t->canon);
		if (idx < MAX_FIELDS) {
			if (seen[idx / 8] & (1u << (idx % 8)))
				return fail(err, errcap, SHVAL_EPARSE,
					    "argument %d: field \"%s\" given "
					    "twice",
					    a + 1, q);
			seen[idx / 8] |= (unsigned char)(1u << (idx % 8));
		}
		f = &t->fields[idx];
		switch (f->kind) {
		case SHVAL_KIND_STRING:
			rc = set_string_field(f, base, eq + 1, err, errcap);
			break;
		case SHVAL_KIND_ARRAY:
			rc = set_array_csv(f, base, eq + 1, err, errcap);
			break;
		default:
			rc = shval__text_parse_elem(
				f->code, eq + 1, base + f->offset, err, errcap);
			break;
		}
		if (rc < 0) {
			err_prefix(err, errcap, "field \"%s\"", q);
			return rc;
		}
	}
	return 0;
}
