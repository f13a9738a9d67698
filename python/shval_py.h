/*
 * python/shval_py.h — private header of the CPython extension shval._shval.
 *
 * The module is laid out as CPython's own Modules/_io/ and
 * Modules/_multiprocessing/: one file per type and this header for what
 * the files share.
 *   module.c    module functions (Value, Array, RawValue, ...), init
 *   create.c    creation of values in anonymous segments (their own, or
 *               a per-process pool: lifetime and sizes, issue 12)
 *   convert.c   errors, element conversion, type resolution (ctypes)
 *   segment.c   shval.Segment
 *   lock.c      shval.Lock / shval.RLock
 *   value.c     SharedValue / Synchronized: .value, atomics, wait,
 *               repr, pickling, the buffer protocol
 *   fields.c    struct values: fields as attributes
 *   array.c     SharedArray / SynchronizedArray / SynchronizedString
 * See python/README.md for the behaviour and its documented differences.
 *
 * CPython structure (issue 13):
 *   - Every type is a heap type made by PyType_FromModuleAndSpec() from a
 *     PyType_Spec in its file (the *_spec below), immutable, GC-tracked:
 *     tp_traverse visits the type and every object reference; values also
 *     have tp_clear (base, lock, ctype), and close their handle in dealloc
 *     only if owns_h (not "if no base": tp_clear may have cleared base).
 *     Value types have no tp_new (Py_TPFLAGS_DISALLOW_INSTANTIATION, as
 *     the static types before).
 *   - Multi-phase init (PyModuleDef_Init + Py_mod_exec); what were C
 *     globals is the module state (shval_state, module.c).  Objects cache
 *     a pointer to it, so no hot path looks it up.
 *   - Hot calls are METH_O / METH_NOARGS / METH_FASTCALL (| METH_KEYWORDS,
 *     parsed by fast_args() in convert.c: no private CPython API).
 *   - Hot paths use the library header's inline fast paths: the seqlock
 *     read (shval_read with cap == size, a constant for 4 and 8 bytes),
 *     the 64- and 32-bit atomic add (shval_add_i64), and the own-lock
 *     section of shval_write / the locked add (fast_write / fast_add at
 *     the end of this file: why not the macros themselves is said there).
 *     `.value` of an int scalar is handled inline in tp_getattro /
 *     tp_setattro (hot_get / hot_set), add() first in a small frame
 *     (value.c val_add), a write inside a held own lock without the
 *     library (nested_write); BENCHMARKS.md, "Python binding", has the
 *     instruction counts and what is left.
 *
 * Object model:
 *   Segment             a shval_seg (named, or an anonymous one).
 *   SharedValue         a raw value (RawValue, Value(lock=False), get_obj()).
 *   Synchronized        SharedValue + get_lock/get_obj/acquire/release/with.
 *   SharedArray         a raw array; SynchronizedArray; SynchronizedString
 *                       (Array('c', n) with a lock).
 *   Lock / RLock        a lock entry (shval_lock_create), or a value's own
 *                       lock (a separate handle on the value).
 */
#ifndef SHVAL_PY_H
#define SHVAL_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shval.h"
#include "type.h" /* the letter table, linked from the static library */

/* The module links the static library (CMakeLists.txt): every function it
 * calls is there, so nothing is bound weakly. */

/* ------------------------------------------------------------------------ */
/* module state (module.c)                                                  */

/* Everything that was a C global lives here, one per module object
 * (multi-phase init, PEP 489).  Objects cache a pointer to it (`st`): an
 * object holds its heap type, the type holds the module, so the state
 * outlives every object that points at it; hot paths never look it up.
 * Module functions get it from their module (PyModule_GetState), tp_new
 * from its type (PyType_GetModuleByDef). */
#define SMALL_INT_MIN (-5)
#define SMALL_INT_N 262
typedef struct shval_state {
	PyObject *Error;            /* shval.Error */
	PyObject *OwnerDiedWarning; /* shval.OwnerDiedWarning */
	PyObject *anon_cache;       /* (st_dev, st_ino) -> Segment address
				     * (weak: segment.c, anon_cache_get) */
	PyObject *cur_pool;         /* this process's pool segment, a Segment
				     * (strong; create.c) */
	PyObject *named_cache;      /* name -> Segment address, for
				     * unpickling (weak, as anon_cache:
				     * module.c, resolve_segref) */
	PyObject *ct_simple, *ct_array, *ct_struct, *ct_union, *ct_pointer,
		*ct_funcptr;        /* ctypes base classes */
	PyTypeObject *SegmentType, *SharedValueType, *SynchronizedType,
		*SharedArrayType, *SynchronizedArrayType,
		*SynchronizedStringType, *LockType, *RLockType;
	/* names of anonymous values and locks: v.<pid>.<id>.<n> and
	 * lock.<pid>.<id>.<n> (create.c); id is
	 * per module object so that two module objects in one process (a
	 * re-import after `del sys.modules[...]`) never make the same name */
	unsigned long name_counter;
	unsigned long id;
	PyObject *small_ints[SMALL_INT_N]; /* SMALL_INT_MIN.. (array slices) */
	PyObject *str_value; /* "value", interned (val_getattro's shortcut) */
} shval_state;

extern PyModuleDef shval_moduledef;
shval_state *state_of_type(PyTypeObject *tp); /* NULL + error if none */

/* type specs (one per file); module.c builds the types from them */
extern PyType_Spec seg_spec, val_spec, sync_spec, arr_spec, sync_arr_spec,
	sync_str_spec, lock_spec, rlock_spec;

/* value.c: shared with the array types */
extern PyMethodDef sync_methods[];
int val_getbuffer(PyObject *o, Py_buffer *view, int flags);
void val_releasebuffer(PyObject *o, Py_buffer *view);
int val_traverse(PyObject *o, visitproc visit, void *arg);
int val_clear(PyObject *o);

/* lock.c: the fork counters, the process-wide variables left: a fork is
 * an event of the process, not of a module object, and pthread_atfork()
 * handlers cannot be removed.  Both are registered by fork_gen_init().
 *   fork_gen    bumped in the child of every fork (a lock's holder record
 *               is only believed in the process that made it);
 *   fork_count  bumped before every fork, so in the parent and the child
 *               (create.c: a value created before a fork may be held by
 *               the child, so neither side removes it on dealloc). */
extern unsigned long fork_gen;
extern unsigned long fork_count;

/* docstrings shared by several types */
#define WAIT_DOC                                                          \
	"wait($self, /, timeout=None, version=None)\n--\n\n"             \
	"Sleep until the value changes from the version last seen (or the " \
	"given one); True when it changed, False on timeout."
#define REDUCE_DOC \
	"__reduce__($self, /)\n--\n\nPickle by reference (segment and name)."

#define LOCK_SLICE_NS (50 * SHVAL_MSEC)
#define BAD_TYPECODE_MSG \
	"bad typecode (must be a ctypes type or one of c, b, B, u, h, H, " \
	"i, I, l, L, q, Q, f or d)"

/* ------------------------------------------------------------------------ */
/* objects                                                                   */

typedef struct {
	char type[SHVAL_TYPE_MAX + 1];
	char letter;      /* scalar letter, or 0 */
	PyObject *ctype;  /* borrowed: a ctypes type, or NULL */
	int is_ctypes_composite; /* ctypes Structure or Array: init via ctypes */
} tinfo;

typedef struct {
	PyObject_HEAD
	shval_state *st;
	shval_seg *seg;
	int borrowed; /* the library's own anonymous segment: never closed */
	int anon;     /* pickles by file descriptor */
	int remote;   /* a redis:// segment: every access is a round trip */
	dev_t dev;
	ino_t ino;
	PyObject *cache_name; /* its key in named_cache (a str), or NULL */
} SegObject;

typedef struct {
	PyObject_HEAD
	shval_state *st;
	shval *h;
	SegObject *seg;
	int recursive;      /* an RLock */
	int owner;          /* created here: remove the entry on dealloc */
	pid_t owner_pid;
	int shared_out;     /* pickled: never removed */
	int own_value_lock; /* a value's own lock (name is the value's) */
	/* Who holds the lock through this object (lock.c: note_acquired):
	 * a thread of this process (fork generation), and how deep.  Lets a
	 * value's get/set inside `with v.get_lock():` run as a plain nested
	 * call instead of a trylock/unlock pair of its own. */
	unsigned long holder;
	unsigned long holder_gen;
	unsigned depth;
	char name[SHVAL_NAME_MAX + 1];
	unsigned long fork_mark; /* fork_count at creation (create.c) */
} LockObject;

typedef struct {
	PyObject_HEAD
	shval_state *st;
	shval *h;
	SegObject *seg;
	PyObject *base;  /* a value owning h (get_obj(), synchronized()) */
	int owns_h;      /* h is this object's (no base): closed on dealloc;
			  * not `!base`, which tp_clear may have cleared */
	PyObject *lock;  /* Synchronized: the lock object (lazily for own) */
	PyObject *ctype; /* ctypes type (element type for arrays) or NULL */
	int extlock;     /* take `lock` around every access */
	int owner;       /* created here: removed on dealloc if never pickled */
	pid_t owner_pid;
	int shared_out;
	unsigned kind, mode;
	char letter;     /* scalar / array element letter */
	char numeric;    /* a scalar add/cas/exchange accept */
	char isfloat;    /* 'f' or 'd' */
	char fastint;    /* an integer letter fast_add() may add to */
	/* Hot-path flags, fixed at val_wrap() (shval_py.h, "hot paths"):
	 *   hot_attr  `.value` straight to the getter/setter (an exact
	 *             SharedValue / Synchronized, not a struct);
	 *   hot_int   's' for a scalar of letter i, l, q or n (signed, 4 or 8
	 *             bytes), 'u' for I, L, Q, N; 0 for any other or with an
	 *             external lock: reads and writes of small ints skip the
	 *             letter table. */
	char hot_attr;
	char hot_int;
	size_t esize, count, size;
	size_t selem;    /* array of ctypes Structures: element size */
	Py_ssize_t exports;
	unsigned long pin_gen; /* fork_gen + 1 in the process that pinned the
	                          value for its exports (val_getbuffer); 0 none */
	signed char rdonly; /* segment opened read-only: -1 not yet asked */
	uint64_t seen;
	shval_field_info *fields;
	size_t nfields;
	char name[SHVAL_NAME_MAX + 1];
	char type[SHVAL_TYPE_MAX + 1];
	unsigned long fork_mark; /* fork_count at creation (create.c) */
} ValObject;

#define LOCKED(v) ((v)->mode == SHVAL_RLOCK || (v)->mode == SHVAL_LOCK)

/* Created here, never pickled, no fork since: no other process can hold
 * it, so its entry is removed when the object goes (create.c). */
#define PRIVATE_OWNED(o)                                              \
	((o)->owner && !(o)->shared_out && (o)->owner_pid == getpid() && \
	 (o)->fork_mark == fork_count && (o)->seg && (o)->seg->seg)

/* Calls on locked values: take the lock first through acquire_handle()
 * (uncontended: a trylock, no GIL release; contended: waits with the GIL
 * released, wakes up for KeyboardInterrupt, warns on a dead owner), run
 * the call as a nested section, unlock.  On a Redis segment the call and
 * the lock's lease and commit are round trips: made with the GIL released
 * (RUN).  The calls are the library's, on C buffers only.  PYERR: a Python
 * error is set. */
#define PYERR INT32_MIN
#define RUN(v, expr)                                                   \
	do {                                                           \
		if ((v)->seg->remote) {                                \
			Py_BEGIN_ALLOW_THREADS                         \
			r = (expr);                                    \
			Py_END_ALLOW_THREADS                           \
		} else {                                               \
			r = (expr);                                    \
		}                                                      \
	} while (0)
#define CALL(v, expr)                                                  \
	do {                                                           \
		if (LOCKED(v) && !held_here((LockObject *)(v)->lock)) { \
			int a_ = acquire_handle2((v)->st, (v)->h, 1, -1, 1,     \
						 (v)->seg->remote);             \
			if (a_ < 0) {                                  \
				r = PYERR;                             \
			} else {                                       \
				RUN(v, expr);                          \
				if (a_ == 1)                           \
					(void)unlock_handle((v)->h,    \
						(v)->seg->remote);     \
			}                                              \
		} else {                                               \
			RUN(v, expr);                                  \
		}                                                      \
	} while (0)

/* As CALL, but a locked Redis value whose lock this thread does not hold
 * first tries try_expr (a shval__r_try_* function): the change in
 * one round trip, the server checking the lease.  FAST_SLOW (1) from it:
 * another owner holds the lock, or a dead owner's section is to be
 * reported: then CALL takes the lock (interruptibly; OwnerDiedWarning). */
#define CALL_TRY(v, try_expr, expr)                                     \
	do {                                                            \
		if ((v)->seg->remote && LOCKED(v) && !(v)->extlock &&   \
		    !held_here((LockObject *)(v)->lock)) {              \
			RUN(v, try_expr);                               \
			if (r != FAST_SLOW)                             \
				break;                                  \
		}                                                       \
		CALL(v, expr);                                          \
	} while (0)

enum lockmode { LK_RAW, LK_OWN, LK_SHARED };

/* ------------------------------------------------------------------------ */
/* functions shared between the files                                        */

/* convert.c */
void set_error(shval_state *st, int code, const char *detail);
void seg_error(shval_state *st, shval_seg *seg, int code);
int64_t now_ns(void);
int64_t timeout_ns(PyObject *t);
int fast_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
	      const char *const *names, Py_ssize_t npos, Py_ssize_t nreq, PyObject **out);
size_t letter_size(char c);
int is_scalar_letter(char c);
int is_float(char c);
int elem_from_py(char c, PyObject *o, void *dst);
PyObject *elem_to_py(char c, const void *src);
PyObject *i64_to_py(char c, int64_t x);
int py_to_i64(char c, PyObject *o, int64_t *out);
int issub(PyObject *t, PyObject *base);
int canonical(shval_state *st, const char *in, tinfo *ti);
int struct_type(shval_state *st, PyObject *t, tinfo *ti);
int resolve_type(shval_state *st, PyObject *t, tinfo *ti, int elem_only);
const char *name_utf8(PyObject *o);

/* segment.c */
SegObject *seg_wrap(shval_state *st, shval_seg *seg, int borrowed);
PyObject *devino_key(dev_t d, ino_t i);
SegObject *anon_cache_get(shval_state *st, PyObject *key);
int anon_cache_put(SegObject *s);
void anon_cache_forget(SegObject *s);
void named_cache_forget(SegObject *s);
int check_open(SegObject *s);
PyObject *m_rebuild_segment(PyObject *m, PyObject *ref);

/* lock.c */
void note_acquired(LockObject *l);
void note_released(LockObject *l);
void fork_gen_init(void);
int is_lock(shval_state *st, PyObject *o);
PyObject *lock_wrap(shval *h, SegObject *seg, int recursive,
			   int own_value_lock);
PyObject *lock_new_common(PyTypeObject *tp, PyObject *args, PyObject *kw);
int acquire_handle2(shval_state *st, shval *h, int block, int64_t tmo, int nested_ok,
		    int remote);
int acquire_handle(shval_state *st, shval *h, int block, int64_t tmo, int remote);
int unlock_handle(shval *h, int remote);
PyObject *lock_acquire(LockObject *l, PyObject *const *args, Py_ssize_t nargs,
			PyObject *kwnames);
PyObject *lock_release(LockObject *l, PyObject *Py_UNUSED(a));
PyObject *lock_enter(LockObject *l, PyObject *Py_UNUSED(a));

/* value.c */
int is_val(shval_state *st, PyObject *o);
int is_sync(shval_state *st, PyObject *o);
PyTypeObject *pick_type(shval_state *st, unsigned kind, char letter, int sync);
size_t ctypes_sizeof(PyObject *t);
PyObject *val_wrap(PyTypeObject *tp, shval *h, SegObject *seg,
			  PyObject *base, PyObject *ctype, PyObject *lock, int extlock);
void val_dealloc(ValObject *v);
int ext_enter(ValObject *v);
void ext_exit(ValObject *v);
int handle_rc(ValObject *v, int r);
PyObject *read_bytes(ValObject *v);
int val_value_set(ValObject *v, PyObject *o, void *Py_UNUSED(c));
PyObject *val_version(ValObject *v, void *Py_UNUSED(c));
PyObject *val_wait(ValObject *v, PyObject *const *args, Py_ssize_t nargs,
		    PyObject *kwnames);
PyObject *val_repr(ValObject *v);
PyObject *seg_ref(SegObject *s);
PyObject *module_attr(const char *name);
PyObject *val_reduce(ValObject *v, PyObject *Py_UNUSED(a));
PyObject *val_name_get(ValObject *v, void *Py_UNUSED(c));
PyObject *val_type_get(ValObject *v, void *Py_UNUSED(c));
PyObject *val_value_get_any(ValObject *v, void *c);

/* fields.c */
PyObject *bytes_to_nul(const char *b, size_t n);
PyObject *wchars_to_nul(const uint32_t *w, size_t n);
PyObject *field_to_py(size_t count, char letter, const unsigned char *b);
int field_from_py(size_t count, char letter, PyObject *o, unsigned char *b);
const shval_field_info *find_field(ValObject *v, PyObject *name);
PyObject *field_get(ValObject *v, const shval_field_info *f);
int field_set(ValObject *v, const shval_field_info *f, PyObject *o);
PyObject *val_getattro(PyObject *o, PyObject *name);
int val_setattro(PyObject *o, PyObject *name, PyObject *value);

/* array.c */
int selem_bytes(ValObject *v, PyObject *o, unsigned char *b);
PyObject *arr_value_get(ValObject *v);
int arr_value_set(ValObject *v, PyObject *o);

/* create.c */
int parse_lock(shval_state *st, PyObject *lock, enum lockmode *m);
unsigned raw_mode(const char *type);
int anon_lock_create(shval_state *st, int recursive, shval **h, SegObject **segp);
PyObject *create_anon(shval_state *st, const tinfo *ti, const void *init, size_t init_len,
			     enum lockmode lm, PyObject *lockobj);
PyObject *ctypes_init(PyObject *ctype, PyObject *const *args, Py_ssize_t na);
PyObject *make_value(shval_state *st, PyObject *t, PyObject *const *args, Py_ssize_t na,
		     enum lockmode lm, PyObject *lockobj);
PyObject *array_init(shval_state *st, PyObject *t, PyObject *init, tinfo *ti, size_t *count);
PyObject *make_array(shval_state *st, PyObject *t, PyObject *init, enum lockmode lm, PyObject *lockobj);

/* module.c */
SegObject *resolve_segref(shval_state *st, PyObject *ref);


/* Does this thread hold l (taken through l, in this process)?  A false
 * "no" only costs a trylock (the library nests); a "yes" is exact. */
static inline int held_here(const LockObject *l)
{
	return l && l->depth && l->holder_gen == fork_gen &&
	       l->holder == PyThread_get_thread_ident();
}

/* ---- Hot paths: small ints, the version word ----
 * `.value` and add() on an int scalar are most of what a program does with
 * the binding; per call the interpreter already spends 300-400
 * instructions around them (BENCHMARKS.md, "Python binding"), so the
 * binding's own part is kept to loads and stores: the conversions below
 * instead of PyLong_AsLongLongAndOverflow / PyLong_FromLong calls, the
 * version word read in place instead of a shval_value_version() call. */

/* An exact int of at most one PyLong digit (|x| < 2**30): 1 and its value
 * in *out; else 0 (the general conversion then). */
static inline int small_long(PyObject *o, long *out)
{
	if (!PyLong_CheckExact(o))
		return 0;
#if PY_VERSION_HEX >= 0x030C0000
	if (!PyUnstable_Long_IsCompact((PyLongObject *)o))
		return 0;
	*out = (long)PyUnstable_Long_CompactValue((PyLongObject *)o);
#else
	Py_ssize_t n = Py_SIZE(o);
	if (n < -1 || n > 1)
		return 0;
	*out = (long)n * (long)((PyLongObject *)o)->ob_digit[0];
#endif
	return 1;
}

/* PyLong_FromLong() without the call for -5..256 (CPython's own objects,
 * kept in the module state). */
static inline PyObject *long_of(shval_state *st, long long x)
{
	if (x >= SMALL_INT_MIN && x < SMALL_INT_MIN + SMALL_INT_N)
		return Py_NewRef(st->small_ints[x - SMALL_INT_MIN]);
	return PyLong_FromLongLong(x);
}

/* The Python int of a hot_int value's bytes (little-endian, v->size). */
static inline PyObject *hot_int_to_py(const ValObject *v, const void *b)
{
	switch (v->letter) {
	case 'i': { int32_t x; memcpy(&x, b, 4); return long_of(v->st, x); }
	case 'I': { uint32_t x; memcpy(&x, b, 4); return long_of(v->st, x); }
	case 'l': case 'q': case 'n': {
		int64_t x;
		memcpy(&x, b, 8);
		return long_of(v->st, x);
	}
	}
	uint64_t x;
	memcpy(&x, b, 8);
	return x <= INT64_MAX ? long_of(v->st, (long long)x) : PyLong_FromUnsignedLongLong(x);
}

/* shval_value_version() of a locked value's handle (SEQREAD / OWNWRITE in
 * its flags), as that function computes it (src/wait.c cur_version): the
 * version word without its WAITERS and WRITING bits (src/format.h).  A
 * stale handle's word may be another value's: only wait() uses it, which
 * checks the handle. */
static inline uint64_t locked_version(const shval *h)
{
	const struct shval__fast *f = (const struct shval__fast *)(const void *)h;
	return __atomic_load_n(f->version, __ATOMIC_SEQ_CST) & ~3ull;
}

/* ---- Own-lock sections inline (hot paths) ----
 * include/shval.h's inline shval_write() and locked shval_add_i64() fall
 * back to the functions when the inline take fails, and the functions block
 * in pthread_mutex_lock() with the GIL held: a thread of this process
 * holding the lock through `with v.get_lock():` could then never run to
 * release it.  So the binding runs the same section (the header's
 * shval__sec_open / _dirty / _commit, from the same build of the library:
 * it links the static library) and leaves everything else (contention, a
 * lock this thread holds, a removed value) to the general path, which
 * waits with the GIL released (acquire_handle2).  Of the library's
 * thread-locals this touches only shval__me (the thread id and its
 * robust-list slot: initial-exec, one load), not the held-lock list, which
 * the module, dlopen'ed, reaches through a TLS descriptor call.
 * Returns 0 (done) or FAST_SLOW (take the general path: it also finds a
 * dead owner's section, rolls it back and warns). */
#define FAST_SLOW 1
#if defined(shval_write) && defined(shval_add_i64) /* the header's inline paths */
/* n is a constant in every caller below (always inlined): the copies are
 * moves, not calls of memcpy */
static inline __attribute__((always_inline)) int fast_write_n(ValObject *v, const void *buf,
							      size_t n)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v->h;
	if (shval__sec_open(f) == 0) {
		shval__sec_dirty(f, n);
		memcpy(f->data, buf, n);
		uint64_t c = shval__sec_commit(v->h, f);
		/* what this write committed (locked_version() of it) */
		v->seen = c ? c & ~3ull : locked_version(v->h);
		return 0;
	}
	return FAST_SLOW;
}

static inline int fast_write(ValObject *v, const void *buf, size_t len)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v->h;
	if (!(f->flags & SHVAL__F_OWNWRITE) || f->size != len)
		return FAST_SLOW;
	switch (len) {
	case 1: return fast_write_n(v, buf, 1);
	case 2: return fast_write_n(v, buf, 2);
	case 4: return fast_write_n(v, buf, 4);
	case 8: return fast_write_n(v, buf, 8);
	}
	return fast_write_n(v, buf, len);
}

/* A write inside a section this thread holds on the value's own lock
 * (held_here(v->lock), which is exact, so the library's held list has it
 * too): what the library's nested write does (src/value.c
 * shval__write_range with SHVAL__CHG_NESTED), without its lock attempt
 * that must fail, its held-list search and its checks: the section's first
 * change makes the undo copy and sets WRITING (shval__sec_dirty), every
 * change copies the bytes; the holder's shval_unlock() commits
 * (shval__commit_unlock_own: WRITING set = changed).  OWNWRITE means the
 * lock is the value's own (its block) and the value writable; a removed
 * or reused entry goes to the library. */
static inline __attribute__((always_inline)) int nested_write_n(ValObject *v, const void *buf,
								size_t n)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v->h;
	if (!n || f->write_size != n || !shval__fast_live(f)) /* 0: removed */
		return FAST_SLOW;
	if (!(__atomic_load_n(f->version, __ATOMIC_RELAXED) & 2))
		shval__sec_dirty(f, n);
	memcpy(f->data, buf, n);
	return 0;
}

static inline int nested_write(ValObject *v, const void *buf, size_t len)
{
	switch (len) {
	case 4: return nested_write_n(v, buf, 4);
	case 8: return nested_write_n(v, buf, 8);
	}
	return nested_write_n(v, buf, len);
}

/* An own-lock integer value of 1, 2, 4 or 8 bytes: wraps and stores the
 * low bytes, as the library's rmw_int(); *out: the new low bytes. */
static inline __attribute__((always_inline)) int fast_add_n(ValObject *v, int64_t d,
							    int64_t *out, size_t n)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v->h;
	if (shval__sec_open(f) == 0) {
		uint64_t x = 0;
		memcpy(&x, f->data, n); /* little-endian: low bytes */
		x += (uint64_t)d;
		shval__sec_dirty(f, n);
		memcpy(f->data, &x, n);
		shval__sec_commit(v->h, f);
		*out = (int64_t)x;
		return 0;
	}
	return FAST_SLOW;
}

static inline int fast_add(ValObject *v, int64_t d, int64_t *out)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v->h;
	if (!(f->flags & SHVAL__F_OWNWRITE) || !v->fastint)
		return FAST_SLOW;
	switch (f->size) {
	case 1: return fast_add_n(v, d, out, 1);
	case 2: return fast_add_n(v, d, out, 2);
	case 4: return fast_add_n(v, d, out, 4);
	case 8: return fast_add_n(v, d, out, 8);
	}
	return FAST_SLOW;
}
#else
static inline int fast_write(ValObject *v, const void *buf, size_t len)
{
	(void)v, (void)buf, (void)len;
	return FAST_SLOW;
}
static inline int nested_write(ValObject *v, const void *buf, size_t len)
{
	(void)v, (void)buf, (void)len;
	return FAST_SLOW;
}
static inline int fast_add(ValObject *v, int64_t d, int64_t *out)
{
	(void)v, (void)d, (void)out;
	return FAST_SLOW;
}
#endif

/* ---- `.value` of a hot_int value, inline in val_getattro/val_setattro
 * (fields.c): no call before the work, no stack frame of the general
 * getter/setter.  1: done (*out / *rc set); 0: not this case, or
 * anything but the common path (the general code then does the whole
 * operation, with its errors). */
static inline int hot_get(ValObject *v, PyObject **out)
{
	const struct shval__fast *f = (const struct shval__fast *)(void *)v->h;
	if (!v->hot_int || !(f->flags & SHVAL__F_SEQREAD))
		return 0;
	uint64_t b = 0;
	uint64_t seen = locked_version(v->h);
	int r = v->size == 4 ? shval_read(v->h, &b, 4) : shval_read(v->h, &b, 8);
	if (r)
		return 0;
	v->seen = seen;
	*out = hot_int_to_py(v, &b);
	return 1;
}

/* A write of a small int to a hot_int value with its own lock:
 * uncontended (the inline own-lock section), or inside a section this
 * thread holds (nested_write).  The inline section comes first: it cannot
 * take a lock this thread holds (the lock word names the thread), so
 * inside `with v.get_lock():` it fails and held_here() decides. */
static inline int hot_set(ValObject *v, PyObject *o, int *rc)
{
	long x;
	if (!v->hot_int || !o || !small_long(o, &x) || (x < 0 && v->hot_int != 's'))
		return 0;
	int64_t b = x; /* |x| < 2**30: in range; little-endian: low 4 bytes */
	if ((v->size == 4 ? fast_write(v, &b, 4) : fast_write(v, &b, 8)) == 0) {
		*rc = 0; /* v->seen set */
		return 1;
	}
	if (held_here((LockObject *)v->lock) &&
	    (v->size == 4 ? nested_write(v, &b, 4) : nested_write(v, &b, 8)) == 0) {
		v->seen = locked_version(v->h);
		*rc = 0;
		return 1;
	}
	return 0;
}

#endif /* SHVAL_PY_H */
