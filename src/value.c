/*
 * src/value.c — reads and writes of whole values, strings, arrays, struct
 * fields and text; the consistent read (seqlock) and the one write range
 * every writer of bytes goes through.
 *
 * Every public call checks the handle's serial first (SHVAL_ESTALE), and
 * dispatches on the value's mode:
 *   atomic  atomic.h on the data, of the value's width; waiters are woken
 *           only when the entry's waiters byte is set;
 *   locked  reads: shval__read_consistent() (seqlock, no lock, lock.c);
 *           writes: a change (section.h: shval__chg_begin/dirty/end);
 *   raw     plain copies; writes through the API still move the version
 *           so that shval_wait works.
 * Typed scalars and read-modify-writes are in scalar.c.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomic.h"
#include "section.h"

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
	/* acquire (in shval__mutex_owner) pairs with the unlock: a writer
	 * that has let go of the lock has committed, so the version moved. */
	if (atomic_load_explicit(&e->version, memory_order_relaxed) != v1)
		return 0; /* a section ended meanwhile: read again */
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
		return shval__failf(
			v->seg, -ETIMEDOUT,
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
int shval__read_consistent(shval *v, size_t off, size_t n, void *buf)
{
	shval__entry *e = v->e;
	if (v->mode == SHVAL_ATOMIC) {
		/* single-copy atomic load of the whole scalar (little-endian:
		 * its bytes are the low bytes of x) */
		uint64_t x = shval__atomic_load(v->data, v->size);
		memcpy(buf, (char *)&x + off, n);
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
		uint64_t v1 =
			atomic_load_explicit(&e->version, memory_order_acquire);
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
					/* read-only, writer gone: the elements
					 * as they are, unless a writer came */
					seq_copy(buf, v->data + off, n);
					atomic_thread_fence(
						memory_order_acquire);
					if (atomic_load_explicit(
						    &e->version,
						    memory_order_relaxed) != v1)
						continue;
					return shval__check(v);
				}
				if (r)
					return r;
				continue;
			}
		}
		seq_copy(buf, src + off, n);
		atomic_thread_fence(memory_order_acquire);
		uint64_t v2 =
			atomic_load_explicit(&e->version, memory_order_relaxed);
		if (v1 == v2)
			break;
	}
	return shval__check(v);
}

int shval__check_writable(shval *v)
{
	int r = shval__check(v);
	if (r)
		return r;
	if (v->seg->flags & SHVAL_RDONLY)
		return shval__failf(v->seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only",
				    v->seg->name);
	return 0;
}

/* Replace bytes [off, off+n) of the value with src, as one change. */
int shval__write_range(shval *v, size_t off, size_t n, const void *src,
		       bool full)
{
	int r;
	if (v->mode == SHVAL_ATOMIC) {
		if ((r = shval__check_writable(v)) != 0)
			return r;
		/* the whole scalar in one store (a field write is all of it) */
		uint64_t x = shval__atomic_load(v->data, v->size);
		memcpy((char *)&x + off, src, n);
		shval__atomic_store(v->data, v->size, x);
		shval__atomic_changed(v);
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

/* SHVAL_EMODE (with the message) when v is a lock handle, else 0. */
static int reject_lock_handle(shval *v)
{
	if (v->kind == SHVAL_KIND_LOCK)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "this handle is a lock, not a value");
	return 0;
}

SHVAL_API int shval_read(shval *v, void *buf, size_t cap)
{
	if (SHVAL__REMOTE(v))
		return shval__r_read(v, buf, cap);
	if (!v || !buf)
		return -EINVAL;
	if (reject_lock_handle(v))
		return SHVAL_EMODE;
	if (cap < v->size)
		return shval__failf(v->seg, SHVAL_ESIZE,
				    "buffer of %zu bytes for a value of %zu",
				    cap, v->size);
	return shval__read_consistent(v, 0, v->size, buf);
}

SHVAL_API int shval_read_version(shval *v, void *buf, size_t cap,
				 uint64_t *version)
{
	if (!version)
		return -EINVAL;
	if (SHVAL__REMOTE(v))
		return shval__r_read_version(v, buf, cap, version);
	uint64_t ver = shval_value_version(v); /* before: never newer */
	int r = (shval_read)(v, buf, cap);
	if (r == 0)
		*version = ver;
	return r;
}

SHVAL_API int shval_write(shval *v, const void *buf, size_t len)
{
	if (SHVAL__REMOTE(v))
		return shval__r_write(v, buf, len);
	if (!v || !buf)
		return -EINVAL;
	if (reject_lock_handle(v))
		return SHVAL_EMODE;
	if (len != v->size)
		return shval__failf(
			v->seg, SHVAL_ESIZE,
			"%zu bytes given for a value of %zu (type %s)", len,
			v->size, v->type->canon);
	if (v->needs_check) { /* only bools and strings have bytes to check */
		shval__err err = { "" };
		int r = shval__type_check(v->type, buf, err.msg,
					  sizeof err.msg);
		if (r)
			return shval__failf(v->seg, r, "%s", err.msg);
	}
	return shval__write_range(v, 0, len, buf, true);
}

/* ---- strings ---- */

SHVAL_API int shval_get_str(shval *v, char *buf, size_t cap, size_t *len)
{
	if (SHVAL__REMOTE(v))
		return shval__r_get_str(v, buf, cap, len);
	if (!v || !len || (!buf && cap))
		return -EINVAL;
	if (v->kind != SHVAL_KIND_STRING)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s is not a string",
				    v->type->canon);
	unsigned char stackbuf[4096];
	unsigned char *tmp =
		v->size <= sizeof stackbuf ? stackbuf : malloc(v->size);
	if (!tmp)
		return shval__failf(v->seg, -ENOMEM, "out of memory");
	int r = shval__read_consistent(v, 0, v->size, tmp);
	if (r == 0) {
		uint32_t n;
		memcpy(&n, tmp, 4);
		uint32_t capv = v->type->fields[0].count;
		if (n > capv) {
			r = shval__failf(v->seg, SHVAL_ECORRUPT,
					 "string length %u above capacity %u",
					 n, capv);
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
	if (SHVAL__REMOTE(v))
		return shval__r_set_str(v, s, len);
	if (!v || (!s && len))
		return -EINVAL;
	if (v->kind != SHVAL_KIND_STRING)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value of type %s is not a string",
				    v->type->canon);
	uint32_t capv = v->type->fields[0].count;
	if (len > capv)
		return shval__failf(
			v->seg, SHVAL_ETOOBIG,
			"string of %zu bytes for capacity %u (type %s)", len,
			capv, v->type->canon);
	int r = shval__check_writable(v);
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
		return shval__failf(
			v->seg, SHVAL_EINDEX,
			"elements [%zu, %zu) outside an array of %u", index,
			index + n, f->count);
	*off = index * f->elem_size;
	*bytes = n * f->elem_size;
	return 0;
}

/* The arguments of shval_array_get/set: -EINVAL, or array_range's. */
static int array_args(shval *v, size_t index, size_t n, const void *buf,
		      size_t *off, size_t *bytes)
{
	if (!v || (!buf && n))
		return -EINVAL;
	*off = *bytes = 0;
	return array_range(v, index, n, off, bytes);
}

SHVAL_API int shval_array_get(shval *v, size_t index, size_t n, void *buf)
{
	if (SHVAL__REMOTE(v))
		return shval__r_array_get(v, index, n, buf);
	size_t off, bytes;
	int r = array_args(v, index, n, buf, &off, &bytes);
	if (r)
		return r;
	return shval__read_consistent(v, off, bytes, buf);
}

SHVAL_API int shval_array_set(shval *v, size_t index, size_t n, const void *buf)
{
	if (SHVAL__REMOTE(v))
		return shval__r_array_set(v, index, n, buf);
	size_t off, bytes;
	int r = array_args(v, index, n, buf, &off, &bytes);
	if (r)
		return r;
	if (v->needs_check) {
		shval__err err = { "" };
		if ((r = shval__bytes_check(v->type, off, bytes, buf, err.msg,
					    sizeof err.msg)) != 0)
			return shval__failf(v->seg, r, "%s", err.msg);
	}
	return shval__write_range(v, off, bytes, buf, bytes == v->size);
}

/* ---- struct fields ---- */

static int field_of(shval *v, const char *field, const shval__field **f)
{
	if (!field)
		return -EINVAL;
	if (reject_lock_handle(v))
		return SHVAL_EMODE;
	int i = shval__type_field(v->type, field);
	if (i < 0)
		return shval__failf(v->seg, SHVAL_ENOFIELD,
				    "type %s has no field \"%s\"",
				    v->type->canon, field);
	*f = &v->type->fields[i];
	return 0;
}

/* The arguments of shval_field_get/set: -EINVAL, or field_of's. */
static int field_args(shval *v, const char *field, const void *buf,
		      const shval__field **f)
{
	if (!v || !buf)
		return -EINVAL;
	return field_of(v, field, f);
}

SHVAL_API int shval_field_get(shval *v, const char *field, void *buf,
			      size_t cap, size_t *len)
{
	if (SHVAL__REMOTE(v))
		return shval__r_field_get(v, field, buf, cap, len);
	const shval__field *f = NULL;
	int r = field_args(v, field, buf, &f);
	if (r)
		return r;
	if (len)
		*len = f->size;
	if (cap < f->size)
		return shval__failf(v->seg, SHVAL_ESIZE,
				    "field %s is %zu bytes, buffer %zu", field,
				    f->size, cap);
	return shval__read_consistent(v, f->offset, f->size, buf);
}

SHVAL_API int shval_field_set(shval *v, const char *field, const void *buf,
			      size_t len)
{
	if (SHVAL__REMOTE(v))
		return shval__r_field_set(v, field, buf, len);
	const shval__field *f = NULL;
	int r = field_args(v, field, buf, &f);
	if (r)
		return r;
	if (len != f->size)
		return shval__failf(v->seg, SHVAL_ESIZE,
				    "field %s is %zu bytes, %zu given", field,
				    f->size, len);
	if (v->needs_check) {
		shval__err err = { "" };
		if ((r = shval__bytes_check(v->type, f->offset, f->size, buf,
					    err.msg, sizeof err.msg)) != 0)
			return shval__failf(v->seg, r, "%s", err.msg);
	}
	return shval__write_range(v, f->offset, f->size, buf,
				  f->size == v->size);
}

SHVAL_API int shval_field_info_at(shval *v, size_t idx, shval_field_info *fi)
{
	if (SHVAL__REMOTE(v))
		return shval__r_field_info_at(v, idx, fi);
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
	if (SHVAL__REMOTE(v))
		return shval__r_to_text(v, flags, buf, cap, len);
	if (!v || (!buf && cap))
		return -EINVAL;
	if (flags & ~SHVAL_TEXT_JSON)
		return -EINVAL;
	if (reject_lock_handle(v))
		return SHVAL_EMODE;
	unsigned char *tmp = malloc(v->size ? v->size : 1);
	if (!tmp)
		return shval__failf(v->seg, -ENOMEM, "out of memory");
	int r = shval__read_consistent(v, 0, v->size, tmp);
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
			r = shval__failf(
				v->seg, SHVAL_ETOOBIG,
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
	if (SHVAL__REMOTE(v))
		return shval__r_from_text(v, argc, argv);
	if (!v || argc < 0 || (!argv && argc))
		return -EINVAL;
	if (reject_lock_handle(v))
		return SHVAL_EMODE;
	int r = shval__check_writable(v);
	if (r)
		return r;
	unsigned char *tmp = malloc(v->size ? v->size : 1);
	if (!tmp)
		return shval__failf(v->seg, -ENOMEM, "out of memory");
	shval__err err = { "" };
	if (v->mode == SHVAL_ATOMIC) { /* a scalar: the text is all of it */
		r = shval__read_consistent(v, 0, v->size, tmp);
		if (r == 0)
			r = shval__text_parse(v->type, tmp, argc, argv, err.msg,
					      sizeof err.msg);
		if (r == 0)
			r = shval__write_range(v, 0, v->size, tmp, true);
		free(tmp);
		return r && err.msg[0] ? shval__failf(v->seg, r, "%s", err.msg)
				       : r;
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
	r = shval__text_parse(v->type, tmp, argc, argv, err.msg,
			      sizeof err.msg);
	if (r == 0) {
		shval__chg_dirty(v, how);
		memcpy(v->data, tmp, v->size);
		if (how != SHVAL__CHG_RAW && (v->e->flags & SHVAL__EF_PARTIAL))
			v->e->flags &= (uint8_t)~SHVAL__EF_PARTIAL;
	}
	shval__chg_end(v, how, r == 0);
	free(tmp);
	if (r && err.msg[0])
		return shval__failf(v->seg, r, "%s", err.msg);
	return r;
}

SHVAL_API int shval_type_canonical(const char *type, char *buf, size_t cap,
				   size_t *size)
{
	if (!type || (!buf && cap))
		return -EINVAL;
	shval__type *t;
	shval__err err = { "" };
	int r = shval__type_parse(type, &t, err.msg, sizeof err.msg);
	if (r)
		return shval__failf(NULL, r, "%s", err.msg);
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

SHVAL_API int shval_touch(shval *v)
{
	if (SHVAL__REMOTE(v))
		return shval__r_touch(v);
	if (!v)
		return -EINVAL;
	if (reject_lock_handle(v))
		return SHVAL_EMODE;
	int r = shval__check_writable(v);
	if (r)
		return r;
	if (v->mode == SHVAL_RAW || v->mode == SHVAL_ATOMIC) {
		/* Atomic waiters sleep on the version word too: moving it wakes
		 * them even when the bits did not change. */
		shval__wake_after_change(v->seg, v->e, true);
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
