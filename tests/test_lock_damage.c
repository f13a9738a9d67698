/*
 * tests/test_lock_damage.c — damaged locks (findings 3 to 5 of the list
 * in test_locks.c): damaged mutex kind and lock words, a WRITING bit
 * stuck in a version word, a stopped writer of a big value (library and
 * CLI readers).
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
