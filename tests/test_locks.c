/*
 * tests/test_locks.c (with test_lock_stale.c and test_lock_damage.c) —
 * regression tests for the lock and write-section
 * findings of the hostile review (the contract after the lock rewrite):
 *
 *   1. tid reuse: ownership must not be inferred from the mutex's owner
 *      field (a dead owner's tid taken by another thread, a stale owner
 *      field on a free lock);
 *   2. a file segment copied while a lock was held (the copy's lock word
 *      names a thread that is dead, or alive but holding the ORIGINAL's
 *      lock): lockers recover within seconds, verify finds and repairs it;
 *      the same for the segment lock;
 *   3. damaged mutex kind and lock words (priority-inherit / -protect
 *      bits, robust bit cleared, garbage): never abort, never hang;
 *      SHVAL_VERIFY_REPAIR re-initialises the lock;
 *   4. a WRITING bit stuck in a version word while the lock is free:
 *      readers return the last committed value, verify reports, repair
 *      clears; for a value without an undo copy readers return in bounded
 *      time;
 *   5. a stopped writer of a big value: readers (library and CLI) return
 *      in bounded time; `shval check` needs no writable open;
 *   and: sections that change nothing leave the version alone; nested
 *   sections commit once, at the outermost unlock.
 *
 * Damage is injected through the segment format (src/format.h: offsetof /
 * sizeof on its structs, SHVAL__V_* constants) on a mapping of our own,
 * never through hard-coded offsets.  Every step that could hang runs in a
 * forked child with alarm(); a hang is reported as a failure naming the
 * case and the step.
 */
#include "test.h"

#include <fcntl.h>
#include <pwd.h>
#include <shval.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "format.h"
#include "internal.h" /* shval__seg_lock(): the segment lock */
#include "locks_util.h"

static void nested_sections_mode(unsigned mode)
{
	shval_seg *s;
	shval *v;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	ASSERT_OK(shval_create(s, "v", "q", mode, NULL, 0, &v));
	ASSERT_OK(shval_set_i64(v, 10));
	struct reader rd = reader_start(v);

	/* sections without a change */
	uint64_t v0 = shval_value_version(v);
	ASSERT_OK(shval_lock(v));
	ASSERT_OK(shval_unlock(v));
	SOFT(shval_value_version(v) == v0, "empty lock/unlock moved the version");
	int64_t x;
	ASSERT_OK(shval_lock(v));
	ASSERT_OK(shval_get_i64(v, &x));
	ASSERT_EQ(x, 10);
	ASSERT_OK(shval_unlock(v));
	SOFT(shval_value_version(v) == v0, "a section that only read moved the version");
	if (mode == SHVAL_RLOCK) {
		ASSERT_OK(shval_lock(v));
		ASSERT_OK(shval_lock(v));
		ASSERT_OK(shval_unlock(v));
		ASSERT_OK(shval_unlock(v));
		SOFT(shval_value_version(v) == v0, "nested empty sections moved the version");
	}
	struct reply r = reader_get(&rd);
	SOFT(r.rc == 0 && r.x == 10 && r.version == v0,
	     "reader: rc %d x %lld version %llu (want 0, 10, %llu)", r.rc,
	     (long long)r.x, (unsigned long long)r.version,
	     (unsigned long long)v0);

	/* one change: how far the version moves */
	ASSERT_OK(shval_set_i64(v, 11));
	uint64_t v1 = shval_value_version(v);
	uint64_t one = v1 - v0;
	ASSERT(one != 0);

	/* nested: lock (lock) set unlock, add, data write; one commit at the
	 * outermost unlock, nothing visible before it */
	ASSERT_OK(shval_lock(v));
	if (mode == SHVAL_RLOCK) {
		ASSERT_OK(shval_lock(v));
		ASSERT_OK(shval_set_i64(v, 12));
		ASSERT_OK(shval_unlock(v));
	} else {
		ASSERT_OK(shval_set_i64(v, 12));
	}
	r = reader_get(&rd);
	SOFT(r.rc == 0 && r.x == 11 && r.version == v1,
	     "mid-section (after the inner unlock): reader saw rc %d x %lld "
	     "version %llu, want 11 at version %llu",
	     r.rc, (long long)r.x, (unsigned long long)r.version,
	     (unsigned long long)v1);
	int64_t res = 0;
	ASSERT_OK(shval_add_i64(v, 1, &res));
	ASSERT_EQ(res, 13);
	int64_t *p = shval_data(v);
	ASSERT(p);
	*p += 1; /* 14 */
	ASSERT_OK(shval_get_i64(v, &x)); /* the holder reads its own changes */
	ASSERT_EQ(x, 14);
	r = reader_get(&rd);
	SOFT(r.rc == 0 && r.x == 11 && r.version == v1,
	     "mid-section (after add_i64): reader saw rc %d x %lld version %llu, "
	     "want 11 at version %llu",
	     r.rc, (long long)r.x, (unsigned long long)r.version,
	     (unsigned long long)v1);
	ASSERT_OK(shval_unlock(v));
	uint64_t v2 = shval_value_version(v);
	SOFT(v2 - v1 == one,
	     "the nested section moved the version by %llu, one change is %llu",
	     (unsigned long long)(v2 - v1), (unsigned long long)one);
	r = reader_get(&rd);
	SOFT(r.rc == 0 && r.x == 14 && r.version == v2,
	     "after the outermost unlock: reader saw rc %d x %lld version %llu, "
	     "want 14 at %llu",
	     r.rc, (long long)r.x, (unsigned long long)r.version,
	     (unsigned long long)v2);
	/* and the lock is free for others */
	SOFT(shval_unlock(v) == SHVAL_ENOTOWNER, "unlock after the last unlock");
	reader_stop(&rd);
	shval_close(v);
	shval_seg_close(s);
}

TEST(nested_sections_commit_once_rlock)
{
	nested_sections_mode(SHVAL_RLOCK);
	soft_end();
}

TEST(nested_sections_commit_once_lock)
{
	nested_sections_mode(SHVAL_LOCK);
	soft_end();
}

/* ========================================================================
 * Finding 1: thread-id reuse.
 * ===================================================================== */

struct holder_arg {
	shval *v;
	int fd;
};
static void holder_a(void *arg)
{
	struct holder_arg *a = arg;
	alarm(60);
	CK_OK(shval_lock(a->v));
	CK_OK(shval_set_i64(a->v, 999));
	tell(a->fd);
	for (;;)
		pause();
}

struct adder_arg {
	shval *v;
	int64_t base;
};
static void adder_b(void *arg)
{
	struct adder_arg *a = arg;
	for (int i = 0; i < 1000; i++) {
		int64_t res = 0;
		step(10, "B's shval_add_i64 #%d", i + 1);
		/* even: the function (src/section.h's section; the first add
		 * meets A's tid in the mutex), odd: the header's inline add */
		int r = i % 2 ? shval_add_i64(a->v, 1, &res)
			      : (shval_add_i64)(a->v, 1, &res);
		CK(r == 0, "add #%d returned %d (%s)", i + 1, r, shval_strerror(r));
		CK(res == a->base + i + 1,
		   "add #%d: result %lld, want %lld (A's uncommitted 999 not rolled "
		   "back, or B took A's section for its own)",
		   i + 1, (long long)res, (long long)(a->base + i + 1));
	}
}

/* Root only: B gets A's pid (= A's main thread's tid, the id in the lock
 * word and the mutex's owner field) after A died holding the lock. */
TEST(tid_reuse_after_owner_death)
{
	if (geteuid() != 0)
		SKIP("needs root (writes /proc/sys/kernel/ns_last_pid)");
	int nl = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
	if (nl < 0)
		SKIP("cannot open /proc/sys/kernel/ns_last_pid: %s", strerror(errno));
	steps_init();
	shval_seg *s;
	shval *v;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	const int64_t base = 100;
	ASSERT_OK(shval_set_i64(v, base));

	int pf[2];
	ASSERT_EQ(pipe(pf), 0);
	struct holder_arg ha = { v, pf[1] };
	pid_t a = spawn(1, "A", holder_a, &ha);
	ASSERT(heard(pf[0], 10));
	kill_wait(a);

	struct adder_arg aa = { v, base };
	pid_t b = -1;
	for (int attempt = 0; attempt < 50 && b != a; attempt++) {
		char num[32];
		int n = snprintf(num, sizeof num, "%d", (int)a - 1);
		if (pwrite(nl, num, (size_t)n, 0) != n)
			SKIP("cannot write ns_last_pid: %s", strerror(errno));
		b = fork();
		ASSERT(b >= 0);
		if (b == 0) {
			if (getpid() != a)
				_exit(99);
			g_slot = 2;
			g_label = "B (A's pid)";
			adder_b(&aa);
			_exit(0);
		}
		if (b != a) {
			waitpid(b, NULL, 0);
			usleep(1000);
		}
	}
	close(nl);
	if (b != a)
		SKIP("could not get pid %d again (other processes took it)", (int)a);
	printf("B runs as pid %d, A's pid\n", (int)b);
	SOFT(reap(b, 2, "B (A's pid)", 40), "B's 1000 adds");

	int64_t x = 0;
	step(10, "parent's shval_get_i64 after B");
	int r = shval_get_i64(v, &x);
	alarm(0);
	SOFT(r == 0 && x == base + 1000,
	     "after B: get rc %d value %lld, want %lld (A's 999 rolled back, B's "
	     "1000 adds committed)",
	     r, (long long)x, (long long)(base + 1000));
	SOFT(value_elsewhere(v, base + 1000, "reader process after B"),
	     "another process reads base + 1000");
	SOFT(trylock_elsewhere(v, 0, SHVAL_EOWNERDEAD, "trylock #1 after B"),
	     "the lock is free after B (0 or EOWNERDEAD)");
	SOFT(trylock_elsewhere(v, 0, 1, "trylock #2 after B"),
	     "the lock is free after B (then 0)");
	SOFT(value_elsewhere(v, base + 1000, "reader process after the trylocks"),
	     "the trylocks did not roll B's adds back");
	shval_close(v);
	shval_seg_close(s);
	soft_end();
}

/* A segment whose every handle is closed while this thread still holds
 * one of its locks (taken with shval_lock: on glibc's robust list, which
 * links the mutex through the mapping it was locked with): the mapping
 * stays until the unlock, made through another mapping of the file, and
 * goes then; the thread's later lock operations on other segments write
 * nowhere they should not (src/lock.c, MAPPING KEPT).  The Python binding
 * met it: multiprocessing's Pool, torn down, takes its queue's read lock
 * and never releases it; the next lock of the thread wrote into the
 * unmapped (or since reused) mapping. */
static bool mapped(const void *p)
{
	/* msync fails with ENOMEM on an address no mapping covers */
	return msync((void *)((uintptr_t)p & ~(uintptr_t)4095), 4096,
		     MS_ASYNC) == 0;
}

TEST(segment_closed_while_its_lock_is_held_stays_mapped)
{
	char name[64];
	snprintf(name, sizeof name, "/shval-test-keepmap-%d", (int)getpid());
	(void)shval_seg_unlink(name);
	shval_seg *s;
	shval *v;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE, NULL, &s));
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_LOCK, NULL, 0, &v));
	ASSERT_OK(shval_set_i64(v, 1));
	const void *old = shval_data(v);
	ASSERT(old && mapped(old));
	ASSERT_OK(shval_lock(v));
	ASSERT_OK(shval_set_i64(v, 2)); /* staged: committed at the unlock */
	shval_close(v);
	shval_seg_close(s);
	ASSERT(mapped(old)); /* kept: the lock is held through it */

	/* Other segments' locks taken and released meanwhile (glibc links
	 * each new mutex to the held one), new mappings placed where they
	 * fit: nothing of theirs is written by the list. */
	for (int i = 0; i < 8; i++) {
		shval_seg *t;
		shval *w;
		ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &t));
		ASSERT_OK(shval_create(t, "w", "q", SHVAL_RLOCK, NULL, 0, &w));
		ASSERT_OK(shval_lock(w));
		ASSERT_OK(shval_set_i64(w, 100 + i));
		ASSERT_OK(shval_unlock(w));
		int64_t x;
		ASSERT_OK(shval_get_i64(w, &x));
		ASSERT_EQ(x, 100 + i);
		ASSERT_OK(shval_seg_verify(t, 0, NULL, NULL, NULL));
		shval_close(w);
		shval_seg_close(t);
	}

	/* The unlock through a second mapping of the file commits the
	 * section and lets the first mapping go. */
	shval_seg *s2;
	shval *v2;
	ASSERT_OK(shval_seg_open(name, 0, NULL, &s2));
	ASSERT_OK(shval_find(s2, "v", "q", &v2));
	ASSERT(shval_data(v2) != old);
	ASSERT_OK(shval_unlock(v2));
	ASSERT(!mapped(old));
	int64_t x;
	ASSERT_OK(shval_get_i64(v2, &x));
	ASSERT_EQ(x, 2);
	ASSERT_OK(shval_lock(v2)); /* and it is free again */
	ASSERT_OK(shval_unlock(v2));
	shval_close(v2);
	shval_seg_close(s2);
	ASSERT_OK(shval_seg_unlink(name));
}

/* A shared lock's section whose changes are made through handles of one
 * mapping of the file (and of another, for the same value) and whose
 * unlock comes through the other (the held list is keyed by the file and
 * the offset, so that is allowed): the unlock commits them all, the
 * second change of a value builds on the first, and nothing is lost when
 * the first mapping's handles are closed before the unlock (src/lock.c,
 * struct dirty).  Before: the unlock matched the changes by the lock's
 * address in its own mapping, found none, and x read 0. */
TEST(shared_lock_section_committed_through_another_mapping)
{
	char name[64];
	snprintf(name, sizeof name, "/shval-test-shared2map-%d", (int)getpid());
	(void)shval_seg_unlink(name);
	shval_seg *a, *b;
	shval *la, *xa, *ya, *lb, *xb;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE, NULL, &a));
	ASSERT_OK(shval_lock_create(a, "L", SHVAL_RLOCK, &la));
	ASSERT_OK(shval_create_guarded(a, "x", "q", la, NULL, 0, &xa));
	ASSERT_OK(shval_create_guarded(a, "y", "q", la, NULL, 0, &ya));
	ASSERT_OK(shval_seg_open(name, 0, NULL, &b));
	ASSERT_OK(shval_find(b, "L", NULL, &lb));
	ASSERT_OK(shval_find(b, "x", "q", &xb));
	uint64_t v0 = shval_value_version(xb);

	ASSERT_OK(shval_lock(la));
	ASSERT_OK(shval_set_i64(xa, 6));
	ASSERT_OK(shval_add_i64(xb, 1, NULL)); /* the same entry, mapping B */
	ASSERT_OK(shval_set_i64(ya, 8));
	shval_close(xa);
	shval_close(ya);
	shval_close(la);
	shval_seg_close(a); /* mapping A: only the held lock keeps it now */
	ASSERT_OK(shval_unlock(lb));

	int64_t x = 0;
	ASSERT_OK(shval_get_i64(xb, &x));
	ASSERT_EQ(x, 7);
	ASSERT(shval_value_version(xb) != v0); /* committed: waiters see it */
	/* the next section finds nothing to roll back: both changes stay */
	ASSERT_OK(shval_lock(lb));
	ASSERT_OK(shval_unlock(lb));
	shval *yb;
	ASSERT_OK(shval_find(b, "y", "q", &yb));
	ASSERT_OK(shval_get_i64(xb, &x));
	ASSERT_EQ(x, 7);
	ASSERT_OK(shval_get_i64(yb, &x));
	ASSERT_EQ(x, 8);
	ASSERT_OK(shval_seg_verify(b, 0, NULL, NULL, NULL));
	shval_close(yb);
	shval_close(xb);
	shval_close(lb);
	shval_seg_close(b);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST_MAIN()
