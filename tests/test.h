/*
 * tests/test.h — the tiny test harness (libuv-runner style).
 *
 * A test file defines cases with TEST(name) { ... } and ends with
 * TEST_MAIN(). The binary runs one case when given its name
 * (`test_x case`), which is how ctest registers each case as its own
 * process with its own timeout; with no argument it runs every case, each
 * in a forked child with a timeout of SHVAL_TEST_TIMEOUT seconds (default
 * 60; under ctest, the CMake cache variable of that name, 120) times
 * SHVAL_TEST_TIMEOUT_MULTIPLIER (for sanitizer builds).
 *
 * Asserts print both operands and are never compiled out.  SKIP("why")
 * ends a case as skipped (exit 77, which ctest reports as skipped).
 *
 * Segment kinds: TEST(name) runs on local segments only.  TEST_BOTH(name)
 * registers the case twice, as "name" (local) and "name@redis" (ctest:
 * test_x.name and test_x.name@redis); the case body is the same and asks
 * tests/segkind.h for its segments (test_seg_new(), test_seg_name()),
 * which hands out local segments or segments on a redis-server of the
 * case's own.  test_kind_ says which variant runs.  What runs where and
 * why: tests/README.md.
 */
#ifndef SHVAL_TEST_H
#define SHVAL_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*test_fn)(void);
enum test_kind { TEST_LOCAL, TEST_REDIS };
struct test_case { const char *name; test_fn fn; enum test_kind kind; };
/* The kind of segment this run of the case uses (set before it starts). */
static enum test_kind test_kind_ = TEST_LOCAL;

#define TEST_MAX 256
static struct test_case test_cases_[TEST_MAX];
static int test_ncases_;

#define TEST(name)                                                        \
	static void test_##name(void);                                    \
	__attribute__((constructor)) static void test_reg_##name(void)    \
	{                                                                 \
		if (test_ncases_ < TEST_MAX)                              \
			test_cases_[test_ncases_++] = (struct test_case){ \
				#name, test_##name, TEST_LOCAL };         \
	}                                                                 \
	static void test_##name(void)

/* The same case on a local and on a Redis segment ("name@redis"). */
#define TEST_BOTH(name)                                                   \
	static void test_##name(void);                                    \
	__attribute__((constructor)) static void test_reg_##name(void)    \
	{                                                                 \
		if (test_ncases_ + 1 < TEST_MAX) {                        \
			test_cases_[test_ncases_++] = (struct test_case){ \
				#name, test_##name, TEST_LOCAL };         \
			test_cases_[test_ncases_++] = (struct test_case){ \
				#name "@redis", test_##name, TEST_REDIS }; \
		}                                                         \
	}                                                                 \
	static void test_##name(void)

/* Inside a TEST_BOTH case: true on its Redis run. */
#define TEST_ON_REDIS (test_kind_ == TEST_REDIS)

#define FAIL(...)                                                          \
	do {                                                               \
		fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);      \
		fprintf(stderr, __VA_ARGS__);                              \
		fprintf(stderr, "\n");                                     \
		fflush(stderr);                                            \
		abort();                                                   \
	} while (0)

#define SKIP(...)                                                          \
	do {                                                               \
		fprintf(stderr, "SKIP: ");                                 \
		fprintf(stderr, __VA_ARGS__);                              \
		fprintf(stderr, "\n");                                     \
		exit(77);                                                  \
	} while (0)

#define ASSERT(cond)                                                       \
	do {                                                               \
		if (!(cond))                                               \
			FAIL("assertion failed: %s", #cond);               \
	} while (0)

#define ASSERT_INT_OP(a, op, b)                                            \
	do {                                                               \
		long long a_ = (long long)(a), b_ = (long long)(b);        \
		if (!(a_ op b_))                                           \
			FAIL("%s %s %s (%lld vs %lld)", #a, #op, #b, a_, b_); \
	} while (0)
#define ASSERT_EQ(a, b) ASSERT_INT_OP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP(a, >=, b)

#define ASSERT_UEQ(a, b)                                                   \
	do {                                                               \
		unsigned long long a_ = (unsigned long long)(a),           \
				   b_ = (unsigned long long)(b);           \
		if (a_ != b_)                                              \
			FAIL("%s == %s (%llu vs %llu)", #a, #b, a_, b_);   \
	} while (0)

#define ASSERT_STREQ(a, b)                                                 \
	do {                                                               \
		const char *a_ = (a), *b_ = (b);                           \
		if (!a_ || !b_ || strcmp(a_, b_) != 0)                     \
			FAIL("%s == %s (\"%s\" vs \"%s\")", #a, #b,        \
			     a_ ? a_ : "(null)", b_ ? b_ : "(null)");      \
	} while (0)

#define ASSERT_MEMEQ(a, b, n)                                              \
	do {                                                               \
		if (memcmp((a), (b), (n)) != 0)                            \
			FAIL("%s and %s differ in their first %zu bytes", \
			     #a, #b, (size_t)(n));                         \
	} while (0)

/* Assert a shval call returns 0, printing the code's name otherwise. */
#define ASSERT_OK(call)                                                    \
	do {                                                               \
		int r_ = (call);                                           \
		if (r_ != 0)                                               \
			FAIL("%s returned %d (%s)", #call, r_,             \
			     shval_strerror(r_));                          \
	} while (0)
/* Assert a shval call returns exactly code. */
#define ASSERT_ERR(call, code)                                             \
	do {                                                               \
		int r_ = (call), c_ = (code);                              \
		if (r_ != c_)                                              \
			FAIL("%s returned %d (%s), expected %s", #call, r_, \
			     shval_strerror(r_), shval_strerror(c_));      \
	} while (0)

/* A unique name for this test run, e.g. "/shvaltest.1234.name". */
static inline const char *test_segname(const char *what)
{
	static char buf[8][128];
	static int i;
	char *b = buf[i++ & 7];
	snprintf(b, 128, "/shvaltest.%d.%s", (int)getpid(), what);
	return b;
}

/* Wait for a child and assert it exited 0. */
static inline void test_wait_ok(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		FAIL("waitpid(%d): %s", (int)pid, strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAIL("child %d ended with status 0x%x%s", (int)pid, st,
		     WIFSIGNALED(st) ? " (signal)" : "");
}

static inline int test_timeout_(void)
{
	const char *t = getenv("SHVAL_TEST_TIMEOUT");
	const char *m = getenv("SHVAL_TEST_TIMEOUT_MULTIPLIER");
	int s = t ? atoi(t) : 60;
	int k = m ? atoi(m) : 1;
	return (s > 0 ? s : 60) * (k > 0 ? k : 1);
}

static inline int test_run_one_(struct test_case *tc)
{
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		alarm((unsigned)test_timeout_());
		test_kind_ = tc->kind;
		tc->fn();
		fflush(NULL);
		exit(0); /* not _exit: LeakSanitizer checks at exit */
	}
	int st = 0;
	waitpid(pid, &st, 0);
	kill(-pid, SIGKILL); /* helpers left behind by the case */
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
		return 77;
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
		fprintf(stderr, "%s: TIMEOUT after %d s\n", tc->name, test_timeout_());
	return 1;
}

#define TEST_MAIN()                                                        \
	int main(int argc, char **argv)                                    \
	{                                                                  \
		int failed = 0, passed = 0, skipped = 0;                   \
		setvbuf(stdout, NULL, _IONBF, 0);                          \
		if (argc > 1 && strcmp(argv[1], "--list") == 0) {          \
			for (int i = 0; i < test_ncases_; i++)             \
				printf("%s\n", test_cases_[i].name);       \
			return 0;                                          \
		}                                                          \
		for (int i = 0; i < test_ncases_; i++) {                   \
			if (argc > 1 && strcmp(argv[1], test_cases_[i].name)) \
				continue;                                  \
			int r = test_run_one_(&test_cases_[i]);            \
			printf("%-40s %s\n", test_cases_[i].name,          \
			       r == 0 ? "ok" : r == 77 ? "skipped" : "FAILED"); \
			if (r == 0) passed++;                              \
			else if (r == 77) skipped++;                       \
			else failed++;                                     \
		}                                                          \
		if (argc > 1 && passed + failed + skipped == 0) {          \
			fprintf(stderr, "no test named %s\n", argv[1]);    \
			return 2;                                          \
		}                                                          \
		if (argc > 1 && skipped && !failed) return 77;             \
		return failed ? 1 : 0;                                     \
	}

#endif
