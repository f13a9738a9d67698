/*
 * bench/bench.c — the C benchmarks of shval against hand-written baselines,
 * each comparison in this one program with alternating repetitions (see
 * harness.h).  Not a test: it prints numbers and the targets of the issue
 * and always exits 0 unless a correctness check (an exact total) fails.
 *
 *   bench [--quick] [--reps N] [--min-sec S] [--only CASE] [--json FILE]
 *
 * Cases (ratio = shval ns/op / baseline ns/op):
 *   atomic_add_1p   shval_add_i64 on an SHVAL_ATOMIC "q"  vs __atomic_fetch_add
 *   atomic_add_2p   the same from 2 processes on one value, exact total checked
 *   locked_add_1p   shval_add_i64 on a default-mode (RLOCK) "q" vs robust
 *                   pshared pthread mutex + increment
 *   locked_add_2p   the same from 2 processes, exact total checked
 *   read_64B        shval_read of a 64-byte struct (RLOCK) vs a seqlock read
 *   write_64B       shval_write of it vs robust mutex + memcpy
 *   wake_pingpong   2 processes alternately set and wait on an atomic value
 *                   vs a bare futex wait/wake ping-pong (ns per hand-off)
 *   find_1M         shval_find (+close) among 1M values vs among 10k values
 *   bytes_per_value segment bytes per atomic (and locked) int64 value with a
 *                   16-byte name, 1M values
 * The Boost comparisons (find_10k, create_100k) are in bench_boost.cpp.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <shval.h>

#include "harness.h"

static bh_opts O;

#define CHECK(x)                                                              \
	do {                                                                  \
		int r_ = (x);                                                 \
		if (r_) {                                                     \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, \
				#x, shval_strerror(r_));                       \
			exit(2);                                              \
		}                                                             \
	} while (0)

/* Shared memory for baselines and for the 2-process control block. */
static void *shared_alloc(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	memset(p, 0, n);
	return p;
}

static void robust_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
}

static void robust_lock(pthread_mutex_t *m)
{
	int r = pthread_mutex_lock(m);
	if (r == EOWNERDEAD)
		pthread_mutex_consistent(m);
	else if (r) {
		fprintf(stderr, "pthread_mutex_lock: %d\n", r);
		exit(2);
	}
}

/* Baseline shared block: every field on its own line. */
typedef struct base {
	_Alignas(64) int64_t counter;
	_Alignas(64) pthread_mutex_t mtx;
	int64_t locked_counter;
	_Alignas(64) uint32_t futex_word;
	_Alignas(64) uint64_t seq;
	unsigned char data[64];
	_Alignas(64) pthread_mutex_t wmtx;
	unsigned char wdata[64];
} base;

/* Control block of a 2-process run. */
typedef struct ctl {
	_Alignas(64) _Atomic int ready;
	_Alignas(64) _Atomic int go;
	_Alignas(64) double child_end;
	int child_ok;
	uint64_t child_ops;
} ctl;

static shval_seg *seg;
static base *B;
static ctl *C;
static shval *v_atomic, *v_locked, *v_struct, *v_ping;
static unsigned char wbuf[64];

/* ---- 1-process cases ---- */

static bh_run run_read_shval(void *ctx, uint64_t n)
{
	(void)ctx;
	unsigned char buf[64];
	uint64_t sum = 0;
	uint64_t i;
	double t0 = bh_now();
	BH_LOOP(i, n) {
		shval_read(v_struct, buf, sizeof buf);
		__asm__ __volatile__("" ::"r"(buf) : "memory");
		sum += buf[i & 63];
	}
	double t1 = bh_now();
	__asm__ __volatile__("" ::"r"(sum));
	return (bh_run){ t1 - t0, (double)i, 1 };
}

/* Hand-written seqlock read: sequence (acquire), copy, fence, re-check. */
static inline void seqlock_read(void *dst)
{
	for (;;) {
		uint64_t s1 = __atomic_load_n(&B->seq, __ATOMIC_ACQUIRE);
		if (s1 & 1) {
			__builtin_ia32_pause();
			continue;
		}
		memcpy(dst, B->data, 64);
#if defined(__SANITIZE_THREAD__) /* TSan rejects fences: a stronger load */
		if (__atomic_load_n(&B->seq, __ATOMIC_SEQ_CST) == s1)
			return;
#else
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&B->seq, __ATOMIC_RELAXED) == s1)
			return;
#endif
	}
}

static bh_run run_read_base(void *ctx, uint64_t n)
{
	(void)ctx;
	unsigned char buf[64];
	uint64_t sum = 0;
	uint64_t i;
	double t0 = bh_now();
	BH_LOOP(i, n) {
		seqlock_read(buf);
		/* the copy must happen: the compiler may not keep only the
		 * byte used below */
		__asm__ __volatile__("" ::"r"(buf) : "memory");
		sum += buf[i & 63];
	}
	double t1 = bh_now();
	__asm__ __volatile__("" ::"r"(sum));
	return (bh_run){ t1 - t0, (double)i, 1 };
}

static bh_run run_write_shval(void *ctx, uint64_t n)
{
	(void)ctx;
	uint64_t i;
	double t0 = bh_now();
	BH_LOOP(i, n) {
		wbuf[0] = (unsigned char)i;
		shval_write(v_struct, wbuf, sizeof wbuf);
	}
	double t1 = bh_now();
	unsigned char chk[64];
	shval_read(v_struct, chk, sizeof chk);
	return (bh_run){ t1 - t0, (double)i, i == 0 || chk[0] == (unsigned char)(i - 1) };
}

static bh_run run_write_base(void *ctx, uint64_t n)
{
	(void)ctx;
	uint64_t i;
	double t0 = bh_now();
	BH_LOOP(i, n) {
		wbuf[0] = (unsigned char)i;
		robust_lock(&B->wmtx);
		memcpy(B->wdata, wbuf, sizeof wbuf);
		pthread_mutex_unlock(&B->wmtx);
	}
	double t1 = bh_now();
	return (bh_run){ t1 - t0, (double)i, i == 0 || B->wdata[0] == (unsigned char)(i - 1) };
}

/* ---- 2-process cases ----
 * The parent forks one child per run; both wait on C->go, then each works
 * until bh_stop_at (the same CLOCK_MONOTONIC deadline in both).  Time runs
 * from go until the later of the two ends; operations are those of both
 * processes, and every case checks the exact total.  fork() and exit are
 * outside the timed span. */

typedef uint64_t (*worker_fn)(int who, uint64_t max);

static bh_run two_procs(worker_fn fn, uint64_t max, uint64_t *ops0,
			uint64_t *ops1)
{
	atomic_store(&C->ready, 0);
	atomic_store(&C->go, 0);
	C->child_end = 0;
	C->child_ok = 0;
	C->child_ops = 0;
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		atomic_store(&C->ready, 1);
		while (!atomic_load(&C->go))
			__builtin_ia32_pause();
		C->child_ops = fn(1, max);
		C->child_end = bh_now();
		C->child_ok = 1;
		_exit(0);
	}
	while (!atomic_load(&C->ready))
		sched_yield();
	double t0 = bh_now();
	atomic_store(&C->go, 1);
	*ops0 = fn(0, max);
	double t1 = bh_now();
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && C->child_ok;
	if (!ok)
		fprintf(stderr, "child %d: %s %d, finished %d\n", (int)pid,
			WIFEXITED(st) ? "exit status" : "killed by signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
			C->child_ok);
	*ops1 = C->child_ops;
	double end = C->child_end > t1 ? C->child_end : t1;
	return (bh_run){ end - t0, (double)(*ops0 + *ops1), ok };
}

/* ---- adds, from 1 and 2 processes ----
 * One case table row per side: an adder says what adds (its worker), on
 * what (a shval value, or a counter in the baseline block) and how the
 * exact total is read back. */

struct adder {
	const char *what; /* in the message of a wrong total */
	worker_fn work;   /* adds 1 up to n times, returns how many */
	shval **v;        /* the shval side's value, or NULL */
	size_t counter;   /* else the baseline's counter: offset in B */
};

/* The adder of the current run; forked children inherit it. */
static const struct adder *cur;

static uint64_t w_add_shval(int who, uint64_t n)
{
	(void)who;
	shval *v = *cur->v;
	uint64_t i;
	BH_LOOP(i, n)
		shval_add_i64(v, 1, NULL);
	return i;
}

static uint64_t w_atomic_base(int who, uint64_t n)
{
	(void)who;
	uint64_t i;
	BH_LOOP(i, n)
		__atomic_fetch_add(&B->counter, 1, __ATOMIC_SEQ_CST);
	return i;
}

static uint64_t w_locked_base(int who, uint64_t n)
{
	(void)who;
	uint64_t i;
	BH_LOOP(i, n) {
		robust_lock(&B->mtx);
		B->locked_counter++;
		pthread_mutex_unlock(&B->mtx);
	}
	return i;
}

static int64_t *adder_counter(const struct adder *a)
{
	return (int64_t *)((char *)B + a->counter);
}

static int64_t adder_total(const struct adder *a)
{
	int64_t t = -1;
	if (a->v)
		CHECK(shval_get_i64(*a->v, &t));
	else
		t = __atomic_load_n(adder_counter(a), __ATOMIC_SEQ_CST);
	return t;
}

static bh_run run_add_1p(void *ctx, uint64_t n)
{
	cur = ctx;
	int64_t before = adder_total(cur);
	double t0 = bh_now();
	uint64_t i = cur->work(0, n);
	double t1 = bh_now();
	int64_t after = adder_total(cur);
	return (bh_run){ t1 - t0, (double)i, after - before == (int64_t)i };
}

static bool total_ok(const char *what, int64_t tot, uint64_t a, uint64_t b)
{
	if (tot == (int64_t)(a + b))
		return true;
	fprintf(stderr, "%s: total %lld, expected %llu + %llu\n", what,
		(long long)tot, (unsigned long long)a, (unsigned long long)b);
	return false;
}

static bh_run run_add_2p(void *ctx, uint64_t n)
{
	cur = ctx;
	uint64_t a, b;
	if (cur->v)
		CHECK(shval_set_i64(*cur->v, 0));
	else
		__atomic_store_n(adder_counter(cur), 0, __ATOMIC_SEQ_CST);
	bh_run r = two_procs(cur->work, n, &a, &b);
	r.ok = r.ok && total_ok(cur->what, adder_total(cur), a, b);
	return r;
}

static const struct adder add_atomic_shval = { "atomic add, shval",
					       w_add_shval, &v_atomic, 0 };
static const struct adder add_atomic_base = {
	"atomic add, baseline", w_atomic_base, NULL, offsetof(base, counter)
};
static const struct adder add_locked_shval = { "locked add, shval",
					       w_add_shval, &v_locked, 0 };
static const struct adder add_locked_base = {
	"locked add, baseline", w_locked_base, NULL,
	offsetof(base, locked_counter)
};

/* Ping-pong: process 0 sets 2k+1 and waits for 2k+2, process 1 waits for
 * 2k+1 and sets 2k+2.  Process 0 decides when to stop (bh_stop_at) and then
 * sets STOP.  One op = one hand-off (a set seen by the other process). */
#define STOP_I64 (-1)
#define STOP_U32 0xffffffffu

static uint64_t w_ping_shval(int who, uint64_t n)
{
	uint64_t seen = 0, k;
	if (who) {
		for (k = 0;; k++) {
			uint64_t mine = 2 * k + 2;
			while (seen != mine - 1 && seen != (uint64_t)STOP_I64) {
				int r = shval_wait(v_ping, &seen, SHVAL_FOREVER);
				if (r && r != -EINTR)
					_exit(3);
			}
			if (seen == (uint64_t)STOP_I64)
				return k;
			CHECK(shval_set_i64(v_ping, (int64_t)mine));
			seen = mine;
		}
	}
	for (k = 0; k < n && ((k & 15) || bh_now() < bh_stop_at); k++) {
		uint64_t mine = 2 * k + 1;
		CHECK(shval_set_i64(v_ping, (int64_t)mine));
		seen = mine;
		while (seen != mine + 1) {
			int r = shval_wait(v_ping, &seen, SHVAL_FOREVER);
			if (r && r != -EINTR)
				exit(3);
		}
	}
	CHECK(shval_set_i64(v_ping, STOP_I64));
	return k;
}

static long futex(uint32_t *w, int op, uint32_t val)
{
	return syscall(SYS_futex, w, op, val, NULL, NULL, 0);
}

/* Bare futex: store, FUTEX_WAKE every time; FUTEX_WAIT until the word is
 * what we wait for.  Shared (not private) futexes: two processes. */
static void bare_set(uint32_t x)
{
	__atomic_store_n(&B->futex_word, x, __ATOMIC_SEQ_CST);
	futex(&B->futex_word, FUTEX_WAKE, INT_MAX);
}

static uint32_t bare_wait(uint32_t want)
{
	uint32_t c;
	while ((c = __atomic_load_n(&B->futex_word, __ATOMIC_SEQ_CST)) != want &&
	       c != STOP_U32)
		futex(&B->futex_word, FUTEX_WAIT, c);
	return c;
}

static uint64_t w_ping_base(int who, uint64_t n)
{
	uint64_t k;
	if (who) {
		for (k = 0;; k++) {
			uint32_t mine = (uint32_t)(2 * k + 2);
			if (bare_wait(mine - 1) == STOP_U32)
				return k;
			bare_set(mine);
		}
	}
	for (k = 0; k < n && ((k & 15) || bh_now() < bh_stop_at); k++) {
		uint32_t mine = (uint32_t)(2 * k + 1);
		bare_set(mine);
		bare_wait(mine + 1);
	}
	bare_set(STOP_U32);
	return k;
}

static bh_run run_ping_shval(void *ctx, uint64_t n)
{
	(void)ctx;
	uint64_t a, b;
	CHECK(shval_set_i64(v_ping, 0));
	bh_run r = two_procs(w_ping_shval, n, &a, &b);
	r.ok = r.ok && a == b;
	r.ops = 2.0 * (double)a;
	return r;
}

static bh_run run_ping_base(void *ctx, uint64_t n)
{
	(void)ctx;
	uint64_t a, b;
	B->futex_word = 0;
	bh_run r = two_procs(w_ping_base, n, &a, &b);
	r.ok = r.ok && a == b;
	r.ops = 2.0 * (double)a;
	return r;
}

/* ---- find among 1M vs 10k, bytes per value ---- */

typedef struct findset {
	shval_seg *seg;
	uint64_t nvalues;
	char (*names)[24];
	uint32_t *order; /* lookup order: a fixed pseudo-random permutation */
	uint64_t pos;
} findset;

static void name_of(char *buf, uint64_t i)
{
	snprintf(buf, 24, "v%015llu", (unsigned long long)i); /* 16 bytes */
}

/* Fill a new anonymous segment with n values of mode; report bytes/value. */
static findset *populate(uint64_t n, unsigned mode, double *bytes_per_value)
{
	findset *fs = calloc(1, sizeof *fs);
	shval_seg_opts so = { sizeof so, 0, 4ull << 30, 0 };
	CHECK(shval_seg_open(NULL, SHVAL_CREATE, &so, &fs->seg));
	struct shval_seg_info i0, i1;
	CHECK(shval_seg_info(fs->seg, &i0));
	fs->nvalues = n;
	fs->names = malloc(n * sizeof *fs->names);
	fs->order = malloc(n * sizeof *fs->order);
	for (uint64_t i = 0; i < n; i++) {
		name_of(fs->names[i], i);
		shval *h;
		CHECK(shval_create(fs->seg, fs->names[i], "q", mode, NULL, 0, &h));
		shval_close(h);
		fs->order[i] = (uint32_t)i;
	}
	uint64_t x = 88172645463325252ull;
	for (uint64_t i = n - 1; i > 0; i--) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t j = x % (i + 1);
		uint32_t t = fs->order[i];
		fs->order[i] = fs->order[j];
		fs->order[j] = t;
	}
	CHECK(shval_seg_info(fs->seg, &i1));
	if (bytes_per_value)
		*bytes_per_value = (double)(i1.used - i0.used) / (double)n;
	return fs;
}

static void findset_free(findset *fs)
{
	shval_seg_close(fs->seg);
	free(fs->names);
	free(fs->order);
	free(fs);
}

static bh_run run_find(void *ctx, uint64_t n)
{
	findset *fs = ctx;
	bool ok = true;
	uint64_t i;
	double t0 = bh_now();
	BH_LOOP(i, n) {
		shval *h;
		const char *nm = fs->names[fs->order[fs->pos]];
		if (++fs->pos == fs->nvalues)
			fs->pos = 0;
		if (shval_find(fs->seg, nm, "q", &h) != 0)
			ok = false;
		shval_close(h);
	}
	double t1 = bh_now();
	return (bh_run){ t1 - t0, (double)i, ok };
}

/* ---- main ---- */

/* ---- the cases: shval against a hand-written baseline ---- */

struct bench_case {
	const char *name; /* the row's id (results.json, --only) */
	const char *what;
	const char *label_a; /* shval's side */
	bh_fn fn_a;
	const void *ctx_a;
	const char *label_b; /* the baseline */
	bh_fn fn_b;
	const void *ctx_b;
	uint64_t quick_ops; /* ops per side with --quick; 0: the default */
	double target;      /* ratio a/b to stay under */
	const char *note;
};

#define BOTH_NOTE "ns/op = wall time / total adds of both"
static const struct bench_case cases[] = {
	{ "atomic_add_1p",
	  "add on an atomic int64 value vs __atomic_fetch_add on raw shared "
	  "memory",
	  "shval_add_i64 atomic", run_add_1p, &add_atomic_shval,
	  "__atomic_fetch_add", run_add_1p, &add_atomic_base, 0, 1.10, NULL },
	{ "atomic_add_2p",
	  "2 processes add to one atomic int64 value, exact total checked",
	  "shval_add_i64 atomic, 2 procs", run_add_2p, &add_atomic_shval,
	  "__atomic_fetch_add, 2 procs", run_add_2p, &add_atomic_base, 0, 1.15,
	  BOTH_NOTE },
	{ "locked_add_1p",
	  "add on a default-mode (locked) value vs robust pshared pthread "
	  "mutex + increment",
	  "shval_add_i64 rlock", run_add_1p, &add_locked_shval,
	  "robust mutex + ++", run_add_1p, &add_locked_base, 0, 1.15, NULL },
	{ "locked_add_2p",
	  "2 processes add to one locked value, exact total checked",
	  "shval_add_i64 rlock, 2 procs", run_add_2p, &add_locked_shval,
	  "robust mutex + ++, 2 procs", run_add_2p, &add_locked_base, 0, 1.15,
	  BOTH_NOTE },
	{ "read_64B",
	  "consistent read of a 64-byte struct value vs a hand-written "
	  "seqlock read",
	  "shval_read 64B struct", run_read_shval, NULL, "seqlock read",
	  run_read_base, NULL, 0, 1.5, NULL },
	{ "write_64B",
	  "locked write of the 64-byte struct vs robust mutex + memcpy",
	  "shval_write 64B struct", run_write_shval, NULL,
	  "robust mutex + memcpy", run_write_base, NULL, 0, 1.2, NULL },
	{ "wake_pingpong",
	  "two processes alternately set and wait on an atomic value vs bare "
	  "futex ping-pong",
	  "shval_set_i64 + shval_wait", run_ping_shval, NULL,
	  "bare futex wait/wake", run_ping_base, NULL, 50, 0.5,
	  "ns/op = one hand-off (set seen by the other process)" },
};

int main(int argc, char **argv)
{
	if (!bh_parse(&O, argc, argv))
		return 2;
	signal(SIGPIPE, SIG_IGN);
	B = shared_alloc(sizeof(base));
	C = shared_alloc(sizeof(ctl));
	robust_init(&B->mtx);
	robust_init(&B->wmtx);

	CHECK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &seg));
	CHECK(shval_create(seg, "bench.atomic", "q", SHVAL_ATOMIC, NULL, 0, &v_atomic));
	CHECK(shval_create(seg, "bench.locked", "q", SHVAL_RLOCK, NULL, 0, &v_locked));
	CHECK(shval_create(seg, "bench.struct64",
			   "a:q b:q c:q d:q e:q f:q g:q h:q", SHVAL_RLOCK, NULL, 0,
			   &v_struct));
	CHECK(shval_create(seg, "bench.ping", "q", SHVAL_ATOMIC, NULL, 0, &v_ping));
	struct shval_info inf;
	CHECK(shval_info(v_struct, &inf));
	if (inf.size != 64) {
		fprintf(stderr, "struct value is %zu bytes, not 64\n", inf.size);
		return 2;
	}
	for (int i = 0; i < 64; i++)
		wbuf[i] = (unsigned char)i;
	CHECK(shval_write(v_struct, wbuf, 64));
	memcpy(B->data, wbuf, 64);

	if (O.quick)
		printf("quick run: every case once for a tiny count; numbers are "
		       "not measurements\n");
	else
		printf("%d reps of >= %.2f s per side, alternating (ABBA); "
		       "loadavg %.2f\n",
		       O.reps, O.min_sec, bh_loadavg());
	int ok = 1;
	uint64_t q = 200; /* ops per side with --quick */
#define SIDE(lbl, f, c) { lbl, f, c, 0, { 0 }, { 0 } }
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct bench_case *k = &cases[i];
		bh_side a = SIDE(k->label_a, k->fn_a, (void *)k->ctx_a);
		bh_side b = SIDE(k->label_b, k->fn_b, (void *)k->ctx_b);
		ok &= bh_compare(&O, k->name, k->what, &a, &b,
				 k->quick_ops ? k->quick_ops : q, k->target,
				 k->note);
	}
	if (bh_selected(&O, "find_1M") || bh_selected(&O, "bytes_per_value")) {
		uint64_t big = O.quick ? 2000 : 1000000, small = O.quick ? 100 : 10000;
		double bpv_atomic = 0, bpv_locked = 0;
		findset *fb = populate(big, SHVAL_ATOMIC, &bpv_atomic);
		findset *fsm = populate(small, SHVAL_ATOMIC, NULL);
		{
			bh_side a = SIDE("shval_find among 1M", run_find, fb);
			bh_side b = SIDE("shval_find among 10k", run_find, fsm);
			ok &= bh_compare(&O, O.quick ? "find_1M(2k)" : "find_1M",
					 "shval_find (typed \"q\", + shval_close) among 1M "
					 "values vs among 10k, random order",
					 &a, &b, q, 2.0,
					 "baseline = shval itself at 10k (target: 1M within "
					 "2x of 10k)");
		}
		findset_free(fsm);
		findset_free(fb);
		if (bh_selected(&O, "bytes_per_value")) {
			findset *fl = populate(big, SHVAL_RLOCK, &bpv_locked);
			findset_free(fl);
			char note[160];
			snprintf(note, sizeof note,
				 "default locked (RLOCK) mode: %.1f bytes/value",
				 bpv_locked);
			bh_report_value(&O, "bytes_per_value",
					"segment bytes used per atomic int64 value, "
					"16-byte name, 1M values",
					bpv_atomic, "bytes", 128, note);
			bh_report_value(&O, "bytes_per_value_locked",
					"the same in the default locked mode (reported, "
					"the target is for atomic)",
					bpv_locked, "bytes", -1, NULL);
		}
	}
	shval_close(v_atomic);
	shval_close(v_locked);
	shval_close(v_struct);
	shval_close(v_ping);
	shval_seg_close(seg);
	if (O.json)
		fclose(O.json);
	if (!ok) {
		fprintf(stderr, "bench: a correctness check failed\n");
		return 1;
	}
	return 0;
}
