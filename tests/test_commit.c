/*
 * tests/test_commit.c — the commit promises, each caught every time (not
 * by a lucky interleaving):
 *   - a reader sees the last committed state while a section is open in
 *     another process (the undo copy), then the new state after it;
 *   - all or nothing under a shared lock: an owner killed in the middle of
 *     a multi-value commit is rolled forward, one killed before it commits
 *     is rolled back (test-only crash points, SHVAL_TEST_CRASH_AT);
 *   - atomic adds from processes that certainly overlap are never lost
 *     (the header's inline add, the library's 64-bit add, the 32-bit one),
 *     also when another process's add lands between the add's read and
 *     its write (the write stopped by a fault);
 *   - a reader's copy that a whole commit overtakes is not returned torn
 *     (the copy is stopped mid-way by a fault on its destination page);
 *   - a stale handle stays stale on the header's inline paths after its
 *     block holds a new value.
 * The promises a Redis segment makes too run on both kinds (TEST_BOTH):
 * the committed state during a section (staged writes there), a dead
 * owner's section rolled back (noticed at its lease's end: lease_ms=1000
 * here), overlapping adds.  Crash points inside the commit, faulted
 * writes and copies, and block reuse are the local implementation's.
 */
#include "test.h"

#include <shval.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <time.h>

#include "segkind.h"

/* (shval_read)(...) and (shval_add_i64)(...) call the library's function,
 * not the header's inline fast path. */

static char segname[300];

static shval_seg *new_seg(const char *tag)
{
	/* a dead owner's lease ends after 1 s on Redis (default 5 s) */
	snprintf(segname, sizeof segname, "%s",
		 test_seg_name_opts(tag, "lease_ms=1000"));
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
TEST_BOTH(reader_sees_committed_state_during_section)
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
		int64_t *d = shval_data(v), one = 1; /* Redis: NULL */
		for (int i = 0; i < 4; i++) /* half of the change, uncommitted */
			if (d)
				d[i] = 1;
			else /* staged in this process */
				ASSERT_OK(shval_array_set(v, (size_t)i, 1, &one));
		ASSERT(write(up[1], "x", 1) == 1);
		ASSERT(pipe_wait(down[0]) == 0);
		for (int i = 4; i < 8; i++)
			if (d)
				d[i] = 1;
			else
				ASSERT_OK(shval_array_set(v, (size_t)i, 1, &one));
		ASSERT_OK(shval_unlock(v));
		_exit(0);
	}
	ASSERT(pipe_wait(up[0]) == 0);
	for (int round = 0; round < (TEST_ON_REDIS ? 200 : 1000); round++) {
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
 * point in the environment ends it (SIGKILL), or (at == "unlock") the
 * process kills itself after both changes, before its unlock. */
static int child_section(const char *seg, const char *at)
{
	shval_seg *s;
	shval *lk, *a, *b;
	if (shval_seg_open(seg, 0, NULL, &s) || shval_find(s, "L", NULL, &lk) ||
	    shval_find(s, "a", NULL, &a) || shval_find(s, "b", NULL, &b))
		return 3;
	if (shval_lock(lk) || shval_set_i64(a, 2) || shval_set_i64(b, 2))
		return 4;
	if (strcmp(at, "unlock") == 0)
		kill(getpid(), SIGKILL);
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
		if (strcmp(at, "unlock") != 0)
			setenv("SHVAL_TEST_CRASH_AT", at, 1);
		_exit(child_section(segname, at));
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

/* Both values changed, the owner killed before its unlock (its commit):
 * both rolled back.  (The crash point "change" dies before any data
 * changed, where rolling forward would give the same values.) */
TEST_BOTH(shared_lock_death_before_unlock_rolls_back)
{
	shval_seg *s = new_seg("unlock");
	shval *lk, *a, *b;
	shared_pair(s, &lk, &a, &b);
	die_in_section("unlock");
	check_pair(lk, a, b, 1);
	shval_close(a);
	shval_close(b);
	shval_close(lk);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

/* Two processes add to one atomic value for 0.3 s each after a common
 * start: they overlap for certain (each counts the other's adds it saw
 * between two of its own), and no add is lost.  library: through the
 * library's function instead of the header's inline fast path. */
static void overlapping_adds(const char *type, bool library)
{
	shval_seg *s = new_seg("atomic");
	shval *v;
	ASSERT_OK(shval_create(s, "n", type, SHVAL_ATOMIC, NULL, 0, &v));
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
					if (library)
						ASSERT_OK((shval_add_i64)(v, 1, &now));
					else
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
		FAIL("lost %lld of %llu atomic adds (type %s, %s)",
		     (long long)(sh->ops[0] + sh->ops[1]) - (long long)total,
		     (unsigned long long)(sh->ops[0] + sh->ops[1]), type,
		     library ? "library call" : "inline fast path");
	munmap(sh, sizeof *sh);
	shval_close(v);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

TEST_BOTH(atomic_adds_exact_when_processes_overlap)
{
	overlapping_adds("q", false); /* include/shval.h: inline */
}

TEST_BOTH(atomic_adds_exact_library_call)
{
	overlapping_adds("q", true); /* value.c: shval_add_i64's fast path */
}

TEST_BOTH(atomic_adds_exact_32bit)
{
	overlapping_adds("i", true);  /* the library's 32-bit fast add */
	overlapping_adds("i", false); /* the header's inline 32-bit add */
}

/* An add overtaken by another process's add, every time: the adder (a
 * child) makes the page of the value's data read-only in its own mapping,
 * so the write of its add faults; the handler has the parent add 100 and
 * opens the page again, and the add goes on.  An atomic add (one locked
 * instruction) faulted before it read anything and adds to the parent's
 * result; a load and a store would store what it loaded plus one, losing
 * the parent's 100. */
static struct {
	int to_parent, from_parent;
	char *page;
	size_t len;
	volatile sig_atomic_t faults;
} ovt;

static void ovt_fault(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	char *a = si->si_addr;
	if (ovt.faults++ || a < ovt.page || a >= ovt.page + ovt.len) {
		signal(SIGSEGV, SIG_DFL); /* not ours: crash on the retry */
		return;
	}
	char c = 'f';
	if (write(ovt.to_parent, &c, 1) != 1 || read(ovt.from_parent, &c, 1) != 1)
		_exit(70);
	mprotect(ovt.page, ovt.len, PROT_READ | PROT_WRITE);
}

static void add_overtaken_case(const char *type, bool library)
{
#if defined(__SANITIZE_THREAD__)
	SKIP("ThreadSanitizer runs atomics in its runtime: no fault to stop in");
#endif
	shval_seg *s = new_seg("ovt");
	shval *v;
	ASSERT_OK(shval_create(s, "n", type, SHVAL_ATOMIC, NULL, 0, &v));
	int tp[2], fp[2];
	ASSERT(pipe(tp) == 0 && pipe(fp) == 0);
	pid_t p = fork();
	ASSERT(p >= 0);
	if (p == 0) {
		alarm(20);
		size_t pg = (size_t)sysconf(_SC_PAGESIZE);
		char *d = shval_data(v);
		if (!d)
			_exit(74);
		ovt.to_parent = tp[1];
		ovt.from_parent = fp[0];
		ovt.page = (char *)((uintptr_t)d & ~(uintptr_t)(pg - 1));
		ovt.len = pg;
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = ovt_fault;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, NULL) != 0 ||
		    mprotect(ovt.page, ovt.len, PROT_READ) != 0)
			_exit(74);
		int64_t res = 0;
		int r = library ? (shval_add_i64)(v, 1, &res)
				: shval_add_i64(v, 1, &res);
		if (r != 0) {
			fprintf(stderr, "shval_add_i64 returned %d (%s)\n", r,
				shval_strerror(r));
			_exit(75);
		}
		if (ovt.faults != 1) {
			fprintf(stderr, "the add's write did not fault (%d faults): "
				"the case proves nothing\n", (int)ovt.faults);
			_exit(71);
		}
		if (res != 101) {
			fprintf(stderr, "add result %lld, want 101 (the other "
				"process's add of 100 came first)\n", (long long)res);
			_exit(72);
		}
		_exit(0);
	}
	close(tp[1]);
	char c;
	if (read(tp[0], &c, 1) == 1) {
		/* the child's add is stopped at its write: add first */
		ASSERT_OK((shval_add_i64)(v, 100, NULL));
		ASSERT(write(fp[1], "a", 1) == 1);
	}
	int st;
	ASSERT(waitpid(p, &st, 0) == p);
	int64_t total = 0;
	ASSERT_OK(shval_get_i64(v, &total));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || total != 101)
		FAIL("type %s, %s: the adder ended with status 0x%x, total %lld, "
		     "want 101 (an add lost?)", type,
		     library ? "library call" : "inline fast path", st,
		     (long long)total);
	close(tp[0]);
	close(fp[0]);
	close(fp[1]);
	shval_close(v);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

TEST(atomic_add_overtaken_inline)
{
	add_overtaken_case("q", false);
}

TEST(atomic_add_overtaken_library_call)
{
	add_overtaken_case("q", true);
}

TEST(atomic_add_overtaken_32bit)
{
	add_overtaken_case("i", true);  /* the library's 32-bit fast add */
	add_overtaken_case("i", false); /* the header's inline 32-bit add */
}

/* A 16-bit value has no fast path: the library's width-generic RMW
 * (src/atomic.h) does the add. */
TEST(atomic_add_overtaken_16bit)
{
	add_overtaken_case("h", true);
}

/* A reader's copy overtaken by a whole commit.  The reader (a child) copies
 * into a buffer whose second half lies on pages it made PROT_NONE: the copy
 * stops there with SIGSEGV, half done, and the handler has the parent
 * commit a whole new value before it opens the pages and the copy goes on.
 * The first half holds the old value, the rest the new one: the reader
 * must see the version move and copy again (tag-seqlock), every time. */
static struct {
	int to_writer, from_writer;
	char *shut;         /* the PROT_NONE pages */
	size_t shut_len;
	volatile sig_atomic_t faults;
} tear;

static void tear_fault(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	char *a = si->si_addr;
	if (tear.faults++ || a < tear.shut || a >= tear.shut + tear.shut_len) {
		signal(SIGSEGV, SIG_DFL); /* not ours: crash on the retry */
		return;
	}
	char c = 'f';
	if (write(tear.to_writer, &c, 1) != 1 || read(tear.from_writer, &c, 1) != 1)
		_exit(70);
	mprotect(tear.shut, tear.shut_len, PROT_READ | PROT_WRITE);
}

enum read_path { READ_INLINE, READ_LIBRARY };

static void torn_copy_case(const char *type, size_t n, enum read_path path)
{
	shval_seg *s = new_seg("tear");
	shval *v;
	ASSERT_OK(shval_create(s, "a", type, SHVAL_RLOCK, NULL, 0, &v));
	size_t size = n * sizeof(int64_t);
	int64_t *vals = malloc(size);
	ASSERT(vals);
	for (size_t i = 0; i < n; i++)
		vals[i] = 1;
	ASSERT_OK(shval_write(v, vals, size));
	int tw[2], fw[2];
	ASSERT(pipe(tw) == 0 && pipe(fw) == 0);
	pid_t p = fork();
	ASSERT(p >= 0);
	if (p == 0) {
		alarm(20);
		size_t pg = (size_t)sysconf(_SC_PAGESIZE);
		size_t half = (size + pg - 1) / pg * pg;
		char *base = mmap(NULL, 2 * half, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (base == MAP_FAILED)
			_exit(74);
		tear.to_writer = tw[1];
		tear.from_writer = fw[0];
		tear.shut = base + half;
		tear.shut_len = half;
		/* the buffer: half before the shut pages, half on them */
		int64_t *buf = (int64_t *)(void *)(tear.shut - (n / 2) * sizeof(int64_t));
		if (mprotect(tear.shut, half, PROT_NONE) != 0)
			_exit(74);
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_sigaction = tear_fault;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, NULL) != 0)
			_exit(74);
		int r = path == READ_INLINE ? shval_read(v, buf, size)
					    : (shval_read)(v, buf, size);
		if (r != 0) {
			fprintf(stderr, "shval_read returned %d (%s)\n", r,
				shval_strerror(r));
			_exit(75);
		}
		if (tear.faults != 1) {
			fprintf(stderr, "the copy did not stop on the shut pages "
				"(%d faults): the case proves nothing\n",
				(int)tear.faults);
			_exit(71);
		}
		for (size_t i = 0; i < n; i++)
			if (buf[i] != buf[0]) {
				fprintf(stderr, "torn read: [0]=%lld [%zu]=%lld (a "
					"commit overtook the copy and the reader "
					"did not copy again)\n",
					(long long)buf[0], i, (long long)buf[i]);
				_exit(72);
			}
		if (buf[0] != 2) {
			fprintf(stderr, "read %lld, want 2 (the commit made during "
				"the copy)\n", (long long)buf[0]);
			_exit(73);
		}
		_exit(0);
	}
	close(tw[1]);
	char c;
	if (read(tw[0], &c, 1) == 1) {
		/* the reader's copy is stopped half-way: commit a whole new value */
		for (size_t i = 0; i < n; i++)
			vals[i] = 2;
		ASSERT_OK(shval_write(v, vals, size));
		ASSERT(write(fw[1], "c", 1) == 1);
	}
	int st;
	ASSERT(waitpid(p, &st, 0) == p);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAIL("the reader (%s, %s) ended with status 0x%x (see above)", type,
		     path == READ_INLINE ? "shval_read, inline" : "(shval_read)", st);
	close(tw[0]);
	close(fw[0]);
	close(fw[1]);
	free(vals);
	shval_close(v);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

TEST(reader_copy_overtaken_by_commit_inline)
{
	torn_copy_case("1024q", 1024, READ_INLINE); /* include/shval.h */
}

TEST(reader_copy_overtaken_by_commit_library)
{
	torn_copy_case("1024q", 1024, READ_LIBRARY); /* value.c, undo copy */
}

TEST(reader_copy_overtaken_by_commit_big_value)
{
	/* over SHVAL__UNDO_MAX: no undo copy, no inline path (value.c) */
	torn_copy_case("20000q", 20000, READ_INLINE);
}

/* A handle to a removed value whose block, after the limbo, holds a new
 * value of the same type: the header's inline read and add must see that
 * the serial changed (SHVAL_ESTALE) and leave the new value alone. */
TEST(stale_handle_on_inline_paths_after_reuse)
{
	shval_seg *s = new_seg("reuse");
	shval *lk, *at;
	ASSERT_OK(shval_create(s, "l", "q", SHVAL_RLOCK, NULL, 0, &lk));
	ASSERT_OK(shval_create(s, "t", "q", SHVAL_ATOMIC, NULL, 0, &at));
	void *lk_data = shval_data(lk), *at_data = shval_data(at);
	ASSERT(lk_data && at_data);
	ASSERT_OK(shval_remove(s, "l"));
	ASSERT_OK(shval_remove(s, "t"));
	usleep(1100 * 1000); /* the limbo before a block is handed out again */
	shval *nl = NULL, *nt = NULL, *keep[64];
	int nkeep = 0;
	char name[32];
	for (int i = 0; i < 64 && (!nl || !nt); i++) {
		shval *x;
		bool atomic = nl != NULL;
		snprintf(name, sizeof name, "n%d", i);
		ASSERT_OK(shval_create(s, name, "q", atomic ? SHVAL_ATOMIC : SHVAL_RLOCK,
				       NULL, 0, &x));
		if (!atomic && shval_data(x) == lk_data)
			nl = x;
		else if (atomic && shval_data(x) == at_data)
			nt = x;
		else
			keep[nkeep++] = x;
	}
	if (!nl || !nt)
		FAIL("the removed values' blocks were not reused (%s %s)",
		     nl ? "" : "locked", nt ? "" : "atomic");
	ASSERT_OK(shval_set_i64(nl, 5));
	ASSERT_OK(shval_set_i64(nt, 5));
	int64_t x = -1;
	ASSERT_ERR(shval_read(lk, &x, sizeof x), SHVAL_ESTALE);
	ASSERT_ERR(shval_add_i64(at, 1, NULL), SHVAL_ESTALE);
	ASSERT_ERR((shval_read)(lk, &x, sizeof x), SHVAL_ESTALE);
	ASSERT_ERR((shval_add_i64)(at, 1, NULL), SHVAL_ESTALE);
	ASSERT_OK(shval_get_i64(nl, &x));
	ASSERT_EQ(x, 5);
	ASSERT_OK(shval_get_i64(nt, &x));
	ASSERT_EQ(x, 5);
	for (int i = 0; i < nkeep; i++)
		shval_close(keep[i]);
	shval_close(nl);
	shval_close(nt);
	shval_close(lk);
	shval_close(at);
	shval_seg_close(s);
	shval_seg_unlink(segname);
}

TEST_MAIN()
