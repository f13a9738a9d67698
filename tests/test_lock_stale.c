/*
 * tests/test_lock_stale.c — stale lock owners (findings 1 and 2 of the
 * list in test_locks.c): owner fields a dead owner could leave behind, a
 * file segment copied while a value lock or the segment lock was held.
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

/* The stale-owner cases (any user): the value's lock block gets an owner
 * field (and lock word) that a dead owner could leave behind; then the
 * value must work as a lock: mutual exclusion, commit, visibility. */
enum stale { STALE_SELF, STALE_DEAD, DIED_SELF };

struct stale_arg {
	shval *v;
	shval_seg *s;
	enum stale how;
};

static void inject_stale(shval *v, shval_seg *s, enum stale how, pid_t tid)
{
	if (how == DIED_SELF) {
		/* a real owner death: a child takes the lock and exits holding
		 * it (the kernel sets OWNER_DIED in the lock word, the owner
		 * field keeps the child's tid) */
		pid_t c = fork();
		CK(c >= 0, "fork");
		if (c == 0) {
			alarm(10);
			_exit(shval_lock(v) == 0 ? 0 : 1);
		}
		int st;
		CK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		   "the child that dies holding the lock could not take it "
		   "(status 0x%x)",
		   st);
	}
	struct map m = map_fd(shval_seg_fd(s));
	shval__lockblk *lk = lock_of(&m, "v");
	if (how == DIED_SELF) {
		/* ... and that tid is now ours (reused) */
		CK(__atomic_load_n(&lk->mutex.__data.__lock, __ATOMIC_SEQ_CST) ==
			   (int)FUTEX_OWNER_DIED_,
		   "lock word 0x%x after the owner's death",
		   (unsigned)lk->mutex.__data.__lock);
		__atomic_store_n(&lk->mutex.__data.__owner, tid, __ATOMIC_SEQ_CST);
	} else {
		set_lock_word(&lk->mutex, 0, tid); /* free, stale owner field */
	}
	unmap(&m);
}

static void stale_body(void *arg)
{
	struct stale_arg *a = arg;
	shval *v = a->v;
	pid_t tid = a->how == STALE_DEAD ? dead_pid() : my_tid();
	inject_stale(v, a->s, a->how, tid);

	/* shval_lock first: it must really take the mutex */
	step(10, "shval_lock with a stale owner field (tid %d)", (int)tid);
	int r = shval_lock(v);
	CK(r == 0 || (a->how == DIED_SELF && r == SHVAL_EOWNERDEAD),
	   "shval_lock returned %d (%s)", r, shval_strerror(r));
	step(20, "another process's trylock while we hold the lock");
	CK(trylock_elsewhere(v, -EBUSY, 1, "trylock during our section"),
	   "another process got the lock while we hold it (mutual exclusion)");
	step(10, "shval_set_i64 inside the section");
	CK_OK(shval_set_i64(v, 7));
	step(20, "reader in another process during the section");
	CK(value_elsewhere(v, 5, "reader during the section"),
	   "the uncommitted 7 was visible before the unlock");
	step(10, "shval_unlock");
	CK_OK(shval_unlock(v));
	step(20, "reader in another process after the unlock");
	CK(value_elsewhere(v, 7, "reader after the unlock"),
	   "the committed 7 is not visible");
	step(20, "another process's trylock after the unlock");
	CK(trylock_elsewhere(v, 0, 1, "trylock after the unlock"),
	   "the lock is not free after our unlock");

	/* again, now through a library call that takes the lock itself: the
	 * function (src/section.h's section), then the header's inline add,
	 * which takes the lock on a path of its own */
	for (int inl = 0; inl < 2; inl++) {
		inject_stale(v, a->s, a->how, tid);
		int64_t res = 0;
		step(10, "shval_add_i64 (%s) with a stale owner field",
		     inl ? "inline" : "function");
		if (inl)
			CK_OK(shval_add_i64(v, 1, &res));
		else
			CK_OK((shval_add_i64)(v, 1, &res));
		CK(res == 8 + inl, "add result %lld, want %d", (long long)res,
		   8 + inl);
		step(20, "reader in another process after the add");
		CK(value_elsewhere(v, 8 + inl, "reader after the add"),
		   "the add is not visible");
		step(20, "another process's trylock after the add");
		CK(trylock_elsewhere(v, 0, 1, "trylock after the add"),
		   "the lock is not free after the add");
	}
	step(10, "shval_lock/unlock again");
	CK_OK(shval_lock(v));
	CK_OK(shval_unlock(v));
}

static void stale_case(enum stale how, const char *label)
{
	steps_init();
	shval_seg *s;
	shval *v;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_set_i64(v, 5));
	struct stale_arg a = { v, s, how };
	/* the body runs in a child so that its own forks have a known state;
	 * its steps are bounded by alarms */
	pid_t p = spawn(1, label, stale_body, &a);
	if (!reap(p, 1, label, 60))
		FAIL("%s", label);
	shval_close(v);
	shval_seg_close(s);
}

TEST(stale_owner_field_is_own_tid)
{
	stale_case(STALE_SELF, "stale owner field = own tid, lock free");
}

TEST(stale_owner_field_is_dead_tid)
{
	stale_case(STALE_DEAD, "stale owner field = dead tid, lock free");
}

TEST(owner_died_with_own_tid_in_owner_field)
{
	stale_case(DIED_SELF, "OWNER_DIED lock word, owner field = own tid");
}

/* ========================================================================
 * Finding 2: a file segment copied while a lock was held.
 * ===================================================================== */

struct fholder_arg {
	const char *seg;  /* "file:PATH" */
	bool seg_lock;    /* hold the segment lock instead of the value's */
	int fd;
};

static void file_holder(void *arg)
{
	struct fholder_arg *a = arg;
	alarm(90);
	shval_seg *s;
	shval *v;
	CK_OK(shval_seg_open(a->seg, SHVAL_CREATE, NULL, &s));
	CK_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	CK_OK(shval_set_i64(v, 1));
	if (a->seg_lock) {
		CK_OK(shval__seg_lock(s));
	} else {
		CK_OK(shval_lock(v));
		CK_OK(shval_set_i64(v, 2)); /* uncommitted */
	}
	tell(a->fd);
	for (;;)
		pause();
}

/* Start the holder on PATH; copy PATH to each of copies while it holds
 * the lock.  Returns the holder's pid (alive, holding). */
static pid_t hold_and_copy(const char *path, bool seg_lock,
			   const char *const *copies, int ncopies)
{
	static char segname[300];
	snprintf(segname, sizeof segname, "file:%s", path);
	int pf[2];
	ASSERT_EQ(pipe(pf), 0);
	static struct fholder_arg a; /* static: the child reads it (no leak) */
	a = (struct fholder_arg){ segname, seg_lock, pf[1] };
	pid_t h = spawn(1, "holder A", file_holder, &a);
	if (!heard(pf[0], 15)) {
		reap(h, 1, "holder A", 1);
		FAIL("the holder did not get ready");
	}
	for (int i = 0; i < ncopies; i++)
		copy_file(path, copies[i]);
	close(pf[0]);
	close(pf[1]);
	return h;
}

struct copy_arg {
	const char *path;
	bool owner_dead;
};

static void open_copy(const char *path, unsigned flags, shval_seg **s)
{
	char name[300];
	snprintf(name, sizeof name, "file:%s", path);
	step(10, "open %s", name);
	CK_OK(shval_seg_open(name, flags, NULL, s));
}

static void copy_value_lock_dead(void *arg)
{
	struct copy_arg *a = arg;
	shval_seg *s;
	shval *v;
	open_copy(a->path, 0, &s);
	CK_OK(shval_find(s, "v", NULL, &v));
	uint64_t t0 = shval__now_ns();
	step(10, "shval_lock on the copy (its lock word names dead A)");
	int r = shval_lock(v);
	CK(r == SHVAL_EOWNERDEAD,
	   "shval_lock returned %d (%s) after %.1f s, want SHVAL_EOWNERDEAD (%s)",
	   r, shval_strerror(r), (shval__now_ns() - t0) / 1e9, shval_errmsg(s));
	int64_t x = 0;
	step(10, "shval_get_i64 under the recovered lock");
	CK_OK(shval_get_i64(v, &x));
	CK(x == 1, "value %lld after recovery, want 1 (A's 2 rolled back)",
	   (long long)x);
	step(10, "shval_unlock");
	CK_OK(shval_unlock(v));
	int64_t res = 0;
	step(10, "shval_add_i64 after the recovery");
	CK_OK(shval_add_i64(v, 1, &res));
	CK(res == 2, "add result %lld, want 2", (long long)res);
	step(10, "close");
	shval_close(v);
	shval_seg_close(s);
}

static void copy_value_lock_alive(void *arg)
{
	struct copy_arg *a = arg;
	shval_seg *s;
	shval *v;
	open_copy(a->path, 0, &s);
	CK_OK(shval_find(s, "v", NULL, &v));
	int64_t res = 0;
	uint64_t t0 = shval__now_ns();
	step(10, "shval_add_i64(v, 10) on the copy (its lock word names A, alive, "
		 "holding the original's lock)");
	int r = shval_add_i64(v, 10, &res);
	CK(r == 0, "shval_add_i64 returned %d (%s) after %.1f s: %s", r,
	   shval_strerror(r), (shval__now_ns() - t0) / 1e9, shval_errmsg(s));
	CK(res == 11, "add result %lld, want 11 (A's uncommitted 2 rolled back)",
	   (long long)res);
	step(10, "close");
	shval_close(v);
	shval_seg_close(s);
}

static void copy_value_lock_verify(void *arg)
{
	struct copy_arg *a = arg;
	shval_seg *s;
	shval *v;
	open_copy(a->path, 0, &s);
	int found = 0;
	size_t n = 0;
	step(10, "shval_seg_verify(DEEP) on a copy with a stale lock");
	int r = shval_seg_verify(s, SHVAL_VERIFY_DEEP, count_cb, &found, &n);
	CK(r == SHVAL_ECORRUPT && n >= 1,
	   "verify DEEP returned %d (%s) with %zu problem(s): the stale lock (a "
	   "live thread of another segment's holder) is not reported",
	   r, shval_strerror(r), n);
	step(10, "shval_seg_verify(REPAIR)");
	r = shval_seg_verify(s, SHVAL_VERIFY_REPAIR, count_cb, &found, &n);
	CK(r == 0, "verify REPAIR returned %d (%s): %s", r, shval_strerror(r),
	   shval_errmsg(s));
	step(10, "shval_seg_verify(DEEP) after the repair");
	r = shval_seg_verify(s, SHVAL_VERIFY_DEEP, count_cb, &found, &n);
	CK(r == 0 && n == 0, "verify after repair: %d, %zu problem(s)", r, n);
	CK_OK(shval_find(s, "v", NULL, &v));
	int64_t res = 0;
	step(10, "shval_add_i64(v, 10) after the repair");
	CK_OK(shval_add_i64(v, 10, &res));
	CK(res == 11, "add result %lld, want 11", (long long)res);
	step(10, "close");
	shval_close(v);
	shval_seg_close(s);
}

static void copy_seg_lock(void *arg)
{
	struct copy_arg *a = arg;
	shval_seg *s;
	shval *w;
	uint64_t t0 = shval__now_ns();
	open_copy(a->path, 0, &s); /* a writable open takes the segment lock */
	step(10, "shval_create in the copy (segment lock word names A, %s)",
	     a->owner_dead ? "dead" : "alive, holding the original's");
	int r = shval_create(s, "w", "q", SHVAL_RLOCK, NULL, 0, &w);
	CK(r == 0, "shval_create returned %d (%s) after %.1f s: %s", r,
	   shval_strerror(r), (shval__now_ns() - t0) / 1e9, shval_errmsg(s));
	step(10, "shval_set_i64 on the new value");
	CK_OK(shval_set_i64(w, 3));
	step(10, "close");
	shval_close(w);
	shval_seg_close(s);
}

TEST(file_copied_while_value_locked_owner_dead)
{
	const char *path = own_path("/tmp/shvaltest.%d.vlock.shv", (int)getpid());
	const char *copy = own_path("/tmp/shvaltest.%d.vlock.copy", (int)getpid());
	const char *copies[] = { copy };
	pid_t h = hold_and_copy(path, false, copies, 1);
	kill_wait(h);
	struct copy_arg a = { copy, true };
	bool ok = run_child("copy, A dead: shval_lock", 20, copy_value_lock_dead, &a);
	cleanup_paths();
	if (!ok)
		FAIL("copy of a file segment with a value lock held by a dead process");
}

TEST(file_copied_while_value_locked_owner_alive)
{
	const char *path = own_path("/tmp/shvaltest.%d.vlive.shv", (int)getpid());
	const char *c1 = own_path("/tmp/shvaltest.%d.vlive.copy1", (int)getpid());
	const char *c2 = own_path("/tmp/shvaltest.%d.vlive.copy2", (int)getpid());
	const char *copies[] = { c1, c2 };
	pid_t h = hold_and_copy(path, false, copies, 2);
	struct copy_arg a1 = { c1, false }, a2 = { c2, false };
	bool ok1 = run_child("copy, A alive: shval_add_i64", 20, copy_value_lock_alive,
			     &a1);
	bool ok2 = run_child("copy, A alive: verify and repair", 25,
			     copy_value_lock_verify, &a2);
	kill_wait(h);
	cleanup_paths();
	if (!ok1 || !ok2)
		FAIL("copy of a file segment with a value lock held by a live "
		     "process (of the original)");
}

TEST(file_copied_while_segment_locked)
{
	const char *path = own_path("/tmp/shvaltest.%d.slock.shv", (int)getpid());
	const char *c1 = own_path("/tmp/shvaltest.%d.slock.copy1", (int)getpid());
	const char *c2 = own_path("/tmp/shvaltest.%d.slock.copy2", (int)getpid());
	const char *copies[] = { c1, c2 };
	pid_t h = hold_and_copy(path, true, copies, 2);
	struct copy_arg a1 = { c1, false }, a2 = { c2, true };
	bool ok1 = run_child("segment lock copy, A alive: open + create", 20,
			     copy_seg_lock, &a1);
	kill_wait(h);
	bool ok2 = run_child("segment lock copy, A dead: open + create", 20,
			     copy_seg_lock, &a2);
	cleanup_paths();
	if (!ok1 || !ok2)
		FAIL("copy of a file segment with the segment lock held");
}

TEST_MAIN()
