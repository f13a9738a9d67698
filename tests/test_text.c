/*
 * tests/test_text.c — text forms of values (src/text.c): integers, floats,
 * bool, char, wchar, strings, arrays, structs, JSON validity, locales, the
 * output buffer.
 */
#include "test.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <shval.h>

#include "type.h"
#include "type_util.h"

/* ---- text: integers ----------------------------------------------------- */

/* Format v (as letter code, stored from a 64-bit pattern), compare, parse
 * it back and compare the bytes. */
static void int_roundtrip(char code, uint64_t bits, const char *want)
{
	char ts[2] = { code, 0 };
	shval__type *t = tp(ts);
	unsigned char data[8] = { 0 }, back[8];
	memcpy(data, &bits, t->size); /* little-endian: the low bytes */
	fmt_is(t, data, 0, want);
	fmt_is(t, data, SHVAL_TEXT_JSON, want);
	memset(back, 0xa5, sizeof back);
	ASSERT_OK(parse1(t, back, want));
	ASSERT_MEMEQ(back, data, t->size);
	shval__type_free(t);
}

TEST(text_integers)
{
	int_roundtrip('b', (uint64_t)(int8_t)-128, "-128");
	int_roundtrip('b', 127, "127");
	int_roundtrip('B', 255, "255");
	int_roundtrip('B', 0, "0");
	int_roundtrip('h', (uint64_t)(int16_t)-32768, "-32768");
	int_roundtrip('h', 32767, "32767");
	int_roundtrip('H', 65535, "65535");
	int_roundtrip('i', (uint64_t)(uint32_t)INT32_MIN, "-2147483648");
	int_roundtrip('i', INT32_MAX, "2147483647");
	int_roundtrip('I', UINT32_MAX, "4294967295");
	int_roundtrip('l', (uint64_t)INT64_MIN, "-9223372036854775808");
	int_roundtrip('l', INT64_MAX, "9223372036854775807");
	int_roundtrip('L', UINT64_MAX, "18446744073709551615");
	int_roundtrip('q', (uint64_t)INT64_MIN, "-9223372036854775808");
	int_roundtrip('q', INT64_MAX, "9223372036854775807");
	int_roundtrip('q', (uint64_t)-1, "-1");
	int_roundtrip('Q', UINT64_MAX, "18446744073709551615");
	int_roundtrip('n', (uint64_t)-42, "-42");
	int_roundtrip('N', UINT64_MAX, "18446744073709551615");

	/* other accepted spellings */
	shval__type *t = tp("q");
	int64_t v;
	ASSERT_OK(parse1(t, &v, "0x7fffffffffffffff"));
	ASSERT_EQ(v, INT64_MAX);
	ASSERT_OK(parse1(t, &v, "-0x8000000000000000"));
	ASSERT_EQ(v, INT64_MIN);
	ASSERT_OK(parse1(t, &v, "+5"));
	ASSERT_EQ(v, 5);
	ASSERT_OK(parse1(t, &v, "007"));
	ASSERT_EQ(v, 7);
	ASSERT_OK(parse1(t, &v, "0XfF"));
	ASSERT_EQ(v, 255);
	ASSERT_OK(parse1(t, &v, "-0"));
	ASSERT_EQ(v, 0);
	shval__type_free(t);

	t = tp("Q");
	uint64_t u;
	ASSERT_OK(parse1(t, &u, "0xffffffffffffffff"));
	ASSERT_UEQ(u, UINT64_MAX);
	ASSERT_OK(parse1(t, &u, "-0"));
	ASSERT_UEQ(u, 0);
	shval__type_free(t);
}

static void parse_err(const char *type, const char *arg, int code,
                      const char *want)
{
	shval__type *t = tp(type);
	unsigned char buf[64];
	int rc = parse1(t, buf, arg);
	if (rc != code)
		FAIL("type %s, \"%s\": got %d (%s), expected %s; msg \"%s\"",
		     type, arg, rc, shval_strerror(rc), shval_strerror(code),
		     errbuf);
	if (want && !strstr(errbuf, want))
		FAIL("type %s, \"%s\": message \"%s\" lacks \"%s\"", type,
		     arg, errbuf, want);
	shval__type_free(t);
}

TEST(text_range)
{
	parse_err("B", "300", SHVAL_ERANGE,
	          "\"300\" is out of range for type B (0..255)");
	parse_err("B", "256", SHVAL_ERANGE, NULL);
	parse_err("B", "-1", SHVAL_ERANGE, NULL);
	parse_err("b", "128", SHVAL_ERANGE, "(-128..127)");
	parse_err("b", "-129", SHVAL_ERANGE, NULL);
	parse_err("h", "32768", SHVAL_ERANGE, NULL);
	parse_err("H", "65536", SHVAL_ERANGE, "(0..65535)");
	parse_err("i", "2147483648", SHVAL_ERANGE, NULL);
	parse_err("i", "-2147483649", SHVAL_ERANGE, NULL);
	parse_err("I", "4294967296", SHVAL_ERANGE, NULL);
	parse_err("I", "0x100000000", SHVAL_ERANGE, NULL);
	parse_err("Q", "-1", SHVAL_ERANGE, "(0..18446744073709551615)");
	parse_err("Q", "18446744073709551616", SHVAL_ERANGE, NULL);
	parse_err("Q", "0x10000000000000000", SHVAL_ERANGE, NULL);
	parse_err("q", "9223372036854775808", SHVAL_ERANGE, NULL);
	parse_err("q", "-9223372036854775809", SHVAL_ERANGE, NULL);
	parse_err("q", "99999999999999999999999999999", SHVAL_ERANGE, NULL);
	parse_err("N", "-5", SHVAL_ERANGE, NULL);
	parse_err("f", "1e39", SHVAL_ERANGE, "type f");
	parse_err("f", "-1e39", SHVAL_ERANGE, NULL);
	parse_err("f", "0x1p200", SHVAL_ERANGE, NULL);
	parse_err("d", "1e309", SHVAL_ERANGE, "type d");
	parse_err("d", "-1e999", SHVAL_ERANGE, NULL);
}

TEST(text_malformed)
{
	static const char *const ints[] = {
		" 1", "1 ", "1x", "", "0x", "+", "-", "--1", "+-1", "1.5",
		"1e3", "0x1g", "x1", "1,000", "1_000", "\t1", "0b101", "- 1",
		"0x-1", "99999999999999999999999999x",
	};
	static const char *const letters = "bBhHiIlLqQnN";
	for (const char *l = letters; *l; l++) {
		char ts[2] = { *l, 0 };
		for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
			parse_err(ts, ints[k], SHVAL_EPARSE, NULL);
	}
	parse_err("q", "1x", SHVAL_EPARSE, "\"1x\" is not an integer");

	static const char *const reals[] = {
		" 1", "1 ", "1x", "", "0x", "1e", "e5", ".", "-", "1.0.0",
		"\n1", "1\n", "nanx", "0x1p", "1,5",
	};
	for (size_t k = 0; k < sizeof reals / sizeof reals[0]; k++) {
		parse_err("d", reals[k], SHVAL_EPARSE, NULL);
		parse_err("f", reals[k], SHVAL_EPARSE, NULL);
	}
	parse_err("?", "yes", SHVAL_EPARSE, "boolean");
	parse_err("?", "", SHVAL_EPARSE, NULL);
	parse_err("?", "TRUE ", SHVAL_EPARSE, NULL);
	parse_err("?", "2", SHVAL_EPARSE, NULL);
	parse_err("c", "", SHVAL_EPARSE, NULL);
	parse_err("c", "ab", SHVAL_EPARSE, "one byte");
	parse_err("u", "", SHVAL_EPARSE, NULL);
	parse_err("u", "ab", SHVAL_EPARSE, "UTF-8");
	parse_err("u", "\xff", SHVAL_EPARSE, NULL);
	parse_err("u", "\xc3", SHVAL_EPARSE, NULL);         /* truncated */
	parse_err("u", "\xc0\x80", SHVAL_EPARSE, NULL);     /* overlong */
	parse_err("u", "\xed\xa0\x80", SHVAL_EPARSE, NULL); /* surrogate */
	parse_err("u", "\xf4\x90\x80\x80", SHVAL_EPARSE, NULL); /* > 10FFFF */

	/* messages escape the argument and stay one line */
	parse_err("q", "1\n2", SHVAL_EPARSE, "\"1\\x0a2\"");
	ASSERT(!strchr(errbuf, '\n'));

	/* the element parser on its own */
	unsigned char b[8];
	ASSERT_ERR(shval__text_parse_elem('q', NULL, b, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	ASSERT_ERR(shval__text_parse_elem('s', "x", b, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	ASSERT_ERR(shval__text_parse_elem('B', "300", b, NULL, 0),
	           SHVAL_ERANGE);
}

/* ---- text: floats, bool, char, wchar ------------------------------------ */

static void dbl_is(double x, const char *plain, const char *json)
{
	shval__type *t = tp("d");
	fmt_is(t, &x, 0, plain);
	fmt_is(t, &x, SHVAL_TEXT_JSON, json);
	double back = 12345;
	ASSERT_OK(parse1(t, &back, plain));
	if (isnan(x))
		ASSERT(isnan(back));
	else
		ASSERT_MEMEQ(&back, &x, sizeof x);
	shval__type_free(t);
}

static void flt_is(float x, const char *plain)
{
	shval__type *t = tp("f");
	fmt_is(t, &x, 0, plain);
	float back = 12345;
	ASSERT_OK(parse1(t, &back, plain));
	if (isnan(x))
		ASSERT(isnan(back));
	else
		ASSERT_MEMEQ(&back, &x, sizeof x);
	shval__type_free(t);
}

TEST(text_floats)
{
	dbl_is(0.0, "0", "0");
	dbl_is(-0.0, "-0", "-0");
	dbl_is(0.1, "0.1", "0.1");
	dbl_is(1.5, "1.5", "1.5");
	dbl_is(-2.0, "-2", "-2");
	dbl_is(1e300, "1e+300", "1e+300");
	dbl_is(1.0 / 3, "0.3333333333333333", "0.3333333333333333");
	dbl_is(0.1 + 0.2, "0.30000000000000004", "0.30000000000000004");
	dbl_is(DBL_MAX, "1.7976931348623157e+308", "1.7976931348623157e+308");
	dbl_is(5e-324, "5e-324", "5e-324");
	dbl_is(DBL_MIN, "2.2250738585072014e-308", "2.2250738585072014e-308");
	dbl_is(123456789012345678.0, "1.2345678901234568e+17",
	       "1.2345678901234568e+17");
	dbl_is(NAN, "nan", "\"nan\"");
	dbl_is(INFINITY, "inf", "\"inf\"");
	dbl_is(-INFINITY, "-inf", "\"-inf\"");

	flt_is(0.1f, "0.1");
	flt_is(FLT_MAX, "3.4028235e+38");
	flt_is(-FLT_MAX, "-3.4028235e+38");
	flt_is(FLT_MIN, "1.1754944e-38");
	flt_is(1e-45f, "1e-45");
	flt_is(16777216.0f, "16777216");
	flt_is(-0.0f, "-0");
	flt_is(NAN, "nan");
	flt_is(INFINITY, "inf");
	flt_is(-INFINITY, "-inf");

	/* accepted input forms */
	shval__type *t = tp("f");
	float f;
	ASSERT_OK(parse1(t, &f, "3.4028235e38")); /* rounds to FLT_MAX */
	ASSERT(f == FLT_MAX);
	ASSERT_OK(parse1(t, &f, "1e-50"));        /* underflow: 0 */
	ASSERT(f == 0);
	ASSERT_OK(parse1(t, &f, "Infinity"));
	ASSERT(isinf(f) && f > 0);
	shval__type_free(t);
	t = tp("d");
	double d;
	ASSERT_OK(parse1(t, &d, "0x1p-2"));
	ASSERT(d == 0.25);
	ASSERT_OK(parse1(t, &d, "-nan"));
	ASSERT(isnan(d));
	ASSERT_OK(parse1(t, &d, "1e-400"));
	ASSERT(d == 0);
	ASSERT_OK(parse1(t, &d, "42"));
	ASSERT(d == 42);
	shval__type_free(t);

	/* every float printed reads back as the same float (a sweep) */
	t = tp("f");
	uint32_t bits = 0x00000001u;
	for (int k = 0; k < 20000; k++, bits = bits * 2654435761u + 12345u) {
		float x, y;
		memcpy(&x, &bits, 4);
		if (isnan(x))
			continue;
		char *s = fmt(t, &x, 0, NULL);
		ASSERT_OK(parse1(t, &y, s));
		if (memcmp(&x, &y, 4))
			FAIL("float 0x%08x printed as %s reads back different",
			     bits, s);
		free(s);
	}
	shval__type_free(t);
	t = tp("d");
	uint64_t b64 = 1;
	for (int k = 0; k < 20000; k++) {
		double x, y;
		b64 = b64 * 6364136223846793005ull + 1442695040888963407ull;
		memcpy(&x, &b64, 8);
		if (isnan(x))
			continue;
		char *s = fmt(t, &x, 0, NULL);
		ASSERT_OK(parse1(t, &y, s));
		if (memcmp(&x, &y, 8))
			FAIL("double printed as %s reads back different", s);
		free(s);
	}
	shval__type_free(t);
}

TEST(text_bool_char_wchar)
{
	shval__type *t = tp("?");
	unsigned char b = 1;
	fmt_is(t, &b, 0, "true");
	fmt_is(t, &b, SHVAL_TEXT_JSON, "true");
	b = 0;
	fmt_is(t, &b, 0, "false");
	fmt_is(t, &b, SHVAL_TEXT_JSON, "false");
	b = 7; /* a damaged bool is still printed as a bool */
	fmt_is(t, &b, 0, "true");
	static const struct { const char *s; unsigned char v; } B[] = {
		{ "true", 1 }, { "True", 1 }, { "1", 1 },
		{ "false", 0 }, { "False", 0 }, { "0", 0 },
	};
	for (size_t k = 0; k < sizeof B / sizeof B[0]; k++) {
		b = 0x55;
		ASSERT_OK(parse1(t, &b, B[k].s));
		ASSERT_EQ(b, B[k].v);
	}
	shval__type_free(t);

	t = tp("c");
	char c = 'a';
	fmt_is(t, &c, 0, "a");
	fmt_is(t, &c, SHVAL_TEXT_JSON, "\"a\"");
	c = '"';
	fmt_is(t, &c, SHVAL_TEXT_JSON, "\"\\\"\"");
	c = '\\';
	fmt_is(t, &c, SHVAL_TEXT_JSON, "\"\\\\\"");
	c = '\n';
	fmt_is(t, &c, SHVAL_TEXT_JSON, "\"\\n\"");
	c = 1;
	fmt_is(t, &c, SHVAL_TEXT_JSON, "\"\\u0001\"");
	c = (char)0xe9;
	fmt_is(t, &c, SHVAL_TEXT_JSON, "\"\\u00e9\"");
	assert_json(t, &c);
	c = 0;
	fmt_is(t, &c, SHVAL_TEXT_JSON, "\"\\u0000\"");
	size_t n;
	char *s = fmt(t, &c, 0, &n); /* plain: the raw byte, even a NUL */
	ASSERT_EQ(n, 1);
	ASSERT_EQ(s[0], 0);
	free(s);
	ASSERT_OK(parse1(t, &c, "z"));
	ASSERT_EQ(c, 'z');
	ASSERT_OK(parse1(t, &c, " "));
	ASSERT_EQ(c, ' ');
	ASSERT_OK(parse1(t, &c, "\xe9"));
	ASSERT_EQ((unsigned char)c, 0xe9);
	shval__type_free(t);

	t = tp("u");
	uint32_t w = 0x20ac; /* euro sign */
	fmt_is(t, &w, 0, "\xe2\x82\xac");
	fmt_is(t, &w, SHVAL_TEXT_JSON, "\"\xe2\x82\xac\"");
	w = 0x1f600;
	fmt_is(t, &w, 0, "\xf0\x9f\x98\x80");
	w = 'A';
	fmt_is(t, &w, 0, "A");
	w = '"';
	fmt_is(t, &w, SHVAL_TEXT_JSON, "\"\\\"\"");
	w = 0x110000; /* not a code point: escaped text, valid JSON */
	fmt_is(t, &w, 0, "\\u{110000}");
	fmt_is(t, &w, SHVAL_TEXT_JSON, "\"\\\\u{110000}\"");
	assert_json(t, &w);
	w = 0xd800; /* a surrogate */
	fmt_is(t, &w, 0, "\\u{D800}");
	assert_json(t, &w);
	w = 0xffffffffu; /* wchar_t -1 */
	fmt_is(t, &w, 0, "\\u{FFFFFFFF}");
	static const struct { const char *s; uint32_t cp; } U[] = {
		{ "A", 'A' }, { "\xc3\xa9", 0xe9 }, { "\xe2\x82\xac", 0x20ac },
		{ "\xf0\x9f\x98\x80", 0x1f600 }, { "\xf4\x8f\xbf\xbf", 0x10ffff },
	};
	for (size_t k = 0; k < sizeof U / sizeof U[0]; k++) {
		ASSERT_OK(parse1(t, &w, U[k].s));
		ASSERT_UEQ(w, U[k].cp);
		fmt_is(t, &w, 0, U[k].s);
	}
	shval__type_free(t);
}

/* ---- text: strings ------------------------------------------------------ */

struct s8 { uint32_t len; char b[8]; };

TEST(text_strings)
{
	shval__type *t = tp("8s");
	struct s8 v = { 3, "a\0b" };
	size_t n;

	/* plain: the raw bytes, NULs included */
	char *s = fmt(t, &v, 0, &n);
	ASSERT_EQ(n, 3);
	ASSERT_MEMEQ(s, "a\0b", 3);
	free(s);
	fmt_is(t, &v, SHVAL_TEXT_JSON, "\"a\\u0000b\"");

	/* trailing NULs are part of the value */
	struct s8 w = { 5, "ab\0\0\0" };
	s = fmt(t, &w, 0, &n);
	ASSERT_EQ(n, 5);
	ASSERT_MEMEQ(s, "ab\0\0\0", 5);
	free(s);
	fmt_is(t, &w, SHVAL_TEXT_JSON, "\"ab\\u0000\\u0000\\u0000\"");

	/* empty */
	struct s8 e = { 0, "" };
	s = fmt(t, &e, 0, &n);
	ASSERT_EQ(n, 0);
	ASSERT_STREQ(s, "");
	free(s);
	fmt_is(t, &e, SHVAL_TEXT_JSON, "\"\"");

	/* JSON escapes */
	struct s8 j = { 8, "\"\\\n\t\r\b\f\x7f" };
	fmt_is(t, &j, SHVAL_TEXT_JSON, "\"\\\"\\\\\\n\\t\\r\\b\\f\\u007f\"");
	assert_json(t, &j);
	struct s8 u = { 8, "\xc3\xa9\xff\xe2\x82\xac\xc3z" };
	fmt_is(t, &u, SHVAL_TEXT_JSON,
	       "\"\xc3\xa9\\u00ff\xe2\x82\xac\\u00c3z\"");
	assert_json(t, &u);

	/* parse: raw bytes, the rest of the capacity zeroed */
	struct s8 p;
	memset(&p, 0x55, sizeof p);
	ASSERT_OK(parse1(t, &p, "hello"));
	ASSERT_EQ(p.len, 5);
	ASSERT_MEMEQ(p.b, "hello\0\0\0", 8);
	ASSERT_OK(parse1(t, &p, ""));
	ASSERT_EQ(p.len, 0);
	ASSERT_OK(parse1(t, &p, " a b=c "));
	ASSERT_EQ(p.len, 7);
	ASSERT_OK(parse1(t, &p, "12345678"));
	ASSERT_EQ(p.len, 8);
	ASSERT_MEMEQ(p.b, "12345678", 8);
	ASSERT_ERR(parse1(t, &p, "123456789"), SHVAL_ETOOBIG);
	ASSERT(strstr(errbuf, "9 bytes"));
	ASSERT(strstr(errbuf, "capacity 8"));

	/* a damaged length: clamped to the capacity, marked in plain text */
	struct { uint32_t len; char b[8]; char guard[8]; } d = {
		1000, "abcdefgh", "GUARD!!" };
	s = fmt(t, &d, 0, &n);
	ASSERT(strncmp(s, "abcdefgh[damaged: length 1000 > capacity 8]",
	               n) == 0);
	ASSERT(!strstr(s, "GUARD"));
	free(s);
	fmt_is(t, &d, SHVAL_TEXT_JSON, "\"abcdefgh\"");
	shval__type_free(t);

	/* the smallest string, and "s" == "1s" */
	t = tp("s");
	struct { uint32_t len; char b[4]; } one = { 1, "x" };
	fmt_is(t, &one, 0, "x");
	ASSERT_ERR(parse1(t, &one, "xy"), SHVAL_ETOOBIG);
	shval__type_free(t);
}

/* ---- text: arrays, structs ---------------------------------------------- */

TEST(text_arrays)
{
	shval__type *t = tp("3q");
	int64_t a[3] = { 1, -2, INT64_MAX };
	fmt_is(t, a, 0, "1 -2 9223372036854775807");
	fmt_is(t, a, SHVAL_TEXT_JSON, "[1,-2,9223372036854775807]");
	const char *argv[] = { "4", "0x10", "-6" };
	ASSERT_OK(shval__text_parse(t, a, 3, argv, errbuf, sizeof errbuf));
	ASSERT_EQ(a[0], 4);
	ASSERT_EQ(a[1], 16);
	ASSERT_EQ(a[2], -6);
	ASSERT_ERR(shval__text_parse(t, a, 2, argv, errbuf, sizeof errbuf),
	           SHVAL_EINDEX);
	ASSERT(strstr(errbuf, "array of 3 takes 3 arguments, got 2"));
	const char *bad[] = { "1", "2", "x" };
	ASSERT_ERR(shval__text_parse(t, a, 3, bad, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	ASSERT(strstr(errbuf, "element 2"));
	shval__type_free(t);

	t = tp("4d");
	double d[4] = { 0.5, NAN, -INFINITY, 1e-7 };
	fmt_is(t, d, 0, "0.5 nan -inf 1e-07");
	fmt_is(t, d, SHVAL_TEXT_JSON, "[0.5,\"nan\",\"-inf\",1e-07]");
	assert_json(t, d);
	shval__type_free(t);

	t = tp("2?");
	unsigned char bb[2] = { 1, 0 };
	fmt_is(t, bb, SHVAL_TEXT_JSON, "[true,false]");
	shval__type_free(t);

	t = tp("3c");
	char cc[3] = { 'a', '"', (char)0x80 };
	fmt_is(t, cc, SHVAL_TEXT_JSON, "[\"a\",\"\\\"\",\"\\u0080\"]");
	shval__type_free(t);

	/* scalars and strings take exactly one argument */
	t = tp("q");
	int64_t q;
	ASSERT_ERR(shval__text_parse(t, &q, 0, argv, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	ASSERT_ERR(shval__text_parse(t, &q, 2, argv, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	ASSERT_ERR(shval__text_parse(t, &q, -1, argv, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	const char *nul[] = { NULL };
	ASSERT_ERR(shval__text_parse(t, &q, 1, nul, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	shval__type_free(t);
}

struct xyn { double x, y; struct { uint32_t len; char b[16]; } name; };

TEST(text_structs)
{
	shval__type *t = tp("x:d y:d name:16s");
	struct xyn v = { 1.5, -2, { 8, "hi \"x\"\n\\" } };
	fmt_is(t, &v, 0, "x=1.5 y=-2 name=\"hi \\\"x\\\"\\n\\\\\"");
	fmt_is(t, &v, SHVAL_TEXT_JSON,
	       "{\"x\":1.5,\"y\":-2,\"name\":\"hi \\\"x\\\"\\n\\\\\"}");
	assert_json(t, &v);

	/* partial set: other fields keep their values */
	const char *a1[] = { "y=0.25" };
	ASSERT_OK(shval__text_parse(t, &v, 1, a1, errbuf, sizeof errbuf));
	ASSERT(v.x == 1.5);
	ASSERT(v.y == 0.25);
	ASSERT_EQ(v.name.len, 8);
	/* string field: the raw bytes after the first '=' */
	const char *a2[] = { "name=a=b \"c\"", "0=3" };
	ASSERT_OK(shval__text_parse(t, &v, 2, a2, errbuf, sizeof errbuf));
	ASSERT_EQ(v.name.len, 7);
	ASSERT_MEMEQ(v.name.b, "a=b \"c\"\0\0\0\0\0\0\0\0", 16);
	ASSERT(v.x == 3);
	ASSERT(v.y == 0.25);
	fmt_is(t, &v, 0, "x=3 y=0.25 name=\"a=b \\\"c\\\"\"");

	/* embedded and trailing NULs in a string field */
	memcpy(v.name.b, "a\0" "1\0\0", 5);
	v.name.len = 5;
	fmt_is(t, &v, 0, "x=3 y=0.25 name=\"a\\x001\\0\\0\"");
	fmt_is(t, &v, SHVAL_TEXT_JSON,
	       "{\"x\":3,\"y\":0.25,\"name\":\"a\\u00001\\u0000\\u0000\"}");
	/* invalid UTF-8 and control bytes in plain struct form */
	memcpy(v.name.b, "\xff\x01\xc3\xa9", 4);
	v.name.len = 4;
	fmt_is(t, &v, 0, "x=3 y=0.25 name=\"\\xff\\x01\xc3\xa9\"");
	assert_json(t, &v);

	/* errors */
	const char *e1[] = { "z=1" };
	ASSERT_ERR(shval__text_parse(t, &v, 1, e1, errbuf, sizeof errbuf),
	           SHVAL_ENOFIELD);
	ASSERT(strstr(errbuf, "no field \"z\""));
	const char *e2[] = { "x" };
	ASSERT_ERR(shval__text_parse(t, &v, 1, e2, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	const char *e3[] = { "x=1", "x=2" };
	ASSERT_ERR(shval__text_parse(t, &v, 2, e3, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	const char *e4[] = { "x=abc" };
	ASSERT_ERR(shval__text_parse(t, &v, 1, e4, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	ASSERT(strstr(errbuf, "field \"x\""));
	const char *e5[] = { "name=12345678901234567" };
	ASSERT_ERR(shval__text_parse(t, &v, 1, e5, errbuf, sizeof errbuf),
	           SHVAL_ETOOBIG);
	const char *e6[] = { "=1" };
	ASSERT_ERR(shval__text_parse(t, &v, 1, e6, errbuf, sizeof errbuf),
	           SHVAL_ENOFIELD);
	const char *e7[] = { "3=1" };
	ASSERT_ERR(shval__text_parse(t, &v, 1, e7, errbuf, sizeof errbuf),
	           SHVAL_ENOFIELD);
	char longname[200];
	memset(longname, 'x', 150);
	strcpy(longname + 150, "=1");
	const char *e8[] = { longname };
	ASSERT_ERR(shval__text_parse(t, &v, 1, e8, errbuf, sizeof errbuf),
	           SHVAL_ENOFIELD);
	ASSERT_ERR(shval__text_parse(t, &v, 0, e8, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	shval__type_free(t);

	/* unnamed: by index; JSON array */
	t = tp("q d 4s");
	struct { int64_t q; double d; uint32_t len; char s[4]; } u = {
		-1, 2.5, 2, "ok" };
	fmt_is(t, &u, 0, "0=-1 1=2.5 2=\"ok\"");
	fmt_is(t, &u, SHVAL_TEXT_JSON, "[-1,2.5,\"ok\"]");
	const char *a3[] = { "2=abcd", "0=7" };
	ASSERT_OK(shval__text_parse(t, &u, 2, a3, errbuf, sizeof errbuf));
	ASSERT_EQ(u.q, 7);
	ASSERT(u.d == 2.5);
	ASSERT_EQ(u.len, 4);
	shval__type_free(t);

	/* array fields: comma-separated, exact count */
	t = tp("id:B v:3h");
	struct { uint8_t id; int16_t v[3]; } av = { 1, { 1, -2, 3 } };
	fmt_is(t, &av, 0, "id=1 v=1,-2,3");
	fmt_is(t, &av, SHVAL_TEXT_JSON, "{\"id\":1,\"v\":[1,-2,3]}");
	const char *a4[] = { "v=4,5,-32768" };
	ASSERT_OK(shval__text_parse(t, &av, 1, a4, errbuf, sizeof errbuf));
	ASSERT_EQ(av.v[0], 4);
	ASSERT_EQ(av.v[2], -32768);
	ASSERT_EQ(av.id, 1);
	const char *e9[] = { "v=1,2" };
	ASSERT_ERR(shval__text_parse(t, &av, 1, e9, errbuf, sizeof errbuf),
	           SHVAL_EINDEX);
	ASSERT(strstr(errbuf, "array of 3"));
	const char *e10[] = { "v=1,,3" };
	ASSERT_ERR(shval__text_parse(t, &av, 1, e10, errbuf, sizeof errbuf),
	           SHVAL_EPARSE);
	ASSERT(strstr(errbuf, "element 1"));
	const char *e11[] = { "v=1,2,40000" };
	ASSERT_ERR(shval__text_parse(t, &av, 1, e11, errbuf, sizeof errbuf),
	           SHVAL_ERANGE);
	const char *e12[] = { "id=256" };
	ASSERT_ERR(shval__text_parse(t, &av, 1, e12, errbuf, sizeof errbuf),
	           SHVAL_ERANGE);
	ASSERT(strstr(errbuf, "(0..255)"));
	/* a long element does not overflow any buffer */
	char longel[600];
	strcpy(longel, "v=1,2,");
	memset(longel + 6, '0', 500);
	strcpy(longel + 506, "7");
	const char *a5[] = { longel };
	ASSERT_OK(shval__text_parse(t, &av, 1, a5, errbuf, sizeof errbuf));
	ASSERT_EQ(av.v[2], 7);
	shval__type_free(t);

	/* a one-field named struct */
	t = tp("n:q");
	int64_t n1 = 5;
	fmt_is(t, &n1, 0, "n=5");
	fmt_is(t, &n1, SHVAL_TEXT_JSON, "{\"n\":5}");
	shval__type_free(t);
}

/* Random bytes of many types always give valid JSON, never overread. */
TEST(text_json_valid_random)
{
	static const char *const types[] = {
		"c", "u", "d", "f", "?", "q", "Q", "16s", "3c", "4u", "x:d y:8s",
		"a:c b:u c:5s d:2d e:?", "q 7s u c", "1s", "40s",
	};
	unsigned seed = 12345;
	for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
		shval__type *t = tp(types[k]);
		unsigned char *data = malloc(t->size);
		ASSERT(data);
		for (int r = 0; r < 2000; r++) {
			for (size_t i = 0; i < t->size; i++) {
				seed = seed * 1103515245u + 12345u;
				data[i] = (unsigned char)(seed >> 16);
			}
			/* keep string lengths plausible most of the time */
			for (size_t f = 0; f < t->nfields; f++) {
				const shval__field *fl = &t->fields[f];
				if (fl->kind != SHVAL_KIND_STRING || r % 8 == 0)
					continue;
				uint32_t len = (uint32_t)(seed % (fl->count + 1));
				memcpy(data + fl->offset, &len, 4);
			}
			assert_json(t, data);
			free(fmt(t, data, 0, NULL));
		}
		free(data);
		shval__type_free(t);
	}
}

/* A non-C LC_NUMERIC (decimal comma) changes nothing. */
TEST(text_locale)
{
	static const char *const locs[] = {
		"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8",
		"nl_NL.UTF-8", "ru_RU.UTF-8",
	};
	const char *got = NULL;
	for (size_t k = 0; k < sizeof locs / sizeof locs[0] && !got; k++)
		got = setlocale(LC_NUMERIC, locs[k]);
	if (!got)
		SKIP("no locale with a decimal comma installed");
	char probe[16];
	snprintf(probe, sizeof probe, "%.1f", 0.5);
	if (strcmp(probe, "0,5") != 0)
		SKIP("locale %s has no decimal comma", got);
	shval__type *t = tp("d");
	double d = 0.1;
	fmt_is(t, &d, 0, "0.1");
	ASSERT_OK(parse1(t, &d, "2.5"));
	ASSERT(d == 2.5);
	ASSERT_ERR(parse1(t, &d, "2,5"), SHVAL_EPARSE);
	shval__type_free(t);
	t = tp("f");
	float f = 0.1f;
	fmt_is(t, &f, 0, "0.1");
	shval__type_free(t);
}

/* The buffer helpers. */
TEST(text_buf)
{
	shval__buf b;
	shval__buf_init(&b);
	shval__buf_add(&b, "ab", 2);
	shval__buf_printf(&b, "%d-%s", 42, "x");
	ASSERT_UEQ(b.len, 6);
	ASSERT_STREQ(b.p, "ab42-x");
	char big[1000];
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = 0;
	shval__buf_printf(&b, "%s", big);
	ASSERT_UEQ(b.len, 6 + 999);
	ASSERT_EQ(b.p[b.len], 0);
	ASSERT_EQ(b.p[b.len - 1], 'z');
	ASSERT_EQ(b.oom, 0);
	shval__buf_free(&b);
	ASSERT(b.p == NULL);
	ASSERT_UEQ(b.len, 0);
	shval__buf_free(&b); /* twice is fine */
}

TEST_MAIN()
