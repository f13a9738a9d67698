/*
 * tests/test_pin.c — buffer pins (issue 11, item 3: a pointer kept into a
 * value must not write into its block once another value reuses it).
 * shval_pin() in one process makes shval_remove() in another refuse with
 * -EBUSY naming the pinner; unpinning, the pinner's death or its final
 * release of the segment lets the removal through; `check` verifies the
 * pin blocks.  Real processes throughout (fork, SIGKILL).
 */
#include <shval.h>

#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "format.h"
#include "test.h"
#include "proc_util.h"

/* Our own read-write mapping of a /dev/shm segment, to look at (and
 * damage) its attach table and pin blocks. */
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

/* The attach slot of pid, or -1. */
static int slot_of(unsigned char *b, pid_t pid)
{
	shval__hdr *h = (shval__hdr *)b;
	for (int i = 0; i < (int)SHVAL__ATTACH_CAP; i++)
		if (atomic_load(&h->attach[i].pid) == (uint32_t)pid)
			return i;
	return -1;
}

struct found {
	int n, corrupt;
	char what[8][600];
};

static void collect(const shval_problem *p, void *arg)
{
	struct found *f = arg;
	if (f->n < 8)
		snprintf(f->what[f->n], sizeof f->what[0], "%s: %s", p->name,
			 p->what);
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

static void expect_pinned_by(shval_seg *s, const char *name, pid_t pid)
{
	char want[64];
	snprintf(want, sizeof want, "pinned by process %d", (int)pid);
	ASSERT_ERR(shval_remove(s, name), -EBUSY);
	if (!strstr(shval_errmsg(s), want) || !strstr(shval_errmsg(s), name))
		FAIL("remove %s: message \"%s\" does not name %s", name,
		     shval_errmsg(s), want);
}

/* A child that pins v (inherited handle: the child has an attach slot of
 * its own), says so, and waits for go (then unpins and exits) or death. */
static pid_t pinner(shval *v, struct shared *sh, bool unpin_on_go)
{
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		alarm(60);
		if (shval_pin(v) != 0)
			_exit(1);
		atomic_store(&sh->ready, 1);
		spin_until(&sh->go, 1);
		if (unpin_on_go && shval_unpin(v) != 0)
			_exit(2);
		_exit(0);
	}
	spin_until(&sh->ready, 1);
	return pid;
}

TEST(pin_refuses_removal_from_another_process)
{
	const char *name = test_segname("pin");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v, *r;
	ASSERT_OK(shval_create(s, "v", "8q", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_create(s, "r", "q", SHVAL_RAW, NULL, 0, &r));
	struct shared *sh = shared_page();
	pid_t pid = pinner(v, sh, true);
	expect_pinned_by(s, "v", pid);
	ASSERT(strstr(shval_errmsg(s), "1 buffer pin"));
	ASSERT_OK(shval_remove(s, "r")); /* unpinned values go as before */
	shval *v2; /* refused: nothing removed */
	ASSERT_OK(shval_find(s, "v", "8q", &v2));
	shval_close(v2);
	atomic_store(&sh->go, 1);
	test_wait_ok(pid); /* it unpinned */
	ASSERT_OK(shval_remove(s, "v"));
	ASSERT_ERR(shval_pin(v), SHVAL_ESTALE); /* a removed value */
	shval_close(v);
	shval_close(r);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(pin_counts_and_misuse)
{
	const char *name = test_segname("pincount");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v, *v2, *a, *L;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_ATOMIC, NULL, 0, &v));
	ASSERT_OK(shval_find(s, "v", NULL, &v2));
	ASSERT_ERR(shval_unpin(v), SHVAL_EMISUSE); /* not pinned */
	ASSERT(strstr(shval_errmsg(s), "holds no pin"));
	/* two pins (through two handles of one value), one unpin: still
	 * pinned, by this process */
	ASSERT_OK(shval_pin(v));
	ASSERT_OK(shval_pin(v2));
	expect_pinned_by(s, "v", getpid());
	ASSERT(strstr(shval_errmsg(s), "(this process)"));
	ASSERT(strstr(shval_errmsg(s), "2 buffer pin"));
	ASSERT_OK(shval_unpin(v2));
	expect_pinned_by(s, "v", getpid());
	ASSERT_OK(shval_unpin(v));
	ASSERT_ERR(shval_unpin(v), SHVAL_EMISUSE);
	ASSERT_OK(shval_remove(s, "v"));
	/* what cannot be pinned */
	ASSERT_OK(shval_lock_create(s, "L", SHVAL_LOCK, &L));
	ASSERT_ERR(shval_pin(L), SHVAL_EMODE);
	ASSERT_ERR(shval_pin(NULL), -EINVAL);
	ASSERT_OK(shval_create(s, "a", "4i", SHVAL_RAW, NULL, 0, &a));
	shval_seg *ro;
	ASSERT_OK(shval_seg_open(name, SHVAL_RDONLY, NULL, &ro));
	shval *ra;
	ASSERT_OK(shval_find(ro, "a", "4i", &ra));
	ASSERT_ERR(shval_pin(ra), SHVAL_ERDONLY);
	ASSERT(strstr(shval_errmsg(ro), "read-only"));
	shval_close(ra);
	shval_seg_close(ro);
	shval_close(a);
	shval_close(L);
	shval_close(v);
	shval_close(v2);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(killed_pinner_does_not_block_removal)
{
	const char *name = test_segname("pinkill");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v;
	ASSERT_OK(shval_create(s, "v", "16s", SHVAL_LOCK, NULL, 0, &v));
	struct shared *sh = shared_page();
	pid_t pid = pinner(v, sh, false);
	size_t len;
	unsigned char *b = map_shm(name, &len);
	shval__hdr *h = (shval__hdr *)b;
	int slot = slot_of(b, pid);
	ASSERT(slot >= 0);
	ASSERT_NE(h->attach[slot].pins_line, 0);
	expect_pinned_by(s, "v", pid);
	ASSERT_EQ(kill(pid, SIGKILL), 0);
	ASSERT_EQ(wait_status(pid), 128 + SIGKILL);
	/* the dead pinner's slot goes, and its pin block with it */
	ASSERT_OK(shval_remove(s, "v"));
	ASSERT_EQ(atomic_load(&h->attach[slot].pid), 0);
	ASSERT_EQ(h->attach[slot].pins_line, 0);
	struct found f = { 0 };
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL));
	ASSERT_EQ(f.n, 0);
	/* a pinner that exits without unpinning blocks nothing either */
	shval_close(v);
	ASSERT_OK(shval_create(s, "w", "q", SHVAL_RLOCK, NULL, 0, &v));
	pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0)
		_exit(shval_pin(v) == 0 ? 0 : 1);
	test_wait_ok(pid);
	ASSERT_OK(shval_remove(s, "w"));
	munmap(b, len);
	shval_close(v);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(pinned_pointer_never_writes_another_value)
{
	/* The scenario in C: a process keeps shval_data() of a value
	 * (pinned) while another removes it and creates values that would
	 * reuse its block.  The removal is refused, so the writes through
	 * the kept pointer land in the value itself, and in no other. */
	const char *name = test_segname("pinwrite");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v;
	ASSERT_OK(shval_create(s, "v", "8q", SHVAL_RAW, NULL, 0, &v));
	struct shared *sh = shared_page();
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		alarm(60);
		if (shval_pin(v) != 0)
			_exit(1);
		int64_t *p = shval_data(v);
		atomic_store(&sh->ready, 1);
		spin_until(&sh->go, 1);
		for (int i = 0; i < 8; i++)
			p[i] = -1;
		_exit(shval_touch(v) == 0 ? 0 : 2);
	}
	spin_until(&sh->ready, 1);
	expect_pinned_by(s, "v", pid);
	/* past the limbo time, values of v's size and shape are created */
	struct timespec ts = { 1, 100 * 1000 * 1000 };
	nanosleep(&ts, NULL);
	shval *o[8];
	for (int i = 0; i < 8; i++) {
		char n[16];
		snprintf(n, sizeof n, "o%d", i);
		ASSERT_OK(shval_create(s, n, "8q", SHVAL_RAW, NULL, 0, &o[i]));
	}
	atomic_store(&sh->go, 1);
	test_wait_ok(pid);
	int64_t got[8];
	for (int i = 0; i < 8; i++) {
		ASSERT_OK(shval_read(o[i], got, sizeof got));
		for (int k = 0; k < 8; k++)
			ASSERT_EQ(got[k], 0);
		shval_close(o[i]);
	}
	ASSERT_OK(shval_read(v, got, sizeof got));
	ASSERT_EQ(got[7], -1);
	ASSERT_OK(shval_remove(s, "v")); /* the writer exited */
	shval_close(v);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(pins_kept_past_close_until_the_mapping_goes)
{
	const char *name = test_segname("pinclose");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	struct shared *sh = shared_page();
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		alarm(60);
		if (shval_pin(v) != 0)
			_exit(1);
		/* the user closes the segment; v still maps it */
		shval_seg_close(s);
		atomic_store(&sh->ready, 1);
		spin_until(&sh->go, 1);
		shval_close(v); /* the mapping goes: so do the pins */
		atomic_store(&sh->ready, 2);
		spin_until(&sh->go, 2);
		_exit(0);
	}
	spin_until(&sh->ready, 1);
	expect_pinned_by(s, "v", pid);
	atomic_store(&sh->go, 1);
	spin_until(&sh->ready, 2);
	ASSERT_OK(shval_remove(s, "v"));
	atomic_store(&sh->go, 2);
	test_wait_ok(pid);
	shval_close(v);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(pin_after_close_lasts_until_the_mapping_goes)
{
	/* A segment closed by the user with no pins: its value handles still
	 * map it, and a pin taken through them then claims a slot that goes
	 * with the mapping (the Python idiom: a value used after `with
	 * Segment(...)` ends). */
	const char *name = test_segname("pinlate");
	shval_seg *s, *s2;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	ASSERT_OK(shval_seg_open(name, 0, NULL, &s2));
	shval *v;
	ASSERT_OK(shval_create(s2, "v", "q", SHVAL_RAW, NULL, 0, &v));
	shval_seg_close(s2);
	ASSERT_OK(shval_pin(v));
	expect_pinned_by(s, "v", getpid());
	shval_close(v); /* the last handle: the mapping and the pin go */
	ASSERT_OK(shval_remove(s, "v"));
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(forked_child_does_not_inherit_pins)
{
	const char *name = test_segname("pinfork");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_pin(v));
	pid_t me = getpid();
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		alarm(60);
		/* the child holds no pin; the parent's still refuses */
		if (shval_unpin(v) != SHVAL_EMISUSE)
			_exit(1);
		char want[64];
		snprintf(want, sizeof want, "pinned by process %d", (int)me);
		if (shval_remove(s, "v") != -EBUSY ||
		    !strstr(shval_errmsg(s), want))
			_exit(2);
		_exit(0);
	}
	test_wait_ok(pid);
	ASSERT_OK(shval_unpin(v));
	ASSERT_OK(shval_remove(s, "v"));
	shval_close(v);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(many_pins_grow_the_block)
{
	const char *name = test_segname("pinmany");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	enum { N = 70 }; /* 2 lines hold 4 records: grown 5 times */
	shval *v[N];
	char n[16];
	for (int i = 0; i < N; i++) {
		snprintf(n, sizeof n, "v%d", i);
		ASSERT_OK(shval_create(s, n, "q", SHVAL_RLOCK, NULL, 0, &v[i]));
		ASSERT_OK(shval_pin(v[i]));
	}
	struct found f = { 0 };
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL));
	ASSERT_EQ(f.n, 0);
	for (int i = 0; i < N; i++) {
		snprintf(n, sizeof n, "v%d", i);
		expect_pinned_by(s, n, getpid());
	}
	for (int i = 0; i < N; i += 2) /* unpin out of order */
		ASSERT_OK(shval_unpin(v[i]));
	for (int i = 0; i < N; i++) {
		snprintf(n, sizeof n, "v%d", i);
		if (i % 2)
			expect_pinned_by(s, n, getpid());
		else
			ASSERT_OK(shval_remove(s, n));
	}
	for (int i = 1; i < N; i += 2) {
		ASSERT_OK(shval_unpin(v[i]));
		snprintf(n, sizeof n, "v%d", i);
		ASSERT_OK(shval_remove(s, n));
	}
	memset(&f, 0, sizeof f);
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL));
	ASSERT_EQ(f.n, 0);
	for (int i = 0; i < N; i++)
		shval_close(v[i]);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST(check_verifies_pin_blocks)
{
	const char *name = test_segname("pincheck");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(name, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	shval *v, *w;
	ASSERT_OK(shval_create(s, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_create(s, "w", "q", SHVAL_RLOCK, NULL, 0, &w));
	ASSERT_OK(shval_pin(v));
	ASSERT_OK(shval_pin(w));
	size_t len;
	unsigned char *b = map_shm(name, &len);
	shval__hdr *h = (shval__hdr *)b;
	int slot = slot_of(b, getpid());
	ASSERT(slot >= 0);
	uint64_t poff = (uint64_t)h->attach[slot].pins_line * SHVAL__LINE;
	ASSERT(poff >= sizeof(shval__hdr) && poff < len);
	shval__pins *p = (shval__pins *)(b + poff);
	ASSERT_EQ(p->n, 2);
	ASSERT_EQ(p->pid, (uint32_t)getpid());
	/* a record whose serial names no live value */
	p->pin[1].serial += 1000;
	struct found f = { 0 };
	ASSERT_ERR(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL),
		   SHVAL_ECORRUPT);
	ASSERT_EQ(f.corrupt, 1);
	ASSERT(found_has(&f, "names no live value"));
	memset(&f, 0, sizeof f);
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_REPAIR, collect, &f, NULL));
	ASSERT(found_has(&f, ": dropped"));
	ASSERT_EQ(p->n, 1);
	memset(&f, 0, sizeof f);
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL));
	ASSERT_EQ(f.n, 0);
	/* a damaged block (its count past its room) */
	uint32_t was = p->n;
	p->n = p->cap + 1;
	memset(&f, 0, sizeof f);
	ASSERT_ERR(shval_seg_verify(s, SHVAL_VERIFY_DEEP, collect, &f, NULL),
		   SHVAL_ECORRUPT);
	ASSERT(found_has(&f, "pin block at line"));
	/* a damaged block pins nothing (and crashes nothing) */
	ASSERT_OK(shval_remove(s, "w"));
	p->n = was;
	/* a pin block that names the wrong process */
	p->pid ^= 0x40000000u;
	memset(&f, 0, sizeof f);
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_REPAIR, collect, &f, NULL));
	ASSERT(found_has(&f, "not its own: forgotten"));
	ASSERT_EQ(h->attach[slot].pins_line, 0);
	/* the pins are gone with it: v can be pinned again, and removed */
	ASSERT_ERR(shval_unpin(v), SHVAL_EMISUSE);
	ASSERT_OK(shval_pin(v));
	ASSERT_OK(shval_unpin(v));
	ASSERT_OK(shval_remove(s, "v"));
	munmap(b, len);
	shval_close(v);
	shval_close(w);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(name));
}

TEST_MAIN()
