/*
 * shval.h — typed values shared between processes.
 *
 * This header is the whole public API of libshval and its reference manual.
 * Anything not declared here (src/, the segment layout) is NOT API and may
 * change in any release.
 *
 * OVERVIEW
 * ========
 * A *segment* is a region of shared memory holding a directory of named
 * *values*.  A value has a name, a type (a Python struct-module style type
 * string, e.g. "q", "100d", "64s", "x:d y:d name:16s"), a synchronisation
 * mode and a version that changes on every committed change.  A *handle*
 * (shval *) is a process-local reference to one value.
 *
 *     shval_seg *seg;
 *     shval *hits;
 *     shval_seg_open("/myapp", SHVAL_CREATE, NULL, &seg);
 *     shval_create(seg, "hits", "q", SHVAL_ATOMIC, NULL, 0, &hits);
 *     shval_add_i64(hits, 1, NULL);      // from any process, never lost
 *     shval_close(hits);
 *     shval_seg_close(seg);
 *
 * Segments come in three local kinds, one format, and one remote kind:
 *   "/name"      POSIX shared memory (/dev/shm/name); lives until unlinked.
 *   "file:PATH"  a regular file; survives restarts.  A disk-backed mapping
 *                can stall writers during writeback: keep hot values on
 *                tmpfs (/dev/shm).
 *   NULL         anonymous (memfd): inherited by fork() children, and
 *                passable to other processes as a file descriptor
 *                (shval_seg_fd() / shval_seg_open_fd()).
 *   "redis://[user:password@]host:port/prefix"  (also
 *   "redis+unix:///path/to/socket?prefix=P")  values kept by a Redis 7
 *                server under the key prefix P, for processes on several
 *                machines: the same functions, with the differences listed
 *                under REDIS SEGMENTS below.
 *
 * ERRORS
 * ======
 * Every function returning int returns 0 on success or a negative code:
 * -errno for system errors (e.g. -ENOENT, -EEXIST, -ENOSPC, -EACCES), or
 * one of the SHVAL_E* codes below for the library's own.  Codes are never
 * renumbered or reused.  shval_strerror() and shval_errname() turn a code
 * into text; shval_errmsg(seg) gives a one-line message about the last
 * failure on that segment in the calling thread's view (value name,
 * expected and found types, offsets).
 *
 * CAVEATS — read these first
 * ==========================
 * - fork(): a child inherits open segments and handles and may use them
 *   directly (that is how anonymous segments are shared).  A lock held by
 *   the parent at fork time is NOT held by the child.
 * - Threads: handles and segments may be used from several threads at once.
 *   shval_errmsg() is per segment and per thread.  A value's lock is owned
 *   by the thread that took it, as with pthread mutexes.
 * - Process death: locks are robust.  A process killed while holding a
 *   value's lock does not hang anyone: the next locker gets
 *   SHVAL_EOWNERDEAD (see shval_lock()).  Ownership is never inferred from
 *   a thread id stored in the segment (ids are reused): each thread keeps
 *   its own list of the locks it holds.
 * - Saved segments: a lock word whose owner is not a live thread of a
 *   process that maps this very segment file — a file segment copied,
 *   backed up or snapshotted while locked, a reboot, a thread id now used by
 *   an unrelated process — is recovered exactly like an owner's death: a
 *   locker waits 50 ms, judges the owner from /proc (pid -> /proc/PID/maps
 *   naming the file's device and inode), then takes the lock with
 *   SHVAL_EOWNERDEAD and the value at its last committed state.  Any doubt
 *   (a /proc file it may not read: another user, hidepid) counts as alive.
 *   With /proc mounted hidepid=2, another user's processes look absent:
 *   do not share locked values between users there (SHVAL_FOREIGN).
 *   What cannot be told apart: a saved lock word naming a thread that,
 *   by chance, is now a live thread of a process mapping the same file;
 *   `shval check --repair` run while no process uses the file fixes it.
 * - Signals: shval calls are not async-signal-safe (like pthread mutexes):
 *   do not call them from a signal handler.
 * - Sizing: each process maps the segment's maximum size (default 1 GiB of
 *   address space, not memory) up front; the segment's backing store grows
 *   as values are created, up to that maximum (SHVAL_EFULL beyond it,
 *   -ENOSPC when the file system is full — never SIGBUS).  A writable
 *   open backs the whole file first, so a sparse copy of a segment file
 *   (cp, rsync -S, a restore) gets -ENOSPC at open, not SIGBUS later; a
 *   read-only open of one on a tmpfs with less room than its holes gets
 *   -ENOSPC too (reading a tmpfs hole takes a page).  A process that
 *   shrinks a segment file under others (ftruncate) can still crash them:
 *   only give write access to processes you trust to that extent.
 * - Names: value names are 1..255 bytes of printable ASCII or UTF-8, no
 *   spaces or control characters.  Segment names are "/" followed by 1..200
 *   characters from [A-Za-z0-9._-] (no further "/"), or "file:PATH".
 * - Hostile segments: everything read from shared memory is bounds-checked;
 *   a damaged or foreign segment gives SHVAL_ECORRUPT or SHVAL_EVERSION.
 *   A lock word naming a thread that does not exist is recovered as an
 *   owner's death (see "Saved segments").  A damaged lock kind word gives
 *   SHVAL_ECORRUPT before any pthread call (glibc would abort());
 *   shval_seg_verify() with SHVAL_VERIFY_REPAIR re-initialises the lock
 *   and rolls its value back (a damaged segment lock is re-initialised by
 *   the next writable open, as after its owner's death).
 * - Big values: values over 64 KiB have no undo copy.  A reader that meets
 *   a section in progress on one waits for it (a futex, no spinning), at
 *   most 2 s, then fails with -ETIMEDOUT naming the writer's thread (a
 *   stopped or traced writer); a dead writer's section is rolled back (the
 *   value flagged SHVAL_INFO_PARTIAL) by a writable reader.  Smaller values
 *   never make readers wait.
 * - PID namespaces: every process attached to a segment must see the same
 *   pids (one PID namespace, e.g. containers sharing /dev/shm need a shared
 *   pid namespace too).  Liveness checks — temporary-segment cleanup, lock
 *   owners named in lock words — look processes up by pid.
 * - Linux only: robust futex-based mutexes, memfd_create, O_TMPFILE, /proc.
 *
 * REDIS SEGMENTS
 * ==============
 * shval_seg_open("redis://host:port/P", ...) (or "redis+unix:///sock?prefix=P")
 * keeps the segment's values on a Redis >= 7 server (FUNCTION LOAD, FCALL)
 * under keys "P:..." (P is 1..200 characters from [A-Za-z0-9._-]).  Options
 * after "?" (or "&" after prefix=): lease_ms=N (lock lease, default 5000),
 * timeout_ms=N (connect, request and reconnect time, default 5000).  Every
 * function of this header works on them, with these differences:
 * - Exactness: a value is stored as the exact bytes of its C layout and
 *   every change is computed by this library's own code, then applied by a
 *   server-side compare-and-swap on the value's version: integer widths,
 *   wrapping, range checks (SHVAL_ERANGE), float rounding and parsing are
 *   exactly those of local values (Redis's 64-bit integers and Lua's doubles
 *   never see the numbers).  Contended changes retry, like a local atomic
 *   float add.
 * - Latency: each call is a network round trip (about 30-60 us on one host);
 *   an uncontended change is one round trip (a server-side function: about
 *   9 times the server's work of a plain INCRBY, 10-20 us, see
 *   BENCHMARKS.md), and so is a read; shval_read_version() reads bytes and
 *   version in one.  A write of every byte (shval_write of the whole
 *   value, shval_set_i64/u64/f64) is one round trip also when other
 *   clients changed the value since this handle last saw it; a change
 *   computed from the old bytes (an add, a partial write) then takes two.
 *   A section on a value's own lock is two: shval_lock() brings the
 *   value's bytes with the lease (values up to 4 KiB), so reads and
 *   changes inside it need none until the committing shval_unlock().
 *   Many operations in one round trip: a batch (shval_batch_*, "Batches"
 *   below), sent as one pipeline.  Calls on one segment handle from several
 *   threads are serialised (one connection per handle; blocking waits and
 *   lock waits use connections of their own).
 * - Versions: a counter on the server (also for atomic values, whose local
 *   version is their bits): a change back to the same number is a change.
 *   The segment's version moves on creations, removals and unlocks, and on
 *   value changes once the segment is watched: as locally, the first
 *   shval_seg_version() or shval_seg_wait() announces a watcher for good
 *   (shval_seg_info() does not).
 * - Locks are leases (SET NX PX with a fencing token), renewed every lease/3
 *   by a thread of the owner's process.  Changes made inside a section are
 *   staged in the owner's process (the owning thread's reads see them;
 *   everyone else sees the last committed state) and applied all together at the outermost
 *   shval_unlock() by one server-side call that checks the token.  A dead
 *   owner is noticed when its lease expires (up to lease_ms after the
 *   death, not at once): the next locker then gets SHVAL_EOWNERDEAD and the
 *   last committed state (the dead section never appears).  An owner paused
 *   or cut off for longer than the lease loses the lock: its shval_unlock()
 *   returns SHVAL_ENOTOWNER and applies nothing.  A lock held by the parent
 *   is not held by a fork() child (as locally).
 * - Durability is the server's: with Redis's default snapshots a server
 *   crash loses recent changes (and a restarted server without its data
 *   makes handles SHVAL_ESTALE and opens -ENOENT); appendonly with
 *   appendfsync always keeps every acknowledged change.  A lost connection
 *   is re-established for up to timeout_ms; a request that changes
 *   something carries an id and is never applied twice when resent.
 * - Not offered (SHVAL_EMODE): shval_data() (returns NULL: no shared
 *   memory, no zero-copy), shval_touch(), SHVAL_TEMP.  shval_seg_fd() is
 *   -1, shval_seg_open_fd() does not apply; shval_seg_procs() lists nobody.
 *   shval_seg_info(): nvalues, version, created, creator_pid (on its host)
 *   as locally; size = used = the bytes the server holds for the segment's
 *   keys (MEMORY USAGE of its header, directory, event stream and value
 *   records; leases and request records not counted; 0 if the server's
 *   ACL refuses MEMORY); max_size 0 (no limit of its own: the server's
 *   maxmemory); mode, nattached and nalive 0 (not tracked); owner the
 *   caller's uid (no file).
 * - A handle of a segment opened SHVAL_RDONLY can wait (shval_wait,
 *   shval_seg_wait read the server's streams); on a local segment these
 *   return SHVAL_ERDONLY (a waiter announces itself in the mapping).
 * - Sizes: values up to 64 MiB (SHVAL_ETOOBIG beyond); a write sends the
 *   whole value.  shval_seg_next() lists a snapshot of the names in byte
 *   order.  shval_seg_verify() checks every value's record, type and bytes
 *   (SHVAL_VERIFY_REPAIR repairs nothing there).
 * - Errors of their own: -ECONNREFUSED / -EHOSTUNREACH (no server),
 *   -ECONNRESET (connection lost longer than timeout_ms), -EACCES (AUTH
 *   refused), -EEXIST when creating on a prefix that holds foreign keys,
 *   SHVAL_EVERSION when P:seg is not a shval header, SHVAL_ECORRUPT for a
 *   record that is not shval's (with the server's text in shval_errmsg()).
 *   Passwords are never shown in messages.
 * - No Redis Cluster (keys are built on the server) and no TLS (hiredis
 *   0.14).  Several segments may share one server under different prefixes.
 *
 * TYPES
 * =====
 * Letters follow Python's struct/array modules, native sizes on LP64 Linux:
 *   c char   b/B int8/uint8   h/H int16/uint16   i/I int32/uint32
 *   l/L long/unsigned long (64-bit)   q/Q int64/uint64   n/N ssize_t/size_t
 *   ? bool   f float   d double   u wchar_t (4 bytes, a code point)
 * "100d" is an array of 100 doubles; "64s" is a string of capacity 64
 * bytes whose length is stored (embedded and trailing NULs round-trip).
 * Several fields make a struct: "x:d y:d", or unnamed "q d 16s" (fields
 * then addressed by index "0", "1", ...).  Struct layout follows C natural
 * alignment.  A string "Ns" is laid out as SHVAL_STR(N):
 *     struct { uint32_t len; char bytes[N]; }
 * so "id:q price:d sym:16s" matches
 *     struct { int64_t id; double price; SHVAL_STR(16) sym; }.
 * Every type has one canonical form (single spaces, no redundant parts),
 * which shval_info() and the CLI print.  Type strings are limited to
 * SHVAL_TYPE_MAX bytes in canonical form.
 *
 * MODES (chosen at creation, one per value)
 * =====
 *   SHVAL_RLOCK  (default) robust, process-shared, recursive mutex.
 *   SHVAL_LOCK   the same, not recursive.
 *   SHVAL_RAW    no synchronisation; the caller's business.
 *   SHVAL_ATOMIC scalars of 1, 2, 4 or 8 bytes; lock-free load, store,
 *                add, sub, and/or/xor, exchange and compare-and-swap.
 * Reads of locked values never return a torn value, and never wait (see
 * "Big values").  Read-modify-write functions (shval_add_*, shval_cas_*) on
 * locked values take the lock.  Each value is read whole; several values
 * under one shared lock are consistent with each other under that lock
 * (their commit is all or nothing, also when the owner dies mid-commit).
 * Cost: a locked change costs about what a bare robust mutex does (the
 * version word is written by the lock holder alone, with plain stores);
 * shval_read() of a locked value and shval_add_i64() of a 64-bit atomic
 * value are inlined into the caller (see the end of this header).
 */
#ifndef SHVAL_H
#define SHVAL_H

#include <errno.h> /* the -errno codes the functions return */
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHVAL_BUILDING) && defined(__GNUC__)
#define SHVAL_API __attribute__((visibility("default")))
#else
#define SHVAL_API
#endif

/** The C layout of a string field or value of capacity N ("Ns"). */
#define SHVAL_STR(N)           \
	struct {               \
		uint32_t len;  \
		char bytes[N]; \
	}

/* ---- Version ---------------------------------------------------------- */

#define SHVAL_VERSION_MAJOR 0
#define SHVAL_VERSION_MINOR 1
#define SHVAL_VERSION_PATCH 0
/** 0xMMmmpp, for compile-time comparisons. */
#define SHVAL_VERSION_HEX                                           \
	((SHVAL_VERSION_MAJOR << 16) | (SHVAL_VERSION_MINOR << 8) | \
	 SHVAL_VERSION_PATCH)
/** ABI policy: the same major version is ABI-compatible; soname = major. */

/** The library's version as SHVAL_VERSION_HEX of the build in use.
 *  (The version of a *value* is shval_value_version().)  Since 0.1. */
SHVAL_API unsigned shval_version(void);
/** The library's version as "MAJOR.MINOR.PATCH". Since 0.1. */
SHVAL_API const char *shval_version_string(void);

/* ---- Errors ----------------------------------------------------------- */

/* X(name, value, text) — one list for the enum, shval_errname() and
 * shval_strerror().  Codes are only ever added at the end. */
#define SHVAL_ERRORS(X)                                                     \
	X(ENOTFOUND, -30800, "no such value")                               \
	X(EEXIST, -30801, "a value with that name already exists")          \
	X(ETYPE, -30802, "type mismatch")                                   \
	X(EBADTYPE, -30803, "invalid type string")                          \
	X(EBADNAME, -30804, "invalid name")                                 \
	X(ETOOBIG, -30805, "data larger than the value's capacity")         \
	X(ERANGE, -30806, "number out of range for the type")               \
	X(EPARSE, -30807, "malformed text for the type")                    \
	X(ESTALE, -30808, "the value was removed")                          \
	X(ECORRUPT, -30809, "segment is damaged")                           \
	X(EVERSION, -30810, "segment has another format version or layout") \
	X(EOWNERDEAD, -30811, "previous lock owner died; state recovered")  \
	X(EMISUSE, -30812, "API misuse")                                    \
	X(EMODE, -30813,                                                    \
	  "operation not supported by the value's mode or type")            \
	X(EFULL, -30814, "segment reached its maximum size")                \
	X(EFOREIGN, -30815, "segment is owned by another user")             \
	X(ERDONLY, -30816, "segment was opened read-only")                  \
	X(EINDEX, -30817, "index out of range")                             \
	X(ENOFIELD, -30818, "no such field")                                \
	X(ENOTOWNER, -30819, "lock is not held by the caller")              \
	X(ECHANGED, -30820, "compare-and-swap failed: value differs")       \
	X(ESIZE, -30821, "buffer size does not match the value")

enum shval_error {
#define SHVAL__ERRENUM(n, v, s) SHVAL_##n = (v),
	SHVAL_ERRORS(SHVAL__ERRENUM)
#undef SHVAL__ERRENUM
		SHVAL_ERR_LAST_ = -30899
};

/** "SHVAL_ENOTFOUND: no such value", or "ENOENT: No such file or
 *  directory" for -errno codes.  Never NULL; thread-safe. Since 0.1. */
SHVAL_API const char *shval_strerror(int code);
/** "SHVAL_ENOTFOUND", "ENOENT", or "SHVAL_E?" for unknown codes. Never
 *  NULL. Since 0.1. */
SHVAL_API const char *shval_errname(int code);

/* ---- Segments --------------------------------------------------------- */

#define SHVAL_NAME_MAX 255  /**< bytes in a value name */
#define SHVAL_TYPE_MAX 1023 /**< bytes in a canonical type string */

typedef struct shval_seg shval_seg;
typedef struct shval shval;

/* Flags for shval_seg_open(). */
#define SHVAL_CREATE 0x01u /**< create the segment if it does not exist */
#define SHVAL_EXCL 0x02u   /**< with SHVAL_CREATE: -EEXIST if it exists */
#define SHVAL_RDONLY 0x04u /**< map read-only; writes get SHVAL_ERDONLY */
#define SHVAL_TEMP \
	0x08u /**< when creating: remove the segment when its
                                 last attached process goes (even SIGKILL:
                                 the next open of it, or `shval ls`, cleans) */
#define SHVAL_FOREIGN \
	0x10u /**< allow opening a segment owned by another
                                 user (refused by default: SHVAL_EFOREIGN) */

/** Options for shval_seg_open(); NULL means all defaults.  Set
 *  .struct_size = sizeof(shval_seg_opts) (lets the struct grow). */
typedef struct shval_seg_opts {
	size_t struct_size;
	uint64_t initial_size; /**< bytes at creation; 0 = 64 KiB */
	uint64_t max_size;     /**< growth limit; 0 = 1 GiB (address space) */
	unsigned mode;         /**< permissions at creation; 0 = 0600 */
} shval_seg_opts;

/** Open (and with SHVAL_CREATE, create) a segment.
 *  @param[in]  name  "/name", "file:PATH", or NULL for a new anonymous
 *                    segment (requires SHVAL_CREATE).
 *  @param[in]  flags SHVAL_CREATE, SHVAL_EXCL, SHVAL_RDONLY, SHVAL_TEMP,
 *                    SHVAL_FOREIGN.
 *  @param[in]  opts  NULL or sizes and mode; ignored when not creating.
 *  @param[out] out   the segment; set to NULL on failure.
 *  @return 0; -EINVAL (unknown flag, bad opts); SHVAL_EBADNAME; -ENOENT (no
 *  such segment, no SHVAL_CREATE); -EEXIST (SHVAL_EXCL); -EACCES; -ELOOP
 *  (file: path is a symlink); SHVAL_EFOREIGN (another user's segment, or
 *  a file: path through a directory others control, see below);
 *  SHVAL_ECORRUPT (also: the name is a FIFO, device or other non-regular
 *  file; the open never blocks on one); SHVAL_EVERSION; -ENOSPC; -ENOMEM;
 *  other -errno.
 *  file: paths: every directory on the path (resolved, from "/" down) must
 *  belong to the caller or root and not be writable by group or others
 *  unless sticky (like OpenSSH's StrictModes), and every symbolic link
 *  among the directories as written must belong to the caller or root;
 *  else SHVAL_EFOREIGN naming the directory (SHVAL_FOREIGN skips the
 *  check).  Whoever controls a directory on the path could otherwise
 *  redirect the open, or the creation, elsewhere.
 *  Creation is race-free: of two processes creating the same name at once,
 *  one creates and both end up with the same fully initialised segment.
 *  After a failure there is nothing to close.  Thread-safe. Since 0.1. */
SHVAL_API int shval_seg_open(const char *name, unsigned flags,
			     const shval_seg_opts *opts, shval_seg **out);

/** Attach a segment from a file descriptor (typically an anonymous
 *  segment's fd received over a Unix socket or inherited across exec).
 *  The fd is duplicated; the caller keeps its own.  flags: SHVAL_RDONLY,
 *  SHVAL_FOREIGN.  Errors as shval_seg_open(). Since 0.1. */
SHVAL_API int shval_seg_open_fd(int fd, unsigned flags, shval_seg **out);

/** The segment's file descriptor (close-on-exec), owned by the segment.
 *  Since 0.1. */
SHVAL_API int shval_seg_fd(const shval_seg *seg);

/** The name given at open ("/x", "file:/p"), or "" for anonymous. */
SHVAL_API const char *shval_seg_name(const shval_seg *seg);

/** Detach.  NULL is a no-op.  Handles of this segment stay valid until
 *  closed themselves (the mapping is released with the last of them), so
 *  closing in any order is safe.  A lock this thread holds (shval_lock())
 *  keeps the mapping it was taken through until its unlock (through any
 *  handle of the value, in any mapping of the file), or until the process
 *  ends if it is never unlocked: the thread's robust-lock list links the
 *  lock through that mapping.  A SHVAL_TEMP segment is removed when its
 *  last attached process detaches.  Returns 0. Since 0.1. */
SHVAL_API int shval_seg_close(shval_seg *seg);

/** Remove a segment's name (shm_unlink / unlink).  Processes that have it
 *  open keep using it.  Only a shval segment (a regular file starting with
 *  a segment's magic, of any format version) is removed: anything else is
 *  refused with SHVAL_ECORRUPT ("not a shval segment") and left alone; a
 *  symbolic link is removed itself (never its target).  file: paths are
 *  checked as by shval_seg_open().  @return 0, SHVAL_EBADNAME, -ENOENT,
 *  -EACCES, SHVAL_ECORRUPT, SHVAL_EFOREIGN, ... */
SHVAL_API int shval_seg_unlink(const char *name);

#define SHVAL_UNLINK_FORCE \
	0x100u /**< shval_seg_unlink_ex: remove whatever the name is */
/** shval_seg_unlink() with flags: SHVAL_UNLINK_FORCE (remove the name even
 *  if it is not a shval segment), SHVAL_FOREIGN (a file: path through
 *  directories others control).  Since 0.1. */
SHVAL_API int shval_seg_unlink_ex(const char *name, unsigned flags);

/** One attached process. */
typedef struct shval_proc {
	pid_t pid;
	bool alive; /**< false: the process died without detaching */
} shval_proc;

/** Segment facts for shval_seg_info(). */
struct shval_seg_info {
	unsigned format_major, format_minor;
	uint64_t size;     /**< bytes of backing store now */
	uint64_t used;     /**< bytes allocated (values, directory, types) */
	uint64_t max_size; /**< growth limit */
	uint64_t nvalues;  /**< values and lock entries in the directory */
	uint64_t version;  /**< segment-wide version (see shval_seg_wait) */
	pid_t creator_pid;
	int64_t created;    /**< creation time, seconds since the epoch */
	unsigned flags;     /**< SHVAL_TEMP if temporary; SHVAL_RDONLY if
				 this handle was opened read-only */
	unsigned mode;      /**< permission bits of the backing file */
	uid_t owner;        /**< owner of the backing file */
	unsigned nattached; /**< processes attached (alive or not) */
	unsigned nalive;    /**< of which alive */
};

/** Fill *info.  Returns 0 or SHVAL_ECORRUPT. Thread-safe. Since 0.1. */
SHVAL_API int shval_seg_info(shval_seg *seg, struct shval_seg_info *info);

/** Attached processes: fills up to cap entries, *n = total count.
 *  Returns 0. Since 0.1. */
SHVAL_API int shval_seg_procs(shval_seg *seg, shval_proc *procs, size_t cap,
			      size_t *n);

/** The last error message for this segment in the calling thread, one
 *  line, or "" if none.  Valid until the next call on seg from the same
 *  thread.  shval_errmsg(NULL) gives the message of the last failed
 *  shval_seg_open*() in this thread. Since 0.1. */
SHVAL_API const char *shval_errmsg(const shval_seg *seg);

/* Flags for shval_seg_verify(). */
#define SHVAL_VERIFY_DEEP 0x1u /**< walk every entry, type and list */
#define SHVAL_VERIFY_REPAIR \
	0x2u /**< also fix what can be fixed safely:
                                      take locks left by dead owners (which
                                      rolls their values back), finish
                                      interrupted removals, recount, free
                                      the attach slots of processes that
                                      died attached (reported as repaired
                                      warnings, code 0) */

/** One finding of shval_seg_verify(). */
typedef struct shval_problem {
	int code;                      /**< SHVAL_ECORRUPT, SHVAL_EOWNERDEAD
	                                   (a lock left by a dead owner), or 0
	                                   for a warning (SHVAL_INFO_PARTIAL) */
	char name[SHVAL_NAME_MAX + 1]; /**< value concerned, or "" */
	uint64_t offset;               /**< byte offset in the segment */
	bool repaired;                 /**< fixed by SHVAL_VERIFY_REPAIR */
	char what[256];                /**< one line, for people */
} shval_problem;

/** Check a segment: the header always; with SHVAL_VERIFY_DEEP every
 *  directory slot, entry, type record, lock and allocator list, each
 *  offset and length bounds-checked; locks held by dead processes and
 *  values left mid-change are reported.  Values flagged
 *  SHVAL_INFO_PARTIAL are reported with code 0 (a warning, not damage:
 *  they do not make the result SHVAL_ECORRUPT).  report (may be NULL) is called
 *  once per problem.  *nproblems (may be NULL) = problems found (repaired
 *  ones included).  Safe while other processes use the segment (repair
 *  takes the same locks they do).  @return 0 if no problem remains
 *  unrepaired, SHVAL_ECORRUPT otherwise, or SHVAL_ERDONLY for a repair on
 *  a read-only open.  Since 0.1. */
SHVAL_API int shval_seg_verify(shval_seg *seg, unsigned flags,
			       void (*report)(const shval_problem *p,
					      void *arg),
			       void *arg, size_t *nproblems);

/* ---- Values: create, find, remove ------------------------------------- */

/* Modes for shval_create() flags (one of). */
#define SHVAL_RLOCK 0x000u  /**< default: robust recursive lock */
#define SHVAL_LOCK 0x100u   /**< robust non-recursive lock */
#define SHVAL_RAW 0x200u    /**< no synchronisation */
#define SHVAL_ATOMIC 0x300u /**< lock-free scalar of 1, 2, 4 or 8 bytes */
#define SHVAL_MODE_MASK 0x300u

/** Create a value.
 *  @param[in] type  type string (see TYPES).
 *  @param[in] flags one mode (SHVAL_RLOCK default, SHVAL_LOCK, SHVAL_RAW,
 *                   SHVAL_ATOMIC).
 *  @param[in] init  initial bytes in C layout (init_len == the type's
 *                   size), or NULL for all zeros.
 *  @param[out] out  a handle; NULL on failure.
 *  @return 0; SHVAL_EEXIST; SHVAL_EBADNAME; SHVAL_EBADTYPE; SHVAL_EMODE
 *  (SHVAL_ATOMIC on a non-scalar or a float/bool/char... see note);
 *  SHVAL_ESIZE (init_len); SHVAL_ERDONLY; SHVAL_EFULL; -ENOSPC; -EINVAL
 *  (unknown flag); SHVAL_ECORRUPT.
 *  Atomic values accept integer letters, 'c', '?', 'u', 'f' and 'd' (float
 *  adds are compare-and-swap loops).  Thread-safe. Since 0.1. */
SHVAL_API int shval_create(shval_seg *seg, const char *name, const char *type,
			   unsigned flags, const void *init, size_t init_len,
			   shval **out);

/** Open an existing value.  type may be NULL (any type); otherwise it must
 *  equal the value's type after canonicalisation, else SHVAL_ETYPE with
 *  both types in shval_errmsg().  Takes no lock (a writable open takes
 *  the segment lock only if the directory was resized a thousand times
 *  during the lookup; a read-only open then gets -EAGAIN).  @return 0;
 *  SHVAL_ENOTFOUND; SHVAL_ETYPE; SHVAL_EBADNAME; SHVAL_EBADTYPE;
 *  SHVAL_ECORRUPT; -EAGAIN. */
SHVAL_API int shval_find(shval_seg *seg, const char *name, const char *type,
			 shval **out);

/** Find the value, or create it if missing.  Race-free: concurrent callers
 *  all get the same value.  An existing value must have the same type
 *  (SHVAL_ETYPE) and mode (SHVAL_EMODE).  *created (may be NULL) tells
 *  which happened.  Errors as shval_create() and shval_find(). */
SHVAL_API int shval_find_or_create(shval_seg *seg, const char *name,
				   const char *type, unsigned flags,
				   const void *init, size_t init_len,
				   shval **out, bool *created);

/** Remove a value by name.  Handles to it then get SHVAL_ESTALE; its space
 *  is reused after a second.  If another thread or process is inside a
 *  locked section of the value (holds its lock, or the shared lock that
 *  guards it), remove first waits for it to end, at most a second; a live
 *  holder that keeps the lock longer gets the removal refused with -EBUSY
 *  (nothing removed; its message names the holder's thread), so that a
 *  section's pointers never write into a block reused by another value.
 *  A dead holder's lock is recovered and the value removed.  A value that
 *  a live process (this one included) has pinned (shval_pin; in Python,
 *  any memoryview or array view of it not yet released) is refused at
 *  once with -EBUSY, its message naming the process and its pin count;
 *  pins of a dead process are dropped and the value removed.  A lock
 *  entry still guarding values is refused (SHVAL_EMISUSE).  @return 0,
 *  SHVAL_ENOTFOUND, SHVAL_EBADNAME, SHVAL_ERDONLY, SHVAL_EMISUSE, -EBUSY. */
SHVAL_API int shval_remove(shval_seg *seg, const char *name);

/** Free a handle.  NULL is a no-op; does not remove the value. */
SHVAL_API void shval_close(shval *v);

/** Create a value in this process's anonymous segment (created on first
 *  use, 1 GiB max): the shape of multiprocessing.Value.  fork() children
 *  share it.  The value gets a generated name ("anon.<pid>.<n>"); other
 *  processes may reach it through shval_anon_segment(). Since 0.1. */
SHVAL_API int shval_new(const char *type, unsigned flags, const void *init,
			size_t init_len, shval **out);

/** The process-wide anonymous segment used by shval_new(), creating it if
 *  needed.  Owned by the library: do not close it. */
SHVAL_API int shval_anon_segment(shval_seg **out);

/* Kinds of values. */
#define SHVAL_KIND_SCALAR 1
#define SHVAL_KIND_ARRAY 2
#define SHVAL_KIND_STRING 3
#define SHVAL_KIND_STRUCT 4
#define SHVAL_KIND_LOCK 5 /**< a shared lock entry, not a value */

/* Bits of shval_info.flags. */
#define SHVAL_INFO_PARTIAL \
	0x1u /**< a writer died mid-update of a large
                                     array: elements are whole but may mix
                                     old and new; cleared by a full write */

/** Facts about a value (shval_info(), shval_seg_next()). */
struct shval_info {
	char name[SHVAL_NAME_MAX + 1];
	char type[SHVAL_TYPE_MAX + 1]; /**< canonical type string */
	unsigned mode; /**< SHVAL_RLOCK, SHVAL_LOCK, SHVAL_RAW, SHVAL_ATOMIC */
	unsigned kind; /**< SHVAL_KIND_* */
	size_t size;   /**< bytes of data (C layout) */
	size_t count;  /**< elements (array), capacity (string),
	                        fields (struct), 1 (scalar) */
	uint64_t version; /**< as shval_value_version() */
	unsigned flags;   /**< SHVAL_INFO_* */
};

/** Fill *info for a handle.  @return 0, SHVAL_ESTALE. */
SHVAL_API int shval_info(shval *v, struct shval_info *info);

/** Iterate over the segment's values in directory order.  Start with
 *  *cursor = 0; each call fills *info with the next value whose name
 *  starts with prefix (NULL or "" = all) and returns 0, or returns
 *  SHVAL_ENOTFOUND when there are no more.  Values created or removed
 *  during an iteration may or may not be seen; none is seen twice unless
 *  the directory was resized meanwhile.  -EAGAIN if the directory was
 *  resized a thousand times during one call.  SHVAL_ECORRUPT for a damaged
 *  directory slot or entry: *cursor is then past it, so that a caller may
 *  report it and go on with the next call. */
SHVAL_API int shval_seg_next(shval_seg *seg, uint64_t *cursor,
			     const char *prefix, struct shval_info *info);

/** The segment a handle belongs to (not a new reference). */
SHVAL_API shval_seg *shval_segment(shval *v);

/* ---- Whole-value access ----------------------------------------------- */

/** Copy the whole value (C layout, shval_info().size bytes) to buf.
 *  cap must be >= size (else SHVAL_ESIZE).  Never torn for locked and
 *  atomic values.  @return 0, SHVAL_ESTALE, SHVAL_ESIZE; -ETIMEDOUT for a
 *  value over 64 KiB whose writer stays mid-change for over 2 s (see
 *  CAVEATS, "Big values"; the same for every read function). */
SHVAL_API int shval_read(shval *v, void *buf, size_t cap);

/** shval_read() that also stores in *version a version of the value no
 *  newer than the bytes read, for a later shval_wait(v, version, ...):
 *  that wait never misses a change made after the read (it may return at
 *  once for one the read already saw).  On a Redis segment the bytes and
 *  their exact version come from one request (shval_value_version() then
 *  shval_read() are two round trips); inside the caller's own section the
 *  staged bytes are read and *version is the committed version.  @return
 *  as shval_read(); -EINVAL if version is NULL. Since 0.1. */
SHVAL_API int shval_read_version(shval *v, void *buf, size_t cap,
				 uint64_t *version);

/** Replace the whole value; len must equal its size (SHVAL_ESIZE).  String
 *  lengths inside buf are checked (SHVAL_ETOOBIG if > capacity); the value
 *  is unchanged on any error. @return 0, SHVAL_ESTALE, SHVAL_ESIZE,
 *  SHVAL_ETOOBIG, SHVAL_ERDONLY. */
SHVAL_API int shval_write(shval *v, const void *buf, size_t len);

/* ---- Scalars ---------------------------------------------------------- */
/* The typed accessors work on scalar values of any letter:
 *   _i64 / _u64 for integers, 'c', '?' and 'u' (range-checked: SHVAL_ERANGE
 *   if the number does not fit the value's type, value unchanged);
 *   _f64 for 'f' and 'd'; also for integer values when the number is
 *   exact: shval_get_f64 of an integer that a double holds exactly,
 *   shval_set_f64 of a whole number in the type's range (else
 *   SHVAL_ERANGE).  shval_add_f64 and shval_cas_f64 take 'f' and 'd' only.
 * Other kinds get SHVAL_EMODE. */

SHVAL_API int shval_get_i64(shval *v, int64_t *out);
SHVAL_API int shval_get_u64(shval *v, uint64_t *out);
SHVAL_API int shval_get_f64(shval *v, double *out);
SHVAL_API int shval_set_i64(shval *v, int64_t x);
SHVAL_API int shval_set_u64(shval *v, uint64_t x);
SHVAL_API int shval_set_f64(shval *v, double x);

/** Add delta; *result (may be NULL) receives the new value.  Integer
 *  arithmetic wraps modulo the type's width, as the hardware's atomic add
 *  does; except on a 'u' value (a code point), where a result outside
 *  0..0x10FFFF (of add, sub, and, or, xor) is SHVAL_ERANGE and the value is
 *  unchanged (atomic 'u' values use a compare-and-swap loop).  Atomic values: one hardware atomic.  Locked values: under the
 *  lock.  Raw values: unsynchronised.  Float values: exact float add
 *  (a compare-and-swap loop when atomic). */
SHVAL_API int shval_add_i64(shval *v, int64_t delta, int64_t *result);
SHVAL_API int shval_sub_i64(shval *v, int64_t delta, int64_t *result);
SHVAL_API int shval_add_f64(shval *v, double delta, double *result);
/** Bitwise ops on integer values; *old (may be NULL) receives the value
 *  before.  Bits above the type's width in mask are ignored. */
SHVAL_API int shval_and_u64(shval *v, uint64_t mask, uint64_t *old);
SHVAL_API int shval_or_u64(shval *v, uint64_t mask, uint64_t *old);
SHVAL_API int shval_xor_u64(shval *v, uint64_t mask, uint64_t *old);
/** Store x, *old (may be NULL) receives the previous value. */
SHVAL_API int shval_exchange_i64(shval *v, int64_t x, int64_t *old);
/** Compare-and-swap: if the value equals *expected, store desired and
 *  return 0; else store the current value in *expected and return
 *  SHVAL_ECHANGED.  Float values compare bit patterns. */
SHVAL_API int shval_cas_i64(shval *v, int64_t *expected, int64_t desired);
SHVAL_API int shval_cas_f64(shval *v, double *expected, double desired);

/* ---- Strings ---------------------------------------------------------- */

/** Copy a string value's bytes (exact length; NULs kept) into buf and set
 *  *len.  If cap < length, copies nothing and returns SHVAL_ETOOBIG with
 *  *len = the length needed.  A NUL is appended when cap > length, as a
 *  convenience (not counted in *len). */
SHVAL_API int shval_get_str(shval *v, char *buf, size_t cap, size_t *len);
/** Set a string value to len bytes.  len > capacity: SHVAL_ETOOBIG, value
 *  unchanged. */
SHVAL_API int shval_set_str(shval *v, const char *s, size_t len);

/* ---- Arrays ----------------------------------------------------------- */

/** Copy elements [index, index+n) of an array value into buf (n * element
 *  size bytes), consistently (never torn, one version of the array).
 *  @return 0, SHVAL_EINDEX, SHVAL_EMODE (not an array), SHVAL_ESTALE. */
SHVAL_API int shval_array_get(shval *v, size_t index, size_t n, void *buf);
/** Overwrite elements [index, index+n) from buf, as one change. */
SHVAL_API int shval_array_set(shval *v, size_t index, size_t n,
			      const void *buf);

/* ---- Structs ---------------------------------------------------------- */

/** Copy one field ("x", or "0" for the first field, by index) into buf
 *  (cap >= field size, else SHVAL_ESIZE); *len (may be NULL) = the field's
 *  size.  A value that is not a struct has one field, "0": itself.
 *  @return 0, SHVAL_ENOFIELD, SHVAL_ESIZE, SHVAL_EMODE (a lock handle). */
SHVAL_API int shval_field_get(shval *v, const char *field, void *buf,
			      size_t cap, size_t *len);
/** Overwrite one field; len must equal the field's size. */
SHVAL_API int shval_field_set(shval *v, const char *field, const void *buf,
			      size_t len);
/** Layout of one field, for callers that read whole structs. */
typedef struct shval_field_info {
	char name[64]; /**< "" when unnamed */
	char type[64]; /**< "d", "16s", "10q" */
	size_t offset, size;
} shval_field_info;
/** Describe field number idx (0-based).  @return 0, SHVAL_EINDEX. */
SHVAL_API int shval_field_info_at(shval *v, size_t idx, shval_field_info *fi);

/* ---- Text ------------------------------------------------------------- */

#define SHVAL_TEXT_JSON 0x1u /**< JSON document instead of plain text */

/** The value as text.  Plain: integers exact, floats in shortest
 *  round-trip form ("0.1", "1e+300", "nan", "inf"), a 'c' as its
 *  character, '?' as true/false, 'u' as its UTF-8 character, strings as
 *  their raw bytes, arrays as space-separated elements, structs as
 *  space-separated field=value with string fields in double quotes and
 *  C escapes, array fields comma-separated.  JSON: numbers, strings
 *  escaped exactly (\u0000 kept), arrays, objects for named structs
 *  (arrays for unnamed ones); non-finite floats as the strings "nan",
 *  "inf", "-inf".
 *  Writes at most cap bytes including a terminating NUL; *len (may be
 *  NULL) = full length without the NUL.  If cap is too small the output is
 *  not written and SHVAL_ETOOBIG is returned with *len set. */
SHVAL_API int shval_to_text(shval *v, unsigned flags, char *buf, size_t cap,
			    size_t *len);

/** Set the value from text arguments: a scalar or string takes one
 *  argument; an array takes one per element (exactly count); a struct takes
 *  field=value arguments (unnamed fields by index, "0=..."), fields not
 *  given keep their values; a string field's value that starts with a
 *  double quote is read in the quoted form shval_to_text prints ("..."
 *  with \" \\ \n \t \r \0 \xHH), any other as raw bytes.  All arguments are parsed before anything is
 *  written: on error the value is unchanged.  @return 0, SHVAL_EPARSE,
 *  SHVAL_ERANGE, SHVAL_ETOOBIG, SHVAL_ENOFIELD, SHVAL_EINDEX (wrong number
 *  of array elements), SHVAL_ESTALE. */
SHVAL_API int shval_from_text(shval *v, int argc, const char *const *argv);

/** Canonical form of a type string into buf (cap bytes incl. NUL), and
 *  its size in bytes (*size may be NULL).  @return 0, SHVAL_EBADTYPE
 *  (errmsg via shval_errmsg(NULL) says where and why), SHVAL_ETOOBIG. */
SHVAL_API int shval_type_canonical(const char *type, char *buf, size_t cap,
				   size_t *size);

/* ---- Batches ------------------------------------------------------------
 * A batch queues operations on values of one segment and performs them
 * with shval_batch_run().  On a Redis segment the whole batch goes to the
 * server as one pipeline: one round trip when every written value's last
 * bytes are known to the handle (after a first read or change through it),
 * else two (a pipelined fetch first); a change the server refuses because
 * the value moved meanwhile (another writer, another owner's section) is
 * then done again on its own, as the single call would.  On local
 * segments shval_batch_run() performs the operations one after another
 * with the single calls (no gain, the same results), so code written for
 * both kinds behaves alike: nothing happens before shval_batch_run(), on
 * either kind.
 *
 * Not a transaction: each operation is applied on its own, atomically as
 * its single call (shval_add_i64 ...), in queue order for operations on
 * one value; an operation that fails changes nothing and the others go
 * on.  For all-or-nothing changes use a lock's section.  Every operation
 * has its own result: *rc (when rc is not NULL) gets what the single call
 * would return, and its outputs are written by shval_batch_run() (the
 * pointers must stay valid until then).  shval_batch_run() returns 0 if
 * every operation succeeded, else the code of the first failed one in
 * queue order, with shval_errmsg(seg) naming it ("batch op 3 of 10: ...");
 * *nfailed counts the failures.  The batch is then empty and can be used
 * again.  A batch is used by one thread at a time.  A lost connection
 * inside a Redis batch: operations whose answer was lost are sent again
 * (a read), found applied (the server's record of the client's last
 * change), or, when the record cannot tell, reported -ECONNRESET
 * ("outcome unknown"): never applied twice.
 *
 * The queueing calls check their arguments only (-EINVAL; SHVAL_EMISUSE for
 * a handle of another segment; -ENOMEM); type and range errors are the
 * operations' results.  shval_batch_write() copies buf. Since 0.1. */
typedef struct shval_batch shval_batch;
SHVAL_API int shval_batch_new(shval_seg *seg, shval_batch **out);
SHVAL_API void shval_batch_free(shval_batch *b);
SHVAL_API int shval_batch_read(shval_batch *b, shval *v, void *buf, size_t cap,
			       int *rc);
SHVAL_API int shval_batch_write(shval_batch *b, shval *v, const void *buf,
				size_t len, int *rc);
SHVAL_API int shval_batch_get_i64(shval_batch *b, shval *v, int64_t *out,
				  int *rc);
SHVAL_API int shval_batch_set_i64(shval_batch *b, shval *v, int64_t x, int *rc);
/** result (may be NULL): the new value, as shval_add_i64(). */
SHVAL_API int shval_batch_add_i64(shval_batch *b, shval *v, int64_t delta,
				  int64_t *result, int *rc);
SHVAL_API int shval_batch_get_f64(shval_batch *b, shval *v, double *out,
				  int *rc);
SHVAL_API int shval_batch_set_f64(shval_batch *b, shval *v, double x, int *rc);
SHVAL_API int shval_batch_add_f64(shval_batch *b, shval *v, double delta,
				  double *result, int *rc);
/** The number of queued operations. */
SHVAL_API size_t shval_batch_size(const shval_batch *b);
/** Perform the queued operations (see above). */
SHVAL_API int shval_batch_run(shval_batch *b, size_t *nfailed);

/* ---- Locks and versions ----------------------------------------------- */

/* Timeouts are relative, in nanoseconds: 0 does not wait (one try),
 * SHVAL_FOREVER (-1) waits forever, any other negative timeout is refused
 * with -EINVAL (a computed timeout gone negative is a bug, not "forever").
 * A timeout too far away for the clock waits forever.  (Bindings refuse
 * NaN and negative floating-point timeouts the same way.) */
#define SHVAL_SEC 1000000000LL /**< timeouts are in nanoseconds */
#define SHVAL_MSEC 1000000LL
#define SHVAL_FOREVER (-1LL)

/** Take the value's lock (SHVAL_RLOCK: recursively).  Returns 0, or
 *  SHVAL_EOWNERDEAD when the previous owner died holding it (or left a
 *  lock word that no live process of this segment owns: see CAVEATS,
 *  "Saved segments"; or a half-done section on a damaged image): the lock is
 *  then held by the caller and the value is back at its last committed
 *  state (for a shared lock: every value it guards; if the owner died while
 *  committing, its section is completed instead — all or nothing).  Values
 *  larger than 64 KiB have no rollback copy: their elements are whole, and
 *  shval_info() shows SHVAL_INFO_PARTIAL until the next full write.
 *  Library calls that take the lock internally (writes, adds) recover the
 *  same way and succeed: only shval_lock/trylock/timedlock report
 *  SHVAL_EOWNERDEAD, once.  A section that changes nothing (lock, unlock)
 *  does not move the version.  Readers never wait for the lock.
 *  SHVAL_EMODE for raw and atomic values; SHVAL_EMISUSE when a SHVAL_LOCK
 *  value is locked twice by the same thread. */
SHVAL_API int shval_lock(shval *v);
/** As shval_lock(), but -EBUSY instead of waiting. */
SHVAL_API int shval_trylock(shval *v);
/** As shval_lock(), waiting at most timeout_ns (relative); -ETIMEDOUT;
 *  -EINVAL for a negative timeout other than SHVAL_FOREVER. */
SHVAL_API int shval_timedlock(shval *v, int64_t timeout_ns);
/** Release; commits changes made through shval_data() (the version moves
 *  and waiters wake).  SHVAL_ENOTOWNER if the caller does not hold it. */
SHVAL_API int shval_unlock(shval *v);
/** Create a shared lock: an entry of kind SHVAL_KIND_LOCK named name that
 *  several values can be created under (shval_create_guarded), like
 *  multiprocessing's Value(..., lock=some_lock).  flags: SHVAL_RLOCK
 *  (default, recursive) or SHVAL_LOCK.  The handle works with
 *  shval_lock/trylock/timedlock/unlock; holding it guards every value
 *  created under it, and each value still gets consistent lock-free reads
 *  and owner-death rollback.  A lock entry cannot be removed while values
 *  use it (SHVAL_EMISUSE).  shval_find() on its name returns a lock handle.
 *  @return as shval_create(). Since 0.1. */
SHVAL_API int shval_lock_create(shval_seg *seg, const char *name,
				unsigned flags, shval **out);

/** Create a value guarded by the shared lock `lock` (a handle from
 *  shval_lock_create or shval_find of the same segment).  Errors as
 *  shval_create(); SHVAL_EMISUSE if lock is not a lock of this segment.
 *  Since 0.1. */
SHVAL_API int shval_create_guarded(shval_seg *seg, const char *name,
				   const char *type, shval *lock,
				   const void *init, size_t init_len,
				   shval **out);

/** Direct pointer to the value's bytes in shared memory.  For locked
 *  values, valid for writing only while the caller holds the lock; for raw
 *  values at any time (no guarantees).  NULL if the handle is stale.  On a
 *  segment opened SHVAL_RDONLY the pages are mapped read-only: the pointer
 *  is for reading only (a write through it kills the process with
 *  SIGSEGV), and reading it directly is not a consistent read (use
 *  shval_read).  The pointer does not keep the value from being removed
 *  (by any process): its block is then reused by other values a second
 *  later, and a write through a kept pointer lands in them.  A caller that
 *  keeps the pointer beyond a locked section pins the value first
 *  (shval_pin), as the Python binding does for every exported buffer. */
SHVAL_API void *shval_data(shval *v);

/** Pin the value: while pinned, shval_remove() of it by any process is
 *  refused with -EBUSY (its message names the pinning process), so that
 *  its block is never reused under pointers this process hands out
 *  (shval_data() kept across calls, a buffer exported to other code).
 *  Pins are counted per process and value: each shval_pin() needs one
 *  shval_unpin() (through any handle of the value in this process).  They
 *  belong to the process and are recorded in the segment (in its attach
 *  slot): a process that dies, is killed or exits with pins held blocks
 *  nothing (the next removal sees it gone and drops its pins), and
 *  shval_seg_close() keeps them while value handles keep the mapping; the
 *  pins go with the final release of the segment.  A forked child does
 *  not inherit its parent's pins (the parent's stay until the parent
 *  unpins or dies): the child pins what it keeps.  Each call takes the
 *  segment lock briefly.
 *  @return 0; SHVAL_ESTALE (already removed); SHVAL_ERDONLY (segment
 *  opened read-only: nothing can be written through its pointers, and
 *  nothing recorded); SHVAL_EMODE (a lock handle, a Redis value);
 *  SHVAL_EFULL (no attach slot: 256 processes attached); -ENOSPC,
 *  SHVAL_EFULL (no room for the pin record); -EINVAL (NULL).  Since 0.1. */
SHVAL_API int shval_pin(shval *v);

/** Drop one pin of this process on the value (see shval_pin).  @return 0;
 *  SHVAL_EMISUSE if this process holds no pin on it; SHVAL_ERDONLY,
 *  SHVAL_EMODE, -EINVAL as shval_pin().  Since 0.1. */
SHVAL_API int shval_unpin(shval *v);

/** Announce a change made through shval_data(): the version moves and
 *  waiters wake.  Raw values: at once.  Locked values: if the caller holds
 *  the lock, at its shval_unlock() (as any change through the pointer);
 *  otherwise the value's lock is taken and released around the bump.
 *  Atomic values: their version is their bits, so waiters are woken to
 *  look again.  @return 0, SHVAL_ESTALE, SHVAL_ERDONLY, SHVAL_EMODE (a
 *  lock handle). Since 0.1. */
SHVAL_API int shval_touch(shval *v);

/** The value's version: changes on every committed change (for atomic
 *  values: the value's bits, so a change back to the same number is not
 *  seen as a change).  Never fails; 0 on a stale handle. */
SHVAL_API uint64_t shval_value_version(shval *v);

/** Sleep until the value's version differs from *seen (then update *seen
 *  and return 0), or timeout_ns passes (-ETIMEDOUT; SHVAL_FOREVER waits
 *  forever; another negative timeout: -EINVAL).  No polling: a futex.
 *  -EINTR if a signal interrupted it. */
SHVAL_API int shval_wait(shval *v, uint64_t *seen, int64_t timeout_ns);

/** The segment-wide version, for watching every value at once.  It moves
 *  when a value is created or removed, and on every value change made
 *  while someone watches: calling this function announces a watcher (and
 *  so does shval_seg_wait(), again when it returns), so the pattern
 *      seen = shval_seg_version(seg); read values;
 *      while (shval_seg_wait(seg, &seen, t) == 0) read values;
 *  sees every change.  (Unwatched, value changes leave it alone, so that
 *  writers of different values never share a cache line.)  Writers pay one
 *  extra atomic add while a watcher exists. */
SHVAL_API uint64_t shval_seg_version(shval_seg *seg);
/** As shval_wait() on the segment-wide version. */
SHVAL_API int shval_seg_wait(shval_seg *seg, uint64_t *seen,
			     int64_t timeout_ns);

/* ---- Inline fast paths ---------------------------------------------------
 * shval_read() of a locked value, shval_write() of a value with its own
 * lock, and shval_add_i64() of a 64-bit atomic or own-lock value or of a
 * 32-bit ('i', 'I') atomic value are
 * inlined into the caller (as liburing inlines its ring operations): a
 * call costs more than the work.  They do exactly what the functions do on
 * their common path (the stale-handle check, the seqlock read, the locked
 * section with its undo copy and commit, the wake-up check) and call the
 * functions for everything else (contention, a held or damaged lock, an
 * owner's death, a removed value).  (shval_read)(v, buf, cap) with
 * parentheses, or -DSHVAL_NO_INLINE, calls the function itself.  Nothing
 * below is API: the layout of struct shval__fast is private to one build
 * of the library and may change with any release (the soname changes with
 * it).  The protocol is src/section.h's (tag-seqlock, tag-waiters). */
/* The first bytes of every handle (src/handle.c keeps them up to date). */
struct shval__fast {
	unsigned flags;      /* SHVAL__F_* */
	unsigned size;       /* of the value */
	unsigned read_size;  /* size if SEQREAD, else 0: one compare */
	unsigned write_size; /* size if OWNWRITE, else 0 */
	void *data;
	uint64_t *version;           /* the value's version word */
	const uint64_t *serial;      /* the entry's serial ... */
	uint64_t serial_want;        /* ... while it is the handle's value
				      * (removal sets it to 0) */
	uint8_t *waiters;            /* the entry's waiters byte */
	const uint64_t *seg_version; /* bits 0, 1: a segment watcher */
	void *lock;                  /* own lock (pthread_mutex_t) ... */
	const int *lock_kind;        /* ... its kind word, and the one */
	int lock_kind_want;          /* every shval lock has */
	void *undo;                  /* the undo copy */
};
/* What the inline paths may do with a handle (else: the function):
 *   SEQREAD   read: a locked value with an undo copy
 *   ATOMIC64  add: a writable 64-bit integer atomic value
 *   OWNWRITE  write: writable, own lock, undo copy, no byte check needed
 *   LOCKED64  add: writable, own lock, undo copy, 64-bit integer
 *   ATOMIC32S add: a writable 'i' atomic value (32-bit, signed)
 *   ATOMIC32U add: a writable 'I' atomic value (32-bit, unsigned) */
#define SHVAL__F_SEQREAD 0x1u
#define SHVAL__F_ATOMIC64 0x2u
#define SHVAL__F_OWNWRITE 0x4u
#define SHVAL__F_LOCKED64 0x8u
#define SHVAL__F_ATOMIC32S 0x10u
#define SHVAL__F_ATOMIC32U 0x20u

/* ---- The own lock's fast path (not API) ----------------------------------
 * A section that one call opens and closes (a write, a locked add) takes a
 * value's own robust mutex without calling glibc: the kernel's robust-futex
 * protocol, done inline (src/mutex.c, "FAST PATH", says why it is as safe
 * as pthread_mutex_trylock).  Before the compare-and-swap 0 -> tid
 * of the futex word, the mutex is named in this thread's robust-list
 * "list_op_pending" slot (kernel ABI: set_robust_list(2)); if the thread
 * dies while the slot names a mutex whose word holds its tid, the kernel
 * marks the word FUTEX_OWNER_DIED, as for a mutex on the list, and the
 * next locker recovers.  A mutex taken this way is not on glibc's list, so
 * only shval__lock_fast_release() may release it.  Per thread: */
struct shval__thread {
	unsigned tid;   /* gettid(); ~0u: no fast path in this thread */
	void **pending; /* the list_op_pending slot; NULL: not set up yet */
};
#if defined(__GNUC__)
SHVAL_API extern __thread struct shval__thread shval__me
	__attribute__((tls_model("initial-exec")));
#endif
/** Not API: set up shval__me for this thread (once per thread, again in a
 *  fork child); its pending slot, or NULL (no fast path here). */
SHVAL_API void **shval__me_setup(void);
/** Not API: the fast release found the word changed (waiters to wake). */
SHVAL_API void shval__lock_fast_release_slow(void *mutex);

#if defined(__GNUC__) && defined(__linux__) && defined(__GLIBC__) && \
	(defined(__x86_64__) || defined(__aarch64__)) &&             \
	!defined(__SANITIZE_THREAD__)
#include <pthread.h>
#define SHVAL__FAST_LOCK 1
/* 1: taken (the caller must release it with shval__lock_fast_release);
 * 0: not taken (held, damaged, or no fast path: take the function's
 * path, which uses glibc and handles every case). */
static inline int shval__lock_fast_take(void *mutex)
{
	struct shval__thread *me = &shval__me;
	void **pending = me->pending;
	if (__builtin_expect(!pending, 0) && !(pending = shval__me_setup()))
		return 0;
	if (*pending) /* a robust-mutex operation of this thread in flight */
		return 0;
	*pending = &((pthread_mutex_t *)mutex)->__data.__list.__next;
	/* the slot names the mutex before the word can name this thread */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	unsigned z = 0;
	if (__atomic_compare_exchange_n((unsigned *)mutex, &z, me->tid, 0,
					__ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		return 1;
	*pending = 0;
	return 0;
}

/* Release a mutex shval__lock_fast_take took: word tid -> 0 (release),
 * then clear the slot.  A word with FUTEX_WAITERS set (a glibc locker
 * sleeps on it) goes to the function, which wakes one. */
static inline void shval__lock_fast_release(void *mutex)
{
	struct shval__thread *me = &shval__me;
	unsigned w = me->tid;
	if (!__atomic_compare_exchange_n((unsigned *)mutex, &w, 0, 0,
					 __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		shval__lock_fast_release_slow(mutex);
	/* the word is free before the slot lets go of it */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	*me->pending = 0;
}
#else
static inline int shval__lock_fast_take(void *mutex)
{
	(void)mutex;
	return 0;
}
static inline void shval__lock_fast_release(void *mutex)
{
	(void)mutex;
}
#endif

/** Not API (the Python binding): the version that the last change made
 *  through v committed, on a Redis segment, if the library knows it without
 *  asking the server (a change that went to the server by itself, or the
 *  outermost unlock of a section on v's own lock that changed v); 0
 *  otherwise, and for local values.  Taken: a second call returns 0. */
SHVAL_API uint64_t shval__r_committed(shval *v);
/** Not API (the Python binding): shval_write() / shval_add_i64() of a
 *  Redis value in one round trip, or 1 without doing anything where they
 *  would wait for another owner's lock, recover a dead owner's section
 *  silently (the binding takes the lock instead, which reports the death),
 *  or stage in this thread's section; 1 also for a local value.  Else as
 *  the functions (0, or an error). */
SHVAL_API int shval__r_try_write(shval *v, const void *buf, size_t len);
SHVAL_API int shval__r_try_add_i64(shval *v, int64_t delta, int64_t *result);
/** Not API: the same for shval_array_set() and shval_field_set() (the
 *  Python binding's element and field writes).  A change of some bytes is
 *  made on the handle's cached copy and sent with its version: one round
 *  trip if nobody changed the value since, two (the new bytes, again)
 *  otherwise. */
SHVAL_API int shval__r_try_array_set(shval *v, size_t index, size_t n,
				     const void *buf);
SHVAL_API int shval__r_try_field_set(shval *v, const char *field,
				     const void *buf, size_t len);
/** Not API: wakes waiters after an inline change (the slow part);
 *  committed: 1 a locked section's commit, 2 one that took the waiters'
 *  flag before it (wake whatever the flag says now), 0 an atomic add. */
SHVAL_API void shval__fast_wake(shval *v, int committed);

#if !defined(SHVAL_NO_INLINE) && !defined(SHVAL_BUILDING) && \
	defined(__GNUC__) && !defined(__SANITIZE_THREAD__)

/* Is the handle's value still there?  Its serial is 0 once it is removed
 * and a new one once its block is reused (src/entry.c, src/alloc.c). */
static inline int shval__fast_live(const struct shval__fast *f)
{
	return __atomic_load_n(f->serial, __ATOMIC_RELAXED) == f->serial_want;
}

static inline int shval__read_inline(shval *v, void *buf, size_t cap)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v;
	if (v && f->read_size == cap && cap && buf) {
		/* The handle's fields in registers before the copy (buf may
		 * alias the handle, as far as the compiler knows). */
		const uint64_t *ver = f->version, *ser = f->serial;
		uint64_t want = f->serial_want;
		/* tag-seqlock: acquire pairs with the lock holder's release
		 * stores (src/section.h); a version with WRITING (bit 1) goes
		 * to the function, which reads the undo copy.  The serial
		 * alone tells a live value: removal sets it to 0 (under the
		 * segment lock, before the block can be reused, which gives
		 * it a new one), so a read that began after a removal fails
		 * here, and one that overlapped it sees the version move. */
		uint64_t v1 = __atomic_load_n(ver, __ATOMIC_ACQUIRE);
		if (!(v1 & 2)) {
			__builtin_memcpy(buf, f->data, cap);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (__atomic_load_n(ver, __ATOMIC_RELAXED) == v1 &&
			    __atomic_load_n(ser, __ATOMIC_RELAXED) == want)
				return 0;
		}
	}
	return (shval_read)(v, buf, cap);
}

/* Open a section on a value's own lock (src/section.h's shval__chg_begin):
 * 0, or -1 (not here: the function's path, which waits for a held lock
 * and recovers from a dead owner). */
static inline int shval__sec_open(const struct shval__fast *f)
{
	if (__atomic_load_n(f->serial, __ATOMIC_RELAXED) != f->serial_want ||
	    __atomic_load_n(f->lock_kind, __ATOMIC_RELAXED) !=
		    f->lock_kind_want)
		return -1; /* a reused block, or a damaged kind word */
	if (!shval__lock_fast_take(f->lock))
		return -1;
	if (shval__fast_live(f) && /* not removed before we took it */
	    !(__atomic_load_n(f->version, __ATOMIC_RELAXED) & 2))
		return 0;
	shval__lock_fast_release(f->lock);
	return -1; /* removed, or a stuck WRITING bit */
}

/* Before the first change: the undo copy, then WRITING (release: the copy
 * before the bit; the fence: the bit before the data). */
static inline void shval__sec_dirty(const struct shval__fast *f, size_t n)
{
	uint64_t ver = __atomic_load_n(f->version, __ATOMIC_RELAXED);
	__builtin_memcpy(f->undo, f->data, n);
	__atomic_store_n(f->version, ver | 2, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

/* Take the waiters' flag (if set), commit (release), unlock, then look
 * for waiters: the unlock's locked instruction is the barrier on x86-64.
 * The flag is taken before the commit, never cleared after it (src/wait.c
 * says why).  Returns the version word committed, or 0 (removed). */
static inline uint64_t shval__sec_commit(shval *v, const struct shval__fast *f)
{
	uint64_t ver = __atomic_load_n(f->version, __ATOMIC_RELAXED);
	/* removed while held (a section preempted for over a second): the
	 * version word then holds the removal time */
	int live = shval__fast_live(f), took = 0;
	if (live) {
		if (__atomic_load_n(f->waiters, __ATOMIC_RELAXED))
			took = __atomic_exchange_n(f->waiters, 0,
						   __ATOMIC_RELAXED) != 0;
		ver = (ver & ~2ull) + 4;
		__atomic_store_n(f->version, ver, __ATOMIC_RELEASE);
	}
	shval__lock_fast_release(f->lock);
	if (live) {
#if defined(__x86_64__) || defined(__i386__)
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
#else
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
		if (took | __atomic_load_n(f->waiters, __ATOMIC_RELAXED) |
		    (__atomic_load_n(f->seg_version, __ATOMIC_RELAXED) & 3))
			shval__fast_wake(v, took ? 2 : 1);
		return ver;
	}
	return 0;
}

static inline int shval__write_inline(shval *v, const void *buf, size_t len)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v;
	if (v && f->write_size == len && len && buf) {
		if (shval__sec_open(f) == 0) {
			shval__sec_dirty(f, len);
			__builtin_memcpy(f->data, buf, len);
			shval__sec_commit(v, f);
			return 0;
		}
	}
	return (shval_write)(v, buf, len);
}

/* After an inline atomic RMW on the data: look for the value's waiters
 * and segment watchers (tag-waiters, src/wait.c; the RMW is the barrier
 * on x86-64). */
static inline void shval__atomic_woke(shval *v, const struct shval__fast *f)
{
#if !defined(__x86_64__) && !defined(__i386__)
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
	if (__atomic_load_n(f->waiters, __ATOMIC_RELAXED) |
	    (__atomic_load_n(f->seg_version, __ATOMIC_RELAXED) & 3))
		shval__fast_wake(v, 0);
}

static inline int shval__add_i64_inline(shval *v, int64_t delta,
					int64_t *result)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v;
	if (!v)
		return (shval_add_i64)(v, delta, result);
	if ((f->flags & SHVAL__F_ATOMIC64) && shval__fast_live(f)) {
		int64_t o = __atomic_fetch_add((int64_t *)f->data, delta,
					       __ATOMIC_SEQ_CST);
		shval__atomic_woke(v, f);
		if (result)
			*result = (int64_t)((uint64_t)o + (uint64_t)delta);
		return 0;
	}
	if ((f->flags & (SHVAL__F_ATOMIC32S | SHVAL__F_ATOMIC32U)) &&
	    shval__fast_live(f)) {
		/* wraps at 32 bits, as the function does */
		uint32_t o = __atomic_fetch_add(
			(uint32_t *)f->data, (uint32_t)delta, __ATOMIC_SEQ_CST);
		shval__atomic_woke(v, f);
		uint32_t nw = o + (uint32_t)delta;
		if (result)
			*result = (f->flags & SHVAL__F_ATOMIC32S)
					  ? (int64_t)(int32_t)nw
					  : (int64_t)nw;
		return 0;
	}
	if (f->flags & SHVAL__F_LOCKED64) {
		if (shval__sec_open(f) == 0) {
			uint64_t x;
			__builtin_memcpy(&x, f->data, 8);
			x += (uint64_t)delta; /* wraps, as the function's */
			shval__sec_dirty(f, 8);
			__builtin_memcpy(f->data, &x, 8);
			shval__sec_commit(v, f);
			if (result)
				*result = (int64_t)x;
			return 0;
		}
	}
	return (shval_add_i64)(v, delta, result);
}

#define shval_read(v, buf, cap) shval__read_inline((v), (buf), (cap))
#define shval_write(v, buf, len) shval__write_inline((v), (buf), (len))
#define shval_add_i64(v, delta, result) \
	shval__add_i64_inline((v), (delta), (result))
#endif /* inline fast paths */

#ifdef __cplusplus
}
#endif
#endif /* SHVAL_H */
