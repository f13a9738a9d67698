/*
 * src/lock.c — robust value locks, write sections, owner-death rollback.
 *
 * A *section* is the time a thread holds a value's lock: one library call
 * (shval_set_i64 on a locked value) or a user's shval_lock()..shval_unlock().
 * Sections nest (depth in the lock block); the pthread mutex is taken once,
 * by the outermost one, and its owner field tells whether the caller
 * already holds it.
 *
 * Seqlock with an undo copy (tag-seqlock):
 *   writer, holding the lock, before its first change in a section
 *     (shval__sec_dirty): copies data -> undo (values <= SHVAL__UNDO_MAX),
 *     then sets WRITING in the version (release RMW + release fence: the
 *     undo copy is visible before the bit, the bit before any data change);
 *   writer, at the end of the outermost section (shval__sec_end): adds
 *     ONE - WRITING to the version (release: publishes the new data),
 *     wakes waiters if the WAITERS bit was set, unlocks;
 *   reader (no lock; value.c read_consistent): v1 = version (acquire); reads
 *     data if !WRITING, else the undo copy (which holds the last committed
 *     state and does not change while WRITING is set); acquire fence;
 *     re-reads the version and retries if it moved.  Without an undo copy
 *     (big arrays) a reader that meets WRITING sleeps on the version.
 *   owner death (EOWNERDEAD): if WRITING is set, copy undo -> data (or mark
 *     the value PARTIAL when there is no undo copy), commit the version, make
 *     the mutex consistent.  The value is at its last committed state.
 *   shared locks: the entries a thread changed are kept in a per-thread
 *     dirty list and committed together when the lock's outermost section
 *     ends; with more than one, 'committing' is set in the lock block
 *     first, and a recovering owner rolls those entries forward instead.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

_Atomic unsigned shval__fork_gen;
static __thread pid_t tid_cache;
static __thread unsigned tid_gen;

/* This thread's kernel id, cached (refreshed in a fork child). */
pid_t shval__my_tid(void)
{
	unsigned g = atomic_load_explicit(&shval__fork_gen, memory_order_relaxed);
	if (tid_cache == 0 || tid_gen != g) {
		tid_cache = gettid();
		tid_gen = g;
	}
	return tid_cache;
}

int shval__lockblk_init(shval__lockblk *lk, bool recursive)
{
	(void)recursive; /* recursion is counted in lk->depth (see above) */
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	int r = pthread_mutex_init(&lk->mutex, &a);
	pthread_mutexattr_destroy(&a);
	lk->depth = 0;
	atomic_store_explicit(&lk->committing, 0, memory_order_relaxed);
	return -r;
}

int shval__check(shval *v)
{
	/* acquire: pairs with the release store of REMOVED in shval_remove. */
	if (atomic_load_explicit(&v->e->serial, memory_order_relaxed) != v->serial ||
	    atomic_load_explicit(&v->e->state, memory_order_acquire) != SHVAL__ST_LIVE)
		return shval__failf(v->seg, SHVAL_ESTALE,
				    "segment %s: the value of this handle was "
				    "removed",
				    v->seg->name);
	return 0;
}

static bool held_by_me(shval *v)
{
	/* relaxed: only the owner itself can make this true (glibc stores
	 * the owner's tid after taking the mutex). */
	return __atomic_load_n(&v->lk->mutex.__data.__owner, __ATOMIC_RELAXED) ==
	       shval__my_tid();
}

/* Roll one entry back to its last committed state if a dead owner left it
 * mid-change.  Every bound is re-checked: the entry is in shared memory. */
struct recover_arg {
	uint64_t lock_off;
	bool forward; /* the dead owner was committing: keep its data */
};

static int recover_entry(shval_seg *seg, shval__entry *e, void *arg)
{
	struct recover_arg *ra = arg;
	if (e->kind == SHVAL_KIND_LOCK || e->lock_off != ra->lock_off)
		return 0;
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_relaxed);
	if (!(ver & SHVAL__V_WRITING))
		return 0;
	if (ra->forward) {
		shval__version_bump(&e->version, SHVAL__V_ONE - SHVAL__V_WRITING);
		shval__seg_notify(seg);
		return 0;
	}
	uint64_t size = 0;
	uint64_t bytes = (uint64_t)e->nlines * SHVAL__LINE;
	uint64_t undo_rel = 0;
	if (shval__entry_type(seg, e, &size) && size <= SHVAL__UNDO_MAX &&
	    (undo_rel = shval__undo_rel(e->data_rel, size)) + size <= bytes) {
		unsigned char *b = (unsigned char *)e;
		memcpy(b + e->data_rel, b + undo_rel, size);
	} else {
		e->flags |= SHVAL__EF_PARTIAL; /* no undo copy (or damaged) */
	}
	shval__version_bump(&e->version, SHVAL__V_ONE - SHVAL__V_WRITING);
	shval__seg_notify(seg);
	return 0;
}

/* Called with the mutex just taken after EOWNERDEAD: roll back every value
 * the dead owner was changing under this lock. */
static void recover(shval *v)
{
	struct recover_arg ra = {
		v->e->lock_off,
		atomic_load_explicit(&v->lk->committing, memory_order_acquire) != 0
	};
	uint64_t end = v->off + (uint64_t)v->e->nlines * SHVAL__LINE;
	bool own = v->kind != SHVAL_KIND_LOCK && ra.lock_off >= v->off &&
		   ra.lock_off < end;
	if (own)
		recover_entry(v->seg, v->e, &ra);
	else
		shval__dir_foreach(v->seg, recover_entry, &ra);
	atomic_store_explicit(&v->lk->committing, 0, memory_order_release);
	__atomic_store_n(&v->lk->depth, 0, __ATOMIC_RELAXED);
	pthread_mutex_consistent(&v->lk->mutex);
}

/* Entries this thread changed in its open sections, committed when the
 * outermost section of their lock ends (a shared lock guards several). */
struct dirty_ent {
	shval__lockblk *lk;
	shval_seg *seg;
	shval__entry *e;
};
static __thread struct dirty_ent *dirty;
static __thread size_t ndirty, capdirty;
static pthread_key_t dirty_key;
static pthread_once_t dirty_once = PTHREAD_ONCE_INIT;

/* Frees a thread's list when the thread exits. */
static void dirty_free(void *p)
{
	free(p);
}
static void dirty_key_init(void)
{
	pthread_key_create(&dirty_key, dirty_free);
}

static bool dirty_add(shval *v)
{
	if (ndirty == capdirty) {
		pthread_once(&dirty_once, dirty_key_init);
		size_t n = capdirty ? capdirty * 2 : 8;
		struct dirty_ent *d = realloc(dirty, n * sizeof *d);
		if (!d)
			return false;
		dirty = d;
		capdirty = n;
		pthread_setspecific(dirty_key, d);
	}
	dirty[ndirty++] = (struct dirty_ent){ v->lk, v->seg, v->e };
	return true;
}

bool shval__lock_owner_dead(pthread_mutex_t *m, pid_t *tid)
{
	unsigned word = (unsigned)__atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
	pid_t t = (pid_t)(word & 0x3fffffff); /* FUTEX_TID_MASK */
	if (tid)
		*tid = t;
	/* On the owner's death the kernel clears the TID and sets
	 * FUTEX_OWNER_DIED (it walks the dead thread's robust list). */
	if (word & 0x40000000u)
		return true;
	if (t == 0)
		return false;
	char path[64];
	snprintf(path, sizeof path, "/proc/%d", (int)t);
	return access(path, F_OK) != 0 && errno == ENOENT;
}

int shval__mutex_lock(pthread_mutex_t *m, const struct timespec *abs)
{
#if defined(__SANITIZE_THREAD__)
	/* ThreadSanitizer's pthread_mutex_timedlock does not model
	 * EOWNERDEAD (it then reports our unlock as "unlock of an unlocked
	 * mutex"); its pthread_mutex_lock does.  TSan builds block plainly. */
	if (!abs)
		return pthread_mutex_lock(m);
#endif
	int r0 = pthread_mutex_trylock(m); /* uncontended: no clock, no wait */
	if (r0 != EBUSY)
		return r0;
	/* Wait in one-second slices: a lock word naming a thread that does
	 * not exist (a damaged or foreign segment: robust mutexes only
	 * recover from owners that die) would otherwise block forever. */
	for (;;) {
		struct timespec now, slice;
		clock_gettime(CLOCK_REALTIME, &now);
		slice = now;
		slice.tv_sec += 1;
		bool last = abs && (abs->tv_sec < slice.tv_sec ||
				    (abs->tv_sec == slice.tv_sec &&
				     abs->tv_nsec <= slice.tv_nsec));
		int r = pthread_mutex_timedlock(m, last ? abs : &slice);
		if (r != ETIMEDOUT || last)
			return r;
		unsigned w1 = (unsigned)__atomic_load_n(&m->__data.__lock,
							__ATOMIC_RELAXED);
		pid_t tid;
		if (shval__lock_owner_dead(m, &tid) && !(w1 & 0x40000000u) &&
		    w1 == (unsigned)__atomic_load_n(&m->__data.__lock,
						    __ATOMIC_RELAXED))
			return ENOTRECOVERABLE; /* owner never existed */
	}
}

/* Take the lock for a section: 0, SHVAL_EOWNERDEAD (lock taken, state
 * rolled back), -ETIMEDOUT/-EBUSY, or another error. deadline: 0 = block,
 * 1 = try, else CLOCK_REALTIME ns. */
static int sec_take(shval *v, uint64_t deadline_rt)
{
	int r = shval__check(v);
	if (r)
		return r;
	if (!v->lk)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value has no lock (raw or atomic mode)");
	if (v->seg->flags & SHVAL_RDONLY)
		return shval__failf(v->seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only",
				    v->seg->name);
	if (held_by_me(v)) {
		__atomic_store_n(&v->lk->depth, v->lk->depth + 1, __ATOMIC_RELAXED);
		return 0;
	}
	if (deadline_rt == 0)
		r = shval__mutex_lock(&v->lk->mutex, NULL);
	else if (deadline_rt == 1)
		r = pthread_mutex_trylock(&v->lk->mutex);
	else {
		struct timespec ts = { (time_t)(deadline_rt / 1000000000ull),
				       (long)(deadline_rt % 1000000000ull) };
		r = shval__mutex_lock(&v->lk->mutex, &ts);
	}
	if (r == EOWNERDEAD) {
		recover(v);
		__atomic_store_n(&v->lk->depth, 1, __ATOMIC_RELAXED);
		return SHVAL_EOWNERDEAD;
	}
	if (r == EBUSY || r == ETIMEDOUT)
		return -r;
	if (r)
		return shval__failf(v->seg, r == ENOTRECOVERABLE ? SHVAL_ECORRUPT : -r,
				    "lock: %s%s", strerror(r),
				    r == ENOTRECOVERABLE
					    ? " (the lock word names a thread that does "
					      "not exist: damaged segment?)"
					    : "");
	__atomic_store_n(&v->lk->depth, 1, __ATOMIC_RELAXED);
	/* A value removed while we waited for its lock. */
	if ((r = shval__check(v)) != 0) {
		__atomic_store_n(&v->lk->depth, 0, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&v->lk->mutex);
		return r;
	}
	return 0;
}

int shval__sec_begin(shval *v)
{
	int r = sec_take(v, 0);
	/* Library calls recover silently: the rollback is done and the call
	 * goes on; only shval_lock() reports the owner's death. */
	return r == SHVAL_EOWNERDEAD ? 0 : r;
}

void shval__sec_dirty(shval *v)
{
	shval__entry *e = v->e;
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_relaxed);
	if (ver & SHVAL__V_WRITING)
		return;
	if (!dirty_add(v))
		return; /* no memory: committed at this value's section end */
	if (v->undo)
		memcpy(v->undo, v->data, v->size);
	/* tag-seqlock: release orders the undo copy before the bit; the
	 * release fence orders the bit before the data changes that follow
	 * (smp_wmb: readers that see changed data then see WRITING or a new
	 * version). */
	atomic_fetch_add_explicit(&e->version, SHVAL__V_WRITING,
				  memory_order_release);
	atomic_thread_fence(memory_order_release);
}

void shval__sec_end(shval *v)
{
	if (__atomic_sub_fetch(&v->lk->depth, 1, __ATOMIC_RELAXED) > 0)
		return;
	/* tag-seqlock: commit every entry changed under this lock.  All data
	 * is final now; 'committing' tells a recovering owner to roll these
	 * forward if we die half-way, so a multi-value section under a shared
	 * lock commits all or nothing. */
	size_t mine = 0;
	for (size_t i = 0; i < ndirty && mine < 2; i++)
		mine += dirty[i].lk == v->lk;
	/* One entry commits with one atomic add: no flag needed.  Relaxed:
	 * a new owner sees it through the robust mutex's hand-over (the
	 * kernel and the mutex acquire order everything we stored). */
	bool any = mine > 1;
	if (any)
		atomic_store_explicit(&v->lk->committing, 1, memory_order_relaxed);
	for (size_t i = 0; i < ndirty;) {
		if (dirty[i].lk != v->lk) {
			i++;
			continue;
		}
		shval__entry *e = dirty[i].e;
		if (atomic_load_explicit(&e->version, memory_order_relaxed) &
		    SHVAL__V_WRITING) {
			shval__version_bump(&e->version, SHVAL__V_ONE - SHVAL__V_WRITING);
			shval__seg_notify(dirty[i].seg);
		}
		dirty[i] = dirty[--ndirty];
	}
	if (any)
		atomic_store_explicit(&v->lk->committing, 0, memory_order_relaxed);
	pthread_mutex_unlock(&v->lk->mutex);
}

static uint64_t rt_deadline(int64_t timeout_ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	return now + (uint64_t)(timeout_ns > 0 ? timeout_ns : 0) + 2;
}

SHVAL_API int shval_lock(shval *v)
{
	if (!v)
		return -EINVAL;
	if (v->lk && v->mode == SHVAL_LOCK && held_by_me(v))
		return shval__failf(v->seg, SHVAL_EMISUSE,
				    "lock already held by this thread (SHVAL_LOCK "
				    "is not recursive)");
	return sec_take(v, 0);
}

SHVAL_API int shval_trylock(shval *v)
{
	if (!v)
		return -EINVAL;
	if (v->lk && v->mode == SHVAL_LOCK && held_by_me(v))
		return -EBUSY;
	return sec_take(v, 1);
}

SHVAL_API int shval_timedlock(shval *v, int64_t timeout_ns)
{
	if (!v)
		return -EINVAL;
	if (timeout_ns < 0)
		return shval_lock(v);
	if (v->lk && v->mode == SHVAL_LOCK && held_by_me(v))
		return shval__failf(v->seg, SHVAL_EMISUSE,
				    "lock already held by this thread");
	return sec_take(v, rt_deadline(timeout_ns));
}

SHVAL_API int shval_unlock(shval *v)
{
	if (!v)
		return -EINVAL;
	if (!v->lk)
		return shval__failf(v->seg, SHVAL_EMODE,
				    "value has no lock (raw or atomic mode)");
	if (!held_by_me(v) || v->lk->depth == 0)
		return shval__failf(v->seg, SHVAL_ENOTOWNER,
				    "unlock of a lock this thread does not hold");
	shval__sec_end(v);
	return 0;
}

SHVAL_API void *shval_data(shval *v)
{
	if (!v || shval__check(v) != 0)
		return NULL;
	if (v->lk && held_by_me(v) && !(v->seg->flags & SHVAL_RDONLY))
		shval__sec_dirty(v); /* the caller may change it in place */
	return v->data;
}
