/*
 * src/internal.h — process-local structures and cross-file internals
 * (shval__ prefix).  Not API.  Declarations are grouped by the file that
 * defines them (src/README.md is the map); a function used by one file
 * only is static there (the build's -Wmissing-prototypes keeps this so).
 */
#ifndef SHVAL_INTERNAL_H
#define SHVAL_INTERNAL_H

#include <shval.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "format.h"
#include "type.h"

/* What a segment handle is backed by (struct shval_seg.kind). */
#define SHVAL__SEG_ANON 0  /* a memfd, no name */
#define SHVAL__SEG_SHM 1   /* /dev/shm/NAME */
#define SHVAL__SEG_FILE 2  /* file:PATH */
#define SHVAL__SEG_REDIS 3 /* redis://, redis+unix:// (remote_*.c) */

/* Room for a segment's name or path, and for any path built from one
 * (the directory, a temporary name beside it): a path is shorter than
 * PATH_MAX, and "file:" or "/.shvaltmp.PID.TIME" fit in the rest. */
#define SHVAL__PATH_MAX (4096 + 64)

/* A process-local segment handle.  Reference counted: the user's reference
 * plus one per value handle, so closing in any order is safe (the binding
 * closes from GC).  The mapping is released with the last reference. */
struct shval_seg {
	int fd;
	unsigned char *base;    /* mapping of map_len bytes */
	uint64_t map_len;       /* = header max_size */
	_Atomic uint64_t valid; /* bytes known backed (fstat), <= map_len */
	shval__hdr *hdr;
	unsigned flags;             /* open flags */
	int kind;                   /* SHVAL__SEG_* */
	char name[SHVAL__PATH_MAX]; /* as given ("/x", "file:p"), "" anon */
	char path[SHVAL__PATH_MAX]; /* file path, "" for anon */
	dev_t dev;                  /* the segment file's identity (fstat): */
	ino_t ino;                  /*   /proc/PID/maps tells who maps it */
	uint64_t fid;               /* dev and ino in one word: keys a thread's
	                               held locks (lock.c) */
	int attach_slot;            /* -1 if not attached */
	pid_t attach_pid;           /* process that holds attach_slot */
	_Atomic int refs;
	bool user_closed;
	struct shval_seg *next_open; /* process list, for fork re-attach */
	/* Parsed types of this segment's type records, by record line, so
	 * that finding a value does not parse its type again.  Entries live
	 * until the segment handle goes; guarded by type_lock. */
	pthread_mutex_t type_lock;
	struct shval__tcache *_Atomic types[64]; /* by record line */
	struct shval__tcache *_Atomic texts[64]; /* by type text given */
	unsigned ntexts;                         /* under type_lock */
	struct shval__rseg *rs; /* SHVAL__SEG_REDIS only (remote.h) */
};

/* A cache entry; immutable once published (release store of the bucket
 * head, under type_lock; lookups walk the lists without the lock,
 * acquire).  Entries are freed only with the segment handle. */
struct shval__tcache {
	uint32_t line;
	shval__type *type;
	char *text; /* texts[] only: the string as given */
	struct shval__tcache *next;
};

/* A value handle.  It starts with the public header's struct
 * shval__fast, which the inline fast paths read (set in handle.c). */
struct shval {
	struct shval__fast fast;
	shval_seg *seg;
	uint64_t off; /* entry offset */
	uint64_t serial;
	shval__entry *e;
	struct shval__rval *r; /* a Redis value (remote.h), else NULL: beside
	                          e, in the cache line every call reads */
	unsigned char *data;
	unsigned char *undo; /* NULL if none */
	shval__lockblk *lk;  /* NULL for raw / atomic */
	shval__type *type;   /* owned by seg's type cache, except
	                               for lock handles (type_owned) */
	bool type_owned;
	bool needs_check; /* type has bool or string bytes */
	bool int64;       /* an 8-byte integer scalar (q l n Q L N) */
	bool fast_add;    /* int64, atomic, writable */
	char fast_add32;  /* a 4-byte integer ('i', 'I'), atomic,
	                               writable: 's' signed, 'u' unsigned;
	                               else 0 */
	bool own_lock;    /* lk is in the value's own entry */
	bool fast_sec;    /* own lock, writable: section.h's fast
	                               path applies */
	unsigned mode;    /* SHVAL_RLOCK .. SHVAL_ATOMIC */
	unsigned kind;    /* SHVAL_KIND_* */
	size_t size;
};

/* A handle or segment of a Redis segment: the public functions hand it to
 * the remote_*.c files before anything else (never on the inline fast
 * paths: a remote handle's fast.flags is 0, so they call the functions). */
#define SHVAL__REMOTE(v) __builtin_expect((v) != NULL && (v)->r != NULL, 0)
#define SHVAL__RSEG(seg) \
	__builtin_expect((seg) != NULL && (seg)->kind == SHVAL__SEG_REDIS, 0)

/* ---- batch.c (shval_batch_*); remote_batch.c runs a Redis segment's ---- */
enum shval__bop_kind {
	SHVAL__B_READ,
	SHVAL__B_WRITE,
	SHVAL__B_GET_I64,
	SHVAL__B_SET_I64,
	SHVAL__B_ADD_I64,
	SHVAL__B_GET_F64,
	SHVAL__B_SET_F64,
	SHVAL__B_ADD_F64,
};
struct shval__bop {
	enum shval__bop_kind kind;
	shval *v;
	void *out;         /* read: buf; get: out; add: result (or NULL) */
	size_t len;        /* read: cap; write: len */
	unsigned char *in; /* write: the caller's bytes, copied */
	int64_t i;
	double d;
	int *rc;
	int res; /* the result (run) */
};
struct shval_batch {
	shval_seg *seg;
	struct shval__bop *ops;
	size_t n, cap;
	size_t first;        /* run: the first failed op (n if none) */
	char first_msg[512]; /* and its message */
};
/* Record op i's result (and its message from shval_errmsg(b->seg) if it
 * is the first failure so far). */
void shval__bop_done(struct shval_batch *b, size_t i, int res);
/* Perform b's operations on a Redis segment (shval__bop_done each). */
void shval__r_batch_run(struct shval_batch *b);

/* ---- error.c ---- */
/* Record a one-line message for seg (NULL: for shval_errmsg(NULL)) in this
 * thread, and return code.  Usage: return shval__failf(seg, code, "...") */
int shval__failf(const shval_seg *seg, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void shval__clear_err(const shval_seg *seg);

/* ---- seg.c (segments: open, create, map, close; the segment lock) ---- */
/* Is [off, off+len) inside the backed part of the segment?  Refreshes the
 * known size with fstat when needed. */
bool shval__in_slow(shval_seg *seg, uint64_t off, uint64_t len);
static inline bool shval__in(shval_seg *seg, uint64_t off, uint64_t len)
{
	/* relaxed: valid is a process-local cache of the file size; a stale
	 * (smaller) value only sends us to fstat in shval__in_slow(). */
	uint64_t v = atomic_load_explicit(&seg->valid, memory_order_relaxed);
	if (off <= v && len <= v - off)
		return true;
	return shval__in_slow(seg, off, len);
}
static inline void *shval__at(shval_seg *seg, uint64_t off)
{
	return seg->base + off;
}
int shval__seg_lock(shval_seg *seg); /* 0 or -errno; recovers owner death */
void shval__seg_unlock(shval_seg *seg);
void shval__seg_ref(shval_seg *seg);
void shval__seg_unref(shval_seg *seg);
/* Bump the segment-wide version, waking waiters if any (creates,
 * removes). */
void shval__seg_bump(shval_seg *seg);
/* After a value change: bump only if a watcher announced itself. */
void shval__seg_notify(shval_seg *seg);
uint64_t shval__now_ns(void); /* CLOCK_MONOTONIC */
/* Cheap consistency of the header's sizes and counters, without the
 * segment lock: NULL, or what is wrong (shval_seg_info, verify.c). */
const char *shval__hdr_check(shval_seg *seg);

/* ---- segfile.c (segment names and the files under them) ---- */
struct stat;
/* name -> kind (SHVAL__SEG_*) and path (cap bytes); NULL is anonymous. */
int shval__seg_parse_name(const char *name, int *kind, char *path, size_t cap);
/* A file: path leads through no directory someone else controls
 * (SHVAL_EFOREIGN otherwise). */
int shval__seg_check_dirs(const char *name, const char *path);
/* The file of a new named segment, unnamed (O_TMPFILE) in *fd; in tmp a
 * temporary name to remove after linking, where O_TMPFILE is missing. */
int shval__seg_create_unnamed(const char *path, unsigned mode, int *fd,
			      char *tmp, size_t tmpcap);
/* Link the file made by shval__seg_create_unnamed under path (-EEXIST
 * when another process was first). */
int shval__seg_give_name(int fd, const char *tmp, const char *path);
const char *shval__file_kind(mode_t m); /* "FIFO", "directory", ... */
/* A sparse copy's holes: backed for a writable open, checked for room on
 * tmpfs for a read-only one. */
int shval__seg_back_whole(shval_seg *seg, const struct stat *st);
int shval__seg_holes_readable(shval_seg *seg, const struct stat *st);

/* ---- attach.c (attach table, open-segment list for fork) ---- */
/* Claim a free attach slot for this process (lock-free); -1 if full. */
int shval__attach_claim(shval_seg *seg);
/* The same under the segment lock: when the table is full, first free the
 * slots of dead processes (a non-TEMP segment's killed users would
 * otherwise fill it for good). */
int shval__attach_claim_reaping(shval_seg *seg);
/* Free the slots of dead processes (not ours), calling fn (may be NULL)
 * with each pid; the number freed.  Under the segment lock. */
unsigned shval__attach_reap(shval_seg *seg, void (*fn)(pid_t, void *),
			    void *arg);
/* A temporary segment whose processes all died (frees their slots)?
 * Under the segment lock. */
bool shval__temp_orphaned(shval_seg *seg);
/* Release this process's slot (its pins first) and remove a temporary
 * segment left without processes.  Under the segment lock. */
void shval__attach_release(shval_seg *seg);
/* Slots in use, and how many of them belong to live processes. */
void shval__attach_count(shval_seg *seg, unsigned *attached, unsigned *alive);
/* getpid(), cached per process (reset in a forked child). */
pid_t shval__pid(void);
/* The process's open segments, which a forked child re-attaches. */
void shval__open_list_add(shval_seg *seg);
void shval__open_list_del(shval_seg *seg);

/* ---- proc.c (other processes, from /proc; doubt counts as alive) ---- */
uint64_t shval__proc_start_time(pid_t pid); /* 0 if unknown */
/* Is pid the live process that started at start_time (0: unknown)? */
bool shval__proc_alive(pid_t pid, uint64_t start_time);
/* The process of thread tid: > 0, 0 when unknown, -1 if gone/zombie. */
pid_t shval__tid_process(pid_t tid);
/* Does process pid map the file dev/ino?  true when it cannot be told. */
bool shval__proc_maps(pid_t pid, dev_t dev, ino_t ino);

/* ---- alloc.c (callers hold the segment lock) ---- */
int shval__alloc(shval_seg *seg, uint64_t nlines, uint64_t *off);
void shval__free(shval_seg *seg, uint64_t off, uint64_t nlines);
/* Put a removed entry's block in limbo (reused after SHVAL__LIMBO_NS). */
void shval__limbo(shval_seg *seg, uint64_t off);

/* ---- pin.c (buffer pins, per attach slot; under the segment lock) ---- */
/* The pin block of attach slot `slot`, validated (bounds, state, cap, its
 * pid is the slot's); NULL if none or damaged. */
shval__pins *shval__pins_at(shval_seg *seg, unsigned slot);
/* Free slot's pin block (before the slot is released or reaped). */
void shval__pins_drop(shval_seg *seg, unsigned slot);
/* Does this process hold pins through seg's attach slot? */
bool shval__pins_held(shval_seg *seg);
/* -EBUSY with a message naming the pinner if a live process pinned the
 * entry at off (named name); a dead pinner's slot is reaped.  0 if none. */
int shval__pins_refuse(shval_seg *seg, const char *name, uint64_t off);

/* ---- dir.c (the name directory) ---- */
uint64_t shval__hash(const char *name, size_t len);
/* Lock-free lookup; *off = entry offset.  0 or SHVAL_ENOTFOUND. */
int shval__dir_find(shval_seg *seg, const char *name, size_t len,
		    uint64_t *off);
/* Under the segment lock: insert/remove the slot of an entry. */
int shval__dir_insert(shval_seg *seg, uint64_t off, uint64_t hash);
int shval__dir_remove(shval_seg *seg, uint64_t off, uint64_t hash);
/* Re-count entries, finish interrupted removals; under the segment lock. */
void shval__dir_recount(shval_seg *seg);
/* The layout rule of an entry's first bytes: returns its lock block's
 * offset in the entry, *data_rel the data's (line_data: the entry has
 * SHVAL__EF_LINEDATA). */
uint64_t shval__entry_layout(uint64_t nlen, bool own_lock, bool lock_entry,
			     bool line_data, uint64_t *data_rel);
/* Validate the entry at off (bounds, layout, header sanity); NULL if
 * damaged. */
shval__entry *shval__entry_at(shval_seg *seg, uint64_t off);
/* Call fn on every entry in the directory (stops at a nonzero return). */
int shval__dir_foreach(shval_seg *seg,
		       int (*fn)(shval_seg *, shval__entry *, void *),
		       void *arg);
/* The directory table at toff, validated (cap a power of two, 16..2^32,
 * inside the file); NULL if damaged. */
_Atomic uint64_t *shval__table_at(shval_seg *seg, uint64_t toff, uint64_t *cap);

/* ---- typerec.c (type records in the segment, parsed-type cache) ---- */
/* Intern a type record; under the segment lock. */
int shval__type_intern(shval_seg *seg, const shval__type *t, uint32_t *line);
/* The canonical type string of an entry, validated; NULL if damaged. */
const char *shval__entry_type(shval_seg *seg, const shval__entry *e,
			      uint64_t *size);
/* The parsed type of the record at line whose text is canon (cached per
 * segment); NULL and a message in err if it does not parse. */
shval__type *shval__seg_type(shval_seg *seg, uint32_t line, const char *canon,
			     char *err, size_t errcap);
/* The parsed type of a type string as a caller gave it, cached per segment
 * (at most 256 texts).  *owned tells whether the caller must free it (not
 * cached).  NULL on error, with *code and a message in err. */
shval__type *shval__seg_type_text(shval_seg *seg, const char *text, bool *owned,
				  char *err, size_t errcap, int *code);
void shval__tcache_free(shval_seg *seg); /* with the segment handle */

/* ---- handle.c (value handles) ---- */
int shval__handle_make(shval_seg *seg, uint64_t off, shval **out);
int shval__fill_info(shval_seg *seg, shval__entry *e, struct shval_info *info);

/* ---- mutex.c (the robust mutex under every lock) ---- */
#define SHVAL__BLOCK 0ull /* deadlines of shval__mutex_acquire */
#define SHVAL__TRY 1ull
int shval__mutex_init(pthread_mutex_t *m); /* robust, pshared; -errno */
/* Kind word damaged, or the lock marked not recoverable? */
bool shval__mutex_damaged(pthread_mutex_t *m);
unsigned shval__mutex_kind(pthread_mutex_t *m); /* for messages */
/* The thread id named by the mutex's futex word (0 = free). */
uint32_t shval__mutex_owner(pthread_mutex_t *m);
/* Take a lock the caller does not hold, recovering stale owners; 0,
 * EOWNERDEAD, EBUSY, ETIMEDOUT (positive), or a negative shval code. */
int shval__mutex_acquire(shval_seg *seg, pthread_mutex_t *m,
			 uint64_t deadline_rt, const char *what);
/* Is the lock's owner dead or stale (needs recovery)?  *tid = owner. */
bool shval__lock_stale(shval_seg *seg, pthread_mutex_t *m, pid_t *tid);
/* Re-initialise a damaged lock nobody live holds (repair); true if done. */
bool shval__lock_reinit(shval_seg *seg, pthread_mutex_t *m);
uint64_t shval__rt_now(void); /* CLOCK_REALTIME in ns (mutex deadlines) */

/* ---- lock.c (sections, ownership, recovery; inline half in section.h) */
extern _Atomic unsigned shval__fork_gen; /* moved by a fork (attach.c) */
int shval__lockblk_init(shval__lockblk *lk);
pid_t shval__my_tid(void);   /* gettid(), cached until a fork */
void shval__me_forked(void); /* mutex.c: the fast path in a fork child */
/* The segment lock was taken (+1) or released (-1): for the lock-order
 * assertion of debug builds (lock.c, LOCK RULES). */
void shval__order_seg(int delta);
bool shval__lock_held(shval *v); /* by this thread (held list) */
int shval__stale(shval *v);      /* SHVAL_ESTALE, with its message */
/* 0, or SHVAL_ESTALE if the handle's value was removed.  acquire: pairs
 * with the release store of REMOVED in shval_remove. */
static inline int shval__check(shval *v)
{
	if (__builtin_expect(
		    atomic_load_explicit(&v->e->serial, memory_order_relaxed) !=
				    v->serial ||
			    atomic_load_explicit(&v->e->state,
						 memory_order_acquire) !=
				    SHVAL__ST_LIVE,
		    0))
		return shval__stale(v);
	return 0;
}

/* ---- value.c (consistent reads, whole values; used by scalar.c) ---- */
/* Copy n bytes at offset off of the value's committed state into buf. */
int shval__read_consistent(shval *v, size_t off, size_t n, void *buf);
/* Replace bytes [off, off+n) of the value with src, as one change; full:
 * the whole value (clears the PARTIAL flag). */
int shval__write_range(shval *v, size_t off, size_t n, const void *src,
		       bool full);
/* 0 if the value may be changed through v; SHVAL_ESTALE, SHVAL_ERDONLY
 * (with the message) if not. */
int shval__check_writable(shval *v);

/* ---- wait.c ---- */
int shval__futex_wait(_Atomic uint64_t *word, uint32_t expect,
		      int64_t deadline_ns);
void shval__futex_wake(_Atomic uint64_t *word);
/* Move the segment version (event count) by add; if a watcher flagged
 * itself, clear the flag and wake the sleepers. */
void shval__version_bump(_Atomic uint64_t *word, uint64_t add);
/* Before a change that moves e's version word (a lock holder's commit, a
 * raw value's bump): take the waiters' flag (tag-waiters).  True if it was
 * set: a waiter flagged itself before the change, and the caller must wake
 * after it (shval__wake_after_commit's took).  Taken before, never cleared
 * after: a flag set once the change is visible belongs to a waiter that
 * saw it and now waits for the next one. */
static inline bool shval__waiters_take(shval__entry *e)
{
	/* Relaxed: the change that follows is a release store or a seq_cst
	 * RMW, which keeps the exchange before it. */
	return atomic_load_explicit(&e->waiters, memory_order_relaxed) &&
	       atomic_exchange_explicit(&e->waiters, 0, memory_order_relaxed);
}
/* A lock holder committed e (version stored) and unlocked: wake e's
 * waiters and the segment's watchers, if any (tag-waiters).  took: what
 * shval__waiters_take() returned before the commit. */
void shval__wake_after_commit(shval_seg *seg, shval__entry *e, bool took);
/* An unlocked change of e.  bump_version: move e's version word (raw
 * values, and shval_touch of an atomic value; the flag is taken here,
 * before the move); otherwise the caller changed the data word, which is
 * the version (atomic values), and only its waiters are woken. */
void shval__wake_after_change(shval_seg *seg, shval__entry *e,
			      bool bump_version);

/* testpoint.c: test-only crash and stop points (SHVAL_TEST_CRASH_AT,
 * SHVAL_TEST_STOP_AT; the steps are listed there). */
void shval__crash_point(const char *step);
void shval__stop_point(const char *step);

/* entry.c: a name being created is printable ASCII or UTF-8 (no C1). */
int shval__check_utf8_name(shval_seg *seg, const char *name, size_t n);

/* ---- remote_*.c (Redis segments; the public functions dispatch here;
 * what the remote files share among themselves is in remote.h) ---- */
/* remote_seg.c */
bool shval__r_is_name(const char *name);
int shval__r_seg_open(const char *name, unsigned flags, shval_seg **out);
int shval__r_seg_close(shval_seg *seg);
int shval__r_seg_unlink(const char *name);
int shval__r_seg_info(shval_seg *seg, struct shval_seg_info *info);
/* remote_value.c */
int shval__r_seg_next(shval_seg *seg, uint64_t *cursor, const char *prefix,
		      struct shval_info *info);
int shval__r_find(shval_seg *seg, const char *name, const char *type,
		  shval **out);
int shval__r_create(shval_seg *seg, const char *name, const char *type,
		    unsigned flags, const void *init, size_t init_len,
		    shval *guard, bool lock_entry, bool or_find, shval **out,
		    bool *created);
int shval__r_remove(shval_seg *seg, const char *name);
void shval__r_close(shval *v);
int shval__r_info(shval *v, struct shval_info *info);
int shval__r_field_info_at(shval *v, size_t idx, shval_field_info *fi);
void *shval__r_data(shval *v);
int shval__r_touch(shval *v);
/* remote_op.c */
int shval__r_read(shval *v, void *buf, size_t cap);
int shval__r_read_version(shval *v, void *buf, size_t cap, uint64_t *version);
int shval__r_write(shval *v, const void *buf, size_t len);
int shval__r_get_str(shval *v, char *buf, size_t cap, size_t *len);
int shval__r_set_str(shval *v, const char *s, size_t len);
int shval__r_array_get(shval *v, size_t index, size_t n, void *buf);
int shval__r_array_set(shval *v, size_t index, size_t n, const void *buf);
int shval__r_field_get(shval *v, const char *field, void *buf, size_t cap,
		       size_t *len);
int shval__r_field_set(shval *v, const char *field, const void *buf,
		       size_t len);
int shval__r_to_text(shval *v, unsigned flags, char *buf, size_t cap,
		     size_t *len);
int shval__r_from_text(shval *v, int argc, const char *const *argv);
int shval__r_get_i64(shval *v, int64_t *out);
int shval__r_get_u64(shval *v, uint64_t *out);
int shval__r_get_f64(shval *v, double *out);
int shval__r_set_i64(shval *v, int64_t x);
int shval__r_set_u64(shval *v, uint64_t x);
int shval__r_set_f64(shval *v, double x);
int shval__r_add_i64(shval *v, int64_t delta, int64_t *result);
int shval__r_sub_i64(shval *v, int64_t delta, int64_t *result);
int shval__r_add_f64(shval *v, double delta, double *result);
int shval__r_bitop(shval *v, int which, uint64_t mask, uint64_t *old);
int shval__r_exchange_i64(shval *v, int64_t x, int64_t *old);
int shval__r_cas_i64(shval *v, int64_t *expected, int64_t desired);
int shval__r_cas_f64(shval *v, double *expected, double desired);
/* remote_lock.c */
int shval__r_lock(shval *v, int64_t timeout_ns, bool try);
int shval__r_unlock(shval *v);
/* remote_wait.c */
uint64_t shval__r_seg_version(shval_seg *seg);
uint64_t shval__r_value_version(shval *v);
/* shval_wait (v) and shval_seg_wait (v NULL) */
int shval__r_wait(shval_seg *seg, shval *v, uint64_t *seen, int64_t timeout_ns);
/* remote_verify.c */
int shval__r_seg_verify(shval_seg *seg, unsigned flags,
			void (*report)(const shval_problem *p, void *arg),
			void *arg, size_t *nproblems);

#endif
