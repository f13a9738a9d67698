/*
 * src/remote_verify.c — shval_seg_verify of a Redis segment (the design:
 * src/remote.h).  Not API.  Reads the segment's header, directory and every
 * value's hash, and reports what does not fit (shval_problem).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remote.h"

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
	shval__r_enter(rs);
	char k[SHVAL_NAME_MAX + 220];
	snprintf(k, sizeof k, "%s:seg", rs->prefix);
	const char *av[] = { "HGET", k, "magic" };
	redisReply *rep;
	int r = shval__r_cmd(seg, &rep, 3, av, NULL);
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
		r = shval__r_cmd(seg, &dir, 2, argv, NULL);
	}
	for (size_t i = 0; !r && i + 1 < dir->elements; i += 2) {
		const char *name = dir->element[i]->str;
		const char *serial = dir->element[i + 1]->str;
		snprintf(k, sizeof k, "%s:v:%s", rs->prefix, name);
		const char *argv[] = { "HMGET", k,        "kind", "type",
				       "mode",  "serial", "data", "guard" };
		r = shval__r_cmd(seg, &rep, 8, argv, NULL);
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
			if ((r = shval__r_cmd(seg, &rep, 3, gv, NULL)) != 0)
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
	shval__r_leave(rs);
	if (nproblems)
		*nproblems = vr.n;
	if (r)
		return r;
	return vr.n ? SHVAL_ECORRUPT : 0;
}
