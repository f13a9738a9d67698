/*
 * src/batch.c — shval_batch_*: queued operations on values of one segment
 * (include/shval.h, "Batches").  Local segments: shval_batch_run()
 * performs them one after another with the single calls.  Redis segments:
 * remote_batch.c sends the whole batch as one pipeline
 * (shval__r_batch_run).
 *
 * DESIGN: nothing is performed before shval_batch_run(), on either kind
 * (rather than local operations at once and remote ones at run), so that
 * a program's order of effects, and when its outputs are filled, does not
 * depend on where the segment lives.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

SHVAL_API int shval_batch_new(shval_seg *seg, shval_batch **out)
{
	if (!seg || !out)
		return -EINVAL;
	shval_batch *b = calloc(1, sizeof *b);
	if (!b)
		return shval__failf(seg, -ENOMEM, "out of memory");
	b->seg = seg;
	*out = b;
	return 0;
}

static void clear_ops(shval_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->ops[i].in);
	b->n = 0;
}

SHVAL_API void shval_batch_free(shval_batch *b)
{
	if (!b)
		return;
	clear_ops(b);
	free(b->ops);
	free(b);
}

SHVAL_API size_t shval_batch_size(const shval_batch *b)
{
	return b ? b->n : 0;
}

/* Queue op (its kind and inputs; v and the result are set here) on b. */
static int queue(shval_batch *b, shval *v, struct shval__bop op)
{
	if (!b || !v)
		return -EINVAL;
	if (shval_segment(v) != b->seg)
		return shval__failf(b->seg, SHVAL_EMISUSE,
				    "batch op %zu: the value's handle is of "
				    "another segment than the batch's",
				    b->n + 1);
	if (b->n == b->cap) {
		size_t nc = b->cap ? 2 * b->cap : 16;
		struct shval__bop *o = realloc(b->ops, nc * sizeof *o);
		if (!o)
			return shval__failf(b->seg, -ENOMEM, "out of memory");
		b->ops = o;
		b->cap = nc;
	}
	op.v = v;
	op.res = 0;
	b->ops[b->n++] = op;
	return 0;
}

SHVAL_API int shval_batch_read(shval_batch *b, shval *v, void *buf, size_t cap,
			       int *rc)
{
	if (!buf)
		return -EINVAL;
	return queue(b, v,
		     (struct shval__bop){ .kind = SHVAL__B_READ,
					  .out = buf,
					  .len = cap,
					  .rc = rc });
}

SHVAL_API int shval_batch_write(shval_batch *b, shval *v, const void *buf,
				size_t len, int *rc)
{
	if (!buf)
		return -EINVAL;
	unsigned char *copy = malloc(len ? len : 1);
	if (!copy)
		return shval__failf(b ? b->seg : NULL, -ENOMEM,
				    "out of memory");
	memcpy(copy, buf, len);
	int r = queue(b, v,
		      (struct shval__bop){ .kind = SHVAL__B_WRITE,
					   .in = copy,
					   .len = len,
					   .rc = rc });
	if (r)
		free(copy);
	return r;
}

/* A number op: kind k with its integer (i) or float (d) argument and its
 * output (out: a get's value, an add's result, NULL for none). */
static int queue_num(shval_batch *b, shval *v, enum shval__bop_kind k,
		     int64_t i, double d, void *out, int *rc)
{
	return queue(b, v,
		     (struct shval__bop){
			     .kind = k, .i = i, .d = d, .out = out, .rc = rc });
}

SHVAL_API int shval_batch_add_i64(shval_batch *b, shval *v, int64_t delta,
				  int64_t *result, int *rc)
{
	return queue_num(b, v, SHVAL__B_ADD_I64, delta, 0, result, rc);
}

SHVAL_API int shval_batch_add_f64(shval_batch *b, shval *v, double delta,
				  double *result, int *rc)
{
	return queue_num(b, v, SHVAL__B_ADD_F64, 0, delta, result, rc);
}

SHVAL_API int shval_batch_get_i64(shval_batch *b, shval *v, int64_t *out,
				  int *rc)
{
	if (!out)
		return -EINVAL;
	return queue_num(b, v, SHVAL__B_GET_I64, 0, 0, out, rc);
}

SHVAL_API int shval_batch_get_f64(shval_batch *b, shval *v, double *out,
				  int *rc)
{
	if (!out)
		return -EINVAL;
	return queue_num(b, v, SHVAL__B_GET_F64, 0, 0, out, rc);
}

SHVAL_API int shval_batch_set_i64(shval_batch *b, shval *v, int64_t x, int *rc)
{
	return queue_num(b, v, SHVAL__B_SET_I64, x, 0, NULL, rc);
}

SHVAL_API int shval_batch_set_f64(shval_batch *b, shval *v, double x, int *rc)
{
	return queue_num(b, v, SHVAL__B_SET_F64, 0, x, NULL, rc);
}

/* The single call an operation stands for (a local segment's batch). */
static int bop_single(struct shval__bop *o)
{
	switch (o->kind) {
	case SHVAL__B_READ:
		return (shval_read)(o->v, o->out, o->len);
	case SHVAL__B_WRITE:
		return (shval_write)(o->v, o->in, o->len);
	case SHVAL__B_GET_I64:
		return (shval_get_i64)(o->v, o->out);
	case SHVAL__B_GET_F64:
		return (shval_get_f64)(o->v, o->out);
	case SHVAL__B_SET_I64:
		return (shval_set_i64)(o->v, o->i);
	case SHVAL__B_ADD_I64:
		return (shval_add_i64)(o->v, o->i, o->out);
	case SHVAL__B_SET_F64:
		return (shval_set_f64)(o->v, o->d);
	case SHVAL__B_ADD_F64:
		return (shval_add_f64)(o->v, o->d, o->out);
	}
	return -EINVAL;
}

void shval__bop_done(struct shval_batch *b, size_t i, int res)
{
	b->ops[i].res = res;
	if (res && i < b->first) {
		b->first = i;
		snprintf(b->first_msg, sizeof b->first_msg, "%s",
			 shval_errmsg(b->seg));
	}
}

SHVAL_API int shval_batch_run(shval_batch *b, size_t *nfailed)
{
	if (!b)
		return -EINVAL;
	b->first = b->n;
	b->first_msg[0] = 0;
	if (SHVAL__RSEG(b->seg))
		shval__r_batch_run(b);
	else
		for (size_t i = 0; i < b->n; i++)
			shval__bop_done(b, i, bop_single(&b->ops[i]));
	size_t nf = 0;
	for (size_t i = 0; i < b->n; i++) {
		nf += b->ops[i].res != 0;
		if (b->ops[i].rc)
			*b->ops[i].rc = b->ops[i].res;
	}
	int r = 0;
	if (b->first < b->n) {
		r = b->ops[b->first].res;
		shval__failf(b->seg, r, "batch op %zu of %zu: %s", b->first + 1,
			     b->n, b->first_msg);
	}
	if (nfailed)
		*nfailed = nf;
	clear_ops(b);
	return r;
}
