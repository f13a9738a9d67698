/*
 * src/remote.c — Redis segments: "redis://[user:password@]host:port/prefix"
 * and "redis+unix:///path/to/socket?prefix=P" (issue 14).  Not API.
 *
 * DESIGN
 * ======
 * The server keeps each value as the exact bytes of the local C layout
 * (src/remote.lua lists the keys).  Every operation on a remote value is
 * computed by the local library's own code, on a private *shadow* value:
 * each remote handle owns one value of the same type and mode in a private
 * anonymous segment of this process.  An operation
 *   1. loads the value's bytes and version (one HMGET: one snapshot),
 *   2. copies the bytes into the shadow and runs the public function on it
 *      (shval_add_i64, shval_from_text, shval_field_set, ...), so widths,
 *      wrapping, range checks, parsing, string validation and error codes
 *      are exactly those of local values — nothing is rounded by Lua or by
 *      Redis's 64-bit integers, which never see the numbers,
 *   3. for a change, sends the shadow's new bytes with the version they
 *      were computed from to one server-side function (shval1_write), which
 *      stores them only if the version is unchanged and no one else holds
 *      the value's lease (compare-and-swap on the version); otherwise it
 *      returns the current bytes and the client goes back to 2.
 * A handle caches the last bytes it saw, so an uncontended change costs one
 * round trip (like INCRBY); contended changes retry, as a local atomic
 * float add does.  Reads always fetch.
 *
 * Locks are leases: SET NX PX of P:l:LOCK holding a fencing token (a
 * counter), renewed every lease/3 by a thread of the process while it
 * holds any lock.  Writes inside a section are staged here (per thread's
 * held lock) and applied at the outermost unlock by one call
 * (shval1_commit) that checks the token: all or nothing, and a section
 * whose owner died, was paused or cut off beyond the lease is never
 * applied.  The lease's owner leaves "holder" in the lock's hash until its
 * commit; a locker that finds a holder but no lease knows the owner died:
 * SHVAL_EOWNERDEAD, with the last committed state.
 *
 * Waiting: every creation, change, unlock and removal appends to the
 * segment's stream (P:ev; its last id is the segment's version).  A waiter
 * reads the version and the stream's last id in one call (shval1_peek),
 * then XREAD BLOCKs from that id on a connection of its own: a change
 * between the two is in the stream, so no wake-up is lost; on any entry
 * (perhaps another value's: one stream keeps writes cheap) and after a
 * reconnect it peeks again.
 *
 * Connections: one per segment handle for requests (serialised by rs->mu),
 * one per blocking wait, one for the lease renewer.  A request whose
 * connection broke is sent again on a new connection (for up to the
 * timeout); requests that change something carry an id and the server
 * answers a repeated id from its record (P:q:REQ) instead of applying it
 * twice.  A forked child opens its own connections and holds no lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "internal.h"

/* The Lua library (src/remote.lua), embedded at build time. */
__asm__(".section .rodata\n"
	"shval__lua_src:\n"
	".incbin \"" SHVAL_LUA_PATH "\"\n"
	".byte 0\n"
	".previous\n");
extern const char shval__lua_src[];

#define R_LEASE_MS 5000         /* default lease */
#define R_TIMEOUT_MS 5000       /* default connect / request / reconnect time */
#define R_BLOCK_MS 2000         /* longest single XREAD BLOCK */
#define R_MAX_VALUE (64u << 20) /* largest value (bytes) */

/* A section held by a thread of this process. */
struct rstage {
	char name[SHVAL_NAME_MAX + 1];
	char serial[24];
	size_t size;
	unsigned char *data;
	bool dirty;
	struct rstage *next;
};
struct rheld {
	char lock[SHVAL_NAME_MAX + 1];
	char token[24];
	pid_t tid;
	unsigned depth;
	bool lost; /* a renewal found the lease gone */
	struct rstage *st;
	struct rheld *next;
};

struct shval__rseg {
	char host[256];
	int port;
	char sock[1024];
	char user[128];
	char pass[256];
	char prefix[201];
	char shown[1400]; /* the name without the password, for messages */
	int64_t lease_ms, timeout_ms;
	pthread_mutex_t mu; /* everything below */
	redisContext *c;
	pid_t pid;
	shval_seg *shadow; /* this process's (a fork child makes its own) */
	shval_seg **old_shadows; /* a fork child's: the parents' */
	size_t nold;
	struct rheld *held;
	pthread_t renewer;
	bool renew_on, renew_stop;
	pthread_cond_t renew_cv;
	char **names; /* shval_seg_next's snapshot */
	size_t nnames;
	uint64_t client_id, reqseq, shadow_seq;
	unsigned fork_gen;   /* r_fork_gen when pid was current */
	char client_hex[24]; /* client_id as 16 hex digits */
	uint64_t batch_gen;
};

struct shval__rval {
	char name[SHVAL_NAME_MAX + 1];
	char key[SHVAL_NAME_MAX + 220]; /* "P:v:NAME" */
	char serial[24];
	char lock[SHVAL_NAME_MAX + 1]; /* lease name; "" for raw, atomic */
	shval *sh;                     /* the shadow */
	pid_t sh_pid;                  /* the process sh belongs to */
	bool cvalid;                   /* cache of the last bytes seen */
	char cver[24];
	unsigned char *cdata;
	/* shval__r_batch_run's state (rs->mu held) */
	uint64_t bgen;  /* the run it belongs to (rs->batch_gen) */
	bool bsingle;   /* the value's ops go one by one from here on */
	bool bbroken;   /* a pipelined change of it was refused */
	bool bfetch;    /* to fetch before the pipeline */
	char bprev[48]; /* id of its last pipelined change ("" none) */
};

/* Handles of remote values point here: any local code path reached by
 * mistake sees a removed value (SHVAL_ESTALE), never a wild pointer. */
static shval__entry r_dead_entry;

static int rfail(shval_seg *seg, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int rfail(shval_seg *seg, int code, const char *fmt, ...)
{
	char msg[900];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return shval__failf(seg, code, "%s: %s", seg->rs->shown, msg);
}

/* ---- names ---- */

static int parse_prefix(const char *s, size_t n, char *out)
{
	if (n < 1 || n > 200)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' ||
		      s[i] == '_' || s[i] == '-'))
			return -1;
	memcpy(out, s, n);
	out[n] = 0;
	return 0;
}

static int parse_num(const char *s, size_t n, int64_t lo, int64_t hi,
		     int64_t *out)
{
	int64_t x = 0;
	if (n == 0 || n > 12)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (s[i] - '0');
	}
	if (x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

static int bad_name(const char *name, const char *why)
{
	return shval__failf(NULL, SHVAL_EBADNAME, "segment name %.300s: %s",
			    name, why);
}

/* "redis://[user[:pass]@]host[:port]/prefix[?opts]" or
 * "redis+unix://[user[:pass]@]/path?prefix=P[&opts]"; opts: lease_ms=N,
 * timeout_ms=N. */
static int parse_url(const char *name, struct shval__rseg *rs)
{
	const char *p;
	bool unix_sock = false;
	if (strncmp(name, "redis://", 8) == 0)
		p = name + 8;
	else if (strncmp(name, "redis+unix://", 13) == 0) {
		p = name + 13;
		unix_sock = true;
	} else
		return bad_name(name, "not redis:// or redis+unix://");
	rs->lease_ms = R_LEASE_MS;
	rs->timeout_ms = R_TIMEOUT_MS;
	rs->port = 6379;
	const char *at = strchr(p, '@');
	const char *slash = strchr(p, '/');
	if (at && (!slash || at < slash)) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		const char *uend = colon ? colon : at;
		if ((size_t)(uend - p) >= sizeof rs->user)
			return bad_name(name, "user name too long");
		memcpy(rs->user, p, (size_t)(uend - p));
		if (colon) {
			if ((size_t)(at - colon - 1) >= sizeof rs->pass)
				return bad_name(name, "password too long");
			memcpy(rs->pass, colon + 1, (size_t)(at - colon - 1));
		}
		p = at + 1;
	}
	const char *q = strchr(p, '?');
	size_t mainlen = q ? (size_t)(q - p) : strlen(p);
	bool have_prefix = false;
	if (unix_sock) {
		if (p[0] != '/' || mainlen < 2 || mainlen >= sizeof rs->sock)
			return bad_name(name, "needs an absolute socket path");
		memcpy(rs->sock, p, mainlen);
	} else {
		const char *sl = memchr(p, '/', mainlen);
		if (!sl)
			return bad_name(name, "needs /prefix after host:port");
		const char *colon = memchr(p, ':', (size_t)(sl - p));
		const char *hend = colon ? colon : sl;
		if (hend == p || (size_t)(hend - p) >= sizeof rs->host)
			return bad_name(name, "needs a host");
		memcpy(rs->host, p, (size_t)(hend - p));
		if (colon) {
			int64_t port;
			if (parse_num(colon + 1, (size_t)(sl - colon - 1), 1,
				      65535, &port))
				return bad_name(name, "port is not 1..65535");
			rs->port = (int)port;
		}
		if (parse_prefix(sl + 1, mainlen - (size_t)(sl + 1 - p),
				 rs->prefix))
			return bad_name(name,
					"prefix must be 1..200 characters "
					"from [A-Za-z0-9._-]");
		have_prefix = true;
	}
	while (q && *q) {
		const char *k = q + 1;
		const char *amp = strchr(k, '&');
		size_t n = amp ? (size_t)(amp - k) : strlen(k);
		const char *eq = memchr(k, '=', n);
		if (!eq)
			return bad_name(name, "option without '='");
		size_t kn = (size_t)(eq - k), vn = n - kn - 1;
		if (kn == 6 && memcmp(k, "prefix", 6) == 0 && unix_sock) {
			if (parse_prefix(eq + 1, vn, rs->prefix))
				return bad_name(name, "prefix must be 1..200 "
						      "characters from "
						      "[A-Za-z0-9._-]");
			have_prefix = true;
		} else if (kn == 8 && memcmp(k, "lease_ms", 8) == 0) {
			if (parse_num(eq + 1, vn, 50, 3600000, &rs->lease_ms))
				return bad_name(name,
						"lease_ms is not 50..3600000");
		} else if (kn == 10 && memcmp(k, "timeout_ms", 10) == 0) {
			if (parse_num(eq + 1, vn, 50, 3600000, &rs->timeout_ms))
				return bad_name(
					name, "timeout_ms is not 50..3600000");
		} else
			return bad_name(name, "unknown option (prefix, "
					      "lease_ms, timeout_ms)");
		q = amp;
	}
	if (!have_prefix)
		return bad_name(name, "needs ?prefix=NAME");
	if (unix_sock)
		snprintf(rs->shown, sizeof rs->shown,
			 "redis+unix://%s?prefix=%s", rs->sock, rs->prefix);
	else
		snprintf(rs->shown, sizeof rs->shown, "redis://%s:%d/%s",
			 rs->host, rs->port, rs->prefix);
	return 0;
}

bool shval__r_is_name(const char *name)
{
	return name && strncmp(name, "redis", 5) == 0 &&
	       (name[5] == ':' || name[5] == '+');
}

/* ---- connections ---- */

static struct timeval ms_tv(int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
			      (suseconds_t)(ms % 1000) * 1000 };
	return tv;
}

/* A new connection, authenticated.  0 or a code with the message. */
static int r_connect(shval_seg *seg, redisContext **out)
{
	struct shval__rseg *rs = seg->rs;
	struct timeval tv = ms_tv(rs->timeout_ms);
	errno = 0;
	redisContext *c =
		rs->sock[0] ? redisConnectUnixWithTimeout(rs->sock, tv)
			    : redisConnectWithTimeout(rs->host, rs->port, tv);
	int e = errno;
	if (!c)
		return rfail(seg, -ENOMEM, "out of memory");
	if (c->err) {
		int code = c->err == REDIS_ERR_IO && e ? -e : -EHOSTUNREACH;
		int r = rfail(seg, code, "cannot connect: %s", c->errstr);
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
			r = rfail(seg, -ECONNRESET, "connection lost in AUTH");
		else if (rep->type == REDIS_REPLY_ERROR)
			r = rfail(seg, -EACCES, "authentication refused: %s",
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
		return rfail(seg, -ECONNRESET, "connection lost: %s",
			     c->errstr);
	bool same =
		rep->type == REDIS_REPLY_STRING && strcmp(rep->str, rev) == 0;
	if (rep->type == REDIS_REPLY_ERROR &&
	    (strncmp(rep->str, "LOADING", 7) == 0 ||
	     strncmp(rep->str, "BUSY", 4) == 0)) {
		/* a restarted server reading its files: try again */
		int r = rfail(seg, -EAGAIN, "server not ready: %s", rep->str);
		freeReplyObject(rep);
		return r;
	}
	if (rep->type == REDIS_REPLY_ERROR &&
	    (strncmp(rep->str, "NOAUTH", 6) == 0 ||
	     strncmp(rep->str, "NOPERM", 6) == 0)) {
		int r = rfail(seg, -EACCES, "refused: %s", rep->str);
		freeReplyObject(rep);
		return r;
	}
	freeReplyObject(rep);
	if (same)
		return 0;
	rep = redisCommand(c, "FUNCTION LOAD REPLACE %s", shval__lua_src);
	if (!rep)
		return rfail(seg, -ECONNRESET, "connection lost: %s",
			     c->errstr);
	int r = 0;
	if (rep->type == REDIS_REPLY_ERROR)
		r = rfail(
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
 * Every request checks r_fork_gen (bumped in a fork's child) rather than
 * calling getpid(), a system call, on the hot path. */
static pthread_mutex_t r_fork_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned r_fork_gen = 1;
static pthread_once_t r_fork_once = PTHREAD_ONCE_INIT;
static void r_fork_child(void)
{
	atomic_fetch_add(&r_fork_gen, 1);
}
static void r_fork_setup(void)
{
	pthread_atfork(NULL, NULL, r_fork_child);
}
static void r_after_fork(struct shval__rseg *rs)
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
		while (rs->held) {
			struct rheld *h = rs->held;
			rs->held = h->next;
			while (h->st) {
				struct rstage *s = h->st;
				h->st = s->next;
				free(s->data);
				free(s);
			}
			free(h);
		}
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
	rs->fork_gen = atomic_load(&r_fork_gen);
	pthread_mutex_unlock(&r_fork_mu);
}

static void r_enter(struct shval__rseg *rs)
{
	if (__builtin_expect(rs->fork_gen !=
				     atomic_load_explicit(&r_fork_gen,
							  memory_order_relaxed),
			     0))
		r_after_fork(rs);
	pthread_mutex_lock(&rs->mu);
}

static void r_leave(struct shval__rseg *rs)
{
	pthread_mutex_unlock(&rs->mu);
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
static int r_append(redisContext *c, int argc, const char *const *argv,
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
	if (r_append(c, argc, argv, lens) != 0 ||
	    redisGetReply(c, &rep) != REDIS_OK)
		return NULL;
	return rep;
}

/* Run one command on the segment's connection (rs->mu held).  A broken
 * connection is replaced and the command sent again until the timeout
 * (every command here is safe to repeat: reads, or requests with an id).
 * "Function not found" loads the Lua library and sends it again.  A reply
 * that is an error becomes SHVAL_ECORRUPT with the server's text. */
static int r_cmd_ex(shval_seg *seg, redisReply **out, int argc,
		    const char **argv, size_t *lens, int resent_arg);
static int r_cmd(shval_seg *seg, redisReply **out, int argc, const char **argv,
		 const size_t *lens)
{
	return r_cmd_ex(seg, out, argc, argv, (size_t *)lens, 0);
}

/* resent_arg: the index of an argument set to "1" when the command is
 * sent again after a lost connection (shval1_write looks its id up). */
static int r_cmd_ex(shval_seg *seg, redisReply **out, int argc,
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
			int r = r_connect(seg, &rs->c);
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
				return rfail(seg, -ECONNRESET,
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
				return rfail(seg, -EAGAIN,
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
				int r = rfail(seg, -EPROTO,
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
				r = rfail(seg, -EACCES, "refused: %s",
					  rep->str);
			else if (strncmp(rep->str, "WRONGTYPE", 9) == 0)
				r = rfail(seg, SHVAL_ECORRUPT,
					  "a key under the prefix is not "
					  "shval's (%s)",
					  rep->str);
			else
				r = rfail(seg, SHVAL_ECORRUPT,
					  "server error: %s", rep->str);
			freeReplyObject(rep);
			return r;
		}
		*out = rep;
		return 0;
	}
}

/* Commands are built as argument lists; strings are NUL-terminated except
 * data, given with its length. */
struct rargs {
	int n;
	const char *v[64];
	size_t l[64];
	char own[64][200]; /* copies for formatted arguments */
};

static void ra_init(struct rargs *a)
{
	a->n = 0;
}
static void ra_add(struct rargs *a, const char *s)
{
	a->v[a->n] = s;
	a->l[a->n++] = strlen(s);
}
static void ra_bin(struct rargs *a, const void *s, size_t n)
{
	a->v[a->n] = s;
	a->l[a->n++] = n;
}
static void ra_fmt(struct rargs *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void ra_fmt(struct rargs *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->own[a->n], sizeof a->own[a->n], fmt, ap);
	va_end(ap);
	ra_add(a, a->own[a->n]);
}

static void ra_u64(struct rargs *a, uint64_t x)
{
	char *e = put_u64(a->own[a->n], x);
	*e = 0;
	ra_bin(a, a->own[a->n], (size_t)(e - a->own[a->n]));
}

/* FCALL fn 0 prefix [req] args... */
static void ra_fcall(struct rargs *a, struct shval__rseg *rs, const char *fn,
		     bool req)
{
	ra_init(a);
	ra_add(a, "FCALL");
	ra_add(a, fn);
	ra_add(a, "0");
	ra_add(a, rs->prefix);
	if (req)
		ra_fmt(a, "%016llx.%llu", (unsigned long long)rs->client_id,
		       (unsigned long long)++rs->reqseq);
}

static int r_run(shval_seg *seg, struct rargs *a, redisReply **out)
{
	return r_cmd(seg, out, a->n, a->v, a->l);
}

/* Element i of an array reply as a string ("" if absent). */
static const char *el(const redisReply *rep, size_t i, size_t *len)
{
	static const char empty[] = "";
	if (rep->type != REDIS_REPLY_ARRAY || i >= rep->elements ||
	    (rep->element[i]->type != REDIS_REPLY_STRING &&
	     rep->element[i]->type != REDIS_REPLY_STATUS)) {
		if (len)
			*len = 0;
		return empty;
	}
	if (len)
		*len = rep->element[i]->len;
	return rep->element[i]->str;
}

static bool is(const redisReply *rep, const char *status)
{
	return strcmp(el(rep, 0, NULL), status) == 0;
}

static int bad_reply(shval_seg *seg, redisReply *rep, const char *what)
{
	int r = rfail(seg, SHVAL_ECORRUPT, "unexpected reply to %s (%s)", what,
		      el(rep, 0, NULL));
	freeReplyObject(rep);
	return r;
}

/* ---- blocking waits, on a connection of their own ---- */

/* Wait until stream key has an entry after id, or ms pass.  0 (woken or
 * timed out: the caller looks again), or a connection error (after which
 * *bc is NULL and the caller may retry until its deadline). */
static int r_block(shval_seg *seg, redisContext **bc, const char *key,
		   const char *id, int64_t ms)
{
	if (ms < 1)
		ms = 1;
	if (ms > R_BLOCK_MS)
		ms = R_BLOCK_MS;
	if (!*bc) {
		int r = r_connect(seg, bc);
		if (r)
			return r;
	}
	redisSetTimeout(*bc, ms_tv(ms + seg->rs->timeout_ms));
	redisReply *rep =
		redisCommand(*bc, "XREAD COUNT 1 BLOCK %lld STREAMS %s %s",
			     (long long)ms, key, id);
	if (!rep) {
		int r = rfail(seg, -ECONNRESET,
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
		r = rfail(seg, SHVAL_ECORRUPT, "XREAD %s: %s", key, rep->str);
	freeReplyObject(rep);
	return r;
}

/* After a failed blocking connection: pause before the caller retries. */
static int r_block_failed(uint64_t deadline, int r)
{
	uint64_t now = shval__now_ns();
	if (now >= deadline)
		return r;
	uint64_t left = (deadline - now) / SHVAL_MSEC;
	r_sleep_ms(left < 50 ? (int64_t)left + 1 : 50);
	return 0;
}

static uint64_t deadline_of(int64_t timeout_ns)
{
	if (timeout_ns < 0)
		return UINT64_MAX;
	return shval__now_ns() + (uint64_t)timeout_ns;
}

static int64_t ms_until(uint64_t deadline)
{
	uint64_t now = shval__now_ns();
	if (deadline == UINT64_MAX)
		return R_BLOCK_MS;
	if (now >= deadline)
		return 0;
	return (int64_t)((deadline - now + SHVAL_MSEC - 1) / SHVAL_MSEC);
}

/* ---- segments ---- */

static void r_seg_free(shval_seg *seg)
{
	struct shval__rseg *rs = seg->rs;
	if (rs) {
		if (rs->renew_on && rs->pid == getpid()) {
			pthread_mutex_lock(&rs->mu);
			rs->renew_stop = true;
			pthread_cond_signal(&rs->renew_cv);
			pthread_mutex_unlock(&rs->mu);
			pthread_join(rs->renewer, NULL);
		}
		if (rs->c)
			redisFree(rs->c);
		while (rs->held) {
			struct rheld *h = rs->held;
			rs->held = h->next;
			while (h->st) {
				struct rstage *s = h->st;
				h->st = s->next;
				free(s->data);
				free(s);
			}
			free(h);
		}
		for (size_t i = 0; i < rs->nnames; i++)
			free(rs->names[i]);
		free(rs->names);
		if (rs->shadow)
			shval_seg_close(rs->shadow);
		for (size_t i = 0; i < rs->nold; i++)
			shval_seg_close(rs->old_shadows[i]);
		free(rs->old_shadows);
		pthread_mutex_destroy(&rs->mu);
		pthread_cond_destroy(&rs->renew_cv);
		free(rs);
	}
	free(seg);
}

static void r_seg_unref(shval_seg *seg)
{
	if (atomic_fetch_sub(&seg->refs, 1) == 1)
		r_seg_free(seg);
}

static int r_seg_new(const char *name, unsigned flags, shval_seg **out)
{
	shval_seg *seg = calloc(1, sizeof *seg);
	struct shval__rseg *rs = calloc(1, sizeof *rs);
	if (!seg || !rs) {
		free(seg);
		free(rs);
		return shval__failf(NULL, -ENOMEM, "out of memory");
	}
	seg->rs = rs;
	seg->fd = -1;
	seg->kind = SHVAL__SEG_REDIS;
	seg->flags = flags;
	seg->attach_slot = -1;
	atomic_init(&seg->refs, 1);
	snprintf(seg->name, sizeof seg->name, "%s", name);
	pthread_mutex_init(&rs->mu, NULL);
	pthread_cond_init(&rs->renew_cv, NULL);
	pthread_once(&r_fork_once, r_fork_setup);
	rs->fork_gen = atomic_load(&r_fork_gen);
	rs->pid = getpid();
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	rs->client_id = ((uint64_t)getpid() << 40) ^ (uint64_t)ts.tv_nsec ^
			((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)seg;
	snprintf(rs->client_hex, sizeof rs->client_hex, "%016llx",
		 (unsigned long long)rs->client_id);
	int r = parse_url(name, rs);
	if (r) {
		r_seg_free(seg);
		return r;
	}
	*out = seg;
	return 0;
}

/* A failure while opening: the message goes to shval_errmsg(NULL). */
static int open_fail(shval_seg *seg, int r)
{
	char msg[1024];
	snprintf(msg, sizeof msg, "%s", shval_errmsg(seg));
	r_seg_free(seg);
	return shval__failf(NULL, r, "%s", msg);
}

/* Does the prefix hold keys that are not a segment's? (before a create) */
static int r_foreign_keys(shval_seg *seg, bool *found)
{
	struct shval__rseg *rs = seg->rs;
	char pat[220], cursor[32] = "0";
	snprintf(pat, sizeof pat, "%s:*", rs->prefix);
	*found = false;
	do {
		struct rargs a;
		ra_init(&a);
		ra_add(&a, "SCAN");
		ra_add(&a, cursor);
		ra_add(&a, "MATCH");
		ra_add(&a, pat);
		ra_add(&a, "COUNT");
		ra_add(&a, "1000");
		redisReply *rep;
		int r = r_run(seg, &a, &rep);
		if (r)
			return r;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
			return bad_reply(seg, rep, "SCAN");
		snprintf(cursor, sizeof cursor, "%s", el(rep, 0, NULL));
		if (rep->element[1]->elements > 0)
			*found = true;
		freeReplyObject(rep);
	} while (!*found && strcmp(cursor, "0") != 0);
	return 0;
}

int shval__r_seg_open(const char *name, unsigned flags, shval_seg **out)
{
	shval_seg *seg;
	if (flags & SHVAL_TEMP)
		return shval__failf(NULL, SHVAL_EMODE,
				    "segment %.300s: SHVAL_TEMP is not offered "
				    "on Redis segments (no attach table)",
				    name);
	int r = r_seg_new(name, flags, &seg);
	if (r)
		return r;
	struct shval__rseg *rs = seg->rs;
	r_enter(rs);
	struct rargs a;
	redisReply *rep = NULL;
	bool foreign = false;
	/* Keys under the prefix but no segment header: foreign, unless the
	 * header appeared meanwhile (another process's create, one server
	 * call, won a race with this one: its keys are no foreign keys). */
	for (int probe = 0; (flags & SHVAL_CREATE) && probe < 2; probe++) {
		ra_fcall(&a, rs, "shval1_segopen", false);
		ra_add(&a, "0");
		ra_add(&a, "0");
		ra_add(&a, "0");
		ra_add(&a, "0");
		r = r_run(seg, &a, &rep);
		bool noseg = !r && is(rep, "NOSEG");
		if (rep)
			freeReplyObject(rep);
		rep = NULL;
		if (probe == 1 && !noseg)
			foreign = false;
		else if (probe == 0 && noseg)
			r = r_foreign_keys(seg, &foreign);
		if (r || !foreign)
			break;
	}
	if (!r && foreign)
		r = rfail(seg, -EEXIST,
			  "the prefix holds keys that are not a shval "
			  "segment's: choose another prefix");
	if (!r) {
		ra_fcall(&a, rs, "shval1_segopen", false);
		ra_add(&a, (flags & SHVAL_CREATE) ? "1" : "0");
		ra_add(&a, (flags & SHVAL_EXCL) ? "1" : "0");
		ra_fmt(&a, "%lld", (long long)time(NULL));
		ra_fmt(&a, "%d", (int)getpid());
		r = r_run(seg, &a, &rep);
	}
	if (!r) {
		if (is(rep, "NOSEG"))
			r = rfail(seg, -ENOENT, "segment does not exist");
		else if (is(rep, "EXISTS"))
			r = rfail(seg, -EEXIST,
				  "segment already exists (SHVAL_EXCL)");
		else if (is(rep, "FOREIGN"))
			r = rfail(seg, SHVAL_EVERSION,
				  "%s:seg is not a shval segment's header (or "
				  "another format version)",
				  rs->prefix);
		else if (!is(rep, "OK"))
			r = rfail(seg, SHVAL_ECORRUPT, "unexpected reply");
		freeReplyObject(rep);
	}
	if (!r) {
		r = shval_seg_open(NULL, SHVAL_CREATE, NULL, &rs->shadow);
		if (r)
			r = rfail(seg, r, "shadow segment: %s",
				  shval_errmsg(NULL));
	}
	r_leave(rs);
	if (r)
		return open_fail(seg, r);
	*out = seg;
	return 0;
}

int shval__r_seg_close(shval_seg *seg)
{
	seg->user_closed = true;
	r_seg_unref(seg);
	return 0;
}

int shval__r_seg_unlink(const char *name)
{
	shval_seg *seg;
	int r = r_seg_new(name, 0, &seg);
	if (r)
		return r;
	struct shval__rseg *rs = seg->rs;
	r_enter(rs);
	struct rargs a;
	redisReply *rep;
	ra_fcall(&a, rs, "shval1_segopen", false);
	ra_add(&a, "0");
	ra_add(&a, "0");
	ra_add(&a, "0");
	ra_add(&a, "0");
	r = r_run(seg, &a, &rep);
	if (!r) {
		if (is(rep, "NOSEG"))
			r = rfail(seg, -ENOENT, "segment does not exist");
		else if (is(rep, "FOREIGN"))
			r = rfail(seg, SHVAL_EVERSION,
				  "not a shval segment: left alone");
		freeReplyObject(rep);
	}
	/* Delete the segment's keys (shapes of src/remote.lua), header
	 * first (opens fail from then on); foreign keys stay. */
	static const char *const shapes[] = { "seg", "dir", "ev", "v:*",
					      "l:*", "e:*", "q:*" };
	for (size_t k = 0; !r && k < sizeof shapes / sizeof *shapes; k++) {
		char pat[220], cursor[32] = "0";
		snprintf(pat, sizeof pat, "%s:%s", rs->prefix, shapes[k]);
		do {
			ra_init(&a);
			ra_add(&a, "SCAN");
			ra_add(&a, cursor);
			ra_add(&a, "MATCH");
			ra_add(&a, pat);
			ra_add(&a, "COUNT");
			ra_add(&a, "1000");
			r = r_run(seg, &a, &rep);
			if (r)
				break;
			if (rep->type != REDIS_REPLY_ARRAY ||
			    rep->elements != 2) {
				r = bad_reply(seg, rep, "SCAN");
				break;
			}
			snprintf(cursor, sizeof cursor, "%s", el(rep, 0, NULL));
			redisReply *keys = rep->element[1];
			for (size_t i = 0; !r && i < keys->elements; i++) {
				struct rargs d;
				redisReply *dr;
				ra_init(&d);
				ra_add(&d, "UNLINK");
				ra_bin(&d, keys->element[i]->str,
				       keys->element[i]->len);
				r = r_run(seg, &d, &dr);
				if (!r)
					freeReplyObject(dr);
			}
			freeReplyObject(rep);
		} while (!r && strcmp(cursor, "0") != 0);
	}
	r_leave(rs);
	if (r)
		return open_fail(seg, r);
	r_seg_free(seg);
	return 0;
}

static int r_segpeek(shval_seg *seg, uint64_t *ver, char *id, size_t idcap);
static int r_ensure(shval_seg *seg);
static void r_lost(struct shval__rseg *rs);

/* The bytes the server holds for the segment's keys: MEMORY USAGE (exact:
 * SAMPLES 0) of its header, directory, stream and every value's hash,
 * pipelined 512 at a time (rs->mu held).  Leases and request records
 * (short-lived) are not counted; 0 if the server refuses MEMORY (an
 * ACL). */
static int r_usage(shval_seg *seg, uint64_t *used)
{
	struct shval__rseg *rs = seg->rs;
	char k[SHVAL_NAME_MAX + 220];
	snprintf(k, sizeof k, "%s:dir", rs->prefix);
	const char *hk[] = { "HKEYS", k };
	redisReply *names;
	int r = r_cmd(seg, &names, 2, hk, NULL);
	if (r)
		return r;
	if (names->type != REDIS_REPLY_ARRAY)
		return bad_reply(seg, names, "HKEYS");
	static const char *const fixed[] = { "seg", "dir", "ev" };
	size_t nkeys = 3 + names->elements;
	bool refused = false;
	*used = 0;
	for (size_t base = 0; !r && base < nkeys; base += 512) {
		size_t end = base + 512 < nkeys ? base + 512 : nkeys;
		if ((r = r_ensure(seg)) != 0)
			break;
		for (size_t i = base; i < end; i++) {
			if (i < 3)
				snprintf(k, sizeof k, "%s:%s", rs->prefix,
					 fixed[i]);
			else
				snprintf(k, sizeof k, "%s:v:%.*s", rs->prefix,
					 (int)names->element[i - 3]->len,
					 names->element[i - 3]->str);
			const char *argv[] = { "MEMORY", "USAGE", k, "SAMPLES",
					       "0" };
			if (r_append(rs->c, 5, argv, NULL) != 0) {
				r = rfail(seg, -ENOMEM, "out of memory");
				break;
			}
		}
		for (size_t i = base; !r && i < end; i++) {
			void *rep;
			if (redisGetReply(rs->c, &rep) != REDIS_OK) {
				r = rfail(seg, -ECONNRESET,
					  "connection lost: %s", rs->c->errstr);
				r_lost(rs);
				break;
			}
			redisReply *x = rep;
			if (x->type == REDIS_REPLY_INTEGER)
				*used += (uint64_t)x->integer;
			else if (x->type == REDIS_REPLY_ERROR)
				refused = true; /* an ACL: unknown, 0 */
			freeReplyObject(x);     /* nil: removed meanwhile */
		}
	}
	freeReplyObject(names);
	if (refused)
		*used = 0;
	return r;
}

int shval__r_seg_info(shval_seg *seg, struct shval_seg_info *info)
{
	struct shval__rseg *rs = seg->rs;
	memset(info, 0, sizeof *info);
	r_enter(rs);
	struct rargs a;
	redisReply *rep;
	char k[220];
	snprintf(k, sizeof k, "%s:seg", rs->prefix);
	ra_init(&a);
	ra_add(&a, "HMGET");
	ra_add(&a, k);
	ra_add(&a, "magic");
	ra_add(&a, "created");
	ra_add(&a, "pid");
	int r = r_run(seg, &a, &rep);
	if (!r) {
		if (!el(rep, 0, NULL)[0])
			r = rfail(seg, -ENOENT, "the segment was removed");
		info->format_major = 1;
		info->created = strtoll(el(rep, 1, NULL), NULL, 10);
		info->creator_pid = (pid_t)strtol(el(rep, 2, NULL), NULL, 10);
		freeReplyObject(rep);
	}
	if (!r) {
		snprintf(k, sizeof k, "%s:dir", rs->prefix);
		ra_init(&a);
		ra_add(&a, "HLEN");
		ra_add(&a, k);
		r = r_run(seg, &a, &rep);
		if (!r) {
			info->nvalues = (uint64_t)rep->integer;
			freeReplyObject(rep);
		}
	}
	if (!r)
		r = r_usage(seg, &info->used);
	info->size = info->used;
	info->owner = getuid();
	r_leave(rs);
	char id[64];
	if (!r)
		r = r_segpeek(seg, &info->version, id, sizeof id);
	return r;
}

/* ---- values: create, find ---- */

static bool name_ok(const char *name, size_t *len)
{
	size_t n = name ? strlen(name) : 0;
	if (n < 1 || n > SHVAL_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c == 0x7f)
			return false;
	}
	*len = n;
	return true;
}

static void stage_free(struct rstage *s)
{
	free(s->data);
	free(s);
}

/* A handle for the remote value name (serial), whose shadow is sh. */
static int r_handle(shval_seg *seg, const char *name, const char *serial,
		    const char *lock, shval *sh, shval **out)
{
	shval *v = calloc(1, sizeof *v);
	struct shval__rval *rv = calloc(1, sizeof *rv);
	if (!v || !rv) {
		free(v);
		free(rv);
		return rfail(seg, -ENOMEM, "out of memory");
	}
	snprintf(rv->name, sizeof rv->name, "%s", name);
	snprintf(rv->key, sizeof rv->key, "%s:v:%s", seg->rs->prefix, name);
	snprintf(rv->serial, sizeof rv->serial, "%s", serial);
	snprintf(rv->lock, sizeof rv->lock, "%s", lock);
	rv->sh = sh;
	rv->sh_pid = getpid();
	v->r = rv;
	v->seg = seg;
	v->e = &r_dead_entry;
	v->serial = 1; /* never r_dead_entry's */
	v->kind = sh->kind;
	v->mode = sh->mode;
	v->size = sh->size;
	v->type = sh->type;
	/* fast.flags = 0: the header's inline paths call the functions */
	atomic_fetch_add(&seg->refs, 1);
	*out = v;
	return 0;
}

void shval__r_close(shval *v)
{
	struct shval__rval *rv = v->r;
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	r_enter(rs);
	if (rv->sh_pid == getpid()) { /* a parent's shadow is not ours */
		struct shval_info in;
		if (shval_info(rv->sh, &in) == 0)
			(void)shval_remove(rs->shadow, in.name);
	}
	shval_close(rv->sh); /* the handle is this process's either way */
	r_leave(rs);
	free(rv->cdata);
	free(rv);
	free(v);
	r_seg_unref(seg);
}

/* The shadow: a private value of the same type and mode. */
static int r_shadow(shval_seg *seg, const char *type, unsigned flags,
		    bool lock_entry, const void *init, size_t init_len,
		    shval **sh)
{
	struct shval__rseg *rs = seg->rs;
	char sname[32];
	snprintf(sname, sizeof sname, "r%llu",
		 (unsigned long long)++rs->shadow_seq);
	if (!rs->shadow) {
		int r = shval_seg_open(NULL, SHVAL_CREATE, NULL, &rs->shadow);
		if (r)
			return rfail(seg, r, "shadow segment: %s",
				     shval_errmsg(NULL));
	}
	int r = lock_entry ? shval_lock_create(rs->shadow, sname, flags, sh)
			   : shval_create(rs->shadow, sname, type, flags, init,
					  init_len, sh);
	if (r)
		return shval__failf(seg, r, "%s", shval_errmsg(rs->shadow));
	return 0;
}

static void r_shadow_drop(shval_seg *seg, shval *sh)
{
	struct shval_info in;
	if (shval_info(sh, &in) == 0)
		(void)shval_remove(seg->rs->shadow, in.name);
	shval_close(sh);
}

static int r_find_locked(shval_seg *seg, const char *name, const char *type,
			 unsigned want_mode, bool check_mode, shval **out)
{
	struct shval__rseg *rs = seg->rs;
	char k[SHVAL_NAME_MAX + 220];
	snprintf(k, sizeof k, "%s:v:%s", rs->prefix, name);
	struct rargs a;
	redisReply *rep;
	ra_init(&a);
	ra_add(&a, "HMGET");
	ra_add(&a, k);
	ra_add(&a, "kind");
	ra_add(&a, "type");
	ra_add(&a, "mode");
	ra_add(&a, "serial");
	ra_add(&a, "guard");
	int r = r_run(seg, &a, &rep);
	if (r)
		return r;
	char kind[4], stype[SHVAL_TYPE_MAX + 1], serial[24],
		guard[SHVAL_NAME_MAX + 1];
	snprintf(kind, sizeof kind, "%s", el(rep, 0, NULL));
	snprintf(stype, sizeof stype, "%s", el(rep, 1, NULL));
	unsigned mode = (unsigned)strtoul(el(rep, 2, NULL), NULL, 10);
	snprintf(serial, sizeof serial, "%s", el(rep, 3, NULL));
	snprintf(guard, sizeof guard, "%s", el(rep, 4, NULL));
	freeReplyObject(rep);
	if (!serial[0])
		return rfail(seg, SHVAL_ENOTFOUND, "no value named %s", name);
	bool lock_entry = kind[0] == 'l';
	if (!lock_entry && kind[0] != 'v')
		return rfail(seg, SHVAL_ECORRUPT, "value %s: unknown kind '%s'",
			     name, kind);
	if (type && !lock_entry) {
		char canon[SHVAL_TYPE_MAX + 1];
		r = shval_type_canonical(type, canon, sizeof canon, NULL);
		if (r)
			return shval__failf(seg, r, "%s", shval_errmsg(NULL));
		if (strcmp(canon, stype) != 0)
			return rfail(seg, SHVAL_ETYPE,
				     "value %s has type \"%s\", not \"%s\"",
				     name, stype, canon);
	} else if (type && lock_entry)
		return rfail(seg, SHVAL_ETYPE,
			     "%s is a lock, not a value of type \"%s\"", name,
			     type);
	if (check_mode && mode != want_mode)
		return rfail(seg, SHVAL_EMODE,
			     "value %s exists with mode 0x%x, not 0x%x", name,
			     mode, want_mode);
	shval *sh;
	/* a guarded value's shadow has a lock of its own: the lock that
	 * matters is the server's lease of the guard */
	r = r_shadow(seg, stype, mode & SHVAL_MODE_MASK, lock_entry, NULL, 0,
		     &sh);
	if (r)
		return rfail(seg, SHVAL_ECORRUPT,
			     "value %s: stored type \"%s\" or mode 0x%x is "
			     "invalid (%s)",
			     name, stype, mode, shval_errmsg(seg));
	const char *lock = "";
	if (lock_entry)
		lock = name;
	else if (guard[0])
		lock = guard;
	else if ((mode & SHVAL_MODE_MASK) <= SHVAL_LOCK)
		lock = name;
	r = r_handle(seg, name, serial, lock, sh, out);
	if (r)
		r_shadow_drop(seg, sh);
	return r;
}

int shval__r_find(shval_seg *seg, const char *name, const char *type,
		  shval **out)
{
	size_t n;
	*out = NULL; /* as local: NULL on failure */
	if (!name_ok(name, &n))
		return rfail(seg, SHVAL_EBADNAME, "invalid value name");
	char canon[SHVAL_TYPE_MAX + 1];
	int tr = type ? shval_type_canonical(type, canon, sizeof canon, NULL)
		      : 0;
	if (tr) /* as local: a bad type string before a missing value */
		return shval__failf(seg, tr, "%s", shval_errmsg(NULL));
	r_enter(seg->rs);
	int r = r_find_locked(seg, name, type, 0, false, out);
	r_leave(seg->rs);
	return r;
}

/* create, find_or_create, lock_create, create_guarded. */
int shval__r_create(shval_seg *seg, const char *name, const char *type,
		    unsigned flags, const void *init, size_t init_len,
		    shval *guard, bool lock_entry, bool or_find, shval **out,
		    bool *created)
{
	struct shval__rseg *rs = seg->rs;
	size_t n;
	*out = NULL; /* as local: NULL on failure */
	if (created)
		*created = false;
	if (!name_ok(name, &n))
		return rfail(seg, SHVAL_EBADNAME, "invalid value name");
	int nr = shval__check_utf8_name(seg, name, n); /* as local */
	if (nr)
		return nr;
	if (seg->flags & SHVAL_RDONLY)
		return rfail(seg, SHVAL_ERDONLY, "segment opened read-only");
	if (guard &&
	    (!guard->r || guard->seg != seg || guard->kind != SHVAL_KIND_LOCK))
		return rfail(seg, SHVAL_EMISUSE,
			     "the guard is not a lock of this segment");
	unsigned mode = flags & SHVAL_MODE_MASK;
	if (guard)
		mode = guard->mode;
	size_t tsize = 0;
	char canon[SHVAL_TYPE_MAX + 1];
	if (!lock_entry && type &&
	    shval_type_canonical(type, canon, sizeof canon, &tsize) == 0 &&
	    tsize > R_MAX_VALUE)
		return rfail(seg, SHVAL_ETOOBIG,
			     "value %s: %zu bytes, over the %u bytes a Redis "
			     "segment takes",
			     name, tsize, R_MAX_VALUE);
	r_enter(rs);
	shval *sh;
	int r = r_shadow(seg, type, lock_entry ? flags : mode, lock_entry, init,
			 init_len, &sh);
	if (r) {
		r_leave(rs);
		return r;
	}
	struct rargs a;
	redisReply *rep;
	ra_fcall(&a, rs, "shval1_create", true);
	ra_add(&a, name);
	ra_add(&a, lock_entry ? "l" : "v");
	ra_add(&a, lock_entry ? "lock" : sh->type->canon);
	ra_fmt(&a, "%u", lock_entry ? (flags & SHVAL_MODE_MASK) : mode);
	ra_bin(&a, lock_entry ? "" : (const char *)sh->data,
	       lock_entry ? 0 : sh->size);
	ra_add(&a, guard ? guard->r->name : "");
	ra_add(&a, guard ? guard->r->serial : "");
	r = r_run(seg, &a, &rep);
	if (!r) {
		if (is(rep, "OK")) {
			const char *lock = "";
			if (lock_entry || (!guard && mode <= SHVAL_LOCK))
				lock = name;
			else if (guard)
				lock = guard->r->name;
			r = r_handle(seg, name, el(rep, 1, NULL), lock, sh,
				     out);
			if (!r) {
				sh = NULL;
				if (created)
					*created = true;
			}
		} else if (is(rep, "EXISTS"))
			r = or_find ? 1
				    : rfail(seg, SHVAL_EEXIST,
					    "a value named %s exists", name);
		else if (is(rep, "NOSEG"))
			r = rfail(seg, SHVAL_ESTALE,
				  "the segment was removed from the server");
		else if (is(rep, "FOREIGNKEY"))
			r = rfail(seg, SHVAL_ECORRUPT,
				  "%s:v:%s is a %s, not shval's hash",
				  rs->prefix, name, el(rep, 1, NULL));
		else if (is(rep, "NOGUARD"))
			r = rfail(seg, SHVAL_ESTALE, "the lock %s was removed",
				  guard ? guard->r->name : "");
		else
			r = rfail(seg, SHVAL_ECORRUPT, "unexpected reply");
		freeReplyObject(rep);
	}
	if (sh)
		r_shadow_drop(seg, sh);
	if (r == 1)
		r = r_find_locked(seg, name, lock_entry ? NULL : type,
				  lock_entry ? (flags & SHVAL_MODE_MASK) : mode,
				  true, out);
	r_leave(rs);
	return r;
}

int shval__r_remove(shval_seg *seg, const char *name)
{
	struct shval__rseg *rs = seg->rs;
	size_t n;
	if (!name_ok(name, &n))
		return rfail(seg, SHVAL_EBADNAME, "invalid value name");
	if (seg->flags & SHVAL_RDONLY)
		return rfail(seg, SHVAL_ERDONLY, "segment opened read-only");
	/* As local removal: wait (at most 1 s) for a section to end. */
	uint64_t deadline = shval__now_ns() + SHVAL_SEC;
	redisContext *bc = NULL;
	int r;
	for (;;) {
		r_enter(rs);
		struct rargs a;
		redisReply *rep;
		ra_fcall(&a, rs, "shval1_remove", true);
		ra_add(&a, name);
		ra_add(&a, shval__now_ns() >= deadline ? "1" : "0");
		r = r_run(seg, &a, &rep);
		char key[SHVAL_NAME_MAX + 220], id[64] = "";
		if (!r) {
			if (is(rep, "OK"))
				r = 0;
			else if (is(rep, "NOTFOUND"))
				r = rfail(seg, SHVAL_ENOTFOUND,
					  "no value named %s", name);
			else if (is(rep, "INUSE"))
				r = rfail(seg, SHVAL_EMISUSE,
					  "lock %s still guards %s values",
					  name, el(rep, 1, NULL));
			else if (is(rep, "BUSY")) {
				r = 1;
				snprintf(id, sizeof id, "%s", el(rep, 1, NULL));
			} else
				r = rfail(seg, SHVAL_ECORRUPT,
					  "unexpected reply");
			freeReplyObject(rep);
		}
		r_leave(rs);
		if (r != 1)
			break;
		snprintf(key, sizeof key, "%s:ev", rs->prefix);
		int b = r_block(seg, &bc, key, id, ms_until(deadline) + 1);
		if (b && (b = r_block_failed(deadline, b)) != 0) {
			r = b;
			break;
		}
	}
	if (bc)
		redisFree(bc);
	return r;
}

/* ---- the operation engine ---- */

static struct rheld *held_find(struct shval__rseg *rs, const char *lock)
{
	pid_t tid = gettid();
	for (struct rheld *h = rs->held; h; h = h->next)
		if (h->tid == tid && strcmp(h->lock, lock) == 0)
			return h;
	return NULL;
}

static int r_fetched(shval *v, redisReply *rep, char *ver, unsigned char *data);

/* Fetch the value's committed bytes and version (one HMGET). */
static int r_fetch(shval *v, char *ver, unsigned char *data)
{
	shval_seg *seg = v->seg;
	struct shval__rval *rv = v->r;
	struct rargs a;
	redisReply *rep;
	ra_init(&a);
	ra_add(&a, "HMGET");
	ra_add(&a, rv->key);
	ra_add(&a, "serial");
	ra_add(&a, "ver");
	ra_add(&a, "data");
	int r = r_run(seg, &a, &rep);
	if (r)
		return r;
	return r_fetched(v, rep, ver, data);
}

/* The reply to r_fetch's HMGET (freed here): 0 with ver and data, or the
 * code with the message. */
static int r_fetched(shval *v, redisReply *rep, char *ver, unsigned char *data)
{
	shval_seg *seg = v->seg;
	struct shval__rval *rv = v->r;
	int r;
	if (strcmp(el(rep, 0, NULL), rv->serial) != 0) {
		freeReplyObject(rep);
		return rfail(seg, SHVAL_ESTALE, "value %s was removed",
			     rv->name);
	}
	size_t len;
	const char *d = el(rep, 2, &len);
	if (len != v->size) {
		freeReplyObject(rep);
		return rfail(seg, SHVAL_ECORRUPT,
			     "value %s: %zu bytes stored for a value of %zu",
			     rv->name, len, v->size);
	}
	if (ver)
		snprintf(ver, 24, "%s", el(rep, 1, NULL));
	memcpy(data, d, len);
	freeReplyObject(rep);
	shval__err err = { "" };
	r = shval__type_check(v->type, data, err.msg, sizeof err.msg);
	if (r)
		return rfail(seg, SHVAL_ECORRUPT, "value %s: stored bytes: %s",
			     rv->name, err.msg);
	return 0;
}

/* The staged copy of v in the section h (loaded on first use). */
static int stage_get(shval *v, struct rheld *h, struct rstage **out)
{
	struct shval__rval *rv = v->r;
	for (struct rstage *s = h->st; s; s = s->next)
		if (strcmp(s->name, rv->name) == 0 &&
		    strcmp(s->serial, rv->serial) == 0) {
			*out = s;
			return 0;
		}
	struct rstage *s = calloc(1, sizeof *s);
	if (s)
		s->data = malloc(v->size ? v->size : 1);
	if (!s || !s->data) {
		free(s);
		return rfail(v->seg, -ENOMEM, "out of memory");
	}
	snprintf(s->name, sizeof s->name, "%s", rv->name);
	snprintf(s->serial, sizeof s->serial, "%s", rv->serial);
	s->size = v->size;
	int r = r_fetch(v, NULL, s->data);
	if (r) {
		stage_free(s);
		return r;
	}
	s->next = h->st;
	h->st = s;
	*out = s;
	return 0;
}

enum rop_kind {
	OP_READ,
	OP_WRITE,
	OP_GET_STR,
	OP_SET_STR,
	OP_ARRAY_GET,
	OP_ARRAY_SET,
	OP_FIELD_GET,
	OP_FIELD_SET,
	OP_TO_TEXT,
	OP_FROM_TEXT,
	OP_GET_I64,
	OP_GET_U64,
	OP_GET_F64,
	OP_SET_I64,
	OP_SET_U64,
	OP_SET_F64,
	OP_ADD_I64,
	OP_SUB_I64,
	OP_ADD_F64,
	OP_AND,
	OP_OR,
	OP_XOR,
	OP_EXCHANGE,
	OP_CAS_I64,
	OP_CAS_F64,
};

struct rop {
	enum rop_kind k;
	void *p;
	const void *cp;
	const char *s;
	size_t a, b, *lenp;
	int64_t i;
	uint64_t u;
	double d;
	unsigned flags;
	int argc;
	const char *const *argv;
	int64_t ie; /* cas: the caller's expected value */
	double de;
	uint64_t *verp; /* a read's version (shval_read_version) */
	bool staged;    /* set by r_op: ran on a section's staged copy */
};

static bool op_writes(enum rop_kind k)
{
	switch (k) {
	case OP_READ:
	case OP_GET_STR:
	case OP_ARRAY_GET:
	case OP_FIELD_GET:
	case OP_TO_TEXT:
	case OP_GET_I64:
	case OP_GET_U64:
	case OP_GET_F64:
		return false;
	default:
		return true;
	}
}

/* Run the public function on the shadow.  Retry-safe: inputs are never
 * changed; outputs are written again by the last attempt. */
static int op_apply(shval *sh, struct rop *o)
{
	switch (o->k) {
	case OP_READ:
		return shval_read(sh, o->p, o->a);
	case OP_WRITE:
		return shval_write(sh, o->cp, o->a);
	case OP_GET_STR:
		return shval_get_str(sh, o->p, o->a, o->lenp);
	case OP_SET_STR:
		return shval_set_str(sh, o->s, o->a);
	case OP_ARRAY_GET:
		return shval_array_get(sh, o->a, o->b, o->p);
	case OP_ARRAY_SET:
		return shval_array_set(sh, o->a, o->b, o->cp);
	case OP_FIELD_GET:
		return shval_field_get(sh, o->s, o->p, o->a, o->lenp);
	case OP_FIELD_SET:
		return shval_field_set(sh, o->s, o->cp, o->a);
	case OP_TO_TEXT:
		return shval_to_text(sh, o->flags, o->p, o->a, o->lenp);
	case OP_FROM_TEXT:
		return shval_from_text(sh, o->argc, o->argv);
	case OP_GET_I64:
		return shval_get_i64(sh, o->p);
	case OP_GET_U64:
		return shval_get_u64(sh, o->p);
	case OP_GET_F64:
		return shval_get_f64(sh, o->p);
	case OP_SET_I64:
		return shval_set_i64(sh, o->i);
	case OP_SET_U64:
		return shval_set_u64(sh, o->u);
	case OP_SET_F64:
		return shval_set_f64(sh, o->d);
	case OP_ADD_I64:
		return shval_add_i64(sh, o->i, o->p);
	case OP_SUB_I64:
		return shval_sub_i64(sh, o->i, o->p);
	case OP_ADD_F64:
		return shval_add_f64(sh, o->d, o->p);
	case OP_AND:
		return shval_and_u64(sh, o->u, o->p);
	case OP_OR:
		return shval_or_u64(sh, o->u, o->p);
	case OP_XOR:
		return shval_xor_u64(sh, o->u, o->p);
	case OP_EXCHANGE:
		return shval_exchange_i64(sh, o->i, o->p);
	case OP_CAS_I64: {
		int64_t e = o->ie;
		int r = shval_cas_i64(sh, &e, o->i);
		*(int64_t *)o->p = e;
		return r;
	}
	case OP_CAS_F64: {
		double e = o->de;
		int r = shval_cas_f64(sh, &e, o->d);
		*(double *)o->p = e;
		return r;
	}
	}
	return -EINVAL;
}

/* Load bytes into the shadow, run the op there; a failure's message is
 * moved to the remote segment. */
static int op_on_shadow(shval *v, const unsigned char *bytes, struct rop *o)
{
	shval *sh = v->r->sh;
	memcpy(sh->data, bytes, v->size);
	int r = op_apply(sh, o);
	if (r)
		shval__failf(v->seg, r, "value %s: %s", v->r->name,
			     shval_errmsg(v->seg->rs->shadow));
	return r;
}

/* A handle inherited across fork() gets a shadow of this process. */
static int r_own_shadow(shval *v)
{
	struct shval__rval *rv = v->r;
	if (rv->sh_pid == v->seg->rs->pid) /* r_enter keeps rs->pid current */
		return 0;
	shval *old = rv->sh, *sh;
	bool lock_entry = old->kind == SHVAL_KIND_LOCK;
	int r = r_shadow(v->seg, lock_entry ? NULL : old->type->canon,
			 old->mode, lock_entry, NULL, 0, &sh);
	if (r)
		return r;
	shval_close(old); /* this process's handle; the value stays */
	rv->sh = sh;
	rv->sh_pid = v->seg->rs->pid;
	v->type = sh->type;
	return 0;
}

static int r_op(shval *v, struct rop *o)
{
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	struct shval__rval *rv = v->r;
	bool writes = op_writes(o->k);
	if (v->kind == SHVAL_KIND_LOCK)
		return rfail(seg, SHVAL_EMODE,
			     "this handle is a lock, not a value");
	if (writes && (seg->flags & SHVAL_RDONLY))
		return rfail(seg, SHVAL_ERDONLY, "segment opened read-only");
	redisContext *bc = NULL;
	int r;
	r_enter(rs);
	if ((r = r_own_shadow(v)) != 0) {
		r_leave(rs);
		return r;
	}
	struct rheld *h = rv->lock[0] ? held_find(rs, rv->lock) : NULL;
	if (h) { /* inside this thread's section: staged */
		struct rstage *s = NULL;
		r = stage_get(v, h, &s);
		if (!r)
			r = op_on_shadow(v, s->data, o);
		if (!r && writes) {
			memcpy(s->data, rv->sh->data, v->size);
			s->dirty = true;
		}
		o->staged = true;
		r_leave(rs);
		return r;
	}
	if (!rv->cdata && !(rv->cdata = malloc(v->size ? v->size : 1))) {
		r_leave(rs);
		return rfail(seg, -ENOMEM, "out of memory");
	}
	bool cached = writes && rv->cvalid;
	for (;;) {
		if (!cached) {
			rv->cvalid = false;
			r = r_fetch(v, rv->cver, rv->cdata);
			if (r)
				break;
			rv->cvalid = true;
		}
		r = op_on_shadow(v, rv->cdata, o);
		if (r && cached) { /* perhaps only because the cache is old */
			cached = false;
			continue;
		}
		if (!r && o->verp)
			*o->verp = strtoull(rv->cver, NULL, 10);
		if (r || !writes)
			break;
		struct rargs a;
		redisReply *rep;
		ra_fcall(&a, rs, "shval1_write", false);
		ra_add(&a, rs->client_hex);
		ra_u64(&a, ++rs->reqseq);
		ra_add(&a, rv->name);
		ra_add(&a, rv->serial);
		ra_add(&a, rv->cver);
		ra_u64(&a, strtoull(rv->cver, NULL, 10) + 1);
		ra_bin(&a, rv->sh->data, v->size);
		ra_add(&a, rv->lock);
		int resent = a.n;
		ra_add(&a, "0");
		r = r_cmd_ex(seg, &rep, a.n, a.v, a.l, resent);
		if (r)
			break;
		if (is(rep, "OK")) {
			snprintf(rv->cver, sizeof rv->cver, "%s",
				 el(rep, 1, NULL));
			memcpy(rv->cdata, rv->sh->data, v->size);
			/* "" after a resend: applied, version unknown */
			rv->cvalid = rv->cver[0] != 0;
			freeReplyObject(rep);
			break;
		}
		if (is(rep, "CHANGED")) {
			size_t len;
			const char *d = el(rep, 2, &len);
			if (len != v->size) {
				r = bad_reply(seg, rep, "a write");
				rv->cvalid = false;
				break;
			}
			snprintf(rv->cver, sizeof rv->cver, "%s",
				 el(rep, 1, NULL));
			memcpy(rv->cdata, d, len);
			freeReplyObject(rep);
			cached = true; /* fresh, but a failure is re-checked */
			continue;
		}
		if (is(rep, "STALE")) {
			freeReplyObject(rep);
			rv->cvalid = false;
			r = rfail(seg, SHVAL_ESTALE, "value %s was removed",
				  rv->name);
			break;
		}
		if (!is(rep, "BUSY")) {
			r = bad_reply(seg, rep, "a write");
			break;
		}
		/* Another owner's section: wait for its unlock (or its
		 * lease's end), as a local write waits for the lock. */
		char key[SHVAL_NAME_MAX + 220], id[64];
		snprintf(key, sizeof key, "%s:ev", rs->prefix);
		snprintf(id, sizeof id, "%s", el(rep, 1, NULL));
		long long pttl =
			rep->elements > 2 ? rep->element[2]->integer : 10;
		freeReplyObject(rep);
		r_leave(rs);
		r = r_block(seg, &bc, key, id, pttl > 0 ? pttl + 1 : 10);
		if (r)
			r = r_block_failed(shval__now_ns() +
						   (uint64_t)rs->timeout_ms *
							   SHVAL_MSEC,
					   r);
		r_enter(rs);
		if (r)
			break;
		cached = false;
	}
	r_leave(rs);
	if (bc)
		redisFree(bc);
	return r;
}

#define ROP(...)                                 \
	do {                                     \
		struct rop o_ = { __VA_ARGS__ }; \
		return r_op(v, &o_);             \
	} while (0)

int shval__r_read(shval *v, void *buf, size_t cap)
{
	ROP(.k = OP_READ, .p = buf, .a = cap);
}
static int r_peek(shval *v, uint64_t *ver, char *id, size_t idcap);

/* One HMGET: the bytes and the version they had (inside the caller's own
 * section: the staged bytes, then the committed version, never newer). */
int shval__r_read_version(shval *v, void *buf, size_t cap, uint64_t *version)
{
	uint64_t ver = 0;
	struct rop o = { .k = OP_READ, .p = buf, .a = cap, .verp = &ver };
	int r = r_op(v, &o);
	if (!r && o.staged)
		r = r_peek(v, &ver, NULL, 0);
	if (!r)
		*version = ver;
	return r;
}

int shval__r_write(shval *v, const void *buf, size_t len)
{
	ROP(.k = OP_WRITE, .cp = buf, .a = len);
}
int shval__r_get_str(shval *v, char *buf, size_t cap, size_t *len)
{
	ROP(.k = OP_GET_STR, .p = buf, .a = cap, .lenp = len);
}
int shval__r_set_str(shval *v, const char *s, size_t len)
{
	ROP(.k = OP_SET_STR, .s = s, .a = len);
}
int shval__r_array_get(shval *v, size_t index, size_t n, void *buf)
{
	ROP(.k = OP_ARRAY_GET, .a = index, .b = n, .p = buf);
}
int shval__r_array_set(shval *v, size_t index, size_t n, const void *buf)
{
	ROP(.k = OP_ARRAY_SET, .a = index, .b = n, .cp = buf);
}
int shval__r_field_get(shval *v, const char *field, void *buf, size_t cap,
		       size_t *len)
{
	ROP(.k = OP_FIELD_GET, .s = field, .p = buf, .a = cap, .lenp = len);
}
int shval__r_field_set(shval *v, const char *field, const void *buf, size_t len)
{
	ROP(.k = OP_FIELD_SET, .s = field, .cp = buf, .a = len);
}
int shval__r_to_text(shval *v, unsigned flags, char *buf, size_t cap,
		     size_t *len)
{
	ROP(.k = OP_TO_TEXT, .flags = flags, .p = buf, .a = cap, .lenp = len);
}
int shval__r_from_text(shval *v, int argc, const char *const *argv)
{
	ROP(.k = OP_FROM_TEXT, .argc = argc, .argv = argv);
}
int shval__r_get_i64(shval *v, int64_t *out)
{
	ROP(.k = OP_GET_I64, .p = out);
}
int shval__r_get_u64(shval *v, uint64_t *out)
{
	ROP(.k = OP_GET_U64, .p = out);
}
int shval__r_get_f64(shval *v, double *out)
{
	ROP(.k = OP_GET_F64, .p = out);
}
int shval__r_set_i64(shval *v, int64_t x)
{
	ROP(.k = OP_SET_I64, .i = x);
}
int shval__r_set_u64(shval *v, uint64_t x)
{
	ROP(.k = OP_SET_U64, .u = x);
}
int shval__r_set_f64(shval *v, double x)
{
	ROP(.k = OP_SET_F64, .d = x);
}
int shval__r_add_i64(shval *v, int64_t delta, int64_t *result)
{
	ROP(.k = OP_ADD_I64, .i = delta, .p = result);
}
int shval__r_sub_i64(shval *v, int64_t delta, int64_t *result)
{
	ROP(.k = OP_SUB_I64, .i = delta, .p = result);
}
int shval__r_add_f64(shval *v, double delta, double *result)
{
	ROP(.k = OP_ADD_F64, .d = delta, .p = result);
}
int shval__r_bitop(shval *v, int which, uint64_t mask, uint64_t *old)
{
	ROP(.k = which == 0   ? OP_AND
		 : which == 1 ? OP_OR
			      : OP_XOR,
	    .u = mask, .p = old);
}
int shval__r_exchange_i64(shval *v, int64_t x, int64_t *old)
{
	ROP(.k = OP_EXCHANGE, .i = x, .p = old);
}
int shval__r_cas_i64(shval *v, int64_t *expected, int64_t desired)
{
	if (!expected)
		return -EINVAL;
	ROP(.k = OP_CAS_I64, .ie = *expected, .i = desired, .p = expected);
}
int shval__r_cas_f64(shval *v, double *expected, double desired)
{
	if (!expected)
		return -EINVAL;
	ROP(.k = OP_CAS_F64, .de = *expected, .d = desired, .p = expected);
}

/* ---- batches (include/shval.h "Batches"; src/batch.c) ----
 * The batch's requests go out as one pipeline: reads as HMGET, changes
 * computed here on the cached bytes (as r_op's uncontended path) and sent
 * as shval1_write with the version they were computed from.  A value's
 * second and later change in the pipeline names the request of its previous
 * one (shval1_write's prev), so it is applied only right after it: a
 * refused change (the value moved: another writer, a lease) and every later
 * op on that value are done again one by one with r_op after the pipeline,
 * in queue order.  Values whose changes need bytes the handle has not seen
 * are fetched first (one pipelined round trip).  Values in the thread's own
 * section (staged), lock handles and read-only refusals go one by one from
 * the start.  A lost connection: reads are done again; a change is known
 * applied if the server's record of the client's last applied write
 * (P:q:CLIENT) is its request, known not applied if that record is older
 * (the pipeline runs in order), else -ECONNRESET "outcome unknown". */

static void bop_rop(const struct shval__bop *b, struct rop *o)
{
	memset(o, 0, sizeof *o);
	switch (b->kind) {
	case SHVAL__B_READ:
		o->k = OP_READ;
		o->p = b->out;
		o->a = b->len;
		break;
	case SHVAL__B_WRITE:
		o->k = OP_WRITE;
		o->cp = b->in;
		o->a = b->len;
		break;
	case SHVAL__B_GET_I64:
		o->k = OP_GET_I64;
		o->p = b->out;
		break;
	case SHVAL__B_SET_I64:
		o->k = OP_SET_I64;
		o->i = b->i;
		break;
	case SHVAL__B_ADD_I64:
		o->k = OP_ADD_I64;
		o->i = b->i;
		o->p = b->out;
		break;
	case SHVAL__B_GET_F64:
		o->k = OP_GET_F64;
		o->p = b->out;
		break;
	case SHVAL__B_SET_F64:
		o->k = OP_SET_F64;
		o->d = b->d;
		break;
	case SHVAL__B_ADD_F64:
		o->k = OP_ADD_F64;
		o->d = b->d;
		o->p = b->out;
		break;
	}
}

/* The request connection, made if there is none (rs->mu held). */
static int r_ensure(shval_seg *seg)
{
	if (seg->rs->c)
		return 0;
	const char *argv[] = { "PING" };
	redisReply *rep;
	int r = r_cmd(seg, &rep, 1, argv, NULL);
	if (!r)
		freeReplyObject(rep);
	return r;
}

static void r_lost(struct shval__rseg *rs)
{
	if (rs->c) {
		redisFree(rs->c);
		rs->c = NULL;
	}
}

enum { B_SINGLE, B_READ, B_WRITE, B_DONE, B_LOST };

void shval__r_batch_run(struct shval_batch *b)
{
	shval_seg *seg = b->seg;
	struct shval__rseg *rs = seg->rs;
	size_t n = b->n;
	struct bst {
		int how;
		bool sent; /* in the pipeline */
		uint64_t seq;
		struct rop o;
	} *st = calloc(n ? n : 1, sizeof *st);
	if (!st) {
		for (size_t i = 0; i < n; i++)
			shval__bop_done(b, i,
					rfail(seg, -ENOMEM, "out of memory"));
		return;
	}
	r_enter(rs);
	uint64_t gen = ++rs->batch_gen;
	/* 1. what goes one by one; which values to fetch first */
	size_t nfetch = 0;
	for (size_t i = 0; i < n; i++) {
		shval *v = b->ops[i].v;
		struct shval__rval *rv = v->r;
		bop_rop(&b->ops[i], &st[i].o);
		bool w = op_writes(st[i].o.k);
		if (rv->bgen != gen) {
			rv->bgen = gen;
			rv->bsingle = rv->bbroken = rv->bfetch = false;
			rv->bprev[0] = 0;
			if (v->kind == SHVAL_KIND_LOCK ||
			    r_own_shadow(v) != 0 ||
			    (rv->lock[0] && held_find(rs, rv->lock)) ||
			    (!rv->cdata &&
			     !(rv->cdata = malloc(v->size ? v->size : 1))))
				rv->bsingle = true;
		}
		if (w && (seg->flags & SHVAL_RDONLY))
			rv->bsingle = true;
		st[i].how = rv->bsingle ? B_SINGLE : w ? B_WRITE : B_READ;
		if (w && !rv->bsingle && !rv->cvalid && !rv->bfetch) {
			rv->bfetch = true;
			nfetch++;
		}
	}
	/* 2. the bytes of changed values the handles have not seen */
	if (nfetch && r_ensure(seg) == 0) {
		bool lost = false;
		for (size_t i = 0; i < n; i++) {
			struct shval__rval *rv = b->ops[i].v->r;
			if (st[i].how != B_WRITE || !rv->bfetch || rv->cvalid)
				continue;
			const char *argv[] = { "HMGET", rv->key, "serial",
					       "ver", "data" };
			rv->cvalid = true; /* marks it sent; set below */
			if (r_append(rs->c, 5, argv, NULL) != 0)
				lost = true;
		}
		for (size_t i = 0; i < n; i++) {
			shval *v = b->ops[i].v;
			struct shval__rval *rv = v->r;
			if (st[i].how != B_WRITE || !rv->bfetch)
				continue;
			rv->bfetch = false;
			void *rep = NULL;
			if (lost || redisGetReply(rs->c, &rep) != REDIS_OK) {
				lost = true;
				rv->cvalid = false;
				rv->bsingle = true;
				continue;
			}
			if (r_fetched(v, rep, rv->cver, rv->cdata) != 0) {
				rv->cvalid = false; /* its ops report it */
				rv->bsingle = true;
			}
		}
		if (lost)
			r_lost(rs);
	}
	/* 3. the pipeline */
	size_t npipe = 0;
	int down = r_ensure(seg); /* unreachable: nothing more is tried */
	bool lost = down != 0;
	for (size_t i = 0; i < n && !lost; i++) {
		shval *v = b->ops[i].v;
		struct shval__rval *rv = v->r;
		if (st[i].how == B_SINGLE)
			continue;
		if (rv->bsingle || (st[i].how == B_WRITE && !rv->cvalid)) {
			rv->bsingle = true;
			st[i].how = B_SINGLE;
			continue;
		}
		if (st[i].how == B_READ) {
			const char *argv[] = { "HMGET", rv->key, "serial",
					       "ver", "data" };
			lost = r_append(rs->c, 5, argv, NULL) != 0;
			st[i].sent = !lost;
			npipe++;
			continue;
		}
		memcpy(rv->sh->data, rv->cdata, v->size);
		if (op_apply(rv->sh, &st[i].o) != 0) {
			/* perhaps only because the cache is old: r_op
			 * fetches and reports */
			rv->bsingle = true;
			st[i].how = B_SINGLE;
			continue;
		}
		struct rargs a;
		ra_fcall(&a, rs, "shval1_write", false);
		ra_add(&a, rs->client_hex);
		st[i].seq = ++rs->reqseq;
		ra_u64(&a, st[i].seq);
		ra_add(&a, rv->name);
		ra_add(&a, rv->serial);
		ra_add(&a, rv->cver);
		ra_u64(&a, strtoull(rv->cver, NULL, 10) + 1);
		ra_bin(&a, rv->sh->data, v->size);
		ra_add(&a, rv->lock);
		ra_add(&a, "0");
		if (rv->bprev[0])
			ra_add(&a, rv->bprev);
		lost = r_append(rs->c, a.n, a.v, a.l) != 0;
		st[i].sent = !lost;
		npipe++;
		/* what the server holds once it is applied */
		snprintf(rv->cver, sizeof rv->cver, "%s", a.v[9]);
		memcpy(rv->cdata, rv->sh->data, v->size);
		snprintf(rv->bprev, sizeof rv->bprev, "%s.%llu", rs->client_hex,
			 (unsigned long long)st[i].seq);
	}
	/* 4. the answers, in order */
	size_t nlost_w = 0;
	for (size_t i = 0; i < n; i++) {
		shval *v = b->ops[i].v;
		struct shval__rval *rv = v->r;
		if (st[i].how != B_READ && st[i].how != B_WRITE)
			continue;
		if (!st[i].sent) { /* the pipeline stopped before it */
			rv->cvalid = false;
			st[i].how = B_SINGLE;
			continue;
		}
		void *vrep = NULL;
		if (!lost && redisGetReply(rs->c, &vrep) != REDIS_OK)
			lost = true;
		redisReply *rep = vrep;
		if (lost) {
			rv->cvalid = false;
			if (st[i].how == B_READ)
				st[i].how = B_SINGLE;
			else {
				st[i].how = B_LOST;
				nlost_w++;
			}
			continue;
		}
		if (st[i].how == B_READ) {
			if (rv->bbroken || rep->type == REDIS_REPLY_ERROR) {
				freeReplyObject(rep);
				st[i].how = B_SINGLE;
				continue;
			}
			char ver[24];
			int r = r_fetched(v, rep, ver, rv->sh->data);
			if (!r && (r = op_apply(rv->sh, &st[i].o)) != 0)
				shval__failf(seg, r, "value %s: %s", rv->name,
					     shval_errmsg(rs->shadow));
			st[i].how = B_DONE;
			shval__bop_done(b, i, r);
			continue;
		}
		if (is(rep, "OK")) {
			freeReplyObject(rep);
			st[i].how = B_DONE;
			shval__bop_done(b, i, 0);
			continue;
		}
		/* refused (changed, a lease, removed): this op and the
		 * value's later ones again, one by one */
		freeReplyObject(rep);
		rv->bbroken = rv->bsingle = true;
		rv->cvalid = false;
		st[i].how = B_SINGLE;
	}
	(void)npipe;
	if (lost)
		r_lost(rs);
	if (nlost_w) { /* which of the changes were applied? */
		char k[260];
		snprintf(k, sizeof k, "%s:q:%s", rs->prefix, rs->client_hex);
		const char *argv[] = { "GET", k };
		redisReply *rep = NULL;
		uint64_t last = 0;
		bool known = r_cmd(seg, &rep, 2, argv, NULL) == 0;
		if (known) {
			if (rep->type == REDIS_REPLY_STRING)
				last = strtoull(rep->str, NULL, 10);
			else
				known = false;
			freeReplyObject(rep);
		}
		for (size_t i = 0; i < n; i++) {
			if (st[i].how != B_LOST)
				continue;
			struct shval__rval *rv = b->ops[i].v->r;
			if (known && st[i].seq > last) {
				st[i].how = B_SINGLE; /* not applied */
				continue;
			}
			st[i].how = B_DONE;
			if (known && st[i].seq == last)
				shval__bop_done(b, i, 0);
			else
				shval__bop_done(
					b, i,
					rfail(seg, -ECONNRESET,
					      "value %s: the connection was "
					      "lost in a batch; whether this "
					      "change was applied is unknown",
					      rv->name));
		}
	}
	r_leave(rs);
	/* 5. the rest one by one, in queue order; once the server stayed
	 * unreachable for timeout_ms, the remaining ops are not tried (each
	 * would wait as long again) */
	for (size_t i = 0; i < n; i++) {
		if (st[i].how != B_SINGLE)
			continue;
		int r;
		if (down)
			r = rfail(seg, down,
				  "value %s: not attempted: the server was "
				  "unreachable for an earlier operation of "
				  "this batch",
				  b->ops[i].v->r->name);
		else {
			r = r_op(b->ops[i].v, &st[i].o);
			if (r == -ECONNRESET || r == -ECONNREFUSED ||
			    r == -EHOSTUNREACH || r == -EAGAIN)
				down = r;
		}
		shval__bop_done(b, i, r);
	}
	free(st);
}

int shval__r_field_info_at(shval *v, size_t idx, shval_field_info *fi)
{
	int r = shval_field_info_at(v->r->sh, idx, fi); /* read-only use */
	if (r)
		shval__failf(v->seg, r, "value %s: %s", v->r->name,
			     shval_errmsg(v->seg->rs->shadow));
	return r;
}

void *shval__r_data(shval *v)
{
	shval__failf(v->seg, SHVAL_EMODE,
		     "value %s: a Redis value has no shared memory: no "
		     "shval_data() (use read/write, or a section's staged "
		     "changes)",
		     v->r->name);
	return NULL;
}

int shval__r_touch(shval *v)
{
	return rfail(v->seg, SHVAL_EMODE,
		     "value %s: shval_touch() announces changes made "
		     "through shval_data(), which Redis values have not",
		     v->r->name);
}

/* ---- versions and waiting ---- */

/* peek: the value's version and its stream's last id. */
static int r_peek(shval *v, uint64_t *ver, char *id, size_t idcap)
{
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	struct rargs a;
	redisReply *rep;
	r_enter(rs);
	ra_fcall(&a, rs, "shval1_peek", false);
	ra_add(&a, v->r->name);
	ra_add(&a, v->r->serial);
	int r = r_run(seg, &a, &rep);
	r_leave(rs);
	if (r)
		return r;
	if (is(rep, "STALE")) {
		freeReplyObject(rep);
		return rfail(seg, SHVAL_ESTALE, "value %s was removed",
			     v->r->name);
	}
	if (!is(rep, "OK"))
		return bad_reply(seg, rep, "peek");
	*ver = strtoull(el(rep, 1, NULL), NULL, 10);
	if (id)
		snprintf(id, idcap, "%s", el(rep, 2, NULL));
	freeReplyObject(rep);
	return 0;
}

uint64_t shval__r_value_version(shval *v)
{
	uint64_t ver = 0;
	if (r_peek(v, &ver, NULL, 0))
		return 0;
	return ver;
}

int shval__r_info(shval *v, struct shval_info *info)
{
	uint64_t ver;
	int r = r_peek(v, &ver, NULL, 0);
	if (r)
		return r;
	r = shval_info(v->r->sh, info);
	if (r)
		return shval__failf(v->seg, r, "%s",
				    shval_errmsg(v->seg->rs->shadow));
	snprintf(info->name, sizeof info->name, "%s", v->r->name);
	info->version = ver;
	if (v->r->lock[0] && strcmp(v->r->lock, v->r->name) != 0)
		info->mode = v->mode;
	return 0;
}

/* The segment's version: its stream's last id "MS-SEQ" as MS * 2^20 + SEQ
 * (ids only grow; fewer than 2^20 entries a millisecond). */
static uint64_t id_version(const char *id)
{
	char *end;
	uint64_t ms = strtoull(id, &end, 10);
	uint64_t seq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
	return (ms << 20) + (seq < (1u << 20) ? seq : (1u << 20) - 1);
}

static int r_segpeek(shval_seg *seg, uint64_t *ver, char *id, size_t idcap)
{
	struct shval__rseg *rs = seg->rs;
	struct rargs a;
	redisReply *rep;
	r_enter(rs);
	ra_fcall(&a, rs, "shval1_segpeek", false);
	int r = r_run(seg, &a, &rep);
	r_leave(rs);
	if (r)
		return r;
	if (!is(rep, "OK")) {
		r = rfail(seg, -ENOENT, "the segment was removed (%s)",
			  el(rep, 0, NULL));
		freeReplyObject(rep);
		return r;
	}
	snprintf(id, idcap, "%s", el(rep, 1, NULL));
	*ver = id_version(id);
	freeReplyObject(rep);
	return 0;
}

uint64_t shval__r_seg_version(shval_seg *seg)
{
	uint64_t ver = 0;
	char id[64];
	if (r_segpeek(seg, &ver, id, sizeof id))
		return 0;
	return ver;
}

/* shval_wait (v != NULL) and shval_seg_wait. */
int shval__r_wait(shval_seg *seg, shval *v, uint64_t *seen, int64_t timeout_ns)
{
	struct shval__rseg *rs = seg->rs;
	uint64_t deadline = deadline_of(timeout_ns);
	redisContext *bc = NULL;
	char key[SHVAL_NAME_MAX + 220];
	if (v)
		snprintf(key, sizeof key, "%s:ev", rs->prefix);
	else
		snprintf(key, sizeof key, "%s:ev", rs->prefix);
	int r;
	for (;;) {
		uint64_t ver;
		char id[64];
		r = v ? r_peek(v, &ver, id, sizeof id)
		      : r_segpeek(seg, &ver, id, sizeof id);
		if (r == -ECONNRESET || r == -EAGAIN) {
			if ((r = r_block_failed(deadline, r)) != 0)
				break;
			continue;
		}
		if (r)
			break;
		if (ver != *seen) {
			*seen = ver;
			break;
		}
		int64_t ms = ms_until(deadline);
		if (ms <= 0) {
			r = -ETIMEDOUT;
			break;
		}
		r = r_block(seg, &bc, key, id, ms);
		if (r && (r = r_block_failed(deadline, r)) != 0)
			break;
	}
	if (bc)
		redisFree(bc);
	return r;
}

/* ---- locks ---- */

static void *r_renewer(void *arg)
{
	shval_seg *seg = arg;
	struct shval__rseg *rs = seg->rs;
	redisContext *c = NULL;
	pthread_mutex_lock(&rs->mu);
	while (!rs->renew_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t ns = ts.tv_nsec + rs->lease_ms / 3 * SHVAL_MSEC;
		ts.tv_sec += (time_t)(ns / SHVAL_SEC);
		ts.tv_nsec = (long)(ns % SHVAL_SEC);
		pthread_cond_timedwait(&rs->renew_cv, &rs->mu, &ts);
		if (rs->renew_stop)
			break;
		size_t n = 0;
		for (struct rheld *h = rs->held; h; h = h->next)
			n++;
		if (!n)
			continue;
		struct item {
			char lock[SHVAL_NAME_MAX + 1], token[24];
		} *it = calloc(n, sizeof *it);
		if (!it)
			continue;
		n = 0;
		for (struct rheld *h = rs->held; h; h = h->next, n++) {
			memcpy(it[n].lock, h->lock, sizeof h->lock);
			memcpy(it[n].token, h->token, sizeof h->token);
		}
		pthread_mutex_unlock(&rs->mu);
		for (size_t i = 0; i < n; i++) {
			if (!c && r_connect(seg, &c) != 0)
				break;
			char lease[24];
			snprintf(lease, sizeof lease, "%lld",
				 (long long)rs->lease_ms);
			const char *argv[] = { "FCALL",    "shval1_renew",
					       "0",        rs->prefix,
					       it[i].lock, it[i].token,
					       lease };
			redisReply *rep = redisCommandArgv(c, 7, argv, NULL);
			if (!rep) {
				redisFree(c);
				c = NULL;
				continue;
			}
			if (rep->type == REDIS_REPLY_INTEGER &&
			    rep->integer == 0) {
				pthread_mutex_lock(&rs->mu);
				for (struct rheld *h = rs->held; h; h = h->next)
					if (strcmp(h->token, it[i].token) == 0)
						h->lost = true;
				pthread_mutex_unlock(&rs->mu);
			}
			freeReplyObject(rep);
		}
		free(it);
		pthread_mutex_lock(&rs->mu);
	}
	pthread_mutex_unlock(&rs->mu);
	if (c)
		redisFree(c);
	return NULL;
}

/* shval_lock / trylock / timedlock: deadline UINT64_MAX waits forever, 0
 * does not wait. */
int shval__r_lock(shval *v, int64_t timeout_ns, bool try)
{
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	struct shval__rval *rv = v->r;
	if (!rv->lock[0])
		return rfail(seg, SHVAL_EMODE,
			     "value %s has no lock (raw or atomic mode)",
			     rv->name);
	if (seg->flags & SHVAL_RDONLY)
		return rfail(seg, SHVAL_ERDONLY, "segment opened read-only");
	uint64_t deadline = try ? 0 : deadline_of(timeout_ns);
	redisContext *bc = NULL;
	int r;
	char lock_serial[24];
	r_enter(rs);
	struct rheld *h = held_find(rs, rv->lock);
	if (h) {
		r = 0;
		if ((v->mode & SHVAL_MODE_MASK) == SHVAL_LOCK)
			r = rfail(seg, SHVAL_EMISUSE,
				  "lock %s is already held by this thread "
				  "(SHVAL_LOCK is not recursive)",
				  rv->lock);
		else
			h->depth++;
		r_leave(rs);
		return r;
	}
	/* the lease's key is the lock's own name, checked by its serial */
	if (strcmp(rv->lock, rv->name) == 0)
		snprintf(lock_serial, sizeof lock_serial, "%s", rv->serial);
	else {
		char k[SHVAL_NAME_MAX + 220];
		snprintf(k, sizeof k, "%s:v:%s", rs->prefix, rv->lock);
		const char *argv[] = { "HGET", k, "serial" };
		redisReply *rep;
		r = r_cmd(seg, &rep, 3, argv, NULL);
		if (r) {
			r_leave(rs);
			return r;
		}
		snprintf(lock_serial, sizeof lock_serial, "%s",
			 rep->type == REDIS_REPLY_STRING ? rep->str : "");
		freeReplyObject(rep);
	}
	r_leave(rs);
	for (;;) {
		struct rargs a;
		redisReply *rep;
		char id[64];
		long long pttl = 10;
		r_enter(rs);
		ra_fcall(&a, rs, "shval1_lock", true);
		ra_add(&a, rv->lock);
		ra_add(&a, lock_serial);
		ra_fmt(&a, "%lld", (long long)rs->lease_ms);
		r = r_run(seg, &a, &rep);
		if (!r) {
			if (is(rep, "OK")) {
				struct rheld *nh = calloc(1, sizeof *nh);
				if (!nh)
					r = rfail(seg, -ENOMEM,
						  "out of memory");
				else {
					snprintf(nh->lock, sizeof nh->lock,
						 "%s", rv->lock);
					snprintf(nh->token, sizeof nh->token,
						 "%s", el(rep, 1, NULL));
					nh->tid = gettid();
					nh->depth = 1;
					nh->next = rs->held;
					rs->held = nh;
					if (!rs->renew_on &&
					    pthread_create(&rs->renewer, NULL,
							   r_renewer, seg) == 0)
						rs->renew_on = true;
					r = strcmp(el(rep, 2, NULL), "1") == 0
						    ? rfail(seg,
							    SHVAL_EOWNERDEAD,
							    "lock %s: the "
							    "previous owner's "
							    "lease expired "
							    "in a section; "
							    "its changes were "
							    "not applied",
							    rv->lock)
						    : 0;
				}
			} else if (is(rep, "STALE"))
				r = rfail(seg, SHVAL_ESTALE,
					  "value %s was removed", rv->lock);
			else if (is(rep, "BUSY")) {
				r = 1;
				snprintf(id, sizeof id, "%s", el(rep, 1, NULL));
				if (rep->elements > 2)
					pttl = rep->element[2]->integer;
			} else
				r = rfail(seg, SHVAL_ECORRUPT,
					  "unexpected reply");
			freeReplyObject(rep);
		}
		r_leave(rs);
		if (r != 1)
			break;
		int64_t ms = ms_until(deadline);
		if (try || ms <= 0) {
			r = try ? rfail(seg, -EBUSY, "lock %s is held",
					rv->lock)
				: rfail(seg, -ETIMEDOUT, "lock %s: timed out",
					rv->lock);
			break;
		}
		char key[SHVAL_NAME_MAX + 220];
		snprintf(key, sizeof key, "%s:ev", rs->prefix);
		if (pttl > 0 && pttl + 1 < ms)
			ms = pttl + 1;
		int b = r_block(seg, &bc, key, id, ms);
		if (b && (b = r_block_failed(deadline, b)) != 0) {
			r = b;
			break;
		}
	}
	if (bc)
		redisFree(bc);
	return r;
}

static void held_drop(struct shval__rseg *rs, struct rheld *h)
{
	for (struct rheld **pp = &rs->held; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	while (h->st) {
		struct rstage *s = h->st;
		h->st = s->next;
		stage_free(s);
	}
	free(h);
}

int shval__r_unlock(shval *v)
{
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	struct shval__rval *rv = v->r;
	if (!rv->lock[0])
		return rfail(seg, SHVAL_EMODE,
			     "value %s has no lock (raw or atomic mode)",
			     rv->name);
	r_enter(rs);
	struct rheld *h = held_find(rs, rv->lock);
	if (!h) {
		r_leave(rs);
		return rfail(seg, SHVAL_ENOTOWNER,
			     "unlock of a lock this thread does not hold");
	}
	if (--h->depth > 0) {
		r_leave(rs);
		return 0;
	}
	/* One call: every staged value, if the lease is still ours. */
	size_t n = 0;
	for (struct rstage *s = h->st; s; s = s->next)
		n += s->dirty;
	const char **argv = calloc(8 + 3 * n, sizeof *argv);
	size_t *lens = calloc(8 + 3 * n, sizeof *lens);
	int r;
	if (!argv || !lens)
		r = rfail(seg, -ENOMEM, "out of memory");
	else {
		struct rargs a;
		ra_fcall(&a, rs, "shval1_commit", true);
		ra_add(&a, h->lock);
		ra_add(&a, h->token);
		ra_fmt(&a, "%zu", n);
		int argc = a.n;
		for (int i = 0; i < argc; i++) {
			argv[i] = a.v[i];
			lens[i] = a.l[i];
		}
		for (struct rstage *s = h->st; s; s = s->next) {
			if (!s->dirty)
				continue;
			argv[argc] = s->name;
			lens[argc++] = strlen(s->name);
			argv[argc] = s->serial;
			lens[argc++] = strlen(s->serial);
			argv[argc] = (const char *)s->data;
			lens[argc++] = s->size;
		}
		redisReply *rep;
		r = r_cmd(seg, &rep, argc, argv, lens);
		if (!r) {
			if (is(rep, "OK"))
				r = 0;
			else if (is(rep, "LOST"))
				r = rfail(seg, SHVAL_ENOTOWNER,
					  "lock %s: the lease expired before "
					  "the unlock (the owner was paused "
					  "or cut off for over %lld ms); the "
					  "section's changes were not applied",
					  h->lock, (long long)rs->lease_ms);
			else if (is(rep, "STALE"))
				r = rfail(seg, SHVAL_ESTALE,
					  "value %s was removed during the "
					  "section; nothing was applied",
					  el(rep, 1, NULL));
			else
				r = rfail(seg, SHVAL_ECORRUPT,
					  "unexpected reply to a commit");
			freeReplyObject(rep);
		}
	}
	free(argv);
	free(lens);
	/* the caller's handles' caches may be older than the commit */
	rv->cvalid = false;
	held_drop(rs, h);
	r_leave(rs);
	return r;
}

/* ---- listing and checking ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int shval__r_seg_next(shval_seg *seg, uint64_t *cursor, const char *prefix,
		      struct shval_info *info)
{
	struct shval__rseg *rs = seg->rs;
	int r = 0;
	r_enter(rs);
	if (*cursor == 0) { /* a new listing: a snapshot of the names */
		char k[220];
		snprintf(k, sizeof k, "%s:dir", rs->prefix);
		const char *argv[] = { "HKEYS", k };
		redisReply *rep;
		r = r_cmd(seg, &rep, 2, argv, NULL);
		if (!r) {
			for (size_t i = 0; i < rs->nnames; i++)
				free(rs->names[i]);
			free(rs->names);
			rs->nnames = 0;
			rs->names = calloc(rep->elements + 1, sizeof(char *));
			for (size_t i = 0; rs->names && i < rep->elements; i++)
				if ((rs->names[rs->nnames] =
					     strndup(rep->element[i]->str,
						     rep->element[i]->len)))
					rs->nnames++;
			freeReplyObject(rep);
			if (rs->nnames)
				qsort(rs->names, rs->nnames, sizeof(char *),
				      cmp_str);
		}
	}
	while (!r) {
		if (*cursor >= rs->nnames) {
			r = SHVAL_ENOTFOUND;
			break;
		}
		const char *name = rs->names[(*cursor)++];
		if (prefix && strncmp(name, prefix, strlen(prefix)) != 0)
			continue;
		shval *v;
		r = r_find_locked(seg, name, NULL, 0, false, &v);
		if (r == SHVAL_ENOTFOUND) { /* removed since the snapshot */
			r = 0;
			continue;
		}
		if (r)
			break;
		r_leave(rs);
		r = shval__r_info(v, info);
		shval__r_close(v);
		r_enter(rs);
		if (r == SHVAL_ESTALE) {
			r = 0;
			continue;
		}
		break;
	}
	r_leave(rs);
	return r;
}

struct vrep {
	void (*report)(const shval_problem *p, void *arg);
	void *arg;
	size_t n;
};

static void problem(struct vrep *vr, int code, const char *name,
		    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void problem(struct vrep *vr, int code, const char *name,
		    const char *fmt, ...)
{
	shval_problem p;
	memset(&p, 0, sizeof p);
	p.code = code;
	snprintf(p.name, sizeof p.name, "%s", name);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p.what, sizeof p.what, fmt, ap);
	va_end(ap);
	vr->n++;
	if (vr->report)
		vr->report(&p, vr->arg);
}

/* Every directory entry has its hash; every hash is listed; types parse;
 * data has the type's size and valid bytes; guards exist. */
int shval__r_seg_verify(shval_seg *seg, unsigned flags,
			void (*report)(const shval_problem *p, void *arg),
			void *arg, size_t *nproblems)
{
	struct shval__rseg *rs = seg->rs;
	struct vrep vr = { report, arg, 0 };
	(void)flags;
	r_enter(rs);
	char k[SHVAL_NAME_MAX + 220];
	snprintf(k, sizeof k, "%s:seg", rs->prefix);
	const char *av[] = { "HGET", k, "magic" };
	redisReply *rep;
	int r = r_cmd(seg, &rep, 3, av, NULL);
	if (!r) {
		if (rep->type != REDIS_REPLY_STRING ||
		    strcmp(rep->str, "shval-redis 1") != 0)
			problem(&vr, SHVAL_ECORRUPT, "",
				"%s:seg is missing or not a shval header",
				rs->prefix);
		freeReplyObject(rep);
	}
	redisReply *dir = NULL;
	if (!r) {
		snprintf(k, sizeof k, "%s:dir", rs->prefix);
		const char *argv[] = { "HGETALL", k };
		r = r_cmd(seg, &dir, 2, argv, NULL);
	}
	for (size_t i = 0; !r && i + 1 < dir->elements; i += 2) {
		const char *name = dir->element[i]->str;
		const char *serial = dir->element[i + 1]->str;
		snprintf(k, sizeof k, "%s:v:%s", rs->prefix, name);
		const char *argv[] = { "HMGET", k,        "kind", "type",
				       "mode",  "serial", "data", "guard" };
		r = r_cmd(seg, &rep, 8, argv, NULL);
		if (r)
			break;
		size_t dlen;
		const char *kind = el(rep, 0, NULL), *type = el(rep, 1, NULL);
		const char *data = el(rep, 4, &dlen);
		char guard[SHVAL_NAME_MAX + 1];
		snprintf(guard, sizeof guard, "%s", el(rep, 5, NULL));
		unsigned mode = (unsigned)strtoul(el(rep, 2, NULL), NULL, 10);
		if (strcmp(el(rep, 3, NULL), serial) != 0)
			problem(&vr, SHVAL_ECORRUPT, name,
				"listed with serial %s, its hash has \"%s\"",
				serial, el(rep, 3, NULL));
		else if (strcmp(kind, "l") == 0) {
			if (mode != SHVAL_RLOCK && mode != SHVAL_LOCK)
				problem(&vr, SHVAL_ECORRUPT, name,
					"lock with mode 0x%x", mode);
		} else if (strcmp(kind, "v") != 0)
			problem(&vr, SHVAL_ECORRUPT, name,
				"unknown kind \"%s\"", kind);
		else if (mode & ~SHVAL_MODE_MASK)
			problem(&vr, SHVAL_ECORRUPT, name, "mode 0x%x", mode);
		else {
			shval__type *t = NULL;
			shval__err err = { "" };
			if (shval__type_parse(type, &t, err.msg,
					      sizeof err.msg) != 0)
				problem(&vr, SHVAL_ECORRUPT, name,
					"type \"%s\": %s", type, err.msg);
			else if (strcmp(t->canon, type) != 0)
				problem(&vr, SHVAL_ECORRUPT, name,
					"type \"%s\" is not canonical", type);
			else if (dlen != t->size)
				problem(&vr, SHVAL_ECORRUPT, name,
					"%zu bytes stored for type %s (%zu)",
					dlen, type, t->size);
			else if (shval__type_check(t, data, err.msg,
						   sizeof err.msg) != 0)
				problem(&vr, SHVAL_ECORRUPT, name,
					"stored bytes: %s", err.msg);
			if (t)
				shval__type_free(t);
		}
		freeReplyObject(rep);
		if (guard[0]) {
			snprintf(k, sizeof k, "%s:v:%s", rs->prefix, guard);
			const char *gv[] = { "HGET", k, "kind" };
			if ((r = r_cmd(seg, &rep, 3, gv, NULL)) != 0)
				break;
			if (rep->type != REDIS_REPLY_STRING ||
			    strcmp(rep->str, "l") != 0)
				problem(&vr, SHVAL_ECORRUPT, name,
					"guarded by %s, which is not a lock",
					guard);
			freeReplyObject(rep);
		}
	}
	if (dir)
		freeReplyObject(dir);
	r_leave(rs);
	if (nproblems)
		*nproblems = vr.n;
	if (r)
		return r;
	return vr.n ? SHVAL_ECORRUPT : 0;
}
