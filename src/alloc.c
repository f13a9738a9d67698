/*
 * src/alloc.c — space inside a segment.  Every function here runs under
 * the segment lock.
 *
 * Blocks are whole 64-byte lines.  A free block is laid out as an entry
 * header (shval__entry) with state FREE, serial 0, nlines = its size and
 * lock_off = the next free block, so free blocks, limbo blocks and live
 * entries can be told apart by shval_seg_verify and by stale handles.
 *
 * Lists: free_head[n] for blocks of exactly n lines (1..63), free_head[0]
 * for bigger ones (first fit, the rest split off as a new free block).
 * Blocks are never merged (see format.h: a block start stays a block
 * start).  Removed entries wait SHVAL__LIMBO_NS in a FIFO limbo list before
 * they are freed, so a call that passed its serial check just before the
 * removal does not write into a value created in the same instant; replaced
 * directory tables wait there too, for lock-free lookups still probing them
 * (dir.c).
 *
 * Crash consistency: each list change is one store of a head/next field,
 * done after the block itself is written.  A process killed between two
 * steps leaks at most the block it was moving; it never puts one block in
 * two places.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "internal.h"

/* brk and used are read without the segment lock by shval__hdr_check
 * (seg.c), in the order used, brk, size: each is stored with release, in
 * the order size, brk, used when they grow together. */
static void used_add(shval__hdr *h, uint64_t delta)
{
	__atomic_store_n(&h->used, h->used + delta, __ATOMIC_RELEASE);
}

static uint64_t class_of(uint64_t nlines)
{
	return nlines < SHVAL__NCLASS ? nlines : 0;
}

static shval__entry *block_at(shval_seg *seg, uint64_t off, uint8_t state)
{
	if (off < sizeof(shval__hdr) || off % SHVAL__LINE ||
	    !shval__in(seg, off, SHVAL__LINE))
		return NULL;
	shval__entry *e = shval__at(seg, off);
	if (atomic_load_explicit(&e->state, memory_order_relaxed) != state ||
	    e->nlines == 0 ||
	    !shval__in(seg, off, (uint64_t)e->nlines * SHVAL__LINE))
		return NULL;
	return e;
}

void shval__free(shval_seg *seg, uint64_t off, uint64_t nlines)
{
	shval__hdr *h = seg->hdr;
	shval__entry *e = shval__at(seg, off);
	uint64_t c = class_of(nlines);
	atomic_store_explicit(&e->serial, 0, memory_order_relaxed);
	atomic_store_explicit(&e->state, SHVAL__ST_FREE, memory_order_relaxed);
	e->nlines = (uint32_t)nlines;
	e->lock_off = h->free_head[c];
	h->free_head[c] = off;
	used_add(h, -(nlines * SHVAL__LINE));
}

void shval__limbo(shval_seg *seg, uint64_t off)
{
	shval__hdr *h = seg->hdr;
	shval__entry *e = shval__at(seg, off);
	atomic_store_explicit(&e->state, SHVAL__ST_LIMBO, memory_order_relaxed);
	/* Serial 0, never a live value's, after a non-live state (format.h,
	 * format 4): the header's inline paths (include/shval.h) check the
	 * serial alone, and every handle's serial differs from 0 from now
	 * until the block is reused with a new one.  Here, so that a remove
	 * cut short and finished by the recount (dir.c) does it too.  In a
	 * replaced directory table it is header padding. */
	atomic_store_explicit(&e->serial, 0, memory_order_release);
	atomic_store_explicit(&e->version, shval__now_ns(),
			      memory_order_relaxed);
	e->lock_off = 0;
	shval__entry *tail =
		h->limbo_tail ? block_at(seg, h->limbo_tail, SHVAL__ST_LIMBO)
			      : NULL;
	if (tail)
		tail->lock_off = off;
	else
		h->limbo_head = off;
	h->limbo_tail = off;
}

static int drain_limbo(shval_seg *seg)
{
	shval__hdr *h = seg->hdr;
	uint64_t now = shval__now_ns();
	while (h->limbo_head) {
		shval__entry *e = block_at(seg, h->limbo_head, SHVAL__ST_LIMBO);
		if (!e) {
			h->limbo_head = h->limbo_tail =
				0; /* drop a damaged list */
			return shval__failf(seg, SHVAL_ECORRUPT,
					    "segment %s: damaged limbo list",
					    seg->name);
		}
		uint64_t t =
			atomic_load_explicit(&e->version, memory_order_relaxed);
		if (now - t < SHVAL__LIMBO_NS && t <= now)
			break;
		uint64_t off = h->limbo_head;
		h->limbo_head = e->lock_off;
		if (!h->limbo_head)
			h->limbo_tail = 0;
		shval__free(seg, off, e->nlines);
	}
	return 0;
}

static int grow(shval_seg *seg, uint64_t need)
{
	shval__hdr *h = seg->hdr;
	uint64_t size = atomic_load_explicit(&h->size, memory_order_relaxed);
	if (size > seg->map_len || !shval__in(seg, 0, size))
		return shval__failf(
			seg, SHVAL_ECORRUPT,
			"segment %s: header size %llu disagrees with "
			"the file",
			seg->name, (unsigned long long)size);
	if (need > seg->map_len)
		return shval__failf(
			seg, SHVAL_EFULL,
			"segment %s: needs %llu bytes, maximum size "
			"is %llu",
			seg->name, (unsigned long long)need,
			(unsigned long long)seg->map_len);
	uint64_t chunk = 65536;
	uint64_t want = size * 2 > need ? size * 2 : need;
	want = (want + chunk - 1) / chunk * chunk;
	if (want > seg->map_len)
		want = seg->map_len;
	int r = posix_fallocate(seg->fd, (off_t)size, (off_t)(want - size));
	if (r == ENOSPC && want > need) {
		want = (need + 4095) / 4096 * 4096;
		r = posix_fallocate(seg->fd, (off_t)size, (off_t)(want - size));
	}
	if (r != 0)
		return shval__failf(
			seg, -r,
			"segment %s: growing from %llu to %llu bytes: %s",
			seg->name, (unsigned long long)size,
			(unsigned long long)want, strerror(r));
	/* tag-size: release publishes the grown file to other processes'
	 * bounds checks (they also fstat, see shval__in_slow). */
	atomic_store_explicit(&h->size, want, memory_order_release);
	atomic_store_explicit(&seg->valid, want, memory_order_relaxed);
	return 0;
}

int shval__alloc(shval_seg *seg, uint64_t nlines, uint64_t *off)
{
	shval__hdr *h = seg->hdr;
	if (nlines == 0 || nlines > UINT32_MAX)
		return shval__failf(seg, SHVAL_EFULL, "block of %llu lines",
				    (unsigned long long)nlines);
	int r = drain_limbo(seg);
	if (r)
		return r;
	uint64_t c = class_of(nlines);
	if (c && h->free_head[c]) {
		shval__entry *e =
			block_at(seg, h->free_head[c], SHVAL__ST_FREE);
		if (e && e->nlines == nlines) {
			*off = h->free_head[c];
			h->free_head[c] = e->lock_off;
			used_add(h, nlines * SHVAL__LINE);
			return 0;
		}
		h->free_head[c] =
			0; /* damaged: drop the list, leak its blocks */
	}
	/* First fit in the list of big blocks, splitting the rest off. */
	uint64_t *link = &h->free_head[0];
	for (int guard = 0; *link && guard < 1000000; guard++) {
		shval__entry *e = block_at(seg, *link, SHVAL__ST_FREE);
		if (!e) {
			*link = 0;
			break;
		}
		if (e->nlines >= nlines) {
			uint64_t b = *link, have = e->nlines;
			*link = e->lock_off;
			used_add(h, have * SHVAL__LINE);
			if (have > nlines)
				shval__free(seg, b + nlines * SHVAL__LINE,
					    have - nlines);
			*off = b;
			return 0;
		}
		link = &e->lock_off;
	}
	/* A damaged brk or size must not make us hand out the header, an
	 * unaligned block, or a block past the end of the file (SIGBUS). */
	uint64_t size = atomic_load_explicit(&h->size, memory_order_relaxed);
	if (h->brk < sizeof(shval__hdr) || h->brk % SHVAL__LINE ||
	    h->brk > size)
		return shval__failf(
			seg, SHVAL_ECORRUPT,
			"segment %s: damaged header (brk %llu, size "
			"%llu)",
			seg->name, (unsigned long long)h->brk,
			(unsigned long long)size);
	uint64_t need = h->brk + nlines * SHVAL__LINE;
	if (need < h->brk)
		return SHVAL_EFULL;
	if (need > size) {
		r = grow(seg, need);
		if (r)
			return r;
	}
	if (!shval__in(seg, h->brk, nlines * SHVAL__LINE))
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: header says %llu bytes are "
				    "backed, the file is smaller",
				    seg->name, (unsigned long long)size);
	*off = h->brk;
	__atomic_store_n(&h->brk, need, __ATOMIC_RELEASE);
	used_add(h, nlines * SHVAL__LINE);
	return 0;
}
