/*
 * src/remote_conn.c — Redis segments' connections and requests (the design:
 * src/remote.h).  Not API.  A connection is made and authenticated here,
 * loads the embedded Lua library (FUNCTION LOAD of src/remote.lua) when the
 * server lacks this revision of it, and carries requests built as argument
 * lists and written in RESP by shval__r_append; a broken connection is
 * replaced and the request sent again until the segment's timeout.  A
 * forked child is noticed here (shval__r_enter) and drops its parent's
 * connection and sections.  Blocking XREADs use connections of their own.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "remote.h"

/* The Lua library (src/remote.lua), embedded at build time. */
__asm__(".section .rodata\n"
	"shval__lua_src:\n"
	".incbin \"" SHVAL_LUA_PATH "\"\n"
	".byte 0\n"
	".previous\n");
extern const char shval__lua_src[];

int shval__rfail(shval_seg *seg, int code, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return shval__failf(seg, code, "%s: %s", seg->rs->shown, msg);
}

/* ---- connections ---- */

static struct timeval ms_tv(int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
			      (suseconds_t)(ms % 1000) * 1000 };
	return tv;
}

/* A new connection, authenticated.  0 or a code with the message. */
int shval__r_connect(shval_seg *seg, redisContext **out)
{
	struct shval__rseg *rs = seg->rs;
	struct timeval tv = ms_tv(rs->timeout_ms);
	errno = 0;
	redisContext *c =
		rs->sock[0] ? redisConnectUnixWithTimeout(rs->sock, tv)
			    : redisConnectWithTimeout(rs->host, rs->port, tv);
	int e = errno;
	if (!c)
		return shval__rfail(seg, -ENOMEM, "out of memory");
	if (c->err) {
		int code = c->err == REDIS_ERR_IO && e ? -e : -EHOSTUNREACH;
		int r = shval__rfail(seg, code, "cannot connect: %s",
				     c->errstr);
		redisFree(c);
		return r;
	}
	(void)fcntl(c->fd, F_SETFD, FD_CLOEXEC);
	redisSetTimeout(c, tv);
	if (rs->pass[0]) {
		redisReply *rep =
			rs->user[0] ? redisCommand(c, "AUTH %s %s", rs->user,
						   rs->pass)
				    : redisCommand(c, "AUTH %s", rs->pass);
		int r = 0;
		if (!rep)
			r = shval__rfail(seg, -ECONNRESET,
					 "connection lost in AUTH");
		else if (rep->type == REDIS_REPLY_ERROR)
			r = shval__rfail(seg, -EACCES,
					 "authentication refused: %s",
					 rep->str);
		if (rep)
			freeReplyObject(rep);
		if (r) {
			redisFree(c);
			return r;
		}
	}
	*out = c;
	return 0;
}

/* The revision of the embedded Lua library ("local REV = 'N'"). */
static const char *lua_rev(char *buf, size_t cap)
{
	const char *p = strstr(shval__lua_src, "local REV = '");
	snprintf(buf, cap, "?");
	if (p) {
		p += 13;
		const char *q = strchr(p, '\'');
		if (q && (size_t)(q - p) < cap)
			snprintf(buf, cap, "%.*s", (int)(q - p), p);
	}
	return buf;
}

/* A new request connection: load the Lua library unless the server has
 * this revision of it.  0, or a code with the message. */
static int r_load_lib(shval_seg *seg, redisContext *c)
{
	char rev[32];
	lua_rev(rev, sizeof rev);
	redisReply *rep = redisCommand(c, "FCALL shval1_rev 0");
	if (!rep)
		return shval__rfail(seg, -ECONNRESET, "connection lost: %s",
				    c->errstr);
	bool same =
		rep->type == REDIS_REPLY_STRING && strcmp(rep->str, rev) == 0;
	if (rep->type == REDIS_REPLY_ERROR &&
	    (strncmp(rep->str, "LOADING", 7) == 0 ||
	     strncmp(rep->str, "BUSY", 4) == 0)) {
		/* a restarted server reading its files: try again */
		int r = shval__rfail(seg, -EAGAIN, "server not ready: %s",
				     rep->str);
		freeReplyObject(rep);
		return r;
	}
	if (rep->type == REDIS_REPLY_ERROR &&
	    (strncmp(rep->str, "NOAUTH", 6) == 0 ||
	     strncmp(rep->str, "NOPERM", 6) == 0)) {
		int r = shval__rfail(seg, -EACCES, "refused: %s", rep->str);
		freeReplyObject(rep);
		return r;
	}
	freeReplyObject(rep);
	if (same)
		return 0;
	rep = redisCommand(c, "FUNCTION LOAD REPLACE %s", shval__lua_src);
	if (!rep)
		return shval__rfail(seg, -ECONNRESET, "connection lost: %s",
				    c->errstr);
	int r = 0;
	if (rep->type == REDIS_REPLY_ERROR)
		r = shval__rfail(
			seg,
			strncmp(rep->str, "NOPERM", 6) == 0 ? -EACCES : -EPROTO,
			"FUNCTION LOAD refused (Redis 7 needed): %s", rep->str);
	freeReplyObject(rep);
	return r;
}

static void r_sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000),
			       (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* A forked child: the parent's connections and locks are not its own.
 * Every request checks shval__r_fork_gen (bumped in a fork's child; in
 * shval__r_enter, remote.h) rather than calling getpid(), a system call, on
 * the hot path. */
static pthread_mutex_t r_fork_mu = PTHREAD_MUTEX_INITIALIZER;
_Atomic unsigned shval__r_fork_gen = 1;
static pthread_once_t r_fork_once = PTHREAD_ONCE_INIT;
static void r_fork_child(void)
{
	atomic_fetch_add(&shval__r_fork_gen, 1);
}
static void r_fork_setup(void)
{
	pthread_atfork(NULL, NULL, r_fork_child);
}
void shval__r_fork_init(struct shval__rseg *rs)
{
	pthread_once(&r_fork_once, r_fork_setup);
	rs->fork_gen = atomic_load(&shval__r_fork_gen);
	rs->pid = getpid();
}
void shval__r_after_fork(struct shval__rseg *rs)
{
	pthread_mutex_lock(&r_fork_mu);
	if (rs->pid != getpid()) {
		pthread_mutex_init(&rs->mu, NULL);
		pthread_cond_init(&rs->renew_cv, NULL);
		if (rs->c) {
			close(rs->c->fd); /* the parent's socket stays open */
			rs->c->fd = -1;
			redisFree(rs->c);
			rs->c = NULL;
		}
		shval__r_held_clear(rs);
		rs->renew_on = false;
		/* the parent's shadow segment is shared memory (a memfd):
		 * left to it, never changed here (its handles and types stay
		 * valid for reading); this process makes its own on use */
		shval_seg **o =
			realloc(rs->old_shadows, (rs->nold + 1) * sizeof *o);
		if (o) { /* closed (process-local) with the segment handle */
			rs->old_shadows = o;
			o[rs->nold++] = rs->shadow;
		}
		rs->shadow = NULL;
		rs->client_id ^= (uint64_t)getpid() << 32;
		snprintf(rs->client_hex, sizeof rs->client_hex, "%016llx",
			 (unsigned long long)rs->client_id);
		rs->pid = getpid();
	}
	rs->fork_gen = atomic_load(&shval__r_fork_gen);
	pthread_mutex_unlock(&r_fork_mu);
}

/* Put n's decimal digits at p; returns the end. */
static char *put_u64(char *p, uint64_t n)
{
	char t[24];
	int k = 0;
	do
		t[k++] = (char)('0' + n % 10);
	while ((n /= 10) != 0);
	while (k)
		*p++ = t[--k];
	return p;
}

/* Format a command in RESP into c's output buffer: hiredis's own
 * formatting (redisCommandArgv: sdscatfmt per argument) costs more client
 * time than the rest of a request together (bench/bench_redis.c, callgrind
 * in BENCHMARKS.md).  lens NULL: NUL-terminated arguments.  0 or -1 (out of
 * memory: c->err is set by hiredis on a failed append). */
int shval__r_append(redisContext *c, int argc, const char *const *argv,
		    const size_t *lens)
{
	char stackbuf[2048], *buf = stackbuf;
	size_t need = 24;
	for (int i = 0; i < argc; i++)
		need += 24 + (lens ? lens[i] : strlen(argv[i]));
	if (need > sizeof stackbuf && !(buf = malloc(need)))
		return -1;
	char *p = buf;
	*p++ = '*';
	p = put_u64(p, (uint64_t)argc);
	*p++ = '\r';
	*p++ = '\n';
	for (int i = 0; i < argc; i++) {
		size_t n = lens ? lens[i] : strlen(argv[i]);
		*p++ = '$';
		p = put_u64(p, n);
		*p++ = '\r';
		*p++ = '\n';
		memcpy(p, argv[i], n);
		p += n;
		*p++ = '\r';
		*p++ = '\n';
	}
	int r = redisAppendFormattedCommand(c, buf, (size_t)(p - buf)) ==
				REDIS_OK
			? 0
			: -1;
	if (buf != stackbuf)
		free(buf);
	return r;
}

/* One request and its reply (NULL: the connection broke, or no memory). */
static redisReply *r_request(redisContext *c, int argc, const char *const *argv,
			     const size_t *lens)
{
	void *rep = NULL;
	if (shval__r_append(c, argc, argv, lens) != 0 ||
	    redisGetReply(c, &rep) != REDIS_OK)
		return NULL;
	return rep;
}

/* Run one command on the segment's connection (rs->mu held).  A broken
 * connection is replaced and the command sent again until the timeout
 * (every command here is safe to repeat: reads, or requests with an id).
 * "Function not found" loads the Lua library and sends it again.  A reply
 * that is an error becomes SHVAL_ECORRUPT with the server's text. */
int shval__r_cmd(shval_seg *seg, redisReply **out, int argc, const char **argv,
		 const size_t *lens)
{
	return shval__r_cmd_ex(seg, out, argc, argv, (size_t *)lens, 0);
}

/* resent_arg: the index of an argument set to "1" when the command is
 * sent again after a lost connection (shval1_write looks its id up). */
int shval__r_cmd_ex(shval_seg *seg, redisReply **out, int argc,
		    const char **argv, size_t *lens, int resent_arg)
{
	struct shval__rseg *rs = seg->rs;
	uint64_t deadline =
		shval__now_ns() + (uint64_t)rs->timeout_ms * SHVAL_MSEC;
	bool loaded = false;
	int64_t backoff = 10;
	*out = NULL;
	for (;;) {
		if (!rs->c) {
			int r = shval__r_connect(seg, &rs->c);
			if (!r && (r = r_load_lib(seg, rs->c)) != 0) {
				redisFree(rs->c);
				rs->c = NULL;
			}
			if (r == -EACCES || r == -EPROTO)
				return r; /* retrying will not help */
			if (r) {
				if (shval__now_ns() >= deadline)
					return r;
				r_sleep_ms(backoff);
				backoff = backoff < 200 ? backoff * 2 : 200;
				continue;
			}
		}
		redisReply *rep = r_request(rs->c, argc, argv, lens);
		if (!rep) {
			char why[128];
			snprintf(why, sizeof why, "%s", rs->c->errstr);
			redisFree(rs->c);
			rs->c = NULL;
			if (resent_arg > 0 && resent_arg < argc) {
				argv[resent_arg] =
					"1"; /* the caller's arrays */
				if (lens)
					lens[resent_arg] = 1;
			}
			if (shval__now_ns() >= deadline)
				return shval__rfail(
					seg, -ECONNRESET,
					"connection lost (%s) and not "
					"restored within %lld ms",
					why, (long long)rs->timeout_ms);
			continue;
		}
		if (rep->type == REDIS_REPLY_ERROR &&
		    (strncmp(rep->str, "LOADING", 7) == 0 ||
		     strncmp(rep->str, "TRYAGAIN", 8) == 0)) {
			/* a restarted server reading its files: not yet */
			freeReplyObject(rep);
			if (shval__now_ns() >= deadline)
				return shval__rfail(
					seg, -EAGAIN,
					"the server is still loading its "
					"data after %lld ms",
					(long long)rs->timeout_ms);
			r_sleep_ms(backoff);
			backoff = backoff < 200 ? backoff * 2 : 200;
			continue;
		}
		if (rep->type == REDIS_REPLY_ERROR && !loaded &&
		    strstr(rep->str, "Function not found")) {
			freeReplyObject(rep);
			loaded = true;
			rep = redisCommand(rs->c, "FUNCTION LOAD REPLACE %s",
					   shval__lua_src);
			if (!rep)
				continue;
			if (rep->type == REDIS_REPLY_ERROR) {
				int r = shval__rfail(
					seg, -EPROTO,
					"FUNCTION LOAD refused (Redis 7 "
					"needed): %s",
					rep->str);
				freeReplyObject(rep);
				return r;
			}
			freeReplyObject(rep);
			continue;
		}
		if (rep->type == REDIS_REPLY_ERROR) {
			int r;
			if (strncmp(rep->str, "NOAUTH", 6) == 0 ||
			    strncmp(rep->str, "NOPERM", 6) == 0 ||
			    strncmp(rep->str, "WRONGPASS", 9) == 0)
				r = shval__rfail(seg, -EACCES, "refused: %s",
						 rep->str);
			else if (strncmp(rep->str, "WRONGTYPE", 9) == 0)
				r = shval__rfail(
					seg, SHVAL_ECORRUPT,
					"a key under the prefix is not "
					"shval's (%s)",
					rep->str);
			else
				r = shval__rfail(seg, SHVAL_ECORRUPT,
						 "server error: %s", rep->str);
			freeReplyObject(rep);
			return r;
		}
		*out = rep;
		return 0;
	}
}

void shval__ra_fmt(struct rargs *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->own[a->n], sizeof a->own[a->n], fmt, ap);
	va_end(ap);
	ra_add(a, a->own[a->n]);
}

void shval__ra_u64(struct rargs *a, uint64_t x)
{
	char *e = put_u64(a->own[a->n], x);
	*e = 0;
	ra_bin(a, a->own[a->n], (size_t)(e - a->own[a->n]));
}

/* FCALL fn 0 prefix [req] args... */
void shval__ra_fcall(struct rargs *a, struct shval__rseg *rs, const char *fn,
		     bool req)
{
	ra_init(a);
	ra_add(a, "FCALL");
	ra_add(a, fn);
	ra_add(a, "0");
	ra_add(a, rs->prefix);
	if (req)
		shval__ra_fmt(a, "%016llx.%llu",
			      (unsigned long long)rs->client_id,
			      (unsigned long long)++rs->reqseq);
}

int shval__r_run(shval_seg *seg, struct rargs *a, redisReply **out)
{
	return shval__r_cmd(seg, out, a->n, a->v, a->l);
}

int shval__r_bad_reply(shval_seg *seg, redisReply *rep, const char *what)
{
	int r = shval__rfail(seg, SHVAL_ECORRUPT, "unexpected reply to %s (%s)",
			     what, el(rep, 0, NULL));
	freeReplyObject(rep);
	return r;
}

/* ---- blocking waits, on a connection of their own ---- */

/* Wait until the segment's stream (P:ev) has an entry after id, or ms
 * pass.  0 (woken or timed out: the caller looks again), or a connection
 * error (after which *bc is NULL and the caller may retry until its
 * deadline). */
int shval__r_block(shval_seg *seg, redisContext **bc, const char *id,
		   int64_t ms)
{
	char key[220];
	snprintf(key, sizeof key, "%s:ev", seg->rs->prefix);
	if (ms < 1)
		ms = 1;
	if (ms > R_BLOCK_MS)
		ms = R_BLOCK_MS;
	if (!*bc) {
		int r = shval__r_connect(seg, bc);
		if (r)
			return r;
	}
	redisSetTimeout(*bc, ms_tv(ms + seg->rs->timeout_ms));
	redisReply *rep =
		redisCommand(*bc, "XREAD COUNT 1 BLOCK %lld STREAMS %s %s",
			     (long long)ms, key, id);
	if (!rep) {
		int r = shval__rfail(seg, -ECONNRESET,
				     "connection lost while waiting: %s",
				     (*bc)->errstr);
		redisFree(*bc);
		*bc = NULL;
		return r;
	}
	int r = 0;
	if (rep->type == REDIS_REPLY_ERROR &&
	    strncmp(rep->str, "LOADING", 7) == 0)
		r_sleep_ms(50); /* a restarted server: the caller looks again */
	else if (rep->type == REDIS_REPLY_ERROR)
		r = shval__rfail(seg, SHVAL_ECORRUPT, "XREAD %s: %s", key,
				 rep->str);
	freeReplyObject(rep);
	return r;
}

/* shval__r_block, then after a connection failure a pause: 0 (the caller
 * looks again), or the failure once the deadline has passed. */
int shval__r_block_until(shval_seg *seg, redisContext **bc, const char *id,
			 int64_t ms, uint64_t deadline)
{
	int r = shval__r_block(seg, bc, id, ms);
	if (r)
		r = shval__r_block_failed(deadline, r);
	return r;
}

/* A request refused for another owner's section or lease: the reply
 * BUSY, the stream id to block after (id, 64 bytes) and perhaps the
 * lease's time left (*pttl).  1, or SHVAL_ECORRUPT for any other reply.
 * The caller frees rep. */
int shval__r_busy(shval_seg *seg, const redisReply *rep, char *id,
		  long long *pttl)
{
	if (!is(rep, "BUSY"))
		return shval__rfail(seg, SHVAL_ECORRUPT, "unexpected reply");
	snprintf(id, 64, "%s", el(rep, 1, NULL));
	if (pttl && rep->elements > 2)
		*pttl = rep->element[2]->integer;
	return 1;
}

/* After a failed blocking connection: pause before the caller retries. */
int shval__r_block_failed(uint64_t deadline, int r)
{
	uint64_t now = shval__now_ns();
	if (now >= deadline)
		return r;
	uint64_t left = (deadline - now) / SHVAL_MSEC;
	r_sleep_ms(left < 50 ? (int64_t)left + 1 : 50);
	return 0;
}

/* The request connection, made if there is none (rs->mu held). */
int shval__r_ensure(shval_seg *seg)
{
	if (seg->rs->c)
		return 0;
	const char *argv[] = { "PING" };
	redisReply *rep;
	int r = shval__r_cmd(seg, &rep, 1, argv, NULL);
	if (!r)
		freeReplyObject(rep);
	return r;
}

void shval__r_lost(struct shval__rseg *rs)
{
	if (rs->c) {
		redisFree(rs->c);
		rs->c = NULL;
	}
}
