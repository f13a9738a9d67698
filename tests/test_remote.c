/*
 * tests/test_remote.c — what only Redis segments (issue 14) have, against
 * a redis-server of the test's own (tests/redis_util.h): the same
 * operations on a local, a redis:// and a redis+unix:// segment give the
 * same transcript; connections cut and dropped mid-section; a lock
 * holder's lease renewed while it lives, ended when it is killed or
 * paused; the server restarted or losing its data; refusals (foreign keys,
 * passwords, oversized values, read-only).
 *
 * The behaviour both kinds share (values, waits, sections, exact totals
 * from several processes, owner death in a shared-lock section) is tested
 * by the main suites' TEST_BOTH cases on both kinds (tests/README.md).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/mman.h>

#include <shval.h>

#include "test.h"
#include "redis_util.h"

/* ---- one transcript, any kind of segment ---- */

struct tx {
	char *buf;
	size_t len, cap;
};

static void txf(struct tx *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void txf(struct tx *t, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (t->len + (size_t)n + 2 > t->cap) {
		t->cap = (t->cap + (size_t)n + 2) * 2;
		t->buf = realloc(t->buf, t->cap);
		ASSERT(t->buf);
	}
	memcpy(t->buf + t->len, line, (size_t)n);
	t->len += (size_t)n;
	t->buf[t->len++] = '\n';
	t->buf[t->len] = 0;
}

/* text of a value, or the error's name */
static void txv(struct tx *t, const char *what, shval *v)
{
	char buf[4096];
	int r = shval_to_text(v, 0, buf, sizeof buf, NULL);
	txf(t, "%s: %s", what, r ? shval_errname(r) : buf);
}

#define TXR(t, call) txf(t, "%s -> %s", #call, shval_errname(call))

/* Every kind of value and operation the API offers on a value. */
static void transcript(shval_seg *seg, struct tx *t)
{
	static const struct {
		const char *type;
		unsigned mode;
	} vals[] = {
		{ "q", SHVAL_ATOMIC }, { "Q", SHVAL_RLOCK },
		{ "b", SHVAL_LOCK },   { "B", SHVAL_ATOMIC },
		{ "h", SHVAL_RAW },    { "I", SHVAL_RLOCK },
		{ "d", SHVAL_ATOMIC }, { "f", SHVAL_RLOCK },
		{ "?", SHVAL_RLOCK },  { "c", SHVAL_RAW },
		{ "u", SHVAL_RLOCK },  { "N", SHVAL_ATOMIC },
	};
	for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
		char name[32];
		snprintf(name, sizeof name, "s%zu", i);
		shval *v = NULL;
		int r = shval_create(seg, name, vals[i].type, vals[i].mode,
				     NULL, 0, &v);
		txf(t, "create %s %s -> %s", name, vals[i].type,
		    shval_errname(r));
		if (r)
			continue;
		int64_t i64 = 0;
		uint64_t u64 = 0;
		double f = 0;
		TXR(t, shval_set_i64(v, 100));
		TXR(t, shval_set_i64(v, 300));
		TXR(t, shval_set_i64(v, -1));
		TXR(t, shval_add_i64(v, 200, &i64));
		txf(t, "  result %lld", (long long)i64);
		TXR(t, shval_add_i64(v, INT64_MAX, &i64));
		txf(t, "  result %lld", (long long)i64);
		TXR(t, shval_sub_i64(v, 7, &i64));
		TXR(t, shval_get_i64(v, &i64));
		txf(t, "  get %lld", (long long)i64);
		TXR(t, shval_get_u64(v, &u64));
		txf(t, "  getu %llu", (unsigned long long)u64);
		TXR(t, shval_xor_u64(v, 0xff00ff00ff00ff0full, &u64));
		txf(t, "  old %llu", (unsigned long long)u64);
		TXR(t, shval_or_u64(v, 0x10, &u64));
		TXR(t, shval_and_u64(v, 0x7ffffffffffffff1ull, &u64));
		txf(t, "  old %llu", (unsigned long long)u64);
		TXR(t, shval_exchange_i64(v, 42, &i64));
		txf(t, "  old %lld", (long long)i64);
		int64_t e = 41;
		TXR(t, shval_cas_i64(v, &e, 43));
		txf(t, "  expected %lld", (long long)e);
		TXR(t, shval_cas_i64(v, &e, 44));
		TXR(t, shval_set_f64(v, 0.1));
		TXR(t, shval_set_f64(v, 1e300));
		TXR(t, shval_add_f64(v, 0.2, &f));
		txf(t, "  f %.17g", f);
		double de = 0.3;
		TXR(t, shval_cas_f64(v, &de, 1.5));
		txf(t, "  fe %.17g", de);
		TXR(t, shval_get_f64(v, &f));
		txf(t, "  getf %.17g", f);
		const char *args[] = { "7" };
		TXR(t, shval_from_text(v, 1, args));
		const char *bad[] = { "x7" };
		TXR(t, shval_from_text(v, 1, bad));
		txv(t, "  text", v);
		struct shval_info in;
		TXR(t, shval_info(v, &in));
		txf(t, "  info %s %s mode %x kind %u size %zu count %zu",
		    in.name, in.type, in.mode, in.kind, in.size, in.count);
		TXR(t, shval_lock(v));
		TXR(t, shval_unlock(v));
		TXR(t, shval_unlock(v));
		shval_close(v);
	}
	/* arrays, strings, structs */
	shval *a, *s, *st, *v;
	TXR(t, shval_create(seg, "arr", "5d", 0, NULL, 0, &a));
	double xs[5] = { 1, 2.5, -3, 1e-300, 5 }, ys[5];
	TXR(t, shval_write(a, xs, sizeof xs));
	TXR(t, shval_write(a, xs, 8));
	TXR(t, shval_array_set(a, 3, 2, xs));
	TXR(t, shval_array_set(a, 4, 2, xs));
	TXR(t, shval_array_get(a, 1, 3, ys));
	txf(t, "  ys %g %g %g", ys[0], ys[1], ys[2]);
	txv(t, "  arr", a);
	const char *five[] = { "1", "2", "3", "4", "5e3" };
	TXR(t, shval_from_text(a, 5, five));
	TXR(t, shval_from_text(a, 4, five));
	txv(t, "  arr", a);
	TXR(t, shval_add_i64(a, 1, NULL));
	TXR(t, shval_create(seg, "str", "8s", SHVAL_LOCK, NULL, 0, &s));
	TXR(t, shval_set_str(s, "ab\0cd", 5));
	TXR(t, shval_set_str(s, "123456789", 9));
	char sb[16];
	size_t sl = 0;
	TXR(t, shval_get_str(s, sb, sizeof sb, &sl));
	txf(t, "  len %zu %d", sl, memcmp(sb, "ab\0cd", 5));
	TXR(t, shval_get_str(s, sb, 2, &sl));
	txv(t, "  str", s);
	TXR(t, shval_create(seg, "st", "x:d y:q name:16s ok:?", SHVAL_RLOCK,
			    NULL, 0, &st));
	TXR(t, shval_field_set(st, "x", &xs[1], 8));
	TXR(t, shval_field_set(st, "y", &xs[1], 4));
	TXR(t, shval_field_set(st, "nope", &xs[1], 8));
	const char *fa[] = { "name=hi there", "y=-5", "ok=true" };
	TXR(t, shval_from_text(st, 3, fa));
	const char *fb[] = { "ok=2" };
	TXR(t, shval_from_text(st, 1, fb));
	txv(t, "  st", st);
	char jb[512];
	TXR(t, shval_to_text(st, SHVAL_TEXT_JSON, jb, sizeof jb, NULL));
	txf(t, "  json %s", jb);
	int64_t y = 0;
	size_t fl = 0;
	TXR(t, shval_field_get(st, "y", &y, sizeof y, &fl));
	txf(t, "  y %lld %zu", (long long)y, fl);
	shval_field_info fi;
	TXR(t, shval_field_info_at(st, 2, &fi));
	txf(t, "  fi %s %s %zu %zu", fi.name, fi.type, fi.offset, fi.size);
	unsigned char raw[64];
	memset(raw, 0, sizeof raw);
	raw[32] = 2; /* a bool of 2: refused, value unchanged */
	struct shval_info sti;
	TXR(t, shval_info(st, &sti));
	TXR(t, shval_write(st, raw, sti.size));
	txv(t, "  st", st);
	/* finding, types, removal */
	TXR(t, shval_find(seg, "st", "x:d   y:q name:16s ok:?", &v));
	shval_close(v);
	TXR(t, shval_find(seg, "st", "x:d", &v));
	TXR(t, shval_find(seg, "nope", NULL, &v));
	TXR(t, shval_find(seg, "bad name", NULL, &v));
	TXR(t, shval_create(seg, "st", "q", 0, NULL, 0, &v));
	TXR(t, shval_create(seg, "at", "4d", SHVAL_ATOMIC, NULL, 0, &v));
	TXR(t, shval_create(seg, "bt", "x", 0, NULL, 0, &v));
	TXR(t, shval_create(seg, "it", "q", 0, xs, 3, &v));
	bool created = true;
	TXR(t, shval_find_or_create(seg, "st", "q", 0, NULL, 0, &v, &created));
	TXR(t, shval_find_or_create(seg, "arr", "5d", SHVAL_RAW, NULL, 0, &v,
				    &created));
	TXR(t,
	    shval_find_or_create(seg, "arr", "5d", 0, NULL, 0, &v, &created));
	txf(t, "  created %d", created);
	shval_close(v);
	/* a shared lock over two values: a section commits both */
	shval *lk, *g1, *g2;
	TXR(t, shval_lock_create(seg, "lk", SHVAL_RLOCK, &lk));
	int64_t one = 1;
	TXR(t, shval_create_guarded(seg, "g1", "q", lk, &one, 8, &g1));
	TXR(t, shval_create_guarded(seg, "g2", "q", lk, NULL, 0, &g2));
	TXR(t, shval_lock(lk));
	TXR(t, shval_add_i64(g1, -1, NULL));
	TXR(t, shval_add_i64(g2, 1, NULL));
	TXR(t, shval_get_i64(g1, &y));
	txf(t, "  in section g1 %lld", (long long)y);
	TXR(t, shval_unlock(lk));
	txv(t, "  g1", g1);
	txv(t, "  g2", g2);
	TXR(t, shval_remove(seg, "lk"));
	TXR(t, shval_read(lk, raw, 8));
	/* listing */
	uint64_t cur = 0;
	struct shval_info li;
	int n = 0;
	while (shval_seg_next(seg, &cur, "s1", &li) == 0) {
		txf(t, "  ls %s %s", li.name, li.type);
		n++;
	}
	txf(t, "  listed %d", n);
	TXR(t, shval_remove(seg, "str"));
	TXR(t, shval_remove(seg, "str"));
	TXR(t, shval_get_str(s, sb, sizeof sb, &sl));
	TXR(t, shval_read(a, ys, 3));
	shval_close(a);
	shval_close(s);
	shval_close(st);
	shval_close(lk);
	shval_close(g1);
	shval_close(g2);
}

/* Local and remote (tcp and unix socket) give the same transcript. */
TEST(same_as_local)
{
	struct tredis rd;
	tredis_start(&rd, "same", NULL);
	const char *names[3] = { test_segname("same"), rd.url, NULL };
	char uurl[1000];
	snprintf(uurl, sizeof uurl, "%s", rd.uurl);
	/* the unix-socket form on another prefix */
	char *p = strstr(uurl, "prefix=same");
	ASSERT(p);
	memcpy(p, "prefix=samu", 11);
	names[2] = uurl;
	struct tx tx[3] = { { 0 } };
	for (int k = 0; k < 3; k++) {
		shval_seg *seg;
		ASSERT_OK(shval_seg_open(names[k], SHVAL_CREATE, NULL, &seg));
		transcript(seg, &tx[k]);
		ASSERT_OK(shval_seg_close(seg));
		ASSERT_OK(shval_seg_unlink(names[k]));
	}
	if (strcmp(tx[0].buf, tx[1].buf) != 0 ||
	    strcmp(tx[0].buf, tx[2].buf) != 0 || getenv("SHVAL_TEST_DUMP")) {
		FILE *f = fopen("test_remote.local.txt", "w");
		fputs(tx[0].buf, f);
		fclose(f);
		f = fopen("test_remote.redis.txt", "w");
		fputs(tx[1].buf, f);
		fclose(f);
		f = fopen("test_remote.unix.txt", "w");
		fputs(tx[2].buf, f);
		fclose(f);
		FAIL("transcripts differ: diff test_remote.local.txt "
		     "test_remote.redis.txt / test_remote.unix.txt");
	}
	ASSERT(strstr(tx[0].buf, "SHVAL_ERANGE"));
	ASSERT(strstr(tx[0].buf, "SHVAL_EOWNERDEAD") == NULL);
	for (int k = 0; k < 3; k++)
		free(tx[k].buf);
	tredis_stop(&rd);
}

/* ---- several processes ---- */

/* Connections cut again and again (CLIENT KILL) while processes add and
 * commit sections: every change is applied exactly once (a change resent
 * on a new connection is recognised), a section survives a cut. */
TEST(exact_while_connections_cut)
{
	struct tredis rd;
	tredis_start(&rd, "cut", "timeout_ms=20000");
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *a, *lk, *x, *y;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	ASSERT_OK(shval_lock_create(seg, "lk", SHVAL_RLOCK, &lk));
	ASSERT_OK(shval_create_guarded(seg, "x", "q", lk, NULL, 0, &x));
	ASSERT_OK(shval_create_guarded(seg, "y", "q", lk, NULL, 0, &y));
	pid_t kids[3];
	for (int k = 0; k < 3; k++) {
		kids[k] = fork();
		ASSERT(kids[k] >= 0);
		if (kids[k] == 0) {
			for (int i = 0; i < 200; i++) {
				ASSERT_OK(shval_add_i64(a, 1, NULL));
				if (i % 20 == 0) {
					ASSERT_OK(shval_lock(lk));
					ASSERT_OK(shval_add_i64(x, 1, NULL));
					ASSERT_OK(shval_add_i64(y, -1, NULL));
					ASSERT_OK(shval_unlock(lk));
				}
			}
			exit(0);
		}
	}
	pid_t killer = fork();
	ASSERT(killer >= 0);
	if (killer == 0) {
		redisContext *c = redisConnectUnix(rd.sock);
		ASSERT(c && !c->err);
		for (;;) {
			redisReply *r =
				redisCommand(c, "CLIENT KILL TYPE normal");
			ASSERT(r);
			freeReplyObject(r);
			usleep(15000);
		}
	}
	for (int k = 0; k < 3; k++)
		test_wait_ok(kids[k]);
	kill(killer, SIGKILL);
	waitpid(killer, NULL, 0);
	redisReply *r = tredis_cmd(&rd, "INFO stats");
	ASSERT(strstr(r->str, "total_connections_received:"));
	long conns = atol(strstr(r->str, "total_connections_received:") + 27);
	freeReplyObject(r);
	ASSERT_GT(conns, 10); /* connections were cut indeed */
	int64_t v;
	ASSERT_OK(shval_get_i64(a, &v));
	ASSERT_EQ(v, 600);
	ASSERT_OK(shval_get_i64(x, &v));
	ASSERT_EQ(v, 30);
	ASSERT_OK(shval_get_i64(y, &v));
	ASSERT_EQ(v, -30);
	shval_close(a);
	shval_close(lk);
	shval_close(x);
	shval_close(y);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* The holder's connection dropped inside a section: the unlock reconnects
 * and commits (the lease is still its own); dropped again for longer than
 * the lease (the server stopped), the section is refused, not half-done. */
TEST(connection_dropped_in_section)
{
	struct tredis rd;
	/* a lease long enough for a loaded machine (with 300 ms, a ctest -j2
	 * run beside a busy loop and .ci/run once lost the lease between a
	 * lock and its unlock), short enough to outlast below: the server
	 * stays down for longer than a lease after the last renewal */
	tredis_start_p(&rd, "drop", "lease_ms=1200&timeout_ms=5000", true);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *lk, *x, *y;
	ASSERT_OK(shval_lock_create(seg, "lk", SHVAL_RLOCK, &lk));
	ASSERT_OK(shval_create_guarded(seg, "x", "q", lk, NULL, 0, &x));
	ASSERT_OK(shval_create_guarded(seg, "y", "q", lk, NULL, 0, &y));
	ASSERT_OK(shval_lock(lk));
	ASSERT_OK(shval_set_i64(x, 1));
	freeReplyObject(tredis_cmd(&rd, "CLIENT KILL TYPE normal"));
	ASSERT_OK(shval_set_i64(y, 2));
	ASSERT_OK(shval_unlock(lk));
	int64_t v;
	ASSERT_OK(shval_get_i64(x, &v));
	ASSERT_EQ(v, 1);
	ASSERT_OK(shval_get_i64(y, &v));
	ASSERT_EQ(v, 2);
	/* the server gone for more than the lease: the commit is refused */
	ASSERT_OK(shval_lock(lk));
	ASSERT_OK(shval_set_i64(x, 10));
	ASSERT_OK(shval_set_i64(y, 20));
	tredis_kill(&rd, SIGKILL);
	unlink(rd.sock);
	usleep(1300 * 1000);
	tredis_spawn(&rd);  /* same port, its append-only file */
	usleep(400 * 1000); /* the lease's time runs on the server */
	ASSERT_ERR(shval_unlock(lk), SHVAL_ENOTOWNER);
	ASSERT_OK(shval_get_i64(x, &v));
	ASSERT_EQ(v, 1);
	ASSERT_OK(shval_get_i64(y, &v));
	ASSERT_EQ(v, 2);
	ASSERT_ERR(shval_lock(lk), SHVAL_EOWNERDEAD); /* its own dead lease */
	ASSERT_OK(shval_unlock(lk));
	shval_close(lk);
	shval_close(x);
	shval_close(y);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* A pipe to know when a child is inside its section. */
static void child_ready(int fd)
{
	char c = 'r';
	ASSERT(write(fd, &c, 1) == 1);
}
static void wait_ready(int fd)
{
	char c;
	ASSERT(read(fd, &c, 1) == 1);
}

/* SIGKILL a lock holder mid-section: the next locker gets
 * SHVAL_EOWNERDEAD and the committed state; a half-done shared-lock
 * section never appears. */
TEST(owner_killed)
{
	struct tredis rd;
	/* renewals every 500 ms: a renewal may be up to a second late (a
	 * loaded machine; with lease_ms=800 a 533 ms stall of the renewer
	 * once lost a live owner's lease in a ctest -j2 run beside a busy
	 * loop) */
	tredis_start(&rd, "kill", "lease_ms=1500");
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *lk, *x, *y, *own;
	ASSERT_OK(shval_lock_create(seg, "lk", SHVAL_RLOCK, &lk));
	int64_t ten = 10;
	ASSERT_OK(shval_create_guarded(seg, "x", "q", lk, &ten, 8, &x));
	ASSERT_OK(shval_create_guarded(seg, "y", "q", lk, NULL, 0, &y));
	ASSERT_OK(shval_create(seg, "own", "16s", SHVAL_LOCK, NULL, 0, &own));
	ASSERT_OK(shval_set_str(own, "committed", 9));
	int p[2];
	ASSERT(pipe(p) == 0);
	pid_t kid = fork();
	ASSERT(kid >= 0);
	if (kid == 0) {
		ASSERT_OK(shval_lock(lk));
		ASSERT_OK(shval_add_i64(x, -4, NULL)); /* staged */
		ASSERT_OK(shval_lock(own));
		ASSERT_OK(shval_set_str(own, "half", 4));
		child_ready(p[1]);
		ASSERT_OK(shval_add_i64(y, 4, NULL));
		pause();
		exit(1);
	}
	wait_ready(p[0]);
	/* readers meanwhile see the committed state and never wait */
	int64_t v;
	ASSERT_OK(shval_get_i64(x, &v));
	ASSERT_EQ(v, 10);
	/* the lease is renewed while the owner lives: still held after
	 * several leases */
	usleep(3500 * 1000); /* more than two leases */
	ASSERT_ERR(shval_trylock(lk), -EBUSY);
	ASSERT_ERR(shval_timedlock(own, 100 * SHVAL_MSEC), -ETIMEDOUT);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	ASSERT_ERR(shval_timedlock(lk, 5 * SHVAL_SEC), SHVAL_EOWNERDEAD);
	ASSERT_OK(shval_get_i64(x, &v));
	ASSERT_EQ(v, 10);
	ASSERT_OK(shval_get_i64(y, &v));
	ASSERT_EQ(v, 0);
	ASSERT_OK(shval_unlock(lk));
	/* reported once */
	ASSERT_OK(shval_lock(lk));
	ASSERT_OK(shval_unlock(lk));
	/* a write that takes the lock internally recovers silently */
	ASSERT_OK(shval_set_str(own, "later", 5));
	ASSERT_OK(shval_lock(own));
	ASSERT_OK(shval_unlock(own));
	char buf[32];
	size_t n;
	ASSERT_OK(shval_get_str(own, buf, sizeof buf, &n));
	ASSERT_EQ(n, 5);
	ASSERT(memcmp(buf, "later", 5) == 0);
	shval_close(lk);
	shval_close(x);
	shval_close(y);
	shval_close(own);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* An owner paused beyond its lease: the next locker takes over, and the
 * paused owner's late commit is refused by the token. */
TEST(paused_owner_refused)
{
	struct tredis rd;
	/* not shorter: the parent's own section below must outlive a stall
	 * of a loaded machine (connection_dropped_in_section, owner_killed) */
	tredis_start(&rd, "pause", "lease_ms=1000");
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *v;
	ASSERT_OK(shval_create(seg, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	int p[2];
	ASSERT(pipe(p) == 0);
	pid_t kid = fork();
	ASSERT(kid >= 0);
	if (kid == 0) {
		ASSERT_OK(shval_lock(v));
		ASSERT_OK(shval_set_i64(v, 666));
		child_ready(p[1]);
		raise(SIGSTOP);
		int r = shval_unlock(v);
		exit(r == SHVAL_ENOTOWNER ? 0 : 3);
	}
	wait_ready(p[0]);
	int st;
	ASSERT_EQ(waitpid(kid, &st, WUNTRACED), kid);
	ASSERT(WIFSTOPPED(st));
	ASSERT_ERR(shval_timedlock(v, 5 * SHVAL_SEC), SHVAL_EOWNERDEAD);
	ASSERT_OK(shval_set_i64(v, 7));
	ASSERT_OK(shval_unlock(v));
	kill(kid, SIGCONT);
	test_wait_ok(kid);
	int64_t x;
	ASSERT_OK(shval_get_i64(v, &x));
	ASSERT_EQ(x, 7);
	shval_close(v);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* The server killed and restarted (with its append-only file) mid-run:
 * handles reconnect, adds are exact (none lost, none applied twice), and
 * a waiter blocked across the restart wakes. */
TEST(server_restart)
{
	struct tredis rd;
	tredis_start_p(&rd, "rs", "timeout_ms=10000", true);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *v;
	ASSERT_OK(shval_create(seg, "v", "q", SHVAL_RLOCK, NULL, 0, &v));
	for (int i = 0; i < 50; i++)
		ASSERT_OK(shval_add_i64(v, 1, NULL));
	int p[2];
	ASSERT(pipe(p) == 0);
	pid_t kid = fork();
	ASSERT(kid >= 0);
	if (kid == 0) {
		uint64_t s = shval_value_version(v);
		child_ready(p[1]);
		ASSERT_OK(shval_wait(v, &s, 20 * SHVAL_SEC));
		int64_t x;
		ASSERT_OK(shval_get_i64(v, &x));
		exit(x >= 51 ? 0 : 4);
	}
	wait_ready(p[0]);
	usleep(100000);
	tredis_restart(&rd);
	for (int i = 0; i < 50; i++)
		ASSERT_OK(shval_add_i64(v, 1, NULL));
	test_wait_ok(kid);
	int64_t x;
	ASSERT_OK(shval_get_i64(v, &x));
	ASSERT_EQ(x, 100);
	shval_close(v);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* A server restarted without its data (no persistence): handles say the
 * value is gone (SHVAL_ESTALE), opens say the segment is (-ENOENT); a
 * server stopped for good gives -ECONNREFUSED after timeout_ms. */
TEST(server_lost_data)
{
	struct tredis rd;
	tredis_start(&rd, "lost", "timeout_ms=3000");
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *v;
	ASSERT_OK(shval_create(seg, "v", "q", SHVAL_ATOMIC, NULL, 0, &v));
	ASSERT_OK(shval_set_i64(v, 5));
	tredis_restart(&rd); /* appendonly no: empty again */
	int64_t x;
	ASSERT_ERR(shval_get_i64(v, &x), SHVAL_ESTALE);
	ASSERT_ERR(shval_add_i64(v, 1, NULL), SHVAL_ESTALE);
	shval_seg *s2;
	ASSERT_ERR(shval_seg_open(rd.url, 0, NULL, &s2), -ENOENT);
	tredis_kill(&rd, SIGKILL);
	ASSERT_ERR(shval_get_i64(v, &x), -ECONNREFUSED);
	ASSERT(strstr(shval_errmsg(seg), "cannot connect"));
	shval_close(v);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* Refusals: clear codes, nothing half-written. */
TEST(refusals)
{
	struct tredis rd;
	tredis_start(&rd, "ref", NULL);
	shval_seg *seg;
	char url[1000];
	ASSERT_ERR(shval_seg_open(rd.url, 0, NULL, &seg), -ENOENT);
	ASSERT(strstr(shval_errmsg(NULL), "segment does not exist"));
	ASSERT_ERR(
		shval_seg_open("redis://127.0.0.1/", SHVAL_CREATE, NULL, &seg),
		SHVAL_EBADNAME);
	ASSERT_ERR(shval_seg_open("redis://127.0.0.1:1/a*b", SHVAL_CREATE, NULL,
				  &seg),
		   SHVAL_EBADNAME);
	ASSERT_ERR(
		shval_seg_open("redis+unix:///x/y", SHVAL_CREATE, NULL, &seg),
		SHVAL_EBADNAME);
	snprintf(url, sizeof url, "%s?bogus=1", rd.url);
	ASSERT_ERR(shval_seg_open(url, SHVAL_CREATE, NULL, &seg),
		   SHVAL_EBADNAME);
	ASSERT_ERR(
		shval_seg_open(rd.url, SHVAL_CREATE | SHVAL_TEMP, NULL, &seg),
		SHVAL_EMODE);
	/* nobody listening */
	snprintf(url, sizeof url, "redis://127.0.0.1:%d/x?timeout_ms=200",
		 tredis_free_port());
	ASSERT_ERR(shval_seg_open(url, SHVAL_CREATE, NULL, &seg),
		   -ECONNREFUSED);
	/* a prefix holding foreign keys */
	freeReplyObject(tredis_cmd(&rd, "SET ref:mine 1"));
	ASSERT_ERR(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg), -EEXIST);
	ASSERT(strstr(shval_errmsg(NULL), "foreign") ||
	       strstr(shval_errmsg(NULL), "not a shval"));
	freeReplyObject(tredis_cmd(&rd, "SET odd:seg 1"));
	snprintf(url, sizeof url, "redis://127.0.0.1:%d/odd", rd.port);
	ASSERT_ERR(shval_seg_open(url, 0, NULL, &seg), SHVAL_EVERSION);
	/* a password */
	freeReplyObject(tredis_cmd(&rd, "CONFIG SET requirepass s3cret"));
	snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/pw", rd.port);
	ASSERT_ERR(shval_seg_open(url, SHVAL_CREATE, NULL, &seg), -EACCES);
	ASSERT(strstr(shval_errmsg(NULL), "wrong") == NULL); /* not shown */
	snprintf(url, sizeof url, "redis://127.0.0.1:%d/pw", rd.port);
	ASSERT_ERR(shval_seg_open(url, SHVAL_CREATE, NULL, &seg), -EACCES);
	snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/pw", rd.port);
	ASSERT_OK(shval_seg_open(url, SHVAL_CREATE, NULL, &seg));
	shval *v, *big;
	ASSERT_OK(shval_create(seg, "v", "q", 0, NULL, 0, &v));
	ASSERT(shval_data(v) == NULL);
	ASSERT(strstr(shval_errmsg(seg), "no shared memory"));
	ASSERT_ERR(shval_touch(v), SHVAL_EMODE);
	ASSERT_ERR(shval_create(seg, "big", "100000000s", 0, NULL, 0, &big),
		   SHVAL_ETOOBIG);
	ASSERT_ERR(shval_find(seg, "big", NULL, &big), SHVAL_ENOTFOUND);
	ASSERT_EQ(shval_seg_fd(seg), -1);
	struct shval_seg_info si;
	ASSERT_OK(shval_seg_info(seg, &si));
	ASSERT_EQ(si.nvalues, 1);
	/* read-only */
	shval_seg *ro;
	ASSERT_OK(shval_seg_open(url, SHVAL_RDONLY, NULL, &ro));
	shval *rv;
	ASSERT_OK(shval_find(ro, "v", "q", &rv));
	ASSERT_ERR(shval_set_i64(rv, 1), SHVAL_ERDONLY);
	ASSERT_ERR(shval_create(ro, "w", "q", 0, NULL, 0, &big), SHVAL_ERDONLY);
	shval_close(rv);
	ASSERT_OK(shval_seg_close(ro));
	/* damage behind the library's back: found by check, refused by
	 * reads */
	ASSERT_OK(shval_seg_verify(seg, SHVAL_VERIFY_DEEP, NULL, NULL, NULL));
	redisContext *c = redisConnectUnix(rd.sock);
	ASSERT(c && !c->err);
	redisReply *r = redisCommand(c, "AUTH s3cret");
	freeReplyObject(r);
	r = redisCommand(c, "HSET pw:v:v data 123");
	freeReplyObject(r);
	int64_t x;
	ASSERT_ERR(shval_get_i64(v, &x), SHVAL_ECORRUPT);
	size_t np = 0;
	ASSERT_ERR(shval_seg_verify(seg, SHVAL_VERIFY_DEEP, NULL, NULL, &np),
		   SHVAL_ECORRUPT);
	ASSERT_EQ(np, 1);
	shval_close(v);
	ASSERT_OK(shval_seg_close(seg));
	/* unlink leaves foreign keys alone */
	ASSERT_OK(shval_seg_unlink(url));
	ASSERT_ERR(shval_seg_unlink(url), -ENOENT);
	r = redisCommand(c, "CONFIG SET requirepass %s", "");
	freeReplyObject(r);
	redisFree(c);
	r = tredis_cmd(&rd, "EXISTS ref:mine");
	ASSERT_EQ(r->integer, 1);
	freeReplyObject(r);
	tredis_stop(&rd);
}

/* shval_read_version: the bytes and their version from one HMGET (no
 * peek); waiting from that version sees the next change and only it;
 * inside the caller's section: the staged bytes, the committed version. */
TEST(read_version_one_round_trip)
{
	struct tredis rd;
	tredis_start(&rd, "rv", NULL);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *a, *l;
	int64_t x = 41;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, &x, 8, &a));
	ASSERT_OK(shval_create(seg, "l", "q", SHVAL_RLOCK, NULL, 0, &l));
	long long h0 = tredis_calls(&rd, "hmget"),
		  f0 = tredis_calls(&rd, "fcall");
	uint64_t ver = 0;
	int64_t got = 0;
	ASSERT_OK(shval_read_version(a, &got, 8, &ver));
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 1);
	ASSERT_EQ(tredis_calls(&rd, "fcall") - f0, 0);
	ASSERT_EQ(got, 41);
	ASSERT_UEQ(ver, shval_value_version(a));
	ASSERT_EQ(shval_read_version(a, &got, 8, NULL), -EINVAL);
	ASSERT_EQ(shval_read_version(a, &got, 4, &ver), SHVAL_ESIZE);
	uint64_t seen = ver;
	ASSERT_EQ(shval_wait(a, &seen, 50 * SHVAL_MSEC), -ETIMEDOUT);
	ASSERT_OK(shval_add_i64(a, 1, NULL));
	ASSERT_OK(shval_wait(a, &seen, 5 * SHVAL_SEC));
	ASSERT_OK(shval_read_version(a, &got, 8, &ver));
	ASSERT_EQ(got, 42);
	ASSERT_UEQ(ver, seen);
	/* in a section: staged bytes, committed version */
	uint64_t lver;
	ASSERT_OK(shval_read_version(l, &got, 8, &lver));
	ASSERT_OK(shval_lock(l));
	ASSERT_OK(shval_set_i64(l, 7));
	uint64_t in;
	ASSERT_OK(shval_read_version(l, &got, 8, &in));
	ASSERT_EQ(got, 7);
	ASSERT_UEQ(in, lver);
	ASSERT_OK(shval_unlock(l));
	ASSERT_OK(shval_read_version(l, &got, 8, &in));
	ASSERT_UEQ(in, lver + 1);
	shval_close(a);
	shval_close(l);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* In a section on a value's own lock, nothing is fetched: a whole-value
 * write stages the new bytes without the old ones (the lease was taken on
 * this entry), and the lock brought the committed bytes with the lease
 * for a read or an add (values up to 4 KiB; a larger one fetches once, on
 * first use).  A whole write refused by its bytes leaves the staged copy
 * as it was.  A stale handle of an older value of the same name (another
 * serial) still gets SHVAL_ESTALE, and the section's commit is not
 * spoiled by it. */
TEST(section_whole_write_fetches_nothing)
{
	struct tredis rd;
	tredis_start(&rd, "ww", NULL);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *q, *s, *old, *cur;
	int64_t x = 5, got = 0;
	ASSERT_OK(shval_create(seg, "q", "q", SHVAL_RLOCK, &x, 8, &q));
	ASSERT_OK(shval_create(seg, "s", "?", SHVAL_RLOCK, NULL, 0, &s));
	ASSERT_OK(shval_lock(q)); /* (its function makes an HMGET itself) */
	long long h0 = tredis_calls(&rd, "hmget");
	x = 9;
	ASSERT_OK(shval_write(q, &x, 8));
	ASSERT_OK(shval_add_i64(q, 1, &got)); /* on the staged bytes */
	ASSERT_EQ(got, 10);
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 0);
	ASSERT_OK(shval_unlock(q));
	ASSERT_OK(shval_get_i64(q, &got));
	ASSERT_EQ(got, 10);
	/* a read or an add: the bytes came with the lease (shval1_lock's
	 * want), no fetch; `lock; add; unlock` is two round trips */
	uint64_t qver = shval_value_version(q), in = 0;
	h0 = tredis_calls(&rd, "hmget");
	long long f0 = tredis_calls(&rd, "fcall"),
		  g0 = tredis_calls(&rd, "hget");
	ASSERT_OK(shval_lock(q));
	ASSERT_OK(shval_get_i64(q, &got));
	ASSERT_EQ(got, 10);
	/* and the committed version is the lease's: no peek */
	ASSERT_OK(shval_read_version(q, &got, 8, &in));
	ASSERT_UEQ(in, qver);
	ASSERT_UEQ(shval_value_version(q), qver);
	ASSERT_OK(shval_add_i64(q, 1, &got));
	ASSERT_EQ(got, 11);
	ASSERT_UEQ(shval_value_version(q), qver); /* staged: not committed */
	ASSERT_OK(shval_unlock(q));
	ASSERT_EQ(tredis_calls(&rd, "fcall") - f0, 2);
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 1); /* the lock's own */
	ASSERT_EQ(tredis_calls(&rd, "hget") - g0, 1);  /* the commit's serial */
	ASSERT_UEQ(shval_value_version(q), qver + 1);
	ASSERT_OK(shval_get_i64(q, &got));
	ASSERT_EQ(got, 11);
	/* a section that only reads commits nothing: the version stays */
	ASSERT_OK(shval_lock(q));
	ASSERT_OK(shval_get_i64(q, &got));
	ASSERT_OK(shval_unlock(q));
	ASSERT_EQ(got, 11);
	ASSERT_UEQ(shval_value_version(q), qver + 1);
	/* a value over 4 KiB: the first use fetches once */
	shval *big;
	int64_t xs[1024] = { 3 };
	ASSERT_OK(shval_create(seg, "big", "1024q", SHVAL_RLOCK, xs, sizeof xs,
			       &big));
	ASSERT_OK(shval_lock(big));
	h0 = tredis_calls(&rd, "hmget");
	ASSERT_OK(shval_array_get(big, 0, 1, &got));
	ASSERT_EQ(got, 3);
	ASSERT_OK(shval_array_get(big, 0, 1, &got));
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 1);
	ASSERT_OK(shval_unlock(big));
	shval_close(big);
	/* a refused whole write: nothing staged; the next use fetches */
	unsigned char t = 1, bad = 7;
	ASSERT_OK(shval_write(s, &t, 1));
	ASSERT_OK(shval_lock(s));
	ASSERT_EQ(shval_write(s, &bad, 1), SHVAL_ERANGE);
	unsigned char b = 0;
	ASSERT_OK(shval_read(s, &b, 1));
	ASSERT_EQ(b, 1);
	ASSERT_OK(shval_unlock(s));
	ASSERT_OK(shval_read(s, &b, 1));
	ASSERT_EQ(b, 1);
	/* a stale handle inside a section of the new value's lock */
	ASSERT_OK(shval_find(seg, "q", NULL, &old));
	ASSERT_OK(shval_remove(seg, "q"));
	x = 100;
	ASSERT_OK(shval_create(seg, "q", "q", SHVAL_RLOCK, &x, 8, &cur));
	ASSERT_OK(shval_lock(cur));
	ASSERT_UEQ(shval_value_version(old), 0); /* not the lease's version */
	x = 1;
	ASSERT_EQ(shval_write(old, &x, 8), SHVAL_ESTALE);
	x = 101;
	ASSERT_OK(shval_write(cur, &x, 8));
	ASSERT_OK(shval_unlock(cur));
	ASSERT_OK(shval_get_i64(cur, &got));
	ASSERT_EQ(got, 101);
	shval_close(old);
	shval_close(cur);
	shval_close(q);
	shval_close(s);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* shval__r_try_write / shval__r_try_add_i64 (the binding's one-round-trip
 * change of a locked value): done in one shval1_write when nobody holds the
 * lock; 1 (nothing done, the binding takes the lock) when another client
 * holds it, inside this thread's own section, and for a local value.  A
 * write of every byte goes blind: one round trip even from a handle whose
 * cache another client made stale. */
TEST(try_change_one_round_trip_or_the_lock)
{
	struct tredis rd;
	tredis_start(&rd, "tr", NULL);
	shval_seg *seg, *seg2, *lseg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	ASSERT_OK(shval_seg_open(rd.url, 0, NULL, &seg2)); /* another client */
	shval *v, *v2;
	int64_t x = 1, got = 0;
	ASSERT_OK(shval_create(seg, "v", "q", SHVAL_RLOCK, &x, 8, &v));
	ASSERT_OK(shval_find(seg2, "v", NULL, &v2));
	long long f0 = tredis_calls(&rd, "fcall"),
		  h0 = tredis_calls(&rd, "hmget");
	x = 2;
	ASSERT_EQ(shval__r_try_write(v, &x, 8), 0);
	ASSERT_EQ(shval__r_try_add_i64(v, 3, &got), 0);
	ASSERT_EQ(got, 5);
	/* two round trips in all: the write blind (no fetch before it), the
	 * add on the bytes the write left in the cache */
	ASSERT_EQ(tredis_calls(&rd, "fcall") - f0, 2);
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 2); /* the functions' own */
	/* another client changes it: a whole write from v is still one */
	x = 7;
	ASSERT_OK(shval_write(v2, &x, 8));
	f0 = tredis_calls(&rd, "fcall"), h0 = tredis_calls(&rd, "hmget");
	x = 8;
	ASSERT_OK(shval_write(v, &x, 8));
	ASSERT_EQ(tredis_calls(&rd, "fcall") - f0, 1);
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 1);
	ASSERT_OK(shval_get_i64(v2, &got));
	ASSERT_EQ(got, 8);
	ASSERT_OK(shval_set_i64(v2, 3)); /* and a set */
	f0 = tredis_calls(&rd, "fcall"), h0 = tredis_calls(&rd, "hmget");
	ASSERT_OK(shval_set_i64(v, 8));
	ASSERT_EQ(tredis_calls(&rd, "fcall") - f0, 1);
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 1);
	/* an add is not blind: computed again from the current bytes, two
	 * round trips (refused as changed, with the bytes; then applied) */
	ASSERT_OK(shval_add_i64(v2, 10, &got));
	f0 = tredis_calls(&rd, "fcall"), h0 = tredis_calls(&rd, "hmget");
	ASSERT_OK(shval_add_i64(v, 1, &got));
	ASSERT_EQ(got, 19);
	ASSERT_EQ(tredis_calls(&rd, "fcall") - f0, 2);
	/* a blind set refused for its own bytes: once, no fetch and retry */
	shval *flag;
	ASSERT_OK(shval_create(seg, "flag", "?", SHVAL_RLOCK, NULL, 0, &flag));
	f0 = tredis_calls(&rd, "fcall"), h0 = tredis_calls(&rd, "hmget");
	ASSERT_EQ(shval_set_i64(flag, 2), SHVAL_ERANGE);
	ASSERT_EQ(tredis_calls(&rd, "fcall") - f0, 0);
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 0);
	shval_close(flag);
	x = 8;
	ASSERT_OK(shval_write(v, &x, 8));
	/* the other client holds the lock: 1 at once, nothing done */
	ASSERT_OK(shval_lock(v2));
	x = 9;
	ASSERT_EQ(shval__r_try_write(v, &x, 8), 1);
	ASSERT_EQ(shval__r_try_add_i64(v, 1, &got), 1);
	ASSERT_OK(shval_unlock(v2));
	ASSERT_OK(shval_get_i64(v, &got));
	ASSERT_EQ(got, 8);
	/* inside this thread's own section: 1 (the caller stages) */
	ASSERT_OK(shval_lock(v));
	ASSERT_EQ(shval__r_try_write(v, &x, 8), 1);
	ASSERT_OK(shval_unlock(v));
	ASSERT_OK(shval_get_i64(v2, &got));
	ASSERT_EQ(got, 8);
	/* a local value: 1 */
	shval *lv;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &lseg));
	ASSERT_OK(shval_create(lseg, "l", "q", SHVAL_RLOCK, NULL, 0, &lv));
	ASSERT_EQ(shval__r_try_write(lv, &x, 8), 1);
	ASSERT_EQ(shval__r_try_add_i64(lv, 1, &got), 1);
	shval_close(lv);
	ASSERT_OK(shval_seg_close(lseg));
	shval_close(v);
	shval_close(v2);
	ASSERT_OK(shval_seg_close(seg2));
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* shval__r_committed (the binding's version seen after a change, without a
 * peek): the version a section on the value's own lock committed, or a
 * change sent by itself; 0 when unknown (a section that did not change
 * the value, a nested unlock, a local value), and taken once. */
TEST(committed_version_known_without_a_peek)
{
	struct tredis rd;
	tredis_start(&rd, "cv", NULL);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *q, *a;
	int64_t x = 1;
	ASSERT_OK(shval_create(seg, "q", "q", SHVAL_RLOCK, &x, 8, &q));
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, &x, 8, &a));
	ASSERT_OK(shval_lock(q));
	ASSERT_OK(shval_lock(q));
	x = 2;
	ASSERT_OK(shval_write(q, &x, 8));
	ASSERT_OK(shval_unlock(q)); /* nested: nothing committed yet */
	ASSERT_UEQ(shval__r_committed(q), 0);
	ASSERT_OK(shval_unlock(q));
	uint64_t c = shval__r_committed(q);
	ASSERT(c != 0);
	ASSERT_UEQ(c, shval_value_version(q));
	ASSERT_UEQ(shval__r_committed(q), 0); /* taken */
	ASSERT_OK(shval_lock(q));             /* a section that reads only */
	ASSERT_OK(shval_get_i64(q, &x));
	ASSERT_OK(shval_unlock(q));
	ASSERT_UEQ(shval__r_committed(q), 0);
	ASSERT_OK(shval_add_i64(a, 5, NULL)); /* a change by itself */
	c = shval__r_committed(a);
	ASSERT(c != 0);
	ASSERT_UEQ(c, shval_value_version(a));
	ASSERT_UEQ(shval__r_committed(NULL), 0);
	shval_close(q);
	shval_close(a);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* shval_seg_info: values counted, sizes = the server's memory for the
 * segment's keys (header, directory, stream, value hashes). */
TEST(seg_info_sizes)
{
	struct tredis rd;
	tredis_start(&rd, "inf", NULL);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *a, *big, *lk;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	ASSERT_OK(
		shval_create(seg, "big", "8000s", SHVAL_RLOCK, NULL, 0, &big));
	ASSERT_OK(shval_lock_create(seg, "lk", SHVAL_RLOCK, &lk));
	struct shval_seg_info in;
	ASSERT_OK(shval_seg_info(seg, &in));
	ASSERT_EQ(in.nvalues, 3);
	long long want = 0;
	const char *keys[] = { "inf:seg", "inf:dir",   "inf:ev",
			       "inf:v:a", "inf:v:big", "inf:v:lk" };
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		long long m =
			tredis_int(&rd, "MEMORY USAGE %s SAMPLES 0", keys[i]);
		ASSERT_GT(m, 0);
		want += m;
	}
	ASSERT_UEQ(in.used, (uint64_t)want);
	ASSERT_UEQ(in.size, in.used);
	ASSERT_GT(in.used, 8000);
	ASSERT_UEQ(in.max_size, 0);
	ASSERT_UEQ(in.nattached, 0);
	shval_close(big);
	ASSERT_OK(shval_remove(seg, "big"));
	struct shval_seg_info in2;
	ASSERT_OK(shval_seg_info(seg, &in2));
	ASSERT_EQ(in2.nvalues, 2);
	ASSERT_LT(in2.used + 8000, in.used);
	shval_close(a);
	shval_close(lk);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* shval1_write as the library sends it (src/remote.lua, f_write): client
 * cl's request seq, from version from, resent or not.  The reply's first
 * element ("OK", "CHANGED", ...) into out; the reply's second into out2. */
static void raw_write(struct tredis *rd, const char *cl, int seq,
		      const char *serial, long long from, int64_t x, int resent,
		      char *out, char *out2)
{
	redisReply *r = tredis_cmd(
		rd, "FCALL shval1_write 0 rs %s %d a %s %lld %lld %b %s %d", cl,
		seq, serial, from, from + 1, &x, (size_t)8, "", resent);
	ASSERT(r->type == REDIS_REPLY_ARRAY && r->elements >= 1);
	snprintf(out, 32, "%s", r->element[0]->str);
	snprintf(out2, 32, "%s",
		 r->elements > 1 && r->element[1]->type == REDIS_REPLY_STRING
			 ? r->element[1]->str
			 : "");
	freeReplyObject(r);
}

/* A write resent after a lost connection is recognised from the value's
 * record of its last write ("wq") and, once another client overwrote that,
 * from the client's P:q:CLIENT, which keeps the highest such number; a
 * write that was not applied is refused as changed, never applied blindly.
 * Deterministic: the resends are made by hand (resent = 1), as
 * shval__r_cmd_ex makes them after a reconnect. */
TEST(resend_recognised_after_overwrite)
{
	struct tredis rd;
	tredis_start(&rd, "rs", NULL);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *a, *b;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	ASSERT_OK(shval_create(seg, "b", "q", SHVAL_ATOMIC, NULL, 0, &b));
	char sa[24], sb[24], rep[32], rep2[32];
	redisReply *r = tredis_cmd(&rd, "HGET rs:v:a serial");
	snprintf(sa, sizeof sa, "%s", tredis_str(r));
	freeReplyObject(r);
	r = tredis_cmd(&rd, "HGET rs:v:b serial");
	snprintf(sb, sizeof sb, "%s", tredis_str(r));
	freeReplyObject(r);
	const char *C = "00000000000000c1", *X = "00000000000000f2";
	long long ver = tredis_int(&rd, "HGET rs:v:a ver");
	raw_write(&rd, C, 5, sa, ver, 100, 0, rep, rep2);
	ASSERT_STREQ(rep, "OK");
	/* resent while a's wq is still C.5: applied, not again */
	raw_write(&rd, C, 5, sa, ver, 100, 1, rep, rep2);
	ASSERT_STREQ(rep, "OK");
	ASSERT_STREQ(rep2, "");
	ASSERT_EQ(tredis_int(&rd, "HGET rs:v:a ver"), ver + 1);
	/* X overwrites: C.5 moves to rs:q:C */
	raw_write(&rd, X, 1, sa, ver + 1, 200, 0, rep, rep2);
	ASSERT_STREQ(rep, "OK");
	r = tredis_cmd(&rd, "GET rs:q:%s", C);
	ASSERT_STREQ(tredis_str(r), "5");
	freeReplyObject(r);
	raw_write(&rd, C, 5, sa, ver, 100, 1, rep, rep2);
	ASSERT_STREQ(rep, "OK");
	ASSERT_STREQ(rep2, "");
	ASSERT_EQ(tredis_int(&rd, "HGET rs:v:a ver"), ver + 2);
	int64_t got;
	ASSERT_OK(shval_get_i64(a, &got));
	ASSERT_EQ(got, 200);
	/* a resent write that was never applied: refused (the client
	 * computes it again on the current bytes) */
	raw_write(&rd, C, 6, sa, ver + 1, 300, 1, rep, rep2);
	ASSERT_STREQ(rep, "CHANGED");
	ASSERT_OK(shval_get_i64(a, &got));
	ASSERT_EQ(got, 200);
	/* the highest number stays: C writes b (7) then a (8); X overwrites
	 * a (moves 8), then b (moves 7, which must not replace 8) */
	long long vb = tredis_int(&rd, "HGET rs:v:b ver");
	ver = tredis_int(&rd, "HGET rs:v:a ver");
	r = tredis_cmd(&rd,
		       "FCALL shval1_write 0 rs %s 7 b %s %lld %lld %b %s 0", C,
		       sb, vb, vb + 1, "\1\0\0\0\0\0\0\0", (size_t)8, "");
	ASSERT_STREQ(r->element[0]->str, "OK");
	freeReplyObject(r);
	raw_write(&rd, C, 8, sa, ver, 1, 0, rep, rep2);
	ASSERT_STREQ(rep, "OK");
	raw_write(&rd, X, 2, sa, ver + 1, 2, 0, rep, rep2);
	ASSERT_STREQ(rep, "OK");
	r = tredis_cmd(&rd,
		       "FCALL shval1_write 0 rs %s 3 b %s %lld %lld %b %s 0", X,
		       sb, vb + 1, vb + 2, "\2\0\0\0\0\0\0\0", (size_t)8, "");
	ASSERT_STREQ(r->element[0]->str, "OK");
	freeReplyObject(r);
	r = tredis_cmd(&rd, "GET rs:q:%s", C);
	ASSERT_STREQ(tredis_str(r), "8");
	freeReplyObject(r);
	raw_write(&rd, C, 8, sa, ver, 1, 1, rep, rep2);
	ASSERT_STREQ(rep, "OK");
	ASSERT_STREQ(rep2, "");
	ASSERT_OK(shval_get_i64(a, &got));
	ASSERT_EQ(got, 2);
	shval_close(a);
	shval_close(b);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* A plain write appends to the event stream only when someone waits for
 * the value (its flag "w", set by the waiter's peek and taken by the
 * write) or watches the segment (for good, as locally): unwatched, a write
 * is the HMGET and HSET alone.  A waiter in another process is woken by
 * the write that takes its flag. */
TEST(changes_announced_only_when_waited_for)
{
	struct tredis rd;
	tredis_start(&rd, "an", NULL);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *a;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	long long n0 = tredis_int(&rd, "XLEN an:ev");
	long long x0 = tredis_calls(&rd, "xadd"), s0 = tredis_calls(&rd, "set");
	for (int i = 0; i < 10; i++)
		ASSERT_OK(shval_add_i64(a, 1, NULL));
	ASSERT_EQ(tredis_int(&rd, "XLEN an:ev"), n0);
	ASSERT_EQ(tredis_calls(&rd, "xadd"), x0);
	ASSERT_EQ(tredis_calls(&rd, "set"), s0); /* no request record either */
	/* a waiter in another process: it blocks with the flag set */
	uint64_t seen = shval_value_version(a);
	pid_t kid = fork();
	ASSERT(kid >= 0);
	if (kid == 0) {
		shval_seg *s2;
		shval *a2;
		if (shval_seg_open(rd.url, 0, NULL, &s2) ||
		    shval_find(s2, "a", "q", &a2))
			_exit(2);
		uint64_t my = seen;
		int r = shval_wait(a2, &my, 20 * SHVAL_SEC);
		int64_t x = 0;
		shval_get_i64(a2, &x);
		_exit(r == 0 && x == 11 ? 0 : 1);
	}
	for (int i = 0; i < 2000; i++) { /* until the waiter flagged it */
		redisReply *r = tredis_cmd(&rd, "HGET an:v:a w");
		bool armed = strcmp(tredis_str(r), "1") == 0;
		freeReplyObject(r);
		if (armed)
			break;
		usleep(5000);
	}
	redisReply *r = tredis_cmd(&rd, "HGET an:v:a w");
	ASSERT_STREQ(tredis_str(r), "1");
	freeReplyObject(r);
	ASSERT_OK(shval_add_i64(a, 1, NULL));
	ASSERT_EQ(tredis_int(&rd, "XLEN an:ev"), n0 + 1);
	r = tredis_cmd(&rd, "HGET an:v:a w");
	ASSERT_STREQ(tredis_str(r), ""); /* taken */
	freeReplyObject(r);
	test_wait_ok(kid);
	r = tredis_cmd(&rd, "HGET an:seg watched");
	ASSERT_STREQ(tredis_str(r),
		     ""); /* a value wait does not watch the seg */
	freeReplyObject(r);
	/* a section's commit: one entry (its unlock's) for all its values,
	 * which wakes a waiter of any of them */
	shval *lk, *g1, *g2;
	ASSERT_OK(shval_lock_create(seg, "lk", SHVAL_RLOCK, &lk));
	ASSERT_OK(shval_create_guarded(seg, "g1", "q", lk, NULL, 0, &g1));
	ASSERT_OK(shval_create_guarded(seg, "g2", "q", lk, NULL, 0, &g2));
	long long n1 = tredis_int(&rd, "XLEN an:ev");
	ASSERT_OK(shval_lock(lk));
	ASSERT_OK(shval_set_i64(g1, 1));
	ASSERT_OK(shval_set_i64(g2, 2));
	ASSERT_OK(shval_unlock(lk));
	ASSERT_EQ(tredis_int(&rd, "XLEN an:ev"), n1 + 1);
	uint64_t gseen = shval_value_version(g2);
	kid = fork();
	ASSERT(kid >= 0);
	if (kid == 0) {
		shval_seg *s2;
		shval *h2;
		if (shval_seg_open(rd.url, 0, NULL, &s2) ||
		    shval_find(s2, "g2", "q", &h2))
			_exit(2);
		uint64_t my = gseen;
		int rc = shval_wait(h2, &my, 20 * SHVAL_SEC);
		int64_t x = 0;
		shval_get_i64(h2, &x);
		_exit(rc == 0 && x == 3 ? 0 : 1);
	}
	for (int i = 0; i < 2000; i++) {
		r = tredis_cmd(&rd, "HGET an:v:g2 w");
		bool armed = strcmp(tredis_str(r), "1") == 0;
		freeReplyObject(r);
		if (armed)
			break;
		usleep(5000);
	}
	ASSERT_OK(shval_lock(lk));
	ASSERT_OK(shval_set_i64(g2, 3));
	ASSERT_OK(shval_unlock(lk));
	test_wait_ok(kid);
	shval_close(g1);
	shval_close(g2);
	shval_close(lk);
	/* shval_seg_info reads the segment's version without watching it */
	struct shval_seg_info in;
	ASSERT_OK(shval_seg_info(seg, &in));
	r = tredis_cmd(&rd, "HGET an:seg watched");
	ASSERT_STREQ(tredis_str(r), "");
	freeReplyObject(r);
	/* a segment watcher: every change moves the segment version from
	 * then on, for values created later too */
	uint64_t sv = shval_seg_version(seg);
	ASSERT_OK(shval_add_i64(a, 1, NULL));
	uint64_t sv2 = shval_seg_version(seg);
	ASSERT(sv2 != sv);
	ASSERT_OK(shval_add_i64(a, 1, NULL));
	ASSERT(shval_seg_version(seg) != sv2);
	shval *c;
	ASSERT_OK(shval_create(seg, "c", "q", SHVAL_ATOMIC, NULL, 0, &c));
	r = tredis_cmd(&rd, "HGET an:v:c w");
	ASSERT_STREQ(tredis_str(r), "S");
	freeReplyObject(r);
	sv = shval_seg_version(seg);
	ASSERT_OK(shval_add_i64(c, 1, NULL));
	ASSERT(shval_seg_version(seg) != sv);
	shval_close(a);
	shval_close(c);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

TEST_MAIN()
