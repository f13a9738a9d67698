/*
 * src/value.c — handles, reads, writes, typed scalars, atomics, strings,
 * arrays, struct fields, text.
 *
 * Every public call checks the handle's serial first (SHVAL_ESTALE), and
 * dispatches on the value's mode:
 *   atomic  __atomic builtins on the data, of the value's width; waiters
 *           are woken only when the version word's WAITERS bit is set;
 *   locked  reads: read_consistent() (seqlock, no lock, see lock.c);
 *           writes: a change (section.h: shval__chg_begin/dirty/end);
 *   raw     plain copies; writes through the API still move the version
 *           so that shval_wait works.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "section.h"

/* ---- handles ---- */

static void handle_free(shval *v)
{
	if (!v)
		return;
	if (v->type_owned)
		shval__type_free(v->type);
	if (v->seg)
		shval__seg_unref(v->seg);
	free(v);
}

/* A handle on a lock entry: no data, a pseudo type "lock". */
static int lock_handle_make(shval_seg *seg, uint64_t off, shval__entry *e,
			    uint64_t serial, shval **out)
{
	uint64_t lo = e->lock_off;
	if (e->mode > 1 || lo != off + e->data_rel || lo % 8 ||
	    e->data_rel + sizeof(shval__lockblk) > (uint64_t)e->nlines * SHVAL__LINE)
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: lock entry %.*s is damaged",
				    seg->name, (int)e->name_len, e->name);
	shval *v = calloc(1, sizeof *v);
	shval__type *t = calloc(1, sizeof *t);
	if (t) {
		t->fields = calloc(1, sizeof *t->fields);
		t->canon = strdup("lock");
	}
	if (!v || !t || !t->fields || !t->canon) {
		shval__type_free(t);
		free(v);
		return shval__failf(seg, -ENOMEM, "out of memory");
	}
	t->kind = SHVAL_KIND_LOCK;
	v->type_owned = true;
	t->nfields = 1;
	t->align = 1;
	v->seg = seg;
	v->off = off;
	v->serial = serial;
	v->e = e;
	v->type = t;
	v->mode = (unsigned)e->mode << 8;
	v->kind = SHVAL_KIND_LOCK;
	v->size = 0;
	v->lk = shval__at(seg, lo);
	v->data = (unsigned char *)v->lk;
	shval__seg_ref(seg);
	*out = v;
	return 0;
}

/* The public header's inline fast paths read these (struct shval__fast):
 * only the cases they can finish alone get a flag. */
static void fast_init(shval *v)
{
	struct shval__fast *f = &v->fast;
	shval__entry *e = v->e;
	f->flags = 0;
	if (v->undo && v->kind != SHVAL_KIND_LOCK && v->size <= UINT32_MAX)
		f->flags |= SHVAL__F_SEQREAD;
	if (v->fast_add)
		f->flags |= SHVAL__F_ATOMIC64;
	f->size = (unsigned)v->size;
	f->data = v->data;
	f->version = (const uint64_t *)(void *)&e->version;
	f->serial = (const uint64_t *)(void *)&e->serial;
	f->serial_want = v->serial;
	f->state = (const uint8_t *)(void *)&e->state;
	f->waiters = (const uint32_t *)(void *)&e->waiters;
	f->seg_version = (const uint64_t *)(void *)&v->seg->hdr->version;
}

SHVAL_API void shval__fast_wake(shval *v)
{
	if (v)
		shval__wake_after_change(v->seg, v->e, false);
}

int shval__handle_make(shval_seg *seg, uint64_t off, shval **out)
{
	*out = NULL;
	shval__entry *e = shval__entry_at(seg, off);
	if (!e)
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: entry at offset %llu is damaged",
				    seg->name, (unsigned long long)off);
	uint64_t serial = atomic_load_explicit(&e->serial, memory_order_acquire);
	if (e->kind == SHVAL_KIND_LOCK)
		return lock_handle_make(seg, off, e, serial, out);
	uint64_t tsize;
	const char *canon = shval__entry_type(seg, e, &tsize);
	if (!canon)
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: value %.*s: type record damaged",
				    seg->name, (int)e->name_len, e->name);
	shval *v = calloc(1, sizeof *v);
	if (!v)
		return shval__failf(seg, -ENOMEM, "out of memory");
	char err[256];
	v->type = shval__seg_type(seg, e->type_line, canon, err, sizeof err);
	if (!v->type) {
		free(v);
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: value %.*s: stored type: %s",
				    seg->name, (int)e->name_len, e->name, err);
	}
	uint64_t bytes = (uint64_t)e->nlines * SHVAL__LINE;
	unsigned mode = (unsigned)e->mode << 8;
	v->seg = seg;
	v->off = off;
	v->serial = serial;
	v->e = e;
	v->mode = mode;
	v->kind = v->type->kind;
	v->size = v->type->size;
	v->data = (unsigned char *)e + e->data_rel;
	const char *bad = NULL;
	if (tsize != v->size || e->kind != v->kind)
		bad = "size or kind differs from its type";
	else if (e->mode > 3)
		bad = "unknown mode";
	else if (e->data_rel + v->size > bytes || e->data_rel % v->type->align)
		bad = "data outside its block";
	else if (mode == SHVAL_ATOMIC &&
		 (v->kind != SHVAL_KIND_SCALAR ||
		  !(v->size == 1 || v->size == 2 || v->size == 4 || v->size == 8)))
		bad = "atomic mode on a type that cannot be atomic";
	if (!bad && (mode == SHVAL_RLOCK || mode == SHVAL_LOCK)) {
		uint64_t lo = e->lock_off;
		if (lo % 8 || !shval__in(seg, lo, sizeof(shval__lockblk)) ||
		    lo < sizeof(shval__hdr))
			bad = "lock outside the segment";
		else
			v->lk = shval__at(seg, lo);
		v->own_lock = lo >= off && lo + sizeof(shval__lockblk) <= off + bytes;
		uint64_t undo_rel = shval__undo_rel(e->data_rel, v->size);
		if (!bad && v->size <= SHVAL__UNDO_MAX) {
			if (undo_rel + v->size > bytes)
				bad = "undo copy outside its block";
			else
				v->undo = (unsigned char *)e + undo_rel;
		}
	}
	if (bad) {
		free(v);
		return shval__failf(seg, SHVAL_ECORRUPT, "segment %s: value %.*s: %s",
				    seg->name, (int)e->name_len, e->name, bad);
	}
	v->needs_check = strpbrk(canon, "?s") != NULL;
	v->fast_sec = v->own_lock && !(seg->flags & SHVAL_RDONLY);
	if (v->kind == SHVAL_KIND_SCALAR && v->size == 8) {
		char c = v->type->fields[0].code;
		v->int64 = c == 'q' || c == 'l' || c == 'n' || c == 'Q' ||
			   c == 'L' || c == 'N';
	}
	v->fast_add = v->int64 && mode == SHVAL_ATOMIC &&
		      !(seg->flags & SHVAL_RDONLY);
	fast_init(v);
	shval__seg_ref(seg);
	if (shval__check(v) != 0) {
		handle_free(v);
		return shval__failf(seg, SHVAL_ENOTFOUND,
				    "segment %s: value removed while opening",
				    seg->name);
	}
	*out = v;
	return 0;
}

SHVAL_API void shval_close(shval *v)
{
	handle_free(v);
}

SHVAL_API shval_seg *shval_segment(shval *v)
{
	return v ? v->seg : NULL;
}

int shval__fill_info(shval_seg *seg, shval__entry *e, struct shval_info *info)
{
	memset(info, 0, sizeof *info);
	memcpy(info->name, e->name, e->name_len);
	if (e->kind == SHVAL_KIND_LOCK) {
		snprintf(info->type, sizeof info->type, "lock");
		info->mode = (unsigned)e->mode << 8;
		info->kind = SHVAL_KIND_LOCK;
		return 0;
	}
	uint64_t size;
	const char *canon = shval__entry_type(seg, e, &size);
	if (!canon)
		return SHVAL_ECORRUPT;
	char err[64];
	shval__type *t = shval__seg_type(seg, e->type_line, canon, err, sizeof err);
	if (!t)
		return SHVAL_ECORRUPT;
	snprintf(info->type, sizeof info->type, "%s", t->canon);
	info->mode = (unsigned)e->mode << 8;
	info->kind = t->kind;
	info->size = t->size;
	info->count = t->kind == SHVAL_KIND_STRUCT ? t->nfields : t->fields[0].count;
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_acquire);
	info->version = ver & ~(SHVAL__V_WAITERS | SHVAL__V_WRITING);
	if (info->mode == SHVAL_ATOMIC && t->size <= 8 &&
	    e->data_rel + t->size <= (uint64_t)e->nlines * SHVAL__LINE) {
		uint64_t x = 0;
		memcpy(&x, (unsigned char *)e + e->data_rel, t->size);
		info->version = x;
	}
	info->flags = (e->flags & SHVAL__EF_PARTIAL) ? SHVAL_INFO_PARTIAL : 0;
	return 0;
}

SHVAL_API int shval_info(shval *v, struct shval_info *info)
{
	if (!v || !info)
		return -EINVAL;
	int r = shval__check(v);
	if (r)
		return r;
	r = shval__fill_info(v->seg, v->e, info);
	if (r == 0 && v->mode == SHVAL_ATOMIC)
		info->version = shval_value_version(v);
	return r;
}

/* ---- consistent reads ---- */

/* tag-seqlock: the copy races with a writer by design (the version check
 * afterwards discards torn copies).  Under ThreadSanitizer the copy is
 * done by an uninstrumented loop so that only real races are reported
 * (tests/tsan.supp covers the rest). */
#if defined(__SANITIZE_THREAD__)
__attribute__((no_sanitize_thread, noinline)) static void
seq_copy(void *dst, const void *src, size_t n)
{
	volatile unsigned char *d = dst;
	const volatile unsigned char *s = src;
	for (size_t i = 0; i < n; i++)
		d[i] = s[i];
}
#else
/* Small values (the common case) without a call: whole 8-byte words. */
static inline void seq_copy(void *dst, const void *src, size_t n)
{
	if (n <= 64 && n % 8 == 0) {
		unsigned char *d = dst;
		const unsigned char *s = src;
		for (size_t i = 0; i < n; i += 8)
			__builtin_memcpy(d + i, s + i, 8);
	} else {
		memcpy(dst, src, n);
	}
}
#endif

/* How long a reader of a value without an undo copy (over SHVAL__UNDO_MAX
 * bytes) waits for a section in progress before it gives up. */
#define BIG_READ_WAIT_NS 2000000000ll

/* A reader met WRITING on a value without an undo copy.  Sleep until the
 * version moves (bounded), recovering a stuck or dead writer's section.
 * 0 to retry the read; 1 to read the data as it is (read-only mapping,
 * writer gone: every element is whole); or an error. */
static int wait_for_writer(shval *v, uint64_t v1, int64_t deadline)
{
	shval__entry *e = v->e;
	uint32_t owner = shval__mutex_owner(&v->lk->mutex);
	if (owner == 0 || shval__lock_stale(v->seg, &v->lk->mutex, NULL)) {
		/* WRITING with no live holder: the writer died (or the image
		 * was saved mid-section).  Writable: take and release the
		 * lock, which rolls the section back (flagged PARTIAL).
		 * Read-only: read the elements as they are. */
		if (v->seg->flags & SHVAL_RDONLY)
			return 1;
		int r = shval_trylock(v);
		if (r == 0 || r == SHVAL_EOWNERDEAD)
			shval_unlock(v);
		else if (r != -EBUSY)
			return r;
		return shval__check(v);
	}
	int64_t now = (int64_t)shval__now_ns();
	if (now >= deadline)
		return shval__failf(v->seg, -ETIMEDOUT,
				    "segment %s: value %.*s: thread %u has been "
				    "changing it for over %lld ms (stopped?); a "
				    "value over %u bytes has no undo copy, so "
				    "readers wait for its writer",
				    v->seg->name, (int)e->name_len, e->name,
				    (unsigned)owner, BIG_READ_WAIT_NS / 1000000,
				    SHVAL__UNDO_MAX);
	int64_t until = now + 10 * 1000000; /* re-judge the owner every 10 ms */
	if (!(v->seg->flags & SHVAL_RDONLY))
		atomic_fetch_or_explicit(&e->waiters, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&e->version, memory_order_seq_cst) == v1)
		shval__futex_wait(&e->version, (uint32_t)v1,
				  until < deadline ? until : deadline);
	return shval__check(v);
}

/* Copy n bytes at offset off of the value's committed state into buf. */
static int read_consistent(shval *v, size_t off, size_t n, void *buf)
{
	shval__entry *e = v->e;
	if (v->mode == SHVAL_ATOMIC) {
		/* single-copy atomic load of the whole scalar */
		uint64_t x;
		switch (v->size) {
		case 1: { uint8_t y = __atomic_load_n(v->data, __ATOMIC_ACQUIRE); memcpy(buf, &y, 1); break; }
		case 2: { uint16_t y = __atomic_load_n((uint16_t *)v->data, __ATOMIC_ACQUIRE); memcpy(buf, (char *)&y + off, n); break; }
		case 4: { uint32_t y = __atomic_load_n((uint32_t *)v->data, __ATOMIC_ACQUIRE); memcpy(buf, (char *)&y + off, n); break; }
		default: x = __atomic_load_n((uint64_t *)v->data, __ATOMIC_ACQUIRE); memcpy(buf, (char *)&x + off, n); break;
		}
		return shval__check(v);
	}
	if (v->mode == SHVAL_RAW) {
		memcpy(buf, v->data + off, n);
		return shval__check(v);
	}
	int64_t deadline = 0;
	for (unsigned spins = 0;; spins++) {
		/* tag-seqlock: acquire pairs with the release stores of the
		 * lock holder (section.h, lock.c). */
		uint64_t v1 = atomic_load_explicit(&e->version, memory_order_acquire);
		const unsigned char *src = v->data;
		if (v1 & SHVAL__V_WRITING) {
			if (spins == 0 && shval__lock_held(v)) {
				/* Inside its own section, a thread reads its
				 * own changes. */
				memcpy(buf, v->data + off, n);
				return shval__check(v);
			}
			if (v->undo) {
				/* The last committed state; it does not change
				 * while WRITING is set. */
				src = v->undo;
			} else if (spins < 100) {
				continue;
			} else {
				if (!deadline)
					deadline = (int64_t)shval__now_ns() +
						   BIG_READ_WAIT_NS;
				int r = wait_for_writer(v, v1, deadline);
				if (r == 1) {
					seq_copy(buf, v->data + off, n);
					return shval__check(v);
				}
				if (r)
					return r;
				continue;
			}
		}
		seq_copy(buf, src + off, n);
		atomic_thread_fence(memory_order_acquire);
		uint64_t v2 = atomic_load_explicit(&e->version, memory_order_relaxed);
		if (v1 == v2)
			break;
	}
	return shval__check(v);
}

/* After an unlocked change through the API: raw values move their version
 * (so that shval_wait works); atomic values wake waiters if any. */
static void raw_commit(shval *v)
{
	shval__wake_after_change(v->seg, v->e, true);
}

static inline void atomic_commit(shval *v)
{
	/* tag-waiters: the RMW just done on the data is the barrier (x86-64;
	 * wait.c adds the fence elsewhere before it looks again). */
#if defined(__x86_64__) || defined(__i386__)
	atomic_signal_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&v->e->waiters, memory_order_relaxed) ||
	    (atomic_load_explicit(&v->seg->hdr->version, memory_order_relaxed) &
	     SHVAL__V_WAITERS))
#endif
		shval__wake_after_change(v->seg, v->e, false);
}

static int writable(shval *v)
{
	int r = shval__check(v);
	if (r)
		return r;
	if (v->seg->flags & SHVAL_RDONLY)
		return shval__failf(v->seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only", v->seg->name);
	return 0;
}

/* Replace bytes [off, off+n) of the value with src, as one change. */
static int write_range(shval *v, size_t off, size_t n, const void *src,
		       bool full)
{
	int r;
	if (v->mode == SHVAL_ATOMIC) {
		if ((r = writable(v)) != 0)
			return r;
		unsigned char tmp[8];
		memcpy(tmp, v->data, 8 > v->size ? v->size : 8);
		memcpy(tmp + off, src, n);
		switch (v->size) {
		case 1: __atomic_store_n(v->data, tmp[0], __ATOMIC_SEQ_CST); break;
		case 2: { uint16_t y; memcpy(&y, tmp, 2); __atomic_store_n((uint16_t *)v->data, y, __ATOMIC_SEQ_CST); break; }
		case 4: { uint32_t y; memcpy(&y, tmp, 4); __atomic_store_n((uint32_t *)v->data, y, __ATOMIC_SEQ_CST); break; }
		default: { uint64_t y; memcpy(&y, tmp, 8); __atomic_store_n((uint64_t *)v->data, y, __ATOMIC_SEQ_CST); break; }
		}
		atomic_commit(v);
		return 0;
	}
	int how;
	if ((r = shval__chg_begin(v, &how)) != 0)
		return r;
	shval__chg_dirty(v, how);
	memcpy(v->data + off, src, n);
	if (full && how != SHVAL__CHG_RAW && (v->e->flags & SHVAL__EF_PARTIAL))
		v->e->flags &= (uint8_t)~SHVAL__EF_PARTIAL;
	shval__chg_end(v, how, true);
	return 0;
}

/* ---- whole value ---- */

static int not_lock(shval *v)
{
	if (v->kind == SHVAL_KIND_LOCK)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "this handle is a lock, not a value");
	return 0;
}

SHVAL_API int shval_read(shval *v, void *buf, size_t cap)
{
	if (!v || !buf)
		return -EINVAL;
	if (not_lock(v))
		return SHVAL_EMODE;
	if (cap < v->size)
		return shval__failf(v->seg, SHVAL_ESIZE,
				    "buffer of %zu bytes for a value of %zu", cap,
				    v->size);
	return read_consistent(v, 0, v->size, buf);
}

SHVAL_API int shval_write(shval *v, const void *buf, size_t len)
{
	if (!v || !buf)
		return -EINVAL;
	if (not_lock(v))
		return SHVAL_EMODE;
	if (len != v->size)
		return shval__failf(v->seg, SHVAL_ESIZE,
				    "%zu bytes given for a value of %zu (type %s)",
				    len, v->size, v->type->canon);
	if (v->needs_check) { /* only bools and strings have bytes to check */
		char err[256];
		int r = shval__type_check(v->type, buf, err, sizeof err);
		if (r)
			return shval__failf(v->seg, r, "%s", err);
	}
	return write_range(v, 0, len, buf, true);
}

/* ---- typed scalars ---- */

enum { NUM_INT, NUM_UINT, NUM_FLOAT };
typedef struct num {
	int cls;
	int64_t i;
	uint64_t u;
	double d;
} num;

static bool is_unsigned(char c)
{
	return c == 'B' || c == 'H' || c == 'I' || c == 'L' || c == 'Q' ||
	       c == 'N' || c == 'c' || c == '?' || c == 'u';
}

static num load_num(char c, const void *p)
{
	num x = { NUM_INT, 0, 0, 0 };
	switch (c) {
	case 'b': { int8_t y; memcpy(&y, p, 1); x.i = y; break; }
	case 'h': { int16_t y; memcpy(&y, p, 2); x.i = y; break; }
	case 'i': { int32_t y; memcpy(&y, p, 4); x.i = y; break; }
	case 'l': case 'q': case 'n': { int64_t y; memcpy(&y, p, 8); x.i = y; break; }
	case 'c': case 'B': case '?': { uint8_t y; memcpy(&y, p, 1); x.cls = NUM_UINT; x.u = y; break; }
	case 'H': { uint16_t y; memcpy(&y, p, 2); x.cls = NUM_UINT; x.u = y; break; }
	case 'I': case 'u': { uint32_t y; memcpy(&y, p, 4); x.cls = NUM_UINT; x.u = y; break; }
	case 'L': case 'Q': case 'N': { uint64_t y; memcpy(&y, p, 8); x.cls = NUM_UINT; x.u = y; break; }
	case 'f': { float y; memcpy(&y, p, 4); x.cls = NUM_FLOAT; x.d = y; break; }
	case 'd': { double y; memcpy(&y, p, 8); x.cls = NUM_FLOAT; x.d = y; break; }
	}
	return x;
}

/* Range of an integer letter. */
static void int_range(char c, int64_t *lo, uint64_t *hi)
{
	switch (c) {
	case 'b': *lo = INT8_MIN; *hi = INT8_MAX; break;
	case 'h': *lo = INT16_MIN; *hi = INT16_MAX; break;
	case 'i': *lo = INT32_MIN; *hi = INT32_MAX; break;
	case 'l': case 'q': case 'n': *lo = INT64_MIN; *hi = INT64_MAX; break;
	case 'c': case 'B': *lo = 0; *hi = UINT8_MAX; break;
	case '?': *lo = 0; *hi = 1; break;
	case 'H': *lo = 0; *hi = UINT16_MAX; break;
	case 'I': *lo = 0; *hi = UINT32_MAX; break;
	case 'u': *lo = 0; *hi = 0x10FFFF; break;
	default: *lo = 0; *hi = UINT64_MAX; break;
	}
}

/* Store an integer (as signed i when neg, else u) into letter c at p. */
static void store_int(char c, void *p, uint64_t bits)
{
	switch (shval__letter_size(c)) {
	case 1: { uint8_t y = (uint8_t)bits; memcpy(p, &y, 1); break; }
	case 2: { uint16_t y = (uint16_t)bits; memcpy(p, &y, 2); break; }
	case 4: { uint32_t y = (uint32_t)bits; memcpy(p, &y, 4); break; }
	default: memcpy(p, &bits, 8); break;
	}
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
				return shval__failf(v->seg, SHVAL_ERANGE,
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
	int64_t lo;
	uint64_t hi;
	int_range(c, &lo, &hi);
	if (x.cls == NUM_INT && x.i < 0) {
		if (x.i < lo)
			return shval__failf(v->seg, SHVAL_ERANGE,
					    "%lld is out of range for type %c",
					    (long long)x.i, c);
		store_int(c, out, (uint64_t)x.i);
		return 0;
	}
	uint64_t u = x.cls == NUM_INT ? (uint64_t)x.i : x.u;
	if (u > hi)
		return shval__failf(v->seg, SHVAL_ERANGE,
				    "%llu is out of range for type %c",
				    (unsigned long long)u, c);
	store_int(c, out, u);
	return 0;
}

static int scalar_code(shval *v, char *c)
{
	if (v->kind != SHVAL_KIND_SCALAR)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s is not a scalar", v->type->canon);
	*c = v->type->fields[0].code;
	return 0;
}

static int get_num(shval *v, num *x)
{
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	unsigned char b[8];
	r = read_consistent(v, 0, v->size, b);
	if (r)
		return r;
	*x = load_num(c, b);
	return 0;
}

SHVAL_API int shval_get_i64(shval *v, int64_t *out)
{
	if (!v || !out)
		return -EINVAL;
	num x;
	int r = get_num(v, &x);
	if (r)
		return r;
	if (x.cls == NUM_FLOAT)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s: use shval_get_f64",
				    v->type->canon);
	if (x.cls == NUM_UINT && x.u > INT64_MAX)
		return shval__failf(v->seg, SHVAL_ERANGE,
				    "%llu does not fit int64_t (use shval_get_u64)",
				    (unsigned long long)x.u);
	*out = x.cls == NUM_INT ? x.i : (int64_t)x.u;
	return 0;
}

SHVAL_API int shval_get_u64(shval *v, uint64_t *out)
{
	if (!v || !out)
		return -EINVAL;
	num x;
	int r = get_num(v, &x);
	if (r)
		return r;
	if (x.cls == NUM_FLOAT)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s: use shval_get_f64",
				    v->type->canon);
	if (x.cls == NUM_INT && x.i < 0)
		return shval__failf(v->seg, SHVAL_ERANGE,
				    "%lld does not fit uint64_t", (long long)x.i);
	*out = x.cls == NUM_INT ? (uint64_t)x.i : x.u;
	return 0;
}

SHVAL_API int shval_get_f64(shval *v, double *out)
{
	if (!v || !out)
		return -EINVAL;
	num x;
	int r = get_num(v, &x);
	if (r)
		return r;
	if (x.cls == NUM_FLOAT) {
		*out = x.d;
		return 0;
	}
	double d = x.cls == NUM_INT ? (double)x.i : (double)x.u;
	bool exact = x.cls == NUM_INT ? (d >= -9223372036854775808.0 &&
					 d < 9223372036854775808.0 &&
					 (int64_t)d == x.i)
				      : (d < 18446744073709551616.0 &&
					 (uint64_t)d == x.u);
	if (!exact)
		return shval__failf(v->seg, SHVAL_ERANGE,
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
	return write_range(v, 0, v->size, b, true);
}

SHVAL_API int shval_set_i64(shval *v, int64_t x)
{
	if (!v)
		return -EINVAL;
	return set_num(v, (num){ NUM_INT, x, 0, 0 });
}

SHVAL_API int shval_set_u64(shval *v, uint64_t x)
{
	if (!v)
		return -EINVAL;
	return set_num(v, (num){ NUM_UINT, 0, x, 0 });
}

SHVAL_API int shval_set_f64(shval *v, double x)
{
	if (!v)
		return -EINVAL;
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	if (c != 'f' && c != 'd') {
		/* An integer value takes a double that is a whole number in
		 * its range, exactly. */
		if (!isfinite(x) || trunc(x) != x)
			return shval__failf(v->seg, SHVAL_ERANGE,
					    "%g is not a whole number (type %c)", x, c);
		if (x < 0) {
			if (x < -9223372036854775808.0)
				return shval__failf(v->seg, SHVAL_ERANGE,
						    "%g is out of range for type %c",
						    x, c);
			return set_num(v, (num){ NUM_INT, (int64_t)x, 0, 0 });
		}
		if (x >= 18446744073709551616.0)
			return shval__failf(v->seg, SHVAL_ERANGE,
					    "%g is out of range for type %c", x, c);
		return set_num(v, (num){ NUM_UINT, 0, (uint64_t)x, 0 });
	}
	return set_num(v, (num){ NUM_FLOAT, 0, 0, x });
}

/* ---- read-modify-write ---- */

enum rmw_op { OP_ADD, OP_AND, OP_OR, OP_XOR, OP_XCHG };

/* Sign- or zero-extend raw bits of letter c to int64. */
static int64_t extend(char c, uint64_t bits)
{
	switch (c) {
	case 'b': return (int8_t)bits;
	case 'h': return (int16_t)bits;
	case 'i': return (int32_t)bits;
	case 'c': case 'B': case '?': return (uint8_t)bits;
	case 'H': return (uint16_t)bits;
	case 'I': case 'u': return (uint32_t)bits;
	default: return (int64_t)bits;
	}
}

static uint64_t apply(enum rmw_op op, uint64_t a, uint64_t b)
{
	switch (op) {
	case OP_ADD: return a + b;
	case OP_AND: return a & b;
	case OP_OR: return a | b;
	case OP_XOR: return a ^ b;
	default: return b;
	}
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
				    "integer operation on a value of type %c", c);
	if (c == '?' && op != OP_XCHG)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "arithmetic on a bool value");
	uint64_t old = 0, nw;
	if (v->mode == SHVAL_ATOMIC) {
		if ((r = writable(v)) != 0)
			return r;
		void *p = v->data;
		switch (v->size) {
#define SHVAL__RMW(T)                                                          \
	{                                                                        \
		T a = (T)arg, o;                                                 \
		switch (op) {                                                    \
		case OP_ADD: o = __atomic_fetch_add((T *)p, a, __ATOMIC_SEQ_CST); break; \
		case OP_AND: o = __atomic_fetch_and((T *)p, a, __ATOMIC_SEQ_CST); break; \
		case OP_OR: o = __atomic_fetch_or((T *)p, a, __ATOMIC_SEQ_CST); break;   \
		case OP_XOR: o = __atomic_fetch_xor((T *)p, a, __ATOMIC_SEQ_CST); break; \
		default: o = __atomic_exchange_n((T *)p, a, __ATOMIC_SEQ_CST); break;    \
		}                                                                \
		old = o;                                                         \
		break;                                                           \
	}
		case 1: SHVAL__RMW(uint8_t)
		case 2: SHVAL__RMW(uint16_t)
		case 4: SHVAL__RMW(uint32_t)
		default: SHVAL__RMW(uint64_t)
#undef SHVAL__RMW
		}
		nw = apply(op, old, arg);
		atomic_commit(v);
	} else {
		if (op == OP_XCHG) {
			int64_t lo;
			uint64_t hi;
			int_range(c, &lo, &hi);
			int64_t s = (int64_t)arg;
			bool ok = is_unsigned(c) ? arg <= hi
						 : (s >= lo && s <= (int64_t)hi);
			if (!ok)
				return shval__failf(v->seg, SHVAL_ERANGE,
						    "%lld is out of range for type %c",
						    (long long)s, c);
		}
		int how;
		if ((r = shval__chg_begin(v, &how)) != 0)
			return r;
		shval__copy(&old, v->data, v->size); /* little-endian: low bytes */
		nw = apply(op, old, arg);
		shval__chg_dirty(v, how);
		store_int(c, v->data, nw);
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
	if (!v)
		return -EINVAL;
	/* Fast path (the common counter): an 8-byte integer atomic in a
	 * writable segment is one lock xadd plus the waiter checks. */
	if (v->fast_add &&
	    atomic_load_explicit(&v->e->serial, memory_order_relaxed) == v->serial &&
	    atomic_load_explicit(&v->e->state, memory_order_acquire) ==
		    SHVAL__ST_LIVE) {
		int64_t o = __atomic_fetch_add((int64_t *)v->data, delta,
					       __ATOMIC_SEQ_CST);
		atomic_commit(v);
		if (result)
			*result = (int64_t)((uint64_t)o + (uint64_t)delta);
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
	return shval_add_i64(v, (int64_t)(0 - (uint64_t)delta), result);
}

SHVAL_API int shval_and_u64(shval *v, uint64_t mask, uint64_t *old)
{
	if (!v)
		return -EINVAL;
	return rmw_int(v, OP_AND, mask, old, NULL);
}

SHVAL_API int shval_or_u64(shval *v, uint64_t mask, uint64_t *old)
{
	if (!v)
		return -EINVAL;
	return rmw_int(v, OP_OR, mask, old, NULL);
}

SHVAL_API int shval_xor_u64(shval *v, uint64_t mask, uint64_t *old)
{
	if (!v)
		return -EINVAL;
	return rmw_int(v, OP_XOR, mask, old, NULL);
}

SHVAL_API int shval_exchange_i64(shval *v, int64_t x, int64_t *old)
{
	if (!v)
		return -EINVAL;
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	if (v->mode == SHVAL_ATOMIC) {
		int64_t lo;
		uint64_t hi;
		int_range(c, &lo, &hi);
		if (is_unsigned(c) ? (x < 0 || (uint64_t)x > hi)
				   : (x < lo || x > (int64_t)hi))
			return shval__failf(v->seg, SHVAL_ERANGE,
					    "%lld is out of range for type %c",
					    (long long)x, c);
	}
	uint64_t before = 0;
	r = rmw_int(v, OP_XCHG, (uint64_t)x, &before, NULL);
	if (r == 0 && old)
		*old = extend(c, before);
	return r;
}

SHVAL_API int shval_cas_i64(shval *v, int64_t *expected, int64_t desired)
{
	if (!v || !expected)
		return -EINVAL;
	char c = 0;
	int r = scalar_code(v, &c);
	if (r)
		return r;
	if (c == 'f' || c == 'd')
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %c: use shval_cas_f64", c);
	unsigned char want[8] = { 0 }, nw[8] = { 0 };
	if ((r = encode(v, c, (num){ NUM_INT, desired, 0, 0 }, nw)) != 0)
		return r;
	if ((r = writable(v)) != 0)
		return r;
	int64_t lo;
	uint64_t hi;
	int_range(c, &lo, &hi);
	bool fits = is_unsigned(c) ? (*expected >= 0 && (uint64_t)*expected <= hi)
				   : (*expected >= lo && *expected <= (int64_t)hi);
	store_int(c, want, (uint64_t)*expected);
	if (v->mode == SHVAL_ATOMIC) {
		bool ok = false;
		uint64_t cur = 0;
		switch (v->size) {
#define SHVAL__CAS(T)                                                           \
	{                                                                         \
		T e, d;                                                           \
		memcpy(&e, want, sizeof e);                                       \
		memcpy(&d, nw, sizeof d);                                         \
		ok = fits && __atomic_compare_exchange_n((T *)v->data, &e, d, false, \
							 __ATOMIC_SEQ_CST,        \
							 __ATOMIC_SEQ_CST);       \
		if (!fits)                                                        \
			e = __atomic_load_n((T *)v->data, __ATOMIC_SEQ_CST);      \
		cur = e;                                                          \
		break;                                                            \
	}
		case 1: SHVAL__CAS(uint8_t)
		case 2: SHVAL__CAS(uint16_t)
		case 4: SHVAL__CAS(uint32_t)
		default: SHVAL__CAS(uint64_t)
#undef SHVAL__CAS
		}
		if (ok) {
			atomic_commit(v);
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
	if ((r = writable(v)) != 0)
		return r;
	if (v->mode == SHVAL_ATOMIC) {
		if (c == 'd') {
			uint64_t o = __atomic_load_n((uint64_t *)v->data, __ATOMIC_SEQ_CST), n;
			for (;;) {
				double od, nd;
				memcpy(&od, &o, 8);
				if (is_add) {
					nd = od + arg;
				} else {
					uint64_t eb;
					memcpy(&eb, expected, 8);
					if (eb != o) {
						*expected = od;
						return SHVAL_ECHANGED;
					}
					nd = desired;
				}
				memcpy(&n, &nd, 8);
				if (__atomic_compare_exchange_n((uint64_t *)v->data, &o, n,
								false, __ATOMIC_SEQ_CST,
								__ATOMIC_SEQ_CST)) {
					if (result)
						*result = nd;
					break;
				}
			}
		} else {
			uint32_t o = __atomic_load_n((uint32_t *)v->data, __ATOMIC_SEQ_CST), n;
			for (;;) {
				float of, nf;
				memcpy(&of, &o, 4);
				if (is_add) {
					nf = (float)(of + arg);
				} else {
					float ef = (float)*expected;
					uint32_t eb;
					memcpy(&eb, &ef, 4);
					if (eb != o) {
						*expected = of;
						return SHVAL_ECHANGED;
					}
					nf = (float)desired;
				}
				memcpy(&n, &nf, 4);
				if (__atomic_compare_exchange_n((uint32_t *)v->data, &o, n,
								false, __ATOMIC_SEQ_CST,
								__ATOMIC_SEQ_CST)) {
					if (result)
						*result = nf;
					break;
				}
			}
		}
		atomic_commit(v);
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
	if (!v)
		return -EINVAL;
	return float_op(v, true, delta, NULL, 0, result);
}

SHVAL_API int shval_cas_f64(shval *v, double *expected, double desired)
{
	if (!v || !expected)
		return -EINVAL;
	return float_op(v, false, 0, expected, desired, NULL);
}

/* ---- strings ---- */

SHVAL_API int shval_get_str(shval *v, char *buf, size_t cap, size_t *len)
{
	if (!v || !len || (!buf && cap))
		return -EINVAL;
	if (v->kind != SHVAL_KIND_STRING)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s is not a string",
				    v->type->canon);
	unsigned char stackbuf[4096];
	unsigned char *tmp = v->size <= sizeof stackbuf ? stackbuf : malloc(v->size);
	if (!tmp)
		return shval__failf(v->seg, -ENOMEM, "out of memory");
	int r = read_consistent(v, 0, v->size, tmp);
	if (r == 0) {
		uint32_t n;
		memcpy(&n, tmp, 4);
		uint32_t capv = v->type->fields[0].count;
		if (n > capv) {
			r = shval__failf(v->seg, SHVAL_ECORRUPT,
					 "string length %u above capacity %u", n, capv);
		} else {
			*len = n;
			if (cap < n) {
				r = SHVAL_ETOOBIG;
			} else {
				if (n)
					memcpy(buf, tmp + 4, n);
				if (cap > n)
					buf[n] = 0;
			}
		}
	}
	if (tmp != stackbuf)
		free(tmp);
	return r;
}

SHVAL_API int shval_set_str(shval *v, const char *s, size_t len)
{
	if (!v || (!s && len))
		return -EINVAL;
	if (v->kind != SHVAL_KIND_STRING)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s is not a string",
				    v->type->canon);
	uint32_t capv = v->type->fields[0].count;
	if (len > capv)
		return shval__failf(v->seg, SHVAL_ETOOBIG,
				    "string of %zu bytes for capacity %u (type %s)",
				    len, capv, v->type->canon);
	int r = writable(v);
	if (r)
		return r;
	uint32_t n = (uint32_t)len;
	int how;
	if ((r = shval__chg_begin(v, &how)) != 0)
		return r;
	shval__chg_dirty(v, how);
	if (len)
		memcpy(v->data + 4, s, len);
	memcpy(v->data, &n, 4);
	shval__chg_end(v, how, true);
	return 0;
}

/* ---- arrays ---- */

static int array_range(shval *v, size_t index, size_t n, size_t *off,
		       size_t *bytes)
{
	if (v->kind != SHVAL_KIND_ARRAY)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s is not an array",
				    v->type->canon);
	const shval__field *f = &v->type->fields[0];
	if (index > f->count || n > f->count - index)
		return shval__failf(v->seg, SHVAL_EINDEX,
				    "elements [%zu, %zu) outside an array of %u",
				    index, index + n, f->count);
	*off = index * f->elem_size;
	*bytes = n * f->elem_size;
	return 0;
}

SHVAL_API int shval_array_get(shval *v, size_t index, size_t n, void *buf)
{
	if (!v || (!buf && n))
		return -EINVAL;
	size_t off = 0, bytes = 0;
	int r = array_range(v, index, n, &off, &bytes);
	if (r)
		return r;
	return read_consistent(v, off, bytes, buf);
}

SHVAL_API int shval_array_set(shval *v, size_t index, size_t n, const void *buf)
{
	if (!v || (!buf && n))
		return -EINVAL;
	size_t off = 0, bytes = 0;
	int r = array_range(v, index, n, &off, &bytes);
	if (r)
		return r;
	if (v->needs_check) {
		char err[256];
		if ((r = shval__bytes_check(v->type, off, bytes, buf, err,
					    sizeof err)) != 0)
			return shval__failf(v->seg, r, "%s", err);
	}
	return write_range(v, off, bytes, buf, bytes == v->size);
}

/* ---- struct fields ---- */

static int field_of(shval *v, const char *field, const shval__field **f)
{
	if (!field)
		return -EINVAL;
	if (not_lock(v))
		return SHVAL_EMODE;
	int i = shval__type_field(v->type, field);
	if (i < 0)
		return shval__failf(v->seg, SHVAL_ENOFIELD,
				    "type %s has no field \"%s\"", v->type->canon,
				    field);
	*f = &v->type->fields[i];
	return 0;
}

SHVAL_API int shval_field_get(shval *v, const char *field, void *buf,
			      size_t cap, size_t *len)
{
	if (!v || !buf)
		return -EINVAL;
	const shval__field *f = NULL;
	int r = field_of(v, field, &f);
	if (r)
		return r;
	if (len)
		*len = f->size;
	if (cap < f->size)
		return shval__failf(v->seg, SHVAL_ESIZE,
				    "field %s is %zu bytes, buffer %zu", field,
				    f->size, cap);
	return read_consistent(v, f->offset, f->size, buf);
}

SHVAL_API int shval_field_set(shval *v, const char *field, const void *buf,
			      size_t len)
{
	if (!v || !buf)
		return -EINVAL;
	const shval__field *f = NULL;
	int r = field_of(v, field, &f);
	if (r)
		return r;
	if (len != f->size)
		return shval__failf(v->seg, SHVAL_ESIZE,
				    "field %s is %zu bytes, %zu given", field,
				    f->size, len);
	if (v->needs_check) {
		char err[256];
		if ((r = shval__bytes_check(v->type, f->offset, f->size, buf, err,
					    sizeof err)) != 0)
			return shval__failf(v->seg, r, "%s", err);
	}
	return write_range(v, f->offset, f->size, buf, f->size == v->size);
}

SHVAL_API int shval_field_info_at(shval *v, size_t idx, shval_field_info *fi)
{
	if (!v || !fi)
		return -EINVAL;
	if (v->kind == SHVAL_KIND_LOCK || idx >= v->type->nfields)
		return SHVAL_EINDEX;
	const shval__field *f = &v->type->fields[idx];
	memset(fi, 0, sizeof *fi);
	snprintf(fi->name, sizeof fi->name, "%s", f->name);
	if (f->kind == SHVAL_KIND_SCALAR)
		snprintf(fi->type, sizeof fi->type, "%c", f->code);
	else
		snprintf(fi->type, sizeof fi->type, "%u%c", f->count, f->code);
	fi->offset = f->offset;
	fi->size = f->size;
	return 0;
}

/* ---- text ---- */

SHVAL_API int shval_to_text(shval *v, unsigned flags, char *buf, size_t cap,
			    size_t *len)
{
	if (!v || (!buf && cap))
		return -EINVAL;
	if (flags & ~SHVAL_TEXT_JSON)
		return -EINVAL;
	if (not_lock(v))
		return SHVAL_EMODE;
	unsigned char *tmp = malloc(v->size ? v->size : 1);
	if (!tmp)
		return shval__failf(v->seg, -ENOMEM, "out of memory");
	int r = read_consistent(v, 0, v->size, tmp);
	if (r) {
		free(tmp);
		return r;
	}
	shval__buf b;
	shval__buf_init(&b);
	r = shval__text_format(v->type, tmp, flags, &b);
	free(tmp);
	if (r == 0 && b.oom)
		r = shval__failf(v->seg, -ENOMEM, "out of memory");
	if (r == 0) {
		if (len)
			*len = b.len;
		if (cap < b.len + 1)
			r = shval__failf(v->seg, SHVAL_ETOOBIG,
					 "text of %zu bytes does not fit a buffer "
					 "of %zu",
					 b.len, cap);
		else {
			memcpy(buf, b.p, b.len);
			buf[b.len] = 0;
		}
	}
	shval__buf_free(&b);
	return r;
}

SHVAL_API int shval_from_text(shval *v, int argc, const char *const *argv)
{
	if (!v || argc < 0 || (!argv && argc))
		return -EINVAL;
	if (not_lock(v))
		return SHVAL_EMODE;
	int r = writable(v);
	if (r)
		return r;
	unsigned char *tmp = malloc(v->size ? v->size : 1);
	if (!tmp)
		return shval__failf(v->seg, -ENOMEM, "out of memory");
	char err[512] = "";
	if (v->mode == SHVAL_ATOMIC) { /* a scalar: the text is all of it */
		r = read_consistent(v, 0, v->size, tmp);
		if (r == 0)
			r = shval__text_parse(v->type, tmp, argc, argv, err,
					      sizeof err);
		if (r == 0)
			r = write_range(v, 0, v->size, tmp, true);
		free(tmp);
		return r && err[0] ? shval__failf(v->seg, r, "%s", err) : r;
	}
	/* Parse against the current value inside the change (under the lock
	 * for locked values), so that fields not given are kept even against
	 * other writers. */
	int how;
	if ((r = shval__chg_begin(v, &how)) != 0) {
		free(tmp);
		return r;
	}
	memcpy(tmp, v->data, v->size);
	r = shval__text_parse(v->type, tmp, argc, argv, err, sizeof err);
	if (r == 0) {
		shval__chg_dirty(v, how);
		memcpy(v->data, tmp, v->size);
		if (how != SHVAL__CHG_RAW && (v->e->flags & SHVAL__EF_PARTIAL))
			v->e->flags &= (uint8_t)~SHVAL__EF_PARTIAL;
	}
	shval__chg_end(v, how, r == 0);
	free(tmp);
	if (r && err[0])
		return shval__failf(v->seg, r, "%s", err);
	return r;
}

SHVAL_API int shval_type_canonical(const char *type, char *buf, size_t cap,
				   size_t *size)
{
	if (!type || (!buf && cap))
		return -EINVAL;
	shval__type *t;
	char err[256];
	int r = shval__type_parse(type, &t, err, sizeof err);
	if (r)
		return shval__failf(NULL, r, "%s", err);
	size_t n = strlen(t->canon);
	if (size)
		*size = t->size;
	if (n + 1 > cap)
		r = SHVAL_ETOOBIG;
	else
		memcpy(buf, t->canon, n + 1);
	shval__type_free(t);
	return r;
}

/* ---- the multiprocessing.Value shape ---- */

SHVAL_API int shval_new(const char *type, unsigned flags, const void *init,
			size_t init_len, shval **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	shval_seg *seg;
	int r = shval_anon_segment(&seg);
	if (r)
		return r;
	static _Atomic unsigned long counter;
	char name[64];
	snprintf(name, sizeof name, "anon.%d.%lu", (int)getpid(),
		 atomic_fetch_add(&counter, 1) + 1);
	return shval_create(seg, name, type, flags, init, init_len, out);
}

SHVAL_API int shval_touch(shval *v)
{
	if (!v)
		return -EINVAL;
	if (not_lock(v))
		return SHVAL_EMODE;
	int r = writable(v);
	if (r)
		return r;
	if (v->mode == SHVAL_RAW || v->mode == SHVAL_ATOMIC) {
		/* Atomic waiters sleep on the version word too: moving it wakes
		 * them even when the bits did not change. */
		raw_commit(v);
		return 0;
	}
	/* Locked: a section that counts as a change (committed at its end). */
	int how;
	if ((r = shval__chg_begin(v, &how)) != 0)
		return r;
	shval__chg_dirty(v, how);
	shval__chg_end(v, how, true);
	return 0;
}
