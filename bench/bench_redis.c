/*
 * bench/bench_redis.c — Redis segments (issue 14) against raw hiredis
 * round trips on the same server (run.sh starts a redis-server of its own
 * and passes its port in SHVAL_BENCH_REDIS_PORT).
 *
 *   redis_add   shval_add_i64 on a redis:// atomic "q"  vs  INCRBY
 *   redis_read  shval_get_i64 on it                     vs  GET
 * Both sides over TCP to 127.0.0.1, one request at a time.  The API has no
 * batch calls, so there is no pipelined shval row; redis_pipe reports raw
 * INCRBY with 64-deep pipelining, for scale.
 */
#include <hiredis/hiredis.h>
#include <shval.h>
#include <stdbool.h>

#include "harness.h"

static bh_opts O;
static redisContext *rc;
static shval *v;

#define CHECK(x)                                                           \
	do {                                                               \
		int r_ = (x);                                              \
		if (r_) {                                                  \
			fprintf(stderr, "%s: %s (%s)\n", #x,              \
				shval_strerror(r_), shval_errmsg(NULL));   \
			exit(1);                                           \
		}                                                          \
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
		fprintf(stderr, "bench_redis: cannot connect to port %s\n", port);
		return 1;
	}
	char url[128];
	snprintf(url, sizeof url, "redis://127.0.0.1:%s/shvalbench", port);
	shval_seg *seg;
	CHECK(shval_seg_open(url, SHVAL_CREATE, NULL, &seg));
	CHECK(shval_find_or_create(seg, "n", "q", SHVAL_ATOMIC, NULL, 0, &v,
				   NULL));
	bh_side a = { "shval_add_i64 (redis://)", shval_add, NULL, 0, { 0 },
		      { 0 }, { 0 } };
	bh_side b = { "hiredis INCRBY", raw_incrby, NULL, 0, { 0 }, { 0 },
		      { 0 } };
	int ok = bh_compare(&O, "redis_add",
			    "add 1 to a Redis value: shval_add_i64 vs one raw "
			    "INCRBY round trip (TCP, 127.0.0.1)",
			    &a, &b, 200, 1.3,
			    "one FCALL (compare-and-swap on the version) per add");
	bh_side c = { "shval_get_i64 (redis://)", shval_get, NULL, 0, { 0 },
		      { 0 }, { 0 } };
	bh_side d = { "hiredis GET", raw_get, NULL, 0, { 0 }, { 0 }, { 0 } };
	ok &= bh_compare(&O, "redis_read",
			 "read a Redis value: shval_get_i64 (HMGET, checks) vs "
			 "one raw GET",
			 &c, &d, 200, 1.3, "");
	if (bh_selected(&O, "redis_pipe")) {
		int n = O.quick ? 256 : 65536;
		double t0 = bh_now();
		for (int i = 0; i < n; i += 64) {
			for (int k = 0; k < 64; k++)
				redisAppendCommand(rc, "INCRBY bench.raw 1");
			for (int k = 0; k < 64; k++) {
				void *r;
				if (redisGetReply(rc, &r) != REDIS_OK)
					return 1;
				freeReplyObject(r);
			}
		}
		double ops = n / ((bh_now() - t0) / 1e9);
		bh_report_value(&O, "redis_pipe",
				"raw INCRBY, 64-deep pipeline (no shval batch API)",
				ops, "ops/s", -1, "scale only");
	}
	shval_close(v);
	shval_seg_close(seg);
	redisFree(rc);
	return ok ? 0 : 1;
}
