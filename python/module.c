/*
 * python/module.c — the module: functions (Value, Array, RawValue, RawArray, copy,
 * synchronized, unlink, the _rebuild_* helpers of pickling), module init.
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

PyObject *ShvalError;
PyObject *OwnerDiedWarning;
PyObject *anon_cache;
PyObject *named_cache;
PyObject *ct_simple, *ct_array, *ct_struct, *ct_union, *ct_pointer,
	*ct_funcptr;
unsigned long name_counter;

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
	const char *name = name_utf8(arg);
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
SegObject *resolve_segref(PyObject *ref)
{
	if (PyUnicode_Check(ref)) {
		PyObject *s = PyDict_GetItemWithError(named_cache, ref);
		if (s && ((SegObject *)s)->seg) {
			Py_INCREF(s);
			return (SegObject *)s;
		}
		if (PyErr_Occurred())
			return NULL;
		const char *name = name_utf8(ref);
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
	if (!PyTuple_Check(ref) || PyTuple_GET_SIZE(ref) != 3) {
		PyErr_Format(PyExc_TypeError,
			     "_rebuild_segment: the reference must be a segment name (str) or "
			     "a (fd holder, st_dev, st_ino) tuple, not %.100s",
			     Py_TYPE(ref)->tp_name);
		return NULL;
	}
	if (!PyArg_ParseTuple(ref, "OKK:segref", &dup, &dev, &ino))
		return NULL;
	if (!PyObject_HasAttrString(dup, "detach")) {
		PyErr_Format(PyExc_TypeError,
			     "_rebuild_segment: the fd holder must have detach() "
			     "(multiprocessing.reduction.DupFd), not %.100s",
			     Py_TYPE(dup)->tp_name);
		return NULL;
	}
	PyObject *key = devino_key((dev_t)dev, (ino_t)ino);
	if (!key)
		return NULL;
	/* The fd is taken in every case: a passed fd (spawn, forkserver) or
	 * the sender's copy (resource_sharer) is not left behind. */
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
	SegObject *s = anon_cache_get(key); /* weak: see segment.c */
	if (s && s->seg) {
		Py_DECREF(key);
		if (fd != shval_seg_fd(s->seg)) /* never our own */
			close((int)fd);
		return s;
	}
	Py_XDECREF(s);
	if (PyErr_Occurred()) {
		Py_DECREF(key);
		close((int)fd);
		return NULL;
	}
	Py_DECREF(key);
	shval_seg *seg;
	int r = shval_seg_open_fd((int)fd, 0, &seg);
	close((int)fd); /* shval_seg_open_fd keeps its own duplicate */
	if (r) {
		set_error(r, shval_errmsg(NULL));
		return NULL;
	}
	SegObject *so = seg_wrap(seg, 0);
	if (so && anon_cache_put(so) < 0)
		Py_CLEAR(so);
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
	/* The lock and ctype are used as such later: anything else would be
	 * read as a LockObject (a crash) or fail far from here (issue 11). */
	if (lock != Py_None && !is_lock(lock)) {
		PyErr_Format(PyExc_TypeError,
			     "_rebuild_value: lock must be a shval Lock or RLock or None, not %.100s",
			     Py_TYPE(lock)->tp_name);
		return NULL;
	}
	if (extlock && lock == Py_None) {
		PyErr_SetString(PyExc_ValueError, "_rebuild_value: extlock needs a lock");
		return NULL;
	}
	if (ctype != Py_None &&
	    (!PyType_Check(ctype) ||
	     !(issub(ctype, ct_simple) || issub(ctype, ct_array) || issub(ctype, ct_struct) ||
	       issub(ctype, ct_union)))) {
		PyErr_Format(PyExc_TypeError,
			     "_rebuild_value: ctype must be a ctypes type or None, not %R", ctype);
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

/* _add_method(type, name, function): put a Python-level method (shval/_aio.py:
 * wait_async, __aenter__, ...) into one of the module's types. */
static PyObject *m_add_method(PyObject *Py_UNUSED(m), PyObject *args)
{
	PyTypeObject *tp;
	PyObject *name, *fn;
	if (!PyArg_ParseTuple(args, "O!UO:_add_method", &PyType_Type, &tp, &name, &fn))
		return NULL;
	if (!tp->tp_dict || PyDict_SetItem(tp->tp_dict, name, fn) < 0)
		return NULL;
	PyType_Modified(tp);
	Py_RETURN_NONE;
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
/* module                                                                    */

static PyMethodDef module_methods[] = {
	{"Value", (PyCFunction)(void (*)(void))m_Value, METH_VARARGS | METH_KEYWORDS,
	 "Value(typecode_or_type, *args, lock=True, ctx=None)\n--\n\n"
	 "A shared value with a lock (lock=False: a raw value), as multiprocessing.Value."},
	{"Array", (PyCFunction)(void (*)(void))m_Array, METH_VARARGS | METH_KEYWORDS,
	 "Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None)\n--\n\n"
	 "A shared array with a lock, as multiprocessing.Array."},
	{"RawValue", (PyCFunction)m_RawValue, METH_VARARGS,
	 "RawValue(typecode_or_type, *args)\n--\n\n"
	 "A shared value without a lock (scalars are atomic), as multiprocessing.RawValue."},
	{"RawArray", (PyCFunction)m_RawArray, METH_VARARGS,
	 "RawArray(typecode_or_type, size_or_initializer, /)\n--\n\n"
	 "A shared array without a lock, as multiprocessing.RawArray."},
	{"copy", (PyCFunction)m_copy, METH_O,
	 "copy(obj, /)\n--\n\nA new raw shared object with obj's type and contents."},
	{"synchronized", (PyCFunction)(void (*)(void))m_synchronized, METH_VARARGS | METH_KEYWORDS,
	 "synchronized(obj, lock=None, ctx=None)\n--\n\n"
	 "obj (a raw shared value, or a ctypes object: copied) behind a shval lock."},
	{"unlink", (PyCFunction)m_unlink, METH_O,
	 "unlink(name, /)\n--\n\nRemove a named segment."},
	{"_rebuild_value", (PyCFunction)m_rebuild_value, METH_VARARGS,
	 "_rebuild_value(segment, name, sync, ctype, lock, extlock, /)\n--\n\n"
	 "Unpickling of a value (internal)."},
	{"_rebuild_lock", (PyCFunction)m_rebuild_lock, METH_VARARGS,
	 "_rebuild_lock(segment, name, recursive, /)\n--\n\nUnpickling of a lock (internal)."},
	{"_add_method", (PyCFunction)m_add_method, METH_VARARGS,
	 "_add_method(type, name, function, /)\n--\n\nAdd a Python-level method to a type (internal)."},
	{"_rebuild_segment", (PyCFunction)m_rebuild_segment, METH_O,
	 "_rebuild_segment(ref, /)\n--\n\nUnpickling of a segment (internal)."},
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
				    1) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
