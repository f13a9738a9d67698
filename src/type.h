/*
 * src/type.h — type strings: parse, canonical form, layout, text <-> value.
 * Internal (shval__ prefix); implemented in src/type.c and src/text.c.
 *
 * Grammar (input):
 *   type    := ws* field (sep field)* ws*
 *   sep     := ws+ | ""          (letters may be concatenated: "qd" == "q d")
 *   field   := [name ":"] [count] letter
 *   name    := [A-Za-z_][A-Za-z0-9_]{0,62}
 *   count   := [1-9][0-9]*       (decimal, no leading zeros, >= 1)
 *   letter  := c b B h H i I l L q Q n N ? f d u s
 *   "Ns" is a string of capacity N (count required for 's'; "s" alone = "1s").
 *   A count before any other letter makes an array of that many elements
 *   ("1d" is an array of one, distinct from the scalar "d").
 * Rules: either every field is named or none is; names are unique; byte
 * order / alignment prefixes (@ = < > !) are rejected; total size and every
 * count are limited (size <= 256 GiB, count <= UINT32_MAX, canonical text
 * <= SHVAL_TYPE_MAX).
 *
 * Canonical form: fields separated by exactly one space, "name:" prefix when
 * named, count in decimal when present ("16s", "100d").  Parsing a canonical
 * string gives the same canonical string.
 *
 * Kinds: a type with one unnamed field takes that field's kind (SCALAR,
 * ARRAY, STRING); a type with several fields, or any named field, is STRUCT.
 *
 * Layout (C natural alignment, LP64):
 *   letter sizes: c b B ? = 1; h H = 2; i I f u = 4; l L q Q n N d = 8;
 *   alignment = size.  A string "Ns" is { uint32_t len; char bytes[N]; }:
 *   size 4+N rounded up to 4, alignment 4.  An array "Kx" is K elements of x,
 *   alignment of x.  A struct places each field at the next multiple of its
 *   alignment; total size rounded up to the largest alignment.
 */
#ifndef SHVAL_TYPE_H
#define SHVAL_TYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHVAL__FIELD_NAME_MAX 63

/* The one buffer type for a message about a type or a value's bytes or
 * text, filled by the functions below (err, errcap = e.msg, sizeof e.msg)
 * where they cannot reach the segment handle, then passed on with
 * shval__failf(seg, code, "%s", e.msg). */
typedef struct shval__err {
	char msg[512];
} shval__err;

typedef struct shval__field {
	char name[SHVAL__FIELD_NAME_MAX + 1]; /* "" when unnamed */
	char code;        /* the letter: c b B h H i I l L q Q n N ? f d u s */
	uint8_t kind;     /* SHVAL_KIND_SCALAR, _ARRAY or _STRING */
	uint32_t count;   /* array length or string capacity; 1 for scalars */
	size_t elem_size; /* size of one element (letter size; 1 for 's') */
	size_t offset;    /* byte offset of the field in the value */
	size_t size;      /* bytes taken by the field */
	size_t align;
} shval__field;

typedef struct shval__type {
	uint8_t kind; /* SHVAL_KIND_SCALAR/_ARRAY/_STRING/_STRUCT */
	size_t size;  /* bytes of the value, C layout */
	size_t align;
	size_t nfields; /* >= 1 */
	shval__field *fields;
	char *canon; /* canonical type string, NUL-terminated */
} shval__type;

/* Parse a type string.  On failure returns SHVAL_EBADTYPE and writes one line
 * to err (if errcap > 0) saying where and why, e.g.
 *   "bad type \"x:d y:\": position 6: missing letter after \"y:\"".
 * Never reads past the NUL of text; never crashes on any input. */
int shval__type_parse(const char *text, shval__type **out, char *err,
		      size_t errcap);
void shval__type_free(shval__type *t);

/* Write s (n bytes) into dst (cap >= 8 bytes) for an error message:
 * printable ASCII as is, the rest escaped, cut at about 48 bytes with
 * "...", so that a message about untrusted text stays one short line. */
void shval__quote(char *dst, size_t cap, const char *s, size_t n);

/*
 * The type letters: the one table of each letter's element size, class and
 * range (type.c builds it from this list; the parser, the typed scalars,
 * the text forms, the CLI and the Python module all read it).
 *   X(letter, size, class, min, max)
 * class: INT an integer (signed when min < 0), BOOL 0/1 in one byte, CHAR
 * a byte ('c') or a code point ('u') stored as an unsigned integer, FLOAT,
 * STRING ('s': no fixed element size).  min/max: the range a value of the
 * letter takes as an integer (0, 0 for FLOAT and STRING).
 */
#define SHVAL__LETTERS(X)                    \
	X('c', 1, CHAR, 0, UINT8_MAX)        \
	X('b', 1, INT, INT8_MIN, INT8_MAX)   \
	X('B', 1, INT, 0, UINT8_MAX)         \
	X('?', 1, BOOL, 0, 1)                \
	X('h', 2, INT, INT16_MIN, INT16_MAX) \
	X('H', 2, INT, 0, UINT16_MAX)        \
	X('i', 4, INT, INT32_MIN, INT32_MAX) \
	X('I', 4, INT, 0, UINT32_MAX)        \
	X('l', 8, INT, INT64_MIN, INT64_MAX) \
	X('L', 8, INT, 0, UINT64_MAX)        \
	X('q', 8, INT, INT64_MIN, INT64_MAX) \
	X('Q', 8, INT, 0, UINT64_MAX)        \
	X('n', 8, INT, INT64_MIN, INT64_MAX) \
	X('N', 8, INT, 0, UINT64_MAX)        \
	X('f', 4, FLOAT, 0, 0)               \
	X('d', 8, FLOAT, 0, 0)               \
	X('u', 4, CHAR, 0, 0x10FFFF)         \
	X('s', 0, STRING, 0, 0)

enum shval__lclass {
	SHVAL__L_INT = 1,
	SHVAL__L_BOOL,
	SHVAL__L_CHAR,
	SHVAL__L_FLOAT,
	SHVAL__L_STRING
};

typedef struct shval__letter {
	char code;
	uint8_t size;   /* bytes of one element; 0 for 's' */
	uint8_t cls;    /* enum shval__lclass */
	bool is_signed; /* min < 0 */
	int64_t min;    /* integer range (0..0 for f, d, s) */
	uint64_t max;
} shval__letter;

/* The table entry of a letter, NULL for anything that is not one. */
const shval__letter *shval__letter_info(char code);

/* Size of one element of a letter (0 for unknown letters and 's'). */
size_t shval__letter_size(char code);

/* The integer element of letter l at p (l->size bytes, any alignment),
 * sign- or zero-extended to 64 bits as the letter says. */
uint64_t shval__int_load(const shval__letter *l, const void *p);
/* The low l->size bytes of bits, extended as shval__int_load does. */
uint64_t shval__int_extend(const shval__letter *l, uint64_t bits);
/* Store the low l->size bytes of bits at p (any alignment). */
void shval__int_store(const shval__letter *l, void *p, uint64_t bits);

/* Find a field by name, or by decimal index ("0", "1", ...) for unnamed or
 * named fields.  Returns the index or -1. */
int shval__type_field(const shval__type *t, const char *name);

/* Check the string lengths stored in data (every STRING field's len <=
 * capacity).  Returns 0 or SHVAL_ETOOBIG (naming the field in err). */
/* Validate bytes [off, off+len) about to be written (src = their new
 * content): bools 0/1 (SHVAL_ERANGE), whole string fields within
 * capacity (SHVAL_ETOOBIG).  The one validator of every writer. */
int shval__bytes_check(const shval__type *t, size_t off, size_t len,
		       const void *src, char *err, size_t errcap);
int shval__type_check(const shval__type *t, const void *data, char *err,
		      size_t errcap);
/* Code points ('u' elements) of a stored value within 0..0x10FFFF, for
 * shval_seg_verify (writes may store any bits: the text form prints those
 * as \u{HEX}).  0 or SHVAL_ERANGE naming the field and element in err. */
int shval__codepoints_check(const shval__type *t, const void *data, char *err,
			    size_t errcap);

/* ---- text (src/text.c) ------------------------------------------------ */

/* A growable output buffer. */
typedef struct shval__buf {
	char *p;
	size_t len, cap;
	bool oom; /* set when an allocation failed */
} shval__buf;
void shval__buf_init(shval__buf *b);
void shval__buf_free(shval__buf *b);
void shval__buf_add(shval__buf *b, const void *s, size_t n);
void shval__buf_printf(shval__buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Append the body (no quotes) of a string of n bytes to b: JSON
 * (SHVAL_TEXT_JSON's escapes) or plain text (the quoted form of a struct's
 * string field, C escapes, which shval__text_unquote reads back).
 * Well-formed UTF-8 stays as it is; other controls, DEL and each invalid
 * UTF-8 byte are \u00XX in JSON and \xHH in plain text (always two
 * digits). */
void shval__text_escape(shval__buf *b, const void *bytes, size_t n, bool json);

/* Append the text form of a whole value (data = t->size bytes, C layout) to
 * out.  flags: SHVAL_TEXT_JSON.  Formats as documented at shval_to_text()
 * in include/shval.h.  Returns 0, or -ENOMEM. */
int shval__text_format(const shval__type *t, const void *data, unsigned flags,
		       shval__buf *out);

/* Parse text arguments into data (t->size bytes, C layout, holding the
 * current value on entry so that struct fields not mentioned keep theirs),
 * as documented at shval_from_text().  On error data may be partly written
 * (the caller works on a copy) and err says which argument and why, e.g.
 *   "\"300\" is out of range for type B (0..255)".
 * Returns 0, SHVAL_EPARSE, SHVAL_ERANGE, SHVAL_ETOOBIG, SHVAL_ENOFIELD,
 * SHVAL_EINDEX. */
int shval__text_parse(const shval__type *t, void *data, int argc,
		      const char *const *argv, char *err, size_t errcap);

/* Parse one element of letter code (not 's') from text into out
 * (letter size bytes).  Integers: decimal, optional sign, also 0x hex;
 * range-checked for the letter.  Floats: strtod forms incl. nan/inf;
 * 'f' out of float range is SHVAL_ERANGE.  '?': true/false/1/0.
 * 'c': exactly one byte.  'u': exactly one UTF-8 character. */
int shval__text_parse_elem(char code, const char *text, void *out, char *err,
			   size_t errcap);

/* The quoted form of a string (a struct's string field in plain text, see
 * text.c): text must be "..." with the escapes \" \\ \n \t \r \0 \xHH
 * (exactly two hex digits) and no other backslash or bare quote.  The
 * bytes go to out (room for strlen(text) bytes), their count to *len.
 * Returns 0 or SHVAL_EPARSE with err. */
int shval__text_unquote(const char *text, unsigned char *out, size_t *len,
			char *err, size_t errcap);

/* UTF-8 (utf8.c).  shval__utf8_decode: length (1..4) of the well-formed
 * UTF-8 sequence at s (n bytes available), or 0 if it is not one.  Strict:
 * no overlong forms, no surrogates, nothing above U+10FFFF.  *cp receives
 * the code point.  shval__utf8_encode: the UTF-8 of a Unicode scalar value
 * (one that shval__utf8_scalar accepts: not a surrogate, not above
 * U+10FFFF), 1..4 bytes. */
size_t shval__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
size_t shval__utf8_encode(uint32_t c, char out[4]);
bool shval__utf8_scalar(uint32_t c);

#endif
