/*
 * tests/test_wake_points.c — wake-ups at exact interleavings.
 *
 * tests/test_wake.c throws random timing at the wait protocol; this file
 * holds processes at named instructions (src/testpoint.c: a process with
 * SHVAL_TEST_STOP_AT=step stops itself with SIGSTOP the first time it gets
 * there) and lets them go on in a chosen order, so that one schedule is
 * run every time instead of by chance.
 *
 * preempted_waker_* (tag-waiters, src/wait.c): a writer A whose change is
 * visible but who has not yet looked for waiters is held ("wake"); a
 * waiter W sees A's change, flags itself for the next one, finds nothing
 * new and is held just before it sleeps ("sleep"); A goes on and ends; W
 * goes on and falls asleep; then the parent writes again.  W must wake.
 * A library whose writers clear the waiters' flag after their change
 * (A clears W's flag, and its FUTEX_WAKE comes before W sleeps) leaves W
 * asleep: the parent's write finds no flag.  Before A runs, the parent
 * leaves a flag set (a wait that timed out), so that A takes its wake-up
 * path whatever the library does with flags.
 *
 * A lost wake-up is told from a slow machine as in test_wake.c: W's wait
 * has a 30 s timeout, and the library reports -ETIMEDOUT only if the
 * version had not moved after the deadline (src/wait.c, tag-timeout); so
 * -ETIMEDOUT while the parent's write had returned before W's deadline is
 * a lost wake-up, however loaded the machine.  If the parent's write came
 * after W's deadline (a machine that slow), the case says so and skips.
 *
 * Every write path that commits a change is run: the header's inline
 * write, the function, a section of the user's on the value's own lock, a
 * section on a shared lock, a raw value's set and touch, an atomic value's
 * set and inline add.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shval.h>

#include "test.h"
#include "segkind.h"

#define W_TIMEOUT_NS (30 * SHVAL_SEC)

enum path {
	P_INLINE,   /* shval_write: the header's inline section (locked) */
	P_FUNC,     /* (shval_write): the function (locked) */
	P_SECTION,  /* shval_lock(v), store through shval_data, unlock */
	P_GUARDED,  /* shval_set_i64 inside a shared lock's section */
	P_SET,      /* shval_set_i64 (raw, atomic) */
	P_TOUCH,    /* store through shval_data, shval_touch (raw) */
	P_ADD,      /* shval_add_i64: the header's inline atomic add */
};

struct report {
	_Atomic int64_t deadline; /* W: CLOCK_MONOTONIC, before its wait */
	_Atomic int rc;           /* W: what shval_wait returned */
	_Atomic int64_t got;      /* W: the value it then read */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void put(shval *v, shval *lock, enum path p, int64_t x)
{
	switch (p) {
	case P_INLINE:
		ASSERT_OK(shval_write(v, &x, sizeof x));
		break;
	case P_FUNC:
		ASSERT_OK((shval_write)(v, &x, sizeof x));
		break;
	case P_SECTION:
		ASSERT_OK(shval_lock(v));
		*(int64_t *)shval_data(v) = x;
		ASSERT_OK(shval_unlock(v));
		break;
	case P_GUARDED:
		ASSERT_OK(shval_lock(lock));
		ASSERT_OK(shval_set_i64(v, x));
		ASSERT_OK(shval_unlock(lock));
		break;
	case P_SET:
		ASSERT_OK(shval_set_i64(v, x));
		break;
	case P_TOUCH:
		*(volatile int64_t *)shval_data(v) = x;
		ASSERT_OK(shval_touch(v));
		break;
	case P_ADD: {
		int64_t old;
		ASSERT_OK(shval_get_i64(v, &old));
		ASSERT_OK(shval_add_i64(v, x - old, NULL));
		break;
	}
	}
}

static int64_t get(shval *v, enum path p)
{
	int64_t x;
	if (p == P_TOUCH)
		return *(volatile int64_t *)shval_data(v);
	ASSERT_OK(shval_get_i64(v, &x));
	return x;
}

/* Wait until pid stops (SIGSTOP at its stop point); fails if it ended. */
static void wait_stopped(pid_t pid, const char *who)
{
	int st;
	ASSERT_EQ(waitpid(pid, &st, WUNTRACED), pid);
	if (!WIFSTOPPED(st))
		FAIL("%s ended (status 0x%x) instead of stopping at its stop "
		     "point",
		     who, st);
}

/* Until pid sleeps in the kernel's futex wait (its wchan), or ended.
 * Without a readable wchan (some kernels hide it): a while, and the case
 * may then not hit the window (it still cannot pass wrongly: see below). */
static void wait_asleep(pid_t pid)
{
	char path[64], buf[128];
	snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
	for (int i = 0; i < 60000; i++) {
		FILE *f = fopen(path, "r");
		if (!f)
			return; /* ended (reaped later) */
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = 0;
		if (strstr(buf, "futex"))
			return;
		if (i == 100 && (n == 0 || strcmp(buf, "0") == 0)) {
			fprintf(stderr, "no wchan in /proc: waiting 1 s for "
					"the waiter to sleep\n");
			usleep(1000000);
			return;
		}
		usleep(1000);
	}
	FAIL("the waiter did not fall asleep in 60 s");
}

static void preempted_waker(const char *type, unsigned mode, enum path p)
{
	shval_seg *seg = test_seg_new();
	shval *v, *lock = NULL;
	if (p == P_GUARDED) {
		ASSERT_OK(shval_lock_create(seg, "L", 0, &lock));
		ASSERT_OK(shval_create_guarded(seg, "v", type, lock, NULL, 0, &v));
	} else {
		ASSERT_OK(shval_create(seg, "v", type, mode, NULL, 0, &v));
	}
	struct report *rep = mmap(NULL, sizeof *rep, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(rep != MAP_FAILED);

	/* A flag left set by a waiter that timed out. */
	uint64_t seen = shval_value_version(v);
	ASSERT_ERR(shval_wait(v, &seen, SHVAL_SEC / 1000), -ETIMEDOUT);

	/* A: changes the value, stops before it looks for waiters. */
	pid_t a = fork();
	ASSERT(a >= 0);
	if (a == 0) {
		setenv("SHVAL_TEST_STOP_AT", "wake", 1);
		put(v, lock, p, 1);
		_exit(0);
	}
	wait_stopped(a, "the writer");

	/* W: sees A's change, waits for the next; stops before it sleeps. */
	pid_t w = fork();
	ASSERT(w >= 0);
	if (w == 0) {
		setenv("SHVAL_TEST_STOP_AT", "sleep", 1);
		if (get(v, p) != 1)
			_exit(3); /* A's change not visible: the case is wrong */
		uint64_t s = shval_value_version(v);
		atomic_store(&rep->deadline, now_ns() + W_TIMEOUT_NS);
		int rc = shval_wait(v, &s, W_TIMEOUT_NS);
		atomic_store(&rep->got, get(v, p));
		atomic_store(&rep->rc, rc);
		_exit(0);
	}
	wait_stopped(w, "the waiter");

	ASSERT_EQ(kill(a, SIGCONT), 0); /* A looks for waiters, ends */
	test_wait_ok(a);
	ASSERT_EQ(kill(w, SIGCONT), 0); /* W falls asleep */
	wait_asleep(w);

	put(v, lock, p, 2);
	int64_t written = now_ns();
	test_wait_ok(w);
	int rc = atomic_load(&rep->rc);
	if (rc == -ETIMEDOUT && written >= atomic_load(&rep->deadline))
		SKIP("the parent's write came after the waiter's %d s "
		     "deadline: a machine this slow cannot tell",
		     (int)(W_TIMEOUT_NS / SHVAL_SEC));
	if (rc != 0)
		FAIL("lost wake-up: the waiter's wait returned %d (%s), though "
		     "the value changed %.1f s before its deadline",
		     rc, shval_strerror(rc),
		     (double)(atomic_load(&rep->deadline) - written) / 1e9);
	ASSERT_EQ(atomic_load(&rep->got), 2);

	munmap(rep, sizeof *rep);
	shval_close(v);
	if (lock)
		shval_close(lock);
	test_seg_done(seg);
}

TEST(preempted_waker_locked_inline)
{
	preempted_waker("q", SHVAL_RLOCK, P_INLINE);
}

TEST(preempted_waker_locked_function)
{
	preempted_waker("q", SHVAL_RLOCK, P_FUNC);
}

TEST(preempted_waker_locked_section)
{
	preempted_waker("q", SHVAL_LOCK, P_SECTION);
}

TEST(preempted_waker_guarded)
{
	preempted_waker("q", 0, P_GUARDED);
}

TEST(preempted_waker_raw)
{
	preempted_waker("q", SHVAL_RAW, P_SET);
	preempted_waker("q", SHVAL_RAW, P_TOUCH);
}

TEST(preempted_waker_atomic)
{
	preempted_waker("q", SHVAL_ATOMIC, P_SET);
	preempted_waker("q", SHVAL_ATOMIC, P_ADD);
}

TEST_MAIN()
