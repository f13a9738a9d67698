/*
 * src/remote_op.c — the operation engine of Redis values (the design:
 * src/remote.h).  Not API.  An operation fetches the value's bytes and
 * version (or takes the handle's cache, or the section's staged copy), runs
 * the public function on the shadow, and sends a change to shval1_write,
 * which applies it only if the version is unchanged; a refused change is
 * computed again on the bytes the server returned.  The shval__r_get_*,
 * set_*, read, write, add, cas ... calls of internal.h are its wrappers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remote.h"

/* ---- the operation engine ---- */

/* Fetch the value's committed bytes and version (one HMGET). */
int shval__r_fetch(shval *v, char *ver, unsigned char *data)
{
	shval_seg *seg = v->seg;
	struct shval__rval *rv = v->r;
	struct rargs a; /* the lengths computed once: the hot path */
	redisReply *rep;
	ra_init(&a);
	ra_add(&a, "HMGET");
	ra_add(&a, rv->key);
	ra_add(&a, "serial");
	ra_add(&a, "ver");
	ra_add(&a, "data");
	int r = shval__r_run(seg, &a, &rep);
	if (r)
		return r;
	return shval__r_fetched(v, rep, ver, data);
}

/* The reply to shval__r_fetch's HMGET (freed here): 0 with ver and data, or the
 * code with the message. */
int shval__r_fetched(shval *v, redisReply *rep, char *ver, unsigned char *data)
{
	shval_seg *seg = v->seg;
	struct shval__rval *rv = v->r;
	int r;
	if (strcmp(el(rep, 0, NULL), rv->serial) != 0) {
		freeReplyObject(rep);
		return shval__rfail(seg, SHVAL_ESTALE, "value %s was removed",
				    rv->name);
	}
	size_t len;
	const char *d = el(rep, 2, &len);
	if (len != v->size) {
		freeReplyObject(rep);
		return shval__rfail(
			seg, SHVAL_ECORRUPT,
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
		return shval__rfail(seg, SHVAL_ECORRUPT,
				    "value %s: stored bytes: %s", rv->name,
				    err.msg);
	return 0;
}

bool shval__r_op_writes(enum rop_kind k)
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

/* The typed scalar calls of one number class: shval_get_i64, _u64, _f64 by
 * the op kind k, into out; shval_set_* of o's i, u or d. */
static int get_num(shval *sh, enum rop_kind k, void *out)
{
	if (k == OP_GET_I64)
		return shval_get_i64(sh, out);
	if (k == OP_GET_U64)
		return shval_get_u64(sh, out);
	return shval_get_f64(sh, out);
}

static int set_num(shval *sh, const struct rop *o)
{
	if (o->k == OP_SET_I64)
		return shval_set_i64(sh, o->i);
	if (o->k == OP_SET_U64)
		return shval_set_u64(sh, o->u);
	return shval_set_f64(sh, o->d);
}

/* shval_and_u64 (o->which 0), shval_or_u64 (1), shval_xor_u64 (2). */
static int bitop(shval *sh, const struct rop *o)
{
	if (o->which == 0)
		return shval_and_u64(sh, o->u, o->p);
	if (o->which == 1)
		return shval_or_u64(sh, o->u, o->p);
	return shval_xor_u64(sh, o->u, o->p);
}

/* shval_cas_i64 / _f64: the caller's expected value (o->p) is set from its
 * copy first, so that a retry starts from what the caller gave. */
static int cas(shval *sh, const struct rop *o)
{
	if (o->k == OP_CAS_I64) {
		*(int64_t *)o->p = o->ie;
		return shval_cas_i64(sh, o->p, o->i);
	}
	*(double *)o->p = o->de;
	return shval_cas_f64(sh, o->p, o->d);
}

/* Run the public function on the shadow.  Retry-safe: inputs are never
 * changed; outputs are written again by the last attempt. */
int shval__r_op_apply(shval *sh, struct rop *o)
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
	case OP_GET_U64:
	case OP_GET_F64:
		return get_num(sh, o->k, o->p);
	case OP_SET_I64:
	case OP_SET_U64:
	case OP_SET_F64:
		return set_num(sh, o);
	case OP_ADD_I64:
		return shval_add_i64(sh, o->i, o->p);
	case OP_SUB_I64:
		return shval_sub_i64(sh, o->i, o->p);
	case OP_ADD_F64:
		return shval_add_f64(sh, o->d, o->p);
	case OP_BITOP:
		return bitop(sh, o);
	case OP_EXCHANGE:
		return shval_exchange_i64(sh, o->i, o->p);
	case OP_CAS_I64:
	case OP_CAS_F64:
		return cas(sh, o);
	}
	return -EINVAL;
}

/* The arguments of shval1_write of v's shadow bytes, computed from the
 * version rv->cver (blind: a write of every byte, "*": whatever the
 * version), as request seq of this client, up to the lease's name: the
 * caller adds the resent flag (and, in a batch, the previous request). */
void shval__r_write_args(struct rargs *a, shval *v, uint64_t seq, bool blind)
{
	struct shval__rseg *rs = v->seg->rs;
	struct shval__rval *rv = v->r;
	shval__ra_fcall(a, rs, "shval1_write", false);
	ra_add(a, rs->client_hex);
	shval__ra_u64(a, seq);
	ra_add(a, rv->name);
	ra_add(a, rv->serial);
	if (blind) {
		ra_add(a, "*");
		ra_add(a, ""); /* the server's next version */
	} else {
		ra_add(a, rv->cver);
		shval__ra_u64(a, strtoull(rv->cver, NULL, 10) + 1);
	}
	ra_bin(a, rv->sh->data, v->size);
	ra_add(a, rv->lock);
}

/* Load bytes into the shadow, run the op there; a failure's message is
 * moved to the remote segment. */
static int op_on_shadow(shval *v, const unsigned char *bytes, struct rop *o)
{
	shval *sh = v->r->sh;
	memcpy(sh->data, bytes, v->size);
	int r = shval__r_op_apply(sh, o);
	if (r)
		shval__failf(v->seg, r, "value %s: %s", v->r->name,
			     shval_errmsg(v->seg->rs->shadow));
	return r;
}

/* A handle inherited across fork() gets a shadow of this process. */
int shval__r_own_shadow(shval *v)
{
	struct shval__rval *rv = v->r;
	if (rv->sh_pid == v->seg->rs->pid) /* shval__r_enter keeps it current */
		return 0;
	shval *old = rv->sh, *sh;
	bool lock_entry = old->kind == SHVAL_KIND_LOCK;
	int r = shval__r_shadow(v->seg, lock_entry ? NULL : old->type->canon,
				old->mode, lock_entry, NULL, 0, &sh);
	if (r)
		return r;
	shval_close(old); /* this process's handle; the value stays */
	rv->sh = sh;
	rv->sh_pid = v->seg->rs->pid;
	v->type = sh->type;
	return 0;
}

int shval__r_op(shval *v, struct rop *o)
{
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	struct shval__rval *rv = v->r;
	bool writes = shval__r_op_writes(o->k);
	if (v->kind == SHVAL_KIND_LOCK)
		return shval__rfail(seg, SHVAL_EMODE,
				    "this handle is a lock, not a value");
	if (writes && (seg->flags & SHVAL_RDONLY))
		return shval__rfail(seg, SHVAL_ERDONLY,
				    "segment opened read-only");
	redisContext *bc = NULL;
	int r;
	shval__r_enter(rs);
	rv->committed = 0; /* this operation's, if it commits one */
	if ((r = shval__r_own_shadow(v)) != 0) {
		shval__r_leave(rs);
		return r;
	}
	struct rheld *h = rv->lock[0] ? shval__r_held_find(rs, rv->lock) : NULL;
	if (h && o->strict) {
		shval__r_leave(rs);
		return 1;
	}
	if (h) { /* inside this thread's section: staged */
		/* A whole-value write under the value's own lock needs no
		 * fetch: the lease was taken on this entry, of this serial
		 * (checked by the server then), and every byte is replaced. */
		bool whole = o->k == OP_WRITE && o->a == v->size &&
			     strcmp(rv->lock, rv->name) == 0 &&
			     strcmp(h->serial, rv->serial) == 0;
		struct rstage *s = NULL;
		r = shval__r_stage_get(v, h, !whole, &s);
		if (!r)
			r = op_on_shadow(v, s->data, o);
		if (!r && writes) {
			memcpy(s->data, rv->sh->data, v->size);
			s->dirty = true;
			s->loaded |= whole;
		}
		o->staged = true;
		shval__r_leave(rs);
		return r;
	}
	if (!rv->cdata && !(rv->cdata = calloc(1, v->size ? v->size : 1))) {
		shval__r_leave(rs);
		return shval__rfail(seg, -ENOMEM, "out of memory");
	}
	/* A write of every byte (a whole write, a scalar's set: anything
	 * else fails on the shadow before it is sent) needs neither the old
	 * bytes nor the version: sent blind (expver "*"), one round trip
	 * however stale the cache. */
	bool blind = (o->k == OP_WRITE && o->a == v->size) ||
		     o->k == OP_SET_I64 || o->k == OP_SET_U64 ||
		     o->k == OP_SET_F64;
	bool cached = writes && (rv->cvalid || blind);
	for (;;) {
		if (!cached) {
			rv->cvalid = false;
			r = shval__r_fetch(v, rv->cver, rv->cdata);
			if (r)
				break;
			rv->cvalid = true;
		}
		r = op_on_shadow(v, rv->cdata, o);
		/* a failure perhaps only because the cache is old (a blind
		 * change reads no old bytes: its failure is its own) */
		if (r && cached && !blind) {
			cached = false;
			continue;
		}
		if (!r && o->verp)
			*o->verp = strtoull(rv->cver, NULL, 10);
		if (r || !writes)
			break;
		struct rargs a;
		redisReply *rep;
		shval__r_write_args(&a, v, ++rs->reqseq, blind && cached);
		int resent = a.n;
		ra_add(&a, "0");
		if (o->strict) {
			ra_add(&a, ""); /* no previous request (a batch's) */
			ra_add(&a, "1");
		}
		r = shval__r_cmd_ex(seg, &rep, a.n, a.v, a.l, resent);
		if (r)
			break;
		if (is(rep, "OK")) {
			snprintf(rv->cver, sizeof rv->cver, "%s",
				 el(rep, 1, NULL));
			memcpy(rv->cdata, rv->sh->data, v->size);
			/* "" after a resend: applied, version unknown */
			rv->cvalid = rv->cver[0] != 0;
			rv->committed =
				rv->cvalid ? strtoull(rv->cver, NULL, 10) : 0;
			freeReplyObject(rep);
			break;
		}
		if (is(rep, "CHANGED")) {
			size_t len;
			const char *d = el(rep, 2, &len);
			if (len != v->size) {
				r = shval__r_bad_reply(seg, rep, "a write");
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
			r = shval__rfail(seg, SHVAL_ESTALE,
					 "value %s was removed", rv->name);
			break;
		}
		if (o->strict && (is(rep, "BUSY") || is(rep, "DEAD"))) {
			freeReplyObject(rep);
			r = 1; /* the caller takes the lock (and hears of a death) */
			break;
		}
		if (!is(rep, "BUSY")) {
			r = shval__r_bad_reply(seg, rep, "a write");
			break;
		}
		/* Another owner's section: wait for its unlock (or its
		 * lease's end), as a local write waits for the lock. */
		char id[64];
		snprintf(id, sizeof id, "%s", el(rep, 1, NULL));
		long long pttl =
			rep->elements > 2 ? rep->element[2]->integer : 10;
		freeReplyObject(rep);
		shval__r_leave(rs);
		r = shval__r_block(seg, &bc, id, pttl > 0 ? pttl + 1 : 10);
		if (r)
			r = shval__r_block_failed(
				shval__now_ns() +
					(uint64_t)rs->timeout_ms * SHVAL_MSEC,
				r);
		shval__r_enter(rs);
		if (r)
			break;
		cached = false;
	}
	shval__r_leave(rs);
	if (bc)
		redisFree(bc);
	return r;
}

#define ROP(...)                                 \
	do {                                     \
		struct rop o_ = { __VA_ARGS__ }; \
		return shval__r_op(v, &o_);      \
	} while (0)

int shval__r_read(shval *v, void *buf, size_t cap)
{
	ROP(.k = OP_READ, .p = buf, .a = cap);
}

/* One HMGET: the bytes and the version they had (inside the caller's own
 * section: the staged bytes, then the committed version, never newer). */
int shval__r_read_version(shval *v, void *buf, size_t cap, uint64_t *version)
{
	uint64_t ver = 0;
	struct rop o = { .k = OP_READ, .p = buf, .a = cap, .verp = &ver };
	int r = shval__r_op(v, &o);
	if (!r && o.staged && !shval__r_section_version(v, &ver))
		r = shval__r_peek(v, &ver, NULL, 0, NULL);
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

/* Not API (include/shval.h): a change of a locked Redis value in one round
 * trip when nobody holds its lock and no dead owner's section is left;
 * 1 (nothing done) for a local value or a missing argument, which the
 * function the caller then calls reports. */
static int try_op(shval *v, struct rop o)
{
	if (!v || !SHVAL__REMOTE(v))
		return 1;
	o.strict = true;
	return shval__r_op(v, &o);
}
SHVAL_API int shval__r_try_write(shval *v, const void *buf, size_t len)
{
	return buf ? try_op(v,
			    (struct rop){ .k = OP_WRITE, .cp = buf, .a = len })
		   : 1;
}
SHVAL_API int shval__r_try_add_i64(shval *v, int64_t delta, int64_t *result)
{
	return try_op(v,
		      (struct rop){ .k = OP_ADD_I64, .i = delta, .p = result });
}
SHVAL_API int shval__r_try_array_set(shval *v, size_t index, size_t n,
				     const void *buf)
{
	return buf ? try_op(v, (struct rop){ .k = OP_ARRAY_SET,
					     .a = index,
					     .b = n,
					     .cp = buf })
		   : 1;
}
SHVAL_API int shval__r_try_field_set(shval *v, const char *field,
				     const void *buf, size_t len)
{
	return buf && field ? try_op(v, (struct rop){ .k = OP_FIELD_SET,
						      .s = field,
						      .cp = buf,
						      .a = len })
			    : 1;
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
	ROP(.k = OP_BITOP, .which = which, .u = mask, .p = old);
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
