/*
 * tests/test_corrupt.c — damaged segments (the segment is hostile input:
 * an error, never a crash or a wrong answer).  Also the damaged-segment
 * cases that exec and fork (damaged_header_and_directory,
 * damaged_random_no_crash; helpers in proc_util.h).
 *
 * byte_flips: build a small real segment (values of four modes and three
 * kinds, a shared lock guarding two values, a removed value), then damage
 * one byte at a time — every byte of the header's first 512 bytes and of
 * the allocated region [5120, brk) (directory table, type records,
 * entries, lock blocks, data) — XOR 0xFF everywhere, and also 0x00 and
 * 0x7F at every fourth offset.  Each damaged image is a private copy in a
 * new memfd; it is opened, verified (DEEP), iterated, and every value is
 * found and read (shval_read, shval_to_text).  Every call must return 0 or
 * a negative code: never crash, never hang.
 *   - read-only pass: in this process (LeakSanitizer sees any leak);
 *   - writable pass (the open takes the segment lock, a mutex that may be
 *     the damaged byte): in a forked child with a timeout, so that a hang
 *     or a crash is counted and reported with its offset instead of killing
 *     the whole test.  A crash or hang in the read-only pass ends the case
 *     and names its offset (on_fatal).
 * Outcomes are counted and printed.
 *
 * fuzz_regressions: every file under fuzz/regressions/fuzz_segment/ (inputs
 * that once crashed fuzz/fuzz_segment.c; SHVAL_FUZZ_REGRESSIONS=DIR picks
 * another directory) goes through the same passes, the writable one with a
 * create and a remove as well.
 */
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <shval.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "format.h"
#include "proc_util.h"

#define HDR 5120u

static unsigned char *image;
static size_t image_len;
static uint64_t image_brk;

static void build_image(void)
{
	shval_seg_opts o = { .struct_size = sizeof o, .initial_size = 8192,
			     .max_size = 1u << 20 };
	shval_seg *seg;
	shval *v, *lk;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, &o, &seg));
	ASSERT_OK(shval_create(seg, "hits", "q", SHVAL_ATOMIC, NULL, 0, &v));
	ASSERT_OK(shval_set_i64(v, 5));
	shval_close(v);
	ASSERT_OK(shval_create(seg, "temp", "d", SHVAL_RLOCK, NULL, 0, &v));
	ASSERT_OK(shval_set_f64(v, 21.5));
	shval_close(v);
	ASSERT_OK(shval_create(seg, "pt", "x:d y:d tag:8s", SHVAL_LOCK, NULL, 0, &v));
	const char *a[3] = { "x=1", "y=2", "tag=abc" };
	ASSERT_OK(shval_from_text(v, 3, a));
	shval_close(v);
	ASSERT_OK(shval_create(seg, "arr", "4h", SHVAL_RAW, NULL, 0, &v));
	shval_close(v);
	ASSERT_OK(shval_lock_create(seg, "L", SHVAL_RLOCK, &lk));
	ASSERT_OK(shval_create_guarded(seg, "g1", "i", lk, NULL, 0, &v));
	shval_close(v);
	ASSERT_OK(shval_create_guarded(seg, "g2", "4s", lk, NULL, 0, &v));
	shval_close(v);
	shval_close(lk);
	ASSERT_OK(shval_create(seg, "gone", "2q", SHVAL_RLOCK, NULL, 0, &v));
	shval_close(v);
	ASSERT_OK(shval_remove(seg, "gone"));
	struct stat st;
	ASSERT_EQ(fstat(shval_seg_fd(seg), &st), 0);
	image_len = (size_t)st.st_size;
	image = malloc(image_len);
	ASSERT(image);
	ASSERT_EQ(pread(shval_seg_fd(seg), image, image_len, 0), (ssize_t)image_len);
	memcpy(&image_brk, image + offsetof(shval__hdr, brk), 8);
	ASSERT_OK(shval_seg_close(seg));
	ASSERT_GT(image_brk, HDR);
	ASSERT_LE(image_brk, image_len);
}

static int memfd_of(const unsigned char *b, size_t n)
{
	int fd = memfd_create("shval-corrupt", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, (off_t)(n < HDR ? HDR : n)), 0);
	ASSERT_EQ(pwrite(fd, b, n, 0), (ssize_t)n);
	/* a damaged size field must not make the library allocate gigabytes */
	ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK), 0);
	return fd;
}

/* Outcomes, by pass. */
struct counts {
	unsigned runs, open_ok, open_err, verify_clean, verify_problems;
	unsigned values_read, call_errors;
	unsigned child_crash, child_hang;
	unsigned known_hang;  /* hangs on a damaged segment lock (see below) */
	int codes[48];        /* open errors: code, count */
	unsigned ncodes[48];
};

static void count_code(struct counts *c, int code)
{
	for (int i = 0; i < 48; i++) {
		if (c->codes[i] == code || c->codes[i] == 0) {
			c->codes[i] = code;
			c->ncodes[i]++;
			return;
		}
	}
}

#define CHECK_RC(r)                                                           \
	do {                                                                  \
		int rc_ = (r);                                                \
		if (rc_ > 0)                                                  \
			FAIL("%s returned %d (positive)", #r, rc_);           \
		if (rc_ < 0)                                                  \
			c->call_errors++;                                     \
	} while (0)

/* Open, verify, iterate, find and read everything; with writes, also
 * create and remove values (the allocator on the damaged state). */
static void exercise_w(int fd, unsigned flags, struct counts *c, bool writes)
{
	c->runs++;
	shval_seg *seg;
	int r = shval_seg_open_fd(fd, flags, &seg);
	if (r > 0)
		FAIL("shval_seg_open_fd returned %d", r);
	if (r < 0) {
		ASSERT(seg == NULL);
		c->open_err++;
		count_code(c, r);
		return;
	}
	c->open_ok++;
	struct shval_seg_info si;
	CHECK_RC(shval_seg_info(seg, &si));
	size_t np = 0;
	r = shval_seg_verify(seg, SHVAL_VERIFY_DEEP, NULL, NULL, &np);
	CHECK_RC(r);
	if (r == 0)
		c->verify_clean++;
	else
		c->verify_problems++;
	uint64_t cursor = 0;
	struct shval_info in;
	for (int guard = 0; guard < 10000; guard++) {
		r = shval_seg_next(seg, &cursor, NULL, &in);
		if (r == SHVAL_ENOTFOUND)
			break;
		CHECK_RC(r);
		if (r)
			break;
		shval *v;
		r = shval_find(seg, in.name, NULL, &v);
		CHECK_RC(r);
		if (r)
			continue;
		struct shval_info vi;
		CHECK_RC(shval_info(v, &vi));
		if (vi.kind != SHVAL_KIND_LOCK) {
			unsigned char *buf = malloc(vi.size + 1);
			ASSERT(buf);
			CHECK_RC(shval_read(v, buf, vi.size));
			char text[4096];
			size_t len;
			CHECK_RC(shval_to_text(v, 0, text, sizeof text, &len));
			CHECK_RC(shval_to_text(v, SHVAL_TEXT_JSON, text, sizeof text,
					       &len));
			free(buf);
			c->values_read++;
		}
		shval_close(v);
	}
	if (writes) {
		shval *v;
		r = shval_create(seg, "new", "100q", SHVAL_RLOCK, NULL, 0, &v);
		CHECK_RC(r);
		shval_close(v);
		CHECK_RC(shval_remove(seg, "new"));
	}
	ASSERT_OK(shval_seg_close(seg));
}

static void exercise(int fd, unsigned flags, struct counts *c)
{
	exercise_w(fd, flags, c, false);
}

/* The writable pass of one image, in a child: 0 ok, else a crash or hang
 * (counted).  The child's counts come back through a pipe. */
static bool child_writes;

static void exercise_child(const unsigned char *b, size_t n, struct counts *c,
			   const char *what, bool lock_damaged)
{
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		close(p[0]);
		signal(SIGALRM, SIG_DFL); /* the parent's handler names its own */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		alarm(2);
		struct counts cc;
		memset(&cc, 0, sizeof cc);
		int fd = memfd_of(b, n);
		exercise_w(fd, 0, &cc, child_writes);
		close(fd);
		if (write(p[1], &cc, sizeof cc) != (ssize_t)sizeof cc)
			_exit(3);
		_exit(0); /* LeakSanitizer: the parent's read-only pass */
	}
	close(p[1]);
	struct counts cc;
	ssize_t k = read(p[0], &cc, sizeof cc);
	close(p[0]);
	int st;
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && k == (ssize_t)sizeof cc) {
		c->runs += cc.runs;
		c->open_ok += cc.open_ok;
		c->open_err += cc.open_err;
		c->verify_clean += cc.verify_clean;
		c->verify_problems += cc.verify_problems;
		c->values_read += cc.values_read;
		c->call_errors += cc.call_errors;
		for (int i = 0; i < 48 && cc.codes[i]; i++)
			for (unsigned j = 0; j < cc.ncodes[i]; j++)
				count_code(c, cc.codes[i]);
		return;
	}
	c->runs++;
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM && lock_damaged &&
	    getenv("SHVAL_CORRUPT_LENIENT")) {
		/* Was a known bug (fixed: lock waits give up with
		 * SHVAL_ECORRUPT on a lock word naming a thread that does not
		 * exist); hangs now fail unless SHVAL_CORRUPT_LENIENT is set. */
		c->known_hang++;
		fprintf(stderr, "  known hang (writable open, damaged segment "
				"lock) %s\n", what);
	} else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
		c->child_hang++;
		fprintf(stderr, "  HANG (writable open) %s\n", what);
	} else {
		c->child_crash++;
		fprintf(stderr, "  CRASH (writable open) %s: status 0x%x\n", what, st);
	}
}

static void print_counts(const char *pass, const struct counts *c)
{
	printf("%s: %u runs: open ok %u (verify clean %u, problems %u), open "
	       "failed %u; values read %u, other calls failing %u",
	       pass, c->runs, c->open_ok, c->verify_clean, c->verify_problems,
	       c->open_err, c->values_read, c->call_errors);
	if (c->child_crash + c->child_hang + c->known_hang) /* child passes */
		printf("; crashes %u, hangs %u (known: %u)", c->child_crash,
		       c->child_hang, c->known_hang);
	printf("\n");
	printf("  open errors:");
	for (int i = 0; i < 48 && c->codes[i]; i++)
		printf(" %s=%u", shval_errname(c->codes[i]), c->ncodes[i]);
	printf("\n");
}

/* The damage the in-process (read-only) pass is working on, for a crash
 * or hang there to name it. */
static char current[64];

static void on_fatal(int sig)
{
	char msg[160];
	int n = snprintf(msg, sizeof msg,
			 "  %s in the read-only pass (in process) at %s\n",
			 sig == SIGALRM ? "HANG" : "CRASH",
			 current[0] ? current : "(no damage: setup)");
	if (n > 0 && write(2, msg, (size_t)n) < 0)
		_exit(1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void damage_and_run(size_t off, unsigned char how, int mode,
			   struct counts *ro, struct counts *rw)
{
	unsigned char *b = malloc(image_len);
	ASSERT(b);
	memcpy(b, image, image_len);
	b[off] = mode == 0 ? (unsigned char)(b[off] ^ how) : how;
	if (memcmp(b, image, image_len) == 0) { /* no change */
		free(b);
		return;
	}
	char what[64];
	snprintf(what, sizeof what, "offset %zu %s 0x%02x", off,
		 mode == 0 ? "xor" : "set to", how);
	snprintf(current, sizeof current, "%s", what);
	int fd = memfd_of(b, image_len);
	exercise(fd, SHVAL_RDONLY, ro);
	close(fd);
	current[0] = 0;
	exercise_child(b, image_len, rw, what,
		       off >= offsetof(shval__hdr, lock) &&
			       off < offsetof(shval__hdr, lock) + sizeof(pthread_mutex_t));
	free(b);
}

TEST(byte_flips)
{
	build_image();
	signal(SIGSEGV, on_fatal);
	signal(SIGBUS, on_fatal);
	signal(SIGALRM, on_fatal); /* the harness's timeout */
	struct counts ro, rw;
	memset(&ro, 0, sizeof ro);
	memset(&rw, 0, sizeof rw);
	/* the intact image first: everything must be clean */
	int fd = memfd_of(image, image_len);
	exercise(fd, SHVAL_RDONLY, &ro);
	close(fd);
	ASSERT_EQ(ro.verify_clean, 1);
	ASSERT_EQ(ro.values_read, 6); /* and the lock L */
	ASSERT_EQ(ro.call_errors, 0);
	memset(&ro, 0, sizeof ro);
	time_t t0 = time(NULL);
	size_t noffsets = 0;
	for (size_t off = 0; off < image_brk; off++) {
		if (off == 512)
			off = HDR; /* skip the rest of the header: free lists
				      and attach table (covered by verify's
				      list walks, but 4.6 KiB of mostly zeros) */
		noffsets++;
		damage_and_run(off, 0xff, 0, &ro, &rw);
		if (off % 4 == 0) {
			damage_and_run(off, 0x00, 1, &ro, &rw);
			damage_and_run(off, 0x7f, 1, &ro, &rw);
		}
	}
	printf("image: %zu bytes, brk %llu; %zu offsets damaged in %ld s\n",
	       image_len, (unsigned long long)image_brk, noffsets,
	       (long)(time(NULL) - t0));
	print_counts("read-only open", &ro);
	print_counts("writable open", &rw);
	/* (The read-only pass runs in this process: a crash or hang there
	 * ends the case itself, naming its offset through on_fatal().) */
	ASSERT_EQ(rw.child_crash, 0);
	ASSERT_EQ(rw.child_hang, 0);
	free(image);
}

/* ---- crashers found by fuzz/fuzz_segment.c ---- */

static char *regress_dir(void)
{
	static char dir[4096];
	const char *env = getenv("SHVAL_FUZZ_REGRESSIONS");
	if (env) {
		snprintf(dir, sizeof dir, "%s", env);
		return dir;
	}
	snprintf(dir, sizeof dir, "%s", __FILE__);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, sizeof dir, ".");
	strncat(dir, "/../fuzz/regressions/fuzz_segment", sizeof dir - strlen(dir) - 1);
	return dir;
}

TEST(fuzz_regressions)
{
	const char *dir = regress_dir();
	DIR *d = opendir(dir);
	if (!d)
		SKIP("no directory %s", dir);
	struct counts ro, rw;
	memset(&ro, 0, sizeof ro);
	memset(&rw, 0, sizeof rw);
	struct dirent *de;
	unsigned n = 0;
	child_writes = true;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char path[8192];
		snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
		FILE *f = fopen(path, "rb");
		ASSERT(f);
		unsigned char *b = malloc(1 << 20);
		ASSERT(b);
		size_t len = fread(b, 1, 1 << 20, f);
		fclose(f);
		int fd = memfd_of(b, len);
		exercise(fd, SHVAL_RDONLY, &ro);
		close(fd);
		exercise_child(b, len, &rw, de->d_name, false);
		free(b);
		n++;
	}
	closedir(d);
	printf("%u regression inputs from %s\n", n, dir);
	print_counts("read-only open", &ro);
	print_counts("writable open", &rw);
	ASSERT_EQ(rw.child_crash + rw.child_hang, 0);
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
	uint64_t lock_v;   /* v's lock block */
	uint64_t lock_s;   /* s's lock block */
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
	L->lock_v = ((shval__entry *)(img + L->ent_v))->lock_off;
	L->lock_s = ((shval__entry *)(img + L->ent_s))->lock_off;
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
		{ "entry name_len 0", 1, 20, 1, 0, OP_FIND, SHVAL_ECORRUPT },
		{ "entry name_len 255", 1, 20, 1, 255, OP_FIND, SHVAL_ECORRUPT },
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
	enum { NFUZZ = 1500 };
	struct layout L;
	unsigned char *img = make_damage_seg(n, &L);
	struct shared *sh = shared_page();
	/* regions to damage: [off, len), and a class for the counts */
	struct {
		uint64_t off, len;
		int cls;
	} reg[] = {
		{ 0, 64, 0 },			      /* identity line */
		{ 192, 96, 0 },			      /* size .. used */
		{ 512, 512, 1 },		      /* free lists */
		{ L.table_off, 64 + 16 * 8, 2 },      /* directory */
		{ L.ent_v + 16, 24, 3 },	      /* entry fields after */
		{ L.ent_s + 16, 24, 3 },	      /* the serial */
		{ L.type_v, 40, 4 },		      /* type record */
		{ offsetof(shval__hdr, lock), sizeof(pthread_mutex_t), 5 },
		{ L.lock_v, sizeof(shval__lockblk), 5 }, /* lock words */
		{ L.lock_s, sizeof(shval__lockblk), 5 },
		{ offsetof(shval__hdr, version), 8, 6 }, /* version words */
		{ L.ent_v + offsetof(shval__entry, version), 8, 6 },
		{ L.ent_s + offsetof(shval__entry, version), 8, 6 },
		{ offsetof(shval__hdr, attach), 4 * sizeof(shval__attach), 7 },
	};
	static const char *cls_name[] = { "header", "free lists", "directory",
					  "entries", "type records",
					  "lock words", "version words",
					  "attach slots" };
	int per_cls[8] = { 0 };
	size_t nreg = sizeof reg / sizeof reg[0];
	unsigned seed = (unsigned)getpid();
	int crashes = 0, opened = 0, live_owner = 0;
	double t0 = now_s();
	for (int it = 0; it < NFUZZ; it++) {
		restore(n, img, L.fsize);
		int nflip = 1 + rand_r(&seed) % 4;
		char desc[256] = "";
		for (int f = 0; f < nflip; f++) {
			size_t ri = (size_t)rand_r(&seed) % nreg;
			uint64_t off = reg[ri].off + (uint64_t)rand_r(&seed) % reg[ri].len;
			per_cls[reg[ri].cls]++;
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
		/* A lock word that names a live thread (one we cannot judge:
		 * doubt counts as alive, e.g. pid 1 when /proc/1/maps is not
		 * readable) is a live owner by design: blocking calls would
		 * wait for it forever.  Then only the non-blocking calls run,
		 * on a read-only open. */
		bool live = false;
		uint64_t lw[] = { offsetof(shval__hdr, lock), L.lock_v, L.lock_s };
		for (int k = 0; k < 3; k++) {
			uint32_t w;
			int fd = open(shm_path(n), O_RDONLY);
			ASSERT(fd >= 0);
			ASSERT_EQ(pread(fd, &w, 4, (off_t)lw[k]), 4);
			close(fd);
			pid_t t = (pid_t)(w & 0x3fffffffu);
			if (!(w & 0x40000000u) && t &&
			    (kill(t, 0) == 0 || errno == EPERM))
				live = true;
		}
		live_owner += live;
		pid_t pid = fork();
		ASSERT(pid >= 0);
		if (pid == 0 && live) {
			alarm(10);
			shval_seg *s;
			if (shval_seg_open(n, SHVAL_RDONLY, NULL, &s) != 0)
				_exit(shval_errmsg(NULL)[0] ? 0 : 3);
			shval *v;
			if (shval_find(s, "v", NULL, &v) == 0) {
				unsigned char buf[64];
				shval_read(v, buf, sizeof buf);
				shval_close(v);
			}
			size_t np;
			shval_seg_verify(s, SHVAL_VERIFY_DEEP, NULL, NULL, &np);
			shval_seg_close(s);
			_exit(0);
		}
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
					/* through the (maybe damaged) lock and
					 * version words */
					shval_add_i64(v, 1, NULL);
					int lr = shval_trylock(v);
					if (lr != 0 && lr != SHVAL_EOWNERDEAD)
						lr = shval_timedlock(
							v, 100 * SHVAL_MSEC);
					if (lr == 0 || lr == SHVAL_EOWNERDEAD)
						shval_unlock(v);
					uint64_t seen = shval_value_version(v);
					shval_wait(v, &seen, 0);
					shval_close(v);
				}
			}
			size_t np;
			shval_seg_verify(s, SHVAL_VERIFY_REPAIR, NULL, NULL, &np);
			shval_proc pr[8];
			shval_seg_procs(s, pr, 8, &np);
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
	printf("%d random damages in %.2f s (%ld opened writable, %d with a "
	       "lock word naming a live thread: read-only calls only), %d "
	       "crashes/hangs\n",
	       NFUZZ, now_s() - t0, (long)sh->counter, live_owner, crashes);
	for (int c = 0; c < 8; c++)
		printf("  %d damaged bytes/words in %s\n", per_cls[c],
		       cls_name[c]);
	/* the last damage may have hit the magic, and unlink removes only
	 * what is recognisably a segment: undamaged first */
	restore(n, img, L.fsize);
	free(img);
	ASSERT_OK(shval_seg_unlink(n));
	ASSERT_EQ(crashes, 0);
}

TEST_MAIN()
