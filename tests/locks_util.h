/*
 * tests/locks_util.h — helpers of the lock tests (test_locks, test_lock_stale,
 * test_lock_damage): steps and soft failures, children with a time limit,
 * paths removed on exit, the segment format on a mapping of our own, a
 * reader process commanded through pipes, a lock tried or a value read
 * from another process.
 */
#ifndef SHVAL_TEST_LOCKS_UTIL_H
#define SHVAL_TEST_LOCKS_UTIL_H

/* Not every test file uses every helper. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

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

static void count_cb(const shval_problem *p, void *arg)
{
	printf("    verify: [%s] %s%s (%s)\n", p->name, p->what,
	       p->repaired ? " (repaired)" : "", shval_errname(p->code));
	++*(int *)arg;
}

#pragma GCC diagnostic pop

#endif
