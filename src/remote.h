/*
 * src/remote.h — Redis segments: "redis://[user:password@]host:port/prefix"
 * and "redis+unix:///path/to/socket?prefix=P" (issue 14).  Not API: the
 * private header of the src/remote_*.c files (the rest of the library sees
 * only internal.h's shval__r_* functions).
 *
 * FILES (one concern each; none takes a lock of the local code, only the
 * segment handle's own mutex rs->mu around requests)
 *   remote_conn.c    connections: connect, AUTH, the embedded Lua library
 *                    (FUNCTION LOAD), fork detection and rs->mu, RESP
 *                    requests with reconnect and resend, blocking XREADs
 *   remote_seg.c     segment names (URL parsing), open, close, unlink, info
 *   remote_value.c   values by name: handles, shadows, create, find, remove,
 *                    info, listing (shval_seg_next)
 *   remote_op.c      the operation engine (fetch, run on the shadow,
 *                    shval1_write) and the get/set/read/write/add/cas calls
 *   remote_lock.c    leases, their renewal thread, staged sections, commit
 *   remote_wait.c    versions (peeks) and shval_wait / shval_seg_wait
 *   remote_batch.c   a batch as one pipeline (shval__r_batch_run)
 *   remote_verify.c  shval_seg_verify of a Redis segment
 * Names: what one remote file calls in another is declared below with the
 * shval__r_ prefix (shval__ra_ for the argument lists, shval__rfail for
 * failures), like every cross-file internal; the few-line helpers of
 * argument lists (ra_init, ra_add, ra_bin), replies (el, is) and deadlines
 * are static inline here, so every file builds requests the same way.
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
 * holds any lock.  The lease of a value's own lock comes with the value's
 * bytes (up to 4 KiB: the staged copy, loaded; a larger value or one under
 * a shared lock is fetched on first use).  Writes inside a section are
 * staged here (per thread's held lock) and applied at the outermost unlock
 * by one call (shval1_commit) that checks the token: all or nothing, and a
 * section whose owner died, was paused or cut off beyond the lease is never
 * applied.  The lease's owner leaves "holder" in the lock's hash until its
 * commit; a locker that finds a holder but no lease knows the owner died:
 * SHVAL_EOWNERDEAD, with the last committed state.
 *
 * Waiting: every creation, removal and unlock appends to the segment's
 * stream (P:ev; its last id is the segment's version; an unlock's entry
 * announces the section it commits), and so does a plain write of a value
 * someone waits for.  A waiter reads the version and the stream's last id
 * in one call (shval1_peek) that also sets the value's waiters' flag ("w"),
 * then XREAD BLOCKs from that id on a connection of its own: the next write
 * takes the flag and appends, and a change between the peek and the block
 * is in the stream, so no wake-up is lost; on any entry (perhaps another
 * value's: one stream keeps writes cheap) and after a reconnect it peeks
 * again.  A segment watcher
 * (shval_seg_version, shval_seg_wait) makes every change append from then
 * on, as a local segment's watcher bit does.  An unwatched write is thus
 * the HMGET and HSET of shval1_write only.
 *
 * Connections: one per segment handle for requests (serialised by rs->mu),
 * one per blocking wait, one for the lease renewer.  A request whose
 * connection broke is sent again on a new connection (for up to the
 * timeout); requests that change something carry an id and the server
 * answers a repeated id from its record instead of applying it twice
 * (shval1_write: the value's "wq", or P:q:CLIENT once another client
 * overwrote that; the other functions: P:q:REQ).  A forked child opens
 * its own connections and holds no lock.
 */
#ifndef SHVAL_REMOTE_H
#define SHVAL_REMOTE_H

#include <pthread.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "internal.h"

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
	bool loaded; /* data holds the value: fetched, or wholly written */
	struct rstage *next;
};
struct rheld {
	char lock[SHVAL_NAME_MAX + 1];
	char serial[24]; /* of the lock's entry when the lease was taken */
	char ver[24];    /* ... and its version then ("" unknown) */
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
	unsigned fork_gen; /* remote_conn.c's r_fork_gen when pid was current */
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
	uint64_t committed; /* the version this handle's last change
			     * committed, until shval__r_committed takes
			     * it (0: none, or unknown) */
	/* shval__r_batch_run's state (rs->mu held) */
	uint64_t bgen;  /* the run it belongs to (rs->batch_gen) */
	bool bsingle;   /* the value's ops go one by one from here on */
	bool bbroken;   /* a pipelined change of it was refused */
	bool bfetch;    /* to fetch before the pipeline */
	char bprev[48]; /* id of its last pipelined change ("" none) */
};

/* Commands are built as argument lists; strings are NUL-terminated except
 * data, given with its length. */
struct rargs {
	int n;
	const char *v[64];
	size_t l[64];
	char own[64][200]; /* copies for formatted arguments */
};

static inline void ra_init(struct rargs *a)
{
	a->n = 0;
}
static inline void ra_add(struct rargs *a, const char *s)
{
	a->v[a->n] = s;
	a->l[a->n++] = strlen(s);
}
static inline void ra_bin(struct rargs *a, const void *s, size_t n)
{
	a->v[a->n] = s;
	a->l[a->n++] = n;
}

/* Element i of an array reply as a string ("" if absent). */
static inline const char *el(const redisReply *rep, size_t i, size_t *len)
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

static inline bool is(const redisReply *rep, const char *status)
{
	return strcmp(el(rep, 0, NULL), status) == 0;
}

static inline uint64_t deadline_of(int64_t timeout_ns)
{
	if (timeout_ns < 0)
		return UINT64_MAX;
	return shval__now_ns() + (uint64_t)timeout_ns;
}

static inline int64_t ms_until(uint64_t deadline)
{
	uint64_t now = shval__now_ns();
	if (deadline == UINT64_MAX)
		return R_BLOCK_MS;
	if (now >= deadline)
		return 0;
	return (int64_t)((deadline - now + SHVAL_MSEC - 1) / SHVAL_MSEC);
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
	OP_BITOP, /* which: 0 and, 1 or, 2 xor */
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
	int which;  /* OP_BITOP */
	int64_t ie; /* cas: the caller's expected value */
	double de;
	uint64_t *verp; /* a read's version (shval_read_version) */
	bool staged;    /* set by shval__r_op: ran on a section's staged copy */
	bool strict;    /* shval__r_try_*: 1 instead of waiting for another
			 * owner, recovering a dead one's section or staging */
};

/* ---- remote_conn.c: connections and requests ---- */
/* Record the message "<segment>: <fmt...>" for seg; returns code. */
int shval__rfail(shval_seg *seg, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A new connection, authenticated.  0 or a code with the message. */
int shval__r_connect(shval_seg *seg, redisContext **out);
/* A new segment handle's fork detection (rs->pid, rs->fork_gen). */
void shval__r_fork_init(struct shval__rseg *rs);
/* Take rs->mu (a forked child first drops the parent's connection and
 * sections: shval__r_after_fork); release it.  Inline: every request. */
extern _Atomic unsigned shval__r_fork_gen;
void shval__r_after_fork(struct shval__rseg *rs);
static inline void shval__r_enter(struct shval__rseg *rs)
{
	/* relaxed: the bump runs in a fork's child before it has other
	 * threads (pthread_atfork), and threads it starts later see it
	 * through pthread_create */
	if (__builtin_expect(rs->fork_gen !=
				     atomic_load_explicit(&shval__r_fork_gen,
							  memory_order_relaxed),
			     0))
		shval__r_after_fork(rs);
	pthread_mutex_lock(&rs->mu);
}
static inline void shval__r_leave(struct shval__rseg *rs)
{
	pthread_mutex_unlock(&rs->mu);
}
/* Append one command in RESP to c's output buffer (pipelines). */
int shval__r_append(redisContext *c, int argc, const char *const *argv,
		    const size_t *lens);
/* Run one command on the segment's connection (rs->mu held), with
 * reconnect and resend; shval__r_cmd_ex sets argument resent_arg to "1"
 * when it sends again. */
int shval__r_cmd(shval_seg *seg, redisReply **out, int argc, const char **argv,
		 const size_t *lens);
int shval__r_cmd_ex(shval_seg *seg, redisReply **out, int argc,
		    const char **argv, size_t *lens, int resent_arg);
void shval__ra_fmt(struct rargs *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void shval__ra_u64(struct rargs *a, uint64_t x);
void shval__ra_fcall(struct rargs *a, struct shval__rseg *rs, const char *fn,
		     bool req);
int shval__r_run(shval_seg *seg, struct rargs *a, redisReply **out);
/* SHVAL_ECORRUPT "unexpected reply to <what>"; frees rep. */
int shval__r_bad_reply(shval_seg *seg, redisReply *rep, const char *what);
/* The request connection, made if there is none; drop it (rs->mu held). */
int shval__r_ensure(shval_seg *seg);
void shval__r_lost(struct shval__rseg *rs);
/* XREAD BLOCK on the segment's stream after id, on a connection of the
 * caller's own (*bc), and the pause after it failed. */
int shval__r_block(shval_seg *seg, redisContext **bc, const char *id,
		   int64_t ms);
int shval__r_block_failed(uint64_t deadline, int r);
int shval__r_block_until(shval_seg *seg, redisContext **bc, const char *id,
			 int64_t ms, uint64_t deadline);
int shval__r_busy(shval_seg *seg, const redisReply *rep, char *id,
		  long long *pttl);

/* ---- remote_seg.c: segment handles ---- */
void shval__r_seg_unref(shval_seg *seg);

/* ---- remote_value.c: values by name ---- */
/* A private value of the given type and mode in the shadow segment. */
int shval__r_shadow(shval_seg *seg, const char *type, unsigned flags,
		    bool lock_entry, const void *init, size_t init_len,
		    shval **sh);

/* ---- remote_op.c: the operation engine ---- */
int shval__r_fetch(shval *v, char *ver, unsigned char *data);
int shval__r_fetched(shval *v, redisReply *rep, char *ver, unsigned char *data);
bool shval__r_op_writes(enum rop_kind k);
int shval__r_op_apply(shval *sh, struct rop *o);
int shval__r_own_shadow(shval *v);
int shval__r_op(shval *v, struct rop *o);
void shval__r_write_args(struct rargs *a, shval *v, uint64_t seq, bool blind);

/* ---- remote_lock.c: leases and sections (rs->mu held) ---- */
struct rheld *shval__r_held_find(struct shval__rseg *rs, const char *lock);
/* Inside this thread's section on v's own lock: its committed version,
 * known from the lease (no round trip); false otherwise.  Takes rs->mu
 * itself (the caller must not hold it). */
bool shval__r_section_version(shval *v, uint64_t *ver);
/* The section's staged copy of v (created on first use).  need_old: the
 * operation reads the committed bytes (all but a whole-value write of a
 * value under its own lock whose lease was taken on this very entry, the
 * same serial: nothing to fetch, nothing to check). */
int shval__r_stage_get(shval *v, struct rheld *h, bool need_old,
		       struct rstage **out);
/* Forget every section of rs (closing, or a fork's child). */
void shval__r_held_clear(struct shval__rseg *rs);

/* ---- remote_wait.c: versions ---- */
int shval__r_peek(shval *v, uint64_t *ver, char *id, size_t idcap,
		  const uint64_t *seen);
int shval__r_segpeek(shval_seg *seg, uint64_t *ver, char *id, size_t idcap,
		     bool arm);

#endif
