/*
 * tests/test_inline.c — the header's inline fast paths (include/shval.h):
 * shval_write() and shval_add_i64() of a value with its own lock open the
 * locked section inline, and fall back to the functions for everything
 * they cannot finish alone.  The section takes the robust mutex with the
 * kernel's protocol inline (shval__lock_fast_take: src/mutex.c, "FAST
 * PATH"); its own cases:
 *   - a process killed inside such a section: the kernel itself marks the
 *     lock FUTEX_OWNER_DIED (the thread's list_op_pending slot named it;
 *     the child of a fork uses its own thread id), the next locker rolls
 *     the change back;
 *   - a glibc locker asleep on the lock (FUTEX_WAITERS) is woken by the
 *     fast release (a lost wake-up hangs the case: its timeout fails it);
 *   - the thread's robust list is never touched, the slot is NULL again
 *     after every section, and a slot already in use sends the call to
 *     the function.
 * Each fallback is driven here on purpose:
 *   - the lock's owner died inside a section (the lock word says
 *     FUTEX_OWNER_DIED): the function recovers (rolls back), and must not
 *     put the lock on the thread's robust list twice (the list is walked
 *     with get_robust_list and checked);
 *   - the caller holds the lock already (shval_lock): a nested change,
 *     committed at the outer unlock;
 *   - a WRITING bit left set with the lock free: rolled back first;
 *   - a damaged kind word: SHVAL_ECORRUPT before any pthread call;
 *   - a value removed by another process (its serial cleared), and one
 *     whose block was reused by another value: SHVAL_ESTALE, the other
 *     value untouched.
 * And the 32-bit atomic add ('i', 'I') against the function's results.
 * The robust-list check also covers the library's own section fast path
 * (src/section.h, through shval_set_i64).
 * The inline paths are compiled in here (this file includes only
 * <shval.h>; the checks below fail if the macros are not in use).
 */
#include <shval.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>

#include "test.h"

/* ThreadSanitizer builds use the functions (the header leaves the inline
 * paths out there: TSan does not model them); the cases then test the
 * functions' own fast paths. */
#if !defined(__SANITIZE_THREAD__) && \
	(!defined(shval_write) || !defined(shval_add_i64))
#error "the inline fast paths are not in use: nothing here would be tested"
#endif

#define STRUCT64 "a:q b:q c:q d:q e:q f:q g:q h:q"

static const struct shval__fast *fastof(shval *v)
{
	return (const struct shval__fast *)(void *)v;
}

static shval_seg *new_seg(const char *what)
{
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(test_segname(what), SHVAL_CREATE | SHVAL_TEMP,
				 NULL, &seg));
	return seg;
}

/* A child takes v's lock, starts a change (WRITING set, data changed) and
 * dies there: the next locker must find the state before the change. */
static void die_in_section(shval_seg *seg, const char *name)
{
	pid_t pid = fork();
	if (pid == 0) {
		shval *v;
		if (shval_find(seg, name, NULL, &v) || shval_lock(v))
			_exit(3);
		/* a nested change: WRITING on, undo copy made, data changed */
		unsigned char junk[64];
		memset(junk, 0x5a, sizeof junk);
		struct shval_info inf;
		shval_info(v, &inf);
		if (shval_write(v, junk, inf.size))
			_exit(4);
		kill(getpid(), SIGKILL);
		_exit(5);
	}
	int st;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* The calling thread's robust list: how many entries, and whether the
 * lock of v is one of them.  Fails on a cycle (a lock enqueued twice
 * makes its node point at itself, and loses the entries behind it). */
static int robust_list_count(shval *v, bool *has_v)
{
	struct robust_list_head *head;
	size_t len;
	ASSERT_EQ(syscall(SYS_get_robust_list, 0, &head, &len), 0);
	ASSERT_EQ(len, sizeof *head);
	void *node_v =
		v ? (char *)fastof(v)->lock + offsetof(pthread_mutex_t,
						      __data.__list.__next)
		  : NULL;
	int n = 0;
	*has_v = false;
	for (struct robust_list *p = head->list.next; p != &head->list;
	     p = p->next) {
		if (++n > 64)
			FAIL("robust list has a cycle or over 64 entries");
		if ((void *)p == node_v)
			*has_v = true;
	}
	return n;
}

/* ThreadSanitizer builds take every lock through glibc (the header leaves
 * the fast path out: TSan would not see it as a lock). */
#define NO_FAST_LOCK "no inline lock fast path in this build"

static __attribute__((unused)) struct robust_list_head *robust_head(void)
{
	struct robust_list_head *head;
	size_t len;
	ASSERT_EQ(syscall(SYS_get_robust_list, 0, &head, &len), 0);
	return head;
}

static __attribute__((unused)) unsigned lock_word(shval *v)
{
	return __atomic_load_n((unsigned *)fastof(v)->lock, __ATOMIC_SEQ_CST);
}

/* The fast section's bookkeeping: the slot names the mutex while it is
 * held and is NULL after; the robust list is never touched; a slot in use
 * (a robust-mutex operation of glibc's in flight) is left alone and the
 * write goes to the function. */
TEST(fast_section_slot_and_robust_list)
{
#if !defined(SHVAL__FAST_LOCK)
	SKIP(NO_FAST_LOCK);
#else
	shval_seg *seg = new_seg("fslot");
	shval *v;
	int64_t x = 1, got;
	ASSERT_OK(shval_create(seg, "n", "q", SHVAL_RLOCK, &x, 8, &v));
	bool has;
	int base = robust_list_count(NULL, &has);
	ASSERT_OK(shval_write(v, &x, 8)); /* sets the thread up */
	struct robust_list_head *head = robust_head();
	void *node = (char *)fastof(v)->lock +
		     offsetof(pthread_mutex_t, __data.__list.__next);
	ASSERT(head->list_op_pending == NULL);
	ASSERT_EQ(shval__lock_fast_take(fastof(v)->lock), 1);
	ASSERT(head->list_op_pending == node);
	ASSERT_EQ(lock_word(v), (unsigned)gettid());
	ASSERT_EQ(robust_list_count(v, &has), base);
	ASSERT(!has);
	/* held: the fast path cannot take it again */
	ASSERT_EQ(shval__lock_fast_take(fastof(v)->lock), 0);
	shval__lock_fast_release(fastof(v)->lock);
	ASSERT(head->list_op_pending == NULL);
	ASSERT_EQ(lock_word(v), 0u);
	for (int i = 0; i < 100; i++) {
		x = i;
		ASSERT_OK(shval_write(v, &x, 8));
		ASSERT_OK(shval_add_i64(v, 1, NULL));
		ASSERT_OK(shval_set_i64(v, i)); /* src/section.h's */
	}
	ASSERT(head->list_op_pending == NULL);
	ASSERT_EQ(robust_list_count(NULL, &has), base);
	/* a slot in use: refused, the function writes (through glibc) */
	struct robust_list dummy;
	head->list_op_pending = &dummy;
	ASSERT_EQ(shval__lock_fast_take(fastof(v)->lock), 0);
	ASSERT(head->list_op_pending == &dummy);
	head->list_op_pending = NULL;
	x = 77;
	ASSERT_OK(shval_write(v, &x, 8));
	ASSERT_OK(shval_read(v, &got, 8));
	ASSERT_EQ(got, 77);
	shval_close(v);
	shval_seg_close(seg);
#endif
}

/* A forked child (whose parent set the fast path up) dies inside a fast
 * section half-way through a change: the kernel marks the lock, the data
 * is the last committed state for readers at once and for the next locker
 * after its rollback. */
TEST(fast_section_death_marked_by_kernel)
{
#if !defined(SHVAL__FAST_LOCK)
	SKIP(NO_FAST_LOCK);
#else
	shval_seg *seg = new_seg("fdeath");
	shval *v;
	int64_t init[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, got[8];
	ASSERT_OK(shval_create(seg, "s", STRUCT64, SHVAL_RLOCK, init,
			       sizeof init, &v));
	ASSERT_OK(shval_write(v, init, sizeof init)); /* parent set up */
	for (int round = 0; round < 10; round++) {
		pid_t pid = fork();
		if (pid == 0) {
			const struct shval__fast *f = fastof(v);
			if (shval_write(v, init, sizeof init))
				_exit(3);
			if (!shval__lock_fast_take(f->lock))
				_exit(4);
			/* the child's own id, not the parent's */
			if (lock_word(v) != (unsigned)gettid())
				_exit(5);
			shval__sec_dirty(f, sizeof init);
			memset(f->data, 0x5a, round * 6 + 1); /* half-way */
			kill(getpid(), SIGKILL);
			_exit(6);
		}
		int st;
		ASSERT_EQ(waitpid(pid, &st, 0), pid);
		ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		/* the kernel's mark, not a waiter's judgement */
		ASSERT_EQ(lock_word(v), (unsigned)FUTEX_OWNER_DIED);
		ASSERT_OK(shval_read(v, got, sizeof got)); /* the undo copy */
		ASSERT_MEMEQ(got, init, sizeof init);
		ASSERT_EQ(shval_lock(v), SHVAL_EOWNERDEAD);
		ASSERT_OK(shval_read(v, got, sizeof got));
		ASSERT_MEMEQ(got, init, sizeof init);
		ASSERT_OK(shval_unlock(v));
		ASSERT_OK(shval_write(v, init, sizeof init));
	}
	shval_close(v);
	shval_seg_close(seg);
#endif
}

/* A process asleep in glibc's pthread_mutex_lock on a lock held by a
 * fast section (FUTEX_WAITERS set) is woken by the fast release. */
TEST(fast_release_wakes_glibc_sleeper)
{
#if !defined(SHVAL__FAST_LOCK)
	SKIP(NO_FAST_LOCK);
#else
	shval_seg *seg = new_seg("fwake");
	shval *v;
	int64_t x = 5;
	ASSERT_OK(shval_create(seg, "n", "q", SHVAL_RLOCK, &x, 8, &v));
	for (int round = 0; round < 5; round++) {
		ASSERT_EQ(shval__lock_fast_take(fastof(v)->lock), 1);
		pid_t pid = fork();
		if (pid == 0) {
			pthread_mutex_t *m = fastof(v)->lock;
			if (pthread_mutex_lock(m))
				_exit(3);
			pthread_mutex_unlock(m);
			_exit(0);
		}
		/* until the child sleeps on it (a lost wake-up would leave
		 * it asleep for good: this case's timeout) */
		while (!(lock_word(v) & FUTEX_WAITERS)) {
			int st;
			ASSERT_EQ(waitpid(pid, &st, WNOHANG), 0);
			usleep(1000);
		}
		usleep(20000); /* and, most likely, in the kernel */
		shval__lock_fast_release(fastof(v)->lock);
		int st;
		ASSERT_EQ(waitpid(pid, &st, 0), pid);
		ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		ASSERT_EQ(lock_word(v), 0u);
		ASSERT_OK(shval_add_i64(v, 1, NULL));
	}
	shval_close(v);
	shval_seg_close(seg);
#endif
}

TEST(write_after_owner_death)
{
	shval_seg *seg = new_seg("wdeath");
	shval *v;
	int64_t init[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, got[8], want[8];
	ASSERT_OK(shval_create(seg, "s", STRUCT64, SHVAL_RLOCK, init,
			       sizeof init, &v));
	ASSERT(fastof(v)->flags & SHVAL__F_OWNWRITE);
	for (int round = 0; round < 20; round++) {
		die_in_section(seg, "s");
		for (int i = 0; i < 8; i++)
			want[i] = round * 100 + i;
		/* the lock word says FUTEX_OWNER_DIED: the inline section
		 * cannot take it; the function recovers, then writes */
		ASSERT_OK(shval_write(v, want, sizeof want));
		ASSERT_OK(shval_read(v, got, sizeof got));
		ASSERT_MEMEQ(got, want, sizeof want);
		/* the death was handled: the next lock is a plain one */
		ASSERT_OK(shval_lock(v));
		ASSERT_OK(shval_unlock(v));
	}
	shval_close(v);
	shval_seg_close(seg);
}

TEST(add_after_owner_death_rolls_back)
{
	shval_seg *seg = new_seg("adeath");
	shval *v;
	int64_t init = 1000, res = 0;
	ASSERT_OK(shval_create(seg, "n", "q", SHVAL_RLOCK, &init, sizeof init,
			       &v));
	ASSERT(fastof(v)->flags & SHVAL__F_LOCKED64);
	for (int round = 0; round < 20; round++) {
		die_in_section(seg, "n"); /* the dead change: 0x5a5a... */
		ASSERT_OK(shval_add_i64(v, 7, &res));
		ASSERT_EQ(res, 1000 + 7 * (round + 1));
	}
	shval_close(v);
	shval_seg_close(seg);
}

/* With another shval lock held, an inline change that finds a dead
 * owner's lock (and so the function's recovery) leaves the thread's
 * robust list intact: the held lock stays on it (so the kernel still
 * marks it if this thread dies), once. */
TEST(robust_list_intact_after_inline_recovery)
{
	shval_seg *seg = new_seg("rlist");
	shval *a, *b, *c;
	int64_t zero = 0, res;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_RLOCK, &zero, 8, &a));
	ASSERT_OK(shval_create(seg, "b", "q", SHVAL_RLOCK, &zero, 8, &b));
	ASSERT_OK(shval_create(seg, "c", STRUCT64, SHVAL_LOCK, NULL, 0, &c));
	bool has;
	int base = robust_list_count(NULL, &has);
	ASSERT_OK(shval_lock(a));
	ASSERT_EQ(robust_list_count(a, &has), base + 1);
	ASSERT(has);
	die_in_section(seg, "b");
	die_in_section(seg, "c");
	ASSERT_OK(shval_add_i64(b, 1, &res));
	ASSERT_EQ(res, 1);
	int64_t w[8] = { 9, 9, 9, 9, 9, 9, 9, 9 };
	ASSERT_OK(shval_write(c, w, sizeof w));
	/* the library's own fast path (src/section.h), not inlined */
	die_in_section(seg, "b");
	ASSERT_OK(shval_set_i64(b, 5));
	ASSERT_EQ(robust_list_count(a, &has), base + 1);
	ASSERT(has);
	ASSERT_OK(shval_unlock(a));
	ASSERT_EQ(robust_list_count(a, &has), base);
	ASSERT(!has);
	/* and a death while holding a is still seen by the next locker */
	pid_t pid = fork();
	if (pid == 0) {
		if (shval_lock(a))
			_exit(3);
		die_in_section(seg, "b");
		if (shval_add_i64(b, 1, NULL))
			_exit(4);
		kill(getpid(), SIGKILL);
		_exit(5);
	}
	int st;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT(WIFSIGNALED(st));
	/* the kernel marked a (robust list), so no stale-owner wait: the
	 * futex word carries FUTEX_OWNER_DIED right away */
	const uint32_t *word = fastof(a)->lock;
	ASSERT(__atomic_load_n(word, __ATOMIC_ACQUIRE) & FUTEX_OWNER_DIED);
	ASSERT_ERR(shval_lock(a), SHVAL_EOWNERDEAD);
	ASSERT_OK(shval_unlock(a));
	shval_close(a);
	shval_close(b);
	shval_close(c);
	shval_seg_close(seg);
}

TEST(nested_in_held_lock)
{
	shval_seg *seg = new_seg("nested");
	shval *v, *w;
	int64_t x = 5, got;
	ASSERT_OK(shval_create(seg, "n", "q", SHVAL_RLOCK, &x, 8, &v));
	ASSERT_OK(shval_create(seg, "s", STRUCT64, SHVAL_RLOCK, NULL, 0, &w));
	uint64_t ver0, ver1;
	ver0 = shval_value_version(v);
	ASSERT_OK(shval_lock(v));
	for (int i = 0; i < 10; i++)
		ASSERT_OK(shval_add_i64(v, 1, NULL));
	ASSERT_OK(shval_get_i64(v, &got));
	ASSERT_EQ(got, 15);
	ASSERT_OK(shval_unlock(v));
	ver1 = shval_value_version(v);
	ASSERT_UEQ(ver1 - ver0, 4); /* one commit for the whole section */
	int64_t s[8] = { 1, 1, 1, 1, 1, 1, 1, 1 }, sg[8];
	ASSERT_OK(shval_lock(w));
	ASSERT_OK(shval_write(w, s, sizeof s));
	ASSERT_OK(shval_unlock(w));
	ASSERT_OK(shval_read(w, sg, sizeof sg));
	ASSERT_MEMEQ(sg, s, sizeof s);
	shval_close(v);
	shval_close(w);
	shval_seg_close(seg);
}

TEST(stuck_writing_bit_rolled_back)
{
	shval_seg *seg = new_seg("stuck");
	shval *v;
	int64_t x = 42, res;
	ASSERT_OK(shval_create(seg, "n", "q", SHVAL_RLOCK, &x, 8, &v));
	uint64_t *ver = fastof(v)->version;
	/* WRITING set and the data changed, the lock free: as a damaged
	 * image or a stale owner leaves it */
	__atomic_fetch_or(ver, 2, __ATOMIC_SEQ_CST);
	*(int64_t *)shval_data(v) = 999;
	ASSERT_OK(shval_add_i64(v, 1, &res));
	ASSERT_EQ(res, 43); /* rolled back to 42 first */
	__atomic_fetch_or(ver, 2, __ATOMIC_SEQ_CST);
	*(int64_t *)shval_data(v) = 999;
	int64_t w = 7;
	ASSERT_OK(shval_write(v, &w, 8));
	ASSERT_OK(shval_get_i64(v, &res));
	ASSERT_EQ(res, 7);
	ASSERT_EQ(__atomic_load_n(ver, __ATOMIC_RELAXED) & 2, 0);
	shval_close(v);
	shval_seg_close(seg);
}

TEST(damaged_kind_word_refused)
{
	shval_seg *seg = new_seg("kind");
	shval *v;
	int64_t x = 42, got;
	ASSERT_OK(shval_create(seg, "n", "q", SHVAL_RLOCK, &x, 8, &v));
	int *kind = (int *)fastof(v)->lock_kind;
	int good = *kind;
	*kind = good | 0x20; /* priority-inherit: glibc would abort */
	ASSERT_ERR(shval_add_i64(v, 1, NULL), SHVAL_ECORRUPT);
	ASSERT_ERR(shval_write(v, &x, 8), SHVAL_ECORRUPT);
	*kind = good;
	ASSERT_OK(shval_get_i64(v, &got));
	ASSERT_EQ(got, 42);
	shval_close(v);
	shval_seg_close(seg);
}

/* A value removed by another process, its block not yet reused (limbo):
 * every inline path sees the serial the removal cleared (they check
 * nothing else) and goes to the function: SHVAL_ESTALE, the bytes of the
 * removed value not read as if it were live. */
TEST(removed_value_every_inline_path_stale)
{
	shval_seg *seg = new_seg("gone");
	shval *s, *a64, *a32, *l64;
	unsigned char buf[64] = { 5 };
	int64_t x = 1;
	int32_t y = 2;
	ASSERT_OK(shval_create(seg, "s", STRUCT64, SHVAL_RLOCK, buf, 64, &s));
	ASSERT_OK(shval_create(seg, "a64", "q", SHVAL_ATOMIC, &x, 8, &a64));
	ASSERT_OK(shval_create(seg, "a32", "i", SHVAL_ATOMIC, &y, 4, &a32));
	ASSERT_OK(shval_create(seg, "l64", "q", SHVAL_RLOCK, &x, 8, &l64));
	ASSERT(fastof(s)->read_size == 64 && fastof(s)->write_size == 64);
	ASSERT_OK(shval_read(s, buf, 64)); /* inline, live */
	pid_t p = fork();
	if (p == 0) {
		shval_seg *c;
		if (shval_seg_open(shval_seg_name(seg), 0, NULL, &c))
			_exit(2);
		_exit(shval_remove(c, "s") || shval_remove(c, "a64") ||
		      shval_remove(c, "a32") || shval_remove(c, "l64"));
	}
	test_wait_ok(p);
	ASSERT_ERR(shval_read(s, buf, 64), SHVAL_ESTALE);
	ASSERT_ERR(shval_write(s, buf, 64), SHVAL_ESTALE);
	ASSERT_ERR(shval_add_i64(a64, 1, NULL), SHVAL_ESTALE);
	ASSERT_ERR(shval_add_i64(a32, 1, NULL), SHVAL_ESTALE);
	ASSERT_ERR(shval_add_i64(l64, 1, NULL), SHVAL_ESTALE);
	/* the removal cleared the serial, which the handle can see */
	ASSERT(*fastof(s)->serial == 0 && fastof(s)->serial_want != 0);
	shval_close(s);
	shval_close(a64);
	shval_close(a32);
	shval_close(l64);
	shval_seg_close(seg);
}

TEST(removed_and_reused_block_untouched)
{
	shval_seg *seg = new_seg("reuse");
	shval *v, *o;
	int64_t x = 1;
	ASSERT_OK(shval_create(seg, "n", "q", SHVAL_RLOCK, &x, 8, &v));
	ASSERT_OK(shval_remove(seg, "n"));
	ASSERT_ERR(shval_add_i64(v, 1, NULL), SHVAL_ESTALE);
	ASSERT_ERR(shval_write(v, &x, 8), SHVAL_ESTALE);
	/* after the limbo time the block is reused by a value of the same
	 * shape: the stale handle must still fail and leave it alone */
	struct timespec ts = { 1, 200000000 };
	nanosleep(&ts, NULL);
	int64_t y = 77, got;
	ASSERT_OK(shval_create(seg, "m", "q", SHVAL_RLOCK, &y, 8, &o));
	ASSERT(shval_data(o) == fastof(v)->data); /* the same block */
	ASSERT_ERR(shval_add_i64(v, 1, NULL), SHVAL_ESTALE);
	ASSERT_ERR(shval_write(v, &x, 8), SHVAL_ESTALE);
	ASSERT_OK(shval_get_i64(o, &got));
	ASSERT_EQ(got, 77);
	shval_close(v);
	shval_close(o);
	shval_seg_close(seg);
}

/* A process writing a 56,000-byte array inline ({k, k, ..., k}, k rising;
 * big, so that most kills land inside the write, in the data's copy),
 * and after each write k in an atomic "done"), killed at random points
 * until 5 kills have landed inside a write: after each kill the value is whole (all fields equal: a half-done
 * write was rolled back) and it is the last committed write: done, or
 * done + 1 when the kill fell between the write and the report (a
 * rollback to an older state, e.g. from a stale undo copy, fails). */
TEST(inline_writes_whole_under_kills)
{
	shval_seg *seg = new_seg("kills");
	shval *s, *done;
	enum { N = 7000 };
	ASSERT_OK(shval_create(seg, "s", "7000q", SHVAL_RLOCK, NULL, 0, &s));
	ASSERT(fastof(s)->flags & SHVAL__F_OWNWRITE);
	static int64_t w[N], g[N];
	ASSERT_OK(shval_create(seg, "done", "q", SHVAL_ATOMIC, NULL, 0, &done));
	int64_t seen = 0;
	int inside = 0, round;
	/* until 5 kills have landed inside a write (about 1 in 6 does) */
	for (round = 0; inside < 5 && round < 1000; round++) {
		pid_t pid = fork();
		if (pid == 0) {
			for (int64_t k = seen + 1;; k++) {
				for (int i = 0; i < N; i++)
					w[i] = k;
				if (shval_write(s, w, sizeof w) ||
				    shval_set_i64(done, k))
					_exit(3);
			}
		}
		/* the kill lands while the child loops (a fork can take
		 * longer than the pause under load) */
		int64_t d0;
		do
			ASSERT_OK(shval_get_i64(done, &d0));
		while (d0 <= seen);
		struct timespec ts = { 0, 20000 + (round % 7) * 30000 };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int st;
		ASSERT_EQ(waitpid(pid, &st, 0), pid);
		ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		inside += (__atomic_load_n(fastof(s)->version, __ATOMIC_ACQUIRE) &
			   2) != 0; /* died inside a write */
		int64_t d;
		ASSERT_OK(shval_read(s, g, sizeof g));
		ASSERT_OK(shval_get_i64(done, &d));
		for (int i = 1; i < N; i++)
			if (g[i] != g[0])
				FAIL("round %d: torn value: field %d = %lld, "
				     "field 0 = %lld",
				     round, i, (long long)g[i], (long long)g[0]);
		if (d > seen && g[0] != d && g[0] != d + 1)
			FAIL("round %d: value %lld after the kill, but the "
			     "writer had committed %lld",
			     round, (long long)g[0], (long long)d);
		ASSERT_GE(g[0], seen);
		seen = g[0];
		/* a write after the kill (recovery if the lock was held) */
		for (int i = 0; i < N; i++)
			w[i] = seen;
		ASSERT_OK(shval_write(s, w, sizeof w));
		ASSERT_OK(shval_set_i64(done, seen));
	}
	printf("kills inside a write section: %d of %d\n", inside, round);
	if (inside < 5)
		FAIL("only %d of %d kills landed inside a write", inside, round);
	shval_close(s);
	shval_close(done);
	shval_seg_close(seg);
}

/* The inline 32-bit atomic add and the function give the same results
 * (wrapping at 32 bits, sign-extended for 'i'), for deltas of any size. */
TEST(atomic32_add_same_as_function)
{
	shval_seg *seg = new_seg("a32");
	static const int64_t deltas[] = { 0, 1, -1, 7, INT32_MAX, INT32_MIN,
					  (int64_t)1 << 32, ((int64_t)1 << 40) + 3,
					  INT64_MAX, INT64_MIN, -123456789 };
	static const char *const types[] = { "i", "I" };
	for (int t = 0; t < 2; t++) {
		shval *a, *b;
		char na[8], nb[8];
		snprintf(na, sizeof na, "a%d", t);
		snprintf(nb, sizeof nb, "b%d", t);
		ASSERT_OK(shval_create(seg, na, types[t], SHVAL_ATOMIC, NULL, 0,
				       &a));
		ASSERT_OK(shval_create(seg, nb, types[t], SHVAL_ATOMIC, NULL, 0,
				       &b));
		ASSERT(fastof(a)->flags &
		       (SHVAL__F_ATOMIC32S | SHVAL__F_ATOMIC32U));
		for (size_t i = 0; i < sizeof deltas / sizeof *deltas; i++) {
			int64_t ra, rb, ga, gb;
			ASSERT_OK(shval_add_i64(a, deltas[i], &ra));
			ASSERT_OK((shval_add_i64)(b, deltas[i], &rb));
			ASSERT_EQ(ra, rb);
			ASSERT_OK(shval_get_i64(a, &ga));
			ASSERT_OK(shval_get_i64(b, &gb));
			ASSERT_EQ(ga, ra);
			ASSERT_EQ(gb, rb);
		}
		shval_close(a);
		shval_close(b);
	}
	shval *w;
	int32_t max = INT32_MAX;
	int64_t r;
	ASSERT_OK(shval_create(seg, "w", "i", SHVAL_ATOMIC, &max, 4, &w));
	ASSERT_OK(shval_add_i64(w, 1, &r));
	ASSERT_EQ(r, INT32_MIN);
	shval_close(w);
	shval_seg_close(seg);
}

/* Two processes adding to one 'i' atomic: the exact total. */
TEST(atomic32_add_two_processes_exact)
{
	shval_seg *seg = new_seg("a32p");
	shval *a;
	ASSERT_OK(shval_create(seg, "a", "i", SHVAL_ATOMIC, NULL, 0, &a));
	enum { N = 200000 };
	pid_t pid = fork();
	if (pid == 0) {
		for (int i = 0; i < N; i++)
			if (shval_add_i64(a, 1, NULL))
				_exit(3);
		_exit(0);
	}
	for (int i = 0; i < N; i++)
		ASSERT_OK(shval_add_i64(a, 1, NULL));
	test_wait_ok(pid);
	int64_t got;
	ASSERT_OK(shval_get_i64(a, &got));
	ASSERT_EQ(got, 2 * N);
	shval_close(a);
	shval_seg_close(seg);
}

TEST_MAIN()
