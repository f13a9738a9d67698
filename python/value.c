/*
 * python/value.c — SharedValue and Synchronized: wrapping handles, .value,
 * atomics, version/wait, the synchronized wrapper methods, repr, pickling,
 * the buffer protocol.
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

/* ------------------------------------------------------------------------ */
/* values                                                                    */

int is_val(shval_state *st, PyObject *o)
{
	return PyObject_TypeCheck(o, st->SharedValueType) ||
	       PyObject_TypeCheck(o, st->SharedArrayType);
}

int is_sync(shval_state *st, PyObject *o)
{
	return PyObject_TypeCheck(o, st->SynchronizedType) ||
	       PyObject_TypeCheck(o, st->SynchronizedArrayType);
}

PyTypeObject *pick_type(shval_state *st, unsigned kind, char letter, int sync)
{
	if (kind == SHVAL_KIND_ARRAY) {
		if (!sync)
			return st->SharedArrayType;
		return letter == 'c' ? st->SynchronizedStringType : st->SynchronizedArrayType;
	}
	return sync ? st->SynchronizedType : st->SharedValueType;
}

size_t ctypes_sizeof(PyObject *t)
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
PyObject *val_wrap(PyTypeObject *tp, shval *h, SegObject *seg,
			  PyObject *base, PyObject *ctype, PyObject *lock, int extlock)
{
	shval_state *st = seg->st;
	struct shval_info info;
	int r = shval_info(h, &info);
	if (r) {
		seg_error(st, shval_segment(h), r);
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
	ValObject *v = (ValObject *)tp->tp_alloc(tp, 0); /* zeroed, tracked */
	if (!v) {
		if (!base)
			shval_close(h);
		return NULL;
	}
	v->st = st;
	v->h = h;
	v->owns_h = base == NULL;
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
	v->fork_mark = 0;
	v->kind = info.kind;
	v->mode = info.mode;
	v->size = info.size;
	v->count = info.count ? info.count : 1;
	v->exports = 0;
	v->pin_gen = 0;
	v->rdonly = -1;
	v->fields = NULL;
	v->nfields = 0;
	snprintf(v->name, sizeof v->name, "%s", info.name);
	snprintf(v->type, sizeof v->type, "%s", info.type);
	size_t tl = strlen(info.type);
	v->letter = tl ? info.type[tl - 1] : 0;
	v->esize = letter_size(v->letter);
	v->numeric = v->kind == SHVAL_KIND_SCALAR && v->letter &&
		     strchr("bBhHiIlLqQnNfdcu?", v->letter) != NULL;
	v->isfloat = v->numeric && is_float(v->letter);
	v->fastint = v->numeric && strchr("bBhHiIlLqQnN", v->letter) != NULL &&
		     (v->size == 1 || v->size == 2 || v->size == 4 || v->size == 8);
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
	if (ctype && v->kind == SHVAL_KIND_ARRAY && issub(ctype, st->ct_struct)) {
		v->selem = ctypes_sizeof(ctype);
		if (!v->selem || v->size % v->selem) {
			Py_DECREF(v);
			PyErr_Format(PyExc_TypeError, "%R does not match the value's size", ctype);
			return NULL;
		}
		v->count = v->size / v->selem;
	}
	v->hot_attr = !v->nfields && (tp == st->SynchronizedType || tp == st->SharedValueType);
	v->hot_int = 0;
	if (v->kind == SHVAL_KIND_SCALAR && !extlock && v->letter && v->size == v->esize &&
	    (v->size == 4 || v->size == 8)) {
		if (strchr("ilqn", v->letter))
			v->hot_int = 's';
		else if (strchr("ILQN", v->letter))
			v->hot_int = 'u';
	}
	v->seen = shval_value_version(h);
	return (PyObject *)v;
}

int val_traverse(PyObject *o, visitproc visit, void *arg)
{
	ValObject *v = (ValObject *)o;
	Py_VISIT(Py_TYPE(o));
	Py_VISIT(v->seg);
	Py_VISIT(v->base);
	Py_VISIT(v->lock);
	Py_VISIT(v->ctype);
	return 0;
}

/* Breaks cycles through base, lock and ctype.  `seg` stays (a Segment
 * refers to nothing, and dealloc needs it to remove an entry it created);
 * the handle is closed by dealloc if and only if owns_h, whatever was
 * cleared here. */
int val_clear(PyObject *o)
{
	ValObject *v = (ValObject *)o;
	Py_CLEAR(v->base);
	Py_CLEAR(v->lock);
	Py_CLEAR(v->ctype);
	return 0;
}

void val_dealloc(ValObject *v)
{
	PyTypeObject *tp = Py_TYPE(v);
	PyObject_GC_UnTrack(v);
	if (v->owns_h) {
		shval_close(v->h);
		if (PRIVATE_OWNED(v))
			(void)shval_remove(v->seg->seg, v->name);
	}
	(void)val_clear((PyObject *)v);
	Py_XDECREF(v->seg);
	PyMem_Free(v->fields);
	tp->tp_free((PyObject *)v);
	Py_DECREF(tp);
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
		seg_error(v->st, v->seg->seg, r);
		return NULL;
	}
	v->lock = lock_wrap(h, v->seg, v->mode == SHVAL_RLOCK, 1);
	Py_XINCREF(v->lock);
	return v->lock;
}

/* external lock around accesses (synchronized() of a raw value) */
int ext_enter(ValObject *v)
{
	if (!v->extlock)
		return 0;
	LockObject *l = (LockObject *)v->lock;
	int r = acquire_handle(v->st, l->h, 1, -1, l->seg->remote);
	return r < 0 ? -1 : 0;
}

void ext_exit(ValObject *v)
{
	if (!v->extlock)
		return;
	PyObject *t, *val, *tb;
	PyErr_Fetch(&t, &val, &tb);
	LockObject *l = (LockObject *)v->lock;
	(void)unlock_handle(l->h, l->seg->remote);
	PyErr_Restore(t, val, tb);
}

int handle_rc(ValObject *v, int r)
{
	if (r == 0)
		return 0;
	if (r == PYERR)
		return -1;
	if (r == SHVAL_EOWNERDEAD) {
		/* the library recovered and completed the operation */
		return PyErr_WarnEx(v->st->OwnerDiedWarning,
				    "the previous owner of the value's lock died "
				    "holding it; the value was rolled back",
				    1);
	}
	seg_error(v->st, shval_segment(v->h), r);
	return -1;
}

/* ---- whole-value read as bytes ---- */

PyObject *read_bytes(ValObject *v)
{
	PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)v->size);
	if (!b)
		return NULL;
	if (ext_enter(v) < 0) {
		Py_DECREF(b);
		return NULL;
	}
	/* a consistent read (seqlock): never takes the lock, and inside the
	 * caller's own section it sees the caller's changes */
	char *p = PyBytes_AS_STRING(b);
	int r = shval_read(v->h, p, v->size);
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

static PyObject *val_value_get(ValObject *v, void *Py_UNUSED(c))
{
	if (v->hot_int &&
	    (((const struct shval__fast *)(void *)v->h)->flags & SHVAL__F_SEQREAD)) {
		/* a locked int (Value('i')): the header's seqlock read, the
		 * version word in place, the small-int table */
		uint64_t b = 0;
		v->seen = locked_version(v->h);
		int r = v->size == 4 ? shval_read(v->h, &b, 4) : shval_read(v->h, &b, 8);
		if (r && handle_rc(v, r) < 0)
			return NULL;
		return hot_int_to_py(v, &b);
	}
	if (v->seg->remote && v->kind == SHVAL_KIND_SCALAR && !v->extlock) {
		/* a Redis value: bytes and version in one round trip, the
		 * GIL released meanwhile */
		uint64_t b[2];
		int r;
		Py_BEGIN_ALLOW_THREADS
		r = shval_read_version(v->h, b, v->size, &v->seen);
		Py_END_ALLOW_THREADS
		if (r && handle_rc(v, r) < 0)
			return NULL;
		return elem_to_py(v->letter, b);
	}
	v->seen = shval_value_version(v->h);
	if (v->kind == SHVAL_KIND_SCALAR) {
		/* cap = the value's size: shval_read()'s inline seqlock read
		 * (include/shval.h) copies it without a call */
		uint64_t b[2];
		int r;
		if (!v->extlock) {
			/* never blocks; a constant size: the copy is a move */
			if (v->size == 4)
				r = shval_read(v->h, b, 4);
			else if (v->size == 8)
				r = shval_read(v->h, b, 8);
			else
				r = shval_read(v->h, b, v->size);
		} else {
			if (ext_enter(v) < 0)
				return NULL;
			r = shval_read(v->h, b, v->size);
			ext_exit(v);
		}
		if (r && handle_rc(v, r) < 0)
			return NULL;
		if (v->letter == 'i') { /* the common int */
			int32_t x;
			memcpy(&x, b, 4);
			return PyLong_FromLong(x);
		}
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

__attribute__((flatten)) static int write_bytes(ValObject *v, const void *b, size_t n)
{
	int r;
	if (!v->extlock) {
		if (LOCKED(v)) {
			/* (fails inside `with v.get_lock():`: hot_set says why) */
			if (fast_write(v, b, n) == 0)
				return 0; /* v->seen set */
			if (held_here((LockObject *)v->lock)) {
				/* inside `with v.get_lock():`: a nested write */
				if (nested_write(v, b, n) == 0)
					goto done_own;
				r = (shval_write)(v->h, b, n);
				goto done;
			}
		}
		/* a locked Redis value: one round trip unless its lock is
		 * held elsewhere or a dead owner's section is to be reported */
		CALL_TRY(v, shval__r_try_write(v->h, b, n),
			 shval_write(v->h, b, n));
	} else {
		if (ext_enter(v) < 0)
			return -1;
		CALL(v, shval_write(v->h, b, n));
		ext_exit(v);
	}
done:
	if (r && handle_rc(v, r) < 0)
		return -1;
	/* on a Redis segment, the version this write committed if the library
	 * knows it (no round trip); else ask the server */
	uint64_t c = v->seg->remote ? shval__r_committed(v->h) : 0;
	v->seen = c ? c : shval_value_version(v->h);
	return 0;
done_own: /* written by nested_write */
	v->seen = locked_version(v->h);
	return 0;
}

int val_value_set(ValObject *v, PyObject *o, void *Py_UNUSED(c))
{
	if (!o) {
		PyErr_SetString(PyExc_AttributeError, "cannot delete value");
		return -1;
	}
	long sx;
	if (v->hot_int && small_long(o, &sx) && (sx >= 0 || v->hot_int == 's')) {
		/* |x| < 2**30: in range of every hot_int letter */
		int64_t b = sx; /* little-endian: the low 4 bytes are the int32 */
		return write_bytes(v, &b, v->size);
	}
	if (v->kind == SHVAL_KIND_SCALAR) {
		uint64_t b[2] = {0, 0};
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
	if (!v->numeric) {
		PyErr_Format(PyExc_TypeError, "value of type '%s' is not a number", v->type);
		return -1;
	}
	return 0;
}

/* flatten: the header's inline add is inlined here (GCC keeps it out of line
 * otherwise) */
__attribute__((flatten, noinline)) static PyObject *val_add_general(ValObject *v,
								    PyObject *delta)
{
	if (!v->isfloat && v->numeric && !v->extlock && PyLong_CheckExact(delta)) {
		/* the common case: an int delta on an integer value; a 64-bit
		 * atomic value takes shval_add_i64()'s inline fetch-add */
		int of = 0;
		long small;
		long long d = small_long(delta, &small) ? small
							 : PyLong_AsLongLongAndOverflow(delta, &of);
		if (!of && !(d == -1 && PyErr_Occurred())) {
			int64_t out = 0;
			int r = FAST_SLOW;
			if (LOCKED(v) && !held_here((LockObject *)v->lock))
				r = fast_add(v, d, &out);
			if (r == FAST_SLOW)
				CALL_TRY(v, shval__r_try_add_i64(v->h, d, &out),
					 shval_add_i64(v->h, d, &out));
			if (r && handle_rc(v, r) < 0)
				return NULL;
			if (v->letter == 'i')
				return long_of(v->st, (int32_t)out);
			return i64_to_py(v->letter, out);
		}
		if (d == -1 && PyErr_Occurred())
			return NULL;
	}
	if (need_scalar(v) < 0 || ext_enter(v) < 0)
		return NULL;
	int r;
	PyObject *res = NULL;
	if (v->isfloat) {
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

/* The common add first, with no stack frame of the general one: a small
 * int delta on a hot_int value, atomic (the header's inline fetch-add) or
 * with its own lock, which this thread does not hold (the inline section).
 * Anything else, and an owner's death after its warning, takes
 * val_add_general(). */
__attribute__((flatten)) static PyObject *val_add(ValObject *v, PyObject *delta)
{
	long d;
	if (v->hot_int && small_long(delta, &d)) {
		const struct shval__fast *f = (const struct shval__fast *)(void *)v->h;
		int64_t out = 0;
		int r = FAST_SLOW;
		if (f->flags & (SHVAL__F_ATOMIC64 | SHVAL__F_ATOMIC32S | SHVAL__F_ATOMIC32U))
			r = shval_add_i64(v->h, d, &out);
		else if (LOCKED(v) && !held_here((LockObject *)v->lock))
			r = fast_add(v, d, &out);
		if (r == 0)
			return hot_int_to_py(v, &out); /* the low bytes: wrapped */
		if (r != FAST_SLOW && handle_rc(v, r) < 0)
			return NULL; /* an error, or the owner's death warned */
	}
	return val_add_general(v, delta);
}

static PyObject *val_cas(ValObject *v, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs != 2) {
		PyErr_Format(PyExc_TypeError, "cas expected 2 arguments, got %zd", nargs);
		return NULL;
	}
	PyObject *exp = args[0], *des = args[1];
	if (need_scalar(v) < 0)
		return NULL;
	int r;
	if (v->isfloat) {
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
	if (v->isfloat) {
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

PyObject *val_version(ValObject *v, void *Py_UNUSED(c))
{
	return PyLong_FromUnsignedLongLong(shval_value_version(v->h));
}

PyObject *val_wait(ValObject *v, PyObject *const *args, Py_ssize_t nargs,
		    PyObject *kwnames)
{
	static const char *const names[] = {"timeout", "version", NULL};
	PyObject *a[2] = {NULL, NULL};
	if (fast_args("wait", args, nargs, kwnames, names, 2, 0, a) < 0)
		return NULL;
	PyObject *tmo = a[0], *ver = a[1] ? a[1] : Py_None;
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
		seg_error(v->st, shval_segment(v->h), r);
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
	PyTypeObject *tp = pick_type(v->st, v->kind, v->letter, 0);
	PyObject *owner = v->base ? v->base : (PyObject *)v;
	PyObject *raw = val_wrap(tp, v->h, v->seg, owner, v->ctype, NULL, 0);
	if (!raw)
		return NULL;
	/* issue 12 item 8: a ctypes object over the shared memory, as
	 * multiprocessing returns, where the type has a ctypes equivalent
	 * (shval/_views.py); else the raw shval object. */
	PyObject *mod = PyImport_ImportModule("shval._views");
	PyObject *res = mod ? PyObject_CallMethod(mod, "ctypes_view", "OO", raw,
						 v->ctype ? v->ctype : Py_None)
			    : NULL;
	Py_XDECREF(mod);
	Py_DECREF(raw);
	return res;
}

static PyObject *sync_acquire(ValObject *v, PyObject *const *args, Py_ssize_t nargs,
			      PyObject *kwnames)
{
	PyObject *l = own_lock(v);
	if (!l)
		return NULL;
	PyObject *res = lock_acquire((LockObject *)l, args, nargs, kwnames);
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

PyObject *val_repr(ValObject *v)
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
	if (!inner || !is_sync(v->st, (PyObject *)v))
		return inner;
	const char *tn = Py_TYPE(v)->tp_name;
	const char *dot = strrchr(tn, '.');
	PyObject *res = PyUnicode_FromFormat("<%s wrapper for %U>", dot ? dot + 1 : tn, inner);
	Py_DECREF(inner);
	return res;
}

/* ---- pickling ---- */

PyObject *seg_ref(SegObject *s)
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

PyObject *module_attr(const char *name)
{
	PyObject *mod = PyImport_ImportModule("shval._shval");
	if (!mod)
		return NULL;
	PyObject *fn = PyObject_GetAttrString(mod, name);
	Py_DECREF(mod);
	return fn;
}

PyObject *val_reduce(ValObject *v, PyObject *Py_UNUSED(a))
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
	int sync = is_sync(v->st, (PyObject *)v);
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

int val_getbuffer(PyObject *o, Py_buffer *view, int flags)
{
	ValObject *v = (ValObject *)o;
	void *p = shval_data(v->h);
	if (!p) {
		/* a live value without memory (a Redis segment's): EMODE */
		struct shval_info in;
		if (shval_info(v->h, &in) == 0)
			set_error(v->st, SHVAL_EMODE, shval_errmsg(shval_segment(v->h)));
		else
			set_error(v->st, SHVAL_ESTALE, "the value was removed");
		view->obj = NULL;
		return -1;
	}
	/* A read-only segment's pages are mapped PROT_READ: a writable view
	 * would let a write through it kill the interpreter (issue 11). */
	/* (Asked once per object: shval_seg_info() also counts the live
	 * attached processes through /proc, tens of microseconds.) */
	int r;
	if (v->rdonly < 0) {
		struct shval_seg_info si;
		r = shval_seg_info(shval_segment(v->h), &si);
		if (r) {
			set_error(v->st, r, shval_errmsg(shval_segment(v->h)));
			view->obj = NULL;
			return -1;
		}
		v->rdonly = (si.flags & SHVAL_RDONLY) != 0;
	}
	int rdonly = v->rdonly;
	if (rdonly && (flags & PyBUF_WRITABLE) == PyBUF_WRITABLE) {
		PyErr_Format(PyExc_TypeError,
			     "value '%s' is in a segment opened read-only: "
			     "no writable buffer", v->name);
		view->obj = NULL;
		return -1;
	}
	/* Pin the value while buffers are exported (the first export of this
	 * process; a forked child pins again for its own): shval_remove() by
	 * any process is then refused with EBUSY, so that a view kept after
	 * `del seg[name]` never writes into a block reused by another value
	 * (issue 11).  A read-only segment's views cannot write: no pin. */
	int pinned_now = 0;
	if (!rdonly && (v->exports == 0 || v->pin_gen != fork_gen + 1)) {
		r = shval_pin(v->h);
		if (r) {
			set_error(v->st, r, shval_errmsg(shval_segment(v->h)));
			view->obj = NULL;
			return -1;
		}
		pinned_now = 1;
	}
	int structured = v->kind == SHVAL_KIND_STRUCT || v->kind == SHVAL_KIND_STRING;
	view->buf = p;
	view->obj = (PyObject *)v;
	Py_INCREF(v);
	view->len = (Py_ssize_t)v->size;
	view->readonly = rdonly;
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
			if (pinned_now)
				(void)shval_unpin(v->h);
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
	if (pinned_now)
		v->pin_gen = fork_gen + 1;
	v->exports++;
	return 0;
}

void val_releasebuffer(PyObject *o, Py_buffer *view)
{
	ValObject *v = (ValObject *)o;
	PyMem_Free(view->internal);
	if (--v->exports == 0) {
		/* The last view: unpin, if this process pinned (a forked
		 * child releasing its parent's views holds no pin). */
		if (v->pin_gen == fork_gen + 1)
			(void)shval_unpin(v->h);
		v->pin_gen = 0;
	}
}

/* ------------------------------------------------------------------------ */
/* value types                                                               */

PyObject *val_name_get(ValObject *v, void *Py_UNUSED(c))
{
	return PyUnicode_FromString(v->name);
}

PyObject *val_type_get(ValObject *v, void *Py_UNUSED(c))
{
	return PyUnicode_FromString(v->type);
}

PyObject *val_value_get_any(ValObject *v, void *c)
{
	return val_value_get(v, c);
}

static PyGetSetDef val_getset[] = {
	{"value", (getter)val_value_get_any, (setter)val_value_set,
	 "the value (reads never take the lock)", NULL},
	{"version", (getter)val_version, NULL, "changes on every committed change", NULL},
	{"name", (getter)val_name_get, NULL, "the value's name in its segment", NULL},
	{"type", (getter)val_type_get, NULL, "the canonical shval type string", NULL},
	{NULL, NULL, NULL, NULL, NULL}
};

static PyMethodDef val_methods[] = {
	{"add", (PyCFunction)val_add, METH_O,
	 "add($self, delta, /)\n--\n\nAdd delta (atomically, or under the value's lock); the new value."},
	{"cas", (PyCFunction)(void (*)(void))val_cas, METH_FASTCALL,
	 "cas($self, expected, new, /)\n--\n\nCompare-and-swap: store new if the value equals expected; True if stored."},
	{"exchange", (PyCFunction)val_exchange, METH_O,
	 "exchange($self, new, /)\n--\n\nStore new; the old value."},
	{"wait", (PyCFunction)(void (*)(void))val_wait, METH_FASTCALL | METH_KEYWORDS, WAIT_DOC},
	{"__reduce__", (PyCFunction)val_reduce, METH_NOARGS, REDUCE_DOC},
	{NULL, NULL, 0, NULL}
};

/* __exit__(*exc_info): METH_FASTCALL, no argument tuple on every `with` */
static PyObject *sync_exit_fast(ValObject *v, PyObject *const *Py_UNUSED(args),
				Py_ssize_t Py_UNUSED(n))
{
	return sync_release(v, NULL);
}

PyMethodDef sync_methods[] = {
	{"get_lock", (PyCFunction)sync_get_lock, METH_NOARGS,
	 "get_lock($self, /)\n--\n\nThe lock guarding the value (its own lock, or the shared one)."},
	{"get_obj", (PyCFunction)sync_get_obj, METH_NOARGS,
	 "get_obj($self, /)\n--\n\nThe raw value without the lock wrapper."},
	{"acquire", (PyCFunction)(void (*)(void))sync_acquire, METH_FASTCALL | METH_KEYWORDS,
	 "acquire($self, /, block=True, timeout=None)\n--\n\nget_lock().acquire()."},
	{"release", (PyCFunction)sync_release, METH_NOARGS,
	 "release($self, /)\n--\n\nget_lock().release()."},
	{"__enter__", (PyCFunction)sync_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nTake the lock for `with`."},
	{"__exit__", (PyCFunction)(void (*)(void))sync_exit_fast, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\nRelease the lock after `with`."},
	{NULL, NULL, 0, NULL}
};

static PyType_Slot val_slots[] = {
	{Py_tp_dealloc, val_dealloc},
	{Py_tp_traverse, val_traverse},
	{Py_tp_clear, val_clear},
	{Py_tp_repr, val_repr},
	{Py_tp_getattro, val_getattro},
	{Py_tp_setattro, val_setattro},
	{Py_bf_getbuffer, val_getbuffer},
	{Py_bf_releasebuffer, val_releasebuffer},
	{Py_tp_doc, "A value in shared memory (RawValue, Value(lock=False), get_obj())."},
	{Py_tp_methods, val_methods},
	{Py_tp_getset, val_getset},
	{0, NULL}
};

/* No tp_new: values are made by the module's functions (as the static
 * types before, which could not be instantiated either). */
#define VAL_FLAGS                                                        \
	(Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | \
	 Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION)

PyType_Spec val_spec = {
	.name = "shval.SharedValue",
	.basicsize = sizeof(ValObject),
	.flags = VAL_FLAGS,
	.slots = val_slots,
};

/* Synchronized: a subtype of SharedValue (module.c passes the base) */
static PyType_Slot sync_slots[] = {
	{Py_tp_dealloc, val_dealloc},
	{Py_tp_traverse, val_traverse},
	{Py_tp_clear, val_clear},
	{Py_tp_doc, "A value with a lock (Value())."},
	{Py_tp_methods, sync_methods},
	{0, NULL}
};

PyType_Spec sync_spec = {
	.name = "shval.Synchronized",
	.basicsize = sizeof(ValObject),
	.flags = VAL_FLAGS,
	.slots = sync_slots,
};
