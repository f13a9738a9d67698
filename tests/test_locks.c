/*
 * tests/test_locks.c — regression tests for the lock and write-section
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
#include "internal.h" /* shval__seg_lock(): the segment lock, case 2c */

#define FUTEX_OWNER_DIED_ 0x40000000u
#define MUTEX_KIND_ROBUST 16
#define MUTEX_KIND_PI 32
#define MUTEX_KIND_PP 64

/* ---- helpers: steps, children, cleanup ---------------------------------- */

/* Children write the step they are at here (shared with the parent), so a
 * hang or a crash is reported with the step it happened in. */
#define NSLOTS 64
#define STEPLEN 200
#define MSGLEN 600
static char (*g_steps)[STEPLEN];
static char (*g_msgs)[MSGLEN]; /* a child's failure message, by slot */
static int g_slot;
static const char *g_label = "main";
static int g_failures; /* soft failures of the test process */

static void steps_init(void)
{
	if (g_steps)
		return;
	g_steps = mmap(NULL, NSLOTS * STEPLEN, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(g_steps != MAP_FAILED);
	memset(g_steps, 0, NSLOTS * STEPLEN);
	g_msgs = mmap(NULL, NSLOTS * MSGLEN, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(g_msgs != MAP_FAILED);
	memset(g_msgs, 0, NSLOTS * MSGLEN);
}

/* A failed check in a child: the message goes to the parent (which
 * prints it with the child's label and step, see reap()); exit 3. */
static void child_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
static void child_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(g_msgs[g_slot], MSGLEN, fmt, ap);
	va_end(ap);
	if (n >= 0 && n < MSGLEN)
		snprintf(g_msgs[g_slot] + n, (size_t)(MSGLEN - n), " (%s:%d)",
			 strrchr(file, '/') ? strrchr(file, '/') + 1 : file, line);
	fflush(NULL);
	_exit(3);
}

/* Name the current step and (re)arm this process's alarm for it. */
static void step(unsigned secs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void step(unsigned secs, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_steps[g_slot], STEPLEN, fmt, ap);
	va_end(ap);
	alarm(secs);
}

/* A check in a child: print and exit 3 (a library abort() is SIGABRT). */
#define CK(cond, ...)                                                         \
	do {                                                                  \
		if (!(cond))                                                  \
			child_fail(__FILE__, __LINE__, __VA_ARGS__);          \
	} while (0)
#define CK_RC(call, ok)                                                       \
	do {                                                                  \
		int rc_ = (call);                                             \
		CK(ok, "%s returned %d (%s)", #call, rc_,                     \
		   shval_strerror(rc_));                                      \
	} while (0)
#define CK_OK(call) CK_RC(call, rc_ == 0)

/* A soft check in the test process: report, count, go on. */
#define SOFT(cond, ...)                                                       \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "  FAIL: ");                          \
			fprintf(stderr, __VA_ARGS__);                         \
			fprintf(stderr, "  (%s:%d)\n", __FILE__, __LINE__);   \
			g_failures++;                                         \
		}                                                             \
	} while (0)

static void soft_end(void)
{
	if (g_failures)
		FAIL("%d check(s) failed (see above)", g_failures);
}

static pid_t spawn(int slot, const char *label, void (*fn)(void *), void *arg)
{
	steps_init();
	snprintf(g_steps[slot], STEPLEN, "(starting)");
	g_msgs[slot][0] = 0;
	pid_t p = fork();
	ASSERT(p >= 0);
	if (p == 0) {
		g_slot = slot;
		g_label = label;
		fn(arg);
		fflush(NULL);
		_exit(0);
	}
	return p;
}

/* Wait for a child for at most secs (then SIGKILL it).  Prints what went
 * wrong, naming label and the child's step; returns true if it exited 0. */
static bool reap(pid_t p, int slot, const char *label, unsigned secs)
{
	uint64_t t0 = shval__now_ns();
	int st = 0;
	for (;;) {
		pid_t r = waitpid(p, &st, WNOHANG);
		if (r == p)
			break;
		if (r < 0)
			FAIL("waitpid(%d): %s", (int)p, strerror(errno));
		if (shval__now_ns() - t0 > (uint64_t)secs * 1000000000ull) {
			kill(p, SIGKILL);
			waitpid(p, &st, 0);
			fprintf(stderr, "  [%s] HANG: no end within %u s, at step \"%s\"\n",
				label, secs, g_steps[slot]);
			return false;
		}
		usleep(5000);
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return true;
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
		fprintf(stderr, "  [%s] HANG: step \"%s\" did not return in time\n",
			label, g_steps[slot]);
	else if (WIFSIGNALED(st))
		fprintf(stderr, "  [%s] CRASH: signal %d (%s) at step \"%s\"\n",
			label, WTERMSIG(st), strsignal(WTERMSIG(st)),
			g_steps[slot]);
	else if (WEXITSTATUS(st) == 3 && g_msgs[slot][0])
		fprintf(stderr, "  [%s] FAIL at step \"%s\": %s\n", label,
			g_steps[slot], g_msgs[slot]);
	else
		fprintf(stderr, "  [%s] failed (exit %d) at step \"%s\"\n", label,
			WEXITSTATUS(st), g_steps[slot]);
	return false;
}

/* Run fn in a child and wait for it (secs: the parent's limit). */
static bool run_child(const char *label, unsigned secs, void (*fn)(void *),
		      void *arg)
{
	pid_t p = spawn(0, label, fn, arg);
	return reap(p, 0, label, secs);
}

/* Files and shm names this test owns: removed at the end, and also when
 * the test process dies of a FAIL (abort) or its own alarm. */
static char g_paths[8][256];
static int g_npaths;
static pid_t g_owner;

static void cleanup_paths(void)
{
	if (getpid() != g_owner)
		return;
	for (int i = 0; i < g_npaths; i++)
		unlink(g_paths[i]);
}
static void cleanup_sig(int sig)
{
	cleanup_paths();
	signal(sig, SIG_DFL);
	raise(sig);
}
static const char *own_path(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static const char *own_path(const char *fmt, ...)
{
	ASSERT(g_npaths < 8);
	if (!g_owner) {
		g_owner = getpid();
		signal(SIGABRT, cleanup_sig);
		signal(SIGALRM, cleanup_sig);
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_paths[g_npaths], sizeof g_paths[0], fmt, ap);
	va_end(ap);
	unlink(g_paths[g_npaths]);
	return g_paths[g_npaths++];
}

static void copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC);
	ASSERT(in >= 0);
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ASSERT(out >= 0);
	static char buf[1 << 16];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		ASSERT_EQ(write(out, buf, (size_t)n), n);
	ASSERT_EQ(n, 0);
	close(in);
	ASSERT_EQ(close(out), 0);
}

/* ---- helpers: the segment format on a mapping of our own ---------------- */

struct map {
	unsigned char *base;
	size_t len;
};

static struct map map_fd(int fd)
{
	struct stat st;
	ASSERT_EQ(fstat(fd, &st), 0);
	struct map m = { NULL, (size_t)st.st_size };
	m.base = mmap(NULL, m.len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(m.base != MAP_FAILED);
	return m;
}

static void unmap(struct map *m)
{
	munmap(m->base, m->len);
	m->base = NULL;
}

static shval__hdr *hdr_of(struct map *m)
{
	return (shval__hdr *)m->base;
}

/* The entry named name, found by walking the directory table. */
static shval__entry *entry_of(struct map *m, const char *name)
{
	uint64_t toff = atomic_load(&hdr_of(m)->table_off);
	ASSERT(toff + SHVAL__LINE <= m->len);
	uint64_t cap;
	memcpy(&cap, m->base + toff, 8);
	ASSERT(cap >= 16 && toff + SHVAL__LINE + cap * 8 <= m->len);
	const uint64_t *slots = (const uint64_t *)(m->base + toff + SHVAL__LINE);
	size_t len = strlen(name);
	for (uint64_t i = 0; i < cap; i++) {
		uint64_t s = slots[i];
		if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB)
			continue;
		uint64_t off = (s & 0xffffffffull) * SHVAL__LINE;
		ASSERT(off + sizeof(shval__entry) <= m->len);
		shval__entry *e = (shval__entry *)(m->base + off);
		if (e->name_len == len && memcmp(e->name, name, len) == 0)
			return e;
	}
	FAIL("no entry %s in the mapping", name);
}

static shval__lockblk *lock_of(struct map *m, const char *name)
{
	shval__entry *e = entry_of(m, name);
	ASSERT(e->lock_off >= sizeof(shval__hdr) &&
	       e->lock_off + sizeof(shval__lockblk) <= m->len);
	return (shval__lockblk *)(m->base + e->lock_off);
}

static unsigned char *data_of(shval__entry *e)
{
	return (unsigned char *)e + e->data_rel;
}

static unsigned char *undo_of(shval__entry *e, uint64_t size)
{
	return (unsigned char *)e + shval__undo_rel(e->data_rel, size);
}

static void set_lock_word(pthread_mutex_t *mu, unsigned word, int owner)
{
	__atomic_store_n(&mu->__data.__lock, (int)word, __ATOMIC_SEQ_CST);
	__atomic_store_n(&mu->__data.__owner, owner, __ATOMIC_SEQ_CST);
}

static pid_t my_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* A pid that was just used and is now dead (reaped). */
static pid_t dead_pid(void)
{
	pid_t p = fork();
	ASSERT(p >= 0);
	if (p == 0)
		_exit(0);
	ASSERT_EQ(waitpid(p, NULL, 0), p);
	return p;
}

/* A process that sleeps until killed (alarm: never outlives the test). */
static pid_t sleeper(void)
{
	pid_t p = fork();
	ASSERT(p >= 0);
	if (p == 0) {
		alarm(120);
		for (;;)
			pause();
	}
	return p;
}

static void kill_wait(pid_t p)
{
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
}

/* A pipe to tell the parent "ready". */
static void tell(int fd)
{
	char c = 1;
	ASSERT_EQ(write(fd, &c, 1), 1);
}
static bool heard(int fd, unsigned secs)
{
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n == 1)
			return true;
		if (n == 0)
			return false;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > (time_t)secs)
			return false;
		usleep(2000);
	}
}

/* ---- a reader process, commanded through pipes -------------------------- */

struct reply {
	int rc;
	int64_t x;
	uint64_t version;
};

struct reader {
	pid_t pid;
	int cmd, rep;
};

static void reader_loop(shval *v, int cmd, int rep)
{
	alarm(60);
	char c;
	while (read(cmd, &c, 1) == 1 && c == 'r') {
		struct reply r;
		alarm(10); /* a read that hangs kills the reader */
		r.rc = shval_get_i64(v, &r.x);
		r.version = shval_value_version(v);
		alarm(60);
		if (write(rep, &r, sizeof r) != (ssize_t)sizeof r)
			_exit(2);
	}
	_exit(0);
}

static struct reader reader_start(shval *v)
{
	int a[2], b[2];
	ASSERT_EQ(pipe(a), 0);
	ASSERT_EQ(pipe(b), 0);
	pid_t p = fork();
	ASSERT(p >= 0);
	if (p == 0) {
		close(a[1]);
		close(b[0]);
		reader_loop(v, a[0], b[1]);
	}
	close(a[0]);
	close(b[1]);
	return (struct reader){ p, a[1], b[0] };
}

/* One read in the reader process; rc = -ETIMEDOUT if it did not answer. */
static struct reply reader_get(struct reader *r)
{
	struct reply rep = { -ETIMEDOUT, 0, 0 };
	char c = 'r';
	ASSERT_EQ(write(r->cmd, &c, 1), 1);
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	size_t got = 0;
	fcntl(r->rep, F_SETFL, O_NONBLOCK);
	while (got < sizeof rep) {
		ssize_t n = read(r->rep, (char *)&rep + got, sizeof rep - got);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			rep.rc = -EPIPE; /* the reader died (its alarm: a hang) */
			return rep;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 12) {
			rep.rc = -ETIMEDOUT;
			return rep;
		}
		usleep(1000);
	}
	return rep;
}

static void reader_stop(struct reader *r)
{
	close(r->cmd);
	close(r->rep);
	kill_wait(r->pid);
}

/* ========================================================================
 * Nested sections; a section that changes nothing.
 * ===================================================================== */

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

/* Another process tries the lock: 0 (taken and released), -EBUSY, or a
 * code; its result is in the exit status. */
struct try_arg {
	shval *v;
	int want; /* expected trylock result */
	int want2; /* also accepted (or 1: none) */
};
static void try_child(void *arg)
{
	struct try_arg *a = arg;
	step(10, "another process's shval_trylock");
	int r = shval_trylock(a->v);
	if (r == 0 || r == SHVAL_EOWNERDEAD) {
		step(10, "another process's shval_unlock");
		CK_OK(shval_unlock(a->v));
	}
	step(10, "another process's shval_trylock (its result)");
	CK(r == a->want || r == a->want2,
	   "shval_trylock returned %d (%s), expected %d (%s)", r,
	   shval_strerror(r), a->want, shval_strerror(a->want));
}

static bool trylock_elsewhere(shval *v, int want, int want2, const char *label)
{
	struct try_arg a = { v, want, want2 };
	return run_child(label, 15, try_child, &a);
}

/* Read in another process: the value must be want. */
struct get_arg {
	shval *v;
	int64_t want;
};
static void get_child(void *arg)
{
	struct get_arg *a = arg;
	int64_t x = 0;
	step(10, "another process's shval_get_i64");
	CK_OK(shval_get_i64(a->v, &x));
	CK(x == a->want, "read %lld, want %lld", (long long)x, (long long)a->want);
}
static bool value_elsewhere(shval *v, int64_t want, const char *label)
{
	struct get_arg a = { v, want };
	return run_child(label, 15, get_child, &a);
}

/* Child A: lock, change inside (uncommitted), tell, wait to be killed. */
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
		int r = shval_add_i64(a->v, 1, &res);
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

	/* again, now through a library call that takes the lock itself */
	inject_stale(v, a->s, a->how, tid);
	int64_t res = 0;
	step(10, "shval_add_i64 with a stale owner field");
	CK_OK(shval_add_i64(v, 1, &res));
	CK(res == 8, "add result %lld, want 8", (long long)res);
	step(20, "reader in another process after the add");
	CK(value_elsewhere(v, 8, "reader after the add"), "the add is not visible");
	step(20, "another process's trylock after the add");
	CK(trylock_elsewhere(v, 0, 1, "trylock after the add"),
	   "the lock is not free after the add");
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
	struct fholder_arg *a = malloc(sizeof *a);
	ASSERT(a);
	*a = (struct fholder_arg){ segname, seg_lock, pf[1] };
	pid_t h = spawn(1, "holder A", file_holder, a);
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

static void count_cb(const shval_problem *p, void *arg)
{
	printf("    verify: [%s] %s%s (%s)\n", p->name, p->what,
	       p->repaired ? " (repaired)" : "", shval_errname(p->code));
	++*(int *)arg;
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

/* ========================================================================
 * Finding 3: damaged mutex kind and lock words.
 * ===================================================================== */

enum lw { LW_ZERO, LW_OWN, LW_LIVE, LW_DEAD, LW_DIED, NLW };
static const char *lw_name[NLW] = { "0", "own tid", "live other tid", "dead tid",
				    "FUTEX_OWNER_DIED" };
enum op { OP_SET, OP_ADD, OP_LOCK, OP_CREATE, OP_VERIFY, NOP };
static const char *op_name[NOP] = { "shval_set_i64", "shval_add_i64", "shval_lock",
				    "shval_create (segment lock damaged)",
				    "shval_seg_verify(REPAIR)" };

static unsigned char *base_image;
static size_t base_len;

static void build_base_image(void)
{
	shval_seg_opts o = { .struct_size = sizeof o, .initial_size = 65536,
			     .max_size = 1u << 22 };
	shval_seg *s;
	shval *v;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, &o, &s));
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_set_i64(v, 1));
	shval_close(v);
	struct stat st;
	ASSERT_EQ(fstat(shval_seg_fd(s), &st), 0);
	base_len = (size_t)st.st_size;
	base_image = malloc(base_len);
	ASSERT(base_image);
	ASSERT_EQ(pread(shval_seg_fd(s), base_image, base_len, 0), (ssize_t)base_len);
	ASSERT_OK(shval_seg_close(s));
}

static int memfd_copy(void)
{
	int fd = memfd_create("shval-locks", MFD_CLOEXEC);
	ASSERT(fd >= 0);
	ASSERT_EQ(pwrite(fd, base_image, base_len, 0), (ssize_t)base_len);
	return fd;
}

struct dmg_arg {
	int kind;       /* the damaged kind word */
	enum lw lw;
	enum op op;
	pid_t live, dead;
};

static void damage(pthread_mutex_t *mu, const struct dmg_arg *a)
{
	unsigned word = 0;
	int owner = 0;
	switch (a->lw) {
	case LW_ZERO: break;
	case LW_OWN: word = (unsigned)my_tid(); owner = (int)word; break;
	case LW_LIVE: word = (unsigned)a->live; owner = (int)word; break;
	case LW_DEAD: word = (unsigned)a->dead; owner = (int)word; break;
	case LW_DIED: word = FUTEX_OWNER_DIED_; owner = (int)a->dead; break;
	default: break;
	}
	__atomic_store_n(&mu->__data.__kind, a->kind, __ATOMIC_SEQ_CST);
	set_lock_word(mu, word, owner);
}

static void damaged_child(void *arg)
{
	struct dmg_arg *a = arg;
	int fd = memfd_copy();
	shval_seg *s;
	shval *v;
	step(10, "open the image (before damage)");
	CK_OK(shval_seg_open_fd(fd, 0, &s));
	CK_OK(shval_find(s, "v", NULL, &v));
	struct map m = map_fd(fd);
	pthread_mutex_t *mu = a->op == OP_CREATE ? &hdr_of(&m)->lock
						 : &lock_of(&m, "v")->mutex;
	damage(mu, a);
	bool dead = a->lw == LW_DEAD || a->lw == LW_DIED;
	int r;
	int64_t res;
	shval *w = NULL;
	step(10, "%s", op_name[a->op]);
	switch (a->op) {
	case OP_SET:
		r = shval_set_i64(v, 2);
		CK(r == 0 || r == SHVAL_ECORRUPT, "shval_set_i64 returned %d (%s)",
		   r, shval_strerror(r));
		break;
	case OP_ADD:
		r = shval_add_i64(v, 1, &res);
		CK(r == 0 || r == SHVAL_ECORRUPT, "shval_add_i64 returned %d (%s)",
		   r, shval_strerror(r));
		break;
	case OP_LOCK:
		r = shval_lock(v);
		CK(r == 0 || r == SHVAL_ECORRUPT || (dead && r == SHVAL_EOWNERDEAD),
		   "shval_lock returned %d (%s)", r, shval_strerror(r));
		if (r == 0 || r == SHVAL_EOWNERDEAD) {
			step(10, "shval_unlock after %s", shval_errname(r));
			CK_OK(shval_unlock(v));
		}
		break;
	case OP_CREATE:
		r = shval_create(s, "w", "q", SHVAL_RLOCK, NULL, 0, &w);
		CK(r == 0 || r == SHVAL_ECORRUPT, "shval_create returned %d (%s)",
		   r, shval_strerror(r));
		shval_close(w);
		w = NULL;
		step(10, "a second writable open of the segment");
		shval_seg *s2 = NULL;
		r = shval_seg_open_fd(fd, 0, &s2);
		CK(r == 0 || r == SHVAL_ECORRUPT,
		   "shval_seg_open_fd returned %d (%s)", r, shval_strerror(r));
		if (s2) {
			step(10, "close of the second open");
			shval_seg_close(s2);
		}
		break;
	case OP_VERIFY:
	default:
		break;
	}
	step(10, "shval_seg_verify(REPAIR)");
	size_t n = 0;
	r = shval_seg_verify(s, SHVAL_VERIFY_REPAIR, NULL, NULL, &n);
	CK(r == 0 || r == SHVAL_ECORRUPT, "verify REPAIR returned %d (%s)", r,
	   shval_strerror(r));
	if (a->op == OP_VERIFY || a->op == OP_CREATE)
		CK(r == 0, "verify REPAIR left problems: %d (%s), %zu found: %s", r,
		   shval_strerror(r), n, shval_errmsg(s));
	step(10, "shval_set_i64 after the repair");
	CK_OK(shval_set_i64(v, 42));
	step(10, "shval_add_i64 after the repair");
	CK_OK(shval_add_i64(v, 1, &res));
	CK(res == 43, "add result %lld, want 43", (long long)res);
	step(10, "shval_lock/unlock after the repair");
	r = shval_lock(v);
	CK(r == 0, "shval_lock after the repair returned %d (%s)", r,
	   shval_strerror(r));
	CK_OK(shval_unlock(v));
	if (a->op == OP_CREATE) {
		step(10, "shval_create after the repair");
		CK_OK(shval_create(s, "w2", "q", SHVAL_RLOCK, NULL, 0, &w));
		shval_close(w);
	}
	step(10, "close");
	shval_close(v);
	shval_seg_close(s);
	unmap(&m);
}

static void damaged_kind_case(int kind, const char *kname)
{
	steps_init();
	build_base_image();
	/* the kind glibc gave the value's lock: damage is relative to it */
	{
		int fd = memfd_copy();
		struct map m = map_fd(fd);
		int k0 = lock_of(&m, "v")->mutex.__data.__kind;
		unmap(&m);
		close(fd);
		if (strcmp(kname, "PI bit set") == 0)
			kind = k0 | MUTEX_KIND_PI;
		else if (strcmp(kname, "PP bit set") == 0)
			kind = k0 | MUTEX_KIND_PP;
		else if (strcmp(kname, "robust bit cleared") == 0)
			kind = k0 & ~MUTEX_KIND_ROBUST;
		printf("kind word: %s: 0x%x (was 0x%x)\n", kname, (unsigned)kind,
		       (unsigned)k0);
	}
	pid_t live = sleeper();
	pid_t dead = dead_pid();
	static struct dmg_arg args[NLW * NOP];
	static char labels[NLW * NOP][160];
	pid_t pids[NLW * NOP];
	int n = 0;
	for (int lw = 0; lw < NLW; lw++)
		for (int op = 0; op < NOP; op++, n++) {
			args[n] = (struct dmg_arg){ kind, lw, op, live, dead };
			snprintf(labels[n], sizeof labels[n],
				 "kind %s (0x%x), lock word %s, %s", kname,
				 (unsigned)kind, lw_name[lw], op_name[op]);
			pids[n] = spawn(n, labels[n], damaged_child, &args[n]);
		}
	int bad = 0;
	for (int i = 0; i < n; i++)
		if (!reap(pids[i], i, labels[i], 60))
			bad++;
	kill_wait(live);
	if (bad)
		FAIL("%d of %d combinations failed, hung or crashed (see above)", bad,
		     n);
}

TEST(damaged_mutex_kind_pi)
{
	damaged_kind_case(0, "PI bit set");
}
TEST(damaged_mutex_kind_pp)
{
	damaged_kind_case(0, "PP bit set");
}
TEST(damaged_mutex_kind_not_robust)
{
	damaged_kind_case(0, "robust bit cleared");
}
TEST(damaged_mutex_kind_zero)
{
	damaged_kind_case(0, "0");
}
TEST(damaged_mutex_kind_all_ones)
{
	damaged_kind_case((int)0xffffffffu, "0xffffffff");
}
TEST(damaged_mutex_kind_random)
{
	/* fixed seed, so that a failure reproduces */
	uint64_t x = 0x5eed5eed12345678ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	damaged_kind_case((int)(uint32_t)x, "random");
}

/* A damaged kind word with the lock word free: every way into a section
 * (a library call's inline fast path, shval_lock) is refused with
 * SHVAL_ECORRUPT and a message, before any pthread call, and the value is
 * unchanged.  (Above, a combination may also succeed: some damaged kinds
 * happen to work as a lock; here they must not be used at all.) */
static void refused_child(void *arg)
{
	struct dmg_arg *a = arg;
	int fd = memfd_copy();
	shval_seg *s;
	shval *v;
	step(10, "open the image (before damage)");
	CK_OK(shval_seg_open_fd(fd, 0, &s));
	CK_OK(shval_find(s, "v", NULL, &v));
	struct map m = map_fd(fd);
	damage(&lock_of(&m, "v")->mutex, a);
	int64_t res = 0, x = 0;
	step(10, "shval_set_i64 on a lock with a damaged kind word");
	int r = shval_set_i64(v, 2);
	CK(r == SHVAL_ECORRUPT && shval_errmsg(s)[0],
	   "shval_set_i64 returned %d (%s), want SHVAL_ECORRUPT with a message", r,
	   shval_strerror(r));
	step(10, "shval_add_i64 on a lock with a damaged kind word");
	r = shval_add_i64(v, 1, &res);
	CK(r == SHVAL_ECORRUPT, "shval_add_i64 returned %d (%s), want SHVAL_ECORRUPT",
	   r, shval_strerror(r));
	step(10, "shval_lock on a lock with a damaged kind word");
	r = shval_lock(v);
	CK(r == SHVAL_ECORRUPT, "shval_lock returned %d (%s), want SHVAL_ECORRUPT", r,
	   shval_strerror(r));
	if (r == 0 || r == SHVAL_EOWNERDEAD)
		shval_unlock(v);
	step(10, "shval_get_i64 (readers do not lock)");
	CK_OK(shval_get_i64(v, &x));
	CK(x == 1, "value %lld, want 1 (changed under a damaged lock)", (long long)x);
	step(10, "close");
	shval_close(v);
	shval_seg_close(s);
	unmap(&m);
}

TEST(damaged_mutex_kind_refused)
{
	steps_init();
	build_base_image();
	int k0;
	{
		int fd = memfd_copy();
		struct map m = map_fd(fd);
		k0 = lock_of(&m, "v")->mutex.__data.__kind;
		unmap(&m);
		close(fd);
	}
	uint64_t x = 0x5eed5eed12345678ull;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	const int kinds[] = { k0 | MUTEX_KIND_PI, k0 | MUTEX_KIND_PP,
			      k0 & ~MUTEX_KIND_ROBUST, 0, (int)0xffffffffu,
			      (int)(uint32_t)x };
	const char *names[] = { "PI bit set", "PP bit set", "robust bit cleared",
				"0", "0xffffffff", "random" };
	enum { NK = sizeof kinds / sizeof *kinds };
	static struct dmg_arg args[NK];
	static char labels[NK][120];
	pid_t pids[NK];
	for (int i = 0; i < NK; i++) {
		args[i] = (struct dmg_arg){ kinds[i], LW_ZERO, OP_SET, 0, 0 };
		snprintf(labels[i], sizeof labels[i], "kind %s (0x%x), lock word 0",
			 names[i], (unsigned)kinds[i]);
		pids[i] = spawn(i, labels[i], refused_child, &args[i]);
	}
	int bad = 0;
	for (int i = 0; i < NK; i++)
		if (!reap(pids[i], i, labels[i], 30))
			bad++;
	if (bad)
		FAIL("%d of %d damaged kinds were not refused (see above)", bad, NK);
}

/* ========================================================================
 * Finding 4: a WRITING bit stuck in a version word, lock free.
 * ===================================================================== */

static void get_in_child(void *arg)
{
	shval *v = arg;
	int64_t x = -1, y = -1;
	step(5, "shval_get_i64 with WRITING stuck");
	CK_OK(shval_get_i64(v, &x));
	step(5, "shval_read with WRITING stuck");
	CK_OK(shval_read(v, &y, sizeof y));
	printf("    reader: get %lld, read %lld\n", (long long)x, (long long)y);
	CK(x == 7 && y == 7, "readers see %lld / %lld, want 7 (the last commit)",
	   (long long)x, (long long)y);
}

TEST(stuck_writing_bit_small_value)
{
	steps_init();
	shval_seg *s;
	shval *v;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_set_i64(v, 7));
	struct map m = map_fd(shval_seg_fd(s));
	shval__entry *e = entry_of(&m, "v");
	/* what a writer killed mid-section leaves, minus the lock: the undo
	 * copy holds the last commit, the data is half-written */
	int64_t seven = 7, junk = 666;
	memcpy(undo_of(e, 8), &seven, 8);
	memcpy(data_of(e), &junk, 8);
	atomic_fetch_or(&e->version, SHVAL__V_WRITING);

	SOFT(run_child("reader, WRITING stuck", 12, get_in_child, v),
	     "readers return the last committed value promptly");

	int found = 0;
	size_t n = 0;
	step(10, "verify DEEP");
	int r = shval_seg_verify(s, SHVAL_VERIFY_DEEP, count_cb, &found, &n);
	SOFT(r == SHVAL_ECORRUPT && n >= 1,
	     "verify DEEP: %d (%s), %zu problem(s): the stuck WRITING bit is not "
	     "reported",
	     r, shval_strerror(r), n);
	step(10, "verify REPAIR");
	r = shval_seg_verify(s, SHVAL_VERIFY_REPAIR, count_cb, &found, &n);
	SOFT(r == 0, "verify REPAIR: %d (%s), %zu problem(s)", r, shval_strerror(r), n);
	SOFT(!(atomic_load(&e->version) & SHVAL__V_WRITING),
	     "the WRITING bit is still set after the repair");
	int64_t d;
	memcpy(&d, data_of(e), 8);
	SOFT(d == 7, "data after the repair: %lld, want 7 (the last commit)",
	     (long long)d);
	step(10, "verify DEEP after the repair");
	r = shval_seg_verify(s, SHVAL_VERIFY_DEEP, count_cb, &found, &n);
	SOFT(r == 0 && n == 0, "verify after repair: %d, %zu problem(s)", r, n);

	step(10, "shval_set_i64(v, 5)");
	r = shval_set_i64(v, 5);
	alarm(0);
	SOFT(r == 0, "shval_set_i64: %d (%s)", r, shval_strerror(r));
	SOFT(value_elsewhere(v, 5, "reader after set 5"),
	     "a reader in another process sees the 5");
	SOFT(!(atomic_load(&e->version) & SHVAL__V_WRITING),
	     "the WRITING bit is set after shval_set_i64");
	unmap(&m);
	shval_close(v);
	shval_seg_close(s);
	soft_end();
}

#define BIGN 20000

struct big_arg {
	shval_seg *s;
	const char *name;
	unsigned flags; /* 0 or SHVAL_RDONLY: how the reader opens */
	int64_t want;   /* consistent data expected when rc == 0, or -1 */
	unsigned limit; /* seconds */
};

static void big_read_child(void *arg)
{
	struct big_arg *a = arg;
	shval_seg *s;
	shval *v;
	step(10, "%s open", a->flags ? "read-only" : "writable");
	/* FOREIGN: the stopped-writer case lends the file to another uid */
	CK_OK(shval_seg_open_fd(shval_seg_fd(a->s), a->flags | SHVAL_FOREIGN, &s));
	CK_OK(shval_find(s, a->name, NULL, &v));
	static int64_t buf[BIGN];
	uint64_t t0 = shval__now_ns();
	step(a->limit, "shval_read of %d q (%s open)", BIGN,
	     a->flags ? "read-only" : "writable");
	int r = shval_read(v, buf, sizeof buf);
	double dt = (shval__now_ns() - t0) / 1e9;
	alarm(0);
	printf("    [%s open] shval_read: %d (%s) after %.2f s%s%s\n",
	       a->flags ? "read-only" : "writable", r, shval_errname(r), dt,
	       r ? ": " : "", r ? shval_errmsg(s) : "");
	if (r == 0 && a->want >= 0) {
		for (int i = 0; i < BIGN; i++)
			CK(buf[i] == a->want, "element %d = %lld, want %lld (torn?)",
			   i, (long long)buf[i], (long long)a->want);
	}
	if (r == 0 && a->want < 0) {
		for (int i = 1; i < BIGN; i++)
			CK(buf[i] == buf[0], "element %d = %lld, element 0 = %lld",
			   i, (long long)buf[i], (long long)buf[0]);
	}
	if (r)
		CK(shval_errmsg(s)[0] != 0, "error %d without a message", r);
	shval_close(v);
	shval_seg_close(s);
}

TEST(stuck_writing_bit_big_value)
{
	steps_init();
	shval_seg *s;
	shval *v;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	ASSERT_OK(shval_create(s, "big", "20000q", SHVAL_RLOCK, NULL, 0, &v));
	static int64_t buf[BIGN];
	for (int i = 0; i < BIGN; i++)
		buf[i] = 3;
	ASSERT_OK(shval_write(v, buf, sizeof buf));
	struct map m = map_fd(shval_seg_fd(s));
	shval__entry *e = entry_of(&m, "big");
	atomic_fetch_or(&e->version, SHVAL__V_WRITING);

	int found = 0;
	size_t n = 0;
	/* verify before any reader: a writable reader repairs what it meets */
	step(10, "verify DEEP");
	int r = shval_seg_verify(s, SHVAL_VERIFY_DEEP, count_cb, &found, &n);
	SOFT(r == SHVAL_ECORRUPT && n >= 1,
	     "verify DEEP: %d (%s), %zu problem(s): the stuck WRITING bit is not "
	     "reported",
	     r, shval_strerror(r), n);

	/* data is whole (all 3): a reader may return it, or an error */
	struct big_arg a = { s, "big", 0, 3, 12 };
	struct big_arg ar = { s, "big", SHVAL_RDONLY, 3, 12 };
	pid_t p1 = spawn(1, "writable reader", big_read_child, &a);
	pid_t p2 = spawn(2, "read-only reader", big_read_child, &ar);
	SOFT(reap(p1, 1, "writable reader, WRITING stuck (no undo copy)", 16),
	     "shval_read returns in bounded time");
	SOFT(reap(p2, 2, "read-only reader, WRITING stuck (no undo copy)", 16),
	     "read-only shval_read returns in bounded time");

	step(10, "verify REPAIR");
	r = shval_seg_verify(s, SHVAL_VERIFY_REPAIR, count_cb, &found, &n);
	SOFT(r == 0, "verify REPAIR: %d (%s), %zu problem(s)", r, shval_strerror(r), n);
	alarm(0);
	SOFT(!(atomic_load(&e->version) & SHVAL__V_WRITING),
	     "the WRITING bit is still set after the repair");
	struct shval_info info;
	ASSERT_OK(shval_info(v, &info));
	printf("after repair: flags 0x%x%s\n", info.flags,
	       info.flags & SHVAL_INFO_PARTIAL ? " (partial)" : "");

	/* a full write; readers see it (and PARTIAL is gone) */
	for (int i = 0; i < BIGN; i++)
		buf[i] = 9;
	step(10, "shval_write after the repair");
	r = shval_write(v, buf, sizeof buf);
	alarm(0);
	SOFT(r == 0, "shval_write: %d (%s)", r, shval_strerror(r));
	ASSERT_OK(shval_info(v, &info));
	SOFT(!(info.flags & SHVAL_INFO_PARTIAL), "PARTIAL after a full write");
	a.flags = 0;
	a.want = 9;
	a.limit = 5;
	SOFT(run_child("reader after the full write", 10, big_read_child, &a),
	     "readers see the full write");
	unmap(&m);
	shval_close(v);
	shval_seg_close(s);
	soft_end();
}

/* ========================================================================
 * Finding 5: a stopped writer of a big value.
 * ===================================================================== */

static void stopped_writer(void *arg)
{
	shval *v = arg;
	alarm(0);
	step(10, "writer: shval_lock");
	CK_OK(shval_lock(v));
	int64_t *p = shval_data(v);
	CK(p != NULL, "shval_data");
	for (int i = 0; i < BIGN; i++)
		p[i] = 2;
	step(0, "writer: stopped (SIGSTOP) inside its section");
	raise(SIGSTOP);
	step(10, "writer: shval_unlock after SIGCONT");
	CK_OK(shval_unlock(v));
}

#ifdef SHVAL_CLI_PATH
/* The CLI, run as uid (unless (uid_t)-1) for at most secs seconds, its
 * stdout and stderr in a file of ours. */
struct cli_run {
	pid_t pid;
	const char *out;
	uint64_t t0;
	unsigned secs;
};

static struct cli_run cli_start(const char *const *argv, unsigned secs, uid_t uid)
{
	struct cli_run c = { 0, own_path("/tmp/shvaltest.%d.cli.%s", (int)getpid(),
					  argv[1]),
			     shval__now_ns(), secs };
	c.pid = fork();
	ASSERT(c.pid >= 0);
	if (c.pid == 0) {
		int fd = open(c.out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			_exit(126);
		dup2(fd, 1);
		dup2(fd, 2);
		if (uid != (uid_t)-1 && (setgid(uid) != 0 || setuid(uid) != 0))
			_exit(126);
		alarm(secs); /* survives exec */
		execv(SHVAL_CLI_PATH, (char *const *)argv);
		_exit(127);
	}
	return c;
}

/* Its exit status (-1: it hung), output in out, run time in *elapsed. */
static int cli_finish(struct cli_run *c, char *out, size_t cap, double *elapsed)
{
	int st = 0;
	bool hung = false;
	for (;;) {
		if (waitpid(c->pid, &st, WNOHANG) == c->pid)
			break;
		if (shval__now_ns() - c->t0 > (uint64_t)(c->secs + 3) * 1000000000ull) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &st, 0);
			hung = true;
			break;
		}
		usleep(5000);
	}
	*elapsed = (shval__now_ns() - c->t0) / 1e9;
	out[0] = 0;
	int fd = open(c->out, O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, out, cap - 1);
		out[n > 0 ? n : 0] = 0;
		close(fd);
	}
	unlink(c->out);
	if (hung || (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM))
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
#endif

TEST(stopped_writer_of_big_value)
{
	steps_init();
	const char *name = test_segname("stopped");
	own_path("/dev/shm%s", name);
	shval_seg *s;
	shval *v;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	ASSERT_OK(shval_create(s, "big", "20000q", SHVAL_RLOCK, NULL, 0, &v));
	static int64_t buf[BIGN];
	for (int i = 0; i < BIGN; i++)
		buf[i] = 1;
	ASSERT_OK(shval_write(v, buf, sizeof buf));

	pid_t w = spawn(1, "stopped writer", stopped_writer, v);
	int st;
	ASSERT_EQ(waitpid(w, &st, WUNTRACED), w);
	if (!WIFSTOPPED(st))
		FAIL("the writer did not stop (status 0x%x, step %s)", st, g_steps[1]);

	/* Everything at once (each bounded): library readers must return old
	 * data or an error with a message within 12 s; the CLI, with read
	 * permission only, `get`, `show` and `check` within 15 s, and check
	 * (without --repair) must not need a writable open. */
	struct big_arg a = { s, "big", 0, 1, 12 };
	struct big_arg ar = { s, "big", SHVAL_RDONLY, 1, 12 };
	pid_t p1 = spawn(2, "writable reader", big_read_child, &a);
	pid_t p2 = spawn(3, "read-only reader", big_read_child, &ar);
#ifdef SHVAL_CLI_PATH
	uid_t uid = (uid_t)-1;
	if (geteuid() == 0) {
		struct passwd *pw = getpwnam("nobody");
		uid = pw ? pw->pw_uid : 65534;
		ASSERT_EQ(fchown(shval_seg_fd(s), uid, uid), 0);
	}
	ASSERT_EQ(fchmod(shval_seg_fd(s), 0400), 0);
	const char *get[] = { "shval", "get", name, "big", NULL };
	const char *show[] = { "shval", "show", name, NULL };
	const char *check[] = { "shval", "check", name, "--json", NULL };
	struct cli_run cg = cli_start(get, 15, uid);
	struct cli_run cs = cli_start(show, 15, uid);
	struct cli_run cc = cli_start(check, 15, uid);
#else
	printf("SHVAL_CLI_PATH not defined: CLI checks skipped\n");
#endif
	SOFT(reap(p1, 2, "writable reader vs a stopped writer", 16),
	     "shval_read returns within 12 s");
	SOFT(reap(p2, 3, "read-only reader vs a stopped writer", 16),
	     "read-only shval_read returns within 12 s");
#ifdef SHVAL_CLI_PATH
	static char out[1 << 16];
	double dt;
	int rc = cli_finish(&cg, out, sizeof out, &dt);
	printf("shval get: status %d (collected at %.2f s): %.200s\n", rc, dt, out);
	SOFT(rc >= 0, "`shval get SEG big` hung (> 15 s) behind a stopped writer");
	SOFT(rc < 0 || rc == 0 || strlen(out) > 0,
	     "`shval get` failed without a message");
	if (rc == 0) /* then the committed data: 20000 ones */
		SOFT(strncmp(out, "1 1 1", 5) == 0 && !strchr(out, '2'),
		     "`shval get` printed other than the committed data");
	rc = cli_finish(&cs, out, sizeof out, &dt);
	printf("shval show: status %d (collected at %.2f s): %.200s\n", rc, dt, out);
	SOFT(rc >= 0, "`shval show SEG` hung (> 15 s) behind a stopped writer");
	rc = cli_finish(&cc, out, sizeof out, &dt);
	printf("shval check: status %d (collected at %.2f s): %.300s\n", rc, dt, out);
	SOFT(rc >= 0, "`shval check SEG` hung (> 15 s) behind a stopped writer");
	SOFT(rc < 0 || strstr(out, "\"checked\""),
	     "`shval check` did not run with read permission only: status %d",
	     rc);
	SOFT(!strstr(out, "Permission denied") && !strstr(out, "EACCES"),
	     "`shval check` without --repair asked for write permission");
	if (geteuid() == 0)
		ASSERT_EQ(fchown(shval_seg_fd(s), 0, 0), 0);
	ASSERT_EQ(fchmod(shval_seg_fd(s), 0600), 0);
#endif

	/* the writer goes on: readers see its data */
	ASSERT_EQ(kill(w, SIGCONT), 0);
	SOFT(reap(w, 1, "stopped writer", 15), "the writer unlocks after SIGCONT");
	a.flags = 0;
	a.want = 2;
	a.limit = 5;
	SOFT(run_child("reader after the writer's unlock", 10, big_read_child, &a),
	     "readers see the writer's data");
	shval_close(v);
	shval_seg_close(s);
	shval_seg_unlink(name);
	soft_end();
}

TEST_MAIN()
