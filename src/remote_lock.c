/*
 * src/remote_lock.c — Redis segments' locks (the design: src/remote.h).
 * Not API.  A lock is a lease (shval1_lock: SET NX PX holding a fencing
 * token), renewed every lease/3 by a thread of the process (r_renewer)
 * while it holds any; a thread's sections (struct rheld) keep the staged
 * copies of the values written in them (struct rstage), applied at the
 * outermost unlock by one shval1_commit that checks the token.  Every
 * function here expects rs->mu held unless it takes it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remote.h"

/* ---- sections: held locks and their staged values ---- */

static void stage_free(struct rstage *s)
{
	free(s->data);
	free(s);
}

static void held_free(struct rheld *h)
{
	while (h->st) {
		struct rstage *s = h->st;
		h->st = s->next;
		stage_free(s);
	}
	free(h);
}

static void held_drop(struct shval__rseg *rs, struct rheld *h)
{
	for (struct rheld **pp = &rs->held; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	held_free(h);
}

void shval__r_held_clear(struct shval__rseg *rs)
{
	while (rs->held) {
		struct rheld *h = rs->held;
		rs->held = h->next;
		held_free(h);
	}
}

struct rheld *shval__r_held_find(struct shval__rseg *rs, const char *lock)
{
	pid_t tid = gettid();
	for (struct rheld *h = rs->held; h; h = h->next)
		if (h->tid == tid && strcmp(h->lock, lock) == 0)
			return h;
	return NULL;
}

/* The staged copy of v in the section h (loaded on first use). */
int shval__r_stage_get(shval *v, struct rheld *h, bool need_old,
		       struct rstage **out)
{
	struct shval__rval *rv = v->r;
	struct rstage *s;
	for (s = h->st; s; s = s->next)
		if (strcmp(s->name, rv->name) == 0 &&
		    strcmp(s->serial, rv->serial) == 0)
			break;
	if (!s) {
		s = calloc(1, sizeof *s);
		if (s)
			s->data = calloc(1, v->size ? v->size : 1);
		if (!s || !s->data) {
			free(s);
			return shval__rfail(v->seg, -ENOMEM, "out of memory");
		}
		snprintf(s->name, sizeof s->name, "%s", rv->name);
		snprintf(s->serial, sizeof s->serial, "%s", rv->serial);
		s->size = v->size;
		s->next = h->st;
		h->st = s;
	}
	if (need_old && !s->loaded) {
		/* (a stage left unloaded by a failed whole write is neither
		 * dirty nor loaded: fetched here, before any other use) */
		int r = shval__r_fetch(v, NULL, s->data);
		if (r)
			return r;
		s->loaded = true;
	}
	*out = s;
	return 0;
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
			if (!c && shval__r_connect(seg, &c) != 0)
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

/* This thread took the lease of lock (the entry of that serial; fencing
 * token token): its section, and the renewal thread if there is none
 * (rs->mu held). */
static int held_add(shval_seg *seg, const char *lock, const char *serial,
		    const char *ver, const char *token)
{
	struct shval__rseg *rs = seg->rs;
	struct rheld *nh = calloc(1, sizeof *nh);
	if (!nh)
		return shval__rfail(seg, -ENOMEM, "out of memory");
	snprintf(nh->lock, sizeof nh->lock, "%s", lock);
	snprintf(nh->serial, sizeof nh->serial, "%s", serial);
	snprintf(nh->ver, sizeof nh->ver, "%s", ver);
	snprintf(nh->token, sizeof nh->token, "%s", token);
	nh->tid = gettid();
	nh->depth = 1;
	nh->next = rs->held;
	rs->held = nh;
	if (!rs->renew_on &&
	    pthread_create(&rs->renewer, NULL, r_renewer, seg) == 0)
		rs->renew_on = true;
	return 0;
}

/* A raw or atomic value has no lock: SHVAL_EMODE. */
static int r_has_lock(shval *v)
{
	if (v->r->lock[0])
		return 0;
	return shval__rfail(v->seg, SHVAL_EMODE,
			    "value %s has no lock (raw or atomic mode)",
			    v->r->name);
}

/* A lock on a value's own lock asks for the value's bytes (shval1_lock's
 * want) up to this size: the section's first read, or the old bytes of an
 * add or a partial write, then needs no fetch of its own (one round trip
 * fewer: `lock; get; set; unlock` is two).  Larger values fetch on first
 * use, as values under a shared lock do. */
#define LOCK_DATA_MAX 4096

/* The lease on v's own lock was just taken (rs->held's head is its
 * section) and rep carries v's committed bytes: the section's staged copy
 * of v, loaded.  Nothing if the bytes are not v's size (then the first use
 * fetches, as without them). */
static void stage_preload(shval *v, const redisReply *rep)
{
	struct shval__rseg *rs = v->seg->rs;
	size_t len;
	const char *b = el(rep, 4, &len);
	struct rstage *s;
	if (len != v->size || !len || !rs->held ||
	    shval__r_stage_get(v, rs->held, false, &s) != 0)
		return;
	memcpy(s->data, b, len);
	s->loaded = true;
}

/* shval_lock / trylock / timedlock: deadline UINT64_MAX waits forever, 0
 * does not wait. */
int shval__r_lock(shval *v, int64_t timeout_ns, bool try)
{
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	struct shval__rval *rv = v->r;
	int r = r_has_lock(v);
	if (r)
		return r;
	if (seg->flags & SHVAL_RDONLY)
		return shval__rfail(seg, SHVAL_ERDONLY,
				    "segment opened read-only");
	uint64_t deadline = try ? 0 : deadline_of(timeout_ns);
	redisContext *bc = NULL;
	char lock_serial[24];
	shval__r_enter(rs);
	struct rheld *h = shval__r_held_find(rs, rv->lock);
	if (h) {
		r = 0;
		if ((v->mode & SHVAL_MODE_MASK) == SHVAL_LOCK)
			r = shval__rfail(
				seg, SHVAL_EMISUSE,
				"lock %s is already held by this thread "
				"(SHVAL_LOCK is not recursive)",
				rv->lock);
		else
			h->depth++;
		shval__r_leave(rs);
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
		r = shval__r_cmd(seg, &rep, 3, argv, NULL);
		if (r) {
			shval__r_leave(rs);
			return r;
		}
		snprintf(lock_serial, sizeof lock_serial, "%s",
			 rep->type == REDIS_REPLY_STRING ? rep->str : "");
		freeReplyObject(rep);
	}
	shval__r_leave(rs);
	/* the value's own lock: its bytes come with the lease (small values) */
	bool want = strcmp(rv->lock, rv->name) == 0 &&
		    v->kind != SHVAL_KIND_LOCK && v->size <= LOCK_DATA_MAX;
	for (;;) {
		struct rargs a;
		redisReply *rep;
		char id[64];
		long long pttl = 10;
		shval__r_enter(rs);
		shval__ra_fcall(&a, rs, "shval1_lock", true);
		ra_add(&a, rv->lock);
		ra_add(&a, lock_serial);
		shval__ra_fmt(&a, "%lld", (long long)rs->lease_ms);
		ra_add(&a, want ? "1" : "0");
		r = shval__r_run(seg, &a, &rep);
		if (!r) {
			if (is(rep, "OK")) {
				r = held_add(seg, rv->lock, lock_serial,
					     el(rep, 3, NULL),
					     el(rep, 1, NULL));
				if (!r && want)
					stage_preload(v, rep);
				if (!r && strcmp(el(rep, 2, NULL), "1") == 0)
					r = shval__rfail(
						seg, SHVAL_EOWNERDEAD,
						"lock %s: the previous owner's "
						"lease expired in a section; "
						"its changes were not applied",
						rv->lock);
			} else if (is(rep, "STALE"))
				r = shval__rfail(seg, SHVAL_ESTALE,
						 "value %s was removed",
						 rv->lock);
			else
				r = shval__r_busy(seg, rep, id, &pttl);
			freeReplyObject(rep);
		}
		shval__r_leave(rs);
		if (r != 1)
			break;
		int64_t ms = ms_until(deadline);
		if (try || ms <= 0) {
			r = try ? shval__rfail(seg, -EBUSY, "lock %s is held",
					       rv->lock)
				: shval__rfail(seg, -ETIMEDOUT,
					       "lock %s: timed out", rv->lock);
			break;
		}
		if (pttl > 0 && pttl + 1 < ms)
			ms = pttl + 1;
		if ((r = shval__r_block_until(seg, &bc, id, ms, deadline)) != 0)
			break;
	}
	if (bc)
		redisFree(bc);
	return r;
}

/* Is h a section on rv's own lock, taken on this very entry (the same
 * serial), whose version at the lease is known?  Then no other change of
 * the value can land while the lease is held: the lease's version is the
 * committed one, and a commit that changed the value makes it one more. */
static bool own_lease(const struct shval__rval *rv, const struct rheld *h)
{
	return strcmp(h->lock, rv->name) == 0 &&
	       strcmp(h->serial, rv->serial) == 0 && h->ver[0];
}

/* The version the commit of section h gave v, if own_lease and it changed
 * v; else 0. */
static uint64_t committed_version(shval *v, const struct rheld *h)
{
	struct shval__rval *rv = v->r;
	if (!own_lease(rv, h))
		return 0;
	for (const struct rstage *s = h->st; s; s = s->next)
		if (s->dirty && strcmp(s->name, rv->name) == 0 &&
		    strcmp(s->serial, rv->serial) == 0)
			return strtoull(h->ver, NULL, 10) + 1;
	return 0;
}

/* Inside this thread's section on v's own lock (own_lease): v's committed
 * version without asking, the lease's (not after a renewal found the
 * lease lost).  false: not in such a section, or the version is unknown. */
bool shval__r_section_version(shval *v, uint64_t *ver)
{
	struct shval__rseg *rs = v->seg->rs;
	struct shval__rval *rv = v->r;
	bool ok = false;
	if (!rv->lock[0] || strcmp(rv->lock, rv->name) != 0)
		return false;
	shval__r_enter(rs);
	const struct rheld *h = shval__r_held_find(rs, rv->lock);
	if (h && own_lease(rv, h) && !h->lost) {
		*ver = strtoull(h->ver, NULL, 10);
		ok = true;
	}
	shval__r_leave(rs);
	return ok;
}

SHVAL_API uint64_t shval__r_committed(shval *v)
{
	if (!SHVAL__REMOTE(v))
		return 0;
	struct shval__rseg *rs = v->seg->rs;
	shval__r_enter(rs);
	uint64_t c = v->r->committed;
	v->r->committed = 0;
	shval__r_leave(rs);
	return c;
}

int shval__r_unlock(shval *v)
{
	int r = r_has_lock(v);
	if (r)
		return r;
	shval_seg *seg = v->seg;
	struct shval__rseg *rs = seg->rs;
	struct shval__rval *rv = v->r;
	shval__r_enter(rs);
	struct rheld *h = shval__r_held_find(rs, rv->lock);
	if (!h) {
		shval__r_leave(rs);
		return shval__rfail(
			seg, SHVAL_ENOTOWNER,
			"unlock of a lock this thread does not hold");
	}
	if (--h->depth > 0) {
		shval__r_leave(rs);
		return 0;
	}
	rv->committed = 0; /* set below if the commit changes v */
	/* One call: every staged value, if the lease is still ours. */
	size_t n = 0;
	for (struct rstage *s = h->st; s; s = s->next)
		n += s->dirty;
	const char **argv = calloc(8 + 3 * n, sizeof *argv);
	size_t *lens = calloc(8 + 3 * n, sizeof *lens);
	if (!argv || !lens)
		r = shval__rfail(seg, -ENOMEM, "out of memory");
	else {
		struct rargs a;
		shval__ra_fcall(&a, rs, "shval1_commit", true);
		ra_add(&a, h->lock);
		ra_add(&a, h->token);
		shval__ra_fmt(&a, "%zu", n);
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
		r = shval__r_cmd(seg, &rep, argc, argv, lens);
		if (!r) {
			if (is(rep, "OK")) {
				r = 0;
				rv->committed = committed_version(v, h);
			} else if (is(rep, "LOST"))
				r = shval__rfail(
					seg, SHVAL_ENOTOWNER,
					"lock %s: the lease expired before "
					"the unlock (the owner was paused "
					"or cut off for over %lld ms); the "
					"section's changes were not applied",
					h->lock, (long long)rs->lease_ms);
			else if (is(rep, "STALE"))
				r = shval__rfail(
					seg, SHVAL_ESTALE,
					"value %s was removed during the "
					"section; nothing was applied",
					el(rep, 1, NULL));
			else
				r = shval__rfail(
					seg, SHVAL_ECORRUPT,
					"unexpected reply to a commit");
			freeReplyObject(rep);
		}
	}
	free(argv);
	free(lens);
	/* the caller's handles' caches may be older than the commit */
	rv->cvalid = false;
	held_drop(rs, h);
	shval__r_leave(rs);
	return r;
}
