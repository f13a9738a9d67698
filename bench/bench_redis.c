/*
 * bench/bench_redis.c — Redis segments (issue 14) against raw hiredis
 * round trips on the same server (run.sh starts a redis-server of its own
 * and passes its port in SHVAL_BENCH_REDIS_PORT).
 *
 *   redis_add      shval_add_i64 on a redis:// atomic "q"  vs  INCRBY
 *   redis_add_alt  a prototype, not shval: the server work of an add without
 *                  a server-side function (MULTI INCRBY, SET of the request
 *                  record, XADD of the wake-up, EXEC; one round trip) vs
 *                  INCRBY: the best a Lua-free add could do (BENCHMARKS.md)
 *   redis_add_bitfield, redis_add_bitfield_rec  prototypes, not shval: an
 *                  add as one native command (BITFIELD: the data, the
 *                  version, the request id and the flags in one string
 *                  key), and the same with the client's request record in a
 *                  second key (MULTI/EXEC) vs INCRBY (BENCHMARKS.md, "An
 *                  add without Lua")
 *   redis_read     shval_get_i64 on it                     vs  GET
 *   redis_ops_*    ops/s of adds to 16 values: one call each (single),
 *                  shval_batch_* of 64 (batch64: one pipeline), and raw
 *                  INCRBY 64-deep pipelined (raw_pipe64), reps alternated
 * Over TCP to 127.0.0.1, one request (or one pipeline) at a time.
 */
#include <hiredis/hiredis.h>
#include <shval.h>
#include <stdbool.h>

#include "harness.h"

static bh_opts O;
static redisContext *rc;
static shval *v;
static shval *vs[16];
static shval_seg *seg;

#define CHECK(x)                                                         \
	do {                                                             \
		int r_ = (x);                                            \
		if (r_) {                                                \
			fprintf(stderr, "%s: %s (%s)\n", #x,             \
				shval_strerror(r_), shval_errmsg(NULL)); \
			exit(1);                                         \
		}                                                        \
	} while (0)

static bh_run shval_add(void *ctx, uint64_t max)
{
	(void)ctx;
	int64_t before, after;
	int ok = shval_get_i64(v, &before) == 0;
	uint64_t i;
	double t0 = bh_now();
	BH_LOOP(i, max)
	ok &= shval_add_i64(v, 1, NULL) == 0;
	double t1 = bh_now();
	ok &= shval_get_i64(v, &after) == 0 && after == before + (int64_t)i;
	return (bh_run){ t1 - t0, (double)i, ok };
}

static bh_run raw_incrby(void *ctx, uint64_t max)
{
	(void)ctx;
	uint64_t i;
	int ok = 1;
	double t0 = bh_now();
	BH_LOOP(i, max)
	{
		redisReply *r = redisCommand(rc, "INCRBY bench.raw 1");
		ok &= r && r->type == REDIS_REPLY_INTEGER;
		freeReplyObject(r);
	}
	return (bh_run){ bh_now() - t0, (double)i, ok };
}

/* Prototypes, not shval: the requests of one add, appended for iteration i
 * (their count returned) and sent as one pipeline per add. */
static bh_run pipelined(uint64_t max, int (*append)(uint64_t i))
{
	uint64_t i;
	int ok = 1;
	double t0 = bh_now();
	BH_LOOP(i, max)
	{
		int n = append(i);
		for (int k = 0; k < n; k++) {
			redisReply *r;
			ok &= redisGetReply(rc, (void **)&r) == REDIS_OK && r &&
			      r->type != REDIS_REPLY_ERROR;
			freeReplyObject(r);
		}
	}
	return (bh_run){ bh_now() - t0, (double)i, ok };
}

/* What an add without Lua would make the server do (MULTI, INCRBY, the
 * request record, the wake-up entry, EXEC): five replies. */
static int append_multi(uint64_t i)
{
	redisAppendCommand(rc, "MULTI");
	redisAppendCommand(rc, "INCRBY bench.alt 1");
	redisAppendCommand(rc, "SET bench.alt.q %llu PX 600000",
			   (unsigned long long)i);
	redisAppendCommand(rc, "XADD bench.alt.ev MAXLEN ~ 256 * n a w w");
	redisAppendCommand(rc, "EXEC");
	return 5;
}

/* What an add as one native command could make the server do: the value's
 * data, version, last request and flags in one string key (BITFIELD):
 * add with the width's wrap, version += 4, the request id set (its old one
 * returned), the alive byte and the waiters byte read.  One command, no
 * Lua, no second key (BENCHMARKS.md: what it leaves out). */
static void append_bitfield_cmd(uint64_t i)
{
	redisAppendCommand(rc,
			   "BITFIELD bench.bf OVERFLOW WRAP INCRBY i64 0 1 "
			   "INCRBY i64 64 4 SET i64 128 %llu GET u8 192 GET "
			   "u8 200",
			   (unsigned long long)i);
}
static int append_bitfield(uint64_t i)
{
	append_bitfield_cmd(i);
	return 1;
}

/* The same with the client's own record of its last request in a second
 * key (what a resent add needs once another client has overwritten the
 * value's request id): MULTI, the BITFIELD, SET, EXEC. */
static int append_bitfield_rec(uint64_t i)
{
	redisAppendCommand(rc, "MULTI");
	append_bitfield_cmd(i);
	redisAppendCommand(rc, "SET bench.bf.q %llu", (unsigned long long)i);
	redisAppendCommand(rc, "EXEC");
	return 4;
}

/* The prototype rows, each against one raw INCRBY round trip. */
struct proto {
	const char *row, *label, *what, *note;
	int (*append)(uint64_t i);
};
static const struct proto protos[] = {
	{ "redis_add_alt", "MULTI INCRBY SET XADD EXEC (prototype)",
	  "a prototype, not shval: the server work of a Lua-free add (MULTI "
	  "INCRBY SET XADD EXEC, one round trip) vs one raw INCRBY",
	  "what dropping the server-side function could give at best (no "
	  "serial check: BENCHMARKS.md)",
	  append_multi },
	{ "redis_add_bitfield", "BITFIELD add+version+request (prototype)",
	  "a prototype, not shval: an add as one native command (BITFIELD: "
	  "data, version, request id, flags in one key) vs one raw INCRBY",
	  "what one native command per add could give (BENCHMARKS.md lists "
	  "what it leaves out)",
	  append_bitfield },
	{ "redis_add_bitfield_rec", "MULTI BITFIELD SET EXEC (prototype)",
	  "a prototype, not shval: the BITFIELD add and the client's request "
	  "record in a second key, one MULTI/EXEC vs one raw INCRBY",
	  "what a Lua-free add that keeps exactly-once resends could give",
	  append_bitfield_rec },
};

static bh_run proto_run(void *ctx, uint64_t max)
{
	return pipelined(max, ((const struct proto *)ctx)->append);
}

static int proto_rows(void)
{
	int ok = 1;
	for (size_t k = 0; k < sizeof protos / sizeof protos[0]; k++) {
		const struct proto *p = &protos[k];
		bh_side a = { p->label, proto_run, (void *)p, 0,
			      { 0 },    { 0 },     { 0 } };
		bh_side b = { "hiredis INCRBY",
			      raw_incrby,
			      NULL,
			      0,
			      { 0 },
			      { 0 },
			      { 0 } };
		ok &= bh_compare(&O, p->row, p->what, &a, &b, 200, 1.3,
				 p->note);
	}
	return ok;
}

static double ops_single(double sec)
{
	double t0 = bh_now(), t;
	uint64_t n = 0;
	do {
		for (int k = 0; k < 64; k++)
			if (shval_add_i64(vs[k % 16], 1, NULL) != 0)
				exit(1);
		n += 64;
	} while ((t = bh_now()) - t0 < sec * 1e9 && !(O.quick && n >= 256));
	return (double)n / ((t - t0) / 1e9);
}

static double ops_batch(double sec)
{
	static shval_batch *b;
	if (!b && shval_batch_new(seg, &b) != 0)
		exit(1);
	double t0 = bh_now(), t;
	uint64_t n = 0;
	do {
		for (int k = 0; k < 64; k++)
			shval_batch_add_i64(b, vs[k % 16], 1, NULL, NULL);
		size_t nf;
		if (shval_batch_run(b, &nf) != 0) {
			fprintf(stderr, "batch: %s\n", shval_errmsg(seg));
			exit(1);
		}
		n += 64;
	} while ((t = bh_now()) - t0 < sec * 1e9 && !(O.quick && n >= 256));
	return (double)n / ((t - t0) / 1e9);
}

static double ops_raw_pipe(double sec)
{
	double t0 = bh_now(), t;
	uint64_t n = 0;
	do {
		for (int k = 0; k < 64; k++)
			redisAppendCommand(rc, "INCRBY bench.raw 1");
		for (int k = 0; k < 64; k++) {
			void *r;
			if (redisGetReply(rc, &r) != REDIS_OK)
				exit(1);
			freeReplyObject(r);
		}
		n += 64;
	} while ((t = bh_now()) - t0 < sec * 1e9 && !(O.quick && n >= 256));
	return (double)n / ((t - t0) / 1e9);
}

static bh_run shval_get(void *ctx, uint64_t max)
{
	(void)ctx;
	uint64_t i;
	int ok = 1;
	int64_t x;
	double t0 = bh_now();
	BH_LOOP(i, max)
	ok &= shval_get_i64(v, &x) == 0;
	return (bh_run){ bh_now() - t0, (double)i, ok };
}

static bh_run raw_get(void *ctx, uint64_t max)
{
	(void)ctx;
	uint64_t i;
	int ok = 1;
	double t0 = bh_now();
	BH_LOOP(i, max)
	{
		redisReply *r = redisCommand(rc, "GET bench.raw");
		ok &= r && r->type == REDIS_REPLY_STRING;
		freeReplyObject(r);
	}
	return (bh_run){ bh_now() - t0, (double)i, ok };
}

int main(int argc, char **argv)
{
	if (!bh_parse(&O, argc, argv))
		return 2;
	const char *port = getenv("SHVAL_BENCH_REDIS_PORT");
	if (!port) {
		fprintf(stderr, "bench_redis: SHVAL_BENCH_REDIS_PORT not set "
				"(bench/run.sh starts the server)\n");
		return 2;
	}
	rc = redisConnect("127.0.0.1", atoi(port));
	if (!rc || rc->err) {
		fprintf(stderr, "bench_redis: cannot connect to port %s\n",
			port);
		return 1;
	}
	char url[128];
	snprintf(url, sizeof url, "redis://127.0.0.1:%s/shvalbench", port);
	CHECK(shval_seg_open(url, SHVAL_CREATE, NULL, &seg));
	CHECK(shval_find_or_create(seg, "n", "q", SHVAL_ATOMIC, NULL, 0, &v,
				   NULL));
	bh_side a = { "shval_add_i64 (redis://)",
		      shval_add,
		      NULL,
		      0,
		      { 0 },
		      { 0 },
		      { 0 } };
	bh_side b = {
		"hiredis INCRBY", raw_incrby, NULL, 0, { 0 }, { 0 }, { 0 }
	};
	int ok = bh_compare(
		&O, "redis_add",
		"add 1 to a Redis value: shval_add_i64 vs one raw "
		"INCRBY round trip (TCP, 127.0.0.1)",
		&a, &b, 200, 1.3,
		"one FCALL (compare-and-swap on the version) per add");
	bh_side c = { "shval_get_i64 (redis://)",
		      shval_get,
		      NULL,
		      0,
		      { 0 },
		      { 0 },
		      { 0 } };
	bh_side d = { "hiredis GET", raw_get, NULL, 0, { 0 }, { 0 }, { 0 } };
	ok &= bh_compare(&O, "redis_read",
			 "read a Redis value: shval_get_i64 (HMGET, checks) vs "
			 "one raw GET",
			 &c, &d, 200, 1.3, "");
	ok &= proto_rows();
	if (bh_selected(&O, "redis_ops")) {
		for (int i = 0; i < 16; i++) {
			char name[16];
			snprintf(name, sizeof name, "m%d", i);
			CHECK(shval_find_or_create(seg, name, "q", SHVAL_ATOMIC,
						   NULL, 0, &vs[i], NULL));
		}
		int reps = O.quick ? 1 : O.reps;
		double a1[BH_MAXREP], a2[BH_MAXREP], a3[BH_MAXREP];
		double sec = O.quick ? 0 : O.min_sec;
		if (!O.quick)
			ops_single(sec / 3), ops_batch(sec / 3),
				ops_raw_pipe(sec / 3);
		for (int r = 0; r < reps; r++) {
			if (r % 2 == 0) {
				a1[r] = ops_single(sec);
				a2[r] = ops_batch(sec);
				a3[r] = ops_raw_pipe(sec);
			} else {
				a3[r] = ops_raw_pipe(sec);
				a2[r] = ops_batch(sec);
				a1[r] = ops_single(sec);
			}
		}
		double m1 = bh_median(a1, reps), m2 = bh_median(a2, reps),
		       m3 = bh_median(a3, reps);
		char note[160];
		snprintf(note, sizeof note,
			 "batch64 / single = %.1fx; batch64 / raw_pipe64 = "
			 "%.2f (same run, %d reps alternated, medians)",
			 m2 / m1, m2 / m3, reps);
		bh_report_value(&O, "redis_ops_single",
				"adds to 16 Redis values, one shval_add_i64 "
				"call (one round trip) each",
				m1, "ops/s", -1, "");
		bh_report_value(&O, "redis_ops_batch64",
				"the same adds as shval_batch_add_i64, 64 per "
				"shval_batch_run (one pipeline)",
				m2, "ops/s", -1, note);
		bh_report_value(&O, "redis_ops_raw_pipe64",
				"raw INCRBY, 64-deep pipeline (scale)", m3,
				"ops/s", -1, "");
		for (int i = 0; i < 16; i++)
			shval_close(vs[i]);
	}
	shval_close(v);
	shval_seg_close(seg);
	redisFree(rc);
	return ok ? 0 : 1;
}
