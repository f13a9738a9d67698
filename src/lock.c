/*
 * src/lock.c — ownership, write sections, owner-death recovery (roll back
 * or forward) and the user's lock calls.  The robust mutex itself (glibc's
 * internals, stale owners, the timed acquire) is src/mutex.c's.
 *
 * LOCK RULES (the hierarchy; rule 1 is asserted in debug builds)
 * -------------------------------------------------------------------
 *   1. A value's lock (its own, or a shared lock entry) is taken before the
 *      segment lock, never after: shval_remove takes the value's lock, then
 *      the segment lock.  Code holding the segment lock never takes a value
 *      lock (creation initialises a new one, which nobody can see yet).
 *   2. Two value locks may be held at once only when the caller nests user
 *      sections (shval_lock(a); shval_lock(b)): the library itself never
 *      takes a second value lock inside a section.
 *   3. The process-local locks (attach.c's open_lock, a segment's type_lock)
 *      are leaves: nothing is taken while holding them.
 *
 * OWNERSHIP
 * ---------
 * "Does this thread hold lock L?" is answered by a per-thread, process-local
 * list of held locks (struct held, keyed by the segment file's identity and
 * the lock's offset, so two mappings of one segment agree), never by
 * comparing a thread id stored in shared memory: ids are reused, and the
 * mutex's owner field still names a dead owner until somebody takes the
 * lock.  Recursion depth lives in that list too.  A fork child starts with
 * an empty list (shval__fork_gen).
 *
 * A SECTION (tag-seqlock)
 * -----------------------
 * The time a thread holds a value's lock: one library call, or a user's
 * shval_lock()..shval_unlock().  Only the holder writes the version word,
 * with plain (atomic, non-RMW) stores:
 *   begin change (shval__sec_dirty, first change of the section):
 *       copy data -> undo (values <= SHVAL__UNDO_MAX);
 *       version = ver | WRITING   (release: the undo copy before the bit)
 *       release fence              (the bit before any data change)
 *   commit (end of the outermost section, shval__commit_unlock):
 *       take the entry's waiters byte (clear it if set; tag-waiters)
 *       version = (ver & ~WRITING) + ONE   (release: publishes the data)
 *       unlock; then, after the unlock's locked instruction (a full
 *       barrier: smp_mb__after_atomic), read the waiters byte again and
 *       wake sleepers if it was taken or is set (wait.c says why the flag
 *       is taken before the commit and never cleared after it).
 * Readers (value.c, read_consistent) never take the lock: they read the
 * data, or the undo copy while WRITING is set, and re-check the version.
 *
 * RECOVERY
 * --------
 *   owner death: the kernel marks the futex word FUTEX_OWNER_DIED; the next
 *     locker gets EOWNERDEAD from glibc and rolls back every entry the dead
 *     owner had WRITING (undo -> data; PARTIAL flag without an undo copy),
 *     or rolls them forward when the lock block's 'committing' flag says the
 *     owner died while committing a multi-value section (all data final).
 *   stale owner: a futex word naming a thread that is not a live thread of
 *     a process that maps this segment (the owner died but the word was
 *     saved first: a file segment copied, backed up or snapshotted while
 *     locked, a reboot; or the word names a thread id now used by an
 *     unrelated process).  The waiter turns the word into FUTEX_OWNER_DIED
 *     itself (compare-and-swap from the exact word it judged), which is
 *     precisely what the kernel does on a death, and takes the EOWNERDEAD
 *     path above.  Judged only after a waiting slice; any doubt (a /proc
 *     file we may not read) counts as alive.
 *   stuck WRITING: WRITING set on an entry whose lock the caller has just
 *     taken and which the caller has not changed in this section (a
 *     damaged image, or a stale owner): rolled back as on a death.
 *   damaged kind word: refused with SHVAL_ECORRUPT before any pthread call
 *     (glibc abort()s on some kinds); shval_seg_verify(REPAIR)
 *     re-initialises the lock (shval__lock_reinit).
 *
 * SHARED LOCKS (a lock entry guarding several values): the entries a thread
 * changed are kept in its dirty list and committed together when the
 * lock's outermost section ends; with more than one, 'committing' is set
 * first, so a recovering owner rolls them forward instead (all or nothing).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "section.h"

/* ---- this thread ---------------------------------------------------------
 * One small TLS block; the growable arrays live on the heap and are freed
 * by a thread-exit destructor.  Not initial-exec: the library is also
 * dlopen()ed (Python), where static TLS space may have run out; on x86-64
 * the build uses TLS descriptors (-mtls-dialect=gnu2), which make the
 * access cheap where glibc places the block in static TLS (a program
 * linked with the library) and a call otherwise (see tls_fresh). */
struct held {
	uint64_t fid;   /* segment file identity (shval_seg.fid) */
	uint64_t off;   /* the lock block's offset in the segment */
	unsigned depth; /* sections open on it by this thread */
	shval_seg *map; /* the mapping it was taken through, referenced */
};
/* Why the mapping is referenced (MAPPING KEPT): glibc links a mutex it
 * locks into the thread's robust list through the mutex itself (its
 * __list fields, at the addresses of the mapping used to lock it) and
 * writes the neighbour's links on every later lock and unlock of the
 * thread; the kernel walks that list when the thread exits.  A mapping
 * unmapped while one of its mutexes is on the list turns the thread's next
 * robust-mutex operation into a write to unmapped memory, or into another
 * mapping placed at the same address since.  So a held lock keeps the
 * mapping it was taken through, whatever handles and segments the caller
 * closes, until its outermost unlock (through any mapping of the file); a
 * lock never released keeps it until the process ends.  Not dropped when
 * the held list is dropped: at a thread's exit the kernel walks the robust
 * list after the thread's destructors ran, so the mapping must outlive
 * them; a fork child starts with an empty robust list (glibc's fork) and
 * simply keeps its copies of those mappings until it ends. */
struct dirty {
	shval__lockblk *lk;
	shval_seg *seg; /* the mapping lk and e are in, referenced */
	shval__entry *e;
	bool took; /* the waiters' flag, taken at the commit */
};
/* A dirty entry is found by the file's identity and the offsets, like a
 * held lock, never by address: a section may change values through one
 * mapping of the file and end through another (the unlock commits them
 * all), and its mapping is referenced until the commit and the wake-up are
 * done (as MAPPING KEPT above: the caller may close it meanwhile). */
struct tls {
	unsigned gen; /* shval__fork_gen when the lists were valid */
	unsigned nheld, capheld;
	struct held *held;
	size_t ndirty, capdirty;
	struct dirty *dirty;
	pid_t tid;
	unsigned tid_gen;
};
static __thread struct tls T;

_Atomic unsigned shval__fork_gen = 1;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
	(void)p;
	free(T.held);
	free(T.dirty);
	T.held = NULL;
	T.dirty = NULL;
	T.nheld = T.capheld = 0;
	T.ndirty = T.capdirty = 0;
}
static void tls_key_init(void)
{
	pthread_key_create(&tls_key, tls_free);
}

/* Each function below takes the block's address once (tls_self()): &T
 * is a TLS descriptor call, which the compiler repeated at every use.  In
 * the dlopen()ed Python module that call was _dl_tlsdesc_dynamic (17
 * instructions; a `with lock:` section took six of them) while the
 * library's TLS block (1.3 KB with error.c's message buffers) did not fit
 * glibc's static TLS surplus; since error.c keeps its buffers on the heap
 * the block is 136 bytes, glibc places it there, and the call is
 * _dl_tlsdesc_return (3 instructions; BENCHMARKS.md, "thread-local
 * storage made small").  (Not initial-exec: a module whose block did not
 * fit would then fail to import instead of getting the slower call.) */

/* &T, computed once: the empty asm hides the address from the compiler,
 * which would otherwise compute it again (another descriptor call) at each
 * use instead of keeping it in a register. */
static inline struct tls *tls_self(void)
{
	struct tls *t = &T;
	__asm__("" : "+r"(t));
	return t;
}

/* The lists are the parent's in a fork child: the child holds nothing. */
static inline void tls_fresh(struct tls *t)
{
	unsigned g =
		atomic_load_explicit(&shval__fork_gen, memory_order_relaxed);
	if (t->gen != g) {
		t->gen = g;
		t->nheld = 0;
		t->ndirty = 0;
	}
}

/* This thread's id (gettid), cached until a fork. */
pid_t shval__my_tid(void)
{
	unsigned g =
		atomic_load_explicit(&shval__fork_gen, memory_order_relaxed);
	if (T.tid == 0 || T.tid_gen != g) {
		T.tid = gettid();
		T.tid_gen = g;
	}
	return T.tid;
}

static inline uint64_t lock_off(shval *v)
{
	return (uint64_t)((unsigned char *)v->lk - v->seg->base);
}

static struct held *held_find_in(struct tls *t, shval *v)
{
	if (t->nheld == 0)
		return NULL;
	tls_fresh(t);
	uint64_t off = lock_off(v);
	for (unsigned i = t->nheld; i-- > 0;)
		if (t->held[i].off == off && t->held[i].fid == v->seg->fid)
			return &t->held[i];
	return NULL;
}

static struct held *held_find(shval *v)
{
	return held_find_in(tls_self(), v);
}

bool shval__lock_held(shval *v)
{
	return v->lk && held_find(v) != NULL;
}

static int held_push(shval *v)
{
	struct tls *t = tls_self();
	tls_fresh(t);
	if (t->nheld == t->capheld) {
		pthread_once(&tls_once, tls_key_init);
		unsigned n = t->capheld ? t->capheld * 2 : 8;
		struct held *h = realloc(t->held, n * sizeof *h);
		if (!h)
			return -ENOMEM;
		t->held = h;
		t->capheld = n;
		pthread_setspecific(tls_key, t);
	}
	shval__seg_ref(v->seg);
	t->held[t->nheld++] =
		(struct held){ v->seg->fid, lock_off(v), 1, v->seg };
	return 0;
}

/* Forget h; returns the mapping it referenced, for the caller to
 * shval__seg_unref() once the mutex is unlocked (MAPPING KEPT). */
static shval_seg *held_pop(struct tls *t, struct held *h)
{
	shval_seg *map = h->map;
	*h = t->held[--t->nheld];
	return map;
}

static inline uint64_t off_in(const shval_seg *seg, const void *p)
{
	return (uint64_t)((const unsigned char *)p - seg->base);
}

static bool dirty_has(shval *v)
{
	uint64_t off = off_in(v->seg, v->e);
	for (size_t i = 0; i < T.ndirty; i++)
		if (T.dirty[i].seg->fid == v->seg->fid &&
		    off_in(T.dirty[i].seg, T.dirty[i].e) == off)
			return true;
	return false;
}

/* Was d changed under v's lock (any mapping of the file)? */
static bool dirty_under(const struct dirty *d, shval *v)
{
	return d->seg->fid == v->seg->fid &&
	       off_in(d->seg, d->lk) == lock_off(v);
}

static bool dirty_add(shval *v)
{
	if (T.ndirty == T.capdirty) {
		pthread_once(&tls_once, tls_key_init);
		size_t n = T.capdirty ? T.capdirty * 2 : 8;
		struct dirty *d = realloc(T.dirty, n * sizeof *d);
		if (!d)
			return false;
		T.dirty = d;
		T.capdirty = n;
		pthread_setspecific(tls_key, &T);
	}
	shval__seg_ref(v->seg);
	T.dirty[T.ndirty++] = (struct dirty){ v->lk, v->seg, v->e, false };
	return true;
}

/* ---- the lock rules, asserted (debug builds) ---------------------------- */
#ifndef NDEBUG
static __thread int seg_locks_held;
void shval__order_seg(int delta)
{
	seg_locks_held += delta;
}
/* Never a value lock while holding the segment lock (LOCK RULES, 1). */
#define assert_order() assert(seg_locks_held == 0)
#else
void shval__order_seg(int delta)
{
	(void)delta;
}
#define assert_order() ((void)0)
#endif

/* ---- sections ---------------------------------------------------------- */

int shval__lockblk_init(shval__lockblk *lk)
{
	int r = shval__mutex_init(&lk->mutex);
	lk->reserved = 0;
	atomic_store_explicit(&lk->committing, 0, memory_order_relaxed);
	return r;
}

int shval__stale(shval *v)
{
	return shval__failf(v->seg, SHVAL_ESTALE,
			    "segment %s: the value of this handle was removed",
			    v->seg->name);
}

/* Commit the version of an entry whose section is over (holder only).
 * Returns the waiters' flag, taken before the commit (tag-waiters): pass
 * it to shval__wake_after_commit() after the unlock. */
static inline bool version_commit(shval__entry *e)
{
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_relaxed);
	if (atomic_load_explicit(&e->state, memory_order_relaxed) !=
	    SHVAL__ST_LIVE)
		return false; /* removed meanwhile: the word holds the removal
			       * time */
	bool took = shval__waiters_take(e);
	/* release: publishes the data; pairs with the reader's acquire loads
	 * (tag-seqlock). */
	atomic_store_explicit(&e->version,
			      (ver & ~SHVAL__V_WRITING) + SHVAL__V_ONE,
			      memory_order_release);
	return took;
}

/* Roll one entry back to its last committed state (or forward) if it was
 * left mid-change; true if it was.  Called by the lock holder.  Every
 * bound is re-checked: the entry is in shared memory. */
static bool rollback(shval_seg *seg, shval__entry *e, bool forward)
{
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_relaxed);
	if (!(ver & SHVAL__V_WRITING))
		return false;
	if (!forward) {
		uint64_t size = 0;
		uint64_t bytes = (uint64_t)e->nlines * SHVAL__LINE;
		uint64_t undo_rel = 0;
		if (shval__entry_type(seg, e, &size) &&
		    size <= SHVAL__UNDO_MAX &&
		    (undo_rel = shval__undo_rel(e->data_rel, size)) + size <=
			    bytes &&
		    e->data_rel + size <= bytes) {
			unsigned char *b = (unsigned char *)e;
			memcpy(b + e->data_rel, b + undo_rel, size);
		} else {
			e->flags |=
				SHVAL__EF_PARTIAL; /* no undo copy (or damaged) */
		}
	}
	version_commit(e);
	/* The section's owner may have taken the flag before it stopped:
	 * wake whether or not it is set now. */
	shval__wake_after_commit(seg, e, true);
	return true;
}

struct recover_arg {
	uint64_t lock_off;
	bool forward; /* the dead owner was committing: keep its data */
};

/* Recover one entry guarded by the dead owner's lock.  Committed or not,
 * its waiters are woken: the owner may have taken their flag before its
 * commit and died before its FUTEX_WAKE (tag-waiters, wait.c). */
static void recover_one(shval_seg *seg, shval__entry *e, bool forward)
{
	if (!rollback(seg, e, forward))
		shval__futex_wake(&e->version);
}

static int recover_entry(shval_seg *seg, shval__entry *e, void *arg)
{
	struct recover_arg *ra = arg;
	if (e->kind != SHVAL_KIND_LOCK && e->lock_off == ra->lock_off)
		recover_one(seg, e, ra->forward);
	return 0;
}

/* With the mutex just taken after EOWNERDEAD: put every value the dead
 * owner was changing under this lock back to a committed state. */
static void recover(shval *v)
{
	struct recover_arg ra = {
		v->e->lock_off, atomic_load_explicit(&v->lk->committing,
						     memory_order_acquire) != 0
	};
	if (v->own_lock)
		recover_one(v->seg, v->e, ra.forward);
	else
		shval__dir_foreach(v->seg, recover_entry, &ra);
	atomic_store_explicit(&v->lk->committing, 0, memory_order_release);
	pthread_mutex_consistent(&v->lk->mutex);
}

/* Take the lock for a section the caller does not hold yet: 0,
 * SHVAL_EOWNERDEAD (taken, state recovered), -ETIMEDOUT/-EBUSY, or another
 * error.  push: a user section (shval_lock), kept on the held list; a
 * library call's section is not (see section.h). */
static int sec_taken(shval *v, int r, bool push);

static int sec_take(shval *v, uint64_t deadline_rt, bool push)
{
	assert_order();
	int r = shval__mutex_acquire(v->seg, &v->lk->mutex, deadline_rt,
				     "value lock");
	if (r == EBUSY || r == ETIMEDOUT)
		return -r;
	if (r < 0)
		return r;
	return sec_taken(v, r, push);
}

/* The rest of sec_take, with the mutex just taken (r: 0 or EOWNERDEAD). */
static int sec_taken(shval *v, int r, bool push)
{
	if (push && held_push(v) != 0) {
		if (r == EOWNERDEAD)
			recover(v);
		pthread_mutex_unlock(&v->lk->mutex);
		return shval__failf(v->seg, -ENOMEM, "out of memory");
	}
	if (r == EOWNERDEAD) {
		recover(v);
		r = SHVAL_EOWNERDEAD;
	} else if (v->own_lock &&
		   (atomic_load_explicit(&v->e->version, memory_order_relaxed) &
		    SHVAL__V_WRITING)) {
		/* Stuck WRITING with the lock free: left by a damaged image
		 * or a stale owner.  Same as a death. */
		rollback(v->seg, v->e, false);
		r = SHVAL_EOWNERDEAD;
	}
	/* A value removed while we waited for its lock. */
	int c = shval__check(v);
	if (c) {
		shval_seg *map =
			push ? held_pop(tls_self(), held_find(v)) : NULL;
		pthread_mutex_unlock(&v->lk->mutex);
		if (map)
			shval__seg_unref(map);
		return c;
	}
	return r;
}

/* What a section may not start on: 0 or an error. */
static int sec_check(shval *v)
{
	int r = shval__check(v);
	if (r)
		return r;
	if (!v->lk)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value has no lock (raw or atomic mode)");
	return shval__check_writable(v);
}

int shval__chg_begin_slow(shval *v, int *how)
{
	int r = shval__check_writable(v);
	if (r)
		return r;
	if (v->mode == SHVAL_RAW) {
		*how = SHVAL__CHG_RAW;
		return 0;
	}
	if ((r = sec_check(v)) != 0)
		return r;
	if (held_find(v)) {
		*how = SHVAL__CHG_NESTED;
		return 0;
	}
	r = sec_take(v, SHVAL__BLOCK, false);
	/* Library calls recover silently: the rollback is done and the call
	 * goes on; only shval_lock() reports the owner's death. */
	if (r == 0 || r == SHVAL_EOWNERDEAD) {
		*how = SHVAL__CHG_OUTER;
		return 0;
	}
	return r;
}

void shval__sec_dirty_shared(shval *v)
{
	shval__entry *e = v->e;
	if (dirty_has(v))
		return;
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_relaxed);
	if (ver & SHVAL__V_WRITING) {
		/* Stuck WRITING under a shared lock (not set by us). */
		rollback(v->seg, e, false);
		ver = atomic_load_explicit(&e->version, memory_order_relaxed);
	}
	if (!dirty_add(v)) {
		/* No memory to remember it: it commits on its own at once (not
		 * all-or-nothing with the section's other values). */
		bool took = shval__waiters_take(e);
		atomic_store_explicit(&e->version, ver + SHVAL__V_ONE,
				      memory_order_release);
		shval__wake_after_commit(v->seg, e, took);
		return;
	}
	if (v->undo)
		shval__copy(v->undo, v->data, v->size);
	/* As in section.h's shval__sec_dirty (tag-seqlock). */
	atomic_store_explicit(&e->version, ver | SHVAL__V_WRITING,
			      memory_order_release);
	atomic_thread_fence(memory_order_release);
	shval__crash_point("change");
}

void shval__commit_unlock(shval *v)
{
	if (v->own_lock) {
		shval__commit_unlock_own(v, false);
		return;
	}
	/* A shared lock: commit every entry changed under it.  All data is
	 * final now; 'committing' tells a recovering owner to roll these
	 * forward if we die half-way (all or nothing).  One entry commits
	 * with one store: no flag needed.  Relaxed: a new owner sees it
	 * through the robust mutex's hand-over. */
	size_t mine = 0;
	for (size_t i = 0; i < T.ndirty && mine < 2; i++)
		mine += dirty_under(&T.dirty[i], v);
	if (mine > 1)
		atomic_store_explicit(&v->lk->committing, 1,
				      memory_order_relaxed);
	for (size_t i = 0, n = 0; i < T.ndirty; i++)
		if (dirty_under(&T.dirty[i], v)) {
			if (n++ == 1)
				shval__crash_point("commit");
			T.dirty[i].took = version_commit(T.dirty[i].e);
		}
	if (mine > 1)
		atomic_store_explicit(&v->lk->committing, 0,
				      memory_order_relaxed);
	pthread_mutex_unlock(&v->lk->mutex);
	for (size_t i = 0; i < T.ndirty;) {
		if (!dirty_under(&T.dirty[i], v)) {
			i++;
			continue;
		}
		shval_seg *map = T.dirty[i].seg;
		shval__wake_after_commit(map, T.dirty[i].e, T.dirty[i].took);
		T.dirty[i] = T.dirty[--T.ndirty];
		shval__seg_unref(map);
	}
}

/* A user section (shval_lock and friends). */
static int user_lock(shval *v, uint64_t deadline_rt)
{
	int r = sec_check(v);
	if (r)
		return r;
	struct held *h = held_find(v);
	if (h) {
		if (v->mode == SHVAL_LOCK)
			return deadline_rt == SHVAL__TRY
				       ? -EBUSY
				       : shval__failf(
						 v->seg, SHVAL_EMISUSE,
						 "lock already held by this "
						 "thread (SHVAL_LOCK is not "
						 "recursive)");
		h->depth++;
		return 0;
	}
	return sec_take(v, deadline_rt, true);
}

static uint64_t rt_deadline(int64_t timeout_ns)
{
	uint64_t d =
		shval__rt_now() + (uint64_t)(timeout_ns > 0 ? timeout_ns : 0);
	return d < SHVAL__TRY + 1 ? SHVAL__TRY + 1 : d;
}

SHVAL_API int shval_lock(shval *v)
{
	if (SHVAL__REMOTE(v))
		return shval__r_lock(v, -1, false);
	if (!v)
		return -EINVAL;
	return user_lock(v, SHVAL__BLOCK);
}

SHVAL_API int shval_trylock(shval *v)
{
	if (SHVAL__REMOTE(v))
		return shval__r_lock(v, 0, true);
	if (!v)
		return -EINVAL;
	return user_lock(v, SHVAL__TRY);
}

SHVAL_API int shval_timedlock(shval *v, int64_t timeout_ns)
{
	if (SHVAL__REMOTE(v))
		return shval__r_lock(v, timeout_ns, false);
	if (!v)
		return -EINVAL;
	if (timeout_ns == SHVAL_FOREVER)
		return shval_lock(v);
	if (timeout_ns < 0)
		return shval__failf(v->seg, -EINVAL,
				    "shval_timedlock: negative timeout %lld ns "
				    "(SHVAL_FOREVER, -1, waits forever)",
				    (long long)timeout_ns);
	return user_lock(v, rt_deadline(timeout_ns));
}

SHVAL_API int shval_unlock(shval *v)
{
	if (SHVAL__REMOTE(v))
		return shval__r_unlock(v);
	if (!v)
		return -EINVAL;
	if (!v->lk)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value has no lock (raw or atomic mode)");
	struct tls *t = tls_self();
	struct held *h = held_find_in(t, v);
	if (!h)
		return shval__failf(
			v->seg, SHVAL_ENOTOWNER,
			"unlock of a lock this thread does not hold");
	if (--h->depth == 0) {
		shval_seg *map = held_pop(t, h);
		shval__commit_unlock(v);
		shval__seg_unref(map); /* after the unlock: MAPPING KEPT */
	}
	return 0;
}

SHVAL_API void *shval_data(shval *v)
{
	if (SHVAL__REMOTE(v))
		return shval__r_data(v);
	if (!v || shval__check(v) != 0)
		return NULL;
	if (v->lk && !(v->seg->flags & SHVAL_RDONLY) && held_find(v))
		shval__sec_dirty(v); /* the caller may change it in place */
	return v->data;
}
