/*
 * tests/test_values.c — value round trips through the public API: every
 * type letter in every mode and every kind of segment, arrays, strings,
 * structs, type mismatches, bad type strings, bad names, unknown flags,
 * shval_new in a fork child.
 */
#include <shval.h>

#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "test.h"

/* ---- helpers ---- */

static const unsigned all_modes[] = { SHVAL_RLOCK, SHVAL_LOCK, SHVAL_RAW,
				      SHVAL_ATOMIC };
static const char *mode_name(unsigned m)
{
	return m == SHVAL_RLOCK ? "rlock"
	       : m == SHVAL_LOCK ? "lock"
	       : m == SHVAL_RAW	 ? "raw"
				 : "atomic";
}

/* The three kinds of segments: 0 anonymous, 1 /dev/shm, 2 file:. */
#define NKINDS 3
static char kind_path[NKINDS][256];

static shval_seg *open_kind(int k)
{
	shval_seg *s = NULL;
	if (k == 0) {
		ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	} else if (k == 1) {
		snprintf(kind_path[k], sizeof kind_path[k], "%s",
			 test_segname("kind1"));
		ASSERT_OK(shval_seg_open(kind_path[k], SHVAL_CREATE | SHVAL_EXCL,
					 NULL, &s));
	} else {
		snprintf(kind_path[k], sizeof kind_path[k],
			 "file:/tmp/shvaltest.%d.kind2", (int)getpid());
		unlink(kind_path[k] + 5);
		ASSERT_OK(shval_seg_open(kind_path[k], SHVAL_CREATE | SHVAL_EXCL,
					 NULL, &s));
	}
	return s;
}

static void close_kind(int k, shval_seg *s)
{
	shval_seg_close(s);
	if (k > 0)
		ASSERT_OK(shval_seg_unlink(kind_path[k]));
}

/* Raw bytes of a value, for "unchanged" checks. */
static void snap(shval *v, unsigned char *buf, size_t cap)
{
	struct shval_info in;
	ASSERT_OK(shval_info(v, &in));
	ASSERT_LE(in.size, cap);
	memset(buf, 0xAA, cap);
	ASSERT_OK(shval_read(v, buf, cap));
}

#define ASSERT_UNCHANGED(v, before)                                        \
	do {                                                               \
		unsigned char now_[512];                                   \
		snap((v), now_, sizeof now_);                              \
		struct shval_info in_;                                     \
		ASSERT_OK(shval_info((v), &in_));                          \
		ASSERT_MEMEQ(now_, (before), in_.size);                    \
	} while (0)

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

TEST(scalar_every_letter_mode_kind)
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

TEST(scalar_init_bytes)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
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
	shval_seg_close(s);
}

/* add wraps modulo the width; and/or/xor/exchange/cas, in every mode. */
TEST(scalar_rmw_every_mode)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
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
	shval_seg_close(s);
}

/* The manual: "_f64 for 'f' and 'd' (and integers, exactly representable
 * only)".  get_f64 on an integer works (tested above); this checks that
 * set_f64 with an exactly representable number works on an integer value
 * too, and that an inexact one is a range error. */
TEST(set_f64_on_integer_as_documented)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	shval *v;
	ASSERT_OK(shval_create(s, "i", "i", 0, NULL, 0, &v));
	ASSERT_OK(shval_set_f64(v, 3.0));
	int64_t x;
	ASSERT_OK(shval_get_i64(v, &x));
	ASSERT_EQ(x, 3);
	ASSERT_ERR(shval_set_f64(v, 3.5), SHVAL_ERANGE);
	ASSERT_ERR(shval_set_f64(v, 1e10), SHVAL_ERANGE);
	shval_close(v);
	shval_seg_close(s);
}

TEST(atomic_mode_restrictions)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
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
	shval_seg_close(s);
}

/* ---- arrays ---- */

TEST(arrays)
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

TEST(strings)
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

TEST(structs)
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
TEST(longest_type)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
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
	shval_seg_close(s);
}

/* ---- type mismatch ---- */

TEST(type_mismatch)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	shval *v, *w;
	ASSERT_OK(shval_create(s, "pt", " x:d   y:d ", 0, NULL, 0, &v));
	/* any spelling of the same type matches */
	ASSERT_OK(shval_find(s, "pt", "x:d y:d", &w));
	shval_close(w);
	ASSERT_OK(shval_find(s, "pt", "  x:d y:d", &w));
	shval_close(w);
	ASSERT_OK(shval_find(s, "pt", NULL, &w));
	shval_close(w);
	/* another type: ETYPE with both types in the message */
	w = (shval *)1;
	ASSERT_ERR(shval_find(s, "pt", "x:d y:f", &w), SHVAL_ETYPE);
	ASSERT(w == NULL);
	ASSERT(strstr(shval_errmsg(s), "x:d y:d"));
	ASSERT(strstr(shval_errmsg(s), "x:d y:f"));
	ASSERT_ERR(shval_find(s, "pt", "y:d x:d", &w), SHVAL_ETYPE);
	ASSERT_ERR(shval_find(s, "pt", "d d", &w), SHVAL_ETYPE);
	ASSERT_ERR(shval_find(s, "pt", "16s", &w), SHVAL_ETYPE);
	/* a bad type is EBADTYPE even though the value exists */
	ASSERT_ERR(shval_find(s, "pt", "x:d y:", &w), SHVAL_EBADTYPE);
	/* find_or_create: same type and mode finds it */
	bool created = true;
	ASSERT_OK(shval_find_or_create(s, "pt", "x:d y:d", SHVAL_RLOCK, NULL, 0,
				       &w, &created));
	ASSERT(!created);
	shval_close(w);
	ASSERT_ERR(shval_find_or_create(s, "pt", "x:f y:d", SHVAL_RLOCK, NULL, 0,
					&w, &created),
		   SHVAL_ETYPE);
	ASSERT(w == NULL);
	ASSERT_ERR(shval_find_or_create(s, "pt", "x:d y:d", SHVAL_LOCK, NULL, 0,
					&w, &created),
		   SHVAL_EMODE);
	ASSERT_ERR(shval_find_or_create(s, "pt", "x:d y:d", SHVAL_RAW, NULL, 0,
					&w, NULL),
		   SHVAL_EMODE);
	/* creating a second one by that name: EEXIST */
	ASSERT_ERR(shval_create(s, "pt", "q", 0, NULL, 0, &w), SHVAL_EEXIST);
	ASSERT(strstr(shval_errmsg(s), "pt"));
	/* typed access of the wrong kind */
	shval *q;
	ASSERT_OK(shval_create(s, "q", "q", SHVAL_ATOMIC, NULL, 0, &q));
	size_t len;
	char buf[8];
	ASSERT_ERR(shval_get_str(q, buf, sizeof buf, &len), SHVAL_EMODE);
	ASSERT_ERR(shval_set_str(q, "a", 1), SHVAL_EMODE);
	int64_t x;
	ASSERT_ERR(shval_get_i64(v, &x), SHVAL_EMODE);
	shval_close(q);
	shval_close(v);
	/* missing values */
	ASSERT_ERR(shval_find(s, "missing", NULL, &w), SHVAL_ENOTFOUND);
	ASSERT(strstr(shval_errmsg(s), "missing"));
	ASSERT_ERR(shval_remove(s, "missing"), SHVAL_ENOTFOUND);
	shval_seg_close(s);
}

/* ---- bad type strings ---- */

TEST(bad_type_strings)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	static const struct {
		const char *type, *where;
	} bad[] = {
		{ "", "position 0" },
		{ "   ", "position" },
		{ "x", "position 0" },
		{ "q x", "position 2" },
		{ "qqx", "position 2" },
		{ "0d", "position 0" },
		{ "01d", "position 0" },
		{ "<q", "position 0" },
		{ "q <d", "position 2" },
		{ "x:d d", "position" },
		{ "x:d x:q", "position 4" },
		{ "x:d y:", "position 6" },
		{ ":d", "position 0" },
		{ "16", "position" },
		{ "x:d,y:d", "position 3" },
		{ "134217729d", "position" },
		{ "99999999999999999999q", "position" },
		{ "q\x01", "position 1" },
		{ "q\xff", "position 1" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		shval *v = (shval *)1;
		char name[16];
		snprintf(name, sizeof name, "t%zu", i);
		ASSERT_ERR(shval_create(s, name, bad[i].type, 0, NULL, 0, &v),
			   SHVAL_EBADTYPE);
		ASSERT(v == NULL);
		const char *msg = shval_errmsg(s);
		if (!strstr(msg, bad[i].where))
			FAIL("type \"%s\": message \"%s\" does not say \"%s\"",
			     bad[i].type, msg, bad[i].where);
		ASSERT(strchr(msg, '\n') == NULL);
		ASSERT_ERR(shval_find_or_create(s, name, bad[i].type, 0, NULL, 0,
						&v, NULL),
			   SHVAL_EBADTYPE);
		ASSERT(strstr(shval_errmsg(s), "position"));
		ASSERT_ERR(shval_find(s, name, bad[i].type, &v), SHVAL_EBADTYPE);
		char canon[64];
		ASSERT_ERR(shval_type_canonical(bad[i].type, canon, sizeof canon, NULL),
			   SHVAL_EBADTYPE);
		msg = shval_errmsg(NULL);
		if (!strstr(msg, bad[i].where))
			FAIL("canonical \"%s\": message \"%s\" does not say \"%s\"",
			     bad[i].type, msg, bad[i].where);
		/* nothing was created */
		ASSERT_ERR(shval_find(s, name, NULL, &v), SHVAL_ENOTFOUND);
	}
	shval *v;
	ASSERT_ERR(shval_create(s, "nulltype", NULL, 0, NULL, 0, &v), SHVAL_EBADTYPE);
	ASSERT(shval_errmsg(s)[0]);
	/* canonical forms and sizes */
	char canon[64];
	size_t size;
	ASSERT_OK(shval_type_canonical("  a:b   b:q ", canon, sizeof canon, &size));
	ASSERT_STREQ(canon, "a:b b:q");
	ASSERT_EQ(size, 16);
	ASSERT_ERR(shval_type_canonical("a:b b:q", canon, 4, &size), SHVAL_ETOOBIG);
	shval_seg_close(s);
}

/* ---- names ---- */

TEST(bad_value_names)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	char n256[300], n255[300];
	memset(n256, 'a', 256);
	n256[256] = 0;
	memset(n255, 'b', 255);
	n255[255] = 0;
	const char *bad[] = { "", "a b", "a\tb", "a\nb", "\x01", "x\x7f", " ",
			      "trailing ", n256 };
	for (size_t i = 0; i <= sizeof bad / sizeof bad[0]; i++) {
		const char *n = i < sizeof bad / sizeof bad[0] ? bad[i] : NULL;
		shval *v = (shval *)1;
		ASSERT_ERR(shval_create(s, n, "q", 0, NULL, 0, &v), SHVAL_EBADNAME);
		ASSERT(v == NULL);
		ASSERT(shval_errmsg(s)[0]);
		ASSERT(strchr(shval_errmsg(s), '\n') == NULL);
		ASSERT_ERR(shval_find(s, n, NULL, &v), SHVAL_EBADNAME);
		ASSERT_ERR(shval_find_or_create(s, n, "q", 0, NULL, 0, &v, NULL),
			   SHVAL_EBADNAME);
		ASSERT_ERR(shval_remove(s, n), SHVAL_EBADNAME);
	}
	/* the limits, UTF-8 and punctuation are fine */
	const char *good[] = { n255, "x", "température", "a/b:c=d[0]", "日本",
			       "~!@#$%^&*()" };
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		shval *v, *w;
		ASSERT_OK(shval_create(s, good[i], "q", 0, NULL, 0, &v));
		ASSERT_OK(shval_find(s, good[i], "q", &w));
		struct shval_info in;
		ASSERT_OK(shval_info(w, &in));
		ASSERT_STREQ(in.name, good[i]);
		shval_close(v);
		shval_close(w);
		ASSERT_OK(shval_remove(s, good[i]));
	}
	shval_seg_close(s);
}

TEST(bad_segment_names)
{
	char n201[300], n200[300];
	n201[0] = n200[0] = '/';
	memset(n201 + 1, 'a', 201);
	n201[202] = 0;
	memset(n200 + 1, 'c', 200);
	n200[201] = 0;
	/* unique: the pid is part of the 200-character name */
	char pid[16];
	int pl = snprintf(pid, sizeof pid, "%d", (int)getpid());
	memcpy(n200 + 1, pid, (size_t)pl);
	const char *bad[] = { "", "noslash", "/", "//", "/a/b", "/a b", "/.", "/..",
			      "/é", "/a\n", "/a*", n201, "file:",
			      "file:/tmp/somedir/", "shm:/x", "\x01" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		shval_seg *s = (shval_seg *)1;
		ASSERT_ERR(shval_seg_open(bad[i], SHVAL_CREATE, NULL, &s),
			   SHVAL_EBADNAME);
		ASSERT(s == NULL);
		ASSERT(shval_errmsg(NULL)[0]);
		ASSERT(strchr(shval_errmsg(NULL), '\n') == NULL);
		ASSERT_ERR(shval_seg_open(bad[i], 0, NULL, &s), SHVAL_EBADNAME);
		ASSERT_ERR(shval_seg_unlink(bad[i]), SHVAL_EBADNAME);
	}
	ASSERT_ERR(shval_seg_unlink(NULL), SHVAL_EBADNAME);
	/* the longest name works */
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n200, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	ASSERT_STREQ(shval_seg_name(s), n200);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n200));
	ASSERT_ERR(shval_seg_unlink(n200), -ENOENT);
}

/* ---- flags and options ---- */

TEST(unknown_flags)
{
	const char *n = test_segname("flags");
	shval_seg *s = (shval_seg *)1;
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE | 0x80u, NULL, &s), -EINVAL);
	ASSERT(s == NULL);
	ASSERT(shval_errmsg(NULL)[0]);
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE | 0x100u, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, 0x80000000u, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, SHVAL_EXCL, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, SHVAL_TEMP, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE | SHVAL_RDONLY, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(NULL, 0, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, NULL, NULL), -EINVAL);
	/* bad options */
	shval_seg_opts o = { 0 };
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, &o, &s), -EINVAL);
	o.struct_size = sizeof o;
	o.initial_size = 1 << 20;
	o.max_size = 1 << 16;
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, &o, &s), -EINVAL);
	o.initial_size = 0;
	o.max_size = 1ull << 40;
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, &o, &s), -EINVAL);
	o.max_size = 0;
	o.mode = 010000;
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, &o, &s), -EINVAL);
	/* none of that created anything */
	struct stat st;
	char path[256];
	snprintf(path, sizeof path, "/dev/shm%s", n);
	ASSERT(stat(path, &st) != 0 && errno == ENOENT);

	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE, NULL, &s));
	shval *v = (shval *)1;
	ASSERT_ERR(shval_create(s, "v", "q", SHVAL_CREATE, NULL, 0, &v), -EINVAL);
	ASSERT(v == NULL);
	ASSERT(shval_errmsg(s)[0]);
	ASSERT_ERR(shval_create(s, "v", "q", 0x400u, NULL, 0, &v), -EINVAL);
	ASSERT_ERR(shval_create(s, "v", "q", SHVAL_ATOMIC | 0x1000u, NULL, 0, &v),
		   -EINVAL);
	ASSERT_ERR(shval_find_or_create(s, "v", "q", 0x400u, NULL, 0, &v, NULL),
		   -EINVAL);
	ASSERT_ERR(shval_find(s, "v", NULL, &v), SHVAL_ENOTFOUND);
	ASSERT_OK(shval_create(s, "v", "q", 0, NULL, 0, &v));
	char buf[64];
	ASSERT_ERR(shval_to_text(v, 0x2u, buf, sizeof buf, NULL), -EINVAL);
	shval_close(v);
	shval_seg *s2 = (shval_seg *)1;
	ASSERT_ERR(shval_seg_open_fd(shval_seg_fd(s), SHVAL_CREATE, &s2), -EINVAL);
	ASSERT(s2 == NULL);
	ASSERT_ERR(shval_seg_open_fd(shval_seg_fd(s), SHVAL_TEMP, &s2), -EINVAL);
	ASSERT_ERR(shval_seg_open_fd(-1, 0, &s2), -EBADF);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

TEST(error_names)
{
	static const int codes[] = {
#define X(n, v, t) SHVAL_##n,
		SHVAL_ERRORS(X)
#undef X
	};
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		ASSERT(strncmp(shval_errname(codes[i]), "SHVAL_E", 7) == 0);
		ASSERT(strncmp(shval_strerror(codes[i]), shval_errname(codes[i]),
			       strlen(shval_errname(codes[i]))) == 0);
	}
	ASSERT_STREQ(shval_errname(-ENOENT), "ENOENT");
	ASSERT(strncmp(shval_strerror(-ENOSPC), "ENOSPC: ", 8) == 0);
	ASSERT_STREQ(shval_errname(-30899), "SHVAL_E?");
	ASSERT_STREQ(shval_errname(12345), "SHVAL_E?");
	ASSERT_EQ(shval_version(), SHVAL_VERSION_HEX);
}

/* ---- shval_new ---- */

TEST(shval_new_in_fork_child)
{
	/* every mode */
	shval *vs[4];
	for (size_t m = 0; m < 4; m++) {
		ASSERT_OK(shval_new("q", all_modes[m], NULL, 0, &vs[m]));
		ASSERT_OK(shval_set_i64(vs[m], (int64_t)m + 1));
	}
	shval *str;
	ASSERT_ERR(shval_new("16s", 0, "\x03\0\0\0abc", 7, &str), SHVAL_ESIZE);
	unsigned char init[20] = { 3, 0, 0, 0, 'a', 'b', 'c' };
	ASSERT_OK(shval_new("16s", 0, init, sizeof init, &str));
	shval_seg *anon, *anon2;
	ASSERT_OK(shval_anon_segment(&anon));
	ASSERT_OK(shval_anon_segment(&anon2));
	ASSERT(anon == anon2);
	ASSERT_EQ(shval_segment(vs[0]), anon);
	struct shval_info in;
	ASSERT_OK(shval_info(vs[0], &in));
	char prefix[64];
	snprintf(prefix, sizeof prefix, "anon.%d.", (int)getpid());
	ASSERT(strncmp(in.name, prefix, strlen(prefix)) == 0);

	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		/* the child sees and changes the parent's values */
		for (size_t m = 0; m < 4; m++) {
			int64_t x;
			ASSERT_OK(shval_get_i64(vs[m], &x));
			ASSERT_EQ(x, (int64_t)m + 1);
			ASSERT_OK(shval_add_i64(vs[m], 100, NULL));
		}
		char b[32];
		size_t len;
		ASSERT_OK(shval_get_str(str, b, sizeof b, &len));
		ASSERT_EQ(len, 3);
		/* and makes new ones in the same anonymous segment */
		for (size_t m = 0; m < 4; m++) {
			shval *c;
			ASSERT_OK(shval_new("d", all_modes[m], NULL, 0, &c));
			ASSERT_EQ(shval_segment(c), anon);
			ASSERT_OK(shval_set_f64(c, 0.5 + (double)m));
			shval_close(c);
		}
		/* a grandchild too */
		pid_t g = fork();
		ASSERT(g >= 0);
		if (g == 0) {
			shval *c;
			ASSERT_OK(shval_new("i", SHVAL_LOCK, NULL, 0, &c));
			ASSERT_OK(shval_set_i64(c, -9));
			ASSERT_OK(shval_add_i64(vs[0], 1000, NULL));
			_exit(0);
		}
		test_wait_ok(g);
		_exit(0);
	}
	test_wait_ok(pid);
	for (size_t m = 0; m < 4; m++) {
		int64_t x;
		ASSERT_OK(shval_get_i64(vs[m], &x));
		ASSERT_EQ(x, (int64_t)m + 101 + (m == 0 ? 1000 : 0));
	}
	/* the child's values are in the parent's anonymous segment */
	snprintf(prefix, sizeof prefix, "anon.%d.", (int)pid);
	uint64_t cur = 0;
	int n = 0;
	while (shval_seg_next(anon, &cur, prefix, &in) == 0) {
		shval *c;
		double d;
		ASSERT_OK(shval_find(anon, in.name, "d", &c));
		ASSERT_OK(shval_get_f64(c, &d));
		ASSERT(d == 0.5 || d == 1.5 || d == 2.5 || d == 3.5);
		shval_close(c);
		n++;
	}
	ASSERT_EQ(n, 4);
	/* and the grandchild's */
	cur = 0;
	n = 0;
	while (shval_seg_next(anon, &cur, "anon.", &in) == 0)
		if (strcmp(in.type, "i") == 0) {
			shval *c;
			int64_t x;
			ASSERT_OK(shval_find(anon, in.name, "i", &c));
			ASSERT_OK(shval_get_i64(c, &x));
			ASSERT_EQ(x, -9);
			ASSERT_EQ(in.mode, SHVAL_LOCK);
			shval_close(c);
			n++;
		}
	ASSERT_EQ(n, 1);
	for (size_t m = 0; m < 4; m++)
		shval_close(vs[m]);
	shval_close(str);
}

/* A child that first uses shval_new after fork gets its own segment. */
TEST(shval_new_first_in_child)
{
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval *v;
		ASSERT_OK(shval_new("q", SHVAL_ATOMIC, NULL, 0, &v));
		ASSERT_OK(shval_set_i64(v, 5));
		shval_seg *a;
		ASSERT_OK(shval_anon_segment(&a));
		ASSERT_EQ(write(p[1], "x", 1), 1);
		_exit(0);
	}
	char c;
	ASSERT_EQ(read(p[0], &c, 1), 1);
	test_wait_ok(pid);
	shval_seg *a;
	ASSERT_OK(shval_anon_segment(&a));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(a, &si));
	ASSERT_EQ(si.nvalues, 0);
	ASSERT_EQ(si.creator_pid, getpid());
}

/* One validator for every writer: a bool written through a field or an
 * array range is checked like a whole-value write, and verify agrees. */
TEST(bool_bytes_checked_on_every_path)
{
	shval_seg *s;
	shval *v, *a;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	ASSERT_OK(shval_create(s, "st", "flag:? n:q", 0, NULL, 0, &v));
	ASSERT_OK(shval_create(s, "arr", "4?", 0, NULL, 0, &a));
	unsigned char two = 2, one = 1, bools[3] = { 1, 2, 0 };
	ASSERT_ERR(shval_field_set(v, "flag", &two, 1), SHVAL_ERANGE);
	ASSERT(strstr(shval_errmsg(s), "flag"));
	ASSERT_OK(shval_field_set(v, "flag", &one, 1));
	ASSERT_ERR(shval_array_set(a, 1, 3, bools), SHVAL_ERANGE);
	ASSERT_OK(shval_array_set(a, 0, 1, &one));
	unsigned char got[4];
	ASSERT_OK(shval_array_get(a, 0, 4, got));
	ASSERT_EQ(got[0], 1);
	ASSERT_EQ(got[2], 0);
	size_t n = 99;
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, NULL, NULL, &n));
	ASSERT_EQ(n, 0);
	shval_close(v);
	shval_close(a);
	shval_seg_close(s);
}

TEST_MAIN()
