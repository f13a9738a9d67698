/*
 * tests/segkind.h — the segments of a TEST_BOTH case (tests/test.h): on
 * the case's local run a local segment, on its @redis run a segment on a
 * redis-server of the case's own (tests/redis_util.h: 127.0.0.1, a free
 * port, a directory of the build tree).
 *
 * One server per @redis run, started at the first test_seg_*() call and
 * stopped when the process that started it exits (atexit; a failed case
 * aborts instead: the harness then kills the server with the case's
 * process group, and the next run removes the directory).  A server per
 * case, not one shared by a ctest fixture: cases stay independent (no
 * prefix clashes, no state left by a failed case, -j runs need no
 * coordination), at ~20 ms of start-up each.  Forked children use the
 * parent's server (the state is inherited); a child must not be the first
 * to ask for it.
 *
 *   test_seg_new()          a fresh segment nobody else knows: anonymous
 *                           locally, a new prefix on the server remotely
 *   test_seg_name(what)     a name for shval_seg_open/unlink: the local
 *                           test_segname(what), or redis://127.0.0.1:P/what
 *   test_seg_name_opts(what, opts)  the same with URL options remotely
 *                           ("lease_ms=500"; ignored locally)
 *   test_seg_done(seg)      close a test_seg_new() segment
 */
#ifndef SHVAL_TEST_SEGKIND_H
#define SHVAL_TEST_SEGKIND_H

#include <stdarg.h>
#include <stdbool.h>

#include "redis_util.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

static struct tredis test_redis_;
static pid_t test_redis_owner_;

static void test_redis_atexit_(void)
{
	if (test_redis_owner_ == getpid() && test_redis_.pid > 0)
		tredis_stop(&test_redis_);
}

/* The case's server (started at first use). */
static struct tredis *test_redis(void)
{
	ASSERT(TEST_ON_REDIS);
	if (!test_redis_owner_) {
		tredis_start(&test_redis_, "unused", NULL);
		test_redis_owner_ = getpid();
		atexit(test_redis_atexit_);
	}
	return &test_redis_;
}

static const char *test_seg_name_opts(const char *what, const char *opts)
{
	if (!TEST_ON_REDIS)
		return test_segname(what);
	for (const char *p = what; *p; p++)
		if (!(p[0] == '.' || p[0] == '_' || p[0] == '-' ||
		      (p[0] >= '0' && p[0] <= '9') ||
		      ((p[0] | 0x20) >= 'a' && (p[0] | 0x20) <= 'z')))
			FAIL("test_seg_name(\"%s\"): not a Redis prefix", what);
	struct tredis *t = test_redis();
	static char buf[8][300];
	static int i;
	char *b = buf[i++ & 7];
	snprintf(b, sizeof buf[0], "redis://127.0.0.1:%d/%s%s%s", t->port,
		 what, opts && opts[0] ? "?" : "", opts ? opts : "");
	return b;
}

static const char *test_seg_name(const char *what)
{
	return test_seg_name_opts(what, NULL);
}

static shval_seg *test_seg_new(void)
{
	shval_seg *s = NULL;
	if (!TEST_ON_REDIS) {
		ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
		return s;
	}
	static int n;
	char what[32];
	snprintf(what, sizeof what, "anon%d.%d", (int)getpid(), n++);
	ASSERT_OK(shval_seg_open(test_seg_name(what),
				 SHVAL_CREATE | SHVAL_EXCL, NULL, &s));
	return s;
}

/* The server's keys die with it: no unlink needed for a new segment. */
static void test_seg_done(shval_seg *s)
{
	ASSERT_OK(shval_seg_close(s));
}

#pragma GCC diagnostic pop
#endif
