/*
 * tests/test_type.c — type strings (src/type.c): sizes, layout, canonical
 * form, refusals, field lookup, string checks.
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

/* ---- type strings: sizes, layout ---------------------------------------- */

TEST(type_letters)
{
	static const struct { char c; size_t size; } L[] = {
		{ 'c', 1 }, { 'b', 1 }, { 'B', 1 }, { '?', 1 },
		{ 'h', 2 }, { 'H', 2 },
		{ 'i', 4 }, { 'I', 4 }, { 'f', 4 }, { 'u', 4 },
		{ 'l', 8 }, { 'L', 8 }, { 'q', 8 }, { 'Q', 8 },
		{ 'n', 8 }, { 'N', 8 }, { 'd', 8 },
	};
	/* the sizes are the C types' on this platform */
	ASSERT_EQ(sizeof(long), 8);
	ASSERT_EQ(sizeof(wchar_t), 4);
	ASSERT_EQ(sizeof(_Bool), 1);
	ASSERT_EQ(sizeof(size_t), 8);
	for (size_t k = 0; k < sizeof L / sizeof L[0]; k++) {
		char s[2] = { L[k].c, 0 };
		ASSERT_UEQ(shval__letter_size(L[k].c), L[k].size);
		shval__type *t = tp(s);
		ASSERT_EQ(t->kind, SHVAL_KIND_SCALAR);
		ASSERT_UEQ(t->size, L[k].size);
		ASSERT_UEQ(t->align, L[k].size);
		ASSERT_UEQ(t->nfields, 1);
		ASSERT_EQ(t->fields[0].code, L[k].c);
		ASSERT_EQ(t->fields[0].kind, SHVAL_KIND_SCALAR);
		ASSERT_UEQ(t->fields[0].count, 1);
		ASSERT_UEQ(t->fields[0].elem_size, L[k].size);
		ASSERT_UEQ(t->fields[0].offset, 0);
		ASSERT_STREQ(t->canon, s);
		ASSERT_STREQ(t->fields[0].name, "");
		shval__type_free(t);
	}
	ASSERT_UEQ(shval__letter_size('s'), 0);
	ASSERT_UEQ(shval__letter_size('x'), 0);
	ASSERT_UEQ(shval__letter_size('\0'), 0);
	shval__type_free(NULL);
}

TEST(type_arrays)
{
	shval__type *t = tp("100d");
	ASSERT_EQ(t->kind, SHVAL_KIND_ARRAY);
	ASSERT_UEQ(t->size, 800);
	ASSERT_UEQ(t->align, 8);
	ASSERT_UEQ(t->fields[0].count, 100);
	ASSERT_UEQ(t->fields[0].elem_size, 8);
	ASSERT_STREQ(t->canon, "100d");
	shval__type_free(t);

	t = tp("1d"); /* an array of one, not the scalar */
	ASSERT_EQ(t->kind, SHVAL_KIND_ARRAY);
	ASSERT_UEQ(t->size, 8);
	ASSERT_STREQ(t->canon, "1d");
	shval__type_free(t);

	t = tp("3h");
	ASSERT_UEQ(t->size, 6);
	ASSERT_UEQ(t->align, 2);
	shval__type_free(t);

	t = tp("7c");
	ASSERT_UEQ(t->size, 7);
	ASSERT_UEQ(t->align, 1);
	shval__type_free(t);

	/* past the old 1 GiB limit; at the count limit (UINT32_MAX) */
	t = tp("134217729d");
	ASSERT_UEQ(t->size, ((size_t)1 << 30) + 8);
	shval__type_free(t);
	t = tp("4294967295B");
	ASSERT_UEQ(t->size, (size_t)UINT32_MAX);
	shval__type_free(t);
	t = tp("4294967295d");
	ASSERT_UEQ(t->size, (size_t)UINT32_MAX * 8);
	shval__type_free(t);
	/* exactly at the 256 GiB size limit: 8 * (32 GiB - 8) + 8 * 8 */
	t = tp("4294967295d 4294967295d 4294967295d 4294967295d 4294967295d "
	       "4294967295d 4294967295d 4294967295d d d d d d d d d");
	ASSERT_UEQ(t->size, (size_t)1 << 38);
	shval__type_free(t);
}

TEST(type_strings)
{
	shval__type *t = tp("64s");
	ASSERT_EQ(t->kind, SHVAL_KIND_STRING);
	ASSERT_UEQ(t->size, 68);
	ASSERT_UEQ(t->align, 4);
	ASSERT_UEQ(t->fields[0].count, 64);
	ASSERT_UEQ(t->fields[0].elem_size, 1);
	ASSERT_EQ(t->fields[0].code, 's');
	shval__type_free(t);

	static const struct { const char *s; size_t size; } S[] = {
		{ "1s", 8 }, { "2s", 8 }, { "3s", 8 }, { "4s", 8 },
		{ "5s", 12 }, { "16s", 20 }, { "17s", 24 },
	};
	for (size_t k = 0; k < sizeof S / sizeof S[0]; k++) {
		t = tp(S[k].s);
		ASSERT_UEQ(t->size, S[k].size);
		ASSERT_STREQ(t->canon, S[k].s);
		shval__type_free(t);
	}

	/* "s" alone is "1s" (documented in type.h); canonical "1s" */
	t = tp("s");
	ASSERT_EQ(t->kind, SHVAL_KIND_STRING);
	ASSERT_UEQ(t->fields[0].count, 1);
	ASSERT_UEQ(t->size, 8);
	ASSERT_STREQ(t->canon, "1s");
	shval__type_free(t);
	canon_is("a:s b:s", "a:1s b:1s");

	/* 4 + capacity rounded up to 4; capacity at most UINT32_MAX */
	t = tp("4294967295s");
	ASSERT_UEQ(t->size, (size_t)4294967300u);
	shval__type_free(t);
	reject("4294967296s", "count too large");

	/* the layout is SHVAL_STR(N) = { uint32_t len; char bytes[N]; } */
	struct str5 { uint32_t len; char bytes[5]; };
	ASSERT_EQ(sizeof(struct str5), 12);
}

TEST(type_struct_layout)
{
	shval__type *t = tp("c d");
	ASSERT_EQ(t->kind, SHVAL_KIND_STRUCT);
	ASSERT_UEQ(t->nfields, 2);
	ASSERT_UEQ(t->fields[0].offset, 0);
	ASSERT_UEQ(t->fields[1].offset, 8);
	ASSERT_UEQ(t->size, 16);
	ASSERT_UEQ(t->align, 8);
	shval__type_free(t);

	struct xyn { double x, y; struct { uint32_t len; char b[16]; } name; };
	t = tp("x:d y:d name:16s");
	ASSERT_EQ(t->kind, SHVAL_KIND_STRUCT);
	ASSERT_STREQ(t->fields[0].name, "x");
	ASSERT_STREQ(t->fields[2].name, "name");
	ASSERT_UEQ(t->fields[0].offset, offsetof(struct xyn, x));
	ASSERT_UEQ(t->fields[1].offset, offsetof(struct xyn, y));
	ASSERT_UEQ(t->fields[2].offset, offsetof(struct xyn, name));
	ASSERT_UEQ(t->fields[2].size, 20);
	ASSERT_UEQ(t->size, sizeof(struct xyn));
	ASSERT_UEQ(t->size, 40);
	shval__type_free(t);

	struct bh { int8_t b; int16_t h[3]; };
	t = tp("b 3h");
	ASSERT_UEQ(t->fields[0].offset, 0);
	ASSERT_UEQ(t->fields[1].offset, offsetof(struct bh, h));
	ASSERT_UEQ(t->fields[1].offset, 2);
	ASSERT_UEQ(t->fields[1].kind, SHVAL_KIND_ARRAY);
	ASSERT_UEQ(t->size, sizeof(struct bh));
	ASSERT_UEQ(t->size, 8);
	shval__type_free(t);

	struct ips { int64_t id; double price; struct { uint32_t len; char b[16]; } sym; };
	t = tp("id:q price:d sym:16s");
	ASSERT_UEQ(t->fields[2].offset, offsetof(struct ips, sym));
	ASSERT_UEQ(t->size, sizeof(struct ips));
	shval__type_free(t);

	/* trailing padding to the largest alignment */
	struct ic { int32_t i; char c; };
	t = tp("i c");
	ASSERT_UEQ(t->size, sizeof(struct ic));
	ASSERT_UEQ(t->size, 8);
	shval__type_free(t);

	/* a string aligns to 4 */
	struct cs { char c; struct { uint32_t len; char b[5]; } s; char d; };
	t = tp("c 5s c");
	ASSERT_UEQ(t->fields[1].offset, offsetof(struct cs, s));
	ASSERT_UEQ(t->fields[2].offset, offsetof(struct cs, d));
	ASSERT_UEQ(t->size, sizeof(struct cs));
	shval__type_free(t);

	struct mix { _Bool a; wchar_t u; int16_t h; float f[2]; char c; uint64_t n; };
	t = tp("a:? u:u h:h f:2f c:c n:N");
	ASSERT_UEQ(t->fields[1].offset, offsetof(struct mix, u));
	ASSERT_UEQ(t->fields[2].offset, offsetof(struct mix, h));
	ASSERT_UEQ(t->fields[3].offset, offsetof(struct mix, f));
	ASSERT_UEQ(t->fields[4].offset, offsetof(struct mix, c));
	ASSERT_UEQ(t->fields[5].offset, offsetof(struct mix, n));
	ASSERT_UEQ(t->size, sizeof(struct mix));
	shval__type_free(t);

	/* one named field is a struct; one unnamed field is not */
	t = tp("x:q");
	ASSERT_EQ(t->kind, SHVAL_KIND_STRUCT);
	ASSERT_UEQ(t->nfields, 1);
	shval__type_free(t);
	t = tp("q d 16s");
	ASSERT_EQ(t->kind, SHVAL_KIND_STRUCT);
	ASSERT_STREQ(t->fields[2].name, "");
	shval__type_free(t);
	t = tp("c b");
	ASSERT_UEQ(t->size, 2);
	ASSERT_UEQ(t->align, 1);
	shval__type_free(t);
}

TEST(type_canonical)
{
	canon_is(" q  d ", "q d");
	canon_is("qd", "q d");
	canon_is("x:d y:d", "x:d y:d");
	canon_is("\tq\t\td\n", "q d");
	canon_is("x:dy:d", "x:d y:d");
	canon_is("16sd", "16s d");
	canon_is("3h4c", "3h 4c");
	canon_is("  x:100d   _y_2:?  ", "x:100d _y_2:?");
	canon_is("q1:d", "q1:d");      /* an identifier then ':' is a name */
	canon_is("d:d", "d:d");        /* a name may look like a letter */
	canon_is("dqd", "d q d");
	canon_is("d1d", "d 1d");
	canon_is("c b B h H i I l L q Q n N ? f d u 2s",
	         "c b B h H i I l L q Q n N ? f d u 2s");

	/* 63-character names are fine */
	char name[80];
	memset(name, 'a', 63);
	strcpy(name + 63, ":d");
	canon_is(name, name);

	/* the canonical form may be exactly SHVAL_TYPE_MAX long */
	char big[2048];
	size_t n = 0;
	while (n + 2 <= SHVAL_TYPE_MAX - 1) {
		big[n++] = 'q';
		big[n++] = ' ';
	}
	big[n++] = 'q';
	big[n] = 0;
	ASSERT_UEQ(n, SHVAL_TYPE_MAX);
	canon_is(big, big);
}

TEST(type_rejects)
{
	reject("", "empty type");
	reject("   ", "missing letter");
	reject(NULL, NULL);
	reject("x", "unknown letter 'x'");
	reject("q x", "position 2: unknown letter 'x'");
	reject("qqx", "position 2");
	reject("\x01", "unknown letter '\\x01'");
	reject("q\xff", "unknown letter '\\xff'");
	reject("e", "unknown letter 'e'");
	reject("0d", "count 0");
	reject("01d", "leading zero");
	reject("x:0d", "position 2: count 0");
	reject("<q", "byte-order prefix '<' not supported: shval uses native "
	       "layout");
	reject("@q", "byte-order prefix '@'");
	reject("=q", "byte-order prefix '='");
	reject(">q", "byte-order prefix '>'");
	reject("!q", "byte-order prefix '!'");
	reject("q <d", "position 2: byte-order prefix '<'");
	reject("x:d d", "fields must be all named or all unnamed");
	reject("d x:d", "fields must be all named or all unnamed");
	reject("x:d x:q", "duplicate field name \"x\"");
	reject("a:b b:c a:d", "position 8: duplicate field name");
	reject("1x:d", "field name must start with a letter or '_'");
	reject("x:", "position 2: missing letter after \"x:\"");
	reject("x:d y:", "position 6: missing letter after \"y:\"");
	reject("16", "missing letter after \"16\"");
	reject("16 s", "missing letter after \"16\"");
	reject("x: d", "missing letter after \"x:\"");
	reject(":d", "position 0: missing field name");
	reject("x::d", "unexpected ':'");
	reject("a-b:d", "unknown letter 'a'");
	reject("x:d,y:d", "unknown letter ','");

	/* 64-character names are too long */
	char name[80];
	memset(name, 'a', 64);
	strcpy(name + 64, ":d");
	reject(name, "longer than 63");

	/* huge counts: never overflow, always a clean error */
	reject("4294967296d", "count too large");
	reject("4294967296B", "count too large");
	reject("99999999999999999999999999999999q", "count too large");
	/* one byte past the 256 GiB size limit, in fields */
	reject("4294967295d 4294967295d 4294967295d 4294967295d 4294967295d "
	       "4294967295d 4294967295d 4294967295d d d d d d d d d c",
	       "too large");
	reject("x:4294967295Q y:4294967295Q z:4294967295Q w:4294967295Q "
	       "v:4294967295Q u:4294967295Q t:4294967295Q s:4294967295Q "
	       "r:4294967295Q",
	       "too large");

	/* canonical form longer than SHVAL_TYPE_MAX */
	char big[4096];
	size_t n = 0;
	while (n < 1024)
		big[n++] = 'q';
	big[n] = 0;
	reject(big, "canonical form too long");
	/* ... whatever the input length: linear time, no crash */
	char *huge = malloc(4 << 20);
	ASSERT(huge);
	memset(huge, 'q', (4 << 20) - 1);
	huge[(4 << 20) - 1] = 0;
	reject(huge, "canonical form too long");
	memset(huge, ' ', (4 << 20) - 1); /* white space only */
	reject(huge, "missing letter");
	memset(huge, 'a', (4 << 20) - 1);  /* one enormous identifier */
	reject(huge, "unknown letter 'a'");
	huge[(4 << 20) - 2] = ':';
	reject(huge, "longer than 63");
	free(huge);

	/* errors are one line even with control bytes in the input */
	reject("x:d\ny:\n", "missing letter");

	/* no output pointer: misuse, not a crash */
	ASSERT_ERR(shval__type_parse("q", NULL, NULL, 0), SHVAL_EMISUSE);
	/* errcap 0 and NULL err are fine */
	shval__type *t = NULL;
	ASSERT_ERR(shval__type_parse("x", &t, NULL, 0), SHVAL_EBADTYPE);
	ASSERT_ERR(shval__type_parse("x", &t, errbuf, 1), SHVAL_EBADTYPE);
	ASSERT_EQ(errbuf[0], 0);
}

TEST(type_field_lookup)
{
	shval__type *t = tp("x:d y:d name:16s");
	ASSERT_EQ(shval__type_field(t, "x"), 0);
	ASSERT_EQ(shval__type_field(t, "name"), 2);
	ASSERT_EQ(shval__type_field(t, "0"), 0); /* index works for named */
	ASSERT_EQ(shval__type_field(t, "2"), 2);
	ASSERT_EQ(shval__type_field(t, "3"), -1);
	ASSERT_EQ(shval__type_field(t, "00"), -1);
	ASSERT_EQ(shval__type_field(t, "-1"), -1);
	ASSERT_EQ(shval__type_field(t, "1x"), -1);
	ASSERT_EQ(shval__type_field(t, "99999999999999999999"), -1);
	ASSERT_EQ(shval__type_field(t, "z"), -1);
	ASSERT_EQ(shval__type_field(t, ""), -1);
	ASSERT_EQ(shval__type_field(t, NULL), -1);
	ASSERT_EQ(shval__type_field(t, "nam"), -1);
	shval__type_free(t);

	t = tp("q d 16s");
	ASSERT_EQ(shval__type_field(t, "1"), 1);
	ASSERT_EQ(shval__type_field(t, "q"), -1);
	shval__type_free(t);
}

TEST(type_check_strings)
{
	shval__type *t = tp("id:q sym:4s");
	unsigned char data[16] = { 0 };
	uint32_t len = 4;
	memcpy(data + 8, &len, 4);
	ASSERT_OK(shval__type_check(t, data, errbuf, sizeof errbuf));
	len = 5;
	memcpy(data + 8, &len, 4);
	ASSERT_ERR(shval__type_check(t, data, errbuf, sizeof errbuf),
	           SHVAL_ETOOBIG);
	ASSERT(strstr(errbuf, "sym"));
	ASSERT(strstr(errbuf, "5"));
	shval__type_free(t);

	t = tp("8s");
	unsigned char d2[12] = { 0 };
	len = 0xffffffffu;
	memcpy(d2, &len, 4);
	ASSERT_ERR(shval__type_check(t, d2, NULL, 0), SHVAL_ETOOBIG);
	shval__type_free(t);
}

TEST_MAIN()
