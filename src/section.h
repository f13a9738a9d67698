/*
 * src/section.h — a change to a value: the one write path of the raw and
 * locked modes (atomic values change by single atomic instructions:
 * value.c).  Internal: not API.
 *
 *     int how;
 *     int r = shval__chg_begin(v, &how);   raw: checks; locked: the lock
 *     if (r) return r;
 *     ... read v->data, decide ...
 *     shval__chg_dirty(v, how);            before the first byte changes
 *     ... change v->data ...
 *     shval__chg_end(v, how, changed);     commit (if changed), unlock, wake
 *
 * Locked values: the protocol is lock.c's (tag-seqlock).  The fast path
 * below is the common case, inlined into the callers: a value with its own
 * lock, free.  It takes the mutex with shval__lock_fast_take (the kernel's
 * robust-futex protocol inline: mutex.c, "FAST PATH") and releases it
 * with shval__lock_fast_release (SHVAL__CHG_FAST: never
 * pthread_mutex_unlock).  The compare-and-swap 0 -> tid succeeding is the
 * proof that this thread did not hold the lock already (if it did, the
 * futex word would name it), so the held list is not consulted and a
 * library call's section is never pushed on it: nothing but this call runs
 * while it is open.  Everything else (contention, nesting inside
 * shval_lock(), shared locks, a dead owner, recovery) goes to lock.c,
 * which takes the mutex through glibc (SHVAL__CHG_OUTER).
 */
#ifndef SHVAL_SECTION_H
#define SHVAL_SECTION_H

#include <errno.h>
#include <string.h>

#include "internal.h"

#define SHVAL__CHG_RAW 0   /* raw value: no lock */
#define SHVAL__CHG_OUTER 1 /* locked: this call took the lock */
#define SHVAL__CHG_NESTED \
	2 /* locked: already held by this thread (a
                               shval_lock() section): commit at its end */
#define SHVAL__CHG_FAST \
	3 /* own lock: this call took it with
                               shval__lock_fast_take */

/* lock.c: the kind word of every shval lock (set by a constructor). */
extern int shval__lock_kind;
int shval__chg_begin_slow(shval *v, int *how);
void shval__sec_dirty_shared(shval *v);
void shval__commit_unlock(shval *v);

/* Copy a value's bytes; 8-byte scalars (the common counter) inline. */
static inline void shval__copy(void *dst, const void *src, size_t n)
{
	if (n == 8)
		__builtin_memcpy(dst, src, 8);
	else
		memcpy(dst, src, n);
}

static inline int shval__chg_begin(shval *v, int *how)
{
	/* The handle's serial before touching the lock (a reused block's
	 * lock is another value's); the state after taking it (removed while
	 * we waited); WRITING must be clear (else: recovery, lock.c). */
	if (v->fast_sec &&
	    atomic_load_explicit(&v->e->serial, memory_order_relaxed) ==
		    v->serial &&
	    __atomic_load_n(&v->lk->mutex.__data.__kind, __ATOMIC_RELAXED) ==
		    shval__lock_kind &&
	    shval__lock_fast_take(&v->lk->mutex)) {
		if (atomic_load_explicit(&v->e->state, memory_order_acquire) ==
			    SHVAL__ST_LIVE &&
		    !(atomic_load_explicit(&v->e->version,
					   memory_order_relaxed) &
		      SHVAL__V_WRITING)) {
			*how = SHVAL__CHG_FAST;
			return 0;
		}
		/* Removed, or WRITING stuck: lock.c's path, which takes the
		 * lock again through glibc and recovers. */
		shval__lock_fast_release(&v->lk->mutex);
	}
	return shval__chg_begin_slow(v, how);
}

/* Before the first change of the section (tag-seqlock, lock.c). */
static inline void shval__sec_dirty(shval *v)
{
	if (!v->own_lock) {
		shval__sec_dirty_shared(v);
		return;
	}
	shval__entry *e = v->e;
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_relaxed);
	if (ver & SHVAL__V_WRITING)
		return; /* this section set it already */
	if (v->undo)
		shval__copy(v->undo, v->data, v->size);
	/* release: the undo copy before the bit; the release fence: the bit
	 * before the data changes that follow (smp_wmb).  Pairs with the
	 * reader's acquire load and fence in value.c (tag-seqlock). */
	atomic_store_explicit(&e->version, ver | SHVAL__V_WRITING,
			      memory_order_release);
	atomic_thread_fence(memory_order_release);
}

static inline void shval__chg_dirty(shval *v, int how)
{
	if (how != SHVAL__CHG_RAW)
		shval__sec_dirty(v);
}

/* After a commit and the unlock: wake the value's waiters and the
 * segment's watchers, if any (tag-waiters, wait.c).  took: the waiters'
 * flag, taken before the commit.  The unlock's locked instruction is the
 * barrier on x86-64 (smp_mb__after_atomic). */
static inline void shval__wake_after_unlock(shval_seg *seg, shval__entry *e,
					    bool took)
{
#if defined(__x86_64__) || defined(__i386__)
	atomic_signal_fence(memory_order_seq_cst);
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
	if (took || atomic_load_explicit(&e->waiters, memory_order_relaxed) ||
	    (atomic_load_explicit(&seg->hdr->version, memory_order_relaxed) &
	     (SHVAL__V_WAITERS | SHVAL__V_WATCHED)))
		shval__wake_after_commit(seg, e, took);
}

/* End a section this call opened: commit if changed, unlock, wake.
 * fast: the lock was taken with shval__lock_fast_take. */
static inline void shval__commit_unlock_own(shval *v, bool fast)
{
	shval__entry *e = v->e;
	uint64_t ver = atomic_load_explicit(&e->version, memory_order_relaxed);
	/* A value removed while its lock was held (shval_remove waits 1 s at
	 * most): its version word now holds the removal time (limbo). */
	bool changed = (ver & SHVAL__V_WRITING) &&
		       atomic_load_explicit(&e->state, memory_order_relaxed) ==
			       SHVAL__ST_LIVE;
	bool took = false;
	if (changed) {
		took = shval__waiters_take(e); /* before the commit: wait.c */
		/* release: publishes the data (tag-seqlock) */
		atomic_store_explicit(&e->version,
				      (ver & ~SHVAL__V_WRITING) + SHVAL__V_ONE,
				      memory_order_release);
	}
	if (fast)
		shval__lock_fast_release(&v->lk->mutex);
	else
		pthread_mutex_unlock(&v->lk->mutex);
	if (changed)
		shval__wake_after_unlock(v->seg, e, took);
}

static inline void shval__chg_end(shval *v, int how, bool changed)
{
	if (how == SHVAL__CHG_FAST)
		shval__commit_unlock_own(v, true);
	else if (how == SHVAL__CHG_OUTER) {
		if (v->own_lock)
			shval__commit_unlock_own(v, false);
		else
			shval__commit_unlock(v);
	} else if (how == SHVAL__CHG_RAW && changed)
		shval__wake_after_change(v->seg, v->e, true);
	/* NESTED: the holder's outermost shval_unlock() commits. */
}

/* After an atomic RMW or store on v's data: wake its waiters and the
 * segment's watchers, if any. */
static inline void shval__atomic_changed(shval *v)
{
	/* tag-waiters: the RMW just done on the data is the barrier (x86-64;
	 * wait.c adds the fence elsewhere before it looks again). */
#if defined(__x86_64__) || defined(__i386__)
	atomic_signal_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&v->e->waiters, memory_order_relaxed) ||
	    (atomic_load_explicit(&v->seg->hdr->version, memory_order_relaxed) &
	     (SHVAL__V_WAITERS | SHVAL__V_WATCHED)))
#endif
		shval__wake_after_change(v->seg, v->e, false);
}

#endif
