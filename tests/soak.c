/*
 * tests/soak.c — the soak run (`make soak`, not part of the default CI).
 *
 * 8 worker processes mix every kind of operation on one named segment for
 * SECONDS (argv[1], default 60) while the parent SIGKILLs a random worker
 * every few milliseconds and starts a new one in its place.  Every read
 * checks an invariant; at the end the totals must be exact:
 *   sum == sum of the per-worker counters   (shared lock, all or nothing)
 *   xy.y == 2 * xy.x                        (own lock, multi-step update)
 *   arr: all 32 elements equal              (own lock, element by element)
 *   big: every element a multiple of 1000003 (no undo copy: whole elements)
 *   str: one of the strings written
 *   atom: never goes down                    (atomic)
 * plus creates/removes of temporary values (segment lock) and waits.
 * Exit 0 and a summary line, or a message and exit 1.
 *
 * A failure stops the run at once: the parent kills and reaps every worker
 * before it exits (a worker that ends by itself is noticed within a few
 * milliseconds); a run that hangs is stopped by an alarm (SECONDS + 60 s),
 * and workers that do not stop when asked within STOP_GRACE seconds are
 * a failure.  Workers also die with the parent (PR_SET_PDEATHSIG), so none
 * survives it in any outcome, even a SIGKILL of the parent.
 */
#define _GNU_SOURCE
#include <shval.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NWORK 8
#define BIG 20000
#define STOP_GRACE 20 /* seconds for the workers to stop when asked */

typedef struct { int64_t x, y; } xy;

static const char *words[] = { "idle", "busy", "draining", "", "a\0b" };
static const size_t wlen[] = { 4, 4, 8, 0, 3 };
static char segname[64];
static char shmpath[80]; /* segname's file, for the alarm handler */
static pid_t parent;
static pid_t pids[NWORK]; /* live workers (0: none); parent only */

/* Parent: SIGKILL every worker and reap it (async-signal-safe). */
static void kill_workers(void)
{
	for (int w = 0; w < NWORK; w++)
		if (pids[w] > 0)
			kill(pids[w], SIGKILL);
	for (int w = 0; w < NWORK; w++)
		if (pids[w] > 0) {
			waitpid(pids[w], NULL, 0);
			pids[w] = 0;
		}
}

/* A failed check: a worker just exits (the parent notices); the parent
 * takes its workers with it. */
static void die(void)
{
	if (getpid() == parent) {
		kill_workers();
		if (segname[0])
			shval_seg_unlink(segname);
		fprintf(stderr, "soak: FAILED\n");
	}
	_exit(1);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "soak: FAILED: timed out (a hang?); killing "
				  "the workers\n";
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing more to say */
	}
	kill_workers();
	if (shmpath[0])
		unlink(shmpath);
	_exit(1);
}

#define CHECK(c, ...)                                                        \
	do {                                                                 \
		if (!(c)) {                                                  \
			fprintf(stderr, "soak: pid %d: ", (int)getpid());    \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, "\n");                               \
			die();                                               \
		}                                                            \
	} while (0)
#define OK(call)                                                             \
	do {                                                                 \
		int r_ = (call);                                             \
		CHECK(r_ == 0 || r_ == SHVAL_EOWNERDEAD, "%s: %s (%s)", #call, \
		      shval_strerror(r_), shval_errmsg(seg));                \
	} while (0)

static shval *handles[64];
static int nhandles;

static shval *get(shval_seg *seg, const char *name)
{
	shval *v;
	int r = shval_find(seg, name, NULL, &v);
	CHECK(r == 0, "find %s: %s", name, shval_strerror(r));
	if (nhandles < 64)
		handles[nhandles++] = v; /* closed at the end of main */
	return v;
}

static void worker(int w)
{
	shval_seg *seg;
	int r = shval_seg_open(segname, 0, NULL, &seg);
	CHECK(r == 0, "open: %s", shval_strerror(r));
	char name[32];
	snprintf(name, sizeof name, "w.%d", w);
	shval *L = get(seg, "L"), *sum = get(seg, "sum"), *mine = get(seg, name);
	shval *st = get(seg, "xy"), *arr = get(seg, "arr"), *big = get(seg, "big");
	shval *str = get(seg, "str"), *atom = get(seg, "atom"), *stop = get(seg, "stop");
	unsigned seed = (unsigned)getpid();
	int64_t last_atom = 0, k = 0;
	for (unsigned long i = 0;; i++) {
		int64_t s;
		OK(shval_get_i64(stop, &s));
		if (s)
			_exit(0);
		switch (rand_r(&seed) % 9) {
		case 0: { /* transfer under the shared lock */
			int64_t d = 1 + rand_r(&seed) % 5;
			OK(shval_lock(L));
			OK(shval_add_i64(sum, d, NULL));
			OK(shval_add_i64(mine, d, NULL));
			OK(shval_unlock(L));
			break;
		}
		case 1: {
			OK(shval_lock(st));
			xy *p = shval_data(st);
			p->x++;
			p->y = 2 * p->x;
			OK(shval_unlock(st));
			break;
		}
		case 2: {
			OK(shval_lock(arr));
			int64_t *p = shval_data(arr);
			k = p[0] + 1;
			for (int j = 0; j < 32; j++)
				p[j] = k;
			OK(shval_unlock(arr));
			break;
		}
		case 3: {
			OK(shval_lock(big));
			int64_t *p = shval_data(big);
			int64_t m = (int64_t)(rand_r(&seed) % 1000) * 1000003;
			for (int j = 0; j < BIG; j += 97)
				__atomic_store_n(&p[j], m, __ATOMIC_RELAXED);
			OK(shval_unlock(big));
			break;
		}
		case 4: {
			int n = rand_r(&seed) % 5;
			OK(shval_set_str(str, words[n], wlen[n]));
			break;
		}
		case 5:
			OK(shval_add_i64(atom, 1, NULL));
			break;
		case 6: { /* segment lock: create and remove */
			shval *t;
			snprintf(name, sizeof name, "tmp.%d.%u", w, rand_r(&seed) % 8);
			if (shval_create(seg, name, "q 16s", 0, NULL, 0, &t) == 0)
				shval_close(t);
			snprintf(name, sizeof name, "tmp.%d.%u", w, rand_r(&seed) % 8);
			r = shval_remove(seg, name);
			CHECK(r == 0 || r == SHVAL_ENOTFOUND, "remove: %s",
			      shval_strerror(r));
			break;
		}
		case 7: { /* wait briefly for any change of sum */
			uint64_t seen = shval_value_version(sum);
			r = shval_wait(sum, &seen, 2 * SHVAL_MSEC);
			CHECK(r == 0 || r == -ETIMEDOUT, "wait: %s", shval_strerror(r));
			break;
		}
		default: { /* read everything, check every invariant */
			xy v;
			OK(shval_read(st, &v, sizeof v));
			CHECK(v.y == 2 * v.x, "xy torn: %lld %lld", (long long)v.x,
			      (long long)v.y);
			int64_t a[32];
			OK(shval_array_get(arr, 0, 32, a));
			for (int j = 1; j < 32; j++)
				CHECK(a[j] == a[0], "arr torn at %d", j);
			static int64_t b[BIG];
			OK(shval_array_get(big, 0, BIG, b));
			for (int j = 0; j < BIG; j++)
				CHECK(b[j] % 1000003 == 0, "big element %d not whole", j);
			char sb[16];
			size_t n;
			OK(shval_get_str(str, sb, sizeof sb, &n));
			int found = 0;
			for (int j = 0; j < 5; j++)
				found |= n == wlen[j] && !memcmp(sb, words[j], n);
			CHECK(found, "string not one of the written ones");
			int64_t at;
			OK(shval_get_i64(atom, &at));
			CHECK(at >= last_atom, "atomic went down");
			last_atom = at;
		}
		}
	}
}

static void print_problem(const shval_problem *p, void *arg)
{
	(void)arg;
	fprintf(stderr, "soak: verify: %s%s%s%s\n", p->name, p->name[0] ? ": " : "",
		p->what, p->repaired ? " (repaired)" : "");
}

static pid_t start(int w)
{
	pid_t p = fork();
	CHECK(p >= 0, "fork: %s", strerror(errno));
	if (p == 0) {
		signal(SIGALRM, SIG_DFL);
		/* Die with the parent, whatever ends it; it may have died
		 * before this line. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(1);
		worker(w);
	}
	return p;
}

/* The worker slot of a reaped pid, or -1. */
static int slot_of(pid_t p)
{
	for (int w = 0; w < NWORK; w++)
		if (pids[w] == p)
			return w;
	return -1;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 60;
	parent = getpid();
	signal(SIGALRM, on_alarm);
	alarm((unsigned)(seconds > 0 ? seconds : 0) + 60);
	snprintf(segname, sizeof segname, "/shval-soak.%d", (int)getpid());
	snprintf(shmpath, sizeof shmpath, "/dev/shm%s", segname);
	shval_seg *seg;
	int r = shval_seg_open(segname, SHVAL_CREATE | SHVAL_EXCL, NULL, &seg);
	CHECK(r == 0, "create %s: %s", segname, shval_strerror(r));
	shval *L, *v;
	OK(shval_lock_create(seg, "L", SHVAL_RLOCK, &L));
	OK(shval_create_guarded(seg, "sum", "q", L, NULL, 0, &v));
	shval_close(v);
	for (int w = 0; w < NWORK; w++) {
		char name[16];
		snprintf(name, sizeof name, "w.%d", w);
		OK(shval_create_guarded(seg, name, "q", L, NULL, 0, &v));
		shval_close(v);
	}
	const char *defs[][3] = { { "xy", "x:q y:q", "" }, { "arr", "32q", "" },
				  { "big", "20000q", "" }, { "str", "16s", "" },
				  { "atom", "q", "a" }, { "stop", "i", "a" } };
	for (size_t i = 0; i < sizeof defs / sizeof *defs; i++) {
		OK(shval_create(seg, defs[i][0], defs[i][1],
				defs[i][2][0] ? SHVAL_ATOMIC : 0, NULL, 0, &v));
		shval_close(v);
	}
	for (int w = 0; w < NWORK; w++)
		pids[w] = start(w);
	unsigned seed = 1;
	long kills = 0, owner_deaths = 0;
	time_t end = time(NULL) + seconds;
	while (time(NULL) < end) {
		struct timespec ts = { 0, (long)(1 + rand_r(&seed) % 20) * 1000000 };
		nanosleep(&ts, NULL);
		/* A worker that ended by itself failed a check (it said what
		 * on stderr): stop the run now, not at the timeout. */
		int st;
		pid_t p;
		while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
			int w = slot_of(p);
			if (w >= 0)
				pids[w] = 0;
			CHECK(0, "worker %d (pid %d) ended by itself (status 0x%x)",
			      w, (int)p, st);
		}
		int w = rand_r(&seed) % NWORK;
		kill(pids[w], SIGKILL);
		waitpid(pids[w], &st, 0);
		pids[w] = 0;
		CHECK(WIFSIGNALED(st), "worker %d ended by itself (status 0x%x)", w, st);
		kills++;
		pids[w] = start(w);
	}
	shval *stop = get(seg, "stop");
	OK(shval_set_i64(stop, 1));
	time_t give_up = time(NULL) + STOP_GRACE;
	for (int left = NWORK; left > 0;) {
		int st;
		pid_t p = waitpid(-1, &st, WNOHANG);
		if (p > 0) {
			int w = slot_of(p);
			if (w >= 0)
				pids[w] = 0;
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "worker %d failed (0x%x)", w, st);
			left--;
			continue;
		}
		CHECK(p == 0, "waitpid: %s", strerror(errno));
		CHECK(time(NULL) < give_up,
		      "%d worker(s) did not stop within %d s of being asked", left,
		      STOP_GRACE);
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
	/* Take every lock once (recovering what the last kills left), then
	 * check the totals and the whole segment. */
	const char *locked[] = { "xy", "arr", "big", "str" };
	r = shval_lock(L);
	owner_deaths += r == SHVAL_EOWNERDEAD;
	OK(r);
	int64_t sum, parts = 0, x;
	OK(shval_get_i64(get(seg, "sum"), &sum));
	for (int w = 0; w < NWORK; w++) {
		char name[16];
		snprintf(name, sizeof name, "w.%d", w);
		OK(shval_get_i64(get(seg, name), &x));
		parts += x;
	}
	OK(shval_unlock(L));
	CHECK(sum == parts, "sum %lld != parts %lld", (long long)sum,
	      (long long)parts);
	for (size_t i = 0; i < 4; i++) {
		shval *h = get(seg, locked[i]);
		r = shval_lock(h);
		owner_deaths += r == SHVAL_EOWNERDEAD;
		OK(r);
		OK(shval_unlock(h));
	}
	/* A writer killed inside big's section leaves it flagged PARTIAL
	 * (no undo copy at that size): every element must still be whole;
	 * a full write clears the flag. */
	struct shval_info bi;
	shval *bh = get(seg, "big");
	OK(shval_info(bh, &bi));
	static int64_t bb[BIG];
	OK(shval_array_get(bh, 0, BIG, bb));
	for (int j = 0; j < BIG; j++)
		CHECK(bb[j] % 1000003 == 0, "big element %d not whole", j);
	if (bi.flags & SHVAL_INFO_PARTIAL)
		OK(shval_array_set(bh, 0, BIG, bb));
	xy p;
	OK(shval_read(get(seg, "xy"), &p, sizeof p));
	CHECK(p.y == 2 * p.x, "xy %lld %lld", (long long)p.x, (long long)p.y);
	size_t np;
	r = shval_seg_verify(seg, SHVAL_VERIFY_DEEP | SHVAL_VERIFY_REPAIR,
			     print_problem, NULL, &np);
	OK(r);
	r = shval_seg_verify(seg, SHVAL_VERIFY_DEEP, NULL, NULL, &np);
	CHECK(r == 0 && np == 0, "verify after repair: %zu problems", np);
	printf("soak: %d s, %ld SIGKILLs, sum %lld exact, xy %lld, "
	       "%ld locks recovered at the end, segment verified\n",
	       seconds, kills, (long long)sum, (long long)p.x, owner_deaths);
	for (int i = 0; i < nhandles; i++)
		shval_close(handles[i]);
	shval_close(L);
	shval_seg_close(seg);
	shval_seg_unlink(segname);
	return 0;
}
