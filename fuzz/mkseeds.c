/*
 * fuzz/mkseeds.c — writes a seed corpus of real segment images for
 * fuzz_segment (and a few type strings / text inputs for the other two).
 *
 *   mkseeds DIR_SEGMENT DIR_TYPE DIR_TEXT
 *
 * Each segment is built in an anonymous segment (memfd) through the public
 * API and copied out byte for byte: values of every mode and several kinds,
 * a shared lock with guarded values, removed values (tombstones, limbo and
 * free lists), a directory resize, and a value caught mid-write (WRITING
 * bit set, lock held).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <shval.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(call)                                                          \
	do {                                                                 \
		int r_ = (call);                                             \
		if (r_ != 0) {                                               \
			fprintf(stderr, "mkseeds: %s: %s (%s)\n", #call,     \
				shval_strerror(r_), shval_errmsg(NULL));     \
			exit(1);                                             \
		}                                                            \
	} while (0)

static void dump(shval_seg *seg, const char *dir, const char *name)
{
	int fd = shval_seg_fd(seg);
	struct stat st;
	if (fstat(fd, &st) != 0) {
		perror("fstat");
		exit(1);
	}
	size_t n = (size_t)st.st_size;
	unsigned char *b = malloc(n);
	if (!b || pread(fd, b, n, 0) != (ssize_t)n) {
		perror("pread");
		exit(1);
	}
	/* Trailing all-zero bytes past the last allocated block are kept up to
	 * a page boundary only when they are inside the file: the fuzzer
	 * restores the file size from the input length, so keep it whole. */
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(b, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
	free(b);
}

static shval_seg *newseg(uint64_t initial)
{
	shval_seg_opts o = { .struct_size = sizeof o, .initial_size = initial,
			     .max_size = 1u << 20 };
	shval_seg *seg;
	CHECK(shval_seg_open(NULL, SHVAL_CREATE, &o, &seg));
	return seg;
}

static void put(const char *dir, const char *name, const char *s, size_t n)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(s, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: mkseeds SEGDIR TYPEDIR TEXTDIR\n");
		return 2;
	}
	const char *sd = argv[1];
	shval *v, *w, *lk;

	/* 1. empty */
	shval_seg *seg = newseg(8192);
	dump(seg, sd, "empty");
	shval_seg_close(seg);

	/* 2. the format.h example: an atomic and a locked scalar */
	seg = newseg(8192);
	CHECK(shval_create(seg, "hits", "q", SHVAL_ATOMIC, NULL, 0, &v));
	CHECK(shval_set_i64(v, 5));
	shval_close(v);
	CHECK(shval_create(seg, "temp", "d", SHVAL_RLOCK, NULL, 0, &v));
	CHECK(shval_set_f64(v, 21.5));
	shval_close(v);
	dump(seg, sd, "hexdemo");

	/* 3. every mode and kind, a shared lock, a removed value */
	CHECK(shval_create(seg, "name", "16s", SHVAL_LOCK, NULL, 0, &v));
	CHECK(shval_set_str(v, "hello\0world", 11));
	shval_close(v);
	CHECK(shval_create(seg, "arr", "10i", SHVAL_RAW, NULL, 0, &v));
	{
		const char *a[10] = { "1", "-2", "3", "4", "5", "6", "7", "8",
				      "9", "2147483647" };
		CHECK(shval_from_text(v, 10, a));
	}
	shval_close(v);
	CHECK(shval_create(seg, "pt", "x:d y:d tag:8s n:3h", SHVAL_RLOCK, NULL, 0,
			   &v));
	{
		const char *a[4] = { "x=1.5", "y=-2", "tag=ab\"c", "n=1,2,3" };
		CHECK(shval_from_text(v, 4, a));
	}
	shval_close(v);
	CHECK(shval_create(seg, "anon", "q d 4s", SHVAL_RAW, NULL, 0, &v));
	shval_close(v);
	const char *atoms[][2] = { { "c1", "c" }, { "b1", "?" }, { "u1", "u" },
				   { "f1", "f" }, { "h1", "H" }, { "B1", "B" } };
	for (size_t i = 0; i < sizeof atoms / sizeof atoms[0]; i++) {
		CHECK(shval_create(seg, atoms[i][0], atoms[i][1], SHVAL_ATOMIC,
				   NULL, 0, &v));
		const char *a[1] = { atoms[i][1][0] == 'u' ? "\xc3\xa9"
				     : atoms[i][1][0] == '?' ? "true"
				     : atoms[i][1][0] == 'c' ? "x"
							     : "7" };
		CHECK(shval_from_text(v, 1, a));
		shval_close(v);
	}
	CHECK(shval_lock_create(seg, "L", SHVAL_RLOCK, &lk));
	CHECK(shval_create_guarded(seg, "g1", "q", lk, NULL, 0, &v));
	CHECK(shval_set_i64(v, 42));
	shval_close(v);
	CHECK(shval_create_guarded(seg, "g2", "4h", lk, NULL, 0, &v));
	shval_close(v);
	shval_close(lk);
	CHECK(shval_create(seg, "gone", "8q", SHVAL_RLOCK, NULL, 0, &v));
	shval_close(v);
	CHECK(shval_remove(seg, "gone"));
	/* buffer pins (format 3.1): a pin block in this process's attach
	 * slot, two records (one pinned twice) */
	shval *p1, *p2;
	CHECK(shval_find(seg, "name", NULL, &p1));
	CHECK(shval_find(seg, "arr", NULL, &p2));
	CHECK(shval_pin(p1));
	CHECK(shval_pin(p2));
	CHECK(shval_pin(p2));
	dump(seg, sd, "mixed");
	CHECK(shval_unpin(p1));
	CHECK(shval_unpin(p2));
	CHECK(shval_unpin(p2));
	shval_close(p1);
	shval_close(p2);
	shval_seg_close(seg);

	/* 4. a directory resize, tombstones, limbo drained into free lists */
	seg = newseg(16384);
	char nm[32];
	for (int i = 0; i < 24; i++) {
		snprintf(nm, sizeof nm, "v%02d", i);
		unsigned m = (unsigned)(i % 4) << 8;
		if (m == SHVAL_ATOMIC && i % 3 == 0)
			m = SHVAL_RAW; /* "3d" cannot be atomic */
		CHECK(shval_create(seg, nm, i % 3 ? "q" : "3d", m, NULL, 0, &v));
		shval_close(v);
	}
	for (int i = 0; i < 24; i += 2) {
		snprintf(nm, sizeof nm, "v%02d", i);
		CHECK(shval_remove(seg, nm));
	}
	dump(seg, sd, "limbo");
	usleep(1100 * 1000); /* SHVAL__LIMBO_NS: let removed blocks be freed */
	for (int i = 0; i < 4; i++) {
		snprintf(nm, sizeof nm, "w%d", i);
		CHECK(shval_create(seg, nm, "q", SHVAL_RLOCK, NULL, 0, &v));
		shval_close(v);
	}
	dump(seg, sd, "freelists");
	shval_seg_close(seg);

	/* 5. a value caught mid-write: lock held, WRITING set, data changed */
	seg = newseg(8192);
	CHECK(shval_create(seg, "busy", "4q", SHVAL_RLOCK, NULL, 0, &v));
	CHECK(shval_create(seg, "other", "i", SHVAL_RAW, NULL, 0, &w));
	CHECK(shval_lock(v));
	long long *p = shval_data(v);
	p[0] = 99;
	dump(seg, sd, "midwrite");
	CHECK(shval_unlock(v));
	shval_close(v);
	shval_close(w);
	shval_seg_close(seg);

	/* 6. a big (no undo copy) array and a long type string */
	seg = newseg(8192);
	CHECK(shval_create(seg, "big", "1000q", SHVAL_RLOCK, NULL, 0, &v));
	shval_close(v);
	CHECK(shval_create(seg, "s", "a:c b:b c:B d:h e:H f:i g:I h:l i:L j:q "
			   "k:Q m:n o:N p:? r:f s:d t:u w:5s z:2d", SHVAL_RLOCK,
			   NULL, 0, &v));
	shval_close(v);
	dump(seg, sd, "bigtypes");
	shval_seg_close(seg);

	/* type strings */
	const char *types[] = { "q", "100d", "64s", "x:d y:d name:16s", "q d 16s",
				"  a:3c   b:?  ", "s", "2s2s", "cbBhHiIlLqQnN?fdu",
				"x:10u y:1d", "1073741824c" };
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		snprintf(nm, sizeof nm, "t%zu", i);
		put(argv[2], nm, types[i], strlen(types[i]));
	}
	/* text inputs: selector byte, then args separated by '\n'
	 * (selector 0xff: a type string up to the first '\n' comes first). */
	struct { const char *s; size_t n; } texts[] = {
		{ "\x00" "123", 4 }, { "\x01" "-5", 3 }, { "\x05" "0x7f", 5 },
		{ "\x0a" "1.5e300", 8 }, { "\x0b" "nan", 4 }, { "\x0c" "true", 5 },
		{ "\x0d" "\xc3\xa9", 3 }, { "\x0e" "z", 2 },
		{ "\x10" "hello world", 12 }, { "\x11" "1\n2\n3", 6 },
		{ "\x12" "x=1\ny=2\nname=\"a\\x00b\"", 23 },
		{ "\xff" "a:q b:3f\nb=1,2,3\na=-9", 22 },
	};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
		snprintf(nm, sizeof nm, "x%zu", i);
		put(argv[3], nm, texts[i].s, texts[i].n);
	}
	return 0;
}
