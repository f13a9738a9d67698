/*
 * src/handle.c — value handles: make (validating the entry), close, info,
 * the fast-path view the public header's inline functions read, and
 * shval_new (the multiprocessing.Value shape).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "section.h"

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
	    e->data_rel + sizeof(shval__lockblk) >
		    (uint64_t)e->nlines * SHVAL__LINE)
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
	bool value = v->kind != SHVAL_KIND_LOCK && v->size <= UINT32_MAX;
	if (v->undo && value)
		f->flags |= SHVAL__F_SEQREAD;
	if (v->fast_add)
		f->flags |= SHVAL__F_ATOMIC64;
	if (v->fast_add32)
		f->flags |= v->fast_add32 == 's' ? SHVAL__F_ATOMIC32S
						 : SHVAL__F_ATOMIC32U;
	if (v->undo && value && v->fast_sec) {
		if (!v->needs_check)
			f->flags |= SHVAL__F_OWNWRITE;
		if (v->int64)
			f->flags |= SHVAL__F_LOCKED64;
	}
	f->size = (unsigned)v->size;
	f->read_size = (f->flags & SHVAL__F_SEQREAD) ? f->size : 0;
	f->write_size = (f->flags & SHVAL__F_OWNWRITE) ? f->size : 0;
	f->data = v->data;
	f->version = (uint64_t *)(void *)&e->version;
	f->serial = (const uint64_t *)(void *)&e->serial;
	f->serial_want = v->serial;
	f->waiters = (uint8_t *)(void *)&e->waiters;
	f->seg_version = (const uint64_t *)(void *)&v->seg->hdr->version;
	f->lock = v->lk ? &v->lk->mutex : NULL;
	f->lock_kind = v->lk ? &v->lk->mutex.__data.__kind : NULL;
	f->lock_kind_want = shval__lock_kind;
	f->undo = v->undo;
}

SHVAL_API void shval__fast_wake(shval *v, int committed)
{
	if (!v)
		return;
	if (committed)
		shval__wake_after_commit(v->seg, v->e, committed == 2);
	else
		shval__wake_after_change(v->seg, v->e, false);
}

int shval__handle_make(shval_seg *seg, uint64_t off, shval **out)
{
	*out = NULL;
	shval__entry *e = shval__entry_at(seg, off);
	if (!e)
		return shval__failf(
			seg, SHVAL_ECORRUPT,
			"segment %s: entry at offset %llu is damaged",
			seg->name, (unsigned long long)off);
	uint64_t serial =
		atomic_load_explicit(&e->serial, memory_order_acquire);
	if (serial == 0) {
		/* Removed since the lookup found it: removal stores REMOVED,
		 * then limbo stores serial 0 (release; alloc.c), so a live
		 * state here is damage. */
		bool live =
			atomic_load_explicit(&e->state, memory_order_relaxed) ==
			SHVAL__ST_LIVE;
		return shval__failf(
			seg, live ? SHVAL_ECORRUPT : SHVAL_ENOTFOUND,
			live ? "segment %s: value %.*s: serial 0 in a live "
			       "entry (damaged)"
			     : "segment %s: value %.*s was removed while "
			       "being opened",
			seg->name, (int)e->name_len, e->name);
	}
	if (e->kind == SHVAL_KIND_LOCK)
		return lock_handle_make(seg, off, e, serial, out);
	uint64_t tsize;
	const char *canon = shval__entry_type(seg, e, &tsize);
	if (!canon)
		return shval__failf(
			seg, SHVAL_ECORRUPT,
			"segment %s: value %.*s: type record damaged",
			seg->name, (int)e->name_len, e->name);
	shval *v = calloc(1, sizeof *v);
	if (!v)
		return shval__failf(seg, -ENOMEM, "out of memory");
	shval__err err = { "" };
	v->type = shval__seg_type(seg, e->type_line, canon, err.msg,
				  sizeof err.msg);
	if (!v->type) {
		free(v);
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: value %.*s: stored type: %s",
				    seg->name, (int)e->name_len, e->name,
				    err.msg);
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
	else if (mode == SHVAL_ATOMIC && (v->kind != SHVAL_KIND_SCALAR ||
					  !(v->size == 1 || v->size == 2 ||
					    v->size == 4 || v->size == 8)))
		bad = "atomic mode on a type that cannot be atomic";
	if (!bad && (mode == SHVAL_RLOCK || mode == SHVAL_LOCK)) {
		uint64_t lo = e->lock_off;
		if (lo % 8 || !shval__in(seg, lo, sizeof(shval__lockblk)) ||
		    lo < sizeof(shval__hdr))
			bad = "lock outside the segment";
		else
			v->lk = shval__at(seg, lo);
		v->own_lock =
			lo >= off && lo + sizeof(shval__lockblk) <= off + bytes;
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
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: value %.*s: %s", seg->name,
				    (int)e->name_len, e->name, bad);
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
	if (v->kind == SHVAL_KIND_SCALAR && v->size == 4 &&
	    mode == SHVAL_ATOMIC && !(seg->flags & SHVAL_RDONLY)) {
		char c = v->type->fields[0].code;
		v->fast_add32 = c == 'i' ? 's' : c == 'I' ? 'u' : 0;
	}
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
	if (SHVAL__REMOTE(v)) {
		shval__r_close(v);
		return;
	}
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
	shval__err err = { "" };
	shval__type *t = shval__seg_type(seg, e->type_line, canon, err.msg,
					 sizeof err.msg);
	if (!t)
		return SHVAL_ECORRUPT;
	snprintf(info->type, sizeof info->type, "%s", t->canon);
	info->mode = (unsigned)e->mode << 8;
	info->kind = t->kind;
	info->size = t->size;
	info->count =
		t->kind == SHVAL_KIND_STRUCT ? t->nfields : t->fields[0].count;
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_acquire);
	info->version = ver & ~(SHVAL__V_WAITERS | SHVAL__V_WRITING);
	if (info->mode == SHVAL_ATOMIC && t->size <= 8 &&
	    e->data_rel + t->size <= (uint64_t)e->nlines * SHVAL__LINE) {
		uint64_t x = 0;
		memcpy(&x, (unsigned char *)e + e->data_rel, t->size);
		info->version = x;
	}
	info->flags = (e->flags & SHVAL__EF_PARTIAL) ? SHVAL_INFO_PARTIAL : 0;
	/* only locked values without an undo copy can be left partly
	 * updated: the flag on any other is damage */
	if (info->flags &&
	    (info->mode > SHVAL_LOCK || info->size <= SHVAL__UNDO_MAX))
		return SHVAL_ECORRUPT;
	return 0;
}

SHVAL_API int shval_info(shval *v, struct shval_info *info)
{
	if (SHVAL__REMOTE(v))
		return info ? shval__r_info(v, info) : -EINVAL;
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
