/*
 * src/mutex.c — the robust mutex under every shval lock: glibc's internals
 * (the futex word, the kind word and the robust-list node: the only file
 * that knows them, with include/shval.h's inline take, "FAST PATH" below),
 * stale owners, and the acquire that judges them.  What a lock protects
 * (sections, rollback, the held list) is src/lock.c's; its comment
 * "RECOVERY" describes both halves.
 */
#include <errno.h>
#include <linux/futex.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- the glibc mutex ----------------------------------------------------
 * glibc's pthread_mutex_t (LP64): __lock (the futex word) at 0, __count,
 * __owner, __nusers, __kind at 16, then the robust list links.  The futex
 * word of a robust mutex is the kernel's robust-futex ABI:
 *   FUTEX_TID_MASK    the owner's thread id (0 = free)
 *   FUTEX_OWNER_DIED  set by the kernel when the owner died holding it
 *   FUTEX_WAITERS     somebody sleeps on it */
_Static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0, "glibc mutex");
_Static_assert(offsetof(pthread_mutex_t, __data.__kind) == 16, "glibc mutex");

static _Atomic uint32_t *futex_word(pthread_mutex_t *m)
{
	return (_Atomic uint32_t *)(void *)&m->__data.__lock;
}

/* The kind word every shval lock has (ERRORCHECK | ROBUST | PSHARED as
 * glibc encodes it), read off a mutex initialised like ours, once, before
 * main (section.h's fast path compares with it). */
int shval__lock_kind = -1;

static int mutex_attr_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
	int r = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return r;
}

__attribute__((constructor)) static void kind_init(void)
{
	pthread_mutex_t m;
	mutex_attr_init(&m);
	shval__lock_kind = m.__data.__kind;
	pthread_mutex_destroy(&m);
}

int shval__mutex_init(pthread_mutex_t *m)
{
	return -mutex_attr_init(m);
}

/* Is the mutex's kind word the one every shval lock has? */
static bool mutex_kind_ok(pthread_mutex_t *m)
{
	return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) ==
	       shval__lock_kind;
}

bool shval__mutex_damaged(pthread_mutex_t *m)
{
	return !mutex_kind_ok(m) ||
	       __atomic_load_n(&m->__data.__owner, __ATOMIC_RELAXED) ==
		       0x7fffffff; /* PTHREAD_MUTEX_NOTRECOVERABLE */
}

unsigned shval__mutex_kind(pthread_mutex_t *m)
{
	return (unsigned)__atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED);
}

uint32_t shval__mutex_owner(pthread_mutex_t *m)
{
	/* acquire: pairs with the release of the owner's unlock (what it
	 * stored before unlocking is visible once the word reads free). */
	return atomic_load_explicit(futex_word(m), memory_order_acquire) &
	       FUTEX_TID_MASK;
}

/* ---- FAST PATH ---------------------------------------------------------
 * A section of one call (include/shval.h's inline write and locked add,
 * section.h's shval__chg_begin) takes the mutex with
 * shval__lock_fast_take: the robust-futex protocol glibc's trylock runs,
 * minus what only a section that may outlive the call needs.
 *   glibc: list_op_pending = m; CAS word 0 -> tid; put m on the thread's
 *          robust list; list_op_pending = NULL; __owner, __nusers.
 *   fast:  list_op_pending = m; CAS word 0 -> tid; ... the section ...;
 *          CAS word tid -> 0; list_op_pending = NULL.
 * On a thread's death the kernel treats the mutex list_op_pending names as
 * one on the list (exit_robust_list: "pending" with HANDLE_DEATH_PENDING):
 * if its word holds the dead thread's id it becomes FUTEX_OWNER_DIED and a
 * sleeper is woken, so the next locker's trylock returns EOWNERDEAD, as for
 * a glibc-taken mutex.  The slot is the kernel's ABI (set_robust_list(2)),
 * glibc only writes it around its own operations and leaves it NULL in
 * between; we refuse the fast path if it is not NULL.  The slot's value is
 * &m->__data.__list.__next, the address glibc gives the kernel for a mutex
 * on the list (futex_offset, checked at setup, leads back to the word).
 * Not on glibc's list, the mutex must never go to pthread_mutex_unlock
 * (its dequeue would follow stale links): every fast take pairs with
 * shval__lock_fast_release.  __owner and __nusers stay untouched: glibc
 * reads them only for a mutex it took.  What differs from glibc's
 * trylock: nothing a waiter can see (the word is the whole protocol; a
 * sleeper's FUTEX_WAITERS bit makes the release go to
 * shval__lock_fast_release_slow, which wakes one, as glibc's unlock does).
 * One limit, as for every robust mutex: not async-signal-safe (a handler
 * that runs a robust-mutex operation of glibc's clears the slot). */
SHVAL_API __thread struct shval__thread shval__me
	__attribute__((tls_model("initial-exec")));

SHVAL_API void **shval__me_setup(void)
{
	struct shval__thread *me = &shval__me;
	if (me->tid == ~0u)
		return NULL; /* tried: no fast path in this thread */
	struct robust_list_head *head = NULL;
	size_t len = 0;
	me->tid = ~0u;
	if (syscall(SYS_get_robust_list, 0, &head, &len) != 0 || !head ||
	    len != sizeof *head ||
	    head->futex_offset !=
		    (long)offsetof(pthread_mutex_t, __data.__lock) -
			    (long)offsetof(pthread_mutex_t,
					   __data.__list.__next))
		return NULL; /* not glibc's robust list as we know it */
	me->tid = (unsigned)shval__my_tid();
	me->pending = (void **)(void *)&head->list_op_pending;
	return me->pending;
}

/* In a fork's child: a new thread id, the same slot (set up again). */
void shval__me_forked(void)
{
	shval__me.tid = 0;
	shval__me.pending = NULL;
}

SHVAL_API void shval__lock_fast_release_slow(void *mutex)
{
	_Atomic uint32_t *w = futex_word(mutex);
	uint32_t o = atomic_load_explicit(w, memory_order_relaxed);
	if ((o & FUTEX_TID_MASK) != shval__me.tid)
		return; /* not ours any more (judged stale): leave it */
	o = atomic_exchange_explicit(w, 0, memory_order_release);
	if (o & FUTEX_WAITERS)
		syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ---- owners ---------------------------------------------------------- */

/* Is the owner named by futex word w stale: not a live thread of a process
 * that maps this segment?  The caller does not hold the lock (held list).
 * Doubt counts as alive. */
static bool owner_stale(shval_seg *seg, uint32_t w)
{
	pid_t tid = (pid_t)(w & FUTEX_TID_MASK);
	if (w & FUTEX_OWNER_DIED)
		return false; /* already marked for recovery */
	if (tid == 0)
		/* free; or flag bits with no owner (FUTEX_WAITERS alone: a
		 * damaged word, never one glibc leaves), which nobody would
		 * ever wake us from: recovered as a death */
		return w != 0;
	if (tid == shval__my_tid())
		return true; /* we do not hold it (held list): not ours */
	pid_t pid = shval__tid_process(tid);
	if (pid < 0)
		return true;
	if (pid == 0 || pid == getpid())
		return false; /* unknown, or another thread of this process */
	return !shval__proc_maps(pid, seg->dev, seg->ino);
}

/* owner_stale() reads /proc (tens of microseconds): a thread that polls a
 * busy lock with trylock judges the same owner at most every 50 ms. */
static __thread struct {
	pthread_mutex_t *m;
	uint32_t w;
	uint64_t until;
} judged;

static bool owner_stale_cached(shval_seg *seg, pthread_mutex_t *m, uint32_t w)
{
	uint64_t now = shval__now_ns();
	if (judged.m == m && judged.w == w && now < judged.until)
		return false; /* judged alive a moment ago */
	if (owner_stale(seg, w))
		return true;
	judged.m = m;
	judged.w = w;
	judged.until = now + 50000000ull;
	return false;
}

/* Turn a stale futex word into what the kernel leaves on a death, so that
 * the next trylock returns EOWNERDEAD.  The compare-and-swap from the exact
 * word judged stale: a word that changed meanwhile is judged again. */
static void mark_owner_dead(pthread_mutex_t *m, uint32_t w)
{
	uint32_t nw = (w & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
	if (atomic_compare_exchange_strong(futex_word(m), &w, nw))
		syscall(SYS_futex, futex_word(m), FUTEX_WAKE, 1, NULL, NULL, 0);
}

bool shval__lock_stale(shval_seg *seg, pthread_mutex_t *m, pid_t *tid)
{
	uint32_t w = atomic_load_explicit(futex_word(m), memory_order_relaxed);
	if (tid)
		*tid = (pid_t)(w & FUTEX_TID_MASK);
	if (w & FUTEX_OWNER_DIED)
		return true;
	return owner_stale(seg, w);
}

/* How long a locker waits before it judges the owner (then again after
 * every further slice). */
#define STALE_CHECK_NS 50000000ull /* 50 ms */

uint64_t shval__rt_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Take mutex m of segment seg.  deadline_rt: SHVAL__BLOCK, SHVAL__TRY, or
 * an absolute CLOCK_REALTIME time in ns.  The caller does not hold it.
 * Returns 0, EOWNERDEAD (taken; recovery is the caller's), EBUSY,
 * ETIMEDOUT, or a negative shval code (damaged lock, message set). */
int shval__mutex_acquire(shval_seg *seg, pthread_mutex_t *m,
			 uint64_t deadline_rt, const char *what)
{
	if (!mutex_kind_ok(m))
		return shval__failf(
			seg, SHVAL_ECORRUPT,
			"segment %s: %s: the lock's kind word is damaged "
			"(0x%x; shval_seg_verify with repair "
			"re-initialises it)",
			seg->name, what,
			(unsigned)__atomic_load_n(&m->__data.__kind,
						  __ATOMIC_RELAXED));
	for (;;) {
		int r = pthread_mutex_trylock(m);
		if (r == 0 || r == EOWNERDEAD)
			return r;
		uint32_t w = atomic_load_explicit(futex_word(m),
						  memory_order_relaxed);
		if (r == EDEADLK) {
			/* The word names this thread, which does not hold it
			 * (held list): a saved or copied word.  Stale. */
			mark_owner_dead(m, w);
			continue;
		}
		if (r == ENOTRECOVERABLE)
			return shval__failf(
				seg, SHVAL_ECORRUPT,
				"segment %s: %s: the lock is marked "
				"not recoverable (damaged; "
				"shval_seg_verify with repair "
				"re-initialises it)",
				seg->name, what);
		if (r != EBUSY)
			return shval__failf(seg, -r, "segment %s: %s: %s",
					    seg->name, what, strerror(r));
		if (deadline_rt == SHVAL__TRY) {
			if (owner_stale_cached(seg, m, w)) {
				mark_owner_dead(m, w);
				continue;
			}
			return EBUSY;
		}
		break;
	}
#if defined(__SANITIZE_THREAD__)
	/* ThreadSanitizer's pthread_mutex_timedlock does not model
	 * EOWNERDEAD (it then reports our unlock as "unlock of an unlocked
	 * mutex"); its pthread_mutex_lock does.  TSan builds block plainly. */
	if (deadline_rt == SHVAL__BLOCK)
		return pthread_mutex_lock(m);
#endif
	/* Wait in slices; after each, judge the owner (a lock word naming a
	 * thread that is gone or not ours would otherwise block forever:
	 * robust mutexes recover only from owners that die). */
	for (;;) {
		uint64_t now = shval__rt_now();
		uint64_t until = now + STALE_CHECK_NS;
		bool last = deadline_rt != SHVAL__BLOCK && deadline_rt <= until;
		if (last)
			until = deadline_rt;
		struct timespec ts = { (time_t)(until / 1000000000ull),
				       (long)(until % 1000000000ull) };
		int r = pthread_mutex_timedlock(m, &ts);
		if (r == EDEADLK) {
			mark_owner_dead(m, atomic_load(futex_word(m)));
			continue;
		}
		if (r == ENOTRECOVERABLE)
			return shval__failf(
				seg, SHVAL_ECORRUPT,
				"segment %s: %s: the lock is marked "
				"not recoverable (damaged)",
				seg->name, what);
		if (r != ETIMEDOUT)
			return r == 0 || r == EOWNERDEAD || r == EBUSY
				       ? r
				       : shval__failf(
						 seg, -r, "segment %s: %s: %s",
						 seg->name, what, strerror(r));
		uint32_t w = atomic_load_explicit(futex_word(m),
						  memory_order_relaxed);
		if (owner_stale(seg, w)) {
			mark_owner_dead(m, w);
			continue;
		}
		if (last)
			return ETIMEDOUT;
	}
}

/* Re-initialise a lock whose kind word is damaged or which is marked not
 * recoverable, if nobody live holds it.  Repair only (verify.c). */
bool shval__lock_reinit(shval_seg *seg, pthread_mutex_t *m)
{
	uint32_t w = atomic_load_explicit(futex_word(m), memory_order_relaxed);
	if (!shval__mutex_damaged(m))
		return false;
	if ((w & FUTEX_TID_MASK) && !(w & FUTEX_OWNER_DIED) &&
	    !owner_stale(seg, w))
		return false; /* a live owner: leave it */
	memset(m, 0, sizeof *m);
	mutex_attr_init(m);
	/* The lock was not cleanly released: its values may be mid-change;
	 * the next locker rolls them back. */
	atomic_store_explicit(futex_word(m), FUTEX_OWNER_DIED,
			      memory_order_release);
	return true;
}
