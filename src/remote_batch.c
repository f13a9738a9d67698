/*
 * src/remote_batch.c — a batch of a Redis segment as one pipeline (the
 * design: src/remote.h).  Not API.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remote.h"

/* ---- batches (include/shval.h "Batches"; src/batch.c) ----
 * The batch's requests go out as one pipeline: reads as HMGET, changes computed
 * here on the cached bytes (as shval__r_op's uncontended path) and sent as
 * shval1_write with the version they were computed from.  A value's second and
 * later change in the pipeline names the request of its previous one
 * (shval1_write's prev), so it is applied only right after it: a refused change
 * (the value moved: another writer, a lease) and every later op on that value
 * are done again one by one with shval__r_op after the pipeline, in queue
 * order.  Values whose changes need bytes the handle has not seen are fetched
 * first (one pipelined round trip).  Values in the thread's own section
 * (staged), lock handles and read-only refusals go one by one from the start.
 * A lost connection: reads are done again; the client's last applied write
 * is the higher of the server's record (P:q:CLIENT, where a write of
 * another client moved it) and the lost values' own records ("wq", when it
 * is this client's: src/remote.lua, keep).  A change is known applied if it
 * is that write or still its value's wq, known not applied if it came later
 * (the pipeline runs in order), else -ECONNRESET "outcome unknown". */

/* The engine's op for a batch op: its kind; every input and output field
 * copied (each kind reads only its own, as the single call would). */
static void bop_rop(const struct shval__bop *b, struct rop *o)
{
	static const enum rop_kind kinds[] = {
		[SHVAL__B_READ] = OP_READ,
		[SHVAL__B_WRITE] = OP_WRITE,
		[SHVAL__B_GET_I64] = OP_GET_I64,
		[SHVAL__B_SET_I64] = OP_SET_I64,
		[SHVAL__B_ADD_I64] = OP_ADD_I64,
		[SHVAL__B_GET_F64] = OP_GET_F64,
		[SHVAL__B_SET_F64] = OP_SET_F64,
		[SHVAL__B_ADD_F64] = OP_ADD_F64,
	};
	memset(o, 0, sizeof *o);
	o->k = kinds[b->kind];
	o->p = b->out;
	o->cp = b->in;
	o->a = b->len;
	o->i = b->i;
	o->d = b->d;
}

enum { B_SINGLE, B_READ, B_WRITE, B_DONE, B_LOST };

/* After a lost connection: the sequence number in a record of this client's
 * applied writes, into *seq (0: none).  key: the record P:q:CLIENT (client
 * NULL: a string of the number), or a value's hash, whose wq ("client.seq")
 * counts only if client is its client.  0, or the request's failure. */
static int own_seq(shval_seg *seg, const char *key, const char *client,
		   uint64_t *seq)
{
	const char *argv[] = { client ? "HGET" : "GET", key, "wq" };
	redisReply *rep = NULL;
	*seq = 0;
	int r = shval__r_cmd(seg, &rep, client ? 3 : 2, argv, NULL);
	if (r)
		return r;
	if (rep->type == REDIS_REPLY_STRING) {
		const char *s = rep->str;
		size_t cl = client ? strlen(client) : 0;
		if (!client)
			*seq = strtoull(s, NULL, 10);
		else if (strncmp(s, client, cl) == 0 && s[cl] == '.')
			*seq = strtoull(s + cl + 1, NULL, 10);
	} else if (rep->type != REDIS_REPLY_NIL) {
		r = -ECONNRESET;
	}
	freeReplyObject(rep);
	return r;
}

void shval__r_batch_run(struct shval_batch *b)
{
	shval_seg *seg = b->seg;
	struct shval__rseg *rs = seg->rs;
	size_t n = b->n;
	struct bst {
		int how;
		bool sent; /* in the pipeline */
		uint64_t seq;
		uint64_t wq; /* lost: the seq of its value's wq, if ours */
		struct rop o;
	} *st = calloc(n ? n : 1, sizeof *st);
	if (!st) {
		for (size_t i = 0; i < n; i++)
			shval__bop_done(
				b, i,
				shval__rfail(seg, -ENOMEM, "out of memory"));
		return;
	}
	shval__r_enter(rs);
	uint64_t gen = ++rs->batch_gen;
	/* 1. what goes one by one; which values to fetch first */
	size_t nfetch = 0;
	for (size_t i = 0; i < n; i++) {
		shval *v = b->ops[i].v;
		struct shval__rval *rv = v->r;
		bop_rop(&b->ops[i], &st[i].o);
		bool w = shval__r_op_writes(st[i].o.k);
		if (rv->bgen != gen) {
			rv->bgen = gen;
			rv->bsingle = rv->bbroken = rv->bfetch = false;
			rv->bprev[0] = 0;
			if (v->kind == SHVAL_KIND_LOCK ||
			    shval__r_own_shadow(v) != 0 ||
			    (rv->lock[0] && shval__r_held_find(rs, rv->lock)) ||
			    (!rv->cdata &&
			     !(rv->cdata = calloc(1, v->size ? v->size : 1))))
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
	if (nfetch && shval__r_ensure(seg) == 0) {
		bool lost = false;
		for (size_t i = 0; i < n; i++) {
			struct shval__rval *rv = b->ops[i].v->r;
			if (st[i].how != B_WRITE || !rv->bfetch || rv->cvalid)
				continue;
			const char *argv[] = { "HMGET", rv->key, "serial",
					       "ver", "data" };
			rv->cvalid = true; /* marks it sent; set below */
			if (shval__r_append(rs->c, 5, argv, NULL) != 0)
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
			if (shval__r_fetched(v, rep, rv->cver, rv->cdata) !=
			    0) {
				rv->cvalid = false; /* its ops report it */
				rv->bsingle = true;
			}
		}
		if (lost)
			shval__r_lost(rs);
	}
	/* 3. the pipeline */
	size_t npipe = 0;
	int down =
		shval__r_ensure(seg); /* unreachable: nothing more is tried */
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
			lost = shval__r_append(rs->c, 5, argv, NULL) != 0;
			st[i].sent = !lost;
			npipe++;
			continue;
		}
		memcpy(rv->sh->data, rv->cdata, v->size);
		if (shval__r_op_apply(rv->sh, &st[i].o) != 0) {
			/* perhaps only because the cache is old: shval__r_op
			 * fetches and reports */
			rv->bsingle = true;
			st[i].how = B_SINGLE;
			continue;
		}
		struct rargs a;
		st[i].seq = ++rs->reqseq;
		shval__r_write_args(&a, v, st[i].seq, false);
		ra_add(&a, "0");
		if (rv->bprev[0])
			ra_add(&a, rv->bprev);
		lost = shval__r_append(rs->c, a.n, a.v, a.l) != 0;
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
			int r = shval__r_fetched(v, rep, ver, rv->sh->data);
			if (!r &&
			    (r = shval__r_op_apply(rv->sh, &st[i].o)) != 0)
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
		shval__r_lost(rs);
	if (nlost_w) { /* which of the changes were applied? */
		char k[260];
		snprintf(k, sizeof k, "%s:q:%s", rs->prefix, rs->client_hex);
		uint64_t last = 0, rec = 0;
		bool known = true;
		/* the values first, the record last: a write's number only
		 * moves from a value's wq to the record (and the record only
		 * grows), so one of the two reads sees it */
		for (size_t i = 0; i < n && known; i++) {
			if (st[i].how != B_LOST)
				continue;
			known = own_seq(seg, b->ops[i].v->r->key,
					rs->client_hex, &st[i].wq) == 0;
			if (st[i].wq > last)
				last = st[i].wq;
		}
		known = known && own_seq(seg, k, NULL, &rec) == 0;
		if (rec > last)
			last = rec;
		for (size_t i = 0; i < n; i++) {
			if (st[i].how != B_LOST)
				continue;
			struct shval__rval *rv = b->ops[i].v->r;
			if (known && st[i].seq > last) {
				st[i].how = B_SINGLE; /* not applied */
				continue;
			}
			st[i].how = B_DONE;
			if (known &&
			    (st[i].seq == last || st[i].seq == st[i].wq))
				shval__bop_done(b, i, 0);
			else
				shval__bop_done(
					b, i,
					shval__rfail(
						seg, -ECONNRESET,
						"value %s: the connection was "
						"lost in a batch; whether this "
						"change was applied is unknown",
						rv->name));
		}
	}
	shval__r_leave(rs);
	/* 5. the rest one by one, in queue order; once the server stayed
	 * unreachable for timeout_ms, the remaining ops are not tried (each
	 * would wait as long again) */
	for (size_t i = 0; i < n; i++) {
		if (st[i].how != B_SINGLE)
			continue;
		int r;
		if (down)
			r = shval__rfail(
				seg, down,
				"value %s: not attempted: the server was "
				"unreachable for an earlier operation of "
				"this batch",
				b->ops[i].v->r->name);
		else {
			r = shval__r_op(b->ops[i].v, &st[i].o);
			if (r == -ECONNRESET || r == -ECONNREFUSED ||
			    r == -EHOSTUNREACH || r == -EAGAIN)
				down = r;
		}
		shval__bop_done(b, i, r);
	}
	free(st);
}
