/*
 * tests/test_wake.c — lost wake-ups fail fast.
 *
 * Two (or three) processes ping-pong many rounds through values of every
 * mode: each side writes its own value with the round number and waits
 * (shval_wait on the other side's value, or shval_seg_wait on the segment)
 * until the other side's value shows the same round.  Every wait has a
 * short timeout (WAIT_NS, far above a normal hand-off), so a missed
 * wake-up ends the case within one timeout with
 *     "wake-up missed at round N (version seen X, current Y ...)"
 * instead of hanging until the harness's timeout.
 *
 * A timeout alone is not a missed wake-up: on a loaded machine a nice-19
 * process may not run for seconds.  After each write a side stamps the
 * round and the CLOCK_MONOTONIC time its write call returned (the wake-up,
 * if one was due, was sent by then).  The library times a wait out only if
 * the version had not moved at a re-check after the deadline, or if the
 * futex timed out before anyone woke it (src/wait.c, tag-timeout).  So a
 * timeout after the other side had written the awaited round before our
 * deadline is a lost wake-up, however slow the machine; a timeout before
 * the answer came is slowness, and the side waits again, up to
 * NO_ANSWER_NS for the round ("no answer within 60 s").
 *
 * The pattern most likely to lose a wake-up is built in: a side reads the
 * version it will wait on *before* it writes its own value, so the other
 * side's answer lands right after the waiter read the version and before
 * it sleeps.  Random pauses on both sides (none, a yield, a spin of a few
 * microseconds, a sleep longer than the waiter's spin phase) move that
 * answer across every step of the waiter's path: its spin, between
 * announcing itself and re-checking, and after it fell asleep.
 * Each configuration also runs a tight hand-off (run_tight below) aimed at
 * the narrowest window.  Each case takes a few seconds (tight hand-offs
 * stop after 3 s).
 *
 * Every case also runs on a Redis segment (TEST_BOTH; waits are XREAD
 * BLOCK on the server's streams): fewer rounds there (each is a few round
 * trips), sections write with shval_set_i64 inside lock/unlock (no
 * shval_data()), and "raw touch" (shval_data + shval_touch) is local only:
 * remotely shval_touch is SHVAL_EMODE, which the case checks instead.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <sys/mman.h>

#include <shval.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#include "test.h"
#include "segkind.h"

#define WAIT_NS (2 * SHVAL_SEC) /* a hand-off takes microseconds */
/* per configuration, ping-pong (a Redis round is ~10 round trips) */
#define ROUNDS (TEST_ON_REDIS ? 100 : 1500)
#define TIGHT_ROUNDS 20000       /* per configuration, tight hand-off... */
/* ...or as many as fit in 3 s (0.5 s on Redis) */
#define TIGHT_MAX_NS (TEST_ON_REDIS ? SHVAL_SEC / 2 : 3 * SHVAL_SEC)
#define NO_ANSWER_NS (60 * SHVAL_SEC) /* a round on a loaded machine */
#define MISSED_MARGIN_NS (SHVAL_SEC / 2) /* see wait_round */

/* The last write of one side: the round, then the time its write call
 * returned.  In memory shared by fork (stamps_new), one per value. */
struct stamp {
	_Atomic uint64_t ns;
	_Atomic int64_t round;
};

static struct stamp *stamps_new(void)
{
	struct stamp *st = mmap(NULL, 3 * sizeof *st, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(st != MAP_FAILED);
	return st;
}

static uint64_t rnd_state;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}
static void rnd_seed(uint64_t s) { rnd_state = s * 0x9E3779B97F4A7C15ull | 1; }

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A random pause: mostly none, sometimes long enough that the waiter has
 * given up spinning and sleeps (the library spins at most ~50 us). */
static void pause_some(void)
{
	switch (rnd() % 8) {
	case 0: case 1: case 2:
		break;
	case 3:
		sched_yield();
		break;
	case 4: case 5: { /* busy 0..~40 us */
		uint64_t end = now_ns() + rnd() % 40000;
		while (now_ns() < end)
			;
		break;
	}
	default: { /* 50..250 us asleep */
		struct timespec ts = { 0, 50000 + (long)(rnd() % 200000) };
		nanosleep(&ts, NULL);
		break;
	}
	}
}

/* How a side writes its value with the round number. */
enum how_write {
	W_SET,     /* shval_set_i64 (any mode) */
	W_ADD,     /* shval_add_i64 by one (locked, atomic) */
	W_SECTION, /* lock, store through shval_data, unlock (locked; on
		      Redis shval_set_i64, staged in the section) */
	W_TOUCH,   /* store through shval_data, shval_touch (raw) */
	W_GUARDED, /* shval_set_i64 inside the shared lock's section */
};

/* How a side waits for the other's value. */
enum how_wait { WAIT_VALUE, WAIT_SEG };

struct cfg {
	const char *name;
	const char *type;
	unsigned mode; /* SHVAL_RLOCK, SHVAL_RAW, SHVAL_ATOMIC; 0 for guarded */
	enum how_write wr;
	enum how_wait wt;
	int nwaiters;  /* children waiting on the parent's value: 1 or 2 */
};

struct side {
	shval_seg *seg;
	shval *lock;         /* the shared lock (W_GUARDED) */
	shval *mine;         /* written by this side */
	shval *theirs[2];    /* waited for by this side */
	struct stamp *mine_st, *theirs_st[2]; /* their last writes */
	int ntheirs;
	const struct cfg *c;
	const char *who;
	pid_t kids[2];       /* parent: to tell a dead child from a lost wake */
	int pause;           /* random pauses before waiting */
	int nkids;
};

static void write_round(struct side *s, int64_t r)
{
	switch (s->c->wr) {
	case W_SET:
		ASSERT_OK(shval_set_i64(s->mine, r));
		break;
	case W_ADD: {
		int64_t out;
		ASSERT_OK(shval_add_i64(s->mine, 1, &out));
		ASSERT_EQ(out, r);
		break;
	}
	case W_SECTION:
		ASSERT_OK(shval_lock(s->mine));
		if (TEST_ON_REDIS)
			ASSERT_OK(shval_set_i64(s->mine, r));
		else
			*(int64_t *)shval_data(s->mine) = r;
		ASSERT_OK(shval_unlock(s->mine));
		break;
	case W_TOUCH:
		*(volatile int64_t *)shval_data(s->mine) = r;
		ASSERT_OK(shval_touch(s->mine));
		break;
	case W_GUARDED:
		ASSERT_OK(shval_lock(s->lock));
		ASSERT_OK(shval_set_i64(s->mine, r));
		ASSERT_OK(shval_unlock(s->lock));
		break;
	}
	/* the time first: whoever sees the round sees its time */
	atomic_store(&s->mine_st->ns, now_ns());
	atomic_store(&s->mine_st->round, r);
}

static int64_t read_val(shval *v, const struct cfg *c)
{
	int64_t x;
	if (c->wr == W_TOUCH) /* raw: the bytes themselves */
		return *(volatile int64_t *)shval_data(v);
	ASSERT_OK(shval_get_i64(v, &x));
	return x;
}

static void check_kids(struct side *s)
{
	for (int i = 0; i < s->nkids; i++) {
		int st;
		if (waitpid(s->kids[i], &st, WNOHANG) == s->kids[i])
			FAIL("%s: %s: child %d ended (status 0x%x) while we "
			     "waited for it", s->c->name, s->who,
			     (int)s->kids[i], st);
	}
}

/* The version a side waits on (the segment's, or the other value's). */
static uint64_t version_of(struct side *s, shval *v)
{
	return s->c->wt == WAIT_SEG ? shval_seg_version(s->seg)
				    : shval_value_version(v);
}

/* Wait until every value in theirs[] shows round r.  seen[i] was read
 * before our own write of this round (the racy order, on purpose).
 * On a timeout: if the other side's stamp says it wrote round r and its
 * write returned before our deadline (less MISSED_MARGIN_NS, against
 * rounding), nobody woke us: a lost wake-up.  Otherwise it has not
 * answered yet: wait again on the same version, NO_ANSWER_NS at most. */
static void wait_round(struct side *s, int64_t r, uint64_t *seen)
{
	uint64_t round_start = now_ns();
	for (int i = 0; i < s->ntheirs; i++) {
		uint64_t *sn = s->c->wt == WAIT_SEG ? &seen[0] : &seen[i];
		for (;;) {
			int64_t x = read_val(s->theirs[i], s->c);
			if (x == r)
				break;
			if (x != r - 1)
				FAIL("%s: %s: round %lld: value %lld, expected "
				     "%lld or %lld", s->c->name, s->who,
				     (long long)r, (long long)x,
				     (long long)(r - 1), (long long)r);
			if (s->pause && rnd() % 4 == 0)
				pause_some(); /* let the answer land before we sleep */
			uint64_t started = now_ns();
			int rc = s->c->wt == WAIT_SEG
					 ? shval_seg_wait(s->seg, sn, WAIT_NS)
					 : shval_wait(s->theirs[i], sn, WAIT_NS);
			if (rc == -ETIMEDOUT) {
				check_kids(s);
				struct stamp *st = s->theirs_st[i];
				int64_t sr = atomic_load(&st->round);
				uint64_t sns = atomic_load(&st->ns);
				bool missed = sr == r &&
					      sns + MISSED_MARGIN_NS <
						      started + WAIT_NS;
				bool given_up = now_ns() - round_start >
						NO_ANSWER_NS;
				if (!missed && !given_up)
					continue; /* slow, not lost */
				x = read_val(s->theirs[i], s->c);
				FAIL("%s: %s: %s at round %lld (version seen "
				     "%llu, current %llu; value %lld, waiting "
				     "for %lld; their last write: round %lld, "
				     "%.3f s into our %.1f s wait)",
				     s->c->name, s->who,
				     missed ? "wake-up missed"
					    : "no answer within 60 s",
				     (long long)r, (unsigned long long)*sn,
				     (unsigned long long)(s->c->wt == WAIT_SEG
					? shval_seg_version(s->seg)
					: shval_value_version(s->theirs[i])),
				     (long long)x, (long long)r, (long long)sr,
				     ((double)sns - (double)started) / 1e9,
				     (double)WAIT_NS / 1e9);
			}
			if (rc != -EINTR)
				ASSERT_OK(rc);
		}
	}
}

/* Values: "p" (the parent's), "c0", "c1" (the children's).  The parent
 * writes round r, the children wait for it and answer with r, the parent
 * waits for every answer, and so on. */
static void run(const struct cfg *c)
{
	shval_seg *seg = test_seg_new();
	shval *lock = NULL, *p, *kid[2];
	const char *names[2] = { "c0", "c1" };
	if (c->wr == W_GUARDED) {
		ASSERT_OK(shval_lock_create(seg, "L", 0, &lock));
		ASSERT_OK(shval_create_guarded(seg, "p", c->type, lock, NULL, 0, &p));
		for (int i = 0; i < c->nwaiters; i++)
			ASSERT_OK(shval_create_guarded(seg, names[i], c->type,
						       lock, NULL, 0, &kid[i]));
	} else {
		ASSERT_OK(shval_create(seg, "p", c->type, c->mode, NULL, 0, &p));
		for (int i = 0; i < c->nwaiters; i++)
			ASSERT_OK(shval_create(seg, names[i], c->type, c->mode,
					       NULL, 0, &kid[i]));
	}
	struct stamp *st = stamps_new(); /* [0] p, [1 + k] child k */
	struct side par = { .seg = seg, .lock = lock, .mine = p, .c = c,
			    .who = "parent", .ntheirs = c->nwaiters,
			    .pause = 1, .mine_st = &st[0] };
	for (int i = 0; i < c->nwaiters; i++) {
		par.theirs[i] = kid[i];
		par.theirs_st[i] = &st[1 + i];
	}
	uint64_t t0 = now_ns();
	for (int k = 0; k < c->nwaiters; k++) {
		pid_t pid = fork();
		ASSERT(pid >= 0);
		if (pid == 0) {
			rnd_seed((uint64_t)getpid() * 7919u + 11);
			struct side ch = { .seg = seg, .lock = lock,
					   .mine = kid[k], .theirs = { p },
					   .mine_st = &st[1 + k],
					   .theirs_st = { &st[0] },
					   .ntheirs = 1, .c = c, .pause = 1,
					   .who = k ? "child 1" : "child 0" };
			/* Round 0 is the initial state (all zero). */
			uint64_t seen[2] = { version_of(&ch, p) };
			for (int64_t r = 1; r <= ROUNDS; r++) {
				wait_round(&ch, r, seen);
				/* seen[] is now the version that showed round
				 * r: the parent's round r+1 may come at any
				 * moment from here on. */
				pause_some();
				write_round(&ch, r);
			}
			exit(0);
		}
		par.kids[par.nkids++] = pid;
	}
	rnd_seed((uint64_t)getpid());
	for (int64_t r = 1; r <= ROUNDS; r++) {
		uint64_t seen[2];
		for (int i = 0; i < c->nwaiters; i++)
			seen[i] = version_of(&par, kid[i]);
		pause_some();
		write_round(&par, r);
		wait_round(&par, r, seen);
	}
	for (int k = 0; k < par.nkids; k++)
		test_wait_ok(par.kids[k]);
	printf("%s: %d rounds in %.2f s\n", c->name, ROUNDS,
	       (double)(now_ns() - t0) / 1e9);
	munmap(st, 3 * sizeof *st);
	shval_close(p);
	for (int i = 0; i < c->nwaiters; i++)
		shval_close(kid[i]);
	shval_close(lock);
	test_seg_done(seg);
}

/* Raw values changed through shval_data() + shval_touch(): local only.  On
 * Redis both are refused as documented (no shared memory). */
static bool touch_offered(void)
{
	if (!TEST_ON_REDIS)
		return true;
	shval_seg *seg = test_seg_new();
	shval *v;
	ASSERT_OK(shval_create(seg, "raw", "q", SHVAL_RAW, NULL, 0, &v));
	ASSERT(shval_data(v) == NULL);
	ASSERT_ERR(shval_touch(v), SHVAL_EMODE);
	shval_close(v);
	test_seg_done(seg);
	printf("raw touch: SHVAL_EMODE on Redis, as documented\n");
	return false;
}

/* Tight hand-off: the waiter reads the version, then says "ready" through
 * a plain word in shared memory (no wake-up involved) and goes to wait; the
 * writer spins on that word and writes after a random delay (0..2 us, a
 * quarter of the rounds 0..20 us: the waiter's adaptive spin settles near
 * the writer's delay), so its change lands, round after round, at every
 * point of the waiter's short path from its version read to its sleep,
 * including the few instructions between giving up spinning and announcing
 * itself.  (With ping-pong through waits alone, the answer comes a futex
 * round trip later and almost never lands in that window.)  That window
 * is a few nanoseconds wide: a waiter that forgets to re-check after
 * announcing itself is caught only now and then (about one run in five
 * here), while a wake-up that reaches one waiter of two, or a segment
 * watcher that is not re-armed, fails every run within a few rounds. */
static void run_tight(const struct cfg *c)
{
	shval_seg *seg = test_seg_new();
	shval *lock = NULL, *v;
	if (c->wr == W_GUARDED) {
		ASSERT_OK(shval_lock_create(seg, "L", 0, &lock));
		ASSERT_OK(shval_create_guarded(seg, "v", c->type, lock, NULL, 0, &v));
	} else {
		ASSERT_OK(shval_create(seg, "v", c->type, c->mode, NULL, 0, &v));
	}
	/* ack[k]: the round waiter k is ready for; ack[2]: the last round
	 * (shared memory of the processes, whatever the segment's kind) */
	int64_t *ack = mmap(NULL, 3 * sizeof *ack, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(ack != MAP_FAILED);
	const int64_t rounds = TIGHT_ROUNDS;
	ack[2] = rounds;
	struct stamp *st = stamps_new(); /* [0] v */
	struct side par = { .seg = seg, .lock = lock, .mine = v, .c = c,
			    .who = "writer", .mine_st = &st[0] };
	uint64_t t0 = now_ns();
	for (int k = 0; k < c->nwaiters; k++) {
		pid_t pid = fork();
		ASSERT(pid >= 0);
		if (pid == 0) {
			rnd_seed((uint64_t)getpid() * 7919u + 11);
			struct side ch = { .seg = seg, .lock = lock,
					   .theirs = { v }, .ntheirs = 1,
					   .theirs_st = { &st[0] },
					   .c = c, .who = k ? "waiter 1" : "waiter 0" };
			for (int64_t r = 1; r <= rounds; r++) {
				uint64_t seen[2] = { version_of(&ch, v) };
				__atomic_store_n(&ack[k], r, __ATOMIC_SEQ_CST);
				wait_round(&ch, r, seen);
				if (__atomic_load_n(&ack[2], __ATOMIC_SEQ_CST) == r)
					break;
			}
			exit(0);
		}
		par.kids[par.nkids++] = pid;
	}
	rnd_seed((uint64_t)getpid());
	int64_t r;
	for (r = 1; r <= rounds; r++) {
		for (int k = 0; k < c->nwaiters; k++) {
			uint64_t spins = 0, since = now_ns();
			while (__atomic_load_n(&ack[k], __ATOMIC_SEQ_CST) != r) {
				if (++spins % 256 == 0) {
					sched_yield(); /* one CPU: let it run */
					if (now_ns() - since > (uint64_t)NO_ANSWER_NS) {
						check_kids(&par);
						FAIL("%s: waiter %d did not get ready for "
						     "round %lld within 60 s", c->name, k,
						     (long long)r);
					}
				}
			}
		}
		uint64_t end = now_ns() + (rnd() % 4 ? rnd() % 2000 : rnd() % 20000);
		if (end - t0 > (uint64_t)TIGHT_MAX_NS || r == rounds)
			__atomic_store_n(&ack[2], r, __ATOMIC_SEQ_CST); /* last */
		while (now_ns() < end)
			;
		write_round(&par, r);
		if (__atomic_load_n(&ack[2], __ATOMIC_SEQ_CST) == r)
			break;
	}
	for (int k = 0; k < par.nkids; k++)
		test_wait_ok(par.kids[k]);
	printf("%s, tight: %lld rounds in %.2f s\n", c->name, (long long)r,
	       (double)(now_ns() - t0) / 1e9);
	munmap(st, 3 * sizeof *st);
	shval_close(v);
	munmap(ack, 3 * sizeof *ack);
	shval_close(lock);
	test_seg_done(seg);
}

#define RUN(...)                                          \
	do {                                              \
		static const struct cfg c_ = { __VA_ARGS__ }; \
		if (c_.wr == W_TOUCH && !touch_offered()) \
			break;                            \
		run(&c_);                                 \
		run_tight(&c_);                           \
	} while (0)

TEST_BOTH(value_wait_locked)
{
	RUN("locked set", "q", SHVAL_RLOCK, W_SET, WAIT_VALUE, 1);
	RUN("locked section", "q", SHVAL_LOCK, W_SECTION, WAIT_VALUE, 1);
	RUN("locked add", "q", SHVAL_RLOCK, W_ADD, WAIT_VALUE, 1);
}

TEST_BOTH(value_wait_guarded)
{
	RUN("guarded", "q", 0, W_GUARDED, WAIT_VALUE, 1);
}

TEST_BOTH(value_wait_raw)
{
	RUN("raw set", "q", SHVAL_RAW, W_SET, WAIT_VALUE, 1);
	RUN("raw touch", "q", SHVAL_RAW, W_TOUCH, WAIT_VALUE, 1);
}

TEST_BOTH(value_wait_atomic)
{
	RUN("atomic set", "q", SHVAL_ATOMIC, W_SET, WAIT_VALUE, 1);
	RUN("atomic add", "q", SHVAL_ATOMIC, W_ADD, WAIT_VALUE, 1);
	RUN("atomic set 4 bytes", "i", SHVAL_ATOMIC, W_SET, WAIT_VALUE, 1);
}

/* Two waiters on one value: each wake-up must reach both. */
TEST_BOTH(value_wait_two_waiters)
{
	RUN("locked, two waiters", "q", SHVAL_RLOCK, W_SET, WAIT_VALUE, 2);
	RUN("atomic, two waiters", "q", SHVAL_ATOMIC, W_SET, WAIT_VALUE, 2);
	RUN("raw, two waiters", "q", SHVAL_RAW, W_SET, WAIT_VALUE, 2);
}

TEST_BOTH(seg_wait)
{
	RUN("seg wait, locked", "q", SHVAL_RLOCK, W_SET, WAIT_SEG, 1);
	RUN("seg wait, raw", "q", SHVAL_RAW, W_SET, WAIT_SEG, 1);
	RUN("seg wait, atomic", "q", SHVAL_ATOMIC, W_SET, WAIT_SEG, 1);
	RUN("seg wait, guarded", "q", 0, W_GUARDED, WAIT_SEG, 1);
}

TEST_BOTH(seg_wait_two_waiters)
{
	RUN("seg wait, locked, two waiters", "q", SHVAL_RLOCK, W_SET, WAIT_SEG, 2);
	RUN("seg wait, atomic, two waiters", "q", SHVAL_ATOMIC, W_ADD, WAIT_SEG, 2);
}

TEST_MAIN()
