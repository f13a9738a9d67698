/*
 * src/dir.c — the name directory: lock-free lookup, create, remove,
 * iteration, interned type records.  Format: see src/format.h.
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

int shval__check_name(shval_seg *seg, const char *name, size_t *len)
{
	if (!name)
		return shval__failf(seg, SHVAL_EBADNAME, "value name is NULL");
	size_t n = strnlen(name, SHVAL_NAME_MAX + 1);
	if (n == 0)
		return shval__failf(seg, SHVAL_EBADNAME, "value name is empty");
	if (n > SHVAL_NAME_MAX)
		return shval__failf(seg, SHVAL_EBADNAME,
				    "value name \"%.40s...\" is longer than %d bytes",
				    name, SHVAL_NAME_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c == 0x7f)
			return shval__failf(seg, SHVAL_EBADNAME,
					    "value name \"%s\": byte 0x%02x at "
					    "position %zu (no spaces or control "
					    "characters)",
					    name, c, i);
	}
	*len = n;
	return 0;
}

/* The layout rule of an entry's first bytes, in one place (create_locked
 * builds entries with it, shval__entry_at checks them against it): the
 * header, the name, then, 8-aligned, the entry's own lock block (locked
 * values that are not guarded by a shared lock, and lock entries), then the
 * data, 8-aligned (no type needs more).  Returns the lock block's offset
 * in the entry; *data_rel receives the data's. */
static uint64_t entry_layout(uint64_t nlen, bool own_lock, bool lock_entry,
			     uint64_t *data_rel)
{
	uint64_t lk_rel = (sizeof(shval__entry) + nlen + 7) / 8 * 8;
	if (lock_entry)
		*data_rel = lk_rel; /* a lock entry's data is its lock block */
	else
		*data_rel = own_lock ? lk_rel + sizeof(shval__lockblk) : lk_rel;
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
	if (e->name_len == 0 || e->name_len > SHVAL_NAME_MAX ||
	    sizeof(shval__entry) + e->name_len > bytes || e->data_rel > bytes ||
	    e->data_rel < sizeof(shval__entry) + e->name_len)
		return NULL;
	/* The header's small fields take few values, and the lock block and
	 * data sit where the layout rule puts them: a damaged mode, kind,
	 * flags, data_rel or lock_off is caught here, before anybody reads
	 * data from the wrong place. */
	if (e->mode > 3 || e->kind == 0 || e->kind > SHVAL_KIND_LOCK ||
	    (e->flags & ~SHVAL__EF_PARTIAL))
		return NULL;
	bool locked = e->mode <= 1, lock_entry = e->kind == SHVAL_KIND_LOCK;
	if (lock_entry && (!locked || e->type_line != 0 || e->flags))
		return NULL;
	if (!lock_entry && e->type_line == 0)
		return NULL;
	uint64_t lo = e->lock_off;
	bool own = locked && lo >= off && lo < off + bytes;
	uint64_t data_rel;
	uint64_t lk_rel = entry_layout(e->name_len, own, lock_entry, &data_rel);
	if (e->data_rel != data_rel)
		return NULL;
	if (lock_entry || own) {
		if (lo != off + lk_rel || lk_rel + sizeof(shval__lockblk) > bytes)
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
	uint64_t c = atomic_load_explicit((_Atomic uint64_t *)shval__at(seg, toff),
					  memory_order_relaxed);
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
	       atomic_load_explicit(&h->table_off, memory_order_relaxed) != toff;
}

static void dir_backoff(int attempt)
{
	if (attempt >= 4)
		sched_yield(); /* let the resizing writer finish */
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
	for (int attempt = 0; attempt < DIR_TRIES; attempt++) {
		dir_backoff(attempt);
		bool damaged = false;
		uint64_t bad_off = 0;
		uint64_t seq = atomic_load_explicit(&h->dir_seq, memory_order_acquire);
		uint64_t toff = atomic_load_explicit(&h->table_off, memory_order_acquire);
		uint64_t cap;
		_Atomic uint64_t *slots = shval__table_at(seg, toff, &cap);
		if (!slots) {
			if (dir_moved(h, seq, toff))
				continue;
			return shval__failf(seg, SHVAL_ECORRUPT,
					    "segment %s: directory table at offset "
					    "%llu is damaged",
					    seg->name, (unsigned long long)toff);
		}
		bool found = false;
		uint64_t i = tag & (cap - 1);
		for (uint64_t n = 0; n < cap; n++, i = (i + 1) & (cap - 1)) {
			uint64_t s = atomic_load_explicit(&slots[i],
							  memory_order_acquire);
			if (s == SHVAL__SLOT_EMPTY)
				break;
			if (s == SHVAL__SLOT_TOMB || (uint32_t)(s >> 32) != tag)
				continue;
			uint64_t eoff = (s & 0xffffffffull) * SHVAL__LINE;
			shval__entry *e = shval__entry_at(seg, eoff);
			if (!e) {
				/* A slot still published whose entry does not
				 * validate is damage (a slot that moved meanwhile
				 * was a racing removal and reuse). */
				if (atomic_load_explicit(&slots[i],
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
				if (atomic_load_explicit(&slots[i],
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
		i = tag & (cap - 1);
		for (uint64_t n = 0; !found && !damaged && n < cap;
		     n++, i = (i + 1) & (cap - 1)) {
			uint64_t s = atomic_load_explicit(&slots[i],
							  memory_order_acquire);
			if (s == SHVAL__SLOT_EMPTY)
				break;
			if (s == SHVAL__SLOT_TOMB || (uint32_t)(s >> 32) == tag)
				continue; /* tag matches: checked above */
			uint64_t eoff = (s & 0xffffffffull) * SHVAL__LINE;
			shval__entry *e = shval__entry_at(seg, eoff);
			uint8_t st = e ? atomic_load_explicit(&e->state,
							      memory_order_acquire)
				       : SHVAL__ST_FREE;
			if (e && (st == SHVAL__ST_REMOVED ||
				  (st == SHVAL__ST_LIVE && slot_matches(s, e))))
				continue;
			if (atomic_load_explicit(&slots[i], memory_order_acquire) == s) {
				damaged = true;
				bad_off = eoff;
			}
		}
		/* A hit in a table that moved may come from a block reused
		 * since; a miss may be a value that went to the new table;
		 * damage may be the reuse.  All three: look again. */
		if (dir_moved(h, seq, toff))
			continue;
		if (found)
			return 0;
		/* Damage seen twice in a row in the same table: not a race. */
		if (damaged && ++damaged_rounds < 2)
			continue;
		if (damaged)
			return shval__failf(seg, SHVAL_ECORRUPT,
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
int shval__dir_find(shval_seg *seg, const char *name, size_t len,
		    uint64_t *off)
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
	uint64_t oldoff = atomic_load_explicit(&h->table_off, memory_order_relaxed);
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
	_Atomic uint64_t *slots = (_Atomic uint64_t *)shval__at(seg, noff + SHVAL__LINE);
	uint64_t live = 0;
	for (uint64_t i = 0; i < oldcap; i++) {
		uint64_t s = atomic_load_explicit(&old[i], memory_order_relaxed);
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

int shval__dir_insert(shval_seg *seg, uint64_t off, uint64_t hash)
{
	shval__hdr *h = seg->hdr;
	uint64_t cap;
	_Atomic uint64_t *slots =
		shval__table_at(seg, atomic_load_explicit(&h->table_off, memory_order_relaxed),
			 &cap);
	if (!slots)
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: directory table is damaged",
				    seg->name);
	/* Counters that cannot be true (they bound the resize below). */
	if (h->nvalues > cap || h->ntomb > cap || h->nvalues + h->ntomb > cap)
		return shval__failf(seg, SHVAL_ECORRUPT,
				    "segment %s: directory counters are damaged "
				    "(%llu values, %llu tombstones, %llu slots)",
				    seg->name, (unsigned long long)h->nvalues,
				    (unsigned long long)h->ntomb,
				    (unsigned long long)cap);
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
		slots = shval__table_at(seg, atomic_load_explicit(&h->table_off,
							   memory_order_relaxed),
				 &cap);
	}
	uint32_t tag = (uint32_t)(hash >> 32);
	uint64_t i = tag & (cap - 1);
	for (uint64_t n = 0; n < cap; n++, i = (i + 1) & (cap - 1)) {
		uint64_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
		if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB) {
			if (s == SHVAL__SLOT_TOMB)
				h->ntomb--;
			/* tag-slot: release publishes the complete entry. */
			atomic_store_explicit(&slots[i],
					      ((uint64_t)tag << 32) | (off / SHVAL__LINE),
					      memory_order_release);
			h->nvalues++;
			return 0;
		}
	}
	return shval__failf(seg, SHVAL_ECORRUPT, "segment %s: directory full",
			    seg->name);
}

int shval__dir_remove(shval_seg *seg, uint64_t off, uint64_t hash)
{
	shval__hdr *h = seg->hdr;
	uint64_t cap;
	_Atomic uint64_t *slots =
		shval__table_at(seg, atomic_load_explicit(&h->table_off, memory_order_relaxed),
			 &cap);
	if (!slots)
		return SHVAL_ECORRUPT;
	uint32_t tag = (uint32_t)(hash >> 32);
	uint64_t want = ((uint64_t)tag << 32) | (off / SHVAL__LINE);
	uint64_t i = tag & (cap - 1);
	for (uint64_t n = 0; n < cap; n++, i = (i + 1) & (cap - 1)) {
		uint64_t s = atomic_load_explicit(&slots[i], memory_order_relaxed);
		if (s == SHVAL__SLOT_EMPTY)
			break;
		if (s == want) {
			atomic_store_explicit(&slots[i], SHVAL__SLOT_TOMB,
					      memory_order_release);
			h->nvalues--;
			h->ntomb++;
			return 0;
		}
	}
	return SHVAL_ENOTFOUND;
}

/* ---- type records ---- */

static shval__typerec *typerec_at(shval_seg *seg, uint64_t off)
{
	if (off < sizeof(shval__hdr) || off % SHVAL__LINE ||
	    !shval__in(seg, off, sizeof(shval__typerec)))
		return NULL;
	shval__typerec *t = shval__at(seg, off);
	if (t->magic != SHVAL__TYPE_MAGIC || t->len == 0 ||
	    t->len > SHVAL_TYPE_MAX ||
	    !shval__in(seg, off, sizeof(shval__typerec) + t->len + 1) ||
	    t->canon[t->len] != 0)
		return NULL;
	return t;
}

int shval__type_intern(shval_seg *seg, const shval__type *t, uint32_t *line)
{
	shval__hdr *h = seg->hdr;
	size_t len = strlen(t->canon);
	uint64_t off = h->types_off;
	for (int guard = 0; off && guard < 10000000; guard++) {
		shval__typerec *r = typerec_at(seg, off);
		if (!r)
			return shval__failf(seg, SHVAL_ECORRUPT,
					    "segment %s: type record at offset %llu "
					    "is damaged",
					    seg->name, (unsigned long long)off);
		if (r->len == len && memcmp(r->canon, t->canon, len) == 0) {
			*line = (uint32_t)(off / SHVAL__LINE);
			return 0;
		}
		off = r->next;
	}
	uint64_t lines = (sizeof(shval__typerec) + len + 1 + SHVAL__LINE - 1) /
			 SHVAL__LINE;
	int rc = shval__alloc(seg, lines, &off);
	if (rc)
		return rc;
	shval__typerec *r = shval__at(seg, off);
	memset(r, 0, lines * SHVAL__LINE);
	r->magic = SHVAL__TYPE_MAGIC;
	r->next = h->types_off;
	r->size = t->size;
	r->len = (uint32_t)len;
	r->nlines = (uint32_t)lines;
	memcpy(r->canon, t->canon, len + 1);
	h->types_off = off;
	*line = (uint32_t)(off / SHVAL__LINE);
	return 0;
}

const char *shval__entry_type(shval_seg *seg, const shval__entry *e,
			      uint64_t *size)
{
	shval__typerec *r = typerec_at(seg, (uint64_t)e->type_line * SHVAL__LINE);
	if (!r)
		return NULL;
	if (size)
		*size = r->size;
	return r->canon;
}

/* ---- public: create, find, remove, iterate ---- */

/* Create under the segment lock.  If exists_ok and the name exists, *off is
 * the existing entry and *created = false. */
/* t == NULL creates a lock entry; shared_lk != 0 creates a value guarded by
 * the lock block at that offset (mode is then the lock's). */
static int create_locked(shval_seg *seg, const char *name, size_t nlen,
			 const shval__type *t, unsigned mode, uint64_t shared_lk,
			 const void *init, bool exists_ok, uint64_t *off,
			 bool *created)
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
	uint64_t data_rel;
	size_t lk_rel = (size_t)entry_layout(nlen, own_lock, !t, &data_rel);
	size_t pos = own_lock ? lk_rel + sizeof(shval__lockblk) : lk_rel;
	size_t undo_rel = 0;
	if (!own_lock)
		lk_rel = 0;
	if (t) {
		if (t->align > 8) /* entry_layout aligns data to 8 */
			return shval__failf(seg, SHVAL_EBADTYPE,
					    "type %s: alignment %zu", t->canon,
					    (size_t)t->align);
		pos = data_rel + t->size;
		if (locked && t->size <= SHVAL__UNDO_MAX) {
			undo_rel = shval__undo_rel(data_rel, t->size);
			pos = undo_rel + t->size;
		}
	}
	uint64_t nlines = (pos + SHVAL__LINE - 1) / SHVAL__LINE;
	uint32_t tline = 0;
	if (t && (r = shval__type_intern(seg, t, &tline)) != 0)
		return r;
	uint64_t eoff;
	r = shval__alloc(seg, nlines, &eoff);
	if (r)
		return r;
	unsigned char *b = shval__at(seg, eoff);
	memset(b, 0, nlines * SHVAL__LINE);
	shval__entry *e = (shval__entry *)b;
	e->mode = (uint8_t)(mode >> 8);
	e->kind = t ? t->kind : SHVAL_KIND_LOCK;
	e->name_len = (uint16_t)nlen;
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
	atomic_store_explicit(&e->serial, h->next_serial++, memory_order_relaxed);
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

static int check_create_args(shval_seg *seg, const char *name,
			     const char *type, unsigned flags, const void *init,
			     size_t init_len, shval__type **t, bool *owned,
			     size_t *nlen)
{
	if (!seg)
		return -EINVAL;
	if (flags & ~SHVAL_MODE_MASK)
		return shval__failf(seg, -EINVAL, "unknown flag bits 0x%x",
				    flags & ~SHVAL_MODE_MASK);
	if (seg->flags & SHVAL_RDONLY)
		return shval__failf(seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only", seg->name);
	int r = shval__check_name(seg, name, nlen);
	if (r)
		return r;
	char err[256] = "";
	*t = shval__seg_type_text(seg, type ? type : "(null)", owned, err,
				  sizeof err, &r);
	if (!*t)
		return shval__failf(seg, r, "%s", err);
	unsigned mode = flags & SHVAL_MODE_MASK;
	if (mode == SHVAL_ATOMIC) {
		size_t s = (*t)->size;
		if ((*t)->kind != SHVAL_KIND_SCALAR ||
		    !(s == 1 || s == 2 || s == 4 || s == 8)) {
			r = shval__failf(seg, SHVAL_EMODE,
					 "value %s: type %s cannot be atomic (only "
					 "scalars of 1, 2, 4 or 8 bytes)",
					 name, (*t)->canon);
			goto fail;
		}
	}
	if (init) {
		if (init_len != (*t)->size) {
			r = shval__failf(seg, SHVAL_ESIZE,
					 "value %s: initial data is %zu bytes, type "
					 "%s takes %zu",
					 name, init_len, (*t)->canon, (*t)->size);
			goto fail;
		}
		r = shval__type_check(*t, init, err, sizeof err);
		if (r) {
			r = shval__failf(seg, r, "value %s: %s", name, err);
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

SHVAL_API int shval_create(shval_seg *seg, const char *name, const char *type,
			   unsigned flags, const void *init, size_t init_len,
			   shval **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	shval__type *t;
	size_t nlen;
	bool owned = false;
	int r = check_create_args(seg, name, type, flags, init, init_len, &t,
				  &owned, &nlen);
	if (r)
		return r;
	r = shval__seg_lock(seg);
	if (r) {
		if (owned)
			shval__type_free(t);
		return r;
	}
	uint64_t off;
	bool created;
	r = create_locked(seg, name, nlen, t, flags & SHVAL_MODE_MASK, 0, init,
			  false, &off, &created);
	shval__seg_unlock(seg);
	if (owned)
		shval__type_free(t);
	if (r)
		return r;
	return shval__handle_make(seg, off, out);
}

static int check_same(shval_seg *seg, shval *v, const char *name,
		      const shval__type *t, int mode)
{
	if (t && strcmp(v->type->canon, t->canon) != 0)
		return shval__failf(seg, SHVAL_ETYPE,
				    "value %s has type \"%s\", not \"%s\"", name,
				    v->type->canon, t->canon);
	if (mode >= 0 && (unsigned)mode != v->mode)
		return shval__failf(seg, SHVAL_EMODE,
				    "value %s exists with another mode", name);
	return 0;
}

SHVAL_API int shval_find(shval_seg *seg, const char *name, const char *type,
			 shval **out)
{
	if (!out || !seg)
		return -EINVAL;
	*out = NULL;
	size_t nlen;
	int r = shval__check_name(seg, name, &nlen);
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
		char err[256] = "";
		int r2 = shval__type_parse(type, &t, err, sizeof err);
		if (r2)
			return shval__failf(seg, r2, "%s", err);
	}
	if (r == SHVAL_ENOTFOUND)
		r = shval__failf(seg, r, "segment %s: no value named %s", seg->name,
				 name);
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
				   const void *init, size_t init_len, shval **out,
				   bool *created)
{
	if (!out)
		return -EINVAL;
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
					  flags & SHVAL_MODE_MASK, 0, init, true,
					  &off, &made);
			shval__seg_unlock(seg);
		}
	}
	if (r == 0)
		r = shval__handle_make(seg, off, out);
	if (r == 0 && !made &&
	    (r = check_same(seg, *out, name, t, (int)(flags & SHVAL_MODE_MASK)))) {
		shval_close(*out);
		*out = NULL;
	}
	if (r == 0 && created)
		*created = made;
	if (owned)
		shval__type_free(t);
	return r;
}

SHVAL_API int shval_remove(shval_seg *seg, const char *name)
{
	if (!seg)
		return -EINVAL;
	size_t nlen;
	int r = shval__check_name(seg, name, &nlen);
	if (r)
		return r;
	/* Take the value's lock first (before the segment lock: a section may
	 * create values, which takes the segment lock), so that nobody is
	 * mid-section in the block we remove.  Bounded: after a second we go
	 * on without it (a section that long finishes in the block while it
	 * waits in limbo), which also rules out deadlocks between sections
	 * that remove each other's values. */
	shval *held = NULL;
	uint64_t off;
	if (!(seg->flags & SHVAL_RDONLY) &&
	    shval__dir_find(seg, name, nlen, &off) == 0 &&
	    shval__handle_make(seg, off, &held) == 0) {
		int lr = held->lk ? shval_timedlock(held, SHVAL_SEC) : -1;
		if (lr != 0 && lr != SHVAL_EOWNERDEAD) {
			shval_close(held);
			held = NULL;
		}
	}
	r = shval__seg_lock(seg);
	if (r) {
		if (held) {
			shval_unlock(held);
			shval_close(held);
		}
		return r;
	}
	r = shval__dir_find(seg, name, nlen, &off);
	if (r == 0) {
		shval__entry *e = shval__at(seg, off);
		uint64_t end = off + (uint64_t)e->nlines * SHVAL__LINE;
		shval__lockblk *lk = NULL;
		if (e->lock_off && e->lock_off % 8 == 0 &&
		    shval__in(seg, e->lock_off, sizeof(shval__lockblk)))
			lk = shval__at(seg, e->lock_off);
		if (e->kind == SHVAL_KIND_LOCK && lk && lk->users) {
			shval__seg_unlock(seg);
			if (held) {
				shval_unlock(held);
				shval_close(held);
			}
			return shval__failf(seg, SHVAL_EMISUSE,
					    "segment %s: lock %s still guards %llu "
					    "value(s); remove them first",
					    seg->name, name,
					    (unsigned long long)lk->users);
		}
		if (e->kind != SHVAL_KIND_LOCK && lk &&
		    (e->lock_off < off || e->lock_off >= end) && lk->users)
			lk->users--; /* a value guarded by a shared lock */
		/* release: a handle that sees REMOVED sees it for good. */
		atomic_store_explicit(&e->state, SHVAL__ST_REMOVED,
				      memory_order_release);
		shval__dir_remove(seg, off, shval__hash(name, nlen));
		shval__limbo(seg, off);
		shval__seg_bump(seg);
		/* Wake anyone waiting on the removed value (limbo moved its
		 * version): they get SHVAL_ESTALE. */
		shval__futex_wake(&e->version);
	} else if (r == SHVAL_ENOTFOUND) {
		r = shval__failf(seg, r, "segment %s: no value named %s", seg->name,
				 name);
	}
	shval__seg_unlock(seg);
	if (held) {
		/* Release the lock of the removed block: its waiters wake, see
		 * the value gone (shval__check after locking) and let go. */
		shval_unlock(held);
		shval_close(held);
	}
	return r;
}

SHVAL_API int shval_seg_next(shval_seg *seg, uint64_t *cursor,
			     const char *prefix, struct shval_info *info)
{
	if (!seg || !cursor || !info)
		return -EINVAL;
	shval__hdr *h = seg->hdr;
	size_t plen = prefix ? strlen(prefix) : 0;
	/* Lock-free, as a lookup: a table that moved under us is read again
	 * (tag-dirseq), from the same cursor; damage is reported only in a
	 * table that did not move, for a slot that still holds it. */
	for (int attempt = 0; attempt < DIR_TRIES; attempt++) {
		dir_backoff(attempt);
		uint64_t seq = atomic_load_explicit(&h->dir_seq, memory_order_acquire);
		uint64_t toff = atomic_load_explicit(&h->table_off, memory_order_acquire);
		uint64_t cap;
		_Atomic uint64_t *slots = shval__table_at(seg, toff, &cap);
		if (!slots) {
			if (dir_moved(h, seq, toff))
				continue;
			return shval__failf(seg, SHVAL_ECORRUPT,
					    "segment %s: directory table at offset "
					    "%llu is damaged",
					    seg->name, (unsigned long long)toff);
		}
		uint64_t i;
		const char *bad = NULL;
		uint64_t bad_off = 0;
		for (i = *cursor; i < cap; i++) {
			uint64_t s = atomic_load_explicit(&slots[i],
							  memory_order_acquire);
			if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB)
				continue;
			uint64_t eoff = (s & 0xffffffffull) * SHVAL__LINE;
			shval__entry *e = shval__entry_at(seg, eoff);
			uint8_t st = e ? atomic_load_explicit(&e->state,
							      memory_order_acquire)
				       : SHVAL__ST_FREE;
			bool want = e && st == SHVAL__ST_LIVE &&
				    (!plen || (e->name_len >= plen &&
					       memcmp(e->name, prefix, plen) == 0));
			if (!e)
				bad = "a damaged entry";
			else if (st != SHVAL__ST_LIVE && st != SHVAL__ST_REMOVED)
				bad = "a block that is not an entry";
			else if (st == SHVAL__ST_LIVE && !slot_matches(s, e))
				bad = "an entry of another name";
			else if (want && shval__fill_info(seg, e, info) != 0)
				bad = "an entry whose type record is damaged";
			else if (want && (info->kind != e->kind ||
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
				if (atomic_load_explicit(&slots[i],
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
		if (dir_moved(h, seq, toff))
			continue;
		if (bad)
			return shval__failf(seg, SHVAL_ECORRUPT,
					    "segment %s: directory slot %llu points "
					    "to %s (offset %llu)",
					    seg->name, (unsigned long long)i, bad,
					    (unsigned long long)bad_off);
		if (i < cap) {
			*cursor = i + 1;
			return 0;
		}
		*cursor = cap;
		return SHVAL_ENOTFOUND;
	}
	return shval__failf(seg, -EAGAIN,
			    "segment %s: the directory was resized %d times "
			    "during one step of an iteration",
			    seg->name, DIR_TRIES);
}

SHVAL_API int shval_lock_create(shval_seg *seg, const char *name,
				unsigned flags, shval **out)
{
	if (!out || !seg)
		return -EINVAL;
	*out = NULL;
	unsigned mode = flags & SHVAL_MODE_MASK;
	if ((flags & ~SHVAL_MODE_MASK) || (mode != SHVAL_RLOCK && mode != SHVAL_LOCK))
		return shval__failf(seg, -EINVAL,
				    "shval_lock_create takes SHVAL_RLOCK or SHVAL_LOCK");
	if (seg->flags & SHVAL_RDONLY)
		return shval__failf(seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only", seg->name);
	size_t nlen;
	int r = shval__check_name(seg, name, &nlen);
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
				   const void *init, size_t init_len, shval **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!lock || !seg)
		return -EINVAL;
	if (lock->seg != seg || lock->kind != SHVAL_KIND_LOCK)
		return shval__failf(seg, SHVAL_EMISUSE,
				    "the lock given is not a lock entry of "
				    "segment %s",
				    seg->name);
	shval__type *t;
	size_t nlen;
	bool owned = false;
	int r = check_create_args(seg, name, type, lock->mode, init, init_len,
				  &t, &owned, &nlen);
	if (r)
		return r;
	if ((r = shval__seg_lock(seg)) != 0) {
		if (owned)
			shval__type_free(t);
		return r;
	}
	uint64_t off;
	bool created;
	r = shval__check(lock);
	if (r == 0)
		r = create_locked(seg, name, nlen, t, lock->mode,
				  lock->e->lock_off, init, false, &off, &created);
	shval__seg_unlock(seg);
	if (owned)
		shval__type_free(t);
	if (r)
		return r;
	return shval__handle_make(seg, off, out);
}

/* Calls fn on every entry in the directory, lock-free.  If the table moved
 * during the walk, the new table is walked too, so fn sees every entry that
 * was in the directory throughout, some perhaps twice: fn must be
 * idempotent (lock.c's recovery is: a rolled-back entry is no longer
 * WRITING).  -EAGAIN if the table kept moving. */
int shval__dir_foreach(shval_seg *seg, int (*fn)(shval_seg *, shval__entry *,
						  void *),
		       void *arg)
{
	shval__hdr *h = seg->hdr;
	for (int attempt = 0; attempt < DIR_TRIES; attempt++) {
		dir_backoff(attempt);
		uint64_t seq = atomic_load_explicit(&h->dir_seq, memory_order_acquire);
		uint64_t toff = atomic_load_explicit(&h->table_off, memory_order_acquire);
		uint64_t cap;
		_Atomic uint64_t *slots = shval__table_at(seg, toff, &cap);
		if (!slots) {
			if (dir_moved(h, seq, toff))
				continue;
			return SHVAL_ECORRUPT;
		}
		for (uint64_t i = 0; i < cap; i++) {
			uint64_t s = atomic_load_explicit(&slots[i],
							  memory_order_acquire);
			if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB)
				continue;
			shval__entry *e = shval__entry_at(
				seg, (s & 0xffffffffull) * SHVAL__LINE);
			if (!e)
				continue;
			int r = fn(seg, e, arg);
			if (r)
				return r;
		}
		if (!dir_moved(h, seq, toff))
			return 0;
	}
	return -EAGAIN;
}
