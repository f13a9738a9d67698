/*
 * tests/test_access.c — access rights and hostile file systems: symlinks
 * refused, read-only opens (every write refused, readers during big
 * writes), another user, a full file system.
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
		/* a local waiter announces itself in the mapping; a Redis
		 * wait only reads (the manual's REDIS SEGMENTS) */
		ASSERT_ERR(shval_wait(all[i], &seen, 10 * SHVAL_MSEC),
			   TEST_ON_REDIS ? -ETIMEDOUT : SHVAL_ERDONLY);
		if (TEST_ON_REDIS) { /* no mapping (documented) */
			ASSERT(shval_data(all[i]) == NULL);
		} else {
			ASSERT(shval_data(all[i]) != NULL); /* readable */
			ASSERT_EQ(*(int64_t *)shval_data(all[i]), 7);
		}
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
	ASSERT_ERR(shval_seg_wait(ro, &sseen, 10 * SHVAL_MSEC),
		   TEST_ON_REDIS ? -ETIMEDOUT : SHVAL_ERDONLY);
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

/* Also on a Redis segment (the open by name; fds and file modes are
 * local matters). */
TEST_BOTH(rdonly_writes_refused)
{
	const char *n = test_seg_name("ro");
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
	if (TEST_ON_REDIS) {
		shval_seg_close(s);
		ASSERT_OK(shval_seg_unlink(n));
		return;
	}
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

/* ---- another user ---- */

static void become_nobody(void)
{
	if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
		fprintf(stderr, "cannot become nobody: %s\n", strerror(errno));
		_exit(77);
	}
}

/* The owner check as an unprivileged user (ctest runs this case a second
 * time as nobody: test_access.other_user_refused.unprivileged): files of
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

TEST_MAIN()
