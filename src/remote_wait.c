/*
 * src/remote_wait.c — Redis segments' versions and waits (the design:
 * src/remote.h).  Not API.  A value's version and the segment's (the last
 * id of the segment's stream P:ev) come from one server call; a waiter
 * XREAD BLOCKs from that id (shval__r_block), so a change between the peek
 * and the block is in the stream and no wake-up is lost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remote.h"

/* ---- versions and waiting ---- */

/* peek: the value's version and its stream's last id; seen (not NULL): a
 * waiter about to block, whose wake-up the value's next write must
 * announce (XADD) if the version is still *seen. */
int shval__r_peek(shval *v, uint64_t *ver, char *id, size_t idcap,
		  const uint64_t *seen)
{
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	struct rargs a;
	redisReply *rep;
	shval__r_enter(rs);
	shval__ra_fcall(&a, rs, "shval1_peek", false);
	ra_add(&a, v->r->name);
	ra_add(&a, v->r->serial);
	if (seen)
		shval__ra_u64(&a, *seen);
	int r = shval__r_run(seg, &a, &rep);
	shval__r_leave(rs);
	if (r)
		return r;
	if (is(rep, "STALE")) {
		freeReplyObject(rep);
		return shval__rfail(seg, SHVAL_ESTALE, "value %s was removed",
				    v->r->name);
	}
	if (!is(rep, "OK"))
		return shval__r_bad_reply(seg, rep, "peek");
	*ver = strtoull(el(rep, 1, NULL), NULL, 10);
	if (id)
		snprintf(id, idcap, "%s", el(rep, 2, NULL));
	freeReplyObject(rep);
	return 0;
}

uint64_t shval__r_value_version(shval *v)
{
	uint64_t ver = 0;
	if (shval__r_section_version(v, &ver))
		return ver;
	if (shval__r_peek(v, &ver, NULL, 0, NULL))
		return 0;
	return ver;
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

/* arm: a watcher (shval_seg_version, shval_seg_wait): the segment is
 * watched from then on, every value change moves its version. */
int shval__r_segpeek(shval_seg *seg, uint64_t *ver, char *id, size_t idcap,
		     bool arm)
{
	struct shval__rseg *rs = seg->rs;
	struct rargs a;
	redisReply *rep;
	shval__r_enter(rs);
	shval__ra_fcall(&a, rs, "shval1_segpeek", false);
	if (arm)
		ra_add(&a, "1");
	int r = shval__r_run(seg, &a, &rep);
	shval__r_leave(rs);
	if (r)
		return r;
	if (!is(rep, "OK")) {
		r = shval__rfail(seg, -ENOENT, "the segment was removed (%s)",
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
	if (shval__r_segpeek(seg, &ver, id, sizeof id, true))
		return 0;
	return ver;
}

/* shval_wait (v != NULL) and shval_seg_wait. */
int shval__r_wait(shval_seg *seg, shval *v, uint64_t *seen, int64_t timeout_ns)
{
	uint64_t deadline = deadline_of(timeout_ns);
	redisContext *bc = NULL;
	int r;
	for (;;) {
		uint64_t ver;
		char id[64];
		r = v ? shval__r_peek(v, &ver, id, sizeof id, seen)
		      : shval__r_segpeek(seg, &ver, id, sizeof id, true);
		if (r == -ECONNRESET || r == -EAGAIN) {
			if ((r = shval__r_block_failed(deadline, r)) != 0)
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
		if ((r = shval__r_block_until(seg, &bc, id, ms, deadline)) != 0)
			break;
	}
	if (bc)
		redisFree(bc);
	return r;
}
