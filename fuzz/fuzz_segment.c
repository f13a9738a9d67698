/*
 * fuzz/fuzz_segment.c — libFuzzer target: an arbitrary segment image.
 *
 * The input bytes are the whole segment file (padded with zeros to the
 * header size when shorter).  Each iteration works on private copies in new
 * memfds (the library writes the attach table and may take locks, so an
 * image is never shared between iterations or passes) that are sealed
 * against growing and shrinking: a hostile header cannot make the library
 * allocate gigabytes of shared memory, it gets -EPERM from posix_fallocate.
 *
 *   pass 1: open read-only; seg_info, seg_procs, verify DEEP; iterate with
 *           shval_seg_next; shval_find each name (with and without its
 *           type), shval_info / read / to_text (plain, JSON) / typed getters
 *           on each.
 *   pass 2: the same on a writable open, then writes that take no value
 *           lock (atomic and raw values), a create, a find_or_create, a
 *           remove and a re-create: the allocator, the directory and the
 *           type list on hostile state; a pin of the new value (its
 *           removal must then be refused) and an unpin: pin blocks and
 *           the attach table on hostile state.  The segment lock (a pthread mutex
 *           at header offset 128) is replaced by a fresh one first: a hostile
 *           mutex word can block any locker forever (that is the documented
 *           trust model: whoever can write the segment can hold its lock),
 *           and fuzzing glibc's mutex internals is not the point.  Value
 *           locks are never taken for the same reason.
 *
 * After each iteration no fd of the image may be open (no fd leak); LeakSanitizer covers memory (a leaked mapping keeps its
 * malloc'd segment handle, which LSan reports).
 *
 * Define SHVAL_FUZZ_SKIP_KNOWN to step around the bugs already reported
 * (see fuzz/README.md), so that a run can look for new ones.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <shval.h>

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h" /* offsets of the header lock (format.h) */

#define HDR_SIZE 5120u

/* Number of open fds that are our memfds (or dups of them): must be 0
 * between iterations.  (Counting all fds is unreliable: libFuzzer opens
 * files of its own.) */
static int memfds_open(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		abort();
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char path[64], target[256];
		snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
		ssize_t k = readlink(path, target, sizeof target - 1);
		if (k <= 0)
			continue;
		target[k] = 0;
		if (strncmp(target, "/memfd:shval-fuzz", 17) == 0)
			n++;
	}
	closedir(d);
	return n;
}

/* A private sealed copy of the image. */
static int image_fd(const uint8_t *data, size_t size, int fresh_lock)
{
	int fd = memfd_create("shval-fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		abort();
	size_t n = size < HDR_SIZE ? HDR_SIZE : size;
	if (ftruncate(fd, (off_t)n) != 0)
		abort();
	if (size && pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	if (fresh_lock) {
		pthread_mutex_t m;
		pthread_mutexattr_t a;
		pthread_mutexattr_init(&a);
		pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
		pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
		pthread_mutex_init(&m, &a);
		pthread_mutexattr_destroy(&a);
		if (pwrite(fd, &m, sizeof m, offsetof(shval__hdr, lock)) !=
		    (ssize_t)sizeof m)
			abort();
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) != 0)
		abort();
	return fd;
}

static void report(const shval_problem *p, void *arg)
{
	size_t *n = arg;
	(*n)++;
	/* the strings must be terminated */
	if (strnlen(p->what, sizeof p->what) == sizeof p->what ||
	    strnlen(p->name, sizeof p->name) == sizeof p->name)
		abort();
}

static void check_rc(int r)
{
	/* every call returns 0 or a negative code */
	if (r > 0)
		abort();
}

#ifdef SHVAL_FUZZ_SKIP_KNOWN
#define SKIP_KNOWN 1
/* Bug 1 (see README): a locked value without an undo copy whose version
 * has WRITING set makes readers spin forever (writable open) or write to a
 * read-only mapping (SIGSEGV).  Skip such handles. */
static int known_bad(shval *v)
{
	return v->lk && !v->undo &&
	       (atomic_load(&v->e->version) & SHVAL__V_WRITING);
}
/* Bug 3: shval__alloc trusts the header's brk and size: a brk beyond the
 * file (or the mapping) makes creates write outside it.  Skip writes to
 * the directory/allocator when they are inconsistent. */
static int known_bad_hdr(shval_seg *seg)
{
	struct stat st;
	uint64_t size = atomic_load(&seg->hdr->size), brk = seg->hdr->brk;
	if (fstat(shval_seg_fd(seg), &st) != 0)
		return 1;
	return brk < HDR_SIZE || brk % 64 || brk > size ||
	       size > (uint64_t)st.st_size || size > seg->map_len;
}
/* Bug 4: shval_seg_verify (and shval__dir_recount) check the directory
 * table with shval__in(toff + 64, cap * 8): a cap of 2^61 or more
 * overflows to a small length and the slot walk runs off the file. */
static int known_bad_table(shval_seg *seg)
{
	uint64_t toff = atomic_load(&seg->hdr->table_off), cap;
	struct stat st;
	if (fstat(shval_seg_fd(seg), &st) != 0 || toff % 64 ||
	    toff + 64 > (uint64_t)st.st_size)
		return 0; /* rejected before the walk */
	memcpy(&cap, seg->base + toff, 8);
	return cap >= (1ull << 61);
}
#else
#define SKIP_KNOWN 0
static int known_bad_table(shval_seg *seg)
{
	(void)seg;
	return 0;
}
static int known_bad_hdr(shval_seg *seg)
{
	(void)seg;
	return 0;
}
static int known_bad(shval *v)
{
	(void)v;
	return 0;
}
#endif

static void use_value(shval *v, int writable)
{
	struct shval_info in;
	check_rc(shval_info(v, &in));
	(void)shval_value_version(v);
	if (!writable)
		(void)shval_data(v); /* writable: would start a section */
	if (known_bad(v))
		return;
	shval_field_info fi;
	for (size_t i = 0; i < 4; i++)
		if (shval_field_info_at(v, i, &fi) != 0)
			break;
	if (shval_info(v, &in) != 0 || in.kind == SHVAL_KIND_LOCK)
		return;
	void *buf = malloc(in.size ? in.size : 1);
	if (!buf)
		abort();
	int r = shval_read(v, buf, in.size);
	check_rc(r);
	size_t len = 0;
	for (unsigned fl = 0; fl <= SHVAL_TEXT_JSON; fl += SHVAL_TEXT_JSON) {
		r = shval_to_text(v, fl, NULL, 0, &len);
		check_rc(r);
		if (r == SHVAL_ETOOBIG) {
			char *t = malloc(len + 1);
			if (!t)
				abort();
			r = shval_to_text(v, fl, t, len + 1, &len);
			if (r != 0)
				abort(); /* the length it asked for must do */
			if (strlen(t) > len)
				abort();
			free(t);
		}
	}
	int64_t i64;
	uint64_t u64;
	double f64;
	check_rc(shval_get_i64(v, &i64));
	check_rc(shval_get_u64(v, &u64));
	check_rc(shval_get_f64(v, &f64));
	if (in.kind == SHVAL_KIND_STRING) {
		char s[256];
		check_rc(shval_get_str(v, s, sizeof s, &len));
	}
	if (in.kind == SHVAL_KIND_ARRAY && in.count && in.size / in.count <= 16) {
		unsigned char e[16];
		check_rc(shval_array_get(v, in.count - 1, 1, e));
	}
	if (in.kind == SHVAL_KIND_STRUCT &&
	    shval_field_info_at(v, 0, &fi) == 0) {
		void *fb = malloc(fi.size ? fi.size : 1);
		if (!fb)
			abort();
		check_rc(shval_field_get(v, "0", fb, fi.size, &len));
		free(fb);
	}
	if (writable && (in.mode == SHVAL_ATOMIC || in.mode == SHVAL_RAW)) {
		/* writes that take no value lock */
		check_rc(shval_write(v, buf, in.size));
		check_rc(shval_add_i64(v, 1, NULL));
		check_rc(shval_set_f64(v, 2.0));
	}
	free(buf);
}

static void run_pass(const uint8_t *data, size_t size, int writable)
{
	int fd = image_fd(data, size, writable);
	shval_seg *seg;
	int r = shval_seg_open_fd(fd, writable ? 0 : SHVAL_RDONLY, &seg);
	check_rc(r);
	close(fd);
	if (r) {
		if (seg || (!shval_errmsg(NULL)[0] && !(SKIP_KNOWN && r == -ENOENT))) {
			/* a failed open leaves nothing and says why */
			fprintf(stderr, "open failed with %s and no message\n",
				shval_errname(r));
			abort();
		}
		return;
	}
	struct shval_seg_info si;
	check_rc(shval_seg_info(seg, &si));
	shval_proc procs[4];
	size_t np;
	check_rc(shval_seg_procs(seg, procs, 4, &np));
	size_t nprob = 0, nrep = 0;
	if (!known_bad_table(seg)) {
		r = shval_seg_verify(seg, SHVAL_VERIFY_DEEP, report, &nrep, &nprob);
		check_rc(r);
		if (nprob != nrep || (r == 0) != (nprob == 0))
			abort(); /* without REPAIR: 0 exactly when nothing was found */
	}
	(void)shval_seg_version(seg);

	uint64_t cursor = 0;
	struct shval_info in;
	char first[SHVAL_NAME_MAX + 1] = "";
	for (int guard = 0; guard < 4096; guard++) {
		uint64_t before = cursor;
		r = shval_seg_next(seg, &cursor, NULL, &in);
		check_rc(r);
		if (r)
			break;
		if (cursor <= before)
			abort(); /* the cursor must move */
		if (!first[0])
			memcpy(first, in.name, sizeof first);
		shval *v;
		r = shval_find(seg, in.name, NULL, &v);
		check_rc(r);
		if (r == 0) {
			use_value(v, writable);
			shval_close(v);
		}
		r = shval_find(seg, in.name, in.type, &v);
		check_rc(r);
		shval_close(v);
	}
	cursor = 0;
	(void)shval_seg_next(seg, &cursor, "v", &in);

	if (writable && !known_bad_hdr(seg)) {
		shval *v = NULL, *w = NULL;
		bool created;
		check_rc(shval_create(seg, "fuzz.new", "q", SHVAL_ATOMIC, NULL, 0,
				      &v));
		if (v)
			check_rc(shval_set_i64(v, 7));
		check_rc(shval_find_or_create(seg, "fuzz.s", "x:d s:8s", SHVAL_RAW,
					      NULL, 0, &w, &created));
		if (first[0])
			check_rc(shval_remove(seg, first));
		/* a value this process pinned is never removed, whatever the
		 * image holds (its pin block is the process's own) */
		int pr = v ? shval_pin(v) : -1;
		check_rc(pr);
		if (pr == 0) {
			int br = shval_remove(seg, "fuzz.new");
			check_rc(br);
			if (br == 0)
				abort();
			check_rc(shval_unpin(v));
		}
		int rr = shval_remove(seg, "fuzz.new");
		check_rc(rr);
		/* a removed value's handle is stale (a damaged segment may
		 * refuse the removal itself, with an error) */
		if (v && rr == 0 && shval_set_i64(v, 8) != SHVAL_ESTALE)
			abort();
		shval_close(v);
		shval_close(w);
		check_rc(shval_create(seg, "fuzz.new", "100q", SHVAL_RLOCK, NULL,
				      0, &v));
		shval_close(v);
	}
	shval_seg_close(seg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	run_pass(data, size, 0);
	run_pass(data, size, 1);
	int n = memfds_open();
	if (n) {
		fprintf(stderr, "fuzz_segment: fd leak (%d segment fds open)\n", n);
		abort();
	}
	return 0;
}
