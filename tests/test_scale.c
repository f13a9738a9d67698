/*
 * tests/test_scale.c — scale: one million values in one segment.
 */
#include <shval.h>

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
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

/* ---- one million values ---- */

TEST(one_million_values)
{
	enum { N = 1000000 };
	const char *n = test_segname("million");
	shval_seg *s;
	ASSERT_OK(shval_seg_open(n, SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	char name[32];
	double t0 = now_s();
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof name, "key%013d", i); /* 16 bytes */
		int64_t init = (int64_t)i * 7;
		shval *v;
		int r = shval_create(s, name, "q", SHVAL_ATOMIC, &init, 8, &v);
		if (r)
			FAIL("create #%d: %s (%s)", i, shval_strerror(r), shval_errmsg(s));
		shval_close(v);
	}
	double t1 = now_s();
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(s, &si));
	ASSERT_EQ(si.nvalues, N);
	unsigned seed = 12345;
	for (int k = 0; k < 100000; k++) {
		int i = (int)(rand_r(&seed) % N);
		snprintf(name, sizeof name, "key%013d", i);
		shval *v;
		int64_t x;
		ASSERT_OK(shval_find(s, name, "q", &v));
		ASSERT_OK(shval_get_i64(v, &x));
		ASSERT_EQ(x, (int64_t)i * 7);
		shval_close(v);
	}
	shval *v;
	ASSERT_ERR(shval_find(s, "key0000001000000", NULL, &v), SHVAL_ENOTFOUND);
	double t2 = now_s();
	/* another process finds them too */
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		shval_seg *cs;
		ASSERT_OK(shval_seg_open(n, SHVAL_RDONLY, NULL, &cs));
		for (int i = 0; i < N; i += 997) {
			snprintf(name, sizeof name, "key%013d", i);
			int64_t x;
			ASSERT_OK(shval_find(cs, name, "q", &v));
			ASSERT_OK(shval_get_i64(v, &x));
			ASSERT_EQ(x, (int64_t)i * 7);
			shval_close(v);
		}
		shval_seg_close(cs);
		_exit(0);
	}
	test_wait_ok(pid);
	uint64_t cur = 0;
	struct shval_info in;
	long cnt = 0;
	while (shval_seg_next(s, &cur, "key00000000000", &in) == 0)
		cnt++;
	ASSERT_EQ(cnt, 100);
	double t3 = now_s();
	printf("1M values: create %.2f s, 100k finds %.2f s, check %.2f s; "
	       "used %llu bytes = %.1f bytes/value, size %llu\n",
	       t1 - t0, t2 - t1, t3 - t2, (unsigned long long)si.used,
	       (double)si.used / 1e6, (unsigned long long)si.size);
	shval_seg_close(s);
	ASSERT_OK(shval_seg_unlink(n));
}

TEST_MAIN()
