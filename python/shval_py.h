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
/* globals (module.c)                                                        */

extern PyObject *ShvalError;       /* shval.Error */
extern PyObject *OwnerDiedWarning; /* shval.OwnerDiedWarning */
extern PyObject *anon_cache;       /* (st_dev, st_ino) -> Segment */
extern PyObject *named_cache;      /* name -> Segment (for unpickling) */
extern PyObject *ct_simple, *ct_array, *ct_struct, *ct_union, *ct_pointer,
	*ct_funcptr;
extern unsigned long name_counter;

extern PyTypeObject SegmentType, SharedValueType, SynchronizedType,
	SharedArrayType, SynchronizedArrayType, SynchronizedStringType,
	LockType, RLockType;

/* value.c: shared with the array types */
extern PyBufferProcs val_as_buffer;
extern PyMethodDef sync_methods[];

/* lock.c: the fork generation (bumped in the child of every fork) */
extern unsigned long fork_gen;

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
	shval_seg *seg;
	int borrowed; /* the library's own anonymous segment: never closed */
	int anon;     /* pickles by file descriptor */
	dev_t dev;
	ino_t ino;
} SegObject;

typedef struct {
	PyObject_HEAD
	shval *h;
	SegObject *seg;
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
	shval *h;
	SegObject *seg;
	PyObject *base;  /* a value owning h (get_obj(), synchronized()) */
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
	size_t esize, count, size;
	size_t selem;    /* array of ctypes Structures: element size */
	Py_ssize_t exports;
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
 * the call as a nested section, unlock.  PYERR: a Python error is set. */
#define PYERR INT32_MIN
#define CALL(v, expr)                                                  \
	do {                                                           \
		if (LOCKED(v) && !held_here((LockObject *)(v)->lock)) { \
			int a_ = acquire_handle2((v)->h, 1, -1, 1);    \
			if (a_ < 0) {                                  \
				r = PYERR;                             \
			} else {                                       \
				r = (expr);                            \
				if (a_ == 1)                           \
					(void)shval_unlock((v)->h);    \
			}                                              \
		} else {                                               \
			r = (expr);                                    \
		}                                                      \
	} while (0)

enum lockmode { LK_RAW, LK_OWN, LK_SHARED };

/* ------------------------------------------------------------------------ */
/* functions shared between the files                                        */

/* convert.c */
void set_error(int code, const char *detail);
void seg_error(shval_seg *seg, int code);
int64_t now_ns(void);
int64_t timeout_ns(PyObject *t);
size_t letter_size(char c);
int is_scalar_letter(char c);
int is_float(char c);
int elem_from_py(char c, PyObject *o, void *dst);
PyObject *elem_to_py(char c, const void *src);
PyObject *i64_to_py(char c, int64_t x);
int py_to_i64(char c, PyObject *o, int64_t *out);
int issub(PyObject *t, PyObject *base);
int canonical(const char *in, tinfo *ti);
int struct_type(PyObject *t, tinfo *ti);
int resolve_type(PyObject *t, tinfo *ti, int elem_only);
const char *name_utf8(PyObject *o);

/* segment.c */
SegObject *seg_wrap(shval_seg *seg, int borrowed);
PyObject *devino_key(dev_t d, ino_t i);
SegObject *anon_cache_get(PyObject *key);
int anon_cache_put(SegObject *s);
void anon_cache_forget(SegObject *s);
int check_open(SegObject *s);
PyObject *m_rebuild_segment(PyObject *Py_UNUSED(m), PyObject *ref);

/* lock.c */
void note_acquired(LockObject *l);
void note_released(LockObject *l);
void fork_gen_init(void);
int is_lock(PyObject *o);
PyObject *lock_wrap(shval *h, SegObject *seg, int recursive,
			   int own_value_lock);
PyObject *lock_new_common(PyTypeObject *tp, PyObject *args, PyObject *kw);
int acquire_handle2(shval *h, int block, int64_t tmo, int nested_ok);
int acquire_handle(shval *h, int block, int64_t tmo);
PyObject *lock_acquire(LockObject *l, PyObject *args, PyObject *kw);
PyObject *lock_release(LockObject *l, PyObject *Py_UNUSED(a));
PyObject *lock_enter(LockObject *l, PyObject *Py_UNUSED(a));

/* value.c */
int is_val(PyObject *o);
int is_sync(PyObject *o);
PyTypeObject *pick_type(unsigned kind, char letter, int sync);
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
PyObject *val_wait(ValObject *v, PyObject *args, PyObject *kw);
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
int parse_lock(PyObject *lock, enum lockmode *m);
unsigned raw_mode(const char *type);
extern unsigned long fork_count;
int anon_lock_create(int recursive, shval **h, SegObject **segp);
PyObject *create_anon(const tinfo *ti, const void *init, size_t init_len,
			     enum lockmode lm, PyObject *lockobj);
PyObject *ctypes_init(PyObject *ctype, PyObject *args);
PyObject *make_value(PyObject *t, PyObject *args, enum lockmode lm, PyObject *lockobj);
PyObject *array_init(PyObject *t, PyObject *init, tinfo *ti, size_t *count);
PyObject *make_array(PyObject *t, PyObject *init, enum lockmode lm, PyObject *lockobj);

/* module.c */
SegObject *resolve_segref(PyObject *ref);


/* Does this thread hold l (taken through l, in this process)?  A false
 * "no" only costs a trylock (the library nests); a "yes" is exact. */
static inline int held_here(const LockObject *l)
{
	return l && l->depth && l->holder_gen == fork_gen &&
	       l->holder == PyThread_get_thread_ident();
}

#endif /* SHVAL_PY_H */
