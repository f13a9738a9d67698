/*
 * tests/test_api_checks.c — what the API refuses, and how it says so: type
 * mismatches, bad type strings, bad value and segment names, unknown flags,
 * error names; shval_new in a fork child; bool bytes checked on every
 * write path.  The value-level cases (TEST_BOTH) also run on a Redis
 * segment; segment names, flags and shval_new are local matters.
 */
#include <shval.h>

#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "test.h"
#include "values_util.h"

/* ---- type mismatch ---- */

TEST_BOTH(type_mismatch)
{
	shval_seg *s;
	s = test_seg_new();
	shval *v, *w;
	ASSERT_OK(shval_create(s, "pt", " x:d   y:d ", 0, NULL, 0, &v));
	/* any spelling of the same type matches */
	ASSERT_OK(shval_find(s, "pt", "x:d y:d", &w));
	shval_close(w);
	ASSERT_OK(shval_find(s, "pt", "  x:d y:d", &w));
	shval_close(w);
	ASSERT_OK(shval_find(s, "pt", NULL, &w));
	shval_close(w);
	/* another type: ETYPE with both types in the message */
	w = (shval *)1;
	ASSERT_ERR(shval_find(s, "pt", "x:d y:f", &w), SHVAL_ETYPE);
	ASSERT(w == NULL);
	ASSERT(strstr(shval_errmsg(s), "x:d y:d"));
	ASSERT(strstr(shval_errmsg(s), "x:d y:f"));
	ASSERT_ERR(shval_find(s, "pt", "y:d x:d", &w), SHVAL_ETYPE);
	ASSERT_ERR(shval_find(s, "pt", "d d", &w), SHVAL_ETYPE);
	ASSERT_ERR(shval_find(s, "pt", "16s", &w), SHVAL_ETYPE);
	/* a bad type is EBADTYPE even though the value exists */
	ASSERT_ERR(shval_find(s, "pt", "x:d y:", &w), SHVAL_EBADTYPE);
	/* find_or_create: same type and mode finds it */
	bool created = true;
	ASSERT_OK(shval_find_or_create(s, "pt", "x:d y:d", SHVAL_RLOCK, NULL, 0,
				       &w, &created));
	ASSERT(!created);
	shval_close(w);
	ASSERT_ERR(shval_find_or_create(s, "pt", "x:f y:d", SHVAL_RLOCK, NULL, 0,
					&w, &created),
		   SHVAL_ETYPE);
	ASSERT(w == NULL);
	ASSERT_ERR(shval_find_or_create(s, "pt", "x:d y:d", SHVAL_LOCK, NULL, 0,
					&w, &created),
		   SHVAL_EMODE);
	ASSERT_ERR(shval_find_or_create(s, "pt", "x:d y:d", SHVAL_RAW, NULL, 0,
					&w, NULL),
		   SHVAL_EMODE);
	/* creating a second one by that name: EEXIST */
	ASSERT_ERR(shval_create(s, "pt", "q", 0, NULL, 0, &w), SHVAL_EEXIST);
	ASSERT(strstr(shval_errmsg(s), "pt"));
	/* typed access of the wrong kind */
	shval *q;
	ASSERT_OK(shval_create(s, "q", "q", SHVAL_ATOMIC, NULL, 0, &q));
	size_t len;
	char buf[8];
	ASSERT_ERR(shval_get_str(q, buf, sizeof buf, &len), SHVAL_EMODE);
	ASSERT_ERR(shval_set_str(q, "a", 1), SHVAL_EMODE);
	int64_t x;
	ASSERT_ERR(shval_get_i64(v, &x), SHVAL_EMODE);
	shval_close(q);
	shval_close(v);
	/* missing values */
	ASSERT_ERR(shval_find(s, "missing", NULL, &w), SHVAL_ENOTFOUND);
	ASSERT(strstr(shval_errmsg(s), "missing"));
	ASSERT_ERR(shval_remove(s, "missing"), SHVAL_ENOTFOUND);
	test_seg_done(s);
}

/* ---- bad type strings ---- */

TEST_BOTH(bad_type_strings)
{
	shval_seg *s;
	s = test_seg_new();
	static const struct {
		const char *type, *where;
	} bad[] = {
		{ "", "position 0" },
		{ "   ", "position" },
		{ "x", "position 0" },
		{ "q x", "position 2" },
		{ "qqx", "position 2" },
		{ "0d", "position 0" },
		{ "01d", "position 0" },
		{ "<q", "position 0" },
		{ "q <d", "position 2" },
		{ "x:d d", "position" },
		{ "x:d x:q", "position 4" },
		{ "x:d y:", "position 6" },
		{ ":d", "position 0" },
		{ "16", "position" },
		{ "x:d,y:d", "position 3" },
		{ "4294967296d", "position" },
		{ "99999999999999999999q", "position" },
		{ "q\x01", "position 1" },
		{ "q\xff", "position 1" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		shval *v = (shval *)1;
		char name[16];
		snprintf(name, sizeof name, "t%zu", i);
		ASSERT_ERR(shval_create(s, name, bad[i].type, 0, NULL, 0, &v),
			   SHVAL_EBADTYPE);
		ASSERT(v == NULL);
		const char *msg = shval_errmsg(s);
		if (!strstr(msg, bad[i].where))
			FAIL("type \"%s\": message \"%s\" does not say \"%s\"",
			     bad[i].type, msg, bad[i].where);
		ASSERT(strchr(msg, '\n') == NULL);
		ASSERT_ERR(shval_find_or_create(s, name, bad[i].type, 0, NULL, 0,
						&v, NULL),
			   SHVAL_EBADTYPE);
		ASSERT(strstr(shval_errmsg(s), "position"));
		ASSERT_ERR(shval_find(s, name, bad[i].type, &v), SHVAL_EBADTYPE);
		char canon[64];
		ASSERT_ERR(shval_type_canonical(bad[i].type, canon, sizeof canon, NULL),
			   SHVAL_EBADTYPE);
		msg = shval_errmsg(NULL);
		if (!strstr(msg, bad[i].where))
			FAIL("canonical \"%s\": message \"%s\" does not say \"%s\"",
			     bad[i].type, msg, bad[i].where);
		/* nothing was created */
		ASSERT_ERR(shval_find(s, name, NULL, &v), SHVAL_ENOTFOUND);
	}
	shval *v;
	ASSERT_ERR(shval_create(s, "nulltype", NULL, 0, NULL, 0, &v), SHVAL_EBADTYPE);
	ASSERT(shval_errmsg(s)[0]);
	/* canonical forms and sizes */
	char canon[64];
	size_t size;
	ASSERT_OK(shval_type_canonical("  a:b   b:q ", canon, sizeof canon, &size));
	ASSERT_STREQ(canon, "a:b b:q");
	ASSERT_EQ(size, 16);
	ASSERT_ERR(shval_type_canonical("a:b b:q", canon, 4, &size), SHVAL_ETOOBIG);
	test_seg_done(s);
}

/* ---- names ---- */

TEST_BOTH(bad_value_names)
{
	shval_seg *s;
	s = test_seg_new();
	char n256[300], n255[300];
	memset(n256, 'a', 256);
	n256[256] = 0;
	memset(n255, 'b', 255);
	n255[255] = 0;
	const char *bad[] = { "", "a b", "a\tb", "a\nb", "\x01", "x\x7f", " ",
			      "trailing ", n256 };
	for (size_t i = 0; i <= sizeof bad / sizeof bad[0]; i++) {
		const char *n = i < sizeof bad / sizeof bad[0] ? bad[i] : NULL;
		shval *v = (shval *)1;
		ASSERT_ERR(shval_create(s, n, "q", 0, NULL, 0, &v), SHVAL_EBADNAME);
		ASSERT(v == NULL);
		ASSERT(shval_errmsg(s)[0]);
		ASSERT(strchr(shval_errmsg(s), '\n') == NULL);
		ASSERT_ERR(shval_find(s, n, NULL, &v), SHVAL_EBADNAME);
		ASSERT_ERR(shval_find_or_create(s, n, "q", 0, NULL, 0, &v, NULL),
			   SHVAL_EBADNAME);
		ASSERT_ERR(shval_remove(s, n), SHVAL_EBADNAME);
	}
	/* the limits, UTF-8 and punctuation are fine */
	const char *good[] = { n255, "x", "température", "a/b:c=d[0]", "日本",
			       "~!@#$%^&*()" };
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		shval *v, *w;
		ASSERT_OK(shval_create(s, good[i], "q", 0, NULL, 0, &v));
		ASSERT_OK(shval_find(s, good[i], "q", &w));
		struct shval_info in;
		ASSERT_OK(shval_info(w, &in));
		ASSERT_STREQ(in.name, good[i]);
		shval_close(v);
		shval_close(w);
		ASSERT_OK(shval_remove(s, good[i]));
	}
	test_seg_done(s);
}

TEST(bad_segment_names)
{
	char n201[300], n200[300];
	n201[0] = n200[0] = '/';
	memset(n201 + 1, 'a', 201);
	n201[202] = 0;
	memset(n200 + 1, 'c', 200);
	n200[201] = 0;
	/* unique: the pid is part of the 200-character name */
	char pid[16];
	int pl = snprintf(pid, sizeof pid, "%d", (int)getpid());
	memcpy(n200 + 1, pid, (size_t)pl);
	const char *bad[] = { "", "noslash", "/", "//", "/a/b", "/a b", "/.", "/..",
			      "/é", "/a\n", "/a*", n201, "file:",
			      "file:/tmp/somedir/", "shm:/x", "\x01" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		shval_seg *s = (shval_seg *)1;
		ASSERT_ERR(shval_seg_open(bad[i], SHVAL_CREATE, NULL, &s),
			   SHVAL_EBADNAME);
		ASSERT(s == NULL);
		ASSERT(shval_errmsg(NULL)[0]);
		ASSERT(strchr(shval_errmsg(NULL), '\n') == NULL);
		ASSERT_ERR(shval_seg_open(bad[i], 0, NULL, &s), SHVAL_EBADNAME);
		ASSERT_ERR(shval_seg_unlink(bad[i]), SHVAL_EBADNAME);
	}
	ASSERT_ERR(shval_seg_unlink(NULL), SHVAL_EBADNAME);
	/* the longest name works */
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n200, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	ASSERT_STREQ(shval_seg_name(s), n200);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n200));
	ASSERT_ERR(shval_seg_unlink(n200), -ENOENT);
}

/* ---- flags and options ---- */

TEST(unknown_flags)
{
	const char *n = test_segname("flags");
	shval_seg *s = (shval_seg *)1;
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE | 0x80u, NULL, &s), -EINVAL);
	ASSERT(s == NULL);
	ASSERT(shval_errmsg(NULL)[0]);
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE | 0x100u, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, 0x80000000u, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, SHVAL_EXCL, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, SHVAL_TEMP, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE | SHVAL_RDONLY, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(NULL, 0, NULL, &s), -EINVAL);
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, NULL, NULL), -EINVAL);
	/* bad options */
	shval_seg_opts o = { 0 };
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, &o, &s), -EINVAL);
	o.struct_size = sizeof o;
	o.initial_size = 1 << 20;
	o.max_size = 1 << 16;
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, &o, &s), -EINVAL);
	o.initial_size = 0;
	o.max_size = 1ull << 40;
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, &o, &s), -EINVAL);
	o.max_size = 0;
	o.mode = 010000;
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE, &o, &s), -EINVAL);
	/* none of that created anything */
	struct stat st;
	char path[256];
	snprintf(path, sizeof path, "/dev/shm%s", n);
	ASSERT(stat(path, &st) != 0 && errno == ENOENT);

	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE, NULL, &s));
	shval *v = (shval *)1;
	ASSERT_ERR(shval_create(s, "v", "q", SHVAL_CREATE, NULL, 0, &v), -EINVAL);
	ASSERT(v == NULL);
	ASSERT(shval_errmsg(s)[0]);
	ASSERT_ERR(shval_create(s, "v", "q", 0x400u, NULL, 0, &v), -EINVAL);
	ASSERT_ERR(shval_create(s, "v", "q", SHVAL_ATOMIC | 0x1000u, NULL, 0, &v),
		   -EINVAL);
	ASSERT_ERR(shval_find_or_create(s, "v", "q", 0x400u, NULL, 0, &v, NULL),
		   -EINVAL);
	ASSERT_ERR(shval_find(s, "v", NULL, &v), SHVAL_ENOTFOUND);
	ASSERT_OK(shval_create(s, "v", "q", 0, NULL, 0, &v));
	char buf[64];
	ASSERT_ERR(shval_to_text(v, 0x2u, buf, sizeof buf, NULL), -EINVAL);
	shval_close(v);
	shval_seg *s2 = (shval_seg *)1;
	ASSERT_ERR(shval_seg_open_fd(shval_seg_fd(s), SHVAL_CREATE, &s2), -EINVAL);
	ASSERT(s2 == NULL);
	ASSERT_ERR(shval_seg_open_fd(shval_seg_fd(s), SHVAL_TEMP, &s2), -EINVAL);
	ASSERT_ERR(shval_seg_open_fd(-1, 0, &s2), -EBADF);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

TEST(error_names)
{
	static const int codes[] = {
#define X(n, v, t) SHVAL_##n,
		SHVAL_ERRORS(X)
#undef X
	};
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		ASSERT(strncmp(shval_errname(codes[i]), "SHVAL_E", 7) == 0);
		ASSERT(strncmp(shval_strerror(codes[i]), shval_errname(codes[i]),
			       strlen(shval_errname(codes[i]))) == 0);
	}
	ASSERT_STREQ(shval_errname(-ENOENT), "ENOENT");
	ASSERT(strncmp(shval_strerror(-ENOSPC), "ENOSPC: ", 8) == 0);
	ASSERT_STREQ(shval_errname(-30899), "SHVAL_E?");
	ASSERT_STREQ(shval_errname(12345), "SHVAL_E?");
	ASSERT_EQ(shval_version(), SHVAL_VERSION_HEX);
}

/* ---- shval_new ---- */

TEST(shval_new_in_fork_child)
{
	/* every mode */
	shval *vs[4];
	for (size_t m = 0; m < 4; m++) {
		ASSERT_OK(shval_new("q", all_modes[m], NULL, 0, &vs[m]));
		ASSERT_OK(shval_set_i64(vs[m], (int64_t)m + 1));
	}
	shval *str;
	ASSERT_ERR(shval_new("16s", 0, "\x03\0\0\0abc", 7, &str), SHVAL_ESIZE);
	unsigned char init[20] = { 3, 0, 0, 0, 'a', 'b', 'c' };
	ASSERT_OK(shval_new("16s", 0, init, sizeof init, &str));
	shval_seg *anon, *anon2;
	ASSERT_OK(shval_anon_segment(&anon));
	ASSERT_OK(shval_anon_segment(&anon2));
	ASSERT(anon == anon2);
	ASSERT_EQ(shval_segment(vs[0]), anon);
	struct shval_info in;
	ASSERT_OK(shval_info(vs[0], &in));
	char prefix[64];
	snprintf(prefix, sizeof prefix, "anon.%d.", (int)getpid());
	ASSERT(strncmp(in.name, prefix, strlen(prefix)) == 0);

	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		/* the child sees and changes the parent's values */
		for (size_t m = 0; m < 4; m++) {
			int64_t x;
			ASSERT_OK(shval_get_i64(vs[m], &x));
			ASSERT_EQ(x, (int64_t)m + 1);
			ASSERT_OK(shval_add_i64(vs[m], 100, NULL));
		}
		char b[32];
		size_t len;
		ASSERT_OK(shval_get_str(str, b, sizeof b, &len));
		ASSERT_EQ(len, 3);
		/* and makes new ones in the same anonymous segment */
		for (size_t m = 0; m < 4; m++) {
			shval *c;
			ASSERT_OK(shval_new("d", all_modes[m], NULL, 0, &c));
			ASSERT_EQ(shval_segment(c), anon);
			ASSERT_OK(shval_set_f64(c, 0.5 + (double)m));
			shval_close(c);
		}
		/* a grandchild too */
		pid_t g = fork();
		ASSERT(g >= 0);
		if (g == 0) {
			shval *c;
			ASSERT_OK(shval_new("i", SHVAL_LOCK, NULL, 0, &c));
			ASSERT_OK(shval_set_i64(c, -9));
			ASSERT_OK(shval_add_i64(vs[0], 1000, NULL));
			_exit(0);
		}
		test_wait_ok(g);
		_exit(0);
	}
	test_wait_ok(pid);
	for (size_t m = 0; m < 4; m++) {
		int64_t x;
		ASSERT_OK(shval_get_i64(vs[m], &x));
		ASSERT_EQ(x, (int64_t)m + 101 + (m == 0 ? 1000 : 0));
	}
	/* the child's values are in the parent's anonymous segment */
	snprintf(prefix, sizeof prefix, "anon.%d.", (int)pid);
	uint64_t cur = 0;
	int n = 0;
	while (shval_seg_next(anon, &cur, prefix, &in) == 0) {
		shval *c;
		double d;
		ASSERT_OK(shval_find(anon, in.name, "d", &c));
		ASSERT_OK(shval_get_f64(c, &d));
		ASSERT(d == 0.5 || d == 1.5 || d == 2.5 || d == 3.5);
		shval_close(c);
		n++;
	}
	ASSERT_EQ(n, 4);
	/* and the grandchild's */
	cur = 0;
	n = 0;
	while (shval_seg_next(anon, &cur, "anon.", &in) == 0)
		if (strcmp(in.type, "i") == 0) {
			shval *c;
			int64_t x;
			ASSERT_OK(shval_find(anon, in.name, "i", &c));
			ASSERT_OK(shval_get_i64(c, &x));
			ASSERT_EQ(x, -9);
			ASSERT_EQ(in.mode, SHVAL_LOCK);
			shval_close(c);
			n++;
		}
	ASSERT_EQ(n, 1);
	for (size_t m = 0; m < 4; m++)
		shval_close(vs[m]);
	shval_close(str);
}

/* A child that first uses shval_new after fork gets its own segment. */
TEST(shval_new_first_in_child)
{
	int p[2];
	ASSERT_EQ(pipe(p), 0);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval *v;
		ASSERT_OK(shval_new("q", SHVAL_ATOMIC, NULL, 0, &v));
		ASSERT_OK(shval_set_i64(v, 5));
		shval_seg *a;
		ASSERT_OK(shval_anon_segment(&a));
		ASSERT_EQ(write(p[1], "x", 1), 1);
		_exit(0);
	}
	char c;
	ASSERT_EQ(read(p[0], &c, 1), 1);
	test_wait_ok(pid);
	shval_seg *a;
	ASSERT_OK(shval_anon_segment(&a));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(a, &si));
	ASSERT_EQ(si.nvalues, 0);
	ASSERT_EQ(si.creator_pid, getpid());
}

/* One validator for every writer: a bool written through a field or an
 * array range is checked like a whole-value write, and verify agrees. */
TEST_BOTH(bool_bytes_checked_on_every_path)
{
	shval_seg *s;
	shval *v, *a;
	s = test_seg_new();
	ASSERT_OK(shval_create(s, "st", "flag:? n:q", 0, NULL, 0, &v));
	ASSERT_OK(shval_create(s, "arr", "4?", 0, NULL, 0, &a));
	unsigned char two = 2, one = 1, bools[3] = { 1, 2, 0 };
	ASSERT_ERR(shval_field_set(v, "flag", &two, 1), SHVAL_ERANGE);
	ASSERT(strstr(shval_errmsg(s), "flag"));
	ASSERT_OK(shval_field_set(v, "flag", &one, 1));
	ASSERT_ERR(shval_array_set(a, 1, 3, bools), SHVAL_ERANGE);
	ASSERT_OK(shval_array_set(a, 0, 1, &one));
	unsigned char got[4];
	ASSERT_OK(shval_array_get(a, 0, 4, got));
	ASSERT_EQ(got[0], 1);
	ASSERT_EQ(got[2], 0);
	size_t n = 99;
	ASSERT_OK(shval_seg_verify(s, SHVAL_VERIFY_DEEP, NULL, NULL, &n));
	ASSERT_EQ(n, 0);
	shval_close(v);
	shval_close(a);
	test_seg_done(s);
}

TEST_MAIN()
