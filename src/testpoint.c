/*
 * src/testpoint.c — test-only crash and stop points (RELIABILITY.md).
 *
 * A test that must catch a process at one exact instruction (a death
 * half-way through a commit, a writer preempted between its change and its
 * wake-up) cannot wait for chance.  So the library names a few steps and
 * acts on them when the environment asks:
 *
 *   SHVAL_TEST_CRASH_AT=step  the process kills itself (SIGKILL) there;
 *   SHVAL_TEST_STOP_AT=step   the process stops itself (SIGSTOP) there, the
 *                             first time only, so that the test can let
 *                             other processes act and then SIGCONT it.
 *
 * Crash steps (lock.c):
 *   "commit"  a shared lock's multi-value commit, after the first value is
 *             committed and before the others (must roll forward)
 *   "change"  a shared lock's first change of a section, after WRITING is
 *             set and before the data changes (must roll back)
 * Stop steps (wait.c, tag-waiters):
 *   "wake"    a writer whose change is visible and who found a waiter
 *             to wake (a flag it took before the change or sees now),
 *             before it wakes it (atomic values: before it clears the
 *             flag); a write that wakes nobody never gets there
 *   "sleep"   a waiter that flagged itself and found no change, before it
 *             goes to sleep in the kernel
 *
 * Each variable is read once per process (again in a fork's child, which
 * a test sets it in), at the first check; a check then costs two loads.
 * Every step is off the fast paths (a shared lock's section, a wake-up or
 * a sleep that make a system call anyway).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct env_cache {
	_Atomic unsigned gen; /* shval__fork_gen when read; 0: never */
	const char *_Atomic at;
};

static const char *env_read(struct env_cache *c, const char *var)
{
	unsigned gen =
		atomic_load_explicit(&shval__fork_gen, memory_order_relaxed);
	if (atomic_load_explicit(&c->gen, memory_order_acquire) == gen)
		return atomic_load_explicit(&c->at, memory_order_relaxed);
	const char *at = getenv(var);
	atomic_store_explicit(&c->at, at, memory_order_relaxed);
	atomic_store_explicit(&c->gen, gen, memory_order_release);
	return at;
}

void shval__crash_point(const char *step)
{
	static struct env_cache crash_at;
	const char *at = env_read(&crash_at, "SHVAL_TEST_CRASH_AT");
	if (at && strcmp(at, step) == 0)
		kill(getpid(), SIGKILL);
}

void shval__stop_point(const char *step)
{
	static struct env_cache stop_at;
	static _Atomic unsigned stopped_gen; /* once per process */
	const char *at = env_read(&stop_at, "SHVAL_TEST_STOP_AT");
	if (!at || strcmp(at, step) != 0)
		return;
	unsigned gen =
		atomic_load_explicit(&shval__fork_gen, memory_order_relaxed);
	if (atomic_exchange_explicit(&stopped_gen, gen, memory_order_relaxed) !=
	    gen)
		kill(getpid(), SIGSTOP);
}
