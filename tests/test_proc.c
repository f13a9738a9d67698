/*
 * tests/test_proc.c — multi-process and robustness tests: an unrelated
 * (exec'd) process opening by name or by fd, fork inheritance, growth
 * while attached, create races, removal and stale handles, space reuse,
 * temporary segments and SIGKILL, symlinks, read-only opens, file-backed
 * segments, another user, a full file system, damaged segments, and one
 * million values.
 */
#include <shval.h>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "format.h"
#include "test.h"

#ifndef HELPER_OPEN_PATH
#error "HELPER_OPEN_PATH must be defined by tests/CMakeLists.txt"
#endif

/* ---- helpers ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *shm_path(const char *name)
{
	static char buf[4][300];
	static int i;
	char *b = buf[i++ & 3];
	snprintf(b, 300, "/dev/shm%s", name);
	return b;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* A page shared by the test and its children. */
struct shared {
	_Atomic int go;
	_Atomic int ready;
	_Atomic int created;
	_Atomic int errors;
	_Atomic long counter;
	_Atomic int creator[64];
};

static struct shared *shared_page(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(p != MAP_FAILED);
	memset(p, 0, 4096);
	return p;
}

static void spin_until(_Atomic int *w, int v)
{
	while (atomic_load(w) < v)
		sched_yield();
}

/* Exit status of a child (signal -> 128 + sig). */
static int wait_status(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		FAIL("waitpid(%d): %s", (int)pid, strerror(errno));
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return WEXITSTATUS(st);
}

/* The values helper_open expects. */
static void setup_helper_values(shval_seg *s)
{
	shval *c, *g, *p;
	int64_t ten = 10;
	ASSERT_OK(shval_create(s, "counter", "q", SHVAL_ATOMIC, &ten, 8, &c));
	ASSERT_OK(shval_create(s, "greeting", "16s", 0, NULL, 0, &g));
	ASSERT_OK(shval_set_str(g, "hello\0world\0", 12));
	double xy[2] = { 1.5, -2 };
	ASSERT_OK(shval_create(s, "pt", "x:d y:d", SHVAL_LOCK, xy, sizeof xy, &p));
	shval_close(c);
	shval_close(g);
	shval_close(p);
}

static void check_helper_ran(shval_seg *s)
{
	shval *c, *h;
	int64_t x;
	ASSERT_OK(shval_find(s, "counter", "q", &c));
	ASSERT_OK(shval_get_i64(c, &x));
	ASSERT_EQ(x, 11);
	ASSERT_OK(shval_find(s, "from_helper", "i", &h));
	ASSERT_OK(shval_get_i64(h, &x));
	ASSERT_EQ(x, 42);
	shval_close(c);
	shval_close(h);
}

static pid_t run_helper(const char *mode, const char *arg, int keep_fd)
{
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		(void)keep_fd;
		execl(HELPER_OPEN_PATH, "helper_open", mode, arg, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", HELPER_OPEN_PATH, strerror(errno));
		_exit(127);
	}
	return pid;
}

/* ---- an unrelated process ---- */

TEST(exec_opens_by_name)
{
	const char *n = test_segname("exec");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	setup_helper_values(s);
	test_wait_ok(run_helper("name", n, -1));
	check_helper_ran(s);
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nalive, 1);    /* the helper detached on close */
	/* The slot claimed for the fork() child before its exec() stays
	 * until reaped: it is counted as attached (dead), not alive. */
	ASSERT_LE(si.nattached, 2);
	ASSERT_EQ(si.nvalues, 4);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

TEST(exec_inherits_anon_fd)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	setup_helper_values(s);
	int sfd = shval_seg_fd(s);
	ASSERT(sfd >= 0);
	ASSERT(fcntl(sfd, F_GETFD) & FD_CLOEXEC); /* not leaked by default */
	int fd = dup(sfd); /* dup() clears close-on-exec */
	ASSERT(fd >= 0);
	char arg[16];
	snprintf(arg, sizeof arg, "%d", fd);
	test_wait_ok(run_helper("fd", arg, fd));
	close(fd);
	check_helper_ran(s);
	/* and with the segment's own fd made inheritable */
	shval *c;
	ASSERT_OK(shval_find(s, "counter", "q", &c));
	ASSERT_OK(shval_set_i64(c, 10));
	ASSERT_OK(shval_remove(s, "from_helper"));
	ASSERT_EQ(fcntl(sfd, F_SETFD, 0), 0);
	snprintf(arg, sizeof arg, "%d", sfd);
	test_wait_ok(run_helper("fd", arg, sfd));
	check_helper_ran(s);
	shval_close(c);
	shval_seg_close(s);
}

static void send_fd(int sock, int fd)
{
	char byte = 'f';
	struct iovec iov = { &byte, 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof u);
	struct msghdr msg = { 0 };
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof u.buf;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof fd);
	ASSERT_EQ(sendmsg(sock, &msg, 0), 1);
}

TEST(anon_fd_over_scm_rights)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	setup_helper_values(s);
	int sv[2];
	ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	char arg[16];
	snprintf(arg, sizeof arg, "%d", sv[1]);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		/* forget the inherited segment entirely: only the fd counts */
		execl(HELPER_OPEN_PATH, "helper_open", "recv", arg, (char *)NULL);
		_exit(127);
	}
	close(sv[1]);
	send_fd(sv[0], shval_seg_fd(s));
	test_wait_ok(pid);
	close(sv[0]);
	check_helper_ran(s);
	/* a second attach of the same fd in this process works too */
	shval_seg *s2;
	ASSERT_OK(shval_seg_open_fd(shval_seg_fd(s), 0, &s2));
	shval *c;
	ASSERT_OK(shval_find(s2, "counter", "q", &c));
	ASSERT_OK(shval_add_i64(c, 1, NULL));
	shval_close(c);
	shval_seg_close(s2);
	ASSERT_OK(shval_find(s, "counter", "q", &c));
	int64_t x;
	ASSERT_OK(shval_get_i64(c, &x));
	ASSERT_EQ(x, 12);
	shval_close(c);
	/* an fd that is not a segment */
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	ASSERT_ERR(shval_seg_open_fd(p[0], 0, &s2), SHVAL_ECORRUPT);
	ASSERT(shval_errmsg(NULL)[0]);
	close(p[0]);
	close(p[1]);
	int mfd = memfd_create("junk", MFD_CLOEXEC);
	ASSERT(mfd >= 0);
	ASSERT_EQ(ftruncate(mfd, 65536), 0);
	ASSERT_ERR(shval_seg_open_fd(mfd, 0, &s2), SHVAL_ECORRUPT);
	close(mfd);
	shval_seg_close(s);
}

/* ---- fork ---- */

TEST(fork_inherits_anonymous)
{
	enum { NCHILD = 4, NITER = 20000 };
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	shval *at, *lk, *arr, *fl;
	ASSERT_OK(shval_create(s, "atomic", "q", SHVAL_ATOMIC, NULL, 0, &at));
	ASSERT_OK(shval_create(s, "locked", "q", SHVAL_RLOCK, NULL, 0, &lk));
	ASSERT_OK(shval_create(s, "arr", "8q", SHVAL_LOCK, NULL, 0, &arr));
	ASSERT_OK(shval_create(s, "fl", "d", SHVAL_ATOMIC, NULL, 0, &fl));
	int hold[2];
	ASSERT_EQ(pipe(hold), 0);
	struct shared *sh = shared_page();
	pid_t pids[NCHILD];
	for (int c = 0; c < NCHILD; c++) {
		pids[c] = fork();
		ASSERT(pids[c] >= 0);
		if (pids[c] == 0) {
			close(hold[1]);
			for (int i = 0; i < NITER; i++) {
				ASSERT_OK(shval_add_i64(at, 1, NULL));
				ASSERT_OK(shval_add_i64(lk, 2, NULL));
				ASSERT_OK(shval_add_f64(fl, 0.5, NULL));
				if (i % 10 == 0) {
					ASSERT_OK(shval_lock(arr));
					int64_t *d = shval_data(arr);
					ASSERT(d);
					for (int k = 0; k < 8; k++)
						d[k]++;
					ASSERT_OK(shval_unlock(arr));
				}
			}
			char name[32];
			snprintf(name, sizeof name, "child.%d", c);
			shval *mine;
			ASSERT_OK(shval_create(s, name, "i", 0, NULL, 0, &mine));
			ASSERT_OK(shval_set_i64(mine, c));
			shval_close(mine);
			atomic_fetch_add(&sh->ready, 1);
			char b;
			ASSERT_EQ(read(hold[0], &b, 1), 0); /* until the test lets go */
			if (c % 2 == 0)
				shval_seg_close(s); /* detach; odd ones just exit */
			_exit(0);
		}
	}
	close(hold[0]);
	spin_until(&sh->ready, NCHILD);
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nalive, NCHILD + 1);
	ASSERT_EQ(si.nattached, NCHILD + 1);
	shval_proc procs[16];
	size_t np;
	ASSERT_OK(shval_seg_procs(s, procs, 16, &np));
	ASSERT_EQ(np, NCHILD + 1);
	close(hold[1]);
	for (int c = 0; c < NCHILD; c++)
		test_wait_ok(pids[c]);
	int64_t x;
	ASSERT_OK(shval_get_i64(at, &x));
	ASSERT_EQ(x, NCHILD * NITER);
	ASSERT_OK(shval_get_i64(lk, &x));
	ASSERT_EQ(x, 2 * NCHILD * NITER);
	double d;
	ASSERT_OK(shval_get_f64(fl, &d));
	ASSERT(d == 0.5 * NCHILD * NITER);
	int64_t a[8];
	ASSERT_OK(shval_array_get(arr, 0, 8, a));
	for (int k = 0; k < 8; k++)
		ASSERT_EQ(a[k], NCHILD * NITER / 10);
	for (int c = 0; c < NCHILD; c++) {
		char name[32];
		shval *v;
		snprintf(name, sizeof name, "child.%d", c);
		ASSERT_OK(shval_find(s, name, "i", &v));
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, c);
		shval_close(v);
	}
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nalive, 1);
	ASSERT_EQ(si.nattached, 1 + NCHILD / 2); /* the ones that died attached */
	ASSERT_OK(shval_seg_procs(s, procs, 16, &np));
	ASSERT_EQ(np, 1 + NCHILD / 2);
	int dead = 0;
	for (size_t i = 0; i < np; i++)
		dead += !procs[i].alive;
	ASSERT_EQ(dead, NCHILD / 2);
	shval_close(at);
	shval_close(lk);
	shval_close(arr);
	shval_close(fl);
	shval_seg_close(s);
}

/* ---- growth while another process is attached ---- */

#define GROW_N 100000

static void grow_reader(const char *n, struct shared *sh, bool rdonly)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, rdonly ? SHVAL_RDONLY : 0, NULL, &s));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	uint64_t size0 = si.size;
	atomic_fetch_add(&sh->ready, 1);
	char name[32];
	long misses = 0;
	for (int i = 0; i < GROW_N; i++) {
		snprintf(name, sizeof name, "v%06d", i);
		shval *v;
		for (;;) {
			uint64_t seen = shval_seg_version(s);
			int r = shval_find(s, name, "q", &v);
			if (r == 0)
				break;
			if (r != SHVAL_ENOTFOUND)
				FAIL("find %s: %s (%s)", name, shval_strerror(r),
				     shval_errmsg(s));
			misses++;
			if (rdonly) {
				usleep(100);
			} else {
				r = shval_seg_wait(s, &seen, 10 * SHVAL_SEC);
				if (r != 0)
					FAIL("seg_wait for %s: %s", name, shval_strerror(r));
			}
		}
		int64_t x;
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, 3 * (int64_t)i);
		shval_close(v);
	}
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_GT(si.size, size0);
	ASSERT_EQ(si.nvalues, GROW_N);
	printf("reader%s: %ld misses, segment grew %llu -> %llu bytes\n",
	       rdonly ? " (rdonly)" : "", misses, (unsigned long long)size0,
	       (unsigned long long)si.size);
	shval_seg_close(s);
}

TEST(growth_while_attached)
{
	const char *n = test_segname("grow");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.size, 65536);
	struct shared *sh = shared_page();
	double t0 = now_s();
	pid_t r1 = fork();
	if (r1 == 0) {
		grow_reader(n, sh, false);
		_exit(0);
	}
	pid_t r2 = fork();
	if (r2 == 0) {
		grow_reader(n, sh, true);
		_exit(0);
	}
	pid_t w = fork();
	if (w == 0) {
		shval_seg *ws;
		ASSERT_OK(shval_seg_open(n, 0, NULL, &ws));
		spin_until(&sh->ready, 2);
		char name[32];
		for (int i = 0; i < GROW_N; i++) {
			snprintf(name, sizeof name, "v%06d", i);
			int64_t init = 3 * (int64_t)i;
			shval *v;
			ASSERT_OK(shval_create(ws, name, "q", SHVAL_ATOMIC, &init, 8, &v));
			shval_close(v);
		}
		shval_seg_close(ws);
		_exit(0);
	}
	ASSERT(r1 > 0 && r2 > 0 && w > 0);
	test_wait_ok(w);
	test_wait_ok(r1);
	test_wait_ok(r2);
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nvalues, GROW_N);
	printf("growth: %d values, %.2f s, size %llu\n", GROW_N, now_s() - t0,
	       (unsigned long long)si.size);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

/* ---- create races ---- */

TEST(race_create_segment_and_value)
{
	enum { NPROC = 4, ROUNDS = 100 };
	struct shared *sh = shared_page();
	double t0 = now_s();
	for (int round = 0; round < ROUNDS; round++) {
		char what[32];
		snprintf(what, sizeof what, "race%d", round);
		const char *n = test_segname(what);
		bool excl = round % 2 == 1;
		memset(sh, 0, sizeof *sh);
		pid_t pids[NPROC];
		for (int c = 0; c < NPROC; c++) {
			pids[c] = fork();
			ASSERT(pids[c] >= 0);
			if (pids[c] == 0) {
				atomic_fetch_add(&sh->ready, 1);
				spin_until(&sh->go, 1);
				shval_seg *s;
				int r = shval_seg_open(n, SHVAL_CREATE | (excl ? SHVAL_EXCL : 0),
						       NULL, &s);
				if (excl && r == -EEXIST)
					r = shval_seg_open(n, 0, NULL, &s);
				else if (excl && r == 0)
					atomic_fetch_add(&sh->counter, 1);
				if (r)
					FAIL("open %s: %s (%s)", n, shval_strerror(r),
					     shval_errmsg(NULL));
				shval *v;
				bool created;
				ASSERT_OK(shval_find_or_create(s, "x", "q", SHVAL_ATOMIC, NULL,
							       0, &v, &created));
				if (created)
					atomic_fetch_add(&sh->created, 1);
				ASSERT_OK(shval_add_i64(v, 1, NULL));
				struct shval_seg_info si;
				ASSERT_OK(shval_seg_info(s, &si));
				sh->creator[c] = si.creator_pid;
				shval_close(v);
				shval_seg_close(s);
				_exit(0);
			}
		}
		spin_until(&sh->ready, NPROC);
		atomic_store(&sh->go, 1);
		for (int c = 0; c < NPROC; c++)
			test_wait_ok(pids[c]);
		ASSERT_EQ(sh->created, 1);
		if (excl)
			ASSERT_EQ(sh->counter, 1); /* one EXCL create won */
		bool creator_ok = false;
		for (int c = 0; c < NPROC; c++) {
			ASSERT_EQ(sh->creator[c], sh->creator[0]);
			creator_ok |= sh->creator[0] == pids[c];
		}
		ASSERT(creator_ok);
		shval_seg *s;
		ASSERT_OK(shval_seg_open(n, 0, NULL, &s));
		shval *v;
		ASSERT_OK(shval_find(s, "x", "q", &v));
		int64_t x;
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, NPROC);
		struct shval_seg_info si;
		ASSERT_OK(shval_seg_info(s, &si));
		ASSERT_EQ(si.nvalues, 1);
		shval_close(v);
		shval_seg_close(s);
		ASSERT_OK(shval_seg_unlink(n));
	}
	/* no temporary files left behind */
	char prefix[64];
	snprintf(prefix, sizeof prefix, ".shvaltmp.");
	DIR *d = opendir("/dev/shm");
	ASSERT(d);
	struct dirent *de;
	while ((de = readdir(d)))
		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			FAIL("left behind: /dev/shm/%s", de->d_name);
	closedir(d);
	printf("%d rounds of %d processes: %.2f s\n", ROUNDS, NPROC, now_s() - t0);
}

TEST(race_find_or_create)
{
	enum { NPROC = 6, NNAMES = 500 };
	const char *n = test_segname("foc");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	struct shared *sh = shared_page();
	pid_t pids[NPROC];
	for (int c = 0; c < NPROC; c++) {
		pids[c] = fork();
		ASSERT(pids[c] >= 0);
		if (pids[c] == 0) {
			shval_seg *cs;
			ASSERT_OK(shval_seg_open(n, 0, NULL, &cs));
			atomic_fetch_add(&sh->ready, 1);
			spin_until(&sh->go, 1);
			for (int k = 0; k < NNAMES; k++) {
				/* every process in its own order */
				int i = (c % 2) ? (k * 7 + c * 83) % NNAMES
						: NNAMES - 1 - ((k * 13 + c * 31) % NNAMES);
				char name[32];
				snprintf(name, sizeof name, "n%d", i);
				shval *v;
				bool created;
				unsigned mode = i % 2 ? SHVAL_LOCK : SHVAL_ATOMIC;
				ASSERT_OK(shval_find_or_create(cs, name, "q", mode, NULL, 0,
							       &v, &created));
				if (created)
					atomic_fetch_add(&sh->created, 1);
				ASSERT_OK(shval_add_i64(v, 1, NULL));
				shval_close(v);
			}
			shval_seg_close(cs);
			_exit(0);
		}
	}
	spin_until(&sh->ready, NPROC);
	atomic_store(&sh->go, 1);
	for (int c = 0; c < NPROC; c++)
		test_wait_ok(pids[c]);
	ASSERT_EQ(sh->created, NNAMES);
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nvalues, NNAMES);
	for (int i = 0; i < NNAMES; i++) {
		char name[32];
		snprintf(name, sizeof name, "n%d", i);
		shval *v;
		int64_t x;
		ASSERT_OK(shval_find(s, name, "q", &v));
		ASSERT_OK(shval_get_i64(v, &x));
		if (x != NPROC)
			FAIL("%s = %lld, expected %d", name, (long long)x, NPROC);
		shval_close(v);
	}
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

/* Lock-free lookups while the directory is resized under them: a creator
 * grows the table from 16 slots through nine doublings (and, with a
 * create/remove churn that leaves tombstones, more same-size rebuilds)
 * while finders look up names that already exist, a name that does not,
 * and iterate.  No lookup may report SHVAL_ECORRUPT or miss a value that
 * existed before it started (a replaced table goes to limbo; readers
 * re-check dir_seq / table_off before they trust what they read). */
TEST(race_lookup_during_resize)
{
	enum { NFIND = 4, NPERM = 3000, CHURN = 8 };
	const char *n = test_segname("rsz");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	struct shared *sh = shared_page();
	pid_t pids[NFIND];
	for (int c = 0; c < NFIND; c++) {
		pids[c] = fork();
		ASSERT(pids[c] >= 0);
		if (pids[c] != 0)
			continue;
		shval_seg *cs;
		ASSERT_OK(shval_seg_open(n, 0, NULL, &cs));
		atomic_fetch_add(&sh->ready, 1);
		spin_until(&sh->go, 1);
		uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(c + 1);
		long done = 0;
		while (atomic_load(&sh->go) == 1) {
			/* Every p<j> with j < k exists before this lookup. */
			int k = atomic_load(&sh->created);
			if (k == 0) {
				sched_yield();
				continue;
			}
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			int j = (int)(x % (uint64_t)k);
			char name[32];
			snprintf(name, sizeof name, "p%d", j);
			shval *v;
			int r = shval_find(cs, name, "q", &v);
			if (r != 0)
				FAIL("finder %d: shval_find(%s) with %d values "
				     "created: %s (%s)",
				     c, name, k, shval_errname(r), shval_errmsg(cs));
			int64_t got;
			ASSERT_OK(shval_get_i64(v, &got));
			ASSERT_EQ(got, j);
			shval_close(v);
			r = shval_find(cs, "absent", NULL, &v);
			if (r != SHVAL_ENOTFOUND)
				FAIL("finder %d: shval_find(absent): %s (%s)", c,
				     shval_errname(r), shval_errmsg(cs));
			if (++done % 128 == 0) {
				uint64_t cur = 0;
				struct shval_info info;
				while ((r = shval_seg_next(cs, &cur, "p", &info)) == 0)
					;
				if (r != SHVAL_ENOTFOUND)
					FAIL("finder %d: shval_seg_next: %s (%s)", c,
					     shval_errname(r), shval_errmsg(cs));
			}
		}
		atomic_fetch_add(&sh->counter, done);
		shval_seg_close(cs);
		_exit(0);
	}
	spin_until(&sh->ready, NFIND);
	atomic_store(&sh->go, 1);
	for (int i = 0; i < NPERM; i++) {
		char name[32];
		shval *v;
		int64_t init = i;
		snprintf(name, sizeof name, "p%d", i);
		ASSERT_OK(shval_create(s, name, "q", SHVAL_ATOMIC, &init, 8, &v));
		shval_close(v);
		atomic_store(&sh->created, i + 1);
		/* churn: tombstones make the table rebuild at the same size */
		snprintf(name, sizeof name, "t%d", i);
		ASSERT_OK(shval_create(s, name, "q", SHVAL_ATOMIC, NULL, 0, &v));
		shval_close(v);
		if (i >= CHURN) {
			snprintf(name, sizeof name, "t%d", i - CHURN);
			ASSERT_OK(shval_remove(s, name));
		}
	}
	atomic_store(&sh->go, 2);
	for (int c = 0; c < NFIND; c++)
		test_wait_ok(pids[c]);
	ASSERT_GT(atomic_load(&sh->counter), 0);
	/* The table really was replaced many times under the finders. */
	int fd = open(shm_path(n), O_RDONLY);
	ASSERT(fd >= 0);
	uint64_t dir_seq;
	ASSERT_EQ(pread(fd, &dir_seq, sizeof dir_seq, offsetof(shval__hdr, dir_seq)),
		  (ssize_t)sizeof dir_seq);
	close(fd);
	ASSERT_GE(dir_seq, 9);
	size_t nprob = 0;
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, NULL, NULL, &nprob));
	ASSERT_EQ(nprob, 0);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

/* ---- removal and stale handles ---- */

TEST(remove_and_stale_across_processes)
{
	const char *n = test_segname("stale");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v;
	int64_t five = 5;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, &five, 8, &v));
	int to_child[2], to_parent[2];
	ASSERT_EQ(pipe(to_child), 0);
	ASSERT_EQ(pipe(to_parent), 0);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval_seg *cs;
		shval *cv, *nv;
		char b;
		ASSERT_OK(shval_seg_open(n, 0, NULL, &cs));
		ASSERT_OK(shval_find(cs, "v", "q", &cv));
		uint64_t seen = shval_value_version(cv);
		ASSERT_EQ(write(to_parent[1], "r", 1), 1);
		/* sleeping on the value: the removal wakes us with ESTALE */
		int r = shval_wait(cv, &seen, 20 * SHVAL_SEC);
		ASSERT_ERR(r, SHVAL_ESTALE);
		int64_t x;
		ASSERT_ERR(shval_get_i64(cv, &x), SHVAL_ESTALE);
		ASSERT(shval_errmsg(cs)[0]);
		ASSERT_ERR(shval_set_i64(cv, 1), SHVAL_ESTALE);
		ASSERT_ERR(shval_add_i64(cv, 1, NULL), SHVAL_ESTALE);
		struct shval_info in;
		ASSERT_ERR(shval_info(cv, &in), SHVAL_ESTALE);
		ASSERT_ERR(shval_lock(cv), SHVAL_ESTALE);
		ASSERT_ERR(shval_read(cv, &x, 8), SHVAL_ESTALE);
		ASSERT(shval_data(cv) == NULL);
		ASSERT_EQ(shval_value_version(cv), 0);
		ASSERT_ERR(shval_find(cs, "v", NULL, &nv), SHVAL_ENOTFOUND);
		ASSERT_EQ(write(to_parent[1], "s", 1), 1);
		ASSERT_EQ(read(to_child[0], &b, 1), 1); /* recreated */
		ASSERT_ERR(shval_get_i64(cv, &x), SHVAL_ESTALE);
		ASSERT_OK(shval_find(cs, "v", "q", &nv));
		ASSERT_OK(shval_get_i64(nv, &x));
		ASSERT_EQ(x, 77);
		shval_close(cv);
		shval_close(nv);
		shval_seg_close(cs);
		_exit(0);
	}
	char b;
	ASSERT_EQ(read(to_parent[0], &b, 1), 1);
	usleep(100 * 1000); /* let the child fall asleep in shval_wait */
	ASSERT_OK(shval_remove(s, "v"));
	ASSERT_ERR(shval_remove(s, "v"), SHVAL_ENOTFOUND);
	ASSERT_EQ(read(to_parent[0], &b, 1), 1);
	int64_t x77 = 77;
	shval *v2;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, &x77, 8, &v2));
	ASSERT_EQ(write(to_child[1], "c", 1), 1);
	test_wait_ok(pid);
	int64_t x;
	ASSERT_ERR(shval_get_i64(v, &x), SHVAL_ESTALE);
	shval_close(v);
	shval_close(v2);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

/* shval_wait on a handle whose value is already gone must not sleep the
 * whole timeout: SHVAL_ESTALE (at the latest on the second call). */
TEST(wait_on_removed_value)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	unsigned modes[] = { SHVAL_RLOCK, SHVAL_RAW, SHVAL_ATOMIC };
	for (int m = 0; m < 3; m++) {
		shval *v;
		ASSERT_OK(shval_create(s, "w", "q", modes[m], NULL, 0, &v));
		uint64_t seen = shval_value_version(v);
		ASSERT_OK(shval_remove(s, "w"));
		double t0 = now_s();
		int r = shval_wait(v, &seen, 2 * SHVAL_SEC);
		if (r == 0)
			r = shval_wait(v, &seen, 2 * SHVAL_SEC);
		ASSERT_ERR(r, SHVAL_ESTALE);
		ASSERT_LT(now_s() - t0, 1.0);
		shval_close(v);
	}
	shval_seg_close(s);
}

/* Removed values' space is reused (after the 1 s limbo), and a stale
 * handle never sees the value that took its place. */
TEST(removed_space_reused)
{
	enum { N = 500 };
	const char *n = test_segname("reuse");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	char name[32];
	shval *old0 = NULL;
	for (int i = 0; i < N; i++) {
		shval *v;
		snprintf(name, sizeof name, "r%d", i);
		ASSERT_OK(shval_create(s, name, "1000d", 0, NULL, 0, &v));
		ASSERT_OK(shval_array_set(v, 0, 1, &(double){ 1.0 }));
		if (i == 0)
			old0 = v;
		else
			shval_close(v);
	}
	void *old_data = shval_data(old0);
	ASSERT(old_data);
	struct shval_seg_info s1, s2, s3;
	ASSERT_OK(shval_seg_info(s, &s1));
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof name, "r%d", i);
		ASSERT_OK(shval_remove(s, name));
	}
	/* during the limbo the blocks are not handed out again */
	shval *young;
	ASSERT_OK(shval_create(s, "young", "1000d", 0, NULL, 0, &young));
	ASSERT(shval_data(young) != old_data);
	shval_close(young);
	ASSERT_OK(shval_remove(s, "young"));
	usleep(1100 * 1000);
	ASSERT_OK(shval_seg_info(s, &s2));
	bool reused = false;
	for (int i = 0; i < N; i++) {
		shval *v;
		snprintf(name, sizeof name, "t%d", i);
		ASSERT_OK(shval_create(s, name, "1000d", 0, NULL, 0, &v));
		ASSERT_OK(shval_array_set(v, 0, 1, &(double){ 2.0 }));
		reused |= shval_data(v) == old_data;
		shval_close(v);
	}
	ASSERT(reused);
	ASSERT_OK(shval_seg_info(s, &s3));
	/* no growth: the same space served the second generation */
	ASSERT_EQ(s3.size, s1.size);
	ASSERT_LE(s3.used, s1.used + 64 * 1024);
	/* the stale handle still says so, though its block is live again */
	double d;
	ASSERT_ERR(shval_array_get(old0, 0, 1, &d), SHVAL_ESTALE);
	ASSERT_ERR(shval_array_set(old0, 0, 1, &d), SHVAL_ESTALE);
	ASSERT(shval_data(old0) == NULL);
	shval_close(old0);
	printf("used %llu -> %llu (after remove %llu), size %llu\n",
	       (unsigned long long)s1.used, (unsigned long long)s3.used,
	       (unsigned long long)s2.used, (unsigned long long)s3.size);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

/* ---- temporary segments ---- */

static pid_t temp_holder(const char *n, int ready_fd)
{
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval_seg *s;
		ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL | SHVAL_TEMP,
					 NULL, &s));
		shval *v;
		ASSERT_OK(shval_create(s, "v", "q", 0, NULL, 0, &v));
		ASSERT_EQ(write(ready_fd, "r", 1), 1);
		for (;;)
			pause();
	}
	return pid;
}

TEST(temp_removed_after_sigkill)
{
	const char *n = test_segname("temp");
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	pid_t pid = temp_holder(n, p[1]);
	char b;
	ASSERT_EQ(read(p[0], &b, 1), 1);
	ASSERT(exists(shm_path(n)));
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	ASSERT_EQ(wait_status(pid), 128 + SIGKILL);
	ASSERT(exists(shm_path(n))); /* nobody cleaned yet */
	shval_seg *s;
	ASSERT_ERR(shval_seg_open(n, 0, NULL, &s), -ENOENT);
	ASSERT(!exists(shm_path(n)));
	/* with SHVAL_CREATE the stale one is replaced by a fresh segment */
	pid = temp_holder(n, p[1]);
	ASSERT_EQ(read(p[0], &b, 1), 1);
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	ASSERT_EQ(wait_status(pid), 128 + SIGKILL);
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE, NULL, &s));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nvalues, 0);
	ASSERT_EQ(si.creator_pid, getpid());
	ASSERT_EQ(si.flags & SHVAL_TEMP, 0);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

/* A killed process that its parent has not reaped yet (a zombie) is dead
 * too: the next open cleans up. */
TEST(temp_removed_after_sigkill_unreaped)
{
	const char *n = test_segname("tempz");
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	pid_t pid = temp_holder(n, p[1]);
	char b;
	ASSERT_EQ(read(p[0], &b, 1), 1);
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	/* wait until it is a zombie, without reaping it */
	siginfo_t si;
	ASSERT_EQ(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	shval_seg *s;
	int r = shval_seg_open(n, 0, NULL, &s);
	if (r == 0)
		shval_seg_close(s);
	ASSERT_EQ(wait_status(pid), 128 + SIGKILL);
	shval_seg_unlink(n);
	ASSERT_ERR(r, -ENOENT);
}

TEST(temp_removed_by_last_close)
{
	const char *n = test_segname("templast");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL | SHVAL_TEMP, NULL, &s));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.flags, SHVAL_TEMP);
	int go[2], ready[2];
	ASSERT_EQ(pipe(go), 0);
	ASSERT_EQ(pipe(ready), 0);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval_seg *cs;
		char b;
		ASSERT_OK(shval_seg_open(n, 0, NULL, &cs));
		shval_seg_close(s); /* the attach inherited over fork() */
		ASSERT_EQ(write(ready[1], "r", 1), 1);
		ASSERT_EQ(read(go[0], &b, 1), 1);
		shval_seg_close(cs);
		_exit(0);
	}
	char b;
	ASSERT_EQ(read(ready[0], &b, 1), 1);
	shval_seg_close(s); /* the child's own open remains */
	ASSERT(exists(shm_path(n)));
	ASSERT_EQ(write(go[1], "g", 1), 1);
	test_wait_ok(pid);
	ASSERT(!exists(shm_path(n)));
	/* and an exec'd process detaching last also removes it */
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL | SHVAL_TEMP, NULL, &s));
	setup_helper_values(s);
	test_wait_ok(run_helper("name", n, -1));
	ASSERT(exists(shm_path(n)));
	shval_seg_close(s);
	ASSERT(!exists(shm_path(n)));
}

/* ---- symlinks ---- */

TEST(symlinks_refused)
{
	char dir[] = "/tmp/shvaltest.XXXXXX";
	ASSERT(mkdtemp(dir));
	char real[300], link_[300], dangle[300], nothing[300], name[320];
	snprintf(real, sizeof real, "%s/real", dir);
	snprintf(link_, sizeof link_, "%s/link", dir);
	snprintf(dangle, sizeof dangle, "%s/dangle", dir);
	snprintf(nothing, sizeof nothing, "%s/nothing", dir);
	snprintf(name, sizeof name, "file:%s", real);
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval_seg_close(s);
	ASSERT_EQ(symlink(real, link_), 0);
	ASSERT_EQ(symlink(nothing, dangle), 0);
	unsigned flagsets[] = { 0, SHVAL_CREATE, SHVAL_RDONLY, SHVAL_FOREIGN };
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof name, "file:%s", link_);
		ASSERT_ERR(shval_seg_open(name, flagsets[i], NULL, &s), -ELOOP);
		ASSERT(strstr(shval_errmsg(NULL), "link"));
		snprintf(name, sizeof name, "file:%s", dangle);
		ASSERT_ERR(shval_seg_open(name, flagsets[i], NULL, &s), -ELOOP);
	}
	ASSERT(!exists(nothing)); /* nothing was created through the link */
	/* and in /dev/shm */
	const char *shreal = test_segname("symreal");
	const char *shlink = test_segname("symlink");
	ASSERT_OK(shval_seg_open(shreal, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval_seg_close(s);
	ASSERT_EQ(symlink(shm_path(shreal), shm_path(shlink)), 0);
	ASSERT_ERR(shval_seg_open(shlink, 0, NULL, &s), -ELOOP);
	ASSERT_ERR(shval_seg_open(shlink, SHVAL_CREATE, NULL, &s), -ELOOP);
	/* unlink removes the link, not its target */
	ASSERT_OK(shval_seg_unlink(shlink));
	ASSERT(exists(shm_path(shreal)));
	ASSERT_OK(shval_seg_unlink(shreal));
	unlink(link_);
	unlink(dangle);
	unlink(real);
	ASSERT_EQ(rmdir(dir), 0);
}

/* ---- read-only opens ---- */

static void rdonly_checks(shval_seg *ro)
{
	shval *a, *l, *k, *r, *f, *str, *arr, *st;
	ASSERT_OK(shval_find(ro, "a", "q", &a));
	ASSERT_OK(shval_find(ro, "l", "q", &l));
	ASSERT_OK(shval_find(ro, "k", "q", &k));
	ASSERT_OK(shval_find(ro, "r", "q", &r));
	ASSERT_OK(shval_find(ro, "f", "d", &f));
	ASSERT_OK(shval_find(ro, "s", "8s", &str));
	ASSERT_OK(shval_find(ro, "arr", "4i", &arr));
	ASSERT_OK(shval_find(ro, "st", "x:d y:i", &st));
	shval *all[] = { a, l, k, r };
	int64_t x, e;
	double d;
	uint64_t u;
	for (int i = 0; i < 4; i++) {
		ASSERT_OK(shval_get_i64(all[i], &x));
		ASSERT_EQ(x, 7);
		ASSERT_ERR(shval_set_i64(all[i], 1), SHVAL_ERDONLY);
		ASSERT(strstr(shval_errmsg(ro), "read-only"));
		ASSERT_ERR(shval_set_u64(all[i], 1), SHVAL_ERDONLY);
		ASSERT_ERR(shval_add_i64(all[i], 1, &x), SHVAL_ERDONLY);
		ASSERT_ERR(shval_sub_i64(all[i], 1, &x), SHVAL_ERDONLY);
		ASSERT_ERR(shval_and_u64(all[i], 1, &u), SHVAL_ERDONLY);
		ASSERT_ERR(shval_or_u64(all[i], 1, &u), SHVAL_ERDONLY);
		ASSERT_ERR(shval_xor_u64(all[i], 1, &u), SHVAL_ERDONLY);
		ASSERT_ERR(shval_exchange_i64(all[i], 1, &x), SHVAL_ERDONLY);
		e = 7;
		ASSERT_ERR(shval_cas_i64(all[i], &e, 8), SHVAL_ERDONLY);
		int64_t w = 1;
		ASSERT_ERR(shval_write(all[i], &w, 8), SHVAL_ERDONLY);
		const char *args[] = { "9" };
		ASSERT_ERR(shval_from_text(all[i], 1, args), SHVAL_ERDONLY);
		uint64_t seen = shval_value_version(all[i]);
		ASSERT_ERR(shval_wait(all[i], &seen, 10 * SHVAL_MSEC), SHVAL_ERDONLY);
		ASSERT(shval_data(all[i]) != NULL); /* readable */
		ASSERT_EQ(*(int64_t *)shval_data(all[i]), 7);
		ASSERT_OK(shval_get_i64(all[i], &x));
		ASSERT_EQ(x, 7);
	}
	ASSERT_ERR(shval_lock(l), SHVAL_ERDONLY);
	ASSERT_ERR(shval_trylock(k), SHVAL_ERDONLY);
	ASSERT_ERR(shval_timedlock(l, SHVAL_MSEC), SHVAL_ERDONLY);
	ASSERT_ERR(shval_unlock(l), SHVAL_ENOTOWNER);
	ASSERT_OK(shval_get_f64(f, &d));
	ASSERT(d == 1.5);
	ASSERT_ERR(shval_set_f64(f, 2), SHVAL_ERDONLY);
	ASSERT_ERR(shval_add_f64(f, 2, &d), SHVAL_ERDONLY);
	double de = 1.5;
	ASSERT_ERR(shval_cas_f64(f, &de, 2), SHVAL_ERDONLY);
	char buf[16];
	size_t len;
	ASSERT_OK(shval_get_str(str, buf, sizeof buf, &len));
	ASSERT_EQ(len, 3);
	ASSERT_ERR(shval_set_str(str, "x", 1), SHVAL_ERDONLY);
	int32_t ai[4];
	ASSERT_OK(shval_array_get(arr, 0, 4, ai));
	ASSERT_EQ(ai[3], 4);
	ASSERT_ERR(shval_array_set(arr, 0, 4, ai), SHVAL_ERDONLY);
	ASSERT_OK(shval_field_get(st, "x", &d, sizeof d, NULL));
	ASSERT(d == 0.25);
	ASSERT_ERR(shval_field_set(st, "x", &d, sizeof d), SHVAL_ERDONLY);
	char txt[64];
	ASSERT_OK(shval_to_text(st, 0, txt, sizeof txt, NULL));
	/* segment-level writes */
	shval *v;
	ASSERT_ERR(shval_create(ro, "new", "q", 0, NULL, 0, &v), SHVAL_ERDONLY);
	ASSERT_ERR(shval_find_or_create(ro, "new", "q", 0, NULL, 0, &v, NULL),
		   SHVAL_ERDONLY);
	ASSERT_ERR(shval_remove(ro, "a"), SHVAL_ERDONLY);
	uint64_t sseen = shval_seg_version(ro);
	ASSERT_ERR(shval_seg_wait(ro, &sseen, 10 * SHVAL_MSEC), SHVAL_ERDONLY);
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(ro, &si));
	ASSERT_EQ(si.nvalues, 8);
	uint64_t cur = 0;
	struct shval_info in;
	int cnt = 0;
	while (shval_seg_next(ro, &cur, NULL, &in) == 0)
		cnt++;
	ASSERT_EQ(cnt, 8);
	shval *list[] = { a, l, k, r, f, str, arr, st };
	for (int i = 0; i < 8; i++)
		shval_close(list[i]);
}

static void rdonly_setup(shval_seg *s)
{
	shval *v;
	int64_t seven = 7;
	ASSERT_OK(shval_create(s, "a", "q", SHVAL_ATOMIC, &seven, 8, &v));
	shval_close(v);
	ASSERT_OK(shval_create(s, "l", "q", SHVAL_RLOCK, &seven, 8, &v));
	shval_close(v);
	ASSERT_OK(shval_create(s, "k", "q", SHVAL_LOCK, &seven, 8, &v));
	shval_close(v);
	ASSERT_OK(shval_create(s, "r", "q", SHVAL_RAW, &seven, 8, &v));
	shval_close(v);
	double f = 1.5;
	ASSERT_OK(shval_create(s, "f", "d", SHVAL_ATOMIC, &f, 8, &v));
	shval_close(v);
	ASSERT_OK(shval_create(s, "s", "8s", 0, NULL, 0, &v));
	ASSERT_OK(shval_set_str(v, "abc", 3));
	shval_close(v);
	int32_t ai[4] = { 1, 2, 3, 4 };
	ASSERT_OK(shval_create(s, "arr", "4i", 0, ai, sizeof ai, &v));
	shval_close(v);
	ASSERT_OK(shval_create(s, "st", "x:d y:i", 0, NULL, 0, &v));
	double x = 0.25;
	ASSERT_OK(shval_field_set(v, "x", &x, sizeof x));
	shval_close(v);
}

TEST(rdonly_writes_refused)
{
	const char *n = test_segname("ro");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	rdonly_setup(s);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval_seg *ro;
		ASSERT_OK(shval_seg_open(n, SHVAL_RDONLY, NULL, &ro));
		rdonly_checks(ro);
		shval_seg_close(ro);
		_exit(0);
	}
	test_wait_ok(pid); /* exit 0, not SIGSEGV */
	/* the same through shval_seg_open_fd(SHVAL_RDONLY) of an anonymous one */
	shval_seg *anon, *ro;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &anon));
	rdonly_setup(anon);
	ASSERT_OK(shval_seg_open_fd(shval_seg_fd(anon), SHVAL_RDONLY, &ro));
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		rdonly_checks(ro);
		_exit(0);
	}
	test_wait_ok(pid);
	shval_seg_close(ro);
	shval_seg_close(anon);
	/* a read-only open needs only read permission */
	ASSERT_EQ(chmod(shm_path(n), 0400), 0);
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval_seg *r2;
		ASSERT_OK(shval_seg_open(n, SHVAL_RDONLY, NULL, &r2));
		shval_seg_close(r2);
		_exit(0);
	}
	test_wait_ok(pid);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

/* A read-only reader of a big locked array (no undo copy) while another
 * process writes it: whole, consistent copies and no SIGSEGV. */
TEST(rdonly_reader_during_big_writes)
{
	enum { N = 20000 };
	const char *n = test_segname("robig");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v;
	ASSERT_OK(shval_create(s, "big", "20000q", SHVAL_RLOCK, NULL, 0, &v));
	struct shared *sh = shared_page();
	pid_t w = fork();
	ASSERT(w >= 0);
	if (w == 0) {
		int64_t *buf = malloc(N * sizeof *buf);
		ASSERT(buf);
		for (int64_t k = 1; !atomic_load(&sh->go); k++) {
			for (int i = 0; i < N; i++)
				buf[i] = k;
			ASSERT_OK(shval_array_set(v, 0, N, buf));
		}
		_exit(0);
	}
	pid_t r = fork();
	ASSERT(r >= 0);
	if (r == 0) {
		shval_seg *ro;
		shval *rv;
		ASSERT_OK(shval_seg_open(n, SHVAL_RDONLY, NULL, &ro));
		ASSERT_OK(shval_find(ro, "big", NULL, &rv));
		int64_t *buf = malloc(N * sizeof *buf);
		ASSERT(buf);
		double t0 = now_s();
		long reads = 0;
		while (now_s() - t0 < 2.0) {
			ASSERT_OK(shval_read(rv, buf, N * sizeof *buf));
			for (int i = 1; i < N; i++)
				if (buf[i] != buf[0])
					FAIL("torn read: [0]=%lld [%d]=%lld",
					     (long long)buf[0], i, (long long)buf[i]);
			reads++;
		}
		printf("rdonly reader: %ld consistent reads\n", reads);
		_exit(0);
	}
	int rs = wait_status(r);
	atomic_store(&sh->go, 1);
	test_wait_ok(w);
	shval_close(v);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n)); /* before failing: leave nothing behind */
	if (rs != 0)
		FAIL("read-only reader ended with status %d%s", rs,
		     rs == 128 + SIGSEGV ? " (SIGSEGV)" : "");
}

/* ---- file-backed segments ---- */

TEST(file_segment_survives_reopen)
{
	char dir[] = "/tmp/shvaltest.XXXXXX";
	ASSERT(mkdtemp(dir));
	char name[300];
	snprintf(name, sizeof name, "file:%s/seg", dir);
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	ASSERT_STREQ(shval_seg_name(s), name);
	setup_helper_values(s);
	shval *big;
	ASSERT_OK(shval_create(s, "big", "100000q", 0, NULL, 0, &big));
	ASSERT_OK(shval_array_set(big, 99999, 1, &(int64_t){ 123 }));
	shval_close(big);
	shval_seg_close(s);
	struct stat st;
	ASSERT_EQ(stat(name + 5, &st), 0);
	ASSERT_EQ(st.st_mode & 07777, 0600);
	/* another program, by name */
	test_wait_ok(run_helper("name", name, -1));
	/* and back here, after everyone closed it */
	ASSERT_OK(shval_seg_open(name, 0, NULL, &s));
	check_helper_ran(s);
	ASSERT_OK(shval_find(s, "big", "100000q", &big));
	int64_t x;
	ASSERT_OK(shval_array_get(big, 99999, 1, &x));
	ASSERT_EQ(x, 123);
	shval_close(big);
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nvalues, 5);
	ASSERT_EQ(si.nalive, 1);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
	ASSERT(!exists(name + 5));
	ASSERT_ERR(shval_seg_open(name, 0, NULL, &s), -ENOENT);
	/* the mode asked for, exactly (not umask'd) */
	shval_seg_opts o = { .struct_size = sizeof o, .mode = 0664 };
	mode_t old = umask(077);
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE, &o, &s));
	umask(old);
	ASSERT_EQ(stat(name + 5, &st), 0);
	ASSERT_EQ(st.st_mode & 07777, 0664);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
	/* a file: segment in a directory that does not exist */
	snprintf(name, sizeof name, "file:%s/no/such/seg", dir);
	ASSERT_ERR(shval_seg_open(name, SHVAL_CREATE, NULL, &s), -ENOENT);
	ASSERT_EQ(rmdir(dir), 0);
}

/* ---- another user ---- */

static void become_nobody(void)
{
	if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
		fprintf(stderr, "cannot become nobody: %s\n", strerror(errno));
		_exit(77);
	}
}

/* The owner check as an unprivileged user (ctest runs this case a second
 * time as nobody: test_proc.other_user_refused.unprivileged): files of
 * another user are root's system files, which exist everywhere. */
static void other_user_unprivileged(void)
{
	struct stat st;
	shval_seg *s;
	ASSERT_EQ(stat("/etc/passwd", &st), 0);
	ASSERT_NE(st.st_uid, geteuid());
	ASSERT(st.st_mode & S_IROTH);
	/* not writable by us: refused by the system */
	ASSERT_ERR(shval_seg_open("file:/etc/passwd", 0, NULL, &s), -EACCES);
	ASSERT(s == NULL);
	/* readable, but another user's: refused by the owner check, which
	 * comes before any look at the contents */
	ASSERT_ERR(shval_seg_open("file:/etc/passwd", SHVAL_RDONLY, NULL, &s),
		   SHVAL_EFOREIGN);
	ASSERT(strstr(shval_errmsg(NULL), "SHVAL_FOREIGN"));
	ASSERT(s == NULL);
	/* allowed: then it is judged on its contents (not a segment) */
	ASSERT_ERR(shval_seg_open("file:/etc/passwd", SHVAL_RDONLY | SHVAL_FOREIGN,
				  NULL, &s),
		   SHVAL_ECORRUPT);
	/* the same through a file descriptor */
	int fd = open("/etc/passwd", O_RDONLY | O_CLOEXEC);
	ASSERT_GE(fd, 0);
	ASSERT_ERR(shval_seg_open_fd(fd, SHVAL_RDONLY, &s), SHVAL_EFOREIGN);
	ASSERT_ERR(shval_seg_open_fd(fd, SHVAL_RDONLY | SHVAL_FOREIGN, &s),
		   SHVAL_ECORRUPT);
	close(fd);
	/* not readable at all (0640 root:shadow, or missing): -EACCES */
	if (stat("/etc/shadow", &st) == 0 && !(st.st_mode & S_IROTH) &&
	    st.st_uid != geteuid())
		ASSERT_ERR(shval_seg_open("file:/etc/shadow", SHVAL_RDONLY |
							    SHVAL_FOREIGN,
					  NULL, &s),
			   -EACCES);
	/* a segment of our own: ours, opened without SHVAL_FOREIGN */
	const char *nn = test_segname("unpriv");
	ASSERT_OK(shval_seg_open(nn, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.owner, geteuid());
	ASSERT_EQ(si.mode, 0600);
	shval *v;
	ASSERT_OK(shval_create(s, "v", "q", 0, &(int64_t){ 3 }, 8, &v));
	shval_close(v);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_open(nn, SHVAL_RDONLY, NULL, &s));
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(nn));
}

TEST(other_user_refused)
{
	if (geteuid() != 0) {
		other_user_unprivileged();
		return;
	}
	const char *n600 = test_segname("u600");
	const char *n644 = test_segname("u644");
	const char *n666 = test_segname("u666");
	shval_seg *s600, *s644, *s666;
	shval_seg_opts o = { .struct_size = sizeof o };
	ASSERT_OK(shval_seg_open(n600, SHVAL_CREATE | SHVAL_EXCL, NULL, &s600));
	o.mode = 0644;
	ASSERT_OK(shval_seg_open(n644, SHVAL_CREATE | SHVAL_EXCL, &o, &s644));
	o.mode = 0666;
	ASSERT_OK(shval_seg_open(n666, SHVAL_CREATE | SHVAL_EXCL, &o, &s666));
	shval *v;
	ASSERT_OK(shval_create(s644, "v", "q", 0, &(int64_t){ 3 }, 8, &v));
	shval_close(v);
	ASSERT_OK(shval_create(s666, "v", "q", 0, &(int64_t){ 4 }, 8, &v));
	shval_close(v);
	const char *nn = test_segname("unobody");
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		become_nobody();
		shval_seg *s;
		int64_t x;
		/* 0600 root-owned: no access at all */
		ASSERT_ERR(shval_seg_open(n600, 0, NULL, &s), -EACCES);
		ASSERT(shval_errmsg(NULL)[0]);
		ASSERT(s == NULL);
		ASSERT_ERR(shval_seg_open(n600, SHVAL_RDONLY, NULL, &s), -EACCES);
		ASSERT_ERR(shval_seg_open(n600, SHVAL_CREATE, NULL, &s), -EACCES);
		ASSERT_ERR(shval_seg_open(n600, SHVAL_RDONLY | SHVAL_FOREIGN, NULL, &s),
			   -EACCES);
		ASSERT(shval_seg_unlink(n600) < 0);
		/* 0644: read-only, and only when foreign segments are allowed */
		ASSERT_ERR(shval_seg_open(n644, 0, NULL, &s), -EACCES);
		ASSERT_ERR(shval_seg_open(n644, SHVAL_RDONLY, NULL, &s), SHVAL_EFOREIGN);
		ASSERT(strstr(shval_errmsg(NULL), "SHVAL_FOREIGN"));
		ASSERT_OK(shval_seg_open(n644, SHVAL_RDONLY | SHVAL_FOREIGN, NULL, &s));
		ASSERT_OK(shval_find(s, "v", "q", &v));
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, 3);
		ASSERT_ERR(shval_set_i64(v, 5), SHVAL_ERDONLY);
		shval_close(v);
		shval_seg_close(s);
		/* 0666: writable with SHVAL_FOREIGN */
		ASSERT_ERR(shval_seg_open(n666, 0, NULL, &s), SHVAL_EFOREIGN);
		ASSERT_OK(shval_seg_open(n666, SHVAL_FOREIGN, NULL, &s));
		ASSERT_OK(shval_find(s, "v", "q", &v));
		ASSERT_OK(shval_add_i64(v, 10, &x));
		ASSERT_EQ(x, 14);
		shval_close(v);
		shval_seg_close(s);
		/* nobody's own segment */
		ASSERT_OK(shval_seg_open(nn, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
		struct shval_seg_info si;
		ASSERT_OK(shval_seg_info(s, &si));
		ASSERT_EQ(si.owner, 65534);
		shval_seg_close(s);
		_exit(0);
	}
	int st = wait_status(pid);
	if (st == 77)
		SKIP("cannot switch to uid 65534");
	ASSERT_EQ(st, 0);
	ASSERT_OK(shval_find(s666, "v", "q", &v));
	int64_t x;
	ASSERT_OK(shval_get_i64(v, &x));
	ASSERT_EQ(x, 14);
	shval_close(v);
	/* root opening nobody's segment: foreign too */
	shval_seg *s;
	ASSERT_ERR(shval_seg_open(nn, 0, NULL, &s), SHVAL_EFOREIGN);
	ASSERT_OK(shval_seg_open(nn, SHVAL_FOREIGN, NULL, &s));
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(nn));
	shval_seg_close(s600);
	shval_seg_close(s644);
	shval_seg_close(s666);
	ASSERT_OK(shval_seg_unlink(n600));
	ASSERT_OK(shval_seg_unlink(n644));
	ASSERT_OK(shval_seg_unlink(n666));
}

/* ---- a full file system ---- */

/* Write s to a /proc file (uid_map and the like); 0 or -errno. */
static int write_proc(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -e;
}

TEST(tmpfs_full_enospc)
{
	/* Mounting the small tmpfs needs CAP_SYS_ADMIN: root has it; an
	 * unprivileged user gets it in a user namespace of its own (same
	 * uid and gid inside, so file owners are what they are outside).
	 * ctest runs this case both ways (….unprivileged as nobody). */
	if (geteuid() != 0) {
		uid_t uid = geteuid();
		gid_t gid = getegid();
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			SKIP("not root, and no user namespace to mount a tmpfs "
			     "in: unshare(CLONE_NEWUSER): %s", strerror(errno));
		char map[64];
		snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid, (unsigned)uid);
		ASSERT_EQ(write_proc("/proc/self/uid_map", map), 0);
		ASSERT_EQ(write_proc("/proc/self/setgroups", "deny"), 0);
		snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid, (unsigned)gid);
		ASSERT_EQ(write_proc("/proc/self/gid_map", map), 0);
		ASSERT_EQ(geteuid(), uid);
	} else if (unshare(CLONE_NEWNS) != 0) {
		SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		SKIP("make mounts private: %s", strerror(errno));
	char dir[] = "/tmp/shvaltest.XXXXXX";
	ASSERT(mkdtemp(dir));
	if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0) {
		rmdir(dir);
		SKIP("mount tmpfs: %s", strerror(errno));
	}
	char name[300];
	snprintf(name, sizeof name, "file:%s/seg", dir);
	shval_seg_opts o = { .struct_size = sizeof o, .max_size = 64 << 20 };
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, &o, &s));
	int n = 0, r;
	char vn[32];
	for (;; n++) {
		shval *v;
		snprintf(vn, sizeof vn, "v%d", n);
		r = shval_create(s, vn, "1000d", 0, NULL, 0, &v);
		if (r)
			break;
		ASSERT_OK(shval_array_set(v, 999, 1, &(double){ n }));
		shval_close(v);
		ASSERT_LT(n, 1000);
	}
	ASSERT_ERR(r, -ENOSPC);
	ASSERT(shval_errmsg(s)[0]);
	printf("ENOSPC after %d values: %s\n", n, shval_errmsg(s));
	ASSERT_GT(n, 10);
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_LE(si.size, 1 << 20);
	ASSERT_EQ(si.nvalues, n);
	/* still usable: every value reads and writes */
	for (int i = 0; i < n; i++) {
		shval *v;
		double d;
		snprintf(vn, sizeof vn, "v%d", i);
		ASSERT_OK(shval_find(s, vn, "1000d", &v));
		ASSERT_OK(shval_array_get(v, 999, 1, &d));
		ASSERT(d == i);
		ASSERT_OK(shval_array_set(v, 0, 1, &d));
		shval_close(v);
	}
	/* more failures are clean too */
	shval *v;
	ASSERT_ERR(shval_create(s, "again", "1000d", 0, NULL, 0, &v), -ENOSPC);
	ASSERT(v == NULL);
	/* space comes back after a removal (and its 1 s limbo) */
	for (int i = 0; i < 3; i++) {
		snprintf(vn, sizeof vn, "v%d", i);
		ASSERT_OK(shval_remove(s, vn));
	}
	usleep(1100 * 1000);
	for (int i = 0; i < 3; i++) {
		snprintf(vn, sizeof vn, "w%d", i);
		ASSERT_OK(shval_create(s, vn, "1000d", 0, NULL, 0, &v));
		shval_close(v);
	}
	/* another process sees a consistent segment */
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval_seg *cs;
		ASSERT_OK(shval_seg_open(name, 0, NULL, &cs));
		struct shval_seg_info ci;
		ASSERT_OK(shval_seg_info(cs, &ci));
		ASSERT_EQ(ci.nvalues, n);
		uint64_t cur = 0;
		struct shval_info in;
		int cnt = 0;
		while (shval_seg_next(cs, &cur, NULL, &in) == 0)
			cnt++;
		ASSERT_EQ(cnt, n);
		shval_seg_close(cs);
		_exit(0);
	}
	test_wait_ok(pid);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
	ASSERT_EQ(umount2(dir, MNT_DETACH), 0);
	ASSERT_EQ(rmdir(dir), 0);
}

/* ---- damaged segments ---- */

/* Offsets of things inside a closed segment file. */
struct layout {
	uint64_t fsize;
	uint64_t table_off;
	uint64_t slot_v;   /* offset of v's directory slot */
	uint64_t ent_v;    /* v: "q" RLOCK */
	uint64_t ent_s;    /* s: "8s" RLOCK */
	uint64_t type_v;   /* v's type record */
};

static uint64_t find_entry(const unsigned char *base, const char *name,
			   uint64_t *slot_off)
{
	const shval__hdr *h = (const void *)base;
	uint64_t toff = h->table_off;
	uint64_t cap = *(const uint64_t *)(base + toff);
	const uint64_t *slots = (const uint64_t *)(base + toff + 64);
	for (uint64_t i = 0; i < cap; i++) {
		if (slots[i] <= 1)
			continue;
		uint64_t off = (slots[i] & 0xffffffffull) * 64;
		const shval__entry *e = (const void *)(base + off);
		if (e->name_len == strlen(name) &&
		    memcmp(e->name, name, e->name_len) == 0) {
			if (slot_off)
				*slot_off = toff + 64 + i * 8;
			return off;
		}
	}
	FAIL("entry %s not found", name);
}

static unsigned char *make_damage_seg(const char *n, struct layout *L)
{
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, &(int64_t){ 5 }, 8, &v));
	shval_close(v);
	ASSERT_OK(shval_create(s, "s", "8s", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_set_str(v, "abc", 3));
	shval_close(v);
	ASSERT_OK(shval_create(s, "a", "i", SHVAL_ATOMIC, NULL, 0, &v));
	shval_close(v);
	shval_seg_close(s);
	int fd = open(shm_path(n), O_RDONLY);
	ASSERT(fd >= 0);
	struct stat st;
	ASSERT_EQ(fstat(fd, &st), 0);
	unsigned char *img = malloc((size_t)st.st_size);
	ASSERT(img);
	ASSERT_EQ(pread(fd, img, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	L->fsize = (uint64_t)st.st_size;
	L->table_off = ((shval__hdr *)img)->table_off;
	L->ent_v = find_entry(img, "v", &L->slot_v);
	L->ent_s = find_entry(img, "s", NULL);
	L->type_v = (uint64_t)((shval__entry *)(img + L->ent_v))->type_line * 64;
	return img;
}

static void restore(const char *n, const unsigned char *img, uint64_t size)
{
	int fd = open(shm_path(n), O_RDWR | O_CREAT | O_TRUNC, 0600);
	ASSERT(fd >= 0);
	ASSERT_EQ(pwrite(fd, img, size, 0), (ssize_t)size);
	close(fd);
}

static void poke(const char *n, uint64_t off, uint64_t val, size_t width)
{
	int fd = open(shm_path(n), O_RDWR);
	ASSERT(fd >= 0);
	ASSERT_EQ(pwrite(fd, &val, width, (off_t)off), (ssize_t)width);
	close(fd);
}

enum { OP_OPEN, OP_FIND, OP_CREATE, OP_GETSTR, OP_NEXT, OP_INFO, OP_FILL };
static const char *op_names[] = { "open", "find", "create", "get_str",
				  "seg_next", "info", "fill" };

/* Run op on the damaged segment in a child: returns its result code (or
 * FAILs on a crash/hang, or on an error without a message). */
static void expect_damage(const char *n, const char *what, int op, int want)
{
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		alarm(20);
		shval_seg *s = NULL;
		shval *v = NULL;
		int r = shval_seg_open(n, 0, NULL, &s);
		const char *msg = shval_errmsg(NULL);
		if (r == 0 && op != OP_OPEN) {
			struct shval_info in;
			uint64_t cur = 0;
			size_t len;
			char buf[64];
			switch (op) {
			case OP_FIND:
				r = shval_find(s, "v", NULL, &v);
				break;
			case OP_CREATE:
				r = shval_create(s, "new", "3h", 0, NULL, 0, &v);
				break;
			case OP_GETSTR:
				r = shval_find(s, "s", NULL, &v);
				if (r == 0)
					r = shval_get_str(v, buf, sizeof buf, &len);
				break;
			case OP_NEXT:
				while ((r = shval_seg_next(s, &cur, NULL, &in)) == 0)
					;
				if (r == SHVAL_ENOTFOUND)
					r = 0;
				break;
			case OP_FILL: /* create until something fails */
				for (int i = 0; i < 100000; i++) {
					char vn[32];
					snprintf(vn, sizeof vn, "f%d", i);
					r = shval_create(s, vn, "100q", 0, NULL, 0, &v);
					if (r)
						break;
					shval_close(v);
				}
				break;
			case OP_INFO:
				r = shval_find(s, "v", NULL, &v);
				if (r == 0)
					r = shval_info(v, &in);
				break;
			}
			msg = shval_errmsg(s);
		}
		char out[600];
		snprintf(out, sizeof out, "%d %s", r, msg);
		ASSERT(write(p[1], out, strlen(out) + 1) > 0);
		_exit(0);
	}
	close(p[1]);
	char out[600] = "";
	ssize_t k = read(p[0], out, sizeof out - 1);
	close(p[0]);
	int st = wait_status(pid);
	if (st != 0)
		FAIL("%s: %s ended with status %d (crash or hang)", what,
		     op_names[op], st);
	ASSERT(k > 0);
	int r = atoi(out);
	const char *msg = strchr(out, ' ');
	msg = msg ? msg + 1 : "";
	if (r != want)
		FAIL("%s: %s gave %s, expected %s (message: \"%s\")", what,
		     op_names[op], shval_strerror(r), shval_strerror(want), msg);
	if (r != 0 && !msg[0])
		FAIL("%s: %s gave %s with an empty message", what, op_names[op],
		     shval_errname(r));
	printf("  %-28s %-8s -> %s: %s\n", what, op_names[op], shval_errname(r), msg);
}

struct damage {
	const char *what;
	int where; /* 0 header, 1 entry v, 2 type record of v, 3 table, 4 slot
		      of v, 5 entry s, 6 truncate */
	uint64_t off;
	size_t width;
	uint64_t val;
	int op, want;
};

TEST(damaged_header_and_directory)
{
	const char *n = test_segname("damage");
	struct layout L;
	unsigned char *img = make_damage_seg(n, &L);
	const uint64_t slot_tag = *(uint64_t *)(img + L.slot_v) & ~0xffffffffull;
	const struct damage dm[] = {
		/* header: open refuses */
		{ "magic", 0, 0, 8, 0x1234, OP_OPEN, SHVAL_ECORRUPT },
		{ "magic zero", 0, 0, 8, 0, OP_OPEN, SHVAL_ECORRUPT },
		{ "magic other byte order", 0, 0, 8, SHVAL__MAGIC_SWAPPED, OP_OPEN,
		  SHVAL_EVERSION },
		{ "format major + 1", 0, 8, 2, SHVAL__FORMAT_MAJOR + 1, OP_OPEN, SHVAL_EVERSION },
		{ "format major 0", 0, 8, 2, 0, OP_OPEN, SHVAL_EVERSION },
		{ "header size", 0, 12, 4, 4096, OP_OPEN, SHVAL_EVERSION },
		{ "layout signature", 0, 16, 8, SHVAL__LAYOUT_SIG ^ 1, OP_OPEN,
		  SHVAL_EVERSION },
		{ "init state creating", 0, 24, 4, SHVAL__INIT_CREATING, OP_OPEN,
		  SHVAL_ECORRUPT },
		{ "init state 7", 0, 24, 4, 7, OP_OPEN, SHVAL_ECORRUPT },
		{ "max size 0", 0, 40, 8, 0, OP_OPEN, SHVAL_ECORRUPT },
		{ "max size unaligned", 0, 40, 8, (1ull << 30) + 1, OP_OPEN,
		  SHVAL_ECORRUPT },
		{ "max size 2^50", 0, 40, 8, 1ull << 50, OP_OPEN, SHVAL_ECORRUPT },
		{ "max size < file", 0, 40, 8, 8192, OP_OPEN, SHVAL_ECORRUPT },
		{ "attach cap", 0, 52, 4, 3, OP_OPEN, SHVAL_ECORRUPT },
		{ "truncated to 0", 6, 0, 0, 0, OP_OPEN, SHVAL_ECORRUPT },
		{ "truncated to 100", 6, 0, 0, 100, OP_OPEN, SHVAL_ECORRUPT },
		{ "truncated to 4096", 6, 0, 0, 4096, OP_OPEN, SHVAL_ECORRUPT },
		/* directory root */
		{ "table_off 0", 0, 208, 8, 0, OP_FIND, SHVAL_ECORRUPT },
		{ "table_off 0 (create)", 0, 208, 8, 0, OP_CREATE, SHVAL_ECORRUPT },
		{ "table_off 0 (next)", 0, 208, 8, 0, OP_NEXT, SHVAL_ECORRUPT },
		{ "table_off unaligned", 0, 208, 8, 5121, OP_FIND, SHVAL_ECORRUPT },
		{ "table_off in header", 0, 208, 8, 64, OP_FIND, SHVAL_ECORRUPT },
		{ "table_off 2^40", 0, 208, 8, 1ull << 40, OP_FIND, SHVAL_ECORRUPT },
		{ "table_off past file", 0, 208, 8, 1ull << 29, OP_FIND, SHVAL_ECORRUPT },
		{ "table cap 0", 3, 0, 8, 0, OP_FIND, SHVAL_ECORRUPT },
		{ "table cap 17", 3, 0, 8, 17, OP_FIND, SHVAL_ECORRUPT },
		{ "table cap 2^40", 3, 0, 8, 1ull << 40, OP_CREATE, SHVAL_ECORRUPT },
		{ "table cap 2^20", 3, 0, 8, 1ull << 20, OP_NEXT, SHVAL_ECORRUPT },
		/* v's slot */
		{ "slot -> line 0", 4, 0, 8, slot_tag | 0, OP_FIND, SHVAL_ECORRUPT },
		{ "slot -> line 7 (header)", 4, 0, 8, slot_tag | 7, OP_FIND,
		  SHVAL_ECORRUPT },
		{ "slot -> past file", 4, 0, 8, slot_tag | 0xffffffffull, OP_FIND,
		  SHVAL_ECORRUPT },
		/* v's entry */
		{ "entry name_len 0", 1, 20, 2, 0, OP_FIND, SHVAL_ECORRUPT },
		{ "entry name_len 0xffff", 1, 20, 2, 0xffff, OP_FIND, SHVAL_ECORRUPT },
		{ "entry data_rel 0", 1, 22, 2, 0, OP_FIND, SHVAL_ECORRUPT },
		{ "entry data_rel unaligned", 1, 22, 2, 100, OP_FIND, SHVAL_ECORRUPT },
		{ "entry data_rel past block", 1, 22, 2, 0xfff0, OP_FIND,
		  SHVAL_ECORRUPT },
		{ "entry type_line 0", 1, 24, 4, 0, OP_FIND, SHVAL_ECORRUPT },
		{ "entry type_line huge", 1, 24, 4, 0xfffffff0u, OP_FIND,
		  SHVAL_ECORRUPT },
		{ "entry type_line -> itself", 1, 24, 4, L.ent_v / 64, OP_FIND,
		  SHVAL_ECORRUPT },
		{ "entry nlines 0", 1, 28, 4, 0, OP_FIND, SHVAL_ECORRUPT },
		{ "entry nlines huge", 1, 28, 4, 0xffffffffu, OP_FIND, SHVAL_ECORRUPT },
		{ "entry mode 9", 1, 17, 1, 9, OP_FIND, SHVAL_ECORRUPT },
		{ "entry kind 4", 1, 18, 1, SHVAL_KIND_STRUCT, OP_FIND, SHVAL_ECORRUPT },
		{ "entry lock_off unaligned", 1, 32, 8, 5123, OP_FIND, SHVAL_ECORRUPT },
		{ "entry lock_off 2^40", 1, 32, 8, 1ull << 40, OP_FIND, SHVAL_ECORRUPT },
		{ "entry lock_off 0", 1, 32, 8, 0, OP_FIND, SHVAL_ECORRUPT },
		/* v's type record */
		{ "type magic", 2, 0, 8, 0x4141, OP_FIND, SHVAL_ECORRUPT },
		{ "type magic (create)", 2, 0, 8, 0x4141, OP_CREATE, SHVAL_ECORRUPT },
		/* iteration reports it (it used to skip the value silently) */
		{ "type magic (next)", 2, 0, 8, 0x4141, OP_NEXT, SHVAL_ECORRUPT },
		{ "type len 0", 2, 24, 4, 0, OP_FIND, SHVAL_ECORRUPT },
		{ "type len huge", 2, 24, 4, 100000, OP_FIND, SHVAL_ECORRUPT },
		{ "type size 4", 2, 16, 8, 4, OP_FIND, SHVAL_ECORRUPT },
		{ "type canon 'x'", 2, 32, 1, 'x', OP_FIND, SHVAL_ECORRUPT },
		{ "type canon not NUL-ended", 2, 33, 1, 'q', OP_FIND, SHVAL_ECORRUPT },
		/* data */
		{ "string length > capacity", 5, 0, 4, 100, OP_GETSTR, SHVAL_ECORRUPT },
		/* allocator and counters */
		{ "types_off garbage", 0, 248, 8, 5121, OP_CREATE, SHVAL_ECORRUPT },
		{ "limbo_head garbage", 0, 256, 8, 1ull << 40, OP_CREATE,
		  SHVAL_ECORRUPT },
		{ "brk 0", 0, 200, 8, 0, OP_CREATE, SHVAL_ECORRUPT },
		{ "brk inside header", 0, 200, 8, 1024, OP_CREATE, SHVAL_ECORRUPT },
		{ "brk unaligned", 0, 200, 8, L.fsize - 100, OP_CREATE, SHVAL_ECORRUPT },
		{ "size > file", 0, 192, 8, 1ull << 30, OP_FILL, SHVAL_ECORRUPT },
		{ "size > max_size", 0, 192, 8, 1ull << 34, OP_FILL, SHVAL_ECORRUPT },
		{ "nvalues 2^62", 0, 216, 8, 1ull << 62, OP_CREATE, SHVAL_ECORRUPT },
		{ "nvalues > slots", 0, 216, 8, 17, OP_CREATE, SHVAL_ECORRUPT },
		{ "ntomb 2^62", 0, 224, 8, 1ull << 62, OP_CREATE, SHVAL_ECORRUPT },
		{ "free list garbage", 0, 512 + 8 * 1, 8, 12345, OP_CREATE, 0 },
		{ "big free list garbage", 0, 512, 8, 1ull << 40, OP_CREATE, 0 },
	};
	int failures = 0;
	for (size_t i = 0; i < sizeof dm / sizeof dm[0]; i++) {
		const struct damage *d = &dm[i];
		restore(n, img, L.fsize);
		uint64_t base = 0;
		switch (d->where) {
		case 1: base = L.ent_v; break;
		case 2: base = L.type_v; break;
		case 3: base = L.table_off; break;
		case 4: base = L.slot_v; break;
		case 5: base = L.ent_s + ((shval__entry *)(img + L.ent_s))->data_rel; break;
		}
		if (d->where == 6) {
			ASSERT_EQ(truncate(shm_path(n), (off_t)d->val), 0);
		} else {
			poke(n, base + d->off, d->val, d->width);
		}
		/* each expectation checked in a child: a crash or a hang is a
		 * failure of that line only; all lines run, then we fail */
		pid_t pid = fork();
		ASSERT(pid >= 0);
		if (pid == 0) {
			expect_damage(n, d->what, d->op, d->want);
			_exit(0);
		}
		if (wait_status(pid) != 0)
			failures++;
	}
	/* the undamaged image still works */
	restore(n, img, L.fsize);
	expect_damage(n, "undamaged", OP_INFO, 0);
	expect_damage(n, "undamaged", OP_CREATE, 0);
	free(img);
	ASSERT_OK(shval_seg_unlink(n));
	ASSERT_EQ(failures, 0);
}

/* Random damage in the header, directory, entries and type records: no
 * crash and no hang, whatever the answer. */
TEST(damaged_random_no_crash)
{
	const char *n = test_segname("fuzz");
	enum { NFUZZ = 3000 };
	struct layout L;
	unsigned char *img = make_damage_seg(n, &L);
	struct shared *sh = shared_page();
	/* regions to damage: [off, len) */
	uint64_t reg[][2] = {
		{ 0, 64 },                 /* identity line */
		{ 192, 96 },               /* size .. used */
		{ 512, 512 },              /* free lists */
		{ L.table_off, 64 + 16 * 8 },
		{ L.ent_v + 16, 24 },      /* entry fields after the serial */
		{ L.ent_s + 16, 24 },
		{ L.type_v, 40 },
	};
	size_t nreg = sizeof reg / sizeof reg[0];
	unsigned seed = (unsigned)getpid();
	int crashes = 0, opened = 0;
	double t0 = now_s();
	for (int it = 0; it < NFUZZ; it++) {
		restore(n, img, L.fsize);
		int nflip = 1 + rand_r(&seed) % 4;
		char desc[256] = "";
		for (int f = 0; f < nflip; f++) {
			size_t ri = (size_t)rand_r(&seed) % nreg;
			uint64_t off = reg[ri][0] + (uint64_t)rand_r(&seed) % reg[ri][1];
			uint64_t b;
			size_t width = 1;
			switch (rand_r(&seed) % 4) {
			case 0: b = (uint64_t)(rand_r(&seed) & 0xff); break;
			case 1: b = img[off] ^ (1u << (rand_r(&seed) % 8)); break;
			case 2: b = 0xff; break;
			default: /* a whole aligned word: small, huge or near a real offset */
				off &= ~7ull;
				width = 8;
				b = rand_r(&seed) % 2 ? (uint64_t)rand_r(&seed) << (rand_r(&seed) % 40)
						      : L.fsize + 64 * (uint64_t)(rand_r(&seed) % 64) - 2048;
				break;
			}
			poke(n, off, b, width);
			size_t dl = strlen(desc);
			snprintf(desc + dl, sizeof desc - dl, " [%llu]=0x%02llx",
				 (unsigned long long)off, (unsigned long long)b);
		}
		pid_t pid = fork();
		ASSERT(pid >= 0);
		if (pid == 0) {
			alarm(10);
			shval_seg *s;
			if (shval_seg_open(n, 0, NULL, &s) != 0) {
				if (!shval_errmsg(NULL)[0])
					_exit(3);
				_exit(0);
			}
			atomic_fetch_add(&sh->counter, 1);
			const char *names[] = { "v", "s", "a", "zz" };
			for (int k = 0; k < 4; k++) {
				shval *v;
				if (shval_find(s, names[k], NULL, &v) == 0) {
					unsigned char buf[64];
					struct shval_info in;
					shval_read(v, buf, sizeof buf);
					shval_info(v, &in);
					shval_to_text(v, 0, (char *)buf, sizeof buf, NULL);
					shval_close(v);
				}
			}
			uint64_t cur = 0;
			struct shval_info in;
			for (int k = 0; k < 100 && shval_seg_next(s, &cur, NULL, &in) == 0; k++)
				;
			shval *v;
			if (shval_create(s, "new", "2q", 0, NULL, 0, &v) == 0)
				shval_close(v);
			shval_remove(s, "a");
			struct shval_seg_info si;
			shval_seg_info(s, &si);
			shval_seg_close(s);
			_exit(0);
		}
		int st = wait_status(pid);
		if (st != 0) {
			crashes++;
			(void)opened;
			fprintf(stderr, "damage%s: status %d%s\n", desc, st,
				st == 128 + SIGALRM ? " (hang)" : st > 128 ? " (signal)" : "");
		}
	}
	printf("%d random damages in %.2f s (%ld opened), %d crashes/hangs\n",
	       NFUZZ, now_s() - t0, (long)sh->counter, crashes);
	free(img);
	ASSERT_OK(shval_seg_unlink(n));
	ASSERT_EQ(crashes, 0);
}

/* ---- one million values ---- */

TEST(one_million_values)
{
	enum { N = 1000000 };
	const char *n = test_segname("million");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	char name[32];
	double t0 = now_s();
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof name, "key%013d", i); /* 16 bytes */
		int64_t init = (int64_t)i * 7;
		shval *v;
		int r = shval_create(s, name, "q", SHVAL_ATOMIC, &init, 8, &v);
		if (r)
			FAIL("create #%d: %s (%s)", i, shval_strerror(r), shval_errmsg(s));
		shval_close(v);
	}
	double t1 = now_s();
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nvalues, N);
	unsigned seed = 12345;
	for (int k = 0; k < 100000; k++) {
		int i = (int)(rand_r(&seed) % N);
		snprintf(name, sizeof name, "key%013d", i);
		shval *v;
		int64_t x;
		ASSERT_OK(shval_find(s, name, "q", &v));
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, (int64_t)i * 7);
		shval_close(v);
	}
	shval *v;
	ASSERT_ERR(shval_find(s, "key0000001000000", NULL, &v), SHVAL_ENOTFOUND);
	double t2 = now_s();
	/* another process finds them too */
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval_seg *cs;
		ASSERT_OK(shval_seg_open(n, SHVAL_RDONLY, NULL, &cs));
		for (int i = 0; i < N; i += 997) {
			snprintf(name, sizeof name, "key%013d", i);
			int64_t x;
			ASSERT_OK(shval_find(cs, name, "q", &v));
			ASSERT_OK(shval_get_i64(v, &x));
			ASSERT_EQ(x, (int64_t)i * 7);
			shval_close(v);
		}
		shval_seg_close(cs);
		_exit(0);
	}
	test_wait_ok(pid);
	uint64_t cur = 0;
	struct shval_info in;
	long cnt = 0;
	while (shval_seg_next(s, &cur, "key00000000000", &in) == 0)
		cnt++;
	ASSERT_EQ(cnt, 100);
	double t3 = now_s();
	printf("1M values: create %.2f s, 100k finds %.2f s, check %.2f s; "
	       "used %llu bytes = %.1f bytes/value, size %llu\n",
	       t1 - t0, t2 - t1, t3 - t2, (unsigned long long)si.used,
	       (double)si.used / 1e6, (unsigned long long)si.size);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

TEST_MAIN()
