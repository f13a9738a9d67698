/*
 * tests/test_sharing.c — sharing between processes: an unrelated (exec'd)
 * process opening by name, by an inherited fd or one received over a
 * socket, fork inheritance, growth while another process is attached,
 * create races, lookups during a directory resize.  An exec'd process
 * opening by name and the create races also run on a Redis segment
 * (TEST_BOTH); fds, fork-inherited mappings, growth and the directory's
 * resize are local matters.
 */
#include <shval.h>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "format.h"
#include "test.h"
#include "proc_util.h"
#include "segkind.h"

/* ---- an unrelated process ---- */

TEST_BOTH(exec_opens_by_name)
{
	const char *n = test_seg_name("exec");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	setup_helper_values(s);
	test_wait_ok(run_helper("name", n, -1));
	check_helper_ran(s);
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	if (TEST_ON_REDIS) { /* no attach counts (the manual) */
		ASSERT_EQ(si.nalive, 0);
		ASSERT_EQ(si.nattached, 0);
	} else {
		ASSERT_EQ(si.nalive, 1); /* the helper detached on close */
		/* The slot claimed for the fork() child before its exec()
		 * stays until reaped: counted as attached (dead), not alive */
		ASSERT_LE(si.nattached, 2);
	}
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

TEST_BOTH(race_create_segment_and_value)
{
	enum { NPROC = 4 };
	const int ROUNDS = TEST_ON_REDIS ? 10 : 100;
	struct shared *sh = shared_page();
	double t0 = now_s();
	for (int round = 0; round < ROUNDS; round++) {
		char what[32];
		snprintf(what, sizeof what, "race%d", round);
		const char *n = test_seg_name(what);
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

TEST_BOTH(race_find_or_create)
{
	enum { NPROC = 6 };
	const int NNAMES = TEST_ON_REDIS ? 100 : 500;
	const char *n = test_seg_name("foc");
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

TEST_MAIN()
