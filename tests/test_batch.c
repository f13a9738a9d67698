/*
 * tests/test_batch.c — shval_batch_* (include/shval.h, "Batches") on local
 * segments and on Redis segments (a redis-server of the test's own,
 * tests/redis_util.h): the same results on both kinds, per-op results when
 * operations fail mid-batch, a warm Redis batch as one pipeline (counted
 * on the server), exact totals with concurrent writers and with
 * connections cut mid-batch.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <sys/mman.h>

#include <shval.h>

#include "test.h"
#include "redis_util.h"

static char *tx_add(char *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static char *tx_add(char *t, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	size_t n = t ? strlen(t) : 0;
	t = realloc(t, n + strlen(line) + 2);
	ASSERT(t);
	strcpy(t + n, line);
	strcat(t, "\n");
	return t;
}

/* One batch with successes and failures mid-batch; a transcript of every
 * op's result and outputs, the run's code, and the values after. */
static char *scenario(shval_seg *seg)
{
	char *t = NULL;
	shval *a, *b, *s, *l, *d, *g;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	ASSERT_OK(shval_create(seg, "b", "B", SHVAL_ATOMIC, NULL, 0, &b));
	ASSERT_OK(shval_create(seg, "s", "8s", SHVAL_RLOCK, NULL, 0, &s));
	ASSERT_OK(shval_create(seg, "l", "q", SHVAL_RLOCK, NULL, 0, &l));
	ASSERT_OK(shval_create(seg, "d", "d", SHVAL_ATOMIC, NULL, 0, &d));
	ASSERT_OK(shval_create(seg, "g", "x:i y:i", SHVAL_RLOCK, NULL, 0, &g));
	shval_batch *bt;
	ASSERT_OK(shval_batch_new(seg, &bt));
	int rc[20];
	int64_t r64[8] = { 0 };
	double rd[4] = { 0 };
	int32_t gin[2] = { 7, -8 }, gout[2] = { 0, 0 };
	for (int i = 0; i < 20; i++)
		rc[i] = 12345;
	ASSERT_OK(shval_batch_add_i64(bt, a, 5, &r64[0], &rc[0]));
	ASSERT_OK(shval_batch_add_i64(bt, a, 7, &r64[1], &rc[1]));
	ASSERT_OK(shval_batch_set_i64(bt, b, 250, &rc[2]));
	ASSERT_OK(shval_batch_add_i64(bt, b, 10, &r64[2], &rc[3])); /* wraps */
	ASSERT_OK(
		shval_batch_add_i64(bt, s, 1, &r64[3], &rc[4])); /* a string */
	ASSERT_OK(shval_batch_set_i64(bt, b, 300, &rc[5])); /* out of range */
	ASSERT_OK(shval_batch_add_i64(bt, l, 3, NULL, &rc[6]));
	ASSERT_OK(shval_batch_get_i64(bt, l, &r64[4], &rc[7]));
	ASSERT_OK(shval_batch_add_f64(bt, d, 0.5, &rd[0], &rc[8]));
	ASSERT_OK(shval_batch_set_f64(bt, d, 2.25, &rc[9]));
	ASSERT_OK(shval_batch_get_f64(bt, d, &rd[1], &rc[10]));
	ASSERT_OK(shval_batch_write(bt, g, gin, sizeof gin, &rc[11]));
	gin[0] = 99; /* copied when queued */
	ASSERT_OK(shval_batch_read(bt, g, gout, sizeof gout, &rc[12]));
	ASSERT_OK(shval_batch_read(bt, g, gout, 3, &rc[13])); /* too small */
	ASSERT_OK(shval_batch_get_i64(bt, a, &r64[5], &rc[14]));
	ASSERT_OK(shval_batch_set_f64(bt, a, 0.5, &rc[15])); /* not whole */
	ASSERT_OK(shval_batch_get_i64(bt, b, &r64[6], NULL));
	ASSERT_EQ(shval_batch_size(bt), 17);
	/* nothing happens before the run, on either kind */
	int64_t x;
	ASSERT_OK(shval_get_i64(a, &x));
	ASSERT_EQ(x, 0);
	size_t nf = 99;
	int r = shval_batch_run(bt, &nf);
	t = tx_add(t, "run -> %s, %zu failed, msg has op 5: %d",
		   shval_errname(r), nf,
		   strstr(shval_errmsg(seg), "batch op 5 of 17") != NULL);
	ASSERT_EQ(shval_batch_size(bt), 0);
	for (int i = 0; i < 16; i++)
		t = tx_add(t, "op %d -> %s", i, shval_errname(rc[i]));
	t = tx_add(t, "adds %lld %lld %lld; l %lld; a %lld; b %lld",
		   (long long)r64[0], (long long)r64[1], (long long)r64[2],
		   (long long)r64[4], (long long)r64[5], (long long)r64[6]);
	t = tx_add(t, "d %g %g; g %d %d", rd[0], rd[1], (int)gout[0],
		   (int)gout[1]);
	/* an empty batch; a reused one */
	ASSERT_OK(shval_batch_run(bt, &nf));
	ASSERT_EQ(nf, 0);
	ASSERT_OK(shval_batch_add_i64(bt, a, 1, &r64[7], NULL));
	ASSERT_OK(shval_batch_run(bt, NULL));
	t = tx_add(t, "reused: %lld", (long long)r64[7]);
	/* shval_read_version on either kind: the bytes and a version no
	 * newer (here: the current one, nothing changes meanwhile) */
	uint64_t ver = 0;
	ASSERT_OK(shval_read_version(a, &x, sizeof x, &ver));
	ASSERT_EQ(x, 13);
	ASSERT_UEQ(ver, shval_value_version(a));
	ASSERT_OK(shval_read_version(l, &x, sizeof x, &ver));
	ASSERT_UEQ(ver, shval_value_version(l));
	ASSERT_EQ(shval_read_version(l, &x, sizeof x, NULL), -EINVAL);
	/* refusals when queueing */
	ASSERT_EQ(shval_batch_get_i64(bt, a, NULL, NULL), -EINVAL);
	ASSERT_EQ(shval_batch_read(bt, NULL, gout, 8, NULL), -EINVAL);
	ASSERT_EQ(shval_batch_read(bt, a, NULL, 8, NULL), -EINVAL);
	ASSERT_EQ(shval_batch_write(bt, a, NULL, 8, NULL), -EINVAL);
	ASSERT_EQ(shval_batch_write(bt, NULL, &x, sizeof x, NULL), -EINVAL);
	ASSERT_EQ(shval_batch_get_f64(bt, a, NULL, NULL), -EINVAL);
	ASSERT_EQ(shval_batch_set_i64(NULL, a, 1, NULL), -EINVAL);
	ASSERT_EQ(shval_batch_set_f64(bt, NULL, 1.0, NULL), -EINVAL);
	ASSERT_EQ(shval_batch_add_f64(bt, NULL, 1.0, NULL, NULL), -EINVAL);
	shval_seg *other;
	shval *o;
	ASSERT_OK(shval_seg_open(NULL, SHVAL_CREATE, NULL, &other));
	ASSERT_OK(shval_create(other, "o", "q", SHVAL_ATOMIC, NULL, 0, &o));
	ASSERT_EQ(shval_batch_add_i64(bt, o, 1, NULL, NULL), SHVAL_EMISUSE);
	ASSERT(strstr(shval_errmsg(seg), "another segment"));
	ASSERT_EQ(shval_batch_size(bt), 0);
	shval_close(o);
	ASSERT_OK(shval_seg_close(other));
	shval_batch_free(bt);
	shval_close(a);
	shval_close(b);
	shval_close(s);
	shval_close(l);
	shval_close(d);
	shval_close(g);
	return t;
}

/* Local and Redis segments: the same transcript. */
TEST(same_as_local)
{
	struct tredis rd;
	tredis_start(&rd, "bsame", NULL);
	const char *names[2] = { test_segname("bsame"), rd.url };
	char *tx[2];
	for (int k = 0; k < 2; k++) {
		shval_seg *seg;
		ASSERT_OK(shval_seg_open(names[k], SHVAL_CREATE, NULL, &seg));
		tx[k] = scenario(seg);
		ASSERT_OK(shval_seg_close(seg));
		ASSERT_OK(shval_seg_unlink(names[k]));
	}
	if (strcmp(tx[0], tx[1]) != 0 || getenv("SHVAL_TEST_DUMP"))
		FAIL("transcripts differ:\n--- local\n%s--- redis\n%s", tx[0],
		     tx[1]);
	/* what the transcript says (the same on both kinds) */
	ASSERT(strstr(tx[0], "run -> SHVAL_EMODE, 4 failed, msg has op 5: 1"));
	ASSERT(strstr(tx[0], "op 5 -> SHVAL_ERANGE"));
	ASSERT(strstr(tx[0], "op 13 -> SHVAL_ESIZE"));
	ASSERT(strstr(tx[0], "adds 5 12 4; l 3; a 12; b 4"));
	ASSERT(strstr(tx[0], "d 0.5 2.25; g 7 -8"));
	ASSERT(strstr(tx[0], "reused: 13"));
	free(tx[0]);
	free(tx[1]);
	tredis_stop(&rd);
}

/* A batch of changes to values the handles have seen is one pipeline: one
 * shval1_write per change and no fetch; cold values are fetched once. */
TEST(pipelined)
{
	struct tredis rd;
	tredis_start(&rd, "bpipe", NULL);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *v[10];
	for (int i = 0; i < 10; i++) {
		char name[16];
		snprintf(name, sizeof name, "v%d", i);
		ASSERT_OK(shval_create(seg, name, "q", SHVAL_ATOMIC, NULL, 0,
				       &v[i]));
	}
	shval_batch *bt;
	ASSERT_OK(shval_batch_new(seg, &bt));
	/* (every shval1_write makes one HMGET inside the server, counted
	 * with the client's own) */
	long long h0 = tredis_calls(&rd, "hmget"),
		  f0 = tredis_calls(&rd, "fcall");
	for (int k = 0; k < 5; k++)
		for (int i = 0; i < 10; i++)
			ASSERT_OK(shval_batch_add_i64(bt, v[i], i, NULL, NULL));
	ASSERT_OK(shval_batch_run(bt, NULL));
	long long h1 = tredis_calls(&rd, "hmget"),
		  f1 = tredis_calls(&rd, "fcall");
	/* cold handles: each value fetched once, first */
	ASSERT_EQ(f1 - f0, 50);
	ASSERT_EQ(h1 - h0, 50 + 10);
	for (int k = 0; k < 5; k++)
		for (int i = 0; i < 10; i++)
			ASSERT_OK(shval_batch_add_i64(bt, v[i], i, NULL, NULL));
	ASSERT_OK(shval_batch_run(bt, NULL));
	/* warm: no fetch, one shval1_write per add */
	ASSERT_EQ(tredis_calls(&rd, "fcall") - f1, 50);
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h1, 50);
	/* another handle changes v0: its first change is refused once and
	 * done again on its own, the later ones too, in order */
	shval *w;
	ASSERT_OK(shval_find(seg, "v1", NULL, &w));
	ASSERT_OK(shval_add_i64(w, 1000, NULL));
	int64_t res[3];
	ASSERT_OK(shval_batch_add_i64(bt, v[1], 1, &res[0], NULL));
	ASSERT_OK(shval_batch_set_i64(bt, v[1], 50, NULL));
	ASSERT_OK(shval_batch_add_i64(bt, v[1], 2, &res[1], NULL));
	ASSERT_OK(shval_batch_get_i64(bt, v[1], &res[2], NULL));
	ASSERT_OK(shval_batch_run(bt, NULL));
	ASSERT_EQ(res[0], 10 + 1000 + 1);
	ASSERT_EQ(res[1], 52);
	ASSERT_EQ(res[2], 52);
	for (int i = 0; i < 10; i++) {
		int64_t x;
		ASSERT_OK(shval_get_i64(v[i], &x));
		ASSERT_EQ(x, i == 1 ? 52 : 10 * i);
	}
	/* reads only: one HMGET each, in one pipeline */
	h0 = tredis_calls(&rd, "hmget");
	int64_t got[10];
	for (int i = 0; i < 10; i++)
		ASSERT_OK(shval_batch_get_i64(bt, v[i], &got[i], NULL));
	ASSERT_OK(shval_batch_run(bt, NULL));
	ASSERT_EQ(tredis_calls(&rd, "hmget") - h0, 10);
	ASSERT_EQ(got[9], 90);
	shval_close(w);
	for (int i = 0; i < 10; i++)
		shval_close(v[i]);
	shval_batch_free(bt);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* A value removed before the run: its ops fail SHVAL_ESTALE, the others
 * are applied; a value in the thread's own section: staged, committed at
 * unlock. */
TEST(removed_mid_batch)
{
	struct tredis rd;
	tredis_start(&rd, "brm", NULL);
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *a, *b, *c, *lk, *gx;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	ASSERT_OK(shval_create(seg, "b", "q", SHVAL_ATOMIC, NULL, 0, &b));
	ASSERT_OK(shval_create(seg, "c", "q", SHVAL_RLOCK, NULL, 0, &c));
	ASSERT_OK(shval_lock_create(seg, "lk", SHVAL_RLOCK, &lk));
	ASSERT_OK(shval_create_guarded(seg, "gx", "q", lk, NULL, 0, &gx));
	shval_batch *bt;
	ASSERT_OK(shval_batch_new(seg, &bt));
	int rc[6];
	int64_t got = 0;
	ASSERT_OK(shval_batch_add_i64(bt, a, 1, NULL, &rc[0]));
	ASSERT_OK(shval_batch_add_i64(bt, b, 1, NULL, &rc[1]));
	ASSERT_OK(shval_batch_add_i64(bt, c, 1, NULL, &rc[2]));
	ASSERT_OK(shval_batch_get_i64(bt, b, &got, &rc[3]));
	ASSERT_OK(shval_batch_add_i64(bt, gx, 5, NULL, &rc[4]));
	ASSERT_OK(shval_batch_add_i64(bt, a, 1, NULL, &rc[5]));
	ASSERT_OK(shval_remove(seg, "b"));
	ASSERT_OK(shval_lock(lk));
	size_t nf;
	ASSERT_EQ(shval_batch_run(bt, &nf), SHVAL_ESTALE);
	ASSERT_EQ(nf, 2);
	ASSERT(strstr(shval_errmsg(seg), "batch op 2 of 6"));
	ASSERT(strstr(shval_errmsg(seg), "removed"));
	ASSERT_EQ(rc[0], 0);
	ASSERT_EQ(rc[1], SHVAL_ESTALE);
	ASSERT_EQ(rc[2], 0);
	ASSERT_EQ(rc[3], SHVAL_ESTALE);
	ASSERT_EQ(rc[4], 0);
	ASSERT_EQ(rc[5], 0);
	/* gx is staged in the section: the server has 0 until the unlock */
	redisReply *r = tredis_cmd(&rd, "HGET brm:v:gx data");
	ASSERT(r->type == REDIS_REPLY_STRING && r->len == 8);
	int64_t raw;
	memcpy(&raw, r->str, 8);
	freeReplyObject(r);
	ASSERT_EQ(raw, 0);
	ASSERT_OK(shval_unlock(lk));
	int64_t x;
	ASSERT_OK(shval_get_i64(gx, &x));
	ASSERT_EQ(x, 5);
	ASSERT_OK(shval_get_i64(a, &x));
	ASSERT_EQ(x, 2);
	ASSERT_OK(shval_get_i64(c, &x));
	ASSERT_EQ(x, 1);
	shval_batch_free(bt);
	shval_close(a);
	shval_close(b);
	shval_close(c);
	shval_close(gx);
	shval_close(lk);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

/* The server gone: every op fails with a connection error (the first
 * after timeout_ms, the rest not attempted), nothing hangs. */
TEST(server_gone)
{
	struct tredis rd;
	tredis_start(&rd, "bgone", "timeout_ms=200");
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *a;
	ASSERT_OK(shval_create(seg, "a", "q", SHVAL_ATOMIC, NULL, 0, &a));
	tredis_kill(&rd, SIGKILL);
	shval_batch *bt;
	ASSERT_OK(shval_batch_new(seg, &bt));
	int rc[20];
	int64_t got;
	for (int i = 0; i < 20; i++)
		ASSERT_OK(i % 2 ? shval_batch_add_i64(bt, a, 1, NULL, &rc[i])
				: shval_batch_get_i64(bt, a, &got, &rc[i]));
	size_t nf;
	int r = shval_batch_run(bt, &nf);
	ASSERT_EQ(nf, 20);
	ASSERT_EQ(r, rc[0]);
	ASSERT(strstr(shval_errmsg(seg), "batch op 1 of 20"));
	for (int i = 0; i < 20; i++)
		if (rc[i] != -ECONNRESET && rc[i] != -ECONNREFUSED &&
		    rc[i] != -EHOSTUNREACH && rc[i] != -EAGAIN)
			FAIL("op %d: %s", i, shval_errname(rc[i]));
	shval_batch_free(bt);
	shval_close(a);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

#define NPROC 3
#define NBATCH 100

/* Processes batching adds on shared values (chains of changes to one value
 * in each batch), with the connections cut every few ms: every add whose
 * result is 0 is applied once, none twice; an add reported -ECONNRESET
 * ("outcome unknown") may or may not be.  Without cuts: exact totals. */
static void concurrent(bool cut)
{
	struct tredis rd;
	tredis_start(&rd, cut ? "bcut" : "bconc", "timeout_ms=20000");
	shval_seg *seg;
	ASSERT_OK(shval_seg_open(rd.url, SHVAL_CREATE, NULL, &seg));
	shval *v[3];
	ASSERT_OK(shval_create(seg, "v0", "q", SHVAL_ATOMIC, NULL, 0, &v[0]));
	ASSERT_OK(shval_create(seg, "v1", "q", SHVAL_RLOCK, NULL, 0, &v[1]));
	ASSERT_OK(shval_create(seg, "v2", "i", SHVAL_RAW, NULL, 0, &v[2]));
	/* per process: [applied, unknown] adds, by the children */
	int64_t *counts = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT(counts != MAP_FAILED);
	memset(counts, 0, 4096);
	pid_t kids[NPROC];
	for (int k = 0; k < NPROC; k++) {
		kids[k] = fork();
		ASSERT(kids[k] >= 0);
		if (kids[k] == 0) {
			shval_batch *bt;
			ASSERT_OK(shval_batch_new(seg, &bt));
			int rc[30];
			for (int n = 0; n < NBATCH; n++) {
				for (int i = 0; i < 30; i++)
					ASSERT_OK(shval_batch_add_i64(
						bt, v[i % 3], 1, NULL, &rc[i]));
				(void)shval_batch_run(bt, NULL);
				for (int i = 0; i < 30; i++) {
					if (rc[i] == 0)
						counts[k * 6 + (i % 3)]++;
					else if (rc[i] == -ECONNRESET && cut)
						counts[k * 6 + 3 + (i % 3)]++;
					else
						FAIL("op %d: %s (%s)", i,
						     shval_errname(rc[i]),
						     shval_errmsg(seg));
				}
			}
			shval_batch_free(bt);
			exit(0);
		}
	}
	pid_t killer = -1;
	if (cut) {
		killer = fork();
		ASSERT(killer >= 0);
		if (killer == 0) {
			redisContext *c = redisConnectUnix(rd.sock);
			ASSERT(c && !c->err);
			for (;;) {
				redisReply *r = redisCommand(
					c, "CLIENT KILL TYPE normal");
				ASSERT(r);
				freeReplyObject(r);
				usleep(7000);
			}
		}
	}
	for (int k = 0; k < NPROC; k++)
		test_wait_ok(kids[k]);
	if (killer > 0) {
		kill(killer, SIGKILL);
		waitpid(killer, NULL, 0);
		redisReply *r = tredis_cmd(&rd, "INFO stats");
		const char *p = strstr(r->str, "total_connections_received:");
		ASSERT(p);
		long conns = atol(p + 27);
		freeReplyObject(r);
		ASSERT_GT(conns, 2 * NPROC); /* cut indeed */
	}
	for (int i = 0; i < 3; i++) {
		int64_t applied = 0, unknown = 0, x;
		for (int k = 0; k < NPROC; k++) {
			applied += counts[k * 6 + i];
			unknown += counts[k * 6 + 3 + i];
		}
		ASSERT_EQ(applied + unknown, NPROC * NBATCH * 10);
		ASSERT_OK(shval_get_i64(v[i], &x));
		if (x < applied || x > applied + unknown)
			FAIL("v%d = %lld: %lld adds applied, %lld unknown", i,
			     (long long)x, (long long)applied,
			     (long long)unknown);
		if (!cut)
			ASSERT_EQ(x, NPROC * NBATCH * 10);
		if (getenv("SHVAL_TEST_DUMP"))
			fprintf(stderr,
				"v%d = %lld: %lld applied, %lld unknown\n", i,
				(long long)x, (long long)applied,
				(long long)unknown);
		shval_close(v[i]);
	}
	munmap(counts, 4096);
	ASSERT_OK(shval_seg_close(seg));
	tredis_stop(&rd);
}

TEST(concurrent_exact)
{
	concurrent(false);
}

TEST(connections_cut)
{
	concurrent(true);
}

TEST_MAIN()
