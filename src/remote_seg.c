/*
 * src/remote_seg.c — Redis segments' handles (the design: src/remote.h).
 * Not API.  Segment names (the redis:// and redis+unix:// URLs), open
 * (create, the foreign-keys check), close, unlink (the segment's keys,
 * header first) and shval_seg_info.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remote.h"

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
		shval__r_held_clear(rs);
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

void shval__r_seg_unref(shval_seg *seg)
{
	if (atomic_fetch_sub(&seg->refs, 1) == 1)
		r_seg_free(seg);
}

static int r_seg_new(const char *name, unsigned flags, shval_seg **out)
{
	shval_seg *seg = calloc(1, sizeof *seg);
	if (seg && !(seg->rs = calloc(1, sizeof *seg->rs))) {
		free(seg);
		seg = NULL;
	}
	if (!seg)
		return shval__failf(NULL, -ENOMEM, "out of memory");
	struct shval__rseg *rs = seg->rs;
	seg->fd = -1;
	seg->kind = SHVAL__SEG_REDIS;
	seg->flags = flags;
	seg->attach_slot = -1;
	atomic_init(&seg->refs, 1);
	snprintf(seg->name, sizeof seg->name, "%s", name);
	pthread_mutex_init(&rs->mu, NULL);
	pthread_cond_init(&rs->renew_cv, NULL);
	shval__r_fork_init(rs);
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

/* One step of SCAN cursor MATCH pat: 0 with the reply (its element 1 the
 * keys; cursor set to the next step's, "0" at the end), or the code. */
static int r_scan(shval_seg *seg, const char *pat, char cursor[32],
		  redisReply **out)
{
	const char *argv[] = { "SCAN", cursor, "MATCH", pat, "COUNT", "1000" };
	redisReply *rep;
	int r = shval__r_cmd(seg, &rep, 6, argv, NULL);
	if (r)
		return r;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2)
		return shval__r_bad_reply(seg, rep, "SCAN");
	snprintf(cursor, 32, "%s", el(rep, 0, NULL));
	*out = rep;
	return 0;
}

/* shval1_segopen without creating (header checks only). */
static int r_segprobe(shval_seg *seg, redisReply **out)
{
	struct rargs a;
	shval__ra_fcall(&a, seg->rs, "shval1_segopen", false);
	ra_add(&a, "0");
	ra_add(&a, "0");
	ra_add(&a, "0");
	ra_add(&a, "0");
	return shval__r_run(seg, &a, out);
}

/* Does the prefix hold keys that are not a segment's? (before a create) */
static int r_foreign_keys(shval_seg *seg, bool *found)
{
	struct shval__rseg *rs = seg->rs;
	char pat[220], cursor[32] = "0";
	snprintf(pat, sizeof pat, "%s:*", rs->prefix);
	*found = false;
	do {
		redisReply *rep;
		int r = r_scan(seg, pat, cursor, &rep);
		if (r)
			return r;
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
	shval__r_enter(rs);
	struct rargs a;
	redisReply *rep = NULL;
	bool foreign = false;
	/* Keys under the prefix but no segment header: foreign, unless the
	 * header appeared meanwhile (another process's create, one server
	 * call, won a race with this one: its keys are no foreign keys). */
	for (int probe = 0; (flags & SHVAL_CREATE) && probe < 2; probe++) {
		r = r_segprobe(seg, &rep);
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
		r = shval__rfail(seg, -EEXIST,
				 "the prefix holds keys that are not a shval "
				 "segment's: choose another prefix");
	if (!r) {
		shval__ra_fcall(&a, rs, "shval1_segopen", false);
		ra_add(&a, (flags & SHVAL_CREATE) ? "1" : "0");
		ra_add(&a, (flags & SHVAL_EXCL) ? "1" : "0");
		shval__ra_fmt(&a, "%lld", (long long)time(NULL));
		shval__ra_fmt(&a, "%d", (int)getpid());
		r = shval__r_run(seg, &a, &rep);
	}
	if (!r) {
		if (is(rep, "NOSEG"))
			r = shval__rfail(seg, -ENOENT,
					 "segment does not exist");
		else if (is(rep, "EXISTS"))
			r = shval__rfail(seg, -EEXIST,
					 "segment already exists (SHVAL_EXCL)");
		else if (is(rep, "FOREIGN"))
			r = shval__rfail(
				seg, SHVAL_EVERSION,
				"%s:seg is not a shval segment's header (or "
				"another format version)",
				rs->prefix);
		else if (!is(rep, "OK"))
			r = shval__rfail(seg, SHVAL_ECORRUPT,
					 "unexpected reply");
		freeReplyObject(rep);
	}
	if (!r) {
		r = shval_seg_open(NULL, SHVAL_CREATE, NULL, &rs->shadow);
		if (r)
			r = shval__rfail(seg, r, "shadow segment: %s",
					 shval_errmsg(NULL));
	}
	shval__r_leave(rs);
	if (r)
		return open_fail(seg, r);
	*out = seg;
	return 0;
}

int shval__r_seg_close(shval_seg *seg)
{
	seg->user_closed = true;
	shval__r_seg_unref(seg);
	return 0;
}

int shval__r_seg_unlink(const char *name)
{
	shval_seg *seg;
	int r = r_seg_new(name, 0, &seg);
	if (r)
		return r;
	struct shval__rseg *rs = seg->rs;
	shval__r_enter(rs);
	redisReply *rep;
	r = r_segprobe(seg, &rep);
	if (!r) {
		if (is(rep, "NOSEG"))
			r = shval__rfail(seg, -ENOENT,
					 "segment does not exist");
		else if (is(rep, "FOREIGN"))
			r = shval__rfail(seg, SHVAL_EVERSION,
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
			if ((r = r_scan(seg, pat, cursor, &rep)) != 0)
				break;
			redisReply *keys = rep->element[1];
			for (size_t i = 0; !r && i < keys->elements; i++) {
				struct rargs d;
				redisReply *dr;
				ra_init(&d);
				ra_add(&d, "UNLINK");
				ra_bin(&d, keys->element[i]->str,
				       keys->element[i]->len);
				r = shval__r_run(seg, &d, &dr);
				if (!r)
					freeReplyObject(dr);
			}
			freeReplyObject(rep);
		} while (!r && strcmp(cursor, "0") != 0);
	}
	shval__r_leave(rs);
	if (r)
		return open_fail(seg, r);
	r_seg_free(seg);
	return 0;
}

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
	int r = shval__r_cmd(seg, &names, 2, hk, NULL);
	if (r)
		return r;
	if (names->type != REDIS_REPLY_ARRAY)
		return shval__r_bad_reply(seg, names, "HKEYS");
	static const char *const fixed[] = { "seg", "dir", "ev" };
	size_t nkeys = 3 + names->elements;
	bool refused = false;
	*used = 0;
	for (size_t base = 0; !r && base < nkeys; base += 512) {
		size_t end = base + 512 < nkeys ? base + 512 : nkeys;
		if ((r = shval__r_ensure(seg)) != 0)
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
			if (shval__r_append(rs->c, 5, argv, NULL) != 0) {
				r = shval__rfail(seg, -ENOMEM, "out of memory");
				break;
			}
		}
		for (size_t i = base; !r && i < end; i++) {
			void *rep;
			if (redisGetReply(rs->c, &rep) != REDIS_OK) {
				r = shval__rfail(seg, -ECONNRESET,
						 "connection lost: %s",
						 rs->c->errstr);
				shval__r_lost(rs);
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
	shval__r_enter(rs);
	redisReply *rep;
	char k[220];
	snprintf(k, sizeof k, "%s:seg", rs->prefix);
	const char *hm[] = { "HMGET", k, "magic", "created", "pid" };
	int r = shval__r_cmd(seg, &rep, 5, hm, NULL);
	if (!r) {
		if (!el(rep, 0, NULL)[0])
			r = shval__rfail(seg, -ENOENT,
					 "the segment was removed");
		info->format_major = 1;
		info->created = strtoll(el(rep, 1, NULL), NULL, 10);
		info->creator_pid = (pid_t)strtol(el(rep, 2, NULL), NULL, 10);
		freeReplyObject(rep);
	}
	if (!r) {
		snprintf(k, sizeof k, "%s:dir", rs->prefix);
		const char *hl[] = { "HLEN", k };
		r = shval__r_cmd(seg, &rep, 2, hl, NULL);
		if (!r) {
			info->nvalues = (uint64_t)rep->integer;
			freeReplyObject(rep);
		}
	}
	if (!r)
		r = r_usage(seg, &info->used);
	info->size = info->used;
	info->owner = getuid();
	shval__r_leave(rs);
	char id[64];
	if (!r)
		r = shval__r_segpeek(seg, &info->version, id, sizeof id, false);
	return r;
}
