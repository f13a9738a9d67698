/*
 * python/shval_module.c — the CPython extension shval._shval.
 *
 * A drop-in for multiprocessing.sharedctypes (Value, Array, RawValue,
 * RawArray, Lock, RLock, copy, synchronized) backed by libshval, plus
 * atomics, waits, pickling by reference and named segments.
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

/* Shared locks are newer than the rest of the library: bind them weakly so
 * the module still loads (and reports NotImplementedError) without them. */
#pragma weak shval_lock_create
#pragma weak shval_create_guarded

/* ------------------------------------------------------------------------ */
/* globals                                                                   */

static PyObject *ShvalError;       /* shval.Error */
static PyObject *OwnerDiedWarning; /* shval.OwnerDiedWarning */
static PyObject *anon_cache;       /* (st_dev, st_ino) -> Segment */
static PyObject *named_cache;      /* name -> Segment (for unpickling) */
static PyObject *ct_simple, *ct_array, *ct_struct, *ct_union, *ct_pointer,
	*ct_funcptr;
static unsigned long name_counter;

static PyTypeObject SegmentType, SharedValueType, SynchronizedType,
	SharedArrayType, SynchronizedArrayType, SynchronizedStringType,
	LockType, RLockType;

#define LOCK_SLICE_NS (50 * SHVAL_MSEC)
#define BAD_TYPECODE_MSG \
	"bad typecode (must be a ctypes type or one of c, b, B, u, h, H, " \
	"i, I, l, L, q, Q, f or d)"

/* ------------------------------------------------------------------------ */
/* errors                                                                    */

static void set_error(int code, const char *detail)
{
	char buf[1400];
	const char *gen = shval_strerror(code);
	if (detail && *detail)
		snprintf(buf, sizeof buf, "%s", detail);
	else
		snprintf(buf, sizeof buf, "%s", gen);
	PyObject *exc;
	if (code < 0 && code > -30800) {
		exc = PyObject_CallFunction(PyExc_OSError, "is", -code, buf);
	} else {
		PyObject *tp;
		switch (code) {
		case SHVAL_ENOTFOUND: tp = PyExc_KeyError; break;
		case SHVAL_ETYPE: case SHVAL_EBADTYPE: case SHVAL_EMODE:
			tp = PyExc_TypeError; break;
		case SHVAL_ETOOBIG: case SHVAL_ERANGE: case SHVAL_EPARSE:
		case SHVAL_EBADNAME: case SHVAL_ESIZE:
			tp = PyExc_ValueError; break;
		case SHVAL_EEXIST: tp = PyExc_FileExistsError; break;
		case SHVAL_EINDEX: tp = PyExc_IndexError; break;
		case SHVAL_ENOFIELD: tp = PyExc_AttributeError; break;
		case SHVAL_ERDONLY: tp = PyExc_PermissionError; break;
		default: tp = ShvalError; break;
		}
		exc = PyObject_CallFunction(tp, "s", buf);
	}
	if (!exc)
		return;
	PyObject *c = PyLong_FromLong(code);
	if (c) {
		PyObject_SetAttrString(exc, "shval_code", c);
		Py_DECREF(c);
	}
	PyObject *n = PyUnicode_FromString(shval_errname(code));
	if (n) {
		PyObject_SetAttrString(exc, "shval_errname", n);
		Py_DECREF(n);
	}
	PyErr_Clear();
	PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
	Py_DECREF(exc);
}

static void seg_error(shval_seg *seg, int code)
{
	set_error(code, seg ? shval_errmsg(seg) : "");
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SHVAL_SEC + ts.tv_nsec;
}

/* timeout object (None or seconds) -> ns; -1 = forever; -2 = error */
static int64_t timeout_ns(PyObject *t)
{
	if (!t || t == Py_None)
		return -1;
	double d = PyFloat_AsDouble(t);
	if (d == -1.0 && PyErr_Occurred())
		return -2;
	if (d < 0)
		d = 0;
	if (d > 1e9)
		return -1;
	return (int64_t)(d * 1e9);
}

/* ------------------------------------------------------------------------ */
/* element conversion                                                        */

/* The library's letter table (src/type.h). */
static size_t letter_size(char c)
{
	return shval__letter_size(c);
}

static int is_signed(char c)
{
	const shval__letter *l = shval__letter_info(c);
	return l && l->cls == SHVAL__L_INT && l->is_signed;
}

static int is_unsigned(char c)
{
	const shval__letter *l = shval__letter_info(c);
	return l && l->cls == SHVAL__L_INT && !l->is_signed;
}

/* Every letter but 's' is a scalar element. */
static int is_scalar_letter(char c)
{
	const shval__letter *l = shval__letter_info(c);
	return l && l->cls != SHVAL__L_STRING;
}

static int is_float(char c)
{
	const shval__letter *l = shval__letter_info(c);
	return l && l->cls == SHVAL__L_FLOAT;
}

static int range_error(char c, PyObject *o)
{
	PyErr_Format(PyExc_ValueError, "%R is out of range for type '%c'", o, c);
	return -1;
}

static int elem_from_py(char c, PyObject *o, void *dst)
{
	size_t sz = letter_size(c);
	if (is_signed(c) || is_unsigned(c)) {
		if (PyFloat_Check(o)) {
			PyErr_Format(PyExc_TypeError,
				     "int expected instead of float");
			return -1;
		}
		PyObject *ix = PyNumber_Index(o);
		if (!ix)
			return -1;
		int of = 0;
		long long x = PyLong_AsLongLongAndOverflow(ix, &of);
		if (x == -1 && PyErr_Occurred()) {
			Py_DECREF(ix);
			return -1;
		}
		uint64_t u = (uint64_t)x;
		if (of) {
			if (of < 0 || is_signed(c)) {
				range_error(c, ix);
				Py_DECREF(ix);
				return -1;
			}
			u = PyLong_AsUnsignedLongLong(ix);
			if (u == (uint64_t)-1 && PyErr_Occurred()) {
				PyErr_Clear();
				range_error(c, ix);
				Py_DECREF(ix);
				return -1;
			}
		} else if (is_unsigned(c) && x < 0) {
			range_error(c, ix);
			Py_DECREF(ix);
			return -1;
		} else if (sz < 8) {
			int bits = (int)sz * 8;
			if (is_signed(c)) {
				long long lo = -(1LL << (bits - 1)), hi = (1LL << (bits - 1)) - 1;
				if (x < lo || x > hi) {
					range_error(c, ix);
					Py_DECREF(ix);
					return -1;
				}
			} else if ((uint64_t)x > ((1ULL << bits) - 1)) {
				range_error(c, ix);
				Py_DECREF(ix);
				return -1;
			}
		}
		Py_DECREF(ix);
		switch (sz) {
		case 1: { uint8_t y = (uint8_t)u; memcpy(dst, &y, 1); break; }
		case 2: { uint16_t y = (uint16_t)u; memcpy(dst, &y, 2); break; }
		case 4: { uint32_t y = (uint32_t)u; memcpy(dst, &y, 4); break; }
		default: memcpy(dst, &u, 8); break;
		}
		return 0;
	}
	switch (c) {
	case 'f': case 'd': {
		double d = PyFloat_AsDouble(o);
		if (d == -1.0 && PyErr_Occurred())
			return -1;
		if (c == 'f') {
			float f = (float)d;
			memcpy(dst, &f, 4);
		} else {
			memcpy(dst, &d, 8);
		}
		return 0;
	}
	case '?': {
		int t = PyObject_IsTrue(o);
		if (t < 0)
			return -1;
		*(uint8_t *)dst = (uint8_t)t;
		return 0;
	}
	case 'c':
		if (PyBytes_Check(o) && PyBytes_GET_SIZE(o) == 1) {
			*(uint8_t *)dst = (uint8_t)PyBytes_AS_STRING(o)[0];
			return 0;
		}
		if (PyByteArray_Check(o) && PyByteArray_GET_SIZE(o) == 1) {
			*(uint8_t *)dst = (uint8_t)PyByteArray_AS_STRING(o)[0];
			return 0;
		}
		if (PyLong_Check(o)) {
			long x = PyLong_AsLong(o);
			if (x == -1 && PyErr_Occurred())
				return -1;
			if (x < 0 || x > 255)
				return range_error(c, o);
			*(uint8_t *)dst = (uint8_t)x;
			return 0;
		}
		PyErr_Format(PyExc_TypeError,
			     "one character bytes, bytearray or integer expected, not %.100s",
			     Py_TYPE(o)->tp_name);
		return -1;
	case 'u':
		if (PyUnicode_Check(o) && PyUnicode_GET_LENGTH(o) == 1) {
			uint32_t cp = PyUnicode_READ_CHAR(o, 0);
			memcpy(dst, &cp, 4);
			return 0;
		}
		PyErr_Format(PyExc_TypeError,
			     "one character unicode string expected, not %.100s",
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	PyErr_Format(PyExc_TypeError, "unsupported element type '%c'", c);
	return -1;
}

static PyObject *elem_to_py(char c, const void *src)
{
	switch (c) {
	case 'b': { int8_t x; memcpy(&x, src, 1); return PyLong_FromLong(x); }
	case 'B': { uint8_t x; memcpy(&x, src, 1); return PyLong_FromLong(x); }
	case 'h': { int16_t x; memcpy(&x, src, 2); return PyLong_FromLong(x); }
	case 'H': { uint16_t x; memcpy(&x, src, 2); return PyLong_FromLong(x); }
	case 'i': { int32_t x; memcpy(&x, src, 4); return PyLong_FromLong(x); }
	case 'I': { uint32_t x; memcpy(&x, src, 4); return PyLong_FromUnsignedLong(x); }
	case 'l': case 'q': case 'n': { int64_t x; memcpy(&x, src, 8); return PyLong_FromLongLong(x); }
	case 'L': case 'Q': case 'N': { uint64_t x; memcpy(&x, src, 8); return PyLong_FromUnsignedLongLong(x); }
	case 'f': { float x; memcpy(&x, src, 4); return PyFloat_FromDouble(x); }
	case 'd': { double x; memcpy(&x, src, 8); return PyFloat_FromDouble(x); }
	case '?': return PyBool_FromLong(*(const uint8_t *)src != 0);
	case 'c': return PyBytes_FromStringAndSize((const char *)src, 1);
	case 'u': {
		uint32_t cp;
		memcpy(&cp, src, 4);
		if (cp > 0x10ffff) {
			PyErr_Format(PyExc_ValueError, "invalid code point %u", cp);
			return NULL;
		}
		Py_UCS4 u = cp;
		return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, &u, 1);
	}
	}
	PyErr_Format(PyExc_TypeError, "unsupported element type '%c'", c);
	return NULL;
}

/* the low bytes of an int64 as an element of type c */
static PyObject *i64_to_py(char c, int64_t x)
{
	unsigned char b[8];
	memcpy(b, &x, 8); /* little-endian: low bytes first */
	return elem_to_py(c, b);
}

/* a Python object converted for type c, then widened to int64 bits */
static int py_to_i64(char c, PyObject *o, int64_t *out)
{
	unsigned char b[8] = {0};
	if (elem_from_py(c, o, b) < 0)
		return -1;
	size_t sz = letter_size(c);
	uint64_t u = 0;
	memcpy(&u, b, sz);
	if (is_signed(c) && sz < 8 && (u >> (sz * 8 - 1)) & 1)
		u |= ~0ULL << (sz * 8);
	*out = (int64_t)u;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Segment                                                                   */

typedef struct {
	PyObject_HEAD
	shval_seg *seg;
	int borrowed; /* the library's own anonymous segment: never closed */
	int anon;     /* pickles by file descriptor */
	dev_t dev;
	ino_t ino;
} SegObject;

static SegObject *seg_wrap(shval_seg *seg, int borrowed)
{
	SegObject *s = PyObject_New(SegObject, &SegmentType);
	if (!s) {
		if (!borrowed)
			shval_seg_close(seg);
		return NULL;
	}
	s->seg = seg;
	s->borrowed = borrowed;
	s->anon = shval_seg_name(seg)[0] == '\0';
	s->dev = 0;
	s->ino = 0;
	struct stat st;
	if (fstat(shval_seg_fd(seg), &st) == 0) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
	return s;
}

static PyObject *devino_key(dev_t d, ino_t i)
{
	return Py_BuildValue("(KK)", (unsigned long long)d, (unsigned long long)i);
}

/* The library's anonymous segment as a Segment (borrowed reference). */
static SegObject *anon_segobj(void)
{
	shval_seg *seg;
	int r = shval_anon_segment(&seg);
	if (r) {
		set_error(r, shval_errmsg(NULL));
		return NULL;
	}
	struct stat st;
	if (fstat(shval_seg_fd(seg), &st) != 0) {
		PyErr_SetFromErrno(PyExc_OSError);
		return NULL;
	}
	PyObject *key = devino_key(st.st_dev, st.st_ino);
	if (!key)
		return NULL;
	PyObject *s = PyDict_GetItemWithError(anon_cache, key);
	if (s && ((SegObject *)s)->seg == seg) {
		Py_DECREF(key);
		return (SegObject *)s;
	}
	if (PyErr_Occurred()) {
		Py_DECREF(key);
		return NULL;
	}
	SegObject *n = seg_wrap(seg, 1);
	if (!n || PyDict_SetItem(anon_cache, key, (PyObject *)n) < 0) {
		Py_XDECREF(n);
		Py_DECREF(key);
		return NULL;
	}
	Py_DECREF(key);
	Py_DECREF(n); /* the cache holds it */
	return n;
}

static int check_open(SegObject *s)
{
	if (!s->seg) {
		PyErr_SetString(PyExc_ValueError, "operation on a closed segment");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Lock / RLock                                                              */

typedef struct {
	PyObject_HEAD
	shval *h;
	SegObject *seg;
	int owner;          /* created here: remove the entry on dealloc */
	pid_t owner_pid;
	int shared_out;     /* pickled: never removed */
	int own_value_lock; /* a value's own lock (name is the value's) */
	char name[SHVAL_NAME_MAX + 1];
} LockObject;

static int is_lock(PyObject *o)
{
	return PyObject_TypeCheck(o, &LockType) || PyObject_TypeCheck(o, &RLockType);
}

static PyObject *lock_wrap(shval *h, SegObject *seg, int recursive,
			   int own_value_lock)
{
	LockObject *l = PyObject_New(LockObject, recursive ? &RLockType : &LockType);
	if (!l) {
		shval_close(h);
		return NULL;
	}
	l->h = h;
	Py_INCREF(seg);
	l->seg = seg;
	l->owner = 0;
	l->owner_pid = 0;
	l->shared_out = 0;
	l->own_value_lock = own_value_lock;
	struct shval_info info;
	l->name[0] = '\0';
	if (shval_info(h, &info) == 0)
		snprintf(l->name, sizeof l->name, "%s", info.name);
	return (PyObject *)l;
}

static void lock_dealloc(LockObject *l)
{
	shval_close(l->h);
	if (l->owner && !l->shared_out && l->owner_pid == getpid() && l->seg &&
	    l->seg->seg)
		(void)shval_remove(l->seg->seg, l->name); /* EMISUSE if in use */
	Py_XDECREF(l->seg);
	PyObject_Free(l);
}

static PyObject *lock_new_common(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"ctx", NULL};
	PyObject *ctx = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:Lock", kwlist, &ctx))
		return NULL;
	if (!shval_lock_create) {
		PyErr_SetString(PyExc_NotImplementedError,
				"shared locks pending in C library");
		return NULL;
	}
	SegObject *seg = anon_segobj();
	if (!seg)
		return NULL;
	char name[64];
	snprintf(name, sizeof name, "pylock.%ld.%lu", (long)getpid(), ++name_counter);
	shval *h;
	int recursive = tp == &RLockType;
	int r = shval_lock_create(seg->seg, name, recursive ? SHVAL_RLOCK : SHVAL_LOCK, &h);
	if (r) {
		seg_error(seg->seg, r);
		return NULL;
	}
	LockObject *l = (LockObject *)lock_wrap(h, seg, recursive, 0);
	if (!l)
		return NULL;
	l->owner = 1;
	l->owner_pid = getpid();
	return (PyObject *)l;
}

/* 1 acquired, 0 not (timeout / non-blocking), -1 error;
 * nested_ok: 2 if this thread already holds a non-recursive lock (the
 * library's own calls nest inside it) */
static int acquire_handle2(shval *h, int block, int64_t tmo, int nested_ok)
{
	int r = shval_trylock(h);
	if (r == -EBUSY) {
		if (!block)
			return 0;
		int64_t deadline = tmo < 0 ? -1 : now_ns() + tmo;
		for (;;) {
			int64_t slice = LOCK_SLICE_NS;
			if (deadline >= 0) {
				int64_t left = deadline - now_ns();
				if (left <= 0)
					return 0;
				if (left < slice)
					slice = left;
			}
			Py_BEGIN_ALLOW_THREADS
			r = shval_timedlock(h, slice);
			Py_END_ALLOW_THREADS
			if (r == SHVAL_EMISUSE && nested_ok)
				return 2;
			if (r == SHVAL_EMISUSE && deadline >= 0) {
				/* a non-recursive lock this thread holds: as
				 * multiprocessing, time out (a blocking acquire
				 * raises instead of hanging forever) */
				struct timespec ts = {0, (long)slice};
				Py_BEGIN_ALLOW_THREADS
				nanosleep(&ts, NULL);
				Py_END_ALLOW_THREADS
				r = -ETIMEDOUT;
			}
			if (r != -ETIMEDOUT)
				break;
			if (PyErr_CheckSignals() < 0)
				return -1;
		}
	}
	if (r == SHVAL_EOWNERDEAD) {
		if (PyErr_WarnEx(OwnerDiedWarning,
				 "the previous owner of a shval lock died holding "
				 "it; the value was rolled back to its last "
				 "committed state and the lock is now held",
				 1) < 0) {
			shval_unlock(h);
			return -1;
		}
		return 1;
	}
	if (r) {
		seg_error(shval_segment(h), r);
		return -1;
	}
	return 1;
}

static int acquire_handle(shval *h, int block, int64_t tmo)
{
	return acquire_handle2(h, block, tmo, 0);
}

static PyObject *lock_acquire(LockObject *l, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"block", "timeout", NULL};
	int block = 1;
	PyObject *tmo = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|pO:acquire", kwlist, &block, &tmo))
		return NULL;
	int64_t t = timeout_ns(tmo);
	if (t == -2)
		return NULL;
	int r = acquire_handle(l->h, block, t);
	if (r < 0)
		return NULL;
	return PyBool_FromLong(r);
}

static int release_handle(shval *h, int recursive)
{
	int r = shval_unlock(h);
	if (r == SHVAL_ENOTOWNER) {
		if (recursive)
			PyErr_SetString(PyExc_AssertionError,
					"attempt to release recursive lock not owned by thread");
		else
			PyErr_SetString(PyExc_ValueError,
					"semaphore or lock released too many times");
		return -1;
	}
	if (r) {
		seg_error(shval_segment(h), r);
		return -1;
	}
	return 0;
}

static PyObject *lock_release(LockObject *l, PyObject *Py_UNUSED(a))
{
	if (release_handle(l->h, Py_IS_TYPE(l, &RLockType)) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *lock_enter(LockObject *l, PyObject *Py_UNUSED(a))
{
	int r = acquire_handle(l->h, 1, -1);
	if (r < 0)
		return NULL;
	return PyBool_FromLong(r);
}

static PyObject *lock_exit(LockObject *l, PyObject *Py_UNUSED(a))
{
	return lock_release(l, NULL);
}

static PyObject *seg_ref(SegObject *s);

static PyObject *lock_reduce(LockObject *l, PyObject *Py_UNUSED(a))
{
	if (check_open(l->seg) < 0)
		return NULL;
	PyObject *ref = Py_NewRef((PyObject *)l->seg);
	l->shared_out = 1;
	PyObject *mod = PyImport_ImportModule("shval._shval");
	if (!mod) {
		Py_DECREF(ref);
		return NULL;
	}
	PyObject *fn = PyObject_GetAttrString(mod, "_rebuild_lock");
	Py_DECREF(mod);
	if (!fn) {
		Py_DECREF(ref);
		return NULL;
	}
	return Py_BuildValue("(N(Nsi))", fn, ref, l->name, Py_IS_TYPE(l, &RLockType));
}

static PyObject *lock_repr(LockObject *l)
{
	return PyUnicode_FromFormat("<shval.%s %s>", Py_IS_TYPE(l, &RLockType) ? "RLock" : "Lock",
				    l->name);
}

static PyMethodDef lock_methods[] = {
	{"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_VARARGS | METH_KEYWORDS,
	 "acquire(block=True, timeout=None) -> bool"},
	{"release", (PyCFunction)lock_release, METH_NOARGS, "release()"},
	{"__enter__", (PyCFunction)lock_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)lock_exit, METH_VARARGS, NULL},
	{"__reduce__", (PyCFunction)lock_reduce, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL}
};

/* ------------------------------------------------------------------------ */
/* values                                                                    */

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
	size_t esize, count, size;
	size_t selem;    /* array of ctypes Structures: element size */
	Py_ssize_t exports;
	uint64_t seen;
	shval_field_info *fields;
	size_t nfields;
	char name[SHVAL_NAME_MAX + 1];
	char type[SHVAL_TYPE_MAX + 1];
} ValObject;

#define LOCKED(v) ((v)->mode == SHVAL_RLOCK || (v)->mode == SHVAL_LOCK)

static int is_val(PyObject *o)
{
	return PyObject_TypeCheck(o, &SharedValueType) || PyObject_TypeCheck(o, &SharedArrayType);
}

static int is_sync(PyObject *o)
{
	return PyObject_TypeCheck(o, &SynchronizedType) ||
	       PyObject_TypeCheck(o, &SynchronizedArrayType);
}

static PyTypeObject *pick_type(unsigned kind, char letter, int sync)
{
	if (kind == SHVAL_KIND_ARRAY) {
		if (!sync)
			return &SharedArrayType;
		return letter == 'c' ? &SynchronizedStringType : &SynchronizedArrayType;
	}
	return sync ? &SynchronizedType : &SharedValueType;
}

static int issub(PyObject *t, PyObject *base);

static size_t ctypes_sizeof(PyObject *t)
{
	PyObject *ctypes = PyImport_ImportModule("ctypes");
	if (!ctypes)
		return 0;
	PyObject *csz = PyObject_CallMethod(ctypes, "sizeof", "O", t);
	Py_DECREF(ctypes);
	if (!csz)
		return 0;
	size_t n = PyLong_AsSize_t(csz);
	Py_DECREF(csz);
	if (n == (size_t)-1) {
		PyErr_Clear();
		return 0;
	}
	return n;
}

/* Wrap a handle; steals h (closed on failure). */
static PyObject *val_wrap(PyTypeObject *tp, shval *h, SegObject *seg,
			  PyObject *base, PyObject *ctype, PyObject *lock, int extlock)
{
	struct shval_info info;
	int r = shval_info(h, &info);
	if (r) {
		seg_error(shval_segment(h), r);
		if (!base)
			shval_close(h);
		return NULL;
	}
	if (info.kind == SHVAL_KIND_LOCK) {
		if (!base)
			shval_close(h);
		PyErr_SetString(PyExc_TypeError, "that name is a lock, not a value");
		return NULL;
	}
	ValObject *v = PyObject_New(ValObject, tp);
	if (!v) {
		if (!base)
			shval_close(h);
		return NULL;
	}
	v->h = h;
	Py_INCREF(seg);
	v->seg = seg;
	v->base = base;
	Py_XINCREF(base);
	v->lock = lock;
	Py_XINCREF(lock);
	v->ctype = ctype;
	Py_XINCREF(ctype);
	v->extlock = extlock;
	v->owner = 0;
	v->owner_pid = 0;
	v->shared_out = 0;
	v->kind = info.kind;
	v->mode = info.mode;
	v->size = info.size;
	v->count = info.count ? info.count : 1;
	v->exports = 0;
	v->fields = NULL;
	v->nfields = 0;
	snprintf(v->name, sizeof v->name, "%s", info.name);
	snprintf(v->type, sizeof v->type, "%s", info.type);
	size_t tl = strlen(info.type);
	v->letter = tl ? info.type[tl - 1] : 0;
	v->esize = letter_size(v->letter);
	if (v->kind == SHVAL_KIND_STRING)
		v->letter = 's';
	if (v->kind == SHVAL_KIND_STRUCT) {
		v->letter = 0;
		v->fields = PyMem_Calloc(info.count ? info.count : 1, sizeof(shval_field_info));
		if (!v->fields) {
			Py_DECREF(v);
			return PyErr_NoMemory();
		}
		for (size_t i = 0; i < info.count; i++) {
			if (shval_field_info_at(h, i, &v->fields[i]) != 0)
				break;
			v->nfields++;
		}
	}
	v->selem = 0;
	if (ctype && v->kind == SHVAL_KIND_ARRAY && issub(ctype, ct_struct)) {
		v->selem = ctypes_sizeof(ctype);
		if (!v->selem || v->size % v->selem) {
			Py_DECREF(v);
			PyErr_Format(PyExc_TypeError, "%R does not match the value's size", ctype);
			return NULL;
		}
		v->count = v->size / v->selem;
	}
	v->seen = shval_value_version(h);
	return (PyObject *)v;
}

static void val_dealloc(ValObject *v)
{
	if (!v->base) {
		shval_close(v->h);
		if (v->owner && !v->shared_out && v->owner_pid == getpid() &&
		    v->seg && v->seg->seg)
			(void)shval_remove(v->seg->seg, v->name);
	}
	Py_XDECREF(v->base);
	Py_XDECREF(v->lock);
	Py_XDECREF(v->ctype);
	Py_XDECREF(v->seg);
	PyMem_Free(v->fields);
	Py_TYPE(v)->tp_free((PyObject *)v);
}

/* The value's own lock object (a second handle on the value). */
static PyObject *own_lock(ValObject *v)
{
	if (v->lock) {
		Py_INCREF(v->lock);
		return v->lock;
	}
	if (!v->seg->seg) {
		PyErr_SetString(PyExc_ValueError, "the value's segment is closed");
		return NULL;
	}
	shval *h;
	int r = shval_find(v->seg->seg, v->name, NULL, &h);
	if (r) {
		seg_error(v->seg->seg, r);
		return NULL;
	}
	v->lock = lock_wrap(h, v->seg, v->mode == SHVAL_RLOCK, 1);
	Py_XINCREF(v->lock);
	return v->lock;
}

/* external lock around accesses (synchronized() of a raw value) */
static int ext_enter(ValObject *v)
{
	if (!v->extlock)
		return 0;
	int r = acquire_handle(((LockObject *)v->lock)->h, 1, -1);
	return r < 0 ? -1 : 0;
}

static void ext_exit(ValObject *v)
{
	if (!v->extlock)
		return;
	PyObject *t, *val, *tb;
	PyErr_Fetch(&t, &val, &tb);
	(void)shval_unlock(((LockObject *)v->lock)->h);
	PyErr_Restore(t, val, tb);
}

/* Calls on locked values: take the lock first through acquire_handle()
 * (uncontended: a trylock, no GIL release; contended: waits with the GIL
 * released, wakes up for KeyboardInterrupt, warns on a dead owner), run
 * the call as a nested section, unlock.  PYERR: a Python error is set. */
#define PYERR INT32_MIN
#define CALL(v, expr)                                                  \
	do {                                                           \
		if (LOCKED(v)) {                                       \
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

static int handle_rc(ValObject *v, int r)
{
	if (r == 0)
		return 0;
	if (r == PYERR)
		return -1;
	if (r == SHVAL_EOWNERDEAD) {
		/* the library recovered and completed the operation */
		return PyErr_WarnEx(OwnerDiedWarning,
				    "the previous owner of the value's lock died "
				    "holding it; the value was rolled back",
				    1);
	}
	seg_error(shval_segment(v->h), r);
	return -1;
}

/* ---- struct fields ---- */

static void field_shape(const shval_field_info *f, size_t *count, char *letter)
{
	size_t n = 0;
	const char *p = f->type;
	while (*p >= '0' && *p <= '9')
		n = n * 10 + (size_t)(*p++ - '0');
	*count = p == f->type ? 1 : n;
	size_t l = strlen(f->type);
	*letter = l ? f->type[l - 1] : 0;
}

static PyObject *bytes_to_nul(const char *b, size_t n)
{
	size_t k = 0;
	while (k < n && b[k])
		k++;
	return PyBytes_FromStringAndSize(b, (Py_ssize_t)k);
}

static PyObject *wchars_to_nul(const uint32_t *w, size_t n)
{
	size_t k = 0;
	while (k < n && w[k])
		k++;
	for (size_t i = 0; i < k; i++)
		if (w[i] > 0x10ffff) {
			PyErr_SetString(PyExc_ValueError, "invalid code point");
			return NULL;
		}
	return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, w, (Py_ssize_t)k);
}

/* bytes of field type (count, letter) -> Python */
static PyObject *field_to_py(size_t count, char letter, const unsigned char *b)
{
	if (letter == 's') {
		uint32_t len;
		memcpy(&len, b, 4);
		if (len > count)
			len = (uint32_t)count;
		return PyBytes_FromStringAndSize((const char *)b + 4, len);
	}
	if (count == 1)
		return elem_to_py(letter, b);
	if (letter == 'c')
		return bytes_to_nul((const char *)b, count);
	if (letter == 'u') {
		uint32_t *w = PyMem_Malloc(count * 4);
		if (!w)
			return PyErr_NoMemory();
		memcpy(w, b, count * 4);
		PyObject *s = wchars_to_nul(w, count);
		PyMem_Free(w);
		return s;
	}
	size_t es = letter_size(letter);
	PyObject *l = PyList_New((Py_ssize_t)count);
	if (!l)
		return NULL;
	for (size_t i = 0; i < count; i++) {
		PyObject *e = elem_to_py(letter, b + i * es);
		if (!e) {
			Py_DECREF(l);
			return NULL;
		}
		PyList_SET_ITEM(l, (Py_ssize_t)i, e);
	}
	return l;
}

/* Python -> bytes of field type into b (size bytes, zeroed by caller) */
static int field_from_py(size_t count, char letter, PyObject *o, unsigned char *b)
{
	if (letter == 's' || (count > 1 && letter == 'c')) {
		Py_buffer view;
		PyObject *enc = NULL;
		if (PyUnicode_Check(o)) {
			enc = PyUnicode_AsUTF8String(o);
			if (!enc)
				return -1;
			o = enc;
		}
		if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0) {
			Py_XDECREF(enc);
			return -1;
		}
		if ((size_t)view.len > count) {
			PyErr_Format(PyExc_ValueError,
				     "byte string too long (%zd bytes, capacity %zu)",
				     view.len, count);
			PyBuffer_Release(&view);
			Py_XDECREF(enc);
			return -1;
		}
		if (letter == 's') {
			uint32_t len = (uint32_t)view.len;
			memcpy(b, &len, 4);
			memcpy(b + 4, view.buf, (size_t)view.len);
		} else {
			memcpy(b, view.buf, (size_t)view.len);
		}
		PyBuffer_Release(&view);
		Py_XDECREF(enc);
		return 0;
	}
	if (count == 1)
		return elem_from_py(letter, o, b);
	if (letter == 'u' && PyUnicode_Check(o)) {
		Py_ssize_t n = PyUnicode_GET_LENGTH(o);
		if ((size_t)n > count) {
			PyErr_SetString(PyExc_ValueError, "string too long");
			return -1;
		}
		for (Py_ssize_t i = 0; i < n; i++) {
			uint32_t cp = PyUnicode_READ_CHAR(o, i);
			memcpy(b + 4 * i, &cp, 4);
		}
		return 0;
	}
	PyObject *seq = PySequence_Fast(o, "a sequence is required");
	if (!seq)
		return -1;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	if ((size_t)n > count) {
		PyErr_SetString(PyExc_ValueError, "too many initializers");
		Py_DECREF(seq);
		return -1;
	}
	size_t es = letter_size(letter);
	for (Py_ssize_t i = 0; i < n; i++)
		if (elem_from_py(letter, PySequence_Fast_GET_ITEM(seq, i), b + (size_t)i * es) < 0) {
			Py_DECREF(seq);
			return -1;
		}
	Py_DECREF(seq);
	return 0;
}

static const shval_field_info *find_field(ValObject *v, PyObject *name)
{
	if (!v->nfields || !PyUnicode_Check(name))
		return NULL;
	const char *n = PyUnicode_AsUTF8(name);
	if (!n) {
		PyErr_Clear();
		return NULL;
	}
	for (size_t i = 0; i < v->nfields; i++)
		if (v->fields[i].name[0] && strcmp(v->fields[i].name, n) == 0)
			return &v->fields[i];
	return NULL;
}

static PyObject *field_get(ValObject *v, const shval_field_info *f)
{
	unsigned char stackbuf[256];
	unsigned char *b = f->size <= sizeof stackbuf ? stackbuf : PyMem_Malloc(f->size);
	if (!b)
		return PyErr_NoMemory();
	PyObject *res = NULL;
	if (ext_enter(v) < 0)
		goto out;
	int r;
	CALL(v, shval_field_get(v->h, f->name, b, f->size, NULL));
	ext_exit(v);
	if (handle_rc(v, r) < 0)
		goto out;
	size_t count;
	char letter;
	field_shape(f, &count, &letter);
	res = field_to_py(count, letter, b);
out:
	if (b != stackbuf)
		PyMem_Free(b);
	return res;
}

static int field_set(ValObject *v, const shval_field_info *f, PyObject *o)
{
	if (!o) {
		PyErr_SetString(PyExc_TypeError, "cannot delete a field");
		return -1;
	}
	unsigned char *b = PyMem_Calloc(1, f->size ? f->size : 1);
	if (!b) {
		PyErr_NoMemory();
		return -1;
	}
	size_t count;
	char letter;
	field_shape(f, &count, &letter);
	int ret = -1;
	if (field_from_py(count, letter, o, b) < 0)
		goto out;
	if (ext_enter(v) < 0)
		goto out;
	int r;
	CALL(v, shval_field_set(v->h, f->name, b, f->size));
	ext_exit(v);
	ret = handle_rc(v, r);
out:
	PyMem_Free(b);
	return ret;
}

static PyObject *val_getattro(PyObject *o, PyObject *name)
{
	ValObject *v = (ValObject *)o;
	const shval_field_info *f = find_field(v, name);
	if (f)
		return field_get(v, f);
	return PyObject_GenericGetAttr(o, name);
}

static int val_setattro(PyObject *o, PyObject *name, PyObject *value)
{
	ValObject *v = (ValObject *)o;
	const shval_field_info *f = find_field(v, name);
	if (f)
		return field_set(v, f, value);
	return PyObject_GenericSetAttr(o, name, value);
}

/* ---- whole-value read as bytes ---- */

static PyObject *read_bytes(ValObject *v)
{
	PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)v->size);
	if (!b)
		return NULL;
	if (ext_enter(v) < 0) {
		Py_DECREF(b);
		return NULL;
	}
	int r;
	char *p = PyBytes_AS_STRING(b);
	CALL(v, shval_read(v->h, p, v->size));
	ext_exit(v);
	if (handle_rc(v, r) < 0) {
		Py_DECREF(b);
		return NULL;
	}
	return b;
}

/* ---- .value ---- */

static PyObject *struct_value(ValObject *v)
{
	if (v->ctype) {
		PyObject *b = read_bytes(v);
		if (!b)
			return NULL;
		PyObject *res = PyObject_CallMethod(v->ctype, "from_buffer_copy", "O", b);
		Py_DECREF(b);
		return res;
	}
	PyObject *d = PyDict_New();
	if (!d)
		return NULL;
	for (size_t i = 0; i < v->nfields; i++) {
		PyObject *x = field_get(v, &v->fields[i]);
		if (!x || PyDict_SetItemString(d, v->fields[i].name[0] ? v->fields[i].name : "?", x) < 0) {
			Py_XDECREF(x);
			Py_DECREF(d);
			return NULL;
		}
		Py_DECREF(x);
	}
	return d;
}

static PyObject *arr_value_get(ValObject *v);
static int arr_value_set(ValObject *v, PyObject *o);

static PyObject *val_value_get(ValObject *v, void *Py_UNUSED(c))
{
	v->seen = shval_value_version(v->h);
	if (v->kind == SHVAL_KIND_SCALAR) {
		unsigned char b[16];
		if (ext_enter(v) < 0)
			return NULL;
		int r = shval_read(v->h, b, sizeof b); /* seqlock: never blocks */
		ext_exit(v);
		if (handle_rc(v, r) < 0)
			return NULL;
		return elem_to_py(v->letter, b);
	}
	if (v->kind == SHVAL_KIND_STRING) {
		PyObject *raw = read_bytes(v);
		if (!raw)
			return NULL;
		PyObject *res = field_to_py(v->count, 's', (unsigned char *)PyBytes_AS_STRING(raw));
		Py_DECREF(raw);
		return res;
	}
	if (v->kind == SHVAL_KIND_STRUCT)
		return struct_value(v);
	if (v->kind == SHVAL_KIND_ARRAY)
		return arr_value_get(v);
	PyErr_SetString(PyExc_TypeError, "unsupported value kind");
	return NULL;
}

static int write_bytes(ValObject *v, const void *b, size_t n)
{
	if (ext_enter(v) < 0)
		return -1;
	int r;
	CALL(v, shval_write(v->h, b, n));
	ext_exit(v);
	if (handle_rc(v, r) < 0)
		return -1;
	v->seen = shval_value_version(v->h);
	return 0;
}

static int val_value_set(ValObject *v, PyObject *o, void *Py_UNUSED(c))
{
	if (!o) {
		PyErr_SetString(PyExc_AttributeError, "cannot delete value");
		return -1;
	}
	if (v->kind == SHVAL_KIND_SCALAR) {
		unsigned char b[16] = {0};
		if (elem_from_py(v->letter, o, b) < 0)
			return -1;
		return write_bytes(v, b, v->size);
	}
	if (v->kind == SHVAL_KIND_STRING) {
		unsigned char *b = PyMem_Calloc(1, v->size);
		if (!b) {
			PyErr_NoMemory();
			return -1;
		}
		int ret = field_from_py(v->count, 's', o, b);
		if (ret == 0)
			ret = write_bytes(v, b, v->size);
		PyMem_Free(b);
		return ret;
	}
	if (v->kind == SHVAL_KIND_ARRAY)
		return arr_value_set(v, o);
	if (v->kind == SHVAL_KIND_STRUCT) {
		if (PyDict_Check(o)) {
			PyObject *k, *x;
			Py_ssize_t pos = 0;
			while (PyDict_Next(o, &pos, &k, &x)) {
				const shval_field_info *f = find_field(v, k);
				if (!f) {
					PyErr_Format(PyExc_AttributeError, "no field %R", k);
					return -1;
				}
				if (field_set(v, f, x) < 0)
					return -1;
			}
			return 0;
		}
		Py_buffer view;
		if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0)
			return -1;
		int ret;
		if ((size_t)view.len != v->size) {
			PyErr_Format(PyExc_ValueError, "expected %zu bytes, got %zd", v->size, view.len);
			ret = -1;
		} else {
			ret = write_bytes(v, view.buf, v->size);
		}
		PyBuffer_Release(&view);
		return ret;
	}
	PyErr_SetString(PyExc_TypeError, "unsupported value kind");
	return -1;
}

/* ---- atomics, version, wait ---- */

static int need_scalar(ValObject *v)
{
	if (v->kind != SHVAL_KIND_SCALAR || !strchr("bBhHiIlLqQnNfdcu?", v->letter)) {
		PyErr_Format(PyExc_TypeError, "value of type '%s' is not a number", v->type);
		return -1;
	}
	return 0;
}

static PyObject *val_add(ValObject *v, PyObject *delta)
{
	if (need_scalar(v) < 0 || ext_enter(v) < 0)
		return NULL;
	int r;
	PyObject *res = NULL;
	if (is_float(v->letter)) {
		double d = PyFloat_AsDouble(delta), out = 0;
		if (d == -1.0 && PyErr_Occurred())
			goto out;
		CALL(v, shval_add_f64(v->h, d, &out));
		if (handle_rc(v, r) == 0)
			res = PyFloat_FromDouble(out);
	} else {
		int of = 0;
		if (!PyLong_Check(delta)) {
			PyErr_SetString(PyExc_TypeError, "an integer delta is required");
			goto out;
		}
		long long d = PyLong_AsLongLongAndOverflow(delta, &of);
		if (of) {
			PyErr_SetString(PyExc_ValueError, "delta out of 64-bit range");
			goto out;
		}
		if (d == -1 && PyErr_Occurred())
			goto out;
		int64_t out = 0;
		CALL(v, shval_add_i64(v->h, d, &out));
		if (handle_rc(v, r) == 0)
			res = i64_to_py(v->letter, out);
	}
out:
	ext_exit(v);
	return res;
}

static PyObject *val_cas(ValObject *v, PyObject *args)
{
	PyObject *exp, *des;
	if (!PyArg_ParseTuple(args, "OO:cas", &exp, &des))
		return NULL;
	if (need_scalar(v) < 0)
		return NULL;
	int r;
	if (is_float(v->letter)) {
		unsigned char b[8];
		/* round through the value's type so 'f' compares its own bits */
		if (elem_from_py(v->letter, exp, b) < 0)
			return NULL;
		double e = v->letter == 'f' ? (double)*(float *)b : *(double *)b;
		if (elem_from_py(v->letter, des, b) < 0)
			return NULL;
		double d = v->letter == 'f' ? (double)*(float *)b : *(double *)b;
		if (ext_enter(v) < 0)
			return NULL;
		CALL(v, shval_cas_f64(v->h, &e, d));
		ext_exit(v);
	} else {
		int64_t e, d;
		if (py_to_i64(v->letter, exp, &e) < 0 || py_to_i64(v->letter, des, &d) < 0)
			return NULL;
		if (ext_enter(v) < 0)
			return NULL;
		CALL(v, shval_cas_i64(v->h, &e, d));
		ext_exit(v);
	}
	if (r == SHVAL_ECHANGED)
		Py_RETURN_FALSE;
	if (handle_rc(v, r) < 0)
		return NULL;
	Py_RETURN_TRUE;
}

static PyObject *val_exchange(ValObject *v, PyObject *o)
{
	if (need_scalar(v) < 0)
		return NULL;
	int r;
	if (is_float(v->letter)) {
		unsigned char b[8];
		if (elem_from_py(v->letter, o, b) < 0)
			return NULL;
		double d = v->letter == 'f' ? (double)*(float *)b : *(double *)b;
		if (ext_enter(v) < 0)
			return NULL;
		double cur = 0;
		do {
			CALL(v, shval_get_f64(v->h, &cur));
			if (r)
				break;
			CALL(v, shval_cas_f64(v->h, &cur, d));
		} while (r == SHVAL_ECHANGED);
		ext_exit(v);
		if (handle_rc(v, r) < 0)
			return NULL;
		return PyFloat_FromDouble(cur);
	}
	int64_t x, old = 0;
	if (py_to_i64(v->letter, o, &x) < 0 || ext_enter(v) < 0)
		return NULL;
	CALL(v, shval_exchange_i64(v->h, x, &old));
	ext_exit(v);
	if (handle_rc(v, r) < 0)
		return NULL;
	return i64_to_py(v->letter, old);
}

static PyObject *val_version(ValObject *v, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(shval_value_version(v->h));
}

static PyObject *val_wait(ValObject *v, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"timeout", "version", NULL};
	PyObject *tmo = Py_None, *ver = Py_None;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:wait", kwlist, &tmo, &ver))
		return NULL;
	int64_t t = timeout_ns(tmo);
	if (t == -2)
		return NULL;
	uint64_t seen = v->seen;
	if (ver != Py_None) {
		seen = PyLong_AsUnsignedLongLong(ver);
		if (seen == (uint64_t)-1 && PyErr_Occurred())
			return NULL;
	}
	int64_t deadline = t < 0 ? -1 : now_ns() + t;
	for (;;) {
		int64_t left = SHVAL_FOREVER;
		if (deadline >= 0) {
			left = deadline - now_ns();
			if (left < 0)
				left = 0;
		}
		int r;
		Py_BEGIN_ALLOW_THREADS
		r = shval_wait(v->h, &seen, left);
		Py_END_ALLOW_THREADS
		if (r == 0) {
			v->seen = seen;
			Py_RETURN_TRUE;
		}
		if (r == -ETIMEDOUT)
			Py_RETURN_FALSE;
		if (r == -EINTR) {
			if (PyErr_CheckSignals() < 0)
				return NULL;
			continue;
		}
		seg_error(shval_segment(v->h), r);
		return NULL;
	}
}

/* ---- synchronized wrapper methods ---- */

static PyObject *sync_get_lock(ValObject *v, PyObject *Py_UNUSED(a))
{
	return own_lock(v);
}

static PyObject *sync_get_obj(ValObject *v, PyObject *Py_UNUSED(a))
{
	PyTypeObject *tp = pick_type(v->kind, v->letter, 0);
	PyObject *owner = v->base ? v->base : (PyObject *)v;
	return val_wrap(tp, v->h, v->seg, owner, v->ctype, NULL, 0);
}

static PyObject *sync_acquire(ValObject *v, PyObject *args, PyObject *kw)
{
	PyObject *l = own_lock(v);
	if (!l)
		return NULL;
	PyObject *res = lock_acquire((LockObject *)l, args, kw);
	Py_DECREF(l);
	return res;
}

static PyObject *sync_release(ValObject *v, PyObject *Py_UNUSED(a))
{
	PyObject *l = own_lock(v);
	if (!l)
		return NULL;
	PyObject *res = lock_release((LockObject *)l, NULL);
	Py_DECREF(l);
	return res;
}

static PyObject *sync_enter(ValObject *v, PyObject *Py_UNUSED(a))
{
	PyObject *l = own_lock(v);
	if (!l)
		return NULL;
	PyObject *res = lock_enter((LockObject *)l, NULL);
	Py_DECREF(l);
	return res;
}

/* ---- repr ---- */

static const char *ctypes_name(char c)
{
	switch (c) {
	case 'c': return "c_char"; case 'b': return "c_byte"; case 'B': return "c_ubyte";
	case 'h': return "c_short"; case 'H': return "c_ushort"; case 'i': return "c_int";
	case 'I': return "c_uint"; case 'l': return "c_long"; case 'L': return "c_ulong";
	case 'q': return "c_longlong"; case 'Q': return "c_ulonglong";
	case 'f': return "c_float"; case 'd': return "c_double"; case 'u': return "c_wchar";
	case '?': return "c_bool"; case 'n': return "c_ssize_t"; case 'N': return "c_size_t";
	}
	return "shval";
}

static PyObject *raw_repr(ValObject *v)
{
	PyObject *val = val_value_get(v, NULL);
	if (!val)
		return NULL;
	PyObject *res;
	if (v->kind == SHVAL_KIND_SCALAR)
		res = PyUnicode_FromFormat("%s(%R)", ctypes_name(v->letter), val);
	else if (v->kind == SHVAL_KIND_ARRAY)
		res = PyUnicode_FromFormat("%s_Array_%zu(%R)", ctypes_name(v->letter), v->count, val);
	else
		res = PyUnicode_FromFormat("shval(%s: %R)", v->type, val);
	Py_DECREF(val);
	return res;
}

static PyObject *val_repr(ValObject *v)
{
	PyObject *inner = NULL;
	if (v->kind == SHVAL_KIND_ARRAY) {
		PyObject *l = PySequence_List((PyObject *)v);
		if (!l)
			return NULL;
		inner = PyUnicode_FromFormat("%s_Array_%zu(%R)", ctypes_name(v->letter), v->count, l);
		Py_DECREF(l);
	} else if (v->kind == SHVAL_KIND_STRUCT) {
		PyObject *parts = PyList_New(0);
		if (!parts)
			return NULL;
		for (size_t i = 0; i < v->nfields; i++) {
			PyObject *x = field_get(v, &v->fields[i]);
			PyObject *p = x ? PyUnicode_FromFormat("%s=%R", v->fields[i].name, x) : NULL;
			Py_XDECREF(x);
			if (!p || PyList_Append(parts, p) < 0) {
				Py_XDECREF(p);
				Py_DECREF(parts);
				return NULL;
			}
			Py_DECREF(p);
		}
		PyObject *sep = PyUnicode_FromString(", ");
		PyObject *joined = sep ? PyUnicode_Join(sep, parts) : NULL;
		Py_XDECREF(sep);
		Py_DECREF(parts);
		if (!joined)
			return NULL;
		if (v->ctype)
			inner = PyUnicode_FromFormat("%s(%U)", ((PyTypeObject *)v->ctype)->tp_name, joined);
		else
			inner = PyUnicode_FromFormat("struct(%U)", joined);
		Py_DECREF(joined);
	} else if (v->kind == SHVAL_KIND_STRING) {
		PyObject *val = val_value_get(v, NULL);
		if (!val)
			return NULL;
		inner = PyUnicode_FromFormat("shval(%s: %R)", v->type, val);
		Py_DECREF(val);
	} else {
		inner = raw_repr(v);
	}
	if (!inner || !is_sync((PyObject *)v))
		return inner;
	const char *tn = Py_TYPE(v)->tp_name;
	const char *dot = strrchr(tn, '.');
	PyObject *res = PyUnicode_FromFormat("<%s wrapper for %U>", dot ? dot + 1 : tn, inner);
	Py_DECREF(inner);
	return res;
}

/* ---- pickling ---- */

static PyObject *seg_ref(SegObject *s)
{
	if (check_open(s) < 0)
		return NULL;
	if (!s->anon)
		return PyUnicode_FromString(shval_seg_name(s->seg));
	PyObject *red = PyImport_ImportModule("multiprocessing.reduction");
	if (!red)
		return NULL;
	PyObject *dup = PyObject_CallMethod(red, "DupFd", "i", shval_seg_fd(s->seg));
	Py_DECREF(red);
	if (!dup)
		return NULL;
	return Py_BuildValue("(NKK)", dup, (unsigned long long)s->dev, (unsigned long long)s->ino);
}

static PyObject *module_attr(const char *name)
{
	PyObject *mod = PyImport_ImportModule("shval._shval");
	if (!mod)
		return NULL;
	PyObject *fn = PyObject_GetAttrString(mod, name);
	Py_DECREF(mod);
	return fn;
}

static PyObject *val_reduce(ValObject *v, PyObject *Py_UNUSED(a))
{
	if (check_open(v->seg) < 0)
		return NULL;
	PyObject *ref = Py_NewRef((PyObject *)v->seg);
	ValObject *root = v->base ? (ValObject *)v->base : v;
	root->shared_out = 1;
	v->shared_out = 1;
	PyObject *fn = module_attr("_rebuild_value");
	if (!fn) {
		Py_DECREF(ref);
		return NULL;
	}
	PyObject *lk = Py_None;
	int sync = is_sync((PyObject *)v);
	if (sync && v->lock && !((LockObject *)v->lock)->own_value_lock)
		lk = v->lock;
	return Py_BuildValue("(N(NsiOOi))", fn, ref, v->name, sync,
			     v->ctype ? v->ctype : Py_None, lk, v->extlock);
}

/* ---- buffer protocol (zero-copy) ---- */

static const char *buf_format(ValObject *v)
{
	switch (v->letter) {
	case 'c': return "c"; case 'b': return "b"; case 'B': return "B";
	case 'h': return "h"; case 'H': return "H"; case 'i': return "i";
	case 'I': return "I"; case 'l': return "l"; case 'L': return "L";
	case 'q': return "q"; case 'Q': return "Q"; case 'n': return "n";
	case 'N': return "N"; case 'f': return "f"; case 'd': return "d";
	case '?': return "?"; case 'u': return "w";
	}
	return "B";
}

static int val_getbuffer(ValObject *v, Py_buffer *view, int flags)
{
	void *p = shval_data(v->h);
	if (!p) {
		/* a live value without memory (a Redis segment's): EMODE */
		struct shval_info in;
		if (shval_info(v->h, &in) == 0)
			set_error(SHVAL_EMODE, shval_errmsg(shval_segment(v->h)));
		else
			set_error(SHVAL_ESTALE, "the value was removed");
		view->obj = NULL;
		return -1;
	}
	int structured = v->kind == SHVAL_KIND_STRUCT || v->kind == SHVAL_KIND_STRING;
	view->buf = p;
	view->obj = (PyObject *)v;
	Py_INCREF(v);
	view->len = (Py_ssize_t)v->size;
	view->readonly = 0;
	view->itemsize = structured ? 1 : (Py_ssize_t)v->esize;
	view->format = (flags & PyBUF_FORMAT) ? (char *)(structured ? "B" : buf_format(v)) : NULL;
	view->ndim = v->kind == SHVAL_KIND_SCALAR ? 0 : 1;
	view->shape = NULL;
	view->strides = NULL;
	view->suboffsets = NULL;
	view->internal = NULL;
	if (view->ndim == 1 && (flags & PyBUF_ND) == PyBUF_ND) {
		Py_ssize_t *sh = PyMem_Malloc(2 * sizeof(Py_ssize_t));
		if (!sh) {
			Py_DECREF(v);
			view->obj = NULL;
			PyErr_NoMemory();
			return -1;
		}
		sh[0] = view->len / view->itemsize;
		sh[1] = view->itemsize;
		view->shape = sh;
		if ((flags & PyBUF_STRIDES) == PyBUF_STRIDES)
			view->strides = &sh[1];
		view->internal = sh;
	} else if (view->ndim == 1 && !(flags & PyBUF_FORMAT)) {
		view->itemsize = 1;
	}
	v->exports++;
	return 0;
}

static void val_releasebuffer(ValObject *v, Py_buffer *view)
{
	PyMem_Free(view->internal);
	v->exports--;
}

static PyBufferProcs val_as_buffer = {
	(getbufferproc)val_getbuffer, (releasebufferproc)val_releasebuffer
};

/* ---- arrays ---- */

static int arr_get(ValObject *v, size_t i, size_t n, void *buf)
{
	if (n == 0)
		return 0;
	if (ext_enter(v) < 0)
		return -1;
	int r;
	CALL(v, shval_array_get(v->h, i, n, buf));
	ext_exit(v);
	return handle_rc(v, r);
}

static int arr_set(ValObject *v, size_t i, size_t n, const void *buf)
{
	if (n == 0)
		return 0;
	if (ext_enter(v) < 0)
		return -1;
	int r;
	CALL(v, shval_array_set(v->h, i, n, buf));
	ext_exit(v);
	if (handle_rc(v, r) < 0)
		return -1;
	v->seen = shval_value_version(v->h);
	return 0;
}

static Py_ssize_t arr_len(ValObject *v)
{
	return (Py_ssize_t)v->count;
}

/* elements as a Python object: bytes for 'c', str for 'u', else list */
static PyObject *elems_to_py(ValObject *v, const unsigned char *b, size_t n)
{
	if (v->letter == 'c')
		return PyBytes_FromStringAndSize((const char *)b, (Py_ssize_t)n);
	if (v->letter == 'u') {
		for (size_t i = 0; i < n; i++) {
			uint32_t cp;
			memcpy(&cp, b + 4 * i, 4);
			if (cp > 0x10ffff) {
				PyErr_SetString(PyExc_ValueError, "invalid code point");
				return NULL;
			}
		}
		return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, b, (Py_ssize_t)n);
	}
	PyObject *l = PyList_New((Py_ssize_t)n);
	if (!l)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		PyObject *e = elem_to_py(v->letter, b + i * v->esize);
		if (!e) {
			Py_DECREF(l);
			return NULL;
		}
		PyList_SET_ITEM(l, (Py_ssize_t)i, e);
	}
	return l;
}

/* bytes of one ctypes Structure element from an instance or a tuple */
static int selem_bytes(ValObject *v, PyObject *o, unsigned char *b)
{
	PyObject *obj;
	int inst = PyObject_IsInstance(o, v->ctype);
	if (inst < 0)
		return -1;
	if (inst) {
		obj = o;
		Py_INCREF(obj);
	} else if (PyTuple_Check(o)) {
		obj = PyObject_CallObject(v->ctype, o);
	} else {
		PyErr_Format(PyExc_TypeError, "expected %R instance or a tuple, got %.100s",
			     v->ctype, Py_TYPE(o)->tp_name);
		return -1;
	}
	if (!obj)
		return -1;
	Py_buffer view;
	if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
		Py_DECREF(obj);
		return -1;
	}
	int r = 0;
	if ((size_t)view.len != v->selem) {
		PyErr_SetString(PyExc_TypeError, "structure size mismatch");
		r = -1;
	} else {
		memcpy(b, view.buf, v->selem);
	}
	PyBuffer_Release(&view);
	Py_DECREF(obj);
	return r;
}

static PyObject *arr_item(ValObject *v, Py_ssize_t i)
{
	if (i < 0 || (size_t)i >= v->count) {
		PyErr_SetString(PyExc_IndexError, "invalid index");
		return NULL;
	}
	if (v->selem) /* a ctypes view into shared memory, as multiprocessing */
		return PyObject_CallMethod(v->ctype, "from_buffer", "On", (PyObject *)v,
					   (Py_ssize_t)((size_t)i * v->selem));
	unsigned char b[16];
	if (arr_get(v, (size_t)i, 1, b) < 0)
		return NULL;
	return elem_to_py(v->letter, b);
}

static PyObject *arr_subscript(ValObject *v, PyObject *key)
{
	if (PyIndex_Check(key)) {
		Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
		if (i == -1 && PyErr_Occurred())
			return NULL;
		if (i < 0)
			i += (Py_ssize_t)v->count;
		return arr_item(v, i);
	}
	if (!PySlice_Check(key)) {
		PyErr_SetString(PyExc_TypeError, "indices must be integers");
		return NULL;
	}
	Py_ssize_t start, stop, step;
	if (PySlice_Unpack(key, &start, &stop, &step) < 0)
		return NULL;
	Py_ssize_t n = PySlice_AdjustIndices((Py_ssize_t)v->count, &start, &stop, step);
	if (v->selem) {
		PyObject *l = PyList_New(n);
		for (Py_ssize_t k = 0, i = start; l && k < n; k++, i += step) {
			PyObject *e = arr_item(v, i);
			if (!e) {
				Py_CLEAR(l);
				break;
			}
			PyList_SET_ITEM(l, k, e);
		}
		return l;
	}
	unsigned char *b = PyMem_Malloc((size_t)(n ? n : 1) * v->esize);
	if (!b)
		return PyErr_NoMemory();
	PyObject *res = NULL;
	if (step == 1) {
		if (arr_get(v, (size_t)start, (size_t)n, b) == 0)
			res = elems_to_py(v, b, (size_t)n);
	} else {
		unsigned char *all = PyMem_Malloc(v->size ? v->size : 1);
		if (!all) {
			PyMem_Free(b);
			return PyErr_NoMemory();
		}
		if (arr_get(v, 0, v->count, all) == 0) {
			for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
				memcpy(b + (size_t)k * v->esize, all + (size_t)i * v->esize, v->esize);
			res = elems_to_py(v, b, (size_t)n);
		}
		PyMem_Free(all);
	}
	PyMem_Free(b);
	return res;
}

static int arr_ass_subscript(ValObject *v, PyObject *key, PyObject *value)
{
	if (!value) {
		PyErr_SetString(PyExc_TypeError, "Array does not support item deletion");
		return -1;
	}
	if (PyIndex_Check(key)) {
		Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
		if (i == -1 && PyErr_Occurred())
			return -1;
		if (i < 0)
			i += (Py_ssize_t)v->count;
		if (i < 0 || (size_t)i >= v->count) {
			PyErr_SetString(PyExc_IndexError, "invalid index");
			return -1;
		}
		if (v->selem) {
			unsigned char *sb = PyMem_Malloc(v->selem);
			if (!sb) {
				PyErr_NoMemory();
				return -1;
			}
			int rr = selem_bytes(v, value, sb);
			if (rr == 0)
				rr = arr_set(v, (size_t)i * v->selem, v->selem, sb);
			PyMem_Free(sb);
			return rr;
		}
		unsigned char b[16];
		if (elem_from_py(v->letter, value, b) < 0)
			return -1;
		return arr_set(v, (size_t)i, 1, b);
	}
	if (!PySlice_Check(key)) {
		PyErr_SetString(PyExc_TypeError, "indices must be integers");
		return -1;
	}
	Py_ssize_t start, stop, step;
	if (PySlice_Unpack(key, &start, &stop, &step) < 0)
		return -1;
	Py_ssize_t n = PySlice_AdjustIndices((Py_ssize_t)v->count, &start, &stop, step);
	PyObject *seq = PySequence_Fast(value, "can only assign a sequence");
	if (!seq)
		return -1;
	if (PySequence_Fast_GET_SIZE(seq) != n) {
		Py_DECREF(seq);
		PyErr_SetString(PyExc_ValueError, "Can only assign sequence of same size");
		return -1;
	}
	if (v->selem) {
		for (Py_ssize_t k = 0, i = start; k < n; k++, i += step) {
			PyObject *ix = PyLong_FromSsize_t(i);
			int rr = ix ? arr_ass_subscript(v, ix, PySequence_Fast_GET_ITEM(seq, k)) : -1;
			Py_XDECREF(ix);
			if (rr < 0) {
				Py_DECREF(seq);
				return -1;
			}
		}
		Py_DECREF(seq);
		return 0;
	}
	unsigned char *b = PyMem_Malloc((size_t)(n ? n : 1) * v->esize);
	if (!b) {
		Py_DECREF(seq);
		PyErr_NoMemory();
		return -1;
	}
	int ret = -1;
	for (Py_ssize_t k = 0; k < n; k++)
		if (elem_from_py(v->letter, PySequence_Fast_GET_ITEM(seq, k), b + (size_t)k * v->esize) < 0)
			goto out;
	if (step == 1) {
		ret = arr_set(v, (size_t)start, (size_t)n, b);
	} else if (n > 0) {
		/* read-modify-write of the whole array, under the lock if any */
		unsigned char *all = PyMem_Malloc(v->size);
		if (!all) {
			PyErr_NoMemory();
			goto out;
		}
		int locked = LOCKED(v) && !v->extlock ? acquire_handle2(v->h, 1, -1, 1) : 0;
		if (locked < 0) {
			PyMem_Free(all);
			goto out;
		}
		if (arr_get(v, 0, v->count, all) == 0) {
			for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
				memcpy(all + (size_t)i * v->esize, b + (size_t)k * v->esize, v->esize);
			ret = arr_set(v, 0, v->count, all);
		}
		if (locked == 1)
			(void)shval_unlock(v->h);
		PyMem_Free(all);
	} else {
		ret = 0;
	}
out:
	PyMem_Free(b);
	Py_DECREF(seq);
	return ret;
}

static PyObject *arr_iter(ValObject *v)
{
	if (v->selem) {
		PyObject *all = PySlice_New(NULL, NULL, NULL);
		PyObject *l = all ? arr_subscript(v, all) : NULL;
		Py_XDECREF(all);
		PyObject *it = l ? PyObject_GetIter(l) : NULL;
		Py_XDECREF(l);
		return it;
	}
	unsigned char *all = PyMem_Malloc(v->size ? v->size : 1);
	if (!all)
		return PyErr_NoMemory();
	PyObject *l = NULL;
	if (arr_get(v, 0, v->count, all) == 0) {
		l = PyList_New((Py_ssize_t)v->count);
		for (size_t i = 0; l && i < v->count; i++) {
			PyObject *e = elem_to_py(v->letter, all + i * v->esize);
			if (!e) {
				Py_CLEAR(l);
				break;
			}
			PyList_SET_ITEM(l, (Py_ssize_t)i, e);
		}
	}
	PyMem_Free(all);
	if (!l)
		return NULL;
	PyObject *it = PyObject_GetIter(l);
	Py_DECREF(l);
	return it;
}

/* .value / .raw of 'c' and 'u' arrays (ctypes char-array semantics) */
static PyObject *arr_value_get(ValObject *v)
{
	if (v->letter != 'c' && v->letter != 'u') {
		PyErr_SetString(PyExc_AttributeError, "only 'c' and 'u' arrays have .value");
		return NULL;
	}
	unsigned char *all = PyMem_Malloc(v->size ? v->size : 1);
	if (!all)
		return PyErr_NoMemory();
	PyObject *res = NULL;
	if (arr_get(v, 0, v->count, all) == 0)
		res = v->letter == 'c' ? bytes_to_nul((char *)all, v->count)
				       : wchars_to_nul((uint32_t *)all, v->count);
	PyMem_Free(all);
	return res;
}

static int arr_value_set(ValObject *v, PyObject *o)
{
	if (v->letter == 'u') {
		if (!PyUnicode_Check(o)) {
			PyErr_Format(PyExc_TypeError, "unicode string expected instead of %.100s instance",
				     Py_TYPE(o)->tp_name);
			return -1;
		}
		Py_ssize_t n = PyUnicode_GET_LENGTH(o);
		if ((size_t)n > v->count) {
			PyErr_SetString(PyExc_ValueError, "string too long");
			return -1;
		}
		uint32_t *w = PyMem_Calloc((size_t)n + 1, 4);
		if (!w) {
			PyErr_NoMemory();
			return -1;
		}
		for (Py_ssize_t i = 0; i < n; i++)
			w[i] = PyUnicode_READ_CHAR(o, i);
		int r = arr_set(v, 0, (size_t)n + ((size_t)n < v->count), w);
		PyMem_Free(w);
		return r;
	}
	if (v->letter != 'c') {
		PyErr_SetString(PyExc_AttributeError, "only 'c' and 'u' arrays have .value");
		return -1;
	}
	if (!PyBytes_Check(o)) {
		PyErr_Format(PyExc_TypeError, "bytes expected instead of %.100s instance",
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	Py_ssize_t n = PyBytes_GET_SIZE(o);
	if ((size_t)n > v->count) {
		PyErr_SetString(PyExc_ValueError, "byte string too long");
		return -1;
	}
	char *b = PyMem_Calloc((size_t)n + 1, 1);
	if (!b) {
		PyErr_NoMemory();
		return -1;
	}
	memcpy(b, PyBytes_AS_STRING(o), (size_t)n);
	int r = arr_set(v, 0, (size_t)n + ((size_t)n < v->count), b);
	PyMem_Free(b);
	return r;
}

static PyObject *arr_raw_get(ValObject *v, void *Py_UNUSED(c))
{
	if (v->letter != 'c') {
		PyErr_SetString(PyExc_AttributeError, "only 'c' arrays have .raw");
		return NULL;
	}
	PyObject *all = PySlice_New(NULL, NULL, NULL);
	if (!all)
		return NULL;
	PyObject *res = arr_subscript(v, all);
	Py_DECREF(all);
	return res;
}

static int arr_raw_set(ValObject *v, PyObject *o, void *Py_UNUSED(c))
{
	if (v->letter != 'c') {
		PyErr_SetString(PyExc_AttributeError, "only 'c' arrays have .raw");
		return -1;
	}
	Py_buffer view;
	if (!o || PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0) {
		if (!o)
			PyErr_SetString(PyExc_AttributeError, "cannot delete raw");
		return -1;
	}
	int r;
	if ((size_t)view.len > v->count) {
		PyErr_SetString(PyExc_ValueError, "byte string too long");
		r = -1;
	} else {
		r = arr_set(v, 0, (size_t)view.len, view.buf);
	}
	PyBuffer_Release(&view);
	return r;
}

/* ------------------------------------------------------------------------ */
/* type resolution: typecode or ctypes type -> shval type string             */

typedef struct {
	char type[SHVAL_TYPE_MAX + 1];
	char letter;      /* scalar letter, or 0 */
	PyObject *ctype;  /* borrowed: a ctypes type, or NULL */
	int is_ctypes_composite; /* ctypes Structure or Array: init via ctypes */
} tinfo;

static int pointer_error(PyObject *t)
{
	PyErr_Format(PyExc_TypeError,
		     "%R is a pointer type: a pointer means nothing in another "
		     "process, so it cannot be shared; use a fixed-capacity "
		     "string instead, e.g. shval.Array('c', 64) or a '64s' value",
		     t);
	return -1;
}

static int issub(PyObject *t, PyObject *base)
{
	if (!base)
		return 0;
	int r = PyObject_IsSubclass(t, base);
	if (r < 0)
		PyErr_Clear();
	return r > 0;
}

/* a ctypes simple type -> letter; 0 with an exception set on failure */
static char ctypes_letter(PyObject *t)
{
	if (issub(t, ct_pointer) || issub(t, ct_funcptr)) {
		pointer_error(t);
		return 0;
	}
	if (!issub(t, ct_simple)) {
		PyErr_Format(PyExc_TypeError, "unsupported ctypes type %R", t);
		return 0;
	}
	PyObject *code = PyObject_GetAttrString(t, "_type_");
	if (!code)
		return 0;
	const char *s = PyUnicode_Check(code) ? PyUnicode_AsUTF8(code) : NULL;
	char c = s && strlen(s) == 1 ? s[0] : 0;
	Py_DECREF(code);
	if (!s)
		PyErr_Clear();
	if (c == 'z' || c == 'Z' || c == 'P') {
		pointer_error(t);
		return 0;
	}
	/* byte-swapped variants (c_int.__ctype_be__) are not native */
	PyObject *le = PyObject_GetAttrString(t, "__ctype_le__");
	PyObject *be = PyObject_GetAttrString(t, "__ctype_be__");
	PyErr_Clear();
	int swapped = (le && le != t && be && be != t) || (!le && be) || (le && !be);
	Py_XDECREF(le);
	Py_XDECREF(be);
	if (!is_scalar_letter(c) || (swapped && letter_size(c) > 1)) {
		PyErr_Format(PyExc_TypeError, "unsupported ctypes type %R", t);
		return 0;
	}
	return c;
}

static int canonical(const char *in, tinfo *ti)
{
	size_t sz;
	int r = shval_type_canonical(in, ti->type, sizeof ti->type, &sz);
	if (r) {
		set_error(r, shval_errmsg(NULL));
		return -1;
	}
	return 0;
}

static int struct_type(PyObject *t, tinfo *ti)
{
	if (issub(t, ct_union)) {
		PyErr_Format(PyExc_TypeError, "ctypes Union %R is not supported", t);
		return -1;
	}
	PyObject *fields = PyObject_GetAttrString(t, "_fields_");
	if (!fields)
		return -1;
	PyObject *seq = PySequence_Fast(fields, "_fields_ must be a sequence");
	Py_DECREF(fields);
	if (!seq)
		return -1;
	char buf[SHVAL_TYPE_MAX + 1];
	size_t len = 0;
	buf[0] = '\0';
	int ret = -1;
	for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
		PyObject *f = PySequence_Fast_GET_ITEM(seq, i);
		if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) < 2) {
			PyErr_SetString(PyExc_TypeError, "bad _fields_ entry");
			goto out;
		}
		if (PyTuple_GET_SIZE(f) > 2) {
			PyErr_Format(PyExc_TypeError, "bit fields are not supported (%R)", f);
			goto out;
		}
		const char *fname = PyUnicode_AsUTF8(PyTuple_GET_ITEM(f, 0));
		if (!fname)
			goto out;
		PyObject *ft = PyTuple_GET_ITEM(f, 1);
		char part[128];
		if (issub(ft, ct_array)) {
			PyObject *et = PyObject_GetAttrString(ft, "_type_");
			PyObject *ln = PyObject_GetAttrString(ft, "_length_");
			if (!et || !ln) {
				Py_XDECREF(et);
				Py_XDECREF(ln);
				goto out;
			}
			char c = issub(et, ct_struct) ? 0 : ctypes_letter(et);
			if (!c && !PyErr_Occurred())
				PyErr_Format(PyExc_TypeError, "arrays of structures are not supported (field %s)", fname);
			long n = PyLong_AsLong(ln);
			Py_DECREF(et);
			Py_DECREF(ln);
			if (!c || (n == -1 && PyErr_Occurred()))
				goto out;
			snprintf(part, sizeof part, "%s:%ld%c", fname, n, c);
		} else if (issub(ft, ct_struct) || issub(ft, ct_union)) {
			PyErr_Format(PyExc_TypeError, "nested structures are not supported (field %s)", fname);
			goto out;
		} else {
			char c = ctypes_letter(ft);
			if (!c)
				goto out;
			snprintf(part, sizeof part, "%s:%c", fname, c);
		}
		size_t pl = strlen(part);
		if (len + pl + 2 >= sizeof buf) {
			PyErr_SetString(PyExc_TypeError, "structure type too long");
			goto out;
		}
		if (len)
			buf[len++] = ' ';
		memcpy(buf + len, part, pl + 1);
		len += pl;
	}
	size_t sz = 0;
	int r = shval_type_canonical(buf, ti->type, sizeof ti->type, &sz);
	if (r) {
		set_error(r, shval_errmsg(NULL));
		goto out;
	}
	PyObject *ctypes = PyImport_ImportModule("ctypes");
	if (!ctypes)
		goto out;
	PyObject *csz = PyObject_CallMethod(ctypes, "sizeof", "O", t);
	Py_DECREF(ctypes);
	if (!csz)
		goto out;
	size_t want = PyLong_AsSize_t(csz);
	Py_DECREF(csz);
	if (want != sz) {
		PyErr_Format(PyExc_TypeError,
			     "%R: ctypes layout (%zu bytes) differs from shval's "
			     "natural C layout of '%s' (%zu bytes); _pack_ is not supported",
			     t, want, ti->type, sz);
		goto out;
	}
	ret = 0;
out:
	Py_DECREF(seq);
	return ret;
}

/* elem_only: Array element type (a scalar letter or simple ctypes type) */
static int resolve_type(PyObject *t, tinfo *ti, int elem_only)
{
	memset(ti, 0, sizeof *ti);
	if (PyUnicode_Check(t)) {
		const char *s = PyUnicode_AsUTF8(t);
		if (!s)
			return -1;
		if (strlen(s) == 1 && is_scalar_letter(s[0])) {
			ti->letter = s[0];
			ti->type[0] = s[0];
			return 0;
		}
		if (elem_only || strlen(s) <= 1 || shval_type_canonical(s, ti->type, sizeof ti->type, NULL) != 0) {
			PyErr_SetString(PyExc_TypeError, BAD_TYPECODE_MSG);
			return -1;
		}
		size_t l = strlen(ti->type);
		if (l == 1)
			ti->letter = ti->type[0];
		return 0;
	}
	if (!PyType_Check(t)) {
		PyErr_SetString(PyExc_TypeError, BAD_TYPECODE_MSG);
		return -1;
	}
	if (issub(t, ct_pointer) || issub(t, ct_funcptr))
		return pointer_error(t);
	if (issub(t, ct_simple)) {
		char c = ctypes_letter(t);
		if (!c)
			return -1;
		ti->letter = c;
		ti->type[0] = c;
		ti->ctype = t;
		return 0;
	}
	if (elem_only) {
		if (issub(t, ct_struct))
			PyErr_Format(PyExc_TypeError, "arrays of structures are not supported (%R)", t);
		else
			PyErr_SetString(PyExc_TypeError, BAD_TYPECODE_MSG);
		return -1;
	}
	if (issub(t, ct_array)) {
		PyObject *et = PyObject_GetAttrString(t, "_type_");
		PyObject *ln = PyObject_GetAttrString(t, "_length_");
		if (!et || !ln) {
			Py_XDECREF(et);
			Py_XDECREF(ln);
			return -1;
		}
		char c = ctypes_letter(et);
		long n = PyLong_AsLong(ln);
		Py_DECREF(et);
		Py_DECREF(ln);
		if (!c || (n == -1 && PyErr_Occurred()))
			return -1;
		char buf[64];
		snprintf(buf, sizeof buf, "%ld%c", n, c);
		if (canonical(buf, ti) < 0)
			return -1;
		ti->ctype = t;
		ti->is_ctypes_composite = 1;
		return 0;
	}
	if (issub(t, ct_struct) || issub(t, ct_union)) {
		if (struct_type(t, ti) < 0)
			return -1;
		ti->ctype = t;
		ti->is_ctypes_composite = 1;
		return 0;
	}
	PyErr_SetString(PyExc_TypeError, BAD_TYPECODE_MSG);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* creation                                                                  */

enum lockmode { LK_RAW, LK_OWN, LK_SHARED };

/* lock argument as multiprocessing.Value/Array treat it */
static int parse_lock(PyObject *lock, enum lockmode *m)
{
	if (lock == Py_False) {
		*m = LK_RAW;
		return 0;
	}
	if (lock == Py_True || lock == Py_None) {
		*m = LK_OWN;
		return 0;
	}
	if (PyLong_CheckExact(lock) && PyLong_AsLong(lock) == 1) {
		*m = LK_OWN;
		return 0;
	}
	PyErr_Clear();
	if (is_lock(lock)) {
		*m = LK_SHARED;
		return 0;
	}
	if (!PyObject_HasAttrString(lock, "acquire"))
		PyErr_Format(PyExc_AttributeError, "%R has no method 'acquire'", lock);
	else
		PyErr_Format(PyExc_AttributeError,
			     "%R is not a shval.Lock or shval.RLock: a shval value "
			     "can only be guarded by a shval lock", lock);
	return -1;
}

static unsigned raw_mode(const char *type)
{
	size_t l = strlen(type);
	if (l == 1 && is_scalar_letter(type[0]))
		return SHVAL_ATOMIC;
	return SHVAL_RAW;
}

/* Create a value in the anonymous segment and wrap it. */
static PyObject *create_anon(const tinfo *ti, const void *init, size_t init_len,
			     enum lockmode lm, PyObject *lockobj)
{
	SegObject *seg = anon_segobj();
	if (!seg)
		return NULL;
	shval *h;
	int r;
	if (lm == LK_SHARED) {
		if (!shval_create_guarded) {
			PyErr_SetString(PyExc_NotImplementedError,
					"shared locks pending in C library");
			return NULL;
		}
		char name[64];
		snprintf(name, sizeof name, "pyval.%ld.%lu", (long)getpid(), ++name_counter);
		r = shval_create_guarded(seg->seg, name, ti->type, ((LockObject *)lockobj)->h,
					 init, init_len, &h);
	} else {
		unsigned mode = lm == LK_RAW ? raw_mode(ti->type) : SHVAL_RLOCK;
		r = shval_new(ti->type, mode, init, init_len, &h);
	}
	if (r) {
		seg_error(seg->seg, r);
		return NULL;
	}
	struct shval_info info;
	if (shval_info(h, &info) != 0)
		info.kind = SHVAL_KIND_SCALAR;
	size_t tl = strlen(info.type);
	char letter = tl ? info.type[tl - 1] : 0;
	PyTypeObject *tp = pick_type(info.kind, letter, lm != LK_RAW);
	ValObject *v = (ValObject *)val_wrap(tp, h, seg, NULL, ti->ctype,
					     lm == LK_SHARED ? lockobj : NULL, 0);
	if (!v) {
		(void)shval_remove(seg->seg, info.name);
		return NULL;
	}
	v->owner = 1;
	v->owner_pid = getpid();
	return (PyObject *)v;
}

/* init bytes from a ctypes composite constructed with args */
static PyObject *ctypes_init(PyObject *ctype, PyObject *args)
{
	PyObject *obj = PyObject_CallObject(ctype, args);
	if (!obj)
		return NULL;
	Py_buffer view;
	if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
		Py_DECREF(obj);
		return NULL;
	}
	PyObject *res = PyBytes_FromStringAndSize(view.buf, view.len);
	PyBuffer_Release(&view);
	Py_DECREF(obj);
	return res;
}

static PyObject *make_value(PyObject *t, PyObject *args, enum lockmode lm, PyObject *lockobj)
{
	tinfo ti;
	if (resolve_type(t, &ti, 0) < 0)
		return NULL;
	Py_ssize_t na = PyTuple_GET_SIZE(args);
	if (ti.is_ctypes_composite) {
		PyObject *b = ctypes_init(ti.ctype, args);
		if (!b)
			return NULL;
		PyObject *res = create_anon(&ti, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b), lm, lockobj);
		Py_DECREF(b);
		return res;
	}
	if (ti.letter) {
		unsigned char b[16] = {0};
		if (na > 1) {
			PyErr_Format(PyExc_TypeError, "function takes at most 1 argument (%zd given)", na);
			return NULL;
		}
		if (na == 1 && elem_from_py(ti.letter, PyTuple_GET_ITEM(args, 0), b) < 0)
			return NULL;
		return create_anon(&ti, b, letter_size(ti.letter), lm, lockobj);
	}
	if (na > 1) {
		PyErr_Format(PyExc_TypeError, "a '%s' value takes at most 1 initializer", ti.type);
		return NULL;
	}
	PyObject *v = create_anon(&ti, NULL, 0, lm, lockobj);
	if (v && na == 1 && PyObject_SetAttrString(v, "value", PyTuple_GET_ITEM(args, 0)) < 0)
		Py_CLEAR(v);
	return v;
}

/* Array type string and init bytes from (typecode, size_or_initializer) */
static PyObject *array_init(PyObject *t, PyObject *init, tinfo *ti, size_t *count)
{
	tinfo et;
	if (PyType_Check(t) && issub(t, ct_struct) && !issub(t, ct_union)) {
		/* array of ctypes Structures: stored as bytes, elements are
		 * ctypes views (checked by struct_type for supported fields) */
		tinfo st;
		if (struct_type(t, &st) < 0)
			return NULL;
		memset(&et, 0, sizeof et);
		et.letter = 'B';
		et.ctype = t;
		size_t ssz = ctypes_sizeof(t);
		if (!ssz)
			return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_TypeError, "empty structure");
		size_t n;
		PyObject *bytes;
		if (PyLong_Check(init)) {
			Py_ssize_t k = PyLong_AsSsize_t(init);
			if (k < 0) {
				if (!PyErr_Occurred())
					PyErr_SetString(PyExc_ValueError, "array size must be non-negative");
				return NULL;
			}
			n = (size_t)k;
			bytes = PyBytes_FromStringAndSize(NULL, 0);
		} else {
			PyObject *seq = PySequence_Fast(init, "size_or_initializer must be an int or a sequence");
			if (!seq)
				return NULL;
			n = (size_t)PySequence_Fast_GET_SIZE(seq);
			bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * ssz));
			ValObject tmp;
			tmp.ctype = t;
			tmp.selem = ssz;
			for (size_t i = 0; bytes && i < n; i++)
				if (selem_bytes(&tmp, PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i),
						(unsigned char *)PyBytes_AS_STRING(bytes) + i * ssz) < 0)
					Py_CLEAR(bytes);
			Py_DECREF(seq);
		}
		if (!bytes)
			return NULL;
		char buf[64];
		snprintf(buf, sizeof buf, "%zuB", n * ssz);
		if (canonical(buf, ti) < 0) {
			Py_DECREF(bytes);
			return NULL;
		}
		ti->letter = 'B';
		ti->ctype = t;
		*count = n;
		return bytes;
	}
	if (resolve_type(t, &et, 1) < 0)
		return NULL;
	size_t es = letter_size(et.letter);
	PyObject *bytes = NULL;
	size_t n;
	if (PyLong_Check(init)) {
		Py_ssize_t k = PyLong_AsSsize_t(init);
		if (k == -1 && PyErr_Occurred())
			return NULL;
		if (k < 0) {
			PyErr_SetString(PyExc_ValueError, "array size must be non-negative");
			return NULL;
		}
		n = (size_t)k;
		bytes = PyBytes_FromStringAndSize(NULL, 0);
	} else {
		PyObject *seq;
		if (et.letter == 'u' && PyUnicode_Check(init))
			seq = PySequence_List(init);
		else
			seq = PySequence_Fast(init, "size_or_initializer must be an int or a sequence");
		if (!seq)
			return NULL;
		n = (size_t)PySequence_Fast_GET_SIZE(seq);
		bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * es));
		if (!bytes) {
			Py_DECREF(seq);
			return NULL;
		}
		unsigned char *p = (unsigned char *)PyBytes_AS_STRING(bytes);
		memset(p, 0, n * es);
		for (size_t i = 0; i < n; i++)
			if (elem_from_py(et.letter, PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i), p + i * es) < 0) {
				Py_DECREF(seq);
				Py_DECREF(bytes);
				return NULL;
			}
		Py_DECREF(seq);
	}
	char buf[64];
	snprintf(buf, sizeof buf, "%zu%c", n, et.letter);
	if (canonical(buf, ti) < 0) {
		Py_XDECREF(bytes);
		return NULL;
	}
	ti->letter = et.letter;
	ti->ctype = et.ctype;
	*count = n;
	return bytes;
}

static PyObject *make_array(PyObject *t, PyObject *init, enum lockmode lm, PyObject *lockobj)
{
	tinfo ti;
	size_t n;
	PyObject *bytes = array_init(t, init, &ti, &n);
	if (!bytes)
		return NULL;
	Py_ssize_t bl = PyBytes_GET_SIZE(bytes);
	PyObject *res = create_anon(&ti, bl ? PyBytes_AS_STRING(bytes) : NULL, (size_t)bl, lm, lockobj);
	Py_DECREF(bytes);
	return res;
}

/* ------------------------------------------------------------------------ */
/* module functions                                                          */

static PyObject *m_Value(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kw)
{
	PyObject *lock = Py_True;
	if (PyTuple_GET_SIZE(args) < 1) {
		PyErr_SetString(PyExc_TypeError, "Value() missing required argument 'typecode_or_type'");
		return NULL;
	}
	if (kw) {
		PyObject *k, *x;
		Py_ssize_t pos = 0;
		while (PyDict_Next(kw, &pos, &k, &x)) {
			if (PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, "lock") == 0)
				lock = x;
			else if (!(PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, "ctx") == 0)) {
				PyErr_Format(PyExc_TypeError, "Value() got an unexpected keyword argument %R", k);
				return NULL;
			}
		}
	}
	enum lockmode lm;
	PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
	if (!rest)
		return NULL;
	PyObject *res = NULL;
	tinfo probe;
	/* typecode errors first, as multiprocessing (RawValue runs first) */
	if (resolve_type(PyTuple_GET_ITEM(args, 0), &probe, 0) == 0 && parse_lock(lock, &lm) == 0)
		res = make_value(PyTuple_GET_ITEM(args, 0), rest, lm, lock);
	Py_DECREF(rest);
	return res;
}

static PyObject *m_RawValue(PyObject *Py_UNUSED(m), PyObject *args)
{
	if (PyTuple_GET_SIZE(args) < 1) {
		PyErr_SetString(PyExc_TypeError, "RawValue() missing required argument 'typecode_or_type'");
		return NULL;
	}
	PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
	if (!rest)
		return NULL;
	PyObject *res = make_value(PyTuple_GET_ITEM(args, 0), rest, LK_RAW, NULL);
	Py_DECREF(rest);
	return res;
}

static PyObject *m_Array(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"typecode_or_type", "size_or_initializer", "lock", "ctx", NULL};
	PyObject *t, *init, *lock = Py_True, *ctx = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|$OO:Array", kwlist, &t, &init, &lock, &ctx))
		return NULL;
	tinfo probe;
	if (!(PyType_Check(t) && issub(t, ct_struct)) && resolve_type(t, &probe, 1) < 0)
		return NULL;
	enum lockmode lm;
	if (parse_lock(lock, &lm) < 0)
		return NULL;
	return make_array(t, init, lm, lock);
}

static PyObject *m_RawArray(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyObject *t, *init;
	if (!PyArg_ParseTuple(args, "OO:RawArray", &t, &init))
		return NULL;
	return make_array(t, init, LK_RAW, NULL);
}

static PyObject *m_copy(PyObject *Py_UNUSED(m), PyObject *obj)
{
	if (is_val(obj)) {
		ValObject *v = (ValObject *)obj;
		PyObject *b = read_bytes(v);
		if (!b)
			return NULL;
		tinfo ti;
		memset(&ti, 0, sizeof ti);
		snprintf(ti.type, sizeof ti.type, "%s", v->type);
		ti.ctype = v->ctype;
		PyObject *res = create_anon(&ti, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b), LK_RAW, NULL);
		Py_DECREF(b);
		return res;
	}
	/* a ctypes object: its type and bytes */
	PyObject *t = (PyObject *)Py_TYPE(obj);
	tinfo ti;
	if (resolve_type(t, &ti, 0) < 0)
		return NULL;
	Py_buffer view;
	if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
		return NULL;
	PyObject *res = create_anon(&ti, view.buf, (size_t)view.len, LK_RAW, NULL);
	PyBuffer_Release(&view);
	return res;
}

static PyObject *m_synchronized(PyObject *Py_UNUSED(m), PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"obj", "lock", "ctx", NULL};
	PyObject *obj, *lock = Py_None, *ctx = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO:synchronized", kwlist, &obj, &lock, &ctx))
		return NULL;
	if (is_sync(obj)) {
		PyErr_SetString(PyExc_AssertionError, "object already synchronized");
		return NULL;
	}
	PyObject *raw;
	if (is_val(obj)) {
		raw = obj;
		Py_INCREF(raw);
	} else {
		raw = m_copy(NULL, obj);
		if (!raw)
			return NULL;
	}
	int truth = PyObject_IsTrue(lock);
	if (truth < 0) {
		Py_DECREF(raw);
		return NULL;
	}
	PyObject *lk;
	if (!truth) {
		PyObject *noargs = PyTuple_New(0);
		lk = noargs ? lock_new_common(&RLockType, noargs, NULL) : NULL;
		Py_XDECREF(noargs);
	} else if (is_lock(lock)) {
		lk = lock;
		Py_INCREF(lk);
	} else {
		PyErr_Format(PyExc_AttributeError,
			     "%R is not a shval.Lock or shval.RLock", lock);
		Py_DECREF(raw);
		return NULL;
	}
	if (!lk) {
		Py_DECREF(raw);
		return NULL;
	}
	ValObject *rv = (ValObject *)raw;
	PyObject *owner = rv->base ? rv->base : raw;
	PyObject *res = val_wrap(pick_type(rv->kind, rv->letter, 1), rv->h, rv->seg, owner,
				 rv->ctype, lk, 1);
	Py_DECREF(lk);
	Py_DECREF(raw);
	return res;
}

static PyObject *m_unlink(PyObject *Py_UNUSED(m), PyObject *arg)
{
	const char *name = PyUnicode_AsUTF8(arg);
	if (!name)
		return NULL;
	int r = shval_seg_unlink(name);
	if (r) {
		set_error(r, "");
		return NULL;
	}
	Py_RETURN_NONE;
}

/* segment reference from a pickle -> Segment (new reference) */
static SegObject *resolve_segref(PyObject *ref)
{
	if (PyUnicode_Check(ref)) {
		PyObject *s = PyDict_GetItemWithError(named_cache, ref);
		if (s && ((SegObject *)s)->seg) {
			Py_INCREF(s);
			return (SegObject *)s;
		}
		if (PyErr_Occurred())
			return NULL;
		const char *name = PyUnicode_AsUTF8(ref);
		if (!name)
			return NULL;
		shval_seg *seg;
		int r = shval_seg_open(name, 0, NULL, &seg);
		if (r) {
			set_error(r, shval_errmsg(NULL));
			return NULL;
		}
		SegObject *so = seg_wrap(seg, 0);
		if (!so || PyDict_SetItem(named_cache, ref, (PyObject *)so) < 0) {
			Py_XDECREF(so);
			return NULL;
		}
		return so;
	}
	PyObject *dup;
	unsigned long long dev, ino;
	if (!PyArg_ParseTuple(ref, "OKK:segref", &dup, &dev, &ino))
		return NULL;
	if (!anon_segobj()) /* registers our own anonymous segment */
		return NULL;
	PyObject *key = devino_key((dev_t)dev, (ino_t)ino);
	if (!key)
		return NULL;
	PyObject *tpmod = PyObject_GetAttrString((PyObject *)Py_TYPE(dup), "__module__");
	int from_sharer = tpmod && PyUnicode_Check(tpmod) &&
			  PyUnicode_CompareWithASCIIString(tpmod, "multiprocessing.resource_sharer") == 0;
	Py_XDECREF(tpmod);
	PyErr_Clear();
	PyObject *s = PyDict_GetItemWithError(anon_cache, key);
	if (s) {
		Py_INCREF(s);
		Py_DECREF(key);
		if (from_sharer) { /* release the sender's copy */
			PyObject *fd = PyObject_CallMethod(dup, "detach", NULL);
			if (fd) {
				long f = PyLong_AsLong(fd);
				if (f >= 0)
					close((int)f);
				Py_DECREF(fd);
			}
			PyErr_Clear();
		}
		return (SegObject *)s;
	}
	if (PyErr_Occurred()) {
		Py_DECREF(key);
		return NULL;
	}
	PyObject *fdo = PyObject_CallMethod(dup, "detach", NULL);
	if (!fdo) {
		Py_DECREF(key);
		return NULL;
	}
	long fd = PyLong_AsLong(fdo);
	Py_DECREF(fdo);
	if (fd == -1 && PyErr_Occurred()) {
		Py_DECREF(key);
		return NULL;
	}
	shval_seg *seg;
	int r = shval_seg_open_fd((int)fd, 0, &seg);
	if (from_sharer)
		close((int)fd);
	if (r) {
		set_error(r, shval_errmsg(NULL));
		Py_DECREF(key);
		return NULL;
	}
	SegObject *so = seg_wrap(seg, 0);
	if (!so || PyDict_SetItem(anon_cache, key, (PyObject *)so) < 0) {
		Py_XDECREF(so);
		Py_DECREF(key);
		return NULL;
	}
	Py_DECREF(key);
	return so;
}

static PyObject *m_rebuild_value(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyObject *ref, *ctype, *lock;
	const char *name;
	int sync, extlock;
	if (!PyArg_ParseTuple(args, "OsiOOi", &ref, &name, &sync, &ctype, &lock, &extlock))
		return NULL;
	if (!PyObject_TypeCheck(ref, &SegmentType) || check_open((SegObject *)ref) < 0) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_TypeError, "_rebuild_value: a Segment is required");
		return NULL;
	}
	SegObject *seg = (SegObject *)Py_NewRef(ref);
	shval *h;
	int r = shval_find(seg->seg, name, NULL, &h);
	if (r) {
		seg_error(seg->seg, r);
		Py_DECREF(seg);
		return NULL;
	}
	struct shval_info info;
	r = shval_info(h, &info);
	if (r) {
		shval_close(h);
		seg_error(seg->seg, r);
		Py_DECREF(seg);
		return NULL;
	}
	size_t tl = strlen(info.type);
	PyTypeObject *tp = pick_type(info.kind, tl ? info.type[tl - 1] : 0, sync);
	PyObject *res = val_wrap(tp, h, seg, NULL, ctype == Py_None ? NULL : ctype,
				 lock == Py_None ? NULL : lock, extlock);
	Py_DECREF(seg);
	return res;
}

static PyObject *m_rebuild_lock(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyObject *ref;
	const char *name;
	int recursive;
	if (!PyArg_ParseTuple(args, "O!si", &SegmentType, &ref, &name, &recursive))
		return NULL;
	if (check_open((SegObject *)ref) < 0)
		return NULL;
	SegObject *seg = (SegObject *)Py_NewRef(ref);
	shval *h;
	int r = shval_find(seg->seg, name, NULL, &h);
	if (r) {
		seg_error(seg->seg, r);
		Py_DECREF(seg);
		return NULL;
	}
	PyObject *res = lock_wrap(h, seg, recursive, 0);
	Py_DECREF(seg);
	return res;
}

/* ------------------------------------------------------------------------ */
/* Segment type                                                              */

static PyObject *seg_new(PyTypeObject *Py_UNUSED(tp), PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"name", "create", "size", "mode", "temp", "readonly", NULL};
	const char *name;
	int create = 0, temp = 0, rdonly = 0;
	PyObject *size = Py_None;
	unsigned mode = 0600;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|pOIpp:Segment", kwlist, &name, &create,
					 &size, &mode, &temp, &rdonly))
		return NULL;
	char full[4096];
	if (name[0] != '/' && strncmp(name, "file:", 5) != 0 &&
	    strncmp(name, "redis://", 8) != 0 && strncmp(name, "redis+unix://", 13) != 0)
		snprintf(full, sizeof full, "/%s", name);
	else
		snprintf(full, sizeof full, "%s", name);
	shval_seg_opts o;
	memset(&o, 0, sizeof o);
	o.struct_size = sizeof o;
	o.mode = mode;
	if (size != Py_None) {
		o.max_size = PyLong_AsUnsignedLongLong(size);
		if (o.max_size == (uint64_t)-1 && PyErr_Occurred())
			return NULL;
	}
	unsigned flags = (create ? SHVAL_CREATE : 0) | (temp ? SHVAL_TEMP : 0) |
			 (rdonly ? SHVAL_RDONLY : 0);
	shval_seg *seg;
	int r;
	Py_BEGIN_ALLOW_THREADS
	r = shval_seg_open(full, flags, &o, &seg);
	Py_END_ALLOW_THREADS
	if (r) {
		set_error(r, shval_errmsg(NULL));
		return NULL;
	}
	return (PyObject *)seg_wrap(seg, 0);
}

static void seg_dealloc(SegObject *s)
{
	if (!s->borrowed)
		shval_seg_close(s->seg);
	PyObject_Free(s);
}

static PyObject *seg_close(SegObject *s, PyObject *Py_UNUSED(a))
{
	if (s->seg && !s->borrowed)
		shval_seg_close(s->seg);
	s->seg = NULL;
	Py_RETURN_NONE;
}

static PyObject *seg_enter(SegObject *s, PyObject *Py_UNUSED(a))
{
	Py_INCREF(s);
	return (PyObject *)s;
}

static PyObject *seg_exit(SegObject *s, PyObject *Py_UNUSED(a))
{
	return seg_close(s, NULL);
}

static PyObject *wrap_found(SegObject *s, shval *h)
{
	struct shval_info info;
	int r = shval_info(h, &info);
	if (r) {
		shval_close(h);
		seg_error(s->seg, r);
		return NULL;
	}
	if (info.kind == SHVAL_KIND_LOCK)
		return lock_wrap(h, s, info.mode == SHVAL_RLOCK, 0);
	size_t tl = strlen(info.type);
	int sync = info.mode == SHVAL_RLOCK || info.mode == SHVAL_LOCK;
	return val_wrap(pick_type(info.kind, tl ? info.type[tl - 1] : 0, sync), h, s, NULL, NULL, NULL, 0);
}

static PyObject *seg_getitem(SegObject *s, PyObject *key)
{
	if (check_open(s) < 0)
		return NULL;
	const char *name = PyUnicode_AsUTF8(key);
	if (!name)
		return NULL;
	shval *h;
	int r = shval_find(s->seg, name, NULL, &h);
	if (r) {
		seg_error(s->seg, r);
		return NULL;
	}
	return wrap_found(s, h);
}

static int seg_delitem(SegObject *s, PyObject *key, PyObject *val)
{
	if (val) {
		PyErr_SetString(PyExc_TypeError, "use seg.value(name, type, init) to create values");
		return -1;
	}
	if (check_open(s) < 0)
		return -1;
	const char *name = PyUnicode_AsUTF8(key);
	if (!name)
		return -1;
	int r = shval_remove(s->seg, name);
	if (r) {
		seg_error(s->seg, r);
		return -1;
	}
	return 0;
}

static int seg_contains(SegObject *s, PyObject *key)
{
	if (check_open(s) < 0)
		return -1;
	const char *name = PyUnicode_AsUTF8(key);
	if (!name)
		return -1;
	shval *h;
	int r = shval_find(s->seg, name, NULL, &h);
	if (r == 0) {
		shval_close(h);
		return 1;
	}
	if (r == SHVAL_ENOTFOUND || r == SHVAL_EBADNAME)
		return 0;
	seg_error(s->seg, r);
	return -1;
}

static PyObject *seg_names(SegObject *s, PyObject *args)
{
	const char *prefix = NULL;
	if (!PyArg_ParseTuple(args, "|z:names", &prefix))
		return NULL;
	if (check_open(s) < 0)
		return NULL;
	PyObject *l = PyList_New(0);
	if (!l)
		return NULL;
	uint64_t cur = 0;
	struct shval_info *info = PyMem_Malloc(sizeof *info);
	if (!info) {
		Py_DECREF(l);
		return PyErr_NoMemory();
	}
	int r;
	while ((r = shval_seg_next(s->seg, &cur, prefix, info)) == 0) {
		PyObject *n = PyUnicode_FromString(info->name);
		if (!n || PyList_Append(l, n) < 0) {
			Py_XDECREF(n);
			Py_DECREF(l);
			PyMem_Free(info);
			return NULL;
		}
		Py_DECREF(n);
	}
	PyMem_Free(info);
	if (r != SHVAL_ENOTFOUND) {
		Py_DECREF(l);
		seg_error(s->seg, r);
		return NULL;
	}
	return l;
}

/* find (any mode) or create a named value of type ti */
static PyObject *seg_get_or_create(SegObject *s, const char *name, tinfo *ti,
				   const void *init, size_t init_len, PyObject *late_init,
				   int lock)
{
	shval *h;
	int r = shval_find(s->seg, name, ti->type, &h);
	int created = 0;
	if (r == SHVAL_ENOTFOUND) {
		bool c = false;
		unsigned mode = lock ? SHVAL_RLOCK : raw_mode(ti->type);
		Py_BEGIN_ALLOW_THREADS
		r = shval_find_or_create(s->seg, name, ti->type, mode, init, init_len, &h, &c);
		Py_END_ALLOW_THREADS
		created = c;
	}
	if (r) {
		seg_error(s->seg, r);
		return NULL;
	}
	PyObject *v = wrap_found(s, h);
	if (v && ti->ctype)
		((ValObject *)v)->ctype = Py_NewRef(ti->ctype);
	if (v && created && late_init && PyObject_SetAttrString(v, "value", late_init) < 0)
		Py_CLEAR(v);
	return v;
}

static PyObject *seg_value(SegObject *s, PyObject *args, PyObject *kw)
{
	int lock = 1;
	if (kw) {
		PyObject *k, *x;
		Py_ssize_t pos = 0;
		while (PyDict_Next(kw, &pos, &k, &x)) {
			if (PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, "lock") == 0) {
				lock = PyObject_IsTrue(x);
				if (lock < 0)
					return NULL;
			} else {
				PyErr_Format(PyExc_TypeError, "value() got an unexpected keyword argument %R", k);
				return NULL;
			}
		}
	}
	Py_ssize_t na = PyTuple_GET_SIZE(args);
	if (na < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
		PyErr_SetString(PyExc_TypeError, "value(name, typecode=None, *init, lock=True)");
		return NULL;
	}
	if (check_open(s) < 0)
		return NULL;
	PyObject *key = PyTuple_GET_ITEM(args, 0);
	if (na == 1 || PyTuple_GET_ITEM(args, 1) == Py_None)
		return seg_getitem(s, key);
	const char *name = PyUnicode_AsUTF8(key);
	if (!name)
		return NULL;
	tinfo ti;
	if (resolve_type(PyTuple_GET_ITEM(args, 1), &ti, 0) < 0)
		return NULL;
	PyObject *rest = PyTuple_GetSlice(args, 2, na);
	if (!rest)
		return NULL;
	PyObject *res = NULL;
	if (ti.is_ctypes_composite) {
		PyObject *b = ctypes_init(ti.ctype, rest);
		if (b) {
			res = seg_get_or_create(s, name, &ti, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b), NULL, lock);
			Py_DECREF(b);
		}
	} else if (ti.letter && strlen(ti.type) == 1) {
		unsigned char b[16] = {0};
		if (PyTuple_GET_SIZE(rest) > 1)
			PyErr_SetString(PyExc_TypeError, "a scalar takes at most 1 initializer");
		else if (PyTuple_GET_SIZE(rest) == 0 || elem_from_py(ti.letter, PyTuple_GET_ITEM(rest, 0), b) == 0)
			res = seg_get_or_create(s, name, &ti, b, letter_size(ti.letter), NULL, lock);
	} else {
		if (PyTuple_GET_SIZE(rest) > 1)
			PyErr_SetString(PyExc_TypeError, "takes at most 1 initializer");
		else
			res = seg_get_or_create(s, name, &ti, NULL, 0,
						PyTuple_GET_SIZE(rest) ? PyTuple_GET_ITEM(rest, 0) : NULL, lock);
	}
	Py_DECREF(rest);
	return res;
}

static PyObject *seg_array(SegObject *s, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"name", "typecode", "size_or_initializer", "lock", NULL};
	const char *name;
	PyObject *t, *init;
	int lock = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "sOO|$p:array", kwlist, &name, &t, &init, &lock))
		return NULL;
	if (check_open(s) < 0)
		return NULL;
	tinfo ti;
	size_t n;
	PyObject *bytes = array_init(t, init, &ti, &n);
	if (!bytes)
		return NULL;
	Py_ssize_t bl = PyBytes_GET_SIZE(bytes);
	PyObject *res = seg_get_or_create(s, name, &ti, bl ? PyBytes_AS_STRING(bytes) : NULL, (size_t)bl, NULL, lock);
	Py_DECREF(bytes);
	return res;
}

static PyObject *seg_lock(SegObject *s, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"name", "recursive", NULL};
	const char *name;
	int recursive = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|p:lock", kwlist, &name, &recursive))
		return NULL;
	if (check_open(s) < 0)
		return NULL;
	shval *h;
	int r = shval_find(s->seg, name, NULL, &h);
	if (r == SHVAL_ENOTFOUND) {
		if (!shval_lock_create) {
			PyErr_SetString(PyExc_NotImplementedError, "shared locks pending in C library");
			return NULL;
		}
		r = shval_lock_create(s->seg, name, recursive ? SHVAL_RLOCK : SHVAL_LOCK, &h);
		if (r == SHVAL_EEXIST)
			r = shval_find(s->seg, name, NULL, &h);
	}
	if (r) {
		seg_error(s->seg, r);
		return NULL;
	}
	return wrap_found(s, h);
}

static PyObject *seg_name_get(SegObject *s, void *Py_UNUSED(c))
{
	if (check_open(s) < 0)
		return NULL;
	return PyUnicode_FromString(shval_seg_name(s->seg));
}

static PyObject *seg_closed_get(SegObject *s, void *Py_UNUSED(c))
{
	return PyBool_FromLong(s->seg == NULL);
}

static PyObject *seg_reduce(SegObject *s, PyObject *Py_UNUSED(a))
{
	PyObject *ref = seg_ref(s);
	if (!ref)
		return NULL;
	PyObject *fn = module_attr("_rebuild_segment");
	if (!fn) {
		Py_DECREF(ref);
		return NULL;
	}
	return Py_BuildValue("(N(N))", fn, ref);
}

static PyObject *m_rebuild_segment(PyObject *Py_UNUSED(m), PyObject *ref)
{
	return (PyObject *)resolve_segref(ref);
}

static PyObject *seg_repr(SegObject *s)
{
	if (!s->seg)
		return PyUnicode_FromString("<shval.Segment (closed)>");
	return PyUnicode_FromFormat("<shval.Segment %s>", s->anon ? "(anonymous)" : shval_seg_name(s->seg));
}

static PyMethodDef seg_methods[] = {
	{"value", (PyCFunction)(void (*)(void))seg_value, METH_VARARGS | METH_KEYWORDS,
	 "value(name, typecode=None, *init, lock=True): find or create a named value"},
	{"array", (PyCFunction)(void (*)(void))seg_array, METH_VARARGS | METH_KEYWORDS,
	 "array(name, typecode, size_or_initializer, *, lock=True)"},
	{"lock", (PyCFunction)(void (*)(void))seg_lock, METH_VARARGS | METH_KEYWORDS,
	 "lock(name, recursive=True): find or create a named shared lock"},
	{"names", (PyCFunction)seg_names, METH_VARARGS, "names(prefix=None) -> list"},
	{"close", (PyCFunction)seg_close, METH_NOARGS, NULL},
	{"__enter__", (PyCFunction)seg_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)seg_exit, METH_VARARGS, NULL},
	{"__reduce__", (PyCFunction)seg_reduce, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL}
};

static PyGetSetDef seg_getset[] = {
	{"name", (getter)seg_name_get, NULL, NULL, NULL},
	{"closed", (getter)seg_closed_get, NULL, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL}
};

static PyMappingMethods seg_as_mapping = {
	NULL, (binaryfunc)seg_getitem, (objobjargproc)seg_delitem
};

static PySequenceMethods seg_as_sequence = {
	.sq_contains = (objobjproc)seg_contains,
};

static PyTypeObject SegmentType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "shval.Segment",
	.tp_basicsize = sizeof(SegObject),
	.tp_dealloc = (destructor)seg_dealloc,
	.tp_repr = (reprfunc)seg_repr,
	.tp_as_mapping = &seg_as_mapping,
	.tp_as_sequence = &seg_as_sequence,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Segment(name, create=False, size=None, mode=0o600, temp=False, readonly=False)\n"
		  "A named shared-memory segment of named values.",
	.tp_methods = seg_methods,
	.tp_getset = seg_getset,
	.tp_new = seg_new,
};

/* ------------------------------------------------------------------------ */
/* value types                                                               */

static PyObject *val_name_get(ValObject *v, void *Py_UNUSED(c))
{
	return PyUnicode_FromString(v->name);
}

static PyObject *val_type_get(ValObject *v, void *Py_UNUSED(c))
{
	return PyUnicode_FromString(v->type);
}

static PyObject *val_value_get_any(ValObject *v, void *c)
{
	return val_value_get(v, c);
}

static PyGetSetDef val_getset[] = {
	{"value", (getter)val_value_get_any, (setter)val_value_set, "the value", NULL},
	{"version", (getter)val_version, NULL, "changes on every committed change", NULL},
	{"name", (getter)val_name_get, NULL, "the value's name in its segment", NULL},
	{"type", (getter)val_type_get, NULL, "the canonical shval type string", NULL},
	{NULL, NULL, NULL, NULL, NULL}
};

static PyGetSetDef arr_getset[] = {
	{"value", (getter)val_value_get_any, (setter)val_value_set, "'c'/'u' arrays: up to the first NUL", NULL},
	{"raw", (getter)arr_raw_get, (setter)arr_raw_set, "'c' arrays: all bytes", NULL},
	{"version", (getter)val_version, NULL, NULL, NULL},
	{"name", (getter)val_name_get, NULL, NULL, NULL},
	{"type", (getter)val_type_get, NULL, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL}
};

static PyMethodDef val_methods[] = {
	{"add", (PyCFunction)val_add, METH_O, "add(delta) -> new value (atomic)"},
	{"cas", (PyCFunction)val_cas, METH_VARARGS, "cas(expected, new) -> bool"},
	{"exchange", (PyCFunction)val_exchange, METH_O, "exchange(new) -> old value"},
	{"wait", (PyCFunction)(void (*)(void))val_wait, METH_VARARGS | METH_KEYWORDS,
	 "wait(timeout=None, version=None) -> True when changed, False on timeout"},
	{"__reduce__", (PyCFunction)val_reduce, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL}
};

static PyMethodDef arr_methods[] = {
	{"wait", (PyCFunction)(void (*)(void))val_wait, METH_VARARGS | METH_KEYWORDS,
	 "wait(timeout=None, version=None) -> True when changed, False on timeout"},
	{"__reduce__", (PyCFunction)val_reduce, METH_NOARGS, NULL},
	{NULL, NULL, 0, NULL}
};

static PyMethodDef sync_methods[] = {
	{"get_lock", (PyCFunction)sync_get_lock, METH_NOARGS, NULL},
	{"get_obj", (PyCFunction)sync_get_obj, METH_NOARGS, NULL},
	{"acquire", (PyCFunction)(void (*)(void))sync_acquire, METH_VARARGS | METH_KEYWORDS, NULL},
	{"release", (PyCFunction)sync_release, METH_NOARGS, NULL},
	{"__enter__", (PyCFunction)sync_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)sync_release, METH_VARARGS, NULL},
	{NULL, NULL, 0, NULL}
};

static PySequenceMethods arr_as_sequence = {
	.sq_length = (lenfunc)arr_len,
	.sq_item = (ssizeargfunc)arr_item,
};

static PyMappingMethods arr_as_mapping = {
	(lenfunc)arr_len, (binaryfunc)arr_subscript, (objobjargproc)arr_ass_subscript
};

static PyTypeObject SharedValueType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "shval.SharedValue",
	.tp_basicsize = sizeof(ValObject),
	.tp_dealloc = (destructor)val_dealloc,
	.tp_repr = (reprfunc)val_repr,
	.tp_getattro = val_getattro,
	.tp_setattro = val_setattro,
	.tp_as_buffer = &val_as_buffer,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "A value in shared memory (RawValue, Value(lock=False), get_obj()).",
	.tp_methods = val_methods,
	.tp_getset = val_getset,
};

static PyTypeObject SynchronizedType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "shval.Synchronized",
	.tp_basicsize = sizeof(ValObject),
	.tp_dealloc = (destructor)val_dealloc,
	.tp_repr = (reprfunc)val_repr,
	.tp_getattro = val_getattro,
	.tp_setattro = val_setattro,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "A value with a lock (Value()).",
	.tp_methods = sync_methods,
};

static PyTypeObject SharedArrayType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "shval.SharedArray",
	.tp_basicsize = sizeof(ValObject),
	.tp_dealloc = (destructor)val_dealloc,
	.tp_repr = (reprfunc)val_repr,
	.tp_as_sequence = &arr_as_sequence,
	.tp_as_mapping = &arr_as_mapping,
	.tp_as_buffer = &val_as_buffer,
	.tp_iter = (getiterfunc)arr_iter,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "An array in shared memory (RawArray, Array(lock=False)).",
	.tp_methods = arr_methods,
	.tp_getset = arr_getset,
};

static PyTypeObject SynchronizedArrayType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "shval.SynchronizedArray",
	.tp_basicsize = sizeof(ValObject),
	.tp_dealloc = (destructor)val_dealloc,
	.tp_repr = (reprfunc)val_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "An array with a lock (Array()).",
	.tp_methods = sync_methods,
};

static PyTypeObject SynchronizedStringType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "shval.SynchronizedString",
	.tp_basicsize = sizeof(ValObject),
	.tp_dealloc = (destructor)val_dealloc,
	.tp_repr = (reprfunc)val_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "A char array with a lock (Array('c', n)).",
};

static PyTypeObject LockType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "shval.Lock",
	.tp_basicsize = sizeof(LockObject),
	.tp_dealloc = (destructor)lock_dealloc,
	.tp_repr = (reprfunc)lock_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "Lock(): a non-recursive lock shared between processes.",
	.tp_methods = lock_methods,
	.tp_new = lock_new_common,
};

static PyTypeObject RLockType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "shval.RLock",
	.tp_basicsize = sizeof(LockObject),
	.tp_dealloc = (destructor)lock_dealloc,
	.tp_repr = (reprfunc)lock_repr,
	.tp_flags = Py_TPFLAGS_DEFAULT,
	.tp_doc = "RLock(): a recursive lock shared between processes.",
	.tp_methods = lock_methods,
	.tp_new = lock_new_common,
};

/* ------------------------------------------------------------------------ */
/* module                                                                    */

static PyMethodDef module_methods[] = {
	{"Value", (PyCFunction)(void (*)(void))m_Value, METH_VARARGS | METH_KEYWORDS,
	 "Value(typecode_or_type, *args, lock=True)"},
	{"Array", (PyCFunction)(void (*)(void))m_Array, METH_VARARGS | METH_KEYWORDS,
	 "Array(typecode_or_type, size_or_initializer, *, lock=True)"},
	{"RawValue", (PyCFunction)m_RawValue, METH_VARARGS, "RawValue(typecode_or_type, *args)"},
	{"RawArray", (PyCFunction)m_RawArray, METH_VARARGS, "RawArray(typecode_or_type, size_or_initializer)"},
	{"copy", (PyCFunction)m_copy, METH_O, "copy(obj) -> a new raw shared object"},
	{"synchronized", (PyCFunction)(void (*)(void))m_synchronized, METH_VARARGS | METH_KEYWORDS,
	 "synchronized(obj, lock=None)"},
	{"unlink", (PyCFunction)m_unlink, METH_O, "unlink(name): remove a named segment"},
	{"_rebuild_value", (PyCFunction)m_rebuild_value, METH_VARARGS, NULL},
	{"_rebuild_lock", (PyCFunction)m_rebuild_lock, METH_VARARGS, NULL},
	{"_rebuild_segment", (PyCFunction)m_rebuild_segment, METH_O, NULL},
	{NULL, NULL, 0, NULL}
};

static struct PyModuleDef shval_moduledef = {
	PyModuleDef_HEAD_INIT, "shval._shval",
	"CPython binding of libshval: typed values shared between processes.",
	-1, module_methods, NULL, NULL, NULL, NULL
};

static int add_type(PyObject *m, PyTypeObject *tp, const char *name)
{
	if (PyType_Ready(tp) < 0)
		return -1;
	Py_INCREF(tp);
	if (PyModule_AddObject(m, name, (PyObject *)tp) < 0) {
		Py_DECREF(tp);
		return -1;
	}
	return 0;
}

static PyObject *get_ctypes_attr(PyObject *ct, const char *name)
{
	PyObject *a = PyObject_GetAttrString(ct, name);
	if (!a)
		PyErr_Clear();
	return a;
}

PyMODINIT_FUNC PyInit__shval(void)
{
	SynchronizedType.tp_base = &SharedValueType;
	SynchronizedArrayType.tp_base = &SharedArrayType;
	SynchronizedStringType.tp_base = &SynchronizedArrayType;
	PyObject *m = PyModule_Create(&shval_moduledef);
	if (!m)
		return NULL;
	if (add_type(m, &SegmentType, "Segment") < 0 ||
	    add_type(m, &SharedValueType, "SharedValue") < 0 ||
	    add_type(m, &SynchronizedType, "Synchronized") < 0 ||
	    add_type(m, &SharedArrayType, "SharedArray") < 0 ||
	    add_type(m, &SynchronizedArrayType, "SynchronizedArray") < 0 ||
	    add_type(m, &SynchronizedStringType, "SynchronizedString") < 0 ||
	    add_type(m, &LockType, "Lock") < 0 ||
	    add_type(m, &RLockType, "RLock") < 0)
		goto fail;
	ShvalError = PyErr_NewExceptionWithDoc("shval.Error",
		"A libshval error without a more specific Python exception.",
		PyExc_RuntimeError, NULL);
	OwnerDiedWarning = PyErr_NewExceptionWithDoc("shval.OwnerDiedWarning",
		"A process died holding a value's lock; the value was rolled back "
		"to its last committed state and the lock was taken over.",
		PyExc_RuntimeWarning, NULL);
	if (!ShvalError || !OwnerDiedWarning)
		goto fail;
	Py_INCREF(ShvalError);
	Py_INCREF(OwnerDiedWarning);
	if (PyModule_AddObject(m, "Error", ShvalError) < 0 ||
	    PyModule_AddObject(m, "OwnerDiedWarning", OwnerDiedWarning) < 0)
		goto fail;
	anon_cache = PyDict_New();
	named_cache = PyDict_New();
	if (!anon_cache || !named_cache)
		goto fail;
	PyObject *ct = PyImport_ImportModule("ctypes");
	if (!ct)
		goto fail;
	ct_simple = get_ctypes_attr(ct, "_SimpleCData");
	ct_array = get_ctypes_attr(ct, "Array");
	ct_struct = get_ctypes_attr(ct, "Structure");
	ct_union = get_ctypes_attr(ct, "Union");
	ct_pointer = get_ctypes_attr(ct, "_Pointer");
	ct_funcptr = get_ctypes_attr(ct, "_CFuncPtr");
	Py_DECREF(ct);
	if (PyModule_AddStringConstant(m, "library_version", shval_version_string()) < 0 ||
	    PyModule_AddIntConstant(m, "HAVE_SHARED_LOCKS",
				    shval_lock_create != NULL && shval_create_guarded != NULL) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
