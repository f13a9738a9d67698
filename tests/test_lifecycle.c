/*
 * tests/test_lifecycle.c — the lifecycle of values and segments across
 * processes: removal and stale handles, waiting on a removed value, space
 * reuse, temporary segments removed after SIGKILL or the last close,
 * file-backed segments surviving a reopen.  Removal and stale handles
 * also run on a Redis segment (TEST_BOTH); space reuse, temporary and
 * file segments are local matters.
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

/* ---- removal and stale handles ---- */

TEST_BOTH(remove_and_stale_across_processes)
{
	const char *n = test_seg_name("stale");
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
TEST_BOTH(wait_on_removed_value)
{
	shval_seg *s = test_seg_new();
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
	test_seg_done(s);
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

TEST_MAIN()
