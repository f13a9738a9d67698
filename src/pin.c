/*
 * src/pin.c — buffer pins (format.h, "A pin block").  shval_pin() records
 * in this process's attach slot that it hands out pointers into a value's
 * block (a Python memoryview, a numpy array, a C caller keeping
 * shval_data()); shval_remove() refuses a value that a live process has
 * pinned; a dead process's pins go with its attach slot.  Pin blocks are
 * read and written under the segment lock only (verify reads them without
 * it, bounds-checked).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

shval__pins *shval__pins_at(shval_seg *seg, unsigned slot)
{
	shval__attach *a = &seg->hdr->attach[slot];
	uint64_t off = (uint64_t)a->pins_line * SHVAL__LINE;
	if (off < sizeof(shval__hdr) || !shval__in(seg, off, SHVAL__LINE))
		return NULL;
	shval__pins *p = shval__at(seg, off);
	if (atomic_load_explicit(&p->state, memory_order_relaxed) !=
		    SHVAL__ST_PINS ||
	    atomic_load_explicit(&p->serial, memory_order_relaxed) != 0 ||
	    p->nlines < 2 ||
	    !shval__in(seg, off, (uint64_t)p->nlines * SHVAL__LINE) ||
	    p->cap != (p->nlines - 1) * SHVAL__PINS_PER_LINE || p->n > p->cap ||
	    p->pid != atomic_load(&a->pid))
		return NULL;
	return p;
}

void shval__pins_drop(shval_seg *seg, unsigned slot)
{
	shval__attach *a = &seg->hdr->attach[slot];
	if (!a->pins_line)
		return;
	shval__pins *p = shval__pins_at(seg, slot);
	uint64_t off = (uint64_t)a->pins_line * SHVAL__LINE;
	a->pins_line = 0;
	if (p) /* a damaged block is left where it is (counted in use) */
		shval__free(seg, off, p->nlines);
}

/* This process's attach slot of seg, or -1. */
static int my_slot(shval_seg *seg)
{
	return seg->attach_slot >= 0 && seg->attach_pid == shval__pid()
		       ? seg->attach_slot
		       : -1;
}

bool shval__pins_held(shval_seg *seg)
{
	int slot = my_slot(seg);
	if (slot < 0 || (seg->flags & SHVAL_RDONLY))
		return false;
	shval__pins *p = shval__pins_at(seg, (unsigned)slot);
	return p && p->n > 0;
}

/* The record of (line, serial) in p, or -1. */
static long find(const shval__pins *p, uint32_t line, uint64_t serial)
{
	for (uint32_t i = 0; i < p->n; i++)
		if (p->pin[i].line == line && p->pin[i].serial == serial)
			return i;
	return -1;
}

/* Room for one more record in slot's block: a new block (2 lines, then
 * doubling) filled before pins_line names it, the old one freed after. */
static int make_room(shval_seg *seg, unsigned slot, shval__pins **pp)
{
	shval__attach *a = &seg->hdr->attach[slot];
	shval__pins *old = shval__pins_at(seg, slot);
	if (old && old->n < old->cap) {
		*pp = old;
		return 0;
	}
	uint64_t nlines = old ? (uint64_t)(old->nlines - 1) * 2 + 1 : 2;
	uint64_t off;
	int r = shval__alloc(seg, nlines, &off);
	if (r)
		return r;
	shval__pins *p = shval__at(seg, off);
	memset(p, 0, SHVAL__LINE);
	p->nlines = (uint32_t)nlines;
	p->pid = atomic_load(&a->pid);
	p->cap = (uint32_t)((nlines - 1) * SHVAL__PINS_PER_LINE);
	if (old) {
		memcpy(p->pin, old->pin, old->n * sizeof(shval__pin));
		p->n = old->n;
	}
	atomic_store_explicit(&p->state, SHVAL__ST_PINS, memory_order_relaxed);
	uint64_t old_off = (uint64_t)a->pins_line * SHVAL__LINE;
	a->pins_line = (uint32_t)(off / SHVAL__LINE);
	if (old)
		shval__free(seg, old_off, old->nlines);
	*pp = p;
	return 0;
}

static int pin_check(shval *v, const char *what)
{
	if (!v)
		return shval__failf(NULL, -EINVAL, "%s: v is NULL", what);
	if (SHVAL__REMOTE(v))
		return shval__failf(v->seg, SHVAL_EMODE,
				    "%s: a value of a Redis segment has no "
				    "shared memory to pin",
				    what);
	if (v->kind == SHVAL_KIND_LOCK)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "%s: a lock has no data to pin", what);
	if (v->seg->flags & SHVAL_RDONLY)
		return shval__failf(v->seg, SHVAL_ERDONLY,
				    "%s: segment %s was opened read-only: no "
				    "pin can be recorded in it (and nothing "
				    "written through its pointers)",
				    what, v->seg->name);
	return 0;
}

static int pin_locked(shval *v)
{
	shval_seg *seg = v->seg;
	int r = shval__check(v);
	if (r)
		return r;
	/* No slot: the attach table was full at open, or the segment was
	 * closed by the user with no pins then (its handles still map it; the
	 * slot claimed now goes with the mapping, seg_destroy). */
	if (my_slot(seg) < 0) {
		if (shval__attach_claim_reaping(seg) != 0)
			return shval__failf(
				seg, SHVAL_EFULL,
				"shval_pin: segment %s: the attach table is "
				"full (%u processes): no slot to record the "
				"pin in",
				seg->name, SHVAL__ATTACH_CAP);
	}
	unsigned slot = (unsigned)my_slot(seg);
	uint32_t line = (uint32_t)(v->off / SHVAL__LINE);
	shval__pins *p = shval__pins_at(seg, slot);
	long i = p ? find(p, line, v->serial) : -1;
	if (i >= 0) {
		if (p->pin[i].count == UINT32_MAX)
			return shval__failf(seg, -EOVERFLOW,
					    "shval_pin: value %.*s is pinned "
					    "%u times by this process",
					    (int)v->e->name_len, v->e->name,
					    UINT32_MAX);
		p->pin[i].count++;
		return 0;
	}
	if ((r = make_room(seg, slot, &p)) != 0)
		return r;
	p->pin[p->n] = (shval__pin){ line, 1, v->serial };
	p->n++;
	return 0;
}

SHVAL_API int shval_pin(shval *v)
{
	int r = pin_check(v, "shval_pin");
	if (r)
		return r;
	if ((r = shval__seg_lock(v->seg)) != 0)
		return r;
	r = pin_locked(v);
	shval__seg_unlock(v->seg);
	return r;
}

SHVAL_API int shval_unpin(shval *v)
{
	int r = pin_check(v, "shval_unpin");
	if (r)
		return r;
	shval_seg *seg = v->seg;
	if ((r = shval__seg_lock(seg)) != 0)
		return r;
	int slot = my_slot(seg);
	shval__pins *p = slot >= 0 ? shval__pins_at(seg, (unsigned)slot) : NULL;
	long i = p ? find(p, (uint32_t)(v->off / SHVAL__LINE), v->serial) : -1;
	if (i < 0) {
		r = shval__failf(seg, SHVAL_EMISUSE,
				 "shval_unpin: this process (%d) holds no pin "
				 "on the value at offset %llu of segment %s",
				 (int)getpid(), (unsigned long long)v->off,
				 seg->name);
	} else if (--p->pin[i].count == 0) {
		p->pin[i] = p->pin[p->n - 1];
		p->n--;
	}
	shval__seg_unlock(seg);
	return r;
}

int shval__pins_refuse(shval_seg *seg, const char *name, uint64_t off)
{
	shval__hdr *h = seg->hdr;
	shval__entry *e = shval__at(seg, off);
	uint64_t serial = atomic_load(&e->serial);
	uint32_t line = (uint32_t)(off / SHVAL__LINE);
	for (unsigned s = 0; s < SHVAL__ATTACH_CAP; s++) {
		shval__attach *a = &h->attach[s];
		uint32_t pid = atomic_load(&a->pid);
		if (!pid || !a->pins_line)
			continue;
		shval__pins *p = shval__pins_at(seg, s);
		long i = p ? find(p, line, serial) : -1;
		if (i < 0)
			continue;
		if ((int)s == my_slot(seg) ||
		    shval__proc_alive((pid_t)pid, a->start_time))
			return shval__failf(
				seg, -EBUSY,
				"segment %s: value %s is pinned by process "
				"%u%s (%u buffer pin(s) over its memory: a "
				"memoryview, an array view or shval_pin): not "
				"removed",
				seg->name, name, (unsigned)pid,
				(pid_t)pid == getpid() ? " (this process)" : "",
				(unsigned)p->pin[i].count);
		/* A dead pinner: its slot and its pins go. */
		shval__pins_drop(seg, s);
		atomic_compare_exchange_strong(&a->pid, &pid, 0);
	}
	return 0;
}
