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

/* ---- 1. FIFO squatting ---- */

struct open_arg {
	const char *name;
	unsigned flags;
	int want;
};

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
	char dir[] = "/tmp/shvaltest.XXXXXX";
	ASSERT(mkdtemp(dir));
	char fpath[300], fname[320];
	snprintf(fpath, sizeof fpath, "%s/fifo", dir);
	snprintf(fname, sizeof fname, "file:%s", fpath);
	ASSERT_EQ(mkfifo(fpath, 0666), 0);
	unsigned fl[] = { SHVAL_RDONLY, 0, SHVAL_CREATE,
			  SHVAL_RDONLY | SHVAL_FOREIGN };
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 4; i++) {
			struct open_arg a = { k ? fname : name, fl[i],
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
	unlink(fpath);
	ASSERT_EQ(rmdir(dir), 0);
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

/* ---- 3. a value removed under a live lock holder ---- */

TEST(remove_refused_while_lock_held)
{
	const char *name = test_segname("held");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
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
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(check_finds_foreign_lock_block)
{
	const char *name = test_segname("lockown");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
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
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST_MAIN()
