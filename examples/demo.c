/*
 * examples/demo.c — the demo that `make run` starts.
 *
 * Several worker processes share, in one named segment:
 *   "count"     q    SHVAL_ATOMIC  incremented once per iteration (lock-free)
 *   "hist"      16q  locked        a histogram, updated in place under its lock
 *   "status.N"  32s  locked        one status string per worker ("worker 2: 50%")
 *   "steps"     q    SHVAL_ATOMIC  bumped whenever a worker publishes a status
 * The parent sleeps in shval_wait() on "steps" (a futex, no polling) and
 * prints a progress line every 10%; at the end it checks that the counter
 * and the histogram's sum are both exactly workers * iterations, prints
 * the totals and removes the segment.
 *
 * Usage: demo [WORKERS [ITERATIONS]]   (default 4 workers, 200000 each)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shval.h>

#define MAX_WORKERS 64
#define NBUCKETS 16
#define STATUS_STEPS 10 /* a worker publishes its status every 10% */

static char seg_name[64];

/* Report a failed call and its segment's message; false on failure. */
static int check(int r, const char *what, shval_seg *seg)
{
	if (r >= 0 || r == SHVAL_EOWNERDEAD)
		return 1;
	fprintf(stderr, "demo[%d]: %s: %s", (int)getpid(), what,
		shval_strerror(r));
	const char *m = shval_errmsg(seg);
	if (m && *m)
		fprintf(stderr, " (%s)", m);
	fputc('\n', stderr);
	return 0;
}
#define CHECK(seg, call)                                                      \
	do {                                                                   \
		if (!check((call), #call, (seg)))                              \
			goto fail;                                             \
	} while (0)

/* xorshift64*: a small deterministic generator, one per worker. */
static uint64_t next_rand(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* A worker: opens the segment by name, as an unrelated process would (it
 * could also use the handles inherited across fork()). */
static int worker(int id, long iters)
{
	shval_seg *seg = NULL;
	shval *count = NULL, *hist = NULL, *status = NULL, *steps = NULL;
	char sname[32], text[32];
	uint64_t rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(id + 1);
	long every = iters / STATUS_STEPS;

	CHECK(NULL, shval_seg_open(seg_name, 0, NULL, &seg));
	snprintf(sname, sizeof sname, "status.%d", id);
	/* With a type, shval_find() checks it: SHVAL_ETYPE on a mismatch. */
	CHECK(seg, shval_find(seg, "count", "q", &count));
	CHECK(seg, shval_find(seg, "steps", "q", &steps));
	CHECK(seg, shval_find(seg, "hist", "16q", &hist));
	CHECK(seg, shval_find(seg, sname, "32s", &status));

	for (long i = 1; i <= iters; i++) {
		/* Sum of five 2-bit numbers: 0..15, roughly bell-shaped. */
		uint64_t r = next_rand(&rng);
		unsigned b = 0;
		for (int k = 0; k < 5; k++)
			b += (unsigned)(r >> (2 * k + 40)) & 3u;

		CHECK(seg, shval_add_i64(count, 1, NULL));

		/* In-place update: take the lock, change the bytes through
		 * shval_data(), and shval_unlock() commits the change. */
		CHECK(seg, shval_lock(hist));
		int64_t *h = shval_data(hist);
		if (!h) {
			shval_unlock(hist);
			fprintf(stderr, "demo: worker %d: hist is stale\n", id);
			goto fail;
		}
		h[b]++;
		CHECK(seg, shval_unlock(hist));

		if (every > 0 && i % every == 0) {
			int n = snprintf(text, sizeof text, "worker %d: %ld%%",
					 id, i * 100 / iters);
			CHECK(seg, shval_set_str(status, text, (size_t)n));
			CHECK(seg, shval_add_i64(steps, 1, NULL));
		}
	}
	shval_close(count);
	shval_close(hist);
	shval_close(status);
	shval_close(steps);
	shval_seg_close(seg);
	return 0;
fail:
	return 2;
}

/* One progress line: the counter and every worker's status string. */
static void print_progress(shval_seg *seg, shval *count, shval **status,
			   int nworkers, int64_t total)
{
	int64_t c = 0;
	char line[1024];
	size_t off = 0;

	if (!check(shval_get_i64(count, &c), "shval_get_i64(count)", seg))
		return;
	off += (size_t)snprintf(line + off, sizeof line - off,
				"progress %3d%%  count %8" PRId64 " ",
				(int)(c * 100 / total), c);
	for (int i = 0; i < nworkers && off < sizeof line - 40; i++) {
		char s[33];
		size_t len = 0;
		if (shval_get_str(status[i], s, sizeof s, &len) != 0)
			strcpy(s, "?");
		off += (size_t)snprintf(line + off, sizeof line - off,
					" [%s]", len ? s : "starting");
	}
	puts(line);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int nworkers = argc > 1 ? atoi(argv[1]) : 4;
	long iters = argc > 2 ? atol(argv[2]) : 200000;
	if (nworkers < 1 || nworkers > MAX_WORKERS || iters < 1) {
		fprintf(stderr, "usage: demo [WORKERS (1..%d) [ITERATIONS]]\n",
			MAX_WORKERS);
		return 2;
	}
	const int64_t total = (int64_t)nworkers * iters;

	shval_seg *seg = NULL;
	shval *count = NULL, *hist = NULL, *steps = NULL;
	shval *status[MAX_WORKERS] = { 0 };
	pid_t pids[MAX_WORKERS];
	int started = 0, ok = 0;

	snprintf(seg_name, sizeof seg_name, "/shval-demo.%d", (int)getpid());
	printf("shval %s demo: %d workers x %ld iterations, segment %s\n",
	       shval_version_string(), nworkers, iters, seg_name);

	CHECK(NULL, shval_seg_open(seg_name, SHVAL_CREATE | SHVAL_EXCL, NULL,
				   &seg));
	CHECK(seg, shval_create(seg, "count", "q", SHVAL_ATOMIC, NULL, 0, &count));
	CHECK(seg, shval_create(seg, "steps", "q", SHVAL_ATOMIC, NULL, 0, &steps));
	CHECK(seg, shval_create(seg, "hist", "16q", SHVAL_RLOCK, NULL, 0, &hist));
	for (int i = 0; i < nworkers; i++) {
		char sname[32];
		snprintf(sname, sizeof sname, "status.%d", i);
		CHECK(seg, shval_create(seg, sname, "32s", 0, NULL, 0, &status[i]));
	}

	fflush(stdout); /* nothing buffered may be printed twice by children */
	for (; started < nworkers; started++) {
		pid_t p = fork();
		if (p < 0) {
			perror("demo: fork");
			goto fail;
		}
		if (p == 0)
			_exit(worker(started, iters));
		pids[started] = p;
	}

	/* Progress: sleep until "steps" moves (an atomic value's version is
	 * its number), at most 2 s at a time so a dead worker is noticed. */
	const int64_t all_steps = iters >= STATUS_STEPS
					  ? (int64_t)nworkers * STATUS_STEPS
					  : 0;
	uint64_t seen = shval_value_version(steps);
	int64_t printed = 0; /* steps at the last line, in tenths of the total */
	int live = nworkers;
	while ((int64_t)seen < all_steps && live > 0) {
		int r = shval_wait(steps, &seen, 2 * SHVAL_SEC);
		if (r == 0) {
			int64_t tenth = (int64_t)seen * 10 / all_steps;
			if (tenth > printed) {
				printed = tenth;
				print_progress(seg, count, status, nworkers, total);
			}
		} else if (r == -ETIMEDOUT || r == -EINTR) {
			/* Has a worker died without finishing? */
			for (int i = 0; i < nworkers; i++) {
				int st;
				if (pids[i] > 0 &&
				    waitpid(pids[i], &st, WNOHANG) == pids[i]) {
					pids[i] = -1;
					live--;
					if (!WIFEXITED(st) || WEXITSTATUS(st)) {
						fprintf(stderr, "demo: worker %d "
							"failed (status 0x%x)\n",
							i, st);
						goto fail;
					}
				}
			}
		} else {
			CHECK(seg, r);
		}
	}

	for (int i = 0; i < nworkers; i++) {
		int st;
		if (pids[i] <= 0)
			continue;
		if (waitpid(pids[i], &st, 0) != pids[i]) {
			perror("demo: waitpid");
			goto fail;
		}
		pids[i] = -1;
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "demo: worker %d failed (status 0x%x)\n",
				i, st);
			goto fail;
		}
	}
	started = 0;

	/* Totals: the counter, and a consistent copy of the histogram. */
	int64_t c = 0, h[NBUCKETS], sum = 0, hmax = 1;
	CHECK(seg, shval_get_i64(count, &c));
	CHECK(seg, shval_read(hist, h, sizeof h));
	for (int i = 0; i < NBUCKETS; i++) {
		sum += h[i];
		if (h[i] > hmax)
			hmax = h[i];
	}
	for (int i = 0; i < NBUCKETS; i++) {
		char bar[41];
		int n = (int)(h[i] * 40 / hmax);
		memset(bar, '#', (size_t)n);
		bar[n] = '\0';
		printf("  hist[%2d] %8" PRId64 " %s\n", i, h[i], bar);
	}
	printf("count %" PRId64 ", histogram sum %" PRId64 ", expected %" PRId64
	       "\n", c, sum, total);
	if (c != total || sum != total) {
		fprintf(stderr, "demo: FAILED: lost or extra updates (count %"
			PRId64 ", histogram %" PRId64 ", expected %" PRId64 ")\n",
			c, sum, total);
		goto fail;
	}
	printf("OK\n");
	ok = 1;

fail:
	for (int i = 0; i < started; i++) {
		if (pids[i] > 0) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
		}
	}
	for (int i = 0; i < nworkers; i++)
		shval_close(status[i]);
	shval_close(count);
	shval_close(hist);
	shval_close(steps);
	shval_seg_close(seg);
	if (seg && shval_seg_unlink(seg_name) != 0)
		ok = 0;
	return ok ? 0 : 1;
}
