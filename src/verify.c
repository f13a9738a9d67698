/*
 * src/verify.c — deep verification and repair of a segment
 * (shval_seg_verify, used by `shval check`).  Everything read from the
 * segment is treated as hostile: each offset and length is bounds-checked
 * before use, and every walk is bounded.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* A directory slot's word, and the entry it names: its offset, and the
 * entry (NULL when damaged).  SHVAL__SLOT_EMPTY for an empty slot or a
 * tombstone (then *eoff and *e are not set). */
static uint64_t slot_entry(shval_seg *seg, _Atomic uint64_t *slot,
			   uint64_t *eoff, shval__entry **e)
{
	uint64_t s = atomic_load(slot);
	if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB)
		return SHVAL__SLOT_EMPTY;
	*eoff = shval__slot_off(s);
	*e = shval__entry_at(seg, *eoff);
	return s;
}

/* A lock entry found in the directory: the values that name its lock
 * block are counted against its users word. */
struct vlock {
	uint64_t lock_off, entry_off;
	uint64_t count;
};

struct vctx {
	shval_seg *seg;
	unsigned flags;
	void (*report)(const shval_problem *, void *);
	void *arg;
	size_t found, unrepaired;
	struct vlock *locks;
	size_t nlocks;
};

static void problem(struct vctx *c, int code, const shval__entry *e,
		    uint64_t off, bool repaired, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void problem(struct vctx *c, int code, const shval__entry *e,
		    uint64_t off, bool repaired, const char *fmt, ...)
{
	shval_problem p;
	memset(&p, 0, sizeof p);
	p.code = code;
	p.offset = off;
	p.repaired = repaired;
	if (e)
		memcpy(p.name, e->name, e->name_len);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p.what, sizeof p.what, fmt, ap);
	va_end(ap);
	c->found++;
	if (!repaired)
		c->unrepaired++;
	if (c->report)
		c->report(&p, c->arg);
}

/* Take and release a value's lock through a handle: the lock path rolls
 * back a dead or stale owner's section and a stuck WRITING bit.  true if
 * the value's lock was taken. */
static bool relock(shval_seg *seg, uint64_t off)
{
	shval *v;
	if (shval__handle_make(seg, off, &v) != 0)
		return false;
	int r = shval_trylock(v);
	bool ok = r == 0 || r == SHVAL_EOWNERDEAD;
	if (ok) {
		if (v->kind != SHVAL_KIND_LOCK &&
		    (atomic_load(&v->e->version) & SHVAL__V_WRITING))
			shval_data(
				v); /* a shared lock's stuck bit: roll back */
		shval_unlock(v);
	}
	shval_close(v);
	return ok;
}

/* A value's (or lock entry's) lock: damaged, held by a dead or stale
 * owner, or WRITING left set with the lock free. */
static void check_lock(struct vctx *c, shval__entry *e, uint64_t off,
		       shval__lockblk *lk)
{
	shval_seg *seg = c->seg;
	bool repair = c->flags & SHVAL_VERIFY_REPAIR;
	pid_t tid;
	if (shval__mutex_damaged(&lk->mutex)) {
		bool fixed = repair && shval__lock_reinit(seg, &lk->mutex) &&
			     relock(seg, off);
		problem(c, SHVAL_ECORRUPT, e, off, fixed,
			"lock word damaged (kind 0x%x)%s",
			shval__mutex_kind(&lk->mutex),
			fixed ? ": re-initialised, value rolled back" : "");
		return;
	}
	if (shval__lock_stale(seg, &lk->mutex, &tid)) {
		bool fixed = repair && relock(seg, off);
		problem(c, SHVAL_EOWNERDEAD, e, off, fixed,
			"lock held by a dead or foreign thread (%d)%s",
			(int)tid, fixed ? ": taken, value rolled back" : "");
		return;
	}
	if (e->kind != SHVAL_KIND_LOCK &&
	    (atomic_load(&e->version) & SHVAL__V_WRITING) &&
	    shval__mutex_owner(&lk->mutex) == 0 &&
	    (atomic_load(&e->version) & SHVAL__V_WRITING)) {
		bool fixed = repair && relock(seg, off);
		problem(c, SHVAL_ECORRUPT, e, off, fixed,
			"write-in-progress bit set while the lock is free%s",
			fixed ? ": value rolled back" : "");
	}
}

static void check_entry(struct vctx *c, shval__entry *e, uint64_t off)
{
	shval_seg *seg = c->seg;
	uint64_t bytes = (uint64_t)e->nlines * SHVAL__LINE;
	if (e->kind != SHVAL_KIND_LOCK) {
		uint64_t size;
		const char *canon = shval__entry_type(seg, e, &size);
		if (!canon) {
			problem(c, SHVAL_ECORRUPT, e, off, false,
				"type record at line %u is damaged",
				e->type_line);
			return;
		}
		if (e->data_rel + size > bytes) {
			problem(c, SHVAL_ECORRUPT, e, off, false,
				"data (%llu bytes at +%u) outside its %llu-byte block",
				(unsigned long long)size, e->data_rel,
				(unsigned long long)bytes);
			return;
		}
		shval__type *t;
		shval__err err = { "" };
		if (shval__type_parse(canon, &t, err.msg, sizeof err.msg) !=
		    0) {
			problem(c, SHVAL_ECORRUPT, e, off, false,
				"stored type does not parse: %s", err.msg);
			return;
		}
		if (t->size != size || t->kind != e->kind)
			problem(c, SHVAL_ECORRUPT, e, off, false,
				"type record size %llu / kind %u disagree with \"%s\"",
				(unsigned long long)size, e->kind, t->canon);
		else if (shval__type_check(t, (unsigned char *)e + e->data_rel,
					   err.msg, sizeof err.msg) != 0 ||
			 shval__codepoints_check(
				 t, (unsigned char *)e + e->data_rel, err.msg,
				 sizeof err.msg) != 0)
			problem(c, SHVAL_ECORRUPT, e, off, false, "%s",
				err.msg);
		shval__type_free(t);
	}
	if (e->mode > 3) {
		problem(c, SHVAL_ECORRUPT, e, off, false, "unknown mode %u",
			e->mode);
		return;
	}
	if (e->mode <= 1) {
		uint64_t lo = e->lock_off;
		if (lo % 8 || lo < sizeof(shval__hdr) ||
		    !shval__in(seg, lo, sizeof(shval__lockblk))) {
			problem(c, SHVAL_ECORRUPT, e, off, false,
				"lock offset %llu outside the segment",
				(unsigned long long)lo);
			return;
		}
		bool own = lo >= off && lo < off + bytes;
		if (!own && e->kind != SHVAL_KIND_LOCK) {
			/* Guarded by a shared lock: lo must be the lock block
			 * of a lock entry in the directory.  Anything else is
			 * a lock that belongs to no entry (damage, or a write
			 * through a stale pointer into a reused block): its
			 * holder would not exclude the lock entry's. */
			struct vlock *l = NULL;
			for (size_t i = 0; i < c->nlocks && !l; i++)
				if (c->locks[i].lock_off == lo)
					l = &c->locks[i];
			if (!l) {
				problem(c, SHVAL_ECORRUPT, e, off, false,
					"lock offset %llu is not the lock of "
					"any lock entry (the lock block does "
					"not belong to it)",
					(unsigned long long)lo);
				return;
			}
			l->count++;
		}
		shval__lockblk *lk = shval__at(seg, lo);
		check_lock(c, e, off, lk);
	}
	if (e->flags & SHVAL__EF_PARTIAL) {
		/* Reported, but not damage: every element is whole. */
		problem(c, 0, e, off, false,
			"possibly partly updated (a writer died mid-update; "
			"cleared by the next full write)");
		c->unrepaired--;
	}
}

/* Pin blocks (format.h, "A pin block"): each attach slot's block must be
 * whole and its process's, and each record must name a live value of that
 * serial with a count.  Without --repair the segment lock is not taken
 * (a read-only check): what moved between two reads is not reported.
 * Repair drops a bad record, or forgets a damaged block (left in use). */
static void check_pins(struct vctx *c)
{
	shval_seg *seg = c->seg;
	shval__hdr *h = seg->hdr;
	bool locked =
		(c->flags & SHVAL_VERIFY_REPAIR) && shval__seg_lock(seg) == 0;
	for (unsigned s = 0; s < SHVAL__ATTACH_CAP; s++) {
		uint32_t line = __atomic_load_n(&h->attach[s].pins_line,
						__ATOMIC_RELAXED);
		uint32_t pid = atomic_load(&h->attach[s].pid);
		if (!line)
			continue;
		shval__pins *p = shval__pins_at(seg, s);
		if (!p) {
			if (!locked &&
			    (__atomic_load_n(&h->attach[s].pins_line,
					     __ATOMIC_RELAXED) != line ||
			     atomic_load(&h->attach[s].pid) != pid))
				continue; /* released or grown meanwhile */
			if (locked)
				h->attach[s].pins_line = 0;
			problem(c, SHVAL_ECORRUPT, NULL,
				offsetof(shval__hdr, attach) +
					s * sizeof(shval__attach),
				locked,
				"attach slot %u (process %u): its pin block at "
				"line %u is damaged or not its own%s",
				s, pid, line,
				locked ? ": forgotten (the pins in it are "
					 "lost)"
				       : "");
			continue;
		}
		for (uint32_t i = 0; i < p->n && i < p->cap;) {
			shval__pin r = p->pin[i];
			uint64_t eoff = (uint64_t)r.line * SHVAL__LINE;
			shval__entry *e = shval__entry_at(seg, eoff);
			if (r.count > 0 && e &&
			    atomic_load(&e->state) == SHVAL__ST_LIVE &&
			    atomic_load(&e->serial) == r.serial) {
				i++;
				continue;
			}
			if (!locked &&
			    (memcmp(&p->pin[i], &r, sizeof r) != 0 ||
			     __atomic_load_n(&h->attach[s].pins_line,
					     __ATOMIC_RELAXED) != line)) {
				i++; /* changed meanwhile */
				continue;
			}
			problem(c, SHVAL_ECORRUPT, e, eoff, locked,
				"pin of process %u (attach slot %u) names no "
				"live value (line %u, serial %llu, count "
				"%u)%s",
				pid, s, r.line, (unsigned long long)r.serial,
				r.count, locked ? ": dropped" : "");
			if (locked) {
				p->pin[i] = p->pin[p->n - 1];
				p->n--;
			} else {
				i++;
			}
		}
	}
	if (locked)
		shval__seg_unlock(seg);
}

/* A list of blocks through their lock_off.  A damaged one may loop: it
 * cannot hold more distinct blocks than the file has lines (the backed
 * size, not the header's max_size, which a damaged header may make huge:
 * a fuzzed image with max_size near 2^40 kept `shval check` walking a
 * cycle for seconds, fuzz/regressions/fuzz_segment/bug5-...). */
static int walk_list(struct vctx *c, uint64_t head, uint8_t state,
		     const char *what, uint64_t *bytes)
{
	uint64_t off = head;
	for (uint64_t n = 0; off; n++) {
		if (n > atomic_load(&c->seg->valid) / SHVAL__LINE) {
			problem(c, SHVAL_ECORRUPT, NULL, off, false,
				"%s list has a cycle", what);
			return -1;
		}
		if (off % SHVAL__LINE || off < sizeof(shval__hdr) ||
		    !shval__in(c->seg, off, SHVAL__LINE)) {
			problem(c, SHVAL_ECORRUPT, NULL, off, false,
				"%s list points outside the segment", what);
			return -1;
		}
		shval__entry *e = shval__at(c->seg, off);
		if (atomic_load(&e->state) != state || e->nlines == 0) {
			problem(c, SHVAL_ECORRUPT, NULL, off, false,
				"%s list holds a block in state %u", what,
				atomic_load(&e->state));
			return -1;
		}
		*bytes += (uint64_t)e->nlines * SHVAL__LINE;
		off = e->lock_off;
	}
	return 0;
}

struct reaped {
	pid_t pid[SHVAL__ATTACH_CAP];
	unsigned n;
};

static void note_reaped(pid_t pid, void *arg)
{
	struct reaped *r = arg;
	if (r->n < SHVAL__ATTACH_CAP)
		r->pid[r->n++] = pid;
}

SHVAL_API int shval_seg_verify(shval_seg *seg, unsigned flags,
			       void (*report)(const shval_problem *, void *),
			       void *arg, size_t *nproblems)
{
	if (SHVAL__RSEG(seg))
		return shval__r_seg_verify(seg, flags, report, arg, nproblems);
	if (!seg || (flags & ~(SHVAL_VERIFY_DEEP | SHVAL_VERIFY_REPAIR)))
		return -EINVAL;
	if ((flags & SHVAL_VERIFY_REPAIR) && (seg->flags & SHVAL_RDONLY))
		return shval__failf(seg, SHVAL_ERDONLY,
				    "repair needs a writable open of %s",
				    seg->name);
	struct vctx c = { seg, flags, report, arg, 0, 0, NULL, 0 };
	shval__hdr *h = seg->hdr;
	const char *bad = shval__hdr_check(seg);
	if (bad)
		problem(&c, SHVAL_ECORRUPT, NULL, offsetof(shval__hdr, size),
			false,
			"header: %s (size %llu, brk %llu, used %llu, max %llu)",
			bad, (unsigned long long)atomic_load(&h->size),
			(unsigned long long)h->brk, (unsigned long long)h->used,
			(unsigned long long)seg->map_len);
	pid_t tid;
	if (shval__mutex_damaged(&h->lock)) {
		bool fixed = (flags & SHVAL_VERIFY_REPAIR) &&
			     shval__lock_reinit(seg, &h->lock) &&
			     shval__seg_lock(seg) == 0;
		if (fixed)
			shval__seg_unlock(seg); /* recovery ran in seg_lock */
		problem(&c, SHVAL_ECORRUPT, NULL, 128, fixed,
			"segment lock word damaged (kind 0x%x)%s",
			shval__mutex_kind(&h->lock),
			fixed ? ": re-initialised" : "");
	} else if (shval__lock_stale(seg, &h->lock, &tid)) {
		bool fixed = false;
		if ((flags & SHVAL_VERIFY_REPAIR) &&
		    shval__seg_lock(seg) == 0) {
			shval__seg_unlock(seg); /* recovery ran in seg_lock */
			fixed = true;
		}
		problem(&c, SHVAL_EOWNERDEAD, NULL, 128, fixed,
			"segment lock held by a dead or foreign thread (%d)",
			(int)tid);
	}
	if (flags & (SHVAL_VERIFY_DEEP | SHVAL_VERIFY_REPAIR)) {
		uint64_t toff = atomic_load(&h->table_off);
		uint64_t cap = 0;
		_Atomic uint64_t *slots = shval__table_at(seg, toff, &cap);
		if (!slots) {
			problem(&c, SHVAL_ECORRUPT, NULL, toff, false,
				"directory table at %llu is damaged",
				(unsigned long long)toff);
		} else {
			uint64_t live = 0;
			/* First the lock entries, whose lock blocks the values
			 * guarded by shared locks must name. */
			for (uint64_t i = 0; i < cap; i++) {
				uint64_t eoff;
				shval__entry *e;
				if (slot_entry(seg, &slots[i], &eoff, &e) ==
				    SHVAL__SLOT_EMPTY)
					continue;
				if (!e || e->kind != SHVAL_KIND_LOCK ||
				    atomic_load(&e->state) != SHVAL__ST_LIVE)
					continue;
				if (c.nlocks % 64 == 0) {
					struct vlock *n = realloc(
						c.locks,
						(c.nlocks + 64) * sizeof *n);
					if (!n)
						break;
					c.locks = n;
				}
				c.locks[c.nlocks++] =
					(struct vlock){ e->lock_off, eoff, 0 };
			}
			for (uint64_t i = 0; i < cap; i++) {
				uint64_t eoff, s;
				shval__entry *e;
				if ((s = slot_entry(seg, &slots[i], &eoff,
						    &e)) == SHVAL__SLOT_EMPTY)
					continue;
				if (!e) {
					problem(&c, SHVAL_ECORRUPT, NULL, eoff,
						false,
						"directory slot %llu points to a "
						"damaged entry",
						(unsigned long long)i);
					continue;
				}
				if (atomic_load(&e->state) != SHVAL__ST_LIVE) {
					problem(&c, SHVAL_ECORRUPT, e, eoff,
						false,
						"directory slot %llu holds an entry "
						"in state %u (an interrupted remove)",
						(unsigned long long)i,
						atomic_load(&e->state));
					continue;
				}
				if ((uint32_t)(shval__hash(e->name,
							   e->name_len) >>
					       32) != (uint32_t)(s >> 32))
					problem(&c, SHVAL_ECORRUPT, e, eoff,
						false,
						"name does not match its directory "
						"slot's hash");
				live++;
				check_entry(&c, e, eoff);
			}
			for (size_t i = 0; i < c.nlocks; i++) {
				struct vlock *l = &c.locks[i];
				shval__lockblk *lk =
					shval__at(seg, l->lock_off);
				if (lk->users == l->count)
					continue;
				bool fixed = false;
				uint64_t was = lk->users;
				if ((flags & SHVAL_VERIFY_REPAIR) &&
				    shval__seg_lock(seg) == 0) {
					if (lk->users == was) {
						lk->users = l->count;
						fixed = true;
					}
					shval__seg_unlock(seg);
				}
				problem(&c, SHVAL_ECORRUPT,
					shval__at(seg, l->entry_off),
					l->entry_off, fixed,
					"lock counts %llu user(s), %llu "
					"value(s) name it%s",
					(unsigned long long)was,
					(unsigned long long)l->count,
					fixed ? ": count set" : "");
			}
			if (live != h->nvalues)
				problem(&c, SHVAL_ECORRUPT, NULL, 216, false,
					"value count %llu, directory holds %llu",
					(unsigned long long)h->nvalues,
					(unsigned long long)live);
		}
		check_pins(&c);
		uint64_t used0 = __atomic_load_n(&h->used, __ATOMIC_ACQUIRE);
		uint64_t brk0 = __atomic_load_n(&h->brk, __ATOMIC_ACQUIRE);
		uint64_t free_bytes = 0, limbo_bytes = 0;
		int lists_bad = 0;
		for (unsigned k = 0; k < SHVAL__NCLASS; k++)
			lists_bad |=
				walk_list(&c, h->free_head[k], SHVAL__ST_FREE,
					  "free", &free_bytes);
		lists_bad |= walk_list(&c, h->limbo_head, SHVAL__ST_LIMBO,
				       "limbo", &limbo_bytes);
		/* Every line between the header and brk is in a block that is
		 * either allocated (counted in used; limbo blocks too) or free.
		 * Compared only if nobody allocated or freed meanwhile. */
		if (!lists_bad && !bad &&
		    used0 == __atomic_load_n(&h->used, __ATOMIC_ACQUIRE) &&
		    brk0 == __atomic_load_n(&h->brk, __ATOMIC_ACQUIRE) &&
		    used0 + free_bytes != brk0 - sizeof(shval__hdr)) {
			/* (A process killed in the middle of an allocation
			 * leaks its block and leaves the count short: the
			 * repair sets the count, the block stays lost.) */
			bool fixed = false;
			if ((flags & SHVAL_VERIFY_REPAIR) &&
			    shval__seg_lock(seg) == 0) {
				if (h->used == used0 && h->brk == brk0) {
					__atomic_store_n(
						&h->used,
						brk0 - sizeof(shval__hdr) -
							free_bytes,
						__ATOMIC_RELEASE);
					fixed = true;
				}
				shval__seg_unlock(seg);
			}
			problem(&c, SHVAL_ECORRUPT, NULL,
				offsetof(shval__hdr, used), fixed,
				"%llu bytes counted in use and %llu free, but %llu "
				"allocated since the header%s",
				(unsigned long long)used0,
				(unsigned long long)free_bytes,
				(unsigned long long)(brk0 - sizeof(shval__hdr)),
				fixed ? ": count set" : "");
		}
	}
	if (flags & SHVAL_VERIFY_REPAIR) {
		/* Attach slots of processes that died attached: a non-TEMP
		 * segment's table would otherwise fill up for good. */
		struct reaped rp = { { 0 }, 0 };
		if (shval__seg_lock(seg) == 0) {
			shval__attach_reap(seg, note_reaped, &rp);
			shval__seg_unlock(seg);
		}
		for (unsigned i = 0; i < rp.n; i++)
			problem(&c, 0, NULL, offsetof(shval__hdr, attach), true,
				"process %d died while attached: its attach "
				"slot freed",
				(int)rp.pid[i]);
	}
	if ((flags & SHVAL_VERIFY_REPAIR) && c.unrepaired) {
		/* Counters and interrupted removals: redo them under the lock. */
		if (shval__seg_lock(seg) == 0) {
			shval__dir_recount(seg);
			shval__seg_unlock(seg);
		}
	}
	free(c.locks);
	if (nproblems)
		*nproblems = c.found;
	return c.unrepaired ? shval__failf(seg, SHVAL_ECORRUPT,
					   "segment %s: %zu problem(s) found",
					   seg->name, c.unrepaired)
			    : 0;
}
