/*
 * src/dir.c — the name directory: lock-free lookup, slot insert and
 * remove, table resize, iteration, the recount after a death.  Values are
 * created and removed by name in entry.c.  Format: see src/format.h.
 *
 * Protocol (tag-slot, tag-table, tag-dirseq):
 *   writer (holds the segment lock): builds an entry completely, then
 *     stores its slot with release; a resize builds the new table, stores
 *     table_off with release, bumps dir_seq, and only then (after a release
 *     fence) touches the old table: its block goes to limbo, which
 *     overwrites the table's header line at once and reuses the block after
 *     SHVAL__LIMBO_NS.
 *   reader (no lock): loads dir_seq (acquire), table_off (acquire), slots
 *     (acquire).  Whatever looks wrong in what it read (a table header that
 *     does not validate, a slot whose entry does not validate), and every
 *     miss, is first checked against dir_moved(): if dir_seq or table_off
 *     changed meanwhile, the table it read may have been replaced, put in
 *     limbo or reused, and it retries on the new one.  Only what is still
 *     wrong in a directory that did not move is reported as damage.
 *     Retries are bounded (DIR_TRIES); a reader that a resizing writer
 *     overtakes that often takes the segment lock for one last look.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

uint64_t shval__hash(const char *name, size_t len)
{
	/* FNV-1a, then a murmur3-style finaliser so that both halves of the
	 * 64 bits are well mixed (the slot keeps the high half). */
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

/* The layout rule of an entry's first bytes, in one place (entry.c's
 * create_locked builds entries with it, shval__entry_at checks them
 * against it): the header, the name, then, 8-aligned, the entry's own lock
 * block (locked values that are not guarded by a shared lock, and lock
 * entries), then the data, 8-aligned (no type needs more), or at the next
 * line boundary with SHVAL__EF_LINEDATA.  Returns the lock block's offset
 * in the entry; *data_rel receives the data's. */
uint64_t shval__entry_layout(uint64_t nlen, bool own_lock, bool lock_entry,
			     bool line_data, uint64_t *data_rel)
{
	uint64_t lk_rel = (sizeof(shval__entry) + nlen + 7) / 8 * 8;
	if (lock_entry)
		*data_rel = lk_rel; /* a lock entry's data is its lock block */
	else
		*data_rel = own_lock ? lk_rel + sizeof(shval__lockblk) : lk_rel;
	if (line_data)
		*data_rel = (*data_rel + SHVAL__LINE - 1) / SHVAL__LINE *
			    SHVAL__LINE;
	return lk_rel;
}

shval__entry *shval__entry_at(shval_seg *seg, uint64_t off)
{
	if (off < sizeof(shval__hdr) || off % SHVAL__LINE ||
	    !shval__in(seg, off, SHVAL__LINE))
		return NULL;
	shval__entry *e = shval__at(seg, off);
	uint64_t bytes = (uint64_t)e->nlines * SHVAL__LINE;
	if (e->nlines == 0 || !shval__in(seg, off, bytes))
		return NULL;
	if (e->name_len == 0 || sizeof(shval__entry) + e->name_len > bytes ||
	    e->data_rel > bytes ||
	    e->data_rel < sizeof(shval__entry) + e->name_len)
		return NULL;
	/* The header's small fields take few values, and the lock block and
	 * data sit where the layout rule puts them: a damaged mode, kind,
	 * flags, data_rel or lock_off is caught here, before anybody reads
	 * data from the wrong place. */
	if (e->mode > 3 || e->kind == 0 || e->kind > SHVAL_KIND_LOCK ||
	    (e->flags & ~(SHVAL__EF_PARTIAL | SHVAL__EF_LINEDATA)))
		return NULL;
	bool locked = e->mode <= 1, lock_entry = e->kind == SHVAL_KIND_LOCK;
	if (lock_entry && (!locked || e->type_line != 0 || e->flags))
		return NULL;
	if (!lock_entry && e->type_line == 0)
		return NULL;
	uint64_t lo = e->lock_off;
	bool own = locked && lo >= off && lo < off + bytes;
	uint64_t data_rel;
	uint64_t lk_rel = shval__entry_layout(
		e->name_len, own, lock_entry,
		(e->flags & SHVAL__EF_LINEDATA) != 0, &data_rel);
	if (e->data_rel != data_rel)
		return NULL;
	if (lock_entry || own) {
		if (lo != off + lk_rel ||
		    lk_rel + sizeof(shval__lockblk) > bytes)
			return NULL;
	} else if (locked) {
		/* guarded by a shared lock: a lock entry's lock block, outside
		 * this block, after the header */
		if (lo < sizeof(shval__hdr) || lo % 8 ||
		    !shval__in(seg, lo, sizeof(shval__lockblk)))
			return NULL;
	} else if (lo != 0) {
		return NULL; /* raw and atomic values have no lock */
	}
	return e;
}

/* An entry's state (acquire), SHVAL__ST_FREE for a damaged one (NULL). */
static uint8_t entry_state(const shval__entry *e)
{
	return e ? atomic_load_explicit(&e->state, memory_order_acquire)
		 : SHVAL__ST_FREE;
}

/* Is the live entry e really the one its directory slot s names?  (The
 * slot keeps the high half of the name's hash.) */
static bool slot_matches(uint64_t s, const shval__entry *e)
{
	return (uint32_t)(shval__hash(e->name, e->name_len) >> 32) ==
	       (uint32_t)(s >> 32);
}

/* The table at table_off, validated; NULL if damaged. */
_Atomic uint64_t *shval__table_at(shval_seg *seg, uint64_t toff, uint64_t *cap)
{
	if (toff < sizeof(shval__hdr) || toff % SHVAL__LINE ||
	    !shval__in(seg, toff, SHVAL__LINE))
		return NULL;
	/* Relaxed: a reader that raced a resize may read the limbo time that
	 * overwrote the cap of an old table; dir_moved() tells it so. */
	uint64_t c = atomic_load_explicit(
		(_Atomic uint64_t *)shval__at(seg, toff), memory_order_relaxed);
	if (c < 16 || (c & (c - 1)) || c > (1ull << 32) ||
	    !shval__in(seg, toff + SHVAL__LINE, c * 8))
		return NULL;
	*cap = c;
	return (_Atomic uint64_t *)shval__at(seg, toff + SHVAL__LINE);
}

/* Lock-free readers give up retrying after this many rounds in which the
 * directory moved under them (each round needs a whole resize to finish
 * during one probe, so this is never reached in practice). */
#define DIR_TRIES 1000

/* Did the directory change since a reader loaded dir_seq = seq and
 * table_off = toff?  If so, the table it read may be gone (tag-dirseq). */
static bool dir_moved(shval__hdr *h, uint64_t seq, uint64_t toff)
{
	/* tag-dirseq: orders this reader's loads of the table (and of the
	 * entries its slots led to) before the re-loads below; pairs with the
	 * release fence after the bump of dir_seq in table_resize, so a reader
	 * that saw the old table's block changed sees the new dir_seq. */
	atomic_thread_fence(memory_order_acquire);
	return atomic_load_explicit(&h->dir_seq, memory_order_relaxed) != seq ||
	       atomic_load_explicit(&h->table_off, memory_order_relaxed) !=
		       toff;
}

static void dir_backoff(int attempt)
{
	if (attempt >= 4)
		sched_yield(); /* let the resizing writer finish */
}

/* A lock-free reader's view of the directory in one round. */
struct dir_view {
	uint64_t seq, toff, cap;
	_Atomic uint64_t *slots;
};

/* Start round attempt of a lock-free reader: back off, then load dir_seq
 * and the table (acquire; tag-dirseq).  0 with *d filled: a table that
 * does not validate because the directory moved gives an empty view (no
 * slots), and the round's end-of-round dir_moved() check reads again; or
 * SHVAL_ECORRUPT, with its message, for a table that does not validate in
 * a directory that did not move. */
static int dir_view(shval_seg *seg, int attempt, struct dir_view *d)
{
	shval__hdr *h = seg->hdr;
	dir_backoff(attempt);
	d->seq = atomic_load_explicit(&h->dir_seq, memory_order_acquire);
	d->toff = atomic_load_explicit(&h->table_off, memory_order_acquire);
	d->slots = shval__table_at(seg, d->toff, &d->cap);
	if (d->slots)
		return 0;
	d->cap = 0;
	if (dir_moved(h, d->seq, d->toff))
		return 0; /* an empty view: the round's own check reads again */
	return shval__failf(seg, SHVAL_ECORRUPT,
			    "segment %s: directory table at offset %llu is "
			    "damaged",
			    seg->name, (unsigned long long)d->toff);
}

/* One lock-free lookup: 0 (found), SHVAL_ENOTFOUND, SHVAL_ECORRUPT (in a
 * directory that did not move), or -EAGAIN (it kept moving). */
static int dir_find_once(shval_seg *seg, const char *name, size_t len,
			 uint64_t *off)
{
	shval__hdr *h = seg->hdr;
	uint64_t hash = shval__hash(name, len);
	uint32_t tag = (uint32_t)(hash >> 32);
	int damaged_rounds = 0;
	struct dir_view d;
	for (int attempt = 0; attempt < DIR_TRIES; attempt++) {
		int vr = dir_view(seg, attempt, &d);
		if (vr)
			return vr;
		bool damaged = false;
		uint64_t bad_off = 0;
		bool found = false;
		uint64_t i = tag & (d.cap - 1);
		for (uint64_t n = 0; n < d.cap;
		     n++, i = (i + 1) & (d.cap - 1)) {
			uint64_t s = atomic_load_explicit(&d.slots[i],
							  memory_order_acquire);
			if (s == SHVAL__SLOT_EMPTY)
				break;
			if (s == SHVAL__SLOT_TOMB || (uint32_t)(s >> 32) != tag)
				continue;
			uint64_t eoff = shval__slot_off(s);
			shval__entry *e = shval__entry_at(seg, eoff);
			if (!e) {
				/* A slot still published whose entry does not
				 * validate is damage (a slot that moved meanwhile
				 * was a racing removal and reuse). */
				if (atomic_load_explicit(
					    &d.slots[i],
					    memory_order_acquire) == s) {
					damaged = true;
					bad_off = eoff;
				}
				continue;
			}
			uint8_t st = atomic_load_explicit(&e->state,
							  memory_order_acquire);
			if (e->name_len == len && st == SHVAL__ST_LIVE &&
			    memcmp(e->name, name, len) == 0) {
				*off = eoff;
				found = true;
				break;
			}
			/* Another name with the same tag is a collision; an
			 * entry whose own name does not give the slot's tag,
			 * or in no state a published slot can hold (live, or
			 * removed and not yet tombstoned), is damage if the
			 * slot still holds it (else a racing removal). */
			if ((st == SHVAL__ST_LIVE && !slot_matches(s, e)) ||
			    (st != SHVAL__ST_LIVE && st != SHVAL__ST_REMOVED)) {
				if (atomic_load_explicit(
					    &d.slots[i],
					    memory_order_acquire) == s) {
					damaged = true;
					bad_off = eoff;
				}
			}
		}
		/* A miss: the slots probed (from the name's home slot to the
		 * first empty one) must each name an entry whose name gives
		 * their tag.  One that does not is damage that would otherwise
		 * hide a value (a slot's tag changed); misses are rarer than
		 * hits, so only they pay for the check. */
		i = tag & (d.cap - 1);
		for (uint64_t n = 0; !found && !damaged && n < d.cap;
		     n++, i = (i + 1) & (d.cap - 1)) {
			uint64_t s = atomic_load_explicit(&d.slots[i],
							  memory_order_acquire);
			if (s == SHVAL__SLOT_EMPTY)
				break;
			if (s == SHVAL__SLOT_TOMB || (uint32_t)(s >> 32) == tag)
				continue; /* tag matches: checked above */
			uint64_t eoff = shval__slot_off(s);
			shval__entry *e = shval__entry_at(seg, eoff);
			uint8_t st = entry_state(e);
			if (e && (st == SHVAL__ST_REMOVED ||
				  (st == SHVAL__ST_LIVE && slot_matches(s, e))))
				continue;
			if (atomic_load_explicit(&d.slots[i],
						 memory_order_acquire) == s) {
				damaged = true;
				bad_off = eoff;
			}
		}
		/* A hit in a table that moved may come from a block reused
		 * since; a miss may be a value that went to the new table;
		 * damage may be the reuse.  All three: look again. */
		if (dir_moved(h, d.seq, d.toff))
			continue;
		if (found)
			return 0;
		/* Damage seen twice in a row in the same table: not a race. */
		if (damaged && ++damaged_rounds < 2)
			continue;
		if (damaged)
			return shval__failf(
				seg, SHVAL_ECORRUPT,
				"segment %s: looking up %.*s: a directory "
				"slot points to a damaged entry at "
				"offset %llu",
				seg->name, (int)len, name,
				(unsigned long long)bad_off);
		return SHVAL_ENOTFOUND;
	}
	return -EAGAIN;
}

/* Lock-free unless the directory keeps moving: then, for a writable open,
 * one more lookup under the segment lock (where nothing moves; a caller
 * that holds the lock never gets here, as the directory cannot move under
 * it).  A read-only open cannot stop writers: -EAGAIN. */
int shval__dir_find(shval_seg *seg, const char *name, size_t len, uint64_t *off)
{
	int r = dir_find_once(seg, name, len, off);
	if (r != -EAGAIN)
		return r;
	if (seg->flags & SHVAL_RDONLY)
		return shval__failf(seg, -EAGAIN,
				    "segment %s: the directory was resized %d "
				    "times during one lookup of %.*s",
				    seg->name, DIR_TRIES, (int)len, name);
	r = shval__seg_lock(seg);
	if (r)
		return r;
	r = dir_find_once(seg, name, len, off);
	shval__seg_unlock(seg);
	return r;
}

static int table_resize(shval_seg *seg, uint64_t newcap)
{
	shval__hdr *h = seg->hdr;
	uint64_t oldoff =
		atomic_load_explicit(&h->table_off, memory_order_relaxed);
	uint64_t oldcap;
	_Atomic uint64_t *old = shval__table_at(seg, oldoff, &oldcap);
	if (!old)
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: directory table is damaged",
				    seg->name);
	uint64_t lines = shval__table_lines(newcap);
	uint64_t noff;
	int r = shval__alloc(seg, lines, &noff);
	if (r)
		return r;
	memset(shval__at(seg, noff), 0, lines * SHVAL__LINE);
	*(uint64_t *)shval__at(seg, noff) = newcap;
	_Atomic uint64_t *slots =
		(_Atomic uint64_t *)shval__at(seg, noff + SHVAL__LINE);
	uint64_t live = 0;
	for (uint64_t i = 0; i < oldcap; i++) {
		uint64_t s =
			atomic_load_explicit(&old[i], memory_order_relaxed);
		if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB)
			continue;
		uint64_t j = (uint32_t)(s >> 32) & (newcap - 1);
		while (atomic_load_explicit(&slots[j], memory_order_relaxed))
			j = (j + 1) & (newcap - 1);
		atomic_store_explicit(&slots[j], s, memory_order_relaxed);
		live++;
	}
	/* tag-table: release publishes the new table's slots. */
	atomic_store_explicit(&h->table_off, noff, memory_order_release);
	/* tag-dirseq: readers that read the old table retry. */
	atomic_fetch_add_explicit(&h->dir_seq, 1, memory_order_release);
	/* tag-dirseq: the stores to the old block below (and its reuse later)
	 * are not seen before the bump; pairs with the acquire fence in
	 * dir_moved. */
	atomic_thread_fence(memory_order_release);
	h->nvalues = live;
	h->ntomb = 0;
	/* Lock-free readers may still be probing the old table: it waits in
	 * limbo like a removed entry.  Limbo overwrites only the table's
	 * header line (the cap, with the removal time), which readers that
	 * see it take for a moved directory; the slots stay intact until the
	 * block is reused. */
	shval__entry *oe = shval__at(seg, oldoff);
	oe->nlines = (uint32_t)shval__table_lines(oldcap);
	shval__limbo(seg, oldoff);
	return 0;
}

/* The current table, for a caller holding the segment lock (nobody else
 * moves it); NULL, with the message set, if damaged. */
static _Atomic uint64_t *table_now(shval_seg *seg, uint64_t *cap)
{
	_Atomic uint64_t *slots =
		shval__table_at(seg,
				atomic_load_explicit(&seg->hdr->table_off,
						     memory_order_relaxed),
				cap);
	if (!slots)
		shval__failf(seg, SHVAL_ECORRUPT,
			     "segment %s: directory table is damaged",
			     seg->name);
	return slots;
}

/* Probe the current table from hash's home slot (under the segment lock)
 * for the first slot holding want, stopping at an empty one; or, for want
 * SHVAL__SLOT_EMPTY, for the first free slot (empty or tombstone).  0 with
 * *slot, 1 when there is none, SHVAL_ECORRUPT for a damaged table. */
static int probe(shval_seg *seg, uint64_t hash, uint64_t want,
		 _Atomic uint64_t **slot)
{
	uint64_t cap;
	_Atomic uint64_t *slots = table_now(seg, &cap);
	if (!slots)
		return SHVAL_ECORRUPT;
	uint64_t i = (hash >> 32) & (cap - 1);
	for (uint64_t n = 0; n < cap; n++, i = (i + 1) & (cap - 1)) {
		uint64_t s =
			atomic_load_explicit(&slots[i], memory_order_relaxed);
		if (want == SHVAL__SLOT_EMPTY
			    ? s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB
			    : s == want) {
			*slot = &slots[i];
			return 0;
		}
		if (s == SHVAL__SLOT_EMPTY)
			break;
	}
	return 1;
}

int shval__dir_insert(shval_seg *seg, uint64_t off, uint64_t hash)
{
	shval__hdr *h = seg->hdr;
	uint64_t cap;
	_Atomic uint64_t *slots = table_now(seg, &cap);
	if (!slots)
		return SHVAL_ECORRUPT;
	/* Counters that cannot be true (they bound the resize below). */
	if (h->nvalues > cap || h->ntomb > cap || h->nvalues + h->ntomb > cap)
		return shval__failf(
			seg, SHVAL_ECORRUPT,
			"segment %s: directory counters are damaged "
			"(%llu values, %llu tombstones, %llu slots)",
			seg->name, (unsigned long long)h->nvalues,
			(unsigned long long)h->ntomb, (unsigned long long)cap);
	if ((h->nvalues + h->ntomb + 1) * 10 > cap * 7) {
		uint64_t newcap = 16;
		while ((h->nvalues + 1) * 2 > newcap)
			newcap *= 2;
		if (newcap < cap && h->ntomb < cap / 4)
			newcap = cap;
		if (newcap <= cap && h->ntomb == 0)
			newcap = cap * 2;
		int r = table_resize(seg, newcap);
		if (r)
			return r;
	}
	_Atomic uint64_t *slot;
	int r = probe(seg, hash, SHVAL__SLOT_EMPTY, &slot);
	if (r == 1)
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: directory full", seg->name);
	if (r)
		return r;
	if (atomic_load_explicit(slot, memory_order_relaxed) ==
	    SHVAL__SLOT_TOMB)
		h->ntomb--;
	/* tag-slot: release publishes the complete entry. */
	atomic_store_explicit(slot, shval__slot_word(hash, off),
			      memory_order_release);
	h->nvalues++;
	return 0;
}

int shval__dir_remove(shval_seg *seg, uint64_t off, uint64_t hash)
{
	_Atomic uint64_t *slot;
	int r = probe(seg, hash, shval__slot_word(hash, off), &slot);
	if (r == 1)
		return shval__failf(seg, SHVAL_ENOTFOUND,
				    "segment %s: the directory has no slot "
				    "for the entry at offset %llu",
				    seg->name, (unsigned long long)off);
	if (r)
		return r;
	atomic_store_explicit(slot, SHVAL__SLOT_TOMB, memory_order_release);
	seg->hdr->nvalues--;
	seg->hdr->ntomb++;
	return 0;
}

/* Re-count live entries after a process died holding the segment lock:
 * every directory change is ordered so that the table and the entries are
 * consistent at each store; only the counters can be off. */
void shval__dir_recount(shval_seg *seg)
{
	shval__hdr *h = seg->hdr;
	uint64_t cap;
	_Atomic uint64_t *slots = table_now(seg, &cap);
	if (!slots)
		return;
	uint64_t live = 0, tomb = 0;
	for (uint64_t i = 0; i < cap; i++) {
		uint64_t s =
			atomic_load_explicit(&slots[i], memory_order_relaxed);
		if (s == SHVAL__SLOT_TOMB) {
			tomb++;
			continue;
		}
		if (s == SHVAL__SLOT_EMPTY)
			continue;
		/* A remove cut short: the entry is REMOVED but its slot is
		 * still there.  Finish it (tombstone, limbo). */
		uint64_t eoff = shval__slot_off(s);
		shval__entry *e = shval__entry_at(seg, eoff);
		uint8_t st = e ? atomic_load(&e->state) : SHVAL__ST_FREE;
		if (st != SHVAL__ST_LIVE) {
			atomic_store_explicit(&slots[i], SHVAL__SLOT_TOMB,
					      memory_order_release);
			if (e && st == SHVAL__ST_REMOVED)
				shval__limbo(seg, eoff);
			tomb++;
			continue;
		}
		live++;
	}
	h->nvalues = live;
	h->ntomb = tomb;
}

SHVAL_API int shval_seg_next(shval_seg *seg, uint64_t *cursor,
			     const char *prefix, struct shval_info *info)
{
	if (SHVAL__RSEG(seg))
		return cursor && info
			       ? shval__r_seg_next(seg, cursor, prefix, info)
			       : -EINVAL;
	if (!seg || !cursor || !info)
		return -EINVAL;
	shval__hdr *h = seg->hdr;
	size_t plen = prefix ? strlen(prefix) : 0;
	/* Lock-free, as a lookup: a table that moved under us is read again
	 * (tag-dirseq), from the same cursor; damage is reported only in a
	 * table that did not move, for a slot that still holds it. */
	struct dir_view d;
	for (int attempt = 0; attempt < DIR_TRIES; attempt++) {
		int vr = dir_view(seg, attempt, &d);
		if (vr)
			return vr;
		uint64_t i;
		const char *bad = NULL;
		uint64_t bad_off = 0;
		for (i = *cursor; i < d.cap; i++) {
			uint64_t s = atomic_load_explicit(&d.slots[i],
							  memory_order_acquire);
			if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB)
				continue;
			uint64_t eoff = shval__slot_off(s);
			shval__entry *e = shval__entry_at(seg, eoff);
			uint8_t st = entry_state(e);
			bool want =
				e && st == SHVAL__ST_LIVE &&
				(!plen || (e->name_len >= plen &&
					   memcmp(e->name, prefix, plen) == 0));
			if (!e)
				bad = "a damaged entry";
			else if (st != SHVAL__ST_LIVE &&
				 st != SHVAL__ST_REMOVED)
				bad = "a block that is not an entry";
			else if (st == SHVAL__ST_LIVE && !slot_matches(s, e))
				bad = "an entry of another name";
			else if (want && shval__fill_info(seg, e, info) != 0)
				bad = "an entry whose type record is damaged";
			else if (want &&
				 (info->kind != e->kind ||
				  e->data_rel + info->size >
					  (uint64_t)e->nlines * SHVAL__LINE))
				bad = "an entry whose type does not fit it";
			else if (want && (info->flags & SHVAL_INFO_PARTIAL) &&
				 (info->mode > SHVAL_LOCK ||
				  info->size <= SHVAL__UNDO_MAX))
				/* only locked values without an undo copy can
				 * be left partly updated */
				bad = "an entry flagged partly updated that cannot be";
			if (bad) {
				/* A slot that moved meanwhile was a racing
				 * removal (and reuse); one that still holds
				 * the same is damage (unless the table moved:
				 * checked below). */
				if (atomic_load_explicit(
					    &d.slots[i],
					    memory_order_acquire) != s) {
					bad = NULL;
					continue;
				}
				bad_off = eoff;
				break;
			}
			if (want)
				break;
			/* removed (slot not yet tombstoned), or another prefix */
		}
		/* A hit may come from a reused block, the end may hide values
		 * moved to the new table, damage may be the reuse: all three
		 * only if the table moved. */
		if (dir_moved(h, d.seq, d.toff))
			continue;
		if (bad) {
			/* past the damaged slot: an iteration may go on */
			*cursor = i + 1;
			return shval__failf(
				seg, SHVAL_ECORRUPT,
				"segment %s: directory slot %llu points "
				"to %s (offset %llu)",
				seg->name, (unsigned long long)i, bad,
				(unsigned long long)bad_off);
		}
		if (i < d.cap) {
			*cursor = i + 1;
			return 0;
		}
		*cursor = d.cap;
		return SHVAL_ENOTFOUND;
	}
	return shval__failf(seg, -EAGAIN,
			    "segment %s: the directory was resized %d times "
			    "during one step of an iteration",
			    seg->name, DIR_TRIES);
}

/* Calls fn on every entry in the directory, lock-free.  If the table moved
 * during the walk, the new table is walked too, so fn sees every entry that
 * was in the directory throughout, some perhaps twice: fn must be
 * idempotent (lock.c's recovery is: a rolled-back entry is no longer
 * WRITING).  -EAGAIN if the table kept moving. */
int shval__dir_foreach(shval_seg *seg,
		       int (*fn)(shval_seg *, shval__entry *, void *),
		       void *arg)
{
	shval__hdr *h = seg->hdr;
	struct dir_view d;
	for (int attempt = 0; attempt < DIR_TRIES; attempt++) {
		int vr = dir_view(seg, attempt, &d);
		if (vr)
			return vr;
		for (uint64_t i = 0; i < d.cap; i++) {
			uint64_t s = atomic_load_explicit(&d.slots[i],
							  memory_order_acquire);
			if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB)
				continue;
			shval__entry *e =
				shval__entry_at(seg, shval__slot_off(s));
			if (!e)
				continue;
			int r = fn(seg, e, arg);
			if (r)
				return r;
		}
		if (!dir_moved(h, d.seq, d.toff))
			return 0;
	}
	return -EAGAIN;
}
