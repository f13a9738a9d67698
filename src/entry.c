/*
 * src/entry.c — values by name: create (also with a shared lock, and lock
 * entries), find, find-or-create, remove.  Each takes the segment lock for
 * its directory change (shval_find only when the lock-free lookup cannot
 * decide); the directory itself is dir.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Length of the well-formed UTF-8 sequence at s (n bytes left) that
 * encodes a character other than a C1 control (U+0080..U+009F), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len = shval__utf8_decode(s, n, &cp);
	return len && cp > 0x9f ? len : 0;
}

/* Names being created must be printable ASCII or UTF-8 (as documented):
 * lookups and removals accept any bytes but spaces and controls, so that
 * a name made before this check, or by a damaged segment, can still be
 * found and removed. */
static int check_utf8(shval_seg *seg, const char *name, size_t n)
{
	const unsigned char *p = (const unsigned char *)name;
	for (size_t i = 0; i < n;) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_char(p + i, n - i);
		if (!k)
			return shval__failf(
				seg, SHVAL_EBADNAME,
				"value name: byte 0x%02x at position "
				"%zu is not part of a well-formed "
				"UTF-8 character (or is a C1 "
				"control)",
				p[i], i);
		i += k;
	}
	return 0;
}

/* The same check for remote_value.c's creates (internal.h). */
int shval__check_utf8_name(shval_seg *seg, const char *name, size_t n)
{
	return check_utf8(seg, name, n);
}

static int check_name(shval_seg *seg, const char *name, size_t *len)
{
	if (!name)
		return shval__failf(seg, SHVAL_EBADNAME, "value name is NULL");
	size_t n = strnlen(name, SHVAL_NAME_MAX + 1);
	if (n == 0)
		return shval__failf(seg, SHVAL_EBADNAME, "value name is empty");
	if (n > SHVAL_NAME_MAX)
		return shval__failf(
			seg, SHVAL_EBADNAME,
			"value name \"%.40s...\" is longer than %d bytes", name,
			SHVAL_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c == 0x7f)
			return shval__failf(
				seg, SHVAL_EBADNAME,
				"value name \"%s\": byte 0x%02x at "
				"position %zu (no spaces or control "
				"characters)",
				name, c, i);
	}
	*len = n;
	return 0;
}

/* Create under the segment lock.  If exists_ok and the name exists, *off is
 * the existing entry and *created = false. */
/* Lines of a block whose data starts at data_rel (after it: the undo copy
 * of a locked value; a lock entry's data is its lock block). */
static uint64_t block_lines(uint64_t data_rel, uint64_t size, bool locked,
			    bool lock_entry)
{
	uint64_t end = data_rel + size;
	if (lock_entry)
		end = data_rel + sizeof(shval__lockblk);
	else if (locked && size <= SHVAL__UNDO_MAX)
		end = shval__undo_rel(data_rel, size) + size;
	return (end + SHVAL__LINE - 1) / SHVAL__LINE;
}

/* Does a value's data start at the next line (SHVAL__EF_LINEDATA)?  When
 * its 8-aligned place makes it span more lines than it needs (a reader
 * then touches one more line; a 64-byte struct two instead of one), and
 * either it is 64 bytes or more, or the block does not grow by it. */
static bool want_line_data(uint64_t nlen, bool own_lock, bool locked,
			   uint64_t size)
{
	uint64_t packed, aligned;
	shval__entry_layout(nlen, own_lock, false, false, &packed);
	shval__entry_layout(nlen, own_lock, false, true, &aligned);
	if (size == 0 || packed == aligned)
		return false;
	uint64_t need = (size + SHVAL__LINE - 1) / SHVAL__LINE;
	uint64_t span =
		(packed + size - 1) / SHVAL__LINE - packed / SHVAL__LINE + 1;
	if (span <= need)
		return false;
	return size >= SHVAL__LINE ||
	       block_lines(aligned, size, locked, false) ==
		       block_lines(packed, size, locked, false);
}

/* t == NULL creates a lock entry; shared_lk != 0 creates a value guarded by
 * the lock block at that offset (mode is then the lock's). */
static int create_locked(shval_seg *seg, const char *name, size_t nlen,
			 const shval__type *t, unsigned mode,
			 uint64_t shared_lk, const void *init, bool exists_ok,
			 uint64_t *off, bool *created)
{
	shval__hdr *h = seg->hdr;
	*created = false;
	int r = shval__dir_find(seg, name, nlen, off);
	if (r == 0) {
		if (exists_ok)
			return 0;
		return shval__failf(seg, SHVAL_EEXIST,
				    "segment %s: value %s already exists",
				    seg->name, name);
	}
	if (r != SHVAL_ENOTFOUND)
		return r;
	bool locked = mode == SHVAL_RLOCK || mode == SHVAL_LOCK;
	bool own_lock = locked && !shared_lk;
	if (t && t->align > 8) /* shval__entry_layout aligns data to 8 */
		return shval__failf(seg, SHVAL_EBADTYPE,
				    "type %s: alignment %zu", t->canon,
				    (size_t)t->align);
	bool line_data = t && want_line_data(nlen, own_lock, locked, t->size);
	uint64_t data_rel;
	size_t lk_rel = (size_t)shval__entry_layout(nlen, own_lock, !t,
						    line_data, &data_rel);
	size_t undo_rel = 0;
	if (!own_lock)
		lk_rel = 0;
	uint64_t nlines = block_lines(data_rel, t ? t->size : 0, locked, !t);
	if (t && locked && t->size <= SHVAL__UNDO_MAX)
		undo_rel = shval__undo_rel(data_rel, t->size);
	uint32_t tline = 0;
	if (t && (r = shval__type_intern(seg, t, &tline)) != 0)
		return r;
	uint64_t eoff;
	uint64_t brk0 = h->brk;
	r = shval__alloc(seg, nlines, &eoff);
	if (r)
		return r;
	unsigned char *b = shval__at(seg, eoff);
	/* A block carved past the old brk has never been written since the
	 * file grew (posix_fallocate gives zeros): the data of a big value
	 * there is not cleared again, so that creating a multi-GiB value
	 * does not write (and wait for) every page of it.  Blocks from the
	 * free lists and small values are cleared whole. */
	size_t clear = nlines * SHVAL__LINE;
	if (eoff >= brk0 && t && t->size > SHVAL__UNDO_MAX && !init)
		clear = (size_t)data_rel;
	memset(b, 0, clear);
	shval__entry *e = (shval__entry *)b;
	e->mode = (uint8_t)(mode >> 8);
	e->kind = t ? t->kind : SHVAL_KIND_LOCK;
	e->name_len = (uint8_t)nlen;
	e->flags = line_data ? SHVAL__EF_LINEDATA : 0;
	e->data_rel = (uint16_t)data_rel;
	e->type_line = tline;
	e->nlines = (uint32_t)nlines;
	memcpy(e->name, name, nlen);
	if (shared_lk) {
		e->lock_off = shared_lk;
	} else if (locked) {
		e->lock_off = eoff + lk_rel;
		r = shval__lockblk_init((shval__lockblk *)(b + lk_rel));
		if (r) {
			shval__free(seg, eoff, nlines);
			return r;
		}
	}
	if (init && t)
		memcpy(b + data_rel, init, t->size);
	if (undo_rel)
		memcpy(b + undo_rel, b + data_rel, t->size);
	atomic_store_explicit(&e->serial, h->next_serial++,
			      memory_order_relaxed);
	atomic_store_explicit(&e->state, SHVAL__ST_LIVE, memory_order_relaxed);
	r = shval__dir_insert(seg, eoff, shval__hash(name, nlen));
	if (r) {
		shval__free(seg, eoff, nlines);
		return r;
	}
	if (shared_lk)
		((shval__lockblk *)shval__at(seg, shared_lk))->users++;
	shval__seg_bump(seg);
	*off = eoff;
	*created = true;
	return 0;
}

static int check_create_args(shval_seg *seg, const char *name, const char *type,
			     unsigned flags, const void *init, size_t init_len,
			     shval__type **t, bool *owned, size_t *nlen)
{
	if (!seg)
		return shval__failf(NULL, -EINVAL, "seg is NULL");
	if (flags & ~SHVAL_MODE_MASK)
		return shval__failf(seg, -EINVAL, "unknown flag bits 0x%x",
				    flags & ~SHVAL_MODE_MASK);
	if (seg->flags & SHVAL_RDONLY)
		return shval__failf(seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only",
				    seg->name);
	int r = check_name(seg, name, nlen);
	if (r == 0)
		r = check_utf8(seg, name, *nlen);
	if (r)
		return r;
	shval__err err = { "" };
	*t = shval__seg_type_text(seg, type ? type : "(null)", owned, err.msg,
				  sizeof err.msg, &r);
	if (!*t)
		return shval__failf(seg, r, "%s", err.msg);
	unsigned mode = flags & SHVAL_MODE_MASK;
	if (mode == SHVAL_ATOMIC) {
		size_t s = (*t)->size;
		if ((*t)->kind != SHVAL_KIND_SCALAR ||
		    !(s == 1 || s == 2 || s == 4 || s == 8)) {
			r = shval__failf(
				seg, SHVAL_EMODE,
				"value %s: type %s cannot be atomic (only "
				"scalars of 1, 2, 4 or 8 bytes)",
				name, (*t)->canon);
			goto fail;
		}
	}
	if (init) {
		if (init_len != (*t)->size) {
			r = shval__failf(
				seg, SHVAL_ESIZE,
				"value %s: initial data is %zu bytes, type "
				"%s takes %zu",
				name, init_len, (*t)->canon, (*t)->size);
			goto fail;
		}
		r = shval__type_check(*t, init, err.msg, sizeof err.msg);
		if (r) {
			r = shval__failf(seg, r, "value %s: %s", name, err.msg);
			goto fail;
		}
	}
	return 0;
fail:
	if (*owned)
		shval__type_free(*t);
	*t = NULL;
	return r;
}

/* shval_create and shval_create_guarded: lock is the shared lock that
 * guards the new value, or NULL (its own lock, or none). */
static int create_value(shval_seg *seg, const char *name, const char *type,
			unsigned flags, shval *lock, const void *init,
			size_t init_len, shval **out)
{
	shval__type *t = NULL;
	size_t nlen;
	bool owned = false, created;
	uint64_t off;
	int r = check_create_args(seg, name, type, flags, init, init_len, &t,
				  &owned, &nlen);
	if (r)
		return r;
	if ((r = shval__seg_lock(seg)) != 0)
		goto out;
	r = lock ? shval__check(lock) : 0;
	if (r == 0)
		r = create_locked(seg, name, nlen, t, flags & SHVAL_MODE_MASK,
				  lock ? lock->e->lock_off : 0, init, false,
				  &off, &created);
	shval__seg_unlock(seg);
	if (r == 0)
		r = shval__handle_make(seg, off, out);
out:
	if (owned)
		shval__type_free(t);
	return r;
}

SHVAL_API int shval_create(shval_seg *seg, const char *name, const char *type,
			   unsigned flags, const void *init, size_t init_len,
			   shval **out)
{
	if (!out)
		return shval__failf(seg, -EINVAL, "shval_create: out is NULL");
	if (SHVAL__RSEG(seg))
		return shval__r_create(seg, name, type, flags, init, init_len,
				       NULL, false, false, out, NULL);
	*out = NULL;
	return create_value(seg, name, type, flags, NULL, init, init_len, out);
}

static int check_same(shval_seg *seg, shval *v, const char *name,
		      const shval__type *t, int mode)
{
	if (t && strcmp(v->type->canon, t->canon) != 0)
		return shval__failf(seg, SHVAL_ETYPE,
				    "value %s has type \"%s\", not \"%s\"",
				    name, v->type->canon, t->canon);
	if (mode >= 0 && (unsigned)mode != v->mode)
		return shval__failf(seg, SHVAL_EMODE,
				    "value %s exists with another mode", name);
	return 0;
}

SHVAL_API int shval_find(shval_seg *seg, const char *name, const char *type,
			 shval **out)
{
	if (!out || !seg)
		return shval__failf(seg, -EINVAL, "shval_find: %s is NULL",
				    !out ? "out" : "seg");
	if (SHVAL__RSEG(seg))
		return shval__r_find(seg, name, type, out);
	*out = NULL;
	size_t nlen;
	int r = check_name(seg, name, &nlen);
	if (r)
		return r;
	uint64_t off;
	r = shval__dir_find(seg, name, nlen, &off);
	/* A type given in canonical form is compared without parsing it. */
	shval__entry *e0 = r == 0 ? shval__entry_at(seg, off) : NULL;
	const char *stored = e0 && e0->kind != SHVAL_KIND_LOCK
				     ? shval__entry_type(seg, e0, NULL)
				     : NULL;
	if (stored && type && strcmp(stored, type) == 0)
		type = NULL;
	shval__type *t = NULL;
	if (type) {
		shval__err err = { "" };
		int r2 = shval__type_parse(type, &t, err.msg, sizeof err.msg);
		if (r2)
			return shval__failf(seg, r2, "%s", err.msg);
	}
	if (r == SHVAL_ENOTFOUND)
		r = shval__failf(seg, r, "segment %s: no value named %s",
				 seg->name, name);
	if (r == 0)
		r = shval__handle_make(seg, off, out);
	if (r == 0 && (r = check_same(seg, *out, name, t, -1)) != 0) {
		shval_close(*out);
		*out = NULL;
	}
	shval__type_free(t);
	return r;
}

SHVAL_API int shval_find_or_create(shval_seg *seg, const char *name,
				   const char *type, unsigned flags,
				   const void *init, size_t init_len,
				   shval **out, bool *created)
{
	if (!out)
		return shval__failf(seg, -EINVAL,
				    "shval_find_or_create: out is NULL");
	if (SHVAL__RSEG(seg))
		return shval__r_create(seg, name, type, flags, init, init_len,
				       NULL, false, true, out, created);
	*out = NULL;
	if (created)
		*created = false;
	shval__type *t;
	size_t nlen;
	bool owned = false;
	int r = check_create_args(seg, name, type, flags, init, init_len, &t,
				  &owned, &nlen);
	if (r)
		return r;
	uint64_t off;
	bool made = false;
	r = shval__dir_find(seg, name, nlen, &off);
	if (r == SHVAL_ENOTFOUND) {
		r = shval__seg_lock(seg);
		if (r == 0) {
			r = create_locked(seg, name, nlen, t,
					  flags & SHVAL_MODE_MASK, 0, init,
					  true, &off, &made);
			shval__seg_unlock(seg);
		}
	}
	if (r == 0)
		r = shval__handle_make(seg, off, out);
	if (r == 0 && !made &&
	    (r = check_same(seg, *out, name, t,
			    (int)(flags & SHVAL_MODE_MASK)))) {
		shval_close(*out);
		*out = NULL;
	}
	if (r == 0 && created)
		*created = made;
	if (owned)
		shval__type_free(t);
	return r;
}

/* Remove the entry at off (named name); under the segment lock. */
static int remove_locked(shval_seg *seg, const char *name, size_t nlen,
			 uint64_t off)
{
	shval__entry *e = shval__at(seg, off);
	uint64_t end = off + (uint64_t)e->nlines * SHVAL__LINE;
	shval__lockblk *lk = NULL;
	if (e->lock_off && e->lock_off % 8 == 0 &&
	    shval__in(seg, e->lock_off, sizeof(shval__lockblk)))
		lk = shval__at(seg, e->lock_off);
	if (e->kind == SHVAL_KIND_LOCK && lk && lk->users)
		return shval__failf(seg, SHVAL_EMISUSE,
				    "segment %s: lock %s still guards %llu "
				    "value(s); remove them first",
				    seg->name, name,
				    (unsigned long long)lk->users);
	if (e->kind != SHVAL_KIND_LOCK && lk &&
	    (e->lock_off < off || e->lock_off >= end) && lk->users)
		lk->users--; /* a value guarded by a shared lock */
	/* release: a handle that sees REMOVED sees it for good.  Limbo then
	 * sets the serial to 0 (alloc.c), which is what the header's inline
	 * paths check. */
	atomic_store_explicit(&e->state, SHVAL__ST_REMOVED,
			      memory_order_release);
	shval__dir_remove(seg, off, shval__hash(name, nlen));
	shval__limbo(seg, off);
	shval__seg_bump(seg);
	/* Wake anyone waiting on the removed value (limbo moved its
	 * version): they get SHVAL_ESTALE. */
	shval__futex_wake(&e->version);
	return 0;
}

SHVAL_API int shval_remove(shval_seg *seg, const char *name)
{
	if (SHVAL__RSEG(seg))
		return shval__r_remove(seg, name);
	if (!seg)
		return shval__failf(NULL, -EINVAL, "shval_remove: seg is NULL");
	size_t nlen;
	int r = check_name(seg, name, &nlen);
	if (r)
		return r;
	/* Take the value's lock first (before the segment lock: a section may
	 * create values, which takes the segment lock), so that nobody is
	 * mid-section in the block we remove.  Bounded: a live holder that
	 * keeps it for a second gets the removal refused with -EBUSY (its
	 * block must not be reused under its writes: a section's pointers
	 * would land in the next value created there), which also rules out
	 * deadlocks between sections that remove each other's values.  A
	 * dead holder's lock is taken (EOWNERDEAD: rolled back). */
	shval *held = NULL;
	uint64_t off;
	if (!(seg->flags & SHVAL_RDONLY) &&
	    shval__dir_find(seg, name, nlen, &off) == 0 &&
	    shval__handle_make(seg, off, &held) == 0) {
		int lr = held->lk ? shval_timedlock(held, SHVAL_SEC) : -1;
		if (lr == -ETIMEDOUT) {
			uint32_t tid = shval__mutex_owner(&held->lk->mutex);
			shval_close(held);
			return shval__failf(
				seg, -EBUSY,
				"segment %s: value %s is locked by thread %u "
				"(a section in progress for over a second): "
				"not removed",
				seg->name, name, (unsigned)tid);
		}
		if (lr != 0 && lr != SHVAL_EOWNERDEAD) {
			shval_close(held);
			held = NULL;
		}
	}
	if ((r = shval__seg_lock(seg)) != 0)
		goto out;
	r = shval__dir_find(seg, name, nlen, &off);
	if (r == 0)
		r = shval__pins_refuse(seg, name, off); /* buffers over it */
	if (r == 0)
		r = remove_locked(seg, name, nlen, off);
	else if (r == SHVAL_ENOTFOUND)
		r = shval__failf(seg, r, "segment %s: no value named %s",
				 seg->name, name);
	shval__seg_unlock(seg);
out:
	if (held) {
		/* Release the lock of the removed block: its waiters wake, see
		 * the value gone (shval__check after locking) and let go. */
		shval_unlock(held);
		shval_close(held);
	}
	return r;
}

SHVAL_API int shval_lock_create(shval_seg *seg, const char *name,
				unsigned flags, shval **out)
{
	if (!out || !seg)
		return shval__failf(seg, -EINVAL,
				    "shval_lock_create: %s is NULL",
				    !out ? "out" : "seg");
	if (SHVAL__RSEG(seg))
		return shval__r_create(seg, name, NULL, flags, NULL, 0, NULL,
				       true, false, out, NULL);
	*out = NULL;
	unsigned mode = flags & SHVAL_MODE_MASK;
	if ((flags & ~SHVAL_MODE_MASK) ||
	    (mode != SHVAL_RLOCK && mode != SHVAL_LOCK))
		return shval__failf(
			seg, -EINVAL,
			"shval_lock_create takes SHVAL_RLOCK or SHVAL_LOCK");
	if (seg->flags & SHVAL_RDONLY)
		return shval__failf(seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only",
				    seg->name);
	size_t nlen;
	int r = check_name(seg, name, &nlen);
	if (r == 0)
		r = check_utf8(seg, name, nlen);
	if (r)
		return r;
	if ((r = shval__seg_lock(seg)) != 0)
		return r;
	uint64_t off;
	bool created;
	r = create_locked(seg, name, nlen, NULL, mode, 0, NULL, false, &off,
			  &created);
	shval__seg_unlock(seg);
	if (r)
		return r;
	return shval__handle_make(seg, off, out);
}

SHVAL_API int shval_create_guarded(shval_seg *seg, const char *name,
				   const char *type, shval *lock,
				   const void *init, size_t init_len,
				   shval **out)
{
	if (!out || !lock || !seg)
		return shval__failf(seg, -EINVAL,
				    "shval_create_guarded: %s is NULL",
				    !out    ? "out"
				    : !lock ? "lock"
					    : "seg");
	if (SHVAL__RSEG(seg))
		return shval__r_create(seg, name, type, 0, init, init_len, lock,
				       false, false, out, NULL);
	*out = NULL;
	if (lock->seg != seg || lock->kind != SHVAL_KIND_LOCK)
		return shval__failf(seg, SHVAL_EMISUSE,
				    "the lock given is not a lock entry of "
				    "segment %s",
				    seg->name);
	return create_value(seg, name, type, lock->mode, lock, init, init_len,
			    out);
}
