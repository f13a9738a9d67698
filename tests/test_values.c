/*
 * tests/test_values.c — value round trips through the public API: every
 * type letter in every mode and every kind of segment, arrays, strings,
 * structs.  Refusals of bad arguments are test_api_checks.c.  Every case
 * runs on local segments and on a Redis segment (TEST_BOTH).
 */
#include <shval.h>

#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "test.h"
#include "values_util.h"

/* ---- scalars ---- */

struct letter {
	char c;
	size_t size;
	bool flt;
	int64_t lo;  /* integer range */
	uint64_t hi;
};

static const struct letter letters[] = {
	{ 'c', 1, false, 0, UINT8_MAX },
	{ 'b', 1, false, INT8_MIN, INT8_MAX },
	{ 'B', 1, false, 0, UINT8_MAX },
	{ 'h', 2, false, INT16_MIN, INT16_MAX },
	{ 'H', 2, false, 0, UINT16_MAX },
	{ 'i', 4, false, INT32_MIN, INT32_MAX },
	{ 'I', 4, false, 0, UINT32_MAX },
	{ 'l', 8, false, INT64_MIN, INT64_MAX },
	{ 'L', 8, false, 0, UINT64_MAX },
	{ 'q', 8, false, INT64_MIN, INT64_MAX },
	{ 'Q', 8, false, 0, UINT64_MAX },
	{ 'n', 8, false, INT64_MIN, INT64_MAX },
	{ 'N', 8, false, 0, UINT64_MAX },
	{ '?', 1, false, 0, 1 },
	{ 'f', 4, true, 0, 0 },
	{ 'd', 8, true, 0, 0 },
	{ 'u', 4, false, 0, 0x10FFFF },
};
#define NLETTERS (sizeof letters / sizeof letters[0])

/* Store lo/hi as the C type would hold them, for byte comparisons. */
static void c_bytes(const struct letter *L, bool hi, unsigned char *out)
{
	uint64_t bits = hi ? L->hi : (uint64_t)L->lo;
	memcpy(out, &bits, L->size); /* little-endian: the low bytes */
}

/* from_text(to_text(v)) must give back the same bytes. */
static void text_round_trip(shval *v)
{
	unsigned char before[64], after[64];
	char txt[128];
	size_t len;
	snap(v, before, sizeof before);
	ASSERT_OK(shval_to_text(v, 0, txt, sizeof txt, &len));
	char json[128];
	ASSERT_OK(shval_to_text(v, SHVAL_TEXT_JSON, json, sizeof json, NULL));
	if (len != strlen(txt))
		return; /* a 'c' holding NUL: not expressible as a C string */
	const char *args[] = { txt };
	ASSERT_OK(shval_from_text(v, 1, args));
	snap(v, after, sizeof after);
	struct shval_info in;
	ASSERT_OK(shval_info(v, &in));
	if (memcmp(before, after, in.size) != 0)
		FAIL("type %s: text \"%s\" did not round-trip", in.type, txt);
}

static void int_letter(shval *v, const struct letter *L, unsigned mode)
{
	int64_t x;
	uint64_t u;
	double d;
	unsigned char want[8], before[64];
	/* low end */
	ASSERT_OK(shval_set_i64(v, L->lo));
	ASSERT_OK(shval_get_i64(v, &x));
	ASSERT_EQ(x, L->lo);
	snap(v, before, sizeof before);
	c_bytes(L, false, want);
	ASSERT_MEMEQ(before, want, L->size);
	text_round_trip(v);
	if (L->lo > INT64_MIN) {
		ASSERT_ERR(shval_set_i64(v, L->lo - 1), SHVAL_ERANGE);
		ASSERT(shval_errmsg(shval_segment(v))[0]);
		ASSERT_UNCHANGED(v, before);
	}
	if (L->lo < 0) {
		ASSERT_ERR(shval_get_u64(v, &u), SHVAL_ERANGE);
	}
	/* high end */
	ASSERT_OK(shval_set_u64(v, L->hi));
	ASSERT_OK(shval_get_u64(v, &u));
	ASSERT_UEQ(u, L->hi);
	snap(v, before, sizeof before);
	c_bytes(L, true, want);
	ASSERT_MEMEQ(before, want, L->size);
	text_round_trip(v);
	if (L->hi < UINT64_MAX) {
		ASSERT_ERR(shval_set_u64(v, L->hi + 1), SHVAL_ERANGE);
		ASSERT_UNCHANGED(v, before);
		if (L->hi < INT64_MAX) {
			ASSERT_ERR(shval_set_i64(v, (int64_t)L->hi + 1), SHVAL_ERANGE);
			ASSERT_UNCHANGED(v, before);
		}
	}
	if (L->hi > INT64_MAX) {
		ASSERT_ERR(shval_get_i64(v, &x), SHVAL_ERANGE);
		ASSERT_ERR(shval_set_i64(v, -1), SHVAL_ERANGE);
		ASSERT_UNCHANGED(v, before);
		/* 2^64-1 is not exactly a double */
		ASSERT_ERR(shval_get_f64(v, &d), SHVAL_ERANGE);
	} else {
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, (int64_t)L->hi);
	}
	/* a small number is exactly a double */
	ASSERT_OK(shval_set_i64(v, 1));
	ASSERT_OK(shval_get_f64(v, &d));
	ASSERT(d == 1.0);
	if (L->size == 8 && L->lo < 0) {
		ASSERT_OK(shval_set_i64(v, (1ll << 53) + 1));
		ASSERT_ERR(shval_get_f64(v, &d), SHVAL_ERANGE);
	}
	/* floats into an integer value: whole numbers only */
	ASSERT_OK(shval_set_f64(v, 1.0));
	ASSERT_ERR(shval_set_f64(v, 0.5), SHVAL_ERANGE);
	ASSERT_ERR(shval_add_f64(v, 1.0, NULL), SHVAL_EMODE);
	/* the whole-value write checks the size */
	ASSERT_ERR(shval_write(v, want, L->size + 1), SHVAL_ESIZE);
	ASSERT_ERR(shval_read(v, want, L->size - 1), SHVAL_ESIZE);
	(void)mode;
}

static void float_letter(shval *v, const struct letter *L)
{
	double d;
	int64_t x;
	unsigned char before[64];
	double vals_f[] = { FLT_MAX, -FLT_MAX, FLT_MIN, 0.5, -0.0, INFINITY,
			    -INFINITY };
	double vals_d[] = { DBL_MAX, -DBL_MAX, DBL_MIN, 4.9e-324, 0.1, -0.0,
			    INFINITY, -INFINITY };
	const double *vals = L->c == 'f' ? vals_f : vals_d;
	size_t n = L->c == 'f' ? sizeof vals_f / sizeof vals_f[0]
			       : sizeof vals_d / sizeof vals_d[0];
	for (size_t i = 0; i < n; i++) {
		ASSERT_OK(shval_set_f64(v, vals[i]));
		ASSERT_OK(shval_get_f64(v, &d));
		double want = L->c == 'f' ? (double)(float)vals[i] : vals[i];
		if (memcmp(&d, &want, sizeof d) != 0)
			FAIL("type %c: %g read back as %g", L->c, want, d);
		text_round_trip(v);
	}
	ASSERT_OK(shval_set_f64(v, NAN));
	ASSERT_OK(shval_get_f64(v, &d));
	ASSERT(isnan(d));
	ASSERT_OK(shval_set_f64(v, 2.5));
	snap(v, before, sizeof before);
	if (L->c == 'f') {
		ASSERT_ERR(shval_set_f64(v, 1e39), SHVAL_ERANGE);
		ASSERT_UNCHANGED(v, before);
		ASSERT_ERR(shval_set_f64(v, -DBL_MAX), SHVAL_ERANGE);
		ASSERT_UNCHANGED(v, before);
	}
	/* integers into a float value: refused, value unchanged */
	ASSERT_ERR(shval_set_i64(v, 1), SHVAL_EMODE);
	ASSERT_ERR(shval_get_i64(v, &x), SHVAL_EMODE);
	ASSERT_ERR(shval_add_i64(v, 1, NULL), SHVAL_EMODE);
	ASSERT_UNCHANGED(v, before);
	double r;
	ASSERT_OK(shval_add_f64(v, 0.25, &r));
	ASSERT(r == 2.75);
	double e = 1.0;
	ASSERT_ERR(shval_cas_f64(v, &e, 9.0), SHVAL_ECHANGED);
	ASSERT(e == 2.75);
	ASSERT_OK(shval_cas_f64(v, &e, 9.0));
	ASSERT_OK(shval_get_f64(v, &d));
	ASSERT(d == 9.0);
}

TEST_BOTH(scalar_every_letter_mode_kind)
{
	for (int k = 0; k < NKINDS; k++) {
		shval_seg *s = open_kind(k);
		for (size_t m = 0; m < 4; m++) {
			for (size_t i = 0; i < NLETTERS; i++) {
				const struct letter *L = &letters[i];
				char name[64], type[2] = { L->c, 0 };
				snprintf(name, sizeof name, "%s.%c",
					 mode_name(all_modes[m]), L->c);
				shval *v;
				ASSERT_OK(shval_create(s, name, type, all_modes[m],
						       NULL, 0, &v));
				struct shval_info in;
				ASSERT_OK(shval_info(v, &in));
				ASSERT_STREQ(in.type, type);
				ASSERT_STREQ(in.name, name);
				ASSERT_EQ(in.mode, all_modes[m]);
				ASSERT_EQ(in.kind, SHVAL_KIND_SCALAR);
				ASSERT_EQ(in.size, L->size);
				ASSERT_EQ(in.count, 1);
				/* created zeroed */
				unsigned char z[8] = { 0 }, b[8];
				ASSERT_OK(shval_read(v, b, sizeof b));
				ASSERT_MEMEQ(b, z, L->size);
				if (L->flt)
					float_letter(v, L);
				else
					int_letter(v, L, all_modes[m]);
				/* the same value seen through a second handle */
				shval *w;
				ASSERT_OK(shval_find(s, name, type, &w));
				unsigned char b1[8], b2[8];
				ASSERT_OK(shval_read(v, b1, sizeof b1));
				ASSERT_OK(shval_read(w, b2, sizeof b2));
				ASSERT_MEMEQ(b1, b2, L->size);
				shval_close(w);
				shval_close(v);
			}
		}
		close_kind(k, s);
	}
}

TEST_BOTH(scalar_init_bytes)
{
	shval_seg *s;
	s = test_seg_new();
	for (size_t m = 0; m < 4; m++) {
		char name[32];
		shval *v;
		int16_t init = -1234;
		snprintf(name, sizeof name, "h%zu", m);
		ASSERT_ERR(shval_create(s, name, "h", all_modes[m], &init, 4, &v),
			   SHVAL_ESIZE);
		ASSERT(v == NULL);
		ASSERT_OK(shval_create(s, name, "h", all_modes[m], &init, 2, &v));
		int64_t x;
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, -1234);
		int16_t w = 77;
		ASSERT_OK(shval_write(v, &w, sizeof w));
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, 77);
		shval_close(v);
	}
	test_seg_done(s);
}

/* add wraps modulo the width; and/or/xor/exchange/cas, in every mode. */
TEST_BOTH(scalar_rmw_every_mode)
{
	shval_seg *s;
	s = test_seg_new();
	for (size_t m = 0; m < 4; m++) {
		unsigned mode = all_modes[m];
		char name[32];
		shval *b, *B, *I, *q, *Q, *t;
		int64_t r;
		uint64_t old;
#define MK(var, ty)                                                            \
	snprintf(name, sizeof name, "%s.%s", mode_name(mode), ty);             \
	ASSERT_OK(shval_create(s, name, ty, mode, NULL, 0, &var))
		MK(b, "b");
		MK(B, "B");
		MK(I, "I");
		MK(q, "q");
		MK(Q, "Q");
		MK(t, "?");
#undef MK
		ASSERT_OK(shval_set_i64(b, 127));
		ASSERT_OK(shval_add_i64(b, 1, &r));
		ASSERT_EQ(r, -128);
		ASSERT_OK(shval_sub_i64(b, 1, &r));
		ASSERT_EQ(r, 127);
		ASSERT_OK(shval_set_i64(B, 255));
		ASSERT_OK(shval_add_i64(B, 1, &r));
		ASSERT_EQ(r, 0);
		ASSERT_OK(shval_sub_i64(I, 1, &r));
		ASSERT_EQ(r, 4294967295ll);
		ASSERT_OK(shval_set_i64(q, INT64_MAX));
		ASSERT_OK(shval_add_i64(q, 1, &r));
		ASSERT_EQ(r, INT64_MIN);
		ASSERT_OK(shval_set_u64(Q, UINT64_MAX));
		ASSERT_OK(shval_add_i64(Q, 2, NULL));
		uint64_t u;
		ASSERT_OK(shval_get_u64(Q, &u));
		ASSERT_UEQ(u, 1);
		/* bit ops: bits above the width are ignored */
		ASSERT_OK(shval_set_i64(B, 0x0f));
		ASSERT_OK(shval_or_u64(B, 0x1f0, &old));
		ASSERT_UEQ(old, 0x0f);
		ASSERT_OK(shval_get_u64(B, &u));
		ASSERT_UEQ(u, 0xff);
		ASSERT_OK(shval_and_u64(B, 0x13c, &old));
		ASSERT_UEQ(old, 0xff);
		ASSERT_OK(shval_get_u64(B, &u));
		ASSERT_UEQ(u, 0x3c);
		ASSERT_OK(shval_xor_u64(B, 0xff, &old));
		ASSERT_OK(shval_get_u64(B, &u));
		ASSERT_UEQ(u, 0xc3);
		/* exchange: range-checked */
		ASSERT_OK(shval_exchange_i64(b, -5, &r));
		ASSERT_EQ(r, 127);
		ASSERT_ERR(shval_exchange_i64(b, 200, &r), SHVAL_ERANGE);
		ASSERT_ERR(shval_exchange_i64(B, -1, &r), SHVAL_ERANGE);
		ASSERT_OK(shval_get_i64(b, &r));
		ASSERT_EQ(r, -5);
		/* cas */
		int64_t e = 3;
		ASSERT_ERR(shval_cas_i64(b, &e, 4), SHVAL_ECHANGED);
		ASSERT_EQ(e, -5);
		ASSERT_OK(shval_cas_i64(b, &e, 4));
		ASSERT_OK(shval_get_i64(b, &r));
		ASSERT_EQ(r, 4);
		e = 1000; /* does not fit: cannot be equal */
		ASSERT_ERR(shval_cas_i64(b, &e, 5), SHVAL_ECHANGED);
		ASSERT_EQ(e, 4);
		ASSERT_ERR(shval_cas_i64(b, &e, 1000), SHVAL_ERANGE);
		ASSERT_OK(shval_get_i64(b, &r));
		ASSERT_EQ(r, 4);
		/* bool: no arithmetic, exchange is fine */
		ASSERT_ERR(shval_add_i64(t, 1, NULL), SHVAL_EMODE);
		ASSERT_ERR(shval_or_u64(t, 1, NULL), SHVAL_EMODE);
		ASSERT_OK(shval_exchange_i64(t, 1, &r));
		ASSERT_EQ(r, 0);
		ASSERT_ERR(shval_exchange_i64(t, 2, &r), SHVAL_ERANGE);
		ASSERT_OK(shval_get_i64(t, &r));
		ASSERT_EQ(r, 1);
		/* versions move on every change */
		uint64_t v0 = shval_value_version(q);
		ASSERT_OK(shval_add_i64(q, 1, NULL));
		ASSERT_NE(shval_value_version(q), v0);
		shval_close(b);
		shval_close(B);
		shval_close(I);
		shval_close(q);
		shval_close(Q);
		shval_close(t);
	}
	test_seg_done(s);
}

/* The manual: "_f64 for 'f' and 'd' (and integers, exactly representable
 * only)".  get_f64 on an integer works (tested above); this checks that
 * set_f64 with an exactly representable number works on an integer value
 * too, and that an inexact one is a range error. */
TEST_BOTH(set_f64_on_integer_as_documented)
{
	shval_seg *s;
	s = test_seg_new();
	shval *v;
	ASSERT_OK(shval_create(s, "i", "i", 0, NULL, 0, &v));
	ASSERT_OK(shval_set_f64(v, 3.0));
	int64_t x;
	ASSERT_OK(shval_get_i64(v, &x));
	ASSERT_EQ(x, 3);
	ASSERT_ERR(shval_set_f64(v, 3.5), SHVAL_ERANGE);
	ASSERT_ERR(shval_set_f64(v, 1e10), SHVAL_ERANGE);
	shval_close(v);
	test_seg_done(s);
}

TEST_BOTH(atomic_mode_restrictions)
{
	shval_seg *s;
	s = test_seg_new();
	const char *bad[] = { "2q", "8s", "x:q", "q d", "1s", "3c" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		shval *v = (shval *)1;
		char name[16];
		snprintf(name, sizeof name, "a%zu", i);
		ASSERT_ERR(shval_create(s, name, bad[i], SHVAL_ATOMIC, NULL, 0, &v),
			   SHVAL_EMODE);
		ASSERT(v == NULL);
		ASSERT(shval_errmsg(s)[0]);
		/* nothing was created */
		ASSERT_ERR(shval_find(s, name, NULL, &v), SHVAL_ENOTFOUND);
	}
	/* locks on raw/atomic values: EMODE */
	shval *a, *r;
	ASSERT_OK(shval_create(s, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	ASSERT_OK(shval_create(s, "r", "q", SHVAL_RAW, NULL, 0, &r));
	ASSERT_ERR(shval_lock(a), SHVAL_EMODE);
	ASSERT_ERR(shval_lock(r), SHVAL_EMODE);
	ASSERT_ERR(shval_unlock(a), SHVAL_EMODE);
	shval_close(a);
	shval_close(r);
	test_seg_done(s);
}

/* ---- arrays ---- */

TEST_BOTH(arrays)
{
	for (int k = 0; k < NKINDS; k++) {
		shval_seg *s = open_kind(k);
		for (size_t m = 0; m < 3; m++) {
			unsigned mode = all_modes[m];
			shval *v;
			char name[32];
			snprintf(name, sizeof name, "arr.%s", mode_name(mode));
			ASSERT_OK(shval_create(s, name, "10i", mode, NULL, 0, &v));
			struct shval_info in;
			ASSERT_OK(shval_info(v, &in));
			ASSERT_EQ(in.kind, SHVAL_KIND_ARRAY);
			ASSERT_EQ(in.count, 10);
			ASSERT_EQ(in.size, 40);
			ASSERT_STREQ(in.type, "10i");
			int32_t a[10], b[10];
			for (int i = 0; i < 10; i++)
				a[i] = i == 0 ? INT32_MIN : i == 9 ? INT32_MAX : i * 100 - 300;
			ASSERT_OK(shval_array_set(v, 0, 10, a));
			memset(b, 0, sizeof b);
			ASSERT_OK(shval_array_get(v, 0, 10, b));
			ASSERT_MEMEQ(a, b, sizeof a);
			ASSERT_OK(shval_array_get(v, 3, 4, b));
			ASSERT_MEMEQ(b, a + 3, 4 * sizeof(int32_t));
			int32_t two[2] = { 7, 8 };
			ASSERT_OK(shval_array_set(v, 8, 2, two));
			ASSERT_OK(shval_array_get(v, 9, 1, b));
			ASSERT_EQ(b[0], 8);
			/* empty ranges at the end are fine */
			ASSERT_OK(shval_array_get(v, 10, 0, b));
			ASSERT_OK(shval_array_set(v, 10, 0, two));
			/* out of range: EINDEX, nothing changed */
			unsigned char before[64];
			snap(v, before, sizeof before);
			ASSERT_ERR(shval_array_get(v, 11, 0, b), SHVAL_EINDEX);
			ASSERT_ERR(shval_array_get(v, 9, 2, b), SHVAL_EINDEX);
			ASSERT_ERR(shval_array_set(v, 9, 2, two), SHVAL_EINDEX);
			ASSERT_ERR(shval_array_get(v, SIZE_MAX, 1, b), SHVAL_EINDEX);
			ASSERT_ERR(shval_array_get(v, 1, SIZE_MAX, b), SHVAL_EINDEX);
			ASSERT_ERR(shval_array_set(v, 2, SIZE_MAX, two), SHVAL_EINDEX);
			ASSERT(shval_errmsg(s)[0]);
			ASSERT_UNCHANGED(v, before);
			/* not a scalar / string */
			int64_t x;
			ASSERT_ERR(shval_get_i64(v, &x), SHVAL_EMODE);
			ASSERT_ERR(shval_set_i64(v, 1), SHVAL_EMODE);
			size_t len;
			ASSERT_ERR(shval_get_str(v, (char *)b, sizeof b, &len),
				   SHVAL_EMODE);
			/* text: one argument per element, exactly */
			char txt[256];
			ASSERT_OK(shval_to_text(v, 0, txt, sizeof txt, NULL));
			ASSERT_STREQ(txt, "-2147483648 -200 -100 0 100 200 300 400 7 8");
			ASSERT_OK(shval_to_text(v, SHVAL_TEXT_JSON, txt, sizeof txt, NULL));
			ASSERT_STREQ(txt, "[-2147483648,-200,-100,0,100,200,300,400,7,8]");
			const char *three[] = { "1", "2", "3" };
			ASSERT_ERR(shval_from_text(v, 3, three), SHVAL_EINDEX);
			ASSERT_UNCHANGED(v, before);
			const char *ten[] = { "0", "1", "2", "3", "4", "5", "6", "7",
					      "8", "2147483648" };
			ASSERT_ERR(shval_from_text(v, 10, ten), SHVAL_ERANGE);
			ASSERT_UNCHANGED(v, before);
			ten[9] = "9";
			ASSERT_OK(shval_from_text(v, 10, ten));
			ASSERT_OK(shval_array_get(v, 9, 1, b));
			ASSERT_EQ(b[0], 9);
			shval_close(v);

			/* bool arrays: 0 or 1 only */
			snprintf(name, sizeof name, "bools.%s", mode_name(mode));
			ASSERT_OK(shval_create(s, name, "4?", mode, NULL, 0, &v));
			unsigned char bo[4] = { 1, 0, 1, 1 }, bb[4];
			ASSERT_OK(shval_array_set(v, 0, 4, bo));
			unsigned char bad[2] = { 1, 2 };
			ASSERT_ERR(shval_array_set(v, 0, 2, bad), SHVAL_ERANGE);
			ASSERT_OK(shval_array_get(v, 0, 4, bb));
			ASSERT_MEMEQ(bb, bo, 4);
			shval_close(v);

			/* an array bigger than the undo limit (no undo copy) */
			snprintf(name, sizeof name, "big.%s", mode_name(mode));
			ASSERT_OK(shval_create(s, name, "20000d", mode, NULL, 0, &v));
			double *dd = malloc(20000 * sizeof *dd), *de = malloc(20000 * sizeof *de);
			ASSERT(dd && de);
			for (int i = 0; i < 20000; i++)
				dd[i] = i * 0.5;
			ASSERT_OK(shval_array_set(v, 0, 20000, dd));
			ASSERT_OK(shval_read(v, de, 20000 * sizeof *de));
			ASSERT_MEMEQ(dd, de, 20000 * sizeof *dd);
			ASSERT_OK(shval_array_get(v, 19999, 1, de));
			ASSERT(de[0] == 19999 * 0.5);
			ASSERT_ERR(shval_array_get(v, 19999, 2, de), SHVAL_EINDEX);
			free(dd);
			free(de);
			shval_close(v);
		}
		/* arrays cannot be atomic */
		shval *v;
		ASSERT_ERR(shval_create(s, "atomarr", "2i", SHVAL_ATOMIC, NULL, 0, &v),
			   SHVAL_EMODE);
		/* array ops on a scalar */
		ASSERT_OK(shval_create(s, "scalar", "i", 0, NULL, 0, &v));
		int32_t one;
		ASSERT_ERR(shval_array_get(v, 0, 1, &one), SHVAL_EMODE);
		ASSERT_ERR(shval_array_set(v, 0, 1, &one), SHVAL_EMODE);
		shval_close(v);
		close_kind(k, s);
	}
}

/* ---- strings ---- */

TEST_BOTH(strings)
{
	for (int k = 0; k < NKINDS; k++) {
		shval_seg *s = open_kind(k);
		for (size_t m = 0; m < 3; m++) {
			unsigned mode = all_modes[m];
			shval *v;
			char name[32], buf[32];
			size_t len;
			snprintf(name, sizeof name, "str.%s", mode_name(mode));
			ASSERT_OK(shval_create(s, name, "8s", mode, NULL, 0, &v));
			struct shval_info in;
			ASSERT_OK(shval_info(v, &in));
			ASSERT_EQ(in.kind, SHVAL_KIND_STRING);
			ASSERT_EQ(in.count, 8);
			ASSERT_EQ(in.size, 12); /* SHVAL_STR(8): u32 + 8 bytes */
			/* a new string is empty */
			ASSERT_OK(shval_get_str(v, buf, sizeof buf, &len));
			ASSERT_EQ(len, 0);
			ASSERT_EQ(buf[0], 0);
			ASSERT_OK(shval_get_str(v, NULL, 0, &len));
			ASSERT_EQ(len, 0);
			/* embedded NULs */
			ASSERT_OK(shval_set_str(v, "a\0b\0c", 5));
			memset(buf, 'x', sizeof buf);
			ASSERT_OK(shval_get_str(v, buf, sizeof buf, &len));
			ASSERT_EQ(len, 5);
			ASSERT_MEMEQ(buf, "a\0b\0c\0", 6);
			/* trailing NULs are kept, not trimmed */
			ASSERT_OK(shval_set_str(v, "ab\0\0\0", 5));
			ASSERT_OK(shval_get_str(v, buf, sizeof buf, &len));
			ASSERT_EQ(len, 5);
			ASSERT_MEMEQ(buf, "ab\0\0\0", 5);
			/* all NULs, and exactly the capacity */
			ASSERT_OK(shval_set_str(v, "\0\0\0\0\0\0\0\0", 8));
			ASSERT_OK(shval_get_str(v, buf, sizeof buf, &len));
			ASSERT_EQ(len, 8);
			ASSERT_MEMEQ(buf, "\0\0\0\0\0\0\0\0", 8);
			ASSERT_OK(shval_set_str(v, "12345678", 8));
			/* cap == length: copied, no NUL appended */
			memset(buf, 'x', sizeof buf);
			ASSERT_OK(shval_get_str(v, buf, 8, &len));
			ASSERT_EQ(len, 8);
			ASSERT_MEMEQ(buf, "12345678x", 9);
			/* cap too small: nothing copied, length needed */
			memset(buf, 'x', sizeof buf);
			len = 0;
			ASSERT_ERR(shval_get_str(v, buf, 3, &len), SHVAL_ETOOBIG);
			ASSERT_EQ(len, 8);
			ASSERT_EQ(buf[0], 'x');
			/* too big: ETOOBIG, the value is unchanged */
			unsigned char before[64];
			snap(v, before, sizeof before);
			ASSERT_ERR(shval_set_str(v, "123456789", 9), SHVAL_ETOOBIG);
			ASSERT(strstr(shval_errmsg(s), "capacity"));
			ASSERT_UNCHANGED(v, before);
			/* whole-value write with a length above the capacity */
			unsigned char raw[12];
			uint32_t n9 = 9;
			memcpy(raw, &n9, 4);
			memcpy(raw + 4, "abcdefgh", 8);
			ASSERT_ERR(shval_write(v, raw, sizeof raw), SHVAL_ETOOBIG);
			ASSERT_UNCHANGED(v, before);
			uint32_t n3 = 3;
			memcpy(raw, &n3, 4);
			ASSERT_OK(shval_write(v, raw, sizeof raw));
			ASSERT_OK(shval_get_str(v, buf, sizeof buf, &len));
			ASSERT_EQ(len, 3);
			ASSERT_MEMEQ(buf, "abc", 4);
			/* text: raw bytes; JSON keeps NULs as \u0000 */
			ASSERT_OK(shval_set_str(v, "a\0\"b", 4));
			char txt[64];
			size_t tl;
			ASSERT_OK(shval_to_text(v, 0, txt, sizeof txt, &tl));
			ASSERT_EQ(tl, 4);
			ASSERT_MEMEQ(txt, "a\0\"b", 5);
			ASSERT_OK(shval_to_text(v, SHVAL_TEXT_JSON, txt, sizeof txt, &tl));
			ASSERT_STREQ(txt, "\"a\\u0000\\\"b\"");
			const char *ok[] = { "hello" };
			ASSERT_OK(shval_from_text(v, 1, ok));
			ASSERT_OK(shval_get_str(v, buf, sizeof buf, &len));
			ASSERT_EQ(len, 5);
			snap(v, before, sizeof before);
			const char *toolong[] = { "hello world" };
			ASSERT_ERR(shval_from_text(v, 1, toolong), SHVAL_ETOOBIG);
			ASSERT_UNCHANGED(v, before);
			/* the empty string */
			ASSERT_OK(shval_set_str(v, NULL, 0));
			ASSERT_OK(shval_get_str(v, buf, sizeof buf, &len));
			ASSERT_EQ(len, 0);
			/* not a number */
			int64_t x;
			ASSERT_ERR(shval_get_i64(v, &x), SHVAL_EMODE);
			shval_close(v);

			/* a big string (no undo copy) */
			snprintf(name, sizeof name, "bigstr.%s", mode_name(mode));
			ASSERT_OK(shval_create(s, name, "100000s", mode, NULL, 0, &v));
			char *big = malloc(100001), *got = malloc(100001);
			ASSERT(big && got);
			for (int i = 0; i < 100000; i++)
				big[i] = (char)(i % 7 == 0 ? 0 : 'a' + i % 26);
			ASSERT_OK(shval_set_str(v, big, 100000));
			ASSERT_OK(shval_get_str(v, got, 100001, &len));
			ASSERT_EQ(len, 100000);
			ASSERT_MEMEQ(big, got, 100000);
			ASSERT_ERR(shval_set_str(v, big, 100001), SHVAL_ETOOBIG);
			free(big);
			free(got);
			shval_close(v);
		}
		shval *v;
		ASSERT_ERR(shval_create(s, "atomstr", "4s", SHVAL_ATOMIC, NULL, 0, &v),
			   SHVAL_EMODE);
		/* an initial value with a bad length is refused */
		unsigned char init[8] = { 5, 0, 0, 0, 'a', 'b', 'c', 'd' };
		ASSERT_ERR(shval_create(s, "initstr", "4s", 0, init, sizeof init, &v),
			   SHVAL_ETOOBIG);
		ASSERT_ERR(shval_find(s, "initstr", NULL, &v), SHVAL_ENOTFOUND);
		init[0] = 4;
		ASSERT_OK(shval_create(s, "initstr", "4s", 0, init, sizeof init, &v));
		char buf[8];
		size_t len;
		ASSERT_OK(shval_get_str(v, buf, sizeof buf, &len));
		ASSERT_EQ(len, 4);
		ASSERT_MEMEQ(buf, "abcd", 4);
		shval_close(v);
		close_kind(k, s);
	}
}

/* ---- structs ---- */

typedef struct {
	uint32_t len;
	char bytes[16];
} str16;

typedef struct {
	int64_t id;
	double price;
	str16 sym;
	bool flag;
	int16_t arr[3];
	uint8_t small;
} rec_t;

TEST_BOTH(structs)
{
	for (int k = 0; k < NKINDS; k++) {
		shval_seg *s = open_kind(k);
		for (size_t m = 0; m < 3; m++) {
			unsigned mode = all_modes[m];
			shval *v;
			char name[32];
			snprintf(name, sizeof name, "rec.%s", mode_name(mode));
			ASSERT_OK(shval_create(s, name,
					       "id:q  price:d sym:16s flag:? arr:3h small:B",
					       mode, NULL, 0, &v));
			struct shval_info in;
			ASSERT_OK(shval_info(v, &in));
			ASSERT_STREQ(in.type, "id:q price:d sym:16s flag:? arr:3h small:B");
			ASSERT_EQ(in.kind, SHVAL_KIND_STRUCT);
			ASSERT_EQ(in.count, 6);
			ASSERT_EQ(in.size, sizeof(rec_t));
			/* layout matches the C struct */
			static const struct {
				const char *name, *type;
				size_t off, size;
			} want[] = {
				{ "id", "q", offsetof(rec_t, id), 8 },
				{ "price", "d", offsetof(rec_t, price), 8 },
				{ "sym", "16s", offsetof(rec_t, sym), sizeof(str16) },
				{ "flag", "?", offsetof(rec_t, flag), 1 },
				{ "arr", "3h", offsetof(rec_t, arr), 6 },
				{ "small", "B", offsetof(rec_t, small), 1 },
			};
			for (size_t i = 0; i < 6; i++) {
				shval_field_info fi;
				ASSERT_OK(shval_field_info_at(v, i, &fi));
				ASSERT_STREQ(fi.name, want[i].name);
				ASSERT_STREQ(fi.type, want[i].type);
				ASSERT_EQ(fi.offset, want[i].off);
				ASSERT_EQ(fi.size, want[i].size);
			}
			shval_field_info fi;
			ASSERT_ERR(shval_field_info_at(v, 6, &fi), SHVAL_EINDEX);
			ASSERT_ERR(shval_field_info_at(v, SIZE_MAX, &fi), SHVAL_EINDEX);

			/* whole-struct write, field reads */
			rec_t r = { 0 }, r2;
			r.id = -42;
			r.price = 2.5;
			r.sym.len = 5;
			memcpy(r.sym.bytes, "a\0\"b\n", 5);
			r.flag = true;
			r.arr[0] = -1;
			r.arr[1] = 2;
			r.arr[2] = 32767;
			r.small = 200;
			ASSERT_OK(shval_write(v, &r, sizeof r));
			memset(&r2, 0, sizeof r2);
			ASSERT_OK(shval_read(v, &r2, sizeof r2));
			ASSERT_EQ(r2.id, -42);
			ASSERT(r2.price == 2.5);
			ASSERT_EQ(r2.sym.len, 5);
			ASSERT_MEMEQ(r2.sym.bytes, "a\0\"b\n", 5);
			double d;
			size_t len;
			ASSERT_OK(shval_field_get(v, "price", &d, sizeof d, &len));
			ASSERT(d == 2.5);
			ASSERT_EQ(len, 8);
			/* fields by index work too */
			int64_t id;
			ASSERT_OK(shval_field_get(v, "0", &id, sizeof id, NULL));
			ASSERT_EQ(id, -42);
			int16_t arr[3];
			ASSERT_OK(shval_field_get(v, "arr", arr, sizeof arr, NULL));
			ASSERT_EQ(arr[2], 32767);
			/* field set */
			d = -0.125;
			ASSERT_OK(shval_field_set(v, "price", &d, sizeof d));
			ASSERT_OK(shval_read(v, &r2, sizeof r2));
			ASSERT(r2.price == -0.125);
			ASSERT_EQ(r2.id, -42);
			/* errors leave the value unchanged */
			unsigned char before[128];
			snap(v, before, sizeof before);
			ASSERT_ERR(shval_field_get(v, "nope", &d, sizeof d, NULL),
				   SHVAL_ENOFIELD);
			ASSERT(strstr(shval_errmsg(s), "nope"));
			ASSERT_ERR(shval_field_set(v, "nope", &d, sizeof d), SHVAL_ENOFIELD);
			ASSERT_ERR(shval_field_get(v, "6", &d, sizeof d, NULL),
				   SHVAL_ENOFIELD);
			ASSERT_ERR(shval_field_get(v, "01", &d, sizeof d, NULL),
				   SHVAL_ENOFIELD);
			ASSERT_ERR(shval_field_set(v, "price", &d, 4), SHVAL_ESIZE);
			len = 0;
			ASSERT_ERR(shval_field_get(v, "price", &d, 4, &len), SHVAL_ESIZE);
			ASSERT_EQ(len, 8);
			str16 big = { 17, "0123456789abcdef" };
			ASSERT_ERR(shval_field_set(v, "sym", &big, sizeof big),
				   SHVAL_ETOOBIG);
			r.sym.len = 100;
			ASSERT_ERR(shval_write(v, &r, sizeof r), SHVAL_ETOOBIG);
			ASSERT_UNCHANGED(v, before);
			int64_t x;
			ASSERT_ERR(shval_get_i64(v, &x), SHVAL_EMODE);
			ASSERT_ERR(shval_array_get(v, 0, 1, &x), SHVAL_EMODE);

			/* text */
			char txt[256];
			ASSERT_OK(shval_to_text(v, 0, txt, sizeof txt, &len));
			ASSERT_STREQ(txt, "id=-42 price=-0.125 sym=\"a\\0\\\"b\\n\" "
					  "flag=true arr=-1,2,32767 small=200");
			ASSERT_OK(shval_to_text(v, SHVAL_TEXT_JSON, txt, sizeof txt, NULL));
			ASSERT_STREQ(txt, "{\"id\":-42,\"price\":-0.125,"
					  "\"sym\":\"a\\u0000\\\"b\\n\",\"flag\":true,"
					  "\"arr\":[-1,2,32767],\"small\":200}");
			/* too small a buffer: ETOOBIG, *len = the length needed */
			size_t need = 0;
			ASSERT_ERR(shval_to_text(v, 0, txt, 10, &need), SHVAL_ETOOBIG);
			ASSERT_EQ(need, len);
			/* from_text: fields not given are kept; errors change nothing */
			const char *a1[] = { "price=3.25", "sym=hi there" };
			ASSERT_OK(shval_from_text(v, 2, a1));
			ASSERT_OK(shval_read(v, &r2, sizeof r2));
			ASSERT(r2.price == 3.25);
			ASSERT_EQ(r2.id, -42);
			ASSERT_EQ(r2.sym.len, 8);
			snap(v, before, sizeof before);
			const char *a2[] = { "id=5", "price=abc" };
			ASSERT_ERR(shval_from_text(v, 2, a2), SHVAL_EPARSE);
			ASSERT(shval_errmsg(s)[0]);
			const char *a3[] = { "id=5", "nope=1" };
			ASSERT_ERR(shval_from_text(v, 2, a3), SHVAL_ENOFIELD);
			const char *a4[] = { "id=5", "small=256" };
			ASSERT_ERR(shval_from_text(v, 2, a4), SHVAL_ERANGE);
			const char *a5[] = { "sym=01234567890123456" };
			ASSERT_ERR(shval_from_text(v, 1, a5), SHVAL_ETOOBIG);
			ASSERT_UNCHANGED(v, before);
			shval_close(v);

			/* unnamed fields, addressed by index */
			snprintf(name, sizeof name, "tup.%s", mode_name(mode));
			ASSERT_OK(shval_create(s, name, "q d 4s", mode, NULL, 0, &v));
			ASSERT_OK(shval_info(v, &in));
			ASSERT_STREQ(in.type, "q d 4s");
			ASSERT_OK(shval_field_info_at(v, 2, &fi));
			ASSERT_STREQ(fi.name, "");
			ASSERT_STREQ(fi.type, "4s");
			const char *a6[] = { "0=7", "2=ab" };
			ASSERT_OK(shval_from_text(v, 2, a6));
			ASSERT_OK(shval_field_get(v, "0", &id, sizeof id, NULL));
			ASSERT_EQ(id, 7);
			ASSERT_ERR(shval_field_get(v, "3", &id, sizeof id, NULL),
				   SHVAL_ENOFIELD);
			ASSERT_OK(shval_to_text(v, SHVAL_TEXT_JSON, txt, sizeof txt, NULL));
			ASSERT_STREQ(txt, "[7,0,\"ab\"]");
			shval_close(v);
		}
		close_kind(k, s);
	}
}

/* A type exactly SHVAL_TYPE_MAX bytes long (canonical) fits in a segment. */
TEST_BOTH(longest_type)
{
	shval_seg *s;
	s = test_seg_new();
	char *t = malloc(2048);
	ASSERT(t);
	size_t n = 0;
	for (int i = 0; i < 512; i++) {
		if (i)
			t[n++] = ' ';
		t[n++] = 'b';
	}
	t[n] = 0;
	ASSERT_EQ(n, SHVAL_TYPE_MAX);
	shval *v;
	ASSERT_OK(shval_create(s, "long", t, SHVAL_RAW, NULL, 0, &v));
	struct shval_info in;
	ASSERT_OK(shval_info(v, &in));
	ASSERT_STREQ(in.type, t);
	ASSERT_EQ(in.count, 512);
	shval_close(v);
	ASSERT_OK(shval_find(s, "long", t, &v));
	shval_close(v);
	strcat(t, " b");
	ASSERT_ERR(shval_create(s, "longer", t, SHVAL_RAW, NULL, 0, &v),
		   SHVAL_EBADTYPE);
	free(t);
	test_seg_done(s);
}

TEST_MAIN()
