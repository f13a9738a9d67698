/*
 * src/wait.c — futex wait/wake and wait-for-change.
 *
 * Value waiters (tag-waiters):
 *   waiter: sets the entry's waiters byte (seq_cst RMW), re-reads what it
 *           waits on (seq_cst), and sleeps with FUTEX_WAIT on the low 32
 *           bits of the version word only if nothing changed (the kernel
 *           re-checks the word against the version it read before setting
 *           the flag).
 *   writer: locked and raw values: takes the flag (clears it, if set)
 *           BEFORE its change moves the version word, makes the change (a
 *           locked holder: stores the version, then unlocks; raw: an atomic
 *           add on the version), then, after a full barrier, loads the
 *           waiters byte again; it calls FUTEX_WAKE if it took the flag or
 *           finds it set, and leaves a flag found after the change alone.
 *           Atomic values: the RMW on the data, a full barrier, the load;
 *           if set: clear the flag, then add to the version word (the futex
 *           word, which the data is not), then FUTEX_WAKE.
 * Either the writer sees the waiter's flag, or the waiter sees the
 * writer's change: the barrier and the seq_cst accesses on each side make a
 * Dekker pair.  The barrier after a locked holder's commit is the unlock's
 * own locked instruction (smp_mb__after_atomic), so a section costs no
 * extra fence on x86-64.  Writers pay for a wake-up only when someone
 * waits, and nobody but the lock holder writes a locked value's version.
 *
 * Why the flag is taken before the change and not cleared after it: every
 * clear must be followed by a move of the futex word the flagged waiter
 * compares, else a waiter can lose its flag and still fall asleep.  With a
 * clear after the change, a writer preempted between its version store
 * and the clear erased the flag of a waiter that had already seen the new
 * version, flagged itself for the next one and was about to sleep; the
 * next writer then found no flag and woke nobody (tests/test_wake_points.c
 * stops both processes at exactly those points).
 * Atomic values clear, then move the version word: the same rule.  The
 * cost: a flag found after the change stays set, so the next writer makes
 * one FUTEX_WAKE more.  A process killed between taking the flag and its
 * FUTEX_WAKE still loses that wake-up: within a section, the recovering
 * locker wakes the value's waiters (lock.c, recover); after the unlock,
 * the window is the few instructions to the system call.
 *
 * Segment watchers use the same pattern on the segment version, whose bit
 * 0 is the watchers' flag (many writers: atomic adds, only while watched).
 *
 * Timeouts (tag-timeout): a wait returns -ETIMEDOUT only if the version
 * had not moved at a re-check made after the deadline, or if the kernel
 * timed the futex out (at or after the deadline) before any FUTEX_WAKE
 * reached it.  So a change whose write call (store and wake) returned
 * before the deadline never ends in a timeout, however loaded the machine;
 * if it does, a wake-up was lost.  tests/test_wake.c and
 * python/tests/test_wake.py rely on this to tell a lost wake-up from a
 * slow machine.  After a futex timeout the version is deliberately not
 * re-checked: that would turn a lost wake-up into a silent delay.
 */
#include <errno.h>
#include <stdint.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "internal.h"

/* Spin, then sleep.  A hand-off caught while spinning costs no system
 * call (a futex round trip between processes is ~10 us here, a spinning
 * hand-off ~0.2 us), but a spinner steals the CPU its partner may need on
 * a loaded machine.  So the spin is adaptive, per thread: the budget (in
 * polls of the version) doubles after a wait that the spin caught and
 * halves after one that had to sleep, and a spin never lasts longer than
 * SPIN_MAX_NS whatever the budget (see BENCHMARKS.md, wake_pingpong). */
#define SPIN_MIN 16u
#define SPIN_MAX 8192u
#define SPIN_MAX_NS 50000u
static __thread unsigned spin_budget = 256;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

int shval__futex_wait(_Atomic uint64_t *word, uint32_t expect,
		      int64_t deadline_ns)
{
	struct timespec ts, *tp = NULL;
	if (deadline_ns >= 0) {
		ts.tv_sec = deadline_ns / 1000000000;
		ts.tv_nsec = deadline_ns % 1000000000;
		tp = &ts;
	}
	/* Shared futex (no FUTEX_PRIVATE_FLAG): the word is in shared memory.
	 * Little-endian: the low 32 bits live at the word's address. */
	long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, expect,
			 tp, NULL, FUTEX_BITSET_MATCH_ANY);
	if (r == 0 || errno == EAGAIN)
		return 0;
	return -errno;
}

void shval__futex_wake(_Atomic uint64_t *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL,
		0);
}

void shval__version_bump(_Atomic uint64_t *word, uint64_t add)
{
	/* seq_cst RMW: the writer's side of the Dekker pair (tag-waiters);
	 * also releases the change to readers and waiters that see the new
	 * version. */
	uint64_t old =
		atomic_fetch_add_explicit(word, add, memory_order_seq_cst);
	if (old & SHVAL__V_WAITERS) {
		/* Clearing races only with waiters setting the bit again, and
		 * they re-check the word before sleeping: relaxed is enough. */
		atomic_fetch_and_explicit(word, ~SHVAL__V_WAITERS,
					  memory_order_relaxed);
		shval__futex_wake(word);
	}
}

/* A full barrier after an atomic RMW the caller just did (the unlock's
 * exchange, or the RMW on the data): on x86-64 every locked instruction
 * already is one, elsewhere it takes a fence. */
static inline void mb_after_atomic(void)
{
#if defined(__x86_64__) || defined(__i386__)
	atomic_signal_fence(memory_order_seq_cst);
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* After a change of a locked or raw value (and the barrier): wake e's
 * waiters if the writer took their flag before the change or finds it set
 * now.  tag-waiters: this load pairs with the waiter's seq_cst fetch_or;
 * a flag found now stays set (see above).  The stop point is inside the
 * branch: a write that wakes nobody pays nothing for it. */
static inline void wake_flagged(shval__entry *e, bool took)
{
	if (took || atomic_load_explicit(&e->waiters, memory_order_relaxed)) {
		shval__stop_point("wake");
		shval__futex_wake(&e->version);
	}
}

void shval__wake_after_commit(shval_seg *seg, shval__entry *e, bool took)
{
	mb_after_atomic(); /* after the unlock */
	wake_flagged(e, took);
	shval__seg_notify(seg);
}

void shval__wake_after_change(shval_seg *seg, shval__entry *e,
			      bool bump_version)
{
	if (bump_version) {
		bool took = shval__waiters_take(e);
		/* seq_cst RMW: publishes the change, and the barrier */
		atomic_fetch_add_explicit(&e->version, SHVAL__V_ONE,
					  memory_order_seq_cst);
		wake_flagged(e, took);
	} else {
		mb_after_atomic(); /* after the RMW on the data */
		/* The data is not the futex word: clear, then move the version
		 * word, then wake, so that a waiter whose flag this clears
		 * finds its futex word moved. */
		if (atomic_load_explicit(&e->waiters, memory_order_relaxed)) {
			shval__stop_point("wake");
			atomic_exchange_explicit(&e->waiters, 0,
						 memory_order_relaxed);
			atomic_fetch_add_explicit(&e->version, SHVAL__V_ONE,
						  memory_order_seq_cst);
			shval__futex_wake(&e->version);
		}
	}
	shval__seg_notify(seg);
}

/* What a waiter compares with *seen. */
static uint64_t cur_version(shval *v)
{
	if (v->mode == SHVAL_ATOMIC)
		return shval__atomic_load(v->data, v->size);
	return atomic_load_explicit(&v->e->version, memory_order_seq_cst) &
	       ~(SHVAL__V_WAITERS | SHVAL__V_WRITING);
}

SHVAL_API uint64_t shval_value_version(shval *v)
{
	if (SHVAL__REMOTE(v))
		return shval__r_value_version(v);
	if (!v || shval__check(v) != 0)
		return 0;
	return cur_version(v);
}

/* The absolute deadline of a relative timeout: -1 forever (SHVAL_FOREVER,
 * or a timeout beyond the clock's range), -2 for a negative timeout (the
 * callers refuse it with -EINVAL). */
static int64_t deadline_of(int64_t timeout_ns)
{
	if (timeout_ns == SHVAL_FOREVER)
		return -1;
	if (timeout_ns < 0)
		return -2;
	int64_t now = (int64_t)shval__now_ns();
	if (timeout_ns > INT64_MAX - now)
		return -1;
	return now + timeout_ns;
}

static int bad_timeout(shval_seg *seg, const char *fn, int64_t timeout_ns)
{
	return shval__failf(seg, -EINVAL,
			    "%s: negative timeout %lld ns (SHVAL_FOREVER, -1, "
			    "waits forever)",
			    fn, (long long)timeout_ns);
}

SHVAL_API int shval_wait(shval *v, uint64_t *seen, int64_t timeout_ns)
{
	if (SHVAL__REMOTE(v))
		return seen ? shval__r_wait(v->seg, v, seen, timeout_ns)
			    : -EINVAL;
	if (!v || !seen)
		return -EINVAL;
	int64_t deadline = deadline_of(timeout_ns);
	if (deadline == -2)
		return bad_timeout(v->seg, "shval_wait", timeout_ns);
	unsigned budget = timeout_ns == 0 ? 1 : spin_budget;
	uint64_t t0 = 0;
	for (unsigned i = 0; i < budget; i++) {
		uint64_t c = cur_version(v);
		if (c != *seen) {
			int r = shval__check(v); /* removal also moves it */
			if (r)
				return r;
			*seen = c;
			if (i > 0)
				spin_budget = budget * 2 > SPIN_MAX
						      ? SPIN_MAX
						      : budget * 2;
			return 0;
		}
		cpu_relax();
		if ((i & 63) == 63) {
			uint64_t now = shval__now_ns();
			if (!t0)
				t0 = now;
			else if (now - t0 > SPIN_MAX_NS)
				break;
		}
	}
	spin_budget = budget / 2 < SPIN_MIN ? SPIN_MIN : budget / 2;
	if (v->seg->flags & SHVAL_RDONLY)
		return shval__failf(v->seg, SHVAL_ERDONLY,
				    "shval_wait needs a writable mapping (it "
				    "flags itself as a waiter)");
	for (;;) {
		int r = shval__check(v);
		if (r)
			return r;
		/* The clock before the re-check (tag-timeout): -ETIMEDOUT
		 * then means the version had not moved after the deadline,
		 * however long we were preempted on the way, so a change
		 * that completed before the deadline is never reported as a
		 * timeout (tests/test_wake.c tells a lost wake-up from a slow
		 * machine by that). */
		bool expired =
			deadline >= 0 && (int64_t)shval__now_ns() >= deadline;
		/* The futex word's value first: a change after this moves it
		 * (locked and raw: the version itself; atomic: a writer that
		 * sees our flag bumps it), so the kernel will not let us sleep
		 * through it. */
		uint64_t w = atomic_load_explicit(&v->e->version,
						  memory_order_seq_cst);
		atomic_fetch_or_explicit(&v->e->waiters, 1,
					 memory_order_seq_cst);
		uint64_t c = cur_version(v);
		if (c != *seen) {
			if ((r = shval__check(v)) != 0)
				return r;
			*seen = c;
			return 0;
		}
		if (expired)
			return -ETIMEDOUT;
		shval__stop_point("sleep");
		r = shval__futex_wait(&v->e->version, (uint32_t)w, deadline);
		if (r == -ETIMEDOUT || r == -EINTR)
			return r;
	}
}

SHVAL_API uint64_t shval_seg_version(shval_seg *seg)
{
	if (SHVAL__RSEG(seg))
		return shval__r_seg_version(seg);
	if (!seg)
		return 0;
	uint64_t w;
	if (seg->flags & SHVAL_RDONLY)
		w = atomic_load_explicit(&seg->hdr->version,
					 memory_order_seq_cst);
	else /* announce a watcher: value writers bump the segment version
	      * from now on (tag-waiters; sticky, see SHVAL__V_WATCHED) */
		w = atomic_fetch_or_explicit(&seg->hdr->version,
					     SHVAL__V_WATCHED,
					     memory_order_seq_cst);
	return w & ~(SHVAL__V_WAITERS | SHVAL__V_WATCHED);
}

SHVAL_API int shval_seg_wait(shval_seg *seg, uint64_t *seen, int64_t timeout_ns)
{
	if (SHVAL__RSEG(seg))
		return seen ? shval__r_wait(seg, NULL, seen, timeout_ns)
			    : -EINVAL;
	if (!seg || !seen)
		return -EINVAL;
	int64_t deadline = deadline_of(timeout_ns);
	if (deadline == -2)
		return bad_timeout(seg, "shval_seg_wait", timeout_ns);
	if (seg->flags & SHVAL_RDONLY)
		return shval__failf(seg, SHVAL_ERDONLY,
				    "shval_seg_wait needs a writable mapping");
	for (unsigned i = 0; i < SPIN_MIN; i++) {
		/* shval_seg_version() re-arms the watcher bit: a change made
		 * after we return, while the caller re-reads its values, moves
		 * the version again (tag-waiters). */
		uint64_t c = shval_seg_version(seg);
		if (c != *seen) {
			*seen = c;
			return 0;
		}
		cpu_relax();
	}
	for (;;) {
		/* The clock before the re-check, as in shval_wait
		 * (tag-timeout). */
		bool expired =
			deadline >= 0 && (int64_t)shval__now_ns() >= deadline;
		uint64_t w = atomic_fetch_or_explicit(&seg->hdr->version,
						      SHVAL__V_WAITERS |
							      SHVAL__V_WATCHED,
						      memory_order_seq_cst) |
			     SHVAL__V_WAITERS | SHVAL__V_WATCHED;
		uint64_t c = w & ~(SHVAL__V_WAITERS | SHVAL__V_WATCHED);
		if (c != *seen) {
			*seen = shval_seg_version(seg); /* re-arm, see above */
			return 0;
		}
		if (expired)
			return -ETIMEDOUT;
		int r = shval__futex_wait(&seg->hdr->version, (uint32_t)w,
					  deadline);
		if (r == -ETIMEDOUT || r == -EINTR)
			return r;
	}
}
