/*
 * tests/test_commit.c — the commit promises, each caught every time (not
 * by a lucky interleaving):
 *   - a reader sees the last committed state while a section is open in
 *     another process (the undo copy), then the new state after it;
 *   - all or nothing under a shared lock: an owner killed in the middle of
 *     a multi-value commit is rolled forward, one killed before it commits
 *     is rolled back (test-only crash points, SHVAL_TEST_CRASH_AT);
 *   - atomic adds from processes that certainly overlap are never lost.
 */
#include "test.h"

#include <shval.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

static char segname[64];

static shval_seg *new_seg(const char *tag)
{
	snprintf(segname, sizeof segname, "/shvaltest.%d.%s", (int)getpid(), tag);
	shval_seg_unlink(segname);
	shval_seg *s;
	ASSERT_OK(shval_seg_open(segname, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	return s;
}

static int pipe_wait(int fd)
{
	char c;
	return read(fd, &c, 1) == 1 ? 0 : -1;
}

/* A section stays open (half of the array changed in place) in a child
 * process while the parent reads: the parent must see the old state, whole,
 * and the version unchanged; after the child's unlock, the new state. */
TEST(reader_sees_committed_state_during_section)
{
	shval_seg *s = new_seg("undo");
	shval *v;
	int64_t init[8] = { 0 };
	ASSERT_OK(shval_create(s, "a", "8q", 0, init, sizeof init, &v));
	uint64_t ver0 = shval_value_version(v);
	int up[2], down[2];
	ASSERT(pipe(up) == 0 && pipe(down) == 0);
	pid_t p = fork();
	if (p == 0) {
		alarm(20);
		ASSERT_OK(shval_lock(v));
		int64_t *d = shval_data(v);
		for (int i = 0; i < 4; i++)
			d[i] = 1; /* half of the change, uncommitted */
		ASSERT(write(up[1], "x", 1) == 1);
		ASSERT(pipe_wait(down[0]) == 0);
		for (int i = 4; i < 8; i++)
			d[i] = 1;
		ASSERT_OK(shval_unlock(v));
		_exit(0);
	}
	ASSERT(pipe_wait(up[0]) == 0);
	for (int round = 0; round < 1000; round++) {
		int64_t got[8];
		ASSERT_OK(shval_read(v, got, sizeof got));
		for (int i = 0; i < 8; i++)
			if (got[i] != 0)
				FAIL("round %d: element %d is %lld while the section is "
				     "open: a reader saw uncommitted data",
				     round, i, (long long)got[i]);
		int64_t x;
		ASSERT_OK(shval_array_get(v, 2, 1, &x));
		ASSERT_EQ(x, 0);
	}
	ASSERT_EQ(shval_value_version(v), ver0);
	ASSERT(write(down[1], "x", 1) == 1);
	int st;
	ASSERT(waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	int64_t got[8];
	ASSERT_OK(shval_read(v, got, sizeof got));
	for (int i = 0; i < 8; i++)
		ASSERT_EQ(got[i], 1);
	ASSERT(shval_value_version(v) != ver0);
	shval_close(v);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

/* One section changing a and b to 2 under their shared lock; the crash
 * point in the environment ends it (SIGKILL). */
static int child_section(const char *seg)
{
	shval_seg *s;
	shval *lk, *a, *b;
	if (shval_seg_open(seg, 0, NULL, &s) || shval_find(s, "L", NULL, &lk) ||
	    shval_find(s, "a", NULL, &a) || shval_find(s, "b", NULL, &b))
		return 3;
	if (shval_lock(lk) || shval_set_i64(a, 2) || shval_set_i64(b, 2))
		return 4;
	shval_unlock(lk);
	return 5; /* the crash point should have killed us */
}

/* A child changes a and b under one shared lock, with the environment
 * telling it to die at step `at`; returns after it died of SIGKILL. */
static void die_in_section(const char *at)
{
	pid_t p = fork();
	if (p == 0) {
		alarm(20);
		setenv("SHVAL_TEST_CRASH_AT", at, 1);
		_exit(child_section(segname));
	}
	int st;
	ASSERT(waitpid(p, &st, 0) == p);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		FAIL("the child was to die at crash point \"%s\" (status 0x%x)", at,
		     st);
}

static void shared_pair(shval_seg *s, shval **lk, shval **a, shval **b)
{
	ASSERT_OK(shval_lock_create(s, "L", SHVAL_RLOCK, lk));
	int64_t one = 1;
	ASSERT_OK(shval_create_guarded(s, "a", "q", *lk, &one, sizeof one, a));
	ASSERT_OK(shval_create_guarded(s, "b", "q", *lk, &one, sizeof one, b));
}

static void check_pair(shval *lk, shval *a, shval *b, int64_t want)
{
	int64_t x, y;
	/* (Lock-free readers see each value whole, not the pair as one
	 * snapshot: a set of values is consistent under its lock.) */
	ASSERT_ERR(shval_lock(lk), SHVAL_EOWNERDEAD);
	ASSERT_OK(shval_get_i64(a, &x));
	ASSERT_OK(shval_get_i64(b, &y));
	ASSERT_OK(shval_unlock(lk));
	if (x != want || y != want)
		FAIL("after recovery a=%lld b=%lld, want both %lld (all or "
		     "nothing)",
		     (long long)x, (long long)y, (long long)want);
}

TEST(shared_lock_death_mid_commit_rolls_forward)
{
	shval_seg *s = new_seg("fwd");
	shval *lk, *a, *b;
	shared_pair(s, &lk, &a, &b);
	die_in_section("commit");
	check_pair(lk, a, b, 2);
	shval_close(a);
	shval_close(b);
	shval_close(lk);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

TEST(shared_lock_death_before_commit_rolls_back)
{
	shval_seg *s = new_seg("back");
	shval *lk, *a, *b;
	shared_pair(s, &lk, &a, &b);
	die_in_section("change");
	check_pair(lk, a, b, 1);
	shval_close(a);
	shval_close(b);
	shval_close(lk);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

/* Two processes add to one atomic value for 0.3 s each after a common
 * start: they overlap for certain (each counts the other's adds it saw
 * between two of its own), and no add is lost. */
TEST(atomic_adds_exact_when_processes_overlap)
{
	shval_seg *s = new_seg("atomic");
	shval *v;
	ASSERT_OK(shval_create(s, "n", "q", SHVAL_ATOMIC, NULL, 0, &v));
	struct shared {
		_Atomic int ready, go;
		uint64_t ops[2], interleaved[2];
	} *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(sh != MAP_FAILED);
	memset(sh, 0, sizeof *sh);
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		if (kids[k] == 0) {
			alarm(20);
			atomic_fetch_add(&sh->ready, 1);
			while (!atomic_load(&sh->go)) {}
			struct timespec t0, t;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			uint64_t n = 0, inter = 0;
			int64_t last = 0, now;
			do {
				for (int i = 0; i < 256; i++) {
					ASSERT_OK(shval_add_i64(v, 1, &now));
					if (n && now != last + 1)
						inter++; /* the other added in between */
					last = now;
					n++;
				}
				clock_gettime(CLOCK_MONOTONIC, &t);
			} while ((t.tv_sec - t0.tv_sec) * 1000000000ll +
					 (t.tv_nsec - t0.tv_nsec) <
				 300000000ll);
			sh->ops[k] = n;
			sh->interleaved[k] = inter;
			_exit(0);
		}
	}
	while (atomic_load(&sh->ready) < 2) {}
	atomic_store(&sh->go, 1);
	for (int k = 0; k < 2; k++) {
		int st;
		ASSERT(waitpid(kids[k], &st, 0) == kids[k] && WIFEXITED(st) &&
		       WEXITSTATUS(st) == 0);
	}
	ASSERT(sh->interleaved[0] + sh->interleaved[1] > 0);
	int64_t total;
	ASSERT_OK(shval_get_i64(v, &total));
	if ((uint64_t)total != sh->ops[0] + sh->ops[1])
		FAIL("lost %lld of %llu atomic adds",
		     (long long)(sh->ops[0] + sh->ops[1]) - (long long)total,
		     (unsigned long long)(sh->ops[0] + sh->ops[1]));
	shval_close(v);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

TEST_MAIN()
