/*
 * src/remote_value.c — Redis segments' values by name (the design:
 * src/remote.h).  Not API.  A handle and its shadow (a private value of the
 * same type and mode that the local code computes on), create (also lock
 * entries and guarded values), find, remove, close, info, and the listing
 * of a segment's values (shval_seg_next).  The calls on a value's contents
 * are in remote_op.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remote.h"

/* Handles of remote values point here: any local code path reached by
 * mistake sees a removed value (SHVAL_ESTALE), never a wild pointer. */
static shval__entry r_dead_entry;

/* ---- values: create, find, remove ---- */

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

/* A handle for the remote value name (serial), whose shadow is sh. */
static int r_handle(shval_seg *seg, const char *name, const char *serial,
		    const char *lock, shval *sh, shval **out)
{
	shval *v = calloc(1, sizeof *v);
	struct shval__rval *rv = calloc(1, sizeof *rv);
	if (!v || !rv) {
		free(v);
		free(rv);
		return shval__rfail(seg, -ENOMEM, "out of memory");
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
	shval__r_enter(rs);
	if (rv->sh_pid == getpid()) { /* a parent's shadow is not ours */
		struct shval_info in;
		if (shval_info(rv->sh, &in) == 0)
			(void)shval_remove(rs->shadow, in.name);
	}
	shval_close(rv->sh); /* the handle is this process's either way */
	shval__r_leave(rs);
	free(rv->cdata);
	free(rv);
	free(v);
	shval__r_seg_unref(seg);
}

/* The shadow: a private value of the same type and mode. */
int shval__r_shadow(shval_seg *seg, const char *type, unsigned flags,
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
			return shval__rfail(seg, r, "shadow segment: %s",
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
	const char *argv[] = { "HMGET", k,        "kind", "type",
			       "mode",  "serial", "guard" };
	redisReply *rep;
	int r = shval__r_cmd(seg, &rep, 7, argv, NULL);
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
		return shval__rfail(seg, SHVAL_ENOTFOUND, "no value named %s",
				    name);
	bool lock_entry = kind[0] == 'l';
	if (!lock_entry && kind[0] != 'v')
		return shval__rfail(seg, SHVAL_ECORRUPT,
				    "value %s: unknown kind '%s'", name, kind);
	if (type && !lock_entry) {
		char canon[SHVAL_TYPE_MAX + 1];
		r = shval_type_canonical(type, canon, sizeof canon, NULL);
		if (r)
			return shval__failf(seg, r, "%s", shval_errmsg(NULL));
		if (strcmp(canon, stype) != 0)
			return shval__rfail(
				seg, SHVAL_ETYPE,
				"value %s has type \"%s\", not \"%s\"", name,
				stype, canon);
	} else if (type && lock_entry)
		return shval__rfail(seg, SHVAL_ETYPE,
				    "%s is a lock, not a value of type \"%s\"",
				    name, type);
	if (check_mode && mode != want_mode)
		return shval__rfail(seg, SHVAL_EMODE,
				    "value %s exists with mode 0x%x, not 0x%x",
				    name, mode, want_mode);
	shval *sh;
	/* a guarded value's shadow has a lock of its own: the lock that
	 * matters is the server's lease of the guard */
	r = shval__r_shadow(seg, stype, mode & SHVAL_MODE_MASK, lock_entry,
			    NULL, 0, &sh);
	if (r)
		return shval__rfail(
			seg, SHVAL_ECORRUPT,
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
		return shval__rfail(seg, SHVAL_EBADNAME, "invalid value name");
	char canon[SHVAL_TYPE_MAX + 1];
	int tr = type ? shval_type_canonical(type, canon, sizeof canon, NULL)
		      : 0;
	if (tr) /* as local: a bad type string before a missing value */
		return shval__failf(seg, tr, "%s", shval_errmsg(NULL));
	shval__r_enter(seg->rs);
	int r = r_find_locked(seg, name, type, 0, false, out);
	shval__r_leave(seg->rs);
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
		return shval__rfail(seg, SHVAL_EBADNAME, "invalid value name");
	int nr = shval__check_utf8_name(seg, name, n); /* as local */
	if (nr)
		return nr;
	if (seg->flags & SHVAL_RDONLY)
		return shval__rfail(seg, SHVAL_ERDONLY,
				    "segment opened read-only");
	if (guard &&
	    (!guard->r || guard->seg != seg || guard->kind != SHVAL_KIND_LOCK))
		return shval__rfail(seg, SHVAL_EMISUSE,
				    "the guard is not a lock of this segment");
	unsigned mode = flags & SHVAL_MODE_MASK;
	if (guard)
		mode = guard->mode;
	size_t tsize = 0;
	char canon[SHVAL_TYPE_MAX + 1];
	if (!lock_entry && type &&
	    shval_type_canonical(type, canon, sizeof canon, &tsize) == 0 &&
	    tsize > R_MAX_VALUE)
		return shval__rfail(
			seg, SHVAL_ETOOBIG,
			"value %s: %zu bytes, over the %u bytes a Redis "
			"segment takes",
			name, tsize, R_MAX_VALUE);
	shval__r_enter(rs);
	shval *sh;
	int r = shval__r_shadow(seg, type, lock_entry ? flags : mode,
				lock_entry, init, init_len, &sh);
	if (r) {
		shval__r_leave(rs);
		return r;
	}
	struct rargs a;
	redisReply *rep;
	shval__ra_fcall(&a, rs, "shval1_create", true);
	ra_add(&a, name);
	ra_add(&a, lock_entry ? "l" : "v");
	ra_add(&a, lock_entry ? "lock" : sh->type->canon);
	shval__ra_fmt(&a, "%u", lock_entry ? (flags & SHVAL_MODE_MASK) : mode);
	ra_bin(&a, lock_entry ? "" : (const char *)sh->data,
	       lock_entry ? 0 : sh->size);
	ra_add(&a, guard ? guard->r->name : "");
	ra_add(&a, guard ? guard->r->serial : "");
	r = shval__r_run(seg, &a, &rep);
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
				    : shval__rfail(seg, SHVAL_EEXIST,
						   "a value named %s exists",
						   name);
		else if (is(rep, "NOSEG"))
			r = shval__rfail(
				seg, SHVAL_ESTALE,
				"the segment was removed from the server");
		else if (is(rep, "FOREIGNKEY"))
			r = shval__rfail(seg, SHVAL_ECORRUPT,
					 "%s:v:%s is a %s, not shval's hash",
					 rs->prefix, name, el(rep, 1, NULL));
		else if (is(rep, "NOGUARD"))
			r = shval__rfail(seg, SHVAL_ESTALE,
					 "the lock %s was removed",
					 guard ? guard->r->name : "");
		else
			r = shval__rfail(seg, SHVAL_ECORRUPT,
					 "unexpected reply");
		freeReplyObject(rep);
	}
	if (sh)
		r_shadow_drop(seg, sh);
	if (r == 1)
		r = r_find_locked(seg, name, lock_entry ? NULL : type,
				  lock_entry ? (flags & SHVAL_MODE_MASK) : mode,
				  true, out);
	shval__r_leave(rs);
	return r;
}

int shval__r_remove(shval_seg *seg, const char *name)
{
	struct shval__rseg *rs = seg->rs;
	size_t n;
	if (!name_ok(name, &n))
		return shval__rfail(seg, SHVAL_EBADNAME, "invalid value name");
	if (seg->flags & SHVAL_RDONLY)
		return shval__rfail(seg, SHVAL_ERDONLY,
				    "segment opened read-only");
	/* As local removal: wait (at most 1 s) for a section to end. */
	uint64_t deadline = shval__now_ns() + SHVAL_SEC;
	redisContext *bc = NULL;
	int r;
	for (;;) {
		shval__r_enter(rs);
		struct rargs a;
		redisReply *rep;
		shval__ra_fcall(&a, rs, "shval1_remove", true);
		ra_add(&a, name);
		ra_add(&a, shval__now_ns() >= deadline ? "1" : "0");
		r = shval__r_run(seg, &a, &rep);
		char id[64] = "";
		if (!r) {
			if (is(rep, "OK"))
				r = 0;
			else if (is(rep, "NOTFOUND"))
				r = shval__rfail(seg, SHVAL_ENOTFOUND,
						 "no value named %s", name);
			else if (is(rep, "INUSE"))
				r = shval__rfail(
					seg, SHVAL_EMISUSE,
					"lock %s still guards %s values", name,
					el(rep, 1, NULL));
			else
				r = shval__r_busy(seg, rep, id, NULL);
			freeReplyObject(rep);
		}
		shval__r_leave(rs);
		if (r != 1)
			break;
		r = shval__r_block_until(seg, &bc, id, ms_until(deadline) + 1,
					 deadline);
		if (r)
			break;
	}
	if (bc)
		redisFree(bc);
	return r;
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
	return shval__rfail(v->seg, SHVAL_EMODE,
			    "value %s: shval_touch() announces changes made "
			    "through shval_data(), which Redis values have not",
			    v->r->name);
}

int shval__r_info(shval *v, struct shval_info *info)
{
	uint64_t ver;
	int r = shval__r_peek(v, &ver, NULL, 0, NULL);
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

/* ---- listing ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int shval__r_seg_next(shval_seg *seg, uint64_t *cursor, const char *prefix,
		      struct shval_info *info)
{
	struct shval__rseg *rs = seg->rs;
	int r = 0;
	shval__r_enter(rs);
	if (*cursor == 0) { /* a new listing: a snapshot of the names */
		char k[220];
		snprintf(k, sizeof k, "%s:dir", rs->prefix);
		const char *argv[] = { "HKEYS", k };
		redisReply *rep;
		r = shval__r_cmd(seg, &rep, 2, argv, NULL);
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
		shval__r_leave(rs);
		r = shval__r_info(v, info);
		shval__r_close(v);
		shval__r_enter(rs);
		if (r == SHVAL_ESTALE) {
			r = 0;
			continue;
		}
		break;
	}
	shval__r_leave(rs);
	return r;
}
