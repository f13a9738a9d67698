/*
 * tests/values_util.h — helpers of the value tests (test_values, test_api_checks):
 * modes, the three kinds of segment, snapshots for "unchanged" checks.
 */
#ifndef SHVAL_TEST_VALUES_UTIL_H
#define SHVAL_TEST_VALUES_UTIL_H

/* Not every test file uses every helper. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

#include "segkind.h"

/* ---- helpers ---- */

static const unsigned all_modes[] = { SHVAL_RLOCK, SHVAL_LOCK, SHVAL_RAW,
				      SHVAL_ATOMIC };
static const char *mode_name(unsigned m)
{
	return m == SHVAL_RLOCK ? "rlock"
	       : m == SHVAL_LOCK ? "lock"
	       : m == SHVAL_RAW	 ? "raw"
				 : "atomic";
}

/* The three kinds of local segments: 0 anonymous, 1 /dev/shm, 2 file:;
 * on a case's @redis run (tests/segkind.h) one kind: a Redis segment. */
#define NKINDS_LOCAL 3
#define NKINDS (TEST_ON_REDIS ? 1 : NKINDS_LOCAL)
static char kind_path[NKINDS_LOCAL][300];

static shval_seg *open_kind(int k)
{
	shval_seg *s = NULL;
	if (TEST_ON_REDIS) {
		snprintf(kind_path[k], sizeof kind_path[k], "%s",
			 test_seg_name("kind"));
		ASSERT_OK(shval_seg_open(kind_path[k], SHVAL_CREATE | SHVAL_EXCL,
					 NULL, &s));
	} else if (k == 0) {
		ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &s));
	} else if (k == 1) {
		snprintf(kind_path[k], sizeof kind_path[k], "%s",
			 test_segname("kind1"));
		ASSERT_OK(shval_seg_open(kind_path[k], SHVAL_CREATE | SHVAL_EXCL,
					 NULL, &s));
	} else {
		snprintf(kind_path[k], sizeof kind_path[k],
			 "file:/tmp/shvaltest.%d.kind2", (int)getpid());
		unlink(kind_path[k] + 5);
		ASSERT_OK(shval_seg_open(kind_path[k], SHVAL_CREATE | SHVAL_EXCL,
					 NULL, &s));
	}
	return s;
}

static void close_kind(int k, shval_seg *s)
{
	shval_seg_close(s);
	if (k > 0 || TEST_ON_REDIS)
		ASSERT_OK(shval_seg_unlink(kind_path[k]));
}

/* Raw bytes of a value, for "unchanged" checks. */
static void snap(shval *v, unsigned char *buf, size_t cap)
{
	struct shval_info in;
	ASSERT_OK(shval_info(v, &in));
	ASSERT_LE(in.size, cap);
	memset(buf, 0xAA, cap);
	ASSERT_OK(shval_read(v, buf, cap));
}

#define ASSERT_UNCHANGED(v, before)                                        \
	do {                                                               \
		unsigned char now_[512];                                   \
		snap((v), now_, sizeof now_);                              \
		struct shval_info in_;                                     \
		ASSERT_OK(shval_info((v), &in_));                          \
		ASSERT_MEMEQ(now_, (before), in_.size);                    \
	} while (0)

#pragma GCC diagnostic pop

#endif
