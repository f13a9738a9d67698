/*
 * src/seg.c — segments: open (anonymous, existing, create), header
 * validation, map, attach, close, info; the segment lock.  Names, paths
 * and the files under them (creation's unnamed file and its linking,
 * unlinking by name) are segfile.c; the attach table attach.c.
 *
 * Creation is race-free and never exposes a half-built segment: the
 * creator builds the whole segment in an unnamed file (O_TMPFILE, or a
 * memfd) and only then gives it its name with linkat(), which fails with
 * EEXIST if another process won the race — the loser then opens the
 * winner's segment.  A creator that dies mid-initialisation leaves no name
 * behind at all.  (Where O_TMPFILE is not supported the creator builds
 * under a temporary name and link()s it; a crash there leaves a
 * ".shvaltmp.*" file, never a half-built segment under the real name.)
 * init_state is still checked by openers, for foreign or damaged files.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define DEFAULT_INITIAL (64u * 1024u)
#define DEFAULT_MAX (1ull << 30)
#define KNOWN_FLAGS \
	(SHVAL_CREATE | SHVAL_EXCL | SHVAL_RDONLY | SHVAL_TEMP | SHVAL_FOREIGN)

/* ---- small helpers ---- */

uint64_t shval__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool shval__in_slow(shval_seg *seg, uint64_t off, uint64_t len)
{
	struct stat st;
	if (fstat(seg->fd, &st) != 0)
		return false;
	uint64_t v = (uint64_t)st.st_size;
	if (v > seg->map_len)
		v = seg->map_len;
	atomic_store_explicit(&seg->valid, v, memory_order_relaxed);
	return off <= v && len <= v - off;
}

void shval__seg_ref(shval_seg *seg)
{
	atomic_fetch_add_explicit(&seg->refs, 1, memory_order_relaxed);
}

static void seg_destroy(shval_seg *seg);

void shval__seg_unref(shval_seg *seg)
{
	/* acq_rel: the last unref sees every other user's accesses done. */
	if (atomic_fetch_sub_explicit(&seg->refs, 1, memory_order_acq_rel) != 1)
		return;
	seg_destroy(seg);
}

int shval__seg_lock(shval_seg *seg)
{
	if (seg->flags & SHVAL_RDONLY)
		return shval__failf(seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only",
				    seg->name);
	int r = shval__mutex_acquire(seg, &seg->hdr->lock, SHVAL__BLOCK,
				     "segment lock");
	if (r == SHVAL_ECORRUPT && shval__lock_reinit(seg, &seg->hdr->lock)) {
		/* A damaged segment lock nobody live holds: re-initialised
		 * (marked as after a death), so that the recovery below
		 * re-derives what it guards.  Value locks are left to
		 * shval_seg_verify's repair instead: their data matters. */
		r = shval__mutex_acquire(seg, &seg->hdr->lock, SHVAL__BLOCK,
					 "segment lock");
	}
	if (r == EOWNERDEAD) {
		shval__dir_recount(seg);
		pthread_mutex_consistent(&seg->hdr->lock);
		r = 0;
	}
	if (r == 0)
		shval__order_seg(1);
	return r;
}

void shval__seg_unlock(shval_seg *seg)
{
	shval__order_seg(-1);
	pthread_mutex_unlock(&seg->hdr->lock);
}

void shval__seg_notify(shval_seg *seg)
{
	/* seq_cst: Dekker pair with the watcher's fetch_or of WAITERS in
	 * shval_seg_version()/shval_seg_wait() (tag-waiters).  Value changes
	 * move the segment version only once someone watched it (WATCHED is
	 * sticky), so that writers of different values in an unwatched
	 * segment do not all write one cache line. */
	if (atomic_load_explicit(&seg->hdr->version, memory_order_seq_cst) &
	    (SHVAL__V_WAITERS | SHVAL__V_WATCHED))
		shval__seg_bump(seg);
}

void shval__seg_bump(shval_seg *seg)
{
	shval__version_bump(&seg->hdr->version, SHVAL__V_ONE);
}

/* ---- validation ---- */

static int validate_header(const shval__hdr *h, uint64_t fsize,
			   const char *what)
{
	if (h->magic == SHVAL__MAGIC_SWAPPED)
		return shval__failf(NULL, SHVAL_EVERSION,
				    "segment %s was made on a machine of the "
				    "other byte order",
				    what);
	if (h->magic != SHVAL__MAGIC)
		return shval__failf(
			NULL, SHVAL_ECORRUPT,
			"%s is not a shval segment (magic 0x%016llx)", what,
			(unsigned long long)h->magic);
	if (h->format_major != SHVAL__FORMAT_MAJOR)
		return shval__failf(NULL, SHVAL_EVERSION,
				    "segment %s has format %u.%u; this library "
				    "reads format %u.x",
				    what, h->format_major, h->format_minor,
				    SHVAL__FORMAT_MAJOR);
	if (h->layout_sig != SHVAL__LAYOUT_SIG ||
	    h->header_size != sizeof(shval__hdr))
		return shval__failf(
			NULL, SHVAL_EVERSION,
			"segment %s has layout signature 0x%016llx "
			"(header %u bytes); this build has 0x%016llx "
			"(header %zu bytes)",
			what, (unsigned long long)h->layout_sig, h->header_size,
			(unsigned long long)SHVAL__LAYOUT_SIG,
			sizeof(shval__hdr));
	uint32_t st =
		atomic_load_explicit(&h->init_state, memory_order_acquire);
	if (st != SHVAL__INIT_READY)
		return shval__failf(NULL, SHVAL_ECORRUPT,
				    "segment %s was never fully initialised "
				    "(init state %u, creator pid %u %s)",
				    what, st, h->creator_pid,
				    shval__proc_alive((pid_t)h->creator_pid, 0)
					    ? "alive"
					    : "dead");
	if (h->max_size < sizeof(shval__hdr) ||
	    h->max_size > SHVAL__MAX_SIZE_LIMIT || h->max_size % 4096 ||
	    h->attach_cap != SHVAL__ATTACH_CAP ||
	    (h->seg_flags & ~(uint32_t)SHVAL_TEMP) || h->unlinked > 1 ||
	    (h->unlinked && !(h->seg_flags & SHVAL_TEMP)))
		return shval__failf(NULL, SHVAL_ECORRUPT,
				    "segment %s: bad header (max size %llu, "
				    "attach slots %u, flags 0x%x, unlinked %u)",
				    what, (unsigned long long)h->max_size,
				    h->attach_cap, h->seg_flags, h->unlinked);
	if (fsize > h->max_size)
		return shval__failf(
			NULL, SHVAL_ECORRUPT,
			"segment %s: file is %llu bytes, larger than "
			"its maximum size %llu",
			what, (unsigned long long)fsize,
			(unsigned long long)h->max_size);
	return 0;
}

/* ---- open / create ---- */

static shval_seg *seg_new(const char *name, int kind, const char *path,
			  unsigned flags)
{
	shval_seg *seg = calloc(1, sizeof *seg);
	if (!seg)
		return NULL;
	pthread_mutex_init(&seg->type_lock, NULL);
	seg->fd = -1;
	seg->attach_slot = -1;
	seg->kind = kind;
	seg->flags = flags;
	atomic_init(&seg->refs, 1);
	snprintf(seg->name, sizeof seg->name, "%s", name ? name : "");
	snprintf(seg->path, sizeof seg->path, "%s", path);
	return seg;
}

/* Map fd (already validated) and finish the handle. */
static int seg_map(shval_seg *seg, uint64_t max, uint64_t fsize)
{
	int prot = PROT_READ | ((seg->flags & SHVAL_RDONLY) ? 0 : PROT_WRITE);
	void *p = mmap(NULL, max, prot, MAP_SHARED, seg->fd, 0);
	if (p == MAP_FAILED)
		return shval__failf(NULL, -errno,
				    "segment %s: mmap of %llu bytes: %s",
				    seg->name[0] ? seg->name : "(anonymous)",
				    (unsigned long long)max, strerror(errno));
	seg->base = p;
	seg->map_len = max;
	seg->hdr = p;
	struct stat st;
	if (fstat(seg->fd, &st) == 0) {
		seg->dev = st.st_dev;
		seg->ino = st.st_ino;
		seg->fid = (uint64_t)st.st_ino * 0x9e3779b97f4a7c15ull ^
			   (uint64_t)st.st_dev;
	}
	atomic_store(&seg->valid, fsize < max ? fsize : max);
	return 0;
}

/* Build a fresh segment in fd (an unnamed file). */
static int seg_init(shval_seg *seg, uint64_t initial, uint64_t max,
		    unsigned flags)
{
	int r = posix_fallocate(seg->fd, 0, (off_t)initial);
	if (r != 0)
		return shval__failf(NULL, -r, "creating segment %s: %s",
				    seg->name[0] ? seg->name : "(anonymous)",
				    strerror(r));
	r = seg_map(seg, max, initial);
	if (r)
		return r;
	shval__hdr *h = seg->hdr;
	h->magic = SHVAL__MAGIC;
	h->format_major = SHVAL__FORMAT_MAJOR;
	h->format_minor = SHVAL__FORMAT_MINOR;
	h->header_size = sizeof(shval__hdr);
	h->layout_sig = SHVAL__LAYOUT_SIG;
	h->creator_pid = (uint32_t)getpid();
	h->created = (uint64_t)time(NULL);
	h->max_size = max;
	h->seg_flags = flags & SHVAL_TEMP;
	h->attach_cap = SHVAL__ATTACH_CAP;
	atomic_store_explicit(&h->size, initial, memory_order_relaxed);
	h->brk = sizeof(shval__hdr);
	h->next_serial = 1;
	r = shval__mutex_init(&h->lock);
	if (r)
		return shval__failf(NULL, r, "pthread_mutex_init: %s",
				    strerror(-r));
	/* The first directory table: 16 slots, one line of header. */
	uint64_t toff;
	r = shval__alloc(seg, shval__table_lines(16), &toff);
	if (r)
		return r;
	memset(shval__at(seg, toff), 0, shval__table_lines(16) * SHVAL__LINE);
	*(uint64_t *)shval__at(seg, toff) = 16;
	atomic_store_explicit(&h->table_off, toff, memory_order_relaxed);
	/* tag-init-ready: release publishes the whole header; pairs with the
	 * acquire load in validate_header(). */
	atomic_store_explicit(&h->init_state, SHVAL__INIT_READY,
			      memory_order_release);
	return 0;
}

static void seg_destroy(shval_seg *seg)
{
	if (!seg)
		return;
	/* A slot kept by shval_seg_close for pins: released with the
	 * mapping, the last thing the pins protected. */
	if (seg->user_closed && seg->base && seg->attach_slot >= 0 &&
	    seg->attach_pid == getpid() && !(seg->flags & SHVAL_RDONLY) &&
	    shval__seg_lock(seg) == 0) {
		shval__attach_release(seg);
		shval__seg_unlock(seg);
	}
	shval__tcache_free(seg);
	pthread_mutex_destroy(&seg->type_lock);
	if (seg->base)
		munmap(seg->base, seg->map_len);
	if (seg->fd >= 0)
		close(seg->fd);
	free(seg);
}

/* Open an existing segment file: validate, map, attach. Returns 1 when the
 * caller should retry (a stale temporary segment was removed). */
static int seg_attach_fd(shval_seg *seg)
{
	const char *what = seg->name[0] ? seg->name : "(anonymous)";
	struct stat st;
	if (fstat(seg->fd, &st) != 0)
		return shval__failf(NULL, -errno, "segment %s: fstat: %s", what,
				    strerror(errno));
	bool shm = seg->kind == SHVAL__SEG_SHM;
	if (!S_ISREG(st.st_mode))
		return shval__failf(NULL, SHVAL_ECORRUPT,
				    "segment %s%s%s%s is a %s, not a regular "
				    "file (refused)",
				    what, shm ? " (" : "", shm ? seg->path : "",
				    shm ? ")" : "",
				    shval__file_kind(st.st_mode));
	/* Opened with O_NONBLOCK (open_existing): back to blocking I/O. */
	int fl = fcntl(seg->fd, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		fcntl(seg->fd, F_SETFL, fl & ~O_NONBLOCK);
	if (st.st_uid != geteuid() && !(seg->flags & SHVAL_FOREIGN))
		return shval__failf(
			NULL, SHVAL_EFOREIGN,
			"segment %s is owned by uid %u, not by this "
			"process's uid %u (pass SHVAL_FOREIGN to "
			"open it anyway)",
			what, (unsigned)st.st_uid, (unsigned)geteuid());
	if ((uint64_t)st.st_size < sizeof(shval__hdr))
		return shval__failf(
			NULL, SHVAL_ECORRUPT,
			"%s is not a shval segment (%lld bytes, too "
			"small)",
			what, (long long)st.st_size);
	shval__hdr h;
	ssize_t n = pread(seg->fd, &h, sizeof h, 0);
	if (n != (ssize_t)sizeof h)
		return shval__failf(NULL, n < 0 ? -errno : SHVAL_ECORRUPT,
				    "segment %s: cannot read header", what);
	int r = validate_header(&h, (uint64_t)st.st_size, what);
	if (r)
		return r;
	r = (seg->flags & SHVAL_RDONLY) ? shval__seg_holes_readable(seg, &st)
					: shval__seg_back_whole(seg, &st);
	if (r)
		return r;
	r = seg_map(seg, h.max_size, (uint64_t)st.st_size);
	if (r)
		return r;
	/* Re-validate what we use from the live mapping (it could have been
	 * changed since the pread by a hostile writer; the checks are cheap). */
	if (seg->hdr->max_size != h.max_size)
		return shval__failf(NULL, SHVAL_ECORRUPT,
				    "segment %s: header changed while opening",
				    what);
	if (seg->flags & SHVAL_RDONLY)
		return 0;
	r = shval__seg_lock(seg);
	if (r)
		return r;
	if (seg->hdr->unlinked) {
		/* A temporary segment removed by its last process: its name
		 * went under the segment lock, which we hold now.  If the name
		 * still leads to this very file, the flag is damage (retrying
		 * would find the same file again). */
		struct stat a, b;
		bool still_named = seg->kind != SHVAL__SEG_ANON &&
				   fstat(seg->fd, &a) == 0 &&
				   stat(seg->path, &b) == 0 &&
				   a.st_dev == b.st_dev && a.st_ino == b.st_ino;
		bool bad = still_named || seg->hdr->unlinked != 1 ||
			   !(seg->hdr->seg_flags & SHVAL_TEMP);
		shval__seg_unlock(seg);
		if (bad)
			return shval__failf(
				NULL, SHVAL_ECORRUPT,
				"segment %s: header says its name was "
				"removed (unlinked %u, flags 0x%x), but "
				"it was not",
				what, seg->hdr->unlinked, seg->hdr->seg_flags);
		return 1;
	}
	if (shval__temp_orphaned(seg)) {
		/* A temporary segment whose processes all died: remove it. */
		seg->hdr->unlinked = 1;
		unlink(seg->path);
		shval__seg_unlock(seg);
		return 1;
	}
	shval__attach_claim_reaping(seg);
	shval__seg_unlock(seg);
	return 0;
}

static int get_opts(const shval_seg_opts *opts, uint64_t *initial,
		    uint64_t *max, unsigned *mode)
{
	*initial = DEFAULT_INITIAL;
	*max = DEFAULT_MAX;
	*mode = 0600;
	if (opts) {
		if (opts->struct_size <
		    offsetof(shval_seg_opts, initial_size) + sizeof(uint64_t))
			return shval__failf(
				NULL, -EINVAL,
				"shval_seg_opts.struct_size not set");
		if (opts->initial_size)
			*initial = opts->initial_size;
		if (opts->struct_size >= offsetof(shval_seg_opts, max_size) +
						 sizeof(uint64_t) &&
		    opts->max_size)
			*max = opts->max_size;
		if (opts->struct_size >=
			    offsetof(shval_seg_opts, mode) + sizeof(unsigned) &&
		    opts->mode)
			*mode = opts->mode;
	}
	if (*mode & ~07777u)
		return shval__failf(NULL, -EINVAL, "bad mode 0%o", *mode);
	uint64_t page = 4096;
	*initial = (*initial + page - 1) / page * page;
	*max = (*max + page - 1) / page * page;
	if (*initial < 2 * page)
		*initial = 2 * page; /* header + first table */
	if (*max > SHVAL__MAX_SIZE_LIMIT)
		return shval__failf(NULL, -EINVAL,
				    "max_size %llu above the limit of %llu",
				    (unsigned long long)*max,
				    (unsigned long long)SHVAL__MAX_SIZE_LIMIT);
	if (*initial > *max)
		return shval__failf(
			NULL, -EINVAL,
			"initial_size %llu is larger than max_size %llu",
			(unsigned long long)*initial, (unsigned long long)*max);
	return 0;
}

/* An anonymous segment: a memfd, built and attached at once. */
static int open_anon(unsigned flags, uint64_t initial, uint64_t max,
		     shval_seg **out)
{
	if (!(flags & SHVAL_CREATE))
		return shval__failf(NULL, -EINVAL,
				    "an anonymous segment (NULL name) needs "
				    "SHVAL_CREATE");
	shval_seg *seg =
		seg_new(NULL, SHVAL__SEG_ANON, "", flags & ~SHVAL_TEMP);
	if (!seg)
		return shval__failf(NULL, -ENOMEM, "out of memory");
	int r;
	seg->fd = memfd_create("shval", MFD_CLOEXEC);
	if (seg->fd < 0) {
		r = shval__failf(NULL, -errno, "memfd_create: %s",
				 strerror(errno));
		goto fail;
	}
	r = seg_init(seg, initial, max, 0);
	if (r == 0)
		r = shval__seg_lock(seg);
	if (r)
		goto fail;
	shval__attach_claim(seg);
	shval__seg_unlock(seg);
	*out = seg;
	return 0;
fail:
	seg_destroy(seg);
	return r;
}

/* Open the segment file at path: 0 and *out, 1 when the caller should
 * retry (a stale temporary segment was removed), -ENOENT when there is no
 * such file, or another error; a message in every failure. */
static int open_existing(const char *name, int kind, const char *path,
			 unsigned flags, shval_seg **out)
{
	/* O_NONBLOCK: a FIFO (or a device) squatting on the name must not
	 * block the open; seg_attach_fd refuses whatever is not a regular
	 * file, then the flag is cleared.  O_NOCTTY: nor become our
	 * terminal. */
	int fd = open(path, ((flags & SHVAL_RDONLY) ? O_RDONLY : O_RDWR) |
				    O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK |
				    O_NOCTTY);
	if (fd < 0) {
		if (errno == ELOOP)
			return shval__failf(
				NULL, -ELOOP,
				"segment %s: path is a symbolic link "
				"(refused)",
				name);
		if (errno == ENOENT)
			return shval__failf(NULL, -ENOENT,
					    "segment %s does not exist", name);
		return shval__failf(NULL, -errno, "segment %s: %s", name,
				    strerror(errno));
	}
	shval_seg *seg = seg_new(name, kind, path, flags);
	if (!seg) {
		close(fd);
		return shval__failf(NULL, -ENOMEM, "out of memory");
	}
	seg->fd = fd;
	int r = seg_attach_fd(seg);
	if (r) {
		seg_destroy(seg);
		return r;
	}
	*out = seg;
	return 0;
}

/* Create a named segment: build it under no name, then link it into
 * place.  0 and *out, 1 when the caller should retry (another process
 * created the name first: open theirs), or an error with its message. */
static int create_named(const char *name, int kind, const char *path,
			unsigned flags, uint64_t initial, uint64_t max,
			unsigned mode, shval_seg **out)
{
	shval_seg *seg = seg_new(name, kind, path, flags);
	if (!seg)
		return shval__failf(NULL, -ENOMEM, "out of memory");
	char tmp[SHVAL__PATH_MAX];
	int r = shval__seg_create_unnamed(path, mode, &seg->fd, tmp,
					  sizeof tmp);
	if (r) {
		r = shval__failf(NULL, r, "creating segment %s: %s", name,
				 strerror(-r));
		goto fail;
	}
	r = seg_init(seg, initial, max, flags);
	/* Attach before the segment gets its name: an opener that finds a
	 * TEMP segment with no live process removes it. */
	if (r == 0)
		shval__attach_claim(seg);
	if (r == 0)
		r = shval__seg_give_name(seg->fd, tmp, path);
	else if (tmp[0])
		unlink(tmp);
	if (r == -EEXIST && !(flags & SHVAL_EXCL))
		r = 1; /* somebody else created it first */
	else if (r == -EEXIST)
		r = shval__failf(NULL, -EEXIST, "segment %s already exists",
				 name);
	else if (r && !(r < 0 && shval_errmsg(NULL)[0]))
		r = shval__failf(NULL, r, "creating segment %s: %s", name,
				 shval_strerror(r));
	if (r)
		goto fail;
	*out = seg;
	return 0;
fail:
	seg_destroy(seg);
	return r;
}

SHVAL_API int shval_seg_open(const char *name, unsigned flags,
			     const shval_seg_opts *opts, shval_seg **out)
{
	if (!out)
		return shval__failf(NULL, -EINVAL, "out is NULL");
	*out = NULL;
	shval__clear_err(NULL);
	if (flags & ~KNOWN_FLAGS)
		return shval__failf(NULL, -EINVAL, "unknown flag bits 0x%x",
				    flags & ~KNOWN_FLAGS);
	if ((flags & (SHVAL_EXCL | SHVAL_TEMP)) && !(flags & SHVAL_CREATE))
		return shval__failf(
			NULL, -EINVAL,
			"SHVAL_EXCL and SHVAL_TEMP need SHVAL_CREATE");
	if ((flags & SHVAL_CREATE) && (flags & SHVAL_RDONLY))
		return shval__failf(
			NULL, -EINVAL,
			"SHVAL_CREATE and SHVAL_RDONLY exclude each other");
	if (shval__r_is_name(name)) {
		int rr = shval__r_seg_open(name, flags, out);
		if (rr == 0)
			shval__clear_err(NULL);
		return rr;
	}
	int kind = SHVAL__SEG_ANON;
	char path[SHVAL__PATH_MAX];
	int r = shval__seg_parse_name(name, &kind, path, sizeof path);
	if (r)
		return r;
	uint64_t initial, max;
	unsigned mode;
	r = get_opts(opts, &initial, &max, &mode);
	if (r)
		return r;

	if (kind == SHVAL__SEG_FILE && !(flags & SHVAL_FOREIGN) &&
	    (r = shval__seg_check_dirs(name, path)) != 0)
		return r;

	shval_seg *seg = NULL;
	if (kind == SHVAL__SEG_ANON) {
		r = open_anon(flags, initial, max, &seg);
	} else {
		/* One retry loop for both races: a stale temporary segment
		 * removed under us, a name created by another process. */
		r = 1;
		for (int attempt = 0; attempt < 20 && r == 1; attempt++) {
			if (!(flags & SHVAL_EXCL)) {
				r = open_existing(name, kind, path, flags,
						  &seg);
				if (r != -ENOENT || !(flags & SHVAL_CREATE))
					continue;
			}
			shval__clear_err(NULL); /* not "does not exist" */
			r = create_named(name, kind, path, flags, initial, max,
					 mode, &seg);
		}
		if (r == 1)
			r = shval__failf(NULL, -EAGAIN,
					 "segment %s: gave up after repeated "
					 "create/remove races",
					 name);
	}
	if (r)
		return r;
	shval__open_list_add(seg);
	*out = seg;
	return 0;
}

SHVAL_API int shval_seg_open_fd(int fd, unsigned flags, shval_seg **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	shval__clear_err(NULL);
	if (flags & ~(SHVAL_RDONLY | SHVAL_FOREIGN))
		return shval__failf(NULL, -EINVAL,
				    "shval_seg_open_fd takes only SHVAL_RDONLY "
				    "and SHVAL_FOREIGN");
	shval_seg *seg = seg_new(NULL, SHVAL__SEG_ANON, "", flags);
	if (!seg)
		return shval__failf(NULL, -ENOMEM, "out of memory");
	seg->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (seg->fd < 0) {
		int r = shval__failf(NULL, -errno, "fd %d: %s", fd,
				     strerror(errno));
		seg_destroy(seg);
		return r;
	}
	int r = seg_attach_fd(seg);
	if (r) {
		seg_destroy(seg);
		return r == 1 ? shval__failf(
					NULL, -ENOENT,
					"fd %d: the segment was removed (a "
					"temporary segment whose processes "
					"all died)",
					fd)
			      : r;
	}
	shval__open_list_add(seg);
	*out = seg;
	return 0;
}

SHVAL_API int shval_seg_fd(const shval_seg *seg)
{
	return seg ? seg->fd : -1;
}

SHVAL_API const char *shval_seg_name(const shval_seg *seg)
{
	return seg ? seg->name : "";
}

SHVAL_API int shval_seg_close(shval_seg *seg)
{
	if (SHVAL__RSEG(seg))
		return shval__r_seg_close(seg);
	if (!seg)
		return 0;
	shval__open_list_del(seg);
	seg->user_closed = true;
	if (seg->attach_slot >= 0 && seg->attach_pid == getpid() &&
	    !(seg->flags & SHVAL_RDONLY)) {
		/* Pins outlive the user's close while value handles keep the
		 * mapping (buffers still point into it): the slot, and so the
		 * pins, are then released with the mapping (seg_destroy). */
		if (shval__seg_lock(seg) == 0) {
			if (!shval__pins_held(seg))
				shval__attach_release(seg);
			shval__seg_unlock(seg);
		}
	}
	shval__seg_unref(seg);
	return 0;
}

/* Cheap consistency of the header's sizes and counters, as a process
 * attached to the segment can see them without the segment lock: NULL, or
 * what is wrong.  (shval_seg_info and shval_seg_verify.)  Every rule holds
 * at every instant, since size grows only after the file did, brk and used
 * move in whole lines under the lock, and a table never holds more entries
 * than slots. */
const char *shval__hdr_check(shval_seg *seg)
{
	shval__hdr *h = seg->hdr;
	/* Loaded in the reverse order of the stores (alloc.c: size, then brk,
	 * then used, each with release), so that a racing allocation cannot
	 * make the rules below fail. */
	uint64_t used = __atomic_load_n(&h->used, __ATOMIC_ACQUIRE);
	uint64_t brk = __atomic_load_n(&h->brk, __ATOMIC_ACQUIRE);
	uint64_t size = atomic_load_explicit(&h->size, memory_order_acquire);
	if (size % 4096 || size > seg->map_len || !shval__in(seg, 0, size))
		return "the backed size in the header is impossible (not whole "
		       "pages, or larger than the file)";
	if (brk < sizeof(shval__hdr) || brk % SHVAL__LINE || brk > size)
		return "the allocation mark (brk) in the header is outside the "
		       "backed part";
	if (used % SHVAL__LINE || used > brk - sizeof(shval__hdr))
		return "the count of bytes in use is impossible";
	uint64_t cap;
	if (!shval__table_at(
		    seg,
		    atomic_load_explicit(&h->table_off, memory_order_acquire),
		    &cap))
		return "the directory table is damaged";
	/* (not ntomb: a resize may shrink the table before it resets it) */
	if (h->nvalues > cap)
		return "the value count exceeds the directory table";
	return NULL;
}

SHVAL_API int shval_seg_info(shval_seg *seg, struct shval_seg_info *info)
{
	if (SHVAL__RSEG(seg))
		return info ? shval__r_seg_info(seg, info) : -EINVAL;
	if (!seg || !info)
		return -EINVAL;
	shval__hdr *h = seg->hdr;
	memset(info, 0, sizeof *info);
	/* The counters reported must be possible ones (see shval__hdr_check):
	 * a damaged header gives SHVAL_ECORRUPT, not made-up numbers. */
	const char *bad = shval__hdr_check(seg);
	if (bad)
		return shval__failf(seg, SHVAL_ECORRUPT, "segment %s: %s",
				    seg->name, bad);
	info->format_major = h->format_major;
	info->format_minor = h->format_minor;
	info->size = atomic_load_explicit(&h->size, memory_order_acquire);
	info->used = h->used + sizeof(shval__hdr);
	info->max_size = seg->map_len;
	info->nvalues = h->nvalues;
	info->version =
		atomic_load_explicit(&h->version, memory_order_acquire) &
		~(SHVAL__V_WAITERS | SHVAL__V_WRITING);
	info->creator_pid = (pid_t)h->creator_pid;
	info->created = (int64_t)h->created;
	info->flags = (h->seg_flags & SHVAL_TEMP) | (seg->flags & SHVAL_RDONLY);
	struct stat st;
	if (fstat(seg->fd, &st) == 0) {
		info->mode = st.st_mode & 07777;
		info->owner = st.st_uid;
	}
	shval__attach_count(seg, &info->nattached, &info->nalive);
	return 0;
}

/* ---- the process-wide anonymous segment (shval_new) ---- */

static pthread_mutex_t anon_lock = PTHREAD_MUTEX_INITIALIZER;
static shval_seg *anon_seg;

SHVAL_API int shval_anon_segment(shval_seg **out)
{
	if (!out)
		return -EINVAL;
	pthread_mutex_lock(&anon_lock);
	int r = 0;
	if (!anon_seg)
		r = shval_seg_open(NULL, SHVAL_CREATE, NULL, &anon_seg);
	*out = anon_seg;
	pthread_mutex_unlock(&anon_lock);
	return r;
}
