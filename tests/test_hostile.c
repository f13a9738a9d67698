/*
 * tests/test_hostile.c — hostile input and environment (issue 11): names
 * squatted by FIFOs, values removed under a lock holder, sparse segment
 * files on a full file system, paths through directories others control,
 * attach slots of killed processes, bad timeouts, bad names, code points.
 * Each case failed (hung, crashed or wrote the wrong thing) before the fix
 * it guards.
 */
#include <shval.h>

#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "format.h"
#include "test.h"
#include "proc_util.h"

/* Run fn in a child with an alarm of secs: its exit status, or 128 + the
 * signal (SIGALRM = it hung). */
static int in_child(void (*fn)(void *), void *arg, unsigned secs)
{
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		alarm(secs);
		fn(arg);
		_exit(0);
	}
	return wait_status(pid);
}

/* ---- FIFO squatting ---- */

struct open_arg {
	const char *name;
	unsigned flags;
	int want;
};

/* A new segment of the case's own, named test_segname(what) (*name). */
static shval_seg *new_seg(const char *what, const char **name)
{
	shval_seg *s;
	*name = test_segname(what);
	ASSERT_OK(shval_seg_open(*name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	return s;
}

/* Close and remove a segment new_seg made. */
static void end_seg(shval_seg *s, const char *name)
{
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

/* A file in a directory of the test's own: dir (made by tmp_file with
 * mkdtemp, or given to tmp_file_in, e.g. by own_tmpfs), path = dir/leaf,
 * and its segment name "file:path". */
struct tmp_file {
	char dir[32];
	char path[300];
	char name[320];
};

static void tmp_file_in(struct tmp_file *t, const char *dir, const char *leaf)
{
	snprintf(t->dir, sizeof t->dir, "%s", dir);
	snprintf(t->path, sizeof t->path, "%s/%s", dir, leaf);
	snprintf(t->name, sizeof t->name, "file:%s", t->path);
}

static void tmp_file(struct tmp_file *t, const char *leaf)
{
	char dir[] = "/tmp/shvaltest.XXXXXX";
	ASSERT(mkdtemp(dir));
	tmp_file_in(t, dir, leaf);
}

static void open_expect(void *p)
{
	struct open_arg *a = p;
	shval_seg *s;
	int r = shval_seg_open(a->name, a->flags, NULL, &s);
	if (r != a->want) {
		fprintf(stderr, "open %s flags 0x%x: %d (%s), want %d: %s\n",
			a->name, a->flags, r, shval_strerror(r), a->want,
			shval_errmsg(NULL));
		_exit(1);
	}
	if (!strstr(shval_errmsg(NULL), "FIFO") ||
	    !strstr(shval_errmsg(NULL), a->name)) {
		fprintf(stderr, "message: %s\n", shval_errmsg(NULL));
		_exit(2);
	}
}

TEST(fifo_squatting_refused)
{
	const char *name = test_segname("fifo");
	ASSERT_EQ(mkfifo(shm_path(name), 0666), 0);
	struct tmp_file f;
	tmp_file(&f, "fifo");
	ASSERT_EQ(mkfifo(f.path, 0666), 0);
	unsigned fl[] = { SHVAL_RDONLY, 0, SHVAL_CREATE,
			  SHVAL_RDONLY | SHVAL_FOREIGN };
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 4; i++) {
			struct open_arg a = { k ? f.name : name, fl[i],
					      SHVAL_ECORRUPT };
			int st = in_child(open_expect, &a, 5);
			if (st != 0)
				FAIL("%s flags 0x%x: child status %d%s", a.name,
				     fl[i], st,
				     st == 128 + SIGALRM ? " (hung)" : "");
		}
	/* the name is left alone */
	struct stat st;
	ASSERT_EQ(lstat(shm_path(name), &st), 0);
	ASSERT(S_ISFIFO(st.st_mode));
	unlink(shm_path(name));
	unlink(f.path);
	ASSERT_EQ(rmdir(f.dir), 0);
}

/* ---- the segment format on a mapping of our own ---- */

static unsigned char *map_shm(const char *name, size_t *len)
{
	int fd = open(shm_path(name), O_RDWR | O_CLOEXEC);
	ASSERT(fd >= 0);
	struct stat st;
	ASSERT_EQ(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	unsigned char *b =
		mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ASSERT(b != MAP_FAILED);
	close(fd);
	return b;
}

static shval__entry *entry_of(unsigned char *base, size_t len,
			      const char *name)
{
	shval__hdr *h = (shval__hdr *)base;
	uint64_t toff = atomic_load(&h->table_off);
	uint64_t cap;
	memcpy(&cap, base + toff, 8);
	ASSERT(toff + SHVAL__LINE + cap * 8 <= len);
	const uint64_t *slots = (const uint64_t *)(base + toff + SHVAL__LINE);
	for (uint64_t i = 0; i < cap; i++) {
		uint64_t s = slots[i];
		if (s == SHVAL__SLOT_EMPTY || s == SHVAL__SLOT_TOMB)
			continue;
		shval__entry *e =
			(shval__entry *)(base + (s & 0xffffffffull) * SHVAL__LINE);
		if (e->name_len == strlen(name) &&
		    memcmp(e->name, name, e->name_len) == 0)
			return e;
	}
	FAIL("no entry %s", name);
}

struct found {
	int n, corrupt;
	char what[8][600];
};

static void collect(const shval_problem *p, void *arg)
{
	struct found *f = arg;
	if (f->n < 8)
		snprintf(f->what[f->n], sizeof f->what[0], "%s: %s", p->name, p->what);
	f->n++;
	if (p->code == SHVAL_ECORRUPT)
		f->corrupt++;
}

static bool found_has(const struct found *f, const char *needle)
{
	for (int i = 0; i < f->n && i < 8; i++)
		if (strstr(f->what[i], needle))
			return true;
	return false;
}

/* ---- a value removed under a live lock holder ---- */

TEST(remove_refused_while_lock_held)
{
	const char *name;
	shval_seg *s = new_seg("held", &name);
	shval *v, *L, *g;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_lock_create(s, "L", SHVAL_RLOCK, &L));
	ASSERT_OK(shval_create_guarded(s, "g", "q", L, NULL, 0, &g));
	struct shared *sh = shared_page();
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		/* a holder paused inside its sections */
		alarm(60);
		if (shval_lock(v) || shval_lock(L))
			_exit(1);
		atomic_store(&sh->ready, 1);
		spin_until(&sh->go, 1);
		*(int64_t *)shval_data(v) = 7;
		*(int64_t *)shval_data(g) = 8;
		if (shval_unlock(L) || shval_unlock(v))
			_exit(2);
		_exit(0);
	}
	spin_until(&sh->ready, 1);
	ASSERT_ERR(shval_remove(s, "v"), -EBUSY);
	ASSERT(strstr(shval_errmsg(s), "locked by thread"));
	ASSERT(strstr(shval_errmsg(s), "v"));
	ASSERT_ERR(shval_remove(s, "g"), -EBUSY); /* through its shared lock */
	/* nothing was removed: the holder's writes land in its own values */
	shval *v2;
	ASSERT_OK(shval_find(s, "v", "q", &v2));
	shval_close(v2);
	atomic_store(&sh->go, 1);
	test_wait_ok(pid);
	int64_t x;
	ASSERT_OK(shval_get_i64(v, &x));
	ASSERT_EQ(x, 7);
	ASSERT_OK(shval_get_i64(g, &x));
	ASSERT_EQ(x, 8);
	/* released: removal goes through */
	ASSERT_OK(shval_remove(s, "v"));
	ASSERT_OK(shval_remove(s, "g"));
	/* a dead holder does not block removal */
	shval *d;
	ASSERT_OK(shval_create(s, "d", "q", SHVAL_RLOCK, NULL, 0, &d));
	pid = fork();
	if (pid == 0) {
		shval_lock(d);
		_exit(0);
	}
	ASSERT_EQ(wait_status(pid), 0);
	ASSERT_OK(shval_remove(s, "d"));
	shval_close(d);
	shval_close(v);
	shval_close(g);
	shval_close(L);
	end_seg(s, name);
}

TEST(check_finds_foreign_lock_block)
{
	const char *name;
	shval_seg *s = new_seg("lockown", &name);
	shval *L, *g, *other;
	ASSERT_OK(shval_lock_create(s, "L", SHVAL_RLOCK, &L));
	ASSERT_OK(shval_create_guarded(s, "g", "q", L, NULL, 0, &g));
	ASSERT_OK(shval_create(s, "other", "q", SHVAL_RLOCK, NULL, 0, &other));
	struct found f = { 0 };
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL));
	ASSERT_EQ(f.n, 0);
	size_t len;
	unsigned char *b = map_shm(name, &len);
	shval__entry *ge = entry_of(b, len, "g");
	shval__entry *oe = entry_of(b, len, "other");
	/* g now names the lock block of another value (as a write through a
	 * stale pointer into a reused block could make it) */
	uint64_t was = ge->lock_off;
	ge->lock_off = oe->lock_off;
	memset(&f, 0, sizeof f);
	ASSERT_ERR(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL),
		   SHVAL_ECORRUPT);
	ASSERT(found_has(&f, "g: lock offset"));
	ASSERT(found_has(&f, "not the lock of any lock entry"));
	ASSERT(found_has(&f, "L: lock counts 1 user(s), 0 value(s)"));
	ge->lock_off = was;
	/* a users count that disagrees is repaired */
	shval__lockblk *lk = (shval__lockblk *)(b + was);
	lk->users = 5;
	memset(&f, 0, sizeof f);
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_REPAIR, collect, &f, NULL));
	ASSERT(found_has(&f, "count set"));
	ASSERT_EQ(lk->users, 1);
	munmap(b, len);
	shval_close(g);
	shval_close(L);
	shval_close(other);
	end_seg(s, name);
}

/* ---- a sparse segment file on a full file system ---- */

struct sparse_arg {
	const char *name;
};

static void write_everything(void *p)
{
	struct sparse_arg *a = p;
	shval_seg *s;
	int r = shval_seg_open(a->name, 0, NULL, &s);
	if (r) {
		printf("open: %s\n", shval_errmsg(NULL));
		_exit(r == -ENOSPC ? 10 : 11);
	}
	shval *v;
	if (shval_find(s, "big", "100000d", &v))
		_exit(12);
	static double d[100000];
	for (int i = 0; i < 100000; i++)
		d[i] = i + 1;
	/* the pages of the data are holes: SIGBUS here if not backed */
	_exit(shval_write(v, d, sizeof d) == 0 ? 0 : 13);
}

TEST(sparse_copy_full_disk_enospc)
{
	/* The segment is built on /tmp, copied sparsely (only the blocks that
	 * are not all zeros) into a 2 MiB tmpfs, which is then filled up: the
	 * data of the 800 KB value is a hole the file system has no room
	 * for.  Before the fix, the writable open succeeded and the first
	 * write into the hole killed the process with SIGBUS. */
	struct tmp_file src, dst;
	tmp_file(&src, "seg");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(src.name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v;
	ASSERT_OK(shval_create(s, "big", "100000d", 0, NULL, 0, &v));
	shval_close(v);
	shval_seg_close(s);

	char dir[] = "/tmp/shvaltest.XXXXXX";
	own_tmpfs(dir, 2048);
	tmp_file_in(&dst, dir, "seg");
	char filler[300];
	snprintf(filler, sizeof filler, "%s/filler", dir);
	int in = open(src.path, O_RDONLY | O_CLOEXEC);
	int out = open(dst.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ASSERT(in >= 0 && out >= 0);
	static unsigned char blk[4096], zero[4096];
	off_t off = 0, holes = 0;
	ssize_t n;
	while ((n = pread(in, blk, sizeof blk, off)) > 0) {
		if (memcmp(blk, zero, (size_t)n) != 0)
			ASSERT_EQ(pwrite(out, blk, (size_t)n, off), n);
		else
			holes += n;
		off += n;
	}
	ASSERT_EQ(ftruncate(out, off), 0);
	close(in);
	close(out);
	ASSERT_GT(holes, 700000);
	unlink(src.path);
	rmdir(src.dir);
	/* fill the file system */
	int fd = open(filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	ASSERT(fd >= 0);
	while (write(fd, zero, sizeof zero) > 0)
		;
	ASSERT_EQ(errno, ENOSPC);
	close(fd);

	struct sparse_arg a = { dst.name };
	int st = in_child(write_everything, &a, 20);
	if (st == 128 + SIGBUS)
		FAIL("the writable open of a sparse copy succeeded and a write "
		     "into a hole raised SIGBUS");
	ASSERT_EQ(st, 10); /* open: -ENOSPC */
	/* a read-only open cannot back it: on a full tmpfs, where reading a
	 * hole takes a page too, it is refused */
	ASSERT_ERR(shval_seg_open(dst.name, SHVAL_RDONLY, NULL, &s), -ENOSPC);
	ASSERT(strstr(shval_errmsg(NULL), "holes"));
	unlink(filler);
	/* with room, it reads (a hole reads as zeros) */
	ASSERT_OK(shval_seg_open(dst.name, SHVAL_RDONLY, NULL, &s));
	ASSERT_OK(shval_find(s, "big", "100000d", &v));
	double x = 1;
	ASSERT_OK(shval_array_get(v, 5000, 1, &x));
	ASSERT(x == 0);
	shval_close(v);
	shval_seg_close(s);
	/* the writable open backs it and writes work */
	ASSERT_EQ(in_child(write_everything, &a, 20), 0);
	unlink(dst.path);
	umount(dir);
	rmdir(dir);
}

/* ---- file: paths through directories others control; unlink ---- */

TEST(paths_through_others_dirs_refused)
{
	if (geteuid() != 0)
		SKIP("needs root to make directories of another user");
	char top[] = "/tmp/shvaltest.XXXXXX";
	ASSERT(mkdtemp(top));
	char d[300], name[400], real[300], lnk[300];
	snprintf(d, sizeof d, "%s/shared", top);
	ASSERT_EQ(mkdir(d, 0755), 0);
	ASSERT_EQ(chmod(d, 0777), 0); /* world-writable, not sticky */
	snprintf(name, sizeof name, "file:%s/seg", d);
	shval_seg *s;
	ASSERT_ERR(shval_seg_open(name, SHVAL_CREATE, NULL, &s),
		   SHVAL_EFOREIGN);
	ASSERT(strstr(shval_errmsg(NULL), d));
	ASSERT(strstr(shval_errmsg(NULL), "writable by others"));
	char seg[320];
	snprintf(seg, sizeof seg, "%s/seg", d);
	ASSERT(!exists(seg)); /* nothing created */
	/* sticky: others cannot swap our entries */
	ASSERT_EQ(chmod(d, 01777), 0);
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE, NULL, &s));
	shval_seg_close(s);
	/* group-writable, not sticky: refused for reads and writes alike */
	ASSERT_EQ(chmod(d, 0775), 0);
	ASSERT_ERR(shval_seg_open(name, SHVAL_RDONLY, NULL, &s),
		   SHVAL_EFOREIGN);
	ASSERT(strstr(shval_errmsg(NULL), "its group"));
	ASSERT_ERR(shval_seg_unlink(name), SHVAL_EFOREIGN);
	/* SHVAL_FOREIGN opens it anyway */
	ASSERT_OK(shval_seg_open(name, SHVAL_RDONLY | SHVAL_FOREIGN, NULL, &s));
	shval_seg_close(s);
	/* a directory owned by another user, even 0755 */
	ASSERT_EQ(chmod(d, 0755), 0);
	ASSERT_EQ(chown(d, 65534, 65534), 0);
	ASSERT_ERR(shval_seg_open(name, 0, NULL, &s), SHVAL_EFOREIGN);
	ASSERT(strstr(shval_errmsg(NULL), "belongs to uid 65534"));
	ASSERT_EQ(chown(d, 0, 0), 0);
	ASSERT_OK(shval_seg_open(name, 0, NULL, &s));
	shval_seg_close(s);
	/* a symbolic link on the path owned by another user */
	snprintf(real, sizeof real, "%s/real", top);
	snprintf(lnk, sizeof lnk, "%s/lnk", top);
	ASSERT_EQ(mkdir(real, 0755), 0);
	ASSERT_EQ(symlink(real, lnk), 0);
	snprintf(name, sizeof name, "file:%s/seg", lnk);
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE, NULL, &s)); /* root's */
	shval_seg_close(s);
	ASSERT_EQ(lchown(lnk, 65534, 65534), 0);
	ASSERT_ERR(shval_seg_open(name, 0, NULL, &s), SHVAL_EFOREIGN);
	ASSERT(strstr(shval_errmsg(NULL), "symbolic link of uid 65534"));
	/* relative paths are resolved against the working directory */
	char cwd[300];
	ASSERT(getcwd(cwd, sizeof cwd));
	ASSERT_EQ(chdir(d), 0);
	ASSERT_EQ(chmod(d, 0777), 0);
	ASSERT_ERR(shval_seg_open("file:seg", 0, NULL, &s), SHVAL_EFOREIGN);
	ASSERT_EQ(chmod(d, 0755), 0);
	ASSERT_OK(shval_seg_open("file:seg", 0, NULL, &s));
	shval_seg_close(s);
	ASSERT_EQ(chdir(cwd), 0);
	ASSERT_OK(shval_seg_unlink_ex(name, SHVAL_FOREIGN));
	snprintf(name, sizeof name, "file:%s/seg", d);
	ASSERT_OK(shval_seg_unlink(name));
	unlink(lnk);
	ASSERT_EQ(rmdir(real), 0);
	ASSERT_EQ(rmdir(d), 0);
	ASSERT_EQ(rmdir(top), 0);
}

TEST(unlink_only_segments)
{
	struct tmp_file t;
	tmp_file(&t, "precious");
	int fd = open(t.path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ASSERT(fd >= 0);
	ASSERT_EQ(write(fd, "not a segment, but data\n", 24), 24);
	close(fd);
	ASSERT_ERR(shval_seg_unlink(t.name), SHVAL_ECORRUPT);
	ASSERT(strstr(shval_errmsg(NULL), "not a shval segment"));
	ASSERT(exists(t.path));
	ASSERT_OK(shval_seg_unlink_ex(t.name, SHVAL_UNLINK_FORCE));
	ASSERT(!exists(t.path));
	/* an empty file, a FIFO in /dev/shm */
	fd = open(t.path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	close(fd);
	ASSERT_ERR(shval_seg_unlink(t.name), SHVAL_ECORRUPT);
	ASSERT(exists(t.path));
	unlink(t.path);
	const char *fifo = test_segname("ufifo");
	ASSERT_EQ(mkfifo(shm_path(fifo), 0600), 0);
	ASSERT_ERR(shval_seg_unlink(fifo), SHVAL_ECORRUPT);
	ASSERT(strstr(shval_errmsg(NULL), "FIFO"));
	ASSERT(exists(shm_path(fifo)));
	ASSERT_OK(shval_seg_unlink_ex(fifo, SHVAL_UNLINK_FORCE));
	ASSERT(!exists(shm_path(fifo)));
	/* a segment is removed; flags are checked */
	shval_seg *s;
	ASSERT_OK(shval_seg_open(t.name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval_seg_close(s);
	ASSERT_ERR(shval_seg_unlink_ex(t.name, 0x4000), -EINVAL);
	ASSERT_OK(shval_seg_unlink(t.name));
	ASSERT(!exists(t.path));
	ASSERT_EQ(rmdir(t.dir), 0);
}

/* ---- attach slots of killed processes ---- */

static void die_attached(const char *name, int n)
{
	for (int i = 0; i < n; i++) {
		pid_t p = fork();
		ASSERT(p >= 0);
		if (p == 0) {
			shval_seg *s;
			_exit(shval_seg_open(name, 0, NULL, &s) == 0 ? 0 : 1);
		}
		ASSERT_EQ(wait_status(p), 0);
	}
}

TEST(dead_attach_slots_freed)
{
	const char *name;
	shval_seg *s = new_seg("slots", &name);
	shval_seg_close(s);
	/* a non-TEMP segment: nobody frees the slots of killed users */
	die_attached(name, SHVAL__ATTACH_CAP);
	ASSERT_OK(shval_seg_open(name, SHVAL_RDONLY, NULL, &s));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nattached, SHVAL__ATTACH_CAP);
	ASSERT_EQ(si.nalive, 0);
	shval_seg_close(s);
	/* the table is full: a writable open frees the dead ones first */
	ASSERT_OK(shval_seg_open(name, 0, NULL, &s));
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nattached, 1);
	ASSERT_EQ(si.nalive, 1);
	size_t n;
	shval_proc pr[4];
	ASSERT_OK(shval_seg_procs(s, pr, 4, &n));
	ASSERT_EQ(n, 1);
	ASSERT_EQ(pr[0].pid, getpid());
	/* shval_seg_verify's repair frees them too, reporting each */
	die_attached(name, 5); /* 2 slots each: the inherited one, its own */
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nattached, 11);
	struct found f = { 0 };
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL));
	ASSERT_EQ(f.n, 0); /* without repair: left alone */
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nattached, 11);
	size_t np = 0;
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP | SHVAL_VERIFY_REPAIR,
				   collect, &f, &np));
	ASSERT_EQ(f.n, 10);
	ASSERT_EQ(np, 10);
	ASSERT(found_has(&f, "died while attached: its attach slot freed"));
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nattached, 1);
	end_seg(s, name);
}

/* ---- timeouts ---- */

TEST(negative_timeouts_refused)
{
	const char *name;
	shval_seg *s = new_seg("tmo", &name);
	shval *v;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	uint64_t seen = shval_value_version(v);
	int64_t bad[] = { -2, -1000000000LL, INT64_MIN };
	for (int i = 0; i < 3; i++) {
		ASSERT_ERR(shval_timedlock(v, bad[i]), -EINVAL);
		ASSERT(strstr(shval_errmsg(s), "negative timeout"));
		ASSERT_ERR(shval_wait(v, &seen, bad[i]), -EINVAL);
		ASSERT(strstr(shval_errmsg(s), "shval_wait"));
		uint64_t ss = shval_seg_version(s);
		ASSERT_ERR(shval_seg_wait(s, &ss, bad[i]), -EINVAL);
	}
	/* 0 tries once; SHVAL_FOREVER and a timeout beyond the clock wait */
	ASSERT_ERR(shval_wait(v, &seen, 0), -ETIMEDOUT);
	ASSERT_OK(shval_timedlock(v, 0));
	ASSERT_OK(shval_unlock(v));
	ASSERT_OK(shval_timedlock(v, SHVAL_FOREVER));
	ASSERT_OK(shval_unlock(v));
	ASSERT_OK(shval_timedlock(v, INT64_MAX));
	ASSERT_OK(shval_unlock(v));
	pid_t p = fork();
	if (p == 0) {
		usleep(100000);
		shval_set_i64(v, 5);
		_exit(0);
	}
	ASSERT_OK(shval_wait(v, &seen, INT64_MAX)); /* woken, not a timeout */
	ASSERT_EQ(wait_status(p), 0);
	shval_close(v);
	end_seg(s, name);
}

/* ---- names that are not UTF-8 ---- */

TEST(invalid_utf8_names_refused)
{
	const char *name;
	shval_seg *s = new_seg("utf8", &name);
	const char *bad[] = {
		"a\xff",	     /* not UTF-8 at all */
		"a\xc3",	     /* truncated */
		"\xc3(",	     /* bad continuation */
		"\xc0\xaf",	     /* overlong "/" */
		"\xe0\x80\xaf",	     /* overlong */
		"\xed\xa0\x80",	     /* a surrogate */
		"\xf4\x90\x80\x80",  /* above U+10FFFF */
		"x\xc2\x9b" "31m",   /* C1 control CSI */
		"\x80",		     /* a lone continuation byte */
	};
	shval *v;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ASSERT_ERR(shval_create(s, bad[i], "q", 0, NULL, 0, &v),
			   SHVAL_EBADNAME);
		ASSERT(strstr(shval_errmsg(s), "UTF-8"));
		ASSERT_ERR(shval_lock_create(s, bad[i], SHVAL_RLOCK, &v),
			   SHVAL_EBADNAME);
		ASSERT_ERR(shval_find_or_create(s, bad[i], "q", 0, NULL, 0, &v,
						NULL),
			   SHVAL_EBADNAME);
	}
	const char *good[] = { "h\xc3\xa9llo", "\xe6\x97\xa5\xe6\x9c\xac",
			       "\xf0\x9f\x98\x80", "\xef\xbf\xbd",
			       "\xf4\x8f\xbf\xbf" };
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		ASSERT_OK(shval_create(s, good[i], "q", 0, NULL, 0, &v));
		shval_close(v);
	}
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nvalues, 5);
	end_seg(s, name);
}

/* ---- text round trip of struct string fields ---- */

TEST(struct_string_field_text_round_trip)
{
	shval *v;
	ASSERT_OK(shval_new("name:16s x:i", SHVAL_RLOCK, NULL, 0, &v));
	const char *args[] = { "name=\"a\\0b\\x01\\\"q\\\\ \\n\"", "x=3" };
	ASSERT_OK(shval_from_text(v, 2, args));
	struct {
		SHVAL_STR(16) name;
		int32_t x;
	} st;
	ASSERT_OK(shval_read(v, &st, sizeof st));
	ASSERT_EQ(st.name.len, 9);
	ASSERT_MEMEQ(st.name.bytes, "a\0b\x01\"q\\ \n", 9);
	char text[200];
	ASSERT_OK(shval_to_text(v, 0, text, sizeof text, NULL));
	ASSERT_STREQ(text, "name=\"a\\0b\\x01\\\"q\\\\ \\n\" x=3");
	/* what to_text printed parses back to the same bytes */
	const char *back[] = { "name=\"a\\0b\\x01\\\"q\\\\ \\n\"" };
	memset(&st, 0, sizeof st);
	ASSERT_OK(shval_write(v, &st, sizeof st));
	ASSERT_OK(shval_from_text(v, 1, back));
	char text2[200];
	ASSERT_OK(shval_to_text(v, 0, text2, sizeof text2, NULL));
	ASSERT_STREQ(text2, "name=\"a\\0b\\x01\\\"q\\\\ \\n\" x=0");
	/* a value without a leading quote is raw bytes, as before */
	const char *raw[] = { "name=plain \"x\"" };
	ASSERT_OK(shval_from_text(v, 1, raw));
	ASSERT_OK(shval_read(v, &st, sizeof st));
	ASSERT_EQ(st.name.len, 9);
	/* malformed quoted forms are refused, the value unchanged */
	const char *bad[] = { "name=\"abc", "name=\"a\"b\"", "name=\"\\q\"",
			      "name=\"\\x4\"", "name=\"abc\\\"" };
	for (int i = 0; i < 5; i++) {
		ASSERT_ERR(shval_from_text(v, 1, &bad[i]), SHVAL_EPARSE);
		ASSERT_OK(shval_read(v, &st, sizeof st));
		ASSERT_EQ(st.name.len, 9);
	}
	shval_close(v);
}

/* ---- code points ---- */

TEST(codepoint_add_no_wrap_and_check)
{
	const char *name;
	shval_seg *s = new_seg("cp", &name);
	unsigned modes[] = { SHVAL_RLOCK, SHVAL_ATOMIC, SHVAL_RAW };
	for (int m = 0; m < 3; m++) {
		char vn[16];
		snprintf(vn, sizeof vn, "u%d", m);
		shval *v;
		ASSERT_OK(shval_create(s, vn, "u", modes[m], NULL, 0, &v));
		ASSERT_OK(shval_set_i64(v, 0x10fffe));
		int64_t res;
		ASSERT_OK(shval_add_i64(v, 1, &res));
		ASSERT_EQ(res, 0x10ffff);
		ASSERT_ERR(shval_add_i64(v, 1, &res), SHVAL_ERANGE);
		ASSERT(strstr(shval_errmsg(s), "out of range"));
		ASSERT_ERR(shval_add_i64(v, INT64_MAX, &res), SHVAL_ERANGE);
		ASSERT_ERR(shval_or_u64(v, 0x200000, NULL), SHVAL_ERANGE);
		int64_t x;
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, 0x10ffff); /* unchanged */
		ASSERT_OK(shval_set_i64(v, 3));
		ASSERT_ERR(shval_sub_i64(v, 4, &res), SHVAL_ERANGE); /* below 0 */
		ASSERT_OK(shval_sub_i64(v, 3, &res));
		ASSERT_EQ(res, 0);
		ASSERT_OK(shval_set_i64(v, 0x10ffff));
		shval_close(v);
	}
	/* a code point above U+10FFFF (written as raw bits) is damage to check */
	shval *a;
	ASSERT_OK(shval_create(s, "arr", "c:3u", SHVAL_RLOCK, NULL, 0, &a));
	uint32_t bad[3] = { 'a', 0x110000, 'b' };
	ASSERT_OK(shval_write(a, bad, sizeof bad));
	struct found f = { 0 };
	ASSERT_ERR(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL),
		   SHVAL_ECORRUPT);
	ASSERT_EQ(f.n, 1);
	ASSERT(found_has(&f, "arr: field \"c\": code point element 1 is 0x110000"));
	shval_close(a);
	end_seg(s, name);
}

/* ---- the damaged-image campaign's find: a lock word with only flag bits */

struct lockw_arg {
	shval *v;
	shval_seg *s;
};

static void lock_it(void *p)
{
	struct lockw_arg *a = p;
	int r = shval_lock(a->v);
	if (r != SHVAL_EOWNERDEAD)
		_exit(1);
	if (shval_unlock(a->v))
		_exit(2);
	shval_seg *s2;
	/* the segment lock too: a writable open takes it */
	if (shval_seg_open(shval_seg_name(a->s), 0, NULL, &s2))
		_exit(3);
	shval_seg_close(s2);
}

TEST(lock_word_waiters_bit_without_owner)
{
	const char *name;
	shval_seg *s = new_seg("lockw", &name);
	shval *v;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	size_t len;
	unsigned char *b = map_shm(name, &len);
	shval__entry *e = entry_of(b, len, "v");
	shval__lockblk *lk = (shval__lockblk *)(b + e->lock_off);
	/* FUTEX_WAITERS and no owner: glibc waits for a wake-up nobody sends */
	__atomic_store_n(&lk->mutex.__data.__lock, (int)0x80000000u,
			 __ATOMIC_SEQ_CST);
	__atomic_store_n(&((shval__hdr *)b)->lock.__data.__lock,
			 (int)0x80000000u, __ATOMIC_SEQ_CST);
	struct lockw_arg a = { v, s };
	int st = in_child(lock_it, &a, 10);
	if (st != 0)
		FAIL("child status %d%s", st,
		     st == 128 + SIGALRM ? " (hung on the lock)" : "");
	munmap(b, len);
	shval_close(v);
	end_seg(s, name);
}

TEST_MAIN()
