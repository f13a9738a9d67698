/*
 * tests/proc_util.h — helpers of the multi-process tests (test_sharing,
 * test_lifecycle, test_access, test_corrupt's damaged segments,
 * test_scale): a page shared with children, waiting for them, the
 * helper_open program (an unrelated, exec'd process), a tmpfs in a mount
 * namespace of the test's own (test_access, test_hostile).
 */
#ifndef SHVAL_TEST_PROC_UTIL_H
#define SHVAL_TEST_PROC_UTIL_H

/* Not every test file uses every helper. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#ifndef HELPER_OPEN_PATH
#error "HELPER_OPEN_PATH must be defined by tests/CMakeLists.txt"
#endif

/* ---- a small file system of our own ---- */

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

/* A mount namespace of our own with a tmpfs of size_k KiB at dir (a
 * mkdtemp template).  Mounting needs CAP_SYS_ADMIN: root has it; an
 * unprivileged user gets it in a user namespace of its own (same uid and
 * gid inside, so file owners are what they are outside).  Skips the case
 * when that is not possible. */
static void own_tmpfs(char *dir, unsigned size_k)
{
	if (geteuid() != 0) {
		uid_t uid = geteuid();
		gid_t gid = getegid();
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			SKIP("not root, and no user namespace to mount a tmpfs "
			     "in: unshare(CLONE_NEWUSER): %s",
			     strerror(errno));
		char map[64];
		snprintf(map, sizeof map, "%u %u 1\n", (unsigned)uid,
			 (unsigned)uid);
		ASSERT_EQ(write_proc("/proc/self/uid_map", map), 0);
		ASSERT_EQ(write_proc("/proc/self/setgroups", "deny"), 0);
		snprintf(map, sizeof map, "%u %u 1\n", (unsigned)gid,
			 (unsigned)gid);
		ASSERT_EQ(write_proc("/proc/self/gid_map", map), 0);
		ASSERT_EQ(geteuid(), uid);
	} else if (unshare(CLONE_NEWNS) != 0) {
		SKIP("unshare(CLONE_NEWNS): %s", strerror(errno));
	}
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		SKIP("make mounts private: %s", strerror(errno));
	ASSERT(mkdtemp(dir));
	char opt[32];
	snprintf(opt, sizeof opt, "size=%uk", size_k);
	if (mount("tmpfs", dir, "tmpfs", 0, opt) != 0) {
		rmdir(dir);
		SKIP("mount tmpfs: %s", strerror(errno));
	}
}

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

#pragma GCC diagnostic pop

#endif
