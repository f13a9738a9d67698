/* tests/test_threads.c — handles shared by threads of one process (the
 * case ThreadSanitizer can see: it does not follow memory across
 * processes).  Also on a Redis segment (calls on one handle serialised,
 * a section's staged writes seen by its own thread only), with fewer
 * operations and the section by read and write instead of shval_data. */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

#include <shval.h>

#include "test.h"
#include "segkind.h"

typedef struct { int64_t x, y; } xy;
static shval *atom, *lockd, *st, *done;
enum { NT = 4 };
#define OPS (TEST_ON_REDIS ? 300 : 20000)

static void *writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < OPS; i++) {
		ASSERT_OK(shval_add_i64(atom, 1, NULL));
		ASSERT_OK(shval_add_i64(lockd, 1, NULL));
		ASSERT_OK(shval_lock(st));
		if (TEST_ON_REDIS) { /* staged: this thread reads its own */
			xy v;
			ASSERT_OK(shval_read(st, &v, sizeof v));
			v.x++;
			v.y = 2 * v.x;
			ASSERT_OK(shval_write(st, &v, sizeof v));
		} else {
			xy *p = shval_data(st);
			p->x++;
			p->y = 2 * p->x;
		}
		ASSERT_OK(shval_unlock(st));
	}
	return NULL;
}

static void *reader(void *arg)
{
	long *n = arg;
	int64_t d = 0;
	while (shval_get_i64(done, &d) == 0 && d == 0) {
		xy v;
		ASSERT_OK(shval_read(st, &v, sizeof v));
		if (v.y != 2 * v.x)
			FAIL("torn: %lld %lld", (long long)v.x, (long long)v.y);
		++*n;
	}
	return NULL;
}

TEST_BOTH(threads_share_handles)
{
	shval_seg *s = test_seg_new();
	ASSERT_OK(shval_create(s, "atom", "q", SHVAL_ATOMIC, NULL, 0, &atom));
	ASSERT_OK(shval_create(s, "locked", "q", 0, NULL, 0, &lockd));
	ASSERT_OK(shval_create(s, "xy", "x:q y:q", 0, NULL, 0, &st));
	ASSERT_OK(shval_create(s, "done", "i", SHVAL_ATOMIC, NULL, 0, &done));
	pthread_t w[NT], r;
	long reads = 0;
	ASSERT_EQ(pthread_create(&r, NULL, reader, &reads), 0);
	for (int i = 0; i < NT; i++)
		ASSERT_EQ(pthread_create(&w[i], NULL, writer, NULL), 0);
	for (int i = 0; i < NT; i++)
		pthread_join(w[i], NULL);
	ASSERT_OK(shval_set_i64(done, 1));
	pthread_join(r, NULL);
	int64_t x;
	ASSERT_OK(shval_get_i64(atom, &x));
	ASSERT_EQ(x, NT * OPS);
	ASSERT_OK(shval_get_i64(lockd, &x));
	ASSERT_EQ(x, NT * OPS);
	xy v;
	ASSERT_OK(shval_read(st, &v, sizeof v));
	ASSERT_EQ(v.x, NT * OPS);
	ASSERT_EQ(v.y, 2 * NT * OPS);
	printf("%ld consistent reads\n", reads);
	shval_close(atom);
	shval_close(lockd);
	shval_close(st);
	shval_close(done);
	test_seg_done(s);
}

TEST_MAIN()
