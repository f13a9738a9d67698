/* tests/test_basic.c — single-process API round trips, on local segments
 * and on a Redis segment (every case is TEST_BOTH). */
#include <stdarg.h>
#include <stdbool.h>

#include <shval.h>

#include "test.h"
#include "segkind.h"

TEST_BOTH(seg_create_open_close)
{
	const char *n = test_seg_name("a");
	shval_seg *s, *s2;
	ASSERT_ERR(shval_seg_open(n, 0, NULL, &s), -ENOENT);
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	ASSERT_ERR(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s2), -EEXIST);
	ASSERT_OK(shval_seg_open(n, 0, NULL, &s2));
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s2, &si));
	if (TEST_ON_REDIS) { /* the manual: no mode or attach counts */
		ASSERT_EQ(si.mode, 0);
		ASSERT_EQ(si.nalive, 0);
	} else {
		ASSERT_EQ(si.mode, 0600);
		ASSERT_EQ(si.nalive, 2);
	}
	ASSERT_EQ(si.creator_pid, getpid());
	shval_seg_close(s2);
	shval_seg_close(s);
	shval_seg_close(NULL);
	ASSERT_OK(shval_seg_unlink(n));
	ASSERT_ERR(shval_seg_unlink(n), -ENOENT);
}

TEST_BOTH(scalar_round_trip)
{
	shval_seg *s;
	s = test_seg_new();
	shval *a, *l, *r;
	ASSERT_OK(shval_create(s, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	ASSERT_OK(shval_create(s, "l", "q", 0, NULL, 0, &l));
	ASSERT_OK(shval_create(s, "r", "q", SHVAL_RAW, NULL, 0, &r));
	shval *vs[3] = { a, l, r };
	for (int i = 0; i < 3; i++) {
		int64_t x;
		ASSERT_OK(shval_set_i64(vs[i], -5));
		ASSERT_OK(shval_add_i64(vs[i], 12, &x));
		ASSERT_EQ(x, 7);
		ASSERT_OK(shval_get_i64(vs[i], &x));
		ASSERT_EQ(x, 7);
		int64_t e = 3;
		ASSERT_ERR(shval_cas_i64(vs[i], &e, 9), SHVAL_ECHANGED);
		ASSERT_EQ(e, 7);
		ASSERT_OK(shval_cas_i64(vs[i], &e, 9));
		ASSERT_OK(shval_get_i64(vs[i], &x));
		ASSERT_EQ(x, 9);
		char buf[64];
		ASSERT_OK(shval_to_text(vs[i], 0, buf, sizeof buf, NULL));
		ASSERT_STREQ(buf, "9");
		const char *args[] = { "-42" };
		ASSERT_OK(shval_from_text(vs[i], 1, args));
		ASSERT_OK(shval_get_i64(vs[i], &x));
		ASSERT_EQ(x, -42);
	}
	shval *f;
	ASSERT_ERR(shval_create(s, "a", "q", 0, NULL, 0, &f), SHVAL_EEXIST);
	ASSERT(f == NULL);
	ASSERT_ERR(shval_find(s, "a", "d", &f), SHVAL_ETYPE);
	ASSERT(strstr(shval_errmsg(s), "\"q\""));
	ASSERT_OK(shval_find(s, "a", "q", &f));
	shval_close(f);
	shval_close(a);
	shval_close(l);
	shval_close(r);
	test_seg_done(s);
}

TEST_BOTH(string_and_struct)
{
	shval_seg *s;
	s = test_seg_new();
	shval *str, *st;
	ASSERT_OK(shval_create(s, "s", "8s", 0, NULL, 0, &str));
	ASSERT_OK(shval_set_str(str, "a\0b\0", 4));
	char buf[16];
	size_t n;
	ASSERT_OK(shval_get_str(str, buf, sizeof buf, &n));
	ASSERT_EQ(n, 4);
	ASSERT_MEMEQ(buf, "a\0b\0", 4);
	ASSERT_ERR(shval_set_str(str, "123456789", 9), SHVAL_ETOOBIG);
	ASSERT_OK(shval_get_str(str, buf, sizeof buf, &n));
	ASSERT_EQ(n, 4);
	ASSERT_OK(shval_create(s, "p", "x:d y:d name:16s", 0, NULL, 0, &st));
	struct shval_info info;
	ASSERT_OK(shval_info(st, &info));
	ASSERT_STREQ(info.type, "x:d y:d name:16s");
	ASSERT_EQ(info.size, 40);
	const char *args[] = { "y=2.5", "name=hi there" };
	ASSERT_OK(shval_from_text(st, 2, args));
	double y;
	ASSERT_OK(shval_field_get(st, "y", &y, sizeof y, NULL));
	ASSERT(y == 2.5);
	char txt[128];
	ASSERT_OK(shval_to_text(st, 0, txt, sizeof txt, NULL));
	printf("%s\n", txt);
	shval_close(str);
	shval_close(st);
	test_seg_done(s);
}

TEST_BOTH(remove_and_stale)
{
	shval_seg *s;
	s = test_seg_new();
	shval *v;
	ASSERT_OK(shval_create(s, "v", "i", 0, NULL, 0, &v));
	ASSERT_OK(shval_remove(s, "v"));
	int64_t x;
	ASSERT_ERR(shval_get_i64(v, &x), SHVAL_ESTALE);
	ASSERT_ERR(shval_set_i64(v, 1), SHVAL_ESTALE);
	ASSERT_ERR(shval_remove(s, "v"), SHVAL_ENOTFOUND);
	shval *v2;
	ASSERT_OK(shval_create(s, "v", "i", 0, NULL, 0, &v2));
	ASSERT_ERR(shval_get_i64(v, &x), SHVAL_ESTALE);
	ASSERT_OK(shval_get_i64(v2, &x));
	shval_close(v);
	shval_close(v2);
	test_seg_done(s);
}

TEST_BOTH(many_values)
{
	shval_seg *s;
	s = test_seg_new();
	char name[32];
	/* a round trip per call remotely: 2000 (listing 1111 under "v1") */
	const int nv = TEST_ON_REDIS ? 2000 : 20000;
	for (int i = 0; i < nv; i++) {
		shval *v;
		snprintf(name, sizeof name, "v%d", i);
		ASSERT_OK(shval_create(s, name, "q", SHVAL_ATOMIC, NULL, 0, &v));
		ASSERT_OK(shval_set_i64(v, i));
		shval_close(v);
	}
	for (int i = 0; i < nv; i++) {
		shval *v;
		int64_t x;
		snprintf(name, sizeof name, "v%d", i);
		ASSERT_OK(shval_find(s, name, NULL, &v));
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, i);
		shval_close(v);
	}
	uint64_t cur = 0;
	struct shval_info info;
	int count = 0;
	while (shval_seg_next(s, &cur, "v1", &info) == 0)
		count++;
	ASSERT_EQ(count, TEST_ON_REDIS ? 1111 : 11111);
	test_seg_done(s);
}

/* Header promises: a lock/unlock that changes nothing leaves the version
 * alone; a change moves it; float CAS compares and swaps. */
TEST_BOTH(version_moves_only_on_change_and_float_cas)
{
	shval_seg *s;
	s = test_seg_new();
	shval *d;
	ASSERT_OK(shval_create(s, "d", "d", 0, NULL, 0, &d));
	uint64_t v0 = shval_value_version(d);
	ASSERT_OK(shval_lock(d));
	ASSERT_OK(shval_unlock(d));
	ASSERT_UEQ(shval_value_version(d), v0);
	double e = 0;
	ASSERT_OK(shval_cas_f64(d, &e, 1.5));
	ASSERT(shval_value_version(d) != v0);
	e = 7;
	ASSERT_ERR(shval_cas_f64(d, &e, 2.5), SHVAL_ECHANGED);
	ASSERT(e == 1.5);
	double x;
	ASSERT_OK(shval_get_f64(d, &x));
	ASSERT(x == 1.5);
	shval_close(d);
	test_seg_done(s);
}

TEST_MAIN()
