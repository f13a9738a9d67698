/*
 * src/scalar.c — typed scalars: get/set by number class (int64, uint64,
 * double) with range checks, and the read-modify-writes (add, and/or/xor,
 * exchange, compare-and-swap; integer and float).  Atomic values use
 * atomic.h; locked and raw values one change (section.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"
#include "section.h"

/* ---- typed scalars ---- */

enum { NUM_INT, NUM_UINT, NUM_FLOAT };
typedef struct num {
	int cls;
	int64_t i;
	uint64_t u;
	double d;
} num;

static num load_num(char c, const void *p)
{
	const shval__letter *l = shval__letter_info(c);
	num x = { NUM_INT, 0, 0, 0 };
	if (l->cls == SHVAL__L_FLOAT) {
		x.cls = NUM_FLOAT;
		if (l->size == 4) {
			float y;
			memcpy(&y, p, 4);
			x.d = y;
		} else {
			memcpy(&x.d, p, 8);
		}
	} else if (l->is_signed) {
		x.i = (int64_t)shval__int_load(l, p);
	} else {
		x.cls = NUM_UINT;
		x.u = shval__int_load(l, p);
	}
	return x;
}

/* Does the integer x fit letter l's range? */
static bool int_fits(const shval__letter *l, int64_t x)
{
	return l->is_signed ? (x >= l->min && x <= (int64_t)l->max)
			    : (x >= 0 && (uint64_t)x <= l->max);
}

/* Encode number x for letter c into out (letter-size bytes), range-checked. */
static int encode(shval *v, char c, num x, void *out)
{
	if (c == 'f' || c == 'd') {
		double d = x.cls == NUM_FLOAT ? x.d
			   : x.cls == NUM_INT ? (double)x.i
					      : (double)x.u;
		if (c == 'f') {
			if (isfinite(d) && fabs(d) > 3.4028234663852886e38)
				return shval__failf(
					v->seg, SHVAL_ERANGE,
					"%g is out of range for type f", d);
			float f = (float)d;
			memcpy(out, &f, 4);
		} else {
			memcpy(out, &d, 8);
		}
		return 0;
	}
	if (x.cls == NUM_FLOAT)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "a float given for integer type %c", c);
	const shval__letter *l = shval__letter_info(c);
	if (x.cls == NUM_INT && x.i < 0) {
		if (x.i < l->min)
			return shval__failf(v->seg, SHVAL_ERANGE,
					    "%lld is out of range for type %c",
					    (long long)x.i, c);
		shval__int_store(l, out, (uint64_t)x.i);
		return 0;
	}
	uint64_t u = x.cls == NUM_INT ? (uint64_t)x.i : x.u;
	if (u > l->max)
		return shval__failf(v->seg, SHVAL_ERANGE,
				    "%llu is out of range for type %c",
				    (unsigned long long)u, c);
	shval__int_store(l, out, u);
	return 0;
}

/* The letter of a scalar value (-EINVAL for NULL, SHVAL_EMODE for a value
 * that is not a scalar). */
static int scalar_code(shval *v, char *c)
{
	if (!v)
		return -EINVAL;
	if (v->kind != SHVAL_KIND_SCALAR)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s is not a scalar",
				    v->type->canon);
	*c = v->type->fields[0].code;
	return 0;
}

/* scalar_code for a function with a pointer argument p (its output or
 * expected value): -EINVAL when p is NULL, first. */
static int scalar_code_p(shval *v, const void *p, char *c)
{
	return p ? scalar_code(v, c) : -EINVAL;
}

/* The number of a scalar value, for a getter whose output is out (-EINVAL
 * when v or out is NULL). */
static int get_num(shval *v, const void *out, num *x)
{
	char c = 0;
	int r = scalar_code_p(v, out, &c);
	if (r)
		return r;
	unsigned char b[8];
	r = shval__read_consistent(v, 0, v->size, b);
	if (r)
		return r;
	*x = load_num(c, b);
	return 0;
}

/* An integer value's number into out, an int64_t (is_signed) or a
 * uint64_t, or SHVAL_ERANGE where it does not fit that type. */
static int get_int(shval *v, bool is_signed, void *out)
{
	num x;
	int r = get_num(v, out, &x);
	if (r)
		return r;
	if (x.cls == NUM_FLOAT)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s: use shval_get_f64",
				    v->type->canon);
	if (is_signed && x.cls == NUM_UINT && x.u > INT64_MAX)
		return shval__failf(
			v->seg, SHVAL_ERANGE,
			"%llu does not fit int64_t (use shval_get_u64)",
			(unsigned long long)x.u);
	if (!is_signed && x.cls == NUM_INT && x.i < 0)
		return shval__failf(v->seg, SHVAL_ERANGE,
				    "%lld does not fit uint64_t",
				    (long long)x.i);
	if (is_signed)
		*(int64_t *)out = x.cls == NUM_INT ? x.i : (int64_t)x.u;
	else
		*(uint64_t *)out = x.cls == NUM_INT ? (uint64_t)x.i : x.u;
	return 0;
}

SHVAL_API int shval_get_i64(shval *v, int64_t *out)
{
	if (SHVAL__REMOTE(v))
		return shval__r_get_i64(v, out);
	return get_int(v, true, out);
}

SHVAL_API int shval_get_u64(shval *v, uint64_t *out)
{
	if (SHVAL__REMOTE(v))
		return shval__r_get_u64(v, out);
	return get_int(v, false, out);
}

SHVAL_API int shval_get_f64(shval *v, double *out)
{
	if (SHVAL__REMOTE(v))
		return shval__r_get_f64(v, out);
	num x;
	int r = get_num(v, out, &x);
	if (r)
		return r;
	if (x.cls == NUM_FLOAT) {
		*out = x.d;
		return 0;
	}
	double d = x.cls == NUM_INT ? (double)x.i : (double)x.u;
	bool exact =
		x.cls == NUM_INT
			? (d >= -9223372036854775808.0 &&
			   d < 9223372036854775808.0 && (int64_t)d == x.i)
			: (d < 18446744073709551616.0 && (uint64_t)d == x.u);
	if (!exact)
		return shval__failf(
			v->seg, SHVAL_ERANGE,
			"integer value is not exactly representable "
			"as a double");
	*out = d;
	return 0;
}

static int set_num(shval *v, num x)
{
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	if ((c == 'f' || c == 'd') && x.cls != NUM_FLOAT)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %c: use shval_set_f64", c);
	unsigned char b[8];
	r = encode(v, c, x, b);
	if (r)
		return r;
	return shval__write_range(v, 0, v->size, b, true);
}

SHVAL_API int shval_set_i64(shval *v, int64_t x)
{
	if (SHVAL__REMOTE(v))
		return shval__r_set_i64(v, x);
	return set_num(v, (num){ NUM_INT, x, 0, 0 });
}

SHVAL_API int shval_set_u64(shval *v, uint64_t x)
{
	if (SHVAL__REMOTE(v))
		return shval__r_set_u64(v, x);
	return set_num(v, (num){ NUM_UINT, 0, x, 0 });
}

SHVAL_API int shval_set_f64(shval *v, double x)
{
	if (SHVAL__REMOTE(v))
		return shval__r_set_f64(v, x);
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	if (c != 'f' && c != 'd') {
		/* An integer value takes a double that is a whole number in
		 * its range, exactly. */
		if (!isfinite(x) || trunc(x) != x)
			return shval__failf(
				v->seg, SHVAL_ERANGE,
				"%g is not a whole number (type %c)", x, c);
		if (x < 0) {
			if (x < -9223372036854775808.0)
				return shval__failf(
					v->seg, SHVAL_ERANGE,
					"%g is out of range for type %c", x, c);
			return set_num(v, (num){ NUM_INT, (int64_t)x, 0, 0 });
		}
		if (x >= 18446744073709551616.0)
			return shval__failf(v->seg, SHVAL_ERANGE,
					    "%g is out of range for type %c", x,
					    c);
		return set_num(v, (num){ NUM_UINT, 0, (uint64_t)x, 0 });
	}
	return set_num(v, (num){ NUM_FLOAT, 0, 0, x });
}

/* ---- read-modify-write ---- */

enum rmw_op {
	OP_ADD = SHVAL__RMW_ADD,
	OP_AND = SHVAL__RMW_AND,
	OP_OR = SHVAL__RMW_OR,
	OP_XOR = SHVAL__RMW_XOR,
	OP_XCHG = SHVAL__RMW_XCHG
};

/* Sign- or zero-extend raw bits of letter c to int64. */
static int64_t extend(char c, uint64_t bits)
{
	return (int64_t)shval__int_extend(shval__letter_info(c), bits);
}

static uint64_t apply(enum rmw_op op, uint64_t a, uint64_t b)
{
	switch (op) {
	case OP_ADD:
		return a + b;
	case OP_AND:
		return a & b;
	case OP_OR:
		return a | b;
	case OP_XOR:
		return a ^ b;
	default:
		return b;
	}
}

/* The result of op on old for a letter narrower than its bits (max < all
 * ones): false if it falls outside 0..max.  An add is taken as true
 * integer arithmetic (a delta never wraps into range); masks keep their
 * bits within the type's width, as for every letter. */
static bool ranged_apply(enum rmw_op op, uint64_t old, uint64_t arg,
			 uint64_t max, uint64_t wmask, uint64_t *nw)
{
	if (op == OP_ADD) {
		int64_t d = (int64_t)arg;
		if (d >= 0 ? (uint64_t)d > max - old
			   : (uint64_t)(-(d + 1)) + 1 > old)
			return false;
		*nw = old + arg;
		return true;
	}
	*nw = apply(op, old, op == OP_XCHG ? arg : arg & wmask);
	return *nw <= max;
}

/* Integer read-modify-write; *before and *after get the raw bits. */
static int rmw_int(shval *v, enum rmw_op op, uint64_t arg, uint64_t *before,
		   uint64_t *after)
{
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	if (c == 'f' || c == 'd')
		return shval__failf(v->seg, SHVAL_EMODE,
				    "integer operation on a value of type %c",
				    c);
	if (c == '?' && op != OP_XCHG)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "arithmetic on a bool value");
	uint64_t old = 0, nw;
	const shval__letter *lt = shval__letter_info(c);
	uint64_t wmask = v->size == 8 ? ~0ull : ((1ull << (8 * v->size)) - 1);
	/* A letter narrower than its bits ('u': code points up to U+10FFFF in
	 * 4 bytes) does not wrap: a result outside its range is refused, the
	 * value unchanged (an atomic one through a compare-and-swap loop). */
	bool ranged = !lt->is_signed && lt->max < wmask && c != '?';
	if (v->mode == SHVAL_ATOMIC && ranged) {
		if ((r = shval__check_writable(v)) != 0)
			return r;
		old = shval__atomic_load(v->data, v->size);
		do {
			if (old > lt->max ||
			    !ranged_apply(op, old, arg, lt->max, wmask, &nw))
				return shval__failf(
					v->seg, SHVAL_ERANGE,
					"the result is out of range for "
					"type %c (0..0x%llx): value unchanged",
					c, (unsigned long long)lt->max);
		} while (!shval__atomic_cas(v->data, v->size, &old, nw));
		shval__atomic_changed(v);
	} else if (v->mode == SHVAL_ATOMIC) {
		if ((r = shval__check_writable(v)) != 0)
			return r;
		old = shval__atomic_rmw(v->data, v->size, (enum shval__rmw)op,
					arg);
		nw = apply(op, old, arg);
		shval__atomic_changed(v);
	} else {
		/* (an unsigned 64-bit letter takes any bits here, where
		 * shval_exchange_i64 of an atomic value refuses x < 0) */
		const shval__letter *l = shval__letter_info(c);
		if (op == OP_XCHG &&
		    !(l->is_signed ? int_fits(l, (int64_t)arg) : arg <= l->max))
			return shval__failf(v->seg, SHVAL_ERANGE,
					    "%lld is out of range for type %c",
					    (long long)arg, c);
		int how;
		if ((r = shval__chg_begin(v, &how)) != 0)
			return r;
		shval__copy(&old, v->data,
			    v->size); /* little-endian: low bytes */
		nw = apply(op, old, arg);
		if (ranged &&
		    (old > lt->max ||
		     !ranged_apply(op, old, arg, lt->max, wmask, &nw))) {
			shval__chg_end(v, how, false);
			return shval__failf(v->seg, SHVAL_ERANGE,
					    "the result is out of range for "
					    "type %c (0..0x%llx): value "
					    "unchanged",
					    c, (unsigned long long)lt->max);
		}
		shval__chg_dirty(v, how);
		shval__int_store(shval__letter_info(c), v->data, nw);
		shval__chg_end(v, how, true);
	}
	uint64_t mask = v->size == 8 ? ~0ull : ((1ull << (8 * v->size)) - 1);
	if (before)
		*before = old & mask;
	if (after)
		*after = nw & mask;
	return 0;
}

SHVAL_API int shval_add_i64(shval *v, int64_t delta, int64_t *result)
{
	if (SHVAL__REMOTE(v))
		return shval__r_add_i64(v, delta, result);
	if (!v)
		return -EINVAL;
	/* Fast path (the common counter): an 8-byte integer atomic in a
	 * writable segment is one lock xadd plus the waiter checks. */
	if (v->fast_add &&
	    atomic_load_explicit(&v->e->serial, memory_order_relaxed) ==
		    v->serial &&
	    atomic_load_explicit(&v->e->state, memory_order_acquire) ==
		    SHVAL__ST_LIVE) {
		int64_t o = __atomic_fetch_add((int64_t *)v->data, delta,
					       __ATOMIC_SEQ_CST);
		shval__atomic_changed(v);
		if (result)
			*result = (int64_t)((uint64_t)o + (uint64_t)delta);
		return 0;
	}
	if (v->fast_add32 &&
	    atomic_load_explicit(&v->e->serial, memory_order_relaxed) ==
		    v->serial &&
	    atomic_load_explicit(&v->e->state, memory_order_acquire) ==
		    SHVAL__ST_LIVE) {
		/* A 4-byte integer atomic ('i', 'I': Python's Value('i')):
		 * wraps at its width, as rmw_int does. */
		uint32_t o = __atomic_fetch_add(
			(uint32_t *)v->data, (uint32_t)delta, __ATOMIC_SEQ_CST);
		shval__atomic_changed(v);
		uint32_t nw = o + (uint32_t)delta;
		if (result)
			*result = v->fast_add32 == 's' ? (int64_t)(int32_t)nw
						       : (int64_t)nw;
		return 0;
	}
	if (v->int64 && v->mode != SHVAL_ATOMIC) {
		/* Locked (or raw) 64-bit counter: one change, no letter logic. */
		int how;
		int r = shval__chg_begin(v, &how);
		if (r)
			return r;
		uint64_t x;
		__builtin_memcpy(&x, v->data, 8);
		x += (uint64_t)delta; /* wraps, as the hardware's add */
		shval__chg_dirty(v, how);
		__builtin_memcpy(v->data, &x, 8);
		shval__chg_end(v, how, true);
		if (result)
			*result = (int64_t)x;
		return 0;
	}
	uint64_t after = 0;
	int r = rmw_int(v, OP_ADD, (uint64_t)delta, NULL, &after);
	if (r == 0 && result)
		*result = extend(v->type->fields[0].code, after);
	return r;
}

SHVAL_API int shval_sub_i64(shval *v, int64_t delta, int64_t *result)
{
	if (SHVAL__REMOTE(v))
		return shval__r_sub_i64(v, delta, result);
	return shval_add_i64(v, (int64_t)(0 - (uint64_t)delta), result);
}

/* The bit operations: which = 0 and, 1 or, 2 xor (shval__r_bitop's
 * numbering). */
static int bitop(shval *v, int which, uint64_t mask, uint64_t *old)
{
	static const enum rmw_op ops[] = { OP_AND, OP_OR, OP_XOR };
	if (SHVAL__REMOTE(v))
		return shval__r_bitop(v, which, mask, old);
	return rmw_int(v, ops[which], mask, old, NULL);
}

SHVAL_API int shval_and_u64(shval *v, uint64_t mask, uint64_t *old)
{
	return bitop(v, 0, mask, old);
}

SHVAL_API int shval_or_u64(shval *v, uint64_t mask, uint64_t *old)
{
	return bitop(v, 1, mask, old);
}

SHVAL_API int shval_xor_u64(shval *v, uint64_t mask, uint64_t *old)
{
	return bitop(v, 2, mask, old);
}

SHVAL_API int shval_exchange_i64(shval *v, int64_t x, int64_t *old)
{
	if (SHVAL__REMOTE(v))
		return shval__r_exchange_i64(v, x, old);
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	if (v->mode == SHVAL_ATOMIC && !int_fits(shval__letter_info(c), x))
		return shval__failf(v->seg, SHVAL_ERANGE,
				    "%lld is out of range for type %c",
				    (long long)x, c);
	uint64_t before = 0;
	r = rmw_int(v, OP_XCHG, (uint64_t)x, &before, NULL);
	if (r == 0 && old)
		*old = extend(c, before);
	return r;
}

SHVAL_API int shval_cas_i64(shval *v, int64_t *expected, int64_t desired)
{
	if (SHVAL__REMOTE(v))
		return shval__r_cas_i64(v, expected, desired);
	char c = 0;
	int r = scalar_code_p(v, expected, &c);
	if (r)
		return r;
	if (c == 'f' || c == 'd')
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %c: use shval_cas_f64", c);
	unsigned char want[8] = { 0 }, nw[8] = { 0 };
	if ((r = encode(v, c, (num){ NUM_INT, desired, 0, 0 }, nw)) != 0)
		return r;
	if ((r = shval__check_writable(v)) != 0)
		return r;
	const shval__letter *l = shval__letter_info(c);
	bool fits = int_fits(l, *expected);
	shval__int_store(l, want, (uint64_t)*expected);
	if (v->mode == SHVAL_ATOMIC) {
		uint64_t cur = 0, d = 0;
		memcpy(&cur, want, 8);
		memcpy(&d, nw, 8);
		bool ok = fits && shval__atomic_cas(v->data, v->size, &cur, d);
		if (!fits)
			cur = shval__atomic_load(v->data, v->size);
		if (ok) {
			shval__atomic_changed(v);
			return 0;
		}
		*expected = extend(c, cur);
		return SHVAL_ECHANGED;
	}
	int how;
	if ((r = shval__chg_begin(v, &how)) != 0)
		return r;
	if (fits && memcmp(v->data, want, v->size) == 0) {
		shval__chg_dirty(v, how);
		memcpy(v->data, nw, v->size);
		shval__chg_end(v, how, true);
		return 0;
	}
	uint64_t cur = 0;
	memcpy(&cur, v->data, v->size);
	shval__chg_end(v, how, false);
	*expected = extend(c, cur);
	return SHVAL_ECHANGED;
}

/* Float add / CAS: compare-and-swap loop on atomic values. */
static int float_op(shval *v, bool is_add, double arg, double *expected,
		    double desired, double *result)
{
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	if (c != 'f' && c != 'd')
		return shval__failf(v->seg, SHVAL_EMODE,
				    "float operation on a value of type %c", c);
	if ((r = shval__check_writable(v)) != 0)
		return r;
	if (v->mode == SHVAL_ATOMIC) {
		/* a compare-and-swap loop on the bits (little-endian: the
		 * value's bytes are the low bytes) */
		uint64_t o = shval__atomic_load(v->data, v->size);
		for (;;) {
			double nd;
			if (is_add) {
				nd = load_num(c, &o).d + arg;
			} else {
				uint64_t eb = 0;
				encode(v, c,
				       (num){ NUM_FLOAT, 0, 0, *expected },
				       &eb);
				if (eb != o) {
					*expected = load_num(c, &o).d;
					return SHVAL_ECHANGED;
				}
				nd = desired;
			}
			uint64_t n = 0;
			if ((r = encode(v, c, (num){ NUM_FLOAT, 0, 0, nd },
					&n)) != 0)
				return r;
			if (shval__atomic_cas(v->data, v->size, &o, n)) {
				if (result)
					*result = load_num(c, &n).d;
				break;
			}
		}
		shval__atomic_changed(v);
		return 0;
	}
	int how;
	if ((r = shval__chg_begin(v, &how)) != 0)
		return r;
	num cur = load_num(c, v->data);
	double nd;
	if (is_add) {
		nd = cur.d + arg;
	} else {
		unsigned char eb[8];
		encode(v, c, (num){ NUM_FLOAT, 0, 0, *expected }, eb);
		if (memcmp(eb, v->data, v->size) != 0) {
			shval__chg_end(v, how, false);
			*expected = cur.d;
			return SHVAL_ECHANGED;
		}
		nd = desired;
	}
	unsigned char nb[8];
	r = encode(v, c, (num){ NUM_FLOAT, 0, 0, nd }, nb);
	if (r == 0) {
		shval__chg_dirty(v, how);
		memcpy(v->data, nb, v->size);
		if (result)
			*result = load_num(c, nb).d;
	}
	shval__chg_end(v, how, r == 0);
	return r;
}

SHVAL_API int shval_add_f64(shval *v, double delta, double *result)
{
	if (SHVAL__REMOTE(v))
		return shval__r_add_f64(v, delta, result);
	if (!v)
		return -EINVAL;
	return float_op(v, true, delta, NULL, 0, result);
}

SHVAL_API int shval_cas_f64(shval *v, double *expected, double desired)
{
	if (SHVAL__REMOTE(v))
		return shval__r_cas_f64(v, expected, desired);
	if (!v || !expected)
		return -EINVAL;
	return float_op(v, false, 0, expected, desired, NULL);
}
