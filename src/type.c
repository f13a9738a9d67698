/*
 * src/type.c — type strings: parse, canonical form, C layout.
 *
 * The grammar, canonical form and layout rules are written down in
 * src/type.h; this file follows them.  The parser is fed untrusted text
 * (type strings come from users, the CLI and other processes' segments) and
 * is fuzzed, so:
 *   - it only ever walks forward over the input and stops at its NUL;
 *   - every count is bounded (<= UINT32_MAX) before it is multiplied, and
 *     every size stays <= SHVAL__SIZE_LIMIT (256 GiB), so no arithmetic can
 *     overflow in a 64-bit size_t;
 *   - the canonical form is capped at SHVAL_TYPE_MAX characters, which also
 *     caps the number of fields (each takes >= 2 characters with its
 *     separator, so at most 512 fields);
 *   - identifier runs are measured once (see run_end below), so the whole
 *     parse is linear in the input length, whatever the input.
 */
#include "type.h"

#include <shval.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest value, field or array, in bytes: 256 GiB, the largest segment
 * (SHVAL__MAX_SIZE_LIMIT in format.h), so that the only ceiling on a value
 * is the segment it is created in (a segment sized to fit it, as the
 * Python binding does, holds one as large as the machine can back).
 * Counts (array lengths, string capacities) are stored in 32 bits, so they
 * are limited to UINT32_MAX.  Keeping every count * size below this makes
 * all the layout arithmetic overflow-free in a 64-bit size_t. */
#define SHVAL__SIZE_LIMIT ((size_t)1 << 38)
#define SHVAL__COUNT_LIMIT ((uint64_t)UINT32_MAX)
_Static_assert(sizeof(size_t) >= 8, "the size limit needs a 64-bit size_t");

/* The letter table, indexed by the letter (ASCII). */
static const shval__letter letters[128] = {
#define SHVAL__LETTER_ROW(c, sz, cl, lo, hi) \
	[c] = { c, sz, SHVAL__L_##cl, (lo) < 0, lo, hi },
	SHVAL__LETTERS(SHVAL__LETTER_ROW)
#undef SHVAL__LETTER_ROW
};

const shval__letter *shval__letter_info(char code)
{
	unsigned char c = (unsigned char)code;
	if (c >= 128 || letters[c].code == 0)
		return NULL;
	return &letters[c];
}

size_t shval__letter_size(char code)
{
	const shval__letter *l = shval__letter_info(code);
	return l ? l->size : 0; /* unknown letters, and 's' */
}

uint64_t shval__int_extend(const shval__letter *l, uint64_t bits)
{
	switch (l->size) {
	case 1:
		return l->is_signed ? (uint64_t)(int8_t)bits : (uint8_t)bits;
	case 2:
		return l->is_signed ? (uint64_t)(int16_t)bits : (uint16_t)bits;
	case 4:
		return l->is_signed ? (uint64_t)(int32_t)bits : (uint32_t)bits;
	default:
		return bits;
	}
}

uint64_t shval__int_load(const shval__letter *l, const void *p)
{
	switch (l->size) {
	case 1: {
		uint8_t y;
		memcpy(&y, p, 1);
		return shval__int_extend(l, y);
	}
	case 2: {
		uint16_t y;
		memcpy(&y, p, 2);
		return shval__int_extend(l, y);
	}
	case 4: {
		uint32_t y;
		memcpy(&y, p, 4);
		return shval__int_extend(l, y);
	}
	default: {
		uint64_t y;
		memcpy(&y, p, 8);
		return y;
	}
	}
}

void shval__int_store(const shval__letter *l, void *p, uint64_t bits)
{
	switch (l->size) {
	case 1: {
		uint8_t y = (uint8_t)bits;
		memcpy(p, &y, 1);
		break;
	}
	case 2: {
		uint16_t y = (uint16_t)bits;
		memcpy(p, &y, 2);
		break;
	}
	case 4: {
		uint32_t y = (uint32_t)bits;
		memcpy(p, &y, 4);
		break;
	}
	default:
		memcpy(p, &bits, 8);
		break;
	}
}

/* ASCII classes by hand: <ctype.h> depends on the locale and is undefined
 * for negative chars. */
static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
	       c == '\f';
}
static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}
static bool is_name_start(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
static bool is_name_char(char c)
{
	return is_name_start(c) || is_digit(c);
}

static size_t round_up(size_t x, size_t align)
{
	return (x + align - 1) / align * align; /* x <= 2 GiB: no overflow */
}

/* Write s (n bytes) into dst (cap bytes, cap >= 8) for an error message:
 * printable ASCII as is, '"' and '\\' and everything else escaped, cut at
 * about 48 source bytes with "..." so that the message stays one short
 * line whatever the input. */
void shval__quote(char *dst, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[5];
		size_t k = 0;
		if (i >= 48) {
			tmp[k++] = '.';
			tmp[k++] = '.';
			tmp[k++] = '.';
			i = n; /* stop after this */
		} else if (c == '"' || c == '\\') {
			tmp[k++] = '\\';
			tmp[k++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			tmp[k++] = (char)c;
		} else {
			tmp[k++] = '\\';
			tmp[k++] = 'x';
			tmp[k++] = hex[c >> 4];
			tmp[k++] = hex[c & 15];
		}
		if (o + k >= cap)
			break;
		memcpy(dst + o, tmp, k);
		o += k;
	}
	dst[o] = '\0';
}

/* Parser state. */
struct tparser {
	const char *s;
	char *err;
	size_t errcap;
	shval__field *fields;
	size_t n, cap;
	char canon[SHVAL_TYPE_MAX + 1];
	size_t clen;
};

/* Record "bad type "<text>": position N: <why>" and return SHVAL_EBADTYPE.
 * Positions are 0-based byte offsets into the type string. */
static int tfail(struct tparser *p, size_t pos, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int tfail(struct tparser *p, size_t pos, const char *fmt, ...)
{
	if (p->err && p->errcap > 0) {
		char q[200], why[200];
		va_list ap;
		shval__quote(q, sizeof q, p->s, strlen(p->s));
		va_start(ap, fmt);
		vsnprintf(why, sizeof why, fmt, ap);
		va_end(ap);
		snprintf(p->err, p->errcap, "bad type \"%s\": position %zu: %s",
			 q, pos, why);
	}
	return SHVAL_EBADTYPE;
}

/* Append n bytes to the canonical form; 0 or -1 if it would get too long. */
static int canon_add(struct tparser *p, const char *s, size_t n)
{
	if (n > SHVAL_TYPE_MAX - p->clen)
		return -1;
	memcpy(p->canon + p->clen, s, n);
	p->clen += n;
	p->canon[p->clen] = '\0';
	return 0;
}

static int add_field(struct tparser *p, const shval__field *f)
{
	if (p->n == p->cap) {
		/* Bounded: the canonical-length check caps fields at 512. */
		size_t ncap = p->cap ? p->cap * 2 : 8;
		shval__field *nf = realloc(p->fields, ncap * sizeof *nf);
		if (!nf)
			return -ENOMEM;
		p->fields = nf;
		p->cap = ncap;
	}
	p->fields[p->n++] = *f;
	return 0;
}

/* The field text s[start..end) quoted, for "missing letter after ..." */
static const char *field_so_far(struct tparser *p, size_t start, size_t end,
				char *buf, size_t cap)
{
	shval__quote(buf, cap, p->s + start, end - start);
	return buf;
}

/* Parse every field of p->s into p->fields and p->canon.  On error returns
 * the code (message in p->err); the caller frees p->fields. */
static int parse_fields(struct tparser *p, size_t *total_out, size_t *align_out,
			int *named_out)
{
	const char *s = p->s;
	size_t i = 0;
	size_t run_end = 0; /* end of the identifier run last measured */
	size_t total = 0, max_align = 1;
	int named = -1; /* unknown until the first field */
	char q[160];

	for (;;) {
		while (is_ws(s[i]))
			i++;
		if (!s[i])
			break;
		size_t start = i;
		shval__field f;
		memset(&f, 0, sizeof f);
		uint64_t count = 0;
		bool has_count = false;

		/*
		 * A name is an identifier run followed by ':'.  Letters may be
		 * concatenated ("qd"), so an identifier run NOT followed by ':'
		 * is letters.  Measure each run once: if i is still inside
		 * the run measured before, it ends at the same place (every
		 * byte in between is an identifier byte), which keeps inputs
		 * like "qqqq...q" linear.
		 */
		if (is_name_char(s[i])) {
			if (i >= run_end) {
				run_end = i;
				while (is_name_char(s[run_end]))
					run_end++;
			}
			if (s[run_end] == ':') {
				size_t len = run_end - i;
				if (!is_name_start(s[i]))
					return tfail(
						p, i,
						"field name must "
						"start with a letter or '_'");
				if (len > SHVAL__FIELD_NAME_MAX)
					return tfail(p, i,
						     "field name longer "
						     "than %d characters",
						     SHVAL__FIELD_NAME_MAX);
				memcpy(f.name, s + i, len);
				f.name[len] = '\0';
				i = run_end + 1;
			}
		} else if (s[i] == ':') {
			return tfail(p, i, "missing field name before ':'");
		}

		/* count := [1-9][0-9]* ; stop as soon as it exceeds the
		 * size limit (the digits after that do not matter). */
		if (is_digit(s[i])) {
			size_t cstart = i;
			if (s[i] == '0')
				return tfail(
					p, i,
					is_digit(s[i + 1])
						? "count with a leading zero"
						: "count 0");
			while (is_digit(s[i])) {
				count = count * 10 + (uint64_t)(s[i] - '0');
				if (count > SHVAL__COUNT_LIMIT)
					return tfail(p, cstart,
						     "count too large (at most "
						     "%" PRIu64 ")",
						     SHVAL__COUNT_LIMIT);
				i++;
			}
			has_count = true;
		}

		char c = s[i];
		if (c == '\0' || is_ws(c)) {
			if (i == start)
				return tfail(p, i, "missing letter");
			return tfail(p, i, "missing letter after \"%s\"",
				     field_so_far(p, start, i, q, sizeof q));
		}
		if (c == '@' || c == '=' || c == '<' || c == '>' || c == '!')
			return tfail(p, i,
				     "byte-order prefix '%c' not "
				     "supported: shval uses native layout",
				     c);
		if (c == ':')
			return tfail(p, i,
				     "unexpected ':' (a field is "
				     "name:COUNTletter)");

		f.code = c;
		if (c == 's') {
			/* "s" alone is "1s"; a string is {uint32 len; char[N]} */
			f.kind = SHVAL_KIND_STRING;
			f.count = has_count ? (uint32_t)count : 1;
			f.elem_size = 1;
			f.align = 4;
			/* count <= UINT32_MAX: 4 + count rounded up stays far
			 * below SHVAL__SIZE_LIMIT */
			f.size = round_up(4 + (size_t)f.count, 4);
			has_count =
				true; /* the canonical form always shows it */
		} else {
			size_t es = shval__letter_size(c);
			if (es == 0) {
				unsigned char uc = (unsigned char)c;
				if (uc >= 0x20 && uc < 0x7f)
					return tfail(p, i,
						     "unknown letter "
						     "'%c'",
						     c);
				return tfail(p, i, "unknown letter '\\x%02x'",
					     uc);
			}
			f.kind = has_count ? SHVAL_KIND_ARRAY
					   : SHVAL_KIND_SCALAR;
			f.count = has_count ? (uint32_t)count : 1;
			f.elem_size = es;
			f.align = es;
			if (f.count > SHVAL__SIZE_LIMIT / es)
				return tfail(p, start,
					     "array of %u '%c' too "
					     "large (values are limited to %zu "
					     "bytes)",
					     f.count, c, SHVAL__SIZE_LIMIT);
			f.size = (size_t)f.count * es;
		}
		i++;

		/* Checked once the field is known to be well-formed, so that
		 * "x:d,y:d" reports the ',' rather than the mix. */
		if (named < 0)
			named = f.name[0] != '\0';
		else if (named != (f.name[0] != '\0'))
			return tfail(p, start,
				     "fields must be all named or "
				     "all unnamed");
		if (f.name[0]) {
			/* O(n^2) but n <= 512 (canonical length cap). */
			for (size_t k = 0; k < p->n; k++)
				if (strcmp(p->fields[k].name, f.name) == 0)
					return tfail(p, start,
						     "duplicate "
						     "field name \"%s\"",
						     f.name);
		}

		/* Layout: the next multiple of the field's alignment. */
		f.offset = round_up(total, f.align);
		if (f.offset > SHVAL__SIZE_LIMIT - f.size)
			return tfail(p, start,
				     "type too large (values are "
				     "limited to %zu bytes)",
				     SHVAL__SIZE_LIMIT);
		total = f.offset + f.size;
		if (f.align > max_align)
			max_align = f.align;

		/* Canonical form: [" "] [name ":"] [count] letter. */
		{
			char num[16];
			int nl = has_count ? snprintf(num, sizeof num, "%u",
						      f.count)
					   : 0;
			if ((p->n > 0 && canon_add(p, " ", 1) < 0) ||
			    (f.name[0] &&
			     (canon_add(p, f.name, strlen(f.name)) < 0 ||
			      canon_add(p, ":", 1) < 0)) ||
			    (nl > 0 && canon_add(p, num, (size_t)nl) < 0) ||
			    canon_add(p, &c, 1) < 0)
				return tfail(p, start,
					     "canonical form too "
					     "long (limit %d characters)",
					     SHVAL_TYPE_MAX);
		}

		if (add_field(p, &f) < 0) {
			if (p->err && p->errcap > 0)
				snprintf(p->err, p->errcap, "out of memory");
			return -ENOMEM;
		}
	}

	if (p->n == 0)
		return tfail(
			p, i,
			i == 0 ? "empty type"
			       : "missing letter (type is only white space)");
	*total_out = total;
	*align_out = max_align;
	*named_out = named;
	return 0;
}

/* Returns 0, SHVAL_EBADTYPE, or -ENOMEM (with "out of memory" in err). */
int shval__type_parse(const char *text, shval__type **out, char *err,
		      size_t errcap)
{
	struct tparser p = { .s = text ? text : "",
			     .err = err,
			     .errcap = errcap };
	size_t total = 0, max_align = 1;
	int named = 0, rc;
	shval__type *t;
	char *canon;

	if (err && errcap > 0)
		err[0] = '\0';
	if (!out)
		return SHVAL_EMISUSE;
	*out = NULL;
	if (!text)
		return tfail(&p, 0, "type string is NULL");

	rc = parse_fields(&p, &total, &max_align, &named);
	if (rc < 0) {
		free(p.fields);
		return rc;
	}
	t = calloc(1, sizeof *t);
	canon = strdup(p.canon);
	if (!t || !canon) {
		free(t);
		free(canon);
		free(p.fields);
		if (err && errcap > 0)
			snprintf(err, errcap, "out of memory");
		return -ENOMEM;
	}
	t->kind = (p.n == 1 && !named) ? p.fields[0].kind : SHVAL_KIND_STRUCT;
	t->align = max_align;
	/* total <= 256 GiB, a multiple of every alignment: no overflow */
	t->size = round_up(total, max_align);
	t->nfields = p.n;
	t->fields = p.fields;
	t->canon = canon;
	*out = t;
	return 0;
}

void shval__type_free(shval__type *t)
{
	if (!t)
		return;
	free(t->fields);
	free(t->canon);
	free(t);
}

int shval__type_field(const shval__type *t, const char *name)
{
	if (!t || !name || !name[0])
		return -1;
	if (is_digit(name[0])) {
		/* A decimal index: "0" or [1-9][0-9]*, nothing else.  Stop
		 * early on long digit strings: nfields <= 512. */
		size_t idx = 0, k = 0;
		if (name[0] == '0' && name[1] != '\0')
			return -1;
		for (; name[k]; k++) {
			if (!is_digit(name[k]) || k >= 6)
				return -1;
			idx = idx * 10 + (size_t)(name[k] - '0');
		}
		return idx < t->nfields ? (int)idx : -1;
	}
	for (size_t k = 0; k < t->nfields; k++)
		if (t->fields[k].name[0] &&
		    strcmp(t->fields[k].name, name) == 0)
			return (int)k;
	return -1;
}

/* The one validator of a value's bytes (every writer and verify use it):
 * bytes [off, off+len) of a value of type t, about to hold src (src points
 * at byte off).  Bools must hold 0 or 1; a string field written whole must
 * have a length within its capacity. */
int shval__bytes_check(const shval__type *t, size_t off, size_t len,
		       const void *src, char *err, size_t errcap)
{
	const unsigned char *p = src;
	if (err && errcap > 0)
		err[0] = '\0';
	for (size_t k = 0; k < t->nfields; k++) {
		const shval__field *f = &t->fields[k];
		size_t fend = f->offset + f->size;
		if (fend <= off || f->offset >= off + len)
			continue; /* not written */
		if (f->code == '?') {
			/* a bool is one byte holding 0 or 1 */
			size_t a = f->offset > off ? f->offset : off;
			size_t b = fend < off + len ? fend : off + len;
			for (size_t i = a; i < b; i++) {
				unsigned char x = p[i - off];
				if (x <= 1)
					continue;
				if (err && errcap > 0)
					snprintf(err, errcap,
						 "bool %s%s%s element "
						 "%zu holds %u, not 0 or 1",
						 f->name[0] ? "field \"" : "",
						 f->name,
						 f->name[0] ? "\"" : "",
						 i - f->offset, x);
				return SHVAL_ERANGE;
			}
			continue;
		}
		if (f->kind != SHVAL_KIND_STRING || f->offset < off ||
		    fend > off + len)
			continue;
		uint32_t slen;
		memcpy(&slen, p + (f->offset - off),
		       sizeof slen); /* may be unaligned */
		if (slen <= f->count)
			continue;
		if (err && errcap > 0) {
			if (t->kind != SHVAL_KIND_STRUCT)
				snprintf(err, errcap,
					 "string length %" PRIu32
					 " exceeds capacity %" PRIu32,
					 slen, f->count);
			else if (f->name[0])
				snprintf(err, errcap,
					 "field \"%s\": string "
					 "length %" PRIu32
					 " exceeds capacity %" PRIu32,
					 f->name, slen, f->count);
			else
				snprintf(err, errcap,
					 "field %zu: string length "
					 "%" PRIu32
					 " exceeds capacity %" PRIu32,
					 k, slen, f->count);
		}
		return SHVAL_ETOOBIG;
	}
	return 0;
}

int shval__type_check(const shval__type *t, const void *data, char *err,
		      size_t errcap)
{
	return shval__bytes_check(t, 0, t->size, data, err, errcap);
}

int shval__codepoints_check(const shval__type *t, const void *data, char *err,
			    size_t errcap)
{
	const unsigned char *p = data;
	for (size_t k = 0; k < t->nfields; k++) {
		const shval__field *f = &t->fields[k];
		if (f->code != 'u')
			continue;
		for (uint32_t i = 0; i < f->count; i++) {
			uint32_t cp;
			memcpy(&cp, p + f->offset + (size_t)i * f->elem_size,
			       sizeof cp);
			if (cp <= 0x10ffff)
				continue;
			if (err && errcap > 0)
				snprintf(err, errcap,
					 "%s%s%scode point element %" PRIu32
					 " is 0x%" PRIX32 ", above U+10FFFF",
					 f->name[0] ? "field \"" : "", f->name,
					 f->name[0] ? "\": " : "", i, cp);
			return SHVAL_ERANGE;
		}
	}
	return 0;
}
